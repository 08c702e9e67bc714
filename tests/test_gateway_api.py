"""What gateways call on the control plane: gateway tokens, the versioned snapshot, and usage
reports counted exactly once. On SQLite and PostgreSQL, against real `tollgate serve` processes."""

import subprocess
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from conftest import ADMIN_TOKEN, call, sha256_hex
from support.control_plane import Api
from test_control_plane import assert_error


@pytest.fixture
def world(server):
    api = Api(server.base, ADMIN_TOKEN)
    svc = api.ok("POST", "/services", {"name": "Gateway test"})
    api.ok("POST", f"/services/{svc['id']}/metrics", {"name": "search", "parent": "hits"})
    api.ok("POST", f"/services/{svc['id']}/mapping_rules", {"method": "GET", "pattern": "/", "metric": "hits"})
    api.ok("POST", f"/services/{svc['id']}/mapping_rules", {"method": "GET", "pattern": "/search$", "metric": "search"})
    plan = api.ok("POST", "/plans", {"service_id": svc["id"], "name": "P", "limits": [
        {"metric": "hits", "period": "day", "value": 3}, {"metric": "search", "period": "minute", "value": 1}]})
    acct = api.ok("POST", "/accounts", {"name": "A", "email": "a@example.com"})
    app = api.ok("POST", "/applications", {"account_id": acct["id"], "plan_id": plan["id"], "name": "App"})
    gw = api.ok("POST", "/gateway_tokens", {"name": "edge-1", "service_ids": [svc["id"]]})
    return {"api": api, "gw": Api(server.base, gw["token"]), "gw_token": gw, "service": svc, "plan": plan,
            "account": acct, "app": app, "server": server}


def snapshot(w, etag=None):
    headers = {"If-None-Match": etag} if etag else {}
    return w["gw"].call("GET", f"/gateway/v1/services/{w['service']['id']}/snapshot", headers=headers)


def report(w, gateway, sequence, entries):
    return w["gw"].call("POST", f"/gateway/v1/services/{w['service']['id']}/usage",
                        {"gateway": gateway, "sequence": sequence, "entries": entries})


def minute(t=None):
    t = int(time.time() if t is None else t)
    return t - t % 60


def test_gateway_tokens_are_separate_from_admin_tokens(world):
    w = world
    assert w["gw_token"]["token"].startswith("tgw_")
    assert w["gw_token"]["token"] not in w["server"].db.raw_dump()
    assert_error(w["gw"].get("/services"), 401)
    assert_error(w["api"].call("GET", f"/gateway/v1/services/{w['service']['id']}/snapshot"), 401)
    listed = w["api"].ok("GET", "/gateway_tokens")["data"]
    assert [t["name"] for t in listed] == ["edge-1"] and "token" not in listed[0]
    assert listed[0]["service_ids"] == [w["service"]["id"]]
    cli = w["server"].cli("gateway-tokens", "create", "--name", "edge-2", "--service", w["service"]["id"])
    assert cli.returncode == 0 and "tgw_" in cli.stdout, cli.stderr
    w["api"].ok("DELETE", f"/gateway_tokens/{w['gw_token']['id']}")
    assert_error(snapshot(w), 401)


def test_snapshot_carries_the_service_catalog(world):
    w = world
    st, snap, headers = snapshot(w)
    assert st == 200
    assert headers["etag"] == f'"{snap["version"]}"'
    assert snap["metrics"] == [{"name": "hits"}, {"name": "search", "parent": "hits"}]
    assert [(r["method"], r["pattern"], r["metric"]) for r in snap["mapping_rules"]] == [
        ("GET", "/", "hits"), ("GET", "/search$", "search")]
    (plan,) = snap["plans"]
    assert plan["id"] == w["plan"]["id"]
    assert sorted(plan["limits"], key=lambda lim: lim["metric"]) == [
        {"metric": "hits", "period": "day", "value": 3}, {"metric": "search", "period": "minute", "value": 1}]
    (app,) = snap["applications"]
    assert app == {"id": w["app"]["id"], "plan": w["plan"]["id"], "state": "live",
                   "key_sha256": [sha256_hex(w["app"]["key"])]}
    assert w["app"]["key"] not in str(snap)


