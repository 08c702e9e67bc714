"""Billing through real `tollgate serve` processes on SQLite and PostgreSQL: settings, billing runs
(postpaid and prepaid, idempotent, even when killed half-way), invoices and their PDFs, credit
notes, and invoice email delivered once to a real SMTP sink. The arithmetic itself is unit- and
property-tested in control-plane/src/billing; here every expected amount is computed again from
the calendar with Python's Decimal."""

import calendar
import datetime as dt
import io
import re
import signal
import time
from decimal import ROUND_HALF_UP, Decimal

import pytest
from pypdf import PdfReader

from conftest import ADMIN_TOKEN
from support.control_plane import Api, Database, Server
from support.smtp import SmtpSink
from test_control_plane import assert_error

NUMBER = re.compile(r"^\d{4}-\d{2}-\d{8}$")


@pytest.fixture
def sink():
    s = SmtpSink().start()
    yield s
    s.stop()


@pytest.fixture(params=["sqlite", "postgres"])
def db(request):
    d = Database(request.param)
    yield d
    d.drop()


def start_server(db, sink=None, **env):
    extra = {"TOLLGATE_BILLING_SCHEDULER": "off", "TOLLGATE_SMTP_URL": sink.url if sink else "",
             "TOLLGATE_MAIL_FROM": "Billing <billing@tollgate.test>"}
    extra.update(env)
    return Server(db, ADMIN_TOKEN, extra_env=extra).start()


@pytest.fixture
def billing(db, sink):
    srv = start_server(db, sink)
    yield srv
    srv.stop()


def money(x, exp=2):
    return Decimal(x).quantize(Decimal(1).scaleb(-exp), rounding=ROUND_HALF_UP)


def today():
    return dt.datetime.now(dt.timezone.utc).date()


def next_month(d):
    return (d.replace(day=1) + dt.timedelta(days=32)).replace(day=1)


def days_left(d):
    """Days from d to the end of its month, d included, and the month's length."""
    n = calendar.monthrange(d.year, d.month)[1]
    return n - d.day + 1, n


def catalog(api, fixed="30", setup="10", trial_days=0, name="Basic"):
    svc = api.ok("POST", "/services", {"name": f"Billing {name} {time.monotonic_ns()}"})
    plan = api.ok("POST", "/plans", {
        "service_id": svc["id"], "name": name, "fixed_fee": fixed, "setup_fee": setup, "trial_days": trial_days,
        "pricing_rules": [{"metric": "hits", "from": 1, "to": 1000, "unit_price": "0"},
                          {"metric": "hits", "from": 1001, "unit_price": "0.01"}]})
    return svc, plan


def report_usage(server, api, svc, app_id, hits):
    gw = api.ok("POST", "/gateway_tokens", {"name": f"edge-{time.monotonic_ns()}", "service_ids": [svc["id"]]})
    t = int(time.time())
    st, ack, _ = Api(server.base, gw["token"]).call(
        "POST", f"/gateway/v1/services/{svc['id']}/usage",
        {"gateway": "edge", "sequence": 1, "entries": [
            {"application": app_id, "metric": "hits", "bucket_start": t - t % 60, "delta": hits}]})
    assert st == 200 and ack["accepted"] == 1, ack


def invoices(api, **filters):
    q = "&".join(f"{k}={v}" for k, v in filters.items())
    return api.ok("GET", f"/invoices?limit=100&{q}")["data"]


