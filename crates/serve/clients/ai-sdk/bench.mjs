// Live replies, persist serve against resumable-stream on Redis (the AI SDK's documented way to
// resume a stream), side by side in one run: a 500-delta reply followed by 1, 10 and 100
// followers on another instance. Measured: delivery latency from a delta's append to each
// follower (p50/p99 over every (delta, follower) pair), and the writer's cost per delta.
//
//   node bench.mjs [--quick] [--no-write] [PERSIST_BINARY]
//
//   --quick     100 deltas, 1 and 10 followers (a CI smoke run); bench.md is not rewritten.
//   --no-write  print the tables only.
//   PERSIST_BINARY (or $PERSIST_BIN): default target/release/persist, else target/debug/persist.
//
// Needs PostgreSQL (PGHOST/PGPORT/PGUSER/PGDATABASE, default 127.0.0.1:5432 postgres/test,
// trust; psql for dropping the schema), Redis ($REDIS_URL, default redis://127.0.0.1:6379)
// and npm: `resumable-stream` and `redis` are installed on first use into
// target/ai-sdk-bench-deps (or $BENCH_DEPS_DIR), pinned, apart from this app's package.json.
//
// The set-ups (every process on this machine):
//   persist/PG:     writer (this process, fetch) → persist serve A → PostgreSQL → persist serve B
//                   → followers (SSE `…/items/{reply}/ui-stream`, in follower processes)
//   persist/SQLite: the same, A and B on one SQLite file
//   resumable-stream/Redis: writer (this process: `createResumableStreamContext` +
//                   `resumableStream(id, makeStream)`, its own Redis clients) → Redis pub/sub →
//                   instance B (a Node process: the AI SDK's GET route, `resumeExistingStream(id)`
//                   answered as SSE) → followers (the same follower processes)
// Both carry the same AI SDK UI message stream (start, text-start, text-delta ×N, text-end,
// finish, [DONE]) and the followers parse it with the same code. Times are CLOCK_MONOTONIC
// (process.hrtime), shared by every process on the machine.

