//! Developer API tokens (`tgd_...`): account-scoped, created by an admin
//! (`POST /admin/api/v1/accounts/{id}/tokens`), shown once, stored as SHA-256, valid until revoked
//! or until their optional expiry. A developer token sees only its own account's objects.

use serde::{Deserialize, Serialize};

use super::tokens::expiry;
use super::Deleted;
use crate::domain::audit::{self, Actor, Changes, Object};
use crate::domain::catalog::check_name;
use crate::domain::{DomainError, DomainResult, Page};
use crate::secrets::{new_account_token, new_id, sha256_hex};
use crate::store::{now, Pool};

/// A developer token as the API shows it (never its secret, except once in
/// [`CreatedAccountToken`]).
#[derive(Clone, Debug, Serialize, utoipa::ToSchema)]
pub struct AccountToken {
    /// Always `"account_token"`.
    pub object: &'static str,
    pub id: String,
    pub account_id: String,
    pub name: String,
    pub created_at: i64,
    /// Unix seconds; `null`: until revoked.
    #[schema(required = true)]
    pub expires_at: Option<i64>,
}

#[derive(sqlx::FromRow)]
struct AccountTokenRow {
    id: String,
    account_id: String,
    name: String,
    created_at: i64,
    expires_at: Option<i64>,
}

impl From<AccountTokenRow> for AccountToken {
    fn from(r: AccountTokenRow) -> AccountToken {
        AccountToken {
            object: "account_token",
            id: r.id,
            account_id: r.account_id,
            name: r.name,
            created_at: r.created_at,
            expires_at: r.expires_at,
        }
    }
}

/// A token just created: the only answer that carries the plaintext token.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct CreatedAccountToken {
    #[serde(flatten)]
    pub account_token: AccountToken,
    /// The secret (`tgd_...`); shown only now, stored only as its SHA-256.
    pub token: String,
}

/// `POST /accounts/{id}/tokens`.
#[derive(Debug, Default, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AccountTokenInput {
    /// `developer` when absent.
    pub name: Option<String>,
    /// 1 to 3650; absent: until revoked.
    #[schema(minimum = 1, maximum = 3650)]
    pub expires_in_days: Option<i64>,
}

async fn check_account(pool: &Pool, account_id: &str) -> DomainResult<()> {
    let found: Option<String> = sqlx::query_scalar("SELECT id FROM accounts WHERE id = $1")
        .bind(account_id)
        .fetch_optional(pool)
        .await?;
    found
        .map(|_| ())
        .ok_or_else(|| DomainError::not_found("account", account_id))
}

/// Checks the account (404), then the name, then the expiry, and creates the token.
pub async fn create(
    pool: &Pool,
    actor: &Actor,
    account_id: &str,
    input: AccountTokenInput,
) -> DomainResult<CreatedAccountToken> {
    check_account(pool, account_id).await?;
    let name = check_name("name", input.name.as_deref().unwrap_or("developer"))?;
    let expires_at = expiry(input.expires_in_days)?;
    let token = new_account_token();
    let account_token = AccountToken {
        object: "account_token",
        id: new_id("atok"),
        account_id: account_id.to_string(),
        name,
        created_at: now(),
        expires_at,
    };
    let mut tx = crate::store::begin_write(pool).await?;
    sqlx::query("INSERT INTO account_tokens (id, account_id, name, token_sha256, created_at, expires_at) VALUES ($1, $2, $3, $4, $5, $6)")
        .bind(&account_token.id)
        .bind(&account_token.account_id)
        .bind(&account_token.name)
        .bind(sha256_hex(&token))
        .bind(account_token.created_at)
        .bind(account_token.expires_at)
        .execute(&mut *tx)
        .await?;
    // The token as listed (never its value or digest).
    let changes = Changes::between(None, Some(&account_token))?;
    let object = Object {
        kind: "account_token",
        id: &account_token.id,
    };
    audit::record(&mut tx, actor, "account_token.created", object, &changes).await?;
    tx.commit().await?;
    Ok(CreatedAccountToken {
        account_token,
        token,
    })
}

/// All of an account's tokens in id order, as one page (an account has few).
pub async fn list(pool: &Pool, account_id: &str) -> DomainResult<Page<AccountToken>> {
    check_account(pool, account_id).await?;
    let rows: Vec<AccountTokenRow> = sqlx::query_as(
        "SELECT id, account_id, name, created_at, expires_at FROM account_tokens WHERE account_id = $1 ORDER BY id",
    )
    .bind(account_id)
    .fetch_all(pool)
    .await?;
    Ok(Page {
        object: "list",
        data: rows.into_iter().map(AccountToken::from).collect(),
        has_more: false,
        next_cursor: None,
    })
}

/// Revokes one of the account's tokens (another account's token is not found).
pub async fn revoke(
    pool: &Pool,
    actor: &Actor,
    account_id: &str,
    id: String,
) -> DomainResult<Deleted> {
    let mut tx = crate::store::begin_write(pool).await?;
    // Locked (PostgreSQL): a concurrent revoke waits, then finds nothing (one event, one 404).
    let before: Option<AccountTokenRow> = sqlx::query_as(&format!(
        "SELECT id, account_id, name, created_at, expires_at FROM account_tokens WHERE id = $1 AND account_id = $2{}",
        crate::store::for_update()
    ))
    .bind(&id)
    .bind(account_id)
    .fetch_optional(&mut *tx)
    .await?;
    let Some(before) = before.map(AccountToken::from) else {
        return Err(DomainError::not_found("account token", id));
    };
    sqlx::query("DELETE FROM account_tokens WHERE id = $1")
        .bind(&id)
        .execute(&mut *tx)
        .await?;
    let changes = Changes::between(Some(&before), None)?;
    let object = Object {
        kind: "account_token",
        id: &id,
    };
    audit::record(&mut tx, actor, "account_token.revoked", object, &changes).await?;
    tx.commit().await?;
    Ok(Deleted::new("account_token", id))
}

/// What a presented developer token turned out to be.
#[derive(Debug, PartialEq, Eq)]
pub enum AccountTokenCheck {
    /// A live token of this account.
    Valid { account_id: String },
    /// A stored token past its `expires_at`.
    Expired,
    /// No such token (never created, or revoked).
    Unknown,
}

/// Looks a presented token up by its SHA-256.
pub async fn check(pool: &Pool, token: &str) -> DomainResult<AccountTokenCheck> {
    #[derive(sqlx::FromRow)]
    struct Found {
        account_id: String,
        expires_at: Option<i64>,
    }
    let found: Option<Found> =
        sqlx::query_as("SELECT account_id, expires_at FROM account_tokens WHERE token_sha256 = $1")
            .bind(sha256_hex(token))
            .fetch_optional(pool)
            .await?;
    Ok(match found {
        None => AccountTokenCheck::Unknown,
        Some(f) if f.expires_at.is_some_and(|t| t <= now()) => AccountTokenCheck::Expired,
        Some(f) => AccountTokenCheck::Valid {
            account_id: f.account_id,
        },
    })
}
