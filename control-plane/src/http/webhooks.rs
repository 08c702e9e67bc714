//! Webhook endpoints over HTTP: the admin's at `/admin/api/v1/webhook_endpoints` (every event)
//! and an account's at `/api/v1/webhook_endpoints` (its own events; another account's endpoints
//! and deliveries answer 404 like missing ones). See `domain::webhooks` and docs/webhooks.md.
//!
//! Both APIs serve the same operations through the same domain functions, which take the caller
//! as an [`Owner`]. Each operation is written once, as a function of the state, the owner and the
//! request's parts, and [`admin_and_developer!`] declares its two handlers and their two OpenAPI
//! paths from one description, so that the APIs cannot drift apart.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::{Extension, Json};

use super::api_doc::ErrorBody;
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

/// Declares operation `$shared` (an `async fn(AppState, Actor, Owner, args...)`: the caller as the
/// audit log records it, and whose endpoints it sees) twice: `$admin` at
/// `/admin/api/v1` + `$path` (tag `webhooks`, an admin token, for [`Owner::Admin`], with the
/// `admin_also` answers besides: a read token's 403 on writes) and `$dev` at `/api/v1` + `$path`
/// (tag `developer`, an account token, for the developer's account). The doc comment, the
/// parameters, the body and the answers are the same for both.
macro_rules! admin_and_developer {
    (
        $(#[doc = $doc:literal])*
        $method:ident $path:literal => $shared:ident as $admin:ident, $dev:ident;
        params($($params:tt)*);
        $(request_body = $body:ty;)?
        responses($($responses:tt)*);
        admin_also($($admin_also:tt)*);
        ($($arg:ident: $arg_ty:ty),*) -> $out:ty
    ) => {
        $(#[doc = $doc])*
        #[utoipa::path(
            $method,
            path = concat!("/admin/api/v1", $path),
            tag = "webhooks",
            params($($params)*),
            $(request_body = $body,)?
            responses($($responses)* $($admin_also)*),
            security(("admin_token" = []))
        )]
        pub async fn $admin(
            State(s): State<AppState>,
            actor: Actor,
            $($arg: $arg_ty),*
        ) -> ApiResult<$out> {
            $shared(s, actor, Owner::Admin, $($arg),*).await
        }

        $(#[doc = $doc])*
        #[utoipa::path(
            $method,
            path = concat!("/api/v1", $path),
            tag = "developer",
            params($($params)*),
            $(request_body = $body,)?
            responses($($responses)*),
            security(("developer_token" = []))
        )]
        pub async fn $dev(
            State(s): State<AppState>,
            actor: Actor,
            Extension(dev): Extension<Developer>,
            $($arg: $arg_ty),*
        ) -> ApiResult<$out> {
            $shared(s, actor, Owner::Account(dev.account_id), $($arg),*).await
        }
    };
}

admin_and_developer! {
    /// Creates an endpoint (the admin's receives every account's events, an account's only its own); the answer carries its signing secret, this once.
    post "/webhook_endpoints" => create as admin_create, dev_create;
    params();
    request_body = WebhookEndpointInput;
    responses(
        (status = 201, description = "Created; `secret` is shown only now", body = CreatedWebhookEndpoint),
        (status = 400, description = "Malformed body", body = ErrorBody),
        (status = 401, body = ErrorBody),
        (status = 409, description = "Endpoint limit reached, or no master key on the server", body = ErrorBody),
        (status = 422, description = "Invalid URL (https to a public host), unknown event types (the message lists the known ones)", body = ErrorBody),
        (status = 429, description = "Too many failed authentications", body = ErrorBody),
    );
    admin_also((status = 403, description = "A read token", body = ErrorBody),);
    (input: JsonBody<WebhookEndpointInput>) -> (StatusCode, Json<CreatedWebhookEndpoint>)
}

async fn create(
    s: AppState,
    actor: Actor,
    owner: Owner,
    JsonBody(input): JsonBody<WebhookEndpointInput>,
) -> ApiResult<(StatusCode, Json<CreatedWebhookEndpoint>)> {
    let created =
        endpoints::create(&s.pool, s.master_key.as_deref(), &actor, &owner, input).await?;
    Ok((StatusCode::CREATED, Json(created)))
}

