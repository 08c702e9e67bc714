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
            (
                "metrics_token",
                "the metrics token of the server (`TOLLGATE_METRICS_TOKEN`)",
            ),
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
    // No `servers`: the document is served by the control plane it describes, so clients
    // resolve paths against the address they fetched it from.
    tags(
        (name = "services", description = "APIs sold through Tollgate, their metrics and mapping rules (admin)"),
        (name = "plans", description = "What a service costs and allows: fees, limits, pricing rules (admin)"),
        (name = "accounts", description = "Customers: who is billed, their address and VAT rate (admin)"),
        (name = "applications", description = "An account's use of one plan, its API keys and usage (admin)"),
        (name = "tokens", description = "Admin API tokens and developer API tokens of accounts (admin)"),
        (name = "gateway_tokens", description = "Tokens the gateways' filters use, scoped to services (admin)"),
        (name = "invoices", description = "Invoices, their lines, credit notes and state changes (admin)"),
        (name = "billing", description = "Billing settings and billing runs (admin)"),
        (name = "payments", description = "Charging invoices and provider webhooks"),
        (name = "payment_gateway", description = "The payment provider the control plane charges through (admin)"),
        (name = "gateway", description = "What gateways poll and report: snapshots and usage (gateway tokens)"),
        (name = "developer", description = "An account's own invoices, payments, cards and webhook endpoints (developer tokens)"),
        (name = "webhooks", description = "Outbound webhook endpoints, their delivery log and replay (admin)"),
        (name = "audit", description = "The audit log of admin writes; read-only (admin)"),
        (name = "exports", description = "CSV files of invoices, usage, accounts and applications, streamed (admin)"),
        (name = "health", description = "Readiness and this document (no token)"),
        (name = "operations", description = "Prometheus metrics (the metrics token)"),
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
        super::billing::BillingApi::openapi(),
        super::invoices::InvoicesApi::openapi(),
        super::gateway::GatewayApi::openapi(),
        super::idempotency::IdempotencyApi::openapi(),
        super::health::HealthApi::openapi(),
        super::openapi::DocumentApi::openapi(),
        super::developer::DeveloperTokensApi::openapi(),
        super::webhooks::WebhooksApi::openapi(),
        super::usage_alerts::UsageAlertsApi::openapi(),
        super::metrics::MetricsApi::openapi(),
        super::audit::AuditApi::openapi(),
        super::exports::ExportsApi::openapi(),
    ]
}

/// The whole document, as served at `/openapi.json`.
pub fn generated() -> Document {
    let mut doc = Base::openapi();
    for part in parts() {
        doc.merge(part);
    }
    unique_operation_ids(&mut doc);
    default_error_answers(&mut doc);
    doc
}

/// Every operation can also answer what no handler decides: 408 (over the request timeout), 413
/// (a body over the cap), 429 (a
/// rate limit), 503 (the database not answering), 500 (a bug, logged). Each is the error object,
/// so the document says so once per operation as its `default` answer.
fn default_error_answers(doc: &mut Document) {
    use utoipa::openapi::{ContentBuilder, Ref, ResponseBuilder};
    for item in doc.paths.paths.values_mut() {
        for op in [
            item.get.as_mut(),
            item.put.as_mut(),
            item.post.as_mut(),
            item.delete.as_mut(),
            item.patch.as_mut(),
        ]
        .into_iter()
        .flatten()
        {
            op.responses
                .responses
                .entry("default".to_string())
                .or_insert_with(|| {
                    ResponseBuilder::new()
                        .description(
                            "Any other error (408 request timeout, 413 body too large, 429, 500, 503): the error object",
                        )
                        .content(
                            "application/json",
                            ContentBuilder::new()
                                .schema(Some(Ref::from_schema_name("ErrorBody")))
                                .build(),
                        )
                        .into()
                });
        }
    }
}

/// utoipa names an operation after its handler function, and many files have a `create` or a
/// `list`; OpenAPI wants each `operationId` once (clients and fuzzers key on it). A name used by
/// more than one operation gets the operation's first tag in front: `services_create`.
fn unique_operation_ids(doc: &mut Document) {
    use std::collections::HashMap;
    use utoipa::openapi::path::Operation;

    fn operations(doc: &mut Document) -> impl Iterator<Item = &mut Operation> {
        doc.paths.paths.values_mut().flat_map(|item| {
            [
                item.get.as_mut(),
                item.put.as_mut(),
                item.post.as_mut(),
                item.delete.as_mut(),
                item.options.as_mut(),
                item.head.as_mut(),
                item.patch.as_mut(),
                item.trace.as_mut(),
            ]
            .into_iter()
            .flatten()
        })
    }
    let mut uses: HashMap<String, usize> = HashMap::new();
    for op in operations(doc) {
        if let Some(id) = &op.operation_id {
            *uses.entry(id.clone()).or_default() += 1;
        }
    }
    for op in operations(doc) {
        let (Some(id), Some(tag)) = (&op.operation_id, op.tags.as_ref().and_then(|t| t.first()))
        else {
            continue;
        };
        if uses.get(id).copied().unwrap_or(0) > 1 {
            op.operation_id = Some(format!("{}_{id}", tag.replace('-', "_")));
        }
    }
}
