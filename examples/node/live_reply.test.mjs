// The persist example server (examples/sse_server.rs) as the Vercel AI SDK's own chat client
// sees it: a live reply cut off on one instance and resumed on another, whole and once; a
// reply stopped from a third client while another client follows it; the wire format itself.
//
// Two instances sharing one store: PERSIST_SERVER_A and PERSIST_SERVER_B are their base URLs
// (e.g. http://127.0.0.1:3001). The client is `AbstractChat` (what `useChat` runs) over
// `DefaultChatTransport`, so the stream is parsed, merged and resumed exactly as an app's would be.
//
// The server makes a canned reply: N tokens "token0 token1 ... token{N-1}", one every D ms,
// taken from the request body's `persist: {tokens: N, delay_ms: D}` (the transport's `body`).

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { AbstractChat, DefaultChatTransport, UI_MESSAGE_STREAM_HEADERS } from 'ai';
import {
  Session,
  SplitTransport,
  assistantOf,
  chatClient,
  expectedReply,
  textOf,
  tokensIn,
  waitForTokens,
  within,
} from '../../crates/serve/clients/ai-sdk/chat-client.mjs';

const A = baseUrl('PERSIST_SERVER_A');
const B = baseUrl('PERSIST_SERVER_B');

function baseUrl(name) {
  const value = process.env[name];
  if (!value) {
    throw new Error(`set ${name} to the base URL of a running server, e.g. http://127.0.0.1:3001 (see README.md)`);
  }
  return value.replace(/\/+$/, '');
}

/** A thread id of its own for each test. */
function threadId(what) {
  return `vercel-${what}-${randomUUID()}`;
}

// The SDK's chat held in memory, a network that can be cut, a transport that sends through one
// instance and resumes through another: what the AI SDK tests of persist share.
const { Chat, transportTo: transportToApp } = chatClient({ AbstractChat, DefaultChatTransport });

/** `DefaultChatTransport` to the instance at `base`, asking for `reply` (the mock model's options). */
function transportTo(base, session, reply) {
  return transportToApp({ url: base }, session, reply);
}

async function postStop(base, id, session) {
  const response = await session.fetch(`${base}/api/chat/${encodeURIComponent(id)}/stop`, { method: 'POST' });
  assert.equal(response.status, 200, `stop answered ${response.status}: ${await response.clone().text()}`);
  assert.match(response.headers.get('content-type') ?? '', /^application\/json/);
  return response.json();
}

function assertEndedCleanly(chat, who) {
  assert.equal(chat.status, 'ready', `${who}: status`);
  assert.equal(chat.error, undefined, `${who}: error`);
  assert.deepEqual(chat.errors, [], `${who}: onError`);
  const finish = chat.finishes.at(-1);
  assert.ok(finish, `${who}: onFinish was called`);
  assert.deepEqual(
    { isAbort: finish.isAbort, isDisconnect: finish.isDisconnect, isError: finish.isError },
    { isAbort: false, isDisconnect: false, isError: false },
    `${who}: onFinish`,
  );
  const textParts = assistantOf(chat).parts.filter((part) => part.type === 'text');
  assert.equal(textParts.length, 1, `${who}: one text part`);
  assert.equal(textParts[0].state, 'done', `${who}: the text part was ended (text-end)`);
}

function assertReplayStart(chunks, messageId, who) {
  assert.deepEqual({ type: chunks[0]?.type, messageId: chunks[0]?.messageId }, { type: 'start', messageId }, `${who}: first chunk`);
}

