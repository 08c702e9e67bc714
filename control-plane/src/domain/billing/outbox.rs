//! The email outbox: messages are written in the transaction that causes them (an invoice issued)
//! and sent later by [`run_sender`] over SMTP.
//!
//! Delivery: a message is claimed (`sending`, with a lease) before it is handed to the SMTP server
//! and marked `sent` right after the server accepted it, so a restart never sends a sent message
//! again. Only a crash in the instant between the server's acceptance and that mark can repeat a
//! message; its `Message-ID` is the outbox id, so mail systems recognize the duplicate. A failed
//! attempt is retried with backoff, up to [`MAX_ATTEMPTS`].

use std::time::Duration;

use lettre::message::header::ContentType;
use lettre::message::{Attachment, Mailbox, MultiPart, SinglePart};
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};

use crate::domain::DomainResult;
use crate::secrets::new_id;
use crate::store::{now, Pool, Tx};
use crate::telemetry::{DeliveryResult, Outbox};

/// Messages claimed per sender pass.
pub const BATCH: i64 = 20;
/// How long a claimed message is reserved for the claiming sender before another may retry it.
pub const CLAIM_LEASE_SECS: i64 = 120;
/// Attempts before a message is given up (`failed`), and the first retry delay (doubling).
pub const MAX_ATTEMPTS: i64 = 8;
pub const FIRST_RETRY_SECS: i64 = 30;
/// Pause between sender passes when there is nothing to send.
pub const IDLE_POLL: Duration = Duration::from_secs(2);
/// SMTP connection and command timeout.
pub const SMTP_TIMEOUT: Duration = Duration::from_secs(20);

/// What an email is about: stored as its name in `email_outbox.kind`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EmailKind {
    /// An issued invoice, with its PDF.
    InvoiceIssued,
    /// A charge of an invoice succeeded.
    ChargeSucceeded,
    /// A charge failed and dunning will retry.
    ChargeFailed,
    /// The last attempt dunning makes failed.
    FinalFailure,
    /// Someone tried to sign up with the address of an existing portal user.
    SignUpTaken,
    /// A webhook endpoint was disabled after a whole retry window of failures (to the admin).
    WebhookEndpointDisabled,
    /// An application's usage reached an alert threshold of a limit.
    UsageThresholdReached,
}

impl EmailKind {
    pub fn as_str(self) -> &'static str {
        match self {
            EmailKind::InvoiceIssued => "invoice_issued",
            EmailKind::ChargeSucceeded => "charge_succeeded",
            EmailKind::ChargeFailed => "charge_failed",
            EmailKind::FinalFailure => "final_failure",
            EmailKind::SignUpTaken => "sign_up_taken",
            EmailKind::WebhookEndpointDisabled => "webhook_endpoint_disabled",
            EmailKind::UsageThresholdReached => "usage_threshold_reached",
        }
    }
}

#[derive(Clone, Debug)]
pub struct Email {
    /// Enqueueing the same key twice keeps the first message only.
    pub dedupe_key: String,
    pub kind: EmailKind,
    pub recipient: String,
    pub subject: String,
    pub body: String,
    /// Attach this invoice's PDF.
    pub invoice_id: Option<String>,
}

const COLUMNS: &str = "id, dedupe_key, kind, recipient, subject, body, invoice_id, state, attempts, next_attempt_at, created_at";

/// Enqueues messages in `tx` (multi-row; an existing `dedupe_key` is left alone).
pub async fn enqueue_many(tx: &mut Tx, emails: &[Email], at: i64) -> DomainResult<()> {
    for chunk in emails.chunks(crate::store::rows_per_statement(11)) {
        let sql = format!(
            "INSERT INTO email_outbox ({COLUMNS}) VALUES {} ON CONFLICT (dedupe_key) DO NOTHING",
            crate::store::placeholders(chunk.len(), 11)
        );
        let mut q = sqlx::query(&sql).persistent(false); // one text per row count: not cached
        for e in chunk {
            q = q
                .bind(new_id("msg"))
                .bind(e.dedupe_key.clone())
                .bind(e.kind.as_str())
                .bind(e.recipient.clone())
                .bind(e.subject.clone())
                .bind(e.body.clone())
                .bind(e.invoice_id.clone())
                .bind(OutboxState::Pending.as_str())
                .bind(0i64)
                .bind(at)
                .bind(at);
        }
        q.execute(&mut **tx).await?;
    }
    Ok(())
}

pub async fn enqueue(tx: &mut Tx, email: &Email, at: i64) -> DomainResult<()> {
    enqueue_many(tx, std::slice::from_ref(email), at).await
}

/// Where and as whom to send (`TOLLGATE_SMTP_URL`, `TOLLGATE_MAIL_FROM`).
#[derive(Clone, Debug)]
pub struct SmtpSettings {
    /// lettre's URL form: `smtp://host:25` (plain), `smtp://user:pass@host:587?tls=required`
    /// (STARTTLS), `smtps://host:465` (TLS).
    pub url: String,
    pub from: String,
}

/// Where a message is: `pending` (to send, maybe after a retry wait), `sending` (claimed by a
/// sender; taken over when its claim expires), `sent`, or `failed` after [`MAX_ATTEMPTS`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OutboxState {
    Pending,
    Sending,
    Sent,
    Failed,
}

impl OutboxState {
    pub fn as_str(self) -> &'static str {
        match self {
            OutboxState::Pending => "pending",
            OutboxState::Sending => "sending",
            OutboxState::Sent => "sent",
            OutboxState::Failed => "failed",
        }
    }
}

/// A message a sender claimed.
#[derive(sqlx::FromRow)]
struct Claimed {
    recipient: String,
    subject: String,
    body: String,
    invoice_id: Option<String>,
    attempts: i64,
    created_at: i64,
}

