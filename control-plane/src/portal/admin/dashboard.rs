//! Admin portal: the dashboard (catalog counts, revenue this month and money outstanding per
//! currency, today's usage per service and metric).

use std::collections::HashMap;

use axum::extract::State;
use axum::response::{Html, IntoResponse, Response};

use super::access::{failure, AdminSession};
use crate::domain::billing::calendar::{day_of, format_date, month_start, SECONDS_PER_DAY};
use crate::http::AppState;
use crate::portal::html::{admin_page, html, table, Markup};
use crate::store::now;

pub async fn dashboard(State(s): State<AppState>, admin: AdminSession) -> Response {
    let month = month_start(day_of(now())) * SECONDS_PER_DAY;
    let counts: Result<(i64, i64, i64, i64), _> = sqlx::query_as(
        "SELECT (SELECT COUNT(*) FROM services), (SELECT COUNT(*) FROM plans), (SELECT COUNT(*) FROM accounts), (SELECT COUNT(*) FROM applications)",
    )
    .fetch_one(&s.pool)
    .await;
    let money: Result<Vec<(String, String, String)>, _> = sqlx::query_as(
        "SELECT currency, state, total FROM invoices WHERE kind = 'invoice' AND ((state = 'paid' AND paid_at >= $1) OR state IN ('pending', 'unpaid', 'failed'))",
    )
    .bind(month)
    .fetch_all(&s.pool)
    .await;
    // Today's usage per service and metric (UTC day; hourly counters, read by time).
    let usage: Result<Vec<(String, String, i64)>, _> = sqlx::query_as(
        "SELECT s.name, m.name, CAST(SUM(c.value) AS BIGINT) FROM usage_counters c JOIN metrics m ON m.id = c.metric_id \
         JOIN services s ON s.id = m.service_id WHERE c.bucket_start >= $1 GROUP BY s.name, m.name ORDER BY s.name, m.name",
    )
    .bind(day_of(now()) * SECONDS_PER_DAY)
    .fetch_all(&s.pool)
    .await;
    let (counts, money, usage) = match (counts, money, usage) {
        (Ok(c), Ok(m), Ok(u)) => (c, m, u),
        (Err(e), _, _) | (_, Err(e), _) | (_, _, Err(e)) => return failure(e),
    };
    let usage_rows: Vec<Vec<Markup>> = usage
        .iter()
        .map(|(svc, metric, n)| vec![html! { (svc) }, html! { (metric) }, html! { (n) }])
        .collect();
    // Sums per currency in Decimal (never floats).
    let mut revenue: HashMap<String, rust_decimal::Decimal> = HashMap::new();
    let mut outstanding: HashMap<String, rust_decimal::Decimal> = HashMap::new();
    for (currency, state, total) in money {
        let target = if state == "paid" {
            &mut revenue
        } else {
            &mut outstanding
        };
        *target.entry(currency).or_default() +=
            total.parse::<rust_decimal::Decimal>().unwrap_or_default();
    }
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
        p { "Services " (counts.0) " · plans " (counts.1) " · accounts " (counts.2) " · applications " (counts.3) }
        p { "Revenue since " (format_date(month / SECONDS_PER_DAY)) ": " strong id="revenue" { (show(&revenue)) } }
        p { "Outstanding (issued, unpaid, failed): " strong id="outstanding" { (show(&outstanding)) } }
        section {
            h2 { "Usage today (UTC)" }
            (table("usage today", &["Service", "Metric", "Count"], &usage_rows))
        }
    };
    Html(admin_page("Dashboard", Some(&admin.csrf), body)).into_response()
}
