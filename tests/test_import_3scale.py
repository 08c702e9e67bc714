"""Issue 22 item 2 through real processes: `tollgate import 3scale` reads a 3scale tenant from the
contract server (support/threescale_contract.py: porta's JSON, paging, a 403 for a bad token, 429s
with Retry-After, a 503) into a real `tollgate serve`'s database (SQLite and PostgreSQL); a real
Envoy in control-plane mode then gives each imported user_key and app_id/app_key pair the decision
the 3scale plan implies (limits, a method limited to 0, 403 for suspended and pending
applications); a second run changes nothing; a change in 3scale reaches the gateway with the next
run; `--dry-run` writes nothing; what cannot be carried is named in the report.

The 20,000-application tenant of the issue is `cargo xtask bench-import` (tests/bench/
bench_import_3scale.py: it takes longer than a suite test should); here a tenant of several pages
(1,200 applications) is imported and imported again."""

import os
import subprocess
import time

import pytest

from conftest import ADMIN_TOKEN, call
from support.control_plane import Api, Database, Server, binary
from support.envoy import Envoy, bootstrap, free_port, static_cluster, tollgate_filter
from support.threescale_contract import Server as ThreeScale, Tenant, generate

TOKEN = "3scale-token-0123456789"
USER_KEY = "0f1e2d3c4b5a69788796a5b4c3d2e1f0"
SUSPENDED_KEY = "1a2b3c4d5e6f708192a3b4c5d6e7f809"
PENDING_KEY = "pending-user-key-0123456789abcd"
SHORT_KEY = "abc12"
APP_ID = "3a7f21c9"
APP_KEY = "a9b8c7d6e5f4a3b2c1d0e9f8a7b6c5d4"
SECOND_APP_KEY = "second-app-key-0123456789abcdef"
SUSPENDED_APP_ID = "5e5e5e5e"
SUSPENDED_APP_KEY = "suspended-app-key-0123456789abcd"
#: Tables a run that changes nothing must leave as they were: all but the server's own bookkeeping
#: and what gateways write while they run (usage).
VOLATILE = ("idempotency_keys", "usage_reports", "usage_counters", "usage_instance_minutes",
            "usage_instance_hours", "usage_alerts")


def small_tenant():
    """Two services, one per key style: methods, rules with `{placeholders}`, `$` and a query
    part, plans with a method limit and a method not allowed (limit 0), fees and prices; live,
    suspended and pending applications; what 3scale has and Tollgate does not (a CORS policy, a
    backend API, an OpenID Connect service, a key too short to carry)."""
    t = Tenant()
    weather, hits = t.service("Weather", "1", policies=("cors",))
    search = t.metric(weather, "search", parent=hits)
    admin = t.metric(weather, "admin", parent=hits)
    reports = t.metric(weather, "reports", parent=hits)
    t.rule(weather, hits, "GET", "/")
    t.rule(weather, search, "GET", "/search/{q}$")
    t.rule(weather, reports, "GET", "/reports?format={f}&year=2024")
    t.rule(weather, admin, "DELETE", "/admin", last=True)
    t.backend_usages[weather].append({"id": t.next_id(), "path": "/v2", "service_id": weather, "backend_id": t.next_id()})
    basic = t.plan(weather, "Basic", setup_fee=9.99, cost_per_month=19.0, trial_days=7)
    t.limit(basic, hits, "minute", 20)
    t.limit(basic, search, "minute", 2)
    t.limit(basic, admin, "eternity", 0)
    t.price(basic, hits, "0.0100", 1, 1000)
    t.price(basic, hits, "0.0050", 1001)
    maps, mhits = t.service("Maps", "2")
    t.rule(maps, mhits, "GET", "/")
    pairs = t.plan(maps, "Pairs", cost_per_month=5.0)
    t.limit(pairs, mhits, "minute", 3)
    sso, shits = t.service("Single sign-on", "oidc")
    t.plan(sso, "SSO plan")
    acme = t.account("Acme", "dev@acme.example", vat_rate="19.0")
    solo = t.account("Solo", "solo@example.com", country="Germany")
    t.application(acme, basic, "live", user_key=USER_KEY)
    t.application(acme, basic, "suspended", state="suspended", user_key=SUSPENDED_KEY)
    t.application(solo, basic, "pending", state="pending", user_key=PENDING_KEY)
    t.application(solo, basic, "short", user_key=SHORT_KEY)
    t.application(solo, pairs, "pair", app_id=APP_ID, app_keys=[APP_KEY, SECOND_APP_KEY])
    t.application(acme, pairs, "suspended pair", state="suspended", app_id=SUSPENDED_APP_ID,
                  app_keys=[SUSPENDED_APP_KEY])
    return t


