//! Stripe ([`super::stripe_http`]): a customer per account, SetupIntents for card
//! entry (Stripe Elements), cards attached to the customer, and off-session PaymentIntents for
//! charges, each with an idempotency key derived from invoice and attempt.
//!
//! Every call is bounded by [`CALL_TIMEOUT`]; a timed-out charge is recorded as unknown and looked up
//! (by the attempt key in the PaymentIntent's metadata) before anything is charged again.

use std::time::Duration;

use super::stripe_http::{
    segment, Customer, Form, List, PaymentIntent, PaymentIntentStatus, PaymentMethod, SetupIntent,
    StripeError, StripeHttp,
};
use super::{Card, ChargeOutcome, ChargeRequest, PayError};

/// Longest wait for one Stripe call (`TOLLGATE_PAYMENT_TIMEOUT_MS` overrides it).
pub const CALL_TIMEOUT: Duration = Duration::from_secs(20);

fn call_timeout() -> Duration {
    std::env::var("TOLLGATE_PAYMENT_TIMEOUT_MS")
        .ok()
        .and_then(|v| v.parse::<u64>().ok())
        .filter(|ms| (100..=120_000).contains(ms))
        .map_or(CALL_TIMEOUT, Duration::from_millis)
}
/// PaymentIntents of a customer searched when looking an attempt up.
pub const LOOKUP_PAGE: i64 = 100;
/// Metadata key carrying the attempt key (invoice id + attempt number).
pub const ATTEMPT_METADATA: &str = "tollgate_attempt";

pub struct Stripe {
    client: StripeHttp,
    pub publishable_key: String,
    pub webhook_secret: String,
    /// Where browsers load Stripe.js for this account ([`super::config::STRIPE_JS_URL`] unless set).
    pub js_url: String,
}

fn err(e: StripeError) -> PayError {
    match e {
        // An idempotency key reused with other parameters (whatever its status): the first
        // request's outcome is unknown here, so it is looked up, never read as a refusal.
        StripeError::Api { error, .. } if error.kind == "idempotency_error" => {
            PayError::Unavailable(format!(
                "Stripe refused a reused idempotency key: {}",
                error.message.unwrap_or_default()
            ))
        }
        // A 5xx may come after Stripe acted on the request (and 429 asks for a later retry): the
        // outcome is unknown, never a decline, or dunning's next attempt (a new idempotency key)
        // could charge the card a second time. 409: the idempotency key is in use by a request
        // still running (or was used with other parameters): unknown too, looked up later.
        StripeError::Api { status, error } if status >= 500 || status == 429 || status == 409 => {
            PayError::Unavailable(format!(
                "Stripe answered {status}: {}",
                error.message.unwrap_or_default()
            ))
        }
        // The secret key is wrong, rolled or restricted: the gateway's configuration, never the
        // card (nothing is declined, emailed or suspended for it).
        StripeError::Api { status, error } if status == 401 || status == 403 => {
            PayError::Config(format!(
                "Stripe refused the secret key ({status}): {}",
                error.message.unwrap_or_default()
            ))
        }
        StripeError::Api { status, error } => PayError::Provider {
            status,
            code: error.code.unwrap_or_else(|| "stripe_error".into()),
            message: error.message.unwrap_or_default(),
        },
        StripeError::Invalid(m) => PayError::Config(m),
        other => PayError::Unavailable(other.to_string()),
    }
}

/// An id from outside (a browser, the database) as a path segment, or a refusal naming it.
fn id_segment<'a>(what: &str, id: &'a str) -> Result<&'a str, PayError> {
    segment(id).ok_or_else(|| PayError::Provider {
        status: 400,
        code: "resource_missing".into(),
        message: format!("no such {what}: Stripe ids are letters, digits and _"),
    })
}

async fn bounded<T>(
    f: impl std::future::Future<Output = Result<T, StripeError>>,
) -> Result<T, PayError> {
    match tokio::time::timeout(call_timeout(), f).await {
        Ok(r) => r.map_err(err),
        Err(_) => Err(PayError::Unavailable(format!(
            "Stripe did not answer in {:?}",
            call_timeout()
        ))),
    }
}

