"""Issue 15 items 11 and 13 (part), "an attacker with a free developer account", through a real
`tollgate serve` on SQLite and PostgreSQL: sign-in and sign-up rate limits (429 with Retry-After),
an account locked after repeated wrong passwords, the applications-per-account cap, no provider
object created by viewing the card page (counted in localstripe), and admin-portal sessions that
die with the TOLLGATE_ADMIN_TOKEN they were opened with."""

import re
import threading

import pytest

from conftest import ADMIN_TOKEN
from support.control_plane import Api
from test_billing import db, start_server  # noqa: F401
from test_portal import Browser, sign_up
from test_stripe import MASTER_KEY, stripe, use_stripe  # noqa: F401

PASSWORD = "long enough pw"  # test_portal.sign_up's
FAILURES_PER_ACCOUNT = 10  # rate_limit::DEFAULT_SIGN_IN_FAILURES_PER_ACCOUNT


@pytest.fixture
def serve(db):  # noqa: F811
    started = []

    def start(**env):
        srv = start_server(db, **env)
        started.append(srv)
        return srv

    yield start
    for s in started:
        s.stop()


def sign_in(server, email, password):
    st, headers, html = Browser(server.port).submit("/portal/sign_in", {"email": email, "password": password})
    return st, headers, html


def test_thirty_wrong_sign_ins_lock_the_account_even_for_the_right_password(serve):
    server = serve()
    sign_up(server, "victim@example.com")
    sign_up(server, "bystander@example.com")
    statuses = []
    for _ in range(30):
        st, headers, html = sign_in(server, "victim@example.com", "wrong password!")
        statuses.append(st)
        if st == 429:
            assert int(headers["retry-after"]) > 0 and "Too many attempts" in html
    assert statuses == [401] * FAILURES_PER_ACCOUNT + [429] * (30 - FAILURES_PER_ACCOUNT)
    st, headers, _ = sign_in(server, "victim@example.com", PASSWORD)
    assert st == 429 and int(headers["retry-after"]) > 0, "locked: the right password is refused too"
    # The lock is the account's: another account still signs in from the same address.
    st, headers, _ = sign_in(server, "bystander@example.com", PASSWORD)
    assert st == 303 and headers["location"] == "/portal/applications"


def test_sign_ins_are_limited_per_ip_on_both_portals(serve):
    server = serve(TOLLGATE_SIGN_IN_ATTEMPTS_PER_IP="5")
    sign_up(server, "ip@example.com")
    statuses = [sign_in(server, f"nobody{i}@example.com", "wrong password!")[0] for i in range(5)]
    assert statuses == [401] * 5
    st, headers, _ = sign_in(server, "ip@example.com", PASSWORD)
    assert st == 429 and int(headers["retry-after"]) > 0
    # The admin portal: wrong tokens, then the right one is refused too from that address.
    for _ in range(5):
        st, _, _ = Browser(server.port).submit("/admin/sign_in", {"token": "tga_wrong"})
        assert st == 401
    st, headers, _ = Browser(server.port).submit("/admin/sign_in", {"token": ADMIN_TOKEN})
    assert st == 429 and int(headers["retry-after"]) > 0


def test_sign_ups_are_limited_per_ip_and_write_nothing_past_it(serve):
    server = serve(TOLLGATE_SIGN_UPS_PER_IP_PER_HOUR="3")
    api = Api(server.base, ADMIN_TOKEN)
    for i in range(3):
        sign_up(server, f"bulk{i}@example.com")
    st, headers, html = Browser(server.port).submit(
        "/portal/sign_up", {"name": "bulk3", "email": "bulk3@example.com", "password": PASSWORD})
    assert st == 429 and int(headers["retry-after"]) > 0 and "Too many attempts" in html
    emails = sorted(a["email"] for a in api.ok("GET", "/accounts?limit=100")["data"])
    assert emails == [f"bulk{i}@example.com" for i in range(3)]


