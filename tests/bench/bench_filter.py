"""CPU cost of the Tollgate filter per request in Envoy (a benchmark, not a test).

Envoys, each pinned to core 0 with one worker, all answering with a direct_response:
  bare       - no HTTP filter but the router
  native_rl  - Envoy's native local_ratelimit (bucket never empties)
  floor      - a Rust proxy-wasm filter that does nothing (--floor, tests/bench/noop-filter): what
               the host spends on any wasm filter, which no filter can go below
  tollgate   - the Tollgate filter (wasm shell), 1,000 applications, a valid key, a limit never hit
  native     - the same decision core as an Envoy dynamic module (the native shell,
               libtollgate_envoy.so), same configuration
  metering   - the wasm shell in control-plane mode (snapshot polling, usage reports every second)
  native_metering - the native shell in control-plane mode
With --header-choices, also the wasm shell with quota_headers draft / x-ratelimit / none, and both
shells with no quota and no upstream identity headers (`*_no_headers`). With --credit, also both
shells with the plan on prepaid credit (`*_credit`: every application in one wallet that never runs
dry, so each request also spends from the wallet's record: issue 18).
wrk (pinned to core 1) loads them in interleaved rounds. For each run we read the Envoy process's
CPU time from /proc (utime + stime) and divide by the requests wrk completed: CPU microseconds per
request, plus wrk's p50/p99 latency. Figures are medians over the rounds.

Usage: .venv/bin/python tests/bench/bench_filter.py [--rounds 3] [--seconds 5] [--connections 16]
(`cargo xtask bench-filter` builds both shells first: TOLLGATE_WASM, TOLLGATE_NATIVE.) Loopback
only; every run is bounded in time.
"""

import argparse
import hashlib
import os
import re
import statistics
import subprocess
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))

from support.envoy import (Envoy, free_port, http_listener, native_filter, rss_kb, static_cluster,  # noqa: E402
                           wasm_filter)

APPS = 1_000
KEY_INDEX = 500
CLK_TCK = os.sysconf("SC_CLK_TCK")


def key(i):
    return f"bench-key-{i:06d}"


def tollgate_config(apps=APPS):
    return {
        "snapshot": {
            "plans": [{"id": "p", "limits": [{"metric": "hits", "period": "day", "value": 10**15}]}],
            "applications": [{"id": f"app-{i}", "plan": "p", "state": "live",
                              "key_sha256": [hashlib.sha256(key(i).encode()).hexdigest()]}
                             for i in range(apps)],
            "metrics": [{"name": "hits"}],
            "mapping_rules": [{"method": "GET", "pattern": "/", "metric": "hits", "delta": 1}],
        }
    }


def credit_config(apps=APPS):
    """`tollgate_config` with its plan on prepaid credit: 1 nano-unit a hit, every application in one
    wallet that cannot run dry in a benchmark."""
    config = tollgate_config(apps)
    config["snapshot"]["plans"][0]["credit_prices"] = [{"metric": "hits", "nano_per_unit": 1}]
    config["snapshot"]["wallets"] = [{"id": "bench-wallet", "limit_nano": 10**18,
                                      "applications": [f"app-{i}" for i in range(apps)]}]
    return config


NATIVE_RL = {
    "name": "envoy.filters.http.local_ratelimit",
    "typed_config": {
        "@type": "type.googleapis.com/envoy.extensions.filters.http.local_ratelimit.v3.LocalRateLimit",
        "stat_prefix": "rl",
        "token_bucket": {"max_tokens": 1_000_000_000, "tokens_per_fill": 1_000_000_000, "fill_interval": "1s"},
        "filter_enabled": {"runtime_key": "rl_enabled", "default_value": {"numerator": 100, "denominator": "HUNDRED"}},
        "filter_enforced": {"runtime_key": "rl_enforced", "default_value": {"numerator": 100, "denominator": "HUNDRED"}},
        "response_headers_to_add": [{"append_action": "OVERWRITE_IF_EXISTS_OR_ADD",
                                     "header": {"key": "x-local-rate-limit", "value": "true"}}],
    },
}


