"""Gateway tokens are scoped to services (issue 15 item 12): a token reads the snapshot and global
usage of, and reports usage for, its services only; report ids are namespaced by token; a report's
deltas are bounded. On SQLite and PostgreSQL, against real `tollgate serve` processes."""

import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from conftest import ADMIN_TOKEN
from support.control_plane import Api
from test_control_plane import assert_error

# control-plane/src/http/gateway.rs
MAX_COUNTER_DELTA_PER_REPORT = 1 << 40
MAX_REPORT_AGE_SECS = 7 * 24 * 3600
MAX_CLOCK_SKEW_SECS = 300


def minute():
    t = int(time.time())
    return t - t % 60


def customer(api, name):
    """A service with one plan and one application: one customer of the operator."""
    svc = api.ok("POST", "/services", {"name": f"{name} {time.monotonic_ns()}"})
    plan = api.ok("POST", "/plans", {"service_id": svc["id"], "name": "P",
                                     "limits": [{"metric": "hits", "period": "minute", "value": 1000}]})
    acct = api.ok("POST", "/accounts", {"name": name, "email": f"{name.lower()}@example.com"})
    app = api.ok("POST", "/applications", {"account_id": acct["id"], "plan_id": plan["id"], "name": "App"})
    return {"service": svc["id"], "app": app["id"]}


@pytest.fixture
def world(server):
    api = Api(server.base, ADMIN_TOKEN)
    a, b = customer(api, "Alpha"), customer(api, "Beta")
    tok_a = api.ok("POST", "/gateway_tokens", {"name": "edge-a", "service_ids": [a["service"]]})
    tok_b = api.ok("POST", "/gateway_tokens", {"name": "edge-b", "service_ids": [b["service"]]})
    return {"api": api, "server": server, "a": a, "b": b, "tok_a": tok_a,
            "gw_a": Api(server.base, tok_a["token"]), "gw_b": Api(server.base, tok_b["token"])}


def report(gw, service, gateway, sequence, entries, instance=None):
    body = {"gateway": gateway, "sequence": sequence, "entries": entries}
    if instance:
        body["instance"] = instance
    return gw.call("POST", f"/gateway/v1/services/{service}/usage", body)


def hits(w, app):
    return w["api"].ok("GET", f"/applications/{app}/usage?metric=hits&period=hour&since={minute() - 7200}")["total"]


def entry(app, delta, t=None):
    return {"application": app, "metric": "hits", "bucket_start": minute() if t is None else t, "delta": delta}


def test_a_token_reads_and_reports_only_for_its_services(world):
    w = world
    a, b, gw_a = w["a"], w["b"], w["gw_a"]
    assert gw_a.call("GET", f"/gateway/v1/services/{a['service']}/snapshot")[0] == 200
    # B's snapshot (B's key digests) and global usage are refused, as is a service that does not exist.
    st, body, _ = gw_a.call("GET", f"/gateway/v1/services/{b['service']}/snapshot")
    assert st == 403 and body["error"]["code"] == "insufficient_scope" and "key_sha256" not in str(body), body
    assert_error(gw_a.call("GET", f"/gateway/v1/services/{b['service']}/global_usage?instance=i"), 403)
    assert_error(gw_a.call("GET", "/gateway/v1/services/svc_nope/snapshot"), 403)
    # Usage for B's application: through B's service path, or smuggled into A's path next to a
    # legitimate entry: refused whole, nothing stored, and the sequence is not used up.
    assert_error(report(gw_a, b["service"], "g", 1, [entry(b["app"], 1000)]), 403)
    st, body, _ = report(gw_a, a["service"], "g", 1, [entry(a["app"], 1), entry(b["app"], 1000)])
    assert st == 422 and body["error"]["code"] == "application_out_of_scope", body
    assert body["error"]["param"] == "entries[1].application", body
    assert hits(w, b["app"]) == 0 and hits(w, a["app"]) == 0
    st, ack, _ = report(gw_a, a["service"], "g", 1, [entry(a["app"], 1)])
    assert st == 200 and ack["duplicate"] is False and ack["accepted"] == 1, ack
    assert hits(w, a["app"]) == 1
    # B's own gateway still reports for B.
    assert report(w["gw_b"], b["service"], "g", 1, [entry(b["app"], 2)])[1]["accepted"] == 1
    assert hits(w, b["app"]) == 2


def test_two_tokens_reporting_the_same_sequence_are_both_counted(world):
    """Before: a second token's (gateway, sequence) pre-claimed the first one's; its real report
    was acknowledged as a duplicate and lost."""
    w = world
    api, a = w["api"], w["a"]
    # A second token for the same service, with the same gateway name (two operators' edges, or an attacker).
    other = Api(w["server"].base, api.ok("POST", "/gateway_tokens", {
        "name": "edge-a2", "service_ids": [a["service"]]})["token"])
    st, ack, _ = report(other, a["service"], "edge", 7, [entry(a["app"], 1)])
    assert st == 200 and ack["duplicate"] is False, ack
    st, ack, _ = report(w["gw_a"], a["service"], "edge", 7, [entry(a["app"], 5)])
    assert st == 200 and ack["duplicate"] is False and ack["accepted"] == 1, ack
    # Retries of each are still recognized.
    assert report(w["gw_a"], a["service"], "edge", 7, [entry(a["app"], 5)])[1]["duplicate"] is True
    assert report(other, a["service"], "edge", 7, [entry(a["app"], 1)])[1]["duplicate"] is True
    assert hits(w, a["app"]) == 6


