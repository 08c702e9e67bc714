//! Webhook endpoints: where events go. An endpoint belongs to the admin (it may subscribe to
//! every event) or to one account (it receives only that account's events). Its URL passes the
//! outbound rule ([`crate::outbound::check`]) when saved, and again at every delivery. Its signing
//! secret is made here, shown once in the creating answer and stored sealed with the master key.

use serde::{Deserialize, Serialize};

use super::events::EventType;
use super::signing::new_secret;
use crate::domain::accounts::account::Deleted;
use crate::domain::audit::{self, Actor, ActorType, Changes, Object};
use crate::domain::page::page;
use crate::domain::{DomainError, DomainResult, Page, PageRequest};
use crate::secrets::{new_id, seal, SealedAt};
use crate::store::{now, Pool, Tx};

/// Longest endpoint URL accepted.
pub const MAX_URL_CHARS: usize = 2_048;
/// Longest description.
pub const MAX_DESCRIPTION_CHARS: usize = 500;
/// Most endpoints one owner (the admin, or one account) holds: every event is delivered to each,
/// so this bounds an event's fan-out per owner.
pub const MAX_ENDPOINTS_PER_OWNER: i64 = 20;

/// Who an endpoint belongs to, and so which events it may receive; also who is asking.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Owner {
    /// The provider: every event.
    Admin,
    /// One account: that account's events only.
    Account(String),
}

impl Owner {
    fn account_id(&self) -> Option<&str> {
        match self {
            Owner::Admin => None,
            Owner::Account(id) => Some(id),
        }
    }
}

/// Where a secret of endpoint `id` is sealed.
pub fn sealed_at(id: &str) -> SealedAt<'_> {
    SealedAt {
        table: "webhook_endpoints",
        field: "secret",
        row: id,
    }
}

/// Where the previous secret of endpoint `id` is sealed (after a rotation).
pub fn previous_sealed_at(id: &str) -> SealedAt<'_> {
    SealedAt {
        table: "webhook_endpoints",
        field: "previous_secret",
        row: id,
    }
}

/// How long the previous secret keeps signing after a rotation when none is asked for, and at
/// most: receivers switch to the new secret meanwhile (each attempt carries both signatures).
pub const DEFAULT_ROTATION_GRACE_SECS: i64 = 24 * 3600;
pub const MAX_ROTATION_GRACE_SECS: i64 = 7 * 24 * 3600;

/// `POST …/webhook_endpoints/{id}/rotate_secret`.
#[derive(Debug, Default, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RotateSecretInput {
    /// How long the old secret also signs: 0 to 7 days in seconds, default one day.
    pub grace_seconds: Option<i64>,
}

/// Why an endpoint is disabled.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum DisabledReason {
    /// Someone set `enabled: false`.
    Admin,
    /// A delivery spent its whole retry window while the endpoint accepted nothing.
    Failures,
    /// The endpoint answered `410 Gone`: its owner says it is no more (Standard Webhooks).
    Gone,
}

impl DisabledReason {
    pub fn as_str(self) -> &'static str {
        match self {
            DisabledReason::Admin => "admin",
            DisabledReason::Failures => "failures",
            DisabledReason::Gone => "gone",
        }
    }

    fn parse(s: &str) -> DomainResult<DisabledReason> {
        [
            DisabledReason::Admin,
            DisabledReason::Failures,
            DisabledReason::Gone,
        ]
        .into_iter()
        .find(|r| r.as_str() == s)
        .ok_or_else(|| DomainError::Internal(format!("stored disabled reason {s:?} is unknown")))
    }
}

/// An endpoint as the APIs show it: never its secret.
#[derive(Clone, Debug, Serialize, utoipa::ToSchema)]
pub struct WebhookEndpoint {
    /// Always `"webhook_endpoint"`.
    pub object: &'static str,
    pub id: String,
    /// The owning account; `null` for the admin's endpoints (which receive every account's events).
    pub account_id: Option<String>,
    pub url: String,
    pub description: String,
    /// The subscribed event types, sorted.
    pub events: Vec<String>,
    pub enabled: bool,
    /// Set while disabled: `admin`, `failures` or `gone`.
    pub disabled_reason: Option<DisabledReason>,
    /// Failed attempts since the last delivered one.
    pub consecutive_failures: i64,
    /// When it last accepted a delivery (Unix seconds).
    pub last_success_at: Option<i64>,
    pub created_at: i64,
    pub updated_at: i64,
}

