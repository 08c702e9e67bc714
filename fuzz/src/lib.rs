//! What the fuzz targets share: an allocator that turns an oversized allocation into a crash
//! (libFuzzer reports it with the input), an in-memory shared store with Envoy's CAS semantics,
//! and a small catalog like the ones gateways run.

use std::alloc::{GlobalAlloc, Layout, System};
use std::collections::HashMap;
use std::io::Write;

use tollgate_filter::catalog::Catalog;
use tollgate_filter::config::Config;
use tollgate_filter::counters::{SharedStore, StoreError};
use tollgate_filter::credentials::sha256;

/// Largest single allocation a target may make. Inputs are at most `MAX_INPUT_BYTES`; a parser
/// that sizes a buffer from a length field instead of from the bytes present would exceed this.
pub const MAX_ALLOCATION_BYTES: usize = 16 * 1024 * 1024;
/// The `-max_len` the fuzz runs use (`cargo xtask fuzz`).
pub const MAX_INPUT_BYTES: usize = 16 * 1024;
/// A fixed clock (2026-11-25T17:31:12Z), so a crash replays the same way.
pub const NOW: i64 = 1_795_627_872;

/// The system allocator, aborting on any single allocation above [`MAX_ALLOCATION_BYTES`].
pub struct Capped;

// A global allocator can only be written as an `unsafe impl`; it forwards to `System` unchanged.
#[allow(unsafe_code)]
unsafe impl GlobalAlloc for Capped {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        check(layout.size());
        System.alloc(layout)
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        check(layout.size());
        System.alloc_zeroed(layout)
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        System.dealloc(ptr, layout)
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        check(new_size);
        System.realloc(ptr, layout, new_size)
    }
}

fn check(size: usize) {
    if size > MAX_ALLOCATION_BYTES {
        // Stderr is unbuffered: writing a static message allocates nothing.
        let _ =
            std::io::stderr().write_all(b"tollgate-fuzz: allocation above MAX_ALLOCATION_BYTES\n");
        std::process::abort();
    }
}

/// Shared data as Envoy keeps it: a CAS token per key that changes on every write.
#[derive(Default)]
pub struct MemStore {
    values: HashMap<String, (Vec<u8>, u32)>,
    version: u32,
}

impl MemStore {
    /// Puts raw bytes under a key, as a corrupt or foreign record would sit in shared data.
    pub fn put(&mut self, key: &str, value: &[u8]) {
        self.version = self.version.wrapping_add(1);
        self.values
            .insert(key.to_string(), (value.to_vec(), self.version));
    }
}

impl SharedStore for MemStore {
    fn get(&mut self, key: &str) -> Result<(Option<Vec<u8>>, Option<u32>), StoreError> {
        Ok(self
            .values
            .get(key)
            .map_or((None, None), |(v, c)| (Some(v.clone()), Some(*c))))
    }

    fn set(&mut self, key: &str, value: &[u8], cas: Option<u32>) -> Result<bool, StoreError> {
        let current = self.values.get(key).map(|(_, c)| *c);
        if cas.is_some() && cas != current {
            return Ok(false);
        }
        self.put(key, value);
        Ok(true)
    }
}

fn hex(d: [u8; 32]) -> String {
    d.iter().map(|b| format!("{b:02x}")).collect()
}

/// A configuration with every credential source on, limits on two metrics, wildcard and query
/// mapping rules; keys are `key-1` .. `key-3`, app_id `id-2` belongs to `key-2`.
pub fn demo() -> (Config, Catalog) {
    let json = format!(
        r#"{{"credentials": {{"header": "x-api-key", "query": "api_key", "bearer": true,
              "app_id": {{"header": "app-id", "query": "app_id"}},
              "app_key": {{"header": "app-key", "query": "app_key"}}}},
            "snapshot": {{
          "plans": [
            {{"id": "basic", "limits": [{{"metric": "hits", "period": "minute", "value": 3}}]}},
            {{"id": "search-plan", "limits": [
                {{"metric": "hits", "period": "day", "value": 100}},
                {{"metric": "search", "period": "eternity", "value": 2}}]}}],
          "applications": [
            {{"id": "app-1", "plan": "basic", "state": "live", "key_sha256": ["{k1}"]}},
            {{"id": "app-2", "plan": "search-plan", "state": "live", "key_sha256": ["{k2}"], "app_id": "id-2"}},
            {{"id": "app-3", "plan": "basic", "state": "suspended", "state_reason": "non_payment", "key_sha256": ["{k3}"]}}],
          "metrics": [{{"name": "hits"}}, {{"name": "search", "parent": "hits"}}],
          "mapping_rules": [
            {{"method": "GET", "pattern": "/", "metric": "hits", "delta": 1}},
            {{"method": "GET", "pattern": "/search$", "metric": "search", "delta": 1}},
            {{"method": "GET", "pattern": "/find?q={{q}}&kind=book", "metric": "search", "delta": 2}},
            {{"method": "POST", "pattern": "/bulk/{{id}}/items/{{item}}.json$", "metric": "hits", "delta": 5}}]}}}}"#,
        k1 = hex(sha256(b"key-1")),
        k2 = hex(sha256(b"key-2")),
        k3 = hex(sha256(b"key-3")),
    );
    match Config::parse(json.as_bytes()) {
        Ok((config, Some(catalog))) => (config, catalog),
        // The fixture is fixed text: failing here is a bug in this file, found on the first run.
        other => unreachable!("demo configuration: {:?}", other.err()),
    }
}
