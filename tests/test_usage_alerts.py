"""Usage alerts (issue 20, item 2) through real `tollgate serve` processes on SQLite and
PostgreSQL: crossing 50/80/90/100 % of a daily limit sends one email each (a real SMTP sink) and
one `usage.threshold_reached` event each (a real receiver whose signatures the `standardwebhooks`
package verifies), whether the usage comes through a real Envoy or as usage reports; duplicated
and concurrent reports, and two replicas detecting at once, never alert twice; an application's
override replaces its plan's thresholds; a new window alerts again; minute limits never alert;
the developer portal shows a banner."""

import re
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from conftest import ADMIN_TOKEN, call
from support.control_plane import Api
from support.envoy import Envoy, bootstrap, free_port, static_cluster, tollgate_filter
from test_billing import db, start_server  # noqa: F401
from test_control_plane import assert_error
from test_portal import Browser
from test_webhooks import receiver, sink  # noqa: F401

MASTER_KEY = "usage-alert-test-master-key-" + "u" * 32
#: The detector's pass interval (alerts.rs PASS_INTERVAL) plus the outbox senders' idle polls:
#: what an alert may take after the report that crossed.
ALERT_TIMEOUT_S = 15
#: How long to wait for anything extra (a second alert of the same crossing) to show up: more than
#: two detector passes (1 s each) and an outbox poll.
QUIET_S = 3


def serve(db, sink):  # noqa: F811
    return start_server(db, sink, TOLLGATE_MASTER_KEY=MASTER_KEY)


@pytest.fixture
def world(db, sink, receiver):  # noqa: F811
    srv = serve(db, sink)
    api = Api(srv.base, ADMIN_TOKEN)
    svc = api.ok("POST", "/services", {"name": f"Alerts {time.monotonic_ns()}"})
    api.ok("POST", f"/services/{svc['id']}/metrics", {"name": "search", "parent": "hits"})
    api.ok("POST", f"/services/{svc['id']}/mapping_rules", {"method": "GET", "pattern": "/", "metric": "hits"})
    api.ok("POST", f"/services/{svc['id']}/mapping_rules", {"method": "GET", "pattern": "/search$", "metric": "search"})
    plan = api.ok("POST", "/plans", {"service_id": svc["id"], "name": "P", "limits": [
        {"metric": "hits", "period": "day", "value": 10}, {"metric": "search", "period": "minute", "value": 2}]})
    acct = api.ok("POST", "/accounts", {"name": "Acme", "email": "acme@example.com"})
    app = api.ok("POST", "/applications", {"account_id": acct["id"], "plan_id": plan["id"], "name": "Mobile"})
    gw = api.ok("POST", "/gateway_tokens", {"name": "edge", "service_ids": [svc["id"]]})
    st, ep, _ = api.call("POST", "/admin/api/v1/webhook_endpoints",
                         {"url": receiver.url("alerts"), "events": ["usage.threshold_reached"]})
    assert st == 201, ep
    w = {"api": api, "gw": Api(srv.base, gw["token"]), "gw_token": gw, "service": svc, "plan": plan,
         "account": acct, "app": app, "server": srv, "db": db, "sink": sink, "receiver": receiver,
         "endpoint": ep, "servers": [srv]}
    yield w
    for s in w["servers"]:
        s.stop()


def put(api, path, body, status=200):
    st, b, _ = api.call("PUT", "/admin/api/v1" + path, body)
    assert st == status, (st, b)
    return b


def minute():
    t = int(time.time())
    return t - t % 60


def report(w, sequence, delta, app=None, metric="hits", gateway="gw-a"):
    st, ack, _ = w["gw"].call("POST", f"/gateway/v1/services/{w['service']['id']}/usage", {
        "gateway": gateway, "sequence": sequence,
        "entries": [{"application": app or w["app"]["id"], "metric": metric, "bucket_start": minute(),
                     "delta": delta}]})
    return st, ack


def events(w):
    """The verified `usage.threshold_reached` payloads delivered, in arrival order."""
    return [p for _, p, st in w["receiver"].verified("alerts", w["endpoint"]["secret"]) if 200 <= st < 300]


def wait_alerts(w, count, quiet=True):
    """The emails and events once `count` of each arrived, and (`quiet`) a quiet moment after, so
    extras show; a test that checks every count at its end skips the moments in between."""
    w["sink"].wait_for(count, timeout=ALERT_TIMEOUT_S)
    w["receiver"].wait_for("alerts", lambda got: len(got) >= count, timeout=ALERT_TIMEOUT_S)
    if quiet:
        time.sleep(QUIET_S)
    return w["sink"].messages(), events(w)