/// What a PaymentIntent says about the charge. `Err` (an unknown outcome, looked up again later)
/// for a status that is neither paid, waiting for the cardholder nor finally refused: one this
/// version does not know, or `requires_capture` (never asked for: Tollgate captures at once).
fn outcome(pi: &PaymentIntent) -> Result<ChargeOutcome, PayError> {
    let reference = pi.id.clone();
    Ok(match pi.status {
        PaymentIntentStatus::Succeeded | PaymentIntentStatus::Processing => {
            ChargeOutcome::Succeeded { reference }
        }
        PaymentIntentStatus::RequiresAction | PaymentIntentStatus::RequiresConfirmation => {
            ChargeOutcome::RequiresAction { reference }
        }
        PaymentIntentStatus::RequiresCapture | PaymentIntentStatus::Unknown => {
            return Err(PayError::Unavailable(format!(
                "PaymentIntent {reference} is in a status Tollgate does not settle ({:?})",
                pi.status
            )))
        }
        PaymentIntentStatus::RequiresPaymentMethod | PaymentIntentStatus::Canceled => {
            let (code, message) = pi
                .last_payment_error
                .as_ref()
                .map(|e| {
                    (
                        e.decline_code
                            .clone()
                            .or_else(|| e.code.clone())
                            .unwrap_or_else(|| "declined".into()),
                        e.message.clone().unwrap_or_default(),
                    )
                })
                .unwrap_or_else(|| ("declined".into(), "the payment was not completed".into()));
            ChargeOutcome::Declined {
                reference: Some(reference),
                code,
                message,
            }
        }
    })
}

fn field(name: &str, value: impl Into<String>) -> (String, String) {
    (name.to_string(), value.into())
}

fn metadata(key: &str, value: impl Into<String>) -> (String, String) {
    (format!("metadata[{key}]"), value.into())
}

impl Stripe {
    pub fn new(
        secret_key: &str,
        publishable_key: &str,
        webhook_secret: &str,
        api_base: Option<&str>,
    ) -> Result<Stripe, PayError> {
        if let Some(base) = api_base {
            // A stored URL is checked again where it is used (the database may hold an older one).
            crate::outbound::check(base).map_err(|m| PayError::Config(format!("api_base: {m}")))?;
        }
        let client = StripeHttp::new(secret_key, api_base).map_err(PayError::Config)?;
        Ok(Stripe {
            client,
            publishable_key: publishable_key.into(),
            webhook_secret: webhook_secret.into(),
            js_url: super::config::STRIPE_JS_URL.into(),
        })
    }

    pub async fn create_customer(
        &self,
        account_id: &str,
        email: &str,
        name: &str,
    ) -> Result<String, PayError> {
        let form: Form = vec![
            field("email", email),
            field("name", name),
            metadata("tollgate_account", account_id),
        ];
        let c: Customer = bounded(self.client.post("/customers", &form, None)).await?;
        Ok(c.id)
    }

    /// A SetupIntent's client secret, for Stripe Elements to collect a card.
    pub async fn setup_intent(&self, customer: &str) -> Result<String, PayError> {
        let form: Form = vec![field("customer", customer)];
        let si: SetupIntent = bounded(self.client.post("/setup_intents", &form, None)).await?;
        si.client_secret
            .ok_or_else(|| PayError::Unavailable("the SetupIntent has no client secret".into()))
    }

    pub async fn attach(&self, customer: &str, payment_method: &str) -> Result<Card, PayError> {
        let path = format!(
            "/payment_methods/{}/attach",
            id_segment("payment method", payment_method)?
        );
        let form: Form = vec![field("customer", customer)];
        let pm: PaymentMethod = bounded(self.client.post(&path, &form, None)).await?;
        Ok(card_of(&pm))
    }

    pub async fn list_cards(&self, customer: &str) -> Result<Vec<Card>, PayError> {
        let query: Form = vec![field("customer", customer), field("type", "card")];
        let list: List<PaymentMethod> =
            bounded(self.client.get("/payment_methods", &query)).await?;
        Ok(list.data.iter().map(card_of).collect())
    }

