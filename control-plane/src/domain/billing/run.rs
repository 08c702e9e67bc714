//! Billing runs: for a date, every account's due lines ([`lines::due_lines`]) are put on an
//! invoice that is issued at once (numbered, frozen, emailed).
//!
//! Accounts are processed in batches of [`DEFAULT_BATCH`] (`TOLLGATE_BILLING_BATCH`), each batch
//! in one transaction: its lines, invoices, numbers, balances and emails commit together or not
//! at all. Every run-made line has a unique key, so a second run for the same date, a run after a
//! crash half-way, or two runs racing on two replicas bill nothing twice (a racing batch fails on
//! the unique key and is redone, finding nothing left to bill).
//!
//! Known limit: usage a gateway reports after the run that billed its month is not billed (gateways
//! report within seconds; the default run hour, 02:00 UTC, leaves two hours).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use rust_decimal::Decimal;
use serde::Serialize;

use super::calendar::{day_of, format_date, month_start, next_month_start, previous_month_start};
use super::invoices::{
    allocate_numbers, format_number, insert_lines, issued_email, plain, plan_issue, series,
    write_issued, Buyer, BuyerRow, InvoiceState, BUYER_COLUMNS, INVOICE_COLUMNS,
};
use super::lines::{
    due_lines, history_keys, Billed, BilledKeys, Contract, LineKind, MetricPricing, Mode, NewLine,
    PlanTerms,
};
use super::outbox::{enqueue_many, Email};
use super::rating::Tier;
use super::settings::{self, BillingSettings};
use crate::domain::catalog::PricingModel;
use crate::domain::page::page;
use crate::domain::{DomainError, DomainResult, Page};
use crate::money::stored;
use crate::secrets::new_id;
use crate::store::{is_unique_violation, now, now_ms, Pool, Tx};

/// Accounts per batch transaction.
pub const DEFAULT_BATCH: i64 = 500;
/// A run whose heartbeat is older than this is considered dead (its process stopped).
pub const RUN_STALE_SECS: i64 = 10;
/// How often a run's heartbeat is refreshed while it works.
pub const HEARTBEAT_EVERY: Duration = Duration::from_secs(2);
/// Attempts per batch when it conflicts with a concurrent writer.
pub const BATCH_ATTEMPTS: usize = 3;

/// Serializes runs within one process.
pub type RunLock = Arc<tokio::sync::Mutex<()>>;

pub fn batch_size() -> i64 {
    std::env::var("TOLLGATE_BILLING_BATCH")
        .ok()
        .and_then(|v| v.parse().ok())
        .filter(|n| (1..=10_000).contains(n))
        .unwrap_or(DEFAULT_BATCH)
}

const RUN_COLUMNS: &str =
    "id, run_on, state, accounts_done, invoices_issued, error, started_at, finished_at";

/// Where a run is: `running` until it ends `succeeded` or `failed`; `interrupted` when its process
/// stopped (stale heartbeat) and another start found it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum RunState {
    Running,
    Succeeded,
    Failed,
    Interrupted,
}

impl RunState {
    pub fn as_str(self) -> &'static str {
        match self {
            RunState::Running => "running",
            RunState::Succeeded => "succeeded",
            RunState::Failed => "failed",
            RunState::Interrupted => "interrupted",
        }
    }

    /// A stored state; an unknown one is an error, never a guess.
    pub fn parse(s: &str) -> DomainResult<RunState> {
        [
            RunState::Running,
            RunState::Succeeded,
            RunState::Failed,
            RunState::Interrupted,
        ]
        .into_iter()
        .find(|r| r.as_str() == s)
        .ok_or_else(|| DomainError::Internal(format!("unknown billing run state {s:?} stored")))
    }
}

#[derive(sqlx::FromRow)]
struct RunRow {
    id: String,
    run_on: i64,
    state: String,
    accounts_done: i64,
    invoices_issued: i64,
    error: Option<String>,
    started_at: i64,
    finished_at: Option<i64>,
}

/// A billing run as the API shows it.
#[derive(Clone, Debug, Serialize, utoipa::ToSchema)]
pub struct BillingRun {
    /// Always `"billing_run"`.
    pub object: &'static str,
    pub id: String,
    /// The day billed, `YYYY-MM-DD`.
    pub date: String,
    pub state: RunState,
    pub accounts_done: i64,
    pub invoices_issued: i64,
    pub error: Option<String>,
    pub started_at: i64,
    pub finished_at: Option<i64>,
}