def run_import(server, contract, *args, token=TOKEN):
    env = dict(server.env, TOLLGATE_3SCALE_ACCESS_TOKEN=token)
    return subprocess.run([binary(), "import", "3scale", "--admin-url", contract.url, *args], env=env,
                          capture_output=True, text=True, timeout=120)


def twin(db, kind, threescale_id):
    rows = db.query(f"SELECT tollgate_id FROM threescale_links WHERE kind = '{kind}' AND threescale_id = '{threescale_id}'")
    assert len(rows) == 1, (kind, threescale_id, rows)
    return rows[0]


def envoy_for(server, sid, shell, upstream):
    api = Api(server.base, ADMIN_TOKEN)
    gw = api.ok("POST", "/gateway_tokens", {"name": f"edge-{sid}", "service_ids": [sid]})
    config = {"service_id": sid,
              # 3scale's own parameter names, so clients change nothing but the host.
              "credentials": {"query": "user_key"},
              "control_plane": {"cluster": "tollgate_control_plane", "authority": "tollgate", "token": gw["token"],
                                "poll_interval_ms": 200, "flush_interval_ms": 500, "timeout_ms": 2000}}
    envoy = Envoy(bootstrap(free_port(), free_port(), upstream.port, [tollgate_filter(config, shell)],
                            [static_cluster("tollgate_control_plane", server.port)]), concurrency=1, shell=shell).start()
    envoy.wait_snapshot()
    return envoy


def decide(envoy, path, method="GET"):
    r = call(envoy.port, path, method=method)
    code = r.json().get("code") if r.header("content-type") == "application/problem+json" else None
    return r.status, code


def wait_decision(envoy, path, want, timeout_s=15):
    """The decision once the gateway's snapshot has caught up with an import (polled every 200 ms)."""
    deadline = time.monotonic() + timeout_s
    while True:
        got = decide(envoy, path)
        if got == want or time.monotonic() > deadline:
            return got
        time.sleep(0.2)


