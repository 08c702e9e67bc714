"""The developer portal's foundation through a real `tollgate serve` on SQLite and PostgreSQL:
sign-up, sign-in, sign-out, sessions and CSRF, and applications with the key shown once. (Browser
tests in headless Chromium come with the rest of the portal.)"""

import http.client
import os
import re
import urllib.parse

import pytest

from conftest import ADMIN_TOKEN
from support.control_plane import Api


class Browser:
    """Just enough of a browser: cookies (Secure ones too, as browsers do for loopback) and forms."""

    def __init__(self, port):
        self.port = port
        self.cookies = {}

    def request(self, method, path, form=None):
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
        headers = {}
        if self.cookies:
            headers["Cookie"] = "; ".join(f"{k}={v}" for k, v in self.cookies.items())
        body = None
        if form is not None:
            body = urllib.parse.urlencode(form)
            headers["Content-Type"] = "application/x-www-form-urlencoded"
        conn.request(method, path, body=body, headers=headers)
        r = conn.getresponse()
        text = r.read().decode()
        for k, v in r.getheaders():
            if k.lower() == "set-cookie":
                name, value = v.split(";")[0].split("=", 1)
                assert "HttpOnly" in v and "Secure" in v and "SameSite=Lax" in v, v
                assert "Path=/portal" in v or "Path=/admin" in v, v
                if "Max-Age=0" in v:
                    self.cookies.pop(name, None)
                else:
                    self.cookies[name] = value
        return r.status, dict((k.lower(), v) for k, v in r.getheaders()), text

    def csrf(self, html):
        return re.search(r'name="csrf" value="([^"]+)"', html).group(1)

    def submit(self, path, fields):
        _, _, html = self.request("GET", path)
        return self.request("POST", path, dict(fields, csrf=self.csrf(html)))


def test_sign_up_sign_in_and_applications(server):
    api = Api(server.base, ADMIN_TOKEN)
    svc = api.ok("POST", "/services", {"name": "Portal API"})
    plan = api.ok("POST", "/plans", {"service_id": svc["id"], "name": "Starter", "state": "published"})
    api.ok("POST", "/plans", {"service_id": svc["id"], "name": "Secret", "state": "hidden"})
    b = Browser(server.port)
    assert b.request("GET", "/portal/applications")[1]["location"] == "/portal/sign_in"
    # Errors are shown next to their field; nothing is created.
    st, _, html = b.submit("/portal/sign_up", {"name": "", "email": "not-an-email", "password": "short"})
    assert st == 422 and 'id="email-error"' in html and 'id="password-error"' in html and 'aria-invalid="true"' in html
    # A form without the CSRF token is refused.
    assert b.request("POST", "/portal/sign_up", {"name": "X", "email": "x@example.com", "password": "p" * 12})[0] == 403
    st, headers, _ = b.submit("/portal/sign_up", {"name": "Zed Labs", "email": "Zed@Example.com", "password": "correct horse"})
    assert st == 303 and headers["location"] == "/portal/applications" and "tg_session" in b.cookies
    st, _, html = b.request("GET", "/portal/applications")
    assert st == 200 and "zed@example.com" in html and "No applications yet" in html
    assert "Starter" in html and "Secret" not in html, "only published plans are offered"
    # Create an application: the key is shown once and works at the gateway API's level.
    csrf = b.csrf(html)
    assert b.request("POST", "/portal/applications", {"name": "Bot", "plan_id": plan["id"]})[0] == 403
    st, _, html = b.request("POST", "/portal/applications", {"name": "Bot", "plan_id": plan["id"], "csrf": csrf})
    assert st == 201, html
    key = re.search(r'<code id="new-key">([^<]+)</code>', html).group(1)
    assert key.startswith("tg_") and key not in b.request("GET", "/portal/applications")[2]
    [acct] = [a for a in api.ok("GET", "/accounts")["data"] if a["email"] == "zed@example.com"]
    [app] = api.ok("GET", f"/applications?account_id={acct['id']}")["data"]
    assert app["name"] == "Bot" and app["plan_id"] == plan["id"]
    # Hostile input is escaped.
    st, _, html = b.request("POST", "/portal/applications", {"name": "<script>x</script>", "plan_id": plan["id"], "csrf": csrf})
    assert st == 201 and "<script>x</script>" not in html and "&lt;script&gt;" in html
    # The same email cannot sign up twice, and the answer does not tell that it is taken (the same
    # redirect as a new sign-up, a cookie that opens no session; test_portal_escaping has the rest);
    # a wrong password gets one generic answer.
    other = Browser(server.port)
    st, headers, _ = other.submit("/portal/sign_up", {"name": "Again", "email": "zed@example.com", "password": "another pass"})
    assert st == 303 and headers["location"] == "/portal/applications"
    assert other.request("GET", "/portal/applications")[1]["location"] == "/portal/sign_in"
    assert [a["name"] for a in api.ok("GET", "/accounts")["data"] if a["email"] == "zed@example.com"] == ["Zed Labs"]
    for email, pw in (("zed@example.com", "wrong password"), ("nobody@example.com", "correct horse")):
        st, _, html = other.submit("/portal/sign_in", {"email": email, "password": pw})
        assert st == 401 and "The email or the password is wrong." in html
    st, headers, _ = other.submit("/portal/sign_in", {"email": "zed@example.com", "password": "correct horse"})
    assert st == 303 and headers["location"] == "/portal/applications"
    # Sign out ends the session on the server: the old cookie no longer works.
    old = dict(b.cookies)
    _, _, html = b.request("GET", "/portal/applications")
    assert b.request("POST", "/portal/sign_out", {"csrf": b.csrf(html)})[0] == 303
    b.cookies = old
    assert b.request("GET", "/portal/applications")[1]["location"] == "/portal/sign_in"
    # Passwords and session cookies are stored hashed only.
    dump = server.db.raw_dump()
    assert "correct horse" not in dump and old["tg_session"] not in dump


