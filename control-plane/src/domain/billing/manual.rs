//! What an admin asks of invoices (the admin API and the admin portal): open an invoice, add and
//! remove manual lines, state actions, credit notes. Each checks its input in the order the API
//! has always answered, runs in one write transaction with its audit event, and answers the
//! invoice as it is after.

use std::collections::BTreeMap;

use rust_decimal::Decimal;
use serde::Deserialize;
use serde_json::Value;

use super::calendar::day_of;
use super::invoices::{self, InvoiceAction, InvoiceObject};
use super::settings;
use crate::domain::audit::{self, Actor, Changes, Object};
use crate::domain::{DomainError, DomainResult};
use crate::store::{now, Pool, Tx};

/// The audit event of an invoice write (`<invoice|credit_note>.<verb>`), inside `tx`. The invoice
/// is diffed field by field like any object, but its lines by id (`lines.<line id>`): an added
/// or removed line is one entry, not the whole list before and after.
async fn record(
    tx: &mut Tx,
    actor: &Actor,
    verb: &str,
    before: Option<&InvoiceObject>,
    after: Option<&InvoiceObject>,
) -> DomainResult<()> {
    let Some(shown) = after.or(before) else {
        return Err(DomainError::Internal(
            "an invoice audit event without the invoice".into(),
        ));
    };
    let (kind, id) = (shown.object.as_str(), shown.id.clone());
    let split = |inv: Option<&InvoiceObject>| -> DomainResult<(Value, BTreeMap<String, Value>)> {
        let mut v = serde_json::to_value(inv)
            .map_err(|e| DomainError::Internal(format!("audited invoice: {e}")))?;
        let lines = match v.as_object_mut().and_then(|m| m.remove("lines")) {
            Some(Value::Array(lines)) => lines,
            _ => Vec::new(),
        };
        let by_id = lines
            .into_iter()
            .map(|l| (l["id"].as_str().unwrap_or_default().to_string(), l))
            .collect();
        Ok((v, by_id))
    };
    let (b, b_lines) = split(before)?;
    let (a, a_lines) = split(after)?;
    let present = |v: &Value| (!v.is_null()).then_some(v.clone());
    let mut changes = Changes::between(present(&b).as_ref(), present(&a).as_ref())?;
    for id in b_lines.keys().chain(a_lines.keys()) {
        let (old, new) = (b_lines.get(id), a_lines.get(id));
        if old != new {
            let field = format!("lines.{id}");
            let or_null = |v: Option<&Value>| v.cloned().unwrap_or(Value::Null);
            let line = Changes::of(&[(field.as_str(), or_null(old), or_null(new))]);
            changes.0.extend(line.0);
        }
    }
    let action = format!("{kind}.{verb}");
    audit::record(tx, actor, &action, Object { kind, id: &id }, &changes).await
}

/// Longest manual line description (and credit note reason).
pub const MAX_DESCRIPTION_CHARS: usize = 500;

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateInput {
    pub account_id: Option<String>,
}

/// An open invoice for the current month, to which manual lines can be added.
pub async fn create(pool: &Pool, actor: &Actor, input: CreateInput) -> DomainResult<InvoiceObject> {
    let account_id = input.account_id.ok_or_else(|| {
        DomainError::invalid("account_id", "missing_field", "account_id is required")
    })?;
    let known: Option<(String,)> = sqlx::query_as("SELECT id FROM accounts WHERE id = $1")
        .bind(&account_id)
        .fetch_optional(pool)
        .await?;
    if known.is_none() {
        return Err(DomainError::invalid(
            "account_id",
            "unknown_account",
            format!("no account with id {account_id:?}"),
        ));
    }
    let settings = settings::load(pool).await?;
    let t = now();
    let mut tx = crate::store::begin_write(pool).await?;
    let id = invoices::create_open(&mut tx, &account_id, &settings, day_of(t), t).await?;
    let after = invoices::object_tx(&mut tx, &id).await?;
    record(&mut tx, actor, "created", None, Some(&after)).await?;
    tx.commit().await?;
    invoices::object(pool, &id).await
}

