//! The webhook sender inside `tollgate serve`: claims due deliveries, POSTs them signed, records
//! each attempt, and schedules retries (at-least-once, the same `webhook-id` on every attempt).
//!
//! Claims: a delivery is claimed by one conditional UPDATE (`delivering`, attempt count + 1, and
//! `next_attempt_at` moved to the lease's end, [`DELIVERY_LEASE_MS`]); only one replica's UPDATE
//! matches. The lease's end is the claim's fencing token: a claim needs `next_attempt_at` to have
//! passed and sets it to now + the lease, so each claim of a delivery has a later end than every
//! claim before it, whatever was reset in between (a replay sets the attempt count back to 0, so
//! the count alone would let an old claim match a new one). The outcome is written only while
//! the row still holds this claim's state, count and lease end, so a sender that outlived its
//! lease changes nothing. A process killed mid-delivery leaves the row `delivering`; once the
//! lease ends any sender takes it again (the receiver may then get that attempt twice, with the
//! same `webhook-id`, which is what lets it drop the copy).
//!
//! Outcome: a 2xx answer delivers; `410 Gone` disables the endpoint at once (its owner says it is
//! no more; the delivery waits, parked, with the endpoint's other pending ones) and emails the
//! admin; anything else (another status, a timeout, a refused connection, an address the
//! outbound rule refuses, a redirect, which is never followed) fails the attempt, and the
//! delivery is retried per the [`RetrySchedule`] until its window is spent; then it is `failed`,
//! and if the endpoint accepted nothing during that whole window the endpoint is disabled and
//! the admin is emailed (`TOLLGATE_ADMIN_EMAIL`).
//!
//! Fairness: a slow receiver holds a sender slot for up to [`DELIVERY_TIMEOUT`]. At most
//! [`MAX_IN_FLIGHT_PER_ENDPOINT`] deliveries of one account's endpoint
//! ([`MAX_IN_FLIGHT_PER_ADMIN_ENDPOINT`] of one of the admin's) and [`MAX_IN_FLIGHT_PER_ACCOUNT`]
//! of one account's endpoints are under way at once (across replicas), so an endpoint that never
//! answers, or an account with many, cannot take the slots the others need. A pass shares free
//! slots out by turns (every endpoint's first due delivery before any second); an attempt that
//! ends hands its slot to its endpoint's next due delivery while slots are free, and gives it
//! back to the next pass when they are not.
//!
//! Ordering: deliveries to one endpoint run concurrently and retries interleave with newer
//! events; receivers must not rely on order (each body carries its `timestamp`).

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::{Notify, Semaphore};

use super::endpoints::{previous_sealed_at, sealed_at, DisabledReason, PARKED_MS};
use super::outbox::DeliveryState;
use super::signing::{secret_bytes, sign, RetrySchedule};
use crate::domain::billing::outbox::{self as email, Email, EmailKind};
use crate::domain::{DomainError, DomainResult};
use crate::secrets::{new_id, open};
use crate::store::{now, now_ms, Pool};
use crate::telemetry::{DeliveryResult, Outbox};

/// How long one attempt may take, connection to last byte read.
pub const DELIVERY_TIMEOUT: Duration = Duration::from_secs(10);
/// How long connecting may take (within [`DELIVERY_TIMEOUT`]).
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// How long a claimed delivery is reserved for its sender: longer than an attempt can take.
pub const DELIVERY_LEASE_MS: i64 = 30_000;
const _: () = assert!(DELIVERY_LEASE_MS > 2 * DELIVERY_TIMEOUT.as_millis() as i64);
/// Bytes of a receiver's answer read (the rest is dropped unread): only the status matters, an
/// excerpt goes into the log.
pub const MAX_RESPONSE_BODY_BYTES: usize = 64 * 1024;
/// Characters of an error (or of a non-2xx answer's body) kept in the delivery log.
pub const MAX_ERROR_CHARS: usize = 500;
/// Due deliveries read per pass.
pub const BATCH: i64 = 100;
/// Attempts in flight at once in one process.
pub const MAX_CONCURRENT_DELIVERIES: usize = 32;
/// Attempts in flight at once for one endpoint of an account, across replicas (see `pass`).
pub const MAX_IN_FLIGHT_PER_ENDPOINT: i64 = 4;
/// Attempts in flight at once for one endpoint of the admin's, across replicas: the provider's
/// own systems, which receive every account's events (a billing run's `invoice.issued` each), get
/// more. One endpoint's throughput is its in-flight bound over the receiver's latency.
pub const MAX_IN_FLIGHT_PER_ADMIN_ENDPOINT: i64 = 16;
const _: () = assert!(MAX_IN_FLIGHT_PER_ADMIN_ENDPOINT < MAX_CONCURRENT_DELIVERIES as i64);
/// Attempts in flight at once for all the endpoints of one account, across replicas (the admin's
/// endpoints are bounded only per endpoint): an account registering many endpoints that never
/// answer holds at most this many of a process's [`MAX_CONCURRENT_DELIVERIES`] slots.
pub const MAX_IN_FLIGHT_PER_ACCOUNT: i64 = 8;
const _: () = assert!(MAX_IN_FLIGHT_PER_ACCOUNT < MAX_CONCURRENT_DELIVERIES as i64);
/// How often [`claim_next`] looks again after another attempt took the row it found.
const CLAIM_NEXT_TRIES: usize = 3;
/// Pause between passes when nothing is due.
pub const IDLE_POLL: Duration = Duration::from_millis(500);

