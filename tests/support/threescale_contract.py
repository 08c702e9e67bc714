"""A contract server for 3scale's Account Management API, for tests only (issue 22 item 2).

3scale has no emulator. This server answers the GET requests a 3scale importer makes, in the shapes
porta (github.com/3scale/porta) renders them, read from its source:

- JSON: `ThreeScale::JSONRepresenter` (app/lib/three_scale/json_representer.rb) wraps a collection
  as `{"<plural>": [{"<singular>": {...}}], "metadata": {...}}` and every item in its own object;
  `metadata` (per_page, total_entries, total_pages, current_page) is added only when the list is
  longer than a page (app/lib/three_scale/api/collection.rb, `paginated?`). Backend usages are a
  bare array (app/representers/backend_api_configs_representer.rb). The fields of each object are
  those of app/representers/<object>_representer.rb; plan fees are JSON numbers
  (plan_representer.rb `to_f`), pricing rules' `cost_per_unit` and accounts' `vat_rate` strings
  (BigDecimal columns); a method has `parent_id` and no `unit`.
- XML (the documented paths end in `.xml`, so a client following the documentation meets it
  first): the models' `to_xml` (app/models/*.rb): the collection element carries the pagination
  metadata as attributes; an application lists its app keys and plan, an account its users.
- Paging (app/controllers/admin/api/filters/pagination.rb): `page` from 1, `per_page` 1..500; a
  value out of range falls back to the default (page 1, 500 a page); a page past the end is empty.
  Paged: services, accounts, applications, backend usages, a plan's limits.
- Authentication (app/lib/api_authentication/by_access_token.rb): `access_token` from the query
  or, when absent, HTTP Basic credentials (the first non-empty of user and password,
  http_authentication.rb). A wrong token is 403 `{"error":"Access denied"}`
  (app/lib/filters/provider_required.rb via `render_error`); an unknown object 404
  `{"status":"Not found"}` (app/controllers/concerns/error_handling.rb; XML: an empty body).
- Faults a real deployment shows (porta itself never answers 429: a proxy in front of it does):
  every `rate_limit_every`-th request is 429 with `Retry-After: <retry_after>`; each path in
  `fail_once` answers 503 the first time it is asked.

The tenant is a `Tenant` (below): built by `generate()` or by hand, changed by the tests between
runs. `Server(tenant).start()` serves it on a free loopback port in a thread of the test process.
`stats` counts requests (by path kind, format, status) and notes any `access_token` seen in a URL.
Run alone: python threescale_contract.py --port 8787 --services 3 --applications 20
"""

import argparse
import base64
import hashlib
import itertools
import json
import threading
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from xml.sax.saxutils import escape

#: porta's `per_page_range` and default.
MAX_PER_PAGE = 500
TIME = "2024-01-02T03:04:05Z"


def digest(*parts):
    return hashlib.sha256(":".join(str(p) for p in parts).encode()).hexdigest()


