"""A stand-in OTLP/HTTP collector for CI: answers POST /v1/traces with 200, counts the requests
and the bytes received, and writes them to the file named by its first argument when stopped."""

import http.server
import signal
import sys

received = {"requests": 0, "bytes": 0, "paths": set()}


class Receiver(http.server.BaseHTTPRequestHandler):
    def do_POST(self):
        length = int(self.headers.get("Content-Length", "0"))
        body = self.rfile.read(length)
        received["requests"] += 1
        received["bytes"] += len(body)
        received["paths"].add(self.path)
        ok = self.path == "/v1/traces" and self.headers.get("Content-Type") == "application/x-protobuf"
        self.send_response(200 if ok else 400)
        self.send_header("Content-Type", "application/x-protobuf")
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args):
        pass


def stop(*_):
    with open(sys.argv[1], "w") as out:
        out.write(f"requests={received['requests']} bytes={received['bytes']} paths={sorted(received['paths'])}\n")
    sys.exit(0)


signal.signal(signal.SIGTERM, stop)
http.server.HTTPServer(("127.0.0.1", int(sys.argv[2])), Receiver).serve_forever()