/// What the sender needs beyond the pool.
#[derive(Clone, Debug)]
pub struct SenderSettings {
    pub master_key: Option<[u8; 32]>,
    pub schedule: RetrySchedule,
    /// `TOLLGATE_ADMIN_EMAIL`: who hears of a disabled endpoint. `None`: only the log does.
    pub admin_email: Option<String>,
    /// How long one attempt may take: [`DELIVERY_TIMEOUT`] (tests hold a receiver longer).
    pub delivery_timeout: Duration,
}

/// A claimed delivery, with what sending it needs.
#[derive(sqlx::FromRow)]
struct Job {
    id: String,
    event_id: String,
    payload: String,
    endpoint_id: String,
    url: String,
    secret_sealed: String,
    previous_secret_sealed: Option<String>,
    previous_secret_expires_at: Option<i64>,
    attempts: i64,
    window_started_at: i64,
    /// The end of this claim's lease: its fencing token (see the module's doc).
    lease_until: i64,
}

/// How one attempt went.
struct Outcome {
    status: Option<u16>,
    latency_ms: i64,
    error: Option<String>,
}

impl Outcome {
    fn delivered(&self) -> bool {
        self.status.is_some_and(|s| (200..300).contains(&s)) && self.error.is_none()
    }

    /// `410 Gone`: the endpoint's owner took it down for good (stop sending, as Svix does).
    fn gone(&self) -> bool {
        self.status == Some(410)
    }
}

/// Sends due deliveries until the process stops. Errors are logged and the pass retried.
pub async fn run_sender(pool: Pool, settings: SenderSettings) {
    // No proxy from the environment (HTTPS_PROXY): a proxy resolves the name itself, past the
    // guarded resolver, and these URLs come from developers. (Payment providers, whose URLs only
    // the admin sets, keep an operator's egress proxy.)
    let client = match crate::outbound::http_client()
        .no_proxy()
        .timeout(settings.delivery_timeout)
        .connect_timeout(CONNECT_TIMEOUT)
        .user_agent(concat!("Tollgate-Webhooks/", env!("CARGO_PKG_VERSION")))
        .build()
    {
        Ok(c) => c,
        Err(e) => {
            tracing::error!("webhooks: cannot build the HTTP client ({e}); nothing is delivered");
            return;
        }
    };
    let settings = Arc::new(settings);
    let slots = Arc::new(Semaphore::new(MAX_CONCURRENT_DELIVERIES));
    let ended = Arc::new(Notify::new());
    loop {
        match pass(&pool, &client, &settings, &slots, &ended).await {
            Ok(n) if n > 0 => continue,
            Ok(_) => {}
            Err(e) => tracing::warn!("webhook sender: {e:?}"),
        }
        // Nothing could be claimed: what is due may be held back by the in-flight caps, so the
        // next pass comes as soon as an attempt ends (a permit stored by `notify_one` if one
        // ended meanwhile), or after IDLE_POLL for new and retried deliveries. Without the
        // wake-up, one endpoint's backlog went out 4 attempts per IDLE_POLL.
        tokio::select! {
            _ = ended.notified() => {}
            _ = tokio::time::sleep(IDLE_POLL) => {}
        }
    }
}

