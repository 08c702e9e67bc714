//! End-to-end tests of the decision core against an in-memory shared store with Envoy's CAS
//! semantics. The same tests run compiled to wasm32 under Node (see `cargo xtask test`).

use crate::catalog::Catalog;
use crate::config::{Config, QuotaHeaders};
use crate::counters::tests::FakeStore;
use crate::counters::{ensure_record, NoOthers, StoreError};
use crate::credentials::{extract, sha256};
use crate::decision::{decide, Decision, Reason};
use crate::response::{local_reply, quota_headers, Headers, LocalReply};

// 2026-11-25T17:31:12Z.
const NOW: i64 = 1_795_627_872;

fn hex(d: [u8; 32]) -> String {
    d.iter().map(|b| format!("{b:02x}")).collect()
}

fn config(extra: &str) -> (Config, Catalog) {
    let json = format!(
        r#"{{{extra}"snapshot": {{
          "plans": [
            {{"id": "basic", "limits": [{{"metric": "hits", "period": "minute", "value": 3}}]}},
            {{"id": "search-plan", "limits": [
                {{"metric": "hits", "period": "day", "value": 100}},
                {{"metric": "search", "period": "minute", "value": 2}}]}},
            {{"id": "unlimited"}}],
          "applications": [
            {{"id": "app-1", "plan": "basic", "state": "live", "key_sha256": ["{k1}"]}},
            {{"id": "app-2", "plan": "search-plan", "state": "live", "key_sha256": ["{k2}"], "app_id": "id-2"}},
            {{"id": "app-3", "plan": "basic", "state": "suspended", "key_sha256": ["{k3}"], "app_id": "id-3", "app_key_sha256": ["{shared}"]}},
            {{"id": "app-4", "plan": "basic", "state": "suspended", "state_reason": "non_payment", "key_sha256": ["{k4}"]}},
            {{"id": "app-5", "plan": "unlimited", "state": "live", "key_sha256": ["{k5}"], "app_id": "id-5", "app_key_sha256": ["{shared}", "{ak5}"]}},
            {{"id": "app-6", "plan": "unlimited", "state": "live", "app_id": "id-6", "app_key_sha256": ["{shared}"]}}],
          "metrics": [{{"name": "hits"}}, {{"name": "search", "parent": "hits"}}],
          "mapping_rules": [
            {{"method": "GET", "pattern": "/", "metric": "hits", "delta": 1}},
            {{"method": "GET", "pattern": "/search$", "metric": "search", "delta": 1}},
            {{"method": "POST", "pattern": "/bulk/{{id}}$", "metric": "hits", "delta": 5}}]}}}}"#,
        k1 = hex(sha256(b"key-1")),
        k2 = hex(sha256(b"key-2")),
        k3 = hex(sha256(b"key-3")),
        k4 = hex(sha256(b"key-4")),
        k5 = hex(sha256(b"key-5")),
        shared = hex(sha256(b"shared-app-key")),
        ak5 = hex(sha256(b"app-key-5")),
    );
    let (config, catalog) = Config::parse(json.as_bytes()).unwrap();
    (config, catalog.unwrap())
}

struct Harness {
    config: Config,
    catalog: Catalog,
    store: FakeStore,
}

impl Harness {
    fn new() -> Self {
        let (config, catalog) = config("");
        let mut store = FakeStore::default();
        for app in &catalog.apps {
            ensure_record(&mut store, app).unwrap();
        }
        Harness {
            config,
            catalog,
            store,
        }
    }

    fn call(&mut self, method: &str, path: &str, key: Option<&str>, now: i64) -> Decision<'_> {
        let presented = extract(&self.config.credentials, path, |name| {
            (name == "x-api-key")
                .then_some(key.map(str::as_bytes))
                .flatten()
        });
        decide(
            &self.config,
            &self.catalog,
            &NoOthers,
            presented,
            method,
            path,
            now,
            &mut self.store,
        )
    }

    /// The local reply for a request that must be rejected.
    fn reply(&mut self, path: &str, key: Option<&str>) -> LocalReply {
        let Harness {
            config,
            catalog,
            store,
        } = self;
        let presented = extract(&config.credentials, path, |name| {
            (name == "x-api-key")
                .then_some(key.map(str::as_bytes))
                .flatten()
        });
        match decide(
            config, catalog, &NoOthers, presented, "GET", path, NOW, store,
        ) {
            Decision::Reject(r) => {
                local_reply(&r, catalog, &config.credentials, config.quota_headers)
            }
            other => panic!("expected a rejection, got {other:?}"),
        }
    }

    fn reason(&mut self, method: &str, path: &str, key: Option<&str>) -> Option<Reason> {
        match self.call(method, path, key, NOW) {
            Decision::Forward { .. } => None,
            Decision::Reject(r) => Some(r.reason),
        }
    }
}

