"""LangGraph's long-term memory in persist: :class:`PersistStore`, a ``BaseStore`` whose items
are records of the store, per namespace and key, in the store's tenant.

>>> store = PersistStore(Store.open("sqlite:graph.db"), index={"dims": 3, "embed": embed})  # doctest: +SKIP
>>> graph = builder.compile(checkpointer=saver, store=store)                                  # doctest: +SKIP

An item keeps its value, its times, its TTL and, when the store has an index, the vectors of
its indexed fields; ``search(query=...)`` ranks a namespace's items by cosine similarity to
the query's embedding (the best of an item's fields). An item past its TTL is never answered
nor listed, by any process; ``sweep`` deletes them for good.
"""

from __future__ import annotations

import math
import time
from collections.abc import Generator, Iterable
from datetime import datetime, timezone
from typing import Any

import ormsgpack
from langgraph.store.base import (
    NOT_PROVIDED,
    BaseStore,
    GetOp,
    IndexConfig,
    Item,
    ListNamespacesOp,
    MatchCondition,
    Op,
    PutOp,
    Result,
    SearchItem,
    SearchOp,
    TTLConfig,
    ensure_embeddings,
    get_text_at_path,
    tokenize_path,
)

from .._persist import Store
from ._drive import Call, drive_async, drive_sync, sweep_steps

__all__ = ["PersistStore"]

_SEP = "\x1f"
_ROOT = "lg:s"
_PAGE = 1000


def _space(namespace: tuple[str, ...]) -> str:
    for label in namespace:
        if _SEP in label:
            raise ValueError("a namespace label must not contain U+001F")
    return _ROOT + "".join(_SEP + label for label in namespace) + _SEP


def _namespace(space: str) -> tuple[str, ...]:
    return tuple(space[len(_ROOT) + 1 : -1].split(_SEP))


def _at(micros: int) -> datetime:
    return datetime.fromtimestamp(micros / 1e6, tz=timezone.utc)


def _compare(value: Any, wanted: Any) -> bool:
    """Whether an item's value matches a filter's, as LangGraph's stores compare them."""
    if isinstance(wanted, dict):
        if any(key.startswith("$") for key in wanted):
            return all(_operator(value, op, operand) for op, operand in wanted.items())
        return isinstance(value, dict) and all(_compare(value.get(k), v) for k, v in wanted.items())
    if isinstance(wanted, (list, tuple)):
        return (
            isinstance(value, (list, tuple))
            and len(value) == len(wanted)
            and all(_compare(a, b) for a, b in zip(value, wanted))
        )
    return value == wanted


def _operator(value: Any, op: str, operand: Any) -> bool:
    if op == "$eq":
        return value == operand
    if op == "$ne":
        return value != operand
    if value is None:
        return False
    compare = {"$gt": float.__gt__, "$gte": float.__ge__, "$lt": float.__lt__, "$lte": float.__le__}.get(op)
    if compare is None:
        raise ValueError(f"Unsupported operator: {op}")
    return compare(float(value), float(operand))


def _matches(condition: MatchCondition, namespace: tuple[str, ...]) -> bool:
    path = tuple(condition.path)
    if len(namespace) < len(path):
        return False
    pairs = zip(namespace, path) if condition.match_type == "prefix" else zip(reversed(namespace), reversed(path))
    return all(want == "*" or have == want for have, want in pairs)


def _cosine(a: list[float], b: list[float]) -> float:
    dot = sum(x * y for x, y in zip(a, b))
    norm = math.sqrt(sum(x * x for x in a)) * math.sqrt(sum(y * y for y in b))
    return dot / norm if norm else 0.0


