//! The developer API (`/api/v1`): what an account's own developers may see and do, authenticated
//! by account-scoped tokens (`tgd_...`, created by an admin with `POST /admin/api/v1/accounts/{id}/tokens`).
//! Every query is scoped to the caller's account; another account's objects answer 404, exactly like
//! objects that do not exist.

use axum::extract::{Path, Request, State};
use axum::http::StatusCode;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use serde::Deserialize;

use super::api_doc::ErrorBody;
use super::list::ListParams;
use crate::domain::access::account_tokens::{
    self, AccountToken, AccountTokenCheck, AccountTokenInput, CreatedAccountToken,
};
use crate::domain::access::Deleted;
use crate::domain::billing::invoices::{self, Invoice, InvoiceObject};
use crate::domain::payments::attempts::{self, AccountPayment};
use crate::domain::Page;
use crate::rate_limit::TokenKind;
use crate::state::AppState;
use crate::web::error::{ApiError, ApiResult};
use crate::web::extract::{ApiQuery, JsonBody};

/// The authenticated developer's account.
#[derive(Clone, Debug)]
pub struct Developer {
    pub account_id: String,
}

pub async fn layer(State(state): State<AppState>, mut req: Request, next: Next) -> Response {
    let token = req
        .headers()
        .get("authorization")
        .and_then(|h| h.to_str().ok())
        .and_then(|h| {
            h.strip_prefix("Bearer ")
                .or_else(|| h.strip_prefix("bearer "))
        })
        .map(|t| t.trim().to_string());
    let Some(token) = token.filter(|t| !t.is_empty()) else {
        return ApiError::Unauthorized("send Authorization: Bearer <account token>".into())
            .into_response();
    };
    // Failed lookups are limited per client address, like sign-in; a valid token never counts.
    let ip = crate::web::client_ip::of(&state.limits, &req);
    if let Some(limited) = state
        .limits
        .token_rate_limited(TokenKind::Developer, ip.as_deref())
    {
        return limited.into_response();
    }
    match account_tokens::check(&state.pool, &token).await {
        Ok(AccountTokenCheck::Valid { account_id }) => {
            req.extensions_mut().insert(Developer { account_id });
            next.run(req).await
        }
        Ok(AccountTokenCheck::Expired) => {
            state
                .limits
                .token_failed(TokenKind::Developer, ip.as_deref());
            ApiError::Unauthorized("the account token has expired".into()).into_response()
        }
        Ok(AccountTokenCheck::Unknown) => {
            state
                .limits
                .token_failed(TokenKind::Developer, ip.as_deref());
            ApiError::Unauthorized("unknown or revoked account token".into()).into_response()
        }
        Err(e) => ApiError::from(e).into_response(),
    }
}

/// Admin: creates a developer token for the account (the token is shown only here).
#[utoipa::path(
    post,
    path = "/admin/api/v1/accounts/{id}/tokens",
    tag = "accounts",
    params(("id" = String, Path, description = "The account's id")),
    request_body = AccountTokenInput,
    responses(
        (status = 201, description = "Created; `token` is shown only now", body = CreatedAccountToken),
        (status = 400, body = crate::http::api_doc::ErrorBody),
        (status = 401, body = crate::http::api_doc::ErrorBody),
        (status = 403, description = "A read token", body = crate::http::api_doc::ErrorBody),
        (status = 404, description = "No such account", body = crate::http::api_doc::ErrorBody),
        (status = 422, description = "Invalid name or expiry", body = crate::http::api_doc::ErrorBody),
        (status = 429, description = "Too many failed authentications", body = crate::http::api_doc::ErrorBody),
    ),
    security(("admin_token" = []))
)]
pub async fn create_token(
    State(s): State<AppState>,
    actor: crate::domain::audit::Actor,
    Path(account_id): Path<String>,
    JsonBody(input): JsonBody<AccountTokenInput>,
) -> ApiResult<(StatusCode, Json<CreatedAccountToken>)> {
    let created = account_tokens::create(&s.pool, &actor, &account_id, input).await?;
    Ok((StatusCode::CREATED, Json(created)))
}

/// Admin: the account's developer tokens (one page: an account has few).
#[utoipa::path(
    get,
    path = "/admin/api/v1/accounts/{id}/tokens",
    tag = "accounts",
    params(("id" = String, Path, description = "The account's id")),
    responses(
        (status = 200, body = crate::domain::Page<AccountToken>),
        (status = 401, body = crate::http::api_doc::ErrorBody),
        (status = 404, description = "No such account", body = crate::http::api_doc::ErrorBody),
        (status = 429, description = "Too many failed authentications", body = crate::http::api_doc::ErrorBody),
    ),
    security(("admin_token" = []))
)]
pub async fn list_tokens(
    State(s): State<AppState>,
    Path(account_id): Path<String>,
) -> ApiResult<Json<Page<AccountToken>>> {
    Ok(Json(account_tokens::list(&s.pool, &account_id).await?))
}

