//! What `/metrics` reads at scrape time rather than counts: outbox depths and their oldest
//! pending message (from the database, shared by every replica), and this process's pool.
//!
//! The reads are bounded: at most [`MAX_OUTBOX_ROWS_READ`] pending rows per outbox (through the
//! `(state, next_attempt_at)` index), within [`READ_TIMEOUT`]. A read that fails or times out
//! leaves its series out of that scrape and sets `tollgate_metrics_database_up` to 0, rather than
//! repeating a stale value.

use std::time::Duration;

use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::{Registry, Unit};

use super::{Outbox, OutboxLabels, PREFIX};
use crate::store::{now, Pool};

/// Most pending rows one scrape reads per outbox: the depth is reported as at most this (an
/// outbox that deep is an incident whatever the exact figure), so a scrape never walks a huge table.
pub const MAX_OUTBOX_ROWS_READ: i64 = 100_000;
/// Longest the scrape waits for the database; Prometheus's own scrape timeout is 10 s by default.
pub const READ_TIMEOUT: Duration = Duration::from_secs(3);

/// An outbox whose depth is read at scrape time. `pending` is the SQL condition of a message
/// still to deliver; `parked` (if the outbox has such) that of a message waiting for a change
/// before it can go, counted apart so that it does not age the pending ones; `enqueued_at` its
/// column of Unix seconds when it was written.
pub struct OutboxTable {
    pub outbox: Outbox,
    pub table: &'static str,
    pub pending: &'static str,
    pub parked: Option<&'static str>,
    pub enqueued_at: &'static str,
}

/// `endpoints::PARKED_MS` as the SQL text of [`OUTBOXES`] spells it.
const _: () = assert!(crate::domain::webhooks::endpoints::PARKED_MS == i64::MAX);

/// The outboxes `/metrics` reports. Adding one is one entry here (and its [`Outbox`] variant).
pub const OUTBOXES: &[OutboxTable] = &[
    OutboxTable {
        outbox: Outbox::Email,
        table: "email_outbox",
        pending: "state IN ('pending', 'sending')",
        parked: None,
        enqueued_at: "created_at",
    },
    // Deliveries parked behind a disabled endpoint (never due until it is enabled again) are
    // counted apart: an endpoint disabled for a week must not read as a week of delivery lag.
    OutboxTable {
        outbox: Outbox::Webhook,
        table: "webhook_deliveries",
        pending: "state IN ('pending', 'delivering') AND next_attempt_at < 9223372036854775807",
        parked: Some("state = 'pending' AND next_attempt_at = 9223372036854775807"),
        enqueued_at: "created_at",
    },
];

#[derive(sqlx::FromRow)]
struct DepthRow {
    n: i64,
    oldest: Option<i64>,
}

/// One outbox as read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct OutboxDepth {
    pub outbox: Outbox,
    /// Pending messages, at most [`MAX_OUTBOX_ROWS_READ`].
    pub pending: i64,
    /// Age of the oldest pending message (0 when none).
    pub oldest_pending_age_secs: i64,
    /// Parked messages, at most [`MAX_OUTBOX_ROWS_READ`]; `None` for an outbox without them.
    pub parked: Option<i64>,
}

/// The pool of this process.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PoolUse {
    pub max: i64,
    pub open: i64,
    pub idle: i64,
}

/// Everything read for one scrape.
#[derive(Clone, Debug, Default)]
pub struct Readings {
    pub outboxes: Vec<OutboxDepth>,
    pub pool: Option<PoolUse>,
    /// Whether the database answered every read.
    pub database_up: bool,
}

impl Readings {
    /// Reads the outboxes and the pool (bounded, see the module's doc).
    pub async fn read(pool: &Pool) -> Readings {
        let pool_use = PoolUse {
            max: i64::from(pool.options().get_max_connections()),
            open: i64::from(pool.size()),
            idle: i64::try_from(pool.num_idle()).unwrap_or(i64::MAX),
        };
        let read = tokio::time::timeout(READ_TIMEOUT, outbox_depths(pool)).await;
        let (outboxes, database_up) = match read {
            Ok(Ok(outboxes)) => (outboxes, true),
            Ok(Err(e)) => {
                tracing::warn!("/metrics: cannot read the outboxes: {e}");
                (Vec::new(), false)
            }
            Err(_) => {
                tracing::warn!("/metrics: reading the outboxes took over {READ_TIMEOUT:?}");
                (Vec::new(), false)
            }
        };
        Readings {
            outboxes,
            pool: Some(pool_use),
            database_up,
        }
    }

