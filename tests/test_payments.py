"""Payments through real `tollgate serve` processes on SQLite and PostgreSQL: the payment gateway's
settings (secrets sealed with the master key, never returned) and the developer API's account
scoping."""

import pytest

from conftest import ADMIN_TOKEN
from support.control_plane import Api
from test_billing import db, start_server  # noqa: F401  (the db fixture, once per backend)
from test_control_plane import assert_error

MASTER_KEY = "test-master-key-" + "x" * 32
STRIPE = {"type": "stripe", "secret_key": "sk_test_4eC39HqLyjWDarjtT1zdp7dc",
          "publishable_key": "pk_test_TYooMQauvdEDq54NiTphI7jx", "webhook_secret": "whsec_abcdefgh12345678"}


@pytest.fixture
def payments(db):  # noqa: F811
    srv = start_server(db, TOLLGATE_MASTER_KEY=MASTER_KEY)
    yield srv
    srv.stop()


def put_gateway(api, body):
    return api.call("PUT", "/admin/api/v1/billing/gateway", body)


def test_gateway_secrets_need_the_master_key_and_are_never_shown(db):  # noqa: F811
    srv = start_server(db)
    try:
        api = Api(srv.base, ADMIN_TOKEN)
        st, body, _ = put_gateway(api, STRIPE)
        assert st == 409 and body["error"]["code"] == "master_key_required", body
        assert api.ok("GET", "/billing/gateway") == {"object": "payment_gateway", "type": None}
    finally:
        srv.stop()
    srv = start_server(db, TOLLGATE_MASTER_KEY=MASTER_KEY)
    try:
        api = Api(srv.base, ADMIN_TOKEN)
        for bad, param in [({**STRIPE, "webhook_secret": ""}, "webhook_secret"),
                           ({**STRIPE, "secret_key": "pk_wrong"}, "secret_key"),
                           ({**STRIPE, "api_base": "ftp://x"}, "api_base"),
                           ({"type": "paypal"}, "type")]:
            st, body, _ = put_gateway(api, bad)
            assert st == 422 and body["error"]["param"] == param, (bad, body)
        assert api.ok("GET", "/billing/gateway")["type"] is None, "refused input stored nothing"
        st, view, _ = put_gateway(api, {**STRIPE, "api_base": "http://127.0.0.1:9/"})
        assert st == 200, view
        assert view["secret_key"] == {"set": True, "last4": STRIPE["secret_key"][-4:]}
        assert view["webhook_secret"] == {"set": True, "last4": "5678"}
        assert view["publishable_key"] == STRIPE["publishable_key"] and "warning" not in view
        assert api.ok("GET", "/billing/gateway") == view
        dump = db.raw_dump()
        for secret in (STRIPE["secret_key"], STRIPE["webhook_secret"]):
            assert secret not in dump and secret not in str(view)
        st, view, _ = put_gateway(api, {"type": "braintree", "merchant_id": "m1", "public_key": "pub",
                                        "private_key": "priv-secret-1234", "environment": "sandbox",
                                        "merchant_accounts": {"USD": "m1_usd"}})
        assert st == 200 and view["type"] == "braintree" and "must add a card again" in view["warning"]
        assert view["private_key"] == {"set": True, "last4": "1234"}
        assert view["merchant_accounts"] == {"USD": "m1_usd"}
    finally:
        srv.stop()


def issue_invoice(api, account_id, amount="10"):
    inv = api.ok("POST", "/invoices", {"account_id": account_id})
    api.ok("POST", f"/invoices/{inv['id']}/lines", {"description": "Support", "unit_price": amount})
    return api.ok("POST", f"/invoices/{inv['id']}/issue", status=200)


def test_developer_api_is_scoped_to_the_account(payments):
    admin = Api(payments.base, ADMIN_TOKEN)
    a = admin.ok("POST", "/accounts", {"name": "A", "email": "a@example.com"})
    b = admin.ok("POST", "/accounts", {"name": "B", "email": "b@example.com"})
    inv_a, inv_b = issue_invoice(admin, a["id"]), issue_invoice(admin, b["id"])
    draft_a = admin.ok("POST", "/invoices", {"account_id": a["id"]})
    tok = admin.ok("POST", f"/accounts/{a['id']}/tokens", {"name": "ci"})
    assert tok["token"].startswith("tgd_") and tok["account_id"] == a["id"]
    assert tok["token"] not in payments.db.raw_dump()
    assert all("token" not in t for t in admin.ok("GET", f"/accounts/{a['id']}/tokens")["data"])
    dev = Api(payments.base, tok["token"])

    def get(path):
        return dev.call("GET", "/api/v1" + path)

    st, page, _ = get("/invoices")
    assert st == 200 and [i["id"] for i in page["data"]] == [inv_a["id"]], "own issued invoices only"
    assert get(f"/invoices/{inv_a['id']}")[1]["total"] == inv_a["total"]
    for path in (f"/invoices/{inv_b['id']}", f"/invoices/{inv_b['id']}.pdf", f"/invoices/{draft_a['id']}",
                 "/invoices/inv_nope"):
        st, body, _ = get(path)
        assert st == 404 and body["error"]["code"] == "resource_missing", (path, st, body)
    st, _, headers = dev.call("GET", "/api/v1/payments")
    assert st == 200
    # Credentials: none, an admin token, another account's revoked token.
    assert Api(payments.base, None).call("GET", "/api/v1/invoices")[0] == 401
    assert Api(payments.base, ADMIN_TOKEN).call("GET", "/api/v1/invoices")[0] == 401
    assert_error(admin.get("/invoices", token=tok["token"]), 401)
    admin.ok("DELETE", f"/accounts/{a['id']}/tokens/{tok['id']}")
    assert get("/invoices")[0] == 401
