//! Purges rows nothing reads any more: expired portal and admin-portal sessions, idempotency
//! records older than [`IDEMPOTENCY_KEEP_SECS`], rotated API keys whose grace period has run
//! out, finished webhook deliveries older than [`WEBHOOK_DELIVERY_KEEP_SECS`], and deliveries
//! parked behind a disabled endpoint older than [`WEBHOOK_PARKED_KEEP_SECS`]. Run by `tollgate
//! serve` every [`PURGE_INTERVAL_SECS`] (`TOLLGATE_PURGE_INTERVAL_SECS` overrides it) and by
//! `tollgate purge` once. Deletes in batches of [`PURGE_BATCH_ROWS`], at most
//! [`PURGE_MAX_BATCHES`] per table per pass, so one pass never holds a long write lock.
//! Audit events are never purged (`domain::audit`: the log is append-only and kept forever).

use std::time::Duration;

use crate::domain::catalog::revision;
use crate::domain::DomainResult;
use crate::store::{now, Pool};

/// Seconds between purge passes of `tollgate serve` (default).
pub const PURGE_INTERVAL_SECS: u64 = 3600;
/// Rows deleted per statement.
pub const PURGE_BATCH_ROWS: i64 = 1_000;
/// Statements per table per pass (the rest waits for the next pass).
pub const PURGE_MAX_BATCHES: usize = 100;
/// How long an idempotency record is kept: a retry with the same `Idempotency-Key` within this
/// time gets the stored answer; after it, the key may be reused.
pub const IDEMPOTENCY_KEEP_SECS: i64 = 24 * 3600;
/// How long a finished webhook delivery (delivered, or given up) is kept in the delivery log,
/// with its attempts, from its creation; its event goes with the last delivery of it.
pub const WEBHOOK_DELIVERY_KEEP_SECS: i64 = 30 * 24 * 3600;
/// How long a delivery parked behind a disabled endpoint is kept, from its creation: an endpoint
/// enabled again within this time receives what it missed; one left disabled longer does not
/// hold its deliveries forever. Deliveries still being tried (due, or under way) are never purged.
pub const WEBHOOK_PARKED_KEEP_SECS: i64 = 30 * 24 * 3600;

/// Rows deleted by one pass, per kind.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Purged {
    pub portal_sessions: u64,
    pub admin_sessions: u64,
    pub idempotency_keys: u64,
    pub application_keys: u64,
    /// Finished deliveries and deliveries parked longer than their retention.
    pub webhook_deliveries: u64,
}

async fn batches(pool: &Pool, sql: &str, before: i64) -> DomainResult<u64> {
    let mut total = 0;
    for _ in 0..PURGE_MAX_BATCHES {
        let n = sqlx::query(sql)
            .bind(before)
            .bind(PURGE_BATCH_ROWS)
            .execute(pool)
            .await?
            .rows_affected();
        total += n;
        if n < PURGE_BATCH_ROWS as u64 {
            break;
        }
    }
    Ok(total)
}

/// One pass over every kind.
pub async fn purge_once(pool: &Pool) -> DomainResult<Purged> {
    let t = now();
    let portal_sessions = batches(
        pool,
        "DELETE FROM portal_sessions WHERE id_sha256 IN (SELECT id_sha256 FROM portal_sessions WHERE expires_at <= $1 LIMIT $2)",
        t,
    )
    .await?;
    let admin_sessions = batches(
        pool,
        "DELETE FROM admin_sessions WHERE id_sha256 IN (SELECT id_sha256 FROM admin_sessions WHERE expires_at <= $1 LIMIT $2)",
        t,
    )
    .await?;
    let idempotency_keys = batches(
        pool,
        "DELETE FROM idempotency_keys WHERE (token_id, idem_key) IN \
         (SELECT token_id, idem_key FROM idempotency_keys WHERE created_at <= $1 LIMIT $2)",
        t - IDEMPOTENCY_KEEP_SECS,
    )
    .await?;
    // Expired keys are counted in the snapshot version (`<revision>.<expired keys>`): deleting
    // them lowers that count, so the revision is bumped with them (in one transaction) and a
    // version is never repeated for a different set of live keys.
    let mut application_keys = 0;
    for _ in 0..PURGE_MAX_BATCHES {
        let mut tx = crate::store::begin_write(pool).await?;
        let n = sqlx::query(
            "DELETE FROM application_keys WHERE id IN (SELECT id FROM application_keys \
             WHERE expires_at IS NOT NULL AND expires_at <= $1 LIMIT $2)",
        )
        .bind(t)
        .bind(PURGE_BATCH_ROWS)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        if n > 0 {
            revision::bump(&mut tx).await?;
        }
        tx.commit().await?;
        application_keys += n;
        if n < PURGE_BATCH_ROWS as u64 {
            break;
        }
    }
    // Attempts go with their delivery (ON DELETE CASCADE), events once no delivery is left.
    let finished = batches(
        pool,
        "DELETE FROM webhook_deliveries WHERE id IN (SELECT id FROM webhook_deliveries \
         WHERE state IN ('delivered', 'failed') AND created_at <= $1 LIMIT $2)",
        t - WEBHOOK_DELIVERY_KEEP_SECS,
    )
    .await?;
    // The outer conditions are checked again on the row itself (PostgreSQL re-reads a row that
    // changed since the subquery saw it): a delivery its endpoint's enabling made due at that
    // moment is not deleted.
    let parked = batches(
        pool,
        &format!(
            "DELETE FROM webhook_deliveries WHERE id IN (SELECT id FROM webhook_deliveries \
             WHERE state = 'pending' AND next_attempt_at = {parked} AND created_at <= $1 LIMIT $2) \
             AND state = 'pending' AND next_attempt_at = {parked}",
            parked = crate::domain::webhooks::endpoints::PARKED_MS
        ),
        t - WEBHOOK_PARKED_KEEP_SECS,
    )
    .await?;
    let webhook_deliveries = finished + parked;
    batches(
        pool,
        "DELETE FROM webhook_messages WHERE id IN (SELECT m.id FROM webhook_messages m \
         WHERE m.created_at <= $1 AND NOT EXISTS (SELECT 1 FROM webhook_deliveries d WHERE d.event_id = m.id) LIMIT $2)",
        t - WEBHOOK_DELIVERY_KEEP_SECS,
    )
    .await?;
    Ok(Purged {
        portal_sessions,
        admin_sessions,
        idempotency_keys,
        application_keys,
        webhook_deliveries,
    })
}

/// The interval of `tollgate serve`'s purge task: `TOLLGATE_PURGE_INTERVAL_SECS` (1 or more), or
/// [`PURGE_INTERVAL_SECS`].
pub fn interval_from_env() -> Result<Duration, String> {
    match std::env::var("TOLLGATE_PURGE_INTERVAL_SECS") {
        Err(_) => Ok(Duration::from_secs(PURGE_INTERVAL_SECS)),
        Ok(v) => match v.trim().parse::<u64>() {
            Ok(n) if n >= 1 => Ok(Duration::from_secs(n)),
            _ => Err(format!(
                "TOLLGATE_PURGE_INTERVAL_SECS must be a whole number of seconds, at least 1 (got {v:?})"
            )),
        },
    }
}

/// `tollgate serve`'s purge task: a pass every `every`, first one after `every`.
pub async fn run_purger(pool: Pool, every: Duration) {
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tick.tick().await;
    loop {
        tick.tick().await;
        match purge_once(&pool).await {
            Ok(p) => tracing::info!(?p, "purged expired rows"),
            Err(e) => tracing::warn!(error = ?e, "purge failed; retried next interval"),
        }
    }
}
