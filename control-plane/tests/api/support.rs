//! The harness: one control plane per test, its router over a fresh in-memory SQLite database
//! (migrated), called in-process with `tower::ServiceExt::oneshot`. No socket, no Envoy, no
//! PostgreSQL: what `tollgate serve` would answer, in milliseconds.

use std::collections::BTreeMap;

use axum::body::{to_bytes, Body, Bytes};
use axum::http::{HeaderMap, Method, Request, StatusCode};
use axum::Router;
use serde_json::{json, Value};
use tower::ServiceExt;

use tollgate_control_plane::http::router;
use tollgate_control_plane::secrets::sha256_hex;
use tollgate_control_plane::state::AppState;
use tollgate_control_plane::store;

/// The bootstrap admin token (`TOLLGATE_ADMIN_TOKEN`) every test control plane starts with.
pub const ADMIN_TOKEN: &str = "test-admin-token-0123456789abcdef0123456789abcdef";

pub const ADMIN_API: &str = "/admin/api/v1";

/// One control plane: its state (the pool, for looking at what was stored) and its router.
pub struct TestApp {
    pub state: AppState,
    router: Router,
}

impl TestApp {
    pub async fn new() -> TestApp {
        TestApp::with_metrics_token(None).await
    }

    /// A control plane whose `/metrics` takes `token` (`None`: metrics are off, as by default).
    pub async fn with_metrics_token(token: Option<&str>) -> TestApp {
        let pool = store::connect_in_memory()
            .await
            .expect("in-memory database");
        store::migrate(&pool).await.expect("migrations");
        let state =
            AppState::new(pool, Some(sha256_hex(ADMIN_TOKEN).into())).with_metrics_token(token);
        TestApp {
            router: router(state.clone()),
            state,
        }
    }

    /// A control plane whose state holds a master key (`TOLLGATE_MASTER_KEY`), for secrets sealed
    /// at rest (webhook endpoints).
    pub async fn with_master_key() -> TestApp {
        let app = TestApp::new().await;
        let state = app
            .state
            .with_master_key(Some(tollgate_control_plane::secrets::derive_key(
                "test",
                b"an in-process test master key",
            )));
        TestApp {
            router: router(state.clone()),
            state,
        }
    }

    /// The admin API with the bootstrap token.
    pub fn admin(&self) -> Client<'_> {
        self.client(ADMIN_API, Some(ADMIN_TOKEN))
    }

    /// Requests under `base` (`""`, `/api/v1`, `/gateway/v1`, ...) with `token` as the Bearer token.
    pub fn client<'a>(&'a self, base: &str, token: Option<&str>) -> Client<'a> {
        Client {
            app: self,
            base: base.to_string(),
            token: token.map(str::to_string),
        }
    }

    pub async fn send(&self, req: Request<Body>) -> Reply {
        let response = self
            .router
            .clone()
            .oneshot(req)
            .await
            .expect("the router is infallible");
        let (parts, body) = response.into_parts();
        let body = to_bytes(body, usize::MAX).await.expect("response body");
        Reply {
            status: parts.status,
            headers: parts.headers,
            body,
        }
    }

    /// Row counts of every table but `idempotency_keys` (a request with a key stores its answer,
    /// refusals included): what a refused request must leave as it was.
    pub async fn row_counts(&self) -> BTreeMap<String, i64> {
        let tables: Vec<(String,)> = sqlx::query_as(
            "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%' ORDER BY name",
        )
        .fetch_all(&self.state.pool)
        .await
        .unwrap();
        let mut counts = BTreeMap::new();
        for (table,) in tables {
            if table == "idempotency_keys" {
                continue;
            }
            let (n,): (i64,) = sqlx::query_as(&format!("SELECT COUNT(*) FROM {table}"))
                .fetch_one(&self.state.pool)
                .await
                .unwrap();
            counts.insert(table, n);
        }
        counts
    }

    /// Runs a statement on the database directly (to age a token, to look at what was stored).
    pub async fn sql(&self, statement: &str) {
        sqlx::query(statement)
            .execute(&self.state.pool)
            .await
            .unwrap();
    }

    /// The first column of every row of `query`, as text.
    pub async fn column(&self, query: &str) -> Vec<String> {
        let rows: Vec<(String,)> = sqlx::query_as(query)
            .fetch_all(&self.state.pool)
            .await
            .unwrap();
        rows.into_iter().map(|(v,)| v).collect()
    }
}

/// Requests to one part of the API with one token.
pub struct Client<'a> {
    app: &'a TestApp,
    base: String,
    token: Option<String>,
}

