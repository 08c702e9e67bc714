//! Invoices in the database: reading them, issuing them (settle, freeze, number), state changes,
//! manual lines and credit notes. The billing run issues in batches with the same pure pieces.
//!
//! States: `open` (lines may change) -> `finalized` (lines frozen) -> `pending` (issued: numbered,
//! buyer/seller/VAT/currency frozen, awaiting payment) -> `paid`; a failed charge makes it
//! `unpaid`, and the last failed attempt `failed`. `cancelled` from any unsettled state. An
//! invoice whose total is zero is `paid` when issued. Credit notes are `issued` documents.

use rust_decimal::Decimal;
use serde_json::{json, Value};
use sqlx::Row;

use super::calendar::{format_date, format_month, year_of};
use super::currency::{Currency, UnknownCurrency};
use super::lines::{LineKind, NewLine};
use super::settings::{BillingSettings, Numbering};
use super::totals::{check, settle, Settlement};
use crate::domain::{DomainError, DomainResult};
use crate::money::parse_amount;
use crate::secrets::new_id;
use crate::store::{Pool, Tx};

pub const INVOICE_COLUMNS: &str = "id, account_id, kind, credited_invoice_id, state, number, currency, period_start, period_end, subtotal, tax, total, vat_rate, buyer, seller, footer, billing_run_id, issued_at, due_on, paid_at, cancelled_at, created_at, updated_at";
const LINE_COLUMNS: &str = "id, invoice_id, position, kind, line_key, contract_id, description, quantity, unit_price, amount, period_start, period_end";

/// States in which money is still expected (or the invoice is still being prepared).
pub const UNSETTLED: &[&str] = &["open", "finalized", "pending", "unpaid"];

#[derive(Clone, Debug)]
pub struct Invoice {
    pub id: String,
    pub account_id: String,
    pub kind: String,
    pub credited_invoice_id: Option<String>,
    pub state: String,
    pub number: Option<String>,
    pub currency: String,
    pub period_start: i64,
    pub period_end: i64,
    pub subtotal: String,
    pub tax: String,
    pub total: String,
    pub vat_rate: Option<String>,
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

impl Invoice {
    pub fn from_row(r: &sqlx::any::AnyRow) -> Result<Invoice, sqlx::Error> {
        Ok(Invoice {
            id: r.try_get("id")?,
            account_id: r.try_get("account_id")?,
            kind: r.try_get("kind")?,
            credited_invoice_id: r.try_get("credited_invoice_id")?,
            state: r.try_get("state")?,
            number: r.try_get("number")?,
            currency: r.try_get("currency")?,
            period_start: r.try_get("period_start")?,
            period_end: r.try_get("period_end")?,
            subtotal: r.try_get("subtotal")?,
            tax: r.try_get("tax")?,
            total: r.try_get("total")?,
            vat_rate: r.try_get("vat_rate")?,
            buyer: r.try_get("buyer")?,
            seller: r.try_get("seller")?,
            footer: r.try_get("footer")?,
            billing_run_id: r.try_get("billing_run_id")?,
            issued_at: r.try_get("issued_at")?,
            due_on: r.try_get("due_on")?,
            paid_at: r.try_get("paid_at")?,
            cancelled_at: r.try_get("cancelled_at")?,
            created_at: r.try_get("created_at")?,
            updated_at: r.try_get("updated_at")?,
        })
    }

