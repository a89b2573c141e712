"""The official MCP Python SDK (`mcp`) against persist's MCP server, unmodified.

Over stdio (`persist --url URL --tenant T mcp`, spawned by the SDK's `stdio_client`) and over
streamable HTTP (`persist serve`'s /mcp, through the SDK's `streamable_http_client`, each client
with its tenant's key as a bearer token): every tool and the thread resources, two clients
patching one working memory at once, two tenants, bad arguments, and a server killed in the
middle of its writes.

PERSIST_BIN is the persist binary (default: target/debug/persist of this checkout);
PERSIST_POSTGRES_URL the PostgreSQL server (default postgres://postgres@127.0.0.1:5432/test),
where each test makes a schema of its own. Each SQLite store is a fresh file in a temporary
folder; each server listens on a free port. Recall embeds with a stand-in of OpenAI's embeddings
endpoint started here (bag of words hashed into 64 dimensions).
"""

import json
import math
import os
import random
import re
import shutil
import signal
import subprocess
import threading
import time
import urllib.error
import urllib.request
import uuid
from contextlib import asynccontextmanager, contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import anyio
import pytest
from mcp.client.session import ClientSession
from mcp.client.stdio import StdioServerParameters, stdio_client
from mcp.client.streamable_http import streamable_http_client
from mcp.shared._httpx_utils import create_mcp_http_client
from mcp.shared.exceptions import MCPError

HERE = Path(__file__).resolve().parent
PERSIST_BIN = str(Path(os.environ.get("PERSIST_BIN") or HERE / "../../../../target/debug/persist").resolve())
POSTGRES_URL = os.environ.get("PERSIST_POSTGRES_URL", "postgres://postgres@127.0.0.1:5432/test")
KEYS = {"acme": "sk-acme-0123456789abcdef", "globex": "sk-globex-0123456789abcdef"}
EMBEDDINGS_KEY = "sk-embeddings-stand-in"
TOOLS = {
    "list_threads": set(),
    "read_thread": {"thread_id"},
    "search_messages": {"query"},
    "recall": {"text"},
    "read_memory": {"resource"},
    "update_memory": {"resource"},
    "append_message": {"thread_id", "text"},
}

pytestmark = pytest.mark.anyio


# ---------------------------------------------------------------------------------------------
# Stores, servers and the stand-in embedder


def new_id(prefix="py"):
    return f"{prefix}-{uuid.uuid4().hex[:12]}"


@pytest.fixture
def sqlite_url(tmp_path):
    return f"sqlite:{tmp_path / 'persist.db'}"


@pytest.fixture
def postgres_url():
    schema = f"persist_mcp_py_{os.getpid()}_{uuid.uuid4().hex[:8]}"
    yield f"{POSTGRES_URL}{'&' if '?' in POSTGRES_URL else '?'}schema={schema}"
    if shutil.which("psql"):
        subprocess.run(
            ["psql", POSTGRES_URL, "-qc", f'DROP SCHEMA IF EXISTS "{schema}" CASCADE'],
            check=False,
            capture_output=True,
        )


def bag_of_words(text, dimensions=64):
    """Each word (lowercase letters and digits) hashed (FNV-1a) into one of `dimensions`
    buckets, counted, and the vector normalised: texts sharing words are near."""
    vector = [0.0] * dimensions
    for word in re.findall(r"[a-z0-9]+", text.lower()):
        h = 0x811C9DC5
        for byte in word.encode():
            h = ((h ^ byte) * 0x01000193) & 0xFFFFFFFF
        vector[h % dimensions] += 1.0
    norm = math.sqrt(sum(x * x for x in vector))
    if norm == 0:
        vector[0], norm = 1.0, 1.0
    return [x / norm for x in vector]


class Embedder:
    """A stand-in for OpenAI's POST {base}/embeddings, on a free port; `requests` holds what
    each request carried (its path, Authorization header and body)."""

    model = "stand-in-embedding"

    def __init__(self):
        self.requests = []
        embedder = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers.get("content-length", 0))))
                embedder.requests.append((self.path, self.headers.get("authorization"), body))
                if not self.path.endswith("/embeddings"):
                    self.send_error(404)
                    return
                inputs = body["input"] if isinstance(body["input"], list) else [body["input"]]
                answer = json.dumps(
                    {
                        "object": "list",
                        "model": body.get("model"),
                        "data": [
                            {"object": "embedding", "index": i, "embedding": bag_of_words(text)}
                            for i, text in enumerate(inputs)
                        ],
                        "usage": {"prompt_tokens": 0, "total_tokens": 0},
                    }
                ).encode()
                self.send_response(200)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(answer)))
                self.end_headers()
                self.wfile.write(answer)

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/v1"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def args(self, dimensions=None):
        args = ["--embeddings-url", self.url, "--embeddings-model", self.model]
        return args + (["--embeddings-dimensions", str(dimensions)] if dimensions else [])

    def close(self):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def embedder():
    embedder = Embedder()
    yield embedder
    embedder.close()


