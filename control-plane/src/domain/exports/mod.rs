//! Exports: the rows of the invoices, usage, accounts and applications CSV files, read in
//! keyset-paginated batches so an export of any size holds one batch in memory.
//!
//! This module knows nothing of CSV or HTTP: an export is a [`Source`] that yields batches of
//! [`Cell`] rows after a fixed header; `web::csv` frames them as RFC 4180 and streams them. Which
//! cells are text typed by users ([`Cell::UserText`], neutralized against formula injection when
//! written) is decided here, where the meaning of each column is known.
//!
//! Why batches on the pool and not one long query: each batch is one short query that borrows a
//! pool connection for its duration only. A `fetch` stream held for the whole export would pin a
//! connection (and on PostgreSQL a snapshot that holds back vacuum; on SQLite a read transaction
//! that stops WAL checkpoints) for as long as the slowest client takes to download, and the pool
//! is small. The price: an export is not one point-in-time snapshot. Keyset order on immutable
//! ids still gives every row that exists for the whole export exactly once.

pub mod directory;
pub mod invoices;
pub mod usage;

use crate::domain::billing::calendar::{parse_date, SECONDS_PER_DAY};
use crate::domain::{DomainError, DomainResult};
use crate::store::Pool;

/// Rows read from the database per batch (per query), and so the most one export holds in
/// memory at once (the invoices export holds up to one batch of invoices and one of lines).
pub const EXPORT_BATCH_ROWS: i64 = 1_000;

/// One cell of an export row.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Cell {
    /// Text a user typed (a name, an email, an address, a description): neutralized when
    /// written if it starts like a spreadsheet formula.
    UserText(String),
    /// A value Tollgate made (an id, a state, a number, a decimal amount, a time): written as is.
    Value(String),
    /// No value: an empty cell.
    Empty,
}

impl Cell {
    pub fn text(s: impl Into<String>) -> Cell {
        Cell::UserText(s.into())
    }

    pub fn value(s: impl ToString) -> Cell {
        Cell::Value(s.to_string())
    }

    pub fn opt_text(s: Option<impl Into<String>>) -> Cell {
        s.map_or(Cell::Empty, |s| Cell::UserText(s.into()))
    }

    pub fn opt_value(s: Option<impl ToString>) -> Cell {
        s.map_or(Cell::Empty, |s| Cell::Value(s.to_string()))
    }

    /// A Unix time as ISO 8601 UTC (`2026-11-01T09:30:00Z`).
    pub fn time(unix: i64) -> Cell {
        Cell::Value(format_time(unix))
    }

    pub fn opt_time(unix: Option<i64>) -> Cell {
        unix.map_or(Cell::Empty, Cell::time)
    }
}

pub type Row = Vec<Cell>;

/// What an export is: its name (the file's stem) and its columns.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ExportKind {
    Invoices,
    Usage,
    Accounts,
    Applications,
}

impl ExportKind {
    pub fn as_str(self) -> &'static str {
        match self {
            ExportKind::Invoices => "invoices",
            ExportKind::Usage => "usage",
            ExportKind::Accounts => "accounts",
            ExportKind::Applications => "applications",
        }
    }
}

/// An export in progress: the next batch of rows, until `None`.
pub enum Source {
    Invoices(invoices::InvoiceSource),
    Usage(usage::UsageSource),
    Accounts(directory::AccountSource),
    Applications(directory::ApplicationSource),
}

impl Source {
    pub fn kind(&self) -> ExportKind {
        match self {
            Source::Invoices(_) => ExportKind::Invoices,
            Source::Usage(_) => ExportKind::Usage,
            Source::Accounts(_) => ExportKind::Accounts,
            Source::Applications(_) => ExportKind::Applications,
        }
    }

