"""Snapshot and ingestion figures (a benchmark, not a test), against a release `tollgate serve`.

1. Snapshot production: a service with 100,000 applications (one key each), SQLite and
   PostgreSQL: time of the first (uncached) snapshot request, of a cached one, and of a 304.
2. Snapshot application in Envoy (SQLite run), for each shell: Envoy with the filter in
   control-plane mode and `--concurrency 2` starts while the control plane is down (fail closed),
   then the control plane comes up; the filter logs the apply time per link (each wasm VM; one
   native link per process); RSS of Envoy before and after.
3. Ingestion: usage reports of 1,000 counters each, posted by 8 client threads (--clients) for --seconds,
   SQLite and PostgreSQL, without a gateway instance (one counter table) and then with one (as the
   filter sends them: three tables): reports/s and counter updates/s, and the stored totals
   checked against what was sent.

Usage: .venv/bin/python tests/bench/bench_loop.py [--apps 100000] [--seconds 10]
       [--backends sqlite,postgres | --sqlite-only] [--ingestion-only] [--clients 8]
(`cargo xtask bench-loop` builds the release binaries first.) Loopback only, bounded in time.
"""

import argparse
import json
import os
import re
import secrets
import sqlite3
import subprocess
import sys
import threading
import time
import urllib.request

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))

from support.control_plane import Api, Database, Server  # noqa: E402
from support.envoy import SHELLS, Envoy, bootstrap, free_port, rss_kb, static_cluster, tollgate_filter  # noqa: E402

#: The columns the seed writes (newer ones, like 0020's `app_id`, stay NULL).
APP_COLUMNS = "id, account_id, plan_id, name, description, state, state_reason, created_at, updated_at"
TOKEN = "bench-admin-token-0123456789abcdef0123456789"


def seed(db, api, apps, day_limit=False):
    """A service, a plan and `apps` applications with one key each, written straight to the database.
    `day_limit`: the plan also limits hits per day, so every application reported is one the usage
    alert detector examines on each pass (its worst case)."""
    svc = api.ok("POST", "/services", {"name": "Bench"})
    limits = [{"metric": "hits", "period": "minute", "value": 1000}]
    if day_limit:
        limits.append({"metric": "hits", "period": "day", "value": 1_000_000_000})
    plan = api.ok("POST", "/plans", {"service_id": svc["id"], "name": "P", "limits": limits})
    acct = api.ok("POST", "/accounts", {"name": "Bench", "email": "bench@example.com"})
    rows_app, rows_key = [], []
    t = int(time.time())
    for i in range(apps):
        app_id = f"app_bench{i:08d}"
        rows_app.append((app_id, acct["id"], plan["id"], f"app {i}", "", "live", None, t, t))
        rows_key.append((f"key_bench{i:08d}", app_id, secrets.token_hex(32), "tg_benc", t, None))
    if db.backend == "sqlite":
        with sqlite3.connect(db.path) as c:
            c.executemany(f"INSERT INTO applications ({APP_COLUMNS}) VALUES (?,?,?,?,?,?,?,?,?)", rows_app)
            c.executemany("INSERT INTO application_keys VALUES (?,?,?,?,?,?)", rows_key)
    else:
        def copy(table, rows):
            data = "".join("\t".join("\\N" if v is None else str(v) for v in r) + "\n" for r in rows)
            subprocess.run(["psql", db.url, "-q", "-c", f"COPY {table} FROM STDIN"], input=data, text=True,
                           check=True, capture_output=True, timeout=300)
        copy(f"applications ({APP_COLUMNS})", rows_app)
        copy("application_keys", rows_key)
    # Any admin write bumps the snapshot version, as a real change would.
    api.ok("PATCH", f"/services/{svc['id']}", {"name": "Bench"})
    gw = api.ok("POST", "/gateway_tokens", {"name": "bench", "service_ids": [svc["id"]]})["token"]
    return svc["id"], gw, [r[0] for r in rows_app]


BINARY = "application/vnd.tollgate.snapshot.v1"


