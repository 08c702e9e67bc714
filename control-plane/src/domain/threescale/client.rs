//! The HTTP side of `tollgate import 3scale`: GET requests to a tenant's Account Management API
//! (porta's `app/controllers/admin/api/`), JSON only, paged, retried, bounded.
//!
//! - The access token travels as HTTP Basic credentials (the token as the user name), never in a
//!   URL: porta reads `access_token` from the parameters or, when absent, from Basic credentials
//!   (`app/lib/api_authentication/by_access_token.rb` `access_token`, falling back to
//!   `app/lib/api_authentication/http_authentication.rb`), and URLs end up in proxies' logs.
//! - Paths end in `.json`: porta answers the format the path names (`respond_to :xml, :json`,
//!   `app/lib/api_support/prepare_response_representer.rb`); its documentation's paths end in
//!   `.xml`, which a client following them meets by default.
//! - Lists are read page by page (`page`, `per_page` at most [`MAX_PER_PAGE`]) while the answer's
//!   `metadata` says there are more (porta adds it only when a list is longer than a page:
//!   `app/lib/three_scale/api/collection.rb` `paginated?`), for at most [`MAX_PAGES_PER_LIST`].
//! - 429 and 5xx answers and transport errors are retried at most [`MAX_ATTEMPTS`] times in all,
//!   after an exponential backoff with jitter ([`backoff`]) or the server's `Retry-After` (at most
//!   [`MAX_RETRY_AFTER_SECS`]). porta itself never answers 429; a gateway or proxy in front of a
//!   tenant (3scale SaaS's edge, an OpenShift route with rate limiting) does.
//! - An answer is read up to [`MAX_RESPONSE_BYTES`]; a longer one is an error, not a truncation.
//! - The URL must pass the outbound rule (`crate::outbound`): https to a public host, or a
//!   loopback one with `TOLLGATE_ALLOW_LOOPBACK_URLS=true`; every connection goes through its
//!   guarded resolver and no redirect is followed.

use std::time::Duration;

use serde::de::DeserializeOwned;
use serde::Deserialize;
use serde_json::Value;

/// Largest `per_page` porta accepts (`app/controllers/admin/api/filters/pagination.rb`,
/// `per_page_range = 1..500`; anything outside falls back to the default, also 500).
pub const MAX_PER_PAGE: u32 = 500;
/// Most pages read of one list: 1,000,000 objects at [`MAX_PER_PAGE`]. A list still going on past
/// it is refused whole (nothing is imported from a list read in part).
pub const MAX_PAGES_PER_LIST: u32 = 2_000;
/// Largest answer read: a page of 500 applications is about 1 MB of JSON.
pub const MAX_RESPONSE_BYTES: usize = 32 * 1024 * 1024;
/// Attempts per request, the first included, for 429, 5xx and transport errors.
pub const MAX_ATTEMPTS: u32 = 6;
/// First backoff; it doubles per attempt up to [`BACKOFF_MAX_MS`], then jitter takes up to half.
pub const BACKOFF_BASE_MS: u64 = 500;
pub const BACKOFF_MAX_MS: u64 = 30_000;
/// Longest `Retry-After` honoured; a longer one waits this long (and the attempt still counts).
pub const MAX_RETRY_AFTER_SECS: u64 = 120;
/// Per request, connection included.
pub const REQUEST_TIMEOUT_SECS: u64 = 60;
pub const CONNECT_TIMEOUT_SECS: u64 = 10;
/// The longest piece of an error answer quoted in a message.
const ERROR_EXCERPT_CHARS: usize = 200;

/// Why reading the tenant stopped. Nothing is written to Tollgate after any of these.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SourceError {
    /// The admin URL is refused by the outbound rule, or is not a URL.
    BadUrl(String),
    /// 401/403: the token is wrong, expired, or lacks the Account Management API scope.
    AccessDenied { path: String, status: u16 },
    /// 404 (porta: `{"status":"Not found"}`, `app/controllers/concerns/error_handling.rb`).
    NotFound { path: String },
    /// Any other answer, or one that kept failing past [`MAX_ATTEMPTS`].
    Status {
        path: String,
        status: u16,
        excerpt: String,
    },
    /// Connection, TLS, timeout, or the resolver refusing the host.
    Transport { path: String, detail: String },
    /// An answer not shaped as porta renders it.
    Malformed { path: String, detail: String },
    /// An answer over [`MAX_RESPONSE_BYTES`], or a list over [`MAX_PAGES_PER_LIST`] pages.
    TooLarge { path: String, detail: String },
}

