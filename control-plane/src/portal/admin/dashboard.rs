//! Admin portal: the dashboard (catalog counts, revenue this month and money outstanding per
//! currency, today's usage per service and metric).

use std::collections::HashMap;

use axum::extract::State;
use axum::response::{Html, IntoResponse, Response};

use super::access::{failure, AdminSession};
use crate::domain::billing::calendar::{day_of, format_date, month_start, SECONDS_PER_DAY};
use crate::domain::overview;
use crate::portal::html::{admin_page, html, table, Markup};
use crate::state::AppState;
use crate::store::now;

pub async fn dashboard(State(s): State<AppState>, admin: AdminSession) -> Response {
    let month = month_start(day_of(now())) * SECONDS_PER_DAY;
    // Today's usage per service and metric (UTC day; hourly counters, read by time).
    let read = async {
        Ok::<_, crate::domain::DomainError>((
            overview::counts(&s.pool).await?,
            overview::money(&s.pool, month).await?,
            overview::usage_since(&s.pool, day_of(now()) * SECONDS_PER_DAY).await?,
        ))
    };
    let (counts, money, usage) = match read.await {
        Ok(all) => all,
        Err(e) => return failure(e),
    };
    let usage_rows: Vec<Vec<Markup>> = usage
        .iter()
        .map(|(svc, metric, n)| vec![html! { (svc) }, html! { (metric) }, html! { (n) }])
        .collect();
    let (revenue, outstanding) = (money.revenue, money.outstanding);
    let show = |m: &HashMap<String, rust_decimal::Decimal>| {
        let mut v: Vec<String> = m.iter().map(|(c, a)| format!("{a} {c}")).collect();
        v.sort();
        if v.is_empty() {
            "0".to_string()
        } else {
            v.join(", ")
        }
    };
    let body = html! {
        p { "Services " (counts.services) " · plans " (counts.plans) " · accounts " (counts.accounts) " · applications " (counts.applications) }
        p { "Revenue since " (format_date(month / SECONDS_PER_DAY)) ": " strong id="revenue" { (show(&revenue)) } }
        p { "Outstanding (issued, unpaid, failed): " strong id="outstanding" { (show(&outstanding)) } }
        section {
            h2 { "Usage today (UTC)" }
            (table("usage today", &["Service", "Metric", "Count"], &usage_rows))
            (usage_download(day_of(now())))
        }
    };
    Html(admin_page("Dashboard", Some(&admin.csrf), body)).into_response()
}

/// The usage download: today's hours (what the table sums) as a link, and a form for any range
/// (a GET form: a download changes nothing, so it needs no CSRF token).
fn usage_download(today: i64) -> Markup {
    let (since, until) = (format_date(today), format_date(today + 1));
    html! {
        p { (super::exports::link("usage.csv", &[("since", &since), ("until", &until), ("granularity", "hour")])) }
        form method="get" action="/admin/exports/usage.csv" {
            label for="usage-since" { "Since (UTC date)" }
            input id="usage-since" name="since" type="date" value=(since) required;
            label for="usage-until" { "Until (exclusive)" }
            input id="usage-until" name="until" type="date" value=(until) required;
            label for="usage-granularity" { "Per" }
            select id="usage-granularity" name="granularity" {
                option value="hour" { "hour" }
                option value="day" selected { "day" }
                option value="month" { "month" }
            }
            button type="submit" { "Download usage CSV" }
        }
    }
}
