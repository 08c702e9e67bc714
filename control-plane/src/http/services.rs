//! Services, their metrics (methods are children of `hits`) and mapping rules: the admin API's
//! handlers over [`crate::domain::catalog`] (services, metrics, mapping_rules).

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;

use super::list::ListParams;
use crate::domain::audit::Actor;
use crate::domain::catalog::mapping_rules::{self, MappingRule, MappingRuleInput};
use crate::domain::catalog::metrics::{self, Metric, MetricInput};
use crate::domain::catalog::services::{self, Service, ServiceInput};
use crate::domain::catalog::Deleted;
use crate::domain::Page;
use crate::state::AppState;
use crate::web::error::ApiResult;
use crate::web::extract::{ApiQuery, JsonBody};

// Other handlers check a service exists and resolve metric names through these (gateway.rs).
pub use crate::domain::catalog::mapping_rules::MAX_MAPPING_RULES_PER_SERVICE;
pub use crate::domain::catalog::metrics::metric_ids;

#[derive(utoipa::OpenApi)]
#[openapi(
    paths(
        create,
        list,
        get,
        update,
        remove,
        create_metric,
        list_metrics,
        get_metric,
        update_metric,
        remove_metric,
        create_mapping_rule,
        list_mapping_rules,
        remove_mapping_rule
    ),
    components(schemas(
        Service,
        ServiceInput,
        Metric,
        MetricInput,
        MappingRule,
        MappingRuleInput,
        Deleted
    ))
)]
pub struct ServicesApi;

#[utoipa::path(
    post,
    path = "/admin/api/v1/services",
    tag = "services",
    request_body = ServiceInput,
    responses(
        (status = 201, description = "Created, with its `hits` metric", body = Service),
        (status = 400, description = "Malformed JSON", body = crate::http::api_doc::ErrorBody),
        (status = 401, body = crate::http::api_doc::ErrorBody),
        (status = 403, description = "A read-scope token", body = crate::http::api_doc::ErrorBody),
        (status = 409, description = "`name_taken`, or an idempotency key in flight", body = crate::http::api_doc::ErrorBody),
        (status = 422, description = "`invalid_name`", body = crate::http::api_doc::ErrorBody),
        (status = 429, description = "Too many failed authentications", body = crate::http::api_doc::ErrorBody)
    ),
    security(("admin_token" = []))
)]
pub async fn create(
    State(s): State<AppState>,
    actor: Actor,
    JsonBody(input): JsonBody<ServiceInput>,
) -> ApiResult<(StatusCode, Json<Service>)> {
    let service = services::create_service(&s.pool, &actor, &input).await?;
    Ok((StatusCode::CREATED, Json(service)))
}

#[utoipa::path(
    get,
    path = "/admin/api/v1/services",
    tag = "services",
    params(
        ("limit" = Option<i64>, Query, description = "1-100, default 20"),
        ("starting_after" = Option<String>, Query, description = "The `next_cursor` of the previous page")
    ),
    responses(
        (status = 200, body = crate::domain::Page<Service>),
        (status = 400, description = "`invalid_limit`, `invalid_query`", body = crate::http::api_doc::ErrorBody),
        (status = 401, body = crate::http::api_doc::ErrorBody),
        (status = 429, body = crate::http::api_doc::ErrorBody)
    ),
    security(("admin_token" = []))
)]
pub async fn list(
    State(s): State<AppState>,
    ApiQuery(p): ApiQuery<ListParams>,
) -> ApiResult<Json<Page<Service>>> {
    Ok(Json(services::list_services(&s.pool, &p.request()?).await?))
}

#[utoipa::path(
    get,
    path = "/admin/api/v1/services/{id}",
    tag = "services",
    params(("id" = String, Path, description = "Service id")),
    responses(
        (status = 200, body = Service),
        (status = 401, body = crate::http::api_doc::ErrorBody),
        (status = 404, body = crate::http::api_doc::ErrorBody),
        (status = 429, body = crate::http::api_doc::ErrorBody)
    ),
    security(("admin_token" = []))
)]
pub async fn get(State(s): State<AppState>, Path(id): Path<String>) -> ApiResult<Json<Service>> {
    Ok(Json(services::get_service(&s.pool, &id).await?))
}

