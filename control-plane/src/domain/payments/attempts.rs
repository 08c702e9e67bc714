//! Charge attempts (`charge_attempts`): one row per try to charge an invoice, recorded before the
//! provider is called (see [`super::charging`]), and how the APIs and the portal show them.

use serde::Serialize;

use super::ProviderKind;
use crate::domain::{DomainError, DomainResult};
use crate::store::Pool;

/// Where an attempt stands. `pending`: recorded, the provider's answer not (yet) known;
/// `requires_action`: the bank wants the cardholder to authenticate (3-D Secure); `refund_due`: the
/// money was taken for an invoice settled meanwhile, to be returned by the operator.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum AttemptState {
    Pending,
    RequiresAction,
    Succeeded,
    Failed,
    RefundDue,
}

impl AttemptState {
    pub fn as_str(self) -> &'static str {
        match self {
            AttemptState::Pending => "pending",
            AttemptState::RequiresAction => "requires_action",
            AttemptState::Succeeded => "succeeded",
            AttemptState::Failed => "failed",
            AttemptState::RefundDue => "refund_due",
        }
    }

    pub fn parse(s: &str) -> Option<AttemptState> {
        Some(match s {
            "pending" => AttemptState::Pending,
            "requires_action" => AttemptState::RequiresAction,
            "succeeded" => AttemptState::Succeeded,
            "failed" => AttemptState::Failed,
            "refund_due" => AttemptState::RefundDue,
            _ => return None,
        })
    }

    /// A stored state: an unknown one is a bug or a corrupted row, never a guess.
    pub fn stored(s: &str) -> DomainResult<AttemptState> {
        AttemptState::parse(s).ok_or_else(|| {
            DomainError::Internal(format!("unknown stored charge attempt state {s:?}"))
        })
    }
}

/// A stored amount, checked to be a decimal (an error, never zero) and shown as stored: written in
/// the currency's minor unit when the invoice was rated ("1500" yen, "49.00" dollars), which the
/// canonical [`crate::money::Amount`] string would change.
fn checked_amount(raw: String) -> DomainResult<String> {
    crate::money::stored(&raw)?;
    Ok(raw)
}

#[derive(sqlx::FromRow)]
struct AttemptRow {
    id: String,
    invoice_id: String,
    attempt: i64,
    provider: String,
    provider_ref: Option<String>,
    state: String,
    amount: String,
    currency: String,
    error_code: Option<String>,
    error_message: Option<String>,
    created_at: i64,
}

/// A charge attempt as the API shows it (the `payment` of a charged invoice).
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Payment {
    /// `payment`.
    pub object: &'static str,
    pub id: String,
    pub invoice_id: String,
    /// 1 for the first attempt on the invoice.
    pub attempt: i64,
    pub provider: ProviderKind,
    /// The provider's object (PaymentIntent, transaction), once known.
    pub reference: Option<String>,
    pub state: AttemptState,
    /// The invoice total charged, in the invoice currency's minor unit (`"49.00"`, `"1500"`).
    #[schema(pattern = r"^-?[0-9]+(\.[0-9]+)?$")]
    pub amount: String,
    pub currency: String,
    pub error_code: Option<String>,
    pub error_message: Option<String>,
    pub created_at: i64,
}

impl TryFrom<AttemptRow> for Payment {
    type Error = DomainError;

    fn try_from(r: AttemptRow) -> DomainResult<Payment> {
        Ok(Payment {
            object: "payment",
            id: r.id,
            invoice_id: r.invoice_id,
            attempt: r.attempt,
            provider: ProviderKind::stored(&r.provider)?,
            reference: r.provider_ref,
            state: AttemptState::stored(&r.state)?,
            amount: checked_amount(r.amount)?,
            currency: r.currency,
            error_code: r.error_code,
            error_message: r.error_message,
            created_at: r.created_at,
        })
    }
}

/// The attempt `attempt_id` as the API shows it.
pub async fn fetch(pool: &Pool, attempt_id: &str) -> DomainResult<Payment> {
    let row: AttemptRow = sqlx::query_as(
        "SELECT id, invoice_id, attempt, provider, provider_ref, state, amount, currency, error_code, error_message, created_at FROM charge_attempts WHERE id = $1",
    )
    .bind(attempt_id)
    .fetch_one(pool)
    .await?;
    row.try_into()
}