/// A new endpoint: the only answer that carries its signing secret.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct CreatedWebhookEndpoint {
    #[serde(flatten)]
    pub endpoint: WebhookEndpoint,
    /// `whsec_...`: verify signatures with it (Standard Webhooks). Shown only now.
    pub secret: String,
}

/// `POST …/webhook_endpoints`.
#[derive(Debug, Default, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct WebhookEndpointInput {
    /// `https://` URL of a public host (loopback over http only with
    /// `TOLLGATE_ALLOW_LOOPBACK_URLS=true`).
    pub url: Option<String>,
    /// Event types to receive (at least one; see docs/webhooks.md).
    pub events: Option<Vec<String>>,
    pub description: Option<String>,
}

/// `PATCH …/webhook_endpoints/{id}`: absent fields stay.
#[derive(Debug, Default, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct WebhookEndpointUpdate {
    pub url: Option<String>,
    pub events: Option<Vec<String>>,
    pub description: Option<String>,
    /// `false` stops deliveries (pending ones wait); `true` resumes them, their retry windows
    /// starting again.
    pub enabled: Option<bool>,
}

#[derive(sqlx::FromRow)]
struct EndpointRow {
    id: String,
    account_id: Option<String>,
    url: String,
    description: String,
    state: String,
    disabled_reason: Option<String>,
    consecutive_failures: i64,
    last_success_at: Option<i64>,
    created_at: i64,
    updated_at: i64,
}

const ENDPOINT_COLUMNS: &str = "id, account_id, url, description, state, disabled_reason, consecutive_failures, last_success_at, created_at, updated_at";

impl EndpointRow {
    fn render(self, events: Vec<String>) -> DomainResult<WebhookEndpoint> {
        Ok(WebhookEndpoint {
            object: "webhook_endpoint",
            enabled: match self.state.as_str() {
                "enabled" => true,
                "disabled" => false,
                other => {
                    return Err(DomainError::Internal(format!(
                        "stored endpoint state {other:?} is neither enabled nor disabled"
                    )))
                }
            },
            disabled_reason: self
                .disabled_reason
                .as_deref()
                .map(DisabledReason::parse)
                .transpose()?,
            id: self.id,
            account_id: self.account_id,
            url: self.url,
            description: self.description,
            events,
            consecutive_failures: self.consecutive_failures,
            last_success_at: self.last_success_at,
            created_at: self.created_at,
            updated_at: self.updated_at,
        })
    }
}

fn check_url(url: Option<&str>) -> DomainResult<String> {
    let url = url.map(str::trim).unwrap_or_default();
    if url.is_empty() {
        return Err(DomainError::invalid(
            "url",
            "missing_field",
            "url is required",
        ));
    }
    if url.chars().count() > MAX_URL_CHARS {
        return Err(DomainError::invalid(
            "url",
            "invalid_url",
            format!("at most {MAX_URL_CHARS} characters"),
        ));
    }
    crate::outbound::check(url).map_err(|why| {
        DomainError::invalid(
            "url",
            "invalid_url",
            format!(
                "{why} (loopback over http only with {}=true; private and link-local addresses are refused)",
                crate::outbound::ALLOW_LOOPBACK_ENV
            ),
        )
    })?;
    Ok(url.to_string())
}

/// Checks an `events` list: at least one subscribable type, each known; answers them sorted,
/// deduplicated.
pub fn check_events(events: Option<&[String]>) -> DomainResult<Vec<EventType>> {
    let names = EventType::subscribable_names().join(", ");
    let Some(events) = events.filter(|e| !e.is_empty()) else {
        return Err(DomainError::invalid(
            "events",
            "missing_events",
            format!("at least one event type, of: {names}"),
        ));
    };
    let mut out = Vec::with_capacity(events.len());
    for (i, name) in events.iter().enumerate() {
        match EventType::parse(name).filter(|t| t.subscribable()) {
            Some(t) => out.push(t),
            None => {
                return Err(DomainError::invalid(
                    format!("events[{i}]"),
                    "unknown_event_type",
                    format!("unknown event type {name:?}; known: {names}"),
                ))
            }
        }
    }
    out.sort();
    out.dedup();
    Ok(out)
}

