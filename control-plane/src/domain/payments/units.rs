//! How each provider wants an amount written, one table per provider.
//!
//! Invoices are rounded once, when rated, to the ISO 4217 minor unit of their currency
//! (`billing::currency`). A provider does not always use that unit: Stripe writes ISK in
//! hundredths (and accepts only whole krónur), MGA in whole ariary although ISO gives it two
//! decimals, and the three-decimal currencies in thousandths with a last digit of 0. The
//! conversion to the provider's unit is done here and only here, at the charge, by
//! [`stripe_amount`] / [`braintree_amount`]; when the provider's smallest chargeable step is coarser
//! than the invoice's minor unit, the amount is rounded to that step half away from zero (the same
//! rule as billing), which is the only rounding after rating. A currency a provider cannot charge
//! is refused ([`UnitError::Unsupported`]) before any call to it, and when the billing currency or
//! the gateway is saved.

use rust_decimal::{Decimal, RoundingStrategy};

use super::config::MerchantAccounts;
use super::ProviderKind;
use crate::domain::billing::currency::Currency;
use crate::domain::DomainError;

/// Stripe's zero-decimal currencies: the API amount is in whole units.
const STRIPE_ZERO_DECIMAL: &[&str] = &[
    "BIF", "CLP", "DJF", "GNF", "JPY", "KMF", "KRW", "MGA", "PYG", "RWF", "UGX", "VND", "VUV",
    "XAF", "XOF", "XPF",
];
/// Stripe's three-decimal currencies: thousandths, and the last digit must be 0.
const STRIPE_THREE_DECIMAL: &[&str] = &["BHD", "JOD", "KWD", "OMR", "TND"];
/// Stripe's special case: two-decimal in the API, but only whole units are charged (multiples
/// of 100) since April 2023.
const STRIPE_TWO_DECIMAL_WHOLE: &[&str] = &["ISK"];
/// ISO 4217 codes Stripe does not present charges in (fund and accounting codes, currencies under
/// sanctions, and the ones absent from Stripe's list of presentment currencies).
const STRIPE_UNSUPPORTED: &[&str] = &[
    "BOV", "CHE", "CHW", "CLF", "COU", "CUP", "IQD", "IRR", "KPW", "LYD", "MXV", "SYP", "USN",
    "UYI", "UYW",
];
/// ISO 4217 fund and accounting codes: no card is charged in them (Braintree merchant accounts
/// are opened in presentment currencies).
const BRAINTREE_UNSUPPORTED: &[&str] = &[
    "BOV", "CHE", "CHW", "CLF", "COU", "MXV", "USN", "UYI", "UYW",
];

