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

/// The JSON error object every 4xx and 5xx answer carries (see `http/error.rs`).
#[derive(utoipa::ToSchema)]
#[allow(dead_code)] // a schema only: answers are built in http/error.rs
pub struct ErrorBody {
    error: ErrorDetail,
}

#[derive(utoipa::ToSchema)]
#[allow(dead_code)]
pub struct ErrorDetail {
    /// `invalid_request_error`, `authentication_error`, `permission_error`, `conflict_error`,
    /// `rate_limit_error` or `api_error`.
    #[schema(rename = "type")]
    kind: String,
    /// Stable, machine-readable (`resource_missing`, `name_taken`, `charge_in_progress`, ...).
    code: String,
    /// For people; may change between versions.
    message: String,
    /// The offending field (`limits[2].metric`), when there is one.
    param: Option<String>,
}

/// The bearer token kinds: `security(("admin_token" = []))` on a path names the one it takes.
struct Tokens;

impl utoipa::Modify for Tokens {
    fn modify(&self, doc: &mut Document) {
        use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
        let components = doc.components.get_or_insert_with(Default::default);
        for (name, what) in [
            (
                "admin_token",
                "an admin API token (`tollgate token create`)",
            ),
            ("developer_token", "a developer API token of one account"),
            ("gateway_token", "a gateway token, scoped to services"),
        ] {
            components.add_security_scheme(
                name,
                SecurityScheme::Http(
                    HttpBuilder::new()
                        .scheme(HttpAuthScheme::Bearer)
                        .description(Some(what))
                        .build(),
                ),
            );
        }
    }
}

#[derive(OpenApi)]
#[openapi(
    info(
        title = "Tollgate",
        description = "Admin, developer and gateway APIs of Tollgate's control plane."
    ),
    components(schemas(ErrorBody, ErrorDetail)),
    modifiers(&Tokens)
)]
struct Base;

/// The parts, one per resource file. Add yours here (one line each).
fn parts() -> Vec<Document> {
    vec![
        // e.g. super::services::ServicesApi::openapi(),
        super::services::ServicesApi::openapi(),
        super::plans::PlansApi::openapi(),
        super::tokens::TokensApi::openapi(),
        super::gateway_tokens::GatewayTokensApi::openapi(),
        super::payment_gateway::PaymentGatewayApi::openapi(),
        super::payments::PaymentsApi::openapi(),
        super::accounts::AccountsApi::openapi(),
        super::applications::ApplicationsApi::openapi(),
        super::developer::DeveloperTokensApi::openapi(),
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
