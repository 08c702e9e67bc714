"""Hostile input to the admin API, on SQLite and PostgreSQL: whatever arrives, the answer is the
JSON error object with a 4xx status (never a 5xx), and a rejected request writes nothing.

The property tests are derandomized (the same examples every run, so CI cannot flake) and bounded
by HOSTILE_EXAMPLES per route."""

import json

import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from conftest import ADMIN_TOKEN
from support.control_plane import Api
from test_control_plane import assert_error

#: Examples tried per route and backend.
HOSTILE_EXAMPLES = 60
#: Tables a rejected request may still touch: a request with an Idempotency-Key stores its
#: answer (4xx included) so a retry replays it.
MAY_CHANGE = {"idempotency_keys"}

SQL = ["'; DROP TABLE services; --", "\" OR 1=1 --", "x' UNION SELECT secret FROM admin_tokens --",
       "Robert'); DELETE FROM plans;--"]
DECIMALS = ["1e5", "1E-3", "-1e2", "0x10", "NaN", "Infinity", "-0", " 1", "1,50", "1.", ".5", "+1",
            "1" + "0" * 30, "0." + "0" * 29 + "1", "9" * 28 + ".99", "１２", "٣", "", " ", "1 000"]
UNICODE = ["Ωmega ☂ 天気", "\u202eevil", "e\u0301", "🦀" * 40, "a\u0000b", "\ud7ff", "x" * 5000, "\t\n"]

hostile_scalar = st.one_of(
    st.sampled_from(SQL + DECIMALS + UNICODE),
    st.integers(min_value=-(2 ** 70), max_value=2 ** 70),
    st.floats(allow_nan=False, allow_infinity=False),
    st.booleans(), st.none(),
    st.lists(st.integers(), max_size=3),
    st.dictionaries(st.text(max_size=5), st.integers(), max_size=2),
    st.text(max_size=300),
)


hostile_string = st.one_of(st.sampled_from(SQL + DECIMALS + UNICODE), st.text(max_size=300))
hostile_number = st.one_of(st.integers(min_value=-(2 ** 70), max_value=2 ** 70),
                           st.sampled_from([0, -1, 2 ** 63, 2 ** 64, -(2 ** 63) - 1]))


def mutations(valid):
    """A valid body with one field replaced by a hostile value of the same type (most often, to
    reach validation rather than stop at the JSON types) or of any type, removed, or an unknown
    field added."""
    fields = sorted(valid)
    strings = sorted(k for k, v in valid.items() if isinstance(v, str))
    numbers = sorted(k for k, v in valid.items() if isinstance(v, int))
    same_type = [st.tuples(st.sampled_from(strings), hostile_string)] if strings else []
    same_type += [st.tuples(st.sampled_from(numbers), hostile_number)] if numbers else []
    same_type = st.one_of(*same_type).map(lambda fv: {**valid, fv[0]: fv[1]})
    return st.one_of(
        same_type, same_type, same_type,
        st.tuples(st.sampled_from(fields), hostile_scalar).map(lambda fv: {**valid, fv[0]: fv[1]}),
        st.sampled_from(fields).map(lambda f: {k: v for k, v in valid.items() if k != f}),
        st.tuples(st.text(min_size=1, max_size=20), hostile_scalar)
        .filter(lambda kv: kv[0] not in valid).map(lambda kv: {**valid, kv[0]: kv[1]}),
    )


@pytest.fixture
def api(server):
    return Api(server.base, ADMIN_TOKEN)


def state(db):
    """Row count of every table: what a rejected request must leave alone."""
    return db.row_counts(exclude=MAY_CHANGE)


def check_answer(st_, body, sent):
    assert st_ < 500, (st_, body, sent)
    if st_ >= 400:
        err = body["error"]
        assert set(err) == {"type", "code", "message", "param"} and err["message"], err
        # The answer names what was wrong; it never echoes a stack trace or SQL.
        text = json.dumps(body).lower()
        assert "panicked" not in text and "sqlx" not in text and "syntax error" not in text, body


def run_property(server, api, path, valid):
    """Answers by status; fails unless some hostile bodies were rejected (so the no-write check ran)."""
    db = server.db
    seen = {}
    # The template itself is accepted: every mutation is one step away from a valid request.
    st_, answer, _ = api.post(path, valid)
    assert st_ == 201, (path, answer)

    @settings(max_examples=HOSTILE_EXAMPLES, deadline=None, derandomize=True, database=None,
              suppress_health_check=list(HealthCheck))
    @given(body=mutations(valid))
    def prop(body):
        before = state(db)
        st_, answer, _ = api.post(path, body)
        check_answer(st_, answer, body)
        seen[st_] = seen.get(st_, 0) + 1
        if st_ >= 400:
            assert state(db) == before, f"rejected {body!r} but rows changed"

    prop()
    print(f"\n{path}: answers {seen}")
    assert sum(n for st_, n in seen.items() if st_ >= 400) >= HOSTILE_EXAMPLES // 4, seen
    return seen


#: Every create route, as (path, a valid body) given the base catalog the test below creates;
#: one test each, so the suite's workers share them out.
CREATE_ROUTES = {
    "services": lambda base: ("/services", {"name": "S"}),
    "metrics": lambda base: (f"/services/{base['svc']}/metrics", {"name": "m", "unit": "call", "parent": "hits"}),
    "mapping_rules": lambda base: (f"/services/{base['svc']}/mapping_rules",
                                   {"method": "GET", "pattern": "/x/{id}$", "metric": "hits", "delta": 1}),
    "plans": lambda base: ("/plans", {"service_id": base["svc"], "name": "Q", "setup_fee": "0",
                                      "fixed_fee": "9.99", "trial_days": 0, "state": "published"}),
    "accounts": lambda base: ("/accounts", {"name": "B", "email": "b@example.com", "vat_rate": "19"}),
    "applications": lambda base: ("/applications", {"account_id": base["account"], "plan_id": base["plan"],
                                                    "name": "app"}),
}


