//! Native cost of the decision core per request (`cargo bench -p tollgate-filter --bench decide`):
//! credential hashing, lookup among 1,000 applications, mapping rules, the CAS counter update
//! against an in-memory store, and quota header rendering. Host calls are not included; the
//! Envoy benchmark (`cargo xtask bench-filter`) measures the whole filter.

#![allow(clippy::expect_used, clippy::panic)] // a benchmark binary: failing loudly is right

use std::collections::HashMap;
use std::hint::black_box;
use std::time::Instant;

use tollgate_filter::config::{Config, QuotaHeaders};
use tollgate_filter::counters::{ensure_record, NoOthers, SharedStore, StoreError};
use tollgate_filter::credentials::{extract, sha256};
use tollgate_filter::decision::{decide, Decision};
use tollgate_filter::response::{quota_headers, Headers};

/// Requests per measurement; bounded so the bench ends in about a second.
const ITERATIONS: u32 = 200_000;

#[derive(Default)]
struct Store(HashMap<String, (Vec<u8>, u32)>, u32);

impl SharedStore for Store {
    fn get(&mut self, key: &str) -> Result<(Option<Vec<u8>>, Option<u32>), StoreError> {
        Ok(self
            .0
            .get(key)
            .map_or((None, None), |(v, c)| (Some(v.clone()), Some(*c))))
    }
    fn set(&mut self, key: &str, value: &[u8], _cas: Option<u32>) -> Result<bool, StoreError> {
        self.1 += 1;
        self.0.insert(key.to_string(), (value.to_vec(), self.1));
        Ok(true)
    }
}

fn main() {
    let apps: Vec<String> = (0..1_000)
        .map(|i| {
            let hex: String = sha256(format!("bench-key-{i:06}").as_bytes())
                .iter()
                .map(|b| format!("{b:02x}"))
                .collect();
            format!(r#"{{"id": "app-{i}", "plan": "p", "state": "live", "key_sha256": ["{hex}"]}}"#)
        })
        .collect();
    let json = format!(
        r#"{{"snapshot": {{"plans": [{{"id": "p", "limits": [{{"metric": "hits", "period": "day", "value": 1000000000000000}}]}}],
        "applications": [{}], "metrics": [{{"name": "hits"}}],
        "mapping_rules": [{{"method": "GET", "pattern": "/", "metric": "hits", "delta": 1}}]}}}}"#,
        apps.join(",")
    );
    let (config, catalog) = Config::parse(json.as_bytes()).expect("bench config");
    let catalog = catalog.expect("inline snapshot");
    let mut store = Store::default();
    for app in &catalog.apps {
        ensure_record(&mut store, app).expect("record");
    }
    let key = b"bench-key-000500".to_vec();
    let start = Instant::now();
    for _ in 0..ITERATIONS {
        let presented = extract(&config.credentials, "/", |n| {
            (n == "x-api-key").then_some(key.as_slice())
        });
        match decide(
            &config,
            &catalog,
            &NoOthers,
            presented,
            "GET",
            "/",
            1_795_627_872,
            &mut store,
        ) {
            Decision::Forward { quota: Some(q), .. } => {
                let mut h = Headers::new();
                quota_headers(&q, QuotaHeaders::Both, &mut h);
                black_box(h);
            }
            other => panic!("unexpected {other:?}"),
        }
    }
    let per = start.elapsed() / ITERATIONS;
    println!("decide + quota headers, 1,000 applications: {per:?} per request (native, {ITERATIONS} requests)");
}
