//! The invoices export: one row per invoice line with its invoice's columns repeated (an invoice
//! without lines still has one row, its line columns empty), or with `lines=false` one row per
//! invoice. Invoices and credit notes both, in id order, lines in their invoice's order.
//!
//! Amounts are the strings the JSON API shows (the currency's decimals, as stored when issued);
//! quantities, unit prices and VAT rates are plain decimals, as in the API.

use std::collections::HashSet;

use serde::Deserialize;
use serde_json::Value;

use super::{check_range, non_empty, parse_opt_time, Cell, Row, EXPORT_BATCH_ROWS};
use crate::domain::billing::calendar::format_date;
use crate::domain::billing::currency::Currency;
use crate::domain::billing::invoices::{
    plain, Invoice, InvoiceKind, InvoiceState, Line, INVOICE_COLUMNS, LINE_COLUMNS,
};
use crate::domain::{DomainError, DomainResult};
use crate::store::Pool;

/// `GET /admin/api/v1/exports/invoices.csv` filters (all optional).
#[derive(Debug, Default, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct InvoiceExportParams {
    /// Issued on or after (`YYYY-MM-DD` or `YYYY-MM-DDTHH:MM:SSZ`, UTC); drafts never issued
    /// are left out when `since` or `until` is given.
    pub since: Option<String>,
    /// Issued before (exclusive), same format.
    pub until: Option<String>,
    /// An invoice state (`open`, `finalized`, `pending`, `paid`, `unpaid`, `failed`,
    /// `cancelled`, `issued` for credit notes).
    pub state: Option<String>,
    pub account_id: Option<String>,
    /// ISO 4217 code.
    pub currency: Option<String>,
    /// `invoice` or `credit_note` (default both).
    pub kind: Option<String>,
    /// `true` (default): one row per line; `false`: one row per invoice.
    pub lines: Option<bool>,
}

/// The invoice's columns (every row has them).
const INVOICE_HEADER: &[&str] = &[
    "invoice_id",
    "kind",
    "number",
    "state",
    "account_id",
    "buyer_name",
    "buyer_email",
    "currency",
    "period_start",
    "period_end",
    "subtotal",
    "tax",
    "total",
    "vat_rate",
    "issued_at",
    "due_date",
    "paid_at",
    "cancelled_at",
    "credited_invoice_id",
    "billing_run_id",
    "created_at",
];

/// The line's columns, after [`INVOICE_HEADER`] (unless `lines=false`).
const LINE_HEADER: &[&str] = &[
    "line_id",
    "line_position",
    "line_kind",
    "line_description",
    "line_quantity",
    "line_unit_price",
    "line_amount",
    "line_period_start",
    "line_period_end",
];

/// How many line columns follow the invoice's.
const LINE_CELLS: usize = LINE_HEADER.len();

#[derive(Clone, Debug, Default)]
struct Filter {
    since: Option<i64>,
    until: Option<i64>,
    state: Option<InvoiceState>,
    account_id: Option<String>,
    currency: Option<&'static str>,
    kind: Option<InvoiceKind>,
}

/// Where the export is: the current batch of invoices and, with lines, the last line written.
pub struct InvoiceSource {
    filter: Filter,
    with_lines: bool,
    /// The last invoice id of the previous batch ("" before the first).
    after: String,
    batch: Vec<Invoice>,
    /// The ids of `batch`.
    ids: HashSet<String>,
    /// The invoice of `batch` the next line belongs to or after.
    next: usize,
    /// Whether `batch[next]` has had a row already.
    next_written: bool,
    /// (invoice id, position, line id) of the last line read in this batch.
    line_cursor: Option<(String, i64, String)>,
    finished: bool,
}

impl InvoiceSource {
    /// Checks the filters (a bad one is an error before anything is read).
    pub fn new(p: InvoiceExportParams) -> DomainResult<InvoiceSource> {
        let since = parse_opt_time("since", p.since.as_deref())?;
        let until = parse_opt_time("until", p.until.as_deref())?;
        check_range(since, until)?;
        let state = match non_empty(p.state) {
            None => None,
            Some(s) => Some(InvoiceState::from_name(&s).ok_or_else(|| {
                DomainError::malformed(
                    Some("state".into()),
                    "invalid_state",
                    format!("{s:?} is not an invoice state"),
                )
            })?),
        };
        let kind = match non_empty(p.kind) {
            None => None,
            Some(k) => Some(InvoiceKind::from_name(&k).ok_or_else(|| {
                DomainError::malformed(
                    Some("kind".into()),
                    "invalid_kind",
                    format!("{k:?}: invoice or credit_note"),
                )
            })?),
        };
        let currency = match non_empty(p.currency) {
            None => None,
            Some(c) => Some(
                Currency::parse(&c)
                    .ok_or_else(|| {
                        DomainError::invalid(
                            "currency",
                            "unknown_currency",
                            format!("{c:?} is not an ISO 4217 currency"),
                        )
                    })?
                    .code,
            ),
        };
        Ok(InvoiceSource {
            filter: Filter {
                since,
                until,
                state,
                account_id: non_empty(p.account_id),
                currency,
                kind,
            },
            with_lines: p.lines.unwrap_or(true),
            after: String::new(),
            batch: Vec::new(),
            ids: HashSet::new(),
            next: 0,
            next_written: false,
            line_cursor: None,
            finished: false,
        })
    }

