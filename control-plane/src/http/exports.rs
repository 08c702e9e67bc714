//! `/exports/{invoices,usage,accounts,applications}.csv`: streamed CSV files of any size, filters
//! as query parameters. The rows come from `domain::exports`, the CSV framing and streaming from
//! `web::csv` (the admin portal's downloads use both too). Columns: `docs/exports.md`.

use axum::extract::State;
use axum::response::Response;

use crate::domain::exports::directory::{
    AccountExportParams, AccountSource, ApplicationExportParams, ApplicationSource,
};
use crate::domain::exports::invoices::{InvoiceExportParams, InvoiceSource};
use crate::domain::exports::usage::{UsageExportParams, UsageSource};
use crate::domain::exports::Source;
use crate::http::api_doc::ErrorBody;
use crate::state::AppState;
use crate::web::error::ApiResult;
use crate::web::extract::ApiQuery;

#[derive(utoipa::OpenApi)]
#[openapi(paths(invoices, usage, accounts, applications))]
pub struct ExportsApi;

/// Invoices and credit notes, one row per line (`lines=false`: one per invoice).
#[utoipa::path(get, path = "/admin/api/v1/exports/invoices.csv", tag = "exports",
    params(InvoiceExportParams),
    responses((status = 200, content_type = "text/csv", body = String,
            description = "RFC 4180 CSV with a header row (columns in docs/exports.md), as an attachment"),
        (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
        (status = 422, body = ErrorBody)),
    security(("admin_token" = [])))]
pub async fn invoices(
    State(s): State<AppState>,
    ApiQuery(p): ApiQuery<InvoiceExportParams>,
) -> ApiResult<Response> {
    let source = Source::Invoices(InvoiceSource::new(p)?);
    crate::web::csv::response(s.pool.clone(), source).await
}

/// Usage per application, metric and hour, day or month (`since` and `until` required).
#[utoipa::path(get, path = "/admin/api/v1/exports/usage.csv", tag = "exports",
    params(UsageExportParams),
    responses((status = 200, content_type = "text/csv", body = String,
            description = "RFC 4180 CSV with a header row (columns in docs/exports.md), as an attachment"),
        (status = 400, body = ErrorBody), (status = 401, body = ErrorBody)),
    security(("admin_token" = [])))]
pub async fn usage(
    State(s): State<AppState>,
    ApiQuery(p): ApiQuery<UsageExportParams>,
) -> ApiResult<Response> {
    let source = Source::Usage(UsageSource::new(p)?);
    crate::web::csv::response(s.pool.clone(), source).await
}

/// Accounts with their billing address and credit balance.
#[utoipa::path(get, path = "/admin/api/v1/exports/accounts.csv", tag = "exports",
    params(AccountExportParams),
    responses((status = 200, content_type = "text/csv", body = String,
            description = "RFC 4180 CSV with a header row (columns in docs/exports.md), as an attachment"),
        (status = 400, body = ErrorBody), (status = 401, body = ErrorBody)),
    security(("admin_token" = [])))]
pub async fn accounts(
    State(s): State<AppState>,
    ApiQuery(p): ApiQuery<AccountExportParams>,
) -> ApiResult<Response> {
    let source = Source::Accounts(AccountSource::new(p)?);
    crate::web::csv::response(s.pool.clone(), source).await
}

/// Applications with their account, plan and service.
#[utoipa::path(get, path = "/admin/api/v1/exports/applications.csv", tag = "exports",
    params(ApplicationExportParams),
    responses((status = 200, content_type = "text/csv", body = String,
            description = "RFC 4180 CSV with a header row (columns in docs/exports.md), as an attachment"),
        (status = 400, body = ErrorBody), (status = 401, body = ErrorBody)),
    security(("admin_token" = [])))]
pub async fn applications(
    State(s): State<AppState>,
    ApiQuery(p): ApiQuery<ApplicationExportParams>,
) -> ApiResult<Response> {
    let source = Source::Applications(ApplicationSource::new(p)?);
    crate::web::csv::response(s.pool.clone(), source).await
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_exports_are_documented_as_csv() {
        let doc = crate::http::api_doc::generated();
        for name in ["invoices", "usage", "accounts", "applications"] {
            let path = format!("/admin/api/v1/exports/{name}.csv");
            let item = doc.paths.paths.get(&path).expect("documented");
            let ok = &item.get.as_ref().expect("GET").responses.responses["200"];
            let utoipa::openapi::RefOr::T(ok) = ok else {
                panic!("{path}: 200 is a reference");
            };
            assert!(
                ok.content.contains_key("text/csv"),
                "{path} is not text/csv"
            );
        }
    }
}
