//! Metrics of a service and their methods: two levels, as in 3scale (a method's usage also
//! counts towards its parent). Limits, pricing rules and mapping rules name them.

use std::collections::HashMap;

use serde::{Deserialize, Serialize};

use super::services::get_service;
use super::{check_metric_name, revision, Deleted};
use crate::domain::audit::{self, Actor, Changes, Object};
use crate::domain::page::page;
use crate::domain::{DomainError, DomainResult, Page, PageRequest};
use crate::secrets::new_id;
use crate::store::{begin_write, is_unique_violation, now, Pool};

/// Longest unit name (`hit`, `query`, `MB`).
pub const MAX_UNIT_CHARS: usize = 64;

/// A metric or method as the admin API shows it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct Metric {
    /// Always `"metric"`.
    pub object: &'static str,
    pub id: String,
    pub service_id: String,
    pub name: String,
    pub unit: String,
    /// The parent metric's name for a method; `null` for a metric.
    pub parent: Option<String>,
    pub created_at: i64,
}

#[derive(sqlx::FromRow)]
struct MetricRow {
    id: String,
    service_id: String,
    name: String,
    unit: String,
    parent: Option<String>,
    created_at: i64,
}

impl From<MetricRow> for Metric {
    fn from(r: MetricRow) -> Self {
        Metric {
            object: "metric",
            id: r.id,
            service_id: r.service_id,
            name: r.name,
            unit: r.unit,
            parent: r.parent,
            created_at: r.created_at,
        }
    }
}

/// Creating (`name` required, `unit` defaults to `hit`) or changing a metric (`parent` is fixed
/// at creation).
#[derive(Debug, Default, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct MetricInput {
    pub name: Option<String>,
    pub unit: Option<String>,
    /// The name of the metric this one is a method of.
    pub parent: Option<String>,
}

const METRIC_SELECT: &str = "SELECT m.id AS id, m.service_id AS service_id, m.name AS name, m.unit AS unit, \
     p.name AS parent, m.created_at AS created_at FROM metrics m LEFT JOIN metrics p ON p.id = m.parent_id";

pub async fn get_metric<'e>(
    pool: impl sqlx::Executor<'e, Database = sqlx::Any>,
    service_id: &str,
    metric_id: &str,
) -> DomainResult<Metric> {
    sqlx::query_as::<_, MetricRow>(&format!(
        "{METRIC_SELECT} WHERE m.service_id = $1 AND m.id = $2"
    ))
    .bind(service_id)
    .bind(metric_id)
    .fetch_optional(pool)
    .await?
    .map(Metric::from)
    .ok_or_else(|| DomainError::not_found("metric", metric_id))
}

pub async fn list_metrics(
    pool: &Pool,
    service_id: &str,
    req: &PageRequest,
) -> DomainResult<Page<Metric>> {
    get_service(pool, service_id).await?;
    let rows: Vec<MetricRow> = sqlx::query_as(&format!(
        "{METRIC_SELECT} WHERE m.service_id = $1 AND m.id > $2 ORDER BY m.id LIMIT $3"
    ))
    .bind(service_id)
    .bind(&req.after)
    .bind(req.limit + 1)
    .fetch_all(pool)
    .await?;
    let metrics = rows.into_iter().map(Metric::from).collect();
    Ok(page(metrics, req.limit, |m: &Metric| &m.id))
}

/// name -> id of every metric of a service.
pub async fn metric_ids(pool: &Pool, service_id: &str) -> DomainResult<HashMap<String, String>> {
    #[derive(sqlx::FromRow)]
    struct NameId {
        name: String,
        id: String,
    }
    let rows: Vec<NameId> = sqlx::query_as("SELECT name, id FROM metrics WHERE service_id = $1")
        .bind(service_id)
        .fetch_all(pool)
        .await?;
    Ok(rows.into_iter().map(|r| (r.name, r.id)).collect())
}

pub(crate) fn check_unit(unit: &str) -> DomainResult<String> {
    let u = unit.trim();
    if u.is_empty() || u.chars().count() > MAX_UNIT_CHARS {
        return Err(DomainError::invalid(
            "unit",
            "invalid_unit",
            format!("must be 1-{MAX_UNIT_CHARS} characters, e.g. \"hit\""),
        ));
    }
    Ok(u.to_string())
}

fn metric_exists(name: &str) -> DomainError {
    DomainError::Conflict {
        code: "metric_exists",
        message: format!("the service has a metric {name:?}"),
        param: Some("name".into()),
    }
}