def test_snapshot_version_changes_with_the_catalog_only(world):
    w = world
    _, snap, headers = snapshot(w)
    st, body, _ = snapshot(w, headers["etag"])
    assert st == 304 and body is None
    w["api"].ok("POST", f"/applications/{w['app']['id']}/suspend", {"reason": "non_payment"}, status=200)
    st, snap2, headers2 = snapshot(w, headers["etag"])
    assert st == 200 and snap2["version"] != snap["version"]
    assert snap2["applications"][0]["state"] == "suspended"
    assert snap2["applications"][0]["state_reason"] == "non_payment"
    # A rotated key whose grace ran out leaves the snapshot with no write at all. The grace is
    # long enough for the next read to fall inside it on a loaded machine (a 1 s grace once ran
    # out before the read on a machine at load 12).
    key_id = w["app"]["keys"][0]["id"]
    grace_s = 4
    rotated_at = time.monotonic()
    rotated = w["api"].ok("POST", f"/applications/{w['app']['id']}/keys/{key_id}/rotate",
                          {"grace_seconds": grace_s})
    _, snap3, headers3 = snapshot(w)
    assert len(snap3["applications"][0]["key_sha256"]) == 2
    time.sleep(max(0.0, rotated_at + grace_s + 1.1 - time.monotonic()))
    st, snap4, _ = snapshot(w, headers3["etag"])
    assert st == 200, "the expiry changed the version"
    assert snap4["applications"][0]["key_sha256"] == [sha256_hex(rotated["key"])]
    # Reads do not change it.
    w["api"].ok("GET", "/services")
    assert snapshot(w, f'"{snap4["version"]}"')[0] == 304


def test_a_held_snapshot_request_answers_when_the_version_moves_or_when_the_wait_ends(world):
    """Long poll (Prefer: wait): held while nothing changes, answered with the new snapshot as soon
    as a change commits, whichever way the change came (a write, or a key's grace running out)."""
    w = world
    _, snap, headers = snapshot(w)
    etag = headers["etag"]
    held = {"If-None-Match": etag, "Prefer": "wait=1"}
    path = f"/gateway/v1/services/{w['service']['id']}/snapshot"
    started = time.monotonic()
    st, body, hs = w["gw"].call("GET", path, headers=held)
    assert (st, body) == (304, None) and hs["preference-applied"] == "wait=1"
    assert time.monotonic() - started >= 0.9, "held for the wait"
    # An unreadable wait is plain polling: answered at once.
    st, _, hs = w["gw"].call("GET", path, headers={"If-None-Match": etag, "Prefer": "wait=x"})
    assert st == 304 and "preference-applied" not in hs

    def suspend_soon():
        time.sleep(0.5)
        w["api"].ok("POST", f"/applications/{w['app']['id']}/suspend", {"reason": "non_payment"}, status=200)

    # Ten requests held at once for up to 15 s each: the change answers every one of them, with
    # the new snapshot (a 304 would mean the hold ran out without seeing it).
    with ThreadPoolExecutor(11) as pool:
        waits = [pool.submit(w["gw"].call, "GET", path, None, {"If-None-Match": etag, "Prefer": "wait=15"})
                 for _ in range(10)]
        pool.submit(suspend_soon).result()
        answers = [f.result() for f in waits]
    for st, body, hs in answers:
        assert st == 200 and body["version"] != snap["version"], (st, body)
        assert body["applications"][0]["state"] == "suspended"
    # A version the gateway does not hold is answered at once, held or not.
    st, body, _ = w["gw"].call("GET", path, headers={"If-None-Match": '"0.0"', "Prefer": "wait=15"})
    assert st == 200
    # A key whose grace runs out moves the version with no write: that answers a held request too.
    new_etag = answers[0][2]["etag"]
    key_id = w["app"]["keys"][0]["id"]
    w["api"].ok("POST", f"/applications/{w['app']['id']}/keys/{key_id}/rotate", {"grace_seconds": 2})
    _, rotated, hs = snapshot(w)
    st, body, _ = w["gw"].call("GET", path, headers={"If-None-Match": hs["etag"], "Prefer": "wait=15"})
    assert st == 200 and len(body["applications"][0]["key_sha256"]) == 1, body
    assert new_etag != hs["etag"]


def test_snapshot_is_what_the_filter_enforces(world, start_envoy):
    """One definition: the control plane's snapshot, given to the filter inline, enforces the plan."""
    w = world
    _, snap, _ = snapshot(w)
    envoy = start_envoy({"snapshot": snap})
    key = {"x-api-key": w["app"]["key"]}
    assert [call(envoy.port, "/", headers=key).status for _ in range(4)] == [200, 200, 200, 429]
    assert call(envoy.port, "/", headers={"x-api-key": "nope"}).status == 403