admin_and_developer! {
    /// The endpoints the caller sees (the admin: every endpoint; an account: its own), in id order; never their secrets.
    get "/webhook_endpoints" => list as admin_list, dev_list;
    params(
        ("limit" = Option<i64>, Query, description = "1 to 100 (default 20)"),
        ("starting_after" = Option<String>, Query, description = "The `next_cursor` of the previous page"),
    );
    responses(
        (status = 200, body = crate::domain::Page<WebhookEndpoint>),
        (status = 400, description = "Invalid limit", body = ErrorBody),
        (status = 401, body = ErrorBody),
        (status = 429, description = "Too many failed authentications", body = ErrorBody),
    );
    admin_also();
    (params: ApiQuery<ListParams>) -> Json<Page<WebhookEndpoint>>
}

async fn list(
    s: AppState,
    _: Actor,
    owner: Owner,
    ApiQuery(params): ApiQuery<ListParams>,
) -> ApiResult<Json<Page<WebhookEndpoint>>> {
    Ok(Json(
        endpoints::list(&s.pool, &owner, &params.request()?).await?,
    ))
}

admin_and_developer! {
    /// One endpoint; never its secret.
    get "/webhook_endpoints/{id}" => get as admin_get, dev_get;
    params(("id" = String, Path, description = "The endpoint's id"));
    responses(
        (status = 200, body = WebhookEndpoint),
        (status = 401, body = ErrorBody),
        (status = 404, body = ErrorBody),
        (status = 429, description = "Too many failed authentications", body = ErrorBody),
    );
    admin_also();
    (id: Path<String>) -> Json<WebhookEndpoint>
}

async fn get(
    s: AppState,
    _: Actor,
    owner: Owner,
    Path(id): Path<String>,
) -> ApiResult<Json<WebhookEndpoint>> {
    Ok(Json(endpoints::get(&s.pool, &owner, &id).await?))
}

admin_and_developer! {
    /// Changes the URL, the events, the description, or enables / disables the endpoint.
    patch "/webhook_endpoints/{id}" => update as admin_update, dev_update;
    params(("id" = String, Path, description = "The endpoint's id"));
    request_body = WebhookEndpointUpdate;
    responses(
        (status = 200, body = WebhookEndpoint),
        (status = 400, description = "Malformed body", body = ErrorBody),
        (status = 401, body = ErrorBody),
        (status = 404, body = ErrorBody),
        (status = 422, description = "Invalid URL or unknown event types", body = ErrorBody),
        (status = 429, description = "Too many failed authentications", body = ErrorBody),
    );
    admin_also((status = 403, description = "A read token", body = ErrorBody),);
    (id: Path<String>, input: JsonBody<WebhookEndpointUpdate>) -> Json<WebhookEndpoint>
}

async fn update(
    s: AppState,
    actor: Actor,
    owner: Owner,
    Path(id): Path<String>,
    JsonBody(input): JsonBody<WebhookEndpointUpdate>,
) -> ApiResult<Json<WebhookEndpoint>> {
    Ok(Json(
        endpoints::update(&s.pool, &actor, &owner, &id, input).await?,
    ))
}

admin_and_developer! {
    /// Deletes the endpoint and its delivery log.
    delete "/webhook_endpoints/{id}" => remove as admin_remove, dev_remove;
    params(("id" = String, Path, description = "The endpoint's id"));
    responses(
        (status = 200, description = "Deleted", body = Deleted),
        (status = 401, body = ErrorBody),
        (status = 404, body = ErrorBody),
        (status = 429, description = "Too many failed authentications", body = ErrorBody),
    );
    admin_also((status = 403, description = "A read token", body = ErrorBody),);
    (id: Path<String>) -> Json<Deleted>
}

async fn remove(
    s: AppState,
    actor: Actor,
    owner: Owner,
    Path(id): Path<String>,
) -> ApiResult<Json<Deleted>> {
    Ok(Json(endpoints::delete(&s.pool, &actor, &owner, &id).await?))
}

admin_and_developer! {
    /// Sends a `webhook.test` event to this endpoint only; answers its delivery.
    ///
    /// An account's test events and replays are limited per hour; the admin's are not.
    post "/webhook_endpoints/{id}/test" => send_test as admin_test, dev_test;
    params(("id" = String, Path, description = "The endpoint's id"));
    responses(
        (status = 201, description = "Enqueued", body = WebhookDelivery),
        (status = 401, body = ErrorBody),
        (status = 404, body = ErrorBody),
        (status = 409, description = "The endpoint is disabled", body = ErrorBody),
        (status = 429, description = "Too many failed authentications, or an account's test events and replays over their hourly limit (`webhook_sends_rate_limited`, with Retry-After)", body = ErrorBody),
    );
    admin_also((status = 403, description = "A read token", body = ErrorBody),);
    (id: Path<String>) -> (StatusCode, Json<WebhookDelivery>)
}

