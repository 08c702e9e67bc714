//! The admin API: `/admin/api/v1/...`, Bearer tokens with read/write scopes, JSON in and out.

pub mod accounts;
pub mod api_doc;
pub mod applications;
pub mod audit;
pub mod auth;
pub mod billing;
pub mod catch_panic;
pub mod developer;
pub mod exports;
pub mod gateway;
pub mod gateway_tokens;
pub mod health;
pub mod idempotency;
pub mod invoices;
pub mod list;
pub mod metrics;
pub mod openapi;
pub mod payment_gateway;
pub mod payments;
pub mod plans;
pub mod security_headers;
pub mod services;
pub mod tokens;
pub mod usage_alerts;
pub mod webhooks;

use std::time::Duration;

use axum::extract::DefaultBodyLimit;
use axum::middleware;
use axum::routing::{delete, get, post};
use axum::Router;

use crate::state::AppState;
use crate::web::error::ApiError;
use crate::web::MAX_BODY_BYTES;

/// A request taking longer than this is answered 408 and its work abandoned.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// The admin API's routes with their inner layers (snapshot bump, idempotency), without
/// authentication: [`router`] puts [`auth::layer`] around them, and the admin portal calls them
/// in-process with the signed-in admin's [`auth::Caller`] (one validation path for both).
pub fn admin_routes(state: &AppState) -> Router<AppState> {
    Router::new()
        .route("/services", post(services::create).get(services::list))
        .route(
            "/services/{id}",
            get(services::get)
                .patch(services::update)
                .delete(services::remove),
        )
        .route(
            "/services/{id}/metrics",
            post(services::create_metric).get(services::list_metrics),
        )
        .route(
            "/services/{id}/metrics/{metric_id}",
            get(services::get_metric)
                .patch(services::update_metric)
                .delete(services::remove_metric),
        )
        .route(
            "/services/{id}/mapping_rules",
            post(services::create_mapping_rule).get(services::list_mapping_rules),
        )
        .route(
            "/services/{id}/mapping_rules/{rule_id}",
            delete(services::remove_mapping_rule),
        )
        .route("/plans", post(plans::create).get(plans::list))
        .route(
            "/plans/{id}",
            get(plans::get).patch(plans::update).delete(plans::remove),
        )
        .route(
            "/plans/{id}/alert_thresholds",
            get(usage_alerts::plan_thresholds)
                .put(usage_alerts::set_plan_thresholds)
                .delete(usage_alerts::reset_plan_thresholds),
        )
        .route(
            "/applications/{id}/alert_thresholds",
            get(usage_alerts::application_thresholds)
                .put(usage_alerts::set_application_thresholds)
                .delete(usage_alerts::reset_application_thresholds),
        )
        .route("/accounts", post(accounts::create).get(accounts::list))
        .route(
            "/accounts/{id}",
            get(accounts::get)
                .patch(accounts::update)
                .delete(accounts::remove),
        )
        .route(
            "/applications",
            post(applications::create).get(applications::list),
        )
        .route(
            "/applications/{id}",
            get(applications::get)
                .patch(applications::update)
                .delete(applications::remove),
        )
        .route(
            "/applications/{id}/keys",
            post(applications::create_key).get(applications::list_keys),
        )
        .route(
            "/applications/{id}/keys/{key_id}",
            delete(applications::revoke_key),
        )
        .route(
            "/applications/{id}/app_keys",
            post(applications::create_app_key).get(applications::list_app_keys),
        )
        .route(
            "/applications/{id}/app_keys/{key_id}",
            delete(applications::delete_app_key),
        )
        .route(
            "/applications/{id}/keys/{key_id}/rotate",
            post(applications::rotate_key),
        )
        .route("/applications/{id}/suspend", post(applications::suspend))
        .route("/applications/{id}/resume", post(applications::resume))
        .route(
            "/applications/{id}/customize_plan",
            post(applications::customize_plan),
        )
        .route("/audit_events", get(audit::list))
        .route("/tokens", post(tokens::create).get(tokens::list))
        .route("/tokens/{id}", delete(tokens::remove))
        .route("/applications/{id}/usage", get(applications::usage))
        .route(
            "/gateway_tokens",
            post(gateway_tokens::create).get(gateway_tokens::list),
        )
        .route(
            "/gateway_tokens/{id}",
            get(gateway_tokens::get)
                .patch(gateway_tokens::update)
                .delete(gateway_tokens::remove),
        )
        .route(
            "/billing/settings",
            get(billing::get_settings).put(billing::put_settings),
        )
        .route(
            "/billing/runs",
            post(billing::start_run).get(billing::list_runs),
        )
        .route("/billing/runs/{id}", get(billing::get_run))
        .route(
            "/billing/gateway",
            get(payment_gateway::get).put(payment_gateway::put),
        )
        .route(
            "/accounts/{id}/tokens",
            post(developer::create_token).get(developer::list_tokens),
        )
        .route(
            "/accounts/{id}/tokens/{token_id}",
            delete(developer::revoke_token),
        )
        .route("/invoices", post(invoices::create).get(invoices::list))
        .route("/invoices/{id}", get(invoices::get))
        .route("/invoices/{id}/finalize", post(invoices::finalize))
        .route("/invoices/{id}/issue", post(invoices::issue))
        .route("/invoices/{id}/pay", post(invoices::pay))
        .route("/invoices/{id}/cancel", post(invoices::cancel))
        .route("/invoices/{id}/lines", post(invoices::add_line))
        .route(
            "/invoices/{id}/lines/{line_id}",
            delete(invoices::remove_line),
        )
        .route("/invoices/{id}/credit_notes", post(invoices::credit_note))
        .route("/invoices/{id}/charge", post(payments::admin_charge))
        .route(
            "/webhook_endpoints",
            post(webhooks::admin_create).get(webhooks::admin_list),
        )
        .route(
            "/webhook_endpoints/{id}",
            get(webhooks::admin_get)
                .patch(webhooks::admin_update)
                .delete(webhooks::admin_remove),
        )
        .route("/webhook_endpoints/{id}/test", post(webhooks::admin_test))
        .route(
            "/webhook_endpoints/{id}/rotate_secret",
            post(webhooks::admin_rotate_secret),
        )
        .route(
            "/webhook_endpoints/{id}/deliveries",
            get(webhooks::admin_deliveries),
        )
        .route(
            "/webhook_deliveries/{id}/replay",
            post(webhooks::admin_replay),
        )
        .route("/exports/invoices.csv", get(exports::invoices))
        .route("/exports/usage.csv", get(exports::usage))
        .route("/exports/accounts.csv", get(exports::accounts))
        .route("/exports/applications.csv", get(exports::applications))
        // Idempotency runs inside authentication: keys are scoped to the token that sent them.
        .layer(middleware::from_fn_with_state(
            state.clone(),
            idempotency::layer,
        ))
}