def test_usage_is_counted_exactly_once(world):
    w = world
    app, t = w["app"]["id"], minute() - 3600
    entries = [{"application": app, "metric": "hits", "bucket_start": t, "delta": 5},
               {"application": app, "metric": "search", "bucket_start": t, "delta": 2},
               {"application": app, "metric": "hits", "bucket_start": t + 60, "delta": 1},
               {"application": "app_gone", "metric": "hits", "bucket_start": t, "delta": 9}]
    st, ack, _ = report(w, "gw-a", 1, entries)
    assert st == 200 and ack == {"duplicate": False, "accepted": 3, "ignored": 1}
    st, ack, _ = report(w, "gw-a", 1, entries)
    assert st == 200 and ack == {"duplicate": True, "accepted": 0, "ignored": 0}
    # Another gateway's sequence 1 is another report.
    assert report(w, "gw-b", 1, entries[:1])[1]["duplicate"] is False
    usage = w["api"].ok("GET", f"/applications/{app}/usage?metric=hits&period=hour&since={t - 3600}")
    assert usage["total"] == 5 + 1 + 5
    # t and t+60 may straddle an hour boundary; each bucket is hour-aligned and they add up.
    assert all(b["start"] % 3600 == 0 for b in usage["buckets"])
    assert sum(b["value"] for b in usage["buckets"]) == 11
    day = w["api"].ok("GET", f"/applications/{app}/usage?metric=search&period=day&since={t - 86400}")
    assert day["total"] == 2 and len(day["buckets"]) == 1
    assert day["buckets"][0]["start"] % 86400 == 0


def test_concurrent_retries_of_one_report_count_once(world):
    w = world
    app, t = w["app"]["id"], minute()
    entries = [{"application": app, "metric": "hits", "bucket_start": t, "delta": 7}]
    with ThreadPoolExecutor(max_workers=8) as pool:
        acks = list(pool.map(lambda _: report(w, "gw-race", 42, entries), range(8)))
    assert all(st in (200, 503) for st, _, _ in acks), acks
    assert sum(1 for st, a, _ in acks if st == 200 and not a["duplicate"]) == 1, acks
    assert w["api"].ok("GET", f"/applications/{app}/usage?metric=hits&period=day")["total"] == 7


def test_big_reports_repeating_counters_count_once_under_concurrency(world):
    """Reports are written set-based (one upsert per counter table of all a report's rows): a
    report repeating counters adds each once per entry, replays of it racing each other apply
    once, different reports racing over the same counters all apply (no deadlock on PostgreSQL,
    no "database is locked" on SQLite), and unknown application ids of any text are ignored (on
    PostgreSQL they travel quoted in an array literal: a quote or a brace in one must not split
    it or reach another id)."""
    w = world
    app, t = w["app"]["id"], minute()
    minutes = [t - 60 * k for k in range(1, 61)]  # the last hour: two hour buckets, 60 minutes
    entries = []
    for m in minutes:
        for metric, delta in (("hits", 1), ("search", 2)):
            entries += [{"application": app, "metric": metric, "bucket_start": m, "delta": delta}] * 3
    odd = ['x","' + app + '","y', "NULL", "{}", 'q\\"z', "a,b", " "]
    entries += [{"application": o, "metric": "hits", "bucket_start": t, "delta": 9} for o in odd]
    per_report = {"hits": 3 * 60, "search": 6 * 60}
    path = f"/gateway/v1/services/{w['service']['id']}/usage"

    def send(sequence):
        return w["gw"].call("POST", path, {"gateway": "gw-big", "instance": "envoy-a", "sequence": sequence,
                                           "entries": entries})

    with ThreadPoolExecutor(max_workers=8) as pool:
        acks = list(pool.map(lambda _: send(1), range(8)))
    assert all(st == 200 for st, _, _ in acks), acks
    applied = [a for _, a, _ in acks if not a["duplicate"]]
    assert applied == [{"duplicate": False, "accepted": 360, "ignored": len(odd)}], acks
    with ThreadPoolExecutor(max_workers=8) as pool:
        acks = list(pool.map(send, range(2, 10)))
    assert all(st == 200 and not a["duplicate"] and a["accepted"] == 360 for st, a, _ in acks), acks
    assert send(5)[1]["duplicate"] is True
    reports = 9
    for metric, total in per_report.items():
        usage = w["api"].ok("GET", f"/applications/{app}/usage?metric={metric}&period=hour&since={t - 7200}")
        assert usage["total"] == reports * total, (metric, usage)
    db = w["server"].db
    # Per instance: one row per (metric, minute) and per (metric, hour), each the sum of its entries.
    assert db.query("SELECT COUNT(*), SUM(value) FROM usage_instance_minutes") == [f"120|{reports * 540}"]
    hours = len({m - m % 3600 for m in minutes})
    assert db.query("SELECT COUNT(*), SUM(value) FROM usage_instance_hours") == [f"{2 * hours}|{reports * 540}"]


