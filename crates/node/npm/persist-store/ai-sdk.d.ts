// The Vercel AI SDK's chat persistence on persist-store: chats by the client's id, replies
// written live and answered from the store, resume and stop on any process.
import type { LiveReply, ReplyState, Store, Thread, UIMessage } from './index.js';

/** A chunk of the AI SDK's UI message stream (`text-delta`, `tool-input-available`, ...). */
export interface UIMessageStreamChunk {
  type: string;
  [key: string]: unknown;
}

/** What `chatResponse` accepts from `generate`: `streamText(...)`'s result, or a UI message stream. */
export type Generated =
  | { toUIMessageStream(): AsyncIterable<UIMessageStreamChunk> }
  | AsyncIterable<UIMessageStreamChunk>;

/** The chat's messages, oldest first (`[]` for a chat never written); `M`: your app's `UIMessage` type. */
export declare function loadChat<M = UIMessage>(store: Store, chatId: string): Promise<M[]>;
/** Saves the chat as `onFinish` gives it: what the store lacks is appended, the rest left as stored. */
export declare function saveChat(store: Store, chatId: string, messages: UIMessage[]): Promise<{ ids: string[] }>;
/** The chats, most recently active first. */
export declare function listChats(
  store: Store,
  options?: { limit?: number; cursor?: string },
): Promise<{ chats: Thread[]; nextCursor: string | null }>;
export declare function renameChat(store: Store, chatId: string, title: string | null, metadata?: Record<string, unknown>): Promise<Thread>;
export declare function deleteChat(store: Store, chatId: string): Promise<boolean>;

/** Writes a UI message stream into `reply` as it comes: its `finish` ends the reply complete; `error`, `abort` or no `finish` interrupted. */
export declare function writeUIMessageStream(
  stream: AsyncIterable<UIMessageStreamChunk>,
  reply: LiveReply,
  options?: { onChunk?: (chunk: UIMessageStreamChunk) => void },
): Promise<ReplyState>;

/** A reply (the chat's newest without `replyId`) read from the store as the UI message stream, as an SSE `Response`. */
export declare function replyResponse(
  store: Store,
  chatId: string,
  options?: { replyId?: string; offset?: string; status?: number },
): Response;

export interface ChatResponseOptions {
  /** The user's new message (the request's `messages.at(-1)`), stored with the reply's reservation. */
  message?: UIMessage;
  /** Your model call: given the chat so far and the reply's abort signal, answers `streamText(...)` or a UI message stream. */
  generate(context: { messages: UIMessage[]; abortSignal: AbortSignal; replyId: string }): Generated | Promise<Generated>;
  replyId?: string;
  /** The writer's lease (ms): a process that dies leaves its reply settled interrupted this long after its last write. */
  leaseMs?: number;
  metadata?: Record<string, unknown>;
}

/**
 * `POST /api/chat`: stores the user's message and reserves the reply, runs `generate`, writes its
 * stream into the store in the background, and answers the reply's stream read from the store.
 * `written` settles when the reply is stored whole (give it to `waitUntil` on serverless).
 */
export declare function chatResponse(store: Store, chatId: string, options: ChatResponseOptions): Promise<Response & { written?: Promise<ReplyState | undefined> }>;
/** `GET /api/chat/[id]/stream`: the reply being written, from its start, on any process; 204 when none is. */
export declare function resumeResponse(store: Store, chatId: string): Promise<Response>;
/** `POST /api/chat/[id]/stop`: stops the chat's reply, on whichever process writes it. */
export declare function stopChat(store: Store, chatId: string): Promise<{ stopped: boolean; replyId: string | null }>;
