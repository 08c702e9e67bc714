//! `GET /openapi.json`: the API's contract. It serves the document generated from the handlers'
//! `#[utoipa::path]` attributes and the response types' `ToSchema` ([`super::api_doc::generated`]).

use std::sync::OnceLock;

use axum::Json;
use serde_json::Value;

/// The document `/openapi.json` answers, built once per process (it never changes at run time).
pub fn served() -> &'static Value {
    static DOC: OnceLock<Value> = OnceLock::new();
    DOC.get_or_init(|| {
        // A `Document` is plain data: serializing it cannot fail.
        serde_json::to_value(super::api_doc::generated()).unwrap_or_default()
    })
}

/// The document itself, for people and for the API fuzzer (schemathesis in `tests/`).
#[utoipa::path(
    get,
    path = "/openapi.json",
    tag = "health",
    summary = "This document (OpenAPI 3.1)",
    responses(
        (status = 200, description = "The OpenAPI 3.1 document of every API route", content_type = "application/json", body = Object),
    )
)]
pub async fn serve() -> Json<&'static Value> {
    Json(served())
}

/// This file's part of the generated document.
#[derive(utoipa::OpenApi)]
#[openapi(paths(serve))]
pub struct DocumentApi;
