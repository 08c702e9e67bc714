"""Issue 22 item 3 through real processes: `tollgate export` from a populated SQLite installation,
`tollgate import` into an empty PostgreSQL one, and a real Envoy in front of each (both shells)
gives every key the same decision, status and quota headers alike. A second import into the now
non-empty installation, a truncated file and a file with a broken reference change nothing."""

import json
import os
import tempfile
import time

import pytest

from conftest import ADMIN_TOKEN, call, sha256_hex
from support.control_plane import Api, Database, Server
from support.envoy import Envoy, bootstrap, free_port, static_cluster, tollgate_filter

USER_KEY = "imported-user-key-0123456789abcdef"
DIGEST_KEY = "imported-by-digest-0123456789abcdef"
APP_KEY = "imported-app-key-0123456789abcdef"
#: Headers whose values must match between the two installations (reset times depend on the
#: clock, not on the installation: `X-RateLimit-Reset`, and the `t=` of `RateLimit`, are left out).
COMPARED = ("ratelimit-policy", "x-ratelimit-limit", "x-ratelimit-remaining", "content-type")


def populate(api):
    """A catalog with methods, mapping rules, limits, every pricing model, fees, a customized plan,
    accounts with addresses and VAT, applications live and suspended (by an admin and for
    non-payment), generated, imported, digest-only and rotated keys, app ids and app keys.
    Returns the credentials to try, as (label, path, headers)."""
    st, body, _ = api.call("PUT", "/admin/api/v1/billing/settings",
                           {"currency": "EUR", "mode": "prepaid", "seller": {"name": "Move GmbH"}})
    assert st == 200, body
    svc = api.ok("POST", "/services", {"name": "Weather"})
    sid = svc["id"]
    api.ok("POST", f"/services/{sid}/metrics", {"name": "search", "unit": "call", "parent": "hits"})
    api.ok("POST", f"/services/{sid}/metrics", {"name": "bytes", "unit": "byte"})
    api.ok("POST", f"/services/{sid}/mapping_rules", {"method": "GET", "pattern": "/", "metric": "hits"})
    api.ok("POST", f"/services/{sid}/mapping_rules", {"method": "GET", "pattern": "/search$", "metric": "search"})
    api.ok("POST", f"/services/{sid}/mapping_rules",
           {"method": "POST", "pattern": "/upload/{id}", "metric": "bytes", "delta": 3, "last": True})
    other = api.ok("POST", "/services", {"name": "Maps"})
    api.ok("POST", f"/services/{other['id']}/mapping_rules", {"method": "ANY", "pattern": "/", "metric": "hits"})
    tight = api.ok("POST", "/plans", {
        "service_id": sid, "name": "Tight", "setup_fee": "9.99", "fixed_fee": "19.00", "trial_days": 7,
        "state": "published",
        "limits": [{"metric": "hits", "period": "minute", "value": 4}, {"metric": "search", "period": "day", "value": 2}],
        "pricing_rules": [{"metric": "hits", "from": 1, "to": 100, "unit_price": "0.01"},
                          {"metric": "hits", "from": 101, "to": None, "unit_price": "0.005"},
                          {"metric": "search", "from": 1, "to": None, "unit_price": "0.5", "model": "volume"},
                          {"metric": "bytes", "from": 1, "to": None, "unit_price": "2", "model": "package",
                           "package_size": 1000}]})
    roomy = api.ok("POST", "/plans", {"service_id": sid, "name": "Roomy",
                                      "limits": [{"metric": "hits", "period": "day", "value": 1000}]})
    api.ok("POST", "/plans", {"service_id": other["id"], "name": "Maps basic"})
    acme = api.ok("POST", "/accounts", {"name": "Acme", "email": "dev@acme.example", "vat_rate": "19",
                                        "vat_code": "DE123456789",
                                        "billing_address": {"line1": "1 Main St", "city": "Berlin", "country": "DE"}})
    solo = api.ok("POST", "/accounts", {"name": "Solo", "email": "solo@example.com"})

    def app(account, plan, name, **extra):
        return api.ok("POST", "/applications", {"account_id": account["id"], "plan_id": plan["id"], "name": name,
                                                **extra})

    tries = []
    generated = app(acme, tight, "generated")
    tries += [("generated", "/", {"x-api-key": generated["key"]})] * 6
    tries += [("generated search", "/search", {"x-api-key": generated["key"]})] * 3
    imported = app(acme, roomy, "imported")
    api.ok("POST", f"/applications/{imported['id']}/keys", {"key": USER_KEY})
    tries += [("imported", "/", {"x-api-key": USER_KEY}), ("imported upload", "/upload/7", {"x-api-key": USER_KEY})]
    digest = app(solo, tight, "digest")
    api.ok("POST", f"/applications/{digest['id']}/keys", {"key_sha256": sha256_hex(DIGEST_KEY)})
    tries += [("digest", "/search", {"x-api-key": DIGEST_KEY})] * 3
    pair = app(solo, roomy, "pair", app_id="3a7f21c9")
    api.ok("POST", f"/applications/{pair['id']}/app_keys", {"value": APP_KEY})
    tries += [("pair", f"/?app_id=3a7f21c9&app_key={APP_KEY}", {}),
              ("pair headers", "/", {"app-id": "3a7f21c9", "app-key": APP_KEY}),
              ("pair wrong key", "/?app_id=3a7f21c9&app_key=not-the-app-key-000000", {})]
    rotated = app(acme, roomy, "rotated")
    new = api.ok("POST", f"/applications/{rotated['id']}/keys/{rotated['key_id']}/rotate", {"grace_seconds": 3600})
    tries += [("rotated old", "/", {"x-api-key": rotated["key"]}), ("rotated new", "/", {"x-api-key": new["key"]})]
    custom = app(acme, tight, "custom")
    copy = api.ok("POST", f"/applications/{custom['id']}/customize_plan")
    api.ok("PATCH", f"/plans/{copy['id']}", {"limits": [{"metric": "hits", "period": "minute", "value": 2}]})
    tries += [("custom", "/", {"x-api-key": custom["key"]})] * 3
    suspended = app(acme, roomy, "suspended")
    api.ok("POST", f"/applications/{suspended['id']}/suspend", {}, status=200)
    unpaid = app(solo, roomy, "unpaid")
    api.ok("POST", f"/applications/{unpaid['id']}/suspend", {"reason": "non_payment"}, status=200)
    tries += [("suspended", "/", {"x-api-key": suspended["key"]}), ("unpaid", "/", {"x-api-key": unpaid["key"]}),
              ("unknown", "/", {"x-api-key": "never-issued-key-0123456789"}), ("none", "/", {}),
              ("unmapped", "/nothing", {"x-api-key": USER_KEY, ":method": "DELETE"})]
    return sid, tries


