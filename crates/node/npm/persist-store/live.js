// A live reply's writer, in process: parts appended at persist's offsets as a model streams
// them (one append in flight, deltas batched meanwhile), the lease renewed while the model is
// silent (a tool running), and `signal` aborted when a client on any process stops the reply.
// If this process dies, the lease lapses and persist settles the reply as interrupted.
import { ReplyStopped } from './errors.js';

/** The reply ended otherwise than by this writer (its lease lapsed, or another writer ended it). */
export class ReplyEnded extends Error {
  constructor(replyId, end) {
    super(`reply ${replyId} has ended (${end ?? 'ended'}) without this writer`);
    this.name = 'ReplyEnded';
    this.code = 'reply_ended';
    this.end = end;
  }
}

const DEFAULT_LEASE_MS = 30_000;

function sizeOf(part) {
  return part.type === 'text' || part.type === 'reasoning' ? part.text.length + 32 : JSON.stringify(part).length;
}

export class LiveReply {
  #store;
  #state;
  #controller = new AbortController();
  #queue = [];
  #inFlight = null;
  #waiters = [];
  #renewTimer = null;
  #closed = false;
  #ended = false;
  #failure = null;
  #ending = null;
  #scheduled = false;
  #writes = 0;
  #storedWrites = 0;
  #options;

  /**
   * Starts a reply on `threadId` after `messages` (the user's turn, `UIMessage`s), and answers
   * its writer.
   */
  static async start(store, threadId, { messages, replyId, idempotencyKey, leaseMs, metadata, ...options } = {}) {
    const state = await store.startReply(threadId, { messages, replyId, idempotencyKey, leaseMs, metadata });
    return new LiveReply(store, threadId, state, { leaseMs: leaseMs ?? DEFAULT_LEASE_MS, ...options });
  }

  constructor(store, threadId, state, options) {
    this.#store = store;
    this.threadId = threadId;
    this.#state = state;
    this.#options = {
      renewEveryMs: options.renewEveryMs ?? Math.max(250, Math.floor(options.leaseMs / 3)),
      maxBatchBytes: options.maxBatchBytes ?? 256 * 1024,
      maxBatchParts: options.maxBatchParts ?? 500,
    };
    this.#armRenew();
    this.#watchStop();
  }

  /** The reply's id (the assistant `UIMessage`'s). */
  get id() {
    return this.#state.id;
  }

  /** The reply as persist last answered (`status`, `end`, `offset`, ...). */
  get state() {
    return { ...this.#state };
  }

  /** Aborted when the reply is stopped by a client, ends without this writer, or fails: give it to the model call. */
  get signal() {
    return this.#controller.signal;
  }

  /** How many writes (`text`, `toolCall`, ... calls) this writer was given. */
  get writes() {
    return this.#writes;
  }

  /** How many of them are stored (`onStored(count)` is called as this grows). */
  get storedWrites() {
    return this.#storedWrites;
  }

  /** Whether a client stopped the reply. */
  get stopped() {
    return this.#controller.signal.reason instanceof ReplyStopped;
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
    const joins = (part.type === 'text' || part.type === 'reasoning') && last?.part.type === part.type;
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
    if (!this.#inFlight && (this.#queue.length === 0 || this.#ended)) return Promise.resolve();
    return new Promise((resolve, reject) => this.#waiters.push((error) => (error ? reject(error) : resolve())));
  }

  /** Ends the reply complete, with what is queued. */
  finish() {
    return this.#end({ status: 'completed' });
  }

  /** Ends the reply interrupted (kept, with what was written). */
  interrupt(reason) {
    return this.#end({ status: 'incomplete', reason: reason ? String(reason).slice(0, 4000) : undefined });
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
          this.#state = await this.#store.finishReply(this.threadId, this.id, args);
          this.#ended = true;
          if (last) this.#stored(last.writes);
        } catch (error) {
          if (!this.#settle(error)) throw error;
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
      this.#state = await this.#store.appendReply(this.threadId, this.id, this.#state.offset, parts);
      this.#stored(writes);
      this.#armRenew();
    } catch (error) {
      if (!this.#settle(error)) throw error;
    }
  }

  /** A refusal that tells the reply ended: stopped by a client, or ended without this writer. */
  #settle(error) {
    if (error instanceof ReplyStopped) {
      this.#onEnded('stopped');
      return true;
    }
    if (error?.code === 'message_complete') {
      this.#onEnded('ended');
      return true;
    }
    return false;
  }

  #onEnded(end) {
    if (this.#ended) return;
    this.#ended = true;
    this.#queue.length = 0;
    if (end === 'stopped') {
      this.#state = { ...this.#state, status: 'incomplete', end: 'stopped' };
      this.#controller.abort(new ReplyStopped(`reply ${this.id} was stopped by a client`, 'reply_conflict'));
    } else {
      this.#state = { ...this.#state, status: end === 'complete' ? 'completed' : 'incomplete', end };
      this.#controller.abort(new ReplyEnded(this.id, end));
    }
    this.#shutdown();
    this.#wake();
  }

  #fail(error) {
    if (this.#failure) return;
    this.#failure = error;
    this.#queue.length = 0;
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
        this.#state = { ...this.#state, ...(await this.#store.renewReply(this.threadId, this.id)) };
      } catch (error) {
        if (!this.#settle(error)) this.#fail(error);
        return;
      }
    }
    this.#armRenew();
  }

  /** Hears a stop from any process (persist's stop signal), without waiting for the next append. */
  async #watchStop() {
    try {
      const heard = await this.#store.watchStop(this.threadId, this.id);
      if (!this.#closed || heard === 'stopped') this.#onEnded(heard);
    } catch {
      // The writer's own calls tell what happened.
    }
  }

  #shutdown() {
    clearTimeout(this.#renewTimer);
  }
}
