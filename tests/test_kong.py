"""Kong cannot be downloaded here: check what can be checked. The shipped kong.yml validates
against tollgate.meta.json (JSON Schema draft-4, what Kong uses), the schema refuses what the filter
refuses, and the very configuration Kong would hand the filter (JSON-encoded) works in Envoy."""

import json
from pathlib import Path

import jsonschema
import pytest
import yaml

from conftest import call

KONG = Path(__file__).resolve().parents[1] / "kong"


@pytest.fixture(scope="module")
def schema():
    meta = json.loads((KONG / "tollgate.meta.json").read_text())
    s = meta["config_schema"]
    jsonschema.Draft4Validator.check_schema(s)
    return s


@pytest.fixture(scope="module")
def kong_filter_config():
    doc = yaml.safe_load((KONG / "kong.yml").read_text())
    chain = doc["filter_chains"][0]
    assert chain["route"] in [r["name"] for s in doc["services"] for r in s["routes"]]
    (f,) = [f for f in chain["filters"] if f["name"] == "tollgate"]
    return f["config"]


def test_shipped_kong_config_is_valid(schema, kong_filter_config):
    jsonschema.Draft4Validator(schema).validate(kong_filter_config)
    assert kong_filter_config["stats"] is False, "metrics trap on Kong builds without them"


@pytest.mark.parametrize("mutate", [
    lambda c: c.update(typo=1),
    lambda c: c.update(fail_mode="sometimes"),
    lambda c: c["snapshot"]["plans"][0]["limits"][0].update(period="fortnight"),
    lambda c: c["snapshot"]["applications"][0].update(key_sha256=["not-a-digest"]),
    lambda c: c["snapshot"]["mapping_rules"][0].update(delta=0),
    lambda c: c["credentials"].update(header="x key"),
    lambda c: c.pop("snapshot"),
])
def test_schema_refuses_what_the_filter_refuses(schema, kong_filter_config, mutate, start_envoy):
    bad = json.loads(json.dumps(kong_filter_config))
    mutate(bad)
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.Draft4Validator(schema).validate(bad)
    envoy = start_envoy(bad, expect_ready=False)
    assert envoy.wait_exit() != 0
    assert "tollgate: invalid configuration" in envoy.log()


def test_kong_example_config_runs_in_envoy(kong_filter_config, start_envoy, upstream):
    # Kong JSON-encodes the validated object; Envoy gets the same bytes here.
    envoy = start_envoy(json.dumps(kong_filter_config))
    r = call(envoy.port, "/search", headers={"x-api-key": "tollgate-demo-key"})
    assert r.status == 200
    assert r.header("ratelimit-policy") == '"search-minute";q=2;w=60'
    assert call(envoy.port, "/", headers={"x-api-key": "wrong"}).status == 403


def test_schema_accepts_control_plane_mode_for_kong(schema):
    cp = {"service_id": "svc_1", "stats": False,
          "control_plane": {"upstream": "127.0.0.1:8080", "token": "tgw_x", "poll_interval_ms": 1000}}
    jsonschema.Draft4Validator(schema).validate(cp)
    for bad in ({"service_id": "svc_1"},
                {"service_id": "s", "control_plane": {"token": "t"}},
                {"service_id": "s", "control_plane": {"token": "t", "cluster": "c", "upstream": "u"}},
                {"service_id": "s", "control_plane": {"token": "t", "upstream": "u", "poll_interval_ms": 5}}):
        with pytest.raises(jsonschema.ValidationError):
            jsonschema.Draft4Validator(schema).validate(bad)
