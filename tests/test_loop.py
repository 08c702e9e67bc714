"""The closed loop with real processes: the control plane distributes snapshots to the filter in a
real Envoy (control-plane mode) and receives every admitted hit back exactly once, including
across a control-plane outage."""

import statistics
import threading
import time

import pytest

from conftest import ADMIN_TOKEN, call
from support.control_plane import Api, Database, Server
from support.envoy import (SHELLS, Envoy, ListenersFile, bootstrap, free_port, http_listener, static_cluster,
                           tollgate_filter, versioned, wasm_filter)

# Not beside other tests (tests/pytest.ini): wall-clock bounds on propagation to every worker and traffic counts during an outage.
pytestmark = pytest.mark.exclusive

#: How long a change may take to reach every worker in these tests (the figure is printed).
PROPAGATION_TIMEOUT_S = 10
#: How long the control plane stays down in the outage test: 24 flush intervals (500 ms) and
#: several held snapshot polls cut, longer than any call's timeout (2 s).
OUTAGE_S = 12


@pytest.fixture(params=SHELLS)
def loop(upstream, request):
    shell = request.param
    db = Database("sqlite")
    server = Server(db, ADMIN_TOKEN).start()
    api = Api(server.base, ADMIN_TOKEN)
    svc = api.ok("POST", "/services", {"name": "Loop"})
    api.ok("POST", f"/services/{svc['id']}/metrics", {"name": "search", "parent": "hits"})
    api.ok("POST", f"/services/{svc['id']}/mapping_rules", {"method": "GET", "pattern": "/", "metric": "hits"})
    api.ok("POST", f"/services/{svc['id']}/mapping_rules", {"method": "GET", "pattern": "/search$", "metric": "search"})
    plan = api.ok("POST", "/plans", {"service_id": svc["id"], "name": "Basic",
                                     "limits": [{"metric": "hits", "period": "day", "value": 1_000_000}]})
    small = api.ok("POST", "/plans", {"service_id": svc["id"], "name": "Small",
                                      "limits": [{"metric": "hits", "period": "day", "value": 5}]})
    acct = api.ok("POST", "/accounts", {"name": "Dev", "email": "dev@example.com"})
    gw = api.ok("POST", "/gateway_tokens", {"name": "envoy", "service_ids": [svc["id"]]})
    config = {
        "service_id": svc["id"],
        "control_plane": {"cluster": "tollgate_control_plane", "authority": "tollgate", "token": gw["token"],
                          "poll_interval_ms": 200, "flush_interval_ms": 500, "timeout_ms": 2000},
    }
    cp_port = server.port
    extra = []

    def make_envoy():
        e = Envoy(bootstrap(free_port(), free_port(), upstream.port, [tollgate_filter(config, shell)],
                            [static_cluster("tollgate_control_plane", cp_port)]), concurrency=2, shell=shell).start()
        extra.append(e)
        e.wait_snapshot()
        return e

    envoy = make_envoy()
    state = {"api": api, "server": server, "db": db, "envoy": envoy, "svc": svc, "plan": plan, "small": small,
             "account": acct, "upstream": upstream, "make_envoy": make_envoy, "config": config, "shell": shell,
             "extra": extra}
    yield state
    for e in extra:
        e.stop()
    state["server"].stop()
    db.drop()


def new_app(w, plan=None):
    return w["api"].ok("POST", "/applications", {"account_id": w["account"]["id"],
                                                 "plan_id": (plan or w["plan"])["id"], "name": "app"})


def wait_status(envoy, key, want, timeout_s=PROPAGATION_TIMEOUT_S, streak_needed=6, method="GET"):
    """Seconds until a request with `key` gets `want` on several consecutive tries (both workers)."""
    start = time.monotonic()
    streak = 0
    while time.monotonic() - start < timeout_s:
        st = call(envoy.port, "/items", method=method, headers={"x-api-key": key}).status
        streak = streak + 1 if st == want else 0
        if streak >= streak_needed:
            return time.monotonic() - start
        time.sleep(0.02)
    raise AssertionError(f"still not {want} after {timeout_s}s (last {st})")


def wait_known(envoy, key):
    """Until every worker knows the key, without using any quota: no rule maps POST here, so a
    known key gets 404 `no_mapping_rule` (nothing counted) and an unknown one 403."""
    return wait_status(envoy, key, 404, method="POST")


def usage_total(w, app_id, metric="hits"):
    return w["api"].ok("GET", f"/applications/{app_id}/usage?metric={metric}&period=day")["total"]


