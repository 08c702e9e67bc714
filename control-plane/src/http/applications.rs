//! Applications (an account on a plan) and their API keys. The rules, limits and SQL are in
//! `domain/accounts/` (`applications.rs`, `keys.rs`, `usage.rs`); these handlers extract and
//! answer.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;
use serde::Deserialize;

use super::list::ListParams;
use crate::domain::accounts::account::Deleted;
use crate::domain::accounts::app_keys::{self, AppKey, AppKeyInput};
use crate::domain::accounts::applications::{
    self, AppFilter, AppInput, Application, ApplicationState, CreatedApplication, SuspendInput,
    SuspensionReason,
};
use crate::domain::accounts::keys::{
    self, AddedKey, ApplicationKey, KeyInput, NewKey, Replaced, RotateInput, RotatedKey,
};
use crate::domain::accounts::usage::{self, Bucket, Usage, UsageParams, UsagePeriod};
use crate::domain::audit::Actor;
use crate::domain::catalog::plans::Plan;
use crate::domain::Page;
use crate::state::AppState;
use crate::web::error::ApiResult;
use crate::web::extract::{ApiQuery, JsonBody};

type Error = crate::http::api_doc::ErrorBody;

#[derive(utoipa::OpenApi)]
#[openapi(
    paths(
        create,
        list,
        get,
        update,
        remove,
        create_key,
        list_keys,
        revoke_key,
        rotate_key,
        create_app_key,
        list_app_keys,
        delete_app_key,
        suspend,
        resume,
        customize_plan,
        usage
    ),
    components(schemas(
        Application,
        ApplicationState,
        SuspensionReason,
        CreatedApplication,
        AppInput,
        SuspendInput,
        ApplicationKey,
        NewKey,
        KeyInput,
        AddedKey,
        AppKey,
        AppKeyInput,
        RotatedKey,
        Replaced,
        RotateInput,
        Usage,
        UsagePeriod,
        Bucket
    ))
)]
pub struct ApplicationsApi;

#[utoipa::path(
    post,
    path = "/admin/api/v1/applications",
    tag = "applications",
    operation_id = "create_application",
    summary = "Create an application (its first key is shown once)",
    request_body = AppInput,
    responses(
        (status = 201, body = CreatedApplication),
        (status = 400, body = Error, description = "malformed JSON or an unknown field"),
        (status = 401, body = Error),
        (status = 403, body = Error, description = "a read token"),
        (status = 409, body = Error, description = "the app_id belongs to another application (`app_id_in_use`)"),
        (status = 422, body = Error, description = "missing or unknown account or plan, invalid name, description or app_id"),
        (status = 429, body = Error),
    ),
    security(("admin_token" = []))
)]
pub async fn create(
    State(s): State<AppState>,
    actor: Actor,
    JsonBody(input): JsonBody<AppInput>,
) -> ApiResult<(StatusCode, Json<CreatedApplication>)> {
    Ok((
        StatusCode::CREATED,
        Json(applications::create(&s.pool, &actor, &input).await?),
    ))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AppListParams {
    limit: Option<i64>,
    starting_after: Option<String>,
    account_id: Option<String>,
    plan_id: Option<String>,
}

#[utoipa::path(
    get,
    path = "/admin/api/v1/applications",
    tag = "applications",
    operation_id = "list_applications",
    summary = "List applications (filters: account_id, plan_id)",
    params(
        ("limit" = Option<i64>, Query, description = "1 to 100, default 20"),
        ("starting_after" = Option<String>, Query, description = "the `next_cursor` of the previous page"),
        ("account_id" = Option<String>, Query, description = "only this account's"),
        ("plan_id" = Option<String>, Query, description = "only those on this plan"),
    ),
    responses(
        (status = 200, body = Page<Application>),
        (status = 400, body = Error, description = "a bad limit or an unknown parameter"),
        (status = 401, body = Error),
        (status = 429, body = Error),
    ),
    security(("admin_token" = []))
)]
pub async fn list(
    State(s): State<AppState>,
    ApiQuery(p): ApiQuery<AppListParams>,
) -> ApiResult<Json<Page<Application>>> {
    let req = ListParams {
        limit: p.limit,
        starting_after: p.starting_after,
    }
    .request()?;
    let filter = AppFilter {
        account_id: p.account_id,
        plan_id: p.plan_id,
    };
    Ok(Json(applications::list(&s.pool, &filter, &req).await?))
}

