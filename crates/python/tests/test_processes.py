"""Several OS processes on one store: eight writers on one SQLite file with no error and every
item once, pops across processes never answering one item twice, and a forked worker."""

from __future__ import annotations

import asyncio
import json
import multiprocessing
import os
import pathlib
import subprocess
import sys
import time
from collections import Counter

from persist import Store
from persist.agents import PersistSession

WORKER = str(pathlib.Path(__file__).with_name("worker.py"))


def run_together(tmp_path, url: str, action: str, processes: int, count: int, session: str) -> list[str]:
    """Runs `processes` workers released at once (after every one has opened the store); their
    outputs, each checked to have ended well with nothing on stderr."""
    start = tmp_path / f"start-{action}"
    env = dict(os.environ, PERSIST_TEST_START=str(start))
    workers = [
        subprocess.Popen(
            [sys.executable, WORKER, url, action, str(n), str(count), session],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for n in range(processes)
    ]
    try:
        deadline = time.monotonic() + 120
        ready = [pathlib.Path(f"{start}.ready.{n}") for n in range(processes)]
        while not all(path.exists() for path in ready):
            failed = [w for w in workers if w.poll() not in (None, 0)]
            assert not failed, f"a worker failed before the start: {failed[0].communicate()[1]}"
            assert time.monotonic() < deadline, "the workers never got ready"
            time.sleep(0.01)
        start.touch()
        outputs = []
        for n, worker in enumerate(workers):
            out, err = worker.communicate(timeout=120)
            assert worker.returncode == 0, f"worker {n} failed ({worker.returncode}): {err}"
            assert err == "", f"worker {n} wrote to stderr: {err}"
            outputs.append(out)
        return outputs
    finally:
        for worker in workers:
            if worker.poll() is None:
                worker.kill()
                worker.wait()


def test_eight_processes_write_one_sqlite_file_without_an_error(tmp_path):
    """Eight processes, 200 one-item add_items calls each, into one session of one file: every
    item there exactly once, each process's items in the order it wrote them."""
    url = f"sqlite:{tmp_path / 'shared.db'}"
    run_together(tmp_path, url, "add", processes=8, count=200, session="shared")

    async def read_all():
        store = Store.open(url)
        try:
            return await store.get_items("shared")
        finally:
            await store.close()

    contents = [item["content"] for item in asyncio.run(read_all())]
    expected = {f"{n}-{i}" for n in range(8) for i in range(200)}
    duplicates = sorted(c for c, k in Counter(contents).items() if k > 1)
    assert duplicates == [], f"stored more than once: {duplicates[:10]}"
    assert sorted(expected - set(contents)) == [], "missing items"
    assert sorted(set(contents) - expected) == [], "unknown items"
    assert len(contents) == 1600
    for n in range(8):
        own = [c for c in contents if c.startswith(f"{n}-")]
        assert own == [f"{n}-{i}" for i in range(200)], f"process {n}'s items out of order"


def test_pops_across_processes_never_answer_one_item_twice(tmp_path, shared_url):
    async def fill():
        await PersistSession("pool", shared_url).add_items(
            [{"role": "user", "content": f"item-{i}"} for i in range(45)]
        )

    asyncio.run(fill())
    outputs = run_together(tmp_path, shared_url, "pop", processes=8, count=5, session="pool")
    popped = [json.loads(line) for out in outputs for line in out.splitlines()]
    assert None not in popped, "a pop answered None while items were left"
    contents = [item["content"] for item in popped]
    assert len(contents) == 40
    twice = sorted(c for c, k in Counter(contents).items() if k > 1)
    assert twice == [], f"popped twice: {twice}"
    # Each pop takes the latest: the 40 popped are the last 40 written, the first 5 stay.
    assert sorted(contents) == sorted(f"item-{i}" for i in range(5, 45))
    for out in outputs:  # within one process, pops go from newer to older
        mine = [int(json.loads(line)["content"].split("-")[1]) for line in out.splitlines()]
        assert mine == sorted(mine, reverse=True), mine

    async def left():
        return await PersistSession("pool", shared_url).get_items()

    assert asyncio.run(left()) == [{"role": "user", "content": f"item-{i}"} for i in range(5)]


def _forked(url: str, store: Store, queue) -> None:
    async def use():
        await store.add_items("forked", [{"role": "user", "content": "from the child"}])
        return await store.get_items("forked")

    queue.put(asyncio.run(use()))


def test_a_forked_worker_uses_the_store_opened_before_the_fork(tmp_path, shared_url):
    store = Store.open(shared_url)

    async def before():
        await store.add_items("forked", [{"role": "user", "content": "from the parent"}])

    asyncio.run(before())
    context = multiprocessing.get_context("fork")
    queue = context.Queue()
    child = context.Process(target=_forked, args=(shared_url, store, queue))
    child.start()
    child.join(timeout=60)
    assert child.exitcode == 0, "the forked worker hung or failed"
    contents = [item["content"] for item in queue.get(timeout=5)]
    assert contents == ["from the parent", "from the child"]

    async def after():
        await store.add_items("forked", [{"role": "user", "content": "parent again"}])
        return [item["content"] for item in await store.get_items("forked")]

    assert asyncio.run(after()) == ["from the parent", "from the child", "parent again"]


def test_a_memory_store_does_not_cross_a_fork():
    store = Store.open("memory:")
    context = multiprocessing.get_context("fork")
    queue = context.Queue()

    def child(queue):
        async def use():
            try:
                await store.get_items("s")
            except Exception as error:  # noqa: BLE001 (the class is what is checked)
                return type(error).__name__
            return "answered"

        queue.put(asyncio.run(use()))

    process = context.Process(target=child, args=(queue,))
    process.start()
    process.join(timeout=60)
    assert queue.get(timeout=5) == "Unsupported"
