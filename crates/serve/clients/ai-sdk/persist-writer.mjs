// A live reply written into persist serve over HTTP, from a Node (or any fetch-capable) AI SDK
// app: start it with the user's turn, append what the model streams at the writer's offset,
// renew the lease while a tool runs, finish it (or end it incomplete), and hear of a stop from
// any client on any instance. Copy this file into your app; it needs nothing but `fetch`.
//
//   const persist = new PersistClient({ baseUrl: process.env.PERSIST_URL, apiKey: process.env.PERSIST_KEY });
//   const reply = await LiveReply.start(persist, chatId, { items: [userItem] });
//   const result = streamText({ model, messages, abortSignal: reply.signal });
//   await pipeUiStreamToPersist(result.toUIMessageStream(), reply);
//
// Followers read the reply from persist, not from this process: `GET
// /v1/persist/conversations/{id}/stream` (the AI SDK's UI message stream, resumable on any
// instance). If this process dies, persist marks the reply interrupted once its lease runs out.

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

/** The reply was stopped by a client (persist has ended it, stopped, with what was written). */
export class ReplyStoppedError extends Error {
  constructor(replyId) {
    super(`reply ${replyId} was stopped by a client`);
    this.name = 'ReplyStoppedError';
    this.code = 'reply_stopped';
  }
}

