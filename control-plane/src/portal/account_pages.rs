//! Portal pages of one account's objects: an application (keys, rotation, usage chart with the
//! plan's limits) and billing (invoices with PDFs, payments). Another account's objects are 404.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{Html, IntoResponse, Response};

use super::html::{esc, page};
use super::pages::{failure, SessionForm};
use super::session::Session;
use crate::billing::calendar::{day_of, format_date, SECONDS_PER_DAY};
use crate::http::error::ApiError;
use crate::http::AppState;
use crate::store::now;

/// (id, prefix, created_at, expires_at)
type KeyRow = (String, String, i64, Option<i64>);
/// (id, number, state, total, currency, period_start, period_end)
type InvoiceRow = (String, Option<String>, String, String, String, i64, i64);
/// (invoice number, state, amount, currency, error message, created_at)
type PaymentRow = (Option<String>, String, String, String, Option<String>, i64);

/// Days shown in the usage chart.
pub const CHART_DAYS: i64 = 30;

pub(super) fn not_found(session: &Session) -> Response {
    (
        StatusCode::NOT_FOUND,
        Html(page(
            "Not found",
            Some(&session.csrf),
            "<p>There is nothing here.</p>",
        )),
    )
        .into_response()
}

/// (name, plan id, plan name, state, state reason) of an application of the session's account.
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
pub fn usage_chart(days: &[(i64, i64)], daily_limit: Option<i64>, first_day: i64) -> String {
    let (w, h, pad) = (600.0_f64, 200.0_f64, 24.0_f64);
    let max = days
        .iter()
        .map(|(_, v)| *v)
        .max()
        .unwrap_or(0)
        .max(daily_limit.unwrap_or(0))
        .max(1) as f64;
    let bar_w = (w - pad) / CHART_DAYS as f64;
    let mut bars = String::new();
    for (day, value) in days {
        let i = (day - first_day) as f64;
        let bh = (*value as f64 / max) * (h - pad);
        bars.push_str(&format!(
            "<rect x=\"{:.1}\" y=\"{:.1}\" width=\"{:.1}\" height=\"{:.1}\" fill=\"#3b6ea5\"><title>{}: {}</title></rect>",
            pad + i * bar_w,
            h - pad - bh,
            (bar_w - 2.0).max(1.0),
            bh,
            format_date(*day),
            value
        ));
    }
    let limit = daily_limit
        .map(|l| {
            let y = h - pad - (l as f64 / max) * (h - pad);
            format!("<line x1=\"{pad}\" x2=\"{w}\" y1=\"{y:.1}\" y2=\"{y:.1}\" stroke=\"#a40000\" stroke-dasharray=\"6 4\"/><text x=\"{pad}\" y=\"{:.1}\" font-size=\"12\" fill=\"#a40000\">limit {l}/day</text>", y - 4.0)
        })
        .unwrap_or_default();
    format!(
        "<svg role=\"img\" aria-label=\"hits per day, last {CHART_DAYS} days\" viewBox=\"0 0 {w} {h}\" width=\"100%\" height=\"{h}\">\
         <line x1=\"{pad}\" x2=\"{w}\" y1=\"{}\" y2=\"{}\" stroke=\"#999\"/>{bars}{limit}</svg>",
        h - pad,
        h - pad
    )
}

