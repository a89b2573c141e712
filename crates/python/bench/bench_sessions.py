"""persist's session against the Agents SDK's own, on the same work, side by side in one run.

    python bench_sessions.py            # the figures BENCHMARKS.md quotes (about a minute)
    python bench_sessions.py --quick    # a smoke run (CI, < 20 s): every row runs, nothing is judged

A round is what a run of the SDK does to its session: `add_items` of a turn (a user message and
an assistant `output_text` message of about 300 bytes each, words rather than one long token),
then `get_items(limit=20)`. ops/s counts session calls: two per round. Every round is checked:
the read must end with the reply just written (a wrong answer is counted as an error). The
turns are made before the clock starts: only the sessions' calls are timed.

Each SQLite row names its durability, and persist is compared with the SDK's session at the same
one: NORMAL (WAL with `synchronous=NORMAL`, persist-store's default; SQLiteSession with that
PRAGMA set on each of its connections) and FULL (`synchronous=FULL`: `Store.open(...,
durability="full")`; SQLiteSession as it ships, Python's sqlite3 default).

1. One caller, a fresh SQLite file per implementation and run: PersistSession, SQLiteSession (at
   both durabilities), AdvancedSQLiteSession, the runs interleaved; the median run is reported.
2. Eight OS processes (multiprocessing, spawn) on one SQLite file per implementation, each on a
   session of its own, released together by a barrier: rounds per second over all of them
   (from the release to the last process done), the exceptions raised (counted, the round goes
   on: "database is locked" is a figure here, not a crash), and the items stored afterwards
   against the items written.
3. PostgreSQL, when PERSIST_POSTGRES_URL (or --pg-url) is set: PersistSession on
   `{url}?schema=bench_<random>` against SQLAlchemySession.from_url (asyncpg, tables with unique
   names), one caller; the schema and the tables are dropped afterwards.

Exit status 1 when persist raised, answered wrong, lost or duplicated items, or a row could not
run; the SDK sessions' errors are reported, not judged.
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import os
import platform
import queue
import random
import statistics
import sys
import tempfile
import threading
import time
import traceback
import uuid
from collections import Counter
from dataclasses import dataclass, field

KINDS = ("persist NORMAL", "SQLiteSession NORMAL", "persist FULL", "SQLiteSession FULL", "AdvancedSQLiteSession FULL")
# Targets, persist ÷ SQLiteSession at the same durability: one caller, and eight processes.
TARGETS = {"one": 2.0, "processes": 1.5}
WORDS = (
    "the agent called a tool to look up the order status and the customer asked about delivery "
    "windows refunds invoices weather flights hotel booking summary context memory branch search "
    "token latency retry answer question policy account update shipping address payment card"
).split()


# The work.


def text(prefix: str, i: int, size: int = 280) -> str:
    rng = random.Random(f"{prefix}{i}")
    out = f"{prefix} {i}:"
    while len(out) < size:
        out += " " + rng.choice(WORDS)
    return out


def turn(session_id: str, i: int) -> list[dict]:
    """A user message and the assistant's reply, each about 300 bytes as JSON."""
    return [
        {"role": "user", "content": text("question", i)},
        {
            "id": f"msg_{session_id}_{i}",
            "type": "message",
            "role": "assistant",
            "status": "completed",
            "content": [{"type": "output_text", "text": text("answer", i, 200), "annotations": []}],
        },
    ]


def describe(error: BaseException) -> str:
    message = str(error).replace("\n", " ")
    return f"{type(error).__name__}: {message[:120]}"


@dataclass
class Tally:
    """What rounds on one session did: calls that raised (by message), items acknowledged."""

    errors: Counter = field(default_factory=Counter)
    acked: int = 0  # items of add_items calls that returned
    attempted: int = 0  # items of every add_items call

    def merge(self, other: Tally) -> None:
        self.errors.update(other.errors)
        self.acked += other.acked
        self.attempted += other.attempted


def turns(session_id: str, first: int, count: int) -> list[list[dict]]:
    """The turns of `count` rounds, made before the rounds are timed (making one takes about
    25 µs of Python, which is the bench's work, not the session's)."""
    return [turn(session_id, i) for i in range(first, first + count)]