impl TryFrom<RunRow> for BillingRun {
    type Error = DomainError;

    fn try_from(r: RunRow) -> DomainResult<BillingRun> {
        Ok(BillingRun {
            object: "billing_run",
            id: r.id,
            date: format_date(r.run_on),
            state: RunState::parse(&r.state)?,
            accounts_done: r.accounts_done,
            invoices_issued: r.invoices_issued,
            error: r.error,
            started_at: r.started_at,
            finished_at: r.finished_at,
        })
    }
}

pub async fn fetch_run(pool: &Pool, id: &str) -> DomainResult<BillingRun> {
    sqlx::query_as::<_, RunRow>(&format!(
        "SELECT {RUN_COLUMNS} FROM billing_runs WHERE id = $1"
    ))
    .bind(id)
    .fetch_optional(pool)
    .await?
    .ok_or_else(|| DomainError::not_found("billing run", id))?
    .try_into()
}

/// A page of at most `limit` runs older than `before` (all when `None`), newest first: the
/// cursor is the last id seen.
pub async fn list_runs(
    pool: &Pool,
    limit: i64,
    before: Option<&str>,
) -> DomainResult<Page<BillingRun>> {
    let after = before.unwrap_or("~");
    let rows: Vec<RunRow> = sqlx::query_as(&format!(
        "SELECT {RUN_COLUMNS} FROM billing_runs WHERE id < $1 ORDER BY id DESC LIMIT $2"
    ))
    .bind(after)
    .bind(limit + 1)
    .fetch_all(pool)
    .await?;
    let runs = rows
        .into_iter()
        .map(BillingRun::try_from)
        .collect::<DomainResult<Vec<_>>>()?;
    Ok(page(runs, limit, |r| &r.id))
}

/// Records a new run for `run_on`, unless one is running (409). Runs whose process died (stale
/// heartbeat) are marked `interrupted` first; their committed batches stay, the rest is redone.
///
/// One run at a time holds across replicas: the insert itself fails on the unique index
/// `billing_runs_one_running` (migration 0014) when another process's run is running, so two
/// control planes starting a run at the same instant cannot both pass a check and both insert.
pub async fn start(
    pool: &Pool,
    actor: &crate::domain::audit::Actor,
    run_on: i64,
) -> DomainResult<String> {
    match insert_run(pool, Some(actor), run_on, false).await? {
        Some(id) => Ok(id),
        None => Err(DomainError::Internal(
            "a run insert inserted nothing, and no run overlapped it".into(),
        )),
    }
}

/// The scheduler's start: like [`start`], but records nothing (`None`) when a run for `run_on`
/// has already succeeded, checked in the same statement as the insert, so a replica whose check
/// came before another replica's run finished does not bill the day a second time.
pub async fn start_unless_succeeded(pool: &Pool, run_on: i64) -> DomainResult<Option<String>> {
    insert_run(pool, None, run_on, true).await
}

