// A Node AI SDK chat app (app.mjs) whose replies live in persist serve, as the AI SDK's own
// client sees it: a reply cut off on one instance and resumed on another, whole and once; a
// stop from a third client that stops the model call on the writing process; a writing
// process killed with SIGKILL (its reply settled interrupted by persist, followers told); and
// hostile writers over HTTP refused with typed errors, nothing half-written.
//
// Env: PERSIST_SERVE_A, PERSIST_SERVE_B (two `persist serve` on one store), PERSIST_SERVE_KEY
// (a key of tenant PERSIST_SERVE_TENANT, `acme` by default), PERSIST_SERVE_OTHER_KEY (another
// tenant's key; its checks are skipped without it), PERSIST_SERVE_MAX_BODY_BYTES (the servers'
// --max-body-bytes, 16 MiB when unset), and PERSIST_BIN + PERSIST_STORE_URL (`persist show`
// checks; skipped without them). run.sh sets them all. The test starts app.mjs processes itself.

import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import http from 'node:http';
import { randomUUID } from 'node:crypto';
import { fileURLToPath } from 'node:url';
import { dirname, join } from 'node:path';
import { promisify } from 'node:util';
import { AbstractChat, DefaultChatTransport, readUIMessageStream } from 'ai';
import {
  App,
  Session,
  SplitTransport,
  assistantOf,
  chatClient,
  chatId,
  expectedReply,
  textOf,
  tokensIn,
  waitForTokens,
  within,
} from './chat-client.mjs';
import { LiveReply, PersistApiError, PersistClient, ReplyStoppedError, sseEvents } from './persist-writer.mjs';

const HERE = dirname(fileURLToPath(import.meta.url));

const PERSIST_A = baseUrl('PERSIST_SERVE_A');
const PERSIST_B = baseUrl('PERSIST_SERVE_B');
const KEY = required('PERSIST_SERVE_KEY');
const OTHER_KEY = process.env.PERSIST_SERVE_OTHER_KEY;
const TENANT = process.env.PERSIST_SERVE_TENANT ?? 'acme';
const MAX_BODY = Number(process.env.PERSIST_SERVE_MAX_BODY_BYTES ?? 16 * 1024 * 1024);

function required(name) {
  const value = process.env[name];
  if (!value) throw new Error(`set ${name} (see README.md; run.sh sets it)`);
  return value;
}

function baseUrl(name) {
  return required(name).replace(/\/+$/, '');
}

const { Chat, transportTo } = chatClient({ AbstractChat, DefaultChatTransport });

const persistA = new PersistClient({ baseUrl: PERSIST_A, apiKey: KEY });
const persistB = new PersistClient({ baseUrl: PERSIST_B, apiKey: KEY });

// ---------------------------------------------------------------------------------------------
// The app processes


const apps = [];
let appA;
let appB;
// However this process ends, no app outlives it.
process.on('exit', () => {
  for (const app of apps) if (app.child.exitCode === null && app.child.signalCode === null) app.child.kill('SIGKILL');
});

async function startApp(name, persistUrl, env) {
  const app = new App(name, join(HERE, 'app.mjs'), { PERSIST_URL: persistUrl, PERSIST_KEY: KEY, ...env });
  apps.push(app);
  return app.start();
}

before(async () => {
  [appA, appB] = await Promise.all([startApp('app A', PERSIST_A), startApp('app B', PERSIST_B)]);
});

after(async () => {
  await Promise.all(apps.map((app) => app.stop()));
});

// ---------------------------------------------------------------------------------------------
// Helpers



/** The persist conversation and reply app `app` started for `id` (from its log). */
async function startedReply(app, id) {
  const line = await app.logged(`the reply of ${id}`, (l) => l.event === 'reply_started' && l.chat_id === id);
  return { conversation: line.conversation_id, reply: line.reply_id };
}

/**
 * A stored reply, as the Conversations API shows it: the items of id `item` and `item.N` (a
 * reply with tool calls is several items: function_call, function_call_output, message), their
 * one `status` (checked to agree, and against `GET …/items/{item}`), and their text.
 */
