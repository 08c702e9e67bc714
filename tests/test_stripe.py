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
def world(db, stripe, request):  # noqa: F811
    """A server on Stripe; a test's `@pytest.mark.server_env(NAME="value")` adds to its environment."""
    sink = SmtpSink().start()
    marker = request.node.get_closest_marker("server_env")
    srv = start_server(db, sink, TOLLGATE_MASTER_KEY=MASTER_KEY, TOLLGATE_PAYMENT_TIMEOUT_MS="1500",
                       **(marker.kwargs if marker else {}))
    api = Api(srv.base, ADMIN_TOKEN)
    use_stripe(api, stripe.base, {"suspend_on_failure": True, "payment_method_url": "https://portal.example/cards"})
    stripe.register_webhook(f"{srv.base}/webhooks/stripe")
    yield {"api": api, "server": srv, "stripe": stripe, "sink": sink, "db": db}
    srv.stop()
    sink.stop()


def use_stripe(api, api_base, settings=None):
    """Stripe (at `api_base`) as the payment gateway, charging on, two attempts three days apart."""
    st, body, _ = api.call("PUT", "/admin/api/v1/billing/gateway", {
        "type": "stripe", "secret_key": SECRET_KEY, "publishable_key": PUBLISHABLE_KEY,
        "webhook_secret": WEBHOOK_SECRET, "api_base": api_base})
    assert st == 200, body
    st, body, _ = api.call("PUT", "/admin/api/v1/billing/settings", {
        "charging_enabled": True, "due_days": 0, "retry": {"attempts": 2, "interval_days": 3}, **(settings or {})})
    assert st == 200, body


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


def snapshot_app(w, app_id):
    """The application as gateways receive it (admin view of the state the snapshot carries)."""
    return w["api"].ok("GET", f"/applications/{app_id}")


def test_declines_dunning_suspension_and_resumption(world):
    """A declined card: an email per failure, a retry after the interval, `failed` after the last
    attempt with the applications suspended for non-payment; a good card paid by the developer
    resumes them."""
    w, api = world, world["api"]
    acct, app, dev = developer(w, "Bob")
    add_card(w, dev, DECLINED)
    inv = issue(api, acct["id"], "20.00")
    # The billing run charges what is due (due_days 0: today).
    today = time.strftime("%Y-%m-%d", time.gmtime())
    st, run, _ = api.call("POST", "/admin/api/v1/billing/runs", {"date": today})
    assert st == 202
    inv = wait_state(api, inv["id"], "unpaid")
    [attempt] = dev.call("GET", "/api/v1/payments")[1]["data"]
    assert (attempt["state"], attempt["error_code"]) == ("failed", "card_declined"), attempt
    assert snapshot_app(w, app["id"])["state"] == "live"
    # Not retried before the interval; retried (and failed for good) three days later.
    day3 = time.strftime("%Y-%m-%d", time.gmtime(time.time() + 3 * 86400))
    for date, expected in ((today, "unpaid"), (day3, "failed")):
        wait_run_done(api)
        st, run, _ = api.call("POST", "/admin/api/v1/billing/runs", {"date": date})
        assert st == 202, run
        wait_run_done(api)
        assert api.ok("GET", f"/invoices/{inv['id']}")["state"] == expected
    assert len(dev.call("GET", "/api/v1/payments")[1]["data"]) == 2
    app_now = snapshot_app(w, app["id"])
    assert (app_now["state"], app_now["state_reason"]) == ("suspended", "non_payment")
    msgs = w["sink"].wait_for(3)
    subjects = sorted(m["Subject"] for m in msgs if m["To"] == "bob@example.com")
    n = inv["number"]
    assert subjects == [f"Invoice {n}", f"Invoice {n} could not be paid", f"Payment failed for invoice {n}"], subjects
    failed_mail = [m for m in msgs if m["Subject"].startswith("Payment failed")][0]
    assert "https://portal.example/cards" in failed_mail.get_payload(decode=True).decode()
    # The developer adds a good card and pays: paid, and the applications are live again.
    good = add_card(w, dev, GOOD)
    st, paid, _ = dev.call("POST", f"/api/v1/invoices/{inv['id']}/pay", {"payment_method_id": good["id"]})
    assert st == 200 and paid["state"] == "paid", paid
    app_now = snapshot_app(w, app["id"])
    assert (app_now["state"], app_now["state_reason"]) == ("live", None)


