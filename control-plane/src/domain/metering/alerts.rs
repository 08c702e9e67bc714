//! Usage alerts: when an application's metered usage in the current window of a limit crosses a
//! threshold (a percentage of the limit), the account gets one email, one `usage.threshold_reached`
//! webhook event and a banner in the developer portal — once per (application, metric, period,
//! window start, threshold).
//!
//! Detection is a background pass ([`run_detector`]), not part of report ingestion: ingestion
//! stays the few set-based statements it was (see `reports.rs`), and the pass reads, per limited
//! period, only the (application, metric) pairs with a counter in the current or previous hour —
//! those that may have moved since the last pass — with one statement per period. A crossing is
//! claimed by inserting its `usage_alerts` row (unique key above) in the transaction that
//! enqueues its email and event, so two replicas or two passes never alert it twice.

use std::time::Duration;

use serde::{Deserialize, Serialize};
use tollgate_protocol::Period;

use crate::domain::audit::{self, Actor, Changes, Object};
use crate::domain::billing::outbox::{self as email_outbox, Email, EmailKind};
use crate::domain::billing::settings;
use crate::domain::gateway::snapshot::stored_period;
use crate::domain::webhooks::{self, events::UsageThresholdData, Event};
use crate::domain::{DomainError, DomainResult};
use crate::secrets::new_id;
use crate::store::{self, now, Pool, Tx};

/// The thresholds of a plan without its own (percent of each limit).
pub const DEFAULT_THRESHOLDS: [i64; 4] = [50, 80, 90, 100];
/// Most thresholds one plan or application may set.
pub const MAX_THRESHOLDS: usize = 10;
/// Highest threshold: 100 %. The gateways enforce limits, so usage passes a limit only by a
/// fleet's slack (instances x rate x (flush + poll)); an "overage" threshold would alert on that
/// noise, not on a customer's behaviour.
pub const MAX_THRESHOLD_PERCENT: i64 = 100;
/// Pause between detector passes. Gateways flush every second by default (the filter's
/// `flush_interval_ms`): a crossing reaches the control plane within one flush interval and is
/// detected within one pass after that, so within two flush intervals. An idle pass is one
/// indexed query per alerted period (6 a second per replica).
pub const PASS_INTERVAL: Duration = Duration::from_secs(1);
/// The shortest period alerted on. Minute limits reset every minute: an alert per minute window
/// would be an email a minute, so only periods of an hour or more alert.
pub const SHORTEST_ALERTED_PERIOD: Period = Period::Hour;
/// Most crossings one pass alerts per period; the rest wait for the next pass (bounded work per
/// transaction batch, and a bounded burst of email).
pub const MAX_CROSSINGS_PER_PASS: usize = 1_000;
/// How many of an application's latest alerts the portal banner considers.
pub const BANNER_ALERTS: i64 = 20;

/// `alert_thresholds` of a plan or application.
#[derive(Clone, Debug, Serialize, utoipa::ToSchema)]
pub struct AlertThresholds {
    /// Always `"alert_thresholds"`.
    pub object: &'static str,
    /// Percent of each limit, ascending. `[]`: no alerts.
    pub thresholds: Vec<i64>,
    /// Where they come from: `default` (the plan has none of its own), `plan`, or `application`
    /// (the application's override).
    pub source: ThresholdSource,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ThresholdSource {
    Default,
    Plan,
    Application,
}

/// `PUT …/alert_thresholds`.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ThresholdsInput {
    /// Integers 1-100, distinct, at most 10; `[]` turns alerts off.
    pub thresholds: Vec<i64>,
}