class _Stored:
    """An item as a record holds it."""

    __slots__ = ("namespace", "key", "value", "created", "updated", "ttl", "vectors", "expires_at")

    def __init__(self, record: tuple[Any, ...]) -> None:
        space, self.key, data, self.expires_at = record
        self.namespace = _namespace(space)
        fields = ormsgpack.unpackb(data)
        self.value: dict[str, Any] = fields["v"]
        self.created: int = fields["c"]
        self.updated: int = fields["u"]
        self.ttl: float | None = fields.get("t")
        self.vectors: dict[str, list[float]] = fields.get("e") or {}

    def item(self, score: float | None = None, searched: bool = False) -> Item:
        args = dict(
            namespace=self.namespace,
            key=self.key,
            value=self.value,
            created_at=_at(self.created),
            updated_at=_at(self.updated),
        )
        return SearchItem(**args, score=score) if searched else Item(**args)


class PersistStore(BaseStore):
    """LangGraph's ``BaseStore`` on a persist :class:`~persist.Store` (its tenant's items).

    ``index`` (``IndexConfig``: ``dims``, ``embed``, ``fields``) embeds the fields of each item
    put and makes ``search(query=...)`` semantic; ``ttl`` (``TTLConfig``: ``default_ttl`` in
    minutes, ``refresh_on_read``) expires items.
    """

    supports_ttl = True

    def __init__(self, store: Store, *, index: IndexConfig | None = None, ttl: TTLConfig | None = None) -> None:
        self.store = store
        self._native = store.graph_store()
        self.index_config = dict(index) if index else None
        self.embeddings = ensure_embeddings(index["embed"]) if index else None
        fields = (index or {}).get("fields") or ["$"]
        self._fields = [(field, tokenize_path(field)) for field in fields]
        self.ttl_config = ttl

    # -- steps ---------------------------------------------------------------------------------

    def _read(self, space: str, **query: Any) -> Generator[Call, Any, list[_Stored]]:
        """Every live record of ``space`` (a prefix with ``prefix=True``), as items."""
        found: list[_Stored] = []
        cursor = None
        while True:
            page, cursor = yield lambda blocking, after=cursor: self._native.read_records(
                space, limit=_PAGE, cursor=after, blocking=blocking, **query
            )
            found.extend(_Stored(record) for record in page)
            if cursor is None:
                return found

    def _refresh(self, op: GetOp | SearchOp, items: list[_Stored]) -> Generator[Call, Any, None]:
        # BaseStore's get and search settle the op's refresh_ttl from the store's TTLConfig.
        touches = [
            ("touch", _space(item.namespace), item.key, time.time() + item.ttl * 60)
            for item in items
            if op.refresh_ttl and item.ttl is not None
        ]
        if touches:
            yield lambda blocking: self._native.write_records(touches, blocking=blocking)

    def _search(self, op: SearchOp) -> Generator[Call, Any, list[SearchItem]]:
        space = _space(op.namespace_prefix) if op.namespace_prefix else _ROOT + _SEP
        items = yield from self._read(space, prefix=True)
        if op.filter:
            items = [item for item in items if all(_compare(item.value.get(k), v) for k, v in op.filter.items())]
        if op.query and self.embeddings is not None:
            query = op.query
            vector = yield lambda blocking: (
                self.embeddings.embed_query(query) if blocking else self.embeddings.aembed_query(query)
            )
            scored = [(max((_cosine(vector, v) for v in item.vectors.values()), default=None), item) for item in items]
            ranked = sorted((pair for pair in scored if pair[0] is not None), key=lambda pair: -pair[0])
            ranked += [pair for pair in scored if pair[0] is None]
        else:
            ranked = [(None, item) for item in sorted(items, key=lambda item: -item.updated)]
        kept = ranked[op.offset : op.offset + op.limit]
        yield from self._refresh(op, [item for _, item in kept])
        return [item.item(score, searched=True) for score, item in kept]

    def _list_namespaces(self, op: ListNamespacesOp) -> Generator[Call, Any, list[tuple[str, ...]]]:
        items = yield from self._read(_ROOT + _SEP, prefix=True)
        found = {item.namespace for item in items}
        if op.match_conditions:
            found = {ns for ns in found if all(_matches(c, ns) for c in op.match_conditions)}
        if op.max_depth is not None:
            found = {ns[: op.max_depth] for ns in found}
        return sorted(found)[op.offset : op.offset + op.limit]

    def _embed_puts(self, puts: dict[tuple[tuple[str, ...], str], PutOp]) -> Generator[Call, Any, dict[Any, dict]]:
        """The vectors of each put's indexed fields (none without an index)."""
        vectors: dict[tuple[tuple[str, ...], str], dict[str, list[float]]] = {place: {} for place in puts}
        if self.embeddings is None:
            return vectors
        texts: list[str] = []
        where: list[tuple[tuple[tuple[str, ...], str], str]] = []
        for place, op in puts.items():
            if op.value is None or op.index is False:
                continue
            fields = self._fields if op.index is None else [(f, tokenize_path(f)) for f in op.index]
            for path, tokens in fields:
                found = get_text_at_path(op.value, tokens)
                for index, text in enumerate(found):
                    texts.append(text)
                    where.append((place, path if len(found) == 1 else f"{path}.{index}"))
        if texts:
            embedded = yield lambda blocking: (
                self.embeddings.embed_documents(texts) if blocking else self.embeddings.aembed_documents(texts)
            )
            for (place, path), vector in zip(where, embedded, strict=True):
                vectors[place][path] = list(vector)
        return vectors

    def _put(self, puts: dict[tuple[tuple[str, ...], str], PutOp]) -> Generator[Call, Any, None]:
        vectors = yield from self._embed_puts(puts)
        by_space: dict[str, list[str]] = {}
        for namespace, key in puts:
            by_space.setdefault(_space(namespace), []).append(key)
        created: dict[tuple[str, str], int] = {}
        for space, keys in by_space.items():
            for start in range(0, len(keys), _PAGE):
                for item in (yield from self._read(space, keys=keys[start : start + _PAGE])):
                    created[(space, item.key)] = item.created
        now = int(time.time() * 1e6)
        changes: list[tuple[Any, ...]] = []
        for (namespace, key), op in puts.items():
            space = _space(namespace)
            if op.value is None:
                changes.append(("delete", space, key))
                continue
            ttl = op.ttl if op.ttl is not NOT_PROVIDED else (self.ttl_config or {}).get("default_ttl")
            fields = {
                "v": dict(op.value),
                "c": created.get((space, key), now),
                "u": now,
                "t": ttl,
                "e": vectors[(namespace, key)],
            }
            expires_at = now / 1e6 + ttl * 60 if ttl is not None else None
            changes.append(("put", space, key, ormsgpack.packb(fields), expires_at))
        for start in range(0, len(changes), _PAGE):
            chunk = changes[start : start + _PAGE]
            yield lambda blocking, chunk=chunk: self._native.write_records(chunk, blocking=blocking)

    def _batch(self, ops: Iterable[Op]) -> Generator[Call, Any, list[Result]]:
        results: list[Result] = []
        puts: dict[tuple[tuple[str, ...], str], PutOp] = {}
        for op in ops:
            if isinstance(op, GetOp):
                found = yield from self._read(_space(op.namespace), keys=[op.key])
                yield from self._refresh(op, found)
                results.append(found[0].item() if found else None)
            elif isinstance(op, SearchOp):
                results.append((yield from self._search(op)))
            elif isinstance(op, ListNamespacesOp):
                results.append((yield from self._list_namespaces(op)))
            elif isinstance(op, PutOp):
                _space(op.namespace)
                puts[(op.namespace, op.key)] = op
                results.append(None)
            else:
                raise ValueError(f"Unknown operation type: {type(op)}")
        if puts:
            yield from self._put(puts)
        return results

    # -- BaseStore -----------------------------------------------------------------------------

    def batch(self, ops: Iterable[Op]) -> list[Result]:
        return drive_sync(self._batch(ops))

    async def abatch(self, ops: Iterable[Op]) -> list[Result]:
        return await drive_async(self._batch(ops))

    def sweep(self) -> int:
        """Deletes every expired record of the tenant (items and checkpoints); answers how many."""
        return drive_sync(sweep_steps(self._native))

    async def asweep(self) -> int:
        """Deletes every expired record of the tenant (items and checkpoints); answers how many."""
        return await drive_async(sweep_steps(self._native))
