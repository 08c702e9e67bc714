//! The audit log over HTTP: `GET /admin/api/v1/audit_events` (see `domain::audit`). Read-only:
//! no route changes or deletes an event.

use axum::extract::State;
use axum::Json;
use serde::Deserialize;

use super::list::{ListParams, Page};
use crate::domain::audit::{self as domain, AuditEvent, AuditFilter};
use crate::state::AppState;
use crate::web::error::ApiResult;
use crate::web::extract::ApiQuery;

/// The list's query: the page, and filters that must all match.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuditParams {
    pub limit: Option<i64>,
    pub starting_after: Option<String>,
    pub object_type: Option<String>,
    pub object_id: Option<String>,
    pub actor: Option<String>,
    pub action: Option<String>,
    pub since: Option<i64>,
    pub until: Option<i64>,
}

#[utoipa::path(
    get,
    path = "/admin/api/v1/audit_events",
    tag = "audit",
    params(
        ("limit" = Option<i64>, Query, description = "1 to 100 (default 20)"),
        ("starting_after" = Option<String>, Query, description = "The `next_cursor` of the previous page"),
        ("object_type" = Option<String>, Query, description = "e.g. `plan`"),
        ("object_id" = Option<String>, Query, description = "The object's id"),
        ("actor" = Option<String>, Query, description = "An admin token's id, `env` or `cli`"),
        ("action" = Option<String>, Query, description = "e.g. `plan.updated`"),
        ("since" = Option<i64>, Query, description = "Unix seconds, inclusive"),
        ("until" = Option<i64>, Query, description = "Unix seconds, exclusive"),
    ),
    responses(
        (status = 200, description = "Oldest first", body = crate::domain::Page<AuditEvent>),
        (status = 400, description = "Invalid limit or filter", body = crate::http::api_doc::ErrorBody),
        (status = 401, body = crate::http::api_doc::ErrorBody),
        (status = 422, description = "A filter too long", body = crate::http::api_doc::ErrorBody),
        (status = 429, description = "Too many failed authentications", body = crate::http::api_doc::ErrorBody),
    ),
    security(("admin_token" = []))
)]
pub async fn list(
    State(s): State<AppState>,
    ApiQuery(p): ApiQuery<AuditParams>,
) -> ApiResult<Json<Page<AuditEvent>>> {
    let req = ListParams {
        limit: p.limit,
        starting_after: p.starting_after,
    }
    .request()?;
    let filter = AuditFilter {
        object_type: p.object_type.unwrap_or_default(),
        object_id: p.object_id.unwrap_or_default(),
        actor_id: p.actor.unwrap_or_default(),
        action: p.action.unwrap_or_default(),
        since: p.since,
        until: p.until,
    };
    Ok(Json(domain::list(&s.pool, &req, &filter).await?))
}

/// The audit log's part of the OpenAPI document.
#[derive(utoipa::OpenApi)]
#[openapi(
    paths(list),
    components(schemas(AuditEvent, domain::ActorType, domain::Change))
)]
pub struct AuditApi;
