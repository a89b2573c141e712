"""The official `openai` Python SDK and the OpenAI Agents SDK's session against `persist serve`.

Run by `.ci/run` against two instances of `persist serve` on one PostgreSQL store
(PERSIST_SERVE_A, PERSIST_SERVE_B) and one on a SQLite file (PERSIST_SERVE_SQLITE), each a base
URL ending in /v1; PERSIST_SERVE_KEY is a tenant's key, PERSIST_SERVE_OTHER_KEY another's.
Nothing here is patched: the SDKs' own calls, paging, retries and exceptions. The README's
client for retries that write once is a subclass that names the SDK's idempotency header, and
the lost answers that make the SDK retry come from a transport given as `http_client`.
"""

import asyncio
import json
import os
import sys
import urllib.request
from concurrent.futures import ThreadPoolExecutor

import httpx2
import openai
import openapi_spec_validator
from agents import OpenAIConversationsSession
from openai import AsyncOpenAI, OpenAI

A, B, SQLITE = (os.environ[f"PERSIST_SERVE_{name}"] for name in ("A", "B", "SQLITE"))
KEY, OTHER_KEY = os.environ["PERSIST_SERVE_KEY"], os.environ["PERSIST_SERVE_OTHER_KEY"]

TOOL_TURN = [
    {"type": "reasoning", "id": "rs_persist_1", "summary": [{"type": "summary_text", "text": "Look it up."}]},
    {"type": "function_call", "call_id": "call_1", "name": "weather", "arguments": '{"city":"Paris"}'},
    {"type": "function_call_output", "call_id": "call_1", "output": "16C"},
    {
        "type": "message",
        "role": "assistant",
        "content": [{"type": "output_text", "text": "It is 16C in Paris.", "annotations": []}],
    },
]


