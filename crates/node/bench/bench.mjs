// One AI SDK chat turn, persist-store in process against the AI SDK docs' pattern, side by side in
// one run. A turn is what a chat route does for one user message: load the chat, stream a
// 200-delta reply to the client, save it.
//
//   persist-store (SQLite file, PostgreSQL): `loadChat`, then `chatResponse` (the user's message
//     and the reply's reservation in one write, the reply written live as the model streams it,
//     the client's stream read back from the store: durable and resumable on any process), the
//     client reading the response to its end. Nothing to save after: the reply is stored.
//   the docs' pattern (pg, better-sqlite3): the chat's messages read from a JSON column, the
//     model's SSE stream teed to the client and to `resumable-stream`'s
//     `createNewResumableStream` (Redis pub/sub: resumable while it runs, kept nowhere durable),
//     the active stream id set on the chat and cleared, and `onFinish` saving the whole message
//     array back.
//
// Both are given the same model: 200 text deltas of the UI message stream, as fast as they are
// read. Each is run with one caller (turns in a row on one chat) and with 32 callers (a chat each,
// at once); the figure is turns per second.
//
//   node bench.mjs [--quick] [--write]   (--write: rewrites bench.md beside it)
//
// Env: PERSIST_POSTGRES_URL (default postgres://postgres@127.0.0.1:5432/test; fresh schemas,
// dropped), REDIS_URL (default redis://127.0.0.1:6379). persist-store must be installed here
// (run.sh installs it from its tarballs).
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import os from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

import pg from 'pg';
import { createClient } from 'redis';
import { createResumableStreamContext } from 'resumable-stream';
import { Store } from 'persist-store';
import { chatResponse, loadChat } from 'persist-store/ai-sdk';

const require = createRequire(import.meta.url);
const Database = require('better-sqlite3');
const here = dirname(fileURLToPath(import.meta.url));
const args = process.argv.slice(2);
const quick = args.includes('--quick');
const PG_URL = process.env.PERSIST_POSTGRES_URL ?? 'postgres://postgres@127.0.0.1:5432/test';
const REDIS_URL = process.env.REDIS_URL ?? 'redis://127.0.0.1:6379';
const DELTAS = 200;
const TURNS_ONE = quick ? 5 : 40;
const CALLERS = 32;
const TURNS_EACH = quick ? 1 : 4;
const run = `${process.pid}_${Date.now()}`;

// ---------------------------------------------------------------------------------------------
// The model: the UI message stream of a 200-delta reply.

function* modelChunks(messageId) {
  yield { type: 'start', messageId };
  yield { type: 'start-step' };
  yield { type: 'text-start', id: 't' };
  for (let i = 0; i < DELTAS; i++) yield { type: 'text-delta', id: 't', delta: i === 0 ? 'token0' : ` token${i}` };
  yield { type: 'text-end', id: 't' };
  yield { type: 'finish-step' };
  yield { type: 'finish', finishReason: 'stop' };
}

const replyText = Array.from({ length: DELTAS }, (_, i) => `token${i}`).join(' ');
const userMessage = (chat, turn) => ({ id: `${chat}-u${turn}`, role: 'user', parts: [{ type: 'text', text: `Question ${turn}?` }] });

/** Reads a response body to its end; answers the bytes read. */
async function drain(body) {
  let bytes = 0;
  for await (const chunk of body) bytes += chunk.length;
  return bytes;
}

// ---------------------------------------------------------------------------------------------
// persist-store

async function persistSystem(name, url) {
  const store = await Store.open(url);
  return {
    name,
    async turn(chat, turn) {
      const messages = await loadChat(store, chat);
      if (messages.length !== 2 * turn) throw new Error(`${name}: ${chat} holds ${messages.length} messages before turn ${turn}`);
      const response = await chatResponse(store, chat, {
        message: userMessage(chat, turn),
        generate: async () => modelChunks(),
      });
      await drain(response.body);
      await response.written;
    },
    async check(chat, turns) {
      const messages = await loadChat(store, chat);
      if (messages.length !== 2 * turns || messages.at(-1).parts.at(-1).text !== replyText) {
        throw new Error(`${name}: ${chat} ended with ${messages.length} messages`);
      }
    },
    close: () => store.close(),
  };
}

// ---------------------------------------------------------------------------------------------
// The docs' pattern: resumable-stream on Redis, the whole array saved in onFinish.

