// The npm launcher as installed from the tarballs (run by .ci/run after `npm install` of them):
//
//   PERSIST_NPM_APP   a folder where persist-cli and this platform's package are installed
//   PERSIST_NPM_BARE  a folder where persist-cli alone is installed (its platform package left out)
//   PERSIST_VERSION   the workspace's version
//
// The binary it runs is the real one from the platform package.
import { spawn, spawnSync } from "node:child_process";
import { once } from "node:events";
import { mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { test } from "node:test";
import assert from "node:assert/strict";

const app = process.env.PERSIST_NPM_APP;
const bare = process.env.PERSIST_NPM_BARE;
const version = process.env.PERSIST_VERSION;
if (!app || !bare || !version) throw new Error("set PERSIST_NPM_APP, PERSIST_NPM_BARE and PERSIST_VERSION");
const launcher = (dir) => path.join(dir, "node_modules/.bin/persist");

test("npx persist runs this platform's binary, at the workspace's version", () => {
  const run = spawnSync("npx", ["--offline", "persist", "--version"], { cwd: app, encoding: "utf8" });
  assert.equal(run.status, 0, run.stderr);
  assert.equal(run.stdout.trim(), `persist ${version}`);
});

test("the binary's exit status and streams come through", () => {
  const run = spawnSync(launcher(app), ["--no-such-flag"], { encoding: "utf8" });
  assert.equal(run.status, 2);
  assert.match(run.stderr, /--no-such-flag/);
});

test("without its platform package, the launcher names the package to install", () => {
  const run = spawnSync(launcher(bare), ["--version"], { encoding: "utf8" });
  assert.equal(run.status, 1);
  assert.match(run.stderr, new RegExp(`@persist-cli/linux-x64-gnu@${version.replaceAll(".", "\\.")}`));
  assert.match(run.stderr, /--omit=optional/);
  assert.equal(run.stdout, "");
});

test("PERSIST_BINARY runs another build", () => {
  const dir = mkdtempSync(path.join(tmpdir(), "persist-binary-"));
  const script = path.join(dir, "persist");
  writeFileSync(script, '#!/bin/sh\necho "own build: $*"\nexit 7\n', { mode: 0o755 });
  const run = spawnSync(launcher(bare), ["serve", "--help"], { encoding: "utf8", env: { ...process.env, PERSIST_BINARY: script } });
  assert.equal(run.status, 7);
  assert.equal(run.stdout, "own build: serve --help\n");
});

// The base URL `persist serve` says it listens on (it binds port 0: a port picked here and
// handed on could be taken by another process before it binds), once its /health answers.
async function answered(log) {
  for (let i = 0; i < 300; i++) {
    const base = /Conversations API on (http:\/\/[^/\s]+)\/v1/.exec(log())?.[1];
    try {
      if (base && (await fetch(`${base}/health`)).ok) return base;
    } catch {
      // Not listening yet.
    }
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
  throw new Error(`persist serve never answered: ${log()}`);
}

test("signals reach persist serve: SIGHUP reloads its keys, SIGTERM stops it cleanly", async () => {
  const dir = mkdtempSync(path.join(tmpdir(), "persist-serve-"));
  const keys = path.join(dir, "keys");
  writeFileSync(keys, "acme:sk-acme-npm-0123456789abcdef\n");
  const server = spawn(
    launcher(app),
    ["--url", `sqlite:${path.join(dir, "chat.db")}`, "serve", "--addr", "127.0.0.1:0", "--keys-file", keys],
    // Its own process group, so that whatever happens the binary is killed with it (below).
    { stdio: ["ignore", "ignore", "pipe"], detached: true },
  );
  let log = "";
  server.stderr.on("data", (chunk) => (log += chunk));
  const exited = once(server, "exit");
  try {
    const base = await answered(() => log);
    const list = (key) => fetch(`${base}/v1/persist/conversations`, { headers: { authorization: `Bearer ${key}` } });
    assert.equal((await list("sk-globex-npm-0123456789abcdef")).status, 401);

    writeFileSync(keys, "acme:sk-acme-npm-0123456789abcdef\nglobex:sk-globex-npm-0123456789abcdef\n");
    server.kill("SIGHUP");
    let status;
    for (let i = 0; i < 100 && status !== 200; i++) {
      await new Promise((resolve) => setTimeout(resolve, 100));
      status = (await list("sk-globex-npm-0123456789abcdef")).status;
    }
    assert.equal(status, 200, log);

    server.kill("SIGTERM");
    const [code, signal] = await exited;
    assert.deepEqual([code, signal], [0, null], log);
  } finally {
    try {
      process.kill(-server.pid, "SIGKILL");
    } catch {
      // Already gone, binary and all.
    }
  }
});
