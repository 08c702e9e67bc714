//! Names and bounds the control plane checks before a gateway ever sees them.

/// Longest metric name; names are also written into shared-data records (one length byte).
pub const MAX_METRIC_NAME_BYTES: usize = 64;
/// Most keys one application may carry (the control plane allows 5; headroom for rotation).
/// A gateway skips an application with more (left out of the catalog, counted and logged); the
/// rest of the snapshot installs.
pub const MAX_KEYS_PER_APPLICATION: usize = 16;

/// Longest application, plan or `app_id` identifier a gateway takes (ids travel in upstream
/// headers and shared-data keys).
pub const MAX_ID_BYTES: usize = 128;

/// Longest credential (API key, `app_id`, `app_key`) a gateway accepts, in bytes; longer ones get
/// 400 before any hashing. The control plane refuses to store a key a gateway would refuse.
pub const MAX_CREDENTIAL_BYTES: usize = 256;

/// Why a gateway refuses a presented credential (after percent-decoding a query parameter), or
/// `None` when it takes it: 1 to [`MAX_CREDENTIAL_BYTES`] bytes of visible ASCII (no spaces, no
/// control characters, nothing beyond ASCII: a header value cannot carry them reliably).
pub fn credential_problem(v: &[u8]) -> Option<&'static str> {
    if v.is_empty() {
        Some("empty credential")
    } else if v.len() > MAX_CREDENTIAL_BYTES {
        Some("credential longer than 256 bytes")
    } else if !v.iter().all(|b| b.is_ascii_graphic()) {
        Some("credential has characters outside visible ASCII")
    } else {
        None
    }
}

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
    fn credentials_are_short_visible_ascii() {
        assert_eq!(credential_problem(b"tg_abc-DEF.~!"), None);
        assert_eq!(credential_problem(&[b'k'; MAX_CREDENTIAL_BYTES]), None);
        assert!(credential_problem(&[b'k'; MAX_CREDENTIAL_BYTES + 1]).is_some());
        for bad in [
            &b""[..],
            b"a b",
            b"a\x01b",
            b"a\tb",
            b"a\x7fb",
            "ключ".as_bytes(),
        ] {
            assert!(credential_problem(bad).is_some(), "{bad:?}");
        }
    }

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
