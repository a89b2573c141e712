"""A real LangGraph graph on PersistSaver: a chat model (scripted) that calls a tool, multi turn,
an interrupt resumed with a Command, the state's history, a fork from an earlier checkpoint;
the thread's messages are the persist thread's, each stored once; two OS processes drive
threads on one SQLite file."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Annotated, Any

import pytest
from langchain_core.language_models.fake_chat_models import GenericFakeChatModel
from langchain_core.messages import AIMessage, HumanMessage, ToolMessage
from langchain_core.tools import tool
from langgraph.graph import END, START, StateGraph
from langgraph.graph.message import add_messages
from langgraph.prebuilt import ToolNode
from langgraph.types import Command, interrupt
from typing_extensions import TypedDict

from persist import Store
from persist.langgraph import PersistSaver

HERE = Path(__file__).parent


class State(TypedDict):
    messages: Annotated[list, add_messages]


@tool
def weather(city: str) -> str:
    """The weather in a city."""
    return f"It is sunny in {city}."


def scripted(replies: list[AIMessage]) -> GenericFakeChatModel:
    return GenericFakeChatModel(messages=iter(replies))


def chat_graph(model: GenericFakeChatModel, saver: PersistSaver):
    def agent(state: State) -> dict[str, Any]:
        return {"messages": [model.invoke(state["messages"])]}

    def route(state: State) -> str:
        return "tools" if getattr(state["messages"][-1], "tool_calls", None) else END

    builder = StateGraph(State)
    builder.add_node("agent", agent)
    builder.add_node("tools", ToolNode([weather]))
    builder.add_edge(START, "agent")
    builder.add_conditional_edges("agent", route, ["tools", END])
    builder.add_edge("tools", "agent")
    return builder.compile(checkpointer=saver)


def call(city: str, call_id: str) -> AIMessage:
    return AIMessage(content="", tool_calls=[{"name": "weather", "args": {"city": city}, "id": call_id}])


def test_a_chat_with_a_tool_over_turns_is_the_threads_messages_each_once(store):
    saver = PersistSaver(store)
    model = scripted([call("Lisbon", "c1"), AIMessage(content="Sunny in Lisbon."), AIMessage(content="You're welcome.")])
    graph = chat_graph(model, saver)
    config = {"configurable": {"thread_id": "chat-1"}}
    first = graph.invoke({"messages": [HumanMessage(content="Weather in Lisbon?", id="h1")]}, config)
    assert [type(m) for m in first["messages"]] == [HumanMessage, AIMessage, ToolMessage, AIMessage]
    second = graph.invoke({"messages": [HumanMessage(content="Thanks!", id="h2")]}, config)
    assert [m.content for m in second["messages"]][-2:] == ["Thanks!", "You're welcome."]
    # A fresh saver (another process's view) reads the same state back.
    again = chat_graph(scripted([]), PersistSaver(store)).get_state(config)
    assert again.values["messages"] == second["messages"]
    assert again.values["messages"][1].tool_calls[0]["args"] == {"city": "Lisbon"}
    # The thread's persist messages are the conversation, each stored once.
    import asyncio

    hits = asyncio.run(_search(store, "Lisbon"))
    texts = [hit["snippet"] for hit in hits if hit["session_id"] == "chat-1"]
    assert len(texts) == 3, texts  # the question, the tool's answer, the reply; once each
    branches = asyncio.run(_branches(store, "chat-1"))
    assert [branch["items"] for branch in branches] == [6]


async def _search(store: Store, text: str) -> list[dict[str, Any]]:
    return await store.search(text)


async def _branches(store: Store, thread: str) -> list[dict[str, Any]]:
    return await store.branches(thread)


def test_history_time_travel_and_a_fork_are_branches(store):
    saver = PersistSaver(store)
    graph = chat_graph(scripted([AIMessage(content="One."), AIMessage(content="Two."), AIMessage(content="Forked.")]), saver)
    config = {"configurable": {"thread_id": "travel"}}
    graph.invoke({"messages": [HumanMessage(content="first")]}, config)
    graph.invoke({"messages": [HumanMessage(content="second")]}, config)
    history = list(graph.get_state_history(config))
    assert [len(state.values.get("messages", [])) for state in history][:3] == [4, 3, 2]
    # Back to the state after the first answer, and a different question from there.
    after_first = next(state for state in history if len(state.values.get("messages", [])) == 2)
    forked = graph.update_state(after_first.config, {"messages": [HumanMessage(content="another")]}, as_node="tools")
    result = graph.invoke(None, forked)
    assert [m.content for m in result["messages"]] == ["first", "One.", "another", "Forked."]
    latest = graph.get_state(config)
    assert [m.content for m in latest.values["messages"]] == ["first", "One.", "another", "Forked."]
    import asyncio

    branches = asyncio.run(_branches(store, "travel"))
    assert sorted(branch["items"] for branch in branches) == [4, 4], branches


def test_an_interrupt_is_resumed_with_a_command(store):
    def ask(state: State) -> dict[str, Any]:
        answer = interrupt("Which city?")
        return {"messages": [AIMessage(content=f"Noted: {answer}.")]}

    builder = StateGraph(State)
    builder.add_node("ask", ask)
    builder.add_edge(START, "ask")
    builder.add_edge("ask", END)
    graph = builder.compile(checkpointer=PersistSaver(store))
    config = {"configurable": {"thread_id": "interrupted"}}
    paused = graph.invoke({"messages": [HumanMessage(content="Remember my city")]}, config)
    assert paused["__interrupt__"][0].value == "Which city?"
    # Another saver on the store (another process) resumes it.
    other = builder.compile(checkpointer=PersistSaver(store))
    done = other.invoke(Command(resume="Porto"), config)
    assert done["messages"][-1].content == "Noted: Porto."


@pytest.mark.asyncio
async def test_the_async_twins_run_a_graph(store):
    graph = chat_graph(scripted([AIMessage(content="Async hello.")]), PersistSaver(store))
    config = {"configurable": {"thread_id": "async"}}
    result = await graph.ainvoke({"messages": [HumanMessage(content="hi")]}, config)
    assert result["messages"][-1].content == "Async hello."
    state = await graph.aget_state(config)
    assert [m.content for m in state.values["messages"]] == ["hi", "Async hello."]
    assert [s async for s in graph.aget_state_history(config, limit=2)][0].values == state.values


def test_two_processes_drive_threads_on_one_sqlite_file(tmp_path):
    database = tmp_path / "shared.db"
    runs = [
        subprocess.Popen([sys.executable, str(HERE / "graph_worker.py"), f"sqlite:{database}", str(worker), "20"])
        for worker in range(2)
    ]
    assert [run.wait(timeout=300) for run in runs] == [0, 0]
    store = Store.open(f"sqlite:{database}")
    saver = PersistSaver(store)
    for worker in range(2):
        for thread in range(3):
            config = {"configurable": {"thread_id": f"w{worker}-t{thread}"}}
            state = saver.get_tuple(config)
            assert len(state.checkpoint["channel_values"]["messages"]) == 40


def test_a_thread_expires_a_ttl_after_its_last_write_and_a_sweep_erases_it(store):
    import time

    saver = PersistSaver(store, ttl=0.005)  # 0.3 s
    graph = chat_graph(scripted([AIMessage(content=f"Reply {n}.") for n in range(4)]), saver)
    config = {"configurable": {"thread_id": "short-lived"}}
    for turn in range(3):
        graph.invoke({"messages": [HumanMessage(content=f"turn {turn}")]}, config)
        time.sleep(0.2)  # each write moves the expiry of what the latest checkpoint carries on
    state = graph.get_state(config)
    assert [m.content for m in state.values["messages"]][-2:] == ["turn 2", "Reply 2."]
    time.sleep(0.4)
    assert saver.get_tuple(config) is None, "expired: never answered"
    assert list(saver.list(config)) == [] and list(saver.list(None)) == []
    assert saver.sweep() == 1, "the thread is erased"
    import asyncio

    assert asyncio.run(_branches(store, "short-lived")) == [], "its persist messages too"
    assert saver.sweep() == 0
    with pytest.raises(ValueError):
        PersistSaver(store, ttl=0)


def test_every_kind_of_message_comes_back_equal_and_removals_move_the_head(store):
    from langchain_core.messages import RemoveMessage, SystemMessage

    saver = PersistSaver(store)
    graph = chat_graph(scripted([AIMessage(content="ok")]), saver)
    config = {"configurable": {"thread_id": "kinds"}}
    messages = [
        SystemMessage(content="Be brief.", id="s1"),
        HumanMessage(content=[{"type": "text", "text": "look"}, {"type": "image_url", "image_url": {"url": "https://x/y.png"}}], id="h1"),
        AIMessage(
            content="",
            id="a1",
            tool_calls=[{"name": "weather", "args": {"city": "Lisbon", "days": 3}, "id": "c9"}],
            usage_metadata={"input_tokens": 12, "output_tokens": 3, "total_tokens": 15},
            response_metadata={"model": "scripted", "finish": 1.5},
        ),
        ToolMessage(content="sunny", tool_call_id="c9", id="t1", name="weather"),
    ]
    graph.update_state(config, {"messages": messages}, as_node="agent")
    fresh = PersistSaver(store)  # nothing remembered: everything read back from the store
    assert fresh.get_tuple(config).checkpoint["channel_values"]["messages"] == messages
    graph.update_state(config, {"messages": [RemoveMessage(id="t1"), RemoveMessage(id="a1")]}, as_node="agent")
    assert PersistSaver(store).get_tuple(config).checkpoint["channel_values"]["messages"] == messages[:2]
    import asyncio

    branches = asyncio.run(_branches(store, "kinds"))
    assert [branch["items"] for branch in branches] == [4], "a removal writes nothing: the head moved back"


def test_tenants_keep_their_threads_apart(store):
    acme, globex = store.with_tenant("acme"), store.with_tenant("globex")
    config = {"configurable": {"thread_id": "same-id"}}
    chat_graph(scripted([AIMessage(content="for acme")]), PersistSaver(acme)).invoke(
        {"messages": [HumanMessage(content="hi")]}, config
    )
    assert PersistSaver(globex).get_tuple(config) is None
    assert list(PersistSaver(globex).list(None)) == []
    state = PersistSaver(acme).get_tuple(config)
    assert state.checkpoint["channel_values"]["messages"][-1].content == "for acme"
