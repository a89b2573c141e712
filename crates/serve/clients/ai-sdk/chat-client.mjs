// What the tests of a Node AI SDK chat app share, whatever stores its replies (persist serve over
// HTTP here and in examples/node, persist-store in process in crates/node/tests): the app's processes and their JSON
// logs, the SDK's chat held in memory as `useChat` holds it, a network that can be cut, and a
// transport that sends through one app and resumes through another.
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { existsSync } from 'node:fs';
import { dirname, join } from 'node:path';

/**
 * One app process (`node SCRIPT` with `env`, `PORT=0`), its JSON log lines kept; `start()`
 * waits for its `listening` line (`url`).
 */
export class App {
  logs = [];
  #waiters = [];

  constructor(name, script, env = {}) {
    this.name = name;
    const cwd = dirname(script);
    const node = existsSync(join(cwd, 'node_modules/node/bin/node')) ? join(cwd, 'node_modules/node/bin/node') : process.execPath;
    this.child = spawn(node, [script], {
      cwd,
      env: { ...process.env, PORT: '0', ...env },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    this.exited = new Promise((resolve) => this.child.once('exit', (code, signal) => resolve({ code, signal })));
    let buffer = '';
    this.child.stdout.setEncoding('utf8').on('data', (text) => {
      buffer += text;
      let newline;
      while ((newline = buffer.indexOf('\n')) >= 0) {
        const line = buffer.slice(0, newline);
        buffer = buffer.slice(newline + 1);
        try {
          this.logs.push(JSON.parse(line));
        } catch {
          this.logs.push({ event: 'text', line });
        }
        for (const waiter of this.#waiters.splice(0)) waiter();
      }
    });
    this.child.stderr.setEncoding('utf8').on('data', (text) => {
      this.logs.push({ event: 'stderr', text });
      if (process.env.APP_STDERR) process.stderr.write(`[${name}] ${text}`);
    });
  }

  /** Waits for a log line matching `predicate` and answers it. */
  async logged(what, predicate, timeoutMs = 10_000) {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const found = this.logs.find(predicate);
      if (found) return found;
      if (this.child.exitCode !== null || this.child.signalCode !== null) {
        throw new Error(`${this.name} exited waiting for ${what}: ${JSON.stringify(this.logs)}`);
      }
      const left = deadline - Date.now();
      if (left <= 0) throw new Error(`timed out waiting for ${what} in ${this.name}'s log: ${JSON.stringify(this.logs)}`);
      await new Promise((resolve) => {
        const timer = setTimeout(resolve, Math.min(left, 200));
        this.#waiters.push(() => {
          clearTimeout(timer);
          resolve();
        });
      });
    }
  }

  async start() {
    const listening = await this.logged('listening', (line) => line.event === 'listening');
    this.url = listening.url;
    return this;
  }

  async stop() {
    if (this.child.exitCode === null && this.child.signalCode === null) this.child.kill('SIGTERM');
    const timer = setTimeout(() => this.child.kill('SIGKILL'), 3000);
    await this.exited;
    clearTimeout(timer);
  }
}

export function expectedReply(n) {
  return Array.from({ length: n }, (_, i) => `token${i}`).join(' ');
}

/** How many tokens `text` holds, after checking it is a prefix of the canned reply (each token once, in order). */
export function tokensIn(text, n) {
  if (text === '') return 0;
  const tokens = text.split(' ');
  tokens.forEach((token, i) => assert.equal(token, `token${i}`, `token ${i} of ${JSON.stringify(text)}`));
  assert.ok(tokens.length <= n, `more than ${n} tokens: ${JSON.stringify(text)}`);
  return tokens.length;
}

export function textOf(message) {
  return (message?.parts ?? [])
    .filter((part) => part.type === 'text')
    .map((part) => part.text)
    .join('');
}

export function assistantOf(chat) {
  const last = chat.messages.at(-1);
  return last?.role === 'assistant' ? last : undefined;
}

export function chatId(what) {
  return `aisdk-${what}-${randomUUID()}`;
}

