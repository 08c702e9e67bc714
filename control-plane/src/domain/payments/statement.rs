//! What the developer portal's billing page reads about an account's invoices: the issued ones
//! (numbered), whether one is the account's, and its state after a payment.
//!
//! The invoice state stays the string billing stores: its closed set belongs to
//! `domain::billing`, which owns the invoice type.

use crate::domain::{DomainError, DomainResult};
use crate::store::Pool;

/// Invoice states a charge may be made in: `failed` too (after dunning gave up, the developer or
/// the admin may still pay).
pub const CHARGEABLE: &[&str] = &["pending", "unpaid", "failed"];

#[derive(sqlx::FromRow)]
struct IssuedRow {
    id: String,
    number: Option<String>,
    state: String,
    total: String,
    currency: String,
    period_start: i64,
    period_end: i64,
}

/// An issued invoice as the billing page lists it.
pub struct IssuedInvoice {
    pub id: String,
    pub number: Option<String>,
    pub state: String,
    /// As stored: in the currency's minor unit, checked to be a decimal.
    pub total: String,
    pub currency: String,
    pub period_start: i64,
    /// Exclusive.
    pub period_end: i64,
}

impl IssuedInvoice {
    /// Whether it can be paid now (the page's "Pay now").
    pub fn payable(&self) -> bool {
        CHARGEABLE.contains(&self.state.as_str())
    }
}

impl TryFrom<IssuedRow> for IssuedInvoice {
    type Error = DomainError;

    fn try_from(r: IssuedRow) -> DomainResult<IssuedInvoice> {
        crate::money::stored(&r.total)?;
        Ok(IssuedInvoice {
            id: r.id,
            number: r.number,
            state: r.state,
            total: r.total,
            currency: r.currency,
            period_start: r.period_start,
            period_end: r.period_end,
        })
    }
}

/// Most invoices the billing page lists.
pub const ISSUED_LINES: i64 = 100;

/// The account's issued invoices, newest first.
pub async fn issued_invoices(pool: &Pool, account_id: &str) -> DomainResult<Vec<IssuedInvoice>> {
    let rows: Vec<IssuedRow> = sqlx::query_as(
        "SELECT id, number, state, total, currency, period_start, period_end FROM invoices WHERE account_id = $1 AND number IS NOT NULL ORDER BY id DESC LIMIT $2",
    )
    .bind(account_id)
    .bind(ISSUED_LINES)
    .fetch_all(pool)
    .await?;
    rows.into_iter().map(IssuedInvoice::try_from).collect()
}

/// Whether `id` is an issued invoice of the account (another account's looks like none).
pub async fn owns_issued_invoice(pool: &Pool, account_id: &str, id: &str) -> DomainResult<bool> {
    let own: Option<(String,)> = sqlx::query_as(
        "SELECT id FROM invoices WHERE id = $1 AND account_id = $2 AND number IS NOT NULL",
    )
    .bind(id)
    .bind(account_id)
    .fetch_optional(pool)
    .await?;
    Ok(own.is_some())
}

/// Whether the invoice `id` is paid (after the cardholder confirmed a payment).
pub async fn is_paid(pool: &Pool, id: &str) -> DomainResult<bool> {
    let state: Option<(String,)> = sqlx::query_as("SELECT state FROM invoices WHERE id = $1")
        .bind(id)
        .fetch_optional(pool)
        .await?;
    Ok(state.is_some_and(|(s,)| s == "paid"))
}
