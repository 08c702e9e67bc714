//! Admin portal: invoices (filtered list, finalize / issue / cancel / charge, credit notes) and the
//! billing settings form.

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{Html, IntoResponse, Response};

use super::access::{failure, AdminSession, Fields, WriteForm};
use super::forms::{options, text};
use crate::domain::access::tokens::Scope;
use crate::domain::billing::invoices::{self, InvoiceAction, InvoiceState};
use crate::domain::billing::manual;
use crate::domain::payments::charging;
use crate::portal::html::{
    admin_page, alert, csrf_input, error_span, html, input, notice, select, Markup,
};
use crate::state::AppState;
use crate::web::error::ApiError;

pub async fn invoices(
    State(s): State<AppState>,
    admin: AdminSession,
    Query(q): Query<Fields>,
) -> Response {
    let filter = InvoiceFilter {
        state: q.get("state").cloned().unwrap_or_default(),
        account_id: q.get("account_id").cloned().unwrap_or_default(),
    };
    invoices_page(&s, &admin, &filter, html! {}, StatusCode::OK).await
}

/// Which invoices the list shows (empty: all).
#[derive(Default)]
pub(super) struct InvoiceFilter {
    pub state: String,
    pub account_id: String,
}

/// Most invoices one page lists (newest first); the admin API pages through all of them.
const INVOICES_SHOWN: i64 = 200;

pub(super) async fn invoices_page(
    s: &AppState,
    admin: &AdminSession,
    filter: &InvoiceFilter,
    notice: Markup,
    status: StatusCode,
) -> Response {
    // A state no invoice can be in shows none (as the filter always did).
    let rows = match InvoiceState::from_name(&filter.state) {
        None if !filter.state.is_empty() => Ok(Vec::new()),
        state => {
            let account = Some(filter.account_id.as_str()).filter(|a| !a.is_empty());
            invoices::newest(&s.pool, state, account, INVOICES_SHOWN).await
        }
    };
    let rows = match rows {
        Ok(r) => r,
        Err(e) => return failure(e),
    };
    let csrf = &admin.csrf;
    let write = admin.scope == Scope::Write;
    let body = html! {
        (notice)
        p { (super::exports::link("invoices.csv", &[("state", &filter.state), ("account_id", &filter.account_id)])) }
        table class="sortable" {
            thead { tr {
                th scope="col" { "Number" } th scope="col" { "Account" } th scope="col" { "State" }
                th scope="col" { "Total" } th scope="col" {} th scope="col" { "Actions" }
            } }
            tbody {
                @for inv in &rows {
                    @let id = &inv.id;
                    @let st = inv.state;
                    @let actions: &[&str] = match st {
                        InvoiceState::Open => &["finalize", "issue", "cancel"],
                        InvoiceState::Finalized => &["issue", "cancel"],
                        InvoiceState::Pending | InvoiceState::Unpaid => &["charge", "cancel"],
                        InvoiceState::Failed => &["charge"],
                        _ => &[],
                    };
                    tr {
                        td { (inv.number.as_deref().unwrap_or("(draft)")) }
                        td { (inv.account_name) }
                        td { (st.as_str()) }
                        td { (inv.total) " " (inv.total.currency.code) }
                        td { a href={ "/admin/api/v1/invoices/" (id) ".pdf" } { "PDF" } }
                        td {
                            @if write {
                                @for a in actions {
                                    (crate::portal::html::plain_post_button(&format!("/admin/invoices/{id}/{a}"), csrf, a))
                                }
                            }
                            @if write && matches!(st, InvoiceState::Pending | InvoiceState::Unpaid | InvoiceState::Paid | InvoiceState::Failed) {
                                // A credit note refunds part or all of an issued invoice (net
                                // amount, VAT added).
                                details {
                                    summary { "Credit note" }
                                    form method="post" action={ "/admin/invoices/" (id) "/credit_note" } {
                                        (csrf_input(csrf))
                                        label for={ "amount-" (id) } { "Net amount" }
                                        input id={ "amount-" (id) } name="amount" required;
                                        label for={ "reason-" (id) } { "Reason" }
                                        input id={ "reason-" (id) } name="reason";
                                        button type="submit" { "Issue credit note" }
                                    }
                                }
                            }
                        }
                    }
                }
            }
        }
    };
    (
        status,
        Html(admin_page("Invoices", Some(&admin.csrf), body)),
    )
        .into_response()
}

