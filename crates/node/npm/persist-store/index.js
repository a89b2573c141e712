// persist in Node, in process. `Store.open(url)` opens a store (a SQLite file, the default, or a
// PostgreSQL database several processes share); every method answers a promise, worked on
// persist's own threads, never the event loop's. Messages are the AI SDK's `UIMessage`s,
// converted losslessly; replies are written live and followed, resumed and stopped from any
// process sharing the store. `index.d.ts` documents each method.
import { createRequire } from 'node:module';

import { addon } from './native.js';
import { InvalidInput, fromNative } from './errors.js';
import { LiveReply } from './live.js';

export * from './errors.js';
export { LiveReply, ReplyEnded, storeTransport } from './live.js';

/** The package's version (persist's). */
export const version = createRequire(import.meta.url)('./package.json').version;

/** `value` as the JSON text of a call's arguments (a value JSON cannot hold is bad input). */
function argumentsOf(value) {
  try {
    return JSON.stringify(value ?? {});
  } catch (error) {
    throw new InvalidInput(`the arguments cannot be sent as JSON: ${error.message}`, 'invalid_input');
  }
}

/** An async iterable over a native stream: each chunk parsed, `return()` closing it. */
class Chunks {
  #native;
  #done = false;
  #onChunk;

  constructor(native, onChunk) {
    this.#native = native;
    this.#onChunk = onChunk;
  }

  /** The next chunk, or null after the last. */
  async next() {
    if (this.#done) return { done: true, value: undefined };
    let text;
    try {
      text = await this.#native.next();
    } catch (error) {
      throw fromNative(error);
    }
    if (text === null) {
      this.#done = true;
      return { done: true, value: undefined };
    }
    const chunk = JSON.parse(text);
    this.#onChunk?.(chunk);
    return { done: false, value: chunk };
  }

  /** Stops reading: a `next()` waiting ends, and the stream answers nothing more. */
  async return() {
    this.close();
    return { done: true, value: undefined };
  }

  close() {
    this.#done = true;
    this.#native.close();
  }

  [Symbol.asyncIterator]() {
    return this;
  }
}

/** A reply followed as persist's parts; `offset` is where a client that has every chunk given resumes. */
export class ReplyFollower extends Chunks {
  /** @type {string} */
  offset;

  constructor(native, from) {
    super(native, (chunk) => {
      if (chunk.offset) this.offset = chunk.offset;
    });
    this.offset = from;
  }
}

/** The change feed; `position` is the last change's (`after` before the first). */
export class Feed extends Chunks {
  /** @type {number} */
  position;

  constructor(native, after) {
    super(native, (change) => {
      this.position = change.position;
    });
    this.position = after;
  }
}

/** A persist store. */
export class Store {
  #native;

  /** @private Use `Store.open`. */
  constructor(native) {
    this.#native = native;
  }

  /**
   * Opens the store at `url`: `sqlite:path/to/file.db` (the default `sqlite:persist.db`), a
   * `postgres://` URL, or `memory:`.
   */
  static async open(url = 'sqlite:persist.db', options = {}) {
    let native;
    try {
      native = new addon.NativeStore(String(url), argumentsOf(options));
    } catch (error) {
      throw fromNative(error);
    }
    const store = new Store(native);
    await store.call('ping');
    return store;
  }

  /** The same store, as `tenant` sees it (its threads, memory and feed only). */
  withTenant(tenant) {
    try {
      return new Store(this.#native.withTenant(String(tenant)));
    } catch (error) {
      throw fromNative(error);
    }
  }

  /** The store's URL, without a password. */
  get url() {
    return this.#native.url;
  }

  /** This handle's tenant, if any. */
  get tenant() {
    return this.#native.tenant ?? null;
  }

  /** Runs the addon's call `op` (what every method below does). */
  async call(op, args = {}) {
    const text = argumentsOf(args);
    let answer;
    try {
      answer = await this.#native.call(op, text);
    } catch (error) {
      throw fromNative(error);
    }
    return JSON.parse(answer);
  }

  #follow(kind, args) {
    try {
      return this.#native.follow(kind, argumentsOf(args));
    } catch (error) {
      throw fromNative(error);
    }
  }

  /** Closes the store (SQLite's writer finishes what was queued); later calls fail. */
  async close() {
    await this.call('close');
  }

  async [Symbol.asyncDispose]() {
    await this.close();
  }

  thread(threadId) {
    return this.call('thread', { threadId });
  }

  threads({ limit, cursor } = {}) {
    return this.call('threads', { limit, cursor });
  }

  updateThread(threadId, { title, metadata } = {}) {
    const args = { threadId, metadata };
    if (title !== undefined) args.title = title;
    return this.call('updateThread', args);
  }

  deleteThread(threadId) {
    return this.call('deleteThread', { threadId });
  }

  messages(threadId) {
    return this.call('messages', { threadId });
  }

  appendMessages(threadId, messages, { idempotencyKey, parentId } = {}) {
    return this.call('appendMessages', { threadId, messages, idempotencyKey, parentId });
  }

  saveMessages(threadId, messages, { idempotencyKey } = {}) {
    return this.call('saveMessages', { threadId, messages, idempotencyKey });
  }

  search(text, { threadId, limit } = {}) {
    return this.call('search', { text, threadId, limit });
  }

  readMemory(resource) {
    return this.call('readMemory', { resource });
  }

  writeMemory(resource, { patch, document, expectedVersion } = {}) {
    return this.call('writeMemory', { resource, patch, document, expectedVersion });
  }

  startReply(threadId, { messages, replyId, idempotencyKey, leaseMs, metadata } = {}) {
    return this.call('startReply', { threadId, messages, replyId, idempotencyKey, leaseMs, metadata });
  }

  appendReply(threadId, replyId, offset, parts) {
    return this.call('appendReply', { threadId, replyId, offset, parts });
  }

  renewReply(threadId, replyId) {
    return this.call('renewReply', { threadId, replyId });
  }

  finishReply(threadId, replyId, { status, reason, offset, parts } = {}) {
    return this.call('finishReply', { threadId, replyId, status, reason, offset, parts });
  }

  stopReply(threadId, replyId) {
    return this.call('stopReply', { threadId, replyId });
  }

  watchStop(threadId, replyId) {
    return this.call('watchStop', { threadId, replyId });
  }

  runningReply(threadId) {
    return this.call('runningReply', { threadId });
  }

  /** Starts a reply and answers its writer (`LiveReply`), which batches, renews and hears a stop. */
  writeReply(threadId, options = {}) {
    return LiveReply.start(this, threadId, options);
  }

  followReply(threadId, replyId, { offset = '0' } = {}) {
    return new ReplyFollower(this.#follow('parts', { threadId, replyId, offset }), offset);
  }

  followReplyUI(threadId, { replyId, offset = '0' } = {}) {
    return new Chunks(this.#follow('ui', { threadId, replyId, offset }));
  }

  feed({ threadId, after = 0 } = {}) {
    return new Feed(this.#follow('feed', { threadId, after }), after);
  }
}