def wait_usage(w, app_id, expected, timeout_s=15, metric="hits"):
    deadline = time.monotonic() + timeout_s
    total = None
    while time.monotonic() < deadline:
        total = usage_total(w, app_id, metric)
        if total == expected:
            # Stay equal: nothing counted twice arrives late.
            time.sleep(1.5)
            return usage_total(w, app_id, metric)
        time.sleep(0.2)
    return total


def test_changes_are_pushed_to_every_worker_long_before_the_next_poll(loop):
    """With a 60 s poll interval, only the held poll (Prefer: wait) can bring a change within
    PROPAGATION_TIMEOUT_S: a key added, a key revoked, an application suspended."""
    w = loop
    w["config"]["control_plane"]["poll_interval_ms"] = 60_000
    envoy = w["make_envoy"]()
    app = new_app(w)
    figures = [wait_status(envoy, app["key"], 200)]
    key_id = app["keys"][0]["id"]
    w["api"].ok("DELETE", f"/applications/{app['id']}/keys/{key_id}")
    figures.append(wait_status(envoy, app["key"], 403))
    other = new_app(w)
    wait_status(envoy, other["key"], 200)
    w["api"].ok("POST", f"/applications/{other['id']}/suspend", {"reason": "non_payment"}, status=200)
    figures.append(wait_status(envoy, other["key"], 402))
    print(f"\npushed changes at a 60 s poll interval ({w['shell']}): "
          + ", ".join(f"{f * 1000:.0f} ms" for f in figures))


def test_changes_reach_every_worker_quickly(loop):
    w = loop
    first = new_app(w)
    wait_status(w["envoy"], first["key"], 200)
    figures = []
    for _ in range(5):
        app = new_app(w)
        figures.append(wait_status(w["envoy"], app["key"], 200))
    key_id = first["keys"][0]["id"]
    w["api"].ok("DELETE", f"/applications/{first['id']}/keys/{key_id}")
    figures.append(wait_status(w["envoy"], first["key"], 403))
    app = new_app(w)
    wait_status(w["envoy"], app["key"], 200)
    w["api"].ok("POST", f"/applications/{app['id']}/suspend", {"reason": "non_payment"}, status=200)
    figures.append(wait_status(w["envoy"], app["key"], 402))
    w["api"].ok("POST", f"/applications/{app['id']}/resume", status=200)
    figures.append(wait_status(w["envoy"], app["key"], 200))
    print(f"\npropagation (API call -> every worker enforcing), poll 200 ms: "
          f"median {statistics.median(figures) * 1000:.0f} ms, max {max(figures) * 1000:.0f} ms over {len(figures)} changes")
    assert max(figures) < 2.0, figures


def test_every_admitted_hit_is_metered_once(loop):
    w = loop
    app = new_app(w, w["small"])
    # One admitted probe once both workers know the app: the plan allows only 5 a day.
    wait_known(w["envoy"], app["key"])
    wait_status(w["envoy"], app["key"], 200, streak_needed=1)
    # The helper's probe requests count too; read the upstream for the truth.
    statuses = [call(w["envoy"].port, "/search", headers={"x-api-key": app["key"]}).status for _ in range(10)]
    assert 429 in statuses
    seen = [r for r in w["upstream"].requests if r["headers"].get("x-tollgate-application") == app["id"]]
    searches = sum(1 for r in seen if r["path"] == "/search")
    # GET /search matches `/` (hits +1) and `/search$` (search +1, rolled up into hits +1).
    hits = (len(seen) - searches) + 2 * searches
    assert hits == 5, "the plan allows 5 hits a day, and a rejected request counts nothing"
    assert wait_usage(w, app["id"], hits) == hits
    assert wait_usage(w, app["id"], searches, metric="search") == searches


