//! Invoices in the database: reading them, issuing them (settle, freeze, number), state changes,
//! manual lines and credit notes. The billing run issues in batches with the same pure pieces.
//!
//! States: `open` (lines may change) -> `finalized` (lines frozen) -> `pending` (issued: numbered,
//! buyer/seller/VAT/currency frozen, awaiting payment) -> `paid`; a failed charge makes it
//! `unpaid`, and the last failed attempt `failed`. `cancelled` from any unsettled state. An
//! invoice whose total is zero is `paid` when issued. Credit notes are `issued` documents.

use std::collections::HashMap;

use rust_decimal::Decimal;
use serde::Serialize;
use serde_json::{json, Value};

use super::calendar::{format_date, format_month, year_of};
use super::currency::{Currency, Money};
use super::lines::{LineKind, NewLine};
use super::settings::{BillingSettings, Numbering};
use super::totals::{check, settle, Settlement};
use crate::domain::page::page;
use crate::domain::webhooks::events::{issued_events, InvoiceData};
use crate::domain::webhooks::Event;
use crate::domain::{DomainError, DomainResult, Page, PageRequest};
use crate::money::parse_amount;
use crate::secrets::new_id;
use crate::store::{Pool, Tx};

pub const INVOICE_COLUMNS: &str = "id, account_id, kind, credited_invoice_id, state, number, currency, period_start, period_end, subtotal, tax, total, vat_rate, buyer, seller, footer, billing_run_id, issued_at, due_on, paid_at, cancelled_at, created_at, updated_at";
pub const LINE_COLUMNS: &str = "id, invoice_id, position, kind, line_key, contract_id, description, quantity, unit_price, amount, period_start, period_end";

/// Where an invoice is (see the module comment); credit notes are always `issued`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum InvoiceState {
    Open,
    Finalized,
    Pending,
    Paid,
    Unpaid,
    Failed,
    Cancelled,
    Issued,
}

impl InvoiceState {
    pub const ALL: [InvoiceState; 8] = [
        InvoiceState::Open,
        InvoiceState::Finalized,
        InvoiceState::Pending,
        InvoiceState::Paid,
        InvoiceState::Unpaid,
        InvoiceState::Failed,
        InvoiceState::Cancelled,
        InvoiceState::Issued,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            InvoiceState::Open => "open",
            InvoiceState::Finalized => "finalized",
            InvoiceState::Pending => "pending",
            InvoiceState::Paid => "paid",
            InvoiceState::Unpaid => "unpaid",
            InvoiceState::Failed => "failed",
            InvoiceState::Cancelled => "cancelled",
            InvoiceState::Issued => "issued",
        }
    }

    /// The state named `s` (a filter, a stored value), or `None`.
    pub fn from_name(s: &str) -> Option<InvoiceState> {
        InvoiceState::ALL.into_iter().find(|v| v.as_str() == s)
    }

    /// A stored state; an unknown one is an error, never a guess.
    pub fn parse(s: &str) -> DomainResult<InvoiceState> {
        InvoiceState::from_name(s)
            .ok_or_else(|| DomainError::Internal(format!("unknown invoice state {s:?} stored")))
    }

    /// Money is still expected (or the invoice is still being prepared).
    pub fn unsettled(self) -> bool {
        UNSETTLED.contains(&self.as_str())
    }
}

impl std::fmt::Display for InvoiceState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An invoice, or a credit note (its own numbered document crediting an issued invoice).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum InvoiceKind {
    Invoice,
    CreditNote,
}

impl InvoiceKind {
    pub fn as_str(self) -> &'static str {
        match self {
            InvoiceKind::Invoice => "invoice",
            InvoiceKind::CreditNote => "credit_note",
        }
    }

    /// The kind named `s` (a filter, a stored value), or `None`.
    pub fn from_name(s: &str) -> Option<InvoiceKind> {
        [InvoiceKind::Invoice, InvoiceKind::CreditNote]
            .into_iter()
            .find(|v| v.as_str() == s)
    }

    /// A stored kind; an unknown one is an error, never a guess.
    pub fn parse(s: &str) -> DomainResult<InvoiceKind> {
        InvoiceKind::from_name(s)
            .ok_or_else(|| DomainError::Internal(format!("unknown invoice kind {s:?} stored")))
    }
}

impl std::fmt::Display for InvoiceKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The state actions an admin can take on an invoice.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum InvoiceAction {
    /// Freeze the lines (`open` -> `finalized`).
    Finalize,
    /// Number, freeze and email it (`open`/`finalized` -> `pending`, or `paid` when zero).
    Issue,
    /// Mark it paid outside Tollgate (`pending`/`unpaid` -> `paid`).
    Pay,
    /// Cancel it from any unsettled state.
    Cancel,
}

impl InvoiceAction {
    pub fn as_str(self) -> &'static str {
        match self {
            InvoiceAction::Finalize => "finalize",
            InvoiceAction::Issue => "issue",
            InvoiceAction::Pay => "pay",
            InvoiceAction::Cancel => "cancel",
        }
    }
}

/// States in which money is still expected (or the invoice is still being prepared).
pub const UNSETTLED: &[&str] = &["open", "finalized", "pending", "unpaid"];

/// An `invoices` row as stored.
#[derive(sqlx::FromRow)]
pub struct InvoiceRow {
    id: String,
    account_id: String,
    kind: String,
    credited_invoice_id: Option<String>,
    state: String,
    number: Option<String>,
    currency: String,
    period_start: i64,
    period_end: i64,
    subtotal: String,
    tax: String,
    total: String,
    vat_rate: Option<String>,
    buyer: Option<String>,
    seller: Option<String>,
    footer: Option<String>,
    billing_run_id: Option<String>,
    issued_at: Option<i64>,
    due_on: Option<i64>,
    paid_at: Option<i64>,
    cancelled_at: Option<i64>,
    created_at: i64,
    updated_at: i64,
}

