// A live reply written into persist serve over HTTP, from a Node (or any fetch-capable) AI SDK
// app: start it with the user's turn, append what the model streams at the writer's offset,
// renew the lease while a tool runs, finish it (or end it incomplete), and hear of a stop from
// any client on any instance. The writer is persist-store's (`persist-store/live`, plain
// JavaScript: the addon is not loaded), the one apps in process use; this file gives it persist
// serve's routes as its transport.
//
//   const persist = new PersistClient({ baseUrl: process.env.PERSIST_URL, apiKey: process.env.PERSIST_KEY });
//   const reply = await LiveReply.start(persist, chatId, { items: [userItem] });
//   const result = streamText({ model, messages, abortSignal: reply.signal });
//   await pipeUiStreamToPersist(result.toUIMessageStream(), reply);
//
// Followers read the reply from persist, not from this process: `GET
// /v1/persist/conversations/{id}/stream` (the AI SDK's UI message stream, resumable on any
// instance). If this process dies, persist marks the reply interrupted once its lease runs out.
import { ReplyStopped } from 'persist-store/errors';
import { LiveReply as Writer, ReplyEnded } from 'persist-store/live';
import { writeUIMessageStream } from 'persist-store/ai-sdk';

/** The reply was stopped by a client (persist has ended it, stopped, with what was written). */
export const ReplyStoppedError = ReplyStopped;
/** The reply ended otherwise than by this writer: its lease ran out (it was settled interrupted), or another writer ended it. */
export const ReplyEndedError = ReplyEnded;

/**
 * Writes an AI SDK UI message stream (`streamText(...).toUIMessageStream()`) into a live reply;
 * persist-store's `writeUIMessageStream`: at `finish` the reply is finished complete (incomplete
 * if the stream carried an `error`); at `abort`, or a stream that ends or fails without
 * `finish`, it is ended incomplete with the reason. A reply a client stopped stays as persist
 * ended it.
 */
export const pipeUiStreamToPersist = writeUIMessageStream;

/**
 * A content block of persist's, one part of a reply. A `text` (or `reasoning`) block appended
 * right after a part of its own kind joins it: send model deltas as text blocks.
 *
 * @typedef {{type: 'text', text: string}
 *   | {type: 'reasoning', text: string}
 *   | {type: 'tool_call', id: string, name: string, arguments: unknown}
 *   | {type: 'tool_result', call_id: string, output: unknown, is_error: boolean}
 *   | {type: 'file', media_type: string, uri: string}} Part
 */

/**
 * A reply as persist answers it.
 *
 * @typedef {object} ReplyState
 * @property {string} id The reply's item id (the assistant UIMessage's id).
 * @property {string} conversation_id
 * @property {'in_progress' | 'completed' | 'incomplete'} status
 * @property {string | null} end How it ended, in persist's words (`complete`, `stopped`, `interrupted`), null while written.
 * @property {string} offset The reply's end: where the next append goes (`PART` or `PART.CHARS`).
 * @property {boolean} written False when persist already had this exact write (a retry).
 */

/** An error answer of persist serve (`{"error": {"code", "message", ...}}`), with its HTTP status. */
export class PersistApiError extends Error {
  /**
   * @param {number} status
   * @param {any} body The parsed body (or the raw text when it was not JSON).
   * @param {string} what The request, for the message.
   */
  constructor(status, body, what) {
    const error = body && typeof body === 'object' ? body.error ?? {} : {};
    super(`${what}: ${status} ${error.code ?? ''} ${error.message ?? (typeof body === 'string' ? body : '')}`.trim());
    this.name = 'PersistApiError';
    /** @type {number} */
    this.status = status;
    /** @type {string | undefined} `offset_gap`, `reply_stopped`, `reply_running`, `request_too_large`, ... */
    this.code = error.code ?? undefined;
    /** The whole `error` object (`offset`, `reply_id`, `status`, ... by code). */
    this.error = error;
  }
}


