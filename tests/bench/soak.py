"""A bounded soak through the whole data path (a benchmark-style run with assertions): wrk ->
Envoy (--concurrency 2) with the filter in control-plane mode -> an origin answering 200, the
control plane on PostgreSQL receiving every hit. At the end the usage the control plane stored
equals what the filter admitted, exactly, and the origin answered all of it but the requests wrk
abandons at its deadline (at most one per connection); the resident memory of
Envoy and of the control plane, sampled every SAMPLE_S seconds, stays flat after the warm-up.

Usage: .venv/bin/python tests/bench/soak.py [--seconds 600] [--connections 4]
(`cargo xtask soak` builds release binaries first; the test suite runs it for 60 s.)
Loopback only; bounded by --seconds.
"""

import argparse
import glob
import os
import re
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))

from support.control_plane import Api, Database, Server  # noqa: E402
from support.envoy import (  # noqa: E402
    Envoy, bootstrap, free_port, http_listener, rss_kb, static_cluster, wasm_filter)

TOKEN = "soak-admin-token-0123456789abcdef0123456789"
#: Applications in the load: most on a plan that never limits, TIGHT_APPS on 100 hits a minute.
APPS = 50
TIGHT_APPS = 5
#: Seconds between memory samples.
SAMPLE_S = 5
#: Allowed growth of a process's RSS between the end of the warm-up and the end of the run.
RSS_GROWTH_MAX_MB = 16
RSS_GROWTH_MAX_FRACTION = 0.10
#: How long the counts may take to settle after the load stops (flush 1 s, plus retries).
SETTLE_S = 30

WRK_SCRIPT = """
local keys = {%s}
local n = 0
function request()
  n = n + 1
  local path = (n %% 7 == 0) and "/search" or "/items"
  return wrk.format("GET", path, {["x-api-key"] = keys[(n %% #keys) + 1]})
end
"""


def postgres_rss_mb():
    total = 0.0
    for status in glob.glob("/proc/[0-9]*/status"):
        try:
            with open(status) as f:
                text = f.read()
        except OSError:
            continue
        if re.search(r"^Name:\s+postgres$", text, re.M):
            m = re.search(r"VmRSS:\s+(\d+)", text)
            total += int(m.group(1)) / 1024 if m else 0
    return total


def origin_listener(port):
    """A listener answering 200 itself: an origin that costs nothing and counts exactly (stats)."""
    return http_listener("origin", port, {"direct_response": {"status": 200, "body": {"inline_string": "ok"}}})


