#!/usr/bin/env node
// Makes the npm tarballs: the launcher `persist-cli` (in DIR) and, for each binary given, the
// platform package `@persist-cli/<platform>` holding it (in DIR/platforms). Every package gets the Cargo workspace's
// version, and the launcher lists every platform of platforms.json as an optional dependency
// at that version, so one release is one version everywhere.
//
//   node crates/cli/dist/npm/pack.mjs --out target/npm [--binary PLATFORM=PATH ...]
//
// PLATFORM is a key of platforms.json (linux-x64-gnu) or the Rust target it is built for
// (x86_64-unknown-linux-gnu).
//
// `.ci/run` packs this machine's platform from its debug build and installs the tarballs;
// `.github/workflows/release.yml` packs every platform's release build and publishes them.
import { execFileSync } from "node:child_process";
import { chmodSync, copyFileSync, mkdirSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";

const here = path.dirname(fileURLToPath(import.meta.url));
// The workspace: Cargo.toml (the version) and the LICENSE files.
const root = path.resolve(here, "../../../..");

function fail(message) {
  console.error(`pack.mjs: ${message}`);
  process.exit(2);
}

function parseArgs(argv) {
  const args = { out: null, binaries: [] };
  for (let i = 0; i < argv.length; i++) {
    const value = argv[i + 1];
    if (argv[i] === "--out" && value) {
      args.out = path.resolve(value);
      i++;
    } else if (argv[i] === "--binary" && value && value.includes("=")) {
      const [name, file] = [value.slice(0, value.indexOf("=")), value.slice(value.indexOf("=") + 1)];
      args.binaries.push({ name, file: path.resolve(file) });
      i++;
    } else {
      fail(`unexpected argument ${argv[i]}; usage: --out DIR [--binary PLATFORM=PATH ...]`);
    }
  }
  if (!args.out) fail("--out DIR is required");
  return args;
}

/** The `version` of Cargo.toml's `[workspace.package]`: the version of every crate and package. */
function workspaceVersion() {
  const manifest = readFileSync(path.join(root, "Cargo.toml"), "utf8");
  const section = manifest.split(/^\[workspace\.package\]\s*$/m)[1];
  const version = section && section.split(/^\[/m)[0].match(/^version\s*=\s*"([^"]+)"/m);
  if (!version) fail("no version in Cargo.toml's [workspace.package]");
  return version[1];
}

function writeJson(file, value) {
  writeFileSync(file, `${JSON.stringify(value, null, 2)}\n`);
}

/** The licence files every package ships (listed in its `files`: npm adds only LICENSE itself). */
const LICENSES = ["LICENSE-MIT", "LICENSE-APACHE"];

function copyLicenses(dir) {
  for (const file of LICENSES) copyFileSync(path.join(root, file), path.join(dir, file));
}

/** Packs a staged folder into `out`; answers the tarball's path. */
function pack(dir, out) {
  const report = JSON.parse(execFileSync("npm", ["pack", "--json", "--pack-destination", out], { cwd: dir, encoding: "utf8" }));
  return path.join(out, report[0].filename);
}

const args = parseArgs(process.argv.slice(2));
const version = workspaceVersion();
const platforms = JSON.parse(readFileSync(path.join(here, "platforms.json"), "utf8"));
delete platforms["//"];
const stage = path.join(args.out, "stage");
rmSync(stage, { recursive: true, force: true });
mkdirSync(stage, { recursive: true });
const tarballs = [];

// The launcher: its own files (bin/persist.js, its npm page README.md), the version, and every
// platform package as optional.
const launcher = path.join(stage, "persist-cli");
mkdirSync(path.join(launcher, "bin"), { recursive: true });
const manifest = JSON.parse(readFileSync(path.join(here, "persist-cli/package.json"), "utf8"));
manifest.version = version;
manifest.files = [...new Set([...manifest.files, ...LICENSES])];
manifest.optionalDependencies = Object.fromEntries(Object.keys(platforms).map((name) => [`@persist-cli/${name}`, version]));
writeJson(path.join(launcher, "package.json"), manifest);
copyFileSync(path.join(here, "persist-cli/bin/persist.js"), path.join(launcher, "bin/persist.js"));
chmodSync(path.join(launcher, "bin/persist.js"), 0o755);
copyFileSync(path.join(here, "persist-cli/README.md"), path.join(launcher, "README.md"));
copyLicenses(launcher);
tarballs.push(pack(launcher, args.out));

// A package per binary given.
for (const { name, file } of args.binaries) {
  // A platform's npm name, or the Rust target it is built for.
  const key = platforms[name] ? name : Object.keys(platforms).find((each) => platforms[each].target === name);
  if (!key) fail(`unknown platform ${name}; platforms.json has ${Object.keys(platforms).join(", ")}`);
  const platform = platforms[key];
  const dir = path.join(stage, key);
  mkdirSync(dir, { recursive: true });
  const binary = platform.os === "win32" ? "persist.exe" : "persist";
  copyFileSync(file, path.join(dir, binary));
  chmodSync(path.join(dir, binary), 0o755);
  writeJson(path.join(dir, "package.json"), {
    name: `@persist-cli/${key}`,
    version,
    description: `The persist binary for ${key} (${platform.target}); installed by persist-cli, which runs it.`,
    license: manifest.license,
    repository: manifest.repository,
    os: [platform.os],
    cpu: [platform.cpu],
    ...(platform.libc ? { libc: [platform.libc] } : {}),
    // npm ships a licence file of itself only when it is named LICENSE or LICENCE.
    files: [binary, ...LICENSES],
    preferUnplugged: true,
  });
  writeFileSync(
    path.join(dir, "README.md"),
    `# @persist-cli/${key}\n\nThe \`persist\` binary for ${key} (${platform.target}). Install \`persist-cli\`, which depends on it where it fits and runs it.\n`,
  );
  copyLicenses(dir);
  mkdirSync(path.join(args.out, "platforms"), { recursive: true });
  tarballs.push(pack(dir, path.join(args.out, "platforms")));
}

for (const tarball of tarballs) {
  const bytes = statSync(tarball).size;
  console.log(`${tarball}\t${bytes < 1048576 ? `${(bytes / 1024).toFixed(1)} KiB` : `${(bytes / 1048576).toFixed(1)} MiB`}`);
}