# Both databases and both shells, each once: the import does not depend on the shell, and the
# shells' decisions are the same (test_envoy_filter.py runs every decision through both).
@pytest.mark.parametrize("backend,shell", [("sqlite", "native"), ("postgres", "wasm")])
def test_imported_keys_get_the_decisions_their_3scale_plans_imply(backend, shell, upstream):
    tenant = small_tenant()
    contract = ThreeScale(tenant, token=TOKEN).start()
    db = Database(backend)
    server = Server(db, ADMIN_TOKEN).start()
    envoys = []
    try:
        # A dry run prints what it would do and writes nothing.
        empty = db.row_counts(exclude=VOLATILE)
        r = run_import(server, contract, "--dry-run")
        assert r.returncode == 0, r.stderr
        assert "dry run:" in r.stderr and "nothing was written" in r.stderr, r.stderr
        lines = r.stdout.splitlines()
        assert any(line.startswith('would create service') and '"Weather"' in line for line in lines), r.stdout
        assert sum(line.startswith("would create application") for line in lines) == 6, r.stdout
        assert db.row_counts(exclude=VOLATILE) == empty

        r = run_import(server, contract)
        assert r.returncode == 0, r.stderr
        assert "imported:" in r.stderr and "6 applications created" in r.stderr, r.stderr
        # Keys arrive in plaintext from 3scale: only their digests are kept, and none is printed.
        for secret in (USER_KEY, APP_KEY, SUSPENDED_KEY, PENDING_KEY, TOKEN):
            assert secret not in r.stdout + r.stderr
            assert secret not in db.raw_dump()
        # The report names what was not carried, with the reason.
        report = r.stdout
        assert 'policy "cors"' in report and "no APIcast policies" in report, report
        assert "backend usage" in report and "no backend APIs" in report
        assert '"oidc"' in report and "no OAuth flow" in report
        assert "--accept-short-keys" in report and "5 characters" in report
        assert '"Germany" is not an ISO 3166-1 alpha-2 code' in report
        assert 'state "pending": imported suspended' in report
        # One audit event for the run, by the CLI, with its counts.
        events = db.query("SELECT actor_type, action, changes FROM audit_events WHERE object_type = 'threescale_import'")
        assert len(events) == 1 and events[0].startswith("cli|threescale_import.applied|"), events
        assert '"applications_created":{"before":null,"after":6}' in events[0].replace(" ", "")
        # Money as decimals, the trial carried, the method's limit 0.
        api = Api(server.base, ADMIN_TOKEN)
        plan = api.ok("GET", f"/plans/{twin(db, 'plan', tenant.plans[tenant.services[0]['id']][0]['id'])}")
        assert (plan["setup_fee"], plan["fixed_fee"], plan["trial_days"]) == ("9.99", "19.00", 7)
        assert {(p["from"], p["to"], p["unit_price"]) for p in plan["pricing_rules"]} == {(1, 1000, "0.01"), (1001, None, "0.005")}
        assert {(l["metric"], l["period"], l["value"]) for l in plan["limits"]} == {
            ("hits", "minute", 20), ("search", "minute", 2), ("admin", "eternity", 0)}

        weather = twin(db, "service", tenant.services[0]["id"])
        maps = twin(db, "service", tenant.services[1]["id"])
        w = envoy_for(server, weather, shell, upstream)
        envoys.append(w)
        m = envoy_for(server, maps, shell, upstream)
        envoys.append(m)
        # Minute limits are in play: not in a minute's last seconds, so no window turns
        # mid-sequence (the calls below take well under a second).
        if time.time() % 60 > 50:
            time.sleep(61 - time.time() % 60)
        assert decide(w, f"/?user_key={USER_KEY}") == (200, None)
        assert [decide(w, f"/search/rain?user_key={USER_KEY}") for _ in range(3)] == [
            (200, None), (200, None), (429, "limit_exceeded")], "search: 2 a minute"
        assert decide(w, f"/reports?format=csv&year=2024&user_key={USER_KEY}") == (200, None)
        assert decide(w, f"/admin?user_key={USER_KEY}", method="DELETE") == (429, "limit_exceeded"), "limit 0: not allowed"
        assert decide(w, f"/elsewhere/x?user_key={USER_KEY}", method="POST") == (404, "no_mapping_rule")
        assert decide(w, f"/?user_key={SUSPENDED_KEY}") == (403, "application_suspended")
        assert decide(w, f"/?user_key={PENDING_KEY}") == (403, "application_suspended")
        assert decide(w, f"/?user_key={SHORT_KEY}") == (403, "invalid_credentials"), "not carried"
        assert decide(w, "/") == (401, "missing_credentials")
        assert decide(m, f"/?app_id={APP_ID}&app_key={APP_KEY}") == (200, None)
        assert decide(m, f"/?app_id={APP_ID}&app_key={SECOND_APP_KEY}") == (200, None)
        assert decide(m, f"/?app_id={APP_ID}&app_key={APP_KEY}") == (200, None)
        assert decide(m, f"/?app_id={APP_ID}&app_key={SECOND_APP_KEY}") == (429, "limit_exceeded"), "3 a minute"
        assert decide(m, f"/?app_id={APP_ID}&app_key=not-this-app-key-0123456789") == (403, "invalid_credentials")
        assert decide(m, f"/?app_id={SUSPENDED_APP_ID}&app_key={SUSPENDED_APP_KEY}") == (403, "application_suspended")
        assert decide(m, f"/?user_key={APP_KEY}") == (403, "invalid_credentials"), "an app key alone opens nothing"

        # A second run changes nothing (what the gateways meter meanwhile aside).
        before = db.row_counts(exclude=VOLATILE)
        revision = db.query("SELECT * FROM catalog_revision")
        r = run_import(server, contract)
        assert r.returncode == 0, r.stderr
        assert "up to date: no change" in r.stderr, r.stderr
        assert not [line for line in r.stdout.splitlines() if line.split(" ")[0] in ("create", "update", "add", "revoke")]
        assert db.row_counts(exclude=VOLATILE) == before
        assert db.query("SELECT * FROM catalog_revision") == revision, "gateways are not sent a new snapshot"

        # A change in 3scale: the live application is suspended, the pair's second app key
        # removed, the suspended one resumed with a regenerated key.
        live = next(a for a in tenant.applications if a.get("user_key") == USER_KEY)
        live["state"] = "suspended"
        pair = next(a for a in tenant.applications if a.get("application_id") == APP_ID)
        tenant.app_keys[pair["id"]] = [APP_KEY]
        resumed = next(a for a in tenant.applications if a.get("user_key") == SUSPENDED_KEY)
        resumed["state"] = "live"
        resumed["user_key"] = "regenerated-user-key-0123456789ab"
        r = run_import(server, contract)
        assert r.returncode == 0, r.stderr
        assert "2 applications updated" in r.stderr and "1 keys added" in r.stderr and "1 keys revoked" in r.stderr, r.stderr
        assert "1 app keys removed" in r.stderr, r.stderr
        # The running gateways get the change with their next snapshot.
        assert wait_decision(w, f"/?user_key={USER_KEY}", (403, "application_suspended")) == (403, "application_suspended")
        assert decide(w, f"/?user_key={SUSPENDED_KEY}") == (403, "invalid_credentials"), "revoked, as in 3scale"
        assert decide(w, "/?user_key=regenerated-user-key-0123456789ab") == (200, None)
        gone = f"/?app_id={APP_ID}&app_key={SECOND_APP_KEY}"
        assert wait_decision(m, gone, (403, "invalid_credentials")) == (403, "invalid_credentials")
        # Only JSON was asked for, and the token never travelled in a URL.
        assert set(contract.stats["by_format"]) == {"json"}, contract.stats["by_format"]
        assert contract.stats["token_in_url"] == 0
    finally:
        for e in envoys:
            e.stop()
        contract.stop()
        server.stop()
        db.drop()


