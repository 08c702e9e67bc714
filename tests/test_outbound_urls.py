"""Where gateway secrets may be sent (issue 15, item 10), through real `tollgate serve` on SQLite
and PostgreSQL: `api_base` is https to a public host, loopback only with
TOLLGATE_ALLOW_LOOPBACK_URLS=true; a changed `api_base` needs every secret again, in the API and in
the admin portal's form; refusals carry no URL."""

import ipaddress
import json
import re
import socket
import threading

import pytest

from conftest import ADMIN_TOKEN
from support.control_plane import Api
from test_billing import db, start_server  # noqa: F401
from test_control_plane import assert_error
from test_payments import MASTER_KEY, STRIPE, put_gateway
from test_portal import Browser

ALWAYS_REFUSED = ["http://api.example.com/", "https://10.0.0.1/", "https://192.168.0.10/",
                  "https://169.254.169.254/", "https://[fd00::1]/", "https://0.0.0.0/"]
LOOPBACK = ["http://127.0.0.1:9/", "https://localhost:9/", "http://[::1]:9/"]


def refused(api, url):
    resp = put_gateway(api, {**STRIPE, "api_base": url})
    assert_error(resp, 422, "invalid_url", "api_base")
    assert url.split("//")[1].split("/")[0] not in resp[1]["error"]["message"]


@pytest.fixture
def without_opt_in(db):  # noqa: F811
    srv = start_server(db, TOLLGATE_MASTER_KEY=MASTER_KEY, TOLLGATE_ALLOW_LOOPBACK_URLS="false")
    yield Api(srv.base, ADMIN_TOKEN)
    srv.stop()


@pytest.fixture
def with_opt_in(db):  # noqa: F811
    srv = start_server(db, TOLLGATE_MASTER_KEY=MASTER_KEY)  # the test default: opted in
    yield srv, Api(srv.base, ADMIN_TOKEN)
    srv.stop()


def test_plain_http_loopback_and_private_hosts_are_refused_without_the_opt_in(without_opt_in):
    api = without_opt_in
    for url in ALWAYS_REFUSED + LOOPBACK:
        refused(api, url)
    assert api.ok("GET", "/billing/gateway")["type"] is None, "nothing stored"
    st, view, _ = put_gateway(api, {**STRIPE, "api_base": "https://api.stripe.example/"})
    assert st == 200 and view["api_base"] == "https://api.stripe.example/", view


def test_loopback_only_with_the_opt_in(with_opt_in):
    _, api = with_opt_in
    for url in ALWAYS_REFUSED:
        refused(api, url)
    for url in LOOPBACK:
        st, view, _ = put_gateway(api, {**STRIPE, "api_base": url})
        assert st == 200 and view["api_base"] == url, view


def test_a_changed_api_base_needs_the_secrets_again(with_opt_in):
    srv, api = with_opt_in
    st, before, _ = put_gateway(api, {**STRIPE, "api_base": "http://127.0.0.1:9/"})
    assert st == 200, before
    no_secrets = {k: v for k, v in STRIPE.items() if k not in ("secret_key", "webhook_secret")}
    assert_error(put_gateway(api, {**no_secrets, "api_base": "https://elsewhere.example/"}), 422, "missing_field")
    assert api.ok("GET", "/billing/gateway") == before

    # The admin portal's form: empty secret fields keep the stored secrets only for the same host.
    admin = Browser(srv.port)
    assert admin.submit("/admin/sign_in", {"token": ADMIN_TOKEN})[0] == 303
    form = {"type": "stripe", "stripe.publishable_key": STRIPE["publishable_key"],
            "stripe.secret_key": "", "stripe.webhook_secret": ""}
    st, _, html = admin.submit("/admin/gateway", {**form, "stripe.api_base": "https://elsewhere.example/"})
    assert st == 422 and "required" in html, (st, html[:500])
    assert api.ok("GET", "/billing/gateway") == before
    st, _, html = admin.submit("/admin/gateway", {**form, "stripe.api_base": "http://127.0.0.1:9/"})
    assert st in (200, 303), (st, html[:500])
    after = api.ok("GET", "/billing/gateway")
    assert after["api_base"] == before["api_base"] and after["secret_key"] == before["secret_key"]


# --- The rule at connect time (DNS rebinding, names that resolve to private addresses) --------

