"""LangGraph's checkpoints in persist: :class:`PersistSaver`, a ``BaseCheckpointSaver`` on the
same store as everything else (the SQLite file by default, PostgreSQL, process memory).

>>> saver = PersistSaver(Store.open("sqlite:graph.db"))        # doctest: +SKIP
>>> graph = builder.compile(checkpointer=saver)                 # doctest: +SKIP

A checkpoint is stored as records of the store (see ``persist::records``): the checkpoint with
its metadata and parent, each channel's value by version (written when its version moves,
never again), the pending writes of its tasks. The ``messages`` channel of the root graph is
stored as the thread's persist messages: a checkpoint keeps the position of its last message
on the thread's tree, each message is stored once (a step that adds one message writes one),
and a fork (``update_state`` on an earlier checkpoint, time travel) is a branch. The thread is
then a persist conversation like any other: searched, exported, served over HTTP and MCP.

Every method has its synchronous and its asynchronous twin (``put`` and ``aput``, …), one
implementation driven either way. The long-term memory store is :class:`persist.langgraph.PersistStore`.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Generator, Iterator, Sequence
from typing import Any

import ormsgpack
from langchain_core.messages import BaseMessage
from langchain_core.runnables import RunnableConfig
from langgraph.checkpoint.base import (
    WRITES_IDX_MAP,
    BaseCheckpointSaver,
    ChannelVersions,
    Checkpoint,
    CheckpointMetadata,
    CheckpointTuple,
    get_checkpoint_id,
    get_checkpoint_metadata,
)
from langgraph.checkpoint.serde.jsonplus import JsonPlusSerializer

from .._persist import Store
from ._drive import Call
from ._drive import drive_async as _drive_async
from ._drive import drive_sync as _drive_sync
from ._drive import sweep_steps
from .messages import PATH as _PATH
from .messages import Paths

__all__ = ["PersistSaver"]

_SEP = "\x1f"
# The space of each thread's expiry (a saver with a ttl): thread -> when it expires, in seconds.
_EXPIRY = "lg:t"
_IDX_OFFSET = 2**31


class PersistSaver(BaseCheckpointSaver[str]):
    """LangGraph's checkpointer on a persist :class:`~persist.Store` (its tenant's).

    ``messages_channel`` names the channel whose messages become the thread's persist messages
    (``None``: every channel is stored by version). With a serializer that encrypts
    (``EncryptedSerializer``), no channel is: persist would hold the messages in the clear.

    ``ttl`` (minutes) expires what a checkpoint wrote that long after it was written, and each
    checkpoint written moves the expiry of the values it carries on: a thread nobody writes to
    for ``ttl`` is neither answered nor listed, and ``sweep()`` erases it for good, its persist
    messages too.
    """

    def __init__(
        self,
        store: Store,
        *,
        serde: Any = None,
        messages_channel: str | None = "messages",
        ttl: float | None = None,
        cached_paths: int = 256,
    ) -> None:
        super().__init__(serde=serde)
        if ttl is not None and not ttl > 0:
            raise ValueError("ttl is a number of minutes above 0, or None")
        self.ttl = ttl
        self.store = store
        self._native = store.graph_store()
        plain = serde is None or type(serde) is JsonPlusSerializer
        self.messages_channel = messages_channel if plain else None
        self._messages = Paths(self._native, cached_paths)

    # -- names ---------------------------------------------------------------------------------

    @staticmethod
    def _thread(config: RunnableConfig) -> str:
        thread = str(config["configurable"]["thread_id"])
        if _SEP in thread:
            raise ValueError("a thread_id must not contain U+001F")
        return thread

    @staticmethod
    def _space(kind: str, thread: str, ns: str | None = None, checkpoint_id: str | None = None) -> str:
        space = f"lg:{kind}{_SEP}{thread}{_SEP}"
        if ns is not None:
            space += ns
            if checkpoint_id is not None:
                space += _SEP + checkpoint_id
        return space

    def get_next_version(self, current: str | int | None, channel: None = None) -> str:
        """Versions that sort as text (the records' keys): a zero-padded counter."""
        if current is None:
            number = 0
        elif isinstance(current, int):
            number = current
        else:
            number = int(str(current).split(".")[0])
        return f"{number + 1:032}"

    def _expiry(self) -> float | None:
        return time.time() + self.ttl * 60 if self.ttl is not None else None

    def _is_messages(self, channel: str, ns: str, value: Any) -> bool:
        return (
            channel == self.messages_channel
            and ns == ""
            and isinstance(value, list)
            and all(isinstance(item, BaseMessage) for item in value)
        )

    # -- steps ---------------------------------------------------------------------------------

    def _put(
        self,
        config: RunnableConfig,
        checkpoint: Checkpoint,
        metadata: CheckpointMetadata,
        new_versions: ChannelVersions,
    ) -> Generator[Call, Any, RunnableConfig]:
        thread = self._thread(config)
        ns = config["configurable"].get("checkpoint_ns", "")
        parent_id = config["configurable"].get("checkpoint_id")
        stored = dict(checkpoint)
        values: dict[str, Any] = stored.pop("channel_values")
        writes: list[tuple[Any, ...]] = []
        blobs = self._space("b", thread, ns)
        heads: tuple[str, str] | None = None
        expires = self._expiry()
        for channel, version in new_versions.items():
            if channel not in values:
                typed = ("empty", b"")
            elif self._is_messages(channel, ns, values[channel]):
                try:
                    before = yield from self._parent_head(thread, ns, parent_id, channel)
                    head = yield from self._messages.store(thread, before, values[channel])
                    typed = (_PATH, head.encode())
                    heads = (str(version), head)
                except (TypeError, ValueError):
                    typed = self.serde.dumps_typed(values[channel])
            else:
                typed = self.serde.dumps_typed(values[channel])
            writes.append(("put", blobs, f"{channel}{_SEP}{version}", ormsgpack.packb(list(typed)), expires))
        if expires is not None:
            # The values this checkpoint carries from its parent live as long as it does.
            for channel, version in stored.get("channel_versions", {}).items():
                if channel not in new_versions:
                    writes.append(("touch", blobs, f"{channel}{_SEP}{version}", expires))
        if expires is not None:
            # When the thread as a whole expires, never itself expiring: what `sweep` reads.
            writes.append(("put", _EXPIRY, thread, ormsgpack.packb(expires), None))
        record = [
            *self.serde.dumps_typed(stored),
            *self.serde.dumps_typed(get_checkpoint_metadata(config, metadata)),
            parent_id,
        ]
        writes.append(("put", self._space("c", thread, ns), checkpoint["id"], ormsgpack.packb(record), expires))
        yield lambda blocking: self._native.write_records(writes, blocking=blocking)
        moved = self.messages_channel in new_versions
        if not moved and self.messages_channel in stored.get("channel_versions", {}) and parent_id:
            # The messages did not move: the parent's head is this checkpoint's too.
            heads = self._messages.head_of(thread, ns, parent_id)
        if heads is not None:
            self._messages.remember_head(thread, ns, checkpoint["id"], *heads)
        return {"configurable": {"thread_id": thread, "checkpoint_ns": ns, "checkpoint_id": checkpoint["id"]}}

    def _parent_head(
        self, thread: str, ns: str, parent_id: str | None, channel: str
    ) -> Generator[Call, Any, str]:
        """The last message of the ``messages`` value of the parent checkpoint ("" for none)."""
        if parent_id is None:
            return ""
        known = self._messages.head_of(thread, ns, parent_id)
        if known is not None:
            return known[1]
        found, _ = yield lambda blocking: self._native.read_records(
            self._space("c", thread, ns), keys=[parent_id], blocking=blocking
        )
        if not found:
            return ""
        checkpoint = self.serde.loads_typed(tuple(ormsgpack.unpackb(found[0][2])[:2]))
        version = checkpoint.get("channel_versions", {}).get(channel)
        if version is None:
            return ""
        blobs, _ = yield lambda blocking: self._native.read_records(
            self._space("b", thread, ns), keys=[f"{channel}{_SEP}{version}"], blocking=blocking
        )
        if not blobs:
            return ""
        kind, data = ormsgpack.unpackb(blobs[0][2])
        return data.decode() if kind == _PATH else ""

    def _put_writes(
        self, config: RunnableConfig, writes: Sequence[tuple[str, Any]], task_id: str, task_path: str
    ) -> Generator[Call, Any, None]:
        thread = self._thread(config)
        ns = config["configurable"].get("checkpoint_ns", "")
        space = self._space("w", thread, ns, config["configurable"]["checkpoint_id"])
        changes = []
        for index, (channel, value) in enumerate(writes):
            idx = WRITES_IDX_MAP.get(channel, index)
            record = [task_id, channel, *self.serde.dumps_typed(value), task_path, idx]
            # A special write (error, interrupt, …) replaces its like; a regular one is kept.
            kind = "put" if idx < 0 else "insert"
            key = f"{task_id}{_SEP}{idx + _IDX_OFFSET:010d}"
            changes.append((kind, space, key, ormsgpack.packb(record), self._expiry()))
        if changes:
            yield lambda blocking: self._native.write_records(changes, blocking=blocking)

    def _tuple(self, thread: str, ns: str, record: tuple[Any, ...]) -> Generator[Call, Any, CheckpointTuple]:
        """The checkpoint tuple of a checkpoint's record: its channels' values, its writes."""
        checkpoint_id = record[1]
        ckpt_type, ckpt_data, meta_type, meta_data, parent_id = ormsgpack.unpackb(record[2])
        checkpoint = self.serde.loads_typed((ckpt_type, ckpt_data))
        versions = checkpoint.get("channel_versions", {})
        keys = [f"{channel}{_SEP}{version}" for channel, version in versions.items()]
        blob_space, write_space = self._space("b", thread, ns), self._space("w", thread, ns, checkpoint_id)
        # The channels' values and the pending writes at once (first pages): one wait on PostgreSQL.
        reads = [(write_space, {"limit": 1000})] + [
            (blob_space, {"keys": keys[start : start + 1000], "limit": 1000}) for start in range(0, len(keys), 1000)
        ]
        pages = yield lambda blocking: self._native.read_many(reads, blocking=blocking)
        (written, cursor), blobs = pages[0], [record for page, _ in pages[1:] for record in page]
        values: dict[str, Any] = {}
        for _, key, data, _ in blobs:
            channel = key.rsplit(_SEP, 1)[0]
            kind, payload = ormsgpack.unpackb(data)
            if kind == "empty":
                continue
            if kind == _PATH:
                path = yield from self._messages.load(thread, payload.decode())
                values[channel] = list(path.messages)
                self._messages.remember_head(thread, ns, checkpoint_id, str(versions[channel]), payload.decode())
            else:
                values[channel] = self.serde.loads_typed((kind, payload))
        pending = []
        while True:
            for _, _, data, _ in written:
                task, channel, kind, payload, task_path, idx = ormsgpack.unpackb(data)
                pending.append(((task_path, task, idx), (task, channel, self.serde.loads_typed((kind, payload)))))
            if cursor is None:
                break
            written, cursor = yield lambda blocking, after=cursor: self._native.read_records(
                write_space, limit=1000, cursor=after, blocking=blocking
            )
        pending.sort(key=lambda item: item[0])
        config = {"configurable": {"thread_id": thread, "checkpoint_ns": ns, "checkpoint_id": checkpoint_id}}
        parent = (
            {"configurable": {"thread_id": thread, "checkpoint_ns": ns, "checkpoint_id": parent_id}}
            if parent_id
            else None
        )
        return CheckpointTuple(
            config=config,
            checkpoint={**checkpoint, "channel_values": values},
            metadata=self.serde.loads_typed((meta_type, meta_data)),
            pending_writes=[write for _, write in pending],
            parent_config=parent,
        )

    def _get_tuple(self, config: RunnableConfig) -> Generator[Call, Any, CheckpointTuple | None]:
        thread = self._thread(config)
        ns = config["configurable"].get("checkpoint_ns", "")
        checkpoint_id = get_checkpoint_id(config)
        space = self._space("c", thread, ns)
        if checkpoint_id:
            found, _ = yield lambda blocking: self._native.read_records(space, keys=[checkpoint_id], blocking=blocking)
        else:
            found, _ = yield lambda blocking: self._native.read_records(
                space, newest_first=True, limit=1, blocking=blocking
            )
        if not found:
            return None
        return (yield from self._tuple(thread, ns, found[0]))

    def _list_page(
        self,
        config: RunnableConfig | None,
        before: RunnableConfig | None,
        cursor: tuple[str, str] | None,
    ) -> Generator[Call, Any, tuple[list[tuple[Any, ...]], tuple[str, str] | None]]:
        if config is None:
            space, prefix = "lg:c" + _SEP, True
        else:
            thread = self._thread(config)
            if "checkpoint_ns" in config["configurable"]:
                space, prefix = self._space("c", thread, config["configurable"]["checkpoint_ns"]), False
            else:
                space, prefix = self._space("c", thread), True
        keys = None
        if config is not None and (checkpoint_id := get_checkpoint_id(config)):
            keys = [checkpoint_id]
        before_id = get_checkpoint_id(before) if before else None
        page = yield lambda blocking: self._native.read_records(
            space,
            prefix=prefix,
            keys=keys,
            before=before_id,
            newest_first=True,
            limit=100,
            cursor=cursor,
            blocking=blocking,
        )
        return page

    def _list(
        self,
        config: RunnableConfig | None,
        filter: dict[str, Any] | None,
        before: RunnableConfig | None,
        cursor: tuple[str, str] | None,
        remaining: int | None,
    ) -> Generator[Call, Any, tuple[list[CheckpointTuple], tuple[str, str] | None, int | None]]:
        """One page of ``list``'s answer: the tuples, where to go on, how many are still wanted."""
        records, cursor = yield from self._list_page(config, before, cursor)
        found = []
        for record in records:
            if remaining is not None and remaining <= 0:
                return found, None, remaining
            thread, ns = record[0].split(_SEP)[1:3]
            if filter:
                fields = ormsgpack.unpackb(record[2])
                metadata = self.serde.loads_typed((fields[2], fields[3]))
                if not all(metadata.get(key) == value for key, value in filter.items()):
                    continue
            found.append((yield from self._tuple(thread, ns, record)))
            if remaining is not None:
                remaining -= 1
        return found, cursor, remaining

    def _delete_thread(self, thread_id: str) -> Generator[Call, Any, None]:
        thread = self._thread({"configurable": {"thread_id": thread_id}})
        changes: list[tuple[Any, ...]] = [("delete_spaces", self._space(kind, thread)) for kind in ("c", "b", "w")]
        changes.append(("delete", _EXPIRY, thread))
        yield lambda blocking: self._native.write_records(changes, blocking=blocking)
        yield lambda blocking: self._native.delete_thread(thread, blocking=blocking)
        self._messages.forget(thread)

    def _every(self, space: str, prefix: bool = True) -> Generator[Call, Any, list[tuple[Any, ...]]]:
        records: list[tuple[Any, ...]] = []
        cursor = None
        while True:
            page, cursor = yield lambda blocking, after=cursor: self._native.read_records(
                space, prefix=prefix, limit=1000, cursor=after, blocking=blocking
            )
            records.extend(page)
            if cursor is None:
                return records

    def _delete_for_runs(self, run_ids: Sequence[str]) -> Generator[Call, Any, None]:
        runs = set(run_ids)
        if not runs:
            return
        changes: list[tuple[Any, ...]] = []
        for space, key, data, _ in (yield from self._every("lg:c" + _SEP)):
            fields = ormsgpack.unpackb(data)
            metadata = self.serde.loads_typed((fields[2], fields[3]))
            if metadata.get("run_id") in runs:
                _, thread, ns = space.split(_SEP)
                changes.append(("delete", space, key))
                changes.append(("delete_spaces", self._space("w", thread, ns, key)))
        for start in range(0, len(changes), 1000):
            chunk = changes[start : start + 1000]
            yield lambda blocking, chunk=chunk: self._native.write_records(chunk, blocking=blocking)

    def _copy_thread(self, source: str, target: str) -> Generator[Call, Any, None]:
        source = self._thread({"configurable": {"thread_id": source}})
        target = self._thread({"configurable": {"thread_id": target}})
        copied: dict[str, str] = {}
        changes: list[tuple[Any, ...]] = []
        for kind in ("c", "b", "w"):
            for space, key, data, expires_at in (yield from self._every(self._space(kind, source))):
                if kind == "b":
                    blob_kind, payload = ormsgpack.unpackb(data)
                    if blob_kind == _PATH and payload:
                        head = yield from self._messages.copy(source, target, payload.decode(), copied)
                        data = ormsgpack.packb([_PATH, head.encode()])
                rest = space[len(self._space(kind, source)) :]
                changes.append(("put", self._space(kind, target) + rest, key, data, expires_at))
        if self.ttl is not None:
            changes.append(("put", _EXPIRY, target, ormsgpack.packb(self._expiry()), None))
        for start in range(0, len(changes), 1000):
            chunk = changes[start : start + 1000]
            yield lambda blocking, chunk=chunk: self._native.write_records(chunk, blocking=blocking)

    def _prune(self, thread_ids: Sequence[str], strategy: str) -> Generator[Call, Any, None]:
        if strategy not in ("keep_latest", "delete"):
            raise ValueError(f"no prune strategy is called {strategy!r}: keep_latest or delete")
        for thread_id in thread_ids:
            if strategy == "delete":
                yield from self._delete_thread(thread_id)
                continue
            thread = self._thread({"configurable": {"thread_id": thread_id}})
            latest: dict[str, tuple[str, dict[str, Any]]] = {}
            records = yield from self._every(self._space("c", thread))
            for space, key, data, _ in records:
                ns = space.split(_SEP)[2]
                if ns not in latest or key > latest[ns][0]:
                    fields = ormsgpack.unpackb(data)
                    latest[ns] = (key, self.serde.loads_typed((fields[0], fields[1])).get("channel_versions", {}))
            changes: list[tuple[Any, ...]] = []
            for space, key, _, _ in records:
                ns = space.split(_SEP)[2]
                if key != latest[ns][0]:
                    changes.append(("delete", space, key))
                    changes.append(("delete_spaces", self._space("w", thread, ns, key)))
            for space, key, _, _ in (yield from self._every(self._space("b", thread))):
                ns = space.split(_SEP)[2]
                channel, version = key.rsplit(_SEP, 1)
                if ns not in latest or str(latest[ns][1].get(channel)) != version:
                    changes.append(("delete", space, key))
            for start in range(0, len(changes), 1000):
                chunk = changes[start : start + 1000]
                yield lambda blocking, chunk=chunk: self._native.write_records(chunk, blocking=blocking)

    def _sweep(self) -> Generator[Call, Any, int]:
        now = time.time()
        expired = [key for _, key, data, _ in (yield from self._every(_EXPIRY, prefix=False)) if ormsgpack.unpackb(data) <= now]
        for thread in expired:
            yield from self._delete_thread(thread)
        yield from sweep_steps(self._native)
        return len(expired)

    def sweep(self) -> int:
        """Erases the threads a ``ttl`` expired (their checkpoints and their persist messages)
        and every other expired record of the store's tenant; answers how many threads."""
        return _drive_sync(self._sweep())

    async def asweep(self) -> int:
        """Erases the threads a ``ttl`` expired (their checkpoints and their persist messages)
        and every other expired record of the store's tenant; answers how many threads."""
        return await _drive_async(self._sweep())

    # -- BaseCheckpointSaver -------------------------------------------------------------------

    def put(
        self, config: RunnableConfig, checkpoint: Checkpoint, metadata: CheckpointMetadata, new_versions: ChannelVersions
    ) -> RunnableConfig:
        return _drive_sync(self._put(config, checkpoint, metadata, new_versions))

    async def aput(
        self, config: RunnableConfig, checkpoint: Checkpoint, metadata: CheckpointMetadata, new_versions: ChannelVersions
    ) -> RunnableConfig:
        return await _drive_async(self._put(config, checkpoint, metadata, new_versions))

    def put_writes(
        self, config: RunnableConfig, writes: Sequence[tuple[str, Any]], task_id: str, task_path: str = ""
    ) -> None:
        _drive_sync(self._put_writes(config, writes, task_id, task_path))

    async def aput_writes(
        self, config: RunnableConfig, writes: Sequence[tuple[str, Any]], task_id: str, task_path: str = ""
    ) -> None:
        await _drive_async(self._put_writes(config, writes, task_id, task_path))

    def get_tuple(self, config: RunnableConfig) -> CheckpointTuple | None:
        return _drive_sync(self._get_tuple(config))

    async def aget_tuple(self, config: RunnableConfig) -> CheckpointTuple | None:
        return await _drive_async(self._get_tuple(config))

    def list(
        self,
        config: RunnableConfig | None,
        *,
        filter: dict[str, Any] | None = None,
        before: RunnableConfig | None = None,
        limit: int | None = None,
    ) -> Iterator[CheckpointTuple]:
        cursor, remaining = None, limit
        while True:
            found, cursor, remaining = _drive_sync(self._list(config, filter, before, cursor, remaining))
            yield from found
            if cursor is None or (remaining is not None and remaining <= 0):
                return

    async def alist(
        self,
        config: RunnableConfig | None,
        *,
        filter: dict[str, Any] | None = None,
        before: RunnableConfig | None = None,
        limit: int | None = None,
    ) -> AsyncIterator[CheckpointTuple]:
        cursor, remaining = None, limit
        while True:
            found, cursor, remaining = await _drive_async(self._list(config, filter, before, cursor, remaining))
            for item in found:
                yield item
            if cursor is None or (remaining is not None and remaining <= 0):
                return

    def delete_thread(self, thread_id: str) -> None:
        _drive_sync(self._delete_thread(thread_id))

    async def adelete_thread(self, thread_id: str) -> None:
        await _drive_async(self._delete_thread(thread_id))

    def delete_for_runs(self, run_ids: Sequence[str]) -> None:
        _drive_sync(self._delete_for_runs(run_ids))

    async def adelete_for_runs(self, run_ids: Sequence[str]) -> None:
        await _drive_async(self._delete_for_runs(run_ids))

    def copy_thread(self, source_thread_id: str, target_thread_id: str) -> None:
        _drive_sync(self._copy_thread(source_thread_id, target_thread_id))

    async def acopy_thread(self, source_thread_id: str, target_thread_id: str) -> None:
        await _drive_async(self._copy_thread(source_thread_id, target_thread_id))

    def prune(self, thread_ids: Sequence[str], *, strategy: str = "keep_latest") -> None:
        _drive_sync(self._prune(thread_ids, strategy))

    async def aprune(self, thread_ids: Sequence[str], *, strategy: str = "keep_latest") -> None:
        await _drive_async(self._prune(thread_ids, strategy))
