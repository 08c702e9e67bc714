//! ISO 4217 currencies and their minor units, and the one rounding rule of billing.
//!
//! Every invoice line is rounded exactly once, when it is rated, to the currency's minor unit
//! (JPY 0 decimals, USD 2, KWD 3), half away from zero ("commercial rounding": 0.005 USD -> 0.01).
//! Tax is rounded once per invoice, on the subtotal. Nothing else is ever rounded.

use rust_decimal::{Decimal, RoundingStrategy};

/// Active ISO 4217 codes (as of the 2025 list) whose minor unit is not 2 decimals.
const EXPONENT_0: &[&str] = &[
    "BIF", "CLP", "DJF", "GNF", "ISK", "JPY", "KMF", "KRW", "PYG", "RWF", "UGX", "UYI", "VND",
    "VUV", "XAF", "XOF", "XPF",
];
const EXPONENT_3: &[&str] = &["BHD", "IQD", "JOD", "KWD", "LYD", "OMR", "TND"];
const EXPONENT_4: &[&str] = &["CLF", "UYW"];
/// Active ISO 4217 codes with two decimals.
const EXPONENT_2: &[&str] = &[
    "AED", "AFN", "ALL", "AMD", "ANG", "AOA", "ARS", "AUD", "AWG", "AZN", "BAM", "BBD", "BDT",
    "BGN", "BMD", "BND", "BOB", "BOV", "BRL", "BSD", "BTN", "BWP", "BYN", "BZD", "CAD", "CDF",
    "CHE", "CHF", "CHW", "CNY", "COP", "COU", "CRC", "CUP", "CVE", "CZK", "DKK", "DOP", "DZD",
    "EGP", "ERN", "ETB", "EUR", "FJD", "FKP", "GBP", "GEL", "GHS", "GIP", "GMD", "GTQ", "GYD",
    "HKD", "HNL", "HTG", "HUF", "IDR", "ILS", "INR", "IRR", "JMD", "KES", "KGS", "KHR", "KPW",
    "KYD", "KZT", "LAK", "LBP", "LKR", "LRD", "LSL", "MAD", "MDL", "MGA", "MKD", "MMK", "MNT",
    "MOP", "MRU", "MUR", "MVR", "MWK", "MXN", "MXV", "MYR", "MZN", "NAD", "NGN", "NIO", "NOK",
    "NPR", "NZD", "PAB", "PEN", "PGK", "PHP", "PKR", "PLN", "QAR", "RON", "RSD", "RUB", "SAR",
    "SBD", "SCR", "SDG", "SEK", "SGD", "SHP", "SLE", "SOS", "SRD", "SSP", "STN", "SVC", "SYP",
    "SZL", "THB", "TJS", "TMT", "TOP", "TRY", "TTD", "TWD", "TZS", "UAH", "USD", "USN", "UYU",
    "UZS", "VED", "VES", "WST", "XCD", "XCG", "YER", "ZAR", "ZMW", "ZWG",
];

/// A known ISO 4217 currency.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Currency {
    pub code: &'static str,
    /// Digits after the decimal point of the minor unit.
    pub exponent: u32,
}

/// A stored currency code that is not one of ours (a row edited by hand, or written by another
/// version): an error wherever it is met, never a guess (an amount charged in the wrong currency).
#[derive(Debug, PartialEq, Eq)]
pub struct UnknownCurrency(pub String);

impl Currency {
    /// The currency of a stored code (invoices, settings), or [`UnknownCurrency`].
    pub fn stored(code: &str) -> Result<Currency, UnknownCurrency> {
        Currency::parse(code).ok_or_else(|| UnknownCurrency(code.to_string()))
    }

    /// The currency for an upper-case code, or `None` when ISO 4217 has no such active code.
    pub fn parse(code: &str) -> Option<Currency> {
        for (list, exponent) in [
            (EXPONENT_2, 2),
            (EXPONENT_0, 0),
            (EXPONENT_3, 3),
            (EXPONENT_4, 4),
        ] {
            if let Some(c) = list.iter().find(|c| **c == code) {
                return Some(Currency { code: c, exponent });
            }
        }
        None
    }

    /// Rounds to the minor unit, half away from zero. The only rounding in billing.
    pub fn round(&self, amount: Decimal) -> Decimal {
        let mut r =
            amount.round_dp_with_strategy(self.exponent, RoundingStrategy::MidpointAwayFromZero);
        r.rescale(self.exponent);
        r
    }

    /// An amount as written on invoices and in JSON: exactly `exponent` decimals.
    pub fn format(&self, amount: Decimal) -> String {
        let mut a = amount;
        a.rescale(self.exponent);
        if a.is_zero() {
            a.set_sign_positive(true);
        }
        a.to_string()
    }
}

/// An amount in a currency as invoices show and store it: exactly the currency's decimals
/// (`"1250"` JPY, `"12.50"` EUR, `"1.250"` KWD; [`Currency::format`]). Not
/// [`crate::money::Amount`], whose at-least-two decimals would write `"1250.00"` yen.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Money {
    pub amount: Decimal,
    pub currency: Currency,
}

impl std::fmt::Display for Money {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.currency.format(self.amount))
    }
}

impl serde::Serialize for Money {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl utoipa::PartialSchema for Money {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        utoipa::openapi::ObjectBuilder::new()
            .schema_type(utoipa::openapi::schema::Type::String)
            .pattern(Some(r"^-?[0-9]+(\.[0-9]+)?$"))
            .description(Some(
                "A decimal amount as a string with the currency's decimals (\"12.50\" EUR, \"1250\" JPY)",
            ))
            .into()
    }
}

impl utoipa::ToSchema for Money {}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::billing::test_support::d;

    #[test]
    fn knows_minor_units() {
        assert_eq!(Currency::parse("JPY").unwrap().exponent, 0);
        assert_eq!(Currency::parse("USD").unwrap().exponent, 2);
        assert_eq!(Currency::parse("KWD").unwrap().exponent, 3);
        assert_eq!(Currency::parse("CLF").unwrap().exponent, 4);
        assert!(Currency::parse("usd").is_none());
        assert!(Currency::parse("XXX").is_none());
        assert!(Currency::parse("").is_none());
        assert_eq!(Currency::stored("ZZZ"), Err(UnknownCurrency("ZZZ".into())));
        assert_eq!(Currency::stored("JPY").map(|c| c.exponent), Ok(0));
    }

    #[test]
    fn rounds_half_away_from_zero_once() {
        let usd = Currency::parse("USD").unwrap();
        assert_eq!(usd.format(usd.round(d("0.005"))), "0.01");
        assert_eq!(usd.format(usd.round(d("0.0049999"))), "0.00");
        assert_eq!(usd.format(usd.round(d("-0.005"))), "-0.01");
        assert_eq!(usd.format(usd.round(d("10"))), "10.00");
        let jpy = Currency::parse("JPY").unwrap();
        assert_eq!(jpy.format(jpy.round(d("1234.5"))), "1235");
        assert_eq!(jpy.format(jpy.round(d("1234.49"))), "1234");
        let kwd = Currency::parse("KWD").unwrap();
        assert_eq!(kwd.format(kwd.round(d("1.23450"))), "1.235");
        assert_eq!(kwd.format(kwd.round(d("7"))), "7.000");
    }
}