@contextmanager
def serve(url, log_path, extra_args=()):
    """`persist serve` on `url` with the acme and globex keys; yields its base URL once /health
    answers. It binds port 0 and says which port it got: a port picked here and handed on could
    be taken by another process before it binds."""
    # Only the flags given here configure it (not a PERSIST_EMBEDDINGS_URL of the caller's).
    env = {k: v for k, v in os.environ.items() if not k.startswith("PERSIST_EMBEDDINGS_")}
    env["PERSIST_SERVE_KEYS"] = ",".join(f"{tenant}:{key}" for tenant, key in KEYS.items())
    env["PERSIST_EMBEDDINGS_KEY"] = EMBEDDINGS_KEY
    with open(log_path, "w") as log:
        process = subprocess.Popen(
            [PERSIST_BIN, "--url", url, "serve", "--addr", "127.0.0.1:0", *extra_args],
            env=env,
            stdout=log,
            stderr=log,
        )
    base = None
    try:
        deadline = time.monotonic() + 20
        while True:
            assert process.poll() is None, f"persist serve exited: {Path(log_path).read_text()}"
            if base is None:
                said = re.search(r"Conversations API on (http://[^/\s]+)/v1", Path(log_path).read_text())
                base = said and said.group(1)
            try:
                if base is None:
                    raise ConnectionError("not listening yet")
                with urllib.request.urlopen(f"{base}/health", timeout=1) as response:
                    if response.status == 200:
                        break
            except (urllib.error.URLError, ConnectionError, OSError):
                pass
            assert time.monotonic() < deadline, f"persist serve never answered: {Path(log_path).read_text()}"
            time.sleep(0.05)
        yield base
    finally:
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@asynccontextmanager
async def stdio_session(url, log_path, tenant="acme", extra_args=(), pid_file=None):
    """An initialized session with `persist --url URL --tenant T mcp`, spawned by the SDK. With
    `pid_file`, the server is started through `sh -c 'echo $$ >FILE; exec persist …'`, so the
    file holds the server's own process id."""
    args = ["--url", url, "--tenant", tenant, "mcp", *extra_args]
    command = PERSIST_BIN
    if pid_file is not None:
        command, args = "/bin/sh", ["-c", 'echo $$ >"$0"; exec "$@"', str(pid_file), PERSIST_BIN, *args]
    params = StdioServerParameters(command=command, args=args, env={"PERSIST_EMBEDDINGS_KEY": EMBEDDINGS_KEY})
    with open(log_path, "a") as log:
        async with stdio_client(params, errlog=log) as (read, write):
            async with ClientSession(read, write) as session:
                await session.initialize()
                yield session


@asynccontextmanager
async def http_session(base, key):
    """An initialized session with `persist serve`'s /mcp, authenticating with `key`."""
    async with create_mcp_http_client(headers={"Authorization": f"Bearer {key}"}) as http:
        async with streamable_http_client(f"{base}/mcp", http_client=http) as (read, write):
            async with ClientSession(read, write) as session:
                await session.initialize()
                yield session


# ---------------------------------------------------------------------------------------------
# Calling tools


def text_of(result):
    return "\n".join(getattr(content, "text", "") for content in result.content)


async def call(session, name, **arguments):
    """Calls a tool that must succeed; checks the result is structured JSON, and the same JSON as
    its one text content; answers the structured content."""
    result = await session.call_tool(name, arguments)
    assert not result.is_error, f"{name}({arguments}) failed: {text_of(result)}"
    assert isinstance(result.structured_content, dict), f"{name}: no structuredContent: {result}"
    assert len(result.content) == 1 and result.content[0].type == "text", result.content
    assert json.loads(result.content[0].text) == result.structured_content
    return result.structured_content


