//! Webhook endpoints over HTTP: the admin's at `/admin/api/v1/webhook_endpoints` (every event)
//! and an account's at `/api/v1/webhook_endpoints` (its own events; another account's endpoints
//! and deliveries answer 404 like missing ones). See `domain::webhooks` and docs/webhooks.md.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::{Extension, Json};

use super::developer::Developer;
use super::list::{ListParams, Page};
use crate::domain::accounts::account::Deleted;
use crate::domain::audit::Actor;
use crate::domain::webhooks::endpoints::{
    self, CreatedWebhookEndpoint, DisabledReason, Owner, RotateSecretInput, WebhookEndpoint,
    WebhookEndpointInput, WebhookEndpointUpdate,
};
use crate::domain::webhooks::outbox::{self, DeliveryState, WebhookDelivery};
use crate::state::AppState;
use crate::web::error::ApiResult;
use crate::web::extract::{ApiQuery, JsonBody};

/// Creates an endpoint receiving every event (the admin's); the answer carries its signing secret, this once.
#[utoipa::path(
    post,
    path = "/admin/api/v1/webhook_endpoints",
    tag = "webhooks",
    request_body = WebhookEndpointInput,
    responses(
        (status = 201, description = "Created; `secret` is shown only now", body = CreatedWebhookEndpoint),
        (status = 400, description = "Malformed body", body = crate::http::api_doc::ErrorBody),
        (status = 401, body = crate::http::api_doc::ErrorBody),
        (status = 403, description = "A read token", body = crate::http::api_doc::ErrorBody),
        (status = 409, description = "Endpoint limit reached, or no master key on the server", body = crate::http::api_doc::ErrorBody),
        (status = 422, description = "Invalid URL (https to a public host), unknown event types (the message lists the known ones)", body = crate::http::api_doc::ErrorBody),
        (status = 429, description = "Too many failed authentications", body = crate::http::api_doc::ErrorBody),
    ),
    security(("admin_token" = []))
)]
pub async fn admin_create(
    State(s): State<AppState>,
    actor: Actor,
    JsonBody(input): JsonBody<WebhookEndpointInput>,
) -> ApiResult<(StatusCode, Json<CreatedWebhookEndpoint>)> {
    let owner = Owner::Admin;
    let created =
        endpoints::create(&s.pool, s.master_key.as_deref(), &actor, &owner, input).await?;
    Ok((StatusCode::CREATED, Json(created)))
}

/// The endpoints (the admin's and every account's), in id order; never their secrets.
#[utoipa::path(
    get,
    path = "/admin/api/v1/webhook_endpoints",
    tag = "webhooks",
    params(
        ("limit" = Option<i64>, Query, description = "1 to 100 (default 20)"),
        ("starting_after" = Option<String>, Query, description = "The `next_cursor` of the previous page"),
    ),
    responses(
        (status = 200, body = crate::domain::Page<WebhookEndpoint>),
        (status = 400, description = "Invalid limit", body = crate::http::api_doc::ErrorBody),
        (status = 401, body = crate::http::api_doc::ErrorBody),
        (status = 429, description = "Too many failed authentications", body = crate::http::api_doc::ErrorBody),
    ),
    security(("admin_token" = []))
)]
pub async fn admin_list(
    State(s): State<AppState>,
    ApiQuery(params): ApiQuery<ListParams>,
) -> ApiResult<Json<Page<WebhookEndpoint>>> {
    let owner = Owner::Admin;
    Ok(Json(
        endpoints::list(&s.pool, &owner, &params.request()?).await?,
    ))
}

#[utoipa::path(
    get,
    path = "/admin/api/v1/webhook_endpoints/{id}",
    tag = "webhooks",
    params(("id" = String, Path, description = "The endpoint's id")),
    responses(
        (status = 200, body = WebhookEndpoint),
        (status = 401, body = crate::http::api_doc::ErrorBody),
        (status = 404, body = crate::http::api_doc::ErrorBody),
        (status = 429, description = "Too many failed authentications", body = crate::http::api_doc::ErrorBody),
    ),
    security(("admin_token" = []))
)]
pub async fn admin_get(
    State(s): State<AppState>,
    Path(id): Path<String>,
) -> ApiResult<Json<WebhookEndpoint>> {
    let owner = Owner::Admin;
    Ok(Json(endpoints::get(&s.pool, &owner, &id).await?))
}

