"""Payments (a benchmark, not a test), against a release build of `tollgate serve` on SQLite and
localstripe behind the test compatibility layer, loopback only:

  1. charges per second: N invoices (one account and card each) charged with
     POST /admin/api/v1/invoices/{id}/charge, sequentially and from 4 concurrent clients;
  2. from webhook received to invoice paid, and to the account's applications answering 200 again
     at a real Envoy (control-plane mode, default 500 ms poll), after a suspension for non-payment.

Usage: .venv/bin/python tests/bench/bench_payments.py [--invoices 200]
(`cargo xtask bench-payments` builds the release binaries first.)
"""

import argparse
import hashlib
import hmac
import json
import os
import sys
import time
from concurrent.futures import ThreadPoolExecutor

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))

from conftest import call  # noqa: E402
from support.control_plane import Api, Database, Server  # noqa: E402
from support.envoy import Envoy, bootstrap, free_port, static_cluster, wasm_filter  # noqa: E402
from support.stripe import PUBLISHABLE_KEY, SECRET_KEY, WEBHOOK_SECRET, LocalStripe  # noqa: E402
from support.upstream import Upstream  # noqa: E402

TOKEN = "bench-admin-token-0123456789abcdef0123456789"
MASTER = "bench-master-key-0123456789abcdef0123456789"
#: Bound on every wait loop here.
WAIT_S = 30


def setup_account(api, stripe, base, i, card="4242424242424242"):
    acct = api.ok("POST", "/accounts", {"name": f"Bench {i}", "email": f"b{i}@example.com"})
    tok = api.ok("POST", f"/accounts/{acct['id']}/tokens", {})
    dev = Api(base, tok["token"])
    assert dev.call("POST", "/api/v1/payment_methods/setup", {})[0] == 200
    st, _, _ = dev.call("POST", "/api/v1/payment_methods", {"payment_method_id": stripe.card(card)})
    assert st == 201
    inv = api.ok("POST", "/invoices", {"account_id": acct["id"]})
    api.ok("POST", f"/invoices/{inv['id']}/lines", {"description": "usage", "unit_price": "9.99"})
    api.ok("POST", f"/invoices/{inv['id']}/issue", status=200)
    return acct, dev, inv["id"]


def charge_rate(api, stripe, base, n, workers):
    invoices = [setup_account(api, stripe, base, f"{workers}-{i}")[2] for i in range(n)]
    t = time.monotonic()

    def charge(inv):
        st, body, _ = api.call("POST", f"/admin/api/v1/invoices/{inv}/charge", {})
        assert st == 200 and body["state"] == "paid", body

    with ThreadPoolExecutor(workers) as pool:
        list(pool.map(charge, invoices))
    return n / (time.monotonic() - t)


def webhook_to_resumed(api, stripe, server, upstream):
    svc = api.ok("POST", "/services", {"name": "bench"})
    api.ok("POST", f"/services/{svc['id']}/mapping_rules", {"method": "GET", "pattern": "/", "metric": "hits"})
    plan = api.ok("POST", "/plans", {"service_id": svc["id"], "name": "P"})
    acct, dev, inv = setup_account(api, stripe, server.base, "wh", card="4000000000000341")
    app = api.ok("POST", "/applications", {"account_id": acct["id"], "plan_id": plan["id"], "name": "a"})
    gw = api.ok("POST", "/gateway_tokens", {"name": "edge", "service_ids": [svc["id"]]})
    config = {"service_id": svc["id"], "control_plane": {"cluster": "cp", "authority": "tollgate", "token": gw["token"]}}
    envoy = Envoy(bootstrap(free_port(), free_port(), upstream.port, [wasm_filter(config)],
                            [static_cluster("cp", server.port)]), concurrency=2).start()
    try:
        envoy.wait_snapshot()
        api.call("POST", f"/admin/api/v1/invoices/{inv}/charge", {})  # declined: failed, suspended
        deadline = time.monotonic() + WAIT_S
        while call(envoy.port, "/", headers={"x-api-key": app["key"]}).status != 402:
            assert time.monotonic() < deadline
            time.sleep(0.02)
        # A good card; the charge's answer is lost (timeout) so only the webhook can settle it.
        good = stripe.card("4242424242424242")
        dev.call("POST", "/api/v1/payment_methods", {"payment_method_id": good, "default": True})
        stripe.delay_next_payment_intent(3)
        st, _, _ = dev.call("POST", f"/api/v1/invoices/{inv}/pay", {})
        assert st == 503
        customer = server.db.query(f"SELECT customer_ref FROM payment_customers WHERE account_id = '{acct['id']}'")[0]
        deadline = time.monotonic() + WAIT_S
        while not (succeeded := [p for p in stripe.payment_intents(customer) if p["status"] == "succeeded"]):
            assert time.monotonic() < deadline, "the delayed charge never appeared at localstripe"
            time.sleep(0.1)
        pi = succeeded[0]
        event = json.dumps({"id": "evt_bench", "type": "payment_intent.succeeded",
                            "data": {"object": {"id": pi["id"], "object": "payment_intent", "metadata": pi["metadata"]}}}).encode()
        t = int(time.time())
        sig = hmac.new(WEBHOOK_SECRET.encode(), f"{t}.".encode() + event, hashlib.sha256).hexdigest()
        start = time.monotonic()
        st, body, _ = api.call("POST", "/webhooks/stripe", event, headers={"Stripe-Signature": f"t={t},v1={sig}"})
        paid = time.monotonic() - start
        assert st == 200 and body["result"] == "applied", body
        assert api.ok("GET", f"/invoices/{inv}")["state"] == "paid"
        while call(envoy.port, "/", headers={"x-api-key": app["key"]}).status != 200:
            assert time.monotonic() - start < WAIT_S
            time.sleep(0.01)
        return paid, time.monotonic() - start
    finally:
        envoy.stop()


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--invoices", type=int, default=200)
    args = parser.parse_args()
    stripe = LocalStripe().start()
    upstream = Upstream().start()
    db = Database("sqlite")
    server = Server(db, TOKEN, extra_env={"TOLLGATE_MASTER_KEY": MASTER, "TOLLGATE_BILLING_SCHEDULER": "off",
                                          "TOLLGATE_PAYMENT_TIMEOUT_MS": "1500", "TOLLGATE_LOG": "warn"}).start()
    try:
        api = Api(server.base, TOKEN)
        api.call("PUT", "/admin/api/v1/billing/gateway", {"type": "stripe", "secret_key": SECRET_KEY,
                 "publishable_key": PUBLISHABLE_KEY, "webhook_secret": WEBHOOK_SECRET, "api_base": stripe.base})
        api.call("PUT", "/admin/api/v1/billing/settings", {"charging_enabled": True, "due_days": 0,
                 "suspend_on_failure": True, "retry": {"attempts": 1}})
        stripe.register_webhook("http://127.0.0.1:9/disabled")  # the bench sends the webhook itself
        for workers in (1, 4):
            rate = charge_rate(api, stripe, server.base, args.invoices, workers)
            print(f"charges/s against localstripe, {workers} client(s): {rate:.1f} ({args.invoices} invoices)")
        paid, resumed = webhook_to_resumed(api, stripe, server, upstream)
        print(f"webhook received -> invoice paid: {paid * 1000:.0f} ms; -> applications answer 200 at Envoy: {resumed * 1000:.0f} ms")
    finally:
        server.stop()
        upstream.stop()
        stripe.stop()
        db.drop()


if __name__ == "__main__":
    main()
