//! What gateways call: the versioned snapshot of a service and usage reports counted exactly
//! once, with gateway tokens that can do nothing else and only for their services.

use serde_json::{json, Value};

use tollgate_control_plane::secrets::sha256_hex;
use tollgate_control_plane::store::now;

use crate::support::{s, Client, TestApp, ADMIN_API};

/// A service with a `search` metric and two mapping rules, a plan limiting both, an account with
/// one application, and a gateway token scoped to the service.
struct World {
    app: TestApp,
    service: Value,
    plan: Value,
    application: Value,
    gateway_token: Value,
}

impl World {
    async fn new() -> World {
        let app = TestApp::new().await;
        let api = app.admin();
        let service = api
            .create("/services", json!({"name": "Gateway test"}))
            .await;
        let sid = s(&service, "id");
        api.create(
            &format!("/services/{sid}/metrics"),
            json!({"name": "search", "parent": "hits"}),
        )
        .await;
        for (pattern, metric) in [("/", "hits"), ("/search$", "search")] {
            api.create(
                &format!("/services/{sid}/mapping_rules"),
                json!({"method": "GET", "pattern": pattern, "metric": metric}),
            )
            .await;
        }
        let plan = api
            .create(
                "/plans",
                json!({"service_id": sid, "name": "P", "limits": [
                    {"metric": "hits", "period": "day", "value": 3},
                    {"metric": "search", "period": "minute", "value": 1}]}),
            )
            .await;
        let account = api
            .create("/accounts", json!({"name": "A", "email": "a@example.com"}))
            .await;
        let application = api
            .create(
                "/applications",
                json!({"account_id": account["id"], "plan_id": plan["id"], "name": "App"}),
            )
            .await;
        let gateway_token = api
            .create(
                "/gateway_tokens",
                json!({"name": "edge-1", "service_ids": [sid]}),
            )
            .await;
        World {
            app,
            service,
            plan,
            application,
            gateway_token,
        }
    }

    fn gw(&self) -> Client<'_> {
        self.app
            .client("/gateway/v1", Some(s(&self.gateway_token, "token")))
    }

    fn sid(&self) -> &str {
        s(&self.service, "id")
    }

    fn app_id(&self) -> &str {
        s(&self.application, "id")
    }

    async fn snapshot(&self, etag: Option<&str>) -> crate::support::Reply {
        let headers: Vec<(&str, &str)> = etag.map(|e| ("if-none-match", e)).into_iter().collect();
        self.gw()
            .request(
                "GET",
                &format!("/services/{}/snapshot", self.sid()),
                None,
                &headers,
            )
            .await
    }

    async fn report(&self, body: Value) -> crate::support::Reply {
        self.gw()
            .post(&format!("/services/{}/usage", self.sid()), body)
            .await
    }

    /// The `hits` total of the application over the last `period`.
    async fn usage(&self, metric: &str, period: &str, since: i64) -> Value {
        self.app
            .admin()
            .ok(
                "GET",
                &format!(
                    "/applications/{}/usage?metric={metric}&period={period}&since={since}",
                    self.app_id()
                ),
                None,
            )
            .await
    }
}

/// The start of the current minute, `offset_secs` from now.
fn minute(offset_secs: i64) -> i64 {
    let t = now() + offset_secs;
    t - t.rem_euclid(60)
}

#[tokio::test]
async fn gateway_tokens_open_the_gateway_api_and_nothing_else() {
    let w = World::new().await;
    let token = s(&w.gateway_token, "token");
    let stored = w
        .app
        .column("SELECT token_sha256 FROM gateway_tokens")
        .await;
    assert_eq!(stored, [sha256_hex(token)]);
    // A gateway token is not an admin token, and an admin token is not a gateway token.
    w.app
        .client(ADMIN_API, Some(token))
        .get("/services")
        .await
        .error(401, "unauthorized");
    let path = format!("/services/{}/snapshot", w.sid());
    w.app
        .client("/gateway/v1", Some(crate::support::ADMIN_TOKEN))
        .get(&path)
        .await
        .error(401, "unauthorized");
    w.app
        .client("/gateway/v1", None)
        .get(&path)
        .await
        .error(401, "unauthorized");
    // Only the token's services: 403 before the service's existence is looked at.
    let other = w
        .app
        .admin()
        .create("/services", json!({"name": "Elsewhere"}))
        .await;
    let elsewhere = format!("/services/{}/snapshot", s(&other, "id"));
    w.gw()
        .get(&elsewhere)
        .await
        .error(403, "insufficient_scope");
    w.gw()
        .get("/services/svc_nope/snapshot")
        .await
        .error(403, "insufficient_scope");
    w.app
        .admin()
        .ok(
            "PATCH",
            &format!("/gateway_tokens/{}", s(&w.gateway_token, "id")),
            Some(json!({"service_ids": [w.sid(), s(&other, "id")]})),
        )
        .await;
    assert_eq!(w.gw().get(&elsewhere).await.status, 200);
    // Revoked: 401.
    w.app
        .admin()
        .ok(
            "DELETE",
            &format!("/gateway_tokens/{}", s(&w.gateway_token, "id")),
            None,
        )
        .await;
    w.snapshot(None).await.error(401, "unauthorized");
}

