"""Who may call what, on SQLite and PostgreSQL: every developer route with another account's token
and ids (404, nothing of the other account in the answer, nothing changed), every admin route with
developer, gateway, read-only, revoked and expired tokens, gateway routes with the wrong kind of
token. Routes come from /openapi.json, so a new route is covered the day it is documented."""

import json
import time
import re
import urllib.request

import pytest

from support.control_plane import Api
from test_billing import db  # noqa: F401
from test_stripe import GOOD, add_card, developer, issue, world, stripe  # noqa: F401

FAKE_ID = "zz_00000000000000000000000000"


def routes(base, prefix):
    doc = json.load(urllib.request.urlopen(base + "/openapi.json", timeout=10))
    return [(m.upper(), p) for p, ops in doc["paths"].items() if p.startswith(prefix) for m in ops]


def fill(path, ids):
    return re.sub(r"\{([a-z_]+)\}", lambda m: ids.get(m.group(1), FAKE_ID), path)


def fingerprint(db, account=None):
    """Row counts of every table, every invoice's state and `account`'s default card. (A caller's
    own setup call may create its own provider customer: that table is compared for `account`.)"""
    # Idempotency records are bookkeeping of the requests themselves; webhook_events: the
    # provider's own events arrive whenever they like.
    return db.row_counts(exclude=("idempotency_keys", "payment_customers", "webhook_events")) | {
        "invoices": db.query("SELECT id, state FROM invoices ORDER BY id"),
        "default card": db.query(f"SELECT default_method_ref FROM payment_customers WHERE account_id = '{account}'")}


def test_developers_see_and_touch_only_their_own_account(world):
    w, api = world, world["api"]
    a, _, dev_a = developer(w, "Alice")
    b, _, dev_b = developer(w, "Bob")
    card = add_card(w, dev_a, GOOD)
    inv = issue(api, a["id"], "10.00")
    st, _, _ = api.call("POST", f"/admin/api/v1/invoices/{inv['id']}/charge", {})
    assert st == 200
    other = issue(api, a["id"], "5.00")  # unpaid: a target for "pay"
    before = fingerprint(w["db"], a["id"])
    secrets_of_a = [a["id"], inv["id"], other["id"], card["id"], inv["number"], "Alice", "alice@"]
    for method, path in routes(w["server"].base, "/api/v1"):
        for invoice in (inv["id"], other["id"]):
            url = fill(path, {"id": card["id"] if "payment_methods" in path else invoice})
            body = {} if method in ("POST", "PUT", "PATCH") else None
            st, answer, headers = dev_b.call(method, url, body)
            text = json.dumps(answer) if answer is not None else ""
            if "{" in path:
                assert st == 404, (method, url, st, answer)
            else:
                assert st in (200, 201, 409, 422), (method, url, st, answer)
            # The id the caller sent may be echoed back ("no invoice with id ..."); nothing else.
            leaked = [s for s in secrets_of_a if s in text and s not in url]
            assert not leaked, (method, url, leaked, answer)
    assert fingerprint(w["db"], a["id"]) == before, "another account's request changed something"
    # Alice still sees hers.
    assert [i["id"] for i in dev_a.call("GET", "/api/v1/invoices")[1]["data"]] != []


