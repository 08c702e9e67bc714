//! The rest of the admin API: accounts, applications (suspend, resume, customized plans, usage),
//! gateway tokens, billing settings and runs, the payment gateway's validation.

use std::time::Duration;

use serde_json::{json, Value};

use crate::support::{s, Catalog, TestApp};

#[tokio::test]
async fn accounts_crud_and_validation() {
    let app = TestApp::new().await;
    let api = app.admin();
    let c = Catalog::new(&app).await;
    let acct = &c.account;
    assert_eq!(acct["object"], "account");
    assert!(s(acct, "id").starts_with("acct_"));
    assert_eq!(acct["vat_rate"], "19");
    assert_eq!(acct["billing_address"]["country"], "DE");
    assert_eq!(acct["credit_balance"], "0.00");
    let path = format!("/accounts/{}", c.account_id());
    assert_eq!(&api.ok("GET", &path, None).await, acct);

    let before = app.row_counts().await;
    api.post("/accounts", json!({"name": "X", "email": "not-an-email"}))
        .await
        .error_at(422, "invalid_email", "email");
    api.post(
        "/accounts",
        json!({"name": "X", "email": "a@b.example", "vat_rate": "101"}),
    )
    .await
    .error_at(422, "invalid_vat_rate", "vat_rate");
    api.post(
        "/accounts",
        json!({"name": "X", "email": "a@b.example", "billing_address": {"country": "Germany"}}),
    )
    .await
    .error_at(422, "invalid_country", "billing_address.country");
    api.post("/accounts", json!({"email": "a@b.example"}))
        .await
        .error_at(422, "invalid_name", "name");
    assert_eq!(app.row_counts().await, before);

    let updated = api
        .ok("PATCH", &path, Some(json!({"vat_rate": "7.7"})))
        .await;
    assert_eq!(updated["vat_rate"], "7.7");
    assert_eq!(updated["name"], "Acme", "fields not sent are kept");
    api.patch(&path, json!({"email": "nope"}))
        .await
        .error_at(422, "invalid_email", "email");
    assert_eq!(api.ok("GET", &path, None).await, updated);

    let other = api
        .create(
            "/accounts",
            json!({"name": "Other", "email": "o@example.com"}),
        )
        .await;
    let listed: Vec<Value> = api.walk("/accounts", 1).await;
    assert_eq!(listed.len(), 2);
    assert!(listed.contains(&updated) && listed.contains(&other));
    let gone = api
        .ok("DELETE", &format!("/accounts/{}", s(&other, "id")), None)
        .await;
    assert_eq!(
        gone,
        json!({"object": "account", "id": other["id"], "deleted": true})
    );
    api.get(&format!("/accounts/{}", s(&other, "id")))
        .await
        .error_at(404, "resource_missing", "id");
}

#[tokio::test]
async fn applications_crud_and_what_is_refused() {
    let app = TestApp::new().await;
    let api = app.admin();
    let c = Catalog::new(&app).await;
    api.post(
        "/applications",
        json!({"account_id": c.account_id(), "plan_id": "plan_nope", "name": "A"}),
    )
    .await
    .error_at(422, "unknown_plan", "plan_id");
    api.post(
        "/applications",
        json!({"account_id": "acct_nope", "plan_id": c.plan_id(), "name": "A"}),
    )
    .await
    .error_at(422, "unknown_account", "account_id");
    api.post(
        "/applications",
        json!({"plan_id": c.plan_id(), "name": "A"}),
    )
    .await
    .error_at(422, "missing_field", "account_id");
    assert!(api.walk("/applications", 10).await.is_empty());

    let created = c.application(&app, "Mobile").await;
    let id = s(&created, "id");
    assert!(id.starts_with("app_"));
    let path = format!("/applications/{id}");
    let fetched = api.ok("GET", &path, None).await;
    for field in ["id", "account_id", "plan_id", "name", "state", "keys"] {
        assert_eq!(fetched[field], created[field], "{field}");
    }
    let renamed = api
        .ok(
            "PATCH",
            &path,
            Some(json!({"name": "Mobile v2", "description": "iOS"})),
        )
        .await;
    assert_eq!(
        (&renamed["name"], &renamed["description"]),
        (&json!("Mobile v2"), &json!("iOS"))
    );
    api.patch(&path, json!({"account_id": "acct_other"}))
        .await
        .error_at(422, "immutable", "account_id");
    api.patch(&path, json!({"plan_id": "plan_nope"}))
        .await
        .error_at(422, "unknown_plan", "plan_id");
    api.patch(&path, json!({"description": "d".repeat(2001)}))
        .await
        .error_at(422, "invalid_description", "description");

    // Filters.
    let second = c.application(&app, "Second").await;
    let by_account = api
        .walk(&format!("/applications?account_id={}", c.account_id()), 1)
        .await;
    assert_eq!(by_account.len(), 2);
    assert!(api
        .walk("/applications?account_id=acct_nobody", 10)
        .await
        .is_empty());

    // In use: the plan and the account cannot be deleted.
    api.delete(&format!("/plans/{}", c.plan_id()))
        .await
        .error(409, "plan_in_use");
    api.delete(&format!("/accounts/{}", c.account_id()))
        .await
        .error(409, "account_in_use");
    let gone = api.ok("DELETE", &path, None).await;
    assert_eq!(
        gone,
        json!({"object": "application", "id": id, "deleted": true})
    );
    api.get(&path).await.error(404, "resource_missing");
    let listed = api.walk("/applications", 10).await;
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0]["id"], second["id"]);
}

