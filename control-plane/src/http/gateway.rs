//! What gateways call: the snapshot of a service (plans, metrics, mapping rules, applications with
//! key hashes) and usage reports. Authenticated with gateway tokens, which can do nothing else.
//!
//! Snapshot versions: `"<catalog revision>.<expired keys>"`. The revision is bumped by every
//! successful admin write; the second part counts keys whose rotation grace has run out, so a
//! key expiring with no write still changes the version. A gateway sends its version in
//! `If-None-Match` and gets 304 while nothing changed.

use std::collections::HashMap;
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Path, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::Extension;
use axum::Json;
use tollgate_protocol::{
    Application, ApplicationState, Limit, MappingRule, Metric, Period, Plan, Snapshot,
    SuspensionReason, UsageAck, UsageReport,
};

use super::error::{ApiError, ApiResult};
use super::extract::{ApiQuery, RawBody};
use super::services::fetch_service;
use super::AppState;
use crate::secrets::sha256_hex;
use crate::store::{is_unique_violation, now, Pool};

/// Counter deltas by (application id, metric id, bucket start), in key order.
type Sums<'a> = std::collections::BTreeMap<(&'a str, &'a str, i64), i64>;

/// How long per-instance minute counts are kept (they only serve minute windows).
pub const INSTANCE_MINUTES_KEPT_SECS: i64 = 2 * 3600;

/// Adds deltas to counters of `table` with sorted multi-row upserts (sorted: concurrent reports lock
/// rows in the same order and cannot deadlock). `instance` selects the per-instance tables.
async fn add_counts(
    tx: &mut crate::store::Tx,
    table: &'static str,
    instance: Option<&str>,
    sums: &Sums<'_>,
) -> ApiResult<()> {
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
        let sql = format!(
            "INSERT INTO {table} ({cols}) VALUES {} ON CONFLICT ({key}) DO UPDATE SET value = {table}.value + excluded.value",
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
        q.execute(&mut **tx).await?;
    }
    Ok(())
}

/// (application id, plan id, state, state reason, one live key's SHA-256)
type AppKeyRow = (String, String, String, Option<String>, Option<String>);

/// Application ids looked up per query, and counters upserted per statement (4 parameters each):
/// well under SQLite's and PostgreSQL's parameter limits.
const LOOKUP_CHUNK: usize = 500;
const UPSERT_CHUNK: usize = 250;

/// Most entries in one usage report; gateways split larger flushes (the filter sends at most 5,000).
pub const MAX_REPORT_ENTRIES: usize = 10_000;
/// Largest delta one counter (application, metric, minute) may receive from one report, summed
/// over the report's entries for it: a sanity bound far above any minute of real traffic (a
/// mapping rule adds at most 2^32 - 1 per request), so one report cannot add an unbounded amount.
pub const MAX_COUNTER_DELTA_PER_REPORT: u64 = 1 << 40;
/// Usage older than this is refused. A gateway keeps unacknowledged reports and retries them while
/// the control plane is down, so usage may arrive late; 7 days covers an outage over a long weekend
/// with margin. Applied report ids are kept 4 times as long to recognize retries.
pub const MAX_REPORT_AGE_SECS: i64 = 7 * 24 * 3600;
/// How far in the future (by this server's clock) a report's minute may start: gateway clocks drift.
pub const MAX_CLOCK_SKEW_SECS: i64 = 300;

/// The gateway token that authenticated a request (its id), put in the request's extensions by
/// [`layer`]: usage and instances are namespaced by it and its services bound what it may do.
#[derive(Clone, Debug)]
pub struct GatewayCaller {
    pub token_id: String,
}

impl GatewayCaller {
    /// 403 unless the token is scoped to the service (checked before the service's existence, so a
    /// token learns nothing about services outside its scope).
    async fn check_scope(&self, pool: &Pool, service_id: &str) -> ApiResult<()> {
        if super::gateway_tokens::in_scope(pool, &self.token_id, service_id).await? {
            Ok(())
        } else {
            Err(ApiError::Forbidden(format!(
                "this gateway token is not scoped to service {service_id}"
            )))
        }
    }

    /// A gateway-chosen name (gateway id, instance id) in this token's namespace: two tokens using
    /// the same name never share report ids or per-instance counts.
    fn namespaced(&self, name: &str) -> String {
        format!("{}/{name}", self.token_id)
    }
}

