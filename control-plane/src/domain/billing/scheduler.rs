//! The daily billing run inside `tollgate serve`: once the UTC hour reaches the settings'
//! `run_hour_utc`, today's run starts unless one already succeeded today. Checked on start-up
//! (after [`FIRST_CHECK`]) and every [`TICK`], so a server that was down at the hour catches up.

use std::time::Duration;

use super::calendar::{day_of, SECONDS_PER_DAY};
use super::run::{self, RunLock};
use super::settings;
use crate::domain::{DomainError, DomainResult};
use crate::store::{now, Pool};

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
    let (done,): (i64,) = sqlx::query_as(
        "SELECT COUNT(*) FROM billing_runs WHERE run_on = $1 AND state = 'succeeded'",
    )
    .bind(today)
    .fetch_one(pool)
    .await?;
    if done > 0 {
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
    run::execute(pool, &id, today, run::batch_size()).await
}