/** The reply ended otherwise than by this writer: its lease ran out (it was settled interrupted), or another writer ended it. */
export class ReplyEndedError extends Error {
  constructor(replyId, status) {
    super(`reply ${replyId} has ended (${status ?? 'ended'}) without this writer`);
    this.name = 'ReplyEndedError';
    this.code = 'reply_ended';
    this.status = status;
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

/** Approximate bytes a part takes in a request body. */
function sizeOf(part) {
  return part.type === 'text' || part.type === 'reasoning' ? part.text.length + 32 : JSON.stringify(part).length;
}

/** persist's lease when a start names none. */
const DEFAULT_LEASE_SECONDS = 30;

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

/**
 * One live reply's writer. Writes are queued and sent one request at a time: while an append
 * is in flight, new deltas wait and are joined (text to text, reasoning to reasoning) into the
 * next append. A network failure is retried with the same offset and parts, which persist
 * writes once (`written: false` for a repeat). While nothing is sent, a timer renews the lease.
 *
 * `signal` aborts when a client stopped the reply (`ReplyStoppedError`), when persist ended it
 * without this writer (`ReplyEndedError`: the lease ran out), or when a write failed for good:
 * pass it to the model call (`streamText({ abortSignal: reply.signal })`).
 */
export class LiveReply {
  /** @type {PersistClient} */ #client;
  /** @type {Part[]} */ #queue = [];
  /** @type {Promise<void> | null} */ #inFlight = null;
  #controller = new AbortController();
  #signals = new AbortController();
  #renewTimer = null;
  #closed = false; // finish/interrupt called: no more writes
  /** @type {Promise<ReplyState> | null} */ #ending = null;
  #ended = false; // persist says the reply has ended
  #failure = null;
  #options;
  /** @type {ReplyState} */ #state;
  /** @type {((error?: Error) => void)[]} */ #waiters = [];

  /**
   * Starts a reply in the conversation, after `items` (the user's turn, written in the same
   * call): `POST /v1/persist/conversations/{id}/replies`.
   *
   * @param {PersistClient} client
   * @param {string} conversationId
   * @param {object} [options]
   * @param {object[]} [options.items] Responses API input items, e.g. `{id, type: 'message', role: 'user', content: 'hi'}` (use the UIMessage id as `id`).
   * @param {number} [options.leaseSeconds] 1 to 3600 (persist's default: 30). A writer silent for longer is taken for dead.
   * @param {string} [options.idempotencyKey] The same start sent again answers the same reply.
   * @param {number} [options.renewEveryMs] Idle time before a renew: a third of the lease by default.
   * @param {boolean} [options.watchSignals] Hold `GET .../signals` to hear of a stop at once (default true); else a stop is heard on the next append or renew.
   * @param {number} [options.maxBatchBytes] The most text one append carries (default 256 KiB).
   * @param {number} [options.maxBatchParts] The most parts one append carries (default 500; persist takes 1000).
   * @param {(event: string, detail: object) => void} [options.log] Told of `stopped`, `ended`, `retry`, `failed`.
   * @returns {Promise<LiveReply>}
   * @throws {PersistApiError} e.g. 409 `reply_running` (`error.reply_id`): a reply is being generated in the conversation.
   */
  static async start(client, conversationId, options = {}) {
    const { items = [], leaseSeconds, idempotencyKey } = options;
    const body = { items };
    if (leaseSeconds !== undefined) body.lease_seconds = leaseSeconds;
    const headers = idempotencyKey ? { 'idempotency-key': idempotencyKey } : undefined;
    const path = `/v1/persist/conversations/${encodeURIComponent(conversationId)}/replies`;
    const state = await client.request('POST', path, { body, headers });
    return new LiveReply(client, state, options);
  }

  /** @private Use {@link LiveReply.start}. */
  constructor(client, state, options) {
    this.#client = client;
    this.#state = state;
    const lease = (options.leaseSeconds ?? DEFAULT_LEASE_SECONDS) * 1000;
    this.#options = {
      leaseMs: lease,
      renewEveryMs: options.renewEveryMs ?? Math.max(250, Math.floor(lease / 3)),
      maxBatchBytes: options.maxBatchBytes ?? 256 * 1024,
      maxBatchParts: options.maxBatchParts ?? 500,
      log: options.log ?? (() => {}),
    };
    /** The items persist stored before the reply (the user's turn), as answered. */
    this.items = state.items ?? [];
    this.#armRenew();
    if (options.watchSignals !== false) this.#watchSignals();
  }

  /** The reply's item id: the assistant message's id in every UI stream of it. */
  get id() {
    return this.#state.id;
  }

  get conversationId() {
    return this.#state.conversation_id;
  }

  /** The last state persist answered (its `offset` is where the next append goes). */
  get state() {
    return { ...this.#state };
  }

  /** Aborts when the reply must stop being generated; its `reason` says why. */
  get signal() {
    return this.#controller.signal;
  }

  /** True once a client stopped the reply. */
  get stopped() {
    return this.#controller.signal.reason instanceof ReplyStoppedError;
  }

  /** Appends text (a model's delta). */
  text(delta) {
    if (delta) this.write({ type: 'text', text: delta });
  }

  /** Appends reasoning (a delta). */
  reasoning(delta) {
    if (delta) this.write({ type: 'reasoning', text: delta });
  }

  /** Appends a tool call; `args` is its JSON input. */
  toolCall(id, name, args) {
    this.write({ type: 'tool_call', id, name, arguments: args ?? {} });
  }

  /** Appends the output of tool call `callId` (an error's when `isError`). */
  toolResult(callId, output, { isError = false } = {}) {
    this.write({ type: 'tool_result', call_id: callId, output: output ?? null, is_error: isError });
  }

  /** Appends a file (a URL or a data: URL). */
  file(mediaType, uri) {
    this.write({ type: 'file', media_type: mediaType, uri });
  }

  /**
   * Queues a part; it is sent with the next append. Writes after the reply ended (a stop) are
   * dropped: watch {@link signal}.
   *
   * @param {Part} part
   */
  write(part) {
    if (this.#closed) throw new Error('this reply was finished: no more writes');
    if (this.#ended || this.#failure) return;
    const last = this.#queue.at(-1);
    const joins =
      (part.type === 'text' || part.type === 'reasoning') &&
      last?.type === part.type &&
      last.text.length + part.text.length <= this.#options.maxBatchBytes;
    if (joins) last.text += part.text;
    else this.#queue.push({ ...part });
    this.#pump();
  }

  /** Resolves once everything queued so far is written (or dropped because the reply ended); rejects if a write failed for good. */
  flush() {
    if (this.#failure) return Promise.reject(this.#failure);
    if (!this.#inFlight && (this.#queue.length === 0 || this.#ended)) return Promise.resolve();
    return new Promise((resolve, reject) => this.#waiters.push((error) => (error ? reject(error) : resolve())));
  }

  /**
   * Ends the reply as complete, with what is queued as its last parts (one request when they
   * fit). Called again (or after {@link interrupt}), it answers the first call's result. A reply
   * a client stopped is left as persist ended it.
   *
   * @returns {Promise<ReplyState>}
   */
  finish() {
    return this.#end({ status: 'completed' });
  }

  /**
   * Ends the reply incomplete (interrupted), keeping what was written: the model failed, or
   * the app gave up. A reply a client stopped is left as persist ended it.
   *
   * @param {string} [reason] Stored with the reply (at most 4096 bytes).
   * @returns {Promise<ReplyState>}
   */
  interrupt(reason) {
    const body = { status: 'incomplete' };
    if (reason) body.reason = reason.slice(0, 4000);
    return this.#end(body);
  }

  /** The first finish or interrupt; later calls answer the same promise. */
  #end(body) {
    this.#ending ??= this.#endOnce(body);
    return this.#ending;
  }

  async #endOnce(body) {
    this.#closed = true;
    try {
      // Drain all but the last batch, which goes with the finish.
      await this.#idle();
      while (!this.#ended && this.#queue.length > 0) {
        const batch = this.#takeBatch();
        if (this.#queue.length === 0) {
          body = { ...body, offset: this.#state.offset, parts: batch };
          break;
        }
        await this.#append(batch);
      }
      if (this.#failure) throw this.#failure;
      if (!this.#ended) {
        const state = await this.#retrying('finish', () => this.#post('finish', body));
        this.#state = { ...this.#state, ...state };
        this.#ended = true;
      }
      return this.state;
    } catch (error) {
      if (!(error instanceof PersistApiError) || !this.#settle(error, 'finish')) {
        this.#fail(error);
        throw error;
      }
      return this.state;
    } finally {
      this.#shutdown();
    }
  }

  /** Waits until no append is in flight. */
  async #idle() {
    while (this.#inFlight) await this.#inFlight;
  }

  #takeBatch() {
    const batch = [];
    let bytes = 0;
    while (this.#queue.length > 0 && batch.length < this.#options.maxBatchParts) {
      const size = sizeOf(this.#queue[0]);
      if (batch.length > 0 && bytes + size > this.#options.maxBatchBytes) break;
      batch.push(this.#queue.shift());
      bytes += size;
    }
    return batch;
  }

  #pump() {
    if (this.#inFlight || this.#closed || this.#ended || this.#failure) {
      if (!this.#inFlight) this.#wake();
      return;
    }
    if (this.#queue.length === 0) {
      this.#wake();
      return;
    }
    const batch = this.#takeBatch();
    this.#inFlight = this.#append(batch)
      .catch((error) => this.#fail(error))
      .finally(() => {
        this.#inFlight = null;
        this.#pump();
      });
  }

  #wake(error = this.#failure ?? undefined) {
    const waiters = this.#waiters.splice(0);
    for (const waiter of waiters) waiter(error);
  }

  /** One append, retried on network failure with the same offset and parts. */
  async #append(parts) {
    const body = { offset: this.#state.offset, parts };
    try {
      const state = await this.#retrying('append', () => this.#post('parts', body));
      this.#state = { ...this.#state, ...state };
      this.#armRenew();
    } catch (error) {
      if (error instanceof PersistApiError && this.#settle(error, 'append')) return;
      throw error;
    }
  }

  /** A 409 that says the reply has ended (stopped, or settled): true when handled. `via` names the call. */
  #settle(error, via) {
    if (error.code === 'reply_stopped') {
      this.#onStopped(via);
      return true;
    }
    if (error.code === 'reply_ended') {
      this.#onEnded(error.error.status, via);
      return true;
    }
    return false;
  }

  /** @param {string} via What told of the stop: `signals`, `append`, `renew` or `finish`. */
  #onStopped(via) {
    if (this.#ended && this.stopped) return;
    this.#ended = true;
    this.#state = { ...this.#state, status: 'incomplete', end: 'stopped' };
    this.#queue.length = 0;
    this.#options.log('stopped', { reply_id: this.id, via });
    this.#controller.abort(new ReplyStoppedError(this.id));
    this.#shutdown();
    this.#wake();
  }

  /** @param {string} [status] `completed`/`incomplete` (a 409's), or persist's end name (a signal's). */
  #onEnded(status, via) {
    if (this.#ended) return;
    this.#ended = true;
    const completed = status === 'completed' || status === 'complete';
    this.#state = { ...this.#state, status: completed ? 'completed' : 'incomplete' };
    this.#queue.length = 0;
    this.#options.log('ended', { reply_id: this.id, status, via });
    this.#controller.abort(new ReplyEndedError(this.id, status));
    this.#shutdown();
    this.#wake();
  }

  #fail(error) {
    if (this.#failure) return;
    this.#failure = error;
    this.#queue.length = 0;
    this.#options.log('failed', { reply_id: this.id, error: String(error?.message ?? error) });
    if (!this.#controller.signal.aborted) this.#controller.abort(error);
    this.#shutdown();
    this.#wake(error);
  }

  /**
   * `call`, tried again on a network failure (or a 5xx/429) until the lease would run out:
   * persist writes a repeated append or finish once.
   */
  async #retrying(what, call) {
    const deadline = Date.now() + this.#options.leaseMs;
    for (let attempt = 0; ; attempt += 1) {
      try {
        return await call();
      } catch (error) {
        if (!isTransient(error) || Date.now() + 100 > deadline) throw error;
        const wait = Math.min(2000, 50 * 2 ** attempt, Math.max(0, deadline - Date.now() - 50));
        this.#options.log('retry', { reply_id: this.id, what, attempt: attempt + 1, error: String(error?.message ?? error) });
        await sleep(wait);
      }
    }
  }

  #post(action, body) {
    const path = `/v1/persist/conversations/${encodeURIComponent(this.conversationId)}/replies/${encodeURIComponent(this.id)}/${action}`;
    return this.#client.request('POST', path, { body });
  }

  /** Renews the lease after `renewEveryMs` without a write. */
  #armRenew() {
    clearTimeout(this.#renewTimer);
    if (this.#ended || this.#failure) return;
    this.#renewTimer = setTimeout(() => this.#renew(), this.#options.renewEveryMs);
    this.#renewTimer.unref?.(); // the lease alone keeps no process alive
  }

  async #renew() {
    if (this.#ended || this.#failure) return;
    if (this.#inFlight) {
      // The append in flight renews the lease.
      this.#armRenew();
      return;
    }
    try {
      const state = await this.#retrying('renew', () => this.#post('renew', undefined));
      this.#state = { ...this.#state, expires_at: state.expires_at };
    } catch (error) {
      if (!(error instanceof PersistApiError && this.#settle(error, 'renew'))) this.#fail(error);
      return;
    }
    this.#armRenew();
  }

  /** Holds `GET …/signals`: a `stop` event aborts the model call at once, before the next append tells. */
  async #watchSignals() {
    const path = `/v1/persist/conversations/${encodeURIComponent(this.conversationId)}/replies/${encodeURIComponent(this.id)}/signals`;
    while (!this.#ended && !this.#failure && !this.#signals.signal.aborted) {
      try {
        const response = await this.#client.fetch(`${this.#client.baseUrl}${path}`, {
          headers: this.#client.headers({ accept: 'text/event-stream' }),
          signal: this.#signals.signal,
        });
        if (!response.ok) {
          await response.body?.cancel();
          return; // 404: the writer's own calls tell what happened.
        }
        for await (const event of sseEvents(response.body)) {
          if (event.event === 'stop') this.#onStopped('signals');
          // `end` for this writer's own finish is no news; else persist ended it (the lease ran out).
          else if (event.event === 'end' && !this.#closed) this.#onEnded(JSON.parse(event.data || '{}').status, 'signals');
          if (this.#ended) return;
        }
      } catch {
        if (this.#signals.signal.aborted) return;
      }
      await sleep(500); // the connection dropped: hold it again
    }
  }

  #shutdown() {
    clearTimeout(this.#renewTimer);
    this.#signals.abort();
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

/**
 * Writes an AI SDK UI message stream (`streamText(...).toUIMessageStream()`) into a live reply:
 * text and reasoning deltas, tool calls (`tool-input-available`) and their outputs or errors,
 * files. At `finish` the reply is finished complete (incomplete if the stream carried an
 * `error`); at `abort`, or a stream that ends or fails without `finish`, it is ended
 * incomplete with the reason. A reply a client stopped stays as persist ended it.
 *
 * The stream is consumed here: followers read the reply from persist (`GET
 * /v1/persist/conversations/{id}/stream`), on any instance.
 *
 * @param {ReadableStream<any> | AsyncIterable<any>} uiMessageStream UI message chunks.
 * @param {LiveReply} reply
 * @param {{onChunk?: (chunk: any) => void}} [options]
 * @returns {Promise<ReplyState>} How the reply ended.
 */
export async function pipeUiStreamToPersist(uiMessageStream, reply, { onChunk } = {}) {
  let errorText;
  try {
    for await (const chunk of uiMessageStream) {
      onChunk?.(chunk);
      switch (chunk.type) {
        case 'text-delta':
          reply.text(chunk.delta);
          break;
        case 'reasoning-delta':
          reply.reasoning(chunk.delta);
          break;
        case 'tool-input-available':
          reply.toolCall(chunk.toolCallId, chunk.toolName, chunk.input);
          break;
        case 'tool-output-available':
          if (!chunk.preliminary) reply.toolResult(chunk.toolCallId, chunk.output);
          break;
        case 'tool-output-error':
          reply.toolResult(chunk.toolCallId, chunk.errorText, { isError: true });
          break;
        case 'file':
          reply.file(chunk.mediaType, chunk.url);
          break;
        case 'error':
          errorText = chunk.errorText ?? 'error';
          break;
        case 'abort':
          return await reply.interrupt(chunk.reason ? `aborted: ${chunk.reason}` : 'aborted');
        case 'finish':
          return errorText === undefined ? await reply.finish() : await reply.interrupt(errorText);
        default:
          break; // start, steps, tool-input-start/-delta, sources, data-*: not stored as parts
      }
    }
    return await reply.interrupt(errorText ?? 'the model stream ended without finish');
  } catch (error) {
    if (reply.signal.aborted) return reply.interrupt('aborted');
    await reply.interrupt(`the model stream failed: ${error?.message ?? error}`).catch(() => {});
    throw error;
  }
}
