"""Issue 18, prepaid credit at the gateway, through a real Envoy with two worker threads, for each
shell (the wasm filter and the native module), in standalone mode (the wallet inline): a wallet of
10.00 at 0.01 a call admits exactly 1,000 concurrent calls of the two applications spending from
it, then answers 402 `insufficient_credit` with the top-up link; a snapshot raising the wallet's
limit (a top-up) restores service for exactly what was added."""

from concurrent.futures import ThreadPoolExecutor

from conftest import call, sha256_hex
from support.envoy import Envoy, ListenersFile, bootstrap, free_port, http_listener, tollgate_filter, versioned
from test_envoy_filter import assert_problem

NANO_PER_UNIT = 10**9
CENT = NANO_PER_UNIT // 100
TOP_UP = "https://portal.example/developer/wallet"
KEYS = {"app-a": "k-credit-a-0123456789", "app-b": "k-credit-b-0123456789"}


def config(limit_nano):
    return {
        "credentials": {"header": "x-api-key", "query": None},
        "snapshot": {
            "plans": [{"id": "prepaid", "credit_prices": [{"metric": "hits", "nano_per_unit": CENT}]}],
            "applications": [{"id": app, "plan": "prepaid", "state": "live", "key_sha256": [sha256_hex(key)]}
                             for app, key in KEYS.items()],
            "metrics": [{"name": "hits"}],
            "wallets": [{"id": "wallet-1", "limit_nano": limit_nano, "applications": list(KEYS)}],
            "top_up_url": TOP_UP,
        },
    }


#: Admitted requests are answered by Envoy itself: 50 concurrent clients would overflow the test
#: upstream's listen backlog (Envoy then answers 503 for a connect timeout), and an admitted
#: request is a 200 either way.
ANSWER = {"direct_response": {"status": 200, "body": {"inline_string": "ok"}}}


def test_a_wallet_admits_exactly_what_it_pays_for_then_402_until_topped_up(shell, tmp_path):
    port = free_port()
    lds = ListenersFile(tmp_path)

    def publish(version, limit_nano):
        """A new inline snapshot is a new filter configuration, applied without restarting Envoy."""
        lds.publish(version, [versioned(
            http_listener("api", port, ANSWER, [tollgate_filter(config(limit_nano), shell)]), version)])

    publish(1, 10 * NANO_PER_UNIT)
    envoy = lds.serve(Envoy(bootstrap(port, free_port(), free_port(), []), concurrency=2, shell=shell))
    envoy.start()
    try:
        clients, per_client = 50, 22  # 1,100 calls for 1,000 the wallet pays for

        def client(i):
            key = {"x-api-key": KEYS["app-a" if i % 2 else "app-b"]}
            return [call(port, "/", headers=key).status for _ in range(per_client)]

        with ThreadPoolExecutor(max_workers=clients) as pool:
            statuses = [s for batch in pool.map(client, range(clients)) for s in batch]
        assert statuses.count(200) == 1_000, sorted(set(statuses))
        assert statuses.count(402) == clients * per_client - 1_000

        r = call(port, "/", headers={"x-api-key": KEYS["app-a"]})
        body = assert_problem(r, 402, "insufficient_credit")
        assert body["top_up_url"] == TOP_UP
        assert r.header("link") == f'<{TOP_UP}>; rel="payment"'
        assert r.header("retry-after") is None
        expected = {f"{envoy.ns}.tollgate.allowed": 1_000,
                    f"{envoy.ns}.tollgate.rejected.insufficient_credit": clients * per_client - 1_000 + 1}
        stats = envoy.wait_stats(expected)
        assert {k: stats.get(k) for k in expected} == expected

        # A top-up of 0.05: the new configuration finds the 10.00 spent and admits exactly 5.
        publish(2, 10 * NANO_PER_UNIT + 5 * CENT)
        lds.wait_applied(envoy, 2)
        answers = [call(port, "/", headers={"x-api-key": KEYS["app-b" if i % 2 else "app-a"]}).status
                   for i in range(7)]
        assert answers == [200] * 5 + [402] * 2
    finally:
        envoy.stop()
    assert envoy.log().count("tollgate: configured with") >= 2, "the update built a new configuration"
