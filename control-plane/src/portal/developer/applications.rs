//! Developer portal: the account's applications (list, create on a published plan with the key
//! shown once) and one application's page (keys and rotation, the usage chart with the plan's
//! daily limit, the plan's limits). Another account's applications are 404.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{Html, IntoResponse, Response};

use super::access::{error_message, failure, SessionForm};
use super::billing::not_found;
use crate::domain::accounts::applications::{self, ApplicationState, SuspensionReason};
use crate::domain::accounts::keys;
use crate::domain::accounts::usage::{self, DayHits};
use crate::domain::billing::calendar::{day_of, format_date};
use crate::domain::metering::alerts::{self as usage_alerts, CurrentAlert};
use crate::domain::DomainError;
use crate::portal::html::{alert, csrf_input, error_span, html, page, shown_once, Markup};
use crate::portal::session::Session;
use crate::state::AppState;
use crate::store::now;

async fn applications_page(
    s: &AppState,
    session: &Session,
    notice: Markup,
    error: Option<&str>,
    status: StatusCode,
) -> Response {
    let apps = applications::of_account(&s.pool, &session.account_id).await;
    let plans = applications::offered_plans(&s.pool).await;
    let (apps, plans) = match (apps, plans) {
        (Ok(a), Ok(p)) => (a, p),
        (Err(e), _) | (_, Err(e)) => return failure(e),
    };
    let body = html! {
        (notice)
        p { "Signed in as " (session.email) }
        @if apps.is_empty() {
            p { "No applications yet." }
        } @else {
            table {
                caption { "Your applications" }
                thead { tr {
                    th scope="col" { "Name" } th scope="col" { "Plan" }
                    th scope="col" { "State" } th scope="col" { "Id" }
                } }
                tbody {
                    @for app in &apps {
                        tr {
                            td { a href={ "/portal/applications/" (app.id) } { (app.name) } }
                            td { (app.plan_name) } td { (app.state.as_str()) } td { code { (app.id) } }
                        }
                    }
                }
            }
        }
        @if plans.is_empty() {
            p { "No plan is published yet." }
        } @else {
            h2 { "New application" }
            form method="post" action="/portal/applications" {
                (csrf_input(&session.csrf))
                label for="name" { "Name" (error_span("app", error)) }
                input id="name" name="name" required;
                label for="plan_id" { "Plan" }
                select id="plan_id" name="plan_id" {
                    @for plan in &plans { option value=(plan.id) { (plan.name) } }
                }
                button type="submit" { "Create application" }
            }
        }
    };
    (
        status,
        Html(page("Applications", Some(&session.csrf), body)),
    )
        .into_response()
}

pub async fn applications(State(s): State<AppState>, session: Session) -> Response {
    applications_page(&s, &session, html! {}, None, StatusCode::OK).await
}

pub async fn create_application(
    State(s): State<AppState>,
    SessionForm { session, fields: f }: SessionForm,
) -> Response {
    let name = f
        .get("name")
        .map(|n| n.trim().to_string())
        .unwrap_or_default();
    if let Err(e) = crate::domain::catalog::check_name("name", &name) {
        return applications_page(
            &s,
            &session,
            html! {},
            Some(&error_message(e)),
            StatusCode::UNPROCESSABLE_ENTITY,
        )
        .await;
    }
    let plan_id = f.get("plan_id").cloned().unwrap_or_default();
    match applications::is_offered(&s.pool, &plan_id).await {
        Ok(true) => {}
        Ok(false) => {
            return applications_page(
                &s,
                &session,
                html! {},
                Some("choose one of the published plans"),
                StatusCode::UNPROCESSABLE_ENTITY,
            )
            .await
        }
        Err(e) => return failure(e),
    }
    let cap = s.limits.settings.max_applications_per_account;
    match applications::create_for_developer(&s.pool, &session.account_id, &plan_id, &name, cap)
        .await
    {
        Ok(created) => {
            let key = created.key;
            let notice = html! {
                div class="notice" role="status" {
                    p { "Application " strong { (name) } " created. Its API key, shown only now:" }
                    p { code id="new-key" { (key) } }
                }
            };
            applications_page(&s, &session, notice, None, StatusCode::CREATED).await
        }
        Err(e @ DomainError::Conflict { .. }) => {
            let message = e.public_message();
            applications_page(&s, &session, html! {}, Some(&message), StatusCode::CONFLICT).await
        }
        Err(e) => failure(e),
    }
}

/// Days shown in the usage chart.
pub const CHART_DAYS: i64 = 30;

/// Daily bars of the last [`CHART_DAYS`] days with a dashed line at the daily limit, as SVG.
pub fn usage_chart(days: &[DayHits], daily_limit: Option<i64>, first_day: i64) -> Markup {
    let (w, h, pad) = (600.0_f64, 200.0_f64, 24.0_f64);
    let max = days
        .iter()
        .map(|d| d.hits)
        .max()
        .unwrap_or(0)
        .max(daily_limit.unwrap_or(0))
        .max(1) as f64;
    let bar_w = (w - pad) / CHART_DAYS as f64;
    let one = |v: f64| format!("{v:.1}");
    // SVG elements are closed explicitly (`{}`): in HTML, SVG has no void elements.
    html! {
        svg role="img" aria-label={ "hits per day, last " (CHART_DAYS) " days" }
            viewBox={ "0 0 " (w) " " (h) } width="100%" height=(h) {
            line x1=(pad) x2=(w) y1=(h - pad) y2=(h - pad) stroke="#999" {}
            @for DayHits { day, hits: value } in days {
                @let i = (day - first_day) as f64;
                @let bh = (*value as f64 / max) * (h - pad);
                rect x=(one(pad + i * bar_w)) y=(one(h - pad - bh)) width=(one((bar_w - 2.0).max(1.0)))
                    height=(one(bh)) fill="#3b6ea5" {
                    title { (format_date(*day)) ": " (value) }
                }
            }
            @if let Some(l) = daily_limit {
                @let y = h - pad - (l as f64 / max) * (h - pad);
                line x1=(pad) x2=(w) y1=(one(y)) y2=(one(y)) stroke="#a40000" stroke-dasharray="6 4" {}
                text x=(pad) y=(one(y - 4.0)) font-size="12" fill="#a40000" { "limit " (l) "/day" }
            }
        }
    }
}