/// Finalize, issue, mark paid or cancel invoice `id`.
pub async fn act(
    pool: &Pool,
    actor: &Actor,
    id: &str,
    action: InvoiceAction,
) -> DomainResult<InvoiceObject> {
    let settings = settings::load(pool).await?;
    let mut tx = crate::store::begin_write(pool).await?;
    let before = invoices::object_tx(&mut tx, id).await?;
    invoices::act(&mut tx, id, action, &settings, now()).await?;
    let after = invoices::object_tx(&mut tx, id).await?;
    let verb = match action {
        InvoiceAction::Finalize => "finalized",
        InvoiceAction::Issue => "issued",
        // Paid outside Tollgate, by the admin's word (a charge's success is `paid` by the provider).
        InvoiceAction::Pay => "marked_paid",
        InvoiceAction::Cancel => "cancelled",
    };
    record(&mut tx, actor, verb, Some(&before), Some(&after)).await?;
    tx.commit().await?;
    if action == InvoiceAction::Issue {
        crate::telemetry::get().invoices_issued(crate::telemetry::IssuedBy::Manual, 1);
    }
    invoices::object(pool, id).await
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LineInput {
    pub description: Option<String>,
    /// Decimal string, more than zero; 1 when absent.
    pub quantity: Option<String>,
    /// Decimal string; negative for a discount.
    pub unit_price: Option<String>,
}

/// Adds a manual line to open invoice `id`.
pub async fn add_line(
    pool: &Pool,
    actor: &Actor,
    id: &str,
    input: LineInput,
) -> DomainResult<InvoiceObject> {
    let description = input.description.unwrap_or_default();
    let description = description.trim();
    if description.is_empty()
        || description.chars().count() > MAX_DESCRIPTION_CHARS
        || description.chars().any(char::is_control)
    {
        return Err(DomainError::invalid(
            "description",
            "invalid_description",
            format!("1 to {MAX_DESCRIPTION_CHARS} printable characters"),
        ));
    }
    let quantity = invoices::parse_signed("quantity", input.quantity.as_deref().unwrap_or("1"))?;
    if quantity <= Decimal::ZERO {
        return Err(DomainError::invalid(
            "quantity",
            "invalid_quantity",
            "more than zero",
        ));
    }
    let unit_price = invoices::parse_signed(
        "unit_price",
        input.unit_price.as_deref().ok_or_else(|| {
            DomainError::invalid("unit_price", "missing_field", "unit_price is required")
        })?,
    )?;
    let mut tx = crate::store::begin_write(pool).await?;
    let before = invoices::object_tx(&mut tx, id).await?;
    invoices::add_manual_line(&mut tx, id, description, quantity, unit_price).await?;
    let after = invoices::object_tx(&mut tx, id).await?;
    record(&mut tx, actor, "line_added", Some(&before), Some(&after)).await?;
    tx.commit().await?;
    invoices::object(pool, id).await
}

/// Removes manual line `line_id` from open invoice `id`.
pub async fn remove_line(
    pool: &Pool,
    actor: &Actor,
    id: &str,
    line_id: &str,
) -> DomainResult<InvoiceObject> {
    let mut tx = crate::store::begin_write(pool).await?;
    let before = invoices::object_tx(&mut tx, id).await?;
    invoices::remove_manual_line(&mut tx, id, line_id).await?;
    let after = invoices::object_tx(&mut tx, id).await?;
    record(&mut tx, actor, "line_removed", Some(&before), Some(&after)).await?;
    tx.commit().await?;
    invoices::object(pool, id).await
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreditNoteInput {
    /// Net amount to credit, decimal string.
    pub amount: Option<String>,
    pub reason: Option<String>,
}

/// A credit note for issued invoice `id`; answers the credit note.
pub async fn credit_note(
    pool: &Pool,
    actor: &Actor,
    id: &str,
    input: CreditNoteInput,
) -> DomainResult<InvoiceObject> {
    let amount = invoices::parse_signed(
        "amount",
        input
            .amount
            .as_deref()
            .ok_or_else(|| DomainError::invalid("amount", "missing_field", "amount is required"))?,
    )?;
    let reason = input.reason.unwrap_or_default();
    if reason.chars().count() > MAX_DESCRIPTION_CHARS || reason.chars().any(char::is_control) {
        return Err(DomainError::invalid(
            "reason",
            "invalid_reason",
            format!("at most {MAX_DESCRIPTION_CHARS} printable characters"),
        ));
    }
    let settings = settings::load(pool).await?;
    let mut tx = crate::store::begin_write(pool).await?;
    let cn = invoices::credit_note(&mut tx, id, amount, &reason, &settings, now()).await?;
    let after = invoices::object_tx(&mut tx, &cn).await?;
    record(&mut tx, actor, "created", None, Some(&after)).await?;
    tx.commit().await?;
    invoices::object(pool, &cn).await
}