/// Changes the URL, the events, the description, or enables / disables the endpoint.
#[utoipa::path(
    patch,
    path = "/admin/api/v1/webhook_endpoints/{id}",
    tag = "webhooks",
    params(("id" = String, Path, description = "The endpoint's id")),
    request_body = WebhookEndpointUpdate,
    responses(
        (status = 200, body = WebhookEndpoint),
        (status = 400, description = "Malformed body", body = crate::http::api_doc::ErrorBody),
        (status = 401, body = crate::http::api_doc::ErrorBody),
        (status = 403, description = "A read token", body = crate::http::api_doc::ErrorBody),
        (status = 404, body = crate::http::api_doc::ErrorBody),
        (status = 422, description = "Invalid URL or unknown event types", body = crate::http::api_doc::ErrorBody),
        (status = 429, description = "Too many failed authentications", body = crate::http::api_doc::ErrorBody),
    ),
    security(("admin_token" = []))
)]
pub async fn admin_update(
    State(s): State<AppState>,
    actor: Actor,
    Path(id): Path<String>,
    JsonBody(input): JsonBody<WebhookEndpointUpdate>,
) -> ApiResult<Json<WebhookEndpoint>> {
    let owner = Owner::Admin;
    Ok(Json(
        endpoints::update(&s.pool, &actor, &owner, &id, input).await?,
    ))
}

/// Deletes the endpoint and its delivery log.
#[utoipa::path(
    delete,
    path = "/admin/api/v1/webhook_endpoints/{id}",
    tag = "webhooks",
    params(("id" = String, Path, description = "The endpoint's id")),
    responses(
        (status = 200, description = "Deleted", body = Deleted),
        (status = 401, body = crate::http::api_doc::ErrorBody),
        (status = 403, description = "A read token", body = crate::http::api_doc::ErrorBody),
        (status = 404, body = crate::http::api_doc::ErrorBody),
        (status = 429, description = "Too many failed authentications", body = crate::http::api_doc::ErrorBody),
    ),
    security(("admin_token" = []))
)]
pub async fn admin_remove(
    State(s): State<AppState>,
    actor: Actor,
    Path(id): Path<String>,
) -> ApiResult<Json<Deleted>> {
    let owner = Owner::Admin;
    Ok(Json(endpoints::delete(&s.pool, &actor, &owner, &id).await?))
}

/// Sends a `webhook.test` event to this endpoint only; answers its delivery.
#[utoipa::path(
    post,
    path = "/admin/api/v1/webhook_endpoints/{id}/test",
    tag = "webhooks",
    params(("id" = String, Path, description = "The endpoint's id")),
    responses(
        (status = 201, description = "Enqueued", body = WebhookDelivery),
        (status = 401, body = crate::http::api_doc::ErrorBody),
        (status = 403, description = "A read token", body = crate::http::api_doc::ErrorBody),
        (status = 404, body = crate::http::api_doc::ErrorBody),
        (status = 409, description = "The endpoint is disabled", body = crate::http::api_doc::ErrorBody),
        (status = 429, description = "Too many failed authentications", body = crate::http::api_doc::ErrorBody),
    ),
    security(("admin_token" = []))
)]
pub async fn admin_test(
    State(s): State<AppState>,
    actor: Actor,
    Path(id): Path<String>,
) -> ApiResult<(StatusCode, Json<WebhookDelivery>)> {
    let owner = Owner::Admin;
    let delivery = outbox::send_test(&s.limits, &s.pool, &actor, &owner, &id).await?;
    Ok((StatusCode::CREATED, Json(delivery)))
}