#[tokio::test]
async fn the_snapshot_carries_the_service_catalog() {
    let w = World::new().await;
    let r = w.snapshot(None).await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.header("content-type"), Some("application/json"));
    let snap = r.json();
    assert_eq!(
        r.header("etag"),
        Some(format!("\"{}\"", s(&snap, "version")).as_str())
    );
    assert_eq!(
        snap["metrics"],
        json!([{"name": "hits"}, {"name": "search", "parent": "hits"}])
    );
    let rules: Vec<(&str, &str, &str)> = snap["mapping_rules"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| (s(r, "method"), s(r, "pattern"), s(r, "metric")))
        .collect();
    assert_eq!(rules, [("GET", "/", "hits"), ("GET", "/search$", "search")]);
    let [plan] = snap["plans"].as_array().unwrap().as_slice() else {
        panic!("{snap}")
    };
    assert_eq!(plan["id"], w.plan["id"]);
    let mut limits = plan["limits"].as_array().unwrap().clone();
    limits.sort_by_key(|l| l["metric"].as_str().unwrap().to_string());
    assert_eq!(
        limits,
        [
            json!({"metric": "hits", "period": "day", "value": 3}),
            json!({"metric": "search", "period": "minute", "value": 1})
        ]
    );
    assert_eq!(
        snap["applications"],
        json!([{"id": w.app_id(), "plan": w.plan["id"], "state": "live",
                "key_sha256": [sha256_hex(s(&w.application, "key"))]}])
    );
    assert!(!snap.to_string().contains(s(&w.application, "key")));

    // The compact encoding, on request: the same snapshot.
    let binary = w
        .gw()
        .request(
            "GET",
            &format!("/services/{}/snapshot", w.sid()),
            None,
            &[("accept", "application/vnd.tollgate.snapshot.v1")],
        )
        .await;
    assert_eq!(binary.status, 200);
    assert_eq!(
        binary.header("content-type"),
        Some("application/vnd.tollgate.snapshot.v1")
    );
    assert_eq!(&binary.body[..4], b"TGS1");
    assert_eq!(binary.header("etag"), r.header("etag"));
}

#[tokio::test]
async fn the_snapshot_version_changes_with_the_catalog_only() {
    let w = World::new().await;
    let api = w.app.admin();
    let first = w.snapshot(None).await;
    let etag = first.header("etag").unwrap().to_string();
    let unchanged = w.snapshot(Some(&etag)).await;
    assert_eq!(unchanged.status, 304);
    assert!(unchanged.body.is_empty());
    assert_eq!(unchanged.header("etag"), Some(etag.as_str()));

    // Reads, refused writes and billing writes leave it.
    api.ok("GET", "/services", None).await;
    api.post("/services", json!({"name": ""}))
        .await
        .error(422, "invalid_name");
    api.ok("PUT", "/billing/settings", Some(json!({"due_days": 10})))
        .await;
    assert_eq!(w.snapshot(Some(&etag)).await.status, 304);

    // A catalog write changes it, and the snapshot says what changed.
    api.ok(
        "POST",
        &format!("/applications/{}/suspend", w.app_id()),
        Some(json!({"reason": "non_payment"})),
    )
    .await;
    let changed = w.snapshot(Some(&etag)).await;
    assert_eq!(changed.status, 200);
    let snap = changed.json();
    assert_ne!(format!("\"{}\"", s(&snap, "version")), etag);
    assert_eq!(snap["applications"][0]["state"], "suspended");
    assert_eq!(snap["applications"][0]["state_reason"], "non_payment");

    // A rotated key whose grace has run out leaves the snapshot with no further write.
    let etag = changed.header("etag").unwrap().to_string();
    let key_id = s(&w.application, "key_id");
    let rotated = api
        .create(
            &format!("/applications/{}/keys/{key_id}/rotate", w.app_id()),
            json!({"grace_seconds": 0}),
        )
        .await;
    let after = w.snapshot(Some(&etag)).await;
    assert_eq!(after.status, 200);
    assert_eq!(
        after.json()["applications"][0]["key_sha256"],
        json!([sha256_hex(s(&rotated, "key"))])
    );
    // A new plan, a new mapping rule: there in the next snapshot.
    let etag = after.header("etag").unwrap().to_string();
    api.create(
        &format!("/services/{}/mapping_rules", w.sid()),
        json!({"method": "POST", "pattern": "/orders$", "metric": "hits", "delta": 5}),
    )
    .await;
    let with_rule = w.snapshot(Some(&etag)).await;
    assert_eq!(with_rule.status, 200);
    let rules = with_rule.json()["mapping_rules"].clone();
    assert_eq!(rules.as_array().unwrap().len(), 3);
    assert_eq!(rules[2]["delta"], 5);
}

