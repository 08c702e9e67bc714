//! Rating arithmetic: what usage costs under a metric's pricing rules, and how a monthly fee is
//! prorated. Pure functions over `Decimal`; amounts come out unrounded, and the caller rounds each
//! line once with [`Currency::round`](super::currency::Currency::round) via [`line_amount`].

use rust_decimal::Decimal;

use super::currency::Currency;
use crate::domain::catalog::PricingModel;

/// One pricing rule of a metric: units `from..=to` (1-based), a price per unit (or per package).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Tier {
    pub from: u64,
    pub to: Option<u64>,
    pub unit_price: Decimal,
    pub package_size: Option<u64>,
}

/// A priced part of a metric's usage: becomes one invoice line.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Part {
    /// First and last unit this part covers.
    pub first_unit: u64,
    pub last_unit: u64,
    /// Units, or packages for package pricing.
    pub quantity: u64,
    pub unit_price: Decimal,
}

/// Prices `units` of a metric. `tiers` are sorted by `from` and do not overlap (the catalog
/// checks both). Units no tier covers are free.
/// - graduated: each unit at the price of its tier (3scale's behaviour), one part per tier reached;
/// - volume: every unit at the price of the highest tier whose `from` the total reaches;
/// - package: per tier, one price per started block of `package_size` units.
pub fn price_usage(model: PricingModel, tiers: &[Tier], units: u64) -> Vec<Part> {
    if units == 0 {
        return Vec::new();
    }
    match model {
        PricingModel::Volume => tiers
            .iter()
            .rev()
            .find(|t| t.from <= units)
            .map(|t| Part {
                first_unit: 1,
                last_unit: units,
                quantity: units,
                unit_price: t.unit_price,
            })
            .into_iter()
            .collect(),
        PricingModel::Graduated | PricingModel::Package => tiers
            .iter()
            .filter_map(|t| {
                let first = t.from.max(1);
                let last = t.to.unwrap_or(u64::MAX).min(units);
                if last < first {
                    return None;
                }
                let in_tier = last - first + 1;
                let quantity = match (model, t.package_size) {
                    (PricingModel::Package, Some(size)) if size > 0 => in_tier.div_ceil(size),
                    _ => in_tier,
                };
                Some(Part {
                    first_unit: first,
                    last_unit: last,
                    quantity,
                    unit_price: t.unit_price,
                })
            })
            .collect(),
    }
}

/// Why a line could not be rated.
#[derive(Debug, PartialEq, Eq)]
pub struct Overflow;

