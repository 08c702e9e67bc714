//! Stripe's REST API for the eight calls Tollgate makes (customer, SetupIntent, attach, list and
//! detach a card, create, retrieve and list PaymentIntents), written against Stripe's documented
//! protocol: bearer secret key, a pinned `Stripe-Version`, form-encoded bodies with
//! `metadata[key]` entries, an `Idempotency-Key` header, JSON answers, and Stripe's error object.
//!
//! Why not the `async-stripe` crates (used until 2026-12-06): they generate types for the whole
//! Stripe API, and compiling them was a third of a cold release build's CPU time for the eight
//! calls here; their types also require fields Stripe may leave out. These objects read only
//! the fields Tollgate uses and ignore the rest, so a newer Stripe object still reads.
//!
//! The HTTP client is built by [`crate::outbound::http_client`], so the outbound-URL rule holds at
//! connect time (an `api_base` whose name resolves to a loopback, private or link-local address
//! is refused before any connection, and redirects are not followed). One attempt per call: the
//! callers decide about retries (an unknown outcome is looked up before anything is charged
//! again).

use std::collections::HashMap;

use serde::de::DeserializeOwned;
use serde::Deserialize;

/// Stripe's API, when no `api_base` is configured.
pub const DEFAULT_API_BASE: &str = "https://api.stripe.com/";
/// The API version every request names (`Stripe-Version`), so an account's default version
/// never changes the objects we read. The one async-stripe 1.0.0-rc.10 pinned, which the
/// payment suite was written against.
pub const API_VERSION: &str = "2026-09-30.endive";
/// Stripe refuses longer idempotency keys.
pub const MAX_IDEMPOTENCY_KEY_CHARS: usize = 255;
/// Largest answer read from Stripe (a page of 100 PaymentIntents is far below this).
pub const MAX_ANSWER_BYTES: usize = 4 * 1024 * 1024;

/// Why a call did not give an object.
#[derive(Debug)]
pub enum StripeError {
    /// Stripe answered with its error object and this HTTP status.
    Api { status: u16, error: Box<ApiError> },
    /// The call did not finish in time: Stripe may or may not have acted on it.
    Timeout,
    /// No answer (connection refused or reset, TLS, a refused address): the cause, without the URL.
    Transport(String),
    /// An answer that is not the object (or error object) expected.
    Decode(String),
    /// A request Tollgate must not send (nothing was sent).
    Invalid(String),
}

impl std::fmt::Display for StripeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            StripeError::Api { status, error } => write!(
                f,
                "Stripe answered {status}: {}",
                error.message.as_deref().unwrap_or("")
            ),
            StripeError::Timeout => f.write_str("Stripe did not answer in time"),
            StripeError::Transport(m) => write!(f, "Stripe could not be reached: {m}"),
            StripeError::Decode(m) => write!(f, "Stripe's answer could not be read: {m}"),
            StripeError::Invalid(m) => write!(f, "not sent to Stripe: {m}"),
        }
    }
}

/// Stripe's error object (`{"error": {...}}`), the fields Tollgate acts on. `type` is required:
/// an answer without it is not Stripe's error object (a proxy's page, `{"error":{}}`), and says
/// nothing about what Stripe did.
#[derive(Debug, Deserialize)]
pub struct ApiError {
    #[serde(rename = "type")]
    pub kind: String,
    pub code: Option<String>,
    pub decline_code: Option<String>,
    pub message: Option<String>,
    /// On a failed PaymentIntent creation (a decline, `authentication_required`): the intent.
    pub payment_intent: Option<PaymentIntent>,
}

#[derive(Deserialize)]
struct ErrorEnvelope {
    error: ApiError,
}

#[derive(Debug, Deserialize)]
pub struct Customer {
    pub id: String,
}

#[derive(Debug, Deserialize)]
pub struct SetupIntent {
    pub client_secret: Option<String>,
}