    pub fn columns(&self) -> Vec<&'static str> {
        let lines: &[&str] = if self.with_lines { LINE_HEADER } else { &[] };
        INVOICE_HEADER.iter().chain(lines).copied().collect()
    }

    pub async fn next_batch(&mut self, pool: &Pool) -> DomainResult<Option<Vec<Row>>> {
        if self.finished {
            return Ok(None);
        }
        if self.batch.is_empty() {
            self.batch = self.read_invoices(pool).await?;
            let Some(last) = self.batch.last() else {
                self.finished = true;
                return Ok(None);
            };
            self.after = last.id.clone();
            self.ids = self.batch.iter().map(|i| i.id.clone()).collect();
            self.next = 0;
            self.next_written = false;
            self.line_cursor = None;
        }
        if !self.with_lines {
            let rows = self.batch.iter().map(invoice_cells).collect();
            self.batch.clear();
            return Ok(Some(rows));
        }
        let lines = self.read_lines(pool).await?;
        let batch_done = (lines.len() as i64) < EXPORT_BATCH_ROWS;
        let mut rows = Vec::with_capacity(lines.len());
        for line in &lines {
            // The range holds invoices the filters leave out: their lines are skipped.
            if !self.ids.contains(&line.invoice_id) {
                continue;
            }
            // Lines come in invoice order: invoices before this line's had all theirs.
            loop {
                match self.batch.get(self.next) {
                    Some(inv) if inv.id == line.invoice_id => break,
                    Some(_) => self.close_current(&mut rows),
                    // A line of this batch after its last invoice: the database's order and
                    // the batch's disagree, a bug; stop rather than write a wrong file.
                    None => {
                        return Err(DomainError::Internal(format!(
                            "export: line {} of invoice {} out of order",
                            line.id, line.invoice_id
                        )))
                    }
                }
            }
            let inv = &self.batch[self.next];
            let mut row = invoice_cells(inv);
            row.extend(line_cells(inv, line));
            rows.push(row);
            self.next_written = true;
        }
        if let Some(l) = lines.last() {
            self.line_cursor = Some((l.invoice_id.clone(), l.position, l.id.clone()));
        }
        if batch_done {
            while self.next < self.batch.len() {
                self.close_current(&mut rows);
            }
            self.batch.clear();
        }
        Ok(Some(rows))
    }

    /// Done with `batch[next]`: a row without line columns if it had no line; on to the next.
    fn close_current(&mut self, rows: &mut Vec<Row>) {
        if !self.next_written {
            let mut row = invoice_cells(&self.batch[self.next]);
            row.extend(std::iter::repeat_n(Cell::Empty, LINE_CELLS));
            rows.push(row);
        }
        self.next += 1;
        self.next_written = false;
    }

    async fn read_invoices(&self, pool: &Pool) -> DomainResult<Vec<Invoice>> {
        let f = &self.filter;
        let rows = sqlx::query(&format!(
            "SELECT {INVOICE_COLUMNS} FROM invoices WHERE id > $1 AND ($2 = '' OR account_id = $2) \
             AND ($3 = '' OR state = $3) AND ($4 = '' OR currency = $4) AND ($5 = '' OR kind = $5) \
             AND ($6 < 0 OR issued_at >= $6) AND ($7 < 0 OR issued_at < $7) ORDER BY id LIMIT $8"
        ))
        .bind(&self.after)
        .bind(f.account_id.as_deref().unwrap_or_default())
        .bind(f.state.map(InvoiceState::as_str).unwrap_or_default())
        .bind(f.currency.unwrap_or_default())
        .bind(f.kind.map(InvoiceKind::as_str).unwrap_or_default())
        .bind(f.since.unwrap_or(-1))
        .bind(f.until.unwrap_or(-1))
        .bind(EXPORT_BATCH_ROWS)
        .fetch_all(pool)
        .await?;
        rows.iter().map(Invoice::from_row).collect()
    }

    /// The next lines after the cursor of invoices from the batch's first to its last id, in
    /// (invoice, position, id) order. A range rather than an `IN` list of the batch's ids: both
    /// databases then walk the `invoice_lines (invoice_id)` index in order and stop after
    /// [`EXPORT_BATCH_ROWS`], so each query costs one batch however many lines the batch's
    /// invoices have (an `IN` list is sorted whole before the limit: quadratic for big invoices).
    async fn read_lines(&self, pool: &Pool) -> DomainResult<Vec<Line>> {
        let (Some(first), Some(last)) = (self.batch.first(), self.batch.last()) else {
            return Ok(Vec::new());
        };
        let (ci, cp, cl) =
            self.line_cursor
                .clone()
                .unwrap_or((first.id.clone(), i64::MIN, String::new()));
        let rows = sqlx::query(&format!(
            "SELECT {LINE_COLUMNS} FROM invoice_lines WHERE invoice_id >= $1 AND invoice_id <= $2 \
             AND (invoice_id > $1 OR position > $3 OR (position = $3 AND id > $4)) \
             ORDER BY invoice_id, position, id LIMIT $5"
        ))
        .bind(ci)
        .bind(&last.id)
        .bind(cp)
        .bind(cl)
        .bind(EXPORT_BATCH_ROWS)
        .fetch_all(pool)
        .await?;
        rows.iter().map(Line::from_row).collect()
    }
}

