//! Billing run benchmark: N accounts (default 100,000), each with one application on a plan that
//! prices 10 metrics, each metric used last month; one postpaid run for the 1st of this month on
//! SQLite and on PostgreSQL, then the same run again (which must bill nothing). Prints figures.
//!
//! `cargo xtask bench-billing [--accounts N] [--db sqlite|postgres|both]` (runs this example in
//! release mode).
//! (PostgreSQL: `TOLLGATE_BENCH_POSTGRES_URL`, default postgres://postgres@127.0.0.1:5432/test;
//! a throwaway database is created in it and dropped after.)

use std::time::Instant;

use sqlx::Executor;
use tollgate_control_plane::domain::billing::calendar::{
    day_of, month_start, previous_month_start, SECONDS_PER_DAY,
};
use tollgate_control_plane::domain::billing::run;
use tollgate_control_plane::domain::scheduler;
use tollgate_control_plane::store::{self, Pool};

const METRICS: usize = 10;
/// Rows per seeding INSERT.
const SEED_CHUNK: usize = 500;

type Res<T> = Result<T, String>;

fn arg(name: &str) -> Option<String> {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1).cloned())
}

async fn exec(pool: &Pool, sql: &str) -> Res<()> {
    pool.execute(sql)
        .await
        .map(|_| ())
        .map_err(|e| format!("{e}: {}", &sql[..sql.len().min(200)]))
}

/// Multi-row insert of text/integer rows given as SQL literals (bench data only: no user input).
async fn insert_rows(pool: &Pool, table_cols: &str, rows: Vec<String>) -> Res<()> {
    for chunk in rows.chunks(SEED_CHUNK) {
        exec(
            pool,
            &format!("INSERT INTO {table_cols} VALUES {}", chunk.join(", ")),
        )
        .await?;
    }
    Ok(())
}

async fn seed(pool: &Pool, accounts: usize, run_on: i64) -> Res<()> {
    let t = store::now();
    let prev = previous_month_start(run_on);
    exec(pool, &format!("INSERT INTO services (id, name, created_at, updated_at) VALUES ('svc_bench', 'Bench', {t}, {t})")).await?;
    let metrics: Vec<String> = (0..METRICS)
        .map(|m| format!("('met_{m:02}', 'svc_bench', 'metric{m}', 'hit', NULL, {t})"))
        .collect();
    insert_rows(
        pool,
        "metrics (id, service_id, name, unit, parent_id, created_at)",
        metrics,
    )
    .await?;
    exec(pool, &format!("INSERT INTO plans (id, service_id, name, state, setup_fee, fixed_fee, trial_days, parent_plan_id, created_at, updated_at) VALUES ('plan_bench', 'svc_bench', 'Bench plan', 'published', '0', '49.00', 0, NULL, {t}, {t})")).await?;
    let rules: Vec<String> = (0..METRICS)
        .map(|m| {
            format!(
                "('pr_{m:02}', 'plan_bench', 'met_{m:02}', 'graduated', 1, NULL, '0.0015', NULL)"
            )
        })
        .collect();
    insert_rows(pool, "pricing_rules (id, plan_id, metric_id, model, range_from, range_to, unit_price, package_size)", rules).await?;
    let mut accts = Vec::with_capacity(accounts);
    let mut apps = Vec::with_capacity(accounts);
    let mut contracts = Vec::with_capacity(accounts);
    let mut usage = Vec::with_capacity(accounts * METRICS);
    let started = prev - 40;
    for i in 0..accounts {
        accts.push(format!(
            "('acct_{i:08}', 'Account {i}', 'a{i}@example.com', '{{}}', '19', NULL, {t}, {t}, '0')"
        ));
        apps.push(format!(
            "('app_{i:08}', 'acct_{i:08}', 'plan_bench', 'App {i}', '', 'live', NULL, {t}, {t})"
        ));
        contracts.push(format!("('ctr_{i:08}', 'acct_{i:08}', 'app_{i:08}', 'App {i}', 'plan_bench', {started}, NULL, {started}, {t})"));
        for m in 0..METRICS {
            let bucket = (prev + (i % 28) as i64) * SECONDS_PER_DAY + 3600 * m as i64;
            usage.push(format!(
                "('app_{i:08}', 'met_{m:02}', {bucket}, {})",
                1000 + i % 5000
            ));
        }
    }
    insert_rows(pool, "accounts (id, name, email, billing_address, vat_rate, vat_code, created_at, updated_at, credit_balance)", accts).await?;
    insert_rows(pool, "applications (id, account_id, plan_id, name, description, state, state_reason, created_at, updated_at)", apps).await?;
    insert_rows(pool, "contracts (id, account_id, application_id, application_name, plan_id, starts_on, ends_on, trial_ends_on, created_at)", contracts).await?;
    insert_rows(
        pool,
        "usage_counters (application_id, metric_id, bucket_start, value)",
        usage,
    )
    .await?;
    Ok(())
}