def sign_up(server, email):
    b = Browser(server.port)
    st, _, _ = b.submit("/portal/sign_up", {"name": email.split("@")[0], "email": email, "password": "long enough pw"})
    assert st == 303
    return b


def test_application_page_keys_usage_billing_and_isolation(server):
    api = Api(server.base, ADMIN_TOKEN)
    svc = api.ok("POST", "/services", {"name": "Portal API 2"})
    plan = api.ok("POST", "/plans", {"service_id": svc["id"], "name": "Daily", "state": "published",
                                     "limits": [{"metric": "hits", "period": "day", "value": 100}]})
    alice, mallory = sign_up(server, "alice@example.com"), sign_up(server, "mallory@example.com")
    _, _, html = alice.request("GET", "/portal/applications")
    st, _, html = alice.request("POST", "/portal/applications", {"name": "Crawler", "plan_id": plan["id"], "csrf": alice.csrf(html)})
    first_key = re.search(r'<code id="new-key">([^<]+)</code>', html).group(1)
    app_id = re.search(r'href="/portal/applications/(app_[A-Z0-9]+)"', html).group(1)
    # Usage reported by a gateway shows in the chart, with the daily limit and what remains.
    gw = api.ok("POST", "/gateway_tokens", {"name": "edge", "service_ids": [svc["id"]]})
    import time
    t = int(time.time())
    st, _, _ = Api(server.base, gw["token"]).call("POST", f"/gateway/v1/services/{svc['id']}/usage", {
        "gateway": "edge", "sequence": 1,
        "entries": [{"application": app_id, "metric": "hits", "bucket_start": t - t % 60, "delta": 37}]})
    assert st == 200
    st, _, html = alice.request("GET", f"/portal/applications/{app_id}")
    assert st == 200 and "Hits today: 37 of 100 (remaining 63)" in html and "<svg" in html and "limit 100/day" in html
    assert first_key not in html and first_key[:7] in html, "keys show only their prefix"
    # Rotation: a new key shown once; the old one keeps a 24 h grace.
    key_id = re.search(r'/keys/([^/]+)/rotate', html).group(1)
    st, _, html = alice.request("POST", f"/portal/applications/{app_id}/keys/{key_id}/rotate", {"csrf": alice.csrf(html)})
    assert st == 201 and "expires" in html
    new_key = re.search(r'<code id="new-key">([^<]+)</code>', html).group(1)
    assert new_key != first_key and new_key.startswith("tg_")
    # An issued invoice appears on the billing page with its PDF.
    acct = [a for a in api.ok("GET", "/accounts")["data"] if a["email"] == "alice@example.com"][0]
    inv = api.ok("POST", "/invoices", {"account_id": acct["id"]})
    api.ok("POST", f"/invoices/{inv['id']}/lines", {"description": "Support", "unit_price": "12"})
    inv = api.ok("POST", f"/invoices/{inv['id']}/issue", status=200)
    st, _, html = alice.request("GET", "/portal/billing")
    assert st == 200 and inv["number"] in html and "12.00 USD" in html
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=30)
    conn.request("GET", f"/portal/invoices/{inv['id']}.pdf", headers={"Cookie": f"tg_session={alice.cookies['tg_session']}"})
    r = conn.getresponse()
    assert r.status == 200 and r.getheader("Content-Type") == "application/pdf" and r.read().startswith(b"%PDF-")
    # Another developer sees none of it, on every route (404, like objects that do not exist).
    _, _, mhtml = mallory.request("GET", "/portal/applications")
    assert "Crawler" not in mhtml
    for method, path, form in [("GET", f"/portal/applications/{app_id}", None),
                               ("POST", f"/portal/applications/{app_id}/keys/{key_id}/rotate", {"csrf": mallory.csrf(mhtml)}),
                               ("GET", f"/portal/invoices/{inv['id']}.pdf", None)]:
        st, _, _ = mallory.request(method, path, form)
        assert st == 404, (method, path, st)
    assert inv["number"] not in mallory.request("GET", "/portal/billing")[2]
    # Signed out: every page sends to sign-in.
    anon = Browser(server.port)
    for path in (f"/portal/applications/{app_id}", "/portal/billing", f"/portal/invoices/{inv['id']}.pdf"):
        st, headers, _ = anon.request("GET", path)
        assert st == 303 and headers["location"] == "/portal/sign_in", path