def run(seconds, connections, log=print):
    db = Database("postgres")
    server = Server(db, TOKEN, extra_env={"TOLLGATE_BILLING_SCHEDULER": "off"}).start()
    envoy = None
    try:
        api = Api(server.base, TOKEN)
        svc = api.ok("POST", "/services", {"name": "Soak"})
        api.ok("POST", f"/services/{svc['id']}/metrics", {"name": "search", "parent": "hits"})
        # Rules that never overlap: each admitted request adds exactly one hit (a search rolls up
        # into hits), so the stored hits must equal the filter's count of admitted requests.
        api.ok("POST", f"/services/{svc['id']}/mapping_rules",
               {"method": "GET", "pattern": "/items$", "metric": "hits"})
        api.ok("POST", f"/services/{svc['id']}/mapping_rules",
               {"method": "GET", "pattern": "/search$", "metric": "search"})
        big = api.ok("POST", "/plans", {"service_id": svc["id"], "name": "Big",
                                        "limits": [{"metric": "hits", "period": "day", "value": 10 ** 12}]})
        tight = api.ok("POST", "/plans", {"service_id": svc["id"], "name": "Tight",
                                          "limits": [{"metric": "hits", "period": "minute", "value": 100}]})
        acct = api.ok("POST", "/accounts", {"name": "Soak", "email": "soak@example.com"})
        keys = [api.ok("POST", "/applications", {"account_id": acct["id"], "name": f"a{i}",
                                                 "plan_id": (tight if i < TIGHT_APPS else big)["id"]})["key"]
                for i in range(APPS)]
        gw = api.ok("POST", "/gateway_tokens", {"name": "soak", "service_ids": [svc["id"]]})["token"]
        config = {"service_id": svc["id"], "control_plane": {
            "cluster": "tollgate_control_plane", "authority": "tollgate", "token": gw}}
        origin = free_port()
        boot = bootstrap(free_port(), free_port(), origin, [wasm_filter(config)],
                         [static_cluster("tollgate_control_plane", server.port)])
        boot["static_resources"]["listeners"].append(origin_listener(origin))
        envoy = Envoy(boot, concurrency=2).start()
        envoy.wait_snapshot()

        with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as f:
            f.write(WRK_SCRIPT % ", ".join(f'"{k}"' for k in keys))
            script = f.name
        wrk = subprocess.Popen(["wrk", "-t1", f"-c{connections}", f"-d{seconds}s", "-s", script,
                                f"http://127.0.0.1:{envoy.port}/"], stdout=subprocess.PIPE, text=True)
        started = time.monotonic()
        samples = []  # (t, envoy MiB, control plane MiB, postgres MiB)
        while wrk.poll() is None and time.monotonic() - started < seconds + 30:
            samples.append((round(time.monotonic() - started), rss_kb(envoy.proc.pid) / 1024,
                            rss_kb(server.proc.pid) / 1024, postgres_rss_mb()))
            time.sleep(SAMPLE_S)
        out = wrk.communicate(timeout=60)[0]
        os.unlink(script)
        sent = int(re.search(r"(\d+) requests in", out).group(1))
        non_2xx = int((re.search(r"Non-2xx or 3xx responses: (\d+)", out) or [0, 0])[1])

        def admitted():
            s = envoy.stats("wasmcustom.tollgate.allowed")
            return s.get("wasmcustom.tollgate.allowed", 0)

        def at_origin():
            return envoy.stats("cluster.upstream.upstream_rq_200").get("cluster.upstream.upstream_rq_200", 0)

        def metered():
            rows = db.query("SELECT COALESCE(SUM(u.value), 0) FROM usage_counters u "
                            "JOIN metrics m ON m.id = u.metric_id WHERE m.name = 'hits'")
            return int(rows[0])

        deadline = time.monotonic() + SETTLE_S
        while time.monotonic() < deadline and admitted() != metered():
            time.sleep(0.5)
        time.sleep(3)  # stays equal: nothing arrives late or twice
        figures = {"seconds": seconds, "connections": connections, "requests": sent,
                   "rate_per_s": sent // max(seconds, 1), "rejected_429_or_other": non_2xx,
                   "admitted_by_filter": admitted(), "reached_origin": at_origin(), "metered": metered(),
                   "samples": samples}
        log(f"soak: {sent} requests in {seconds}s ({figures['rate_per_s']}/s), {non_2xx} refused (429), "
            f"admitted {figures['admitted_by_filter']}, at origin {figures['reached_origin']}, "
            f"metered {figures['metered']}")
        log("  t(s)  envoy MiB  control plane MiB  postgres MiB (all processes)")
        for t, e, c, p in samples:
            log(f"  {t:4d}  {e:9.1f}  {c:17.1f}  {p:12.1f}")
        return figures
    finally:
        if envoy:
            envoy.stop()
        server.stop()
        db.drop()


def check(figures):
    """The soak's claims: exact usage, flat memory after the warm-up (the first quarter)."""
    assert figures["requests"] > 0 and figures["rejected_429_or_other"] > 0, figures
    # Every admitted hit is metered, exactly. The origin answered each of them too, except the
    # requests wrk abandons when its time is up (admitted and counted, then reset before the origin's
    # answer completed): at most one per connection.
    assert figures["admitted_by_filter"] == figures["metered"], figures
    abandoned = figures["admitted_by_filter"] - figures["reached_origin"]
    assert 0 <= abandoned <= figures["connections"], figures
    assert figures["admitted_by_filter"] + figures["rejected_429_or_other"] >= figures["requests"], figures
    samples = figures["samples"]
    warm = [s for s in samples if s[0] >= figures["seconds"] / 4]
    assert len(warm) >= 3, samples
    for col, name in ((1, "envoy"), (2, "control plane")):
        base = warm[0][col]
        peak = max(s[col] for s in warm)
        allowed = max(RSS_GROWTH_MAX_MB, base * RSS_GROWTH_MAX_FRACTION)
        assert peak - base <= allowed, f"{name} RSS grew {peak - base:.1f} MiB after warm-up ({samples})"


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=int, default=600)
    ap.add_argument("--connections", type=int, default=4)
    a = ap.parse_args()
    check(run(a.seconds, a.connections))
    print("soak: usage exact, memory flat")
