"""Live replies: the writer (`LiveReply`) on one store and across stores, and Agents SDK runs
written live (`run_streamed_live`), followed and stopped from another process."""

from __future__ import annotations

import asyncio
import json
import sys
import time
from pathlib import Path

import pytest
from agents import Agent, Runner, function_tool
from agents.testing import ScriptedModel, assistant_message
from streaming import (
    REASONING_1,
    REASONING_2,
    TEXT_1,
    TEXT_2,
    ChunkingModel,
    tool_calls,
    weather_agent,
    weather_script,
)

from persist import (
    Conflict,
    LiveReply,
    OffsetConflict,
    ReplyRunning,
    ReplyStopped,
    Store,
    Unavailable,
    apply_chunk,
    follow,
)
from persist.agents import PersistSession, run_streamed_live

FOLLOWER = Path(__file__).with_name("follower.py")
USER = {"role": "user", "content": "Weather in Paris?"}


async def read(store: Store, session_id: str, reply_id: str, offset: str = "0") -> tuple[list[dict], str | None]:
    """The reply's parts from `offset` to its end, and how it ended."""
    parts: list[dict] = []
    status = None
    async for chunk in follow(store, session_id, reply_id, offset):
        status = apply_chunk(parts, chunk) or status
    return parts, status


class Recording:
    """A store whose writer's calls are counted (and can be slowed or made to fail)."""

    def __init__(self, store: Store, *, delay: float = 0.0) -> None:
        self.store, self.delay = store, delay
        self.appends: list[tuple[str, list]] = []
        self.in_flight = self.most_in_flight = 0
        self.fail: list[str] = []  # "after" (written, answer lost) or "before", one per append

    def __getattr__(self, name):
        return getattr(self.store, name)

    async def append_reply(self, session_id, reply_id, offset, parts):
        self.in_flight += 1
        self.most_in_flight = max(self.most_in_flight, self.in_flight)
        try:
            self.appends.append((offset, parts))
            await asyncio.sleep(self.delay)
            failure = self.fail.pop(0) if self.fail else None
            if failure == "before":
                raise Unavailable("the store is busy", "temporary")
            answer = await self.store.append_reply(session_id, reply_id, offset, parts)
            if failure == "after":
                raise Unavailable("the call timed out", "timeout")
            return answer
        finally:
            self.in_flight -= 1


# The writer.


async def test_offsets_repeats_and_conflicts(sqlite_url):
    store = Store.open(sqlite_url)
    started = await store.start_reply("s", [USER])
    assert (started["status"], started["offset"], started["end"]) == ("in_progress", "0", None)
    assert started["parent_id"] is not None and started["lease"] == 30.0
    reply = started["id"]
    first = await store.append_reply("s", reply, "0", [{"type": "reasoning", "text": "Hm"}])
    assert (first["offset"], first["written"]) == ("0.2", True)
    parts = [{"type": "reasoning", "text": "m."}, {"type": "text", "text": "Hel"}]
    second = await store.append_reply("s", reply, "0.2", parts)
    assert second["offset"] == "1.3"
    repeat = await store.append_reply("s", reply, "0.2", parts)
    assert (repeat["offset"], repeat["written"]) == ("1.3", False)
    with pytest.raises(OffsetConflict) as gap:
        await store.append_reply("s", reply, "3", [{"type": "text", "text": "x"}])
    assert (gap.value.offset, gap.value.reply_id) == ("1.3", reply)
    with pytest.raises(OffsetConflict) as diverged:
        await store.append_reply("s", reply, "0.2", [{"type": "text", "text": "other"}])
    assert diverged.value.offset == "1.3"
    done = await store.finish_reply("s", reply, offset="1.3", parts=[{"type": "text", "text": "lo"}])
    assert (done["status"], done["end"], done["offset"]) == ("completed", "complete", "1.5")
    assert (await store.finish_reply("s", reply))["written"] is False
    assert await read(store, "s", reply) == ([{"type": "reasoning", "text": "Hmm."}, {"type": "text", "text": "Hello"}], "complete")
    with pytest.raises(Conflict) as ended:
        await store.append_reply("s", reply, "1.5", [{"type": "text", "text": "!"}])
    assert ended.value.code == "message_complete"
    assert (await store.get_items("s"))[-1]["content"] == [{"type": "output_text", "text": "Hello"}]


