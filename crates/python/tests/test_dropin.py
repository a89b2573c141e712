"""What makes PersistSession a drop-in for the SDK's SQLiteSession beyond the protocol: its
constructor's arguments, values that come back equal, errors that say what, and a file that
Python's own sqlite3 cannot corrupt from the same process."""

from __future__ import annotations

import math
import random
import sqlite3
import struct
import threading
from pathlib import Path

import pytest
from agents import Agent, RunConfig, Runner
from agents.memory import SessionSettings

import persist
from persist import Store
from persist.agents import PersistSession

pytestmark = pytest.mark.asyncio


# Values: what an app stores comes back equal.


def random_doubles(count: int) -> list[float]:
    rng = random.Random(20261127)
    doubles = []
    while len(doubles) < count:
        value = struct.unpack("<d", rng.getrandbits(64).to_bytes(8, "little"))[0]
        if math.isfinite(value):
            doubles.append(value)
    return doubles + [rng.random() for _ in range(count)]


EXTREMES = [
    1.7976931348623157e308,
    -1.7976931348623157e308,
    1.7e308,
    5e-324,
    2.2250738585072014e-308,
    0.9424502837770503,
    0.1,
    1e21,
    1e-7,
    2**63 - 1,
    -(2**63),
    2**64 - 1,
    0,
]


async def test_numbers_come_back_equal_in_items_and_metadata(url):
    session = PersistSession("numbers", url)
    doubles = random_doubles(500)
    numbers = doubles + EXTREMES
    item = {
        "type": "message",
        "role": "assistant",
        "content": [{"type": "output_text", "text": "x", "logprobs": [{"logprob": d} for d in doubles[:50]]}],
        "numbers": numbers,
    }
    await session.add_items([item])
    [back] = await session.get_items()
    assert back == item
    # Exactly: the same bits, not only equal values.
    assert [struct.pack("<d", float(n)) for n in back["numbers"]] == [struct.pack("<d", float(n)) for n in numbers]
    # The largest double does not make the session unreadable.
    await session.add_items([{"role": "user", "content": [{"type": "input_text", "text": "y", "max": 1.7976931348623157e308}]}])
    assert (await session.get_items())[-1]["content"][0]["max"] == 1.7976931348623157e308

    store = Store.open(url)
    document = {"doubles": doubles[:100], "extremes": EXTREMES}
    await store.write_memory("numbers", document=document)
    assert (await store.read_memory("numbers"))["document"] == document


async def test_negative_zero_keeps_its_sign_where_the_store_can_hold_it(url):
    session = PersistSession("zero", url)
    await session.add_items([{"role": "user", "content": "z", "zero": -0.0}])
    [back] = await session.get_items()
    assert back["zero"] == 0.0
    # PostgreSQL's jsonb (numeric) has no negative zero; SQLite's text and memory keep it.
    if not url.startswith("postgres"):
        assert math.copysign(1.0, back["zero"]) == -1.0


async def test_keys_come_back_equal_whatever_their_order(url):
    # The README says what is kept: every key and value, not their order.
    session = PersistSession("keys", url)
    item = {"zeta": 1, "content": "hi", "alpha": {"z": 1, "a": 2}, "role": "user"}
    await session.add_items([item])
    assert await session.get_items() == [item]


@pytest.mark.parametrize(
    ("value", "says"),
    [
        (2**64, "beyond the 64 bits"),
        (-(10**30), "beyond the 64 bits"),
        (float("nan"), "no NaN or Infinity"),
        (float("-inf"), "no NaN or Infinity"),
        ("\ud800", "lone surrogate"),
        (object(), "type `object`"),
    ],
)
async def test_what_json_cannot_hold_exactly_is_refused_where_it_is(url, value, says):
    session = PersistSession("refused", url)
    with pytest.raises(persist.InvalidInput) as refused:
        await session.add_items([{"role": "user", "content": [{"type": "input_text", "text": "x", "v": value}]}])
    message = str(refused.value)
    assert says in message, message
    assert 'items[0]["content"][0]["v"]' in message, message
    assert "line 1 column" not in message
    assert await session.get_items() == []


# The constructor, as SQLiteSession's.


async def test_settings_as_the_sdks_sessions_take_them(url):
    assert PersistSession("s", url).session_settings == SessionSettings()
    given = PersistSession("s", url, session_settings={"limit": 2})
    assert isinstance(given.session_settings, SessionSettings) and given.session_settings.limit == 2
    with pytest.raises(TypeError):
        PersistSession("s", url, session_settings={"limt": 2})
    with pytest.raises(TypeError):
        PersistSession("s", url, session_settings=3)
    # A run config's settings resolve over them (the SDK calls `session_settings.resolve`).
    await given.add_items([{"role": "user", "content": str(i)} for i in range(4)])
    assert len(await given.get_items()) == 2
    resolved = given.session_settings.resolve(RunConfig(session_settings=SessionSettings(limit=3)).session_settings)
    assert resolved.limit == 3


async def test_a_path_or_memory_as_sqlite_sessions_db_path(tmp_path):
    path = tmp_path / "agents.db"
    by_path = PersistSession("s", path)
    await by_path.add_items([{"role": "user", "content": "on a Path"}])
    by_text = PersistSession("s", str(path))
    assert await by_text.get_items() == [{"role": "user", "content": "on a Path"}]
    by_path.close()
    by_text.close()
    # Each ":memory:" session has a store of its own, as SQLiteSession's.
    first, second = PersistSession("s", ":memory:"), PersistSession("s", ":memory:")
    await first.add_items([{"role": "user", "content": "mine"}])
    assert await second.get_items() == []
    with pytest.raises(TypeError):
        PersistSession("s", 42)  # type: ignore[arg-type]