/// One pass: claims due deliveries (up to [`BATCH`]) as slots free up and starts each; returns
/// how many it claimed.
async fn pass(
    pool: &Pool,
    client: &reqwest::Client,
    settings: &Arc<SenderSettings>,
    slots: &Arc<Semaphore>,
    ended: &Arc<Notify>,
) -> DomainResult<usize> {
    // Fair across endpoints and accounts: at most MAX_IN_FLIGHT_PER_ENDPOINT of one endpoint's
    // deliveries (MAX_IN_FLIGHT_PER_ADMIN_ENDPOINT for the admin's endpoints) and
    // MAX_IN_FLIGHT_PER_ACCOUNT of one account's are under way at once (counting
    // the live leases of every replica), and a pass takes the first due delivery of every
    // endpoint before the second of any. An endpoint with a slow receiver and a deep backlog (an
    // account's test events to a tarpit), or an account with many such endpoints, cannot fill
    // the sender's slots and starve the others. The in-flight counts are read once per pass from
    // the `(state, next_attempt_at)` index: only the rows under a live lease.
    let due: Vec<String> = sqlx::query_scalar(
        "SELECT id FROM (\
           SELECT r.*, ROW_NUMBER() OVER (PARTITION BY r.owner ORDER BY r.turn, r.next_attempt_at, r.id) AS owner_turn FROM (\
             SELECT d.id, d.next_attempt_at, e.account_id AS owner, \
                    ROW_NUMBER() OVER (PARTITION BY d.endpoint_id ORDER BY d.next_attempt_at, d.id) AS turn, \
                    COALESCE(b.n, 0) AS busy, COALESCE(ob.n, 0) AS owner_busy \
             FROM webhook_deliveries d JOIN webhook_endpoints e ON e.id = d.endpoint_id \
             LEFT JOIN (SELECT endpoint_id, COUNT(*) AS n FROM webhook_deliveries \
                        WHERE state = 'delivering' AND next_attempt_at > $1 GROUP BY endpoint_id) b \
                    ON b.endpoint_id = d.endpoint_id \
             LEFT JOIN (SELECT x.account_id, COUNT(*) AS n FROM webhook_deliveries f \
                        JOIN webhook_endpoints x ON x.id = f.endpoint_id \
                        WHERE f.state = 'delivering' AND f.next_attempt_at > $1 AND x.account_id IS NOT NULL \
                        GROUP BY x.account_id) ob \
                    ON ob.account_id = e.account_id \
             WHERE d.state IN ('pending', 'delivering') AND d.next_attempt_at <= $1 AND e.state = 'enabled') r \
           WHERE r.turn + r.busy <= CASE WHEN r.owner IS NULL THEN $5 ELSE $3 END) o \
         WHERE o.owner IS NULL OR o.owner_turn + o.owner_busy <= $4 \
         ORDER BY o.turn, o.next_attempt_at, o.id LIMIT $2",
    )
    .bind(now_ms())
    .bind(BATCH)
    .bind(MAX_IN_FLIGHT_PER_ENDPOINT)
    .bind(MAX_IN_FLIGHT_PER_ACCOUNT)
    .bind(MAX_IN_FLIGHT_PER_ADMIN_ENDPOINT)
    .fetch_all(pool)
    .await?;
    let mut claimed = 0;
    for id in due {
        let Ok(slot) = slots.clone().acquire_owned().await else {
            break;
        };
        let Some(job) = claim(pool, &id).await? else {
            continue;
        };
        claimed += 1;
        let (pool, client, settings, ended) = (
            pool.clone(),
            client.clone(),
            settings.clone(),
            ended.clone(),
        );
        let slots = slots.clone();
        tokio::spawn(async move {
            let mut job = job;
            loop {
                let outcome = attempt(&client, &settings, &job).await;
                if let Err(e) = record(&pool, &settings, &job, &outcome).await {
                    tracing::warn!(delivery = job.id, "webhook outcome not recorded: {e:?}");
                }
                // The endpoint's next due delivery takes this attempt's place (its endpoint's
                // and account's in-flight counts stay as they were) while a slot is free, so
                // nothing waits for this one. When every slot is taken the slot goes back, and
                // the next pass shares it out by turns again.
                if slots.available_permits() == 0 {
                    break;
                }
                match claim_next(&pool, &job.endpoint_id).await {
                    Ok(Some(next)) => job = next,
                    Ok(None) => break,
                    Err(e) => {
                        tracing::warn!(endpoint = job.endpoint_id, "webhook sender: {e:?}");
                        break;
                    }
                }
            }
            drop(slot);
            ended.notify_one();
        });
    }
    Ok(claimed)
}