def test_settings_are_validated_merged_and_guarded(billing):
    api = Api(billing.base, ADMIN_TOKEN)
    s = api.ok("GET", "/billing/settings")
    assert (s["mode"], s["currency"], s["numbering"], s["retry"]) == ("postpaid", "USD", "monthly",
                                                                       {"attempts": 3, "interval_days": 3})
    st, s, _ = api.call("PUT", "/admin/api/v1/billing/settings",
                        {"currency": "EUR", "seller": {"name": "ACME GmbH"}, "retry": {"attempts": 5}})
    assert st == 200 and s["currency"] == "EUR" and s["retry"] == {"attempts": 5, "interval_days": 3}
    assert s["seller"]["name"] == "ACME GmbH" and s["due_days"] == 30
    for bad, param in [({"currency": "EURO"}, "currency"), ({"due_days": -1}, "due_days"),
                       ({"retry": {"interval_days": 0}}, "retry.interval_days"), ({"nope": 1}, None),
                       ({"mode": "sometimes"}, "mode"), ({"seller": {"address": {"country": "Germany"}}}, None)]:
        st, body, _ = api.call("PUT", "/admin/api/v1/billing/settings", bad)
        assert st == 422, (bad, st, body)
        if param:
            assert body["error"]["param"] == param, body
    assert api.ok("GET", "/billing/settings") == s, "refused updates changed nothing"
    # Currency changes are refused while an invoice is unsettled.
    acct = api.ok("POST", "/accounts", {"name": "Ann", "email": "ann@example.com"})
    inv = api.ok("POST", "/invoices", {"account_id": acct["id"]})
    st, body, _ = api.call("PUT", "/admin/api/v1/billing/settings", {"currency": "JPY"})
    assert st == 409 and body["error"]["code"] == "currency_in_use", body
    api.ok("POST", f"/invoices/{inv['id']}/cancel", status=200)
    st, body, _ = api.call("PUT", "/admin/api/v1/billing/settings", {"currency": "JPY"})
    assert st == 200 and body["currency"] == "JPY"


def test_postpaid_run_bills_a_month_once_with_pdf_and_email(billing, sink):
    api = Api(billing.base, ADMIN_TOKEN)
    api.call("PUT", "/admin/api/v1/billing/settings", {
        "currency": "EUR", "invoice_footer": "Bank: DE00 1234 -- thank you",
        "seller": {"name": "ACME API GmbH", "vat_id": "DE123456789",
                   "address": {"line1": "Hauptstr. 1", "city": "Berlin", "postal_code": "10115", "country": "DE"}}})
    svc, plan = catalog(api)
    acct = api.ok("POST", "/accounts", {"name": "Zoë Buyer", "email": "zoe@example.com", "vat_rate": "19",
                                        "billing_address": {"line1": "Kaiserstr. 5", "city": "Wien", "country": "AT"}})
    app = api.ok("POST", "/applications", {"account_id": acct["id"], "plan_id": plan["id"], "name": "Zoe's app"})
    report_usage(billing, api, svc, app["id"], 2500)

    # Billing this month on the 1st of next month, by the CLI.
    d = today()
    run_date = next_month(d)
    r = billing.cli("billing", "run", "--date", run_date.isoformat(), "--json")
    assert r.returncode == 0, r.stderr + r.stdout
    [inv] = invoices(api, account_id=acct["id"])
    # By hand: setup 10.00; monthly fee 30 × days/month; 2,500 hits: 1,000 free + 1,500 × 0.01 = 15.00.
    days, month_days = days_left(d)
    fee = money(Decimal(30) * days / month_days)
    subtotal = Decimal("10.00") + fee + Decimal("15.00")
    tax = money(subtotal * Decimal("0.19"))
    assert [l["amount"] for l in inv["lines"]] == ["10.00", str(fee), "0.00", "15.00"], inv["lines"]
    assert (inv["subtotal"], inv["tax"], inv["total"]) == (str(subtotal), str(tax), str(subtotal + tax))
    assert inv["state"] == "pending" and inv["currency"] == "EUR" and inv["vat_rate"] == "19"
    assert NUMBER.match(inv["number"]) and inv["number"] == f"{d:%Y-%m}-00000001"
    assert inv["period"] == {"start": d.replace(day=1).isoformat(),
                             "end": d.replace(day=calendar.monthrange(d.year, d.month)[1]).isoformat()}
    assert inv["due_date"] == (today() + dt.timedelta(days=30)).isoformat()
    assert inv["buyer"]["name"] == "Zoë Buyer" and inv["seller"]["vat_id"] == "DE123456789"
    if days < month_days:
        assert f"({days} of {month_days} days)" in inv["lines"][1]["description"]

    # Running again, by the API, the same day or later in the month, bills nothing more.
    for again in (run_date, run_date + dt.timedelta(days=3)):
        st, run, _ = api.call("POST", "/admin/api/v1/billing/runs", {"date": again.isoformat()})
        assert st == 202, run
        run = wait_run(api, run["id"])
        assert (run["state"], run["invoices_issued"]) == ("succeeded", 0), run
    assert [i["id"] for i in invoices(api, account_id=acct["id"])] == [inv["id"]]
    assert api.ok("GET", f"/invoices/{inv['id']}")["lines"] == inv["lines"]
    # Frozen on issue: a later address change does not touch the issued invoice.
    api.ok("PATCH", f"/accounts/{acct['id']}", {"name": "Someone Else"})
    assert api.ok("GET", f"/invoices/{inv['id']}")["buyer"]["name"] == "Zoë Buyer"

    # The PDF is a real PDF with what an invoice must show.
    pdf = fetch_pdf(billing, inv["id"])
    assert pdf.startswith(b"%PDF-")
    text = "".join(p.extract_text() for p in PdfReader(io.BytesIO(pdf)).pages)
    for expected in ["ACME API GmbH", "DE123456789", "Zoë Buyer", inv["number"], str(subtotal + tax), "VAT 19%",
                     "Bank: DE00 1234", "Kaiserstr. 5", "setup fee"]:
        assert expected in text, (expected, text)

    # One email, to the buyer, with the PDF attached.
    [msg] = sink.wait_for(1)
    assert msg["To"] == "zoe@example.com" and msg["Subject"] == f"Invoice {inv['number']}"
    parts = {p.get_content_type(): p for p in msg.walk()}
    assert parts["application/pdf"].get_payload(decode=True).startswith(b"%PDF-")
    assert str(subtotal + tax) in parts["text/plain"].get_payload(decode=True).decode()


