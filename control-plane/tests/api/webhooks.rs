//! Webhook endpoints in-process: the secret shown once and sealed, events written in the very
//! transaction of their change (a refused change writes none), fan-out to the subscribed enabled
//! endpoints only, and accounts confined to their own endpoints. Delivery itself is tested through
//! real processes (tests/test_webhooks.py).

use serde_json::json;

use crate::support::{s, Catalog, TestApp};

const HOOK: &str = "https://hooks.example.com/tollgate";

async fn count(app: &TestApp, table: &str) -> i64 {
    app.column(&format!("SELECT CAST(COUNT(*) AS TEXT) FROM {table}"))
        .await[0]
        .parse()
        .unwrap()
}

/// `PATCH …/webhook_endpoints/{id} {"enabled": enabled}` as the admin.
async fn set_enabled(app: &TestApp, id: &str, enabled: bool) {
    app.admin()
        .ok(
            "PATCH",
            &format!("/webhook_endpoints/{id}"),
            Some(json!({ "enabled": enabled })),
        )
        .await;
}

#[tokio::test]
async fn the_secret_is_shown_once_and_sealed() {
    let app = TestApp::with_master_key().await;
    let created = app
        .admin()
        .create(
            "/webhook_endpoints",
            json!({"url": HOOK, "events": ["invoice.paid"]}),
        )
        .await;
    let secret = s(&created, "secret");
    assert!(secret.starts_with("whsec_"), "{secret}");
    let id = s(&created, "id");
    for body in [
        app.admin()
            .ok("GET", &format!("/webhook_endpoints/{id}"), None)
            .await,
        app.admin().ok("GET", "/webhook_endpoints", None).await,
    ] {
        assert!(!body.to_string().contains("secret"), "{body}");
        assert!(!body.to_string().contains(secret), "{body}");
    }
    let stored = app
        .column(&format!(
            "SELECT secret_sealed FROM webhook_endpoints WHERE id = '{id}'"
        ))
        .await;
    assert!(stored[0].starts_with("v2:") && !stored[0].contains(&secret[6..]));
}

#[tokio::test]
async fn without_a_master_key_no_endpoint_is_stored() {
    let app = TestApp::new().await;
    app.admin()
        .post(
            "/webhook_endpoints",
            json!({"url": HOOK, "events": ["invoice.paid"]}),
        )
        .await
        .error(409, "master_key_required");
    assert_eq!(count(&app, "webhook_endpoints").await, 0);
}

#[tokio::test]
async fn events_are_written_with_their_change_and_only_for_subscribers() {
    let app = TestApp::with_master_key().await;
    let c = Catalog::new(&app).await;
    // No endpoint: a change writes no event at all.
    let first = c.application(&app, "First").await;
    assert_eq!(count(&app, "webhook_messages").await, 0);
    let ep = app
        .admin()
        .create(
            "/webhook_endpoints",
            json!({"url": HOOK, "events": ["key.created"]}),
        )
        .await;
    let disabled = app
        .admin()
        .create(
            "/webhook_endpoints",
            json!({"url": HOOK, "events": ["key.created"]}),
        )
        .await;
    set_enabled(&app, s(&disabled, "id"), false).await;
    let app_id = s(&first, "id");
    for _ in 0..4 {
        app.admin()
            .create(&format!("/applications/{app_id}/keys"), json!({}))
            .await;
    }
    // Four keys made, each one event, delivered to the enabled endpoint only.
    assert_eq!(count(&app, "webhook_messages").await, 4);
    assert_eq!(
        app.column("SELECT DISTINCT endpoint_id FROM webhook_deliveries")
            .await,
        [s(&ep, "id")]
    );
    // A sixth active key is refused: its transaction, event included, is rolled back.
    app.admin()
        .post(&format!("/applications/{app_id}/keys"), json!({}))
        .await
        .error(409, "key_limit_reached");
    assert_eq!(count(&app, "webhook_messages").await, 4);
    assert_eq!(count(&app, "webhook_deliveries").await, 4);
    // Suspending is not subscribed: no event.
    app.admin()
        .ok(
            "POST",
            &format!("/applications/{app_id}/suspend"),
            Some(json!({})),
        )
        .await;
    assert_eq!(count(&app, "webhook_messages").await, 4);
}

