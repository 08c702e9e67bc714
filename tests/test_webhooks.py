"""Outbound webhooks (issue 20, item 1) through real `tollgate serve` processes on SQLite and
PostgreSQL, delivered to a real HTTP receiver whose signatures are verified by the
`standardwebhooks` package (the specification's library, not ours): every event the API can
cause arrives signed, a failing endpoint gets the event once with the same webhook-id after its
retries, a control plane killed mid-delivery delivers after restart, two replicas enqueueing and
delivering concurrently deliver each event once per endpoint, secrets are shown once, outbound
URLs follow the rule, accounts see only their own endpoints and events, and an endpoint failing
for its whole retry window is disabled with an email to the admin."""

import json
import re
import threading
import time

import pytest

from conftest import ADMIN_TOKEN
from support.control_plane import Api, Server
from support.smtp import SmtpSink
from support.webhook_receiver import WebhookReceiver
from test_billing import db, start_server  # noqa: F401
from test_control_plane import assert_error
from test_stripe import DECLINED, GOOD, add_card, developer, issue, stripe, use_stripe, world  # noqa: F401

MASTER_KEY = "webhook-test-master-key-" + "w" * 32
ADMIN_EMAIL = "ops@provider.example"
#: The test-only retry schedule: 100 ms, doubling to at most 400 ms (the default is 5 s to 12 h
#: over three days).
FAST_RETRIES = {"TOLLGATE_WEBHOOK_RETRY_FIRST_MS": "100", "TOLLGATE_WEBHOOK_RETRY_MAX_MS": "400"}
SUBSCRIBABLE = ["invoice.issued", "invoice.paid", "invoice.payment_failed", "invoice.overdue",
                "application.created", "application.suspended", "application.resumed", "key.created",
                "key.rotated", "key.revoked", "plan.changed"]
#: The sender's lease on a claimed delivery (deliver.rs DELIVERY_LEASE_MS): a delivery cut by a
#: SIGKILL is taken again after it.
LEASE_S = 30


@pytest.fixture
def receiver():
    r = WebhookReceiver().start()
    yield r
    r.stop()


@pytest.fixture
def sink():
    s = SmtpSink().start()
    yield s
    s.stop()


def serve(db, sink=None, **env):  # noqa: F811
    return start_server(db, sink, TOLLGATE_MASTER_KEY=MASTER_KEY, TOLLGATE_ADMIN_EMAIL=ADMIN_EMAIL,
                        **{**FAST_RETRIES, **env})


@pytest.fixture
def hooks(db, sink):  # noqa: F811
    srv = serve(db, sink)
    yield srv, Api(srv.base, ADMIN_TOKEN)
    srv.stop()


def create_endpoint(api, receiver, name, events, prefix="/admin/api/v1"):
    st, body, _ = api.call("POST", f"{prefix}/webhook_endpoints", {"url": receiver.url(name), "events": events})
    assert st == 201, body
    assert body["secret"].startswith("whsec_") and body["enabled"] is True
    return body


def catalog(api, name="Acme"):
    acct = api.ok("POST", "/accounts", {"name": name, "email": f"{name.lower()}@example.com"})
    svc = api.ok("POST", "/services", {"name": f"svc {name} {time.monotonic_ns()}"})
    plan = api.ok("POST", "/plans", {"service_id": svc["id"], "name": "P"})
    other = api.ok("POST", "/plans", {"service_id": svc["id"], "name": "Q"})
    return acct, plan, other


def deliveries_when(api, endpoint_id, predicate, timeout=10):
    """The endpoint's delivery log once `predicate(log)` holds (an outcome is recorded just after
    the receiver answered)."""
    deadline = time.monotonic() + timeout
    while True:
        log = api.ok("GET", f"/webhook_endpoints/{endpoint_id}/deliveries?limit=100")["data"]
        if predicate(log) or time.monotonic() > deadline:
            return log
        time.sleep(0.1)


def types(payloads):
    return sorted(p["type"] for p in payloads)


