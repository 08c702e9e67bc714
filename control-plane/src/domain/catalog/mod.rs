//! The catalog: what is sold and enforced. This module holds its validation rules, independent of
//! HTTP and SQL (what makes a limit, a pricing rule or a mapping rule acceptable; errors name the
//! offending field, `limits[2].metric`); [`services`], [`metrics`], [`mapping_rules`] and
//! [`plans`] read and write it. [`revision`] is the one writer of the catalog revision gateways
//! poll: every write here that changes what a gateway sees bumps it in its own transaction.

pub mod mapping_rules;
pub mod metrics;
pub mod plans;
pub mod revision;
pub mod services;

use std::collections::HashMap;

use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};
use tollgate_protocol::Period;

use crate::domain::DomainError;
use crate::money::parse_amount;

/// Longest name of a service, plan, account or application.
pub const MAX_NAME_CHARS: usize = 200;
/// Most limits and most pricing rules on one plan.
pub const MAX_LIMITS_PER_PLAN: usize = 200;
pub const MAX_PRICING_RULES_PER_PLAN: usize = 500;
/// Longest trial.
pub const MAX_TRIAL_DAYS: i64 = 3_650;

/// The answer to a delete: which object is gone.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct Deleted {
    /// The kind of object deleted (`"service"`, `"plan"`, ...).
    pub object: &'static str,
    pub id: String,
    /// Always `true`.
    pub deleted: bool,
}

impl Deleted {
    pub fn new(object: &'static str, id: impl Into<String>) -> Deleted {
        Deleted {
            object,
            id: id.into(),
            deleted: true,
        }
    }
}

/// A period as stored (`plan_limits.period`, written from [`Period::as_str`]); anything else is
/// a corrupted row, never a guessed period.
pub fn stored_period(raw: &str) -> Result<Period, DomainError> {
    Period::ALL
        .into_iter()
        .find(|p| p.as_str() == raw)
        .ok_or_else(|| DomainError::Internal(format!("stored period {raw:?} is not a period")))
}

/// The OpenAPI schema of a [`Period`] (defined in `tollgate_protocol`, which knows nothing of
/// OpenAPI): one of its lowercase names.
pub fn period_schema() -> utoipa::openapi::Object {
    utoipa::openapi::ObjectBuilder::new()
        .schema_type(utoipa::openapi::schema::Type::String)
        .enum_values(Some(Period::ALL.into_iter().map(Period::as_str)))
        .build()
}

pub fn check_name(param: &str, name: &str) -> Result<String, DomainError> {
    let trimmed = name.trim();
    if trimmed.is_empty() || trimmed.chars().count() > MAX_NAME_CHARS {
        return Err(DomainError::invalid(
            param,
            "invalid_name",
            format!("must be 1-{MAX_NAME_CHARS} characters"),
        ));
    }
    if trimmed.chars().any(char::is_control) {
        return Err(DomainError::invalid(
            param,
            "invalid_name",
            "must not contain control characters",
        ));
    }
    Ok(trimmed.to_string())
}

/// Metric names travel to gateways and into quota headers: the filter's rule, applied here first.
pub fn check_metric_name(param: &str, name: &str) -> Result<(), DomainError> {
    let ok = tollgate_rules::names::is_valid_metric_name(name);
    if ok {
        Ok(())
    } else {
        Err(DomainError::invalid(
            param,
            "invalid_metric_name",
            "1-64 characters from A-Z a-z 0-9 _ - .",
        ))
    }
}

pub fn check_money(param: &str, raw: &str) -> Result<Decimal, DomainError> {
    parse_amount(raw).map_err(|m| DomainError::invalid(param, "invalid_amount", m))
}

pub fn check_trial_days(days: i64) -> Result<i64, DomainError> {
    if (0..=MAX_TRIAL_DAYS).contains(&days) {
        Ok(days)
    } else {
        Err(DomainError::invalid(
            "trial_days",
            "invalid_trial_days",
            format!("must be 0-{MAX_TRIAL_DAYS}"),
        ))
    }
}

