//! Native cost of the decision core per request (`cargo bench -p tollgate-filter --bench decide`):
//! credential hashing, lookup among 1,000 applications, mapping rules, the CAS counter update
//! against an in-memory store, and quota header rendering; then the same with the plan on prepaid
//! credit (every application in one wallet: each request also spends from the wallet's record).
//! Host calls are not included; the Envoy benchmark (`cargo xtask bench-filter`) measures the
//! whole filter.

#![allow(clippy::expect_used, clippy::panic)] // a benchmark binary: failing loudly is right

use std::collections::HashMap;
use std::hint::black_box;
use std::time::Instant;

use tollgate_filter::config::{Config, QuotaHeaders};
use tollgate_filter::counters::{ensure_record, NoOthers, SharedStore, StoreError};
use tollgate_filter::credentials::{extract, sha256};
use tollgate_filter::credit;
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
    let plain = measure(false);
    println!("decide + quota headers, 1,000 applications: {plain:?} per request (native, {ITERATIONS} requests)");
    let prepaid = measure(true);
    println!(
        "the same on prepaid credit (one wallet record spent per request): {prepaid:?} per request ({:+} ns)",
        prepaid.as_nanos() as i128 - plain.as_nanos() as i128
    );
}

fn measure(prepaid: bool) -> std::time::Duration {
    let apps: Vec<String> = (0..1_000)
        .map(|i| {
            let hex: String = sha256(format!("bench-key-{i:06}").as_bytes())
                .iter()
                .map(|b| format!("{b:02x}"))
                .collect();
            format!(r#"{{"id": "app-{i}", "plan": "p", "state": "live", "key_sha256": ["{hex}"]}}"#)
        })
        .collect();
    let (prices, wallets) = if prepaid {
        let ids: Vec<String> = (0..1_000).map(|i| format!(r#""app-{i}""#)).collect();
        (
            r#", "credit_prices": [{"metric": "hits", "nano_per_unit": 1}]"#.to_string(),
            format!(
                r#", "wallets": [{{"id": "w", "limit_nano": 1000000000000000000, "applications": [{}]}}]"#,
                ids.join(",")
            ),
        )
    } else {
        (String::new(), String::new())
    };
    let json = format!(
        r#"{{"snapshot": {{"plans": [{{"id": "p", "limits": [{{"metric": "hits", "period": "day", "value": 1000000000000000}}]{prices}}}],
        "applications": [{}], "metrics": [{{"name": "hits"}}],
        "mapping_rules": [{{"method": "GET", "pattern": "/", "metric": "hits", "delta": 1}}]{wallets}}}}}"#,
        apps.join(",")
    );
    let (config, catalog) = Config::parse(json.as_bytes()).expect("bench config");
    let catalog = catalog.expect("inline snapshot");
    assert_eq!(catalog.wallets.len(), usize::from(prepaid));
    let mut store = Store::default();
    for app in &catalog.apps {
        ensure_record(&mut store, app).expect("record");
    }
    for wallet in &catalog.wallets {
        credit::ensure_record(&mut store, wallet).expect("wallet record");
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
    if prepaid {
        let spent = credit::own_spend(&mut store, &catalog.wallets[0]).expect("spend");
        assert_eq!(spent, u64::from(ITERATIONS), "every request paid");
    }
    start.elapsed() / ITERATIONS
}
