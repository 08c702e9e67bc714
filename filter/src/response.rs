//! What the filter writes: quota headers on every decided request, and the local reply for a
//! rejection (`application/problem+json`, RFC 9457).
//!
//! Prepaid credit has no header on admitted requests: the gateway knows a wallet's balance only
//! in nano-units of a currency the snapshot does not name, and across gateways only as of the
//! last global-usage poll, while the RateLimit fields describe windows of units a client can plan
//! with. The developer portal shows the balance; a 402 `insufficient_credit` links to it.
//!
//! Quota headers follow draft-ietf-httpapi-ratelimit-headers-10 (structured fields):
//! `RateLimit-Policy: "hits-minute";q=3;w=60` and `RateLimit: "hits-minute";r=2;t=48`, plus the
//! widespread `X-RateLimit-Limit/Remaining/Reset` (reset as delta seconds). They describe the most
//! constrained limit the request touched; an eternity limit has no window (`w`) and no reset (`t`).
//! A request touching no limit gets no quota headers: there is no quota to describe.

use serde_json::json;

use crate::catalog::Catalog;
use crate::config::{CredentialSources, QuotaHeaders};
use crate::counters::LimitState;
use crate::decision::{Reason, Rejection};

pub const RATELIMIT_POLICY: &str = "ratelimit-policy";
pub const RATELIMIT: &str = "ratelimit";
pub const X_RATELIMIT_LIMIT: &str = "x-ratelimit-limit";
pub const X_RATELIMIT_REMAINING: &str = "x-ratelimit-remaining";
pub const X_RATELIMIT_RESET: &str = "x-ratelimit-reset";

pub type Headers = Vec<(&'static str, String)>;

/// Appends `n` in decimal without going through `fmt` (this runs on every request).
pub fn push_u64(out: &mut String, mut n: u64) {
    let mut buf = [0u8; 20];
    let mut i = buf.len();
    loop {
        i -= 1;
        buf[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    for &b in &buf[i..] {
        out.push(char::from(b));
    }
}

fn number(n: u64) -> String {
    let mut s = String::with_capacity(20);
    push_u64(&mut s, n);
    s
}

/// The quota headers of `which` families for the limit `q`.
pub fn quota_headers(q: &LimitState<'_>, which: QuotaHeaders, out: &mut Headers) {
    if which.draft() {
        draft_headers(q, out);
    }
    if which.x_ratelimit() {
        out.push((X_RATELIMIT_LIMIT, number(q.limit.value)));
        out.push((X_RATELIMIT_REMAINING, number(q.remaining)));
        if let Some(t) = q.reset_in {
            out.push((X_RATELIMIT_RESET, number(t)));
        }
    }
}

fn draft_headers(q: &LimitState<'_>, out: &mut Headers) {
    let name = &q.limit.policy_name;
    let mut policy = String::with_capacity(name.len() + 32);
    policy.push('"');
    policy.push_str(name);
    policy.push_str("\";q=");
    push_u64(&mut policy, q.limit.value);
    if let Some(w) = q.window_secs {
        policy.push_str(";w=");
        push_u64(&mut policy, w);
    }
    let mut current = String::with_capacity(name.len() + 32);
    current.push('"');
    current.push_str(name);
    current.push_str("\";r=");
    push_u64(&mut current, q.remaining);
    if let Some(t) = q.reset_in {
        current.push_str(";t=");
        push_u64(&mut current, t);
    }
    out.push((RATELIMIT_POLICY, policy));
    out.push((RATELIMIT, current));
}

/// The local reply for a rejection: status, headers and problem body.
pub struct LocalReply {
    pub status: u16,
    pub headers: Headers,
    pub body: Vec<u8>,
}

pub fn local_reply(
    r: &Rejection<'_>,
    catalog: &Catalog,
    creds: &CredentialSources,
    quota: QuotaHeaders,
) -> LocalReply {
    let mut headers: Headers = vec![("content-type", "application/problem+json".into())];
    let mut body = json!({
        "type": format!("urn:tollgate:problem:{}", r.reason.code()),
        "title": r.reason.title(),
        "status": r.reason.status(),
        "code": r.reason.code(),
        "detail": r.detail,
    });
    if let Some(q) = &r.quota {
        quota_headers(q, quota, &mut headers);
        body["limit"] = json!({
            "metric": catalog.metrics[q.limit.metric].name,
            "period": q.limit.period.as_str(),
            "value": q.limit.value,
        });
        if r.reason == Reason::LimitExceeded {
            if let Some(t) = q.reset_in {
                // At least 1: "retry after 0 seconds" invites a hot loop at the window edge.
                let t = t.max(1);
                headers.push(("retry-after", number(t)));
                body["retry_after"] = json!(t);
            }
        }
    }
    if r.reason == Reason::MissingCredentials {
        headers.push(("www-authenticate", www_authenticate(creds)));
    }
    if r.reason == Reason::Unavailable {
        headers.push(("retry-after", "1".into()));
    }
    if r.reason == Reason::InsufficientCredit {
        // Where to top up (the developer portal's wallet page): in the body for people and as an
        // RFC 8288 link (relation `payment`, IANA-registered) for clients. Checked when compiled
        // to hold no character that could end the `<...>` early (`catalog::is_header_safe_url`).
        if let Some(url) = &catalog.top_up_url {
            headers.push(("link", format!("<{url}>; rel=\"payment\"")));
            body["top_up_url"] = json!(url);
        }
    }
    LocalReply {
        status: r.reason.status(),
        headers,
        body: serde_json::to_vec(&body).unwrap_or_default(),
    }
}

/// RFC 9110 challenge naming where a key is accepted.
fn www_authenticate(c: &CredentialSources) -> String {
    let mut challenges = Vec::new();
    if c.bearer {
        challenges.push("Bearer realm=\"tollgate\"".to_string());
    }
    let mut params = vec!["realm=\"tollgate\"".to_string()];
    if let Some(h) = &c.header {
        params.push(format!("header=\"{h}\""));
    }
    if let Some(q) = &c.query {
        params.push(format!("query=\"{q}\""));
    }
    challenges.push(format!("ApiKey {}", params.join(", ")));
    challenges.join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn push_u64_formats_edges() {
        for n in [0u64, 7, 10, 99, 1_000_000, u64::MAX] {
            let mut s = String::new();
            push_u64(&mut s, n);
            assert_eq!(s, n.to_string());
        }
    }
}
