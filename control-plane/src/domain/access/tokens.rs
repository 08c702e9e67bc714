//! Admin API tokens: shown once on creation, stored as SHA-256, scoped `read` or `write`, valid
//! until revoked or until their optional expiry. `TOLLGATE_ADMIN_TOKEN` (by its digest) is a
//! write token with the id `env` that no one can revoke through the API.

use serde::{Deserialize, Serialize};

use super::Deleted;
use crate::domain::audit::{self, Actor, Changes, Object};
use crate::domain::catalog::check_name;
use crate::domain::page::page;
use crate::domain::{DomainError, DomainResult, Page, PageRequest};
use crate::secrets::{constant_time_eq, new_admin_token, new_id, sha256_hex};
use crate::store::{now, Pool};

/// Longest lifetime a token may be given (`expires_in_days`); without one it lasts until revoked.
pub const MAX_TOKEN_DAYS: i64 = 3_650;

/// The id callers authenticated by `TOLLGATE_ADMIN_TOKEN` act as.
pub const ENV_TOKEN_ID: &str = "env";

/// What an admin token may do: `read` (GET) or `write` (everything; implies read).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Scope {
    Read,
    Write,
}

impl Scope {
    pub fn parse(s: &str) -> Option<Scope> {
        match s {
            "read" => Some(Scope::Read),
            "write" => Some(Scope::Write),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Scope::Read => "read",
            Scope::Write => "write",
        }
    }

    /// A scope read back from the database: one that does not parse is a corrupt row (an
    /// internal error), never silently read-only.
    pub fn stored(s: &str) -> DomainResult<Scope> {
        Scope::parse(s)
            .ok_or_else(|| DomainError::Internal(format!("stored token scope {s:?} is unknown")))
    }
}

/// An admin token as the API shows it (never its secret, except once in [`CreatedAdminToken`]).
#[derive(Clone, Debug, Serialize, utoipa::ToSchema)]
pub struct AdminToken {
    /// Always `"admin_token"`.
    pub object: &'static str,
    pub id: String,
    pub name: String,
    pub scope: Scope,
    pub created_at: i64,
    /// Unix seconds; `null`: until revoked.
    #[schema(required = true)]
    pub expires_at: Option<i64>,
}

/// A token just created: the only answer that carries the plaintext token.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct CreatedAdminToken {
    #[serde(flatten)]
    pub admin_token: AdminToken,
    /// The secret (`tga_...`); shown only now, stored only as its SHA-256.
    pub token: String,
}

#[derive(sqlx::FromRow)]
struct AdminTokenRow {
    id: String,
    name: String,
    scope: String,
    created_at: i64,
    expires_at: Option<i64>,
}

impl TryFrom<AdminTokenRow> for AdminToken {
    type Error = DomainError;

    fn try_from(r: AdminTokenRow) -> DomainResult<AdminToken> {
        Ok(AdminToken {
            object: "admin_token",
            id: r.id,
            name: r.name,
            scope: Scope::stored(&r.scope)?,
            created_at: r.created_at,
            expires_at: r.expires_at,
        })
    }
}

/// `POST /tokens`.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TokenInput {
    pub name: Option<String>,
    /// `read` when absent.
    #[schema(value_type = Option<Scope>)]
    pub scope: Option<String>,
    /// 1 to 3650; absent: until revoked.
    #[schema(minimum = 1, maximum = 3650)]
    pub expires_in_days: Option<i64>,
}

/// `expires_in_days` (1..=[`MAX_TOKEN_DAYS`]) as an expiry time, from now.
pub fn expiry(days: Option<i64>) -> DomainResult<Option<i64>> {
    match days {
        None => Ok(None),
        Some(d) if (1..=MAX_TOKEN_DAYS).contains(&d) => Ok(Some(now() + d * 86_400)),
        Some(_) => Err(DomainError::invalid(
            "expires_in_days",
            "invalid_expiry",
            format!("expires_in_days is 1 to {MAX_TOKEN_DAYS}, or absent for no expiry"),
        )),
    }
}

/// Checks the input (name, then scope, then expiry) and creates the token.
pub async fn create(
    pool: &Pool,
    actor: &Actor,
    input: TokenInput,
) -> DomainResult<CreatedAdminToken> {
    let name = check_name("name", input.name.as_deref().unwrap_or(""))?;
    let scope = Scope::parse(input.scope.as_deref().unwrap_or("read")).ok_or_else(|| {
        DomainError::invalid("scope", "invalid_scope", "scope is \"read\" or \"write\"")
    })?;
    let expires_at = expiry(input.expires_in_days)?;
    insert(pool, actor, &name, scope, expires_at).await
}