/// The endpoint's delivery log, in creation order: status codes, latency, attempts.
#[utoipa::path(
    get,
    path = "/admin/api/v1/webhook_endpoints/{id}/deliveries",
    tag = "webhooks",
    params(
        ("id" = String, Path, description = "The endpoint's id"),
        ("limit" = Option<i64>, Query, description = "1 to 100 (default 20)"),
        ("starting_after" = Option<String>, Query, description = "The `next_cursor` of the previous page"),
    ),
    responses(
        (status = 200, body = crate::domain::Page<WebhookDelivery>),
        (status = 400, description = "Invalid limit", body = crate::http::api_doc::ErrorBody),
        (status = 401, body = crate::http::api_doc::ErrorBody),
        (status = 404, body = crate::http::api_doc::ErrorBody),
        (status = 429, description = "Too many failed authentications", body = crate::http::api_doc::ErrorBody),
    ),
    security(("admin_token" = []))
)]
pub async fn admin_deliveries(
    State(s): State<AppState>,
    Path(id): Path<String>,
    ApiQuery(params): ApiQuery<ListParams>,
) -> ApiResult<Json<Page<WebhookDelivery>>> {
    let owner = Owner::Admin;
    Ok(Json(
        outbox::list_deliveries(&s.pool, &owner, &id, &params.request()?).await?,
    ))
}

/// Sends the delivery again now, with the same `webhook-id` and body (a fresh retry window).
#[utoipa::path(
    post,
    path = "/admin/api/v1/webhook_deliveries/{id}/replay",
    tag = "webhooks",
    params(("id" = String, Path, description = "The delivery's id")),
    responses(
        (status = 200, body = WebhookDelivery),
        (status = 401, body = crate::http::api_doc::ErrorBody),
        (status = 403, description = "A read token", body = crate::http::api_doc::ErrorBody),
        (status = 404, body = crate::http::api_doc::ErrorBody),
        (status = 409, description = "An attempt is under way, or the endpoint is disabled", body = crate::http::api_doc::ErrorBody),
        (status = 429, description = "Too many failed authentications", body = crate::http::api_doc::ErrorBody),
    ),
    security(("admin_token" = []))
)]
pub async fn admin_replay(
    State(s): State<AppState>,
    actor: Actor,
    Path(id): Path<String>,
) -> ApiResult<Json<WebhookDelivery>> {
    let owner = Owner::Admin;
    Ok(Json(
        outbox::replay(&s.limits, &s.pool, &actor, &owner, &id).await?,
    ))
}

/// Creates an endpoint receiving the account's own events; the answer carries its signing secret, this once.
#[utoipa::path(
    post,
    path = "/api/v1/webhook_endpoints",
    tag = "developer",
    request_body = WebhookEndpointInput,
    responses(
        (status = 201, description = "Created; `secret` is shown only now", body = CreatedWebhookEndpoint),
        (status = 400, description = "Malformed body", body = crate::http::api_doc::ErrorBody),
        (status = 401, body = crate::http::api_doc::ErrorBody),
        (status = 409, description = "Endpoint limit reached, or no master key on the server", body = crate::http::api_doc::ErrorBody),
        (status = 422, description = "Invalid URL (https to a public host), unknown event types (the message lists the known ones)", body = crate::http::api_doc::ErrorBody),
        (status = 429, description = "Too many failed authentications", body = crate::http::api_doc::ErrorBody),
    ),
    security(("developer_token" = []))
)]
pub async fn dev_create(
    State(s): State<AppState>,
    actor: Actor,
    Extension(dev): Extension<Developer>,
    JsonBody(input): JsonBody<WebhookEndpointInput>,
) -> ApiResult<(StatusCode, Json<CreatedWebhookEndpoint>)> {
    let owner = Owner::Account(dev.account_id);
    let created =
        endpoints::create(&s.pool, s.master_key.as_deref(), &actor, &owner, input).await?;
    Ok((StatusCode::CREATED, Json(created)))
}