/// Checks and sorts thresholds.
pub fn check_thresholds(input: &[i64]) -> DomainResult<Vec<i64>> {
    if input.len() > MAX_THRESHOLDS {
        return Err(DomainError::invalid(
            "thresholds",
            "too_many_thresholds",
            format!("at most {MAX_THRESHOLDS}"),
        ));
    }
    let mut out = input.to_vec();
    if let Some(bad) = out
        .iter()
        .position(|t| !(1..=MAX_THRESHOLD_PERCENT).contains(t))
    {
        return Err(DomainError::invalid(
            format!("thresholds[{bad}]"),
            "invalid_threshold",
            format!("an integer percentage from 1 to {MAX_THRESHOLD_PERCENT}"),
        ));
    }
    out.sort_unstable();
    out.dedup();
    if out.len() != input.len() {
        return Err(DomainError::invalid(
            "thresholds",
            "duplicate_threshold",
            "each threshold once",
        ));
    }
    Ok(out)
}

fn parse_stored(json: &str) -> DomainResult<Vec<i64>> {
    serde_json::from_str(json)
        .map_err(|e| DomainError::Internal(format!("stored alert thresholds unreadable: {e}")))
}

fn to_json(thresholds: &[i64]) -> DomainResult<String> {
    serde_json::to_string(thresholds).map_err(|e| DomainError::Internal(e.to_string()))
}

/// The thresholds plan `plan_id` alerts on.
pub async fn of_plan(pool: &Pool, plan_id: &str) -> DomainResult<AlertThresholds> {
    of_plan_on(&mut *pool.acquire().await?, plan_id).await
}

/// [`of_plan`] on one connection (or inside a write's transaction: the audit log's before and
/// after images).
async fn of_plan_on(
    conn: &mut sqlx::AnyConnection,
    plan_id: &str,
) -> DomainResult<AlertThresholds> {
    crate::domain::catalog::plans::find_plan(&mut *conn, plan_id).await?;
    let own: Option<(String,)> =
        sqlx::query_as("SELECT thresholds FROM plan_alert_thresholds WHERE plan_id = $1")
            .bind(plan_id)
            .fetch_optional(&mut *conn)
            .await?;
    Ok(match own {
        Some((json,)) => AlertThresholds {
            object: "alert_thresholds",
            thresholds: parse_stored(&json)?,
            source: ThresholdSource::Plan,
        },
        None => AlertThresholds {
            object: "alert_thresholds",
            thresholds: DEFAULT_THRESHOLDS.to_vec(),
            source: ThresholdSource::Default,
        },
    })
}

/// The thresholds application `id` alerts on: its override, else its plan's.
pub async fn of_application(pool: &Pool, id: &str) -> DomainResult<AlertThresholds> {
    of_application_on(&mut *pool.acquire().await?, id).await
}

/// [`of_application`] on one connection (see [`of_plan_on`]).
async fn of_application_on(
    conn: &mut sqlx::AnyConnection,
    id: &str,
) -> DomainResult<AlertThresholds> {
    let app: Option<(String, Option<String>)> = sqlx::query_as(
        "SELECT a.plan_id, o.thresholds FROM applications a \
         LEFT JOIN application_alert_thresholds o ON o.application_id = a.id WHERE a.id = $1",
    )
    .bind(id)
    .fetch_optional(&mut *conn)
    .await?;
    match app {
        None => Err(DomainError::not_found("application", id)),
        Some((_, Some(json))) => Ok(AlertThresholds {
            object: "alert_thresholds",
            thresholds: parse_stored(&json)?,
            source: ThresholdSource::Application,
        }),
        Some((plan_id, None)) => of_plan_on(conn, &plan_id).await,
    }
}

/// Whose own threshold set a write changes.
#[derive(Clone, Copy)]
enum SetOf {
    Plan,
    Application,
}

impl SetOf {
    /// The owner's table (its row is locked for the write).
    fn owner_table(self) -> &'static str {
        match self {
            SetOf::Plan => "plans",
            SetOf::Application => "applications",
        }
    }

    /// The table of own sets, also the audit log's `object_type` (its id: the owner's).
    fn table(self) -> &'static str {
        match self {
            SetOf::Plan => "plan_alert_thresholds",
            SetOf::Application => "application_alert_thresholds",
        }
    }

    fn key(self) -> &'static str {
        match self {
            SetOf::Plan => "plan_id",
            SetOf::Application => "application_id",
        }
    }

    async fn read(self, conn: &mut sqlx::AnyConnection, id: &str) -> DomainResult<AlertThresholds> {
        match self {
            SetOf::Plan => of_plan_on(conn, id).await,
            SetOf::Application => of_application_on(conn, id).await,
        }
    }
}