/// An invoice or credit note: amounts parsed, state and kind known (a stored value that is not is
/// an error when read, never a default).
#[derive(Clone, Debug)]
pub struct Invoice {
    pub id: String,
    pub account_id: String,
    pub kind: InvoiceKind,
    pub credited_invoice_id: Option<String>,
    pub state: InvoiceState,
    pub number: Option<String>,
    pub currency: Currency,
    pub period_start: i64,
    pub period_end: i64,
    pub subtotal: Decimal,
    pub tax: Decimal,
    pub total: Decimal,
    /// Frozen when issued; `None` before (and on invoices issued without VAT data).
    pub vat_rate: Option<Decimal>,
    /// Frozen JSON documents (buyer: name, email, address, vat_code; seller: name, address,
    /// vat_id, vat_zero_text), as written when issued.
    pub buyer: Option<String>,
    pub seller: Option<String>,
    pub footer: Option<String>,
    pub billing_run_id: Option<String>,
    pub issued_at: Option<i64>,
    pub due_on: Option<i64>,
    pub paid_at: Option<i64>,
    pub cancelled_at: Option<i64>,
    pub created_at: i64,
    pub updated_at: i64,
}

impl TryFrom<InvoiceRow> for Invoice {
    type Error = DomainError;

    fn try_from(r: InvoiceRow) -> DomainResult<Invoice> {
        Ok(Invoice {
            kind: InvoiceKind::parse(&r.kind)?,
            state: InvoiceState::parse(&r.state)?,
            currency: Currency::stored(&r.currency)?,
            subtotal: dec(&r.subtotal)?,
            tax: dec(&r.tax)?,
            total: dec(&r.total)?,
            vat_rate: r.vat_rate.as_deref().map(dec).transpose()?,
            id: r.id,
            account_id: r.account_id,
            credited_invoice_id: r.credited_invoice_id,
            number: r.number,
            period_start: r.period_start,
            period_end: r.period_end,
            buyer: r.buyer,
            seller: r.seller,
            footer: r.footer,
            billing_run_id: r.billing_run_id,
            issued_at: r.issued_at,
            due_on: r.due_on,
            paid_at: r.paid_at,
            cancelled_at: r.cancelled_at,
            created_at: r.created_at,
            updated_at: r.updated_at,
        })
    }
}

impl Invoice {
    /// A row read with [`INVOICE_COLUMNS`].
    pub fn from_row(r: &sqlx::any::AnyRow) -> DomainResult<Invoice> {
        <InvoiceRow as sqlx::FromRow<_>>::from_row(r)?.try_into()
    }

    /// An amount of this invoice in its currency, as it is shown.
    pub fn money(&self, amount: Decimal) -> Money {
        Money {
            amount,
            currency: self.currency,
        }
    }
}

/// An `invoice_lines` row as stored.
#[derive(sqlx::FromRow)]
struct LineRow {
    id: String,
    invoice_id: String,
    position: i64,
    kind: String,
    line_key: Option<String>,
    description: String,
    quantity: String,
    unit_price: String,
    amount: String,
    period_start: Option<i64>,
    period_end: Option<i64>,
}

#[derive(Clone, Debug)]
pub struct Line {
    pub id: String,
    pub invoice_id: String,
    pub position: i64,
    pub kind: LineKind,
    pub line_key: Option<String>,
    pub description: String,
    pub quantity: Decimal,
    pub unit_price: Decimal,
    pub amount: Decimal,
    pub period_start: Option<i64>,
    pub period_end: Option<i64>,
}

impl TryFrom<LineRow> for Line {
    type Error = DomainError;

    fn try_from(r: LineRow) -> DomainResult<Line> {
        Ok(Line {
            kind: LineKind::parse(&r.kind)?,
            quantity: dec(&r.quantity)?,
            unit_price: dec(&r.unit_price)?,
            amount: dec(&r.amount)?,
            id: r.id,
            invoice_id: r.invoice_id,
            position: r.position,
            line_key: r.line_key,
            description: r.description,
            period_start: r.period_start,
            period_end: r.period_end,
        })
    }
}

impl Line {
    /// A row read with [`LINE_COLUMNS`].
    pub fn from_row(r: &sqlx::any::AnyRow) -> DomainResult<Line> {
        <LineRow as sqlx::FromRow<_>>::from_row(r)?.try_into()
    }
}

fn lines_of(rows: Vec<LineRow>) -> DomainResult<Vec<Line>> {
    rows.into_iter().map(Line::try_from).collect()
}

fn dec(s: &str) -> DomainResult<Decimal> {
    Ok(crate::money::stored(s)?)
}

/// The sum of stored amounts; the first that does not parse is an error.
fn sum_stored<'a>(amounts: impl IntoIterator<Item = &'a str>) -> DomainResult<Decimal> {
    amounts.into_iter().map(dec).sum()
}

/// A decimal as stored: plain, no trailing zeros beyond what it has.
pub fn plain(d: Decimal) -> String {
    d.normalize().to_string()
}

/// A decimal shown as stored by [`plain`] (quantities, unit prices, VAT rates): `"3"`, `"0.0001"`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Plain(pub Decimal);

impl serde::Serialize for Plain {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&plain(self.0))
    }
}

impl utoipa::PartialSchema for Plain {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        utoipa::openapi::ObjectBuilder::new()
            .schema_type(utoipa::openapi::schema::Type::String)
            .pattern(Some(r"^-?[0-9]+(\.[0-9]+)?$"))
            .description(Some(
                "A decimal as a string, no trailing zeros (\"3\", \"0.0001\")",
            ))
            .into()
    }
}

impl utoipa::ToSchema for Plain {}

pub async fn fetch(pool: &Pool, id: &str) -> DomainResult<Invoice> {
    sqlx::query_as::<_, InvoiceRow>(&format!(
        "SELECT {INVOICE_COLUMNS} FROM invoices WHERE id = $1"
    ))
    .bind(id)
    .fetch_optional(pool)
    .await?
    .ok_or_else(|| DomainError::not_found("invoice", id))?
    .try_into()
}

