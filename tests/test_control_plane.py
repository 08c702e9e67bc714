"""The control plane's public contract, against a real `tollgate serve` process, on SQLite and on
PostgreSQL (the same tests, parametrized by backend)."""

import json
import re
from pathlib import Path
from concurrent.futures import ThreadPoolExecutor

import pytest

from conftest import ADMIN_TOKEN
from support.control_plane import Api

@pytest.fixture
def api(server):
    return Api(server.base, ADMIN_TOKEN)


@pytest.fixture
def catalog(api):
    """A service with a method, a plan, an account: the usual starting point."""
    svc = api.ok("POST", "/services", {"name": "Weather API"})
    api.ok("POST", f"/services/{svc['id']}/metrics", {"name": "forecast", "unit": "call", "parent": "hits"})
    plan = api.ok("POST", "/plans", {
        "service_id": svc["id"], "name": "Basic", "setup_fee": "5", "fixed_fee": "10.00", "trial_days": 14,
        "state": "published",
        "limits": [{"metric": "hits", "period": "minute", "value": 100},
                   {"metric": "forecast", "period": "day", "value": 1000}],
        "pricing_rules": [{"metric": "hits", "from": 1, "to": 1000, "unit_price": "0.0001"},
                          {"metric": "hits", "from": 1001, "to": None, "unit_price": "0.00005"}]})
    account = api.ok("POST", "/accounts", {"name": "Acme", "email": "dev@acme.example", "vat_rate": "19",
                                           "billing_address": {"line1": "1 Main St", "city": "Berlin", "country": "DE"}})
    return {"service": svc, "plan": plan, "account": account}


def assert_error(resp, status, code=None, param=None):
    st, body, _ = resp
    assert st == status, (st, body)
    err = body["error"]
    assert set(err) == {"type", "code", "message", "param"}, err
    assert err["message"]
    if code:
        assert err["code"] == code, err
    if param:
        assert err["param"] == param, err
    return err


def count(api, path):
    st, body, _ = api.get(path + ("&" if "?" in path else "?") + "limit=100")
    assert st == 200
    return len(body["data"])


# ---- health, docs, auth ----

def test_healthz_and_openapi_document_every_route(server, api):
    expected = {"sqlite": "Sqlite", "postgres": "Postgres"}[server.db.backend]
    assert f"backend={expected}" in server.log(), server.log()
    st, body, _ = api.call("GET", "/healthz", token=None)
    assert (st, body) == (200, {"status": "ok"})
    st, doc, _ = api.call("GET", "/openapi.json", token=None)
    assert st == 200 and doc["openapi"].startswith("3.")
    operations = [(m, p) for p, ops in doc["paths"].items() for m in ops]
    assert len(operations) >= 35
    for method, path in operations:
        concrete = re.sub(r"\{[^}]+\}", "does-not-exist", path)
        st, body, _ = api.call(method.upper(), concrete, body={} if method in ("post", "patch") else None)
        # Every documented route exists: whatever it answers, it is not "no such route" nor 405.
        assert not (body and isinstance(body, dict) and (body.get("error") or {}).get("code") in
                    ("route_not_found", "method_not_allowed")), (method, path, st, body)
    assert_error(api.call("GET", "/admin/api/v1/nope"), 404, "route_not_found")
    assert_error(api.call("PUT", "/admin/api/v1/services"), 400, "method_not_allowed")


def test_authentication_and_scopes(server, api):
    assert_error(api.get("/services", token=None), 401, "unauthorized")
    assert_error(api.get("/services", token="wrong"), 401, "unauthorized")
    _, _, headers = api.get("/services", token=None)
    assert headers["www-authenticate"].startswith("Bearer")
    reader = api.ok("POST", "/tokens", {"name": "dashboards", "scope": "read"})
    assert reader["token"].startswith("tga_") and reader["scope"] == "read"
    ro = Api(server.base, reader["token"])
    assert ro.get("/services")[0] == 200
    assert_error(ro.post("/services", {"name": "x"}), 403, "insufficient_scope")
    assert count(api, "/services") == 0, "the forbidden write wrote nothing"
    # Tokens are stored hashed; the plaintext is in no table.
    assert reader["token"] not in server.db.raw_dump()
    tokens = api.ok("GET", "/tokens")["data"]
    assert all("token" not in t for t in tokens)
    api.ok("DELETE", f"/tokens/{reader['id']}")
    assert_error(ro.get("/services"), 401)


