// One caller adding messages to one thread through Mastra's LibSQLStore (WAL,
// synchronous=NORMAL, as it opens a local file), for persist-bench's `peers` rows.
//
//   node adds.mjs FILE N ROUND    (the text from $PERSIST_BENCH_TEXT)
//
// Prints {"adds": N, "seconds": S}: the adds alone, timed here (the process's start, the
// store's opening and its schema are not counted).
import { LibSQLStore } from '@mastra/libsql';

const [file, count, round] = process.argv.slice(2);
const n = Number(count);
const text = process.env.PERSIST_BENCH_TEXT ?? 'x'.repeat(300);
const storage = new LibSQLStore({ id: 'persist-bench', url: `file:${file}` });
await storage.init();
const memory = await storage.getStore('memory');
const threadId = 'single';
const resourceId = 'bench-user';
if (!(await memory.getThreadById({ threadId }))) {
  const now = new Date();
  await memory.saveThread({
    thread: { id: threadId, resourceId, title: 'bench', createdAt: now, updatedAt: now, metadata: {} },
  });
}
const started = process.hrtime.bigint();
for (let i = 0; i < n; i++) {
  await memory.saveMessages({
    messages: [
      {
        id: `${round}-${i}`,
        threadId,
        resourceId,
        role: 'user',
        createdAt: new Date(),
        content: { format: 2, parts: [{ type: 'text', text }] },
      },
    ],
  });
}
const seconds = Number(process.hrtime.bigint() - started) / 1e9;
const { messages } = await memory.listMessagesById({ messageIds: [`${round}-0`, `${round}-${n - 1}`] });
if (messages.length !== 2) throw new Error(`expected the first and last message back, got ${messages.length}`);
console.log(JSON.stringify({ adds: n, seconds }));