function sse(chunks) {
  const encoder = new TextEncoder();
  const iterator = chunks[Symbol.iterator]();
  return new ReadableStream({
    pull(controller) {
      const next = iterator.next();
      if (next.done) {
        controller.enqueue(encoder.encode('data: [DONE]\n\n'));
        controller.close();
      } else {
        controller.enqueue(encoder.encode(`data: ${JSON.stringify(next.value)}\n\n`));
      }
    },
  });
}

async function docsPattern(name, db) {
  const publisher = createClient({ url: REDIS_URL });
  const subscriber = createClient({ url: REDIS_URL });
  await Promise.all([publisher.connect(), subscriber.connect()]);
  const context = createResumableStreamContext({ waitUntil: null, publisher, subscriber, keyPrefix: `bench-${run}` });
  return {
    name,
    async turn(chat, turn) {
      const messages = await db.load(chat);
      if (messages.length !== 2 * turn) throw new Error(`${name}: ${chat} holds ${messages.length} messages before turn ${turn}`);
      const user = userMessage(chat, turn);
      const replyId = `${chat}-a${turn}`;
      const streamId = `${chat}-s${turn}`;
      await db.setActive(chat, streamId);
      // toUIMessageStreamResponse({ consumeSseStream }): the client's copy and resumable-stream's.
      const [client, resumable] = sse(modelChunks(replyId)).tee();
      const published = context.createNewResumableStream(streamId, () => resumable.pipeThrough(new TextDecoderStream()));
      await Promise.all([drain(client), published.then((stream) => stream && drain(stream))]);
      // onFinish: the whole array, with the reply.
      const reply = { id: replyId, role: 'assistant', parts: [{ type: 'step-start' }, { type: 'text', text: replyText, state: 'done' }] };
      await db.save(chat, [...messages, user, reply]);
    },
    async check(chat, turns) {
      const messages = await db.load(chat);
      if (messages.length !== 2 * turns || messages.at(-1).parts.at(-1).text !== replyText) {
        throw new Error(`${name}: ${chat} ended with ${messages.length} messages`);
      }
    },
    async close() {
      await db.close();
      await Promise.all([publisher.quit(), subscriber.quit()]);
    },
  };
}

async function pgChats() {
  const schema = `node_bench_docs_${run}`;
  const pool = new pg.Pool({ connectionString: PG_URL, max: CALLERS });
  await pool.query(`CREATE SCHEMA "${schema}"`);
  await pool.query(`CREATE TABLE "${schema}".chats (id text PRIMARY KEY, messages jsonb NOT NULL, active_stream_id text)`);
  const table = `"${schema}".chats`;
  return {
    async load(id) {
      const { rows } = await pool.query(`SELECT messages FROM ${table} WHERE id = $1`, [id]);
      return rows[0]?.messages ?? [];
    },
    async setActive(id, stream) {
      await pool.query(`INSERT INTO ${table} (id, messages, active_stream_id) VALUES ($1, '[]', $2) ON CONFLICT (id) DO UPDATE SET active_stream_id = $2`, [id, stream]);
    },
    async save(id, messages) {
      await pool.query(`UPDATE ${table} SET messages = $2, active_stream_id = NULL WHERE id = $1`, [id, JSON.stringify(messages)]);
    },
    async close() {
      await pool.query(`DROP SCHEMA "${schema}" CASCADE`);
      await pool.end();
    },
  };
}

function sqliteChats(file) {
  const db = new Database(file);
  // As persist's file: WAL, synchronous NORMAL.
  db.pragma('journal_mode = WAL');
  db.pragma('synchronous = NORMAL');
  db.pragma('busy_timeout = 30000');
  db.exec('CREATE TABLE chats (id TEXT PRIMARY KEY, messages TEXT NOT NULL, active_stream_id TEXT)');
  const load = db.prepare('SELECT messages FROM chats WHERE id = ?');
  const active = db.prepare(
    "INSERT INTO chats (id, messages, active_stream_id) VALUES (?, '[]', ?) ON CONFLICT (id) DO UPDATE SET active_stream_id = excluded.active_stream_id",
  );
  const save = db.prepare('UPDATE chats SET messages = ?, active_stream_id = NULL WHERE id = ?');
  return {
    load: async (id) => JSON.parse(load.get(id)?.messages ?? '[]'),
    setActive: async (id, stream) => void active.run(id, stream),
    save: async (id, messages) => void save.run(JSON.stringify(messages), id),
    close: async () => db.close(),
  };
}

