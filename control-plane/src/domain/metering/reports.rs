//! Usage reports, recorded exactly once: `(token, gateway, sequence)` is claimed in the same
//! transaction as the counters it adds to, so a retry is acknowledged as a duplicate and a failure
//! anywhere rolls both back.

use std::collections::{BTreeMap, HashMap, HashSet};

use tollgate_protocol::{UsageAck, UsageReport};

use super::{
    Counters, INSTANCE_MINUTES_KEPT_SECS, MAX_CLOCK_SKEW_SECS, MAX_COUNTER_DELTA_PER_REPORT,
    MAX_COUNTER_VALUE, MAX_GATEWAY_NAME_BYTES, MAX_REPORT_AGE_SECS, MAX_REPORT_ENTRIES,
};
use crate::domain::gateway::GatewayCaller;
use crate::domain::{DomainError, DomainResult};
use crate::store::{is_unique_violation, now, Pool, Tx};

/// Application ids looked up per query, and counters upserted per statement (4 or 5 parameters
/// each): well under SQLite's and PostgreSQL's parameter limits.
const LOOKUP_CHUNK: usize = 500;
const UPSERT_CHUNK: usize = 250;

/// Counter deltas by (application id, metric id, bucket start), in key order.
type Sums<'a> = BTreeMap<(&'a str, &'a str, i64), i64>;

#[derive(sqlx::FromRow)]
struct IdRow {
    id: String,
}

#[derive(sqlx::FromRow)]
struct MetricIdRow {
    name: String,
    id: String,
}

/// Checks a report's shape and bounds, before anything is looked up.
fn check(report: &UsageReport) -> DomainResult<i64> {
    if report.gateway.is_empty() || report.gateway.len() > MAX_GATEWAY_NAME_BYTES {
        return Err(DomainError::invalid(
            "gateway",
            "invalid_gateway",
            format!("1-{MAX_GATEWAY_NAME_BYTES} characters"),
        ));
    }
    if report
        .instance
        .as_deref()
        .is_some_and(|i| i.is_empty() || i.len() > MAX_GATEWAY_NAME_BYTES)
    {
        return Err(DomainError::invalid(
            "instance",
            "invalid_instance",
            format!("1-{MAX_GATEWAY_NAME_BYTES} characters"),
        ));
    }
    if report.entries.len() > MAX_REPORT_ENTRIES {
        return Err(DomainError::invalid(
            "entries",
            "too_many_entries",
            format!("at most {MAX_REPORT_ENTRIES} per report"),
        ));
    }
    let sequence = i64::try_from(report.sequence)
        .map_err(|_| DomainError::invalid("sequence", "invalid_sequence", "too large"))?;
    let t = now();
    let oldest = t - MAX_REPORT_AGE_SECS;
    for (i, e) in report.entries.iter().enumerate() {
        if e.bucket_start % 60 != 0
            || e.bucket_start < oldest
            || e.bucket_start > t + MAX_CLOCK_SKEW_SECS
        {
            return Err(DomainError::invalid(
                format!("entries[{i}].bucket_start"),
                "invalid_bucket",
                "a recent minute boundary",
            ));
        }
        if e.delta == 0 || e.delta > MAX_COUNTER_DELTA_PER_REPORT {
            return Err(DomainError::invalid(
                format!("entries[{i}].delta"),
                "invalid_delta",
                format!("1 to {MAX_COUNTER_DELTA_PER_REPORT}"),
            ));
        }
    }
    // The same bound on each counter's sum over the report (entries may repeat a counter).
    let mut per_counter: HashMap<(&str, &str, i64), u64> = HashMap::new();
    for (i, e) in report.entries.iter().enumerate() {
        let sum = per_counter
            .entry((e.application.as_str(), e.metric.as_str(), e.bucket_start))
            .or_default();
        *sum += e.delta;
        if *sum > MAX_COUNTER_DELTA_PER_REPORT {
            return Err(DomainError::invalid(
                format!("entries[{i}].delta"),
                "counter_delta_too_large",
                format!(
                    "at most {MAX_COUNTER_DELTA_PER_REPORT} per application, metric and minute in one report"
                ),
            ));
        }
    }
    Ok(sequence)
}

/// Name -> id of the service's metrics.
async fn metric_ids(pool: &Pool, service_id: &str) -> DomainResult<HashMap<String, String>> {
    let rows: Vec<MetricIdRow> =
        sqlx::query_as("SELECT name, id FROM metrics WHERE service_id = $1")
            .bind(service_id)
            .fetch_all(pool)
            .await?;
    Ok(rows.into_iter().map(|r| (r.name, r.id)).collect())
}

