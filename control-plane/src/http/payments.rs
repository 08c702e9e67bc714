//! Payment routes: the Stripe webhook, the admin's "charge now", and the developer's cards and
//! "pay now" (`/api/v1`, account-scoped).

use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::{Extension, Json};
use serde::Deserialize;
use serde_json::{json, Value};

use super::developer::{own_invoice, Developer};
use super::error::{ApiError, ApiResult};
use super::extract::{JsonBody, RawBody};
use super::AppState;
use crate::domain::billing::invoices;
use crate::domain::payments::charging::{self, today, Provider};
use crate::domain::payments::{config, webhooks};
use crate::store::now;

fn key(s: &AppState) -> Option<&[u8; 32]> {
    s.master_key.as_deref()
}

async fn invoice_with_payment(
    s: &AppState,
    invoice_id: &str,
    attempt_id: &str,
) -> ApiResult<Json<Value>> {
    let inv = invoices::fetch(&s.pool, invoice_id).await?;
    let lines = invoices::lines(&s.pool, invoice_id).await?;
    let mut body = invoices::to_json(&inv, &lines);
    body["payment"] = charging::attempt_json(&s.pool, attempt_id).await?;
    Ok(Json(body))
}

/// `POST /admin/api/v1/invoices/{id}/charge`: charge now with the account's default card.
pub async fn admin_charge(
    State(s): State<AppState>,
    Path(id): Path<String>,
) -> ApiResult<Json<Value>> {
    let attempt = charging::charge_invoice(&s.pool, key(&s), &id, None, today()).await?;
    invoice_with_payment(&s, &id, &attempt).await
}

/// `POST /webhooks/stripe`.
pub async fn stripe_webhook(
    State(s): State<AppState>,
    headers: HeaderMap,
    RawBody(body): RawBody,
) -> ApiResult<Json<Value>> {
    let Some(config::GatewayConfig::Stripe { webhook_secret, .. }) =
        config::load(&s.pool, key(&s)).await?
    else {
        return Err(ApiError::conflict(
            "no_payment_gateway",
            "Stripe is not the configured payment gateway",
        ));
    };
    let signature = headers
        .get("stripe-signature")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    webhooks::verify_stripe(signature, &body, &webhook_secret, now()).map_err(|why| {
        ApiError::bad_request(Some("Stripe-Signature".into()), "invalid_signature", why)
    })?;
    let event: Value = serde_json::from_slice(&body).map_err(|e| {
        ApiError::bad_request(None, "invalid_json", format!("the event is not JSON: {e}"))
    })?;
    let result = webhooks::apply_stripe(&s.pool, &event).await?;
    let id = event.get("id").and_then(|v| v.as_str()).unwrap_or_default();
    let kind = event
        .get("type")
        .and_then(|v| v.as_str())
        .unwrap_or_default();
    tracing::info!(event = id, kind, result, "stripe webhook");
    Ok(Json(json!({"received": true, "result": result})))
}

