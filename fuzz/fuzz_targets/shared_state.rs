//! What a gateway reads back from shared data or the control plane besides snapshots: counter
//! records (possibly corrupt or from another version), orphaned meters, the worker registry,
//! and global usage. None may panic, and a corrupt counter record must never let a request
//! past its limit by more than the record claimed.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tollgate_filter::counters::NoOthers;
use tollgate_filter::credentials::extract;
use tollgate_filter::decision::decide;
use tollgate_filter::global::GlobalView;
use tollgate_filter::metering::{registry_decode, Meter};
use tollgate_fuzz::{demo, MemStore, NOW};
use tollgate_protocol::GlobalUsage;

#[global_allocator]
static ALLOC: tollgate_fuzz::Capped = tollgate_fuzz::Capped;

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let (config, catalog) = demo();
    match mode % 4 {
        0 => {
            let mut store = MemStore::default();
            store.put(&catalog.apps[0].counter_key(), rest);
            // app-1: 3 hits a minute. Whatever the record held, at most 3 more are admitted.
            let mut admitted = 0;
            for _ in 0..5 {
                let presented = extract(&config.credentials, "/", |n| {
                    (n == "x-api-key").then_some(b"key-1".as_slice())
                });
                if matches!(
                    decide(&config, &catalog, &NoOthers, presented, "GET", "/", NOW, &mut store),
                    tollgate_filter::decision::Decision::Forward { .. }
                ) {
                    admitted += 1;
                }
            }
            assert!(admitted <= 3, "{admitted} admitted against a limit of 3");
        }
        1 => {
            if let Some(mut meter) = Meter::decode(rest) {
                meter.fold(&catalog);
                let _ = meter.next_report();
                let _ = meter.encode();
            }
        }
        2 => {
            let _ = registry_decode(rest);
        }
        _ => {
            if let Ok(global) = serde_json::from_slice::<GlobalUsage>(rest) {
                let _ = GlobalView::build(&catalog, &global);
            }
        }
    }
});
