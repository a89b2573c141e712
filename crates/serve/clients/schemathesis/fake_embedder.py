"""A loopback OpenAI-compatible embeddings endpoint for `persist serve --embeddings-url`, so
that a schemathesis run (run.sh) tests POST /v1/persist/recall without a model or a network:
POST /embeddings answers each input with a deterministic vector made from its SHA-256.

    python3 fake_embedder.py [--port 3399] [--dimensions 8]
    persist ... serve --embeddings-url http://127.0.0.1:3399 --embeddings-dimensions 8
"""

import argparse
import hashlib
import json
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


def vector(text: str, dimensions: int) -> list[float]:
    digest = b""
    counter = 0
    while len(digest) < dimensions:
        digest += hashlib.sha256(f"{counter}:{text}".encode()).digest()
        counter += 1
    return [byte / 255.0 - 0.5 for byte in digest[:dimensions]]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=3399)
    parser.add_argument("--dimensions", type=int, default=8)
    args = parser.parse_args()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = json.loads(self.rfile.read(int(self.headers.get("content-length", 0))) or b"{}")
            inputs = body.get("input", [])
            inputs = inputs if isinstance(inputs, list) else [inputs]
            dimensions = body.get("dimensions") or args.dimensions
            data = [
                {"object": "embedding", "index": index, "embedding": vector(str(text), dimensions)}
                for index, text in enumerate(inputs)
            ]
            answer = json.dumps(
                {"object": "list", "data": data, "model": body.get("model"), "usage": {"prompt_tokens": 0, "total_tokens": 0}}
            ).encode()
            self.send_response(200)
            self.send_header("content-type", "application/json")
            self.send_header("content-length", str(len(answer)))
            self.end_headers()
            self.wfile.write(answer)

        def log_message(self, *_: object) -> None:
            pass

    ThreadingHTTPServer(("127.0.0.1", args.port), Handler).serve_forever()


if __name__ == "__main__":
    main()
