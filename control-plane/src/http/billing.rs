//! `/billing/settings` and `/billing/runs`.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;
use serde::Deserialize;
use serde_json::Value;

use super::list::{ListParams, Page};
use crate::domain::billing::calendar::{day_of, parse_date};
use crate::domain::billing::run::{self, BillingRun, RunState};
use crate::domain::billing::settings::{self, BillingSettings, SettingsObject};
use crate::http::api_doc::ErrorBody;
use crate::state::AppState;
use crate::store::now;
use crate::web::error::{ApiError, ApiResult};
use crate::web::extract::{ApiQuery, JsonBody, RawBody};

#[derive(utoipa::OpenApi)]
#[openapi(
    paths(get_settings, put_settings, start_run, get_run, list_runs),
    components(schemas(SettingsObject, BillingSettings, BillingRun, RunState, RunInput))
)]
pub struct BillingApi;

#[utoipa::path(get, path = "/admin/api/v1/billing/settings", tag = "billing",
    responses((status = 200, body = SettingsObject), (status = 401, body = ErrorBody)),
    security(("admin_token" = [])))]
pub async fn get_settings(State(s): State<AppState>) -> ApiResult<Json<SettingsObject>> {
    Ok(Json(settings::load(&s.pool).await?.into()))
}

/// Any subset of the fields; nested objects merge. Invalid -> 422 and nothing changes.
#[utoipa::path(put, path = "/admin/api/v1/billing/settings", tag = "billing",
    request_body(content = BillingSettings, description = "any subset of the fields; nested objects merge"),
    responses((status = 200, body = SettingsObject), (status = 400, body = ErrorBody),
        (status = 401, body = ErrorBody), (status = 403, body = ErrorBody),
        (status = 409, body = ErrorBody), (status = 422, body = ErrorBody)),
    security(("admin_token" = [])))]
pub async fn put_settings(
    State(s): State<AppState>,
    actor: crate::domain::audit::Actor,
    JsonBody(patch): JsonBody<Value>,
) -> ApiResult<Json<SettingsObject>> {
    let mut tx = crate::store::begin_write(&s.pool).await?;
    let settings = settings::update(&mut tx, &actor, patch, |tx, currency| {
        Box::pin(crate::domain::payments::config::check_stored(tx, currency))
    })
    .await?;
    tx.commit().await?;
    Ok(Json(settings.into()))
}

#[derive(Deserialize, Default, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RunInput {
    /// `YYYY-MM-DD`; today (UTC) when absent.
    date: Option<String>,
}

/// Starts a billing run in the background and answers 202 with it; poll `GET /billing/runs/{id}`.
/// The body may be empty (bill today). The run bills, then charges what is due (the scheduler's
/// [`crate::domain::scheduler::bill_then_charge`]).
#[utoipa::path(post, path = "/admin/api/v1/billing/runs", tag = "billing",
    request_body(content = Option<RunInput>, description = "may be empty: bill today"),
    responses((status = 202, body = BillingRun), (status = 400, body = ErrorBody),
        (status = 401, body = ErrorBody), (status = 403, body = ErrorBody),
        (status = 409, body = ErrorBody), (status = 422, body = ErrorBody)),
    security(("admin_token" = [])))]
pub async fn start_run(
    State(s): State<AppState>,
    actor: crate::domain::audit::Actor,
    RawBody(body): RawBody,
) -> ApiResult<(StatusCode, Json<BillingRun>)> {
    let input: RunInput = if body.iter().all(u8::is_ascii_whitespace) {
        RunInput::default()
    } else {
        serde_json::from_slice(&body).map_err(|e| {
            ApiError::bad_request(
                None,
                "invalid_json",
                format!("the body is not a run request: {e}"),
            )
        })?
    };
    let run_on = match input.date.as_deref() {
        Some(d) => parse_date(d).map_err(|m| ApiError::invalid("date", "invalid_date", m))?,
        None => day_of(now()),
    };
    let Ok(guard) = s.billing_runs.clone().try_lock_owned() else {
        return Err(ApiError::conflict(
            "run_in_progress",
            "a billing run is in progress in this process",
        ));
    };
    let id = run::start(&s.pool, &actor, run_on).await?;
    let pool = s.pool.clone();
    let run_id = id.clone();
    tokio::spawn(async move {
        let _guard = guard;
        let _ =
            crate::domain::scheduler::bill_then_charge(&pool, &run_id, run_on, run::batch_size())
                .await;
    });
    Ok((
        StatusCode::ACCEPTED,
        Json(run::fetch_run(&s.pool, &id).await?),
    ))
}

#[utoipa::path(get, path = "/admin/api/v1/billing/runs/{id}", tag = "billing",
    params(("id" = String, Path, description = "billing run id")),
    responses((status = 200, body = BillingRun), (status = 401, body = ErrorBody),
        (status = 404, body = ErrorBody)),
    security(("admin_token" = [])))]
pub async fn get_run(
    State(s): State<AppState>,
    Path(id): Path<String>,
) -> ApiResult<Json<BillingRun>> {
    Ok(Json(run::fetch_run(&s.pool, &id).await?))
}

#[utoipa::path(get, path = "/admin/api/v1/billing/runs", tag = "billing",
    params(
        ("limit" = Option<i64>, Query, description = "1 to 100, default 20"),
        ("starting_after" = Option<String>, Query, description = "the last id seen (runs are newest first)")),
    responses((status = 200, body = crate::domain::Page<BillingRun>),
        (status = 400, body = ErrorBody), (status = 401, body = ErrorBody)),
    security(("admin_token" = [])))]
pub async fn list_runs(
    State(s): State<AppState>,
    ApiQuery(p): ApiQuery<ListParams>,
) -> ApiResult<Json<Page<BillingRun>>> {
    let limit = p.limit()?;
    Ok(Json(
        run::list_runs(&s.pool, limit, p.starting_after.as_deref()).await?,
    ))
}
