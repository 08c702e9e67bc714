//! Gateway tokens over HTTP: `/admin/api/v1/gateway_tokens` (see
//! `domain::access::gateway_tokens`).

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;

use super::list::{ListParams, Page};
use crate::domain::access::gateway_tokens::{
    self as domain, CreatedGatewayToken, GatewayToken, GatewayTokenInput, GatewayTokenUpdate,
};
use crate::domain::access::Deleted;
use crate::state::AppState;
use crate::web::error::ApiResult;
use crate::web::extract::{ApiQuery, JsonBody};

pub use crate::domain::access::gateway_tokens::{in_scope, token_services, MAX_TOKEN_SERVICES};

#[utoipa::path(
    post,
    path = "/admin/api/v1/gateway_tokens",
    tag = "gateway_tokens",
    request_body = GatewayTokenInput,
    responses(
        (status = 201, description = "The token, with its secret shown only now", body = CreatedGatewayToken),
        (status = 400, description = "Malformed body", body = crate::http::api_doc::ErrorBody),
        (status = 401, body = crate::http::api_doc::ErrorBody),
        (status = 403, description = "A read token", body = crate::http::api_doc::ErrorBody),
        (status = 409, description = "A service was deleted meanwhile", body = crate::http::api_doc::ErrorBody),
        (status = 422, description = "Invalid name, missing or unknown services", body = crate::http::api_doc::ErrorBody),
        (status = 429, description = "Too many failed authentications", body = crate::http::api_doc::ErrorBody),
    ),
    security(("admin_token" = []))
)]
pub async fn create(
    State(s): State<AppState>,
    actor: crate::domain::audit::Actor,
    JsonBody(input): JsonBody<GatewayTokenInput>,
) -> ApiResult<(StatusCode, Json<CreatedGatewayToken>)> {
    let created = domain::create(&s.pool, &actor, input).await?;
    Ok((StatusCode::CREATED, Json(created)))
}

/// `PATCH /gateway_tokens/{id}` `{"service_ids": [...]}`: replaces the token's services (the
/// token itself is unchanged).
#[utoipa::path(
    patch,
    path = "/admin/api/v1/gateway_tokens/{id}",
    tag = "gateway_tokens",
    params(("id" = String, Path, description = "The gateway token's id")),
    request_body = GatewayTokenUpdate,
    responses(
        (status = 200, body = GatewayToken),
        (status = 400, description = "Malformed body", body = crate::http::api_doc::ErrorBody),
        (status = 401, body = crate::http::api_doc::ErrorBody),
        (status = 403, description = "A read token", body = crate::http::api_doc::ErrorBody),
        (status = 404, body = crate::http::api_doc::ErrorBody),
        (status = 409, description = "A service was deleted meanwhile", body = crate::http::api_doc::ErrorBody),
        (status = 422, description = "Missing or unknown services", body = crate::http::api_doc::ErrorBody),
        (status = 429, description = "Too many failed authentications", body = crate::http::api_doc::ErrorBody),
    ),
    security(("admin_token" = []))
)]
pub async fn update(
    State(s): State<AppState>,
    actor: crate::domain::audit::Actor,
    Path(id): Path<String>,
    JsonBody(input): JsonBody<GatewayTokenUpdate>,
) -> ApiResult<Json<GatewayToken>> {
    Ok(Json(domain::update(&s.pool, &actor, &id, input).await?))
}

#[utoipa::path(
    get,
    path = "/admin/api/v1/gateway_tokens/{id}",
    tag = "gateway_tokens",
    params(("id" = String, Path, description = "The gateway token's id")),
    responses(
        (status = 200, body = GatewayToken),
        (status = 401, body = crate::http::api_doc::ErrorBody),
        (status = 404, body = crate::http::api_doc::ErrorBody),
        (status = 429, description = "Too many failed authentications", body = crate::http::api_doc::ErrorBody),
    ),
    security(("admin_token" = []))
)]
pub async fn get(
    State(s): State<AppState>,
    Path(id): Path<String>,
) -> ApiResult<Json<GatewayToken>> {
    Ok(Json(domain::get(&s.pool, &id).await?))
}

#[utoipa::path(
    get,
    path = "/admin/api/v1/gateway_tokens",
    tag = "gateway_tokens",
    params(
        ("limit" = Option<i64>, Query, description = "1 to 100 (default 20)"),
        ("starting_after" = Option<String>, Query, description = "The `next_cursor` of the previous page"),
    ),
    responses(
        (status = 200, body = crate::domain::Page<GatewayToken>),
        (status = 400, description = "Invalid limit", body = crate::http::api_doc::ErrorBody),
        (status = 401, body = crate::http::api_doc::ErrorBody),
        (status = 429, description = "Too many failed authentications", body = crate::http::api_doc::ErrorBody),
    ),
    security(("admin_token" = []))
)]
pub async fn list(
    State(s): State<AppState>,
    ApiQuery(p): ApiQuery<ListParams>,
) -> ApiResult<Json<Page<GatewayToken>>> {
    Ok(Json(domain::list(&s.pool, &p.request()?).await?))
}

#[utoipa::path(
    delete,
    path = "/admin/api/v1/gateway_tokens/{id}",
    tag = "gateway_tokens",
    params(("id" = String, Path, description = "The gateway token's id")),
    responses(
        (status = 200, description = "Revoked", body = Deleted),
        (status = 401, body = crate::http::api_doc::ErrorBody),
        (status = 403, description = "A read token", body = crate::http::api_doc::ErrorBody),
        (status = 404, body = crate::http::api_doc::ErrorBody),
        (status = 429, description = "Too many failed authentications", body = crate::http::api_doc::ErrorBody),
    ),
    security(("admin_token" = []))
)]
pub async fn remove(
    State(s): State<AppState>,
    actor: crate::domain::audit::Actor,
    Path(id): Path<String>,
) -> ApiResult<Json<Deleted>> {
    Ok(Json(domain::revoke(&s.pool, &actor, id).await?))
}

/// The gateway tokens' part of the OpenAPI document.
#[derive(utoipa::OpenApi)]
#[openapi(
    paths(create, update, get, list, remove),
    components(schemas(
        GatewayToken,
        CreatedGatewayToken,
        GatewayTokenInput,
        GatewayTokenUpdate,
        Deleted
    ))
)]
pub struct GatewayTokensApi;

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    /// The typed answers carry exactly the fields the `json!` builders they replaced did.
    #[test]
    fn created_token_json_is_unchanged() {
        let created = CreatedGatewayToken {
            gateway_token: GatewayToken {
                object: "gateway_token",
                id: "gwt_1".into(),
                name: "edge".into(),
                created_at: 7,
                service_ids: vec!["svc_1".into()],
            },
            token: "tgw_x".into(),
        };
        assert_eq!(
            serde_json::to_value(&created).unwrap(),
            json!({"object": "gateway_token", "id": "gwt_1", "name": "edge", "created_at": 7,
                   "service_ids": ["svc_1"], "token": "tgw_x"})
        );
    }
}
