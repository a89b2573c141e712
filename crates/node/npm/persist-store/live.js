// A live reply's writer: parts appended at persist's offsets as a model streams them (one append
// in flight, the writes meanwhile batched), the lease renewed while the model is silent (a tool
// running), a transient failure retried within the lease (persist writes a repeated append
// once), and `signal` aborted when a client on any process stops the reply. If the writing
// process dies, the lease lapses and persist settles the reply as interrupted.
//
// The writer reaches the store through a transport: in process (`LiveReply.start(store, ...)`,
// the addon's calls) or over HTTP (persist serve's routes: crates/serve/clients/ai-sdk's
// persist-writer.mjs gives one), so both write alike.
import { ReplyStopped, Unavailable } from './errors.js';

/** The reply ended otherwise than by this writer (its lease lapsed, or another writer ended it). */
export class ReplyEnded extends Error {
  constructor(replyId, end) {
    super(`reply ${replyId} has ended (${end ?? 'ended'}) without this writer`);
    this.name = 'ReplyEnded';
    this.code = 'reply_ended';
    this.end = end;
  }
}

export const DEFAULT_LEASE_MS = 30_000;

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

function sizeOf(part) {
  return part.type === 'text' || part.type === 'reasoning' ? part.text.length + 32 : JSON.stringify(part).length;
}

/**
 * The addon's calls as a writer's transport, for the reply `replyId` of `threadId`.
 *
 * A transport: `append(offset, parts)`, `renew()`, `finish({ status, reason, offset, parts })`
 * (each answering the reply's state), `watchStop(heard)` (calls `heard(how, via)` when a client
 * stops the reply, `"stopped"`, or it ends otherwise; answers a function that stops watching),
 * `transient(error)` (worth retrying) and `ended(error)` (a refusal that tells the reply ended:
 * `"stopped"`, how it ended, or null).
 */
export function storeTransport(store, threadId, replyId) {
  return {
    append: (offset, parts) => store.appendReply(threadId, replyId, offset, parts),
    renew: () => store.renewReply(threadId, replyId),
    finish: (how) => store.finishReply(threadId, replyId, how),
    watchStop(heard) {
      let watching = true;
      store.watchStop(threadId, replyId).then(
        (how) => watching && heard(how, 'watch'),
        () => {}, // the writer's own calls tell what happened
      );
      return () => {
        watching = false;
      };
    },
    transient: (error) => error instanceof Unavailable,
    ended: (error) => (error instanceof ReplyStopped ? 'stopped' : error?.code === 'message_complete' ? 'ended' : null),
  };
}

export class LiveReply {
  #transport;
  #state;
  #controller = new AbortController();
  #queue = []; // { part, writes }: text and reasoning joined, with how many writes each holds
  #inFlight = null;
  #waiters = [];
  #renewTimer = null;
  #unwatch = null;
  #scheduled = false;
  #closed = false; // finish or interrupt called: no more writes
  #ended = false; // the store says the reply has ended
  #failure = null;
  #ending = null;
  #writes = 0;
  #storedWrites = 0;
  #options;

  /** Starts a reply on `threadId` (after `messages`, the user's turn) and answers its writer. */
  static async start(store, threadId, { messages, replyId, idempotencyKey, leaseMs, metadata, ...options } = {}) {
    const state = await store.startReply(threadId, { messages, replyId, idempotencyKey, leaseMs, metadata });
    return LiveReply.of(store, threadId, state, { leaseMs, ...options });
  }

  /** The writer of a reply `store.startReply` started (its answer: `state`). */
  static of(store, threadId, state, options = {}) {
    const reply = new LiveReply(storeTransport(store, threadId, state.id), state, options);
    reply.threadId = threadId;
    return reply;
  }

