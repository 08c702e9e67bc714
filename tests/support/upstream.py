"""A demo upstream API: answers every request with JSON describing what it received.

Used by the end-to-end tests (in-process, so they can count what reached it) and by
`cargo xtask run` (as a process: `python3 tests/support/upstream.py --port 8081`).
"""

import argparse
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class _Server(ThreadingHTTPServer):
    # socketserver's default listen backlog is 5: under ~50 concurrent connections Envoy's
    # connects timed out (503 "connection timeout") before the server thread accepted them.
    request_queue_size = 128


class Upstream:
    """A threaded HTTP server on 127.0.0.1 that records every request it answers."""

    def __init__(self, port=0):
        self.lock = threading.Lock()
        self.requests = []
        upstream = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def _answer(self):
                length = int(self.headers.get("content-length") or 0)
                if length:
                    self.rfile.read(length)
                seen = {"method": self.command, "path": self.path,
                        "headers": {k.lower(): v for k, v in self.headers.items()}}
                with upstream.lock:
                    upstream.requests.append(seen)
                body = json.dumps(seen).encode()
                self.send_response(200)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = _answer

            def log_message(self, *args):
                pass

        self.server = _Server(("127.0.0.1", port), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def start(self):
        self.thread.start()
        return self

    def count(self):
        with self.lock:
            return len(self.requests)

    def last(self):
        with self.lock:
            return self.requests[-1]

    def stop(self):
        self.server.shutdown()
        self.server.server_close()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, default=8081)
    args = parser.parse_args()
    up = Upstream(args.port)
    print(f"demo upstream on http://127.0.0.1:{up.port}", flush=True)
    try:
        up.server.serve_forever()
    except KeyboardInterrupt:
        pass