#[test]
fn authentication_outcomes() {
    let mut h = Harness::new();
    assert_eq!(h.reason("GET", "/", None), Some(Reason::MissingCredentials));
    assert_eq!(
        h.reason("GET", "/", Some("nope")),
        Some(Reason::InvalidCredentials)
    );
    assert_eq!(
        h.reason("GET", "/", Some("key-3")),
        Some(Reason::ApplicationSuspended)
    );
    assert_eq!(
        h.reason("GET", "/", Some("key-4")),
        Some(Reason::PaymentRequired)
    );
    assert_eq!(h.reason("GET", "/", Some("key-1")), None);
    assert_eq!(h.reason("GET", "/?api_key=key-1", None), None);
    assert_eq!(h.reason("GET", "/?app_id=id-2&app_key=key-2", None), None);
    assert_eq!(
        h.reason("GET", "/?app_id=id-2&app_key=key-1", None),
        Some(Reason::InvalidCredentials)
    );
    assert_eq!(
        h.reason("GET", "/?app_id=nope&app_key=key-2", None),
        Some(Reason::InvalidCredentials)
    );
}

/// Issue 22: app keys (3scale's model) open their application only with its app_id; two
/// applications may hold the same app key; an app key alone is no API key; a suspended
/// application's pair is refused like its key.
#[test]
fn app_id_and_app_key_pairs() {
    let mut h = Harness::new();
    let app_of =
        |h: &mut Harness, path: &str, key: Option<&str>| match h.call("GET", path, key, NOW) {
            Decision::Forward { app, .. } => Ok(app.id.clone()),
            Decision::Reject(r) => Err(r.reason),
        };
    assert_eq!(
        app_of(&mut h, "/?app_id=id-5&app_key=shared-app-key", None),
        Ok("app-5".to_string())
    );
    assert_eq!(
        app_of(&mut h, "/?app_id=id-6&app_key=shared-app-key", None),
        Ok("app-6".to_string())
    );
    assert_eq!(
        app_of(&mut h, "/?app_id=id-5&app_key=app-key-5", None),
        Ok("app-5".to_string())
    );
    // Another application's app key, another application's API key, an app key alone.
    assert_eq!(
        app_of(&mut h, "/?app_id=id-6&app_key=app-key-5", None),
        Err(Reason::InvalidCredentials)
    );
    assert_eq!(
        app_of(&mut h, "/?app_id=id-5&app_key=key-1", None),
        Err(Reason::InvalidCredentials)
    );
    assert_eq!(
        app_of(&mut h, "/", Some("shared-app-key")),
        Err(Reason::InvalidCredentials)
    );
    assert_eq!(
        app_of(&mut h, "/?app_id=id-3&app_key=shared-app-key", None),
        Err(Reason::ApplicationSuspended)
    );
}

#[test]
fn limit_admits_exactly_n_then_429_with_retry_after() {
    let mut h = Harness::new();
    for expected_remaining in [2, 1, 0] {
        match h.call("GET", "/", Some("key-1"), NOW) {
            Decision::Forward {
                quota: Some(q),
                app,
                ..
            } => {
                assert_eq!(app.id, "app-1");
                assert_eq!(q.remaining, expected_remaining);
                assert_eq!(q.reset_in, Some(48));
                assert_eq!(q.window_secs, Some(60));
            }
            other => panic!("expected forward, got {other:?}"),
        }
    }
    let reply = h.reply("/", Some("key-1"));
    assert_eq!(reply.status, 429);
    let header = |n: &str| {
        reply
            .headers
            .iter()
            .find(|(k, _)| *k == n)
            .map(|(_, v)| v.clone())
    };
    assert_eq!(header("retry-after").as_deref(), Some("48"));
    assert_eq!(
        header("ratelimit").as_deref(),
        Some("\"hits-minute\";r=0;t=48")
    );
    assert_eq!(
        header("ratelimit-policy").as_deref(),
        Some("\"hits-minute\";q=3;w=60")
    );
    assert_eq!(header("x-ratelimit-remaining").as_deref(), Some("0"));
    assert_eq!(
        header("content-type").as_deref(),
        Some("application/problem+json")
    );
    let body: serde_json::Value = serde_json::from_slice(&reply.body).unwrap();
    assert_eq!(body["code"], "limit_exceeded");
    assert_eq!(body["status"], 429);
    assert_eq!(body["limit"]["metric"], "hits");
    assert_eq!(body["limit"]["period"], "minute");
    assert_eq!(body["limit"]["value"], 3);
    // The next minute starts afresh.
    assert!(matches!(
        h.call("GET", "/", Some("key-1"), NOW + 48),
        Decision::Forward { .. }
    ));
}

