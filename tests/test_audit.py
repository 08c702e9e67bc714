"""The audit log (docs/operations.md, "Audit log"): every admin write through the API, the admin
portal or the CLI is recorded in the transaction of the write, with who, from where, what and the
changed fields; secrets never; nothing changes or deletes an event. Each test filters by the ids it
made, so the tests share nothing and run in parallel."""

import http.client
import json
import threading
import uuid

from conftest import ADMIN_TOKEN
from support.control_plane import Api
from test_portal import Browser


def events(api, **filters):
    """Every audit event matching `filters`, through all pages."""
    out, after = [], None
    while True:
        q = dict(filters, limit=100, **({"starting_after": after} if after else {}))
        page = api.ok("GET", "/audit_events?" + "&".join(f"{k}={v}" for k, v in q.items()))
        out += page["data"]
        if not page["has_more"]:
            return out
        after = page["next_cursor"]


def write_token(api):
    made = api.ok("POST", "/tokens", {"name": f"audit-{uuid.uuid4().hex[:8]}", "scope": "write"})
    return made["id"], Api(api.base, made["token"])


def plan(api):
    svc = api.ok("POST", "/services", {"name": f"Audited {uuid.uuid4().hex[:8]}"})
    return api.ok("POST", "/plans", {"service_id": svc["id"], "name": "Gold", "fixed_fee": "10.00",
                                     "state": "published"})


def test_a_portal_price_change_is_recorded_with_before_and_after(server):
    api = Api(server.base, ADMIN_TOKEN)
    p = plan(api)
    admin = Browser(server.port)
    assert admin.submit("/admin/sign_in", {"token": ADMIN_TOKEN})[0] == 303
    st, _, html = admin.submit(f"/admin/plans/{p['id']}", {"name": "Gold", "fixed_fee": "12.50", "setup_fee": "0",
                                                            "trial_days": "0", "state": "published"})
    assert st == 200 and "Plan saved." in html, html[:500]
    [e] = events(api, object_type="plan", object_id=p["id"], action="plan.updated")
    assert e["actor_type"] == "session" and e["actor_id"] == "env", e
    assert e["ip"] == "127.0.0.1", e
    assert e["changes"]["fixed_fee"] == {"before": p["fixed_fee"], "after": "12.50"}, e
    assert "name" not in e["changes"] and "updated_at" not in e["changes"], "only what changed"
    [created] = events(api, object_id=p["id"], action="plan.created")
    assert created["actor_type"] == "token" and created["changes"]["fixed_fee"]["before"] is None


def test_an_api_write_records_the_token_id_and_the_client_address(server):
    api = Api(server.base, ADMIN_TOKEN)
    token_id, writer = write_token(api)
    svc = writer.ok("POST", "/services", {"name": f"By token {token_id}"})
    [e] = events(api, object_id=svc["id"])
    assert (e["action"], e["object_type"], e["actor_type"], e["actor_id"], e["ip"]) == \
        ("service.created", "service", "token", token_id, "127.0.0.1"), e
    assert e["changes"]["name"] == {"before": None, "after": svc["name"]}
    writer.ok("PATCH", f"/services/{svc['id']}", {"name": svc["name"] + " renamed"})
    [u] = events(api, object_id=svc["id"], action="service.updated")
    assert u["changes"] == {"name": {"before": svc["name"], "after": svc["name"] + " renamed"}}, u
    # The environment token is `env`.
    api.ok("DELETE", f"/services/{svc['id']}")
    [d] = events(api, object_id=svc["id"], action="service.deleted")
    assert d["actor_id"] == "env" and d["changes"]["name"]["after"] is None


def test_refused_and_rolled_back_writes_record_nothing(server):
    api = Api(server.base, ADMIN_TOKEN)
    token_id, writer = write_token(api)
    # Refused before any transaction (invalid input).
    st, _, _ = writer.post("/services", {"name": ""})
    assert st == 422
    # Refused inside the transaction, after the before-image was read: the rename hits the
    # unique name, so the update and its event roll back together.
    a = writer.ok("POST", "/services", {"name": f"A {token_id}"})
    b = writer.ok("POST", "/services", {"name": f"B {token_id}"})
    st, _, _ = writer.patch(f"/services/{b['id']}", {"name": a["name"]})
    assert st == 409
    # A plan in use cannot be deleted: refused inside the delete's transaction.
    p = writer.ok("POST", "/plans", {"service_id": a["id"], "name": "P"})
    acct = writer.ok("POST", "/accounts", {"name": "Acme", "email": "audit@example.com"})
    writer.ok("POST", "/applications", {"account_id": acct["id"], "plan_id": p["id"], "name": "App"})
    st, _, _ = writer.delete(f"/plans/{p['id']}")
    assert st == 409
    mine = events(api, actor=token_id)
    assert sorted(e["action"] for e in mine) == \
        ["account.created", "application.created", "plan.created", "service.created", "service.created"], mine


