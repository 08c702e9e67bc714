//! The configured payment provider, ready to call: built from the stored gateway settings
//! ([`super::config`]) with its secrets opened.

use super::braintree::Braintree;
use super::config::{self, GatewayConfig};
use super::stripe::Stripe;
use super::{PayError, ProviderKind};
use crate::domain::{DomainError, DomainResult};
use crate::store::Pool;

pub enum Provider {
    Stripe(Box<Stripe>),
    Braintree(Braintree),
}

impl Provider {
    pub fn kind(&self) -> ProviderKind {
        match self {
            Provider::Stripe(_) => ProviderKind::Stripe,
            Provider::Braintree(_) => ProviderKind::Braintree,
        }
    }

    /// The provider's name as stored (`charge_attempts.provider`, `payment_customers.provider`).
    pub fn name(&self) -> &'static str {
        self.kind().as_str()
    }

    /// Where browsers load the provider's card-collection script.
    pub fn js_url(&self) -> &str {
        match self {
            Provider::Stripe(stripe) => &stripe.js_url,
            Provider::Braintree(bt) => &bt.js_url,
        }
    }

    /// The provider `config` describes (its HTTP client built, nothing called yet).
    pub fn from_config(config: GatewayConfig) -> DomainResult<Provider> {
        match config {
            GatewayConfig::Stripe {
                secret_key,
                publishable_key,
                webhook_secret,
                api_base,
                js_url,
            } => {
                let mut stripe = Stripe::new(
                    &secret_key,
                    &publishable_key,
                    &webhook_secret,
                    api_base.as_deref(),
                )
                .map_err(pay_error)?;
                if let Some(js_url) = js_url {
                    stripe.js_url = js_url;
                }
                Ok(Provider::Stripe(Box::new(stripe)))
            }
            GatewayConfig::Braintree {
                public_key,
                private_key,
                environment,
                api_base,
                js_url,
                merchant_accounts,
                ..
            } => {
                let mut bt = Braintree::new(
                    &public_key,
                    &private_key,
                    environment,
                    api_base.as_deref(),
                    merchant_accounts,
                )
                .map_err(pay_error)?;
                if let Some(js_url) = js_url {
                    bt.js_url = js_url;
                }
                Ok(Provider::Braintree(bt))
            }
        }
    }
}

/// A provider's failure in the domain's terms.
pub fn pay_error(e: PayError) -> DomainError {
    match e {
        PayError::Config(m) => DomainError::conflict("payment_gateway_misconfigured", m),
        PayError::Provider { code, message, .. } => DomainError::Invalid {
            code: "payment_provider_error",
            message: format!("{code}: {message}"),
            param: None,
        },
        PayError::Unavailable(m) => {
            DomainError::Unavailable(format!("the payment provider is unavailable: {m}"))
        }
    }
}

/// The gateway settings with their secrets opened, or 409 `no_payment_gateway`.
pub async fn configured(pool: &Pool, master_key: Option<&[u8; 32]>) -> DomainResult<GatewayConfig> {
    config::load(pool, master_key).await?.ok_or_else(no_gateway)
}

/// 409 `no_payment_gateway`.
pub fn no_gateway() -> DomainError {
    DomainError::conflict(
        "no_payment_gateway",
        "no payment gateway is configured (PUT /billing/gateway)",
    )
}

/// The configured provider, or 409 `no_payment_gateway`.
pub async fn provider(pool: &Pool, master_key: Option<&[u8; 32]>) -> DomainResult<Provider> {
    Provider::from_config(configured(pool, master_key).await?)
}
