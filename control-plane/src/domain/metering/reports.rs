//! Usage reports, recorded exactly once: `(token, gateway, sequence)` is claimed in the same
//! transaction as the counters it adds to, so a retry is acknowledged as a duplicate and a failure
//! anywhere rolls both back.
//!
//! Set-based: a report costs the same few statements whatever its size: its applications looked
//! up in one query answering one row, then per counter table one upsert of all its rows, each
//! statement text fixed so that a connection prepares it once. The rows travel as one parameter
//! per column: PostgreSQL array literals expanded by `unnest`, or on SQLite one JSON array of rows
//! expanded by `json_each`. It replaced multi-row statements of one placeholder per value and an
//! `IN` list per 500 applications, whose costs were sqlx's rather than the database's (SQLite
//! resolves each numbered placeholder by a linear search, and every row answered crossed a
//! channel from SQLite's thread): with the queue in `record`, 8 clients' reports of 1,000 counters
//! went from 2 to 250 a second on SQLite and from 12 to 109 on PostgreSQL (BENCHMARKS.md,
//! "Set-based ingestion").

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;

use tollgate_protocol::{UsageAck, UsageReport};

use super::{
    Counters, INSTANCE_MINUTES_KEPT_SECS, MAX_CLOCK_SKEW_SECS, MAX_COUNTER_DELTA_PER_REPORT,
    MAX_COUNTER_VALUE, MAX_ENTRY_NAME_BYTES, MAX_GATEWAY_NAME_BYTES, MAX_REPORT_AGE_SECS,
    MAX_REPORT_ENTRIES,
};
use crate::domain::gateway::GatewayCaller;
use crate::domain::{DomainError, DomainResult};
use crate::store::{self, is_unique_violation, now, Backend, Pool, Tx};

/// The first key of the PostgreSQL advisory lock a report of a service holds while it writes
/// (the second is a hash of the service id). Each two-key advisory lock of Tollgate has its own
/// class: this one, and `accounts::keys::KEY_DIGEST_LOCK_CLASS`.
const REPORT_LOCK_CLASS: i32 = 17;

/// Longest a report's transaction waits on PostgreSQL for a lock (another replica's report of the
/// same service, a counter or dedup row): past it the report is refused 503 and the gateway
/// retries it. Without a bound, a replica frozen while holding the service's lock would make
/// every waiting report here hold a pooled connection until the server noticed (hours), and the
/// pool would run dry for every route.
const REPORT_LOCK_TIMEOUT_MS: u32 = 5_000;

/// One queue per service in this process, for the writes of its reports: a report waits in its
/// service's queue before it takes a connection, and writes alone. Reports of one service add to
/// the same counters, so they serialize in the database anyway; waiting here costs the database
/// nothing, where waiting there did (see `record`). Per service, so a busy service never delays
/// another's reports; an entry lives while a report holds or awaits it, and the map drops entries
/// nobody holds when it is consulted (so it is bounded by the services with reports in flight).
type WriteQueues = std::sync::Mutex<HashMap<String, std::sync::Weak<tokio::sync::Mutex<()>>>>;
static REPORT_WRITE_QUEUES: std::sync::LazyLock<WriteQueues> =
    std::sync::LazyLock::new(Default::default);

fn write_queue(service_id: &str) -> Arc<tokio::sync::Mutex<()>> {
    let mut queues = REPORT_WRITE_QUEUES
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    if let Some(queue) = queues.get(service_id).and_then(std::sync::Weak::upgrade) {
        return queue;
    }
    queues.retain(|_, q| q.strong_count() > 0);
    let queue = Arc::new(tokio::sync::Mutex::new(()));
    queues.insert(service_id.to_string(), Arc::downgrade(&queue));
    queue
}

/// Counter deltas by (application id, metric id, bucket start), in key order.
type Sums<'a> = BTreeMap<(&'a str, &'a str, i64), i64>;

/// What the report's applications are, in one row (a row per application costs more than the
/// lookup through sqlx: on SQLite each row crosses a channel from the database thread): the ids
/// of those of the service, as a JSON array, and the least id of one of a service outside the
/// token's scope.
#[derive(sqlx::FromRow)]
struct KnownApplications {
    ours: String,
    outside: Option<String>,
}

#[derive(sqlx::FromRow)]
struct MetricIdRow {
    name: String,
    id: String,
}