fn check_description(d: Option<&str>) -> DomainResult<String> {
    let d = d.unwrap_or_default();
    if d.chars().count() > MAX_DESCRIPTION_CHARS {
        return Err(DomainError::invalid(
            "description",
            "invalid_description",
            format!("at most {MAX_DESCRIPTION_CHARS} characters"),
        ));
    }
    Ok(d.to_string())
}

fn master_key_required() -> DomainError {
    DomainError::conflict(
        "master_key_required",
        "set TOLLGATE_MASTER_KEY (at least 32 characters) on the server before creating webhook endpoints: their signing secrets are stored sealed with it",
    )
}

async fn set_events(tx: &mut Tx, id: &str, events: &[EventType]) -> DomainResult<()> {
    sqlx::query("DELETE FROM webhook_endpoint_events WHERE endpoint_id = $1")
        .bind(id)
        .execute(&mut **tx)
        .await?;
    for t in events {
        sqlx::query(
            "INSERT INTO webhook_endpoint_events (endpoint_id, event_type) VALUES ($1, $2)",
        )
        .bind(id)
        .bind(t.as_str())
        .execute(&mut **tx)
        .await?;
    }
    Ok(())
}

async fn events_of<'c>(
    db: impl sqlx::Executor<'c, Database = sqlx::Any>,
    id: &str,
) -> DomainResult<Vec<String>> {
    Ok(sqlx::query_scalar(
        "SELECT event_type FROM webhook_endpoint_events WHERE endpoint_id = $1 ORDER BY event_type",
    )
    .bind(id)
    .fetch_all(db)
    .await?)
}

/// Endpoint `id` as the APIs show it, read inside `tx` with its row locked (PostgreSQL; SQLite's
/// write transaction holds the lock already): the audit log's before and after images, the before
/// image not stale under a concurrent write.
async fn shown_tx(tx: &mut Tx, id: &str) -> DomainResult<WebhookEndpoint> {
    let row: EndpointRow = sqlx::query_as(&format!(
        "SELECT {ENDPOINT_COLUMNS} FROM webhook_endpoints WHERE id = $1{}",
        crate::store::for_update()
    ))
    .bind(id)
    .fetch_optional(&mut **tx)
    .await?
    .ok_or_else(|| DomainError::not_found("webhook endpoint", id))?;
    let events = events_of(&mut **tx, id).await?;
    row.render(events)
}

/// The audit event of a write of an endpoint or a delivery (`object`), inside its transaction:
/// an admin's write (API, portal). An account's writes to its own endpoints are its own
/// configuration, like its cards, and are not recorded: an account writes without a limit, and
/// the log is kept forever (docs/operations.md, "Audit log").
pub(super) async fn record(
    tx: &mut Tx,
    actor: &Actor,
    action: &str,
    object: Object<'_>,
    changes: &Changes,
) -> DomainResult<()> {
    if actor.kind == ActorType::Account {
        return Ok(());
    }
    audit::record(tx, actor, action, object, changes).await
}

/// The audit object of endpoint `id`.
pub(super) fn object(id: &str) -> Object<'_> {
    Object {
        kind: "webhook_endpoint",
        id,
    }
}