def test_a_replica_stuck_holding_the_services_report_lock_costs_retries_not_the_pool(world):
    """PostgreSQL: another replica frozen while it holds a service's report lock (a paused VM, a
    partition) must not take this replica down. Each report of the service waits for the lock at
    most REPORT_LOCK_TIMEOUT_MS (5 s) and is answered 503 `unavailable`, which gateways retry;
    they wait one at a time in this process, so every other route keeps its connections; and
    once the lock is gone the same report is recorded once."""
    w = world
    db = w["server"].db
    if db.backend != "postgres":
        pytest.skip("the cross-replica report lock is PostgreSQL's")
    service = w["service"]["id"]
    holder = subprocess.Popen(["psql", db.url, "-At", "-v", "ON_ERROR_STOP=1"], stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, text=True)
    try:
        holder.stdin.write(f"BEGIN; SELECT pg_advisory_xact_lock(17, hashtext('{service}')); SELECT 'held';\n")
        holder.stdin.flush()
        while holder.stdout.readline().strip() != "held":
            assert holder.poll() is None, "psql could not take the lock"
        entries = [{"application": w["app"]["id"], "metric": "hits", "bucket_start": minute(), "delta": 1}]
        started = time.monotonic()
        with ThreadPoolExecutor(max_workers=3) as pool:
            waiting = [pool.submit(report, w, "gw-stuck", s, entries) for s in (1, 2, 3)]
            time.sleep(1)
            # Reports of the stuck service are waiting; the rest of the control plane is not.
            assert snapshot(w)[0] == 200
            assert w["api"].ok("GET", "/accounts")["object"] == "list"
            answers = [f.result() for f in waiting]
        took = time.monotonic() - started
        for st, body, _ in answers:
            assert_error((st, body, None), 503, "unavailable")
        assert took < 3 * 5 + 8, f"each report waits at most the lock timeout ({took:.1f}s for three)"
    finally:
        holder.stdin.write("ROLLBACK;\n")
        holder.stdin.close()
        holder.wait(timeout=30)
    st, ack, _ = report(w, "gw-stuck", 1, entries)
    assert st == 200 and ack == {"duplicate": False, "accepted": 1, "ignored": 0}, (st, ack)
    assert w["api"].ok("GET", f"/applications/{w['app']['id']}/usage?metric=hits&period=day")["total"] == 1


