"""A fault-injecting HTTP proxy for the payment providers: forwards to the real emulator and, for
requests matching a rule, answers 5xx before forwarding, forwards and then answers 5xx (the
provider acted, the answer is lost), forwards and holds the answer past the client's timeout
("hang"), forwards and holds the answer a moment shorter than it ("delay": a charge kept in
flight while other requests arrive), or forwards and then answers what is not the provider's
error object: a redirect ("redirect_after"), a firewall's HTML page ("html_after"), or a 402 whose
error object has no `type` ("untyped_error_after"); or refuses the secret key ("unauthorized_before":
401, Stripe's error object, nothing forwarded)."""

#: Answers that are not the provider's: (status, content type, body, extra headers).
FOREIGN_ANSWERS = {
    "redirect_after": (307, "text/html", b"<a href='/elsewhere'>moved</a>", [("location", "/elsewhere")]),
    "html_after": (403, "text/html", b"<html><body>Request blocked</body></html>", []),
    "untyped_error_after": (402, "application/json", b'{"error": {}}', []),
}

import http.client
import threading
import time
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

#: Longest a "hang" holds an answer (far past any client timeout the tests set).
HANG_S = 5
#: How long a "delay" holds an answer by default (under the suite's 1.5 s payment timeout).
DELAY_S = 0.8


class FaultProxy:
    def __init__(self, target):
        self.target = urllib.parse.urlsplit(target)
        self.lock = threading.Lock()
        self.rules = []  # [method, path prefix, mode, remaining (None: forever), body substring, seconds]
        self.seen = []  # (method, path, what happened)
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def _any(self):
                body = self.rfile.read(int(self.headers.get("content-length") or 0))
                mode, seconds = proxy._take(self.command, self.path, body)
                if mode == "unauthorized_before":
                    proxy._log(self.command, self.path, "401 before forwarding", body)
                    return self._answer(
                        401, b'{"error": {"type": "invalid_request_error", "message": "Invalid API Key provided"}}'
                    )
                if mode == "fail_before":
                    proxy._log(self.command, self.path, "500 before forwarding", body)
                    return self._answer(500, b'{"error": {"type": "api_error", "message": "injected"}}')
                status, headers, answer = proxy._forward(self.command, self.path, self.headers, body)
                if mode == "fail_after":
                    proxy._log(self.command, self.path, f"forwarded ({status}), answered 500", body)
                    return self._answer(500, b'{"error": {"type": "api_error", "message": "injected"}}')
                if mode in FOREIGN_ANSWERS:
                    code, kind, page, extra = FOREIGN_ANSWERS[mode]
                    proxy._log(self.command, self.path, f"forwarded ({status}), answered {code}", body)
                    return self._answer(code, page, [("content-type", kind), *extra])
                if mode == "hang":
                    proxy._log(self.command, self.path, f"forwarded ({status}), held {HANG_S}s", body)
                    time.sleep(HANG_S)
                elif mode == "delay":
                    proxy._log(self.command, self.path, f"forwarded ({status}), delayed {seconds}s", body)
                    time.sleep(seconds)
                else:
                    proxy._log(self.command, self.path, f"forwarded ({status})", body)
                self._answer(status, answer, headers)

            def _answer(self, status, body, headers=()):
                self.send_response(status)
                for k, v in headers:
                    if k.lower() not in ("content-length", "transfer-encoding", "connection", "date", "server"):
                        self.send_header(k, v)
                if not any(k.lower() == "content-type" for k, _ in headers):
                    self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(body)))
                self.end_headers()
                try:
                    self.wfile.write(body)
                except OSError:
                    pass  # the client gave up (timeout): that is the point of a hang

            do_GET = do_POST = do_DELETE = do_PUT = _any

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.base = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def inject(self, method, prefix, mode, times=1, contains=None, seconds=DELAY_S):
        """The next `times` requests `method prefix*` (whose body holds `contains`, if given: one
        GraphQL operation among others on the same path) get `mode` (times=None: until `heal()`);
        `seconds`: how long a "delay" holds the answer."""
        with self.lock:
            self.rules.append([method, prefix, mode, times, contains.encode() if contains else None, seconds])

    def heal(self):
        with self.lock:
            self.rules.clear()

    def calls(self, method, prefix, contains=None):
        with self.lock:
            return [s for s in self.seen if s[0] == method and s[1].startswith(prefix)
                    and (contains is None or contains.encode() in s[3])]

    def _take(self, method, path, body):
        with self.lock:
            for rule in self.rules:
                if (rule[0] == method and path.startswith(rule[1]) and rule[3] != 0
                        and (rule[4] is None or rule[4] in body)):
                    if rule[3] is not None:
                        rule[3] -= 1
                    return rule[2], rule[5]
        return None, 0

    def _log(self, method, path, what, body):
        with self.lock:
            self.seen.append((method, path, what, body))

    def _forward(self, method, path, headers, body):
        conn = http.client.HTTPConnection(self.target.hostname, self.target.port, timeout=30)
        try:
            fwd = {k: v for k, v in headers.items() if k.lower() not in ("host", "connection")}
            conn.request(method, path, body=body or None, headers=fwd)
            r = conn.getresponse()
            return r.status, r.getheaders(), r.read()
        finally:
            conn.close()

    def stop(self):
        self.server.shutdown()