def test_admin_portal_sign_in_dashboard_and_invoice_actions(server):
    api = Api(server.base, ADMIN_TOKEN)
    acct = api.ok("POST", "/accounts", {"name": "Buyer Co", "email": "buyer@example.com"})
    paid = api.ok("POST", "/invoices", {"account_id": acct["id"]})
    api.ok("POST", f"/invoices/{paid['id']}/lines", {"description": "Support", "unit_price": "100"})
    api.ok("POST", f"/invoices/{paid['id']}/issue", status=200)
    api.ok("POST", f"/invoices/{paid['id']}/pay", status=200)
    draft = api.ok("POST", "/invoices", {"account_id": acct["id"]})
    api.ok("POST", f"/invoices/{draft['id']}/lines", {"description": "Consulting", "unit_price": "40.50"})
    admin = Browser(server.port)
    # Not signed in: every admin page sends to sign-in; a developer's session is no admin session.
    for path in ("/admin", "/admin/invoices"):
        assert admin.request("GET", path)[1]["location"] == "/admin/sign_in"
    dev = Browser(server.port)
    dev.submit("/portal/sign_up", {"name": "Dev", "email": "dev@example.com", "password": "long enough pw"})
    dev.cookies["tg_admin"] = dev.cookies["tg_session"]
    assert dev.request("GET", "/admin")[1]["location"] == "/admin/sign_in"
    st, _, html = admin.submit("/admin/sign_in", {"token": "tga_wrong"})
    assert st == 401 and 'id="token-error"' in html
    st, headers, _ = admin.submit("/admin/sign_in", {"token": ADMIN_TOKEN})
    assert st == 303 and headers["location"] == "/admin"
    st, _, html = admin.request("GET", "/admin")
    assert st == 200 and '<strong id="revenue">100.00 USD</strong>' in html
    assert '<strong id="outstanding">0</strong>' in html
    # Issue the draft from the invoices page: numbered, and now outstanding.
    _, _, html = admin.request("GET", "/admin/invoices")
    assert admin.request("POST", f"/admin/invoices/{draft['id']}/issue", {"csrf": "forged"})[0] == 403
    st, _, html = admin.request("POST", f"/admin/invoices/{draft['id']}/issue", {"csrf": admin.csrf(html)})
    assert st == 200 and "issue done" in html
    assert api.ok("GET", f"/invoices/{draft['id']}")["state"] == "pending"
    assert '<strong id="outstanding">40.50 USD</strong>' in admin.request("GET", "/admin")[2]
    # A read-scope token may look but not act.
    reader = api.ok("POST", "/tokens", {"name": "viewer", "scope": "read"})
    ro = Browser(server.port)
    ro.submit("/admin/sign_in", {"token": reader["token"]})
    st, _, html = ro.request("GET", "/admin/invoices")
    assert st == 200 and "/cancel" not in html
    assert ro.request("POST", f"/admin/invoices/{draft['id']}/cancel", {"csrf": ro.csrf(html)})[0] == 403
    assert api.ok("GET", f"/invoices/{draft['id']}")["state"] == "pending"


