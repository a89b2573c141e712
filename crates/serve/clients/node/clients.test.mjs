// The official `openai` Node SDK and `@openai/agents`' OpenAIConversationsSession against
// `persist serve`, unmodified. Run by .ci/run against two instances on one PostgreSQL store
// (PERSIST_SERVE_A, PERSIST_SERVE_B) and one on SQLite (PERSIST_SERVE_SQLITE), base URLs ending
// in /v1; PERSIST_SERVE_KEY is a tenant's key, PERSIST_SERVE_OTHER_KEY another tenant's.
// docs/server.md's client for retries that write once is a subclass that names the SDK's
// idempotency header; the lost answers that make the SDK retry come from a `fetch` option.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import OpenAI from 'openai';
import { OpenAIConversationsSession } from '@openai/agents';

const { PERSIST_SERVE_A: A, PERSIST_SERVE_B: B, PERSIST_SERVE_SQLITE: SQLITE } = process.env;
const KEY = process.env.PERSIST_SERVE_KEY;
const OTHER_KEY = process.env.PERSIST_SERVE_OTHER_KEY;

const TOOL_TURN = [
  { type: 'reasoning', id: 'rs_persist_js', summary: [{ type: 'summary_text', text: 'Look it up.' }] },
  { type: 'function_call', call_id: 'call_js', name: 'weather', arguments: '{"city":"Lisbon"}' },
  { type: 'function_call_output', call_id: 'call_js', output: '21C' },
  { type: 'message', role: 'assistant', content: [{ type: 'output_text', text: 'It is 21C.', annotations: [] }] },
];

// docs/server.md's client for persist: it sends the key the SDK makes for each POST (the same on
// each of the SDK's retries of it) as Idempotency-Key.
class PersistOpenAI extends OpenAI {
  idempotencyHeader = 'Idempotency-Key';
}

// A fetch that sends every request, and loses the answer of the first `lose` POSTs to a path
// ending in `suffix` once the server wrote it (as a connection dropped on the way back would),
// so the SDK retries; its retries go to `retryBase` (another instance). `posts` holds the
// Idempotency-Key of each such POST and whether it was a retry.
function losingFetch(suffix, retryBase, lose = 1) {
  const posts = [];
  const lossy = async (url, init = {}) => {
    const target = new URL(String(url));
    if ((init.method ?? 'GET').toUpperCase() !== 'POST' || !target.pathname.endsWith(suffix)) {
      return fetch(url, init);
    }
    const headers = new Headers(init.headers);
    const retry = (headers.get('x-stainless-retry-count') ?? '0') !== '0';
    posts.push([headers.get('idempotency-key'), retry]);
    if (retry && retryBase) target.host = new URL(retryBase).host;
    const response = await fetch(target, init);
    if (posts.length > lose) return response;
    await response.arrayBuffer();
    if (response.status !== 200) throw new Error(`the request whose answer is lost failed: ${response.status}`);
    throw new TypeError('fetch failed: the answer was lost');
  };
  return { fetch: lossy, posts };
}

// The caller's newest conversations (the extension's listing).
async function newest(base, limit) {
  const response = await fetch(`${base}/persist/conversations?limit=${limit}`, {
    headers: { authorization: `Bearer ${KEY}` },
  });
  return (await response.json()).data.map((conversation) => conversation.id);
}

async function collect(iterable) {
  const out = [];
  for await (const item of iterable) out.push(item);
  return out;
}