def text_of(msg):
    if msg.is_multipart():
        return "".join(p.get_payload(decode=True).decode() for p in msg.walk()
                       if p.get_content_type() == "text/plain")
    return msg.get_payload(decode=True).decode()


def thresholds(evs):
    return [e["data"]["threshold_percent"] for e in evs]


def test_each_threshold_of_a_daily_limit_alerts_once_by_email_and_event(world):
    w = world
    app = w["app"]["id"]
    day_start = int(time.time()) // 86400 * 86400
    steps = [(5, 50), (3, 80), (1, 90), (1, 100)]
    seq = 0
    for n, (delta, want) in enumerate(steps, start=1):
        seq += 1
        assert report(w, seq, delta) == (200, {"duplicate": False, "accepted": 1, "ignored": 0})
        assert report(w, seq, delta)[1]["duplicate"] is True  # a retry adds and alerts nothing
        # A minute limit crossed many times over never alerts (an email a minute would be spam).
        report(w, seq, 5, metric="search", gateway="gw-search")
        mails, evs = wait_alerts(w, n, quiet=False)
        assert len(mails) >= n and len(evs) >= n, (thresholds(evs), [m["Subject"] for m in mails])
        assert thresholds(evs)[-1] == want
    # Past 100 %: nothing more in this window.
    report(w, seq + 1, 7)
    time.sleep(QUIET_S)
    mails, evs = w["sink"].messages(), events(w)
    assert thresholds(evs) == [50, 80, 90, 100] and len(mails) == 4
    assert [e["type"] for e in evs] == ["usage.threshold_reached"] * 4
    used = [5, 8, 9, 10]
    for e, u in zip(evs, used):
        assert e["data"] == {"application_id": app, "account_id": w["account"]["id"], "metric": "hits",
                             "period": "day", "window_start": day_start, "limit": 10,
                             "threshold_percent": e["data"]["threshold_percent"], "usage": u}
    subjects = sorted(m["Subject"] for m in mails)
    assert subjects == sorted(f"Mobile: {t}% of the day hits limit reached" for t in (50, 80, 90, 100))
    assert all(m["To"] == "acme@example.com" for m in mails)
    body = next(text_of(m) for m in mails if "90%" in m["Subject"])
    assert "Hello Acme," in body and "used 9 of its 10 hits this day" in body and "UTC" in body, body
    assert w["db"].query("SELECT COUNT(*) FROM usage_alerts") == ["4"]


