// persist in Node, in process. Every method answers a promise worked on persist's own threads.

/** A part of a `UIMessage` (the AI SDK's): `text`, `reasoning`, `tool-<name>`, `file`, `data-<name>`, ... */
export interface UIMessagePart {
  type: string;
  [key: string]: unknown;
}

/** The AI SDK's `UIMessage`, as persist stores and answers it (the SDK's own type fits it). */
export interface UIMessage {
  id: string;
  role: 'system' | 'user' | 'assistant';
  metadata?: unknown;
  parts: UIMessagePart[];
}

/** A content block of a live reply: model deltas are `text` (or `reasoning`) blocks, joined to the block before. */
export type ReplyPart =
  | { type: 'text'; text: string }
  | { type: 'reasoning'; text: string }
  | { type: 'tool_call'; id: string; name: string; arguments: unknown }
  | { type: 'tool_result'; call_id: string; output: unknown; is_error: boolean }
  | { type: 'file'; media_type: string; uri: string };

/** How a reply ended, in persist's words. */
export type ReplyEnd = 'complete' | 'stopped' | 'interrupted' | 'deleted';

/** Where a live reply stands after a writer's call. */
export interface ReplyState {
  /** The reply's id (the assistant `UIMessage`'s). */
  id: string;
  status: 'in_progress' | 'completed' | 'incomplete';
  end: ReplyEnd | null;
  /** The reply's end: where the next append goes (`PART` or `PART.CHARS`). */
  offset: string;
  /** False when the call repeated one already done (nothing was written). */
  written: boolean;
  leaseMs: number | null;
  /** When the writer's lease runs out unless it writes (ms since the epoch), null once ended. */
  expiresAt: number | null;
}

export interface ReplyStarted extends ReplyState {
  /** The ids of the turn's messages written before the reply. */
  messageIds: string[];
}

export interface Thread {
  id: string;
  title: string | null;
  metadata: Record<string, unknown>;
  /** Milliseconds since the epoch. */
  createdAt: number;
  /** The last write (ms since the epoch): the thread's last activity. */
  updatedAt: number;
  messageCount: number;
}

export interface SearchHit {
  threadId: string;
  messageId: string;
  seq: number;
  role: string;
  /** The matched words between `**`. */
  snippet: string;
  createdAt: number;
}

export interface Memory {
  document: Record<string, unknown>;
  version: number;
}

/** A change of the feed: what a write did (`op`: `add`, `update_content`, `delete`, ...). */
export interface Change {
  position: number;
  at: number;
  op: string;
  threadId: string | null;
  messageId: string | null;
  seq: number | null;
  status: string | null;
  tenant: string | null;
  [key: string]: unknown;
}

/** A chunk of a reply followed as persist's parts; `offset` is where a client that has it resumes. */
export type PartChunk =
  | { type: 'part'; index: number; part: ReplyPart; offset: string }
  | { type: 'delta'; index: number; part: ReplyPart; offset: string }
  | { type: 'replaced'; parts: ReplyPart[]; offset: string }
  | { type: 'end'; end: ReplyEnd; offset: string };

/** A chunk of the AI SDK's UI message stream, and the offset a client that has it resumes from (on a change's last chunk). */
export interface UIChunk {
  chunk: { type: string; [key: string]: unknown };
  offset: string | null;
}

export interface OpenOptions {
  /** Every call of this handle is this tenant's. */
  tenant?: string;
  /** How long a SQLite call waits for another process's lock (ms). */
  busyTimeoutMs?: number;
  /** SQLite's durability: `normal` (the default: a power loss may lose the last writes) or `full`. */
  durability?: 'normal' | 'full';
}

/** A stream read with `for await`; `close()` (or leaving the loop) ends it, a waiting read too. */
export interface Chunks<T> extends AsyncIterableIterator<T> {
  close(): void;
}

export interface ReplyFollower extends Chunks<PartChunk> {
  /** Where a client that has every chunk given resumes (`offset` of a new follower). */
  readonly offset: string;
}

export interface Feed extends Chunks<Change> {
  /** The position of the last change given (`after` before the first). */
  readonly position: number;
}

export interface WriteReplyOptions {
  /** The user's turn, written before the reply in one transaction. */
  messages?: UIMessage[];
  replyId?: string;
  /** A start sent again with this key answers the first one's reply, writing nothing. */
  idempotencyKey?: string;
  /** The writer's lease (1 s to 1 h, 30 s by default): past it without a write, the reply is settled interrupted. */
  leaseMs?: number;
  metadata?: Record<string, unknown>;
}

