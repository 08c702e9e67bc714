//! An invoice's totals and the credit balance: `total = sum(lines) + tax`, never negative.
//!
//! - If the lines sum to less than zero (prepaid time credited on a downgrade), a "carried to
//!   credit balance" line brings the subtotal to zero and the account's balance grows by as much.
//! - If they sum to more than zero and the account has a balance, a "credit applied" line uses as
//!   much of it as the subtotal absorbs.
//! - Tax is `subtotal × vat_rate / 100`, rounded once (the only rounding of an invoice besides its
//!   lines). The balance is kept net of tax, so it is taxed when it is used.

use rust_decimal::Decimal;

use super::currency::Currency;
use super::lines::{LineKind, NewLine};

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Totals {
    pub subtotal: Decimal,
    pub tax: Decimal,
    pub total: Decimal,
}

/// The result of settling an invoice: an optional balance line, the new balance, the totals.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Settlement {
    pub balance_line: Option<NewLine>,
    pub balance_after: Decimal,
    pub totals: Totals,
}

/// A broken invariant: refuse to write the invoice rather than write a wrong one.
#[derive(Debug, PartialEq, Eq)]
pub struct InvariantBroken(pub String);

fn balance_line(kind: LineKind, amount: Decimal, currency: Currency) -> NewLine {
    let description = match kind {
        LineKind::CreditApplied => "Credit balance applied".to_string(),
        _ => "Credit carried to the account's balance".to_string(),
    };
    let amount = currency.round(amount);
    NewLine {
        key: None,
        kind,
        contract_id: None,
        description,
        quantity: Decimal::ONE,
        unit_price: amount,
        amount,
        period_start: None,
        period_end: None,
    }
}

/// Settles an invoice whose lines sum to `lines_sum` for an account holding `balance`.
pub fn settle(
    lines_sum: Decimal,
    balance: Decimal,
    vat_rate: Decimal,
    currency: Currency,
) -> Settlement {
    let balance = balance.max(Decimal::ZERO);
    let (line, balance_after) = if lines_sum < Decimal::ZERO {
        (
            Some(balance_line(LineKind::CreditCarried, -lines_sum, currency)),
            balance - lines_sum,
        )
    } else if lines_sum > Decimal::ZERO && balance > Decimal::ZERO {
        let used = balance.min(lines_sum);
        (
            Some(balance_line(LineKind::CreditApplied, -used, currency)),
            balance - used,
        )
    } else {
        (None, balance)
    };
    let subtotal = lines_sum + line.as_ref().map_or(Decimal::ZERO, |l| l.amount);
    let tax = currency.round(subtotal * vat_rate / Decimal::ONE_HUNDRED);
    let total = currency.round(subtotal + tax);
    Settlement {
        balance_line: line,
        balance_after,
        totals: Totals {
            subtotal: currency.round(subtotal),
            tax,
            total,
        },
    }
}

/// The invariant every stored invoice satisfies; checked before any invoice is written.
pub fn check(
    amounts: &[Decimal],
    totals: &Totals,
    currency: Currency,
) -> Result<(), InvariantBroken> {
    let sum: Decimal = amounts.iter().sum();
    if let Some(a) = amounts.iter().find(|a| currency.round(**a) != **a) {
        return Err(InvariantBroken(format!(
            "line amount {a} is not rounded to {}",
            currency.code
        )));
    }
    if sum != totals.subtotal || totals.total != totals.subtotal + totals.tax {
        return Err(InvariantBroken(format!(
            "total {} != sum of lines {} + tax {}",
            totals.total, sum, totals.tax
        )));
    }
    if totals.total < Decimal::ZERO || totals.subtotal < Decimal::ZERO {
        return Err(InvariantBroken(format!("negative total {}", totals.total)));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::billing::test_support::d;
    use proptest::prelude::*;

    #[test]
    fn carries_and_applies_credit() {
        let usd = Currency::parse("USD").unwrap();
        // Lines sum to -30.00: carried, subtotal 0, balance 30.
        let s = settle(d("-30.00"), d("0"), d("19"), usd);
        assert_eq!(s.balance_line.as_ref().unwrap().amount, d("30.00"));
        assert_eq!(s.balance_after, d("30.00"));
        assert_eq!(
            s.totals,
            Totals {
                subtotal: d("0.00"),
                tax: d("0.00"),
                total: d("0.00")
            }
        );
        // Next invoice of 50.00 uses the 30.00: subtotal 20.00, 19% VAT 3.80, total 23.80.
        let s = settle(d("50.00"), d("30.00"), d("19"), usd);
        assert_eq!(s.balance_line.as_ref().unwrap().amount, d("-30.00"));
        assert_eq!(s.balance_after, d("0"));
        assert_eq!(
            s.totals,
            Totals {
                subtotal: d("20.00"),
                tax: d("3.80"),
                total: d("23.80")
            }
        );
        // A balance larger than the invoice is used only as far as needed.
        let s = settle(d("10.00"), d("25.00"), d("0"), usd);
        assert_eq!(s.balance_after, d("15.00"));
        assert_eq!(s.totals.total, d("0.00"));
    }

    proptest! {
        /// For any lines, balance and VAT: total = sum(lines) + tax, never negative, every amount
        /// rounded to the currency, and the balance only moves by the balance line.
        #[test]
        fn invariant_holds(
            cents in proptest::collection::vec(-100_000i64..1_000_000, 0..20),
            balance in 0i64..2_000_000,
            vat in 0i64..3000,
            code in proptest::sample::select(vec!["USD", "JPY", "KWD"]),
        ) {
            let currency = Currency::parse(code).unwrap();
            let amounts: Vec<Decimal> = cents.iter().map(|c| currency.round(Decimal::new(*c, 2))).collect();
            let sum: Decimal = amounts.iter().sum();
            let balance = currency.round(Decimal::new(balance, 2));
            let s = settle(sum, balance, Decimal::new(vat, 2), currency);
            let mut all = amounts.clone();
            if let Some(l) = &s.balance_line {
                all.push(l.amount);
                prop_assert_eq!(s.balance_after - balance, l.amount);
            } else {
                prop_assert_eq!(s.balance_after, balance);
            }
            prop_assert!(check(&all, &s.totals, currency).is_ok());
            prop_assert!(s.balance_after >= Decimal::ZERO);
        }
    }
}
