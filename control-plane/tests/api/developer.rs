//! Invoices through the admin API (manual invoices, states, credit notes, listing and filters) and
//! the developer API (`/api/v1`): account tokens, an account's own issued invoices and nothing of
//! another account's, and the payment routes' refusals decided before any provider is called.

use serde_json::{json, Value};

use crate::support::{s, TestApp};

/// An issued invoice of `account_id` with one manual line of `amount`.
async fn issue(app: &TestApp, account_id: &str, amount: &str) -> Value {
    let api = app.admin();
    let inv = api
        .create("/invoices", json!({"account_id": account_id}))
        .await;
    let id = s(&inv, "id");
    api.create(
        &format!("/invoices/{id}/lines"),
        json!({"description": "API usage", "unit_price": amount}),
    )
    .await;
    api.ok("POST", &format!("/invoices/{id}/issue"), None).await
}

/// A new account and a developer token for it.
async fn developer(app: &TestApp, name: &str) -> (Value, String) {
    let api = app.admin();
    let acct = api
        .create(
            "/accounts",
            json!({"name": name, "email": format!("{}@example.com", name.to_lowercase())}),
        )
        .await;
    let tok = api
        .create(&format!("/accounts/{}/tokens", s(&acct, "id")), json!({}))
        .await;
    assert!(s(&tok, "token").starts_with("tgd_"), "{tok}");
    (acct, s(&tok, "token").to_string())
}

