"""A process of the tests.

`python worker.py URL add N COUNT SESSION` adds COUNT items tagged `N-i` to SESSION through
PersistSession, one add_items call each; `python worker.py URL pop N COUNT SESSION` pops COUNT
items of SESSION and prints them as JSON lines. Once its store is open each touches
`$PERSIST_TEST_START.ready.N`, then waits for the file `$PERSIST_TEST_START` so that all start
together; it exits non-zero on any error.
"""

import asyncio
import json
import os
import sys
import time


async def main(url: str, action: str, n: int, count: int, session_id: str) -> None:
    if action == "add":
        from persist.agents import PersistSession

        session = PersistSession(session_id, url)
        await session.get_items(limit=1)  # the store opened and migrated before the start
    else:
        from persist import Store

        store = Store.open(url)
        await store.get_items(session_id, 1)
    start = os.environ.get("PERSIST_TEST_START")
    if start:
        open(f"{start}.ready.{n}", "w").close()
        deadline = time.monotonic() + 120
        while not os.path.exists(start):
            if time.monotonic() > deadline:
                raise SystemExit("never started")
            time.sleep(0.002)
    if action == "add":
        for i in range(count):
            await session.add_items([{"role": "user", "content": f"{n}-{i}"}])
    else:
        for _ in range(count):
            print(json.dumps(await store.pop_item(session_id)), flush=True)


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), sys.argv[5]))
