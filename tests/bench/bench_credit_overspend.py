"""How far two gateways overdraw one prepaid wallet (a measurement that prints figures, not a test).

Each gateway enforces its own spend exactly and adds what the other gateways spent as of its last
global-usage poll, so a wallet shared across gateways can be overdrawn by at most
(other gateways x their spend rate x (flush interval + poll interval)) (docs/wallets.md). This
measures it: two Envoys (the filter in control-plane mode, 2 workers each) against a minimal
control plane that serves the snapshot, counts usage reports once per (gateway, sequence) and
answers global usage with the other instance's spend priced as the snapshot prices it; one paced
client per Envoy spends from the same wallet until both are refused; the admitted calls x price
minus the wallet's limit is the over-spend. The wallet and the service are the filter's protocol
only (the control plane's own wallets are not needed).

Usage: .venv/bin/python tests/bench/bench_credit_overspend.py [--shell wasm|native] [--rates 20,100]
[--poll-ms 500] [--flush-ms 1000] (TOLLGATE_WASM / TOLLGATE_NATIVE as for the end-to-end tests).
Loopback only; every run is bounded in time.
"""

import argparse
import json
import os
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlparse

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))

from conftest import call, sha256_hex  # noqa: E402
from support.envoy import Envoy, free_port, http_listener, static_cluster, tollgate_filter  # noqa: E402

NANO_PER_UNIT = 10**9
PRICE_NANO = NANO_PER_UNIT // 100  # 0.01 a call
LIMIT_NANO = 3 * NANO_PER_UNIT  # 3.00: 300 calls
KEY = "k-overspend-0123456789"
SERVICE = "svc_overspend"


class ControlPlane:
    """The gateway API as the filter uses it: snapshot (JSON, ETag), usage, global usage."""

    def __init__(self):
        self.lock = threading.Lock()
        self.reports = {}  # (gateway, sequence) -> report, each counted once
        self.snapshot = {
            "version": "1",
            "plans": [{"id": "prepaid", "credit_prices": [{"metric": "hits", "nano_per_unit": PRICE_NANO}]}],
            "applications": [{"id": "app", "plan": "prepaid", "state": "live", "key_sha256": [sha256_hex(KEY)]}],
            "metrics": [{"name": "hits"}],
            "wallets": [{"id": "wallet", "limit_nano": LIMIT_NANO, "applications": ["app"]}],
        }
        cp = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def answer(self, status, body=b"", content_type="application/json"):
                self.send_response(status)
                self.send_header("content-type", content_type)
                self.send_header("content-length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def do_GET(self):
                url = urlparse(self.path)
                if url.path.endswith("/snapshot"):
                    if self.headers.get("if-none-match") == '"1"':
                        return self.answer(304)
                    return self.answer(200, json.dumps(cp.snapshot).encode())
                if url.path.endswith("/global_usage"):
                    instance = parse_qs(url.query).get("instance", [""])[0]
                    spent = cp.spent_by_others(instance)
                    body = {"entries": [], "credit": [{"wallet": "wallet", "spent_nano": spent}]}
                    return self.answer(200, json.dumps(body).encode())
                self.answer(404)

            def do_POST(self):
                length = int(self.headers.get("content-length") or 0)
                report = json.loads(self.rfile.read(length))
                with cp.lock:
                    cp.reports.setdefault((report["gateway"], report["sequence"]), report)
                self.answer(200, b"{}")

            def log_message(self, *args):
                pass

        class Server(ThreadingHTTPServer):
            daemon_threads = True
            request_queue_size = 128

        self.server = Server(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def spent_by_others(self, instance):
        with self.lock:
            hits = sum(e["delta"] for r in self.reports.values() if r.get("instance") != instance
                       for e in r["entries"] if e["metric"] == "hits")
        return hits * PRICE_NANO

    def stop(self):
        self.server.shutdown()
        self.server.server_close()


def run(shell, rate, poll_ms, flush_ms, seconds):
    cp = ControlPlane()
    config = {"service_id": SERVICE,
              "control_plane": {"cluster": "cp", "token": "t", "poll_interval_ms": poll_ms,
                                "flush_interval_ms": flush_ms, "snapshot_wait_s": 0}}
    answer = {"direct_response": {"status": 200, "body": {"inline_string": "ok"}}}
    envoys = []
    try:
        for _ in range(2):
            port, admin = free_port(), free_port()
            e = Envoy({"admin": {"address": {"socket_address": {"address": "127.0.0.1", "port_value": admin}}},
                       "static_resources": {
                           "listeners": [http_listener("api", port, answer, [tollgate_filter(config, shell)])],
                           "clusters": [static_cluster("cp", cp.port)]}}, concurrency=2, shell=shell)
            envoys.append(e.start())
        for e in envoys:
            e.wait_snapshot()
        admitted = [0, 0]
        exhausted_at = [None, None]
        start = time.monotonic()

        def client(i):
            envoy, next_at = envoys[i], time.monotonic()
            while time.monotonic() - start < seconds:
                status = call(envoy.port, "/", headers={"x-api-key": KEY}).status
                if status == 200:
                    admitted[i] += 1
                elif status == 402 and exhausted_at[i] is None:
                    exhausted_at[i] = time.monotonic() - start
                next_at += 1 / rate
                time.sleep(max(0, next_at - time.monotonic()))

        threads = [threading.Thread(target=client, args=(i,)) for i in range(2)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        elapsed = [x or seconds for x in exhausted_at]
        achieved = [n / t for n, t in zip(admitted, elapsed)]
        return admitted, achieved
    finally:
        for e in envoys:
            e.stop()
        cp.stop()


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--shell", default="wasm", choices=["wasm", "native"])
    ap.add_argument("--rates", default="20,100", help="calls per second per gateway, comma-separated")
    ap.add_argument("--poll-ms", type=int, default=500)
    ap.add_argument("--flush-ms", type=int, default=1000)
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()
    lag_s = (args.poll_ms + args.flush_ms) / 1000
    print(f"{args.shell} shell, 2 gateways x 2 workers, wallet {LIMIT_NANO / NANO_PER_UNIT:.2f} at "
          f"{PRICE_NANO / NANO_PER_UNIT:.2f} a call, poll {args.poll_ms} ms, flush {args.flush_ms} ms")
    for rate in (int(r) for r in args.rates.split(",")):
        # Long enough to spend the wallet at this rate, and then some.
        seconds = LIMIT_NANO / PRICE_NANO / (2 * rate) + 2 * lag_s + 2
        for rnd in range(args.rounds):
            admitted, achieved = run(args.shell, rate, args.poll_ms, args.flush_ms, seconds)
            over = (sum(admitted) * PRICE_NANO - LIMIT_NANO) / NANO_PER_UNIT
            # Each gateway's bound counts the other's rate: the larger of the two is the bound.
            bound = max(achieved) * PRICE_NANO / NANO_PER_UNIT * lag_s
            print(f"rate {rate:4d}/s per gateway (achieved {achieved[0]:.0f}, {achieved[1]:.0f}), round {rnd + 1}: "
                  f"{sum(admitted)} calls admitted ({admitted[0]} + {admitted[1]}), over-spend {over:+.2f} "
                  f"(bound 1 x rate x {lag_s:.1f} s = {bound:.2f})", flush=True)


if __name__ == "__main__":
    main()
