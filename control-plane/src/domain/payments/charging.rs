//! Charging invoices and dunning.
//!
//! Never two charges for one attempt: an attempt is recorded (`pending`) before the provider is
//! called, with an idempotency key `<invoice id>-<attempt>`; a later try of an attempt whose outcome
//! is unknown (crash, timeout) first looks the provider's object up by that key and only then calls
//! again with the same key (which the provider answers with the first result).
//!
//! Outcomes: success -> invoice `paid` (and the account's applications suspended for non-payment
//! resume when no failed invoice is left); decline or required authentication -> `unpaid`, a "charge
//! failed" email, another attempt `retry.interval_days` later; after `retry.attempts` failures ->
//! `failed`, a final email and, with `suspend_on_failure`, the account's applications suspended for
//! non-payment (the gateway answers 402 within its snapshot poll interval).

use serde::Serialize;
use serde_json::{json, Value};

use super::attempts::{self, AttemptState, Payment};
use super::cards::customer;
use super::provider::{configured, pay_error, provider, Provider};
use super::statement::CHARGEABLE;
use super::{ChargeOutcome, ChargeRequest, PayError, ProviderKind};
use crate::domain::accounts::applications;
use crate::domain::audit::{self, Actor, Changes, Object};
use crate::domain::billing::calendar::{day_of, format_date, format_month};
use crate::domain::billing::invoices::{
    self, render_text, Invoice, InvoiceKind, InvoiceObject, InvoiceState,
};
use crate::domain::billing::outbox::{enqueue, Email, EmailKind};
use crate::domain::billing::settings::{self, BillingSettings};
use crate::domain::webhooks::events::{ApplicationData, InvoiceData, PaymentFailure};
use crate::domain::webhooks::{self, Event};
use crate::domain::{DomainError, DomainResult};
use crate::secrets::new_id;
use crate::store::{now, Pool, Tx};
use crate::telemetry;

/// Invoices charged per pass of the daily charging (the rest wait for the next pass).
pub const MAX_CHARGES_PER_PASS: i64 = 10_000;

/// The latest attempt on `invoice_id` that waits for the cardholder (3-D Secure): its id and the
/// provider's reference.
async fn awaiting_action(pool: &Pool, invoice_id: &str) -> DomainResult<Option<AwaitingAction>> {
    let row: Option<AwaitingRow> = sqlx::query_as(
        "SELECT id, provider_ref FROM charge_attempts WHERE invoice_id = $1 AND state = 'requires_action' ORDER BY attempt DESC LIMIT 1",
    )
    .bind(invoice_id)
    .fetch_optional(pool)
    .await?;
    Ok(row.and_then(|r| {
        r.provider_ref.map(|reference| AwaitingAction {
            attempt_id: r.id,
            reference,
        })
    }))
}

#[derive(sqlx::FromRow)]
struct AwaitingRow {
    id: String,
    provider_ref: Option<String>,
}

/// An attempt waiting for the cardholder, and the provider's object to ask about it.
struct AwaitingAction {
    attempt_id: String,
    reference: String,
}

/// What the browser needs to let the cardholder authenticate a payment.
pub struct ActionSecret {
    pub client_secret: String,
    pub publishable_key: String,
    pub js_url: String,
}

/// What the browser needs to let the cardholder authenticate the payment of `invoice_id`. `None`
/// when nothing waits (Braintree charges never wait: its vaulted cards are charged without a
/// challenge).
pub async fn action_secret(
    pool: &Pool,
    master_key: Option<&[u8; 32]>,
    invoice_id: &str,
) -> DomainResult<Option<ActionSecret>> {
    let Some(waiting) = awaiting_action(pool, invoice_id).await? else {
        return Ok(None);
    };
    let Provider::Stripe(stripe) = provider(pool, master_key).await? else {
        return Ok(None);
    };
    let (_, secret) = stripe
        .retrieve(&waiting.reference)
        .await
        .map_err(pay_error)?;
    Ok(secret.map(|client_secret| ActionSecret {
        client_secret,
        publishable_key: stripe.publishable_key.clone(),
        js_url: stripe.js_url.clone(),
    }))
}

