// The official MCP TypeScript SDK's client (@modelcontextprotocol/sdk) against persist's MCP
// server, unmodified: over stdio (`persist --url URL --tenant T mcp`, spawned by
// StdioClientTransport) and over streamable HTTP (`persist serve`'s /mcp, through
// StreamableHTTPClientTransport, each client with its tenant's key as a bearer token). Every tool
// and the thread resources, two clients patching one working memory at once, two tenants, bad
// arguments, and a server killed in the middle of its writes.
//
// PERSIST_BIN is the persist binary (default: target/debug/persist of this checkout);
// PERSIST_POSTGRES_URL the PostgreSQL server (default postgres://postgres@127.0.0.1:5432/test),
// where each test makes a schema of its own. Each SQLite store is a fresh file in a temporary
// folder; each server listens on a free port. Recall embeds with a stand-in of OpenAI's
// embeddings endpoint started here (bag of words hashed into 64 dimensions).
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import fs from 'node:fs';
import http from 'node:http';
import os from 'node:os';
import path from 'node:path';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StdioClientTransport } from '@modelcontextprotocol/sdk/client/stdio.js';
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import { McpError } from '@modelcontextprotocol/sdk/types.js';

const HERE = path.dirname(fileURLToPath(import.meta.url));
const PERSIST_BIN = path.resolve(process.env.PERSIST_BIN || path.join(HERE, '../../../../target/debug/persist'));
const POSTGRES_URL = process.env.PERSIST_POSTGRES_URL || 'postgres://postgres@127.0.0.1:5432/test';
const KEYS = { acme: 'sk-acme-0123456789abcdef', globex: 'sk-globex-0123456789abcdef' };
const EMBEDDINGS_KEY = 'sk-embeddings-stand-in';
const TOOLS = {
  list_threads: [],
  read_thread: ['thread_id'],
  search_messages: ['query'],
  recall: ['text'],
  read_memory: ['resource'],
  update_memory: ['resource'],
  append_message: ['thread_id', 'text'],
};

// ---------------------------------------------------------------------------------------------
// Stores, servers and the stand-in embedder

const newId = (prefix = 'js') => `${prefix}-${randomUUID().replaceAll('-', '').slice(0, 12)}`;
const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

// A fresh temporary folder, removed when the test ends.
function tempDir(t) {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'persist-mcp-node-'));
  t.after(() => fs.rmSync(dir, { recursive: true, force: true }));
  return dir;
}

const sqliteUrl = (t) => `sqlite:${path.join(tempDir(t), 'persist.db')}`;

// A PostgreSQL schema of the test's own, dropped when it ends.
function postgresUrl(t) {
  const schema = `persist_mcp_js_${process.pid}_${randomUUID().slice(0, 8)}`;
  t.after(() => spawnSync('psql', [POSTGRES_URL, '-qc', `DROP SCHEMA IF EXISTS "${schema}" CASCADE`]));
  return `${POSTGRES_URL}${POSTGRES_URL.includes('?') ? '&' : '?'}schema=${schema}`;
}

// Each word (lowercase letters and digits) hashed (FNV-1a) into one of `dimensions` buckets,
// counted, and the vector normalised: texts sharing words are near.
function bagOfWords(text, dimensions = 64) {
  const vector = new Array(dimensions).fill(0);
  for (const word of text.toLowerCase().match(/[a-z0-9]+/g) ?? []) {
    let h = 0x811c9dc5;
    for (const byte of Buffer.from(word)) h = Math.imul(h ^ byte, 0x01000193) >>> 0;
    vector[h % dimensions] += 1;
  }
  let norm = Math.hypot(...vector);
  if (norm === 0) [vector[0], norm] = [1, 1];
  return vector.map((x) => x / norm);
}