pub fn router(state: AppState) -> Router {
    let admin = admin_routes(&state)
        .layer(middleware::from_fn_with_state(state.clone(), auth::layer))
        .layer(middleware::from_fn(security_headers::no_store));
    let gateways = Router::new()
        .route("/services/{id}/snapshot", get(gateway::snapshot))
        .route("/services/{id}/usage", post(gateway::usage))
        .route("/services/{id}/global_usage", get(gateway::global_usage))
        .layer(middleware::from_fn_with_state(
            state.clone(),
            gateway::layer,
        ));
    let developers = Router::new()
        .route("/invoices", get(developer::list_invoices))
        .route("/invoices/{id}", get(developer::get_invoice))
        .route("/payments", get(developer::list_payments))
        .route("/invoices/{id}/pay", post(payments::pay))
        .route(
            "/payment_methods",
            post(payments::add_method).get(payments::list_methods),
        )
        .route("/payment_methods/setup", post(payments::setup))
        .route("/payment_methods/{id}", delete(payments::remove_method))
        .route(
            "/payment_methods/{id}/default",
            post(payments::make_default),
        )
        .route(
            "/webhook_endpoints",
            post(webhooks::dev_create).get(webhooks::dev_list),
        )
        .route(
            "/webhook_endpoints/{id}",
            get(webhooks::dev_get)
                .patch(webhooks::dev_update)
                .delete(webhooks::dev_remove),
        )
        .route("/webhook_endpoints/{id}/test", post(webhooks::dev_test))
        .route(
            "/webhook_endpoints/{id}/rotate_secret",
            post(webhooks::dev_rotate_secret),
        )
        .route(
            "/webhook_endpoints/{id}/deliveries",
            get(webhooks::dev_deliveries),
        )
        .route(
            "/webhook_deliveries/{id}/replay",
            post(webhooks::dev_replay),
        )
        .layer(middleware::from_fn_with_state(
            state.clone(),
            developer::layer,
        ))
        .layer(middleware::from_fn(security_headers::no_store));
    Router::new()
        .route("/healthz", get(health::healthz))
        .nest("/api/v1", developers)
        .nest("/portal", crate::portal::router())
        .merge(crate::portal::admin_router())
        // Unauthenticated until the signature is checked: a smaller cap than the API's.
        .route(
            "/webhooks/stripe",
            post(payments::stripe_webhook).layer(DefaultBodyLimit::max(
                crate::domain::payments::webhooks::MAX_WEBHOOK_BYTES,
            )),
        )
        .nest("/gateway/v1", gateways)
        .route("/openapi.json", get(openapi::serve))
        .route("/metrics", get(metrics::serve))
        .nest("/admin/api/v1", admin)
        .fallback(|uri: axum::http::Uri| async move { ApiError::NoRoute(uri.path().to_string()) })
        .method_not_allowed_fallback(
            |method: axum::http::Method, uri: axum::http::Uri| async move {
                ApiError::bad_request(
                    None,
                    "method_not_allowed",
                    format!("{method} is not allowed on {}", uri.path()),
                )
            },
        )
        // Portal pages (and the portals' not-found answers): CSP and the other security headers.
        .layer(middleware::from_fn_with_state(
            state.clone(),
            security_headers::layer,
        ))
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .layer(middleware::from_fn(refuse_nul_in_path))
        .layer(middleware::from_fn(timeout))
        .layer(catch_panic::layer())
        // Outermost: timeouts (408) and panics (500) are counted as what the client got.
        .layer(middleware::from_fn(metrics::track))
        .with_state(state)
}