def fetch_pdf(server, invoice_id):
    import urllib.request
    req = urllib.request.Request(f"{server.base}/admin/api/v1/invoices/{invoice_id}.pdf",
                                 headers={"Authorization": f"Bearer {ADMIN_TOKEN}"})
    with urllib.request.urlopen(req, timeout=30) as r:
        assert r.headers["Content-Type"] == "application/pdf"
        return r.read()


def wait_run(api, run_id, timeout=60):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        run = api.ok("GET", f"/billing/runs/{run_id}")
        if run["state"] != "running":
            return run
        time.sleep(0.05)
    raise AssertionError(f"run {run_id} still running after {timeout}s")


def test_prepaid_plan_changes_credit_unused_time_in_jpy(billing):
    """Prepaid in JPY (no minor unit): the fee is billed in advance; switching plans credits the
    unused part of what was paid, and a credit larger than the invoice goes to the balance."""
    api = Api(billing.base, ADMIN_TOKEN)
    api.call("PUT", "/admin/api/v1/billing/settings", {"mode": "prepaid", "currency": "JPY"})
    svc, basic = catalog(api, fixed="3000", setup="0", name="Basic")
    pro = api.ok("POST", "/plans", {"service_id": svc["id"], "name": "Pro", "fixed_fee": "9000"})
    acct = api.ok("POST", "/accounts", {"name": "Taro", "email": "taro@example.com"})
    app = api.ok("POST", "/applications", {"account_id": acct["id"], "plan_id": basic["id"], "name": "T"})
    d = today()
    days, month_days = days_left(d)
    basic_fee = money(Decimal(3000) * days / month_days, 0)
    pro_fee = money(Decimal(9000) * days / month_days, 0)

    def run():
        st, r, _ = api.call("POST", "/admin/api/v1/billing/runs", {})
        assert st == 202, r
        return wait_run(api, r["id"])

    run()
    [first] = invoices(api, account_id=acct["id"])
    assert first["total"] == str(basic_fee) and first["currency"] == "JPY"
    assert run()["invoices_issued"] == 0
    # Upgrade today: Basic's paid days are credited, Pro's days billed.
    api.ok("PATCH", f"/applications/{app['id']}", {"plan_id": pro["id"]})
    run()
    upgrade = [i for i in invoices(api, account_id=acct["id"]) if i["id"] != first["id"]][0]
    kinds = {l["kind"]: l["amount"] for l in upgrade["lines"]}
    assert kinds == {"unused_time_credit": str(-basic_fee), "fixed_fee": str(pro_fee)}, upgrade["lines"]
    assert upgrade["total"] == str(pro_fee - basic_fee)
    # Downgrade back: Pro's days credited (more than Basic's): the invoice is 0 and paid, the
    # remainder is the account's credit balance.
    api.ok("PATCH", f"/applications/{app['id']}", {"plan_id": basic["id"]})
    run()
    downgrade = invoices(api, account_id=acct["id"])[-1]
    assert downgrade["total"] == "0" and downgrade["state"] == "paid", downgrade
    assert api.ok("GET", f"/accounts/{acct['id']}")["credit_balance"] == f"{pro_fee - basic_fee}.00"
    assert len({i["number"] for i in invoices(api, account_id=acct["id"])}) == 3


