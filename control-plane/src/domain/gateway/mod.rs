//! What gateways see: who is calling (a gateway token, scoped to services) and the snapshot of a
//! service they enforce. Usage reports, what gateways send back, are [`crate::domain::metering`].

pub mod encoded;
pub mod snapshot;
pub mod watch;

use crate::domain::{DomainError, DomainResult};
use crate::store::Pool;

/// The gateway token that authenticated a request (its id): usage and instances are namespaced by
/// it and its services bound what it may do.
#[derive(Clone, Debug)]
pub struct GatewayCaller {
    pub token_id: String,
}

/// A row that exists (`SELECT 1 AS one`).
#[derive(sqlx::FromRow)]
struct ExistsRow {
    #[allow(dead_code)] // only its presence is read
    one: i64,
}

#[derive(sqlx::FromRow)]
struct TokenIdRow {
    id: String,
}

/// The gateway token whose SHA-256 is `digest`, or `None` (unknown or revoked).
pub async fn authenticate(pool: &Pool, digest: &str) -> DomainResult<Option<GatewayCaller>> {
    let found: Option<TokenIdRow> =
        sqlx::query_as("SELECT id FROM gateway_tokens WHERE token_sha256 = $1")
            .bind(digest)
            .fetch_optional(pool)
            .await?;
    Ok(found.map(|r| GatewayCaller { token_id: r.id }))
}

impl GatewayCaller {
    /// Forbidden unless the token is scoped to the service, then not found unless the service
    /// exists: scope first, so a token learns nothing about services outside its scope.
    pub async fn check_service(&self, pool: &Pool, service_id: &str) -> DomainResult<()> {
        let in_scope: Option<ExistsRow> = sqlx::query_as(
            "SELECT 1 AS one FROM gateway_token_services WHERE token_id = $1 AND service_id = $2",
        )
        .bind(&self.token_id)
        .bind(service_id)
        .fetch_optional(pool)
        .await?;
        if in_scope.is_none() {
            return Err(DomainError::Forbidden(format!(
                "this gateway token is not scoped to service {service_id}"
            )));
        }
        let exists: Option<ExistsRow> =
            sqlx::query_as("SELECT 1 AS one FROM services WHERE id = $1")
                .bind(service_id)
                .fetch_optional(pool)
                .await?;
        match exists {
            Some(_) => Ok(()),
            None => Err(DomainError::not_found("service", service_id)),
        }
    }

    /// A gateway-chosen name (gateway id, instance id) in this token's namespace: two tokens using
    /// the same name never share report ids or per-instance counts.
    pub fn namespaced(&self, name: &str) -> String {
        format!("{}/{name}", self.token_id)
    }
}

/// Whether the database answers at all (`/healthz`, which gateways and load balancers poll).
pub async fn database_answers(pool: &Pool) -> DomainResult<()> {
    sqlx::query("SELECT 1").execute(pool).await?;
    Ok(())
}