/// Admin: revokes one of the account's developer tokens.
#[utoipa::path(
    delete,
    path = "/admin/api/v1/accounts/{id}/tokens/{token_id}",
    tag = "accounts",
    params(
        ("id" = String, Path, description = "The account's id"),
        ("token_id" = String, Path, description = "The developer token's id"),
    ),
    responses(
        (status = 200, description = "Revoked", body = Deleted),
        (status = 401, body = crate::http::api_doc::ErrorBody),
        (status = 403, description = "A read token", body = crate::http::api_doc::ErrorBody),
        (status = 404, description = "No such token of this account", body = crate::http::api_doc::ErrorBody),
        (status = 429, description = "Too many failed authentications", body = crate::http::api_doc::ErrorBody),
    ),
    security(("admin_token" = []))
)]
pub async fn revoke_token(
    State(s): State<AppState>,
    actor: crate::domain::audit::Actor,
    Path((account_id, id)): Path<(String, String)>,
) -> ApiResult<Json<Deleted>> {
    Ok(Json(
        account_tokens::revoke(&s.pool, &actor, &account_id, id).await?,
    ))
}

/// The developer tokens' part of the OpenAPI document.
#[derive(utoipa::OpenApi)]
#[openapi(
    paths(
        create_token,
        list_tokens,
        revoke_token,
        list_invoices,
        get_invoice,
        list_payments
    ),
    components(schemas(AccountToken, CreatedAccountToken, AccountTokenInput, AccountPayment))
)]
pub struct DeveloperTokensApi;

#[derive(Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct DevInvoiceParams {
    limit: Option<i64>,
    starting_after: Option<String>,
    state: Option<String>,
}

/// The account's issued invoices and credit notes (drafts stay with the admin).
#[utoipa::path(get, path = "/api/v1/invoices", tag = "developer",
    params(DevInvoiceParams),
    responses((status = 200, body = Page<InvoiceObject>),
        (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 429, body = ErrorBody)),
    security(("developer_token" = [])))]
pub async fn list_invoices(
    State(s): State<AppState>,
    Extension(dev): Extension<Developer>,
    ApiQuery(p): ApiQuery<DevInvoiceParams>,
) -> ApiResult<Json<Page<InvoiceObject>>> {
    let req = ListParams {
        limit: p.limit,
        starting_after: p.starting_after,
    }
    .request()?;
    Ok(Json(
        invoices::issued_of_account(&s.pool, &dev.account_id, p.state.as_deref(), &req).await?,
    ))
}

/// One of the account's issued invoices; 404 for drafts and for other accounts' invoices.
pub async fn own_invoice(s: &AppState, dev: &Developer, id: &str) -> ApiResult<Invoice> {
    let inv = invoices::fetch(&s.pool, id).await?;
    if inv.account_id != dev.account_id || inv.number.is_none() {
        return Err(ApiError::not_found("invoice", id));
    }
    Ok(inv)
}

#[utoipa::path(get, path = "/api/v1/invoices/{id}", tag = "developer",
    params(("id" = String, Path, description = "invoice id; `<id>.pdf` answers the PDF")),
    responses((status = 200, body = InvoiceObject, description = "the invoice; `application/pdf` for `<id>.pdf`"),
        (status = 401, body = ErrorBody), (status = 404, body = ErrorBody), (status = 429, body = ErrorBody)),
    security(("developer_token" = [])))]
pub async fn get_invoice(
    State(s): State<AppState>,
    Extension(dev): Extension<Developer>,
    Path(id): Path<String>,
) -> ApiResult<Response> {
    if let Some(id) = id.strip_suffix(".pdf") {
        own_invoice(&s, &dev, id).await?;
        return crate::web::pdf::invoice(&s.pool, id).await;
    }
    let inv = own_invoice(&s, &dev, &id).await?;
    let lines = invoices::lines(&s.pool, &id).await?;
    Ok(Json(InvoiceObject::new(&inv, &lines)).into_response())
}

/// Billing history: every charge attempt on the account's invoices, newest first.
#[utoipa::path(get, path = "/api/v1/payments", tag = "developer",
    responses((status = 200, body = Page<AccountPayment>, description = "the latest 100 charge attempts, newest first (one page)"),
        (status = 401, body = ErrorBody), (status = 429, body = ErrorBody)),
    security(("developer_token" = [])))]
pub async fn list_payments(
    State(s): State<AppState>,
    Extension(dev): Extension<Developer>,
) -> ApiResult<Json<Page<AccountPayment>>> {
    let data = attempts::of_account(&s.pool, &dev.account_id).await?;
    Ok(Json(Page {
        object: "list",
        data,
        has_more: false,
        next_cursor: None,
    }))
}
