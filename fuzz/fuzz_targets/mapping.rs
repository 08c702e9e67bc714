//! Mapping-rule patterns (as configured) against request paths (as sent), and path
//! normalization, which must be idempotent: a normalized path normalizes to itself, and its
//! query is in canonical form (decoded names and values written one way).
#![no_main]

use libfuzzer_sys::fuzz_target;
use tollgate_filter::mapping::{canonical_query, normalize_path, Pattern};

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
    // The query is canonical too: decoding the canonical form and writing it again changes
    // nothing, and each parameter's name and value are canonical components.
    if let Some((_, q)) = normal.split_once('?') {
        let mut again = String::new();
        if let Err(e) = canonical_query(q, &mut again) {
            panic!("normalized {path:?} to {normal:?}, whose query then fails: {e}");
        }
        assert_eq!(
            again, q,
            "query canonicalization is not idempotent for {path:?}"
        );
    }
    if let Ok(p) = Pattern::parse("mapping_rules[0].pattern", pattern) {
        let _ = p.matches(&normal);
    }
});