def test_every_event_the_api_causes_arrives_signed_once(hooks, receiver):
    srv, api = hooks
    ep = create_endpoint(api, receiver, "all", SUBSCRIBABLE)
    acct, plan, other = catalog(api)
    app = api.ok("POST", "/applications", {"account_id": acct["id"], "plan_id": plan["id"], "name": "Mobile"})
    key = api.ok("POST", f"/applications/{app['id']}/keys")
    rotated = api.ok("POST", f"/applications/{app['id']}/keys/{key['id']}/rotate", {"grace_seconds": 60})
    api.ok("DELETE", f"/applications/{app['id']}/keys/{rotated['id']}")
    api.ok("POST", f"/applications/{app['id']}/suspend", {}, status=200)
    api.ok("POST", f"/applications/{app['id']}/suspend", {}, status=200)  # no change: no event
    api.ok("POST", f"/applications/{app['id']}/resume", {}, status=200)
    api.ok("PATCH", f"/applications/{app['id']}", {"plan_id": other["id"]})
    api.ok("PATCH", f"/applications/{app['id']}", {"name": "Renamed"})  # same plan: no event
    copy = api.ok("POST", f"/applications/{app['id']}/customize_plan")
    inv = api.ok("POST", "/invoices", {"account_id": acct["id"]})
    api.ok("POST", f"/invoices/{inv['id']}/lines", {"description": "Consulting", "unit_price": "12.5"})
    api.ok("POST", f"/invoices/{inv['id']}/issue", status=200)
    api.ok("POST", f"/invoices/{inv['id']}/pay", status=200)
    test = api.ok("POST", f"/webhook_endpoints/{ep['id']}/test")
    assert test["event_type"] == "webhook.test" and test["state"] == "pending"

    expected = sorted(["application.created", "key.created", "key.created", "key.rotated", "key.revoked",
                       "application.suspended", "application.resumed", "plan.changed", "plan.changed",
                       "invoice.issued", "invoice.paid", "webhook.test"])
    receiver.wait_for("all", lambda got: len(got) >= len(expected))
    time.sleep(1)  # anything extra would arrive now
    got = receiver.delivered("all", ep["secret"])  # every one verified by standardwebhooks
    assert types(got.values()) == expected
    assert all(i.startswith("msg_") for i in got)
    by_type = {}
    for p in got.values():
        by_type.setdefault(p["type"], []).append(p)
        assert p["timestamp"].endswith("Z")
    assert by_type["application.created"][0]["data"] == {
        "application_id": app["id"], "account_id": acct["id"], "plan_id": plan["id"], "name": "Mobile",
        "state": "live", "state_reason": None}
    [rot] = by_type["key.rotated"]
    assert rot["data"]["replaced_key_id"] == key["id"] and rot["data"]["key_id"] == rotated["id"]
    assert rot["data"]["prefix"] == rotated["key"][:7]
    assert [p["data"]["key_id"] for p in by_type["key.revoked"]] == [rotated["id"]]
    assert by_type["application.suspended"][0]["data"]["state_reason"] == "admin"
    changes = sorted((p["data"]["previous_plan_id"], p["data"]["plan_id"]) for p in by_type["plan.changed"])
    assert changes == sorted([(plan["id"], other["id"]), (other["id"], copy["id"])])
    issued, paid = by_type["invoice.issued"][0]["data"], by_type["invoice.paid"][0]["data"]
    assert (issued["invoice_id"], issued["state"], issued["total"], issued["currency"]) == (inv["id"], "pending", "12.50", "USD")
    assert issued["number"] and paid["state"] == "paid" and paid["number"] == issued["number"]
    # No key material in any payload.
    assert app["key"] not in json.dumps(list(got.values())) and rotated["key"] not in json.dumps(list(got.values()))
    # The delivery log: each delivered once, status 200, a latency, the same ids the receiver saw.
    log = deliveries_when(api, ep["id"], lambda log: all(d["state"] == "delivered" for d in log))
    assert sorted(d["event_id"] for d in log) == sorted(got)
    assert all(d["state"] == "delivered" and d["attempts"] == 1 and d["last_status_code"] == 200
               and d["latency_ms"] is not None and d["delivered_at"] and d["next_attempt_at_ms"] is None
               for d in log), log
    assert api.ok("GET", f"/webhook_endpoints/{ep['id']}")["last_success_at"]


def test_only_subscribed_events_and_the_secret_is_shown_once(hooks, receiver):
    srv, api = hooks
    ep = create_endpoint(api, receiver, "keys", ["key.revoked", "key.created", "key.created"])
    assert ep["events"] == ["key.created", "key.revoked"]
    secret = ep["secret"]
    for body in [api.ok("GET", f"/webhook_endpoints/{ep['id']}"), api.ok("GET", "/webhook_endpoints"),
                 api.ok("PATCH", f"/webhook_endpoints/{ep['id']}", {"description": "keys only"})]:
        assert secret not in json.dumps(body) and "secret" not in json.dumps(body)
    assert secret not in srv.db.raw_dump() and secret[6:] not in srv.db.raw_dump(), "sealed at rest"
    assert srv.db.query(f"SELECT secret_sealed FROM webhook_endpoints WHERE id = '{ep['id']}'")[0].startswith("v2:")
    acct, plan, _ = catalog(api)
    app = api.ok("POST", "/applications", {"account_id": acct["id"], "plan_id": plan["id"], "name": "A"})
    api.ok("POST", f"/applications/{app['id']}/suspend", {}, status=200)
    got = receiver.wait_for("keys", lambda g: len(g) >= 1)
    time.sleep(1)
    assert types(receiver.delivered("keys", secret).values()) == ["key.created"]
    # A receiver holding a wrong secret refuses every one (the verification is real).
    with pytest.raises(Exception):
        receiver.verified("keys", "whsec_" + "A" * 32)
    assert got


def test_unknown_events_and_bad_input_are_refused_with_the_list(hooks, receiver):
    _, api = hooks
    err = assert_error(api.post("/webhook_endpoints", {"url": receiver.url("x"), "events": ["invoice.paid", "invoice.pied"]}),
                       422, "unknown_event_type", "events[1]")
    assert all(name in err["message"] for name in SUBSCRIBABLE)
    assert_error(api.post("/webhook_endpoints", {"url": receiver.url("x"), "events": ["webhook.test"]}), 422, "unknown_event_type")
    assert_error(api.post("/webhook_endpoints", {"url": receiver.url("x"), "events": []}), 422, "missing_events")
    assert_error(api.post("/webhook_endpoints", {"url": receiver.url("x")}), 422, "missing_events")
    assert_error(api.post("/webhook_endpoints", {"events": ["invoice.paid"]}), 422, "missing_field", "url")
    assert_error(api.post("/webhook_endpoints", {"url": receiver.url("x"), "events": ["invoice.paid"], "secret": "whsec_mine"}), 400)
    assert_error(api.post("/webhook_endpoints", {"url": "https://" + "a" * 2100 + ".example/", "events": ["invoice.paid"]}),
                 422, "invalid_url")
    ep = create_endpoint(api, receiver, "x", ["invoice.paid"])
    assert_error(api.patch(f"/webhook_endpoints/{ep['id']}", {"events": ["nope"]}), 422, "unknown_event_type")
    assert api.ok("GET", f"/webhook_endpoints/{ep['id']}")["events"] == ["invoice.paid"], "nothing changed"
    assert_error(api.get("/webhook_endpoints/we_missing"), 404)
    assert_error(api.post("/webhook_deliveries/whd_missing/replay"), 404)
    api.ok("DELETE", f"/webhook_endpoints/{ep['id']}")
    assert_error(api.get(f"/webhook_endpoints/{ep['id']}"), 404)