    /// The invoice's currency; an unknown stored code is an error (never charged as USD).
    pub fn currency(&self) -> Result<Currency, UnknownCurrency> {
        Currency::stored(&self.currency)
    }
}

#[derive(Clone, Debug)]
pub struct Line {
    pub id: String,
    pub position: i64,
    pub kind: String,
    pub line_key: Option<String>,
    pub description: String,
    pub quantity: String,
    pub unit_price: String,
    pub amount: String,
    pub period_start: Option<i64>,
    pub period_end: Option<i64>,
}

fn line_from_row(r: &sqlx::any::AnyRow) -> Result<Line, sqlx::Error> {
    Ok(Line {
        id: r.try_get("id")?,
        position: r.try_get("position")?,
        kind: r.try_get("kind")?,
        line_key: r.try_get("line_key")?,
        description: r.try_get("description")?,
        quantity: r.try_get("quantity")?,
        unit_price: r.try_get("unit_price")?,
        amount: r.try_get("amount")?,
        period_start: r.try_get("period_start")?,
        period_end: r.try_get("period_end")?,
    })
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

pub async fn fetch(pool: &Pool, id: &str) -> DomainResult<Invoice> {
    let row = sqlx::query(&format!(
        "SELECT {INVOICE_COLUMNS} FROM invoices WHERE id = $1"
    ))
    .bind(id)
    .fetch_optional(pool)
    .await?
    .ok_or_else(|| DomainError::not_found("invoice", id))?;
    Ok(Invoice::from_row(&row)?)
}

/// Reads the invoice inside a write transaction and locks its row until the transaction ends
/// (PostgreSQL; SQLite's write transactions are serialized already): every read-modify-write of
/// an invoice (issue, state actions, lines, credit notes) goes through here, so two concurrent
/// ones run one after the other and the second sees what the first wrote.
async fn fetch_tx(tx: &mut Tx, id: &str) -> DomainResult<Invoice> {
    let row = sqlx::query(&format!(
        "SELECT {INVOICE_COLUMNS} FROM invoices WHERE id = $1{}",
        crate::store::for_update()
    ))
    .bind(id)
    .fetch_optional(&mut **tx)
    .await?
    .ok_or_else(|| DomainError::not_found("invoice", id))?;
    Ok(Invoice::from_row(&row)?)
}

pub async fn lines(pool: &Pool, invoice_id: &str) -> DomainResult<Vec<Line>> {
    let rows = sqlx::query(&format!(
        "SELECT {LINE_COLUMNS} FROM invoice_lines WHERE invoice_id = $1 ORDER BY position"
    ))
    .bind(invoice_id)
    .fetch_all(pool)
    .await?;
    Ok(rows.iter().map(line_from_row).collect::<Result<_, _>>()?)
}

/// A page of invoices as the API shows them, their lines read in one query per
/// [`crate::store::PARAMS_PER_STATEMENT`] invoices (not one per invoice).
pub async fn page_json(pool: &Pool, page: crate::domain::Page<Invoice>) -> DomainResult<Value> {
    let mut by_invoice: std::collections::HashMap<String, Vec<Line>> =
        std::collections::HashMap::new();
    for chunk in page.data.chunks(crate::store::PARAMS_PER_STATEMENT) {
        let sql = format!(
            "SELECT {LINE_COLUMNS} FROM invoice_lines WHERE invoice_id IN {} ORDER BY invoice_id, position",
            crate::store::in_list(1, chunk.len())
        );
        let mut q = sqlx::query(&sql).persistent(false); // one text per page size: not cached
        for inv in chunk {
            q = q.bind(&inv.id);
        }
        for row in q.fetch_all(pool).await? {
            let invoice_id: String = row.try_get("invoice_id")?;
            by_invoice
                .entry(invoice_id)
                .or_default()
                .push(line_from_row(&row)?);
        }
    }
    let data: Vec<Value> = page
        .data
        .iter()
        .map(|inv| {
            to_json(
                inv,
                by_invoice.get(&inv.id).map(Vec::as_slice).unwrap_or(&[]),
            )
        })
        .collect();
    serde_json::to_value(page.with_data(data)).map_err(|e| DomainError::Internal(e.to_string()))
}

async fn lines_tx(tx: &mut Tx, invoice_id: &str) -> DomainResult<Vec<Line>> {
    let rows = sqlx::query(&format!(
        "SELECT {LINE_COLUMNS} FROM invoice_lines WHERE invoice_id = $1 ORDER BY position"
    ))
    .bind(invoice_id)
    .fetch_all(&mut **tx)
    .await?;
    Ok(rows.iter().map(line_from_row).collect::<Result<_, _>>()?)
}

/// The invoice as the API shows it. `period.end` is the last day covered (inclusive).
pub fn to_json(inv: &Invoice, lines: &[Line]) -> Value {
    let parse = |s: &Option<String>| {
        s.as_deref()
            .and_then(|j| serde_json::from_str::<Value>(j).ok())
    };
    let vat_zero = inv
        .vat_rate
        .as_deref()
        .map(dec)
        .is_some_and(|r| r.is_ok_and(|r| r.is_zero()));
    let seller = parse(&inv.seller);
    json!({
        "object": if inv.kind == "credit_note" { "credit_note" } else { "invoice" },
        "id": inv.id, "account_id": inv.account_id, "number": inv.number, "state": inv.state,
        "currency": inv.currency,
        "period": {"start": format_date(inv.period_start), "end": format_date(inv.period_end - 1)},
        "lines": lines.iter().map(|l| json!({
            "id": l.id, "kind": l.kind, "description": l.description, "quantity": l.quantity,
            "unit_price": l.unit_price, "amount": l.amount,
            "period": match (l.period_start, l.period_end) {
                (Some(s), Some(e)) => json!({"start": format_date(s), "end": format_date(e - 1)}),
                _ => Value::Null,
            },
        })).collect::<Vec<_>>(),
        "subtotal": inv.subtotal, "tax": inv.tax, "total": inv.total, "vat_rate": inv.vat_rate,
        "vat_note": if vat_zero { seller.as_ref().and_then(|s| s.get("vat_zero_text").cloned()).filter(|t| t != "") } else { None },
        "buyer": parse(&inv.buyer), "seller": seller, "footer": inv.footer,
        "credited_invoice_id": inv.credited_invoice_id, "billing_run_id": inv.billing_run_id,
        "issued_at": inv.issued_at, "due_date": inv.due_on.map(format_date), "paid_at": inv.paid_at,
        "cancelled_at": inv.cancelled_at, "created_at": inv.created_at, "updated_at": inv.updated_at,
    })
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
    pub billing_address: String,
    pub vat_rate: String,
    pub vat_code: Option<String>,
    pub credit_balance: String,
}

pub const BUYER_COLUMNS: &str =
    "id, name, email, billing_address, vat_rate, vat_code, credit_balance";

pub fn buyer_from_row(r: &sqlx::any::AnyRow) -> Result<Buyer, sqlx::Error> {
    Ok(Buyer {
        id: r.try_get("id")?,
        name: r.try_get("name")?,
        email: r.try_get("email")?,
        billing_address: r.try_get("billing_address")?,
        vat_rate: r.try_get("vat_rate")?,
        vat_code: r.try_get("vat_code")?,
        credit_balance: r.try_get("credit_balance")?,
    })
}

/// Everything issuing decides, computed without the database.
#[derive(Clone, Debug)]
pub struct IssuePlan {
    pub settlement: Settlement,
    pub state: &'static str,
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
    let vat_rate = dec(&buyer.vat_rate)?;
    let settlement = settle(
        amounts.iter().sum(),
        dec(&buyer.credit_balance)?,
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
            "paid"
        } else {
            "pending"
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
    if inv.state != "open" && inv.state != "finalized" {
        return Err(transition_error(&inv, "issue"));
    }
    let currency = inv.currency()?;
    let lines = lines_tx(tx, id).await?;
    let amounts: Vec<Decimal> = lines
        .iter()
        .map(|l| dec(&l.amount))
        .collect::<DomainResult<_>>()?;
    // Locked: the credit balance read here is written back below.
    let row = sqlx::query(&format!(
        "SELECT {BUYER_COLUMNS} FROM accounts WHERE id = $1{}",
        crate::store::for_update()
    ))
    .bind(&inv.account_id)
    .fetch_one(&mut **tx)
    .await?;
    let buyer = buyer_from_row(&row)?;
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
    .bind(plan.state)
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
    .bind((plan.state == "paid").then_some(now))
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
        kind: "invoice_issued",
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
    let carried = sum_stored(
        lines
            .iter()
            .filter(|l| {
                l.kind == LineKind::CreditApplied.as_str()
                    || l.kind == LineKind::CreditCarried.as_str()
            })
            .map(|l| l.amount.as_str()),
    )?;
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
    action: &str,
    settings: &BillingSettings,
    now: i64,
) -> DomainResult<()> {
    let inv = fetch_tx(tx, id).await?;
    if inv.kind != "invoice" {
        return Err(DomainError::conflict(
            "invalid_state",
            "credit notes have no state actions",
        ));
    }
    let (from, to): (&[&str], &str) = match action {
        "finalize" => (&["open"], "finalized"),
        "issue" => return issue(tx, id, settings, now).await,
        "pay" => (&["pending", "unpaid"], "paid"),
        "cancel" => (UNSETTLED, "cancelled"),
        _ => {
            return Err(DomainError::Internal(format!(
                "unknown invoice action {action:?}"
            )))
        }
    };
    if !from.contains(&inv.state.as_str()) {
        return Err(transition_error(&inv, action));
    }
    if (action == "pay" || action == "cancel") && charge_in_flight(tx, id, now).await? {
        // The provider's answer would land on an invoice settled meanwhile.
        return Err(charge_in_progress());
    }
    if action == "cancel" {
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
    .bind(to)
    .bind(now)
    .execute(&mut **tx)
    .await?;
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
    if inv.state != "open" {
        return Err(transition_error(&inv, "add lines to"));
    }
    let currency = inv.currency()?;
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
    let sum = sum_stored(lines_tx(tx, id).await?.iter().map(|l| l.amount.as_str()))?;
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
    if inv.state != "open" {
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
    refresh_open_totals(tx, id, inv.currency()?).await
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
    if inv.kind != "invoice"
        || !["pending", "paid", "unpaid", "failed"].contains(&inv.state.as_str())
    {
        return Err(DomainError::conflict(
            "invalid_state",
            "only issued invoices can be credited",
        ));
    }
    let currency = inv.currency()?;
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
    let left = dec(&inv.subtotal)? - already;
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
    let vat_rate = inv
        .vat_rate
        .as_deref()
        .map(dec)
        .transpose()?
        .unwrap_or(Decimal::ZERO);
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
    .bind(&inv.currency)
    .bind(inv.period_start)
    .bind(inv.period_end)
    .bind(currency.format(amount))
    .bind(currency.format(tax))
    .bind(currency.format(amount + tax))
    .bind(&inv.vat_rate)
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
            position: 1,
            kind: kind.as_str().into(),
            line_key: None,
            description: String::new(),
            quantity: "1".into(),
            unit_price: amount.into(),
            amount: amount.into(),
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