#[test]
fn rejected_request_counts_nothing() {
    let mut h = Harness::new();
    // app-2: hits 100/day, search 2/minute; search rolls up into hits.
    for _ in 0..2 {
        assert_eq!(h.reason("GET", "/search", Some("key-2")), None);
    }
    for _ in 0..5 {
        assert_eq!(
            h.reason("GET", "/search", Some("key-2")),
            Some(Reason::LimitExceeded)
        );
    }
    // Every matching rule applies (3scale): GET /search matches `/` (hits +1) and `/search$`
    // (search +1, rolled up into hits +1). Two admitted searches = 4 hits, the five rejected ones
    // none, and this request 1 more.
    let Decision::Forward { quota: Some(q), .. } = h.call("GET", "/other", Some("key-2"), NOW)
    else {
        panic!()
    };
    assert_eq!(q.limit.policy_name, "hits-day");
    assert_eq!(q.remaining, 100 - 5);
}

#[test]
fn most_constrained_limit_is_reported() {
    let mut h = Harness::new();
    let Decision::Forward { quota: Some(q), .. } = h.call("GET", "/search", Some("key-2"), NOW)
    else {
        panic!()
    };
    // search: 1 left of 2 per minute beats hits: 99 left of 100 per day.
    assert_eq!(q.limit.policy_name, "search-minute");
    assert_eq!(q.remaining, 1);
    let mut headers = Headers::new();
    quota_headers(&q, QuotaHeaders::Both, &mut headers);
    assert_eq!(
        headers,
        vec![
            ("ratelimit-policy", "\"search-minute\";q=2;w=60".to_string()),
            ("ratelimit", "\"search-minute\";r=1;t=48".to_string()),
            ("x-ratelimit-limit", "2".to_string()),
            ("x-ratelimit-remaining", "1".to_string()),
            ("x-ratelimit-reset", "48".to_string()),
        ]
    );
    let names = |which| {
        let mut h = Headers::new();
        quota_headers(&q, which, &mut h);
        h.into_iter().map(|(n, _)| n).collect::<Vec<_>>()
    };
    assert_eq!(
        names(QuotaHeaders::Draft),
        ["ratelimit-policy", "ratelimit"]
    );
    assert_eq!(
        names(QuotaHeaders::XRatelimit),
        [
            "x-ratelimit-limit",
            "x-ratelimit-remaining",
            "x-ratelimit-reset"
        ]
    );
    assert!(names(QuotaHeaders::None).is_empty());
}

#[test]
fn delta_larger_than_remaining_is_rejected_whole() {
    let mut h = Harness::new();
    assert_eq!(h.reason("GET", "/", Some("key-1")), None);
    // POST /bulk/x costs 5 hits; 2 remain: rejected, and the 2 are still there afterwards.
    assert_eq!(
        h.reason("POST", "/bulk/x", Some("key-1")),
        Some(Reason::LimitExceeded)
    );
    assert_eq!(h.reason("GET", "/", Some("key-1")), None);
    assert_eq!(h.reason("GET", "/", Some("key-1")), None);
    assert_eq!(
        h.reason("GET", "/", Some("key-1")),
        Some(Reason::LimitExceeded)
    );
}

#[test]
fn every_spelling_of_a_metered_path_is_metered_alike() {
    let mut h = Harness::new();
    // search-plan allows 2 searches a minute: each spelling uses one, the third is refused.
    for path in ["/x/../search", "//s%65arch?q=1"] {
        let Decision::Forward { usage, .. } = h.call("GET", path, Some("key-2"), NOW) else {
            panic!("{path} should be admitted")
        };
        assert_eq!(usage.len(), 2, "{path} counts search and hits: {usage:?}");
    }
    assert_eq!(
        h.reason("GET", "/./search", Some("key-2")),
        Some(Reason::LimitExceeded)
    );
    assert_eq!(
        h.reason("GET", "/search%zz", Some("key-2")),
        Some(Reason::MalformedRequest)
    );
    // Methods are case-sensitive (RFC 9110): `get` is not `GET`, so no rule matches.
    assert_eq!(
        h.reason("get", "/", Some("key-1")),
        Some(Reason::NoMappingRule)
    );
}

#[test]
fn no_matching_rule_is_404_and_plan_without_limits_has_no_quota() {
    let mut h = Harness::new();
    assert_eq!(
        h.reason("DELETE", "/", Some("key-5")),
        Some(Reason::NoMappingRule)
    );
    for _ in 0..10 {
        let Decision::Forward { quota, .. } = h.call("GET", "/", Some("key-5"), NOW) else {
            panic!()
        };
        assert_eq!(quota, None);
    }
}

