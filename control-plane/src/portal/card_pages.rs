//! Developer portal: adding a card in the browser and confirming a payment the bank wants to
//! authenticate (3-D Secure). Card numbers never touch this server: Stripe Elements or Braintree
//! Hosted Fields collect them in the provider's frames, and the browser hands us only the
//! provider's id (Stripe PaymentMethod) or one-time nonce (Braintree). These are the only portal
//! pages that need JavaScript, because the providers require their scripts for card entry.

use axum::extract::{Path, State};
use axum::http::{header, StatusCode};
use axum::response::{Html, IntoResponse, Response};
use axum::Extension;
use serde_json::{json, Value};

use super::html::{alert, csrf_input, esc, notice, page};
use super::pages::{failure, SessionForm};
use super::session::Session;
use crate::http::developer::Developer;
use crate::http::error::ApiError;
use crate::http::AppState;
use crate::payments::charging;

/// Pages carrying a client secret or token are never cached.
fn no_store(status: StatusCode, html: String) -> Response {
    (status, [(header::CACHE_CONTROL, "no-store")], Html(html)).into_response()
}

/// A JSON value as a JavaScript string literal inside `<script>` (`<` escaped, so `</script>` in a
/// value cannot end the script).
fn js_string(v: &str) -> String {
    json!(v).to_string().replace('<', "\\u003c")
}

/// `GET /portal/payment_methods/new`: a button that starts card entry. Nothing is created at the
/// provider on a GET (a customer and a SetupIntent or client token per page view would let anyone
/// with a session make provider objects by reloading); the POST below does it.
pub async fn new_card(session: Session) -> Response {
    let body = format!(
        "<p>Cards are entered in the payment provider's form.</p>{}",
        start_card_form(&session.csrf)
    );
    no_store(
        StatusCode::OK,
        page("Add a card", Some(&session.csrf), &body),
    )
}

/// The form (one button, `#add-card`) that opens the provider's card form.
pub fn start_card_form(csrf: &str) -> String {
    format!(
        "<form method=\"post\" action=\"/portal/payment_methods/new\">{}<button id=\"add-card\" type=\"submit\">Add a card</button></form>",
        csrf_input(csrf)
    )
}

/// `POST /portal/payment_methods/new`: the provider's card form (creates the provider customer if
/// needed and a SetupIntent or client token).
pub async fn start_card(
    State(s): State<AppState>,
    SessionForm { session, .. }: SessionForm,
) -> Response {
    card_form(&s, &session, "", StatusCode::OK).await
}

async fn card_form(s: &AppState, session: &Session, message: &str, status: StatusCode) -> Response {
    let dev = Developer {
        account_id: session.account_id.clone(),
    };
    let setup = crate::http::payments::setup(State(s.clone()), Extension(dev)).await;
    let setup: Value = match setup {
        Ok(axum::Json(v)) => v,
        Err(ApiError::Conflict { .. }) => {
            let body = "<p>Card payments are not set up yet. Please contact the provider.</p>";
            return no_store(
                StatusCode::CONFLICT,
                page("Add a card", Some(&session.csrf), body),
            );
        }
        Err(e) => return failure(e),
    };
    let form_start = format!(
        "{message}<form id=\"card-form\" method=\"post\" action=\"/portal/payment_methods\">{}",
        csrf_input(&session.csrf)
    );
    let common_end = "<p id=\"card-errors\" class=\"error\" role=\"alert\"></p>\
        <label><input type=\"checkbox\" name=\"default\" value=\"on\"> Make it the default card</label>\
        <button id=\"save-card\" type=\"submit\">Save card</button></form>";
    let body = if setup["provider"] == "stripe" {
        format!(
            "{form_start}<input type=\"hidden\" name=\"payment_method_id\" id=\"payment_method_id\">\
             <label for=\"card-element\">Card</label><div id=\"card-element\" class=\"card-field\"></div>{common_end}\
             <script src=\"{}\"></script><script>\
             (function(){{var stripe=Stripe({}),card=stripe.elements().create('card');card.mount('#card-element');\
             var form=document.getElementById('card-form'),pm=document.getElementById('payment_method_id'),\
             out=document.getElementById('card-errors'),btn=document.getElementById('save-card');\
             form.addEventListener('submit',function(ev){{if(pm.value)return;ev.preventDefault();btn.disabled=true;out.textContent='';\
             stripe.confirmCardSetup({},{{payment_method:{{card:card}}}}).then(function(r){{\
             if(r.error){{out.textContent=(r.error&&r.error.message)||'The card was not accepted.';btn.disabled=false;return;}}\
             var id=r.setupIntent.payment_method;pm.value=(typeof id==='string')?id:id.id;form.submit();}});}});}})();</script>",
            esc(setup["js_url"].as_str().unwrap_or_default()),
            js_string(setup["publishable_key"].as_str().unwrap_or_default()),
            js_string(setup["client_secret"].as_str().unwrap_or_default()),
        )
    } else {
        format!(
            "{form_start}<input type=\"hidden\" name=\"payment_method_nonce\" id=\"payment_method_nonce\">\
             <label for=\"bt-number\">Card number</label><div id=\"bt-number\" class=\"card-field\"></div>\
             <label for=\"bt-expiration\">Expiry (MM/YY)</label><div id=\"bt-expiration\" class=\"card-field\"></div>\
             <label for=\"bt-cvv\">CVV</label><div id=\"bt-cvv\" class=\"card-field\"></div>{common_end}\
             <script src=\"{0}client.min.js\"></script><script src=\"{0}hosted-fields.min.js\"></script><script>\
             (function(){{var form=document.getElementById('card-form'),nonce=document.getElementById('payment_method_nonce'),\
             out=document.getElementById('card-errors'),btn=document.getElementById('save-card');btn.disabled=true;\
             braintree.client.create({{authorization:{1}}},function(err,client){{if(err){{out.textContent=err.message;return;}}\
             braintree.hostedFields.create({{client:client,fields:{{number:{{selector:'#bt-number'}},expirationDate:{{selector:'#bt-expiration'}},cvv:{{selector:'#bt-cvv'}}}}}},\
             function(err,fields){{if(err){{out.textContent=err.message;return;}}btn.disabled=false;\
             form.addEventListener('submit',function(ev){{if(nonce.value)return;ev.preventDefault();btn.disabled=true;out.textContent='';\
             fields.tokenize(function(err,payload){{if(err){{out.textContent=err.message||'The card was not accepted.';btn.disabled=false;return;}}\
             nonce.value=payload.nonce;form.submit();}});}});}});}});}})();</script>",
            esc(setup["js_url"].as_str().unwrap_or_default()),
            js_string(setup["client_token"].as_str().unwrap_or_default()),
        )
    };
    no_store(status, page("Add a card", Some(&session.csrf), &body))
}