async function itemOf(client, conversation, item) {
  const base = `/v1/conversations/${encodeURIComponent(conversation)}/items`;
  const page = await client.request('GET', `${base}?order=asc&limit=100`);
  const items = page.data.filter((it) => it.id === item || it.id.startsWith(`${item}.`));
  assert.ok(items.length > 0, `no items of ${item} in ${JSON.stringify(page.data)}`);
  const statuses = [...new Set(items.map((it) => it.status))];
  assert.equal(statuses.length, 1, `the items of one reply have one status: ${JSON.stringify(items)}`);
  const first = await client.request('GET', `${base}/${encodeURIComponent(item)}`);
  assert.equal(first.status, statuses[0], 'GET of the reply id answers its status');
  const text = items
    .filter((it) => it.type === 'message')
    .flatMap((it) => it.content ?? [])
    .filter((part) => part.type === 'output_text')
    .map((part) => part.text)
    .join('');
  return { items, status: statuses[0], text };
}

/** POSTs `body` with `Expect: 100-continue`: `{status, body, sent}` (`sent`: whether the body went). */
function postExpectingContinue(url, body) {
  return new Promise((resolve, reject) => {
    const request = http.request(url, {
      method: 'POST',
      headers: {
        authorization: `Bearer ${KEY}`,
        'content-type': 'application/json',
        'content-length': body.length,
        expect: '100-continue',
      },
    });
    let sent = false;
    request.on('continue', () => {
      sent = true;
      request.end(body);
    });
    request.on('response', (response) => {
      const chunks = [];
      response.on('data', (chunk) => chunks.push(chunk));
      response.on('end', () => resolve({ status: response.statusCode, body: Buffer.concat(chunks).toString(), sent }));
    });
    request.on('error', reject);
    request.flushHeaders();
  });
}

/** Reads the conversation's change feed from its start until `predicate(event)` holds; answers that event. */
async function feedUntil(base, conversation, what, predicate, timeoutMs = 10_000) {
  const response = await fetch(`${base}/v1/persist/conversations/${encodeURIComponent(conversation)}/events?after=0`, {
    headers: { authorization: `Bearer ${KEY}` },
    signal: AbortSignal.timeout(timeoutMs),
  });
  assert.equal(response.status, 200);
  const seen = [];
  try {
    for await (const event of sseEvents(response.body)) {
      const data = JSON.parse(event.data);
      seen.push({ event: event.event, ...data });
      if (predicate({ event: event.event, ...data })) {
        await response.body.cancel().catch(() => {});
        return { event: event.event, ...data };
      }
    }
  } catch (error) {
    throw new Error(`the change feed never showed ${what} (${error.message}): ${JSON.stringify(seen)}`);
  }
  throw new Error(`the change feed ended without ${what}: ${JSON.stringify(seen)}`);
}

/** `persist show` of a conversation, when PERSIST_BIN and PERSIST_STORE_URL say how; else null. */
async function persistShow(conversation) {
  const bin = process.env.PERSIST_BIN;
  const url = process.env.PERSIST_STORE_URL;
  if (!bin || !url) return null;
  const { stdout } = await promisify(execFile)(bin, ['--url', url, '--tenant', TENANT, 'show', conversation]);
  return stdout;
}

async function postStop(app, id, session) {
  const response = await session.fetch(`${app.url}/api/chat/${encodeURIComponent(id)}/stop`, { method: 'POST' });
  assert.equal(response.status, 200, `stop answered ${response.status}: ${await response.clone().text()}`);
  return response.json();
}

/** A conversation of the caller's id, made directly in persist (for the HTTP writer checks). */
async function conversationFor(client, id) {
  const conversation = await client.ensureConversation(id);
  assert.equal(conversation.id, id);
  assert.deepEqual(await client.ensureConversation(id), conversation, 'PUT again: the same conversation');
  return id;
}

// ---------------------------------------------------------------------------------------------
// The tests

