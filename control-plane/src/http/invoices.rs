//! `/invoices`: list, read (JSON or PDF), create open invoices with manual lines, state actions,
//! credit notes.

use axum::extract::{Path, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Deserialize;
use serde_json::Value;

use super::accounts::fetch_account;
use super::error::{ApiError, ApiResult};
use super::extract::{ApiQuery, JsonBody};
use super::list::page;
use super::AppState;
use crate::domain::billing::calendar::{day_of, parse_date};
use crate::domain::billing::invoices::{self, Invoice, INVOICE_COLUMNS};
use crate::domain::billing::{pdf, settings};
use crate::store::now;

/// Longest manual line description.
pub const MAX_DESCRIPTION_CHARS: usize = 500;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InvoiceListParams {
    limit: Option<i64>,
    starting_after: Option<String>,
    account_id: Option<String>,
    state: Option<String>,
    /// `YYYY-MM`: invoices whose period starts in that month.
    period: Option<String>,
    /// `invoice` (default) or `credit_note`.
    kind: Option<String>,
}

pub async fn list(
    State(s): State<AppState>,
    ApiQuery(p): ApiQuery<InvoiceListParams>,
) -> ApiResult<Json<Value>> {
    let lp = super::list::ListParams {
        limit: p.limit,
        starting_after: p.starting_after,
    };
    let limit = lp.limit()?;
    let period_start = match p.period.as_deref() {
        Some(m) => parse_date(&format!("{m}-01")).map_err(|_| {
            ApiError::bad_request(
                Some("period".into()),
                "invalid_period",
                format!("{m:?} is not a month like 2026-11"),
            )
        })?,
        None => -1,
    };
    let state = p.state.unwrap_or_default();
    const STATES: &[&str] = &[
        "",
        "open",
        "finalized",
        "pending",
        "paid",
        "unpaid",
        "failed",
        "cancelled",
        "issued",
    ];
    if !STATES.contains(&state.as_str()) {
        return Err(ApiError::bad_request(
            Some("state".into()),
            "invalid_state",
            format!("{state:?} is not an invoice state"),
        ));
    }
    let kind = p.kind.unwrap_or_else(|| "invoice".into());
    let rows = sqlx::query(&format!(
        "SELECT {INVOICE_COLUMNS} FROM invoices WHERE id > $1 AND ($2 = '' OR account_id = $2) AND ($3 = '' OR state = $3) \
         AND ($4 < 0 OR period_start = $4) AND kind = $5 ORDER BY id LIMIT $6"
    ))
    .bind(lp.after())
    .bind(p.account_id.unwrap_or_default())
    .bind(state)
    .bind(period_start)
    .bind(kind)
    .bind(limit + 1)
    .fetch_all(&s.pool)
    .await?;
    let invs: Vec<Invoice> = rows
        .iter()
        .map(Invoice::from_row)
        .collect::<Result<_, _>>()?;
    Ok(Json(
        invoices::page_json(&s.pool, page(invs, limit, |i| &i.id)).await?,
    ))
}

/// `GET /invoices/{id}` (JSON) and `GET /invoices/{id}.pdf`.
pub async fn get(State(s): State<AppState>, Path(id): Path<String>) -> ApiResult<Response> {
    if let Some(id) = id.strip_suffix(".pdf") {
        return pdf_response(&s, id).await;
    }
    let inv = invoices::fetch(&s.pool, &id).await?;
    let lines = invoices::lines(&s.pool, &id).await?;
    Ok(Json(invoices::to_json(&inv, &lines)).into_response())
}

pub async fn pdf_response(s: &AppState, id: &str) -> ApiResult<Response> {
    let (stem, bytes) = pdf::invoice_pdf(&s.pool, id).await?;
    Ok((
        [
            (header::CONTENT_TYPE, "application/pdf".to_string()),
            (
                header::CONTENT_DISPOSITION,
                format!("inline; filename=\"invoice-{stem}.pdf\""),
            ),
        ],
        bytes,
    )
        .into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateInput {
    account_id: Option<String>,
}

/// An open invoice for the current month, to which manual lines can be added.
pub async fn create(
    State(s): State<AppState>,
    JsonBody(input): JsonBody<CreateInput>,
) -> ApiResult<(StatusCode, Json<Value>)> {
    let account_id = input.account_id.ok_or_else(|| {
        ApiError::invalid("account_id", "missing_field", "account_id is required")
    })?;
    fetch_account(&s.pool, &account_id).await.map_err(|_| {
        ApiError::invalid(
            "account_id",
            "unknown_account",
            format!("no account with id {account_id:?}"),
        )
    })?;
    let settings = settings::load(&s.pool).await?;
    let t = now();
    let mut tx = crate::store::begin_write(&s.pool).await?;
    let id = invoices::create_open(&mut tx, &account_id, &settings, day_of(t), t).await?;
    tx.commit().await?;
    let inv = invoices::fetch(&s.pool, &id).await?;
    Ok((StatusCode::CREATED, Json(invoices::to_json(&inv, &[]))))
}

async fn answer(s: &AppState, id: &str) -> ApiResult<Json<Value>> {
    let inv = invoices::fetch(&s.pool, id).await?;
    let lines = invoices::lines(&s.pool, id).await?;
    Ok(Json(invoices::to_json(&inv, &lines)))
}

async fn act(s: &AppState, id: &str, action: &str) -> ApiResult<Json<Value>> {
    let settings = settings::load(&s.pool).await?;
    let mut tx = crate::store::begin_write(&s.pool).await?;
    invoices::act(&mut tx, id, action, &settings, now()).await?;
    tx.commit().await?;
    answer(s, id).await
}

pub async fn finalize(State(s): State<AppState>, Path(id): Path<String>) -> ApiResult<Json<Value>> {
    act(&s, &id, "finalize").await
}
pub async fn issue(State(s): State<AppState>, Path(id): Path<String>) -> ApiResult<Json<Value>> {
    act(&s, &id, "issue").await
}
pub async fn pay(State(s): State<AppState>, Path(id): Path<String>) -> ApiResult<Json<Value>> {
    act(&s, &id, "pay").await
}
pub async fn cancel(State(s): State<AppState>, Path(id): Path<String>) -> ApiResult<Json<Value>> {
    act(&s, &id, "cancel").await
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LineInput {
    description: Option<String>,
    /// Decimal string, more than zero.
    quantity: Option<String>,
    /// Decimal string; negative for a discount.
    unit_price: Option<String>,
}

pub async fn add_line(
    State(s): State<AppState>,
    Path(id): Path<String>,
    JsonBody(input): JsonBody<LineInput>,
) -> ApiResult<(StatusCode, Json<Value>)> {
    let description = input.description.unwrap_or_default();
    let description = description.trim();
    if description.is_empty()
        || description.chars().count() > MAX_DESCRIPTION_CHARS
        || description.chars().any(char::is_control)
    {
        return Err(ApiError::invalid(
            "description",
            "invalid_description",
            format!("1 to {MAX_DESCRIPTION_CHARS} printable characters"),
        ));
    }
    let quantity = invoices::parse_signed("quantity", input.quantity.as_deref().unwrap_or("1"))?;
    if quantity <= rust_decimal::Decimal::ZERO {
        return Err(ApiError::invalid(
            "quantity",
            "invalid_quantity",
            "more than zero",
        ));
    }
    let unit_price = invoices::parse_signed(
        "unit_price",
        input.unit_price.as_deref().ok_or_else(|| {
            ApiError::invalid("unit_price", "missing_field", "unit_price is required")
        })?,
    )?;
    let mut tx = crate::store::begin_write(&s.pool).await?;
    invoices::add_manual_line(&mut tx, &id, description, quantity, unit_price).await?;
    tx.commit().await?;
    Ok((StatusCode::CREATED, answer(&s, &id).await?))
}

pub async fn remove_line(
    State(s): State<AppState>,
    Path((id, line_id)): Path<(String, String)>,
) -> ApiResult<Json<Value>> {
    let mut tx = crate::store::begin_write(&s.pool).await?;
    invoices::remove_manual_line(&mut tx, &id, &line_id).await?;
    tx.commit().await?;
    answer(&s, &id).await
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreditNoteInput {
    /// Net amount to credit, decimal string.
    amount: Option<String>,
    reason: Option<String>,
}

pub async fn credit_note(
    State(s): State<AppState>,
    Path(id): Path<String>,
    JsonBody(input): JsonBody<CreditNoteInput>,
) -> ApiResult<(StatusCode, Json<Value>)> {
    let amount = invoices::parse_signed(
        "amount",
        input
            .amount
            .as_deref()
            .ok_or_else(|| ApiError::invalid("amount", "missing_field", "amount is required"))?,
    )?;
    let reason = input.reason.unwrap_or_default();
    if reason.chars().count() > MAX_DESCRIPTION_CHARS || reason.chars().any(char::is_control) {
        return Err(ApiError::invalid(
            "reason",
            "invalid_reason",
            format!("at most {MAX_DESCRIPTION_CHARS} printable characters"),
        ));
    }
    let settings = settings::load(&s.pool).await?;
    let mut tx = crate::store::begin_write(&s.pool).await?;
    let cn = invoices::credit_note(&mut tx, &id, amount, &reason, &settings, now()).await?;
    tx.commit().await?;
    Ok((StatusCode::CREATED, answer(&s, &cn).await?))
}
