"""The session protocol case by case, as the Agents SDK's own SQLiteSession answers it, and what
persist adds beside it; on SQLite, PostgreSQL and the in-process store."""

from __future__ import annotations

import asyncio
import copy
import enum
import json

import pytest
from agents import SQLiteSession
from agents.memory import SessionSettings
from agents.memory.session import SessionABC

import persist
from persist import Store
from persist.agents import PersistSession

# Every test here is a coroutine run by pytest-asyncio, whatever `asyncio_mode` is.
pytestmark = pytest.mark.asyncio

# Items as the SDK writes them: every shape a run produces.
ITEMS = [
    {"role": "user", "content": "What is the weather in Paris?"},
    {"role": "user", "content": [{"type": "input_text", "text": "and in Rome?"}]},
    {"type": "message", "role": "developer", "content": [{"type": "input_text", "text": "Be brief."}]},
    {
        "id": "fc_1",
        "type": "function_call",
        "call_id": "call_1",
        "name": "get_weather",
        "arguments": '{"city": "Paris"}',
        "status": "completed",
    },
    {"type": "function_call_output", "call_id": "call_1", "output": "Sunny, 21 C"},
    {
        "id": "rs_1",
        "type": "reasoning",
        "summary": [{"type": "summary_text", "text": "The tool answered."}],
    },
    {
        "id": "__fake_id__",
        "type": "message",
        "role": "assistant",
        "status": "completed",
        "content": [{"type": "output_text", "text": "Sunny in Paris.", "annotations": []}],
    },
    {
        "role": "user",
        "content": [
            {"type": "input_image", "image_url": "data:image/png;base64,iVBORw0KGgo=", "detail": "auto"},
            {"type": "input_file", "file_data": "data:application/pdf;base64,JVBERi0=", "filename": "a.pdf"},
        ],
    },
    # A second item of the same id: the SDK gives every item of a model other than OpenAI's one.
    {
        "id": "__fake_id__",
        "type": "message",
        "role": "assistant",
        "status": "completed",
        "content": [{"type": "output_text", "text": "Anything else?", "annotations": []}],
    },
]


def message(text: str, role: str = "user") -> dict:
    return {"role": role, "content": text}


SHAPES = {
    "user_string": ITEMS[0],
    "user_input_text_list": ITEMS[1],
    "developer_typed_message": ITEMS[2],
    "function_call": ITEMS[3],
    "function_call_output": ITEMS[4],
    "reasoning_with_summary": ITEMS[5],
    "assistant_output_text": ITEMS[6],
    "user_image_and_file": ITEMS[7],
}


@pytest.mark.parametrize("shape", sorted(SHAPES))
async def test_each_item_shape_round_trips_alone(url, shape):
    """One item per session, between two plain messages: it comes back equal, key for key."""
    session = PersistSession(f"shape-{shape}", url)
    written = [message("before"), SHAPES[shape], message("after", "assistant")]
    await session.add_items(copy.deepcopy(written))
    assert await session.get_items() == written
    assert await session.get_items(limit=2) == written[1:]
    assert await session.pop_item() == written[2]
    assert await session.pop_item() == written[1]
    assert await session.get_items() == written[:1]


async def test_limits_as_the_protocol_defines_them(url):
    session = PersistSession("limits", url)
    written = [message(f"m{i}", "user" if i % 2 == 0 else "assistant") for i in range(6)]
    await session.add_items(written[:4])
    await session.add_items(written[4:])
    assert await session.get_items() == written
    assert await session.get_items(None) == written
    assert await session.get_items(limit=0) == []
    assert await session.get_items(limit=-1) == written
    assert await session.get_items(limit=-100) == written
    assert await session.get_items(limit=1) == written[5:]
    assert await session.get_items(limit=3) == written[3:]
    assert await session.get_items(limit=6) == written
    assert await session.get_items(limit=7) == written
    assert await PersistSession("never-written", url).get_items() == []
    assert await PersistSession("never-written", url).get_items(limit=3) == []
    assert await PersistSession("never-written", url).pop_item() is None


