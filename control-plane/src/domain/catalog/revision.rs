//! The catalog revision: the number gateways compare (`If-None-Match`) to learn that what they
//! enforce changed. This module is its one writer: every domain write that changes what a
//! gateway sees (services, metrics, mapping rules, plans, limits, accounts' applications and
//! keys, suspensions, expired keys purged) calls [`bump`] inside its own transaction, so the new
//! revision becomes visible exactly when the change does, never before and never without it.

use crate::domain::DomainResult;
use crate::store::Tx;

/// Moves the revision on by one inside `tx`: gateways fetch the new snapshot on their next poll.
pub async fn bump(tx: &mut Tx) -> DomainResult<()> {
    sqlx::query("UPDATE catalog_revision SET revision = revision + 1 WHERE id = 1")
        .execute(&mut **tx)
        .await?;
    Ok(())
}

/// The current revision (the first part of a snapshot version).
pub async fn current(pool: &crate::store::Pool) -> DomainResult<i64> {
    let (revision,): (i64,) = sqlx::query_as("SELECT revision FROM catalog_revision WHERE id = 1")
        .fetch_one(pool)
        .await?;
    Ok(revision)
}