#[utoipa::path(
    get,
    path = "/admin/api/v1/applications/{id}",
    tag = "applications",
    operation_id = "get_application",
    summary = "Get an application with its live keys",
    params(("id" = String, Path, description = "the application's id")),
    responses(
        (status = 200, body = Application),
        (status = 401, body = Error),
        (status = 404, body = Error),
        (status = 429, body = Error),
    ),
    security(("admin_token" = []))
)]
pub async fn get(
    State(s): State<AppState>,
    Path(id): Path<String>,
) -> ApiResult<Json<Application>> {
    Ok(Json(applications::get(&s.pool, &id).await?))
}

#[utoipa::path(
    patch,
    path = "/admin/api/v1/applications/{id}",
    tag = "applications",
    operation_id = "update_application",
    summary = "Update an application (name, description, plan; absent fields stay)",
    params(("id" = String, Path, description = "the application's id")),
    request_body = AppInput,
    responses(
        (status = 200, body = Application),
        (status = 400, body = Error, description = "malformed JSON or an unknown field"),
        (status = 401, body = Error),
        (status = 403, body = Error, description = "a read token"),
        (status = 404, body = Error),
        (status = 409, body = Error, description = "the app_id belongs to another application (`app_id_in_use`)"),
        (status = 422, body = Error, description = "another account, an unknown plan, invalid name, description or app_id"),
        (status = 429, body = Error),
    ),
    security(("admin_token" = []))
)]
pub async fn update(
    State(s): State<AppState>,
    actor: Actor,
    Path(id): Path<String>,
    JsonBody(input): JsonBody<AppInput>,
) -> ApiResult<Json<Application>> {
    Ok(Json(
        applications::update(&s.pool, &actor, &id, &input).await?,
    ))
}

#[utoipa::path(
    delete,
    path = "/admin/api/v1/applications/{id}",
    tag = "applications",
    operation_id = "delete_application",
    summary = "Delete an application and its keys",
    params(("id" = String, Path, description = "the application's id")),
    responses(
        (status = 200, body = Deleted),
        (status = 401, body = Error),
        (status = 403, body = Error, description = "a read token"),
        (status = 404, body = Error),
        (status = 429, body = Error),
    ),
    security(("admin_token" = []))
)]
pub async fn remove(
    State(s): State<AppState>,
    actor: Actor,
    Path(id): Path<String>,
) -> ApiResult<Json<Deleted>> {
    Ok(Json(applications::delete(&s.pool, &actor, &id).await?))
}

#[utoipa::path(
    post,
    path = "/admin/api/v1/applications/{id}/keys",
    tag = "applications",
    operation_id = "create_application_key",
    summary = "Add a key: generated (shown once), or an existing one by value or SHA-256 (never echoed)",
    description = "Without a body (or `{}`) a key is generated and shown once. With `key` (16 to 256 visible ASCII characters) or `key_sha256` (64 hex) an existing key is kept: stored as SHA-256, answered without its value. The same key again for the same application is answered 200 and changes nothing; another application's key is 409 `key_in_use`.",
    params(("id" = String, Path, description = "the application's id")),
    request_body(content = KeyInput, description = "optional"),
    responses(
        (status = 201, body = AddedKey, description = "the key; with `key` (its value, this once) only when generated"),
        (status = 200, body = AddedKey, description = "the same imported key was already this application's: nothing changed"),
        (status = 400, body = Error, description = "malformed JSON or an unknown field"),
        (status = 401, body = Error),
        (status = 403, body = Error, description = "a read token"),
        (status = 404, body = Error),
        (status = 409, body = Error, description = "five active or ten live keys already; the key belongs to another application (`key_in_use`) or was rotated (`key_rotated`)"),
        (status = 422, body = Error, description = "a key shorter than 16 characters (`key_too_short`), one a gateway would refuse (`invalid_key`), a bad digest, or both fields"),
        (status = 429, body = Error),
    ),
    security(("admin_token" = []))
)]
pub async fn create_key(
    State(s): State<AppState>,
    actor: Actor,
    Path(id): Path<String>,
    JsonBody(input): JsonBody<KeyInput>,
) -> ApiResult<(StatusCode, Json<AddedKey>)> {
    let added = keys::add(&s.pool, &actor, &id, &input).await?;
    Ok((created_or_ok(added.created), Json(added.key)))
}