/// Claims delivery `id` if it is still due and its endpoint still enabled (it may have been
/// disabled since the pass read it): only one sender's UPDATE matches.
async fn claim(pool: &Pool, id: &str) -> DomainResult<Option<Job>> {
    let t = now_ms();
    let r = sqlx::query(
        "UPDATE webhook_deliveries SET state = 'delivering', attempts = attempts + 1, next_attempt_at = $2 WHERE id = $1 AND state IN ('pending', 'delivering') AND next_attempt_at <= $3 \
         AND endpoint_id IN (SELECT id FROM webhook_endpoints WHERE state = 'enabled')",
    )
    .bind(id)
    .bind(t + DELIVERY_LEASE_MS)
    .bind(t)
    .execute(pool)
    .await?;
    if r.rows_affected() != 1 {
        return Ok(None);
    }
    claimed(pool, id).await
}

/// What sending delivery `id`, just claimed, needs.
async fn claimed(pool: &Pool, id: &str) -> DomainResult<Option<Job>> {
    Ok(sqlx::query_as(
        "SELECT d.id, d.event_id, v.payload, d.endpoint_id, e.url, e.secret_sealed, e.previous_secret_sealed, e.previous_secret_expires_at, d.attempts, d.window_started_at, d.next_attempt_at AS lease_until FROM webhook_deliveries d JOIN webhook_messages v ON v.id = d.event_id JOIN webhook_endpoints e ON e.id = d.endpoint_id WHERE d.id = $1",
    )
    .bind(id)
    .fetch_optional(pool)
    .await?)
}

/// Claims the next due pending delivery of endpoint `endpoint_id` (through the
/// `(endpoint_id, state, next_attempt_at)` index), if any and if the endpoint is enabled.
async fn claim_next(pool: &Pool, endpoint_id: &str) -> DomainResult<Option<Job>> {
    // One statement picks and claims, so the endpoint's other attempts ending at the same time
    // do not pick the same row (SQLite runs it alone; on PostgreSQL a row another transaction
    // took meanwhile fails the re-checked conditions, and the next try picks the one after it).
    for _ in 0..CLAIM_NEXT_TRIES {
        let t = now_ms();
        let id: Option<String> = sqlx::query_scalar(
            "UPDATE webhook_deliveries SET state = 'delivering', attempts = attempts + 1, next_attempt_at = $2 \
             WHERE id = (SELECT id FROM webhook_deliveries WHERE endpoint_id = $1 AND state = 'pending' AND next_attempt_at <= $3 \
                         ORDER BY next_attempt_at LIMIT 1) \
             AND state = 'pending' AND next_attempt_at <= $3 \
             AND endpoint_id IN (SELECT id FROM webhook_endpoints WHERE state = 'enabled') \
             RETURNING id",
        )
        .bind(endpoint_id)
        .bind(t + DELIVERY_LEASE_MS)
        .bind(t)
        .fetch_optional(pool)
        .await?;
        if let Some(id) = id {
            return claimed(pool, &id).await;
        }
        // Nothing claimed: none due (done), or lost to another transaction (try again).
        let due: Option<i64> = sqlx::query_scalar(
            "SELECT 1 FROM webhook_deliveries WHERE endpoint_id = $1 AND state = 'pending' AND next_attempt_at <= $2 LIMIT 1",
        )
        .bind(endpoint_id)
        .bind(t)
        .fetch_optional(pool)
        .await?;
        if due.is_none() {
            return Ok(None);
        }
    }
    Ok(None)
}

/// The key bytes of a sealed `whsec_` secret, or why not.
fn open_key(
    master_key: &[u8; 32],
    sealed: &str,
    at: crate::secrets::SealedAt<'_>,
) -> Result<Vec<u8>, String> {
    match open(master_key, sealed, at) {
        Ok(secret) => std::str::from_utf8(&secret)
            .ok()
            .and_then(secret_bytes)
            .ok_or_else(|| "the stored signing secret is not a whsec_ secret".to_string()),
        Err(e) => Err(format!("the signing secret does not open: {e}")),
    }
}

fn cut(s: &str) -> String {
    s.chars().take(MAX_ERROR_CHARS).collect()
}

