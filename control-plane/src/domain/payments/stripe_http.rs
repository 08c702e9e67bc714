//! The HTTP client under every Stripe call. `async-stripe`'s own client resolves names with the
//! system resolver and connects wherever they point; this one is built by
//! [`crate::outbound::http_client`], so the outbound-URL rule holds at connect time (a Stripe
//! `api_base` whose name resolves to a loopback, private or link-local address is refused before
//! any connection, and redirects are not followed). It speaks the same protocol as
//! `async-stripe`'s client for the requests Tollgate makes: bearer secret key, `Stripe-Version`,
//! form bodies, one attempt with the request's idempotency key, Stripe's error object.

use bytes::Bytes;
use stripe::StripeError;
use stripe_client_core::{CustomizedStripeRequest, StripeClient, StripeMethod};

/// Stripe's API, when no `api_base` is configured.
pub const DEFAULT_API_BASE: &str = "https://api.stripe.com/";

#[derive(Clone)]
pub struct StripeHttp {
    http: reqwest::Client,
    authorization: String,
    /// Ends with `/` (the gateway settings store it so).
    api_base: String,
}

impl std::fmt::Debug for StripeHttp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StripeHttp")
            .field("api_base", &self.api_base)
            .finish_non_exhaustive()
    }
}

impl StripeHttp {
    pub fn new(secret_key: &str, api_base: Option<&str>) -> Result<StripeHttp, String> {
        let http = crate::outbound::http_client()
            .build()
            .map_err(|e| e.without_url().to_string())?;
        let api_base = match api_base {
            Some(b) if b.ends_with('/') => b.to_string(),
            Some(b) => format!("{b}/"),
            None => DEFAULT_API_BASE.to_string(),
        };
        Ok(StripeHttp {
            http,
            authorization: format!("Bearer {secret_key}"),
            api_base,
        })
    }
}

/// A transport error with its causes (the resolver's refusal is a cause), without the URL.
fn transport_error(e: reqwest::Error) -> StripeError {
    if e.is_timeout() {
        return StripeError::Timeout;
    }
    StripeError::ClientError(crate::outbound::describe(e))
}

impl StripeClient for StripeHttp {
    type Err = StripeError;

    async fn execute(&self, req: CustomizedStripeRequest) -> Result<Bytes, StripeError> {
        let (req, config) = req.into_pieces();
        // Method and path only: the query and body may carry customer data, the headers the key.
        tracing::debug!(method = ?req.method, path = req.path, "stripe request");
        let mut url = format!("{}v1{}", self.api_base, req.path);
        if let Some(query) = &req.query {
            url.push('?');
            url.push_str(query);
        }
        let method = match req.method {
            StripeMethod::Get => reqwest::Method::GET,
            StripeMethod::Post => reqwest::Method::POST,
            StripeMethod::Delete => reqwest::Method::DELETE,
        };
        let mut request = self
            .http
            .request(method, url)
            .header("authorization", &self.authorization)
            .header(
                "stripe-version",
                stripe_shared::version::VERSION.as_str().to_string(),
            );
        // One attempt: Tollgate's callers decide about retries (an unknown outcome is looked up
        // before anything is charged again).
        if let Some(key) = config.request_strategy.and_then(|s| s.get_key()) {
            request = request.header("idempotency-key", key.as_str().to_string());
        }
        if let Some(timeout) = config.timeout {
            request = request.timeout(timeout);
        }
        if let Some(body) = req.body {
            request = request
                .header("content-type", "application/x-www-form-urlencoded")
                .body(body);
        }
        let response = request.send().await.map_err(transport_error)?;
        let status = response.status();
        let bytes = response.bytes().await.map_err(transport_error)?;
        if status.is_success() {
            return Ok(bytes);
        }
        let text = std::str::from_utf8(&bytes)
            .map_err(|_| StripeError::JSONDeserialize("Response was not valid UTF-8".into()))?;
        Err(miniserde::json::from_str::<stripe_shared::Error>(text)
            .map(|e| StripeError::Stripe(e.error, status.as_u16()))
            .unwrap_or_else(|_| {
                StripeError::JSONDeserialize("error deserializing Stripe error".into())
            }))
    }
}