/// 201 for something written now, 200 for the same thing found as it was (idempotent adds).
fn created_or_ok(created: bool) -> StatusCode {
    if created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    }
}

#[utoipa::path(
    post,
    path = "/admin/api/v1/applications/{id}/app_keys",
    tag = "applications",
    operation_id = "create_application_app_key",
    summary = "Add an app key (3scale's model: opens the application with its app_id; never echoed)",
    params(("id" = String, Path, description = "the application's id")),
    request_body = AppKeyInput,
    responses(
        (status = 201, body = AppKey),
        (status = 200, body = AppKey, description = "the application already holds this app key: nothing changed"),
        (status = 400, body = Error, description = "malformed JSON or an unknown field"),
        (status = 401, body = Error),
        (status = 403, body = Error, description = "a read token"),
        (status = 404, body = Error),
        (status = 422, body = Error, description = "no app_id on the application, a sixth app key, a value shorter than 16 characters or one a gateway would refuse, a bad digest"),
        (status = 429, body = Error),
    ),
    security(("admin_token" = []))
)]
pub async fn create_app_key(
    State(s): State<AppState>,
    actor: Actor,
    Path(id): Path<String>,
    JsonBody(input): JsonBody<AppKeyInput>,
) -> ApiResult<(StatusCode, Json<AppKey>)> {
    let added = app_keys::add(&s.pool, &actor, &id, &input).await?;
    Ok((created_or_ok(added.created), Json(added.app_key)))
}

#[utoipa::path(
    get,
    path = "/admin/api/v1/applications/{id}/app_keys",
    tag = "applications",
    operation_id = "list_application_app_keys",
    summary = "List the app keys (one page: at most five; ids and digest prefixes, never values)",
    params(("id" = String, Path, description = "the application's id")),
    responses(
        (status = 200, body = Page<AppKey>),
        (status = 401, body = Error),
        (status = 404, body = Error),
        (status = 429, body = Error),
    ),
    security(("admin_token" = []))
)]
pub async fn list_app_keys(
    State(s): State<AppState>,
    Path(id): Path<String>,
) -> ApiResult<Json<Page<AppKey>>> {
    Ok(Json(app_keys::list(&s.pool, &id).await?))
}

#[utoipa::path(
    delete,
    path = "/admin/api/v1/applications/{id}/app_keys/{key_id}",
    tag = "applications",
    operation_id = "delete_application_app_key",
    summary = "Delete an app key (it stops working with the next snapshot)",
    params(
        ("id" = String, Path, description = "the application's id"),
        ("key_id" = String, Path, description = "the app key's id"),
    ),
    responses(
        (status = 200, body = Deleted),
        (status = 401, body = Error),
        (status = 403, body = Error, description = "a read token"),
        (status = 404, body = Error),
        (status = 429, body = Error),
    ),
    security(("admin_token" = []))
)]
pub async fn delete_app_key(
    State(s): State<AppState>,
    actor: Actor,
    Path((id, key_id)): Path<(String, String)>,
) -> ApiResult<Json<Deleted>> {
    Ok(Json(app_keys::remove(&s.pool, &actor, &id, &key_id).await?))
}

