//! Developer portal: the account's webhook endpoints (create with the secret shown once, send a
//! test event, disable / enable, delete) and an endpoint's delivery log with replay. They receive
//! only the account's own events; another account's endpoints and deliveries are 404. Every form
//! calls the domain functions the developer API calls, as the account.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{Html, IntoResponse, Response};

use super::access::{failure, SessionForm};
use super::billing::not_found;
use crate::domain::audit::Actor;
use crate::domain::webhooks::endpoints::{self, Owner, WebhookEndpointInput};
use crate::domain::webhooks::events::EventType;
use crate::domain::webhooks::outbox::{self, DeliveryState};
use crate::domain::{DomainError, PageRequest};
use crate::portal::html::{
    alert, csrf_input, html, notice, page, plain_post_button, shown_once, Markup,
};
use crate::portal::session::Session;
use crate::state::AppState;

/// Most endpoints (an account holds at most 20) and deliveries a page lists.
const PAGE_ROWS: i64 = 100;

fn first_page() -> PageRequest {
    PageRequest {
        limit: PAGE_ROWS,
        after: String::new(),
    }
}

fn owner(session: &Session) -> Owner {
    Owner::Account(session.account_id.clone())
}

/// Who the audit log records for the developer's writes (like the developer portal's key
/// rotation: the account, without an address).
fn actor(session: &Session) -> Actor {
    Actor::account(&session.account_id, None)
}

async fn webhooks_page(
    s: &AppState,
    session: &Session,
    shown: Markup,
    status: StatusCode,
) -> Response {
    let list = match endpoints::list(&s.pool, &owner(session), &first_page()).await {
        Ok(p) => p.data,
        Err(e) => return failure(e),
    };
    let known = EventType::subscribable_names().join(", ");
    let body = html! {
        (shown)
        p { "Your systems can receive your account's events, signed (Standard Webhooks)." }
        @if list.is_empty() {
            p { "No webhook endpoints yet." }
        } @else {
            table {
                caption { "Your webhook endpoints" }
                thead { tr {
                    th scope="col" { "URL" } th scope="col" { "Events" }
                    th scope="col" { "State" } th scope="col" { "" }
                } }
                tbody {
                    @for ep in &list {
                        @let base = format!("/portal/webhooks/{}", ep.id);
                        tr {
                            td { a href=(base) { (ep.url) } }
                            td { (ep.events.join(", ")) }
                            td { @if ep.enabled { "enabled" } @else { "disabled" } }
                            td {
                                @if ep.enabled {
                                    (plain_post_button(&format!("{base}/test"), &session.csrf, "Send test event"))
                                    (plain_post_button(&format!("{base}/disable"), &session.csrf, "Disable"))
                                } @else {
                                    (plain_post_button(&format!("{base}/enable"), &session.csrf, "Enable"))
                                }
                                (plain_post_button(&format!("{base}/delete"), &session.csrf, "Delete"))
                            }
                        }
                    }
                }
            }
        }
        h2 { "New webhook endpoint" }
        form method="post" action="/portal/webhooks" {
            (csrf_input(&session.csrf))
            label for="url" { "URL (https)" }
            input id="url" name="url" type="url" required;
            label for="events" { "Events, separated by commas (" (known) ")" }
            input id="events" name="events" type="text" required;
            button type="submit" { "Create endpoint" }
        }
    };
    (status, Html(page("Webhooks", Some(&session.csrf), body))).into_response()
}

pub async fn webhooks(State(s): State<AppState>, session: Session) -> Response {
    webhooks_page(&s, &session, html! {}, StatusCode::OK).await
}

/// A refused call as the page shows it: the message above the list, and the API's status.
fn refused(e: DomainError) -> (Markup, StatusCode) {
    let message = match &e {
        DomainError::Internal(_) => "Something went wrong; please try again.".to_string(),
        other => other.to_string(),
    };
    (alert(&message), IntoResponse::into_response(e).status())
}

