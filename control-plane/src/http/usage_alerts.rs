//! Usage alert thresholds of plans and applications (docs/operations.md, "Usage alerts"); the
//! admin API's handlers over [`crate::domain::metering::alerts`]. Sub-resources of the plan and
//! the application: a threshold set is read and replaced whole.

use axum::extract::{Path, State};
use axum::Json;

use crate::domain::metering::alerts::{self, AlertThresholds, ThresholdSource, ThresholdsInput};
use crate::state::AppState;
use crate::web::error::ApiResult;
use crate::web::extract::JsonBody;

#[derive(utoipa::OpenApi)]
#[openapi(
    paths(
        plan_thresholds,
        set_plan_thresholds,
        reset_plan_thresholds,
        application_thresholds,
        set_application_thresholds,
        reset_application_thresholds
    ),
    components(schemas(AlertThresholds, ThresholdSource, ThresholdsInput))
)]
pub struct UsageAlertsApi;

#[utoipa::path(
    get,
    path = "/admin/api/v1/plans/{id}/alert_thresholds",
    tag = "plans",
    params(("id" = String, Path, description = "Plan id")),
    responses(
        (status = 200, description = "The plan's own thresholds, or the defaults (50, 80, 90, 100)", body = AlertThresholds),
        (status = 401, body = crate::http::api_doc::ErrorBody),
        (status = 404, body = crate::http::api_doc::ErrorBody),
        (status = 429, body = crate::http::api_doc::ErrorBody)
    ),
    security(("admin_token" = []))
)]
pub async fn plan_thresholds(
    State(s): State<AppState>,
    Path(id): Path<String>,
) -> ApiResult<Json<AlertThresholds>> {
    Ok(Json(alerts::of_plan(&s.pool, &id).await?))
}

#[utoipa::path(
    put,
    path = "/admin/api/v1/plans/{id}/alert_thresholds",
    tag = "plans",
    params(("id" = String, Path, description = "Plan id")),
    request_body = ThresholdsInput,
    responses(
        (status = 200, body = AlertThresholds),
        (status = 400, body = crate::http::api_doc::ErrorBody),
        (status = 401, body = crate::http::api_doc::ErrorBody),
        (status = 403, body = crate::http::api_doc::ErrorBody),
        (status = 404, body = crate::http::api_doc::ErrorBody),
        (status = 409, description = "An idempotency key in flight", body = crate::http::api_doc::ErrorBody),
        (status = 422, description = "`invalid_threshold` (not an integer 1-100), `duplicate_threshold`, `too_many_thresholds` (more than 10)", body = crate::http::api_doc::ErrorBody),
        (status = 429, body = crate::http::api_doc::ErrorBody)
    ),
    security(("admin_token" = []))
)]
pub async fn set_plan_thresholds(
    State(s): State<AppState>,
    actor: crate::domain::audit::Actor,
    Path(id): Path<String>,
    JsonBody(input): JsonBody<ThresholdsInput>,
) -> ApiResult<Json<AlertThresholds>> {
    Ok(Json(
        alerts::set_for_plan(&s.pool, &actor, &id, &input).await?,
    ))
}

#[utoipa::path(
    delete,
    path = "/admin/api/v1/plans/{id}/alert_thresholds",
    tag = "plans",
    params(("id" = String, Path, description = "Plan id")),
    responses(
        (status = 200, description = "The defaults, which apply again", body = AlertThresholds),
        (status = 401, body = crate::http::api_doc::ErrorBody),
        (status = 403, body = crate::http::api_doc::ErrorBody),
        (status = 404, body = crate::http::api_doc::ErrorBody),
        (status = 409, description = "An idempotency key in flight", body = crate::http::api_doc::ErrorBody),
        (status = 429, body = crate::http::api_doc::ErrorBody)
    ),
    security(("admin_token" = []))
)]
pub async fn reset_plan_thresholds(
    State(s): State<AppState>,
    actor: crate::domain::audit::Actor,
    Path(id): Path<String>,
) -> ApiResult<Json<AlertThresholds>> {
    Ok(Json(alerts::reset_plan(&s.pool, &actor, &id).await?))
}

#[utoipa::path(
    get,
    path = "/admin/api/v1/applications/{id}/alert_thresholds",
    tag = "applications",
    params(("id" = String, Path, description = "Application id")),
    responses(
        (status = 200, description = "The application's override, else its plan's thresholds", body = AlertThresholds),
        (status = 401, body = crate::http::api_doc::ErrorBody),
        (status = 404, body = crate::http::api_doc::ErrorBody),
        (status = 429, body = crate::http::api_doc::ErrorBody)
    ),
    security(("admin_token" = []))
)]
pub async fn application_thresholds(
    State(s): State<AppState>,
    Path(id): Path<String>,
) -> ApiResult<Json<AlertThresholds>> {
    Ok(Json(alerts::of_application(&s.pool, &id).await?))
}

#[utoipa::path(
    put,
    path = "/admin/api/v1/applications/{id}/alert_thresholds",
    tag = "applications",
    params(("id" = String, Path, description = "Application id")),
    request_body = ThresholdsInput,
    responses(
        (status = 200, description = "The override, which replaces the plan's thresholds", body = AlertThresholds),
        (status = 400, body = crate::http::api_doc::ErrorBody),
        (status = 401, body = crate::http::api_doc::ErrorBody),
        (status = 403, body = crate::http::api_doc::ErrorBody),
        (status = 404, body = crate::http::api_doc::ErrorBody),
        (status = 409, description = "An idempotency key in flight", body = crate::http::api_doc::ErrorBody),
        (status = 422, description = "`invalid_threshold` (not an integer 1-100), `duplicate_threshold`, `too_many_thresholds` (more than 10)", body = crate::http::api_doc::ErrorBody),
        (status = 429, body = crate::http::api_doc::ErrorBody)
    ),
    security(("admin_token" = []))
)]
pub async fn set_application_thresholds(
    State(s): State<AppState>,
    actor: crate::domain::audit::Actor,
    Path(id): Path<String>,
    JsonBody(input): JsonBody<ThresholdsInput>,
) -> ApiResult<Json<AlertThresholds>> {
    Ok(Json(
        alerts::set_for_application(&s.pool, &actor, &id, &input).await?,
    ))
}

#[utoipa::path(
    delete,
    path = "/admin/api/v1/applications/{id}/alert_thresholds",
    tag = "applications",
    params(("id" = String, Path, description = "Application id")),
    responses(
        (status = 200, description = "The plan's thresholds, which apply again", body = AlertThresholds),
        (status = 401, body = crate::http::api_doc::ErrorBody),
        (status = 403, body = crate::http::api_doc::ErrorBody),
        (status = 404, body = crate::http::api_doc::ErrorBody),
        (status = 409, description = "An idempotency key in flight", body = crate::http::api_doc::ErrorBody),
        (status = 429, body = crate::http::api_doc::ErrorBody)
    ),
    security(("admin_token" = []))
)]
pub async fn reset_application_thresholds(
    State(s): State<AppState>,
    actor: crate::domain::audit::Actor,
    Path(id): Path<String>,
) -> ApiResult<Json<AlertThresholds>> {
    Ok(Json(alerts::reset_application(&s.pool, &actor, &id).await?))
}