test('a reply cut off on A resumes on B: the whole reply, once', { timeout: 30_000 }, async () => {
  const session = new Session();
  try {
    const id = threadId('resume');
    const n = 40;
    const transport = new SplitTransport({
      send: transportTo(A, session, { tokens: n, delay_ms: 50 }),
      reconnect: transportTo(B, session),
    });
    const chat = new Chat({ id, transport });

    const sending = chat.sendMessage({ text: 'Count for me, slowly.' });
    await waitForTokens(chat, n, 5, 'chat');
    session.drop();
    await within('the cut-off request to settle', sending);

    // The SDK saw a lost connection, not an error of the server's, and kept the partial reply.
    assert.equal(chat.status, 'error');
    assert.equal(chat.finishes.at(-1)?.isDisconnect, true, 'onFinish reports a disconnect');
    assert.equal(chat.errors.length, 1, 'onError reported the lost connection');
    chat.errors.length = 0;
    const partial = assistantOf(chat);
    const partialTokens = tokensIn(textOf(partial), n);
    assert.ok(partialTokens >= 5 && partialTokens < n, `cut mid-reply (${partialTokens} of ${n} tokens)`);
    assert.equal(transport.sent[0][0].type, 'start');
    assert.equal(transport.sent[0][0].messageId, partial.id, 'the reply is named by the start chunk');

    // Resume through the other instance, while A is still generating.
    await within('the resumed stream to end', chat.resumeStream());
    assertEndedCleanly(chat, 'resumed chat');
    assert.deepEqual(
      chat.messages.map((message) => message.role),
      ['user', 'assistant'],
      'the resumed reply replaced the partial one (no second assistant message)',
    );
    assert.equal(assistantOf(chat).id, partial.id, 'same reply id');
    assert.equal(textOf(assistantOf(chat)), expectedReply(n), 'the whole reply, each token once');
    assert.equal(chat.finishes.at(-1).finishReason, 'stop');
    const resumed = transport.resumed[0];
    assertReplayStart(resumed, partial.id, 'resumed stream');
    assert.equal(resumed.at(-1).type, 'finish', 'resumed stream ends with finish');

    // A stop for a reply that ended on its own changes nothing and says how it ended.
    const answer = await postStop(B, id, session);
    assert.deepEqual({ stopped: answer.stopped, status: answer.status }, { stopped: false, status: 'complete' });

    // A new client with no history (a reloaded page) resuming the finished reply, on A.
    const reloaded = new Chat({
      id,
      transport: new SplitTransport({ send: transportTo(A, session), reconnect: transportTo(A, session) }),
    });
    await within('the finished reply to replay', reloaded.resumeStream());
    assertEndedCleanly(reloaded, 'reloaded chat');
    assert.deepEqual(reloaded.messages.map((message) => [message.role, message.id]), [['assistant', partial.id]]);
    assert.equal(textOf(assistantOf(reloaded)), expectedReply(n));
  } finally {
    session.end();
  }
});

test('a stop through B ends the reply A is generating, for every client', { timeout: 30_000 }, async () => {
  const session = new Session();
  try {
    const id = threadId('stop');
    const n = 200;
    const senderTransport = new SplitTransport({
      send: transportTo(A, session, { tokens: n, delay_ms: 50 }),
      reconnect: transportTo(A, session),
    });
    const sender = new Chat({ id, transport: senderTransport });
    const sending = sender.sendMessage({ text: 'Count for me, at length.' });
    await waitForTokens(sender, n, 1, 'sender');

    // A second client follows the reply through B.
    const followerTransport = new SplitTransport({ send: transportTo(B, session), reconnect: transportTo(B, session) });
    const follower = new Chat({ id, transport: followerTransport });
    const following = follower.resumeStream();
    await waitForTokens(follower, n, 5, 'follower');

    // A third client stops the reply, through B.
    assert.equal((await postStop(B, id, session)).stopped, true, 'the stop answer says it stopped the reply');
    await within('the sender and the follower to end', Promise.all([sending, following]));

    assertEndedCleanly(sender, 'sender');
    assertEndedCleanly(follower, 'follower');
    const replyId = assistantOf(sender).id;
    assert.equal(assistantOf(follower).id, replyId, 'both follow the same reply');
    assert.deepEqual(follower.messages.map((message) => message.role), ['assistant']);
    const text = textOf(assistantOf(sender));
    const stoppedAt = tokensIn(text, n);
    assert.ok(stoppedAt >= 5 && stoppedAt < n, `stopped mid-reply (${stoppedAt} of ${n} tokens)`);
    assert.equal(textOf(assistantOf(follower)), text, 'the follower has the text the reply was finalized with');

    // A stopped reply ends with `abort`, not `finish`, on every stream of it.
    for (const [who, chunks] of [
      ['sender', senderTransport.sent[0]],
      ['follower', followerTransport.resumed[0]],
    ]) {
      assertReplayStart(chunks, replyId, who);
      assert.equal(chunks.at(-1).type, 'abort', `${who}: the stream ends with abort`);
      assert.equal(chunks.at(-2).type, 'text-end', `${who}: the text was ended before abort`);
      assert.ok(!chunks.some((chunk) => chunk.type === 'finish'), `${who}: no finish chunk`);
    }

    // The reply has ended, stopped: a second stop says so, through either instance.
    for (const base of [A, B]) {
      const answer = await postStop(base, id, session);
      assert.deepEqual({ stopped: answer.stopped, status: answer.status }, { stopped: false, status: 'stopped' });
    }

    // Resuming it later replays the stopped reply, ended the same way.
    const laterTransport = new SplitTransport({ send: transportTo(A, session), reconnect: transportTo(A, session) });
    const later = new Chat({ id, transport: laterTransport });
    await within('the stopped reply to replay', later.resumeStream());
    assertEndedCleanly(later, 'later client');
    assert.equal(textOf(assistantOf(later)), text);
    assert.equal(laterTransport.resumed[0].at(-1).type, 'abort');
  } finally {
    session.end();
  }
});