def timed_get(url, token, etag=None, accept=None):
    req = urllib.request.Request(url, headers={"Authorization": f"Bearer {token}",
                                               **({"If-None-Match": etag} if etag else {}),
                                               **({"Accept": accept} if accept else {})})
    start = time.perf_counter()
    try:
        with urllib.request.urlopen(req, timeout=120) as r:
            body, status, tag = r.read(), r.status, r.headers.get("etag")
    except urllib.error.HTTPError as e:
        body, status, tag = e.read(), e.code, None
    return time.perf_counter() - start, status, len(body), tag


def ingest(server, service, gw, apps, seconds, instance=False, threads=8):
    """Reports of 1,000 counters (one per application, `hits`, the current hour's first minute)
    posted by `threads` clients for `seconds`; returns (reports/s, reports sent, client CPU share,
    reports retried after a 503).
    Each client keeps one connection and only splices its sequence into a body encoded once, so
    the figure is the control plane's, not the client's JSON encoding and TCP set-ups (the first
    runs opened a connection and encoded 1,000 entries per report). With `instance`, reports name
    a gateway instance, as the filter's do: each entry then also counts per instance, hour and
    minute (three tables instead of one)."""
    import http.client

    hour = int(time.time()) // 3600 * 3600
    entries = [{"application": a, "metric": "hits", "bucket_start": hour, "delta": 3} for a in apps[:1000]]
    done, lock, stop = [0], threading.Lock(), time.monotonic() + seconds
    gateway = "bench-" + secrets.token_hex(4)
    extra = {"instance": gateway} if instance else {}
    head, tail = json.dumps({"gateway": gateway, **extra, "sequence": 0, "entries": entries}).split('"sequence": 0', 1)
    head, tail = head.encode(), tail.encode()
    path = f"/gateway/v1/services/{service}/usage"
    failures, retried = [], [0]

    def worker(n):
        seq = n * 10_000_000
        conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=60)
        try:
            while time.monotonic() < stop:
                seq += 1
                body = head + b'"sequence": ' + str(seq).encode() + tail
                conn.request("POST", path, body=body, headers={
                    "Authorization": f"Bearer {gw}", "Content-Type": "application/json"})
                r = conn.getresponse()
                ack = json.loads(r.read())
                if r.status == 503:
                    # "Database busy": a gateway retries the same report; so does the client.
                    seq -= 1
                    with lock:
                        retried[0] += 1
                    continue
                assert r.status == 200 and ack["accepted"] == 1000 and not ack["duplicate"], (r.status, ack)
                with lock:
                    done[0] += 1
        except Exception as e:  # noqa: BLE001 - reported, then the run fails
            failures.append(repr(e))
        finally:
            conn.close()

    workers = [threading.Thread(target=worker, args=(i,)) for i in range(threads)]
    start, cpu = time.monotonic(), time.process_time()
    for t in workers:
        t.start()
    for t in workers:
        t.join()
    elapsed = time.monotonic() - start
    assert not failures, failures[:3]
    return done[0] / elapsed, done[0], (time.process_time() - cpu) / elapsed, retried[0]