#[derive(sqlx::FromRow)]
struct HistoryRow {
    number: Option<String>,
    state: String,
    amount: String,
    currency: String,
    error_message: Option<String>,
    created_at: i64,
}

/// One line of an account's payment history (the portal's billing page).
pub struct HistoryLine {
    pub invoice_number: Option<String>,
    pub state: AttemptState,
    pub amount: String,
    pub currency: String,
    pub error_message: Option<String>,
    pub created_at: i64,
}

impl TryFrom<HistoryRow> for HistoryLine {
    type Error = DomainError;

    fn try_from(r: HistoryRow) -> DomainResult<HistoryLine> {
        Ok(HistoryLine {
            invoice_number: r.number,
            state: AttemptState::stored(&r.state)?,
            amount: checked_amount(r.amount)?,
            currency: r.currency,
            error_message: r.error_message,
            created_at: r.created_at,
        })
    }
}

/// Most lines of payment history the portal shows.
pub const HISTORY_LINES: i64 = 100;

/// The latest charge attempts on the account's invoices, newest first.
pub async fn history(pool: &Pool, account_id: &str) -> DomainResult<Vec<HistoryLine>> {
    let rows: Vec<HistoryRow> = sqlx::query_as(
        "SELECT i.number, a.state, a.amount, a.currency, a.error_message, a.created_at FROM charge_attempts a JOIN invoices i ON i.id = a.invoice_id \
         WHERE i.account_id = $1 ORDER BY a.created_at DESC, a.id DESC LIMIT $2",
    )
    .bind(account_id)
    .bind(HISTORY_LINES)
    .fetch_all(pool)
    .await?;
    rows.into_iter().map(HistoryLine::try_from).collect()
}

/// One charge attempt as the developer API shows it to the account that owes the invoice.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct AccountPayment {
    /// `payment`.
    pub object: &'static str,
    pub id: String,
    pub invoice_id: String,
    pub invoice_number: Option<String>,
    /// 1 for the first attempt on the invoice.
    pub attempt: i64,
    pub state: AttemptState,
    /// The invoice total charged, in the invoice currency's minor unit (`"49.00"`, `"1500"`).
    #[schema(pattern = r"^-?[0-9]+(\.[0-9]+)?$")]
    pub amount: String,
    pub currency: String,
    pub error_code: Option<String>,
    pub error_message: Option<String>,
    pub created_at: i64,
}

#[derive(sqlx::FromRow)]
struct AccountPaymentRow {
    id: String,
    invoice_id: String,
    number: Option<String>,
    attempt: i64,
    state: String,
    amount: String,
    currency: String,
    error_code: Option<String>,
    error_message: Option<String>,
    created_at: i64,
}

/// The latest [`HISTORY_LINES`] charge attempts on the account's invoices, newest first.
pub async fn of_account(pool: &Pool, account_id: &str) -> DomainResult<Vec<AccountPayment>> {
    let rows: Vec<AccountPaymentRow> = sqlx::query_as(
        "SELECT a.id, a.invoice_id, i.number, a.attempt, a.state, a.amount, a.currency, a.error_code, a.error_message, a.created_at \
         FROM charge_attempts a JOIN invoices i ON i.id = a.invoice_id WHERE i.account_id = $1 ORDER BY a.created_at DESC, a.id DESC LIMIT $2",
    )
    .bind(account_id)
    .bind(HISTORY_LINES)
    .fetch_all(pool)
    .await?;
    rows.into_iter()
        .map(|r| {
            Ok(AccountPayment {
                object: "payment",
                state: AttemptState::stored(&r.state)?,
                amount: checked_amount(r.amount)?,
                id: r.id,
                invoice_id: r.invoice_id,
                invoice_number: r.number,
                attempt: r.attempt,
                currency: r.currency,
                error_code: r.error_code,
                error_message: r.error_message,
                created_at: r.created_at,
            })
        })
        .collect()
}