def wait_run_done(api, timeout=30):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        runs = api.ok("GET", "/billing/runs")["data"]
        if all(r["state"] != "running" for r in runs):
            return
        time.sleep(0.05)
    raise AssertionError("a billing run is still running")


def test_webhooks_are_verified_and_applied_once(world):
    """A charge whose outcome the API call did not report (the call timed out) is settled by the
    `payment_intent.succeeded` webhook; replays and forged events change nothing."""
    import hashlib
    import hmac
    import json
    w, api = world, world["api"]
    acct, _, dev = developer(w, "Cy")
    add_card(w, dev, GOOD)
    inv = issue(api, acct["id"], "12.00")
    # Stripe accepts the charge but answers after our 1.5 s timeout: the outcome is unknown.
    w["stripe"].delay_next_payment_intent(3)
    st, body, _ = api.call("POST", f"/admin/api/v1/invoices/{inv['id']}/charge", {})
    assert st == 503, body
    # The webhook arrives (localstripe sends it about a second after the event) and settles it.
    wait_state(api, inv["id"], "paid", timeout=15)
    [pi] = w["stripe"].payment_intents(customer_of(w, acct["id"]))
    # A forged event and a replayed one.
    event = {"id": "evt_forged", "type": "payment_intent.payment_failed",
             "data": {"object": {"id": pi["id"], "object": "payment_intent"}}}
    raw = json.dumps(event).encode()
    t = int(time.time())
    bad = hmac.new(b"whsec_wrong", f"{t}.".encode() + raw, hashlib.sha256).hexdigest()
    st, body, _ = api.call("POST", "/webhooks/stripe", raw, headers={"Stripe-Signature": f"t={t},v1={bad}"})
    assert st == 400 and body["error"]["code"] == "invalid_signature"
    old = t - 600
    sig = hmac.new(WEBHOOK_SECRET.encode(), f"{old}.".encode() + raw, hashlib.sha256).hexdigest()
    st, body, _ = api.call("POST", "/webhooks/stripe", raw, headers={"Stripe-Signature": f"t={old},v1={sig}"})
    assert st == 400, "outside the 5-minute tolerance"
    sig = hmac.new(WEBHOOK_SECRET.encode(), f"{t}.".encode() + raw, hashlib.sha256).hexdigest()
    for _ in range(2):
        st, body, _ = api.call("POST", "/webhooks/stripe", raw, headers={"Stripe-Signature": f"t={t},v1={sig}"})
        assert st == 200, body
    assert api.ok("GET", f"/invoices/{inv['id']}")["state"] == "paid", "a late failure never unpays"
    # An intent Tollgate did not create: acknowledged, ignored.
    other = json.dumps({"id": "evt_other", "type": "payment_intent.succeeded",
                        "data": {"object": {"id": "pi_someone_else", "object": "payment_intent"}}}).encode()
    sig = hmac.new(WEBHOOK_SECRET.encode(), f"{t}.".encode() + other, hashlib.sha256).hexdigest()
    st, body, _ = api.call("POST", "/webhooks/stripe", other, headers={"Stripe-Signature": f"t={t},v1={sig}"})
    assert (st, body["result"]) == (200, "ignored")