#[derive(Clone, Debug, Deserialize, Serialize, PartialEq, Eq, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LimitInput {
    /// The name of a metric of the plan's service.
    pub metric: String,
    #[schema(schema_with = period_schema)]
    pub period: Period,
    pub value: u64,
}

#[derive(Clone, Copy, Debug, Deserialize, Serialize, PartialEq, Eq, Default, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum PricingModel {
    /// Each unit at the price of its tier (3scale's behaviour).
    #[default]
    Graduated,
    /// All units at the price of the tier the total reaches.
    Volume,
    /// Per started block of `package_size` units.
    Package,
}

impl PricingModel {
    pub fn as_str(self) -> &'static str {
        match self {
            PricingModel::Graduated => "graduated",
            PricingModel::Volume => "volume",
            PricingModel::Package => "package",
        }
    }

    /// A model as stored (`pricing_rules.model`, written from [`PricingModel::as_str`]): anything
    /// else is a corrupted row, never priced as a guessed model.
    pub fn stored(raw: &str) -> Result<PricingModel, DomainError> {
        [
            PricingModel::Graduated,
            PricingModel::Volume,
            PricingModel::Package,
        ]
        .into_iter()
        .find(|m| m.as_str() == raw)
        .ok_or_else(|| DomainError::Internal(format!("stored pricing model {raw:?} is unknown")))
    }

    /// Lenient: an unknown model reads as graduated (billing's reader; prefer [`Self::stored`]).
    pub fn parse(s: &str) -> PricingModel {
        match s {
            "volume" => PricingModel::Volume,
            "package" => PricingModel::Package,
            _ => PricingModel::Graduated,
        }
    }
}

#[derive(Clone, Debug, Deserialize, Serialize, PartialEq, Eq, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PricingRuleInput {
    /// The name of a metric of the plan's service.
    pub metric: String,
    /// First unit of the tier (1-based, inclusive).
    pub from: u64,
    /// Last unit of the tier (inclusive); `null` for no upper end.
    #[serde(default)]
    pub to: Option<u64>,
    /// Decimal string; for `package`, the price of one package.
    pub unit_price: String,
    #[serde(default)]
    pub model: PricingModel,
    #[serde(default)]
    pub package_size: Option<u64>,
}

/// A validated pricing rule, metric resolved.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PricingRule {
    pub metric_id: String,
    pub from: u64,
    pub to: Option<u64>,
    pub unit_price: Decimal,
    pub model: PricingModel,
    pub package_size: Option<u64>,
}

/// Limits: known metric, no two on the same (metric, period).
pub fn check_limits(
    limits: &[LimitInput],
    metrics: &HashMap<String, String>,
) -> Result<Vec<(String, LimitInput)>, DomainError> {
    if limits.len() > MAX_LIMITS_PER_PLAN {
        return Err(DomainError::invalid(
            "limits",
            "too_many_limits",
            format!("at most {MAX_LIMITS_PER_PLAN}"),
        ));
    }
    let mut out: Vec<(String, LimitInput)> = Vec::with_capacity(limits.len());
    for (i, l) in limits.iter().enumerate() {
        let param = format!("limits[{i}].metric");
        let metric_id = metrics.get(&l.metric).ok_or_else(|| {
            DomainError::invalid(
                &param,
                "unknown_metric",
                format!("the service has no metric {:?}", l.metric),
            )
        })?;
        if i64::try_from(l.value).is_err() {
            return Err(DomainError::invalid(
                format!("limits[{i}].value"),
                "invalid_limit",
                "too large",
            ));
        }
        if out
            .iter()
            .any(|(m, o)| m == metric_id && o.period == l.period)
        {
            return Err(DomainError::invalid(
                param,
                "duplicate_limit",
                format!("two limits on {:?} per {}", l.metric, l.period.as_str()),
            ));
        }
        out.push((metric_id.clone(), l.clone()));
    }
    Ok(out)
}

