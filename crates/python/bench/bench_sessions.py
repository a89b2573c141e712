"""persist's session against the Agents SDK's own, on the same work, side by side in one run.

    python bench_sessions.py            # the figures BENCHMARKS.md quotes
    python bench_sessions.py --quick    # a smoke run (CI): every row runs, nothing is judged

A round is what a run of the SDK does to its session: `add_items` of a turn (a user message and
an assistant reply of about 300 bytes each), then `get_items(limit=20)`.

1. One caller, a fresh SQLite file each: PersistSession, SQLiteSession, AdvancedSQLiteSession.
2. Eight OS processes on one SQLite file, each on a session of its own, started together: rounds
   per second, the errors each session raised, and the items stored against those written.
3. PostgreSQL (PERSIST_POSTGRES_URL): PersistSession against SQLAlchemySession (asyncpg), one
   caller, a schema and tables of their own, dropped afterwards.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import subprocess
import sys
import tempfile
import time
import uuid

TEXT = "x" * 300


def turn(i: int) -> list[dict]:
    return [
        {"role": "user", "content": f"question {i}: {TEXT}"},
        {
            "type": "message",
            "role": "assistant",
            "status": "completed",
            "content": [{"type": "output_text", "text": f"answer {i}: {TEXT}", "annotations": []}],
        },
    ]


def session(kind: str, session_id: str, where: str):
    if kind == "persist":
        from persist.agents import PersistSession

        return PersistSession(session_id, where)
    if kind == "SQLiteSession":
        from agents import SQLiteSession

        return SQLiteSession(session_id, where)
    if kind == "AdvancedSQLiteSession":
        from agents.extensions.memory.advanced_sqlite_session import AdvancedSQLiteSession

        return AdvancedSQLiteSession(session_id=session_id, db_path=where, create_tables=True)
    raise ValueError(kind)


def sqlite_where(kind: str, path: str) -> str:
    return f"sqlite:{path}" if kind == "persist" else path


async def rounds(s, count: int, first: int = 0) -> int:
    """`count` rounds on session `s`; the errors raised (the round goes on)."""
    errors = 0
    for i in range(first, first + count):
        try:
            await s.add_items(turn(i))
            await s.get_items(limit=20)
        except Exception:  # noqa: BLE001 (counted: what a session raises under load is the figure)
            errors += 1
    return errors


async def timed(s, count: int) -> float:
    await rounds(s, 5, first=10**6)  # warm: tables made, statements prepared
    started = time.perf_counter()
    errors = await rounds(s, count)
    if errors:
        raise RuntimeError(f"{errors} errors with one caller")
    return count / (time.perf_counter() - started)


def one_caller(count: int) -> dict[str, float]:
    rates = {}
    with tempfile.TemporaryDirectory() as folder:
        for kind in ("persist", "SQLiteSession", "AdvancedSQLiteSession"):
            where = sqlite_where(kind, os.path.join(folder, f"{kind}.db"))
            rates[kind] = asyncio.run(timed(session(kind, "bench", where), count))
    return rates


def process_main(kind: str, where: str, n: int, count: int, start: str) -> None:
    """One of the eight processes: its rounds once the start file exists; prints its errors."""
    s = session(kind, f"p{n}", where)
    asyncio.run(rounds(s, 1, first=10**6))
    open(f"{start}.ready.{n}", "w").close()
    while not os.path.exists(start):
        time.sleep(0.001)
    print(asyncio.run(rounds(s, count)), flush=True)


async def stored(kind: str, where: str, processes: int) -> int:
    total = 0
    for n in range(processes):
        total += len(await session(kind, f"p{n}", where).get_items())
    return total


def eight_processes(count: int, processes: int = 8) -> dict[str, tuple[float, int, int, int]]:
    """Per session kind: rounds/s over all processes, errors, items stored, items written."""
    figures = {}
    with tempfile.TemporaryDirectory() as folder:
        for kind in ("persist", "SQLiteSession", "AdvancedSQLiteSession"):
            where = sqlite_where(kind, os.path.join(folder, f"{kind}.db"))
            start = os.path.join(folder, f"{kind}.start")
            workers = [
                subprocess.Popen(
                    [sys.executable, __file__, "--process", kind, where, str(n), str(count), start],
                    stdout=subprocess.PIPE,
                    text=True,
                )
                for n in range(processes)
            ]
            # Every process imported the SDK and warmed up before the clock starts.
            while not all(os.path.exists(f"{start}.ready.{n}") for n in range(processes)):
                time.sleep(0.01)
            began = time.perf_counter()
            open(start, "w").close()
            outputs = [worker.communicate(timeout=600)[0] for worker in workers]
            elapsed = time.perf_counter() - began
            errors = sum(int(out.strip() or 0) for out in outputs)
            written = processes * (count + 1) * 2
            figures[kind] = (processes * count / elapsed, errors, asyncio.run(stored(kind, where, processes)), written)
    return figures


def postgres(count: int) -> dict[str, float] | None:
    server = os.environ.get("PERSIST_POSTGRES_URL")
    if not server:
        return None
    from agents.extensions.memory.sqlalchemy_session import SQLAlchemySession

    schema = f"bench_{uuid.uuid4().hex[:10]}"
    joint = "&" if "?" in server else "?"
    alchemy_url = server.split("?", 1)[0].replace("postgres://", "postgresql+asyncpg://", 1)
    tables = f"bench_{uuid.uuid4().hex[:10]}"
    rates = {}
    try:
        rates["persist"] = asyncio.run(timed(session("persist", "bench", f"{server}{joint}schema={schema}"), count))

        async def alchemy() -> float:
            s = SQLAlchemySession.from_url(
                "bench",
                url=alchemy_url,
                create_tables=True,
                sessions_table=f"{tables}_sessions",
                messages_table=f"{tables}_messages",
            )
            try:
                return await timed(s, count)
            finally:
                await s.engine.dispose()

        rates["SQLAlchemySession"] = asyncio.run(alchemy())
    finally:
        drop = f'DROP SCHEMA IF EXISTS "{schema}" CASCADE; DROP TABLE IF EXISTS "{tables}_messages", "{tables}_sessions" CASCADE'
        subprocess.run(["psql", server.split("?", 1)[0], "-qc", drop], check=False, capture_output=True)
    return rates


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="a smoke run: few rounds, nothing judged")
    args = parser.parse_args()
    count, per_process = (40, 20) if args.quick else (1500, 200)
    print(f"persist's session against the Agents SDK's ({os.cpu_count()} cores; a round: add_items of a 2-item turn, get_items(limit=20))")
    print("\n| one caller, SQLite | rounds/s | persist ÷ it |\n|---|---|---|")
    rates = one_caller(count)
    for kind, rate in rates.items():
        print(f"| {kind} | {rate:.0f} | {rates['persist'] / rate:.2f} |")
    ratio = rates["persist"] / rates["SQLiteSession"]
    if not args.quick:
        print(f"\ntarget ≥ 3× SQLiteSession with one caller: {ratio:.2f}× ({'met' if ratio >= 3 else 'not met'})")
    print("\n| 8 processes, one SQLite file | rounds/s | errors | items stored / written | persist ÷ it |\n|---|---|---|---|---|")
    figures = eight_processes(per_process)
    for kind, (rate, errors, kept, written) in figures.items():
        print(f"| {kind} | {rate:.0f} | {errors} | {kept} / {written} | {figures['persist'][0] / rate:.2f} |")
    pg = postgres(count // 3)
    if pg:
        print("\n| one caller, PostgreSQL | rounds/s | persist ÷ it |\n|---|---|---|")
        for kind, rate in pg.items():
            print(f"| {kind} | {rate:.0f} | {pg['persist'] / rate:.2f} |")
    else:
        print("\n(PostgreSQL: PERSIST_POSTGRES_URL is not set)")


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--process":
        process_main(sys.argv[2], sys.argv[3], int(sys.argv[4]), int(sys.argv[5]), sys.argv[6])
    else:
        main()