#[utoipa::path(
    patch,
    path = "/admin/api/v1/services/{id}",
    tag = "services",
    params(("id" = String, Path, description = "Service id")),
    request_body = ServiceInput,
    responses(
        (status = 200, body = Service),
        (status = 400, body = crate::http::api_doc::ErrorBody),
        (status = 401, body = crate::http::api_doc::ErrorBody),
        (status = 403, body = crate::http::api_doc::ErrorBody),
        (status = 404, body = crate::http::api_doc::ErrorBody),
        (status = 409, description = "`name_taken`", body = crate::http::api_doc::ErrorBody),
        (status = 422, description = "`invalid_name`", body = crate::http::api_doc::ErrorBody),
        (status = 429, body = crate::http::api_doc::ErrorBody)
    ),
    security(("admin_token" = []))
)]
pub async fn update(
    State(s): State<AppState>,
    actor: Actor,
    Path(id): Path<String>,
    JsonBody(input): JsonBody<ServiceInput>,
) -> ApiResult<Json<Service>> {
    Ok(Json(
        services::update_service(&s.pool, &actor, &id, &input).await?,
    ))
}

#[utoipa::path(
    delete,
    path = "/admin/api/v1/services/{id}",
    tag = "services",
    params(("id" = String, Path, description = "Service id")),
    responses(
        (status = 200, body = Deleted),
        (status = 401, body = crate::http::api_doc::ErrorBody),
        (status = 403, body = crate::http::api_doc::ErrorBody),
        (status = 404, body = crate::http::api_doc::ErrorBody),
        (status = 409, description = "`service_in_use`: plans use it", body = crate::http::api_doc::ErrorBody),
        (status = 429, body = crate::http::api_doc::ErrorBody)
    ),
    security(("admin_token" = []))
)]
pub async fn remove(
    State(s): State<AppState>,
    actor: Actor,
    Path(id): Path<String>,
) -> ApiResult<Json<Deleted>> {
    Ok(Json(services::delete_service(&s.pool, &actor, &id).await?))
}

// ---- metrics ----

#[utoipa::path(
    post,
    path = "/admin/api/v1/services/{id}/metrics",
    tag = "services",
    params(("id" = String, Path, description = "Service id")),
    request_body = MetricInput,
    responses(
        (status = 201, body = Metric),
        (status = 400, body = crate::http::api_doc::ErrorBody),
        (status = 401, body = crate::http::api_doc::ErrorBody),
        (status = 403, body = crate::http::api_doc::ErrorBody),
        (status = 404, description = "No such service", body = crate::http::api_doc::ErrorBody),
        (status = 409, description = "`metric_exists`", body = crate::http::api_doc::ErrorBody),
        (status = 422, description = "`invalid_metric_name`, `invalid_unit`, `unknown_metric`, `invalid_parent`", body = crate::http::api_doc::ErrorBody),
        (status = 429, body = crate::http::api_doc::ErrorBody)
    ),
    security(("admin_token" = []))
)]
pub async fn create_metric(
    State(s): State<AppState>,
    actor: Actor,
    Path(id): Path<String>,
    JsonBody(input): JsonBody<MetricInput>,
) -> ApiResult<(StatusCode, Json<Metric>)> {
    let metric = metrics::create_metric(&s.pool, &actor, &id, &input).await?;
    Ok((StatusCode::CREATED, Json(metric)))
}

