//! An export as a streamed CSV answer (RFC 4180: a header row, CRLF line ends, fields with commas,
//! quotes, CR or LF quoted by the `csv` crate), shared by the admin API and the admin portal.
//!
//! The first batch is read before the answer starts, so a database failure at the start is the
//! JSON error object with its status; after that the body is produced one batch at a time, only
//! as fast as the client reads it (hyper pulls the next chunk when the socket takes it), so an
//! export of any size holds one batch. A failure mid-stream cannot change the status any more: the
//! body ends with an error, which aborts the connection (no final chunk), so the client sees an
//! incomplete download rather than a file that looks whole.
//!
//! Formula injection (OWASP "CSV Injection"): a spreadsheet runs a cell starting with `=`, `+`,
//! `-`, `@`, a tab or a carriage return as a formula. Cells holding text users typed
//! ([`Cell::UserText`]) that start with one of them are written with a `'` in front, which makes
//! a spreadsheet show the text as text. Values Tollgate made (amounts, ids, times) are never
//! changed: a negative amount stays `-5.00`.

use axum::body::{Body, Bytes};
use axum::http::header;
use axum::response::{IntoResponse, Response};

use crate::domain::billing::calendar::{day_of, format_date};
use crate::domain::exports::{Cell, Row, Source};
use crate::store::{now, Pool};
use crate::web::error::ApiError;

/// The first characters that make a spreadsheet read a cell as a formula.
const FORMULA_STARTS: &[char] = &['=', '+', '-', '@', '\t', '\r'];

/// A user's text as written in a cell: prefixed with `'` when it starts like a formula.
pub fn neutralize(text: &str) -> std::borrow::Cow<'_, str> {
    if text.starts_with(FORMULA_STARTS) {
        std::borrow::Cow::Owned(format!("'{text}"))
    } else {
        std::borrow::Cow::Borrowed(text)
    }
}

fn writer() -> csv::Writer<Vec<u8>> {
    csv::WriterBuilder::new()
        .terminator(csv::Terminator::CRLF)
        .quote_style(csv::QuoteStyle::Necessary)
        .from_writer(Vec::new())
}

fn finish(w: csv::Writer<Vec<u8>>) -> Result<Vec<u8>, ApiError> {
    w.into_inner()
        .map_err(|e| ApiError::Internal(format!("export: cannot write CSV: {e}")))
}

/// CSV text of `rows` (after `header`, when given).
pub fn encode(header: Option<&[&str]>, rows: &[Row]) -> Result<Vec<u8>, ApiError> {
    let internal = |e: csv::Error| ApiError::Internal(format!("export: cannot write CSV: {e}"));
    let mut w = writer();
    if let Some(h) = header {
        w.write_record(h).map_err(internal)?;
    }
    for row in rows {
        for cell in row {
            let field = match cell {
                Cell::UserText(t) => neutralize(t),
                Cell::Value(v) => std::borrow::Cow::Borrowed(v.as_str()),
                Cell::Empty => std::borrow::Cow::Borrowed(""),
            };
            w.write_field(field.as_bytes()).map_err(internal)?;
        }
        // An empty record after `write_field` ends the row (the csv crate's documented way).
        w.write_record(None::<&[u8]>).map_err(internal)?;
    }
    finish(w)
}

/// The streamed answer for `source`: `text/csv`, an attachment named `<kind>-<date>.csv`.
pub async fn response(pool: Pool, mut source: Source) -> Result<Response, ApiError> {
    let first = source.next_batch(&pool).await?;
    let head = encode(
        Some(&source.columns()),
        first.as_deref().unwrap_or_default(),
    )?;
    let filename = format!(
        "{}-{}.csv",
        source.kind().as_str(),
        format_date(day_of(now()))
    );
    let state = (pool, source, first.is_none());
    let rest = futures_util::stream::unfold(state, |(pool, mut source, done)| async move {
        if done {
            return None;
        }
        let chunk = match source.next_batch(&pool).await {
            Ok(Some(rows)) => encode(None, &rows).map(Some),
            Ok(None) => Ok(None),
            Err(e) => Err(ApiError::from(e)),
        };
        match chunk {
            Ok(Some(bytes)) => Some((Ok(Bytes::from(bytes)), (pool, source, false))),
            Ok(None) => None,
            Err(e) => {
                tracing::error!(error = ?e, export = source.kind().as_str(), "export failed mid-stream; aborting the download");
                let err = std::io::Error::other(format!("export failed: {e:?}"));
                Some((Err(err), (pool, source, true)))
            }
        }
    });
    let first_chunk = futures_util::stream::once(async move { Ok(Bytes::from(head)) });
    let body = Body::from_stream(futures_util::StreamExt::chain(first_chunk, rest));
    Ok((
        [
            (header::CONTENT_TYPE, "text/csv; charset=utf-8".to_string()),
            (
                header::CONTENT_DISPOSITION,
                format!("attachment; filename=\"{filename}\""),
            ),
            (header::CACHE_CONTROL, "no-store".to_string()),
        ],
        body,
    )
        .into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn user_text_that_starts_like_a_formula_is_neutralized_and_values_are_not() {
        let rows = vec![vec![
            Cell::text("=HYPERLINK(\"http://x\",\"y\")"),
            Cell::text("+1"),
            Cell::text("-2"),
            Cell::text("@SUM(A1)"),
            Cell::text("\tx"),
            Cell::text("\rx"),
            Cell::text("a,b \"c\"\nd"),
            Cell::value("-5.00"),
            Cell::Empty,
        ]];
        let out = String::from_utf8(encode(Some(&["a"; 9]), &rows).unwrap()).unwrap();
        assert_eq!(
            out,
            "a,a,a,a,a,a,a,a,a\r\n\"'=HYPERLINK(\"\"http://x\"\",\"\"y\"\")\",'+1,'-2,'@SUM(A1),'\tx,\"'\rx\",\"a,b \"\"c\"\"\nd\",-5.00,\r\n"
        );
    }
}