async fn app_page(
    s: &AppState,
    session: &Session,
    id: &str,
    notice: &str,
    status: StatusCode,
) -> Response {
    let app = match own_app(s, session, id).await {
        Ok(Some(a)) => a,
        Ok(None) => return not_found(session),
        Err(e) => return failure(e.into()),
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
        (Err(e), _, _) | (_, Err(e), _) | (_, _, Err(e)) => return failure(e.into()),
    };
    let csrf = esc(&session.csrf);
    let key_rows: String = keys
        .iter()
        .map(|(kid, prefix, created, expires)| {
            let action = match expires {
                Some(e) => format!("expires {}", format_date(day_of(*e))),
                None => format!(
                    "<form method=\"post\" action=\"/portal/applications/{}/keys/{}/rotate\"><input type=\"hidden\" name=\"csrf\" value=\"{csrf}\"><button type=\"submit\">Rotate</button></form>",
                    esc(id),
                    esc(kid)
                ),
            };
            format!("<tr><td><code>{}…</code></td><td>{}</td><td>{action}</td></tr>", esc(prefix), format_date(day_of(*created)))
        })
        .collect();
    let daily = limits
        .iter()
        .find(|(m, p, _)| m == "hits" && p == "day")
        .map(|l| l.2);
    let today_used = usage
        .iter()
        .find(|(d, _)| *d == day_of(t))
        .map_or(0, |u| u.1);
    let limit_rows: String = limits
        .iter()
        .map(|(m, p, v)| {
            format!(
                "<tr><td>{}</td><td>{}</td><td>{v}</td></tr>",
                esc(m),
                esc(p)
            )
        })
        .collect();
    let state = match (&app.3[..], app.4.as_deref()) {
        ("suspended", Some("non_payment")) => {
            "suspended: an invoice is unpaid (see Billing)".to_string()
        }
        (st, _) => st.to_string(),
    };
    let body = format!(
        "{notice}<p>Plan <strong>{}</strong> · state {}</p>\
         <h2>Keys</h2><table><thead><tr><th scope=\"col\">Key</th><th scope=\"col\">Created</th><th scope=\"col\"></th></tr></thead><tbody>{key_rows}</tbody></table>\
         <h2>Usage</h2><p>Hits today: {today_used}{}</p>{}\
         <h2>Limits</h2><table><thead><tr><th scope=\"col\">Metric</th><th scope=\"col\">Period</th><th scope=\"col\">Limit</th></tr></thead><tbody>{limit_rows}</tbody></table>",
        esc(&app.2),
        esc(&state),
        daily.map(|d| format!(" of {d} (remaining {})", (d - today_used).max(0))).unwrap_or_default(),
        usage_chart(&usage, daily, first_day),
    );
    (status, Html(page(&app.0, Some(&session.csrf), &body))).into_response()
}

pub async fn application(
    State(s): State<AppState>,
    session: Session,
    Path(id): Path<String>,
) -> Response {
    app_page(&s, &session, &id, "", StatusCode::OK).await
}

pub async fn rotate_key(
    State(s): State<AppState>,
    Path((id, key_id)): Path<(String, String)>,
    SessionForm { session, .. }: SessionForm,
) -> Response {
    match own_app(&s, &session, &id).await {
        Ok(Some(_)) => {}
        Ok(None) => return not_found(&session),
        Err(e) => return failure(e.into()),
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
            let notice = format!(
                "<div class=\"notice\" role=\"status\"><p>New key, shown only now (the old one keeps working for 24 hours):</p><p><code id=\"new-key\">{}</code></p></div>",
                esc(&key)
            );
            app_page(&s, &session, &id, &notice, StatusCode::CREATED).await
        }
        Err(crate::http::error::ApiError::NotFound { .. }) => not_found(&session),
        Err(e @ crate::http::error::ApiError::Conflict { .. }) => {
            let message = super::html::alert(&e.public_message());
            app_page(&s, &session, &id, &message, StatusCode::CONFLICT).await
        }
        Err(e) => super::pages::signed_in_failure(e, &session),
    }
}

pub async fn billing(State(s): State<AppState>, session: Session) -> Response {
    billing_page(&s, &session, "", StatusCode::OK).await
}

/// The account's cards at the configured provider, as a section with default/remove buttons.
async fn cards_section(s: &AppState, session: &Session) -> String {
    use crate::payments::charging;
    let p = match charging::provider(&s.pool, s.master_key.as_deref()).await {
        Ok(p) => p,
        Err(_) => return "<h2>Payment methods</h2><p>Card payments are not set up.</p>".into(),
    };
    let listed = async {
        match charging::customer(&s.pool, &p, &session.account_id, false).await? {
            Some((customer, default)) => {
                Ok::<_, ApiError>((charging::cards(&p, &customer).await?, default))
            }
            None => Ok((Vec::new(), None)),
        }
    }
    .await;
    let (cards, default) = match listed {
        Ok(c) => c,
        Err(_) => return "<h2>Payment methods</h2><p class=\"error\">The payment provider is not answering; try again shortly.</p>".into(),
    };
    let csrf = esc(&session.csrf);
    let rows: String = cards
        .iter()
        .map(|c| {
            let is_default = default.as_deref() == Some(c.id.as_str());
            let make_default = if is_default {
                "default".to_string()
            } else {
                format!("<form method=\"post\" action=\"/portal/payment_methods/{}/default\" style=\"display:inline\"><input type=\"hidden\" name=\"csrf\" value=\"{csrf}\"><button type=\"submit\">Make default</button></form>", esc(&c.id))
            };
            format!(
                "<tr><td>{} •••• {}</td><td>{:02}/{}</td><td>{make_default} <form method=\"post\" action=\"/portal/payment_methods/{}/delete\" style=\"display:inline\"><input type=\"hidden\" name=\"csrf\" value=\"{csrf}\"><button type=\"submit\">Remove</button></form></td></tr>",
                esc(&c.brand),
                esc(&c.last4),
                c.exp_month,
                c.exp_year,
                esc(&c.id)
            )
        })
        .collect();
    let add = super::card_pages::start_card_form(&session.csrf);
    if cards.is_empty() {
        format!("<h2>Payment methods</h2><p>No card on file.</p>{add}")
    } else {
        format!("<h2>Payment methods</h2><table class=\"sortable\"><thead><tr><th scope=\"col\">Card</th><th scope=\"col\">Expires</th><th scope=\"col\"></th></tr></thead><tbody>{rows}</tbody></table>{add}")
    }
}

