"""envoy/envoy.yaml (what `cargo xtask run` starts) and envoy/envoy-native.yaml (the same with the
native shell) work as shipped: same filter chain, only the ports and the module path moved so the
test can run beside anything else."""

import copy
import json

from pathlib import Path

import yaml

from conftest import call
from support.envoy import Envoy, free_port, wasm_path

ROOT = Path(__file__).resolve().parents[1]


def shipped(name, upstream):
    """envoy/<name> as shipped, moved to free ports and pointed at the test's upstream."""
    config = yaml.safe_load((ROOT / "envoy" / name).read_text())
    config["admin"]["address"]["socket_address"]["port_value"] = free_port()
    listener = config["static_resources"]["listeners"][0]
    listener["address"]["socket_address"]["port_value"] = free_port()
    cluster = config["static_resources"]["clusters"][0]
    cluster["load_assignment"]["endpoints"][0]["lb_endpoints"][0]["endpoint"]["address"][
        "socket_address"]["port_value"] = upstream.port
    return config


def http_filters(config):
    return config["static_resources"]["listeners"][0]["filter_chains"][0]["filters"][0]["typed_config"][
        "http_filters"]


def enforces_the_demo_plan(envoy, upstream):
    try:
        r = call(envoy.port, "/search", headers={"x-api-key": "tollgate-demo-key"})
        assert r.status == 200
        assert r.header("ratelimit-policy") == '"search-minute";q=2;w=60'
        assert upstream.last()["headers"]["x-tollgate-application"] == "demo-app"
        assert call(envoy.port, "/").status == 401
    finally:
        envoy.stop()


def test_shipped_envoy_yaml_enforces_the_demo_plan(upstream):
    config = shipped("envoy.yaml", upstream)
    wasm = http_filters(config)[0]["typed_config"]["config"]
    assert wasm["vm_config"]["runtime"] == "envoy.wasm.runtime.v8"
    assert wasm["vm_config"]["code"]["local"]["filename"] == "target/wasm32-wasip1/wasm/tollgate_filter.wasm"
    wasm["vm_config"]["code"]["local"]["filename"] = wasm_path()
    enforces_the_demo_plan(Envoy(config).start(), upstream)


def test_switching_shells_changes_only_the_filter_stanza():
    """envoy-native.yaml is envoy.yaml with the wasm stanza swapped for the dynamic-module one, and
    both carry the same plugin configuration: what an operator switching shells does."""
    wasm = yaml.safe_load((ROOT / "envoy" / "envoy.yaml").read_text())
    native = yaml.safe_load((ROOT / "envoy" / "envoy-native.yaml").read_text())
    wasm_config = http_filters(wasm)[0]["typed_config"]["config"]["configuration"]["value"]
    native_stanza = http_filters(native)[0]
    assert native_stanza["name"] == "envoy.filters.http.dynamic_modules"
    assert native_stanza["typed_config"]["dynamic_module_config"]["name"] == "tollgate_envoy"
    assert native_stanza["typed_config"]["filter_name"] == "tollgate"
    assert json.loads(native_stanza["typed_config"]["filter_config"]["value"]) == json.loads(wasm_config)
    rest_wasm, rest_native = copy.deepcopy(wasm), copy.deepcopy(native)
    http_filters(rest_wasm).pop(0)
    http_filters(rest_native).pop(0)
    assert rest_wasm == rest_native


def test_shipped_native_yaml_enforces_the_demo_plan(upstream):
    # The module is found in TOLLGATE_NATIVE's directory (ENVOY_DYNAMIC_MODULES_SEARCH_PATH).
    enforces_the_demo_plan(Envoy(shipped("envoy-native.yaml", upstream), shell="native").start(), upstream)


def test_shipped_control_plane_template_works(upstream):
    """envoy/envoy-control-plane.yaml (what `cargo xtask run` renders) against a real control plane."""
    from conftest import ADMIN_TOKEN
    from support.control_plane import Api, Database, Server

    db = Database("sqlite")
    server = Server(db, ADMIN_TOKEN).start()
    envoy = None
    try:
        api = Api(server.base, ADMIN_TOKEN)
        svc = api.ok("POST", "/services", {"name": "Template"})
        plan = api.ok("POST", "/plans", {"service_id": svc["id"], "name": "P",
                                         "limits": [{"metric": "hits", "period": "day", "value": 2}]})
        acct = api.ok("POST", "/accounts", {"name": "A", "email": "a@example.com"})
        app = api.ok("POST", "/applications", {"account_id": acct["id"], "plan_id": plan["id"], "name": "A"})
        token = api.ok("POST", "/gateway_tokens", {"name": "t", "service_ids": [svc["id"]]})["token"]
        text = (ROOT / "envoy" / "envoy-control-plane.yaml").read_text()
        text = text.replace("${SERVICE_ID}", svc["id"]).replace("${GATEWAY_TOKEN}", token)
        config = yaml.safe_load(text)
        config["admin"]["address"]["socket_address"]["port_value"] = free_port()
        listener = config["static_resources"]["listeners"][0]
        listener["address"]["socket_address"]["port_value"] = free_port()
        wasm = listener["filter_chains"][0]["filters"][0]["typed_config"]["http_filters"][0]["typed_config"]["config"]
        wasm["vm_config"]["code"]["local"]["filename"] = wasm_path()
        ports = {"demo_upstream": upstream.port, "tollgate_control_plane": server.port}
        for cluster in config["static_resources"]["clusters"]:
            cluster["load_assignment"]["endpoints"][0]["lb_endpoints"][0]["endpoint"]["address"][
                "socket_address"]["port_value"] = ports[cluster["name"]]
        envoy = Envoy(config).start()
        # Every VM installs its first snapshot before traffic is judged (until then, fail closed).
        envoy.wait_snapshot()
        assert call(envoy.port, "/", headers={"x-api-key": app["key"]}).status == 200
        assert call(envoy.port, "/", headers={"x-api-key": app["key"]}).status == 200
        assert call(envoy.port, "/", headers={"x-api-key": app["key"]}).status == 429
    finally:
        if envoy:
            envoy.stop()
        server.stop()
        db.drop()