def start_control_plane():
    """A release `tollgate serve` on SQLite with the benchmark's 1,000 applications and their keys."""
    import sqlite3
    import time as _time

    from support.control_plane import Api, Database, Server
    token = "bench-admin-token-0123456789abcdef0123456789"
    db = Database("sqlite")
    server = Server(db, token, extra_env={"TOLLGATE_LOG": "warn"}).start()
    api = Api(server.base, token)
    svc = api.ok("POST", "/services", {"name": "Bench"})
    plan = api.ok("POST", "/plans", {"service_id": svc["id"], "name": "P",
                                     "limits": [{"metric": "hits", "period": "day", "value": 10**15}]})
    api.ok("POST", f"/services/{svc['id']}/mapping_rules", {"method": "GET", "pattern": "/", "metric": "hits"})
    acct = api.ok("POST", "/accounts", {"name": "Bench", "email": "bench@example.com"})
    t = int(_time.time())
    with sqlite3.connect(db.path) as c:
        c.executemany("INSERT INTO applications VALUES (?,?,?,?,?,?,?,?,?)",
                      [(f"app-{i}", acct["id"], plan["id"], f"a{i}", "", "live", None, t, t) for i in range(APPS)])
        c.executemany("INSERT INTO application_keys VALUES (?,?,?,?,?,?)",
                      [(f"key-{i:06d}", f"app-{i}", hashlib.sha256(key(i).encode()).hexdigest(), "bench", t, None)
                       for i in range(APPS)])
    api.ok("PATCH", f"/services/{svc['id']}", {"name": "Bench"})  # new snapshot version
    gw = api.ok("POST", "/gateway_tokens", {"name": "bench", "service_ids": [svc["id"]]})["token"]
    config = {"service_id": svc["id"], "control_plane": {"cluster": "tollgate_control_plane", "token": gw}}
    return {"server": server, "db": db, "config": config}


def direct_response_bootstrap(filters, clusters=()):
    listen, admin = free_port(), free_port()
    ok = {"direct_response": {"status": 200, "body": {"inline_string": "ok"}}}
    return {
        "admin": {"address": {"socket_address": {"address": "127.0.0.1", "port_value": admin}}},
        "static_resources": {"listeners": [http_listener("bench", listen, ok, filters)], "clusters": list(clusters)},
    }


def cpu_seconds(pid):
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def to_ms(value, unit):
    return float(value) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[unit]


#: Half-load runs pace each connection with a fixed think time (wrk's `delay()`, whole
#: milliseconds): long enough that rounding and the request's own latency stay a few percent of it.
PACED_DELAY_MS = 5
PACER = os.path.join(os.path.dirname(os.path.abspath(__file__)), "paced.lua")


def run_wrk(port, seconds, connections, paced=False):
    script = ["-s", PACER] if paced else []
    out = subprocess.run(
        ["taskset", "-c", "1", "wrk", "-t1", f"-c{connections}", f"-d{seconds}s", "--latency", *script,
         "-H", f"x-api-key: {key(KEY_INDEX)}", f"http://127.0.0.1:{port}/"],
        capture_output=True, text=True, timeout=seconds + 30, check=True,
        env=dict(os.environ, WRK_DELAY_MS=str(PACED_DELAY_MS))).stdout
    requests = int(re.search(r"(\d+) requests in", out).group(1))
    p50 = re.search(r"50%\s+([\d.]+)(us|ms|s)", out)
    p99 = re.search(r"99%\s+([\d.]+)(us|ms|s)", out)
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    return requests, to_ms(*p50.groups()), to_ms(*p99.groups()), int(non2xx.group(1)) if non2xx else 0


