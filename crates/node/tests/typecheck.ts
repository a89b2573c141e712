// An app in TypeScript on persist-store, checked by tsc (run.sh) against the package's
// declarations and the AI SDK's own types: a Next.js route's handlers and the store's calls.
import { convertToModelMessages, streamText, type UIMessage } from 'ai';
import { MockLanguageModelV4 } from 'ai/test';
import { InvalidInput, ReplyRunning, Store, type ReplyPart } from 'persist-store';
import { chatResponse, listChats, loadChat, resumeResponse, saveChat, stopChat } from 'persist-store/ai-sdk';

const store = await Store.open(process.env.PERSIST_URL ?? 'sqlite:chat.db', { busyTimeoutMs: 5000, durability: 'full' });
const model = new MockLanguageModelV4();

export async function POST(request: Request): Promise<Response> {
  const { id, messages }: { id: string; messages: UIMessage[] } = await request.json();
  try {
    return await chatResponse(store, id, {
      message: messages.at(-1),
      generate: async ({ messages: history, abortSignal }) =>
        streamText({ model, messages: await convertToModelMessages(history as UIMessage[]), abortSignal }),
    });
  } catch (error) {
    if (error instanceof ReplyRunning) return Response.json({ replyId: error.replyId }, { status: 409 });
    throw error;
  }
}

export async function GET(_request: Request, { params }: { params: Promise<{ id: string }> }): Promise<Response> {
  return resumeResponse(store, (await params).id);
}

export async function stop(id: string): Promise<boolean> {
  return (await stopChat(store, id)).stopped;
}

export async function chat(id: string): Promise<UIMessage[]> {
  const messages = await loadChat<UIMessage>(store, id);
  await saveChat(store, id, messages);
  const { chats } = await listChats(store, { limit: 20 });
  const titles: (string | null)[] = chats.map((each) => each.title);
  void titles;
  return messages;
}

export async function live(id: string): Promise<string> {
  const reply = await store.writeReply(id, { leaseMs: 10_000 });
  reply.text('Hello');
  const part: ReplyPart = { type: 'tool_call', id: 'c1', name: 'weather', arguments: { city: 'Oslo' } };
  reply.write(part);
  const state = await reply.finish();
  for await (const chunk of store.followReply(id, reply.id)) {
    if (chunk.type === 'end') return chunk.end;
  }
  for await (const change of store.feed({ threadId: id })) {
    return `${change.op} ${change.position}`;
  }
  try {
    await store.appendMessages('', []);
  } catch (error) {
    if (error instanceof InvalidInput) return error.code;
  }
  return state.status;
}