/// Sets (`Some`) or drops (`None`: the defaults, or the plan's, apply again) the own thresholds
/// of `id`, with the audit event (`<table>.updated` or `.reset`, the sets before and after) in
/// the same transaction. The owner's row is locked first (PostgreSQL; SQLite's write transaction
/// holds the lock already): two writes of one set run one after the other, and each before image
/// is what the other left.
async fn write_set(
    pool: &Pool,
    actor: &Actor,
    of: SetOf,
    id: &str,
    thresholds: Option<&[i64]>,
) -> DomainResult<AlertThresholds> {
    let mut tx = store::begin_write(pool).await?;
    let lock = format!(
        "SELECT id FROM {} WHERE id = $1{}",
        of.owner_table(),
        store::for_update()
    );
    sqlx::query(&lock).bind(id).fetch_optional(&mut *tx).await?;
    let before = of.read(&mut tx, id).await?;
    let (table, key) = (of.table(), of.key());
    let verb = match thresholds {
        Some(thresholds) => {
            sqlx::query(&format!(
                "INSERT INTO {table} ({key}, thresholds, updated_at) VALUES ($1, $2, $3) \
                 ON CONFLICT ({key}) DO UPDATE SET thresholds = excluded.thresholds, updated_at = excluded.updated_at"
            ))
            .bind(id)
            .bind(to_json(thresholds)?)
            .bind(now())
            .execute(&mut *tx)
            .await?;
            "updated"
        }
        None => {
            sqlx::query(&format!("DELETE FROM {table} WHERE {key} = $1"))
                .bind(id)
                .execute(&mut *tx)
                .await?;
            "reset"
        }
    };
    let after = of.read(&mut tx, id).await?;
    let changes = Changes::between(Some(&before), Some(&after))?;
    let object = Object { kind: table, id };
    audit::record(&mut tx, actor, &format!("{table}.{verb}"), object, &changes).await?;
    tx.commit().await?;
    Ok(after)
}

/// Sets plan `plan_id`'s thresholds.
pub async fn set_for_plan(
    pool: &Pool,
    actor: &Actor,
    plan_id: &str,
    input: &ThresholdsInput,
) -> DomainResult<AlertThresholds> {
    let thresholds = check_thresholds(&input.thresholds)?;
    write_set(pool, actor, SetOf::Plan, plan_id, Some(&thresholds)).await
}

/// Drops plan `plan_id`'s own thresholds (the defaults apply again).
pub async fn reset_plan(
    pool: &Pool,
    actor: &Actor,
    plan_id: &str,
) -> DomainResult<AlertThresholds> {
    write_set(pool, actor, SetOf::Plan, plan_id, None).await
}

/// Sets application `id`'s override.
pub async fn set_for_application(
    pool: &Pool,
    actor: &Actor,
    id: &str,
    input: &ThresholdsInput,
) -> DomainResult<AlertThresholds> {
    let thresholds = check_thresholds(&input.thresholds)?;
    write_set(pool, actor, SetOf::Application, id, Some(&thresholds)).await
}

/// Drops application `id`'s override (its plan's thresholds apply again).
pub async fn reset_application(
    pool: &Pool,
    actor: &Actor,
    id: &str,
) -> DomainResult<AlertThresholds> {
    write_set(pool, actor, SetOf::Application, id, None).await
}