/// Gateway authentication: `Authorization: Bearer <gateway token>`.
pub async fn layer(State(state): State<AppState>, mut req: Request, next: Next) -> Response {
    let token = req
        .headers()
        .get("authorization")
        .and_then(|h| h.to_str().ok())
        .and_then(|h| h.strip_prefix("Bearer "))
        .map(|t| sha256_hex(t.trim()));
    let Some(digest) = token else {
        return ApiError::Unauthorized("send Authorization: Bearer <gateway token>".into())
            .into_response();
    };
    let found: Result<Option<(String,)>, _> =
        sqlx::query_as("SELECT id FROM gateway_tokens WHERE token_sha256 = $1")
            .bind(&digest)
            .fetch_optional(&state.pool)
            .await;
    match found {
        Ok(Some((token_id,))) => {
            req.extensions_mut().insert(GatewayCaller { token_id });
            next.run(req).await
        }
        Ok(None) => {
            ApiError::Unauthorized("unknown or revoked gateway token".into()).into_response()
        }
        Err(e) => ApiError::from(e).into_response(),
    }
}

pub async fn version(pool: &Pool) -> ApiResult<String> {
    let (revision,): (i64,) = sqlx::query_as("SELECT revision FROM catalog_revision WHERE id = 1")
        .fetch_one(pool)
        .await?;
    let (expired,): (i64,) = sqlx::query_as(
        "SELECT COUNT(*) FROM application_keys WHERE expires_at IS NOT NULL AND expires_at <= $1",
    )
    .bind(now())
    .fetch_one(pool)
    .await?;
    Ok(format!("{revision}.{expired}"))
}

/// Bumps the catalog revision after every successful admin write (wrapped around the admin API).
pub async fn bump_on_write(State(state): State<AppState>, req: Request, next: Next) -> Response {
    // Billing writes (settings, runs, invoices) do not change what gateways enforce.
    let path = req.uri().path();
    let billing = path.contains("/billing/") || path.contains("/invoices");
    let writes = !billing
        && !matches!(
            *req.method(),
            axum::http::Method::GET | axum::http::Method::HEAD
        );
    let response = next.run(req).await;
    if writes && response.status().is_success() {
        if let Err(e) =
            sqlx::query("UPDATE catalog_revision SET revision = revision + 1 WHERE id = 1")
                .execute(&state.pool)
                .await
        {
            tracing::error!(error = %e, "cannot bump the catalog revision; gateways may serve a stale snapshot");
        }
    }
    response
}

/// Builds the snapshot of one service as the gateway filter reads it.
pub async fn build_snapshot(pool: &Pool, service_id: &str, version: String) -> ApiResult<Snapshot> {
    let metric_rows: Vec<(String, String, Option<String>)> =
        sqlx::query_as("SELECT m.id, m.name, p.name FROM metrics m LEFT JOIN metrics p ON p.id = m.parent_id WHERE m.service_id = $1 ORDER BY m.id")
            .bind(service_id)
            .fetch_all(pool)
            .await?;
    let metrics = metric_rows
        .iter()
        .map(|(_, name, parent)| Metric {
            name: name.clone(),
            parent: parent.clone(),
        })
        .collect();
    let rules: Vec<(String, String, String, i64, i64)> = sqlx::query_as(
        "SELECT r.http_method, r.pattern, m.name, r.delta, r.is_last FROM mapping_rules r JOIN metrics m ON m.id = r.metric_id \
         WHERE r.service_id = $1 ORDER BY r.id",
    )
    .bind(service_id)
    .fetch_all(pool)
    .await?;
    let mapping_rules = rules
        .into_iter()
        .map(|(method, pattern, metric, delta, last)| MappingRule {
            method,
            pattern,
            metric,
            delta: delta.max(1) as u64,
            last: last != 0,
        })
        .collect();
    let plan_ids: Vec<(String,)> =
        sqlx::query_as("SELECT id FROM plans WHERE service_id = $1 ORDER BY id")
            .bind(service_id)
            .fetch_all(pool)
            .await?;
    let limit_rows: Vec<(String, String, String, i64)> = sqlx::query_as(
        "SELECT l.plan_id, m.name, l.period, l.limit_value FROM plan_limits l JOIN plans p ON p.id = l.plan_id \
         JOIN metrics m ON m.id = l.metric_id WHERE p.service_id = $1",
    )
    .bind(service_id)
    .fetch_all(pool)
    .await?;
    let mut limits: HashMap<String, Vec<Limit>> = HashMap::new();
    for (plan, metric, period, value) in limit_rows {
        let Some(period) = parse_period(&period) else {
            continue;
        };
        limits.entry(plan).or_default().push(Limit {
            metric,
            period,
            value: value.max(0) as u64,
        });
    }
    let plans = plan_ids
        .into_iter()
        .map(|(id,)| Plan {
            limits: limits.remove(&id).unwrap_or_default(),
            id,
            name: None,
        })
        .collect();
    // One pass over applications and their live keys (ordered by application): no second query
    // and no map from application to keys; 100,000 applications is the design point.
    let rows: Vec<AppKeyRow> = sqlx::query_as(
        "SELECT a.id, a.plan_id, a.state, a.state_reason, k.key_sha256 FROM applications a JOIN plans p ON p.id = a.plan_id \
         LEFT JOIN application_keys k ON k.application_id = a.id AND (k.expires_at IS NULL OR k.expires_at > $2) \
         WHERE p.service_id = $1 ORDER BY a.id, k.id",
    )
    .bind(service_id)
    .bind(now())
    .fetch_all(pool)
    .await?;
    let mut applications: Vec<Application> = Vec::with_capacity(rows.len());
    for (id, plan, state, reason, digest) in rows {
        if applications.last().is_none_or(|a| a.id != id) {
            applications.push(Application {
                id,
                plan,
                state: if state == "live" {
                    ApplicationState::Live
                } else {
                    ApplicationState::Suspended
                },
                state_reason: match reason.as_deref() {
                    Some("non_payment") => Some(SuspensionReason::NonPayment),
                    Some(_) => Some(SuspensionReason::Admin),
                    None => None,
                },
                key_sha256: Vec::new(),
                app_id: None,
            });
        }
        if let (Some(digest), Some(app)) = (digest, applications.last_mut()) {
            app.key_sha256.push(digest);
        }
    }
    Ok(Snapshot {
        version: Some(version),
        plans,
        applications,
        metrics,
        mapping_rules,
    })
}