/** A minimal JSON client of persist serve: a base URL and an API key. */
export class PersistClient {
  /**
   * @param {object} options
   * @param {string} options.baseUrl persist serve's base, e.g. `http://127.0.0.1:8080` (no `/v1`).
   * @param {string} [options.apiKey] Sent as `Authorization: Bearer …`.
   * @param {typeof fetch} [options.fetch] For tests and custom agents.
   * @param {number} [options.timeoutMs] Per request (not for streams): 30 s by default.
   */
  constructor({ baseUrl, apiKey, fetch: fetchImpl = globalThis.fetch, timeoutMs = 30_000 }) {
    this.baseUrl = baseUrl.replace(/\/+$/, '');
    this.apiKey = apiKey;
    this.fetch = fetchImpl;
    this.timeoutMs = timeoutMs;
  }

  /** Headers for a request: the key, and `extra`. */
  headers(extra = {}) {
    return { ...(this.apiKey ? { authorization: `Bearer ${this.apiKey}` } : {}), ...extra };
  }

  /**
   * A JSON request. Answers the parsed body (`null` for a 204).
   *
   * @param {string} method
   * @param {string} path Starting with `/`.
   * @param {{body?: unknown, headers?: Record<string, string>, signal?: AbortSignal}} [options]
   * @returns {Promise<any>}
   * @throws {PersistApiError} For a non-2xx answer; a network failure throws as `fetch` does (a `TypeError`), a timeout as a `TimeoutError`.
   */
  async request(method, path, { body, headers, signal } = {}) {
    const signals = [AbortSignal.timeout(this.timeoutMs)];
    if (signal) signals.push(signal);
    const response = await this.fetch(`${this.baseUrl}${path}`, {
      method,
      headers: this.headers(body === undefined ? headers : { 'content-type': 'application/json', ...headers }),
      body: body === undefined ? undefined : JSON.stringify(body),
      signal: AbortSignal.any(signals),
    });
    const text = await response.text();
    let parsed = null;
    if (text !== '') {
      try {
        parsed = JSON.parse(text);
      } catch {
        parsed = text;
      }
    }
    if (!response.ok) throw new PersistApiError(response.status, parsed, `${method} ${path}`);
    return parsed;
  }

  /**
   * The conversation of this id (the AI SDK's chat id), created when the caller has none:
   * `PUT /v1/persist/conversations/{id}`. Idempotent.
   *
   * @param {string} id
   * @param {Record<string, string>} [metadata] Used only when it is created.
   */
  ensureConversation(id, metadata) {
    return this.request('PUT', `/v1/persist/conversations/${encodeURIComponent(id)}`, {
      body: metadata ? { metadata } : {},
    });
  }
}


/** Whether `error` is a network failure (or a per-request timeout): the append may or may not have been written. */
function isTransient(error) {
  if (error instanceof PersistApiError) return error.status === 429 || error.status >= 500;
  return error?.name === 'TypeError' || error?.name === 'TimeoutError' || error?.code === 'ECONNRESET';
}


const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

/**
 * Holds `GET .../signals` (Server-Sent Events) and calls `heard` on a `stop` or an `end`; held
 * again when the connection drops, until `signal` aborts. A 404 ends it: the writer's own calls
 * tell what happened.
 */
async function watchSignals(client, path, signal, heard) {
  while (!signal.aborted) {
    try {
      const response = await client.fetch(`${client.baseUrl}${path}`, {
        headers: client.headers({ accept: 'text/event-stream' }),
        signal,
      });
      if (!response.ok) {
        await response.body?.cancel();
        return;
      }
      for await (const event of sseEvents(response.body)) {
        if (event.event === 'stop') heard('stopped', 'signals');
        else if (event.event === 'end') heard(JSON.parse(event.data || '{}').status ?? 'ended', 'signals');
      }
    } catch {
      if (signal.aborted) return;
    }
    await sleep(500);
  }
}

