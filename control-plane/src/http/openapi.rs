//! `GET /openapi.json`: the API's contract. It serves the document generated from the handlers'
//! `#[utoipa::path]` attributes and the response types' `ToSchema` ([`super::api_doc::generated`]).
//!
//! Until every resource file has registered its part, the old hand-written route table below is
//! still served (see [`SERVE_GENERATED`]); it goes away with the switch.

use std::sync::OnceLock;

use axum::Json;
use serde_json::{json, Map, Value};

/// Which document `/openapi.json` serves: `true` the generated one, `false` the hand-written
/// [`hand_written`] (a fallback while the resource files' parts are not all merged; the route
/// walks in `tests/test_access.py` and `control-plane/tests/api/access.rs` need every route in
/// the served document). THE ONE LINE TO FLIP at integration; then delete [`hand_written`],
/// [`ROUTES`] and the schema builders below.
pub const SERVE_GENERATED: bool = false;

/// The document `/openapi.json` answers, built once per process (it never changes at run time).
pub fn served() -> &'static Value {
    static DOC: OnceLock<Value> = OnceLock::new();
    DOC.get_or_init(|| {
        if SERVE_GENERATED {
            // A `Document` is plain data: serializing it cannot fail.
            serde_json::to_value(super::api_doc::generated()).unwrap_or_default()
        } else {
            hand_written()
        }
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

/// (method, path, summary, request schema, response schema, success status)
pub type Route = (
    &'static str,
    &'static str,
    &'static str,
    Option<&'static str>,
    &'static str,
    u16,
);

pub const ROUTES: &[Route] = &[
    (
        "get",
        "/healthz",
        "Readiness: 200 once the database answers",
        None,
        "Health",
        200,
    ),
    (
        "get",
        "/openapi.json",
        "This document",
        None,
        "OpenApi",
        200,
    ),
    (
        "post",
        "/admin/api/v1/services",
        "Create a service (gets a `hits` metric)",
        Some("ServiceInput"),
        "Service",
        201,
    ),
    (
        "get",
        "/admin/api/v1/services",
        "List services",
        None,
        "List",
        200,
    ),
    (
        "get",
        "/admin/api/v1/services/{id}",
        "Get a service",
        None,
        "Service",
        200,
    ),
    (
        "patch",
        "/admin/api/v1/services/{id}",
        "Rename a service",
        Some("ServiceInput"),
        "Service",
        200,
    ),
    (
        "delete",
        "/admin/api/v1/services/{id}",
        "Delete a service without plans",
        None,
        "Deleted",
        200,
    ),
    (
        "post",
        "/admin/api/v1/services/{id}/metrics",
        "Create a metric or a method (parent `hits`)",
        Some("MetricInput"),
        "Metric",
        201,
    ),
    (
        "get",
        "/admin/api/v1/services/{id}/metrics",
        "List metrics",
        None,
        "List",
        200,
    ),
    (
        "get",
        "/admin/api/v1/services/{id}/metrics/{metric_id}",
        "Get a metric",
        None,
        "Metric",
        200,
    ),
    (
        "patch",
        "/admin/api/v1/services/{id}/metrics/{metric_id}",
        "Rename a metric or change its unit",
        Some("MetricInput"),
        "Metric",
        200,
    ),
    (
        "delete",
        "/admin/api/v1/services/{id}/metrics/{metric_id}",
        "Delete an unused metric",
        None,
        "Deleted",
        200,
    ),
    (
        "post",
        "/admin/api/v1/services/{id}/mapping_rules",
        "Create a mapping rule",
        Some("MappingRuleInput"),
        "MappingRule",
        201,
    ),
    (
        "get",
        "/admin/api/v1/services/{id}/mapping_rules",
        "List mapping rules",
        None,
        "List",
        200,
    ),
    (
        "delete",
        "/admin/api/v1/services/{id}/mapping_rules/{rule_id}",
        "Delete a mapping rule",
        None,
        "Deleted",
        200,
    ),
    (
        "post",
        "/admin/api/v1/plans",
        "Create a plan with limits and pricing rules",
        Some("PlanInput"),
        "Plan",
        201,
    ),
    (
        "get",
        "/admin/api/v1/plans",
        "List plans (filter: service_id)",
        None,
        "List",
        200,
    ),
    (
        "get",
        "/admin/api/v1/plans/{id}",
        "Get a plan",
        None,
        "Plan",
        200,
    ),
    (
        "patch",
        "/admin/api/v1/plans/{id}",
        "Update a plan; limits / pricing_rules replace the set",
        Some("PlanInput"),
        "Plan",
        200,
    ),
    (
        "delete",
        "/admin/api/v1/plans/{id}",
        "Delete a plan no application uses",
        None,
        "Deleted",
        200,
    ),
    (
        "post",
        "/admin/api/v1/accounts",
        "Create an account",
        Some("AccountInput"),
        "Account",
        201,
    ),
    (
        "get",
        "/admin/api/v1/accounts",
        "List accounts",
        None,
        "List",
        200,
    ),
    (
        "get",
        "/admin/api/v1/accounts/{id}",
        "Get an account",
        None,
        "Account",
        200,
    ),
    (
        "patch",
        "/admin/api/v1/accounts/{id}",
        "Update an account",
        Some("AccountInput"),
        "Account",
        200,
    ),
    (
        "delete",
        "/admin/api/v1/accounts/{id}",
        "Delete an account without applications",
        None,
        "Deleted",
        200,
    ),
    (
        "post",
        "/admin/api/v1/applications",
        "Create an application; the response has its first key, once",
        Some("ApplicationInput"),
        "Application",
        201,
    ),
    (
        "get",
        "/admin/api/v1/applications",
        "List applications (filters: account_id, plan_id)",
        None,
        "List",
        200,
    ),
    (
        "get",
        "/admin/api/v1/applications/{id}",
        "Get an application",
        None,
        "Application",
        200,
    ),
    (
        "patch",
        "/admin/api/v1/applications/{id}",
        "Rename, describe or change the plan of an application",
        Some("ApplicationInput"),
        "Application",
        200,
    ),
    (
        "delete",
        "/admin/api/v1/applications/{id}",
        "Delete an application and its keys",
        None,
        "Deleted",
        200,
    ),
    (
        "post",
        "/admin/api/v1/applications/{id}/keys",
        "Create a key (shown once; at most 5 active)",
        None,
        "ApplicationKey",
        201,
    ),
    (
        "get",
        "/admin/api/v1/applications/{id}/keys",
        "List live keys (prefixes only)",
        None,
        "List",
        200,
    ),
    (
        "delete",
        "/admin/api/v1/applications/{id}/keys/{key_id}",
        "Revoke a key now",
        None,
        "Deleted",
        200,
    ),
    (
        "post",
        "/admin/api/v1/applications/{id}/keys/{key_id}/rotate",
        "New key; the old one expires after grace_seconds (default 86400)",
        Some("RotateInput"),
        "ApplicationKey",
        201,
    ),
    (
        "post",
        "/admin/api/v1/applications/{id}/suspend",
        "Suspend (reason admin or non_payment)",
        Some("SuspendInput"),
        "Application",
        200,
    ),
    (
        "post",
        "/admin/api/v1/applications/{id}/resume",
        "Resume a suspended application",
        None,
        "Application",
        200,
    ),
    (
        "post",
        "/admin/api/v1/applications/{id}/customize_plan",
        "Give the application its own copy of its plan",
        None,
        "Plan",
        201,
    ),
    (
        "post",
        "/admin/api/v1/tokens",
        "Create an admin token (shown once)",
        Some("TokenInput"),
        "AdminToken",
        201,
    ),
    (
        "get",
        "/admin/api/v1/tokens",
        "List admin tokens",
        None,
        "List",
        200,
    ),
    (
        "delete",
        "/admin/api/v1/tokens/{id}",
        "Revoke an admin token",
        None,
        "Deleted",
        200,
    ),
    (
        "get",
        "/admin/api/v1/applications/{id}/usage",
        "Metered usage per hour, day or month (metric, period, since, until)",
        None,
        "Usage",
        200,
    ),
    (
        "post",
        "/admin/api/v1/gateway_tokens",
        "Create a gateway token scoped to services (shown once)",
        Some("GatewayTokenInput"),
        "GatewayToken",
        201,
    ),
    (
        "get",
        "/admin/api/v1/gateway_tokens",
        "List gateway tokens",
        None,
        "List",
        200,
    ),
    (
        "get",
        "/admin/api/v1/gateway_tokens/{id}",
        "Get a gateway token (without the token)",
        None,
        "GatewayToken",
        200,
    ),
    (
        "patch",
        "/admin/api/v1/gateway_tokens/{id}",
        "Replace the services a gateway token may serve",
        Some("GatewayTokenScope"),
        "GatewayToken",
        200,
    ),
    (
        "delete",
        "/admin/api/v1/gateway_tokens/{id}",
        "Revoke a gateway token",
        None,
        "Deleted",
        200,
    ),
    (
        "get",
        "/gateway/v1/services/{id}/snapshot",
        "The service's snapshot for gateways (ETag / If-None-Match -> 304)",
        None,
        "Snapshot",
        200,
    ),
    (
        "post",
        "/gateway/v1/services/{id}/usage",
        "A usage report, counted exactly once per (gateway, sequence)",
        Some("UsageReport"),
        "UsageAck",
        200,
    ),
    (
        "get",
        "/admin/api/v1/billing/settings",
        "Billing settings (defaults until first written)",
        None,
        "BillingSettings",
        200,
    ),
    (
        "put",
        "/admin/api/v1/billing/settings",
        "Update billing settings: any subset of the fields; invalid -> 422, a currency change with money outstanding -> 409",
        Some("BillingSettings"),
        "BillingSettings",
        200,
    ),
    (
        "post",
        "/admin/api/v1/billing/runs",
        "Start a billing run for a date (default today); runs in the background, poll it",
        Some("RunInput"),
        "BillingRun",
        202,
    ),
    (
        "get",
        "/admin/api/v1/billing/runs",
        "List billing runs, newest first",
        None,
        "List",
        200,
    ),
    (
        "get",
        "/admin/api/v1/billing/runs/{id}",
        "A billing run and its progress",
        None,
        "BillingRun",
        200,
    ),
    (
        "post",
        "/admin/api/v1/invoices",
        "Create an open invoice for the current month (add manual lines, then issue)",
        Some("InvoiceInput"),
        "Invoice",
        201,
    ),
    (
        "get",
        "/admin/api/v1/invoices",
        "List invoices (account_id, state, period=YYYY-MM, kind=invoice|credit_note)",
        None,
        "List",
        200,
    ),
    (
        "get",
        "/admin/api/v1/invoices/{id}",
        "An invoice with its lines",
        None,
        "Invoice",
        200,
    ),
    (
        "get",
        "/admin/api/v1/invoices/{id}.pdf",
        "An invoice as PDF (application/pdf)",
        None,
        "Pdf",
        200,
    ),
    (
        "post",
        "/admin/api/v1/invoices/{id}/finalize",
        "open -> finalized (lines frozen)",
        None,
        "Invoice",
        200,
    ),
    (
        "post",
        "/admin/api/v1/invoices/{id}/issue",
        "open|finalized -> pending (numbered, frozen, emailed; paid when the total is zero)",
        None,
        "Invoice",
        200,
    ),
    (
        "post",
        "/admin/api/v1/invoices/{id}/pay",
        "pending|unpaid -> paid (payment received outside Tollgate)",
        None,
        "Invoice",
        200,
    ),
    (
        "post",
        "/admin/api/v1/invoices/{id}/cancel",
        "Cancel an unsettled invoice (credit it used returns to the balance)",
        None,
        "Invoice",
        200,
    ),
    (
        "post",
        "/admin/api/v1/invoices/{id}/lines",
        "Add a manual line to an open invoice",
        Some("LineInput"),
        "Invoice",
        201,
    ),
    (
        "delete",
        "/admin/api/v1/invoices/{id}/lines/{line_id}",
        "Remove a manual line from an open invoice",
        None,
        "Invoice",
        200,
    ),
    (
        "post",
        "/admin/api/v1/invoices/{id}/credit_notes",
        "Issue a credit note for an issued invoice; its amount goes to the credit balance",
        Some("CreditNoteInput"),
        "Invoice",
        201,
    ),
    (
        "get",
        "/admin/api/v1/billing/gateway",
        "The payment gateway: provider, public fields, and for secrets only whether set and the last 4 characters",
        None,
        "PaymentGateway",
        200,
    ),
    (
        "put",
        "/admin/api/v1/billing/gateway",
        "Set the payment gateway (stripe or braintree); secrets sealed with TOLLGATE_MASTER_KEY (409 without one)",
        Some("PaymentGatewayInput"),
        "PaymentGateway",
        200,
    ),
    (
        "post",
        "/admin/api/v1/accounts/{id}/tokens",
        "Create a developer token for the account (shown once)",
        Some("TokenInput"),
        "AccountToken",
        201,
    ),
    (
        "get",
        "/admin/api/v1/accounts/{id}/tokens",
        "List the account's developer tokens",
        None,
        "List",
        200,
    ),
    (
        "delete",
        "/admin/api/v1/accounts/{id}/tokens/{token_id}",
        "Revoke a developer token",
        None,
        "Deleted",
        200,
    ),
    (
        "get",
        "/api/v1/invoices",
        "Developer API: the account's issued invoices and credit notes",
        None,
        "List",
        200,
    ),
    (
        "get",
        "/api/v1/invoices/{id}",
        "Developer API: one of the account's invoices",
        None,
        "Invoice",
        200,
    ),
    (
        "get",
        "/api/v1/invoices/{id}.pdf",
        "Developer API: an invoice as PDF",
        None,
        "Pdf",
        200,
    ),
    (
        "get",
        "/api/v1/payments",
        "Developer API: billing history (charge attempts), newest first",
        None,
        "List",
        200,
    ),
    (
        "post",
        "/admin/api/v1/invoices/{id}/charge",
        "Charge an issued invoice now with the account's default card",
        None,
        "Invoice",
        200,
    ),
    (
        "post",
        "/api/v1/invoices/{id}/pay",
        "Developer API: pay an invoice now (default card or payment_method_id)",
        Some("PayInput"),
        "Invoice",
        200,
    ),
    (
        "post",
        "/api/v1/payment_methods/setup",
        "Developer API: start card entry (Stripe: a SetupIntent client secret for Elements)",
        None,
        "PaymentMethodSetup",
        200,
    ),
    (
        "post",
        "/api/v1/payment_methods",
        "Developer API: attach a confirmed card (the first becomes the default)",
        Some("AddPaymentMethod"),
        "PaymentMethod",
        201,
    ),
    (
        "get",
        "/api/v1/payment_methods",
        "Developer API: the account's cards",
        None,
        "List",
        200,
    ),
    (
        "delete",
        "/api/v1/payment_methods/{id}",
        "Developer API: remove a card",
        None,
        "Deleted",
        200,
    ),
    (
        "post",
        "/api/v1/payment_methods/{id}/default",
        "Developer API: make a card the default",
        None,
        "List",
        200,
    ),
    (
        "post",
        "/webhooks/stripe",
        "Stripe webhook (Stripe-Signature, 5-minute tolerance)",
        None,
        "WebhookAck",
        200,
    ),
    (
        "get",
        "/gateway/v1/services/{id}/global_usage",
        "Usage by other gateway instances in the current windows (instance=<id>)",
        None,
        "GlobalUsage",
        200,
    ),
];

fn schemas() -> Value {
    let money = json!({"type": "string", "pattern": "^[0-9]+(\\.[0-9]+)?$", "example": "10.00"});
    let period = json!({"type": "string", "enum": ["minute", "hour", "day", "week", "month", "year", "eternity"]});
    let limit = json!({"type": "object", "required": ["metric", "period", "value"],
        "properties": {"metric": {"type": "string"}, "period": period, "value": {"type": "integer", "minimum": 0}}});
    let pricing_rule = json!({"type": "object", "required": ["metric", "from", "unit_price"],
        "properties": {"metric": {"type": "string"}, "from": {"type": "integer", "minimum": 1},
                       "to": {"type": ["integer", "null"]}, "unit_price": money,
                       "model": {"type": "string", "enum": ["graduated", "volume", "package"], "default": "graduated"},
                       "package_size": {"type": "integer", "minimum": 1}}});
    let id = json!({"type": "string"});
    let mut all = json!({
        "Error": {"type": "object", "properties": {"error": {"type": "object", "required": ["type", "code", "message"],
            "properties": {"type": {"type": "string"}, "code": {"type": "string"}, "message": {"type": "string"},
                           "param": {"type": ["string", "null"]}}}}},
        "List": {"type": "object", "properties": {"object": {"const": "list"}, "data": {"type": "array", "items": {}},
            "has_more": {"type": "boolean"}, "next_cursor": {"type": ["string", "null"]}}},
        "Deleted": {"type": "object", "properties": {"id": id, "object": {"type": "string"}, "deleted": {"const": true}}},
        "OpenApi": {"type": "object"},
        "Usage": {"type": "object", "properties": {"metric": {"type": "string"}, "period": {"type": "string"},
            "total": {"type": "integer"}, "buckets": {"type": "array", "items": {"type": "object",
                "properties": {"start": {"type": "integer"}, "value": {"type": "integer"}}}}}},
        "GatewayTokenInput": {"type": "object", "required": ["name", "service_ids"], "properties": {"name": {"type": "string"},
            "service_ids": {"type": "array", "minItems": 1, "maxItems": 100, "items": {"type": "string"}}}},
        "GatewayTokenScope": {"type": "object", "required": ["service_ids"], "properties": {
            "service_ids": {"type": "array", "minItems": 1, "maxItems": 100, "items": {"type": "string"}}}},
        "GatewayToken": {"type": "object", "properties": {"id": id, "name": {"type": "string"},
            "service_ids": {"type": "array", "items": {"type": "string"}, "description": "the services this token may serve"},
            "token": {"type": "string", "description": "only in the response that creates the token"}}},
        "Snapshot": {"type": "object", "description": "tollgate_protocol::Snapshot: plans, applications (key_sha256), metrics, mapping_rules, version"},
        "UsageReport": {"type": "object", "required": ["gateway", "sequence", "entries"], "properties": {
            "gateway": {"type": "string"}, "sequence": {"type": "integer", "minimum": 0},
            "entries": {"type": "array", "maxItems": 10000, "items": {"type": "object", "properties": {
                "application": {"type": "string"}, "metric": {"type": "string"},
                "bucket_start": {"type": "integer"}, "delta": {"type": "integer", "minimum": 1}}}}}},
        "GlobalUsage": {"type": "object", "properties": {"entries": {"type": "array", "items": {"type": "object",
            "properties": {"application": {"type": "string"}, "metric": {"type": "string"}, "period": {"type": "string"},
                           "window_start": {"type": "integer"}, "value": {"type": "integer"}}}}}},
        "UsageAck": {"type": "object", "properties": {"duplicate": {"type": "boolean"}, "accepted": {"type": "integer"},
            "ignored": {"type": "integer"}}},
        "Health": {"type": "object", "properties": {"status": {"const": "ok"}}},
        "ServiceInput": {"type": "object", "properties": {"name": {"type": "string"}}},
        "Service": {"type": "object", "properties": {"id": id, "object": {"const": "service"}, "name": {"type": "string"}}},
        "MetricInput": {"type": "object", "properties": {"name": {"type": "string"}, "unit": {"type": "string"}, "parent": {"type": "string"}}},
        "Metric": {"type": "object", "properties": {"id": id, "object": {"const": "metric"}, "name": {"type": "string"},
            "unit": {"type": "string"}, "parent": {"type": ["string", "null"]}}},
        "MappingRuleInput": {"type": "object", "required": ["method", "pattern", "metric"], "properties": {
            "method": {"type": "string"}, "pattern": {"type": "string"}, "metric": {"type": "string"},
            "delta": {"type": "integer", "minimum": 1}, "last": {"type": "boolean"}}},
        "MappingRule": {"type": "object", "properties": {"id": id, "object": {"const": "mapping_rule"}}},
        "PlanInput": {"type": "object", "properties": {"service_id": id, "name": {"type": "string"},
            "state": {"type": "string", "enum": ["hidden", "published"]}, "setup_fee": money, "fixed_fee": money,
            "trial_days": {"type": "integer", "minimum": 0}, "limits": {"type": "array", "items": limit},
            "pricing_rules": {"type": "array", "items": pricing_rule}}},
        "Plan": {"type": "object", "properties": {"id": id, "object": {"const": "plan"}, "setup_fee": money, "fixed_fee": money,
            "limits": {"type": "array", "items": limit}, "pricing_rules": {"type": "array", "items": pricing_rule}}},
        "AccountInput": {"type": "object", "properties": {"name": {"type": "string"}, "email": {"type": "string"},
            "billing_address": {"type": "object"}, "vat_rate": money, "vat_code": {"type": "string"}}},
        "Account": {"type": "object", "properties": {"id": id, "object": {"const": "account"}}},
        "ApplicationInput": {"type": "object", "properties": {"account_id": id, "plan_id": id, "name": {"type": "string"},
            "description": {"type": "string"}}},
        "Application": {"type": "object", "properties": {"id": id, "object": {"const": "application"},
            "state": {"type": "string", "enum": ["live", "suspended"]},
            "key": {"type": "string", "description": "only in the response that creates the application"}}},
        "ApplicationKey": {"type": "object", "properties": {"id": id, "prefix": {"type": "string"},
            "key": {"type": "string", "description": "only in the response that creates the key"}}},
        "RotateInput": {"type": "object", "properties": {"grace_seconds": {"type": "integer", "minimum": 0, "maximum": 2592000}}},
        "SuspendInput": {"type": "object", "properties": {"reason": {"type": "string", "enum": ["admin", "non_payment"]}}},
        "TokenInput": {"type": "object", "properties": {"name": {"type": "string"},
            "scope": {"type": "string", "enum": ["read", "write"], "description": "admin tokens only"},
            "expires_in_days": {"type": "integer", "minimum": 1, "maximum": 3650, "description": "absent: until revoked"}}},
        "AdminToken": {"type": "object", "properties": {"id": id, "scope": {"type": "string"},
            "expires_at": {"type": ["integer", "null"], "description": "Unix seconds; null: until revoked"},
            "token": {"type": "string", "description": "only in the response that creates the token"}}},
    });
    if let (Some(all), Value::Object(billing)) = (all.as_object_mut(), billing_schemas(&money, &id))
    {
        all.extend(billing);
    }
    all
}

fn billing_schemas(money: &Value, id: &Value) -> Value {
    json!({
        "BillingSettings": {"type": "object", "properties": {
            "mode": {"type": "string", "enum": ["prepaid", "postpaid"]}, "currency": {"type": "string", "pattern": "^[A-Z]{3}$"},
            "charging_enabled": {"type": "boolean"}, "numbering": {"type": "string", "enum": ["monthly", "yearly"]},
            "due_days": {"type": "integer", "minimum": 0, "maximum": 365}, "invoice_footer": {"type": "string"},
            "vat_zero_text": {"type": "string"},
            "seller": {"type": "object", "properties": {"name": {"type": "string"}, "address": {"type": "object"}, "vat_id": {"type": "string"}}},
            "retry": {"type": "object", "properties": {"attempts": {"type": "integer", "minimum": 1, "maximum": 10},
                "interval_days": {"type": "integer", "minimum": 1, "maximum": 30}}},
            "email_texts": {"type": "object", "description": "invoice_issued, charge_succeeded, charge_failed, final_failure: {subject, body}"},
            "run_hour_utc": {"type": "integer", "minimum": 0, "maximum": 23}}},
        "RunInput": {"type": "object", "properties": {"date": {"type": "string", "format": "date"}}},
        "BillingRun": {"type": "object", "properties": {"id": id, "object": {"const": "billing_run"}, "date": {"type": "string"},
            "state": {"type": "string", "enum": ["running", "succeeded", "failed", "interrupted"]},
            "accounts_done": {"type": "integer"}, "invoices_issued": {"type": "integer"}}},
        "InvoiceInput": {"type": "object", "required": ["account_id"], "properties": {"account_id": id}},
        "LineInput": {"type": "object", "required": ["description", "unit_price"], "properties": {"description": {"type": "string"},
            "quantity": {"type": "string", "default": "1"}, "unit_price": {"type": "string", "description": "decimal; negative for a discount"}}},
        "CreditNoteInput": {"type": "object", "required": ["amount"], "properties": {"amount": money, "reason": {"type": "string"}}},
        "Invoice": {"type": "object", "properties": {"id": id, "object": {"type": "string", "enum": ["invoice", "credit_note"]},
            "number": {"type": ["string", "null"]}, "state": {"type": "string"}, "currency": {"type": "string"},
            "period": {"type": "object", "properties": {"start": {"type": "string"}, "end": {"type": "string"}}},
            "lines": {"type": "array", "items": {"type": "object", "properties": {"description": {"type": "string"},
                "quantity": {"type": "string"}, "unit_price": {"type": "string"}, "amount": {"type": "string"}}}},
            "subtotal": {"type": "string"}, "tax": {"type": "string"}, "total": {"type": "string"}}},
        "Pdf": {"type": "string", "contentMediaType": "application/pdf"},
        "PaymentGatewayInput": {"type": "object", "required": ["type"], "properties": {
            "type": {"type": "string", "enum": ["stripe", "braintree"]},
            "secret_key": {"type": "string"}, "publishable_key": {"type": "string"}, "webhook_secret": {"type": "string"},
            "merchant_id": {"type": "string"}, "public_key": {"type": "string"}, "private_key": {"type": "string"},
            "environment": {"type": "string", "enum": ["sandbox", "production"]},
            "api_base": {"type": "string", "description": "the provider API's base URL (tests point it at an emulator)"},
            "js_url": {"type": "string", "description": "where browsers load Stripe.js or the Braintree web SDK (default: the provider's CDN; tests point it at an emulator)"}}},
        "PaymentGateway": {"type": "object", "properties": {"object": {"const": "payment_gateway"}, "type": {"type": ["string", "null"]},
            "warning": {"type": "string"}}},
        "PayInput": {"type": "object", "properties": {"payment_method_id": {"type": "string"}}},
        "AddPaymentMethod": {"type": "object", "required": ["payment_method_id"], "properties": {
            "payment_method_id": {"type": "string"}, "default": {"type": "boolean"}}},
        "PaymentMethod": {"type": "object", "properties": {"id": id, "brand": {"type": "string"}, "last4": {"type": "string"},
            "exp_month": {"type": "integer"}, "exp_year": {"type": "integer"}, "default": {"type": "boolean"}}},
        "PaymentMethodSetup": {"type": "object", "properties": {"provider": {"type": "string"}, "client_secret": {"type": "string"},
            "publishable_key": {"type": "string"}, "client_token": {"type": "string", "description": "Braintree"},
            "js_url": {"type": "string", "description": "where the browser loads Stripe.js or the Braintree web SDK"}}},
        "WebhookAck": {"type": "object", "properties": {"received": {"type": "boolean"}, "result": {"type": "string"}}},
        "AccountToken": {"type": "object", "properties": {"id": id, "account_id": id, "name": {"type": "string"},
            "expires_at": {"type": ["integer", "null"], "description": "Unix seconds; null: until revoked"},
            "token": {"type": "string", "description": "only in the response that creates the token"}}}
    })
}

/// The hand-written document: one route table, schemas written by hand (they do not follow the
/// real types). Served only while [`SERVE_GENERATED`] is `false`.
pub fn hand_written() -> Value {
    let mut paths = Map::new();
    for (method, path, summary, request, response, status) in ROUTES {
        let params: Vec<Value> = path
            .split('/')
            .filter_map(|seg| seg.strip_prefix('{').and_then(|s| s.strip_suffix('}')))
            .map(|name| json!({"name": name, "in": "path", "required": true, "schema": {"type": "string"}}))
            .collect();
        let mut op = json!({
            "summary": summary,
            "parameters": params,
            "responses": {
                status.to_string(): {"description": "success", "content": {"application/json": {"schema": {"$ref": format!("#/components/schemas/{response}")}}}},
                "default": {"description": "error", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}},
            },
        });
        if let Some(req) = request {
            op["requestBody"] = json!({"content": {"application/json": {"schema": {"$ref": format!("#/components/schemas/{req}")}}}});
        }
        if *method == "post" {
            if let Some(p) = op["parameters"].as_array_mut() {
                p.push(json!({"name": "Idempotency-Key", "in": "header", "required": false, "schema": {"type": "string", "maxLength": 255}}));
            }
        }
        if *method == "get" && *response == "List" {
            if let Some(p) = op["parameters"].as_array_mut() {
                p.push(json!({"name": "limit", "in": "query", "schema": {"type": "integer", "minimum": 1, "maximum": 100}}));
                p.push(
                    json!({"name": "starting_after", "in": "query", "schema": {"type": "string"}}),
                );
            }
        }
        if path.starts_with("/admin/") || path.starts_with("/gateway/") {
            op["security"] = json!([{"bearer": []}]);
        }
        let entry = paths.entry(path.to_string()).or_insert_with(|| json!({}));
        entry[*method] = op;
    }
    json!({
        "openapi": "3.1.0",
        // Tells the suite's contract check (tests/support/contract.py) to log, not fail: this
        // document was never meant to match the real answers.
        "x-tollgate-hand-written": true,
        "info": {"title": "Tollgate admin API", "version": env!("CARGO_PKG_VERSION"),
                 "description": "Money is a decimal string; ids are strings; errors are {\"error\": {type, code, message, param}}."},
        "paths": paths,
        "components": {"schemas": schemas(), "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}}},
    })
}
