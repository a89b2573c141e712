"""PersistStore, LangGraph's long-term memory on persist: items by namespace and key, filters,
namespaces listed, semantic search with a deterministic embedder, TTLs that expire items for
every reader (and a sweep that deletes them), tenants apart, and a graph that reads and writes
it through ``store=``."""

from __future__ import annotations

import time
import uuid
from typing import Annotated

import pytest
from langchain_core.messages import AIMessage, HumanMessage
from langgraph.graph import END, START, StateGraph
from langgraph.graph.message import add_messages
from langgraph.store.base import BaseStore
from typing_extensions import TypedDict

from persist.langgraph import PersistSaver, PersistStore

WORDS = ["coffee", "tea", "pizza", "pasta", "rain", "sun", "cat", "dog"]


def embed(texts: list[str]) -> list[list[float]]:
    """A deterministic embedder: how often each of a few words occurs."""
    return [[float(text.lower().count(word)) for word in WORDS] for text in texts]


def test_items_by_namespace_and_key(store):
    memory = PersistStore(store)
    memory.put(("users", "ada"), "prefs", {"diet": "vegan", "n": 1})
    first = memory.get(("users", "ada"), "prefs")
    assert first.value == {"diet": "vegan", "n": 1} and first.namespace == ("users", "ada")
    time.sleep(0.01)
    memory.put(("users", "ada"), "prefs", {"diet": "vegan", "n": 2})
    second = memory.get(("users", "ada"), "prefs")
    assert second.value["n"] == 2
    assert second.created_at == first.created_at and second.updated_at > first.updated_at
    assert memory.get(("users", "bob"), "prefs") is None
    assert memory.get(("users",), "prefs") is None, "a namespace is not its children's"
    memory.delete(("users", "ada"), "prefs")
    assert memory.get(("users", "ada"), "prefs") is None
    # A fresh store object (another process) sees what this one wrote.
    memory.put(("users", "ada"), "facts", {"likes": "tea"})
    assert PersistStore(store).get(("users", "ada"), "facts").value == {"likes": "tea"}


def test_search_filters_and_lists_namespaces(store):
    memory = PersistStore(store)
    for user, city, age in [("ada", "Lisbon", 36), ("bob", "Porto", 25), ("cy", "Lisbon", 51)]:
        memory.put(("users", user, "profile"), "main", {"city": city, "age": age})
    memory.put(("teams", "core"), "main", {"city": "Lisbon"})
    lisbon = memory.search(("users",), filter={"city": "Lisbon"})
    assert sorted(item.namespace[1] for item in lisbon) == ["ada", "cy"]
    older = memory.search(("users",), filter={"age": {"$gte": 36}, "city": {"$ne": "Porto"}})
    assert sorted(item.namespace[1] for item in older) == ["ada", "cy"]
    assert len(memory.search(("users",), limit=2)) == 2
    assert len(memory.search(("users",), limit=2, offset=2)) == 1
    assert len(memory.search(())) == 4
    assert memory.list_namespaces(prefix=("users",), max_depth=2) == [("users", "ada"), ("users", "bob"), ("users", "cy")]
    assert memory.list_namespaces(suffix=("profile",), limit=1, offset=1) == [("users", "bob", "profile")]
    assert memory.list_namespaces(prefix=("users", "*", "profile")) == [
        ("users", "ada", "profile"),
        ("users", "bob", "profile"),
        ("users", "cy", "profile"),
    ]
    assert ("teams", "core") in memory.list_namespaces()


def test_semantic_search_ranks_by_the_apps_embeddings(store):
    memory = PersistStore(store, index={"dims": len(WORDS), "embed": embed, "fields": ["text"]})
    memory.put(("notes",), "1", {"text": "coffee coffee and a cat"})
    memory.put(("notes",), "2", {"text": "pizza with pasta in the rain"})
    memory.put(("notes",), "3", {"text": "tea and coffee"})
    memory.put(("notes",), "4", {"text": "not indexed: pizza"}, index=False)
    found = memory.search(("notes",), query="coffee")
    assert [item.key for item in found[:2]] == ["1", "3"]
    assert found[0].score is not None and found[0].score >= found[1].score
    assert found[-1].key == "4" and found[-1].score is None
    assert memory.search(("notes",), query="pizza pasta", limit=1)[0].key == "2"


@pytest.mark.asyncio
async def test_the_async_batch_and_ttl_expiry(store):
    memory = PersistStore(store, ttl={"default_ttl": 0.005, "refresh_on_read": True})  # 0.3 s
    await memory.aput(("s",), "short", {"v": 1})
    await memory.aput(("s",), "kept", {"v": 2}, ttl=None)
    assert (await memory.aget(("s",), "short")).value == {"v": 1}
    time.sleep(0.45)
    assert await memory.aget(("s",), "short") is None, "expired: never answered"
    assert [item.key for item in await memory.asearch(("s",))] == ["kept"]
    assert await memory.alist_namespaces() == [("s",)]
    await memory.aput(("gone",), "x", {"v": 3}, ttl=0.001)
    time.sleep(0.15)
    assert await memory.alist_namespaces() == [("s",)], "an expired item's namespace is not listed"
    assert await memory.asweep() == 2


def test_reads_refresh_the_ttl(store):
    memory = PersistStore(store, ttl={"default_ttl": 0.01, "refresh_on_read": True})  # 0.6 s
    memory.put(("r",), "k", {"v": 1})
    for _ in range(4):
        time.sleep(0.3)
        assert memory.get(("r",), "k") is not None, "each read moved the expiry"
    time.sleep(0.3)
    assert memory.get(("r",), "k", refresh_ttl=False) is not None
    time.sleep(0.45)
    assert memory.get(("r",), "k") is None


def test_tenants_keep_apart(store):
    acme, globex = PersistStore(store.with_tenant("acme")), PersistStore(store.with_tenant("globex"))
    acme.put(("users", "ada"), "prefs", {"tenant": "acme"})
    assert globex.get(("users", "ada"), "prefs") is None
    assert globex.list_namespaces() == []
    assert acme.get(("users", "ada"), "prefs").value == {"tenant": "acme"}


class State(TypedDict):
    messages: Annotated[list, add_messages]


def test_a_graph_remembers_across_threads(store):
    def remember(state: State, *, store: BaseStore) -> dict:
        text = state["messages"][-1].content
        if text.startswith("remember "):
            store.put(("memories", "ada"), str(uuid.uuid4()), {"text": text.removeprefix("remember ")})
            return {"messages": [AIMessage(content="Noted.")]}
        known = [item.value["text"] for item in store.search(("memories", "ada"))]
        return {"messages": [AIMessage(content=", ".join(sorted(known)))]}

    builder = StateGraph(State)
    builder.add_node("remember", remember)
    builder.add_edge(START, "remember")
    builder.add_edge("remember", END)
    graph = builder.compile(checkpointer=PersistSaver(store), store=PersistStore(store))
    graph.invoke({"messages": [HumanMessage(content="remember tea")]}, {"configurable": {"thread_id": "a"}})
    graph.invoke({"messages": [HumanMessage(content="remember rain")]}, {"configurable": {"thread_id": "b"}})
    answer = graph.invoke({"messages": [HumanMessage(content="what do you know?")]}, {"configurable": {"thread_id": "c"}})
    assert answer["messages"][-1].content == "rain, tea"
