//! Payment routes: the Stripe webhook, the admin's "charge now", and the developer's cards and
//! "pay now" (`/api/v1`, account-scoped). Each calls one function of `domain::payments`.

use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::{Extension, Json};
use serde::Deserialize;

use super::api_doc::ErrorBody;
use super::developer::Developer;
use crate::domain::payments::attempts::{AttemptState, Payment};
use crate::domain::payments::cards::{
    self, AddMethod, AddedPaymentMethod, BraintreeSetup, CardSetup, PaymentMethod,
    RemovedPaymentMethod, StripeSetup,
};
use crate::domain::payments::charging::{self, ChargedInvoice};
use crate::domain::payments::webhooks::{self, WebhookReceipt, WebhookResult};
use crate::domain::payments::ProviderKind;
use crate::domain::Page;
use crate::state::AppState;
use crate::web::error::ApiResult;
use crate::web::extract::{JsonBody, RawBody};

fn key(s: &AppState) -> Option<&[u8; 32]> {
    s.master_key.as_deref()
}

/// `POST /admin/api/v1/invoices/{id}/charge`: charge now with the account's default card.
#[utoipa::path(
    post,
    path = "/admin/api/v1/invoices/{id}/charge",
    tag = "payments",
    params(("id" = String, Path, description = "The invoice")),
    responses(
        (status = 200, description = "The invoice after the attempt, with the attempt as `payment` (a decline is a 200 with a failed payment)", body = ChargedInvoice),
        (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody),
        (status = 404, body = ErrorBody),
        (status = 409, description = "`invalid_state`, `charge_in_progress`, `no_payment_gateway`, `payment_gateway_misconfigured`, `unknown_currency`", body = ErrorBody),
        (status = 422, description = "A currency the provider cannot charge in", body = ErrorBody),
        (status = 429, body = ErrorBody),
        (status = 503, description = "The provider did not answer: the outcome is looked up before the next charge", body = ErrorBody),
    ),
    security(("admin_token" = []))
)]
pub async fn admin_charge(
    State(s): State<AppState>,
    actor: crate::domain::audit::Actor,
    Path(id): Path<String>,
) -> ApiResult<Json<ChargedInvoice>> {
    Ok(Json(
        charging::charge_now(&s.pool, key(&s), &actor, &id).await?,
    ))
}

/// `POST /webhooks/stripe`.
#[utoipa::path(
    post,
    path = "/webhooks/stripe",
    tag = "payments",
    params(("Stripe-Signature" = String, Header, description = "t=<unix>,v1=<hex HMAC-SHA256>")),
    request_body(content = Object, description = "A Stripe event", content_type = "application/json"),
    responses(
        (status = 200, body = WebhookReceipt),
        (status = 400, description = "`invalid_signature`, `invalid_json`, `invalid_event`", body = ErrorBody),
        (status = 409, description = "Stripe is not the configured gateway", body = ErrorBody),
        (status = 413, body = ErrorBody),
    )
)]
pub async fn stripe_webhook(
    State(s): State<AppState>,
    headers: HeaderMap,
    RawBody(body): RawBody,
) -> ApiResult<Json<WebhookReceipt>> {
    let signature = headers
        .get("stripe-signature")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    Ok(Json(
        webhooks::receive_stripe(&s.pool, key(&s), signature, &body).await?,
    ))
}

/// `POST /api/v1/payment_methods/setup`: what the browser needs to collect a card.
#[utoipa::path(
    post,
    path = "/api/v1/payment_methods/setup",
    tag = "payments",
    responses(
        (status = 200, body = CardSetup),
        (status = 401, body = ErrorBody),
        (status = 409, description = "No payment gateway is configured", body = ErrorBody),
        (status = 429, body = ErrorBody),
        (status = 503, body = ErrorBody),
    ),
    security(("developer_token" = []))
)]
pub async fn setup(
    State(s): State<AppState>,
    Extension(dev): Extension<Developer>,
) -> ApiResult<Json<CardSetup>> {
    Ok(Json(cards::setup(&s.pool, key(&s), &dev.account_id).await?))
}

/// `POST /api/v1/payment_methods`: attach a confirmed card; the first card becomes the default.
#[utoipa::path(
    post,
    path = "/api/v1/payment_methods",
    tag = "payments",
    request_body = AddMethod,
    responses(
        (status = 201, body = AddedPaymentMethod),
        (status = 400, body = ErrorBody),
        (status = 401, body = ErrorBody),
        (status = 409, description = "No payment gateway is configured", body = ErrorBody),
        (status = 422, description = "`missing_field`, `invalid_payment_method`", body = ErrorBody),
        (status = 429, body = ErrorBody),
        (status = 503, body = ErrorBody),
    ),
    security(("developer_token" = []))
)]
pub async fn add_method(
    State(s): State<AppState>,
    Extension(dev): Extension<Developer>,
    JsonBody(input): JsonBody<AddMethod>,
) -> ApiResult<(StatusCode, Json<AddedPaymentMethod>)> {
    let added = cards::add(&s.pool, key(&s), &dev.account_id, input).await?;
    Ok((StatusCode::CREATED, Json(added)))
}

