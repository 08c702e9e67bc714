"""The payment provider failing under a real `tollgate serve` (SQLite and PostgreSQL): Stripe
(localstripe) behind a fault-injecting proxy answers 500 before acting, 500 after acting, or too
late. Never a second charge, never a decline recorded for what may have succeeded, each try
bounded (one provider call per try, no hidden retry loop) and logged."""

import time

import pytest

from conftest import ADMIN_TOKEN
from support.control_plane import Api
from support.fault_proxy import FaultProxy
from support.stripe import WEBHOOK_SECRET, LocalStripe
from test_billing import db, start_server  # noqa: F401
from test_braintree import contract  # noqa: F401
from test_stripe import GOOD, MASTER_KEY, add_card, customer_of, developer, issue, use_stripe

#: The control plane's per-call timeout here (TOLLGATE_PAYMENT_TIMEOUT_MS); the proxy's hang is longer.
TIMEOUT_MS = 1500
INTENTS = "/v1/payment_intents"


@pytest.fixture
def faulty(db):  # noqa: F811
    stripe = LocalStripe().start()
    proxy = FaultProxy(stripe.base)
    srv = start_server(db, TOLLGATE_MASTER_KEY=MASTER_KEY, TOLLGATE_PAYMENT_TIMEOUT_MS=str(TIMEOUT_MS))
    api = Api(srv.base, ADMIN_TOKEN)
    use_stripe(api, proxy.base)
    # No webhooks: only Tollgate's own retry may settle a charge whose answer was lost.
    stripe.call("POST", "/_config/webhooks/tollgate", {"url": "http://127.0.0.1:9/none", "secret": WEBHOOK_SECRET})
    yield {"api": api, "server": srv, "stripe": stripe, "proxy": proxy, "db": db}
    srv.stop()
    proxy.stop()
    stripe.stop()


def charge(api, invoice_id):
    return api.call("POST", f"/admin/api/v1/invoices/{invoice_id}/charge", {})


def attempts(db, invoice_id):
    return db.query(f"SELECT attempt, state FROM charge_attempts WHERE invoice_id = '{invoice_id}' ORDER BY attempt")


@pytest.mark.parametrize(
    "mode", ["fail_before", "fail_after", "hang", "redirect_after", "html_after", "untyped_error_after"]
)
def test_a_failing_provider_never_charges_twice(faulty, mode):
    w, api, proxy = faulty, faulty["api"], faulty["proxy"]
    acct, _, dev = developer(w, f"F{mode}")
    add_card(w, dev, GOOD)
    inv = issue(api, acct["id"], "25.00")
    proxy.inject("POST", INTENTS, mode)
    started = time.monotonic()
    st, body, _ = charge(api, inv["id"])
    took = time.monotonic() - started
    # The outcome is unknown: 503, the invoice still pending, the attempt pending, no decline.
    assert st == 503 and body["error"]["code"], (st, body)
    assert took < TIMEOUT_MS / 1000 + 2, f"a try is bounded by the call timeout ({took:.1f}s)"
    assert api.ok("GET", f"/invoices/{inv['id']}")["state"] == "pending"
    assert attempts(w["db"], inv["id"]) == ["1|pending"]
    if mode == "hang":
        time.sleep(4)  # the held answer is released; Stripe had acted long before
    # The retry finishes the same attempt: a lookup by its key first, a charge only if none exists.
    st, paid, _ = charge(api, inv["id"])
    assert st == 200 and paid["state"] == "paid" and paid["payment"]["attempt"] == 1, paid
    intents = w["stripe"].payment_intents(customer_of(w, acct["id"]))
    assert [pi["status"] for pi in intents] == ["succeeded"], intents
    creates = proxy.calls("POST", INTENTS)
    # fail_before: Stripe never saw the first create, so the retry creates it (same key).
    # Every other mode: Stripe acted; the retry found it and did not create another (an answer
    # that is not Stripe's error object is an unknown outcome, never a decline).
    assert len(creates) == (2 if mode == "fail_before" else 1), creates
    assert "charge outcome unknown" in w["server"].log()


