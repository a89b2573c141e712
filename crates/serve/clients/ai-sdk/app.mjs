// The Node server of an AI SDK chat app whose replies live in persist serve. The model's
// stream is written into persist as it comes (persist-writer.mjs); every client, on every
// instance of this app, reads the reply back from persist: the first answer, a resume after a
// lost connection or a reload, and a stop from anywhere reach the same reply.
//
//   POST /api/chat              DefaultChatTransport's send ({id, messages, trigger}): the chat's
//                               conversation ensured, the user's message and the reply started
//                               in persist, the model run in the background, and the reply's
//                               UI message stream answered (from persist).
//   GET  /api/chat/:id/stream   DefaultChatTransport's reconnect: persist's running reply, or 204.
//   POST /api/chat/:id/stop     Stops the running reply, whichever process writes it.
//   GET  /api/chat/:id/messages The chat as UIMessage[] (what `useChat({ messages })` shows after
//                               a reload; a reply still written says so in its metadata).
//
// Env: PERSIST_URL (persist serve's base, e.g. http://127.0.0.1:8080), PERSIST_KEY (its API
// key), PORT (0: any free port), HOST (127.0.0.1). The model is a mock that streams a canned
// reply, "token0 token1 … token{N-1}", one token every D ms: MOCK_TOKENS / MOCK_DELAY_MS, or the
// request body's `persist: {tokens, delay_ms, reasoning, tool, lease_seconds}` (the transport's
// `body`). Logs are JSON lines on stdout.
//
//   PERSIST_URL=http://127.0.0.1:8080 PERSIST_KEY=sk-... PORT=3000 node app.mjs

import http from 'node:http';
import { convertToModelMessages, stepCountIs, streamText, tool } from 'ai';
import { MockLanguageModelV4 } from 'ai/test';
import { z } from 'zod';
import { LiveReply, PersistApiError, PersistClient, pipeUiStreamToPersist } from './persist-writer.mjs';

const persist = new PersistClient({
  baseUrl: required('PERSIST_URL'),
  apiKey: process.env.PERSIST_KEY,
});
const defaults = {
  tokens: Number(process.env.MOCK_TOKENS ?? 60),
  delay_ms: Number(process.env.MOCK_DELAY_MS ?? 30),
  reasoning: false,
  tool: false,
  lease_seconds: process.env.LEASE_SECONDS ? Number(process.env.LEASE_SECONDS) : undefined,
};

function required(name) {
  const value = process.env[name];
  if (!value) {
    console.error(`set ${name} (see the top of app.mjs)`);
    process.exit(2);
  }
  return value;
}

function log(event, detail = {}) {
  process.stdout.write(`${JSON.stringify({ event, ...detail })}\n`);
}

// ---------------------------------------------------------------------------------------------
// The model: a mock that streams a canned reply slowly, and stops when its call is aborted.

const REASONING = ['The user wants ', 'tokens; ', 'count them.'];

const usage = {
  inputTokens: { total: 10, noCache: 10, cacheRead: undefined, cacheWrite: undefined },
  outputTokens: { total: 20, text: 20, reasoning: 0 },
};

/** Waits `ms`, or rejects at once when `signal` aborts. */
function delay(ms, signal) {
  return new Promise((resolve, reject) => {
    if (signal?.aborted) return reject(signal.reason);
    const timer = setTimeout(() => {
      signal?.removeEventListener('abort', onAbort);
      resolve();
    }, ms);
    const onAbort = () => {
      clearTimeout(timer);
      reject(signal.reason);
    };
    signal?.addEventListener('abort', onAbort, { once: true });
  });
}

/**
 * A provider stream of `chunks`, each text delta after `delayMs`; it fails when the call is
 * aborted (as a real provider's fetch does). `generated` counts the text deltas it made.
 */
function slowStream(chunks, delayMs, abortSignal, generated) {
  let index = 0;
  return new ReadableStream({
    async pull(controller) {
      if (index >= chunks.length) return controller.close();
      const chunk = chunks[index++];
      if (chunk.type === 'text-delta' && delayMs > 0) {
        try {
          await delay(delayMs, abortSignal);
        } catch (reason) {
          controller.error(reason);
          return;
        }
      }
      if (chunk.type === 'text-delta') generated.tokens += 1;
      controller.enqueue(chunk);
    },
  });
}