#[utoipa::path(
    get,
    path = "/api/v1/payment_methods",
    tag = "payments",
    responses(
        (status = 200, body = Page<PaymentMethod>),
        (status = 401, body = ErrorBody),
        (status = 409, description = "No payment gateway is configured", body = ErrorBody),
        (status = 429, body = ErrorBody),
        (status = 503, body = ErrorBody),
    ),
    security(("developer_token" = []))
)]
pub async fn list_methods(
    State(s): State<AppState>,
    Extension(dev): Extension<Developer>,
) -> ApiResult<Json<Page<PaymentMethod>>> {
    Ok(Json(
        cards::methods(&s.pool, key(&s), &dev.account_id).await?,
    ))
}

#[utoipa::path(
    post,
    path = "/api/v1/payment_methods/{id}/default",
    tag = "payments",
    params(("id" = String, Path, description = "A card of the account")),
    responses(
        (status = 200, body = Page<PaymentMethod>),
        (status = 401, body = ErrorBody),
        (status = 404, body = ErrorBody),
        (status = 409, description = "No payment gateway is configured", body = ErrorBody),
        (status = 429, body = ErrorBody),
        (status = 503, body = ErrorBody),
    ),
    security(("developer_token" = []))
)]
pub async fn make_default(
    State(s): State<AppState>,
    Extension(dev): Extension<Developer>,
    Path(id): Path<String>,
) -> ApiResult<Json<Page<PaymentMethod>>> {
    Ok(Json(
        cards::make_default(&s.pool, key(&s), &dev.account_id, &id).await?,
    ))
}

#[utoipa::path(
    delete,
    path = "/api/v1/payment_methods/{id}",
    tag = "payments",
    params(("id" = String, Path, description = "A card of the account")),
    responses(
        (status = 200, body = RemovedPaymentMethod),
        (status = 401, body = ErrorBody),
        (status = 404, body = ErrorBody),
        (status = 409, description = "No payment gateway is configured", body = ErrorBody),
        (status = 429, body = ErrorBody),
        (status = 503, body = ErrorBody),
    ),
    security(("developer_token" = []))
)]
pub async fn remove_method(
    State(s): State<AppState>,
    Extension(dev): Extension<Developer>,
    Path(id): Path<String>,
) -> ApiResult<Json<RemovedPaymentMethod>> {
    Ok(Json(
        cards::remove(&s.pool, key(&s), &dev.account_id, &id).await?,
    ))
}

/// `POST /api/v1/invoices/{id}/pay`: a chosen card of the account's, else the default.
#[derive(Deserialize, Default, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PayInput {
    payment_method_id: Option<String>,
}

/// `POST /api/v1/invoices/{id}/pay`: pay now with the default card or a chosen one of the account's.
#[utoipa::path(
    post,
    path = "/api/v1/invoices/{id}/pay",
    tag = "payments",
    params(("id" = String, Path, description = "An issued invoice of the account")),
    request_body(content = PayInput, description = "Optional: the card to charge"),
    responses(
        (status = 200, description = "The invoice after the attempt, with the attempt as `payment`", body = ChargedInvoice),
        (status = 400, body = ErrorBody),
        (status = 401, body = ErrorBody),
        (status = 404, description = "Not an issued invoice or a card of the account", body = ErrorBody),
        (status = 409, description = "`invalid_state`, `charge_in_progress`, `no_payment_gateway`", body = ErrorBody),
        (status = 422, description = "A currency the provider cannot charge in", body = ErrorBody),
        (status = 429, body = ErrorBody),
        (status = 503, body = ErrorBody),
    ),
    security(("developer_token" = []))
)]
pub async fn pay(
    State(s): State<AppState>,
    Extension(dev): Extension<Developer>,
    actor: crate::domain::audit::Actor,
    Path(id): Path<String>,
    JsonBody(input): JsonBody<PayInput>,
) -> ApiResult<Json<ChargedInvoice>> {
    Ok(Json(
        charging::pay_own(
            &s.pool,
            key(&s),
            &actor,
            &dev.account_id,
            &id,
            input.payment_method_id.as_deref(),
        )
        .await?,
    ))
}

#[derive(utoipa::OpenApi)]
#[openapi(
    paths(
        admin_charge,
        stripe_webhook,
        setup,
        add_method,
        list_methods,
        make_default,
        remove_method,
        pay
    ),
    components(schemas(
        ChargedInvoice,
        Payment,
        AttemptState,
        ProviderKind,
        CardSetup,
        StripeSetup,
        BraintreeSetup,
        AddMethod,
        AddedPaymentMethod,
        PaymentMethod,
        RemovedPaymentMethod,
        PayInput,
        WebhookReceipt,
        WebhookResult
    ))
)]
pub struct PaymentsApi;
