"""Prometheus metrics (docs/operations.md): a real Prometheus server scraping a real `tollgate serve`
(with the metrics token) answers PromQL with exactly the traffic sent; /metrics refuses a missing or
wrong token; the exposition parses with the Prometheus project's Python parser and names only
documented metrics; 1,000 requests to invented paths add no series; and the filter's stats appear
on Envoy's Prometheus endpoint under the names docs/operations.md gives, for both shells."""

import random
import re
import secrets
import string
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from conftest import ADMIN_TOKEN, call
from support.control_plane import Api, Database, Server
from support.prometheus import Prometheus
from test_billing import catalog, db, next_month, report_usage, sink, start_server, today, wait_run  # noqa: F401
from test_envoy_filter import KEYS, standalone
from test_stripe import DECLINED, GOOD, add_card, developer, issue, stripe, world  # noqa: F401

METRICS_TOKEN = "metrics-" + secrets.token_hex(20)
DOCS = Path(__file__).resolve().parents[1] / "docs" / "operations.md"


@pytest.fixture(params=["sqlite", "postgres"])
def metered(request):
    """A real `tollgate serve` with a metrics token, on a fresh database of each backend."""
    db = Database(request.param)
    srv = Server(db, ADMIN_TOKEN, extra_env={"TOLLGATE_METRICS_TOKEN": METRICS_TOKEN}).start()
    yield srv
    srv.stop()
    db.drop()


def scrape(server, token=METRICS_TOKEN):
    headers = {"Authorization": f"Bearer {token}"} if token is not None else {}
    return call(server.port, "/metrics", headers=headers)


def exposition(server):
    r = scrape(server)
    assert r.status == 200, (r.status, r.body)
    assert r.header("content-type") == "text/plain; version=0.0.4; charset=utf-8"
    return r.body.decode()


def series(text):
    """Every sample's name and labels (not its value): what the scrape costs Prometheus."""
    return {(s.name, tuple(sorted(s.labels.items())))
            for family in text_string_to_metric_families(text) for s in family.samples}


def metered_world(server):
    api = Api(server.base, ADMIN_TOKEN)
    svc = api.ok("POST", "/services", {"name": "Metered"})
    api.ok("POST", f"/services/{svc['id']}/metrics", {"name": "search", "parent": "hits"})
    plan = api.ok("POST", "/plans", {"service_id": svc["id"], "name": "P"})
    acct = api.ok("POST", "/accounts", {"name": "A", "email": "a@example.com"})
    app = api.ok("POST", "/applications", {"account_id": acct["id"], "plan_id": plan["id"], "name": "App"})
    gw = api.ok("POST", "/gateway_tokens", {"name": "edge-1", "service_ids": [svc["id"]]})
    return api, Api(server.base, gw["token"]), svc, app


def report(gw, svc, sequence, entries):
    status, body, _ = gw.call("POST", f"/gateway/v1/services/{svc['id']}/usage",
                              {"gateway": "edge-1", "sequence": sequence, "entries": entries})
    assert status == 200, body
    return body


