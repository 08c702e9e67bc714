"""Charging through Braintree's GraphQL API, against a contract server in the suite that answers
with responses shaped as Braintree documents them (Braintree has no emulator; see the README), with
real `tollgate serve` processes on SQLite and PostgreSQL. A Braintree charge is in the currency of
the merchant account it names (issue 15, item 9): each currency is charged on its own account, and a
currency without one is refused before anything is sent."""

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
from test_control_plane import assert_error
from test_stripe import customer_of, developer, issue

MASTER_KEY = "braintree-test-master-key-" + "z" * 32
PUBLIC_KEY, PRIVATE_KEY = "bt_public_key_1", "bt_private_key_secret_1"
#: The contract server's merchant accounts (the first is its default) and the gateway settings'.
CONTRACT_ACCOUNTS = "USD=tollgate_usd,EUR=tollgate_eur,JPY=tollgate_jpy"
MERCHANT_ACCOUNTS = {"USD": "tollgate_usd", "EUR": "tollgate_eur", "JPY": "tollgate_jpy"}


@pytest.fixture
def contract():
    port = free_port()
    script = os.path.join(os.path.dirname(__file__), "support", "braintree_contract.py")
    proc = subprocess.Popen([sys.executable, script, "--port", str(port), "--public-key", PUBLIC_KEY,
                             "--private-key", PRIVATE_KEY, "--merchant-accounts", CONTRACT_ACCOUNTS])
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
        "environment": "sandbox", "api_base": contract, "merchant_accounts": MERCHANT_ACCOUNTS})
    assert st == 200, body
    api.call("PUT", "/admin/api/v1/billing/settings", {"charging_enabled": True, "due_days": 0,
                                                       "retry": {"attempts": 3, "interval_days": 3}})
    yield {"api": api, "server": srv, "contract": contract, "db": db}
    srv.stop()


def transactions(contract):
    with urllib.request.urlopen(contract + "/_contract/transactions", timeout=10) as r:
        return json.loads(r.read())


def charge_calls(contract):
    """`chargePaymentMethod` calls the contract server received, refused ones included."""
    with urllib.request.urlopen(contract + "/_contract/charge_calls", timeout=10) as r:
        return json.loads(r.read())["charge_calls"]


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
    assert (tx["merchantAccountId"], tx["amount"]["currencyCode"]) == ("tollgate_usd", "USD")
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


@pytest.mark.parametrize("currency,price,sent", [("JPY", "1500", "1500"), ("EUR", "49.5", "49.50")])
def test_each_currency_is_charged_on_its_merchant_account(world, currency, price, sent):
    w, api = world, world["api"]
    st, body, _ = api.call("PUT", "/admin/api/v1/billing/settings", {"currency": currency})
    assert st == 200, body
    acct, _, dev = developer(w, f"Cur{currency}")
    assert vault(dev, "fake-valid-nonce")[0] == 201
    inv = issue(api, acct["id"], price)
    st, charged, _ = api.call("POST", f"/admin/api/v1/invoices/{inv['id']}/charge", {})
    assert st == 200 and charged["state"] == "paid", charged
    [tx] = transactions(w["contract"])
    # The previous build named no merchant account: the default one (USD) charged 1500 USD.
    assert (tx["merchantAccountId"], tx["amount"]["currencyCode"], tx["amount"]["value"]) == (
        MERCHANT_ACCOUNTS[currency], currency, sent), tx