async def refused(session, name, arguments):
    """Calls a tool with bad input: answers ("tool", text) for a result with isError, ("rpc",
    message) for a JSON-RPC error; anything else (a success, a broken connection) fails."""
    try:
        result = await session.call_tool(name, arguments)
    except MCPError as error:
        assert error.message, f"{name}({arguments}): a JSON-RPC error without a message"
        return "rpc", error.message
    assert result.is_error, f"{name}({arguments}) was accepted: {result.structured_content}"
    assert text_of(result).strip(), f"{name}({arguments}): isError without a text"
    return "tool", text_of(result)


async def pages(session, name, key, **arguments):
    """Every item of a paged tool's answers, following next_cursor."""
    items, cursor = [], None
    for _ in range(1000):
        page = await call(session, name, **arguments, **({"cursor": cursor} if cursor else {}))
        assert "next_cursor" in page, page
        items += page[key]
        cursor = page["next_cursor"]
        if cursor is None:
            return items
    raise AssertionError(f"{name}: no last page")


async def append(session, thread_id, text, **extra):
    answer = await call(session, "append_message", thread_id=thread_id, text=text, **extra)
    assert answer["thread_id"] == thread_id, answer
    assert isinstance(answer["id"], str) and answer["id"], answer
    assert isinstance(answer["seq"], int), answer
    return answer


async def eventually(probe, timeout=10.0):
    """Calls `probe` until it answers something true (recall's index may lag the write)."""
    deadline = time.monotonic() + timeout
    while True:
        answer = await probe()
        if answer or time.monotonic() > deadline:
            return answer
        await anyio.sleep(0.1)


# ---------------------------------------------------------------------------------------------
# 1. Every tool and the resources, over each transport