test('a reply cut off on app A / persist A resumes through app B / persist B: the whole reply, once', { timeout: 30_000 }, async (t) => {
  const session = new Session();
  try {
    const id = chatId('resume');
    // Long enough (3 s) for the resume to arrive while A still generates: once the reply has
    // ended, the resume route answers 204 (the SDK keeps what it had).
    const n = 100;
    const transport = new SplitTransport({
      send: transportTo(appA, session, { tokens: n, delay_ms: 30, reasoning: true, tool: true }),
      reconnect: transportTo(appB, session),
    });
    const chat = new Chat({ id, transport });

    const sending = chat.sendMessage({ text: 'Count for me, slowly.' });
    await waitForTokens(chat, n, 5, 'chat');
    session.drop();
    await within('the cut-off request to settle', sending);

    assert.equal(chat.status, 'error');
    assert.equal(chat.finishes.at(-1)?.isDisconnect, true, 'onFinish reports a disconnect');
    chat.errors.length = 0;
    const partial = assistantOf(chat);
    const partialTokens = tokensIn(textOf(partial), n);
    assert.ok(partialTokens >= 5 && partialTokens < n, `cut mid-reply (${partialTokens} of ${n} tokens)`);
    t.diagnostic(`cut off after ${partialTokens} of ${n} tokens`);

    const { conversation, reply } = await startedReply(appA, id);
    assert.equal(conversation, id, 'the persist conversation is the chat id');
    assert.equal(partial.id, reply, 'the assistant message is named by the persist reply');

    // Resume through the other app and the other persist instance, while A still generates.
    await within('the resumed stream to end', chat.resumeStream());
    assert.equal(chat.status, 'ready', `resumed chat: ${chat.error?.message}`);
    assert.deepEqual(chat.errors, []);
    assert.deepEqual(chat.messages.map((m) => m.role), ['user', 'assistant'], 'the replay replaced the partial reply');
    const message = assistantOf(chat);
    assert.equal(message.id, reply);
    assert.equal(textOf(message), expectedReply(n), 'the whole reply, each token once');
    // Two steps: the tool's result ends the first, as the SDK's own replies are told.
    const steps = JSON.parse(JSON.stringify(message.parts));
    assert.deepEqual(steps.map((part) => part.type), ['step-start', 'reasoning', 'tool-count', 'step-start', 'text']);
    const parts = steps.filter((part) => part.type !== 'step-start');
    assert.equal(parts[0].text, 'The user wants tokens; count them.');
    assert.deepEqual(
      { toolCallId: parts[1].toolCallId, state: parts[1].state, input: parts[1].input, output: parts[1].output },
      { toolCallId: 'call-count', state: 'output-available', input: { upTo: n }, output: { count: n } },
    );
    assert.equal(parts[2].state, 'done');

    // The resumed stream was a replay from persist B: start .. finish, its deltas the reply once.
    const resumed = transport.resumed[0];
    assert.deepEqual({ type: resumed[0].type, messageId: resumed[0].messageId }, { type: 'start', messageId: reply });
    assert.equal(resumed.at(-1).type, 'finish');
    const deltas = resumed.filter((c) => c.type === 'text-delta').map((c) => c.delta).join('');
    assert.equal(deltas, expectedReply(n));

    // Stored once, complete, on both instances.
    for (const client of [persistA, persistB]) {
      const item = await itemOf(client, conversation, reply);
      assert.equal(item.status, 'completed');
      assert.equal(item.text, expectedReply(n));
    }
    const ended = await appA.logged('the writer to end', (l) => l.event === 'reply_ended' && l.reply_id === reply);
    assert.deepEqual({ status: ended.status, tokens: ended.tokens }, { status: 'completed', tokens: n });

    // The chat as the AI SDK's UIMessage[] (what a reloaded page shows), through app B.
    const reloaded = await session.fetch(`${appB.url}/api/chat/${encodeURIComponent(id)}/messages`);
    assert.equal(reloaded.status, 200);
    const shown = await reloaded.json();
    assert.deepEqual(shown.map((m) => [m.role, m.id]), [['user', chat.messages[0].id], ['assistant', reply]]);
    assert.equal(textOf(shown[0]), 'Count for me, slowly.');
    assert.equal(textOf(shown[1]), expectedReply(n));
    const stored = shown[1].parts.filter((part) => part.type !== 'step-start');
    assert.deepEqual(stored.map((part) => part.type), ['reasoning', 'tool-count', 'text']);
    const tool = stored[1];
    assert.deepEqual([tool.state, tool.input, tool.output], ['output-available', { upTo: n }, { count: n }]);

    // Nothing runs now: the resume route answers 204, which the SDK reads as nothing to resume.
    const none = await session.fetch(`${appB.url}/api/chat/${encodeURIComponent(id)}/stream`);
    assert.equal(none.status, 204);
  } finally {
    session.end();
  }
});