/// Pricing rules: known metric, valid price, one model per metric, tiers that do not overlap.
pub fn check_pricing_rules(
    rules: &[PricingRuleInput],
    metrics: &HashMap<String, String>,
) -> Result<Vec<PricingRule>, DomainError> {
    if rules.len() > MAX_PRICING_RULES_PER_PLAN {
        return Err(DomainError::invalid(
            "pricing_rules",
            "too_many_pricing_rules",
            format!("at most {MAX_PRICING_RULES_PER_PLAN}"),
        ));
    }
    let mut out: Vec<(usize, PricingRule)> = Vec::with_capacity(rules.len());
    for (i, r) in rules.iter().enumerate() {
        let p = |f: &str| format!("pricing_rules[{i}].{f}");
        let metric_id = metrics.get(&r.metric).ok_or_else(|| {
            DomainError::invalid(
                p("metric"),
                "unknown_metric",
                format!("the service has no metric {:?}", r.metric),
            )
        })?;
        if r.from < 1 {
            return Err(DomainError::invalid(
                p("from"),
                "invalid_range",
                "tiers start at unit 1 or later",
            ));
        }
        if r.to.is_some_and(|to| to < r.from) {
            return Err(DomainError::invalid(
                p("to"),
                "invalid_range",
                "`to` must be at least `from`",
            ));
        }
        if [Some(r.from), r.to, r.package_size]
            .iter()
            .flatten()
            .any(|v| i64::try_from(*v).is_err())
        {
            return Err(DomainError::invalid(p("to"), "invalid_range", "too large"));
        }
        let unit_price = check_money(&p("unit_price"), &r.unit_price)?;
        match (r.model, r.package_size) {
            (PricingModel::Package, Some(n)) if n >= 1 => {}
            (PricingModel::Package, _) => {
                return Err(DomainError::invalid(
                    p("package_size"),
                    "invalid_package_size",
                    "package pricing needs package_size >= 1",
                ))
            }
            (_, Some(_)) => {
                return Err(DomainError::invalid(
                    p("package_size"),
                    "invalid_package_size",
                    "only package pricing has a package_size",
                ))
            }
            _ => {}
        }
        out.push((
            i,
            PricingRule {
                metric_id: metric_id.clone(),
                from: r.from,
                to: r.to,
                unit_price,
                model: r.model,
                package_size: r.package_size,
            },
        ));
    }
    // Per metric: one model, and tiers sorted by `from` must not overlap.
    let mut by_metric: HashMap<&str, Vec<&(usize, PricingRule)>> = HashMap::new();
    for entry in &out {
        by_metric
            .entry(entry.1.metric_id.as_str())
            .or_default()
            .push(entry);
    }
    for tiers in by_metric.values_mut() {
        tiers.sort_by_key(|(_, r)| r.from);
        for pair in tiers.windows(2) {
            let (_, a) = pair[0];
            let (j, b) = pair[1];
            if a.model != b.model {
                return Err(DomainError::invalid(
                    format!("pricing_rules[{j}].model"),
                    "mixed_pricing_models",
                    "all pricing rules of one metric must use the same model",
                ));
            }
            if a.to.is_none_or(|to| to >= b.from) {
                return Err(DomainError::invalid(
                    format!("pricing_rules[{j}].from"),
                    "overlapping_pricing_rules",
                    format!(
                        "the tier starting at {} overlaps the tier starting at {}",
                        b.from, a.from
                    ),
                ));
            }
        }
    }
    Ok(out.into_iter().map(|(_, r)| r).collect())
}

/// A mapping rule's method: an HTTP method token or `ANY`.
pub fn check_method(method: &str) -> Result<String, DomainError> {
    let m = method.to_ascii_uppercase();
    if m.is_empty() || m.len() > 16 || !m.bytes().all(|b| b.is_ascii_uppercase()) {
        return Err(DomainError::invalid(
            "method",
            "invalid_method",
            format!("{method:?} is not an HTTP method"),
        ));
    }
    Ok(m)
}

