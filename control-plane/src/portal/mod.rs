//! The developer portal (`/portal`), served by `tollgate serve`: sign-up, sign-in and sign-out, and
//! the account's applications (create on a published plan, key shown once). Server-rendered HTML,
//! forms that work without JavaScript, errors next to their field, CSRF tokens on every form.
//!
//! Sign-up is open: it creates an account and its first user (passwords: Argon2id, at least
//! [`session::MIN_PASSWORD_CHARS`] characters). Sessions last [`session::SESSION_TTL_SECS`].

pub mod admin;
pub mod assets;
pub mod developer;
pub mod html;
pub mod session;

use std::collections::HashMap;

use axum::extract::{Form, FromRequest, Request};
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;

use crate::state::AppState;

/// A posted form's fields by name.
pub type Fields = HashMap<String, String>;

/// The request's headers and its form, for the form extractors of both portals, which check the
/// session and its CSRF token from the two.
async fn read_form(req: Request, s: &AppState) -> Result<(HeaderMap, Fields), Response> {
    let headers = req.headers().clone();
    let Form(fields) = Form::<Fields>::from_request(req, s)
        .await
        .map_err(IntoResponse::into_response)?;
    // As for JSON bodies (`web::extract::parse`): PostgreSQL cannot store U+0000, and no field
    // needs it, so both databases refuse it the same way, before anything is written.
    if fields
        .iter()
        .any(|(k, v)| k.contains('\0') || v.contains('\0'))
    {
        return Err((
            axum::http::StatusCode::BAD_REQUEST,
            "form fields may not contain the NUL character",
        )
            .into_response());
    }
    Ok((headers, fields))
}

/// `disable`, `enable`, `test` or `delete` on webhook endpoint `id` as `owner`, recorded as
/// `actor`'s (both portals' endpoint buttons): what to tell on success, or `None` for an unknown
/// action.
pub(crate) async fn webhook_endpoint_action(
    s: &AppState,
    actor: &crate::domain::audit::Actor,
    owner: &crate::domain::webhooks::endpoints::Owner,
    id: &str,
    action: &str,
) -> Option<crate::domain::DomainResult<&'static str>> {
    use crate::domain::webhooks::{endpoints, outbox};
    Some(match action {
        "disable" | "enable" => endpoints::update(
            &s.pool,
            actor,
            owner,
            id,
            endpoints::WebhookEndpointUpdate {
                enabled: Some(action == "enable"),
                ..endpoints::WebhookEndpointUpdate::default()
            },
        )
        .await
        .map(|_| "Saved."),
        "test" => outbox::send_test(&s.limits, &s.pool, actor, owner, id)
            .await
            .map(|_| "A webhook.test event is on its way."),
        "delete" => endpoints::delete(&s.pool, actor, owner, id)
            .await
            .map(|_| "Deleted."),
        _ => return None,
    })
}

