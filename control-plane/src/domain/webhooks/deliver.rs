//! The webhook sender inside `tollgate serve`: claims due deliveries, POSTs them signed, records
//! each attempt, and schedules retries (at-least-once, the same `webhook-id` on every attempt).
//!
//! Claims: a delivery is claimed by one conditional UPDATE (`delivering`, attempt count + 1, and
//! `next_attempt_at` moved to the lease's end, [`DELIVERY_LEASE_MS`]); only one replica's UPDATE
//! matches. The outcome is written only while the claim is still this sender's (same state and
//! attempt count), so a sender that outlived its lease changes nothing. A process killed
//! mid-delivery leaves the row `delivering`; once the lease ends any sender takes it again (the
//! receiver may then get that attempt twice, with the same `webhook-id`, which is what lets it
//! drop the copy).
//!
//! Outcome: a 2xx answer delivers; anything else (another status, a timeout, a refused
//! connection, an address the outbound rule refuses, a redirect, which is never followed) fails
//! the attempt, and the delivery is retried per the [`RetrySchedule`] until its window is spent;
//! then it is `failed`, and if the endpoint accepted nothing during that whole window the
//! endpoint is disabled and the admin is emailed (`TOLLGATE_ADMIN_EMAIL`).
//!
//! Ordering: deliveries to one endpoint run concurrently and retries interleave with newer
//! events; receivers must not rely on order (each body carries its `timestamp`).

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::Semaphore;

use super::endpoints::{previous_sealed_at, sealed_at};
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
/// Attempts in flight at once for one endpoint, across replicas (see `pass`).
pub const MAX_IN_FLIGHT_PER_ENDPOINT: i64 = 4;
/// Pause between passes when nothing is due.
pub const IDLE_POLL: Duration = Duration::from_millis(500);

/// What the sender needs beyond the pool.
#[derive(Clone, Debug)]
pub struct SenderSettings {
    pub master_key: Option<[u8; 32]>,
    pub schedule: RetrySchedule,
    /// `TOLLGATE_ADMIN_EMAIL`: who hears of a disabled endpoint. `None`: only the log does.
    pub admin_email: Option<String>,
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
}

/// Sends due deliveries until the process stops. Errors are logged and the pass retried.
pub async fn run_sender(pool: Pool, settings: SenderSettings) {
    // No proxy from the environment (HTTPS_PROXY): a proxy resolves the name itself, past the
    // guarded resolver, and these URLs come from developers. (Payment providers, whose URLs only
    // the admin sets, keep an operator's egress proxy.)
    let client = match crate::outbound::http_client()
        .no_proxy()
        .timeout(DELIVERY_TIMEOUT)
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
    loop {
        match pass(&pool, &client, &settings, &slots).await {
            Ok(n) if n > 0 => continue,
            Ok(_) => {}
            Err(e) => tracing::warn!("webhook sender: {e:?}"),
        }
        tokio::time::sleep(IDLE_POLL).await;
    }
}