async fn send_test(
    s: AppState,
    actor: Actor,
    owner: Owner,
    Path(id): Path<String>,
) -> ApiResult<(StatusCode, Json<WebhookDelivery>)> {
    let delivery = outbox::send_test(&s.limits, &s.pool, &actor, &owner, &id).await?;
    Ok((StatusCode::CREATED, Json(delivery)))
}

admin_and_developer! {
    /// The endpoint's delivery log, in creation order: status codes, latency, attempts.
    get "/webhook_endpoints/{id}/deliveries" => deliveries as admin_deliveries, dev_deliveries;
    params(
        ("id" = String, Path, description = "The endpoint's id"),
        ("limit" = Option<i64>, Query, description = "1 to 100 (default 20)"),
        ("starting_after" = Option<String>, Query, description = "The `next_cursor` of the previous page"),
    );
    responses(
        (status = 200, body = crate::domain::Page<WebhookDelivery>),
        (status = 400, description = "Invalid limit", body = ErrorBody),
        (status = 401, body = ErrorBody),
        (status = 404, body = ErrorBody),
        (status = 429, description = "Too many failed authentications", body = ErrorBody),
    );
    admin_also();
    (id: Path<String>, params: ApiQuery<ListParams>) -> Json<Page<WebhookDelivery>>
}

async fn deliveries(
    s: AppState,
    _: Actor,
    owner: Owner,
    Path(id): Path<String>,
    ApiQuery(params): ApiQuery<ListParams>,
) -> ApiResult<Json<Page<WebhookDelivery>>> {
    Ok(Json(
        outbox::list_deliveries(&s.pool, &owner, &id, &params.request()?).await?,
    ))
}

admin_and_developer! {
    /// Sends the delivery again now, with the same `webhook-id` and body (a fresh retry window).
    post "/webhook_deliveries/{id}/replay" => replay as admin_replay, dev_replay;
    params(("id" = String, Path, description = "The delivery's id"));
    responses(
        (status = 200, body = WebhookDelivery),
        (status = 401, body = ErrorBody),
        (status = 404, body = ErrorBody),
        (status = 409, description = "An attempt is under way, or the endpoint is disabled", body = ErrorBody),
        (status = 429, description = "Too many failed authentications, or an account's test events and replays over their hourly limit (`webhook_sends_rate_limited`, with Retry-After)", body = ErrorBody),
    );
    admin_also((status = 403, description = "A read token", body = ErrorBody),);
    (id: Path<String>) -> Json<WebhookDelivery>
}

async fn replay(
    s: AppState,
    actor: Actor,
    owner: Owner,
    Path(id): Path<String>,
) -> ApiResult<Json<WebhookDelivery>> {
    Ok(Json(
        outbox::replay(&s.limits, &s.pool, &actor, &owner, &id).await?,
    ))
}

admin_and_developer! {
    /// Replaces the endpoint's signing secret (answered this once); the old one also signs each attempt for `grace_seconds` (default one day, at most seven).
    post "/webhook_endpoints/{id}/rotate_secret" => rotate_secret as admin_rotate_secret, dev_rotate_secret;
    params(("id" = String, Path, description = "The endpoint's id"));
    request_body = RotateSecretInput;
    responses(
        (status = 200, description = "The new `secret`, shown only now", body = CreatedWebhookEndpoint),
        (status = 400, description = "Malformed body", body = ErrorBody),
        (status = 401, body = ErrorBody),
        (status = 404, body = ErrorBody),
        (status = 409, description = "No master key on the server", body = ErrorBody),
        (status = 422, description = "Invalid grace period", body = ErrorBody),
        (status = 429, description = "Too many failed authentications", body = ErrorBody),
    );
    admin_also((status = 403, description = "A read token", body = ErrorBody),);
    (id: Path<String>, input: JsonBody<RotateSecretInput>) -> Json<CreatedWebhookEndpoint>
}

async fn rotate_secret(
    s: AppState,
    actor: Actor,
    owner: Owner,
    Path(id): Path<String>,
    JsonBody(input): JsonBody<RotateSecretInput>,
) -> ApiResult<Json<CreatedWebhookEndpoint>> {
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