impl Client<'_> {
    /// A request with a JSON body (`None`: no body) and extra headers.
    pub async fn request(
        &self,
        method: &str,
        path: &str,
        body: Option<&Value>,
        headers: &[(&str, &str)],
    ) -> Reply {
        let bytes = body.map(|b| serde_json::to_vec(b).unwrap());
        self.raw(method, path, bytes, headers).await
    }

    /// A request with a body of any bytes (malformed JSON, oversized bodies).
    pub async fn raw(
        &self,
        method: &str,
        path: &str,
        body: Option<Vec<u8>>,
        headers: &[(&str, &str)],
    ) -> Reply {
        let mut req = Request::builder()
            .method(Method::from_bytes(method.as_bytes()).unwrap())
            .uri(format!("{}{path}", self.base));
        if let Some(token) = &self.token {
            req = req.header("authorization", format!("Bearer {token}"));
        }
        if body.is_some() {
            req = req.header("content-type", "application/json");
        }
        for (name, value) in headers {
            req = req.header(*name, *value);
        }
        let req = req.body(body.map_or_else(Body::empty, Body::from)).unwrap();
        self.app.send(req).await
    }

    pub async fn get(&self, path: &str) -> Reply {
        self.request("GET", path, None, &[]).await
    }

    pub async fn post(&self, path: &str, body: Value) -> Reply {
        self.request("POST", path, Some(&body), &[]).await
    }

    pub async fn patch(&self, path: &str, body: Value) -> Reply {
        self.request("PATCH", path, Some(&body), &[]).await
    }

    pub async fn put(&self, path: &str, body: Value) -> Reply {
        self.request("PUT", path, Some(&body), &[]).await
    }

    pub async fn delete(&self, path: &str) -> Reply {
        self.request("DELETE", path, None, &[]).await
    }

    /// `method path` answered 200 or 201 (as a create, action or read answers); its JSON.
    #[track_caller]
    pub fn ok<'s>(
        &'s self,
        method: &'s str,
        path: &'s str,
        body: Option<Value>,
    ) -> impl std::future::Future<Output = Value> + 's {
        let caller = std::panic::Location::caller();
        async move {
            let r = self.request(method, path, body.as_ref(), &[]).await;
            assert!(
                r.status == StatusCode::OK || r.status == StatusCode::CREATED,
                "{method} {path} answered {} {} (called at {caller})",
                r.status,
                r.text()
            );
            r.json()
        }
    }

    /// `POST path` answered 201; the created object.
    #[track_caller]
    pub fn create<'s>(
        &'s self,
        path: &'s str,
        body: Value,
    ) -> impl std::future::Future<Output = Value> + 's {
        let caller = std::panic::Location::caller();
        async move {
            let r = self.post(path, body).await;
            assert_eq!(
                r.status,
                StatusCode::CREATED,
                "POST {path}: {} (called at {caller})",
                r.text()
            );
            r.json()
        }
    }

    /// Every item of a list route, walked page by page with `limit`.
    pub async fn walk(&self, path: &str, limit: usize) -> Vec<Value> {
        let sep = if path.contains('?') { '&' } else { '?' };
        let mut items = Vec::new();
        let mut cursor: Option<String> = None;
        for _ in 0..1_000 {
            let page_path = match &cursor {
                Some(c) => format!("{path}{sep}limit={limit}&starting_after={c}"),
                None => format!("{path}{sep}limit={limit}"),
            };
            let page = self.ok("GET", &page_path, None).await;
            assert_eq!(page["object"], "list");
            let data = page["data"].as_array().unwrap();
            assert!(data.len() <= limit, "{page}");
            items.extend(data.iter().cloned());
            if page["has_more"] == json!(false) {
                assert_eq!(page["next_cursor"], Value::Null);
                return items;
            }
            assert_eq!(data.len(), limit, "a page before the last is full");
            cursor = Some(page["next_cursor"].as_str().unwrap().to_string());
        }
        panic!("{path}: more than 1,000 pages");
    }
}

/// An answer: status, headers, body.
pub struct Reply {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl Reply {
    #[track_caller]
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {} {}", self.status, self.text()))
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// The API's error object with `status` and `code`: exactly `type`, `code`, `message` (not
    /// empty) and `param`. Returns the error object.
    #[track_caller]
    pub fn error(&self, status: u16, code: &str) -> Value {
        assert_eq!(self.status.as_u16(), status, "{}", self.text());
        let body = self.json();
        let err = &body["error"];
        let mut fields: Vec<&str> = err
            .as_object()
            .unwrap_or_else(|| panic!("no error object: {body}"))
            .keys()
            .map(String::as_str)
            .collect();
        fields.sort_unstable();
        assert_eq!(fields, ["code", "message", "param", "type"], "{body}");
        assert_eq!(err["code"], code, "{body}");
        assert!(
            err["message"].as_str().is_some_and(|m| !m.is_empty()),
            "{body}"
        );
        err.clone()
    }