/// `actor`: the admin who started the run, recorded in the audit log in the insert's
/// transaction; `None` for the scheduler's daily run (not an admin write).
async fn insert_run(
    pool: &Pool,
    actor: Option<&crate::domain::audit::Actor>,
    run_on: i64,
    unless_succeeded: bool,
) -> DomainResult<Option<String>> {
    // When the start was asked for: the decision is taken against this instant, not the later
    // one at which the insert gets the database. On SQLite a write waits for the one writer lock
    // and its busy handler is no queue: a start that arrived while another replica's run was
    // working, or just before another start of the same burst, can get the lock only after that
    // run ended, and then started a second run of one burst (issue 15, item 6 on SQLite). A run
    // that ended at or after `t_ms` worked while this start waited: the start is refused as
    // `run_in_progress` too. A start sent after a run ended is accepted as before.
    let t = now();
    let t_ms = now_ms();
    sqlx::query("UPDATE billing_runs SET state = 'interrupted', finished_at = $1 WHERE state = 'running' AND heartbeat_at < $2")
        .bind(t)
        .bind(t - RUN_STALE_SECS)
        .execute(pool)
        .await?;
    let id = new_id("run");
    // Runs that ended at or after `t_ms` (succeeded or failed; interrupted ones were dead, not
    // working) were working while this start waited.
    let overlap = "NOT EXISTS (SELECT 1 FROM billing_runs WHERE state IN ('succeeded', 'failed') AND finished_at_ms >= $4)";
    let condition = if unless_succeeded {
        format!("WHERE {overlap} AND NOT EXISTS (SELECT 1 FROM billing_runs WHERE run_on = $2 AND state = 'succeeded')")
    } else {
        format!("WHERE {overlap}")
    };
    // In a transaction, so the conditions can be read again after the insert (below) and the
    // insert undone if they no longer hold.
    let mut tx = crate::store::begin_write(pool).await?;
    let inserted = sqlx::query(&format!(
        "INSERT INTO billing_runs (id, run_on, state, accounts_done, invoices_issued, error, started_at, heartbeat_at, finished_at) \
         SELECT $1, $2, 'running', 0, 0, NULL, $3, $3, NULL {condition}"
    ))
    .bind(&id)
    .bind(run_on)
    .bind(t)
    .bind(t_ms)
    .execute(&mut *tx)
    .await;
    match inserted {
        Ok(done) if done.rows_affected() == 1 => {
            // PostgreSQL reads the insert's conditions in the snapshot its statement began with:
            // when it then waited on the unique index for the running run to end, that run's end
            // ('succeeded', finished_at_ms) is not in it, and both conditions passed although the
            // run had just billed the day. A new statement sees what committed meanwhile.
            let also_succeeded = if unless_succeeded {
                " OR (run_on = $3 AND state = 'succeeded')"
            } else {
                ""
            };
            let sql = format!(
                "SELECT id FROM billing_runs WHERE id <> $1 AND ((state IN ('succeeded', 'failed') AND finished_at_ms >= $2){also_succeeded}) LIMIT 1"
            );
            let mut check = sqlx::query_as::<_, (String,)>(&sql).bind(&id).bind(t_ms);
            if unless_succeeded {
                check = check.bind(run_on);
            }
            let blocking = check.fetch_optional(&mut *tx).await?;
            if blocking.is_none() {
                if let Some(actor) = actor {
                    use crate::domain::audit::{self, Changes, Object};
                    let changes = Changes::of(&[(
                        "run_on",
                        serde_json::Value::Null,
                        serde_json::json!(format_date(run_on)),
                    )]);
                    let object = Object {
                        kind: "billing_run",
                        id: &id,
                    };
                    audit::record(&mut tx, actor, "billing_run.started", object, &changes).await?;
                }
                tx.commit().await?;
                return Ok(Some(id));
            }
            drop(tx);
            refusal(pool, t_ms).await
        }
        Ok(_) => {
            drop(tx);
            refusal(pool, t_ms).await
        }
        Err(e) if is_unique_violation(&e) => {
            drop(tx);
            let running: Option<(String,)> =
                sqlx::query_as("SELECT id FROM billing_runs WHERE state = 'running'")
                    .fetch_optional(pool)
                    .await?;
            let which = running.map(|(id,)| format!(" {id}")).unwrap_or_default();
            Err(DomainError::conflict(
                "run_in_progress",
                format!("billing run{which} is still running"),
            ))
        }
        Err(e) => Err(e.into()),
    }
}

/// Why a start recorded nothing: a run that ended after the start arrived at `t_ms` (409
/// `run_in_progress`), else (the scheduler's start) today's run had already succeeded (`None`).
async fn refusal(pool: &Pool, t_ms: i64) -> DomainResult<Option<String>> {
    let overlapped: Option<(String,)> = sqlx::query_as(
        "SELECT id FROM billing_runs WHERE state IN ('succeeded', 'failed') AND finished_at_ms >= $1 ORDER BY id LIMIT 1",
    )
    .bind(t_ms)
    .fetch_optional(pool)
    .await?;
    match overlapped {
        Some((id,)) => Err(DomainError::conflict(
            "run_in_progress",
            format!("billing run {id} ran while this start waited for the database (it has ended since)"),
        )),
        None => Ok(None),
    }
}

/// Keeps a run's heartbeat fresh while its process works on it (billing, then the charging that
/// follows it), so that another replica does not take it for dead; stops when dropped.
pub struct Heartbeat(tokio::task::JoinHandle<()>);