#[test]
fn cas_races_are_retried_and_persistent_contention_fails_closed() {
    let mut h = Harness::new();
    h.store.fail_next_sets = 5;
    assert_eq!(h.reason("GET", "/", Some("key-1")), None);
    h.store.fail_next_sets = usize::MAX;
    assert_eq!(
        h.reason("GET", "/", Some("key-1")),
        Some(Reason::Unavailable)
    );
    h.store.fail_next_sets = 0;
    // Exactly one of the two attempts above was counted.
    assert_eq!(h.reason("GET", "/", Some("key-1")), None);
    assert_eq!(h.reason("GET", "/", Some("key-1")), None);
    assert_eq!(
        h.reason("GET", "/", Some("key-1")),
        Some(Reason::LimitExceeded)
    );
}

#[test]
fn fail_open_forwards_uncounted() {
    let mut h = Harness::new();
    h.config = config(r#""fail_mode": "open", "#).0;
    h.store.fail_next_sets = usize::MAX;
    let Decision::Forward {
        uncounted, quota, ..
    } = h.call("GET", "/", Some("key-1"), NOW)
    else {
        panic!()
    };
    assert_eq!(uncounted, Some(StoreError::Contended));
    assert_eq!(quota, None);
}

#[test]
fn interleaved_workers_never_over_admit() {
    // Two "workers" read the same record, then both try to write: the loser must re-read.
    let mut h = Harness::new();
    let catalog = &h.catalog;
    let app = catalog.app_by_key_digest(&sha256(b"key-1")).unwrap();
    let mut admitted = 0;
    for i in 0..20 {
        // Every other call, a competing write lands between our read and our write.
        h.store.fail_next_sets = i % 2;
        let usage = crate::decision::usage_of(catalog, "GET", "/").unwrap();
        if let Ok(crate::counters::Enforcement::Admitted { .. }) = crate::counters::enforce(
            &mut h.store,
            catalog,
            app,
            catalog.plan_of(app),
            &usage,
            &NoOthers,
            NOW,
        ) {
            admitted += 1;
        }
    }
    assert_eq!(admitted, 3);
}

#[test]
fn unauthorized_reply_carries_www_authenticate() {
    let mut h = Harness::new();
    let reply = h.reply("/", None);
    assert_eq!(reply.status, 401);
    let www = reply
        .headers
        .iter()
        .find(|(k, _)| *k == "www-authenticate")
        .unwrap();
    assert!(www.1.starts_with("Bearer realm=\"tollgate\""), "{}", www.1);
    assert!(www.1.contains("header=\"x-api-key\""), "{}", www.1);
    let body: serde_json::Value = serde_json::from_slice(&reply.body).unwrap();
    assert_eq!(body["type"], "urn:tollgate:problem:missing_credentials");
}

#[test]
fn snapshot_limit_change_keeps_counts_of_unchanged_limits() {
    let mut h = Harness::new();
    assert_eq!(h.reason("GET", "/", Some("key-1")), None);
    assert_eq!(h.reason("GET", "/", Some("key-1")), None);
    // Same store, new configuration with the limit raised to 4: two used, two left.
    let (_, mut catalog) = config("");
    catalog.plans[0].limits[0].value = 4;
    h.catalog = catalog;
    assert_eq!(h.reason("GET", "/", Some("key-1")), None);
    assert_eq!(h.reason("GET", "/", Some("key-1")), None);
    assert_eq!(
        h.reason("GET", "/", Some("key-1")),
        Some(Reason::LimitExceeded)
    );
}

/// Other gateway instances used this much of every window (a fixed answer for the test).
struct Others(u64);

impl crate::counters::OthersUsage for Others {
    fn get(
        &self,
        _app: usize,
        _metric: usize,
        _period: tollgate_protocol::Period,
        _window_start: i64,
    ) -> u64 {
        self.0
    }
}

#[test]
fn other_instances_usage_counts_toward_the_limit() {
    let mut h = Harness::new();
    let presented = || {
        extract(&h.config.credentials, "/", |n| {
            (n == "x-api-key").then_some(&b"key-1"[..])
        })
    };
    // app-1: 3 hits per minute, 2 already used elsewhere: one left here.
    let p = presented();
    let Decision::Forward { quota: Some(q), .. } = decide(
        &h.config,
        &h.catalog,
        &Others(2),
        p,
        "GET",
        "/",
        NOW,
        &mut h.store,
    ) else {
        panic!("the first request fits")
    };
    assert_eq!(q.remaining, 0);
    let p = presented();
    let Decision::Reject(r) = decide(
        &h.config,
        &h.catalog,
        &Others(2),
        p,
        "GET",
        "/",
        NOW,
        &mut h.store,
    ) else {
        panic!("the second does not")
    };
    assert_eq!(r.reason, Reason::LimitExceeded);
    // Locally only one was counted: without the others, two more fit.
    assert_eq!(h.reason("GET", "/", Some("key-1")), None);
    assert_eq!(h.reason("GET", "/", Some("key-1")), None);
    assert_eq!(
        h.reason("GET", "/", Some("key-1")),
        Some(Reason::LimitExceeded)
    );
}
