"""Sealed gateway secrets are bound to where they belong (issue 15, item 13): through real
`tollgate serve` processes and localstripe, on SQLite and PostgreSQL. Someone with write access to
the database who swaps two sealed values (the Stripe secret key and the webhook secret) gets a
control plane that refuses to use either, with a log line naming the field, instead of one that
sends the webhook secret to Stripe as the API key; values sealed in the first format (no associated
data, as Tollgate wrote them before) still open, and a start re-seals them in the current one."""

import json

from conftest import ADMIN_TOKEN
from support.control_plane import Api
from support.first_format_seal import seal_first_format
from support.stripe import SECRET_KEY, WEBHOOK_SECRET
from test_billing import db, start_server  # noqa: F401
from test_stripe import GOOD, MASTER_KEY, add_card, developer, stripe, use_stripe  # noqa: F401


def gateway_doc(db):  # noqa: F811
    [config] = db.query("SELECT config FROM payment_gateway WHERE id = 1")
    return json.loads(config)


def write_gateway_doc(db, doc):  # noqa: F811
    text = json.dumps(doc).replace("'", "''")
    db.query(f"UPDATE payment_gateway SET config = '{text}' WHERE id = 1")



def world_for(db, stripe):  # noqa: F811
    srv = start_server(db, TOLLGATE_MASTER_KEY=MASTER_KEY, TOLLGATE_PAYMENT_TIMEOUT_MS="3000")
    api = Api(srv.base, ADMIN_TOKEN)
    use_stripe(api, stripe.base)
    return srv, {"api": api, "server": srv, "stripe": stripe, "db": db}


def test_swapped_sealed_secrets_are_refused_never_used(db, stripe):  # noqa: F811
    srv, w = world_for(db, stripe)
    try:
        doc = gateway_doc(db)
        acct, _, dev = developer(w, "Swap")
        swapped = dict(doc, secret_key=doc["webhook_secret"], webhook_secret=doc["secret_key"])
        write_gateway_doc(db, swapped)
        # Card set-up needs the secret key: refused (5xx), and nothing reached Stripe under the
        # webhook secret (no customer was created for the account).
        st, body, _ = dev.call("POST", "/api/v1/payment_methods/setup", {})
        assert st >= 500, (st, body)
        assert WEBHOOK_SECRET not in json.dumps(body) and SECRET_KEY not in json.dumps(body)
        assert db.query(f"SELECT COUNT(*) FROM payment_customers WHERE account_id = '{acct['id']}'") == ["0"]
        log = srv.log()
        assert "gateway secret secret_key refused" in log and "for another field or row" in log, log[-2000:]
        # Moved into its own field again, every value works as before.
        write_gateway_doc(db, doc)
        card = add_card(w, dev, GOOD)
        assert card["last4"] == "4242"
        assert all(doc[f]["sealed"].startswith("v2:") for f in ("secret_key", "webhook_secret")), doc
    finally:
        srv.stop()


def test_first_format_secrets_still_open_and_are_resealed_at_start(db, stripe):  # noqa: F811
    srv, w = world_for(db, stripe)
    try:
        _, _, dev = developer(w, "Legacy")
        doc = gateway_doc(db)
        # What the previous Tollgate stored: the first sealed format, no associated data.
        for field, plain in (("secret_key", SECRET_KEY), ("webhook_secret", WEBHOOK_SECRET)):
            doc[field]["sealed"] = seal_first_format(MASTER_KEY, plain)
        write_gateway_doc(db, doc)
        srv.stop()
        srv.start()
        resealed = gateway_doc(db)
        for field in ("secret_key", "webhook_secret"):
            assert resealed[field]["sealed"].startswith("v2:"), resealed
            assert resealed[field]["last4"] == doc[field]["last4"]
        assert "gateway secrets re-sealed in the current format" in srv.log()
        card = add_card(w, dev, GOOD)
        assert card["last4"] == "4242"
        # A first-format value written after the start is not used (only a start re-seals).
        later = gateway_doc(db)
        later["secret_key"]["sealed"] = seal_first_format(MASTER_KEY, SECRET_KEY)
        write_gateway_doc(db, later)
        st, body, _ = dev.call("POST", "/api/v1/payment_methods/setup", {})
        assert st >= 500, (st, body)
        assert "sealed in the first format" in srv.log()
    finally:
        srv.stop()
