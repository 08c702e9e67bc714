//! "At N hits this plan costs X": a month of a plan priced exactly as a billing run would price it
//! (the fixed fee, and per metric one line per tier reached, each rounded once by
//! [`line_amount`]). Before VAT, without proration, trial or setup fee.

use std::collections::BTreeMap;

use rust_decimal::Decimal;

use super::currency::Currency;
use super::rating::{line_amount, price_usage, Overflow, Tier};
use crate::catalog::PricingModel;

/// One metric's pricing: its model and tiers (sorted by `from`).
#[derive(Clone, Debug)]
pub struct MetricPricing {
    pub model: PricingModel,
    pub tiers: Vec<Tier>,
}

/// What a month costs: the fixed fee, the usage per metric, and their sum.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MonthCost {
    pub fixed_fee: Decimal,
    pub usage: BTreeMap<String, Decimal>,
    pub total: Decimal,
}

pub fn month_cost(
    currency: Currency,
    fixed_fee: Decimal,
    pricing: &BTreeMap<String, MetricPricing>,
    units: &BTreeMap<String, u64>,
) -> Result<MonthCost, Overflow> {
    let fixed_fee = line_amount(currency, 1, fixed_fee, 1, 1)?;
    let mut usage = BTreeMap::new();
    let mut total = fixed_fee;
    for (metric, p) in pricing {
        let n = units.get(metric).copied().unwrap_or(0);
        let mut sum = Decimal::ZERO;
        for part in price_usage(p.model, &p.tiers, n) {
            sum = sum
                .checked_add(line_amount(currency, part.quantity, part.unit_price, 1, 1)?)
                .ok_or(Overflow)?;
        }
        total = total.checked_add(sum).ok_or(Overflow)?;
        usage.insert(metric.clone(), sum);
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
    use std::str::FromStr;

    fn d(s: &str) -> Decimal {
        Decimal::from_str(s).unwrap()
    }

    #[test]
    fn graduated_month_worked_example() {
        // 29.00 a month; hits 1-1000 free, 1001-10000 at 0.002, above at 0.001.
        // 12,345 hits: 9,000 x 0.002 = 18.00 and 2,345 x 0.001 = 2.345 -> 2.35 (rounded per line).
        let tiers = vec![
            Tier {
                from: 1,
                to: Some(1000),
                unit_price: d("0"),
                package_size: None,
            },
            Tier {
                from: 1001,
                to: Some(10000),
                unit_price: d("0.002"),
                package_size: None,
            },
            Tier {
                from: 10001,
                to: None,
                unit_price: d("0.001"),
                package_size: None,
            },
        ];
        let pricing = BTreeMap::from([(
            "hits".to_string(),
            MetricPricing {
                model: PricingModel::Graduated,
                tiers,
            },
        )]);
        let units = BTreeMap::from([("hits".to_string(), 12_345)]);
        let eur = Currency::parse("EUR").unwrap();
        let c = month_cost(eur, d("29"), &pricing, &units).unwrap();
        assert_eq!(c.fixed_fee, d("29.00"));
        assert_eq!(c.usage["hits"], d("20.35"));
        assert_eq!(c.total, d("49.35"));
        // No usage: the fixed fee only; JPY has no minor unit.
        let none = month_cost(
            Currency::parse("JPY").unwrap(),
            d("1000.4"),
            &pricing,
            &BTreeMap::new(),
        )
        .unwrap();
        assert_eq!(none.total, d("1000"));
    }
}