/// Creates a token with a checked name and expiry. Used by the API and by `tollgate token create`.
pub async fn insert(
    pool: &Pool,
    actor: &Actor,
    name: &str,
    scope: Scope,
    expires_at: Option<i64>,
) -> DomainResult<CreatedAdminToken> {
    let token = new_admin_token();
    let admin_token = AdminToken {
        object: "admin_token",
        id: new_id("tok"),
        name: name.to_string(),
        scope,
        created_at: now(),
        expires_at,
    };
    let mut tx = crate::store::begin_write(pool).await?;
    sqlx::query("INSERT INTO admin_tokens (id, name, token_sha256, scope, created_at, expires_at) VALUES ($1, $2, $3, $4, $5, $6)")
        .bind(&admin_token.id)
        .bind(&admin_token.name)
        .bind(sha256_hex(&token))
        .bind(scope.as_str())
        .bind(admin_token.created_at)
        .bind(admin_token.expires_at)
        .execute(&mut *tx)
        .await?;
    // The object shown in lists: never the token or its digest.
    let changes = Changes::between(None, Some(&admin_token))?;
    let object = Object {
        kind: "admin_token",
        id: &admin_token.id,
    };
    audit::record(&mut tx, actor, "admin_token.created", object, &changes).await?;
    tx.commit().await?;
    Ok(CreatedAdminToken { admin_token, token })
}

/// A page of tokens in id order.
pub async fn list(pool: &Pool, req: &PageRequest) -> DomainResult<Page<AdminToken>> {
    let rows: Vec<AdminTokenRow> = sqlx::query_as(
        "SELECT id, name, scope, created_at, expires_at FROM admin_tokens WHERE id > $1 ORDER BY id LIMIT $2",
    )
    .bind(&req.after)
    .bind(req.limit + 1)
    .fetch_all(pool)
    .await?;
    let tokens = rows
        .into_iter()
        .map(AdminToken::try_from)
        .collect::<DomainResult<Vec<_>>>()?;
    Ok(page(tokens, req.limit, |t| &t.id))
}

/// Revokes a token: its next request is refused, and the admin portal sessions opened with it end.
pub async fn revoke(pool: &Pool, actor: &Actor, id: String) -> DomainResult<Deleted> {
    let mut tx = crate::store::begin_write(pool).await?;
    // Locked (PostgreSQL): a concurrent revoke waits, then finds nothing (one event, one 404).
    let before: Option<AdminTokenRow> = sqlx::query_as(&format!(
        "SELECT id, name, scope, created_at, expires_at FROM admin_tokens WHERE id = $1{}",
        crate::store::for_update()
    ))
    .bind(&id)
    .fetch_optional(&mut *tx)
    .await?;
    let Some(before) = before.map(AdminToken::try_from).transpose()? else {
        return Err(DomainError::not_found("admin token", id));
    };
    sqlx::query("DELETE FROM admin_tokens WHERE id = $1")
        .bind(&id)
        .execute(&mut *tx)
        .await?;
    let object = Object {
        kind: "admin_token",
        id: &id,
    };
    let changes = Changes::between(Some(&before), None)?;
    audit::record(&mut tx, actor, "admin_token.revoked", object, &changes).await?;
    tx.commit().await?;
    Ok(Deleted::new("admin_token", id))
}

/// What a presented admin token turned out to be.
#[derive(Debug, PartialEq, Eq)]
pub enum TokenCheck {
    /// A live token: act as `id` with `scope`.
    Valid { id: String, scope: Scope },
    /// A stored token past its `expires_at`.
    Expired,
    /// No such token (never created, or revoked).
    Unknown,
}

/// Looks a presented token up by its SHA-256: first `TOLLGATE_ADMIN_TOKEN` (`env_sha256`, compared
/// in constant time), then the stored tokens.
pub async fn check(pool: &Pool, env_sha256: Option<&str>, token: &str) -> DomainResult<TokenCheck> {
    let digest = sha256_hex(token);
    if let Some(env) = env_sha256 {
        if constant_time_eq(env, &digest) {
            return Ok(TokenCheck::Valid {
                id: ENV_TOKEN_ID.into(),
                scope: Scope::Write,
            });
        }
    }
    #[derive(sqlx::FromRow)]
    struct Found {
        id: String,
        scope: String,
        expires_at: Option<i64>,
    }
    let found: Option<Found> =
        sqlx::query_as("SELECT id, scope, expires_at FROM admin_tokens WHERE token_sha256 = $1")
            .bind(&digest)
            .fetch_optional(pool)
            .await?;
    Ok(match found {
        None => TokenCheck::Unknown,
        Some(f) if f.expires_at.is_some_and(|t| t <= now()) => TokenCheck::Expired,
        Some(f) => TokenCheck::Valid {
            id: f.id,
            scope: Scope::stored(&f.scope)?,
        },
    })
}
