//! The webhook outbox: an event is written in the transaction of the change it reports (so it
//! exists exactly when the change does), with one delivery row per endpoint subscribed to it at
//! that moment: the admin's enabled endpoints subscribed to its type, and those of the account
//! the event is about. [`super::deliver`] sends them.
//!
//! An endpoint created while an event's transaction is open may miss that event (the fan-out
//! reads the endpoints inside the transaction): an endpoint receives the events committed after
//! it was.

use std::collections::HashMap;

use serde::Serialize;
use serde_json::{json, Value};

use super::endpoints::{self, Owner};
use super::events::{Event, EventType, TestData};
use crate::domain::audit::{Actor, Changes, Object};
use crate::domain::page::page;
use crate::domain::{DomainError, DomainResult, Page, PageRequest};
use crate::secrets::new_id;
use crate::store::{now, now_ms, Pool, Tx};

/// A delivery's place in its life.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum DeliveryState {
    /// Waiting for its (next) attempt.
    Pending,
    /// An attempt is under way (claimed by a sender, with a lease).
    Delivering,
    /// The endpoint answered 2xx.
    Delivered,
    /// Its retry window was spent without a 2xx (replay sends it again).
    Failed,
}

impl DeliveryState {
    pub fn as_str(self) -> &'static str {
        match self {
            DeliveryState::Pending => "pending",
            DeliveryState::Delivering => "delivering",
            DeliveryState::Delivered => "delivered",
            DeliveryState::Failed => "failed",
        }
    }

    fn parse(s: &str) -> DomainResult<DeliveryState> {
        [
            DeliveryState::Pending,
            DeliveryState::Delivering,
            DeliveryState::Delivered,
            DeliveryState::Failed,
        ]
        .into_iter()
        .find(|v| v.as_str() == s)
        .ok_or_else(|| DomainError::Internal(format!("stored delivery state {s:?} is unknown")))
    }
}

/// An endpoint's subscription, as the fan-out reads it.
#[derive(sqlx::FromRow)]
struct Subscription {
    endpoint_id: String,
    account_id: Option<String>,
    event_type: String,
}

/// A row of `webhook_messages` to write.
struct EventRow {
    id: String,
    event_type: &'static str,
    account_id: Option<String>,
    payload: String,
}

/// Writes `events` in `tx` and fans each out to the enabled endpoints subscribed to it; returns
/// the ids (`msg_...`, the `webhook-id` of every delivery) of the events written. An event no
/// endpoint receives is not written at all: with no endpoint, a change costs one indexed read
/// ([`subscriptions`]).
pub async fn enqueue_many(tx: &mut Tx, events: &[Event]) -> DomainResult<Vec<String>> {
    if events.is_empty() {
        return Ok(Vec::new());
    }
    let subs = subscriptions(tx, events).await?;
    if subs.is_empty() {
        return Ok(Vec::new());
    }
    let mut by_type: HashMap<&str, Vec<&Subscription>> = HashMap::new();
    for s in &subs {
        by_type.entry(s.event_type.as_str()).or_default().push(s);
    }
    let t = now();
    let mut rows: Vec<EventRow> = Vec::new();
    let mut deliveries: Vec<(usize, &str)> = Vec::new();
    for e in events {
        let event_type = e.event_type().as_str();
        let about = e.account_id();
        let to: Vec<&str> = by_type
            .get(event_type)
            .into_iter()
            .flatten()
            .filter(|s| match (s.account_id.as_deref(), about) {
                (None, _) => true,
                (Some(owner), Some(about)) => owner == about,
                (Some(_), None) => false,
            })
            .map(|s| s.endpoint_id.as_str())
            .collect();
        if to.is_empty() {
            continue;
        }
        deliveries.extend(to.into_iter().map(|endpoint| (rows.len(), endpoint)));
        rows.push(EventRow {
            id: new_id("msg"),
            event_type,
            account_id: about.map(str::to_string),
            payload: e.body(t),
        });
    }
    let deliveries: Vec<(&str, &str)> = deliveries
        .into_iter()
        .map(|(i, endpoint)| (rows[i].id.as_str(), endpoint))
        .collect();
    insert_events(tx, &rows, t).await?;
    insert_deliveries(tx, &deliveries).await?;
    Ok(rows.iter().map(|r| r.id.clone()).collect())
}