/// After the cardholder authenticated in the browser: asks Stripe how the PaymentIntent ended
/// and records it (the webhook may have done so already; applying twice changes nothing). Returns
/// the attempt id, or `None` when no attempt waited.
pub async fn settle_action(
    pool: &Pool,
    master_key: Option<&[u8; 32]>,
    invoice_id: &str,
    today: i64,
) -> DomainResult<Option<String>> {
    let Some(waiting) = awaiting_action(pool, invoice_id).await? else {
        return Ok(None);
    };
    let Provider::Stripe(stripe) = provider(pool, master_key).await? else {
        return Ok(None);
    };
    let (outcome, _) = stripe
        .retrieve(&waiting.reference)
        .await
        .map_err(pay_error)?;
    // Still waiting (the cardholder closed the dialog): leave the attempt as it is.
    if !matches!(outcome, ChargeOutcome::RequiresAction { .. }) {
        apply(pool, &waiting.attempt_id, outcome, today).await?;
    }
    Ok(Some(waiting.attempt_id))
}

/// An invoice as the API shows it after a charge, with the attempt made (`payment`).
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ChargedInvoice {
    /// The invoice, as `GET /invoices/{id}` shows it.
    #[serde(flatten)]
    pub invoice: InvoiceObject,
    pub payment: Payment,
}

async fn charged(pool: &Pool, invoice_id: &str, attempt_id: &str) -> DomainResult<ChargedInvoice> {
    let inv = invoices::fetch(pool, invoice_id).await?;
    let lines = invoices::lines(pool, invoice_id).await?;
    Ok(ChargedInvoice {
        invoice: InvoiceObject::new(&inv, &lines),
        payment: attempts::fetch(pool, attempt_id).await?,
    })
}

/// `POST /admin/api/v1/invoices/{id}/charge`: charges now with the account's default card.
pub async fn charge_now(
    pool: &Pool,
    master_key: Option<&[u8; 32]>,
    actor: &Actor,
    invoice_id: &str,
) -> DomainResult<ChargedInvoice> {
    let attempt = charge_invoice(pool, master_key, Some(actor), invoice_id, None, today()).await?;
    charged(pool, invoice_id, &attempt).await
}

/// `POST /api/v1/invoices/{id}/pay`: the developer pays one of the account's issued invoices with
/// the default card or a chosen one of the account's (another account's invoice or card is 404).
pub async fn pay_own(
    pool: &Pool,
    master_key: Option<&[u8; 32]>,
    actor: &Actor,
    account_id: &str,
    invoice_id: &str,
    method: Option<&str>,
) -> DomainResult<ChargedInvoice> {
    let inv = invoices::fetch(pool, invoice_id).await?;
    if inv.account_id != account_id || inv.number.is_none() {
        return Err(DomainError::not_found("invoice", invoice_id));
    }
    if let Some(pm) = method {
        let p = provider(pool, master_key).await?;
        super::cards::own_card(pool, &p, account_id, pm).await?;
    }
    let attempt =
        charge_invoice(pool, master_key, Some(actor), invoice_id, method, today()).await?;
    charged(pool, invoice_id, &attempt).await
}

/// How long a request that claimed a charge holds it (seconds). Longer than every provider call
/// a charge makes (a lookup and a charge, each bounded by the provider's call timeout, at most
/// [`super::stripe::CALL_TIMEOUT`] = 20 s by default, 120 s when overridden): while it is held,
/// another pay of the same invoice gets 409 `charge_in_progress`; after it expires (the process
/// holding it died) the next pay looks the attempt up at the provider before charging.
pub const CHARGE_LEASE_SECS: i64 = 300;