/// One signed POST. Never returns an error: every failure is an [`Outcome`].
async fn attempt(client: &reqwest::Client, settings: &SenderSettings, job: &Job) -> Outcome {
    let started = Instant::now();
    let failed = |error: String| Outcome {
        status: None,
        latency_ms: started.elapsed().as_millis() as i64,
        error: Some(cut(&error)),
    };
    // The rule is checked again at each attempt: the opt-in may have been withdrawn since.
    if let Err(why) = crate::outbound::check(&job.url) {
        return failed(format!("the URL is refused: {why}"));
    }
    let Some(master_key) = settings.master_key.as_ref() else {
        return failed(
            "TOLLGATE_MASTER_KEY is not set: the signing secret cannot be opened".into(),
        );
    };
    let key = match open_key(master_key, &job.secret_sealed, sealed_at(&job.endpoint_id)) {
        Ok(k) => k,
        Err(e) => return failed(e),
    };
    let timestamp = now();
    let mut signature = sign(&key, &job.event_id, timestamp, job.payload.as_bytes());
    // During a rotation's grace period the previous secret signs too: receivers on either
    // secret verify (Standard Webhooks: space-separated signatures).
    if let (Some(previous), Some(until)) =
        (&job.previous_secret_sealed, job.previous_secret_expires_at)
    {
        if timestamp < until {
            match open_key(master_key, previous, previous_sealed_at(&job.endpoint_id)) {
                Ok(old) => {
                    signature.push(' ');
                    signature.push_str(&sign(
                        &old,
                        &job.event_id,
                        timestamp,
                        job.payload.as_bytes(),
                    ));
                }
                Err(e) => return failed(e),
            }
        }
    }
    let sent = client
        .post(&job.url)
        .header("content-type", "application/json")
        .header("webhook-id", &job.event_id)
        .header("webhook-timestamp", timestamp.to_string())
        .header("webhook-signature", signature)
        .body(job.payload.clone())
        .send()
        .await;
    let mut response = match sent {
        Ok(r) => r,
        Err(e) => return failed(crate::outbound::describe(e)),
    };
    let status = response.status().as_u16();
    // Read at most MAX_RESPONSE_BODY_BYTES; a receiver streaming forever is cut there.
    // The status decides; a body that breaks off is only a shorter excerpt.
    let mut body = Vec::new();
    while body.len() < MAX_RESPONSE_BODY_BYTES {
        match response.chunk().await {
            Ok(Some(chunk)) => {
                let room = MAX_RESPONSE_BODY_BYTES - body.len();
                body.extend_from_slice(&chunk[..chunk.len().min(room)]);
            }
            Ok(None) | Err(_) => break,
        }
    }
    let latency_ms = started.elapsed().as_millis() as i64;
    let error = if (200..300).contains(&status) {
        None
    } else if (300..400).contains(&status) {
        Some(format!("HTTP {status}: redirects are not followed"))
    } else {
        Some(format!(
            "HTTP {status}: {}",
            String::from_utf8_lossy(&body).trim()
        ))
    };
    Outcome {
        status: Some(status),
        latency_ms,
        error: error.map(|e| cut(&e)),
    }
}

/// Records an attempt and what follows from it, in one transaction, if the claim still holds.
async fn record(
    pool: &Pool,
    settings: &SenderSettings,
    job: &Job,
    outcome: &Outcome,
) -> DomainResult<()> {
    let t = now();
    let t_ms = now_ms();
    let mut tx = crate::store::begin_write(pool).await?;
    let delivered = outcome.delivered();
    let gone = !delivered && outcome.gone();
    let gives_up = !delivered && !gone && settings.schedule.gives_up(job.window_started_at, t_ms);
    let (state, next) = if delivered {
        (DeliveryState::Delivered, t_ms)
    } else if gone {
        // Waits with the endpoint's other pending deliveries: enabling it again sends them all.
        (DeliveryState::Pending, PARKED_MS)
    } else if gives_up {
        (DeliveryState::Failed, t_ms)
    } else {
        (
            DeliveryState::Pending,
            t_ms + settings
                .schedule
                .delay_ms(job.attempts, crate::secrets::random_u64()),
        )
    };
    let r = sqlx::query(
        // A delivery left pending while its endpoint was disabled during the attempt waits
        // parked, like the endpoint's other pending ones.
        "UPDATE webhook_deliveries SET state = $4, \
         next_attempt_at = CASE WHEN $4 = 'pending' AND EXISTS (SELECT 1 FROM webhook_endpoints e \
           WHERE e.id = webhook_deliveries.endpoint_id AND e.state = 'disabled') THEN $10 ELSE $5 END, \
         last_status_code = $6, last_latency_ms = $7, last_error = $8, delivered_at = $9 \
         WHERE id = $1 AND state = 'delivering' AND attempts = $2 AND next_attempt_at = $3",
    )
    .bind(&job.id)
    .bind(job.attempts)
    .bind(job.lease_until)
    .bind(state.as_str())
    .bind(next)
    .bind(outcome.status.map(i64::from))
    .bind(outcome.latency_ms)
    .bind(&outcome.error)
    .bind(delivered.then_some(t))
    .bind(PARKED_MS)
    .execute(&mut *tx)
    .await?;
    if r.rows_affected() != 1 {
        // The lease ran out and another sender (or a replay and a new claim) took the delivery
        // over: its outcome is the one that counts.
        return Ok(());
    }
    sqlx::query(
        "INSERT INTO webhook_attempts (id, delivery_id, attempt, started_at, status_code, latency_ms, error) VALUES ($1, $2, $3, $4, $5, $6, $7)",
    )
    .bind(new_id("wha"))
    .bind(&job.id)
    .bind(job.attempts)
    .bind(t - outcome.latency_ms / 1000)
    .bind(outcome.status.map(i64::from))
    .bind(outcome.latency_ms)
    .bind(&outcome.error)
    .execute(&mut *tx)
    .await?;
    if delivered {
        sqlx::query("UPDATE webhook_endpoints SET consecutive_failures = 0, last_success_at = $2 WHERE id = $1")
            .bind(&job.endpoint_id)
            .bind(t)
            .execute(&mut *tx)
            .await?;
    } else {
        sqlx::query("UPDATE webhook_endpoints SET consecutive_failures = consecutive_failures + 1 WHERE id = $1")
            .bind(&job.endpoint_id)
            .execute(&mut *tx)
            .await?;
        if gone {
            disable(&mut tx, settings, job, DisabledReason::Gone, t).await?;
        } else if gives_up {
            disable(&mut tx, settings, job, DisabledReason::Failures, t).await?;
        }
    }
    tx.commit().await?;
    let result = match (delivered, gives_up || gone) {
        (true, _) => DeliveryResult::Delivered,
        (false, true) => DeliveryResult::GivenUp,
        (false, false) => DeliveryResult::Retried,
    };
    // Lag from the start of the delivery's window (its enqueue, or its last replay).
    let lag_ms = u64::try_from(t_ms - job.window_started_at).unwrap_or(0);
    crate::telemetry::get().delivery(Outbox::Webhook, result, Duration::from_millis(lag_ms));
    Ok(())
}

