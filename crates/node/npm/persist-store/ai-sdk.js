// The Vercel AI SDK's chat persistence on persist, in process: chats by the client's id as
// `UIMessage[]`, a reply written live from `streamText`'s UI message stream and answered from
// the store, a resume (`GET /api/chat/[id]/stream`) and a stop that work on any process sharing
// the store. No Redis: the store is the stream. `ai-sdk.d.ts` documents each function.
import { LiveReply } from './live.js';

/** The chat `chatId`'s messages, oldest first (`[]` for a chat never written). */
export function loadChat(store, chatId) {
  return store.messages(chatId);
}

/** Saves the chat as `onFinish` gives it: what the store lacks is appended (a reply written live is there already). */
export function saveChat(store, chatId, messages) {
  return store.saveMessages(chatId, messages);
}

/** The chats, most recently active first: `{ chats: [{ id, title, createdAt, updatedAt, messageCount }], nextCursor }`. */
export async function listChats(store, { limit, cursor } = {}) {
  const page = await store.threads({ limit, cursor });
  return { chats: page.threads, nextCursor: page.nextCursor };
}

/** Sets a chat's title (and metadata). */
export function renameChat(store, chatId, title, metadata) {
  return store.updateThread(chatId, { title, metadata });
}

/** Deletes a chat. */
export function deleteChat(store, chatId) {
  return store.deleteThread(chatId);
}

/**
 * Writes a UI message stream (`streamText(...).toUIMessageStream()`, or any stream of its
 * chunks) into `reply` as it comes: text, reasoning, tool calls and their final results, files.
 * Its `finish` ends the reply complete; `error`, `abort`, a stream that ends without `finish` or
 * throws end it interrupted; a stop from a client ends it stopped. `onChunk(chunk)` is called
 * after each chunk is queued. Resolves with the reply's state.
 */
export async function writeUIMessageStream(stream, reply, { onChunk } = {}) {
  let errorText;
  try {
    for await (const chunk of stream) {
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
          onChunk?.(chunk);
          return await reply.interrupt(chunk.reason ? `aborted: ${chunk.reason}` : 'aborted');
        case 'finish':
          onChunk?.(chunk);
          return errorText === undefined ? await reply.finish() : await reply.interrupt(errorText);
        default:
          break; // start, steps, tool-input-start/-delta, sources, data-*: not stored as parts
      }
      onChunk?.(chunk);
      // Stopped by a client, or ended without this writer: a model that does not watch the
      // signal is read no further.
      if (reply.signal.aborted) break;
    }
    return await reply.interrupt(reply.signal.aborted ? 'aborted' : (errorText ?? 'the model stream ended without finish'));
  } catch (error) {
    if (reply.signal.aborted) return reply.interrupt('aborted');
    await reply.interrupt(`the model stream failed: ${error?.message ?? error}`).catch(() => {});
    throw error;
  }
}

/** The SSE framing of the UI message stream, as `DefaultChatTransport` reads it. */
const HEADERS = {
  'content-type': 'text/event-stream',
  'cache-control': 'no-cache',
  connection: 'keep-alive',
  'x-vercel-ai-ui-message-stream': 'v1',
  'x-accel-buffering': 'no',
};

/**
 * A reply of the chat, followed from the store as the AI SDK's UI message stream, as a
 * `Response` (`replyId` absent: the chat's newest reply). Each chunk that ends a change carries
 * its offset as the event's `id`.
 */
export function replyResponse(store, chatId, { replyId, offset = '0', status = 200 } = {}) {
  const chunks = store.followReplyUI(chatId, { replyId, offset });
  const encoder = new TextEncoder();
  const body = new ReadableStream({
    async pull(controller) {
      try {
        const { done, value } = await chunks.next();
        if (done) {
          controller.enqueue(encoder.encode('data: [DONE]\n\n'));
          controller.close();
          return;
        }
        const id = value.offset ? `id: ${value.offset}\n` : '';
        controller.enqueue(encoder.encode(`${id}data: ${JSON.stringify(value.chunk)}\n\n`));
      } catch (error) {
        // The store failed mid-way: the response ends early and the client resumes.
        controller.error(error);
      }
    },
    cancel() {
      chunks.close();
    },
  });
  return new Response(body, { status, headers: HEADERS });
}