/// The endpoints of the account, in id order; never their secrets.
#[utoipa::path(
    get,
    path = "/api/v1/webhook_endpoints",
    tag = "developer",
    params(
        ("limit" = Option<i64>, Query, description = "1 to 100 (default 20)"),
        ("starting_after" = Option<String>, Query, description = "The `next_cursor` of the previous page"),
    ),
    responses(
        (status = 200, body = crate::domain::Page<WebhookEndpoint>),
        (status = 400, description = "Invalid limit", body = crate::http::api_doc::ErrorBody),
        (status = 401, body = crate::http::api_doc::ErrorBody),
        (status = 429, description = "Too many failed authentications", body = crate::http::api_doc::ErrorBody),
    ),
    security(("developer_token" = []))
)]
pub async fn dev_list(
    State(s): State<AppState>,
    Extension(dev): Extension<Developer>,
    ApiQuery(params): ApiQuery<ListParams>,
) -> ApiResult<Json<Page<WebhookEndpoint>>> {
    let owner = Owner::Account(dev.account_id);
    Ok(Json(
        endpoints::list(&s.pool, &owner, &params.request()?).await?,
    ))
}

#[utoipa::path(
    get,
    path = "/api/v1/webhook_endpoints/{id}",
    tag = "developer",
    params(("id" = String, Path, description = "The endpoint's id")),
    responses(
        (status = 200, body = WebhookEndpoint),
        (status = 401, body = crate::http::api_doc::ErrorBody),
        (status = 404, body = crate::http::api_doc::ErrorBody),
        (status = 429, description = "Too many failed authentications", body = crate::http::api_doc::ErrorBody),
    ),
    security(("developer_token" = []))
)]
pub async fn dev_get(
    State(s): State<AppState>,
    Extension(dev): Extension<Developer>,
    Path(id): Path<String>,
) -> ApiResult<Json<WebhookEndpoint>> {
    let owner = Owner::Account(dev.account_id);
    Ok(Json(endpoints::get(&s.pool, &owner, &id).await?))
}

/// Changes the URL, the events, the description, or enables / disables the endpoint.
#[utoipa::path(
    patch,
    path = "/api/v1/webhook_endpoints/{id}",
    tag = "developer",
    params(("id" = String, Path, description = "The endpoint's id")),
    request_body = WebhookEndpointUpdate,
    responses(
        (status = 200, body = WebhookEndpoint),
        (status = 400, description = "Malformed body", body = crate::http::api_doc::ErrorBody),
        (status = 401, body = crate::http::api_doc::ErrorBody),
        (status = 404, body = crate::http::api_doc::ErrorBody),
        (status = 422, description = "Invalid URL or unknown event types", body = crate::http::api_doc::ErrorBody),
        (status = 429, description = "Too many failed authentications", body = crate::http::api_doc::ErrorBody),
    ),
    security(("developer_token" = []))
)]
pub async fn dev_update(
    State(s): State<AppState>,
    actor: Actor,
    Extension(dev): Extension<Developer>,
    Path(id): Path<String>,
    JsonBody(input): JsonBody<WebhookEndpointUpdate>,
) -> ApiResult<Json<WebhookEndpoint>> {
    let owner = Owner::Account(dev.account_id);
    Ok(Json(
        endpoints::update(&s.pool, &actor, &owner, &id, input).await?,
    ))
}

/// Deletes the endpoint and its delivery log.
#[utoipa::path(
    delete,
    path = "/api/v1/webhook_endpoints/{id}",
    tag = "developer",
    params(("id" = String, Path, description = "The endpoint's id")),
    responses(
        (status = 200, description = "Deleted", body = Deleted),
        (status = 401, body = crate::http::api_doc::ErrorBody),
        (status = 404, body = crate::http::api_doc::ErrorBody),
        (status = 429, description = "Too many failed authentications", body = crate::http::api_doc::ErrorBody),
    ),
    security(("developer_token" = []))
)]
pub async fn dev_remove(
    State(s): State<AppState>,
    actor: Actor,
    Extension(dev): Extension<Developer>,
    Path(id): Path<String>,
) -> ApiResult<Json<Deleted>> {
    let owner = Owner::Account(dev.account_id);
    Ok(Json(endpoints::delete(&s.pool, &actor, &owner, &id).await?))
}

