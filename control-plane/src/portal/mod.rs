//! The developer portal (`/portal`), served by `tollgate serve`: sign-up, sign-in and sign-out, and
//! the account's applications (create on a published plan, key shown once). Server-rendered HTML,
//! forms that work without JavaScript, errors next to their field, CSRF tokens on every form.
//!
//! Sign-up is open: it creates an account and its first user (passwords: Argon2id, at least
//! [`session::MIN_PASSWORD_CHARS`] characters). Sessions last [`session::SESSION_TTL_SECS`].

pub mod account_pages;
pub mod admin;
pub mod admin_accounts;
pub mod admin_api;
pub mod admin_catalog;
pub mod admin_forms;
pub mod card_pages;
pub mod html;
pub mod pages;
pub mod session;

use std::collections::HashMap;

use axum::extract::{Form, FromRequest, Request};
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;

use crate::http::AppState;

/// A posted form's fields by name.
pub type Fields = HashMap<String, String>;

/// The request's headers and its form, for the form extractors of both portals, which check the
/// session and its CSRF token from the two.
async fn read_form(req: Request, s: &AppState) -> Result<(HeaderMap, Fields), Response> {
    let headers = req.headers().clone();
    let Form(fields) = Form::<Fields>::from_request(req, s)
        .await
        .map_err(IntoResponse::into_response)?;
    Ok((headers, fields))
}

/// The admin portal's routes (mounted at the top level, beside `/admin/api/v1`).
pub fn admin_router() -> Router<AppState> {
    Router::new()
        .route("/admin", get(admin::dashboard))
        .route(
            "/admin/sign_in",
            get(admin::sign_in_form).post(admin::sign_in),
        )
        .route("/admin/sign_out", post(admin::sign_out))
        .route(
            "/admin/billing",
            get(admin::billing_settings).post(admin::save_billing_settings),
        )
        .route("/admin/invoices", get(admin::invoices))
        .route("/admin/invoices/{id}/{action}", post(admin::invoice_action))
        .route(
            "/admin/invoices/{id}/credit_note",
            post(admin_accounts::credit_note),
        )
        .route(
            "/admin/services",
            get(admin_catalog::services).post(admin_catalog::create_service),
        )
        .route("/admin/services/{id}", get(admin_catalog::service))
        .route(
            "/admin/services/{id}/metrics",
            post(admin_catalog::create_metric),
        )
        .route(
            "/admin/services/{id}/mapping_rules",
            post(admin_catalog::create_rule),
        )
        .route(
            "/admin/services/{id}/mapping_rules/{rule_id}/delete",
            post(admin_catalog::delete_rule),
        )
        .route(
            "/admin/plans",
            get(admin_catalog::plans).post(admin_catalog::create_plan),
        )
        .route(
            "/admin/plans/{id}",
            get(admin_catalog::plan).post(admin_catalog::update_plan),
        )
        .route("/admin/plans/{id}/limits", post(admin_catalog::add_limit))
        .route(
            "/admin/plans/{id}/pricing_rules",
            post(admin_catalog::add_pricing_rule),
        )
        .route(
            "/admin/plans/{id}/{kind}/{index}/remove",
            post(admin_catalog::remove_row),
        )
        .route(
            "/admin/accounts",
            get(admin_accounts::accounts).post(admin_accounts::create_account),
        )
        .route("/admin/accounts/{id}", get(admin_accounts::account))
        .route(
            "/admin/accounts/{id}/applications",
            post(admin_accounts::create_application),
        )
        .route(
            "/admin/applications/{id}/{action}",
            post(admin_accounts::application_action),
        )
        .route(
            "/admin/tokens",
            get(admin_accounts::tokens).post(admin_accounts::create_token),
        )
        .route(
            "/admin/tokens/{id}/revoke",
            post(admin_accounts::revoke_token),
        )
        .route(
            "/admin/gateway",
            get(admin_accounts::gateway).post(admin_accounts::save_gateway),
        )
}

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/", get(pages::home))
        .route("/sign_up", get(pages::sign_up_form).post(pages::sign_up))
        .route("/sign_in", get(pages::sign_in_form).post(pages::sign_in))
        .route("/sign_out", post(pages::sign_out))
        .route(
            "/applications",
            get(pages::applications).post(pages::create_application),
        )
        .route("/applications/{id}", get(account_pages::application))
        .route(
            "/applications/{id}/keys/{key_id}/rotate",
            post(account_pages::rotate_key),
        )
        .route("/billing", get(account_pages::billing))
        .route("/invoices/{id}/pay", post(account_pages::pay_invoice))
        .route("/invoices/{id}/confirm", post(card_pages::confirmed))
        .route("/payment_methods", post(card_pages::save_card))
        .route(
            "/payment_methods/new",
            get(card_pages::new_card).post(card_pages::start_card),
        )
        .route(
            "/payment_methods/{id}/{action}",
            post(account_pages::card_action),
        )
        .route("/invoices/{file}", get(account_pages::invoice_pdf))
}