#[tokio::test]
async fn usage_is_counted_exactly_once() {
    let w = World::new().await;
    let app_id = w.app_id();
    let t = minute(-3600);
    let entries = json!([
        {"application": app_id, "metric": "hits", "bucket_start": t, "delta": 5},
        {"application": app_id, "metric": "search", "bucket_start": t, "delta": 2},
        {"application": app_id, "metric": "hits", "bucket_start": t + 60, "delta": 1},
        {"application": "app_gone", "metric": "hits", "bucket_start": t, "delta": 9},
        {"application": app_id, "metric": "no_such_metric", "bucket_start": t, "delta": 9}
    ]);
    let report = json!({"gateway": "gw-a", "sequence": 1, "entries": entries});
    let first = w.report(report.clone()).await;
    assert_eq!(first.status, 200, "{}", first.text());
    assert_eq!(
        first.json(),
        json!({"duplicate": false, "accepted": 3, "ignored": 2})
    );
    let counters = w.app.row_counts().await;
    // The same report again (a retry after a lost answer) is a duplicate and changes nothing.
    let replay = w.report(report).await;
    assert_eq!(
        replay.json(),
        json!({"duplicate": true, "accepted": 0, "ignored": 0})
    );
    assert_eq!(w.app.row_counts().await, counters);
    let hits = w.usage("hits", "hour", t - 3600).await;
    assert_eq!(hits["total"], 6);
    // Another gateway's sequence 1 is another report.
    let other = w
        .report(json!({"gateway": "gw-b", "sequence": 1, "entries": [entries[0]]}))
        .await;
    assert_eq!(other.json()["duplicate"], false);
    let hits = w.usage("hits", "hour", t - 3600).await;
    assert_eq!(hits["total"], 5 + 1 + 5);
    let buckets = hits["buckets"].as_array().unwrap();
    assert!(buckets
        .iter()
        .all(|b| b["start"].as_i64().unwrap() % 3600 == 0));
    assert_eq!(
        buckets
            .iter()
            .map(|b| b["value"].as_i64().unwrap())
            .sum::<i64>(),
        11
    );
    let day = w.usage("search", "day", t - 86_400).await;
    assert_eq!(day["total"], 2);
    assert_eq!(day["buckets"].as_array().unwrap().len(), 1);
    assert_eq!(day["buckets"][0]["start"].as_i64().unwrap() % 86_400, 0);
    // An empty report is a report: its sequence is used.
    let empty = json!({"gateway": "gw-a", "sequence": 2, "entries": []});
    assert_eq!(
        w.report(empty.clone()).await.json(),
        json!({"duplicate": false, "accepted": 0, "ignored": 0})
    );
    assert_eq!(w.report(empty).await.json()["duplicate"], true);
}

