"""A process of the tests: `python worker.py URL add N COUNT` adds COUNT items to session `p{N}`
one call each; `python worker.py URL pop N COUNT` pops COUNT items of session `pool` and prints
them as JSON lines. Each waits for the file START (when given in PERSIST_TEST_START) so that
all start together, and exits non-zero on any error."""

import asyncio
import json
import os
import sys
import time

from persist.agents import PersistSession


async def main(url: str, action: str, n: int, count: int) -> None:
    start = os.environ.get("PERSIST_TEST_START")
    while start and not os.path.exists(start):
        time.sleep(0.005)
    if action == "add":
        session = PersistSession(f"p{n}", url)
        for i in range(count):
            await session.add_items([{"role": "user", "content": f"{n}-{i}"}])
    else:
        session = PersistSession("pool", url)
        for _ in range(count):
            print(json.dumps(await session.pop_item()), flush=True)


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])))
