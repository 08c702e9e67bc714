//! Application keys: shown once, stored hashed, at most five active and ten live, rotation with a
//! grace period, at most ten rotations an hour; a refused request writes nothing.

use serde_json::{json, Value};

use tollgate_control_plane::secrets::sha256_hex;

use crate::support::{join_all, s, Catalog, TestApp};

/// The live keys of an application (active, and rotated ones in their grace period).
async fn live(app: &TestApp, app_id: &str) -> Vec<Value> {
    let keys = app
        .admin()
        .ok("GET", &format!("/applications/{app_id}/keys"), None)
        .await;
    keys["data"].as_array().unwrap().clone()
}

async fn active_ids(app: &TestApp, app_id: &str) -> Vec<String> {
    live(app, app_id)
        .await
        .iter()
        .filter(|k| k["expires_at"].is_null())
        .map(|k| s(k, "id").to_string())
        .collect()
}

#[tokio::test]
async fn the_key_is_shown_once_and_stored_hashed() {
    let app = TestApp::new().await;
    let c = Catalog::new(&app).await;
    let created = c.application(&app, "Mobile").await;
    let key = s(&created, "key");
    assert!(
        key.starts_with("tg_") && key.len() >= 3 + 22,
        "at least 128 bits: {key}"
    );
    assert_eq!(created["state"], "live");
    assert_eq!(created["object"], "application");
    let keys = created["keys"].as_array().unwrap();
    assert_eq!(keys.len(), 1);
    assert_eq!(keys[0]["prefix"], key[..7]);
    assert_eq!(keys[0]["id"], created["key_id"]);
    let id = s(&created, "id");
    let fetched = app
        .admin()
        .ok("GET", &format!("/applications/{id}"), None)
        .await;
    assert!(fetched.get("key").is_none());
    assert!(!fetched.to_string().contains(key), "{fetched}");
    let stored = app
        .column(&format!(
            "SELECT key_sha256 FROM application_keys WHERE application_id = '{id}'"
        ))
        .await;
    assert_eq!(stored, [sha256_hex(key)]);
}

#[tokio::test]
async fn at_most_five_active_keys_revoke_and_rotate() {
    let app = TestApp::new().await;
    let api = app.admin();
    let c = Catalog::new(&app).await;
    let created = c.application(&app, "Mobile").await;
    let id = s(&created, "id");
    let keys_path = format!("/applications/{id}/keys");
    let mut keys = Vec::new();
    for _ in 0..4 {
        let k = api.create(&keys_path, json!({})).await;
        assert!(s(&k, "key").starts_with("tg_"));
        assert_eq!(k["object"], "application_key");
        keys.push(k);
    }
    let before = app.row_counts().await;
    api.post(&keys_path, json!({}))
        .await
        .error(409, "key_limit_reached");
    assert_eq!(app.row_counts().await, before);
    assert_eq!(live(&app, id).await.len(), 5);

    // Revoking one makes room for one more.
    let revoked = api
        .ok(
            "DELETE",
            &format!("{keys_path}/{}", s(&keys[0], "id")),
            None,
        )
        .await;
    assert_eq!(revoked["deleted"], true);
    api.delete(&format!("{keys_path}/{}", s(&keys[0], "id")))
        .await
        .error(404, "resource_missing");
    api.create(&keys_path, json!({})).await;

    // Rotating keeps the old key alive for the grace period, outside the active limit.
    let k1 = s(&keys[1], "id");
    let rotated = api
        .create(
            &format!("{keys_path}/{k1}/rotate"),
            json!({"grace_seconds": 3600}),
        )
        .await;
    assert_eq!(rotated["replaces"]["id"], k1);
    let listed = live(&app, id).await;
    assert_eq!(listed.len(), 6);
    let find = |kid: &str| listed.iter().find(|k| k["id"] == kid).unwrap().clone();
    assert!(find(k1)["expires_at"].is_i64());
    assert!(find(s(&rotated, "id"))["expires_at"].is_null());
    // A key in its grace period cannot be rotated again.
    api.post(&format!("{keys_path}/{k1}/rotate"), json!({}))
        .await
        .error(404, "resource_missing");
    // Immediate expiry takes it out of the live keys.
    let k2 = s(&keys[2], "id");
    api.create(
        &format!("{keys_path}/{k2}/rotate"),
        json!({"grace_seconds": 0}),
    )
    .await;
    assert!(live(&app, id).await.iter().all(|k| k["id"] != k2));
    for bad in [-1, 30 * 24 * 3600 + 1] {
        api.post(
            &format!("{keys_path}/{}/rotate", s(&rotated, "id")),
            json!({"grace_seconds": bad}),
        )
        .await
        .error_at(422, "invalid_grace", "grace_seconds");
    }
    api.post("/applications/app_nope/keys", json!({}))
        .await
        .error(404, "resource_missing");
}