def test_instances_of_two_tokens_are_not_one_instance(world):
    """Global usage leaves out the asking instance's own usage; another token's instance of the
    same name is another gateway and its usage is counted."""
    w = world
    api, a = w["api"], w["a"]
    other = Api(w["server"].base, api.ok("POST", "/gateway_tokens", {
        "name": "edge-a2", "service_ids": [a["service"]]})["token"])
    assert report(other, a["service"], "g2", 1, [entry(a["app"], 4)], instance="i-1")[0] == 200
    st, g, _ = w["gw_a"].call("GET", f"/gateway/v1/services/{a['service']}/global_usage?instance=i-1")
    assert st == 200 and [(e["application"], e["value"]) for e in g["entries"]] == [(a["app"], 4)], g
    st, g, _ = other.call("GET", f"/gateway/v1/services/{a['service']}/global_usage?instance=i-1")
    assert st == 200 and g["entries"] == [], g


def test_report_deltas_and_times_are_bounded(world):
    w = world
    gw, a = w["gw_a"], w["a"]
    t = minute()
    cases = [
        # One counter's sum over a report above the bound (each entry alone is within it).
        ([entry(a["app"], MAX_COUNTER_DELTA_PER_REPORT), entry(a["app"], 1)], "counter_delta_too_large"),
        ([entry(a["app"], MAX_COUNTER_DELTA_PER_REPORT + 1)], "invalid_delta"),
        ([entry(a["app"], 0)], "invalid_delta"),
        ([entry(a["app"], 1, t + MAX_CLOCK_SKEW_SECS + 120)], "invalid_bucket"),
        ([entry(a["app"], 1, t - MAX_REPORT_AGE_SECS - 120)], "invalid_bucket"),
    ]
    for seq, (entries, code) in enumerate(cases, start=1):
        st, body, _ = report(gw, a["service"], "g", seq, entries)
        assert st == 422 and body["error"]["code"] == code, (entries, body)
    assert hits(w, a["app"]) == 0
    # Negative and non-integer deltas are malformed reports.
    for bad in (-5, 1.5, 2 ** 64):
        st, body, _ = report(gw, a["service"], "g", 99, [entry(a["app"], bad)])
        assert 400 <= st < 500 and "error" in body, (bad, st, body)
    # Within bounds: counted (the bound is exactly reachable).
    st, ack, _ = report(gw, a["service"], "g", 100, [entry(a["app"], MAX_COUNTER_DELTA_PER_REPORT - 1),
                                                      entry(a["app"], 1)])
    assert st == 200 and ack["accepted"] == 2, ack
    assert hits(w, a["app"]) == MAX_COUNTER_DELTA_PER_REPORT


def test_concurrent_duplicates_from_one_token_count_once(world):
    w = world
    gw, a = w["gw_a"], w["a"]
    entries = [entry(a["app"], 3)]
    with ThreadPoolExecutor(max_workers=12) as pool:
        acks = list(pool.map(lambda _: report(gw, a["service"], "race", 5, entries), range(24)))
    assert all(st in (200, 503) for st, _, _ in acks), acks
    applied = [ack for st, ack, _ in acks if st == 200 and not ack["duplicate"]]
    assert len(applied) <= 1, acks
    # Whatever failed with 503 is retried by a gateway; the retry is a duplicate or the first apply.
    st, ack, _ = report(gw, a["service"], "race", 5, entries)
    assert st == 200, ack
    assert len(applied) + (0 if ack["duplicate"] else 1) == 1, (acks, ack)
    assert hits(w, a["app"]) == 3


def test_scope_is_required_and_can_be_changed(world):
    w = world
    api, a, b = w["api"], w["a"], w["b"]
    st, body, _ = api.call("POST", "/admin/api/v1/gateway_tokens", {"name": "no-scope"})
    assert st == 422 and body["error"]["param"] == "service_ids", body
    st, body, _ = api.call("POST", "/admin/api/v1/gateway_tokens", {"name": "x", "service_ids": ["svc_nope"]})
    assert st == 422 and body["error"]["code"] == "unknown_service", body
    st, body, _ = api.call("POST", "/admin/api/v1/gateway_tokens", {"name": "x", "service_ids": []})
    assert st == 422, body
    # Widening token A's scope to B: it may now read B's snapshot; the CLI does the same.
    tok = api.ok("PATCH", f"/gateway_tokens/{w['tok_a']['id']}", {"service_ids": [a["service"], b["service"]]})
    assert tok["service_ids"] == sorted([a["service"], b["service"]]) and "token" not in tok
    assert w["gw_a"].call("GET", f"/gateway/v1/services/{b['service']}/snapshot")[0] == 200
    cli = w["server"].cli("gateway-tokens", "set-services", w["tok_a"]["id"], "--service", a["service"])
    assert cli.returncode == 0, cli.stderr
    assert_error(w["gw_a"].call("GET", f"/gateway/v1/services/{b['service']}/snapshot"), 403)
    assert api.ok("GET", f"/gateway_tokens/{w['tok_a']['id']}")["service_ids"] == [a["service"]]