pub async fn create(
    State(s): State<AppState>,
    SessionForm { session, fields: f }: SessionForm,
) -> Response {
    let field = |name: &str| {
        f.get(name)
            .map(|v| v.trim().to_string())
            .unwrap_or_default()
    };
    let input = WebhookEndpointInput {
        url: Some(field("url")),
        events: Some(
            field("events")
                .split([',', ' ', '\n'])
                .map(str::trim)
                .filter(|e| !e.is_empty())
                .map(str::to_string)
                .collect(),
        ),
        description: None,
    };
    match endpoints::create(
        &s.pool,
        s.master_key.as_deref(),
        &actor(&session),
        &owner(&session),
        input,
    )
    .await
    {
        Ok(created) => {
            let shown = shown_once(
                "Endpoint created. Its signing secret: copy it now, it cannot be shown again.",
                "secret",
                &created.secret,
            );
            webhooks_page(&s, &session, shown, StatusCode::CREATED).await
        }
        Err(e) => {
            let (shown, status) = refused(e);
            webhooks_page(&s, &session, shown, status).await
        }
    }
}

/// `test`, `disable`, `enable`, `delete` on one of the account's endpoints.
pub async fn action(
    State(s): State<AppState>,
    Path((id, action)): Path<(String, String)>,
    SessionForm { session, .. }: SessionForm,
) -> Response {
    let who = owner(&session);
    let Some(result) =
        crate::portal::webhook_endpoint_action(&s, &actor(&session), &who, &id, &action).await
    else {
        return not_found(&session);
    };
    match result {
        Ok(text) => webhooks_page(&s, &session, notice(text), StatusCode::OK).await,
        Err(DomainError::NotFound { .. }) => not_found(&session),
        Err(e) => {
            let (shown, status) = refused(e);
            webhooks_page(&s, &session, shown, status).await
        }
    }
}

/// One of the account's endpoints and its delivery log, with replay.
pub async fn endpoint(
    State(s): State<AppState>,
    session: Session,
    Path(id): Path<String>,
) -> Response {
    let who = owner(&session);
    let ep = match endpoints::get(&s.pool, &who, &id).await {
        Ok(ep) => ep,
        Err(DomainError::NotFound { .. }) => return not_found(&session),
        Err(e) => return failure(e),
    };
    let log = match outbox::list_deliveries(&s.pool, &who, &id, &first_page()).await {
        Ok(p) => p.data,
        Err(e) => return failure(e),
    };
    let body = html! {
        p { "URL: " code { (ep.url) } }
        p { "Events: " (ep.events.join(", ")) }
        @if log.is_empty() {
            p { "No deliveries yet." }
        } @else {
            table {
                caption { "Deliveries" }
                thead { tr {
                    th scope="col" { "Event id" } th scope="col" { "Type" } th scope="col" { "State" }
                    th scope="col" { "Attempts" } th scope="col" { "Status" } th scope="col" { "Latency" }
                    th scope="col" { "" }
                } }
                tbody {
                    @for d in &log {
                        tr {
                            td { code { (d.event_id) } }
                            td { (d.event_type) }
                            td { (d.state.as_str()) }
                            td { (d.attempts) }
                            td { (d.last_status_code.map(|c| c.to_string()).unwrap_or_default()) }
                            td { (d.latency_ms.map(|l| format!("{l} ms")).unwrap_or_default()) }
                            td {
                                @if ep.enabled && d.state != DeliveryState::Delivering {
                                    (plain_post_button(
                                        &format!("/portal/webhook_deliveries/{}/replay", d.id),
                                        &session.csrf,
                                        "Replay"
                                    ))
                                }
                            }
                        }
                    }
                }
            }
        }
        p { a href="/portal/webhooks" { "All endpoints" } }
    };
    (
        StatusCode::OK,
        Html(page("Webhook deliveries", Some(&session.csrf), body)),
    )
        .into_response()
}

pub async fn replay(
    State(s): State<AppState>,
    Path(id): Path<String>,
    SessionForm { session, .. }: SessionForm,
) -> Response {
    match outbox::replay(&s.limits, &s.pool, &actor(&session), &owner(&session), &id).await {
        Ok(d) => (
            StatusCode::SEE_OTHER,
            [(
                axum::http::header::LOCATION,
                format!("/portal/webhooks/{}", d.endpoint_id),
            )],
        )
            .into_response(),
        Err(DomainError::NotFound { .. }) => not_found(&session),
        Err(e) => {
            let (shown, status) = refused(e);
            webhooks_page(&s, &session, shown, status).await
        }
    }
}
