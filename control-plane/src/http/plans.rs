//! Plans: fees, trial, limits and pricing rules. A plan's limits and pricing rules are written
//! whole: creating or patching them replaces the set, validated before anything is written.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;
use serde::Deserialize;
use serde_json::{json, Value};

use super::error::{ApiError, ApiResult};
use super::extract::{ApiQuery, JsonBody};
use super::list::{page, Page};
use super::services::{fetch_service, metric_ids};
use super::AppState;
use crate::domain::catalog::{
    check_limits, check_money, check_name, check_pricing_rules, check_trial_days, LimitInput,
    PricingModel, PricingRuleInput,
};
use crate::money::format_amount;
use crate::secrets::new_id;
use crate::store::{now, Pool, Tx};

/// (id, service_id, name, state, setup_fee, fixed_fee, trial_days, parent_plan_id, created_at, updated_at)
pub type PlanRow = (
    String,
    String,
    String,
    String,
    String,
    String,
    i64,
    Option<String>,
    i64,
    i64,
);

/// (metric name or id, model, from, to, unit_price, package_size)
type PricingRow = (String, String, i64, Option<i64>, String, Option<i64>);

const PLAN_SELECT: &str =
    "SELECT id, service_id, name, state, setup_fee, fixed_fee, trial_days, parent_plan_id, created_at, updated_at FROM plans";

pub async fn fetch_plan(pool: &Pool, id: &str) -> ApiResult<PlanRow> {
    sqlx::query_as(&format!("{PLAN_SELECT} WHERE id = $1"))
        .bind(id)
        .fetch_optional(pool)
        .await?
        .ok_or_else(|| ApiError::not_found("plan", id))
}

/// The full plan object, with its limits and pricing rules.
pub async fn plan_json(pool: &Pool, p: &PlanRow) -> ApiResult<Value> {
    let mut one = plans_json(pool, std::slice::from_ref(p)).await?;
    one.pop()
        .ok_or_else(|| ApiError::Internal("plan vanished while rendering".into()))
}

/// Full plan objects for a page of plans: two queries for all their limits and pricing rules,
/// not two per plan.
pub async fn plans_json(pool: &Pool, plans: &[PlanRow]) -> ApiResult<Vec<Value>> {
    if plans.is_empty() {
        return Ok(Vec::new());
    }
    let placeholders = (1..=plans.len())
        .map(|i| format!("${i}"))
        .collect::<Vec<_>>()
        .join(", ");
    let limits_sql = format!(
        "SELECT l.plan_id, m.name, l.period, l.limit_value FROM plan_limits l JOIN metrics m ON m.id = l.metric_id \
         WHERE l.plan_id IN ({placeholders}) ORDER BY m.name, l.period"
    );
    let mut q = sqlx::query_as::<_, (String, String, String, i64)>(&limits_sql);
    for p in plans {
        q = q.bind(&p.0);
    }
    let limits = q.fetch_all(pool).await?;
    let rules_sql = format!(
        "SELECT r.plan_id, m.name, r.model, r.range_from, r.range_to, r.unit_price, r.package_size FROM pricing_rules r \
         JOIN metrics m ON m.id = r.metric_id WHERE r.plan_id IN ({placeholders}) ORDER BY m.name, r.range_from"
    );
    let mut q = sqlx::query_as::<_, PlanPricingRow>(&rules_sql);
    for p in plans {
        q = q.bind(&p.0);
    }
    let rules = q.fetch_all(pool).await?;
    Ok(plans
        .iter()
        .map(|p| {
            json!({
                "object": "plan", "id": p.0, "service_id": p.1, "name": p.2, "state": p.3,
                "setup_fee": p.4, "fixed_fee": p.5, "trial_days": p.6, "custom": p.7.is_some(), "parent_plan_id": p.7,
                "created_at": p.8, "updated_at": p.9,
                "limits": limits.iter().filter(|l| l.0 == p.0)
                    .map(|(_, m, period, v)| json!({"metric": m, "period": period, "value": v})).collect::<Vec<_>>(),
                "pricing_rules": rules.iter().filter(|r| r.0 == p.0).map(|(_, m, model, from, to, price, pkg)| {
                    let mut r = json!({"metric": m, "model": model, "from": from, "to": to, "unit_price": price});
                    if let Some(n) = pkg { r["package_size"] = json!(n); }
                    r
                }).collect::<Vec<_>>(),
            })
        })
        .collect())
}

