//! `/billing/settings` and `/billing/runs`.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;
use serde::Deserialize;
use serde_json::{json, Value};

use super::error::{ApiError, ApiResult};
use super::extract::{ApiQuery, JsonBody, RawBody};
use super::list::{page, ListParams, Page};
use super::AppState;
use crate::domain::billing::calendar::{day_of, parse_date};
use crate::domain::billing::{run, settings};
use crate::store::now;

pub async fn get_settings(State(s): State<AppState>) -> ApiResult<Json<Value>> {
    let settings = settings::load(&s.pool).await?;
    Ok(Json(settings_json(&settings)))
}

fn settings_json(settings: &settings::BillingSettings) -> Value {
    let mut v = serde_json::to_value(settings).unwrap_or_else(|_| json!({}));
    v["object"] = json!("billing_settings");
    v
}

/// Any subset of the fields; nested objects merge. Invalid -> 422 and nothing changes.
pub async fn put_settings(
    State(s): State<AppState>,
    JsonBody(mut patch): JsonBody<Value>,
) -> ApiResult<Json<Value>> {
    if let Some(o) = patch.as_object_mut() {
        o.remove("object");
    }
    let mut tx = crate::store::begin_write(&s.pool).await?;
    let settings = settings::update(&mut tx, patch).await?;
    tx.commit().await?;
    Ok(Json(settings_json(&settings)))
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct RunInput {
    /// `YYYY-MM-DD`; today (UTC) when absent.
    date: Option<String>,
}

/// Starts a billing run in the background and answers 202 with it; poll `GET /billing/runs/{id}`.
/// The body may be empty (bill today).
pub async fn start_run(
    State(s): State<AppState>,
    RawBody(body): RawBody,
) -> ApiResult<(StatusCode, Json<Value>)> {
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
    let id = run::start(&s.pool, run_on).await?;
    let pool = s.pool.clone();
    let run_id = id.clone();
    tokio::spawn(async move {
        let _guard = guard;
        let _ = run::execute(&pool, &run_id, run_on, run::batch_size()).await;
    });
    Ok((
        StatusCode::ACCEPTED,
        Json(run::fetch_run(&s.pool, &id).await?),
    ))
}

pub async fn get_run(State(s): State<AppState>, Path(id): Path<String>) -> ApiResult<Json<Value>> {
    Ok(Json(run::fetch_run(&s.pool, &id).await?))
}

pub async fn list_runs(
    State(s): State<AppState>,
    ApiQuery(p): ApiQuery<ListParams>,
) -> ApiResult<Json<Page<Value>>> {
    let limit = p.limit()?;
    // Newest first: the cursor is the last id seen.
    let after = p.starting_after.clone().unwrap_or_else(|| "~".into());
    let rows = sqlx::query(&format!(
        "SELECT {} FROM billing_runs WHERE id < $1 ORDER BY id DESC LIMIT $2",
        run::RUN_COLUMNS
    ))
    .bind(after)
    .bind(limit + 1)
    .fetch_all(&s.pool)
    .await?;
    let runs: Vec<Value> = rows.iter().map(run::run_json).collect::<Result<_, _>>()?;
    let pg = page(runs, limit, |r| r["id"].as_str().unwrap_or(""));
    Ok(Json(pg))
}
