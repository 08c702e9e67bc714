//! Accounts: the developers (customers) who own applications and receive invoices. The rules and
//! the SQL are in `domain/accounts/account.rs`; these handlers extract and answer.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;

use super::list::ListParams;
use crate::domain::accounts::account::{self, Account, AccountInput, Deleted};
use crate::domain::accounts::BillingAddress;
use crate::domain::audit::Actor;
use crate::domain::Page;
use crate::state::AppState;
use crate::web::error::ApiResult;
use crate::web::extract::{ApiQuery, JsonBody};

#[derive(utoipa::OpenApi)]
#[openapi(
    paths(create, list, get, update, remove),
    components(schemas(Account, AccountInput, BillingAddress, Deleted))
)]
pub struct AccountsApi;

#[utoipa::path(
    post,
    path = "/admin/api/v1/accounts",
    tag = "accounts",
    operation_id = "create_account",
    summary = "Create an account",
    request_body = AccountInput,
    responses(
        (status = 201, body = Account),
        (status = 400, body = crate::http::api_doc::ErrorBody, description = "malformed JSON or an unknown field"),
        (status = 401, body = crate::http::api_doc::ErrorBody),
        (status = 403, body = crate::http::api_doc::ErrorBody, description = "a read token"),
        (status = 422, body = crate::http::api_doc::ErrorBody, description = "invalid name, email, address, VAT rate or code"),
        (status = 429, body = crate::http::api_doc::ErrorBody),
    ),
    security(("admin_token" = []))
)]
pub async fn create(
    State(s): State<AppState>,
    actor: Actor,
    JsonBody(input): JsonBody<AccountInput>,
) -> ApiResult<(StatusCode, Json<Account>)> {
    Ok((
        StatusCode::CREATED,
        Json(account::create(&s.pool, &actor, &input).await?),
    ))
}

#[utoipa::path(
    get,
    path = "/admin/api/v1/accounts",
    tag = "accounts",
    operation_id = "list_accounts",
    summary = "List accounts",
    params(
        ("limit" = Option<i64>, Query, description = "1 to 100, default 20"),
        ("starting_after" = Option<String>, Query, description = "the `next_cursor` of the previous page"),
    ),
    responses(
        (status = 200, body = Page<Account>),
        (status = 400, body = crate::http::api_doc::ErrorBody, description = "a bad limit or an unknown parameter"),
        (status = 401, body = crate::http::api_doc::ErrorBody),
        (status = 429, body = crate::http::api_doc::ErrorBody),
    ),
    security(("admin_token" = []))
)]
pub async fn list(
    State(s): State<AppState>,
    ApiQuery(p): ApiQuery<ListParams>,
) -> ApiResult<Json<Page<Account>>> {
    Ok(Json(account::list(&s.pool, &p.request()?).await?))
}

#[utoipa::path(
    get,
    path = "/admin/api/v1/accounts/{id}",
    tag = "accounts",
    operation_id = "get_account",
    summary = "Get an account",
    params(("id" = String, Path, description = "the account's id")),
    responses(
        (status = 200, body = Account),
        (status = 401, body = crate::http::api_doc::ErrorBody),
        (status = 404, body = crate::http::api_doc::ErrorBody),
        (status = 429, body = crate::http::api_doc::ErrorBody),
    ),
    security(("admin_token" = []))
)]
pub async fn get(State(s): State<AppState>, Path(id): Path<String>) -> ApiResult<Json<Account>> {
    Ok(Json(account::get(&s.pool, &id).await?))
}

#[utoipa::path(
    patch,
    path = "/admin/api/v1/accounts/{id}",
    tag = "accounts",
    operation_id = "update_account",
    summary = "Update an account (absent fields stay)",
    params(("id" = String, Path, description = "the account's id")),
    request_body = AccountInput,
    responses(
        (status = 200, body = Account),
        (status = 400, body = crate::http::api_doc::ErrorBody, description = "malformed JSON or an unknown field"),
        (status = 401, body = crate::http::api_doc::ErrorBody),
        (status = 403, body = crate::http::api_doc::ErrorBody, description = "a read token"),
        (status = 404, body = crate::http::api_doc::ErrorBody),
        (status = 422, body = crate::http::api_doc::ErrorBody, description = "invalid name, email, address, VAT rate or code"),
        (status = 429, body = crate::http::api_doc::ErrorBody),
    ),
    security(("admin_token" = []))
)]
pub async fn update(
    State(s): State<AppState>,
    actor: Actor,
    Path(id): Path<String>,
    JsonBody(input): JsonBody<AccountInput>,
) -> ApiResult<Json<Account>> {
    Ok(Json(account::update(&s.pool, &actor, &id, &input).await?))
}

#[utoipa::path(
    delete,
    path = "/admin/api/v1/accounts/{id}",
    tag = "accounts",
    operation_id = "delete_account",
    summary = "Delete an account without applications or billing history",
    params(("id" = String, Path, description = "the account's id")),
    responses(
        (status = 200, body = Deleted),
        (status = 401, body = crate::http::api_doc::ErrorBody),
        (status = 403, body = crate::http::api_doc::ErrorBody, description = "a read token"),
        (status = 404, body = crate::http::api_doc::ErrorBody),
        (status = 409, body = crate::http::api_doc::ErrorBody, description = "the account has applications, contracts or invoices"),
        (status = 429, body = crate::http::api_doc::ErrorBody),
    ),
    security(("admin_token" = []))
)]
pub async fn remove(
    State(s): State<AppState>,
    actor: Actor,
    Path(id): Path<String>,
) -> ApiResult<Json<Deleted>> {
    Ok(Json(account::delete(&s.pool, &actor, &id).await?))
}
