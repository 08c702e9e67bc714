//! The developer portal (`/portal`), served by `tollgate serve`: sign-up, sign-in and sign-out, and
//! the account's applications (create on a published plan, key shown once). Server-rendered HTML,
//! forms that work without JavaScript, errors next to their field, CSRF tokens on every form.
//!
//! Sign-up is open: it creates an account and its first user (passwords: Argon2id, at least
//! [`session::MIN_PASSWORD_CHARS`] characters). Sessions last [`session::SESSION_TTL_SECS`].

pub mod account_pages;
pub mod admin;
pub mod html;
pub mod pages;
pub mod session;

use axum::routing::{get, post};
use axum::Router;

use crate::http::AppState;

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
        .route(
            "/payment_methods/{id}/{action}",
            post(account_pages::card_action),
        )
        .route("/invoices/{file}", get(account_pages::invoice_pdf))
}