async def rounds(s, work: list[list[dict]], tally: Tally) -> None:
    """A round per turn of `work` on `s`, a session that holds the `tally.acked` items
    acknowledged so far."""
    for items in work:
        tally.attempted += len(items)
        try:
            await s.add_items(items)
            tally.acked += len(items)
            added = True
        except Exception as error:  # noqa: BLE001 (counted: what a session raises is the figure)
            tally.errors[f"add_items: {describe(error)}"] += 1
            added = False
        try:
            got = await s.get_items(limit=20)
        except Exception as error:  # noqa: BLE001
            tally.errors[f"get_items: {describe(error)}"] += 1
            continue
        if added and (len(got) != min(20, tally.acked) or got[-1] != items[-1]):
            tally.errors["get_items: wrong answer (length or last item)"] += 1


def session(kind: str, session_id: str, where: str, **kw):
    if kind == "persist":
        from persist.agents import PersistSession

        return PersistSession(session_id, where)
    if kind.startswith("persist "):
        from persist import Store
        from persist.agents import PersistSession

        return PersistSession(session_id, Store.open(where, durability=kind.split()[1].lower()))
    if kind == "SQLiteSession NORMAL":
        return sqlite_session_normal()(session_id, where)
    if kind == "SQLiteSession FULL":
        from agents import SQLiteSession

        return SQLiteSession(session_id, where)
    if kind == "AdvancedSQLiteSession FULL":
        from agents.extensions.memory.advanced_sqlite_session import AdvancedSQLiteSession

        return AdvancedSQLiteSession(session_id=session_id, db_path=where, create_tables=True)
    if kind == "SQLAlchemySession":
        from agents.extensions.memory.sqlalchemy_session import SQLAlchemySession

        return SQLAlchemySession.from_url(session_id, url=where, create_tables=True, **kw)
    raise ValueError(kind)


def sqlite_session_normal():
    """SQLiteSession at NORMAL: its connections as it makes them, then `synchronous=NORMAL`."""
    from agents import SQLiteSession

    class SQLiteSessionNormal(SQLiteSession):
        @staticmethod
        def _configure_connection(conn) -> None:
            SQLiteSession._configure_connection(conn)
            conn.execute("PRAGMA synchronous=NORMAL")

    return SQLiteSessionNormal


def sqlite_where(kind: str, path: str) -> str:
    return f"sqlite:{path}" if kind.startswith("persist") else path


async def close(kind: str, s, tally: Tally | None = None) -> None:
    """Closes `s`; an error is counted in `tally` (raised without one)."""
    try:
        await close_session(kind, s)
    except Exception as error:  # noqa: BLE001
        if tally is None:
            raise
        tally.errors[f"close: {describe(error)}"] += 1


async def close_session(kind: str, s) -> None:
    if kind.startswith("persist"):
        await s.store.close()
    elif kind == "SQLAlchemySession":
        await s.engine.dispose()
    else:
        s.close()


@dataclass
class Row:
    rates: list[float] = field(default_factory=list)  # rounds/s, one per run
    tally: Tally = field(default_factory=Tally)
    failed: str | None = None
    stored: int | None = None
    duplicates: int = 0

    @property
    def rate(self) -> float:
        return statistics.median(self.rates) if self.rates else 0.0


async def timed_run(kind: str, where: str, session_id: str, count: int, row: Row, keep_open: bool = False, **kw):
    """Warm-up rounds (tables made, statements prepared), then `count` timed rounds."""
    try:
        s = session(kind, session_id, where, **kw)
    except Exception as error:  # noqa: BLE001
        row.failed = describe(error)
        traceback.print_exc()
        return None
    tally = Tally()  # this session's: its checks count the items it holds
    await rounds(s, turns(session_id, 10**6, 5), tally)
    work = turns(session_id, 0, count)
    started = time.perf_counter()
    await rounds(s, work, tally)
    row.rates.append(count / (time.perf_counter() - started))
    row.tally.merge(tally)
    if keep_open:
        return s
    await close(kind, s, row.tally)
    return None


# 1. One caller.


def one_caller(folder: str, count: int, repeat: int) -> dict[str, Row]:
    rows = {kind: Row() for kind in KINDS}

    async def main() -> None:
        for run in range(repeat):
            order = KINDS if run % 2 == 0 else tuple(reversed(KINDS))
            for kind in order:
                if rows[kind].failed:
                    continue
                where = sqlite_where(kind, os.path.join(folder, f"one-{kind}-{run}.db"))
                await timed_run(kind, where, "bench", count, rows[kind])

    asyncio.run(main())
    return rows


# 2. Eight processes on one file.