    /// The header row: the column names documented in `docs/exports.md`.
    pub fn columns(&self) -> Vec<&'static str> {
        match self {
            Source::Invoices(s) => s.columns(),
            Source::Usage(_) => usage::COLUMNS.to_vec(),
            Source::Accounts(_) => directory::ACCOUNT_COLUMNS.to_vec(),
            Source::Applications(_) => directory::APPLICATION_COLUMNS.to_vec(),
        }
    }

    /// The next rows (at most about [`EXPORT_BATCH_ROWS`]; possibly none while work remains), or
    /// `None` when the export is complete.
    pub async fn next_batch(&mut self, pool: &Pool) -> DomainResult<Option<Vec<Row>>> {
        match self {
            Source::Invoices(s) => s.next_batch(pool).await,
            Source::Usage(s) => s.next_batch(pool).await,
            Source::Accounts(s) => s.next_batch(pool).await,
            Source::Applications(s) => s.next_batch(pool).await,
        }
    }
}

/// `2026-11-01T09:30:00Z`: ISO 8601 in UTC, to the second.
pub fn format_time(unix: i64) -> String {
    let day = unix.div_euclid(SECONDS_PER_DAY);
    let secs = unix.rem_euclid(SECONDS_PER_DAY);
    let (y, m, d) = tollgate_rules::periods::civil_from_days(day);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        secs / 3600,
        secs % 3600 / 60,
        secs % 60
    )
}

/// A time filter: `YYYY-MM-DD` (midnight UTC) or `YYYY-MM-DDTHH:MM:SSZ` (UTC only, so a
/// filter never depends on the server's zone), as Unix seconds.
pub fn parse_time(param: &str, raw: &str) -> DomainResult<i64> {
    let bad = || {
        DomainError::malformed(
            Some(param.into()),
            "invalid_time",
            format!("{raw:?} is not a UTC date or time like 2026-11-01 or 2026-11-01T09:30:00Z"),
        )
    };
    let (date, time) = match raw.split_once('T') {
        None => (raw, None),
        Some((d, t)) => (d, Some(t)),
    };
    let day = parse_date(date).map_err(|_| bad())?;
    let secs = match time {
        None => 0,
        Some(t) => {
            let t = t.strip_suffix('Z').ok_or_else(bad)?;
            let b = t.as_bytes();
            if b.len() != 8 || b[2] != b':' || b[5] != b':' {
                return Err(bad());
            }
            let num = |r: std::ops::Range<usize>, max: i64| -> DomainResult<i64> {
                let part = &t[r];
                if !part.bytes().all(|c| c.is_ascii_digit()) {
                    return Err(bad());
                }
                let n: i64 = part.parse().map_err(|_| bad())?;
                if n > max {
                    return Err(bad());
                }
                Ok(n)
            };
            num(0..2, 23)? * 3600 + num(3..5, 59)? * 60 + num(6..8, 59)?
        }
    };
    Ok(day * SECONDS_PER_DAY + secs)
}

/// An optional time filter; empty is absent (a form's empty field).
pub fn parse_opt_time(param: &str, raw: Option<&str>) -> DomainResult<Option<i64>> {
    match raw {
        None | Some("") => Ok(None),
        Some(r) => parse_time(param, r).map(Some),
    }
}

/// An optional id or name filter; empty is absent.
fn non_empty(s: Option<String>) -> Option<String> {
    s.filter(|s| !s.is_empty())
}

/// `since < until` when both are given.
fn check_range(since: Option<i64>, until: Option<i64>) -> DomainResult<()> {
    match (since, until) {
        (Some(s), Some(u)) if u <= s => Err(DomainError::malformed(
            Some("until".into()),
            "invalid_range",
            "until must be after since",
        )),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_are_iso_8601_utc_and_parse_back() {
        assert_eq!(format_time(0), "1970-01-01T00:00:00Z");
        assert_eq!(format_time(1_764_581_405), "2025-12-01T09:30:05Z");
        assert_eq!(
            parse_time("since", "2025-12-01T09:30:05Z").unwrap(),
            1_764_581_405
        );
        assert_eq!(parse_time("since", "2025-12-01").unwrap(), 1_764_547_200);
        for bad in [
            "2025-12-01T09:30:05",
            "2025-12-01T24:00:00Z",
            "2025-12-01T09:30:05+01:00",
            "2025-13-01",
            "1764581405",
            "",
        ] {
            let e = parse_time("since", bad).unwrap_err();
            assert!(matches!(e, DomainError::Malformed { .. }), "{bad:?}");
        }
    }
}