#[tokio::test]
async fn suspend_resume_and_customize() {
    let app = TestApp::new().await;
    let api = app.admin();
    let c = Catalog::new(&app).await;
    let created = c.application(&app, "Mobile").await;
    let id = s(&created, "id");
    let suspended = api
        .ok(
            "POST",
            &format!("/applications/{id}/suspend"),
            Some(json!({"reason": "non_payment"})),
        )
        .await;
    assert_eq!(
        (&suspended["state"], &suspended["state_reason"]),
        (&json!("suspended"), &json!("non_payment"))
    );
    api.post(
        &format!("/applications/{id}/suspend"),
        json!({"reason": "boredom"}),
    )
    .await
    .error_at(400, "invalid_json", "reason");
    let resumed = api
        .ok("POST", &format!("/applications/{id}/resume"), None)
        .await;
    assert_eq!(
        (&resumed["state"], &resumed["state_reason"]),
        (&json!("live"), &Value::Null)
    );
    let by_default = api
        .ok("POST", &format!("/applications/{id}/suspend"), None)
        .await;
    assert_eq!(by_default["state_reason"], "admin");

    let custom = api
        .create(&format!("/applications/{id}/customize_plan"), json!({}))
        .await;
    assert_eq!(custom["custom"], true);
    assert_eq!(custom["parent_plan_id"], c.plan_id());
    assert_eq!(custom["limits"], c.plan["limits"]);
    assert_eq!(custom["pricing_rules"], c.plan["pricing_rules"]);
    let now_on = api.ok("GET", &format!("/applications/{id}"), None).await;
    assert_eq!(now_on["plan_id"], custom["id"]);
    api.post(&format!("/applications/{id}/customize_plan"), json!({}))
        .await
        .error(409, "already_customized");
    api.delete(&format!("/plans/{}", s(&custom, "id")))
        .await
        .error(409, "plan_in_use");
}

#[tokio::test]
async fn the_usage_api_validates() {
    let app = TestApp::new().await;
    let api = app.admin();
    let c = Catalog::new(&app).await;
    let created = c.application(&app, "Mobile").await;
    let id = s(&created, "id");
    api.get(&format!("/applications/{id}/usage?period=fortnight"))
        .await
        .error_at(400, "invalid_period", "period");
    api.get(&format!("/applications/{id}/usage?metric=nope"))
        .await
        .error_at(400, "unknown_metric", "metric");
    api.get(&format!("/applications/{id}/usage?since=200000&until=100"))
        .await
        .error(400, "invalid_range");
    api.get(&format!("/applications/{id}/usage?colour=red"))
        .await
        .error(400, "invalid_query");
    api.get("/applications/app_nope/usage")
        .await
        .error(404, "resource_missing");
    let empty = api
        .ok("GET", &format!("/applications/{id}/usage"), None)
        .await;
    assert_eq!(
        (
            &empty["object"],
            &empty["total"],
            &empty["buckets"],
            &empty["period"],
            &empty["metric"]
        ),
        (
            &json!("usage"),
            &json!(0),
            &json!([]),
            &json!("day"),
            &json!("hits")
        )
    );
}

