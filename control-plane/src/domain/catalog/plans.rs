//! Plans: fees, trial, limits and pricing rules. A plan's limits and pricing rules are written
//! whole: creating or patching them replaces the set, validated before anything is written.
//! A custom plan is a hidden copy made for one application (`parent_plan_id` names the original).

use serde::{Deserialize, Serialize};
use tollgate_protocol::Period;

use super::metrics::metric_ids;
use super::services::get_service;
use super::{
    check_limits, check_money, check_name, check_pricing_rules, check_trial_days, period_schema,
    revision, stored_period, Deleted, LimitInput, PricingModel, PricingRule, PricingRuleInput,
};
use crate::domain::audit::{self, Actor, Changes, Object};
use crate::domain::page::page;
use crate::domain::{DomainError, DomainResult, Page, PageRequest};
use crate::money::{format_amount, Amount};
use crate::secrets::new_id;
use crate::store::{begin_write, in_list, now, Pool, Tx};

/// Whether developers may sign up for a plan.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum PlanState {
    /// Only admins assign it (and every custom plan is hidden).
    #[default]
    Hidden,
    /// Offered in the developer portal.
    Published,
}

impl PlanState {
    pub fn as_str(self) -> &'static str {
        match self {
            PlanState::Hidden => "hidden",
            PlanState::Published => "published",
        }
    }

    /// A state as stored: anything else is a corrupted row.
    pub fn stored(raw: &str) -> DomainResult<PlanState> {
        [PlanState::Hidden, PlanState::Published]
            .into_iter()
            .find(|s| s.as_str() == raw)
            .ok_or_else(|| DomainError::Internal(format!("stored plan state {raw:?} is unknown")))
    }
}

/// A plan's own row, typed (without its limits and pricing rules).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PlanRecord {
    pub id: String,
    pub service_id: String,
    pub name: String,
    pub state: PlanState,
    pub setup_fee: Amount,
    pub fixed_fee: Amount,
    pub trial_days: i64,
    /// The plan this one is a customized copy of.
    pub parent_plan_id: Option<String>,
    pub created_at: i64,
    pub updated_at: i64,
}

#[derive(sqlx::FromRow)]
struct PlanRow {
    id: String,
    service_id: String,
    name: String,
    state: String,
    setup_fee: String,
    fixed_fee: String,
    trial_days: i64,
    parent_plan_id: Option<String>,
    created_at: i64,
    updated_at: i64,
}

impl TryFrom<PlanRow> for PlanRecord {
    type Error = DomainError;

    fn try_from(r: PlanRow) -> DomainResult<PlanRecord> {
        Ok(PlanRecord {
            state: PlanState::stored(&r.state)?,
            setup_fee: Amount::stored(&r.setup_fee)?,
            fixed_fee: Amount::stored(&r.fixed_fee)?,
            id: r.id,
            service_id: r.service_id,
            name: r.name,
            trial_days: r.trial_days,
            parent_plan_id: r.parent_plan_id,
            created_at: r.created_at,
            updated_at: r.updated_at,
        })
    }
}

/// A limit of a plan as the admin API shows it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct PlanLimit {
    /// The metric's name.
    pub metric: String,
    #[schema(schema_with = period_schema)]
    pub period: Period,
    pub value: i64,
}

/// A pricing rule (one tier) of a plan as the admin API shows it; the same shape
/// [`PricingRuleInput`] takes back.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct PlanPricingRule {
    /// The metric's name.
    pub metric: String,
    pub model: PricingModel,
    /// First unit of the tier (1-based, inclusive).
    pub from: i64,
    /// Last unit of the tier (inclusive); `null` for no upper end.
    pub to: Option<i64>,
    /// For `package`, the price of one package.
    pub unit_price: Amount,
    /// Only for `package` (absent otherwise).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub package_size: Option<i64>,
}

/// The full plan object.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct Plan {
    /// Always `"plan"`.
    pub object: &'static str,
    pub id: String,
    pub service_id: String,
    pub name: String,
    pub state: PlanState,
    pub setup_fee: Amount,
    /// Charged every month.
    pub fixed_fee: Amount,
    pub trial_days: i64,
    /// Whether this is a copy customized for one application.
    pub custom: bool,
    pub parent_plan_id: Option<String>,
    pub created_at: i64,
    pub updated_at: i64,
    /// By metric name, then period.
    pub limits: Vec<PlanLimit>,
    /// By metric name, then `from`.
    pub pricing_rules: Vec<PlanPricingRule>,
}