// A stand-in for OpenAI's POST {base}/embeddings on a free port; `requests` holds what each
// request carried.
async function startEmbedder(t) {
  const requests = [];
  const server = http.createServer(async (request, response) => {
    let body = '';
    for await (const chunk of request) body += chunk;
    body = JSON.parse(body);
    requests.push({ path: request.url, authorization: request.headers.authorization, body });
    if (request.method !== 'POST' || !request.url.endsWith('/embeddings')) {
      response.writeHead(404).end();
      return;
    }
    const inputs = Array.isArray(body.input) ? body.input : [body.input];
    response.writeHead(200, { 'content-type': 'application/json' });
    response.end(
      JSON.stringify({
        object: 'list',
        model: body.model,
        data: inputs.map((text, index) => ({ object: 'embedding', index, embedding: bagOfWords(text) })),
        usage: { prompt_tokens: 0, total_tokens: 0 },
      }),
    );
  });
  await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve));
  t.after(() => new Promise((resolve) => server.close(resolve)));
  const url = `http://127.0.0.1:${server.address().port}/v1`;
  const model = 'stand-in-embedding';
  const args = (dimensions) => [
    '--embeddings-url', url, '--embeddings-model', model,
    ...(dimensions ? ['--embeddings-dimensions', String(dimensions)] : []),
  ];
  return { url, model, requests, args };
}

// `persist serve` on `url` with the acme and globex keys; answers its base URL once /health
// answers. Stopped when the test ends. It binds port 0 and says which port it got: a port picked
// here and handed on could be taken by another process before it binds.
async function serve(t, url, extraArgs = []) {
  // Only the flags given here configure it (not a PERSIST_EMBEDDINGS_URL of the caller's).
  const env = {
    ...Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith('PERSIST_EMBEDDINGS_'))),
    PERSIST_SERVE_KEYS: Object.entries(KEYS).map(([tenant, key]) => `${tenant}:${key}`).join(','),
    PERSIST_EMBEDDINGS_KEY: EMBEDDINGS_KEY,
  };
  const child = spawn(PERSIST_BIN, ['--url', url, 'serve', '--addr', '127.0.0.1:0', ...extraArgs], {
    env,
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let log = '';
  child.stdout.on('data', (data) => (log += data));
  child.stderr.on('data', (data) => (log += data));
  const exited = new Promise((resolve) => child.on('exit', resolve));
  t.after(async () => {
    child.kill('SIGTERM');
    await exited;
  });
  const deadline = Date.now() + 20_000;
  let base;
  for (;;) {
    assert.equal(child.exitCode, null, `persist serve exited: ${log}`);
    base ??= /Conversations API on (http:\/\/[^/\s]+)\/v1/.exec(log)?.[1];
    try {
      if (!base) throw new Error('not listening yet');
      if ((await fetch(`${base}/health`)).status === 200) return base;
    } catch {
      // not listening yet
    }
    assert.ok(Date.now() < deadline, `persist serve never answered: ${log}`);
    await sleep(50);
  }
}

// A connected client of `persist --url URL --tenant T mcp`, spawned by the SDK; closed when the
// test ends. `transport.pid` is the server's process id.
async function stdioClient(t, url, { tenant = 'acme', extraArgs = [] } = {}) {
  const transport = new StdioClientTransport({
    command: PERSIST_BIN,
    args: ['--url', url, '--tenant', tenant, 'mcp', ...extraArgs],
    env: { PERSIST_EMBEDDINGS_KEY: EMBEDDINGS_KEY },
    stderr: 'pipe',
  });
  let log = '';
  transport.stderr.on('data', (data) => (log += data));
  const client = new Client({ name: 'persist-mcp-node-test', version: '0.0.0' });
  t.after(() => client.close());
  try {
    await client.connect(transport);
  } catch (error) {
    throw new Error(`persist mcp: ${error.message}; its stderr: ${log}`);
  }
  return { client, transport, log: () => log };
}

// A connected client of `persist serve`'s /mcp, authenticating with `key`.
async function httpClient(t, base, key) {
  const transport = new StreamableHTTPClientTransport(new URL(`${base}/mcp`), {
    requestInit: { headers: { Authorization: `Bearer ${key}` } },
  });
  const client = new Client({ name: 'persist-mcp-node-test', version: '0.0.0' });
  t.after(() => client.close());
  await client.connect(transport);
  return client;
}

// ---------------------------------------------------------------------------------------------
// Calling tools

const textOf = (result) => result.content.map((content) => content.text ?? '').join('\n');

// Calls a tool that must succeed; checks the result is structured JSON, and the same JSON as its
// one text content; answers the structured content.
async function call(client, name, args = {}) {
  const result = await client.callTool({ name, arguments: args });
  assert.ok(!result.isError, `${name}(${JSON.stringify(args)}) failed: ${textOf(result)}`);
  assert.equal(typeof result.structuredContent, 'object', `${name}: no structuredContent`);
  assert.equal(result.content.length, 1, JSON.stringify(result.content));
  assert.equal(result.content[0].type, 'text');
  assert.deepEqual(JSON.parse(result.content[0].text), result.structuredContent);
  return result.structuredContent;
}

// Calls a tool with bad input: answers ['tool', text] for a result with isError, ['rpc',
// message] for a JSON-RPC error; anything else (a success, a broken connection) fails.
async function refused(client, name, args) {
  let result;
  try {
    result = await client.callTool({ name, arguments: args });
  } catch (error) {
    assert.ok(error instanceof McpError, `${name}: ${error}`);
    assert.notEqual(error.code, -32000, `${name}: the connection closed: ${error.message}`);
    return ['rpc', error.message];
  }
  assert.ok(result.isError, `${name}(${JSON.stringify(args)}) was accepted: ${JSON.stringify(result.structuredContent)}`);
  assert.ok(textOf(result).trim(), `${name}: isError without a text`);
  return ['tool', textOf(result)];
}

// Every item of a paged tool's answers, following next_cursor.
async function pages(client, name, key, args = {}) {
  const items = [];
  let cursor = null;
  for (let i = 0; i < 1000; i++) {
    const page = await call(client, name, { ...args, ...(cursor ? { cursor } : {}) });
    assert.ok('next_cursor' in page, JSON.stringify(page));
    items.push(...page[key]);
    cursor = page.next_cursor;
    if (cursor === null) return items;
  }
  throw new Error(`${name}: no last page`);
}

async function append(client, threadId, text, extra = {}) {
  const answer = await call(client, 'append_message', { thread_id: threadId, text, ...extra });
  assert.equal(answer.thread_id, threadId);
  assert.ok(typeof answer.id === 'string' && answer.id, JSON.stringify(answer));
  assert.ok(Number.isInteger(answer.seq), JSON.stringify(answer));
  return answer;
}

// Calls `probe` until it answers something true (recall's index may lag the write).
async function eventually(probe, timeoutMs = 10_000) {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const answer = await probe();
    if (answer || Date.now() > deadline) return answer;
    await sleep(100);
  }
}