pub(super) async fn billing_page(
    s: &AppState,
    session: &Session,
    notice: &str,
    status: StatusCode,
) -> Response {
    let invoices: Result<Vec<InvoiceRow>, _> = sqlx::query_as(
        "SELECT id, number, state, total, currency, period_start, period_end FROM invoices WHERE account_id = $1 AND number IS NOT NULL ORDER BY id DESC LIMIT 100",
    )
    .bind(&session.account_id)
    .fetch_all(&s.pool)
    .await;
    let payments: Result<Vec<PaymentRow>, _> = sqlx::query_as(
        "SELECT i.number, a.state, a.amount, a.currency, a.error_message, a.created_at FROM charge_attempts a JOIN invoices i ON i.id = a.invoice_id \
         WHERE i.account_id = $1 ORDER BY a.created_at DESC, a.id DESC LIMIT 100",
    )
    .bind(&session.account_id)
    .fetch_all(&s.pool)
    .await;
    let (invoices, payments) = match (invoices, payments) {
        (Ok(i), Ok(p)) => (i, p),
        (Err(e), _) | (_, Err(e)) => return failure(e.into()),
    };
    let csrf = esc(&session.csrf);
    let inv_rows: String = invoices
        .iter()
        .map(|(id, number, state, total, currency, start, end)| {
            let pay = if ["pending", "unpaid", "failed"].contains(&state.as_str()) {
                format!("<form method=\"post\" action=\"/portal/invoices/{}/pay\" style=\"display:inline\"><input type=\"hidden\" name=\"csrf\" value=\"{csrf}\"><button type=\"submit\">Pay now</button></form>", esc(id))
            } else {
                String::new()
            };
            format!(
                "<tr><td>{}</td><td>{} to {}</td><td>{}</td><td>{} {}</td><td><a href=\"/portal/invoices/{}.pdf\">PDF</a> {pay}</td></tr>",
                esc(number.as_deref().unwrap_or("")),
                format_date(*start),
                format_date(end - 1),
                esc(state),
                esc(total),
                esc(currency),
                esc(id)
            )
        })
        .collect();
    let pay_rows: String = payments
        .iter()
        .map(|(number, state, amount, currency, error, at)| {
            format!(
                "<tr><td>{}</td><td>{}</td><td>{} {}</td><td>{}</td><td>{}</td></tr>",
                format_date(day_of(*at)),
                esc(number.as_deref().unwrap_or("")),
                esc(amount),
                esc(currency),
                esc(state),
                esc(error.as_deref().unwrap_or(""))
            )
        })
        .collect();
    let cards = cards_section(s, session).await;
    let body = format!(
        "{notice}<h2>Invoices</h2><table class=\"sortable\"><thead><tr><th scope=\"col\">Number</th><th scope=\"col\">Period</th><th scope=\"col\">State</th><th scope=\"col\">Total</th><th scope=\"col\"></th></tr></thead><tbody>{inv_rows}</tbody></table>\
         <h2>Payments</h2><table class=\"sortable\"><thead><tr><th scope=\"col\">Date</th><th scope=\"col\">Invoice</th><th scope=\"col\">Amount</th><th scope=\"col\">Result</th><th scope=\"col\">Reason</th></tr></thead><tbody>{pay_rows}</tbody></table>{cards}"
    );
    (
        status,
        Html(page("Billing and usage", Some(&session.csrf), &body)),
    )
        .into_response()
}