#[utoipa::path(
    get,
    path = "/admin/api/v1/applications/{id}/keys",
    tag = "applications",
    operation_id = "list_application_keys",
    summary = "List the live keys (one page: at most ten)",
    params(("id" = String, Path, description = "the application's id")),
    responses(
        (status = 200, body = Page<ApplicationKey>),
        (status = 401, body = Error),
        (status = 404, body = Error),
        (status = 429, body = Error),
    ),
    security(("admin_token" = []))
)]
pub async fn list_keys(
    State(s): State<AppState>,
    Path(id): Path<String>,
) -> ApiResult<Json<Page<ApplicationKey>>> {
    Ok(Json(keys::list(&s.pool, &id).await?))
}

#[utoipa::path(
    delete,
    path = "/admin/api/v1/applications/{id}/keys/{key_id}",
    tag = "applications",
    operation_id = "revoke_application_key",
    summary = "Revoke a key at once",
    params(
        ("id" = String, Path, description = "the application's id"),
        ("key_id" = String, Path, description = "the key's id"),
    ),
    responses(
        (status = 200, body = Deleted),
        (status = 401, body = Error),
        (status = 403, body = Error, description = "a read token"),
        (status = 404, body = Error),
        (status = 429, body = Error),
    ),
    security(("admin_token" = []))
)]
pub async fn revoke_key(
    State(s): State<AppState>,
    actor: Actor,
    Path((id, key_id)): Path<(String, String)>,
) -> ApiResult<Json<Deleted>> {
    Ok(Json(keys::revoke(&s.pool, &actor, &id, &key_id).await?))
}

#[utoipa::path(
    post,
    path = "/admin/api/v1/applications/{id}/keys/{key_id}/rotate",
    tag = "applications",
    operation_id = "rotate_application_key",
    summary = "Rotate a key: a new one now, the old one works for the grace period",
    params(
        ("id" = String, Path, description = "the application's id"),
        ("key_id" = String, Path, description = "the active key to replace"),
    ),
    request_body = RotateInput,
    responses(
        (status = 201, body = RotatedKey),
        (status = 400, body = Error, description = "malformed JSON or an unknown field"),
        (status = 401, body = Error),
        (status = 403, body = Error, description = "a read token"),
        (status = 404, body = Error, description = "no such application or active key"),
        (status = 409, body = Error, description = "ten live keys already"),
        (status = 422, body = Error, description = "a grace period over 30 days"),
        (status = 429, body = Error, description = "ten rotations in the last hour"),
    ),
    security(("admin_token" = []))
)]
pub async fn rotate_key(
    State(s): State<AppState>,
    actor: Actor,
    Path((id, key_id)): Path<(String, String)>,
    JsonBody(input): JsonBody<RotateInput>,
) -> ApiResult<(StatusCode, Json<RotatedKey>)> {
    applications::must_exist(&s.pool, &id).await?;
    let grace = keys::grace_of(&input)?;
    let rotated = keys::rotate(&s.limits, &s.pool, &actor, &id, &key_id, grace).await?;
    Ok((StatusCode::CREATED, Json(rotated)))
}

#[utoipa::path(
    post,
    path = "/admin/api/v1/applications/{id}/suspend",
    tag = "applications",
    operation_id = "suspend_application",
    summary = "Suspend an application (gateways refuse its keys)",
    params(("id" = String, Path, description = "the application's id")),
    request_body = SuspendInput,
    responses(
        (status = 200, body = Application),
        (status = 400, body = Error, description = "malformed JSON, an unknown field or reason"),
        (status = 401, body = Error),
        (status = 403, body = Error, description = "a read token"),
        (status = 404, body = Error),
        (status = 429, body = Error),
    ),
    security(("admin_token" = []))
)]
pub async fn suspend(
    State(s): State<AppState>,
    actor: Actor,
    Path(id): Path<String>,
    JsonBody(input): JsonBody<SuspendInput>,
) -> ApiResult<Json<Application>> {
    Ok(Json(
        applications::suspend(&s.pool, &actor, &id, &input).await?,
    ))
}

