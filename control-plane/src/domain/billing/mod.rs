//! Billing: settings, contracts, rating, invoices, billing runs, PDFs and the email outbox.
//!
//! The pure parts (what is owed and how it is rounded) are [`lines`], [`rating`], [`totals`] and
//! [`currency`]; the rest reads and writes the database around them.

pub mod calendar;
pub mod contracts;
pub mod currency;
pub mod invoices;
pub mod lines;
pub mod manual;
pub mod outbox;
pub mod pdf;
pub mod preview;
pub mod rating;
pub mod run;
pub mod settings;
pub mod totals;

/// Helpers shared by the billing unit tests.
#[cfg(test)]
pub(crate) mod test_support {
    use rust_decimal::Decimal;
    use std::str::FromStr;

    use super::rating::Tier;

    /// A decimal literal.
    pub fn d(s: &str) -> Decimal {
        Decimal::from_str(s).unwrap()
    }

    /// A price tier without a package size.
    pub fn tier(from: u64, to: Option<u64>, price: &str) -> Tier {
        Tier {
            from,
            to,
            unit_price: d(price),
            package_size: None,
        }
    }
}