/// The enabled endpoints' subscriptions to the types of `events` that may receive them: the
/// admin's, and those of the accounts the events are about. Read by owner through the
/// `webhook_endpoints (account_id)` index and by type through the subscriptions' key, so an event
/// about account A never reads account B's endpoints, however many accounts have some.
async fn subscriptions(tx: &mut Tx, events: &[Event]) -> DomainResult<Vec<Subscription>> {
    let mut types: Vec<&str> = events.iter().map(|e| e.event_type().as_str()).collect();
    types.sort_unstable();
    types.dedup();
    let mut accounts: Vec<&str> = events.iter().filter_map(Event::account_id).collect();
    accounts.sort_unstable();
    accounts.dedup();
    // A billing run's batch is about hundreds of accounts: their ids go in IN lists that fit a
    // statement beside the types; the first statement also reads the admin's endpoints.
    let room = crate::store::params_per_statement()
        .saturating_sub(types.len())
        .max(1);
    let mut chunks: Vec<&[&str]> = accounts.chunks(room).collect();
    if chunks.is_empty() {
        chunks.push(&[]);
    }
    let mut subs = Vec::new();
    for (i, chunk) in chunks.into_iter().enumerate() {
        let mut owners = Vec::new();
        if i == 0 {
            owners.push("e.account_id IS NULL".to_string());
        }
        if !chunk.is_empty() {
            owners.push(format!(
                "e.account_id IN {}",
                crate::store::in_list(types.len() + 1, chunk.len())
            ));
        }
        let sql = format!(
            "SELECT e.id AS endpoint_id, e.account_id, s.event_type FROM webhook_endpoints e \
             JOIN webhook_endpoint_events s ON s.endpoint_id = e.id \
             WHERE e.state = 'enabled' AND s.event_type IN {} AND ({})",
            crate::store::in_list(1, types.len()),
            owners.join(" OR ")
        );
        let mut q = sqlx::query_as::<_, Subscription>(&sql).persistent(false); // one text per list length
        for t in &types {
            q = q.bind(*t);
        }
        for a in chunk {
            q = q.bind(*a);
        }
        subs.extend(q.fetch_all(&mut **tx).await?);
    }
    Ok(subs)
}

/// [`enqueue_many`] for one event; its id if an endpoint receives it.
pub async fn enqueue(tx: &mut Tx, event: Event) -> DomainResult<Option<String>> {
    Ok(enqueue_many(tx, std::slice::from_ref(&event)).await?.pop())
}

async fn insert_events(tx: &mut Tx, rows: &[EventRow], t: i64) -> DomainResult<()> {
    for chunk in rows.chunks(crate::store::rows_per_statement(5)) {
        let sql = format!(
            "INSERT INTO webhook_messages (id, event_type, account_id, payload, created_at) VALUES {}",
            crate::store::placeholders(chunk.len(), 5)
        );
        let mut q = sqlx::query(&sql).persistent(false); // one text per row count: not cached
        for r in chunk {
            q = q
                .bind(&r.id)
                .bind(r.event_type)
                .bind(&r.account_id)
                .bind(&r.payload)
                .bind(t);
        }
        q.execute(&mut **tx).await?;
    }
    Ok(())
}

/// New pending deliveries, due now: (event id, endpoint id).
async fn insert_deliveries(tx: &mut Tx, rows: &[(&str, &str)]) -> DomainResult<()> {
    let t = now();
    let t_ms = now_ms();
    for chunk in rows.chunks(crate::store::rows_per_statement(8)) {
        let sql = format!(
            "INSERT INTO webhook_deliveries (id, event_id, endpoint_id, state, attempts, next_attempt_at, window_started_at, created_at) VALUES {}",
            crate::store::placeholders(chunk.len(), 8)
        );
        let mut q = sqlx::query(&sql).persistent(false); // one text per row count: not cached
        for (event_id, endpoint_id) in chunk {
            q = q
                .bind(new_id("whd"))
                .bind(*event_id)
                .bind(*endpoint_id)
                .bind(DeliveryState::Pending.as_str())
                .bind(0i64)
                .bind(t_ms)
                .bind(t_ms)
                .bind(t);
        }
        q.execute(&mut **tx).await?;
    }
    Ok(())
}

/// An account's test events and replays are rate-limited
/// ([`crate::rate_limit::MAX_WEBHOOK_SENDS_PER_ACCOUNT_PER_HOUR`]); the admin's are not.
fn account_send_allowed(limits: &crate::rate_limit::Limiter, viewer: &Owner) -> DomainResult<()> {
    match viewer {
        Owner::Admin => Ok(()),
        Owner::Account(account) => {
            limits
                .webhook_send(account)
                .map_err(|retry_after| DomainError::RateLimited {
                    code: "webhook_sends_rate_limited",
                    message: format!(
                        "an account sends at most {} test events and replays an hour",
                        crate::rate_limit::MAX_WEBHOOK_SENDS_PER_ACCOUNT_PER_HOUR
                    ),
                    retry_after,
                })
        }
    }
}