test('a stop from a third client (app B) stops the model call on app A; the partial reply is kept, interrupted everywhere', { timeout: 30_000 }, async (t) => {
  const session = new Session();
  try {
    const id = chatId('stop');
    const n = 400;
    const senderTransport = new SplitTransport({
      send: transportTo(appA, session, { tokens: n, delay_ms: 30 }),
      reconnect: transportTo(appA, session),
    });
    const sender = new Chat({ id, transport: senderTransport });
    const sending = sender.sendMessage({ text: 'Count for me, at length.' });
    await waitForTokens(sender, n, 1, 'sender');
    const { conversation, reply } = await startedReply(appA, id);

    // A second client follows the reply through app B (persist B).
    const followerTransport = new SplitTransport({ send: transportTo(appB, session), reconnect: transportTo(appB, session) });
    const follower = new Chat({ id, transport: followerTransport });
    const following = follower.resumeStream();
    await waitForTokens(follower, n, 5, 'follower');

    // A third client stops it, through app B.
    const answer = await postStop(appB, id, session);
    assert.deepEqual(answer, { stopped: true, reply_id: reply });
    await within('the sender and the follower to end', Promise.all([sending, following]));

    // The writer (app A) heard the stop and aborted its model call.
    const heard = await appA.logged('the writer to hear the stop', (l) => l.event === 'writer_stopped' && l.reply_id === reply);
    assert.ok(heard);
    const ended = await appA.logged('the writer to end', (l) => l.event === 'reply_ended' && l.reply_id === reply);
    assert.equal(ended.stopped, true);
    assert.ok(ended.tokens < n, `the model stopped generating (${ended.tokens} of ${n} tokens)`);
    t.diagnostic(`the model generated ${ended.tokens} of ${n} tokens; the writer heard the stop: ${JSON.stringify(heard)}`);

    // Every client has the same partial reply, ended with abort.
    const text = textOf(assistantOf(sender));
    const stoppedAt = tokensIn(text, n);
    assert.ok(stoppedAt >= 5 && stoppedAt < n, `stopped mid-reply (${stoppedAt} of ${n} tokens)`);
    assert.equal(textOf(assistantOf(follower)), text, 'the follower has the same text');
    for (const [who, chunks] of [['sender', senderTransport.sent[0]], ['follower', followerTransport.resumed[0]]]) {
      assert.equal(chunks[0].messageId, reply, `${who}: the reply`);
      assert.deepEqual(chunks.at(-1), { type: 'abort', reason: 'stopped' }, `${who}: ends with abort`);
      assert.ok(!chunks.some((chunk) => chunk.type === 'finish' || chunk.type === 'error'), `${who}: no finish or error`);
    }

    // Stored: the partial text, incomplete, on both instances.
    for (const client of [persistA, persistB]) {
      const item = await itemOf(client, conversation, reply);
      assert.equal(item.status, 'incomplete');
      assert.equal(item.text, text, 'the stored text is what the clients have');
    }
    // The change feed says so.
    const update = await feedUntil(
      PERSIST_B,
      conversation,
      'the reply ended',
      (e) => e.op === 'update_content' && e.message_id === reply && e.status !== 'reserved',
    );
    assert.ok(['interrupted', 'stopped'].includes(update.status), `feed status ${update.status}`);
    t.diagnostic(`change feed: ${JSON.stringify(update)}`);
    // `persist show` too.
    const shown = await persistShow(conversation);
    if (shown !== null) {
      const line = shown.split('\n').find((l) => l.includes(text.slice(0, 40)));
      assert.match(line ?? '', /assistant \[(interrupted|stopped)\]/, shown);
      t.diagnostic(`persist show: ${line.slice(0, 80)}`);
    }
    // A second stop: nothing runs.
    assert.equal((await postStop(appA, id, session)).stopped, false);
  } finally {
    session.end();
  }
});