#[utoipa::path(
    get,
    path = "/admin/api/v1/services/{id}/metrics",
    tag = "services",
    params(
        ("id" = String, Path, description = "Service id"),
        ("limit" = Option<i64>, Query, description = "1-100, default 20"),
        ("starting_after" = Option<String>, Query, description = "The `next_cursor` of the previous page")
    ),
    responses(
        (status = 200, body = crate::domain::Page<Metric>),
        (status = 400, body = crate::http::api_doc::ErrorBody),
        (status = 401, body = crate::http::api_doc::ErrorBody),
        (status = 404, body = crate::http::api_doc::ErrorBody),
        (status = 429, body = crate::http::api_doc::ErrorBody)
    ),
    security(("admin_token" = []))
)]
pub async fn list_metrics(
    State(s): State<AppState>,
    Path(id): Path<String>,
    ApiQuery(p): ApiQuery<ListParams>,
) -> ApiResult<Json<Page<Metric>>> {
    // A missing service answers 404 before a bad `limit` answers 400, as it always has.
    services::get_service(&s.pool, &id).await?;
    Ok(Json(
        metrics::list_metrics(&s.pool, &id, &p.request()?).await?,
    ))
}

#[utoipa::path(
    get,
    path = "/admin/api/v1/services/{id}/metrics/{metric_id}",
    tag = "services",
    params(
        ("id" = String, Path, description = "Service id"),
        ("metric_id" = String, Path, description = "Metric id")
    ),
    responses(
        (status = 200, body = Metric),
        (status = 401, body = crate::http::api_doc::ErrorBody),
        (status = 404, body = crate::http::api_doc::ErrorBody),
        (status = 429, body = crate::http::api_doc::ErrorBody)
    ),
    security(("admin_token" = []))
)]
pub async fn get_metric(
    State(s): State<AppState>,
    Path((id, metric_id)): Path<(String, String)>,
) -> ApiResult<Json<Metric>> {
    Ok(Json(metrics::get_metric(&s.pool, &id, &metric_id).await?))
}

#[utoipa::path(
    patch,
    path = "/admin/api/v1/services/{id}/metrics/{metric_id}",
    tag = "services",
    params(
        ("id" = String, Path, description = "Service id"),
        ("metric_id" = String, Path, description = "Metric id")
    ),
    request_body = MetricInput,
    responses(
        (status = 200, body = Metric),
        (status = 400, body = crate::http::api_doc::ErrorBody),
        (status = 401, body = crate::http::api_doc::ErrorBody),
        (status = 403, body = crate::http::api_doc::ErrorBody),
        (status = 404, body = crate::http::api_doc::ErrorBody),
        (status = 409, description = "`metric_exists`", body = crate::http::api_doc::ErrorBody),
        (status = 422, description = "`immutable` (parent), `invalid_unit`, `invalid_metric_name`", body = crate::http::api_doc::ErrorBody),
        (status = 429, body = crate::http::api_doc::ErrorBody)
    ),
    security(("admin_token" = []))
)]
pub async fn update_metric(
    State(s): State<AppState>,
    actor: Actor,
    Path((id, metric_id)): Path<(String, String)>,
    JsonBody(input): JsonBody<MetricInput>,
) -> ApiResult<Json<Metric>> {
    Ok(Json(
        metrics::update_metric(&s.pool, &actor, &id, &metric_id, &input).await?,
    ))
}

#[utoipa::path(
    delete,
    path = "/admin/api/v1/services/{id}/metrics/{metric_id}",
    tag = "services",
    params(
        ("id" = String, Path, description = "Service id"),
        ("metric_id" = String, Path, description = "Metric id")
    ),
    responses(
        (status = 200, body = Deleted),
        (status = 401, body = crate::http::api_doc::ErrorBody),
        (status = 403, body = crate::http::api_doc::ErrorBody),
        (status = 404, body = crate::http::api_doc::ErrorBody),
        (status = 409, description = "`metric_in_use`", body = crate::http::api_doc::ErrorBody),
        (status = 429, body = crate::http::api_doc::ErrorBody)
    ),
    security(("admin_token" = []))
)]
pub async fn remove_metric(
    State(s): State<AppState>,
    actor: Actor,
    Path((id, metric_id)): Path<(String, String)>,
) -> ApiResult<Json<Deleted>> {
    Ok(Json(
        metrics::delete_metric(&s.pool, &actor, &id, &metric_id).await?,
    ))
}

