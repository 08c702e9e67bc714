//! Plans: fees, trial, limits and pricing rules; the admin API's handlers over
//! [`crate::domain::catalog::plans`].

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;
use serde::Deserialize;

use super::list::ListParams;
use crate::domain::audit::Actor;
use crate::domain::catalog::plans::{self, Plan, PlanInput, PlanLimit, PlanPricingRule, PlanState};
use crate::domain::catalog::{Deleted, LimitInput, PricingModel, PricingRuleInput};
use crate::domain::Page;
use crate::state::AppState;
use crate::web::error::ApiResult;
use crate::web::extract::{ApiQuery, JsonBody};

#[derive(utoipa::OpenApi)]
#[openapi(
    paths(create, list, get, update, remove),
    components(schemas(
        Plan,
        PlanInput,
        PlanState,
        PlanLimit,
        PlanPricingRule,
        LimitInput,
        PricingRuleInput,
        PricingModel,
        Deleted
    ))
)]
pub struct PlansApi;

#[utoipa::path(
    post,
    path = "/admin/api/v1/plans",
    tag = "plans",
    request_body = PlanInput,
    responses(
        (status = 201, body = Plan),
        (status = 400, description = "Malformed JSON", body = crate::http::api_doc::ErrorBody),
        (status = 401, body = crate::http::api_doc::ErrorBody),
        (status = 403, description = "A read-scope token", body = crate::http::api_doc::ErrorBody),
        (status = 409, description = "An idempotency key in flight", body = crate::http::api_doc::ErrorBody),
        (status = 422, description = "`missing_field`, `unknown_service`, `invalid_name`, `invalid_amount`, `invalid_trial_days`, limit and pricing-rule errors", body = crate::http::api_doc::ErrorBody),
        (status = 429, body = crate::http::api_doc::ErrorBody)
    ),
    security(("admin_token" = []))
)]
pub async fn create(
    State(s): State<AppState>,
    actor: Actor,
    JsonBody(input): JsonBody<PlanInput>,
) -> ApiResult<(StatusCode, Json<Plan>)> {
    let plan = plans::create_plan(&s.pool, &actor, &input).await?;
    Ok((StatusCode::CREATED, Json(plan)))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PlanListParams {
    limit: Option<i64>,
    starting_after: Option<String>,
    service_id: Option<String>,
}

#[utoipa::path(
    get,
    path = "/admin/api/v1/plans",
    tag = "plans",
    params(
        ("limit" = Option<i64>, Query, description = "1-100, default 20"),
        ("starting_after" = Option<String>, Query, description = "The `next_cursor` of the previous page"),
        ("service_id" = Option<String>, Query, description = "Only the plans of this service")
    ),
    responses(
        (status = 200, body = crate::domain::Page<Plan>),
        (status = 400, body = crate::http::api_doc::ErrorBody),
        (status = 401, body = crate::http::api_doc::ErrorBody),
        (status = 429, body = crate::http::api_doc::ErrorBody)
    ),
    security(("admin_token" = []))
)]
pub async fn list(
    State(s): State<AppState>,
    ApiQuery(p): ApiQuery<PlanListParams>,
) -> ApiResult<Json<Page<Plan>>> {
    let req = ListParams {
        limit: p.limit,
        starting_after: p.starting_after,
    }
    .request()?;
    let service_id = p.service_id.unwrap_or_default();
    Ok(Json(plans::list_plans(&s.pool, &req, &service_id).await?))
}

#[utoipa::path(
    get,
    path = "/admin/api/v1/plans/{id}",
    tag = "plans",
    params(("id" = String, Path, description = "Plan id")),
    responses(
        (status = 200, body = Plan),
        (status = 401, body = crate::http::api_doc::ErrorBody),
        (status = 404, body = crate::http::api_doc::ErrorBody),
        (status = 429, body = crate::http::api_doc::ErrorBody)
    ),
    security(("admin_token" = []))
)]
pub async fn get(State(s): State<AppState>, Path(id): Path<String>) -> ApiResult<Json<Plan>> {
    Ok(Json(plans::get_plan(&s.pool, &id).await?))
}

#[utoipa::path(
    patch,
    path = "/admin/api/v1/plans/{id}",
    tag = "plans",
    params(("id" = String, Path, description = "Plan id")),
    request_body = PlanInput,
    responses(
        (status = 200, body = Plan),
        (status = 400, body = crate::http::api_doc::ErrorBody),
        (status = 401, body = crate::http::api_doc::ErrorBody),
        (status = 403, body = crate::http::api_doc::ErrorBody),
        (status = 404, body = crate::http::api_doc::ErrorBody),
        (status = 409, description = "An idempotency key in flight", body = crate::http::api_doc::ErrorBody),
        (status = 422, description = "`immutable` (service_id) and the errors of creation; nothing is written", body = crate::http::api_doc::ErrorBody),
        (status = 429, body = crate::http::api_doc::ErrorBody)
    ),
    security(("admin_token" = []))
)]
pub async fn update(
    State(s): State<AppState>,
    actor: Actor,
    Path(id): Path<String>,
    JsonBody(input): JsonBody<PlanInput>,
) -> ApiResult<Json<Plan>> {
    Ok(Json(
        plans::update_plan(&s.pool, &actor, &id, &input).await?,
    ))
}

#[utoipa::path(
    delete,
    path = "/admin/api/v1/plans/{id}",
    tag = "plans",
    params(("id" = String, Path, description = "Plan id")),
    responses(
        (status = 200, body = Deleted),
        (status = 401, body = crate::http::api_doc::ErrorBody),
        (status = 403, body = crate::http::api_doc::ErrorBody),
        (status = 404, body = crate::http::api_doc::ErrorBody),
        (status = 409, description = "`plan_in_use`, `plan_has_billing_history`", body = crate::http::api_doc::ErrorBody),
        (status = 429, body = crate::http::api_doc::ErrorBody)
    ),
    security(("admin_token" = []))
)]
pub async fn remove(
    State(s): State<AppState>,
    actor: Actor,
    Path(id): Path<String>,
) -> ApiResult<Json<Deleted>> {
    Ok(Json(plans::delete_plan(&s.pool, &actor, &id).await?))
}
