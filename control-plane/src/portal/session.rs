//! Portal sign-in: Argon2id password hashes, sessions in an HttpOnly cookie (stored as SHA-256),
//! and CSRF tokens (per session; before sign-in a double-submit cookie).

use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::Argon2;
use axum::http::HeaderMap;

use crate::http::error::{ApiError, ApiResult};
use crate::rate_limit::Limiter;
use crate::secrets::{constant_time_eq, new_session_token, random_salt, sha256_hex};
use crate::store::{now, Pool};

/// How long a session lasts (fixed, from sign-in).
pub const SESSION_TTL_SECS: i64 = 12 * 3600;
pub const SESSION_COOKIE: &str = "tg_session";
pub const CSRF_COOKIE: &str = "tg_csrf";
/// Password length bounds (characters).
pub const MIN_PASSWORD_CHARS: usize = 10;
pub const MAX_PASSWORD_CHARS: usize = 256;

/// The signed-in developer.
#[derive(Clone, Debug)]
pub struct Session {
    pub user_id: String,
    pub account_id: String,
    pub email: String,
    pub csrf: String,
}

pub fn cookie(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get_all("cookie")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|kv| kv.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.to_string())
}

/// `Set-Cookie` for a portal cookie: HttpOnly, Secure, SameSite=Lax, scoped to /portal.
pub fn set_cookie(name: &str, value: &str, max_age: i64) -> String {
    format!("{name}={value}; Path=/portal; HttpOnly; Secure; SameSite=Lax; Max-Age={max_age}")
}

fn busy() -> ApiError {
    ApiError::Unavailable("too many sign-ins at once; retry shortly".into())
}

/// Argon2id with the crate's default parameters, off the async threads, at most
/// `TOLLGATE_MAX_CONCURRENT_PASSWORD_HASHES` at once (503 after a bounded wait).
pub async fn hash_password(limits: &Limiter, password: String) -> ApiResult<String> {
    let _slot = limits.hash_slot().await.ok_or_else(busy)?;
    tokio::task::spawn_blocking(move || {
        let salt = SaltString::encode_b64(&random_salt())
            .map_err(|e| ApiError::Internal(e.to_string()))?;
        Argon2::default()
            .hash_password(password.as_bytes(), &salt)
            .map(|h| h.to_string())
            .map_err(|e| ApiError::Internal(e.to_string()))
    })
    .await
    .map_err(|e| ApiError::Internal(e.to_string()))?
}

/// Checks `password` against an Argon2id hash, under the same concurrency bound as
/// [`hash_password`].
pub async fn verify_password(
    limits: &Limiter,
    password: String,
    stored: String,
) -> ApiResult<bool> {
    let _slot = limits.hash_slot().await.ok_or_else(busy)?;
    Ok(tokio::task::spawn_blocking(move || {
        PasswordHash::new(&stored)
            .map(|h| {
                Argon2::default()
                    .verify_password(password.as_bytes(), &h)
                    .is_ok()
            })
            .unwrap_or(false)
    })
    .await
    .unwrap_or(false))
}

/// Starts a session; returns the cookie value (only its hash is stored).
pub async fn start(pool: &Pool, user_id: &str) -> ApiResult<String> {
    let token = new_session_token();
    let t = now();
    sqlx::query("INSERT INTO portal_sessions (id_sha256, user_id, csrf_token, created_at, expires_at) VALUES ($1, $2, $3, $4, $5)")
        .bind(sha256_hex(&token))
        .bind(user_id)
        .bind(new_session_token())
        .bind(t)
        .bind(t + SESSION_TTL_SECS)
        .execute(pool)
        .await?;
    Ok(token)
}

/// The session of this request, if its cookie names a live one.
pub async fn current(pool: &Pool, headers: &HeaderMap) -> ApiResult<Option<Session>> {
    let Some(token) = cookie(headers, SESSION_COOKIE) else {
        return Ok(None);
    };
    let row: Option<(String, String, String, String)> = sqlx::query_as(
        "SELECT u.id, u.account_id, u.email, s.csrf_token FROM portal_sessions s JOIN portal_users u ON u.id = s.user_id \
         WHERE s.id_sha256 = $1 AND s.expires_at > $2",
    )
    .bind(sha256_hex(&token))
    .bind(now())
    .fetch_optional(pool)
    .await?;
    Ok(row.map(|(user_id, account_id, email, csrf)| Session {
        user_id,
        account_id,
        email,
        csrf,
    }))
}

pub async fn end(pool: &Pool, headers: &HeaderMap) -> ApiResult<()> {
    if let Some(token) = cookie(headers, SESSION_COOKIE) {
        sqlx::query("DELETE FROM portal_sessions WHERE id_sha256 = $1")
            .bind(sha256_hex(&token))
            .execute(pool)
            .await?;
    }
    Ok(())
}

/// A form's CSRF field against the expected token (constant time).
pub fn csrf_ok(expected: &str, presented: Option<&str>) -> bool {
    presented.is_some_and(|p| !expected.is_empty() && constant_time_eq(expected, p))
}
