//! Admin access tokens over HTTP: `/admin/api/v1/tokens` (see `domain::access::tokens`).

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;

use super::auth::Scope;
use super::list::{ListParams, Page};
use crate::domain::access::tokens::{self, AdminToken, CreatedAdminToken, TokenInput};
use crate::domain::access::Deleted;
use crate::state::AppState;
use crate::web::error::ApiResult;
use crate::web::extract::{ApiQuery, JsonBody};

pub use crate::domain::access::tokens::{expiry, MAX_TOKEN_DAYS};

#[utoipa::path(
    post,
    path = "/admin/api/v1/tokens",
    tag = "tokens",
    request_body = TokenInput,
    responses(
        (status = 201, description = "The token, with its secret shown only now", body = CreatedAdminToken),
        (status = 400, description = "Malformed body", body = crate::http::api_doc::ErrorBody),
        (status = 401, body = crate::http::api_doc::ErrorBody),
        (status = 403, description = "A read token", body = crate::http::api_doc::ErrorBody),
        (status = 422, description = "Invalid name, scope or expiry", body = crate::http::api_doc::ErrorBody),
        (status = 429, description = "Too many failed authentications", body = crate::http::api_doc::ErrorBody),
    ),
    security(("admin_token" = []))
)]
pub async fn create(
    State(s): State<AppState>,
    actor: crate::domain::audit::Actor,
    JsonBody(input): JsonBody<TokenInput>,
) -> ApiResult<(StatusCode, Json<CreatedAdminToken>)> {
    let created = tokens::create(&s.pool, &actor, input).await?;
    Ok((StatusCode::CREATED, Json(created)))
}

#[utoipa::path(
    get,
    path = "/admin/api/v1/tokens",
    tag = "tokens",
    params(
        ("limit" = Option<i64>, Query, description = "1 to 100 (default 20)"),
        ("starting_after" = Option<String>, Query, description = "The `next_cursor` of the previous page"),
    ),
    responses(
        (status = 200, body = crate::domain::Page<AdminToken>),
        (status = 400, description = "Invalid limit", body = crate::http::api_doc::ErrorBody),
        (status = 401, body = crate::http::api_doc::ErrorBody),
        (status = 429, description = "Too many failed authentications", body = crate::http::api_doc::ErrorBody),
    ),
    security(("admin_token" = []))
)]
pub async fn list(
    State(s): State<AppState>,
    ApiQuery(p): ApiQuery<ListParams>,
) -> ApiResult<Json<Page<AdminToken>>> {
    Ok(Json(tokens::list(&s.pool, &p.request()?).await?))
}

#[utoipa::path(
    delete,
    path = "/admin/api/v1/tokens/{id}",
    tag = "tokens",
    params(("id" = String, Path, description = "The admin token's id")),
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
    Ok(Json(tokens::revoke(&s.pool, &actor, id).await?))
}

/// The admin tokens' part of the OpenAPI document.
#[derive(utoipa::OpenApi)]
#[openapi(
    paths(create, list, remove),
    components(schemas(AdminToken, CreatedAdminToken, TokenInput, Scope, Deleted))
)]
pub struct TokensApi;

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    /// The typed answers carry exactly the fields the `json!` builders they replaced did.
    #[test]
    fn created_token_json_is_unchanged() {
        let created = CreatedAdminToken {
            admin_token: AdminToken {
                object: "admin_token",
                id: "tok_1".into(),
                name: "ci".into(),
                scope: Scope::Write,
                created_at: 7,
                expires_at: None,
            },
            token: "tga_x".into(),
        };
        assert_eq!(
            serde_json::to_value(&created).unwrap(),
            json!({"object": "admin_token", "id": "tok_1", "name": "ci", "scope": "write",
                   "created_at": 7, "expires_at": null, "token": "tga_x"})
        );
    }

    #[test]
    fn the_generated_document_has_the_token_routes() {
        let doc = serde_json::to_value(crate::http::api_doc::generated()).unwrap();
        for (path, method) in [
            ("/admin/api/v1/tokens", "post"),
            ("/admin/api/v1/tokens", "get"),
            ("/admin/api/v1/tokens/{id}", "delete"),
            ("/admin/api/v1/gateway_tokens", "post"),
            ("/admin/api/v1/gateway_tokens", "get"),
            ("/admin/api/v1/gateway_tokens/{id}", "get"),
            ("/admin/api/v1/gateway_tokens/{id}", "patch"),
            ("/admin/api/v1/gateway_tokens/{id}", "delete"),
        ] {
            assert!(
                doc["paths"][path][method].is_object(),
                "{method} {path} is not documented"
            );
        }
        let scope = &doc["components"]["schemas"]["Scope"];
        assert_eq!(scope["enum"], json!(["read", "write"]));
    }
}