/// Reads the invoice inside a write transaction and locks its row until the transaction ends
/// (PostgreSQL; SQLite's write transactions are serialized already): every read-modify-write of
/// an invoice (issue, state actions, lines, credit notes) goes through here, so two concurrent
/// ones run one after the other and the second sees what the first wrote.
async fn fetch_tx(tx: &mut Tx, id: &str) -> DomainResult<Invoice> {
    sqlx::query_as::<_, InvoiceRow>(&format!(
        "SELECT {INVOICE_COLUMNS} FROM invoices WHERE id = $1{}",
        crate::store::for_update()
    ))
    .bind(id)
    .fetch_optional(&mut **tx)
    .await?
    .ok_or_else(|| DomainError::not_found("invoice", id))?
    .try_into()
}

pub async fn lines(pool: &Pool, invoice_id: &str) -> DomainResult<Vec<Line>> {
    lines_of(
        sqlx::query_as(&format!(
            "SELECT {LINE_COLUMNS} FROM invoice_lines WHERE invoice_id = $1 ORDER BY position"
        ))
        .bind(invoice_id)
        .fetch_all(pool)
        .await?,
    )
}

async fn lines_tx(tx: &mut Tx, invoice_id: &str) -> DomainResult<Vec<Line>> {
    lines_of(
        sqlx::query_as(&format!(
            "SELECT {LINE_COLUMNS} FROM invoice_lines WHERE invoice_id = $1 ORDER BY position"
        ))
        .bind(invoice_id)
        .fetch_all(&mut **tx)
        .await?,
    )
}

/// An invoice with its lines as the API shows it.
pub async fn object(pool: &Pool, id: &str) -> DomainResult<InvoiceObject> {
    let inv = fetch(pool, id).await?;
    let lines = lines(pool, id).await?;
    Ok(InvoiceObject::new(&inv, &lines))
}

/// [`object`] read inside `tx`, the invoice row locked ([`fetch_tx`]): the audit log's before and
/// after images of an admin's invoice write.
pub async fn object_tx(tx: &mut Tx, id: &str) -> DomainResult<InvoiceObject> {
    let inv = fetch_tx(tx, id).await?;
    let lines = lines_tx(tx, id).await?;
    Ok(InvoiceObject::new(&inv, &lines))
}

/// A page of invoices as the API shows them, their lines read in one query per
/// [`crate::store::PARAMS_PER_STATEMENT`] invoices (not one per invoice).
pub async fn page_objects(pool: &Pool, page: Page<Invoice>) -> DomainResult<Page<InvoiceObject>> {
    let mut by_invoice: HashMap<String, Vec<Line>> = HashMap::new();
    for chunk in page.data.chunks(crate::store::PARAMS_PER_STATEMENT) {
        let sql = format!(
            "SELECT {LINE_COLUMNS} FROM invoice_lines WHERE invoice_id IN {} ORDER BY invoice_id, position",
            crate::store::in_list(1, chunk.len())
        );
        let mut q = sqlx::query_as::<_, LineRow>(&sql).persistent(false); // one text per page size: not cached
        for inv in chunk {
            q = q.bind(&inv.id);
        }
        for line in lines_of(q.fetch_all(pool).await?)? {
            by_invoice
                .entry(line.invoice_id.clone())
                .or_default()
                .push(line);
        }
    }
    Ok(page.map(|inv| {
        InvoiceObject::new(
            inv,
            by_invoice.get(&inv.id).map(Vec::as_slice).unwrap_or(&[]),
        )
    }))
}

/// Which invoices a list shows.
#[derive(Clone, Debug)]
pub struct InvoiceFilter {
    /// Only this account's (all when `None`).
    pub account_id: Option<String>,
    /// Only in this state (all when `None`).
    pub state: Option<InvoiceState>,
    /// Only those whose period starts on this day (all when `None`).
    pub period_start: Option<i64>,
    pub kind: InvoiceKind,
}

/// A page of invoices (admin API), in id order.
pub async fn list(
    pool: &Pool,
    filter: &InvoiceFilter,
    req: &PageRequest,
) -> DomainResult<Page<InvoiceObject>> {
    let rows: Vec<InvoiceRow> = sqlx::query_as(&format!(
        "SELECT {INVOICE_COLUMNS} FROM invoices WHERE id > $1 AND ($2 = '' OR account_id = $2) AND ($3 = '' OR state = $3) \
         AND ($4 < 0 OR period_start = $4) AND kind = $5 ORDER BY id LIMIT $6"
    ))
    .bind(&req.after)
    .bind(filter.account_id.as_deref().unwrap_or_default())
    .bind(filter.state.map(InvoiceState::as_str).unwrap_or_default())
    .bind(filter.period_start.unwrap_or(-1))
    .bind(filter.kind.as_str())
    .bind(req.limit + 1)
    .fetch_all(pool)
    .await?;
    let invs = rows
        .into_iter()
        .map(Invoice::try_from)
        .collect::<DomainResult<Vec<_>>>()?;
    page_objects(pool, page(invs, req.limit, |i| &i.id)).await
}

/// A page of an account's issued invoices and credit notes (drafts stay with the admin), in id
/// order; the developer API's list. `state` is matched as given: an unknown state is an empty page.
pub async fn issued_of_account(
    pool: &Pool,
    account_id: &str,
    state: Option<&str>,
    req: &PageRequest,
) -> DomainResult<Page<InvoiceObject>> {
    let rows: Vec<InvoiceRow> = sqlx::query_as(&format!(
        "SELECT {INVOICE_COLUMNS} FROM invoices WHERE account_id = $1 AND id > $2 AND number IS NOT NULL \
         AND ($3 = '' OR state = $3) ORDER BY id LIMIT $4"
    ))
    .bind(account_id)
    .bind(&req.after)
    .bind(state.unwrap_or_default())
    .bind(req.limit + 1)
    .fetch_all(pool)
    .await?;
    let invs = rows
        .into_iter()
        .map(Invoice::try_from)
        .collect::<DomainResult<Vec<_>>>()?;
    page_objects(pool, page(invs, req.limit, |i| &i.id)).await
}

/// One row of the admin portal's invoice list.
#[derive(Clone, Debug)]
pub struct InvoiceSummary {
    pub id: String,
    pub number: Option<String>,
    pub state: InvoiceState,
    pub total: Money,
    pub account_name: String,
}

