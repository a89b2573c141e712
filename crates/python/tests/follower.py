"""A process following a live reply, for the tests.

`python follower.py URL SESSION REPLY OFFSET STOP_AT` follows the reply REPLY of SESSION from
OFFSET and prints each chunk as a JSON line. Once it has the reply up to the offset STOP_AT, it
stops the reply (`stop_reply`, printing its answer as `{"stop": ...}`) and reads on to the end,
then prints where it would resume (`{"resume_at": ...}`). It exits non-zero on any error.
"""

import asyncio
import json
import sys


async def main(url: str, session_id: str, reply_id: str, offset: str, stop_at: str) -> None:
    from persist import Store, follow

    store = Store.open(url)
    stopped = False
    follower = follow(store, session_id, reply_id, offset)
    async for chunk in follower:
        print(json.dumps(chunk), flush=True)
        if follower.offset == stop_at and not stopped:
            stopped = True
            print(json.dumps({"stop": await store.stop_reply(session_id, reply_id)}), flush=True)
    print(json.dumps({"resume_at": follower.offset}), flush=True)
    await store.close()


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4], sys.argv[5]))
