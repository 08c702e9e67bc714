//! Payments: the payment gateway's settings, and (with the providers) cards and charging.
//!
//! - [`config`]: the gateway settings (one provider, secrets sealed).
//! - [`provider`]: the configured provider, ready to call.
//! - [`cards`]: the account's customer at the provider and its cards.
//! - [`charging`]: charging an issued invoice (claim, lease, provider call, outcome, dunning).
//! - [`attempts`]: charge attempts as the APIs and the portal show them.
//! - [`webhooks`]: provider events.
//! - [`statement`]: the developer's billing page (issued invoices and payments).

pub mod attempts;
pub mod braintree;
pub mod cards;
pub mod config;
pub mod provider;
pub mod statement;
pub mod stripe;
pub mod stripe_http;
pub mod units;

use crate::domain::{DomainError, DomainResult};

/// The payment providers Tollgate charges through (`payment_gateway.kind`,
/// `charge_attempts.provider`, `payment_customers.provider`).
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize, utoipa::ToSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum ProviderKind {
    Stripe,
    Braintree,
}

impl ProviderKind {
    pub fn as_str(self) -> &'static str {
        match self {
            ProviderKind::Stripe => "stripe",
            ProviderKind::Braintree => "braintree",
        }
    }

    pub fn parse(s: &str) -> Option<ProviderKind> {
        match s {
            "stripe" => Some(ProviderKind::Stripe),
            "braintree" => Some(ProviderKind::Braintree),
            _ => None,
        }
    }

    /// A stored provider name: an unknown one is a bug or a corrupted row, never a guess.
    pub fn stored(s: &str) -> DomainResult<ProviderKind> {
        ProviderKind::parse(s)
            .ok_or_else(|| DomainError::Internal(format!("unknown stored payment provider {s:?}")))
    }
}

impl std::fmt::Display for ProviderKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A stored card as the provider describes it (never the number).
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, utoipa::ToSchema)]
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