/// The usage alerts of the current windows, highest threshold per metric and period; nothing
/// when there are none.
fn alerts_banner(alerts: &[CurrentAlert]) -> Markup {
    html! {
        @if !alerts.is_empty() {
            div class="usage-alerts error" role="alert" id="usage-alerts" {
                p { strong { "Usage alerts" } }
                ul {
                    @for a in alerts {
                        li {
                            (a.threshold) "% of the " (a.period) " " (a.metric) " limit reached: "
                            (a.usage_value) " of " (a.limit_value)
                            @if a.period != "eternity" {
                                " (this " (a.period) " from " (crate::domain::webhooks::events::rfc3339(a.window_start)) ")"
                            }
                        }
                    }
                }
            }
        }
    }
}

async fn app_page(
    s: &AppState,
    session: &Session,
    id: &str,
    notice: Markup,
    status: StatusCode,
) -> Response {
    let t = now();
    let first_day = day_of(t) - CHART_DAYS + 1;
    let view = match usage::developer_view(&s.pool, &session.account_id, id, first_day).await {
        Ok(Some(v)) => v,
        Ok(None) => return not_found(session),
        Err(e) => return failure(e),
    };
    // Crossings of the windows now running (docs/operations.md, "Usage alerts").
    let alerts = match usage_alerts::current(&s.pool, id, t).await {
        Ok(a) => a,
        Err(e) => return failure(e),
    };
    let (app, keys, usage, limits) = (view.application, view.keys, view.days, view.limits);
    let daily = limits
        .iter()
        .find(|l| l.metric == "hits" && l.period == "day")
        .map(|l| l.value);
    let today_used = usage
        .iter()
        .find(|u| u.day == day_of(t))
        .map_or(0, |u| u.hits);
    let state = match (app.state, app.state_reason) {
        (ApplicationState::Suspended, Some(SuspensionReason::NonPayment)) => {
            "suspended: an invoice is unpaid (see Billing)"
        }
        (st, _) => st.as_str(),
    };
    let body = html! {
        (notice)
        (alerts_banner(&alerts))
        p { "Plan " strong { (app.plan_name) } " · state " (state) }
        h2 { "Keys" }
        table {
            thead { tr { th scope="col" { "Key" } th scope="col" { "Created" } th scope="col" {} } }
            tbody {
                @for key in &keys {
                    tr {
                        td { code { (key.prefix) "…" } }
                        td { (format_date(day_of(key.created_at))) }
                        td {
                            @if let Some(e) = key.expires_at {
                                "expires " (format_date(day_of(e)))
                            } @else {
                                form method="post" action={ "/portal/applications/" (id) "/keys/" (key.id) "/rotate" } {
                                    (csrf_input(&session.csrf))
                                    button type="submit" { "Rotate" }
                                }
                            }
                        }
                    }
                }
            }
        }
        h2 { "Usage" }
        p {
            "Hits today: " (today_used)
            @if let Some(d) = daily { " of " (d) " (remaining " ((d - today_used).max(0)) ")" }
        }
        (usage_chart(&usage, daily, first_day))
        h2 { "Limits" }
        table {
            thead { tr { th scope="col" { "Metric" } th scope="col" { "Period" } th scope="col" { "Limit" } } }
            tbody {
                @for l in &limits { tr { td { (l.metric) } td { (l.period) } td { (l.value) } } }
            }
        }
    };
    (status, Html(page(&app.name, Some(&session.csrf), body))).into_response()
}

pub async fn application(
    State(s): State<AppState>,
    session: Session,
    Path(id): Path<String>,
) -> Response {
    app_page(&s, &session, &id, html! {}, StatusCode::OK).await
}

pub async fn rotate_key(
    State(s): State<AppState>,
    Path((id, key_id)): Path<(String, String)>,
    SessionForm { session, .. }: SessionForm,
) -> Response {
    match applications::own(&s.pool, &session.account_id, &id).await {
        Ok(Some(_)) => {}
        Ok(None) => return not_found(&session),
        Err(e) => return failure(e),
    }
    let actor = crate::domain::audit::Actor::account(&session.account_id, None);
    let rotated = keys::rotate(
        &s.limits,
        &s.pool,
        &actor,
        &id,
        &key_id,
        keys::DEFAULT_ROTATION_GRACE_SECS,
    )
    .await;
    match rotated {
        Ok(rotated) => {
            let notice = shown_once(
                "New key, shown only now (the old one keeps working for 24 hours):",
                "new-key",
                &rotated.key,
            );
            app_page(&s, &session, &id, notice, StatusCode::CREATED).await
        }
        Err(DomainError::NotFound { .. }) => not_found(&session),
        Err(e @ DomainError::Conflict { .. }) => {
            let message = alert(&e.public_message());
            app_page(&s, &session, &id, message, StatusCode::CONFLICT).await
        }
        Err(e) => super::access::signed_in_failure(e.into(), &session),
    }
}
