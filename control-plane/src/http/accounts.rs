//! Accounts: the developers (customers) who own applications and receive invoices.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;
use rust_decimal::Decimal;
use serde::Deserialize;
use serde_json::{json, Value};

use super::error::{ApiError, ApiResult};
use super::extract::{ApiQuery, JsonBody};
use super::list::{page, ListParams, Page};
use super::AppState;
use crate::domain::accounts::{check_address, check_email, BillingAddress};
use crate::domain::catalog::check_name;
use crate::money::parse_amount;
use crate::secrets::new_id;
use crate::store::{now, Pool};

/// (id, name, email, billing_address JSON, vat_rate, vat_code, created_at, updated_at, credit_balance)
type AccountRow = (
    String,
    String,
    String,
    String,
    String,
    Option<String>,
    i64,
    i64,
    String,
);

const ACCOUNT_SELECT: &str = "SELECT id, name, email, billing_address, vat_rate, vat_code, created_at, updated_at, credit_balance FROM accounts";

fn account_json(r: &AccountRow) -> ApiResult<Value> {
    let address: Value = serde_json::from_str(&r.3).unwrap_or_else(|_| json!({}));
    Ok(
        json!({"object": "account", "id": r.0, "name": r.1, "email": r.2, "billing_address": address,
           "vat_rate": r.4, "vat_code": r.5, "created_at": r.6, "updated_at": r.7,
           // Net credit in the billing currency, used by the next invoices.
           "credit_balance": crate::money::format_amount(crate::money::stored(&r.8)?)}),
    )
}

pub async fn fetch_account(pool: &Pool, id: &str) -> ApiResult<AccountRow> {
    sqlx::query_as(&format!("{ACCOUNT_SELECT} WHERE id = $1"))
        .bind(id)
        .fetch_optional(pool)
        .await?
        .ok_or_else(|| ApiError::not_found("account", id))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AccountInput {
    name: Option<String>,
    email: Option<String>,
    billing_address: Option<BillingAddress>,
    /// Percent, as a decimal string: "19" or "7.7".
    vat_rate: Option<String>,
    vat_code: Option<String>,
}

fn check_vat_rate(raw: &str) -> ApiResult<Decimal> {
    let rate =
        parse_amount(raw).map_err(|m| ApiError::invalid("vat_rate", "invalid_vat_rate", m))?;
    if rate > Decimal::from(100) {
        return Err(ApiError::invalid(
            "vat_rate",
            "invalid_vat_rate",
            "a percentage from 0 to 100",
        ));
    }
    Ok(rate)
}

fn check_vat_code(code: &str) -> ApiResult<Option<String>> {
    let c = code.trim();
    if c.chars().count() > 64 || c.chars().any(char::is_control) {
        return Err(ApiError::invalid(
            "vat_code",
            "invalid_vat_code",
            "at most 64 printable characters",
        ));
    }
    Ok((!c.is_empty()).then(|| c.to_string()))
}

pub async fn create(
    State(s): State<AppState>,
    JsonBody(input): JsonBody<AccountInput>,
) -> ApiResult<(StatusCode, Json<Value>)> {
    let name = check_name("name", input.name.as_deref().unwrap_or(""))?;
    let email = check_email(input.email.as_deref().unwrap_or(""))?;
    let address = check_address(&input.billing_address.unwrap_or_default())?;
    let vat_rate = check_vat_rate(input.vat_rate.as_deref().unwrap_or("0"))?;
    let vat_code = input
        .vat_code
        .as_deref()
        .map(check_vat_code)
        .transpose()?
        .flatten();
    let id = new_id("acct");
    let t = now();
    sqlx::query(
        "INSERT INTO accounts (id, name, email, billing_address, vat_rate, vat_code, created_at, updated_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $7)",
    )
    .bind(&id)
    .bind(&name)
    .bind(&email)
    .bind(&address)
    .bind(vat_rate.normalize().to_string())
    .bind(&vat_code)
    .bind(t)
    .execute(&s.pool)
    .await?;
    Ok((
        StatusCode::CREATED,
        Json(account_json(&fetch_account(&s.pool, &id).await?)?),
    ))
}

pub async fn list(
    State(s): State<AppState>,
    ApiQuery(p): ApiQuery<ListParams>,
) -> ApiResult<Json<Page<Value>>> {
    let limit = p.limit()?;
    let rows: Vec<AccountRow> = sqlx::query_as(&format!(
        "{ACCOUNT_SELECT} WHERE id > $1 ORDER BY id LIMIT $2"
    ))
    .bind(p.after())
    .bind(limit + 1)
    .fetch_all(&s.pool)
    .await?;
    Ok(Json(page(rows, limit, |r| &r.0).try_map(account_json)?))
}

pub async fn get(State(s): State<AppState>, Path(id): Path<String>) -> ApiResult<Json<Value>> {
    Ok(Json(account_json(&fetch_account(&s.pool, &id).await?)?))
}

pub async fn update(
    State(s): State<AppState>,
    Path(id): Path<String>,
    JsonBody(input): JsonBody<AccountInput>,
) -> ApiResult<Json<Value>> {
    let a = fetch_account(&s.pool, &id).await?;
    let name = input
        .name
        .as_deref()
        .map(|n| check_name("name", n))
        .transpose()?;
    let email = input.email.as_deref().map(check_email).transpose()?;
    let address = input
        .billing_address
        .as_ref()
        .map(check_address)
        .transpose()?;
    let vat_rate = input.vat_rate.as_deref().map(check_vat_rate).transpose()?;
    let vat_code = match input.vat_code.as_deref() {
        Some(c) => check_vat_code(c)?,
        None => a.5,
    };
    sqlx::query("UPDATE accounts SET name = $2, email = $3, billing_address = $4, vat_rate = $5, vat_code = $6, updated_at = $7 WHERE id = $1")
        .bind(&id)
        .bind(name.unwrap_or(a.1))
        .bind(email.unwrap_or(a.2))
        .bind(address.unwrap_or(a.3))
        .bind(vat_rate.map_or(a.4, |r| r.normalize().to_string()))
        .bind(vat_code)
        .bind(now())
        .execute(&s.pool)
        .await?;
    Ok(Json(account_json(&fetch_account(&s.pool, &id).await?)?))
}

pub async fn remove(State(s): State<AppState>, Path(id): Path<String>) -> ApiResult<Json<Value>> {
    fetch_account(&s.pool, &id).await?;
    let (apps,): (i64,) = sqlx::query_as("SELECT COUNT(*) FROM applications WHERE account_id = $1")
        .bind(&id)
        .fetch_one(&s.pool)
        .await?;
    if apps > 0 {
        return Err(ApiError::conflict(
            "account_in_use",
            format!("the account has {apps} application(s); delete them first"),
        ));
    }
    let (history,): (i64,) = sqlx::query_as(
        "SELECT (SELECT COUNT(*) FROM contracts WHERE account_id = $1) + (SELECT COUNT(*) FROM invoices WHERE account_id = $1)",
    )
    .bind(&id)
    .fetch_one(&s.pool)
    .await?;
    if history > 0 {
        return Err(ApiError::conflict(
            "account_has_billing_history",
            "the account has contracts or invoices; they are kept for its billing history",
        ));
    }
    sqlx::query("DELETE FROM accounts WHERE id = $1")
        .bind(&id)
        .execute(&s.pool)
        .await?;
    Ok(Json(
        json!({"object": "account", "id": id, "deleted": true}),
    ))
}