def rss_with_apps(apps):
    """RSS of Envoy (2 workers) idle, then with `apps` applications in each shell: the wasm shell
    holds a catalog per VM (the main thread's and each worker's), the native shell one per process."""
    config = tollgate_config(apps)
    variants = {"bare": ([], "wasm"), "wasm shell": ([wasm_filter(config, vm_id="rss")], "wasm"),
                "native shell": ([native_filter(config)], "native")}
    print(f"\nRSS with {apps:,} applications inline (standalone mode, --concurrency 2, after one request):")
    for name, (filters, shell) in variants.items():
        e = Envoy(direct_response_bootstrap(filters), concurrency=2, shell=shell).start()
        try:
            run_wrk(e.port, 1, 2)
            time.sleep(1)
            print(f"{name:15s} {rss_kb(e.proc.pid) / 1024:8.0f} MiB", flush=True)
        finally:
            e.stop()


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--seconds", type=int, default=5)
    ap.add_argument("--connections", type=int, default=16)
    ap.add_argument("--module", action="append", default=[], metavar="NAME=PATH",
                    help="also measure another build of the module (for profiling experiments)")
    ap.add_argument("--floor", metavar="PATH",
                    help="the no-op proxy-wasm filter (cargo xtask bench-filter builds and passes it)")
    ap.add_argument("--half-load-seconds", type=int, default=10,
                    help="p99 latency of bare Envoy and both shells at the same paced rate, half the "
                         "wasm shell's capacity (0 skips it)")
    ap.add_argument("--rss-apps", type=int, default=100_000,
                    help="resident memory of bare Envoy and of each shell with this many applications "
                         "inline (standalone mode, --concurrency 2); 0 skips it")
    ap.add_argument("--header-choices", action="store_true",
                    help="also measure the wasm shell with each quota_headers choice, and with no "
                         "quota or upstream identity headers at all")
    ap.add_argument("--credit", action="store_true",
                    help="also measure both shells with the plan on prepaid credit (tollgate_credit, "
                         "native_credit)")
    ap.add_argument("--no-metering", action="store_true",
                    help="skip the control-plane-mode variant (needs the tollgate binary)")
    args = ap.parse_args()
    if os.cpu_count() < 2:
        sys.exit("needs 2 cores: Envoy on core 0, wrk on core 1")

    variants = {
        "bare": direct_response_bootstrap([]),
        "native_rl": direct_response_bootstrap([NATIVE_RL]),
        "tollgate": direct_response_bootstrap([wasm_filter(tollgate_config())]),
        "native": direct_response_bootstrap([native_filter(tollgate_config())]),
    }
    if args.header_choices:
        for choice in ("draft", "x-ratelimit", "none"):
            variants[f"wasm_{choice}"] = direct_response_bootstrap(
                [wasm_filter(dict(tollgate_config(), quota_headers=choice), vm_id=choice)])
        bare_headers = dict(tollgate_config(), quota_headers="none",
                            upstream_headers={"application": None, "plan": None})
        variants["wasm_no_headers"] = direct_response_bootstrap([wasm_filter(bare_headers, vm_id="no_headers")])
        variants["native_no_headers"] = direct_response_bootstrap([native_filter(bare_headers)])
    if args.credit:
        variants["tollgate_credit"] = direct_response_bootstrap([wasm_filter(credit_config(), vm_id="credit")])
        variants["native_credit"] = direct_response_bootstrap([native_filter(credit_config())])
    if args.floor:
        variants["floor"] = direct_response_bootstrap([wasm_filter({}, wasm=args.floor, vm_id="floor")])
    control_plane = None
    if not args.no_metering:
        # Metering on: the same 1,000 applications served by a real control plane, the filter in
        # control-plane mode (snapshot polling + usage reports every second).
        control_plane = start_control_plane()
        variants["metering"] = direct_response_bootstrap(
            [wasm_filter(control_plane["config"], vm_id="metering")],
            [static_cluster("tollgate_control_plane", control_plane["server"].port)])
        variants["native_metering"] = direct_response_bootstrap(
            [native_filter(control_plane["config"])],
            [static_cluster("tollgate_control_plane", control_plane["server"].port)])
    for spec in args.module:
        name, _, path = spec.partition("=")
        variants[name] = direct_response_bootstrap([wasm_filter(tollgate_config(), wasm=path, vm_id=name)])
    envoys = {}
    try:
        for name, cfg in variants.items():
            # Every native_* variant loads the native module but native_rl (Envoy's own filter).
            shell = "native" if name == "native" or (name.startswith("native_") and name != "native_rl") else "wasm"
            e = Envoy(cfg, concurrency=1, shell=shell).start()
            subprocess.run(["taskset", "-a", "-p", "-c", "0", str(e.proc.pid)], check=True,
                           capture_output=True)
            envoys[name] = e
        # Warm-up: JIT tiers in V8, connection pools, page faults.
        for e in envoys.values():
            run_wrk(e.port, 2, args.connections)
        results = {name: [] for name in variants}
        for rnd in range(args.rounds):
            for name, e in envoys.items():
                before = cpu_seconds(e.proc.pid)
                requests, p50, p99, non2xx = run_wrk(e.port, args.seconds, args.connections)
                cpu = cpu_seconds(e.proc.pid) - before
                if non2xx:
                    sys.exit(f"{name}: {non2xx} non-2xx answers; the benchmark is invalid")
                results[name].append((cpu * 1e6 / requests, requests / args.seconds, p50, p99))
                print(f"round {rnd + 1} {name:15s} {cpu * 1e6 / requests:7.2f} us CPU/req "
                      f"{requests / args.seconds:9.0f} req/s  p50 {p50:.3f} ms  p99 {p99:.3f} ms", flush=True)
        half = {}
        if args.half_load_seconds:
            # One offered rate for all, so the latencies compare: half of what the wasm shell served.
            rate = statistics.median(x[1] for x in results["tollgate"]) / 2
            connections = max(1, round(rate * PACED_DELAY_MS / 1000))
            for name in ("bare", "tollgate", "native"):
                requests, p50, p99, non2xx = run_wrk(envoys[name].port, args.half_load_seconds, connections,
                                                     paced=True)
                if non2xx:
                    sys.exit(f"{name}: {non2xx} non-2xx answers; the benchmark is invalid")
                half[name] = (requests / args.half_load_seconds, p50, p99)
    finally:
        for e in envoys.values():
            e.stop()
        if control_plane:
            control_plane["server"].stop()
            control_plane["db"].drop()

    med = {n: [statistics.median(x[i] for x in r) for i in range(4)] for n, r in results.items()}
    base = med["bare"][0]
    print(f"\nEnvoy 1.39.3, --concurrency 1 pinned to core 0; wrk -t1 -c{args.connections} on core 1; "
          f"{args.rounds} interleaved rounds x {args.seconds}s; medians")
    print(f"{'variant':15s} {'CPU us/req':>10s} {'vs bare':>9s} {'ratio':>6s} {'req/s':>9s} "
          f"{'p50 ms':>8s} {'p99 ms':>8s}")
    for n, (cpu, rps, p50, p99) in med.items():
        print(f"{n:15s} {cpu:10.2f} {cpu - base:+9.2f} {cpu / base:6.2f} {rps:9.0f} {p50:8.3f} {p99:8.3f}")
    rl = med["native_rl"][0] - base
    native = med["native"][0] - base
    print(f"\nTollgate's wasm shell adds {med['tollgate'][0] - base:.2f} us CPU per request over bare Envoy "
          f"(tracked, not gated: issue 23); native local_ratelimit adds {rl:.2f} us.")
    print(f"Tollgate's native shell adds {native:.2f} us (goal: <= 3 us, and <= 2x local_ratelimit's "
          f"{rl:.2f} us = {2 * rl:.2f} us): {'met' if native <= 3 and native <= 2 * rl else 'NOT met'}.")
    if args.rss_apps:
        rss_with_apps(args.rss_apps)
    if half:
        print(f"\nHalf load: {connections} connections paced at one request per {PACED_DELAY_MS} ms each "
              f"(offered ~{rate:.0f} req/s, half the wasm shell's capacity)")
        for n, (rps, p50, p99) in half.items():
            print(f"{n:15s} {rps:9.0f} req/s  p50 {p50:.3f} ms  p99 {p99:.3f} ms")
    if "floor" in med:
        floor = med["floor"][0]
        print(f"The no-op wasm filter (the host's floor) adds {floor - base:.2f} us; over it, Tollgate adds "
              f"{med['tollgate'][0] - floor:.2f} us.")
    if "tollgate_credit" in med:
        print(f"Prepaid credit (a wallet record spent on every request): wasm shell "
              f"{med['tollgate_credit'][0] - med['tollgate'][0]:+.2f} us, native shell "
              f"{med['native_credit'][0] - med['native'][0]:+.2f} us per request over the same shell without.")
    if "metering" in med:
        print(f"With metering on (control-plane mode, reports every second): {med['metering'][0] - base:.2f} us "
              f"({med['metering'][0] - med['tollgate'][0]:+.2f} us vs standalone).")


if __name__ == "__main__":
    main()