def test_prometheus_scrapes_exactly_the_traffic_sent(metered):
    """Known traffic in, the same figures out of PromQL: counter updates accepted and ignored,
    a duplicate report, admin requests by route template and status."""
    prom = Prometheus([("tollgate", f"127.0.0.1:{metered.port}", METRICS_TOKEN, "/metrics")]).start()
    try:
        api, gw, svc, app = metered_world(metered)
        now = int(time.time())
        minute = now - now % 60
        sizes = [4, 5, 6]
        for seq, n in enumerate(sizes, start=1):
            # n distinct counters (application, metric, minute): n counter updates.
            entries = [{"application": app["id"], "metric": "hits" if i % 2 else "search",
                        "bucket_start": minute - 60 * (i // 2), "delta": 3} for i in range(n)]
            assert report(gw, svc, seq, entries) == {"duplicate": False, "accepted": n, "ignored": 0}
        # A retry of report 1 adds nothing; an entry of an unknown application is ignored.
        assert report(gw, svc, 1, [{"application": app["id"], "metric": "hits", "bucket_start": minute,
                                    "delta": 1}])["duplicate"] is True
        assert report(gw, svc, 9, [{"application": "app_gone", "metric": "hits", "bucket_start": minute,
                                    "delta": 1}]) == {"duplicate": False, "accepted": 0, "ignored": 1}
        for _ in range(4):
            api.ok("GET", "/services")
        for _ in range(2):
            assert api.call("GET", "/admin/api/v1/services/svc_nope")[0] == 404
        accepted = sum(sizes)
        expected = {
            "sum(tollgate_usage_counter_updates_total)": accepted + 1,
            'sum(tollgate_usage_counter_updates_total{outcome="accepted"})': accepted,
            'sum(tollgate_usage_reports_total{outcome="recorded"})': len(sizes) + 1,
            'sum(tollgate_usage_reports_total{outcome="duplicate"})': 1,
            'sum(tollgate_http_requests_total{route="/admin/api/v1/services",method="GET",status="200"})': 4,
            'sum(tollgate_http_requests_total{route="/admin/api/v1/services/{id}",method="GET",status="404"})': 2,
            'sum(tollgate_http_requests_total{route="/gateway/v1/services/{id}/usage",method="POST"})':
                len(sizes) + 2,
            'up{job="tollgate"}': 1,
        }
        got = {q: prom.wait_for(q, float(v)) for q, v in expected.items()}
        assert got == {q: float(v) for q, v in expected.items()}, prom.targets()
        # The database-read gauges came through the same scrape.
        assert prom.wait_for('tollgate_outbox_pending{outbox="email"}', 0.0) == 0.0
        assert prom.wait_for("tollgate_metrics_database_up", 1.0) == 1.0
        # Every PromQL example of docs/operations.md is a query Prometheus accepts.
        for q in documented_queries():
            prom.query(q)
    finally:
        prom.stop()


def documented_queries():
    """The queries of the ```promql blocks of docs/operations.md (each after its `#` comment)."""
    queries = []
    for block in re.findall(r"```promql\n(.*?)```", DOCS.read_text(), re.S):
        current = []
        for line in block.splitlines() + [""]:
            if line.startswith("#") or not line.strip():
                if current:
                    queries.append("\n".join(current))
                current = []
            else:
                current.append(line)
    assert len(queries) >= 10, queries
    return queries


def test_metrics_refuse_a_missing_or_wrong_token(metered):
    for token in (None, "", METRICS_TOKEN[:-1] + ("0" if METRICS_TOKEN[-1] != "0" else "1"), ADMIN_TOKEN,
                  METRICS_TOKEN + "x"):
        r = scrape(metered, token)
        assert r.status == 401, (token, r.status, r.body)
        assert r.json()["error"]["code"] == "unauthorized"
        assert b"tollgate_" not in r.body
    assert scrape(metered).status == 200


def test_metrics_are_off_without_a_token(server):
    """The ordinary test server has no TOLLGATE_METRICS_TOKEN: /metrics is refused whatever is sent."""
    for token in (None, "anything", ADMIN_TOKEN):
        r = scrape(server, token)
        assert r.status == 403, (r.status, r.body)
        assert b"TOLLGATE_METRICS_TOKEN" in r.body
    assert "TOLLGATE_METRICS_TOKEN is not set" in server.log()


def test_the_exposition_parses_and_names_only_documented_metrics(metered):
    api, gw, svc, app = metered_world(metered)
    gw.call("GET", f"/gateway/v1/services/{svc['id']}/snapshot")
    text = exposition(metered)
    families = {f.name: f for f in text_string_to_metric_families(text)}
    documented = set(re.findall(r"`(tollgate_[a-z0-9_]+)`", DOCS.read_text()))
    # The parser names counters without `_total` and histograms without their suffixes.
    assert families, text
    for name, family in families.items():
        exposed = name + "_total" if family.type == "counter" else name
        assert exposed in documented, f"{exposed} ({family.type}) is not in docs/operations.md"
    assert families["tollgate_http_requests"].type == "counter"
    assert families["tollgate_http_request_duration_seconds"].type == "histogram"
    assert families["tollgate_outbox_pending"].type == "gauge"
    # A histogram's buckets are cumulative and end at +Inf == _count, per label set.
    by_labels = {}
    for s in families["tollgate_http_request_duration_seconds"].samples:
        key = tuple(sorted((k, v) for k, v in s.labels.items() if k != "le"))
        by_labels.setdefault(key, {})[s.labels.get("le") or s.name] = s.value
    for key, h in by_labels.items():
        buckets = [v for le, v in h.items() if not le.startswith("tollgate_")]
        assert buckets == sorted(buckets), (key, h)
        assert h["+Inf"] == h["tollgate_http_request_duration_seconds_count"], (key, h)
    snapshots = {s.labels["answer"] + "/" + s.labels["held"]: s.value
                 for s in families["tollgate_snapshot_requests"].samples if s.name.endswith("_total")}
    assert snapshots == {"full/false": 1, "full/true": 0, "not_modified/false": 0, "not_modified/true": 0}
    # The revision of the snapshot served: the first part of its version (the catalog was written
    # above, so it is past 0).
    status, snap, _ = gw.call("GET", f"/gateway/v1/services/{svc['id']}/snapshot")
    revision = families["tollgate_snapshot_catalog_revision"].samples[0].value
    assert status == 200 and revision == int(snap["version"].split(".")[0]) > 0, (revision, snap["version"])


def sample(text, name, **labels):
    """The value of one sample of the exposition (None when absent)."""
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            if s.name == name and all(s.labels.get(k) == v for k, v in labels.items()):
                return s.value
    return None


def test_billing_runs_invoices_and_email_are_counted(db, sink):
    """A billing run issuing one invoice, its email delivered over SMTP, and one invoice issued by
    hand: exactly those counts, on each backend."""
    srv = start_server(db, sink, TOLLGATE_METRICS_TOKEN=METRICS_TOKEN)
    try:
        api = Api(srv.base, ADMIN_TOKEN)
        svc, plan = catalog(api)
        acct = api.ok("POST", "/accounts", {"name": "Counted", "email": "counted@example.com"})
        app = api.ok("POST", "/applications", {"account_id": acct["id"], "plan_id": plan["id"], "name": "App"})
        report_usage(srv, api, svc, app["id"], 10)
        st, run, _ = api.call("POST", "/admin/api/v1/billing/runs", {"date": next_month(today()).isoformat()})
        assert st == 202, run
        run = wait_run(api, run["id"])
        assert (run["state"], run["invoices_issued"]) == ("succeeded", 1), run
        manual = api.ok("POST", "/invoices", {"account_id": acct["id"]})
        api.ok("POST", f"/invoices/{manual['id']}/lines", {"description": "Setup help", "unit_price": "50"})
        api.ok("POST", f"/invoices/{manual['id']}/issue", status=200)
        assert len(sink.wait_for(2)) == 2
        deadline = time.monotonic() + 20
        while True:  # the sender marks a message delivered just after the SMTP server took it
            text = exposition(srv)
            if sample(text, "tollgate_outbox_deliveries_total", result="delivered") == 2 or time.monotonic() > deadline:
                break
            time.sleep(0.1)
        assert {
            "run": sample(text, "tollgate_invoices_issued_total", by="run"),
            "manual": sample(text, "tollgate_invoices_issued_total", by="manual"),
            "runs": sample(text, "tollgate_billing_runs_total", result="succeeded"),
            "failed runs": sample(text, "tollgate_billing_runs_total", result="failed"),
            "timed runs": sample(text, "tollgate_billing_run_duration_seconds_count", result="succeeded"),
            "delivered": sample(text, "tollgate_outbox_deliveries_total", outbox="email", result="delivered"),
            "retried": sample(text, "tollgate_outbox_deliveries_total", outbox="email", result="retried"),
            "lags": sample(text, "tollgate_outbox_delivery_lag_seconds_count", outbox="email"),
            "pending": sample(text, "tollgate_outbox_pending", outbox="email"),
            "usage reports": sample(text, "tollgate_usage_reports_total", outcome="recorded"),
        } == {"run": 1, "manual": 1, "runs": 1, "failed runs": 0, "timed runs": 1, "delivered": 2, "retried": 0,
              "lags": 2, "pending": 0, "usage reports": 1}
    finally:
        srv.stop()


@pytest.mark.server_env(TOLLGATE_METRICS_TOKEN=METRICS_TOKEN)
def test_charges_are_counted_by_provider_and_outcome(world):
    """Through localstripe: one charge succeeds, one is declined, one account has no card."""
    w, api = world, world["api"]
    outcomes = {}
    for name, card in (("Good", GOOD), ("Declined", DECLINED), ("Cardless", None)):
        acct, _, dev = developer(w, name)
        if card:
            add_card(w, dev, card)
        inv = issue(api, acct["id"], "12.00")
        st, body, _ = dev.call("POST", f"/api/v1/invoices/{inv['id']}/pay", {})
        outcomes[name] = (st, (body or {}).get("state") or (body or {}).get("error", {}).get("code"))
    assert outcomes["Good"] == (200, "paid"), outcomes
    text = exposition(w["server"])
    counted = {o: sample(text, "tollgate_charges_total", provider="stripe", outcome=o)
               for o in ("succeeded", "declined", "no_payment_method", "unknown", "action_required")}
    assert counted == {"succeeded": 1, "declined": 1, "no_payment_method": 1, "unknown": 0,
                       "action_required": 0}, outcomes
    assert sample(text, "tollgate_charge_duration_seconds_count", provider="stripe") == 3
    assert sample(text, "tollgate_charges_total", provider="braintree", outcome="succeeded") == 0


def invented_path(rng):
    word = "".join(rng.choice(string.ascii_lowercase + string.digits) for _ in range(12))
    return rng.choice(["/", "/admin/api/v1/", "/api/v1/", "/gateway/v1/", "/portal/", "/x/y/"]) + word


def test_series_do_not_grow_with_invented_paths(metered):
    """Route labels are route templates: after a warm-up of each kind of unknown path, 1,000 more
    (random paths and methods) add no series, only counts."""
    rng = random.Random(20)
    methods = ["GET", "POST", "DELETE", "PROPFIND"]

    def send(_):
        return call(metered.port, invented_path(rng), method=rng.choice(methods)).status

    for prefix in ["/", "/admin/api/v1/", "/api/v1/", "/gateway/v1/", "/portal/", "/x/y/"]:
        for method in methods:
            call(metered.port, prefix + "warmup" + method.lower(), method=method)
    exposition(metered)  # a scrape is a request too: its own series exist from here on
    before = series(exposition(metered))
    with ThreadPoolExecutor(max_workers=8) as pool:
        statuses = list(pool.map(send, range(1000)))
    assert len(statuses) == 1000 and all(400 <= s < 500 for s in statuses), sorted(set(statuses))
    text = exposition(metered)
    after = series(text)
    assert after == before, sorted(after ^ before)
    assert not re.search(r"warmup|/x/y", text)
    assert len(after) < 2000, len(after)


#: The filter's stats as defined in filter/src/worker.rs (`Stats::define`), in Envoy's own names.
FILTER_STATS = ["allowed", "unauthorized", "errors", "snapshot.updates", "snapshot.failures",
                "snapshot.skipped_applications", "snapshot.skipped_wallet_entries", "usage.reports",
                "usage.report_failures", "usage.dropped_entries"] + [
    f"rejected.{r}" for r in ["malformed_request", "missing_credentials", "malformed_credentials",
                              "invalid_credentials", "application_suspended", "payment_required",
                              "no_mapping_rule", "insufficient_credit", "limit_exceeded", "unavailable"]]
#: How each shell's stats are named on Envoy's /stats/prometheus (docs/operations.md): Envoy
#: strips the wasm custom namespace (`wasmcustom.`) and keeps the dynamic modules' one.
PROMETHEUS_PREFIX = {"wasm": "tollgate_", "native": "envoy_dynamicmodulescustom_tollgate_"}


def test_filter_stats_on_envoys_prometheus_endpoint(start_envoy, shell):
    envoy = start_envoy(standalone())
    call(envoy.port, "/")
    call(envoy.port, "/", headers={"x-api-key": "bad"})
    call(envoy.port, "/", headers={"x-api-key": KEYS["live"]})
    envoy.wait_stats({f"{envoy.ns}.tollgate.allowed": 1, f"{envoy.ns}.tollgate.unauthorized": 2})
    r = call(envoy.admin_port, "/stats/prometheus")
    assert r.status == 200
    families = {f.name: f for f in text_string_to_metric_families(r.body.decode())}
    prefix = PROMETHEUS_PREFIX[shell]
    ours = {n: f for n, f in families.items() if n.startswith(prefix) and "_vm_" not in n}
    expected = {prefix + s.replace(".", "_") for s in FILTER_STATS}
    assert set(ours) == expected, sorted(set(ours) ^ expected)
    assert all(f.type == "counter" for f in ours.values())
    value = {n: f.samples[0].value for n, f in ours.items()}
    assert value[prefix + "allowed"] == 1
    assert value[prefix + "unauthorized"] == 2
    assert value[prefix + "rejected_missing_credentials"] == 1
    assert value[prefix + "rejected_invalid_credentials"] == 1
    # Every name above is the one docs/operations.md gives.
    documented = set(re.findall(r"`((?:envoy_dynamicmodulescustom_)?tollgate_[a-z0-9_]+)`", DOCS.read_text()))
    assert expected <= documented, sorted(expected - documented)