#[derive(Debug, Deserialize)]
pub struct PaymentMethod {
    pub id: String,
    pub card: Option<CardDetails>,
}

#[derive(Debug, Deserialize)]
pub struct CardDetails {
    #[serde(default)]
    pub brand: String,
    #[serde(default)]
    pub last4: String,
    #[serde(default)]
    pub exp_month: i64,
    #[serde(default)]
    pub exp_year: i64,
}

/// A PaymentIntent's status (<https://docs.stripe.com/payments/paymentintents/lifecycle>).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PaymentIntentStatus {
    RequiresPaymentMethod,
    RequiresConfirmation,
    RequiresAction,
    Processing,
    RequiresCapture,
    Canceled,
    Succeeded,
    /// A status this version does not know: read as not paid (never as paid).
    #[serde(other)]
    Unknown,
}

#[derive(Debug, Deserialize)]
pub struct PaymentIntent {
    pub id: String,
    pub status: PaymentIntentStatus,
    pub client_secret: Option<String>,
    pub last_payment_error: Option<PaymentError>,
    #[serde(default)]
    pub metadata: HashMap<String, String>,
}

/// Why a PaymentIntent's last attempt failed.
#[derive(Debug, Deserialize)]
pub struct PaymentError {
    pub code: Option<String>,
    pub decline_code: Option<String>,
    pub message: Option<String>,
}

#[derive(Debug, Deserialize)]
pub struct List<T> {
    pub data: Vec<T>,
}

/// Form fields of a request body or query, in order (`metadata[key]` for metadata entries).
pub type Form = Vec<(String, String)>;

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

/// Longest id put into a path (Stripe's ids are far shorter).
pub const MAX_ID_CHARS: usize = 255;

/// An id as one path segment, or `None`: Stripe's ids are letters, digits and `_` (`pm_1Ab…`),
/// and anything else (an id a browser sent, say) is refused rather than encoded, since a URL
/// parser resolves even an encoded `%2E%2E` as a dot segment and the id would name another path.
pub fn segment(id: &str) -> Option<&str> {
    let valid = !id.is_empty()
        && id.len() <= MAX_ID_CHARS
        && id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_');
    valid.then_some(id)
}