def test_a_refused_secret_key_is_the_gateways_configuration_never_a_decline(faulty):
    """A rolled or revoked Stripe key (401) must not decline invoices, email developers or move
    dunning on: the charge is refused as a misconfigured gateway and the attempt stays pending."""
    w, api, proxy = faulty, faulty["api"], faulty["proxy"]
    acct, _, dev = developer(w, "Fkey")
    add_card(w, dev, GOOD)
    inv = issue(api, acct["id"], "25.00")
    proxy.inject("POST", INTENTS, "unauthorized_before")
    st, body, _ = charge(api, inv["id"])
    assert st == 409 and body["error"]["code"] == "payment_gateway_misconfigured", (st, body)
    assert api.ok("GET", f"/invoices/{inv['id']}")["state"] == "pending"
    assert attempts(w["db"], inv["id"]) == ["1|pending"]
    # The key works again: the same attempt charges once.
    st, paid, _ = charge(api, inv["id"])
    assert st == 200 and paid["state"] == "paid" and paid["payment"]["attempt"] == 1, paid
    assert len(proxy.calls("POST", INTENTS)) == 2


def test_a_provider_down_for_good_is_retried_boundedly_and_logged(faulty):
    w, api, proxy = faulty, faulty["api"], faulty["proxy"]
    acct, _, dev = developer(w, "Down")
    add_card(w, dev, GOOD)
    inv = issue(api, acct["id"], "9.99")
    proxy.inject("POST", INTENTS, "fail_after", times=None)
    proxy.inject("GET", INTENTS, "fail_before", times=None)
    tries = 4
    for _ in range(tries):
        st, body, _ = charge(api, inv["id"])
        assert st == 503, body
    # One create in all (the first try); every later try stopped at the failing lookup instead of
    # charging blind. Never more than one pending attempt, never a decline email or dunning step.
    assert len(proxy.calls("POST", INTENTS)) == 1, proxy.seen
    assert len(proxy.calls("GET", INTENTS)) == tries - 1
    assert attempts(w["db"], inv["id"]) == ["1|pending"]
    assert api.ok("GET", f"/invoices/{inv['id']}")["state"] == "pending"
    assert w["server"].log().count("charge outcome unknown") >= 1
    proxy.heal()
    st, paid, _ = charge(api, inv["id"])
    assert st == 200 and paid["state"] == "paid", paid
    intents = w["stripe"].payment_intents(customer_of(w, acct["id"]))
    assert [pi["status"] for pi in intents] == ["succeeded"]


@pytest.fixture
def faulty_braintree(db, contract):  # noqa: F811
    from test_braintree import MASTER_KEY as BT_MASTER_KEY, MERCHANT_ACCOUNTS, PRIVATE_KEY, PUBLIC_KEY
    proxy = FaultProxy(contract)
    srv = start_server(db, TOLLGATE_MASTER_KEY=BT_MASTER_KEY, TOLLGATE_PAYMENT_TIMEOUT_MS=str(TIMEOUT_MS))
    api = Api(srv.base, ADMIN_TOKEN)
    st, body, _ = api.call("PUT", "/admin/api/v1/billing/gateway", {
        "type": "braintree", "merchant_id": "tollgate", "public_key": PUBLIC_KEY, "private_key": PRIVATE_KEY,
        "environment": "sandbox", "api_base": proxy.base, "merchant_accounts": MERCHANT_ACCOUNTS})
    assert st == 200, body
    api.call("PUT", "/admin/api/v1/billing/settings", {"charging_enabled": True, "due_days": 0})
    yield {"api": api, "server": srv, "contract": contract, "proxy": proxy, "db": db}
    srv.stop()
    proxy.stop()


@pytest.mark.parametrize("mode", ["fail_before", "fail_after", "hang"])
def test_a_failing_braintree_never_charges_twice(faulty_braintree, mode):
    from test_braintree import transactions, vault
    w, api, proxy = faulty_braintree, faulty_braintree["api"], faulty_braintree["proxy"]
    acct, _, dev = developer(w, f"B{mode}")
    assert vault(dev, "fake-valid-nonce")[0] == 201
    inv = issue(api, acct["id"], "25.00")
    proxy.inject("POST", "/graphql", mode, contains="chargePaymentMethod")
    st, body, _ = charge(api, inv["id"])
    assert st == 503 and body["error"]["code"], (st, body)
    assert api.ok("GET", f"/invoices/{inv['id']}")["state"] == "pending"
    if mode == "hang":
        time.sleep(4)
    st, paid, _ = charge(api, inv["id"])
    assert st == 200 and paid["state"] == "paid" and paid["payment"]["attempt"] == 1, paid
    mine = [t for t in transactions(w["contract"]) if t.get("orderId", "").startswith(inv["id"])]
    assert len(mine) == 1, mine
    charges = proxy.calls("POST", "/graphql", contains="chargePaymentMethod")
    assert len(charges) == (2 if mode == "fail_before" else 1), charges
