"""Where gateway secrets may be sent (issue 15, item 10), through real `tollgate serve` on SQLite
and PostgreSQL: `api_base` is https to a public host, loopback only with
TOLLGATE_ALLOW_LOOPBACK_URLS=true; a changed `api_base` needs every secret again, in the API and in
the admin portal's form; refusals carry no URL."""

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
