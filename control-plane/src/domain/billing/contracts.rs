//! Contracts: which plan an application was on, and when. Written in the same transaction as the
//! application change that causes them, so billing always sees the history the gateway enforced.

use super::calendar::day_of;
use crate::domain::DomainResult;
use crate::secrets::new_id;
use crate::store::Tx;

#[derive(sqlx::FromRow)]
struct TrialRow {
    trial_days: i64,
}

/// The contract an application is on now (the one not ended).
#[derive(sqlx::FromRow)]
struct OpenContract {
    id: String,
    plan_id: String,
    trial_ends_on: i64,
}

async fn trial_days(tx: &mut Tx, plan_id: &str) -> DomainResult<i64> {
    let row: TrialRow = sqlx::query_as("SELECT trial_days FROM plans WHERE id = $1")
        .bind(plan_id)
        .fetch_one(&mut **tx)
        .await?;
    Ok(row.trial_days)
}

async fn insert(
    tx: &mut Tx,
    application_id: &str,
    plan_id: &str,
    starts_on: i64,
    trial_ends_on: i64,
    now: i64,
) -> DomainResult<()> {
    sqlx::query(
        "INSERT INTO contracts (id, account_id, application_id, application_name, plan_id, starts_on, ends_on, trial_ends_on, created_at) \
         SELECT $1, account_id, id, name, $2, $3, NULL, $4, $5 FROM applications WHERE id = $6",
    )
    .bind(new_id("ctr"))
    .bind(plan_id)
    .bind(starts_on)
    .bind(trial_ends_on)
    .bind(now)
    .bind(application_id)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// A new application: its first contract starts today, with the plan's trial.
pub async fn start(tx: &mut Tx, application_id: &str, plan_id: &str, now: i64) -> DomainResult<()> {
    let today = day_of(now);
    let trial = trial_days(tx, plan_id).await?;
    insert(tx, application_id, plan_id, today, today + trial, now).await
}

/// The first contract here of an imported application (`domain/transfer.rs`).
pub struct ImportedContract<'a> {
    pub application_id: &'a str,
    pub account_id: &'a str,
    pub application_name: &'a str,
    pub plan_id: &'a str,
    /// What was left of its trial where it came from (a day number), not the plan's anew.
    pub trial_ends_on: i64,
}

/// Starts the contracts of imported applications today, in multi-row statements.
pub async fn start_imported(
    tx: &mut Tx,
    contracts: &[ImportedContract<'_>],
    now: i64,
) -> DomainResult<()> {
    let today = day_of(now);
    for chunk in contracts.chunks(crate::store::rows_per_statement(8)) {
        let sql = format!(
            "INSERT INTO contracts (id, account_id, application_id, application_name, plan_id, starts_on, trial_ends_on, created_at) VALUES {}",
            crate::store::placeholders(chunk.len(), 8)
        );
        let mut q = sqlx::query(&sql).persistent(false);
        for c in chunk {
            q = q
                .bind(new_id("ctr"))
                .bind(c.account_id)
                .bind(c.application_id)
                .bind(c.application_name)
                .bind(c.plan_id)
                .bind(today)
                .bind(c.trial_ends_on)
                .bind(now);
        }
        q.execute(&mut **tx).await?;
    }
    Ok(())
}

/// A plan change: the current contract ends today and the new one starts today (the new plan
/// prices the whole day). The trial is not restarted: it still ends when it would have.
pub async fn change_plan(
    tx: &mut Tx,
    application_id: &str,
    plan_id: &str,
    now: i64,
) -> DomainResult<()> {
    let today = day_of(now);
    let current: Option<OpenContract> = sqlx::query_as(
        "SELECT id, plan_id, trial_ends_on FROM contracts WHERE application_id = $1 AND ends_on IS NULL",
    )
    .bind(application_id)
    .fetch_optional(&mut **tx)
    .await?;
    let trial_ends_on = match current {
        Some(c) if c.plan_id == plan_id => return Ok(()),
        Some(c) => {
            sqlx::query("UPDATE contracts SET ends_on = $2 WHERE id = $1")
                .bind(&c.id)
                .bind(today)
                .execute(&mut **tx)
                .await?;
            c.trial_ends_on
        }
        None => today + trial_days(tx, plan_id).await?,
    };
    insert(tx, application_id, plan_id, today, trial_ends_on, now).await
}

/// A customized copy of the same plan continues the same contract (no new setup fee).
pub async fn switch_to_copy(tx: &mut Tx, application_id: &str, plan_id: &str) -> DomainResult<()> {
    sqlx::query("UPDATE contracts SET plan_id = $2 WHERE application_id = $1 AND ends_on IS NULL")
        .bind(application_id)
        .bind(plan_id)
        .execute(&mut **tx)
        .await?;
    Ok(())
}

/// The application is deleted: its contract ends after today (the day of deletion is billed).
pub async fn end(tx: &mut Tx, application_id: &str, now: i64) -> DomainResult<()> {
    sqlx::query("UPDATE contracts SET ends_on = $2 WHERE application_id = $1 AND ends_on IS NULL")
        .bind(application_id)
        .bind(day_of(now) + 1)
        .execute(&mut **tx)
        .await?;
    Ok(())
}

/// Keeps the name printed on invoices current.
pub async fn rename(tx: &mut Tx, application_id: &str, name: &str) -> DomainResult<()> {
    sqlx::query(
        "UPDATE contracts SET application_name = $2 WHERE application_id = $1 AND ends_on IS NULL",
    )
    .bind(application_id)
    .bind(name)
    .execute(&mut **tx)
    .await?;
    Ok(())
}
