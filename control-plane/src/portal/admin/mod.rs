//! The admin portal's pages, one file per page group: signing in and the session (`access`), the
//! dashboard, invoices and billing settings (`billing`), the catalog (`catalog`), accounts, tokens
//! and the payment gateway (`accounts`), webhook endpoints and deliveries (`webhooks`), usage
//! alert thresholds of plans and applications (`alerts`); `forms` holds what their forms share.

pub mod access;
pub mod accounts;
pub mod alerts;
pub mod billing;
pub mod catalog;
pub mod dashboard;
pub mod exports;
pub mod forms;
pub mod webhooks;
