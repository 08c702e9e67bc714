//! Portal sessions: a random cookie value handed to the browser once, stored only as its SHA-256,
//! with a per-session CSRF token, for a fixed [`SESSION_TTL_SECS`] from sign-in. Developer
//! sessions belong to a portal user; admin sessions to the admin token that opened them, and
//! end when that token is revoked or expires (or, for `TOLLGATE_ADMIN_TOKEN`, is changed).

use super::tokens::{Scope, ENV_TOKEN_ID};
use crate::domain::DomainResult;
use crate::secrets::{new_session_token, sha256_hex};
use crate::store::{now, Pool};

/// How long a session lasts (fixed, from sign-in).
pub const SESSION_TTL_SECS: i64 = 12 * 3600;

/// The signed-in developer.
#[derive(Clone, Debug, sqlx::FromRow)]
pub struct Session {
    pub user_id: String,
    pub account_id: String,
    pub email: String,
    pub csrf: String,
}

/// Starts a developer session; returns the cookie value (only its hash is stored).
pub async fn start(pool: &Pool, user_id: &str) -> DomainResult<String> {
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

/// The live developer session a cookie value names, if any.
pub async fn current(pool: &Pool, token: &str) -> DomainResult<Option<Session>> {
    Ok(sqlx::query_as(
        "SELECT u.id AS user_id, u.account_id AS account_id, u.email AS email, s.csrf_token AS csrf \
         FROM portal_sessions s JOIN portal_users u ON u.id = s.user_id \
         WHERE s.id_sha256 = $1 AND s.expires_at > $2",
    )
    .bind(sha256_hex(token))
    .bind(now())
    .fetch_optional(pool)
    .await?)
}

/// Ends the developer session a cookie value names (nothing if there is none).
pub async fn end(pool: &Pool, token: &str) -> DomainResult<()> {
    sqlx::query("DELETE FROM portal_sessions WHERE id_sha256 = $1")
        .bind(sha256_hex(token))
        .execute(pool)
        .await?;
    Ok(())
}

/// A live admin session: who opened it and with what scope.
#[derive(Clone, Debug)]
pub struct AdminGrant {
    /// The admin token's id (`env` for `TOLLGATE_ADMIN_TOKEN`).
    pub token_id: String,
    pub scope: Scope,
    pub csrf: String,
}

#[derive(sqlx::FromRow)]
struct AdminSessionRow {
    token_id: String,
    scope: String,
    csrf_token: String,
}

impl TryFrom<AdminSessionRow> for AdminGrant {
    type Error = crate::domain::DomainError;

    fn try_from(r: AdminSessionRow) -> DomainResult<AdminGrant> {
        Ok(AdminGrant {
            scope: Scope::stored(&r.scope)?,
            token_id: r.token_id,
            csrf: r.csrf_token,
        })
    }
}

/// Starts an admin session for a token that just authenticated; returns the cookie value (only
/// its hash is stored). A session of `TOLLGATE_ADMIN_TOKEN` remembers that token's digest
/// (`env_sha256`), so changing the variable ends it.
pub async fn start_admin(
    pool: &Pool,
    token_id: &str,
    scope: Scope,
    env_sha256: Option<&str>,
) -> DomainResult<String> {
    let session = new_session_token();
    let t = now();
    let env_digest = (token_id == ENV_TOKEN_ID).then_some(env_sha256).flatten();
    sqlx::query("INSERT INTO admin_sessions (id_sha256, token_id, scope, csrf_token, created_at, expires_at, env_token_sha256) VALUES ($1, $2, $3, $4, $5, $6, $7)")
        .bind(sha256_hex(&session))
        .bind(token_id)
        .bind(scope.as_str())
        .bind(new_session_token())
        .bind(t)
        .bind(t + SESSION_TTL_SECS)
        .bind(env_digest)
        .execute(pool)
        .await?;
    Ok(session)
}

/// The live admin session a cookie value names, if any. `env_sha256`: the digest of the current
/// `TOLLGATE_ADMIN_TOKEN`, if set.
pub async fn current_admin(
    pool: &Pool,
    token: &str,
    env_sha256: Option<&str>,
) -> DomainResult<Option<AdminGrant>> {
    let row: Option<AdminSessionRow> = sqlx::query_as(
        // A revoked token ends its sessions too; so does a changed (or removed)
        // TOLLGATE_ADMIN_TOKEN for the sessions opened with it.
        "SELECT s.token_id, s.scope, s.csrf_token FROM admin_sessions s WHERE s.id_sha256 = $1 AND s.expires_at > $2 \
         AND ((s.token_id = 'env' AND s.env_token_sha256 = $3) \
              OR (s.token_id <> 'env' AND EXISTS (SELECT 1 FROM admin_tokens t WHERE t.id = s.token_id AND (t.expires_at IS NULL OR t.expires_at > $2))))",
    )
    .bind(sha256_hex(token))
    .bind(now())
    .bind(env_sha256.unwrap_or(""))
    .fetch_optional(pool)
    .await?;
    row.map(AdminGrant::try_from).transpose()
}

/// Ends the admin session a cookie value names (nothing if there is none).
pub async fn end_admin(pool: &Pool, token: &str) -> DomainResult<()> {
    sqlx::query("DELETE FROM admin_sessions WHERE id_sha256 = $1")
        .bind(sha256_hex(token))
        .execute(pool)
        .await?;
    Ok(())
}