/** persist serve's routes as the writer's transport, for the reply `replyId` of `conversationId`. */
function httpTransport(client, conversationId, replyId) {
  const path = (action) =>
    `/v1/persist/conversations/${encodeURIComponent(conversationId)}/replies/${encodeURIComponent(replyId)}/${action}`;
  return {
    append: (offset, parts) => client.request('POST', path('parts'), { body: { offset, parts } }),
    renew: () => client.request('POST', path('renew')),
    finish: (how) => client.request('POST', path('finish'), { body: how }),
    watchStop(heard) {
      const watching = new AbortController();
      watchSignals(client, path('signals'), watching.signal, heard);
      return () => watching.abort();
    },
    transient: isTransient,
    ended(error) {
      if (!(error instanceof PersistApiError)) return null;
      if (error.code === 'reply_stopped') return 'stopped';
      return error.code === 'reply_ended' ? (error.error.status ?? 'ended') : null;
    },
  };
}

/**
 * One live reply's writer over HTTP: persist-store's `LiveReply` (writes sent one request at a
 * time, joined while one is in flight, a network failure retried with the same offset and
 * parts, which persist writes once; the lease renewed while idle), with persist serve as its
 * transport. `signal` aborts when a client stopped the reply (`ReplyStoppedError`), when
 * persist ended it without this writer (`ReplyEndedError`), or when a write failed for good.
 */
export class LiveReply extends Writer {
  /**
   * Starts a reply with the user's turn (`POST .../replies`) and answers its writer.
   *
   * @param {PersistClient} client
   * @param {string} conversationId
   * @param {object} [options]
   * @param {object[]} [options.items] The turn's items (the user's message), written with the reservation.
   * @param {number} [options.leaseSeconds] The writer's lease (persist's default: 30 s).
   * @param {string} [options.idempotencyKey] A start sent again with this key answers the first one's reply.
   * @param {boolean} [options.watchSignals] Hold `GET .../signals` to hear of a stop at once (default true).
   * @param {number} [options.renewEveryMs] How often the lease is renewed while idle (a third of it).
   * @param {(event: string, detail: object) => void} [options.log] `retry`, `stopped`, `ended`, `failed`.
   */
  static async start(client, conversationId, options = {}) {
    const { items = [], leaseSeconds, idempotencyKey, watchSignals: watch, ...rest } = options;
    const body = { items };
    if (leaseSeconds !== undefined) body.lease_seconds = leaseSeconds;
    const headers = idempotencyKey ? { 'idempotency-key': idempotencyKey } : undefined;
    const path = `/v1/persist/conversations/${encodeURIComponent(conversationId)}/replies`;
    const state = await client.request('POST', path, { body, headers });
    const leaseMs = (leaseSeconds ?? 30) * 1000;
    const reply = new LiveReply(httpTransport(client, conversationId, state.id), state, { ...rest, leaseMs, watch });
    reply.conversationId = conversationId;
    reply.items = state.items ?? [];
    return reply;
  }
}

/**
 * Server-Sent Events of a response body: `{event, data, id}` each (`event` is `message` when
 * not named; comments skipped).
 *
 * @param {ReadableStream<Uint8Array>} body
 * @returns {AsyncGenerator<{event: string, data: string, id: string | undefined}>}
 */
export async function* sseEvents(body) {
  const decoder = new TextDecoder();
  let buffer = '';
  let event = { event: 'message', data: [], id: undefined };
  for await (const bytes of body) {
    buffer += decoder.decode(bytes, { stream: true });
    let newline;
    while ((newline = buffer.search(/\r?\n/)) >= 0) {
      const line = buffer.slice(0, newline);
      buffer = buffer.slice(newline + (buffer[newline] === '\r' ? 2 : 1));
      if (line === '') {
        if (event.data.length > 0) yield { event: event.event, data: event.data.join('\n'), id: event.id };
        event = { event: 'message', data: [], id: undefined };
        continue;
      }
      if (line.startsWith(':')) continue;
      const colon = line.indexOf(':');
      const field = colon < 0 ? line : line.slice(0, colon);
      const value = colon < 0 ? '' : line.slice(colon + 1).replace(/^ /, '');
      if (field === 'data') event.data.push(value);
      else if (field === 'event') event.event = value;
      else if (field === 'id') event.id = value;
    }
  }
}

