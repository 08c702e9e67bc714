//! Admin access tokens: shown once on creation, stored as SHA-256, scoped `read` or `write`.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;
use serde::Deserialize;
use serde_json::{json, Value};

use super::auth::Scope;
use super::error::{ApiError, ApiResult};
use super::extract::{ApiQuery, JsonBody};
use super::list::{page, ListParams, Page};
use super::AppState;
use crate::domain::catalog::check_name;
use crate::secrets::{new_admin_token, new_id, sha256_hex};
use crate::store::{now, Pool};

/// (id, name, scope, created_at, expires_at)
type TokenRow = (String, String, String, i64, Option<i64>);

/// Longest lifetime a token may be given (`expires_in_days`); without one it lasts until revoked.
pub const MAX_TOKEN_DAYS: i64 = 3_650;

fn token_json(r: &TokenRow) -> Value {
    json!({"object": "admin_token", "id": r.0, "name": r.1, "scope": r.2, "created_at": r.3,
           "expires_at": r.4})
}

/// `expires_in_days` (1..=[`MAX_TOKEN_DAYS`]) as an expiry time, from now.
pub fn expiry(days: Option<i64>) -> Result<Option<i64>, ApiError> {
    match days {
        None => Ok(None),
        Some(d) if (1..=MAX_TOKEN_DAYS).contains(&d) => Ok(Some(now() + d * 86_400)),
        Some(_) => Err(ApiError::invalid(
            "expires_in_days",
            "invalid_expiry",
            format!("expires_in_days is 1 to {MAX_TOKEN_DAYS}, or absent for no expiry"),
        )),
    }
}

/// Creates a token and returns (row, plaintext). Used by the API and by `tollgate token create`.
pub async fn insert_token(
    pool: &Pool,
    name: &str,
    scope: Scope,
    expires_at: Option<i64>,
) -> Result<(TokenRow, String), sqlx::Error> {
    let token = new_admin_token();
    let row: TokenRow = (
        new_id("tok"),
        name.to_string(),
        scope.as_str().to_string(),
        now(),
        expires_at,
    );
    sqlx::query("INSERT INTO admin_tokens (id, name, token_sha256, scope, created_at, expires_at) VALUES ($1, $2, $3, $4, $5, $6)")
        .bind(&row.0)
        .bind(&row.1)
        .bind(sha256_hex(&token))
        .bind(&row.2)
        .bind(row.3)
        .bind(row.4)
        .execute(pool)
        .await?;
    Ok((row, token))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TokenInput {
    name: Option<String>,
    scope: Option<String>,
    expires_in_days: Option<i64>,
}

pub async fn create(
    State(s): State<AppState>,
    JsonBody(input): JsonBody<TokenInput>,
) -> ApiResult<(StatusCode, Json<Value>)> {
    let name = check_name("name", input.name.as_deref().unwrap_or(""))?;
    let scope_raw = input.scope.unwrap_or_else(|| "read".into());
    let scope = Scope::parse(&scope_raw).ok_or_else(|| {
        ApiError::invalid("scope", "invalid_scope", "scope is \"read\" or \"write\"")
    })?;
    let expires_at = expiry(input.expires_in_days)?;
    let (row, token) = insert_token(&s.pool, &name, scope, expires_at).await?;
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
        "SELECT id, name, scope, created_at, expires_at FROM admin_tokens WHERE id > $1 ORDER BY id LIMIT $2",
    )
    .bind(p.after())
    .bind(limit + 1)
    .fetch_all(&s.pool)
    .await?;
    Ok(Json(page(rows, limit, |r| &r.0).map(token_json)))
}

pub async fn remove(State(s): State<AppState>, Path(id): Path<String>) -> ApiResult<Json<Value>> {
    super::delete_by_id(&s.pool, "admin_tokens", id, "admin token", "admin_token").await
}
