"""Webhook deliveries per second (a benchmark, not a test): a `tollgate serve` on SQLite sends N
pending deliveries, written at once into its outbox, to a local receiver (the test suite's,
answering 200 at once; signatures are not verified here, the tests do that). Measured from the
commit of the N rows to the last one received, and to the last one recorded delivered.

Usage: .venv/bin/python tests/bench/bench_webhooks.py [--deliveries 2000]
(`cargo xtask bench-webhooks` builds the release binaries first; TOLLGATE_BIN picks the binary.)
"""

import argparse
import json
import os
import sqlite3
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))

from support.control_plane import Api, Database, Server  # noqa: E402
from support.webhook_receiver import WebhookReceiver  # noqa: E402

TOKEN = "bench-admin-token-0123456789abcdef0123456789"
MASTER = "bench-master-key-0123456789abcdef0123456789"
#: Bound on the wait for the last delivery.
WAIT_S = 300


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--deliveries", type=int, default=2000)
    n = parser.parse_args().deliveries
    receiver = WebhookReceiver().start()
    db = Database("sqlite")
    srv = Server(db, TOKEN, extra_env={"TOLLGATE_MASTER_KEY": MASTER, "TOLLGATE_LOG": "warn"}).start()
    try:
        api = Api(srv.base, TOKEN)
        ep = api.ok("POST", "/webhook_endpoints", {"url": receiver.url("bench"), "events": ["invoice.paid"]})
        now_ms = int(time.time() * 1000)
        body = json.dumps({"type": "invoice.paid", "timestamp": "2026-12-06T00:00:00Z",
                           "data": {"invoice_id": "inv_bench", "total": "1.00"}})
        with sqlite3.connect(db.path) as c:
            c.executemany("INSERT INTO webhook_messages (id, event_type, account_id, payload, created_at) VALUES (?, 'invoice.paid', NULL, ?, 0)",
                          [(f"msg_bench{i:08d}", body) for i in range(n)])
            c.executemany("INSERT INTO webhook_deliveries (id, event_id, endpoint_id, state, attempts, next_attempt_at, window_started_at, created_at) "
                          "VALUES (?, ?, ?, 'pending', 0, ?, ?, 0)",
                          [(f"whd_bench{i:08d}", f"msg_bench{i:08d}", ep["id"], now_ms, now_ms) for i in range(n)])
        t0 = time.monotonic()
        receiver.wait_for("bench", lambda got: len(got) >= n, timeout=WAIT_S)
        received = time.monotonic() - t0
        deadline = time.monotonic() + WAIT_S
        while db.query("SELECT COUNT(*) FROM webhook_deliveries WHERE state = 'delivered'") != [str(n)]:
            assert time.monotonic() < deadline
            time.sleep(0.05)
        recorded = time.monotonic() - t0
        ids = [r.id for r in receiver.of("bench")]
        assert len(ids) == len(set(ids)) == n, "each delivered once"
        print(f"{n} deliveries: all received in {received:.2f}s ({n / received:.0f}/s), "
              f"all recorded delivered in {recorded:.2f}s ({n / recorded:.0f}/s)")
    finally:
        srv.stop()
        db.drop()
        receiver.stop()


if __name__ == "__main__":
    main()
