//! Provider webhooks. Stripe: `POST /webhooks/stripe`, verified with the endpoint secret
//! (`Stripe-Signature: t=<unix>,v1=<hex HMAC-SHA256 of "t.body">`, any of several `v1`) and a
//! tolerance of [`STRIPE_TOLERANCE_SECS`]; events are parsed loosely (only the fields used), applied
//! once (a replayed event id changes nothing), and intents Tollgate did not create are acknowledged
//! and ignored (a Stripe account may be shared with other systems).

use hmac::{Hmac, Mac};
use serde::Serialize;
use serde_json::Value;
use sha2::Sha256;

use super::charging::{self, today};
use super::config::{self, GatewayConfig};
use super::ChargeOutcome;
use crate::domain::{DomainError, DomainResult};
use crate::store::{is_unique_violation, now, Pool};

/// How far a signature's timestamp may be from now (Stripe's own default).
pub const STRIPE_TOLERANCE_SECS: i64 = 300;
/// Largest webhook body accepted.
pub const MAX_WEBHOOK_BYTES: usize = 256 * 1024;

/// Checks a `Stripe-Signature` header against `body`.
pub fn verify_stripe(
    header: &str,
    body: &[u8],
    secret: &str,
    now: i64,
) -> Result<(), &'static str> {
    let mut timestamp = None;
    let mut signatures = Vec::new();
    for part in header.split(',') {
        match part.trim().split_once('=') {
            Some(("t", t)) => timestamp = t.parse::<i64>().ok(),
            Some(("v1", s)) => signatures.push(s),
            _ => {}
        }
    }
    let t = timestamp.ok_or("no timestamp in Stripe-Signature")?;
    if (now - t).abs() > STRIPE_TOLERANCE_SECS {
        return Err("timestamp outside the tolerance");
    }
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).map_err(|_| "bad secret")?;
    mac.update(t.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    let expected: String = mac
        .finalize()
        .into_bytes()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    if signatures
        .iter()
        .any(|s| crate::secrets::constant_time_eq(s, &expected))
    {
        Ok(())
    } else {
        Err("no matching v1 signature")
    }
}

/// What became of an event.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum WebhookResult {
    /// The outcome was recorded on the attempt.
    Applied,
    /// This event id was applied before.
    Duplicate,
    /// Not an event Tollgate acts on, or about an intent Tollgate did not create.
    Ignored,
    /// Known and needing nothing (a card set up in the browser).
    Acknowledged,
}

impl WebhookResult {
    pub fn as_str(self) -> &'static str {
        match self {
            WebhookResult::Applied => "applied",
            WebhookResult::Duplicate => "duplicate",
            WebhookResult::Ignored => "ignored",
            WebhookResult::Acknowledged => "acknowledged",
        }
    }
}

/// The answer to the provider.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct WebhookReceipt {
    /// Always true.
    pub received: bool,
    pub result: WebhookResult,
}

/// `POST /webhooks/stripe`: checks the `Stripe-Signature` header (400 `invalid_signature`) with
/// the configured endpoint secret (409 `no_payment_gateway` when Stripe is not the gateway),
/// reads the event (400 `invalid_json`) and applies it.
pub async fn receive_stripe(
    pool: &Pool,
    master_key: Option<&[u8; 32]>,
    signature: &str,
    body: &[u8],
) -> DomainResult<WebhookReceipt> {
    let Some(GatewayConfig::Stripe { webhook_secret, .. }) = config::load(pool, master_key).await?
    else {
        return Err(DomainError::conflict(
            "no_payment_gateway",
            "Stripe is not the configured payment gateway",
        ));
    };
    verify_stripe(signature, body, &webhook_secret, now()).map_err(|why| {
        DomainError::malformed(Some("Stripe-Signature".into()), "invalid_signature", why)
    })?;
    let event: Value = serde_json::from_slice(body).map_err(|e| {
        DomainError::malformed(None, "invalid_json", format!("the event is not JSON: {e}"))
    })?;
    let result = apply_stripe(pool, &event).await?;
    let id = event.get("id").and_then(Value::as_str).unwrap_or_default();
    let kind = event
        .get("type")
        .and_then(Value::as_str)
        .unwrap_or_default();
    tracing::info!(event = id, kind, result = result.as_str(), "stripe webhook");
    Ok(WebhookReceipt {
        received: true,
        result,
    })
}

