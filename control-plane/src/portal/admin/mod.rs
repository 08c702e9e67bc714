//! The admin portal's pages, one file per page group: signing in and the session (`access`), the
//! dashboard, invoices and billing settings (`billing`), the catalog (`catalog`), accounts, tokens
//! and the payment gateway (`accounts`), webhook endpoints and deliveries (`webhooks`); `forms` holds what their forms share and `api` the
//! in-process calls of the admin API.

pub mod access;
pub mod accounts;
pub mod billing;
pub mod catalog;
pub mod dashboard;
pub mod exports;
pub mod forms;
pub mod webhooks;
