//! Developer portal: adding a card in the browser and confirming a payment the bank wants to
//! authenticate (3-D Secure). Card numbers never touch this server: Stripe Elements or Braintree
//! Hosted Fields collect them in the provider's frames, and the browser hands us only the
//! provider's id (Stripe PaymentMethod) or one-time nonce (Braintree). These are the only portal
//! pages that need JavaScript, because the providers require their scripts for card entry. The glue
//! between a form and the provider's script is a static asset ([`assets`]); the values it needs
//! (publishable key, client secret or token) are `data-` attributes of the form.

use axum::extract::{Path, State};
use axum::http::{header, StatusCode};
use axum::response::{Html, IntoResponse, Response};

use super::access::{failure, SessionForm};
use crate::domain::payments::cards::{self, AddMethod, CardSetup};
use crate::domain::payments::{charging, statement};
use crate::domain::DomainError;
use crate::portal::assets;
use crate::portal::html::{alert, csrf_input, html, notice, page, Markup};
use crate::portal::session::Session;
use crate::state::AppState;

/// Pages carrying a client secret or token are never cached.
fn no_store(status: StatusCode, html: String) -> Response {
    (status, [(header::CACHE_CONTROL, "no-store")], Html(html)).into_response()
}

/// `GET /portal/payment_methods/new`: a button that starts card entry. Nothing is created at the
/// provider on a GET (a customer and a SetupIntent or client token per page view would let anyone
/// with a session make provider objects by reloading); the POST below does it.
pub async fn new_card(session: Session) -> Response {
    let body = html! {
        p { "Cards are entered in the payment provider's form." }
        (start_card_form(&session.csrf))
    };
    no_store(
        StatusCode::OK,
        page("Add a card", Some(&session.csrf), body),
    )
}

/// The form (one button, `#add-card`) that opens the provider's card form.
pub fn start_card_form(csrf: &str) -> Markup {
    html! {
        form method="post" action="/portal/payment_methods/new" {
            (csrf_input(csrf))
            button id="add-card" type="submit" { "Add a card" }
        }
    }
}

/// `POST /portal/payment_methods/new`: the provider's card form (creates the provider customer if
/// needed and a SetupIntent or client token).
pub async fn start_card(
    State(s): State<AppState>,
    SessionForm { session, .. }: SessionForm,
) -> Response {
    card_form(&s, &session, html! {}, StatusCode::OK).await
}

async fn card_form(
    s: &AppState,
    session: &Session,
    message: Markup,
    status: StatusCode,
) -> Response {
    let setup = match cards::setup(&s.pool, s.master_key.as_deref(), &session.account_id).await {
        Ok(setup) => setup,
        Err(DomainError::Conflict { .. }) => {
            let body =
                html! { p { "Card payments are not set up yet. Please contact the provider." } };
            return no_store(
                StatusCode::CONFLICT,
                page("Add a card", Some(&session.csrf), body),
            );
        }
        Err(e) => return failure(e),
    };
    let body = card_entry(message, &session.csrf, &setup);
    no_store(status, page("Add a card", Some(&session.csrf), body))
}

/// The card form for the provider `setup` names (what the payments API's setup call answers):
/// Stripe Elements or Braintree Hosted Fields, the provider's script and the glue script, which
/// reads the key and secret (or client token) from the form's `data-` attributes.
fn card_entry(message: Markup, csrf: &str, setup: &CardSetup) -> Markup {
    let (stripe, js_url, publishable_key, client_secret, client_token) = match setup {
        CardSetup::Stripe(st) => (
            true,
            st.js_url.as_str(),
            Some(st.publishable_key.as_str()),
            Some(st.client_secret.as_str()),
            None,
        ),
        CardSetup::Braintree(bt) => (
            false,
            bt.js_url.as_str(),
            None,
            None,
            Some(bt.client_token.as_str()),
        ),
    };
    html! {
        (message)
        form id="card-form" method="post" action="/portal/payment_methods"
            data-publishable-key=[publishable_key]
            data-client-secret=[client_secret]
            data-client-token=[client_token] {
            (csrf_input(csrf))
            @if stripe {
                input type="hidden" name="payment_method_id" id="payment_method_id";
                label for="card-element" { "Card" }
                div id="card-element" class="card-field" {}
            } @else {
                input type="hidden" name="payment_method_nonce" id="payment_method_nonce";
                label for="bt-number" { "Card number" }
                div id="bt-number" class="card-field" {}
                label for="bt-expiration" { "Expiry (MM/YY)" }
                div id="bt-expiration" class="card-field" {}
                label for="bt-cvv" { "CVV" }
                div id="bt-cvv" class="card-field" {}
            }
            p id="card-errors" class="error" role="alert" {}
            label { input type="checkbox" name="default" value="on"; " Make it the default card" }
            button id="save-card" type="submit" { "Save card" }
        }
        @if stripe {
            script src=(js_url) {}
            script src=(assets::STRIPE_CARD.url()) {}
        } @else {
            script src={ (js_url) "client.min.js" } {}
            script src={ (js_url) "hosted-fields.min.js" } {}
            script src=(assets::BRAINTREE_CARD.url()) {}
        }
    }
}