async def test_one_reply_per_session_across_two_stores(sqlite_url):
    one, two = Store.open(sqlite_url), Store.open(sqlite_url)
    reply = await LiveReply.start(one, "s", [USER])
    with pytest.raises(ReplyRunning) as running:
        await two.start_reply("s")
    assert running.value.reply_id == reply.id
    with pytest.raises(ReplyRunning):
        await LiveReply.start(two, "s")
    assert (await two.start_reply("other"))["status"] == "in_progress"  # another session's
    reply.text("done")
    assert (await reply.finish())["end"] == "complete"
    assert await two.stop_reply("s") == {"stopped": False, "reply_id": None}
    after = await LiveReply.start(two, "s", idempotency_key="retry")
    assert after.parent_id == reply.id  # the reply before it, ended
    again = await one.start_reply("s", idempotency_key="retry")  # sent again: the same reply
    assert (again["id"], again["parent_id"], again["written"]) == (after.id, reply.id, False)
    await after.interrupt("test over")


async def test_deltas_are_joined_while_one_append_is_in_flight(sqlite_url):
    store = Recording(Store.open(sqlite_url), delay=0.1)
    reply = await LiveReply.start(store, "s", [USER])
    reply.reasoning("Think")
    await asyncio.sleep(0.01)  # the first append is in flight
    for word in ["ing", "."]:
        reply.reasoning(word)
    for char in "Hello, world":
        reply.text(char)
        await asyncio.sleep(0)  # the writer waits for its append
    reply.tool_call("call_1", "get_weather", '{"city": "Paris"}')
    await reply.flush()
    assert store.most_in_flight == 1
    assert len(store.appends) == 2, store.appends
    assert store.appends[1] == (
        "0.5",
        [
            {"type": "reasoning", "text": "ing."},
            {"type": "text", "text": "Hello, world"},
            {"type": "tool_call", "id": "call_1", "name": "get_weather", "arguments": {"city": "Paris"}},
        ],
    )
    assert reply.offset == "3"
    reply.tool_result("call_1", "sunny")
    reply.file("image/png", "https://example.com/map.png", name="map.png")
    reply.text("It is sunny.")
    state = await reply.finish()
    assert (state["end"], state["offset"], reply.offset) == ("complete", "5.12", "5.12")
    parts, status = await read(store.store, "s", reply.id)
    assert status == "complete" and parts == reply.parts
    assert parts[3:] == [
        {"type": "tool_result", "call_id": "call_1", "output": "sunny", "is_error": False},
        {"type": "file", "media_type": "image/png", "uri": "https://example.com/map.png", "name": "map.png"},
        {"type": "text", "text": "It is sunny."},
    ]


async def test_an_unavailable_append_is_sent_again_and_written_once(sqlite_url):
    store = Recording(Store.open(sqlite_url))
    store.fail = ["after", "before"]  # the first append written, its answer lost; its repeat refused
    reply = await LiveReply.start(store, "s", [USER])
    reply.text("Hello")
    await reply.flush()
    reply.text(" world")
    await reply.finish()
    assert [offset for offset, _ in store.appends] == ["0", "0", "0", "0.5"]
    assert await read(store.store, "s", reply.id) == ([{"type": "text", "text": "Hello world"}], "complete")
    assert reply.error is None


async def test_a_stop_ends_the_writing(sqlite_url):
    store, client = Store.open(sqlite_url), Store.open(sqlite_url)
    reply = await LiveReply.start(store, "s", [USER])
    reply.text("Once upon")
    await reply.flush()
    answer = await client.stop_reply("s")
    assert answer == {"stopped": True, "reply_id": reply.id}
    await asyncio.wait_for(reply.stopped.wait(), 10)  # heard by the watch, nothing written
    reply.text(" a time")
    state = await reply.finish()
    assert (state["status"], state["end"]) == ("incomplete", "stopped")
    assert await read(client, "s", reply.id) == ([{"type": "text", "text": "Once upon"}], "stopped")
    with pytest.raises(ReplyStopped) as stopped:
        await store.append_reply("s", reply.id, "0.9", [{"type": "text", "text": "!"}])
    assert stopped.value.reply_id == reply.id
    assert (await client.stop_reply("s", reply.id))["stopped"] is False

    # Without the watch, the next append hears it.
    unwatched = await LiveReply.start(store, "s", watch=False)
    await client.stop_reply("s", unwatched.id)
    unwatched.text("late")
    await asyncio.wait_for(unwatched.stopped.wait(), 10)
    assert (await unwatched.interrupt("x"))["end"] == "stopped"
    assert unwatched.error is None