test('wire format: headers, chunks, [DONE]; nothing to resume is 204', { timeout: 30_000 }, async () => {
  const session = new Session();
  try {
    const id = threadId('wire');
    // The body DefaultChatTransport sends (see README.md / the protocol notes).
    const response = await session.fetch(`${A}/api/chat`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({
        persist: { tokens: 3, delay_ms: 10 },
        id,
        messages: [{ id: 'u1', role: 'user', parts: [{ type: 'text', text: 'hi' }] }],
        trigger: 'submit-message',
      }),
    });
    assert.equal(response.status, 200);
    for (const name of ['content-type', 'x-vercel-ai-ui-message-stream']) {
      assert.equal(
        response.headers.get(name)?.split(';')[0],
        UI_MESSAGE_STREAM_HEADERS[name],
        `header ${name}`,
      );
    }
    const body = await within('the reply to end', response.text());
    const data = body
      .split(/\r?\n\r?\n/)
      .filter((event) => event.trim() !== '')
      .flatMap((event) => event.split(/\r?\n/).filter((line) => line.startsWith('data:')))
      .map((line) => line.slice('data:'.length).trim());
    assert.equal(data.at(-1), '[DONE]', 'the stream ends with data: [DONE]');
    const chunks = data.slice(0, -1).map((line) => JSON.parse(line));
    const types = chunks.map((chunk) => chunk.type).join(',');
    assert.match(types, /^start,start-step,text-start,(text-delta,)+text-end,finish-step,finish$/, types);
    assert.equal(typeof chunks[0].messageId, 'string');
    const texts = chunks.filter((chunk) => chunk.type.startsWith('text-'));
    assert.ok(texts.every((chunk) => chunk.id === texts[0].id), 'one text id throughout');
    const deltas = chunks.filter((chunk) => chunk.type === 'text-delta').map((chunk) => chunk.delta);
    assert.equal(deltas.join(''), expectedReply(3));
    assert.equal(chunks.at(-1).finishReason, 'stop');

    // A thread with no reply: 204, which the SDK reads as "nothing to resume".
    const unknown = threadId('none');
    const none = await session.fetch(`${B}/api/chat/${encodeURIComponent(unknown)}/stream`);
    assert.equal(none.status, 204);
    assert.equal(await transportTo(B, session).reconnectToStream({ chatId: unknown }), null);
    const chat = new Chat({
      id: unknown,
      transport: new SplitTransport({ send: transportTo(B, session), reconnect: transportTo(B, session) }),
    });
    await within('the resume to give up', chat.resumeStream());
    assert.equal(chat.status, 'ready');
    assert.deepEqual(chat.messages, []);
  } finally {
    session.end();
  }
});

/** The parts of a UI message as a client shows them (fields left undefined by the SDK dropped). */
function shown(message) {
  return JSON.parse(JSON.stringify(message.parts));
}