def check_counted_once(db, apps, reports, per_entry=3):
    """Every report's 1,000 counters were added exactly once: the hour's total is what was sent."""
    ids = ", ".join(f"'{a}'" for a in apps[:1000])
    (total,) = db.query(f"SELECT CAST(SUM(value) AS BIGINT) FROM usage_counters WHERE application_id IN ({ids})")
    assert int(total) == reports * 1000 * per_entry, (total, reports)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--apps", type=int, default=100_000)
    ap.add_argument("--seconds", type=int, default=10)
    ap.add_argument("--backends", default="sqlite,postgres", help="comma-separated: sqlite, postgres")
    ap.add_argument("--sqlite-only", action="store_true", help="skip the PostgreSQL run (--backends sqlite)")
    ap.add_argument("--ingestion-only", action="store_true", help="skip the snapshot figures and Envoy")
    ap.add_argument("--clients", type=int, default=8, help="client threads posting reports")
    ap.add_argument("--day-limit", action="store_true",
                    help="add a daily limit: every reported application is a usage alert candidate")
    args = ap.parse_args()
    results = []
    for backend in ["sqlite"] if args.sqlite_only else args.backends.split(","):
        db = Database(backend)
        server = Server(db, TOKEN, extra_env={"TOLLGATE_LOG": "warn"}).start()
        try:
            api = Api(server.base, TOKEN)
            service, gw, apps = seed(db, api, args.apps, args.day_limit)
            if not args.ingestion_only:
                url = f"{server.base}/gateway/v1/services/{service}/snapshot"
                cold, st, size, etag = timed_get(url, gw)
                assert st == 200
                warm, _, _, _ = timed_get(url, gw)
                not_modified, st304, _, _ = timed_get(url, gw, etag)
                assert st304 == 304
                print(f"{backend}: snapshot of {args.apps} applications: {size / 1e6:.1f} MB, first {cold * 1000:.0f} ms, "
                      f"cached {warm * 1000:.0f} ms, 304 {not_modified * 1000:.1f} ms", flush=True)
                bcold, bst, bsize, _ = timed_get(url, gw, accept=BINARY)
                assert bst == 200
                print(f"{backend}: compact snapshot: {bsize / 1e6:.1f} MB, first {bcold * 1000:.0f} ms", flush=True)
                results.append((backend, size, cold, warm, not_modified))
            sent = 0
            for instance in (False, True):
                rate, reports, client_cpu, retried = ingest(server, service, gw, apps, args.seconds,
                                                            instance=instance, threads=args.clients)
                sent += reports
                check_counted_once(db, apps, sent)
                what = "with an instance (3 tables)" if instance else "without instance (1 table)"
                print(f"{backend}: ingestion {what}: {rate:.1f} reports/s of 1,000 counters = {rate * 1000:,.0f} "
                      f"counter updates/s ({retried} retries after 503; client CPU {client_cpu:.0%} of a core; "
                      f"totals checked: counted once)",
                      flush=True)
                results.append((backend, "ingestion", "instance" if instance else "no instance", round(rate * 1000)))
            if backend == "sqlite" and not args.ingestion_only:
                for shell in SHELLS:
                    results.append((f"envoy ({shell} shell)", *apply_in_envoy(server, service, gw, shell)))
        finally:
            server.stop()
            db.drop()
    print("\nsummary")
    for r in results:
        print("  ", r)


def apply_in_envoy(server, service, gw, shell):
    """RSS and apply time of a big snapshot in Envoy (2 workers; the wasm shell applies it in each
    worker's VM and the main thread's, the native shell once per process)."""
    from support.upstream import Upstream
    up = Upstream().start()
    server.stop()
    config = {"service_id": service, "control_plane": {"cluster": "cp", "token": gw, "poll_interval_ms": 500,
                                                        "timeout_ms": 60000}}
    envoy = Envoy(bootstrap(free_port(), free_port(), up.port, [tollgate_filter(config, shell)],
                            [static_cluster("cp", server.port)]), concurrency=2, shell=shell).start()
    updates = f"{envoy.ns}.tollgate.snapshot.updates"
    try:
        time.sleep(2)
        before = rss_kb(envoy.proc.pid)
        server.start()
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            if envoy.stats(updates).get(updates, 0) >= min(2, envoy.links):
                break
            time.sleep(0.5)
        time.sleep(2)
        after = rss_kb(envoy.proc.pid)
    finally:
        envoy.stop()
        up.stop()
    applied = [int(m) for m in re.findall(r"applied: \d+ applications, \d+ plans, \d+ bytes in (\d+) ms", envoy.log())]
    for line in re.findall(r"applied: .*", envoy.log()):
        print("  ", line, flush=True)
    print(f"envoy, {shell} shell: snapshot applied by {len(applied)} links in {applied} ms; RSS {before / 1024:.0f} MB "
          f"-> {after / 1024:.0f} MB (+{(after - before) / 1024:.0f} MB)", flush=True)
    return applied, before, after


if __name__ == "__main__":
    main()