async def test_follow_from_an_offset_and_resume(sqlite_url):
    store = Store.open(sqlite_url)
    reply = await LiveReply.start(store, "s", [USER])
    reply.text("Hello")
    await reply.flush()
    follower = follow(store, "s", reply.id, "0.2")
    first = await follower.__anext__()
    assert first == {"type": "delta", "index": 0, "part": {"type": "text", "text": "llo"}, "offset": "0.5"}
    assert follower.offset == "0.5"
    reply.text(" world")
    reply.tool_call("c", "f", {})
    await reply.flush()
    assert (await follower.__anext__())["part"] == {"type": "text", "text": " world"}
    resume = follower.offset
    reply.text("!")
    await reply.finish()
    rest, status = await read(store, "s", reply.id, resume)
    assert status == "complete" and resume == "0.11"
    parts = [{"type": "text", "text": "Hello world"}]
    async for chunk in follow(store, "s", reply.id, resume):
        apply_chunk(parts, chunk)
    assert parts == reply.parts == [
        {"type": "text", "text": "Hello world"},
        {"type": "tool_call", "id": "c", "name": "f", "arguments": {}},
        {"type": "text", "text": "!"},
    ]


async def test_a_writer_silent_past_its_lease_is_settled(sqlite_url):
    store, client = Store.open(sqlite_url), Store.open(sqlite_url)
    started = await store.start_reply("s", [USER], lease=1.0)
    await store.append_reply("s", started["id"], "0", [{"type": "text", "text": "abc"}])
    began = time.monotonic()
    assert await read(client, "s", started["id"]) == ([{"type": "text", "text": "abc"}], "interrupted")
    assert 0.5 < time.monotonic() - began < 10
    with pytest.raises(Conflict) as ended:
        await store.append_reply("s", started["id"], "0.3", [{"type": "text", "text": "d"}])
    assert ended.value.code == "message_complete"

    # A LiveReply renews its lease while it waits: alive after twice its lease.
    reply = await LiveReply.start(store, "s", lease=1.0)
    reply.text("still")
    await asyncio.sleep(1.5)
    reply.text(" here")
    assert (await reply.finish())["end"] == "complete"
    assert await read(client, "s", reply.id) == ([{"type": "text", "text": "still here"}], "complete")


async def test_as_a_context_manager(sqlite_url):
    store = Store.open(sqlite_url)
    with pytest.raises(RuntimeError):
        async with await LiveReply.start(store, "s", [USER]) as reply:
            reply.text("partial")
            raise RuntimeError("the model failed")
    assert await read(store, "s", reply.id) == ([{"type": "text", "text": "partial"}], "interrupted")
    async with await LiveReply.start(store, "s") as second:
        second.text("whole")
    assert await read(store, "s", second.id) == ([{"type": "text", "text": "whole"}], "complete")


# Agents SDK runs written live.


async def test_a_completed_live_run_saves_what_the_sdk_saves(url):
    store = Store.open(url)
    plain = PersistSession("plain", store)
    result = Runner.run_streamed(weather_agent(ChunkingModel(weather_script())), USER["content"], session=plain)
    plain_events = [type(event).__name__ async for event in result.stream_events()]

    session = PersistSession("live", store)
    model = ChunkingModel(weather_script())
    run = run_streamed_live(weather_agent(model), USER["content"], session=session)
    events = [type(event).__name__ async for event in run.stream_events()]
    model.assert_complete()
    assert run.result.final_output == TEXT_2 == result.final_output
    assert events == plain_events
    assert await session.get_items() == await plain.get_items()
    assert len(await session.get_items()) == 7

    reply = run.reply
    assert reply is not None and not run.stopped
    parts, status = await read(store, "live", reply.id)
    assert status == "complete"
    assert parts == [
        {"type": "reasoning", "text": REASONING_1},
        {"type": "text", "text": TEXT_1},
        {"type": "tool_call", "id": "call_1", "name": "get_weather", "arguments": {"city": "Paris"}},
        {"type": "tool_result", "call_id": "call_1", "output": "Paris: sunny, 21C", "is_error": False},
        {"type": "reasoning", "text": REASONING_2},
        {"type": "text", "text": TEXT_2},
    ]
    branches = await session.branches()
    assert [branch["active"] for branch in branches] == [False, True]
    assert branches[0]["branch_id"] == reply.id  # the reply, on a branch of its own
    # The next run reads what the SDK saved, and writes after it.
    again = ScriptedModel([[assistant_message("You are welcome.", item_id="msg_3")]])
    await Runner.run(Agent(name="Weather", model=again), "Thanks", session=session)
    assert again.first_call.input == [*await plain.get_items(), {"role": "user", "content": "Thanks"}]


