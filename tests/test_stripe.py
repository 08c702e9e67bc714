"""Charging through Stripe (localstripe behind a compatibility layer) with real `tollgate serve`
processes on SQLite and PostgreSQL: cards, charges, declines, webhooks, dunning with suspension and
resumption, and no double charge after a timeout."""

import time

import pytest

from conftest import ADMIN_TOKEN
from support.control_plane import Api
from support.smtp import SmtpSink
from support.stripe import PUBLISHABLE_KEY, SECRET_KEY, WEBHOOK_SECRET, LocalStripe
from test_billing import db, start_server  # noqa: F401
from test_control_plane import assert_error

MASTER_KEY = "stripe-test-master-key-" + "y" * 32
GOOD, DECLINED = "4242424242424242", "4000000000000341"


@pytest.fixture
def stripe():
    s = LocalStripe().start()
    yield s
    s.stop()


@pytest.fixture
def world(db, stripe):  # noqa: F811
    sink = SmtpSink().start()
    srv = start_server(db, sink, TOLLGATE_MASTER_KEY=MASTER_KEY, TOLLGATE_PAYMENT_TIMEOUT_MS="1500")
    api = Api(srv.base, ADMIN_TOKEN)
    st, body, _ = api.call("PUT", "/admin/api/v1/billing/gateway", {
        "type": "stripe", "secret_key": SECRET_KEY, "publishable_key": PUBLISHABLE_KEY,
        "webhook_secret": WEBHOOK_SECRET, "api_base": stripe.base})
    assert st == 200, body
    st, body, _ = api.call("PUT", "/admin/api/v1/billing/settings", {
        "charging_enabled": True, "due_days": 0, "suspend_on_failure": True,
        "retry": {"attempts": 2, "interval_days": 3}, "payment_method_url": "https://portal.example/cards"})
    assert st == 200, body
    stripe.register_webhook(f"{srv.base}/webhooks/stripe")
    yield {"api": api, "server": srv, "stripe": stripe, "sink": sink, "db": db}
    srv.stop()
    sink.stop()


def developer(w, name):
    api = w["api"]
    acct = api.ok("POST", "/accounts", {"name": name, "email": f"{name.lower()}@example.com"})
    svc = api.ok("POST", "/services", {"name": f"svc {name} {time.monotonic_ns()}"})
    plan = api.ok("POST", "/plans", {"service_id": svc["id"], "name": "P"})
    app = api.ok("POST", "/applications", {"account_id": acct["id"], "plan_id": plan["id"], "name": f"{name} app"})
    tok = api.ok("POST", f"/accounts/{acct['id']}/tokens", {})
    return acct, app, Api(w["server"].base, tok["token"])


def add_card(w, dev, number):
    st, setup, _ = dev.call("POST", "/api/v1/payment_methods/setup", {})
    assert st == 200 and setup["client_secret"] and setup["publishable_key"] == PUBLISHABLE_KEY, setup
    st, card, _ = dev.call("POST", "/api/v1/payment_methods", {"payment_method_id": w["stripe"].card(number)})
    assert st == 201, card
    return card


def issue(api, account_id, amount):
    inv = api.ok("POST", "/invoices", {"account_id": account_id})
    api.ok("POST", f"/invoices/{inv['id']}/lines", {"description": "API usage", "unit_price": amount})
    return api.ok("POST", f"/invoices/{inv['id']}/issue", status=200)


def customer_of(w, account_id):
    return w["db"].query(f"SELECT customer_ref FROM payment_customers WHERE account_id = '{account_id}'")[0]


def wait_state(api, invoice_id, state, timeout=10):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        inv = api.ok("GET", f"/invoices/{invoice_id}")
        if inv["state"] == state:
            return inv
        time.sleep(0.1)
    raise AssertionError(f"invoice {invoice_id} is {inv['state']}, not {state}")


def test_cards_and_a_successful_charge(world):
    w, api = world, world["api"]
    acct, _, dev = developer(w, "Ada")
    card = add_card(w, dev, GOOD)
    assert (card["brand"], card["last4"], card["default"]) == ("visa", "4242", True)
    second = add_card(w, dev, "5555555555554444")
    assert second["default"] is False
    cards = dev.call("GET", "/api/v1/payment_methods")[1]["data"]
    assert {c["last4"]: c["default"] for c in cards} == {"4242": True, "4444": False}
    assert dev.call("POST", f"/api/v1/payment_methods/{second['id']}/default", {})[0] == 200
    st, _, _ = dev.call("DELETE", f"/api/v1/payment_methods/{card['id']}")
    assert st == 200
    assert [c["last4"] for c in dev.call("GET", "/api/v1/payment_methods")[1]["data"]] == ["4444"]

    inv = issue(api, acct["id"], "49.00")
    st, charged, _ = api.call("POST", f"/admin/api/v1/invoices/{inv['id']}/charge", {})
    assert st == 200 and charged["state"] == "paid" and charged["payment"]["state"] == "succeeded", charged["payment"]["error_code"] + " " + str(charged["payment"]["error_message"])
    [pi] = w["stripe"].payment_intents(customer_of(w, acct["id"]))
    assert (pi["amount"], pi["currency"], pi["status"]) == (4900, "usd", "succeeded")
    assert pi["metadata"]["tollgate_invoice"] == inv["id"]
    # Paying again is refused; the developer sees the payment in the billing history.
    assert_error(api.post(f"/invoices/{inv['id']}/charge"), 409, "invalid_state")
    history = dev.call("GET", "/api/v1/payments")[1]["data"]
    assert [(p["invoice_id"], p["state"], p["amount"]) for p in history] == [(inv["id"], "succeeded", "49.00")]