def test_a_retry_after_a_timeout_never_charges_twice(world):
    """Stripe accepted the charge but the answer timed out; the retry finds the PaymentIntent of that
    attempt instead of creating another: one charge in localstripe."""
    w, api = world, world["api"]
    # Webhooks off for this account's events: only the retry may settle the invoice.
    w["stripe"].call("POST", "/_config/webhooks/tollgate", {"url": "http://127.0.0.1:9/none", "secret": WEBHOOK_SECRET})
    acct, _, dev = developer(w, "Dee")
    add_card(w, dev, GOOD)
    inv = issue(api, acct["id"], "30.00")
    w["stripe"].delay_next_payment_intent(3)
    st, _, _ = api.call("POST", f"/admin/api/v1/invoices/{inv['id']}/charge", {})
    assert st == 503
    time.sleep(3)
    st, charged, _ = api.call("POST", f"/admin/api/v1/invoices/{inv['id']}/charge", {})
    assert st == 200 and charged["state"] == "paid", charged
    assert charged["payment"]["attempt"] == 1, "the same attempt, finished"
    intents = w["stripe"].payment_intents(customer_of(w, acct["id"]))
    assert len(intents) == 1 and intents[0]["status"] == "succeeded"


def test_non_payment_suspends_and_payment_resumes_at_the_gateway(upstream, stripe):
    """The whole path through a real Envoy in control-plane mode (default 500 ms poll): the last
    failed charge makes the filter answer 402 with a problem+json body saying why; paying the invoice
    brings 200 back. The times are printed (the goal, within 1 s, is tracked in BENCHMARKS.md)."""
    from conftest import call
    from support.control_plane import Database
    from support.envoy import Envoy, bootstrap, free_port, static_cluster, wasm_filter
    from test_loop import wait_status

    db = Database("sqlite")
    srv = start_server(db, TOLLGATE_MASTER_KEY=MASTER_KEY)
    envoy = None
    try:
        api = Api(srv.base, ADMIN_TOKEN)
        use_stripe(api, stripe.base, {"suspend_on_failure": True, "retry": {"attempts": 1}})
        w = {"api": api, "server": srv, "stripe": stripe}
        acct, app, dev = developer(w, "Eve")
        svc_id = api.ok("GET", f"/plans/{app['plan_id']}")["service_id"]
        api.ok("POST", f"/services/{svc_id}/mapping_rules", {"method": "GET", "pattern": "/", "metric": "hits"})
        gw = api.ok("POST", "/gateway_tokens", {"name": "edge", "service_ids": [svc_id]})
        config = {"service_id": svc_id, "control_plane": {
            "cluster": "tollgate_control_plane", "authority": "tollgate", "token": gw["token"]}}
        envoy = Envoy(bootstrap(free_port(), free_port(), upstream.port, [wasm_filter(config)],
                                [static_cluster("tollgate_control_plane", srv.port)]), concurrency=2).start()
        envoy.wait_snapshot()
        key = app["key"]
        wait_status(envoy, key, 200)
        add_card(w, dev, DECLINED)
        inv = issue(api, acct["id"], "15.00")
        st, failed, _ = api.call("POST", f"/admin/api/v1/invoices/{inv['id']}/charge", {})
        assert st == 200 and failed["state"] == "failed", failed
        suspended_after = wait_status(envoy, key, 402)
        r = call(envoy.port, "/items", headers={"x-api-key": key})
        assert r.status == 402 and r.header("content-type") == "application/problem+json"
        assert r.json()["code"] == "payment_required", r.json()
        good = add_card(w, dev, GOOD)
        st, paid, _ = dev.call("POST", f"/api/v1/invoices/{inv['id']}/pay", {"payment_method_id": good["id"]})
        assert st == 200 and paid["state"] == "paid", paid
        resumed_after = wait_status(envoy, key, 200)
        print(f"\nsuspended at the gateway {suspended_after:.2f}s after the last failed charge; "
              f"resumed {resumed_after:.2f}s after the payment")
    finally:
        if envoy:
            envoy.stop()
        srv.stop()
        db.drop()