class Tenant:
    """Everything a provider account holds, in porta's field names (ids are 3scale's)."""

    def __init__(self):
        self.ids = itertools.count(1001)
        self.services = []  # service dicts
        self.metrics = {}  # service id -> [metric dicts] (methods have parent_id)
        self.rules = {}  # service id -> [mapping rule dicts]
        self.proxies = {}  # service id -> proxy dict
        self.backend_usages = {}  # service id -> [backend usage dicts]
        self.plans = {}  # service id -> [plan dicts]
        self.limits = {}  # plan id -> [limit dicts]
        self.pricing = {}  # plan id -> [pricing rule dicts]
        self.accounts = []  # account dicts
        self.users = {}  # account id -> [user dicts]
        self.applications = []  # application dicts (user_key or application_id)
        self.app_keys = {}  # application id -> [values]

    def next_id(self):
        return next(self.ids)

    # -- building --

    def service(self, name, backend_version="1", policies=()):
        sid = self.next_id()
        self.services.append({"id": sid, "name": name, "state": "incomplete", "system_name": name.lower().replace(" ", "_"),
                              "backend_version": backend_version, "deployment_option": "self_managed",
                              "support_email": "support@example.com", "description": "", "intentions_required": False,
                              "buyers_manage_apps": True, "buyers_manage_keys": True, "referrer_filters_required": False,
                              "custom_keys_enabled": True, "buyer_key_regenerate_enabled": True,
                              "mandatory_app_key": True, "buyer_can_select_plan": False,
                              "buyer_plan_change_permission": "request", "created_at": TIME, "updated_at": TIME})
        self.metrics[sid], self.rules[sid], self.plans[sid], self.backend_usages[sid] = [], [], [], []
        hits = self.metric(sid, "hits", unit="hit")
        creds = {"1": {"credentials_location": "query"}, "2": {"credentials_location": "headers"}}.get(backend_version, {})
        self.proxies[sid] = {"service_id": sid, "endpoint": f"https://api-{sid}.example.com:443", "deployed_at": None,
                             "api_backend": f"https://backend-{sid}.example.com:443",
                             "credentials_location": creds.get("credentials_location", "query"),
                             "auth_app_key": "app_key", "auth_app_id": "app_id", "auth_user_key": "user_key",
                             "error_auth_failed": "Authentication failed", "error_auth_missing": "Authentication parameters missing",
                             "error_status_auth_failed": 403, "error_headers_auth_failed": "text/plain; charset=us-ascii",
                             "error_status_auth_missing": 403, "error_headers_auth_missing": "text/plain; charset=us-ascii",
                             "error_no_match": "No Mapping Rule matched", "error_status_no_match": 404,
                             "error_headers_no_match": "text/plain; charset=us-ascii", "error_limits_exceeded": "Usage limit exceeded",
                             "error_status_limits_exceeded": 429, "error_headers_limits_exceeded": "text/plain; charset=us-ascii",
                             "secret_token": "Shared_secret_sent_from_proxy_to_API_backend", "hostname_rewrite": "",
                             "oauth_login_url": None, "sandbox_endpoint": None, "api_test_path": "/",
                             "api_test_success": None, "created_at": TIME, "updated_at": TIME, "deployment_option": "self_managed",
                             "lock_version": 1,
                             "policies_config": [{"name": "apicast", "version": "builtin", "configuration": {}, "enabled": True}]
                             + [{"name": p, "version": "builtin", "configuration": {}, "enabled": True} for p in policies]}
        return sid, hits

    def metric(self, sid, name, unit="hit", parent=None):
        mid = self.next_id()
        m = {"id": mid, "name": name, "system_name": name, "friendly_name": name.title(), "description": "",
             "created_at": TIME, "updated_at": TIME}
        if parent:
            m["parent_id"] = parent  # MetricRepresenter: parent_id for a method, and no unit
        else:
            m["unit"] = unit
        self.metrics[sid].append(m)
        return mid

    def rule(self, sid, metric, method, pattern, delta=1, last=False):
        rid = self.next_id()
        self.rules[sid].append({"id": rid, "metric_id": metric, "pattern": pattern, "http_method": method, "delta": delta,
                                "position": len(self.rules[sid]) + 1, "last": last, "created_at": TIME, "updated_at": TIME})
        return rid

    def plan(self, sid, name, setup_fee=0.0, cost_per_month=0.0, trial_days=0, state="published"):
        pid = self.next_id()
        self.plans[sid].append({"id": pid, "name": name, "state": state, "setup_fee": float(setup_fee),
                                "cost_per_month": float(cost_per_month), "trial_period_days": trial_days,
                                "cancellation_period": 0, "approval_required": False, "default": False,
                                "created_at": TIME, "updated_at": TIME, "custom": False,
                                "system_name": name.lower().replace(" ", "_") + f"_{pid}"})
        self.limits[pid], self.pricing[pid] = [], []
        return pid

    def limit(self, pid, metric, period, value):
        self.limits[pid].append({"id": self.next_id(), "period": period, "value": value, "metric_id": metric, "plan_id": pid,
                                 "created_at": TIME, "updated_at": TIME})

    def price(self, pid, metric, cost, min_, max_=None):
        self.pricing[pid].append({"id": self.next_id(), "metric_id": metric, "cost_per_unit": cost, "min": min_,
                                  "max": max_, "created_at": TIME, "updated_at": TIME})

    def account(self, org_name, email, vat_rate=None, country="DE"):
        aid = self.next_id()
        a = {"id": aid, "created_at": TIME, "updated_at": TIME, "credit_card_stored": False,
             "monthly_billing_enabled": True, "monthly_charging_enabled": True, "state": "approved", "org_name": org_name,
             "billing_address": {"company": org_name, "address": "1 Main St", "address1": "1 Main St", "address2": None,
                                 "phone_number": None, "city": "Berlin", "country": country, "state": None, "zip": "10115"}}
        if vat_rate is not None:
            a["vat_rate"] = vat_rate
        self.accounts.append(a)
        self.users[aid] = [{"id": self.next_id(), "state": "active", "role": "admin", "created_at": TIME,
                            "updated_at": TIME, "username": email.split("@")[0], "email": email}]
        return aid

    def application(self, account, plan, name, state="live", user_key=None, app_id=None, app_keys=()):
        sid = self.service_of_plan(plan)
        xid = self.next_id()
        a = {"id": xid, "state": state, "enabled": state == "live", "created_at": TIME, "updated_at": TIME,
             "service_id": sid, "plan_id": plan, "account_id": account, "first_traffic_at": None,
             "first_daily_traffic_at": None, "name": name, "description": f"{name} (generated)"}
        if self.backend_version(sid) == "1":
            a["user_key"] = user_key if user_key is not None else digest("user_key", xid)[:32]
            a["provider_verification_key"] = digest("pvk", xid)[:32]
        else:
            a["application_id"] = app_id if app_id is not None else digest("app_id", xid)[:8]
        self.applications.append(a)
        if self.backend_version(sid) == "2":
            self.app_keys[xid] = list(app_keys)
        return xid

    # -- reading --

    def service_of_plan(self, pid):
        return next(sid for sid, ps in self.plans.items() if any(p["id"] == pid for p in ps))

    def backend_version(self, sid):
        return next(s["backend_version"] for s in self.services if s["id"] == sid)

    def find_app(self, xid):
        return self.app_by_id()[xid]

    def app_by_id(self):
        """Applications by id (rebuilt when the list changed length: tests edit them in place)."""
        cached = getattr(self, "_by_id", None)
        if cached is None or cached[0] != len(self.applications):
            cached = (len(self.applications), {a["id"]: a for a in self.applications})
            self._by_id = cached
        return cached[1]