/// The newest `limit` invoices (not credit notes) with their account's name, newest first; the
/// admin portal's list.
pub async fn newest(
    pool: &Pool,
    state: Option<InvoiceState>,
    account_id: Option<&str>,
    limit: i64,
) -> DomainResult<Vec<InvoiceSummary>> {
    #[derive(sqlx::FromRow)]
    struct Row {
        id: String,
        number: Option<String>,
        state: String,
        total: String,
        currency: String,
        account_name: String,
    }
    let rows: Vec<Row> = sqlx::query_as(
        "SELECT i.id, i.number, i.state, i.total, i.currency, a.name AS account_name FROM invoices i JOIN accounts a ON a.id = i.account_id \
         WHERE i.kind = 'invoice' AND ($1 = '' OR i.state = $1) AND ($2 = '' OR i.account_id = $2) ORDER BY i.id DESC LIMIT $3",
    )
    .bind(state.map(InvoiceState::as_str).unwrap_or_default())
    .bind(account_id.unwrap_or_default())
    .bind(limit)
    .fetch_all(pool)
    .await?;
    rows.into_iter()
        .map(|r| {
            Ok(InvoiceSummary {
                state: InvoiceState::parse(&r.state)?,
                total: Money {
                    amount: dec(&r.total)?,
                    currency: Currency::stored(&r.currency)?,
                },
                id: r.id,
                number: r.number,
                account_name: r.account_name,
            })
        })
        .collect()
}

/// A period as the API shows it: first and last day covered (inclusive), `YYYY-MM-DD`.
#[derive(Clone, Debug, Serialize, utoipa::ToSchema)]
pub struct Period {
    pub start: String,
    pub end: String,
}

impl Period {
    /// The days `start..end` (end exclusive, as stored).
    fn of(start: i64, end: i64) -> Period {
        Period {
            start: format_date(start),
            end: format_date(end - 1),
        }
    }
}

/// An invoice line as the API shows it.
#[derive(Clone, Debug, Serialize, utoipa::ToSchema)]
pub struct LineObject {
    pub id: String,
    pub kind: LineKind,
    pub description: String,
    pub quantity: Plain,
    pub unit_price: Plain,
    pub amount: Money,
    /// What a fee or usage line covers; `null` for manual and credit lines.
    pub period: Option<Period>,
}

/// An invoice or credit note as the API shows it.
#[derive(Clone, Debug, Serialize, utoipa::ToSchema)]
pub struct InvoiceObject {
    /// `"invoice"` or `"credit_note"`.
    pub object: InvoiceKind,
    pub id: String,
    pub account_id: String,
    pub number: Option<String>,
    pub state: InvoiceState,
    /// ISO 4217.
    pub currency: &'static str,
    pub period: Period,
    pub lines: Vec<LineObject>,
    pub subtotal: Money,
    pub tax: Money,
    pub total: Money,
    pub vat_rate: Option<Plain>,
    /// The seller's text for invoices without VAT, on those.
    pub vat_note: Option<String>,
    /// Frozen when issued: name, email, address, vat_code.
    #[schema(value_type = Option<Object>)]
    pub buyer: Option<Value>,
    /// Frozen when issued: name, address, vat_id, vat_zero_text.
    #[schema(value_type = Option<Object>)]
    pub seller: Option<Value>,
    pub footer: Option<String>,
    pub credited_invoice_id: Option<String>,
    pub billing_run_id: Option<String>,
    pub issued_at: Option<i64>,
    /// `YYYY-MM-DD`.
    pub due_date: Option<String>,
    pub paid_at: Option<i64>,
    pub cancelled_at: Option<i64>,
    pub created_at: i64,
    pub updated_at: i64,
}

impl InvoiceObject {
    pub fn new(inv: &Invoice, lines: &[Line]) -> InvoiceObject {
        // A frozen document that does not parse is shown as null (as it always was).
        let parse = |s: &Option<String>| {
            s.as_deref()
                .and_then(|j| serde_json::from_str::<Value>(j).ok())
        };
        let vat_zero = inv.vat_rate.is_some_and(|r| r.is_zero());
        let seller = parse(&inv.seller);
        let vat_note = if vat_zero {
            seller
                .as_ref()
                .and_then(|s| s.get("vat_zero_text"))
                .and_then(Value::as_str)
                .filter(|t| !t.is_empty())
                .map(str::to_string)
        } else {
            None
        };
        InvoiceObject {
            object: inv.kind,
            id: inv.id.clone(),
            account_id: inv.account_id.clone(),
            number: inv.number.clone(),
            state: inv.state,
            currency: inv.currency.code,
            period: Period::of(inv.period_start, inv.period_end),
            lines: lines
                .iter()
                .map(|l| LineObject {
                    id: l.id.clone(),
                    kind: l.kind,
                    description: l.description.clone(),
                    quantity: Plain(l.quantity),
                    unit_price: Plain(l.unit_price),
                    amount: inv.money(l.amount),
                    period: match (l.period_start, l.period_end) {
                        (Some(s), Some(e)) => Some(Period::of(s, e)),
                        _ => None,
                    },
                })
                .collect(),
            subtotal: inv.money(inv.subtotal),
            tax: inv.money(inv.tax),
            total: inv.money(inv.total),
            vat_rate: inv.vat_rate.map(Plain),
            vat_note,
            buyer: parse(&inv.buyer),
            seller,
            footer: inv.footer.clone(),
            credited_invoice_id: inv.credited_invoice_id.clone(),
            billing_run_id: inv.billing_run_id.clone(),
            issued_at: inv.issued_at,
            due_date: inv.due_on.map(format_date),
            paid_at: inv.paid_at,
            cancelled_at: inv.cancelled_at,
            created_at: inv.created_at,
            updated_at: inv.updated_at,
        }
    }
}

/// The series an invoice's number belongs to (see `Numbering`); credit notes have their own.
pub fn series(numbering: Numbering, day: i64, credit_note: bool) -> String {
    let base = match numbering {
        Numbering::Monthly => format_month(day),
        Numbering::Yearly => format!("{:04}", year_of(day)),
    };
    if credit_note {
        format!("CN-{base}")
    } else {
        base
    }
}