/// `POST /portal/payment_methods`: attaches the card the provider's script confirmed.
pub async fn save_card(
    State(s): State<AppState>,
    SessionForm { session, fields: f }: SessionForm,
) -> Response {
    let dev = Developer {
        account_id: session.account_id.clone(),
    };
    let mut input = json!({"default": f.get("default").is_some_and(|v| v == "on")});
    for name in ["payment_method_id", "payment_method_nonce"] {
        if let Some(v) = f.get(name).filter(|v| !v.trim().is_empty()) {
            input[name] = json!(v.trim());
        }
    }
    let added = match crate::http::extract::parse(input.to_string().as_bytes()) {
        Ok(input) => {
            crate::http::payments::add_method(
                State(s.clone()),
                Extension(dev),
                crate::http::extract::JsonBody(input),
            )
            .await
        }
        Err(e) => Err(e),
    };
    match added {
        Ok((_, axum::Json(card))) => {
            let text = format!(
                "Card {} ending in {} saved.",
                card["brand"].as_str().unwrap_or("card"),
                card["last4"].as_str().unwrap_or("")
            );
            super::account_pages::billing_page(&s, &session, &notice(&text), StatusCode::OK).await
        }
        Err(ApiError::Invalid { message, .. }) => {
            card_form(
                &s,
                &session,
                &alert(&format!("The card was not saved: {message}")),
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
    let body = format!(
        "<p role=\"alert\">Your bank asks you to confirm this payment.</p>\
         <form id=\"confirm-form\" method=\"post\" action=\"/portal/invoices/{}/confirm\">{}\
         <p id=\"confirm-errors\" class=\"error\" role=\"alert\"></p><button id=\"confirm-payment\" type=\"submit\">Confirm payment</button></form>\
         <script src=\"{}\"></script><script>(function(){{var stripe=Stripe({}),form=document.getElementById('confirm-form'),done=false;\
         form.addEventListener('submit',function(ev){{if(done)return;ev.preventDefault();\
         stripe.confirmCardPayment({}).then(function(r){{if(r.error){{document.getElementById('confirm-errors').textContent=r.error.message||'Not confirmed.';}}\
         done=true;form.submit();}});}});}})();</script>",
        esc(invoice_id),
        csrf_input(&session.csrf),
        esc(&action.js_url),
        js_string(&action.publishable_key),
        js_string(&action.client_secret),
    );
    Some(no_store(
        StatusCode::PAYMENT_REQUIRED,
        page("Confirm the payment", Some(&session.csrf), &body),
    ))
}

/// `POST /portal/invoices/{id}/confirm`: after Stripe.js ran the bank's challenge, records how the
/// payment ended (asking Stripe, not trusting the browser).
pub async fn confirmed(
    State(s): State<AppState>,
    Path(id): Path<String>,
    SessionForm { session, .. }: SessionForm,
) -> Response {
    if !super::account_pages::owns_invoice(&s, &session, &id).await {
        return super::account_pages::not_found(&session);
    }
    let settled =
        charging::settle_action(&s.pool, s.master_key.as_deref(), &id, charging::today()).await;
    let paid: Option<(String,)> = sqlx::query_as("SELECT state FROM invoices WHERE id = $1")
        .bind(&id)
        .fetch_optional(&s.pool)
        .await
        .ok()
        .flatten();
    let (message, status) = match (settled, paid.as_ref().map(|p| p.0.as_str())) {
        (_, Some("paid")) => (notice("Paid. Thank you."), StatusCode::OK),
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
    super::account_pages::billing_page(&s, &session, &message, status).await
}
