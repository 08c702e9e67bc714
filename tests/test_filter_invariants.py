"""Issue 15, the filter's invariants through a real Envoy: a request never changes a count it did
not touch, every spelling of a query meets the rule written for it, no filter-made response echoes
a credential, and one bad application never stops a snapshot from installing."""

import time
import uuid

from conftest import call, sha256_hex
from test_envoy_filter import assert_problem
from test_loop import loop, new_app, wait_known, wait_status  # noqa: F401 (the fixture)

KEY = "k-invariants-0123456789"
SUSPENDED_KEY = "k-invariants-susp-0123456789"
UNPAID_KEY = "k-invariants-unpaid-0123456789"


def config(plans, rules, metrics=None, apps=None):
    return {
        "credentials": {"header": "x-api-key", "query": "api_key"},
        "snapshot": {
            "plans": plans,
            "applications": apps or [
                {"id": "app", "plan": plans[0]["id"], "state": "live", "key_sha256": [sha256_hex(KEY)]}],
            "metrics": metrics or [{"name": "hits"}, {"name": "search", "parent": "hits"}],
            "mapping_rules": rules,
        },
    }


def test_requests_on_another_method_do_not_reset_a_method_quota(start_envoy, upstream):
    """The issue's case: hits 100/hour, search 2/hour, alternating GET /other and GET /search:
    exactly 2 searches get through (before the fix every /search did)."""
    envoy = start_envoy(config(
        [{"id": "p", "limits": [{"metric": "hits", "period": "hour", "value": 100},
                                {"metric": "search", "period": "hour", "value": 2}]}],
        [{"method": "GET", "pattern": "/", "metric": "hits"},
         {"method": "GET", "pattern": "/search$", "metric": "search"}]))
    key = {"x-api-key": KEY}
    searches = []
    for _ in range(6):
        assert call(envoy.port, "/other", headers=key).status == 200
        searches.append(call(envoy.port, "/search", headers=key).status)
    assert searches == [200, 200, 429, 429, 429, 429]
    # hits: 6 x /other + 2 admitted searches x 2 (search rolls up to hits); rejections count nothing.
    r = call(envoy.port, "/other", headers=key)
    assert r.header("x-ratelimit-remaining") == str(100 - 6 - 4 - 1)


def test_every_spelling_of_a_query_meets_its_rule(start_envoy, upstream):
    """`?tier=premi%75m`, `?%74ier=premium` and `+` for a space used to escape the rules (only
    `hits` counted, the premium limit never reached)."""
    envoy = start_envoy(config(
        [{"id": "p", "limits": [{"metric": "hits", "period": "day", "value": 100},
                                {"metric": "premium", "period": "day", "value": 1},
                                {"metric": "spaced", "period": "day", "value": 1}]}],
        [{"method": "GET", "pattern": "/", "metric": "hits"},
         {"method": "GET", "pattern": "/plans?tier=premium", "metric": "premium"},
         {"method": "GET", "pattern": "/find?name=big%20deal", "metric": "spaced"}],
        metrics=[{"name": "hits"}, {"name": "premium", "parent": "hits"}, {"name": "spaced", "parent": "hits"}]))
    key = {"x-api-key": KEY}
    assert call(envoy.port, "/plans?tier=premium", headers=key).status == 200
    for spelling in ["/plans?tier=premi%75m", "/plans?%74ier=premium", "/plans?%74ier=%70%72emium",
                     "/plans?x=1&tier=premium", "/plans?tier=premium&tier=free"]:
        r = call(envoy.port, spelling, headers=key)
        body = assert_problem(r, 429, "limit_exceeded")
        assert body["limit"]["metric"] == "premium", spelling
    assert call(envoy.port, "/plans?tier=premium2", headers=key).status == 200
    assert call(envoy.port, "/find?name=big+deal", headers=key).status == 200
    assert_problem(call(envoy.port, "/find?name=big%20deal", headers=key), 429, "limit_exceeded")
    assert_problem(call(envoy.port, "/find?name=big+de%61l", headers=key), 429, "limit_exceeded")
    # A bad escape in the query is refused, as in the path.
    before = upstream.count()
    assert_problem(call(envoy.port, "/plans?tier=%zz", headers=key), 400, "malformed_request")
    assert upstream.count() == before


def test_every_spelling_of_the_credential_name_is_the_credential(start_envoy, upstream):
    """`api%5Fkey` decodes to `api_key` at the upstream: it is read as the key, stripped before
    forwarding, and counted with `api_key` when the credential is sent twice (before, a second
    spelling passed the "sent twice" check and reached the upstream)."""
    envoy = start_envoy(config([{"id": "p", "limits": [{"metric": "hits", "period": "day", "value": 100}]}],
                               [{"method": "GET", "pattern": "/", "metric": "hits"}]))
    other = "k-smuggled-" + uuid.uuid4().hex
    r = call(envoy.port, f"/a?api%5Fkey={KEY}&x=1")
    assert r.status == 200, r.body
    assert upstream.last()["path"] == "/a?x=1"
    before = upstream.count()
    for path in [f"/a?api_key={KEY}&api%5Fkey={other}", f"/a?api%5fkey={other}&api_key={KEY}"]:
        assert_problem(call(envoy.port, path), 400, "malformed_credentials")
    assert upstream.count() == before


