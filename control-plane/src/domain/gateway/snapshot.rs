//! The snapshot of one service as the gateway filter reads it: plans with their limits, metrics,
//! mapping rules, and applications with the SHA-256 of their live keys.
//!
//! Snapshot versions: `"<catalog revision>.<expired keys>"`. The revision is bumped by every
//! write that changes what gateways see ([`crate::domain::catalog::revision::bump`]); the second
//! part counts keys whose rotation grace has run out, so a key expiring with no write still
//! changes the version. A gateway sends its version in `If-None-Match` and gets 304 while nothing
//! changed.

use std::collections::HashMap;

use tollgate_protocol::{
    Application, ApplicationState, Limit, MappingRule, Metric, Period, Plan, Snapshot,
    SuspensionReason,
};

use crate::domain::catalog::revision;
use crate::domain::{DomainError, DomainResult};
use crate::store::{now, Pool};

#[derive(sqlx::FromRow)]
struct CountRow {
    n: i64,
}

/// The current snapshot version (see the module's documentation).
pub async fn version(pool: &Pool) -> DomainResult<String> {
    let revision = revision::current(pool).await?;
    let expired: CountRow = sqlx::query_as(
        "SELECT COUNT(*) AS n FROM application_keys WHERE expires_at IS NOT NULL AND expires_at <= $1",
    )
    .bind(now())
    .fetch_one(pool)
    .await?;
    Ok(format!("{revision}.{}", expired.n))
}

/// A metric of the service, with its parent's name when it is a method.
#[derive(sqlx::FromRow)]
struct MetricRow {
    name: String,
    parent: Option<String>,
}

#[derive(sqlx::FromRow)]
struct MappingRuleRow {
    http_method: String,
    pattern: String,
    metric: String,
    delta: i64,
    is_last: i64,
}

#[derive(sqlx::FromRow)]
struct PlanIdRow {
    id: String,
}

#[derive(sqlx::FromRow)]
struct LimitRow {
    plan_id: String,
    metric: String,
    period: String,
    limit_value: i64,
}

/// One application with one of its live keys (none: `key_sha256` is NULL).
#[derive(sqlx::FromRow)]
struct ApplicationKeyRow {
    id: String,
    plan_id: String,
    state: String,
    state_reason: Option<String>,
    key_sha256: Option<String>,
    app_id: Option<String>,
}

/// One app key of an application of the service.
#[derive(sqlx::FromRow)]
struct AppKeyRow {
    application_id: String,
    key_sha256: String,
}

/// A stored limit period (`minute`, `hour`, ...); another value is a corrupt row, not a guess.
pub fn stored_period(s: &str) -> DomainResult<Period> {
    Period::ALL
        .into_iter()
        .find(|p| p.as_str() == s)
        .ok_or_else(|| DomainError::Internal(format!("stored limit period {s:?} is not a period")))
}

fn stored_state(s: &str) -> DomainResult<ApplicationState> {
    match s {
        "live" => Ok(ApplicationState::Live),
        "suspended" => Ok(ApplicationState::Suspended),
        other => Err(DomainError::Internal(format!(
            "stored application state {other:?} is neither live nor suspended"
        ))),
    }
}

fn stored_reason(s: &str) -> DomainResult<SuspensionReason> {
    match s {
        "admin" => Ok(SuspensionReason::Admin),
        "non_payment" => Ok(SuspensionReason::NonPayment),
        other => Err(DomainError::Internal(format!(
            "stored suspension reason {other:?} is neither admin nor non_payment"
        ))),
    }
}

impl TryFrom<LimitRow> for (String, Limit) {
    type Error = DomainError;

    fn try_from(r: LimitRow) -> DomainResult<(String, Limit)> {
        Ok((
            r.plan_id,
            Limit {
                metric: r.metric,
                period: stored_period(&r.period)?,
                value: r.limit_value.max(0) as u64,
            },
        ))
    }
}

impl From<MappingRuleRow> for MappingRule {
    fn from(r: MappingRuleRow) -> MappingRule {
        MappingRule {
            method: r.http_method,
            pattern: r.pattern,
            metric: r.metric,
            delta: r.delta.max(1) as u64,
            last: r.is_last != 0,
        }
    }
}