fn check_chargeable(inv: &Invoice) -> DomainResult<()> {
    if inv.kind != InvoiceKind::Invoice || !CHARGEABLE.contains(&inv.state.as_str()) {
        return Err(DomainError::conflict(
            "invalid_state",
            format!("cannot charge an invoice that is {}", inv.state),
        ));
    }
    Ok(())
}

/// A charge of the invoice is in flight (its lease is held): 409 `charge_in_progress`, also for an
/// admin's mark-paid or cancel meanwhile.
pub fn in_progress() -> DomainError {
    DomainError::conflict(
        "charge_in_progress",
        "a payment of this invoice is being made; look at the invoice again in a moment",
    )
}

/// Claims the charge of `inv` in one write transaction that locks the invoice row (PostgreSQL;
/// SQLite serializes write transactions) and re-checks its state: the earlier attempt whose
/// outcome is unknown when nobody holds it (resumed: looked up before charging), else a new
/// attempt. A pending attempt another request holds (its lease not expired) answers 409
/// `charge_in_progress`: never a second provider call. Returns (attempt id, attempt, resumed).
/// A charge someone asked for (`actor`) is recorded in the audit log here, with the claim: the
/// attempt's outcome is the provider's, and shows on the invoice and its payments.
async fn claim(
    pool: &Pool,
    actor: Option<&Actor>,
    invoice_id: &str,
    p: &Provider,
    inv: &Invoice,
) -> DomainResult<(String, i64, bool)> {
    let mut tx = crate::store::begin_write(pool).await?;
    let current = fetch_tx(&mut tx, invoice_id).await?;
    check_chargeable(&current)?;
    let t = now();
    let open: Option<OpenAttempt> = sqlx::query_as(
        "SELECT id, attempt FROM charge_attempts WHERE invoice_id = $1 AND state = 'pending' ORDER BY attempt DESC LIMIT 1",
    )
    .bind(invoice_id)
    .fetch_optional(&mut *tx)
    .await?;
    let claimed = match open {
        Some(OpenAttempt { id, attempt: n }) => {
            let r = sqlx::query(
                "UPDATE charge_attempts SET lease_until = $2, updated_at = $3 WHERE id = $1 AND state = 'pending' AND (lease_until IS NULL OR lease_until <= $3)",
            )
            .bind(&id)
            .bind(t + CHARGE_LEASE_SECS)
            .bind(t)
            .execute(&mut *tx)
            .await?;
            if r.rows_affected() != 1 {
                return Err(in_progress());
            }
            (id, n, true)
        }
        None => {
            let last: i64 = sqlx::query_scalar(
                "SELECT COALESCE(MAX(attempt), 0) FROM charge_attempts WHERE invoice_id = $1",
            )
            .bind(invoice_id)
            .fetch_one(&mut *tx)
            .await?;
            let id = new_id("pay");
            let inserted = sqlx::query(
                "INSERT INTO charge_attempts (id, invoice_id, attempt, provider, idempotency_key, provider_ref, state, amount, currency, error_code, error_message, created_at, updated_at, lease_until) \
                 VALUES ($1, $2, $3, $4, $5, NULL, 'pending', $6, $7, NULL, NULL, $8, $8, $9)",
            )
            .bind(&id)
            .bind(invoice_id)
            .bind(last + 1)
            .bind(p.name())
            .bind(format!("{invoice_id}-{}", last + 1))
            .bind(inv.money(inv.total).to_string())
            .bind(inv.currency.code)
            .bind(t)
            .bind(t + CHARGE_LEASE_SECS)
            .execute(&mut *tx)
            .await;
            match inserted {
                // Another request inserted this attempt first.
                Err(e) if crate::store::is_unique_violation(&e) => return Err(in_progress()),
                r => r?,
            };
            (id, last + 1, false)
        }
    };
    if let Some(actor) = actor {
        let changes = Changes::of(&[
            ("payment_id", Value::Null, json!(claimed.0)),
            ("attempt", Value::Null, json!(claimed.1)),
            (
                "amount",
                Value::Null,
                json!(inv.money(inv.total).to_string()),
            ),
        ]);
        let object = Object {
            kind: "invoice",
            id: invoice_id,
        };
        audit::record(&mut tx, actor, "invoice.charge_attempted", object, &changes).await?;
    }
    tx.commit().await?;
    Ok(claimed)
}

