"""Issue 22 item 1 through real processes: keys brought from elsewhere (a 3scale user_key by value,
another by digest only) and 3scale's app_id + app_key pairs, enforced by a real Envoy in
control-plane mode, for both shells (wasm, native) and both databases (SQLite, PostgreSQL)."""

import threading
import time

import pytest

from conftest import ADMIN_TOKEN, call, sha256_hex
from support.control_plane import Api
from support.envoy import Envoy, bootstrap, free_port, static_cluster, tollgate_filter

USER_KEY = "3scale-user-key-7c1e9f0a2b3d4e5f"
DIGEST_ONLY_KEY = "known-only-by-its-digest-0001"
APP_KEY_1 = "3scale-app-key-aaaaaaaaaaaaaaaa"
APP_KEY_2 = "3scale-app-key-bbbbbbbbbbbbbbbb"
SUSPENDED_KEY = "3scale-user-key-suspended-00001"
APP_ID = "7f3a21c9"
#: How long a change may take to reach every worker (poll 200 ms; generous for a busy machine).
PROPAGATION_S = 15


def wait_status(port, want, timeout_s=PROPAGATION_S, streak_needed=6, path="/", headers=None):
    """Until a request gets `want` several times in a row (so every worker has the snapshot)."""
    deadline = time.monotonic() + timeout_s
    streak, last = 0, None
    while time.monotonic() < deadline:
        last = call(port, path, headers=headers or {})
        streak = streak + 1 if last.status == want else 0
        if streak >= streak_needed:
            return last
        time.sleep(0.05)
    raise AssertionError(f"{path} {headers}: still {last.status if last else None}, not {want}")


@pytest.fixture
def world(server, shell, upstream):
    api = Api(server.base, ADMIN_TOKEN)
    svc = api.ok("POST", "/services", {"name": "Moved from 3scale"})
    api.ok("POST", f"/services/{svc['id']}/mapping_rules", {"method": "GET", "pattern": "/", "metric": "hits"})
    plan = api.ok("POST", "/plans", {"service_id": svc["id"], "name": "Basic",
                                     "limits": [{"metric": "hits", "period": "day", "value": 1000}]})
    acct = api.ok("POST", "/accounts", {"name": "Dev", "email": "dev@example.com"})

    def app(name, **extra):
        return api.ok("POST", "/applications", {"account_id": acct["id"], "plan_id": plan["id"], "name": name,
                                                **extra})

    apps = {"user_key": app("user key"), "digest": app("digest only"), "pair": app("pair", app_id=APP_ID),
            "suspended": app("suspended")}
    gw = api.ok("POST", "/gateway_tokens", {"name": "envoy", "service_ids": [svc["id"]]})
    config = {"service_id": svc["id"],
              "control_plane": {"cluster": "tollgate_control_plane", "authority": "tollgate", "token": gw["token"],
                                "poll_interval_ms": 200, "flush_interval_ms": 500, "timeout_ms": 2000}}
    envoy = Envoy(bootstrap(free_port(), free_port(), upstream.port, [tollgate_filter(config, shell)],
                            [static_cluster("tollgate_control_plane", server.port)]), concurrency=2,
                  shell=shell).start()
    yield {"api": api, "apps": apps, "envoy": envoy, "server": server, "upstream": upstream}
    envoy.stop()


def assert_error(resp, status, code, param=None):
    st, body, _ = resp
    assert st == status, (st, body)
    assert body["error"]["code"] == code, body
    if param:
        assert body["error"]["param"] == param, body


