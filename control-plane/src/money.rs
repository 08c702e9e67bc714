//! Money and prices: `rust_decimal::Decimal` in code, decimal strings in JSON (`"10.00"`), TEXT in
//! the database. Never a float. Amounts here are as the admin typed them; rounding to the
//! currency's minor unit happens once, when invoice lines are rated (billing).

use rust_decimal::Decimal;
use std::str::FromStr;

/// Most decimal places accepted in a price (unit prices like "0.0000125" per call are common).
pub const MAX_PRICE_SCALE: u32 = 10;
/// Largest amount accepted anywhere: far above any real price, far below Decimal's limits, so
/// sums over millions of lines cannot overflow.
pub const MAX_AMOUNT: i64 = 1_000_000_000_000;

/// Why a money string was refused (the caller names the field).
pub fn parse_amount(raw: &str) -> Result<Decimal, String> {
    let s = raw.trim();
    if s.is_empty() || s != raw {
        return Err("must be a decimal string like \"10.00\"".into());
    }
    if s.contains(['e', 'E']) {
        return Err("must be a plain decimal string, not scientific notation".into());
    }
    let d = Decimal::from_str(s).map_err(|_| format!("{raw:?} is not a decimal number"))?;
    if d.is_sign_negative() && !d.is_zero() {
        return Err("must not be negative".into());
    }
    if d.scale() > MAX_PRICE_SCALE {
        return Err(format!("at most {MAX_PRICE_SCALE} decimal places"));
    }
    if d > Decimal::from(MAX_AMOUNT) {
        return Err(format!("at most {MAX_AMOUNT}"));
    }
    Ok(d.normalize().max(Decimal::ZERO))
}

/// An amount read back from the database that is not a decimal: a corrupted row or a bug in a
/// writer. Reading it as zero would bill, credit or charge the wrong amount, so every reader
/// stops instead (an internal error, logged with the value).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CorruptAmount {
    pub raw: String,
}

impl std::fmt::Display for CorruptAmount {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "stored amount {:?} is not a decimal", self.raw)
    }
}

impl std::error::Error for CorruptAmount {}

/// An amount as stored (TEXT written by Tollgate itself): parsed exactly, never defaulted.
pub fn stored(raw: &str) -> Result<Decimal, CorruptAmount> {
    Decimal::from_str(raw).map_err(|_| CorruptAmount { raw: raw.into() })
}

/// The canonical string stored and returned: at least two decimals (`10` -> `"10.00"`), more when
/// the price has them (`"0.0001"`).
pub fn format_amount(d: Decimal) -> String {
    let mut d = d.normalize();
    if d.scale() < 2 {
        d.rescale(2);
    }
    d.to_string()
}

/// An amount of money as the APIs show it: a [`Decimal`] serialized as its canonical string
/// ([`format_amount`]: `"10.00"`, `"0.000125"`), never a JSON number. Response types use it for
/// every money field, so the OpenAPI document says "string" exactly where the wire has one.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Amount(pub Decimal);

impl Amount {
    /// An amount as stored (see [`stored`]): exact, or an error, never zero.
    pub fn stored(raw: &str) -> Result<Amount, CorruptAmount> {
        stored(raw).map(Amount)
    }
}

impl From<Decimal> for Amount {
    fn from(d: Decimal) -> Self {
        Amount(d)
    }
}

impl std::fmt::Display for Amount {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&format_amount(self.0))
    }
}

impl serde::Serialize for Amount {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&format_amount(self.0))
    }
}

/// The pattern of [`format_amount`]'s output, as the OpenAPI document states it.
pub const AMOUNT_PATTERN: &str = r"^-?[0-9]+\.[0-9]{2,}$";

impl utoipa::PartialSchema for Amount {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        utoipa::openapi::ObjectBuilder::new()
            .schema_type(utoipa::openapi::schema::Type::String)
            .pattern(Some(AMOUNT_PATTERN))
            .description(Some(
                "A decimal amount as a string, at least two decimals (\"10.00\", \"0.000125\")",
            ))
            .into()
    }
}

impl utoipa::ToSchema for Amount {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_formats() {
        assert_eq!(format_amount(parse_amount("10").unwrap()), "10.00");
        assert_eq!(format_amount(parse_amount("10.5").unwrap()), "10.50");
        assert_eq!(
            format_amount(parse_amount("0.00012500").unwrap()),
            "0.000125"
        );
        assert_eq!(format_amount(parse_amount("0").unwrap()), "0.00");
        assert_eq!(format_amount(parse_amount("-0").unwrap()), "0.00");
    }

    #[test]
    fn amounts_serialize_as_canonical_strings() {
        let a = Amount(parse_amount("10.5").unwrap());
        assert_eq!(serde_json::to_string(&a).unwrap(), "\"10.50\"");
        assert_eq!(Amount::stored("x").unwrap_err().raw, "x");
    }

    #[test]
    fn stored_amounts_parse_exactly_or_fail() {
        assert_eq!(stored("-12.50").unwrap(), Decimal::new(-1250, 2));
        for bad in ["", "abc", "1,00", "NaN"] {
            assert_eq!(stored(bad).unwrap_err().raw, bad);
        }
    }

    #[test]
    fn refuses_bad_money() {
        for bad in [
            "",
            " 1",
            "-1",
            "1e3",
            "abc",
            "0.00000000001",
            "1000000000001",
            "1,00",
        ] {
            assert!(parse_amount(bad).is_err(), "{bad}");
        }
    }
}
