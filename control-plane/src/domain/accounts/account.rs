//! One developer account: its name, billing email, billing address, VAT and credit balance.

use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};

use super::{check_address, check_email, BillingAddress};
use crate::domain::audit::{self, Actor, Changes, Object};
use crate::domain::catalog::check_name;
use crate::domain::page::page;
use crate::domain::{DomainError, DomainResult, Page, PageRequest};
use crate::money::{parse_amount, Amount};
use crate::secrets::new_id;
use crate::store::{now, Pool};

/// Longest VAT code ("DE123456789", a reverse-charge note).
pub const MAX_VAT_CODE_CHARS: usize = 64;

#[derive(sqlx::FromRow)]
struct AccountRow {
    id: String,
    name: String,
    email: String,
    billing_address: String,
    vat_rate: String,
    vat_code: Option<String>,
    created_at: i64,
    updated_at: i64,
    credit_balance: String,
}

const ACCOUNT_SELECT: &str = "SELECT id, name, email, billing_address, vat_rate, vat_code, created_at, updated_at, credit_balance FROM accounts";

/// An account as the admin API shows it.
#[derive(Clone, Debug, Serialize, utoipa::ToSchema)]
pub struct Account {
    /// Always `"account"`.
    pub object: &'static str,
    pub id: String,
    pub name: String,
    pub email: String,
    /// As stored: `{}` for an account that signed up in the portal and never gave one.
    #[schema(value_type = BillingAddress)]
    pub billing_address: serde_json::Value,
    /// Percent, as a decimal string: "19" or "7.7".
    pub vat_rate: String,
    pub vat_code: Option<String>,
    pub created_at: i64,
    pub updated_at: i64,
    /// Net credit in the billing currency, used by the next invoices.
    pub credit_balance: Amount,
}

impl TryFrom<AccountRow> for Account {
    type Error = DomainError;

    fn try_from(r: AccountRow) -> DomainResult<Account> {
        let billing_address = serde_json::from_str(&r.billing_address).map_err(|e| {
            DomainError::Internal(format!(
                "account {}: stored billing address {:?} is not JSON: {e}",
                r.id, r.billing_address
            ))
        })?;
        Ok(Account {
            object: "account",
            credit_balance: Amount::stored(&r.credit_balance)?,
            id: r.id,
            name: r.name,
            email: r.email,
            billing_address,
            vat_rate: r.vat_rate,
            vat_code: r.vat_code,
            created_at: r.created_at,
            updated_at: r.updated_at,
        })
    }
}

/// What `POST /accounts` and `PATCH /accounts/{id}` take; on update, absent fields stay.
#[derive(Debug, Default, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AccountInput {
    pub name: Option<String>,
    pub email: Option<String>,
    pub billing_address: Option<BillingAddress>,
    /// Percent, as a decimal string: "19" or "7.7".
    pub vat_rate: Option<String>,
    pub vat_code: Option<String>,
}

/// A deleted object's answer: `{"object", "id", "deleted": true}`.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Deleted {
    pub object: &'static str,
    pub id: String,
    /// Always `true`.
    pub deleted: bool,
}

impl Deleted {
    pub fn new(object: &'static str, id: impl Into<String>) -> Deleted {
        Deleted {
            object,
            id: id.into(),
            deleted: true,
        }
    }
}

pub(crate) fn check_vat_rate(raw: &str) -> DomainResult<Decimal> {
    let rate =
        parse_amount(raw).map_err(|m| DomainError::invalid("vat_rate", "invalid_vat_rate", m))?;
    if rate > Decimal::from(100) {
        return Err(DomainError::invalid(
            "vat_rate",
            "invalid_vat_rate",
            "a percentage from 0 to 100",
        ));
    }
    Ok(rate)
}

pub(crate) fn check_vat_code(code: &str) -> DomainResult<Option<String>> {
    let c = code.trim();
    if c.chars().count() > MAX_VAT_CODE_CHARS || c.chars().any(char::is_control) {
        return Err(DomainError::invalid(
            "vat_code",
            "invalid_vat_code",
            format!("at most {MAX_VAT_CODE_CHARS} printable characters"),
        ));
    }
    Ok((!c.is_empty()).then(|| c.to_string()))
}

async fn fetch_row<'e>(
    pool: impl sqlx::Executor<'e, Database = sqlx::Any>,
    id: &str,
) -> DomainResult<AccountRow> {
    sqlx::query_as(&format!("{ACCOUNT_SELECT} WHERE id = $1"))
        .bind(id)
        .fetch_optional(pool)
        .await?
        .ok_or_else(|| DomainError::not_found("account", id))
}

/// The account `id`, or not found.
pub async fn get(pool: &Pool, id: &str) -> DomainResult<Account> {
    fetch_row(pool, id).await?.try_into()
}

/// Whether an account `id` exists (for inputs that name one).
pub async fn exists(pool: &Pool, id: &str) -> DomainResult<bool> {
    let found: Option<(String,)> = sqlx::query_as("SELECT id FROM accounts WHERE id = $1")
        .bind(id)
        .fetch_optional(pool)
        .await?;
    Ok(found.is_some())
}