/// Enqueues a `webhook.test` event for endpoint `id` only (which must be enabled).
/// An admin's is recorded in the audit log (`webhook_endpoint.test_sent`): a send is an action
/// someone took, and the receiver sees a request because of it.
pub async fn send_test(
    limits: &crate::rate_limit::Limiter,
    pool: &Pool,
    actor: &Actor,
    viewer: &Owner,
    id: &str,
) -> DomainResult<WebhookDelivery> {
    endpoints::must_see(pool, viewer, id).await?;
    account_send_allowed(limits, viewer)?;
    if !endpoints::is_enabled(pool, id).await? {
        return Err(DomainError::conflict(
            "endpoint_disabled",
            "the endpoint is disabled: enable it first",
        ));
    }
    let event = Event::WebhookTest(TestData {
        endpoint_id: id.to_string(),
        message: "a test event from Tollgate".into(),
    });
    let t = now();
    let event_id = new_id("msg");
    let mut tx = crate::store::begin_write(pool).await?;
    insert_events(
        &mut tx,
        &[EventRow {
            id: event_id.clone(),
            event_type: EventType::WebhookTest.as_str(),
            account_id: None,
            payload: event.body(t),
        }],
        t,
    )
    .await?;
    insert_deliveries(&mut tx, &[(event_id.as_str(), id)]).await?;
    let delivery_id = sqlx::query_scalar::<_, String>(
        "SELECT id FROM webhook_deliveries WHERE event_id = $1 AND endpoint_id = $2",
    )
    .bind(&event_id)
    .bind(id)
    .fetch_one(&mut *tx)
    .await?;
    let changes = Changes::of(&[
        ("delivery_id", Value::Null, json!(delivery_id)),
        ("event_id", Value::Null, json!(event_id)),
    ]);
    let object = endpoints::object(id);
    endpoints::record(
        &mut tx,
        actor,
        "webhook_endpoint.test_sent",
        object,
        &changes,
    )
    .await?;
    tx.commit().await?;
    get_delivery(pool, viewer, &delivery_id).await
}

/// A delivery as the delivery log shows it.
#[derive(Clone, Debug, Serialize, utoipa::ToSchema)]
pub struct WebhookDelivery {
    /// Always `"webhook_delivery"`.
    pub object: &'static str,
    pub id: String,
    /// The `webhook-id` sent (`msg_...`), the same on every attempt and replay.
    pub event_id: String,
    pub event_type: String,
    pub endpoint_id: String,
    pub state: DeliveryState,
    /// Attempts made since it was created or last replayed.
    pub attempts: i64,
    /// When it is tried next (Unix milliseconds); `null` once delivered or failed, and while its
    /// endpoint is disabled.
    pub next_attempt_at_ms: Option<i64>,
    /// The last attempt's HTTP status; `null` if it got no answer (or none was made).
    pub last_status_code: Option<i64>,
    pub latency_ms: Option<i64>,
    pub last_error: Option<String>,
    /// Unix seconds.
    pub delivered_at: Option<i64>,
    pub created_at: i64,
}

#[derive(sqlx::FromRow)]
struct DeliveryRow {
    id: String,
    event_id: String,
    event_type: String,
    endpoint_id: String,
    state: String,
    attempts: i64,
    next_attempt_at: i64,
    last_status_code: Option<i64>,
    last_latency_ms: Option<i64>,
    last_error: Option<String>,
    delivered_at: Option<i64>,
    created_at: i64,
    owner: Option<String>,
}

const DELIVERY_SELECT: &str = "SELECT d.id, d.event_id, v.event_type, d.endpoint_id, d.state, d.attempts, d.next_attempt_at, d.last_status_code, d.last_latency_ms, d.last_error, d.delivered_at, d.created_at, e.account_id AS owner FROM webhook_deliveries d JOIN webhook_messages v ON v.id = d.event_id JOIN webhook_endpoints e ON e.id = d.endpoint_id";

impl DeliveryRow {
    fn render(self) -> DomainResult<WebhookDelivery> {
        let state = DeliveryState::parse(&self.state)?;
        Ok(WebhookDelivery {
            object: "webhook_delivery",
            next_attempt_at_ms: (matches!(
                state,
                DeliveryState::Pending | DeliveryState::Delivering
            ) && self.next_attempt_at != endpoints::PARKED_MS)
                .then_some(self.next_attempt_at),
            state,
            id: self.id,
            event_id: self.event_id,
            event_type: self.event_type,
            endpoint_id: self.endpoint_id,
            attempts: self.attempts,
            last_status_code: self.last_status_code,
            latency_ms: self.last_latency_ms,
            last_error: self.last_error,
            delivered_at: self.delivered_at,
            created_at: self.created_at,
        })
    }
}