impl Heartbeat {
    pub fn start(pool: &Pool, run_id: &str) -> Heartbeat {
        let pool = pool.clone();
        let id = run_id.to_string();
        Heartbeat(tokio::spawn(async move {
            loop {
                tokio::time::sleep(HEARTBEAT_EVERY).await;
                let _ = sqlx::query(
                    "UPDATE billing_runs SET heartbeat_at = $2 WHERE id = $1 AND state = 'running'",
                )
                .bind(&id)
                .bind(now())
                .execute(&pool)
                .await;
            }
        }))
    }
}

impl Drop for Heartbeat {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// What a run billed: its invoices are due by `run_on` at the latest (charging takes every
/// invoice due by then, these and the retries that fall due).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RunSummary {
    pub run_on: i64,
    pub accounts_done: i64,
    pub invoices_issued: i64,
}

/// Records how run `run_id` ended: `succeeded`, or `failed` with the error (its first 1000
/// characters). The error is passed on.
pub async fn finish(pool: &Pool, run_id: &str, result: DomainResult<()>) -> DomainResult<()> {
    let (state, error) = match &result {
        Ok(()) => (RunState::Succeeded, None),
        Err(e) => {
            tracing::error!(run = run_id, "billing run failed: {e:?}");
            (
                RunState::Failed,
                Some(format!("{e:?}").chars().take(1000).collect::<String>()),
            )
        }
    };
    sqlx::query("UPDATE billing_runs SET state = $2, error = $3, finished_at = $4, finished_at_ms = $5 WHERE id = $1")
        .bind(run_id)
        .bind(state.as_str())
        .bind(error)
        .bind(now())
        .bind(now_ms())
        .execute(pool)
        .await?;
    result
}

/// Whether a run for `day` has succeeded (the scheduler runs each day once).
pub async fn succeeded_on(pool: &Pool, day: i64) -> DomainResult<bool> {
    let (done,): (i64,) = sqlx::query_as(
        "SELECT COUNT(*) FROM billing_runs WHERE run_on = $1 AND state = 'succeeded'",
    )
    .bind(day)
    .fetch_one(pool)
    .await?;
    Ok(done > 0)
}

/// Every plan's terms, with pricing rules grouped per metric.
pub async fn load_plans(pool: &Pool) -> DomainResult<HashMap<String, PlanTerms>> {
    load_plans_where(pool, "").await
}

/// One plan's terms (the admin portal's cost preview prices them as a run would).
pub async fn load_plan(pool: &Pool, id: &str) -> DomainResult<Option<PlanTerms>> {
    if id.is_empty() {
        return Ok(None);
    }
    Ok(load_plans_where(pool, id).await?.remove(id))
}

/// The terms of plan `only`, or of every plan when `only` is empty.
async fn load_plans_where(pool: &Pool, only: &str) -> DomainResult<HashMap<String, PlanTerms>> {
    let plans: Vec<(String, String, String, String)> = sqlx::query_as(
        "SELECT id, name, setup_fee, fixed_fee FROM plans WHERE ($1 = '' OR id = $1)",
    )
    .bind(only)
    .fetch_all(pool)
    .await?;
    let mut out: HashMap<String, PlanTerms> = HashMap::with_capacity(plans.len());
    for (id, name, setup, fixed) in plans {
        let terms = PlanTerms {
            id: id.clone(),
            name,
            setup_fee: stored(&setup)?,
            fixed_fee: stored(&fixed)?,
            metrics: Vec::new(),
        };
        out.insert(id, terms);
    }
    type RuleRow = (
        String,
        String,
        String,
        String,
        i64,
        Option<i64>,
        String,
        Option<i64>,
    );
    let rules: Vec<RuleRow> = sqlx::query_as(
        "SELECT r.plan_id, r.metric_id, m.name, r.model, r.range_from, r.range_to, r.unit_price, r.package_size \
         FROM pricing_rules r JOIN metrics m ON m.id = r.metric_id WHERE ($1 = '' OR r.plan_id = $1) \
         ORDER BY r.plan_id, m.name, r.range_from",
    )
    .bind(only)
    .fetch_all(pool)
    .await?;
    for (plan_id, metric_id, metric_name, model, from, to, price, package) in rules {
        let Some(plan) = out.get_mut(&plan_id) else {
            continue;
        };
        let tier = Tier {
            from: from.max(0) as u64,
            to: to.map(|t| t.max(0) as u64),
            unit_price: stored(&price)?,
            package_size: package.map(|p| p.max(0) as u64),
        };
        match plan.metrics.last_mut() {
            Some(m) if m.metric_id == metric_id => m.tiers.push(tier),
            _ => plan.metrics.push(MetricPricing {
                metric_id,
                metric_name,
                model: PricingModel::parse(&model),
                tiers: vec![tier],
            }),
        }
    }
    Ok(out)
}