def loopback_name():
    """A host name that is not `localhost` or `*.localhost` (the URL check refuses those by name)
    and that the system resolver maps to loopback addresses only: the machine's own name usually
    is (/etc/hosts). It stands for a public-looking name that resolves, or re-resolves after the
    URL was saved, to 127.0.0.1."""
    candidates = [socket.gethostname(), "localhost.localdomain", "ip6-localhost", "ip6-loopback"]
    for name in candidates:
        if not name or name == "localhost" or name.endswith(".localhost"):
            continue
        try:
            addrs = {info[4][0] for info in socket.getaddrinfo(name, None)}
        except OSError:
            continue
        if addrs and all(ipaddress.ip_address(a.split("%")[0]).is_loopback for a in addrs):
            return name
    pytest.skip(f"no host name besides localhost resolves to loopback only here ({candidates})")


class Listener:
    """A loopback TCP listener that counts the connections it is offered."""

    def __init__(self):
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.sock.settimeout(0.2)
        self.port = self.sock.getsockname()[1]
        self.connections = 0
        self.stopped = threading.Event()
        self.thread = threading.Thread(target=self._accept, daemon=True)
        self.thread.start()

    def _accept(self):
        while not self.stopped.is_set():
            try:
                conn, _ = self.sock.accept()
            except OSError:
                continue
            self.connections += 1
            conn.close()

    def close(self):
        self.stopped.set()
        self.thread.join(timeout=5)
        self.sock.close()


BRAINTREE = {"type": "braintree", "merchant_id": "m", "public_key": "bt_pub", "private_key": "bt_private_1",
             "environment": "sandbox", "merchant_accounts": {"USD": "m_usd"}}


def developer_of(api, srv):
    acct = api.ok("POST", "/accounts", {"name": "Dev", "email": "dev@example.com"})
    tok = api.ok("POST", f"/accounts/{acct['id']}/tokens", {})
    return Api(srv.base, tok["token"])


@pytest.mark.parametrize("provider", ["stripe", "braintree"])
def test_a_name_resolving_to_loopback_is_refused_at_connect_time(db, provider):  # noqa: F811
    """The URL check passes a name it cannot judge; the connection is refused where the name is
    resolved, no byte reaches the loopback listener, and the developer's error carries no URL."""
    name = loopback_name()
    listener = Listener()
    srv = start_server(db, TOLLGATE_MASTER_KEY=MASTER_KEY, TOLLGATE_ALLOW_LOOPBACK_URLS="false",
                       TOLLGATE_PAYMENT_TIMEOUT_MS="3000")
    try:
        api = Api(srv.base, ADMIN_TOKEN)
        base = f"https://{name}:{listener.port}/"
        settings = STRIPE if provider == "stripe" else BRAINTREE
        st, view, _ = put_gateway(api, {**settings, "api_base": base})
        assert st == 200, view
        dev = developer_of(api, srv)
        st, body, _ = dev.call("POST", "/api/v1/payment_methods/setup", {})
        assert st >= 500 and "error" in body, (st, body)
        message = json.dumps(body)
        assert not re.search(rf"\b{re.escape(name)}\b", message) and str(listener.port) not in message, body
        assert "resolves to no public address" in srv.log(), srv.log()[-3000:]
        assert listener.connections == 0
    finally:
        srv.stop()
        listener.close()


def test_a_stored_loopback_url_is_refused_where_it_is_used(db):  # noqa: F811
    """A loopback `api_base` already in the database (saved while the opt-in was on, or written
    there) is refused when the client is built, without the opt-in: no connection."""
    listener = Listener()
    srv = start_server(db, TOLLGATE_MASTER_KEY=MASTER_KEY)
    try:
        api = Api(srv.base, ADMIN_TOKEN)
        st, view, _ = put_gateway(api, {**STRIPE, "api_base": f"http://127.0.0.1:{listener.port}/"})
        assert st == 200, view
        dev = developer_of(api, srv)
        srv.stop()
        srv.env["TOLLGATE_ALLOW_LOOPBACK_URLS"] = "false"
        srv.start()
        st, body, _ = dev.call("POST", "/api/v1/payment_methods/setup", {})
        assert st == 409 and body["error"]["code"] == "payment_gateway_misconfigured", (st, body)
        assert "127.0.0.1" not in json.dumps(body)
        assert listener.connections == 0
    finally:
        srv.stop()
        listener.close()