/** The mock model for one request: [reasoning,] [a `count` tool call, then] the canned text. */
function cannedModel(options, generated) {
  const reasoning = options.reasoning
    ? [
        { type: 'reasoning-start', id: 'r1' },
        ...REASONING.map((delta) => ({ type: 'reasoning-delta', id: 'r1', delta })),
        { type: 'reasoning-end', id: 'r1' },
      ]
    : [];
  const head = (id) => [
    { type: 'stream-start', warnings: [] },
    { type: 'response-metadata', id, modelId: 'mock-model-id', timestamp: new Date(0) },
  ];
  const text = [
    { type: 'text-start', id: 't1' },
    ...Array.from({ length: options.tokens }, (_, i) => ({
      type: 'text-delta',
      id: 't1',
      delta: i === 0 ? 'token0' : ` token${i}`,
    })),
    { type: 'text-end', id: 't1' },
    { type: 'finish', finishReason: { unified: 'stop', raw: 'stop' }, usage },
  ];
  const steps = options.tool
    ? [
        [
          ...head('resp-1'),
          ...reasoning,
          { type: 'tool-call', toolCallId: 'call-count', toolName: 'count', input: JSON.stringify({ upTo: options.tokens }) },
          { type: 'finish', finishReason: { unified: 'tool-calls', raw: 'tool_use' }, usage },
        ],
        [...head('resp-2'), ...text],
      ]
    : [[...head('resp-1'), ...reasoning, ...text]];
  let call = 0;
  return new MockLanguageModelV4({
    doStream: async ({ abortSignal }) => ({
      stream: slowStream(steps[Math.min(call++, steps.length - 1)], options.delay_ms, abortSignal, generated),
    }),
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
// persist

/**
 * The persist conversation of the AI SDK chat `chatId`: the chat id itself, created when new
 * (`PUT /v1/persist/conversations/{id}`, idempotent). Reads use the chat id as it is: an
 * unknown chat is persist's 404.
 */
async function ensureConversation(chatId) {
  await persist.ensureConversation(chatId, { app: 'ai-sdk-example' });
  return chatId;
}

/** A UIMessage's text (its text parts, joined). */
function textOf(message) {
  return (message.parts ?? [])
    .filter((part) => part.type === 'text')
    .map((part) => part.text)
    .join('');
}

/** Runs the model for `reply` and writes its stream into persist. Never throws. */
async function generate(reply, chatId, messages, options) {
  const generated = { tokens: 0 };
  let modelMessages;
  try {
    modelMessages = await convertToModelMessages(messages, { tools, ignoreIncompleteToolCalls: true });
  } catch {
    modelMessages = [{ role: 'user', content: textOf(messages.at(-1)) }];
  }
  try {
    const result = streamText({
      model: cannedModel(options, generated),
      messages: modelMessages,
      tools,
      stopWhen: stepCountIs(2),
      abortSignal: reply.signal,
    });
    const state = await pipeUiStreamToPersist(
      result.toUIMessageStream({ onError: (error) => error?.message ?? String(error) }),
      reply,
    );
    log('reply_ended', {
      chat_id: chatId,
      reply_id: reply.id,
      status: state.status,
      end: state.end,
      stopped: reply.stopped,
      tokens: generated.tokens,
      of: options.tokens,
    });
  } catch (error) {
    log('reply_failed', { chat_id: chatId, reply_id: reply.id, error: String(error?.message ?? error), tokens: generated.tokens });
  }
}

// ---------------------------------------------------------------------------------------------
// HTTP

function sendJson(res, status, body) {
  res.writeHead(status, { 'content-type': 'application/json' });
  res.end(JSON.stringify(body));
}

async function readJson(req) {
  const chunks = [];
  for await (const chunk of req) chunks.push(chunk);
  return JSON.parse(Buffer.concat(chunks).toString('utf8') || '{}');
}

const PASSED_HEADERS = ['content-type', 'cache-control', 'x-vercel-ai-ui-message-stream', 'x-accel-buffering'];

/**
 * Answers `res` with persist's stream at `path` (a 204 as a 204; a 404, an unknown chat, as
 * 204: nothing to resume). Forwards `Last-Event-ID`. The upstream request is cut when the
 * client goes: the reply goes on being generated.
 */
async function passThroughStream(req, res, path) {
  const controller = new AbortController();
  res.on('close', () => controller.abort());
  let upstream;
  try {
    const headers = { accept: 'text/event-stream' };
    if (req.headers['last-event-id']) headers['last-event-id'] = req.headers['last-event-id'];
    upstream = await fetch(`${persist.baseUrl}${path}`, { headers: persist.headers(headers), signal: controller.signal });
  } catch (error) {
    if (!controller.signal.aborted) sendJson(res, 502, { error: { message: `persist: ${error.message}` } });
    return;
  }
  if (upstream.status === 204 || upstream.status === 404) {
    await upstream.body?.cancel();
    res.writeHead(204);
    res.end();
    return;
  }
  const headers = {};
  for (const name of PASSED_HEADERS) {
    const value = upstream.headers.get(name);
    if (value) headers[name] = value;
  }
  res.writeHead(upstream.status, headers);
  res.flushHeaders();
  try {
    for await (const bytes of upstream.body) {
      if (!res.write(bytes)) await new Promise((resolve) => res.once('drain', resolve));
    }
  } catch {
    // The client went (we cut the upstream), or persist's stream broke: the client resumes.
  }
  res.end();
}

async function postChat(req, res) {
  const body = await readJson(req);
  const chatId = body.id;
  const messages = Array.isArray(body.messages) ? body.messages : [];
  if (typeof chatId !== 'string' || chatId === '') return sendJson(res, 400, { error: { message: "'id' is required" } });
  if (body.trigger && body.trigger !== 'submit-message') {
    return sendJson(res, 400, { error: { message: `trigger '${body.trigger}' is not supported by this example` } });
  }
  const last = messages.at(-1);
  if (last?.role !== 'user') return sendJson(res, 400, { error: { message: 'the last message must be the user’s' } });
  const options = { ...defaults, ...(body.persist ?? {}) };

  const conversationId = await ensureConversation(chatId);
  let reply;
  try {
    reply = await LiveReply.start(persist, conversationId, {
      items: [{ id: last.id, type: 'message', role: 'user', content: textOf(last) }],
      leaseSeconds: options.lease_seconds,
      // A retried POST (same user message) answers the reply the first one started.
      idempotencyKey: `chat:${chatId}:${last.id}`,
      log: (event, detail) => log(`writer_${event}`, { chat_id: chatId, ...detail }),
    });
  } catch (error) {
    if (error instanceof PersistApiError && error.status < 500) {
      return sendJson(res, error.status, { error: error.error });
    }
    throw error;
  }
  if (reply.state.written === false) {
    log('reply_repeated', { chat_id: chatId, reply_id: reply.id });
  } else {
    log('reply_started', { chat_id: chatId, conversation_id: conversationId, reply_id: reply.id, pid: process.pid });
    generate(reply, chatId, messages, options);
  }
  // The reply is read back from persist: the same stream every other client gets.
  const path = `/v1/persist/conversations/${encodeURIComponent(conversationId)}/items/${encodeURIComponent(reply.id)}/ui-stream`;
  await passThroughStream(req, res, path);
}

async function getStream(req, res, chatId) {
  await passThroughStream(req, res, `/v1/persist/conversations/${encodeURIComponent(chatId)}/stream`);
}

async function postStop(req, res, chatId) {
  try {
    const answer = await persist.request('POST', `/v1/persist/conversations/${encodeURIComponent(chatId)}/stop`);
    log('stop_asked', { chat_id: chatId, ...answer });
    sendJson(res, 200, answer);
  } catch (error) {
    if (error instanceof PersistApiError && error.status === 404) return sendJson(res, 200, { stopped: false });
    throw error;
  }
}

async function getMessages(req, res, chatId) {
  try {
    const list = await persist.request('GET', `/v1/persist/conversations/${encodeURIComponent(chatId)}/ui-messages`);
    sendJson(res, 200, list.data);
  } catch (error) {
    if (error instanceof PersistApiError && error.status === 404) return sendJson(res, 200, []);
    throw error;
  }
}

const server = http.createServer(async (req, res) => {
  try {
    const url = new URL(req.url, 'http://localhost');
    const match = url.pathname.match(/^\/api\/chat\/([^/]+)\/(stream|stop|messages)$/);
    const chatId = match && decodeURIComponent(match[1]);
    if (req.method === 'POST' && url.pathname === '/api/chat') return await postChat(req, res);
    if (match && req.method === 'GET' && match[2] === 'stream') return await getStream(req, res, chatId);
    if (match && req.method === 'POST' && match[2] === 'stop') return await postStop(req, res, chatId);
    if (match && req.method === 'GET' && match[2] === 'messages') return await getMessages(req, res, chatId);
    if (req.method === 'GET' && url.pathname === '/health') return sendJson(res, 200, { status: 'ok' });
    sendJson(res, 404, { error: { message: `no route ${req.method} ${url.pathname}` } });
  } catch (error) {
    log('request_failed', { method: req.method, url: req.url, error: String(error?.message ?? error) });
    if (!res.headersSent) sendJson(res, 500, { error: { message: String(error?.message ?? error) } });
    else res.end();
  }
});

server.listen(Number(process.env.PORT ?? 3000), process.env.HOST ?? '127.0.0.1', () => {
  const { address, port } = server.address();
  log('listening', { url: `http://${address}:${port}`, pid: process.pid, persist: persist.baseUrl });
});

for (const signal of ['SIGTERM', 'SIGINT']) {
  process.on(signal, () => {
    server.close();
    server.closeAllConnections();
    process.exit(0);
  });
}
