//! `/billing/gateway`: which payment provider charges invoices, and its credentials.

use axum::extract::State;
use axum::Json;

use super::api_doc::ErrorBody;
use super::error::ApiResult;
use super::extract::JsonBody;
use super::AppState;
use crate::domain::payments::config::{self, FieldView, GatewayInput, GatewayView, SecretView};

#[utoipa::path(
    get,
    path = "/admin/api/v1/billing/gateway",
    tag = "payments",
    responses(
        (status = 200, description = "The gateway settings (secrets shown as set/last4)", body = GatewayView),
        (status = 401, body = ErrorBody),
        (status = 429, body = ErrorBody),
    ),
    security(("admin_token" = []))
)]
pub async fn get(State(s): State<AppState>) -> ApiResult<Json<GatewayView>> {
    Ok(Json(config::public_view(&s.pool).await?))
}

/// Replaces the gateway settings (all fields of the chosen type). 422 on invalid input, 409 without a
/// master key; nothing is stored in either case.
#[utoipa::path(
    put,
    path = "/admin/api/v1/billing/gateway",
    tag = "payments",
    request_body = GatewayInput,
    responses(
        (status = 200, description = "Stored; `warning` after a switch of provider", body = GatewayView),
        (status = 400, body = ErrorBody),
        (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody),
        (status = 409, description = "`master_key_required`, or a stored billing currency Tollgate does not know", body = ErrorBody),
        (status = 422, body = ErrorBody),
        (status = 429, body = ErrorBody),
    ),
    security(("admin_token" = []))
)]
pub async fn put(
    State(s): State<AppState>,
    JsonBody(input): JsonBody<GatewayInput>,
) -> ApiResult<Json<GatewayView>> {
    Ok(Json(
        config::save(&s.pool, s.master_key.as_deref(), input).await?,
    ))
}

#[derive(utoipa::OpenApi)]
#[openapi(
    paths(get, put),
    components(schemas(GatewayView, GatewayInput, FieldView, SecretView))
)]
pub struct PaymentGatewayApi;
