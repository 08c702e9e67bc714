//! Security headers on every portal response (developer and admin portals), as one middleware:
//! `Content-Security-Policy`, `X-Frame-Options: DENY`, `X-Content-Type-Options: nosniff` and
//! `Referrer-Policy`; and `Cache-Control: no-store` on every portal page and every answer of the
//! admin and developer APIs ([`no_store`]).
//!
//! `no-store` everywhere rather than on the answers that show a secret once (a new API key, an
//! account or admin token, a webhook signing secret, in the API, in an idempotent replay of it,
//! or on a portal page): no browser, proxy or client library keeps a copy of such an answer on
//! disk, and an answer added later that shows a secret needs no one to remember the header.
//! What these answers carry is private and current, so nothing is lost by not caching it. An
//! answer that sets its own `Cache-Control` (the portal's static assets) keeps it.
//!
//! The CSP allows what the pages load: the portal's own style sheet and scripts, served from
//! `/portal/assets/` (the table sorter, the card pages' glue; no inline script or style anywhere,
//! so `script-src` and `style-src` forbid inline code: an injected `<script>` or `onclick=` does
//! not run), and the configured payment provider's card-collection script and frames —
//! Stripe Elements (js.stripe.com, its frames and hooks.stripe.com for 3-D Secure, api.stripe.com)
//! or Braintree Hosted Fields (js/assets/api.braintreegateway.com, braintree-api.com), plus the
//! origin of the configured `js_url` (tests point it at an emulator). Nothing else: no other
//! script host, no framing of the portal by anyone (`frame-ancestors 'none'`), forms post only to
//! the portal itself, no plugins, no `<base>`.

use axum::extract::{Request, State};
use axum::http::{header, HeaderValue};
use axum::middleware::Next;
use axum::response::Response;

use crate::domain::payments::config::{BRAINTREE_JS_URL, STRIPE_JS_URL};
use crate::state::AppState;

/// `Referrer-Policy`: full URLs (which may carry ids) only to the portal itself, origins elsewhere.
pub const REFERRER_POLICY: &str = "strict-origin-when-cross-origin";

/// Hosts Stripe.js needs (Stripe's published CSP requirements).
const STRIPE_SCRIPT: &[&str] = &["https://js.stripe.com", "https://*.js.stripe.com"];
const STRIPE_FRAME: &[&str] = &[
    "https://js.stripe.com",
    "https://*.js.stripe.com",
    "https://hooks.stripe.com",
];
const STRIPE_CONNECT: &[&str] = &["https://api.stripe.com"];
/// Hosts the Braintree web SDK and Hosted Fields need (Braintree's published CSP requirements).
const BRAINTREE_SCRIPT: &[&str] = &[
    "https://js.braintreegateway.com",
    "https://assets.braintreegateway.com",
];
const BRAINTREE_FRAME: &[&str] = &["https://assets.braintreegateway.com"];
const BRAINTREE_CONNECT: &[&str] = &[
    "https://api.braintreegateway.com",
    "https://api.sandbox.braintreegateway.com",
    "https://client-analytics.braintreegateway.com",
    "https://client-analytics.sandbox.braintreegateway.com",
    "https://*.braintree-api.com",
];

/// `scheme://host[:port]` of a URL, or `None` for anything that is not plain http(s).
fn origin(url: &str) -> Option<String> {
    let (scheme, rest) = url.split_once("://")?;
    if scheme != "https" && scheme != "http" {
        return None;
    }
    let authority = rest.split(['/', '?', '#']).next()?;
    let ok = !authority.is_empty()
        && authority
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | ':' | '[' | ']'));
    ok.then(|| format!("{scheme}://{authority}"))
}

/// The policy for the configured provider (`kind` "stripe" / "braintree", its `js_url` if set).
pub fn content_security_policy(provider: Option<(&str, Option<&str>)>) -> String {
    let (mut script, mut frame, mut connect): (Vec<String>, Vec<String>, Vec<String>) =
        (Vec::new(), Vec::new(), Vec::new());
    let mut img = Vec::new();
    if let Some((kind, js_url)) = provider {
        let (default_js, s, f, c) = match kind {
            "braintree" => (
                BRAINTREE_JS_URL,
                BRAINTREE_SCRIPT,
                BRAINTREE_FRAME,
                BRAINTREE_CONNECT,
            ),
            _ => (STRIPE_JS_URL, STRIPE_SCRIPT, STRIPE_FRAME, STRIPE_CONNECT),
        };
        script.extend(s.iter().map(|h| h.to_string()));
        frame.extend(f.iter().map(|h| h.to_string()));
        connect.extend(c.iter().map(|h| h.to_string()));
        img.extend(f.iter().map(|h| h.to_string()));
        if let Some(o) = origin(js_url.unwrap_or(default_js)) {
            for list in [&mut script, &mut frame, &mut connect, &mut img] {
                if !list.contains(&o) {
                    list.push(o.clone());
                }
            }
        }
    }
    let join = |extra: &[String]| {
        if extra.is_empty() {
            String::new()
        } else {
            format!(" {}", extra.join(" "))
        }
    };
    format!(
        "default-src 'self'; script-src 'self'{}; style-src 'self'; \
         img-src 'self' data:{}; frame-src{}; connect-src 'self'{}; form-action 'self'; \
         frame-ancestors 'none'; base-uri 'none'; object-src 'none'",
        join(&script),
        join(&img),
        if frame.is_empty() {
            " 'none'".to_string()
        } else {
            join(&frame)
        },
        join(&connect),
    )
}

