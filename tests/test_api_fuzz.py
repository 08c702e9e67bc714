"""Property-based fuzzing of the API from its own document: schemathesis reads `/openapi.json` of a
real `tollgate serve` (SQLite, fresh data directory, the bootstrap admin token the suite uses) and,
for every operation, sends EXAMPLES_PER_OPERATION generated requests (valid and invalid bodies,
parameters and ids). Each answer must be: no 5xx; every 4xx carries the error object
`{"error": {"type", "code", "message", "param"}}`; the body matches the documented schema.

A failure names the operation and a `curl` line that reproduces it (schemathesis prints it)."""

import json
import os
import urllib.request

import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, settings
from schemathesis.config import SchemathesisConfig
from schemathesis.specs.openapi.checks import response_schema_conformance
from schemathesis.checks import not_a_server_error

from conftest import ADMIN_TOKEN
from support.control_plane import Api, Database, Server

#: Generated requests per operation. Bounded so the whole file stays under ~3 minutes on the
#: project's 2-core machines (about 75 operations; see the report of the run in the README).
EXAMPLES_PER_OPERATION = int(os.environ.get("TOLLGATE_FUZZ_EXAMPLES", "20"))

ERROR_FIELDS = {"type", "code", "message", "param"}


@schemathesis.check
def error_object(ctx, response, case):
    """Every 4xx answer carries the one error object of the API (`http/error.rs`)."""
    if not 400 <= response.status_code < 500:
        return None
    try:
        body = json.loads(response.content)
    except ValueError:
        raise AssertionError(f"{response.status_code} without a JSON body: {response.content[:200]!r}")
    err = body.get("error") if isinstance(body, dict) else None
    if not isinstance(err, dict) or set(err) != ERROR_FIELDS:
        raise AssertionError(f"{response.status_code} without the error object: {body}")
    if not (isinstance(err["message"], str) and err["message"]):
        raise AssertionError(f"{response.status_code}: empty message: {body}")
    return True


@pytest.fixture(scope="module")
def fuzzed():
    """A server on a fresh SQLite database, a little catalog, and one token of each kind."""
    db = Database("sqlite")
    # Thousands of requests with wrong or missing tokens from one address: not what this test
    # measures (test_abuse.py tests the limits).
    metrics_token = "fuzz-metrics-" + "0" * 32
    srv = Server(db, ADMIN_TOKEN, extra_env={"TOLLGATE_TOKEN_FAILURES_PER_IP": "1000000",
                                             "TOLLGATE_METRICS_TOKEN": metrics_token}).start()
    api = Api(srv.base, ADMIN_TOKEN)
    svc = api.ok("POST", "/services", {"name": "Fuzzed API"})
    plan = api.ok("POST", "/plans", {"service_id": svc["id"], "name": "Basic", "state": "published"})
    account = api.ok("POST", "/accounts", {"name": "Fuzz", "email": "fuzz@example.com"})
    api.ok("POST", "/applications", {"account_id": account["id"], "plan_id": plan["id"], "name": "App"})
    developer = api.ok("POST", f"/accounts/{account['id']}/tokens", {})["token"]
    gateway = api.ok("POST", "/gateway_tokens", {"name": "edge", "service_ids": [svc["id"]]})["token"]
    doc = json.load(urllib.request.urlopen(srv.base + "/openapi.json", timeout=30))
    yield {"server": srv, "tokens": {"/api/": developer, "/gateway/": gateway, "/metrics": metrics_token,
                                     "": ADMIN_TOKEN},
           # The old hand-written document (served until the generated one is switched on in
           # http/openapi.rs) does not follow the real types: only the server's own checks apply.
           "hand_written": bool(doc.get("x-tollgate-hand-written"))}
    srv.stop()
    db.drop()


@pytest.fixture(scope="module")
def api_schema(fuzzed):
    config = SchemathesisConfig.from_dict({
        # Operations one at a time, from their own definitions: the stateful phase (chains of
        # calls through links) and the coverage phase (an unbounded number of boundary cases)
        # would not keep to the bound.
        "phases": {"coverage": {"enabled": False}, "stateful": {"enabled": False}},
        "generation": {"max-examples": EXAMPLES_PER_OPERATION},
    })
    schema = schemathesis.openapi.from_url(fuzzed["server"].base + "/openapi.json", config=config)
    # The one operation that names an outbound target (the payment provider's `api_base`, any
    # public https host): generated hosts would be contacted by later charges. test_payments.py and
    # test_outbound_urls.py cover it.
    return schema.exclude(method="PUT", path="/admin/api/v1/billing/gateway")


schema = schemathesis.pytest.from_fixture("api_schema")


@schema.parametrize()
@settings(max_examples=EXAMPLES_PER_OPERATION, deadline=None, phases=[Phase.explicit, Phase.generate],
          suppress_health_check=list(HealthCheck), derandomize=True)
def test_every_operation_answers_within_its_contract(case, fuzzed):
    token = next(t for prefix, t in fuzzed["tokens"].items() if case.path.startswith(prefix))
    case.call_and_validate(
        base_url=fuzzed["server"].base,
        headers={"Authorization": f"Bearer {token}"},
        checks=[not_a_server_error, error_object]
        + ([] if fuzzed["hand_written"] else [response_schema_conformance]),
        timeout=30,
    )