#[derive(sqlx::FromRow)]
struct OpenAttempt {
    id: String,
    attempt: i64,
}

/// Gives a pending attempt's lease up (its outcome is unknown: the next pay looks it up at once).
async fn release(pool: &Pool, attempt_id: &str) -> DomainResult<()> {
    sqlx::query(
        "UPDATE charge_attempts SET lease_until = NULL WHERE id = $1 AND state = 'pending'",
    )
    .bind(attempt_id)
    .execute(pool)
    .await?;
    Ok(())
}

/// Charges an issued invoice (`pending` or `unpaid`) with `method` or the account's default card.
/// Returns the attempt id. `actor` is who asked (an admin, or the developer paying); `None` for
/// the scheduler's dunning, which the audit log does not record.
pub async fn charge_invoice(
    pool: &Pool,
    master_key: Option<&[u8; 32]>,
    actor: Option<&Actor>,
    invoice_id: &str,
    method: Option<&str>,
    today: i64,
) -> DomainResult<String> {
    let started = std::time::Instant::now();
    let inv = invoices::fetch(pool, invoice_id).await?;
    check_chargeable(&inv)?;
    let gateway = configured(pool, master_key).await?;
    let p = Provider::from_config(gateway.clone())?;
    // Never a guessed currency: an unknown stored code is an error.
    let currency = inv.currency;
    let total = inv.total;
    // Before any provider call: a currency the provider cannot charge (its units, or for
    // Braintree no merchant account in it) is refused (422).
    gateway.check_currency(currency)?;
    let (attempt_id, attempt, resumed) = claim(pool, actor, invoice_id, &p, &inv).await?;
    let attempt_key = format!("{invoice_id}-{attempt}");
    // The customer and the card to charge: the chosen one, else the default.
    let card = customer(pool, &p, &inv.account_id, false)
        .await?
        .and_then(|c| {
            method
                .map(str::to_string)
                .or(c.default_method_ref)
                .map(|m| (c.customer_ref, m))
        });
    let Some((customer_ref, method)) = card else {
        counted(&p, telemetry::ChargeOutcome::NoPaymentMethod, started);
        apply(
            pool,
            &attempt_id,
            ChargeOutcome::Declined {
                reference: None,
                code: "no_payment_method".into(),
                message: "no card on file".into(),
            },
            today,
        )
        .await?;
        return Ok(attempt_id);
    };
    if resumed {
        let found = match &p {
            Provider::Stripe(stripe) => stripe.find(&customer_ref, &attempt_key).await,
            Provider::Braintree(bt) => bt.find(&attempt_key).await,
        };
        match found {
            Ok(Some(found)) => {
                counted(&p, outcome_label(&found), started);
                apply(pool, &attempt_id, found, today).await?;
                return Ok(attempt_id);
            }
            Ok(None) => {}
            Err(e) => {
                // The lookup failed: the outcome stays unknown, and the next try looks again.
                counted(&p, telemetry::ChargeOutcome::Unknown, started);
                release(pool, &attempt_id).await?;
                return Err(pay_error(e));
            }
        }
    }
    let description = format!("Invoice {}", inv.number.as_deref().unwrap_or(invoice_id));
    let req = ChargeRequest {
        customer: &customer_ref,
        payment_method: &method,
        amount: total,
        currency,
        invoice_id,
        attempt_key: &attempt_key,
        description: &description,
    };
    let charged = match &p {
        Provider::Stripe(stripe) => stripe.charge(&req).await,
        Provider::Braintree(bt) => bt.charge(&req).await,
    };
    match charged {
        Ok(outcome) => {
            counted(&p, outcome_label(&outcome), started);
            apply(pool, &attempt_id, outcome, today).await?
        }
        Err(PayError::Provider { code, message, .. }) => {
            counted(&p, telemetry::ChargeOutcome::Declined, started);
            apply(
                pool,
                &attempt_id,
                ChargeOutcome::Declined {
                    reference: None,
                    code,
                    message,
                },
                today,
            )
            .await?
        }
        Err(e) => {
            counted(&p, telemetry::ChargeOutcome::Unknown, started);
            // Unknown outcome: the attempt stays pending and is looked up before any new charge;
            // the lease is released so that the next try looks it up at once.
            release(pool, &attempt_id).await?;
            tracing::warn!(
                invoice = invoice_id,
                attempt,
                "charge outcome unknown: {e:?}"
            );
            return Err(pay_error(e));
        }
    }
    Ok(attempt_id)
}

