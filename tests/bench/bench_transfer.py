"""Export and import figures (a benchmark, not a test): a generated export of a tenant the size issue
22 names (20,000 applications by default: every one with an API key, a quarter with an app_id and
an app key, one service with methods, mapping rules and three plans, 2,000 accounts), imported with
`tollgate import` into an empty SQLite and an empty PostgreSQL installation, exported back with
`tollgate export`, and the snapshot of the service fetched once (uncached) from each, both compact
encodings (TGS1 and TGS2) and JSON, with their sizes.

Usage: .venv/bin/python tests/bench/bench_transfer.py [--apps 20000] [--backends sqlite,postgres]
TOLLGATE_BIN picks the binary (default target/debug/tollgate: say which build the figures are of).
"""

import argparse
import hashlib
import json
import os
import sys
import tempfile
import time
import urllib.request

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))

from support.control_plane import Api, Database, Server, binary  # noqa: E402

ADMIN_TOKEN = "bench-admin-" + "0" * 32


def document(apps):
    metrics = [{"id": "met_hits", "name": "hits", "unit": "hit", "parent": None, "created_at": 0}] + [
        {"id": f"met_m{i}", "name": f"method{i}", "unit": "call", "parent": "hits", "created_at": 0} for i in range(10)]
    rules = [{"id": f"mr_{i:03d}", "method": "GET", "pattern": f"/v1/method{i}/{{id}}$", "metric": f"method{i}",
              "delta": 1, "last": False, "created_at": 0} for i in range(10)]
    plans = [{"id": f"plan_{p}", "service_id": "svc_bench", "name": p, "state": "published", "setup_fee": "0",
              "fixed_fee": "10", "trial_days": 0, "parent_plan_id": None, "created_at": 0,
              "limits": [{"metric": "hits", "period": "minute", "value": 100 * (n + 1)},
                         {"metric": "method0", "period": "day", "value": 1000}],
              "pricing_rules": [{"metric": "hits", "from": 1, "to": None, "unit_price": "0.001",
                                 "model": "graduated", "package_size": None}]}
             for n, p in enumerate(("basic", "pro", "enterprise"))]
    accounts = [{"id": f"acct_{i:05d}", "name": f"Account {i}", "email": f"dev{i}@example.com",
                 "billing_address": {"line1": "", "line2": "", "city": "", "postal_code": "", "region": "",
                                     "country": ""},
                 "vat_rate": "19", "vat_code": None, "created_at": 0} for i in range(max(1, apps // 10))]
    applications = []
    for i in range(apps):
        pair = i % 4 == 0
        applications.append({
            "id": f"app_{i:06d}", "account_id": accounts[i % len(accounts)]["id"],
            "plan_id": plans[i % 3]["id"], "name": f"App {i}", "description": "", "state": "live",
            "state_reason": None, "app_id": f"{i:08x}" if pair else None, "created_at": 0, "trial_ends_on": None,
            "keys": [{"id": f"key_{i:06d}", "key_sha256": hashlib.sha256(f"user-key-{i:012d}".encode()).hexdigest(),
                      "prefix": "sha256:", "created_at": 0, "expires_at": None}],
            "app_keys": [{"id": f"akey_{i:06d}", "key_sha256": hashlib.sha256(f"app-key-{i:012d}".encode()).hexdigest(),
                          "created_at": 0}] if pair else []})
    return {"format": "tollgate.export", "format_version": 1, "exported_at": 0, "excluded": [],
            "billing_settings": json.loads(json.dumps(DEFAULT_SETTINGS)),
            "services": [{"id": "svc_bench", "name": "Bench", "created_at": 0, "metrics": metrics,
                          "mapping_rules": rules}],
            "plans": plans, "accounts": accounts, "applications": applications}


DEFAULT_SETTINGS = None


def timed(server, *args):
    start = time.monotonic()
    r = server.cli(*args)
    took = time.monotonic() - start
    if r.returncode != 0:
        raise SystemExit(f"{' '.join(args)} failed: {r.stderr}")
    return took, r


def snapshot_sizes(server):
    api = Api(server.base, ADMIN_TOKEN)
    gw = api.ok("POST", "/gateway_tokens", {"name": "bench", "service_ids": ["svc_bench"]})
    out = {}
    for label, accept in (("json", "application/json"), ("tgs1", "application/vnd.tollgate.snapshot.v1"),
                          ("tgs2", "application/vnd.tollgate.snapshot.v2")):
        req = urllib.request.Request(server.base + "/gateway/v1/services/svc_bench/snapshot",
                                     headers={"Authorization": f"Bearer {gw['token']}", "Accept": accept})
        start = time.monotonic()
        with urllib.request.urlopen(req, timeout=120) as r:
            body = r.read()
        out[label] = (len(body), time.monotonic() - start)
    return out


def main():
    global DEFAULT_SETTINGS
    p = argparse.ArgumentParser()
    p.add_argument("--apps", type=int, default=20_000)
    p.add_argument("--backends", default="sqlite,postgres")
    args = p.parse_args()
    print(f"binary: {binary()}")
    for backend in args.backends.split(","):
        db = Database(backend)
        server = Server(db, ADMIN_TOKEN)
        try:
            if DEFAULT_SETTINGS is None:
                # The defaults as this binary exports them (an empty installation's export).
                timed(server, "migrate")
                d = tempfile.mkdtemp(prefix="tollgate-bench-")
                empty = os.path.join(d, "empty.json")
                timed(server, "export", "--out", empty)
                DEFAULT_SETTINGS = json.load(open(empty))["billing_settings"]
            d = tempfile.mkdtemp(prefix="tollgate-bench-")
            path = os.path.join(d, "export.json")
            with open(path, "w") as f:
                json.dump(document(args.apps), f)
            size = os.path.getsize(path)
            took, r = timed(server, "import", path)
            print(f"{backend}: import of {args.apps} applications ({size / 1e6:.1f} MB): {took:.1f} s  "
                  f"[{r.stderr.strip()}]")
            took, _ = timed(server, "export", "--out", os.path.join(d, "back.json"))
            print(f"{backend}: export of the same: {took:.1f} s")
            server.start()
            for label, (n, t) in snapshot_sizes(server).items():
                print(f"{backend}: snapshot {label}: {n / 1e6:.2f} MB in {t:.2f} s (uncached)")
        finally:
            server.stop()
            db.drop()


if __name__ == "__main__":
    main()