  /**
   * The writer of the reply `state` through `transport` (see `storeTransport`). Options:
   * `leaseMs` (as started; 30 s by default), `renewEveryMs` (a third of it), `maxBatchBytes`,
   * `maxBatchParts`, `watch` (hear a stop at once: true by default; else on the next append or
   * renewal), `log(event, detail)` (`retry`, `stopped`, `ended`, `failed`).
   */
  constructor(transport, state, options = {}) {
    this.#transport = transport;
    this.#state = state;
    const leaseMs = options.leaseMs ?? DEFAULT_LEASE_MS;
    this.#options = {
      leaseMs,
      renewEveryMs: options.renewEveryMs ?? Math.max(250, Math.floor(leaseMs / 3)),
      maxBatchBytes: options.maxBatchBytes ?? 256 * 1024,
      maxBatchParts: options.maxBatchParts ?? 500,
      log: options.log ?? (() => {}),
    };
    this.#armRenew();
    if (options.watch !== false) {
      this.#unwatch = transport.watchStop((how, via) => {
        if (how === 'stopped' || !this.#closed) this.#onEnded(how, via);
      });
    }
  }

  /** The reply's id (the assistant `UIMessage`'s). */
  get id() {
    return this.#state.id;
  }

  /** The reply as the store last answered (`status`, `end`, `offset`, ...). */
  get state() {
    return { ...this.#state };
  }

  /** Aborted when a client stops the reply, it ends without this writer, or a write fails: give it to the model call. */
  get signal() {
    return this.#controller.signal;
  }

  /** Whether a client stopped the reply. */
  get stopped() {
    return this.#controller.signal.reason instanceof ReplyStopped;
  }

  /** How many writes (`text`, `toolCall`, ... calls) this writer was given. */
  get writes() {
    return this.#writes;
  }

  /** How many of them are stored (`onStored(count)` is called as this grows). */
  get storedWrites() {
    return this.#storedWrites;
  }

  text(delta) {
    if (delta) this.write({ type: 'text', text: delta });
  }

  reasoning(delta) {
    if (delta) this.write({ type: 'reasoning', text: delta });
  }

  toolCall(id, name, args) {
    this.write({ type: 'tool_call', id, name, arguments: args ?? {} });
  }

  toolResult(callId, output, { isError = false } = {}) {
    this.write({ type: 'tool_result', call_id: callId, output: output ?? null, is_error: isError });
  }

  file(mediaType, uri) {
    this.write({ type: 'file', media_type: mediaType, uri });
  }

  /** Queues a part (a persist content block); text joins the text before it. */
  write(part) {
    if (this.#closed) throw new Error('this reply was finished: no more writes');
    if (this.#ended || this.#failure) return;
    this.#writes += 1;
    const last = this.#queue.at(-1);
    const joins =
      (part.type === 'text' || part.type === 'reasoning') &&
      last?.part.type === part.type &&
      last.part.text.length + part.text.length <= this.#options.maxBatchBytes;
    if (joins) {
      last.part.text += part.text;
      last.writes += 1;
    } else {
      this.#queue.push({ part: { ...part }, writes: 1 });
    }
    // Sent once what arrives in this turn of the event loop is queued: a model's chunks that
    // come together (a buffered network read) go in one append.
    if (!this.#scheduled) {
      this.#scheduled = true;
      setImmediate(() => {
        this.#scheduled = false;
        this.#pump();
      });
    }
  }

  /** Resolves once every part written so far is stored. */
  flush() {
    if (this.#failure) return Promise.reject(this.#failure);
    if (!this.#inFlight && !this.#scheduled && (this.#queue.length === 0 || this.#ended)) return Promise.resolve();
    return new Promise((resolve, reject) => this.#waiters.push((error) => (error ? reject(error) : resolve())));
  }

  /** Ends the reply complete, with what is queued. */
  finish() {
    return this.#end({ status: 'completed' });
  }

  /** Ends the reply interrupted (kept, with what was written). */
  interrupt(reason) {
    return this.#end({ status: 'incomplete', ...(reason ? { reason: String(reason).slice(0, 4000) } : {}) });
  }

  #end(how) {
    this.#ending ??= this.#endOnce(how);
    return this.#ending;
  }

  async #endOnce(how) {
    this.#closed = true;
    try {
      while (this.#inFlight) await this.#inFlight;
      let last;
      while (!this.#ended && !this.#failure && this.#queue.length > 0) {
        const batch = this.#takeBatch();
        if (this.#queue.length === 0) {
          last = batch;
          break;
        }
        await this.#append(batch);
      }
      if (this.#failure) throw this.#failure;
      if (!this.#ended) {
        const args = last ? { ...how, offset: this.#state.offset, parts: last.parts } : how;
        try {
          this.#state = { ...this.#state, ...(await this.#retrying('finish', () => this.#transport.finish(args))) };
          this.#ended = true;
          if (last) this.#stored(last.writes);
        } catch (error) {
          if (!this.#settle(error, 'finish')) throw error;
        }
      }
      return this.state;
    } catch (error) {
      this.#fail(error);
      throw error;
    } finally {
      this.#shutdown();
    }
  }

  /** The parts of the next append, and how many writes they hold. */
  #takeBatch() {
    const batch = { parts: [], writes: 0 };
    let bytes = 0;
    while (this.#queue.length > 0 && batch.parts.length < this.#options.maxBatchParts) {
      const size = sizeOf(this.#queue[0].part);
      if (batch.parts.length > 0 && bytes + size > this.#options.maxBatchBytes) break;
      const { part, writes } = this.#queue.shift();
      batch.parts.push(part);
      batch.writes += writes;
      bytes += size;
    }
    return batch;
  }

  #stored(writes) {
    this.#storedWrites += writes;
    this.onStored?.(this.#storedWrites);
  }

  #pump() {
    if (this.#inFlight) return;
    if (this.#closed || this.#ended || this.#failure || this.#queue.length === 0) {
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
    for (const waiter of this.#waiters.splice(0)) waiter(error);
  }

  async #append({ parts, writes }) {
    try {
      const state = await this.#retrying('append', () => this.#transport.append(this.#state.offset, parts));
      // A stop heard while the append was answered is the newer news: kept, not overwritten.
      if (!this.#ended) this.#state = { ...this.#state, ...state };
      this.#stored(writes);
      this.#armRenew();
    } catch (error) {
      if (!this.#settle(error, 'append')) throw error;
    }
  }

  /** Calls `call` again on a transient failure, within the lease (a repeated write is written once). */
  async #retrying(what, call) {
    const deadline = Date.now() + this.#options.leaseMs;
    for (let attempt = 0; ; attempt += 1) {
      try {
        return await call();
      } catch (error) {
        if (!this.#transport.transient(error) || Date.now() + 100 > deadline) throw error;
        const wait = Math.min(2000, 50 * 2 ** attempt, Math.max(0, deadline - Date.now() - 50));
        this.#options.log('retry', { reply_id: this.id, what, attempt: attempt + 1, error: String(error?.message ?? error) });
        await sleep(wait);
      }
    }
  }

  /** A refusal that tells the reply ended: stopped by a client, or ended without this writer. */
  #settle(error, via) {
    const how = this.#transport.ended(error);
    if (how === null) return false;
    this.#onEnded(how, via);
    return true;
  }

  #onEnded(how, via) {
    if (this.#ended) return;
    this.#ended = true;
    this.#queue.length = 0;
    if (how === 'stopped') {
      this.#state = { ...this.#state, status: 'incomplete', end: 'stopped' };
      this.#options.log('stopped', { reply_id: this.id, via });
      this.#controller.abort(new ReplyStopped(`reply ${this.id} was stopped by a client`, 'reply_conflict'));
    } else {
      const completed = how === 'complete' || how === 'completed';
      this.#state = { ...this.#state, status: completed ? 'completed' : 'incomplete', end: completed ? 'complete' : how };
      this.#options.log('ended', { reply_id: this.id, status: how, via });
      this.#controller.abort(new ReplyEnded(this.id, how));
    }
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

  #armRenew() {
    clearTimeout(this.#renewTimer);
    if (this.#ended || this.#failure) return;
    this.#renewTimer = setTimeout(() => this.#renew(), this.#options.renewEveryMs);
    this.#renewTimer.unref?.(); // the lease alone keeps no process alive
  }

  async #renew() {
    if (this.#ended || this.#failure) return;
    if (!this.#inFlight) {
      try {
        const state = await this.#retrying('renew', () => this.#transport.renew());
        if (this.#ended) return;
        this.#state = { ...this.#state, ...state, offset: this.#state.offset };
      } catch (error) {
        if (!this.#settle(error, 'renew')) this.#fail(error);
        return;
      }
    }
    this.#armRenew();
  }

  #shutdown() {
    clearTimeout(this.#renewTimer);
    this.#unwatch?.();
    this.#unwatch = null;
  }
}