def generate(services=50, applications=20000, seed=1):
    """A tenant of `services` services (every fourth in App ID and App Key mode, the others API
    key), each with `hits`, five methods and a metric, six mapping rules with placeholders, `$`
    and query parameters, three plans (fees, a trial, limits on methods, one method not allowed,
    graduated prices); one account for two applications; applications spread over the plans,
    every 50th suspended and every 97th pending; one service in ten with a CORS policy, the first
    with a backend usage."""
    t = Tenant()
    plans = []
    for s in range(services):
        mode = "2" if s % 4 == 3 else "1"
        sid, hits = t.service(f"API {s:03d}", mode, policies=("cors",) if s % 10 == 0 else ())
        m = {name: t.metric(sid, name, parent=hits) for name in ("search", "upload", "lookup", "admin", "report")}
        nbytes = t.metric(sid, "bytes", unit="byte")
        t.rule(sid, hits, "GET", "/")
        t.rule(sid, m["search"], "GET", "/v1/search/{q}$")
        t.rule(sid, m["upload"], "POST", "/v1/upload?kind={k}&v=1", delta=2)
        t.rule(sid, m["lookup"], "GET", "/v1/items/{id}/lookup")
        t.rule(sid, m["admin"], "DELETE", "/admin", last=True)
        t.rule(sid, nbytes, "PUT", "/v1/blobs/{id}", delta=5)
        if s == 0:
            t.backend_usages[sid].append({"id": t.next_id(), "path": "/legacy", "service_id": sid, "backend_id": t.next_id()})
        basic = t.plan(sid, "Basic", 0, 10, 0)
        t.limit(basic, hits, "minute", 100)
        t.limit(basic, m["search"], "day", 1000)
        t.limit(basic, m["admin"], "eternity", 0)
        pro = t.plan(sid, "Pro", 49.99, 99, 14)
        t.limit(pro, hits, "hour", 10000)
        t.limit(pro, m["upload"], "day", 50)
        t.price(pro, hits, "0.01", 1, 1000)
        t.price(pro, hits, "0.005", 1001)
        t.price(pro, nbytes, "0.0001", 1)
        hidden = t.plan(sid, "Partner", 0, 0, 0, state="hidden")
        t.limit(hidden, hits, "day", 1_000_000)
        plans += [(basic, mode), (pro, mode), (hidden, mode)]
    accounts = [t.account(f"Customer {i:05d}", f"dev{i}@customer{i}.example", vat_rate="19.0" if i % 3 else None)
                for i in range(max(1, applications // 2))]
    for i in range(applications):
        plan, mode = plans[i % len(plans)]
        state = "suspended" if i % 50 == 49 else "pending" if i % 97 == 96 else "live"
        keys = [digest(seed, "app_key", i, n)[:32] for n in range(1 + i % 2)] if mode == "2" else ()
        t.application(accounts[i // 2], plan, f"App {i:05d}", state=state, app_keys=keys,
                      user_key=digest(seed, "user_key", i)[:32] if mode == "1" else None)
    return t


# ---- rendering ----

def link(rel, path):
    return {"rel": rel, "href": f"https://tenant-admin.example.com{path}"}


def json_item(singular, obj, links=()):
    body = dict(obj)
    if links:
        body["links"] = list(links)
    return {singular: body}


def xml_value(tag, v):
    if v is None:
        return f"<{tag}/>"
    if isinstance(v, bool):
        v = "true" if v else "false"
    if isinstance(v, dict):
        return f"<{tag}>" + "".join(xml_value(k, x) for k, x in v.items()) + f"</{tag}>"
    if isinstance(v, list):
        return f"<{tag}>" + "".join(xml_value(tag[:-1] if tag.endswith("s") else "item", x) for x in v) + f"</{tag}>"
    return f"<{tag}>{escape(str(v))}</{tag}>"


class Page:
    def __init__(self, items, paged, query):
        self.total = len(items)
        page, per_page = 1, MAX_PER_PAGE
        if paged:
            try:
                page = int(query.get("page", ["1"])[0])
            except ValueError:
                page = 1
            page = page if page >= 1 else 1
            try:
                per_page = int(query.get("per_page", [str(MAX_PER_PAGE)])[0])
            except ValueError:
                per_page = MAX_PER_PAGE
            per_page = per_page if 1 <= per_page <= MAX_PER_PAGE else MAX_PER_PAGE
            self.items = items[(page - 1) * per_page: page * per_page]
        else:
            self.items = items
        self.meta = None
        if paged and per_page < self.total:
            self.meta = {"per_page": per_page, "total_entries": self.total,
                         "total_pages": (self.total + per_page - 1) // per_page, "current_page": page}


class Server:
    def __init__(self, tenant, token="3scale-token-0123456789", rate_limit_every=0, retry_after=1, fail_once=()):
        self.tenant = tenant
        self.token = token
        self.rate_limit_every = rate_limit_every
        self.retry_after = retry_after
        self.fail_once = set(fail_once)
        self.lock = threading.Lock()
        self.stats = {"requests": 0, "by_status": {}, "by_format": {}, "token_in_url": 0, "paths": []}
        self.httpd = None

    # -- answers --

    def route(self, path, query):
        """(status, plural, singular, items or object, paged, xml_extra) for a GET path."""
        t = self.tenant
        parts = path.strip("/").split("/")
        if parts[:2] != ["admin", "api"]:
            return None
        p = parts[2:]

        def num(s):
            return int(s) if s.isdigit() else -1

        def svc(sid):
            return next((s for s in t.services if s["id"] == sid and s["state"] != "deleted"), None)

        if p == ["services"]:
            return ("list", "services", "service", [s for s in t.services if s["state"] != "deleted"], True)
        if len(p) == 3 and p[0] == "services" and p[2] == "metrics" and svc(num(p[1])):
            return ("list", "metrics", "metric", t.metrics[num(p[1])], False)
        if len(p) == 5 and p[0] == "services" and p[2] == "metrics" and p[4] == "methods" and svc(num(p[1])):
            parent = num(p[3])
            if not any(m["id"] == parent for m in t.metrics[num(p[1])]):
                return None
            return ("list", "methods", "method", [m for m in t.metrics[num(p[1])] if m.get("parent_id") == parent], False)
        if len(p) == 4 and p[0] == "services" and p[2:] == ["proxy", "mapping_rules"] and svc(num(p[1])):
            return ("list", "mapping_rules", "mapping_rule", sorted(t.rules[num(p[1])], key=lambda r: r["position"]), False)
        if len(p) == 3 and p[0] == "services" and p[2] == "proxy" and svc(num(p[1])):
            return ("one", None, "proxy", t.proxies[num(p[1])], False)
        if len(p) == 3 and p[0] == "services" and p[2] == "backend_usages" and svc(num(p[1])):
            return ("bare", "backend_usages", "backend_usage", t.backend_usages[num(p[1])], True)
        if len(p) == 3 and p[0] == "services" and p[2] == "application_plans" and svc(num(p[1])):
            return ("list", "plans", "application_plan", t.plans[num(p[1])], False)
        if len(p) == 3 and p[0] == "application_plans" and p[2] == "limits" and num(p[1]) in t.limits:
            return ("list", "limits", "limit", t.limits[num(p[1])], True)
        if len(p) == 3 and p[0] == "application_plans" and p[2] == "pricing_rules" and num(p[1]) in t.pricing:
            return ("list", "pricing_rules", "pricing_rule", t.pricing[num(p[1])], False)
        if p == ["accounts"]:
            return ("list", "accounts", "account", t.accounts, True)
        if len(p) == 3 and p[0] == "accounts" and p[2] == "users" and num(p[1]) in t.users:
            return ("list", "users", "user", t.users[num(p[1])], False)
        if p == ["applications"]:
            return ("list", "applications", "application", t.applications, True)
        if len(p) == 5 and p[0] == "accounts" and p[2] == "applications" and p[4] == "keys":
            app = t.app_by_id().get(num(p[3]))
            if app is None or app["account_id"] != num(p[1]):
                return None
            keys = [{"value": v, "created_at": TIME, "updated_at": TIME} for v in t.app_keys.get(app["id"], [])]
            return ("list", "keys", "key", keys, False)
        return None

    def render_json(self, kind, plural, singular, data, page):
        if kind == "one":
            return json_item(singular, data)
        items = [json_item(singular, o, [link("self", f"/admin/api/{plural}/{o.get('id', '')}")]) for o in page.items]
        if kind == "bare":
            return items
        body = {plural: items}
        if page.meta:
            body["metadata"] = page.meta
        return body

    def render_xml(self, kind, plural, singular, data, page):
        head = '<?xml version="1.0" encoding="UTF-8"?>'
        if kind == "one":
            return head + xml_value(singular, data)
        attrs = "".join(f' {k}="{v}"' for k, v in (page.meta or {}).items())
        out = []
        for o in page.items:
            o = dict(o)
            if singular == "application":
                # Cinstance#to_xml: app keys and the plan inside the application.
                o["user_account_id"] = o.pop("account_id")
                if "application_id" in o:
                    o["keys"] = self.tenant.app_keys.get(o["id"], [])
            if singular == "account":
                # Account#to_xml: its users (with their e-mail addresses).
                o["users"] = [{"user": u} for u in self.tenant.users.get(o["id"], [])]
            out.append(xml_value(singular, o))
        tag = "plans" if singular == "application_plan" else plural
        return head + f"<{tag}{attrs}>" + "".join(out) + f"</{tag}>"

    def answer(self, raw_path, headers):
        parsed = urllib.parse.urlsplit(raw_path)
        query = urllib.parse.parse_qs(parsed.query)
        path, fmt = parsed.path, "html"
        for ext in (".json", ".xml"):
            if path.endswith(ext):
                path, fmt = path[: -len(ext)], ext[1:]
        with self.lock:
            self.stats["requests"] += 1
            n = self.stats["requests"]
            self.stats["by_format"][fmt] = self.stats["by_format"].get(fmt, 0) + 1
            self.stats["paths"].append(parsed.path)
            if "access_token" in query:
                self.stats["token_in_url"] += 1
            throttled = bool(self.rate_limit_every) and n % self.rate_limit_every == 0
            fail = None if throttled else next((f for f in self.fail_once if parsed.path.startswith(f)), None)
            if fail:
                self.fail_once.discard(fail)
        ctype = {"json": "application/json; charset=utf-8", "xml": "application/xml; charset=utf-8"}.get(fmt, "text/plain")
        if throttled:
            return 429, {"Retry-After": str(self.retry_after), "Content-Type": "text/plain"}, b"Too Many Requests"
        if fail:
            return 503, {"Content-Type": "text/html"}, b"<html><body>503 Service Unavailable</body></html>"
        token = query.get("access_token", [None])[0]
        if token is None:
            auth = headers.get("Authorization", "")
            if auth.startswith("Basic "):
                try:
                    user, _, password = base64.b64decode(auth[6:]).decode().partition(":")
                except ValueError:
                    user = password = ""
                token = user or password or None
        if token != self.token:
            if fmt == "xml":
                return 403, {"Content-Type": ctype}, b'<?xml version="1.0" encoding="UTF-8"?><error>Access denied</error>'
            return 403, {"Content-Type": ctype}, json.dumps({"error": "Access denied"}).encode()
        with self.lock:
            found = self.route(path, query)
            if found:
                kind, plural, singular, data, paged = found
                page = Page(data, paged, query) if kind != "one" else None
                body = (self.render_xml if fmt == "xml" else self.render_json)(kind, plural, singular, data, page)
        if not found or fmt not in ("json", "xml"):
            if fmt == "xml":
                return 404, {"Content-Type": ctype}, b""
            return 404, {"Content-Type": "application/json; charset=utf-8"}, json.dumps({"status": "Not found"}).encode()
        raw = body.encode() if fmt == "xml" else json.dumps(body).encode()
        return 200, {"Content-Type": ctype}, raw

    # -- lifecycle --

    def start(self, port=0):
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            # Headers and body in one write, sent at once: without these a keep-alive client
            # waits out its delayed ACK (40 ms) on every answer, which no real 3scale does.
            wbufsize = 1 << 16
            disable_nagle_algorithm = True

            def log_message(self, *args):
                pass

            def do_GET(self):
                status, hs, body = server.answer(self.path, self.headers)
                with server.lock:
                    server.stats["by_status"][status] = server.stats["by_status"].get(status, 0) + 1
                self.send_response(status)
                for k, v in hs.items():
                    self.send_header(k, v)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", port), Handler)
        self.httpd.daemon_threads = True
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()
        return self

    @property
    def url(self):
        return f"http://127.0.0.1:{self.httpd.server_address[1]}"

    def stop(self):
        if self.httpd:
            self.httpd.shutdown()
            self.httpd.server_close()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--port", type=int, default=8787)
    ap.add_argument("--services", type=int, default=3)
    ap.add_argument("--applications", type=int, default=20)
    ap.add_argument("--token", default="3scale-token-0123456789")
    args = ap.parse_args()
    srv = Server(generate(args.services, args.applications), token=args.token).start(args.port)
    print(f"3scale contract server on {srv.url}, token {args.token}")
    threading.Event().wait()


if __name__ == "__main__":
    main()