#[utoipa::path(
    post,
    path = "/admin/api/v1/applications/{id}/resume",
    tag = "applications",
    operation_id = "resume_application",
    summary = "Make a suspended application live again",
    params(("id" = String, Path, description = "the application's id")),
    responses(
        (status = 200, body = Application),
        (status = 401, body = Error),
        (status = 403, body = Error, description = "a read token"),
        (status = 404, body = Error),
        (status = 429, body = Error),
    ),
    security(("admin_token" = []))
)]
pub async fn resume(
    State(s): State<AppState>,
    actor: Actor,
    Path(id): Path<String>,
) -> ApiResult<Json<Application>> {
    Ok(Json(applications::resume(&s.pool, &actor, &id).await?))
}

/// Gives the application its own copy of its plan (limits and prices included) to customize.
/// The copy itself is the catalog's (`http/plans.rs` until the plans move to the domain).
#[utoipa::path(
    post,
    path = "/admin/api/v1/applications/{id}/customize_plan",
    tag = "applications",
    operation_id = "customize_application_plan",
    summary = "Give the application its own copy of its plan, to customize",
    params(("id" = String, Path, description = "the application's id")),
    responses(
        (status = 201, body = Plan, description = "the new plan"),
        (status = 401, body = Error),
        (status = 403, body = Error, description = "a read token"),
        (status = 404, body = Error),
        (status = 409, body = Error, description = "the plan is already a customized copy"),
        (status = 429, body = Error),
    ),
    security(("admin_token" = []))
)]
pub async fn customize_plan(
    State(s): State<AppState>,
    actor: Actor,
    Path(id): Path<String>,
) -> ApiResult<(StatusCode, Json<Plan>)> {
    Ok((
        StatusCode::CREATED,
        Json(applications::customize_plan(&s.pool, &actor, &id).await?),
    ))
}

/// `GET /applications/{id}/usage?metric=hits&period=hour|day|month&since=&until=`: metered usage in
/// calendar-aligned UTC buckets (stored per hour; days and months are sums).
#[utoipa::path(
    get,
    path = "/admin/api/v1/applications/{id}/usage",
    tag = "applications",
    operation_id = "application_usage",
    summary = "Metered usage in calendar-aligned UTC buckets",
    params(("id" = String, Path, description = "the application's id"), UsageParams),
    responses(
        (status = 200, body = Usage),
        (status = 400, body = Error, description = "an unknown period or metric, a bad range, an unknown parameter"),
        (status = 401, body = Error),
        (status = 404, body = Error),
        (status = 429, body = Error),
    ),
    security(("admin_token" = []))
)]
pub async fn usage(
    State(s): State<AppState>,
    Path(id): Path<String>,
    ApiQuery(p): ApiQuery<UsageParams>,
) -> ApiResult<Json<Usage>> {
    Ok(Json(usage::of_application(&s.pool, &id, &p).await?))
}

#[cfg(test)]
mod tests {
    /// Every route of accounts and applications is in the generated document, with its schemas.
    #[test]
    fn the_document_has_every_route() {
        let doc = serde_json::to_value(crate::http::api_doc::generated()).unwrap();
        for (path, method) in [
            ("/admin/api/v1/accounts", "post"),
            ("/admin/api/v1/accounts/{id}", "delete"),
            ("/admin/api/v1/applications", "get"),
            (
                "/admin/api/v1/applications/{id}/keys/{key_id}/rotate",
                "post",
            ),
            ("/admin/api/v1/applications/{id}/usage", "get"),
        ] {
            assert!(
                doc["paths"][path][method].is_object(),
                "{method} {path} missing"
            );
        }
        let schemas = &doc["components"]["schemas"];
        assert_eq!(
            schemas["ApplicationState"]["enum"],
            serde_json::json!(["live", "suspended"])
        );
        assert!(schemas["Account"]["properties"]["credit_balance"].is_object());
    }
}
