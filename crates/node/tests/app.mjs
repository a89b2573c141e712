// A chat server built on the Vercel AI SDK whose replies live in persist, in process: the route
// handlers a Next.js app would have (Web `Request` in, `Response` out), served by node:http.
// Its model is the SDK's mock, streaming a canned reply slowly (the body's `persist`: `tokens`,
// `delay_ms`, `reasoning`, `tool`, `lease_seconds`); every client reads the reply
// from the store, so any process sharing it resumes or stops it.
//
//   POST /api/chat              DefaultChatTransport's send ({id, messages})
//   GET  /api/chat/:id/stream   DefaultChatTransport's reconnect: the reply being written, or 204
//   POST /api/chat/:id/stop     stops the chat's reply, on whichever process writes it
//   GET  /api/chat/:id          the chat as UIMessage[]
//
//   PERSIST_URL=sqlite:chat.db PORT=3000 node app.mjs
//
// It logs one JSON line per event on stdout (`listening`, `generated`), which the tests read.
import http from 'node:http';
import { Readable } from 'node:stream';

import { convertToModelMessages, stepCountIs, streamText, tool } from 'ai';
import { MockLanguageModelV4 } from 'ai/test';
import { Store, ReplyRunning, InvalidInput } from 'persist-store';
import { chatResponse, loadChat, resumeResponse, stopChat } from 'persist-store/ai-sdk';
import { z } from 'zod';

const store = await Store.open(process.env.PERSIST_URL ?? 'sqlite:chat.db');

function log(event, detail = {}) {
  process.stdout.write(`${JSON.stringify({ event, pid: process.pid, ...detail })}\n`);
}

// ---------------------------------------------------------------------------------------------
// The model: a mock that streams `tokens` text deltas, `delayMs` apart, after an optional call
// of the `count` tool; it stops when its call is aborted, as a provider's fetch does.

const usage = {
  inputTokens: { total: 10, noCache: 10, cacheRead: undefined, cacheWrite: undefined },
  outputTokens: { total: 20, text: 20, reasoning: 0 },
};

function mockModel({ tokens = 20, delay_ms: delayMs = 20, tool: useTool = false, reasoning = false }, generated) {
  const head = (id) => [
    { type: 'stream-start', warnings: [] },
    { type: 'response-metadata', id, modelId: 'mock', timestamp: new Date(0) },
  ];
  const thought = reasoning
    ? [
        { type: 'reasoning-start', id: 'r1' },
        { type: 'reasoning-delta', id: 'r1', delta: 'Counting ' },
        { type: 'reasoning-delta', id: 'r1', delta: 'tokens.' },
        { type: 'reasoning-end', id: 'r1' },
      ]
    : [];
  const text = [
    { type: 'text-start', id: 't1' },
    ...Array.from({ length: tokens }, (_, i) => ({ type: 'text-delta', id: 't1', delta: i === 0 ? 'token0' : ` token${i}` })),
    { type: 'text-end', id: 't1' },
    { type: 'finish', finishReason: { unified: 'stop', raw: 'stop' }, usage },
  ];
  const steps = useTool
    ? [
        [
          ...head('r-1'),
          ...thought,
          { type: 'tool-call', toolCallId: 'call-1', toolName: 'count', input: JSON.stringify({ upTo: tokens }) },
          { type: 'finish', finishReason: { unified: 'tool-calls', raw: 'tool_use' }, usage },
        ],
        [...head('r-2'), ...text],
      ]
    : [[...head('r-1'), ...thought, ...text]];
  let call = 0;
  return new MockLanguageModelV4({
    doStream: async ({ abortSignal, prompt }) => {
      generated.prompt = prompt.length;
      const chunks = steps[Math.min(call++, steps.length - 1)];
      let index = 0;
      return {
        stream: new ReadableStream({
          async pull(controller) {
            if (index >= chunks.length) return controller.close();
            const chunk = chunks[index++];
            if (chunk.type === 'text-delta') {
              try {
                await new Promise((resolve, reject) => {
                  if (abortSignal?.aborted) return reject(abortSignal.reason);
                  const timer = setTimeout(resolve, delayMs);
                  abortSignal?.addEventListener('abort', () => (clearTimeout(timer), reject(abortSignal.reason)), { once: true });
                });
              } catch (reason) {
                return controller.error(reason);
              }
              generated.tokens += 1;
            }
            controller.enqueue(chunk);
          },
        }),
      };
    },
  });
}