/// A frozen buyer document's text field (absent on drafts).
fn buyer_field(inv: &Invoice, field: &str) -> Option<String> {
    let buyer: Value = serde_json::from_str(inv.buyer.as_deref()?).ok()?;
    buyer.get(field)?.as_str().map(str::to_string)
}

fn invoice_cells(inv: &Invoice) -> Row {
    vec![
        Cell::value(&inv.id),
        Cell::value(inv.kind),
        Cell::opt_value(inv.number.as_deref()),
        Cell::value(inv.state),
        Cell::value(&inv.account_id),
        Cell::opt_text(buyer_field(inv, "name")),
        Cell::opt_text(buyer_field(inv, "email")),
        Cell::value(inv.currency.code),
        Cell::value(format_date(inv.period_start)),
        Cell::value(format_date(inv.period_end - 1)),
        Cell::value(inv.money(inv.subtotal)),
        Cell::value(inv.money(inv.tax)),
        Cell::value(inv.money(inv.total)),
        Cell::opt_value(inv.vat_rate.map(plain)),
        Cell::opt_time(inv.issued_at),
        Cell::opt_value(inv.due_on.map(format_date)),
        Cell::opt_time(inv.paid_at),
        Cell::opt_time(inv.cancelled_at),
        Cell::opt_value(inv.credited_invoice_id.as_deref()),
        Cell::opt_value(inv.billing_run_id.as_deref()),
        Cell::time(inv.created_at),
    ]
}

fn line_cells(inv: &Invoice, l: &Line) -> Row {
    let (start, end) = match (l.period_start, l.period_end) {
        (Some(s), Some(e)) => (Cell::value(format_date(s)), Cell::value(format_date(e - 1))),
        _ => (Cell::Empty, Cell::Empty),
    };
    vec![
        Cell::value(&l.id),
        Cell::value(l.position),
        Cell::value(l.kind.as_str()),
        Cell::text(&l.description),
        Cell::value(plain(l.quantity)),
        Cell::value(plain(l.unit_price)),
        Cell::value(inv.money(l.amount)),
        start,
        end,
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_line_columns_follow_the_invoice_columns_once_each() {
        let with = InvoiceSource::new(InvoiceExportParams::default()).unwrap();
        let without = InvoiceSource::new(InvoiceExportParams {
            lines: Some(false),
            ..Default::default()
        })
        .unwrap();
        assert_eq!(with.columns().len(), INVOICE_HEADER.len() + LINE_CELLS);
        assert_eq!(without.columns(), INVOICE_HEADER);
        let unique: std::collections::HashSet<_> = with.columns().into_iter().collect();
        assert_eq!(unique.len(), with.columns().len());
    }

    #[test]
    fn bad_filters_are_refused_before_reading() {
        for (p, param) in [
            (
                InvoiceExportParams {
                    state: Some("lost".into()),
                    ..Default::default()
                },
                "state",
            ),
            (
                InvoiceExportParams {
                    currency: Some("XYZ".into()),
                    ..Default::default()
                },
                "currency",
            ),
            (
                InvoiceExportParams {
                    since: Some("2026-12-01".into()),
                    until: Some("2026-11-01".into()),
                    ..Default::default()
                },
                "until",
            ),
        ] {
            let Err(e) = InvoiceSource::new(p) else {
                panic!("{param} accepted");
            };
            assert!(e.to_string().contains(param) || format!("{e:?}").contains(param));
        }
    }
}