/// Counts one charge attempt's outcome as this request learned it (`crate::telemetry`).
fn counted(p: &Provider, outcome: telemetry::ChargeOutcome, started: std::time::Instant) {
    let provider = match p.kind() {
        ProviderKind::Stripe => telemetry::Provider::Stripe,
        ProviderKind::Braintree => telemetry::Provider::Braintree,
    };
    telemetry::get().charge(provider, outcome, started.elapsed());
}

fn outcome_label(outcome: &ChargeOutcome) -> telemetry::ChargeOutcome {
    match outcome {
        ChargeOutcome::Succeeded { .. } => telemetry::ChargeOutcome::Succeeded,
        ChargeOutcome::RequiresAction { .. } => telemetry::ChargeOutcome::ActionRequired,
        ChargeOutcome::Declined { .. } => telemetry::ChargeOutcome::Declined,
    }
}

/// Records an attempt's outcome and moves the invoice (idempotent: an attempt already settled the
/// same way changes nothing; a success always wins).
pub async fn apply(
    pool: &Pool,
    attempt_id: &str,
    outcome: ChargeOutcome,
    today: i64,
) -> DomainResult<()> {
    let settings = settings::load(pool).await?;
    let mut tx = crate::store::begin_write(pool).await?;
    let invoice_id: String =
        sqlx::query_scalar("SELECT invoice_id FROM charge_attempts WHERE id = $1")
            .bind(attempt_id)
            .fetch_one(&mut *tx)
            .await?;
    // The invoice row first (the order `claim` locks in), then the attempt's state as it is now.
    let inv = fetch_tx(&mut tx, &invoice_id).await?;
    let state: String = sqlx::query_scalar("SELECT state FROM charge_attempts WHERE id = $1")
        .bind(attempt_id)
        .fetch_one(&mut *tx)
        .await?;
    let state = AttemptState::stored(&state)?;
    let new_state = match &outcome {
        ChargeOutcome::Succeeded { .. } => AttemptState::Succeeded,
        ChargeOutcome::RequiresAction { .. } => AttemptState::RequiresAction,
        ChargeOutcome::Declined { .. } => AttemptState::Failed,
    };
    if state == new_state
        || state == AttemptState::Succeeded
        || state == AttemptState::RefundDue
        || (state == AttemptState::Failed && new_state != AttemptState::Succeeded)
    {
        return Ok(());
    }
    if let ChargeOutcome::Succeeded { reference } = &outcome {
        if !CHARGEABLE.contains(&inv.state.as_str()) {
            // The money was taken for an invoice settled meanwhile (cancelled or marked paid
            // while this charge's lease had expired): it is recorded, never lost, and never
            // turns the invoice back to paid (a cancel already gave its credit back).
            tracing::error!(
                invoice = invoice_id,
                attempt = attempt_id,
                reference = reference.as_str(),
                "charge succeeded at the provider for an invoice that is {}: refund it there (charge attempt state refund_due)",
                inv.state
            );
            sqlx::query(
                "UPDATE charge_attempts SET state = $2, provider_ref = $3, error_code = 'charged_after_settlement', error_message = $4, updated_at = $5, lease_until = NULL WHERE id = $1",
            )
            .bind(attempt_id)
            .bind(AttemptState::RefundDue.as_str())
            .bind(reference)
            .bind(format!(
                "the invoice was {} while this payment was made: the amount is to be refunded",
                inv.state
            ))
            .bind(now())
            .execute(&mut *tx)
            .await?;
            tx.commit().await?;
            return Ok(());
        }
    }
    let (reference, code, message) = match &outcome {
        ChargeOutcome::Succeeded { reference } => (Some(reference.clone()), None, None),
        ChargeOutcome::RequiresAction { reference } => (
            Some(reference.clone()),
            Some("authentication_required".to_string()),
            Some("the card needs authentication: pay the invoice in the portal".to_string()),
        ),
        ChargeOutcome::Declined {
            reference,
            code,
            message,
        } => (reference.clone(), Some(code.clone()), Some(message.clone())),
    };
    let t = now();
    sqlx::query(
        "UPDATE charge_attempts SET state = $2, provider_ref = COALESCE($3, provider_ref), error_code = $4, error_message = $5, updated_at = $6, lease_until = NULL WHERE id = $1",
    )
    .bind(attempt_id)
    .bind(new_state.as_str())
    .bind(&reference)
    .bind(&code)
    .bind(&message)
    .bind(t)
    .execute(&mut *tx)
    .await?;
    match outcome {
        ChargeOutcome::Succeeded { .. } if inv.state != InvoiceState::Paid => {
            sqlx::query("UPDATE invoices SET state = 'paid', paid_at = $2, next_charge_on = NULL, updated_at = $2 WHERE id = $1")
                    .bind(&invoice_id)
                    .bind(t)
                    .execute(&mut *tx)
                    .await?;
            email(
                &mut tx,
                &settings,
                &inv,
                Notice::ChargeSucceeded,
                attempt_id,
                "",
                t,
            )
            .await?;
            webhooks::enqueue(
                &mut tx,
                Event::InvoicePaid(InvoiceData::of(&inv, InvoiceState::Paid.as_str())),
            )
            .await?;
            resume_if_settled(&mut tx, &inv.account_id).await?;
        }
        // Authentication failed after the charge asked for it: the attempt already counted as
        // one failure when it asked; it is not counted twice.
        ChargeOutcome::Declined { .. } if state == AttemptState::RequiresAction => {}
        _ if matches!(inv.state, InvoiceState::Pending | InvoiceState::Unpaid) => {
            let failures = inv_failed_attempts(&mut tx, &invoice_id).await? + 1;
            let last = failures >= settings.retry.attempts;
            sqlx::query(
                "UPDATE invoices SET state = $2, failed_attempts = $3, next_charge_on = $4, updated_at = $5 WHERE id = $1",
            )
            .bind(&invoice_id)
            .bind(if last { "failed" } else { "unpaid" })
            .bind(failures)
            .bind((!last).then_some(today + settings.retry.interval_days))
            .bind(t)
            .execute(&mut *tx)
            .await?;
            let reason = message.clone().unwrap_or_default();
            let failed = InvoiceData {
                failure: Some(PaymentFailure {
                    code: code.clone(),
                    message: message.clone(),
                    failed_attempts: failures,
                    next_attempt_on: (!last)
                        .then(|| format_date(today + settings.retry.interval_days)),
                }),
                ..InvoiceData::of(&inv, if last { "failed" } else { "unpaid" })
            };
            let mut events = vec![Event::InvoicePaymentFailed(failed.clone())];
            if last {
                // Dunning is over: the invoice is overdue for good (and the account may be
                // suspended below, which sends its own events).
                events.push(Event::InvoiceOverdue(failed));
            }
            webhooks::enqueue_many(&mut tx, &events).await?;
            if last {
                email(
                    &mut tx,
                    &settings,
                    &inv,
                    Notice::FinalFailure,
                    attempt_id,
                    &reason,
                    t,
                )
                .await?;
                if settings.suspend_on_failure {
                    suspend_for_non_payment(&mut tx, &inv.account_id).await?;
                }
            } else {
                email(
                    &mut tx,
                    &settings,
                    &inv,
                    Notice::ChargeFailed,
                    attempt_id,
                    &reason,
                    t,
                )
                .await?;
            }
        }
        _ => {}
    }
    tx.commit().await?;
    Ok(())
}

