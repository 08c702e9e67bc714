//! `/billing/gateway`: which payment provider charges invoices, and its credentials.

use axum::extract::State;
use axum::Json;
use serde_json::{json, Value};

use super::error::{ApiError, ApiResult};
use super::extract::JsonBody;
use super::AppState;
use crate::domain::payments::config::{self, GatewayInput};
use crate::domain::payments::units::UnitError;

pub async fn get(State(s): State<AppState>) -> ApiResult<Json<Value>> {
    Ok(Json(config::public_view(&s.pool).await?))
}

/// Replaces the gateway settings (all fields of the chosen type). 422 on invalid input, 409 without a
/// master key; nothing is stored in either case.
pub async fn put(
    State(s): State<AppState>,
    JsonBody(input): JsonBody<GatewayInput>,
) -> ApiResult<Json<Value>> {
    let cfg = input.validate()?;
    // The billing currency must be one the new provider can charge.
    let billing = crate::domain::billing::settings::load(&s.pool).await?;
    // (Braintree: a merchant account in it; the error names the missing entry.)
    cfg.check_currency(billing.currency()?)
        .map_err(|e| match e {
            UnitError::NoMerchantAccount { currency } => ApiError::invalid(
                format!("merchant_accounts.{currency}"),
                "currency_has_no_merchant_account",
                format!(
                    "the billing currency is {currency}: merchant_accounts needs an account in it"
                ),
            ),
            e => e.into(),
        })?;
    let previous = config::store(&s.pool, s.master_key.as_deref(), &cfg).await?;
    let mut view = config::public_view(&s.pool).await?;
    if let Some(previous) = previous {
        view["warning"] = json!(format!(
            "switched from {previous} to {}: cards stored at {previous} are not used any more; developers must add a card again",
            cfg.provider()
        ));
    }
    Ok(Json(view))
}
