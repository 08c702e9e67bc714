//! The audit log's coverage, proven by walking rather than by a list (docs/operations.md, "Audit
//! log"): every write operation of the OpenAPI document under `/admin/api/v1` (POST, PUT, PATCH,
//! DELETE; the exports are GETs) and every POST route of the admin portal (read from the router's
//! own table) is performed once, on a control plane of its own, and must leave exactly one new
//! audit event naming the caller (the token, or the portal session's token), the client address,
//! the action and the object. A write route added without a case here fails the walk with its
//! name; one deliberately not audited goes into an exemption list below, with its reason.
//!
//! Also: no secret an answer or a request carried reaches any event, and a refused write (invalid,
//! missing, conflicting) leaves none.

use std::collections::BTreeSet;
use std::net::SocketAddr;

use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::http::Request;
use serde_json::{json, Value};

use crate::contract::route_table;
use crate::support::{s, Catalog, Reply, TestApp, ADMIN_API, ADMIN_TOKEN};

/// Where every audited request comes from (TEST-NET-3), as `tollgate serve` records the peer.
const PEER: &str = "203.0.113.9:40000";
const PEER_IP: &str = "203.0.113.9";

/// Admin API write operations deliberately not audited: (method, path, why). None: every admin
/// write records its event. Only a route that writes nothing an admin decided may go here.
const EXEMPT_API_WRITES: &[(&str, &str, &str)] = &[];

/// Admin portal POST routes deliberately not audited: (path, why).
const EXEMPT_PORTAL_POSTS: &[(&str, &str)] = &[
    (
        "/admin/sign_in",
        "opens a session and changes no object; a refused sign-in must not grow the log either",
    ),
    ("/admin/sign_out", "ends a session and changes no object"),
];

/// Answer fields that carry a secret shown once (a created token or key, a webhook secret) and
/// request fields that send one (gateway credentials, an imported key or app key value): none of
/// their values may appear in any audit event.
const SECRET_FIELDS: &[&str] = &[
    "token",
    "key",
    "secret",
    "secret_key",
    "webhook_secret",
    "private_key",
    "value",
];

const HOOK: &str = "https://hooks.example.com/tollgate";

/// One audited write and the one event it must leave.
struct Case {
    method: &'static str,
    /// Under the API's base (`/services/...`) or, for the portal, the full path.
    path: String,
    /// JSON for the API, form fields (`{"name": "value"}`) for the portal.
    body: Option<Value>,
    action: String,
    object_type: &'static str,
    /// `None`: a create, the `id` of the answer (the portal answers a page: then any id).
    object_id: Option<String>,
}

fn case(
    method: &'static str,
    path: String,
    body: Option<Value>,
    action: &str,
    object_type: &'static str,
    object_id: Option<&str>,
) -> Case {
    Case {
        method,
        path,
        body,
        action: action.to_string(),
        object_type,
        object_id: object_id.map(str::to_string),
    }
}

/// Every audit event, oldest first.
async fn events(app: &TestApp) -> Vec<Value> {
    app.admin().walk("/audit_events", 100).await
}

/// A request from [`PEER`] with `token` as the Bearer token.
async fn call(app: &TestApp, token: &str, c: &Case) -> Reply {
    let peer: SocketAddr = PEER.parse().unwrap();
    let mut req = Request::builder()
        .method(c.method)
        .uri(format!("{ADMIN_API}{}", c.path))
        .header("authorization", format!("Bearer {token}"))
        .extension(ConnectInfo(peer));
    if c.body.is_some() {
        req = req.header("content-type", "application/json");
    }
    let body = c
        .body
        .as_ref()
        .map_or_else(Body::empty, |b| Body::from(b.to_string()));
    app.send(req.body(body).unwrap()).await
}

/// Every string under a [`SECRET_FIELDS`] name anywhere in `v`.
fn secrets_in(v: &Value, out: &mut Vec<String>) {
    match v {
        Value::Object(m) => {
            for (k, v) in m {
                match v {
                    Value::String(s) if SECRET_FIELDS.contains(&k.as_str()) && s.len() >= 8 => {
                        out.push(s.clone());
                    }
                    _ => secrets_in(v, out),
                }
            }
        }
        Value::Array(items) => items.iter().for_each(|v| secrets_in(v, out)),
        _ => {}
    }
}

/// Performs `c` as `send` does and checks the one new event; `Err` says what is wrong, naming
/// `route`.
async fn check<'a, F>(
    app: &'a TestApp,
    route: &str,
    c: &Case,
    actor: (&str, &str),
    send: impl FnOnce() -> F,
) -> Result<(), String>
where
    F: std::future::Future<Output = Reply> + 'a,
{
    let before: BTreeSet<String> = events(app)
        .await
        .iter()
        .map(|e| s(e, "id").to_string())
        .collect();
    let r = send().await;
    if !(r.status.is_success() || r.status.is_redirection()) {
        return Err(format!(
            "{route}: the case's request was refused ({} {}): fix the case",
            r.status,
            r.text()
        ));
    }
    let all = events(app).await;
    let new: Vec<&Value> = all
        .iter()
        .filter(|e| !before.contains(s(e, "id")))
        .collect();
    let [e] = new.as_slice() else {
        let actions: Vec<&Value> = new.iter().map(|e| &e["action"]).collect();
        return Err(format!(
            "{route}: {} new audit events, want exactly 1 {actions:?}{}",
            new.len(),
            if new.is_empty() {
                " (the write records nothing: call domain::audit::record in its writer's transaction)"
            } else {
                ""
            }
        ));
    };
    let answer: Value = serde_json::from_slice(&r.body).unwrap_or(Value::Null);
    let object_id = match (&c.object_id, answer["id"].as_str()) {
        (Some(id), _) => id.clone(),
        (None, Some(id)) => id.to_string(),
        (None, None) => match e["object_id"].as_str() {
            Some(id) if !id.is_empty() => id.to_string(),
            _ => return Err(format!("{route}: the event names no object: {e}")),
        },
    };
    let want = json!({"actor_type": actor.0, "actor_id": actor.1, "ip": PEER_IP,
                      "action": c.action, "object_type": c.object_type, "object_id": object_id});
    let got = json!({"actor_type": e["actor_type"], "actor_id": e["actor_id"], "ip": e["ip"],
                     "action": e["action"], "object_type": e["object_type"], "object_id": e["object_id"]});
    if got != want {
        return Err(format!("{route}: recorded {got}, want {want}"));
    }
    if e["changes"].as_object().is_none_or(|m| m.is_empty()) {
        return Err(format!("{route}: {} records no changed field", c.action));
    }
    // No secret the request sent or the answer showed is in the log.
    let mut secrets = Vec::new();
    secrets_in(&answer, &mut secrets);
    if let Some(body) = &c.body {
        secrets_in(body, &mut secrets);
    }
    let log = serde_json::to_string(&all).unwrap();
    if let Some(leaked) = secrets.iter().find(|s| log.contains(s.as_str())) {
        return Err(format!(
            "{route}: a secret ({}...) is in the audit log",
            &leaked[..6]
        ));
    }
    Ok(())
}