const keyOf = (item) => `${item.thread_id}#${item.seq}`;

// ---------------------------------------------------------------------------------------------
// 1. Every tool and the resources, over each transport

async function exercise(client, embedder) {
  const capabilities = client.getServerCapabilities();
  assert.ok(capabilities?.tools && capabilities?.resources, JSON.stringify(capabilities));

  const tools = Object.fromEntries((await client.listTools()).tools.map((tool) => [tool.name, tool]));
  for (const [name, required] of Object.entries(TOOLS)) {
    assert.ok(tools[name], `tool ${name} missing; listed: ${Object.keys(tools)}`);
    const schema = tools[name].inputSchema;
    assert.equal(schema.type, 'object', name);
    for (const field of required) {
      assert.ok((schema.required ?? []).includes(field), `${name}: ${field} not required`);
      assert.ok(field in (schema.properties ?? {}), `${name}: ${field} not a property`);
    }
  }

  const [one, two] = [newId(), newId()];
  const first = await append(client, one, 'The cat sat on the warm mat in Paris', {
    role: 'user',
    thread_metadata: { user_id: 'u1' },
  });
  const paris = 'Paris is the capital of France';
  const second = await append(client, one, paris, { metadata: { source: 'test' }, idempotency_key: `${one}-2` });
  assert.ok(second.seq > first.seq);
  // The same idempotency key: the same message, written once.
  const again = await append(client, one, paris, { metadata: { source: 'test' }, idempotency_key: `${one}-2` });
  assert.deepEqual([again.id, again.seq], [second.id, second.seq]);
  const third = await append(client, two, 'Quarterly revenue grew by ten percent', {
    role: 'system',
    thread_metadata: { user_id: 'u2' },
  });

  // list_threads, one page and every page one at a time.
  const listed = await call(client, 'list_threads');
  assert.ok('next_cursor' in listed);
  const threads = Object.fromEntries(listed.threads.map((thread) => [thread.thread_id, thread]));
  assert.ok(threads[one] && threads[two], JSON.stringify(listed));
  for (const thread of listed.threads) {
    for (const field of ['thread_id', 'title', 'metadata', 'created_at', 'updated_at']) {
      assert.ok(field in thread, `${field} missing: ${JSON.stringify(thread)}`);
    }
  }
  assert.equal(threads[one].metadata.user_id, 'u1');
  assert.equal(threads[two].metadata.user_id, 'u2');
  const firstPage = await call(client, 'list_threads', { limit: 1 });
  assert.equal(firstPage.threads.length, 1);
  assert.ok(firstPage.next_cursor);
  const allThreads = await pages(client, 'list_threads', 'threads', { limit: 1 });
  assert.deepEqual(allThreads.map((thread) => thread.thread_id).sort(), Object.keys(threads).sort());

  // read_thread: full and compacted (no summary yet: the same messages), paged.
  const full = await call(client, 'read_thread', { thread_id: one, view: 'full' });
  assert.equal(full.thread_id, one);
  assert.ok('next_cursor' in full);
  assert.deepEqual(
    full.messages.map((m) => [m.id, m.seq, m.role, m.text]),
    [
      [first.id, first.seq, 'user', 'The cat sat on the warm mat in Paris'],
      [second.id, second.seq, 'assistant', paris],
    ],
  );
  for (const message of full.messages) {
    for (const field of ['id', 'seq', 'role', 'text', 'status', 'created_at']) {
      assert.ok(field in message, `${field} missing: ${JSON.stringify(message)}`);
    }
  }
  const compacted = await call(client, 'read_thread', { thread_id: one });
  assert.equal(compacted.summary, null);
  assert.deepEqual(compacted.messages, full.messages);
  assert.deepEqual(await call(client, 'read_thread', { thread_id: one, view: 'compacted' }), compacted);
  assert.deepEqual(await pages(client, 'read_thread', 'messages', { thread_id: one, view: 'full', limit: 1 }), full.messages);
  const other = await call(client, 'read_thread', { thread_id: two, view: 'full' });
  assert.deepEqual(other.messages.map((m) => [m.role, m.text]), [['system', 'Quarterly revenue grew by ten percent']]);

  // search_messages: a word, within a thread, paged.
  let found = await call(client, 'search_messages', { query: 'revenue' });
  assert.deepEqual(found.hits.map(keyOf), [keyOf(third)]);
  const hit = found.hits[0];
  for (const field of ['thread_id', 'seq', 'role', 'snippet', 'created_at']) assert.ok(field in hit, field);
  assert.ok(hit.snippet.toLowerCase().includes('revenue'), hit.snippet);
  assert.equal(hit.role, 'system');
  assert.deepEqual((await call(client, 'search_messages', { query: 'revenue', thread_id: one })).hits, []);
  found = await call(client, 'search_messages', { query: 'capital', thread_id: one });
  assert.deepEqual(found.hits.map(keyOf), [keyOf(second)]);
  const paged = await pages(client, 'search_messages', 'hits', { query: 'paris', limit: 1 });
  assert.deepEqual(paged.map(keyOf).sort(), [keyOf(first), keyOf(second)].sort());

  // Working memory: read, patch (a JSON merge patch), replace with the expected version.
  const resource = `user:${newId()}`;
  assert.deepEqual(await call(client, 'read_memory', { resource }), { resource, document: null, version: 0 });
  let memory = await call(client, 'update_memory', { resource, patch: { name: 'Ada', prefs: { lang: 'en' } } });
  assert.deepEqual(memory, { resource, document: { name: 'Ada', prefs: { lang: 'en' } }, version: 1 });
  memory = await call(client, 'update_memory', { resource, patch: { name: null, prefs: { theme: 'dark' } } });
  assert.deepEqual(memory, { resource, document: { prefs: { lang: 'en', theme: 'dark' } }, version: 2 });
  memory = await call(client, 'update_memory', { resource, document: { name: 'Grace' }, version: 2 });
  assert.deepEqual(memory, { resource, document: { name: 'Grace' }, version: 3 });
  const [kind, text] = await refused(client, 'update_memory', { resource, document: { name: 'Lovelace' }, version: 2 });
  assert.equal(kind, 'tool', text);
  assert.ok(text.toLowerCase().includes('conflict') && text.includes('3'), text);
  assert.deepEqual(await call(client, 'read_memory', { resource }), memory);
  memory = await call(client, 'update_memory', { resource, document: { name: 'Hopper' } });
  assert.deepEqual(memory, { resource, document: { name: 'Hopper' }, version: 4 });
  // Version 0: only if it was never written.
  const fresh = `project:${newId()}`;
  const created = await call(client, 'update_memory', { resource: fresh, document: { name: 'atlas' }, version: 0 });
  assert.deepEqual(created, { resource: fresh, document: { name: 'atlas' }, version: 1 });
  const [conflict, said] = await refused(client, 'update_memory', { resource: fresh, document: { name: 'other' }, version: 0 });
  assert.equal(conflict, 'tool', said);
  assert.ok(said.toLowerCase().includes('conflict') && said.includes('1'), said);

  // recall: the stand-in embedder's nearest message first; user_id keeps to that user's threads.
  const question = 'What is the capital of France?';
  const hits = await eventually(async () => {
    const { hits } = await call(client, 'recall', { text: question });
    return hits.length && hits[0].text === paris ? hits : null;
  });
  assert.ok(hits, JSON.stringify([await call(client, 'recall', { text: question }), embedder.requests.slice(-3)]));
  assert.deepEqual([hits[0].thread_id, hits[0].seq, hits[0].role], [one, second.seq, 'assistant']);
  assert.ok(hits.every((h) => typeof h.score === 'number'));
  assert.deepEqual(hits.map((h) => h.score), hits.map((h) => h.score).sort((a, b) => b - a));
  assert.ok(hits.length <= 5);
  const limited = await call(client, 'recall', { text: question, limit: 1 });
  assert.deepEqual(limited.hits.map(keyOf), [keyOf(second)]);
  const theirs = await call(client, 'recall', { text: question, user_id: 'u2' });
  assert.ok(theirs.hits.length > 0);
  assert.deepEqual([...new Set(theirs.hits.map((h) => h.thread_id))], [two]);
  const within = await call(client, 'recall', { text: 'revenue percent', thread_id: one });
  assert.ok(within.hits.every((h) => h.thread_id === one), JSON.stringify(within));
  assert.ok(embedder.requests.length > 0, 'the embedder was never asked');
  for (const request of embedder.requests) {
    assert.equal(request.path, '/v1/embeddings');
    assert.equal(request.authorization, `Bearer ${EMBEDDINGS_KEY}`);
    assert.equal(request.body.model, embedder.model);
  }

  // Resources: the threads, the template, one thread's compacted view.
  const uris = (await client.listResources()).resources.map((r) => r.uri);
  assert.ok(uris.includes(`persist://threads/${one}`) && uris.includes(`persist://threads/${two}`), uris);
  const templates = (await client.listResourceTemplates()).resourceTemplates.map((r) => r.uriTemplate);
  assert.ok(templates.includes('persist://threads/{thread_id}'), templates);
  const read = await client.readResource({ uri: `persist://threads/${one}` });
  assert.equal(read.contents.length, 1);
  assert.equal(read.contents[0].mimeType, 'application/json');
  const view = JSON.parse(read.contents[0].text);
  assert.equal(view.thread_id, one);
  assert.deepEqual(view.messages.map((m) => m.text), ['The cat sat on the warm mat in Paris', paris]);
  await assert.rejects(client.readResource({ uri: `persist://threads/${newId()}` }), McpError);
  // The connection is still good after the error.
  assert.equal((await call(client, 'read_memory', { resource })).version, 4);
}