/// Builds the snapshot of one service at `version`.
pub async fn build(pool: &Pool, service_id: &str, version: String) -> DomainResult<Snapshot> {
    let metric_rows: Vec<MetricRow> = sqlx::query_as(
        "SELECT m.name AS name, p.name AS parent FROM metrics m LEFT JOIN metrics p ON p.id = m.parent_id \
         WHERE m.service_id = $1 ORDER BY m.id",
    )
    .bind(service_id)
    .fetch_all(pool)
    .await?;
    let metrics = metric_rows
        .into_iter()
        .map(|r| Metric {
            name: r.name,
            parent: r.parent,
        })
        .collect();
    let rules: Vec<MappingRuleRow> = sqlx::query_as(
        "SELECT r.http_method AS http_method, r.pattern AS pattern, m.name AS metric, r.delta AS delta, \
         r.is_last AS is_last FROM mapping_rules r JOIN metrics m ON m.id = r.metric_id \
         WHERE r.service_id = $1 ORDER BY r.id",
    )
    .bind(service_id)
    .fetch_all(pool)
    .await?;
    let mapping_rules = rules.into_iter().map(MappingRule::from).collect();
    let plan_ids: Vec<PlanIdRow> =
        sqlx::query_as("SELECT id FROM plans WHERE service_id = $1 ORDER BY id")
            .bind(service_id)
            .fetch_all(pool)
            .await?;
    let limit_rows: Vec<LimitRow> = sqlx::query_as(
        "SELECT l.plan_id AS plan_id, m.name AS metric, l.period AS period, l.limit_value AS limit_value \
         FROM plan_limits l JOIN plans p ON p.id = l.plan_id \
         JOIN metrics m ON m.id = l.metric_id WHERE p.service_id = $1",
    )
    .bind(service_id)
    .fetch_all(pool)
    .await?;
    let mut limits: HashMap<String, Vec<Limit>> = HashMap::new();
    for row in limit_rows {
        let (plan, limit) = <(String, Limit)>::try_from(row)?;
        limits.entry(plan).or_default().push(limit);
    }
    let plans = plan_ids
        .into_iter()
        .map(|r| Plan {
            limits: limits.remove(&r.id).unwrap_or_default(),
            id: r.id,
            name: None,
            credit_prices: Vec::new(),
        })
        .collect();
    Ok(Snapshot {
        version: Some(version),
        plans,
        applications: applications(pool, service_id).await?,
        metrics,
        mapping_rules,
        wallets: Vec::new(),
        top_up_url: None,
    })
}

/// The service's applications with their live keys, in one pass over applications joined with
/// keys (ordered by application): no map from application to keys; 100,000 applications is the
/// design point. App keys come in a second query, mapped only for the applications that have
/// them (3scale-style applications with an `app_id`).
async fn applications(pool: &Pool, service_id: &str) -> DomainResult<Vec<Application>> {
    let app_key_rows: Vec<AppKeyRow> = sqlx::query_as(
        "SELECT k.application_id AS application_id, k.key_sha256 AS key_sha256 \
         FROM application_app_keys k JOIN applications a ON a.id = k.application_id \
         JOIN plans p ON p.id = a.plan_id WHERE p.service_id = $1 ORDER BY k.id",
    )
    .bind(service_id)
    .fetch_all(pool)
    .await?;
    let mut app_keys: HashMap<String, Vec<String>> = HashMap::new();
    for r in app_key_rows {
        app_keys
            .entry(r.application_id)
            .or_default()
            .push(r.key_sha256);
    }
    let rows: Vec<ApplicationKeyRow> = sqlx::query_as(
        "SELECT a.id AS id, a.plan_id AS plan_id, a.state AS state, a.state_reason AS state_reason, \
         k.key_sha256 AS key_sha256, a.app_id AS app_id FROM applications a JOIN plans p ON p.id = a.plan_id \
         LEFT JOIN application_keys k ON k.application_id = a.id AND (k.expires_at IS NULL OR k.expires_at > $2) \
         WHERE p.service_id = $1 ORDER BY a.id, k.id",
    )
    .bind(service_id)
    .bind(now())
    .fetch_all(pool)
    .await?;
    let mut applications: Vec<Application> = Vec::with_capacity(rows.len());
    for row in rows {
        if applications.last().is_none_or(|a| a.id != row.id) {
            applications.push(Application {
                state: stored_state(&row.state)?,
                state_reason: row.state_reason.as_deref().map(stored_reason).transpose()?,
                // App keys travel only with an app_id (without one they could open nothing).
                app_key_sha256: match row.app_id {
                    Some(_) => app_keys.remove(&row.id).unwrap_or_default(),
                    None => Vec::new(),
                },
                id: row.id,
                plan: row.plan_id,
                key_sha256: Vec::new(),
                app_id: row.app_id,
            });
        }
        if let (Some(digest), Some(app)) = (row.key_sha256, applications.last_mut()) {
            app.key_sha256.push(digest);
        }
    }
    Ok(applications)
}
