"""Snapshot and ingestion figures (a benchmark, not a test), against a release `tollgate serve`.

1. Snapshot production: a service with 100,000 applications (one key each), SQLite and
   PostgreSQL: time of the first (uncached) snapshot request, of a cached one, and of a 304.
2. Snapshot application in Envoy (SQLite run), for each shell: Envoy with the filter in
   control-plane mode and `--concurrency 2` starts while the control plane is down (fail closed),
   then the control plane comes up; the filter logs the apply time per link (each wasm VM; one
   native link per process); RSS of Envoy before and after.
3. Ingestion: usage reports of 1,000 counters each, posted by 8 client threads for --seconds,
   SQLite and PostgreSQL: reports/s and counters/s.

Usage: .venv/bin/python tests/bench/bench_loop.py [--apps 100000] [--seconds 10]
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

TOKEN = "bench-admin-token-0123456789abcdef0123456789"


def seed(db, api, apps):
    """A service, a plan and `apps` applications with one key each, written straight to the database."""
    svc = api.ok("POST", "/services", {"name": "Bench"})
    plan = api.ok("POST", "/plans", {"service_id": svc["id"], "name": "P",
                                     "limits": [{"metric": "hits", "period": "minute", "value": 1000}]})
    acct = api.ok("POST", "/accounts", {"name": "Bench", "email": "bench@example.com"})
    rows_app, rows_key = [], []
    t = int(time.time())
    for i in range(apps):
        app_id = f"app_bench{i:08d}"
        rows_app.append((app_id, acct["id"], plan["id"], f"app {i}", "", "live", None, t, t))
        rows_key.append((f"key_bench{i:08d}", app_id, secrets.token_hex(32), "tg_benc", t, None))
    if db.backend == "sqlite":
        with sqlite3.connect(db.path) as c:
            c.executemany("INSERT INTO applications VALUES (?,?,?,?,?,?,?,?,?)", rows_app)
            c.executemany("INSERT INTO application_keys VALUES (?,?,?,?,?,?)", rows_key)
    else:
        def copy(table, rows):
            data = "".join("\t".join("\\N" if v is None else str(v) for v in r) + "\n" for r in rows)
            subprocess.run(["psql", db.url, "-q", "-c", f"COPY {table} FROM STDIN"], input=data, text=True,
                           check=True, capture_output=True, timeout=300)
        copy("applications", rows_app)
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


def ingest(server, service, gw, apps, seconds):
    url = f"{server.base}/gateway/v1/services/{service}/usage"
    hour = int(time.time()) // 3600 * 3600
    entries = [{"application": a, "metric": "hits", "bucket_start": hour, "delta": 3} for a in apps[:1000]]
    done, lock, stop = [0], threading.Lock(), time.monotonic() + seconds
    gateway = "bench-" + secrets.token_hex(4)

    def worker(n):
        seq = n * 10_000_000
        while time.monotonic() < stop:
            seq += 1
            body = json.dumps({"gateway": gateway, "sequence": seq, "entries": entries}).encode()
            req = urllib.request.Request(url, data=body, method="POST", headers={
                "Authorization": f"Bearer {gw}", "Content-Type": "application/json"})
            with urllib.request.urlopen(req, timeout=60) as r:
                ack = json.loads(r.read())
                assert ack["accepted"] == 1000 and not ack["duplicate"], ack
            with lock:
                done[0] += 1

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(8)]
    start = time.monotonic()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return done[0] / (time.monotonic() - start)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--apps", type=int, default=100_000)
    ap.add_argument("--seconds", type=int, default=10)
    ap.add_argument("--sqlite-only", action="store_true", help="skip the PostgreSQL run")
    args = ap.parse_args()
    results = []
    for backend in ("sqlite",) if args.sqlite_only else ("sqlite", "postgres"):
        db = Database(backend)
        server = Server(db, TOKEN, extra_env={"TOLLGATE_LOG": "warn"}).start()
        try:
            api = Api(server.base, TOKEN)
            service, gw, apps = seed(db, api, args.apps)
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
            rate = ingest(server, service, gw, apps, args.seconds)
            print(f"{backend}: ingestion {rate:.0f} reports/s of 1,000 counters = {rate * 1000:.0f} counters/s", flush=True)
            results.append((backend, size, cold, warm, not_modified, rate))
            if backend == "sqlite":
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
