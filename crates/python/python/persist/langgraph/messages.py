"""The ``messages`` channel as a thread's persist messages: LangChain messages converted to
persist messages and back (the text as the content, every other field kept beside it), and the
paths of the thread's tree a checkpoint's messages are, cached by their last message.
"""

from __future__ import annotations

import json
import threading
from collections import OrderedDict
from collections.abc import Generator, Sequence
from typing import Any

from langchain_core.messages import BaseMessage, messages_from_dict

from ._drive import Call

# The record type of a ``messages`` value kept as the thread's messages: the id of its last one.
PATH = "persist.path"
# Where a LangChain message's fields are kept on its persist message (its text is the content).
_MESSAGE_KEY = "langgraph.message"


def _role(message: BaseMessage) -> str:
    return {"human": "user", "ai": "assistant", "system": "system", "tool": "tool"}.get(message.type, message.type)


def _text_of(content: Any) -> str:
    if isinstance(content, str):
        return content
    parts = []
    for block in content or []:
        if isinstance(block, str):
            parts.append(block)
        elif isinstance(block, dict) and isinstance(block.get("text"), str):
            parts.append(block["text"])
    return "\n".join(parts)


def _as_persist(message: BaseMessage) -> tuple[str, str, dict[str, Any]]:
    """A LangChain message as a persist message: its role, its text, its other fields."""
    # Fields left at their defaults are not stored (they come back as defaults).
    fields = message.model_dump(exclude_defaults=True)
    fields["type"] = message.type
    content = fields.pop("content", "")
    if not isinstance(content, str):
        fields["content"] = content
    # Refused here, not in the store: such a value is kept the channel's way instead.
    json.dumps(fields)
    return _role(message), _text_of(content), {_MESSAGE_KEY: fields}


def _fingerprint(role: str, text: str, metadata: dict[str, Any]) -> str:
    return json.dumps([role, text, metadata], sort_keys=True, separators=(",", ":"))


def _from_persist(text: str, metadata: dict[str, Any]) -> BaseMessage:
    fields = dict(metadata[_MESSAGE_KEY])
    fields.setdefault("content", text)
    return messages_from_dict([{"type": fields["type"], "data": fields}])[0]


class Path:
    """A ``messages`` value as stored: each message with its persist id and fingerprint."""

    __slots__ = ("ids", "messages", "prints")

    def __init__(self) -> None:
        self.ids: list[str] = []
        self.messages: list[BaseMessage] = []
        self.prints: list[str] = []

    def extended(self, count: int, ids: Sequence[str], messages: Sequence[BaseMessage], prints: Sequence[str]) -> Path:
        path = Path()
        path.ids = self.ids[:count] + list(ids)
        path.messages = self.messages[:count] + list(messages)
        path.prints = self.prints[:count] + list(prints)
        return path


class Paths:
    """Writes and reads the paths of threads' trees through the native store, and remembers the
    latest ones (a path never changes: it is named by its last message)."""

    def __init__(self, native: Any, cached: int) -> None:
        self._native = native
        self._paths: OrderedDict[tuple[str, str], Path] = OrderedDict()
        # The head of the messages value of a checkpoint this saver wrote or read:
        # (thread, ns, checkpoint id) -> (channel version, head).
        self._heads: OrderedDict[tuple[str, str, str], tuple[str, str]] = OrderedDict()
        self._cached = cached
        self._lock = threading.Lock()

    def head_of(self, thread: str, ns: str, checkpoint_id: str) -> tuple[str, str] | None:
        """The (version, head) of a checkpoint's messages, when remembered."""
        with self._lock:
            return self._heads.get((thread, ns, checkpoint_id))

    def forget(self, thread: str) -> None:
        """Forgets what is remembered of a thread (deleted)."""
        with self._lock:
            for key in [key for key in self._paths if key[0] == thread]:
                del self._paths[key]
            for key in [key for key in self._heads if key[0] == thread]:
                del self._heads[key]

    def _cached_path(self, thread: str, head: str) -> Path | None:
        with self._lock:
            path = self._paths.get((thread, head))
            if path is not None:
                self._paths.move_to_end((thread, head))
            return path

    def _remember(self, thread: str, head: str, path: Path) -> None:
        with self._lock:
            self._paths[(thread, head)] = path
            self._paths.move_to_end((thread, head))
            while len(self._paths) > self._cached:
                self._paths.popitem(last=False)

    def remember_head(self, thread: str, ns: str, checkpoint_id: str, version: str, head: str) -> None:
        with self._lock:
            self._heads[(thread, ns, checkpoint_id)] = (version, head)
            while len(self._heads) > self._cached:
                self._heads.popitem(last=False)

    def load(self, thread: str, head: str) -> Generator[Call, Any, Path]:
        if not head:
            return Path()
        cached = self._cached_path(thread, head)
        if cached is not None:
            return cached
        stored = yield lambda blocking: self._native.read_path(thread, head, blocking=blocking)
        path = Path()
        for message_id, role, text, metadata in stored:
            path.ids.append(message_id)
            path.messages.append(_from_persist(text, metadata))
            path.prints.append(_fingerprint(role, text, metadata))
        self._remember(thread, head, path)
        return path

    def store(self, thread: str, before: str, messages: list[BaseMessage]) -> Generator[Call, Any, str]:
        """Writes what ``messages`` adds to the path ending at ``before``; answers its head."""
        old = yield from self.load(thread, before)
        same = 0
        converted: list[tuple[str, str, dict[str, Any]]] = []
        prints: list[str] = []
        for index, message in enumerate(messages):
            if index < len(old.messages) and index == same and message is old.messages[index]:
                same += 1
                continue
            as_persist = _as_persist(message)
            fingerprint = _fingerprint(*as_persist)
            if index < len(old.prints) and index == same and fingerprint == old.prints[index]:
                same += 1
                continue
            converted.append(as_persist)
            prints.append(fingerprint)
        if same == len(messages):
            head = old.ids[same - 1] if same else ""
            if same < len(old.ids) and head:
                self._remember(thread, head, old.extended(same, [], [], []))
            return head
        # Every message from the first that differs on is written, in one turn.
        fresh = messages[same:]
        parent = old.ids[same - 1] if same else None
        ids = yield lambda blocking: self._native.append_path(thread, parent, converted, blocking=blocking)
        head = ids[-1]
        self._remember(thread, head, old.extended(same, ids, fresh, prints))
        return head

    def copy(self, source: str, target: str, head: str, copied: dict[str, str]) -> Generator[Call, Any, str]:
        """Copies the path ending at ``head`` to the target thread (what is not there yet)."""
        stored = yield lambda blocking: self._native.read_path(source, head, blocking=blocking)
        start = 0
        while start < len(stored) and stored[start][0] in copied:
            start += 1
        if start < len(stored):
            parent = copied[stored[start - 1][0]] if start else None
            fresh = [(role, text, metadata) for _, role, text, metadata in stored[start:]]
            ids = yield lambda blocking: self._native.append_path(target, parent, fresh, blocking=blocking)
            copied.update(zip((message[0] for message in stored[start:]), ids))
        return copied[head]

