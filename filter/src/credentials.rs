//! Finding the credential a client presented: an API key (header, `Authorization: Bearer`, or a
//! query parameter) or a 3scale-style `app_id` + `app_key` pair. The host is reached only through
//! the `header` callback, so this is plain, natively tested Rust.

use sha2::{Digest, Sha256};

use crate::config::CredentialSources;
use crate::header_map::HeaderMap;
use crate::mapping::{query_name_is, query_params};

pub use tollgate_rules::names::MAX_CREDENTIAL_BYTES;

/// Where the credential came from, so it can be stripped before forwarding.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    Header(String),
    Bearer,
    /// Query parameter names to remove from `:path`.
    Query(Vec<String>),
    /// Two headers (app_id, app_key).
    Headers(String, String),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Presented {
    Key {
        digest: [u8; 32],
        source: Source,
    },
    Pair {
        app_id: String,
        key_digest: [u8; 32],
        source: Source,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CredentialError {
    /// Nothing presented: 401.
    Missing,
    /// Presented but unusable (too long, control characters, bad escapes, half a pair): 400.
    Malformed(&'static str),
}

pub fn sha256(bytes: &[u8]) -> [u8; 32] {
    Sha256::digest(bytes).into()
}

/// [`extract`] over the request's header map, refusing a credential sent more than once in the
/// place it was taken from (two `x-api-key` headers, `?api_key=a&api_key=b`): which one a client
/// meant is ambiguous, and proxies on either side of the gateway may pick differently. Only the
/// source actually used is checked, so the common request costs one more scan of one name.
pub fn extract_from(
    sources: &CredentialSources,
    path: &str,
    headers: &HeaderMap,
) -> Result<Presented, CredentialError> {
    let presented = extract(sources, path, |name| headers.get(name))?;
    let source = match &presented {
        Presented::Key { source, .. } | Presented::Pair { source, .. } => source,
    };
    let repeated = match source {
        Source::Header(name) => headers.count(name) > 1,
        Source::Bearer => headers.count("authorization") > 1,
        Source::Headers(a, b) => headers.count(a) > 1 || headers.count(b) > 1,
        Source::Query(names) => {
            let query = path.split_once('?').map_or("", |(_, q)| q);
            names.iter().any(|n| {
                query_params(query)
                    .filter(|(k, _)| query_name_is(k, n))
                    .count()
                    > 1
            })
        }
    };
    if repeated {
        return Err(CredentialError::Malformed("credential sent more than once"));
    }
    Ok(presented)
}

/// Reads credentials in a fixed order: key header, bearer token, key query parameter, app_id +
/// app_key (query, then headers). The first source present wins.
pub fn extract<'h>(
    sources: &CredentialSources,
    path: &str,
    mut header: impl FnMut(&str) -> Option<&'h [u8]>,
) -> Result<Presented, CredentialError> {
    if let Some(name) = &sources.header {
        if let Some(v) = header(name) {
            return key(v, Source::Header(name.clone()));
        }
    }
    if sources.bearer {
        if let Some(v) = header("authorization") {
            // Only the Bearer scheme is ours; Basic and others pass through to other sources.
            if v.len() > 7 && v[..7].eq_ignore_ascii_case(b"bearer ") {
                let token = trim_ascii(&v[7..]);
                return key(token, Source::Bearer);
            }
        }
    }
    let query = path.split_once('?').map(|(_, q)| q).unwrap_or("");
    if !query.is_empty() {
        if let Some(name) = &sources.query {
            if let Some(raw) = param(query, name) {
                let v = percent_decode(raw)?;
                return key(&v, Source::Query(vec![name.clone()]));
            }
        }
        if let (Some(id_name), Some(key_name)) = (&sources.app_id_query, &sources.app_key_query) {
            match (param(query, id_name), param(query, key_name)) {
                (Some(id), Some(k)) => {
                    let id = percent_decode(id)?;
                    let k = percent_decode(k)?;
                    return pair(
                        &id,
                        &k,
                        Source::Query(vec![id_name.clone(), key_name.clone()]),
                    );
                }
                (None, None) => {}
                _ => {
                    return Err(CredentialError::Malformed(
                        "app_id and app_key must be given together",
                    ))
                }
            }
        }
    }
    if let (Some(id_name), Some(key_name)) = (&sources.app_id_header, &sources.app_key_header) {
        match (header(id_name), header(key_name)) {
            (Some(id), Some(k)) => {
                return pair(id, k, Source::Headers(id_name.clone(), key_name.clone()));
            }
            (None, None) => {}
            _ => {
                return Err(CredentialError::Malformed(
                    "app_id and app_key must be given together",
                ))
            }
        }
    }
    Err(CredentialError::Missing)
}

fn key(v: &[u8], source: Source) -> Result<Presented, CredentialError> {
    check(v)?;
    Ok(Presented::Key {
        digest: sha256(v),
        source,
    })
}

fn pair(id: &[u8], k: &[u8], source: Source) -> Result<Presented, CredentialError> {
    check(id)?;
    check(k)?;
    let app_id = String::from_utf8(id.to_vec())
        .map_err(|_| CredentialError::Malformed("app_id is not ASCII"))?;
    Ok(Presented::Pair {
        app_id,
        key_digest: sha256(k),
        source,
    })
}

/// The rule the control plane also checks keys against before storing them.
fn check(v: &[u8]) -> Result<(), CredentialError> {
    match tollgate_rules::names::credential_problem(v) {
        Some(why) => Err(CredentialError::Malformed(why)),
        None => Ok(()),
    }
}

fn trim_ascii(v: &[u8]) -> &[u8] {
    let start = v
        .iter()
        .position(|b| !b.is_ascii_whitespace())
        .unwrap_or(v.len());
    let end = v
        .iter()
        .rposition(|b| !b.is_ascii_whitespace())
        .map_or(start, |e| e + 1);
    &v[start..end]
}

fn param<'q>(query: &'q str, name: &str) -> Option<&'q str> {
    query_params(query)
        .find(|(k, _)| query_name_is(k, name))
        .map(|(_, v)| v)
}

