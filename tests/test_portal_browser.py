"""The portals in Debian's headless Chromium against a real `tollgate serve` (SQLite and PostgreSQL),
localstripe (its Stripe.js shim stands in for js.stripe.com) and a real Envoy with the filter in
control-plane mode: an admin sets up a service, a plan with pricing rules, billing settings and the
gateway through the forms; a developer signs up, creates an application, calls the API through
Envoy, sees the usage, adds a card in Stripe Elements, pays an invoice, and confirms a 3-D Secure
payment. Screenshots of the main pages go to target/test-output/portal/<backend>/."""

import os
import re
import time

import pytest

from conftest import ADMIN_TOKEN, call
from support.control_plane import Api
from support.envoy import Envoy, bootstrap, free_port, static_cluster, wasm_filter
from support.smtp import SmtpSink
from support.stripe import PUBLISHABLE_KEY, SECRET_KEY, WEBHOOK_SECRET, LocalStripe
from support.webdriver import Chromium
from test_billing import db, start_server  # noqa: F401

MASTER_KEY = "portal-browser-master-key-" + "z" * 32
OUTPUT = os.path.join(os.path.dirname(__file__), "..", "target", "test-output", "portal")
#: Metering reaches the control plane within flush_interval_ms; the page is polled this long.
USAGE_TIMEOUT_S = 20


@pytest.fixture
def world(db, upstream):  # noqa: F811
    stripe = LocalStripe().start()
    sink = SmtpSink().start()
    srv = start_server(db, sink, TOLLGATE_MASTER_KEY=MASTER_KEY)
    browser = Chromium(os.path.join(OUTPUT, db.backend)).start()
    state = {"server": srv, "stripe": stripe, "browser": browser, "api": Api(srv.base, ADMIN_TOKEN),
             "upstream": upstream, "envoys": []}
    yield state
    browser.stop()
    for e in state["envoys"]:
        e.stop()
    srv.stop()
    sink.stop()
    stripe.stop()


def start_envoy(w, service_id):
    gw = w["api"].ok("POST", "/gateway_tokens", {"name": "browser-test envoy", "service_ids": [service_id]})
    config = {"service_id": service_id,
              "control_plane": {"cluster": "tollgate_control_plane", "authority": "tollgate", "token": gw["token"],
                                "poll_interval_ms": 200, "flush_interval_ms": 500, "timeout_ms": 2000}}
    envoy = Envoy(bootstrap(free_port(), free_port(), w["upstream"].port, [wasm_filter(config)],
                            [static_cluster("tollgate_control_plane", w["server"].port)]), concurrency=2).start()
    w["envoys"].append(envoy)
    envoy.wait_snapshot()
    return envoy