import { fork, spawn, execFileSync } from 'node:child_process';
import { createRequire } from 'node:module';
import { existsSync, mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import http from 'node:http';
import os from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { setImmediate as yieldTurn } from 'node:timers/promises';

const here = dirname(fileURLToPath(import.meta.url));
const repo = resolve(here, '../../../..');
const now = () => Number(process.hrtime.bigint()) / 1e6; // ms, CLOCK_MONOTONIC
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const KEY = 'sk-bench-0123456789abcdef';
const FOLLOWER_PROCESSES = 2;


// ---------------------------------------------------------------------------------------------
// Follower processes: hold SSE connections, parse the UI message stream, record arrival times.

function followerRole() {
  process.on('message', (msg) => {
    if (msg.cmd === 'follow') {
      follow(msg).catch((error) => process.send({ type: 'error', run: msg.run, error: String(error?.stack ?? error) }));
    } else if (msg.cmd === 'exit') process.exit(0);
  });
  process.send({ type: 'up' });
}

async function follow({ run, url, headers, count, timeoutMs }) {
  let ready = 0;
  const onReady = () => {
    ready += 1;
    if (ready === count) process.send({ type: 'ready', run });
  };
  const results = await Promise.all(Array.from({ length: count }, () => followOne(url, headers, onReady, timeoutMs)));
  process.send({ type: 'done', run, results });
}

/** One follower: every text-delta's arrival time and the text's length after it. */
async function followOne(url, headers, onReady, timeoutMs) {
  const response = await fetch(url, { headers, signal: AbortSignal.timeout(timeoutMs) });
  if (response.status !== 200) throw new Error(`GET ${url}: ${response.status} ${await response.text()}`);
  const decoder = new TextDecoder();
  const lens = [];
  const times = [];
  let buffer = '';
  let text = '';
  let end = null;
  let started = false;
  let done = false;
  for await (const bytes of response.body) {
    const t = now();
    buffer += decoder.decode(bytes, { stream: true });
    let cut;
    while ((cut = buffer.indexOf('\n\n')) >= 0) {
      const frame = buffer.slice(0, cut);
      buffer = buffer.slice(cut + 2);
      for (const line of frame.split('\n')) {
        if (!line.startsWith('data:')) continue;
        const data = line.slice(5).trimStart();
        if (data === '[DONE]') {
          done = true;
          continue;
        }
        const chunk = JSON.parse(data);
        if (chunk.type === 'start' && !started) {
          started = true;
          onReady();
        } else if (chunk.type === 'text-delta') {
          text += chunk.delta;
          lens.push(text.length);
          times.push(t);
        } else if (chunk.type === 'finish' || chunk.type === 'abort' || chunk.type === 'error') end = chunk.type;
      }
    }
    if (done) break;
  }
  return { lens, times, text, end, done };
}

// ---------------------------------------------------------------------------------------------
// resumable-stream's instance B: the AI SDK's documented resume route on its own context.

async function rsInstanceRole() {
  const { createResumableStreamContext, createClient } = await loadRedisDeps();
  const url = process.env.REDIS_URL ?? 'redis://127.0.0.1:6379';
  const publisher = createClient({ url });
  const subscriber = createClient({ url });
  await Promise.all([publisher.connect(), subscriber.connect()]);
  const ctx = createResumableStreamContext({
    waitUntil: null,
    publisher,
    subscriber,
    keyPrefix: process.env.BENCH_RS_PREFIX,
  });
  const headers = {
    'content-type': 'text/event-stream',
    'cache-control': 'no-cache',
    connection: 'keep-alive',
    'x-vercel-ai-ui-message-stream': 'v1',
    'x-accel-buffering': 'no',
  };
  const server = http.createServer(async (req, res) => {
    const match = /^\/api\/chat\/([^/]+)\/stream$/.exec(req.url ?? '');
    if (!match) return void res.writeHead(404).end();
    try {
      const stream = await ctx.resumeExistingStream(decodeURIComponent(match[1]));
      if (!stream) return void res.writeHead(204).end();
      res.writeHead(200, headers);
      for await (const chunk of stream) res.write(chunk);
      res.end();
    } catch (error) {
      if (!res.headersSent) res.writeHead(500).end(String(error));
      else res.destroy(error);
    }
  });
  server.listen(0, '127.0.0.1', () => process.send({ type: 'listening', port: server.address().port }));
  process.on('message', (msg) => {
    if (msg.cmd === 'exit') process.exit(0);
  });
}

/** `resumable-stream` 2.2.13 and `redis` 6.3.1: from this app's node_modules, else installed once into a cache. */
async function loadRedisDeps() {
  const dir = resolve(process.env.BENCH_DEPS_DIR ?? join(repo, 'target/ai-sdk-bench-deps'));
  let require = createRequire(import.meta.url);
  try {
    require.resolve('resumable-stream');
    require.resolve('redis');
  } catch {
    require = createRequire(join(dir, 'package.json'));
    const has = (name) => existsSync(join(dir, 'node_modules', name, 'package.json'));
    if (!has('resumable-stream') || !has('redis')) {
      mkdirSync(dir, { recursive: true });
      if (!existsSync(join(dir, 'package.json'))) writeFileSync(join(dir, 'package.json'), '{"private":true}\n');
      process.stderr.write(`bench: installing resumable-stream@2.2.13 redis@6.3.1 into ${dir}\n`);
      execFileSync('npm', ['install', '--no-audit', '--no-fund', '--prefix', dir, 'resumable-stream@2.2.13', 'redis@6.3.1'], {
        stdio: ['ignore', 'ignore', 'inherit'],
      });
    }
  }
  const rs = await import(pathToFileURL(require.resolve('resumable-stream')).href);
  const redis = await import(pathToFileURL(require.resolve('redis')).href);
  const main = require.resolve('resumable-stream');
  const pkg = join(main.slice(0, main.lastIndexOf('resumable-stream') + 'resumable-stream'.length), 'package.json');
  const rsVersion = JSON.parse(readFileSync(pkg, 'utf8')).version;
  return {
    createResumableStreamContext: rs.createResumableStreamContext ?? rs.default?.createResumableStreamContext,
    createClient: redis.createClient ?? redis.default?.createClient,
    rsVersion,
  };
}

// ---------------------------------------------------------------------------------------------
// The run.

async function main() {
  const args = process.argv.slice(2);
  const quick = args.includes('--quick');
  const write = !args.includes('--no-write') && (!quick || args.includes('--write'));
  const positional = args.filter((a) => !a.startsWith('--'));
  const bin = resolve(
    positional[0] ??
      process.env.PERSIST_BIN ??
      [join(repo, 'target/release/persist'), join(repo, 'target/debug/persist')].find((p) => existsSync(p)) ??
      'persist',
  );
  if (!existsSync(bin)) fail(`no persist binary at ${bin} (pass it, or set PERSIST_BIN)`);
  const DELTAS = quick ? 100 : 500;
  const FOLLOWERS = quick ? [1, 10] : [1, 10, 100];
  const PACE_MS = 2;
  const started = now();

  const { PersistClient, LiveReply } = await import('./persist-writer.mjs');
  const deps = await loadRedisDeps();

  const pg = {
    host: process.env.PGHOST ?? '127.0.0.1',
    port: process.env.PGPORT ?? '5432',
    user: process.env.PGUSER ?? 'postgres',
    db: process.env.PGDATABASE ?? 'test',
  };
  const schema = `bench_live_${process.pid}`;
  const pgUrl = `postgres://${pg.user}@${pg.host}:${pg.port}/${pg.db}?schema=${schema}`;
  const sqliteFile = join(os.tmpdir(), `persist-bench-${process.pid}.db`);
  const redisUrl = process.env.REDIS_URL ?? 'redis://127.0.0.1:6379';
  const rsPrefix = `persist-bench-${process.pid}`;

  // Everything started here is stopped here, however the run ends.
  const children = new Set();
  let cleaned = false;
  const cleanup = () => {
    if (cleaned) return;
    cleaned = true;
    for (const child of children) child.kill('SIGTERM');
    try {
      psql(pg, `DROP SCHEMA IF EXISTS "${schema}" CASCADE`);
    } catch {}
    for (const suffix of ['', '-wal', '-shm']) rmSync(sqliteFile + suffix, { force: true });
  };
  process.on('exit', cleanup);
  for (const signal of ['SIGINT', 'SIGTERM']) process.on(signal, () => process.exit(130));

  const workers = await FollowerPool.start(FOLLOWER_PROCESSES, children);
  const deltas = makeDeltas(DELTAS);
  const expected = deltas.join('');
  const cum = [];
  deltas.reduce((n, d) => (cum.push(n + d.length), n + d.length), 0);
  const machine = machineFacts(bin, pg, deps.rsVersion);
  log(`bench: ${DELTAS} deltas (${Math.min(...deltas.map((d) => d.length))}-${Math.max(...deltas.map((d) => d.length))} chars), followers ${FOLLOWERS.join('/')}, ${machine.cores} cores, ${bin}`);

  /** One measured run: followers connected, the writer writes, every follower reads it all. */
  let runNo = 0;
  async function measure(system, prepare, n, pace, count = DELTAS) {
    runNo += 1;
    const prep = await prepare(`bench-${process.pid}-${runNo}`);
    const job = workers.follow(runNo, prep.url, prep.headers, n);
    await withTimeout(job.ready, 30_000, `${system}: followers not connected`);
    const cpu0 = process.cpuUsage();
    const w = await prep.write(deltas.slice(0, count), pace);
    const cpu = process.cpuUsage(cpu0);
    const results = await withTimeout(job.done, 120_000, `${system}: followers did not finish`);
    const want = deltas.slice(0, count).join('');
    const lat = [];
    const afterAck = [];
    let lastArrival = 0;
    for (const r of results) {
      if (r.text !== want || r.end !== 'finish' || !r.done) {
        throw new Error(`${system}: a follower got ${r.text.length}/${want.length} chars, end ${r.end}${r.done ? ', [DONE]' : ''}`);
      }
      let k = 0;
      for (let i = 0; i < count; i++) {
        while (r.lens[k] < cum[i]) k += 1;
        lat.push(r.times[k] - w.sent[i]);
        if (w.acked) afterAck.push(r.times[k] - w.acked[i]);
      }
      lastArrival = Math.max(lastArrival, r.times.at(-1));
    }
    lat.sort((a, b) => a - b);
    afterAck.sort((a, b) => a - b);
    const first = w.sent[0];
    return {
      system,
      n,
      pace,
      count,
      p50: pct(lat, 0.5),
      p99: pct(lat, 0.99),
      max: lat.at(-1),
      writerMsPerDelta: (w.end - first) / count,
      writerCpuUsPerDelta: (cpu.user + cpu.system) / count,
      totalMs: Math.max(lastArrival, w.end) - first,
      requests: w.requests,
      appendMs: w.appendMs,
      afterAck: afterAck.length ? { p50: pct(afterAck, 0.5), p99: pct(afterAck, 0.99) } : undefined,
      metrics: prep.metrics ? await prep.metrics() : undefined,
    };
  }

  const results = [];
  const record = (r) => {
    results.push(r);
    log(
      `  ${r.system.padEnd(26)} ${r.pace ? `paced ${r.pace}ms` : 'burst     '} N=${String(r.n).padEnd(3)} p50 ${fmt(r.p50)} p99 ${fmt(r.p99)} max ${fmt(r.max)} ms | writer ${fmt(r.writerMsPerDelta, 3)} ms/delta, cpu ${fmt(r.writerCpuUsPerDelta, 0)} µs/delta${r.requests ? `, ${r.requests} appends` : ''}${r.appendMs ? `, ${fmt(r.appendMs.mean, 3)} ms/append` : ''} | total ${fmt(r.totalMs, 0)} ms`,
    );
  };
  const regimes = [PACE_MS, 0];

  // --- persist: two instances on one store, each store in turn ------------------------------
  const breakdown = {};
  for (const store of [
    { name: 'PG', url: pgUrl },
    { name: 'SQLite', url: `sqlite:${sqliteFile}` },
  ]) {
    const a = await startPersist(bin, store.url, children);
    const b = await startPersist(bin, store.url, children);
    const countRequests = { parts: 0 };
    const client = new PersistClient({
      baseUrl: a.url,
      apiKey: KEY,
      fetch: (url, init) => {
        if (String(url).endsWith('/parts')) countRequests.parts += 1;
        return fetch(url, init);
      },
    });
    const followHeaders = { authorization: `Bearer ${KEY}`, accept: 'text/event-stream' };
    const user = [{ type: 'message', role: 'user', content: 'Tell me a long story.' }];
    const metricsOf = async () => ({ a: await scrape(a.metricsUrl), b: await scrape(b.metricsUrl) });

    /** (a) one append request per delta, each awaited. */
    const perAppend = async (conv) => {
      await client.ensureConversation(conv);
      const reply = await client.request('POST', `/v1/persist/conversations/${conv}/replies`, { body: { items: user } });
      const path = `/v1/persist/conversations/${conv}/replies/${reply.id}`;
      const before = await metricsOf();
      return {
        url: `${b.url}/v1/persist/conversations/${conv}/items/${reply.id}/ui-stream`,
        headers: followHeaders,
        write: async (ds, pace) => {
          const sent = new Array(ds.length);
          const acked = new Array(ds.length);
          const took = [];
          let offset = reply.offset;
          await drive(ds.length, pace, async (i) => {
            const t = (sent[i] = now());
            const state = await client.request('POST', `${path}/parts`, { body: { offset, parts: [{ type: 'text', text: ds[i] }] } });
            acked[i] = now();
            took.push(acked[i] - t);
            offset = state.offset;
          });
          const appendsEnd = now();
          await client.request('POST', `${path}/finish`, { body: { status: 'completed' } });
          took.sort((x, y) => x - y);
          return {
            sent,
            acked,
            end: appendsEnd,
            requests: ds.length,
            appendMs: { mean: took.reduce((s, x) => s + x, 0) / took.length, p50: pct(took, 0.5), p99: pct(took, 0.99) },
          };
        },
        metrics: async () => diffMetrics(before, await metricsOf()),
      };
    };

    /** (b) persist-writer.mjs's LiveReply: one append in flight, deltas batched meanwhile. */
    const batched = async (conv) => {
      await client.ensureConversation(conv);
      const reply = await LiveReply.start(client, conv, { items: user });
      const before = await metricsOf();
      return {
        url: `${b.url}/v1/persist/conversations/${conv}/items/${reply.id}/ui-stream`,
        headers: followHeaders,
        write: async (ds, pace) => {
          const sent = new Array(ds.length);
          countRequests.parts = 0;
          await drive(ds.length, pace, (i) => {
            sent[i] = now();
            reply.text(ds[i]);
          });
          await reply.finish(); // the last batch goes with the finish
          return { sent, end: now(), requests: countRequests.parts + 1 };
        },
        metrics: async () => diffMetrics(before, await metricsOf()),
      };
    };

    const rows = store.name === 'PG' ? [['per-append', perAppend], ['batched', batched]] : [['batched', batched]];
    log(`persist/${store.name}: A ${a.url}, B ${b.url}`);
    for (const [, prepare] of rows) await measure('warm-up', prepare, 1, 0, 50); // connections, caches, JIT
    for (const [mode, prepare] of rows) {
      for (const pace of regimes) {
        for (const n of FOLLOWERS) {
          const r = await measure(`persist/${store.name} ${mode}`, prepare, n, pace);
          record(r);
        }
      }
    }
    if (store.name === 'PG') breakdown.health = await healthRoundTrip(a.url);
    await a.stop();
    await b.stop();
    children.delete(a.child);
    children.delete(b.child);
  }
  try {
    psql(pg, `DROP SCHEMA IF EXISTS "${schema}" CASCADE`);
  } catch (error) {
    log(`bench: could not drop schema ${schema}: ${error.message}`);
  }

  // --- resumable-stream on Redis ---------------------------------------------------------------
  {
    const publisher = deps.createClient({ url: redisUrl });
    const subscriber = deps.createClient({ url: redisUrl });
    await Promise.all([publisher.connect(), subscriber.connect()]);
    machine.redis = (await publisher.info('server')).match(/redis_version:(\S+)/)?.[1];
    let finished = null; // the producer's waitUntil promise: DONE set and told to every listener
    const ctx = deps.createResumableStreamContext({
      waitUntil: (p) => void (finished = p),
      publisher,
      subscriber,
      keyPrefix: rsPrefix,
    });
    const instanceB = fork(fileURLToPath(import.meta.url), ['--role=rs-instance'], {
      env: { ...process.env, REDIS_URL: redisUrl, BENCH_RS_PREFIX: rsPrefix },
      stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
    });
    children.add(instanceB);
    const port = await new Promise((ok, ko) => {
      instanceB.on('message', (m) => m.type === 'listening' && ok(m.port));
      instanceB.on('exit', (code) => ko(new Error(`resumable-stream instance B exited (${code})`)));
    });
    const sse = (chunk) => `data: ${JSON.stringify(chunk)}\n\n`;
    const resumable = async (id) => {
      let controller;
      const makeStream = () => new ReadableStream({ start: (c) => void (controller = c) });
      const local = await ctx.resumableStream(id, makeStream); // INCR sentinel → 1: this is the producer
      if (!local) throw new Error('resumableStream answered null');
      controller.enqueue(sse({ type: 'start', messageId: `msg-${id}` }));
      controller.enqueue(sse({ type: 'text-start', id: 'text-0' }));
      const drained = (async () => {
        for await (const _ of local); // the POST's own client, in the AI SDK's pattern
      })();
      return {
        url: `http://127.0.0.1:${port}/api/chat/${encodeURIComponent(id)}/stream`,
        headers: { accept: 'text/event-stream' },
        write: async (ds, pace) => {
          const sent = new Array(ds.length);
          await drive(ds.length, pace, (i) => {
            sent[i] = now();
            controller.enqueue(sse({ type: 'text-delta', id: 'text-0', delta: ds[i] }));
          });
          controller.enqueue(sse({ type: 'text-end', id: 'text-0' }));
          controller.enqueue(sse({ type: 'finish', finishReason: 'stop' }));
          controller.enqueue('data: [DONE]\n\n');
          controller.close();
          await drained;
          await finished; // every chunk published to every listener, DONE set and published
          return { sent, end: now() };
        },
      };
    };
    log(`resumable-stream ${deps.rsVersion}/Redis ${machine.redis}: instance B on port ${port}`);
    await measure('warm-up', resumable, 1, 0, 50);
    for (const pace of regimes) {
      for (const n of FOLLOWERS) record(await measure('resumable-stream/Redis', resumable, n, pace));
    }
    instanceB.send({ cmd: 'exit' });
    children.delete(instanceB);
    for await (const key of publisher.scanIterator({ MATCH: `${rsPrefix}:*`, COUNT: 1000 })) {
      const keys = Array.isArray(key) ? key : [key];
      if (keys.length) await publisher.del(keys);
    }
    await Promise.allSettled([publisher.quit(), subscriber.quit()]);
  }
  workers.stop();

  const elapsed = (now() - started) / 1000;
  const report = renderReport({ results, breakdown, machine, DELTAS, FOLLOWERS, PACE_MS, elapsed, quick });
  process.stdout.write(`\n${report.tables}\n${report.reading}\n`);
  log(`bench: done in ${elapsed.toFixed(1)} s`);
  if (write) {
    const file = join(here, 'bench.md');
    writeBenchMd(file, report);
    log(`bench: wrote ${file}`);
  }
  cleanup();
  process.exit(0);
}

// ---------------------------------------------------------------------------------------------
// Helpers of the run.

/** Calls `fn(i)` for each delta: every `pace` ms on a fixed schedule, or (0) one per event-loop turn. */
async function drive(count, pace, fn) {
  const t0 = now();
  for (let i = 0; i < count; i++) {
    if (pace > 0) {
      let wait;
      while ((wait = t0 + i * pace - now()) >= 1) await sleep(Math.floor(wait));
    } else await yieldTurn();
    await fn(i);
  }
}

/** Deltas of 4 to 8 characters (a word and its space), the same every run. */
function makeDeltas(count) {
  let seed = 0x2545f491;
  const rand = () => {
    seed = (seed + 0x6d2b79f5) | 0;
    let t = Math.imul(seed ^ (seed >>> 15), 1 | seed);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
  const letters = 'etaoinshrdlucmfwypvbgk';
  return Array.from({ length: count }, () => {
    const len = 4 + Math.floor(rand() * 5);
    let word = '';
    for (let k = 1; k < len; k++) word += letters[Math.floor(rand() * letters.length)];
    return `${word} `;
  });
}

class FollowerPool {
  static async start(size, children) {
    const pool = new FollowerPool();
    pool.procs = [];
    pool.jobs = new Map();
    for (let k = 0; k < size; k++) {
      const child = fork(fileURLToPath(import.meta.url), ['--role=follower'], { stdio: ['ignore', 'inherit', 'inherit', 'ipc'] });
      children.add(child);
      pool.procs.push(child);
      child.on('message', (m) => pool.#onMessage(m));
      await new Promise((ok) => child.once('message', ok));
    }
    return pool;
  }

  #onMessage(m) {
    const job = this.jobs.get(m.run);
    if (!job) return;
    if (m.type === 'error') job.fail(new Error(m.error));
    else if (m.type === 'ready' && --job.waitingReady === 0) job.readyOk();
    else if (m.type === 'done') {
      job.results.push(...m.results);
      if (--job.waitingDone === 0) {
        this.jobs.delete(m.run);
        job.doneOk(job.results);
      }
    }
  }

  /** `n` followers of `url`, spread over the processes. */
  follow(run, url, headers, n) {
    const counts = this.procs.map((_, k) => Math.floor(n / this.procs.length) + (k < n % this.procs.length ? 1 : 0));
    const job = { results: [], waitingReady: 0, waitingDone: 0 };
    job.ready = new Promise((ok, ko) => ((job.readyOk = ok), (job.readyKo = ko)));
    job.done = new Promise((ok, ko) => ((job.doneOk = ok), (job.doneKo = ko)));
    job.ready.catch(() => {});
    job.done.catch(() => {});
    job.fail = (error) => {
      job.readyKo(error);
      job.doneKo(error);
    };
    this.jobs.set(run, job);
    counts.forEach((count, k) => {
      if (count === 0) return;
      job.waitingReady += 1;
      job.waitingDone += 1;
      this.procs[k].send({ cmd: 'follow', run, url, headers, count, timeoutMs: 180_000 });
    });
    return job;
  }

  stop() {
    for (const child of this.procs) child.send({ cmd: 'exit' });
  }
}

// `persist serve` binds port 0 for both listeners and prints the addresses it got: a port picked
// here and handed on could be taken by another process (the Rust tests run beside) before it binds.
async function startPersist(bin, url, children) {
  const child = spawn(
    bin,
    ['--url', url, 'serve', '--addr', '127.0.0.1:0', '--metrics-addr', '127.0.0.1:0', '--log-level', 'warn'],
    { env: { ...process.env, PERSIST_SERVE_KEYS: `bench:${KEY}` }, stdio: ['ignore', 'ignore', 'pipe'] },
  );
  children.add(child);
  let stderr = '';
  child.stderr.on('data', (d) => (stderr = (stderr + d).slice(-4000)));
  let announced;
  for (let k = 0; !announced; k++) {
    if (child.exitCode !== null) fail(`persist serve exited: ${stderr}`);
    announced = /Conversations API on (http:\/\/[^/\s]+)\/v1.*metrics on (http:\/\/\S+\/metrics)/.exec(stderr);
    if (!announced && k > 150) fail(`persist serve did not say where it listens: ${stderr}`);
    if (!announced) await sleep(100);
  }
  const [, base, metricsUrl] = announced;
  for (let k = 0; ; k++) {
    if (child.exitCode !== null) fail(`persist serve exited: ${stderr}`);
    try {
      if ((await fetch(`${base}/health`)).ok) break;
    } catch {}
    if (k > 150) fail(`persist serve on ${base} did not come up: ${stderr}`);
    await sleep(100);
  }
  return {
    url: base,
    metricsUrl,
    child,
    stop: () =>
      new Promise((ok) => {
        if (child.exitCode !== null) return ok();
        child.once('exit', ok);
        child.kill('SIGTERM');
      }),
  };
}

/** The sums and counts of the Prometheus text (no buckets). */
async function scrape(url) {
  const text = await (await fetch(url)).text();
  const values = new Map();
  for (const line of text.split('\n')) {
    if (line.startsWith('#') || line.includes('_bucket{') || !line.trim()) continue;
    const space = line.lastIndexOf(' ');
    values.set(line.slice(0, space), Number(line.slice(space + 1)));
  }
  return values;
}

function diffMetrics(before, after) {
  const diff = (x, y) => {
    const out = {};
    for (const [k, v] of y) {
      const d = v - (x.get(k) ?? 0);
      if (d) out[k] = d;
    }
    return out;
  };
  return { a: diff(before.a, after.a), b: diff(before.b, after.b) };
}

/** The store ops of a metrics diff: `{op: {count, ms}}`. */
function opsOf(diff) {
  const ops = {};
  for (const [k, v] of Object.entries(diff ?? {})) {
    const m = /^persist_op_duration_seconds_(sum|count)\{op="([^"]+)"\}$/.exec(k);
    if (!m) continue;
    ops[m[2]] ??= { count: 0, ms: 0 };
    if (m[1] === 'sum') ops[m[2]].ms += v * 1000;
    else ops[m[2]].count += v;
  }
  return ops;
}

function routeOf(diff, suffix) {
  let sum = 0;
  let count = 0;
  for (const [k, v] of Object.entries(diff ?? {})) {
    if (!k.startsWith('persist_serve_request_duration_seconds_') || !k.includes(`route="${suffix}"`)) continue;
    if (k.includes('_sum{')) sum += v * 1000;
    else if (k.includes('_count{')) count += v;
  }
  return { count, ms: count ? sum / count : 0 };
}

/** A round trip through persist serve's HTTP stack and no store: GET /health, 200 times. */
async function healthRoundTrip(base) {
  for (let k = 0; k < 20; k++) await (await fetch(`${base}/health`)).text();
  const took = [];
  for (let k = 0; k < 200; k++) {
    const t = now();
    await (await fetch(`${base}/health`)).text();
    took.push(now() - t);
  }
  took.sort((x, y) => x - y);
  return { p50: pct(took, 0.5), mean: took.reduce((s, x) => s + x, 0) / took.length };
}

function psql(pg, sql) {
  execFileSync('psql', ['-h', pg.host, '-p', String(pg.port), '-U', pg.user, '-d', pg.db, '-qtAc', sql], {
    stdio: ['ignore', 'pipe', 'pipe'],
  });
}

function machineFacts(bin, pg, rsVersion) {
  const cpus = os.cpus();
  const run = (cmd, args) => {
    try {
      return execFileSync(cmd, args, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] }).trim();
    } catch {
      return '?';
    }
  };
  return {
    cores: cpus.length,
    cpu: cpus[0]?.model ?? '?',
    memGiB: Math.round(os.totalmem() / 2 ** 30),
    kernel: `${os.type()} ${os.release()}`,
    node: process.version,
    persist: run(bin, ['--version']),
    profile: /[/\\]debug[/\\]/.test(bin) ? 'debug (unoptimized)' : /[/\\]release[/\\]/.test(bin) ? 'release' : '?',
    bin: bin.startsWith(repo) ? bin.slice(repo.length + 1) : bin,
    postgres: run('psql', ['-h', pg.host, '-p', String(pg.port), '-U', pg.user, '-d', pg.db, '-tAc', 'SHOW server_version']),
    pgSync: run('psql', ['-h', pg.host, '-p', String(pg.port), '-U', pg.user, '-d', pg.db, '-tAc', 'SHOW synchronous_commit']),
    rsVersion,
    load: os.loadavg().map((x) => x.toFixed(2)).join(' '),
  };
}