pub async fn create_metric(
    pool: &Pool,
    actor: &Actor,
    service_id: &str,
    input: &MetricInput,
) -> DomainResult<Metric> {
    get_service(pool, service_id).await?;
    let name = input.name.clone().unwrap_or_default();
    check_metric_name("name", &name)?;
    let unit = check_unit(input.unit.as_deref().unwrap_or("hit"))?;
    let mut tx = begin_write(pool).await?;
    let parent_id = match input.parent.as_deref() {
        None => None,
        Some(parent) => {
            #[derive(sqlx::FromRow)]
            struct Parent {
                id: String,
                parent_id: Option<String>,
            }
            let row: Option<Parent> = sqlx::query_as(
                "SELECT id, parent_id FROM metrics WHERE service_id = $1 AND name = $2",
            )
            .bind(service_id)
            .bind(parent)
            .fetch_optional(&mut *tx)
            .await?;
            match row {
                None => {
                    return Err(DomainError::invalid(
                        "parent",
                        "unknown_metric",
                        format!("the service has no metric {parent:?}"),
                    ))
                }
                // Two levels, as in 3scale: metrics, and methods under them.
                Some(Parent {
                    parent_id: Some(_), ..
                }) => {
                    return Err(DomainError::invalid(
                        "parent",
                        "invalid_parent",
                        "a method cannot have methods",
                    ))
                }
                Some(Parent {
                    id,
                    parent_id: None,
                }) => Some(id),
            }
        }
    };
    let metric_id = new_id("met");
    let r = sqlx::query("INSERT INTO metrics (id, service_id, name, unit, parent_id, created_at) VALUES ($1, $2, $3, $4, $5, $6)")
        .bind(&metric_id)
        .bind(service_id)
        .bind(&name)
        .bind(&unit)
        .bind(&parent_id)
        .bind(now())
        .execute(&mut *tx)
        .await;
    match r {
        Err(e) if is_unique_violation(&e) => return Err(metric_exists(&name)),
        other => {
            other?;
        }
    }
    let after = get_metric(&mut *tx, service_id, &metric_id).await?;
    let changes = Changes::between(None, Some(&after))?;
    let object = Object {
        kind: "metric",
        id: &metric_id,
    };
    audit::record(&mut tx, actor, "metric.created", object, &changes).await?;
    revision::bump(&mut tx).await?;
    tx.commit().await?;
    Ok(after)
}

/// Renames a metric or changes its unit. Everything is checked before anything is written.
pub async fn update_metric(
    pool: &Pool,
    actor: &Actor,
    service_id: &str,
    metric_id: &str,
    input: &MetricInput,
) -> DomainResult<Metric> {
    get_metric(pool, service_id, metric_id).await?;
    if input.parent.is_some() {
        return Err(DomainError::invalid(
            "parent",
            "immutable",
            "a metric's parent cannot change; create a new metric",
        ));
    }
    let unit = input.unit.as_deref().map(check_unit).transpose()?;
    if let Some(name) = &input.name {
        check_metric_name("name", name)?;
    }
    if unit.is_none() && input.name.is_none() {
        return get_metric(pool, service_id, metric_id).await;
    }
    let mut tx = begin_write(pool).await?;
    let before = get_metric(&mut *tx, service_id, metric_id).await?;
    if let Some(unit) = unit {
        sqlx::query("UPDATE metrics SET unit = $2 WHERE id = $1")
            .bind(metric_id)
            .bind(unit)
            .execute(&mut *tx)
            .await?;
    }
    if let Some(name) = &input.name {
        let r = sqlx::query("UPDATE metrics SET name = $2 WHERE id = $1")
            .bind(metric_id)
            .bind(name)
            .execute(&mut *tx)
            .await;
        match r {
            Err(e) if is_unique_violation(&e) => return Err(metric_exists(name)),
            other => {
                other?;
            }
        }
    }
    let after = get_metric(&mut *tx, service_id, metric_id).await?;
    let changes = Changes::between(Some(&before), Some(&after))?;
    let object = Object {
        kind: "metric",
        id: metric_id,
    };
    audit::record(&mut tx, actor, "metric.updated", object, &changes).await?;
    revision::bump(&mut tx).await?;
    tx.commit().await?;
    Ok(after)
}

/// Deletes a metric nothing refers to (no limit, pricing rule, mapping rule or method).
pub async fn delete_metric(
    pool: &Pool,
    actor: &Actor,
    service_id: &str,
    metric_id: &str,
) -> DomainResult<Deleted> {
    get_metric(pool, service_id, metric_id).await?;
    let mut tx = begin_write(pool).await?;
    let before = get_metric(&mut *tx, service_id, metric_id).await?;
    let uses: i64 = sqlx::query_scalar(
        "SELECT (SELECT COUNT(*) FROM plan_limits WHERE metric_id = $1) + (SELECT COUNT(*) FROM pricing_rules WHERE metric_id = $1) \
         + (SELECT COUNT(*) FROM mapping_rules WHERE metric_id = $1) + (SELECT COUNT(*) FROM metrics WHERE parent_id = $1)",
    )
    .bind(metric_id)
    .fetch_one(&mut *tx)
    .await?;
    if uses > 0 {
        return Err(DomainError::conflict(
            "metric_in_use",
            "limits, pricing rules, mapping rules or methods use this metric",
        ));
    }
    sqlx::query("DELETE FROM metrics WHERE id = $1")
        .bind(metric_id)
        .execute(&mut *tx)
        .await?;
    let changes = Changes::between(Some(&before), None)?;
    let object = Object {
        kind: "metric",
        id: metric_id,
    };
    audit::record(&mut tx, actor, "metric.deleted", object, &changes).await?;
    revision::bump(&mut tx).await?;
    tx.commit().await?;
    Ok(Deleted::new("metric", metric_id))
}