/// What one run needs in every batch.
struct RunContext {
    run_id: String,
    run_on: i64,
    today: i64,
    settings: BillingSettings,
    plans: HashMap<String, PlanTerms>,
    /// The period of the invoices this run issues: the current month (prepaid) or the previous one.
    period: (i64, i64),
}

/// Bills every account for run `run_id`, batch by batch (its heartbeat is the caller's, see
/// [`Heartbeat`]); the run stays `running` until [`finish`] records how it ended.
pub async fn bill(pool: &Pool, run_id: &str, run_on: i64, batch: i64) -> DomainResult<RunSummary> {
    let settings = settings::load(pool).await?;
    let period = match settings.mode {
        Mode::Prepaid => (month_start(run_on), next_month_start(run_on)),
        Mode::Postpaid => (previous_month_start(run_on), month_start(run_on)),
    };
    let ctx = RunContext {
        run_id: run_id.to_string(),
        run_on,
        today: day_of(now()),
        plans: load_plans(pool).await?,
        settings,
        period,
    };
    let mut after = String::new();
    let mut billed = RunSummary {
        run_on,
        accounts_done: 0,
        invoices_issued: 0,
    };
    loop {
        let mut attempt = 0;
        let next = loop {
            attempt += 1;
            let mut tx = crate::store::begin_write(pool).await?;
            match bill_batch(&mut tx, &ctx, &after, batch).await {
                Ok(next) => {
                    tx.commit().await?;
                    break next;
                }
                // A concurrent run committed the same lines first (unique keys), or lock contention.
                Err(
                    DomainError::Unavailable(_)
                    | DomainError::Conflict {
                        code: "conflicting_change",
                        ..
                    },
                ) if attempt < BATCH_ATTEMPTS => {
                    drop(tx);
                    tracing::warn!(
                        run = run_id,
                        "batch after {after:?} raced another run; redoing it"
                    );
                }
                Err(e) => return Err(e),
            }
        };
        match next {
            Some(done) => {
                // Counted once committed: a batch redone after a race issued nothing the first time.
                crate::telemetry::get().invoices_issued(
                    crate::telemetry::IssuedBy::Run,
                    u64::try_from(done.issued).unwrap_or(0),
                );
                billed.accounts_done += done.accounts;
                billed.invoices_issued += done.issued;
                after = done.last;
            }
            None => return Ok(billed),
        }
    }
}

type ContractRow = (
    String,
    String,
    String,
    String,
    String,
    i64,
    Option<i64>,
    i64,
);

/// What one batch billed: accounts up to `last`.
struct BatchDone {
    last: String,
    accounts: i64,
    issued: i64,
}