impl std::fmt::Display for SourceError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SourceError::BadUrl(why) => write!(f, "--admin-url: {why}"),
            SourceError::AccessDenied { path, status } => write!(
                f,
                "3scale refused the access token (HTTP {status} on {path}): it needs the Account Management API scope (read) and must not be expired"
            ),
            SourceError::NotFound { path } => write!(f, "3scale answered 404 for {path}"),
            SourceError::Status {
                path,
                status,
                excerpt,
            } => write!(f, "3scale answered HTTP {status} for {path}: {excerpt}"),
            SourceError::Transport { path, detail } => {
                write!(f, "cannot reach 3scale ({path}): {detail}")
            }
            SourceError::Malformed { path, detail } => write!(
                f,
                "3scale's answer for {path} is not what porta renders: {detail}"
            ),
            SourceError::TooLarge { path, detail } => write!(f, "{path}: {detail}"),
        }
    }
}

impl std::error::Error for SourceError {}

/// The paging part of a list answer (`app/lib/three_scale/api/collection.rb`,
/// `PAGINATION_METADATA`): present only when the list is longer than one page.
#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq)]
pub struct Paging {
    pub per_page: u64,
    pub total_entries: u64,
    pub total_pages: u64,
    pub current_page: u64,
}

/// One page of a list: its items (unwrapped from `{"<singular>": {...}}`) and paging.
#[derive(Debug)]
pub struct Page<T> {
    pub items: Vec<T>,
    pub paging: Option<Paging>,
}

/// Reads a list answer: `{"<plural>": [{"<singular>": {...}}, ...], "metadata": {...}}`
/// (`ThreeScale::JSONRepresenter` `wraps_collection` with items that `wraps_resource`), or a bare
/// array of wrapped items (collections without a wrap, e.g.
/// `app/representers/backend_api_configs_representer.rb`).
pub fn parse_page<T: DeserializeOwned>(
    path: &str,
    body: &[u8],
    plural: &str,
    singular: &str,
) -> Result<Page<T>, SourceError> {
    let malformed = |detail: String| SourceError::Malformed {
        path: path.to_string(),
        detail,
    };
    let value: Value = serde_json::from_slice(body).map_err(|e| malformed(e.to_string()))?;
    let (items, paging) = match value {
        Value::Array(items) => (items, None),
        Value::Object(mut map) => {
            let items = match map.remove(plural) {
                Some(Value::Array(items)) => items,
                // porta renders an empty collection as an empty array; `null` is read the same.
                Some(Value::Null) | None if map.is_empty() || map.contains_key("metadata") => {
                    Vec::new()
                }
                _ => return Err(malformed(format!("no {plural:?} list"))),
            };
            let paging = match map.remove("metadata") {
                Some(m) => Some(
                    serde_json::from_value(m).map_err(|e| malformed(format!("metadata: {e}")))?,
                ),
                None => None,
            };
            (items, paging)
        }
        _ => return Err(malformed("neither a list nor an object".into())),
    };
    let items = items
        .into_iter()
        .enumerate()
        .map(|(i, item)| {
            unwrap_item(item, singular).map_err(|d| malformed(format!("{plural}[{i}]: {d}")))
        })
        .collect::<Result<_, _>>()?;
    Ok(Page { items, paging })
}

/// `{"<singular>": {...}}` -> the object, typed.
fn unwrap_item<T: DeserializeOwned>(item: Value, singular: &str) -> Result<T, String> {
    let inner = match item {
        Value::Object(mut m) => m
            .remove(singular)
            .ok_or_else(|| format!("no {singular:?} object"))?,
        _ => return Err(format!("not a {singular:?} object")),
    };
    serde_path_to_error::deserialize(inner)
        .map_err(|e| format!("{singular}.{}: {}", e.path(), e.inner()))
}