def test_plain_http_and_private_urls_are_refused_without_the_opt_in(db):  # noqa: F811
    srv = serve(db, TOLLGATE_ALLOW_LOOPBACK_URLS="false")
    try:
        api = Api(srv.base, ADMIN_TOKEN)
        for url in ["http://127.0.0.1:9/hook", "https://localhost/hook", "http://hooks.example.com/",
                    "https://10.0.0.1/", "https://192.168.1.1/", "https://169.254.169.254/latest",
                    "https://[fd00::1]/", "https://[::1]/", "https://0.0.0.0/", "ftp://hooks.example.com/",
                    "https://user:pw@hooks.example.com/"]:
            err = assert_error(api.post("/webhook_endpoints", {"url": url, "events": ["invoice.paid"]}), 422, "invalid_url", "url")
            assert "TOLLGATE_ALLOW_LOOPBACK_URLS" in err["message"]
        ep = api.ok("POST", "/webhook_endpoints", {"url": "https://hooks.example.com/tollgate", "events": ["invoice.paid"]})
        assert_error(api.patch(f"/webhook_endpoints/{ep['id']}", {"url": "http://127.0.0.1:9/"}), 422, "invalid_url")
        assert srv.db.query("SELECT COUNT(*) FROM webhook_endpoints") == ["1"]
    finally:
        srv.stop()


def test_private_urls_stay_refused_with_the_opt_in_and_a_master_key_is_required(db, receiver):  # noqa: F811
    srv = serve(db)
    try:
        api = Api(srv.base, ADMIN_TOKEN)
        for url in ["https://10.0.0.1/", "http://169.254.169.254/", "https://[fe80::1]/", "http://hooks.example.com/"]:
            assert_error(api.post("/webhook_endpoints", {"url": url, "events": ["invoice.paid"]}), 422, "invalid_url")
        create_endpoint(api, receiver, "ok", ["invoice.paid"])
    finally:
        srv.stop()
    srv = start_server(db)  # no TOLLGATE_MASTER_KEY
    try:
        api = Api(srv.base, ADMIN_TOKEN)
        assert_error(api.post("/webhook_endpoints", {"url": receiver.url("x"), "events": ["invoice.paid"]}),
                     409, "master_key_required")
    finally:
        srv.stop()


def test_a_failing_endpoint_gets_the_event_once_with_the_same_id_after_retries(hooks, receiver):
    srv, api = hooks
    ep = create_endpoint(api, receiver, "flaky", ["application.created"])
    receiver.fail("flaky", [500, 503, 404, 302, 400])  # five failures, then 200
    acct, plan, _ = catalog(api)
    api.ok("POST", "/applications", {"account_id": acct["id"], "plan_id": plan["id"], "name": "A"})
    got = receiver.wait_for("flaky", lambda g: any(r.status == 200 for r in g))
    time.sleep(1)
    got = receiver.of("flaky")
    assert [r.status for r in got] == [500, 503, 404, 302, 400, 200]
    assert len({r.id for r in got}) == 1, "the same webhook-id on every attempt"
    assert len({r.body for r in got}) == 1, "the same body on every attempt"
    assert len({r.headers["webhook-timestamp"] for r in got}) >= 2, "each attempt signed at its own time"
    delivered = receiver.delivered("flaky", ep["secret"])
    assert list(delivered) == [got[0].id]
    # Retries were spaced by the (shortened) exponential schedule: at least the 100 ms floor.
    gaps = [b.at - a.at for a, b in zip(got, got[1:])]
    assert all(g >= 0.09 for g in gaps), gaps
    [d] = deliveries_when(api, ep["id"], lambda log: log[0]["state"] == "delivered")
    assert (d["state"], d["attempts"], d["last_status_code"], d["event_id"]) == ("delivered", 6, 200, got[0].id)
    attempts = srv.db.query(f"SELECT attempt, status_code FROM webhook_attempts WHERE delivery_id = '{d['id']}' ORDER BY attempt")
    assert attempts == ["1|500", "2|503", "3|404", "4|302", "5|400", "6|200"]
    # Manual replay: the same id and body again, now.
    replayed = api.ok("POST", f"/webhook_deliveries/{d['id']}/replay", status=200)
    assert replayed["state"] == "pending" and replayed["attempts"] == 0
    again = receiver.wait_for("flaky", lambda g: len(g) == 7)
    assert again[-1].id == got[0].id and again[-1].body == got[0].body and again[-1].status == 200


