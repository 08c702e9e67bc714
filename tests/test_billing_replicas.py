"""Billing runs with two `tollgate serve` processes on one database (issue 15, item 6).

Replicas share a database: a run started on one must keep the other from starting its own, or
both bill and both charge. Every request here goes to a real server; the two servers share one
SQLite file or one PostgreSQL database."""

import threading
import time

import pytest

from conftest import ADMIN_TOKEN
from support.control_plane import Api
from test_billing import catalog, db, next_month, start_server, today, wait_run  # noqa: F401

# Not beside other tests (tests/pytest.ini): replicas racing for one billing run within timed windows.
pytestmark = pytest.mark.exclusive

ACCOUNTS = 40
#: Concurrent start requests per round, split over the two replicas.
STARTS_PER_ROUND = 20
ROUNDS = 3


def burst(apis, n, path, body):
    """n POSTs released at once by a barrier, alternating between the replicas."""
    barrier = threading.Barrier(n)
    results = [None] * n

    def one(i):
        barrier.wait(timeout=30)
        results[i] = apis[i % len(apis)].call("POST", path, body)

    threads = [threading.Thread(target=one, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    return results


def test_two_replicas_never_run_billing_twice_at_once(db):  # noqa: F811
    """20 starts at once, half to each replica, three rounds (three dates), on SQLite and
    PostgreSQL: each round one run is accepted and the other 19 get 409 run_in_progress (also the
    ones that got the database only after that run ended); one run per date, every account has
    one invoice per date and each series of numbers has no gap."""
    a = start_server(db, TOLLGATE_BILLING_BATCH="1")
    b = start_server(db, TOLLGATE_BILLING_BATCH="1")
    try:
        apis = [Api(a.base, ADMIN_TOKEN), Api(b.base, ADMIN_TOKEN)]
        _, plan = catalog(apis[0], fixed="30", setup="0")
        for i in range(ACCOUNTS):
            acct = apis[i % 2].ok("POST", "/accounts", {"name": f"R{i}", "email": f"r{i}@example.com"})
            apis[i % 2].ok("POST", "/applications",
                           {"account_id": acct["id"], "plan_id": plan["id"], "name": f"app{i}"})
        first = next_month(today())
        dates = [first, next_month(first), next_month(next_month(first))][:ROUNDS]
        for date in dates:
            results = burst(apis, STARTS_PER_ROUND, "/admin/api/v1/billing/runs", {"date": date.isoformat()})
            accepted = [body for st, body, _ in results if st == 202]
            refused = [body for st, body, _ in results if st != 202]
            # On SQLite a start waits for the one writer lock and may get it only after the run
            # accepted first has ended: it is still refused (it waited while a run worked).
            assert len(accepted) == 1, ([st for st, _, _ in results],
                                        db.query("SELECT id, run_on, state, finished_at_ms FROM billing_runs"))
            assert all(body["error"]["code"] == "run_in_progress" for body in refused), refused
            run = wait_run(apis[0], accepted[0]["id"])
            assert run["state"] == "succeeded", run
        assert db.query("SELECT COUNT(*) FROM billing_runs") == [str(ROUNDS)]
        per_account = db.query("SELECT account_id, COUNT(*) FROM invoices GROUP BY account_id")
        assert len(per_account) == ACCOUNTS
        assert all(r.endswith(f"|{ROUNDS}") for r in per_account), per_account
        series = {}
        for n in db.query("SELECT number FROM invoices"):
            series.setdefault(n[:-8], []).append(int(n[-8:]))
        assert sum(len(v) for v in series.values()) == ACCOUNTS * ROUNDS
        assert all(sorted(v) == list(range(1, len(v) + 1)) for v in series.values()), series
    finally:
        a.stop()
        b.stop()


def test_two_replica_schedulers_run_the_day_once(db):
    """Both replicas' daily schedulers come due together: one run for today, and it succeeds."""
    setup = start_server(db)
    api = Api(setup.base, ADMIN_TOKEN)
    st, _, _ = api.call("PUT", "/admin/api/v1/billing/settings", {"run_hour_utc": 0})
    assert st == 200
    setup.stop()
    servers = []
    started = time.monotonic()
    try:
        starters = [threading.Thread(target=lambda: servers.append(
            start_server(db, TOLLGATE_BILLING_SCHEDULER="on"))) for _ in range(2)]
        for t in starters:
            t.start()
        for t in starters:
            t.join(timeout=60)
        assert len(servers) == 2
        api = Api(servers[0].base, ADMIN_TOKEN)
        deadline = time.monotonic() + 30
        runs = []
        while time.monotonic() < deadline:
            runs = api.ok("GET", "/billing/runs")["data"]
            if runs and all(r["state"] != "running" for r in runs):
                break
            time.sleep(0.2)
        # Let both schedulers have ticked (their first check comes 5 s after start).
        time.sleep(max(0.0, started + 8 - time.monotonic()))
        runs = api.ok("GET", "/billing/runs")["data"]
        assert [(r["date"], r["state"]) for r in runs] == [(today().isoformat(), "succeeded")], runs
    finally:
        for s in servers:
            s.stop()