#[tokio::test]
async fn gateway_tokens_crud() {
    let app = TestApp::new().await;
    let api = app.admin();
    let c = Catalog::new(&app).await;
    api.post("/gateway_tokens", json!({"name": "edge"}))
        .await
        .error_at(422, "missing_service_ids", "service_ids");
    api.post(
        "/gateway_tokens",
        json!({"name": "edge", "service_ids": []}),
    )
    .await
    .error_at(422, "invalid_service_ids", "service_ids");
    api.post(
        "/gateway_tokens",
        json!({"name": "edge", "service_ids": [c.service_id(), "svc_nope"]}),
    )
    .await
    .error(422, "unknown_service");
    let gw = api
        .create(
            "/gateway_tokens",
            json!({"name": "edge-1", "service_ids": [c.service_id(), c.service_id()]}),
        )
        .await;
    assert!(s(&gw, "token").starts_with("tgw_"));
    assert_eq!(gw["object"], "gateway_token");
    assert_eq!(gw["service_ids"], json!([c.service_id()]), "deduplicated");
    let path = format!("/gateway_tokens/{}", s(&gw, "id"));
    let fetched = api.ok("GET", &path, None).await;
    assert!(fetched.get("token").is_none(), "{fetched}");
    assert_eq!(fetched["name"], "edge-1");
    let listed = api.walk("/gateway_tokens", 10).await;
    assert_eq!(listed, vec![fetched.clone()]);

    let other = api.create("/services", json!({"name": "Other"})).await;
    let patched = api
        .ok(
            "PATCH",
            &path,
            Some(json!({"service_ids": [s(&other, "id"), c.service_id()]})),
        )
        .await;
    let mut both = vec![c.service_id().to_string(), s(&other, "id").to_string()];
    both.sort();
    assert_eq!(patched["service_ids"], json!(both));
    api.patch(&path, json!({"service_ids": ["svc_nope"]}))
        .await
        .error(422, "unknown_service");
    assert_eq!(api.ok("GET", &path, None).await["service_ids"], json!(both));

    let gone = api.ok("DELETE", &path, None).await;
    assert_eq!(gone["deleted"], true);
    api.get(&path).await.error(404, "resource_missing");
}

#[tokio::test]
async fn billing_settings_are_validated_and_merged() {
    let app = TestApp::new().await;
    let api = app.admin();
    let defaults = api.ok("GET", "/billing/settings", None).await;
    assert_eq!(defaults["object"], "billing_settings");
    assert_eq!(
        (
            &defaults["mode"],
            &defaults["currency"],
            &defaults["numbering"],
            &defaults["retry"]
        ),
        (
            &json!("postpaid"),
            &json!("USD"),
            &json!("monthly"),
            &json!({"attempts": 3, "interval_days": 3})
        )
    );
    let updated = api
        .ok(
            "PUT",
            "/billing/settings",
            Some(json!({"currency": "EUR", "seller": {"name": "ACME GmbH"}, "retry": {"attempts": 5}})),
        )
        .await;
    assert_eq!(updated["currency"], "EUR");
    assert_eq!(
        updated["retry"],
        json!({"attempts": 5, "interval_days": 3}),
        "objects merge"
    );
    assert_eq!(updated["seller"]["name"], "ACME GmbH");
    assert_eq!(updated["due_days"], 30);
    for (bad, code, param) in [
        (json!({"currency": "EURO"}), "invalid_currency", "currency"),
        (json!({"due_days": -1}), "invalid_due_days", "due_days"),
        (
            json!({"retry": {"interval_days": 0}}),
            "invalid_retry",
            "retry.interval_days",
        ),
        (json!({"mode": "sometimes"}), "invalid_settings", "mode"),
        (json!({"run_hour_utc": 24}), "invalid_hour", "run_hour_utc"),
    ] {
        api.put("/billing/settings", bad)
            .await
            .error_at(422, code, param);
    }
    api.put("/billing/settings", json!({"nope": 1}))
        .await
        .error(422, "invalid_settings");
    api.put(
        "/billing/settings",
        json!({"seller": {"address": {"country": "Germany"}}}),
    )
    .await
    .error_at(422, "invalid_country", "seller.address.country");
    assert_eq!(
        api.ok("GET", "/billing/settings", None).await,
        updated,
        "refused updates changed nothing"
    );
    // The currency stays while an invoice in it is unsettled.
    let acct = api
        .create(
            "/accounts",
            json!({"name": "Ann", "email": "ann@example.com"}),
        )
        .await;
    let inv = api
        .create("/invoices", json!({"account_id": acct["id"]}))
        .await;
    api.put("/billing/settings", json!({"currency": "JPY"}))
        .await
        .error(409, "currency_in_use");
    api.ok("POST", &format!("/invoices/{}/cancel", s(&inv, "id")), None)
        .await;
    let jpy = api
        .ok("PUT", "/billing/settings", Some(json!({"currency": "JPY"})))
        .await;
    assert_eq!(jpy["currency"], "JPY");
}