/// A path or query with `%00` is refused (400 `invalid_path`) before any route sees it: no id,
/// name or filter holds U+0000, and PostgreSQL cannot store or even compare it (22021), so one
/// rule here makes both databases answer alike (SQLite would look it up and answer 404).
async fn refuse_nul_in_path(
    req: axum::extract::Request,
    next: middleware::Next,
) -> axum::response::Response {
    use axum::response::IntoResponse;
    let raw = req.uri().path_and_query().map_or("", |p| p.as_str());
    if raw
        .as_bytes()
        .windows(3)
        .any(|w| w.eq_ignore_ascii_case(b"%00"))
    {
        return ApiError::bad_request(
            None,
            "invalid_path",
            "the path or query may not contain %00 (the NUL character)",
        )
        .into_response();
    }
    next.run(req).await
}

/// Every request is bounded by [`REQUEST_TIMEOUT`]: past it the work is dropped (an open
/// transaction rolls back) and the answer is 408 with the error object, as every other refusal.
async fn timeout(req: axum::extract::Request, next: middleware::Next) -> axum::response::Response {
    use axum::response::IntoResponse;
    match tokio::time::timeout(REQUEST_TIMEOUT, next.run(req)).await {
        Ok(response) => response,
        Err(_) => ApiError::TimedOut.into_response(),
    }
}
