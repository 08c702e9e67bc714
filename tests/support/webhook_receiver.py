"""A webhook receiver for the tests: a threaded HTTP server on 127.0.0.1 recording every POST
to `/hooks/<name>` with its headers and raw body. Signatures are checked by the
`standardwebhooks` package from PyPI (the specification's own Python library), not by anything of
ours: `verified(name, secret)` answers the payloads whose signature it accepts and fails on any
it refuses.

Per name, the receiver can be told to answer some statuses first (`fail(name, [500] * 5)`) or to
hold the first requests (`hang(name, seconds, count)`) before answering 200."""

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from standardwebhooks.webhooks import Webhook


class Received:
    def __init__(self, name, headers, body, status):
        self.name = name
        self.headers = headers
        self.body = body
        self.status = status
        self.at = time.monotonic()

    @property
    def id(self):
        return self.headers.get("webhook-id")


class WebhookReceiver:
    def __init__(self):
        self.lock = threading.Lock()
        self.requests = []
        #: (name, webhook-id) of every request as it arrives, before it is answered.
        self.arrivals = []
        self.statuses = {}
        self.holds = {}
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self):
                length = int(self.headers.get("content-length") or 0)
                body = self.rfile.read(length) if length else b""
                name = self.path.rsplit("/", 1)[-1]
                with receiver.lock:
                    receiver.arrivals.append((name, self.headers.get("webhook-id")))
                    hold = receiver.holds.get(name)
                    if hold and hold[1] > 0:
                        receiver.holds[name] = (hold[0], hold[1] - 1)
                        seconds = hold[0]
                    else:
                        seconds = 0
                    queue = receiver.statuses.get(name) or []
                    status = queue.pop(0) if queue else 200
                if seconds:
                    time.sleep(seconds)
                with receiver.lock:
                    receiver.requests.append(
                        Received(name, {k.lower(): v for k, v in self.headers.items()}, body, status))
                answer = b'{"ok": true}' if status < 300 else b'{"error": "told to fail"}'
                try:
                    self.send_response(status)
                    self.send_header("content-type", "application/json")
                    self.send_header("content-length", str(len(answer)))
                    self.end_headers()
                    self.wfile.write(answer)
                except OSError:
                    pass  # the sender went away (killed mid-delivery)

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def start(self):
        self.thread.start()
        return self

    def stop(self):
        self.server.shutdown()
        self.server.server_close()

    def url(self, name):
        return f"http://127.0.0.1:{self.port}/hooks/{name}"

    def fail(self, name, statuses):
        """Answer these statuses to the next requests to `name`, then 200."""
        with self.lock:
            self.statuses[name] = list(statuses)

    def hang(self, name, seconds, count=1):
        """Hold the next `count` requests to `name` for `seconds` before answering."""
        with self.lock:
            self.holds[name] = (seconds, count)

    def of(self, name):
        with self.lock:
            return [r for r in self.requests if r.name == name]

    def wait_for(self, name, predicate, timeout=30):
        """The requests to `name` once `predicate(requests)` holds."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            got = self.of(name)
            if predicate(got):
                return got
            time.sleep(0.05)
        got = self.of(name)
        raise AssertionError(f"{name}: condition not met in {timeout}s; got "
                             f"{[(r.status, r.id, json.loads(r.body).get('type')) for r in got]}")

    def verified(self, name, secret):
        """Every request to `name`, each verified by standardwebhooks (which raises on a bad
        signature, a missing header or a stale timestamp): [(webhook-id, payload, status)]."""
        hook = Webhook(secret)
        return [(r.id, hook.verify(r.body, r.headers), r.status) for r in self.of(name)]

    def delivered(self, name, secret):
        """{webhook-id: payload} of the requests answered 2xx, each verified; fails if one id
        was answered 2xx twice (a duplicate delivery)."""
        out = {}
        for msg_id, payload, status in self.verified(name, secret):
            if 200 <= status < 300:
                assert msg_id not in out, f"{msg_id} delivered twice"
                out[msg_id] = payload
        return out