/// `POST /admin/invoices/{id}/{action}`: issue, cancel or charge, with a write-scope session.
pub async fn invoice_action(
    State(s): State<AppState>,
    Path((id, action)): Path<(String, String)>,
    WriteForm { admin, .. }: WriteForm,
) -> Response {
    // The same domain functions as the admin API's action routes: same checks, same states,
    // same emails.
    let done = match action.as_str() {
        "finalize" => manual::act(&s.pool, &admin.actor(), &id, InvoiceAction::Finalize)
            .await
            .map(drop),
        "issue" => manual::act(&s.pool, &admin.actor(), &id, InvoiceAction::Issue)
            .await
            .map(drop),
        "cancel" => manual::act(&s.pool, &admin.actor(), &id, InvoiceAction::Cancel)
            .await
            .map(drop),
        "charge" => charging::charge_invoice(
            &s.pool,
            s.master_key.as_deref(),
            Some(&admin.actor()),
            &id,
            None,
            charging::today(),
        )
        .await
        .map(drop),
        _ => return failure(ApiError::not_found("action", &action)),
    };
    let (message, status) = match done {
        Ok(()) => (
            notice(&format!("Invoice {id}: {action} done.")),
            StatusCode::OK,
        ),
        Err(e) => {
            let message = e.to_string();
            (
                alert(&format!("Invoice {id}: {action} failed: {message}")),
                ApiError::from(e).into_response().status(),
            )
        }
    };
    invoices_page(&s, &admin, &InvoiceFilter::default(), message, status).await
}

/// Text fields of the billing settings form: (form name, JSON path, label).
const SETTINGS_TEXT: &[(&str, &str, &str)] = &[
    ("currency", "currency", "Currency (ISO 4217)"),
    ("due_days", "due_days", "Days to pay"),
    (
        "run_hour_utc",
        "run_hour_utc",
        "Daily billing run, hour (UTC)",
    ),
    ("retry.attempts", "retry.attempts", "Charge attempts"),
    (
        "retry.interval_days",
        "retry.interval_days",
        "Days between attempts",
    ),
    ("seller.name", "seller.name", "Seller name"),
    ("seller.vat_id", "seller.vat_id", "Seller VAT id"),
    (
        "payment_method_url",
        "payment_method_url",
        "Card update page (for emails)",
    ),
];
const SETTINGS_AREAS: &[(&str, &str)] = &[
    ("invoice_footer", "Invoice footer"),
    ("vat_zero_text", "Text on invoices without VAT"),
    (
        "email_texts.invoice_issued.subject",
        "Email, invoice issued: subject",
    ),
    (
        "email_texts.invoice_issued.body",
        "Email, invoice issued: body",
    ),
    (
        "email_texts.charge_succeeded.subject",
        "Email, charge succeeded: subject",
    ),
    (
        "email_texts.charge_succeeded.body",
        "Email, charge succeeded: body",
    ),
    (
        "email_texts.charge_failed.subject",
        "Email, charge failed: subject",
    ),
    (
        "email_texts.charge_failed.body",
        "Email, charge failed: body",
    ),
    (
        "email_texts.final_failure.subject",
        "Email, final failure: subject",
    ),
    (
        "email_texts.final_failure.body",
        "Email, final failure: body",
    ),
    (
        "email_texts.usage_threshold_reached.subject",
        "Email, usage alert: subject",
    ),
    (
        "email_texts.usage_threshold_reached.body",
        "Email, usage alert: body",
    ),
];
const NUMBER_FIELDS: &[&str] = &[
    "due_days",
    "run_hour_utc",
    "retry.attempts",
    "retry.interval_days",
];

fn get_path<'a>(v: &'a serde_json::Value, path: &str) -> &'a serde_json::Value {
    path.split('.').fold(v, |v, k| &v[k])
}

fn set_path(v: &mut serde_json::Value, path: &str, value: serde_json::Value) {
    let mut cur = v;
    let parts: Vec<&str> = path.split('.').collect();
    for (i, k) in parts.iter().enumerate() {
        if i + 1 == parts.len() {
            cur[*k] = value;
            return;
        }
        if !cur[*k].is_object() {
            cur[*k] = serde_json::json!({});
        }
        cur = &mut cur[*k];
    }
}