fn parse_period(s: &str) -> Option<Period> {
    Period::ALL.into_iter().find(|p| p.as_str() == s)
}

/// Serialized snapshots by service, reused while the version holds: many gateways polling every
/// second cost one build per change, not one per poll.
#[derive(Default)]
pub struct SnapshotCache {
    entries: std::sync::Mutex<HashMap<String, (String, Arc<Bytes>)>>,
}

pub async fn snapshot(
    State(s): State<AppState>,
    Extension(caller): Extension<GatewayCaller>,
    Path(service_id): Path<String>,
    headers: HeaderMap,
) -> ApiResult<Response> {
    caller.check_scope(&s.pool, &service_id).await?;
    fetch_service(&s.pool, &service_id).await?;
    let version = version(&s.pool).await?;
    let etag = format!("\"{version}\"");
    if headers.get("if-none-match").and_then(|v| v.to_str().ok()) == Some(etag.as_str()) {
        return Ok((StatusCode::NOT_MODIFIED, [("etag", etag)]).into_response());
    }
    // The compact encoding when the gateway asks for it (the Tollgate filter does), else JSON.
    let binary = headers
        .get("accept")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|a| a.contains(tollgate_protocol::binary::MEDIA_TYPE));
    let cache_key = format!("{service_id}/{}", if binary { "binary" } else { "json" });
    let cached = s.snapshots.entries.lock().ok().and_then(|m| {
        m.get(&cache_key)
            .filter(|(v, _)| *v == version)
            .map(|(_, b)| b.clone())
    });
    let body = match cached {
        Some(b) => b,
        None => {
            let snap = build_snapshot(&s.pool, &service_id, version.clone()).await?;
            let encoded = if binary {
                // An application the compact format cannot carry is left out (its keys open
                // nothing on the gateways), never the whole snapshot.
                let (bytes, skipped) = tollgate_protocol::binary::encode_reporting(&snap)
                    .map_err(ApiError::Internal)?;
                for why in skipped {
                    tracing::warn!("snapshot of service {service_id}: {why}; left out");
                }
                bytes
            } else {
                serde_json::to_vec(&snap).map_err(|e| ApiError::Internal(e.to_string()))?
            };
            let bytes = Arc::new(Bytes::from(encoded));
            if let Ok(mut m) = s.snapshots.entries.lock() {
                m.insert(cache_key, (version, bytes.clone()));
            }
            bytes
        }
    };
    let mut r = (StatusCode::OK, Bytes::clone(&body)).into_response();
    let content_type = if binary {
        tollgate_protocol::binary::MEDIA_TYPE
    } else {
        "application/json"
    };
    r.headers_mut()
        .insert("content-type", HeaderValue::from_static(content_type));
    if let Ok(v) = HeaderValue::from_str(&etag) {
        r.headers_mut().insert("etag", v);
    }
    Ok(r)
}