def test_applications_per_account_are_capped_even_at_once(serve):
    server = serve(TOLLGATE_MAX_APPLICATIONS_PER_ACCOUNT="3")
    api = Api(server.base, ADMIN_TOKEN)
    svc = api.ok("POST", "/services", {"name": "Cap API"})
    plan = api.ok("POST", "/plans", {"service_id": svc["id"], "name": "Open", "state": "published"})
    b = sign_up(server, "hoarder@example.com")
    _, _, html = b.request("GET", "/portal/applications")
    csrf = b.csrf(html)
    statuses, lock = [], threading.Lock()

    def create(i):
        st, _, _ = b.request("POST", "/portal/applications", {"name": f"App {i}", "plan_id": plan["id"], "csrf": csrf})
        with lock:
            statuses.append(st)

    threads = [threading.Thread(target=create, args=(i,)) for i in range(10)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert sorted(statuses).count(201) == 3 and set(statuses) <= {201, 409, 503}, statuses
    [acct] = [a for a in api.ok("GET", "/accounts")["data"] if a["email"] == "hoarder@example.com"]
    assert len(api.ok("GET", f"/applications?account_id={acct['id']}")["data"]) == 3
    st, _, html = b.request("POST", "/portal/applications", {"name": "One more", "plan_id": plan["id"], "csrf": csrf})
    assert st == 409 and "at most 3 applications" in html


def stripe_customers(stripe):  # noqa: F811
    st, body = stripe.call("GET", "/v1/customers?limit=100")
    assert st == 200, body
    return body["data"]


def test_viewing_the_card_page_creates_nothing_at_the_provider(serve, stripe):  # noqa: F811
    server = serve(TOLLGATE_MASTER_KEY=MASTER_KEY)
    use_stripe(Api(server.base, ADMIN_TOKEN), stripe.base)
    b = sign_up(server, "cards@example.com")
    before = len(stripe_customers(stripe))
    for _ in range(5):
        st, _, html = b.request("GET", "/portal/payment_methods/new")
        assert len(stripe_customers(stripe)) == before, "a GET made a Stripe customer"
        assert st == 200 and 'id="add-card"' in html and "seti_" not in html
    _, _, html = b.request("GET", "/portal/billing")
    assert 'id="add-card"' in html
    assert len(stripe_customers(stripe)) == before, "a GET made a Stripe customer"
    # Submitting the button opens the provider's form: one customer, one SetupIntent.
    st, _, html = b.request("POST", "/portal/payment_methods/new", {"csrf": b.csrf(html)})
    assert st == 200 and 'id="card-form"' in html and re.search(r"seti_\w+_secret", html), html[-800:]
    assert len(stripe_customers(stripe)) == before + 1
    # Without the CSRF token nothing is created.
    assert b.request("POST", "/portal/payment_methods/new", {})[0] == 403
    assert len(stripe_customers(stripe)) == before + 1


def test_admin_sessions_die_when_the_env_admin_token_changes(serve):
    server = serve()
    admin = Browser(server.port)
    st, headers, _ = admin.submit("/admin/sign_in", {"token": ADMIN_TOKEN})
    assert st == 303 and headers["location"] == "/admin"
    assert admin.request("GET", "/admin")[0] == 200
    server.restart()  # the same token: the session survives a restart
    assert admin.request("GET", "/admin")[0] == 200
    server.env["TOLLGATE_ADMIN_TOKEN"] = "rotated-admin-token-" + "b" * 32
    server.restart()
    st, headers, _ = admin.request("GET", "/admin")
    assert st == 303 and headers["location"] == "/admin/sign_in", "the old token's session still works"
    # The new token signs in.
    st, _, _ = Browser(server.port).submit("/admin/sign_in", {"token": server.env["TOLLGATE_ADMIN_TOKEN"]})
    assert st == 303


def test_failed_bearer_tokens_are_limited_per_ip_and_valid_tokens_are_not(serve):
    """Guessing developer API tokens: past TOLLGATE_TOKEN_FAILURES_PER_IP misses from one address
    every developer-API request from it is 429 with Retry-After and the error object, for a while;
    valid tokens never count (a busy client with a good token is never limited), and the admin
    API's window is its own."""
    server = serve(TOLLGATE_TOKEN_FAILURES_PER_IP="5")
    admin = Api(server.base, ADMIN_TOKEN)
    acct = admin.ok("POST", "/accounts", {"name": "T", "email": "t@example.com"})
    good = Api(server.base, admin.ok("POST", f"/accounts/{acct['id']}/tokens", {})["token"])
    for _ in range(20):
        assert good.call("GET", "/api/v1/invoices")[0] == 200, "valid tokens do not count"
    statuses = []
    for i in range(8):
        st, body, headers = Api(server.base, f"tgd_guess{i:02d}" + "x" * 40).call("GET", "/api/v1/invoices")
        statuses.append(st)
        if st == 429:
            assert body["error"]["code"] == "authentication_rate_limited", body
            assert 0 < int(headers["retry-after"]) <= 15 * 60
    assert statuses == [401] * 5 + [429] * 3, statuses
    # The address is limited now, whatever token it sends (a right guess would not get through).
    st, body, _ = good.call("GET", "/api/v1/invoices")
    assert st == 429 and body["error"]["code"] == "authentication_rate_limited", (st, body)
    # Admin tokens have their own window: the admin API still answers from this address.
    assert admin.call("GET", "/admin/api/v1/accounts")[0] == 200
    for i in range(5):
        assert Api(server.base, f"tga_wrong{i}" + "y" * 40).call("GET", "/admin/api/v1/accounts")[0] == 401
    st, body, headers = Api(server.base, "tga_wrong" + "y" * 40).call("GET", "/admin/api/v1/accounts")
    assert st == 429 and body["error"]["code"] == "authentication_rate_limited" and int(headers["retry-after"]) > 0