def test_manual_invoice_credit_note_and_cancel(billing):
    api = Api(billing.base, ADMIN_TOKEN)
    acct = api.ok("POST", "/accounts", {"name": "Kim", "email": "kim@example.com", "vat_rate": "10"})
    inv = api.ok("POST", "/invoices", {"account_id": acct["id"]})
    assert inv["state"] == "open" and inv["number"] is None
    api.ok("POST", f"/invoices/{inv['id']}/lines", {"description": "Consulting", "quantity": "3", "unit_price": "100.005"})
    inv = api.ok("POST", f"/invoices/{inv['id']}/lines", {"description": "Loyalty discount", "unit_price": "-20"})
    # 3 × 100.005 = 300.015 -> 300.02 (rounded once, half away from zero); -20.00.
    assert [l["amount"] for l in inv["lines"]] == ["300.02", "-20.00"]
    assert_error(api.post(f"/invoices/{inv['id']}/lines", {"description": "x", "quantity": "0", "unit_price": "1"}),
                 422, "invalid_quantity")
    assert_error(api.post(f"/invoices/{inv['id']}/pay"), 409, "invalid_state")
    api.ok("POST", f"/invoices/{inv['id']}/finalize", status=200)
    assert_error(api.post(f"/invoices/{inv['id']}/lines", {"description": "late", "unit_price": "1"}), 409)
    inv = api.ok("POST", f"/invoices/{inv['id']}/issue", status=200)
    assert (inv["state"], inv["subtotal"], inv["tax"], inv["total"]) == ("pending", "280.02", "28.00", "308.02")
    assert NUMBER.match(inv["number"])
    # A credit note: its own number series, its amount to the credit balance, never more than billed.
    assert_error(api.post(f"/invoices/{inv['id']}/credit_notes", {"amount": "280.03"}), 422, "exceeds_invoice")
    st, cn, _ = api.post(f"/invoices/{inv['id']}/credit_notes", {"amount": "30", "reason": "outage"})
    assert st == 201 and cn["object"] == "credit_note" and cn["number"].startswith("CN-")
    assert (cn["subtotal"], cn["tax"], cn["total"]) == ("30.00", "3.00", "33.00")
    assert cn["credited_invoice_id"] == inv["id"]
    assert api.ok("GET", f"/accounts/{acct['id']}")["credit_balance"] == "30.00"
    # The next invoice uses the balance; cancelling it gives the balance back.
    nxt = api.ok("POST", "/invoices", {"account_id": acct["id"]})
    api.ok("POST", f"/invoices/{nxt['id']}/lines", {"description": "Extra", "unit_price": "50"})
    nxt = api.ok("POST", f"/invoices/{nxt['id']}/issue", status=200)
    assert [l["amount"] for l in nxt["lines"]] == ["50.00", "-30.00"] and nxt["total"] == "22.00"
    assert api.ok("GET", f"/accounts/{acct['id']}")["credit_balance"] == "0.00"
    api.ok("POST", f"/invoices/{nxt['id']}/cancel", status=200)
    assert api.ok("GET", f"/accounts/{acct['id']}")["credit_balance"] == "30.00"
    assert_error(api.post(f"/invoices/{nxt['id']}/issue"), 409, "invalid_state")
    # Numbers are gapless: the two invoices are consecutive.
    a, b = int(inv["number"][-8:]), int(nxt["number"][-8:])
    assert b == a + 1
    # Filters.
    assert [i["id"] for i in invoices(api, account_id=acct["id"], state="cancelled")] == [nxt["id"]]
    assert [i["id"] for i in invoices(api, account_id=acct["id"], kind="credit_note")] == [cn["id"]]
    assert_error(api.get("/invoices?state=bogus"), 400, "invalid_state")
    assert_error(api.get("/invoices?period=2026-13"), 400, "invalid_period")
    # Billing history keeps the account.
    assert_error(api.delete(f"/accounts/{acct['id']}"), 409, "account_has_billing_history")


