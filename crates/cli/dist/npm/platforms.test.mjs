// The platform list agrees everywhere it is written: platforms.json (what pack.mjs packs and the
// launcher depends on), the names the launcher looks for, and the release workflow's matrix.
import { readFileSync } from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { test } from "node:test";
import assert from "node:assert/strict";

const here = path.dirname(fileURLToPath(import.meta.url));
const platforms = JSON.parse(readFileSync(path.join(here, "platforms.json"), "utf8"));
delete platforms["//"];

test("each platform's name is the one the launcher looks for on it", () => {
  // bin/persist.js: `${platform}-${arch}`, then `-gnu`/`-musl` on Linux and `-msvc` on Windows.
  for (const [name, { os, cpu, libc }] of Object.entries(platforms)) {
    const suffix = os === "linux" ? `-${libc === "glibc" ? "gnu" : "musl"}` : os === "win32" ? "-msvc" : "";
    assert.equal(`${os}-${cpu}${suffix}`, name);
    if (os === "linux") assert.ok(["glibc", "musl"].includes(libc), name);
  }
});

test("the release workflow builds every platform, for the target platforms.json names", () => {
  const workflow = readFileSync(path.join(here, "../../../../.github/workflows/release.yml"), "utf8");
  const built = Object.fromEntries(
    [...workflow.matchAll(/\{ npm: ([\w-]+), os: [\w.-]+, target: ([\w-]+)/g)].map(([, name, target]) => [name, target]),
  );
  assert.deepEqual(
    built,
    Object.fromEntries(Object.entries(platforms).map(([name, { target }]) => [name, target])),
  );
});
