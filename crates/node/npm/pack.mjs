#!/usr/bin/env node
// Makes the npm tarballs of persist in Node: `persist-store` (the JavaScript, its types, its
// README) and, for each addon given, the platform package `@persist-store/<platform>` holding
// it as `persist-store.node`. The platforms are the command line's (crates/cli/dist/npm/
// platforms.json), every package gets the Cargo workspace's version, and `persist-store` lists
// every platform as an optional dependency at that version.
//
//   node crates/node/npm/pack.mjs --out target/npm-store [--addon PLATFORM=PATH ...]
//
// PLATFORM is a key of platforms.json (linux-x64-gnu) or its Rust target; PATH the library
// cargo built (target/debug/libpersist_node.so). `.ci/run` packs this machine's platform and
// installs the tarballs where the tests run.
import { execFileSync } from 'node:child_process';
import { copyFileSync, mkdirSync, readFileSync, readdirSync, rmSync, statSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const here = path.dirname(fileURLToPath(import.meta.url));
const root = path.resolve(here, '../../..');

function fail(message) {
  console.error(`pack.mjs: ${message}`);
  process.exit(2);
}

function parseArgs(argv) {
  const args = { out: null, addons: [] };
  for (let i = 0; i < argv.length; i++) {
    const value = argv[i + 1];
    if (argv[i] === '--out' && value) {
      args.out = path.resolve(value);
      i++;
    } else if (argv[i] === '--addon' && value?.includes('=')) {
      const at = value.indexOf('=');
      args.addons.push({ name: value.slice(0, at), file: path.resolve(value.slice(at + 1)) });
      i++;
    } else {
      fail(`unexpected argument ${argv[i]}; usage: --out DIR [--addon PLATFORM=PATH ...]`);
    }
  }
  if (!args.out) fail('--out DIR is required');
  return args;
}

function workspaceVersion() {
  const manifest = readFileSync(path.join(root, 'Cargo.toml'), 'utf8');
  const section = manifest.split(/^\[workspace\.package\]\s*$/m)[1];
  const version = section && section.split(/^\[/m)[0].match(/^version\s*=\s*"([^"]+)"/m);
  if (!version) fail("no version in Cargo.toml's [workspace.package]");
  return version[1];
}

const writeJson = (file, value) => writeFileSync(file, `${JSON.stringify(value, null, 2)}\n`);
const LICENSES = ['LICENSE-MIT', 'LICENSE-APACHE'];
const copyLicenses = (dir) => LICENSES.forEach((file) => copyFileSync(path.join(root, file), path.join(dir, file)));

function pack(dir, out) {
  mkdirSync(out, { recursive: true });
  const report = JSON.parse(execFileSync('npm', ['pack', '--json', '--pack-destination', out], { cwd: dir, encoding: 'utf8' }));
  return path.join(out, report[0].filename);
}

const args = parseArgs(process.argv.slice(2));
const version = workspaceVersion();
const platforms = JSON.parse(readFileSync(path.join(root, 'crates/cli/dist/npm/platforms.json'), 'utf8'));
delete platforms['//'];
const stage = path.join(args.out, 'stage');
rmSync(stage, { recursive: true, force: true });
mkdirSync(stage, { recursive: true });
const tarballs = [];

// persist-store: its files as they are in the source, the version, every platform optional.
const source = path.join(here, 'persist-store');
const main = path.join(stage, 'persist-store');
mkdirSync(main);
const manifest = JSON.parse(readFileSync(path.join(source, 'package.json'), 'utf8'));
manifest.version = version;
manifest.files = [...new Set([...manifest.files, 'README.md', ...LICENSES])];
manifest.optionalDependencies = Object.fromEntries(Object.keys(platforms).map((name) => [`@persist-store/${name}`, version]));
for (const file of readdirSync(source)) if (file !== 'package.json') copyFileSync(path.join(source, file), path.join(main, file));
writeJson(path.join(main, 'package.json'), manifest);
copyLicenses(main);
tarballs.push(pack(main, args.out));

for (const { name, file } of args.addons) {
  const key = platforms[name] ? name : Object.keys(platforms).find((each) => platforms[each].target === name);
  if (!key) fail(`unknown platform ${name}; platforms.json has ${Object.keys(platforms).join(', ')}`);
  const platform = platforms[key];
  const dir = path.join(stage, key);
  mkdirSync(dir, { recursive: true });
  copyFileSync(file, path.join(dir, 'persist-store.node'));
  writeJson(path.join(dir, 'package.json'), {
    name: `@persist-store/${key}`,
    version,
    description: `The persist addon for ${key} (${platform.target}); loaded by persist-store.`,
    license: manifest.license,
    repository: manifest.repository,
    os: [platform.os],
    cpu: [platform.cpu],
    ...(platform.libc ? { libc: [platform.libc] } : {}),
    files: ['persist-store.node', ...LICENSES],
  });
  writeFileSync(
    path.join(dir, 'README.md'),
    `# @persist-store/${key}\n\nThe persist addon for ${key} (${platform.target}). Install \`persist-store\`, which depends on it where it fits and loads it.\n`,
  );
  copyLicenses(dir);
  tarballs.push(pack(dir, path.join(args.out, 'platforms')));
}

for (const tarball of tarballs) {
  const bytes = statSync(tarball).size;
  console.log(`${tarball}\t${bytes < 1048576 ? `${(bytes / 1024).toFixed(1)} KiB` : `${(bytes / 1048576).toFixed(1)} MiB`}`);
}
