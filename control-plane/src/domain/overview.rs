//! What the admin dashboard sums up: catalog counts, revenue this month and money outstanding per
//! currency, and today's usage per service and metric. Read-only.

use std::collections::HashMap;

use rust_decimal::Decimal;

use crate::domain::billing::invoices::InvoiceState;
use crate::domain::DomainResult;
use crate::money::stored;
use crate::store::Pool;

/// How many of each the catalog holds.
#[derive(Clone, Copy, Debug, sqlx::FromRow)]
pub struct Counts {
    pub services: i64,
    pub plans: i64,
    pub accounts: i64,
    pub applications: i64,
}

pub async fn counts(pool: &Pool) -> DomainResult<Counts> {
    Ok(sqlx::query_as(
        "SELECT (SELECT COUNT(*) FROM services) AS services, (SELECT COUNT(*) FROM plans) AS plans, \
         (SELECT COUNT(*) FROM accounts) AS accounts, (SELECT COUNT(*) FROM applications) AS applications",
    )
    .fetch_one(pool)
    .await?)
}

/// Sums per currency code, in `Decimal` (never floats).
#[derive(Clone, Debug, Default)]
pub struct Money {
    /// Paid since the given instant.
    pub revenue: HashMap<String, Decimal>,
    /// Issued and not paid: pending, unpaid, failed.
    pub outstanding: HashMap<String, Decimal>,
}

/// Revenue (invoices paid at or after `since`, Unix seconds) and what is outstanding now.
pub async fn money(pool: &Pool, since: i64) -> DomainResult<Money> {
    let rows: Vec<(String, String, String)> = sqlx::query_as(
        "SELECT currency, state, total FROM invoices WHERE kind = 'invoice' AND ((state = 'paid' AND paid_at >= $1) OR state IN ('pending', 'unpaid', 'failed'))",
    )
    .bind(since)
    .fetch_all(pool)
    .await?;
    let mut m = Money::default();
    for (currency, state, total) in rows {
        let target = if InvoiceState::parse(&state)? == InvoiceState::Paid {
            &mut m.revenue
        } else {
            &mut m.outstanding
        };
        // A total that does not parse is an error, never counted as zero.
        *target.entry(currency).or_default() += stored(&total)?;
    }
    Ok(m)
}

/// Today's usage: (service name, metric name, count) from `day_start` (Unix seconds) on, by
/// service and metric name.
pub async fn usage_since(pool: &Pool, day_start: i64) -> DomainResult<Vec<(String, String, i64)>> {
    Ok(sqlx::query_as(
        "SELECT s.name, m.name, CAST(SUM(c.value) AS BIGINT) FROM usage_counters c JOIN metrics m ON m.id = c.metric_id \
         JOIN services s ON s.id = m.service_id WHERE c.bucket_start >= $1 GROUP BY s.name, m.name ORDER BY s.name, m.name",
    )
    .bind(day_start)
    .fetch_all(pool)
    .await?)
}