/// A fresh control plane (with a master key: gateway secrets and webhook endpoints need one) and
/// a write token of its own for the requests under test, so that the event's actor is told apart
/// from the environment token that builds the fixtures.
async fn control_plane() -> (TestApp, String, String) {
    let app = TestApp::with_master_key().await;
    let made = app
        .admin()
        .create("/tokens", json!({"name": "auditor", "scope": "write"}))
        .await;
    let (id, token) = (s(&made, "id").to_string(), s(&made, "token").to_string());
    (app, id, token)
}

/// An open invoice of `account_id` (with a line of 10 when `line`).
async fn open_invoice(app: &TestApp, account_id: &str, line: bool) -> Value {
    let api = app.admin();
    let inv = api
        .create("/invoices", json!({"account_id": account_id}))
        .await;
    if !line {
        return inv;
    }
    api.create(
        &format!("/invoices/{}/lines", s(&inv, "id")),
        json!({"description": "Support", "unit_price": "10"}),
    )
    .await
}

/// An issued (`pending`) invoice of `account_id` with one line of 10.
async fn issued_invoice(app: &TestApp, account_id: &str) -> String {
    let inv = open_invoice(app, account_id, true).await;
    let id = s(&inv, "id").to_string();
    app.admin()
        .ok("POST", &format!("/invoices/{id}/issue"), None)
        .await;
    id
}

/// A Stripe gateway (its API never called: the account charged has no card).
async fn stripe(app: &TestApp) {
    app.admin()
        .ok(
            "PUT",
            "/billing/gateway",
            Some(json!({"type": "stripe", "secret_key": "sk_test_fixture0123456789",
                        "publishable_key": "pk_test_fixture", "webhook_secret": "whsec_fixture0123456789"})),
        )
        .await;
}

async fn webhook(app: &TestApp) -> String {
    let ep = app
        .admin()
        .create(
            "/webhook_endpoints",
            json!({"url": HOOK, "events": ["invoice.paid"]}),
        )
        .await;
    s(&ep, "id").to_string()
}