    pub async fn detach(&self, payment_method: &str) -> Result<(), PayError> {
        let path = format!(
            "/payment_methods/{}/detach",
            id_segment("payment method", payment_method)?
        );
        let _: PaymentMethod = bounded(self.client.post(&path, &Form::new(), None)).await?;
        Ok(())
    }

    /// An off-session charge. Declines and SCA come back as outcomes, not errors.
    pub async fn charge(&self, req: &ChargeRequest<'_>) -> Result<ChargeOutcome, PayError> {
        let amount = super::units::stripe_amount(req.currency, req.amount)
            .map_err(|e| PayError::Config(format!("{e:?}")))?;
        // `units` has refused every currency Stripe does not charge in: never a fallback.
        let form: Form = vec![
            field("amount", amount.to_string()),
            field("currency", req.currency.code.to_lowercase()),
            field("customer", req.customer),
            field("payment_method", req.payment_method),
            field("confirm", "true"),
            field("off_session", "true"),
            // Cards only, named: without it Stripe (API versions since 2023-08-16) enables the
            // Dashboard's automatic payment methods, some of which redirect, and then refuses a
            // server-side confirm that carries no `return_url`. Tollgate vaults only cards.
            field("payment_method_types[0]", "card"),
            metadata(ATTEMPT_METADATA, req.attempt_key),
            metadata("tollgate_invoice", req.invoice_id),
        ];
        let call =
            self.client
                .post::<PaymentIntent>("/payment_intents", &form, Some(req.attempt_key));
        match tokio::time::timeout(call_timeout(), call).await {
            Err(_) => Err(PayError::Unavailable(format!(
                "Stripe did not answer in {:?}",
                call_timeout()
            ))),
            Ok(Ok(pi)) => outcome(&pi),
            Ok(Err(StripeError::Api { status, error }))
                if (status == 402 || error.payment_intent.is_some())
                    && error.kind != "idempotency_error" =>
            {
                let code = error
                    .decline_code
                    .clone()
                    .or_else(|| error.code.clone())
                    .unwrap_or_else(|| "declined".into());
                let reference = error.payment_intent.as_ref().map(|pi| pi.id.clone());
                if code == "authentication_required" {
                    if let Some(reference) = reference {
                        return Ok(ChargeOutcome::RequiresAction { reference });
                    }
                }
                Ok(ChargeOutcome::Declined {
                    reference,
                    code,
                    message: error.message.clone().unwrap_or_default(),
                })
            }
            Ok(Err(e)) => Err(err(e)),
        }
    }

    /// A PaymentIntent's outcome now, and its client secret (which Stripe.js needs to let the
    /// cardholder authenticate a payment that requires action).
    pub async fn retrieve(
        &self,
        payment_intent: &str,
    ) -> Result<(ChargeOutcome, Option<String>), PayError> {
        let path = format!(
            "/payment_intents/{}",
            id_segment("payment intent", payment_intent)?
        );
        let pi: PaymentIntent = bounded(self.client.get(&path, &Form::new())).await?;
        Ok((outcome(&pi)?, pi.client_secret.clone()))
    }

    /// The PaymentIntent an earlier call created for `attempt_key`, if any.
    pub async fn find(
        &self,
        customer: &str,
        attempt_key: &str,
    ) -> Result<Option<ChargeOutcome>, PayError> {
        let query: Form = vec![
            field("customer", customer),
            field("limit", LOOKUP_PAGE.to_string()),
        ];
        let list: List<PaymentIntent> =
            bounded(self.client.get("/payment_intents", &query)).await?;
        list.data
            .iter()
            .find(|pi| pi.metadata.get(ATTEMPT_METADATA).map(String::as_str) == Some(attempt_key))
            .map(outcome)
            .transpose()
    }
}

fn card_of(pm: &PaymentMethod) -> Card {
    let c = pm.card.as_ref();
    Card {
        id: pm.id.clone(),
        brand: c.map(|c| c.brand.clone()).unwrap_or_default(),
        last4: c.map(|c| c.last4.clone()).unwrap_or_default(),
        exp_month: c.map(|c| c.exp_month).unwrap_or_default(),
        exp_year: c.map(|c| c.exp_year).unwrap_or_default(),
    }
}
