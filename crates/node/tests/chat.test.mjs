// The AI SDK's chats on persist-store, as the SDK's own client sees them: two app processes
// (app.mjs, persist in process) on one store, once on a SQLite file and once on a PostgreSQL
// schema. A reply cut off on one process and resumed on the other arrives whole and once, and
// `readUIMessageStream` follows one there to its end; a stop sent to the other process stops
// the model call; `kill -9` of the writing process leaves the partial reply, settled
// interrupted; a reload answers the same UIMessage[], which the SDK validates, and a second turn
// continues from it.
//
// Env: PERSIST_STORE_TESTS_POSTGRES (a postgres:// URL; each run uses a schema of its own and
// drops it). Without it the PostgreSQL half is skipped, unless CI is set: then it fails.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

import { AbstractChat, DefaultChatTransport, readUIMessageStream, validateUIMessages } from 'ai';

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
} from '../../serve/clients/ai-sdk/chat-client.mjs';

const HERE = dirname(fileURLToPath(import.meta.url));
const { Chat, transportTo } = chatClient({ AbstractChat, DefaultChatTransport });
const folder = mkdtempSync(join(tmpdir(), 'persist-store-chat-'));
const POSTGRES = process.env.PERSIST_STORE_TESTS_POSTGRES;
if (!POSTGRES && process.env.CI) throw new Error('CI: set PERSIST_STORE_TESTS_POSTGRES (the PostgreSQL half is required)');
const schema = `node_chat_${process.pid}_${Date.now()}`;

const STORES = [
  ['a SQLite file', `sqlite:${join(folder, 'chat.db')}`],
  ['PostgreSQL', POSTGRES ? `${POSTGRES}${POSTGRES.includes('?') ? '&' : '?'}schema=${schema}` : null],
];

const apps = [];
process.on('exit', () => {
  for (const app of apps) if (app.child.exitCode === null && app.child.signalCode === null) app.child.kill('SIGKILL');
});

async function startApp(name, url) {
  const app = new App(name, join(HERE, 'app.mjs'), { PERSIST_URL: url });
  apps.push(app);
  return app.start();
}

after(async () => {
  await Promise.all(apps.map((app) => app.stop()));
  rmSync(folder, { recursive: true, force: true });
  if (POSTGRES) {
    // The schema of this run, made by the apps' stores.
    try {
      execFileSync('psql', [POSTGRES, '-qc', `DROP SCHEMA IF EXISTS "${schema}" CASCADE`], { stdio: 'ignore' });
    } catch {
      // psql missing: the schema stays (its name says which run made it).
    }
  }
});

async function stop(app, id, session) {
  const response = await session.fetch(`${app.url}/api/chat/${encodeURIComponent(id)}/stop`, { method: 'POST' });
  assert.equal(response.status, 200);
  return response.json();
}

async function chatOf(app, id, session) {
  const response = await session.fetch(`${app.url}/api/chat/${encodeURIComponent(id)}`);
  assert.equal(response.status, 200);
  return response.json();
}