/// Runs [`pass`] every [`PASS_INTERVAL`] until the process ends.
pub async fn run_detector(pool: Pool) {
    loop {
        tokio::time::sleep(PASS_INTERVAL).await;
        let started = std::time::Instant::now();
        match pass(&pool, now()).await {
            Err(e) => tracing::warn!("usage alerts: {e:?}"),
            // A pass longer than the interval delays alerts past two flush intervals: the sign
            // that the active pairs outgrew one pass a second (docs/operations.md).
            Ok(alerted) if started.elapsed() > PASS_INTERVAL => tracing::warn!(
                elapsed_ms = started.elapsed().as_millis() as u64,
                alerted,
                "usage alert pass slower than its interval"
            ),
            Ok(_) => {}
        }
    }
}

/// A pair whose usage in the window may have crossed a threshold, with what it takes to decide.
#[derive(sqlx::FromRow)]
struct Candidate {
    application_id: String,
    account_id: String,
    metric_id: String,
    metric: String,
    limit_value: i64,
    plan_thresholds: Option<String>,
    own_thresholds: Option<String>,
    used: Option<i64>,
    alerted: Option<i64>,
}

/// The thresholds `c` newly crossed in its window: above the highest already alerted, at or below
/// its usage. Integer arithmetic in i128 (usage up to 8,784 x 2^48 times 100 fits easily).
fn newly_crossed(thresholds: &[i64], used: i64, limit: i64, alerted: Option<i64>) -> Vec<i64> {
    if limit <= 0 {
        return Vec::new();
    }
    thresholds
        .iter()
        .copied()
        .filter(|&t| {
            i128::from(used) * 100 >= i128::from(limit) * i128::from(t)
                && alerted.is_none_or(|a| t > a)
        })
        .collect()
}

/// One detection pass at time `t`: per alerted period, one query for the pairs with recent usage
/// and a limit of that period, then a transaction per pair with a new crossing. Returns how many
/// crossings it alerted.
pub async fn pass(pool: &Pool, t: i64) -> DomainResult<usize> {
    // Counters of the current or previous hour moved since the last pass (a pass is seconds
    // apart). A report of an older hour (a gateway catching up after an outage) alerts when the
    // pair next has usage in a recent hour.
    let recent = t - t.rem_euclid(3600) - 3600;
    let mut alerted = 0;
    let alerted_periods = Period::ALL
        .into_iter()
        .filter(|p| *p >= SHORTEST_ALERTED_PERIOD);
    for period in alerted_periods {
        let window = tollgate_rules::periods::window(period, t);
        let candidates: Vec<Candidate> = sqlx::query_as(
            "SELECT a.id AS application_id, a.account_id, l.metric_id, m.name AS metric, l.limit_value, \
             pt.thresholds AS plan_thresholds, o.thresholds AS own_thresholds, \
             (SELECT CAST(SUM(u.value) AS BIGINT) FROM usage_counters u \
              WHERE u.application_id = a.id AND u.metric_id = l.metric_id AND u.bucket_start >= $2) AS used, \
             (SELECT MAX(ua.threshold) FROM usage_alerts ua WHERE ua.application_id = a.id \
              AND ua.metric_id = l.metric_id AND ua.period = $1 AND ua.window_start = $2) AS alerted \
             FROM (SELECT DISTINCT application_id, metric_id FROM usage_counters WHERE bucket_start >= $3) c \
             JOIN applications a ON a.id = c.application_id \
             JOIN plan_limits l ON l.plan_id = a.plan_id AND l.metric_id = c.metric_id AND l.period = $1 \
             JOIN metrics m ON m.id = l.metric_id \
             LEFT JOIN plan_alert_thresholds pt ON pt.plan_id = a.plan_id \
             LEFT JOIN application_alert_thresholds o ON o.application_id = a.id \
             WHERE l.limit_value > 0",
        )
        .bind(period.as_str())
        .bind(window.start)
        .bind(recent.max(window.start))
        .fetch_all(pool)
        .await?;
        for c in candidates {
            if alerted >= MAX_CROSSINGS_PER_PASS {
                return Ok(alerted);
            }
            let thresholds = match c.own_thresholds.as_deref().or(c.plan_thresholds.as_deref()) {
                Some(json) => parse_stored(json)?,
                None => DEFAULT_THRESHOLDS.to_vec(),
            };
            let used = c.used.unwrap_or(0);
            let crossed = newly_crossed(&thresholds, used, c.limit_value, c.alerted);
            if crossed.is_empty() {
                continue;
            }
            if alert(pool, &c, period, window.start, used, &crossed, t).await? {
                alerted += 1;
            }
        }
    }
    Ok(alerted)
}