async def test_every_shape_side_by_side_with_sqlite_session(url, tmp_path):
    """The SDK's own SQLiteSession and PersistSession given the same items in the same calls
    answer every read and pop alike."""
    ours = PersistSession("side", url)
    theirs = SQLiteSession("side", str(tmp_path / "sdk-side.db"))
    try:
        for session in (ours, theirs):
            await session.add_items(copy.deepcopy(ITEMS[:3]))
            await session.add_items(copy.deepcopy(ITEMS[3:5]))
            await session.add_items(copy.deepcopy(ITEMS[5:]))
        assert await theirs.get_items() == ITEMS  # the reference itself
        for limit in (None, 0, -1, -3, 1, 2, 5, len(ITEMS), len(ITEMS) + 5):
            assert await ours.get_items(limit) == await theirs.get_items(limit), f"limit={limit}"
        for n in range(len(ITEMS) + 1):
            assert await ours.pop_item() == await theirs.pop_item(), f"pop #{n + 1}"
            assert await ours.get_items() == await theirs.get_items(), f"after pop #{n + 1}"
        assert await ours.get_items() == await theirs.get_items() == []
    finally:
        theirs.close()


async def test_it_is_the_sdks_session():
    assert issubclass(PersistSession, SessionABC)


async def test_items_come_back_as_the_sdk_wrote_them(url):
    session = PersistSession("s1", url)
    await session.add_items(copy.deepcopy(ITEMS))
    assert await session.get_items() == ITEMS
    assert await session.get_items(limit=3) == ITEMS[-3:]


async def test_it_answers_as_sqlite_session_does(url, tmp_path):
    """The same calls on both sessions give the same answers: they are interchangeable."""
    ours = PersistSession("same", url)
    theirs = SQLiteSession("same", str(tmp_path / "sdk.db"))
    for session in (ours, theirs):
        assert await session.get_items() == []
        assert await session.pop_item() is None
        await session.add_items([message("one"), message("two", "assistant")])
        await session.add_items([])
        await session.add_items([message("three")])
    for limit in (None, 1, 2, 3, 10, 0, -1):
        assert await ours.get_items(limit) == await theirs.get_items(limit), limit
    assert await ours.pop_item() == await theirs.pop_item() == message("three")
    assert await ours.get_items() == await theirs.get_items()
    await ours.clear_session()
    await theirs.clear_session()
    assert await ours.get_items() == await theirs.get_items() == []
    assert await ours.pop_item() is None
    # Written again after a clear.
    await ours.add_items([message("again")])
    assert await ours.get_items() == [message("again")]
    theirs.close()


async def test_the_settings_limit_is_the_default(url):
    session = PersistSession("limited", url, session_settings=SessionSettings(limit=2))
    await session.add_items([message(str(i)) for i in range(5)])
    assert await session.get_items() == [message("3"), message("4")]
    assert await session.get_items(limit=4) == [message(str(i)) for i in range(1, 5)]


async def test_pop_takes_the_latest_until_none_is_left(url):
    session = PersistSession("pops", url)
    await session.add_items([message("a"), message("b")])
    assert await session.pop_item() == message("b")
    assert await session.pop_item() == message("a")
    assert await session.pop_item() is None


async def test_a_retried_add_is_written_once(url):
    session = PersistSession("keyed", url)
    turn = [message("question"), message("answer", "assistant")]
    await session.add_items(turn, idempotency_key="turn-1")
    await session.add_items(turn, idempotency_key="turn-1")
    assert await session.get_items() == turn
    with pytest.raises(persist.Conflict) as refused:
        await session.add_items([message("other")], idempotency_key="turn-1")
    assert refused.value.code == "idempotency_key_reused"
    assert await session.get_items() == turn


@pytest.mark.parametrize(
    "odd",
    [
        [42],
        ["just a string"],
        [{"type": "function_call"}],
        [{"type": "function_call", "call_id": "c"}],
        [{"type": "function_call_output"}],
        [{"role": "user"}],
        [{"type": 7}],
        [{"type": "text", "text": "a block, not an item"}],
        [{"__enc__": 1, "v": 1, "kid": "hkdf-v1", "payload": "gAAAAABm"}],
    ],
)
async def test_any_json_is_kept_whole_as_the_sdks_sessions_keep_it(url, odd):
    # The SDK's sessions store any JSON (its EncryptedSession stores envelopes without a role):
    # what the Responses converter does not read is kept whole and comes back equal.
    session = PersistSession("odd", url)
    await session.add_items([message("kept")])
    await session.add_items([message("also kept")] + odd)
    assert await session.get_items() == [message("kept"), message("also kept")] + odd
    assert await session.pop_item() == odd[-1]