/// Polls a billing run until it is no longer running (bounded: 200 polls, 10 s).
async fn finished_run(app: &TestApp, id: &str) -> Value {
    for _ in 0..200 {
        let run = app
            .admin()
            .ok("GET", &format!("/billing/runs/{id}"), None)
            .await;
        if run["state"] != "running" {
            return run;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("billing run {id} still running after 10 s");
}

#[tokio::test]
async fn billing_runs_start_finish_and_bill_a_day_once() {
    let app = TestApp::new().await;
    let api = app.admin();
    let c = Catalog::new(&app).await;
    c.application(&app, "Billed").await;
    api.post("/billing/runs", json!({"date": "2026-02-30"}))
        .await
        .error_at(422, "invalid_date", "date");
    api.raw("POST", "/billing/runs", Some(b"{nope".to_vec()), &[])
        .await
        .error(400, "invalid_json");
    api.post("/billing/runs", json!({"when": "today"}))
        .await
        .error(400, "invalid_json");

    let r = api.post("/billing/runs", json!({})).await;
    assert_eq!(r.status, 202, "{}", r.text());
    let started = r.json();
    assert_eq!(started["object"], "billing_run");
    let run = finished_run(&app, s(&started, "id")).await;
    assert_eq!(run["state"], "succeeded", "{run}");
    assert_eq!(run["date"], started["date"]);
    let invoices = api
        .walk(&format!("/invoices?account_id={}", c.account_id()), 100)
        .await;

    // The same day again bills nothing more.
    let again = api.post("/billing/runs", json!({})).await;
    assert_eq!(again.status, 202, "{}", again.text());
    let again = finished_run(&app, s(&again.json(), "id")).await;
    assert_eq!(
        (&again["state"], &again["invoices_issued"]),
        (&json!("succeeded"), &json!(0)),
        "{again}"
    );
    assert_eq!(
        api.walk(&format!("/invoices?account_id={}", c.account_id()), 100)
            .await,
        invoices
    );
    let runs = api.walk("/billing/runs", 1).await;
    let ids: Vec<&str> = runs.iter().map(|r| s(r, "id")).collect();
    assert_eq!(ids, [s(&again, "id"), s(&run, "id")], "newest first");
    api.get("/billing/runs/run_nope")
        .await
        .error(404, "resource_missing");
}

#[tokio::test]
async fn the_payment_gateway_is_validated_before_anything_is_stored() {
    let app = TestApp::new().await;
    let api = app.admin();
    let none = api.ok("GET", "/billing/gateway", None).await;
    assert_eq!(none, json!({"object": "payment_gateway", "type": null}));
    api.put("/billing/gateway", json!({"type": "paypal"}))
        .await
        .error_at(422, "invalid_gateway", "type");
    api.put(
        "/billing/gateway",
        json!({"type": "stripe", "secret_key": "pk_wrong", "publishable_key": "pk_x", "webhook_secret": "whsec_x"}),
    )
    .await
    .error_at(422, "invalid_field", "secret_key");
    api.put(
        "/billing/gateway",
        json!({"type": "stripe", "publishable_key": "pk_x", "webhook_secret": "whsec_x"}),
    )
    .await
    .error_at(422, "missing_field", "secret_key");
    // The outbound-URL rule: https to a public host (loopback only when the server opts in).
    api.put(
        "/billing/gateway",
        json!({"type": "stripe", "secret_key": "sk_x", "publishable_key": "pk_x", "webhook_secret": "whsec_x",
               "api_base": "http://169.254.169.254/"}),
    )
    .await
    .error_at(422, "invalid_url", "api_base");
    api.put(
        "/billing/gateway",
        json!({"type": "braintree", "merchant_id": "m", "public_key": "p", "private_key": "k", "environment": "moon"}),
    )
    .await
    .error_at(422, "invalid_environment", "environment");
    // Valid, but this server has no master key to seal the secrets with.
    let err = api
        .put(
            "/billing/gateway",
            json!({"type": "stripe", "secret_key": "sk_test_123", "publishable_key": "pk_test_123",
                   "webhook_secret": "whsec_123"}),
        )
        .await
        .error(409, "master_key_required");
    assert!(s(&err, "message").contains("TOLLGATE_MASTER_KEY"), "{err}");
    assert_eq!(api.ok("GET", "/billing/gateway", None).await, none);
    assert!(app
        .column("SELECT kind FROM payment_gateway")
        .await
        .is_empty());
}
