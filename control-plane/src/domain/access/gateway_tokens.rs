//! Gateway tokens: what a gateway filter presents to fetch snapshots and report usage, and nothing
//! else. Shown once on creation, stored as SHA-256. Each token is scoped to services
//! (`service_ids`, required on create): it reads the snapshot and global usage of, and reports
//! usage for, those services only.
//!
//! Writing a token or its services does not bump the catalog revision: a snapshot's content does
//! not depend on who fetches it, and the scope is checked on every request before the snapshot's
//! version is compared, so a token taken off a service is refused on its next poll.

use serde::{Deserialize, Serialize};

use super::Deleted;
use crate::domain::audit::{self, Actor, Changes, Object};
use crate::domain::catalog::check_name;
use crate::domain::page::page;
use crate::domain::{DomainError, DomainResult, Page, PageRequest};
use crate::secrets::{new_gateway_token, new_id, sha256_hex};
use crate::store::{now, Pool, Tx};

/// Most services one gateway token may be scoped to.
pub const MAX_TOKEN_SERVICES: usize = 100;

/// A gateway token as the API shows it (never its secret, except once in
/// [`CreatedGatewayToken`]).
#[derive(Clone, Debug, Serialize, utoipa::ToSchema)]
pub struct GatewayToken {
    /// Always `"gateway_token"`.
    pub object: &'static str,
    pub id: String,
    pub name: String,
    pub created_at: i64,
    /// The services it may act for, sorted.
    pub service_ids: Vec<String>,
}

/// A token just created: the only answer that carries the plaintext token.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct CreatedGatewayToken {
    #[serde(flatten)]
    pub gateway_token: GatewayToken,
    /// The secret (`tgw_...`); shown only now, stored only as its SHA-256.
    pub token: String,
}

#[derive(sqlx::FromRow)]
struct GatewayTokenRow {
    id: String,
    name: String,
    created_at: i64,
}

impl GatewayTokenRow {
    fn with_services(&self, service_ids: Vec<String>) -> GatewayToken {
        GatewayToken {
            object: "gateway_token",
            id: self.id.clone(),
            name: self.name.clone(),
            created_at: self.created_at,
            service_ids,
        }
    }
}

/// `POST /gateway_tokens`.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct GatewayTokenInput {
    pub name: Option<String>,
    /// 1 to 100 existing service ids (required).
    pub service_ids: Option<Vec<String>>,
}

/// `PATCH /gateway_tokens/{id}`.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct GatewayTokenUpdate {
    /// Replaces the token's services: 1 to 100 existing service ids (required).
    pub service_ids: Option<Vec<String>>,
}

/// The services a token is scoped to, sorted.
pub async fn token_services(pool: &Pool, token_id: &str) -> DomainResult<Vec<String>> {
    Ok(sqlx::query_scalar(
        "SELECT service_id FROM gateway_token_services WHERE token_id = $1 ORDER BY service_id",
    )
    .bind(token_id)
    .fetch_all(pool)
    .await?)
}

/// Whether the token may act for the service.
pub async fn in_scope(pool: &Pool, token_id: &str, service_id: &str) -> DomainResult<bool> {
    let found: Option<i64> = sqlx::query_scalar(
        "SELECT 1 FROM gateway_token_services WHERE token_id = $1 AND service_id = $2",
    )
    .bind(token_id)
    .bind(service_id)
    .fetch_optional(pool)
    .await?;
    Ok(found.is_some())
}

/// Checks a `service_ids` input: 1 to [`MAX_TOKEN_SERVICES`] existing services, deduplicated.
async fn check_services(pool: &Pool, ids: Option<Vec<String>>) -> DomainResult<Vec<String>> {
    let Some(mut ids) = ids else {
        return Err(DomainError::invalid(
            "service_ids",
            "missing_service_ids",
            "the services this token may serve (a list of service ids)",
        ));
    };
    ids.sort();
    ids.dedup();
    if ids.is_empty() || ids.len() > MAX_TOKEN_SERVICES {
        return Err(DomainError::invalid(
            "service_ids",
            "invalid_service_ids",
            format!("1 to {MAX_TOKEN_SERVICES} service ids"),
        ));
    }
    for (i, id) in ids.iter().enumerate() {
        let found: Option<String> = sqlx::query_scalar("SELECT id FROM services WHERE id = $1")
            .bind(id)
            .fetch_optional(pool)
            .await?;
        if found.is_none() {
            return Err(DomainError::invalid(
                format!("service_ids[{i}]"),
                "unknown_service",
                "no such service",
            ));
        }
    }
    Ok(ids)
}