ACCOUNTS_FOR_CRASH = 120


def test_a_run_killed_half_way_and_rerun_bills_everyone_once(db):
    """SIGKILL the server in the middle of a run (one account per batch), start it again, run the
    same date again: every account has exactly one invoice and the numbers have no gap."""
    srv = start_server(db, TOLLGATE_BILLING_BATCH="1")
    api = Api(srv.base, ADMIN_TOKEN)
    _, plan = catalog(api, fixed="30", setup="0")
    ids = []
    for i in range(ACCOUNTS_FOR_CRASH):
        acct = api.ok("POST", "/accounts", {"name": f"A{i}", "email": f"a{i}@example.com"})
        api.ok("POST", "/applications", {"account_id": acct["id"], "plan_id": plan["id"], "name": f"app{i}"})
        ids.append(acct["id"])
    run_date = next_month(today())
    killed_mid_run = False
    st, run, _ = api.call("POST", "/admin/api/v1/billing/runs", {"date": run_date.isoformat()})
    assert st == 202
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        r = api.ok("GET", f"/billing/runs/{run['id']}")
        if r["state"] != "running":
            break
        if r["accounts_done"] >= 5:
            srv.proc.send_signal(signal.SIGKILL)
            srv.proc.wait(timeout=10)
            killed_mid_run = r["accounts_done"] < ACCOUNTS_FOR_CRASH
            break
        time.sleep(0.01)
    assert killed_mid_run, "the run finished before it could be killed; make it longer"
    partial = int(db.query("SELECT COUNT(*) FROM invoices")[0])
    assert 0 < partial < ACCOUNTS_FOR_CRASH

    srv = start_server(db)
    api = Api(srv.base, ADMIN_TOKEN)
    try:
        deadline = time.monotonic() + 30
        while True:  # PostgreSQL: the dead run blocks new ones until its heartbeat is stale.
            st, run, _ = api.call("POST", "/admin/api/v1/billing/runs", {"date": run_date.isoformat()})
            if st == 202 or time.monotonic() > deadline:
                break
            assert run["error"]["code"] == "run_in_progress"
            time.sleep(0.5)
        assert st == 202, run
        run = wait_run(api, run["id"])
        assert run["state"] == "succeeded" and run["invoices_issued"] == ACCOUNTS_FOR_CRASH - partial
        per_account = db.query("SELECT account_id, COUNT(*) FROM invoices GROUP BY account_id")
        assert sorted(r.split("|")[0] for r in per_account) == sorted(ids)
        assert all(r.endswith("|1") for r in per_account), per_account
        numbers = sorted(int(n[-8:]) for n in db.query("SELECT number FROM invoices"))
        assert numbers == list(range(1, ACCOUNTS_FOR_CRASH + 1))
        assert db.query("SELECT COUNT(*) FROM invoice_lines")[0] == str(ACCOUNTS_FOR_CRASH)
        runs = {r["state"] for r in api.ok("GET", "/billing/runs")["data"]}
        assert runs == {"interrupted", "succeeded"}
    finally:
        srv.stop()