/// Which of the report's applications belong to the service (only those are looked up, not all
/// of the service's). An application of a service outside the token's scope refuses the whole
/// report (a token never counts usage on another customer's applications); unknown ids (deleted
/// applications a stale snapshot still had) are only ignored.
async fn applications_of(
    tx: &mut Tx,
    caller: &GatewayCaller,
    service_id: &str,
    report: &UsageReport,
) -> DomainResult<HashSet<String>> {
    let mut wanted: Vec<&str> = report
        .entries
        .iter()
        .map(|e| e.application.as_str())
        .collect();
    wanted.sort_unstable();
    wanted.dedup();
    let mut apps: HashSet<String> = HashSet::with_capacity(wanted.len());
    for chunk in wanted.chunks(LOOKUP_CHUNK) {
        let placeholders: Vec<String> = (0..chunk.len()).map(|i| format!("${}", i + 2)).collect();
        let sql = format!(
            "SELECT a.id AS id FROM applications a JOIN plans p ON p.id = a.plan_id WHERE p.service_id = $1 AND a.id IN ({})",
            placeholders.join(", ")
        );
        // One statement text per chunk size: not kept in the prepared-statement caches.
        let mut q = sqlx::query_as::<_, IdRow>(&sql)
            .persistent(false)
            .bind(service_id);
        for id in chunk {
            q = q.bind(*id);
        }
        apps.extend(q.fetch_all(&mut **tx).await?.into_iter().map(|r| r.id));
        let sql = format!(
            "SELECT a.id AS id FROM applications a JOIN plans p ON p.id = a.plan_id WHERE a.id IN ({}) \
             AND p.service_id NOT IN (SELECT service_id FROM gateway_token_services WHERE token_id = $1) ORDER BY a.id LIMIT 1",
            placeholders.join(", ")
        );
        let mut q = sqlx::query_as::<_, IdRow>(&sql)
            .persistent(false)
            .bind(&caller.token_id);
        for id in chunk {
            q = q.bind(*id);
        }
        if let Some(outside) = q.fetch_optional(&mut **tx).await? {
            let i = report
                .entries
                .iter()
                .position(|e| e.application == outside.id)
                .unwrap_or(0);
            return Err(DomainError::invalid(
                format!("entries[{i}].application"),
                "application_out_of_scope",
                "an application of a service this gateway token is not scoped to; nothing was recorded",
            ));
        }
    }
    Ok(apps)
}

/// Records a report of `caller` for `service_id` (scope and existence already checked), exactly
/// once: a report whose (gateway, sequence) was recorded before is acknowledged as a duplicate
/// and adds nothing. Entries naming an unknown application or metric are ignored (counted).
pub async fn record(
    pool: &Pool,
    caller: &GatewayCaller,
    service_id: &str,
    report: &UsageReport,
) -> DomainResult<UsageAck> {
    let sequence = check(report)?;
    let gateway_id = caller.namespaced(&report.gateway);
    let instance = report.instance.as_deref().map(|i| caller.namespaced(i));
    let metrics = metric_ids(pool, service_id).await?;
    let mut tx = pool.begin().await?;
    let apps = applications_of(&mut tx, caller, service_id, report).await?;
    // The idempotency id, in the same transaction as the counters: a duplicate stops here, and a
    // failure anywhere below rolls both back (OpenMeter #5118 marked ids first, outside). Report
    // ids are namespaced by token: another token cannot claim this one's (gateway, sequence).
    let claimed = sqlx::query(
        "INSERT INTO usage_reports (gateway_id, sequence, received_at) VALUES ($1, $2, $3)",
    )
    .bind(&gateway_id)
    .bind(sequence)
    .bind(now())
    .execute(&mut *tx)
    .await;
    match claimed {
        Err(e) if is_unique_violation(&e) => {
            return Ok(UsageAck {
                duplicate: true,
                accepted: 0,
                ignored: 0,
            })
        }
        other => {
            other?;
        }
    }
    // Aggregate per (application, metric, hour), in key order: concurrent reports then lock rows
    // in the same order and cannot deadlock each other.
    let mut hours: Sums = Sums::new();
    let mut minutes: Sums = Sums::new();
    let mut ignored = 0u64;
    let mut accepted = 0u64;
    for e in &report.entries {
        match (apps.contains(&e.application), metrics.get(&e.metric)) {
            (true, Some(metric_id)) => {
                let hour = e.bucket_start - e.bucket_start.rem_euclid(3600);
                // Deltas are at most MAX_COUNTER_DELTA_PER_REPORT per minute (checked above), so
                // an hour's sum is at most 60 times that: well within i64, still checked.
                let delta = i64::try_from(e.delta).unwrap_or(i64::MAX);
                for (sums, bucket) in [(&mut hours, hour), (&mut minutes, e.bucket_start)] {
                    let sum = sums
                        .entry((e.application.as_str(), metric_id.as_str(), bucket))
                        .or_default();
                    *sum = sum.checked_add(delta).ok_or_else(|| {
                        DomainError::invalid(
                            "entries",
                            "counter_overflow",
                            "this report's deltas overflow a usage counter; nothing was recorded",
                        )
                    })?;
                }
                accepted += 1;
            }
            _ => ignored += 1,
        }
    }
    add_counts(&mut tx, Counters::Hours, None, &hours).await?;
    if let Some(instance) = instance.as_deref() {
        add_counts(&mut tx, Counters::InstanceHours, Some(instance), &hours).await?;
        add_counts(&mut tx, Counters::InstanceMinutes, Some(instance), &minutes).await?;
    }
    tx.commit().await?;
    // Forget report ids long after any retry could come, and per-instance minutes past any minute
    // window (bounded tables); every 1,000th report.
    if report.sequence.is_multiple_of(1_000) {
        forget_old(pool).await;
    }
    Ok(UsageAck {
        duplicate: false,
        accepted,
        ignored,
    })
}