def admin_sets_up(w):
    """The admin's side, all through the admin portal's forms. Returns the service and plan ids."""
    b, base, stripe = w["browser"], w["server"].base, w["stripe"]
    b.open(f"{base}/admin")
    b.type("#token", ADMIN_TOKEN)
    b.submit("button[type=submit]", "Revenue since")
    # A service and its mapping rule.
    b.open(f"{base}/admin/services")
    b.type("#name", "Weather API")
    b.submit("form[action='/admin/services'] button", "Service Weather API")
    service_id = re.search(r"/admin/services/([^/?#]+)", b.url).group(1)
    b.select("#method", "GET")
    b.type("#pattern", "/")
    b.select("#metric", "hits")
    b.submit("form[action$='/mapping_rules'] button", "Mapping rule added.")
    # A bad pattern is refused next to its field, by the API's own validation.
    b.type("#pattern", "no-leading-slash")
    b.submit("form[action$='/mapping_rules'] button")
    b.find("#pattern-error")
    b.screenshot("01-admin-service")
    # A plan: monthly fee, a daily limit, graduated pricing; then the cost preview.
    b.open(f"{base}/admin/plans")
    b.select("#service_id", "Weather API")
    b.type("#name", "Pro")
    b.type("#fixed_fee", "10")
    b.submit("form[action='/admin/plans'] button", "Plan Pro")
    plan_id = re.search(r"/admin/plans/([^/?#]+)", b.url).group(1)
    b.select("#state", "published")
    b.submit(f"form[action='/admin/plans/{plan_id}'] button", "Plan saved.")
    b.select("#metric", "hits")
    b.select("#period", "day")
    b.type("#value", "1000")
    b.submit("form[action$='/limits'] button", "Limit added.")
    b.select("#rule_metric", "hits")
    b.select("#model", "graduated")
    b.type("#from", "1")
    b.type("#to", "100")
    b.type("#unit_price", "0")
    b.submit("form[action$='/pricing_rules'] button", "Pricing rule added.")
    b.type("#from", "101")
    b.type("#unit_price", "0.015")
    b.submit("form[action$='/pricing_rules'] button", "Pricing rule added.")
    # An overlapping tier is refused and nothing changes.
    b.type("#from", "50")
    b.type("#unit_price", "1")
    b.submit("form[action$='/pricing_rules'] button")
    assert b.find_all(".error[role=alert], .error[id]"), b.text()
    plan = w["api"].ok("GET", f"/plans/{plan_id}")
    assert [(r["from"], r["to"], r["unit_price"]) for r in plan["pricing_rules"]] == [(1, 100, "0.00"), (101, None, "0.015")]
    assert plan["limits"] == [{"metric": "hits", "period": "day", "value": 1000}] and plan["state"] == "published"
    # At 1,000 hits: 10.00 + 900 x 0.015 = 23.50 (USD until the settings change below).
    b.open(f"{base}/admin/plans/{plan_id}?units.hits=1000")
    assert "23.50 USD a month" in b.element_text("#preview"), b.element_text("#preview")
    b.screenshot("02-admin-plan-with-preview")
    # Billing settings: currency and charging, errors next to the field.
    b.open(f"{base}/admin/billing")
    b.type("#currency", "EURO")
    b.submit("form[action='/admin/billing'] button")
    b.find("#currency-error")
    b.type("#currency", "EUR")
    b.script("document.querySelector('[name=charging_enabled]').checked = true")
    b.type("#due_days", "0")
    b.submit("form[action='/admin/billing'] button", "Saved.")
    settings = w["api"].ok("GET", "/billing/settings")
    assert settings["currency"] == "EUR" and settings["charging_enabled"] is True and settings["due_days"] == 0
    b.screenshot("03-admin-billing-settings")
    # The gateway: secrets are write-only (never put back into the page).
    b.open(f"{base}/admin/gateway")
    b.type("#stripe\\.secret_key", SECRET_KEY)
    b.type("#stripe\\.publishable_key", PUBLISHABLE_KEY)
    b.type("#stripe\\.webhook_secret", WEBHOOK_SECRET)
    b.type("#stripe\\.api_base", stripe.base)
    b.type("#stripe\\.js_url", f"{stripe.base}/js.stripe.com/v3/")
    b.submit("form[action='/admin/gateway'] button", "Invoices are charged through stripe.")
    assert SECRET_KEY not in b.source() and WEBHOOK_SECRET not in b.source()
    assert "ends in 6789" in b.text()
    # Saving again with the secret fields empty keeps them.
    b.submit("form[action='/admin/gateway'] button", "Saved.")
    gw = w["api"].ok("GET", "/billing/gateway")
    assert gw["secret_key"]["last4"] == "6789" and gw["js_url"] == f"{stripe.base}/js.stripe.com/v3/"
    b.screenshot("04-admin-gateway")
    stripe.register_webhook(f"{base}/webhooks/stripe")
    return service_id, plan_id


def issue_invoice(w, account_id, amount):
    api = w["api"]
    inv = api.ok("POST", "/invoices", {"account_id": account_id})
    api.ok("POST", f"/invoices/{inv['id']}/lines", {"description": "Consulting", "quantity": "1", "unit_price": amount})
    return api.ok("POST", f"/invoices/{inv['id']}/issue", status=200)


def developer_card_form(b, number):
    b.click("#add-card")
    b.find("#card-element input[placeholder=number]")
    for field, value in [("number", number), ("exp_month", "12"), ("exp_year", "34"), ("cvc", "123"),
                         ("postal_code", "10115")]:
        b.type(f"#card-element input[placeholder={field}]", value)


def complete_3ds(b):
    """Answers the 3-D Secure dialog of localstripe's Stripe.js shim as the cardholder would."""
    b.wait_for_text("Complete authentication")
    b.script("for (const x of document.querySelectorAll('button')) if (x.innerText === 'Complete authentication') x.click()")


def assert_no_csp_violation(b, where):
    """The pages ran under the portal's strict Content-Security-Policy (no inline script or style)
    without the browser refusing anything."""
    refused = [e["message"] for e in b.console() if "Content Security Policy" in e.get("message", "")]
    assert not refused, (where, refused)