// ---------------------------------------------------------------------------------------------
// The run.

async function measure(system, callers, turnsEach) {
  const chats = Array.from({ length: callers }, (_, i) => `c${callers}-${i}-${run}`);
  const started = performance.now();
  await Promise.all(
    chats.map(async (chat) => {
      for (let turn = 0; turn < turnsEach; turn++) await system.turn(chat, turn);
    }),
  );
  const seconds = (performance.now() - started) / 1000;
  for (const chat of chats) await system.check(chat, turnsEach);
  return (callers * turnsEach) / seconds;
}

async function main() {
  const folder = mkdtempSync(join(os.tmpdir(), 'persist-store-bench-'));
  const persistPg = `${PG_URL}${PG_URL.includes('?') ? '&' : '?'}schema=node_bench_persist_${run}`;
  const pairs = [
    ['SQLite', () => persistSystem('persist-store, SQLite file', `sqlite:${join(folder, 'persist.db')}`), () => docsPattern('docs: better-sqlite3 + resumable-stream/Redis', sqliteChats(join(folder, 'docs.db')))],
    ['PostgreSQL', () => persistSystem('persist-store, PostgreSQL', persistPg), async () => docsPattern('docs: pg + resumable-stream/Redis', await pgChats())],
  ];
  const rows = [];
  try {
    for (const [store, makePersist, makeDocs] of pairs) {
      const persist = await makePersist();
      const docs = await makeDocs();
      for (const [callers, turns] of [[1, TURNS_ONE], [CALLERS, TURNS_EACH]]) {
        // Alternated, so that neither has the machine's quieter moment.
        const docsRate = await measure(docs, callers, turns);
        const persistRate = await measure(persist, callers, turns);
        rows.push({ store, callers, persist: persistRate, docs: docsRate, ratio: persistRate / docsRate });
        console.log(`${store}, ${callers} caller(s): persist-store ${persistRate.toFixed(1)} turns/s, docs' pattern ${docsRate.toFixed(1)} turns/s: ${(persistRate / docsRate).toFixed(2)}×`);
      }
      await persist.close();
      await docs.close();
    }
  } finally {
    rmSync(folder, { recursive: true, force: true });
    try {
      const client = new pg.Client({ connectionString: PG_URL });
      await client.connect();
      await client.query(`DROP SCHEMA IF EXISTS "node_bench_persist_${run}" CASCADE`);
      await client.end();
    } catch {
      // Left for the next run's cleanup: its name says which run made it.
    }
  }
  if (args.includes('--write')) {
    const addon = createRequire(require.resolve('persist-store')).resolve('./package.json');
    const lines = [
      '# persist-store against the AI SDK docs\' pattern',
      '',
      'Written by `bash run.sh --write` (bench.mjs; its header says what each side does). A turn:',
      `load the chat, stream a ${DELTAS}-delta reply to the client, save it. persist-store writes the`,
      'user\'s message with the reply\'s reservation and the reply as it streams (durable, resumable',
      'on any process, stoppable from any); the docs\' pattern keeps the stream in Redis while it',
      'runs (nothing durable until `onFinish` saves the whole array). Both SQLite files in WAL with',
      '`synchronous=NORMAL`; PostgreSQL 15 with its defaults (each commit flushed).',
      '',
      `${new Date().toISOString().slice(0, 10)}, ${os.cpus()[0].model}, ${os.cpus().length} cores, Node ${process.version}, the addon a release build from ${addon.includes('node_modules') ? 'its tarball' : addon}. Target: persist-store ≥ 2× the docs' pattern's turns per second, with one caller and with ${CALLERS}.`,
      '',
      '| store | callers | persist-store, turns/s | docs\' pattern, turns/s | ratio | target ≥ 2 |',
      '|---|---|---|---|---|---|',
      ...rows.map((r) => `| ${r.store} | ${r.callers} | ${r.persist.toFixed(1)} | ${r.docs.toFixed(1)} | ${r.ratio.toFixed(2)}× | ${r.ratio >= 2 ? 'met' : '**missed**'} |`),
      '',
    ];
    writeFileSync(join(here, 'bench.md'), lines.join('\n'));
  }
}

await main();