/// The admin API case of `method route` (as the OpenAPI document writes it), with its fixtures
/// built on `app`; `None`: no case.
async fn api_case(app: &TestApp, method: &str, route: &str) -> Option<Case> {
    let api = app.admin();
    let c = Catalog::new(app).await;
    let (sid, pid, aid) = (c.service_id(), c.plan_id(), c.account_id());
    let app_of = || async { c.application(app, "Audited").await };
    let path = route.strip_prefix(ADMIN_API)?;
    Some(match (method, path) {
        ("post", "/services") => case(
            "POST",
            "/services".into(),
            Some(json!({"name": "Audited"})),
            "service.created",
            "service",
            None,
        ),
        ("patch", "/services/{id}") => case(
            "PATCH",
            format!("/services/{sid}"),
            Some(json!({"name": "Renamed"})),
            "service.updated",
            "service",
            Some(sid),
        ),
        ("delete", "/services/{id}") => {
            let other = api.create("/services", json!({"name": "Unused"})).await;
            let id = s(&other, "id");
            case(
                "DELETE",
                format!("/services/{id}"),
                None,
                "service.deleted",
                "service",
                Some(id),
            )
        }
        ("post", "/services/{id}/metrics") => case(
            "POST",
            format!("/services/{sid}/metrics"),
            Some(json!({"name": "search", "unit": "query", "parent": "hits"})),
            "metric.created",
            "metric",
            None,
        ),
        ("patch" | "delete", "/services/{id}/metrics/{metric_id}") => {
            let m = api
                .create(
                    &format!("/services/{sid}/metrics"),
                    json!({"name": "search", "unit": "query", "parent": "hits"}),
                )
                .await;
            let id = s(&m, "id");
            let (verb, body, action) = match method {
                "patch" => ("PATCH", Some(json!({"unit": "request"})), "metric.updated"),
                _ => ("DELETE", None, "metric.deleted"),
            };
            let path = format!("/services/{sid}/metrics/{id}");
            case(verb, path, body, action, "metric", Some(id))
        }
        ("post", "/services/{id}/mapping_rules") => case(
            "POST",
            format!("/services/{sid}/mapping_rules"),
            Some(json!({"method": "GET", "pattern": "/v1/forecast", "metric": "forecast"})),
            "mapping_rule.created",
            "mapping_rule",
            None,
        ),
        ("delete", "/services/{id}/mapping_rules/{rule_id}") => {
            let rule = api
                .create(
                    &format!("/services/{sid}/mapping_rules"),
                    json!({"method": "GET", "pattern": "/v1/forecast", "metric": "forecast"}),
                )
                .await;
            let id = s(&rule, "id");
            let path = format!("/services/{sid}/mapping_rules/{id}");
            case(
                "DELETE",
                path,
                None,
                "mapping_rule.deleted",
                "mapping_rule",
                Some(id),
            )
        }
        ("post", "/plans") => case(
            "POST",
            "/plans".into(),
            Some(json!({"service_id": sid, "name": "Gold", "fixed_fee": "20"})),
            "plan.created",
            "plan",
            None,
        ),
        ("patch", "/plans/{id}") => case(
            "PATCH",
            format!("/plans/{pid}"),
            Some(json!({"fixed_fee": "12.50"})),
            "plan.updated",
            "plan",
            Some(pid),
        ),
        ("delete", "/plans/{id}") => {
            let unused = api
                .create("/plans", json!({"service_id": sid, "name": "Unused"}))
                .await;
            let id = s(&unused, "id");
            let path = format!("/plans/{id}");
            case("DELETE", path, None, "plan.deleted", "plan", Some(id))
        }
        (
            "put" | "delete",
            "/plans/{id}/alert_thresholds" | "/applications/{id}/alert_thresholds",
        ) => {
            let (id, kind) = if path.starts_with("/plans/") {
                (pid.to_string(), "plan_alert_thresholds")
            } else {
                let a = app_of().await;
                (s(&a, "id").to_string(), "application_alert_thresholds")
            };
            let path = path.replace("{id}", &id);
            let body = json!({"thresholds": [50, 75]});
            let (verb, body, action) = if method == "put" {
                ("PUT", Some(body), format!("{kind}.updated"))
            } else {
                // A set of its own first, so that the reset changes something.
                api.ok("PUT", &path, Some(body)).await;
                ("DELETE", None, format!("{kind}.reset"))
            };
            case(verb, path, body, &action, kind, Some(&id))
        }
        ("post", "/accounts") => case(
            "POST",
            "/accounts".into(),
            Some(json!({"name": "Audited", "email": "audited@example.com"})),
            "account.created",
            "account",
            None,
        ),
        ("patch", "/accounts/{id}") => case(
            "PATCH",
            format!("/accounts/{aid}"),
            Some(json!({"name": "Acme Two"})),
            "account.updated",
            "account",
            Some(aid),
        ),
        ("delete", "/accounts/{id}") => case(
            "DELETE",
            format!("/accounts/{aid}"),
            None,
            "account.deleted",
            "account",
            Some(aid),
        ),
        ("post", "/accounts/{id}/tokens") => case(
            "POST",
            format!("/accounts/{aid}/tokens"),
            Some(json!({"name": "ci"})),
            "account_token.created",
            "account_token",
            None,
        ),
        ("delete", "/accounts/{id}/tokens/{token_id}") => {
            let tok = api
                .create(&format!("/accounts/{aid}/tokens"), json!({}))
                .await;
            let id = s(&tok, "id");
            let path = format!("/accounts/{aid}/tokens/{id}");
            let action = "account_token.revoked";
            case("DELETE", path, None, action, "account_token", Some(id))
        }
        ("post", "/applications") => case(
            "POST",
            "/applications".into(),
            Some(json!({"account_id": aid, "plan_id": pid, "name": "Audited"})),
            "application.created",
            "application",
            None,
        ),
        ("patch" | "delete", "/applications/{id}") => {
            let a = app_of().await;
            let id = s(&a, "id");
            let (verb, body, action) = match method {
                "patch" => (
                    "PATCH",
                    Some(json!({"description": "renamed"})),
                    "application.updated",
                ),
                _ => ("DELETE", None, "application.deleted"),
            };
            let path = format!("/applications/{id}");
            case(verb, path, body, action, "application", Some(id))
        }
        ("post", "/applications/{id}/app_keys") => {
            let a = app_of().await;
            let id = s(&a, "id");
            api.ok(
                "PATCH",
                &format!("/applications/{id}"),
                Some(json!({"app_id": "audited-app"})),
            )
            .await;
            case(
                "POST",
                format!("/applications/{id}/app_keys"),
                Some(json!({"value": "app-key-0123456789abcdef"})),
                "app_key.created",
                "app_key",
                None,
            )
        }
        ("delete", "/applications/{id}/app_keys/{key_id}") => {
            let a = app_of().await;
            let id = s(&a, "id");
            api.ok(
                "PATCH",
                &format!("/applications/{id}"),
                Some(json!({"app_id": "audited-app"})),
            )
            .await;
            let k = api
                .create(
                    &format!("/applications/{id}/app_keys"),
                    json!({"value": "app-key-0123456789abcdef"}),
                )
                .await;
            let key_id = s(&k, "id");
            let path = format!("/applications/{id}/app_keys/{key_id}");
            case(
                "DELETE",
                path,
                None,
                "app_key.deleted",
                "app_key",
                Some(key_id),
            )
        }
        ("post", "/applications/{id}/customize_plan") => {
            let a = app_of().await;
            let id = s(&a, "id");
            case(
                "POST",
                format!("/applications/{id}/customize_plan"),
                Some(json!({})),
                "application.plan_customized",
                "application",
                Some(id),
            )
        }
        ("post", "/applications/{id}/keys") => {
            let a = app_of().await;
            let id = s(&a, "id");
            case(
                "POST",
                format!("/applications/{id}/keys"),
                Some(json!({})),
                "application_key.created",
                "application_key",
                None,
            )
        }
        ("delete", "/applications/{id}/keys/{key_id}") => {
            let a = app_of().await;
            let (id, key_id) = (s(&a, "id"), s(&a, "key_id"));
            case(
                "DELETE",
                format!("/applications/{id}/keys/{key_id}"),
                None,
                "application_key.revoked",
                "application_key",
                Some(key_id),
            )
        }
        ("post", "/applications/{id}/keys/{key_id}/rotate") => {
            let a = app_of().await;
            let (id, key_id) = (s(&a, "id"), s(&a, "key_id"));
            case(
                "POST",
                format!("/applications/{id}/keys/{key_id}/rotate"),
                Some(json!({})),
                "application_key.rotated",
                "application_key",
                None,
            )
        }
        ("post", "/applications/{id}/suspend" | "/applications/{id}/resume") => {
            let a = app_of().await;
            let id = s(&a, "id");
            let action = if path.ends_with("suspend") {
                "application.suspended"
            } else {
                api.ok("POST", &format!("/applications/{id}/suspend"), None)
                    .await;
                "application.resumed"
            };
            let path = path.replace("{id}", id);
            case("POST", path, None, action, "application", Some(id))
        }
        ("post", "/tokens") => case(
            "POST",
            "/tokens".into(),
            Some(json!({"name": "ci", "scope": "read"})),
            "admin_token.created",
            "admin_token",
            None,
        ),
        ("delete", "/tokens/{id}") => {
            let t = api
                .create("/tokens", json!({"name": "old", "scope": "read"}))
                .await;
            let id = s(&t, "id");
            let path = format!("/tokens/{id}");
            case(
                "DELETE",
                path,
                None,
                "admin_token.revoked",
                "admin_token",
                Some(id),
            )
        }
        ("post", "/gateway_tokens") => case(
            "POST",
            "/gateway_tokens".into(),
            Some(json!({"name": "edge", "service_ids": [sid]})),
            "gateway_token.created",
            "gateway_token",
            None,
        ),
        ("patch" | "delete", "/gateway_tokens/{id}") => {
            let t = api
                .create(
                    "/gateway_tokens",
                    json!({"name": "edge", "service_ids": [sid]}),
                )
                .await;
            let id = s(&t, "id");
            let other = api.create("/services", json!({"name": "Other"})).await;
            let (verb, body, action) = match method {
                "patch" => (
                    "PATCH",
                    Some(json!({"service_ids": [sid, s(&other, "id")]})),
                    "gateway_token.updated",
                ),
                _ => ("DELETE", None, "gateway_token.revoked"),
            };
            let path = format!("/gateway_tokens/{id}");
            case(verb, path, body, action, "gateway_token", Some(id))
        }
        ("put", "/billing/settings") => case(
            "PUT",
            "/billing/settings".into(),
            Some(json!({"due_days": 10})),
            "billing_settings.updated",
            "billing_settings",
            Some("billing_settings"),
        ),
        ("post", "/billing/runs") => case(
            "POST",
            "/billing/runs".into(),
            Some(json!({})),
            "billing_run.started",
            "billing_run",
            None,
        ),
        ("put", "/billing/gateway") => case(
            "PUT",
            "/billing/gateway".into(),
            Some(
                json!({"type": "stripe", "secret_key": "sk_test_audited0123456789",
                        "publishable_key": "pk_test_audited", "webhook_secret": "whsec_audited0123456789"}),
            ),
            "payment_gateway.updated",
            "payment_gateway",
            Some("payment_gateway"),
        ),
        ("post", "/invoices") => case(
            "POST",
            "/invoices".into(),
            Some(json!({"account_id": aid})),
            "invoice.created",
            "invoice",
            None,
        ),
        ("post", "/invoices/{id}/finalize" | "/invoices/{id}/issue" | "/invoices/{id}/cancel") => {
            let inv = open_invoice(app, aid, true).await;
            let id = s(&inv, "id");
            let action = match path.rsplit('/').next() {
                Some("finalize") => "invoice.finalized",
                Some("issue") => "invoice.issued",
                _ => "invoice.cancelled",
            };
            let path = path.replace("{id}", id);
            case("POST", path, None, action, "invoice", Some(id))
        }
        ("post", "/invoices/{id}/pay") => {
            let id = issued_invoice(app, aid).await;
            let path = format!("/invoices/{id}/pay");
            case(
                "POST",
                path,
                None,
                "invoice.marked_paid",
                "invoice",
                Some(&id),
            )
        }
        ("post", "/invoices/{id}/lines") => {
            let inv = open_invoice(app, aid, false).await;
            let id = s(&inv, "id");
            case(
                "POST",
                format!("/invoices/{id}/lines"),
                Some(json!({"description": "Setup help", "unit_price": "25"})),
                "invoice.line_added",
                "invoice",
                Some(id),
            )
        }
        ("delete", "/invoices/{id}/lines/{line_id}") => {
            let inv = open_invoice(app, aid, true).await;
            let (id, line) = (s(&inv, "id"), s(&inv["lines"][0], "id"));
            let path = format!("/invoices/{id}/lines/{line}");
            case(
                "DELETE",
                path,
                None,
                "invoice.line_removed",
                "invoice",
                Some(id),
            )
        }
        ("post", "/invoices/{id}/credit_notes") => {
            let id = issued_invoice(app, aid).await;
            case(
                "POST",
                format!("/invoices/{id}/credit_notes"),
                Some(json!({"amount": "2.00", "reason": "goodwill"})),
                "credit_note.created",
                "credit_note",
                None,
            )
        }
        ("post", "/invoices/{id}/charge") => {
            stripe(app).await;
            let id = issued_invoice(app, aid).await;
            let path = format!("/invoices/{id}/charge");
            let action = "invoice.charge_attempted";
            case("POST", path, None, action, "invoice", Some(&id))
        }
        ("post", "/webhook_endpoints") => case(
            "POST",
            "/webhook_endpoints".into(),
            Some(json!({"url": HOOK, "events": ["invoice.paid"]})),
            "webhook_endpoint.created",
            "webhook_endpoint",
            None,
        ),
        ("patch" | "delete", "/webhook_endpoints/{id}") => {
            let id = webhook(app).await;
            let (verb, body, action) = match method {
                "patch" => (
                    "PATCH",
                    Some(json!({"description": "billing"})),
                    "webhook_endpoint.updated",
                ),
                _ => ("DELETE", None, "webhook_endpoint.deleted"),
            };
            let path = format!("/webhook_endpoints/{id}");
            case(verb, path, body, action, "webhook_endpoint", Some(&id))
        }
        ("post", "/webhook_endpoints/{id}/test") => {
            let id = webhook(app).await;
            let path = format!("/webhook_endpoints/{id}/test");
            let action = "webhook_endpoint.test_sent";
            case("POST", path, None, action, "webhook_endpoint", Some(&id))
        }
        ("post", "/webhook_endpoints/{id}/rotate_secret") => {
            let id = webhook(app).await;
            case(
                "POST",
                format!("/webhook_endpoints/{id}/rotate_secret"),
                Some(json!({"grace_seconds": 60})),
                "webhook_endpoint.secret_rotated",
                "webhook_endpoint",
                Some(&id),
            )
        }
        ("post", "/webhook_deliveries/{id}/replay") => {
            let ep = webhook(app).await;
            let d = api
                .create(&format!("/webhook_endpoints/{ep}/test"), json!({}))
                .await;
            let id = s(&d, "id");
            let path = format!("/webhook_deliveries/{id}/replay");
            let action = "webhook_delivery.replayed";
            case("POST", path, None, action, "webhook_delivery", Some(id))
        }
        _ => return None,
    })
}