def envoy_for(server, api, sid, shell, upstream):
    gw = api.ok("POST", "/gateway_tokens", {"name": "edge", "service_ids": [sid]})
    config = {"service_id": sid,
              "control_plane": {"cluster": "tollgate_control_plane", "authority": "tollgate", "token": gw["token"],
                                "poll_interval_ms": 200, "flush_interval_ms": 500, "timeout_ms": 2000}}
    envoy = Envoy(bootstrap(free_port(), free_port(), upstream.port, [tollgate_filter(config, shell)],
                            [static_cluster("tollgate_control_plane", server.port)]), concurrency=1,
                  shell=shell).start()
    envoy.wait_snapshot()
    return envoy


def decisions(envoy, upstream, tries):
    # Minute limits are in play: start early in a minute, so a window never turns mid-sequence.
    if time.time() % 60 > 40:
        time.sleep(61 - time.time() % 60)
    out = []
    for label, path, headers in tries:
        headers = dict(headers)
        method = headers.pop(":method", "GET")
        r = call(envoy.port, path, method=method, headers=headers)
        seen = {h: r.header(h) for h in COMPARED}
        policy = r.header("ratelimit")
        # `RateLimit: "hits-minute";r=3;t=17`: the remaining part, not the seconds to reset.
        seen["ratelimit"] = policy.split(";t=")[0] if policy else None
        seen["code"] = r.json().get("code") if r.header("content-type") == "application/problem+json" else None
        seen["application"] = upstream.last()["headers"].get("x-tollgate-application") if r.status == 200 else None
        out.append((label, r.status, seen))
    return out


def cli(server, *args):
    return server.cli(*args)


