//! Issue 22 item 3 in-process: an export imported into an empty installation is the same
//! installation (same document exported back, same snapshot for the gateways); an import is all or
//! nothing, and refused into a non-empty installation.

use serde_json::json;

use tollgate_control_plane::domain::audit::Actor;
use tollgate_control_plane::domain::transfer;

use crate::support::{s, snapshot_of, Catalog, TestApp};

/// A populated installation: the usual catalog, an imported key, an app_id with an app key, a
/// suspended application.
async fn populated() -> TestApp {
    let app = TestApp::new().await;
    let api = app.admin();
    let c = Catalog::new(&app).await;
    let a = c.application(&app, "A").await;
    api.create(
        &format!("/applications/{}/keys", s(&a, "id")),
        json!({"key": "imported-user-key-0123456789"}),
    )
    .await;
    let b = api
        .create(
            "/applications",
            json!({"account_id": c.account_id(), "plan_id": c.plan_id(), "name": "B", "app_id": "pub-b"}),
        )
        .await;
    api.create(
        &format!("/applications/{}/app_keys", s(&b, "id")),
        json!({"value": "app-key-of-b-0123456789"}),
    )
    .await;
    api.ok(
        "POST",
        &format!("/applications/{}/suspend", s(&b, "id")),
        Some(json!({})),
    )
    .await;
    app
}

#[tokio::test]
async fn an_export_imported_into_an_empty_installation_is_the_same_installation() {
    let from = populated().await;
    let doc = transfer::export(&from.state.pool).await.unwrap();
    transfer::validate(&doc).unwrap();
    let to = TestApp::new().await;
    let done = transfer::import(&to.state.pool, &Actor::cli(), &doc)
        .await
        .unwrap();
    assert_eq!((done.services, done.applications, done.app_keys), (1, 2, 1));
    // One audit event for the whole import, with its counts (not one per row).
    let events = to.admin().ok("GET", "/audit_events", None).await;
    let [e] = events["data"].as_array().unwrap().as_slice() else {
        panic!("one event per import: {events}");
    };
    assert_eq!(
        (&e["action"], &e["actor_type"], &e["actor_id"], &e["ip"]),
        (
            &json!("installation.imported"),
            &json!("cli"),
            &json!("cli"),
            &json!(null)
        ),
        "{e}"
    );
    let after = |field: &str| e["changes"][field].clone();
    assert_eq!(
        after("services"),
        json!({"before": null, "after": 1}),
        "{e}"
    );
    assert_eq!(
        after("applications"),
        json!({"before": null, "after": 2}),
        "{e}"
    );
    assert_eq!(
        after("app_keys"),
        json!({"before": null, "after": 1}),
        "{e}"
    );
    let mut back = transfer::export(&to.state.pool).await.unwrap();
    back.exported_at = doc.exported_at;
    assert_eq!(back, doc);
    let sid = &doc.services[0].id;
    assert_eq!(snapshot_of(&to, sid).await, snapshot_of(&from, sid).await);
    // Billing goes on: every imported application has its one open contract.
    let open = to
        .column("SELECT application_id FROM contracts WHERE ends_on IS NULL")
        .await;
    assert_eq!(open.len(), 2);

    // Into the now non-empty installation: refused, nothing changed.
    let before = to.row_counts().await;
    let e = transfer::import(&to.state.pool, &Actor::cli(), &doc)
        .await
        .unwrap_err();
    assert_eq!(e.code(), "not_empty", "{e}");
    assert_eq!(to.row_counts().await, before);
}

/// A write failing half-way (here a trigger refusing the app keys, written last) rolls back every
/// row written before it.
#[tokio::test]
async fn an_import_failing_half_way_leaves_nothing() {
    let from = populated().await;
    let doc = transfer::export(&from.state.pool).await.unwrap();
    let to = TestApp::new().await;
    to.sql(
        "CREATE TRIGGER refuse BEFORE INSERT ON application_app_keys BEGIN SELECT RAISE(ABORT, 'refused'); END",
    )
    .await;
    let before = to.row_counts().await;
    assert!(transfer::import(&to.state.pool, &Actor::cli(), &doc)
        .await
        .is_err());
    assert_eq!(to.row_counts().await, before);
    to.sql("DROP TRIGGER refuse").await;
    transfer::import(&to.state.pool, &Actor::cli(), &doc)
        .await
        .unwrap();
}