/** The SSE body of chunks given to `push` until `end()`: what the sender of a turn reads. */
function senderStream() {
  const encoder = new TextEncoder();
  let controller;
  let open = true;
  const body = new ReadableStream({
    start(made) {
      controller = made;
    },
    cancel() {
      open = false; // the client went: the reply goes on being written
    },
  });
  const push = (chunk) => open && controller.enqueue(encoder.encode(`data: ${JSON.stringify(chunk)}\n\n`));
  const end = () => {
    if (!open) return;
    open = false;
    controller.enqueue(encoder.encode('data: [DONE]\n\n'));
    controller.close();
  };
  return { body, push, end };
}

/**
 * `POST /api/chat`: stores the user's `message` and reserves the reply in one transaction (one
 * reply at a time per chat, across processes: another running is `ReplyRunning`), runs
 * `generate({ messages, abortSignal })` (your `streamText(...)`; it answers a UI message
 * stream or the `streamText` result), and writes what it streams into the store as it comes.
 * The sender reads the model's chunks as they are written (the reply's id in `start`; a stop
 * from any process ends it with `abort`, as every follower's); any other client, on any
 * process, follows the reply from the store (`resumeResponse`). The same request sent again
 * (the same user message id) follows the reply the first one started. The answer's `written`
 * settles when the reply is stored whole (give it to a serverless platform's `waitUntil`).
 */
export async function chatResponse(store, chatId, { message, generate, replyId, leaseMs, metadata }) {
  // Keyed by the user's message: the same request sent again (a retry) follows the reply the
  // first one started, and generates nothing.
  const idempotencyKey = message?.id ? `ai-sdk.submit.${message.id}` : undefined;
  // The chat so far is read beside the write (one round trip, not two): what it holds of this
  // turn (the user's message, the reply), read before or after the write, is set aside.
  const [started, stored] = await Promise.all([
    store.startReply(chatId, { messages: message ? [message] : [], replyId, idempotencyKey, leaseMs, metadata }),
    store.messages(chatId),
  ]);
  if (!started.written) return replyResponse(store, chatId, { replyId: started.id });
  const reply = LiveReply.of(store, chatId, started, { leaseMs });
  const turn = new Set([reply.id, ...started.messageIds]);
  const messages = [...stored.filter((each) => !turn.has(each.id)), ...(message ? [message] : [])];
  let stream;
  try {
    const made = await generate({ messages, abortSignal: reply.signal, replyId: reply.id });
    stream = typeof made?.toUIMessageStream === 'function' ? made.toUIMessageStream() : made;
  } catch (error) {
    await reply.interrupt(String(error?.message ?? error));
    throw error;
  }
  const sender = senderStream();
  // The sender is told a chunk once what it wrote is stored (so it sees what every follower and
  // a reload see, a stop included), without reading it back.
  let told = false; // the model's own error chunk was passed on
  const held = [];
  const release = () => {
    while (held.length > 0 && held[0].after <= reply.storedWrites) sender.push(held.shift().chunk);
  };
  reply.onStored = release;
  const onChunk = (chunk) => {
    if (chunk.type === 'start') chunk = { ...chunk, messageId: reply.id };
    // How the reply ended is the store's to say (below): a stop is `abort`, whoever asked.
    if (chunk.type === 'abort' || reply.signal.aborted) return;
    told ||= chunk.type === 'error';
    held.push({ chunk, after: reply.writes });
    release();
  };
  const written = writeUIMessageStream(stream, reply, { onChunk })
    .catch(() => reply.state)
    .then((state) => {
      if (state?.end === 'complete') held.splice(0).forEach(({ chunk }) => sender.push(chunk));
      if (state?.end === 'stopped') sender.push({ type: 'abort', reason: 'stopped' });
      else if (state?.end && state.end !== 'complete' && !told) {
        sender.push({ type: 'error', errorText: `The reply was ${state.end}.` });
      }
      sender.end();
      return state;
    });
  const response = new Response(sender.body, { status: 200, headers: HEADERS });
  return Object.assign(response, { written });
}

/**
 * `GET /api/chat/[id]/stream`: the chat's reply being written, replayed from its start and
 * followed to its end, on any process; 204 when none is being written (the client has the
 * chat from `loadChat`).
 */
export async function resumeResponse(store, chatId) {
  const replyId = await store.runningReply(chatId);
  if (replyId === null) return new Response(null, { status: 204 });
  return replyResponse(store, chatId, { replyId });
}

/**
 * `POST /api/chat/[id]/stop`: stops the chat's reply being written, on whichever process
 * writes it: its model call is aborted, the partial reply kept, every stream ends with `abort`.
 * Answers `{ stopped, replyId }`.
 */
export function stopChat(store, chatId) {
  return store.stopReply(chatId);
}