pub fn check_pattern(pattern: &str) -> Result<(), DomainError> {
    tollgate_rules::mapping::Pattern::parse("pattern", pattern)
        .map(|_| ())
        .map_err(|e| DomainError::invalid("pattern", "invalid_pattern", e.message))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn metrics() -> HashMap<String, String> {
        [("hits", "m1"), ("search", "m2")]
            .iter()
            .map(|(a, b)| (a.to_string(), b.to_string()))
            .collect()
    }

    fn rule(metric: &str, from: u64, to: Option<u64>, price: &str) -> PricingRuleInput {
        PricingRuleInput {
            metric: metric.into(),
            from,
            to,
            unit_price: price.into(),
            model: PricingModel::Graduated,
            package_size: None,
        }
    }

    fn code(e: DomainError) -> (&'static str, Option<String>) {
        match e {
            DomainError::Invalid { code, param, .. } => (code, param),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn tiers_must_not_overlap() {
        let ok = [
            rule("hits", 1, Some(100), "0.01"),
            rule("hits", 101, None, "0.005"),
            rule("search", 1, None, "0.1"),
        ];
        assert_eq!(check_pricing_rules(&ok, &metrics()).unwrap().len(), 3);
        let overlap = [
            rule("hits", 1, Some(100), "0.01"),
            rule("hits", 100, None, "0.005"),
        ];
        assert_eq!(
            code(check_pricing_rules(&overlap, &metrics()).unwrap_err()).0,
            "overlapping_pricing_rules"
        );
        let open_then_more = [
            rule("hits", 50, None, "0.01"),
            rule("hits", 1, Some(10), "0.02"),
            rule("hits", 60, None, "0.01"),
        ];
        assert_eq!(
            code(check_pricing_rules(&open_then_more, &metrics()).unwrap_err()),
            (
                "overlapping_pricing_rules",
                Some("pricing_rules[2].from".into())
            )
        );
    }

    #[test]
    fn prices_and_ranges_are_checked() {
        assert_eq!(
            code(check_pricing_rules(&[rule("hits", 1, None, "-1")], &metrics()).unwrap_err()),
            ("invalid_amount", Some("pricing_rules[0].unit_price".into()))
        );
        assert_eq!(
            code(check_pricing_rules(&[rule("hits", 5, Some(4), "1")], &metrics()).unwrap_err()).0,
            "invalid_range"
        );
        assert_eq!(
            code(check_pricing_rules(&[rule("nope", 1, None, "1")], &metrics()).unwrap_err()).0,
            "unknown_metric"
        );
        let mut pkg = rule("hits", 1, None, "5");
        pkg.model = PricingModel::Package;
        assert_eq!(
            code(check_pricing_rules(&[pkg.clone()], &metrics()).unwrap_err()).0,
            "invalid_package_size"
        );
        pkg.package_size = Some(1000);
        assert!(check_pricing_rules(&[pkg], &metrics()).is_ok());
        let four_decimals =
            check_pricing_rules(&[rule("hits", 1, None, "0.0001")], &metrics()).unwrap();
        assert_eq!(four_decimals[0].unit_price.to_string(), "0.0001");
    }

    #[test]
    fn limits_need_known_metrics_once_per_period() {
        let l = |m: &str, p: Period| LimitInput {
            metric: m.into(),
            period: p,
            value: 10,
        };
        assert!(check_limits(
            &[l("hits", Period::Minute), l("hits", Period::Day)],
            &metrics()
        )
        .is_ok());
        assert_eq!(
            code(check_limits(&[l("x", Period::Day)], &metrics()).unwrap_err()).0,
            "unknown_metric"
        );
        assert_eq!(
            code(
                check_limits(
                    &[l("hits", Period::Day), l("hits", Period::Day)],
                    &metrics()
                )
                .unwrap_err()
            ),
            ("duplicate_limit", Some("limits[1].metric".into()))
        );
    }

    #[test]
    fn methods_and_patterns() {
        assert_eq!(check_method("get").unwrap(), "GET");
        assert!(check_method("G ET").is_err());
        assert!(check_pattern("/v1/{id}$").is_ok());
        assert!(check_pattern("v1").is_err());
    }
}