pub fn format_number(series: &str, n: i64) -> String {
    format!("{series}-{n:08}")
}

/// Reserves `count` consecutive numbers in `series` inside `tx`; returns the first. Gapless: the
/// counter moves only if the issuing transaction commits.
pub async fn allocate_numbers(tx: &mut Tx, series: &str, count: i64) -> DomainResult<i64> {
    let (last,): (i64,) = sqlx::query_as(
        "INSERT INTO invoice_counters (series, last_number) VALUES ($1, $2) \
         ON CONFLICT (series) DO UPDATE SET last_number = invoice_counters.last_number + excluded.last_number \
         RETURNING last_number",
    )
    .bind(series)
    .bind(count)
    .fetch_one(&mut **tx)
    .await?;
    Ok(last - count + 1)
}

/// What billing needs of an account.
#[derive(Clone, Debug)]
pub struct Buyer {
    pub id: String,
    pub name: String,
    pub email: String,
    /// JSON, as stored on the account.
    pub billing_address: String,
    pub vat_rate: Decimal,
    pub vat_code: Option<String>,
    pub credit_balance: Decimal,
}

pub const BUYER_COLUMNS: &str =
    "id, name, email, billing_address, vat_rate, vat_code, credit_balance";

/// An `accounts` row read with [`BUYER_COLUMNS`].
#[derive(sqlx::FromRow)]
pub struct BuyerRow {
    id: String,
    name: String,
    email: String,
    billing_address: String,
    vat_rate: String,
    vat_code: Option<String>,
    credit_balance: String,
}

impl TryFrom<BuyerRow> for Buyer {
    type Error = DomainError;

    fn try_from(r: BuyerRow) -> DomainResult<Buyer> {
        Ok(Buyer {
            vat_rate: dec(&r.vat_rate)?,
            credit_balance: dec(&r.credit_balance)?,
            id: r.id,
            name: r.name,
            email: r.email,
            billing_address: r.billing_address,
            vat_code: r.vat_code,
        })
    }
}

/// Everything issuing decides, computed without the database.
#[derive(Clone, Debug)]
pub struct IssuePlan {
    pub settlement: Settlement,
    pub state: InvoiceState,
    pub buyer_json: String,
    pub seller_json: String,
    pub footer: String,
    pub vat_rate: Decimal,
    pub due_on: i64,
}

/// Settles an invoice whose lines have `amounts` for `buyer`, and freezes what issuing freezes.
pub fn plan_issue(
    amounts: &[Decimal],
    buyer: &Buyer,
    settings: &BillingSettings,
    currency: Currency,
    today: i64,
) -> Result<IssuePlan, DomainError> {
    let vat_rate = buyer.vat_rate;
    let settlement = settle(
        amounts.iter().sum(),
        buyer.credit_balance,
        vat_rate,
        currency,
    );
    let mut all: Vec<Decimal> = amounts.to_vec();
    all.extend(settlement.balance_line.iter().map(|l| l.amount));
    check(&all, &settlement.totals, currency).map_err(|e| DomainError::Internal(e.0))?;
    let address: Value = serde_json::from_str(&buyer.billing_address).unwrap_or(Value::Null);
    let buyer_json = json!({"name": buyer.name, "email": buyer.email, "address": address, "vat_code": buyer.vat_code});
    let s = &settings.seller;
    let seller_json = json!({"name": s.name, "address": s.address, "vat_id": s.vat_id, "vat_zero_text": settings.vat_zero_text});
    Ok(IssuePlan {
        state: if settlement.totals.total.is_zero() {
            InvoiceState::Paid
        } else {
            InvoiceState::Pending
        },
        settlement,
        buyer_json: buyer_json.to_string(),
        seller_json: seller_json.to_string(),
        footer: settings.invoice_footer.clone(),
        vat_rate,
        due_on: today + settings.due_days,
    })
}

/// Inserts `lines` into `invoice_id` from `position` on, in multi-row statements.
pub async fn insert_lines(
    tx: &mut Tx,
    rows: &[(&str, i64, &NewLine, Currency)],
) -> DomainResult<()> {
    for chunk in rows.chunks(crate::store::rows_per_statement(12)) {
        let sql = format!(
            "INSERT INTO invoice_lines ({LINE_COLUMNS}) VALUES {}",
            crate::store::placeholders(chunk.len(), 12)
        );
        let mut q = sqlx::query(&sql).persistent(false); // one text per row count: not cached
        for (invoice_id, position, l, currency) in chunk {
            q = q
                .bind(new_id("il"))
                .bind(*invoice_id)
                .bind(*position)
                .bind(l.kind.as_str())
                .bind(l.key.clone())
                .bind(l.contract_id.clone())
                .bind(l.description.clone())
                .bind(plain(l.quantity))
                .bind(plain(l.unit_price))
                .bind(currency.format(l.amount))
                .bind(l.period_start)
                .bind(l.period_end);
        }
        q.execute(&mut **tx).await?;
    }
    Ok(())
}

/// Renders an email text's placeholders for an invoice.
pub fn render_text(
    template: &str,
    buyer_name: &str,
    number: &str,
    total: &str,
    currency: &str,
    due: &str,
    period: &str,
) -> String {
    template
        .replace("{account_name}", buyer_name)
        .replace("{invoice_number}", number)
        .replace("{total}", total)
        .replace("{currency}", currency)
        .replace("{due_date}", due)
        .replace("{period}", period)
}