/// A page of endpoint `endpoint_id`'s deliveries, in id (creation) order.
pub async fn list_deliveries(
    pool: &Pool,
    viewer: &Owner,
    endpoint_id: &str,
    req: &PageRequest,
) -> DomainResult<Page<WebhookDelivery>> {
    endpoints::must_see(pool, viewer, endpoint_id).await?;
    let rows: Vec<DeliveryRow> = sqlx::query_as(&format!(
        "{DELIVERY_SELECT} WHERE d.endpoint_id = $1 AND d.id > $2 ORDER BY d.id LIMIT $3"
    ))
    .bind(endpoint_id)
    .bind(&req.after)
    .bind(req.limit + 1)
    .fetch_all(pool)
    .await?;
    let Page {
        object,
        data,
        has_more,
        next_cursor,
    } = page(rows, req.limit, |r| &r.id);
    Ok(Page {
        object,
        data: data
            .into_iter()
            .map(DeliveryRow::render)
            .collect::<DomainResult<_>>()?,
        has_more,
        next_cursor,
    })
}

async fn fetch_delivery(pool: &Pool, viewer: &Owner, id: &str) -> DomainResult<DeliveryRow> {
    let row: Option<DeliveryRow> = sqlx::query_as(&format!("{DELIVERY_SELECT} WHERE d.id = $1"))
        .bind(id)
        .fetch_optional(pool)
        .await?;
    match row {
        Some(r)
            if *viewer == Owner::Admin
                || matches!(viewer, Owner::Account(a) if r.owner.as_deref() == Some(a)) =>
        {
            Ok(r)
        }
        _ => Err(DomainError::not_found("webhook delivery", id)),
    }
}

pub async fn get_delivery(pool: &Pool, viewer: &Owner, id: &str) -> DomainResult<WebhookDelivery> {
    fetch_delivery(pool, viewer, id).await?.render()
}

/// Sends delivery `id` again, now, with the same `webhook-id` and body: its attempt count and
/// retry window start again. Refused while an attempt is under way, or while its endpoint is
/// disabled.
pub async fn replay(
    limits: &crate::rate_limit::Limiter,
    pool: &Pool,
    actor: &Actor,
    viewer: &Owner,
    id: &str,
) -> DomainResult<WebhookDelivery> {
    let row = fetch_delivery(pool, viewer, id).await?;
    account_send_allowed(limits, viewer)?;
    let t_ms = now_ms();
    let mut tx = crate::store::begin_write(pool).await?;
    let (state, attempts): (String, i64) = sqlx::query_as(&format!(
        "SELECT state, attempts FROM webhook_deliveries WHERE id = $1{}",
        crate::store::for_update()
    ))
    .bind(id)
    .fetch_optional(&mut *tx)
    .await?
    .ok_or_else(|| DomainError::not_found("webhook delivery", id))?;
    // One statement decides: the endpoint enabled and no claim's lease running. A claim made
    // after it ends later than any before it (the lease end is the sender's fencing token), so
    // an attempt still under way from before the replay records nothing over the replay's.
    let r = sqlx::query(
        "UPDATE webhook_deliveries SET state = 'pending', attempts = 0, next_attempt_at = $2, window_started_at = $2 \
         WHERE id = $1 AND (state <> 'delivering' OR next_attempt_at <= $2) \
         AND endpoint_id IN (SELECT id FROM webhook_endpoints WHERE state = 'enabled')",
    )
    .bind(id)
    .bind(t_ms)
    .execute(&mut *tx)
    .await?;
    if r.rows_affected() == 0 {
        let endpoint: Option<String> =
            sqlx::query_scalar("SELECT state FROM webhook_endpoints WHERE id = $1")
                .bind(&row.endpoint_id)
                .fetch_optional(&mut *tx)
                .await?;
        return Err(if endpoint.as_deref() == Some("enabled") {
            DomainError::conflict(
                "delivery_in_progress",
                "an attempt of this delivery is under way; look at it again in a moment",
            )
        } else {
            DomainError::conflict(
                "endpoint_disabled",
                "the delivery's endpoint is disabled: enable it first",
            )
        });
    }
    let changes = Changes::of(&[
        (
            "state",
            json!(state),
            json!(DeliveryState::Pending.as_str()),
        ),
        ("attempts", json!(attempts), json!(0)),
    ]);
    let object = Object {
        kind: "webhook_delivery",
        id,
    };
    endpoints::record(
        &mut tx,
        actor,
        "webhook_delivery.replayed",
        object,
        &changes,
    )
    .await?;
    tx.commit().await?;
    get_delivery(pool, viewer, id).await
}