#[tokio::test]
async fn rotations_stop_at_the_live_key_cap() {
    let app = TestApp::new().await;
    let api = app.admin();
    let c = Catalog::new(&app).await;
    let created = c.application(&app, "Rotor").await;
    let id = s(&created, "id");
    // One active key rotated with a long grace: every rotation adds a live key, up to ten.
    for n in 2..=10 {
        let [key] = active_ids(&app, id).await.try_into().unwrap();
        api.create(
            &format!("/applications/{id}/keys/{key}/rotate"),
            json!({"grace_seconds": 3600}),
        )
        .await;
        assert_eq!(live(&app, id).await.len(), n);
    }
    let [key] = active_ids(&app, id).await.try_into().unwrap();
    let before: Vec<Value> = live(&app, id).await;
    let err = api
        .post(
            &format!("/applications/{id}/keys/{key}/rotate"),
            json!({"grace_seconds": 3600}),
        )
        .await
        .error(409, "live_key_limit_reached");
    assert!(s(&err, "message").contains("10"), "{err}");
    assert_eq!(
        live(&app, id).await,
        before,
        "a refused rotation writes nothing"
    );
    api.post(&format!("/applications/{id}/keys"), json!({}))
        .await
        .error(409, "live_key_limit_reached");
}

#[tokio::test]
async fn at_most_ten_rotations_an_hour() {
    let app = TestApp::new().await;
    let api = app.admin();
    let c = Catalog::new(&app).await;
    let created = c.application(&app, "Rate").await;
    let id = s(&created, "id");
    for _ in 0..10 {
        let [key] = active_ids(&app, id).await.try_into().unwrap();
        api.create(
            &format!("/applications/{id}/keys/{key}/rotate"),
            json!({"grace_seconds": 0}),
        )
        .await;
    }
    let [key] = active_ids(&app, id).await.try_into().unwrap();
    let r = api
        .post(
            &format!("/applications/{id}/keys/{key}/rotate"),
            json!({"grace_seconds": 0}),
        )
        .await;
    let err = r.error(429, "rotation_rate_limited");
    assert_eq!(err["type"], "rate_limit_error");
    let retry_after: u64 = r.header("retry-after").unwrap().parse().unwrap();
    assert!((1..=3600).contains(&retry_after), "{retry_after}");
    assert_eq!(
        active_ids(&app, id).await,
        [key],
        "the refused rotation wrote nothing"
    );
    // Another application has its own budget.
    let other = c.application(&app, "Other").await;
    let other_id = s(&other, "id");
    let [other_key] = active_ids(&app, other_id).await.try_into().unwrap();
    api.create(
        &format!("/applications/{other_id}/keys/{other_key}/rotate"),
        json!({"grace_seconds": 0}),
    )
    .await;
}

#[tokio::test]
async fn concurrent_key_creation_never_exceeds_five() {
    let app = TestApp::new().await;
    let c = Catalog::new(&app).await;
    let created = c.application(&app, "Race").await;
    let path = format!("/applications/{}/keys", s(&created, "id"));
    let api = app.admin();
    let statuses: Vec<u16> = join_all((0..10).map(|_| api.post(&path, json!({}))))
        .await
        .iter()
        .map(|r| r.status.as_u16())
        .collect();
    assert_eq!(
        statuses.iter().filter(|s| **s == 201).count(),
        4,
        "{statuses:?}"
    );
    assert_eq!(
        statuses.iter().filter(|s| **s == 409).count(),
        6,
        "{statuses:?}"
    );
    assert_eq!(live(&app, s(&created, "id")).await.len(), 5);
}