/// The admin API's write operations, from the served OpenAPI document.
async fn api_writes() -> Vec<(String, String)> {
    let app = TestApp::new().await;
    let doc = app.client("", None).get("/openapi.json").await.json();
    let mut out = Vec::new();
    for (path, item) in doc["paths"].as_object().unwrap() {
        if !path.starts_with(&format!("{ADMIN_API}/")) {
            continue;
        }
        for method in ["post", "put", "patch", "delete"] {
            if item.get(method).is_some() {
                out.push((method.to_string(), path.clone()));
            }
        }
    }
    out
}

#[tokio::test]
async fn every_admin_api_write_records_exactly_one_event_with_its_actor() {
    let writes = api_writes().await;
    assert!(
        writes.len() >= 50,
        "the document lost its writes: {writes:?}"
    );
    let mut failures = Vec::new();
    for (method, path) in &writes {
        let route = format!("{} {path}", method.to_uppercase());
        if EXEMPT_API_WRITES
            .iter()
            .any(|(m, p, _)| m.eq_ignore_ascii_case(method) && p == path)
        {
            continue;
        }
        let (app, token_id, token) = control_plane().await;
        let Some(c) = api_case(&app, method, path).await else {
            failures.push(format!(
                "{route}: no audit case: record an event in its writer and add a case to api_case \
                 (or add the route to EXEMPT_API_WRITES, saying why)"
            ));
            continue;
        };
        let actor = ("token", token_id.as_str());
        if let Err(e) = check(&app, &route, &c, actor, || call(&app, &token, &c)).await {
            failures.push(e);
        }
    }
    // An exemption for a route that is gone is a stale list.
    for (m, p, _) in EXEMPT_API_WRITES {
        assert!(
            writes
                .iter()
                .any(|(method, path)| m.eq_ignore_ascii_case(method) && p == path),
            "EXEMPT_API_WRITES names {m} {p}, which the document does not have"
        );
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

// ---- the admin portal ----

/// A browser signed in to the admin portal with `token`, from [`PEER`].
struct Browser<'a> {
    app: &'a TestApp,
    cookie: String,
    csrf: String,
}

fn form(fields: &Value) -> String {
    let enc = |s: &str| -> String {
        s.bytes()
            .map(|b| match b {
                b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                    (b as char).to_string()
                }
                _ => format!("%{b:02X}"),
            })
            .collect()
    };
    fields
        .as_object()
        .unwrap()
        .iter()
        .map(|(k, v)| format!("{}={}", enc(k), enc(v.as_str().unwrap())))
        .collect::<Vec<_>>()
        .join("&")
}

