//! Mapping-rule patterns (as configured) against request paths (as sent), and path
//! normalization, which must be idempotent: a normalized path normalizes to itself.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tollgate_filter::mapping::{normalize_path, Pattern};

#[global_allocator]
static ALLOC: tollgate_fuzz::Capped = tollgate_fuzz::Capped;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let (pattern, path) = text.split_once('\n').unwrap_or((text, "/"));
    let normal = match normalize_path(path) {
        Ok(n) => n,
        Err(_) => return,
    };
    match normalize_path(&normal) {
        Ok(again) => assert_eq!(
            again, normal,
            "normalization is not idempotent for {path:?}"
        ),
        Err(e) => panic!("normalized {path:?} to {normal:?}, which then fails: {e}"),
    }
    if let Ok(p) = Pattern::parse("mapping_rules[0].pattern", pattern) {
        let _ = p.matches(&normal);
    }
});