async fn set_services(tx: &mut Tx, token_id: &str, ids: &[String]) -> DomainResult<()> {
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

/// Checks the input (name, then services) and creates the token with its services.
pub async fn create(
    pool: &Pool,
    actor: &Actor,
    input: GatewayTokenInput,
) -> DomainResult<CreatedGatewayToken> {
    let name = check_name("name", input.name.as_deref().unwrap_or(""))?;
    let services = check_services(pool, input.service_ids).await?;
    let token = new_gateway_token();
    let row = GatewayTokenRow {
        id: new_id("gwt"),
        name,
        created_at: now(),
    };
    let mut tx = crate::store::begin_write(pool).await?;
    sqlx::query(
        "INSERT INTO gateway_tokens (id, name, token_sha256, created_at) VALUES ($1, $2, $3, $4)",
    )
    .bind(&row.id)
    .bind(&row.name)
    .bind(sha256_hex(&token))
    .bind(row.created_at)
    .execute(&mut *tx)
    .await?;
    // A service deleted since the check fails the foreign key: nothing is written.
    set_services(&mut tx, &row.id, &services).await?;
    // The object shown in lists: never the token or its digest.
    let gateway_token = row.with_services(services);
    let changes = Changes::between(None, Some(&gateway_token))?;
    let object = Object {
        kind: "gateway_token",
        id: &gateway_token.id,
    };
    audit::record(&mut tx, actor, "gateway_token.created", object, &changes).await?;
    tx.commit().await?;
    Ok(CreatedGatewayToken {
        gateway_token,
        token,
    })
}

async fn fetch_row(pool: &Pool, id: &str) -> DomainResult<GatewayTokenRow> {
    sqlx::query_as("SELECT id, name, created_at FROM gateway_tokens WHERE id = $1")
        .bind(id)
        .fetch_optional(pool)
        .await?
        .ok_or_else(|| DomainError::not_found("gateway token", id))
}

/// Replaces the token's services (the token itself is unchanged).
pub async fn update(
    pool: &Pool,
    actor: &Actor,
    id: &str,
    input: GatewayTokenUpdate,
) -> DomainResult<GatewayToken> {
    let row = fetch_row(pool, id).await?;
    let services = check_services(pool, input.service_ids).await?;
    let mut tx = crate::store::begin_write(pool).await?;
    let old: Vec<String> = sqlx::query_scalar(
        "SELECT service_id FROM gateway_token_services WHERE token_id = $1 ORDER BY service_id",
    )
    .bind(id)
    .fetch_all(&mut *tx)
    .await?;
    set_services(&mut tx, id, &services).await?;
    let (before, after) = (row.with_services(old), row.with_services(services));
    let changes = Changes::between(Some(&before), Some(&after))?;
    let object = Object {
        kind: "gateway_token",
        id,
    };
    audit::record(&mut tx, actor, "gateway_token.updated", object, &changes).await?;
    tx.commit().await?;
    Ok(after)
}

pub async fn get(pool: &Pool, id: &str) -> DomainResult<GatewayToken> {
    let row = fetch_row(pool, id).await?;
    let services = token_services(pool, id).await?;
    Ok(row.with_services(services))
}

/// A page of tokens in id order, each with its services.
pub async fn list(pool: &Pool, req: &PageRequest) -> DomainResult<Page<GatewayToken>> {
    let rows: Vec<GatewayTokenRow> = sqlx::query_as(
        "SELECT id, name, created_at FROM gateway_tokens WHERE id > $1 ORDER BY id LIMIT $2",
    )
    .bind(&req.after)
    .bind(req.limit + 1)
    .fetch_all(pool)
    .await?;
    let rows = page(rows, req.limit, |r| &r.id);
    let mut data = Vec::with_capacity(rows.data.len());
    for r in &rows.data {
        data.push(r.with_services(token_services(pool, &r.id).await?));
    }
    Ok(rows.with_data(data))
}

/// Revokes a token: the gateway holding it is refused from its next request on.
pub async fn revoke(pool: &Pool, actor: &Actor, id: String) -> DomainResult<Deleted> {
    let mut tx = crate::store::begin_write(pool).await?;
    // Locked (PostgreSQL): a concurrent revoke waits, then finds nothing (one event, one 404).
    let row: Option<GatewayTokenRow> = sqlx::query_as(&format!(
        "SELECT id, name, created_at FROM gateway_tokens WHERE id = $1{}",
        crate::store::for_update()
    ))
    .bind(&id)
    .fetch_optional(&mut *tx)
    .await?;
    let Some(row) = row else {
        return Err(DomainError::not_found("gateway token", id));
    };
    let services: Vec<String> = sqlx::query_scalar(
        "SELECT service_id FROM gateway_token_services WHERE token_id = $1 ORDER BY service_id",
    )
    .bind(&id)
    .fetch_all(&mut *tx)
    .await?;
    sqlx::query("DELETE FROM gateway_tokens WHERE id = $1")
        .bind(&id)
        .execute(&mut *tx)
        .await?;
    let object = Object {
        kind: "gateway_token",
        id: &id,
    };
    let changes = Changes::between(Some(&row.with_services(services)), None)?;
    audit::record(&mut tx, actor, "gateway_token.revoked", object, &changes).await?;
    tx.commit().await?;
    Ok(Deleted::new("gateway_token", id))
}