for (const [name, url] of STORES) {
  describe(`two app processes on ${name}`, { skip: url ? false : 'PERSIST_STORE_TESTS_POSTGRES is not set' }, () => {
    let appA;
    let appB;
    before(async () => {
      [appA, appB] = await Promise.all([startApp(`A (${name})`, url), startApp(`B (${name})`, url)]);
    });

    test('a reply cut off on A and resumed on B arrives whole and once; a reload validates and a second turn continues', { timeout: 40_000 }, async (t) => {
      const session = new Session();
      try {
        const id = chatId('resume');
        const n = 80;
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
        const cutAt = tokensIn(textOf(assistantOf(chat)), n);
        assert.ok(cutAt >= 5 && cutAt < n, `cut mid-reply (${cutAt} of ${n})`);
        t.diagnostic(`cut off after ${cutAt} of ${n} tokens`);

        chat.clearError?.();
        await within('the resumed stream to end', chat.resumeStream());
        assert.equal(chat.status, 'ready', `resumed: ${chat.error?.message}`);
        assert.deepEqual(chat.messages.map((m) => m.role), ['user', 'assistant'], 'the replay replaced the partial reply');
        const message = assistantOf(chat);
        assert.equal(textOf(message), expectedReply(n), 'the whole reply, each token once');
        const parts = message.parts.filter((part) => part.type !== 'step-start');
        assert.deepEqual(parts.map((part) => part.type), ['reasoning', 'tool-count', 'text']);
        assert.deepEqual([parts[1].state, parts[1].input, parts[1].output], ['output-available', { upTo: n }, { count: n }]);
        const resumed = transport.resumed[0];
        assert.deepEqual([resumed[0].type, resumed[0].messageId, resumed.at(-1).type], ['start', message.id, 'finish']);
        assert.equal(resumed.filter((c) => c.type === 'text-delta').map((c) => c.delta).join(''), expectedReply(n));

        const generated = await appA.logged('the writer to end', (l) => l.event === 'generated' && l.chatId === id);
        assert.deepEqual([generated.end, generated.tokens, generated.replyId], ['complete', n, message.id]);

        // A reload, from either process: the same UIMessage[], which the SDK validates.
        const shown = await chatOf(appB, id, session);
        assert.deepEqual(shown, await chatOf(appA, id, session));
        assert.deepEqual(shown.map((m) => [m.role, m.id]), chat.messages.map((m) => [m.role, m.id]));
        assert.equal(textOf(shown[1]), expectedReply(n));
        await validateUIMessages({ messages: shown });

        // A second turn, on B, from the reloaded chat: the model is given the whole history.
        const reloaded = new Chat({ id, messages: shown, transport: transportTo(appB, session, { tokens: 5, delay_ms: 5 }) });
        await within('the second turn', reloaded.sendMessage({ text: 'Again, briefly.' }));
        assert.equal(reloaded.status, 'ready', reloaded.error?.message);
        assert.equal(textOf(assistantOf(reloaded)), expectedReply(5));
        const second = await appB.logged('the second turn', (l) => l.event === 'generating' && l.chatId === id);
        assert.equal(second.history, 3, 'the user turn, the reply, the new user turn');
        const stored = await chatOf(appA, id, session);
        assert.deepEqual(stored.map((m) => m.role), ['user', 'assistant', 'user', 'assistant']);
        assert.equal(new Set(stored.map((m) => m.id)).size, 4, 'each message once');
        const none = await session.fetch(`${appB.url}/api/chat/${encodeURIComponent(id)}/stream`);
        assert.equal(none.status, 204, 'nothing runs: nothing to resume');
      } finally {
        session.end();
      }
    });

    test('a stop sent to B stops the model call on A; every stream ends with abort; the partial reply is kept', { timeout: 30_000 }, async (t) => {
      const session = new Session();
      try {
        const id = chatId('stop');
        const n = 400;
        const senderTransport = new SplitTransport({ send: transportTo(appA, session, { tokens: n, delay_ms: 30 }), reconnect: transportTo(appA, session) });
        const sender = new Chat({ id, transport: senderTransport });
        const sending = sender.sendMessage({ text: 'Count, at length.' });
        await waitForTokens(sender, n, 2, 'sender');
        const followerTransport = new SplitTransport({ send: transportTo(appB, session), reconnect: transportTo(appB, session) });
        const follower = new Chat({ id, transport: followerTransport });
        const following = follower.resumeStream();
        await waitForTokens(follower, n, 5, 'follower');

        const answer = await stop(appB, id, session);
        assert.equal(answer.stopped, true);
        await within('the sender and the follower to end', Promise.all([sending, following]));
        const generated = await appA.logged('the writer to end', (l) => l.event === 'generated' && l.chatId === id);
        assert.equal(generated.end, 'stopped');
        assert.equal(generated.replyId, answer.replyId);
        assert.ok(generated.tokens < n, `the model stopped (${generated.tokens} of ${n})`);
        t.diagnostic(`the model generated ${generated.tokens} of ${n} tokens`);

        const text = textOf(assistantOf(sender));
        const at = tokensIn(text, n);
        assert.ok(at >= 5 && at < n, `stopped mid-reply (${at} of ${n})`);
        assert.equal(textOf(assistantOf(follower)), text);
        for (const [who, chunks] of [['sender', senderTransport.sent[0]], ['follower', followerTransport.resumed[0]]]) {
          assert.deepEqual(chunks.at(-1), { type: 'abort', reason: 'stopped' }, `${who} ends with abort`);
        }
        const stored = await chatOf(appA, id, session);
        assert.equal(textOf(stored.at(-1)), text, 'the stored text is what the clients have');
        assert.equal(stored.at(-1).metadata?.persist?.status, 'interrupted');
        assert.equal((await stop(appA, id, session)).stopped, false, 'a second stop: nothing runs');
      } finally {
        session.end();
      }
    });

    test('readUIMessageStream follows a running reply through the other process; a chat with none is 204', { timeout: 30_000 }, async () => {
      const session = new Session();
      try {
        assert.equal(await transportTo(appB, session).reconnectToStream({ chatId: chatId('none') }), null, 'nothing to resume: 204');
        const id = chatId('read');
        const n = 150;
        const chat = new Chat({ id, transport: transportTo(appA, session, { tokens: n, delay_ms: 10 }) });
        const sending = chat.sendMessage({ text: 'Count.' });
        await waitForTokens(chat, n, 3, 'chat');
        const stream = await transportTo(appB, session).reconnectToStream({ chatId: id });
        assert.ok(stream, 'a running reply to follow');
        let last;
        for await (const message of readUIMessageStream({ stream })) last = message;
        await within('the sender', sending);
        assert.equal(textOf(last), expectedReply(n));
        assert.equal(last.id, assistantOf(chat).id);
      } finally {
        session.end();
      }
    });

    test('kill -9 of the writing process: the partial reply is kept, settled interrupted; a new turn starts', { timeout: 30_000 }, async (t) => {
      const session = new Session();
      const killed = await startApp(`K (${name})`, url);
      try {
        const id = chatId('kill');
        const n = 400;
        const lease = 2;
        const sender = new Chat({ id, transport: transportTo(killed, session, { tokens: n, delay_ms: 30, lease_seconds: lease }) });
        sender.sendMessage({ text: 'Count, until you die.' }).catch(() => {});
        const followerTransport = new SplitTransport({ send: transportTo(appB, session), reconnect: transportTo(appB, session) });
        const follower = new Chat({ id, transport: followerTransport });
        await waitForTokens(sender, n, 1, 'sender');
        const following = follower.resumeStream();
        await waitForTokens(follower, n, 5, 'follower');

        killed.child.kill('SIGKILL');
        const killedAt = Date.now();
        await killed.exited;
        await within('the follower to be told', following, (lease + 6) * 1000);
        const tookMs = Date.now() - killedAt;
        t.diagnostic(`the follower was told ${tookMs} ms after the kill (lease ${lease} s)`);
        assert.ok(tookMs <= (lease + 3) * 1000, `told after ${tookMs} ms`);
        assert.equal(followerTransport.resumed[0].at(-1).type, 'error');

        const text = textOf(assistantOf(follower));
        const kept = tokensIn(text, n);
        assert.ok(kept >= 5 && kept < n, `a partial reply (${kept} of ${n})`);
        const stored = await chatOf(appA, id, session);
        assert.equal(textOf(stored.at(-1)), text);
        assert.equal(stored.at(-1).metadata?.persist?.status, 'interrupted');

        const again = new Chat({ id, messages: stored, transport: transportTo(appA, session, { tokens: 5, delay_ms: 5 }) });
        await within('the new turn', again.sendMessage({ text: 'Try again.' }));
        assert.equal(again.status, 'ready', again.error?.message);
        assert.equal(textOf(assistantOf(again)), expectedReply(5));
      } finally {
        session.end();
        await killed.stop();
      }
    });
  });
}
