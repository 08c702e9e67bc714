"""Webhooks (a benchmark, not a test), a `tollgate serve` on SQLite and a local receiver (the test
suite's, answering 200 at once; signatures are not verified here, the tests do that):

  1. deliveries per second: N pending deliveries written at once into the outbox, from their
     commit to the last one received, and to the last one recorded delivered;
  2. outbox lag under a billing run: M accounts with one application each on a prepaid plan
     with a fixed fee, an admin endpoint subscribed to invoice.issued, one billing run: from the
     run's start to its end, and to the last invoice.issued received (the lag after the run).

Usage: .venv/bin/python tests/bench/bench_webhooks.py [--deliveries 2000] [--billing-accounts 1000]
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
    parser.add_argument("--billing-accounts", type=int, default=1000)
    args = parser.parse_args()
    n = args.deliveries
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
        billing_lag(api, receiver, args.billing_accounts)
    finally:
        srv.stop()
        db.drop()
        receiver.stop()


def billing_lag(api, receiver, m):
    from concurrent.futures import ThreadPoolExecutor
    api.call("PUT", "/admin/api/v1/billing/settings", {"mode": "prepaid"})
    svc = api.ok("POST", "/services", {"name": "Bench billing"})
    plan = api.ok("POST", "/plans", {"service_id": svc["id"], "name": "P", "fixed_fee": "30"})

    def account(i):
        a = api.ok("POST", "/accounts", {"name": f"B{i}", "email": f"b{i}@example.com"})
        api.ok("POST", "/applications", {"account_id": a["id"], "plan_id": plan["id"], "name": "A"})

    with ThreadPoolExecutor(4) as pool:
        list(pool.map(account, range(m)))
    api.ok("POST", "/webhook_endpoints", {"url": receiver.url("billing"), "events": ["invoice.issued"]})
    t0 = time.monotonic()
    st, r, _ = api.call("POST", "/admin/api/v1/billing/runs", {})
    assert st == 202, r
    deadline = time.monotonic() + WAIT_S
    while api.ok("GET", f"/billing/runs/{r['id']}")["state"] == "running":
        assert time.monotonic() < deadline
        time.sleep(0.05)
    ran = time.monotonic() - t0
    first = receiver.of("billing")
    receiver.wait_for("billing", lambda got: len(got) >= m, timeout=WAIT_S)
    done = time.monotonic() - t0
    print(f"billing run of {m} invoices: run {ran:.2f}s ({len(first)} invoice.issued received during it), "
          f"last invoice.issued received {done:.2f}s after the start ({done - ran:.2f}s after the run ended)")


if __name__ == "__main__":
    main()