/// Claims `crossed` for `c`'s window and, if this pass claimed any, enqueues one email and one
/// event for the highest it claimed (a jump past several thresholds between two passes alerts
/// once, for the highest), all in one transaction. Whether it alerted.
async fn alert(
    pool: &Pool,
    c: &Candidate,
    period: Period,
    window_start: i64,
    used: i64,
    crossed: &[i64],
    t: i64,
) -> DomainResult<bool> {
    let mut tx = store::begin_write(pool).await?;
    let mut claimed = Vec::new();
    for &threshold in crossed {
        let id = new_id("ua");
        let done = sqlx::query(
            "INSERT INTO usage_alerts (id, application_id, account_id, metric_id, period, window_start, threshold, limit_value, usage_value, created_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10) \
             ON CONFLICT (application_id, metric_id, period, window_start, threshold) DO NOTHING",
        )
        .bind(&id)
        .bind(&c.application_id)
        .bind(&c.account_id)
        .bind(&c.metric_id)
        .bind(period.as_str())
        .bind(window_start)
        .bind(threshold)
        .bind(c.limit_value)
        .bind(used)
        .bind(t)
        .execute(&mut *tx)
        .await?;
        if done.rows_affected() == 1 {
            claimed.push((threshold, id));
        }
    }
    let Some((highest, alert_id)) = claimed.pop() else {
        tx.rollback().await?;
        return Ok(false);
    };
    let data = UsageThresholdData {
        application_id: c.application_id.clone(),
        account_id: c.account_id.clone(),
        metric: c.metric.clone(),
        period: period.as_str().to_string(),
        window_start,
        limit: c.limit_value,
        threshold_percent: highest,
        usage: used,
    };
    enqueue_email(&mut tx, &alert_id, &data, t).await?;
    webhooks::enqueue(&mut tx, Event::UsageThresholdReached(data)).await?;
    tx.commit().await?;
    Ok(true)
}

#[derive(sqlx::FromRow)]
struct Recipient {
    account_name: String,
    email: String,
    application_name: String,
}

/// The account's email for crossing `d` (claimed as row `alert_id`), from the billing settings' `usage_threshold_reached`
/// text.
async fn enqueue_email(
    tx: &mut Tx,
    alert_id: &str,
    d: &UsageThresholdData,
    t: i64,
) -> DomainResult<()> {
    let to: Option<Recipient> = sqlx::query_as(
        "SELECT ac.name AS account_name, ac.email, a.name AS application_name \
         FROM applications a JOIN accounts ac ON ac.id = a.account_id WHERE a.id = $1",
    )
    .bind(&d.application_id)
    .fetch_optional(&mut **tx)
    .await?;
    let Some(to) = to else { return Ok(()) };
    if to.email.is_empty() {
        return Ok(());
    }
    let settings = settings::load_tx(tx).await?;
    let text = &settings.email_texts.usage_threshold_reached;
    let render = |template: &str| render_text(template, d, &to.account_name, &to.application_name);
    email_outbox::enqueue(
        tx,
        &Email {
            // The crossing's row, claimed once in this transaction.
            dedupe_key: format!("usage_alert:{alert_id}"),
            kind: EmailKind::UsageThresholdReached,
            recipient: to.email,
            subject: render(&text.subject),
            body: render(&text.body),
            invoice_id: None,
        },
        t,
    )
    .await
}