def process_main(n: int, phases: list[tuple[str, str]], count: int, barrier, results) -> None:
    """One of the processes: per phase, its session opened and warmed, then (released with the
    others) `count` rounds; it reports its tally and the perf_counter when it was done
    (CLOCK_MONOTONIC on Linux: one clock for every process)."""
    for kind, where in phases:
        session_id = f"p{n}"
        tally = Tally()
        report: dict = {"n": n, "kind": kind}

        async def phase() -> None:
            try:
                s = session(kind, session_id, where)
            except Exception as error:  # noqa: BLE001
                report["fatal"] = describe(error)
                s = None
            work = turns(session_id, 0, count)
            if s is not None:
                await rounds(s, turns(session_id, 10**6, 1), tally)
            barrier.wait()  # every process ready
            barrier.wait()  # released (the parent took the time between the two)
            if s is not None:
                await rounds(s, work, tally)
            report["finished"] = time.perf_counter()
            if s is not None:
                await close(kind, s, tally)

        try:
            asyncio.run(phase())
        except Exception as error:  # noqa: BLE001 (a broken barrier: the parent reports it)
            report["fatal"] = describe(error)
            report.setdefault("finished", time.perf_counter())
        report.update(errors=dict(tally.errors), acked=tally.acked, attempted=tally.attempted)
        results.put(report)
        if "fatal" in report and "BrokenBarrierError" in report["fatal"]:
            return


async def stored_items(kind: str, where: str, processes: int, tally: Tally) -> tuple[int, int]:
    """Items stored over the processes' sessions, and how many of them are repeats."""
    total = duplicates = 0
    for n in range(processes):
        s = session(kind, f"p{n}", where)
        items = await s.get_items()
        total += len(items)
        texts = [str(item.get("content")) for item in items]
        duplicates += len(texts) - len(set(texts))
        await close(kind, s, tally)
    return total, duplicates


def many_processes(folder: str, count: int, processes: int, timeout: float) -> dict[str, Row]:
    rows = {kind: Row() for kind in KINDS}
    phases = [(kind, sqlite_where(kind, os.path.join(folder, f"shared-{kind}.db"))) for kind in KINDS]
    context = multiprocessing.get_context("spawn")
    barrier = context.Barrier(processes + 1, timeout=timeout)
    results = context.Queue()
    workers = [
        context.Process(target=process_main, args=(n, phases, count, barrier, results), daemon=True)
        for n in range(processes)
    ]
    for worker in workers:
        worker.start()
    try:
        for kind, where in phases:
            row = rows[kind]
            try:
                barrier.wait()
                began = time.perf_counter()
                barrier.wait()
            except threading.BrokenBarrierError:
                codes = [w.exitcode for w in workers]
                row.failed = f"processes did not reach the start (exit codes {codes})"
                for later, _ in phases[phases.index((kind, where)) + 1 :]:
                    rows[later].failed = "not run (an earlier phase broke the barrier)"
                break
            reports = []
            deadline = time.monotonic() + timeout
            while len(reports) < processes:
                try:
                    reports.append(results.get(timeout=1))
                except queue.Empty:
                    # A process that ended without its report for this phase is lost.
                    reported = {report["n"] for report in reports}
                    lost = [n for n, w in enumerate(workers) if not w.is_alive() and n not in reported]
                    if lost or time.monotonic() > deadline:
                        row.failed = f"{processes - len(reports)} processes gave no report (exit codes {[w.exitcode for w in workers]})"
                        break
            if row.failed:
                break
            for report in reports:
                row.tally.merge(Tally(Counter(report["errors"]), report["acked"], report["attempted"]))
                if "fatal" in report:
                    row.tally.errors[f"process could not run: {report['fatal']}"] += 1
            elapsed = max(report["finished"] for report in reports) - began
            row.rates.append(processes * count / elapsed)
            try:
                row.stored, row.duplicates = asyncio.run(stored_items(kind, where, processes, row.tally))
            except Exception as error:  # noqa: BLE001
                row.failed = f"counting the stored items: {describe(error)}"
                traceback.print_exc()
    finally:
        barrier.abort()  # processes still waiting (a phase that failed) give up instead of hanging
        for worker in workers:
            worker.join(timeout=30)
            if worker.is_alive():
                worker.terminate()
        bad = [(n, w.exitcode) for n, w in enumerate(workers) if w.exitcode not in (0, None)]
        if bad:
            print(f"(processes that exited with a failure: {bad})", file=sys.stderr)
    return rows


