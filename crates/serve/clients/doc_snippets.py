"""Runs the documentation's Python, TypeScript and shell snippets, so the pages show what works.

    python doc_snippets.py [--tag TAG] PYTHON NODE FILE...

runs, in order, every code block of the FILEs whose info string is `python` or `ts` followed by
TAG (no TAG: the blocks with no tag), each as a whole program in an empty folder of its own:
PYTHON runs the Python blocks, NODE (or `-` when there are none) the `ts` blocks, plain
JavaScript as written, as modules inside clients/node, where `openai` and `@openai/agents` are
installed. Each FILE must hold at least one such block. The tags:

- none: against a running `persist serve` (PERSIST_BASE_URL, PERSIST_API_KEY);
- `in-process`: persist in process (`persist-store`), no server: a snippet's store is a file in
  its empty folder;
- `mcp`: an MCP client against `persist serve`'s /mcp (PERSIST_MCP_URL, PERSIST_API_KEY);
- `cli`: `sh` blocks of shell commands, a page's blocks in order in one folder holding a copy of
  the SQLite store PERSIST_CLI_STORE names as `chat.db` (CI gives the quickstart's), with
  `persist` on the PATH; `pip install` and `npm install` take persist's packages from the files
  CI built (PERSIST_WHEELS, PERSIST_NPM_TARBALLS); a block that starts `persist serve` passes
  once the server answers, then is stopped: shell_snippets.py says how.
- `node-in-process`: `ts` blocks of persist in Node, in process (`persist-store`), run as
  modules inside crates/node/tests, where `persist-store` (installed from its tarballs by its
  run.sh) and the AI SDK are; a snippet's store is a file in its empty folder.
- `langgraph`: persist in LangGraph (`persist.langgraph`, in process), run by a PYTHON that has
  LangGraph; a snippet's store is a file in its empty folder.
- `mcp-config`: `json` blocks of an agent's MCP configuration (`mcpServers`): each server is
  launched as the configuration says (`persist` on the PATH), by PYTHON with the MCP SDK's own
  stdio client (`mcp`), which initializes a session and lists its tools. The one liberty taken:
  the home folder the examples write (`/home/me/`) is the snippet's empty folder.

The snippets keep two clients, as an app does: the conversations' own, pointed at persist
(PERSIST_BASE_URL, PERSIST_API_KEY), and the model's, the SDKs' default one (OPENAI_BASE_URL,
OPENAI_API_KEY). Here the model is a stand-in served by this script on 127.0.0.1: it answers
`POST /v1/responses` with one assistant message and anything else with 404, as OpenAI would. A
snippet that sent its conversations to the model's client fails (404), one that sent its model
calls to persist fails too (persist has no /v1/responses), and a snippet that runs an agent
must have called the stand-in.
"""

import http.server
import json
import os
import pathlib
import re
import subprocess
import sys
import tempfile
import textwrap
import threading
import time
import uuid

# What a snippet prints as the model's answer.
ANSWER = "Your order ships tomorrow."


class Model(http.server.BaseHTTPRequestHandler):
    """OpenAI's Responses API as far as a run of the Agents SDKs needs it: one answer, no tools."""

    calls = 0
    strays = []

    def do_POST(self):  # noqa: N802 (the handler's name)
        body = self.rfile.read(int(self.headers.get("content-length") or 0))
        if self.path.rstrip("/") != "/v1/responses":
            return self.refuse()
        request = json.loads(body or b"{}")
        if request.get("stream"):
            return self.refuse("this stand-in answers non-streamed requests only")
        Model.calls += 1
        self.answer(
            {
                "id": f"resp_{uuid.uuid4().hex}",
                "object": "response",
                "created_at": int(time.time()),
                "status": "completed",
                "model": request.get("model") or "gpt-stand-in",
                "output": [
                    {
                        "type": "message",
                        "id": f"msg_{uuid.uuid4().hex}",
                        "status": "completed",
                        "role": "assistant",
                        "content": [{"type": "output_text", "text": ANSWER, "annotations": []}],
                    }
                ],
                "parallel_tool_calls": True,
                "tool_choice": "auto",
                "tools": [],
                "error": None,
                "incomplete_details": None,
                "instructions": request.get("instructions"),
                "metadata": {},
                "text": {"format": {"type": "text"}},
                "truncation": "disabled",
                "usage": {
                    "input_tokens": 10,
                    "input_tokens_details": {"cached_tokens": 0},
                    "output_tokens": 5,
                    "output_tokens_details": {"reasoning_tokens": 0},
                    "total_tokens": 15,
                },
            }
        )

    def do_GET(self):  # noqa: N802
        self.refuse()

    do_DELETE = do_GET

    def refuse(self, why=None):
        Model.strays.append(f"{self.command} {self.path}")
        message = why or f"Invalid URL ({self.command} {self.path})"
        self.answer({"error": {"message": message, "type": "invalid_request_error", "param": None, "code": None}}, 404)

    def answer(self, body, status=200):
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(data)))
        self.send_header("x-should-retry", "false")
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args):
        pass


