//! `Idempotency-Key` on POST: the same key and body get the same answer and create nothing new;
//! the same key with another body is refused; keys are scoped to the token that sent them; the
//! stored answer (which can hold a new API key) is not readable from the database.

use serde_json::json;

use crate::support::{join_all, s, Catalog, TestApp, ADMIN_API};

#[tokio::test]
async fn the_same_key_and_body_replay_the_first_answer() {
    let app = TestApp::new().await;
    let api = app.admin();
    let c = Catalog::new(&app).await;
    let body = json!({"account_id": c.account_id(), "plan_id": c.plan_id(), "name": "Once"});
    let key = [("idempotency-key", "create-once-1")];
    let first = api
        .request("POST", "/applications", Some(&body), &key)
        .await;
    let again = api
        .request("POST", "/applications", Some(&body), &key)
        .await;
    assert_eq!((first.status.as_u16(), again.status.as_u16()), (201, 201));
    assert_eq!(
        first.json(),
        again.json(),
        "the same answer, the API key included"
    );
    assert_eq!(again.header("idempotent-replayed"), Some("true"));
    assert_eq!(first.header("idempotent-replayed"), None);
    assert_eq!(again.header("content-type"), Some("application/json"));
    assert_eq!(api.walk("/applications", 100).await.len(), 1);
    // The stored answer holds the key: sealed, not readable from the database.
    let api_key = s(&first.json(), "key").to_string();
    let stored = app
        .column("SELECT COALESCE(response, '') FROM idempotency_keys")
        .await;
    assert_eq!(stored.len(), 1);
    assert!(!stored[0].is_empty() && !stored[0].contains(&api_key));

    // The same key with another body: refused, nothing created.
    let other = json!({"account_id": c.account_id(), "plan_id": c.plan_id(), "name": "Other"});
    let before = app.row_counts().await;
    api.request("POST", "/applications", Some(&other), &key)
        .await
        .error_at(422, "idempotency_key_reused", "Idempotency-Key");
    // ... or another route.
    api.request("POST", "/services", Some(&json!({"name": "S"})), &key)
        .await
        .error(422, "idempotency_key_reused");
    assert_eq!(app.row_counts().await, before);
}

#[tokio::test]
async fn refusals_replay_too_and_keys_are_scoped_per_token() {
    let app = TestApp::new().await;
    let api = app.admin();
    api.create("/services", json!({"name": "Taken"})).await;
    let key = [("idempotency-key", "k-1")];
    let body = json!({"name": "Taken"});
    let first = api.request("POST", "/services", Some(&body), &key).await;
    first.error(409, "name_taken");
    let again = api.request("POST", "/services", Some(&body), &key).await;
    again.error(409, "name_taken");
    assert_eq!(again.header("idempotent-replayed"), Some("true"));

    // Another token's key of the same name is another key.
    let writer = api
        .create("/tokens", json!({"name": "other", "scope": "write"}))
        .await;
    let other = app.client(ADMIN_API, Some(s(&writer, "token")));
    let made = other
        .request("POST", "/services", Some(&json!({"name": "Fresh"})), &key)
        .await;
    assert_eq!(made.status, 201, "{}", made.text());
    assert_eq!(made.header("idempotent-replayed"), None);
}

#[tokio::test]
async fn keys_are_checked() {
    let app = TestApp::new().await;
    let api = app.admin();
    let long = "k".repeat(256);
    let before = app.row_counts().await;
    for bad in ["", long.as_str()] {
        api.request(
            "POST",
            "/services",
            Some(&json!({"name": "S"})),
            &[("idempotency-key", bad)],
        )
        .await
        .error_at(400, "invalid_idempotency_key", "Idempotency-Key");
    }
    assert_eq!(app.row_counts().await, before);
    // 255 bytes is accepted.
    let ok = "k".repeat(255);
    let r = api
        .request(
            "POST",
            "/services",
            Some(&json!({"name": "S"})),
            &[("idempotency-key", ok.as_str())],
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.text());
}

#[tokio::test]
async fn concurrent_retries_with_one_key_create_one_object() {
    let app = TestApp::new().await;
    let api = app.admin();
    let body = json!({"name": "Race"});
    let key = [("idempotency-key", "race")];
    let replies =
        join_all((0..8).map(|_| api.request("POST", "/services", Some(&body), &key))).await;
    let mut created = Vec::new();
    for r in &replies {
        match r.status.as_u16() {
            201 => created.push(s(&r.json(), "id").to_string()),
            409 => {
                r.error(409, "idempotency_key_in_use");
            }
            other => panic!("{other}: {}", r.text()),
        }
    }
    created.dedup();
    assert_eq!(created.len(), 1, "one object, replayed to every 201");
    assert_eq!(api.walk("/services", 100).await.len(), 1);
}