def test_control_plane_outage_loses_nothing(loop):
    """Steady load; the control plane is killed for OUTAGE_S and restarted: the gateway keeps
    enforcing the last snapshot, buffers usage (two dozen flush intervals of it, each report
    failing), and delivers it; upstream count == metered."""
    w = loop
    app = new_app(w)
    wait_status(w["envoy"], app["key"], 200)
    stop = threading.Event()
    statuses = []

    def load():
        # Bounded: at most 60 s at ~25 requests/s.
        end = time.monotonic() + 60
        while not stop.is_set() and time.monotonic() < end:
            statuses.append(call(w["envoy"].port, "/items", headers={"x-api-key": app["key"]}).status)
            time.sleep(0.04)

    t = threading.Thread(target=load)
    t.start()
    time.sleep(3)
    w["server"].proc.kill()  # kill -9: no graceful anything
    w["server"].proc.wait()
    time.sleep(OUTAGE_S)
    during = list(statuses)
    w["server"] = Server(w["db"], ADMIN_TOKEN)
    w["server"].port = int(w["envoy"].config["static_resources"]["clusters"][1]["load_assignment"]["endpoints"][0]
                           ["lb_endpoints"][0]["endpoint"]["address"]["socket_address"]["port_value"])
    w["server"].base = f"http://127.0.0.1:{w['server'].port}"
    w["server"].env["TOLLGATE_LISTEN"] = f"127.0.0.1:{w['server'].port}"
    w["server"].start()
    w["api"] = Api(w["server"].base, ADMIN_TOKEN)
    time.sleep(4)
    stop.set()
    t.join()
    assert during.count(200) > OUTAGE_S * 10, "traffic kept flowing while the control plane was down"
    assert set(statuses) == {200}, set(statuses)
    admitted = sum(1 for r in w["upstream"].requests if r["headers"].get("x-tollgate-application") == app["id"])
    metered = wait_usage(w, app["id"], admitted, timeout_s=30)
    print(f"\noutage test: {admitted} admitted at the upstream, {metered} metered")
    assert metered == admitted