def test_export_from_sqlite_import_into_postgres_same_decisions(shell, upstream):
    src_db, dst_db = Database("sqlite"), Database("postgres")
    src = Server(src_db, ADMIN_TOKEN).start()
    dst = Server(dst_db, ADMIN_TOKEN)
    envoys = []
    try:
        api = Api(src.base, ADMIN_TOKEN)
        sid, tries = populate(api)
        out = os.path.join(tempfile.mkdtemp(prefix="tollgate-export-"), "export.json")
        r = cli(src, "export", "--out", out)
        assert r.returncode == 0, r.stderr
        assert os.stat(out).st_mode & 0o777 == 0o600, "key digests and personal data: owner only"
        assert not os.path.exists(out.replace(".json", ".partial"))
        doc = json.loads(open(out).read())
        assert doc["format"] == "tollgate.export" and doc["format_version"] == 1
        text = open(out).read()
        for secret in (USER_KEY, APP_KEY, DIGEST_KEY):
            assert secret not in text
        assert {e["what"] for e in doc["excluded"]} >= {"payment_gateway", "gateway_tokens", "admin_tokens"}

        # Into an empty PostgreSQL installation (the CLI migrates it first).
        r = cli(dst, "import", out)
        assert r.returncode == 0, r.stderr + r.stdout
        assert "imported 2 service(s)" in r.stderr, r.stderr
        dst.start()
        dst_api = Api(dst.base, ADMIN_TOKEN)
        assert dst_api.ok("GET", "/billing/settings")["currency"] == "EUR"
        # Exported again, the document is the same (ids kept), but for when it was made.
        again = os.path.join(os.path.dirname(out), "again.json")
        assert cli(dst, "export", "--out", again).returncode == 0
        second = json.loads(open(again).read())
        for d in (doc, second):
            d.pop("exported_at")
        assert second == doc

        src_envoy = envoy_for(src, api, sid, shell, upstream)
        envoys.append(src_envoy)
        dst_envoy = envoy_for(dst, dst_api, sid, shell, upstream)
        envoys.append(dst_envoy)
        before = decisions(src_envoy, upstream, tries)
        after = decisions(dst_envoy, upstream, tries)
        assert after == before
        statuses = {label: status for label, status, _ in before}
        # The decisions are the interesting ones, not all 403s.
        assert statuses["imported"] == 200 and statuses["digest"] in (200, 429) and statuses["pair"] == 200
        assert statuses["suspended"] == 403 and statuses["unpaid"] == 402 and statuses["none"] == 401
        assert statuses["pair wrong key"] == 403 and statuses["rotated old"] == 200
        assert [s for label, s, _ in before if label == "generated"] == [200] * 4 + [429] * 2
        assert [s for label, s, _ in before if label == "custom"] == [200] * 2 + [429]

        # A second import into the now non-empty installation: refused, nothing changed (the
        # gateways stopped first: their usage reports would change the counts).
        for e in envoys:
            e.stop()
        envoys.clear()
        time.sleep(1)  # a report in flight when Envoy stopped still lands
        counts = dst_db.row_counts(exclude=("idempotency_keys",))
        r = cli(dst, "import", out)
        assert r.returncode != 0 and "not empty" in r.stderr, r.stderr
        assert dst_db.row_counts(exclude=("idempotency_keys",)) == counts
    finally:
        for e in envoys:
            e.stop()
        src.stop()
        dst.stop()
        src_db.drop()
        dst_db.drop()


@pytest.mark.parametrize("backend", ["sqlite", "postgres"])
def test_a_truncated_or_inconsistent_file_changes_nothing(backend):
    src_db = Database("sqlite")
    src = Server(src_db, ADMIN_TOKEN).start()
    dst_db = Database(backend)
    dst = Server(dst_db, ADMIN_TOKEN)
    try:
        populate(Api(src.base, ADMIN_TOKEN))
        d = tempfile.mkdtemp(prefix="tollgate-export-")
        good = os.path.join(d, "good.json")
        assert cli(src, "export", "--out", good).returncode == 0
        text = open(good).read()
        assert cli(dst, "migrate").returncode == 0
        empty = dst_db.row_counts()
        bad_files = {"truncated.json": text[: len(text) // 2],
                     "empty.json": "",
                     "not-json.json": "<xml/>"}
        doc = json.loads(text)
        doc["applications"][-1]["plan_id"] = "plan_gone"
        bad_files["dangling.json"] = json.dumps(doc)
        doc = json.loads(text)
        doc["applications"][1]["keys"].append(dict(doc["applications"][0]["keys"][0], id="key_dup"))
        bad_files["shared-key.json"] = json.dumps(doc)
        doc = json.loads(text)
        doc["format_version"] = 99
        bad_files["future.json"] = json.dumps(doc)
        for name, content in bad_files.items():
            path = os.path.join(d, name)
            with open(path, "w") as f:
                f.write(content)
            assert cli(dst, "import", "--check", path).returncode != 0, name
            r = cli(dst, "import", path)
            assert r.returncode != 0, (name, r.stderr)
            assert "nothing was imported" in r.stderr or "cannot" in r.stderr, (name, r.stderr)
            assert dst_db.row_counts() == empty, name
        # The refusals left the installation empty: the good file still imports whole.
        r = cli(dst, "import", "--check", good)
        assert r.returncode == 0 and "valid export" in r.stderr, r.stderr
        assert dst_db.row_counts() == empty
        r = cli(dst, "import", good)
        assert r.returncode == 0, r.stderr
    finally:
        src.stop()
        src_db.drop()
        dst_db.drop()
