// persist-store across threads and processes: eight worker threads and eight processes writing
// one SQLite file at once (every message stored once, no lock error), and the event loop kept
// responsive while a large page is read (a timer's lag measured beside the read).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { Worker } from 'node:worker_threads';

import { Store } from 'persist-store';

const HERE = dirname(fileURLToPath(import.meta.url));

test('eight worker threads and eight processes write one SQLite file: every message once', { timeout: 120_000 }, async (t) => {
  const folder = mkdtempSync(join(tmpdir(), 'persist-store-writers-'));
  try {
    const url = `sqlite:${join(folder, 'shared.db')}`;
    const count = 25;
    const threads = Array.from({ length: 8 }, (_, i) =>
      new Promise((resolve, reject) => {
        const worker = new Worker(join(HERE, 'writer.mjs'), { workerData: { url, who: `thread${i}`, count } });
        worker.once('message', resolve);
        worker.once('error', reject);
        worker.once('exit', (code) => code !== 0 && reject(new Error(`thread${i} exited ${code}`)));
      }),
    );
    const processes = Array.from({ length: 8 }, async (_, i) => {
      const who = `process${i}`;
      const { stdout } = await promisify(execFile)(process.execPath, [join(HERE, 'writer.mjs'), JSON.stringify({ url, who, count })]);
      return JSON.parse(stdout);
    });
    const started = Date.now();
    const done = await Promise.all([...threads, ...processes]);
    t.diagnostic(`16 writers × ${2 * count} turns in ${Date.now() - started} ms`);
    assert.equal(done.filter((d) => d.done).length, 16);

    const store = await Store.open(url);
    const shared = await store.messages('shared');
    assert.equal(shared.length, 16 * count, 'every turn of the shared chat');
    assert.equal(new Set(shared.map((m) => m.id)).size, shared.length, 'each once');
    for (const who of [...Array.from({ length: 8 }, (_, i) => `thread${i}`), ...Array.from({ length: 8 }, (_, i) => `process${i}`)]) {
      const own = await store.messages(`own-${who}`);
      assert.deepEqual(own.map((m) => m.id), Array.from({ length: count }, (_, i) => `${who}-own-${who}-${i}`), `${who}'s chat, in order`);
      const mine = shared.filter((m) => m.id.startsWith(`${who}-`)).map((m) => Number(m.id.split('-').at(-1)));
      assert.deepEqual(mine, Array.from({ length: count }, (_, i) => i), `${who}'s turns of the shared chat, in its order`);
    }
    await store.close();
  } finally {
    rmSync(folder, { recursive: true, force: true });
  }
});

test('the event loop stays responsive while a large page is read', { timeout: 60_000 }, async (t) => {
  const store = await Store.open('memory:');
  const id = 'large';
  const text = 'lorem ipsum dolor sit amet '.repeat(80);
  for (let turn = 0; turn < 20; turn++) {
    const messages = Array.from({ length: 100 }, (_, i) => ({ id: `m${turn}-${i}`, role: i % 2 ? 'assistant' : 'user', parts: [{ type: 'text', text }] }));
    await store.appendMessages(id, messages);
  }
  // A timer every millisecond, its greatest lag recorded while the page is read.
  let last = performance.now();
  let lag = 0;
  let ticks = 0;
  const timer = setInterval(() => {
    const now = performance.now();
    lag = Math.max(lag, now - last - 1);
    last = now;
    ticks += 1;
  }, 1);
  await new Promise((resolve) => setTimeout(resolve, 20));
  lag = 0;
  ticks = 0;
  const started = performance.now();
  const page = await store.messages(id);
  const tookMs = performance.now() - started;
  // The timer's next tick tells how long the loop was held last (the answer's parse).
  await new Promise((resolve) => setTimeout(resolve, 5));
  clearInterval(timer);
  assert.equal(page.length, 2000);
  const json = JSON.stringify(page);
  const bytes = json.length;
  const parseStarted = performance.now();
  JSON.parse(json);
  const parseMs = performance.now() - parseStarted;
  t.diagnostic(`read ${page.length} messages (${(bytes / 1e6).toFixed(1)} MB of JSON) in ${tookMs.toFixed(1)} ms; the timer ticked ${ticks} times, its greatest lag ${lag.toFixed(1)} ms (a JSON.parse of the page alone: ${parseMs.toFixed(1)} ms)`);
  // The read runs on persist's threads: the loop only parses the answer, so the timer's
  // greatest lag is about one JSON.parse of the page, well under the read's time.
  assert.ok(ticks > 0, 'the timer ran during the read');
  assert.ok(lag < tookMs, `the loop was held ${lag.toFixed(1)} ms of a ${tookMs.toFixed(1)} ms read`);
  await store.close();
});
