"""The `cli` tag of doc_snippets.py: a page's `sh cli` blocks, run as a reader runs them.

A page's blocks run in order, by bash (`-euo pipefail`), in one empty folder of their own (a
reader's terminal), which holds a copy of the SQLite store PERSIST_CLI_STORE names as `chat.db`,
with PERSIST_URL naming it (`sqlite:chat.db`, as the pages set it). `persist` is whatever the
PATH gives, unless a block installs it:

- `pip install ...` installs into a virtual environment of the folder's own (its `bin` first on
  the PATH, as after `source .venv/bin/activate`), where pip finds persist's wheels in the folders
  PERSIST_WHEELS names (what CI built: nothing of persist is on PyPI yet) and anything else on
  the package index;
- `npm install ...` installs into the folder from a registry this module serves on 127.0.0.1,
  which holds the npm tarballs found under the folders PERSIST_NPM_TARBALLS names, and nothing
  else (npm has another project's `persist-store`);
- a block that starts a server (`serve --addr HOST:PORT`) runs in a process group of its own and
  passes once `http://HOST:PORT/health` answers 200; the group is then sent SIGTERM and must stop
  (the server lets its requests finish and exits) before the next block runs.
"""

import base64
import hashlib
import http.server
import io
import json
import os
import pathlib
import re
import shutil
import signal
import subprocess
import sys
import tarfile
import threading
import time
import urllib.request


class Registry(http.server.BaseHTTPRequestHandler):
    """An npm registry holding the given tarballs: each package's document and its tarballs."""

    packages = {}  # name -> {version: (manifest, tarball path)}

    def do_GET(self):  # noqa: N802 (the handler's name)
        path = urllib.request.unquote(self.path.split("?")[0]).lstrip("/")
        if path.startswith("-/tarballs/"):
            for versions in Registry.packages.values():
                for _, tarball in versions.values():
                    if tarball.name == path.rsplit("/", 1)[1]:
                        return self.send(tarball.read_bytes(), "application/octet-stream")
            return self.send(b"{}", "application/json", 404)
        versions = Registry.packages.get(path)
        if versions is None:
            return self.send(b'{"error":"not found"}', "application/json", 404)
        base = f"http://127.0.0.1:{self.server.server_address[1]}/-/tarballs/"
        document = {
            "name": path,
            "dist-tags": {"latest": max(versions, key=lambda version: [int(x) if x.isdigit() else 0 for x in re.split(r"[.-]", version)])},
            "versions": {},
        }
        for version, (manifest, tarball) in versions.items():
            data = tarball.read_bytes()
            dist = {
                "tarball": base + tarball.name,
                "shasum": hashlib.sha1(data).hexdigest(),
                "integrity": "sha512-" + base64.b64encode(hashlib.sha512(data).digest()).decode(),
            }
            document["versions"][version] = dict(manifest, dist=dist)
        self.send(json.dumps(document).encode(), "application/json")

    def send(self, data, kind, status=200):
        self.send_response(status)
        self.send_header("content-type", kind)
        self.send_header("content-length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args):
        pass


def start_registry(folders):
    """Serves every `*.tgz` under `folders` as an npm registry; answers its URL."""
    for folder in folders:
        for tarball in sorted(pathlib.Path(folder).rglob("*.tgz")):
            with tarfile.open(tarball) as archive:
                manifest = json.load(io.TextIOWrapper(archive.extractfile("package/package.json")))
            Registry.packages.setdefault(manifest["name"], {})[manifest["version"]] = (manifest, tarball)
    if not Registry.packages:
        sys.exit(f"no npm tarball under {folders}")
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Registry)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return f"http://127.0.0.1:{server.server_address[1]}/"


def health(address):
    try:
        with urllib.request.urlopen(f"http://{address}/health", timeout=1) as answer:
            return answer.status == 200
    except OSError:
        return False


def serve(name, command, env, folder, address):
    """Runs a block that starts a server: passes once it answers, then stops it by SIGTERM."""
    if health(address):
        sys.exit(f"{name}: something already answers at {address}")
    process = subprocess.Popen(command, env=env, cwd=folder, start_new_session=True)
    deadline = time.monotonic() + 120
    while not health(address):
        if process.poll() is not None:
            sys.exit(f"{name}: ended ({process.returncode}) before {address} answered")
        if time.monotonic() > deadline:
            os.killpg(process.pid, signal.SIGKILL)
            sys.exit(f"{name}: {address} never answered")
        time.sleep(0.1)
    print(f"{name}: {address}/health answered; stopping it (SIGTERM)", flush=True)
    os.killpg(process.pid, signal.SIGTERM)
    # Stopped when every process of its group has ended (the shell ends first, the server once
    # its requests are answered), so the next block finds the address free.
    deadline = time.monotonic() + 20
    while process.poll() is None or group_alive(process.pid):
        if time.monotonic() > deadline:
            os.killpg(process.pid, signal.SIGKILL)
            sys.exit(f"{name}: still running 20 s after SIGTERM")
        time.sleep(0.05)


def group_alive(group):
    try:
        os.killpg(group, 0)
    except ProcessLookupError:
        return False
    return True


def run_page(blocks, env, folder, script):
    """Runs one page's `sh cli` blocks, in order, in `folder` (empty); `script` is a scratch path."""
    store = pathlib.Path(env["PERSIST_CLI_STORE"])
    for suffix in ("", "-wal"):
        if pathlib.Path(f"{store}{suffix}").exists():
            shutil.copy(f"{store}{suffix}", pathlib.Path(folder) / f"chat.db{suffix}")
    env = dict(env, PERSIST_URL="sqlite:chat.db")
    if any(re.search(r"^\s*pip install", code, re.M) for _, _, code in blocks):
        venv = pathlib.Path(folder) / ".venv"
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
        env["PATH"] = f"{venv / 'bin'}{os.pathsep}{env['PATH']}"
        env["VIRTUAL_ENV"] = str(venv)
        env["PIP_FIND_LINKS"] = " ".join(env.get("PERSIST_WHEELS", "").split())
        env.update(PIP_DISABLE_PIP_VERSION_CHECK="1", PIP_QUIET="1")
    if any(re.search(r"^\s*npm install", code, re.M) for _, _, code in blocks):
        env["npm_config_registry"] = start_registry(env.get("PERSIST_NPM_TARBALLS", "").split())
        env.update(npm_config_audit="false", npm_config_fund="false", npm_config_update_notifier="false")
        env["npm_config_cache"] = str(pathlib.Path(folder) / ".npm-cache")
    for name, _, code in blocks:
        print(name, flush=True)
        script.write_text(code)
        command = ["bash", "-euo", "pipefail", str(script)]
        started = re.search(r"\bserve\b.*--addr\s+(\S+)", code)
        if started:
            serve(name, command, env, folder, started.group(1).replace("0.0.0.0", "127.0.0.1"))
        else:
            subprocess.run(command, check=True, timeout=300, env=env, cwd=folder)