/// Fills the placeholders of the usage alert email: `{account_name}`, `{application_name}`,
/// `{metric}`, `{period}`, `{threshold}` (percent, without the sign), `{usage}`, `{limit}` and
/// `{window_start}` (`YYYY-MM-DD HH:MM UTC`).
pub fn render_text(
    template: &str,
    d: &UsageThresholdData,
    account_name: &str,
    application_name: &str,
) -> String {
    let start = webhooks::events::rfc3339(d.window_start);
    let start = format!("{} {} UTC", &start[..10], &start[11..16]);
    template
        .replace("{account_name}", account_name)
        .replace("{application_name}", application_name)
        .replace("{metric}", &d.metric)
        .replace("{period}", &d.period)
        .replace("{threshold}", &d.threshold_percent.to_string())
        .replace("{usage}", &d.usage.to_string())
        .replace("{limit}", &d.limit.to_string())
        .replace("{window_start}", &start)
}

/// A crossing of a current window, for the portal banner.
#[derive(Clone, Debug, PartialEq, Eq, sqlx::FromRow)]
pub struct CurrentAlert {
    pub metric: String,
    pub period: String,
    pub window_start: i64,
    pub threshold: i64,
    pub limit_value: i64,
    pub usage_value: i64,
    pub created_at: i64,
}

/// The highest crossing per (metric, period) of application `id` in the current windows at `t`,
/// among its latest [`BANNER_ALERTS`] alerts.
pub async fn current(pool: &Pool, id: &str, t: i64) -> DomainResult<Vec<CurrentAlert>> {
    let rows: Vec<CurrentAlert> = sqlx::query_as(
        "SELECT m.name AS metric, ua.period, ua.window_start, ua.threshold, ua.limit_value, ua.usage_value, ua.created_at \
         FROM usage_alerts ua JOIN metrics m ON m.id = ua.metric_id \
         WHERE ua.application_id = $1 ORDER BY ua.created_at DESC, ua.threshold DESC LIMIT $2",
    )
    .bind(id)
    .bind(BANNER_ALERTS)
    .fetch_all(pool)
    .await?;
    let mut out: Vec<CurrentAlert> = Vec::new();
    for r in rows {
        let period = stored_period(&r.period)?;
        if tollgate_rules::periods::window(period, t).start != r.window_start {
            continue;
        }
        match out
            .iter_mut()
            .find(|o| o.metric == r.metric && o.period == r.period)
        {
            Some(o) if o.threshold >= r.threshold => {}
            Some(o) => *o = r,
            None => out.push(r),
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn thresholds_are_checked_and_sorted() {
        assert_eq!(check_thresholds(&[90, 50]).unwrap(), vec![50, 90]);
        assert!(check_thresholds(&[]).unwrap().is_empty());
        for bad in [&[0][..], &[101], &[50, 50], &[-1]] {
            assert!(check_thresholds(bad).is_err(), "{bad:?}");
        }
        assert!(check_thresholds(&(1..=11).collect::<Vec<_>>()).is_err());
    }

    #[test]
    fn crossings_are_those_above_the_last_alerted() {
        let d = DEFAULT_THRESHOLDS;
        assert_eq!(newly_crossed(&d, 49, 100, None), Vec::<i64>::new());
        assert_eq!(newly_crossed(&d, 50, 100, None), vec![50]);
        assert_eq!(newly_crossed(&d, 95, 100, Some(50)), vec![80, 90]);
        assert_eq!(newly_crossed(&d, 150, 100, Some(100)), Vec::<i64>::new());
        // 1 of 3 is 33 %; 2 of 3 is 66 %: 50 % is crossed at 2.
        assert_eq!(newly_crossed(&d, 1, 3, None), Vec::<i64>::new());
        assert_eq!(newly_crossed(&d, 2, 3, None), vec![50]);
        assert_eq!(newly_crossed(&d, 5, 0, None), Vec::<i64>::new());
        assert_eq!(newly_crossed(&d, i64::MAX, i64::MAX, None), d.to_vec());
    }
}
