"""Three `tollgate serve` replicas on one PostgreSQL behind a load balancer (a real Envoy, round
robin), with two gateways (a real Envoy with the wasm shell and one with the native shell, two
workers each) that reach the control plane only through that balancer (issue 17, item 3).

Whichever replica answers: every admitted hit is counted exactly once (also with a replica killed
by SIGKILL in the middle of the traffic), a change made through one replica reaches every worker
of both gateways, whose held snapshot polls wait on other replicas; a session opened on one replica
works on the others, and one Idempotency-Key creates one object whichever replicas its retries
reach. (One billing run among replicas: tests/test_billing_replicas.py.)"""

import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from conftest import ADMIN_TOKEN, call
from support.control_plane import Api, Database, Server
from support.envoy import Envoy, bootstrap, free_port, http_listener, tollgate_filter
from test_loop import PROPAGATION_TIMEOUT_S, wait_known, wait_status
from test_portal import Browser

# Not beside other tests (tests/pytest.ini): five processes under load, and a replica killed on purpose.
pytestmark = pytest.mark.exclusive

REPLICAS = 3
APPS = 12
#: Requests sent through the two gateways (half each), by CLIENTS threads; bounded in count.
REQUESTS = 1_200
CLIENTS = 12


def balancer(port, admin_port, replica_ports):
    """An Envoy in front of the replicas: round robin; a request whose connection is refused (a
    dead replica) goes to another one. Nothing is retried once sent: a POST is never doubled by
    the balancer (usage reports are safe to retry anyway; the gateway retries them itself)."""
    return {
        "admin": {"address": {"socket_address": {"address": "127.0.0.1", "port_value": admin_port}}},
        "static_resources": {
            "listeners": [http_listener("lb", port, {"route": {
                "cluster": "replicas", "timeout": "30s",
                "retry_policy": {
                    "retry_on": "connect-failure,reset-before-request", "num_retries": REPLICAS,
                    # Another replica than the one that refused, as a load balancer in front of
                    # replicas is set up.
                    "retry_host_predicate": [{
                        "name": "envoy.retry_host_predicates.previous_hosts",
                        "typed_config": {"@type": "type.googleapis.com/envoy.extensions.retry.host."
                                                  "previous_hosts.v3.PreviousHostsPredicate"}}],
                    "host_selection_retry_max_attempts": 5}}})],
            "clusters": [{
                "name": "replicas", "type": "STATIC", "connect_timeout": "1s", "lb_policy": "ROUND_ROBIN",
                # Envoy allows 3 retries in flight per cluster by default; every request a dead
                # replica refuses is one.
                "circuit_breakers": {"thresholds": [{"max_retries": 1000}]},
                "load_assignment": {"cluster_name": "replicas", "endpoints": [{"lb_endpoints": [
                    {"endpoint": {"address": {"socket_address": {"address": "127.0.0.1", "port_value": p}}}}
                    for p in replica_ports]}]},
            }],
        },
    }


@pytest.fixture
def replicas(upstream):
    db = Database("postgres")
    servers, envoys = [], []
    try:
        for _ in range(REPLICAS):
            servers.append(Server(db, ADMIN_TOKEN).start())
        lb = Envoy(balancer(free_port(), free_port(), [s.port for s in servers]), concurrency=1).start()
        envoys.append(lb)
        api = Api(f"http://127.0.0.1:{lb.port}", ADMIN_TOKEN)
        svc = api.ok("POST", "/services", {"name": "Replicated"})
        api.ok("POST", f"/services/{svc['id']}/mapping_rules", {"method": "GET", "pattern": "/", "metric": "hits"})
        plan = api.ok("POST", "/plans", {"service_id": svc["id"], "name": "Big",
                                         "limits": [{"metric": "hits", "period": "day", "value": 1_000_000}]})
        acct = api.ok("POST", "/accounts", {"name": "Dev", "email": "dev@example.com"})
        gw = api.ok("POST", "/gateway_tokens", {"name": "edge", "service_ids": [svc["id"]]})
        config = {"service_id": svc["id"],
                  "control_plane": {"cluster": "tollgate_control_plane", "authority": "tollgate",
                                    "token": gw["token"], "poll_interval_ms": 500, "flush_interval_ms": 500,
                                    "timeout_ms": 2000}}
        cp_cluster = {"name": "tollgate_control_plane", "type": "STATIC", "connect_timeout": "1s",
                      "load_assignment": {"cluster_name": "tollgate_control_plane", "endpoints": [{"lb_endpoints": [
                          {"endpoint": {"address": {"socket_address": {"address": "127.0.0.1",
                                                                       "port_value": lb.port}}}}]}]}}
        gateways = []
        for shell in ("wasm", "native"):
            e = Envoy(bootstrap(free_port(), free_port(), upstream.port, [tollgate_filter(config, shell)],
                                [cp_cluster]), concurrency=2, shell=shell).start()
            envoys.append(e)
            e.wait_snapshot()
            gateways.append(e)
        yield {"db": db, "servers": servers, "lb": lb, "api": api, "plan": plan, "account": acct,
               "gateways": gateways}
    finally:
        for e in envoys:
            e.stop()
        for s in servers:
            s.stop()
        db.drop()