#[tokio::test]
async fn a_report_repeating_counters_adds_each_entry_once() {
    // Reports are aggregated per counter before one upsert per table: repeated entries of one
    // counter add up, a replay adds nothing, and the per-instance minutes and hours agree.
    let w = World::new().await;
    let app_id = w.app_id();
    let t = minute(-600);
    let mut entries = Vec::new();
    for _ in 0..50 {
        entries
            .push(json!({"application": app_id, "metric": "hits", "bucket_start": t, "delta": 1}));
        entries.push(
            json!({"application": app_id, "metric": "hits", "bucket_start": t + 60, "delta": 2}),
        );
    }
    for _ in 0..10 {
        entries.push(
            json!({"application": app_id, "metric": "search", "bucket_start": t, "delta": 3}),
        );
    }
    // Unknown ids of any text are ignored, never confused with a known one.
    for odd in [format!("x\",\"{app_id}"), "NULL".into(), "{}".into()] {
        entries.push(json!({"application": odd, "metric": "hits", "bucket_start": t, "delta": 9}));
    }
    let before = w.app.row_counts().await;
    let report =
        json!({"gateway": "gw-r", "instance": "envoy-a", "sequence": 1, "entries": entries});
    let first = w.report(report.clone()).await;
    assert_eq!(
        first.json(),
        json!({"duplicate": false, "accepted": 110, "ignored": 3}),
        "{}",
        first.text()
    );
    let after = w.app.row_counts().await;
    // One row per counter: (hits, t), (hits, t + 60), (search, t) per instance and minute.
    assert_eq!(
        after["usage_instance_minutes"] - before["usage_instance_minutes"],
        3
    );
    assert_eq!(w.report(report).await.json()["duplicate"], true);
    assert_eq!(w.app.row_counts().await, after, "a replay writes nothing");
    assert_eq!(w.usage("hits", "hour", t - 3600).await["total"], 150);
    assert_eq!(w.usage("search", "hour", t - 3600).await["total"], 30);
    let others = w
        .gw()
        .get(&format!(
            "/services/{}/global_usage?instance=envoy-b",
            w.sid()
        ))
        .await
        .json();
    let day = others["entries"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["metric"] == "hits" && e["period"] == "day")
        .map(|e| e["value"].clone());
    // Unless the ten minutes before now straddle midnight UTC, all of it is today's.
    if t.div_euclid(86_400) == now().div_euclid(86_400) {
        assert_eq!(day, Some(json!(150)), "{others}");
    }
}

#[tokio::test]
async fn bad_reports_are_refused_and_change_nothing() {
    let w = World::new().await;
    let app_id = w.app_id();
    let t = minute(0);
    let entry = |bucket_start: i64, delta: Value| json!([{"application": app_id, "metric": "hits", "bucket_start": bucket_start, "delta": delta}]);
    let too_many: Vec<Value> = (0..10_001)
        .map(|_| json!({"application": "a", "metric": "hits", "bucket_start": t, "delta": 1}))
        .collect();
    let half = 1u64 << 39;
    let cases: Vec<(Value, u16, &str, &str)> = vec![
        (
            json!({"gateway": "", "sequence": 1, "entries": []}),
            422,
            "invalid_gateway",
            "gateway",
        ),
        (
            json!({"gateway": "g".repeat(129), "sequence": 1, "entries": []}),
            422,
            "invalid_gateway",
            "gateway",
        ),
        (
            json!({"gateway": "g", "instance": "", "sequence": 1, "entries": []}),
            422,
            "invalid_instance",
            "instance",
        ),
        (
            json!({"gateway": "g", "sequence": 1, "entries": entry(t + 1, json!(1))}),
            422,
            "invalid_bucket",
            "entries[0].bucket_start",
        ),
        (
            json!({"gateway": "g", "sequence": 1, "entries": entry(minute(-8 * 86_400), json!(1))}),
            422,
            "invalid_bucket",
            "entries[0].bucket_start",
        ),
        (
            json!({"gateway": "g", "sequence": 1, "entries": entry(minute(600), json!(1))}),
            422,
            "invalid_bucket",
            "entries[0].bucket_start",
        ),
        (
            json!({"gateway": "g", "sequence": 1, "entries": entry(t, json!(0))}),
            422,
            "invalid_delta",
            "entries[0].delta",
        ),
        (
            json!({"gateway": "g", "sequence": 1, "entries": entry(t, json!((1u64 << 40) + 1))}),
            422,
            "invalid_delta",
            "entries[0].delta",
        ),
        (
            json!({"gateway": "g", "sequence": 1, "entries": [
                {"application": app_id, "metric": "hits", "bucket_start": t, "delta": half},
                {"application": app_id, "metric": "hits", "bucket_start": t, "delta": half},
                {"application": app_id, "metric": "hits", "bucket_start": t, "delta": 1}]}),
            422,
            "counter_delta_too_large",
            "entries[2].delta",
        ),
        (
            json!({"gateway": "g", "sequence": 1, "entries": too_many}),
            422,
            "too_many_entries",
            "entries",
        ),
        (
            json!({"gateway": "g", "sequence": -1, "entries": []}),
            400,
            "invalid_json",
            "sequence",
        ),
        (
            json!({"gateway": "g", "sequence": 1, "entries": entry(t, json!(-1))}),
            400,
            "invalid_json",
            "entries[0].delta",
        ),
    ];
    let before = w.app.row_counts().await;
    for (bad, status, code, param) in cases {
        w.report(bad).await.error_at(status, code, param);
    }
    w.gw()
        .raw(
            "POST",
            &format!("/services/{}/usage", w.sid()),
            Some(b"{nope".to_vec()),
            &[],
        )
        .await
        .error(400, "invalid_json");
    assert_eq!(w.app.row_counts().await, before);
    // No refused report consumed the sequence: the same (gateway, sequence) with a good body counts.
    let good = w
        .report(json!({"gateway": "g", "sequence": 1, "entries": entry(t, json!(1))}))
        .await;
    assert_eq!(
        good.json(),
        json!({"duplicate": false, "accepted": 1, "ignored": 0})
    );
}

