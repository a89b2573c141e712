// persist-store's API, in one process: every UI part type through the store and back, bad input
// refused with a typed error and nothing written, tenants apart, live replies' refusals, the
// change feed, search and working memory. On a SQLite file (the default) and, when
// PERSIST_STORE_TESTS_POSTGRES is set, on a PostgreSQL schema of its own.
import { after, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

import { validateUIMessages } from 'ai';
import {
  Conflict,
  InvalidInput,
  LiveReply,
  NotFound,
  OffsetConflict,
  PersistError,
  ReplyRunning,
  ReplyStopped,
  Store,
  version,
} from 'persist-store';
import { listChats, loadChat, saveChat } from 'persist-store/ai-sdk';

const folder = mkdtempSync(join(tmpdir(), 'persist-store-api-'));
const POSTGRES = process.env.PERSIST_STORE_TESTS_POSTGRES;
const schema = `node_api_${process.pid}_${Date.now()}`;
const STORES = [
  ['SQLite', `sqlite:${join(folder, 'api.db')}`],
  ['PostgreSQL', POSTGRES ? `${POSTGRES}${POSTGRES.includes('?') ? '&' : '?'}schema=${schema}` : null],
];

after(() => {
  rmSync(folder, { recursive: true, force: true });
  if (POSTGRES) {
    try {
      execFileSync('psql', [POSTGRES, '-qc', `DROP SCHEMA IF EXISTS "${schema}" CASCADE`], { stdio: 'ignore' });
    } catch {
      // psql missing: the schema stays.
    }
  }
});

/** One message of every part type the AI SDK has, as `useChat` holds them. */
const EVERY_PART = [
  {
    id: 'u1',
    role: 'user',
    metadata: { createdAt: 1764288000000, client: { tab: 3 } },
    parts: [
      { type: 'text', text: 'What is in this picture, and the weather in Oslo?' },
      { type: 'file', mediaType: 'image/png', url: 'data:image/png;base64,iVBORw0KGgo=', filename: 'cat.png' },
    ],
  },
  {
    id: 'a1',
    role: 'assistant',
    metadata: { model: 'mock', usage: { inputTokens: 10, outputTokens: 20 } },
    parts: [
      { type: 'step-start' },
      { type: 'reasoning', text: 'A cat; then the weather tool.', state: 'done', providerMetadata: { mock: { signature: 'sig' } } },
      {
        type: 'tool-weather',
        toolCallId: 'call-1',
        state: 'output-available',
        input: { city: 'Oslo' },
        output: { celsius: 4, sky: ['cloudy', 'rain'] },
        callProviderMetadata: { mock: { id: 7 } },
      },
      { type: 'tool-forecast', toolCallId: 'call-2', state: 'output-error', input: { days: 3 }, errorText: 'the forecast service is down' },
      { type: 'dynamic-tool', toolName: 'lookup', toolCallId: 'call-3', state: 'output-available', input: { q: 'cat' }, output: 'a cat' },
      { type: 'step-start' },
      { type: 'source-url', sourceId: 's1', url: 'https://example.com/cats', title: 'Cats' },
      { type: 'source-document', sourceId: 's2', mediaType: 'application/pdf', title: 'Weather report', filename: 'report.pdf' },
      { type: 'data-weather', id: 'w1', data: { city: 'Oslo', celsius: 4 } },
      { type: 'text', text: 'A cat. It is 4 °C in Oslo.', state: 'done' },
    ],
  },
];

const message = (id, text, role = 'user') => ({ id, role, parts: [{ type: 'text', text }] });

for (const [name, url] of STORES) {
  describe(`persist-store on ${name}`, { skip: url ? false : 'PERSIST_STORE_TESTS_POSTGRES is not set' }, () => {
    let store;
    const open = async () => (store ??= await Store.open(url));

    test('every UI part type round-trips through the store, losslessly; the SDK validates what comes back', async () => {
      await open();
      const id = `parts-${randomUUID()}`;
      await saveChat(store, id, EVERY_PART);
      const loaded = await loadChat(store, id);
      assert.deepEqual(loaded, EVERY_PART);
      await validateUIMessages({ messages: loaded });
      // Saved again with a new turn, as onFinish does: only the new messages are written.
      const next = [...loaded, message('u2', 'Thanks!'), message('a2', 'You are welcome.', 'assistant')];
      assert.deepEqual((await saveChat(store, id, next)).ids, ['u2', 'a2']);
      assert.deepEqual((await saveChat(store, id, next)).ids, [], 'saved again: nothing written');
      assert.deepEqual(await loadChat(store, id), next);
      assert.equal((await store.thread(id)).messageCount, 4);
    });

    test('bad input is refused with a typed error, and nothing is written', async () => {
      await open();
      const id = `bad-${randomUUID()}`;
      const cases = [
        ['a message without parts', () => store.appendMessages(id, [message('m1', 'ok'), { id: 'm2', role: 'user' }])],
        ['a message of no role', () => store.appendMessages(id, [message('m1', 'ok'), { id: 'm2', parts: [] }])],
        ['messages that are not an array', () => store.appendMessages(id, { id: 'm1' })],
        ['no messages', () => store.appendMessages(id, [])],
        ['an empty thread id', () => store.appendMessages('', [message('m1', 'ok')])],
        ['a value JSON cannot hold', () => store.appendMessages(id, [{ id: 'm1', role: 'user', parts: [{ type: 'text', text: 1n }] }])],
        ['a lease under a second', () => store.startReply(id, { messages: [message('m1', 'ok')], leaseMs: 10 })],
        ['a bad offset', () => store.appendReply(id, 'r1', 'the end', [{ type: 'text', text: 'x' }])],
        ['parts that are not content blocks', () => store.appendReply(id, 'r1', '0', 'text')],
        ['a limit of 0', () => store.threads({ limit: 0 })],
        ['a bad cursor', () => store.threads({ cursor: 'nope' })],
        ['a memory write of neither patch nor document', () => store.writeMemory('profile', {})],
      ];
      for (const [what, call] of cases) {
        await assert.rejects(call, (error) => {
          assert.ok(error instanceof InvalidInput, `${what}: ${error?.constructor?.name}: ${error?.message}`);
          assert.ok(error instanceof PersistError);
          assert.equal(error.code, 'invalid_input', what);
          return true;
        });
      }
      assert.deepEqual(await store.messages(id), [], 'nothing was written');
      assert.equal(await store.thread(id), null);
      await assert.rejects(() => store.updateThread(`none-${randomUUID()}`, { title: 'x' }), NotFound);
      await assert.rejects(() => Store.open('mysql://db/chat'), InvalidInput);
      await assert.rejects(() => Store.open(`sqlite:${join(folder, 'no/such/folder/x.db')}`), /does not exist/);
    });

    test('tenants are apart: one tenant never reads, lists or searches another one\'s chats', async () => {
      await open();
      const acme = store.withTenant('acme');
      const globex = store.withTenant('globex');
      assert.equal(acme.tenant, 'acme');
      const id = `tenant-${randomUUID()}`;
      await acme.appendMessages(id, [message('t1', 'the acme secret is marmalade')]);
      await acme.updateThread(id, { title: 'Secrets' });
      assert.equal((await loadChat(acme, id)).length, 1);
      assert.deepEqual(await loadChat(globex, id), []);
      assert.equal(await globex.thread(id), null);
      const listed = await listChats(acme, { limit: 100 });
      assert.ok(listed.chats.some((chat) => chat.id === id && chat.title === 'Secrets'));
      assert.ok(!(await listChats(globex, { limit: 100 })).chats.some((chat) => chat.id === id));
      assert.deepEqual(await globex.search('marmalade'), []);
      const hits = await acme.search('marmalade', { threadId: id });
      assert.deepEqual(hits.map((hit) => [hit.threadId, hit.messageId, hit.role]), [[id, 't1', 'user']]);
      assert.match(hits[0].snippet, /\*\*marmalade\*\*/);
    });

    test('live replies: one at a time per chat, offsets checked, a stop heard by the writer; typed refusals', async () => {
      await open();
      const id = `live-${randomUUID()}`;
      const started = await store.startReply(id, { messages: [message('q1', 'Count to three.')], leaseMs: 5000 });
      assert.deepEqual([started.status, started.offset, started.written, started.messageIds], ['in_progress', '0', true, ['q1']]);
      await assert.rejects(() => store.startReply(id, { messages: [message('q2', 'And again.')] }), (error) => {
        assert.ok(error instanceof ReplyRunning);
        assert.equal(error.replyId, started.id);
        return true;
      });
      assert.equal(await store.runningReply(id), started.id);
      const first = await store.appendReply(id, started.id, '0', [{ type: 'text', text: 'one, ' }]);
      assert.equal(first.offset, '0.5');
      assert.equal((await store.appendReply(id, started.id, '0', [{ type: 'text', text: 'one, ' }])).written, false, 'a repeat is written once');
      await assert.rejects(() => store.appendReply(id, started.id, '3', [{ type: 'text', text: 'x' }]), (error) => {
        assert.ok(error instanceof OffsetConflict);
        assert.equal(error.offset, '0.5');
        return true;
      });
      const follower = store.followReply(id, started.id);
      const watching = store.watchStop(id, started.id);
      assert.deepEqual(await store.stopReply(id), { stopped: true, replyId: started.id });
      assert.equal(await watching, 'stopped');
      await assert.rejects(() => store.appendReply(id, started.id, '0.5', [{ type: 'text', text: 'two' }]), ReplyStopped);
      const chunks = [];
      for await (const chunk of follower) chunks.push(chunk);
      assert.deepEqual(chunks.map((c) => c.type), ['part', 'end']);
      assert.equal(chunks[1].end, 'stopped');
      assert.equal(follower.offset, '0.5');
      const [, reply] = await store.messages(id);
      assert.deepEqual([reply.parts[0].text, reply.metadata.persist.status], ['one, ', 'interrupted']);
      assert.equal(await store.runningReply(id), null);

      // The LiveReply writer: batched deltas, finished complete.
      const writer = await store.writeReply(id, { messages: [message('q3', 'Once more.')] });
      for (const word of ['a', 'b', 'c']) writer.text(`${word} `);
      writer.toolCall('c1', 'count', { upTo: 3 });
      writer.toolResult('c1', { count: 3 });
      const done = await writer.finish();
      assert.equal(done.status, 'completed');
      const last = (await store.messages(id)).at(-1);
      assert.deepEqual(last.parts.map((part) => part.type), ['step-start', 'text', 'tool-count']);
      assert.equal(last.parts[1].text, 'a b c ');
    });

    test('working memory, the change feed, threads, and a closed store', async () => {
      await open();
      const resource = `profile-${randomUUID()}`;
      assert.equal(await store.readMemory(resource), null);
      const written = await store.writeMemory(resource, { document: { name: 'Ada' } });
      assert.deepEqual(written, { document: { name: 'Ada' }, version: 1 });
      assert.deepEqual((await store.writeMemory(resource, { patch: { city: 'Oslo' }, expectedVersion: 1 })).document, { name: 'Ada', city: 'Oslo' });
      await assert.rejects(() => store.writeMemory(resource, { patch: { city: 'Bergen' }, expectedVersion: 1 }), Conflict);

      const id = `feed-${randomUUID()}`;
      const feed = store.feed({ threadId: id });
      await store.appendMessages(id, [message('f1', 'first'), message('f2', 'second', 'assistant')]);
      const seen = [];
      for await (const change of feed) {
        seen.push(change);
        if (seen.length === 2) break;
      }
      assert.deepEqual(seen.map((c) => [c.op, c.threadId, c.messageId, c.seq]), [['add', id, 'f1', 1], ['add', id, 'f2', 2]]);
      assert.ok(seen[1].position > seen[0].position && feed.position === seen[1].position);

      assert.equal(await store.deleteThread(id), true);
      assert.deepEqual(await store.messages(id), []);
      assert.match(version, /^\d+\.\d+\.\d+/);
      await store.close();
      await assert.rejects(() => store.messages(id), (error) => error instanceof PersistError && /closed/.test(error.message));
      store = undefined;
    });
  });
}

// The writer over a transport whose append is answered only when the test says: a stop heard
// while an append is being answered (the append committed just before the stop) is the newer
// news, and the writer ends stopped. The append's answer once overwrote it (`end` null).
test('a stop heard while an append is answered leaves the writer stopped', async () => {
  let heard;
  let answer;
  const transport = {
    append: (offset, parts) =>
      new Promise((resolve) => {
        answer = () => resolve({ offset: offset + parts.length, status: 'in_progress', end: null });
      }),
    renew: async () => ({ status: 'in_progress', end: null }),
    finish: async () => {
      throw new Error('a stopped reply is not finished');
    },
    watchStop(listener) {
      heard = listener;
      return () => {};
    },
    transient: () => false,
    ended: () => null,
  };
  const reply = new LiveReply(transport, { id: 'r1', offset: 0, status: 'in_progress', end: null }, { leaseMs: 60_000 });
  reply.text('one ');
  while (answer === undefined) await new Promise((resolve) => setTimeout(resolve, 1));
  heard('stopped', 'watch');
  answer();
  const state = await reply.interrupt('aborted');
  assert.equal(state.end, 'stopped');
  assert.equal(reply.stopped, true);
});