/// (plan id, metric name, model, from, to, unit_price, package_size)
type PlanPricingRow = (
    String,
    String,
    String,
    i64,
    Option<i64>,
    String,
    Option<i64>,
);

#[derive(Clone, Copy, Debug, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum PlanState {
    Hidden,
    Published,
}

impl PlanState {
    fn as_str(self) -> &'static str {
        match self {
            PlanState::Hidden => "hidden",
            PlanState::Published => "published",
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PlanInput {
    service_id: Option<String>,
    name: Option<String>,
    state: Option<PlanState>,
    setup_fee: Option<String>,
    fixed_fee: Option<String>,
    trial_days: Option<i64>,
    limits: Option<Vec<LimitInput>>,
    pricing_rules: Option<Vec<PricingRuleInput>>,
}

/// Replaces a plan's limits and pricing rules (already validated) inside `tx`.
async fn write_rules(
    tx: &mut Tx,
    plan_id: &str,
    limits: Option<&[(String, LimitInput)]>,
    rules: Option<&[crate::domain::catalog::PricingRule]>,
) -> ApiResult<()> {
    if let Some(limits) = limits {
        sqlx::query("DELETE FROM plan_limits WHERE plan_id = $1")
            .bind(plan_id)
            .execute(&mut **tx)
            .await?;
        for (metric_id, l) in limits {
            sqlx::query("INSERT INTO plan_limits (plan_id, metric_id, period, limit_value) VALUES ($1, $2, $3, $4)")
                .bind(plan_id)
                .bind(metric_id)
                .bind(l.period.as_str())
                .bind(i64::try_from(l.value).unwrap_or(i64::MAX))
                .execute(&mut **tx)
                .await?;
        }
    }
    if let Some(rules) = rules {
        sqlx::query("DELETE FROM pricing_rules WHERE plan_id = $1")
            .bind(plan_id)
            .execute(&mut **tx)
            .await?;
        for r in rules {
            let as_i64 = |v: u64| i64::try_from(v).unwrap_or(i64::MAX);
            sqlx::query(
                "INSERT INTO pricing_rules (id, plan_id, metric_id, model, range_from, range_to, unit_price, package_size) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
            )
            .bind(new_id("pr"))
            .bind(plan_id)
            .bind(&r.metric_id)
            .bind(r.model.as_str())
            .bind(as_i64(r.from))
            .bind(r.to.map(as_i64))
            .bind(format_amount(r.unit_price))
            .bind(r.package_size.map(as_i64))
            .execute(&mut **tx)
            .await?;
        }
    }
    Ok(())
}

pub async fn create(
    State(s): State<AppState>,
    JsonBody(input): JsonBody<PlanInput>,
) -> ApiResult<(StatusCode, Json<Value>)> {
    let service_id = input.service_id.ok_or_else(|| {
        ApiError::invalid("service_id", "missing_field", "service_id is required")
    })?;
    fetch_service(&s.pool, &service_id).await.map_err(|_| {
        ApiError::invalid(
            "service_id",
            "unknown_service",
            format!("no service with id {service_id:?}"),
        )
    })?;
    let name = check_name("name", input.name.as_deref().unwrap_or(""))?;
    let setup_fee = check_money("setup_fee", input.setup_fee.as_deref().unwrap_or("0"))?;
    let fixed_fee = check_money("fixed_fee", input.fixed_fee.as_deref().unwrap_or("0"))?;
    let trial_days = check_trial_days(input.trial_days.unwrap_or(0))?;
    let metrics = metric_ids(&s.pool, &service_id).await?;
    let limits = check_limits(input.limits.as_deref().unwrap_or(&[]), &metrics)?;
    let rules = check_pricing_rules(input.pricing_rules.as_deref().unwrap_or(&[]), &metrics)?;
    let id = new_id("plan");
    let t = now();
    let mut tx = s.pool.begin().await?;
    sqlx::query(
        "INSERT INTO plans (id, service_id, name, state, setup_fee, fixed_fee, trial_days, parent_plan_id, created_at, updated_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, NULL, $8, $8)",
    )
    .bind(&id)
    .bind(&service_id)
    .bind(&name)
    .bind(input.state.unwrap_or(PlanState::Hidden).as_str())
    .bind(format_amount(setup_fee))
    .bind(format_amount(fixed_fee))
    .bind(trial_days)
    .bind(t)
    .execute(&mut *tx)
    .await?;
    write_rules(&mut tx, &id, Some(&limits), Some(&rules)).await?;
    tx.commit().await?;
    let plan = fetch_plan(&s.pool, &id).await?;
    Ok((StatusCode::CREATED, Json(plan_json(&s.pool, &plan).await?)))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PlanListParams {
    limit: Option<i64>,
    starting_after: Option<String>,
    service_id: Option<String>,
}

pub async fn list(
    State(s): State<AppState>,
    ApiQuery(p): ApiQuery<PlanListParams>,
) -> ApiResult<Json<Page<Value>>> {
    let lp = super::list::ListParams {
        limit: p.limit,
        starting_after: p.starting_after,
    };
    let limit = lp.limit()?;
    let rows: Vec<PlanRow> = sqlx::query_as(&format!(
        "{PLAN_SELECT} WHERE id > $1 AND ($2 = '' OR service_id = $2) ORDER BY id LIMIT $3"
    ))
    .bind(lp.after())
    .bind(p.service_id.unwrap_or_default())
    .bind(limit + 1)
    .fetch_all(&s.pool)
    .await?;
    let pg = page(rows, limit, |r| &r.0);
    let data = plans_json(&s.pool, &pg.data).await?;
    Ok(Json(pg.with_data(data)))
}

pub async fn get(State(s): State<AppState>, Path(id): Path<String>) -> ApiResult<Json<Value>> {
    let plan = fetch_plan(&s.pool, &id).await?;
    Ok(Json(plan_json(&s.pool, &plan).await?))
}

pub async fn update(
    State(s): State<AppState>,
    Path(id): Path<String>,
    JsonBody(input): JsonBody<PlanInput>,
) -> ApiResult<Json<Value>> {
    let plan = fetch_plan(&s.pool, &id).await?;
    if input.service_id.as_ref().is_some_and(|sid| *sid != plan.1) {
        return Err(ApiError::invalid(
            "service_id",
            "immutable",
            "a plan cannot move to another service",
        ));
    }
    // Validate everything first: nothing is written unless all of it is valid.
    let name = input
        .name
        .as_deref()
        .map(|n| check_name("name", n))
        .transpose()?;
    let setup_fee = input
        .setup_fee
        .as_deref()
        .map(|v| check_money("setup_fee", v))
        .transpose()?;
    let fixed_fee = input
        .fixed_fee
        .as_deref()
        .map(|v| check_money("fixed_fee", v))
        .transpose()?;
    let trial_days = input.trial_days.map(check_trial_days).transpose()?;
    let metrics = metric_ids(&s.pool, &plan.1).await?;
    let limits = input
        .limits
        .as_deref()
        .map(|l| check_limits(l, &metrics))
        .transpose()?;
    let rules = input
        .pricing_rules
        .as_deref()
        .map(|r| check_pricing_rules(r, &metrics))
        .transpose()?;
    let mut tx = s.pool.begin().await?;
    sqlx::query(
        "UPDATE plans SET name = $2, state = $3, setup_fee = $4, fixed_fee = $5, trial_days = $6, updated_at = $7 WHERE id = $1",
    )
    .bind(&id)
    .bind(name.unwrap_or(plan.2))
    .bind(input.state.map_or(plan.3, |st| st.as_str().to_string()))
    .bind(setup_fee.map_or(plan.4, format_amount))
    .bind(fixed_fee.map_or(plan.5, format_amount))
    .bind(trial_days.unwrap_or(plan.6))
    .bind(now())
    .execute(&mut *tx)
    .await?;
    write_rules(&mut tx, &id, limits.as_deref(), rules.as_deref()).await?;
    tx.commit().await?;
    let plan = fetch_plan(&s.pool, &id).await?;
    Ok(Json(plan_json(&s.pool, &plan).await?))
}

pub async fn remove(State(s): State<AppState>, Path(id): Path<String>) -> ApiResult<Json<Value>> {
    fetch_plan(&s.pool, &id).await?;
    let mut tx = s.pool.begin().await?;
    let (apps,): (i64,) = sqlx::query_as("SELECT COUNT(*) FROM applications WHERE plan_id = $1")
        .bind(&id)
        .fetch_one(&mut *tx)
        .await?;
    if apps > 0 {
        return Err(ApiError::conflict(
            "plan_in_use",
            format!("{apps} application(s) use this plan; move them first"),
        ));
    }
    let (contracts,): (i64,) = sqlx::query_as("SELECT COUNT(*) FROM contracts WHERE plan_id = $1")
        .bind(&id)
        .fetch_one(&mut *tx)
        .await?;
    if contracts > 0 {
        return Err(ApiError::conflict(
            "plan_has_billing_history",
            "applications were billed on this plan; it is kept for their invoices",
        ));
    }
    let (children,): (i64,) =
        sqlx::query_as("SELECT COUNT(*) FROM plans WHERE parent_plan_id = $1")
            .bind(&id)
            .fetch_one(&mut *tx)
            .await?;
    if children > 0 {
        return Err(ApiError::conflict(
            "plan_in_use",
            "customized copies of this plan exist",
        ));
    }
    for sql in [
        "DELETE FROM plan_limits WHERE plan_id = $1",
        "DELETE FROM pricing_rules WHERE plan_id = $1",
        "DELETE FROM plans WHERE id = $1",
    ] {
        sqlx::query(sql).bind(&id).execute(&mut *tx).await?;
    }
    tx.commit().await?;
    Ok(Json(json!({"object": "plan", "id": id, "deleted": true})))
}

/// Copies `plan_id` (limits and pricing rules included) as a hidden plan customized for one
/// application; returns the new plan's id.
pub async fn copy_plan(tx: &mut Tx, plan: &PlanRow, name: &str) -> ApiResult<String> {
    let id = new_id("plan");
    let t = now();
    sqlx::query(
        "INSERT INTO plans (id, service_id, name, state, setup_fee, fixed_fee, trial_days, parent_plan_id, created_at, updated_at) \
         VALUES ($1, $2, $3, 'hidden', $4, $5, $6, $7, $8, $8)",
    )
    .bind(&id)
    .bind(&plan.1)
    .bind(name)
    .bind(&plan.4)
    .bind(&plan.5)
    .bind(plan.6)
    .bind(&plan.0)
    .bind(t)
    .execute(&mut **tx)
    .await?;
    sqlx::query("INSERT INTO plan_limits (plan_id, metric_id, period, limit_value) SELECT $1, metric_id, period, limit_value FROM plan_limits WHERE plan_id = $2")
        .bind(&id)
        .bind(&plan.0)
        .execute(&mut **tx)
        .await?;
    let rules: Vec<PricingRow> =
        sqlx::query_as("SELECT metric_id, model, range_from, range_to, unit_price, package_size FROM pricing_rules WHERE plan_id = $1")
            .bind(&plan.0)
            .fetch_all(&mut **tx)
            .await?;
    for (metric_id, model, from, to, price, pkg) in rules {
        sqlx::query(
            "INSERT INTO pricing_rules (id, plan_id, metric_id, model, range_from, range_to, unit_price, package_size) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
        )
        .bind(new_id("pr"))
        .bind(&id)
        .bind(metric_id)
        .bind(PricingModel::parse(&model).as_str())
        .bind(from)
        .bind(to)
        .bind(price)
        .bind(pkg)
        .execute(&mut **tx)
        .await?;
    }
    Ok(id)
}