for (const [name, base, otherBase] of [['two instances on PostgreSQL', A, B], ['SQLite', SQLITE, SQLITE]]) {
  test(`every endpoint through the SDK, ${name}`, async () => {
    const a = new OpenAI({ baseURL: base, apiKey: KEY });
    const b = new OpenAI({ baseURL: otherBase, apiKey: KEY });
    const conversation = await a.conversations.create({
      items: [{ role: 'user', content: 'Olá!' }],
      metadata: { topic: 'demo' },
    });
    assert.match(conversation.id, /^conv_/);
    // The server's request id, as the SDK reads it.
    assert.match(conversation._request_id, /^req_/);
    assert.deepEqual(await b.conversations.retrieve(conversation.id), conversation);

    const created = await a.conversations.items.create(conversation.id, { items: TOOL_TURN });
    assert.equal(created.data.length, 4);
    assert.equal(created.has_more, false);
    assert.equal(created.data[0].id, 'rs_persist_js');
    const call = created.data[1];
    assert.equal(call.call_id, 'call_js');
    assert.match(call.id, /^fc_/);

    // The SDK's auto-paging, both orders, on the other instance.
    const asc = await collect(b.conversations.items.list(conversation.id, { limit: 2, order: 'asc' }));
    assert.equal(asc.length, 5);
    assert.deepEqual(asc[0].content, [{ type: 'input_text', text: 'Olá!' }]);
    assert.deepEqual(asc.slice(1), created.data);
    const desc = await collect(b.conversations.items.list(conversation.id, { limit: 3 }));
    assert.deepEqual(desc, [...asc].reverse());

    assert.deepEqual(await b.conversations.items.retrieve(call.id, { conversation_id: conversation.id }), call);
    const parent = await a.conversations.items.delete(call.id, { conversation_id: conversation.id });
    assert.equal(parent.id, conversation.id);
    await assert.rejects(b.conversations.items.retrieve(call.id, { conversation_id: conversation.id }), OpenAI.NotFoundError);

    const updated = await b.conversations.update(conversation.id, { metadata: { topic: 'weather' } });
    assert.deepEqual(updated.metadata, { topic: 'weather' });

    const other = new OpenAI({ baseURL: base, apiKey: OTHER_KEY });
    await assert.rejects(other.conversations.retrieve(conversation.id), OpenAI.NotFoundError);
    const stranger = new OpenAI({ baseURL: base, apiKey: 'sk-not-a-key-of-this-server', maxRetries: 0 });
    await assert.rejects(stranger.conversations.retrieve(conversation.id), OpenAI.AuthenticationError);
    await assert.rejects(
      a.conversations.items.create(conversation.id, { items: [{ type: 'no_such_item' }] }),
      (error) => error instanceof OpenAI.BadRequestError && error.param === 'items[0].type',
    );

    const deleted = await a.conversations.delete(conversation.id);
    assert.equal(deleted.deleted, true);
    await assert.rejects(b.conversations.retrieve(conversation.id), OpenAI.NotFoundError);
  });

  test(`the Agents SDK session, ${name}`, async () => {
    const session = new OpenAIConversationsSession({ client: new OpenAI({ baseURL: base, apiKey: KEY }) });
    assert.deepEqual(await session.getItems(), []);
    // The JS session sends a run's items in one request, more than 20 here.
    const questions = Array.from({ length: 22 }, (_, n) => ({ type: 'message', role: 'user', content: `q${n}` }));
    await session.addItems([
      ...questions,
      { type: 'function_call', callId: 'call_s', name: 'f', arguments: '{}', status: 'completed' },
      { type: 'function_call_result', callId: 'call_s', name: 'f', status: 'completed', output: { type: 'text', text: '42' } },
      { type: 'message', role: 'assistant', status: 'completed', content: [{ type: 'output_text', text: 'done' }] },
    ]);
    const conversationId = await session.getSessionId();
    const other = new OpenAIConversationsSession({
      conversationId,
      client: new OpenAI({ baseURL: otherBase, apiKey: KEY }),
    });
    const items = await other.getItems();
    assert.equal(items.length, 25);
    assert.equal(items[22].callId, 'call_s');
    assert.equal(items[24].content[0].text, 'done');
    const latest = await other.getItems(2);
    assert.deepEqual(latest, items.slice(-2));
    const popped = await session.popItem();
    assert.deepEqual(popped, items[24]);
    assert.equal((await other.getItems()).length, 24);
    await session.clearSession();
    await assert.rejects(new OpenAI({ baseURL: base, apiKey: KEY }).conversations.retrieve(conversationId), OpenAI.NotFoundError);
  });

  test(`a lost answer retried by the SDK, ${name}`, async () => {
    const turn = [{ type: 'message', role: 'user', content: 'Where is my order?' }];
    const lossySession = (clientClass, lossy) =>
      new OpenAIConversationsSession({ client: new clientClass({ baseURL: base, apiKey: KEY, fetch: lossy.fetch }) });

    // A plain client sends no Idempotency-Key: the retry writes the turn a second time.
    let lossy = losingFetch('/items', otherBase);
    let session = lossySession(OpenAI, lossy);
    await session.addItems(turn);
    assert.deepEqual(lossy.posts, [[null, false], [null, true]]);
    assert.equal((await session.getItems()).length, 2);

    // docs/server.md's client sends the SDK's own key, the same on its retry: written once.
    lossy = losingFetch('/items', otherBase);
    session = lossySession(PersistOpenAI, lossy);
    await session.addItems(turn);
    const [[first], [again, retried]] = lossy.posts;
    assert.ok(retried && first === again && first.startsWith('stainless-node-retry-'), JSON.stringify(lossy.posts));
    assert.equal((await session.getItems()).length, 1);
    await session.addItems([{ type: 'message', role: 'user', content: 'And the invoice?' }]);
    assert.ok(![null, first].includes(lossy.posts[2][0]), 'each call has a key of its own');
    assert.equal((await session.getItems()).length, 2);
    // The JS session sends a whole run's items in one request: over 20 too, retried as one.
    const many = Array.from({ length: 25 }, (_, n) => ({ type: 'message', role: 'user', content: `q${n}` }));
    const lossyMany = losingFetch('/items', otherBase);
    const sessionMany = new OpenAIConversationsSession({
      conversationId: await session.getSessionId(),
      client: new PersistOpenAI({ baseURL: base, apiKey: KEY, fetch: lossyMany.fetch }),
    });
    await sessionMany.addItems(many);
    assert.equal(lossyMany.posts.length, 2);
    assert.equal(lossyMany.posts[0][0], lossyMany.posts[1][0]);
    assert.equal((await session.getItems()).length, 27, 'the 25 items once');

    // The conversation a session creates: one, though its create was retried.
    const before = await newest(base, 1);
    lossy = losingFetch('/conversations', otherBase);
    session = lossySession(PersistOpenAI, lossy);
    await session.addItems(turn);
    assert.equal(lossy.posts.length, 2);
    assert.equal(lossy.posts[0][0], lossy.posts[1][0]);
    assert.deepEqual(await newest(base, 2), [await session.getSessionId(), ...before]);
  });
}