/// Issues one open or finalized invoice (the manual path; runs issue in batches).
pub async fn issue(
    tx: &mut Tx,
    id: &str,
    settings: &BillingSettings,
    now: i64,
) -> DomainResult<()> {
    let inv = fetch_tx(tx, id).await?;
    if !matches!(inv.state, InvoiceState::Open | InvoiceState::Finalized) {
        return Err(transition_error(&inv, "issue"));
    }
    let currency = inv.currency;
    let lines = lines_tx(tx, id).await?;
    let amounts: Vec<Decimal> = lines.iter().map(|l| l.amount).collect();
    // Locked: the credit balance read here is written back below.
    let buyer: Buyer = sqlx::query_as::<_, BuyerRow>(&format!(
        "SELECT {BUYER_COLUMNS} FROM accounts WHERE id = $1{}",
        crate::store::for_update()
    ))
    .bind(&inv.account_id)
    .fetch_one(&mut **tx)
    .await?
    .try_into()?;
    let today = super::calendar::day_of(now);
    let plan = plan_issue(&amounts, &buyer, settings, currency, today)?;
    if let Some(l) = &plan.settlement.balance_line {
        let position = lines.iter().map(|l| l.position).max().unwrap_or(0) + 1;
        insert_lines(tx, &[(id, position, l, currency)]).await?;
    }
    let series = series(settings.numbering, inv.period_start, false);
    let number = format_number(&series, allocate_numbers(tx, &series, 1).await?);
    write_issued(tx, id, &plan, &number, currency, None, now).await?;
    set_balance(tx, &inv.account_id, plan.settlement.balance_after).await?;
    crate::domain::webhooks::enqueue_many(
        tx,
        &issued_events(id, &inv.account_id, &number, &plan, currency),
    )
    .await?;
    let email = issued_email(
        settings,
        &buyer,
        id,
        &number,
        &plan,
        currency,
        inv.period_start,
    );
    super::outbox::enqueue(tx, &email, now).await
}

/// Writes what issuing decided onto an existing invoice row (the manual path, and a run issuing
/// an open invoice the admin had started). `run_id`: the billing run that issued it, if any.
pub async fn write_issued(
    tx: &mut Tx,
    id: &str,
    plan: &IssuePlan,
    number: &str,
    currency: Currency,
    run_id: Option<&str>,
    now: i64,
) -> DomainResult<()> {
    let t = &plan.settlement.totals;
    sqlx::query(
        "UPDATE invoices SET state = $2, number = $3, subtotal = $4, tax = $5, total = $6, vat_rate = $7, buyer = $8, seller = $9, footer = $10, issued_at = $11, due_on = $12, paid_at = $13, billing_run_id = COALESCE($14, billing_run_id), updated_at = $11 WHERE id = $1",
    )
    .bind(id)
    .bind(plan.state.as_str())
    .bind(number)
    .bind(currency.format(t.subtotal))
    .bind(currency.format(t.tax))
    .bind(currency.format(t.total))
    .bind(plain(plan.vat_rate))
    .bind(&plan.buyer_json)
    .bind(&plan.seller_json)
    .bind(&plan.footer)
    .bind(now)
    .bind(plan.due_on)
    .bind((plan.state == InvoiceState::Paid).then_some(now))
    .bind(run_id)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// The "invoice issued" email (with the PDF attached when sent), rendered from the settings' text.
pub fn issued_email(
    settings: &BillingSettings,
    buyer: &Buyer,
    invoice_id: &str,
    number: &str,
    plan: &IssuePlan,
    currency: Currency,
    period_start: i64,
) -> super::outbox::Email {
    let text = &settings.email_texts.invoice_issued;
    let render = |t: &str| {
        render_text(
            t,
            &buyer.name,
            number,
            &currency.format(plan.settlement.totals.total),
            currency.code,
            &format_date(plan.due_on),
            &format_month(period_start),
        )
    };
    super::outbox::Email {
        dedupe_key: format!("invoice_issued:{invoice_id}"),
        kind: super::outbox::EmailKind::InvoiceIssued,
        recipient: buyer.email.clone(),
        subject: render(&text.subject),
        body: render(&text.body),
        invoice_id: Some(invoice_id.to_string()),
    }
}

/// An account's credit balance, its row locked until the transaction ends (PostgreSQL; SQLite's
/// write transactions are serialized already), for a read-modify-write through [`set_balance`].
async fn locked_balance(tx: &mut Tx, account_id: &str) -> DomainResult<Decimal> {
    let (balance,): (String,) = sqlx::query_as(&format!(
        "SELECT credit_balance FROM accounts WHERE id = $1{}",
        crate::store::for_update()
    ))
    .bind(account_id)
    .fetch_one(&mut **tx)
    .await?;
    dec(&balance)
}

pub async fn set_balance(tx: &mut Tx, account_id: &str, balance: Decimal) -> DomainResult<()> {
    sqlx::query("UPDATE accounts SET credit_balance = $2 WHERE id = $1")
        .bind(account_id)
        .bind(plain(balance))
        .execute(&mut **tx)
        .await?;
    Ok(())
}

fn transition_error(inv: &Invoice, action: &str) -> DomainError {
    DomainError::conflict(
        "invalid_state",
        format!("cannot {action} an invoice that is {}", inv.state),
    )
}

/// Whether a charge of the invoice holds its lease at `now` (claimed by a request that is still
/// waiting for the provider; charging claims it, see `docs/architecture.md`).
async fn charge_in_flight(tx: &mut Tx, id: &str, now: i64) -> DomainResult<bool> {
    let (n,): (i64,) = sqlx::query_as(
        "SELECT COUNT(*) FROM charge_attempts WHERE invoice_id = $1 AND state = 'pending' AND lease_until > $2",
    )
    .bind(id)
    .bind(now)
    .fetch_one(&mut **tx)
    .await?;
    Ok(n > 0)
}

/// 409 `charge_in_progress`: the answer a second charge gets while one is in flight, also given
/// to an admin's mark-paid or cancel meanwhile (same code and message as charging's).
pub fn charge_in_progress() -> DomainError {
    DomainError::conflict(
        "charge_in_progress",
        "a payment of this invoice is being made; look at the invoice again in a moment",
    )
}

/// What cancelling an invoice gives back to the credit balance: the credit it used (its "credit
/// applied" line, negative) comes back, the credit it carried (positive) is taken back.
fn balance_moved_by_cancel(lines: &[Line]) -> DomainResult<Decimal> {
    let carried: Decimal = lines
        .iter()
        .filter(|l| matches!(l.kind, LineKind::CreditApplied | LineKind::CreditCarried))
        .map(|l| l.amount)
        .sum();
    Ok(-carried)
}

/// The balance after a cancel moves `moved`, exactly; `None` when that would be negative (the
/// credit the invoice carried was spent since). Never clamped: a clamp to zero would let the spent
/// credit stay spent and the cancelled invoice's credit vanish from the books (money appearing).
fn balance_after_cancel(balance: Decimal, moved: Decimal) -> Option<Decimal> {
    let after = balance.checked_add(moved)?;
    (after >= Decimal::ZERO).then_some(after)
}

/// The state actions an admin can take: finalize, issue, pay (mark paid), cancel.
pub async fn act(
    tx: &mut Tx,
    id: &str,
    action: InvoiceAction,
    settings: &BillingSettings,
    now: i64,
) -> DomainResult<()> {
    let inv = fetch_tx(tx, id).await?;
    if inv.kind != InvoiceKind::Invoice {
        return Err(DomainError::conflict(
            "invalid_state",
            "credit notes have no state actions",
        ));
    }
    let (from, to): (&[&str], InvoiceState) = match action {
        InvoiceAction::Finalize => (&["open"], InvoiceState::Finalized),
        InvoiceAction::Issue => return issue(tx, id, settings, now).await,
        InvoiceAction::Pay => (&["pending", "unpaid"], InvoiceState::Paid),
        InvoiceAction::Cancel => (UNSETTLED, InvoiceState::Cancelled),
    };
    if !from.contains(&inv.state.as_str()) {
        return Err(transition_error(&inv, action.as_str()));
    }
    if matches!(action, InvoiceAction::Pay | InvoiceAction::Cancel)
        && charge_in_flight(tx, id, now).await?
    {
        // The provider's answer would land on an invoice settled meanwhile.
        return Err(charge_in_progress());
    }
    if action == InvoiceAction::Cancel {
        let lines = lines_tx(tx, id).await?;
        let moved = balance_moved_by_cancel(&lines)?;
        if !moved.is_zero() {
            let balance = locked_balance(tx, &inv.account_id).await?;
            let after = balance_after_cancel(balance, moved).ok_or_else(|| {
                DomainError::conflict(
                    "credit_already_used",
                    format!(
                        "this invoice carried {} to the account's credit balance and only {} is left: cancel what used it first",
                        plain(-moved),
                        plain(balance)
                    ),
                )
            })?;
            set_balance(tx, &inv.account_id, after).await?;
        }
    }
    sqlx::query(
        "UPDATE invoices SET state = $2, paid_at = CASE WHEN $2 = 'paid' THEN $3 ELSE paid_at END, cancelled_at = CASE WHEN $2 = 'cancelled' THEN $3 ELSE cancelled_at END, updated_at = $3 WHERE id = $1",
    )
    .bind(id)
    .bind(to.as_str())
    .bind(now)
    .execute(&mut **tx)
    .await?;
    if to == InvoiceState::Paid {
        crate::domain::webhooks::enqueue(
            tx,
            Event::InvoicePaid(InvoiceData::of(&inv, to.as_str())),
        )
        .await?;
    }
    Ok(())
}

/// A new open invoice for the account, covering the month of `today`.
pub async fn create_open(
    tx: &mut Tx,
    account_id: &str,
    settings: &BillingSettings,
    today: i64,
    now: i64,
) -> DomainResult<String> {
    let id = new_id("inv");
    let start = super::calendar::month_start(today);
    sqlx::query(
        "INSERT INTO invoices (id, account_id, kind, credited_invoice_id, state, number, currency, period_start, period_end, subtotal, tax, total, created_at, updated_at) \
         VALUES ($1, $2, 'invoice', NULL, 'open', NULL, $3, $4, $5, $7, $7, $7, $6, $6)",
    )
    .bind(&id)
    .bind(account_id)
    .bind(&settings.currency)
    .bind(start)
    .bind(super::calendar::next_month_start(today))
    .bind(now)
    .bind(settings.currency()?.format(Decimal::ZERO))
    .execute(&mut **tx)
    .await?;
    Ok(id)
}

/// Parses a manual line's signed decimal (negative unit prices make discounts).
pub fn parse_signed(param: &str, raw: &str) -> DomainResult<Decimal> {
    let (neg, body) = match raw.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, raw),
    };
    let v = parse_amount(body).map_err(|m| DomainError::invalid(param, "invalid_amount", m))?;
    Ok(if neg { -v } else { v })
}