test('kill -9 of the writing app: a follower on the other instance ends with an error within lease + 2 s; the reply is kept; a new turn starts', { timeout: 30_000 }, async (t) => {
  const session = new Session();
  const killed = await startApp('app K', PERSIST_A);
  try {
    const id = chatId('kill');
    const n = 400;
    const leaseSeconds = 2;
    const sender = new Chat({ id, transport: transportTo(killed, session, { tokens: n, delay_ms: 30, lease_seconds: leaseSeconds }) });
    const sending = sender.sendMessage({ text: 'Count, until you die.' });
    sending.catch(() => {});
    const { conversation, reply } = await startedReply(killed, id);

    const followerTransport = new SplitTransport({ send: transportTo(appB, session), reconnect: transportTo(appB, session) });
    const follower = new Chat({ id, transport: followerTransport });
    const following = follower.resumeStream();
    await waitForTokens(follower, n, 5, 'follower');

    killed.child.kill('SIGKILL');
    const killedAt = Date.now();
    await killed.exited;
    await within('the follower to be told', following, (leaseSeconds + 6) * 1000);
    const tookMs = Date.now() - killedAt;
    assert.ok(tookMs <= (leaseSeconds + 2) * 1000 + 1000, `the follower was told after ${tookMs} ms`);
    t.diagnostic(`the follower was told ${tookMs} ms after the kill (lease ${leaseSeconds} s)`);

    const chunks = followerTransport.resumed[0];
    assert.equal(chunks.at(-1).type, 'error', `the follower's stream ends with an error: ${JSON.stringify(chunks.at(-1))}`);
    assert.equal(follower.status, 'error');
    const text = textOf(assistantOf(follower));
    const kept = tokensIn(text, n);
    assert.ok(kept >= 5 && kept < n, `a partial reply (${kept} of ${n} tokens)`);

    const item = await itemOf(persistB, conversation, reply);
    assert.equal(item.status, 'incomplete');
    assert.equal(item.text, text, 'the stored text is what the follower has');

    // A new turn on the conversation, through app B: allowed, complete.
    follower.clearError();
    await within('the new turn', follower.sendMessage({ text: 'Try again, briefly.' }), 15_000);
    assert.equal(follower.status, 'ready', follower.error?.message);
    assert.equal(textOf(assistantOf(follower)), expectedReply(20));
    const next = await startedReply(appB, id);
    assert.notEqual(next.reply, reply);
    assert.equal((await itemOf(persistA, conversation, next.reply)).status, 'completed');
  } finally {
    session.end();
    await killed.stop();
  }
});