test('every tool over stdio (SQLite)', async (t) => {
  const embedder = await startEmbedder(t);
  const { client } = await stdioClient(t, sqliteUrl(t), { extraArgs: embedder.args() });
  await exercise(client, embedder);
});

test('every tool over streamable HTTP (PostgreSQL)', async (t) => {
  const embedder = await startEmbedder(t);
  const base = await serve(t, postgresUrl(t), embedder.args(64));
  await exercise(await httpClient(t, base, KEYS.acme), embedder);
});

// ---------------------------------------------------------------------------------------------
// 2. Two clients patching one working memory at once

async function patchConcurrently(a, b, perClient = 25) {
  const resource = `user:${newId()}`;
  const versions = [];
  const patches = (client, prefix) =>
    Promise.all(
      Array.from({ length: perClient }, async (_, i) => {
        const key = `${prefix}${String(i).padStart(2, '0')}`;
        const answer = await call(client, 'update_memory', { resource, patch: { [key]: i } });
        versions.push(answer.version);
      }),
    );
  await Promise.all([patches(a, 'a'), patches(b, 'b')]);
  const total = 2 * perClient;
  const final = await call(a, 'read_memory', { resource });
  const expected = {};
  for (const prefix of ['a', 'b']) {
    for (let i = 0; i < perClient; i++) expected[`${prefix}${String(i).padStart(2, '0')}`] = i;
  }
  assert.deepEqual(final.document, expected);
  assert.equal(final.version, total);
  assert.deepEqual(versions.sort((x, y) => x - y), Array.from({ length: total }, (_, i) => i + 1));
  assert.deepEqual(await call(b, 'read_memory', { resource }), final);
}

