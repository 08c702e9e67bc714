//! Issue 22 item 1: keys brought from elsewhere (by value or digest), `app_id` and app keys, and
//! what the gateway snapshot carries of them. A refused request writes nothing; a key is never
//! echoed nor merged into another application.

use serde_json::{json, Value};

use tollgate_control_plane::secrets::sha256_hex;

use crate::support::{join_all, s, snapshot_of, Catalog, TestApp};

const USER_KEY: &str = "3scale-user-key-0123456789abcdef";

async fn snapshot_app(app: &TestApp, service_id: &str, app_id: &str) -> Value {
    let snap = snapshot_of(app, service_id).await;
    snap["applications"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["id"] == app_id)
        .cloned()
        .unwrap_or_else(|| panic!("{app_id} not in {snap}"))
}

#[tokio::test]
async fn an_existing_key_is_kept_by_value_or_digest_and_never_echoed() {
    let app = TestApp::new().await;
    let api = app.admin();
    let c = Catalog::new(&app).await;
    let a = c.application(&app, "Imported").await;
    let id = s(&a, "id");
    let path = format!("/applications/{id}/keys");

    let r = api.post(&path, json!({"key": USER_KEY})).await;
    assert_eq!(r.status, 201, "{}", r.text());
    let k = r.json();
    assert!(!r.text().contains(USER_KEY), "echoed: {}", r.text());
    assert!(k.get("key").is_none());
    let digest = sha256_hex(USER_KEY);
    assert_eq!(s(&k, "prefix"), format!("sha256:{}", &digest[..8]));
    // The same key again: 200, the same key object, nothing written.
    let before = app.row_counts().await;
    let again = api.post(&path, json!({"key": USER_KEY})).await;
    assert_eq!(again.status, 200, "{}", again.text());
    assert_eq!(again.json()["id"], k["id"]);
    // ... also by its digest, in capitals.
    let again = api
        .post(&path, json!({"key_sha256": digest.to_uppercase()}))
        .await;
    assert_eq!(again.status, 200, "{}", again.text());
    assert_eq!(app.row_counts().await, before);

    // A digest alone.
    let other = "f".repeat(64);
    let d = api.create(&path, json!({"key_sha256": other})).await;
    assert_eq!(s(&d, "prefix"), "sha256:ffffffff");
    let stored = app
        .column(&format!(
            "SELECT key_sha256 FROM application_keys WHERE application_id = '{id}' ORDER BY key_sha256"
        ))
        .await;
    assert!(
        stored.contains(&digest) && stored.contains(&other),
        "{stored:?}"
    );
    // Without a body a key is still generated and shown once.
    let generated = api.create(&path, json!({})).await;
    assert!(s(&generated, "key").starts_with("tg_"));
    let r = app.admin().request("POST", &path, None, &[]).await;
    assert_eq!(r.status, 201, "{}", r.text());

    // The gateway sees the digests.
    let in_snapshot = snapshot_app(&app, c.service_id(), id).await;
    let keys: Vec<&str> = in_snapshot["key_sha256"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    assert!(keys.contains(&digest.as_str()) && keys.contains(&other.as_str()));
}

#[tokio::test]
async fn short_hostile_or_ambiguous_keys_are_refused_and_write_nothing() {
    let app = TestApp::new().await;
    let api = app.admin();
    let c = Catalog::new(&app).await;
    let a = c.application(&app, "Imported").await;
    let path = format!("/applications/{}/keys", s(&a, "id"));
    let before = app.row_counts().await;
    for (body, code, param) in [
        (json!({"key": "a".repeat(15)}), "key_too_short", "key"),
        (json!({"key": ""}), "invalid_key", "key"),
        (json!({"key": "a".repeat(257)}), "invalid_key", "key"),
        (json!({"key": "0123456789abcdef xyz"}), "invalid_key", "key"),
        (
            json!({"key": "0123456789abcdef\u{1}"}),
            "invalid_key",
            "key",
        ),
        (json!({"key": "0123456789abcdef\t"}), "invalid_key", "key"),
        (json!({"key": "0123456789abcdefé"}), "invalid_key", "key"),
        (
            json!({"key_sha256": "abc"}),
            "invalid_key_sha256",
            "key_sha256",
        ),
        (
            json!({"key_sha256": "g".repeat(64)}),
            "invalid_key_sha256",
            "key_sha256",
        ),
        (
            json!({"key": USER_KEY, "key_sha256": "a".repeat(64)}),
            "ambiguous_key",
            "key_sha256",
        ),
    ] {
        api.post(&path, body.clone())
            .await
            .error_at(422, code, param);
    }
    // Exactly at the bounds: 16 and 256 characters are taken.
    api.create(&path, json!({"key": "k".repeat(16)})).await;
    api.create(&path, json!({"key": "~".repeat(256)})).await;
    api.post(&path, json!({"nope": 1}))
        .await
        .error(400, "invalid_json");
    let mut after = app.row_counts().await;
    *after.get_mut("application_keys").unwrap() -= 2;
    // The two accepted keys bumped the revision and were audited; nothing else moved.
    *after.get_mut("audit_events").unwrap() -= 2;
    after.remove("catalog_revision");
    let mut before = before;
    before.remove("catalog_revision");
    assert_eq!(after, before);
}

#[tokio::test]
async fn another_applications_key_is_a_conflict_never_a_merge() {
    let app = TestApp::new().await;
    let api = app.admin();
    let c = Catalog::new(&app).await;
    let a = c.application(&app, "A").await;
    let b = c.application(&app, "B").await;
    api.create(
        &format!("/applications/{}/keys", s(&a, "id")),
        json!({"key": USER_KEY}),
    )
    .await;
    let before = app.row_counts().await;
    let b_keys = format!("/applications/{}/keys", s(&b, "id"));
    api.post(&b_keys, json!({"key": USER_KEY}))
        .await
        .error(409, "key_in_use");
    api.post(&b_keys, json!({"key_sha256": sha256_hex(USER_KEY)}))
        .await
        .error(409, "key_in_use");
    // A generated key of A's, imported into B: the same.
    let generated = s(&a, "key");
    api.post(&b_keys, json!({"key": generated}))
        .await
        .error(409, "key_in_use");
    assert_eq!(app.row_counts().await, before);
    // Once A's key is revoked, B may take it.
    let a_key = app
        .column(&format!(
            "SELECT id FROM application_keys WHERE key_sha256 = '{}'",
            sha256_hex(USER_KEY)
        ))
        .await;
    api.ok(
        "DELETE",
        &format!("/applications/{}/keys/{}", s(&a, "id"), a_key[0]),
        None,
    )
    .await;
    api.create(&b_keys, json!({"key": USER_KEY})).await;
}

/// Many applications add the same key at once: exactly one gets it, the others 409.
#[tokio::test]
async fn concurrent_adds_of_one_key_to_many_applications_have_one_winner() {
    let app = TestApp::new().await;
    let c = Catalog::new(&app).await;
    let mut ids = Vec::new();
    for i in 0..6 {
        ids.push(s(&c.application(&app, &format!("App {i}")).await, "id").to_string());
    }
    let api = app.admin();
    let statuses = join_all(ids.iter().map(|id| {
        let api = &api;
        async move {
            api.post(
                &format!("/applications/{id}/keys"),
                json!({"key": USER_KEY}),
            )
            .await
            .status
        }
    }))
    .await;
    assert_eq!(
        statuses.iter().filter(|s| **s == 201).count(),
        1,
        "{statuses:?}"
    );
    assert_eq!(
        statuses.iter().filter(|s| **s == 409).count(),
        5,
        "{statuses:?}"
    );
    let holders = app
        .column(&format!(
            "SELECT application_id FROM application_keys WHERE key_sha256 = '{}'",
            sha256_hex(USER_KEY)
        ))
        .await;
    assert_eq!(holders.len(), 1);
}

#[tokio::test]
async fn app_id_is_unique_checked_and_carried_in_the_snapshot_with_app_keys() {
    let app = TestApp::new().await;
    let api = app.admin();
    let c = Catalog::new(&app).await;
    let r = api
        .post(
            "/applications",
            json!({"account_id": c.account_id(), "plan_id": c.plan_id(), "name": "A", "app_id": "3a7f21c9"}),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.text());
    let a = r.json();
    assert_eq!(a["app_id"], "3a7f21c9");
    let a_id = s(&a, "id");
    let b = c.application(&app, "B").await;
    let b_id = s(&b, "id");
    assert!(b["app_id"].is_null());
    let before = app.row_counts().await;
    // Another application's app_id: 409, on create and on update.
    api.post(
        "/applications",
        json!({"account_id": c.account_id(), "plan_id": c.plan_id(), "name": "C", "app_id": "3a7f21c9"}),
    )
    .await
    .error_at(409, "app_id_in_use", "app_id");
    api.patch(
        &format!("/applications/{b_id}"),
        json!({"app_id": "3a7f21c9"}),
    )
    .await
    .error_at(409, "app_id_in_use", "app_id");
    for bad in ["", "has space", "ünï", &"x".repeat(129)] {
        api.patch(&format!("/applications/{b_id}"), json!({"app_id": bad}))
            .await
            .error_at(422, "invalid_app_id", "app_id");
    }
    // App keys need an app_id.
    api.post(
        &format!("/applications/{b_id}/app_keys"),
        json!({"value": "b-app-key-0123456789"}),
    )
    .await
    .error_at(422, "app_id_required", "app_id");
    assert_eq!(app.row_counts().await, before);
    let patched = api
        .ok(
            "PATCH",
            &format!("/applications/{b_id}"),
            Some(json!({"app_id": "b-public"})),
        )
        .await;
    assert_eq!(patched["app_id"], "b-public");

    // Up to five app keys; the same value is shared across applications and idempotent within one.
    let ak = format!("/applications/{a_id}/app_keys");
    let shared = "shared-app-key-0123456789";
    let first = api.create(&ak, json!({"value": shared})).await;
    assert_eq!(first["object"], "app_key");
    assert_eq!(
        s(&first, "prefix"),
        format!("sha256:{}", &sha256_hex(shared)[..8])
    );
    let again = api.post(&ak, json!({"value": shared})).await;
    assert_eq!(again.status, 200);
    assert_eq!(again.json()["id"], first["id"]);
    api.create(
        &format!("/applications/{b_id}/app_keys"),
        json!({"value": shared}),
    )
    .await;
    for i in 0..4 {
        api.create(&ak, json!({"value": format!("a-app-key-{i}-0123456789")}))
            .await;
    }
    let before = app.row_counts().await;
    api.post(&ak, json!({"value": "a-sixth-app-key-0123456789"}))
        .await
        .error(422, "app_key_limit_reached");
    api.post(&ak, json!({"value": "short"}))
        .await
        .error_at(422, "key_too_short", "value");
    api.post(&ak, json!({}))
        .await
        .error_at(422, "missing_field", "value");
    assert_eq!(app.row_counts().await, before);
    let listed = api.ok("GET", &ak, None).await;
    let listed = listed["data"].as_array().unwrap();
    assert_eq!(listed.len(), 5);
    assert!(!listed.iter().any(|k| k.to_string().contains(shared)));

    // The snapshot carries app_id and the app key digests.
    let in_snapshot = snapshot_app(&app, c.service_id(), a_id).await;
    assert_eq!(in_snapshot["app_id"], "3a7f21c9");
    let digests = in_snapshot["app_key_sha256"].as_array().unwrap();
    assert_eq!(digests.len(), 5);
    assert!(digests.contains(&json!(sha256_hex(shared))));
    // An app key is not an API key.
    assert!(!in_snapshot["key_sha256"]
        .as_array()
        .unwrap()
        .contains(&json!(sha256_hex(shared))));

    // Deleted: gone from the list and the snapshot.
    api.ok("DELETE", &format!("{ak}/{}", s(&first, "id")), None)
        .await;
    let in_snapshot = snapshot_app(&app, c.service_id(), a_id).await;
    assert!(!in_snapshot["app_key_sha256"]
        .as_array()
        .unwrap()
        .contains(&json!(sha256_hex(shared))));
    api.delete(&format!("{ak}/{}", s(&first, "id")))
        .await
        .error(404, "resource_missing");
    // Deleting the application deletes its app keys.
    api.ok("DELETE", &format!("/applications/{a_id}"), None)
        .await;
    let left = app
        .column(&format!(
            "SELECT id FROM application_app_keys WHERE application_id = '{a_id}'"
        ))
        .await;
    assert!(left.is_empty());
}