impl Plan {
    fn new(p: PlanRecord, limits: Vec<PlanLimit>, pricing_rules: Vec<PlanPricingRule>) -> Plan {
        Plan {
            object: "plan",
            custom: p.parent_plan_id.is_some(),
            id: p.id,
            service_id: p.service_id,
            name: p.name,
            state: p.state,
            setup_fee: p.setup_fee,
            fixed_fee: p.fixed_fee,
            trial_days: p.trial_days,
            parent_plan_id: p.parent_plan_id,
            created_at: p.created_at,
            updated_at: p.updated_at,
            limits,
            pricing_rules,
        }
    }

    /// The plan's limits as [`PlanInput::limits`] takes them back.
    pub fn limit_inputs(&self) -> Vec<LimitInput> {
        self.limits
            .iter()
            .map(|l| LimitInput {
                metric: l.metric.clone(),
                period: l.period,
                value: l.value.max(0) as u64,
            })
            .collect()
    }
}

#[derive(sqlx::FromRow)]
struct LimitRow {
    plan_id: String,
    metric: String,
    period: String,
    limit_value: i64,
}

impl TryFrom<LimitRow> for (String, PlanLimit) {
    type Error = DomainError;

    fn try_from(r: LimitRow) -> DomainResult<(String, PlanLimit)> {
        let limit = PlanLimit {
            metric: r.metric,
            period: stored_period(&r.period)?,
            value: r.limit_value,
        };
        Ok((r.plan_id, limit))
    }
}

#[derive(sqlx::FromRow)]
struct PricingRuleRow {
    plan_id: String,
    metric: String,
    model: String,
    range_from: i64,
    range_to: Option<i64>,
    unit_price: String,
    package_size: Option<i64>,
}

impl TryFrom<PricingRuleRow> for (String, PlanPricingRule) {
    type Error = DomainError;

    fn try_from(r: PricingRuleRow) -> DomainResult<(String, PlanPricingRule)> {
        let rule = PlanPricingRule {
            metric: r.metric,
            model: PricingModel::stored(&r.model)?,
            from: r.range_from,
            to: r.range_to,
            unit_price: Amount::stored(&r.unit_price)?,
            package_size: r.package_size,
        };
        Ok((r.plan_id, rule))
    }
}

/// Creating (`service_id` and `name` required) or patching a plan (absent fields stay; `limits`
/// and `pricing_rules`, when present, replace the whole set).
#[derive(Debug, Default, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PlanInput {
    pub service_id: Option<String>,
    pub name: Option<String>,
    pub state: Option<PlanState>,
    /// Decimal string (default `"0"`).
    pub setup_fee: Option<String>,
    /// Decimal string, charged every month (default `"0"`).
    pub fixed_fee: Option<String>,
    pub trial_days: Option<i64>,
    pub limits: Option<Vec<LimitInput>>,
    pub pricing_rules: Option<Vec<PricingRuleInput>>,
}

const PLAN_SELECT: &str = "SELECT id, service_id, name, state, setup_fee, fixed_fee, trial_days, parent_plan_id, created_at, updated_at FROM plans";

/// A plan's own row (no limits or pricing rules): for callers that need its terms only.
pub async fn find_plan<'e>(
    db: impl sqlx::Executor<'e, Database = sqlx::Any>,
    id: &str,
) -> DomainResult<PlanRecord> {
    sqlx::query_as::<_, PlanRow>(&format!("{PLAN_SELECT} WHERE id = $1"))
        .bind(id)
        .fetch_optional(db)
        .await?
        .ok_or_else(|| DomainError::not_found("plan", id))?
        .try_into()
}

/// The full plan, with its limits and pricing rules.
pub async fn get_plan(pool: &Pool, id: &str) -> DomainResult<Plan> {
    get_plan_on(&mut *pool.acquire().await?, id).await
}

/// [`get_plan`] on one connection (or inside a transaction: the audit log's before and after).
pub async fn get_plan_on(conn: &mut sqlx::AnyConnection, id: &str) -> DomainResult<Plan> {
    let record = find_plan(&mut *conn, id).await?;
    let mut one = full_plans(conn, vec![record]).await?;
    one.pop()
        .ok_or_else(|| DomainError::Internal("plan vanished while rendering".into()))
}

