//! Admin portal: CSV downloads (`/admin/exports/{invoices,usage,accounts,applications}.csv`)
//! through the admin session (read scope is enough), with the same filters as the admin API's
//! exports and the same domain sources and streaming (`web::csv`). The pages link here with the
//! filters they show.

use axum::extract::{Path, Query, State};
use axum::http::Uri;
use axum::response::{IntoResponse, Response};
use serde::de::DeserializeOwned;

use super::access::{failure, AdminSession};
use super::forms::seg;
use crate::domain::exports::directory::{AccountSource, ApplicationSource};
use crate::domain::exports::invoices::InvoiceSource;
use crate::domain::exports::usage::UsageSource;
use crate::domain::exports::Source;
use crate::portal::html::{html, Markup};
use crate::state::AppState;
use crate::web::error::ApiError;

fn query<T: DeserializeOwned>(uri: &Uri) -> Result<T, ApiError> {
    Query::<T>::try_from_uri(uri)
        .map(|Query(v)| v)
        .map_err(|e| ApiError::bad_request(None, "invalid_query", e.body_text()))
}

/// `GET /admin/exports/{file}`: the file, or the portal's error page (before any byte of CSV).
pub async fn download(
    State(s): State<AppState>,
    _admin: AdminSession,
    Path(file): Path<String>,
    uri: Uri,
) -> Response {
    let source = match file.as_str() {
        "invoices.csv" => query(&uri).and_then(|p| Ok(Source::Invoices(InvoiceSource::new(p)?))),
        "usage.csv" => query(&uri).and_then(|p| Ok(Source::Usage(UsageSource::new(p)?))),
        "accounts.csv" => query(&uri).and_then(|p| Ok(Source::Accounts(AccountSource::new(p)?))),
        "applications.csv" => {
            query(&uri).and_then(|p| Ok(Source::Applications(ApplicationSource::new(p)?)))
        }
        _ => Err(ApiError::not_found("export", &file)),
    };
    let answer = match source {
        Ok(source) => crate::web::csv::response(s.pool.clone(), source).await,
        Err(e) => Err(e),
    };
    match answer {
        Ok(r) => r.into_response(),
        Err(e) => failure(e),
    }
}

/// A "Download CSV" link to `file` with `filters` (empty values left out).
pub fn link(file: &str, filters: &[(&str, &str)]) -> Markup {
    let query: Vec<String> = filters
        .iter()
        .filter(|(_, v)| !v.is_empty())
        .map(|(k, v)| format!("{k}={}", seg(v)))
        .collect();
    let href = if query.is_empty() {
        format!("/admin/exports/{file}")
    } else {
        format!("/admin/exports/{file}?{}", query.join("&"))
    };
    html! { a class="download" href=(href) download { "Download " (file) } }
}