    /// A registry of gauges holding these readings, encoded after the process's metrics.
    pub fn registry(&self) -> Registry {
        let mut r = Registry::with_prefix(PREFIX);
        let up = Gauge::<i64>::default();
        up.set(i64::from(self.database_up));
        r.register(
            "metrics_database_up",
            "1 when this scrape read the database (the outbox series are present), else 0",
            up,
        );
        if !self.outboxes.is_empty() {
            let depth = Family::<OutboxLabels, Gauge>::default();
            let age = Family::<OutboxLabels, Gauge>::default();
            let parked = Family::<OutboxLabels, Gauge>::default();
            for o in &self.outboxes {
                let labels = OutboxLabels { outbox: o.outbox };
                depth.get_or_create(&labels).set(o.pending);
                age.get_or_create(&labels).set(o.oldest_pending_age_secs);
                if let Some(n) = o.parked {
                    parked.get_or_create(&labels).set(n);
                }
            }
            r.register(
                "outbox_pending",
                format!("Messages waiting in an outbox (read from the database, at most {MAX_OUTBOX_ROWS_READ})"),
                depth,
            );
            r.register_with_unit(
                "outbox_oldest_pending_age",
                "Age of the oldest message waiting in an outbox (0 when none)",
                Unit::Seconds,
                age,
            );
            r.register(
                "outbox_parked",
                format!("Messages of an outbox waiting for a change before they can go: webhook deliveries behind a disabled endpoint (read from the database, at most {MAX_OUTBOX_ROWS_READ})"),
                parked,
            );
        }
        if let Some(p) = self.pool {
            for (name, help, value) in [
                (
                    "db_pool_max_connections",
                    "Most connections this process's pool opens",
                    p.max,
                ),
                (
                    "db_pool_connections",
                    "Connections open in this process's pool (idle and in use)",
                    p.open,
                ),
                (
                    "db_pool_idle_connections",
                    "Open connections of this process's pool waiting for work",
                    p.idle,
                ),
                (
                    "db_pool_in_use_connections",
                    "Connections of this process's pool in use right now",
                    (p.open - p.idle).max(0),
                ),
            ] {
                let g = Gauge::<i64>::default();
                g.set(value);
                r.register(name, help, g);
            }
        }
        r
    }
}

async fn outbox_depths(pool: &Pool) -> Result<Vec<OutboxDepth>, sqlx::Error> {
    let t = now();
    let mut out = Vec::with_capacity(OUTBOXES.len());
    for o in OUTBOXES {
        // The inner LIMIT bounds the rows read; the statement text is fixed per outbox.
        let sql = format!(
            "SELECT COUNT(*) AS n, MIN(p.at) AS oldest FROM \
             (SELECT {at} AS at FROM {table} WHERE {pending} LIMIT {MAX_OUTBOX_ROWS_READ}) p",
            at = o.enqueued_at,
            table = o.table,
            pending = o.pending,
        );
        let row: DepthRow = sqlx::query_as(&sql).fetch_one(pool).await?;
        let parked = match o.parked {
            Some(parked) => {
                let sql = format!(
                    "SELECT COUNT(*) FROM (SELECT 1 AS one FROM {table} WHERE {parked} LIMIT {MAX_OUTBOX_ROWS_READ}) p",
                    table = o.table,
                );
                Some(sqlx::query_scalar::<_, i64>(&sql).fetch_one(pool).await?)
            }
            None => None,
        };
        out.push(OutboxDepth {
            outbox: o.outbox,
            pending: row.n,
            oldest_pending_age_secs: row.oldest.map_or(0, |at| (t - at).max(0)),
            parked,
        });
    }
    Ok(out)
}