export declare class Store implements AsyncDisposable {
  private constructor();
  /** Opens `sqlite:path/file.db` (the default `sqlite:persist.db`), a `postgres://` URL (`?schema=`), or `memory:`. */
  static open(url?: string, options?: OpenOptions): Promise<Store>;
  /** The same store, as `tenant` sees it. */
  withTenant(tenant: string): Store;
  readonly url: string;
  readonly tenant: string | null;
  close(): Promise<void>;
  [Symbol.asyncDispose](): Promise<void>;
  /** Runs the addon's call by name (what the methods do). */
  call(op: string, args?: Record<string, unknown>): Promise<unknown>;

  thread(threadId: string): Promise<Thread | null>;
  /** The tenant's threads, most recently written first. */
  threads(options?: { limit?: number; cursor?: string }): Promise<{ threads: Thread[]; nextCursor: string | null }>;
  updateThread(threadId: string, changes: { title?: string | null; metadata?: Record<string, unknown> }): Promise<Thread>;
  /** Deletes the thread; false when there was none. */
  deleteThread(threadId: string): Promise<boolean>;

  /** The thread's active branch as `UIMessage`s, oldest first (`[]` for a thread never written); `M`: your app's `UIMessage` type. */
  messages<M = UIMessage>(threadId: string): Promise<M[]>;
  /** Appends one turn, all or nothing; after `parentId` on a branch of its own when given. */
  appendMessages(threadId: string, messages: UIMessage[], options?: { idempotencyKey?: string; parentId?: string }): Promise<{ ids: string[] }>;
  /** Appends the messages the thread does not hold yet (by id): the AI SDK's `onFinish` array. */
  saveMessages(threadId: string, messages: UIMessage[], options?: { idempotencyKey?: string }): Promise<{ ids: string[] }>;

  search(text: string, options?: { threadId?: string; limit?: number }): Promise<SearchHit[]>;
  readMemory(resource: string): Promise<Memory | null>;
  writeMemory(
    resource: string,
    change: { patch?: Record<string, unknown>; document?: Record<string, unknown>; expectedVersion?: number },
  ): Promise<Memory>;

  /** Reserves a reply (one at a time per thread, across processes: else `ReplyRunning`). */
  startReply(threadId: string, options?: WriteReplyOptions): Promise<ReplyStarted>;
  /** Appends parts at the writer's offset: a repeat is written once, a gap is `OffsetConflict`, a stopped reply `ReplyStopped`. */
  appendReply(threadId: string, replyId: string, offset: string, parts: ReplyPart[]): Promise<ReplyState>;
  renewReply(threadId: string, replyId: string): Promise<ReplyState>;
  finishReply(
    threadId: string,
    replyId: string,
    options?: { status?: 'completed' | 'incomplete'; reason?: string; offset?: string; parts?: ReplyPart[] },
  ): Promise<ReplyState>;
  /** Asks the writer of `replyId` (else of the thread's running reply) to stop, on whichever process it runs. */
  stopReply(threadId: string, replyId?: string): Promise<{ stopped: boolean; replyId: string | null; end?: ReplyEnd }>;
  /** Resolves when a client stopped the reply (`"stopped"`) or it ended otherwise (how). */
  watchStop(threadId: string, replyId: string): Promise<ReplyEnd | 'ended'>;
  /** The id of the thread's reply being written, or null. */
  runningReply(threadId: string): Promise<string | null>;
  /** Starts a reply and answers its writer. */
  writeReply(threadId: string, options?: WriteReplyOptions & LiveReplyOptions): Promise<LiveReply>;
  /** Follows a reply from `offset` to its end, written on any process. */
  followReply(threadId: string, replyId: string, options?: { offset?: string }): ReplyFollower;
  /** Follows a reply (the thread's newest without `replyId`) as the AI SDK's UI message stream. */
  followReplyUI(threadId: string, options?: { replyId?: string; offset?: string }): Chunks<UIChunk>;
  /** The change feed of a thread or of the tenant, after `after`; it never ends (it waits). */
  feed(options?: { threadId?: string; after?: number }): Feed;
}