def test_cli_token_bootstrap(server):
    r = server.cli("token", "create", "--name", "ops", "--scope", "write")
    assert r.returncode == 0, r.stderr
    token = r.stdout.strip()
    assert token.startswith("tga_")
    assert Api(server.base, token).get("/services")[0] == 200


# ---- services, metrics, mapping rules ----

def test_services_crud_and_unique_names(api):
    svc = api.ok("POST", "/services", {"name": "Maps"})
    assert svc["object"] == "service" and svc["id"].startswith("svc_")
    assert api.ok("GET", f"/services/{svc['id']}")["name"] == "Maps"
    metrics = api.ok("GET", f"/services/{svc['id']}/metrics")["data"]
    assert [m["name"] for m in metrics] == ["hits"], "every service starts with hits"
    assert_error(api.post("/services", {"name": "Maps"}), 409, "name_taken", "name")
    assert_error(api.post("/services", {"name": ""}), 422, "invalid_name", "name")
    assert api.ok("PATCH", f"/services/{svc['id']}", {"name": "Maps v2"})["name"] == "Maps v2"
    assert api.ok("DELETE", f"/services/{svc['id']}")["deleted"] is True
    assert_error(api.get(f"/services/{svc['id']}"), 404, "resource_missing")


def test_metrics_and_mapping_rules(api, catalog):
    sid = catalog["service"]["id"]
    assert_error(api.post(f"/services/{sid}/metrics", {"name": "x", "parent": "nope"}), 422, "unknown_metric", "parent")
    assert_error(api.post(f"/services/{sid}/metrics", {"name": "forecast"}), 409, "metric_exists")
    assert_error(api.post(f"/services/{sid}/metrics", {"name": "bad name"}), 422, "invalid_metric_name")
    assert_error(api.post(f"/services/{sid}/metrics", {"name": "sub", "parent": "forecast"}), 422, "invalid_parent")
    rule = api.ok("POST", f"/services/{sid}/mapping_rules",
                  {"method": "get", "pattern": "/v1/forecast/{city}$", "metric": "forecast", "delta": 2})
    assert rule["method"] == "GET" and rule["delta"] == 2 and rule["last"] is False
    assert_error(api.post(f"/services/{sid}/mapping_rules", {"method": "GET", "pattern": "v1", "metric": "hits"}),
                 422, "invalid_pattern", "pattern")
    assert_error(api.post(f"/services/{sid}/mapping_rules", {"method": "GET", "pattern": "/", "metric": "nope"}),
                 422, "unknown_metric", "metric")
    assert count(api, f"/services/{sid}/mapping_rules") == 1
    api.ok("DELETE", f"/services/{sid}/mapping_rules/{rule['id']}")
    assert count(api, f"/services/{sid}/mapping_rules") == 0
    # A metric in use by a plan cannot be deleted; the service with plans cannot either.
    forecast = [m for m in api.ok("GET", f"/services/{sid}/metrics")["data"] if m["name"] == "forecast"][0]
    assert_error(api.delete(f"/services/{sid}/metrics/{forecast['id']}"), 409, "metric_in_use")
    assert_error(api.delete(f"/services/{sid}"), 409, "service_in_use")


# ---- plans ----

def test_plan_money_is_decimal_strings(api, catalog):
    plan = catalog["plan"]
    assert plan["setup_fee"] == "5.00" and plan["fixed_fee"] == "10.00"
    assert plan["trial_days"] == 14 and plan["state"] == "published"
    assert {"metric": "forecast", "period": "day", "value": 1000} in plan["limits"]
    rules = plan["pricing_rules"]
    assert rules[0] == {"metric": "hits", "model": "graduated", "from": 1, "to": 1000, "unit_price": "0.0001"}
    assert rules[1]["to"] is None and rules[1]["unit_price"] == "0.00005"
    assert api.ok("GET", f"/plans/{plan['id']}") == plan


