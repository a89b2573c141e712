"""persist's LangGraph checkpointer against LangGraph's own, on the same graph, side by side in
one run.

    python bench_langgraph.py            # the figures BENCHMARKS.md quotes (a few minutes)
    python bench_langgraph.py --quick    # a smoke run: every row runs, nothing is judged

The graph is a chat: a user message in, one node answering with an assistant message of about
300 bytes (words), `add_messages` keeping the conversation. A turn is one `invoke` on a thread
(LangGraph reads the latest checkpoint, writes the input's checkpoint and the node's, with their
pending writes). 50 turns on one thread; the figure is turns per second (the median of the
runs, each on a fresh file or schema) and the bytes the store holds afterwards.

1. SQLite, one caller: PersistSaver (sync `invoke`) against SqliteSaver, and PersistSaver
   (`ainvoke`) against AsyncSqliteSaver. Bytes: the database file and its WAL, after a
   checkpoint of the WAL.
2. PostgreSQL, when PERSIST_POSTGRES_URL (or --pg-url) is set: PersistSaver against
   PostgresSaver (psycopg), each in a schema of its own; bytes: the schema's relations
   (`pg_total_relation_size`: tables, indexes, TOAST).
3. InMemorySaver, the ceiling: LangGraph's own work per turn with nothing stored.
4. Eight OS processes on one SQLite file, each driving threads of its own (sync `invoke`):
   turns per second over all of them and the exceptions raised ("database is locked" counted,
   not a crash), for PersistSaver and SqliteSaver.

Exit status 1 when persist raised or a row could not run; the peers' errors are reported.
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import os
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from typing import Annotated

from langchain_core.messages import AIMessage, HumanMessage
from langgraph.graph import END, START, StateGraph
from langgraph.graph.message import add_messages
from typing_extensions import TypedDict

WORDS = "the order ships from our warehouse in two days and you can track it from your account page".split()


class State(TypedDict):
    messages: Annotated[list, add_messages]


def text(turn: int, role: str) -> str:
    words = [WORDS[(turn * 7 + i) % len(WORDS)] for i in range(55)]
    return f"{role} {turn}: " + " ".join(words)


def answer(state: State) -> dict:
    turn = len(state["messages"]) // 2
    return {"messages": [AIMessage(content=text(turn, "assistant"))]}


def graph_with(saver):
    builder = StateGraph(State)
    builder.add_node("answer", answer)
    builder.add_edge(START, "answer")
    builder.add_edge("answer", END)
    return builder.compile(checkpointer=saver)


def drive(graph, thread: str, turns: int) -> float:
    config = {"configurable": {"thread_id": thread}}
    inputs = [{"messages": [HumanMessage(content=text(turn, "user"))]} for turn in range(turns)]
    start = time.perf_counter()
    for message in inputs:
        graph.invoke(message, config)
    elapsed = time.perf_counter() - start
    final = graph.get_state(config).values["messages"]
    assert len(final) == 2 * turns, f"{len(final)} messages after {turns} turns"
    return turns / elapsed


async def adrive(graph, thread: str, turns: int) -> float:
    config = {"configurable": {"thread_id": thread}}
    inputs = [{"messages": [HumanMessage(content=text(turn, "user"))]} for turn in range(turns)]
    start = time.perf_counter()
    for message in inputs:
        await graph.ainvoke(message, config)
    elapsed = time.perf_counter() - start
    final = (await graph.aget_state(config)).values["messages"]
    assert len(final) == 2 * turns, f"{len(final)} messages after {turns} turns"
    return turns / elapsed


def sqlite_bytes(path: str) -> int:
    return sum(os.path.getsize(f"{path}{suffix}") for suffix in ("", "-wal") if os.path.exists(f"{path}{suffix}"))


def persist_sqlite(folder: str, turns: int, use_async: bool) -> tuple[float, int]:
    from persist import Store
    from persist.langgraph import PersistSaver

    path = os.path.join(folder, f"persist-{uuid.uuid4().hex}.db")
    store = Store.open(f"sqlite:{path}")
    graph = graph_with(PersistSaver(store))
    rate = asyncio.run(adrive(graph, "t", turns)) if use_async else drive(graph, "t", turns)

    async def close():
        await store.close()

    asyncio.run(close())
    with sqlite3.connect(path) as conn:  # the store is closed: one library at a time
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    return rate, sqlite_bytes(path)


def langgraph_sqlite(folder: str, turns: int, use_async: bool) -> tuple[float, int]:
    path = os.path.join(folder, f"langgraph-{uuid.uuid4().hex}.db")
    if use_async:
        from langgraph.checkpoint.sqlite.aio import AsyncSqliteSaver

        async def run() -> float:
            async with AsyncSqliteSaver.from_conn_string(path) as saver:
                return await adrive(graph_with(saver), "t", turns)

        rate = asyncio.run(run())
    else:
        from langgraph.checkpoint.sqlite import SqliteSaver

        with SqliteSaver.from_conn_string(path) as saver:
            rate = drive(graph_with(saver), "t", turns)
    with sqlite3.connect(path) as conn:
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    return rate, sqlite_bytes(path)


def schema_bytes(url: str, schema: str) -> int:
    query = (
        "SELECT coalesce(sum(pg_total_relation_size(c.oid)), 0) FROM pg_class c "
        f"JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = '{schema}' AND c.relkind = 'r'"
    )
    out = subprocess.run(["psql", url, "-Atc", query], capture_output=True, text=True, check=True)
    return int(out.stdout.strip())


def drop_schema(url: str, schema: str) -> None:
    subprocess.run(["psql", url, "-qc", f'DROP SCHEMA IF EXISTS "{schema}" CASCADE'], capture_output=True)


def persist_postgres(url: str, turns: int) -> tuple[float, int]:
    from persist import Store
    from persist.langgraph import PersistSaver

    schema = f"bench_lg_{uuid.uuid4().hex[:10]}"
    try:
        store = Store.open(f"{url}?schema={schema}")
        rate = drive(graph_with(PersistSaver(store)), "t", turns)
        subprocess.run(["psql", url, "-qc", f'VACUUM ANALYZE "{schema}".persist_records'], capture_output=True)
        return rate, schema_bytes(url, schema)
    finally:
        drop_schema(url, schema)


def langgraph_postgres(url: str, turns: int) -> tuple[float, int]:
    import psycopg
    from langgraph.checkpoint.postgres import PostgresSaver

    schema = f"bench_lgpg_{uuid.uuid4().hex[:10]}"
    subprocess.run(["psql", url, "-qc", f'CREATE SCHEMA "{schema}"'], capture_output=True, check=True)
    try:
        with psycopg.connect(url, autocommit=True, options=f"-c search_path={schema}") as conn:
            saver = PostgresSaver(conn)
            saver.setup()
            rate = drive(graph_with(saver), "t", turns)
        return rate, schema_bytes(url, schema)
    finally:
        drop_schema(url, schema)


def worker(kind: str, path: str, index: int, turns: int, start: float, results) -> None:
    errors = 0
    if kind == "persist":
        from persist import Store
        from persist.langgraph import PersistSaver

        graph = graph_with(PersistSaver(Store.open(f"sqlite:{path}")))
    else:
        from langgraph.checkpoint.sqlite import SqliteSaver

        conn = sqlite3.connect(path, check_same_thread=False, timeout=5)
        saver = SqliteSaver(conn)
        saver.setup()
        graph = graph_with(saver)
    while time.time() < start:
        time.sleep(0.001)
    done = 0
    for turn in range(turns):
        for thread in range(2):
            config = {"configurable": {"thread_id": f"p{index}-{thread}"}}
            try:
                graph.invoke({"messages": [HumanMessage(content=text(turn, "user"))]}, config)
                done += 1
            except Exception:  # noqa: BLE001 - "database is locked" is a figure here
                errors += 1
    results.put((done, errors, time.time()))


def processes(kind: str, folder: str, turns: int, count: int) -> tuple[float, int]:
    path = os.path.join(folder, f"{kind}-procs-{uuid.uuid4().hex}.db")
    if kind == "langgraph":
        from langgraph.checkpoint.sqlite import SqliteSaver

        with sqlite3.connect(path) as conn:
            SqliteSaver(conn).setup()
    context = multiprocessing.get_context("spawn")
    results = context.Queue()
    start = time.time() + 3
    runs = [context.Process(target=worker, args=(kind, path, i, turns, start, results)) for i in range(count)]
    for run in runs:
        run.start()
    answers = [results.get(timeout=600) for _ in runs]
    for run in runs:
        run.join()
    done = sum(a[0] for a in answers)
    return done / (max(a[2] for a in answers) - start), sum(a[1] for a in answers)


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--pg-url", default=os.environ.get("PERSIST_POSTGRES_URL"))
    # Each process imports LangGraph (3 to 4 s of CPU): a smoke run needs two to share a file.
    parser.add_argument("--processes", type=int, help="processes on one SQLite file (default 8, quick 2)")
    args = parser.parse_args()
    turns, runs, proc_turns = (5, 1, 3) if args.quick else (50, 3, 15)
    count = args.processes or (2 if args.quick else 8)
    failed = False
    with tempfile.TemporaryDirectory() as folder:
        rows = [
            ("SQLite, sync", lambda: persist_sqlite(folder, turns, False), lambda: langgraph_sqlite(folder, turns, False), "SqliteSaver"),
            ("SQLite, async", lambda: persist_sqlite(folder, turns, True), lambda: langgraph_sqlite(folder, turns, True), "AsyncSqliteSaver"),
        ]
        if args.pg_url:
            rows.append(("PostgreSQL", lambda: persist_postgres(args.pg_url, turns), lambda: langgraph_postgres(args.pg_url, turns), "PostgresSaver"))
        print(f"{turns} turns on one thread; turns/s the median of {runs} runs; bytes after the last turn")
        print(f"{'row':<16} {'persist t/s':>12} {'peer t/s':>10} {'ratio':>7} {'persist B':>11} {'peer B':>11} {'bytes':>7}  peer")
        for name, ours, theirs, peer in rows:
            mine, peers = [], []
            for _ in range(runs):
                try:
                    mine.append(ours())
                except Exception as error:  # noqa: BLE001
                    print(f"{name}: persist failed: {error!r}")
                    failed = True
                    break
                peers.append(theirs())
            if not mine or not peers:
                continue
            rate, peer_rate = statistics.median(r for r, _ in mine), statistics.median(r for r, _ in peers)
            size, peer_size = mine[-1][1], peers[-1][1]
            print(
                f"{name:<16} {rate:>12.1f} {peer_rate:>10.1f} {rate / peer_rate:>6.2f}x {size:>11,} {peer_size:>11,} "
                f"{size / peer_size:>7.3f}  {peer}"
            )
        # LangGraph's own cost of a turn, nothing stored (InMemorySaver keeps the checkpoints in a
        # dict): no saver's turns/s can pass it.
        from langgraph.checkpoint.memory import InMemorySaver

        floor = statistics.median(drive(graph_with(InMemorySaver()), f"floor-{n}", turns) for n in range(runs))
        print(f"{'InMemorySaver':<16} {floor:>12.1f}   (LangGraph's own cost of a turn: the ceiling of any saver)")
        print(f"{count} processes on one SQLite file, {proc_turns} turns on each of two threads per process")
        for kind in ("persist", "langgraph"):
            rate, errors = processes(kind, folder, proc_turns, count)
            print(f"  {'PersistSaver' if kind == 'persist' else 'SqliteSaver':<13} {rate:>8.1f} turns/s, {errors} errors")
            if kind == "persist" and errors:
                failed = True
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