def test_admin_billing_settings_form(server):
    api = Api(server.base, ADMIN_TOKEN)
    admin = Browser(server.port)
    admin.submit("/admin/sign_in", {"token": ADMIN_TOKEN})
    st, _, html = admin.request("GET", "/admin/billing")
    assert st == 200 and 'name="currency"' in html and 'value="USD"' in html

    def form(html, **changes):
        fields = dict(re.findall(r'<input id="([^"]+)" name="[^"]+" type="text" value="([^"]*)"', html))
        fields.update(dict(re.findall(r'<textarea id="([^"]+)" name="[^"]+" rows="3" cols="70">([^<]*)</textarea>', html)))
        fields.update({"mode": "postpaid", "numbering": "monthly", "csrf": admin.csrf(html)})
        fields.update(changes)
        return {k: v.replace("&#39;", "'").replace("&quot;", '"').replace("&amp;", "&") for k, v in fields.items()}

    # An invalid value is shown next to its field; nothing is saved.
    st, _, bad = admin.request("POST", "/admin/billing", form(html, currency="EURO"))
    assert st == 422 and 'id="currency-error"' in bad and 'value="EURO"' in bad
    st, _, bad = admin.request("POST", "/admin/billing", form(html, due_days="soon"))
    assert st == 422 and 'id="due_days-error"' in bad
    assert api.ok("GET", "/billing/settings")["currency"] == "USD"
    # A valid change, through the same validation as the API.
    st, _, ok = admin.request("POST", "/admin/billing", form(html, currency="EUR", mode="prepaid", charging_enabled="on",
                                                         due_days="14", **{"seller.name": "ACME API GmbH",
                                                         "email_texts.invoice_issued.subject": "Ihre Rechnung {invoice_number}"}))
    assert st == 200 and "Saved." in ok, ok
    s = api.ok("GET", "/billing/settings")
    assert (s["currency"], s["mode"], s["charging_enabled"], s["due_days"], s["seller"]["name"]) == \
        ("EUR", "prepaid", True, 14, "ACME API GmbH")
    assert s["email_texts"]["invoice_issued"]["subject"] == "Ihre Rechnung {invoice_number}"
    assert s["email_texts"]["charge_failed"]["body"].startswith("Hello {account_name}"), "untouched texts kept"


