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

from persist import Store
from persist.agents import PersistSession

WORKER = str(pathlib.Path(__file__).with_name("worker.py"))


def run_together(tmp_path, url: str, action: str, processes: int, count: int) -> list[str]:
    """Runs `processes` workers that start at once; their outputs, each checked to have ended well."""
    start = tmp_path / f"start-{action}"
    env = dict(os.environ, PERSIST_TEST_START=str(start))
    workers = [
        subprocess.Popen(
            [sys.executable, WORKER, url, action, str(n), str(count)],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for n in range(processes)
    ]
    start.touch()
    outputs = []
    for worker in workers:
        out, err = worker.communicate(timeout=240)
        assert worker.returncode == 0, f"a worker failed ({worker.returncode}): {err}"
        assert "locked" not in err and "Error" not in err, err
        outputs.append(out)
    return outputs


def test_eight_processes_write_one_sqlite_file_without_an_error(tmp_path):
    url = f"sqlite:{tmp_path / 'shared.db'}"
    run_together(tmp_path, url, "add", processes=8, count=200)

    async def read_all():
        store = Store.open(url)
        return [await store.get_items(f"p{n}") for n in range(8)]

    for n, items in enumerate(asyncio.run(read_all())):
        assert [item["content"] for item in items] == [f"{n}-{i}" for i in range(200)], f"p{n}"


def test_pops_across_processes_never_answer_one_item_twice(tmp_path, shared_url):
    async def fill():
        await PersistSession("pool", shared_url).add_items(
            [{"role": "user", "content": f"item-{i}"} for i in range(40)]
        )

    asyncio.run(fill())
    outputs = run_together(tmp_path, shared_url, "pop", processes=8, count=5)
    popped = [json.loads(line)["content"] for out in outputs for line in out.splitlines()]
    assert len(popped) == 40
    assert sorted(popped) == sorted(f"item-{i}" for i in range(40)), "an item was popped twice"

    async def left():
        return await PersistSession("pool", shared_url).get_items()

    assert asyncio.run(left()) == []


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