/// `POST /portal/invoices/{id}/pay`: pays one of the account's issued invoices with the default card.
pub async fn pay_invoice(
    State(s): State<AppState>,
    Path(id): Path<String>,
    SessionForm { session, .. }: SessionForm,
) -> Response {
    match own_invoice(&s, &session, &id).await {
        Ok(true) => {}
        Ok(false) => return not_found(&session),
        Err(e) => return failure(e.into()),
    }
    use crate::payments::charging;
    let result = async {
        let attempt = charging::charge_invoice(
            &s.pool,
            s.master_key.as_deref(),
            &id,
            None,
            charging::today(),
        )
        .await?;
        charging::attempt_json(&s.pool, &attempt).await
    }
    .await;
    let (notice, status) = match result {
        Ok(p) if p["state"] == "succeeded" => (
            "<p class=\"notice\" role=\"status\">Paid. Thank you.</p>".to_string(),
            StatusCode::OK,
        ),
        Ok(p) if p["state"] == "requires_action" => {
            if let Some(r) = super::card_pages::authenticate_page(&s, &session, &id).await {
                return r;
            }
            (
                "<p class=\"error\" role=\"alert\">Your bank asks you to confirm this payment, and it cannot be confirmed here; please try again later.</p>".to_string(),
                StatusCode::PAYMENT_REQUIRED,
            )
        }
        // Charged for an invoice cancelled meanwhile: not a failure; the operator refunds it.
        Ok(p) if p["state"] == crate::payments::charging::REFUND_DUE => (
            format!(
                "<p class=\"error\" role=\"alert\">{}</p>",
                esc(p["error_message"].as_str().unwrap_or_default())
            ),
            StatusCode::CONFLICT,
        ),
        Ok(p) => (
            format!(
                "<p class=\"error\" role=\"alert\">The payment failed: {}</p>",
                esc(p["error_message"].as_str().unwrap_or("declined"))
            ),
            StatusCode::PAYMENT_REQUIRED,
        ),
        Err(e) => (
            format!(
                "<p class=\"error\" role=\"alert\">The payment could not be made: {}</p>",
                esc(&e.public_message())
            ),
            StatusCode::CONFLICT,
        ),
    };
    billing_page(&s, &session, &notice, status).await
}

/// `POST /portal/payment_methods/{id}/default|delete` for a card of the account's customer.
pub async fn card_action(
    State(s): State<AppState>,
    Path((card, action)): Path<(String, String)>,
    SessionForm { session, .. }: SessionForm,
) -> Response {
    use crate::payments::charging::{self, Provider};
    let done = async {
        // Without a gateway there are no cards: any card id is "not found".
        let p = match charging::provider(&s.pool, s.master_key.as_deref()).await {
            Err(ApiError::Conflict { .. }) => {
                return Err(ApiError::not_found("payment method", &card))
            }
            other => other?,
        };
        let Some((customer, default)) =
            charging::customer(&s.pool, &p, &session.account_id, false).await?
        else {
            return Err(ApiError::not_found("payment method", &card));
        };
        if !charging::cards(&p, &customer)
            .await?
            .iter()
            .any(|c| c.id == card)
        {
            return Err(ApiError::not_found("payment method", &card));
        }
        match action.as_str() {
            "default" => charging::set_default(&s.pool, &p, &session.account_id, Some(&card)).await,
            "delete" => {
                match &p {
                    Provider::Stripe(stripe) => stripe.detach(&card).await,
                    Provider::Braintree(bt) => bt.delete(&card).await,
                }
                .map_err(|e| ApiError::Unavailable(format!("{e:?}")))?;
                if default.as_deref() == Some(card.as_str()) {
                    charging::set_default(&s.pool, &p, &session.account_id, None).await?;
                }
                Ok(())
            }
            _ => Err(ApiError::not_found("action", &action)),
        }
    }
    .await;
    match done {
        Ok(()) => {
            billing_page(
                &s,
                &session,
                "<p class=\"notice\" role=\"status\">Saved.</p>",
                StatusCode::OK,
            )
            .await
        }
        Err(ApiError::NotFound { .. }) => not_found(&session),
        Err(e) => failure(e),
    }
}

/// Whether `id` is an issued invoice of the session's account.
async fn own_invoice(s: &AppState, session: &Session, id: &str) -> Result<bool, sqlx::Error> {
    let own: Option<(String,)> = sqlx::query_as(
        "SELECT id FROM invoices WHERE id = $1 AND account_id = $2 AND number IS NOT NULL",
    )
    .bind(id)
    .bind(&session.account_id)
    .fetch_optional(&s.pool)
    .await?;
    Ok(own.is_some())
}

/// [`own_invoice`], a database error counting as "not yours".
pub(super) async fn owns_invoice(s: &AppState, session: &Session, id: &str) -> bool {
    own_invoice(s, session, id).await.unwrap_or(false)
}

pub async fn invoice_pdf(
    State(s): State<AppState>,
    session: Session,
    Path(file): Path<String>,
) -> Response {
    let Some(id) = file.strip_suffix(".pdf") else {
        return not_found(&session);
    };
    match own_invoice(&s, &session, id).await {
        Ok(true) => crate::http::invoices::pdf_response(&s, id)
            .await
            .unwrap_or_else(failure),
        Ok(false) => not_found(&session),
        Err(e) => failure(e.into()),
    }
}
