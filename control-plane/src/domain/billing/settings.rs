//! Billing settings (`GET/PUT /admin/api/v1/billing/settings`): one JSON document, validated,
//! stored in `billing_settings`. Absent until first written; the defaults below apply until then.

use std::future::Future;
use std::pin::Pin;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::currency::Currency;
use super::lines::Mode;
use crate::domain::accounts::BillingAddress;
use crate::domain::{DomainError, DomainResult};
use crate::store::{now, Pool, Tx};

/// Longest payment term.
pub const MAX_DUE_DAYS: i64 = 365;
/// Most charge attempts per invoice, and the longest wait between two.
pub const MAX_RETRY_ATTEMPTS: i64 = 10;
pub const MAX_RETRY_INTERVAL_DAYS: i64 = 30;
/// Longest footer / zero-VAT text / seller field, and email subject and body.
pub const MAX_TEXT_CHARS: usize = 2_000;
pub const MAX_SUBJECT_CHARS: usize = 200;
pub const MAX_BODY_CHARS: usize = 10_000;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Numbering {
    /// `YYYY-MM-XXXXXXXX`, counting from 1 each month.
    Monthly,
    /// `YYYY-XXXXXXXX`, counting from 1 each year.
    Yearly,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Seller {
    #[serde(default)]
    pub name: String,
    #[serde(default)]
    #[schema(value_type = Object)]
    pub address: BillingAddress,
    #[serde(default)]
    pub vat_id: String,
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Retry {
    pub attempts: i64,
    pub interval_days: i64,
}

/// An email's subject and body. Placeholders: `{account_name}`, `{invoice_number}`, `{total}`,
/// `{currency}`, `{due_date}`, `{period}`, and in charge emails `{update_url}` and `{reason}`.
/// The usage alert email has its own (see [`crate::domain::metering::alerts::render_text`]).
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct EmailText {
    pub subject: String,
    pub body: String,
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct EmailTexts {
    pub invoice_issued: EmailText,
    pub charge_succeeded: EmailText,
    pub charge_failed: EmailText,
    pub final_failure: EmailText,
    /// A usage alert (docs/operations.md, "Usage alerts"). Placeholders: `{account_name}`,
    /// `{application_name}`, `{metric}`, `{period}`, `{threshold}`, `{usage}`, `{limit}`,
    /// `{window_start}`. Settings stored before usage alerts existed take the default.
    #[serde(default = "default_usage_threshold_text")]
    pub usage_threshold_reached: EmailText,
}

fn default_usage_threshold_text() -> EmailText {
    text(
        "{application_name}: {threshold}% of the {period} {metric} limit reached",
        "Hello {account_name},\n\nyour application {application_name} has used {usage} of its {limit} {metric} this {period} (window from {window_start}): {threshold}% of its limit.\n",
    )
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct BillingSettings {
    pub mode: Mode,
    /// ISO 4217, upper case.
    pub currency: String,
    /// Whether issued invoices are charged to the stored payment method (the charging feature).
    pub charging_enabled: bool,
    pub numbering: Numbering,
    /// Days from issue to due date.
    pub due_days: i64,
    pub invoice_footer: String,
    /// Printed on invoices without VAT (e.g. "Reverse charge: VAT to be accounted for by the recipient").
    pub vat_zero_text: String,
    pub seller: Seller,
    pub retry: Retry,
    pub email_texts: EmailTexts,
    /// Hour of the day (UTC) at which `tollgate serve` runs billing for the day.
    pub run_hour_utc: i64,
    /// After the last failed charge, suspend the account's applications for non-payment (the
    /// gateway answers 402) until an invoice is paid.
    #[serde(default)]
    pub suspend_on_failure: bool,
    /// Where developers update their card (the `{update_url}` placeholder of charge emails).
    #[serde(default)]
    pub payment_method_url: String,
}

fn text(subject: &str, body: &str) -> EmailText {
    EmailText {
        subject: subject.into(),
        body: body.into(),
    }
}

impl Default for BillingSettings {
    fn default() -> Self {
        BillingSettings {
            mode: Mode::Postpaid,
            currency: "USD".into(),
            charging_enabled: false,
            numbering: Numbering::Monthly,
            due_days: 30,
            invoice_footer: String::new(),
            vat_zero_text: String::new(),
            seller: Seller::default(),
            retry: Retry {
                attempts: 3,
                interval_days: 3,
            },
            email_texts: EmailTexts {
                invoice_issued: text(
                    "Invoice {invoice_number}",
                    "Hello {account_name},\n\nyour invoice {invoice_number} for {period} is ready: {total} {currency}, due on {due_date}. The PDF is attached.\n",
                ),
                charge_succeeded: text(
                    "Payment received for invoice {invoice_number}",
                    "Hello {account_name},\n\nwe charged {total} {currency} for invoice {invoice_number}. Thank you.\n",
                ),
                charge_failed: text(
                    "Payment failed for invoice {invoice_number}",
                    "Hello {account_name},\n\nwe could not charge {total} {currency} for invoice {invoice_number} ({reason}). Please update your payment method at {update_url}; we will try again.\n",
                ),
                final_failure: text(
                    "Invoice {invoice_number} could not be paid",
                    "Hello {account_name},\n\nall attempts to charge {total} {currency} for invoice {invoice_number} failed.\n",
                ),
                usage_threshold_reached: default_usage_threshold_text(),
            },
            run_hour_utc: 2,
            suspend_on_failure: false,
            payment_method_url: String::new(),
        }
    }
}

fn check_text(param: &str, value: &str, max: usize) -> DomainResult<()> {
    if value.chars().count() > max {
        return Err(DomainError::invalid(
            param,
            "text_too_long",
            format!("at most {max} characters"),
        ));
    }
    Ok(())
}

fn range(param: &str, code: &'static str, v: i64, lo: i64, hi: i64) -> DomainResult<()> {
    if v < lo || v > hi {
        return Err(DomainError::invalid(
            param,
            code,
            format!("must be from {lo} to {hi}"),
        ));
    }
    Ok(())
}

impl BillingSettings {
    /// Validated on write; a stored document edited by hand with an unknown code is an error,
    /// never a guessed currency.
    pub fn currency(&self) -> Result<Currency, super::currency::UnknownCurrency> {
        Currency::stored(&self.currency)
    }

    pub fn validate(&self) -> DomainResult<()> {
        if Currency::parse(&self.currency).is_none() {
            return Err(DomainError::invalid(
                "currency",
                "invalid_currency",
                format!(
                    "{:?} is not an ISO 4217 currency code like \"EUR\"",
                    self.currency
                ),
            ));
        }
        range(
            "due_days",
            "invalid_due_days",
            self.due_days,
            0,
            MAX_DUE_DAYS,
        )?;
        range(
            "retry.attempts",
            "invalid_retry",
            self.retry.attempts,
            1,
            MAX_RETRY_ATTEMPTS,
        )?;
        range(
            "retry.interval_days",
            "invalid_retry",
            self.retry.interval_days,
            1,
            MAX_RETRY_INTERVAL_DAYS,
        )?;
        range("run_hour_utc", "invalid_hour", self.run_hour_utc, 0, 23)?;
        check_text("invoice_footer", &self.invoice_footer, MAX_TEXT_CHARS)?;
        check_text(
            "payment_method_url",
            &self.payment_method_url,
            MAX_TEXT_CHARS,
        )?;
        check_text("vat_zero_text", &self.vat_zero_text, MAX_TEXT_CHARS)?;
        check_text("seller.name", &self.seller.name, MAX_TEXT_CHARS)?;
        check_text("seller.vat_id", &self.seller.vat_id, MAX_TEXT_CHARS)?;
        crate::domain::accounts::check_address(&self.seller.address)
            .map_err(|e| e.with_param_prefix("seller.address"))?;
        let t = &self.email_texts;
        for (name, e) in [
            ("invoice_issued", &t.invoice_issued),
            ("charge_succeeded", &t.charge_succeeded),
            ("charge_failed", &t.charge_failed),
            ("final_failure", &t.final_failure),
            ("usage_threshold_reached", &t.usage_threshold_reached),
        ] {
            check_text(
                &format!("email_texts.{name}.subject"),
                &e.subject,
                MAX_SUBJECT_CHARS,
            )?;
            if e.subject.contains(['\r', '\n']) {
                return Err(DomainError::invalid(
                    format!("email_texts.{name}.subject"),
                    "invalid_subject",
                    "one line",
                ));
            }
            check_text(&format!("email_texts.{name}.body"), &e.body, MAX_BODY_CHARS)?;
        }
        Ok(())
    }
}

/// The stored settings, or the defaults.
pub async fn load(pool: &Pool) -> DomainResult<BillingSettings> {
    let row: Option<(String,)> =
        sqlx::query_as("SELECT settings FROM billing_settings WHERE id = 1")
            .fetch_optional(pool)
            .await?;
    match row {
        Some((json,)) => serde_json::from_str(&json)
            .map_err(|e| DomainError::Internal(format!("stored billing settings unreadable: {e}"))),
        None => Ok(BillingSettings::default()),
    }
}

/// The stored settings, or the defaults, read inside `tx`.
pub async fn load_tx(tx: &mut Tx) -> DomainResult<BillingSettings> {
    let row: Option<(String,)> =
        sqlx::query_as("SELECT settings FROM billing_settings WHERE id = 1")
            .fetch_optional(&mut **tx)
            .await?;
    match row {
        Some((json,)) => serde_json::from_str(&json)
            .map_err(|e| DomainError::Internal(format!("stored billing settings unreadable: {e}"))),
        None => Ok(BillingSettings::default()),
    }
}

/// Merges `patch` (any subset of the fields; objects merge, other values replace) into `base`.
pub fn merge(base: &mut Value, patch: Value) {
    match (base, patch) {
        (Value::Object(b), Value::Object(p)) => {
            for (k, v) in p {
                match b.get_mut(&k) {
                    Some(slot) if slot.is_object() && v.is_object() => merge(slot, v),
                    _ => {
                        b.insert(k, v);
                    }
                }
            }
        }
        (b, p) => *b = p,
    }
}

/// The settings as the API shows them: the document with `"object": "billing_settings"`.
#[derive(Clone, Debug, Serialize)]
pub struct SettingsObject {
    /// Always `"billing_settings"`.
    pub object: &'static str,
    #[serde(flatten)]
    pub settings: BillingSettings,
}

/// The schema is [`BillingSettings`]'s with the `object` property added. Derived with
/// `#[serde(flatten)]` it would be an `allOf` of a closed object (the settings refuse unknown
/// fields) and `object`, which no answer can satisfy.
impl utoipa::PartialSchema for SettingsObject {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        use utoipa::openapi::schema::{Schema, Type};
        use utoipa::openapi::{ObjectBuilder, RefOr};
        let mut schema = <BillingSettings as utoipa::PartialSchema>::schema();
        if let RefOr::T(Schema::Object(obj)) = &mut schema {
            obj.properties.insert(
                "object".to_string(),
                ObjectBuilder::new()
                    .schema_type(Type::String)
                    .enum_values(Some(["billing_settings"]))
                    .into(),
            );
            obj.required.insert(0, "object".to_string());
        }
        schema
    }
}

impl utoipa::ToSchema for SettingsObject {
    fn schemas(
        schemas: &mut Vec<(
            String,
            utoipa::openapi::RefOr<utoipa::openapi::schema::Schema>,
        )>,
    ) {
        <BillingSettings as utoipa::ToSchema>::schemas(schemas);
    }
}

impl From<BillingSettings> for SettingsObject {
    fn from(settings: BillingSettings) -> Self {
        SettingsObject {
            object: "billing_settings",
            settings,
        }
    }
}

/// A check run inside the settings' write transaction (a boxed future: it must be `Send` to run
/// in a request handler, which an `async` closure's future cannot promise).
pub type Check<'t> = Pin<Box<dyn Future<Output = DomainResult<()>> + Send + 't>>;

/// Applies a partial update in `tx`: validates the result, asks `chargeable` whether the
/// configured payment provider can charge the resulting currency, refuses a currency change while
/// money in the old currency is outstanding, and writes it. An `object` field (as `GET` answers
/// it) is ignored.
///
/// `chargeable` is the caller's because the charging side knows the provider (its gateway
/// config's `check_stored`), and charging depends on billing, not the other way round.
pub async fn update(
    tx: &mut Tx,
    actor: &crate::domain::audit::Actor,
    mut patch: Value,
    chargeable: impl for<'t> FnOnce(&'t mut Tx, Currency) -> Check<'t>,
) -> DomainResult<BillingSettings> {
    if let Some(o) = patch.as_object_mut() {
        o.remove("object");
    }
    if !patch.is_object() {
        return Err(DomainError::malformed(
            None,
            "invalid_body",
            "a JSON object",
        ));
    }
    let row: Option<(String,)> =
        sqlx::query_as("SELECT settings FROM billing_settings WHERE id = 1")
            .fetch_optional(&mut **tx)
            .await?;
    let current: BillingSettings = match &row {
        Some((json,)) => serde_json::from_str(json).map_err(|e| {
            DomainError::Internal(format!("stored billing settings unreadable: {e}"))
        })?,
        None => BillingSettings::default(),
    };
    let mut doc =
        serde_json::to_value(&current).map_err(|e| DomainError::Internal(e.to_string()))?;
    merge(&mut doc, patch);
    let next: BillingSettings = serde_path_to_error::deserialize(doc).map_err(|e| {
        DomainError::invalid(
            e.path().to_string(),
            "invalid_settings",
            e.inner().to_string(),
        )
    })?;
    next.validate()?;
    // A billing currency the configured payment provider cannot charge is refused now, not at
    // the first charge (Braintree: a merchant account in it).
    chargeable(tx, next.currency()?).await?;
    if next.currency != current.currency {
        let (open,): (i64,) = sqlx::query_as(
            "SELECT COUNT(*) FROM invoices WHERE state IN ('open', 'finalized', 'pending', 'unpaid')",
        )
        .fetch_one(&mut **tx)
        .await?;
        let (credit,): (i64,) =
            sqlx::query_as("SELECT COUNT(*) FROM accounts WHERE credit_balance <> '0'")
                .fetch_one(&mut **tx)
                .await?;
        if open > 0 || credit > 0 {
            return Err(DomainError::Conflict {
                code: "currency_in_use",
                message: format!(
                    "{open} unsettled invoice(s) and {credit} credit balance(s) are in {}; settle them before changing the currency",
                    current.currency
                ),
                param: Some("currency".into()),
            });
        }
    }
    let json = serde_json::to_string(&next).map_err(|e| DomainError::Internal(e.to_string()))?;
    let sql = if row.is_some() {
        "UPDATE billing_settings SET settings = $1, updated_at = $2 WHERE id = 1"
    } else {
        "INSERT INTO billing_settings (id, settings, updated_at) VALUES (1, $1, $2)"
    };
    sqlx::query(sql)
        .bind(json)
        .bind(now())
        .execute(&mut **tx)
        .await?;
    let changes = crate::domain::audit::Changes::between(Some(&current), Some(&next))?;
    let object = crate::domain::audit::Object {
        kind: "billing_settings",
        id: "billing_settings",
    };
    crate::domain::audit::record(tx, actor, "billing_settings.updated", object, &changes).await?;
    Ok(next)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn merges_partial_updates() {
        let mut doc = serde_json::to_value(BillingSettings::default()).unwrap();
        merge(
            &mut doc,
            json!({"currency": "EUR", "retry": {"attempts": 5}, "seller": {"name": "ACME"}}),
        );
        let s: BillingSettings = serde_json::from_value(doc).unwrap();
        assert_eq!(s.currency, "EUR");
        assert_eq!(
            s.retry,
            Retry {
                attempts: 5,
                interval_days: 3
            }
        );
        assert_eq!(s.seller.name, "ACME");
        assert_eq!(s.email_texts, BillingSettings::default().email_texts);
        s.validate().unwrap();
    }

    #[test]
    fn refuses_bad_settings() {
        let bad = |f: &dyn Fn(&mut BillingSettings)| {
            let mut s = BillingSettings::default();
            f(&mut s);
            s.validate().is_err()
        };
        assert!(bad(&|s| s.currency = "EURO".into()));
        assert!(bad(&|s| s.currency = "eur".into()));
        assert!(bad(&|s| s.due_days = -1));
        assert!(bad(&|s| s.retry.interval_days = 0));
        assert!(bad(&|s| s.run_hour_utc = 24));
        assert!(bad(
            &|s| s.email_texts.charge_failed.subject = "a\nBcc: x@y.z".into()
        ));
    }
}
