"""Issue 16 item 4 and issue 15 item 13: the portals' pages escape every user-controlled value
(names, emails, settings texts) in text and in attribute values, through a real `tollgate serve`
on SQLite and PostgreSQL; and developer sign-up does not tell whether an email has an account."""

import re
import time

from conftest import ADMIN_TOKEN
from support.control_plane import Api
from test_billing import db, sink, start_server  # noqa: F401
from test_portal import Browser

#: Breaks out of element text (`<script>`) and out of a double-quoted attribute (`"onmouseover=`).
HOSTILE = "<script>alert(1)</script>\"onmouseover=alert(2) x='"
#: The same value, escaped for both places.
ESCAPED = "&lt;script&gt;alert(1)&lt;/script&gt;&quot;onmouseover=alert(2) x='"
#: An email address the API accepts that carries the same payload in its local part.
HOSTILE_EMAIL = "<script>alert(1)</script>\"onmouseover=x@evil.example"
ESCAPED_EMAIL = "&lt;script&gt;alert(1)&lt;/script&gt;&quot;onmouseover=x@evil.example"


def assert_escaped(html, where, escaped=(ESCAPED,)):
    assert "<script>alert(1)" not in html, where
    assert "\"onmouseover=" not in html, where
    for e in escaped:
        assert e in html, (where, e)


def test_hostile_values_come_out_escaped_on_every_page(db, sink):  # noqa: F811
    server = start_server(db, sink)
    try:
        api = Api(server.base, ADMIN_TOKEN)
        svc = api.ok("POST", "/services", {"name": "S " + HOSTILE})
        metric = api.ok("POST", f"/services/{svc['id']}/metrics", {"name": "calls", "unit": "u " + HOSTILE})
        plan = api.ok("POST", "/plans", {"service_id": svc["id"], "name": "P " + HOSTILE, "state": "published",
                                         "limits": [{"metric": "hits", "period": "day", "value": 10}]})
        api.ok("POST", "/tokens", {"name": "T " + HOSTILE, "scope": "read"})
        st, _, _ = api.call("PUT", "/admin/api/v1/billing/settings", {"seller": {"name": "Seller " + HOSTILE},
                                                         "invoice_footer": "Footer " + HOSTILE})
        assert st == 200
        # The developer's own values, through the portal's forms.
        dev = Browser(server.port)
        st, headers, _ = dev.submit("/portal/sign_up", {"name": "A " + HOSTILE, "email": HOSTILE_EMAIL,
                                                       "password": "long enough pw"})
        assert st == 303 and headers["location"] == "/portal/applications"
        _, _, html = dev.request("GET", "/portal/applications")
        st, _, html = dev.request("POST", "/portal/applications", {"name": "App " + HOSTILE, "plan_id": plan["id"],
                                                                  "csrf": dev.csrf(html)})
        assert st == 201, html
        assert_escaped(html, "application created", (ESCAPED, ESCAPED_EMAIL))
        app_id = re.search(r'href="/portal/applications/(app_[A-Z0-9]+)"', html).group(1)
        [acct] = [a for a in api.ok("GET", "/accounts")["data"] if a["email"] == HOSTILE_EMAIL]
        inv = api.ok("POST", "/invoices", {"account_id": acct["id"]})
        api.ok("POST", f"/invoices/{inv['id']}/lines", {"description": "L " + HOSTILE, "unit_price": "5"})
        api.ok("POST", f"/invoices/{inv['id']}/issue", status=200)
        developer_pages = ["/portal/applications", f"/portal/applications/{app_id}"]
        for path in developer_pages:
            st, _, html = dev.request("GET", path)
            assert st == 200, (path, st)
            assert_escaped(html, path)
        # A sign-up form sent back with errors keeps what was typed, escaped, in its value.
        anon = Browser(server.port)
        st, _, html = anon.submit("/portal/sign_up", {"name": HOSTILE, "email": "not an email", "password": "x"})
        assert st == 422
        assert_escaped(html, "sign-up errors")
        st, _, html = anon.submit("/portal/sign_in", {"email": HOSTILE_EMAIL, "password": "wrong password"})
        assert st == 401
        assert_escaped(html, "sign-in error", (ESCAPED_EMAIL,))

        admin = Browser(server.port)
        assert admin.submit("/admin/sign_in", {"token": ADMIN_TOKEN})[0] == 303
        admin_pages = {
            "/admin/services": (ESCAPED,),
            f"/admin/services/{svc['id']}": (ESCAPED,),
            "/admin/plans": (ESCAPED,),
            f"/admin/plans/{plan['id']}": (ESCAPED,),
            "/admin/accounts": (ESCAPED, ESCAPED_EMAIL),
            f"/admin/accounts/{acct['id']}": (ESCAPED, ESCAPED_EMAIL),
            "/admin/invoices": (ESCAPED,),
            "/admin/tokens": (ESCAPED,),
            "/admin/billing": (ESCAPED,),
        }
        for path, escaped in admin_pages.items():
            st, _, html = admin.request("GET", path)
            assert st == 200, (path, st)
            assert_escaped(html, path, escaped)
        assert metric["unit"].endswith(HOSTILE)
        # A value typed into a form and refused comes back escaped in the field.
        _, _, html = admin.request("GET", "/admin/billing")
        st, _, html = admin.request("POST", "/admin/billing", {"csrf": admin.csrf(html), "currency": HOSTILE,
                                                               "due_days": "14"})
        assert st == 422
        assert_escaped(html, "billing settings refused")
    finally:
        server.stop()