/// Reads a single object answer `{"<singular>": {...}}`.
pub fn parse_one<T: DeserializeOwned>(
    path: &str,
    body: &[u8],
    singular: &str,
) -> Result<T, SourceError> {
    let value: Value = serde_json::from_slice(body).map_err(|e| SourceError::Malformed {
        path: path.to_string(),
        detail: e.to_string(),
    })?;
    unwrap_item(value, singular).map_err(|detail| SourceError::Malformed {
        path: path.to_string(),
        detail,
    })
}

/// The wait before attempt `attempt + 1` (attempt counts from 1): `BACKOFF_BASE_MS * 2^(attempt -
/// 1)` capped at [`BACKOFF_MAX_MS`], of which a random half is taken off ("equal jitter"), so
/// many importers (or many in-flight requests of one) do not retry in step.
pub fn backoff(attempt: u32, random: u64) -> Duration {
    let exp = BACKOFF_BASE_MS
        .saturating_mul(1u64 << attempt.saturating_sub(1).min(20))
        .min(BACKOFF_MAX_MS);
    let half = exp / 2;
    Duration::from_millis(half + random % (half + 1))
}

/// `Retry-After` in seconds (the HTTP-date form is not used by the proxies in front of 3scale;
/// it falls back to the backoff), capped at [`MAX_RETRY_AFTER_SECS`].
pub fn retry_after(value: Option<&str>) -> Option<Duration> {
    let secs: u64 = value?.trim().parse().ok()?;
    Some(Duration::from_secs(secs.min(MAX_RETRY_AFTER_SECS)))
}

/// A client of one tenant's Account Management API.
pub struct Client {
    http: reqwest::Client,
    base: reqwest::Url,
    /// The token, only ever sent as Basic credentials; never printed (no `Debug`).
    token: String,
    /// Requests sent, retries included (for the summary and the benchmark).
    sent: std::sync::atomic::AtomicU64,
    /// 429/5xx/transport failures retried.
    retried: std::sync::atomic::AtomicU64,
}