#[tokio::test]
async fn manual_invoices_credit_notes_and_cancel() {
    let app = TestApp::new().await;
    let api = app.admin();
    let acct = api
        .create(
            "/accounts",
            json!({"name": "Kim", "email": "kim@example.com", "vat_rate": "10"}),
        )
        .await;
    let acct_id = s(&acct, "id");
    api.post("/invoices", json!({}))
        .await
        .error_at(422, "missing_field", "account_id");
    api.post("/invoices", json!({"account_id": "acct_nope"}))
        .await
        .error_at(422, "unknown_account", "account_id");
    let inv = api
        .create("/invoices", json!({"account_id": acct_id}))
        .await;
    assert_eq!(
        (&inv["object"], &inv["state"], &inv["number"]),
        (&json!("invoice"), &json!("open"), &Value::Null)
    );
    let id = s(&inv, "id").to_string();
    let lines = format!("/invoices/{id}/lines");
    api.create(
        &lines,
        json!({"description": "Consulting", "quantity": "3", "unit_price": "100.005"}),
    )
    .await;
    let inv = api
        .create(
            &lines,
            json!({"description": "Loyalty discount", "unit_price": "-20"}),
        )
        .await;
    // 3 × 100.005 = 300.015 -> 300.02 (rounded once, half away from zero).
    let amounts: Vec<&str> = inv["lines"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| s(l, "amount"))
        .collect();
    assert_eq!(amounts, ["300.02", "-20.00"]);
    for (bad, code, param) in [
        (
            json!({"description": "x", "quantity": "0", "unit_price": "1"}),
            "invalid_quantity",
            "quantity",
        ),
        (
            json!({"description": "", "unit_price": "1"}),
            "invalid_description",
            "description",
        ),
        (json!({"description": "x"}), "missing_field", "unit_price"),
        (
            json!({"description": "x", "unit_price": "1e3"}),
            "invalid_amount",
            "unit_price",
        ),
    ] {
        api.post(&lines, bad).await.error_at(422, code, param);
    }
    api.post(&format!("/invoices/{id}/pay"), json!({}))
        .await
        .error(409, "invalid_state");
    api.ok("POST", &format!("/invoices/{id}/finalize"), None)
        .await;
    api.post(&lines, json!({"description": "late", "unit_price": "1"}))
        .await
        .error(409, "invalid_state");
    let inv = api.ok("POST", &format!("/invoices/{id}/issue"), None).await;
    assert_eq!(
        (&inv["state"], &inv["subtotal"], &inv["tax"], &inv["total"]),
        (
            &json!("pending"),
            &json!("280.02"),
            &json!("28.00"),
            &json!("308.02")
        )
    );
    let number = s(&inv, "number").to_string();
    assert!(
        number.len() == 16 && number.as_bytes()[4] == b'-' && number.as_bytes()[7] == b'-',
        "{number}"
    );
    assert_eq!(api.ok("GET", &format!("/invoices/{id}"), None).await, inv);

    // A credit note: its own number series, never more than was billed.
    let credit = format!("/invoices/{id}/credit_notes");
    api.post(&credit, json!({"amount": "280.03"}))
        .await
        .error(422, "exceeds_invoice");
    api.post(&credit, json!({}))
        .await
        .error_at(422, "missing_field", "amount");
    let cn = api
        .create(&credit, json!({"amount": "30", "reason": "outage"}))
        .await;
    assert_eq!(cn["object"], "credit_note");
    assert!(s(&cn, "number").starts_with("CN-"), "{cn}");
    assert_eq!(
        (
            &cn["subtotal"],
            &cn["tax"],
            &cn["total"],
            &cn["credited_invoice_id"]
        ),
        (&json!("30.00"), &json!("3.00"), &json!("33.00"), &json!(id))
    );
    let account = api.ok("GET", &format!("/accounts/{acct_id}"), None).await;
    assert_eq!(account["credit_balance"], "30.00");

    // The next invoice uses the balance; cancelling it gives the balance back.
    let next = issue(&app, acct_id, "50").await;
    let amounts: Vec<&str> = next["lines"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| s(l, "amount"))
        .collect();
    assert_eq!(amounts, ["50.00", "-30.00"]);
    assert_eq!(next["total"], "22.00");
    let next_id = s(&next, "id");
    api.ok("POST", &format!("/invoices/{next_id}/cancel"), None)
        .await;
    let account = api.ok("GET", &format!("/accounts/{acct_id}"), None).await;
    assert_eq!(account["credit_balance"], "30.00");
    api.post(&format!("/invoices/{next_id}/issue"), json!({}))
        .await
        .error(409, "invalid_state");
    // Numbers are gapless.
    let seq = |n: &str| n[n.len() - 8..].parse::<u64>().unwrap();
    assert_eq!(seq(s(&next, "number")), seq(&number) + 1);

    // Listing and filters.
    let listed: Vec<String> = api
        .walk(&format!("/invoices?account_id={acct_id}"), 1)
        .await
        .iter()
        .map(|i| s(i, "id").to_string())
        .collect();
    let mut both = vec![id.clone(), next_id.to_string()];
    both.sort();
    assert_eq!(listed, both);
    let cancelled = api
        .walk(
            &format!("/invoices?account_id={acct_id}&state=cancelled"),
            10,
        )
        .await;
    assert_eq!(cancelled.len(), 1);
    assert_eq!(cancelled[0]["id"], next_id);
    let notes = api
        .walk(
            &format!("/invoices?account_id={acct_id}&kind=credit_note"),
            10,
        )
        .await;
    assert_eq!(notes.len(), 1);
    assert_eq!(notes[0]["id"], cn["id"]);
    api.get("/invoices?state=bogus")
        .await
        .error_at(400, "invalid_state", "state");
    api.get("/invoices?period=2026-13")
        .await
        .error_at(400, "invalid_period", "period");
    api.get("/invoices/inv_nope")
        .await
        .error(404, "resource_missing");
    // The PDF.
    let pdf = api.get(&format!("/invoices/{id}.pdf")).await;
    assert_eq!(pdf.status, 200);
    assert_eq!(pdf.header("content-type"), Some("application/pdf"));
    assert!(pdf.body.starts_with(b"%PDF-"));
    // Billing history keeps the account.
    api.delete(&format!("/accounts/{acct_id}"))
        .await
        .error(409, "account_has_billing_history");
}