/// Adds a manual line to an open invoice; the amount is rounded once, here.
pub async fn add_manual_line(
    tx: &mut Tx,
    id: &str,
    description: &str,
    quantity: Decimal,
    unit_price: Decimal,
) -> DomainResult<()> {
    let inv = fetch_tx(tx, id).await?;
    if inv.state != InvoiceState::Open {
        return Err(transition_error(&inv, "add lines to"));
    }
    let currency = inv.currency;
    let amount = quantity
        .checked_mul(unit_price)
        .map(|a| currency.round(a))
        .ok_or_else(|| {
            DomainError::invalid(
                "quantity",
                "amount_too_large",
                "quantity × unit_price is too large",
            )
        })?;
    let (position,): (i64,) = sqlx::query_as(
        "SELECT COALESCE(MAX(position), 0) + 1 FROM invoice_lines WHERE invoice_id = $1",
    )
    .bind(id)
    .fetch_one(&mut **tx)
    .await?;
    let line = NewLine {
        key: None,
        kind: LineKind::Manual,
        contract_id: None,
        description: description.to_string(),
        quantity,
        unit_price,
        amount,
        period_start: None,
        period_end: None,
    };
    insert_lines(tx, &[(id, position, &line, currency)]).await?;
    refresh_open_totals(tx, id, currency).await
}

/// An open invoice shows the running sum of its lines (tax is computed when issued).
pub async fn refresh_open_totals(tx: &mut Tx, id: &str, currency: Currency) -> DomainResult<()> {
    let sum: Decimal = lines_tx(tx, id).await?.iter().map(|l| l.amount).sum();
    sqlx::query("UPDATE invoices SET subtotal = $2, total = $2, updated_at = $3 WHERE id = $1")
        .bind(id)
        .bind(currency.format(sum))
        .bind(crate::store::now())
        .execute(&mut **tx)
        .await?;
    Ok(())
}

