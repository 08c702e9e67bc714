//! The proxy-wasm serialized header map, read without copying each header.
//!
//! Fetching all request headers in one host call and looking names up here is cheaper than one
//! host call per header (each costs ~1 us under V8: a boundary crossing plus a callback into the
//! module's allocator). Encoding: `u32 count`, then `count` pairs of `(u32 name_len, u32
//! value_len)`, then each name and value followed by a NUL byte; integers little-endian.

/// A header map as the host serialized it; malformed input reads as empty (never panics).
pub struct HeaderMap {
    buf: Vec<u8>,
    /// (name start, name len, value start, value len) into `buf`.
    entries: Vec<(usize, usize, usize, usize)>,
}

impl HeaderMap {
    pub fn parse(buf: Vec<u8>) -> HeaderMap {
        let entries = Self::index(&buf).unwrap_or_default();
        HeaderMap { buf, entries }
    }

    /// A map from (name, value) pairs, for hosts that list headers rather than serialize them
    /// (Envoy's dynamic-module ABI): one copy of the bytes, no per-header allocation.
    pub fn from_pairs<'a>(pairs: impl Iterator<Item = (&'a [u8], &'a [u8])> + Clone) -> HeaderMap {
        // Sized first: one allocation for the bytes and one for the index, never a regrowth.
        let (count, bytes) = pairs
            .clone()
            .fold((0, 0), |(n, b), (k, v)| (n + 1, b + k.len() + v.len()));
        let mut buf = Vec::with_capacity(bytes);
        let mut entries = Vec::with_capacity(count);
        for (name, value) in pairs {
            let name_start = buf.len();
            buf.extend_from_slice(name);
            let value_start = buf.len();
            buf.extend_from_slice(value);
            entries.push((name_start, name.len(), value_start, value.len()));
        }
        HeaderMap { buf, entries }
    }

    fn index(buf: &[u8]) -> Option<Vec<(usize, usize, usize, usize)>> {
        let u32_at = |at: usize| -> Option<usize> {
            let b = buf.get(at..at + 4)?;
            Some(u32::from_le_bytes([b[0], b[1], b[2], b[3]]) as usize)
        };
        let count = u32_at(0)?;
        // Each entry needs at least 8 bytes of sizes and 2 NULs: bounds `count` before allocating.
        if count.checked_mul(10)? > buf.len() {
            return None;
        }
        let mut entries = Vec::with_capacity(count);
        let mut data = 4 + count * 8;
        for i in 0..count {
            let name_len = u32_at(4 + i * 8)?;
            let value_len = u32_at(8 + i * 8)?;
            let name_start = data;
            let value_start = name_start.checked_add(name_len)?.checked_add(1)?;
            data = value_start.checked_add(value_len)?.checked_add(1)?;
            if data > buf.len() {
                return None;
            }
            entries.push((name_start, name_len, value_start, value_len));
        }
        Some(entries)
    }

    /// The first value of `name` (header names arrive lowercased from Envoy and Kong).
    pub fn get(&self, name: &str) -> Option<&[u8]> {
        self.entries.iter().find_map(|&(ns, nl, vs, vl)| {
            (self.buf.get(ns..ns + nl)? == name.as_bytes())
                .then(|| self.buf.get(vs..vs + vl))
                .flatten()
        })
    }

    /// How many times `name` occurs.
    pub fn count(&self, name: &str) -> usize {
        self.entries
            .iter()
            .filter(|&&(ns, nl, _, _)| self.buf.get(ns..ns + nl) == Some(name.as_bytes()))
            .count()
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// The host's encoding of a header map, for tests that need one.
    pub(crate) fn serialize(pairs: &[(&str, &str)]) -> Vec<u8> {
        let mut out = (pairs.len() as u32).to_le_bytes().to_vec();
        for (k, v) in pairs {
            out.extend_from_slice(&(k.len() as u32).to_le_bytes());
            out.extend_from_slice(&(v.len() as u32).to_le_bytes());
        }
        for (k, v) in pairs {
            out.extend_from_slice(k.as_bytes());
            out.push(0);
            out.extend_from_slice(v.as_bytes());
            out.push(0);
        }
        out
    }

    #[test]
    fn finds_first_value_by_name() {
        let m = HeaderMap::parse(serialize(&[
            (":path", "/a?b=1"),
            ("x-api-key", "k1"),
            ("x-api-key", "k2"),
            ("e", ""),
        ]));
        assert_eq!(m.len(), 4);
        assert_eq!(m.get(":path"), Some(&b"/a?b=1"[..]));
        assert_eq!(m.get("x-api-key"), Some(&b"k1"[..]));
        assert_eq!(m.get("e"), Some(&b""[..]));
        assert_eq!(m.get("missing"), None);
    }

    #[test]
    fn pairs_read_like_the_serialized_map() {
        let pairs: [(&[u8], &[u8]); 3] = [
            (b":path", b"/a"),
            (b"x-api-key", b"k1"),
            (b"x-api-key", b"k2"),
        ];
        let m = HeaderMap::from_pairs(pairs.into_iter());
        assert_eq!(m.len(), 3);
        assert_eq!(m.get(":path"), Some(&b"/a"[..]));
        assert_eq!(m.get("x-api-key"), Some(&b"k1"[..]));
        assert_eq!(m.count("x-api-key"), 2);
        assert_eq!(m.get("x-api"), None);
    }

    #[test]
    fn malformed_input_reads_as_empty() {
        assert!(HeaderMap::parse(vec![]).is_empty());
        assert!(HeaderMap::parse(vec![1, 0]).is_empty());
        // Claims a billion entries in a few bytes.
        assert!(HeaderMap::parse(vec![0, 0xca, 0x9a, 0x3b, 0, 0, 0, 0]).is_empty());
        let mut truncated = serialize(&[("a", "bcd")]);
        truncated.truncate(truncated.len() - 2);
        assert!(HeaderMap::parse(truncated).is_empty());
        let mut huge_len = serialize(&[("a", "b")]);
        huge_len[8..12].copy_from_slice(&u32::MAX.to_le_bytes());
        assert!(HeaderMap::parse(huge_len).is_empty());
    }
}