#[tokio::test]
async fn accounts_reach_only_their_own_endpoints() {
    let app = TestApp::with_master_key().await;
    let c = Catalog::new(&app).await;
    let other = app
        .admin()
        .create(
            "/accounts",
            json!({"name": "Other", "email": "other@example.com"}),
        )
        .await;
    let token = |account: String| {
        let app = &app;
        async move {
            let t = app
                .admin()
                .create(&format!("/accounts/{account}/tokens"), json!({}))
                .await;
            s(&t, "token").to_string()
        }
    };
    let mine = token(c.account_id().to_string()).await;
    let theirs = token(s(&other, "id").to_string()).await;
    let me = app.client("/api/v1", Some(&mine));
    let them = app.client("/api/v1", Some(&theirs));
    let ep = me
        .create(
            "/webhook_endpoints",
            json!({"url": HOOK, "events": ["application.created"]}),
        )
        .await;
    assert_eq!(ep["account_id"], c.account["id"]);
    let id = s(&ep, "id");
    them.request("GET", &format!("/webhook_endpoints/{id}"), None, &[])
        .await
        .error(404, "resource_missing");
    them.patch(
        &format!("/webhook_endpoints/{id}"),
        json!({"url": "https://evil.example.com/"}),
    )
    .await
    .error(404, "resource_missing");
    them.delete(&format!("/webhook_endpoints/{id}"))
        .await
        .error(404, "resource_missing");
    let listed = them.ok("GET", "/webhook_endpoints", None).await;
    assert_eq!(listed["data"], json!([]));
    // The other account's application sends nothing to this account's endpoint.
    app.admin()
        .create(
            "/applications",
            json!({"account_id": other["id"], "plan_id": c.plan_id(), "name": "Theirs"}),
        )
        .await;
    assert_eq!(count(&app, "webhook_deliveries").await, 0);
    c.application(&app, "Mine").await;
    assert_eq!(count(&app, "webhook_deliveries").await, 1);
    // Unknown event types: 422 naming the field and the known types.
    let err = me
        .post(
            "/webhook_endpoints",
            json!({"url": HOOK, "events": ["application.created", "wallet.stolen"]}),
        )
        .await
        .error_at(422, "unknown_event_type", "events[1]");
    assert!(err["message"].as_str().unwrap().contains("invoice.overdue"));
}

#[tokio::test]
async fn the_purge_drops_old_finished_deliveries_and_keeps_pending_ones() {
    let app = TestApp::with_master_key().await;
    let c = Catalog::new(&app).await;
    app.admin()
        .create(
            "/webhook_endpoints",
            json!({"url": HOOK, "events": ["application.created", "key.created"]}),
        )
        .await;
    c.application(&app, "Old").await;
    assert_eq!(count(&app, "webhook_deliveries").await, 2);
    // One delivered, one still pending, both older than the retention.
    app.sql("UPDATE webhook_deliveries SET created_at = 0")
        .await;
    app.sql("UPDATE webhook_messages SET created_at = 0").await;
    app.sql(
        "UPDATE webhook_deliveries SET state = 'delivered' WHERE event_id IN (SELECT id FROM webhook_messages WHERE event_type = 'key.created')",
    )
    .await;
    let purged = tollgate_control_plane::domain::purge::purge_once(&app.state.pool)
        .await
        .unwrap();
    assert_eq!(purged.webhook_deliveries, 1);
    assert_eq!(
        app.column("SELECT state FROM webhook_deliveries").await,
        ["pending"]
    );
    assert_eq!(
        app.column("SELECT event_type FROM webhook_messages").await,
        ["application.created"]
    );
}

async fn first_delivery(app: &TestApp, endpoint_id: &str) -> serde_json::Value {
    let path = format!("/webhook_endpoints/{endpoint_id}/deliveries");
    app.admin().ok("GET", &path, None).await["data"][0].clone()
}

#[tokio::test]
async fn disabling_parks_pending_deliveries_and_enabling_makes_them_due() {
    let app = TestApp::with_master_key().await;
    let c = Catalog::new(&app).await;
    let ep = app
        .admin()
        .create(
            "/webhook_endpoints",
            json!({"url": HOOK, "events": ["application.created"]}),
        )
        .await;
    let id = s(&ep, "id");
    c.application(&app, "A").await;
    assert!(first_delivery(&app, id).await["next_attempt_at_ms"].is_i64());
    set_enabled(&app, id, false).await;
    let parked = first_delivery(&app, id).await;
    assert_eq!(parked["state"], "pending");
    assert!(parked["next_attempt_at_ms"].is_null(), "{parked}");
    assert_eq!(
        app.column("SELECT CAST(next_attempt_at AS TEXT) FROM webhook_deliveries")
            .await,
        [i64::MAX.to_string()]
    );
    set_enabled(&app, id, true).await;
    let due = first_delivery(&app, id).await["next_attempt_at_ms"]
        .as_i64()
        .unwrap();
    assert!(due <= tollgate_control_plane::store::now_ms(), "{due}");
}