    /// [`Reply::error`] naming the offending field in `param`.
    #[track_caller]
    pub fn error_at(&self, status: u16, code: &str, param: &str) -> Value {
        let err = self.error(status, code);
        assert_eq!(err["param"], param, "{err}");
        err
    }
}

/// A service (with a `forecast` metric under `hits`), a published plan with limits and prices, and
/// an account: the usual starting point (the pytest suite's `catalog` fixture).
pub struct Catalog {
    pub service: Value,
    pub plan: Value,
    pub account: Value,
}

impl Catalog {
    pub async fn new(app: &TestApp) -> Catalog {
        let api = app.admin();
        let service = api
            .create("/services", json!({"name": "Weather API"}))
            .await;
        let sid = service["id"].as_str().unwrap();
        api.create(
            &format!("/services/{sid}/metrics"),
            json!({"name": "forecast", "unit": "call", "parent": "hits"}),
        )
        .await;
        let plan = api
            .create(
                "/plans",
                json!({
                    "service_id": sid, "name": "Basic", "setup_fee": "5", "fixed_fee": "10.00",
                    "trial_days": 14, "state": "published",
                    "limits": [{"metric": "hits", "period": "minute", "value": 100},
                               {"metric": "forecast", "period": "day", "value": 1000}],
                    "pricing_rules": [
                        {"metric": "hits", "from": 1, "to": 1000, "unit_price": "0.0001"},
                        {"metric": "hits", "from": 1001, "to": null, "unit_price": "0.00005"}]
                }),
            )
            .await;
        let account = api
            .create(
                "/accounts",
                json!({"name": "Acme", "email": "dev@acme.example", "vat_rate": "19",
                       "billing_address": {"line1": "1 Main St", "city": "Berlin", "country": "DE"}}),
            )
            .await;
        Catalog {
            service,
            plan,
            account,
        }
    }

    pub fn service_id(&self) -> &str {
        self.service["id"].as_str().unwrap()
    }

    pub fn plan_id(&self) -> &str {
        self.plan["id"].as_str().unwrap()
    }

    pub fn account_id(&self) -> &str {
        self.account["id"].as_str().unwrap()
    }

    /// A new application of the account on the plan (with its first key).
    pub async fn application(&self, app: &TestApp, name: &str) -> Value {
        app.admin()
            .create(
                "/applications",
                json!({"account_id": self.account_id(), "plan_id": self.plan_id(), "name": name}),
            )
            .await
    }
}

/// The gateway snapshot of `service_id` (through a new gateway token scoped to it), without its
/// version.
pub async fn snapshot_of(app: &TestApp, service_id: &str) -> Value {
    let token = app
        .admin()
        .create(
            "/gateway_tokens",
            json!({"name": "edge", "service_ids": [service_id]}),
        )
        .await;
    let mut snap = app
        .client("/gateway/v1", Some(s(&token, "token")))
        .ok("GET", &format!("/services/{service_id}/snapshot"), None)
        .await;
    snap.as_object_mut().unwrap().remove("version");
    snap
}

/// `v[field]` as a `&str` (ids, keys, tokens).
#[track_caller]
pub fn s<'v>(v: &'v Value, field: &str) -> &'v str {
    v[field]
        .as_str()
        .unwrap_or_else(|| panic!("no string {field:?} in {v}"))
}

/// Runs the futures concurrently on this task (requests racing each other) and returns their
/// outputs in order; `futures::join_all` without the dependency.
pub async fn join_all<F: std::future::Future>(futures: impl Iterator<Item = F>) -> Vec<F::Output> {
    let mut set = Vec::new();
    for f in futures {
        set.push(Box::pin(f));
    }
    let mut out: Vec<Option<F::Output>> = set.iter().map(|_| None).collect();
    std::future::poll_fn(|cx| {
        let mut pending = false;
        for (f, slot) in set.iter_mut().zip(out.iter_mut()) {
            if slot.is_none() {
                match f.as_mut().poll(cx) {
                    std::task::Poll::Ready(v) => *slot = Some(v),
                    std::task::Poll::Pending => pending = true,
                }
            }
        }
        if pending {
            std::task::Poll::Pending
        } else {
            std::task::Poll::Ready(())
        }
    })
    .await;
    out.into_iter().map(Option::unwrap).collect()
}