async def exercise(session, embedder):
    """Initialize (done), list tools and resources, call every tool with good input."""
    init = session.initialize_result
    assert init is not None and init.capabilities.tools is not None, init
    assert init.capabilities.resources is not None, init

    tools = {tool.name: tool for tool in (await session.list_tools()).tools}
    assert set(TOOLS) <= set(tools), f"tools missing: {set(TOOLS) - set(tools)}"
    for name, required in TOOLS.items():
        schema = tools[name].input_schema
        assert schema.get("type") == "object", (name, schema)
        assert required <= set(schema.get("required", [])), (name, schema)
        assert required <= set(schema.get("properties", {})), (name, schema)

    one, two = new_id(), new_id()
    first = await append(session, one, "The cat sat on the warm mat in Paris", role="user", thread_metadata={"user_id": "u1"})
    second = await append(
        session, one, "Paris is the capital of France", metadata={"source": "test"}, idempotency_key=f"{one}-2"
    )
    assert second["seq"] > first["seq"], (first, second)
    # The same idempotency key: the same message, written once.
    again = await append(
        session, one, "Paris is the capital of France", metadata={"source": "test"}, idempotency_key=f"{one}-2"
    )
    assert (again["id"], again["seq"]) == (second["id"], second["seq"]), (second, again)
    third = await append(
        session, two, "Quarterly revenue grew by ten percent", role="system", thread_metadata={"user_id": "u2"}
    )

    # list_threads, one page and every page one at a time.
    listed = await call(session, "list_threads")
    assert "next_cursor" in listed, listed
    threads = {thread["thread_id"]: thread for thread in listed["threads"]}
    assert {one, two} <= set(threads), listed
    for thread in threads.values():
        assert {"thread_id", "title", "metadata", "created_at", "updated_at"} <= set(thread), thread
    assert threads[one]["metadata"].get("user_id") == "u1", threads[one]
    assert threads[two]["metadata"].get("user_id") == "u2", threads[two]
    first_page = await call(session, "list_threads", limit=1)
    assert len(first_page["threads"]) == 1 and first_page["next_cursor"], first_page
    paged = await pages(session, "list_threads", "threads", limit=1)
    assert sorted(thread["thread_id"] for thread in paged) == sorted(threads), paged

    # read_thread: full and compacted (no summary yet: the same messages), paged.
    full = await call(session, "read_thread", thread_id=one, view="full")
    assert full["thread_id"] == one and "next_cursor" in full, full
    assert [m["text"] for m in full["messages"]] == ["The cat sat on the warm mat in Paris", "Paris is the capital of France"]
    assert [m["role"] for m in full["messages"]] == ["user", "assistant"], full
    assert [(m["id"], m["seq"]) for m in full["messages"]] == [
        (first["id"], first["seq"]),
        (second["id"], second["seq"]),
    ], full
    for message in full["messages"]:
        assert {"id", "seq", "role", "text", "status", "created_at"} <= set(message), message
    compacted = await call(session, "read_thread", thread_id=one)
    assert compacted["summary"] is None, compacted
    assert compacted["messages"] == full["messages"], compacted
    assert await call(session, "read_thread", thread_id=one, view="compacted") == compacted
    paged = await pages(session, "read_thread", "messages", thread_id=one, view="full", limit=1)
    assert paged == full["messages"], paged
    other = await call(session, "read_thread", thread_id=two, view="full")
    assert [(m["role"], m["text"]) for m in other["messages"]] == [("system", "Quarterly revenue grew by ten percent")]

    # search_messages: a word, within a thread, paged.
    found = await call(session, "search_messages", query="revenue")
    assert [(h["thread_id"], h["seq"]) for h in found["hits"]] == [(two, third["seq"])], found
    hit = found["hits"][0]
    assert {"thread_id", "seq", "role", "snippet", "created_at"} <= set(hit), hit
    assert "revenue" in hit["snippet"].lower() and hit["role"] == "system", hit
    assert (await call(session, "search_messages", query="revenue", thread_id=one))["hits"] == []
    found = await call(session, "search_messages", query="capital", thread_id=one)
    assert [(h["thread_id"], h["seq"]) for h in found["hits"]] == [(one, second["seq"])], found
    paged = await pages(session, "search_messages", "hits", query="paris", limit=1)
    assert sorted((h["thread_id"], h["seq"]) for h in paged) == [(one, first["seq"]), (one, second["seq"])], paged

    # Working memory: read, patch (a JSON merge patch), replace with the expected version.
    resource = f"user:{new_id()}"
    assert await call(session, "read_memory", resource=resource) == {"resource": resource, "document": None, "version": 0}
    patched = await call(session, "update_memory", resource=resource, patch={"name": "Ada", "prefs": {"lang": "en"}})
    assert patched == {"resource": resource, "document": {"name": "Ada", "prefs": {"lang": "en"}}, "version": 1}
    patched = await call(session, "update_memory", resource=resource, patch={"name": None, "prefs": {"theme": "dark"}})
    assert patched == {"resource": resource, "document": {"prefs": {"lang": "en", "theme": "dark"}}, "version": 2}
    replaced = await call(session, "update_memory", resource=resource, document={"name": "Grace"}, version=2)
    assert replaced == {"resource": resource, "document": {"name": "Grace"}, "version": 3}
    kind, text = await refused(session, "update_memory", {"resource": resource, "document": {"name": "Lovelace"}, "version": 2})
    assert kind == "tool" and "conflict" in text.lower() and "3" in text, (kind, text)
    assert await call(session, "read_memory", resource=resource) == replaced
    replaced = await call(session, "update_memory", resource=resource, document={"name": "Hopper"})
    assert replaced == {"resource": resource, "document": {"name": "Hopper"}, "version": 4}
    # Version 0: only if it was never written.
    fresh = f"project:{new_id()}"
    created = await call(session, "update_memory", resource=fresh, document={"name": "atlas"}, version=0)
    assert created == {"resource": fresh, "document": {"name": "atlas"}, "version": 1}
    kind, text = await refused(session, "update_memory", {"resource": fresh, "document": {"name": "other"}, "version": 0})
    assert kind == "tool" and "conflict" in text.lower() and "1" in text, (kind, text)

    # recall: the stand-in embedder's nearest message first; user_id keeps to that user's threads.
    async def nearest():
        hits = (await call(session, "recall", text="What is the capital of France?"))["hits"]
        return hits if hits and hits[0]["text"] == "Paris is the capital of France" else None

    hits = await eventually(nearest)
    assert hits, (await call(session, "recall", text="What is the capital of France?"), embedder.requests[-3:])
    assert (hits[0]["thread_id"], hits[0]["seq"], hits[0]["role"]) == (one, second["seq"], "assistant"), hits
    assert all(isinstance(hit["score"], (int, float)) for hit in hits), hits
    assert [hit["score"] for hit in hits] == sorted((hit["score"] for hit in hits), reverse=True), hits
    assert len(hits) <= 5
    limited = await call(session, "recall", text="What is the capital of France?", limit=1)
    assert [(h["thread_id"], h["seq"]) for h in limited["hits"]] == [(one, second["seq"])], limited
    theirs = await call(session, "recall", text="What is the capital of France?", user_id="u2")
    assert theirs["hits"] and {hit["thread_id"] for hit in theirs["hits"]} == {two}, theirs
    within = await call(session, "recall", text="revenue percent", thread_id=one)
    assert {hit["thread_id"] for hit in within["hits"]} <= {one}, within
    assert embedder.requests, "the embedder was never asked"
    for path, authorization, body in embedder.requests:
        assert path == "/v1/embeddings" and authorization == f"Bearer {EMBEDDINGS_KEY}", (path, authorization)
        assert body["model"] == embedder.model, body

    # Resources: the threads, the template, one thread's compacted view.
    uris = {str(r.uri) for r in (await session.list_resources()).resources}
    assert {f"persist://threads/{one}", f"persist://threads/{two}"} <= uris, uris
    templates = (await session.list_resource_templates()).resource_templates
    assert "persist://threads/{thread_id}" in [t.uri_template for t in templates], templates
    read = await session.read_resource(f"persist://threads/{one}")
    assert len(read.contents) == 1 and read.contents[0].mime_type == "application/json", read
    view = json.loads(read.contents[0].text)
    assert view["thread_id"] == one and [m["text"] for m in view["messages"]] == [
        "The cat sat on the warm mat in Paris",
        "Paris is the capital of France",
    ], view
    with pytest.raises(MCPError):
        await session.read_resource(f"persist://threads/{new_id()}")
    # The connection is still good after the error.
    assert (await call(session, "read_memory", resource=resource))["version"] == 4