/// Bills the accounts after `after`; `None` when none are left.
async fn bill_batch(
    tx: &mut Tx,
    ctx: &RunContext,
    after: &str,
    batch: i64,
) -> DomainResult<Option<BatchDone>> {
    let t = now();
    // A write first: on SQLite the transaction takes the write lock here (waiting its turn), so
    // nothing read below can change before commit.
    sqlx::query("UPDATE billing_runs SET heartbeat_at = $2 WHERE id = $1")
        .bind(&ctx.run_id)
        .bind(t)
        .execute(&mut **tx)
        .await?;
    let rows: Vec<BuyerRow> = sqlx::query_as(&format!(
        "SELECT {BUYER_COLUMNS} FROM accounts WHERE id > $1 ORDER BY id LIMIT $2"
    ))
    .bind(after)
    .bind(batch)
    .fetch_all(&mut **tx)
    .await?;
    let buyers = rows
        .into_iter()
        .map(Buyer::try_from)
        .collect::<DomainResult<Vec<_>>>()?;
    let (Some(first), Some(last)) = (buyers.first(), buyers.last()) else {
        return Ok(None);
    };
    let (first, last) = (first.id.clone(), last.id.clone());
    let previous = previous_month_start(ctx.run_on);
    let contracts: Vec<ContractRow> = sqlx::query_as(
        "SELECT id, account_id, application_id, application_name, plan_id, starts_on, ends_on, trial_ends_on FROM contracts \
         WHERE account_id >= $1 AND account_id <= $2 AND (ends_on IS NULL OR ends_on > $3) ORDER BY account_id, starts_on, id",
    )
    .bind(&first)
    .bind(&last)
    .bind(previous)
    .fetch_all(&mut **tx)
    .await?;
    let mut issued = 0i64;
    if !contracts.is_empty() {
        issued = bill_accounts(tx, ctx, &buyers, &contracts, &first, &last).await?;
    }
    sqlx::query("UPDATE billing_runs SET accounts_done = accounts_done + $2, invoices_issued = invoices_issued + $3, heartbeat_at = $4 WHERE id = $1")
        .bind(&ctx.run_id)
        .bind(buyers.len() as i64)
        .bind(issued)
        .bind(now())
        .execute(&mut **tx)
        .await?;
    Ok(Some(BatchDone {
        last,
        accounts: buyers.len() as i64,
        issued,
    }))
}

/// An invoice being assembled for one account.
struct Draft<'a> {
    buyer: &'a Buyer,
    /// The account's open invoice for the period (manual lines), reused; else a new one.
    existing: Option<(String, Vec<Decimal>, i64)>,
    lines: Vec<NewLine>,
}