def usage(api, app_id):
    return api.ok("GET", f"/applications/{app_id}/usage?metric=hits&period=day")["total"]


def test_every_hit_counted_once_whichever_replica_answers_even_one_killed(replicas):
    w = replicas
    api = w["api"]
    apps = [api.ok("POST", "/applications", {"account_id": w["account"]["id"], "plan_id": w["plan"]["id"],
                                             "name": f"app{i}"}) for i in range(APPS)]
    for g in w["gateways"]:
        for a in apps:
            wait_known(g, a["key"])  # without counting anything
    before = {a["id"]: usage(api, a["id"]) for a in apps}
    assert set(before.values()) == {0}
    admitted = {a["id"]: 0 for a in apps}
    lock = threading.Lock()
    sent = iter(range(REQUESTS))
    killed = threading.Event()

    def client(n):
        while True:
            with lock:
                i = next(sent, None)
            if i is None:
                return
            if i == REQUESTS // 2 and not killed.is_set():
                # SIGKILL, mid-traffic: what it had acknowledged is committed, what it had not
                # the gateway sends again to another replica.
                w["servers"][1].kill()
                killed.set()
            app = apps[i % APPS]
            st = call(w["gateways"][i % 2].port, "/items", headers={"x-api-key": app["key"]}).status
            assert st == 200, st
            with lock:
                admitted[app["id"]] += 1

    with ThreadPoolExecutor(CLIENTS) as pool:
        for f in [pool.submit(client, n) for n in range(CLIENTS)]:
            f.result()
    assert killed.is_set() and sum(admitted.values()) == REQUESTS
    expected = {k: before[k] + v for k, v in admitted.items()}
    deadline = time.monotonic() + 30
    got = {}
    while time.monotonic() < deadline:
        got = {a["id"]: usage(api, a["id"]) for a in apps}
        if got == expected:
            break
        time.sleep(0.5)
    assert got == expected
    # And it stays there: nothing arrives twice later (a report retried after its replica died).
    time.sleep(2)
    assert {a["id"]: usage(api, a["id"]) for a in apps} == expected


def test_a_change_through_any_replica_reaches_both_gateways(replicas):
    w = replicas
    api = w["api"]
    app = api.ok("POST", "/applications", {"account_id": w["account"]["id"], "plan_id": w["plan"]["id"],
                                           "name": "moving"})
    figures = [wait_status(g, app["key"], 200) for g in w["gateways"]]
    # Each write goes to the next replica (round robin); gateways hold their polls on any replica.
    for i in range(3):
        api.ok("POST", f"/applications/{app['id']}/suspend", {"reason": "non_payment"}, status=200)
        figures += [wait_status(g, app["key"], 402, timeout_s=PROPAGATION_TIMEOUT_S) for g in w["gateways"]]
        api.ok("POST", f"/applications/{app['id']}/resume", status=200)
        figures += [wait_status(g, app["key"], 200, timeout_s=PROPAGATION_TIMEOUT_S) for g in w["gateways"]]
    print(f"\nchange through replica i -> both gateways: max {max(figures) * 1000:.0f} ms")


def test_sessions_and_idempotency_hold_across_replicas(replicas):
    w = replicas
    # Every request of this browser goes through the balancer: sign-in form, sign-in, pages on
    # whichever replica is next.
    b = Browser(w["lb"].port)
    st, headers, _ = b.submit("/admin/sign_in", {"token": ADMIN_TOKEN})
    assert st == 303, (st, headers)
    for _ in range(REPLICAS * 2):
        st, headers, html = b.request("GET", "/admin")
        assert st == 200, (st, headers)
    # One key, sent to every replica at once: one account, the same answer everywhere.
    apis = [Api(s.base, ADMIN_TOKEN) for s in w["servers"]]
    body = {"name": "Once", "email": "once@example.com"}
    barrier = threading.Barrier(REPLICAS * 2)

    def post(i):
        barrier.wait(timeout=30)
        return apis[i % REPLICAS].call("POST", "/admin/api/v1/accounts", body, headers={"Idempotency-Key": "acct-once"})

    with ThreadPoolExecutor(REPLICAS * 2) as pool:
        answers = list(pool.map(post, range(REPLICAS * 2)))
    created = [a for st, a, _ in answers if st == 201]
    assert created, answers
    assert len({a["id"] for a in created}) == 1, answers
    # The others were told to retry (a concurrent request holds the key) or got the same answer.
    assert all(st in (201, 409) for st, _, _ in answers), answers
    assert w["db"].query("SELECT COUNT(*) FROM accounts WHERE email = 'once@example.com'") == ["1"]