/// Deletes per-instance minutes past any minute window and report ids past any retry. Best
/// effort: a failure leaves the rows for the next time.
async fn forget_old(pool: &Pool) {
    let _ = sqlx::query("DELETE FROM usage_instance_minutes WHERE bucket_start < $1")
        .bind(now() - INSTANCE_MINUTES_KEPT_SECS)
        .execute(pool)
        .await;
    let _ = sqlx::query("DELETE FROM usage_reports WHERE received_at < $1")
        .bind(now() - 4 * MAX_REPORT_AGE_SECS)
        .execute(pool)
        .await;
}

/// Adds deltas to `counters` with sorted multi-row upserts (sorted: concurrent reports lock rows
/// in the same order and cannot deadlock). `instance` selects the per-instance tables.
async fn add_counts(
    tx: &mut Tx,
    counters: Counters,
    instance: Option<&str>,
    sums: &Sums<'_>,
) -> DomainResult<()> {
    let table = counters.as_str();
    let rows: Vec<(&(&str, &str, i64), &i64)> = sums.iter().collect();
    let (cols, key, width) = match instance {
        Some(_) => (
            "instance, application_id, metric_id, bucket_start, value",
            "instance, application_id, metric_id, bucket_start",
            5,
        ),
        None => (
            "application_id, metric_id, bucket_start, value",
            "application_id, metric_id, bucket_start",
            4,
        ),
    };
    for chunk in rows.chunks(UPSERT_CHUNK) {
        // A row the report would take past MAX_COUNTER_VALUE is left as it is (the WHERE), and
        // the statement then touched fewer rows than it carried: the caller rolls back.
        let sql = format!(
            "INSERT INTO {table} ({cols}) VALUES {} ON CONFLICT ({key}) DO UPDATE SET value = {table}.value + excluded.value \
             WHERE {table}.value <= {MAX_COUNTER_VALUE} - excluded.value",
            crate::store::placeholders(chunk.len(), width)
        );
        // One statement text per row count: not kept in the prepared-statement caches (each
        // connection's, and PostgreSQL's per session), which would fill with every arity seen.
        let mut q = sqlx::query(&sql).persistent(false);
        for ((app, metric, bucket), delta) in chunk {
            if let Some(i) = instance {
                q = q.bind(i);
            }
            q = q.bind(*app).bind(*metric).bind(*bucket).bind(**delta);
        }
        let done = q.execute(&mut **tx).await?;
        if done.rows_affected() < chunk.len() as u64 {
            return Err(DomainError::invalid(
                "entries",
                "counter_overflow",
                format!(
                    "this report would take a usage counter past {MAX_COUNTER_VALUE} (per application, metric and hour); nothing was recorded"
                ),
            ));
        }
    }
    Ok(())
}
