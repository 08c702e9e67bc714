//! What every route shares: health and the document, authentication and scopes, the error object
//! for unknown routes, unreadable bodies, oversized bodies and bad list parameters.

use serde_json::{json, Value};

use crate::support::{s, TestApp, ADMIN_API};

#[tokio::test]
async fn healthz_and_the_openapi_document_answer_without_a_token() {
    let app = TestApp::new().await;
    let anon = app.client("", None);
    let r = anon.get("/healthz").await;
    assert_eq!(
        (r.status.as_u16(), r.json()),
        (200, json!({"status": "ok"}))
    );
    let doc = anon.get("/openapi.json").await;
    assert_eq!(doc.status, 200);
    let doc = doc.json();
    assert!(s(&doc, "openapi").starts_with("3."), "{doc}");
    let operations: usize = doc["paths"]
        .as_object()
        .unwrap()
        .values()
        .map(|ops| ops.as_object().unwrap().len())
        .sum();
    assert!(operations >= 35, "{operations} operations documented");
}

#[tokio::test]
async fn every_documented_admin_route_exists() {
    let app = TestApp::new().await;
    let doc = app.client("", None).get("/openapi.json").await.json();
    let anon = app.client("", Some(crate::support::ADMIN_TOKEN));
    for (path, ops) in doc["paths"].as_object().unwrap() {
        for method in ops.as_object().unwrap().keys() {
            let concrete: String = path
                .split('/')
                .map(|seg| {
                    if seg.starts_with('{') {
                        "does-not-exist"
                    } else {
                        seg
                    }
                })
                .collect::<Vec<_>>()
                .join("/");
            let body = matches!(method.as_str(), "post" | "patch" | "put").then(|| json!({}));
            let r = anon
                .request(&method.to_uppercase(), &concrete, body.as_ref(), &[])
                .await;
            let code = serde_json::from_slice::<Value>(&r.body)
                .ok()
                .and_then(|b| b["error"]["code"].as_str().map(str::to_string));
            assert!(
                !matches!(
                    code.as_deref(),
                    Some("route_not_found" | "method_not_allowed")
                ),
                "{method} {path}: {} {}",
                r.status,
                r.text()
            );
        }
    }
}

#[tokio::test]
async fn unknown_routes_and_methods_are_the_error_object() {
    let app = TestApp::new().await;
    let api = app.admin();
    let err = api.get("/nope").await.error(404, "route_not_found");
    assert!(s(&err, "message").contains("/admin/api/v1/nope"), "{err}");
    api.put("/services", json!({}))
        .await
        .error(400, "method_not_allowed");
    app.client("", None)
        .get("/nowhere")
        .await
        .error(404, "route_not_found");
}

#[tokio::test]
async fn authentication_and_scopes() {
    let app = TestApp::new().await;
    let api = app.admin();
    let none = app.client(ADMIN_API, None).get("/services").await;
    let err = none.error(401, "unauthorized");
    assert_eq!(err["type"], "authentication_error");
    assert!(none
        .header("www-authenticate")
        .is_some_and(|h| h.starts_with("Bearer")));
    app.client(ADMIN_API, Some("wrong"))
        .get("/services")
        .await
        .error(401, "unauthorized");
    // Not `Bearer <token>`.
    app.client(ADMIN_API, None)
        .request(
            "GET",
            "/services",
            None,
            &[("authorization", "Basic YWRtaW46YWRtaW4=")],
        )
        .await
        .error(401, "unauthorized");

    let reader = api
        .create("/tokens", json!({"name": "dashboards", "scope": "read"}))
        .await;
    assert!(s(&reader, "token").starts_with("tga_"), "{reader}");
    assert_eq!(reader["scope"], "read");
    assert_eq!(reader["object"], "admin_token");
    let ro = app.client(ADMIN_API, Some(s(&reader, "token")));
    assert_eq!(ro.get("/services").await.status, 200);
    let before = app.row_counts().await;
    let err = ro
        .post("/services", json!({"name": "x"}))
        .await
        .error(403, "insufficient_scope");
    assert_eq!(err["type"], "permission_error");
    assert_eq!(
        app.row_counts().await,
        before,
        "the forbidden write wrote nothing"
    );

    // Tokens are stored hashed; a list never shows them.
    let stored = app.column("SELECT token_sha256 FROM admin_tokens").await;
    assert_eq!(
        stored,
        [tollgate_control_plane::secrets::sha256_hex(s(
            &reader, "token"
        ))]
    );
    let listed = api.ok("GET", "/tokens", None).await;
    let listed = listed["data"].as_array().unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0]["id"], reader["id"]);
    assert!(listed[0].get("token").is_none(), "{}", listed[0]);

    // Revoked: 401 from then on.
    let gone = api
        .ok("DELETE", &format!("/tokens/{}", s(&reader, "id")), None)
        .await;
    assert_eq!(
        gone,
        json!({"object": "admin_token", "id": reader["id"], "deleted": true})
    );
    ro.get("/services").await.error(401, "unauthorized");
    api.delete(&format!("/tokens/{}", s(&reader, "id")))
        .await
        .error_at(404, "resource_missing", "id");
}