@pytest.mark.parametrize("bad, code, param", [
    ({"fixed_fee": "-1"}, "invalid_amount", "fixed_fee"),
    ({"setup_fee": 5}, "invalid_json", "setup_fee"),
    ({"limits": [{"metric": "nope", "period": "day", "value": 1}]}, "unknown_metric", "limits[0].metric"),
    ({"limits": [{"metric": "hits", "period": "fortnight", "value": 1}]}, "invalid_json", "limits[0].period"),
    ({"pricing_rules": [{"metric": "hits", "from": 1, "to": 10, "unit_price": "-0.5"}]},
     "invalid_amount", "pricing_rules[0].unit_price"),
    ({"pricing_rules": [{"metric": "hits", "from": 1, "to": 10, "unit_price": "1"},
                        {"metric": "hits", "from": 10, "to": None, "unit_price": "1"}]},
     "overlapping_pricing_rules", "pricing_rules[1].from"),
    ({"trial_days": -1}, "invalid_trial_days", "trial_days"),
])
def test_invalid_plans_are_refused_and_nothing_is_written(api, catalog, bad, code, param):
    before = count(api, "/plans")
    body = {"service_id": catalog["service"]["id"], "name": "Bad", **bad}
    st = 400 if code == "invalid_json" else 422
    assert_error(api.post("/plans", body), st, code, param)
    assert count(api, "/plans") == before
    # The same change as a PATCH leaves the plan untouched.
    plan = catalog["plan"]
    assert_error(api.patch(f"/plans/{plan['id']}", bad), st, code, param)
    assert api.ok("GET", f"/plans/{plan['id']}") == plan


def test_plan_update_replaces_limits_and_volume_package_models(api, catalog):
    pid = catalog["plan"]["id"]
    updated = api.ok("PATCH", f"/plans/{pid}", {
        "fixed_fee": "12.5", "limits": [{"metric": "hits", "period": "hour", "value": 5}],
        "pricing_rules": [{"metric": "forecast", "from": 1, "to": 100, "unit_price": "1", "model": "volume"},
                          {"metric": "forecast", "from": 101, "unit_price": "0.5", "model": "volume"},
                          {"metric": "hits", "from": 1, "unit_price": "2.00", "model": "package", "package_size": 1000}]})
    assert updated["fixed_fee"] == "12.50"
    assert updated["limits"] == [{"metric": "hits", "period": "hour", "value": 5}]
    models = {(r["metric"], r["model"]) for r in updated["pricing_rules"]}
    assert models == {("forecast", "volume"), ("hits", "package")}
    assert [r for r in updated["pricing_rules"] if r["model"] == "package"][0]["package_size"] == 1000
    assert_error(api.patch(f"/plans/{pid}", {"pricing_rules": [
        {"metric": "hits", "from": 1, "to": 5, "unit_price": "1", "model": "volume"},
        {"metric": "hits", "from": 6, "unit_price": "1"}]}), 422, "mixed_pricing_models")


# ---- accounts ----

def test_accounts(api, catalog):
    acct = catalog["account"]
    assert acct["vat_rate"] == "19" and acct["billing_address"]["country"] == "DE"
    assert_error(api.post("/accounts", {"name": "X", "email": "not-an-email"}), 422, "invalid_email", "email")
    assert_error(api.post("/accounts", {"name": "X", "email": "a@b.example", "vat_rate": "101"}), 422, "invalid_vat_rate")
    assert_error(api.post("/accounts", {"name": "X", "email": "a@b.example", "billing_address": {"country": "Germany"}}),
                 422, "invalid_country", "billing_address.country")
    assert api.ok("PATCH", f"/accounts/{acct['id']}", {"vat_rate": "7.7"})["vat_rate"] == "7.7"


# ---- applications and keys ----

def new_app(api, catalog, **kw):
    return api.ok("POST", "/applications", {"account_id": catalog["account"]["id"],
                                            "plan_id": catalog["plan"]["id"], "name": "Mobile", **kw})