/// Sends pending messages until the process stops. Errors are logged and retried later.
pub async fn run_sender(pool: Pool, smtp: SmtpSettings) {
    let transport = match AsyncSmtpTransport::<Tokio1Executor>::from_url(&smtp.url) {
        Ok(b) => b.timeout(Some(SMTP_TIMEOUT)).build(),
        Err(e) => {
            tracing::error!("TOLLGATE_SMTP_URL is not usable ({e}); email is not sent");
            return;
        }
    };
    let from: Mailbox = match smtp.from.parse() {
        Ok(m) => m,
        Err(e) => {
            tracing::error!(
                "TOLLGATE_MAIL_FROM {:?} is not an address ({e}); email is not sent",
                smtp.from
            );
            return;
        }
    };
    loop {
        match send_pass(&pool, &transport, &from).await {
            Ok(n) if n > 0 => continue,
            Ok(_) => {}
            Err(e) => tracing::warn!("email outbox: {e:?}"),
        }
        tokio::time::sleep(IDLE_POLL).await;
    }
}

/// One pass: claims up to [`BATCH`] due messages and sends them. Returns how many were claimed.
pub async fn send_pass(
    pool: &Pool,
    transport: &AsyncSmtpTransport<Tokio1Executor>,
    from: &Mailbox,
) -> DomainResult<usize> {
    let t = now();
    let due: Vec<(String,)> = sqlx::query_as(
        "SELECT id FROM email_outbox WHERE (state = 'pending' AND next_attempt_at <= $1) OR (state = 'sending' AND next_attempt_at <= $1) ORDER BY next_attempt_at, id LIMIT $2",
    )
    .bind(t)
    .bind(BATCH)
    .fetch_all(pool)
    .await?;
    let mut claimed = 0;
    for (id,) in due {
        // Claim: only one sender wins a message; the lease lets another retry if this one dies.
        let r = sqlx::query(
            "UPDATE email_outbox SET state = 'sending', attempts = attempts + 1, next_attempt_at = $2 WHERE id = $1 AND state IN ('pending', 'sending') AND next_attempt_at <= $3",
        )
        .bind(&id)
        .bind(t + CLAIM_LEASE_SECS)
        .bind(t)
        .execute(pool)
        .await?;
        if r.rows_affected() != 1 {
            continue;
        }
        claimed += 1;
        let row: Claimed = sqlx::query_as(
            "SELECT recipient, subject, body, invoice_id, attempts, created_at FROM email_outbox WHERE id = $1",
        )
        .bind(&id)
        .fetch_one(pool)
        .await?;
        let result = match build(pool, from, &id, &row).await {
            Ok(message) => transport
                .send(message)
                .await
                .map(|_| ())
                .map_err(|e| e.to_string()),
            Err(e) => Err(e),
        };
        match result {
            Ok(()) => {
                delivered(DeliveryResult::Delivered, row.created_at);
                sqlx::query("UPDATE email_outbox SET state = 'sent', sent_at = $2, last_error = NULL WHERE id = $1")
                    .bind(&id)
                    .bind(now())
                    .execute(pool)
                    .await?;
            }
            Err(e) => {
                let attempts = row.attempts;
                let (state, next) = if attempts >= MAX_ATTEMPTS {
                    (OutboxState::Failed, now())
                } else {
                    (
                        OutboxState::Pending,
                        now() + (FIRST_RETRY_SECS << (attempts - 1).clamp(0, 10)),
                    )
                };
                delivered(
                    if state == OutboxState::Failed {
                        DeliveryResult::GivenUp
                    } else {
                        DeliveryResult::Retried
                    },
                    row.created_at,
                );
                tracing::warn!(
                    "email {id} to {}: attempt {attempts} failed: {e}",
                    row.recipient
                );
                sqlx::query("UPDATE email_outbox SET state = $2, next_attempt_at = $3, last_error = $4 WHERE id = $1")
                    .bind(&id)
                    .bind(state.as_str())
                    .bind(next)
                    .bind(e.chars().take(500).collect::<String>())
                    .execute(pool)
                    .await?;
            }
        }
    }
    Ok(claimed)
}

/// Counts a delivery attempt of a message enqueued at `created_at` (`crate::telemetry`).
fn delivered(result: DeliveryResult, created_at: i64) {
    let lag = Duration::from_secs(u64::try_from(now() - created_at).unwrap_or(0));
    crate::telemetry::get().delivery(Outbox::Email, result, lag);
}

async fn build(pool: &Pool, from: &Mailbox, id: &str, row: &Claimed) -> Result<Message, String> {
    let Claimed {
        recipient,
        subject,
        body,
        invoice_id,
        ..
    } = row;
    let to: Mailbox = recipient
        .parse()
        .map_err(|e| format!("bad recipient {recipient:?}: {e}"))?;
    let builder = Message::builder()
        .from(from.clone())
        .to(to)
        .subject(subject.clone())
        .message_id(Some(format!("<{id}@tollgate>")));
    let text = SinglePart::plain(body.clone());
    let message = match invoice_id {
        Some(inv) => {
            let pdf = super::pdf::invoice_pdf(pool, inv)
                .await
                .map_err(|e| format!("{e:?}"))?;
            let name = format!("invoice-{}.pdf", pdf.0);
            let attachment = Attachment::new(name).body(
                pdf.1,
                ContentType::parse("application/pdf").map_err(|e| e.to_string())?,
            );
            builder.multipart(MultiPart::mixed().singlepart(text).singlepart(attachment))
        }
        None => builder.singlepart(text),
    };
    message.map_err(|e| e.to_string())
}