/// Creates an endpoint for `owner`; the answer carries the secret, this once.
pub async fn create(
    pool: &Pool,
    master_key: Option<&[u8; 32]>,
    actor: &Actor,
    owner: &Owner,
    input: WebhookEndpointInput,
) -> DomainResult<CreatedWebhookEndpoint> {
    let url = check_url(input.url.as_deref())?;
    let events = check_events(input.events.as_deref())?;
    let description = check_description(input.description.as_deref())?;
    let key = master_key.ok_or_else(master_key_required)?;
    let id = new_id("we");
    let secret = new_secret();
    let t = now();
    let mut tx = crate::store::begin_write(pool).await?;
    if let Owner::Account(account_id) = owner {
        // Locks the account row (PostgreSQL), so two creations cannot both see room under the cap.
        let r = sqlx::query("UPDATE accounts SET updated_at = updated_at WHERE id = $1")
            .bind(account_id)
            .execute(&mut *tx)
            .await?;
        if r.rows_affected() == 0 {
            return Err(DomainError::not_found("account", account_id.clone()));
        }
    }
    let (held,): (i64,) = sqlx::query_as(
        "SELECT COUNT(*) FROM webhook_endpoints WHERE ($1 = '' AND account_id IS NULL) OR account_id = $1",
    )
    .bind(owner.account_id().unwrap_or_default())
    .fetch_one(&mut *tx)
    .await?;
    if held >= MAX_ENDPOINTS_PER_OWNER {
        return Err(DomainError::conflict(
            "endpoint_limit_reached",
            format!("at most {MAX_ENDPOINTS_PER_OWNER} webhook endpoints; delete one first"),
        ));
    }
    sqlx::query(
        "INSERT INTO webhook_endpoints (id, account_id, url, description, secret_sealed, state, disabled_reason, consecutive_failures, last_success_at, created_at, updated_at) \
         VALUES ($1, $2, $3, $4, $5, 'enabled', NULL, 0, NULL, $6, $6)",
    )
    .bind(&id)
    .bind(owner.account_id())
    .bind(&url)
    .bind(&description)
    .bind(seal(key, secret.as_bytes(), sealed_at(&id)))
    .bind(t)
    .execute(&mut *tx)
    .await?;
    set_events(&mut tx, &id, &events).await?;
    let after = shown_tx(&mut tx, &id).await?;
    let changes = Changes::between(None, Some(&after))?;
    record(
        &mut tx,
        actor,
        "webhook_endpoint.created",
        object(&id),
        &changes,
    )
    .await?;
    tx.commit().await?;
    Ok(CreatedWebhookEndpoint {
        endpoint: get(pool, owner, &id).await?,
        secret,
    })
}

/// Endpoint `id` if `viewer` may see it (the admin sees all; an account its own); not found
/// otherwise, exactly like a missing one.
async fn fetch_row(pool: &Pool, viewer: &Owner, id: &str) -> DomainResult<EndpointRow> {
    let row: Option<EndpointRow> = sqlx::query_as(&format!(
        "SELECT {ENDPOINT_COLUMNS} FROM webhook_endpoints WHERE id = $1"
    ))
    .bind(id)
    .fetch_optional(pool)
    .await?;
    match row {
        Some(r) if *viewer == Owner::Admin || r.account_id.as_deref() == viewer.account_id() => {
            Ok(r)
        }
        _ => Err(DomainError::not_found("webhook endpoint", id)),
    }
}

/// Not found unless `viewer` may see endpoint `id`.
pub async fn must_see(pool: &Pool, viewer: &Owner, id: &str) -> DomainResult<()> {
    fetch_row(pool, viewer, id).await.map(|_| ())
}

pub async fn get(pool: &Pool, viewer: &Owner, id: &str) -> DomainResult<WebhookEndpoint> {
    let row = fetch_row(pool, viewer, id).await?;
    let events = events_of(pool, id).await?;
    row.render(events)
}

/// A page of the endpoints `viewer` sees, in id order.
pub async fn list(
    pool: &Pool,
    viewer: &Owner,
    req: &PageRequest,
) -> DomainResult<Page<WebhookEndpoint>> {
    let rows: Vec<EndpointRow> = sqlx::query_as(&format!(
        "SELECT {ENDPOINT_COLUMNS} FROM webhook_endpoints WHERE id > $1 AND ($2 = '' OR account_id = $2) ORDER BY id LIMIT $3"
    ))
    .bind(&req.after)
    .bind(viewer.account_id().unwrap_or_default())
    .bind(req.limit + 1)
    .fetch_all(pool)
    .await?;
    let rows = page(rows, req.limit, |r| &r.id);
    let mut data = Vec::with_capacity(rows.data.len());
    let Page {
        object,
        data: found,
        has_more,
        next_cursor,
    } = rows;
    for r in found {
        let events = events_of(pool, &r.id).await?;
        data.push(r.render(events)?);
    }
    Ok(Page {
        object,
        data,
        has_more,
        next_cursor,
    })
}