// ---- mapping rules ----

#[utoipa::path(
    post,
    path = "/admin/api/v1/services/{id}/mapping_rules",
    tag = "services",
    params(("id" = String, Path, description = "Service id")),
    request_body = MappingRuleInput,
    responses(
        (status = 201, body = MappingRule),
        (status = 400, body = crate::http::api_doc::ErrorBody),
        (status = 401, body = crate::http::api_doc::ErrorBody),
        (status = 403, body = crate::http::api_doc::ErrorBody),
        (status = 404, description = "No such service", body = crate::http::api_doc::ErrorBody),
        (status = 409, description = "`too_many_mapping_rules`", body = crate::http::api_doc::ErrorBody),
        (status = 422, description = "`invalid_method`, `invalid_pattern`, `invalid_delta`, `unknown_metric`", body = crate::http::api_doc::ErrorBody),
        (status = 429, body = crate::http::api_doc::ErrorBody)
    ),
    security(("admin_token" = []))
)]
pub async fn create_mapping_rule(
    State(s): State<AppState>,
    actor: Actor,
    Path(id): Path<String>,
    JsonBody(input): JsonBody<MappingRuleInput>,
) -> ApiResult<(StatusCode, Json<MappingRule>)> {
    let rule = mapping_rules::create_mapping_rule(&s.pool, &actor, &id, &input).await?;
    Ok((StatusCode::CREATED, Json(rule)))
}

#[utoipa::path(
    get,
    path = "/admin/api/v1/services/{id}/mapping_rules",
    tag = "services",
    params(
        ("id" = String, Path, description = "Service id"),
        ("limit" = Option<i64>, Query, description = "1-100, default 20"),
        ("starting_after" = Option<String>, Query, description = "The `next_cursor` of the previous page")
    ),
    responses(
        (status = 200, body = crate::domain::Page<MappingRule>),
        (status = 400, body = crate::http::api_doc::ErrorBody),
        (status = 401, body = crate::http::api_doc::ErrorBody),
        (status = 404, body = crate::http::api_doc::ErrorBody),
        (status = 429, body = crate::http::api_doc::ErrorBody)
    ),
    security(("admin_token" = []))
)]
pub async fn list_mapping_rules(
    State(s): State<AppState>,
    Path(id): Path<String>,
    ApiQuery(p): ApiQuery<ListParams>,
) -> ApiResult<Json<Page<MappingRule>>> {
    // A missing service answers 404 before a bad `limit` answers 400, as it always has.
    services::get_service(&s.pool, &id).await?;
    Ok(Json(
        mapping_rules::list_mapping_rules(&s.pool, &id, &p.request()?).await?,
    ))
}

#[utoipa::path(
    delete,
    path = "/admin/api/v1/services/{id}/mapping_rules/{rule_id}",
    tag = "services",
    params(
        ("id" = String, Path, description = "Service id"),
        ("rule_id" = String, Path, description = "Mapping rule id")
    ),
    responses(
        (status = 200, body = Deleted),
        (status = 401, body = crate::http::api_doc::ErrorBody),
        (status = 403, body = crate::http::api_doc::ErrorBody),
        (status = 404, body = crate::http::api_doc::ErrorBody),
        (status = 429, body = crate::http::api_doc::ErrorBody)
    ),
    security(("admin_token" = []))
)]
pub async fn remove_mapping_rule(
    State(s): State<AppState>,
    actor: Actor,
    Path((id, rule_id)): Path<(String, String)>,
) -> ApiResult<Json<Deleted>> {
    Ok(Json(
        mapping_rules::delete_mapping_rule(&s.pool, &actor, &id, &rule_id).await?,
    ))
}