/// Sends a `webhook.test` event to this endpoint only; answers its delivery.
#[utoipa::path(
    post,
    path = "/api/v1/webhook_endpoints/{id}/test",
    tag = "developer",
    params(("id" = String, Path, description = "The endpoint's id")),
    responses(
        (status = 201, description = "Enqueued", body = WebhookDelivery),
        (status = 401, body = crate::http::api_doc::ErrorBody),
        (status = 404, body = crate::http::api_doc::ErrorBody),
        (status = 409, description = "The endpoint is disabled", body = crate::http::api_doc::ErrorBody),
        (status = 429, description = "Too many failed authentications", body = crate::http::api_doc::ErrorBody),
    ),
    security(("developer_token" = []))
)]
pub async fn dev_test(
    State(s): State<AppState>,
    actor: Actor,
    Extension(dev): Extension<Developer>,
    Path(id): Path<String>,
) -> ApiResult<(StatusCode, Json<WebhookDelivery>)> {
    let owner = Owner::Account(dev.account_id);
    let delivery = outbox::send_test(&s.limits, &s.pool, &actor, &owner, &id).await?;
    Ok((StatusCode::CREATED, Json(delivery)))
}

/// The endpoint's delivery log, in creation order: status codes, latency, attempts.
#[utoipa::path(
    get,
    path = "/api/v1/webhook_endpoints/{id}/deliveries",
    tag = "developer",
    params(
        ("id" = String, Path, description = "The endpoint's id"),
        ("limit" = Option<i64>, Query, description = "1 to 100 (default 20)"),
        ("starting_after" = Option<String>, Query, description = "The `next_cursor` of the previous page"),
    ),
    responses(
        (status = 200, body = crate::domain::Page<WebhookDelivery>),
        (status = 400, description = "Invalid limit", body = crate::http::api_doc::ErrorBody),
        (status = 401, body = crate::http::api_doc::ErrorBody),
        (status = 404, body = crate::http::api_doc::ErrorBody),
        (status = 429, description = "Too many failed authentications", body = crate::http::api_doc::ErrorBody),
    ),
    security(("developer_token" = []))
)]
pub async fn dev_deliveries(
    State(s): State<AppState>,
    Extension(dev): Extension<Developer>,
    Path(id): Path<String>,
    ApiQuery(params): ApiQuery<ListParams>,
) -> ApiResult<Json<Page<WebhookDelivery>>> {
    let owner = Owner::Account(dev.account_id);
    Ok(Json(
        outbox::list_deliveries(&s.pool, &owner, &id, &params.request()?).await?,
    ))
}

/// Sends the delivery again now, with the same `webhook-id` and body (a fresh retry window).
#[utoipa::path(
    post,
    path = "/api/v1/webhook_deliveries/{id}/replay",
    tag = "developer",
    params(("id" = String, Path, description = "The delivery's id")),
    responses(
        (status = 200, body = WebhookDelivery),
        (status = 401, body = crate::http::api_doc::ErrorBody),
        (status = 404, body = crate::http::api_doc::ErrorBody),
        (status = 409, description = "An attempt is under way, or the endpoint is disabled", body = crate::http::api_doc::ErrorBody),
        (status = 429, description = "Too many failed authentications", body = crate::http::api_doc::ErrorBody),
    ),
    security(("developer_token" = []))
)]
pub async fn dev_replay(
    State(s): State<AppState>,
    actor: Actor,
    Extension(dev): Extension<Developer>,
    Path(id): Path<String>,
) -> ApiResult<Json<WebhookDelivery>> {
    let owner = Owner::Account(dev.account_id);
    Ok(Json(
        outbox::replay(&s.limits, &s.pool, &actor, &owner, &id).await?,
    ))
}

