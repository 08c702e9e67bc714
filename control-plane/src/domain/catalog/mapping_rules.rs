//! Mapping rules: which requests count towards which metric, and by how much. Gateways evaluate
//! every rule of their service on every request, in id order.

use serde::{Deserialize, Serialize};

use super::metrics::metric_ids;
use super::services::get_service;
use super::{check_method, check_pattern, revision, Deleted};
use crate::domain::audit::{self, Actor, Changes, Object};
use crate::domain::page::page;
use crate::domain::{DomainError, DomainResult, Page, PageRequest};
use crate::secrets::new_id;
use crate::store::{begin_write, now, Pool};

/// Mapping rules per service; each gateway evaluates them all on every request.
pub const MAX_MAPPING_RULES_PER_SERVICE: i64 = 1_000;

/// A mapping rule as the admin API shows it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct MappingRule {
    /// Always `"mapping_rule"`.
    pub object: &'static str,
    pub id: String,
    pub service_id: String,
    /// An upper-case HTTP method, or `ANY`.
    pub method: String,
    pub pattern: String,
    /// The metric's name.
    pub metric: String,
    pub delta: i64,
    /// Whether a match stops the evaluation of later rules.
    pub last: bool,
    pub created_at: i64,
}

#[derive(sqlx::FromRow)]
struct MappingRuleRow {
    id: String,
    service_id: String,
    http_method: String,
    pattern: String,
    metric: String,
    delta: i64,
    is_last: i64,
    created_at: i64,
}

impl From<MappingRuleRow> for MappingRule {
    fn from(r: MappingRuleRow) -> Self {
        MappingRule {
            object: "mapping_rule",
            id: r.id,
            service_id: r.service_id,
            method: r.http_method,
            pattern: r.pattern,
            metric: r.metric,
            delta: r.delta,
            last: r.is_last != 0,
            created_at: r.created_at,
        }
    }
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct MappingRuleInput {
    /// An HTTP method (any case) or `ANY`.
    pub method: String,
    /// A path pattern: `/v1/search/{id}$`, optionally with a query part.
    pub pattern: String,
    /// The name of a metric of the service.
    pub metric: String,
    /// How much a matching request counts (default 1).
    #[serde(default = "one")]
    pub delta: u32,
    #[serde(default)]
    pub last: bool,
}

fn one() -> u32 {
    1
}

const RULE_SELECT: &str = "SELECT r.id AS id, r.service_id AS service_id, r.http_method AS http_method, \
     r.pattern AS pattern, m.name AS metric, r.delta AS delta, r.is_last AS is_last, r.created_at AS created_at \
     FROM mapping_rules r JOIN metrics m ON m.id = r.metric_id";

pub async fn create_mapping_rule(
    pool: &Pool,
    actor: &Actor,
    service_id: &str,
    input: &MappingRuleInput,
) -> DomainResult<MappingRule> {
    get_service(pool, service_id).await?;
    let method = check_method(&input.method)?;
    check_pattern(&input.pattern)?;
    if input.delta == 0 {
        return Err(DomainError::invalid(
            "delta",
            "invalid_delta",
            "must be at least 1",
        ));
    }
    let metrics = metric_ids(pool, service_id).await?;
    let metric_id = metrics.get(&input.metric).ok_or_else(|| {
        DomainError::invalid(
            "metric",
            "unknown_metric",
            format!("the service has no metric {:?}", input.metric),
        )
    })?;
    let mut tx = begin_write(pool).await?;
    let count: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM mapping_rules WHERE service_id = $1")
        .bind(service_id)
        .fetch_one(&mut *tx)
        .await?;
    if count >= MAX_MAPPING_RULES_PER_SERVICE {
        return Err(DomainError::conflict(
            "too_many_mapping_rules",
            format!("a service has at most {MAX_MAPPING_RULES_PER_SERVICE} mapping rules"),
        ));
    }
    let rule_id = new_id("mr");
    sqlx::query("INSERT INTO mapping_rules (id, service_id, http_method, pattern, metric_id, delta, is_last, created_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)")
        .bind(&rule_id)
        .bind(service_id)
        .bind(&method)
        .bind(&input.pattern)
        .bind(metric_id)
        .bind(i64::from(input.delta))
        .bind(i64::from(input.last))
        .bind(now())
        .execute(&mut *tx)
        .await?;
    let row: MappingRuleRow = sqlx::query_as(&format!("{RULE_SELECT} WHERE r.id = $1"))
        .bind(&rule_id)
        .fetch_one(&mut *tx)
        .await?;
    let rule = MappingRule::from(row);
    let changes = Changes::between(None, Some(&rule))?;
    let object = Object {
        kind: "mapping_rule",
        id: &rule_id,
    };
    audit::record(&mut tx, actor, "mapping_rule.created", object, &changes).await?;
    revision::bump(&mut tx).await?;
    tx.commit().await?;
    Ok(rule)
}

pub async fn list_mapping_rules(
    pool: &Pool,
    service_id: &str,
    req: &PageRequest,
) -> DomainResult<Page<MappingRule>> {
    get_service(pool, service_id).await?;
    let rows: Vec<MappingRuleRow> = sqlx::query_as(&format!(
        "{RULE_SELECT} WHERE r.service_id = $1 AND r.id > $2 ORDER BY r.id LIMIT $3"
    ))
    .bind(service_id)
    .bind(&req.after)
    .bind(req.limit + 1)
    .fetch_all(pool)
    .await?;
    let rules = rows.into_iter().map(MappingRule::from).collect();
    Ok(page(rules, req.limit, |r: &MappingRule| &r.id))
}

pub async fn delete_mapping_rule(
    pool: &Pool,
    actor: &Actor,
    service_id: &str,
    rule_id: &str,
) -> DomainResult<Deleted> {
    let mut tx = begin_write(pool).await?;
    let before: Option<MappingRuleRow> = sqlx::query_as(&format!(
        "{RULE_SELECT} WHERE r.service_id = $1 AND r.id = $2"
    ))
    .bind(service_id)
    .bind(rule_id)
    .fetch_optional(&mut *tx)
    .await?;
    let r = sqlx::query("DELETE FROM mapping_rules WHERE service_id = $1 AND id = $2")
        .bind(service_id)
        .bind(rule_id)
        .execute(&mut *tx)
        .await?;
    if r.rows_affected() == 0 {
        return Err(DomainError::not_found("mapping rule", rule_id));
    }
    let before = before.map(MappingRule::from);
    let changes = Changes::between(before.as_ref(), None)?;
    let object = Object {
        kind: "mapping_rule",
        id: rule_id,
    };
    audit::record(&mut tx, actor, "mapping_rule.deleted", object, &changes).await?;
    revision::bump(&mut tx).await?;
    tx.commit().await?;
    Ok(Deleted::new("mapping_rule", rule_id))
}