/// `name=value` of the `Set-Cookie` named `name` in `r`.
fn cookie(r: &Reply, name: &str) -> String {
    r.headers
        .get_all("set-cookie")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find(|v| v.starts_with(&format!("{name}=")))
        .and_then(|v| v.split(';').next())
        .unwrap_or_else(|| panic!("no {name} cookie: {:?}", r.headers))
        .to_string()
}

/// The value of the first `name="csrf"` input of a page.
fn csrf_of(html: &str) -> String {
    let at = html.find(r#"name="csrf" value=""#).expect("a csrf field") + 19;
    html[at..].split('"').next().unwrap().to_string()
}

impl<'a> Browser<'a> {
    async fn send(&self, method: &str, path: &str, cookie: &str, body: Option<String>) -> Reply {
        let peer: SocketAddr = PEER.parse().unwrap();
        let mut req = Request::builder()
            .method(method)
            .uri(path)
            .header("cookie", cookie)
            .extension(ConnectInfo(peer));
        if body.is_some() {
            req = req.header("content-type", "application/x-www-form-urlencoded");
        }
        let req = req.body(body.map_or_else(Body::empty, Body::from)).unwrap();
        self.app.send(req).await
    }

    async fn sign_in(app: &'a TestApp, token: &str) -> Browser<'a> {
        let mut b = Browser {
            app,
            cookie: String::new(),
            csrf: String::new(),
        };
        let page = b.send("GET", "/admin/sign_in", "", None).await;
        let csrf_cookie = cookie(&page, "tg_admin_csrf");
        let csrf = csrf_of(&page.text());
        let body = form(&json!({"token": token, "csrf": csrf}));
        let r = b
            .send("POST", "/admin/sign_in", &csrf_cookie, Some(body))
            .await;
        assert_eq!(r.status.as_u16(), 303, "sign-in: {}", r.text());
        b.cookie = cookie(&r, "tg_admin");
        let home = b.send("GET", "/admin", &b.cookie, None).await;
        b.csrf = csrf_of(&home.text());
        b
    }

    async fn post(&self, path: &str, fields: Option<&Value>) -> Reply {
        let mut fields = fields.cloned().unwrap_or_else(|| json!({}));
        fields["csrf"] = json!(self.csrf);
        self.send("POST", path, &self.cookie, Some(form(&fields)))
            .await
    }
}

/// The portal cases of POST `route` (as the router writes it), each with its fixtures on a
/// control plane of its own: (app, token id, token, case). Empty: no case.
async fn portal_cases(route: &str) -> Vec<(TestApp, String, String, Case)> {
    // The actions of one route (its `{action}` segment) are cases of their own.
    let variants: &[&str] = match route {
        "/admin/invoices/{id}/{action}" => &["finalize", "issue", "cancel", "charge"],
        "/admin/applications/{id}/{action}" => &["suspend", "resume"],
        "/admin/webhooks/{id}/{action}" => &["disable", "enable", "test", "delete"],
        _ => &[""],
    };
    let mut out = Vec::new();
    for variant in variants {
        let (app, token_id, token) = control_plane().await;
        let Some(c) = portal_case(&app, route, variant).await else {
            return Vec::new();
        };
        out.push((app, token_id, token, c));
    }
    out
}

async fn portal_case(app: &TestApp, route: &str, variant: &str) -> Option<Case> {
    let api = app.admin();
    let c = Catalog::new(app).await;
    let (sid, pid, aid) = (c.service_id(), c.plan_id(), c.account_id());
    let post = |path: String, fields: Value, action: &str, kind: &'static str, id: Option<&str>| {
        case("POST", path, Some(fields), action, kind, id)
    };
    Some(match route {
        "/admin/billing" => post(
            route.into(),
            json!({"due_days": "10"}),
            "billing_settings.updated",
            "billing_settings",
            Some("billing_settings"),
        ),
        "/admin/invoices/{id}/{action}" => {
            let id = if variant == "charge" {
                stripe(app).await;
                issued_invoice(app, aid).await
            } else {
                s(&open_invoice(app, aid, true).await, "id").to_string()
            };
            let action = match variant {
                "finalize" => "invoice.finalized",
                "issue" => "invoice.issued",
                "cancel" => "invoice.cancelled",
                _ => "invoice.charge_attempted",
            };
            let path = format!("/admin/invoices/{id}/{variant}");
            post(path, json!({}), action, "invoice", Some(&id))
        }
        "/admin/invoices/{id}/credit_note" => {
            let id = issued_invoice(app, aid).await;
            post(
                format!("/admin/invoices/{id}/credit_note"),
                json!({"amount": "2.00", "reason": "goodwill"}),
                "credit_note.created",
                "credit_note",
                None,
            )
        }
        "/admin/services" => post(
            route.into(),
            json!({"name": "Portal service"}),
            "service.created",
            "service",
            None,
        ),
        "/admin/services/{id}/metrics" => post(
            format!("/admin/services/{sid}/metrics"),
            json!({"name": "search", "unit": "query", "parent": "hits"}),
            "metric.created",
            "metric",
            None,
        ),
        "/admin/services/{id}/mapping_rules" => post(
            format!("/admin/services/{sid}/mapping_rules"),
            json!({"method": "GET", "pattern": "/v1/x", "metric": "hits", "delta": "1"}),
            "mapping_rule.created",
            "mapping_rule",
            None,
        ),
        "/admin/services/{id}/mapping_rules/{rule_id}/delete" => {
            let rule = api
                .create(
                    &format!("/services/{sid}/mapping_rules"),
                    json!({"method": "GET", "pattern": "/v1/x", "metric": "hits"}),
                )
                .await;
            let id = s(&rule, "id");
            let path = format!("/admin/services/{sid}/mapping_rules/{id}/delete");
            let action = "mapping_rule.deleted";
            post(path, json!({}), action, "mapping_rule", Some(id))
        }
        "/admin/plans" => post(
            route.into(),
            json!({"service_id": sid, "name": "Gold", "fixed_fee": "20", "setup_fee": "0",
                   "trial_days": "0"}),
            "plan.created",
            "plan",
            None,
        ),
        "/admin/plans/{id}" => post(
            format!("/admin/plans/{pid}"),
            json!({"name": "Basic", "fixed_fee": "12.50", "setup_fee": "5", "trial_days": "14",
                   "state": "published"}),
            "plan.updated",
            "plan",
            Some(pid),
        ),
        "/admin/plans/{id}/limits" => post(
            format!("/admin/plans/{pid}/limits"),
            json!({"metric": "hits", "period": "hour", "value": "500"}),
            "plan.updated",
            "plan",
            Some(pid),
        ),
        "/admin/plans/{id}/pricing_rules" => post(
            format!("/admin/plans/{pid}/pricing_rules"),
            json!({"rule_metric": "forecast", "model": "graduated", "from": "1", "to": "",
                   "unit_price": "0.01"}),
            "plan.updated",
            "plan",
            Some(pid),
        ),
        "/admin/plans/{id}/{kind}/{index}/remove" => post(
            format!("/admin/plans/{pid}/limits/0/remove"),
            json!({}),
            "plan.updated",
            "plan",
            Some(pid),
        ),
        "/admin/accounts" => post(
            route.into(),
            json!({"name": "Portal", "email": "portal@example.com"}),
            "account.created",
            "account",
            None,
        ),
        "/admin/accounts/{id}/applications" => post(
            format!("/admin/accounts/{aid}/applications"),
            json!({"name": "From the portal", "plan_id": pid}),
            "application.created",
            "application",
            None,
        ),
        "/admin/applications/{id}/{action}" => {
            let a = c.application(app, "Portal").await;
            let id = s(&a, "id");
            if variant == "resume" {
                api.ok("POST", &format!("/applications/{id}/suspend"), None)
                    .await;
            }
            let action = match variant {
                "suspend" => "application.suspended",
                _ => "application.resumed",
            };
            let path = format!("/admin/applications/{id}/{variant}");
            post(path, json!({}), action, "application", Some(id))
        }
        "/admin/plans/{id}/alert_thresholds"
        | "/admin/plans/{id}/alert_thresholds/reset"
        | "/admin/applications/{id}/alert_thresholds"
        | "/admin/applications/{id}/alert_thresholds/reset" => {
            let (id, kind) = if route.starts_with("/admin/plans/") {
                (pid.to_string(), "plan_alert_thresholds")
            } else {
                let a = c.application(app, "Alerted").await;
                (s(&a, "id").to_string(), "application_alert_thresholds")
            };
            let path = route.replace("{id}", &id);
            if route.ends_with("/reset") {
                // A set of its own first, so that the reset changes something.
                let own = path.trim_start_matches("/admin").trim_end_matches("/reset");
                api.ok("PUT", own, Some(json!({"thresholds": [50, 75]})))
                    .await;
                post(path, json!({}), &format!("{kind}.reset"), kind, Some(&id))
            } else {
                let action = format!("{kind}.updated");
                post(
                    path,
                    json!({"thresholds": "50, 75"}),
                    &action,
                    kind,
                    Some(&id),
                )
            }
        }
        "/admin/tokens" => post(
            route.into(),
            json!({"name": "portal-made", "scope": "read"}),
            "admin_token.created",
            "admin_token",
            None,
        ),
        "/admin/tokens/{id}/revoke" => {
            let t = api
                .create("/tokens", json!({"name": "old", "scope": "read"}))
                .await;
            let id = s(&t, "id");
            let path = format!("/admin/tokens/{id}/revoke");
            post(
                path,
                json!({}),
                "admin_token.revoked",
                "admin_token",
                Some(id),
            )
        }
        "/admin/gateway" => post(
            route.into(),
            json!({"type": "stripe", "stripe.secret_key": "sk_test_portal0123456789",
                   "stripe.publishable_key": "pk_test_portal",
                   "stripe.webhook_secret": "whsec_portal0123456789"}),
            "payment_gateway.updated",
            "payment_gateway",
            Some("payment_gateway"),
        ),
        "/admin/webhooks" => post(
            route.into(),
            json!({"url": HOOK, "events": "invoice.paid"}),
            "webhook_endpoint.created",
            "webhook_endpoint",
            None,
        ),
        "/admin/webhooks/{id}/{action}" => {
            let id = webhook(app).await;
            if variant == "enable" {
                api.ok(
                    "PATCH",
                    &format!("/webhook_endpoints/{id}"),
                    Some(json!({"enabled": false})),
                )
                .await;
            }
            let action = match variant {
                "disable" => "webhook_endpoint.disabled",
                "enable" => "webhook_endpoint.enabled",
                "test" => "webhook_endpoint.test_sent",
                _ => "webhook_endpoint.deleted",
            };
            let path = format!("/admin/webhooks/{id}/{variant}");
            post(path, json!({}), action, "webhook_endpoint", Some(&id))
        }
        "/admin/webhook_deliveries/{id}/replay" => {
            let ep = webhook(app).await;
            let d = api
                .create(&format!("/webhook_endpoints/{ep}/test"), json!({}))
                .await;
            let id = s(&d, "id");
            let path = format!("/admin/webhook_deliveries/{id}/replay");
            let action = "webhook_delivery.replayed";
            post(path, json!({}), action, "webhook_delivery", Some(id))
        }
        _ => return None,
    })
}

#[tokio::test]
async fn every_admin_portal_form_post_records_exactly_one_session_event() {
    let probe = TestApp::new().await;
    let posts: Vec<String> = route_table(&probe)
        .into_iter()
        .filter(|(m, p)| m == "post" && p.starts_with("/admin") && !p.starts_with("/admin/api/"))
        .map(|(_, p)| p)
        .collect();
    assert!(posts.len() >= 20, "the portal lost its forms: {posts:?}");
    let mut failures = Vec::new();
    for route in &posts {
        if EXEMPT_PORTAL_POSTS.iter().any(|(p, _)| p == route) {
            continue;
        }
        let cases = portal_cases(route).await;
        if cases.is_empty() {
            failures.push(format!(
                "POST {route}: no audit case: record an event in its writer and add a case to \
                 portal_case (or add the route to EXEMPT_PORTAL_POSTS, saying why)"
            ));
        }
        for (app, token_id, token, c) in &cases {
            let browser = Browser::sign_in(app, token).await;
            let name = format!("POST {route} ({})", c.path);
            let actor = ("session", token_id.as_str());
            let send = || browser.post(&c.path, c.body.as_ref());
            if let Err(e) = check(app, &name, c, actor, send).await {
                failures.push(e);
            }
        }
    }
    for (p, _) in EXEMPT_PORTAL_POSTS {
        assert!(
            posts.iter().any(|route| route == p),
            "EXEMPT_PORTAL_POSTS names {p}, which the portal does not have"
        );
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

async fn event_count(app: &TestApp) -> usize {
    app.column("SELECT id FROM audit_events").await.len()
}

/// Refusals before the write (invalid input, a missing object) and inside its transaction, after
/// the before image was read (a state that does not allow it, a conflict): no event, since the
/// event is written in the write's own transaction.
#[tokio::test]
async fn refused_writes_record_nothing() {
    let (app, _, token) = control_plane().await;
    let c = Catalog::new(&app).await;
    let a = c.application(&app, "Refused").await;
    let (pid, aid, app_id) = (c.plan_id(), c.account_id(), s(&a, "id"));
    let open = s(&open_invoice(&app, aid, true).await, "id").to_string();
    app.admin()
        .ok("POST", &format!("/invoices/{open}/finalize"), None)
        .await;
    let issued = issued_invoice(&app, aid).await;
    let ep = webhook(&app).await;
    app.admin()
        .ok(
            "POST",
            &format!("/applications/{app_id}/customize_plan"),
            None,
        )
        .await;
    let before = event_count(&app).await;
    let api = app.client(ADMIN_API, Some(&token));
    let refusals = [
        // Invalid input.
        (
            api.put(
                &format!("/plans/{pid}/alert_thresholds"),
                json!({"thresholds": [0]}),
            )
            .await,
            422,
        ),
        (
            api.put("/billing/gateway", json!({"type": "stripe"})).await,
            422,
        ),
        (
            api.post(
                "/webhook_endpoints",
                json!({"url": "http://10.0.0.1/x", "events": ["invoice.paid"]}),
            )
            .await,
            422,
        ),
        (
            api.patch(
                &format!("/webhook_endpoints/{ep}"),
                json!({"events": ["nope"]}),
            )
            .await,
            422,
        ),
        // Missing objects.
        (
            api.patch("/webhook_endpoints/we_nope", json!({"description": "x"}))
                .await,
            404,
        ),
        (
            api.delete(&format!("/accounts/{aid}/tokens/atok_nope"))
                .await,
            404,
        ),
        (
            api.delete("/applications/app_nope/alert_thresholds").await,
            404,
        ),
        (
            api.request("POST", "/invoices/inv_nope/finalize", None, &[])
                .await,
            404,
        ),
        // Refused inside the transaction, after the before image was read.
        (
            api.post(
                &format!("/invoices/{open}/lines"),
                json!({"description": "late", "unit_price": "1"}),
            )
            .await,
            409,
        ),
        (
            api.request("POST", &format!("/invoices/{issued}/issue"), None, &[])
                .await,
            409,
        ),
        (
            api.post(
                &format!("/invoices/{issued}/credit_notes"),
                json!({"amount": "1000", "reason": "too much"}),
            )
            .await,
            422,
        ),
        (
            api.request(
                "POST",
                &format!("/applications/{app_id}/customize_plan"),
                None,
                &[],
            )
            .await,
            409,
        ),
        // No gateway: refused before the charge is claimed.
        (
            api.request("POST", &format!("/invoices/{issued}/charge"), None, &[])
                .await,
            409,
        ),
    ];
    for (i, (r, status)) in refusals.iter().enumerate() {
        assert_eq!(r.status.as_u16(), *status, "refusal {i}: {}", r.text());
    }
    assert_eq!(event_count(&app).await, before, "{:#?}", events(&app).await);
}

/// Tokens, keys, app keys, gateway credentials and webhook secrets, created and rotated: none of
/// them is anywhere in the audit log, and the events say that a secret changed by name only.
#[tokio::test]
async fn no_secret_reaches_the_audit_log() {
    let (app, _, token) = control_plane().await;
    let api = app.client(ADMIN_API, Some(&token));
    let c = Catalog::new(&app).await;
    let mut secrets = vec![ADMIN_TOKEN.to_string(), token.clone()];
    let made = api
        .create("/tokens", json!({"name": "t", "scope": "read"}))
        .await;
    secrets.push(s(&made, "token").into());
    let made = api
        .create(
            "/gateway_tokens",
            json!({"name": "g", "service_ids": [c.service_id()]}),
        )
        .await;
    secrets.push(s(&made, "token").into());
    let made = api
        .create(&format!("/accounts/{}/tokens", c.account_id()), json!({}))
        .await;
    secrets.push(s(&made, "token").into());
    let a = c.application(&app, "Secretive").await;
    let id = s(&a, "id");
    secrets.push(s(&a, "key").into());
    let rotated = api
        .ok(
            "POST",
            &format!("/applications/{id}/keys/{}/rotate", s(&a, "key_id")),
            Some(json!({})),
        )
        .await;
    secrets.push(s(&rotated, "key").into());
    let imported = "imported-key-for-the-audit-test-01";
    api.create(
        &format!("/applications/{id}/keys"),
        json!({"key": imported}),
    )
    .await;
    secrets.push(imported.into());
    api.ok(
        "PATCH",
        &format!("/applications/{id}"),
        Some(json!({"app_id": "secretive"})),
    )
    .await;
    let app_key = "app-key-for-the-audit-test-0001";
    api.create(
        &format!("/applications/{id}/app_keys"),
        json!({"value": app_key}),
    )
    .await;
    secrets.push(app_key.into());
    let stripe = json!({"type": "stripe", "secret_key": "sk_test_auditSECRET0123456789",
                        "publishable_key": "pk_test_audit", "webhook_secret": "whsec_auditSECRET0123456789"});
    api.ok("PUT", "/billing/gateway", Some(stripe.clone()))
        .await;
    let braintree = json!({"type": "braintree", "merchant_id": "merchant", "public_key": "pubAUDIT0123456789",
                           "private_key": "privAUDIT0123456789", "environment": "sandbox",
                           "merchant_accounts": {"USD": "usd_account"}});
    api.ok("PUT", "/billing/gateway", Some(braintree.clone()))
        .await;
    for (body, field) in [
        (&stripe, "secret_key"),
        (&stripe, "webhook_secret"),
        (&braintree, "public_key"),
        (&braintree, "private_key"),
    ] {
        secrets.push(s(body, field).into());
    }
    let ep = api
        .create(
            "/webhook_endpoints",
            json!({"url": HOOK, "events": ["invoice.paid"]}),
        )
        .await;
    secrets.push(s(&ep, "secret").into());
    let rotated = api
        .ok(
            "POST",
            &format!("/webhook_endpoints/{}/rotate_secret", s(&ep, "id")),
            Some(json!({})),
        )
        .await;
    secrets.push(s(&rotated, "secret").into());

    let all = events(&app).await;
    let log = serde_json::to_string(&all).unwrap();
    for secret in &secrets {
        // The whole secret, and its tail (a prefix or suffix cut off would still leak the rest).
        let tail = &secret[secret.len() - 12..];
        assert!(
            !log.contains(secret.as_str()) && !log.contains(tail),
            "a secret ({}...) is in the audit log",
            &secret[..6]
        );
    }
    // That they changed is recorded, by name.
    let gateway: Vec<&Value> = all
        .iter()
        .filter(|e| e["action"] == "payment_gateway.updated")
        .collect();
    assert_eq!(gateway.len(), 2, "{gateway:?}");
    assert_eq!(
        gateway[0]["changes"]["secret_key"],
        json!({"before": null, "after": "[redacted]"})
    );
    assert_eq!(
        gateway[1]["changes"]["private_key"],
        json!({"before": null, "after": "[redacted]"})
    );
    assert_eq!(
        gateway[1]["changes"]["secret_key"],
        json!({"before": "[redacted]", "after": null})
    );
    let rotation = all
        .iter()
        .find(|e| e["action"] == "webhook_endpoint.secret_rotated")
        .unwrap();
    assert_eq!(
        rotation["changes"]["secret"],
        json!({"before": "[redacted]", "after": "[redacted]"})
    );
}

/// The story of the brief: a portal price change, with the before and after, the session's token
/// and the client address.
#[tokio::test]
async fn a_portal_price_change_is_recorded_with_before_and_after() {
    let (app, token_id, token) = control_plane().await;
    let c = Catalog::new(&app).await;
    let pid = c.plan_id();
    let browser = Browser::sign_in(&app, &token).await;
    let r = browser
        .post(
            &format!("/admin/plans/{pid}"),
            Some(
                &json!({"name": "Basic", "fixed_fee": "12.50", "setup_fee": "5",
                         "trial_days": "14", "state": "published"}),
            ),
        )
        .await;
    assert!(r.text().contains("Plan saved."), "{}", r.text());
    let all = events(&app).await;
    let [e] = all
        .iter()
        .filter(|e| e["action"] == "plan.updated")
        .collect::<Vec<_>>()[..]
    else {
        panic!("one plan.updated event: {all:#?}");
    };
    assert_eq!(
        (&e["actor_type"], &e["actor_id"], &e["ip"], &e["object_id"]),
        (
            &json!("session"),
            &json!(token_id),
            &json!(PEER_IP),
            &json!(pid)
        )
    );
    assert_eq!(
        e["changes"],
        json!({"fixed_fee": {"before": "10.00", "after": "12.50"}}),
        "only what changed"
    );
}

/// A developer's own webhook endpoints are its configuration: written through the developer API
/// (without a limit), they leave no event; an admin's write of the same endpoint does.
#[tokio::test]
async fn an_accounts_own_webhook_writes_are_not_recorded() {
    let (app, _, _) = control_plane().await;
    let c = Catalog::new(&app).await;
    let tok = app
        .admin()
        .create(&format!("/accounts/{}/tokens", c.account_id()), json!({}))
        .await;
    let dev = app.client("/api/v1", Some(s(&tok, "token")));
    let before = event_count(&app).await;
    let ep = dev
        .create(
            "/webhook_endpoints",
            json!({"url": HOOK, "events": ["invoice.paid"]}),
        )
        .await;
    let id = s(&ep, "id");
    for _ in 0..3 {
        dev.ok(
            "PATCH",
            &format!("/webhook_endpoints/{id}"),
            Some(json!({"description": "x"})),
        )
        .await;
    }
    dev.ok("DELETE", &format!("/webhook_endpoints/{id}"), None)
        .await;
    assert_eq!(event_count(&app).await, before);
    let ep = dev
        .create(
            "/webhook_endpoints",
            json!({"url": HOOK, "events": ["invoice.paid"]}),
        )
        .await;
    let id = s(&ep, "id");
    app.admin()
        .ok(
            "PATCH",
            &format!("/webhook_endpoints/{id}"),
            Some(json!({"enabled": false})),
        )
        .await;
    let all = events(&app).await;
    assert_eq!(all.len(), before + 1);
    assert_eq!(all[before]["action"], "webhook_endpoint.disabled");
}