/// The invoice, its row locked until `tx` ends (see [`crate::store::for_update`]).
async fn fetch_tx(tx: &mut Tx, id: &str) -> DomainResult<Invoice> {
    let row = sqlx::query(&format!(
        "SELECT {} FROM invoices WHERE id = $1{}",
        invoices::INVOICE_COLUMNS,
        crate::store::for_update()
    ))
    .bind(id)
    .fetch_one(&mut **tx)
    .await?;
    Invoice::from_row(&row)
}

async fn inv_failed_attempts(tx: &mut Tx, id: &str) -> DomainResult<i64> {
    Ok(
        sqlx::query_scalar("SELECT failed_attempts FROM invoices WHERE id = $1")
            .bind(id)
            .fetch_one(&mut **tx)
            .await?,
    )
}

#[derive(sqlx::FromRow)]
struct Recipient {
    name: String,
    email: String,
}

/// The emails a charge's outcome sends.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Notice {
    ChargeSucceeded,
    ChargeFailed,
    /// The last attempt dunning makes failed.
    FinalFailure,
}

impl Notice {
    fn kind(self) -> EmailKind {
        match self {
            Notice::ChargeSucceeded => EmailKind::ChargeSucceeded,
            Notice::ChargeFailed => EmailKind::ChargeFailed,
            Notice::FinalFailure => EmailKind::FinalFailure,
        }
    }
}