export async function waitFor(what, predicate, timeoutMs = 10_000) {
  const deadline = Date.now() + timeoutMs;
  while (!predicate()) {
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
}

export async function waitForTokens(chat, n, count, who) {
  await waitFor(`${count} tokens on the ${who}`, () => {
    if (chat.status === 'error') throw new Error(`the ${who} failed: ${chat.error?.message}`);
    return tokensIn(textOf(assistantOf(chat)), n) >= count;
  });
}

export async function within(what, promise, timeoutMs = 15_000) {
  let timer;
  const timeout = new Promise((_, reject) => {
    timer = setTimeout(() => reject(new Error(`timed out after ${timeoutMs} ms waiting for ${what}`)), timeoutMs);
  });
  try {
    return await Promise.race([promise, timeout]);
  } finally {
    clearTimeout(timer);
  }
}

/** A chat state held in memory: what `useChat`'s state is, without React. */
export class MemoryChatState {
  status = 'ready';
  error = undefined;
  messages;

  constructor(messages = []) {
    this.messages = messages;
  }

  pushMessage = (message) => {
    this.messages = this.messages.concat(this.snapshot(message));
  };

  popMessage = () => {
    this.messages = this.messages.slice(0, -1);
  };

  replaceMessage = (index, message) => {
    this.messages = this.messages.with(index, this.snapshot(message));
  };

  snapshot = (value) => structuredClone(value);
}

/**
 * The SDK's chat (what `useChat` wraps) and its transport to one app, made of the `ai` package
 * the caller imported (this module imports none, so each folder's tests use their own).
 */
export function chatClient({ AbstractChat, DefaultChatTransport }) {
  /** The SDK's chat, recording what its callbacks report. */
  class Chat extends AbstractChat {
    constructor({ messages, ...init }) {
      const finishes = [];
      const errors = [];
      super({
        ...init,
        state: new MemoryChatState(messages),
        onFinish: (event) => finishes.push(event),
        onError: (error) => errors.push(error),
      });
      this.finishes = finishes;
      this.errors = errors;
    }
  }

  /** `DefaultChatTransport` to one app, asking for `reply` (the mock model's options). */
  function transportTo(app, session, reply = { tokens: 20, delay_ms: 50 }) {
    return new DefaultChatTransport({ api: `${app.url}/api/chat`, body: { persist: reply }, fetch: session.fetch });
  }

  return { Chat, transportTo };
}

/**
 * Everything one test opens: `fetch` ties each request to the test (aborted when it ends) and
 * to `drop()`, which cuts the open responses as a lost network does.
 */
export class Session {
  #end = new AbortController();
  #open = new Set();

  fetch = async (url, init = {}) => {
    const drop = new AbortController();
    this.#open.add(drop);
    const signals = [this.#end.signal, drop.signal];
    if (init.signal) signals.push(init.signal);
    try {
      return await fetch(url, { ...init, signal: AbortSignal.any(signals) });
    } catch (error) {
      this.#open.delete(drop);
      throw error;
    }
  };

  drop() {
    for (const request of this.#open) request.abort(new TypeError('network error'));
    this.#open.clear();
  }

  end() {
    this.#end.abort();
  }
}

export function recorded(stream, chunks) {
  return stream.pipeThrough(
    new TransformStream({
      transform(chunk, controller) {
        chunks.push(chunk);
        controller.enqueue(chunk);
      },
    }),
  );
}

/** Sends through one app and reconnects through another (a load balancer's doing), recording the chunks. */
export class SplitTransport {
  sent = [];
  resumed = [];

  constructor({ send, reconnect }) {
    this.send = send;
    this.reconnect = reconnect;
    // persist's resume route replays the reply from its start: the chat rebuilds the message.
    this.resumeStreamIsReplay = reconnect.resumeStreamIsReplay;
  }

  async sendMessages(options) {
    const chunks = [];
    this.sent.push(chunks);
    return recorded(await this.send.sendMessages(options), chunks);
  }

  async reconnectToStream(options) {
    const stream = await this.reconnect.reconnectToStream(options);
    if (stream == null) return null;
    const chunks = [];
    this.resumed.push(chunks);
    return recorded(stream, chunks);
  }
}