def test_application_key_is_shown_once_and_stored_hashed(server, api, catalog):
    app = new_app(api, catalog)
    key = app["key"]
    assert key.startswith("tg_") and len(key) >= 3 + 22, "at least 128 bits of randomness"
    assert app["state"] == "live" and len(app["keys"]) == 1
    assert app["keys"][0]["prefix"] == key[:7]
    fetched = api.ok("GET", f"/applications/{app['id']}")
    assert "key" not in fetched and key not in json.dumps(fetched)
    assert key not in server.db.raw_dump()
    import hashlib
    digest = hashlib.sha256(key.encode()).hexdigest()
    assert server.db.query(f"SELECT key_sha256 FROM application_keys WHERE application_id = '{app['id']}'") == [digest]


def test_unknown_plan_or_account_is_refused_and_nothing_is_written(api, catalog):
    assert_error(api.post("/applications", {"account_id": catalog["account"]["id"], "plan_id": "plan_nope", "name": "A"}),
                 422, "unknown_plan", "plan_id")
    assert_error(api.post("/applications", {"account_id": "acct_nope", "plan_id": catalog["plan"]["id"], "name": "A"}),
                 422, "unknown_account", "account_id")
    assert count(api, "/applications") == 0


def test_at_most_five_keys_revoke_and_rotate(api, catalog):
    app = new_app(api, catalog)
    keys = [api.ok("POST", f"/applications/{app['id']}/keys") for _ in range(4)]
    assert all(k["key"].startswith("tg_") for k in keys)
    assert_error(api.post(f"/applications/{app['id']}/keys"), 409, "key_limit_reached")
    assert len(api.ok("GET", f"/applications/{app['id']}")["keys"]) == 5
    # Revoke one: room for one more.
    api.ok("DELETE", f"/applications/{app['id']}/keys/{keys[0]['id']}")
    api.ok("POST", f"/applications/{app['id']}/keys")
    # Rotating keeps the old key alive for the grace period, outside the limit.
    rotated = api.ok("POST", f"/applications/{app['id']}/keys/{keys[1]['id']}/rotate", {"grace_seconds": 3600})
    assert rotated["replaces"]["id"] == keys[1]["id"]
    listed = {k["id"]: k for k in api.ok("GET", f"/applications/{app['id']}/keys")["data"]}
    assert listed[keys[1]["id"]]["expires_at"] is not None and listed[rotated["id"]]["expires_at"] is None
    assert len(listed) == 6
    # Immediate expiry removes it from the live keys.
    api.ok("POST", f"/applications/{app['id']}/keys/{keys[2]['id']}/rotate", {"grace_seconds": 0})
    assert keys[2]["id"] not in {k["id"] for k in api.ok("GET", f"/applications/{app['id']}/keys")["data"]}
    assert_error(api.post(f"/applications/{app['id']}/keys/{keys[1]['id']}/rotate"), 404)


def test_concurrent_key_creation_never_exceeds_five(api, catalog):
    app = new_app(api, catalog)
    with ThreadPoolExecutor(max_workers=10) as pool:
        statuses = list(pool.map(lambda _: api.post(f"/applications/{app['id']}/keys")[0], range(10)))
    assert statuses.count(201) == 4 and statuses.count(409) == 6, statuses
    assert len(api.ok("GET", f"/applications/{app['id']}")["keys"]) == 5


def test_suspend_resume_and_customize(api, catalog):
    app = new_app(api, catalog)
    s = api.ok("POST", f"/applications/{app['id']}/suspend", {"reason": "non_payment"}, status=200)
    assert (s["state"], s["state_reason"]) == ("suspended", "non_payment")
    r = api.ok("POST", f"/applications/{app['id']}/resume", status=200)
    assert (r["state"], r["state_reason"]) == ("live", None)
    custom = api.ok("POST", f"/applications/{app['id']}/customize_plan")
    assert custom["custom"] is True and custom["parent_plan_id"] == catalog["plan"]["id"]
    assert custom["limits"] == catalog["plan"]["limits"] and custom["pricing_rules"] == catalog["plan"]["pricing_rules"]
    assert api.ok("GET", f"/applications/{app['id']}")["plan_id"] == custom["id"]
    assert_error(api.delete(f"/plans/{custom['id']}"), 409, "plan_in_use")
    assert_error(api.delete(f"/plans/{catalog['plan']['id']}"), 409, "plan_in_use")
    assert_error(api.delete(f"/accounts/{catalog['account']['id']}"), 409, "account_in_use")