async fn count(pool: &Pool, table: &str) -> Res<i64> {
    let (n,): (i64,) = sqlx::query_as(&format!("SELECT COUNT(*) FROM {table}"))
        .fetch_one(pool)
        .await
        .map_err(|e| e.to_string())?;
    Ok(n)
}

async fn bench(label: &str, url: &str, accounts: usize) -> Res<()> {
    let pool = store::connect(url).await?;
    store::migrate(&pool).await?;
    let run_on = month_start(day_of(store::now()));
    let t0 = Instant::now();
    seed(&pool, accounts, run_on).await?;
    let seeded = t0.elapsed();
    for attempt in ["first run", "second run"] {
        let t = Instant::now();
        let id = run::start(
            &pool,
            &tollgate_control_plane::domain::audit::Actor::cli(),
            run_on,
        )
        .await
        .map_err(|e| format!("{e:?}"))?;
        scheduler::bill_then_charge(&pool, &id, run_on, run::batch_size())
            .await
            .map_err(|e| format!("{e:?}"))?;
        let took = t.elapsed();
        let invoices = count(&pool, "invoices").await?;
        let lines = count(&pool, "invoice_lines").await?;
        let emails = count(&pool, "email_outbox").await?;
        println!(
            "{label:<10} {attempt:<10} accounts={accounts} seconds={:.1} accounts/s={:.0} invoices={invoices} lines={lines} emails_queued={emails} (seeded in {:.1}s)",
            took.as_secs_f64(),
            accounts as f64 / took.as_secs_f64(),
            seeded.as_secs_f64(),
        );
        if invoices != accounts as i64 || lines != (accounts * (1 + METRICS)) as i64 {
            return Err(format!(
                "{label}: expected {accounts} invoices with {} lines each",
                1 + METRICS
            ));
        }
    }
    pool.close().await;
    Ok(())
}

async fn main_async() -> Res<()> {
    if std::env::var("TOLLGATE_LOG").is_ok() {
        tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::from_env("TOLLGATE_LOG"))
            .init();
    }
    let accounts: usize = arg("--accounts")
        .and_then(|a| a.parse().ok())
        .unwrap_or(100_000);
    let which = arg("--db").unwrap_or_else(|| "both".into());
    if which == "both" {
        // One database per process, as `tollgate serve` runs: the store's backend is process-wide
        // (set by the first `store::connect`), so PostgreSQL after SQLite in one process would get
        // SQLite's `BEGIN IMMEDIATE`.
        return ["sqlite", "postgres"]
            .into_iter()
            .try_for_each(in_own_process);
    }
    println!("billing run benchmark: {accounts} accounts × {METRICS} metrics, batch {} accounts/transaction", run::batch_size());
    if which == "sqlite" || which == "both" {
        let dir =
            std::env::temp_dir().join(format!("tollgate-bench-billing-{}", std::process::id()));
        std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
        let url = format!("sqlite://{}?mode=rwc", dir.join("bench.db").display());
        let r = bench("sqlite", &url, accounts).await;
        let _ = std::fs::remove_dir_all(&dir);
        r?;
    }
    if which == "postgres" || which == "both" {
        let admin = std::env::var("TOLLGATE_BENCH_POSTGRES_URL")
            .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into());
        let name = format!("tg_bench_{}", std::process::id());
        let admin_pool = store::connect(&admin).await?;
        exec(&admin_pool, &format!("CREATE DATABASE {name}")).await?;
        let (base, _) = admin.rsplit_once('/').ok_or("bad PostgreSQL URL")?;
        let r = bench("postgres", &format!("{base}/{name}"), accounts).await;
        exec(
            &admin_pool,
            &format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"),
        )
        .await?;
        r?;
    }
    Ok(())
}

/// This benchmark again, for one database, in a child process; its output is this one's.
fn in_own_process(db: &str) -> Res<()> {
    let exe = std::env::current_exe().map_err(|e| e.to_string())?;
    // Every argument but a `--db` pair (an explicit `--db both` would start this again).
    let given: Vec<String> = std::env::args().skip(1).collect();
    let mut args = Vec::with_capacity(given.len() + 2);
    let mut rest = given.into_iter();
    while let Some(a) = rest.next() {
        if a == "--db" {
            rest.next();
        } else {
            args.push(a);
        }
    }
    args.extend(["--db".to_string(), db.to_string()]);
    let status = std::process::Command::new(exe)
        .args(&args)
        .status()
        .map_err(|e| format!("cannot start the {db} benchmark: {e}"))?;
    if status.success() {
        Ok(())
    } else {
        Err(format!("the {db} benchmark failed ({status})"))
    }
}

fn main() {
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("cannot start tokio: {e}");
            std::process::exit(1);
        }
    };
    if let Err(e) = rt.block_on(main_async()) {
        eprintln!("error: {e}");
        std::process::exit(1);
    }
}