/// The admin portal's routes (mounted at the top level, beside `/admin/api/v1`).
pub fn admin_router() -> Router<AppState> {
    Router::new()
        .route("/admin", get(admin::dashboard::dashboard))
        .route(
            "/admin/sign_in",
            get(admin::access::sign_in_form).post(admin::access::sign_in),
        )
        .route("/admin/sign_out", post(admin::access::sign_out))
        .route(
            "/admin/billing",
            get(admin::billing::billing_settings).post(admin::billing::save_billing_settings),
        )
        .route("/admin/invoices", get(admin::billing::invoices))
        .route("/admin/exports/{file}", get(admin::exports::download))
        .route(
            "/admin/invoices/{id}/{action}",
            post(admin::billing::invoice_action),
        )
        .route(
            "/admin/invoices/{id}/credit_note",
            post(admin::accounts::credit_note),
        )
        .route(
            "/admin/services",
            get(admin::catalog::services).post(admin::catalog::create_service),
        )
        .route("/admin/services/{id}", get(admin::catalog::service))
        .route(
            "/admin/services/{id}/metrics",
            post(admin::catalog::create_metric),
        )
        .route(
            "/admin/services/{id}/mapping_rules",
            post(admin::catalog::create_rule),
        )
        .route(
            "/admin/services/{id}/mapping_rules/{rule_id}/delete",
            post(admin::catalog::delete_rule),
        )
        .route(
            "/admin/plans",
            get(admin::catalog::plans).post(admin::catalog::create_plan),
        )
        .route(
            "/admin/plans/{id}",
            get(admin::catalog::plan).post(admin::catalog::update_plan),
        )
        .route("/admin/plans/{id}/limits", post(admin::catalog::add_limit))
        .route(
            "/admin/plans/{id}/pricing_rules",
            post(admin::catalog::add_pricing_rule),
        )
        .route(
            "/admin/plans/{id}/{kind}/{index}/remove",
            post(admin::catalog::remove_row),
        )
        .route(
            "/admin/plans/{id}/alert_thresholds",
            post(admin::alerts::save_plan),
        )
        .route(
            "/admin/plans/{id}/alert_thresholds/reset",
            post(admin::alerts::reset_plan),
        )
        .route(
            "/admin/accounts",
            get(admin::accounts::accounts).post(admin::accounts::create_account),
        )
        .route("/admin/accounts/{id}", get(admin::accounts::account))
        .route(
            "/admin/accounts/{id}/applications",
            post(admin::accounts::create_application),
        )
        .route(
            "/admin/applications/{id}/{action}",
            post(admin::accounts::application_action),
        )
        .route(
            "/admin/applications/{id}/alert_thresholds",
            get(admin::alerts::application).post(admin::alerts::save_application),
        )
        .route(
            "/admin/applications/{id}/alert_thresholds/reset",
            post(admin::alerts::reset_application),
        )
        .route(
            "/admin/tokens",
            get(admin::accounts::tokens).post(admin::accounts::create_token),
        )
        .route(
            "/admin/tokens/{id}/revoke",
            post(admin::accounts::revoke_token),
        )
        .route(
            "/admin/gateway",
            get(admin::accounts::gateway).post(admin::accounts::save_gateway),
        )
        .route(
            "/admin/webhooks",
            get(admin::webhooks::webhooks).post(admin::webhooks::create),
        )
        .route("/admin/webhooks/{id}", get(admin::webhooks::endpoint))
        .route(
            "/admin/webhooks/{id}/{action}",
            post(admin::webhooks::action),
        )
        .route(
            "/admin/webhook_deliveries/{id}/replay",
            post(admin::webhooks::replay),
        )
}

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/", get(developer::access::home))
        .route(
            "/sign_up",
            get(developer::access::sign_up_form).post(developer::access::sign_up),
        )
        .route(
            "/sign_in",
            get(developer::access::sign_in_form).post(developer::access::sign_in),
        )
        .route("/sign_out", post(developer::access::sign_out))
        .route(
            "/applications",
            get(developer::applications::applications)
                .post(developer::applications::create_application),
        )
        .route(
            "/applications/{id}",
            get(developer::applications::application),
        )
        .route(
            "/applications/{id}/keys/{key_id}/rotate",
            post(developer::applications::rotate_key),
        )
        .route("/billing", get(developer::billing::billing))
        .route("/invoices/{id}/pay", post(developer::billing::pay_invoice))
        .route("/invoices/{id}/confirm", post(developer::cards::confirmed))
        .route("/payment_methods", post(developer::cards::save_card))
        .route(
            "/payment_methods/new",
            get(developer::cards::new_card).post(developer::cards::start_card),
        )
        .route(
            "/payment_methods/{id}/{action}",
            post(developer::billing::card_action),
        )
        .route("/invoices/{file}", get(developer::billing::invoice_pdf))
        .route(
            "/webhooks",
            get(developer::webhooks::webhooks).post(developer::webhooks::create),
        )
        .route("/webhooks/{id}", get(developer::webhooks::endpoint))
        .route("/webhooks/{id}/{action}", post(developer::webhooks::action))
        .route(
            "/webhook_deliveries/{id}/replay",
            post(developer::webhooks::replay),
        )
        .route("/assets/{file}", get(assets::serve))
}