def test_authentication_required_and_other_accounts_objects(world):
    """A card that needs authentication leaves the invoice unpaid for the developer to pay; and a
    developer can never touch another account's cards or invoices (404, as if they did not exist)."""
    w, api = world, world["api"]
    acct, _, dev = developer(w, "Hal")
    add_card(w, dev, "4000002500003155")
    inv = issue(api, acct["id"], "10.00")
    st, body, _ = api.call("POST", f"/admin/api/v1/invoices/{inv['id']}/charge", {})
    assert st == 200 and body["state"] == "unpaid", body
    assert body["payment"]["state"] == "requires_action" and body["payment"]["error_code"] == "authentication_required"
    other_acct, _, other = developer(w, "Ivy")
    other_card = add_card(w, other, GOOD)
    other_inv = issue(api, other_acct["id"], "5.00")
    for method, path, body in [("POST", f"/api/v1/payment_methods/{other_card['id']}/default", {}),
                               ("DELETE", f"/api/v1/payment_methods/{other_card['id']}", None),
                               ("POST", f"/api/v1/invoices/{other_inv['id']}/pay", {}),
                               ("POST", f"/api/v1/invoices/{inv['id']}/pay", {"payment_method_id": other_card["id"]}),
                               ("GET", f"/api/v1/invoices/{other_inv['id']}", None)]:
        st, answer, _ = dev.call(method, path, body)
        assert st == 404 and answer["error"]["code"] == "resource_missing", (method, path, st, answer)
    # Nothing happened to the other account's card or invoice.
    assert [c["default"] for c in other.call("GET", "/api/v1/payment_methods")[1]["data"]] == [True]
    assert api.ok("GET", f"/invoices/{other_inv['id']}")["state"] == "pending"


def test_portal_pays_invoices_and_manages_cards(world):
    """In the developer portal: cards listed, default switched, one removed; "Pay now" pays an
    unpaid invoice with the default card. (Card entry itself goes through Stripe Elements in the
    browser: here the card is added as Elements would, through the developer API.)"""
    import re
    from test_portal import Browser
    w, api = world, world["api"]
    b = Browser(w["server"].port)
    st, _, _ = b.submit("/portal/sign_up", {"name": "Jo", "email": "jo@example.com", "password": "long enough pw"})
    assert st == 303
    acct = [a for a in api.ok("GET", "/accounts")["data"] if a["email"] == "jo@example.com"][0]
    dev = Api(w["server"].base, api.ok("POST", f"/accounts/{acct['id']}/tokens", {})["token"])
    declined = add_card(w, dev, DECLINED)
    good = add_card(w, dev, GOOD)
    inv = issue(api, acct["id"], "25.00")
    _, _, html = b.request("GET", "/portal/billing")
    assert "visa •••• 0341" in html and "visa •••• 4242" in html and "Pay now" in html
    # Paying with the default (declined) card fails visibly; switching the default and paying works.
    st, _, html = b.request("POST", f"/portal/invoices/{inv['id']}/pay", {"csrf": b.csrf(html)})
    assert st == 402 and "The payment failed" in html
    st, _, html = b.request("POST", f"/portal/payment_methods/{good['id']}/default", {"csrf": b.csrf(html)})
    assert st == 200 and "Saved." in html
    st, _, html = b.request("POST", f"/portal/invoices/{inv['id']}/pay", {"csrf": b.csrf(html)})
    assert st == 200 and "Paid. Thank you." in html, html
    assert api.ok("GET", f"/invoices/{inv['id']}")["state"] == "paid"
    st, _, html = b.request("POST", f"/portal/payment_methods/{declined['id']}/delete", {"csrf": b.csrf(html)})
    assert st == 200 and "0341" not in html
    # Someone else's card or invoice: 404.
    other = Browser(w["server"].port)
    other.submit("/portal/sign_up", {"name": "Kay", "email": "kay@example.com", "password": "long enough pw"})
    _, _, ohtml = other.request("GET", "/portal/billing")
    for path in (f"/portal/payment_methods/{good['id']}/delete", f"/portal/invoices/{inv['id']}/pay"):
        assert other.request("POST", path, {"csrf": other.csrf(ohtml)})[0] == 404, path
    assert [c["last4"] for c in dev.call("GET", "/api/v1/payment_methods")[1]["data"]] == ["4242"]