def test_no_filter_made_response_echoes_the_key(start_envoy, upstream):
    """Every answer the filter makes itself (400, 401, 402, 403, 404, 429) to a request carrying a
    key in its query: the key is in no header and no body (the 404 used to echo the query)."""
    apps = [{"id": "app", "plan": "p", "state": "live", "key_sha256": [sha256_hex(KEY)]},
            {"id": "susp", "plan": "p", "state": "suspended", "key_sha256": [sha256_hex(SUSPENDED_KEY)]},
            {"id": "unpaid", "plan": "p", "state": "suspended", "state_reason": "non_payment",
             "key_sha256": [sha256_hex(UNPAID_KEY)]}]
    envoy = start_envoy(config([{"id": "p", "limits": [{"metric": "hits", "period": "day", "value": 1}]}],
                               [{"method": "GET", "pattern": "/", "metric": "hits"}], apps=apps))
    unknown = "k-unknown-" + uuid.uuid4().hex
    seen = {}
    cases = [
        ("GET", f"/a?api_key={KEY}", None),                    # admitted: the upstream's answer
        ("DELETE", f"/secret/path?api_key={KEY}", 404),        # no mapping rule
        ("GET", f"/a?api_key={KEY}&token={KEY}", 429),          # limit reached
        ("GET", f"/a?api_key={SUSPENDED_KEY}", 403),
        ("GET", f"/a?api_key={UNPAID_KEY}", 402),
        ("GET", f"/a?api_key={unknown}", 403),
        ("GET", f"/a?apikey={KEY}", 401),                       # not where keys are read
        ("GET", f"/a?api_key={KEY}&api_key={KEY}", 400),        # sent twice
        ("GET", f"/a?api_key={KEY}&x=%zz", 400),                # a bad escape
    ]
    for method, path, want in cases:
        r = call(envoy.port, path, method=method)
        if want is not None:
            assert r.status == want, (path, r.status, r.body)
            seen[want] = True
            secrets = [KEY, SUSPENDED_KEY, UNPAID_KEY, unknown]
            text = r.body.decode("latin-1") + "".join(f"{k}: {v}" for k, vs in r.headers.items() for v in vs)
            for s in secrets:
                assert s not in text, (path, r.status, text)
            assert "?" not in r.json()["detail"], r.json()
    # The 404's detail still says which request had no rule, by method and path.
    r = call(envoy.port, f"/secret/path?api_key={KEY}", method="DELETE")
    assert r.json()["detail"] == "no mapping rule matches DELETE /secret/path"
    assert set(seen) == {400, 401, 402, 403, 404, 429}


def add_keys(w, app_id, count):
    """Live keys written straight into the database (the API caps them; a snapshot may still carry
    an application over a gateway's bound, e.g. keys in grace, or data from an older release)."""
    values = ", ".join(
        f"('k-{uuid.uuid4().hex}', '{app_id}', '{sha256_hex(uuid.uuid4().hex)}', 'tg_x', 0, NULL)"
        for _ in range(count))
    w["db"].query(f"INSERT INTO application_keys (id, application_id, key_sha256, prefix, created_at, expires_at) "
                  f"VALUES {values}")
    w["db"].query("UPDATE catalog_revision SET revision = revision + 1 WHERE id = 1")


def test_one_application_over_the_key_bound_does_not_freeze_the_gateway(loop):  # noqa: F811
    """An application over the filter's key bound (17 keys), then over the compact encoding's 255:
    the snapshot still installs (that application skipped, counted, logged), new applications
    start working, revocations and suspensions take effect, other quotas hold. Before: the filter
    refused the whole snapshot (17 keys) and the control plane answered 500 (256 keys)."""
    w = loop
    envoy = w["envoy"]
    victim = new_app(w)
    small = new_app(w, w["small"])
    bad = new_app(w)
    wait_status(envoy, victim["key"], 200)
    wait_known(envoy, small["key"])
    wait_known(envoy, bad["key"])
    # 17 keys: over the filter's bound (16). The filter skips the application, installs the rest.
    add_keys(w, bad["id"], 16)
    newcomer = new_app(w)
    wait_status(envoy, newcomer["key"], 200)  # a new application reaches the gateway
    wait_status(envoy, bad["key"], 403)  # the skipped application's keys open nothing
    skipped = f"{envoy.ns}.tollgate.snapshot.skipped_applications"
    stats = envoy.wait_stats({skipped: min(2, envoy.links)})  # counted by each link that installed it
    assert stats.get(skipped, 0) >= 1, stats
    # 300 keys: over what the compact encoding carries (255). The control plane leaves the
    # application out of the snapshot (it answered 500 before) and says so in its log.
    add_keys(w, bad["id"], 300 - 17)
    second = new_app(w)
    wait_status(envoy, second["key"], 200)
    wait_status(envoy, bad["key"], 403)
    assert "left out" in w["server"].log(), w["server"].log()[-3000:]
    # A revocation and a suspension take effect while the bad application stays in the catalog.
    add_keys(w, bad["id"], 20)
    key_id = victim["keys"][0]["id"]
    w["api"].ok("DELETE", f"/applications/{victim['id']}/keys/{key_id}")
    wait_status(envoy, victim["key"], 403)
    w["api"].ok("POST", f"/applications/{second['id']}/suspend", {"reason": "non_payment"}, status=200)
    wait_status(envoy, second["key"], 402)
    w["api"].ok("POST", f"/applications/{second['id']}/resume", status=200)
    wait_status(envoy, second["key"], 200)
    # Another application's quota holds exactly (its key was never used for a GET before).
    statuses = [call(envoy.port, "/items", headers={"x-api-key": small["key"]}).status for _ in range(8)]
    assert statuses == [200] * 5 + [429] * 3, statuses
    # A gateway started now (nothing stale to fall back on) gets the snapshot too.
    fresh = w["make_envoy"]()
    assert call(fresh.port, "/items", headers={"x-api-key": second["key"]}).status == 200
    assert call(fresh.port, "/items", headers={"x-api-key": victim["key"]}).status == 403