def test_no_secret_appears_in_any_audit_event(server):
    api = Api(server.base, ADMIN_TOKEN)
    token_id, writer = write_token(api)
    secrets = [ADMIN_TOKEN]
    secrets.append(writer.ok("POST", "/tokens", {"name": "t", "scope": "read"})["token"])
    p = plan(writer)
    secrets.append(writer.ok("POST", "/gateway_tokens", {"name": "g", "service_ids": [p["service_id"]]})["token"])
    acct = writer.ok("POST", "/accounts", {"name": "Secretive", "email": "s@example.com"})
    app = writer.ok("POST", "/applications", {"account_id": acct["id"], "plan_id": p["id"], "name": "S"})
    secrets.append(app["key"])
    rotated = writer.ok("POST", f"/applications/{app['id']}/keys/{app['key_id']}/rotate", {})
    secrets.append(rotated["key"])
    imported = "imported-" + uuid.uuid4().hex
    writer.ok("POST", f"/applications/{app['id']}/keys", {"key": imported})
    secrets.append(imported)
    stripe = {"type": "stripe", "secret_key": "sk_test_audit" + uuid.uuid4().hex,
              "publishable_key": "pk_test_audit", "webhook_secret": "whsec_audit" + uuid.uuid4().hex}
    writer.call("PUT", "/admin/api/v1/billing/gateway", stripe)
    secrets += [stripe["secret_key"], stripe["webhook_secret"]]
    st, ep, _ = writer.post("/webhook_endpoints", {"url": "https://hooks.example.com/x", "events": ["invoice.paid"]})
    if st == 201:
        secrets.append(ep["secret"])
    everything = json.dumps(events(api))
    assert token_id in everything and "application_key.rotated" in everything
    for s in secrets:
        assert s not in everything, f"a secret ({s[:8]}...) is in the audit log"
        assert s[:-1] not in everything


def test_no_route_changes_or_deletes_audit_events(server):
    api = Api(server.base, ADMIN_TOKEN)
    svc = api.ok("POST", "/services", {"name": f"Immutable {uuid.uuid4().hex[:8]}"})
    [e] = events(api, object_id=svc["id"])
    for path in ("/admin/api/v1/audit_events", f"/admin/api/v1/audit_events/{e['id']}"):
        for method in ("POST", "PUT", "PATCH", "DELETE"):
            conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=30)
            conn.request(method, path, body=b"{}", headers={"Authorization": f"Bearer {ADMIN_TOKEN}",
                                                          "Content-Type": "application/json"})
            r = conn.getresponse()
            status, body = r.status, json.loads(r.read() or b"{}")
            # Tollgate answers a known path with another method 400 `method_not_allowed`.
            code = body.get("error", {}).get("code")
            assert status == 404 or (status == 400 and code == "method_not_allowed"), (method, path, status, body)
    assert events(api, object_id=svc["id"]) == [e]


def test_filters_and_pagination(server):
    api = Api(server.base, ADMIN_TOKEN)
    token_id, writer = write_token(api)
    made = [writer.ok("POST", "/services", {"name": f"Page {i} {token_id}"}) for i in range(5)]
    writer.ok("PATCH", f"/services/{made[0]['id']}", {"name": f"Renamed {token_id}"})
    page = api.ok("GET", f"/audit_events?actor={token_id}&limit=2")
    assert len(page["data"]) == 2 and page["has_more"] and page["object"] == "list"
    rest = api.ok("GET", f"/audit_events?actor={token_id}&limit=100&starting_after={page['next_cursor']}")
    assert not rest["has_more"] and len(rest["data"]) == 4
    ids = [e["id"] for e in page["data"] + rest["data"]]
    assert ids == sorted(ids) and len(set(ids)) == 6
    assert [e["object_id"] for e in events(api, actor=token_id, action="service.created")] == [s["id"] for s in made]
    assert len(events(api, actor=token_id, object_type="service", object_id=made[0]["id"])) == 2
    assert events(api, actor=token_id, object_type="plan") == []
    first = page["data"][0]["created_at"]
    assert len(events(api, actor=token_id, since=first)) == 6
    assert events(api, actor=token_id, until=first) == []
    st, body, _ = api.get("/audit_events?limit=0")
    assert st == 400 and body["error"]["code"] == "invalid_limit"
    st, _, _ = api.get("/audit_events?colour=red")
    assert st == 400


def test_concurrent_writes_each_record_exactly_one_event(server):
    api = Api(server.base, ADMIN_TOKEN)
    token_id, writer = write_token(api)
    made, errors = [], []

    def create(i):
        try:
            made.append(writer.ok("POST", "/services", {"name": f"Race {i} {token_id}"})["id"])
        except AssertionError as e:  # pragma: no cover - reported below
            errors.append(e)

    threads = [threading.Thread(target=create, args=(i,)) for i in range(12)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors and len(made) == 12
    recorded = [e["object_id"] for e in events(api, actor=token_id)]
    assert sorted(recorded) == sorted(made)


def test_concurrent_revokes_and_threshold_writes_record_one_event_each(server):
    """Two requests at once on PostgreSQL too: the revoke that loses the row lock finds nothing
    (404, no event), and of concurrent threshold writes each records the other's result as its
    before image (the owner's row is locked before the before image is read)."""
    api = Api(server.base, ADMIN_TOKEN)
    p = plan(api)
    tok = api.ok("POST", "/gateway_tokens", {"name": "raced", "service_ids": [p["service_id"]]})
    results = []

    def revoke():
        results.append(api.delete(f"/gateway_tokens/{tok['id']}")[0])

    threads = [threading.Thread(target=revoke) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(results) == [200] + [404] * 5, results
    assert len(events(api, object_id=tok["id"], action="gateway_token.revoked")) == 1

    sets = [[10 + i] for i in range(6)]

    def put(thresholds):
        st, body, _ = api.call("PUT", f"/admin/api/v1/plans/{p['id']}/alert_thresholds", {"thresholds": thresholds})
        assert st == 200, body

    threads = [threading.Thread(target=put, args=(s,)) for s in sets]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    recorded = events(api, object_id=p["id"], action="plan_alert_thresholds.updated")
    assert len(recorded) == 6
    # A chain: each write's before is the previous write's after, starting from the defaults.
    chain = [e["changes"]["thresholds"] for e in recorded]
    assert chain[0]["before"] == [50, 80, 90, 100], chain
    for prev, cur in zip(chain, chain[1:]):
        assert cur["before"] == prev["after"], chain
    assert sorted(c["after"] for c in chain) == sorted(sets)