test('two persist mcp processes on one SQLite file patch one working memory at once', async (t) => {
  const url = sqliteUrl(t);
  const { client: a } = await stdioClient(t, url);
  const { client: b } = await stdioClient(t, url);
  await patchConcurrently(a, b);
});

test('two HTTP clients patch one working memory at once (PostgreSQL)', async (t) => {
  const base = await serve(t, postgresUrl(t));
  await patchConcurrently(await httpClient(t, base, KEYS.acme), await httpClient(t, base, KEYS.acme));
});

// ---------------------------------------------------------------------------------------------
// 3. Two tenants over HTTP

test('two tenants over streamable HTTP: what one wrote, the other cannot reach', async (t) => {
  const base = await serve(t, postgresUrl(t));
  // No key, or a key nobody holds: 401.
  const initialize = JSON.stringify({
    jsonrpc: '2.0',
    id: 1,
    method: 'initialize',
    params: { protocolVersion: '2025-06-18', capabilities: {}, clientInfo: { name: 't', version: '0' } },
  });
  for (const headers of [{}, { authorization: 'Bearer sk-nobody-0123456789abcdef' }]) {
    const response = await fetch(`${base}/mcp`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', accept: 'application/json, text/event-stream', ...headers },
      body: initialize,
    });
    assert.equal(response.status, 401, JSON.stringify(headers));
  }
  // With a key: stateless, a JSON answer and no session.
  const response = await fetch(`${base}/mcp`, {
    method: 'POST',
    headers: {
      'content-type': 'application/json',
      accept: 'application/json, text/event-stream',
      authorization: `Bearer ${KEYS.acme}`,
    },
    body: initialize,
  });
  assert.equal(response.status, 200);
  assert.match(response.headers.get('content-type'), /^application\/json/);
  assert.equal(response.headers.get('mcp-session-id'), null);
  assert.ok((await response.json()).result.serverInfo.name);
  await assert.rejects(httpClient(t, base, 'sk-nobody-0123456789abcdef'));

  const acme = await httpClient(t, base, KEYS.acme);
  const globex = await httpClient(t, base, KEYS.globex);
  const [thread, resource] = [newId(), `user:${newId()}`];
  const written = await append(acme, thread, 'The zanzibar launch codes', { role: 'user' });
  await call(acme, 'update_memory', { resource, patch: { secret: 'acme' } });
  assert.deepEqual((await call(acme, 'list_threads')).threads.map((th) => th.thread_id), [thread]);

  assert.ok((await pages(globex, 'list_threads', 'threads')).every((th) => th.thread_id !== thread));
  let [kind, text] = await refused(globex, 'read_thread', { thread_id: thread });
  assert.equal(kind, 'tool', text);
  assert.match(text, /not found/i);
  [kind, text] = await refused(globex, 'read_thread', { thread_id: newId() });
  assert.equal(kind, 'tool', text);
  assert.match(text, /not found/i);
  assert.deepEqual((await call(globex, 'search_messages', { query: 'zanzibar' })).hits, []);
  const uris = (await globex.listResources()).resources.map((r) => r.uri);
  assert.ok(!uris.includes(`persist://threads/${thread}`), uris);
  await assert.rejects(globex.readResource({ uri: `persist://threads/${thread}` }), McpError);
  assert.deepEqual(await call(globex, 'read_memory', { resource }), { resource, document: null, version: 0 });

  // globex writing to that thread id never writes into acme's thread.
  await globex.callTool({ name: 'append_message', arguments: { thread_id: thread, text: 'globex was here' } }).catch(() => {});
  const mine = await call(acme, 'read_thread', { thread_id: thread, view: 'full' });
  assert.deepEqual(mine.messages.map((m) => [m.id, m.text]), [[written.id, 'The zanzibar launch codes']]);
  assert.equal((await call(acme, 'search_messages', { query: 'zanzibar' })).hits[0].thread_id, thread);
  assert.deepEqual((await call(acme, 'read_memory', { resource })).document, { secret: 'acme' });
});

