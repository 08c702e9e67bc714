//! The developer API (`/api/v1`): what an account's own developers may see and do, authenticated
//! by account-scoped tokens (`tgd_...`, created by an admin with `POST /admin/api/v1/accounts/{id}/tokens`).
//! Every query is scoped to the caller's account; another account's objects answer 404, exactly like
//! objects that do not exist.

use axum::extract::{Path, Request, State};
use axum::http::StatusCode;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use serde::Deserialize;
use serde_json::{json, Value};

use super::error::{ApiError, ApiResult};
use super::extract::{ApiQuery, JsonBody};
use super::list::{page, ListParams};
use super::AppState;
use crate::domain::billing::invoices::{self, Invoice, INVOICE_COLUMNS};
use crate::rate_limit::TokenKind;
use crate::secrets::{constant_time_eq, new_account_token, new_id, sha256_hex};
use crate::store::now;

/// The authenticated developer's account.
#[derive(Clone, Debug)]
pub struct Developer {
    pub account_id: String,
}

pub async fn layer(State(state): State<AppState>, mut req: Request, next: Next) -> Response {
    let token = req
        .headers()
        .get("authorization")
        .and_then(|h| h.to_str().ok())
        .and_then(|h| {
            h.strip_prefix("Bearer ")
                .or_else(|| h.strip_prefix("bearer "))
        })
        .map(|t| t.trim().to_string());
    let Some(token) = token.filter(|t| !t.is_empty()) else {
        return ApiError::Unauthorized("send Authorization: Bearer <account token>".into())
            .into_response();
    };
    // Failed lookups are limited per client address, like sign-in; a valid token never counts.
    let ip = super::client_ip::of(&state.limits, &req);
    if let Some(limited) = state
        .limits
        .token_rate_limited(TokenKind::Developer, ip.as_deref())
    {
        return limited.into_response();
    }
    let digest = sha256_hex(&token);
    let row: Result<Option<(String, String, Option<i64>)>, _> = sqlx::query_as(
        "SELECT account_id, token_sha256, expires_at FROM account_tokens WHERE token_sha256 = $1",
    )
    .bind(&digest)
    .fetch_optional(&state.pool)
    .await;
    match row {
        Ok(Some((_, _, Some(expires_at)))) if expires_at <= now() => {
            state
                .limits
                .token_failed(TokenKind::Developer, ip.as_deref());
            ApiError::Unauthorized("the account token has expired".into()).into_response()
        }
        Ok(Some((account_id, stored, _))) if constant_time_eq(&stored, &digest) => {
            req.extensions_mut().insert(Developer { account_id });
            next.run(req).await
        }
        Ok(_) => {
            state
                .limits
                .token_failed(TokenKind::Developer, ip.as_deref());
            ApiError::Unauthorized("unknown or revoked account token".into()).into_response()
        }
        Err(e) => ApiError::from(e).into_response(),
    }
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct TokenInput {
    name: Option<String>,
    /// 1..=3650 days; absent: until revoked.
    expires_in_days: Option<i64>,
}

/// Admin: `POST /accounts/{id}/tokens` -> `{"id", "token"}` (the token is shown only here).
pub async fn create_token(
    State(s): State<AppState>,
    Path(account_id): Path<String>,
    JsonBody(input): JsonBody<TokenInput>,
) -> ApiResult<(StatusCode, Json<Value>)> {
    super::accounts::fetch_account(&s.pool, &account_id).await?;
    let name =
        crate::domain::catalog::check_name("name", input.name.as_deref().unwrap_or("developer"))?;
    let expires_at = super::tokens::expiry(input.expires_in_days)?;
    let token = new_account_token();
    let id = new_id("atok");
    let t = now();
    sqlx::query("INSERT INTO account_tokens (id, account_id, name, token_sha256, created_at, expires_at) VALUES ($1, $2, $3, $4, $5, $6)")
        .bind(&id)
        .bind(&account_id)
        .bind(&name)
        .bind(sha256_hex(&token))
        .bind(t)
        .bind(expires_at)
        .execute(&s.pool)
        .await?;
    Ok((
        StatusCode::CREATED,
        Json(
            json!({"object": "account_token", "id": id, "account_id": account_id, "name": name, "token": token, "created_at": t, "expires_at": expires_at}),
        ),
    ))
}

pub async fn list_tokens(
    State(s): State<AppState>,
    Path(account_id): Path<String>,
) -> ApiResult<Json<Value>> {
    super::accounts::fetch_account(&s.pool, &account_id).await?;
    let rows: Vec<(String, String, i64, Option<i64>)> = sqlx::query_as(
        "SELECT id, name, created_at, expires_at FROM account_tokens WHERE account_id = $1 ORDER BY id",
    )
    .bind(&account_id)
    .fetch_all(&s.pool)
    .await?;
    let data: Vec<Value> = rows
        .iter()
        .map(|(id, name, t, exp)| json!({"object": "account_token", "id": id, "account_id": account_id, "name": name, "created_at": t, "expires_at": exp}))
        .collect();
    Ok(Json(
        json!({"object": "list", "data": data, "has_more": false, "next_cursor": null}),
    ))
}

pub async fn revoke_token(
    State(s): State<AppState>,
    Path((account_id, id)): Path<(String, String)>,
) -> ApiResult<Json<Value>> {
    let r = sqlx::query("DELETE FROM account_tokens WHERE id = $1 AND account_id = $2")
        .bind(&id)
        .bind(&account_id)
        .execute(&s.pool)
        .await?;
    if r.rows_affected() == 0 {
        return Err(ApiError::not_found("account token", id));
    }
    Ok(Json(
        json!({"object": "account_token", "id": id, "deleted": true}),
    ))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DevInvoiceParams {
    limit: Option<i64>,
    starting_after: Option<String>,
    state: Option<String>,
}

/// The account's issued invoices and credit notes (drafts stay with the admin).
pub async fn list_invoices(
    State(s): State<AppState>,
    Extension(dev): Extension<Developer>,
    ApiQuery(p): ApiQuery<DevInvoiceParams>,
) -> ApiResult<Json<Value>> {
    let lp = ListParams {
        limit: p.limit,
        starting_after: p.starting_after,
    };
    let limit = lp.limit()?;
    let rows = sqlx::query(&format!(
        "SELECT {INVOICE_COLUMNS} FROM invoices WHERE account_id = $1 AND id > $2 AND number IS NOT NULL \
         AND ($3 = '' OR state = $3) ORDER BY id LIMIT $4"
    ))
    .bind(&dev.account_id)
    .bind(lp.after())
    .bind(p.state.unwrap_or_default())
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

/// One of the account's issued invoices; 404 for drafts and for other accounts' invoices.
pub async fn own_invoice(s: &AppState, dev: &Developer, id: &str) -> ApiResult<Invoice> {
    let inv = invoices::fetch(&s.pool, id).await?;
    if inv.account_id != dev.account_id || inv.number.is_none() {
        return Err(ApiError::not_found("invoice", id));
    }
    Ok(inv)
}

pub async fn get_invoice(
    State(s): State<AppState>,
    Extension(dev): Extension<Developer>,
    Path(id): Path<String>,
) -> ApiResult<Response> {
    if let Some(id) = id.strip_suffix(".pdf") {
        own_invoice(&s, &dev, id).await?;
        return super::invoices::pdf_response(&s, id).await;
    }
    let inv = own_invoice(&s, &dev, &id).await?;
    let lines = invoices::lines(&s.pool, &id).await?;
    Ok(Json(invoices::to_json(&inv, &lines)).into_response())
}

/// Billing history: every charge attempt on the account's invoices, newest first.
pub async fn list_payments(
    State(s): State<AppState>,
    Extension(dev): Extension<Developer>,
) -> ApiResult<Json<Value>> {
    type Row = (
        String,
        String,
        Option<String>,
        i64,
        String,
        String,
        String,
        Option<String>,
        Option<String>,
        i64,
    );
    let rows: Vec<Row> = sqlx::query_as(
        "SELECT a.id, a.invoice_id, i.number, a.attempt, a.state, a.amount, a.currency, a.error_code, a.error_message, a.created_at \
         FROM charge_attempts a JOIN invoices i ON i.id = a.invoice_id WHERE i.account_id = $1 ORDER BY a.created_at DESC, a.id DESC LIMIT 100",
    )
    .bind(&dev.account_id)
    .fetch_all(&s.pool)
    .await?;
    let data: Vec<Value> = rows
        .iter()
        .map(|r| {
            json!({"object": "payment", "id": r.0, "invoice_id": r.1, "invoice_number": r.2, "attempt": r.3,
                   "state": r.4, "amount": r.5, "currency": r.6, "error_code": r.7, "error_message": r.8, "created_at": r.9})
        })
        .collect();
    Ok(Json(
        json!({"object": "list", "data": data, "has_more": false, "next_cursor": null}),
    ))
}