pub async fn usage(
    State(s): State<AppState>,
    Extension(caller): Extension<GatewayCaller>,
    Path(service_id): Path<String>,
    RawBody(body): RawBody,
) -> ApiResult<Json<UsageAck>> {
    caller.check_scope(&s.pool, &service_id).await?;
    fetch_service(&s.pool, &service_id).await?;
    let report: UsageReport = super::extract::parse(&body)?;
    if report.gateway.is_empty() || report.gateway.len() > 128 {
        return Err(ApiError::invalid(
            "gateway",
            "invalid_gateway",
            "1-128 characters",
        ));
    }
    if report
        .instance
        .as_deref()
        .is_some_and(|i| i.is_empty() || i.len() > 128)
    {
        return Err(ApiError::invalid(
            "instance",
            "invalid_instance",
            "1-128 characters",
        ));
    }
    if report.entries.len() > MAX_REPORT_ENTRIES {
        return Err(ApiError::invalid(
            "entries",
            "too_many_entries",
            format!("at most {MAX_REPORT_ENTRIES} per report"),
        ));
    }
    let sequence = i64::try_from(report.sequence)
        .map_err(|_| ApiError::invalid("sequence", "invalid_sequence", "too large"))?;
    let t = now();
    let oldest = t - MAX_REPORT_AGE_SECS;
    for (i, e) in report.entries.iter().enumerate() {
        if e.bucket_start % 60 != 0
            || e.bucket_start < oldest
            || e.bucket_start > t + MAX_CLOCK_SKEW_SECS
        {
            return Err(ApiError::invalid(
                format!("entries[{i}].bucket_start"),
                "invalid_bucket",
                "a recent minute boundary",
            ));
        }
        if e.delta == 0 || e.delta > MAX_COUNTER_DELTA_PER_REPORT {
            return Err(ApiError::invalid(
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
            return Err(ApiError::invalid(
                format!("entries[{i}].delta"),
                "counter_delta_too_large",
                format!(
                    "at most {MAX_COUNTER_DELTA_PER_REPORT} per application, metric and minute in one report"
                ),
            ));
        }
    }
    drop(per_counter);
    let gateway_id = caller.namespaced(&report.gateway);
    let instance = report.instance.as_deref().map(|i| caller.namespaced(i));
    // name -> id for the service's metrics; application ids must belong to the service.
    let metrics: HashMap<String, String> =
        super::services::metric_ids(&s.pool, &service_id).await?;
    let mut tx = s.pool.begin().await?;
    // Which of the report's applications belong to the service (only those, not all of them).
    let mut wanted: Vec<&str> = report
        .entries
        .iter()
        .map(|e| e.application.as_str())
        .collect();
    wanted.sort_unstable();
    wanted.dedup();
    let mut apps: std::collections::HashSet<String> =
        std::collections::HashSet::with_capacity(wanted.len());
    for chunk in wanted.chunks(LOOKUP_CHUNK) {
        let placeholders: Vec<String> = (0..chunk.len()).map(|i| format!("${}", i + 2)).collect();
        let sql = format!(
            "SELECT a.id FROM applications a JOIN plans p ON p.id = a.plan_id WHERE p.service_id = $1 AND a.id IN ({})",
            placeholders.join(", ")
        );
        let mut q = sqlx::query_as::<_, (String,)>(&sql)
            .persistent(false)
            .bind(&service_id);
        for id in chunk {
            q = q.bind(*id);
        }
        apps.extend(q.fetch_all(&mut *tx).await?.into_iter().map(|(a,)| a));
        // Applications of services outside the token's scope: the whole report is refused (a
        // token never counts usage on another customer's applications). Unknown ids (deleted
        // applications a stale snapshot still had) are only ignored.
        let sql = format!(
            "SELECT a.id FROM applications a JOIN plans p ON p.id = a.plan_id WHERE a.id IN ({}) \
             AND p.service_id NOT IN (SELECT service_id FROM gateway_token_services WHERE token_id = $1) ORDER BY a.id LIMIT 1",
            placeholders.join(", ")
        );
        let mut q = sqlx::query_as::<_, (String,)>(&sql)
            .persistent(false)
            .bind(&caller.token_id);
        for id in chunk {
            q = q.bind(*id);
        }
        if let Some((outside,)) = q.fetch_optional(&mut *tx).await? {
            let i = report
                .entries
                .iter()
                .position(|e| e.application == outside)
                .unwrap_or(0);
            return Err(ApiError::invalid(
                format!("entries[{i}].application"),
                "application_out_of_scope",
                "an application of a service this gateway token is not scoped to; nothing was recorded",
            ));
        }
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
            return Ok(Json(UsageAck {
                duplicate: true,
                accepted: 0,
                ignored: 0,
            }))
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
                *hours
                    .entry((e.application.as_str(), metric_id.as_str(), hour))
                    .or_default() += e.delta as i64;
                *minutes
                    .entry((e.application.as_str(), metric_id.as_str(), e.bucket_start))
                    .or_default() += e.delta as i64;
                accepted += 1;
            }
            _ => ignored += 1,
        }
    }
    add_counts(&mut tx, "usage_counters", None, &hours).await?;
    if let Some(instance) = instance.as_deref() {
        add_counts(&mut tx, "usage_instance_hours", Some(instance), &hours).await?;
        add_counts(&mut tx, "usage_instance_minutes", Some(instance), &minutes).await?;
    }
    tx.commit().await?;
    // Forget report ids long after any retry could come, and per-instance minutes past any minute
    // window (bounded tables); every 1,000th report.
    if report.sequence.is_multiple_of(1_000) {
        let _ = sqlx::query("DELETE FROM usage_instance_minutes WHERE bucket_start < $1")
            .bind(now() - INSTANCE_MINUTES_KEPT_SECS)
            .execute(&s.pool)
            .await;
        let _ = sqlx::query("DELETE FROM usage_reports WHERE received_at < $1")
            .bind(now() - 4 * MAX_REPORT_AGE_SECS)
            .execute(&s.pool)
            .await;
    }
    Ok(Json(UsageAck {
        duplicate: false,
        accepted,
        ignored,
    }))
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GlobalUsageParams {
    /// The asking gateway instance: its own usage is left out.
    instance: String,
}

/// `GET /gateway/v1/services/{id}/global_usage?instance=<id>`: usage admitted by all *other*
/// instances in the current window of every period the service's plans limit. A gateway adds it to
/// its own counts, so a quota holds across gateways within (instances x rate x (flush + poll)).
pub async fn global_usage(
    State(s): State<AppState>,
    Extension(caller): Extension<GatewayCaller>,
    Path(service_id): Path<String>,
    ApiQuery(p): ApiQuery<GlobalUsageParams>,
) -> ApiResult<Json<tollgate_protocol::GlobalUsage>> {
    caller.check_scope(&s.pool, &service_id).await?;
    fetch_service(&s.pool, &service_id).await?;
    // Instances are stored in the reporting token's namespace (see [`usage`]).
    let own_instance = caller.namespaced(&p.instance);
    let periods: Vec<(String,)> = sqlx::query_as(
        "SELECT DISTINCT l.period FROM plan_limits l JOIN plans p ON p.id = l.plan_id WHERE p.service_id = $1",
    )
    .bind(&service_id)
    .fetch_all(&s.pool)
    .await?;
    let t = now();
    let mut entries = Vec::new();
    for period in periods.iter().filter_map(|(p,)| parse_period(p)) {
        let window = tollgate_rules::periods::window(period, t);
        let (table, condition) = if period == Period::Minute {
            ("usage_instance_minutes", "u.bucket_start = $3")
        } else {
            // Every longer window starts on an hour: a sum of hourly rows.
            ("usage_instance_hours", "u.bucket_start >= $3")
        };
        let sql = format!(
            "SELECT a.id, m.name, CAST(SUM(u.value) AS BIGINT) FROM {table} u JOIN applications a ON a.id = u.application_id \
             JOIN plans p ON p.id = a.plan_id JOIN metrics m ON m.id = u.metric_id \
             WHERE p.service_id = $1 AND u.instance <> $2 AND {condition} GROUP BY a.id, m.name"
        );
        let rows: Vec<(String, String, i64)> = sqlx::query_as(&sql)
            .bind(&service_id)
            .bind(&own_instance)
            .bind(window.start)
            .fetch_all(&s.pool)
            .await?;
        entries.extend(
            rows.into_iter()
                .filter(|r| r.2 > 0)
                .map(
                    |(application, metric, value)| tollgate_protocol::GlobalUsageEntry {
                        application,
                        metric,
                        period,
                        window_start: window.start,
                        value: value as u64,
                    },
                ),
        );
    }
    Ok(Json(tollgate_protocol::GlobalUsage { entries }))
}