// ---------------------------------------------------------------------------------------------
// 4. Bad arguments

test('bad arguments are refused clearly, and the connection goes on', async (t) => {
  const { client } = await stdioClient(t, sqliteUrl(t));
  const thread = newId();
  await append(client, thread, 'hello there');
  const cases = [
    ['read_thread', {}, ['thread_id']],
    ['read_thread', { thread_id: thread, limit: 0 }, ['limit']],
    ['read_thread', { thread_id: thread, view: 'sideways' }, ['view', 'sideways', 'compacted']],
    ['list_threads', { limit: 0 }, ['limit']],
    ['list_threads', { limit: 101 }, ['limit']],
    ['list_threads', { limit: 'ten' }, ['limit', 'integer', 'invalid type']],
    ['search_messages', { query: 'hello', limit: 51 }, ['limit']],
    ['append_message', { thread_id: thread }, ['text']],
    ['append_message', { thread_id: thread, text: 'x', role: 'wizard' }, ['role', 'wizard']],
    ['append_message', { thread_id: 42, text: 'x' }, ['thread_id', 'string', 'invalid type']],
    ['update_memory', { resource: 'user:1', patch: { a: 1 }, document: { a: 1 } }, ['patch', 'document']],
    ['update_memory', { resource: 'user:1' }, ['patch', 'document']],
    ['read_memory', {}, ['resource']],
    ['recall', { text: 'anything' }, ['--embeddings-url']],
    ['read_thread', { thread_id: newId() }, ['not found']],
    ['list_threads', { bogus: 1 }, ['bogus', 'unknown field']],
    ['update_memory', { resource: 'user:1', patch: [1, 2] }, ['patch', 'object', 'invalid type']],
    ['no_such_tool', {}, ['no_such_tool', 'not found', 'unknown']],
  ];
  const kinds = {};
  for (const [name, args, words] of cases) {
    const [kind, text] = await refused(client, name, args);
    kinds[`${name} ${JSON.stringify(args)}`] = kind;
    assert.ok(
      words.some((word) => text.toLowerCase().includes(word.toLowerCase())),
      `${name}(${JSON.stringify(args)}) said ${JSON.stringify(text)}`,
    );
    // The connection still works.
    assert.equal((await call(client, 'read_thread', { thread_id: thread })).messages[0].text, 'hello there');
  }
  // Bad input to a tool is a tool result with isError (a sentence the model can act on), not a
  // JSON-RPC error; only a tool that does not exist may be either.
  const wrong = Object.entries(kinds).filter(([key, kind]) => kind !== 'tool' && !key.startsWith('no_such_tool'));
  assert.deepEqual(wrong, [], 'JSON-RPC errors, not tool errors');
  t.diagnostic(`bad arguments answered as: ${JSON.stringify(kinds)}`);
});

