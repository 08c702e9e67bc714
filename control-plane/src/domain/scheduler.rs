//! The daily billing run inside `tollgate serve`, and what every run does: bill, then charge.
//!
//! Once the UTC hour reaches the settings' `run_hour_utc`, today's run starts unless one already
//! succeeded today. Checked on start-up (after [`FIRST_CHECK`]) and every [`TICK`], so a server
//! that was down at the hour catches up. `POST /admin/api/v1/billing/runs` runs the same
//! [`bill_then_charge`].
//!
//! Why here and not in `billing/`: charging depends on billing (it charges billing's invoices),
//! so billing must not call charging; this module is the one place that calls both, in order.

use std::time::Duration;

use crate::domain::billing::calendar::{day_of, SECONDS_PER_DAY};
use crate::domain::billing::run::{self, Heartbeat, RunLock};
use crate::domain::billing::settings;
use crate::domain::payments::{charging, config};
use crate::domain::{DomainError, DomainResult};
use crate::store::{now, Pool};
use crate::telemetry::{self, RunResult};

pub const FIRST_CHECK: Duration = Duration::from_secs(5);
pub const TICK: Duration = Duration::from_secs(60);

pub async fn run_scheduler(pool: Pool, lock: RunLock) {
    tokio::time::sleep(FIRST_CHECK).await;
    loop {
        if let Err(e) = tick(&pool, &lock).await {
            tracing::warn!("billing scheduler: {e:?}");
        }
        tokio::time::sleep(TICK).await;
    }
}

async fn tick(pool: &Pool, lock: &RunLock) -> DomainResult<()> {
    let settings = settings::load(pool).await?;
    let t = now();
    let today = day_of(t);
    if (t - today * SECONDS_PER_DAY) / 3600 < settings.run_hour_utc {
        return Ok(());
    }
    if run::succeeded_on(pool, today).await? {
        return Ok(());
    }
    let Ok(_guard) = lock.clone().try_lock_owned() else {
        return Ok(());
    };
    // Another replica may have run today's billing since the check above: the start re-checks
    // in its insert, and a run in progress elsewhere is a conflict, not an error.
    let id = match run::start_unless_succeeded(pool, today).await {
        Ok(Some(id)) => id,
        Ok(None) | Err(DomainError::Conflict { .. }) => return Ok(()),
        Err(e) => return Err(e),
    };
    tracing::info!(run = id, "daily billing run started");
    bill_then_charge(pool, &id, today, run::batch_size()).await
}

/// Runs the started run `run_id` to the end: bills every account, then charges the invoices due
/// by `run_on` (those it issued and the retries due), and records how it ended. A charging error
/// fails the run like a billing error; the heartbeat covers both.
pub async fn bill_then_charge(
    pool: &Pool,
    run_id: &str,
    run_on: i64,
    batch: i64,
) -> DomainResult<()> {
    let started = std::time::Instant::now();
    let heartbeat = Heartbeat::start(pool, run_id);
    let result = match run::bill(pool, run_id, run_on, batch).await {
        Ok(billed) => charge(pool, run_id, billed).await,
        Err(e) => Err(e),
    };
    drop(heartbeat);
    let finished = run::finish(pool, run_id, result).await;
    telemetry::get().billing_run(
        if finished.is_ok() {
            RunResult::Succeeded
        } else {
            RunResult::Failed
        },
        started.elapsed(),
    );
    finished
}

/// Charging follows billing: invoices due by the run's date (issued and due, or a retry due).
async fn charge(pool: &Pool, run_id: &str, billed: run::RunSummary) -> DomainResult<()> {
    let (attempted, paid) = charging::charge_due(pool, config::master_key(), billed.run_on).await?;
    if attempted > 0 {
        tracing::info!(run = run_id, attempted, paid, "charged due invoices");
    }
    Ok(())
}