def portal_routes():
    """(method, path) of every portal route, read from control-plane/src/portal/mod.rs, so that a
    route added there without a line in the access test below fails that test."""
    src = open(os.path.join(os.path.dirname(__file__), "..", "control-plane", "src", "portal", "mod.rs")).read()
    admin_part, dev_part = src.split("pub fn router()")
    routes = []
    for part, prefix in ((admin_part, ""), (dev_part, "/portal")):
        for m in re.finditer(r'\.route\(\s*"([^"]+)",\s*([^;]*?)\)\s*(?=\.route|\s*\}|$)', part, re.S):
            path, handlers = m.group(1), m.group(2)
            for method in re.findall(r'\b(get|post)\(', handlers):
                routes.append((method.upper(), prefix + (path if path != "/" else "")))
    assert len(routes) > 30, routes
    return routes


def test_every_portal_route_is_closed_to_other_accounts_and_to_developers(server):
    """Another developer gets 404 for the first one's objects on every id-bearing route; every admin
    route refuses a developer's session (sends to the admin sign-in) and every admin form refuses a
    read-scope session (403) and changes nothing."""
    api = Api(server.base, ADMIN_TOKEN)
    svc = api.ok("POST", "/services", {"name": "Access API"})
    plan = api.ok("POST", "/plans", {"service_id": svc["id"], "name": "Open", "state": "published"})
    alice, mallory = sign_up(server, "alice@access.example"), sign_up(server, "mallory@access.example")
    _, _, html = alice.request("GET", "/portal/applications")
    _, _, html = alice.request("POST", "/portal/applications", {"name": "Secret app", "plan_id": plan["id"],
                                                               "csrf": alice.csrf(html)})
    app_id = re.search(r'href="/portal/applications/(app_[A-Z0-9]+)"', html).group(1)
    _, _, html = alice.request("GET", f"/portal/applications/{app_id}")
    key_id = re.search(r'/keys/([^/]+)/rotate', html).group(1)
    acct = [a for a in api.ok("GET", "/accounts")["data"] if a["email"] == "alice@access.example"][0]
    inv = api.ok("POST", "/invoices", {"account_id": acct["id"]})
    api.ok("POST", f"/invoices/{inv['id']}/lines", {"description": "Secret line", "unit_price": "7"})
    inv = api.ok("POST", f"/invoices/{inv['id']}/issue", status=200)
    alices = {"id": app_id, "key_id": key_id, "file": f"{inv['id']}.pdf", "action": "default"}
    ids = {"/portal/invoices/{id}/pay": inv["id"], "/portal/invoices/{id}/confirm": inv["id"],
           "/portal/payment_methods/{id}/{action}": "pm_of_alice"}
    _, _, mhtml = mallory.request("GET", "/portal/applications")
    csrf = mallory.csrf(mhtml)
    reader = api.ok("POST", "/tokens", {"name": "viewer", "scope": "read"})
    ro = Browser(server.port)
    ro.submit("/admin/sign_in", {"token": reader["token"]})
    ro_csrf = ro.csrf(ro.request("GET", "/admin")[2])
    dev_as_admin = Browser(server.port)
    dev_as_admin.cookies = {"tg_admin": mallory.cookies["tg_session"], "tg_session": mallory.cookies["tg_session"]}
    admin_ids = {"id": app_id, "rule_id": "mr_x", "kind": "limits", "index": "0", "action": "suspend",
                 "file": "invoices.csv"}
    before = api.ok("GET", f"/applications/{app_id}")
    checked = 0
    for method, path in portal_routes():
        if path.startswith("/admin"):
            if path in ("/admin/sign_in",):
                continue
            url = re.sub(r"\{(\w+)\}", lambda m: admin_ids[m.group(1)], path)
            form = {"csrf": csrf} if method == "POST" else None
            st, headers, body = dev_as_admin.request(method, url, form)
            assert st == 303 and headers["location"] == "/admin/sign_in", (method, path, st)
            assert "Secret" not in body
            if method == "POST" and path != "/admin/sign_out":
                st, _, _ = ro.request(method, url, {"csrf": ro_csrf})
                assert st == 403, ("read scope", method, path, st)
            checked += 1
        elif "{" in path:
            url = ids.get(path) and path.replace("{id}", ids[path]).replace("{action}", "default")
            url = url or re.sub(r"\{(\w+)\}", lambda m: alices[m.group(1)], path)
            st, _, body = mallory.request(method, url, {"csrf": csrf} if method == "POST" else None)
            assert st == 404, (method, path, st)
            assert "Secret" not in body
            checked += 1
        elif method == "GET":
            st, _, body = mallory.request("GET", path)
            assert st in (200, 303, 409) and "Secret" not in body and inv["number"] not in body, (path, st)
            checked += 1
    assert checked > 30
    after = api.ok("GET", f"/applications/{app_id}")
    assert after["state"] == before["state"] == "live" and after["keys"] == before["keys"], "nothing changed"
    assert api.ok("GET", f"/invoices/{inv['id']}")["state"] == "pending"


