//! `GET /healthz`: readiness for load balancers and `tollgate serve`'s own callers.

use axum::extract::State;
use axum::Json;
use serde::Serialize;

use crate::state::AppState;
use crate::web::error::ApiResult;

/// The readiness answer: always `{"status": "ok"}` (anything else is an error object).
#[derive(Serialize, utoipa::ToSchema)]
pub struct Health {
    /// `ok`.
    #[schema(example = "ok")]
    pub status: &'static str,
}

/// 200 once the database answers (migrations have run before the listener opened).
#[utoipa::path(
    get,
    path = "/healthz",
    tag = "health",
    summary = "Readiness: 200 once the database answers",
    responses(
        (status = 200, description = "The database answers", body = Health),
        (status = 503, description = "The database is not answering in time", body = crate::http::api_doc::ErrorBody),
        (status = 500, description = "An unexpected database error", body = crate::http::api_doc::ErrorBody),
    )
)]
pub async fn healthz(State(state): State<AppState>) -> ApiResult<Json<Health>> {
    crate::domain::gateway::database_answers(&state.pool).await?;
    Ok(Json(Health { status: "ok" }))
}

/// This file's part of the generated document.
#[derive(utoipa::OpenApi)]
#[openapi(paths(healthz), components(schemas(Health)))]
pub struct HealthApi;