// ---------------------------------------------------------------------------------------------
// 5. Killed while writing

test('persist mcp killed (SIGKILL) during writes keeps every acknowledged append', async (t) => {
  const url = sqliteUrl(t);
  const thread = newId();
  const { client, transport } = await stdioClient(t, url);
  const pid = transport.pid;
  const acknowledged = new Map(); // text -> [id, seq]
  const attempted = new Set();
  let killed = false;

  const writer = async (w) => {
    for (let i = 0; i < 10_000; i++) {
      const text = `writer ${w} message ${i}`;
      attempted.add(text);
      let answer;
      try {
        answer = await client.callTool({
          name: 'append_message',
          arguments: { thread_id: thread, text, idempotency_key: `${w}-${i}` },
        });
      } catch (error) {
        assert.ok(killed, `a write failed before the kill: ${text}: ${error}`);
        return;
      }
      if (killed && answer.isError) return;
      assert.ok(!answer.isError, textOf(answer));
      acknowledged.set(text, [answer.structuredContent.id, answer.structuredContent.seq]);
    }
  };
  const killer = async () => {
    while (acknowledged.size < 30) await sleep(5);
    await sleep(Math.random() * 50);
    killed = true;
    process.kill(pid, 'SIGKILL');
  };
  await Promise.all([writer(0), writer(1), writer(2), killer()]);
  assert.ok(killed && acknowledged.size >= 30);

  const { client: again } = await stdioClient(t, url);
  const messages = await pages(again, 'read_thread', 'messages', { thread_id: thread, view: 'full', limit: 100 });
  // After the restart it writes again.
  await append(again, thread, 'after the restart');
  const stored = new Map(messages.map((m) => [m.text, [m.id, m.seq]]));
  assert.equal(stored.size, messages.length, 'a message was stored twice');
  const lost = [...acknowledged.keys()].filter((text) => !stored.has(text));
  assert.deepEqual(lost, [], 'acknowledged but lost');
  for (const [text, written] of acknowledged) assert.deepEqual(stored.get(text), written, text);
  for (const text of stored.keys()) assert.ok(attempted.has(text), text);
  // At most the writes in flight at the kill are stored unacknowledged.
  assert.ok(stored.size - acknowledged.size <= 3, `${stored.size} stored, ${acknowledged.size} acknowledged`);
  const seqs = messages.map((m) => m.seq);
  assert.deepEqual(seqs, [...seqs].sort((x, y) => x - y));
  // The file's integrity and every thread's counters, as the CLI checks them.
  const check = spawnSync(PERSIST_BIN, ['--url', url, '--across-tenants', 'check'], { encoding: 'utf8' });
  assert.equal(check.status, 0, check.stdout + check.stderr);
  t.diagnostic(`${acknowledged.size} writes acknowledged before the kill, ${stored.size} stored`);
});
