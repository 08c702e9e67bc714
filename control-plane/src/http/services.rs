//! Services, their metrics (methods are children of `hits`) and mapping rules.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;
use serde::Deserialize;
use serde_json::{json, Value};

use super::error::{ApiError, ApiResult};
use super::extract::{ApiQuery, JsonBody};
use super::list::{page, ListParams, Page};
use super::AppState;
use crate::domain::catalog::{check_method, check_metric_name, check_name, check_pattern};
use crate::secrets::new_id;
use crate::store::{is_unique_violation, now, Pool};

/// Mapping rules per service; each gateway evaluates them all on every request.
pub const MAX_MAPPING_RULES_PER_SERVICE: i64 = 1_000;

type ServiceRow = (String, String, i64, i64);

fn service_json(r: &ServiceRow) -> Value {
    json!({"object": "service", "id": r.0, "name": r.1, "created_at": r.2, "updated_at": r.3})
}

pub async fn fetch_service(pool: &Pool, id: &str) -> ApiResult<ServiceRow> {
    sqlx::query_as("SELECT id, name, created_at, updated_at FROM services WHERE id = $1")
        .bind(id)
        .fetch_optional(pool)
        .await?
        .ok_or_else(|| ApiError::not_found("service", id))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServiceInput {
    name: Option<String>,
}

pub async fn create(
    State(s): State<AppState>,
    JsonBody(input): JsonBody<ServiceInput>,
) -> ApiResult<(StatusCode, Json<Value>)> {
    let name = check_name("name", input.name.as_deref().unwrap_or(""))?;
    let id = new_id("svc");
    let t = now();
    let mut tx = s.pool.begin().await?;
    let inserted = sqlx::query(
        "INSERT INTO services (id, name, created_at, updated_at) VALUES ($1, $2, $3, $3)",
    )
    .bind(&id)
    .bind(&name)
    .bind(t)
    .execute(&mut *tx)
    .await;
    match inserted {
        Err(e) if is_unique_violation(&e) => {
            return Err(ApiError::Conflict {
                code: "name_taken",
                message: format!("a service named {name:?} exists"),
                param: Some("name".into()),
            })
        }
        other => {
            other?;
        }
    }
    // Every service has `hits`, the metric methods roll up into (3scale's model).
    sqlx::query("INSERT INTO metrics (id, service_id, name, unit, parent_id, created_at) VALUES ($1, $2, 'hits', 'hit', NULL, $3)")
        .bind(new_id("met"))
        .bind(&id)
        .bind(t)
        .execute(&mut *tx)
        .await?;
    tx.commit().await?;
    Ok((StatusCode::CREATED, Json(service_json(&(id, name, t, t)))))
}

pub async fn list(
    State(s): State<AppState>,
    ApiQuery(p): ApiQuery<ListParams>,
) -> ApiResult<Json<Page<Value>>> {
    let limit = p.limit()?;
    let rows: Vec<ServiceRow> = sqlx::query_as(
        "SELECT id, name, created_at, updated_at FROM services WHERE id > $1 ORDER BY id LIMIT $2",
    )
    .bind(p.after())
    .bind(limit + 1)
    .fetch_all(&s.pool)
    .await?;
    Ok(Json(page(rows, limit, |r| &r.0).map(service_json)))
}

pub async fn get(State(s): State<AppState>, Path(id): Path<String>) -> ApiResult<Json<Value>> {
    Ok(Json(service_json(&fetch_service(&s.pool, &id).await?)))
}

pub async fn update(
    State(s): State<AppState>,
    Path(id): Path<String>,
    JsonBody(input): JsonBody<ServiceInput>,
) -> ApiResult<Json<Value>> {
    fetch_service(&s.pool, &id).await?;
    if let Some(name) = input.name {
        let name = check_name("name", &name)?;
        let r = sqlx::query("UPDATE services SET name = $2, updated_at = $3 WHERE id = $1")
            .bind(&id)
            .bind(&name)
            .bind(now())
            .execute(&s.pool)
            .await;
        if let Err(e) = &r {
            if is_unique_violation(e) {
                return Err(ApiError::Conflict {
                    code: "name_taken",
                    message: format!("a service named {name:?} exists"),
                    param: Some("name".into()),
                });
            }
        }
        r?;
    }
    Ok(Json(service_json(&fetch_service(&s.pool, &id).await?)))
}

pub async fn remove(State(s): State<AppState>, Path(id): Path<String>) -> ApiResult<Json<Value>> {
    fetch_service(&s.pool, &id).await?;
    let mut tx = s.pool.begin().await?;
    let (plans,): (i64,) = sqlx::query_as("SELECT COUNT(*) FROM plans WHERE service_id = $1")
        .bind(&id)
        .fetch_one(&mut *tx)
        .await?;
    if plans > 0 {
        return Err(ApiError::conflict(
            "service_in_use",
            format!("the service has {plans} plan(s); delete them first"),
        ));
    }
    for sql in [
        "DELETE FROM mapping_rules WHERE service_id = $1",
        "DELETE FROM metrics WHERE service_id = $1 AND parent_id IS NOT NULL",
        "DELETE FROM metrics WHERE service_id = $1",
        "DELETE FROM services WHERE id = $1",
    ] {
        sqlx::query(sql).bind(&id).execute(&mut *tx).await?;
    }
    tx.commit().await?;
    Ok(Json(
        json!({"object": "service", "id": id, "deleted": true}),
    ))
}

// ---- metrics ----

/// (id, service_id, name, unit, parent name, created_at)
type MetricRow = (String, String, String, String, Option<String>, i64);

const METRIC_SELECT: &str = "SELECT m.id, m.service_id, m.name, m.unit, p.name, m.created_at FROM metrics m LEFT JOIN metrics p ON p.id = m.parent_id";

fn metric_json(r: &MetricRow) -> Value {
    json!({"object": "metric", "id": r.0, "service_id": r.1, "name": r.2, "unit": r.3, "parent": r.4, "created_at": r.5})
}

async fn fetch_metric(pool: &Pool, service_id: &str, metric_id: &str) -> ApiResult<MetricRow> {
    sqlx::query_as(&format!(
        "{METRIC_SELECT} WHERE m.service_id = $1 AND m.id = $2"
    ))
    .bind(service_id)
    .bind(metric_id)
    .fetch_optional(pool)
    .await?
    .ok_or_else(|| ApiError::not_found("metric", metric_id))
}

/// name -> id of every metric of a service.
pub async fn metric_ids(
    pool: &Pool,
    service_id: &str,
) -> ApiResult<std::collections::HashMap<String, String>> {
    let rows: Vec<(String, String)> =
        sqlx::query_as("SELECT name, id FROM metrics WHERE service_id = $1")
            .bind(service_id)
            .fetch_all(pool)
            .await?;
    Ok(rows.into_iter().collect())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MetricInput {
    name: Option<String>,
    unit: Option<String>,
    parent: Option<String>,
}

fn check_unit(unit: &str) -> ApiResult<String> {
    let u = unit.trim();
    if u.is_empty() || u.chars().count() > 64 {
        return Err(ApiError::invalid(
            "unit",
            "invalid_unit",
            "must be 1-64 characters, e.g. \"hit\"",
        ));
    }
    Ok(u.to_string())
}

pub async fn create_metric(
    State(s): State<AppState>,
    Path(id): Path<String>,
    JsonBody(input): JsonBody<MetricInput>,
) -> ApiResult<(StatusCode, Json<Value>)> {
    fetch_service(&s.pool, &id).await?;
    let name = input.name.unwrap_or_default();
    check_metric_name("name", &name)?;
    let unit = check_unit(input.unit.as_deref().unwrap_or("hit"))?;
    let parent_id = match input.parent.as_deref() {
        None => None,
        Some(parent) => {
            let row: Option<(String, Option<String>)> = sqlx::query_as(
                "SELECT id, parent_id FROM metrics WHERE service_id = $1 AND name = $2",
            )
            .bind(&id)
            .bind(parent)
            .fetch_optional(&s.pool)
            .await?;
            match row {
                None => {
                    return Err(ApiError::invalid(
                        "parent",
                        "unknown_metric",
                        format!("the service has no metric {parent:?}"),
                    ))
                }
                // Two levels, as in 3scale: metrics, and methods under them.
                Some((_, Some(_))) => {
                    return Err(ApiError::invalid(
                        "parent",
                        "invalid_parent",
                        "a method cannot have methods",
                    ))
                }
                Some((pid, None)) => Some(pid),
            }
        }
    };
    let metric_id = new_id("met");
    let r = sqlx::query("INSERT INTO metrics (id, service_id, name, unit, parent_id, created_at) VALUES ($1, $2, $3, $4, $5, $6)")
        .bind(&metric_id)
        .bind(&id)
        .bind(&name)
        .bind(&unit)
        .bind(&parent_id)
        .bind(now())
        .execute(&s.pool)
        .await;
    if let Err(e) = &r {
        if is_unique_violation(e) {
            return Err(ApiError::Conflict {
                code: "metric_exists",
                message: format!("the service has a metric {name:?}"),
                param: Some("name".into()),
            });
        }
    }
    r?;
    Ok((
        StatusCode::CREATED,
        Json(metric_json(&fetch_metric(&s.pool, &id, &metric_id).await?)),
    ))
}

pub async fn list_metrics(
    State(s): State<AppState>,
    Path(id): Path<String>,
    ApiQuery(p): ApiQuery<ListParams>,
) -> ApiResult<Json<Page<Value>>> {
    fetch_service(&s.pool, &id).await?;
    let limit = p.limit()?;
    let rows: Vec<MetricRow> = sqlx::query_as(&format!(
        "{METRIC_SELECT} WHERE m.service_id = $1 AND m.id > $2 ORDER BY m.id LIMIT $3"
    ))
    .bind(&id)
    .bind(p.after())
    .bind(limit + 1)
    .fetch_all(&s.pool)
    .await?;
    Ok(Json(page(rows, limit, |r| &r.0).map(metric_json)))
}

pub async fn get_metric(
    State(s): State<AppState>,
    Path((id, metric_id)): Path<(String, String)>,
) -> ApiResult<Json<Value>> {
    Ok(Json(metric_json(
        &fetch_metric(&s.pool, &id, &metric_id).await?,
    )))
}

pub async fn update_metric(
    State(s): State<AppState>,
    Path((id, metric_id)): Path<(String, String)>,
    JsonBody(input): JsonBody<MetricInput>,
) -> ApiResult<Json<Value>> {
    fetch_metric(&s.pool, &id, &metric_id).await?;
    if input.parent.is_some() {
        return Err(ApiError::invalid(
            "parent",
            "immutable",
            "a metric's parent cannot change; create a new metric",
        ));
    }
    if let Some(unit) = input.unit {
        let unit = check_unit(&unit)?;
        sqlx::query("UPDATE metrics SET unit = $2 WHERE id = $1")
            .bind(&metric_id)
            .bind(unit)
            .execute(&s.pool)
            .await?;
    }
    if let Some(name) = input.name {
        check_metric_name("name", &name)?;
        let r = sqlx::query("UPDATE metrics SET name = $2 WHERE id = $1")
            .bind(&metric_id)
            .bind(&name)
            .execute(&s.pool)
            .await;
        if let Err(e) = &r {
            if is_unique_violation(e) {
                return Err(ApiError::Conflict {
                    code: "metric_exists",
                    message: format!("the service has a metric {name:?}"),
                    param: Some("name".into()),
                });
            }
        }
        r?;
    }
    Ok(Json(metric_json(
        &fetch_metric(&s.pool, &id, &metric_id).await?,
    )))
}

pub async fn remove_metric(
    State(s): State<AppState>,
    Path((id, metric_id)): Path<(String, String)>,
) -> ApiResult<Json<Value>> {
    fetch_metric(&s.pool, &id, &metric_id).await?;
    let mut tx = s.pool.begin().await?;
    let (uses,): (i64,) = sqlx::query_as(
        "SELECT (SELECT COUNT(*) FROM plan_limits WHERE metric_id = $1) + (SELECT COUNT(*) FROM pricing_rules WHERE metric_id = $1) \
         + (SELECT COUNT(*) FROM mapping_rules WHERE metric_id = $1) + (SELECT COUNT(*) FROM metrics WHERE parent_id = $1)",
    )
    .bind(&metric_id)
    .fetch_one(&mut *tx)
    .await?;
    if uses > 0 {
        return Err(ApiError::conflict(
            "metric_in_use",
            "limits, pricing rules, mapping rules or methods use this metric",
        ));
    }
    sqlx::query("DELETE FROM metrics WHERE id = $1")
        .bind(&metric_id)
        .execute(&mut *tx)
        .await?;
    tx.commit().await?;
    Ok(Json(
        json!({"object": "metric", "id": metric_id, "deleted": true}),
    ))
}

// ---- mapping rules ----

/// (id, service_id, method, pattern, metric name, delta, is_last, created_at)
type RuleRow = (String, String, String, String, String, i64, i64, i64);

const RULE_SELECT: &str =
    "SELECT r.id, r.service_id, r.http_method, r.pattern, m.name, r.delta, r.is_last, r.created_at FROM mapping_rules r JOIN metrics m ON m.id = r.metric_id";

fn rule_json(r: &RuleRow) -> Value {
    json!({"object": "mapping_rule", "id": r.0, "service_id": r.1, "method": r.2, "pattern": r.3, "metric": r.4,
           "delta": r.5, "last": r.6 != 0, "created_at": r.7})
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RuleInput {
    method: String,
    pattern: String,
    metric: String,
    #[serde(default = "one")]
    delta: u32,
    #[serde(default)]
    last: bool,
}

fn one() -> u32 {
    1
}

pub async fn create_mapping_rule(
    State(s): State<AppState>,
    Path(id): Path<String>,
    JsonBody(input): JsonBody<RuleInput>,
) -> ApiResult<(StatusCode, Json<Value>)> {
    fetch_service(&s.pool, &id).await?;
    let method = check_method(&input.method)?;
    check_pattern(&input.pattern)?;
    if input.delta == 0 {
        return Err(ApiError::invalid(
            "delta",
            "invalid_delta",
            "must be at least 1",
        ));
    }
    let metrics = metric_ids(&s.pool, &id).await?;
    let metric_id = metrics.get(&input.metric).ok_or_else(|| {
        ApiError::invalid(
            "metric",
            "unknown_metric",
            format!("the service has no metric {:?}", input.metric),
        )
    })?;
    let (count,): (i64,) =
        sqlx::query_as("SELECT COUNT(*) FROM mapping_rules WHERE service_id = $1")
            .bind(&id)
            .fetch_one(&s.pool)
            .await?;
    if count >= MAX_MAPPING_RULES_PER_SERVICE {
        return Err(ApiError::conflict(
            "too_many_mapping_rules",
            format!("a service has at most {MAX_MAPPING_RULES_PER_SERVICE} mapping rules"),
        ));
    }
    let rule_id = new_id("mr");
    sqlx::query("INSERT INTO mapping_rules (id, service_id, http_method, pattern, metric_id, delta, is_last, created_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)")
        .bind(&rule_id)
        .bind(&id)
        .bind(&method)
        .bind(&input.pattern)
        .bind(metric_id)
        .bind(i64::from(input.delta))
        .bind(i64::from(input.last))
        .bind(now())
        .execute(&s.pool)
        .await?;
    let row: RuleRow = sqlx::query_as(&format!("{RULE_SELECT} WHERE r.id = $1"))
        .bind(&rule_id)
        .fetch_one(&s.pool)
        .await?;
    Ok((StatusCode::CREATED, Json(rule_json(&row))))
}

pub async fn list_mapping_rules(
    State(s): State<AppState>,
    Path(id): Path<String>,
    ApiQuery(p): ApiQuery<ListParams>,
) -> ApiResult<Json<Page<Value>>> {
    fetch_service(&s.pool, &id).await?;
    let limit = p.limit()?;
    let rows: Vec<RuleRow> = sqlx::query_as(&format!(
        "{RULE_SELECT} WHERE r.service_id = $1 AND r.id > $2 ORDER BY r.id LIMIT $3"
    ))
    .bind(&id)
    .bind(p.after())
    .bind(limit + 1)
    .fetch_all(&s.pool)
    .await?;
    Ok(Json(page(rows, limit, |r| &r.0).map(rule_json)))
}

pub async fn remove_mapping_rule(
    State(s): State<AppState>,
    Path((id, rule_id)): Path<(String, String)>,
) -> ApiResult<Json<Value>> {
    let r = sqlx::query("DELETE FROM mapping_rules WHERE service_id = $1 AND id = $2")
        .bind(&id)
        .bind(&rule_id)
        .execute(&s.pool)
        .await?;
    if r.rows_affected() == 0 {
        return Err(ApiError::not_found("mapping rule", rule_id));
    }
    Ok(Json(
        json!({"object": "mapping_rule", "id": rule_id, "deleted": true}),
    ))
}