/// Applies a verified Stripe event. Returns what was done, for the log and the answer.
pub async fn apply_stripe(pool: &Pool, event: &Value) -> DomainResult<WebhookResult> {
    let id = event.get("id").and_then(Value::as_str).unwrap_or_default();
    let kind = event
        .get("type")
        .and_then(Value::as_str)
        .unwrap_or_default();
    if id.is_empty() {
        return Err(DomainError::malformed(
            None,
            "invalid_event",
            "the event has no id",
        ));
    }
    let object = event
        .pointer("/data/object")
        .cloned()
        .unwrap_or(Value::Null);
    let intent = object
        .get("id")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string();
    let attempt_key = object
        .pointer(&format!("/metadata/{}", super::stripe::ATTEMPT_METADATA))
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string();
    let outcome = match kind {
        "payment_intent.succeeded" => ChargeOutcome::Succeeded {
            reference: intent.clone(),
        },
        "payment_intent.payment_failed" => {
            let err = object
                .get("last_payment_error")
                .cloned()
                .unwrap_or(Value::Null);
            let code = err
                .get("decline_code")
                .or_else(|| err.get("code"))
                .and_then(Value::as_str)
                .unwrap_or("declined")
                .to_string();
            let message = err
                .get("message")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_string();
            ChargeOutcome::Declined {
                reference: Some(intent.clone()),
                code,
                message,
            }
        }
        // Card entry completes in the browser and is attached by the portal; nothing to do here.
        "setup_intent.succeeded" => return Ok(WebhookResult::Acknowledged),
        _ => return Ok(WebhookResult::Ignored),
    };
    // The attempt: by the PaymentIntent id we stored, or by the attempt key in its metadata.
    let attempt: Option<String> = sqlx::query_scalar(
        "SELECT id FROM charge_attempts WHERE provider = 'stripe' AND (provider_ref = $1 OR idempotency_key = $2) LIMIT 1",
    )
    .bind(&intent)
    .bind(&attempt_key)
    .fetch_optional(pool)
    .await?;
    let Some(attempt_id) = attempt else {
        return Ok(WebhookResult::Ignored);
    };
    match sqlx::query(
        "INSERT INTO webhook_events (provider, event_id, received_at) VALUES ('stripe', $1, $2)",
    )
    .bind(id)
    .bind(now())
    .execute(pool)
    .await
    {
        Ok(_) => {}
        Err(e) if is_unique_violation(&e) => return Ok(WebhookResult::Duplicate),
        Err(e) => return Err(e.into()),
    }
    if let Err(e) = charging::apply(pool, &attempt_id, outcome, today()).await {
        // Let Stripe retry the event later.
        let _ =
            sqlx::query("DELETE FROM webhook_events WHERE provider = 'stripe' AND event_id = $1")
                .bind(id)
                .execute(pool)
                .await;
        return Err(e);
    }
    Ok(WebhookResult::Applied)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sign(secret: &str, t: i64, body: &str) -> String {
        let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).unwrap();
        mac.update(format!("{t}.{body}").as_bytes());
        let hex: String = mac
            .finalize()
            .into_bytes()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        format!("t={t},v1={hex}")
    }

    #[test]
    fn verifies_signatures_with_tolerance() {
        let body = r#"{"id":"evt_1"}"#;
        let h = sign("whsec_x", 1_000_000, body);
        assert!(verify_stripe(&h, body.as_bytes(), "whsec_x", 1_000_100).is_ok());
        assert!(
            verify_stripe(&h, body.as_bytes(), "whsec_x", 1_000_301).is_err(),
            "too old"
        );
        assert!(
            verify_stripe(&h, body.as_bytes(), "whsec_y", 1_000_000).is_err(),
            "other secret"
        );
        assert!(
            verify_stripe(&h, b"{}", "whsec_x", 1_000_000).is_err(),
            "altered body"
        );
        let two = format!("{},v1=deadbeef", sign("whsec_x", 1_000_000, body));
        assert!(
            verify_stripe(&two, body.as_bytes(), "whsec_x", 1_000_000).is_ok(),
            "any v1 may match"
        );
        assert!(verify_stripe("v1=abc", body.as_bytes(), "whsec_x", 0).is_err());
    }
}
