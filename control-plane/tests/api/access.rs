//! Who may call what, route by route from `/openapi.json` (a new route is covered the day it is
//! documented): every admin route refuses developer, gateway, revoked, expired and missing tokens
//! (401) and writes with a read token (403); every gateway route refuses every other kind of token;
//! a developer reaching for another account's objects gets 404 and nothing of them. A refused
//! request changes nothing.

use serde_json::{json, Value};

use crate::support::{s, Catalog, TestApp, ADMIN_API};

const FAKE_ID: &str = "zz_00000000000000000000000000";

/// (METHOD, path) of every documented operation whose path starts with `prefix`.
async fn routes(app: &TestApp, prefix: &str) -> Vec<(String, String)> {
    let doc = app.client("", None).get("/openapi.json").await.json();
    let mut out = Vec::new();
    for (path, ops) in doc["paths"].as_object().unwrap() {
        if let Some(rest) = path.strip_prefix(prefix) {
            for method in ops.as_object().unwrap().keys() {
                out.push((method.to_uppercase(), rest.to_string()));
            }
        }
    }
    assert!(!out.is_empty(), "no routes under {prefix}");
    out
}

/// `path` with `{id}` replaced by `id` and every other parameter by an id that does not exist.
fn fill(path: &str, id: &str) -> String {
    path.split('/')
        .map(|seg| match seg {
            "{id}" => id,
            s if s.starts_with('{') => FAKE_ID,
            s => s,
        })
        .collect::<Vec<_>>()
        .join("/")
}

fn body_for(method: &str) -> Option<Value> {
    matches!(method, "POST" | "PUT" | "PATCH").then(|| json!({}))
}

#[tokio::test]
async fn admin_routes_refuse_every_other_kind_of_token() {
    let app = TestApp::new().await;
    let api = app.admin();
    let c = Catalog::new(&app).await;
    c.application(&app, "App").await;
    let gateway = api
        .create(
            "/gateway_tokens",
            json!({"name": "edge", "service_ids": [c.service_id()]}),
        )
        .await;
    let reader = api
        .create("/tokens", json!({"name": "auditor", "scope": "read"}))
        .await;
    let revoked = api
        .create("/tokens", json!({"name": "gone", "scope": "write"}))
        .await;
    api.ok("DELETE", &format!("/tokens/{}", s(&revoked, "id")), None)
        .await;
    let expired = api
        .create(
            "/tokens",
            json!({"name": "old", "scope": "write", "expires_in_days": 1}),
        )
        .await;
    app.sql(&format!(
        "UPDATE admin_tokens SET expires_at = 1 WHERE id = '{}'",
        s(&expired, "id")
    ))
    .await;
    let developer = api
        .create(&format!("/accounts/{}/tokens", c.account_id()), json!({}))
        .await;
    let refused: [(&str, Option<&str>); 6] = [
        ("developer", Some(s(&developer, "token"))),
        ("gateway", Some(s(&gateway, "token"))),
        ("revoked", Some(s(&revoked, "token"))),
        ("expired", Some(s(&expired, "token"))),
        ("none", None),
        ("garbage", Some("tg_not_a_token")),
    ];
    let before = app.row_counts().await;
    let read_only = app.client(ADMIN_API, Some(s(&reader, "token")));
    for (method, path) in routes(&app, ADMIN_API).await {
        let url = fill(&path, c.account_id());
        let body = body_for(&method);
        for (kind, token) in refused {
            let r = app
                .client(ADMIN_API, token)
                .request(&method, &url, body.as_ref(), &[])
                .await;
            assert_eq!(r.status, 401, "{kind} token: {method} {url}: {}", r.text());
            r.error(401, "unauthorized");
        }
        let r = read_only.request(&method, &url, body.as_ref(), &[]).await;
        if method == "GET" {
            // Accepted (a route with a required query parameter, such as the usage export's
            // `since`, answers 400 missing_parameter: past authentication all the same).
            let status = r.status.as_u16();
            assert!(
                [200, 404].contains(&status)
                    || (status == 400 && r.text().contains("\"missing_parameter\"")),
                "{method} {url}: {} {}",
                r.status,
                r.text()
            );
        } else {
            r.error(403, "insufficient_scope");
        }
    }
    assert_eq!(
        app.row_counts().await,
        before,
        "a refused request changed something"
    );
}

