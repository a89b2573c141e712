// persist-store as npm installs it from its tarballs (PERSIST_STORE_TARBALLS: the folder
// ../npm/pack.mjs wrote, as run.sh sets it): without this platform's package (optional
// dependencies left out) importing it fails with an error naming the package to install;
// PERSIST_STORE_ADDON loads a build of one's own instead.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync, spawnSync } from 'node:child_process';
import { mkdtempSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

const TARBALLS = process.env.PERSIST_STORE_TARBALLS;
const skip = TARBALLS ? false : process.env.CI ? false : 'PERSIST_STORE_TARBALLS is not set (run.sh sets it)';

test('installed without its platform package, persist-store names the package to install; PERSIST_STORE_ADDON loads one', { skip, timeout: 60_000 }, () => {
  assert.ok(TARBALLS, 'CI: PERSIST_STORE_TARBALLS is required');
  const main = readdirSync(TARBALLS).find((name) => name.startsWith('persist-store-') && name.endsWith('.tgz'));
  const [platform] = readdirSync(join(TARBALLS, 'platforms'));
  const folder = mkdtempSync(join(tmpdir(), 'persist-store-bare-'));
  try {
    writeFileSync(join(folder, 'package.json'), '{ "private": true, "type": "module" }\n');
    execFileSync('npm', ['install', '--offline', '--omit=optional', '--no-audit', '--no-fund', '--loglevel=error', join(TARBALLS, main)], {
      cwd: folder,
      stdio: 'ignore',
    });
    const script = "const { Store } = await import('persist-store'); const store = await Store.open('memory:'); console.log(store.url); await store.close();";
    const env = { ...process.env };
    delete env.PERSIST_STORE_ADDON;
    const bare = spawnSync(process.execPath, ['--input-type=module', '-e', script], { cwd: folder, env, encoding: 'utf8' });
    assert.notEqual(bare.status, 0);
    const version = main.slice('persist-store-'.length, -'.tgz'.length);
    const name = platform.slice('persist-store-'.length, -`-${version}.tgz`.length);
    assert.match(bare.stderr, new RegExp(`no addon of persist for this platform \\(${name}\\)`));
    assert.match(bare.stderr, new RegExp(`npm install @persist-store/${name}@${version.replaceAll('.', '\\.')}`));

    // The addon of the platform package, given by path.
    const unpacked = join(folder, 'addon');
    execFileSync('mkdir', ['-p', unpacked]);
    execFileSync('tar', ['-xzf', join(TARBALLS, 'platforms', platform), '-C', unpacked]);
    const given = spawnSync(process.execPath, ['--input-type=module', '-e', script], {
      cwd: folder,
      env: { ...env, PERSIST_STORE_ADDON: join(unpacked, 'package/persist-store.node') },
      encoding: 'utf8',
    });
    assert.equal(given.status, 0, given.stderr);
    assert.equal(given.stdout.trim(), 'memory:');
  } finally {
    rmSync(folder, { recursive: true, force: true });
  }
});