/// `POST /portal/payment_methods`: attaches the card the provider's script confirmed.
pub async fn save_card(
    State(s): State<AppState>,
    SessionForm { session, fields: f }: SessionForm,
) -> Response {
    let field = |name: &str| {
        f.get(name)
            .map(|v| v.trim())
            .filter(|v| !v.is_empty())
            .map(str::to_string)
    };
    let input = AddMethod {
        payment_method_id: field("payment_method_id"),
        payment_method_nonce: field("payment_method_nonce"),
        default: f.get("default").is_some_and(|v| v == "on"),
    };
    match cards::add(&s.pool, s.master_key.as_deref(), &session.account_id, input).await {
        Ok(added) => {
            let text = format!(
                "Card {} ending in {} saved.",
                added.method.brand, added.method.last4
            );
            super::billing::billing_page(&s, &session, notice(&text), StatusCode::OK).await
        }
        Err(DomainError::Invalid { message, .. }) => {
            card_form(
                &s,
                &session,
                alert(&format!("The card was not saved: {message}")),
                StatusCode::UNPROCESSABLE_ENTITY,
            )
            .await
        }
        Err(e) => failure(e),
    }
}

/// The page asking the cardholder to authenticate the payment of `invoice_id` with Stripe.js, or
/// `None` when no payment waits for it.
pub async fn authenticate_page(
    s: &AppState,
    session: &Session,
    invoice_id: &str,
) -> Option<Response> {
    let action = charging::action_secret(&s.pool, s.master_key.as_deref(), invoice_id)
        .await
        .ok()
        .flatten()?;
    let body = html! {
        p role="alert" { "Your bank asks you to confirm this payment." }
        form id="confirm-form" method="post" action={ "/portal/invoices/" (invoice_id) "/confirm" }
            data-publishable-key=(action.publishable_key) data-client-secret=(action.client_secret) {
            (csrf_input(&session.csrf))
            p id="confirm-errors" class="error" role="alert" {}
            button id="confirm-payment" type="submit" { "Confirm payment" }
        }
        script src=(action.js_url) {}
        script src=(assets::STRIPE_CONFIRM.url()) {}
    };
    Some(no_store(
        StatusCode::PAYMENT_REQUIRED,
        page("Confirm the payment", Some(&session.csrf), body),
    ))
}

/// `POST /portal/invoices/{id}/confirm`: after Stripe.js ran the bank's challenge, records how the
/// payment ended (asking Stripe, not trusting the browser).
pub async fn confirmed(
    State(s): State<AppState>,
    Path(id): Path<String>,
    SessionForm { session, .. }: SessionForm,
) -> Response {
    if !super::billing::owns_invoice(&s, &session, &id).await {
        return super::billing::not_found(&session);
    }
    let settled =
        charging::settle_action(&s.pool, s.master_key.as_deref(), &id, charging::today()).await;
    // A database error reads as "not paid": the page says so and the developer may look again.
    let paid = statement::is_paid(&s.pool, &id).await.unwrap_or(false);
    let (message, status) = match (settled, paid) {
        (_, true) => (notice("Paid. Thank you."), StatusCode::OK),
        (Err(e), _) => (
            alert(&format!(
                "The payment could not be checked: {}",
                e.public_message()
            )),
            StatusCode::SERVICE_UNAVAILABLE,
        ),
        _ => (
            alert("The payment was not confirmed. You can pay again."),
            StatusCode::PAYMENT_REQUIRED,
        ),
    };
    super::billing::billing_page(&s, &session, message, status).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn card_forms_carry_their_values_in_escaped_data_attributes() {
        let hostile = "x\"><script>alert(1)</script>";
        let stripe = card_entry(
            html! {},
            "tok",
            &CardSetup::Stripe(cards::StripeSetup {
                object: "payment_method_setup",
                provider: crate::domain::payments::ProviderKind::Stripe,
                js_url: "https://js.stripe.com/v3/".into(),
                publishable_key: hostile.into(),
                client_secret: "seti_1_secret_2".into(),
            }),
        )
        .into_string();
        assert!(stripe
            .contains("data-publishable-key=\"x&quot;&gt;&lt;script&gt;alert(1)&lt;/script&gt;\""));
        assert!(stripe.contains("data-client-secret=\"seti_1_secret_2\""));
        assert!(stripe.contains("<script src=\"https://js.stripe.com/v3/\"></script>"));
        assert!(stripe.contains("/portal/assets/stripe-card.js?v="));
        assert!(!stripe.contains("<script>") && !stripe.contains("data-client-token"));
        let bt = card_entry(
            html! {},
            "tok",
            &CardSetup::Braintree(cards::BraintreeSetup {
                object: "payment_method_setup",
                provider: crate::domain::payments::ProviderKind::Braintree,
                js_url: "https://js.braintreegateway.com/web/3.97.2/js/".into(),
                client_token: hostile.into(),
            }),
        )
        .into_string();
        assert!(
            bt.contains("data-client-token=\"x&quot;&gt;&lt;script&gt;alert(1)&lt;/script&gt;\"")
        );
        assert!(bt.contains(
            "src=\"https://js.braintreegateway.com/web/3.97.2/js/hosted-fields.min.js\""
        ));
        assert!(bt.contains("/portal/assets/braintree-card.js?v=") && bt.contains("id=\"bt-cvv\""));
        assert!(!bt.contains("<script>") && !bt.contains("data-publishable-key"));
    }
}
