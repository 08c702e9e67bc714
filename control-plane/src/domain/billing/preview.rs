//! "At N hits this plan costs X": a month of a plan priced exactly as a billing run would price it
//! (the fixed fee, and per metric one line per tier reached, each rounded once by
//! [`line_amount`]). Before VAT, without proration, trial or setup fee.

use std::collections::BTreeMap;

use rust_decimal::Decimal;

use super::currency::Currency;
use super::lines::PlanTerms;
use super::rating::{line_amount, price_usage, Overflow};

/// What a month costs: the fixed fee, the usage per metric name, and their sum.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MonthCost {
    pub fixed_fee: Decimal,
    pub usage: BTreeMap<String, Decimal>,
    pub total: Decimal,
}

/// `units` are per metric name; a priced metric without an entry used nothing.
pub fn month_cost(
    currency: Currency,
    plan: &PlanTerms,
    units: &BTreeMap<String, u64>,
) -> Result<MonthCost, Overflow> {
    let fixed_fee = line_amount(currency, 1, plan.fixed_fee, 1, 1)?;
    let mut usage = BTreeMap::new();
    let mut total = fixed_fee;
    for m in &plan.metrics {
        let n = units.get(&m.metric_name).copied().unwrap_or(0);
        let mut sum = Decimal::ZERO;
        for part in price_usage(m.model, &m.tiers, n) {
            sum = sum
                .checked_add(line_amount(currency, part.quantity, part.unit_price, 1, 1)?)
                .ok_or(Overflow)?;
        }
        total = total.checked_add(sum).ok_or(Overflow)?;
        usage.insert(m.metric_name.clone(), sum);
    }
    Ok(MonthCost {
        fixed_fee,
        usage,
        total,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::billing::lines::MetricPricing;
    use crate::domain::billing::test_support::{d, tier};
    use crate::domain::catalog::PricingModel;

    #[test]
    fn graduated_month_worked_example() {
        // 29.00 a month; hits 1-1000 free, 1001-10000 at 0.002, above at 0.001.
        // 12,345 hits: 9,000 x 0.002 = 18.00 and 2,345 x 0.001 = 2.345 -> 2.35 (rounded per line).
        let mut plan = PlanTerms {
            id: "plan".into(),
            name: "Pro".into(),
            setup_fee: d("0"),
            fixed_fee: d("29"),
            metrics: vec![MetricPricing {
                metric_id: "met".into(),
                metric_name: "hits".into(),
                model: PricingModel::Graduated,
                tiers: vec![
                    tier(1, Some(1000), "0"),
                    tier(1001, Some(10000), "0.002"),
                    tier(10001, None, "0.001"),
                ],
            }],
        };
        let units = BTreeMap::from([("hits".to_string(), 12_345)]);
        let eur = Currency::parse("EUR").unwrap();
        let c = month_cost(eur, &plan, &units).unwrap();
        assert_eq!(c.fixed_fee, d("29.00"));
        assert_eq!(c.usage["hits"], d("20.35"));
        assert_eq!(c.total, d("49.35"));
        // No usage: the fixed fee only; JPY has no minor unit.
        plan.fixed_fee = d("1000.4");
        let jpy = Currency::parse("JPY").unwrap();
        assert_eq!(
            month_cost(jpy, &plan, &BTreeMap::new()).unwrap().total,
            d("1000")
        );
    }
}
