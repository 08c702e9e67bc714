"""Charging through Braintree's GraphQL API, against a contract server in the suite that answers
with responses shaped as Braintree documents them (Braintree has no emulator; see the README), with
real `tollgate serve` processes on SQLite and PostgreSQL."""

import json
import os
import socket
import subprocess
import sys
import time
import urllib.request

import pytest

from conftest import ADMIN_TOKEN
from support.control_plane import Api
from support.envoy import free_port, stop_process
from test_billing import db, start_server  # noqa: F401
from test_stripe import customer_of, developer, issue

MASTER_KEY = "braintree-test-master-key-" + "z" * 32
PUBLIC_KEY, PRIVATE_KEY = "bt_public_key_1", "bt_private_key_secret_1"


@pytest.fixture
def contract():
    port = free_port()
    script = os.path.join(os.path.dirname(__file__), "support", "braintree_contract.py")
    proc = subprocess.Popen([sys.executable, script, "--port", str(port), "--public-key", PUBLIC_KEY,
                             "--private-key", PRIVATE_KEY])
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                break
        except OSError:
            time.sleep(0.05)
    yield f"http://127.0.0.1:{port}"
    stop_process(proc)


@pytest.fixture
def world(db, contract):  # noqa: F811
    srv = start_server(db, TOLLGATE_MASTER_KEY=MASTER_KEY, TOLLGATE_PAYMENT_TIMEOUT_MS="1500")
    api = Api(srv.base, ADMIN_TOKEN)
    st, body, _ = api.call("PUT", "/admin/api/v1/billing/gateway", {
        "type": "braintree", "merchant_id": "tollgate", "public_key": PUBLIC_KEY, "private_key": PRIVATE_KEY,
        "environment": "sandbox", "api_base": contract})
    assert st == 200, body
    api.call("PUT", "/admin/api/v1/billing/settings", {"charging_enabled": True, "due_days": 0,
                                                       "retry": {"attempts": 3, "interval_days": 3}})
    yield {"api": api, "server": srv, "contract": contract, "db": db}
    srv.stop()


def transactions(contract):
    with urllib.request.urlopen(contract + "/_contract/transactions", timeout=10) as r:
        return json.loads(r.read())


def vault(dev, nonce):
    return dev.call("POST", "/api/v1/payment_methods", {"payment_method_nonce": nonce})


def test_braintree_cards_charges_and_declines(world):
    w, api = world, world["api"]
    acct, _, dev = developer(w, "Fay")
    st, setup, _ = dev.call("POST", "/api/v1/payment_methods/setup", {})
    assert st == 200 and setup["provider"] == "braintree" and setup["client_token"], setup
    st, body, _ = vault(dev, "fake-processor-declined-visa-nonce")
    assert st == 422 and body["error"]["code"] == "invalid_payment_method", body
    st, card, _ = vault(dev, "fake-valid-nonce")
    assert st == 201 and (card["brand"], card["last4"], card["default"]) == ("visa", "1111", True), card
    st, mc, _ = vault(dev, "fake-valid-mastercard-nonce")
    assert [c["last4"] for c in dev.call("GET", "/api/v1/payment_methods")[1]["data"]] == ["1111", "4444"]
    assert dev.call("DELETE", f"/api/v1/payment_methods/{mc['id']}")[0] == 200

    inv = issue(api, acct["id"], "49.00")
    st, charged, _ = api.call("POST", f"/admin/api/v1/invoices/{inv['id']}/charge", {})
    assert st == 200 and charged["state"] == "paid", charged
    [tx] = transactions(w["contract"])
    assert (tx["amount"]["value"], tx["orderId"], tx["status"]) == ("49.00", f"{inv['id']}-1", "SUBMITTED_FOR_SETTLEMENT")
    # 2001.00 is declined by the sandbox processor with code 2001.
    big = issue(api, acct["id"], "2001.00")
    st, declined, _ = api.call("POST", f"/admin/api/v1/invoices/{big['id']}/charge", {})
    assert st == 200 and declined["state"] == "unpaid", declined
    assert declined["payment"]["error_code"] == "processor_2001", declined["payment"]
    assert customer_of(w, acct["id"])


def test_braintree_retry_after_timeout_finds_the_transaction(world):
    w, api = world, world["api"]
    acct, _, dev = developer(w, "Gil")
    vault(dev, "fake-valid-nonce")
    inv = issue(api, acct["id"], "30.00")
    urllib.request.urlopen(urllib.request.Request(w["contract"] + "/_contract/delay_next_charge?seconds=3",
                                                  data=b"", method="POST"), timeout=10).read()
    st, _, _ = api.call("POST", f"/admin/api/v1/invoices/{inv['id']}/charge", {})
    assert st == 503
    time.sleep(3)
    st, charged, _ = api.call("POST", f"/admin/api/v1/invoices/{inv['id']}/charge", {})
    assert st == 200 and charged["state"] == "paid" and charged["payment"]["attempt"] == 1, charged
    assert [t["orderId"] for t in transactions(w["contract"])] == [f"{inv['id']}-1"], "one charge"
