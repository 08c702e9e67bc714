//! Which invoice lines a contract owes on a given run date: the billing rules in one pure function.
//!
//! - Fixed fee per calendar month, prorated by days for partial months (sign-up, plan change,
//!   cancellation, trial end): `fee × days / days in the month`.
//! - Setup fee once per contract, when billing starts (the day the trial ends, or sign-up).
//! - Nothing during a trial: fees and usage count from `trial_ends_on`.
//! - Usage of a month, per metric, priced with the plan's pricing rules (see [`rating`]); tiers
//!   restart with each contract, so a plan change rates each part of the month on its own plan.
//! - Prepaid: the month's fixed fee when it starts (or when billing starts within it) with the
//!   previous month's usage; when a contract ends before the end of a month it paid for, the
//!   unused days are credited. Postpaid: everything of the previous month, after it ended.
//!
//! Every line has a key naming what it bills; a key already billed is never billed again, which is
//! what makes billing runs idempotent.
//!
//! [`rating`]: super::rating

use std::collections::HashMap;

use rust_decimal::Decimal;

use super::calendar::{format_date, month_start, next_month_start, previous_month_start};
use super::currency::Currency;
use super::rating::{line_amount, price_usage, Overflow, Tier};
use crate::domain::catalog::PricingModel;

#[derive(
    Clone, Copy, Debug, PartialEq, Eq, serde::Deserialize, serde::Serialize, utoipa::ToSchema,
)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    Prepaid,
    Postpaid,
}

/// What a plan charges, as billing needs it.
#[derive(Clone, Debug)]
pub struct PlanTerms {
    pub id: String,
    pub name: String,
    pub setup_fee: Decimal,
    pub fixed_fee: Decimal,
    pub metrics: Vec<MetricPricing>,
}

#[derive(Clone, Debug)]
pub struct MetricPricing {
    pub metric_id: String,
    pub metric_name: String,
    pub model: PricingModel,
    pub tiers: Vec<Tier>,
}

/// An application on a plan for `[starts_on, ends_on)` (day numbers).
#[derive(Clone, Debug)]
pub struct Contract {
    pub id: String,
    pub application_id: String,
    pub application_name: String,
    pub plan_id: String,
    pub starts_on: i64,
    pub ends_on: Option<i64>,
    pub trial_ends_on: i64,
}

/// A fixed-fee line already billed: what it covered and at what price.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Billed {
    pub period_start: i64,
    pub period_end: i64,
    pub unit_price: Decimal,
}

/// What an invoice line is for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum LineKind {
    SetupFee,
    FixedFee,
    Usage,
    UnusedTimeCredit,
    Manual,
    CreditApplied,
    CreditCarried,
    CreditNote,
}

impl LineKind {
    pub fn as_str(self) -> &'static str {
        match self {
            LineKind::SetupFee => "setup_fee",
            LineKind::FixedFee => "fixed_fee",
            LineKind::Usage => "usage",
            LineKind::UnusedTimeCredit => "unused_time_credit",
            LineKind::Manual => "manual",
            LineKind::CreditApplied => "credit_applied",
            LineKind::CreditCarried => "credit_carried",
            LineKind::CreditNote => "credit_note",
        }
    }

    /// A stored kind; an unknown one is an error, never a guess.
    pub fn parse(s: &str) -> Result<LineKind, crate::domain::DomainError> {
        [
            LineKind::SetupFee,
            LineKind::FixedFee,
            LineKind::Usage,
            LineKind::UnusedTimeCredit,
            LineKind::Manual,
            LineKind::CreditApplied,
            LineKind::CreditCarried,
            LineKind::CreditNote,
        ]
        .into_iter()
        .find(|k| k.as_str() == s)
        .ok_or_else(|| {
            crate::domain::DomainError::Internal(format!("unknown invoice line kind {s:?} stored"))
        })
    }
}