def test_admin_tokens_and_credit_notes_from_the_portal(server):
    api = Api(server.base, ADMIN_TOKEN)
    acct = api.ok("POST", "/accounts", {"name": "Credit Co", "email": "credit@example.com"})
    inv = api.ok("POST", "/invoices", {"account_id": acct["id"]})
    api.ok("POST", f"/invoices/{inv['id']}/lines", {"description": "Support", "unit_price": "100"})
    inv = api.ok("POST", f"/invoices/{inv['id']}/issue", status=200)
    admin = Browser(server.port)
    admin.submit("/admin/sign_in", {"token": ADMIN_TOKEN})
    # A token is shown once, works on the API, and is gone once revoked (its sessions too).
    st, _, html = admin.submit("/admin/tokens", {"name": "ci", "scope": "write"})
    assert st == 201, html
    token = re.search(r'<code id="secret">([^<]+)</code>', html).group(1)
    assert token not in admin.request("GET", "/admin/tokens")[2]
    assert Api(server.base, token).call("GET", "/admin/api/v1/accounts")[0] == 200
    other = Browser(server.port)
    other.submit("/admin/sign_in", {"token": token})
    assert other.request("GET", "/admin")[0] == 200
    [row] = [t for t in api.ok("GET", "/tokens")["data"] if t["name"] == "ci"]
    _, _, html = admin.request("GET", "/admin/tokens")
    st, _, html = admin.request("POST", f"/admin/tokens/{row['id']}/revoke", {"csrf": admin.csrf(html)})
    assert st == 200 and "Token revoked." in html
    assert Api(server.base, token).call("GET", "/admin/api/v1/accounts")[0] == 401
    assert other.request("GET", "/admin")[1]["location"] == "/admin/sign_in", "a revoked token's session ends"
    # Bad input is shown next to the field.
    st, _, html = admin.submit("/admin/tokens", {"name": "", "scope": "write"})
    assert st == 422 and 'id="name-error"' in html
    # A credit note from the invoices page: numbered, negative, and refused beyond the invoice.
    _, _, html = admin.request("GET", "/admin/invoices")
    csrf = admin.csrf(html)
    st, _, html = admin.request("POST", f"/admin/invoices/{inv['id']}/credit_note", {"csrf": csrf, "amount": "500", "reason": "x"})
    assert st == 409 or st == 422, st
    assert "Credit note refused" in html
    st, _, html = admin.request("POST", f"/admin/invoices/{inv['id']}/credit_note",
                                {"csrf": csrf, "amount": "25", "reason": "Outage"})
    assert st == 201 and re.search(r"Credit note CN-[0-9-]+ issued for 25.00 USD", html), html
    assert api.ok("GET", f"/accounts/{acct['id']}")["credit_balance"] == "25.00", "exactly one credit note"