#[derive(Debug, PartialEq, Eq)]
pub enum UnitError {
    /// The provider cannot charge in this currency.
    Unsupported {
        provider: &'static str,
        currency: &'static str,
    },
    /// Braintree has no merchant account in this currency (it would charge the default
    /// account's currency instead).
    NoMerchantAccount { currency: &'static str },
    /// The amount does not fit the provider's integer.
    TooLarge,
}

impl From<UnitError> for DomainError {
    fn from(e: UnitError) -> DomainError {
        match e {
            UnitError::Unsupported { provider, currency } => DomainError::invalid(
                "currency",
                "currency_not_supported_by_provider",
                format!("{provider} cannot charge in {currency}"),
            ),
            UnitError::NoMerchantAccount { currency } => DomainError::invalid(
                "currency",
                "currency_has_no_merchant_account",
                format!(
                    "the Braintree gateway settings have no merchant account in {currency} (merchant_accounts): nothing is charged in another currency"
                ),
            ),
            UnitError::TooLarge => DomainError::invalid(
                "amount",
                "amount_too_large",
                "the amount does not fit the payment provider's amount field",
            ),
        }
    }
}

/// Stripe's (decimal places of its API amount, smallest step in those units).
fn stripe_unit(currency: Currency) -> Result<(u32, i64), UnitError> {
    let code = currency.code;
    if STRIPE_UNSUPPORTED.contains(&code) {
        return Err(UnitError::Unsupported {
            provider: "stripe",
            currency: code,
        });
    }
    Ok(if STRIPE_ZERO_DECIMAL.contains(&code) {
        (0, 1)
    } else if STRIPE_THREE_DECIMAL.contains(&code) {
        (3, 10)
    } else if STRIPE_TWO_DECIMAL_WHOLE.contains(&code) {
        (2, 100)
    } else {
        (2, 1)
    })
}

/// Whether `provider` can charge in `currency`.
pub fn check(provider: ProviderKind, currency: Currency) -> Result<(), UnitError> {
    match provider {
        ProviderKind::Stripe => stripe_unit(currency).map(|_| ()),
        ProviderKind::Braintree if BRAINTREE_UNSUPPORTED.contains(&currency.code) => {
            Err(UnitError::Unsupported {
                provider: "braintree",
                currency: currency.code,
            })
        }
        ProviderKind::Braintree => Ok(()),
    }
}

/// Whether the gateway of `provider` with `accounts` can charge in `currency`: [`check`], and for
/// Braintree a merchant account in that currency (a charge names it; none is ever left to
/// Braintree's default account, whose currency may be another).
pub fn check_gateway(
    provider: ProviderKind,
    accounts: &MerchantAccounts,
    currency: Currency,
) -> Result<(), UnitError> {
    check(provider, currency)?;
    if provider == ProviderKind::Braintree && accounts.for_currency(currency).is_none() {
        return Err(UnitError::NoMerchantAccount {
            currency: currency.code,
        });
    }
    Ok(())
}

/// `amount` (in `currency`'s major unit) as Stripe's integer API amount.
pub fn stripe_amount(currency: Currency, amount: Decimal) -> Result<i64, UnitError> {
    let (places, step) = stripe_unit(currency)?;
    let scaled = amount
        .checked_mul(Decimal::from(10i64.pow(places)))
        .ok_or(UnitError::TooLarge)?;
    let step = Decimal::from(step);
    let rounded =
        (scaled / step).round_dp_with_strategy(0, RoundingStrategy::MidpointAwayFromZero) * step;
    rust_decimal::prelude::ToPrimitive::to_i64(&rounded).ok_or(UnitError::TooLarge)
}

/// `amount` as Braintree's decimal string in the currency's unit (ISO decimals: "49.00", "1500",
/// "1.235").
pub fn braintree_amount(currency: Currency, amount: Decimal) -> Result<String, UnitError> {
    check(ProviderKind::Braintree, currency)?;
    Ok(currency.format(currency.round(amount)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::billing::test_support::d;

    fn c(code: &str) -> Currency {
        Currency::parse(code).unwrap()
    }

    #[test]
    fn stripe_two_decimal_currencies_in_cents() {
        assert_eq!(stripe_amount(c("USD"), d("49.00")), Ok(4900));
        assert_eq!(stripe_amount(c("EUR"), d("0.01")), Ok(1));
        // HUF and TWD: two decimals in charges (only payouts are whole units).
        assert_eq!(stripe_amount(c("HUF"), d("10.45")), Ok(1045));
        assert_eq!(stripe_amount(c("TWD"), d("10.45")), Ok(1045));
    }

    #[test]
    fn stripe_zero_decimal_currencies_as_is() {
        assert_eq!(stripe_amount(c("JPY"), d("1500")), Ok(1500));
        assert_eq!(stripe_amount(c("UGX"), d("3000")), Ok(3000));
        // MGA has two decimals in ISO 4217 but none at Stripe: rounded once, here.
        assert_eq!(stripe_amount(c("MGA"), d("1000.00")), Ok(1000));
        assert_eq!(stripe_amount(c("MGA"), d("1000.50")), Ok(1001));
        assert_eq!(stripe_amount(c("MGA"), d("1000.49")), Ok(1000));
    }

    #[test]
    fn stripe_isk_in_hundredths_of_whole_kronur() {
        assert_eq!(stripe_amount(c("ISK"), d("3000")), Ok(300_000));
        assert_eq!(stripe_amount(c("ISK"), d("1")), Ok(100));
    }

    #[test]
    fn stripe_three_decimal_currencies_end_in_zero() {
        assert_eq!(stripe_amount(c("KWD"), d("1.230")), Ok(1230));
        assert_eq!(stripe_amount(c("KWD"), d("1.235")), Ok(1240));
        assert_eq!(stripe_amount(c("KWD"), d("1.234")), Ok(1230));
        for code in ["BHD", "JOD", "OMR", "TND"] {
            assert_eq!(stripe_amount(c(code), d("5.124")), Ok(5120), "{code}");
        }
    }

    #[test]
    fn stripe_refuses_what_it_cannot_charge() {
        for code in ["CLF", "IQD", "LYD", "UYW", "KPW"] {
            assert_eq!(
                stripe_amount(c(code), d("1")),
                Err(UnitError::Unsupported {
                    provider: "stripe",
                    currency: c(code).code
                }),
                "{code}"
            );
            assert!(check(ProviderKind::Stripe, c(code)).is_err());
        }
        assert!(check(ProviderKind::Stripe, c("ISK")).is_ok());
        assert_eq!(
            stripe_amount(c("USD"), Decimal::MAX),
            Err(UnitError::TooLarge)
        );
    }

    #[test]
    fn braintree_decimal_strings_in_the_currency_unit() {
        assert_eq!(braintree_amount(c("USD"), d("49")).unwrap(), "49.00");
        assert_eq!(braintree_amount(c("JPY"), d("1500")).unwrap(), "1500");
        assert_eq!(braintree_amount(c("KWD"), d("1.235")).unwrap(), "1.235");
        assert_eq!(braintree_amount(c("ISK"), d("3000")).unwrap(), "3000");
        assert!(braintree_amount(c("CLF"), d("1")).is_err());
        assert!(check(ProviderKind::Braintree, c("IQD")).is_ok());
    }

    fn accounts(pairs: &[(&str, &str)]) -> crate::domain::DomainResult<MerchantAccounts> {
        MerchantAccounts::parse(
            &pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        )
    }

    #[test]
    fn braintree_charges_only_where_a_merchant_account_is() {
        let a = accounts(&[("EUR", "acct_eur"), ("JPY", "acct_jpy")]).unwrap();
        assert_eq!(a.for_currency(c("JPY")), Some("acct_jpy"));
        assert!(check_gateway(ProviderKind::Braintree, &a, c("EUR")).is_ok());
        assert_eq!(
            check_gateway(ProviderKind::Braintree, &a, c("USD")),
            Err(UnitError::NoMerchantAccount { currency: "USD" })
        );
        // A configuration stored before merchant accounts: nothing is chargeable.
        assert!(check_gateway(
            ProviderKind::Braintree,
            &MerchantAccounts::default(),
            c("USD")
        )
        .is_err());
        // Stripe has no merchant accounts; only its units decide.
        assert!(
            check_gateway(ProviderKind::Stripe, &MerchantAccounts::default(), c("USD")).is_ok()
        );
    }

    #[test]
    fn merchant_accounts_are_validated() {
        assert!(accounts(&[("XYZ", "a")]).is_err(), "unknown code");
        assert!(accounts(&[("eur", "a")]).is_err(), "upper case only");
        assert!(
            accounts(&[("CLF", "a")]).is_err(),
            "not a Braintree currency"
        );
        assert!(accounts(&[("EUR", "")]).is_err(), "empty id");
        assert!(accounts(&[("EUR", "a b")]).is_err(), "spaces");
        // The count is bounded before anything else is looked at.
        let limit = super::super::config::MAX_MERCHANT_ACCOUNTS;
        let many: std::collections::BTreeMap<String, String> = (0..=limit)
            .map(|i| (format!("C{i:03}"), "a".to_string()))
            .collect();
        let e = MerchantAccounts::parse(&many).unwrap_err();
        assert!(
            format!("{e:?}").contains("too_many_merchant_accounts"),
            "{e:?}"
        );
    }
}