impl Client {
    /// A client for `admin_url` (the tenant's admin portal, e.g.
    /// `https://acme-admin.3scale.net`), checked against the outbound rule.
    pub fn new(admin_url: &str, token: &str) -> Result<Client, SourceError> {
        crate::outbound::check(admin_url).map_err(|why| SourceError::BadUrl(why.into()))?;
        let base =
            reqwest::Url::parse(admin_url).map_err(|_| SourceError::BadUrl("not a URL".into()))?;
        if token.is_empty() || token.chars().any(|c| c.is_control() || c.is_whitespace()) {
            return Err(SourceError::BadUrl(
                "the access token is empty or has spaces or control characters".into(),
            ));
        }
        let http = crate::outbound::http_client()
            .timeout(Duration::from_secs(REQUEST_TIMEOUT_SECS))
            .connect_timeout(Duration::from_secs(CONNECT_TIMEOUT_SECS))
            .user_agent(concat!("tollgate-import/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| SourceError::BadUrl(crate::outbound::describe(e)))?;
        Ok(Client {
            http,
            base,
            token: token.to_string(),
            sent: Default::default(),
            retried: Default::default(),
        })
    }

    /// `scheme://host[:port]` of the tenant: the key its links are kept under.
    pub fn origin(&self) -> String {
        self.base.origin().ascii_serialization()
    }

    /// Requests sent and retried so far.
    pub fn counts(&self) -> (u64, u64) {
        use std::sync::atomic::Ordering::Relaxed;
        (self.sent.load(Relaxed), self.retried.load(Relaxed))
    }

    /// GET `path` (`/admin/api/...json`) with `query`, retried as the module says; the body of a
    /// 2xx answer.
    pub async fn get(&self, path: &str, query: &[(&str, String)]) -> Result<Vec<u8>, SourceError> {
        use std::sync::atomic::Ordering::Relaxed;
        let mut url = self
            .base
            .join(path)
            .map_err(|_| SourceError::BadUrl(format!("cannot join {path}")))?;
        if !query.is_empty() {
            url.query_pairs_mut()
                .extend_pairs(query.iter().map(|(k, v)| (*k, v.as_str())));
        }
        let mut attempt = 0;
        loop {
            attempt += 1;
            self.sent.fetch_add(1, Relaxed);
            let outcome = self.attempt(path, url.clone()).await;
            let wait = match outcome {
                Attempt::Done(body) => return Ok(body),
                Attempt::Fatal(e) => return Err(e),
                Attempt::Retry { error, after } => {
                    if attempt >= MAX_ATTEMPTS {
                        return Err(error);
                    }
                    tracing::info!(path, attempt, "3scale request failed, retrying: {error}");
                    after.unwrap_or_else(|| backoff(attempt, crate::secrets::random_u64()))
                }
            };
            self.retried.fetch_add(1, Relaxed);
            tokio::time::sleep(wait).await;
        }
    }

    async fn attempt(&self, path: &str, url: reqwest::Url) -> Attempt {
        let request = self
            .http
            .get(url)
            .basic_auth(&self.token, None::<&str>)
            .header(reqwest::header::ACCEPT, "application/json");
        let mut response = match request.send().await {
            Ok(r) => r,
            Err(e) => return transport(path, e),
        };
        let status = response.status();
        let after = retry_after(
            response
                .headers()
                .get(reqwest::header::RETRY_AFTER)
                .and_then(|v| v.to_str().ok()),
        );
        let mut body = Vec::new();
        loop {
            match response.chunk().await {
                Ok(Some(chunk)) => {
                    if body.len() + chunk.len() > MAX_RESPONSE_BYTES {
                        return Attempt::Fatal(SourceError::TooLarge {
                            path: path.to_string(),
                            detail: format!("the answer is over {MAX_RESPONSE_BYTES} bytes"),
                        });
                    }
                    body.extend_from_slice(&chunk);
                }
                Ok(None) => break,
                Err(e) => return transport(path, e),
            }
        }
        let code = status.as_u16();
        if status.is_success() {
            return Attempt::Done(body);
        }
        let excerpt: String = String::from_utf8_lossy(&body)
            .chars()
            .filter(|c| !c.is_control())
            .take(ERROR_EXCERPT_CHARS)
            .collect();
        let error = SourceError::Status {
            path: path.to_string(),
            status: code,
            excerpt,
        };
        match code {
            401 | 403 => Attempt::Fatal(SourceError::AccessDenied {
                path: path.to_string(),
                status: code,
            }),
            404 => Attempt::Fatal(SourceError::NotFound {
                path: path.to_string(),
            }),
            429 | 500..=599 => Attempt::Retry { error, after },
            _ => Attempt::Fatal(error),
        }
    }

    /// Every item of the list at `path`, page after page; `on_page(pages read, pages in all)`.
    pub async fn list<T: DeserializeOwned>(
        &self,
        path: &str,
        plural: &str,
        singular: &str,
        on_page: &(dyn Fn(u64, u64) + Sync),
    ) -> Result<Vec<T>, SourceError> {
        let mut out = Vec::new();
        for page in 1..=MAX_PAGES_PER_LIST {
            let body = self
                .get(
                    path,
                    &[
                        ("page", page.to_string()),
                        ("per_page", MAX_PER_PAGE.to_string()),
                    ],
                )
                .await?;
            let got: Page<T> = parse_page(path, &body, plural, singular)?;
            let empty = got.items.is_empty();
            out.extend(got.items);
            match got.paging {
                Some(p) if p.current_page < p.total_pages && !empty => {
                    on_page(u64::from(page), p.total_pages);
                }
                _ => {
                    on_page(u64::from(page), u64::from(page));
                    return Ok(out);
                }
            }
        }
        Err(SourceError::TooLarge {
            path: path.to_string(),
            detail: format!(
                "more than {MAX_PAGES_PER_LIST} pages of {MAX_PER_PAGE}: nothing was imported"
            ),
        })
    }

    /// The object at `path`.
    pub async fn one<T: DeserializeOwned>(
        &self,
        path: &str,
        singular: &str,
    ) -> Result<T, SourceError> {
        let body = self.get(path, &[]).await?;
        parse_one(path, &body, singular)
    }
}

enum Attempt {
    Done(Vec<u8>),
    Retry {
        error: SourceError,
        after: Option<Duration>,
    },
    Fatal(SourceError),
}

/// A transport error: retried, unless the outbound rule refused the host (no retry changes that).
fn transport(path: &str, e: reqwest::Error) -> Attempt {
    let refused = {
        let mut source = std::error::Error::source(&e);
        let mut found = false;
        while let Some(s) = source {
            if s.downcast_ref::<crate::outbound::NoAllowedAddress>()
                .is_some()
            {
                found = true;
            }
            source = s.source();
        }
        found
    };
    let error = SourceError::Transport {
        path: path.to_string(),
        detail: crate::outbound::describe(e),
    };
    if refused {
        Attempt::Fatal(error)
    } else {
        Attempt::Retry { error, after: None }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, Deserialize, PartialEq)]
    struct Thing {
        id: u64,
    }

    #[test]
    fn pages_unwrap_items_and_read_paging() {
        let body = br#"{"services":[{"service":{"id":1,"links":[]}},{"service":{"id":2}}],
            "metadata":{"per_page":2,"total_entries":3,"total_pages":2,"current_page":1}}"#;
        let p: Page<Thing> = parse_page("/x", body, "services", "service").unwrap();
        assert_eq!(p.items, vec![Thing { id: 1 }, Thing { id: 2 }]);
        assert_eq!(p.paging.unwrap().total_pages, 2);
        let bare = br#"[{"backend_usage":{"id":7}}]"#;
        let p: Page<Thing> = parse_page("/x", bare, "backend_usages", "backend_usage").unwrap();
        assert_eq!(p.items, vec![Thing { id: 7 }]);
        let e = parse_page::<Thing>(
            "/x",
            br#"{"services":[{"plan":{"id":1}}]}"#,
            "services",
            "service",
        )
        .unwrap_err();
        assert!(e.to_string().contains("services[0]"), "{e}");
        let e = parse_page::<Thing>(
            "/x",
            br#"{"services":[{"service":{"id":"x"}}]}"#,
            "services",
            "service",
        )
        .unwrap_err();
        assert!(e.to_string().contains("service.id"), "{e}");
        assert!(parse_page::<Thing>("/x", b"<services/>", "services", "service").is_err());
        let empty: Page<Thing> =
            parse_page("/x", br#"{"services":[]}"#, "services", "service").unwrap();
        assert!(empty.items.is_empty());
    }

    #[test]
    fn backoff_doubles_to_its_cap_with_jitter_in_the_upper_half() {
        for attempt in 1..12 {
            let full = (BACKOFF_BASE_MS << (attempt - 1)).min(BACKOFF_MAX_MS);
            for random in [0, 1, 12345, u64::MAX] {
                let d = backoff(attempt, random).as_millis() as u64;
                assert!(
                    d >= full / 2 && d <= full,
                    "attempt {attempt}: {d} of {full}"
                );
            }
        }
        assert_eq!(retry_after(Some("3")), Some(Duration::from_secs(3)));
        assert_eq!(
            retry_after(Some("100000")),
            Some(Duration::from_secs(MAX_RETRY_AFTER_SECS))
        );
        assert_eq!(retry_after(Some("Wed, 21 Oct 2015 07:28:00 GMT")), None);
        assert_eq!(retry_after(None), None);
    }

    #[test]
    fn only_an_allowed_admin_url_makes_a_client() {
        // The process's loopback opt-in is off in unit tests.
        assert!(matches!(
            Client::new("http://acme-admin.3scale.net", "t"),
            Err(SourceError::BadUrl(_))
        ));
        assert!(matches!(
            Client::new("https://10.0.0.1", "t"),
            Err(SourceError::BadUrl(_))
        ));
        assert!(matches!(
            Client::new("https://acme-admin.3scale.net", "has space"),
            Err(SourceError::BadUrl(_))
        ));
        let c = Client::new("https://acme-admin.3scale.net/", "t").unwrap();
        assert_eq!(c.origin(), "https://acme-admin.3scale.net");
    }
}
