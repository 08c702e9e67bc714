"""`tollgate import 3scale` figures (a benchmark, not a test; issue 22 item 2): the tenant the issue
names, 50 services' worth of objects and 20,000 applications (support/threescale_contract.py
`generate`: 350 metrics and methods, 300 mapping rules, 150 plans with limits and pricing rules,
10,000 accounts, a quarter of the applications in App ID and App Key mode with 8,000 app keys),
served by the 3scale contract server in this process, imported into an empty SQLite and an empty
PostgreSQL installation; then imported again (nothing to change), then again after a change in
3scale (1% of the applications suspended, 1% of the user keys regenerated, one plan's limits).

Each run prints its wall time and the importer's own split: reading 3scale (requests, retries) and
planning + writing. Reading is bound by the contract server (one Python process answering every
request); a real tenant answers slower per request, which `--concurrency` offsets.

Usage: .venv/bin/python tests/bench/bench_import_3scale.py [--apps 20000] [--services 50]
       [--backends sqlite,postgres] [--concurrency 8]   (or: cargo xtask bench-import)
TOLLGATE_BIN picks the binary (cargo xtask bench-import: the release build).
"""

import argparse
import os
import re
import subprocess
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))

from support.control_plane import Database, Server, binary  # noqa: E402
from support.threescale_contract import Server as ThreeScale, digest, generate  # noqa: E402

ADMIN_TOKEN = "bench-admin-" + "0" * 32
TOKEN = "bench-3scale-token-0123456789"


def run(server, contract, concurrency):
    env = dict(server.env, TOLLGATE_3SCALE_ACCESS_TOKEN=TOKEN)
    before = contract.stats["requests"]
    start = time.monotonic()
    r = subprocess.run([binary(), "import", "3scale", "--admin-url", contract.url, "--concurrency", str(concurrency)],
                       env=env, capture_output=True, text=True, timeout=3600)
    took = time.monotonic() - start
    if r.returncode != 0:
        raise SystemExit(f"import failed: {r.stderr[-3000:]}")
    read = re.search(r"in (\d+) ms \((\d+) request\(s\), (\d+) retried\)", r.stderr)
    summary = [line for line in r.stderr.splitlines() if line.startswith(("imported:", "up to date:"))]
    write = re.search(r"; in (\d+) ms$", summary[0]) if summary else None
    return took, {"read_ms": int(read.group(1)), "requests": contract.stats["requests"] - before,
                  "write_ms": int(write.group(1)) if write else None, "summary": summary[0] if summary else ""}


def change(tenant):
    """1% of the applications suspended, 1% of the user keys regenerated, one plan's limits."""
    apps = tenant.applications
    for a in apps[:: 100]:
        a["state"] = "suspended"
    for a in apps[50:: 100]:
        if "user_key" in a:
            a["user_key"] = digest("regenerated", a["id"])[:32]
    pid = next(iter(tenant.limits))
    for limit in tenant.limits[pid]:
        limit["value"] += 1


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--apps", type=int, default=20_000)
    p.add_argument("--services", type=int, default=50)
    p.add_argument("--backends", default="sqlite,postgres")
    p.add_argument("--concurrency", type=int, default=8)
    args = p.parse_args()
    print(f"binary: {binary()}")
    for backend in args.backends.split(","):
        tenant = generate(args.services, args.apps)
        contract = ThreeScale(tenant, token=TOKEN).start()
        db = Database(backend)
        server = Server(db, ADMIN_TOKEN)
        try:
            for label in ("first import", "second import (no change)", "after a change in 3scale"):
                if label.startswith("after"):
                    change(tenant)
                took, f = run(server, contract, args.concurrency)
                write = "-" if f["write_ms"] is None else f"{f['write_ms'] / 1000:.1f} s"
                print(f"{backend}: {label}: {took:.1f} s wall; reading 3scale {f['read_ms'] / 1000:.1f} s "
                      f"({f['requests']} requests), planning + writing {write}; {f['summary']}")
        finally:
            contract.stop()
            db.drop()


if __name__ == "__main__":
    main()
