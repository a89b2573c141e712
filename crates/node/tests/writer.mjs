// A writer of the concurrency test (processes.test.mjs), as a worker thread or a process: opens
// the store at URL and appends COUNT turns to the shared chat and COUNT to a chat of its own,
// each turn one UIMessage of an id naming the writer; posts or prints `{done, who}` at the end.
import { isMainThread, parentPort, workerData } from 'node:worker_threads';

import { Store } from 'persist-store';

const { url, who, count } = isMainThread ? JSON.parse(process.argv[2]) : workerData;
const store = await Store.open(url, { busyTimeoutMs: 30_000 });
const turn = (chat, i) =>
  store.appendMessages(chat, [{ id: `${who}-${chat}-${i}`, role: 'user', parts: [{ type: 'text', text: `${who} says ${i}` }] }]);
for (let i = 0; i < count; i++) {
  await Promise.all([turn('shared', i), turn(`own-${who}`, i)]);
}
await store.close();
const done = { done: true, who };
if (isMainThread) process.stdout.write(`${JSON.stringify(done)}\n`);
else parentPort.postMessage(done);