NEEDS = {
    None: ("PERSIST_BASE_URL", "PERSIST_API_KEY"),
    "in-process": (),
    "mcp": ("PERSIST_MCP_URL", "PERSIST_API_KEY"),
    "cli": ("PERSIST_CLI_STORE",),
    "mcp-config": (),
    "node-in-process": (),
    "langgraph": (),
}

# The language of each tag's blocks (the others': python and ts).
LANGUAGE = {"cli": "sh", "mcp-config": "json", "node-in-process": "ts"}

# Launches each server an MCP configuration names (CONFIG, FOLDER set before it), as an agent
# does, with the MCP SDK's stdio client.
MCP_CONFIG_CLIENT = """
import asyncio, json
from mcp import ClientSession, StdioServerParameters
from mcp.client.stdio import stdio_client

async def main():
    for name, server in json.loads(CONFIG)["mcpServers"].items():
        args = [arg.replace("/home/me/", FOLDER + "/") for arg in server.get("args", [])]
        params = StdioServerParameters(command=server["command"], args=args)
        async with stdio_client(params) as (read, write):
            async with ClientSession(read, write) as session:
                await session.initialize()
                tools = (await session.list_tools()).tools
                assert tools, f"{name}: no tools"
                print(f"{name}: {len(tools)} tools ({', '.join(tool.name for tool in tools)})")

asyncio.run(main())
"""

args = sys.argv[1:]
tag = None
if args[:1] == ["--tag"]:
    tag, args = args[1], args[2:]
if tag not in NEEDS or len(args) < 3:
    sys.exit(__doc__)
python, node, files = args[0], args[1], args[2:]
# A path to an interpreter is the same path from the folder a snippet runs in.
python, node = (os.path.abspath(tool) if os.sep in tool else tool for tool in (python, node))
for name in NEEDS[tag]:
    if not os.environ.get(name):
        sys.exit(f"{name} is not set: the persist server the snippets talk to")
blocks = []
for file in files:
    text = pathlib.Path(file).read_text()
    found = [
        (f"{file} snippet {index}", lang, textwrap.dedent(code))
        # A fence may be indented (a block in a list item): its lines are, as much.
        for index, (lang, rest, code) in enumerate(re.findall(r"^[ \t]*```(python|ts|sh|json)([^\n]*)\n(.*?)^[ \t]*```", text, re.S | re.M))
        if (rest.split() or [None])[0] == tag and lang in ((LANGUAGE[tag],) if tag in LANGUAGE else ("python", "ts"))
    ]
    if not found:
        sys.exit(f"{file} has no snippet tagged {tag!r}")
    blocks += found
if node == "-" and any(lang == "ts" for _, lang, _ in blocks):
    sys.exit("a ts snippet, and no NODE to run it")

model = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Model)
threading.Thread(target=model.serve_forever, daemon=True).start()
env = dict(
    os.environ,
    OPENAI_BASE_URL=f"http://127.0.0.1:{model.server_address[1]}/v1",
    OPENAI_API_KEY="sk-the-models-own-key",
    # The Agents SDKs would send their traces to OpenAI with that key.
    OPENAI_AGENTS_DISABLE_TRACING="1",
)
here = pathlib.Path(__file__).resolve().parent
if tag == "cli":
    sys.path.insert(0, str(here))
    import shell_snippets

    for file in files:
        with tempfile.TemporaryDirectory() as folder:
            page = [block for block in blocks if block[0].startswith(f"{file} snippet ")]
            shell_snippets.run_page(page, env, folder, here / "snippet.sh")
    (here / "snippet.sh").unlink(missing_ok=True)
    print(f"every shell snippet of {len(files)} pages ran")
    sys.exit(0)
for index, (name, lang, code) in enumerate(blocks):
    if lang == "python":
        path = here / f"snippet_{index}.py"
        command = [python, str(path)]
    elif lang == "json":
        path = here / f"snippet_{index}.py"
        command = [python, str(path)]
    elif tag == "node-in-process":
        path = here.parent.parent / "node" / "tests" / f"snippet_{index}.mjs"
        command = [node, str(path)]
    else:
        path = here / "node" / f"snippet_{index}.mjs"
        command = [node, str(path)]
    print(name, flush=True)
    before = Model.calls
    try:
        # In process, a snippet's store is a file in the folder it runs in: an empty one.
        with tempfile.TemporaryDirectory() as folder:
            if lang == "json":
                path.write_text(f"CONFIG = {code!r}\nFOLDER = {folder!r}\n{MCP_CONFIG_CLIENT}")
            else:
                path.write_text(code)
            subprocess.run(command, check=True, timeout=120, env=env, cwd=folder)
    finally:
        path.unlink(missing_ok=True)
    # Whether it runs an agent, read from its code, not its comments.
    mark = "//" if lang == "ts" else "#"
    statements = "\n".join(line.split(f" {mark} ")[0] for line in code.splitlines() if not line.strip().startswith(mark))
    runs_an_agent = "Runner.run(" in statements or "await run(" in statements
    if runs_an_agent and Model.calls == before:
        sys.exit(f"{name} runs an agent, and its model was never called")
    if Model.strays:
        sys.exit(f"{name} sent the model's client what is not a model call: {Model.strays}")
model.shutdown()
print(f"every snippet ran ({Model.calls} model calls, each to the model's own client)")
