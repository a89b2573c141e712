"""One OS process of test_graph's race: drives three threads of its own through `turns` turns
each, interleaved, on the store at `url` (sync invoke: LangGraph's synchronous saver calls)."""

from __future__ import annotations

import sys
from typing import Annotated

from langchain_core.messages import AIMessage, HumanMessage
from langgraph.graph import END, START, StateGraph
from langgraph.graph.message import add_messages
from typing_extensions import TypedDict

from persist import Store
from persist.langgraph import PersistSaver


class State(TypedDict):
    messages: Annotated[list, add_messages]


def echo(state: State) -> dict:
    return {"messages": [AIMessage(content=f"echo: {state['messages'][-1].content}")]}


def main(url: str, worker: str, turns: int) -> None:
    builder = StateGraph(State)
    builder.add_node("echo", echo)
    builder.add_edge(START, "echo")
    builder.add_edge("echo", END)
    graph = builder.compile(checkpointer=PersistSaver(Store.open(url)))
    for turn in range(turns):
        for thread in range(3):
            config = {"configurable": {"thread_id": f"w{worker}-t{thread}"}}
            graph.invoke({"messages": [HumanMessage(content=f"turn {turn}")]}, config)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], int(sys.argv[3]))
