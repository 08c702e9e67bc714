//! Developer portal: the account's applications (list, create on a published plan with the key
//! shown once) and one application's page (keys and rotation, the usage chart with the plan's
//! daily limit, the plan's limits). Another account's applications are 404.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{Html, IntoResponse, Response};

use super::access::{error_message, failure, SessionForm};
use super::billing::not_found;
use crate::domain::billing::calendar::{day_of, format_date, SECONDS_PER_DAY};
use crate::http::error::{ApiError, ApiResult};
use crate::http::AppState;
use crate::portal::html::{alert, csrf_input, error_span, html, page, shown_once, Markup};
use crate::portal::session::Session;
use crate::store::now;

/// (id, prefix, created_at, expires_at)
type KeyRow = (String, String, i64, Option<i64>);

async fn applications_page(
    s: &AppState,
    session: &Session,
    notice: Markup,
    error: Option<&str>,
    status: StatusCode,
) -> Response {
    let apps: Result<Vec<(String, String, String, String)>, _> = sqlx::query_as(
        "SELECT a.name, p.name, a.state, a.id FROM applications a JOIN plans p ON p.id = a.plan_id WHERE a.account_id = $1 ORDER BY a.id",
    )
    .bind(&session.account_id)
    .fetch_all(&s.pool)
    .await;
    let plans: Result<Vec<(String, String)>, _> =
        sqlx::query_as("SELECT id, name FROM plans WHERE state = 'published' AND parent_plan_id IS NULL ORDER BY name, id")
            .fetch_all(&s.pool)
            .await;
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
                    @for (name, plan, state, id) in &apps {
                        tr {
                            td { a href={ "/portal/applications/" (id) } { (name) } }
                            td { (plan) } td { (state) } td { code { (id) } }
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
                    @for (id, name) in &plans { option value=(id) { (name) } }
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
    let published: Result<Option<(String,)>, _> = sqlx::query_as(
        "SELECT id FROM plans WHERE id = $1 AND state = 'published' AND parent_plan_id IS NULL",
    )
    .bind(&plan_id)
    .fetch_optional(&s.pool)
    .await;
    match published {
        Ok(Some(_)) => {}
        Ok(None) => {
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
    match insert_application(&s, &session.account_id, &plan_id, &name).await {
        Ok(key) => {
            let notice = html! {
                div class="notice" role="status" {
                    p { "Application " strong { (name) } " created. Its API key, shown only now:" }
                    p { code id="new-key" { (key) } }
                }
            };
            applications_page(&s, &session, notice, None, StatusCode::CREATED).await
        }
        Err(e @ ApiError::Conflict { .. }) => {
            let message = e.public_message();
            applications_page(&s, &session, html! {}, Some(&message), StatusCode::CONFLICT).await
        }
        Err(e) => failure(e),
    }
}

async fn insert_application(
    s: &AppState,
    account_id: &str,
    plan_id: &str,
    name: &str,
) -> ApiResult<String> {
    let mut tx = crate::store::begin_write(&s.pool).await?;
    // Lock the account row (PostgreSQL; SQLite's write lock serializes anyway) so two concurrent
    // creations cannot both see room under the cap.
    sqlx::query("UPDATE accounts SET updated_at = updated_at WHERE id = $1")
        .bind(account_id)
        .execute(&mut *tx)
        .await?;
    let (held,): (i64,) = sqlx::query_as("SELECT COUNT(*) FROM applications WHERE account_id = $1")
        .bind(account_id)
        .fetch_one(&mut *tx)
        .await?;
    let cap = s.limits.settings.max_applications_per_account;
    if held >= cap {
        return Err(ApiError::conflict(
            "application_limit_reached",
            format!(
                "an account creates at most {cap} applications itself; ask the provider for more"
            ),
        ));
    }
    let (_, _, key) =
        crate::http::applications::insert_application(&mut tx, account_id, plan_id, name, "")
            .await?;
    sqlx::query("UPDATE catalog_revision SET revision = revision + 1 WHERE id = 1")
        .execute(&mut *tx)
        .await?;
    tx.commit().await?;
    Ok(key)
}

/// Days shown in the usage chart.
pub const CHART_DAYS: i64 = 30;

async fn own_app(
    s: &AppState,
    session: &Session,
    id: &str,
) -> Result<Option<(String, String, String, String, Option<String>)>, sqlx::Error> {
    sqlx::query_as(
        "SELECT a.name, a.plan_id, p.name, a.state, a.state_reason FROM applications a JOIN plans p ON p.id = a.plan_id WHERE a.id = $1 AND a.account_id = $2",
    )
    .bind(id)
    .bind(&session.account_id)
    .fetch_optional(&s.pool)
    .await
}

/// Daily bars of the last [`CHART_DAYS`] days with a dashed line at the daily limit, as SVG.
pub fn usage_chart(days: &[(i64, i64)], daily_limit: Option<i64>, first_day: i64) -> Markup {
    let (w, h, pad) = (600.0_f64, 200.0_f64, 24.0_f64);
    let max = days
        .iter()
        .map(|(_, v)| *v)
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
            @for (day, value) in days {
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

async fn app_page(
    s: &AppState,
    session: &Session,
    id: &str,
    notice: Markup,
    status: StatusCode,
) -> Response {
    let app = match own_app(s, session, id).await {
        Ok(Some(a)) => a,
        Ok(None) => return not_found(session),
        Err(e) => return failure(e),
    };
    let t = now();
    let keys: Result<Vec<KeyRow>, _> = sqlx::query_as(
        "SELECT id, prefix, created_at, expires_at FROM application_keys WHERE application_id = $1 AND (expires_at IS NULL OR expires_at > $2) ORDER BY created_at",
    )
    .bind(id)
    .bind(t)
    .fetch_all(&s.pool)
    .await;
    let first_day = day_of(t) - CHART_DAYS + 1;
    let usage: Result<Vec<(i64, i64)>, _> = sqlx::query_as(
        "SELECT u.bucket_start / 86400, CAST(SUM(u.value) AS BIGINT) FROM usage_counters u JOIN metrics m ON m.id = u.metric_id \
         WHERE u.application_id = $1 AND m.name = 'hits' AND u.bucket_start >= $2 GROUP BY u.bucket_start / 86400 ORDER BY 1",
    )
    .bind(id)
    .bind(first_day * SECONDS_PER_DAY)
    .fetch_all(&s.pool)
    .await;
    let limits: Result<Vec<(String, String, i64)>, _> = sqlx::query_as(
        "SELECT m.name, l.period, l.limit_value FROM plan_limits l JOIN metrics m ON m.id = l.metric_id WHERE l.plan_id = $1 ORDER BY m.name, l.period",
    )
    .bind(&app.1)
    .fetch_all(&s.pool)
    .await;
    let (keys, usage, limits) = match (keys, usage, limits) {
        (Ok(k), Ok(u), Ok(l)) => (k, u, l),
        (Err(e), _, _) | (_, Err(e), _) | (_, _, Err(e)) => return failure(e),
    };
    let daily = limits
        .iter()
        .find(|(m, p, _)| m == "hits" && p == "day")
        .map(|l| l.2);
    let today_used = usage
        .iter()
        .find(|(d, _)| *d == day_of(t))
        .map_or(0, |u| u.1);
    let state = match (&app.3[..], app.4.as_deref()) {
        ("suspended", Some("non_payment")) => {
            "suspended: an invoice is unpaid (see Billing)".to_string()
        }
        (st, _) => st.to_string(),
    };
    let body = html! {
        (notice)
        p { "Plan " strong { (app.2) } " · state " (state) }
        h2 { "Keys" }
        table {
            thead { tr { th scope="col" { "Key" } th scope="col" { "Created" } th scope="col" {} } }
            tbody {
                @for (kid, prefix, created, expires) in &keys {
                    tr {
                        td { code { (prefix) "…" } }
                        td { (format_date(day_of(*created))) }
                        td {
                            @if let Some(e) = expires {
                                "expires " (format_date(day_of(*e)))
                            } @else {
                                form method="post" action={ "/portal/applications/" (id) "/keys/" (kid) "/rotate" } {
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
                @for (m, p, v) in &limits { tr { td { (m) } td { (p) } td { (v) } } }
            }
        }
    };
    (status, Html(page(&app.0, Some(&session.csrf), body))).into_response()
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
    match own_app(&s, &session, &id).await {
        Ok(Some(_)) => {}
        Ok(None) => return not_found(&session),
        Err(e) => return failure(e),
    }
    let rotated = async {
        let mut tx = crate::store::begin_write(&s.pool).await?;
        let (_, key) = crate::http::applications::rotate(
            &s.limits,
            &mut tx,
            &id,
            &key_id,
            crate::http::applications::DEFAULT_ROTATION_GRACE_SECS,
        )
        .await?;
        sqlx::query("UPDATE catalog_revision SET revision = revision + 1 WHERE id = 1")
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok::<_, crate::http::error::ApiError>(key)
    }
    .await;
    match rotated {
        Ok(key) => {
            let notice = shown_once(
                "New key, shown only now (the old one keeps working for 24 hours):",
                "new-key",
                &key,
            );
            app_page(&s, &session, &id, notice, StatusCode::CREATED).await
        }
        Err(crate::http::error::ApiError::NotFound { .. }) => not_found(&session),
        Err(e @ crate::http::error::ApiError::Conflict { .. }) => {
            let message = alert(&e.public_message());
            app_page(&s, &session, &id, message, StatusCode::CONFLICT).await
        }
        Err(e) => super::access::signed_in_failure(e, &session),
    }
}