def test_admin_and_developer_in_the_browser(world):
    w, b = world, world["browser"]
    base, api = w["server"].base, w["api"]
    service_id, plan_id = admin_sets_up(w)
    assert_no_csp_violation(b, "admin set-up")
    envoy = start_envoy(w, service_id)

    # The developer signs up and creates an application on the published plan.
    b.open(f"{base}/portal/sign_up")
    b.type("#name", "Umbrella Forecasts")
    b.type("#email", "ops@umbrella.example")
    b.type("#password", "a long enough password")
    b.submit("form[action='/portal/sign_up'] button", "Applications")
    b.type("#name", "Forecast bot")
    b.select("#plan_id", "Pro")
    b.click("form[action='/portal/applications'] button")
    key = b.element_text("#new-key")
    assert key.startswith("tg_")
    b.screenshot("05-developer-application-created")
    [acct] = [a for a in api.ok("GET", "/accounts")["data"] if a["email"] == "ops@umbrella.example"]
    [app] = api.ok("GET", f"/applications?account_id={acct['id']}")["data"]

    # Calls through Envoy (the snapshot carries the new key within a poll) show up as usage.
    # Each Envoy worker polls on its own: wait until both know the key (six 200s in a row).
    deadline = time.monotonic() + 10
    admitted = streak = 0
    while streak < 6:
        assert time.monotonic() < deadline, "the new key never reached every Envoy worker"
        ok = call(envoy.port, "/forecast", headers={"x-api-key": key}).status == 200
        admitted += ok
        streak = streak + 1 if ok else 0
        time.sleep(0.02)
    deadline = time.monotonic() + USAGE_TIMEOUT_S
    while True:
        b.open(f"{base}/portal/applications/{app['id']}")
        used = re.search(r"Hits today: (\d+)", b.text())
        if used and int(used.group(1)) >= admitted:
            break
        assert time.monotonic() < deadline, b.text()
        time.sleep(0.5)
    assert int(used.group(1)) == admitted, "every admitted call is counted once"
    assert b.find_all("svg")
    b.screenshot("06-developer-usage")

    # A card through Stripe Elements (localstripe's Stripe.js shim), then paying an invoice with it.
    inv = issue_invoice(w, acct["id"], "12.00")
    b.open(f"{base}/portal/billing")
    developer_card_form(b, "4242424242424242")
    b.screenshot("07-developer-add-card")
    b.submit("#save-card", "ending in 4242 saved")
    b.screenshot("08-developer-card-saved")
    b.submit(f"form[action='/portal/invoices/{inv['id']}/pay'] button", "Paid. Thank you.")
    assert api.ok("GET", f"/invoices/{inv['id']}")["state"] == "paid"
    b.screenshot("09-developer-paid")

    # A card that needs 3-D Secure: the payment is confirmed in the browser with Stripe.js.
    b.open(f"{base}/portal/billing")
    developer_card_form(b, "4000002500003155")
    b.script("document.querySelector('[name=default]').checked = true")
    b.click("#save-card")
    complete_3ds(b)  # the bank authenticates the card once when it is saved
    b.wait_for_text("ending in 3155 saved")
    sca = issue_invoice(w, acct["id"], "30.00")
    b.open(f"{base}/portal/billing")
    b.submit(f"form[action='/portal/invoices/{sca['id']}/pay'] button", "Your bank asks you to confirm this payment")
    b.screenshot("10-developer-confirm-payment")
    b.click("#confirm-payment")
    complete_3ds(b)
    b.wait_for_text("Paid. Thank you.")
    assert api.ok("GET", f"/invoices/{sca['id']}")["state"] == "paid"
    st, listed = w["stripe"].call("GET", "/v1/payment_intents?limit=100")
    charges = listed["data"]
    assert sum(1 for pi in charges if pi.get("metadata", {}).get("tollgate_invoice") == sca["id"]) == 1, "charged once"
    b.screenshot("11-developer-billing")
    assert_no_csp_violation(b, "cards, payments and 3-D Secure")
    # The table sorter (a script file the page loads) runs under the policy: a click sorts.
    b.click("table.sortable th")
    assert b.script("return document.querySelector('table.sortable th').getAttribute('aria-sort')") == "ascending"
    # The policy forbids inline script: one injected into the page does not run.
    ran = b.script("var s=document.createElement('script');s.textContent='window.__injected=1';"
                   "document.body.appendChild(s);return window.__injected === 1")
    assert ran is False
    assert any("Content Security Policy" in e.get("message", "") for e in b.console()), "the browser refused it"

    # The admin's dashboard and accounts pages show it all; suspend the application from there.
    b.open(f"{base}/admin")
    assert "42.00 EUR" in b.element_text("#revenue")
    assert "hits" in b.text()
    b.screenshot("12-admin-dashboard")
    b.open(f"{base}/admin/accounts/{acct['id']}")
    b.submit(f"form[action='/admin/applications/{app['id']}/suspend'] button", "suspended")
    assert api.ok("GET", f"/applications/{app['id']}")["state"] == "suspended"
    deadline = time.monotonic() + 10
    while call(envoy.port, "/forecast", headers={"x-api-key": key}).status != 403:
        assert time.monotonic() < deadline, "the suspension never reached Envoy"
        time.sleep(0.1)
    b.screenshot("13-admin-account")