# 3. PostgreSQL.


def postgres(server: str, alchemy_url: str | None, count: int, repeat: int) -> dict[str, Row]:
    import asyncpg

    base = server.split("?", 1)[0]
    schema = f"bench_{uuid.uuid4().hex[:12]}"
    tables = f"bench_{uuid.uuid4().hex[:12]}"
    persist_url = f"{server}{'&' if '?' in server else '?'}schema={schema}"
    if alchemy_url is None:
        scheme, rest = base.split("://", 1)
        alchemy_url = f"postgresql+asyncpg://{rest}"
    names = {"sessions_table": f"{tables}_sessions", "messages_table": f"{tables}_messages"}
    rows = {"persist": Row(), "SQLAlchemySession": Row()}

    async def main() -> None:
        kept = None
        try:
            for run in range(repeat):
                order = ("persist", "SQLAlchemySession") if run % 2 == 0 else ("SQLAlchemySession", "persist")
                for kind in order:
                    if rows[kind].failed:
                        continue
                    if kind == "persist":
                        kept = await timed_run(kind, persist_url, f"bench-{run}", count, rows[kind], keep_open=True) or kept
                    else:
                        await timed_run(kind, alchemy_url, f"bench-{run}", count, rows[kind], **names)
        finally:
            if kept is not None:
                await close("persist", kept, rows["persist"].tally)
            connection = await asyncpg.connect(base)
            try:
                await connection.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
                await connection.execute(f'DROP TABLE IF EXISTS "{names["messages_table"]}", "{names["sessions_table"]}" CASCADE')
                left = await connection.fetchval(
                    "SELECT (SELECT count(*) FROM pg_namespace WHERE nspname = $1)"
                    " + (SELECT count(*) FROM pg_tables WHERE tablename LIKE $2)",
                    schema,
                    f"{tables}%",
                )
            finally:
                await connection.close()
            print(f"(PostgreSQL cleaned up: schema {schema}, tables {tables}_*; {left} left)")

    asyncio.run(main())
    return rows


# The report.