/// Checks a report's shape and bounds, before anything is looked up.
fn check(report: &UsageReport) -> DomainResult<i64> {
    let bad_name = |n: &str| {
        n.is_empty() || n.len() > MAX_GATEWAY_NAME_BYTES || n.chars().any(char::is_control)
    };
    if bad_name(&report.gateway) {
        return Err(DomainError::invalid(
            "gateway",
            "invalid_gateway",
            format!("1-{MAX_GATEWAY_NAME_BYTES} bytes without control characters"),
        ));
    }
    if report.instance.as_deref().is_some_and(bad_name) {
        return Err(DomainError::invalid(
            "instance",
            "invalid_instance",
            format!("1-{MAX_GATEWAY_NAME_BYTES} bytes without control characters"),
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
        // Ids are looked up, never stored from here; but PostgreSQL refuses U+0000 in any text
        // parameter (22021), and an id with control characters cannot be one of ours.
        for (field, value) in [("application", &e.application), ("metric", &e.metric)] {
            if value.is_empty()
                || value.len() > MAX_ENTRY_NAME_BYTES
                || value.chars().any(char::is_control)
            {
                return Err(DomainError::invalid(
                    format!("entries[{i}].{field}"),
                    "invalid_entry",
                    format!("1-{MAX_ENTRY_NAME_BYTES} bytes without control characters"),
                ));
            }
        }
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
/// of the service's), in one query. An application of a service outside the token's scope refuses
/// the whole report (a token never counts usage on another customer's applications); unknown ids
/// (deleted applications a stale snapshot still had) are only ignored.
async fn applications_of(
    pool: &Pool,
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
    let (ids, sql) = match store::backend() {
        Backend::Postgres => (
            store::pg_text_array(&wanted),
            "SELECT COALESCE(json_agg(a.id) FILTER (WHERE p.service_id = $3), '[]')::text AS ours, \
             MIN(a.id) FILTER (WHERE p.service_id <> $3 AND g.service_id IS NULL) AS outside \
             FROM applications a JOIN plans p ON p.id = a.plan_id \
             LEFT JOIN gateway_token_services g ON g.token_id = $2 AND g.service_id = p.service_id \
             WHERE a.id = ANY($1::text[])",
        ),
        Backend::Sqlite => (
            serde_json::to_string(&wanted).map_err(|e| DomainError::Internal(e.to_string()))?,
            "SELECT json_group_array(a.id) FILTER (WHERE p.service_id = $3) AS ours, \
             MIN(a.id) FILTER (WHERE p.service_id <> $3 AND g.service_id IS NULL) AS outside \
             FROM applications a JOIN plans p ON p.id = a.plan_id \
             LEFT JOIN gateway_token_services g ON g.token_id = $2 AND g.service_id = p.service_id \
             WHERE a.id IN (SELECT value FROM json_each($1))",
        ),
    };
    let known: KnownApplications = sqlx::query_as(sql)
        .bind(ids)
        .bind(&caller.token_id)
        .bind(service_id)
        .fetch_one(pool)
        .await?;
    if let Some(outside) = known.outside {
        let i = report
            .entries
            .iter()
            .position(|e| e.application == outside)
            .unwrap_or(0);
        return Err(DomainError::invalid(
            format!("entries[{i}].application"),
            "application_out_of_scope",
            "an application of a service this gateway token is not scoped to; nothing was recorded",
        ));
    }
    serde_json::from_str(&known.ours).map_err(|e| DomainError::Internal(e.to_string()))
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
    // Looked up before the transaction, which then only writes: on SQLite the write lock is held
    // for the writes alone. An application deleted meanwhile is counted, as one a gateway's
    // snapshot still had a moment ago would be (its contract bills it).
    let apps = applications_of(pool, caller, service_id, report).await?;
    // Aggregated per (application, metric, hour), and minute for an instance, in key order: a
    // counter the report repeats is one row, and concurrent reports lock rows in the same order
    // and cannot deadlock each other. Before the transaction: the write lock waits for nothing
    // but the writes.
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
                let minute = instance.is_some().then_some(e.bucket_start);
                for (sums, bucket) in [(&mut hours, Some(hour)), (&mut minutes, minute)] {
                    let Some(bucket) = bucket else { continue };
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
    // In this process, reports of the service write one at a time, queued before they take a
    // connection. In PostgreSQL they queued on the rows they add to, and each waiting statement
    // held a snapshot that kept every version the reports before it made from being pruned: each
    // report stepped over longer chains of them (8 concurrent reports of 1,000 counters, one
    // table: 20-28 a second, 70-90 from one client). On SQLite a waiting writer sleeps in SQLite's
    // busy handler, in steps of up to 100 ms, instead of starting when the lock is free.
    let queue = write_queue(service_id);
    let queued = queue.lock().await;
    // The write lock first (SQLite's `BEGIN IMMEDIATE`): reports of other services queue for it
    // instead of failing "database is locked" when a read transaction cannot be upgraded.
    let mut tx = store::begin_write(pool).await?;
    if store::backend() == Backend::Postgres {
        // Bounded waits for every lock below (see REPORT_LOCK_TIMEOUT_MS); `SET LOCAL` ends with
        // the transaction. A constant, so no parameter: SET takes none.
        sqlx::query(&format!(
            "SET LOCAL lock_timeout = {REPORT_LOCK_TIMEOUT_MS}"
        ))
        .execute(&mut *tx)
        .await?;
        // Other control-plane replicas' reports of the service queue here, before touching a row
        // (a waiting statement holds a snapshot, as above, but only one per replica waits).
        // Reports of other services do not wait; a hash collision only queues two services.
        sqlx::query(&format!(
            "SELECT pg_advisory_xact_lock({REPORT_LOCK_CLASS}, hashtext($1))"
        ))
        .bind(service_id)
        .execute(&mut *tx)
        .await?;
    }
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
    add_counts(&mut tx, Counters::Hours, None, &hours).await?;
    if let Some(instance) = instance.as_deref() {
        add_counts(&mut tx, Counters::InstanceHours, Some(instance), &hours).await?;
        add_counts(&mut tx, Counters::InstanceMinutes, Some(instance), &minutes).await?;
    }
    tx.commit().await?;
    // The next report of the service may write now; the clean-up below is this process's chore.
    drop(queued);
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

/// Adds deltas to `counters` in one upsert of all the rows (in key order: concurrent reports lock
/// rows in the same order and cannot deadlock). `instance` selects the per-instance tables.
async fn add_counts(
    tx: &mut Tx,
    counters: Counters,
    instance: Option<&str>,
    sums: &Sums<'_>,
) -> DomainResult<()> {
    if sums.is_empty() {
        return Ok(());
    }
    let backend = store::backend();
    let sql = upsert_sql(backend, counters, instance.is_some());
    let mut q = sqlx::query(&sql);
    match backend {
        Backend::Postgres => {
            let apps: Vec<&str> = sums.keys().map(|k| k.0).collect();
            let metrics: Vec<&str> = sums.keys().map(|k| k.1).collect();
            let buckets: Vec<i64> = sums.keys().map(|k| k.2).collect();
            let deltas: Vec<i64> = sums.values().copied().collect();
            q = q
                .bind(store::pg_text_array(&apps))
                .bind(store::pg_text_array(&metrics))
                .bind(store::pg_bigint_array(&buckets))
                .bind(store::pg_bigint_array(&deltas));
        }
        Backend::Sqlite => {
            let rows: Vec<(&str, &str, i64, i64)> = sums
                .iter()
                .map(|(&(app, metric, bucket), &delta)| (app, metric, bucket, delta))
                .collect();
            q = q.bind(
                serde_json::to_string(&rows).map_err(|e| DomainError::Internal(e.to_string()))?,
            );
        }
    }
    if let Some(i) = instance {
        q = q.bind(i);
    }
    let done = q.execute(&mut **tx).await?;
    if done.rows_affected() < sums.len() as u64 {
        return Err(DomainError::invalid(
            "entries",
            "counter_overflow",
            format!(
                "this report would take a usage counter past {MAX_COUNTER_VALUE} (per application, metric and hour); nothing was recorded"
            ),
        ));
    }
    Ok(())
}

/// The upsert of a report's rows into `counters`, one text per backend, table and shape (so each
/// connection prepares it once). Parameters: the rows ($1-$4 on PostgreSQL: arrays of application
/// ids, metric ids, bucket starts and deltas; $1 on SQLite: a JSON array of those 4-tuples), then
/// the instance when `with_instance`. A row the report would take past MAX_COUNTER_VALUE is left
/// as it is (the WHERE), and the statement then touched fewer rows than it carried: the caller
/// rolls back.
fn upsert_sql(backend: Backend, counters: Counters, with_instance: bool) -> String {
    let table = counters.as_str();
    let (cols, key, instance) = if with_instance {
        (
            "instance, application_id, metric_id, bucket_start, value",
            "instance, application_id, metric_id, bucket_start",
            match backend {
                Backend::Postgres => "$5, ",
                Backend::Sqlite => "$2, ",
            },
        )
    } else {
        (
            "application_id, metric_id, bucket_start, value",
            "application_id, metric_id, bucket_start",
            "",
        )
    };
    let rows = match backend {
        // `unnest` reads the arrays out in order, so rows are written in key order.
        Backend::Postgres => {
            "SELECT {instance}r.a, r.m, r.b, r.v \
             FROM unnest($1::text[], $2::text[], $3::bigint[], $4::bigint[]) AS r(a, m, b, v)"
        }
        // `json_each` walks the array in order. The `WHERE true` is SQLite's: without it an
        // `ON CONFLICT` after `INSERT ... SELECT ... FROM` would parse as a join constraint.
        Backend::Sqlite => {
            "SELECT {instance}r.value ->> 0, r.value ->> 1, r.value ->> 2, r.value ->> 3 \
             FROM json_each($1) AS r WHERE true"
        }
    }
    .replace("{instance}", instance);
    format!(
        "INSERT INTO {table} ({cols}) {rows} ON CONFLICT ({key}) DO UPDATE SET value = {table}.value + excluded.value \
         WHERE {table}.value <= {MAX_COUNTER_VALUE} - excluded.value"
    )
}
