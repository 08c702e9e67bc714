//! Gateway tokens: what a gateway filter presents to fetch snapshots and report usage, and nothing
//! else. Shown once on creation, stored as SHA-256.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;
use serde::Deserialize;
use serde_json::{json, Value};

use super::error::ApiResult;
use super::extract::{ApiQuery, JsonBody};
use super::list::{page, ListParams, Page};
use super::AppState;
use crate::catalog::check_name;
use crate::secrets::{new_gateway_token, new_id, sha256_hex};
use crate::store::{now, Pool};

/// (id, name, created_at)
type TokenRow = (String, String, i64);

fn token_json(r: &TokenRow) -> Value {
    json!({"object": "gateway_token", "id": r.0, "name": r.1, "created_at": r.2})
}

pub async fn insert_token(pool: &Pool, name: &str) -> Result<(TokenRow, String), sqlx::Error> {
    let token = new_gateway_token();
    let row: TokenRow = (new_id("gwt"), name.to_string(), now());
    sqlx::query(
        "INSERT INTO gateway_tokens (id, name, token_sha256, created_at) VALUES ($1, $2, $3, $4)",
    )
    .bind(&row.0)
    .bind(&row.1)
    .bind(sha256_hex(&token))
    .bind(row.2)
    .execute(pool)
    .await?;
    Ok((row, token))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TokenInput {
    name: Option<String>,
}

pub async fn create(
    State(s): State<AppState>,
    JsonBody(input): JsonBody<TokenInput>,
) -> ApiResult<(StatusCode, Json<Value>)> {
    let name = check_name("name", input.name.as_deref().unwrap_or(""))?;
    let (row, token) = insert_token(&s.pool, &name).await?;
    let mut body = token_json(&row);
    body["token"] = json!(token);
    Ok((StatusCode::CREATED, Json(body)))
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
    Ok(Json(page(rows, limit, |r| &r.0).map(token_json)))
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