function pct(sorted, q) {
  if (!sorted.length) return NaN;
  return sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil(q * sorted.length) - 1))];
}

function fmt(x, digits = 1) {
  return Number.isFinite(x) ? x.toFixed(digits) : '–';
}

function log(line) {
  process.stderr.write(`${line}\n`);
}

function fail(message) {
  log(`bench: ${message}`);
  process.exit(1);
}

function withTimeout(promise, ms, what) {
  let timer;
  return Promise.race([
    promise,
    new Promise((_, ko) => (timer = setTimeout(() => ko(new Error(`${what} within ${ms} ms`)), ms))),
  ]).finally(() => clearTimeout(timer));
}

// ---------------------------------------------------------------------------------------------
// The report.

const ROWS = [
  ['persist/PG per-append', 'persist/PG per-append', 'yes (PostgreSQL, each append committed)'],
  ['persist/PG batched', 'persist/PG batched', 'yes (PostgreSQL, each append committed)'],
  ['persist/SQLite batched', 'persist/SQLite batched', 'yes (SQLite WAL, synchronous=NORMAL)'],
  ['resumable-stream/Redis', 'resumable-stream/Redis', 'no (the producer\'s memory; Redis only relays)'],
];

function renderReport({ results, breakdown, machine, DELTAS, FOLLOWERS, PACE_MS, elapsed, quick }) {
  const find = (system, pace, n) => results.find((r) => r.system === system && r.pace === pace && r.n === n);
  const table = (pace, costLabel, cost) => {
    const head = ['', ...FOLLOWERS.map((n) => `${n} follower${n > 1 ? 's' : ''}: p50 / p99 ms`), `${costLabel} (${FOLLOWERS.map((n) => `N=${n}`).join(' / ')})`, 'durable'];
    const lines = [`| ${head.join(' | ')} |`, `|${head.map((_, k) => (k === 0 ? '---' : '---:')).join('|')}|`];
    for (const [label, system, durable] of ROWS) {
      const cells = FOLLOWERS.map((n) => {
        const r = find(system, pace, n);
        return r ? `${fmt(r.p50)} / ${fmt(r.p99)}` : '–';
      });
      const costs = FOLLOWERS.map((n) => {
        const r = find(system, pace, n);
        return r ? cost(r) : '–';
      });
      lines.push(`| ${label} | ${cells.join(' | ')} | ${costs.join(' / ')} | ${durable.split(' ')[0]} |`);
    }
    return lines.join('\n');
  };
  const paced = table(PACE_MS, 'writer CPU ms/delta', (r) => fmt(r.writerCpuUsPerDelta / 1000, 3));
  const burst = table(0, 'writer ms/delta', (r) => fmt(r.writerMsPerDelta, 3));

  // Details: every run.
  const detail = [
    '| system | deltas every | N | p50 | p99 | max | writer wall ms/delta | writer CPU µs/delta | append requests | ms/append request (mean / p50 / p99) | all delivered after ms |',
    '|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|',
  ];
  for (const r of results) {
    detail.push(
      `| ${r.system} | ${r.pace ? `${r.pace} ms` : 'loop turn'} | ${r.n} | ${fmt(r.p50)} | ${fmt(r.p99)} | ${fmt(r.max)} | ${fmt(r.writerMsPerDelta, 3)} | ${fmt(r.writerCpuUsPerDelta, 0)} | ${r.requests ?? '–'} | ${r.appendMs ? `${fmt(r.appendMs.mean, 2)} / ${fmt(r.appendMs.p50, 2)} / ${fmt(r.appendMs.p99, 2)}` : '–'} | ${fmt(r.totalMs, 0)} |`,
    );
  }

  // Where a per-append request's time goes (burst, 1 follower).
  const pa = find('persist/PG per-append', 0, FOLLOWERS[0]);
  const parts = routeOf(pa?.metrics?.a, '/v1/persist/conversations/{id}/replies/{item_id}/parts');
  const opsA = opsOf(pa?.metrics?.a);
  const storeMs = Object.values(opsA).reduce((s, o) => s + o.ms, 0) / (parts.count || 1);
  const opsLine = Object.entries(opsA)
    .sort((x, y) => y[1].ms - x[1].ms)
    .map(([op, o]) => `${op} ${fmt(o.ms / (parts.count || 1), 2)} ms (${fmt(o.count / (parts.count || 1), 2)}×)`)
    .join(', ');
  // Instance B's store calls for its followers, per append (per-append runs: one change each).
  const fanout = FOLLOWERS.map((n) => {
    const r = find('persist/PG per-append', 0, n);
    if (!r) return `N=${n} –`;
    const ops = opsOf(r.metrics?.b);
    const calls = Object.values(ops).reduce((s, o) => s + o.count, 0) / r.requests;
    const ms = Object.values(ops).reduce((s, o) => s + o.ms, 0) / r.requests;
    const top = Object.entries(ops)
      .sort((x, y) => y[1].count - x[1].count)
      .slice(0, 3)
      .map(([op, o]) => `${op} ${fmt(o.count / r.requests, 1)}×`)
      .join(', ');
    return `N=${n}: ${fmt(calls, 1)} calls, ${fmt(ms, 1)} ms of store time (${top})`;
  }).join('; ');
  const propagation = FOLLOWERS.map((n) => {
    const r = find('persist/PG per-append', 0, n);
    return r?.afterAck ? `N=${n}: ${fmt(r.afterAck.p50)} / ${fmt(r.afterAck.p99)} ms` : `N=${n} –`;
  }).join('; ');

  // The targets.
  const rs = (pace, n) => find('resumable-stream/Redis', pace, n);
  const verdicts = [];
  for (const [label, system] of ROWS.slice(0, 3)) {
    for (const pace of [PACE_MS, 0]) {
      const bits = FOLLOWERS.map((n) => {
        const p = find(system, pace, n);
        const q = rs(pace, n);
        if (!p || !q) return `N=${n} –`;
        const ok = (x, y) => (x <= y ? 'meets' : `misses (${fmt(x / y, x / y < 2 ? 2 : 1)}×)`);
        return `N=${n}: p50 ${fmt(p.p50)} vs ${fmt(q.p50)} ${ok(p.p50, q.p50)}, p99 ${fmt(p.p99)} vs ${fmt(q.p99)} ${ok(p.p99, q.p99)}`;
      });
      verdicts.push(`- ${label}, ${pace ? `a delta every ${pace} ms` : 'as fast as possible'}: ${bits.join('; ')}.`);
    }
    const costs = FOLLOWERS.map((n) => {
      const p = find(system, 0, n);
      const q = rs(0, n);
      if (!p || !q) return `N=${n} –`;
      const ratio = p.writerMsPerDelta / q.writerMsPerDelta;
      return `N=${n}: ${fmt(p.writerMsPerDelta, 3)} vs ${fmt(q.writerMsPerDelta, 3)} ms = ${fmt(ratio, 2)}× ${ratio <= 1.5 ? 'meets' : `misses (${fmt(ratio / 1.5, 1)}× over the 1.5× bound)`}`;
    });
    verdicts.push(`- ${label}, writer wall time per delta (as fast as possible): ${costs.join('; ')}.`);
    const cpus = FOLLOWERS.map((n) => {
      const p = find(system, PACE_MS, n);
      const q = rs(PACE_MS, n);
      if (!p || !q) return `N=${n} –`;
      const ratio = p.writerCpuUsPerDelta / q.writerCpuUsPerDelta;
      return `N=${n}: ${fmt(p.writerCpuUsPerDelta, 0)} vs ${fmt(q.writerCpuUsPerDelta, 0)} µs = ${fmt(ratio, 2)}× ${ratio <= 1.5 ? 'meets' : `misses (${fmt(ratio / 1.5, 1)}× over the 1.5× bound)`}`;
    });
    verdicts.push(`- ${label}, writer CPU per delta (a delta every ${PACE_MS} ms): ${cpus.join('; ')}.`);
  }

  const tables = [
    `### A delta every ${PACE_MS} ms (≈${Math.round(1000 / PACE_MS)} tokens/s): delivery latency, and the writer process's CPU per delta`,
    '',
    paced,
    '',
    `### As fast as possible (one delta per event-loop turn; per-append: each request awaited): delivery latency, and the writer's wall time per delta`,
    '',
    burst,
  ].join('\n');
  const reading = [
    '### Against the targets (delivery p50/p99 ≤ resumable-stream\'s; writer cost per delta ≤ 1.5× its)',
    '',
    ...verdicts,
    '',
    '### Where the time goes (persist/PG)',
    '',
    pa
      ? `- One append request (per-append, as fast as possible, N=${pa.n}): ${fmt(pa.appendMs.mean, 2)} ms at the writer; persist A answers it in ${fmt(parts.ms, 2)} ms, of which store calls ${fmt(storeMs, 2)} ms (${opsLine}); the rest, ${fmt(pa.appendMs.mean - parts.ms, 2)} ms, is HTTP and the writer's fetch. A bare round trip to persist serve (GET /health, no store) takes ${fmt(breakdown.health?.mean, 2)} ms.`
      : '- (no per-append run)',
    `- From the append's answer at the writer to the follower (per-append, as fast as possible; p50 / p99): ${propagation}. That is A's notification (at most one per 2 ms), B's sequencing pass and read of the feed, and B's reads for each follower.`,
    `- Instance B's store calls per append, for its followers (per-append, as fast as possible): ${fanout}.`,
  ].join('\n');
  const facts = [
    `- ${machine.cores} cores (${machine.cpu}), ${machine.memGiB} GiB, ${machine.kernel}; load average at start ${machine.load}`,
    `- persist: \`${machine.bin}\` (${machine.persist}), **${machine.profile} build**, default pool size; PostgreSQL ${machine.postgres} (synchronous_commit=${machine.pgSync}) on the same machine`,
    `- resumable-stream ${machine.rsVersion} with node-redis 6.3.1, Redis ${machine.redis ?? '?'} on the same machine; Node ${machine.node}`,
    `- ${DELTAS} deltas of 4–8 characters, followers ${FOLLOWERS.join(', ')}; every run once, in one process tree, ${fmt(elapsed, 0)} s in all${quick ? ' (--quick)' : ''}`,
  ].join('\n');
  return { tables, reading, detail: detail.join('\n'), facts, date: new Date().toISOString().slice(0, 16).replace('T', ' ') };
}

const START = '<!-- bench.mjs results: start (rewritten by `node bench.mjs`) -->';
const END = '<!-- bench.mjs results: end -->';

/** Rewrites the results between the markers of bench.md, keeping the rest (the reading written by hand). */
function writeBenchMd(file, report) {
  const block = [
    START,
    '',
    `Run of ${report.date} UTC:`,
    '',
    report.facts,
    '',
    report.tables,
    '',
    report.reading,
    '',
    '<details><summary>Every run</summary>',
    '',
    report.detail,
    '',
    '</details>',
    '',
    END,
  ].join('\n');
  let text = existsSync(file) ? readFileSync(file, 'utf8') : `# Live replies: persist serve against resumable-stream\n\n${START}\n${END}\n`;
  const a = text.indexOf(START);
  const b = text.indexOf(END);
  text = a >= 0 && b > a ? text.slice(0, a) + block + text.slice(b + END.length) : `${text}\n${block}\n`;
  writeFileSync(file, text);
}

// Last, once every class and constant above is defined.
const roleArg = process.argv.find((a) => a.startsWith('--role='));
if (roleArg?.slice(7) === 'follower') followerRole();
else if (roleArg?.slice(7) === 'rs-instance') await rsInstanceRole();
else await main();
