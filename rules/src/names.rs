//! Names and bounds the control plane checks before a gateway ever sees them.

/// Longest metric name; names are also written into shared-data records (one length byte).
pub const MAX_METRIC_NAME_BYTES: usize = 64;
/// Most keys one application may carry (the control plane allows 5; headroom for rotation).
/// A gateway skips an application with more (left out of the catalog, counted and logged); the
/// rest of the snapshot installs.
pub const MAX_KEYS_PER_APPLICATION: usize = 16;

/// The metric-name rule: metric names appear inside structured-field strings in headers and in
/// shared-data records.
pub fn is_valid_metric_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= MAX_METRIC_NAME_BYTES
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metric_names_are_short_header_safe_ascii() {
        assert!(is_valid_metric_name("hits"));
        assert!(is_valid_metric_name("search_v2.get-all"));
        assert!(is_valid_metric_name(&"m".repeat(MAX_METRIC_NAME_BYTES)));
        assert!(!is_valid_metric_name(
            &"m".repeat(MAX_METRIC_NAME_BYTES + 1)
        ));
        assert!(!is_valid_metric_name(""));
        for bad in ["a b", "a\"b", "a;b", "é", "a,b"] {
            assert!(!is_valid_metric_name(bad), "{bad:?}");
        }
    }
}