async def test_stopped_from_another_process(shared_url):
    store = Store.open(shared_url)
    session = PersistSession("s", store)
    calls = len(tool_calls)
    model = ChunkingModel(weather_script(), delay=0.01, hold=(2, 3))
    run = run_streamed_live(weather_agent(model), USER["content"], session=session, lease=5.0)
    reply = await asyncio.wait_for(run.started(), 10)
    assert reply is not None and reply.parent_id is not None

    # This process reads the reply up to the middle of its first text.
    mine: list[dict] = []
    follower = follow(store, "s", reply.id)
    async for chunk in follower:
        mine.append(chunk)
        if chunk["part"]["type"] == "text":
            break
    middle = follower.offset
    assert middle.startswith("1.")

    # Another process follows from there, stops the reply once the second answer streams.
    began = time.monotonic()
    process = await asyncio.create_subprocess_exec(
        sys.executable, str(FOLLOWER), shared_url, "s", reply.id, middle, f"5.{3 * 4}",
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    out, err = await asyncio.wait_for(process.communicate(), 60)
    assert process.returncode == 0, err.decode()
    lines = [json.loads(line) for line in out.decode().splitlines()]
    theirs = [line for line in lines if "type" in line]
    assert {"stop": {"stopped": True, "reply_id": reply.id}} in lines
    assert theirs[-1]["type"] == "end" and theirs[-1]["status"] == "stopped"
    result = await asyncio.wait_for(run.wait(), 10)
    print(f"stopped from another process in {time.monotonic() - began:.2f} s")

    # The run was cancelled mid-answer: the model's stream held, no final output.
    assert run.stopped and result.final_output is None
    assert model.streams == 2 and len(tool_calls) == calls + 1

    # Each part once: what this process read, then what the other one read from its offset.
    parts, status = await read(store, "s", reply.id)
    assert status == "stopped"
    seen: list[dict] = []
    for chunk in mine + theirs:
        apply_chunk(seen, chunk)
    assert seen == parts
    assert parts[:5] == [
        {"type": "reasoning", "text": REASONING_1},
        {"type": "text", "text": TEXT_1},
        {"type": "tool_call", "id": "call_1", "name": "get_weather", "arguments": {"city": "Paris"}},
        {"type": "tool_result", "call_id": "call_1", "output": "Paris: sunny, 21C", "is_error": False},
        {"type": "reasoning", "text": REASONING_2},
    ]
    partial = parts[5]["text"]
    assert len(parts) == 6 and partial == TEXT_2[: 3 * 4]

    # The session: the input, the turn the SDK saved, then the answer as far as it was streamed.
    items = await session.get_items()
    assert items[0] == {"role": "user", "content": USER["content"]}
    assert [item.get("type") for item in items[1:5]] == ["reasoning", "message", "function_call", "function_call_output"]
    assert items[2]["content"][0]["text"] == TEXT_1
    assert items[5]["role"] == "assistant" and items[5]["status"] == "incomplete"
    assert [block["text"] for block in items[5]["content"]] == [partial]
    assert len(items) == 6


class Gate:
    """A tool that waits until it is cancelled."""

    def __init__(self) -> None:
        self.entered = asyncio.Event()

    def tool(self):
        @function_tool
        async def slow_weather(city: str) -> str:
            """The weather in a city, slowly."""
            self.entered.set()
            await asyncio.sleep(3600)
            return "never"

        return slow_weather


async def test_stopped_before_the_sdk_saved_anything(sqlite_url):
    store, client = Store.open(sqlite_url), Store.open(sqlite_url)
    session = PersistSession("s", store)
    gate = Gate()
    script = weather_script("slow_weather")
    agent = Agent(name="Weather", model=ChunkingModel(script), tools=[gate.tool()])
    run = run_streamed_live(agent, USER["content"], session=session)
    await asyncio.wait_for(gate.entered.wait(), 10)  # the tool runs: nothing generated is saved
    reply = await run.started()
    assert reply is not None
    while not any(part["type"] == "tool_call" for part in reply.parts):
        await asyncio.sleep(0.01)
    await reply.flush()
    assert (await client.stop_reply("s"))["stopped"] is True
    await asyncio.wait_for(run.wait(), 10)
    assert run.stopped and run.result.final_output is None
    parts, status = await read(client, "s", reply.id)
    assert status == "stopped" and [part["type"] for part in parts] == ["reasoning", "text", "tool_call"]

    # The reply is on the active branch: the session shows it, interrupted.
    items = await session.get_items()
    assert items == [
        {"role": "user", "content": USER["content"]},
        {"type": "message", "role": "assistant", "status": "incomplete", "content": [{"type": "output_text", "text": TEXT_1}]},
        {"type": "function_call", "call_id": "call_1", "name": "slow_weather", "arguments": '{"city":"Paris"}', "status": "incomplete"},
    ]
    # The next run: the SDK leaves out the call that has no output.
    again = ScriptedModel([[assistant_message("Sorry.", item_id="msg_3")]])
    await Runner.run(Agent(name="Weather", model=again), "Never mind", session=session)
    assert again.first_call.input == [*items[:2], {"role": "user", "content": "Never mind"}]
    assert len(await session.get_items()) == 5


async def test_a_failed_run_ends_the_reply_interrupted(sqlite_url):
    store = Store.open(sqlite_url)
    session = PersistSession("s", store)
    script = weather_script("broken_weather")
    script[1] = RuntimeError("the model is down")
    run = run_streamed_live(weather_agent(ChunkingModel(script)), USER["content"], session=session)
    with pytest.raises(RuntimeError, match="the model is down"):
        async for _ in run.stream_events():
            pass
    parts, status = await read(store, "s", run.reply.id)
    assert status == "interrupted"
    assert parts[3] == {"type": "tool_result", "call_id": "call_1", "output": parts[3]["output"], "is_error": True}
    # The SDK saved the first turn; the failed call streamed nothing.
    items = await session.get_items()
    assert [item.get("type") for item in items] == [None, "reasoning", "message", "function_call", "function_call_output"]


async def test_a_cancelled_run_keeps_what_was_streamed(sqlite_url):
    store = Store.open(sqlite_url)
    session = PersistSession("s", store)
    model = ChunkingModel(weather_script(), hold=(2, 2))
    run = run_streamed_live(weather_agent(model), USER["content"], session=session)
    await asyncio.wait_for(model.held.wait(), 10)
    reply = await run.started()
    while reply.offset != "5.8":
        await asyncio.sleep(0.01)
    run.cancel()
    await asyncio.wait_for(run.wait(), 10)
    assert not run.stopped and run.result.final_output is None
    parts, status = await read(store, "s", reply.id)
    assert status == "interrupted" and parts[-1] == {"type": "text", "text": TEXT_2[:8]}
    items = await session.get_items()
    assert len(items) == 6 and items[-1]["content"][0]["text"] == TEXT_2[:8]


async def test_a_run_while_another_reply_runs_fails(sqlite_url):
    store = Store.open(sqlite_url)
    running = await LiveReply.start(store, "s", [USER])
    model = ChunkingModel(weather_script())
    run = run_streamed_live(weather_agent(model), "Again?", session=PersistSession("s", store))
    with pytest.raises(ReplyRunning) as refused:
        await asyncio.wait_for(run.wait(), 10)
    assert refused.value.reply_id == running.id and run.reply is None
    assert await run.started() is None
    await running.finish()


async def test_one_live_run_per_session_object(sqlite_url):
    session = PersistSession("s", Store.open(sqlite_url))
    run = run_streamed_live(weather_agent(ChunkingModel(weather_script())), "Hi", session=session)
    with pytest.raises(RuntimeError):
        run_streamed_live(weather_agent(ChunkingModel(weather_script())), "Hi", session=session)
    await run.wait()
    assert session._live is None