async fn email(
    tx: &mut Tx,
    settings: &BillingSettings,
    inv: &Invoice,
    notice: Notice,
    attempt_id: &str,
    reason: &str,
    t: i64,
) -> DomainResult<()> {
    let texts = &settings.email_texts;
    let text = match notice {
        Notice::ChargeSucceeded => &texts.charge_succeeded,
        Notice::FinalFailure => &texts.final_failure,
        Notice::ChargeFailed => &texts.charge_failed,
    };
    let kind = notice.kind();
    let Recipient { name, email } =
        sqlx::query_as("SELECT name, email FROM accounts WHERE id = $1")
            .bind(&inv.account_id)
            .fetch_one(&mut **tx)
            .await?;
    let number = inv.number.clone().unwrap_or_default();
    let render = |s: &str| {
        render_text(
            s,
            &name,
            &number,
            &inv.money(inv.total).to_string(),
            inv.currency.code,
            &inv.due_on.map(format_date).unwrap_or_default(),
            &format_month(inv.period_start),
        )
        .replace("{update_url}", &settings.payment_method_url)
        .replace("{reason}", reason)
    };
    enqueue(
        tx,
        &Email {
            dedupe_key: format!("{}:{attempt_id}", kind.as_str()),
            kind,
            recipient: email,
            subject: render(&text.subject),
            body: render(&text.body),
            invoice_id: None,
        },
        t,
    )
    .await
}

/// The applications of `account_id` in `state`, their rows locked until `tx` ends.
async fn applications_in(tx: &mut Tx, account_id: &str, state: &str) -> DomainResult<Vec<String>> {
    Ok(sqlx::query_scalar(&format!(
        "SELECT id FROM applications WHERE account_id = $1 AND state = $2 ORDER BY id{}",
        crate::store::for_update()
    ))
    .bind(account_id)
    .bind(state)
    .fetch_all(&mut **tx)
    .await?)
}