/// Replaces the endpoint's signing secret (answered this once); the old one also signs each
/// attempt for `grace_seconds` (default one day, at most seven).
#[utoipa::path(
    post,
    path = "/admin/api/v1/webhook_endpoints/{id}/rotate_secret",
    tag = "webhooks",
    params(("id" = String, Path, description = "The endpoint's id")),
    request_body = RotateSecretInput,
    responses(
        (status = 200, description = "The new `secret`, shown only now", body = CreatedWebhookEndpoint),
        (status = 400, description = "Malformed body", body = crate::http::api_doc::ErrorBody),
        (status = 401, body = crate::http::api_doc::ErrorBody),
        (status = 403, description = "A read token", body = crate::http::api_doc::ErrorBody),
        (status = 404, body = crate::http::api_doc::ErrorBody),
        (status = 409, description = "No master key on the server", body = crate::http::api_doc::ErrorBody),
        (status = 422, description = "Invalid grace period", body = crate::http::api_doc::ErrorBody),
        (status = 429, description = "Too many failed authentications", body = crate::http::api_doc::ErrorBody),
    ),
    security(("admin_token" = []))
)]
pub async fn admin_rotate_secret(
    State(s): State<AppState>,
    actor: Actor,
    Path(id): Path<String>,
    JsonBody(input): JsonBody<RotateSecretInput>,
) -> ApiResult<Json<CreatedWebhookEndpoint>> {
    let owner = Owner::Admin;
    Ok(Json(
        endpoints::rotate_secret(&s.pool, s.master_key.as_deref(), &actor, &owner, &id, input)
            .await?,
    ))
}

/// Replaces the endpoint's signing secret (answered this once); the old one also signs each
/// attempt for `grace_seconds` (default one day, at most seven).
#[utoipa::path(
    post,
    path = "/api/v1/webhook_endpoints/{id}/rotate_secret",
    tag = "developer",
    params(("id" = String, Path, description = "The endpoint's id")),
    request_body = RotateSecretInput,
    responses(
        (status = 200, description = "The new `secret`, shown only now", body = CreatedWebhookEndpoint),
        (status = 400, description = "Malformed body", body = crate::http::api_doc::ErrorBody),
        (status = 401, body = crate::http::api_doc::ErrorBody),
        (status = 404, body = crate::http::api_doc::ErrorBody),
        (status = 409, description = "No master key on the server", body = crate::http::api_doc::ErrorBody),
        (status = 422, description = "Invalid grace period", body = crate::http::api_doc::ErrorBody),
        (status = 429, description = "Too many failed authentications", body = crate::http::api_doc::ErrorBody),
    ),
    security(("developer_token" = []))
)]
pub async fn dev_rotate_secret(
    State(s): State<AppState>,
    actor: Actor,
    Extension(dev): Extension<Developer>,
    Path(id): Path<String>,
    JsonBody(input): JsonBody<RotateSecretInput>,
) -> ApiResult<Json<CreatedWebhookEndpoint>> {
    let owner = Owner::Account(dev.account_id);
    Ok(Json(
        endpoints::rotate_secret(&s.pool, s.master_key.as_deref(), &actor, &owner, &id, input)
            .await?,
    ))
}

/// The webhooks' part of the OpenAPI document.
#[derive(utoipa::OpenApi)]
#[openapi(
    paths(
        admin_create,
        admin_list,
        admin_get,
        admin_update,
        admin_remove,
        admin_test,
        admin_deliveries,
        admin_replay,
        admin_rotate_secret,
        dev_create,
        dev_list,
        dev_get,
        dev_update,
        dev_remove,
        dev_test,
        dev_deliveries,
        dev_replay,
        dev_rotate_secret
    ),
    components(schemas(
        WebhookEndpoint,
        CreatedWebhookEndpoint,
        WebhookEndpointInput,
        WebhookEndpointUpdate,
        RotateSecretInput,
        WebhookDelivery,
        DeliveryState,
        DisabledReason,
        Deleted
    ))
)]
pub struct WebhooksApi;
