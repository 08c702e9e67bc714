//! `/invoices`: list, read (JSON or PDF), create open invoices with manual lines, state actions,
//! credit notes. The work is in `domain::billing::manual` and `domain::billing::invoices`.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Deserialize;

use super::list::{page, ListParams, Page};
use crate::domain::audit::Actor;
use crate::domain::billing::calendar::parse_date;
use crate::domain::billing::invoices::{
    self, InvoiceAction, InvoiceFilter, InvoiceKind, InvoiceObject, InvoiceState, LineObject,
    Period,
};
use crate::domain::billing::manual::{self, CreateInput, CreditNoteInput, LineInput};
use crate::http::api_doc::ErrorBody;
use crate::state::AppState;
use crate::web::error::{ApiError, ApiResult};
use crate::web::extract::{ApiQuery, JsonBody};

#[derive(utoipa::OpenApi)]
#[openapi(
    paths(
        list,
        get,
        create,
        finalize,
        issue,
        pay,
        cancel,
        add_line,
        remove_line,
        credit_note
    ),
    components(schemas(
        InvoiceObject,
        LineObject,
        Period,
        InvoiceState,
        InvoiceKind,
        crate::domain::billing::lines::LineKind,
        CreateInput,
        LineInput,
        CreditNoteInput
    ))
)]
pub struct InvoicesApi;

#[derive(Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct InvoiceListParams {
    /// 1 to 100, default 20.
    limit: Option<i64>,
    /// The last id seen.
    starting_after: Option<String>,
    account_id: Option<String>,
    state: Option<String>,
    /// `YYYY-MM`: invoices whose period starts in that month.
    period: Option<String>,
    /// `invoice` (default) or `credit_note`.
    kind: Option<String>,
}

#[utoipa::path(get, path = "/admin/api/v1/invoices", tag = "invoices",
    params(InvoiceListParams),
    responses((status = 200, body = crate::domain::Page<InvoiceObject>),
        (status = 400, body = ErrorBody), (status = 401, body = ErrorBody)),
    security(("admin_token" = [])))]
pub async fn list(
    State(s): State<AppState>,
    ApiQuery(p): ApiQuery<InvoiceListParams>,
) -> ApiResult<Json<Page<InvoiceObject>>> {
    let req = ListParams {
        limit: p.limit,
        starting_after: p.starting_after,
    }
    .request()?;
    let period_start = match p.period.as_deref() {
        Some(m) => Some(parse_date(&format!("{m}-01")).map_err(|_| {
            ApiError::bad_request(
                Some("period".into()),
                "invalid_period",
                format!("{m:?} is not a month like 2026-11"),
            )
        })?),
        None => None,
    };
    let state = match p.state.as_deref() {
        None | Some("") => None,
        Some(st) => Some(InvoiceState::from_name(st).ok_or_else(|| {
            ApiError::bad_request(
                Some("state".into()),
                "invalid_state",
                format!("{st:?} is not an invoice state"),
            )
        })?),
    };
    // An unknown kind has no invoices (it has never been an error).
    let Some(kind) = InvoiceKind::from_name(p.kind.as_deref().unwrap_or("invoice")) else {
        return Ok(Json(page(Vec::new(), req.limit, |i: &InvoiceObject| &i.id)));
    };
    let filter = InvoiceFilter {
        account_id: p.account_id.filter(|a| !a.is_empty()),
        state,
        period_start,
        kind,
    };
    Ok(Json(invoices::list(&s.pool, &filter, &req).await?))
}

/// `GET /invoices/{id}` (JSON) and `GET /invoices/{id}.pdf`.
#[utoipa::path(get, path = "/admin/api/v1/invoices/{id}", tag = "invoices",
    params(("id" = String, Path, description = "invoice id; `<id>.pdf` answers the PDF")),
    responses((status = 200, body = InvoiceObject, description = "the invoice; `application/pdf` for `<id>.pdf`"),
        (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)),
    security(("admin_token" = [])))]
pub async fn get(State(s): State<AppState>, Path(id): Path<String>) -> ApiResult<Response> {
    if let Some(id) = id.strip_suffix(".pdf") {
        return crate::web::pdf::invoice(&s.pool, id).await;
    }
    Ok(Json(invoices::object(&s.pool, &id).await?).into_response())
}

/// An open invoice for the current month, to which manual lines can be added.
#[utoipa::path(post, path = "/admin/api/v1/invoices", tag = "invoices",
    request_body = CreateInput,
    responses((status = 201, body = InvoiceObject), (status = 400, body = ErrorBody),
        (status = 401, body = ErrorBody), (status = 403, body = ErrorBody),
        (status = 422, body = ErrorBody)),
    security(("admin_token" = [])))]
pub async fn create(
    State(s): State<AppState>,
    actor: Actor,
    JsonBody(input): JsonBody<CreateInput>,
) -> ApiResult<(StatusCode, Json<InvoiceObject>)> {
    Ok((
        StatusCode::CREATED,
        Json(manual::create(&s.pool, &actor, input).await?),
    ))
}

async fn act(
    s: &AppState,
    actor: &Actor,
    id: &str,
    action: InvoiceAction,
) -> ApiResult<Json<InvoiceObject>> {
    Ok(Json(manual::act(&s.pool, actor, id, action).await?))
}

#[utoipa::path(post, path = "/admin/api/v1/invoices/{id}/finalize", tag = "invoices",
    params(("id" = String, Path, description = "invoice id")),
    responses((status = 200, body = InvoiceObject), (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody), (status = 404, body = ErrorBody),
        (status = 409, body = ErrorBody)),
    security(("admin_token" = [])))]