/// An event reaches the admin's endpoints and those of the account it is about, subscribed to
/// its type: never another account's, whichever statement of the fan-out reads them. 300
/// accounts' events in one call span more than one statement's list of accounts (SQLite: 240
/// parameters), and the admin's endpoint still gets each event once.
#[tokio::test]
async fn the_fan_out_reads_the_admin_and_the_events_accounts_only() {
    use tollgate_control_plane::domain::webhooks::events::ApplicationData;
    use tollgate_control_plane::domain::webhooks::{enqueue_many, Event};
    let app = TestApp::with_master_key().await;
    let mut accounts = Vec::new();
    for i in 0..300 {
        let a = app
            .admin()
            .create(
                "/accounts",
                json!({"name": format!("A{i}"), "email": format!("a{i}@example.com")}),
            )
            .await;
        accounts.push(s(&a, "id").to_string());
    }
    let admin_ep = app
        .admin()
        .create(
            "/webhook_endpoints",
            json!({"url": HOOK, "events": ["application.created"]}),
        )
        .await;
    let token = |account: &str| {
        let app = &app;
        let path = format!("/accounts/{account}/tokens");
        async move { s(&app.admin().create(&path, json!({})).await, "token").to_string() }
    };
    // The first and the last account, in different statements' lists; a third account's
    // endpoint receives nothing (no event is about it); the last's other endpoint is not
    // subscribed to the type.
    let mut owned = Vec::new();
    for (account, events) in [
        (&accounts[0], vec!["application.created"]),
        (&accounts[299], vec!["application.created"]),
        (&accounts[299], vec!["key.created"]),
    ] {
        let t = token(account).await;
        let ep = app
            .client("/api/v1", Some(&t))
            .create("/webhook_endpoints", json!({"url": HOOK, "events": events}))
            .await;
        owned.push(s(&ep, "id").to_string());
    }
    let bystander = app
        .admin()
        .create(
            "/accounts",
            json!({"name": "Bystander", "email": "b@example.com"}),
        )
        .await;
    let t = token(s(&bystander, "id")).await;
    app.client("/api/v1", Some(&t))
        .create(
            "/webhook_endpoints",
            json!({"url": HOOK, "events": ["application.created"]}),
        )
        .await;
    let events: Vec<Event> = accounts
        .iter()
        .enumerate()
        .map(|(i, account)| {
            Event::ApplicationCreated(ApplicationData {
                application_id: format!("app_{i}"),
                account_id: account.clone(),
                plan_id: "plan_x".into(),
                name: format!("App {i}"),
                state: "live".into(),
                state_reason: None,
            })
        })
        .collect();
    let mut tx = tollgate_control_plane::store::begin_write(&app.state.pool)
        .await
        .unwrap();
    let written = enqueue_many(&mut tx, &events).await.unwrap();
    tx.commit().await.unwrap();
    assert_eq!(written.len(), 300);
    let per_endpoint = app
        .column(
            "SELECT endpoint_id || ':' || CAST(COUNT(*) AS TEXT) FROM webhook_deliveries GROUP BY endpoint_id ORDER BY endpoint_id",
        )
        .await;
    let mut expected = vec![
        format!("{}:300", s(&admin_ep, "id")),
        format!("{}:1", owned[0]),
        format!("{}:1", owned[1]),
    ];
    expected.sort();
    assert_eq!(per_endpoint, expected);
}

/// Deliveries parked behind a disabled endpoint are counted apart from the pending ones (they
/// do not age the outbox) and purged after their retention; a recent one is kept.
#[tokio::test]
async fn parked_deliveries_are_counted_apart_and_purged_after_their_retention() {
    use tollgate_control_plane::domain::purge::{purge_once, WEBHOOK_PARKED_KEEP_SECS};
    use tollgate_control_plane::telemetry::readings::Readings;
    use tollgate_control_plane::telemetry::Outbox;
    let app = TestApp::with_master_key().await;
    let c = Catalog::new(&app).await;
    let ep = app
        .admin()
        .create(
            "/webhook_endpoints",
            json!({"url": HOOK, "events": ["application.created"]}),
        )
        .await;
    let id = s(&ep, "id");
    c.application(&app, "Old").await;
    c.application(&app, "Recent").await;
    let webhook = |r: &Readings| {
        *r.outboxes
            .iter()
            .find(|o| o.outbox == Outbox::Webhook)
            .unwrap()
    };
    let before = webhook(&Readings::read(&app.state.pool).await);
    assert_eq!((before.pending, before.parked), (2, Some(0)));
    set_enabled(&app, id, false).await;
    // One of them (and its event) was created just past the retention.
    let old = tollgate_control_plane::store::now() - WEBHOOK_PARKED_KEEP_SECS - 1;
    app.sql(&format!(
        "UPDATE webhook_deliveries SET created_at = {old} WHERE event_id IN (SELECT id FROM webhook_messages WHERE payload LIKE '%\"Old\"%')"
    ))
    .await;
    app.sql(&format!(
        "UPDATE webhook_messages SET created_at = {old} WHERE payload LIKE '%\"Old\"%'"
    ))
    .await;
    let parked = webhook(&Readings::read(&app.state.pool).await);
    assert_eq!(
        (
            parked.pending,
            parked.parked,
            parked.oldest_pending_age_secs
        ),
        (0, Some(2), 0)
    );
    let purged = purge_once(&app.state.pool).await.unwrap();
    assert_eq!(purged.webhook_deliveries, 1);
    let after = webhook(&Readings::read(&app.state.pool).await);
    assert_eq!((after.pending, after.parked), (0, Some(1)));
    assert_eq!(count(&app, "webhook_messages").await, 1);
    // Enabled again, the recent one goes out; the purged one is gone for good.
    set_enabled(&app, id, true).await;
    let due = webhook(&Readings::read(&app.state.pool).await);
    assert_eq!((due.pending, due.parked), (1, Some(0)));
}