def machine() -> str:
    import sqlite3
    from importlib.metadata import version

    model = "?"
    try:
        with open("/proc/cpuinfo") as info:
            model = next(line.split(":", 1)[1].strip() for line in info if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    affinity = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    import persist

    return (
        f"{os.cpu_count()} cores ({affinity} usable), {model}, {platform.system()} {platform.release()}, "
        f"CPython {platform.python_version()} (its sqlite3 {sqlite3.sqlite_version}), "
        f"openai-agents {version('openai-agents')}, persist {persist.__version__} "
        f"({persist._persist.__file__}, {os.path.getsize(persist._persist.__file__) / 2**20:.1f} MiB), "
        f"load average {os.getloadavg()[0]:.2f} at the start"
    )


def fmt(rate: float) -> str:
    return f"{rate:,.0f}"


def table(title: str, rows: dict[str, Row], stored: bool = False, expected: int = 0) -> list[str]:
    head = f"| {title} | rounds/s | ops/s | errors |" + (" items stored / expected |" if stored else "") + " persist ÷ it |"
    lines = [head, "|---" * (head.count("|") - 1) + "|"]
    notes = []
    for kind, row in rows.items():
        # persist at the row's durability (the PostgreSQL rows have one persist).
        base = rows.get(f"persist {kind.split()[-1]}", rows.get("persist", Row())).rate
        if row.failed:
            lines.append(f"| {kind} | failed | | |" + (" |" if stored else "") + " |")
            notes.append(f"  {kind} failed: {row.failed}")
            continue
        errors = sum(row.tally.errors.values())
        cells = [kind, fmt(row.rate), fmt(2 * row.rate), str(errors)]
        if stored:
            kept = f"{row.stored:,} / {row.tally.attempted:,}"
            if row.duplicates:
                kept += f" ({row.duplicates} repeated)"
            cells.append(kept)
        cells.append(f"{base / row.rate:.2f}" if base and row.rate else "")
        lines.append("| " + " | ".join(cells) + " |")
        for message, n in row.tally.errors.most_common(5):
            notes.append(f"  {kind}: {n}× {message}")
    if any(len(row.rates) > 1 for row in rows.values()):
        notes.append(
            "  runs (rounds/s): "
            + "; ".join(f"{kind} " + ", ".join(fmt(r) for r in row.rates) for kind, row in rows.items() if row.rates)
        )
    return lines + notes


def persist_defects(rows: dict[str, Row], stored: bool = False) -> list[str]:
    found = []
    for kind, row in rows.items():
        if kind.startswith("persist"):
            found += defects_of(kind, row, stored)
    return found


def targets(rows: dict[str, Row], target: float) -> list[str]:
    """persist ÷ SQLiteSession at each durability, against `target`."""
    lines = []
    for durability in ("NORMAL", "FULL"):
        ours, theirs = rows[f"persist {durability}"].rate, rows[f"SQLiteSession {durability}"].rate
        if ours and theirs:
            ratio = ours / theirs
            lines.append(f"target ≥ {target}× SQLiteSession at {durability}: {ratio:.2f}×, {'met' if ratio >= target else 'not met'}")
    return lines


def defects_of(kind: str, row: Row, stored: bool) -> list[str]:
    found = []
    if row.failed:
        found.append(f"{kind} failed: {row.failed}")
    if row.tally.errors:
        found.append(f"{kind} raised or answered wrong {sum(row.tally.errors.values())} times")
    if stored and row.stored is not None and (row.stored != row.tally.acked or row.duplicates):
        found.append(f"{kind} stored {row.stored} items, {row.tally.acked} acknowledged, {row.duplicates} repeated")
    return found


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="a smoke run (< 20 s): few rounds, nothing judged")
    parser.add_argument("--rounds", type=int, help="one caller's rounds per run (default 1500, quick 40)")
    parser.add_argument("--repeat", type=int, help="one caller's runs per implementation, median kept (default 3, quick 1)")
    # Each process imports the SDK (2 to 3 s of CPU): a smoke run needs two to share a file.
    parser.add_argument("--processes", type=int, help="processes on one SQLite file (default 8, quick 2)")
    parser.add_argument("--per-process", type=int, help="rounds per process (default 200, quick 20)")
    parser.add_argument("--pg-rounds", type=int, help="PostgreSQL rounds per run (default 500, quick 40)")
    parser.add_argument("--pg-url", default=os.environ.get("PERSIST_POSTGRES_URL"), help="default: $PERSIST_POSTGRES_URL")
    parser.add_argument("--sqlalchemy-url", help="default: --pg-url as postgresql+asyncpg://, without its query")
    parser.add_argument("--dir", help="where the SQLite files go (default: a temporary folder)")
    parser.add_argument("--timeout", type=float, default=300, help="seconds the processes may take per phase")
    args = parser.parse_args()
    count = args.rounds or (40 if args.quick else 1500)
    repeat = args.repeat or (1 if args.quick else 3)
    per_process = args.per_process or (20 if args.quick else 200)
    pg_count = args.pg_rounds or (40 if args.quick else 500)
    args.processes = args.processes or (2 if args.quick else 8)

    began = time.perf_counter()
    print(f"machine: {machine()}")
    print(
        f"a round: add_items of a 2-item turn (~300 B each) + get_items(limit=20); ops = calls, 2 a round"
        f"{'; QUICK run, too short to judge' if args.quick else ''}\n"
    )
    defects = []
    with tempfile.TemporaryDirectory(prefix="persist-bench-", dir=args.dir) as folder:
        rows = one_caller(folder, count, repeat)
        print("\n".join(table(f"one caller, SQLite, {count} rounds ×{repeat}", rows)))
        defects += persist_defects(rows)
        print("\n".join(targets(rows, TARGETS["one"])) + "\n")

        rows = many_processes(folder, per_process, args.processes, args.timeout)
        print("\n".join(table(f"{args.processes} processes, one SQLite file, {per_process} rounds each", rows, stored=True)))
        defects += persist_defects(rows, stored=True)
        print("\n".join(targets(rows, TARGETS["processes"])) + "\n")

    if args.pg_url:
        rows = postgres(args.pg_url, args.sqlalchemy_url, pg_count, repeat)
        print("\n".join(table(f"one caller, PostgreSQL, {pg_count} rounds ×{repeat}", rows)))
        defects += persist_defects(rows)
    else:
        print("(PostgreSQL: not run, PERSIST_POSTGRES_URL is not set)")

    print(f"\n(bench took {time.perf_counter() - began:.1f} s)")
    for defect in defects:
        print(f"DEFECT: {defect}", file=sys.stderr)
    return 1 if defects else 0


if __name__ == "__main__":
    sys.exit(main())