pub async fn remove_manual_line(tx: &mut Tx, id: &str, line_id: &str) -> DomainResult<()> {
    let inv = fetch_tx(tx, id).await?;
    if inv.state != InvoiceState::Open {
        return Err(transition_error(&inv, "remove lines from"));
    }
    let r = sqlx::query(
        "DELETE FROM invoice_lines WHERE id = $1 AND invoice_id = $2 AND kind = 'manual'",
    )
    .bind(line_id)
    .bind(id)
    .execute(&mut **tx)
    .await?;
    if r.rows_affected() == 0 {
        return Err(DomainError::not_found("manual invoice line", line_id));
    }
    refresh_open_totals(tx, id, inv.currency).await
}

/// A credit note for an issued invoice: its own numbered document (series `CN-...`), taxed at the
/// invoice's frozen rate; its net amount goes to the account's credit balance. At most the
/// invoice's subtotal can be credited in all.
pub async fn credit_note(
    tx: &mut Tx,
    id: &str,
    amount: Decimal,
    reason: &str,
    settings: &BillingSettings,
    now: i64,
) -> DomainResult<String> {
    let inv = fetch_tx(tx, id).await?;
    if inv.kind != InvoiceKind::Invoice
        || !matches!(
            inv.state,
            InvoiceState::Pending
                | InvoiceState::Paid
                | InvoiceState::Unpaid
                | InvoiceState::Failed
        )
    {
        return Err(DomainError::conflict(
            "invalid_state",
            "only issued invoices can be credited",
        ));
    }
    let currency = inv.currency;
    let amount = currency.round(amount);
    if amount <= Decimal::ZERO {
        return Err(DomainError::invalid(
            "amount",
            "invalid_amount",
            format!("more than zero in {}", currency.code),
        ));
    }
    let credited: Vec<(String,)> = sqlx::query_as(
        "SELECT subtotal FROM invoices WHERE credited_invoice_id = $1 AND kind = 'credit_note'",
    )
    .bind(id)
    .fetch_all(&mut **tx)
    .await?;
    let already = sum_stored(credited.iter().map(|(s,)| s.as_str()))?;
    let left = inv.subtotal - already;
    if amount > left {
        return Err(DomainError::invalid(
            "amount",
            "exceeds_invoice",
            format!(
                "at most {} can still be credited",
                currency.format(left.max(Decimal::ZERO))
            ),
        ));
    }
    // An invoice issued without VAT stores none: zero is the stored fact, not a fallback.
    let vat_rate = inv.vat_rate.unwrap_or(Decimal::ZERO);
    let tax = currency.round(amount * vat_rate / Decimal::ONE_HUNDRED);
    let today = super::calendar::day_of(now);
    let series = series(settings.numbering, today, true);
    let number = format_number(&series, allocate_numbers(tx, &series, 1).await?);
    let cn = new_id("inv");
    sqlx::query(
        "INSERT INTO invoices (id, account_id, kind, credited_invoice_id, state, number, currency, period_start, period_end, subtotal, tax, total, vat_rate, buyer, seller, footer, issued_at, created_at, updated_at) \
         VALUES ($1, $2, 'credit_note', $3, 'issued', $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $15, $15)",
    )
    .bind(&cn)
    .bind(&inv.account_id)
    .bind(id)
    .bind(&number)
    .bind(inv.currency.code)
    .bind(inv.period_start)
    .bind(inv.period_end)
    .bind(currency.format(amount))
    .bind(currency.format(tax))
    .bind(currency.format(amount + tax))
    .bind(inv.vat_rate.map(plain))
    .bind(&inv.buyer)
    .bind(&inv.seller)
    .bind(&inv.footer)
    .bind(now)
    .execute(&mut **tx)
    .await?;
    let description = match reason.trim() {
        "" => format!("Credit for invoice {}", inv.number.as_deref().unwrap_or(id)),
        r => format!(
            "Credit for invoice {}: {r}",
            inv.number.as_deref().unwrap_or(id)
        ),
    };
    let line = NewLine {
        key: None,
        kind: LineKind::CreditNote,
        contract_id: None,
        description,
        quantity: Decimal::ONE,
        unit_price: amount,
        amount,
        period_start: None,
        period_end: None,
    };
    insert_lines(tx, &[(cn.as_str(), 1, &line, currency)]).await?;
    let balance = locked_balance(tx, &inv.account_id).await?;
    set_balance(tx, &inv.account_id, balance + amount).await?;
    Ok(cn)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::billing::test_support::d;

    fn line(kind: LineKind, amount: &str) -> Line {
        Line {
            id: "l".into(),
            invoice_id: "inv".into(),
            position: 1,
            kind,
            line_key: None,
            description: String::new(),
            quantity: Decimal::ONE,
            unit_price: d(amount),
            amount: d(amount),
            period_start: None,
            period_end: None,
        }
    }

    #[test]
    fn cancel_gives_back_exactly_the_credit_used_and_takes_back_the_credit_carried() {
        let used = [
            line(LineKind::Manual, "50.00"),
            line(LineKind::CreditApplied, "-30.00"),
        ];
        assert_eq!(balance_moved_by_cancel(&used).unwrap(), d("30.00"));
        assert_eq!(balance_after_cancel(d("0"), d("30.00")), Some(d("30.00")));
        let carried = [
            line(LineKind::Manual, "-20.00"),
            line(LineKind::CreditCarried, "20.00"),
        ];
        assert_eq!(balance_moved_by_cancel(&carried).unwrap(), d("-20.00"));
        assert_eq!(balance_after_cancel(d("25"), d("-20.00")), Some(d("5.00")));
        assert_eq!(balance_after_cancel(d("20"), d("-20.00")), Some(d("0.00")));
    }

    #[test]
    fn cancel_never_clamps_a_balance_it_cannot_take_back() {
        // The carried credit was spent since: clamping to 0 (the old rule) let 15 appear.
        assert_eq!(balance_after_cancel(d("5"), d("-20.00")), None);
        assert_eq!(balance_after_cancel(Decimal::MAX, Decimal::ONE), None);
    }
}
