//! Admin portal: webhook endpoints (create with the secret shown once, disable / enable, send a
//! test event, delete) and an endpoint's delivery log with replay. Every form calls the domain
//! functions the admin API calls (`domain::webhooks`), as the admin.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::Response;

use super::access::{redirect, AdminSession, Fields, WriteForm};
use super::forms::{
    error_for, general_error, get, link, not_found, seg, show, write_form, FormError,
};
use crate::domain::access::tokens::Scope;
use crate::domain::webhooks::endpoints::{self, Owner, WebhookEndpointInput};
use crate::domain::webhooks::events::EventType;
use crate::domain::webhooks::outbox::{self, DeliveryState};
use crate::domain::{DomainError, PageRequest};
use crate::portal::html::{alert, html, input, notice, post_button, table, Markup};
use crate::state::AppState;

/// Most endpoints and deliveries a page lists; the admin API lists the rest.
const PAGE_ROWS: i64 = 100;

/// [`super::accounts::refusal`], with `events[1]` pointing at the form's one `events` field.
fn refusal(e: DomainError) -> (FormError, StatusCode) {
    let (e, status) = super::accounts::refusal(e);
    let e = e.map(|(param, message)| {
        if param.starts_with("events") {
            ("events".to_string(), message)
        } else {
            (param, message)
        }
    });
    (e, status)
}

fn first_page() -> PageRequest {
    PageRequest {
        limit: PAGE_ROWS,
        after: String::new(),
    }
}

pub async fn webhooks(State(s): State<AppState>, admin: AdminSession) -> Response {
    webhooks_page(&s, &admin, &Fields::new(), &None, html! {}, StatusCode::OK).await
}

async fn webhooks_page(
    s: &AppState,
    admin: &AdminSession,
    f: &Fields,
    e: &FormError,
    done: Markup,
    status: StatusCode,
) -> Response {
    let list = endpoints::list(&s.pool, &Owner::Admin, &first_page())
        .await
        .map(|p| p.data)
        .unwrap_or_default();
    let write = admin.scope == Scope::Write;
    let rows: Vec<Vec<Markup>> = list
        .iter()
        .map(|ep| {
            let base = format!("/admin/webhooks/{}", seg(&ep.id));
            vec![
                link(&base, &ep.url),
                html! { (ep.events.join(", ")) },
                html! { (ep.account_id.as_deref().unwrap_or("admin (every account)")) },
                html! {
                    @if ep.enabled { "enabled" } @else {
                        "disabled (" (ep.disabled_reason.map(|r| r.as_str()).unwrap_or("")) ")"
                    }
                },
                html! { (ep.consecutive_failures) },
                html! {
                    @if write {
                        @if ep.enabled {
                            (post_button(&format!("{base}/disable"), &admin.csrf, "Disable"))
                            (post_button(&format!("{base}/test"), &admin.csrf, "Send test event"))
                        } @else {
                            (post_button(&format!("{base}/enable"), &admin.csrf, "Enable"))
                        }
                        (post_button(&format!("{base}/delete"), &admin.csrf, "Delete"))
                    }
                },
            ]
        })
        .collect();
    let known = EventType::subscribable_names().join(", ");
    let form = write_form(
        admin,
        "/admin/webhooks",
        "New webhook endpoint (receives every account's events)",
        html! {
            (input("url", "URL (https)", "url", &get(f, "url"), error_for(e, "url"), true))
            (input(
                "events",
                &format!("Events, separated by commas ({known})"),
                "text",
                &get(f, "events"),
                error_for(e, "events"),
                true
            ))
            (input("description", "Description", "text", &get(f, "description"), error_for(e, "description"), false))
        },
        "Create endpoint",
    );
    let body = html! {
        (done)
        (general_error(e, &["url", "events", "description"]))
        p { "Signed events (Standard Webhooks) to your systems: see docs/webhooks.md." }
        (table(
            "webhook endpoints",
            &["URL", "Events", "Owner", "State", "Failures in a row", ""],
            &rows
        ))
        (form)
    };
    show(admin, "Webhooks", status, body)
}