fn percent_decode(raw: &str) -> Result<Vec<u8>, CredentialError> {
    if raw.len() > 3 * MAX_CREDENTIAL_BYTES {
        return Err(CredentialError::Malformed(
            "credential longer than 256 bytes",
        ));
    }
    let b = raw.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            let hex = |c: u8| (c as char).to_digit(16);
            match (
                b.get(i + 1).and_then(|&c| hex(c)),
                b.get(i + 2).and_then(|&c| hex(c)),
            ) {
                (Some(h), Some(l)) => out.push((h * 16 + l) as u8),
                _ => return Err(CredentialError::Malformed("bad percent-encoding")),
            }
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    Ok(out)
}

/// `:path` without the named query parameters (used to strip a credential before forwarding).
pub fn strip_query_params(path: &str, names: &[String]) -> String {
    let Some((p, q)) = path.split_once('?') else {
        return path.to_string();
    };
    let kept: Vec<&str> = q
        .split('&')
        .filter(|pair| {
            let k = pair.split_once('=').map_or(*pair, |(k, _)| k);
            !pair.is_empty() && !names.iter().any(|n| query_name_is(k, n))
        })
        .collect();
    if kept.is_empty() {
        p.to_string()
    } else {
        format!("{p}?{}", kept.join("&"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn defaults() -> CredentialSources {
        CredentialSources {
            header: Some("x-api-key".into()),
            bearer: true,
            query: Some("api_key".into()),
            app_id_header: Some("app-id".into()),
            app_id_query: Some("app_id".into()),
            app_key_header: Some("app-key".into()),
            app_key_query: Some("app_key".into()),
        }
    }

    #[test]
    fn a_credential_sent_twice_where_it_was_taken_from_is_refused() {
        use crate::header_map::tests::serialize;
        let from = |path: &str, pairs: &[(&str, &str)]| {
            extract_from(&defaults(), path, &HeaderMap::parse(serialize(pairs)))
        };
        let twice = Err(CredentialError::Malformed("credential sent more than once"));
        assert_eq!(from("/", &[("x-api-key", "a"), ("x-api-key", "b")]), twice);
        assert_eq!(from("/?api_key=a&api_key=b", &[]), twice);
        // Another spelling of the name is the same parameter to the upstream that decodes it.
        assert_eq!(from("/?api_key=a&api%5Fkey=b", &[]), twice);
        assert_eq!(from("/?app_id=i&app_key=a&app%5fkey=b", &[]), twice);
        assert!(matches!(
            from("/?api%5Fkey=a", &[]),
            Ok(Presented::Key {
                source: Source::Query(_),
                ..
            })
        ));
        assert_eq!(
            from(
                "/",
                &[("authorization", "Bearer a"), ("authorization", "Bearer b")]
            ),
            twice
        );
        assert_eq!(
            from("/", &[("app-id", "i"), ("app-key", "a"), ("app-key", "b")]),
            twice
        );
        // A repeated header that is not the source used is none of the filter's business.
        assert!(matches!(
            from("/?api_key=a&api_key=b", &[("x-api-key", "k")]),
            Ok(Presented::Key {
                source: Source::Header(_),
                ..
            })
        ));
        assert!(from("/?api_key=a", &[("x-other", "1"), ("x-other", "2")]).is_ok());
    }

    fn run(path: &str, headers: &[(&str, &[u8])]) -> Result<Presented, CredentialError> {
        let h: HashMap<String, Vec<u8>> = headers
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_vec()))
            .collect();
        extract(&defaults(), path, |n| h.get(n).map(Vec::as_slice))
    }

    #[test]
    fn header_wins_and_is_hashed() {
        let p = run("/?api_key=other", &[("x-api-key", b"secret")]).unwrap();
        assert_eq!(
            p,
            Presented::Key {
                digest: sha256(b"secret"),
                source: Source::Header("x-api-key".into())
            }
        );
    }

    #[test]
    fn bearer_is_case_insensitive_and_basic_is_ignored() {
        let p = run("/", &[("authorization", b"bearer  tok ")]).unwrap();
        assert_eq!(
            p,
            Presented::Key {
                digest: sha256(b"tok"),
                source: Source::Bearer
            }
        );
        assert_eq!(
            run("/", &[("authorization", b"Basic dXNlcg==")]),
            Err(CredentialError::Missing)
        );
    }

    #[test]
    fn query_key_is_percent_decoded() {
        let p = run("/x?a=1&api_key=k%2Dy", &[]).unwrap();
        assert_eq!(
            p,
            Presented::Key {
                digest: sha256(b"k-y"),
                source: Source::Query(vec!["api_key".into()])
            }
        );
        assert_eq!(
            run("/x?api_key=%zz", &[]),
            Err(CredentialError::Malformed("bad percent-encoding"))
        );
    }

    #[test]
    fn app_id_pairs_from_query_and_headers() {
        let p = run("/?app_id=a1&app_key=k1", &[]).unwrap();
        assert!(
            matches!(p, Presented::Pair { ref app_id, key_digest, .. } if app_id == "a1" && key_digest == sha256(b"k1"))
        );
        let p = run("/", &[("app-id", b"a2"), ("app-key", b"k2")]).unwrap();
        assert!(matches!(p, Presented::Pair { ref app_id, .. } if app_id == "a2"));
        assert!(matches!(
            run("/?app_id=a1", &[]),
            Err(CredentialError::Malformed(_))
        ));
        assert!(matches!(
            run("/", &[("app-key", b"k")]),
            Err(CredentialError::Malformed(_))
        ));
    }

    #[test]
    fn missing_and_malformed() {
        assert_eq!(run("/", &[]), Err(CredentialError::Missing));
        let long = vec![b'a'; MAX_CREDENTIAL_BYTES + 1];
        assert!(matches!(
            run("/", &[("x-api-key", &long)]),
            Err(CredentialError::Malformed(_))
        ));
        assert!(matches!(
            run("/", &[("x-api-key", b"a\x01b")]),
            Err(CredentialError::Malformed(_))
        ));
        assert!(matches!(
            run("/", &[("x-api-key", b"")]),
            Err(CredentialError::Malformed(_))
        ));
        assert!(matches!(
            run("/", &[("x-api-key", "ключ".as_bytes())]),
            Err(CredentialError::Malformed(_))
        ));
        let huge = format!("/?api_key={}", "%41".repeat(MAX_CREDENTIAL_BYTES + 1));
        assert!(matches!(
            run(&huge, &[]),
            Err(CredentialError::Malformed(_))
        ));
    }

    #[test]
    fn strips_only_the_named_parameters() {
        let names = vec!["api_key".to_string()];
        assert_eq!(strip_query_params("/a?api_key=k&b=2", &names), "/a?b=2");
        assert_eq!(strip_query_params("/a?api_key=k", &names), "/a");
        assert_eq!(strip_query_params("/a", &names), "/a");
        assert_eq!(strip_query_params("/a?x=1&api_key=k&y", &names), "/a?x=1&y");
        assert_eq!(strip_query_params("/a?api%5Fkey=k&b=2", &names), "/a?b=2");
        assert_eq!(strip_query_params("/a?api%5fkey=k", &names), "/a");
    }
}