def test_sign_up_does_not_tell_whether_an_email_has_an_account(db, sink):  # noqa: F811
    """A taken email gets the same status, headers and page as a free one, after the same work
    (Argon2 in both); the owner is told by email; the newcomer's session works, the other's not."""
    server = start_server(db, sink)
    try:
        owner = Browser(server.port)
        st, _, _ = owner.submit("/portal/sign_up", {"name": "Owner", "email": "owner@example.com",
                                                   "password": "owner's password"})
        assert st == 303

        def sign_up(email):
            b = Browser(server.port)
            _, _, html = b.request("GET", "/portal/sign_up")
            started = time.monotonic()
            st, headers, body = b.request("POST", "/portal/sign_up", {
                "name": "Prober", "email": email, "password": "a guess password", "csrf": b.csrf(html)})
            return b, st, headers, body, time.monotonic() - started

        free_b, *free = sign_up("free@example.com")
        taken_b, *taken = sign_up("owner@example.com")
        (fst, fh, fbody, ft), (tst, th, tbody, tt) = free, taken
        assert (fst, fh["location"], fbody) == (tst, th["location"], tbody) == (303, "/portal/applications", "")
        # The same cookies by name (the values are random either way).
        assert set(free_b.cookies) == set(taken_b.cookies) == {"tg_session"}  # tg_csrf cleared in both
        # Both ran Argon2 (a hash takes tens of milliseconds; a skipped one would answer in ~1 ms).
        assert min(ft, tt) > 0.01 and max(ft, tt) < 20 * min(ft, tt), (ft, tt)
        # The newcomer is signed in; the prober of a taken email is not, and got nothing of the owner's.
        assert free_b.request("GET", "/portal/applications")[0] == 200
        st, headers, _ = taken_b.request("GET", "/portal/applications")
        assert st == 303 and headers["location"] == "/portal/sign_in"
        # The owner is told, once, and their password still works.
        [mail] = [m for m in sink.wait_for(1) if m["To"] == "owner@example.com"]
        assert "tried to create a developer account" in mail.get_payload(decode=True).decode()
        sign_up("owner@example.com")
        time.sleep(3)
        assert len([m for m in sink.messages() if m["To"] == "owner@example.com"]) == 1, "one notice a day"
        st, headers, _ = Browser(server.port).submit("/portal/sign_in", {"email": "owner@example.com",
                                                                         "password": "owner's password"})
        assert st == 303 and headers["location"] == "/portal/applications"
    finally:
        server.stop()