def test_imported_keys_and_pairs_get_their_decisions_through_envoy(world):
    api, apps, envoy, upstream = world["api"], world["apps"], world["envoy"], world["upstream"]
    ids = {k: a["id"] for k, a in apps.items()}

    st, body, _ = api.post(f"/applications/{ids['user_key']}/keys", {"key": USER_KEY})
    assert st == 201, body
    assert USER_KEY not in str(body) and body["prefix"] == "sha256:" + sha256_hex(USER_KEY)[:8]
    st, body, _ = api.post(f"/applications/{ids['user_key']}/keys", {"key": USER_KEY})
    assert st == 200, "the same key again is idempotent"
    api.ok("POST", f"/applications/{ids['digest']}/keys", {"key_sha256": sha256_hex(DIGEST_ONLY_KEY)})
    ak1 = api.ok("POST", f"/applications/{ids['pair']}/app_keys", {"value": APP_KEY_1})
    ak2 = api.ok("POST", f"/applications/{ids['pair']}/app_keys", {"value": APP_KEY_2})
    assert APP_KEY_1 not in str(api.ok("GET", f"/applications/{ids['pair']}/app_keys"))
    api.ok("POST", f"/applications/{ids['suspended']}/keys", {"key": SUSPENDED_KEY})
    api.ok("POST", f"/applications/{ids['suspended']}/suspend", {}, status=200)
    # Refusals: another application's key (by value and by digest), short keys, a sixth app key.
    assert_error(api.post(f"/applications/{ids['digest']}/keys", {"key": USER_KEY}), 409, "key_in_use")
    assert_error(api.post(f"/applications/{ids['pair']}/keys", {"key_sha256": sha256_hex(DIGEST_ONLY_KEY)}),
                 409, "key_in_use")
    assert_error(api.post(f"/applications/{ids['digest']}/keys", {"key": "short-key"}), 422, "key_too_short", "key")
    assert_error(api.post(f"/applications/{ids['pair']}/app_keys", {"value": "short"}), 422, "key_too_short")
    assert_error(api.post(f"/applications/{ids['digest']}/keys", {"key": "has a space in it!"}), 422,
                 "invalid_key", "key")

    port = envoy.port
    envoy.wait_snapshot()
    r = wait_status(port, 200, headers={"x-api-key": USER_KEY})
    assert upstream.last()["headers"]["x-tollgate-application"] == ids["user_key"]
    assert r.header("ratelimit-policy") and r.header("x-ratelimit-limit") == "1000"
    wait_status(port, 200, headers={"x-api-key": DIGEST_ONLY_KEY})
    assert upstream.last()["headers"]["x-tollgate-application"] == ids["digest"]
    # app_id + app_key, in the query and in headers, with either app key.
    wait_status(port, 200, path=f"/?app_id={APP_ID}&app_key={APP_KEY_1}")
    assert upstream.last()["headers"]["x-tollgate-application"] == ids["pair"]
    assert "app_key" not in upstream.last()["path"]
    wait_status(port, 200, headers={"app-id": APP_ID, "app-key": APP_KEY_2})
    # A wrong app key, another application's key as app key, an app key alone, an unknown app_id.
    for path, headers in [(f"/?app_id={APP_ID}&app_key=wrong-app-key-0000000000", {}),
                          (f"/?app_id={APP_ID}&app_key={USER_KEY}", {}),
                          ("/", {"x-api-key": APP_KEY_1}),
                          (f"/?app_id=nope&app_key={APP_KEY_1}", {})]:
        r = call(port, path, headers=headers)
        assert r.status == 403 and r.json()["code"] == "invalid_credentials", (path, r.status, r.body)
    # The suspended application's imported key.
    r = call(port, "/", headers={"x-api-key": SUSPENDED_KEY})
    assert r.status == 403 and r.json()["code"] == "application_suspended", r.body

    # A removed app key stops working with the next snapshot; the other goes on.
    api.ok("DELETE", f"/applications/{ids['pair']}/app_keys/{ak2['id']}")
    wait_status(port, 403, headers={"app-id": APP_ID, "app-key": APP_KEY_2})
    assert call(port, "/", headers={"app-id": APP_ID, "app-key": APP_KEY_1}).status == 200
    # A changed app_id: the old one opens nothing, the new one does.
    api.ok("PATCH", f"/applications/{ids['pair']}", {"app_id": "moved-app-id"})
    wait_status(port, 200, headers={"app-id": "moved-app-id", "app-key": APP_KEY_1})
    assert call(port, "/", headers={"app-id": APP_ID, "app-key": APP_KEY_1}).status == 403
    assert ak1["id"]