async def test_a_closed_session_refuses_calls_and_its_last_user_closes_the_store(tmp_path):
    url = f"sqlite:{tmp_path / 'closing.db'}"
    first, second = PersistSession("s", url), PersistSession("t", url)
    first.close()
    first.close()
    for call in (first.get_items(), first.add_items([]), first.pop_item(), first.clear_session()):
        with pytest.raises(RuntimeError, match="PersistSession is closed"):
            await call
    assert not second.store.closed, "another session still uses it"
    store = second.store
    second.close()
    assert store.closed
    # Opened again by the next session.
    await PersistSession("s", url).add_items([{"role": "user", "content": "again"}])


async def test_a_missing_folder_and_bad_settings_say_what(tmp_path):
    with pytest.raises(persist.InvalidInput, match="does not exist"):
        Store.open(f"sqlite:{tmp_path / 'no' / 'such' / 'agents.db'}")
    with pytest.raises(persist.InvalidInput, match="durability"):
        Store.open(f"sqlite:{tmp_path / 'a.db'}", durability="fast")  # type: ignore[arg-type]
    with pytest.raises(persist.InvalidInput, match="busy_timeout"):
        Store.open(f"sqlite:{tmp_path / 'a.db'}", busy_timeout=-1)
    store = Store.open(f"sqlite:{tmp_path / 'a.db'}", busy_timeout=30, durability="full")
    await store.add_items("s", [{"role": "user", "content": "durable"}])
    assert await store.get_items("s") == [{"role": "user", "content": "durable"}]
    await store.close()
    with sqlite3.connect(tmp_path / "a.db") as other:
        assert other.execute("PRAGMA journal_mode").fetchone() == ("wal",)


async def test_a_runner_takes_the_session_with_a_run_configs_settings(url):
    from scripted import ScriptedModel, get_weather

    session = PersistSession("run", url, session_settings={"limit": 10})
    agent = Agent(name="a", model=ScriptedModel(), tools=[get_weather])
    settings = RunConfig(session_settings=SessionSettings(limit=5))
    result = await Runner.run(agent, "What is the weather?", session=session, run_config=settings)
    assert result.final_output.startswith("Sunny in Paris")
    assert len(await session.get_items()) == 4


# Two SQLite libraries in one process: Python's sqlite3 never opens a file persist holds, and
# persist never opens one sqlite3 holds.


async def test_sqlite3_cannot_open_a_file_persist_has_open(tmp_path):
    path = tmp_path / "agents.db"
    session = PersistSession("s", path)
    await session.add_items([{"role": "user", "content": "hi"}])
    for database, uri in ((str(path), False), (path, False), (f"file:{path}?mode=ro", True), (f"file://{path}", True)):
        with pytest.raises(persist.Unsupported, match="two SQLite"):
            sqlite3.connect(database, uri=uri)
    # The SDK's own SQLiteSession on the same file is refused before it writes anything.
    from agents import SQLiteSession

    with pytest.raises(persist.Unsupported):
        SQLiteSession("s", path)
    # Other files, and in-memory databases, are sqlite3's as ever.
    sqlite3.connect(":memory:").close()
    sqlite3.connect(tmp_path / "other.db").close()
    session.close()
    # Once persist has closed it, sqlite3 may open it (and reads what persist wrote).
    with sqlite3.connect(f"file:{path}?mode=ro", uri=True) as reader:
        assert reader.execute("PRAGMA integrity_check").fetchone() == ("ok",)
        assert reader.execute("SELECT count(*) FROM messages_view").fetchone() == (1,)
    reader.close()


async def test_persist_cannot_open_a_file_sqlite3_has_open(tmp_path):
    path = tmp_path / "agents.db"
    holder = sqlite3.connect(path)
    holder.execute("CREATE TABLE t (x)")
    holder.commit()
    with pytest.raises(persist.Unsupported, match="another SQLite library"):
        Store.open(f"sqlite:{path}")
    holder.close()
    store = Store.open(f"sqlite:{path}")
    await store.add_items("s", [{"role": "user", "content": "after"}])
    await store.close()


async def test_threads_writing_through_both_libraries_damage_nothing(tmp_path):
    # As reproduced: SQLiteSession and PersistSession writing one file from two threads of one
    # process. Whichever opens second is refused; what the other wrote is whole.
    from agents import SQLiteSession

    path = tmp_path / "agents.db"
    errors: list[BaseException] = []
    written = []

    def sdk_writer() -> None:
        import asyncio

        try:
            session = SQLiteSession("sdk", path)
        except persist.Unsupported as refused:
            errors.append(refused)
            return
        try:
            for i in range(100):
                asyncio.run(session.add_items([{"role": "user", "content": f"sdk {i}"}]))
        finally:
            session.close()

    session = PersistSession("persist", path)
    thread = threading.Thread(target=sdk_writer)
    thread.start()
    for i in range(100):
        await session.add_items([{"role": "user", "content": f"persist {i}"}])
        written.append(i)
    thread.join()
    assert len(errors) == 1 and isinstance(errors[0], persist.Unsupported)
    assert len(await session.get_items()) == 100
    session.close()
    with sqlite3.connect(path) as check:
        assert check.execute("PRAGMA integrity_check").fetchone() == ("ok",)
    check.close()


async def test_the_errors_are_exported_for_type_checkers():
    from persist import Conflict, InvalidInput, Unsupported

    assert (Conflict, InvalidInput, Unsupported) == (persist.errors.Conflict, persist.errors.InvalidInput, persist.errors.Unsupported)
    assert set(persist.errors.__all__) <= set(persist.__all__)
    assert Path(persist.__file__).with_name("py.typed").exists()