export interface LiveReplyOptions {
  /** The lease the reply was started with (30 s by default): transient failures are retried within it. */
  leaseMs?: number;
  renewEveryMs?: number;
  maxBatchBytes?: number;
  maxBatchParts?: number;
  /** Hear a stop at once (true by default); else on the next append or renewal. */
  watch?: boolean;
  log?: (event: 'retry' | 'stopped' | 'ended' | 'failed', detail: Record<string, unknown>) => void;
}

/** How a writer reaches the store: in process (`storeTransport`) or over HTTP. */
export interface ReplyTransport {
  append(offset: string, parts: ReplyPart[]): Promise<Partial<ReplyState>>;
  renew(): Promise<Partial<ReplyState>>;
  finish(how: { status: 'completed' | 'incomplete'; reason?: string; offset?: string; parts?: ReplyPart[] }): Promise<Partial<ReplyState>>;
  /** Calls `heard` when a client stops the reply (`"stopped"`) or it ends otherwise; answers a function that stops watching. */
  watchStop(heard: (how: string, via: string) => void): () => void;
  /** Whether a failure is worth retrying (within the lease). */
  transient(error: unknown): boolean;
  /** A refusal that tells the reply ended: `"stopped"`, how it ended, or null. */
  ended(error: unknown): string | null;
}

/** The addon's calls as a writer's transport, for the reply `replyId` of `threadId`. */
export declare function storeTransport(store: Store, threadId: string, replyId: string): ReplyTransport;

/** A live reply's writer: batched appends, its lease renewed, failures retried within it, a stop from any process heard on `signal`. */
export declare class LiveReply {
  static start(store: Store, threadId: string, options?: WriteReplyOptions & LiveReplyOptions): Promise<LiveReply>;
  /** The writer of a reply `store.startReply` started. */
  static of(store: Store, threadId: string, state: ReplyState, options?: LiveReplyOptions): LiveReply;
  constructor(transport: ReplyTransport, state: ReplyState, options?: LiveReplyOptions);
  /** The reply's thread (writers made by `start` and `of`). */
  threadId?: string;
  readonly id: string;
  readonly state: ReplyState;
  /** Aborted when a client stops the reply, it ends without this writer, or a write fails: give it to the model call. */
  readonly signal: AbortSignal;
  readonly stopped: boolean;
  /** How many writes this writer was given, and how many of them are stored. */
  readonly writes: number;
  readonly storedWrites: number;
  /** Called with `storedWrites` as it grows. */
  onStored?: (storedWrites: number) => void;
  text(delta: string): void;
  reasoning(delta: string): void;
  toolCall(id: string, name: string, args: unknown): void;
  toolResult(callId: string, output: unknown, options?: { isError?: boolean }): void;
  file(mediaType: string, uri: string): void;
  write(part: ReplyPart): void;
  flush(): Promise<void>;
  finish(): Promise<ReplyState>;
  interrupt(reason?: string): Promise<ReplyState>;
}

/** The reply ended otherwise than by its writer (its lease lapsed, or another writer ended it). */
export declare class ReplyEnded extends Error {
  readonly code: 'reply_ended';
  readonly end: string;
}

/** Any error persist answers; `code` is its stable name (`not_found`, `version_conflict`, ...). */
export declare class PersistError extends Error {
  constructor(message: string, code?: string);
  readonly code: string;
}
/** The request is malformed: nothing was written. */
export declare class InvalidInput extends PersistError {}
/** What the request names does not exist (for this tenant). */
export declare class NotFound extends PersistError {}
/** A write lost a race: a version that moved, an id taken, an idempotency key reused. */
export declare class Conflict extends PersistError {}
/** Another reply of the thread is being written: `replyId` is it. */
export declare class ReplyRunning extends Conflict {
  readonly replyId: string;
  readonly offset: string | null;
}
/** A client stopped the reply `replyId`. */
export declare class ReplyStopped extends Conflict {
  readonly replyId: string;
  readonly offset: string | null;
}
/** An append's offset is not the reply's end (`offset`). */
export declare class OffsetConflict extends Conflict {
  readonly replyId: string;
  readonly offset: string | null;
}
/** The thread was deleted, or the feed position trimmed. */
export declare class Gone extends PersistError {}
/** Busy, unreachable or timed out: retrying may succeed. */
export declare class Unavailable extends PersistError {}
/** The store cannot do this. */
export declare class Unsupported extends PersistError {}
/** A layer or policy refused the request. */
export declare class Rejected extends PersistError {}

/** The package's version. */
export declare const version: string;