/// A transport error with its causes (the resolver's refusal is a cause), without the URL.
fn transport_error(e: reqwest::Error) -> StripeError {
    if e.is_timeout() {
        return StripeError::Timeout;
    }
    StripeError::Transport(crate::outbound::describe(e))
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

    pub async fn get<T: DeserializeOwned>(
        &self,
        path: &str,
        query: &Form,
    ) -> Result<T, StripeError> {
        self.send(reqwest::Method::GET, path, query, None).await
    }

    /// A POST with a form body; `idempotency_key` makes a retry of the same request return the
    /// first answer instead of acting twice.
    pub async fn post<T: DeserializeOwned>(
        &self,
        path: &str,
        form: &Form,
        idempotency_key: Option<&str>,
    ) -> Result<T, StripeError> {
        self.send(reqwest::Method::POST, path, form, idempotency_key)
            .await
    }

    async fn send<T: DeserializeOwned>(
        &self,
        method: reqwest::Method,
        path: &str,
        fields: &Form,
        idempotency_key: Option<&str>,
    ) -> Result<T, StripeError> {
        // Method and path only: the fields may carry customer data, the headers the key.
        tracing::debug!(%method, path, "stripe request");
        let url = format!("{}v1{path}", self.api_base);
        let mut request = self
            .http
            .request(method.clone(), url)
            .header("authorization", &self.authorization)
            .header("stripe-version", API_VERSION);
        if let Some(key) = idempotency_key {
            if key.is_empty() || key.chars().count() > MAX_IDEMPOTENCY_KEY_CHARS {
                return Err(StripeError::Invalid(format!(
                    "an idempotency key must have 1 to {MAX_IDEMPOTENCY_KEY_CHARS} characters"
                )));
            }
            request = request.header("idempotency-key", key);
        }
        request = if method == reqwest::Method::GET {
            request.query(fields)
        } else {
            request.form(fields)
        };
        let mut response = request.send().await.map_err(transport_error)?;
        let status = response.status();
        let mut bytes = Vec::new();
        while let Some(chunk) = response.chunk().await.map_err(transport_error)? {
            if bytes.len() + chunk.len() > MAX_ANSWER_BYTES {
                return Err(StripeError::Decode(format!(
                    "the answer is over {MAX_ANSWER_BYTES} bytes"
                )));
            }
            bytes.extend_from_slice(&chunk);
        }
        if status.is_success() {
            return serde_json::from_slice(&bytes).map_err(|e| {
                tracing::warn!(path, "Stripe's answer could not be read: {e}");
                StripeError::Decode(format!("{path}: the answer is not the expected object"))
            });
        }
        // Only Stripe's own error object says what Stripe did. Anything else (a redirect, which
        // is not followed; a proxy's or firewall's page; a body without `type`) may have come
        // after Stripe acted, so it is an unknown outcome, never a refusal.
        match serde_json::from_slice::<ErrorEnvelope>(&bytes) {
            Ok(e) if !status.is_redirection() => Err(StripeError::Api {
                status: status.as_u16(),
                error: Box::new(e.error),
            }),
            _ => Err(StripeError::Decode(format!(
                "{path}: HTTP {} without Stripe's error object",
                status.as_u16()
            ))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_cannot_leave_their_path_segment() {
        assert_eq!(segment("pm_1AbC"), Some("pm_1AbC"));
        for hostile in [
            "",
            ".",
            "..",
            "../customers",
            "%2E%2E",
            "pm?x=1#y",
            "pm/attach",
            "pm-1",
        ] {
            assert_eq!(segment(hostile), None, "{hostile:?}");
        }
        assert_eq!(segment(&"a".repeat(MAX_ID_CHARS + 1)), None);
    }

    #[test]
    fn only_stripes_error_object_is_an_error_object() {
        assert!(serde_json::from_str::<ErrorEnvelope>(r#"{"error":{}}"#).is_err());
        assert!(serde_json::from_str::<ErrorEnvelope>(r#"{"error":{"message":"x"}}"#).is_err());
        assert!(
            serde_json::from_str::<ErrorEnvelope>(r#"{"error":{"type":"card_error"}}"#).is_ok()
        );
    }

    #[test]
    fn a_payment_intent_reads_with_only_the_fields_tollgate_uses() {
        let pi: PaymentIntent = serde_json::from_str(
            r#"{"id":"pi_1","object":"payment_intent","status":"requires_action","amount":100,
                "client_secret":"pi_1_secret","metadata":{"tollgate_attempt":"inv_1-1"},
                "some_future_field":{"x":1}}"#,
        )
        .unwrap();
        assert_eq!(pi.status, PaymentIntentStatus::RequiresAction);
        assert_eq!(pi.metadata["tollgate_attempt"], "inv_1-1");
        let later: PaymentIntent =
            serde_json::from_str(r#"{"id":"pi_2","status":"requires_something_new"}"#).unwrap();
        assert_eq!(later.status, PaymentIntentStatus::Unknown);
    }

    #[test]
    fn a_decline_carries_its_codes_and_intent() {
        let e: ErrorEnvelope = serde_json::from_str(
            r#"{"error":{"type":"card_error","code":"card_declined","decline_code":"insufficient_funds",
                "message":"Your card has insufficient funds.",
                "payment_intent":{"id":"pi_3","status":"requires_payment_method"}}}"#,
        )
        .unwrap();
        assert_eq!(e.error.decline_code.as_deref(), Some("insufficient_funds"));
        assert_eq!(
            e.error.payment_intent.map(|p| p.id).as_deref(),
            Some("pi_3")
        );
    }
}