#[tokio::test]
async fn gateway_routes_take_gateway_tokens_only() {
    let app = TestApp::new().await;
    let api = app.admin();
    let c = Catalog::new(&app).await;
    let reader = api
        .create("/tokens", json!({"name": "auditor", "scope": "read"}))
        .await;
    let developer = api
        .create(&format!("/accounts/{}/tokens", c.account_id()), json!({}))
        .await;
    let before = app.row_counts().await;
    for (method, path) in routes(&app, "/gateway/v1").await {
        let mut url = fill(&path, c.service_id());
        if url.ends_with("global_usage") {
            url.push_str("?instance=i");
        }
        for token in [
            crate::support::ADMIN_TOKEN,
            s(&reader, "token"),
            s(&developer, "token"),
        ] {
            app.client("/gateway/v1", Some(token))
                .request(&method, &url, body_for(&method).as_ref(), &[])
                .await
                .error(401, "unauthorized");
        }
    }
    assert_eq!(app.row_counts().await, before);
}

#[tokio::test]
async fn developers_touch_only_their_own_account() {
    let app = TestApp::new().await;
    let api = app.admin();
    let alice = api
        .create(
            "/accounts",
            json!({"name": "Alice", "email": "alice@example.com"}),
        )
        .await;
    let bob = api
        .create(
            "/accounts",
            json!({"name": "Bob", "email": "bob@example.com"}),
        )
        .await;
    let bob_token = api
        .create(&format!("/accounts/{}/tokens", s(&bob, "id")), json!({}))
        .await;
    let inv = api
        .create("/invoices", json!({"account_id": alice["id"]}))
        .await;
    api.create(
        &format!("/invoices/{}/lines", s(&inv, "id")),
        json!({"description": "Usage", "unit_price": "10"}),
    )
    .await;
    let inv = api
        .ok("POST", &format!("/invoices/{}/issue", s(&inv, "id")), None)
        .await;
    let secrets = [s(&alice, "id"), s(&inv, "number"), "Alice", "alice@"];
    let dev_b = app.client("/api/v1", Some(s(&bob_token, "token")));
    let before = app.row_counts().await;
    for (method, path) in routes(&app, "/api/v1").await {
        let url = fill(&path, s(&inv, "id"));
        let r = dev_b
            .request(&method, &url, body_for(&method).as_ref(), &[])
            .await;
        let status = r.status.as_u16();
        if path.contains("/payment_methods") {
            // No gateway is configured: refused before any card is looked up.
            assert!(
                [404, 409, 422].contains(&status),
                "{method} {url}: {status} {}",
                r.text()
            );
        } else if path.contains('{') {
            r.error(404, "resource_missing");
        } else if method == "POST" && path == "/webhook_endpoints" {
            // Creates the caller's own endpoint: an empty body is invalid, and nothing of
            // another account's is involved.
            r.error_at(422, "missing_field", "url");
        } else {
            assert!(status < 300, "{method} {url}: {status} {}", r.text());
        }
        let text = r.text();
        // The id the caller sent may be echoed back ("no invoice with id ..."); nothing else.
        let leaked: Vec<&str> = secrets
            .iter()
            .copied()
            .filter(|secret| text.contains(secret) && !url.contains(secret))
            .collect();
        assert!(
            leaked.is_empty(),
            "{method} {url} leaked {leaked:?}: {text}"
        );
    }
    assert_eq!(
        app.row_counts().await,
        before,
        "another account's request changed something"
    );
}
