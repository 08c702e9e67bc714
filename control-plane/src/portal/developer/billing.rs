//! Developer portal: billing and usage (invoices with PDFs and a pay button, payments, the cards
//! on file), paying an invoice, making a card the default or removing it. Another account's
//! invoices and cards are 404.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{Html, IntoResponse, Response};

use super::access::{failure, SessionForm};
use crate::domain::billing::calendar::{day_of, format_date};
use crate::domain::payments::attempts::{self, AttemptState};
use crate::domain::payments::{cards, charging, provider, statement};
use crate::domain::DomainError;
use crate::portal::html::{alert, html, notice, page, plain_post_button, Markup};
use crate::portal::session::Session;
use crate::state::AppState;

pub(super) fn not_found(session: &Session) -> Response {
    (
        StatusCode::NOT_FOUND,
        Html(page(
            "Not found",
            Some(&session.csrf),
            html! { p { "There is nothing here." } },
        )),
    )
        .into_response()
}

/// The billing page: issued invoices, payments and the cards on file.
pub async fn billing(State(s): State<AppState>, session: Session) -> Response {
    billing_page(&s, &session, html! {}, StatusCode::OK).await
}

/// The account's cards at the configured provider, as a section with default/remove buttons.
async fn cards_section(s: &AppState, session: &Session) -> Markup {
    let p = match provider::provider(&s.pool, s.master_key.as_deref()).await {
        Ok(p) => p,
        Err(_) => {
            return html! { h2 { "Payment methods" } p { "Card payments are not set up." } };
        }
    };
    let (default, cards) = match cards::list(&s.pool, &p, &session.account_id).await {
        Ok(c) => c,
        Err(_) => {
            return html! {
                h2 { "Payment methods" }
                p class="error" { "The payment provider is not answering; try again shortly." }
            };
        }
    };
    let csrf = &session.csrf;
    html! {
        h2 { "Payment methods" }
        @if cards.is_empty() {
            p { "No card on file." }
        } @else {
            table class="sortable" {
                thead { tr { th scope="col" { "Card" } th scope="col" { "Expires" } th scope="col" {} } }
                tbody {
                    @for c in &cards {
                        tr {
                            td { (c.brand) " •••• " (c.last4) }
                            td { (format!("{:02}", c.exp_month)) "/" (c.exp_year) }
                            td {
                                @if default.as_deref() == Some(c.id.as_str()) {
                                    "default"
                                } @else {
                                    (plain_post_button(&format!("/portal/payment_methods/{}/default", c.id), csrf, "Make default"))
                                }
                                " "
                                (plain_post_button(&format!("/portal/payment_methods/{}/delete", c.id), csrf, "Remove"))
                            }
                        }
                    }
                }
            }
        }
        (super::cards::start_card_form(csrf))
    }
}