/// Creates an account; a missing name or email is invalid, a missing VAT rate is 0.
pub async fn create(pool: &Pool, actor: &Actor, input: &AccountInput) -> DomainResult<Account> {
    let name = check_name("name", input.name.as_deref().unwrap_or(""))?;
    let email = check_email(input.email.as_deref().unwrap_or(""))?;
    let address = check_address(&input.billing_address.clone().unwrap_or_default())?;
    let vat_rate = check_vat_rate(input.vat_rate.as_deref().unwrap_or("0"))?;
    let vat_code = input
        .vat_code
        .as_deref()
        .map(check_vat_code)
        .transpose()?
        .flatten();
    let id = new_id("acct");
    let t = now();
    let mut tx = crate::store::begin_write(pool).await?;
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
    .execute(&mut *tx)
    .await?;
    let after = Account::try_from(fetch_row(&mut *tx, &id).await?)?;
    let changes = Changes::between(None, Some(&after))?;
    let object = Object {
        kind: "account",
        id: &id,
    };
    audit::record(&mut tx, actor, "account.created", object, &changes).await?;
    tx.commit().await?;
    Ok(after)
}

/// A page of accounts in id order.
pub async fn list(pool: &Pool, req: &PageRequest) -> DomainResult<Page<Account>> {
    let rows: Vec<AccountRow> = sqlx::query_as(&format!(
        "{ACCOUNT_SELECT} WHERE id > $1 ORDER BY id LIMIT $2"
    ))
    .bind(&req.after)
    .bind(req.limit + 1)
    .fetch_all(pool)
    .await?;
    let accounts = rows
        .into_iter()
        .map(Account::try_from)
        .collect::<DomainResult<Vec<_>>>()?;
    Ok(page(accounts, req.limit, |a| &a.id))
}

/// Changes the fields `input` has; the others stay. Not found before any field is checked.
pub async fn update(
    pool: &Pool,
    actor: &Actor,
    id: &str,
    input: &AccountInput,
) -> DomainResult<Account> {
    let a = fetch_row(pool, id).await?;
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
        None => a.vat_code,
    };
    let mut tx = crate::store::begin_write(pool).await?;
    let before = Account::try_from(fetch_row(&mut *tx, id).await?)?;
    sqlx::query("UPDATE accounts SET name = $2, email = $3, billing_address = $4, vat_rate = $5, vat_code = $6, updated_at = $7 WHERE id = $1")
        .bind(id)
        .bind(name.unwrap_or(a.name))
        .bind(email.unwrap_or(a.email))
        .bind(address.unwrap_or(a.billing_address))
        .bind(vat_rate.map_or(a.vat_rate, |r| r.normalize().to_string()))
        .bind(vat_code)
        .bind(now())
        .execute(&mut *tx)
        .await?;
    let after = Account::try_from(fetch_row(&mut *tx, id).await?)?;
    let changes = Changes::between(Some(&before), Some(&after))?;
    let object = Object {
        kind: "account",
        id,
    };
    audit::record(&mut tx, actor, "account.updated", object, &changes).await?;
    tx.commit().await?;
    Ok(after)
}

/// Deletes an account that has no applications and no billing history (contracts, invoices:
/// they are kept, so such an account stays).
pub async fn delete(pool: &Pool, actor: &Actor, id: &str) -> DomainResult<Deleted> {
    fetch_row(pool, id).await?;
    let (apps,): (i64,) = sqlx::query_as("SELECT COUNT(*) FROM applications WHERE account_id = $1")
        .bind(id)
        .fetch_one(pool)
        .await?;
    if apps > 0 {
        return Err(DomainError::conflict(
            "account_in_use",
            format!("the account has {apps} application(s); delete them first"),
        ));
    }
    let (history,): (i64,) = sqlx::query_as(
        "SELECT (SELECT COUNT(*) FROM contracts WHERE account_id = $1) + (SELECT COUNT(*) FROM invoices WHERE account_id = $1)",
    )
    .bind(id)
    .fetch_one(pool)
    .await?;
    if history > 0 {
        return Err(DomainError::conflict(
            "account_has_billing_history",
            "the account has contracts or invoices; they are kept for its billing history",
        ));
    }
    let mut tx = crate::store::begin_write(pool).await?;
    let before = Account::try_from(fetch_row(&mut *tx, id).await?)?;
    sqlx::query("DELETE FROM accounts WHERE id = $1")
        .bind(id)
        .execute(&mut *tx)
        .await?;
    let changes = Changes::between(Some(&before), None)?;
    let object = Object {
        kind: "account",
        id,
    };
    audit::record(&mut tx, actor, "account.deleted", object, &changes).await?;
    crate::domain::catalog::revision::bump(&mut tx).await?;
    tx.commit().await?;
    Ok(Deleted::new("account", id))
}
