//! The accounts and applications exports: one row per account (its billing address in columns)
//! and one row per application (with its plan and service), in id order.

use serde::Deserialize;

use super::{non_empty, parse_opt_time, Cell, Row, EXPORT_BATCH_ROWS};
use crate::domain::accounts::BillingAddress;
use crate::domain::{DomainError, DomainResult};
use crate::money::{format_amount, stored};
use crate::store::Pool;

/// `GET /admin/api/v1/exports/accounts.csv` filters (all optional). Accounts have no state of
/// their own (their applications do).
#[derive(Debug, Default, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct AccountExportParams {
    /// Accounts with at least one application on this plan.
    pub plan_id: Option<String>,
    /// Accounts with at least one application on a plan of this service.
    pub service_id: Option<String>,
    /// Created on or after (`YYYY-MM-DD` or `YYYY-MM-DDTHH:MM:SSZ`, UTC).
    pub created_since: Option<String>,
}

/// `GET /admin/api/v1/exports/applications.csv` filters (all optional).
#[derive(Debug, Default, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ApplicationExportParams {
    /// `live` or `suspended`.
    pub state: Option<String>,
    pub plan_id: Option<String>,
    pub service_id: Option<String>,
    pub account_id: Option<String>,
    /// Created on or after (`YYYY-MM-DD` or `YYYY-MM-DDTHH:MM:SSZ`, UTC).
    pub created_since: Option<String>,
}

pub const ACCOUNT_COLUMNS: &[&str] = &[
    "account_id",
    "name",
    "email",
    "address_line1",
    "address_line2",
    "address_city",
    "address_postal_code",
    "address_region",
    "address_country",
    "vat_rate",
    "vat_code",
    "credit_balance",
    "currency",
    "applications",
    "created_at",
    "updated_at",
];

pub const APPLICATION_COLUMNS: &[&str] = &[
    "application_id",
    "name",
    "description",
    "account_id",
    "account_name",
    "plan_id",
    "plan_name",
    "service_id",
    "state",
    "state_reason",
    "created_at",
    "updated_at",
];

#[derive(sqlx::FromRow)]
struct AccountRow {
    id: String,
    name: String,
    email: String,
    billing_address: String,
    vat_rate: String,
    vat_code: Option<String>,
    credit_balance: String,
    applications: i64,
    created_at: i64,
    updated_at: i64,
}

pub struct AccountSource {
    plan_id: Option<String>,
    service_id: Option<String>,
    created_since: Option<i64>,
    /// The billing currency (credit balances are in it), read with the first batch.
    currency: Option<String>,
    after: String,
    finished: bool,
}

impl AccountSource {
    pub fn new(p: AccountExportParams) -> DomainResult<AccountSource> {
        Ok(AccountSource {
            plan_id: non_empty(p.plan_id),
            service_id: non_empty(p.service_id),
            created_since: parse_opt_time("created_since", p.created_since.as_deref())?,
            currency: None,
            after: String::new(),
            finished: false,
        })
    }

    pub async fn next_batch(&mut self, pool: &Pool) -> DomainResult<Option<Vec<Row>>> {
        if self.finished {
            return Ok(None);
        }
        let currency = match &self.currency {
            Some(c) => c.clone(),
            None => {
                let c = crate::domain::billing::settings::load(pool).await?.currency;
                self.currency = Some(c.clone());
                c
            }
        };
        let rows: Vec<AccountRow> = sqlx::query_as(
            "SELECT a.id, a.name, a.email, a.billing_address, a.vat_rate, a.vat_code, a.credit_balance, \
             (SELECT COUNT(*) FROM applications x WHERE x.account_id = a.id) AS applications, a.created_at, a.updated_at \
             FROM accounts a WHERE a.id > $1 AND a.created_at >= $2 \
             AND ($3 = '' OR EXISTS (SELECT 1 FROM applications x WHERE x.account_id = a.id AND x.plan_id = $3)) \
             AND ($4 = '' OR EXISTS (SELECT 1 FROM applications x JOIN plans p ON p.id = x.plan_id WHERE x.account_id = a.id AND p.service_id = $4)) \
             ORDER BY a.id LIMIT $5",
        )
        .bind(&self.after)
        .bind(self.created_since.unwrap_or(i64::MIN))
        .bind(self.plan_id.as_deref().unwrap_or_default())
        .bind(self.service_id.as_deref().unwrap_or_default())
        .bind(EXPORT_BATCH_ROWS)
        .fetch_all(pool)
        .await?;
        self.finished = (rows.len() as i64) < EXPORT_BATCH_ROWS;
        if let Some(last) = rows.last() {
            self.after = last.id.clone();
        }
        let cells = rows
            .into_iter()
            .map(|r| account_cells(r, &currency))
            .collect::<DomainResult<Vec<Row>>>()?;
        Ok(Some(cells))
    }
}