async def test_a_refused_first_write_leaves_no_session(url):
    store = Store.open(url)
    session = PersistSession("refused", store)
    with pytest.raises(persist.InvalidInput):
        await session.add_items([message("good"), {"type": "message", "score": float("nan")}])
    assert await session.get_items() == []
    assert await session.pop_item() is None
    await session.add_items([message("good")])
    assert await session.get_items() == [message("good")]


async def test_arguments_persist_refuses_raise_where_the_call_is_awaited(url):
    store = Store.open(url)
    pending = store.add_items("", [message("x")])
    with pytest.raises(persist.InvalidInput):
        await pending
    with pytest.raises(TypeError):
        await store.add_items("s", {"role": "user"})


async def test_tenants_are_apart(url):
    store = Store.open(url)
    acme, globex = store.with_tenant("acme"), store.with_tenant("globex")
    await PersistSession("shared-id", acme).add_items([message("acme's secret plan")])
    assert await PersistSession("shared-id", globex).get_items() == []
    assert await globex.search("secret") == []
    assert [hit["session_id"] for hit in await acme.search("secret")] == ["shared-id"]
    assert [s["session_id"] for s in (await globex.sessions())["sessions"]] == []
    assert PersistSession("x", store, tenant="acme").store.tenant == "acme"
    # The other tenant's pop and clear do not reach acme's session either.
    assert await PersistSession("shared-id", globex).pop_item() is None
    await PersistSession("shared-id", globex).clear_session()
    assert await PersistSession("shared-id", acme).get_items() == [message("acme's secret plan")]
    # The same session id written by both: each sees its own.
    await PersistSession("shared-id", globex).add_items([message("globex's own")])
    assert await PersistSession("shared-id", globex).get_items() == [message("globex's own")]
    assert await PersistSession("shared-id", acme).get_items() == [message("acme's secret plan")]
    assert [s["session_id"] for s in (await acme.sessions())["sessions"]] == ["shared-id"]


async def test_branches_as_advanced_sqlite_session_offers_them(url):
    session = PersistSession("branchy", url)
    first = [message("hi"), message("hello", "assistant")]
    second = [message("weather?"), message("sunny", "assistant")]
    await session.add_items(first)
    await session.add_items(second)
    await session.branch_from_turn(2)
    other = [message("news?"), message("quiet day", "assistant")]
    await session.add_items(other)
    assert await session.get_items() == first + other
    branches = await session.branches()
    assert [(b["active"], b["items"], b["last_item"]) for b in branches] == [
        (False, 4, message("sunny", "assistant")),
        (True, 4, message("quiet day", "assistant")),
    ]
    await session.switch_branch(branches[0]["branch_id"])
    assert await session.get_items() == first + second
    with pytest.raises(persist.InvalidInput):
        await session.branch_from_turn(3)
    # Before the first turn: the session is empty, and the next items start a root of their own.
    await session.branch_from_turn(1)
    assert await session.get_items() == []
    assert [b["active"] for b in await session.branches()] == [False, False]
    await session.add_items([message("start over")])
    assert await session.get_items() == [message("start over")]
    assert len(await session.branches()) == 3


async def test_a_branch_before_the_first_turn_is_kept_in_the_store(tmp_path):
    # Another process, or this one after a restart, writes where the branch says: the next
    # turn after `branch_from_turn(1)` starts a root whoever writes it.
    url = f"sqlite:{tmp_path / 'branch.db'}"
    first = Store.open(url)
    await first.add_items("s", [message("hi"), message("hello", "assistant")])
    await first.branch_from_turn("s", 1)
    await first.close()
    again = Store.open(url)
    assert await again.get_items("s") == []
    await again.add_items("s", [message("start over")])
    assert await again.get_items("s") == [message("start over")]
    assert len(await again.branches("s")) == 2
    await again.close()


async def test_search_the_compacted_view_and_listing(url):
    store = Store.open(url)
    one, two = PersistSession("one", store), PersistSession("two", store)
    await one.add_items([message("the parcel is late")])
    await two.add_items([message("where is my parcel?"), message("unrelated", "assistant")])
    assert [hit["session_id"] for hit in await one.search("parcel")] == ["one"]
    hits = await one.search("parcel", all_sessions=True)
    assert sorted(hit["session_id"] for hit in hits) == ["one", "two"]
    assert all("**parcel**" in hit["snippet"] for hit in hits)
    assert await two.compacted() == {"summary": None, "items": await two.get_items()}
    listed = await store.sessions(limit=1)
    assert len(listed["sessions"]) == 1 and listed["next_cursor"]
    rest = await store.sessions(limit=10, cursor=listed["next_cursor"])
    ids = [s["session_id"] for s in listed["sessions"] + rest["sessions"]]
    assert sorted(ids) == ["one", "two"] and rest["next_cursor"] is None