#[tokio::test]
async fn applications_outside_the_tokens_services_refuse_the_whole_report() {
    let w = World::new().await;
    let api = w.app.admin();
    let other = api.create("/services", json!({"name": "Other"})).await;
    let plan = api
        .create("/plans", json!({"service_id": other["id"], "name": "Q"}))
        .await;
    let account = api
        .create("/accounts", json!({"name": "B", "email": "b@example.com"}))
        .await;
    let foreign = api
        .create(
            "/applications",
            json!({"account_id": account["id"], "plan_id": plan["id"], "name": "Foreign"}),
        )
        .await;
    let t = minute(0);
    let before = w.app.row_counts().await;
    w.report(json!({"gateway": "g", "sequence": 7, "entries": [
        {"application": w.app_id(), "metric": "hits", "bucket_start": t, "delta": 1},
        {"application": foreign["id"], "metric": "hits", "bucket_start": t, "delta": 1}]}))
        .await
        .error_at(422, "application_out_of_scope", "entries[1].application");
    assert_eq!(w.app.row_counts().await, before, "nothing was recorded");
    // Reporting for a service outside the token's scope: 403.
    w.gw()
        .post(
            &format!("/services/{}/usage", s(&other, "id")),
            json!({"gateway": "g", "sequence": 8, "entries": []}),
        )
        .await
        .error(403, "insufficient_scope");
}

#[tokio::test]
async fn global_usage_is_what_other_instances_used() {
    let w = World::new().await;
    let app_id = w.app_id();
    let t = minute(0);
    for (gateway, instance, delta) in [
        ("a-w1", "envoy-a", 2),
        ("a-w2", "envoy-a", 3),
        ("b-w1", "envoy-b", 4),
    ] {
        let r = w
            .report(
                json!({"gateway": gateway, "instance": instance, "sequence": 1, "entries": [
                {"application": app_id, "metric": "hits", "bucket_start": t, "delta": delta}]}),
            )
            .await;
        assert_eq!(r.json()["accepted"], 1, "{}", r.text());
    }
    // A duplicate adds nothing here either.
    w.report(
        json!({"gateway": "b-w1", "instance": "envoy-b", "sequence": 1, "entries": [
        {"application": app_id, "metric": "hits", "bucket_start": t, "delta": 4}]}),
    )
    .await;
    let others = |instance: &'static str| {
        let w = &w;
        async move {
            let r = w
                .gw()
                .get(&format!(
                    "/services/{}/global_usage?instance={instance}",
                    w.sid()
                ))
                .await;
            assert_eq!(r.status, 200, "{}", r.text());
            r.json()["entries"]
                .as_array()
                .unwrap()
                .iter()
                .map(|e| {
                    (
                        format!(
                            "{}/{}/{}",
                            s(e, "application"),
                            s(e, "metric"),
                            s(e, "period")
                        ),
                        e["value"].as_i64().unwrap(),
                    )
                })
                .collect::<std::collections::BTreeMap<String, i64>>()
        }
    };
    let key = format!("{app_id}/hits/day");
    assert_eq!(others("envoy-a").await[&key], 4);
    assert_eq!(others("envoy-b").await[&key], 5);
    assert_eq!(others("envoy-c").await[&key], 9);
    assert!(
        !others("envoy-c")
            .await
            .contains_key(&format!("{app_id}/search/minute")),
        "no search usage anywhere"
    );
    assert_eq!(w.usage("hits", "day", t - 86_400).await["total"], 9);
    w.gw()
        .get(&format!("/services/{}/global_usage", w.sid()))
        .await
        .error(400, "invalid_query");
}
