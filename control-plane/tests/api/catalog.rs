//! The catalog through the admin API: services, metrics, mapping rules and plans; create, read,
//! list, update, delete, and the validation errors that refuse a request and write nothing.

use serde_json::{json, Value};

use crate::support::{s, Catalog, TestApp};

#[tokio::test]
async fn services_crud_and_unique_names() {
    let app = TestApp::new().await;
    let api = app.admin();
    let svc = api.create("/services", json!({"name": "Maps"})).await;
    assert_eq!(svc["object"], "service");
    assert!(s(&svc, "id").starts_with("svc_"), "{svc}");
    let id = s(&svc, "id");
    let fetched = api.ok("GET", &format!("/services/{id}"), None).await;
    assert_eq!(fetched, svc);
    let metrics = api
        .ok("GET", &format!("/services/{id}/metrics"), None)
        .await;
    let names: Vec<&str> = metrics["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| s(m, "name"))
        .collect();
    assert_eq!(names, ["hits"], "every service starts with hits");

    api.post("/services", json!({"name": "Maps"}))
        .await
        .error_at(409, "name_taken", "name");
    api.post("/services", json!({"name": ""}))
        .await
        .error_at(422, "invalid_name", "name");
    api.post("/services", json!({"name": "a\u{0}b"}))
        .await
        .error_at(422, "invalid_name", "name");
    api.post("/services", json!({"name": "x".repeat(5000)}))
        .await
        .error_at(422, "invalid_name", "name");

    let renamed = api
        .ok(
            "PATCH",
            &format!("/services/{id}"),
            Some(json!({"name": "Maps v2"})),
        )
        .await;
    assert_eq!(renamed["name"], "Maps v2");
    assert_eq!(renamed["id"], svc["id"]);
    let other = api.create("/services", json!({"name": "Other"})).await;
    api.patch(
        &format!("/services/{}", s(&other, "id")),
        json!({"name": "Maps v2"}),
    )
    .await
    .error_at(409, "name_taken", "name");

    let gone = api.ok("DELETE", &format!("/services/{id}"), None).await;
    assert_eq!(
        gone,
        json!({"object": "service", "id": id, "deleted": true})
    );
    let err = api
        .get(&format!("/services/{id}"))
        .await
        .error_at(404, "resource_missing", "id");
    assert!(s(&err, "message").contains(id), "{err}");
    api.patch(&format!("/services/{id}"), json!({"name": "again"}))
        .await
        .error(404, "resource_missing");
    api.delete(&format!("/services/{id}"))
        .await
        .error(404, "resource_missing");
}

#[tokio::test]
async fn names_are_stored_exactly() {
    let app = TestApp::new().await;
    let api = app.admin();
    for name in [
        "Ωmega ☂ 天気",
        "e\u{301}t\u{e9}",
        "🦀 crab",
        "'; DROP TABLE services; --",
    ] {
        let svc = api.create("/services", json!({"name": name})).await;
        let fetched = api
            .ok("GET", &format!("/services/{}", s(&svc, "id")), None)
            .await;
        assert_eq!(fetched["name"], name);
    }
    assert_eq!(app.column("SELECT name FROM services").await.len(), 4);
}

#[tokio::test]
async fn cursor_pagination_walks_every_item_once() {
    let app = TestApp::new().await;
    let api = app.admin();
    let mut ids = Vec::new();
    for i in 0..7 {
        let svc = api
            .create("/services", json!({"name": format!("svc {i}")}))
            .await;
        ids.push(s(&svc, "id").to_string());
    }
    let first = api.ok("GET", "/services?limit=3", None).await;
    assert_eq!(first["data"].as_array().unwrap().len(), 3);
    assert_eq!(first["has_more"], true);
    assert_eq!(first["next_cursor"], first["data"][2]["id"]);
    let seen: Vec<String> = api
        .walk("/services", 3)
        .await
        .iter()
        .map(|v| s(v, "id").to_string())
        .collect();
    // Pages follow id order (ids are time-ordered: creation order across milliseconds).
    ids.sort();
    assert_eq!(seen, ids);
    // A full last page still says there is no more.
    assert_eq!(api.walk("/services", 7).await.len(), 7);
    assert_eq!(api.walk("/services", 100).await.len(), 7);
}

#[tokio::test]
async fn metrics_and_mapping_rules() {
    let app = TestApp::new().await;
    let api = app.admin();
    let c = Catalog::new(&app).await;
    let sid = c.service_id();
    let metrics = format!("/services/{sid}/metrics");
    api.post(&metrics, json!({"name": "x", "parent": "nope"}))
        .await
        .error_at(422, "unknown_metric", "parent");
    api.post(&metrics, json!({"name": "forecast"}))
        .await
        .error(409, "metric_exists");
    api.post(&metrics, json!({"name": "bad name"}))
        .await
        .error(422, "invalid_metric_name");
    api.post(&metrics, json!({"name": "sub", "parent": "forecast"}))
        .await
        .error(422, "invalid_parent");
    let search = api
        .create(
            &metrics,
            json!({"name": "search", "unit": "query", "parent": "hits"}),
        )
        .await;
    assert_eq!(
        (
            &search["object"],
            &search["name"],
            &search["unit"],
            &search["parent"]
        ),
        (
            &json!("metric"),
            &json!("search"),
            &json!("query"),
            &json!("hits")
        )
    );
    let one = format!("{metrics}/{}", s(&search, "id"));
    assert_eq!(api.ok("GET", &one, None).await, search);
    let listed = api.ok("GET", &metrics, None).await;
    assert_eq!(listed["data"].as_array().unwrap().len(), 3);
    let removed = api.ok("DELETE", &one, None).await;
    assert_eq!(removed["deleted"], true);
    api.get(&one).await.error(404, "resource_missing");

    let rules = format!("/services/{sid}/mapping_rules");
    let rule = api
        .create(
            &rules,
            json!({"method": "get", "pattern": "/v1/forecast/{city}$", "metric": "forecast", "delta": 2}),
        )
        .await;
    assert_eq!(rule["method"], "GET");
    assert_eq!(rule["delta"], 2);
    assert_eq!(rule["last"], false);
    api.post(
        &rules,
        json!({"method": "GET", "pattern": "v1", "metric": "hits"}),
    )
    .await
    .error_at(422, "invalid_pattern", "pattern");
    api.post(
        &rules,
        json!({"method": "GET", "pattern": "/", "metric": "nope"}),
    )
    .await
    .error_at(422, "unknown_metric", "metric");
    api.post(
        &rules,
        json!({"method": "GET", "pattern": "/", "metric": "hits", "delta": 0}),
    )
    .await
    .error_at(422, "invalid_delta", "delta");
    api.post(
        &rules,
        json!({"method": "GET", "pattern": "/", "metric": "hits", "delta": -1}),
    )
    .await
    .error_at(400, "invalid_json", "delta");
    assert_eq!(api.walk(&rules, 100).await, vec![rule.clone()]);
    api.ok("DELETE", &format!("{rules}/{}", s(&rule, "id")), None)
        .await;
    assert!(api.walk(&rules, 100).await.is_empty());
    api.delete(&format!("{rules}/{}", s(&rule, "id")))
        .await
        .error(404, "resource_missing");

    // A metric a plan uses cannot be deleted; a service with plans cannot either.
    let forecast = api
        .walk(&metrics, 100)
        .await
        .into_iter()
        .find(|m| m["name"] == "forecast")
        .unwrap();
    api.delete(&format!("{metrics}/{}", s(&forecast, "id")))
        .await
        .error(409, "metric_in_use");
    api.delete(&format!("/services/{sid}"))
        .await
        .error(409, "service_in_use");
}

#[tokio::test]
async fn plan_money_is_decimal_strings() {
    let app = TestApp::new().await;
    let c = Catalog::new(&app).await;
    let plan = &c.plan;
    assert_eq!(plan["object"], "plan");
    assert_eq!(
        (&plan["setup_fee"], &plan["fixed_fee"]),
        (&json!("5.00"), &json!("10.00"))
    );
    assert_eq!(
        (&plan["trial_days"], &plan["state"]),
        (&json!(14), &json!("published"))
    );
    assert_eq!(plan["custom"], false);
    let limits = plan["limits"].as_array().unwrap();
    assert!(limits.contains(&json!({"metric": "forecast", "period": "day", "value": 1000})));
    assert_eq!(
        plan["pricing_rules"][0],
        json!({"metric": "hits", "model": "graduated", "from": 1, "to": 1000, "unit_price": "0.0001"})
    );
    assert_eq!(plan["pricing_rules"][1]["to"], Value::Null);
    assert_eq!(plan["pricing_rules"][1]["unit_price"], "0.00005");
    let fetched = app
        .admin()
        .ok("GET", &format!("/plans/{}", c.plan_id()), None)
        .await;
    assert_eq!(&fetched, plan);
    let listed = app.admin().walk("/plans", 10).await;
    assert_eq!(listed, vec![plan.clone()]);
}

#[tokio::test]
async fn invalid_plans_are_refused_and_nothing_is_written() {
    let app = TestApp::new().await;
    let api = app.admin();
    let c = Catalog::new(&app).await;
    let cases: Vec<(Value, u16, &str, &str)> = vec![
        (
            json!({"fixed_fee": "-1"}),
            422,
            "invalid_amount",
            "fixed_fee",
        ),
        (
            json!({"fixed_fee": "1e5"}),
            422,
            "invalid_amount",
            "fixed_fee",
        ),
        (
            json!({"fixed_fee": "0x10"}),
            422,
            "invalid_amount",
            "fixed_fee",
        ),
        (
            json!({"fixed_fee": "1,50"}),
            422,
            "invalid_amount",
            "fixed_fee",
        ),
        (
            json!({"fixed_fee": "1".repeat(30)}),
            422,
            "invalid_amount",
            "fixed_fee",
        ),
        (json!({"setup_fee": 5}), 400, "invalid_json", "setup_fee"),
        (
            json!({"limits": [{"metric": "nope", "period": "day", "value": 1}]}),
            422,
            "unknown_metric",
            "limits[0].metric",
        ),
        (
            json!({"limits": [{"metric": "hits", "period": "fortnight", "value": 1}]}),
            400,
            "invalid_json",
            "limits[0].period",
        ),
        (
            json!({"limits": [{"metric": "hits", "period": "day", "value": -1}]}),
            400,
            "invalid_json",
            "limits[0].value",
        ),
        (
            json!({"pricing_rules": [{"metric": "hits", "from": 1, "to": 10, "unit_price": "-0.5"}]}),
            422,
            "invalid_amount",
            "pricing_rules[0].unit_price",
        ),
        (
            json!({"pricing_rules": [
                {"metric": "hits", "from": 1, "to": 10, "unit_price": "1"},
                {"metric": "hits", "from": 10, "to": null, "unit_price": "1"}]}),
            422,
            "overlapping_pricing_rules",
            "pricing_rules[1].from",
        ),
        (
            json!({"trial_days": -1}),
            422,
            "invalid_trial_days",
            "trial_days",
        ),
    ];
    let plan_path = format!("/plans/{}", c.plan_id());
    for (bad, status, code, param) in cases {
        let before = app.row_counts().await;
        let mut body = json!({"service_id": c.service_id(), "name": "Bad"});
        for (k, v) in bad.as_object().unwrap() {
            body[k] = v.clone();
        }
        api.post("/plans", body).await.error_at(status, code, param);
        // The same change as a PATCH leaves the plan untouched.
        api.patch(&plan_path, bad)
            .await
            .error_at(status, code, param);
        assert_eq!(app.row_counts().await, before, "{code} {param}");
        assert_eq!(api.ok("GET", &plan_path, None).await, c.plan);
    }
    api.post("/plans", json!({"service_id": "svc_nope", "name": "P"}))
        .await
        .error_at(422, "unknown_service", "service_id");
    api.post("/plans", json!({"name": "P"}))
        .await
        .error_at(422, "missing_field", "service_id");
}

#[tokio::test]
async fn lenient_amount_spellings_are_stored_normalized() {
    let app = TestApp::new().await;
    let api = app.admin();
    let svc = api.create("/services", json!({"name": "Money"})).await;
    for (sent, stored) in [
        ("-0", "0.00"),
        ("1.", "1.00"),
        (".5", "0.50"),
        ("+1", "1.00"),
    ] {
        let plan = api
            .create(
                "/plans",
                json!({"service_id": svc["id"], "name": "P", "fixed_fee": sent}),
            )
            .await;
        assert_eq!(plan["fixed_fee"], stored, "{sent}");
    }
}

#[tokio::test]
async fn plan_update_replaces_limits_and_prices_and_delete() {
    let app = TestApp::new().await;
    let api = app.admin();
    let c = Catalog::new(&app).await;
    let path = format!("/plans/{}", c.plan_id());
    let updated = api
        .ok(
            "PATCH",
            &path,
            Some(json!({
                "fixed_fee": "12.5", "limits": [{"metric": "hits", "period": "hour", "value": 5}],
                "pricing_rules": [
                    {"metric": "forecast", "from": 1, "to": 100, "unit_price": "1", "model": "volume"},
                    {"metric": "forecast", "from": 101, "unit_price": "0.5", "model": "volume"},
                    {"metric": "hits", "from": 1, "unit_price": "2.00", "model": "package", "package_size": 1000}]
            })),
        )
        .await;
    assert_eq!(updated["fixed_fee"], "12.50");
    assert_eq!(updated["setup_fee"], "5.00", "fields not sent are kept");
    assert_eq!(
        updated["limits"],
        json!([{"metric": "hits", "period": "hour", "value": 5}])
    );
    let package = updated["pricing_rules"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["model"] == "package")
        .unwrap();
    assert_eq!(package["package_size"], 1000);
    assert_eq!(api.ok("GET", &path, None).await, updated);
    api.patch(
        &path,
        json!({"pricing_rules": [
            {"metric": "hits", "from": 1, "to": 5, "unit_price": "1", "model": "volume"},
            {"metric": "hits", "from": 6, "unit_price": "1"}]}),
    )
    .await
    .error(422, "mixed_pricing_models");
    api.patch(&path, json!({"service_id": "svc_other"}))
        .await
        .error_at(422, "immutable", "service_id");

    let gone = api.ok("DELETE", &path, None).await;
    assert_eq!(
        gone,
        json!({"object": "plan", "id": c.plan_id(), "deleted": true})
    );
    api.get(&path).await.error(404, "resource_missing");
}