@pytest.mark.parametrize("bad, param", [
    ({"gateway": "", "sequence": 1, "entries": []}, "gateway"),
    ({"gateway": "g", "sequence": 1, "entries": [{"application": "a", "metric": "hits", "bucket_start": 61, "delta": 1}]},
     "entries[0].bucket_start"),
    ({"gateway": "g", "sequence": 1, "entries": [{"application": "a", "metric": "hits", "bucket_start": 60, "delta": 1}]},
     "entries[0].bucket_start"),
    ({"gateway": "g", "sequence": 1, "entries": [{"application": "a", "metric": "hits", "bucket_start": 0, "delta": 0}]},
     None),
    ({"gateway": "g", "sequence": -1, "entries": []}, "sequence"),
    # PostgreSQL cannot hold U+0000 in text: it was a 500 there; both databases now refuse it alike.
    ({"gateway": "g", "sequence": 1, "entries": [{"application": "a\u0000b", "metric": "hits", "bucket_start": "now", "delta": 1}]},
     "entries[0].application"),
    ({"gateway": "g", "sequence": 1, "entries": [{"application": "a", "metric": "hi\u0000ts", "bucket_start": "now", "delta": 1}]},
     "entries[0].metric"),
    ({"gateway": "g", "sequence": 1, "entries": [{"application": "", "metric": "hits", "bucket_start": "now", "delta": 1}]},
     "entries[0].application"),
    ({"gateway": "g", "sequence": 1, "entries": [{"application": "a" * 801, "metric": "hits", "bucket_start": "now", "delta": 1}]},
     "entries[0].application"),
    ({"gateway": "g\u0000", "sequence": 1, "entries": []}, "gateway"),
])
def test_bad_reports_are_refused_and_change_nothing(world, bad, param):
    w = world
    if bad["entries"] and bad["entries"][0]["bucket_start"] == 0:
        bad["entries"][0]["bucket_start"] = minute()
        param = "entries[0].delta"
    if bad["entries"] and bad["entries"][0]["bucket_start"] == "now":
        bad["entries"][0]["bucket_start"] = minute()
    st, body, _ = w["gw"].call("POST", f"/gateway/v1/services/{w['service']['id']}/usage", bad)
    assert st in (400, 422), body
    if param:
        assert body["error"]["param"] == param, body
    # The sequence was not consumed: the same (gateway, sequence) with a good body is counted.
    good = {"gateway": "g", "sequence": 1, "entries": [
        {"application": w["app"]["id"], "metric": "hits", "bucket_start": minute(), "delta": 1}]}
    st, ack, _ = w["gw"].call("POST", f"/gateway/v1/services/{w['service']['id']}/usage", good)
    assert st == 200 and ack["duplicate"] is False


def test_usage_api_validates(world):
    w = world
    app = w["app"]["id"]
    assert_error(w["api"].get(f"/applications/{app}/usage?period=fortnight"), 400, "invalid_period")
    assert_error(w["api"].get(f"/applications/{app}/usage?metric=nope"), 400, "unknown_metric")
    assert_error(w["api"].get(f"/applications/{app}/usage?since=200000&until=100"), 400, "invalid_range")
    empty = w["api"].ok("GET", f"/applications/{app}/usage")
    assert empty["total"] == 0 and empty["buckets"] == [] and empty["period"] == "day"


def test_global_usage_is_what_other_instances_used(world):
    w = world
    app, t = w["app"]["id"], minute()
    path = f"/gateway/v1/services/{w['service']['id']}"
    for gw, instance, seq, delta in [("a-w1", "envoy-a", 1, 2), ("a-w2", "envoy-a", 1, 3), ("b-w1", "envoy-b", 1, 4)]:
        st, body, _ = w["gw"].call("POST", f"{path}/usage", {"gateway": gw, "instance": instance, "sequence": seq,
                                                              "entries": [{"application": app, "metric": "hits",
                                                                           "bucket_start": t, "delta": delta}]})
        assert st == 200 and body["accepted"] == 1, body
    # A duplicate report adds nothing here either.
    w["gw"].call("POST", f"{path}/usage", {"gateway": "b-w1", "instance": "envoy-b", "sequence": 1,
                                           "entries": [{"application": app, "metric": "hits", "bucket_start": t, "delta": 4}]})

    def others(instance):
        st, body, _ = w["gw"].call("GET", f"{path}/global_usage?instance={instance}")
        assert st == 200, body
        return {(e["application"], e["metric"], e["period"]): e["value"] for e in body["entries"]}

    # The plan limits hits per day and search per minute: both periods are answered.
    assert others("envoy-a")[(app, "hits", "day")] == 4
    assert others("envoy-b")[(app, "hits", "day")] == 5
    assert others("envoy-c")[(app, "hits", "day")] == 9
    assert (app, "search", "minute") not in others("envoy-c"), "no search usage anywhere"
    assert w["api"].ok("GET", f"/applications/{app}/usage?metric=hits&period=day")["total"] == 9
    assert_error(w["gw"].call("GET", f"{path}/global_usage"), 400, "invalid_query")