def test_a_control_plane_killed_mid_delivery_delivers_after_restart(hooks, receiver):
    srv, api = hooks
    ep = create_endpoint(api, receiver, "slow", ["application.created"])
    receiver.hang("slow", 4, count=1)
    acct, plan, _ = catalog(api)
    api.ok("POST", "/applications", {"account_id": acct["id"], "plan_id": plan["id"], "name": "A"})
    deadline = time.monotonic() + 20
    while not receiver.arrivals and time.monotonic() < deadline:
        time.sleep(0.02)
    assert receiver.arrivals, "the first attempt started"
    srv.kill()  # SIGKILL while the receiver holds the request
    [row] = srv.db.query("SELECT state FROM webhook_deliveries")
    assert row == "delivering", "claimed, with a lease, when the process died"
    srv.start()
    got = receiver.wait_for("slow", lambda g: len(g) >= 2, timeout=LEASE_S + 30)
    ids = {r.id for r in got}
    assert len(ids) == 1, "the redelivery carries the same webhook-id (receivers drop the copy)"
    for _, payload, _ in receiver.verified("slow", ep["secret"]):
        assert payload["type"] == "application.created"
    [d] = deliveries_when(api, ep["id"], lambda log: log[0]["state"] == "delivered")
    assert d["state"] == "delivered" and d["attempts"] == 2, d