pub(super) async fn billing_page(
    s: &AppState,
    session: &Session,
    notice: Markup,
    status: StatusCode,
) -> Response {
    let invoices = statement::issued_invoices(&s.pool, &session.account_id).await;
    let payments = attempts::history(&s.pool, &session.account_id).await;
    let (invoices, payments) = match (invoices, payments) {
        (Ok(i), Ok(p)) => (i, p),
        (Err(e), _) | (_, Err(e)) => return failure(e),
    };
    let cards = cards_section(s, session).await;
    let body = html! {
        (notice)
        h2 { "Invoices" }
        table class="sortable" {
            thead { tr {
                th scope="col" { "Number" } th scope="col" { "Period" } th scope="col" { "State" }
                th scope="col" { "Total" } th scope="col" {}
            } }
            tbody {
                @for inv in &invoices {
                    tr {
                        td { (inv.number.as_deref().unwrap_or("")) }
                        td { (format_date(inv.period_start)) " to " (format_date(inv.period_end - 1)) }
                        td { (inv.state) }
                        td { (inv.total) " " (inv.currency) }
                        td {
                            a href={ "/portal/invoices/" (inv.id) ".pdf" } { "PDF" }
                            " "
                            @if inv.payable() {
                                (plain_post_button(&format!("/portal/invoices/{}/pay", inv.id), &session.csrf, "Pay now"))
                            }
                        }
                    }
                }
            }
        }
        h2 { "Payments" }
        table class="sortable" {
            thead { tr {
                th scope="col" { "Date" } th scope="col" { "Invoice" } th scope="col" { "Amount" }
                th scope="col" { "Result" } th scope="col" { "Reason" }
            } }
            tbody {
                @for line in &payments {
                    tr {
                        td { (format_date(day_of(line.created_at))) }
                        td { (line.invoice_number.as_deref().unwrap_or("")) }
                        td { (line.amount) " " (line.currency) }
                        td { (line.state.as_str()) }
                        td { (line.error_message.as_deref().unwrap_or("")) }
                    }
                }
            }
        }
        (cards)
    };
    (
        status,
        Html(page("Billing and usage", Some(&session.csrf), body)),
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
        Err(e) => return failure(e),
    }
    let result = async {
        let actor = crate::domain::audit::Actor::account(&session.account_id, None);
        let attempt = charging::charge_invoice(
            &s.pool,
            s.master_key.as_deref(),
            Some(&actor),
            &id,
            None,
            charging::today(),
        )
        .await?;
        attempts::fetch(&s.pool, &attempt).await
    }
    .await;
    let (message, status) = match result {
        Ok(p) if p.state == AttemptState::Succeeded => (notice("Paid. Thank you."), StatusCode::OK),
        Ok(p) if p.state == AttemptState::RequiresAction => {
            if let Some(r) = super::cards::authenticate_page(&s, &session, &id).await {
                return r;
            }
            (
                alert("Your bank asks you to confirm this payment, and it cannot be confirmed here; please try again later."),
                StatusCode::PAYMENT_REQUIRED,
            )
        }
        // Charged for an invoice cancelled meanwhile: not a failure; the operator refunds it.
        Ok(p) if p.state == AttemptState::RefundDue => (
            alert(p.error_message.as_deref().unwrap_or_default()),
            StatusCode::CONFLICT,
        ),
        Ok(p) => (
            alert(&format!(
                "The payment failed: {}",
                p.error_message.as_deref().unwrap_or("declined")
            )),
            StatusCode::PAYMENT_REQUIRED,
        ),
        Err(e) => (
            alert(&format!(
                "The payment could not be made: {}",
                e.public_message()
            )),
            StatusCode::CONFLICT,
        ),
    };
    billing_page(&s, &session, message, status).await
}

/// `POST /portal/payment_methods/{id}/default|delete` for a card of the account's customer.
pub async fn card_action(
    State(s): State<AppState>,
    Path((card, action)): Path<(String, String)>,
    SessionForm { session, .. }: SessionForm,
) -> Response {
    let account = &session.account_id;
    let done = async {
        // Without a gateway there are no cards: any card id is "not found".
        let p = match provider::provider(&s.pool, s.master_key.as_deref()).await {
            Err(DomainError::Conflict { .. }) => {
                return Err(DomainError::not_found("payment method", &card))
            }
            other => other?,
        };
        match action.as_str() {
            "default" => cards::make_default_at(&s.pool, &p, account, &card)
                .await
                .map(drop),
            "delete" => cards::remove_at(&s.pool, &p, account, &card)
                .await
                .map(drop),
            // An unknown action on one's own card is as much "not found" as another's card.
            _ => {
                cards::own_card(&s.pool, &p, account, &card).await?;
                Err(DomainError::not_found("action", &action))
            }
        }
    }
    .await;
    match done {
        Ok(()) => billing_page(&s, &session, notice("Saved."), StatusCode::OK).await,
        Err(DomainError::NotFound { .. }) => not_found(&session),
        Err(e) => failure(e),
    }
}

/// Whether `id` is an issued invoice of the session's account.
async fn own_invoice(s: &AppState, session: &Session, id: &str) -> Result<bool, DomainError> {
    statement::owns_issued_invoice(&s.pool, &session.account_id, id).await
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
        Ok(true) => crate::web::pdf::invoice(&s.pool, id)
            .await
            .unwrap_or_else(failure),
        Ok(false) => not_found(&session),
        Err(e) => failure(e),
    }
}
