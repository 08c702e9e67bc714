//! Payments: the payment gateway's settings, and (with the providers) cards and charging.

pub mod braintree;
pub mod config;
pub mod stripe;
pub mod stripe_http;
pub mod units;

/// A stored card as the provider describes it (never the number).
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct Card {
    pub id: String,
    pub brand: String,
    pub last4: String,
    pub exp_month: i64,
    pub exp_year: i64,
}

/// One charge to make.
#[derive(Clone, Debug)]
pub struct ChargeRequest<'a> {
    pub customer: &'a str,
    pub payment_method: &'a str,
    /// The invoice total in the currency's major unit, rounded to its ISO 4217 minor unit; each
    /// provider writes it in its own unit ([`units`]).
    pub amount: rust_decimal::Decimal,
    pub currency: crate::domain::billing::currency::Currency,
    pub invoice_id: &'a str,
    /// `<invoice id>-<attempt>`: the idempotency key and the lookup key of this attempt.
    pub attempt_key: &'a str,
    pub description: &'a str,
}

/// What became of a charge.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ChargeOutcome {
    Succeeded {
        reference: String,
    },
    /// Strong customer authentication needed: the developer pays in the portal.
    RequiresAction {
        reference: String,
    },
    Declined {
        reference: Option<String>,
        code: String,
        message: String,
    },
}

#[derive(Debug)]
pub enum PayError {
    /// Not configured, or configured wrong.
    Config(String),
    /// The provider refused the request (bad card id, ...).
    Provider {
        status: u16,
        code: String,
        message: String,
    },
    /// No answer, or a transport error: the outcome is unknown.
    Unavailable(String),
}
pub mod charging;
pub mod webhooks;
