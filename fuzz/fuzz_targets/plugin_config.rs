//! The plugin configuration as Envoy or Kong hands it to `on_configure` (JSON, any bytes), and
//! a request decided against whatever catalog it compiled to.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tollgate_filter::config::Config;
use tollgate_filter::counters::{ensure_record, NoOthers};
use tollgate_filter::credentials::extract;
use tollgate_filter::decision::decide;
use tollgate_fuzz::{MemStore, NOW};

#[global_allocator]
static ALLOC: tollgate_fuzz::Capped = tollgate_fuzz::Capped;

fuzz_target!(|data: &[u8]| {
    let Ok((config, Some(catalog))) = Config::parse(data) else {
        return;
    };
    let mut store = MemStore::default();
    for app in catalog.apps.iter().take(8) {
        let _ = ensure_record(&mut store, app);
    }
    for (method, path) in [("GET", "/"), ("POST", "/a/b?api_key=k")] {
        let presented = extract(&config.credentials, path, |_| Some(b"k".as_slice()));
        let _ = decide(
            &config, &catalog, &NoOthers, presented, method, path, NOW, &mut store,
        );
    }
});