def test_email_is_sent_once_across_restarts(db):
    """Invoices issued while the SMTP server is down wait in the outbox; once it is up each is
    delivered exactly once, and restarting the control plane sends nothing again."""
    sink = SmtpSink()  # not started yet: its port refuses connections
    srv = start_server(db, sink)
    api = Api(srv.base, ADMIN_TOKEN)
    accounts = [api.ok("POST", "/accounts", {"name": f"M{i}", "email": f"m{i}@example.com"}) for i in range(3)]
    for a in accounts:
        inv = api.ok("POST", "/invoices", {"account_id": a["id"]})
        api.ok("POST", f"/invoices/{inv['id']}/lines", {"description": "Support", "unit_price": "5"})
        api.ok("POST", f"/invoices/{inv['id']}/issue", status=200)
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:  # every message was tried and failed
        rows = db.query("SELECT state, attempts FROM email_outbox WHERE last_error IS NOT NULL")
        if len(rows) == 3:
            break
        time.sleep(0.2)
    assert sorted(rows) == ["pending|1"] * 3, rows
    srv.stop()
    sink.start()
    try:
        srv = start_server(db, sink)
        # The failed attempt backs off (30 s); make the messages due now, as time would.
        db.query("UPDATE email_outbox SET next_attempt_at = 0 WHERE state = 'pending' RETURNING id")
        msgs = sink.wait_for(3)
        assert sorted(m["To"] for m in msgs) == [f"m{i}@example.com" for i in range(3)]
        srv.stop()
        srv = start_server(db, sink)
        time.sleep(3)
        assert len(sink.messages()) == 3
        assert set(db.query("SELECT state FROM email_outbox")) == {"sent"}
        srv.stop()
    finally:
        sink.stop()


def test_scheduler_runs_billing_daily(db):
    srv = start_server(db, TOLLGATE_BILLING_SCHEDULER="on")
    try:
        api = Api(srv.base, ADMIN_TOKEN)
        api.call("PUT", "/admin/api/v1/billing/settings", {"run_hour_utc": 0})
        deadline = time.monotonic() + 30
        runs = []
        while time.monotonic() < deadline and not runs:
            runs = [r for r in api.ok("GET", "/billing/runs")["data"] if r["state"] == "succeeded"]
            time.sleep(0.2)
        assert runs and runs[0]["date"] == today().isoformat(), runs
    finally:
        srv.stop()


def test_a_stored_amount_that_does_not_parse_stops_billing_instead_of_reading_zero(billing):
    """A corrupted amount in the database (a bad migration, a hand edit) used to be read as zero:
    an account's credit balance showed "0.00" and its next invoice was issued without the credit
    (or, with a corrupt fixed fee, free). Now every reader refuses: a 500 with the error object,
    and nothing is issued or changed."""
    api = Api(billing.base, ADMIN_TOKEN)
    acct = api.ok("POST", "/accounts", {"name": "Corrupt", "email": "corrupt@example.com", "vat_rate": "0"})
    inv = api.ok("POST", "/invoices", {"account_id": acct["id"]})
    api.ok("POST", f"/invoices/{inv['id']}/lines", {"description": "Work", "unit_price": "50"})
    billing.db.query(f"UPDATE accounts SET credit_balance = '12,50' WHERE id = '{acct['id']}'")
    assert_error(api.get(f"/accounts/{acct['id']}"), 500, "internal_error")
    assert_error(api.post(f"/invoices/{inv['id']}/issue"), 500, "internal_error")
    after = api.ok("GET", f"/invoices/{inv['id']}")
    assert (after["state"], after["number"]) == ("open", None)
    assert billing.db.query(f"SELECT credit_balance FROM accounts WHERE id = '{acct['id']}'") == ["12,50"]
    assert "is not a decimal" in billing.log()
