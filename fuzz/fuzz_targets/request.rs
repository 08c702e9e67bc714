//! One request as the host hands it over: the serialized header map (raw, or built from fields
//! so the fuzzer reaches deep), credential extraction from every source, path normalization,
//! mapping rules, the limit check and the reply the filter would send.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tollgate_filter::counters::{ensure_record, NoOthers};
use tollgate_filter::credentials::{extract_from, strip_query_params, Source};
use tollgate_filter::decision::{decide, Decision};
use tollgate_filter::header_map::HeaderMap;
use tollgate_filter::response::{local_reply, quota_headers, Headers};
use tollgate_fuzz::{demo, MemStore, NOW};

#[global_allocator]
static ALLOC: tollgate_fuzz::Capped = tollgate_fuzz::Capped;

/// Fields separated by 0xFF (never in a valid header): method, path, then name/value pairs.
fn serialize(fields: &[&[u8]]) -> Vec<u8> {
    let mut pairs: Vec<(&[u8], &[u8])> = vec![
        (b":method", fields.first().copied().unwrap_or(b"GET")),
        (b":path", fields.get(1).copied().unwrap_or(b"/")),
    ];
    let mut rest = fields.iter().skip(2);
    while let (Some(k), Some(v)) = (rest.next(), rest.next()) {
        pairs.push((k, v));
    }
    let mut out = (pairs.len() as u32).to_le_bytes().to_vec();
    for (k, v) in &pairs {
        out.extend_from_slice(&(k.len() as u32).to_le_bytes());
        out.extend_from_slice(&(v.len() as u32).to_le_bytes());
    }
    for (k, v) in &pairs {
        out.extend_from_slice(k);
        out.push(0);
        out.extend_from_slice(v);
        out.push(0);
    }
    out
}

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let buf = if mode & 1 == 0 {
        rest.to_vec()
    } else {
        serialize(&rest.split(|&b| b == 0xFF).collect::<Vec<_>>())
    };
    let headers = HeaderMap::parse(buf);
    let (config, catalog) = demo();
    let mut store = MemStore::default();
    for app in &catalog.apps {
        let _ = ensure_record(&mut store, app);
    }
    // The glue answers 400 to a method or path that is not UTF-8 before anything else.
    let (Ok(path), Ok(method)) = (
        std::str::from_utf8(headers.get(":path").unwrap_or(b"/")),
        std::str::from_utf8(headers.get(":method").unwrap_or(b"GET")),
    ) else {
        return;
    };
    // Twice: the second decision sees the counts the first one wrote.
    for _ in 0..2 {
        let presented = extract_from(&config.credentials, path, &headers);
        match decide(
            &config, &catalog, &NoOthers, presented, method, path, NOW, &mut store,
        ) {
            Decision::Forward { quota, source, .. } => {
                if let Source::Query(names) = &source {
                    let stripped = strip_query_params(path, names);
                    let query = stripped.split_once('?').map_or("", |(_, q)| q);
                    assert!(
                        !query
                            .split('&')
                            .any(|p| names.iter().any(|n| p.split('=').next() == Some(n))),
                        "credential left in {stripped:?}"
                    );
                }
                if let Some(q) = quota {
                    let mut h = Headers::new();
                    quota_headers(&q, config.quota_headers, &mut h);
                }
            }
            Decision::Reject(r) => {
                let reply = local_reply(&r, &catalog, &config.credentials, config.quota_headers);
                assert!((400..600).contains(&reply.status));
                assert!(serde_json::from_slice::<serde_json::Value>(&reply.body).is_ok());
            }
        }
    }
});