/// `POST /api/v1/payment_methods/setup`: what the browser needs to collect a card.
pub async fn setup(
    State(s): State<AppState>,
    Extension(dev): Extension<Developer>,
) -> ApiResult<Json<Value>> {
    let p = charging::provider(&s.pool, key(&s)).await?;
    let Some((customer, _)) = charging::customer(&s.pool, &p, &dev.account_id, true).await? else {
        return Err(ApiError::Internal("customer not created".into()));
    };
    match &p {
        Provider::Stripe(stripe) => {
            let secret = stripe
                .setup_intent(&customer)
                .await
                .map_err(|e| ApiError::Unavailable(format!("{e:?}")))?;
            Ok(Json(
                json!({"object": "payment_method_setup", "provider": "stripe", "client_secret": secret,
                           "publishable_key": stripe.publishable_key, "js_url": stripe.js_url}),
            ))
        }
        Provider::Braintree(bt) => {
            let token = bt
                .client_token(&customer)
                .await
                .map_err(|e| ApiError::Unavailable(format!("{e:?}")))?;
            Ok(Json(
                json!({"object": "payment_method_setup", "provider": "braintree", "client_token": token,
                           "js_url": bt.js_url}),
            ))
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AddMethod {
    /// Stripe: the PaymentMethod id Stripe.js confirmed.
    payment_method_id: Option<String>,
    /// Braintree: the nonce from Hosted Fields / Drop-in.
    payment_method_nonce: Option<String>,
    #[serde(default)]
    default: bool,
}

async fn list_json(
    s: &AppState,
    dev: &Developer,
) -> ApiResult<(
    Provider,
    String,
    Option<String>,
    Vec<crate::domain::payments::Card>,
)> {
    let p = charging::provider(&s.pool, key(s)).await?;
    let Some((customer, default)) = charging::customer(&s.pool, &p, &dev.account_id, false).await?
    else {
        return Ok((p, String::new(), None, Vec::new()));
    };
    let cards = charging::cards(&p, &customer).await?;
    Ok((p, customer, default, cards))
}

fn cards_json(cards: &[crate::domain::payments::Card], default: Option<&str>) -> Value {
    let data: Vec<Value> = cards
        .iter()
        .map(|c| {
            let mut v = json!(c);
            v["object"] = json!("payment_method");
            v["default"] = json!(Some(c.id.as_str()) == default);
            v
        })
        .collect();
    json!({"object": "list", "data": data, "has_more": false, "next_cursor": null})
}

/// `POST /api/v1/payment_methods`: attach a confirmed card; the first card becomes the default.
pub async fn add_method(
    State(s): State<AppState>,
    Extension(dev): Extension<Developer>,
    JsonBody(input): JsonBody<AddMethod>,
) -> ApiResult<(StatusCode, Json<Value>)> {
    let pm = input
        .payment_method_id
        .or(input.payment_method_nonce)
        .filter(|p| !p.trim().is_empty())
        .ok_or_else(|| {
            ApiError::invalid(
                "payment_method_id",
                "missing_field",
                "payment_method_id (Stripe) or payment_method_nonce (Braintree) is required",
            )
        })?;
    let p = charging::provider(&s.pool, key(&s)).await?;
    let Some((customer, default)) = charging::customer(&s.pool, &p, &dev.account_id, true).await?
    else {
        return Err(ApiError::Internal("customer not created".into()));
    };
    let attached = match &p {
        Provider::Stripe(stripe) => stripe.attach(&customer, &pm).await,
        Provider::Braintree(bt) => bt.vault(&customer, &pm).await,
    };
    let card = attached.map_err(|e| match e {
        crate::domain::payments::PayError::Provider { code, message, .. } => ApiError::invalid(
            "payment_method_id",
            "invalid_payment_method",
            format!("{code}: {message}"),
        ),
        other => ApiError::Unavailable(format!("{other:?}")),
    })?;
    if input.default || default.is_none() {
        charging::set_default(&s.pool, &p, &dev.account_id, Some(&card.id)).await?;
    }
    let (_, _, default, cards) = list_json(&s, &dev).await?;
    let mut one = cards_json(&[card], default.as_deref())["data"][0].clone();
    one["cards"] = json!(cards.len());
    Ok((StatusCode::CREATED, Json(one)))
}

pub async fn list_methods(
    State(s): State<AppState>,
    Extension(dev): Extension<Developer>,
) -> ApiResult<Json<Value>> {
    let (_, _, default, cards) = list_json(&s, &dev).await?;
    Ok(Json(cards_json(&cards, default.as_deref())))
}

/// A card of the caller's customer, or 404 (another account's card looks like no card).
async fn own_card(
    s: &AppState,
    dev: &Developer,
    id: &str,
) -> ApiResult<(Provider, Option<String>, Vec<crate::domain::payments::Card>)> {
    let (p, _, default, cards) = list_json(s, dev).await?;
    if !cards.iter().any(|c| c.id == id) {
        return Err(ApiError::not_found("payment method", id));
    }
    Ok((p, default, cards))
}

pub async fn make_default(
    State(s): State<AppState>,
    Extension(dev): Extension<Developer>,
    Path(id): Path<String>,
) -> ApiResult<Json<Value>> {
    let (p, _, cards) = own_card(&s, &dev, &id).await?;
    charging::set_default(&s.pool, &p, &dev.account_id, Some(&id)).await?;
    Ok(Json(cards_json(&cards, Some(&id))))
}

pub async fn remove_method(
    State(s): State<AppState>,
    Extension(dev): Extension<Developer>,
    Path(id): Path<String>,
) -> ApiResult<Json<Value>> {
    let (p, default, _) = own_card(&s, &dev, &id).await?;
    match &p {
        Provider::Stripe(stripe) => stripe.detach(&id).await,
        Provider::Braintree(bt) => bt.delete(&id).await,
    }
    .map_err(|e| ApiError::Unavailable(format!("{e:?}")))?;
    if default.as_deref() == Some(id.as_str()) {
        charging::set_default(&s.pool, &p, &dev.account_id, None).await?;
    }
    Ok(Json(
        json!({"object": "payment_method", "id": id, "deleted": true}),
    ))
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct PayInput {
    payment_method_id: Option<String>,
}

/// `POST /api/v1/invoices/{id}/pay`: pay now with the default card or a chosen one of the account's.
pub async fn pay(
    State(s): State<AppState>,
    Extension(dev): Extension<Developer>,
    Path(id): Path<String>,
    JsonBody(input): JsonBody<PayInput>,
) -> ApiResult<Json<Value>> {
    own_invoice(&s, &dev, &id).await?;
    if let Some(pm) = &input.payment_method_id {
        own_card(&s, &dev, pm).await?;
    }
    let attempt = charging::charge_invoice(
        &s.pool,
        key(&s),
        &id,
        input.payment_method_id.as_deref(),
        today(),
    )
    .await?;
    invoice_with_payment(&s, &id, &attempt).await
}
