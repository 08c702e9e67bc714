//! The generated OpenAPI document. Each resource file describes its own routes
//! (`#[utoipa::path]` on the handler) and types (`#[derive(utoipa::ToSchema)]` on the request and
//! response structs) in a `#[derive(utoipa::OpenApi)]` struct next to them; [`generated`] merges
//! those parts over the shared base (info, security schemes, the error object).
//!
//! Why utoipa rather than aide: it describes the axum routes we already have with attributes
//! next to each handler and derives schemas from the same serde types the handlers return, so
//! the document cannot drift from the code without the compiler noticing; aide would require
//! rebuilding the router with its own `ApiRouter`.

use utoipa::openapi::OpenApi as Document;
use utoipa::OpenApi;

#[derive(OpenApi)]
#[openapi(info(
    title = "Tollgate",
    description = "Admin, developer and gateway APIs of Tollgate's control plane."
))]
struct Base;

/// The parts, one per resource file. Add yours here (one line each).
fn parts() -> Vec<Document> {
    vec![
        // e.g. super::services::ServicesApi::openapi(),
    ]
}

/// The whole document, as served at `/openapi.json`.
pub fn generated() -> Document {
    let mut doc = Base::openapi();
    for part in parts() {
        doc.merge(part);
    }
    doc
}