def test_snapshot_in_the_compact_encoding(world):
    """`Accept: application/vnd.tollgate.snapshot.v1` gets the same snapshot, compactly encoded."""
    import json
    import struct

    w = world
    _, as_json, _ = snapshot(w)
    import urllib.request
    req = urllib.request.Request(f"{w['server'].base}/gateway/v1/services/{w['service']['id']}/snapshot",
                                 headers={"Authorization": f"Bearer {w['gw_token']['token']}",
                                          "Accept": "application/vnd.tollgate.snapshot.v1"})
    with urllib.request.urlopen(req, timeout=10) as r:
        assert r.status == 200 and r.headers["content-type"] == "application/vnd.tollgate.snapshot.v1"
        raw = r.read()
    assert raw[:4] == b"TGS1"
    (head_len,) = struct.unpack_from("<I", raw, 4)
    head = json.loads(raw[8:8 + head_len])
    at = 8 + head_len
    (count,) = struct.unpack_from("<I", raw, at)
    at += 4
    apps = []
    for _ in range(count):
        n = raw[at]; at += 1
        app_id = raw[at:at + n].decode(); at += n
        (plan,) = struct.unpack_from("<I", raw, at); at += 4
        state = raw[at]; at += 1
        k = raw[at]; at += 1
        keys = [raw[at + 32 * i: at + 32 * (i + 1)].hex() for i in range(k)]; at += 32 * k
        n = raw[at]; at += 1 + n
        apps.append({"id": app_id, "plan": head["plans"][plan]["id"], "state": ["live", "suspended", "suspended",
                     "suspended"][state], "key_sha256": keys})
    assert at == len(raw)
    assert head["applications"] == []
    assert head["plans"] == as_json["plans"] and head["version"] == as_json["version"]
    assert apps == as_json["applications"]


I64_MAX = 2**63 - 1
MAX_COUNTER_VALUE = 2**48  # http::gateway::MAX_COUNTER_VALUE
MAX_COUNTER_DELTA_PER_REPORT = 2**40


def usage_total(w, metric):
    since = minute() - 86400
    return w["api"].ok("GET", f"/applications/{w['app']['id']}/usage?metric={metric}&period=hour&since={since}")["total"]


def test_a_report_that_would_overflow_a_counter_is_refused_whole(world):
    """A counter near the top of i64 (stored so by a long history, or reached by reports): the
    next report adding to it is 422 counter_overflow, not a database error the gateway retries
    forever (PostgreSQL) or a counter silently turned into a float (SQLite); none of the report is
    recorded, and its sequence is not consumed. The filter drops a report refused with a 4xx."""
    w = world
    app, db = w["app"]["id"], w["server"].db
    hour = minute() - 2 * 3600
    hour -= hour % 3600
    st, ack, _ = report(w, "gw-o", 1, [{"application": app, "metric": "hits", "bucket_start": hour, "delta": 1}])
    assert st == 200 and ack["accepted"] == 1
    db.query(f"UPDATE usage_counters SET value = {I64_MAX - 5} WHERE application_id = '{app}'")
    entries = [{"application": app, "metric": "search", "bucket_start": hour, "delta": 3},
               {"application": app, "metric": "hits", "bucket_start": hour, "delta": 10}]
    st, body, _ = report(w, "gw-o", 2, entries)
    assert st == 422 and body["error"]["code"] == "counter_overflow", (st, body)
    assert db.query(f"SELECT value FROM usage_counters WHERE application_id = '{app}'") == [str(I64_MAX - 5)]
    assert usage_total(w, "search") == 0, "nothing of the refused report was recorded"
    st, ack, _ = report(w, "gw-o", 2, entries[:1])
    assert st == 200 and ack == {"duplicate": False, "accepted": 1, "ignored": 0}, ack
    assert usage_total(w, "search") == 3


def test_reports_alone_cannot_push_a_counter_past_its_bound(world):
    """With a gateway token only: reports of the largest deltas allowed, one after the other, fill
    one hour's counter up to MAX_COUNTER_VALUE; the report that would pass it is refused whole."""
    w = world
    app = w["app"]["id"]
    hour = minute() - 3 * 3600
    hour -= hour % 3600
    per_report = [{"application": app, "metric": "hits", "bucket_start": hour + 60 * m,
                   "delta": MAX_COUNTER_DELTA_PER_REPORT} for m in range(60)]
    sent, seq = 0, 0
    while sent + 60 * MAX_COUNTER_DELTA_PER_REPORT <= MAX_COUNTER_VALUE:
        seq += 1
        st, ack, _ = report(w, "gw-fill", seq, per_report)
        assert st == 200 and ack["accepted"] == 60, (st, ack)
        sent += 60 * MAX_COUNTER_DELTA_PER_REPORT
    st, body, _ = report(w, "gw-fill", seq + 1, per_report)
    assert st == 422 and body["error"]["code"] == "counter_overflow", (st, body)
    assert usage_total(w, "hits") == sent