test('hostile writers over HTTP get typed errors, and nothing is half-written', { timeout: 30_000 }, async (t) => {
  const id = await conversationFor(persistA, chatId('hostile'));
  const started = await LiveReply.start(persistA, id, {
    items: [{ id: `user-${randomUUID()}`, type: 'message', role: 'user', content: 'hi' }],
    watchSignals: false,
    renewEveryMs: 60_000,
  });
  const reply = started.id;
  const path = (action) => `/v1/persist/conversations/${encodeURIComponent(id)}/replies/${encodeURIComponent(reply)}/${action}`;
  const refusal = async (call) => {
    try {
      await call();
    } catch (error) {
      assert.ok(error instanceof PersistApiError, String(error));
      return error;
    }
    assert.fail('expected a refusal');
  };
  const unchanged = async (text, status = 'in_progress') => {
    for (const client of [persistA, persistB]) {
      const item = await itemOf(client, id, reply);
      assert.deepEqual({ text: item.text, status: item.status }, { text, status });
    }
  };

  let answer = await persistA.request('POST', path('parts'), { body: { offset: '0', parts: [{ type: 'text', text: 'Hello' }] } });
  assert.equal(answer.offset, '0.5');

  // Out of order: a gap beyond the end, and other parts where parts are.
  let error = await refusal(() => persistB.request('POST', path('parts'), { body: { offset: '0.9', parts: [{ type: 'text', text: '!' }] } }));
  assert.deepEqual([error.status, error.code, error.error.offset], [409, 'offset_gap', '0.5']);
  error = await refusal(() => persistB.request('POST', path('parts'), { body: { offset: '3', parts: [{ type: 'text', text: '!' }] } }));
  assert.deepEqual([error.status, error.code, error.error.offset], [409, 'offset_gap', '0.5']);
  error = await refusal(() => persistB.request('POST', path('parts'), { body: { offset: '0', parts: [{ type: 'text', text: 'Jello' }] } }));
  assert.deepEqual([error.status, error.code, error.error.offset], [409, 'offset_diverged', '0.5']);
  await unchanged('Hello');
  // The same append again (a retry): written once.
  answer = await persistB.request('POST', path('parts'), { body: { offset: '0', parts: [{ type: 'text', text: 'Hello' }] } });
  assert.deepEqual([answer.offset, answer.written], ['0.5', false]);
  await unchanged('Hello');

  // Malformed parts: 400.
  error = await refusal(() => persistA.request('POST', path('parts'), { body: { offset: '0.5', parts: [{ text: 'no type' }] } }));
  assert.equal(error.status, 400);
  error = await refusal(() => persistA.request('POST', path('parts'), { body: { offset: '0.5', parts: [] } }));
  assert.equal(error.status, 400);
  await unchanged('Hello');

  // Oversize: over the servers' body limit, refused before it is read. With `Expect:
  // 100-continue` the 413 comes before the body is sent; a client that sends the body at once
  // (fetch) may see the connection reset instead (persist closes it mid-upload).
  const size = Math.max(5 * 1024 * 1024, MAX_BODY + 1024 * 1024);
  const big = Buffer.from(JSON.stringify({ offset: '0.5', parts: [{ type: 'text', text: 'x'.repeat(size) }] }));
  const tooLarge = await postExpectingContinue(`${PERSIST_A}${path('parts')}`, big);
  assert.deepEqual([tooLarge.status, tooLarge.sent], [413, false], 'refused by its Content-Length, before the body');
  assert.equal(JSON.parse(tooLarge.body).error.code, 'request_too_large');
  let plain;
  try {
    const response = await fetch(`${PERSIST_B}${path('parts')}`, {
      method: 'POST',
      headers: { authorization: `Bearer ${KEY}`, 'content-type': 'application/json' },
      body: big,
    });
    plain = `${response.status} ${(await response.json()).error?.code}`;
    assert.equal(plain, '413 request_too_large');
  } catch (error) {
    if (error instanceof assert.AssertionError) throw error;
    plain = `${error.message} (${error.cause?.code ?? error.cause?.message})`;
    assert.match(plain, /EPIPE|ECONNRESET|other side closed|socket/i, plain);
  }
  t.diagnostic(`a ${size}-byte append sent at once (fetch): ${plain}`);
  await unchanged('Hello');

  // Another tenant: no such conversation, whatever it tries.
  if (OTHER_KEY) {
    const other = new PersistClient({ baseUrl: PERSIST_B, apiKey: OTHER_KEY });
    for (const [method, action, body] of [
      ['POST', 'parts', { offset: '0.5', parts: [{ type: 'text', text: ' pwned' }] }],
      ['POST', 'renew', undefined],
      ['POST', 'finish', { status: 'incomplete', reason: 'pwned' }],
    ]) {
      error = await refusal(() => other.request(method, path(action), { body }));
      assert.deepEqual([error.status, error.code], [404, 'not_found'], `another tenant's ${action}`);
    }
    // A conversation the caller does not have runs no reply: nothing stopped, as for an unknown chat.
    const stopped = await other.request('POST', `/v1/persist/conversations/${encodeURIComponent(id)}/stop`);
    assert.deepEqual(stopped, { stopped: false }, "another tenant's stop");
    error = await refusal(() => other.request('POST', `/v1/persist/conversations/${encodeURIComponent(id)}/replies`, { body: { items: [] } }));
    assert.equal(error.status, 404, "another tenant's start");
    const signals = await fetch(`${PERSIST_B}${path('signals')}`, { headers: { authorization: `Bearer ${OTHER_KEY}` } });
    assert.equal(signals.status, 404, "another tenant's signals");
    await signals.body?.cancel();
    // Ids are the tenant's own: the other tenant's PUT of this id makes its own conversation,
    // which holds nothing of this one's, runs no reply, and cannot stop this one.
    const theirs = await other.ensureConversation(id);
    assert.deepEqual([theirs.id, theirs.metadata], [id, {}]);
    assert.deepEqual((await other.request('GET', `/v1/persist/conversations/${encodeURIComponent(id)}/ui-messages`)).data, []);
    const stream = await fetch(`${PERSIST_B}/v1/persist/conversations/${encodeURIComponent(id)}/stream`, {
      headers: { authorization: `Bearer ${OTHER_KEY}` },
    });
    assert.equal(stream.status, 204, "no reply runs in the other tenant's conversation");
    assert.deepEqual(await other.request('POST', `/v1/persist/conversations/${encodeURIComponent(id)}/stop`), { stopped: false });
    error = await refusal(() => other.request('POST', path('parts'), { body: { offset: '0.5', parts: [{ type: 'text', text: ' pwned' }] } }));
    assert.deepEqual([error.status, error.code], [404, 'not_found'], "another tenant's append, its conversation of this id made");
    await unchanged('Hello');
  }

  // One reply at a time: a second start, on the other instance, names the running one.
  error = await refusal(() => persistB.request('POST', `/v1/persist/conversations/${encodeURIComponent(id)}/replies`, { body: { items: [] } }));
  assert.deepEqual([error.status, error.code, error.error.reply_id], [409, 'reply_running', reply]);

  // Finish with last parts; again (a retry) is written once; appends after it are refused.
  answer = await persistB.request('POST', path('finish'), { body: { status: 'completed', offset: '0.5', parts: [{ type: 'text', text: ' world' }] } });
  assert.deepEqual([answer.status, answer.written], ['completed', true]);
  answer = await persistA.request('POST', path('finish'), { body: { status: 'completed', offset: '0.5', parts: [{ type: 'text', text: ' world' }] } });
  assert.deepEqual([answer.status, answer.written], ['completed', false]);
  error = await refusal(() => persistA.request('POST', path('parts'), { body: { offset: '0.11', parts: [{ type: 'text', text: '!' }] } }));
  assert.deepEqual([error.status, error.code, error.error.status], [409, 'reply_ended', 'completed']);
  error = await refusal(() => persistA.request('POST', path('finish'), { body: { status: 'incomplete', reason: 'late' } }));
  assert.deepEqual([error.status, error.code], [409, 'reply_ended']);
  await unchanged('Hello world', 'completed');

  // After a stop: the writer's append and renew are told `reply_stopped`; nothing more is written.
  const second = await LiveReply.start(persistB, id, { items: [], watchSignals: false, renewEveryMs: 60_000 });
  const path2 = (action) => `/v1/persist/conversations/${encodeURIComponent(id)}/replies/${encodeURIComponent(second.id)}/${action}`;
  await persistB.request('POST', path2('parts'), { body: { offset: '0', parts: [{ type: 'text', text: 'Partial' }] } });
  const stop = await persistA.request('POST', `/v1/persist/conversations/${encodeURIComponent(id)}/stop`);
  assert.deepEqual(stop, { stopped: true, reply_id: second.id });
  error = await refusal(() => persistB.request('POST', path2('parts'), { body: { offset: '0.7', parts: [{ type: 'text', text: ' more' }] } }));
  assert.deepEqual([error.status, error.code], [409, 'reply_stopped']);
  error = await refusal(() => persistB.request('POST', path2('renew')));
  assert.deepEqual([error.status, error.code], [409, 'reply_stopped']);
  error = await refusal(() => persistB.request('POST', path2('finish'), { body: { status: 'completed', offset: '0.7', parts: [{ type: 'text', text: ' end' }] } }));
  assert.equal(error.status, 409);
  assert.ok(['reply_stopped', 'reply_ended'].includes(error.code), error.code);
  for (const client of [persistA, persistB]) {
    const item = await itemOf(client, id, second.id);
    assert.deepEqual({ text: item.text, status: item.status }, { text: 'Partial', status: 'incomplete' });
  }
  await unchanged('Hello world', 'completed');
  // The writers' own view: both ended, neither rewrote anything.
  assert.equal((await second.interrupt('late')).status, 'incomplete');
  assert.equal((await started.interrupt('late')).status, 'completed');
  await unchanged('Hello world', 'completed');
});