/// `application.suspended` / `application.resumed` for each of `ids`, as they are now in `tx`.
async fn application_events(
    tx: &mut Tx,
    ids: &[String],
    event: fn(ApplicationData) -> Event,
) -> DomainResult<()> {
    let mut events = Vec::with_capacity(ids.len());
    for id in ids {
        events.push(event(applications::event_data(tx, id).await?));
    }
    webhooks::enqueue_many(tx, &events).await.map(|_| ())
}

async fn suspend_for_non_payment(tx: &mut Tx, account_id: &str) -> DomainResult<()> {
    let live = applications_in(tx, account_id, "live").await?;
    sqlx::query("UPDATE applications SET state = 'suspended', state_reason = 'non_payment', updated_at = $2 WHERE account_id = $1 AND state = 'live'")
        .bind(account_id)
        .bind(now())
        .execute(&mut **tx)
        .await?;
    application_events(tx, &live, Event::ApplicationSuspended).await?;
    crate::domain::catalog::revision::bump(tx).await
}

async fn resume_if_settled(tx: &mut Tx, account_id: &str) -> DomainResult<()> {
    let failed: i64 = sqlx::query_scalar(
        "SELECT COUNT(*) FROM invoices WHERE account_id = $1 AND state = 'failed'",
    )
    .bind(account_id)
    .fetch_one(&mut **tx)
    .await?;
    if failed > 0 {
        return Ok(());
    }
    let suspended: Vec<String> = sqlx::query_scalar(&format!(
        "SELECT id FROM applications WHERE account_id = $1 AND state = 'suspended' AND state_reason = 'non_payment' ORDER BY id{}",
        crate::store::for_update()
    ))
    .bind(account_id)
    .fetch_all(&mut **tx)
    .await?;
    let r = sqlx::query("UPDATE applications SET state = 'live', state_reason = NULL, updated_at = $2 WHERE account_id = $1 AND state = 'suspended' AND state_reason = 'non_payment'")
        .bind(account_id)
        .bind(now())
        .execute(&mut **tx)
        .await?;
    if r.rows_affected() > 0 {
        application_events(tx, &suspended, Event::ApplicationResumed).await?;
        crate::domain::catalog::revision::bump(tx).await?;
    }
    Ok(())
}

/// Charges every invoice due on `today` (issued and due, or unpaid with a retry due). Errors on one
/// invoice are logged and do not stop the others. Returns (attempted, paid).
pub async fn charge_due(
    pool: &Pool,
    master_key: Option<&[u8; 32]>,
    today: i64,
) -> DomainResult<(usize, usize)> {
    let settings = settings::load(pool).await?;
    if !settings.charging_enabled {
        return Ok((0, 0));
    }
    let due: Vec<String> = sqlx::query_scalar(
        "SELECT id FROM invoices WHERE kind = 'invoice' AND ((state = 'pending' AND due_on <= $1) OR (state = 'unpaid' AND next_charge_on <= $1)) ORDER BY id LIMIT $2",
    )
    .bind(today)
    .bind(MAX_CHARGES_PER_PASS)
    .fetch_all(pool)
    .await?;
    let (mut attempted, mut paid) = (0, 0);
    for id in due {
        attempted += 1;
        match charge_invoice(pool, master_key, None, &id, None, today).await {
            Ok(_) => {
                if invoices::fetch(pool, &id).await?.state == InvoiceState::Paid {
                    paid += 1;
                }
            }
            Err(e) => tracing::warn!(invoice = id, "charge failed to run: {e:?}"),
        }
    }
    Ok((attempted, paid))
}

/// Today (UTC day number), the day charges and retries are scheduled against.
pub fn today() -> i64 {
    day_of(now())
}