# Hundreds of wrong tokens from one address: past the per-address failure limit (test_abuse.py tests
# it) they would be 429, and this test is about which tokens are refused, not how often.
@pytest.mark.server_env(TOLLGATE_TOKEN_FAILURES_PER_IP="100000")
def test_admin_routes_refuse_every_other_kind_of_token(world):
    w, api = world, world["api"]
    acct, app, dev = developer(w, "Carol")
    base = w["server"].base
    svc_id = api.ok("GET", f"/plans/{app['plan_id']}")["service_id"]
    gateway_token = api.ok("POST", "/gateway_tokens", {"name": "edge", "service_ids": [svc_id]})
    gateway = gateway_token["token"]
    reader = api.ok("POST", "/tokens", {"name": "auditor", "scope": "read"})["token"]
    revoked = api.ok("POST", "/tokens", {"name": "gone", "scope": "write"})
    api.ok("DELETE", f"/tokens/{revoked['id']}")
    expired = api.ok("POST", "/tokens", {"name": "old", "scope": "write", "expires_in_days": 1})
    assert expired["expires_at"] is not None
    w["db"].query(f"UPDATE admin_tokens SET expires_at = 1 WHERE id = '{expired['id']}'")
    acct_tok = api.ok("POST", f"/accounts/{acct['id']}/tokens", {"name": "x", "expires_in_days": 30})
    w["db"].query(f"UPDATE account_tokens SET expires_at = 1 WHERE id = '{acct_tok['id']}'")
    before = fingerprint(w["db"], acct["id"])
    ids = {"id": acct["id"]}
    refused = {"developer": dev.token, "gateway": gateway, "revoked": revoked["token"],
               "expired": expired["token"], "none": None, "garbage": "tg_not_a_token"}
    admin_routes = routes(base, "/admin/api/v1")
    for method, path in admin_routes:
        url = fill(path, ids)
        body = {} if method in ("POST", "PUT", "PATCH") else None
        for kind, token in refused.items():
            st, answer, _ = Api(base, token).call(method, url, body)
            assert st == 401, (kind, method, url, st, answer)
            assert answer["error"]["code"] == "unauthorized"
        st, answer, _ = Api(base, reader).call(method, url, body)
        if method == "GET":
            # Past authentication: a route with a required query parameter (the usage export's
            # `since`) answers 400 missing_parameter.
            assert st in (200, 404) or (st == 400 and answer["error"]["code"] == "missing_parameter"), \
                (method, url, st, answer)
        else:
            assert st == 403 and answer["error"]["code"] == "insufficient_scope", (method, url, st, answer)
    assert fingerprint(w["db"], acct["id"]) == before, "a refused request changed something"
    # The expired account token is refused on the developer API too; gateway routes take only
    # gateway tokens.
    st, answer, _ = Api(base, acct_tok["token"]).call("GET", "/api/v1/invoices")
    assert st == 401 and "expired" in answer["error"]["message"], answer
    svc = api.ok("POST", "/services", {"name": "Gw"})
    for token in (dev.token, reader, w["api"].token):
        for method, path in routes(base, "/gateway/v1"):
            url = fill(path, {"id": svc["id"]}) + ("?instance=i" if path.endswith("global_usage") else "")
            st, _, _ = Api(base, token).call(method, url, {} if method == "POST" else None)
            assert st == 401, (method, url, st)
    # A gateway token reads only its services' snapshots.
    assert Api(base, gateway).call("GET", f"/gateway/v1/services/{svc['id']}/snapshot")[0] == 403
    api.ok("PATCH", f"/gateway_tokens/{gateway_token['id']}", {"service_ids": [svc_id, svc["id"]]})
    assert Api(base, gateway).call("GET", f"/gateway/v1/services/{svc['id']}/snapshot")[0] == 200
    # Expiry bounds: 1..3650 days.
    for bad in (0, -1, 3651):
        st, answer, _ = api.post("/tokens", {"name": "t", "scope": "read", "expires_in_days": bad})
        assert st == 422 and answer["error"]["param"] == "expires_in_days", answer


def test_secrets_never_reach_the_logs_or_the_database(db, stripe):  # noqa: F811
    """A full run at the most verbose log level: every secret configured or created (admin,
    account and gateway tokens, API keys, the master key, Stripe's secret key and webhook secret,
    a wrong token tried) is absent from the server's log, and the plaintexts are absent from the
    database too."""
    from conftest import ADMIN_TOKEN
    from support.stripe import SECRET_KEY, WEBHOOK_SECRET
    from test_billing import start_server
    from test_stripe import MASTER_KEY, use_stripe

    srv = start_server(db, TOLLGATE_MASTER_KEY=MASTER_KEY, TOLLGATE_LOG="trace")
    try:
        api = Api(srv.base, ADMIN_TOKEN)
        use_stripe(api, stripe.base)
        assert SECRET_KEY not in json.dumps(api.ok("GET", "/billing/gateway"))
        stripe.register_webhook(f"{srv.base}/webhooks/stripe")
        w = {"api": api, "server": srv, "stripe": stripe, "db": db}
        acct, app, dev = developer(w, "Secretive")
        secrets = [ADMIN_TOKEN, MASTER_KEY, SECRET_KEY, WEBHOOK_SECRET, app["key"], dev.token]
        secrets.append(api.ok("POST", "/tokens", {"name": "t", "scope": "write"})["token"])
        svc_id = api.ok("GET", f"/plans/{app['plan_id']}")["service_id"]
        secrets.append(api.ok("POST", "/gateway_tokens", {"name": "g", "service_ids": [svc_id]})["token"])
        key_id = api.ok("GET", f"/applications/{app['id']}/keys")["data"][0]["id"]
        secrets.append(api.ok("POST", f"/applications/{app['id']}/keys/{key_id}/rotate", {})["key"])
        st, made, _ = api.call("POST", f"/admin/api/v1/applications/{app['id']}/keys", {},
                               headers={"Idempotency-Key": "secret-run-1"})
        assert st == 201
        secrets.append(made["key"])
        add_card(w, dev, GOOD)
        inv = issue(api, acct["id"], "3.00")
        assert api.call("POST", f"/admin/api/v1/invoices/{inv['id']}/charge", {})[0] == 200
        wrong = "tg_admin_wrong_" + "q" * 30
        assert Api(srv.base, wrong).call("GET", "/admin/api/v1/services")[0] == 401
        secrets.append(wrong)
        time.sleep(2)  # the webhook localstripe sends about a second after the charge
        log = srv.log()
        assert " DEBUG " in log and "stripe request" in log, "the run logged at trace level, Stripe calls too"
        found = [s[:12] + "..." for s in secrets if s in log]
        assert not found, f"secrets in the log: {found}"
        dump = db.raw_dump()
        stored = [s[:12] + "..." for s in secrets if s in dump]
        assert not stored, f"plaintext secrets in the database: {stored}"
    finally:
        srv.stop()