async fn bill_accounts(
    tx: &mut Tx,
    ctx: &RunContext,
    buyers: &[Buyer],
    contracts: &[ContractRow],
    first: &str,
    last: &str,
) -> DomainResult<i64> {
    let started = std::time::Instant::now();
    let previous = previous_month_start(ctx.run_on);
    let current = month_start(ctx.run_on);
    let currency = ctx.settings.currency()?;
    // Usage of the previous month per (application, metric, day).
    let mut app_ids: Vec<&str> = contracts.iter().map(|c| c.2.as_str()).collect();
    app_ids.sort_unstable();
    app_ids.dedup();
    let mut usage_rows: Vec<(String, String, i64, i64)> = Vec::new();
    for chunk in app_ids.chunks(crate::store::PARAMS_PER_STATEMENT) {
        let sql = format!(
            "SELECT application_id, metric_id, bucket_start / 86400, CAST(SUM(value) AS BIGINT) FROM usage_counters \
             WHERE bucket_start >= $1 AND bucket_start < $2 AND application_id IN {} \
             GROUP BY application_id, metric_id, bucket_start / 86400",
            crate::store::in_list(3, chunk.len())
        );
        let mut q = sqlx::query_as(&sql)
            .persistent(false) // one text per chunk size: not cached
            .bind(previous * 86_400)
            .bind(current * 86_400);
        for id in chunk {
            q = q.bind(*id);
        }
        usage_rows.extend(q.fetch_all(&mut **tx).await?);
    }
    let mut usage: HashMap<(String, String), Vec<(i64, i64)>> = HashMap::new();
    for (app, metric, day, value) in usage_rows {
        usage.entry((app, metric)).or_default().push((day, value));
    }
    // (line key, kind, period start, period end, unit price)
    type BilledRow = (String, String, Option<i64>, Option<i64>, String);
    let usage_done = std::time::Instant::now();
    let keys: Vec<String> = contracts
        .iter()
        .filter_map(|c| {
            ctx.plans
                .get(&c.4)
                .map(|plan| history_keys(&c.0, plan, ctx.run_on))
        })
        .flatten()
        .collect();
    let mut billed_rows: Vec<BilledRow> = Vec::new();
    for chunk in keys.chunks(crate::store::PARAMS_PER_STATEMENT) {
        let sql = format!(
            "SELECT line_key, kind, period_start, period_end, unit_price FROM invoice_lines WHERE line_key IN {}",
            crate::store::in_list(1, chunk.len())
        );
        let mut q = sqlx::query_as(&sql).persistent(false); // one text per chunk size: not cached
        for k in chunk {
            q = q.bind(k);
        }
        billed_rows.extend(q.fetch_all(&mut **tx).await?);
    }
    let mut billed = BilledKeys::new();
    for (key, kind, start, end, price) in billed_rows {
        let covered = match (kind == LineKind::FixedFee.as_str(), start, end) {
            (true, Some(s), Some(e)) => Some(Billed {
                period_start: s,
                period_end: e,
                unit_price: stored(&price)?,
            }),
            _ => None,
        };
        billed.insert(key, covered);
    }
    let billed_done = std::time::Instant::now();
    let open_rows: Vec<(String, String, String, i64)> = sqlx::query_as(
        "SELECT i.id, i.account_id, l.amount, l.position FROM invoices i JOIN invoice_lines l ON l.invoice_id = i.id \
         WHERE i.account_id >= $1 AND i.account_id <= $2 AND i.state = 'open' AND i.kind = 'invoice' AND i.period_start = $3",
    )
    .bind(first)
    .bind(last)
    .bind(ctx.period.0)
    .fetch_all(&mut **tx)
    .await?;
    let mut open: HashMap<String, (String, Vec<Decimal>, i64)> = HashMap::new();
    for (id, account, amount, position) in open_rows {
        let e = open.entry(account).or_insert_with(|| (id, Vec::new(), 0));
        e.1.push(stored(&amount)?);
        e.2 = e.2.max(position);
    }

    let mut by_account: HashMap<&str, Vec<&ContractRow>> = HashMap::new();
    for c in contracts {
        by_account.entry(c.1.as_str()).or_default().push(c);
    }
    let read_done = std::time::Instant::now();
    tracing::debug!(
        usage_ms = (usage_done - started).as_millis() as u64,
        billed_ms = (billed_done - usage_done).as_millis() as u64,
        open_ms = (read_done - billed_done).as_millis() as u64,
        "billing batch read"
    );
    let mut drafts: Vec<Draft> = Vec::new();
    for buyer in buyers {
        let Some(cs) = by_account.get(buyer.id.as_str()) else {
            continue;
        };
        let mut lines = Vec::new();
        for c in cs {
            let Some(plan) = ctx.plans.get(&c.4) else {
                tracing::error!(
                    contract = c.0,
                    plan = c.4,
                    "contract's plan is missing; not billed"
                );
                continue;
            };
            let contract = Contract {
                id: c.0.clone(),
                application_id: c.2.clone(),
                application_name: c.3.clone(),
                plan_id: c.4.clone(),
                starts_on: c.5,
                ends_on: c.6,
                trial_ends_on: c.7,
            };
            let app = &c.2;
            let units = |metric: &str, from: i64, to: i64| -> u64 {
                usage
                    .get(&(app.clone(), metric.to_string()))
                    .map(|days| {
                        days.iter()
                            .filter(|(d, _)| *d >= from && *d < to)
                            .map(|(_, v)| (*v).max(0) as u64)
                            .sum()
                    })
                    .unwrap_or(0)
            };
            match due_lines(
                ctx.settings.mode,
                ctx.run_on,
                &contract,
                plan,
                currency,
                &billed,
                &units,
            ) {
                Ok(l) => lines.extend(l),
                Err(_) => tracing::error!(
                    account = buyer.id,
                    contract = c.0,
                    "an amount overflows; the account is not billed"
                ),
            }
        }
        if !lines.is_empty() {
            drafts.push(Draft {
                buyer,
                existing: open.remove(&buyer.id),
                lines,
            });
        }
    }
    if drafts.is_empty() {
        return Ok(0);
    }

    let numbering_series = series(ctx.settings.numbering, ctx.period.0, false);
    let mut number = allocate_numbers(tx, &numbering_series, drafts.len() as i64).await?;
    let t = now();
    let mut new_invoices: Vec<Issued> = Vec::new();
    let mut line_rows: Vec<(String, i64, NewLine)> = Vec::new();
    let mut emails: Vec<Email> = Vec::new();
    let mut events: Vec<crate::domain::webhooks::Event> = Vec::new();
    for draft in &drafts {
        let (id, mut amounts, mut position) = match &draft.existing {
            Some((id, amounts, position)) => (id.clone(), amounts.clone(), *position),
            None => (new_id("inv"), Vec::new(), 0),
        };
        amounts.extend(draft.lines.iter().map(|l| l.amount));
        let issue = plan_issue(&amounts, draft.buyer, &ctx.settings, currency, ctx.today)?;
        for l in draft
            .lines
            .iter()
            .chain(issue.settlement.balance_line.iter())
        {
            position += 1;
            line_rows.push((id.clone(), position, l.clone()));
        }
        let num = format_number(&numbering_series, number);
        number += 1;
        let totals = &issue.settlement.totals;
        let paid_at = (issue.state == InvoiceState::Paid).then_some(t);
        if draft.existing.is_some() {
            write_issued(tx, &id, &issue, &num, currency, Some(&ctx.run_id), t).await?;
        } else {
            new_invoices.push(Issued {
                id: id.clone(),
                account_id: draft.buyer.id.clone(),
                state: issue.state,
                number: num.clone(),
                totals: [totals.subtotal, totals.tax, totals.total].map(|a| currency.format(a)),
                vat_rate: plain(issue.vat_rate),
                buyer: issue.buyer_json.clone(),
                seller: issue.seller_json.clone(),
                footer: issue.footer.clone(),
                due_on: issue.due_on,
                paid_at,
            });
        }
        if issue.settlement.balance_after != draft.buyer.credit_balance {
            super::invoices::set_balance(tx, &draft.buyer.id, issue.settlement.balance_after)
                .await?;
        }
        emails.push(issued_email(
            &ctx.settings,
            draft.buyer,
            &id,
            &num,
            &issue,
            currency,
            ctx.period.0,
        ));
        events.extend(crate::domain::webhooks::events::issued_events(
            &id,
            &draft.buyer.id,
            &num,
            &issue,
            currency,
        ));
    }
    let computed = std::time::Instant::now();
    insert_invoices(tx, ctx, currency.code, t, &new_invoices).await?;
    let invoices_written = std::time::Instant::now();
    let rows: Vec<(&str, i64, &NewLine, super::currency::Currency)> = line_rows
        .iter()
        .map(|(id, p, l)| (id.as_str(), *p, l, currency))
        .collect();
    insert_lines(tx, &rows).await?;
    let lines_written = std::time::Instant::now();
    enqueue_many(tx, &emails, t).await?;
    crate::domain::webhooks::enqueue_many(tx, &events).await?;
    tracing::debug!(
        compute_ms = (computed - read_done).as_millis() as u64,
        invoices_ms = (invoices_written - computed).as_millis() as u64,
        lines_ms = (lines_written - invoices_written).as_millis() as u64,
        emails_ms = lines_written.elapsed().as_millis() as u64,
        "billing batch written"
    );
    Ok(drafts.len() as i64)
}