/// A line to put on an invoice. `amount` is already rounded to the currency's minor unit.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NewLine {
    pub key: Option<String>,
    pub kind: LineKind,
    pub contract_id: Option<String>,
    pub description: String,
    pub quantity: Decimal,
    pub unit_price: Decimal,
    pub amount: Decimal,
    pub period_start: Option<i64>,
    pub period_end: Option<i64>,
}

/// Keys of lines already billed; fixed-fee keys carry what they covered (for prepaid credits).
pub type BilledKeys = HashMap<String, Option<Billed>>;

/// Units of `metric_id` used by the contract's application on days `[from, to)`.
pub type UsageFn<'a> = &'a dyn Fn(&str, i64, i64) -> u64;

pub fn setup_key(contract: &str) -> String {
    format!("setup:{contract}")
}
pub fn fixed_key(contract: &str, month: i64) -> String {
    format!("fixed:{contract}:{month}")
}
pub fn credit_key(contract: &str, month: i64) -> String {
    format!("credit:{contract}:{month}")
}
pub fn usage_key(contract: &str, metric_id: &str, month: i64, part: usize) -> String {
    format!("usage:{contract}:{metric_id}:{month}#{part}")
}

/// Every key [`due_lines`] may look up for `contract` on `run_on`: what to read of the billing
/// history (by the unique key index, which stays fast however large the history grows).
pub fn history_keys(contract: &str, plan: &PlanTerms, run_on: i64) -> Vec<String> {
    let previous = previous_month_start(run_on);
    let current = month_start(run_on);
    let mut keys = vec![
        setup_key(contract),
        fixed_key(contract, previous),
        fixed_key(contract, current),
        credit_key(contract, previous),
        credit_key(contract, current),
    ];
    keys.extend(
        plan.metrics
            .iter()
            .map(|m| usage_key(contract, &m.metric_id, previous, 0)),
    );
    keys
}

fn span(from: i64, to: i64) -> String {
    format!("{} to {}", format_date(from), format_date(to - 1))
}

