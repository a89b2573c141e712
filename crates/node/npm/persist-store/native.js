// Loads the addon: this platform's package (`@persist-store/<platform>`, one of this package's
// optionalDependencies, which npm installs only where its `os`, `cpu` and `libc` fit), or the
// file `PERSIST_STORE_ADDON` names (a build of your own).
import { createRequire } from 'node:module';

const require = createRequire(import.meta.url);
const ownPackage = require('./package.json');

/** The C library this Linux process runs on: "gnu" (glibc) or "musl". */
function linuxLibc() {
  try {
    // Node reports the glibc it runs on, and nothing on musl.
    process.report.excludeNetwork = true;
    return process.report.getReport().header.glibcVersionRuntime ? 'gnu' : 'musl';
  } catch {
    return 'gnu';
  }
}

/** The platform package that can load here (an addon links to one C library: no fallback). */
function platformName() {
  const { platform, arch } = process;
  if (platform === 'linux') return `linux-${arch}-${linuxLibc()}`;
  if (platform === 'win32') return `win32-${arch}-msvc`;
  return `${platform}-${arch}`;
}

function load() {
  if (process.env.PERSIST_STORE_ADDON) return require(process.env.PERSIST_STORE_ADDON);
  const name = platformName();
  try {
    return require(`@persist-store/${name}/persist-store.node`);
  } catch (error) {
    if (error?.code !== 'MODULE_NOT_FOUND') throw error;
  }
  const shipped = Object.keys(ownPackage.optionalDependencies ?? {}).map((dep) => dep.replace('@persist-store/', ''));
  const lines = [`persist-store: no addon of persist for this platform (${name}) is installed.`];
  if (shipped.includes(name)) {
    lines.push(
      `It ships as the package @persist-store/${name}@${ownPackage.version}, which npm installs with`,
      'persist-store unless optional dependencies were left out (--omit=optional, --no-optional) or the',
      `lockfile was made on another platform. Install it: npm install @persist-store/${name}@${ownPackage.version}`,
    );
  } else {
    lines.push(`persist-store ships addons for: ${shipped.join(', ') || 'none'}.`);
    lines.push('Elsewhere, build crates/node with cargo and set PERSIST_STORE_ADDON to the library it made.');
  }
  const error = new Error(lines.join('\n'));
  error.code = 'PERSIST_STORE_NO_ADDON';
  throw error;
}

export const addon = load();