fn settings_page(
    admin: &AdminSession,
    values: &serde_json::Value,
    error: Option<(&str, &str)>,
    done: Markup,
    status: StatusCode,
) -> Response {
    let err_for = |name: &str| error.filter(|(p, _)| *p == name).map(|(_, m)| m);
    let general = error.filter(|(p, _)| {
        !SETTINGS_TEXT.iter().any(|t| t.0 == *p) && !SETTINGS_AREAS.iter().any(|t| t.0 == *p)
    });
    let checkboxes = [
        ("charging_enabled", "Charge issued invoices"),
        (
            "suspend_on_failure",
            "Suspend applications after the last failed charge",
        ),
    ];
    let body = html! {
        (done)
        @if let Some((p, m)) = general { (alert(&format!("{p}: {m}"))) }
        form method="post" action="/admin/billing" {
            (csrf_input(&admin.csrf))
            (select("mode", "Mode", &options(&["postpaid", "prepaid"]), &text(&values["mode"]), err_for("mode")))
            (select("numbering", "Invoice numbers", &options(&["monthly", "yearly"]), &text(&values["numbering"]), err_for("numbering")))
            @for (name, label) in checkboxes {
                label {
                    input type="checkbox" name=(name) value="on" checked[values[name].as_bool() == Some(true)];
                    " " (label)
                }
            }
            @for (name, path, label) in SETTINGS_TEXT {
                // Not `required`: seller and card-page fields may stay empty, and the browser must
                // not block the form over them; the server validates every field.
                (input(name, label, "text", &text(get_path(values, path)), err_for(name), false))
            }
            @for (name, label) in SETTINGS_AREAS {
                label for=(name) { (label) (error_span(name, err_for(name))) }
                textarea id=(name) name=(name) rows="3" cols="70" { (text(get_path(values, name))) }
            }
            button type="submit" { "Save" }
        }
    };
    (
        status,
        Html(admin_page("Billing settings", Some(&admin.csrf), body)),
    )
        .into_response()
}

pub async fn billing_settings(State(s): State<AppState>, admin: AdminSession) -> Response {
    match crate::domain::billing::settings::load(&s.pool).await {
        Ok(settings) => settings_page(
            &admin,
            &serde_json::to_value(&settings).unwrap_or_default(),
            None,
            html! {},
            StatusCode::OK,
        ),
        Err(e) => failure(e),
    }
}

/// Saves the whole form through the same validation as `PUT /billing/settings`; an invalid value
/// is shown next to its field and nothing changes.
pub async fn save_billing_settings(
    State(s): State<AppState>,
    WriteForm { admin, fields: f }: WriteForm,
) -> Response {
    let mut patch = serde_json::json!({});
    for key in ["mode", "numbering"] {
        if let Some(v) = f.get(key) {
            patch[key] = serde_json::json!(v);
        }
    }
    for key in ["charging_enabled", "suspend_on_failure"] {
        patch[key] = serde_json::json!(f.get(key).is_some_and(|v| v == "on"));
    }
    let mut bad_number = None;
    for (name, path, _) in SETTINGS_TEXT {
        let Some(v) = f.get(*name) else { continue };
        let value = if NUMBER_FIELDS.contains(name) {
            match v.trim().parse::<i64>() {
                Ok(n) => serde_json::json!(n),
                Err(_) => {
                    bad_number.get_or_insert(*name);
                    continue;
                }
            }
        } else {
            serde_json::json!(v.trim())
        };
        set_path(&mut patch, path, value);
    }
    for (name, _) in SETTINGS_AREAS {
        if let Some(v) = f.get(*name) {
            set_path(&mut patch, name, serde_json::json!(v.replace("\r\n", "\n")));
        }
    }
    let mut shown = patch.clone();
    if let Some(name) = bad_number {
        set_path(
            &mut shown,
            name,
            serde_json::json!(f.get(name).cloned().unwrap_or_default()),
        );
        return settings_page(
            &admin,
            &shown,
            Some((name, "a whole number")),
            html! {},
            StatusCode::UNPROCESSABLE_ENTITY,
        );
    }
    let saved = async {
        let mut tx = crate::store::begin_write(&s.pool).await?;
        let settings = crate::domain::billing::settings::update(
            &mut tx,
            &admin.actor(),
            patch,
            |tx, currency| Box::pin(crate::domain::payments::config::check_stored(tx, currency)),
        )
        .await?;
        tx.commit().await?;
        Ok::<_, ApiError>(settings)
    }
    .await;
    match saved {
        Ok(settings) => settings_page(
            &admin,
            &serde_json::to_value(&settings).unwrap_or_default(),
            None,
            notice("Saved."),
            StatusCode::OK,
        ),
        Err(
            ApiError::Invalid { message, param, .. } | ApiError::Conflict { message, param, .. },
        ) => {
            let param = param.unwrap_or_default();
            settings_page(
                &admin,
                &shown,
                Some((&param, &message)),
                html! {},
                StatusCode::UNPROCESSABLE_ENTITY,
            )
        }
        Err(e) => failure(e),
    }
}