/// Changes what `input` has. Enabling resumes the endpoint's pending deliveries at once, their
/// retry windows starting again (they waited while it was disabled).
pub async fn update(
    pool: &Pool,
    actor: &Actor,
    viewer: &Owner,
    id: &str,
    input: WebhookEndpointUpdate,
) -> DomainResult<WebhookEndpoint> {
    let row = fetch_row(pool, viewer, id).await?;
    let url = match input.url.as_deref() {
        Some(u) => check_url(Some(u))?,
        None => row.url.clone(),
    };
    let events = input
        .events
        .as_deref()
        .map(|e| check_events(Some(e)))
        .transpose()?;
    let description = match input.description.as_deref() {
        Some(d) => check_description(Some(d))?,
        None => row.description.clone(),
    };
    let t = now();
    let mut tx = crate::store::begin_write(pool).await?;
    let before = shown_tx(&mut tx, id).await?;
    sqlx::query(
        "UPDATE webhook_endpoints SET url = $2, description = $3, updated_at = $4 WHERE id = $1",
    )
    .bind(id)
    .bind(&url)
    .bind(&description)
    .bind(t)
    .execute(&mut *tx)
    .await?;
    if let Some(events) = &events {
        set_events(&mut tx, id, events).await?;
    }
    match input.enabled {
        Some(false) => {
            let r = sqlx::query("UPDATE webhook_endpoints SET state = 'disabled', disabled_reason = 'admin' WHERE id = $1 AND state = 'enabled'")
                .bind(id)
                .execute(&mut *tx)
                .await?;
            if r.rows_affected() == 1 {
                park_pending(&mut tx, id).await?;
            }
        }
        Some(true) => {
            let r = sqlx::query("UPDATE webhook_endpoints SET state = 'enabled', disabled_reason = NULL, consecutive_failures = 0 WHERE id = $1 AND state = 'disabled'")
                .bind(id)
                .execute(&mut *tx)
                .await?;
            if r.rows_affected() == 1 {
                let t_ms = crate::store::now_ms();
                sqlx::query("UPDATE webhook_deliveries SET next_attempt_at = $2, window_started_at = $2 WHERE endpoint_id = $1 AND state = 'pending'")
                    .bind(id)
                    .bind(t_ms)
                    .execute(&mut *tx)
                    .await?;
            }
        }
        None => {}
    }
    let after = shown_tx(&mut tx, id).await?;
    let action = match (before.enabled, after.enabled) {
        (true, false) => "webhook_endpoint.disabled",
        (false, true) => "webhook_endpoint.enabled",
        _ => "webhook_endpoint.updated",
    };
    let changes = Changes::between(Some(&before), Some(&after))?;
    record(&mut tx, actor, action, object(id), &changes).await?;
    tx.commit().await?;
    get(pool, viewer, id).await
}

/// When a disabled endpoint's pending deliveries are due: never, until it is enabled again (which
/// makes them due at once). Parked so that the sender's due query does not step over them.
pub const PARKED_MS: i64 = i64::MAX;