async def test_every_tool_over_stdio(tmp_path, sqlite_url, embedder):
    async with stdio_session(sqlite_url, tmp_path / "mcp.log", extra_args=embedder.args()) as session:
        await exercise(session, embedder)


async def test_every_tool_over_stdio_on_postgres(tmp_path, postgres_url, embedder):
    async with stdio_session(postgres_url, tmp_path / "mcp.log", extra_args=embedder.args(64)) as session:
        await exercise(session, embedder)


async def test_every_tool_over_http(tmp_path, postgres_url, embedder):
    with serve(postgres_url, tmp_path / "serve.log", embedder.args(64)) as base:
        async with http_session(base, KEYS["acme"]) as session:
            await exercise(session, embedder)


async def test_every_tool_over_http_on_sqlite(tmp_path, sqlite_url, embedder):
    with serve(sqlite_url, tmp_path / "serve.log", embedder.args()) as base:
        async with http_session(base, KEYS["acme"]) as session:
            await exercise(session, embedder)


# ---------------------------------------------------------------------------------------------
# 2. Two clients patching one working memory at once


async def patch_concurrently(first, second, per_client=25):
    resource = f"user:{new_id()}"
    versions = []

    async def patches(session, prefix):
        async def one(i):
            answer = await call(session, "update_memory", resource=resource, patch={f"{prefix}{i:02}": i})
            versions.append(answer["version"])

        async with anyio.create_task_group() as group:
            for i in range(per_client):
                group.start_soon(one, i)

    async with anyio.create_task_group() as group:
        group.start_soon(patches, first, "a")
        group.start_soon(patches, second, "b")

    total = 2 * per_client
    final = await call(first, "read_memory", resource=resource)
    expected = {f"{prefix}{i:02}": i for prefix in "ab" for i in range(per_client)}
    assert final["document"] == expected, f"lost patches: {set(expected) - set(final['document'] or {})}"
    assert final["version"] == total, final
    assert sorted(versions) == list(range(1, total + 1)), sorted(versions)
    assert await call(second, "read_memory", resource=resource) == final


async def test_two_stdio_servers_patch_one_memory(tmp_path, sqlite_url):
    # Two processes on one SQLite file.
    async with stdio_session(sqlite_url, tmp_path / "a.log") as first:
        async with stdio_session(sqlite_url, tmp_path / "b.log") as second:
            await patch_concurrently(first, second)


async def test_two_http_clients_patch_one_memory(tmp_path, postgres_url):
    with serve(postgres_url, tmp_path / "serve.log") as base:
        async with http_session(base, KEYS["acme"]) as first:
            async with http_session(base, KEYS["acme"]) as second:
                await patch_concurrently(first, second)


# ---------------------------------------------------------------------------------------------
# 3. Two tenants over HTTP