@pytest.mark.parametrize("route", sorted(CREATE_ROUTES))
def test_hostile_bodies_on_every_create_route(server, api, route):
    svc = api.ok("POST", "/services", {"name": "Base"})
    api.ok("POST", f"/services/{svc['id']}/metrics", {"name": "search", "unit": "call", "parent": "hits"})
    plan = api.ok("POST", "/plans", {"service_id": svc["id"], "name": "P", "fixed_fee": "1.00",
                                     "limits": [{"metric": "hits", "period": "day", "value": 10}]})
    account = api.ok("POST", "/accounts", {"name": "A", "email": "a@example.com"})
    path, valid = CREATE_ROUTES[route]({"svc": svc["id"], "plan": plan["id"], "account": account["id"]})
    run_property(server, api, path, valid)


#: The few lenient spellings a decimal parser accepts, and what they are stored as.
ACCEPTED_AMOUNTS = {"-0": "0.00", "1.": "1.00", ".5": "0.50", "+1": "1.00"}


@pytest.mark.parametrize("value", DECIMALS)
def test_amounts_that_are_not_plain_decimals_are_422(api, value):
    """Money arrives as a plain decimal string: no exponent, no hex, no more digits than a
    Decimal holds (28) or than the API keeps (10 places), no locale separators or non-ASCII
    digits, no padding. Anything else is 422 naming the field; nothing is rounded silently."""
    svc = api.ok("POST", "/services", {"name": "Money"})
    st_, body, _ = api.post("/plans", {"service_id": svc["id"], "name": "P", "fixed_fee": value})
    if value in ACCEPTED_AMOUNTS:
        assert st_ == 201 and body["fixed_fee"] == ACCEPTED_AMOUNTS[value], (value, st_, body)
    else:
        assert_error((st_, body, None), 422, "invalid_amount", "fixed_fee")


def test_negative_and_zero_quantities(api):
    svc = api.ok("POST", "/services", {"name": "Q"})
    sid = svc["id"]
    for value in [-1, 0]:
        st_, body, _ = api.post("/plans", {"service_id": sid, "name": "P",
                                           "limits": [{"metric": "hits", "period": "day", "value": value}]})
        if value < 0:
            assert_error((st_, body, None), 400, param="limits[0].value")
        else:
            # A limit of 0 is a real plan feature: the metric is not included at all.
            assert st_ == 201, body
    for delta in [-1, 0]:
        assert_error(api.post(f"/services/{sid}/mapping_rules",
                              {"method": "GET", "pattern": "/", "metric": "hits", "delta": delta}),
                     400 if delta < 0 else 422, param="delta")
    st_, body, _ = api.post("/plans", {"service_id": sid, "name": "Tiers", "pricing_rules": [
        {"metric": "hits", "from": 0, "to": 10, "unit_price": "1"}]})
    assert st_ in (400, 422) and body["error"]["param"].startswith("pricing_rules[0]"), body


def test_unicode_and_sql_looking_names_are_stored_exactly(server, api):
    for name in ["Ωmega ☂ 天気", "e\u0301t\u00e9", "🦀 crab", SQL[0], SQL[2]]:
        svc = api.ok("POST", "/services", {"name": name})
        assert api.ok("GET", f"/services/{svc['id']}")["name"] == name
    # Every table is still there and intact.
    assert int(server.db.query("SELECT COUNT(*) FROM services")[0]) == 5


def test_nul_and_oversized_text_are_refused_alike_on_both_backends(api):
    assert_error(api.post("/services", {"name": "a\u0000b"}), 422, param="name")
    assert_error(api.post("/services", {"name": "x" * 5000}), 422, param="name")


@pytest.mark.parametrize("path", ["/admin/api/v1/applications/app_%00x", "/admin/api/v1/services/%00",
                                  "/admin/api/v1/invoices?account_id=a%00b", "/portal/sign_in?next=%00"])
def test_nul_in_a_path_or_query_is_400_alike_on_both_backends(server, api, path):
    """PostgreSQL cannot compare U+0000 (it answered 422 invalid_text, SQLite 404): one answer for
    both, before any route."""
    before = state(server.db)
    assert_error(api.call("GET", path), 400, "invalid_path")
    assert state(server.db) == before


def test_huge_bodies_are_413_and_write_nothing(server, api):
    before = state(server.db)
    huge = json.dumps({"name": "x", "description": "y" * (2 * 1024 * 1024)}).encode()
    for path, headers in [("/admin/api/v1/services", {}),
                          ("/admin/api/v1/services", {"Idempotency-Key": "huge-1"}),
                          ("/admin/api/v1/billing/runs", {})]:
        err = assert_error(api.call("POST", path, body=huge, headers=headers), 413, "body_too_large")
        assert "1048576" in err["message"]
    assert state(server.db) == before


@pytest.mark.parametrize("body", [b"{not json", b"[]", b"null", b'"x"', b"{\"name\": }", b"\xff\xfe",
                                  b"{\"name\": \"a\", \"name\": \"b\"}", b"{" * 10_000, b"1e999999"])
def test_malformed_json_is_400_and_writes_nothing(server, api, body):
    before = state(server.db)
    st_, answer, _ = api.call("POST", "/admin/api/v1/services", body=body)
    check_answer(st_, answer, body)
    assert st_ == 400, (st_, answer)
    assert state(server.db) == before
