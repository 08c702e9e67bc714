"""Invoice read-modify-writes under concurrency, through a real `tollgate serve` on SQLite and
PostgreSQL (issue 15 item 7): 20 concurrent credit notes of half an invoice's subtotal (exactly
two accepted, the balance exact) and 20 concurrent issues of one invoice (one number, no gap)."""

from concurrent.futures import ThreadPoolExecutor

import pytest

from conftest import ADMIN_TOKEN
from support.control_plane import Api
from test_billing import db, start_server  # noqa: F401  (the db fixture, once per backend)

N_CONCURRENT = 20


@pytest.fixture
def server(db):  # noqa: F811
    srv = start_server(db)
    yield srv
    srv.stop()


def at_once(base, method, path, body):
    def one(_):
        return Api(base, ADMIN_TOKEN).call(method, "/admin/api/v1" + path, body)[:2]
    with ThreadPoolExecutor(N_CONCURRENT) as pool:
        return list(pool.map(one, range(N_CONCURRENT)))


def test_concurrent_credit_notes_never_credit_more_than_the_invoice(server):
    api = Api(server.base, ADMIN_TOKEN)
    acct = api.ok("POST", "/accounts", {"name": "Ann", "email": "ann@example.com"})
    inv = api.ok("POST", "/invoices", {"account_id": acct["id"]})
    api.ok("POST", f"/invoices/{inv['id']}/lines", {"description": "Support", "unit_price": "100"})
    api.ok("POST", f"/invoices/{inv['id']}/issue", status=200)
    results = at_once(server.base, "POST", f"/invoices/{inv['id']}/credit_notes", {"amount": "50"})
    accepted = [b for st, b in results if st < 300]
    refused = [(st, b) for st, b in results if st >= 300]
    assert len(accepted) == 2, results
    assert all(st == 422 and b["error"]["code"] == "exceeds_invoice" for st, b in refused), refused
    assert sorted(a["subtotal"] for a in accepted) == ["50.00", "50.00"]
    assert len({a["number"] for a in accepted}) == 2
    assert api.ok("GET", f"/accounts/{acct['id']}")["credit_balance"] in ("100", "100.00")


def test_concurrent_issues_of_one_invoice_take_one_number(server):
    api = Api(server.base, ADMIN_TOKEN)
    acct = api.ok("POST", "/accounts", {"name": "Bo", "email": "bo@example.com"})
    inv = api.ok("POST", "/invoices", {"account_id": acct["id"]})
    api.ok("POST", f"/invoices/{inv['id']}/lines", {"description": "Support", "unit_price": "10"})
    results = at_once(server.base, "POST", f"/invoices/{inv['id']}/issue", None)
    accepted = [b for st, b in results if st < 300]
    refused = [(st, b) for st, b in results if st >= 300]
    assert len(accepted) == 1, results
    assert all(st == 409 and b["error"]["code"] == "invalid_state" for st, b in refused), refused
    first = accepted[0]["number"]
    # The next invoice of the series takes the next number: nothing was skipped.
    other = api.ok("POST", "/invoices", {"account_id": acct["id"]})
    api.ok("POST", f"/invoices/{other['id']}/lines", {"description": "Support", "unit_price": "10"})
    nxt = api.ok("POST", f"/invoices/{other['id']}/issue", status=200)["number"]
    assert int(nxt.rsplit("-", 1)[1]) == int(first.rsplit("-", 1)[1]) + 1, (first, nxt)
    assert api.ok("GET", f"/invoices/{inv['id']}")["number"] == first