/// The configured provider's kind and `js_url` (not a secret: read without the master key).
async fn provider_hosts(state: &AppState) -> Option<(String, Option<String>)> {
    let row: Option<(String, String)> =
        sqlx::query_as("SELECT kind, config FROM payment_gateway WHERE id = 1")
            .fetch_optional(&state.pool)
            .await
            .ok()?;
    let (kind, config) = row?;
    let doc: serde_json::Value = serde_json::from_str(&config).ok()?;
    let js_url = doc
        .get("js_url")
        .and_then(|v| v.as_str())
        .map(str::to_string);
    Some((kind, js_url))
}

/// Whether a path is a portal page: the developer portal (`/portal...`) or the admin portal
/// (`/admin...` but not the admin API under `/admin/api/`).
pub fn is_portal_path(path: &str) -> bool {
    let under = |prefix: &str| {
        path.strip_prefix(prefix)
            .is_some_and(|rest| rest.is_empty() || rest.starts_with('/'))
    };
    (under("/portal") || under("/admin")) && !under("/admin/api")
}

pub async fn layer(State(state): State<AppState>, req: Request, next: Next) -> Response {
    if !is_portal_path(req.uri().path()) {
        return next.run(req).await;
    }
    let provider = provider_hosts(&state).await;
    let mut response = next.run(req).await;
    let csp = content_security_policy(provider.as_ref().map(|(k, j)| (k.as_str(), j.as_deref())));
    let h = response.headers_mut();
    if let Ok(v) = HeaderValue::from_str(&csp) {
        h.insert("content-security-policy", v);
    }
    h.insert("x-frame-options", HeaderValue::from_static("DENY"));
    h.insert(
        "x-content-type-options",
        HeaderValue::from_static("nosniff"),
    );
    h.insert("referrer-policy", HeaderValue::from_static(REFERRER_POLICY));
    set_no_store(&mut response);
    response
}

/// `Cache-Control: no-store`, unless the answer chose its own.
fn set_no_store(response: &mut Response) {
    response
        .headers_mut()
        .entry(header::CACHE_CONTROL)
        .or_insert(HeaderValue::from_static("no-store"));
}

/// The admin and developer APIs' layer: `Cache-Control: no-store` on every answer (see the
/// module's doc).
pub async fn no_store(req: Request, next: Next) -> Response {
    let mut response = next.run(req).await;
    set_no_store(&mut response);
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn portal_paths() {
        for p in [
            "/portal",
            "/portal/",
            "/portal/billing",
            "/admin",
            "/admin/tokens",
        ] {
            assert!(is_portal_path(p), "{p}");
        }
        for p in [
            "/admin/api/v1/services",
            "/administrator",
            "/portals",
            "/gateway/v1/x",
            "/",
        ] {
            assert!(!is_portal_path(p), "{p}");
        }
    }

    #[test]
    fn policy_allows_the_configured_provider_only() {
        let none = content_security_policy(None);
        assert!(none.contains("frame-src 'none'") && !none.contains("stripe"));
        let stripe = content_security_policy(Some(("stripe", None)));
        assert!(stripe.contains("script-src 'self' https://js.stripe.com"));
        // No inline script or style, whatever the provider.
        for p in [&none, &stripe] {
            assert!(
                !p.contains("unsafe-inline") && !p.contains("unsafe-eval"),
                "{p}"
            );
        }
        assert!(!stripe.contains("braintree"));
        let bt =
            content_security_policy(Some(("braintree", Some("http://127.0.0.1:9999/js/sdk/"))));
        assert!(
            bt.contains("http://127.0.0.1:9999")
                && bt.contains("https://assets.braintreegateway.com")
        );
        assert!(!bt.contains("stripe") && bt.contains("frame-ancestors 'none'"));
        // A js_url that could inject directives is not used.
        let odd = content_security_policy(Some(("stripe", Some("https://x.test; script-src *"))));
        assert!(!odd.contains("script-src *"));
    }
}