/// `quantity × unit_price × numerator / denominator`, rounded once to the currency's minor unit.
/// The fraction prorates (days used / days in the month); `1/1` for whole quantities.
pub fn line_amount(
    currency: Currency,
    quantity: u64,
    unit_price: Decimal,
    numerator: i64,
    denominator: i64,
) -> Result<Decimal, Overflow> {
    if denominator <= 0 {
        return Err(Overflow);
    }
    let raw = Decimal::from(quantity)
        .checked_mul(unit_price)
        .and_then(|v| v.checked_mul(Decimal::from(numerator)))
        .and_then(|v| v.checked_div(Decimal::from(denominator)))
        .ok_or(Overflow)?;
    Ok(currency.round(raw))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::billing::test_support::{d, tier};
    use proptest::prelude::*;

    fn usd() -> Currency {
        Currency::parse("USD").unwrap()
    }
    fn total(model: PricingModel, tiers: &[Tier], units: u64) -> Decimal {
        price_usage(model, tiers, units)
            .iter()
            .map(|p| line_amount(usd(), p.quantity, p.unit_price, 1, 1).unwrap())
            .sum()
    }

    /// The same 2,500 calls under the three models, checked by hand:
    /// tiers 1–1,000 at 0.00, 1,001–2,000 at 0.01, 2,001+ at 0.005.
    /// - graduated: 1,000 × 0 + 1,000 × 0.01 + 500 × 0.005 = 0 + 10.00 + 2.50 = 12.50
    /// - volume: 2,500 reaches the third tier: 2,500 × 0.005 = 12.50 (same by coincidence; at
    ///   1,999 calls graduated is 9.99 and volume 1,999 × 0.01 = 19.99)
    /// - package of 1,000 calls at 4.00: 2,500 calls = 3 started packages = 12.00
    #[test]
    fn worked_example_three_models_on_the_same_usage() {
        let tiers = [
            tier(1, Some(1000), "0"),
            tier(1001, Some(2000), "0.01"),
            tier(2001, None, "0.005"),
        ];
        assert_eq!(total(PricingModel::Graduated, &tiers, 2500), d("12.50"));
        assert_eq!(price_usage(PricingModel::Graduated, &tiers, 2500).len(), 3);
        assert_eq!(total(PricingModel::Volume, &tiers, 2500), d("12.50"));
        assert_eq!(total(PricingModel::Graduated, &tiers, 1999), d("9.99"));
        assert_eq!(total(PricingModel::Volume, &tiers, 1999), d("19.99"));
        let package = [Tier {
            from: 1,
            to: None,
            unit_price: d("4.00"),
            package_size: Some(1000),
        }];
        assert_eq!(total(PricingModel::Package, &package, 2500), d("12.00"));
        assert_eq!(total(PricingModel::Package, &package, 2000), d("8.00"));
        assert_eq!(total(PricingModel::Package, &package, 1), d("4.00"));
        assert_eq!(total(PricingModel::Package, &package, 0), d("0"));
    }

    /// Units below the first tier are free; a gap between tiers is free under graduated pricing.
    #[test]
    fn uncovered_units_are_free() {
        let tiers = [tier(101, Some(200), "1"), tier(301, None, "2")];
        // 150 units: 50 in the first tier -> 50.00.
        assert_eq!(total(PricingModel::Graduated, &tiers, 150), d("50.00"));
        // 350: 100 × 1 + 50 × 2 = 200.00; volume: 350 × 2 = 700.00.
        assert_eq!(total(PricingModel::Graduated, &tiers, 350), d("200.00"));
        assert_eq!(total(PricingModel::Volume, &tiers, 350), d("700.00"));
        assert_eq!(total(PricingModel::Volume, &tiers, 50), d("0"));
    }

    /// JPY has no minor unit, KWD three decimals: 333 calls at 0.5 JPY = 166.5 -> 167 JPY;
    /// at 0.0015 KWD = 0.4995 -> 0.500 KWD. A 3,000 JPY fee for 10 of 30 days = 1,000 JPY;
    /// a 10 KWD fee for 10 of 31 days = 3.2258... -> 3.226 KWD.
    #[test]
    fn worked_example_jpy_and_kwd_rounding() {
        let jpy = Currency::parse("JPY").unwrap();
        let kwd = Currency::parse("KWD").unwrap();
        assert_eq!(
            jpy.format(line_amount(jpy, 333, d("0.5"), 1, 1).unwrap()),
            "167"
        );
        assert_eq!(
            kwd.format(line_amount(kwd, 333, d("0.0015"), 1, 1).unwrap()),
            "0.500"
        );
        assert_eq!(
            jpy.format(line_amount(jpy, 1, d("3000"), 10, 30).unwrap()),
            "1000"
        );
        assert_eq!(
            kwd.format(line_amount(kwd, 1, d("10"), 10, 31).unwrap()),
            "3.226"
        );
    }

    #[test]
    fn overflow_is_an_error_not_a_panic() {
        assert_eq!(
            line_amount(usd(), u64::MAX, d("1000000000000"), 1, 1),
            Err(Overflow)
        );
        assert_eq!(line_amount(usd(), 1, d("1"), 1, 0), Err(Overflow));
    }

    fn tiers_strategy() -> impl Strategy<Value = Vec<Tier>> {
        // Up to 4 adjacent tiers with random widths and prices up to 1.0000 per unit.
        proptest::collection::vec((1u64..5_000, 0u64..10_000), 1..5).prop_map(|specs| {
            let mut from = 1;
            let n = specs.len();
            specs
                .into_iter()
                .enumerate()
                .map(|(i, (width, price))| {
                    let to = (i + 1 < n).then(|| from + width - 1);
                    let t = Tier {
                        from,
                        to,
                        unit_price: Decimal::new(price as i64, 4),
                        package_size: None,
                    };
                    from += width;
                    t
                })
                .collect()
        })
    }

    proptest! {
        /// Graduated parts cover every unit exactly once when tiers are adjacent from 1.
        #[test]
        fn graduated_parts_cover_all_units(tiers in tiers_strategy(), units in 0u64..50_000) {
            let parts = price_usage(PricingModel::Graduated, &tiers, units);
            prop_assert_eq!(parts.iter().map(|p| p.quantity).sum::<u64>(), units);
            let mut next = 1;
            for p in &parts {
                prop_assert_eq!(p.first_unit, next);
                next = p.last_unit + 1;
            }
        }

        /// More usage never costs less (graduated and package), and every line is rounded to cents.
        #[test]
        fn usage_cost_is_monotonic_and_rounded(tiers in tiers_strategy(), units in 0u64..50_000, more in 0u64..5_000) {
            for model in [PricingModel::Graduated, PricingModel::Package] {
                prop_assert!(total(model, &tiers, units) <= total(model, &tiers, units + more));
            }
            for p in price_usage(PricingModel::Volume, &tiers, units) {
                let a = line_amount(usd(), p.quantity, p.unit_price, 1, 1).unwrap();
                prop_assert_eq!(a.scale(), 2);
                prop_assert!((a - Decimal::from(p.quantity) * p.unit_price).abs() <= d("0.005"));
            }
        }

        /// Prorating a fee over the days of a month split at any day sums to the whole fee within
        /// one minor unit per extra part (each part is rounded once).
        #[test]
        fn proration_adds_up(fee_cents in 0i64..10_000_000, month_days in 28i64..=31, split in 0i64..=31) {
            let split = split.min(month_days);
            let fee = Decimal::new(fee_cents, 2);
            let whole = line_amount(usd(), 1, fee, month_days, month_days).unwrap();
            prop_assert_eq!(whole, fee);
            let a = line_amount(usd(), 1, fee, split, month_days).unwrap();
            let b = line_amount(usd(), 1, fee, month_days - split, month_days).unwrap();
            prop_assert!((a + b - fee).abs() <= d("0.01"));
        }
    }
}