pub async fn finalize(
    State(s): State<AppState>,
    actor: Actor,
    Path(id): Path<String>,
) -> ApiResult<Json<InvoiceObject>> {
    act(&s, &actor, &id, InvoiceAction::Finalize).await
}

#[utoipa::path(post, path = "/admin/api/v1/invoices/{id}/issue", tag = "invoices",
    params(("id" = String, Path, description = "invoice id")),
    responses((status = 200, body = InvoiceObject), (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody), (status = 404, body = ErrorBody),
        (status = 409, body = ErrorBody)),
    security(("admin_token" = [])))]
pub async fn issue(
    State(s): State<AppState>,
    actor: Actor,
    Path(id): Path<String>,
) -> ApiResult<Json<InvoiceObject>> {
    act(&s, &actor, &id, InvoiceAction::Issue).await
}

#[utoipa::path(post, path = "/admin/api/v1/invoices/{id}/pay", tag = "invoices",
    params(("id" = String, Path, description = "invoice id")),
    responses((status = 200, body = InvoiceObject), (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody), (status = 404, body = ErrorBody),
        (status = 409, body = ErrorBody)),
    security(("admin_token" = [])))]
pub async fn pay(
    State(s): State<AppState>,
    actor: Actor,
    Path(id): Path<String>,
) -> ApiResult<Json<InvoiceObject>> {
    act(&s, &actor, &id, InvoiceAction::Pay).await
}

#[utoipa::path(post, path = "/admin/api/v1/invoices/{id}/cancel", tag = "invoices",
    params(("id" = String, Path, description = "invoice id")),
    responses((status = 200, body = InvoiceObject), (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody), (status = 404, body = ErrorBody),
        (status = 409, body = ErrorBody)),
    security(("admin_token" = [])))]
pub async fn cancel(
    State(s): State<AppState>,
    actor: Actor,
    Path(id): Path<String>,
) -> ApiResult<Json<InvoiceObject>> {
    act(&s, &actor, &id, InvoiceAction::Cancel).await
}

#[utoipa::path(post, path = "/admin/api/v1/invoices/{id}/lines", tag = "invoices",
    params(("id" = String, Path, description = "invoice id")),
    request_body = LineInput,
    responses((status = 201, body = InvoiceObject), (status = 400, body = ErrorBody),
        (status = 401, body = ErrorBody), (status = 403, body = ErrorBody),
        (status = 404, body = ErrorBody), (status = 409, body = ErrorBody),
        (status = 422, body = ErrorBody)),
    security(("admin_token" = [])))]
pub async fn add_line(
    State(s): State<AppState>,
    actor: Actor,
    Path(id): Path<String>,
    JsonBody(input): JsonBody<LineInput>,
) -> ApiResult<(StatusCode, Json<InvoiceObject>)> {
    Ok((
        StatusCode::CREATED,
        Json(manual::add_line(&s.pool, &actor, &id, input).await?),
    ))
}

#[utoipa::path(delete, path = "/admin/api/v1/invoices/{id}/lines/{line_id}", tag = "invoices",
    params(("id" = String, Path, description = "invoice id"),
        ("line_id" = String, Path, description = "manual line id")),
    responses((status = 200, body = InvoiceObject), (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody), (status = 404, body = ErrorBody),
        (status = 409, body = ErrorBody)),
    security(("admin_token" = [])))]
pub async fn remove_line(
    State(s): State<AppState>,
    actor: Actor,
    Path((id, line_id)): Path<(String, String)>,
) -> ApiResult<Json<InvoiceObject>> {
    Ok(Json(
        manual::remove_line(&s.pool, &actor, &id, &line_id).await?,
    ))
}

#[utoipa::path(post, path = "/admin/api/v1/invoices/{id}/credit_notes", tag = "invoices",
    params(("id" = String, Path, description = "the issued invoice to credit")),
    request_body = CreditNoteInput,
    responses((status = 201, body = InvoiceObject, description = "the credit note"),
        (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody), (status = 404, body = ErrorBody),
        (status = 409, body = ErrorBody), (status = 422, body = ErrorBody)),
    security(("admin_token" = [])))]
pub async fn credit_note(
    State(s): State<AppState>,
    actor: Actor,
    Path(id): Path<String>,
    JsonBody(input): JsonBody<CreditNoteInput>,
) -> ApiResult<(StatusCode, Json<InvoiceObject>)> {
    Ok((
        StatusCode::CREATED,
        Json(manual::credit_note(&s.pool, &actor, &id, input).await?),
    ))
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_billing_and_invoice_routes_are_in_the_generated_document() {
        let doc = crate::http::api_doc::generated();
        for path in [
            "/admin/api/v1/invoices",
            "/admin/api/v1/invoices/{id}",
            "/admin/api/v1/invoices/{id}/lines/{line_id}",
            "/admin/api/v1/invoices/{id}/credit_notes",
            "/admin/api/v1/billing/runs",
            "/admin/api/v1/billing/settings",
        ] {
            assert!(
                doc.paths.paths.contains_key(path),
                "{path} is not documented"
            );
        }
        let schemas = &doc.components.expect("components").schemas;
        for name in ["InvoiceObject", "BillingRun", "SettingsObject", "LineKind"] {
            assert!(schemas.contains_key(name), "schema {name} is missing");
        }
    }
}