/// Full plans for a page of plan rows: two queries for all their limits and pricing rules, not
/// two per plan.
async fn full_plans(
    conn: &mut sqlx::AnyConnection,
    plans: Vec<PlanRecord>,
) -> DomainResult<Vec<Plan>> {
    if plans.is_empty() {
        return Ok(Vec::new());
    }
    let ids = in_list(1, plans.len());
    let limits_sql = format!(
        "SELECT l.plan_id AS plan_id, m.name AS metric, l.period AS period, l.limit_value AS limit_value \
         FROM plan_limits l JOIN metrics m ON m.id = l.metric_id WHERE l.plan_id IN {ids} ORDER BY m.name, l.period"
    );
    let mut q = sqlx::query_as::<_, LimitRow>(&limits_sql);
    for p in &plans {
        q = q.bind(&p.id);
    }
    let limits = q
        .fetch_all(&mut *conn)
        .await?
        .into_iter()
        .map(<(String, PlanLimit)>::try_from)
        .collect::<DomainResult<Vec<_>>>()?;
    let rules_sql = format!(
        "SELECT r.plan_id AS plan_id, m.name AS metric, r.model AS model, r.range_from AS range_from, r.range_to AS range_to, \
         r.unit_price AS unit_price, r.package_size AS package_size FROM pricing_rules r \
         JOIN metrics m ON m.id = r.metric_id WHERE r.plan_id IN {ids} ORDER BY m.name, r.range_from"
    );
    let mut q = sqlx::query_as::<_, PricingRuleRow>(&rules_sql);
    for p in &plans {
        q = q.bind(&p.id);
    }
    let rules = q
        .fetch_all(&mut *conn)
        .await?
        .into_iter()
        .map(<(String, PlanPricingRule)>::try_from)
        .collect::<DomainResult<Vec<_>>>()?;
    Ok(plans
        .into_iter()
        .map(|p| {
            let of = |plan_id: &String| *plan_id == p.id;
            let l = limits
                .iter()
                .filter(|(id, _)| of(id))
                .map(|(_, l)| l.clone());
            let r = rules
                .iter()
                .filter(|(id, _)| of(id))
                .map(|(_, r)| r.clone());
            let (l, r) = (l.collect(), r.collect());
            Plan::new(p, l, r)
        })
        .collect())
}

/// A page of plans in id order, of one service when `service_id` is not empty.
pub async fn list_plans(
    pool: &Pool,
    req: &PageRequest,
    service_id: &str,
) -> DomainResult<Page<Plan>> {
    let rows: Vec<PlanRow> = sqlx::query_as(&format!(
        "{PLAN_SELECT} WHERE id > $1 AND ($2 = '' OR service_id = $2) ORDER BY id LIMIT $3"
    ))
    .bind(&req.after)
    .bind(service_id)
    .bind(req.limit + 1)
    .fetch_all(pool)
    .await?;
    let records = rows
        .into_iter()
        .map(PlanRecord::try_from)
        .collect::<DomainResult<Vec<_>>>()?;
    let mut pg = page(records, req.limit, |p: &PlanRecord| &p.id);
    let data = full_plans(&mut *pool.acquire().await?, std::mem::take(&mut pg.data)).await?;
    Ok(pg.with_data(data))
}

/// Stored integers are `i64`; the validation rules already refused anything larger.
fn as_i64(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

/// Replaces a plan's limits and pricing rules (already validated) inside `tx`.
async fn write_rules(
    tx: &mut Tx,
    plan_id: &str,
    limits: Option<&[(String, LimitInput)]>,
    rules: Option<&[PricingRule]>,
) -> DomainResult<()> {
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
                .bind(as_i64(l.value))
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
            insert_pricing_rule(
                tx,
                plan_id,
                &r.metric_id,
                r.model,
                as_i64(r.from),
                r.to.map(as_i64),
                &format_amount(r.unit_price),
                r.package_size.map(as_i64),
            )
            .await?;
        }
    }
    Ok(())
}