#[derive(sqlx::FromRow)]
struct Disabled {
    url: String,
    account_email: Option<String>,
}

/// Disables the endpoint of `job` for `why`, parks its pending deliveries and emails the admin
/// (and the owning account): at once after a `410 Gone` ([`DisabledReason::Gone`]); after a
/// delivery was given up ([`DisabledReason::Failures`]) only if the endpoint accepted nothing
/// since that delivery's window started (a whole window of failures: one rejected message on a
/// working endpoint disables nothing).
async fn disable(
    tx: &mut crate::store::Tx,
    settings: &SenderSettings,
    job: &Job,
    why: DisabledReason,
    t: i64,
) -> DomainResult<()> {
    let window_started = job.window_started_at / 1000;
    let r = sqlx::query(
        "UPDATE webhook_endpoints SET state = 'disabled', disabled_reason = $4, updated_at = $2 WHERE id = $1 AND state = 'enabled' \
         AND ($4 = 'gone' OR last_success_at IS NULL OR last_success_at < $3)",
    )
    .bind(&job.endpoint_id)
    .bind(t)
    .bind(window_started)
    .bind(why.as_str())
    .execute(&mut **tx)
    .await?;
    if r.rows_affected() != 1 {
        return Ok(());
    }
    super::endpoints::park_pending(tx, &job.endpoint_id).await?;
    let disabled: Disabled = sqlx::query_as(
        "SELECT e.url, a.email AS account_email FROM webhook_endpoints e LEFT JOIN accounts a ON a.id = e.account_id WHERE e.id = $1",
    )
    .bind(&job.endpoint_id)
    .fetch_one(&mut **tx)
    .await
    .map_err(DomainError::from)?;
    let cause = match why {
        DisabledReason::Gone => "it answered 410 Gone to a delivery (its owner took it down)",
        _ => "a delivery to it failed for its whole retry window without the endpoint accepting any delivery",
    };
    tracing::warn!(
        endpoint = job.endpoint_id,
        reason = why.as_str(),
        "webhook endpoint disabled: {cause}"
    );
    let subject = format!("Webhook endpoint {} disabled", job.endpoint_id);
    let body = format!(
        "Tollgate disabled the webhook endpoint {} ({}): {cause}.\n\nNew events are not sent to it; its pending deliveries wait. Enable it again (PATCH {{\"enabled\": true}}, or the Webhooks page of the portal) once it answers 2xx: the waiting deliveries go out then. Replay the failed deliveries you need from its delivery log.",
        job.endpoint_id, disabled.url,
    );
    let recipients = settings
        .admin_email
        .iter()
        .chain(disabled.account_email.iter())
        .cloned()
        .collect::<Vec<_>>();
    if settings.admin_email.is_none() {
        tracing::warn!(
            "TOLLGATE_ADMIN_EMAIL is not set: nobody is emailed about the disabled endpoint"
        );
    }
    let emails: Vec<Email> = recipients
        .into_iter()
        .map(|recipient| Email {
            // One message per disabling (this claim's lease end is unique to it).
            dedupe_key: format!(
                "webhook_endpoint_disabled:{}:{}:{}:{recipient}",
                job.endpoint_id, job.id, job.lease_until
            ),
            kind: EmailKind::WebhookEndpointDisabled,
            recipient,
            subject: subject.clone(),
            body: body.clone(),
            invoice_id: None,
        })
        .collect();
    email::enqueue_many(tx, &emails, t).await
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::webhooks::endpoints::{self, Owner, WebhookEndpointInput};
    use crate::domain::webhooks::outbox;

    fn admin() -> crate::domain::audit::Actor {
        crate::domain::audit::Actor::token("env", None)
    }

    fn settings() -> SenderSettings {
        SenderSettings {
            master_key: None,
            schedule: RetrySchedule::default(),
            admin_email: Some("ops@example.com".into()),
            delivery_timeout: DELIVERY_TIMEOUT,
        }
    }

    fn outcome(status: u16) -> Outcome {
        Outcome {
            status: Some(status),
            latency_ms: 3,
            error: (status >= 300).then(|| format!("HTTP {status}")),
        }
    }

    /// A pool with one admin endpoint and one test event's delivery to it: (pool, delivery id).
    async fn one_delivery() -> (Pool, String, String) {
        let pool = crate::store::connect_in_memory().await.unwrap();
        crate::store::migrate(&pool).await.unwrap();
        let key = crate::secrets::derive_key("test", b"deliver.rs tests");
        let ep = endpoints::create(
            &pool,
            Some(&key),
            &admin(),
            &Owner::Admin,
            WebhookEndpointInput {
                url: Some("https://hooks.example.com/t".into()),
                events: Some(vec!["key.created".into()]),
                description: None,
            },
        )
        .await
        .unwrap();
        let limits = crate::rate_limit::Limiter::new(Default::default());
        let d = outbox::send_test(&limits, &pool, &admin(), &Owner::Admin, &ep.endpoint.id)
            .await
            .unwrap();
        (pool, ep.endpoint.id, d.id)
    }

    async fn state(pool: &Pool, id: &str) -> (String, i64) {
        sqlx::query_as("SELECT state, attempts FROM webhook_deliveries WHERE id = $1")
            .bind(id)
            .fetch_one(pool)
            .await
            .unwrap()
    }

    async fn attempts_logged(pool: &Pool, id: &str) -> i64 {
        sqlx::query_scalar("SELECT COUNT(*) FROM webhook_attempts WHERE delivery_id = $1")
            .bind(id)
            .fetch_one(pool)
            .await
            .unwrap()
    }

    /// The ABA of a replay: a claim whose lease ran out, a replay (attempt count back to 0) and a
    /// new claim (count 1 again). The old claim's outcome arriving now must change nothing, and
    /// the new claim's must be the one recorded.
    #[tokio::test]
    async fn an_attempt_outliving_its_lease_records_nothing_over_a_replay() {
        let (pool, _, id) = one_delivery().await;
        let limits = crate::rate_limit::Limiter::new(Default::default());
        let old = claim(&pool, &id).await.unwrap().unwrap();
        assert_eq!(old.attempts, 1);
        // Its lease runs out (the sender hangs), and the admin replays.
        sqlx::query("UPDATE webhook_deliveries SET next_attempt_at = $2 WHERE id = $1")
            .bind(&id)
            .bind(now_ms() - 1)
            .execute(&pool)
            .await
            .unwrap();
        outbox::replay(&limits, &pool, &admin(), &Owner::Admin, &id)
            .await
            .unwrap();
        let new = claim(&pool, &id).await.unwrap().unwrap();
        assert_eq!(
            new.attempts, old.attempts,
            "the count alone cannot tell them apart"
        );
        assert!(new.lease_until > old.lease_until);
        // The old attempt ends delivered: nothing is recorded, the replay's claim still holds.
        record(&pool, &settings(), &old, &outcome(200))
            .await
            .unwrap();
        assert_eq!(state(&pool, &id).await, ("delivering".to_string(), 1));
        assert_eq!(attempts_logged(&pool, &id).await, 0);
        // The replay's attempt fails: that is what the log says, and it is retried.
        record(&pool, &settings(), &new, &outcome(500))
            .await
            .unwrap();
        assert_eq!(state(&pool, &id).await, ("pending".to_string(), 1));
        assert_eq!(attempts_logged(&pool, &id).await, 1);
        // A second late outcome of either claim changes nothing either.
        record(&pool, &settings(), &new, &outcome(200))
            .await
            .unwrap();
        record(&pool, &settings(), &old, &outcome(200))
            .await
            .unwrap();
        assert_eq!(state(&pool, &id).await, ("pending".to_string(), 1));
        assert_eq!(attempts_logged(&pool, &id).await, 1);
    }

    /// While a claim's lease runs, a replay is refused and the claim's outcome is recorded.
    #[tokio::test]
    async fn a_replay_during_a_live_claim_is_refused() {
        let (pool, _, id) = one_delivery().await;
        let limits = crate::rate_limit::Limiter::new(Default::default());
        let job = claim(&pool, &id).await.unwrap().unwrap();
        let refused = outbox::replay(&limits, &pool, &admin(), &Owner::Admin, &id).await;
        assert!(
            matches!(&refused, Err(DomainError::Conflict { code, .. }) if *code == "delivery_in_progress"),
            "{refused:?}"
        );
        record(&pool, &settings(), &job, &outcome(204))
            .await
            .unwrap();
        assert_eq!(state(&pool, &id).await, ("delivered".to_string(), 1));
    }

    /// `410 Gone` disables the endpoint at once (reason `gone`), parks the delivery with the
    /// endpoint's other pending ones, and emails the admin once.
    #[tokio::test]
    async fn gone_disables_the_endpoint_at_once_and_emails_the_admin() {
        let (pool, endpoint, id) = one_delivery().await;
        let limits = crate::rate_limit::Limiter::new(Default::default());
        let other = outbox::send_test(&limits, &pool, &admin(), &Owner::Admin, &endpoint)
            .await
            .unwrap();
        let job = claim(&pool, &id).await.unwrap().unwrap();
        record(&pool, &settings(), &job, &outcome(410))
            .await
            .unwrap();
        let ep = endpoints::get(&pool, &Owner::Admin, &endpoint)
            .await
            .unwrap();
        assert!(!ep.enabled);
        assert_eq!(ep.disabled_reason, Some(DisabledReason::Gone));
        let parked: Vec<(String, String, i64)> =
            sqlx::query_as("SELECT id, state, next_attempt_at FROM webhook_deliveries ORDER BY id")
                .fetch_all(&pool)
                .await
                .unwrap();
        let mut expected = vec![
            (id.clone(), "pending".to_string(), PARKED_MS),
            (other.id.clone(), "pending".to_string(), PARKED_MS),
        ];
        expected.sort();
        assert_eq!(parked, expected);
        let emails: Vec<(String, String, String)> =
            sqlx::query_as("SELECT kind, recipient, body FROM email_outbox")
                .fetch_all(&pool)
                .await
                .unwrap();
        assert_eq!(emails.len(), 1, "{emails:?}");
        assert_eq!(emails[0].0, "webhook_endpoint_disabled");
        assert_eq!(emails[0].1, "ops@example.com");
        assert!(emails[0].2.contains("410 Gone"), "{}", emails[0].2);
        // Nothing is claimed while it is disabled; enabling it sends both again.
        assert!(claim(&pool, &id).await.unwrap().is_none());
        endpoints::update(
            &pool,
            &admin(),
            &Owner::Admin,
            &endpoint,
            endpoints::WebhookEndpointUpdate {
                enabled: Some(true),
                ..Default::default()
            },
        )
        .await
        .unwrap();
        assert!(claim(&pool, &id).await.unwrap().is_some());
        assert!(claim(&pool, &other.id).await.unwrap().is_some());
    }

    /// An attempt under way while its endpoint is disabled ends parked, not scheduled.
    #[tokio::test]
    async fn a_failure_recorded_after_the_endpoint_was_disabled_is_parked() {
        let (pool, endpoint, id) = one_delivery().await;
        let job = claim(&pool, &id).await.unwrap().unwrap();
        endpoints::update(
            &pool,
            &admin(),
            &Owner::Admin,
            &endpoint,
            endpoints::WebhookEndpointUpdate {
                enabled: Some(false),
                ..Default::default()
            },
        )
        .await
        .unwrap();
        record(&pool, &settings(), &job, &outcome(503))
            .await
            .unwrap();
        let next: i64 =
            sqlx::query_scalar("SELECT next_attempt_at FROM webhook_deliveries WHERE id = $1")
                .bind(&id)
                .fetch_one(&pool)
                .await
                .unwrap();
        assert_eq!(next, PARKED_MS);
    }
}