#[tokio::test]
async fn account_tokens_are_managed_by_the_admin() {
    let app = TestApp::new().await;
    let api = app.admin();
    let (acct, token) = developer(&app, "Dana").await;
    let acct_id = s(&acct, "id");
    let dev = app.client("/api/v1", Some(&token));
    assert_eq!(dev.get("/invoices").await.status, 200);
    let listed = api
        .ok("GET", &format!("/accounts/{acct_id}/tokens"), None)
        .await;
    let tokens = listed["data"].as_array().unwrap();
    assert_eq!(tokens.len(), 1);
    assert!(tokens[0].get("token").is_none(), "{}", tokens[0]);
    api.post(
        &format!("/accounts/{acct_id}/tokens"),
        json!({"expires_in_days": 0}),
    )
    .await
    .error_at(422, "invalid_expiry", "expires_in_days");
    api.post("/accounts/acct_nope/tokens", json!({}))
        .await
        .error(404, "resource_missing");
    // An account token opens nothing of the admin API.
    app.client(crate::support::ADMIN_API, Some(&token))
        .get("/services")
        .await
        .error(401, "unauthorized");
    // Expired, then revoked: 401.
    let tok_id = s(&tokens[0], "id");
    app.sql(&format!(
        "UPDATE account_tokens SET expires_at = 1 WHERE id = '{tok_id}'"
    ))
    .await;
    let err = dev.get("/invoices").await.error(401, "unauthorized");
    assert!(s(&err, "message").contains("expired"), "{err}");
    api.ok(
        "DELETE",
        &format!("/accounts/{acct_id}/tokens/{tok_id}"),
        None,
    )
    .await;
    dev.get("/invoices").await.error(401, "unauthorized");
    app.client("/api/v1", None)
        .get("/invoices")
        .await
        .error(401, "unauthorized");
    app.client("/api/v1", Some(crate::support::ADMIN_TOKEN))
        .get("/invoices")
        .await
        .error(401, "unauthorized");
}