def test_concurrent_reports_and_two_replicas_alert_each_threshold_once(world):
    w = world
    # A second replica on the same database: both run the detector.
    w["servers"].append(serve(w["db"], w["sink"]))
    # 10 reports of 1 hit each, 8 at a time, every one sent twice: usage climbs through every
    # threshold while both replicas' passes run.
    with ThreadPoolExecutor(max_workers=8) as pool:
        acks = list(pool.map(lambda i: report(w, i // 2 + 1, 1), range(20)))
    assert all(st in (200, 503) for st, _ in acks), acks
    assert sum(1 for st, a in acks if st == 200 and not a["duplicate"]) == 10, acks
    w["receiver"].wait_for("alerts", lambda got: any(
        p["data"]["threshold_percent"] == 100 for p in events(w)), timeout=ALERT_TIMEOUT_S)
    time.sleep(QUIET_S)
    mails, evs = w["sink"].messages(), events(w)
    # Every threshold claimed exactly once; one email and one event per alert (a jump past several
    # thresholds between two passes alerts once, for the highest), never one threshold twice.
    rows = sorted(int(r) for r in w["db"].query("SELECT threshold FROM usage_alerts"))
    assert rows == [50, 80, 90, 100]
    got = thresholds(evs)
    assert len(got) == len(set(got)) and got == sorted(got) and got[-1] == 100, got
    assert len(mails) == len(evs)
    assert sorted(int(re.search(r"(\d+)%", m["Subject"]).group(1)) for m in mails) == got


def test_an_application_override_replaces_the_plans_thresholds(world):
    w = world
    api, plan, app = w["api"], w["plan"], w["app"]
    assert api.ok("GET", f"/plans/{plan['id']}/alert_thresholds") == {
        "object": "alert_thresholds", "thresholds": [50, 80, 90, 100], "source": "default"}
    for bad, code in [([0], "invalid_threshold"), ([101], "invalid_threshold"), ([50, 50], "duplicate_threshold"),
                      (list(range(1, 12)), "too_many_thresholds")]:
        assert_error(api.call("PUT", f"/admin/api/v1/plans/{plan['id']}/alert_thresholds", {"thresholds": bad}),
                     422, code)
    assert_error(api.call("PUT", "/admin/api/v1/plans/plan_nope/alert_thresholds", {"thresholds": [5]}), 404)
    assert put(api, f"/plans/{plan['id']}/alert_thresholds", {"thresholds": [75, 25]})["thresholds"] == [25, 75]
    assert api.ok("GET", f"/applications/{app['id']}/alert_thresholds")["source"] == "plan"
    own = put(api, f"/applications/{app['id']}/alert_thresholds", {"thresholds": [60]})
    assert own == {"object": "alert_thresholds", "thresholds": [60], "source": "application"}
    other = api.ok("POST", "/applications", {"account_id": w["account"]["id"], "plan_id": plan["id"], "name": "Web"})
    # 7 of 10 on both: the overridden one crosses 60 only, the other its plan's 25.
    report(w, 1, 7)
    report(w, 2, 7, app=other["id"])
    _, evs = wait_alerts(w, 2)
    by_app = {e["data"]["application_id"]: e["data"]["threshold_percent"] for e in evs}
    assert by_app == {app["id"]: 60, other["id"]: 25} and len(evs) == 2
    # The override removed: the plan's thresholds apply again (75 is crossed at 8).
    assert api.ok("DELETE", f"/applications/{app['id']}/alert_thresholds")["source"] == "plan"
    report(w, 3, 1)
    _, evs = wait_alerts(w, 3)
    assert [e["data"]["threshold_percent"] for e in evs if e["data"]["application_id"] == app["id"]] == [60, 75]
    # An empty set turns alerts off.
    put(api, f"/applications/{other['id']}/alert_thresholds", {"thresholds": []})
    report(w, 4, 3, app=other["id"])
    time.sleep(QUIET_S)
    assert len(events(w)) == 3
    assert api.ok("DELETE", f"/plans/{plan['id']}/alert_thresholds")["source"] == "default"


def test_a_new_window_alerts_again(world):
    w = world
    report(w, 1, 6)
    _, evs = wait_alerts(w, 1, quiet=False)
    assert thresholds(evs) == [50]
    # As if all of it happened yesterday: yesterday's usage and crossing.
    w["db"].query("UPDATE usage_counters SET bucket_start = bucket_start - 86400")
    w["db"].query("UPDATE usage_alerts SET window_start = window_start - 86400")
    report(w, 2, 5)
    mails, evs = wait_alerts(w, 2)
    assert thresholds(evs) == [50, 50] and len(mails) == 2
    today = int(time.time()) // 86400 * 86400
    assert [int(r) for r in w["db"].query(
        "SELECT window_start FROM usage_alerts ORDER BY window_start")] == [today - 86400, today]
    assert evs[1]["data"]["usage"] == 5


def test_the_portal_shows_the_current_crossings(world):
    w = world
    b = Browser(w["server"].port)
    st, _, _ = b.submit("/portal/sign_up", {"name": "Zed", "email": "zed@example.com", "password": "correct horse"})
    assert st == 303
    [acct] = [a for a in w["api"].ok("GET", "/accounts")["data"] if a["email"] == "zed@example.com"]
    app = w["api"].ok("POST", "/applications", {"account_id": acct["id"], "plan_id": w["plan"]["id"], "name": "Bot"})
    st, _, html = b.request("GET", f"/portal/applications/{app['id']}")
    assert st == 200 and "usage-alerts" not in html
    report(w, 1, 8, app=app["id"])
    _, evs = wait_alerts(w, 1)  # 50 and 80 crossed in one step: one alert, for 80
    assert thresholds(evs) == [80]
    st, _, html = b.request("GET", f"/portal/applications/{app['id']}")
    assert st == 200 and 'id="usage-alerts"' in html, html
    assert "80% of the day hits limit reached: 8 of 10" in html
    # Another account's alerts are not shown to it.
    assert "usage-alerts" not in b.request("GET", "/portal/applications")[2]


@pytest.mark.parametrize("db", ["sqlite"], indirect=True)
def test_traffic_through_envoy_alerts_once_per_threshold(world, upstream):
    """The whole path: hits admitted by the filter in a real Envoy (control-plane mode), flushed
    as usage reports, detected and sent."""
    w = world
    config = {
        "service_id": w["service"]["id"],
        "control_plane": {"cluster": "tollgate_control_plane", "authority": "tollgate",
                          "token": w["gw_token"]["token"], "poll_interval_ms": 200, "flush_interval_ms": 500,
                          "timeout_ms": 2000},
    }
    envoy = Envoy(bootstrap(free_port(), free_port(), upstream.port, [tollgate_filter(config, "wasm")],
                            [static_cluster("tollgate_control_plane", w["server"].port)]),
                  concurrency=1, shell="wasm").start()
    try:
        envoy.wait_snapshot()
        key = {"x-api-key": w["app"]["key"]}
        for n, (hits, want) in enumerate([(5, 50), (3, 80), (1, 90), (1, 100)], start=1):
            assert [call(envoy.port, "/items", headers=key).status for _ in range(hits)] == [200] * hits
            mails, evs = wait_alerts(w, n, quiet=False)
            assert thresholds(evs)[-1] == want, thresholds(evs)
        assert call(envoy.port, "/items", headers=key).status == 429
        time.sleep(QUIET_S)
        assert thresholds(events(w)) == [50, 80, 90, 100] and len(w["sink"].messages()) == 4
    finally:
        envoy.stop()


def test_the_cli_and_the_admin_portal_edit_thresholds(server):
    """Plans' thresholds and applications' overrides from the CLI and the admin portal, through
    the API's checks (refusals shown on the form's field, nothing stored)."""
    api = Api(server.base, ADMIN_TOKEN)
    svc = api.ok("POST", "/services", {"name": "Thresholds"})
    plan = api.ok("POST", "/plans", {"service_id": svc["id"], "name": "P"})
    acct = api.ok("POST", "/accounts", {"name": "T", "email": "t@example.com"})
    app = api.ok("POST", "/applications", {"account_id": acct["id"], "plan_id": plan["id"], "name": "Mobile"})

    def cli(*args, check=True):
        return server.cli(*args, check=check)

    out = cli("plans", "alert-thresholds", plan["id"]).stdout
    assert "[50,80,90,100]" in out and "default" in out, out
    out = cli("plans", "alert-thresholds", plan["id"], "--set", "75,25").stdout
    assert "[25,75]" in out and "plan" in out, out
    bad = cli("plans", "alert-thresholds", plan["id"], "--set", "25,101", check=False)
    assert bad.returncode != 0 and "invalid_threshold" in bad.stderr + bad.stdout
    both = cli("plans", "alert-thresholds", plan["id"], "--set", "30", "--reset", check=False)
    assert both.returncode != 0, "--set and --reset exclude each other"
    assert api.ok("GET", f"/plans/{plan['id']}/alert_thresholds")["thresholds"] == [25, 75]
    out = cli("applications", "alert-thresholds", app["id"], "--off").stdout
    assert "[]" in out and "application" in out, out
    out = cli("applications", "alert-thresholds", app["id"], "--reset").stdout
    assert "[25,75]" in out and "plan" in out, out
    assert "default" in cli("plans", "alert-thresholds", plan["id"], "--reset").stdout

    admin = Browser(server.port)
    assert admin.submit("/admin/sign_in", {"token": ADMIN_TOKEN})[0] == 303
    st, _, html = admin.request("GET", f"/admin/plans/{plan['id']}")
    assert st == 200 and 'id="usage-alerts"' in html and "50, 80, 90, 100 %" in html and "the defaults" in html
    action = f"/admin/plans/{plan['id']}/alert_thresholds"
    st, _, html = admin.request("POST", action, {"csrf": admin.csrf(html), "thresholds": "60, 30"})
    assert st == 200 and "Usage alert thresholds saved." in html and "30, 60 %" in html and "the plan's" in html
    assert api.ok("GET", f"/plans/{plan['id']}/alert_thresholds")["thresholds"] == [30, 60]
    for typed, words in [("30, 30", "each threshold once"), ("30, lots", "not a whole number"),
                         ("0", "from 1 to 100")]:
        st, _, html = admin.request("POST", action, {"csrf": admin.csrf(html), "thresholds": typed})
        assert st == 422 and 'id="thresholds-error"' in html and words in html, (typed, st)
        assert f'value="{typed}"' in html, "the form keeps what was typed"
    assert api.ok("GET", f"/plans/{plan['id']}/alert_thresholds")["thresholds"] == [30, 60]
    st, _, html = admin.request("POST", action + "/reset", {"csrf": admin.csrf(html)})
    assert st == 200 and "the defaults" in html
    assert api.ok("GET", f"/plans/{plan['id']}/alert_thresholds")["source"] == "default"

    _, _, html = admin.request("GET", f"/admin/accounts/{acct['id']}")
    page = f"/admin/applications/{app['id']}/alert_thresholds"
    assert f'href="{page}"' in html
    st, _, html = admin.request("GET", page)
    assert st == 200 and "the plan's" not in html and "the defaults" in html
    st, _, html = admin.request("POST", page, {"csrf": admin.csrf(html), "thresholds": "95"})
    assert st == 200 and "this application's own" in html
    assert api.ok("GET", f"/applications/{app['id']}/alert_thresholds")["thresholds"] == [95]
    st, _, html = admin.request("POST", page + "/reset", {"csrf": admin.csrf(html)})
    assert st == 200 and api.ok("GET", f"/applications/{app['id']}/alert_thresholds")["source"] == "default"
    assert admin.request("GET", "/admin/applications/app_nope/alert_thresholds")[0] == 404