/// The lines `contract` owes on `run_on` that `billed` does not hold yet.
pub fn due_lines(
    mode: Mode,
    run_on: i64,
    contract: &Contract,
    plan: &PlanTerms,
    currency: Currency,
    billed: &BilledKeys,
    usage: UsageFn,
) -> Result<Vec<NewLine>, Overflow> {
    let mut out = Vec::new();
    let end = contract.ends_on.unwrap_or(i64::MAX);
    let bill_from = contract.starts_on.max(contract.trial_ends_on);
    // Ended during its trial, or on the day it started: no fee or usage is owed (but what it paid
    // in advance is still credited below).
    let active = bill_from < end;
    let c = &contract.id;
    let who = format!("{}: {}", plan.name, contract.application_name);
    let current = month_start(run_on);
    let previous = previous_month_start(run_on);

    let setup_due = match mode {
        Mode::Prepaid => bill_from <= run_on,
        Mode::Postpaid => bill_from < current,
    };
    if active && setup_due && !plan.setup_fee.is_zero() && !billed.contains_key(&setup_key(c)) {
        out.push(NewLine {
            key: Some(setup_key(c)),
            kind: LineKind::SetupFee,
            contract_id: Some(c.clone()),
            description: format!("{who}: setup fee"),
            quantity: Decimal::ONE,
            unit_price: plan.setup_fee,
            amount: line_amount(currency, 1, plan.setup_fee, 1, 1)?,
            period_start: Some(bill_from),
            period_end: Some(bill_from + 1),
        });
    }

    let fixed_months: &[i64] = match mode {
        Mode::Prepaid => &[previous, current],
        Mode::Postpaid => &[previous],
    };
    for &month in fixed_months {
        let month_end = next_month_start(month);
        let month_days = month_end - month;
        if let Some(paid) = billed.get(&fixed_key(c, month)) {
            // Paid in advance past the contract's end: credit the unused days at the price paid.
            if let Some(paid) = paid {
                let unused_from = end.max(paid.period_start);
                if unused_from < paid.period_end && !billed.contains_key(&credit_key(c, month)) {
                    let days = paid.period_end - unused_from;
                    out.push(NewLine {
                        key: Some(credit_key(c, month)),
                        kind: LineKind::UnusedTimeCredit,
                        contract_id: Some(c.clone()),
                        description: format!(
                            "{who}: unused prepaid time, {} ({days} of {month_days} days)",
                            span(unused_from, paid.period_end)
                        ),
                        quantity: Decimal::ONE,
                        unit_price: -paid.unit_price,
                        amount: -line_amount(currency, 1, paid.unit_price, days, month_days)?,
                        period_start: Some(unused_from),
                        period_end: Some(paid.period_end),
                    });
                }
            }
            continue;
        }
        let from = bill_from.max(month);
        let to = end.min(month_end);
        if from >= to || plan.fixed_fee.is_zero() || (mode == Mode::Prepaid && from > run_on) {
            continue;
        }
        let days = to - from;
        let proration = if days == month_days {
            String::new()
        } else {
            format!(" ({days} of {month_days} days)")
        };
        out.push(NewLine {
            key: Some(fixed_key(c, month)),
            kind: LineKind::FixedFee,
            contract_id: Some(c.clone()),
            description: format!("{who}: monthly fee, {}{proration}", span(from, to)),
            quantity: Decimal::ONE,
            unit_price: plan.fixed_fee,
            amount: line_amount(currency, 1, plan.fixed_fee, days, month_days)?,
            period_start: Some(from),
            period_end: Some(to),
        });
    }

    // Usage of the previous month, in both modes.
    let month_end = next_month_start(previous);
    let from = bill_from.max(previous);
    let to = end.min(month_end);
    if from < to {
        for m in &plan.metrics {
            if billed.contains_key(&usage_key(c, &m.metric_id, previous, 0)) {
                continue;
            }
            let units = usage(&m.metric_id, from, to);
            for (i, part) in price_usage(m.model, &m.tiers, units)
                .into_iter()
                .enumerate()
            {
                let what = match m.model {
                    PricingModel::Package => format!(
                        "{} units {}–{} in packages",
                        m.metric_name, part.first_unit, part.last_unit
                    ),
                    PricingModel::Volume => {
                        format!("{} ({} units, volume price)", m.metric_name, units)
                    }
                    PricingModel::Graduated => match m.tiers.len() {
                        1 => m.metric_name.clone(),
                        _ => format!(
                            "{} units {}–{}",
                            m.metric_name, part.first_unit, part.last_unit
                        ),
                    },
                };
                out.push(NewLine {
                    key: Some(usage_key(c, &m.metric_id, previous, i)),
                    kind: LineKind::Usage,
                    contract_id: Some(c.clone()),
                    description: format!("{who}: {what}, {}", span(from, to)),
                    quantity: Decimal::from(part.quantity),
                    unit_price: part.unit_price,
                    amount: line_amount(currency, part.quantity, part.unit_price, 1, 1)?,
                    period_start: Some(from),
                    period_end: Some(to),
                });
            }
        }
    }
    Ok(out)
}

/// What `lines` record as billed, merged into `billed` (so one run can plan several dates).
pub fn record(billed: &mut BilledKeys, lines: &[NewLine]) {
    for l in lines {
        if let Some(k) = &l.key {
            let covered = match (l.kind, l.period_start, l.period_end) {
                (LineKind::FixedFee, Some(s), Some(e)) => Some(Billed {
                    period_start: s,
                    period_end: e,
                    unit_price: l.unit_price,
                }),
                _ => None,
            };
            billed.insert(k.clone(), covered);
        }
    }
}

#[cfg(test)]
#[path = "lines_tests.rs"]
mod tests;