class PersistAsyncOpenAI(AsyncOpenAI):
    """The README's client for persist: it sends the key the SDK makes for each POST (the same
    on each of the SDK's retries of it) as `Idempotency-Key`."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self._idempotency_header = "Idempotency-Key"


class LoseAnswers(httpx2.AsyncBaseTransport):
    """Sends every request, and loses the answer of the first `lose` POSTs to a path ending in
    `suffix` once the server wrote it (as a connection dropped on the way back would), so the
    SDK retries; its retries go to `retry_base` (another instance). `posts` holds the
    `Idempotency-Key` of each such POST and whether it was a retry."""

    def __init__(self, suffix, retry_base=None, lose=1):
        self.inner = httpx2.AsyncHTTPTransport()
        self.suffix, self.retry_base, self.lose = suffix, retry_base, lose
        self.posts = []

    async def handle_async_request(self, request):
        if request.method != "POST" or not request.url.path.endswith(self.suffix):
            return await self.inner.handle_async_request(request)
        retry = request.headers.get("x-stainless-retry-count", "0") != "0"
        self.posts.append((request.headers.get("idempotency-key"), retry))
        if retry and self.retry_base:
            to = httpx2.URL(self.retry_base)
            headers = request.headers.copy()
            headers["host"] = f"{to.host}:{to.port}"
            url = request.url.copy_with(scheme=to.scheme, host=to.host, port=to.port)
            request = httpx2.Request(request.method, url, headers=headers, content=request.content)
        response = await self.inner.handle_async_request(request)
        if len(self.posts) > self.lose:
            return response
        await response.aread()
        await response.aclose()
        if response.status_code != 200:
            raise AssertionError(f"the request whose answer is lost failed: {response.status_code}")
        raise httpx2.RemoteProtocolError("the answer was lost", request=request)

    async def aclose(self):
        await self.inner.aclose()


def lossy_client(client_class, base, transport):
    return client_class(base_url=base, api_key=KEY, http_client=httpx2.AsyncClient(transport=transport))


def check(condition, what):
    if not condition:
        raise AssertionError(what)


def expect(error_class, call, what):
    try:
        call()
    except error_class as error:
        return error
    raise AssertionError(f"{what}: expected {error_class.__name__}")


def sdk_endpoints(base, other_base):
    """Every endpoint through the SDK; writes on one instance read on the other."""
    a = OpenAI(base_url=base, api_key=KEY)
    b = OpenAI(base_url=other_base, api_key=KEY)
    conversation = a.conversations.create(
        items=[{"role": "user", "content": "Hello!"}], metadata={"topic": "demo"}
    )
    check(conversation.id.startswith("conv_"), conversation.id)
    check(conversation.object == "conversation" and conversation.metadata == {"topic": "demo"}, conversation)
    # The server's request id, as the SDK reads it.
    check(conversation._request_id and conversation._request_id.startswith("req_"), conversation._request_id)
    again = b.conversations.retrieve(conversation.id)
    check(again.model_dump() == conversation.model_dump(), (again, conversation))

    created = a.conversations.items.create(conversation.id, items=TOOL_TURN, include=["reasoning.encrypted_content"])
    check(len(created.data) == 4 and created.has_more is False, created)
    check(created.data[0].id == "rs_persist_1", "a client's id is kept")
    call = created.data[1]
    check(call.type == "function_call" and call.call_id == "call_1" and call.status == "completed", call)
    check(call.id.startswith("fc_"), call.id)

    # The SDK's auto-paging, both orders, small pages, on the other instance.
    ascending = [item.model_dump(exclude_unset=True) for item in b.conversations.items.list(conversation.id, limit=2, order="asc")]
    check(len(ascending) == 5, ascending)
    check(ascending[0]["content"] == [{"type": "input_text", "text": "Hello!"}], ascending[0])
    check(ascending[0]["type"] == "message" and ascending[0]["status"] == "completed", ascending[0])
    check(ascending[1:] == [item.model_dump(exclude_unset=True) for item in created.data], "read back equal")
    descending = [item.model_dump(exclude_unset=True) for item in b.conversations.items.list(conversation.id, limit=3)]
    check(descending == list(reversed(ascending)), "desc by default, every item once")
    first_page = b.conversations.items.list(conversation.id, limit=2, order="asc")
    check(len(first_page.data) == 2 and first_page.has_more and first_page.last_id == first_page.data[-1].id, first_page)

    fetched = b.conversations.items.retrieve(call.id, conversation_id=conversation.id)
    check(fetched.model_dump() == call.model_dump(), fetched)
    parent = a.conversations.items.delete(call.id, conversation_id=conversation.id)
    check(parent.id == conversation.id and parent.object == "conversation", parent)
    expect(openai.NotFoundError, lambda: b.conversations.items.retrieve(call.id, conversation_id=conversation.id), "a deleted item")
    expect(openai.NotFoundError, lambda: b.conversations.items.delete(call.id, conversation_id=conversation.id), "a second delete")

    updated = b.conversations.update(conversation.id, metadata={"topic": "weather", "lang": "en"})
    check(updated.metadata == {"topic": "weather", "lang": "en"}, updated)
    check(a.conversations.retrieve(conversation.id).metadata == updated.metadata, "the update, on the other instance")

    other = OpenAI(base_url=base, api_key=OTHER_KEY)
    expect(openai.NotFoundError, lambda: other.conversations.retrieve(conversation.id), "another tenant's conversation")
    expect(openai.NotFoundError, lambda: list(other.conversations.items.list(conversation.id)), "another tenant's items")
    stranger = OpenAI(base_url=base, api_key="sk-not-a-key-of-this-server", max_retries=0)
    expect(openai.AuthenticationError, lambda: stranger.conversations.retrieve(conversation.id), "an unknown key")

    error = expect(
        openai.BadRequestError,
        lambda: a.conversations.items.create(conversation.id, items=[{"type": "no_such_item"}]),
        "an unknown item type",
    )
    check(error.param == "items[0].type" and error.type == "invalid_request_error", error.body)
    error = expect(
        openai.BadRequestError,
        lambda: a.conversations.create(items=[{"role": "user", "content": str(n)} for n in range(21)]),
        "21 items",
    )
    check(error.param == "items", error.body)
    expect(openai.BadRequestError, lambda: a.conversations.items.list(conversation.id, limit=101), "limit 101")
    check(len(list(a.conversations.items.list(conversation.id))) == 4, "nothing stored by a refused request")

    deleted = a.conversations.delete(conversation.id)
    check(deleted.deleted is True and deleted.id == conversation.id, deleted)
    expect(openai.NotFoundError, lambda: b.conversations.retrieve(conversation.id), "a deleted conversation")
    expect(openai.NotFoundError, lambda: a.conversations.items.create(conversation.id, items=[{"role": "user", "content": "x"}]), "writing to it")

    # An Idempotency-Key (the SDK sends none of its own): a retry writes nothing twice.
    keyed = a.conversations.create()
    headers = {"Idempotency-Key": "turn-1"}
    first = a.conversations.items.create(keyed.id, items=[{"role": "user", "content": "once"}], extra_headers=headers)
    retried = b.conversations.items.create(keyed.id, items=[{"role": "user", "content": "once"}], extra_headers=headers)
    check([i.id for i in retried.data] == [i.id for i in first.data], "the retry answers the same item")
    check(len(list(a.conversations.items.list(keyed.id))) == 1, "written once")


def bad_input(base):
    """Malformed requests through the SDK: the right status and `param`, nothing stored, and the
    server answering the next request."""
    client = OpenAI(base_url=base, api_key=KEY, max_retries=0)
    conversation = client.conversations.create(items=[{"role": "user", "content": "kept"}])
    cid = conversation.id
    user = lambda text: {"role": "user", "content": text}  # noqa: E731
    huge = "x" * (4 * 1024 * 1024 + 1)
    item_cases = [
        ([{"type": "bogus"}], "items[0].type"),
        ([{"type": 7}], "items[0].type"),
        ([{"type": "item_reference", "id": "msg_1"}], "items[0].type"),
        ([{"role": "robot", "content": "x"}], "items[0].role"),
        ([{"role": 1, "content": "x"}], "items[0].role"),
        ([{"content": "x"}], "items[0].role"),
        ([{"role": "user"}], "items[0].content"),
        ([{"role": "user", "content": 123}], "items[0].content"),
        ([{"role": "user", "content": {"text": "x"}}], "items[0].content"),
        ([{"role": "user", "content": [1]}], "items[0].content[0]"),
        ([{"role": "user", "content": [{"type": "input_text"}]}], "items[0].content[0].text"),
        ([{"role": "user", "content": [{"type": "input_text", "text": 5}]}], "items[0].content[0].text"),
        ([{"role": "user", "content": [{"type": "video"}]}], "items[0].content[0]"),
        ([{"role": "assistant", "content": [{"type": "refusal"}]}], "items[0].content[0].refusal"),
        ([user("ok"), {"type": "function_call", "name": "f", "arguments": "{}"}], "items[1].call_id"),
        ([{"type": "function_call", "call_id": "c", "arguments": "{}"}], "items[0].name"),
        ([{"type": "function_call", "call_id": "c", "name": "f"}], "items[0].arguments"),
        ([{"type": "function_call", "call_id": "c", "name": "f", "arguments": {}}], "items[0].arguments"),
        ([{"type": "function_call", "call_id": 1, "name": "f", "arguments": "{}"}], "items[0].call_id"),
        ([{"type": "function_call_output", "call_id": "c"}], "items[0].output"),
        ([{"type": "function_call_output", "output": "x"}], "items[0].call_id"),
        ([{"type": "function_call_output", "call_id": "c", "output": 42}], "items[0].output"),
        ([{"type": "custom_tool_call", "call_id": "c", "name": "f"}], "items[0].input"),
        ([{"type": "reasoning", "id": "rs_1"}], "items[0].summary"),
        ([{"type": "reasoning", "id": "rs_1", "summary": "short"}], "items[0].summary"),
        ([{"role": "user", "content": "x", "id": 1}], "items[0].id"),
        ([{"role": "user", "content": "x", "id": ""}], "items[0].id"),
        ([{"role": "user", "content": "x", "id": "a\nb"}], "items[0].id"),
        ([{"role": "user", "content": "x", "id": "i" * 256}], "items[0].id"),
        ([{"role": "user", "content": "x", "status": "finished"}], "items[0].status"),
        ([{"role": "user", "content": "x", "status": 1}], "items[0].status"),
        ([user("a\u0000b")], "items[0]"),
        ([{"role": "user", "content": "x", "note\u0000": "y"}], "items[0]"),
        ([user(huge)], "items[0]"),
        ([user(str(n)) for n in range(257)], "items"),
        ([], "items"),
        ("not a list", "items"),
        ([1, 2], "items[0]"),
        ([None], "items[0]"),
    ]
    for items, param in item_cases:
        try:
            client.conversations.items.create(cid, items=items)
        except openai.BadRequestError as error:
            check(error.param == param and error.type == "invalid_request_error", (items if len(str(items)) < 200 else param, error.body))
        else:
            raise AssertionError(f"accepted: {param}")
    # An id given twice in one request is a conflict, as an id the conversation holds already is.
    try:
        client.conversations.items.create(cid, items=[dict(user("x"), id="same"), dict(user("y"), id="same")])
    except openai.ConflictError as error:
        check(error.status_code == 409 and "given twice" in str(error.message), error.body)
    else:
        raise AssertionError("accepted: an id given twice")
    other_cases = [
        (lambda: client.conversations.create(items=[user(str(n)) for n in range(21)]), "items"),
        (lambda: client.conversations.create(metadata={"a": 1}), "metadata"),
        (lambda: client.conversations.create(metadata={str(n): "v" for n in range(17)}), "metadata"),
        (lambda: client.conversations.create(metadata={"k": "v" * 513}), "metadata"),
        (lambda: client.conversations.create(metadata={"k" * 65: "v"}), "metadata"),
        (lambda: client.conversations.create(metadata="topic"), "metadata"),
        (lambda: client.conversations.create(extra_body={"model": "gpt-5"}), "model"),
        (lambda: client.conversations.update(cid, metadata=["a"]), "metadata"),
        (lambda: client.conversations.items.list(cid, limit=0).data, "limit"),
        (lambda: client.conversations.items.list(cid, limit=101).data, "limit"),
        (lambda: client.conversations.items.list(cid, order="sideways").data, "order"),
        (lambda: client.conversations.items.list(cid, after="msg_not_here").data, "after"),
        (lambda: client.conversations.items.list(cid, include=["everything"]).data, "include"),
        (lambda: client.post(f"/conversations/{cid}/items", body=["not", "an", "object"], cast_to=object), "body"),
    ]
    for call, param in other_cases:
        try:
            call()
        except openai.BadRequestError as error:
            check(error.param == param, (param, error.body))
        else:
            raise AssertionError(f"accepted: {param}")
    try:
        client.conversations.items.create(cid, items=[user("x" * (17 * 1024 * 1024))])
    except openai.APIStatusError as error:
        check(error.status_code == 413, error.status_code)
    else:
        raise AssertionError("a body over the limit was accepted")
    for missing in (lambda: client.conversations.retrieve("conv_not_here"), lambda: client.conversations.items.retrieve("msg_none", conversation_id=cid)):
        try:
            missing()
        except openai.NotFoundError:
            pass
        else:
            raise AssertionError("found what is not there")
    stored = [item.id for item in client.conversations.items.list(cid)]
    check(len(stored) == 1, f"a refused request stored something: {stored}")
    cases = len(item_cases) + len(other_cases) + 3
    check(cases >= 50, cases)
    print(f"  {cases} malformed or missing: refused, nothing stored")


async def agents_session(base, other_base):
    """The unmodified OpenAIConversationsSession: add, get (all and latest N), pop, clear."""
    client = AsyncOpenAI(base_url=base, api_key=KEY)
    session = OpenAIConversationsSession(openai_client=client)
    check(await session.get_items() == [], "a fresh session")
    turn = [{"role": "user", "content": f"question {n}"} for n in range(23)] + TOOL_TURN
    await session.add_items(turn)
    conversation_id = session.session_id
    other = OpenAIConversationsSession(
        conversation_id=conversation_id, openai_client=AsyncOpenAI(base_url=other_base, api_key=KEY)
    )
    items = await other.get_items()
    check(len(items) == 27, len(items))
    check([item.get("call_id") for item in items[24:26]] == ["call_1", "call_1"], items[24:26])
    check(items[0]["content"] == [{"type": "input_text", "text": "question 0"}], items[0])
    latest = await other.get_items(limit=3)
    check(latest == items[-3:], (latest, items[-3:]))
    popped = await session.pop_item()
    check(popped == items[-1], popped)
    check(len(await other.get_items()) == 26, "popped once")
    await session.clear_session()
    try:
        await client.conversations.retrieve(conversation_id)
    except openai.NotFoundError:
        pass
    else:
        raise AssertionError("clear_session deletes the conversation")


async def concurrent_pops(base, other_base):
    """40 concurrent pop_item calls, half on each instance: none hands one item to two callers
    (the losers' deletes are 404s); the extension's atomic pop gives 40 callers 40 items."""
    client = AsyncOpenAI(base_url=base, api_key=KEY)
    conversation = await client.conversations.create()
    for start in (0, 20):
        await client.conversations.items.create(
            conversation.id, items=[{"role": "user", "content": f"item {n}"} for n in range(start, start + 20)]
        )
    clients = [client, AsyncOpenAI(base_url=other_base, api_key=KEY)]
    sessions = [
        OpenAIConversationsSession(conversation_id=conversation.id, openai_client=clients[n % 2]) for n in range(40)
    ]
    outcomes = await asyncio.gather(*(session.pop_item() for session in sessions), return_exceptions=True)
    handed = [outcome["id"] for outcome in outcomes if isinstance(outcome, dict)]
    losers = [outcome for outcome in outcomes if isinstance(outcome, BaseException)]
    check(len(handed) == len(set(handed)), f"an item handed to two callers: {handed}")
    check(all(isinstance(loser, openai.NotFoundError) for loser in losers), [repr(l) for l in losers])
    remaining = [item async for item in client.conversations.items.list(conversation.id)]
    check(len(remaining) + len(handed) == 40, (len(remaining), len(handed)))
    print(f"  pop_item x40: {len(handed)} popped, {len(losers)} clean 404s")

    atomic = await client.conversations.create()
    await client.conversations.items.create(atomic.id, items=[{"role": "user", "content": f"a{n}"} for n in range(20)])
    await client.conversations.items.create(atomic.id, items=[{"role": "user", "content": f"b{n}"} for n in range(20)])
    def pop(n):
        url = f"{(base, other_base)[n % 2]}/persist/conversations/{atomic.id}/items/pop"
        request = urllib.request.Request(url, method="POST", headers={"Authorization": f"Bearer {KEY}"})
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, json.load(response)

    with ThreadPoolExecutor(max_workers=40) as pool:
        answers = list(pool.map(pop, range(40)))
    check(all(status == 200 for status, _ in answers), answers)
    ids = {item["id"] for _, item in answers}
    check(len(ids) == 40, f"the atomic pop gave {len(ids)} distinct items to 40 callers")
    print("  atomic pop x40: 40 distinct items")


def openapi_document(base):
    """The server's OpenAPI document, fetched without a key: a valid OpenAPI 3.1 document (what
    a client generator reads) naming the API's routes and persist's."""
    with urllib.request.urlopen(f"{base}/persist/openapi.json", timeout=30) as response:
        check(response.status == 200, f"GET /v1/persist/openapi.json: {response.status}")
        check(response.headers["content-type"].startswith("application/json"), response.headers["content-type"])
        document = json.load(response)
    check(document["openapi"] == "3.1.0", document["openapi"])
    openapi_spec_validator.validate(document, cls=openapi_spec_validator.OpenAPIV31SpecValidator)
    paths = document["paths"]
    for path in ("/v1/conversations", "/v1/conversations/{id}/items/{item_id}", "/v1/persist/search"):
        check(path in paths, f"the document has no {path}")
    operations = sum(len(item) for item in paths.values())
    print(f"  OpenAPI {document['openapi']}: {len(paths)} paths, {operations} operations, valid")


def newest_conversations(base, limit):
    request = urllib.request.Request(
        f"{base}/persist/conversations?limit={limit}", headers={"Authorization": f"Bearer {KEY}"}
    )
    with urllib.request.urlopen(request, timeout=30) as response:
        return [conversation["id"] for conversation in json.load(response)["data"]]


async def lost_answers(base, other_base):
    """A session's write whose answer is lost after persist wrote it, retried by the SDK on the
    other instance: a plain client sends no Idempotency-Key, and the retry writes the items a
    second time; the README's client sends the SDK's own key, the same on the retry, and the
    items are written once. So is the conversation a session creates."""
    turn = [{"role": "user", "content": "Where is my order?"}]

    lossy = LoseAnswers("/items", other_base)
    session = OpenAIConversationsSession(openai_client=lossy_client(AsyncOpenAI, base, lossy))
    await session.add_items(turn)
    check(lossy.posts == [(None, False), (None, True)], lossy.posts)
    check(len(await session.get_items()) == 2, "without a key, the SDK's retry writes the turn again")

    lossy = LoseAnswers("/items", other_base)
    session = OpenAIConversationsSession(openai_client=lossy_client(PersistAsyncOpenAI, base, lossy))
    await session.add_items(turn)
    (first, _), (again, retried) = lossy.posts
    check(retried and first == again and first.startswith("stainless-python-retry-"), lossy.posts)
    check(len(await session.get_items()) == 1, "with the SDK's key, the retry writes nothing")
    await session.add_items([{"role": "assistant", "content": "It ships tomorrow."}])
    check(lossy.posts[2][0] not in (None, first), f"each call has a key of its own: {lossy.posts}")
    check(len(await session.get_items()) == 2, "the next call is written")

    before = newest_conversations(base, 1)
    lossy = LoseAnswers("/conversations", other_base)
    session = OpenAIConversationsSession(openai_client=lossy_client(PersistAsyncOpenAI, base, lossy))
    await session.add_items(turn)
    check(len(lossy.posts) == 2 and lossy.posts[0][0] == lossy.posts[1][0], lossy.posts)
    check(newest_conversations(base, 2) == [session.session_id, *before], "one conversation created")

    # Over 20 items the Python session writes in several requests and turns the SDK's retries
    # off: a lost answer is the app's error, after the requests before it were written.
    lossy = LoseAnswers("/items", other_base)
    session = OpenAIConversationsSession(openai_client=lossy_client(PersistAsyncOpenAI, base, lossy))
    try:
        await session.add_items([{"role": "user", "content": f"q{n}"} for n in range(25)])
    except openai.APIConnectionError:
        pass
    else:
        raise AssertionError("a lost answer of a write over 20 items is raised")
    check(len(lossy.posts) == 1, lossy.posts)
    check(len(await session.get_items()) == 20, "the first request's items are written, the rest never sent")
    print("  a lost answer retried by the SDK: twice without a key, once with the SDK's own key")


async def sessions():
    print("lost answers, two instances on PostgreSQL")
    await lost_answers(A, B)
    print("lost answers, SQLite")
    await lost_answers(SQLITE, SQLITE)
    print("the Agents SDK session, two instances on PostgreSQL")
    await agents_session(A, B)
    print("the Agents SDK session, SQLite")
    await agents_session(SQLITE, SQLITE)
    print("concurrent pops, two instances on PostgreSQL")
    await concurrent_pops(A, B)
    print("concurrent pops, SQLite")
    await concurrent_pops(SQLITE, SQLITE)


def main():
    print("openai", openai.__version__)
    print("the OpenAPI document")
    openapi_document(A)
    print("the SDK, two instances on PostgreSQL")
    sdk_endpoints(A, B)
    print("the SDK, SQLite")
    sdk_endpoints(SQLITE, SQLITE)
    print("bad input through the SDK, PostgreSQL and SQLite")
    bad_input(A)
    bad_input(SQLITE)
    asyncio.run(sessions())
    print("ok")


if __name__ == "__main__":
    sys.exit(main())