def test_two_applications_adding_one_key_at_once_one_wins(server):
    """Concurrent requests through the real server (both databases): per key exactly one 201 and
    one 409, and the key belongs to exactly one application."""
    api = Api(server.base, ADMIN_TOKEN)
    svc = api.ok("POST", "/services", {"name": "Race"})
    plan = api.ok("POST", "/plans", {"service_id": svc["id"], "name": "P"})
    acct = api.ok("POST", "/accounts", {"name": "Dev", "email": "dev@example.com"})
    a, b = (api.ok("POST", "/applications", {"account_id": acct["id"], "plan_id": plan["id"], "name": n})
            for n in ("a", "b"))
    for round_ in range(8):
        key = f"raced-key-{round_:02d}-0123456789abcdef"
        barrier = threading.Barrier(2)
        statuses = {}

        def add(app):
            barrier.wait()
            statuses[app["id"]] = api.post(f"/applications/{app['id']}/keys", {"key": key})[0]

        threads = [threading.Thread(target=add, args=(x,)) for x in (a, b)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert sorted(statuses.values()) == [201, 409], (round_, statuses)
        holders = server.db.query(
            f"SELECT application_id FROM application_keys WHERE key_sha256 = '{sha256_hex(key)}'")
        assert len(holders) == 1
        winner = [k for k, v in statuses.items() if v == 201][0]
        assert holders == [winner]
    # One app_id asked for by both at once: one gets it.
    for round_ in range(4):
        barrier = threading.Barrier(2)
        statuses = {}

        def claim(app, app_id=f"raced-app-id-{round_}"):
            barrier.wait()
            statuses[app["id"]] = api.patch(f"/applications/{app['id']}", {"app_id": app_id})[0]

        threads = [threading.Thread(target=claim, args=(x,)) for x in (a, b)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert sorted(statuses.values()) == [200, 409], (round_, statuses)
    # Ten app keys at once for one application: exactly five are taken, the rest refused (422).
    api.ok("PATCH", f"/applications/{a['id']}", {"app_id": "raced-app-keys"})
    barrier = threading.Barrier(10)
    answers = []

    def add_app_key(i):
        barrier.wait()
        answers.append(api.post(f"/applications/{a['id']}/app_keys", {"value": f"raced-app-key-{i:02d}-0123456789"})[0])

    threads = [threading.Thread(target=add_app_key, args=(i,)) for i in range(10)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(answers) == [201] * 5 + [422] * 5, answers
    assert len(server.db.query(f"SELECT id FROM application_app_keys WHERE application_id = '{a['id']}'")) == 5


def test_an_api_key_may_never_also_be_an_app_key(server):
    """Whoever holds an app key (the customer of the app_id's application) must not open another
    application with it alone: the value may be one kind of key only, whichever comes first, also
    when both are added at once (both databases)."""
    api = Api(server.base, ADMIN_TOKEN)
    svc = api.ok("POST", "/services", {"name": "Kinds"})
    plan = api.ok("POST", "/plans", {"service_id": svc["id"], "name": "P"})
    acct = api.ok("POST", "/accounts", {"name": "Dev", "email": "dev@example.com"})
    a = api.ok("POST", "/applications", {"account_id": acct["id"], "plan_id": plan["id"], "name": "a",
                                         "app_id": "kinds-a"})
    b = api.ok("POST", "/applications", {"account_id": acct["id"], "plan_id": plan["id"], "name": "b"})
    value = "shared-value-0123456789abcdef"
    api.ok("POST", f"/applications/{b['id']}/keys", {"key": value}, status=201)
    st, body, _ = api.post(f"/applications/{a['id']}/app_keys", {"value": value})
    assert (st, body["error"]["code"]) == (409, "key_in_use"), body
    st, body, _ = api.post(f"/applications/{a['id']}/app_keys", {"value_sha256": sha256_hex(value)})
    assert (st, body["error"]["code"]) == (409, "key_in_use"), body
    other = "other-value-0123456789abcdef"
    api.ok("POST", f"/applications/{a['id']}/app_keys", {"value": other}, status=201)
    st, body, _ = api.post(f"/applications/{b['id']}/keys", {"key": other})
    assert (st, body["error"]["code"]) == (409, "key_in_use"), body
    # Both kinds of one value at once: exactly one is taken (a fresh app_id application per round,
    # so its five app keys never run out).
    for round_ in range(6):
        holder = api.ok("POST", "/applications", {"account_id": acct["id"], "plan_id": plan["id"],
                                                  "name": f"r{round_}", "app_id": f"kinds-r{round_}"})
        raced = f"raced-kind-{round_:02d}-0123456789abcdef"
        barrier = threading.Barrier(2)
        statuses = {}

        def as_key():
            barrier.wait()
            statuses["key"] = api.post(f"/applications/{b['id']}/keys", {"key": raced})[0]

        def as_app_key():
            barrier.wait()
            statuses["app_key"] = api.post(f"/applications/{holder['id']}/app_keys", {"value": raced})[0]

        threads = [threading.Thread(target=as_key), threading.Thread(target=as_app_key)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert sorted(statuses.values()) == [201, 409], (round_, statuses)
        if statuses["key"] == 201:  # room for the next round's key (at most 10 live keys)
            key_id = [k["id"] for k in api.ok("GET", f"/applications/{b['id']}/keys")["data"]
                      if k["prefix"] == "sha256:" + sha256_hex(raced)[:8]][0]
            api.ok("DELETE", f"/applications/{b['id']}/keys/{key_id}")


def test_the_cli_brings_keys_from_stdin_and_never_prints_them(server):
    """`tollgate keys create --key-stdin`, `applications update --app-id`, `app-keys add
    --value-stdin` / `list` / `delete`: the secrets go in on standard input (not the command line)
    and come out nowhere."""
    import subprocess
    from support.control_plane import binary
    api = Api(server.base, ADMIN_TOKEN)
    svc = api.ok("POST", "/services", {"name": "CLI"})
    plan = api.ok("POST", "/plans", {"service_id": svc["id"], "name": "P"})
    acct = api.ok("POST", "/accounts", {"name": "Dev", "email": "dev@example.com"})
    app = api.ok("POST", "/applications", {"account_id": acct["id"], "plan_id": plan["id"], "name": "a"})
    env = dict(server.env, TOLLGATE_URL=server.base, TOLLGATE_TOKEN=ADMIN_TOKEN)

    def run(*args, stdin=""):
        return subprocess.run([binary(), *args], env=env, input=stdin, capture_output=True, text=True, timeout=60)

    r = run("keys", "create", app["id"], "--key-stdin", stdin=USER_KEY + "\n")
    assert r.returncode == 0, r.stderr
    assert USER_KEY not in r.stdout + r.stderr and "sha256:" + sha256_hex(USER_KEY)[:8] in r.stdout
    r = run("keys", "create", app["id"], "--key-stdin", stdin="too-short\n")
    assert r.returncode != 0 and "key_too_short" in r.stderr, r.stderr
    r = run("applications", "update", app["id"], "--app-id", "cli-app-id")
    assert r.returncode == 0 and "cli-app-id" in r.stdout, r.stderr
    r = run("app-keys", "add", app["id"], "--value-stdin", stdin=APP_KEY_1 + "\n")
    assert r.returncode == 0 and APP_KEY_1 not in r.stdout + r.stderr, r.stderr
    r = run("app-keys", "add", app["id"], "--value-sha256", sha256_hex(APP_KEY_2))
    assert r.returncode == 0, r.stderr
    r = run("app-keys", "list", app["id"], "--json")
    listed = __import__("json").loads(r.stdout)
    assert len(listed) == 2 and APP_KEY_1 not in r.stdout
    r = run("app-keys", "delete", app["id"], listed[0]["id"])
    assert r.returncode == 0, r.stderr
    assert len(api.ok("GET", f"/applications/{app['id']}/app_keys")["data"]) == 1
    stored = server.db.query(f"SELECT key_sha256 FROM application_keys WHERE application_id = '{app['id']}'")
    assert sha256_hex(USER_KEY) in stored


def test_standalone_mode_reads_app_keys_the_same_way(start_envoy, upstream):
    """The same fields in an inline snapshot (standalone mode) give the same decisions: an app key
    shared by two applications opens each only with its app_id, alone it opens nothing, and a
    configuration written before `app_key_sha256` (the app key among `key_sha256`) still works."""
    shared = "shared-app-key-0123456789abcdef"
    config = {"snapshot": {
        "plans": [{"id": "p", "limits": [{"metric": "hits", "period": "day", "value": 100}]}],
        "applications": [
            {"id": "app-a", "plan": "p", "state": "live", "app_id": "id-a", "app_key_sha256": [sha256_hex(shared)]},
            {"id": "app-b", "plan": "p", "state": "live", "app_id": "id-b", "app_key_sha256": [sha256_hex(shared)]},
            {"id": "app-s", "plan": "p", "state": "suspended", "app_id": "id-s",
             "app_key_sha256": [sha256_hex(shared)]},
            {"id": "app-old", "plan": "p", "state": "live", "app_id": "id-old",
             "key_sha256": [sha256_hex(APP_KEY_1)]}],
        "metrics": [{"name": "hits"}]}}
    envoy = start_envoy(config)
    for app_id, want, app in (("id-a", 200, "app-a"), ("id-b", 200, "app-b"), ("id-s", 403, None),
                              ("nope", 403, None)):
        r = call(envoy.port, "/", headers={"app-id": app_id, "app-key": shared})
        assert r.status == want, (app_id, r.status, r.body)
        if app:
            assert upstream.last()["headers"]["x-tollgate-application"] == app
    r = call(envoy.port, f"/?app_id=id-a&app_key={shared}")
    assert r.status == 200
    assert call(envoy.port, "/", headers={"x-api-key": shared}).status == 403
    assert call(envoy.port, "/", headers={"app-id": "id-old", "app-key": APP_KEY_1}).status == 200