pub async fn create(
    State(s): State<AppState>,
    WriteForm { admin, fields: f }: WriteForm,
) -> Response {
    let events: Vec<String> = get(&f, "events")
        .split([',', ' ', '\n'])
        .map(str::trim)
        .filter(|e| !e.is_empty())
        .map(str::to_string)
        .collect();
    let description = get(&f, "description");
    let input = WebhookEndpointInput {
        url: Some(get(&f, "url")),
        events: Some(events),
        description: (!description.is_empty()).then_some(description),
    };
    match endpoints::create(
        &s.pool,
        s.master_key.as_deref(),
        &admin.actor(),
        &Owner::Admin,
        input,
    )
    .await
    {
        Ok(created) => {
            let done = crate::portal::html::shown_once(
                "Endpoint created. Its signing secret: copy it now, it is stored sealed and cannot be shown again.",
                "secret",
                &created.secret,
            );
            webhooks_page(&s, &admin, &Fields::new(), &None, done, StatusCode::CREATED).await
        }
        Err(e) => {
            let (e, status) = refusal(e);
            webhooks_page(&s, &admin, &f, &e, html! {}, status).await
        }
    }
}

/// `disable`, `enable`, `test`, `delete` on endpoint `id`.
pub async fn action(
    State(s): State<AppState>,
    Path((id, action)): Path<(String, String)>,
    WriteForm { admin, .. }: WriteForm,
) -> Response {
    let Some(result) =
        crate::portal::webhook_endpoint_action(&s, &admin.actor(), &Owner::Admin, &id, &action)
            .await
    else {
        return not_found(&admin);
    };
    match result {
        Ok(text) => {
            webhooks_page(
                &s,
                &admin,
                &Fields::new(),
                &None,
                notice(text),
                StatusCode::OK,
            )
            .await
        }
        Err(e) => {
            let (e, status) = refusal(e);
            let shown = html! { (alert(&e.map(|(_, m)| m).unwrap_or_default())) };
            webhooks_page(&s, &admin, &Fields::new(), &None, shown, status).await
        }
    }
}

/// One endpoint and its delivery log, with replay.
pub async fn endpoint(
    State(s): State<AppState>,
    admin: AdminSession,
    Path(id): Path<String>,
) -> Response {
    let Ok(ep) = endpoints::get(&s.pool, &Owner::Admin, &id).await else {
        return not_found(&admin);
    };
    let log = outbox::list_deliveries(&s.pool, &Owner::Admin, &id, &first_page())
        .await
        .map(|p| p.data)
        .unwrap_or_default();
    let write = admin.scope == Scope::Write;
    let rows: Vec<Vec<Markup>> = log
        .iter()
        .map(|d| {
            vec![
                html! { code { (d.event_id) } },
                html! { (d.event_type) },
                html! { (d.state.as_str()) },
                html! { (d.attempts) },
                html! { (d.last_status_code.map(|c| c.to_string()).unwrap_or_default()) },
                html! { (d.latency_ms.map(|l| format!("{l} ms")).unwrap_or_default()) },
                html! { (d.last_error.as_deref().unwrap_or("")) },
                html! {
                    @if write && d.state != DeliveryState::Delivering && ep.enabled {
                        (post_button(
                            &format!("/admin/webhook_deliveries/{}/replay", seg(&d.id)),
                            &admin.csrf,
                            "Replay"
                        ))
                    }
                },
            ]
        })
        .collect();
    let body = html! {
        p { "URL: " code { (ep.url) } }
        p { "Events: " (ep.events.join(", ")) }
        p { "State: " @if ep.enabled { "enabled" } @else { "disabled" } }
        (table(
            "deliveries",
            &["Event id", "Type", "State", "Attempts", "Status", "Latency", "Last error", ""],
            &rows
        ))
        p { (link("/admin/webhooks", "All endpoints")) }
    };
    show(&admin, "Webhook deliveries", StatusCode::OK, body)
}

pub async fn replay(
    State(s): State<AppState>,
    Path(id): Path<String>,
    WriteForm { admin, .. }: WriteForm,
) -> Response {
    match outbox::replay(&s.limits, &s.pool, &admin.actor(), &Owner::Admin, &id).await {
        Ok(d) => redirect(&format!("/admin/webhooks/{}", seg(&d.endpoint_id))),
        Err(DomainError::NotFound { .. }) => not_found(&admin),
        Err(e) => {
            let (e, status) = refusal(e);
            let shown = html! { (alert(&e.map(|(_, m)| m).unwrap_or_default())) };
            webhooks_page(&s, &admin, &Fields::new(), &None, shown, status).await
        }
    }
}