def test_two_replicas_enqueueing_concurrently_deliver_each_event_once_per_endpoint(db, sink, receiver):  # noqa: F811
    first = serve(db, sink)
    # A second replica on the same database: its own sender claims from the same outbox.
    env = {k: v for k, v in first.env.items() if k.startswith("TOLLGATE_") and k != "TOLLGATE_LISTEN"}
    second = Server(db, ADMIN_TOKEN, extra_env=env).start()
    try:
        a, b = Api(first.base, ADMIN_TOKEN), Api(second.base, ADMIN_TOKEN)
        one = create_endpoint(a, receiver, "one", ["application.created", "key.created"])
        two = create_endpoint(b, receiver, "two", ["application.created"])
        acct, plan, _ = catalog(a)
        apps, errors = [], []

        def make(api, n):
            for i in range(n):
                st, body, _ = api.call("POST", "/admin/api/v1/applications",
                                       {"account_id": acct["id"], "plan_id": plan["id"], "name": f"app {i}"})
                (apps if st == 201 else errors).append(body if st == 201 else (st, body))

        threads = [threading.Thread(target=make, args=(api, 15)) for api in (a, b, a, b)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert not [e for e in errors if e[0] != 503], errors
        n = len(apps)
        assert n >= 50
        receiver.wait_for("one", lambda g: len(g) >= 2 * n, timeout=60)
        receiver.wait_for("two", lambda g: len(g) >= n, timeout=60)
        time.sleep(2)  # a duplicate would arrive now
        one_got = receiver.delivered("one", one["secret"])  # fails on any id delivered twice
        two_got = receiver.delivered("two", two["secret"])
        assert len(receiver.of("one")) == 2 * n and len(receiver.of("two")) == n, "no retries, no copies"
        assert sorted(p["data"]["application_id"] for p in two_got.values()) == sorted(x["id"] for x in apps)
        assert types(one_got.values()) == ["application.created"] * n + ["key.created"] * n
        # One event, one id, whichever endpoints it goes to.
        created_one = {p["data"]["application_id"]: i for i, p in one_got.items() if p["type"] == "application.created"}
        assert created_one == {p["data"]["application_id"]: i for i, p in two_got.items()}
    finally:
        second.stop()
        first.stop()


def test_accounts_see_and_receive_only_their_own(hooks, receiver):
    srv, api = hooks
    admin_ep = create_endpoint(api, receiver, "admin", ["application.created"])
    acct_a, plan, _ = catalog(api, "Ann")
    acct_b = api.ok("POST", "/accounts", {"name": "Bob", "email": "bob@example.com"})
    dev_a = Api(srv.base, api.ok("POST", f"/accounts/{acct_a['id']}/tokens", {})["token"])
    dev_b = Api(srv.base, api.ok("POST", f"/accounts/{acct_b['id']}/tokens", {})["token"])
    ep_a = create_endpoint(dev_a, receiver, "ann", ["application.created", "key.created"], prefix="/api/v1")
    ep_b = create_endpoint(dev_b, receiver, "bob", ["application.created"], prefix="/api/v1")
    assert ep_a["account_id"] == acct_a["id"] and ep_b["account_id"] == acct_b["id"]
    # Another account's endpoint is not there at all.
    for method, path, body in [("GET", f"/api/v1/webhook_endpoints/{ep_a['id']}", None),
                               ("PATCH", f"/api/v1/webhook_endpoints/{ep_a['id']}", {"enabled": False}),
                               ("DELETE", f"/api/v1/webhook_endpoints/{ep_a['id']}", None),
                               ("POST", f"/api/v1/webhook_endpoints/{ep_a['id']}/test", {}),
                               ("GET", f"/api/v1/webhook_endpoints/{ep_a['id']}/deliveries", None)]:
        assert_error(dev_b.call(method, path, body), 404)
    assert [e["id"] for e in dev_b.call("GET", "/api/v1/webhook_endpoints")[1]["data"]] == [ep_b["id"]]
    # An account cannot name whose events it wants.
    assert_error(dev_b.call("POST", "/api/v1/webhook_endpoints",
                            {"url": receiver.url("bob2"), "events": ["application.created"], "account_id": acct_a["id"]}), 400)
    # The admin sees every endpoint; developers' tokens do not open the admin API.
    assert {e["id"] for e in api.ok("GET", "/webhook_endpoints")["data"]} == {admin_ep["id"], ep_a["id"], ep_b["id"]}
    assert dev_a.call("GET", "/admin/api/v1/webhook_endpoints")[0] == 401
    app_a = api.ok("POST", "/applications", {"account_id": acct_a["id"], "plan_id": plan["id"], "name": "A"})
    app_b = api.ok("POST", "/applications", {"account_id": acct_b["id"], "plan_id": plan["id"], "name": "B"})
    receiver.wait_for("admin", lambda g: len(g) >= 2)
    receiver.wait_for("ann", lambda g: len(g) >= 2)
    receiver.wait_for("bob", lambda g: len(g) >= 1)
    time.sleep(1)
    ann = receiver.delivered("ann", ep_a["secret"]).values()
    bob = receiver.delivered("bob", ep_b["secret"]).values()
    assert {p["data"]["account_id"] for p in ann} == {acct_a["id"]} and types(ann) == ["application.created", "key.created"]
    assert [p["data"]["application_id"] for p in bob] == [app_b["id"]]
    admin = receiver.delivered("admin", admin_ep["secret"]).values()
    assert sorted(p["data"]["application_id"] for p in admin) == sorted([app_a["id"], app_b["id"]])
    # Deliveries of another account's endpoint cannot be replayed, nor read.
    [d_a] = [d for d in dev_a.call("GET", f"/api/v1/webhook_endpoints/{ep_a['id']}/deliveries")[1]["data"]
             if d["event_type"] == "application.created"]
    assert_error(dev_b.call("POST", f"/api/v1/webhook_deliveries/{d_a['id']}/replay", {}), 404)
    st, replayed, _ = dev_a.call("POST", f"/api/v1/webhook_deliveries/{d_a['id']}/replay", {})
    assert st == 200 and replayed["event_id"] == d_a["event_id"]
    # The developer's test event reaches only its endpoint.
    st, t, _ = dev_b.call("POST", f"/api/v1/webhook_endpoints/{ep_b['id']}/test", {})
    assert st == 201
    receiver.wait_for("bob", lambda g: any(json.loads(r.body)["type"] == "webhook.test" for r in g))
    assert not any(json.loads(r.body)["type"] == "webhook.test" for r in receiver.of("ann") + receiver.of("admin"))


def test_an_endpoint_failing_for_its_whole_window_is_disabled_and_the_admin_emailed(db, sink, receiver):  # noqa: F811
    srv = serve(db, sink, TOLLGATE_WEBHOOK_RETRY_WINDOW_SECS="2")
    try:
        api = Api(srv.base, ADMIN_TOKEN)
        ep = create_endpoint(api, receiver, "down", ["application.created"])
        receiver.fail("down", [500] * 10_000)
        d = api.ok("POST", f"/webhook_endpoints/{ep['id']}/test")
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            state = api.ok("GET", f"/webhook_endpoints/{ep['id']}")
            if not state["enabled"]:
                break
            time.sleep(0.1)
        assert (state["enabled"], state["disabled_reason"]) == (False, "failures"), state
        assert state["consecutive_failures"] >= 3
        tried = len(receiver.of("down"))
        [delivery] = api.ok("GET", f"/webhook_endpoints/{ep['id']}/deliveries")["data"]
        assert (delivery["id"], delivery["state"], delivery["last_status_code"]) == (d["id"], "failed", 500)
        assert delivery["last_error"].startswith("HTTP 500")
        [mail] = sink.wait_for(1)
        assert mail["To"] == ADMIN_EMAIL and ep["id"] in mail["Subject"]
        # Disabled: new events are not sent to it, a test and a replay are refused.
        acct, plan, _ = catalog(api)
        api.ok("POST", "/applications", {"account_id": acct["id"], "plan_id": plan["id"], "name": "A"})
        assert_error(api.post(f"/webhook_endpoints/{ep['id']}/test"), 409, "endpoint_disabled")
        assert_error(api.post(f"/webhook_deliveries/{d['id']}/replay"), 409, "endpoint_disabled")
        time.sleep(1)
        assert len(receiver.of("down")) == tried
        # Enabled again and answering: a replay delivers the given-up event, same id.
        receiver.fail("down", [])
        api.ok("PATCH", f"/webhook_endpoints/{ep['id']}", {"enabled": True})
        api.ok("POST", f"/webhook_deliveries/{d['id']}/replay", status=200)
        got = receiver.wait_for("down", lambda g: g[-1].status == 200)
        assert got[-1].id == d["event_id"]
        assert len(sink.messages()) == 1
    finally:
        srv.stop()


def test_the_cli_manages_endpoints_and_shows_the_secret_once(hooks, receiver):
    srv, api = hooks
    out = srv.cli("webhooks", "create", "--endpoint-url", receiver.url("cli"), "--event", "key.created",
                  "--event", "key.revoked", "--description", "from the CLI", check=True).stdout
    secret = next(line.split()[1] for line in out.splitlines() if line.startswith("secret"))
    assert secret.startswith("whsec_")
    [ep] = api.ok("GET", "/webhook_endpoints")["data"]
    assert ep["events"] == ["key.created", "key.revoked"] and ep["description"] == "from the CLI"
    for args in [("list",), ("show", ep["id"]), ("disable", ep["id"]), ("enable", ep["id"])]:
        shown = srv.cli("webhooks", *args, check=True).stdout
        assert ep["id"] in shown and secret not in shown and "whsec_" not in shown
    assert api.ok("GET", f"/webhook_endpoints/{ep['id']}")["enabled"] is True
    srv.cli("webhooks", "test", ep["id"], check=True)
    got = receiver.wait_for("cli", lambda g: len(g) >= 1)
    [(msg_id, payload, status)] = receiver.verified("cli", secret)
    assert payload["type"] == "webhook.test" and status == 200
    deadline = time.monotonic() + 10
    while "delivered" not in (log := srv.cli("webhooks", "deliveries", ep["id"], check=True).stdout):
        assert time.monotonic() < deadline, log
        time.sleep(0.2)
    assert msg_id in log
    bad = srv.cli("webhooks", "create", "--endpoint-url", "https://10.1.2.3/", "--event", "key.created")
    assert bad.returncode != 0 and "invalid_url" in bad.stderr + bad.stdout
    out = srv.cli("webhooks", "rotate-secret", ep["id"], "--grace-seconds", "60", check=True).stdout
    rotated = next(line.split()[1] for line in out.splitlines() if line.startswith("secret"))
    assert rotated.startswith("whsec_") and rotated != secret
    srv.cli("webhooks", "delete", ep["id"], check=True)
    assert api.ok("GET", "/webhook_endpoints")["data"] == [] and got


def test_charges_send_failed_overdue_suspended_then_paid_and_resumed(world, receiver):  # noqa: F811
    """Through localstripe: a declined last attempt sends invoice.payment_failed, invoice.overdue
    and application.suspended (non-payment); paying it sends invoice.paid and application.resumed."""
    w, api = world, world["api"]
    ep = create_endpoint(api, receiver, "pay", ["invoice.paid", "invoice.payment_failed", "invoice.overdue",
                                                "application.suspended", "application.resumed"])
    use_stripe(api, w["stripe"].base, {"suspend_on_failure": True, "retry": {"attempts": 1, "interval_days": 3}})
    acct, app, dev = developer(w, "Dora")
    add_card(w, dev, DECLINED)
    inv = issue(api, acct["id"], "15.00")
    st, failed, _ = api.call("POST", f"/admin/api/v1/invoices/{inv['id']}/charge", {})
    assert st == 200 and failed["state"] == "failed", failed
    receiver.wait_for("pay", lambda g: len(g) >= 3)
    good = add_card(w, dev, GOOD)
    st, paid, _ = dev.call("POST", f"/api/v1/invoices/{inv['id']}/pay", {"payment_method_id": good["id"]})
    assert st == 200 and paid["state"] == "paid", paid
    receiver.wait_for("pay", lambda g: len(g) >= 5)
    time.sleep(1)
    got = sorted(receiver.delivered("pay", ep["secret"]).values(), key=lambda p: (p["timestamp"], p["type"]))
    by_type = {p["type"]: p["data"] for p in got}
    assert sorted(by_type) == sorted(["invoice.payment_failed", "invoice.overdue", "application.suspended",
                                      "invoice.paid", "application.resumed"]), [p["type"] for p in got]
    failure = by_type["invoice.payment_failed"]["failure"]
    assert failure["code"] == "card_declined" and failure["failed_attempts"] == 1 and failure["next_attempt_on"] is None
    assert by_type["invoice.overdue"]["state"] == "failed" and by_type["invoice.overdue"]["invoice_id"] == inv["id"]
    assert (by_type["application.suspended"]["application_id"], by_type["application.suspended"]["state_reason"]) == \
        (app["id"], "non_payment")
    assert by_type["invoice.paid"]["total"] == "15.00" and by_type["application.resumed"]["state"] == "live"


def test_the_admin_portal_creates_shows_the_secret_once_disables_and_replays(hooks, receiver):
    from test_portal import Browser
    srv, api = hooks
    admin = Browser(srv.port)
    admin.submit("/admin/sign_in", {"token": ADMIN_TOKEN})
    st, _, html = admin.request("GET", "/admin/webhooks")
    assert st == 200 and "invoice.overdue" in html, "the form lists the event types"
    st, _, html = admin.submit("/admin/webhooks", {"url": receiver.url("portal"), "events": "invoice.paid, nope"})
    assert st == 422 and 'id="events-error"' in html and "unknown event type" in html
    st, _, html = admin.submit("/admin/webhooks", {"url": "https://10.0.0.1/", "events": "invoice.paid"})
    assert st == 422 and 'id="url-error"' in html
    assert api.ok("GET", "/webhook_endpoints")["data"] == []
    st, _, html = admin.submit("/admin/webhooks", {"url": receiver.url("portal"), "events": "key.created, application.created"})
    secret = re.search(r"whsec_[A-Za-z0-9+/=]+", html).group(0)
    assert st == 201
    [ep] = api.ok("GET", "/webhook_endpoints")["data"]
    assert ep["events"] == ["application.created", "key.created"]
    st, _, html = admin.request("GET", "/admin/webhooks")
    assert st == 200 and secret not in html and "whsec_" not in html and receiver.url("portal").split("//")[1] in html
    st, _, html = admin.request("POST", f"/admin/webhooks/{ep['id']}/test", {"csrf": admin.csrf(html)})
    assert st == 200
    receiver.wait_for("portal", lambda g: len(g) >= 1)
    [(msg_id, payload, _)] = receiver.verified("portal", secret)
    assert payload["type"] == "webhook.test"
    log = deliveries_when(api, ep["id"], lambda log: log[0]["state"] == "delivered")
    st, _, html = admin.request("GET", f"/admin/webhooks/{ep['id']}")
    assert st == 200 and msg_id in html and "delivered" in html and "Replay" in html
    st, headers, _ = admin.request("POST", f"/admin/webhook_deliveries/{log[0]['id']}/replay", {"csrf": admin.csrf(html)})
    assert st == 303 and headers["location"] == f"/admin/webhooks/{ep['id']}"
    receiver.wait_for("portal", lambda g: len(g) >= 2)
    assert {r.id for r in receiver.of("portal")} == {msg_id}
    st, _, html = admin.request("POST", f"/admin/webhooks/{ep['id']}/disable", {"csrf": admin.csrf(html)})
    assert st == 200 and api.ok("GET", f"/webhook_endpoints/{ep['id']}")["disabled_reason"] == "admin"
    st, _, html = admin.request("POST", f"/admin/webhooks/{ep['id']}/delete", {"csrf": admin.csrf(html)})
    assert st == 200 and api.ok("GET", "/webhook_endpoints")["data"] == []


def test_the_developer_portal_registers_endpoints_for_the_own_account_only(hooks, receiver):
    from test_portal import sign_up
    srv, api = hooks
    alice, mallory = sign_up(srv, "alice@example.com"), sign_up(srv, "mallory@example.com")
    st, _, html = alice.request("GET", "/portal/webhooks")
    assert st == 200 and "No webhook endpoints yet" in html and "key.rotated" in html
    st, _, html = alice.submit("/portal/webhooks", {"url": "https://169.254.169.254/", "events": "key.created"})
    assert st == 422 and "https URL of a public host" in html
    st, _, html = alice.submit("/portal/webhooks", {"url": receiver.url("alice"), "events": "application.created"})
    assert st == 201
    secret = re.search(r"whsec_[A-Za-z0-9+/=]+", html).group(0)
    [ep] = api.ok("GET", "/webhook_endpoints")["data"]
    [acct_a] = [a for a in api.ok("GET", "/accounts?limit=100")["data"] if a["email"] == "alice@example.com"]
    [acct_m] = [a for a in api.ok("GET", "/accounts?limit=100")["data"] if a["email"] == "mallory@example.com"]
    assert ep["account_id"] == acct_a["id"]
    st, _, html = alice.request("GET", "/portal/webhooks")
    assert secret not in html and receiver.url("alice") in html
    # Mallory cannot see, test, disable, delete or replay Alice's endpoint: 404 as if it did not exist.
    st, _, mhtml = mallory.request("GET", "/portal/webhooks")
    assert st == 200 and receiver.url("alice") not in mhtml
    assert mallory.request("GET", f"/portal/webhooks/{ep['id']}")[0] == 404
    for action in ("test", "disable", "delete"):
        assert mallory.request("POST", f"/portal/webhooks/{ep['id']}/{action}", {"csrf": mallory.csrf(mhtml)})[0] == 404
    assert api.ok("GET", f"/webhook_endpoints/{ep['id']}")["enabled"] is True
    # Only Alice's account's events reach it.
    svc = api.ok("POST", "/services", {"name": "Portal hooks"})
    plan = api.ok("POST", "/plans", {"service_id": svc["id"], "name": "P"})
    api.ok("POST", "/applications", {"account_id": acct_m["id"], "plan_id": plan["id"], "name": "M"})
    mine = api.ok("POST", "/applications", {"account_id": acct_a["id"], "plan_id": plan["id"], "name": "A"})
    receiver.wait_for("alice", lambda g: len(g) >= 1)
    time.sleep(1)
    [(msg_id, payload, _)] = receiver.verified("alice", secret)
    assert payload["data"]["application_id"] == mine["id"]
    [d] = deliveries_when(api, ep["id"], lambda log: log[0]["state"] == "delivered")
    st, _, html = alice.request("GET", f"/portal/webhooks/{ep['id']}")
    assert st == 200 and msg_id in html and "Replay" in html
    assert mallory.request("POST", f"/portal/webhook_deliveries/{d['id']}/replay", {"csrf": mallory.csrf(mhtml)})[0] == 404
    st, headers, _ = alice.request("POST", f"/portal/webhook_deliveries/{d['id']}/replay", {"csrf": alice.csrf(html)})
    assert st == 303 and headers["location"] == f"/portal/webhooks/{ep['id']}"
    receiver.wait_for("alice", lambda g: len(g) >= 2)
    st, _, html = alice.request("POST", f"/portal/webhooks/{ep['id']}/delete", {"csrf": alice.csrf(html)})
    assert st == 200 and api.ok("GET", "/webhook_endpoints")["data"] == []


def test_a_secret_moved_to_another_endpoint_does_not_sign(hooks, receiver):
    """Sealed secrets are bound to their endpoint: someone with write access to the database who
    copies one endpoint's sealed secret onto another gets failed attempts, never a signature under
    the other endpoint's secret."""
    srv, api = hooks
    a = create_endpoint(api, receiver, "a", ["key.created"])
    b = create_endpoint(api, receiver, "b", ["key.created"])
    [sealed_a] = srv.db.query(f"SELECT secret_sealed FROM webhook_endpoints WHERE id = '{a['id']}'")
    from support.control_plane import psql
    sql = f"UPDATE webhook_endpoints SET secret_sealed = '{sealed_a}' WHERE id = '{b['id']}'"
    if srv.db.backend == "sqlite":
        import sqlite3
        with sqlite3.connect(srv.db.path) as c:
            c.execute(sql)
    else:
        psql(srv.db.url, sql)
    api.ok("POST", f"/webhook_endpoints/{b['id']}/test")
    [d] = deliveries_when(api, b["id"], lambda log: log[0]["attempts"] >= 1 and log[0]["state"] != "delivering")
    assert d["last_status_code"] is None and "does not open" in d["last_error"], d
    assert receiver.of("b") == [], "nothing was sent"


def test_a_billing_run_sends_one_invoice_issued_per_invoice_and_a_rerun_none(hooks, receiver):
    from test_billing import catalog as billing_catalog, invoices, wait_run
    srv, api = hooks
    ep = create_endpoint(api, receiver, "run", ["invoice.issued", "invoice.paid"])
    api.call("PUT", "/admin/api/v1/billing/settings", {"mode": "prepaid"})
    svc, plan = billing_catalog(api, fixed="30", setup="0")
    free = api.ok("POST", "/plans", {"service_id": svc["id"], "name": "Free"})
    accounts = [api.ok("POST", "/accounts", {"name": f"R{i}", "email": f"r{i}@example.com"}) for i in range(3)]
    for a in accounts[:2]:
        api.ok("POST", "/applications", {"account_id": a["id"], "plan_id": plan["id"], "name": "A"})
    # Nothing to bill on a free plan: no invoice, no event.
    api.ok("POST", "/applications", {"account_id": accounts[2]["id"], "plan_id": free["id"], "name": "F"})

    def run():
        st, r, _ = api.call("POST", "/admin/api/v1/billing/runs", {})
        assert st == 202, r
        return wait_run(api, r["id"])

    issued = run()["invoices_issued"]
    ids = sorted(i["id"] for a in accounts for i in invoices(api, account_id=a["id"]))
    assert issued == len(ids) == 2
    receiver.wait_for("run", lambda g: len(g) >= len(ids))
    assert run()["invoices_issued"] == 0
    time.sleep(1.5)
    got = list(receiver.delivered("run", ep["secret"]).values())
    assert sorted(p["data"]["invoice_id"] for p in got if p["type"] == "invoice.issued") == ids
    by_id = {i["id"]: i for a in accounts for i in invoices(api, account_id=a["id"])}
    for p in got:
        inv = by_id[p["data"]["invoice_id"]]
        assert (p["data"]["number"], p["data"]["total"], p["data"]["account_id"]) == \
            (inv["number"], inv["total"], inv["account_id"])
    assert all(p["type"] == "invoice.issued" and p["data"]["state"] == "pending" for p in got), got


def test_a_rotated_secret_signs_beside_the_old_one_for_the_grace_period(hooks, receiver):
    srv, api = hooks
    ep = create_endpoint(api, receiver, "rot", ["key.created"])
    old = ep["secret"]
    assert_error(api.post(f"/webhook_endpoints/{ep['id']}/rotate_secret", {"grace_seconds": 8 * 86400}),
                 422, "invalid_grace", "grace_seconds")
    rotated = api.ok("POST", f"/webhook_endpoints/{ep['id']}/rotate_secret", {"grace_seconds": 3600}, status=200)
    new = rotated["secret"]
    assert new.startswith("whsec_") and new != old
    assert new not in json.dumps(api.ok("GET", f"/webhook_endpoints/{ep['id']}"))
    api.ok("POST", f"/webhook_endpoints/{ep['id']}/test")
    [r] = receiver.wait_for("rot", lambda g: len(g) >= 1)
    assert len(r.headers["webhook-signature"].split(" ")) == 2
    receiver.verified("rot", old)  # a receiver still on the old secret verifies
    receiver.verified("rot", new)  # and one on the new
    # No grace: only the new secret signs from now on.
    newest = api.ok("POST", f"/webhook_endpoints/{ep['id']}/rotate_secret", {"grace_seconds": 0}, status=200)["secret"]
    api.ok("POST", f"/webhook_endpoints/{ep['id']}/test")
    got = receiver.wait_for("rot", lambda g: len(g) >= 2)
    assert len(got[1].headers["webhook-signature"].split(" ")) == 1
    from standardwebhooks.webhooks import Webhook, WebhookVerificationError
    Webhook(newest).verify(got[1].body, got[1].headers)
    with pytest.raises(WebhookVerificationError):
        Webhook(new).verify(got[1].body, got[1].headers)
    # Another account's developer cannot rotate it.
    acct = api.ok("POST", "/accounts", {"name": "Eve", "email": "eve@example.com"})
    eve = Api(srv.base, api.ok("POST", f"/accounts/{acct['id']}/tokens", {})["token"])
    assert_error(eve.call("POST", f"/api/v1/webhook_endpoints/{ep['id']}/rotate_secret", {}), 404)


def test_an_account_cannot_flood_the_sender_with_test_events_but_the_admin_can_test(hooks, receiver):
    """A free developer account asking for test events in a loop (each a delivery retried for
    days) is stopped at MAX_WEBHOOK_SENDS_PER_ACCOUNT_PER_HOUR with 429; the admin is not."""
    srv, api = hooks
    acct, _, _ = catalog(api, "Flood")
    dev = Api(srv.base, api.ok("POST", f"/accounts/{acct['id']}/tokens", {})["token"])
    ep = create_endpoint(dev, receiver, "flood", ["application.created"], prefix="/api/v1")
    statuses = [dev.call("POST", f"/api/v1/webhook_endpoints/{ep['id']}/test", {})[0] for _ in range(61)]
    assert statuses[:60] == [201] * 60, statuses
    st, body, hs = dev.call("POST", f"/api/v1/webhook_endpoints/{ep['id']}/test", {})
    assert st == 429 and body["error"]["code"] == "webhook_sends_rate_limited", body
    assert int(hs["retry-after"]) > 0
    assert statuses[60] == 429
    admin_ep = create_endpoint(api, receiver, "admin-flood", ["application.created"])
    for _ in range(3):
        assert api.call("POST", f"/admin/api/v1/webhook_endpoints/{admin_ep['id']}/test", {})[0] == 201