#[tokio::test]
async fn expired_tokens_are_refused_and_expiry_is_bounded() {
    let app = TestApp::new().await;
    let api = app.admin();
    let t = api
        .create(
            "/tokens",
            json!({"name": "old", "scope": "write", "expires_in_days": 1}),
        )
        .await;
    let expires_at = t["expires_at"].as_i64().unwrap();
    assert!(
        expires_at > tollgate_control_plane::store::now() + 86_000,
        "{t}"
    );
    let client = app.client(ADMIN_API, Some(s(&t, "token")));
    assert_eq!(client.get("/services").await.status, 200);
    app.sql(&format!(
        "UPDATE admin_tokens SET expires_at = 1 WHERE id = '{}'",
        s(&t, "id")
    ))
    .await;
    let err = client.get("/services").await.error(401, "unauthorized");
    assert!(s(&err, "message").contains("expired"), "{err}");
    for bad in [0, -1, 3651] {
        api.post(
            "/tokens",
            json!({"name": "t", "scope": "read", "expires_in_days": bad}),
        )
        .await
        .error_at(422, "invalid_expiry", "expires_in_days");
    }
    api.post("/tokens", json!({"name": "t", "scope": "admin"}))
        .await
        .error_at(422, "invalid_scope", "scope");
}

#[tokio::test]
async fn malformed_json_is_400_and_writes_nothing() {
    let app = TestApp::new().await;
    let api = app.admin();
    let before = app.row_counts().await;
    let bodies: [&[u8]; 9] = [
        b"{not json",
        b"[]",
        b"null",
        b"\"x\"",
        b"{\"name\": }",
        b"\xff\xfe",
        b"{\"name\": \"a\", \"name\": \"b\"}",
        b"1e999999",
        b"{\"name\": \"x\", \"color\": \"red\"}",
    ];
    for body in bodies {
        let r = api.raw("POST", "/services", Some(body.to_vec()), &[]).await;
        let err = r.error(400, "invalid_json");
        assert_eq!(err["type"], "invalid_request_error", "{err}");
    }
    // Deeply nested: refused by the parser's recursion limit, not a crash.
    let deep = vec![b'{'; 10_000];
    api.raw("POST", "/services", Some(deep), &[])
        .await
        .error(400, "invalid_json");
    // A field of the wrong type is named.
    api.post("/services", json!({"name": 5}))
        .await
        .error_at(400, "invalid_json", "name");
    assert_eq!(app.row_counts().await, before);
}

#[tokio::test]
async fn bodies_over_one_mebibyte_are_413_and_write_nothing() {
    let app = TestApp::new().await;
    let api = app.admin();
    let before = app.row_counts().await;
    let huge =
        serde_json::to_vec(&json!({"name": "x", "description": "y".repeat(2 * 1024 * 1024)}))
            .unwrap();
    for (path, headers) in [
        ("/services", vec![]),
        ("/services", vec![("idempotency-key", "huge-1")]),
        ("/billing/runs", vec![]),
    ] {
        let err = api
            .raw("POST", path, Some(huge.clone()), &headers)
            .await
            .error(413, "body_too_large");
        assert!(s(&err, "message").contains("1048576"), "{err}");
    }
    assert_eq!(app.row_counts().await, before);
}

#[tokio::test]
async fn list_parameters_are_checked() {
    let app = TestApp::new().await;
    let api = app.admin();
    api.get("/services?limit=0")
        .await
        .error_at(400, "invalid_limit", "limit");
    api.get("/services?limit=101")
        .await
        .error_at(400, "invalid_limit", "limit");
    api.get("/services?limit=abc")
        .await
        .error(400, "invalid_query");
    api.get("/services?colour=red")
        .await
        .error(400, "invalid_query");
    let empty = api.ok("GET", "/services", None).await;
    assert_eq!(
        empty,
        json!({"object": "list", "data": [], "has_more": false, "next_cursor": null})
    );
}
