//! Gateway tokens: what a gateway filter presents to fetch snapshots and report usage, and nothing
//! else. Shown once on creation, stored as SHA-256. Each token is scoped to services
//! (`service_ids`, required on create): it reads the snapshot and global usage of, and reports
//! usage for, those services only.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;
use serde::Deserialize;
use serde_json::{json, Value};

use super::error::{ApiError, ApiResult};
use super::extract::{ApiQuery, JsonBody};
use super::list::{page, ListParams, Page};
use super::AppState;
use crate::domain::catalog::check_name;
use crate::secrets::{new_gateway_token, new_id, sha256_hex};
use crate::store::{now, Pool};

/// Most services one gateway token may be scoped to.
pub const MAX_TOKEN_SERVICES: usize = 100;

/// (id, name, created_at)
type TokenRow = (String, String, i64);

fn token_json(r: &TokenRow, services: &[String]) -> Value {
    json!({"object": "gateway_token", "id": r.0, "name": r.1, "created_at": r.2, "service_ids": services})
}

/// The services a token is scoped to, sorted.
pub async fn token_services(pool: &Pool, token_id: &str) -> Result<Vec<String>, sqlx::Error> {
    let rows: Vec<(String,)> = sqlx::query_as(
        "SELECT service_id FROM gateway_token_services WHERE token_id = $1 ORDER BY service_id",
    )
    .bind(token_id)
    .fetch_all(pool)
    .await?;
    Ok(rows.into_iter().map(|(s,)| s).collect())
}

/// Whether the token may act for the service.
pub async fn in_scope(pool: &Pool, token_id: &str, service_id: &str) -> Result<bool, sqlx::Error> {
    let found: Option<(i64,)> = sqlx::query_as(
        "SELECT 1 FROM gateway_token_services WHERE token_id = $1 AND service_id = $2",
    )
    .bind(token_id)
    .bind(service_id)
    .fetch_optional(pool)
    .await?;
    Ok(found.is_some())
}

/// Checks a `service_ids` input: 1 to [`MAX_TOKEN_SERVICES`] existing services, deduplicated.
async fn check_services(pool: &Pool, ids: Option<Vec<String>>) -> ApiResult<Vec<String>> {
    let Some(mut ids) = ids else {
        return Err(ApiError::invalid(
            "service_ids",
            "missing_service_ids",
            "the services this token may serve (a list of service ids)",
        ));
    };
    ids.sort();
    ids.dedup();
    if ids.is_empty() || ids.len() > MAX_TOKEN_SERVICES {
        return Err(ApiError::invalid(
            "service_ids",
            "invalid_service_ids",
            format!("1 to {MAX_TOKEN_SERVICES} service ids"),
        ));
    }
    for (i, id) in ids.iter().enumerate() {
        let found: Option<(String,)> = sqlx::query_as("SELECT id FROM services WHERE id = $1")
            .bind(id)
            .fetch_optional(pool)
            .await?;
        if found.is_none() {
            return Err(ApiError::invalid(
                format!("service_ids[{i}]"),
                "unknown_service",
                "no such service",
            ));
        }
    }
    Ok(ids)
}

async fn set_services(tx: &mut crate::store::Tx, token_id: &str, ids: &[String]) -> ApiResult<()> {
    sqlx::query("DELETE FROM gateway_token_services WHERE token_id = $1")
        .bind(token_id)
        .execute(&mut **tx)
        .await?;
    for id in ids {
        sqlx::query("INSERT INTO gateway_token_services (token_id, service_id) VALUES ($1, $2)")
            .bind(token_id)
            .bind(id)
            .execute(&mut **tx)
            .await?;
    }
    Ok(())
}

pub async fn insert_token(
    pool: &Pool,
    name: &str,
    services: &[String],
) -> ApiResult<(TokenRow, String)> {
    let token = new_gateway_token();
    let row: TokenRow = (new_id("gwt"), name.to_string(), now());
    let mut tx = pool.begin().await?;
    sqlx::query(
        "INSERT INTO gateway_tokens (id, name, token_sha256, created_at) VALUES ($1, $2, $3, $4)",
    )
    .bind(&row.0)
    .bind(&row.1)
    .bind(sha256_hex(&token))
    .bind(row.2)
    .execute(&mut *tx)
    .await?;
    // A service deleted since the check fails the foreign key: nothing is written.
    set_services(&mut tx, &row.0, services).await?;
    tx.commit().await?;
    Ok((row, token))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TokenInput {
    name: Option<String>,
    service_ids: Option<Vec<String>>,
}

pub async fn create(
    State(s): State<AppState>,
    JsonBody(input): JsonBody<TokenInput>,
) -> ApiResult<(StatusCode, Json<Value>)> {
    let name = check_name("name", input.name.as_deref().unwrap_or(""))?;
    let services = check_services(&s.pool, input.service_ids).await?;
    let (row, token) = insert_token(&s.pool, &name, &services).await?;
    let mut body = token_json(&row, &services);
    body["token"] = json!(token);
    Ok((StatusCode::CREATED, Json(body)))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TokenUpdate {
    service_ids: Option<Vec<String>>,
}

/// `PATCH /gateway_tokens/{id}` `{"service_ids": [...]}`: replaces the token's services (the
/// token itself is unchanged).
pub async fn update(
    State(s): State<AppState>,
    Path(id): Path<String>,
    JsonBody(input): JsonBody<TokenUpdate>,
) -> ApiResult<Json<Value>> {
    let row = fetch_token(&s.pool, &id).await?;
    let services = check_services(&s.pool, input.service_ids).await?;
    let mut tx = s.pool.begin().await?;
    set_services(&mut tx, &id, &services).await?;
    tx.commit().await?;
    Ok(Json(token_json(&row, &services)))
}

async fn fetch_token(pool: &Pool, id: &str) -> ApiResult<TokenRow> {
    sqlx::query_as("SELECT id, name, created_at FROM gateway_tokens WHERE id = $1")
        .bind(id)
        .fetch_optional(pool)
        .await?
        .ok_or_else(|| ApiError::not_found("gateway token", id))
}

pub async fn get(State(s): State<AppState>, Path(id): Path<String>) -> ApiResult<Json<Value>> {
    let row = fetch_token(&s.pool, &id).await?;
    let services = token_services(&s.pool, &id).await?;
    Ok(Json(token_json(&row, &services)))
}

pub async fn list(
    State(s): State<AppState>,
    ApiQuery(p): ApiQuery<ListParams>,
) -> ApiResult<Json<Page<Value>>> {
    let limit = p.limit()?;
    let rows: Vec<TokenRow> = sqlx::query_as(
        "SELECT id, name, created_at FROM gateway_tokens WHERE id > $1 ORDER BY id LIMIT $2",
    )
    .bind(p.after())
    .bind(limit + 1)
    .fetch_all(&s.pool)
    .await?;
    let out = page(rows, limit, |r| &r.0);
    let mut data = Vec::with_capacity(out.data.len());
    for r in &out.data {
        data.push(token_json(r, &token_services(&s.pool, &r.0).await?));
    }
    Ok(Json(out.with_data(data)))
}

pub async fn remove(State(s): State<AppState>, Path(id): Path<String>) -> ApiResult<Json<Value>> {
    super::delete_by_id(
        &s.pool,
        "gateway_tokens",
        id,
        "gateway token",
        "gateway_token",
    )
    .await
}
