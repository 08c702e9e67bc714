"""envoy/envoy.yaml (what `cargo xtask run` starts) works as shipped: same filter chain, only the
ports and the module path moved so the test can run beside anything else."""

from pathlib import Path

import yaml

from conftest import call
from support.envoy import Envoy, free_port, wasm_path

ROOT = Path(__file__).resolve().parents[1]


def test_shipped_envoy_yaml_enforces_the_demo_plan(upstream):
    config = yaml.safe_load((ROOT / "envoy" / "envoy.yaml").read_text())
    config["admin"]["address"]["socket_address"]["port_value"] = free_port()
    listener = config["static_resources"]["listeners"][0]
    listener["address"]["socket_address"]["port_value"] = free_port()
    hcm = listener["filter_chains"][0]["filters"][0]["typed_config"]
    wasm = hcm["http_filters"][0]["typed_config"]["config"]
    assert wasm["vm_config"]["runtime"] == "envoy.wasm.runtime.v8"
    assert wasm["vm_config"]["code"]["local"]["filename"] == "target/wasm32-wasip1/release/tollgate_filter.wasm"
    wasm["vm_config"]["code"]["local"]["filename"] = wasm_path()
    cluster = config["static_resources"]["clusters"][0]
    cluster["load_assignment"]["endpoints"][0]["lb_endpoints"][0]["endpoint"]["address"][
        "socket_address"]["port_value"] = upstream.port
    envoy = Envoy(config).start()
    try:
        r = call(envoy.port, "/search", headers={"x-api-key": "tollgate-demo-key"})
        assert r.status == 200
        assert r.header("ratelimit-policy") == '"search-minute";q=2;w=60'
        assert upstream.last()["headers"]["x-tollgate-application"] == "demo-app"
        assert call(envoy.port, "/").status == 401
    finally:
        envoy.stop()