#[allow(clippy::too_many_arguments)]
async fn insert_pricing_rule(
    tx: &mut Tx,
    plan_id: &str,
    metric_id: &str,
    model: PricingModel,
    from: i64,
    to: Option<i64>,
    unit_price: &str,
    package_size: Option<i64>,
) -> DomainResult<()> {
    sqlx::query(
        "INSERT INTO pricing_rules (id, plan_id, metric_id, model, range_from, range_to, unit_price, package_size) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
    )
    .bind(new_id("pr"))
    .bind(plan_id)
    .bind(metric_id)
    .bind(model.as_str())
    .bind(from)
    .bind(to)
    .bind(unit_price)
    .bind(package_size)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

pub async fn create_plan(pool: &Pool, actor: &Actor, input: &PlanInput) -> DomainResult<Plan> {
    let service_id = input.service_id.as_deref().ok_or_else(|| {
        DomainError::invalid("service_id", "missing_field", "service_id is required")
    })?;
    // Any failure to find the service (including a database error) reads as "no such service",
    // as it always has.
    get_service(pool, service_id).await.map_err(|_| {
        DomainError::invalid(
            "service_id",
            "unknown_service",
            format!("no service with id {service_id:?}"),
        )
    })?;
    let name = check_name("name", input.name.as_deref().unwrap_or(""))?;
    let setup_fee = check_money("setup_fee", input.setup_fee.as_deref().unwrap_or("0"))?;
    let fixed_fee = check_money("fixed_fee", input.fixed_fee.as_deref().unwrap_or("0"))?;
    let trial_days = check_trial_days(input.trial_days.unwrap_or(0))?;
    let metrics = metric_ids(pool, service_id).await?;
    let limits = check_limits(input.limits.as_deref().unwrap_or(&[]), &metrics)?;
    let rules = check_pricing_rules(input.pricing_rules.as_deref().unwrap_or(&[]), &metrics)?;
    let id = new_id("plan");
    let t = now();
    let mut tx = begin_write(pool).await?;
    sqlx::query(
        "INSERT INTO plans (id, service_id, name, state, setup_fee, fixed_fee, trial_days, parent_plan_id, created_at, updated_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, NULL, $8, $8)",
    )
    .bind(&id)
    .bind(service_id)
    .bind(&name)
    .bind(input.state.unwrap_or_default().as_str())
    .bind(format_amount(setup_fee))
    .bind(format_amount(fixed_fee))
    .bind(trial_days)
    .bind(t)
    .execute(&mut *tx)
    .await?;
    write_rules(&mut tx, &id, Some(&limits), Some(&rules)).await?;
    let after = get_plan_on(&mut tx, &id).await?;
    let changes = Changes::between(None, Some(&after))?;
    let object = Object {
        kind: "plan",
        id: &id,
    };
    audit::record(&mut tx, actor, "plan.created", object, &changes).await?;
    revision::bump(&mut tx).await?;
    tx.commit().await?;
    Ok(after)
}

pub async fn update_plan(
    pool: &Pool,
    actor: &Actor,
    id: &str,
    input: &PlanInput,
) -> DomainResult<Plan> {
    let plan = find_plan(pool, id).await?;
    if input
        .service_id
        .as_ref()
        .is_some_and(|sid| *sid != plan.service_id)
    {
        return Err(DomainError::invalid(
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
    let metrics = metric_ids(pool, &plan.service_id).await?;
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
    let mut tx = begin_write(pool).await?;
    let before = get_plan_on(&mut tx, id).await?;
    sqlx::query(
        "UPDATE plans SET name = $2, state = $3, setup_fee = $4, fixed_fee = $5, trial_days = $6, updated_at = $7 WHERE id = $1",
    )
    .bind(id)
    .bind(name.unwrap_or(plan.name))
    .bind(input.state.unwrap_or(plan.state).as_str())
    .bind(format_amount(setup_fee.unwrap_or(plan.setup_fee.0)))
    .bind(format_amount(fixed_fee.unwrap_or(plan.fixed_fee.0)))
    .bind(trial_days.unwrap_or(plan.trial_days))
    .bind(now())
    .execute(&mut *tx)
    .await?;
    write_rules(&mut tx, id, limits.as_deref(), rules.as_deref()).await?;
    let after = get_plan_on(&mut tx, id).await?;
    let changes = Changes::between(Some(&before), Some(&after))?;
    audit::record(
        &mut tx,
        actor,
        "plan.updated",
        Object { kind: "plan", id },
        &changes,
    )
    .await?;
    revision::bump(&mut tx).await?;
    tx.commit().await?;
    Ok(after)
}

/// Deletes a plan nobody uses, was billed on, or customized.
pub async fn delete_plan(pool: &Pool, actor: &Actor, id: &str) -> DomainResult<Deleted> {
    find_plan(pool, id).await?;
    let mut tx = begin_write(pool).await?;
    let before = get_plan_on(&mut tx, id).await?;
    let count = |sql: &'static str| sqlx::query_scalar::<sqlx::Any, i64>(sql).bind(id.to_string());
    let apps = count("SELECT COUNT(*) FROM applications WHERE plan_id = $1")
        .fetch_one(&mut *tx)
        .await?;
    if apps > 0 {
        return Err(DomainError::conflict(
            "plan_in_use",
            format!("{apps} application(s) use this plan; move them first"),
        ));
    }
    let contracts = count("SELECT COUNT(*) FROM contracts WHERE plan_id = $1")
        .fetch_one(&mut *tx)
        .await?;
    if contracts > 0 {
        return Err(DomainError::conflict(
            "plan_has_billing_history",
            "applications were billed on this plan; it is kept for their invoices",
        ));
    }
    let children = count("SELECT COUNT(*) FROM plans WHERE parent_plan_id = $1")
        .fetch_one(&mut *tx)
        .await?;
    if children > 0 {
        return Err(DomainError::conflict(
            "plan_in_use",
            "customized copies of this plan exist",
        ));
    }
    for sql in [
        "DELETE FROM plan_limits WHERE plan_id = $1",
        "DELETE FROM pricing_rules WHERE plan_id = $1",
        "DELETE FROM plans WHERE id = $1",
    ] {
        sqlx::query(sql).bind(id).execute(&mut *tx).await?;
    }
    let changes = Changes::between(Some(&before), None)?;
    audit::record(
        &mut tx,
        actor,
        "plan.deleted",
        Object { kind: "plan", id },
        &changes,
    )
    .await?;
    revision::bump(&mut tx).await?;
    tx.commit().await?;
    Ok(Deleted::new("plan", id))
}

/// Copies plan `source_id` (limits and pricing rules included) inside `tx` as a hidden plan
/// named `name`, customized for one application; returns the new plan's id.
pub async fn copy_plan(tx: &mut Tx, source_id: &str, name: &str) -> DomainResult<String> {
    let source: PlanRecord = sqlx::query_as::<_, PlanRow>(&format!("{PLAN_SELECT} WHERE id = $1"))
        .bind(source_id)
        .fetch_optional(&mut **tx)
        .await?
        .ok_or_else(|| DomainError::not_found("plan", source_id))?
        .try_into()?;
    let id = new_id("plan");
    let t = now();
    sqlx::query(
        "INSERT INTO plans (id, service_id, name, state, setup_fee, fixed_fee, trial_days, parent_plan_id, created_at, updated_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $9)",
    )
    .bind(&id)
    .bind(&source.service_id)
    .bind(name)
    .bind(PlanState::Hidden.as_str())
    .bind(format_amount(source.setup_fee.0))
    .bind(format_amount(source.fixed_fee.0))
    .bind(source.trial_days)
    .bind(&source.id)
    .bind(t)
    .execute(&mut **tx)
    .await?;
    sqlx::query("INSERT INTO plan_limits (plan_id, metric_id, period, limit_value) SELECT $1, metric_id, period, limit_value FROM plan_limits WHERE plan_id = $2")
        .bind(&id)
        .bind(&source.id)
        .execute(&mut **tx)
        .await?;
    // Its usage alert thresholds too (docs/operations.md, "Usage alerts"), when it has its own.
    sqlx::query("INSERT INTO plan_alert_thresholds (plan_id, thresholds, updated_at) SELECT $1, thresholds, $3 FROM plan_alert_thresholds WHERE plan_id = $2")
        .bind(&id)
        .bind(&source.id)
        .bind(t)
        .execute(&mut **tx)
        .await?;
    #[derive(sqlx::FromRow)]
    struct SourceRule {
        metric_id: String,
        model: String,
        range_from: i64,
        range_to: Option<i64>,
        unit_price: String,
        package_size: Option<i64>,
    }
    let rules: Vec<SourceRule> = sqlx::query_as(
        "SELECT metric_id, model, range_from, range_to, unit_price, package_size FROM pricing_rules WHERE plan_id = $1",
    )
    .bind(&source.id)
    .fetch_all(&mut **tx)
    .await?;
    for r in rules {
        let price = format_amount(Amount::stored(&r.unit_price)?.0);
        let model = PricingModel::stored(&r.model)?;
        insert_pricing_rule(
            tx,
            &id,
            &r.metric_id,
            model,
            r.range_from,
            r.range_to,
            &price,
            r.package_size,
        )
        .await?;
    }
    revision::bump(tx).await?;
    Ok(id)
}