def test_concurrent_customize_makes_one_copy(api, catalog):
    """Ten customize_plan calls at once: one copy is made and the application is on it; the rest
    are refused as already customized (the plan is re-read inside the locked write)."""
    app = new_app(api, catalog)
    with ThreadPoolExecutor(max_workers=10) as pool:
        answers = list(pool.map(lambda _: api.post(f"/applications/{app['id']}/customize_plan"), range(10)))
    statuses = [a[0] for a in answers]
    assert statuses.count(201) == 1, statuses
    assert all(a[0] == 201 or (a[0], a[1]["error"]["code"]) == (409, "already_customized")
               for a in answers), answers
    copy = next(a[1] for a in answers if a[0] == 201)
    assert api.ok("GET", f"/applications/{app['id']}")["plan_id"] == copy["id"]
    plans = []
    after = ""
    while True:
        page = api.ok("GET", f"/plans?limit=100{'&starting_after=' + after if after else ''}")
        plans += page["data"]
        if not page["has_more"]:
            break
        after = page["next_cursor"]
    copies = [p for p in plans if p.get("parent_plan_id") == catalog["plan"]["id"]]
    assert [p["id"] for p in copies] == [copy["id"]], copies


# ---- idempotency, pagination ----

def test_idempotency_key_replays_and_never_duplicates(server, api, catalog):
    body = {"account_id": catalog["account"]["id"], "plan_id": catalog["plan"]["id"], "name": "Once"}
    st1, first, h1 = api.post("/applications", body, headers={"Idempotency-Key": "create-once-1"})
    st2, again, h2 = api.post("/applications", body, headers={"Idempotency-Key": "create-once-1"})
    assert st1 == st2 == 201
    assert first == again, "the same answer, key included"
    assert h2.get("idempotent-replayed") == "true" and "idempotent-replayed" not in h1
    assert count(api, "/applications") == 1
    # The stored answer holds a key: it is not readable from the database.
    assert first["key"] not in server.db.raw_dump()
    assert_error(api.post("/applications", {**body, "name": "Other"}, headers={"Idempotency-Key": "create-once-1"}),
                 422, "idempotency_key_reused")
    # Concurrent retries with one key create one object.
    with ThreadPoolExecutor(max_workers=8) as pool:
        results = list(pool.map(lambda _: api.post("/services", {"name": "Race"}, headers={"Idempotency-Key": "race"}),
                                range(8)))
    created = {b["id"] for st, b, _ in results if st == 201}
    assert len(created) == 1, results
    assert all(st in (201, 409) for st, _, _ in results)
    assert len([s for s in api.ok("GET", "/services?limit=100")["data"] if s["name"] == "Race"]) == 1
    # Keys are scoped to the token that sent them.
    other = api.ok("POST", "/tokens", {"name": "other", "scope": "write"})
    st, b, _ = Api(server.base, other["token"]).post("/services", {"name": "Race"}, headers={"Idempotency-Key": "race"})
    assert_error((st, b, None), 409, "name_taken")


def test_cursor_pagination_walks_every_item_once(api):
    ids = [api.ok("POST", "/services", {"name": f"svc {i}"})["id"] for i in range(7)]
    seen, cursor, pages = [], None, 0
    while True:
        path = "/services?limit=3" + (f"&starting_after={cursor}" if cursor else "")
        page = api.ok("GET", path)
        seen += [s["id"] for s in page["data"]]
        pages += 1
        if not page["has_more"]:
            assert page["next_cursor"] is None
            break
        cursor = page["next_cursor"]
    assert seen == ids and pages == 3
    assert_error(api.get("/services?limit=0"), 400, "invalid_limit", "limit")
    assert_error(api.get("/services?limit=abc"), 400, "invalid_query")
    assert_error(api.get("/services?colour=red"), 400, "invalid_query")
    assert_error(api.get("/services?limit=101"), 400, "invalid_limit")


def test_malformed_json_is_a_clear_400(api):
    assert_error(api.call("POST", "/admin/api/v1/services", body=b"{not json"), 400, "invalid_json")
    assert_error(api.post("/services", {"name": "x", "color": "red"}), 400, "invalid_json")


# ---- CLI ----

