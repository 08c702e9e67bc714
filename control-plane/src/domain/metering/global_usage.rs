//! Global usage: what all *other* instances of a gateway fleet admitted in the current window of
//! every period the service's plans limit. A gateway adds it to its own counts, so a quota holds
//! across gateways within (instances x rate x (flush + poll)).

use tollgate_protocol::{GlobalUsage, GlobalUsageEntry, Period};

use super::Counters;
use crate::domain::gateway::snapshot::stored_period;
use crate::domain::gateway::GatewayCaller;
use crate::domain::DomainResult;
use crate::store::{now, Pool};

#[derive(sqlx::FromRow)]
struct PeriodRow {
    period: String,
}

#[derive(sqlx::FromRow)]
struct UsageRow {
    application: String,
    metric: String,
    value: i64,
}

/// The usage of every instance but `instance` (a name in `caller`'s namespace, as reports store
/// it) on `service_id` (scope and existence already checked).
pub async fn of_others(
    pool: &Pool,
    caller: &GatewayCaller,
    service_id: &str,
    instance: &str,
) -> DomainResult<GlobalUsage> {
    // Instances are stored in the reporting token's namespace (see `reports::record`).
    let own_instance = caller.namespaced(instance);
    let periods: Vec<PeriodRow> = sqlx::query_as(
        "SELECT DISTINCT l.period AS period FROM plan_limits l JOIN plans p ON p.id = l.plan_id WHERE p.service_id = $1",
    )
    .bind(service_id)
    .fetch_all(pool)
    .await?;
    let t = now();
    let mut entries = Vec::new();
    for row in periods {
        let period = stored_period(&row.period)?;
        let window = tollgate_rules::periods::window(period, t);
        let (table, condition) = if period == Period::Minute {
            (Counters::InstanceMinutes, "u.bucket_start = $3")
        } else {
            // Every longer window starts on an hour: a sum of hourly rows.
            (Counters::InstanceHours, "u.bucket_start >= $3")
        };
        let sql = format!(
            "SELECT a.id AS application, m.name AS metric, CAST(SUM(u.value) AS BIGINT) AS value FROM {} u \
             JOIN applications a ON a.id = u.application_id \
             JOIN plans p ON p.id = a.plan_id JOIN metrics m ON m.id = u.metric_id \
             WHERE p.service_id = $1 AND u.instance <> $2 AND {condition} GROUP BY a.id, m.name",
            table.as_str()
        );
        let rows: Vec<UsageRow> = sqlx::query_as(&sql)
            .bind(service_id)
            .bind(&own_instance)
            .bind(window.start)
            .fetch_all(pool)
            .await?;
        entries.extend(
            rows.into_iter()
                .filter(|r| r.value > 0)
                .map(|r| GlobalUsageEntry {
                    application: r.application,
                    metric: r.metric,
                    period,
                    window_start: window.start,
                    value: r.value as u64,
                }),
        );
    }
    Ok(GlobalUsage {
        entries,
        credit: Vec::new(),
    })
}