def test_a_currency_without_a_merchant_account_is_refused_before_anything_is_sent(world):
    w, api = world, world["api"]
    gateway = {"type": "braintree", "merchant_id": "tollgate", "public_key": PUBLIC_KEY,
               "private_key": PRIVATE_KEY, "environment": "sandbox", "api_base": w["contract"]}
    # Saving: a billing currency without an account, accounts without the billing currency's,
    # and malformed accounts are refused; nothing changes.
    assert_error(api.call("PUT", "/admin/api/v1/billing/settings", {"currency": "GBP"}), 422,
                 "currency_has_no_merchant_account")
    assert api.ok("GET", "/billing/settings")["currency"] == "USD"
    st, body, _ = api.call("PUT", "/admin/api/v1/billing/gateway", {**gateway, "merchant_accounts": {"EUR": "tollgate_eur"}})
    assert st == 422 and body["error"]["code"] == "currency_has_no_merchant_account", body
    assert body["error"]["param"] == "merchant_accounts.USD", body
    for bad, param in [({"XYZ": "a"}, "merchant_accounts.XYZ"), ({"CLF": "a"}, "merchant_accounts.CLF"),
                       ({"USD": ""}, "merchant_accounts.USD"), ({"USD": "a b"}, "merchant_accounts.USD")]:
        st, body, _ = api.call("PUT", "/admin/api/v1/billing/gateway", {**gateway, "merchant_accounts": bad})
        assert st == 422 and body["error"]["param"] == param, (bad, body)
    st, body, _ = api.call("PUT", "/admin/api/v1/billing/gateway", {
        **gateway, "merchant_accounts": {f"C{i:03}": "a" for i in range(101)}})
    assert st == 422 and body["error"]["code"] == "too_many_merchant_accounts", body
    assert api.ok("GET", "/billing/gateway")["merchant_accounts"] == MERCHANT_ACCOUNTS

    # Upgrading: a Braintree configuration stored before merchant accounts existed charges
    # nothing (never the default account's currency): a clear error, no call to Braintree.
    acct, _, dev = developer(w, "Old")
    assert vault(dev, "fake-valid-nonce")[0] == 201
    inv = issue(api, acct["id"], "25.00")
    [config] = w["db"].query("SELECT config FROM payment_gateway WHERE id = 1")
    doc = json.loads(config)
    del doc["merchant_accounts"]
    w["db"].query(f"UPDATE payment_gateway SET config = '{json.dumps(doc)}' WHERE id = 1")
    assert "merchant accounts" in api.ok("GET", "/billing/gateway")["warning"]
    calls = charge_calls(w["contract"])
    for call in (lambda: api.call("POST", f"/admin/api/v1/invoices/{inv['id']}/charge", {}),
                 lambda: dev.call("POST", f"/api/v1/invoices/{inv['id']}/pay", {})):
        st, body, _ = call()
        assert st == 422 and body["error"]["code"] == "currency_has_no_merchant_account", body
        assert "USD" in body["error"]["message"]
    assert charge_calls(w["contract"]) == calls and transactions(w["contract"]) == []
    assert w["db"].query(f"SELECT COUNT(*) FROM charge_attempts WHERE invoice_id = '{inv['id']}'") == ["0"]
    assert api.ok("GET", f"/invoices/{inv['id']}")["state"] == "pending"
    # Entering the accounts again makes it chargeable.
    st, body, _ = api.call("PUT", "/admin/api/v1/billing/gateway", {**gateway, "merchant_accounts": MERCHANT_ACCOUNTS})
    assert st == 200 and "warning" not in body, body
    st, charged, _ = api.call("POST", f"/admin/api/v1/invoices/{inv['id']}/charge", {})
    assert st == 200 and charged["state"] == "paid", charged


def test_an_unknown_stored_currency_is_never_charged_as_usd(world):
    """Issue 15 follow-up: an invoice row whose currency code Tollgate does not know (edited by
    hand, or written by another version) was charged as USD; now it is an error and nothing is sent."""
    w, api = world, world["api"]
    acct, _, dev = developer(w, "Zed")
    assert vault(dev, "fake-valid-nonce")[0] == 201
    inv = issue(api, acct["id"], "25.00")
    w["db"].query(f"UPDATE invoices SET currency = 'ZZZ' WHERE id = '{inv['id']}'")
    st, body, _ = api.call("POST", f"/admin/api/v1/invoices/{inv['id']}/charge", {})
    assert st == 409 and body["error"]["code"] == "unknown_currency" and "ZZZ" in body["error"]["message"], body
    assert charge_calls(w["contract"]) == 0
    assert w["db"].query(f"SELECT COUNT(*) FROM charge_attempts WHERE invoice_id = '{inv['id']}'") == ["0"]


def test_the_admin_gateway_form_edits_merchant_accounts(world):
    from test_portal import Browser
    w, api = world, world["api"]
    admin = Browser(w["server"].port)
    assert admin.submit("/admin/sign_in", {"token": ADMIN_TOKEN})[0] == 303
    _, _, html = admin.request("GET", "/admin/gateway")
    assert 'value="EUR=tollgate_eur, JPY=tollgate_jpy, USD=tollgate_usd"' in html, html
    form = {"type": "braintree", "braintree.merchant_id": "tollgate", "braintree.public_key": PUBLIC_KEY,
            "braintree.private_key": "", "braintree.environment": "sandbox", "braintree.api_base": w["contract"]}
    # Without the billing currency's account: refused, next to the field; nothing changes.
    st, _, html = admin.submit("/admin/gateway", {**form, "braintree.merchant_accounts": "EUR=tollgate_eur"})
    assert st == 422 and "merchant_accounts needs an account" in html, (st, html[:500])
    assert api.ok("GET", "/billing/gateway")["merchant_accounts"] == MERCHANT_ACCOUNTS
    st, _, html = admin.submit("/admin/gateway", {**form, "braintree.merchant_accounts": "usd=tollgate_usd\njpy=tollgate_jpy"})
    assert st == 200 and "Saved." in html, (st, html[:500])
    assert api.ok("GET", "/billing/gateway")["merchant_accounts"] == {"USD": "tollgate_usd", "JPY": "tollgate_jpy"}