/// A new invoice issued by a run.
struct Issued {
    id: String,
    account_id: String,
    state: InvoiceState,
    number: String,
    /// subtotal, tax, total
    totals: [String; 3],
    vat_rate: String,
    buyer: String,
    seller: String,
    footer: String,
    due_on: i64,
    paid_at: Option<i64>,
}

/// Multi-row insert of the invoices a batch issued.
async fn insert_invoices(
    tx: &mut Tx,
    ctx: &RunContext,
    currency: &str,
    t: i64,
    rows: &[Issued],
) -> DomainResult<()> {
    for chunk in rows.chunks(crate::store::rows_per_statement(23)) {
        let sql = format!(
            "INSERT INTO invoices ({INVOICE_COLUMNS}) VALUES {}",
            crate::store::placeholders(chunk.len(), 23)
        );
        let mut q = sqlx::query(&sql).persistent(false); // one text per row count: not cached
        for r in chunk {
            let [subtotal, tax, total] = &r.totals;
            q = q
                .bind(&r.id)
                .bind(&r.account_id)
                .bind("invoice")
                .bind(None::<String>)
                .bind(r.state.as_str())
                .bind(&r.number)
                .bind(currency)
                .bind(ctx.period.0)
                .bind(ctx.period.1)
                .bind(subtotal)
                .bind(tax)
                .bind(total)
                .bind(&r.vat_rate)
                .bind(&r.buyer)
                .bind(&r.seller)
                .bind(&r.footer)
                .bind(&ctx.run_id)
                .bind(t)
                .bind(r.due_on)
                .bind(r.paid_at)
                .bind(None::<i64>)
                .bind(t)
                .bind(t);
        }
        q.execute(&mut **tx).await?;
    }
    Ok(())
}
