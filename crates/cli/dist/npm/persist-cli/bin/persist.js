#!/usr/bin/env node
// The `persist` command for npm: finds the binary of this platform's package
// (`@persist-cli/<platform>`, one of this package's optionalDependencies, which npm installs
// only where its `os`, `cpu` and `libc` fit) and runs it with this process's arguments,
// standard streams and exit status. Signals sent to this process (Ctrl-C, SIGTERM, SIGHUP,
// which makes `persist serve` reload its keys) are passed on to the binary.
//
// `PERSIST_BINARY=/path/to/persist` runs that binary instead (a build of your own).
"use strict";

const { spawn } = require("node:child_process");

const ownPackage = require("../package.json");

/** The C library this Linux process runs on: "gnu" (glibc) or "musl". */
function linuxLibc() {
  try {
    // Node reports the glibc it runs on, and nothing on musl.
    process.report.excludeNetwork = true;
    return process.report.getReport().header.glibcVersionRuntime ? "gnu" : "musl";
  } catch {
    return "gnu";
  }
}

/** The platform packages that can run here, the best first. */
function candidates() {
  const { platform, arch } = process;
  if (platform === "linux") {
    // musl's builds are static: they run on glibc too, so they are the fallback there.
    return linuxLibc() === "musl" ? [`linux-${arch}-musl`] : [`linux-${arch}-gnu`, `linux-${arch}-musl`];
  }
  if (platform === "win32") return [`win32-${arch}-msvc`];
  return [`${platform}-${arch}`];
}

function binaryPath() {
  if (process.env.PERSIST_BINARY) return process.env.PERSIST_BINARY;
  const file = process.platform === "win32" ? "persist.exe" : "persist";
  const wanted = candidates();
  for (const name of wanted) {
    try {
      return require.resolve(`@persist-cli/${name}/${file}`);
    } catch {
      // Not installed here: try the next.
    }
  }
  const shipped = Object.keys(ownPackage.optionalDependencies || {}).map((dep) => dep.replace("@persist-cli/", ""));
  const fits = wanted.filter((name) => shipped.includes(name));
  const lines = [`persist-cli: no binary of persist for this platform (${wanted[0]}) is installed.`];
  if (fits.length > 0) {
    lines.push(
      `It ships as the package @persist-cli/${fits[0]}@${ownPackage.version}, which npm installs with`,
      "persist-cli unless optional dependencies were left out (--omit=optional, --no-optional) or the",
      `lockfile was made on another platform. Install it: npm install @persist-cli/${fits[0]}@${ownPackage.version}`,
    );
  } else {
    lines.push(`persist-cli ships binaries for: ${shipped.join(", ")}.`);
    lines.push("Elsewhere, build it from source (cargo install) and set PERSIST_BINARY to its path.");
  }
  console.error(lines.join("\n"));
  process.exit(1);
}

const binary = binaryPath();
const child = spawn(binary, process.argv.slice(2), { stdio: "inherit" });

const forwarded = process.platform === "win32" ? ["SIGINT", "SIGTERM"] : ["SIGINT", "SIGTERM", "SIGHUP"];
for (const signal of forwarded) {
  // A terminal's Ctrl-C reaches the binary too (same process group); a second SIGINT is
  // harmless to it: `persist serve` stops once, on the first.
  process.on(signal, () => child.kill(signal));
}

child.on("error", (error) => {
  console.error(`persist-cli: could not run ${binary}: ${error.message}`);
  process.exit(1);
});

child.on("exit", (code, signal) => {
  if (signal) {
    // Ends the way the binary ended, so a caller's wait sees the same signal.
    for (const name of forwarded) process.removeAllListeners(name);
    process.kill(process.pid, signal);
    return;
  }
  process.exit(code === null ? 1 : code);
});