test('reasoning and a tool call with its result stream as parts, and replay the same on B', { timeout: 30_000 }, async () => {
  const session = new Session();
  try {
    const id = threadId('tools');
    const n = 5;
    const transport = new SplitTransport({
      send: transportTo(A, session, { tokens: n, delay_ms: 20, reasoning: true, tool: true }),
      reconnect: transportTo(B, session),
    });
    const chat = new Chat({ id, transport });
    await within('the reply to end', chat.sendMessage({ text: 'Count, and show your work.' }));
    assertEndedCleanly(chat, 'chat');

    // Two steps: the tool's result ends the first, as the SDK's own replies are told.
    assert.deepEqual(
      shown(assistantOf(chat)).map((part) => part.type),
      ['step-start', 'reasoning', 'tool-count', 'step-start', 'text'],
      'one reasoning part (its deltas joined), the tool part, one text part, in two steps',
    );
    const parts = shown(assistantOf(chat)).filter((part) => part.type !== 'step-start');
    assert.equal(parts[0].text, 'The user said something; answer with tokens.');
    assert.equal(parts[0].state, 'done');
    assert.deepEqual(
      { toolCallId: parts[1].toolCallId, state: parts[1].state, input: parts[1].input, output: parts[1].output },
      { toolCallId: 'call-count', state: 'output-available', input: { messages: '1' }, output: { count: n } },
    );
    assert.equal(parts[2].text, expectedReply(n));
    const types = transport.sent[0].map((chunk) => chunk.type).join(',');
    assert.match(
      types,
      /^start,start-step,reasoning-start,(reasoning-delta,)+reasoning-end,tool-input-available,tool-output-available,finish-step,start-step,text-start,(text-delta,)+text-end,finish-step,finish$/,
      types,
    );

    // A reloaded page resuming through B rebuilds the same message from the store.
    const reloaded = new Chat({ id, transport: new SplitTransport({ send: transportTo(B, session), reconnect: transportTo(B, session) }) });
    await within('the replay', reloaded.resumeStream());
    assertEndedCleanly(reloaded, 'reloaded chat');
    assert.deepEqual(shown(assistantOf(reloaded)), shown(assistantOf(chat)), 'the replay shows the same parts');
  } finally {
    session.end();
  }
});

test("regenerate (the SDK's own) writes a sibling reply on B; the first stays readable", { timeout: 30_000 }, async () => {
  const session = new Session();
  try {
    const id = threadId('regenerate');
    const transport = new SplitTransport({
      send: transportTo(A, session, { tokens: 3, delay_ms: 10 }),
      reconnect: transportTo(B, session),
    });
    const chat = new Chat({ id, transport });
    await within('the first reply', chat.sendMessage({ text: 'Say three tokens.' }));
    assertEndedCleanly(chat, 'first reply');
    const first = assistantOf(chat).id;

    // The same chat regenerates through the other instance, with a longer canned reply.
    transport.send = transportTo(B, session, { tokens: 4, delay_ms: 10 });
    await within('the regenerated reply', chat.regenerate());
    assertEndedCleanly(chat, 'regenerated reply');
    assert.deepEqual(chat.messages.map((message) => message.role), ['user', 'assistant']);
    const second = assistantOf(chat).id;
    assert.notEqual(second, first, 'a new reply');
    assert.equal(textOf(assistantOf(chat)), expectedReply(4));

    // In the store: both replies, siblings answering the same user message.
    const stored = await (await session.fetch(`${A}/threads/${encodeURIComponent(id)}/messages`)).json();
    const byId = new Map(stored.messages.map((message) => [message.id, message]));
    assert.equal(byId.get(first)?.status, 'complete', 'the first reply is kept');
    assert.equal(byId.get(second)?.status, 'complete');
    assert.equal(byId.get(second).parent_seq, byId.get(first).parent_seq, 'siblings');
    const user = stored.messages.find((message) => message.role === 'user');
    assert.equal(byId.get(first).parent_seq, user.seq, 'both answer the user message');

    // Resuming the chat gives the regenerated reply.
    const reloaded = new Chat({ id, transport: new SplitTransport({ send: transportTo(A, session), reconnect: transportTo(A, session) }) });
    await within('the replay', reloaded.resumeStream());
    assert.equal(assistantOf(reloaded).id, second);

    // A regenerate while a reply is being generated is refused, and writes nothing.
    const busy = new Chat({ id, transport: transportTo(A, session, { tokens: 100, delay_ms: 50 }) });
    const generating = busy.sendMessage({ text: 'Count at length.' });
    await waitForTokens(busy, 100, 1, 'long reply');
    const refused = await session.fetch(`${B}/api/chat`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ id, messages: [], trigger: 'regenerate-message' }),
    });
    assert.equal(refused.status, 409, await refused.clone().text());
    await postStop(B, id, session);
    await within('the long reply to stop', generating);
  } finally {
    session.end();
  }
});