const tools = {
  count: tool({
    description: 'Count up to a number',
    inputSchema: z.object({ upTo: z.number() }),
    execute: async ({ upTo }) => ({ count: upTo }),
  }),
};

// ---------------------------------------------------------------------------------------------
// The route handlers, as an app/api/chat/... of Next.js has them.

const json = (body, status = 200) => Response.json(body, { status });

/** `POST /api/chat` */
export async function POST(request) {
  const { id, messages, persist: options = {} } = await request.json();
  const generated = { tokens: 0, prompt: 0, replyId: undefined };
  try {
    const response = await chatResponse(store, id, {
      message: messages.at(-1),
      leaseMs: options.lease_seconds === undefined ? undefined : options.lease_seconds * 1000,
      generate: async ({ messages: history, abortSignal, replyId }) => {
        generated.replyId = replyId;
        log('generating', { chatId: id, replyId, history: history.length });
        return streamText({
          model: mockModel(options, generated),
          messages: await convertToModelMessages(history, { tools, ignoreIncompleteToolCalls: true }),
          tools,
          stopWhen: stepCountIs(2),
          abortSignal,
        });
      },
    });
    response.written?.then((state) => log('generated', { chatId: id, ...generated, end: state?.end, status: state?.status }));
    return response;
  } catch (error) {
    if (error instanceof ReplyRunning) return json({ error: { code: 'reply_running', replyId: error.replyId } }, 409);
    if (error instanceof InvalidInput) return json({ error: { code: error.code, message: error.message } }, 400);
    throw error;
  }
}

/** `GET /api/chat/[id]/stream` */
export function GET_stream(_request, { id }) {
  return resumeResponse(store, id);
}

/** `POST /api/chat/[id]/stop` */
export async function POST_stop(_request, { id }) {
  return json(await stopChat(store, id));
}

/** `GET /api/chat/[id]` */
export async function GET_chat(_request, { id }) {
  return json(await loadChat(store, id));
}

// ---------------------------------------------------------------------------------------------
// node:http in front of the handlers.

function route(method, path) {
  if (method === 'POST' && path === '/api/chat') return [POST, {}];
  const match = path.match(/^\/api\/chat\/([^/]+)(\/stream|\/stop)?$/);
  if (!match) return null;
  const params = { id: decodeURIComponent(match[1]) };
  if (method === 'GET' && match[2] === '/stream') return [GET_stream, params];
  if (method === 'POST' && match[2] === '/stop') return [POST_stop, params];
  if (method === 'GET' && match[2] === undefined) return [GET_chat, params];
  return null;
}

const server = http.createServer(async (req, res) => {
  const url = new URL(req.url, 'http://localhost');
  const found = route(req.method, url.pathname);
  if (!found) {
    res.writeHead(404).end();
    return;
  }
  const abort = new AbortController();
  res.on('close', () => abort.abort());
  try {
    const body = req.method === 'POST' ? Readable.toWeb(req) : undefined;
    const request = new Request(url, { method: req.method, headers: req.headers, body, duplex: 'half', signal: abort.signal });
    const response = await found[0](request, found[1]);
    res.writeHead(response.status, Object.fromEntries(response.headers));
    if (!response.body) return res.end();
    res.flushHeaders();
    const reader = response.body.getReader();
    abort.signal.addEventListener('abort', () => reader.cancel().catch(() => {}), { once: true });
    for (;;) {
      const { done, value } = await reader.read();
      if (done) break;
      if (!res.write(value)) await new Promise((resolve) => res.once('drain', resolve));
    }
    res.end();
  } catch (error) {
    log('failed', { error: String(error?.stack ?? error) });
    if (!res.headersSent) res.writeHead(500, { 'content-type': 'application/json' });
    res.end(JSON.stringify({ error: { message: String(error?.message ?? error) } }));
  }
});

server.listen(Number(process.env.PORT ?? 3000), '127.0.0.1', () => log('listening', { url: `http://127.0.0.1:${server.address().port}` }));

for (const signal of ['SIGINT', 'SIGTERM']) {
  process.on(signal, () => server.close(() => store.close().then(() => process.exit(0))));
}