test('LiveReply batches deltas, retries a lost append safely, renews its lease while idle, and hears a stop', { timeout: 30_000 }, async (t) => {
  // A fetch whose 2nd append reaches persist but whose answer is lost, and whose 4th never leaves.
  const appends = [];
  let count = 0;
  const flaky = async (url, init) => {
    const isAppend = String(url).endsWith('/parts');
    if (!isAppend) return fetch(url, init);
    count += 1;
    if (count === 4) throw new TypeError('fetch failed (before sending)');
    const response = await fetch(url, init);
    appends.push({ body: JSON.parse(init.body), answer: await response.clone().json() });
    if (count === 2) throw new TypeError('fetch failed (answer lost)');
    return response;
  };
  const events = [];
  const client = new PersistClient({ baseUrl: PERSIST_A, apiKey: KEY, fetch: flaky });
  const id = await conversationFor(persistA, chatId('writer'));
  const reply = await LiveReply.start(client, id, {
    items: [{ id: `user-${randomUUID()}`, type: 'message', role: 'user', content: 'hi' }],
    leaseSeconds: 1,
    log: (event, detail) => events.push({ event, ...detail }),
  });

  const deltas = Array.from({ length: 300 }, (_, i) => (i === 0 ? 'w0' : ` w${i}`));
  reply.reasoning('Counting ');
  reply.reasoning('words.');
  for (let i = 0; i < deltas.length; i += 1) {
    reply.text(deltas[i]);
    if (i % 10 === 0) await new Promise((resolve) => setTimeout(resolve, 1));
  }
  reply.toolCall('call-1', 'lookup', { q: 'x' });
  reply.toolResult('call-1', { found: true });
  await reply.flush();
  assert.ok(appends.length < 100, `${appends.length} appends for ${deltas.length + 4} writes (batched)`);
  t.diagnostic(`${appends.length} appends for ${deltas.length + 4} writes; writer events: ${JSON.stringify(events)}`);
  assert.ok(events.some((e) => e.event === 'retry'), 'a retry was logged');
  assert.ok(appends.some((a) => a.answer.written === false), 'the retry of the lost answer was written once (written: false)');
  const item = await itemOf(persistB, id, reply.id);
  assert.equal(item.text, deltas.join(''), 'each delta once, in order');
  assert.equal(item.status, 'in_progress');

  // Idle for 3 leases: the timer renews it, so followers do not take it for dead.
  await new Promise((resolve) => setTimeout(resolve, 3000));
  const running = await fetch(`${PERSIST_B}/v1/persist/conversations/${encodeURIComponent(id)}/stream`, {
    headers: { authorization: `Bearer ${KEY}` },
  });
  assert.equal(running.status, 200, 'still running after 3 leases idle');
  await running.body.cancel();
  assert.equal((await itemOf(persistB, id, reply.id)).status, 'in_progress');

  // A stop from elsewhere, while the writer is idle: the signals stream aborts it at once.
  const stopAt = Date.now();
  const stop = await persistB.request('POST', `/v1/persist/conversations/${encodeURIComponent(id)}/stop`);
  assert.equal(stop.stopped, true);
  await within(
    'the signal to abort',
    new Promise((resolve) => (reply.signal.aborted ? resolve() : reply.signal.addEventListener('abort', resolve))),
    5_000,
  );
  t.diagnostic(`the signals stream told of the stop ${Date.now() - stopAt} ms after it was asked (on the other instance)`);
  assert.ok(reply.signal.reason instanceof ReplyStoppedError);
  assert.equal(reply.stopped, true);
  assert.deepEqual(events.filter((e) => e.event === 'stopped').map((e) => e.via), ['signals'], 'told by the signals stream');
  const ended = await reply.finish();
  assert.deepEqual([ended.status, ended.end], ['incomplete', 'stopped']);
  const final = await itemOf(persistA, id, reply.id);
  assert.deepEqual([final.status, final.text], ['incomplete', deltas.join('')]);
});

test('readUIMessageStream follows a running reply through the other app and instance; an unknown chat is 204', { timeout: 20_000 }, async (t) => {
  const session = new Session();
  try {
    const unknown = chatId('none');
    const transport = transportTo(appB, session);
    assert.equal(await transport.reconnectToStream({ chatId: unknown }), null, 'nothing to resume: 204');

    const id = chatId('read');
    const chat = new Chat({ id, transport: transportTo(appA, session, { tokens: 200, delay_ms: 20 }) });
    const sending = chat.sendMessage({ text: 'Count.' });
    await waitForTokens(chat, 200, 3, 'chat');
    const stream = await transportTo(appB, session).reconnectToStream({ chatId: id });
    assert.ok(stream, 'a running reply to follow');
    let last;
    for await (const message of readUIMessageStream({ stream })) last = message;
    await within('the sender', sending);
    assert.equal(textOf(last), expectedReply(200));
    assert.equal(last.id, assistantOf(chat).id);
  } finally {
    session.end();
  }
});