#[tokio::test]
async fn developers_see_only_their_own_issued_invoices() {
    let app = TestApp::new().await;
    let api = app.admin();
    let (alice, alice_token) = developer(&app, "Alice").await;
    let (bob, bob_token) = developer(&app, "Bob").await;
    let alice_inv = issue(&app, s(&alice, "id"), "10.00").await;
    let bob_inv = issue(&app, s(&bob, "id"), "7.00").await;
    // A draft is the admin's only.
    let draft = api
        .create("/invoices", json!({"account_id": alice["id"]}))
        .await;
    let dev_a = app.client("/api/v1", Some(&alice_token));
    let dev_b = app.client("/api/v1", Some(&bob_token));

    let mine = dev_a.ok("GET", "/invoices", None).await;
    assert_eq!(mine["object"], "list");
    let ids: Vec<&str> = mine["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| s(i, "id"))
        .collect();
    assert_eq!(ids, [s(&alice_inv, "id")]);
    let one = dev_a
        .ok("GET", &format!("/invoices/{}", s(&alice_inv, "id")), None)
        .await;
    assert_eq!(one, alice_inv, "the developer sees what the admin sees");
    let pdf = dev_a
        .get(&format!("/invoices/{}.pdf", s(&alice_inv, "id")))
        .await;
    assert_eq!(pdf.header("content-type"), Some("application/pdf"));
    dev_a
        .get(&format!("/invoices/{}", s(&draft, "id")))
        .await
        .error(404, "resource_missing");
    assert!(dev_a.walk("/invoices?state=paid", 10).await.is_empty());
    assert_eq!(dev_a.walk("/invoices?state=pending", 10).await.len(), 1);
    dev_a
        .get("/invoices?limit=0")
        .await
        .error(400, "invalid_limit");
    dev_a
        .get("/invoices?colour=red")
        .await
        .error(400, "invalid_query");

    // Another account's invoice is no invoice: 404, nothing of it in the answer, nothing changed.
    let before = app.row_counts().await;
    let foreign = s(&alice_inv, "id");
    for (method, path) in [
        ("GET", format!("/invoices/{foreign}")),
        ("GET", format!("/invoices/{foreign}.pdf")),
        ("POST", format!("/invoices/{foreign}/pay")),
    ] {
        let body = (method == "POST").then(|| json!({}));
        let r = dev_b.request(method, &path, body.as_ref(), &[]).await;
        r.error(404, "resource_missing");
        let text = r.text();
        for secret in ["Alice", "alice@", s(&alice, "id"), s(&alice_inv, "number")] {
            assert!(!text.contains(secret), "{path}: {text}");
        }
    }
    let theirs = dev_b.ok("GET", "/invoices", None).await;
    assert_eq!(theirs["data"].as_array().unwrap().len(), 1);
    assert_eq!(theirs["data"][0]["id"], bob_inv["id"]);
    assert_eq!(app.row_counts().await, before);
    let payments = dev_a.ok("GET", "/payments", None).await;
    assert_eq!(
        payments,
        json!({"object": "list", "data": [], "has_more": false, "next_cursor": null})
    );
}

#[tokio::test]
async fn payments_are_refused_before_any_provider_call_without_a_gateway() {
    let app = TestApp::new().await;
    let api = app.admin();
    let (acct, token) = developer(&app, "Erin").await;
    let inv = issue(&app, s(&acct, "id"), "12.00").await;
    let id = s(&inv, "id");
    let dev = app.client("/api/v1", Some(&token));
    let before = app.row_counts().await;
    dev.post(&format!("/invoices/{id}/pay"), json!({}))
        .await
        .error(409, "no_payment_gateway");
    api.post(&format!("/invoices/{id}/charge"), json!({}))
        .await
        .error(409, "no_payment_gateway");
    dev.get("/payment_methods")
        .await
        .error(409, "no_payment_gateway");
    dev.post("/payment_methods/setup", json!({}))
        .await
        .error(409, "no_payment_gateway");
    dev.post("/payment_methods", json!({})).await.error_at(
        422,
        "missing_field",
        "payment_method_id",
    );
    dev.post("/payment_methods", json!({"card": "4242"}))
        .await
        .error(400, "invalid_json");
    dev.post(&format!("/invoices/{id}/pay"), json!({"amount": "1"}))
        .await
        .error(400, "invalid_json");
    // A paid or open invoice is not chargeable, whatever the gateway.
    let open = api
        .create("/invoices", json!({"account_id": acct["id"]}))
        .await;
    api.post(&format!("/invoices/{}/charge", s(&open, "id")), json!({}))
        .await
        .error(409, "invalid_state");
    assert_eq!(
        app.row_counts().await.get("charge_attempts"),
        before.get("charge_attempts")
    );
    assert_eq!(
        app.row_counts().await.get("payment_customers"),
        before.get("payment_customers")
    );
    let paid = api.ok("POST", &format!("/invoices/{id}/pay"), None).await;
    assert_eq!(paid["state"], "paid");
    dev.post(&format!("/invoices/{id}/pay"), json!({}))
        .await
        .error(409, "invalid_state");
}

#[tokio::test]
async fn the_stripe_webhook_refuses_before_reading_an_event() {
    let app = TestApp::new().await;
    let hook = app.client("", None);
    let before = app.row_counts().await;
    // Without Stripe configured there is no secret to check a signature with.
    hook.request(
        "POST",
        "/webhooks/stripe",
        Some(&json!({"id": "evt_1", "type": "payment_intent.succeeded"})),
        &[("stripe-signature", "t=1,v1=00")],
    )
    .await
    .error(409, "no_payment_gateway");
    // Unauthenticated until the signature is checked: a smaller body cap than the API's.
    let big = vec![b' '; tollgate_control_plane::domain::payments::webhooks::MAX_WEBHOOK_BYTES + 1];
    hook.raw("POST", "/webhooks/stripe", Some(big), &[])
        .await
        .error(413, "body_too_large");
    assert_eq!(app.row_counts().await, before);
}