async def test_working_memory_without_lost_updates(url):
    store = Store.open(url).with_tenant("acme")
    assert await store.read_memory("user-1") is None
    first = await store.write_memory("user-1", patch={"name": "Ada", "tier": "gold"})
    assert first == {"document": {"name": "Ada", "tier": "gold"}, "version": 1}
    second = await store.write_memory("user-1", patch={"tier": None}, expected_version=1)
    assert second == {"document": {"name": "Ada"}, "version": 2}
    with pytest.raises(persist.Conflict):
        await store.write_memory("user-1", patch={"tier": "silver"}, expected_version=1)
    replaced = await store.write_memory("user-1", document={"name": "Ada L."})
    assert replaced["document"] == {"name": "Ada L."}
    with pytest.raises(persist.InvalidInput):
        await store.write_memory("user-1", patch=[1, 2])
    assert await store.read_memory("user-1") == replaced


async def test_values_are_read_as_json_dumps_reads_them(url):
    # Most values are read directly, the rest through json.dumps: either way, what is stored is
    # what json.dumps would have written, and what it refuses is refused.
    class Tier(str, enum.Enum):
        GOLD = "gold"

    store = Store.open(url).with_tenant("acme")
    document = {
        "tuple": (1, "two", None),
        "keys": {1: "one", True: "yes", None: "none"},
        "tier": Tier.GOLD,
        "numbers": [0, -1, 2**63 - 1, 2**64 - 1, 0.5, 1e300, True, False],
        "text": "caf\u00e9 \U0001f600 \"quoted\" \\ slash",
        "nested": [[{"deep": [{}]}], []],
    }
    written = await store.write_memory("values", document=document)
    assert written["document"] == json.loads(json.dumps(document))
    assert await store.read_memory("values") == written
    for bad in ({"nan": float("nan")}, {"inf": float("inf")}, {"object": object()}, {"bytes": b"x"}):
        with pytest.raises(persist.InvalidInput):
            await store.write_memory("values", document=bad)
    assert await store.read_memory("values") == written

    session = PersistSession("values", store)
    await session.add_items([{"role": "user", "content": ({"type": "input_text", "text": "from a tuple"},)}])
    assert await session.get_items() == [{"role": "user", "content": [{"type": "input_text", "text": "from a tuple"}]}]


async def test_the_feed_follows_a_session(url):
    store = Store.open(url)
    feed = store.feed(session_id="followed")
    assert feed.position == 0
    await store.add_items("followed", [message("one"), message("two", "assistant")])
    first = await asyncio.wait_for(anext(feed), 10)
    second = await asyncio.wait_for(anext(feed), 10)
    assert (first["op"], first["session_id"], first["seq"]) == ("add", "followed", 1)
    assert (second["op"], second["seq"]) == ("add", 2) and second["position"] > first["position"]
    # Iteration waits for the next change.
    waiting = asyncio.ensure_future(anext(feed))
    await asyncio.sleep(0.2)
    assert not waiting.done()
    assert feed.position == second["position"], "readable while a read waits"
    await store.pop_item("followed")
    removed = await asyncio.wait_for(waiting, 10)
    assert removed["op"] == "delete" and removed["seq"] == 2


async def test_a_closed_store_refuses_calls(url):
    async with Store.open(url) as store:
        await store.add_items("s", [message("x")])
    assert store.closed
    with pytest.raises(persist.PersistError):
        await store.get_items("s")


async def test_sessions_of_a_closed_shared_store_open_it_again(sqlite_url):
    first = PersistSession("s", sqlite_url)
    await first.add_items([message("x")])
    await first.store.close()
    again = PersistSession("s", sqlite_url)
    assert again.store is not first.store and not again.store.closed
    assert await again.get_items() == [message("x")]


async def test_calls_run_concurrently(url):
    store = Store.open(url)
    await asyncio.gather(*(store.add_items(f"c{i}", [message(str(i))]) for i in range(50)))
    answers = await asyncio.gather(*(store.get_items(f"c{i}") for i in range(50)))
    assert answers == [[message(str(i))] for i in range(50)]