fn account_cells(r: AccountRow, currency: &str) -> DomainResult<Row> {
    let address: BillingAddress = serde_json::from_str(&r.billing_address).map_err(|e| {
        DomainError::Internal(format!(
            "account {}: stored billing address is not an address: {e}",
            r.id
        ))
    })?;
    Ok(vec![
        Cell::value(&r.id),
        Cell::text(r.name),
        Cell::text(r.email),
        Cell::text(address.line1),
        Cell::text(address.line2),
        Cell::text(address.city),
        Cell::text(address.postal_code),
        Cell::text(address.region),
        Cell::text(address.country),
        Cell::value(r.vat_rate),
        Cell::opt_text(r.vat_code),
        Cell::value(format_amount(stored(&r.credit_balance)?)),
        Cell::value(currency),
        Cell::value(r.applications),
        Cell::time(r.created_at),
        Cell::time(r.updated_at),
    ])
}

#[derive(sqlx::FromRow)]
struct ApplicationRow {
    id: String,
    name: String,
    description: String,
    account_id: String,
    account_name: String,
    plan_id: String,
    plan_name: String,
    service_id: String,
    state: String,
    state_reason: Option<String>,
    created_at: i64,
    updated_at: i64,
}

pub struct ApplicationSource {
    state: Option<&'static str>,
    plan_id: Option<String>,
    service_id: Option<String>,
    account_id: Option<String>,
    created_since: Option<i64>,
    after: String,
    finished: bool,
}

impl ApplicationSource {
    pub fn new(p: ApplicationExportParams) -> DomainResult<ApplicationSource> {
        let state = match p.state.as_deref() {
            None | Some("") => None,
            Some("live") => Some("live"),
            Some("suspended") => Some("suspended"),
            Some(other) => {
                return Err(DomainError::malformed(
                    Some("state".into()),
                    "invalid_state",
                    format!("{other:?}: live or suspended"),
                ))
            }
        };
        Ok(ApplicationSource {
            state,
            plan_id: non_empty(p.plan_id),
            service_id: non_empty(p.service_id),
            account_id: non_empty(p.account_id),
            created_since: parse_opt_time("created_since", p.created_since.as_deref())?,
            after: String::new(),
            finished: false,
        })
    }

    pub async fn next_batch(&mut self, pool: &Pool) -> DomainResult<Option<Vec<Row>>> {
        if self.finished {
            return Ok(None);
        }
        let rows: Vec<ApplicationRow> = sqlx::query_as(
            "SELECT x.id, x.name, x.description, x.account_id, a.name AS account_name, x.plan_id, \
             p.name AS plan_name, p.service_id, x.state, x.state_reason, x.created_at, x.updated_at \
             FROM applications x JOIN accounts a ON a.id = x.account_id JOIN plans p ON p.id = x.plan_id \
             WHERE x.id > $1 AND x.created_at >= $2 AND ($3 = '' OR x.state = $3) AND ($4 = '' OR x.plan_id = $4) \
             AND ($5 = '' OR p.service_id = $5) AND ($6 = '' OR x.account_id = $6) ORDER BY x.id LIMIT $7",
        )
        .bind(&self.after)
        .bind(self.created_since.unwrap_or(i64::MIN))
        .bind(self.state.unwrap_or_default())
        .bind(self.plan_id.as_deref().unwrap_or_default())
        .bind(self.service_id.as_deref().unwrap_or_default())
        .bind(self.account_id.as_deref().unwrap_or_default())
        .bind(EXPORT_BATCH_ROWS)
        .fetch_all(pool)
        .await?;
        self.finished = (rows.len() as i64) < EXPORT_BATCH_ROWS;
        if let Some(last) = rows.last() {
            self.after = last.id.clone();
        }
        Ok(Some(
            rows.into_iter()
                .map(|r| {
                    vec![
                        Cell::value(r.id),
                        Cell::text(r.name),
                        Cell::text(r.description),
                        Cell::value(r.account_id),
                        Cell::text(r.account_name),
                        Cell::value(r.plan_id),
                        Cell::text(r.plan_name),
                        Cell::value(r.service_id),
                        Cell::value(r.state),
                        Cell::opt_value(r.state_reason),
                        Cell::time(r.created_at),
                        Cell::time(r.updated_at),
                    ]
                })
                .collect(),
        ))
    }
}