def test_global_quota_holds_across_two_envoys(loop):
    """Two Envoys (two gateway instances) share one application's daily quota."""
    w = loop
    shared_plan = w["api"].ok("POST", "/plans", {"service_id": w["svc"]["id"], "name": "Shared",
                                                 "limits": [{"metric": "hits", "period": "day", "value": 20}]})
    app = new_app(w, shared_plan)
    a, b = w["envoy"], w["make_envoy"]()
    key = {"x-api-key": app["key"]}
    wait_known(a, app["key"])
    wait_status(a, app["key"], 200, streak_needed=1)
    assert [call(a.port, "/items", headers=key).status for _ in range(11)] == [200] * 11  # 12 used via A
    wait_known(b, app["key"])
    wait_status(b, app["key"], 200, streak_needed=1)  # 13 used
    # A's usage reaches the control plane within a flush (500 ms) and B within a poll (200 ms).
    time.sleep(2.5)
    statuses = [call(b.port, "/items", headers=key).status for _ in range(20)]
    assert statuses.count(200) == 7, statuses
    assert statuses[7:] == [429] * 13
    time.sleep(2.5)
    r = call(a.port, "/items", headers=key)
    assert r.status == 429, "A learns of B's usage too"
    admitted = sum(1 for r in w["upstream"].requests if r["headers"].get("x-tollgate-application") == app["id"])
    assert admitted == 20

    # Concurrent load on both: over-admission stays within instances x rate x (flush + poll).
    concurrent_plan = w["api"].ok("POST", "/plans", {"service_id": w["svc"]["id"], "name": "Busy",
                                                     "limits": [{"metric": "hits", "period": "day", "value": 100}]})
    busy = new_app(w, concurrent_plan)
    for e in (a, b):
        wait_known(e, busy["key"])
        wait_status(e, busy["key"], 200, streak_needed=1)
    time.sleep(1.5)
    rate, seconds = 40, 6  # per Envoy; bounded

    def hammer(envoy, out):
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            out.append(call(envoy.port, "/items", headers={"x-api-key": busy["key"]}).status)
            time.sleep(1 / rate)

    results = [[], []]
    threads = [threading.Thread(target=hammer, args=(e, r)) for e, r in zip((a, b), results)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    admitted = sum(1 for r in w["upstream"].requests if r["headers"].get("x-tollgate-application") == busy["id"])
    bound = 100 + 2 * rate * (0.5 + 0.2 + 0.3)  # flush + poll + one report's round trip
    print(f"\nglobal quota 100/day, 2 Envoys at ~{rate} req/s each for {seconds} s: {admitted} admitted "
          f"(bound {bound:.0f})")
    assert 100 <= admitted <= bound, admitted


def test_usage_survives_a_listener_update(loop, tmp_path):
    """A listener update (LDS) replaces the filter's configuration between requests: the usage the
    old configuration metered and had not reported yet still reaches the control plane, once (its
    journal is adopted by the new one)."""
    w = loop
    shell, upstream = w["shell"], w["upstream"]
    app = new_app(w)
    port = free_port()
    lds = ListenersFile(tmp_path)
    cluster = static_cluster("tollgate_control_plane", w["server"].port)

    def publish(version):
        lds.publish(version, [versioned(http_listener("api", port, {"route": {"cluster": "upstream"}},
                                                      [tollgate_filter(w["config"], shell)]), version)])

    publish(1)
    envoy = lds.serve(Envoy(bootstrap(port, free_port(), upstream.port, [], [cluster]), shell=shell))
    w["extra"].append(envoy.start())
    wait_status(envoy, app["key"], 200)
    key = {"x-api-key": app["key"]}
    for version in (2, 3):
        # Traffic, then an update right away: usage is still unreported in the old configuration.
        assert {call(port, "/items", headers=key).status for _ in range(20)} == {200}
        publish(version)
        lds.wait_applied(envoy, version)
    assert {call(port, "/items", headers=key).status for _ in range(20)} == {200}
    admitted = sum(1 for r in upstream.requests if r["headers"].get("x-tollgate-application") == app["id"])
    # A replaced configuration's journal is adopted once its heartbeat is 10 s stale.
    metered = wait_usage(w, app["id"], admitted, timeout_s=45)
    print(f"\nlistener updates ({shell} shell): {admitted} admitted at the upstream, {metered} metered")
    assert metered == admitted


def test_two_services_in_one_envoy_keep_their_usage_apart(loop, tmp_path):
    """Two services behind one Envoy, one of them updated (LDS) twice: the replaced
    configuration's journal is adopted by a link of its own service only. A link of the other
    service that adopted it would report applications out of its scope, which the control plane
    refuses for the whole report, and the usage in it would be lost. Each service has its own
    counter namespace (native: `shared_data_id`, by default the service; wasm: its own `vm_id`)."""
    w = loop
    shell, upstream, api = w["shell"], w["upstream"], w["api"]
    svc2 = api.ok("POST", "/services", {"name": "Other"})
    api.ok("POST", f"/services/{svc2['id']}/mapping_rules", {"method": "GET", "pattern": "/", "metric": "hits"})
    plan2 = api.ok("POST", "/plans", {"service_id": svc2["id"], "name": "Basic",
                                      "limits": [{"metric": "hits", "period": "day", "value": 1_000_000}]})
    gw2 = api.ok("POST", "/gateway_tokens", {"name": "envoy-2", "service_ids": [svc2["id"]]})
    # Reports every 5 s: a configuration replaced right after traffic still holds its usage,
    # which only the journal's adopter can deliver.
    slow = {**w["config"]["control_plane"], "flush_interval_ms": 5_000}
    config1 = {**w["config"], "control_plane": slow}
    config2 = {**w["config"], "service_id": svc2["id"], "control_plane": {**slow, "token": gw2["token"]}}
    app1, app2 = new_app(w), new_app(w, plan2)
    port1, port2 = free_port(), free_port()
    lds = ListenersFile(tmp_path)
    cluster = static_cluster("tollgate_control_plane", w["server"].port)

    def stanza(config, vm_id):
        return tollgate_filter(config, shell) if shell == "native" else wasm_filter(config, vm_id=vm_id)

    def publish(version):
        # Only the first service's listener changes: its configuration is replaced.
        one = versioned(http_listener("api1", port1, {"route": {"cluster": "upstream"}}, [stanza(config1, "svc1")]),
                        version)
        two = http_listener("api2", port2, {"route": {"cluster": "upstream"}}, [stanza(config2, "svc2")])
        lds.publish(version, [one, two])

    publish(1)
    envoy = lds.serve(Envoy(bootstrap(port1, free_port(), upstream.port, [], [cluster]), shell=shell))
    # Replaced configurations go a second after the update, their usage still unreported.
    envoy.extra_args = ["--drain-time-s", "1"]
    w["extra"].append(envoy.start())

    def until_admitted(port, key):
        deadline = time.monotonic() + PROPAGATION_TIMEOUT_S
        while call(port, "/items", headers={"x-api-key": key}).status != 200:
            assert time.monotonic() < deadline, envoy.log()[-3000:]
            time.sleep(0.05)

    until_admitted(port1, app1["key"])
    until_admitted(port2, app2["key"])
    for version in (2, 3):
        for port, app in ((port2, app2), (port1, app1)):
            assert {call(port, "/items", headers={"x-api-key": app["key"]}).status for _ in range(10)} == {200}
        publish(version)
        lds.wait_applied(envoy, version)
    for app in (app1, app2):
        admitted = sum(1 for r in upstream.requests if r["headers"].get("x-tollgate-application") == app["id"])
        # A replaced configuration's journal is adopted once its heartbeat is 10 s stale.
        metered = wait_usage(w, app["id"], admitted, timeout_s=45)
        print(f"\ntwo services ({shell} shell), {app['id']}: {admitted} admitted, {metered} metered")
        assert metered == admitted, envoy.log()[-3000:]
    envoy.stop()  # Envoy writes its whole log out on exit
    log = envoy.log()
    print(f"{log.count('adopted the usage journal')} journals adopted, "
          f"{log.count('configuration destroyed')} configurations destroyed")
    assert "application_out_of_scope" not in log