async def test_tenants_over_http(tmp_path, postgres_url):
    with serve(postgres_url, tmp_path / "serve.log") as base:
        # No key, or a key nobody holds: 401.
        initialize = json.dumps(
            {
                "jsonrpc": "2.0",
                "id": 1,
                "method": "initialize",
                "params": {"protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "t", "version": "0"}},
            }
        ).encode()
        for headers in ({}, {"Authorization": "Bearer sk-nobody-0123456789abcdef"}):
            request = urllib.request.Request(
                f"{base}/mcp",
                data=initialize,
                method="POST",
                headers={"content-type": "application/json", "accept": "application/json, text/event-stream", **headers},
            )
            with pytest.raises(urllib.error.HTTPError) as refusal:
                urllib.request.urlopen(request, timeout=5)
            assert refusal.value.code == 401, (headers, refusal.value)
        # With a key: stateless, a JSON answer and no session.
        request = urllib.request.Request(
            f"{base}/mcp",
            data=initialize,
            method="POST",
            headers={
                "content-type": "application/json",
                "accept": "application/json, text/event-stream",
                "authorization": f"Bearer {KEYS['acme']}",
            },
        )
        with urllib.request.urlopen(request, timeout=5) as response:
            assert response.status == 200 and response.headers["content-type"].startswith("application/json")
            assert response.headers.get("mcp-session-id") is None, response.headers
            assert json.loads(response.read())["result"]["serverInfo"]["name"], "no serverInfo"

        thread, resource = new_id(), f"user:{new_id()}"
        async with http_session(base, KEYS["acme"]) as acme, http_session(base, KEYS["globex"]) as globex:
            written = await append(acme, thread, "The zanzibar launch codes", role="user")
            await call(acme, "update_memory", resource=resource, patch={"secret": "acme"})
            assert [t["thread_id"] for t in (await call(acme, "list_threads"))["threads"]] == [thread]

            assert all(t["thread_id"] != thread for t in await pages(globex, "list_threads", "threads"))
            kind, text = await refused(globex, "read_thread", {"thread_id": thread})
            assert kind == "tool" and "not found" in text.lower(), (kind, text)
            kind, missing = await refused(globex, "read_thread", {"thread_id": new_id()})
            assert kind == "tool" and "not found" in missing.lower(), (kind, missing)
            assert (await call(globex, "search_messages", query="zanzibar"))["hits"] == []
            uris = {str(r.uri) for r in (await globex.list_resources()).resources}
            assert f"persist://threads/{thread}" not in uris, uris
            with pytest.raises(MCPError):
                await globex.read_resource(f"persist://threads/{thread}")
            assert await call(globex, "read_memory", resource=resource) == {
                "resource": resource,
                "document": None,
                "version": 0,
            }

            # globex writing to that thread id never writes into acme's thread.
            try:
                await globex.call_tool("append_message", {"thread_id": thread, "text": "globex was here"})
            except MCPError:
                pass
            mine = await call(acme, "read_thread", thread_id=thread, view="full")
            assert [(m["id"], m["text"]) for m in mine["messages"]] == [(written["id"], "The zanzibar launch codes")]
            assert (await call(acme, "search_messages", query="zanzibar"))["hits"][0]["thread_id"] == thread
            assert (await call(acme, "read_memory", resource=resource))["document"] == {"secret": "acme"}


# ---------------------------------------------------------------------------------------------
# 4. Bad arguments


async def test_bad_arguments(tmp_path, sqlite_url):
    async with stdio_session(sqlite_url, tmp_path / "mcp.log") as session:
        thread = new_id()
        await append(session, thread, "hello there")
        cases = [
            ("read_thread", {}, ["thread_id"]),
            ("read_thread", {"thread_id": thread, "limit": 0}, ["limit"]),
            ("read_thread", {"thread_id": thread, "view": "sideways"}, ["view", "sideways", "compacted"]),
            ("list_threads", {"limit": 0}, ["limit"]),
            ("list_threads", {"limit": 101}, ["limit"]),
            ("list_threads", {"limit": "ten"}, ["limit", "integer", "invalid type"]),
            ("search_messages", {"query": "hello", "limit": 51}, ["limit"]),
            ("append_message", {"thread_id": thread}, ["text"]),
            ("append_message", {"thread_id": thread, "text": "x", "role": "wizard"}, ["role", "wizard"]),
            ("append_message", {"thread_id": 42, "text": "x"}, ["thread_id", "string", "invalid type"]),
            ("update_memory", {"resource": "user:1", "patch": {"a": 1}, "document": {"a": 1}}, ["patch", "document"]),
            ("update_memory", {"resource": "user:1"}, ["patch", "document"]),
            ("read_memory", {}, ["resource"]),
            ("recall", {"text": "anything"}, ["--embeddings-url"]),
            ("read_thread", {"thread_id": new_id()}, ["not found"]),
            ("list_threads", {"bogus": 1}, ["bogus", "unknown field"]),
            ("update_memory", {"resource": "user:1", "patch": [1, 2]}, ["patch", "object", "invalid type"]),
            ("no_such_tool", {}, ["no_such_tool", "not found", "unknown"]),
        ]
        kinds = {}
        for name, arguments, words in cases:
            kind, text = await refused(session, name, arguments)
            kinds[(name, json.dumps(arguments))] = kind
            assert any(word.lower() in text.lower() for word in words), f"{name}({arguments}) said {text!r}"
            # The connection still works.
            assert (await call(session, "read_thread", thread_id=thread))["messages"][0]["text"] == "hello there"
        # Bad input to a tool is a tool result with isError (a sentence the model can act on),
        # not a JSON-RPC error; only a tool that does not exist may be either.
        wrong = [key for key, kind in kinds.items() if kind != "tool" and key[0] != "no_such_tool"]
        assert not wrong, f"JSON-RPC errors, not tool errors: {wrong}"
        print("bad arguments answered as:", json.dumps({f"{k[0]} {k[1]}": v for k, v in kinds.items()}, indent=1))


# ---------------------------------------------------------------------------------------------
# 5. Killed while writing


async def test_kill_during_writes(tmp_path, sqlite_url):
    thread, pid_file = new_id(), tmp_path / "mcp.pid"
    acknowledged = {}  # text -> (id, seq)
    attempted = set()
    killed = anyio.Event()

    async with stdio_session(sqlite_url, tmp_path / "mcp.log", pid_file=pid_file) as session:
        pid = int(pid_file.read_text())

        async def writer(w):
            for i in range(10_000):
                text = f"writer {w} message {i}"
                attempted.add(text)
                try:
                    answer = await session.call_tool(
                        "append_message", {"thread_id": thread, "text": text, "idempotency_key": f"{w}-{i}"}
                    )
                except Exception:
                    assert killed.is_set(), f"a write failed before the kill: {text}"
                    return
                if killed.is_set():
                    # Answered after the kill was sent: a good answer counts as acknowledged.
                    if answer.is_error:
                        return
                assert not answer.is_error, text_of(answer)
                acknowledged[text] = (answer.structured_content["id"], answer.structured_content["seq"])

        async def killer():
            while len(acknowledged) < 30:
                await anyio.sleep(0.005)
            await anyio.sleep(random.uniform(0, 0.05))
            killed.set()
            os.kill(pid, signal.SIGKILL)

        with anyio.fail_after(30):
            async with anyio.create_task_group() as group:
                for w in range(3):
                    group.start_soon(writer, w)
                group.start_soon(killer)

    assert killed.is_set() and len(acknowledged) >= 30, len(acknowledged)
    async with stdio_session(sqlite_url, tmp_path / "mcp.log") as session:
        messages = await pages(session, "read_thread", "messages", thread_id=thread, view="full", limit=100)
        # After the restart it writes again.
        await append(session, thread, "after the restart")
    stored = {m["text"]: (m["id"], m["seq"]) for m in messages}
    assert len(stored) == len(messages), "a message was stored twice"
    lost = {text for text in acknowledged if text not in stored}
    assert not lost, f"acknowledged but lost: {sorted(lost)}"
    for text, written in acknowledged.items():
        assert stored[text] == written, (text, written, stored[text])
    assert set(stored) <= attempted, set(stored) - attempted
    # At most the writes in flight at the kill are stored unacknowledged.
    assert len(stored) - len(acknowledged) <= 3, (len(stored), len(acknowledged))
    assert [m["seq"] for m in messages] == sorted(m["seq"] for m in messages)
    # The file's integrity and every thread's counters, as the CLI checks them.
    check = subprocess.run([PERSIST_BIN, "--url", sqlite_url, "--across-tenants", "check"], capture_output=True, text=True)
    assert check.returncode == 0, check.stdout + check.stderr
    print(f"{len(acknowledged)} writes acknowledged before the kill, {len(stored)} stored")
