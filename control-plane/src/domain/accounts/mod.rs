//! Developer accounts: who is billed, where (billing address, VAT) and how to reach them, and
//! what they hold: applications (an account on a plan), their API keys and their usage.
//!
//! - [`account`]: accounts (create, read, update, delete) and their credit balance.
//! - [`applications`]: applications, their state (live, suspended and why) and plan changes.
//! - [`keys`]: API keys: shown once, stored hashed, capped, rotated with a grace period; or
//!   brought from elsewhere by value or digest.
//! - [`app_keys`]: 3scale-style app keys, presented with the application's `app_id`.
//! - [`usage`]: metered usage of one application in calendar buckets.

pub mod account;
pub mod app_keys;
pub mod applications;
pub mod keys;
pub mod usage;

use serde::{Deserialize, Serialize};

use super::{DomainError, DomainResult};

/// Longest email address (RFC 5321's path limit).
pub const MAX_EMAIL_CHARS: usize = 254;
/// Longest line of a billing address.
pub const MAX_ADDRESS_FIELD_CHARS: usize = 200;

#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq, Eq, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct BillingAddress {
    #[serde(default)]
    pub line1: String,
    #[serde(default)]
    pub line2: String,
    #[serde(default)]
    pub city: String,
    #[serde(default)]
    pub postal_code: String,
    #[serde(default)]
    pub region: String,
    /// ISO 3166-1 alpha-2, e.g. "DE".
    #[serde(default)]
    pub country: String,
}

pub fn check_email(email: &str) -> DomainResult<String> {
    let e = email.trim();
    let valid = e.chars().count() <= MAX_EMAIL_CHARS
        && !e.chars().any(|c| c.is_whitespace() || c.is_control())
        && e.split_once('@').is_some_and(|(local, domain)| {
            !local.is_empty()
                && domain.contains('.')
                && !domain.starts_with('.')
                && !domain.ends_with('.')
        });
    if valid {
        Ok(e.to_string())
    } else {
        Err(DomainError::invalid(
            "email",
            "invalid_email",
            format!("{email:?} is not an email address"),
        ))
    }
}

pub fn check_address(a: &BillingAddress) -> DomainResult<String> {
    for (field, v) in [
        ("line1", &a.line1),
        ("line2", &a.line2),
        ("city", &a.city),
        ("postal_code", &a.postal_code),
        ("region", &a.region),
    ] {
        if v.chars().count() > MAX_ADDRESS_FIELD_CHARS || v.chars().any(char::is_control) {
            return Err(DomainError::invalid(
                format!("billing_address.{field}"),
                "invalid_address",
                format!("at most {MAX_ADDRESS_FIELD_CHARS} printable characters"),
            ));
        }
    }
    let country_ok = a.country.is_empty()
        || (a.country.len() == 2 && a.country.bytes().all(|b| b.is_ascii_uppercase()));
    if !country_ok {
        return Err(DomainError::invalid(
            "billing_address.country",
            "invalid_country",
            "an ISO 3166-1 alpha-2 code like \"DE\"",
        ));
    }
    serde_json::to_string(a).map_err(|e| DomainError::Internal(e.to_string()))
}
