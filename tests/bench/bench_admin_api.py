"""Admin API throughput (a benchmark, not a test): a read route and a write route, on SQLite and on
PostgreSQL, against a release build of `tollgate serve`.

  read:  GET  /admin/api/v1/accounts/{id}   (auth lookup + one indexed row)
  write: POST /admin/api/v1/accounts        (auth lookup + validation + one insert, committed)

wrk -t2 -c16 for --seconds each, loopback only; prints requests/s and latency percentiles.
Usage: .venv/bin/python tests/bench/bench_admin_api.py [--seconds 10] [--connections 16]
(`cargo xtask bench-admin-api` builds the release binary first.)
"""

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))

from support.control_plane import Api, Database, Server  # noqa: E402

TOKEN = "bench-admin-token-0123456789abcdef0123456789"


def wrk(url, seconds, connections, script=None):
    args = ["wrk", "-t2", f"-c{connections}", f"-d{seconds}s", "--latency",
            "-H", f"Authorization: Bearer {TOKEN}"]
    if script:
        args += ["-s", script]
    out = subprocess.run(args + [url], capture_output=True, text=True, timeout=seconds + 60, check=True).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    lat = {}
    for pct in ("50", "99"):
        m = re.search(rf"\s{pct}%\s+([\d.]+)(us|ms|s)", out)
        lat[pct] = float(m.group(1)) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[m.group(2)]
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    return rps, lat["50"], lat["99"], int(errors.group(1)) if errors else 0


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seconds", type=int, default=10)
    ap.add_argument("--connections", type=int, default=16)
    args = ap.parse_args()
    script = os.path.join(tempfile.mkdtemp(), "post.lua")
    with open(script, "w") as f:
        f.write('wrk.method = "POST"\n'
                'wrk.headers["Content-Type"] = "application/json"\n'
                f'wrk.body = {json.dumps(json.dumps({"name": "Bench Co", "email": "bench@example.com"}))}\n')
    rows = []
    for backend in ("sqlite", "postgres"):
        db = Database(backend)
        srv = Server(db, TOKEN, extra_env={"TOLLGATE_LOG": "warn"}).start()
        try:
            api = Api(srv.base, TOKEN)
            acct = api.ok("POST", "/accounts", {"name": "Read Me", "email": "read@example.com"})
            read = wrk(f"{srv.base}/admin/api/v1/accounts/{acct['id']}", args.seconds, args.connections)
            write = wrk(f"{srv.base}/admin/api/v1/accounts", args.seconds, args.connections, script)
            for name, r in (("read", read), ("write", write)):
                if r[3]:
                    sys.exit(f"{backend} {name}: {r[3]} non-2xx answers; the benchmark is invalid")
                rows.append((backend, name, *r[:3]))
                print(f"{backend:9s} {name:6s} {r[0]:9.0f} req/s  p50 {r[1]:.2f} ms  p99 {r[2]:.2f} ms", flush=True)
        finally:
            srv.stop()
            db.drop()
    print(f"\nwrk -t2 -c{args.connections} -d{args.seconds}s on loopback, server and database on the same 2 cores")
    print(f"{'database':9s} {'route':6s} {'req/s':>9s} {'p50 ms':>7s} {'p99 ms':>7s}")
    for backend, name, rps, p50, p99 in rows:
        print(f"{backend:9s} {name:6s} {rps:9.0f} {p50:7.2f} {p99:7.2f}")


if __name__ == "__main__":
    main()