/// Parks the pending deliveries of endpoint `id`, which is being disabled in `tx`.
pub async fn park_pending(tx: &mut Tx, id: &str) -> DomainResult<()> {
    sqlx::query(
        "UPDATE webhook_deliveries SET next_attempt_at = $2 WHERE endpoint_id = $1 AND state = 'pending'",
    )
    .bind(id)
    .bind(PARKED_MS)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// Deletes an endpoint with its delivery log; its deliveries in flight end without a record.
pub async fn delete(pool: &Pool, actor: &Actor, viewer: &Owner, id: &str) -> DomainResult<Deleted> {
    fetch_row(pool, viewer, id).await?;
    let mut tx = crate::store::begin_write(pool).await?;
    let before = shown_tx(&mut tx, id).await?;
    let changes = Changes::between(Some(&before), None)?;
    record(
        &mut tx,
        actor,
        "webhook_endpoint.deleted",
        object(id),
        &changes,
    )
    .await?;
    // Children first: SQLite applies ON DELETE CASCADE, but the attempts hang off deliveries.
    sqlx::query("DELETE FROM webhook_attempts WHERE delivery_id IN (SELECT id FROM webhook_deliveries WHERE endpoint_id = $1)")
        .bind(id)
        .execute(&mut *tx)
        .await?;
    sqlx::query("DELETE FROM webhook_deliveries WHERE endpoint_id = $1")
        .bind(id)
        .execute(&mut *tx)
        .await?;
    sqlx::query("DELETE FROM webhook_endpoint_events WHERE endpoint_id = $1")
        .bind(id)
        .execute(&mut *tx)
        .await?;
    sqlx::query("DELETE FROM webhook_endpoints WHERE id = $1")
        .bind(id)
        .execute(&mut *tx)
        .await?;
    tx.commit().await?;
    Ok(Deleted::new("webhook_endpoint", id))
}

/// Gives endpoint `id` a new signing secret (answered this once); the old one also signs every
/// attempt (a second `v1,` signature) for the grace period, then only the new one.
pub async fn rotate_secret(
    pool: &Pool,
    master_key: Option<&[u8; 32]>,
    actor: &Actor,
    viewer: &Owner,
    id: &str,
    input: RotateSecretInput,
) -> DomainResult<CreatedWebhookEndpoint> {
    let grace = input.grace_seconds.unwrap_or(DEFAULT_ROTATION_GRACE_SECS);
    if !(0..=MAX_ROTATION_GRACE_SECS).contains(&grace) {
        return Err(DomainError::invalid(
            "grace_seconds",
            "invalid_grace",
            format!("0 to {MAX_ROTATION_GRACE_SECS} seconds"),
        ));
    }
    fetch_row(pool, viewer, id).await?;
    let key = master_key.ok_or_else(master_key_required)?;
    let mut tx = crate::store::begin_write(pool).await?;
    let (current, old_expiry): (String, Option<i64>) = sqlx::query_as(&format!(
        "SELECT secret_sealed, previous_secret_expires_at FROM webhook_endpoints WHERE id = $1{}",
        crate::store::for_update()
    ))
    .bind(id)
    .fetch_optional(&mut *tx)
    .await?
    .ok_or_else(|| DomainError::not_found("webhook endpoint", id))?;
    // The current secret moves to the previous one's place, re-sealed for that place.
    let previous = crate::secrets::open(key, &current, sealed_at(id)).map_err(|e| {
        DomainError::Internal(format!(
            "the secret of webhook endpoint {id} does not open: {e}"
        ))
    })?;
    let secret = new_secret();
    let t = now();
    sqlx::query(
        "UPDATE webhook_endpoints SET secret_sealed = $2, previous_secret_sealed = $3, previous_secret_expires_at = $4, updated_at = $5 WHERE id = $1",
    )
    .bind(id)
    .bind(seal(key, secret.as_bytes(), sealed_at(id)))
    .bind((grace > 0).then(|| seal(key, &previous, previous_sealed_at(id))))
    .bind((grace > 0).then_some(t + grace))
    .bind(t)
    .execute(&mut *tx)
    .await?;
    // The secrets themselves never: `secret` is a redacted field, so both sides are
    // `[redacted]` whatever is passed (that it changed is the news).
    let changes = Changes::of(&[
        ("secret", serde_json::json!(true), serde_json::json!(true)),
        (
            "previous_secret_expires_at",
            serde_json::json!(old_expiry),
            serde_json::json!((grace > 0).then_some(t + grace)),
        ),
    ]);
    record(
        &mut tx,
        actor,
        "webhook_endpoint.secret_rotated",
        object(id),
        &changes,
    )
    .await?;
    tx.commit().await?;
    Ok(CreatedWebhookEndpoint {
        endpoint: get(pool, viewer, id).await?,
        secret,
    })
}

/// Whether endpoint `id` is enabled.
pub async fn is_enabled(pool: &Pool, id: &str) -> DomainResult<bool> {
    let state: Option<String> =
        sqlx::query_scalar("SELECT state FROM webhook_endpoints WHERE id = $1")
            .bind(id)
            .fetch_optional(pool)
            .await?;
    Ok(state.as_deref() == Some("enabled"))
}