def test_cli_covers_the_admin_api(server, catalog):
    r = server.cli("services", "create", "--name", "CLI service")
    assert r.returncode == 0, r.stderr
    assert re.search(r"^id\s+svc_", r.stdout, re.M) and "CLI service" in r.stdout
    listed = server.cli("services", "list", "--json")
    assert listed.returncode == 0
    names = [s["name"] for s in json.loads(listed.stdout)]
    assert "CLI service" in names and "Weather API" in names
    table = server.cli("services", "list").stdout.splitlines()
    assert table[0].split() == ["ID", "NAME", "CREATED_AT"] and len(table) == 3
    sid = catalog["service"]["id"]
    r = server.cli("plans", "create", "--service", sid, "--name", "Pro", "--fixed-fee", "49.90",
                   "--limit", "hits:day:10000", "--price", "hits:1::0.001", "--json")
    assert r.returncode == 0, r.stderr
    plan = json.loads(r.stdout)
    assert plan["fixed_fee"] == "49.90" and plan["limits"][0]["value"] == 10000
    r = server.cli("applications", "create", "--account", catalog["account"]["id"], "--plan", plan["id"], "--name", "cli app")
    assert r.returncode == 0 and re.search(r"^key\s+tg_", r.stdout, re.M), r.stdout
    # Errors: a message on stderr and a non-zero exit.
    r = server.cli("applications", "create", "--account", catalog["account"]["id"], "--plan", "plan_nope", "--name", "x")
    assert r.returncode != 0 and "unknown_plan" in r.stderr and "plan_id" in r.stderr
    r = server.cli("plans", "create", "--service", sid, "--name", "x", "--limit", "hits-day")
    assert r.returncode != 0 and "METRIC:PERIOD:VALUE" in r.stderr
    r = server.cli("services", "list", token="wrong-token")
    assert r.returncode != 0 and "401" in r.stderr


def test_serve_with_no_database_setting_uses_a_sqlite_file_in_the_working_directory(tmp_path):
    import os
    import subprocess
    import time
    import urllib.request

    from support.control_plane import binary
    from support.envoy import free_port

    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("TOLLGATE_")}
    env["TOLLGATE_LISTEN"] = f"127.0.0.1:{port}"
    proc = subprocess.Popen([binary(), "serve"], cwd=tmp_path, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=1) as r:
                    assert r.status == 200
                    break
            except OSError:
                time.sleep(0.05)
        else:
            raise AssertionError("not ready")
        assert (tmp_path / "tollgate.db").exists()
    finally:
        proc.terminate()
        assert proc.wait(timeout=10) == 0, "SIGTERM is a clean shutdown"


def test_cli_migrate_and_bad_settings(tmp_path):
    import os
    import subprocess

    from support.control_plane import binary

    env = {k: v for k, v in os.environ.items() if not k.startswith("TOLLGATE_")}
    env["TOLLGATE_DATABASE_URL"] = f"sqlite://{tmp_path}/m.db?mode=rwc"
    first = subprocess.run([binary(), "migrate"], env=env, capture_output=True, text=True, timeout=60)
    migrations = len(list((Path(__file__).resolve().parents[1] / "control-plane" / "migrations").glob("*.sql")))
    assert first.returncode == 0 and f"applied {migrations} migration(s)" in first.stdout, first
    again = subprocess.run([binary(), "migrate"], env=env, capture_output=True, text=True, timeout=60)
    assert again.returncode == 0 and "applied 0 migration(s)" in again.stdout
    bad = subprocess.run([binary(), "migrate"], env=dict(env, TOLLGATE_DATABASE_URL="mysql://x"),
                         capture_output=True, text=True, timeout=60)
    assert bad.returncode != 0 and "unsupported database URL" in bad.stderr
    bad = subprocess.run([binary(), "serve"], env=dict(env, TOLLGATE_LISTEN="nowhere"),
                         capture_output=True, text=True, timeout=60)
    assert bad.returncode != 0 and "TOLLGATE_LISTEN" in bad.stderr
    bad = subprocess.run([binary(), "serve"], env=dict(env, TOLLGATE_ADMIN_TOKEN="short"),
                         capture_output=True, text=True, timeout=60)
    assert bad.returncode != 0 and "at least 32" in bad.stderr