def test_throttled_and_failing_3scale_is_retried_and_a_bad_token_writes_nothing():
    db = Database("sqlite")
    server = Server(db, ADMIN_TOKEN)
    # Every 6th request is 429 (Retry-After: 1 s), and the application list fails once with 503.
    contract = ThreeScale(generate(services=1, applications=6), token=TOKEN, rate_limit_every=6, retry_after=1,
                          fail_once=["/admin/api/applications.json"]).start()
    try:
        assert server.cli("migrate").returncode == 0
        empty = db.row_counts()
        r = run_import(server, contract, token="wrong-token-0123456789")
        assert r.returncode != 0 and "refused the access token" in r.stderr and "nothing was written" in r.stderr, r.stderr
        assert "wrong-token" not in r.stderr
        assert db.row_counts() == empty
        assert contract.stats["by_status"].get(403, 0) >= 1
        before = dict(contract.stats["by_status"])
        start = time.monotonic()
        # One request at a time, so each Retry-After is waited in turn.
        r = run_import(server, contract, "--concurrency", "1")
        took = time.monotonic() - start
        assert r.returncode == 0, r.stderr
        assert "6 applications created" in r.stderr, r.stderr
        throttled = contract.stats["by_status"].get(429, 0) - before.get(429, 0)
        assert throttled >= 3 and contract.stats["by_status"].get(503) == 1, contract.stats["by_status"]
        assert f"{throttled + 1} retried" in r.stderr, r.stderr
        # Retry-After was honoured (not a timing goal: a lower bound the importer must wait).
        assert took >= throttled * 1.0, (took, throttled)
        assert len(db.query("SELECT id FROM applications")) == 6
    finally:
        contract.stop()
        db.drop()


@pytest.mark.parametrize("backend", ["sqlite", "postgres"])
def test_a_tenant_of_many_pages_imports_whole_and_again_changes_nothing(backend):
    db = Database(backend)
    server = Server(db, ADMIN_TOKEN)
    tenant = generate(services=10, applications=1200)
    contract = ThreeScale(tenant, token=TOKEN).start()
    try:
        r = run_import(server, contract, "--concurrency", "8")
        assert r.returncode == 0, r.stderr
        assert "1200 applications created" in r.stderr and "600 accounts created" in r.stderr, r.stderr
        # Three pages of applications and two of accounts were read, each once.
        paths = contract.stats["paths"]
        assert paths.count("/admin/api/applications.json") == 3 and paths.count("/admin/api/accounts.json") == 2
        keyed = sum(1 for a in tenant.applications if a.get("user_key"))
        app_keys = sum(len(v) for v in tenant.app_keys.values())
        assert len(db.query("SELECT id FROM application_keys")) == keyed
        assert len(db.query("SELECT id FROM application_app_keys")) == app_keys
        suspended = sum(1 for a in tenant.applications if a["state"] != "live")
        assert len(db.query("SELECT id FROM applications WHERE state = 'suspended'")) == suspended
        counts = db.row_counts(exclude=VOLATILE)
        r = run_import(server, contract)
        assert r.returncode == 0, r.stderr
        assert "up to date: no change" in r.stderr, r.stderr
        assert db.row_counts(exclude=VOLATILE) == counts
    finally:
        contract.stop()
        db.drop()