/// One pass: claims due deliveries (up to [`BATCH`]) as slots free up and starts each; returns
/// how many it claimed.
async fn pass(
    pool: &Pool,
    client: &reqwest::Client,
    settings: &Arc<SenderSettings>,
    slots: &Arc<Semaphore>,
) -> DomainResult<usize> {
    // Fair across endpoints: at most MAX_IN_FLIGHT_PER_ENDPOINT of one endpoint's deliveries
    // are under way at once (counting the leases of every replica), and a pass takes the first
    // due delivery of every endpoint before the second of any. One endpoint with a slow receiver
    // and a deep backlog (an account's test events to a tarpit) cannot fill the sender's slots
    // and starve the others.
    let due: Vec<String> = sqlx::query_scalar(
        "SELECT id FROM (\
           SELECT d.id, d.next_attempt_at, \
                  ROW_NUMBER() OVER (PARTITION BY d.endpoint_id ORDER BY d.next_attempt_at, d.id) AS turn, \
                  (SELECT COUNT(*) FROM webhook_deliveries f WHERE f.endpoint_id = d.endpoint_id \
                     AND f.state = 'delivering' AND f.next_attempt_at > $1) AS busy \
           FROM webhook_deliveries d JOIN webhook_endpoints e ON e.id = d.endpoint_id \
           WHERE d.state IN ('pending', 'delivering') AND d.next_attempt_at <= $1 AND e.state = 'enabled') r \
         WHERE r.turn + r.busy <= $3 ORDER BY r.turn, r.next_attempt_at, r.id LIMIT $2",
    )
    .bind(now_ms())
    .bind(BATCH)
    .bind(MAX_IN_FLIGHT_PER_ENDPOINT)
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
        let (pool, client, settings) = (pool.clone(), client.clone(), settings.clone());
        tokio::spawn(async move {
            let outcome = attempt(&client, &settings, &job).await;
            if let Err(e) = record(&pool, &settings, &job, &outcome).await {
                tracing::warn!(delivery = job.id, "webhook outcome not recorded: {e:?}");
            }
            drop(slot);
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
    Ok(sqlx::query_as(
        "SELECT d.id, d.event_id, v.payload, d.endpoint_id, e.url, e.secret_sealed, e.previous_secret_sealed, e.previous_secret_expires_at, d.attempts, d.window_started_at FROM webhook_deliveries d JOIN webhook_messages v ON v.id = d.event_id JOIN webhook_endpoints e ON e.id = d.endpoint_id WHERE d.id = $1",
    )
    .bind(id)
    .fetch_optional(pool)
    .await?)
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
    let gives_up = !delivered && settings.schedule.gives_up(job.window_started_at, t_ms);
    let (state, next) = if delivered {
        ("delivered", t_ms)
    } else if gives_up {
        ("failed", t_ms)
    } else {
        (
            "pending",
            t_ms + settings
                .schedule
                .delay_ms(job.attempts, crate::secrets::random_u64()),
        )
    };
    let r = sqlx::query(
        "UPDATE webhook_deliveries SET state = $3, next_attempt_at = $4, last_status_code = $5, last_latency_ms = $6, last_error = $7, delivered_at = $8 WHERE id = $1 AND state = 'delivering' AND attempts = $2",
    )
    .bind(&job.id)
    .bind(job.attempts)
    .bind(state)
    .bind(next)
    .bind(outcome.status.map(i64::from))
    .bind(outcome.latency_ms)
    .bind(&outcome.error)
    .bind(delivered.then_some(t))
    .execute(&mut *tx)
    .await?;
    if r.rows_affected() != 1 {
        // The lease ran out and another sender (or a replay) took the delivery over.
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
        if gives_up {
            disable_if_dead(&mut tx, settings, job, t).await?;
        }
    }
    tx.commit().await?;
    let result = match (delivered, gives_up) {
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
struct Dead {
    url: String,
    account_email: Option<String>,
}

/// After a delivery was given up: disables its endpoint if the endpoint accepted nothing since
/// the delivery's window started (a whole window of failures), and emails the admin.
async fn disable_if_dead(
    tx: &mut crate::store::Tx,
    settings: &SenderSettings,
    job: &Job,
    t: i64,
) -> DomainResult<()> {
    let window_started = job.window_started_at / 1000;
    let r = sqlx::query(
        "UPDATE webhook_endpoints SET state = 'disabled', disabled_reason = 'failures', updated_at = $2 WHERE id = $1 AND state = 'enabled' AND (last_success_at IS NULL OR last_success_at < $3)",
    )
    .bind(&job.endpoint_id)
    .bind(t)
    .bind(window_started)
    .execute(&mut **tx)
    .await?;
    if r.rows_affected() != 1 {
        return Ok(());
    }
    super::endpoints::park_pending(tx, &job.endpoint_id).await?;
    let dead: Dead = sqlx::query_as(
        "SELECT e.url, a.email AS account_email FROM webhook_endpoints e LEFT JOIN accounts a ON a.id = e.account_id WHERE e.id = $1",
    )
    .bind(&job.endpoint_id)
    .fetch_one(&mut **tx)
    .await
    .map_err(DomainError::from)?;
    tracing::warn!(
        endpoint = job.endpoint_id,
        "webhook endpoint disabled: it accepted no delivery for a whole retry window"
    );
    let subject = format!("Webhook endpoint {} disabled", job.endpoint_id);
    let body = format!(
        "Tollgate disabled the webhook endpoint {} ({}) after a delivery to it failed for its whole retry window without the endpoint accepting any delivery.\n\nLast error: {}\n\nNew events are not sent to it; its pending deliveries wait. Enable it again (PATCH {{\"enabled\": true}}) once it answers 2xx, and replay the failed deliveries you need.",
        job.endpoint_id,
        dead.url,
        "see the endpoint's delivery log",
    );
    let recipients = settings
        .admin_email
        .iter()
        .chain(dead.account_email.iter())
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
            dedupe_key: format!(
                "webhook_endpoint_disabled:{}:{}:{recipient}",
                job.endpoint_id, job.id
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
