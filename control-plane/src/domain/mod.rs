//! The domain: what Tollgate sells, to whom, what was used, what is owed and what was charged.
//! Functions take a pool or a transaction and return [`DomainError`]; nothing here knows about
//! HTTP. `http/`, `portal/`, `cli/` and the scheduler call into it; only `http/error.rs`
//! turns a [`DomainError`] into a status code.
//!
//! - [`catalog`]: services, metrics, mapping rules, plans, limits and pricing rules, and the
//!   catalog revision gateways poll.
//! - [`audit`]: the audit log: every admin write, recorded in the transaction of the write.
//! - [`accounts`]: developer accounts (billing address, VAT) and their applications and keys.
//! - [`gateway`]: gateway tokens as callers, and the snapshot of a service they enforce.
//! - [`metering`]: usage reports recorded exactly once, and global usage across instances.
//! - [`billing`]: contracts, rating, invoices, the billing run.
//! - [`payments`]: payment gateways (Stripe, Braintree), charging an issued invoice, webhooks.
//! - [`idempotency`]: the records behind `Idempotency-Key` (claimed, completed, replayed).
//! - [`purge`]: deleting rows nothing reads any more (expired sessions, keys, idempotency records).
//! - [`scheduler`]: the daily run, and what every run does: billing, then charging.
//! - [`overview`]: the admin dashboard's figures.
//! - [`transfer`]: the whole installation as one JSON document (`tollgate export` / `import`).
//! - [`threescale`]: `tollgate import 3scale`, a 3scale tenant read through its Account
//!   Management API and mirrored here (again and again, changing only what changed).
//! - [`webhooks`]: outbound webhooks (events written in the transaction of their change, signed
//!   deliveries with retries).

pub mod access;
pub mod accounts;
pub mod audit;
pub mod billing;
pub mod catalog;
pub mod error;
pub mod exports;
pub mod gateway;
pub mod idempotency;
pub mod metering;
pub mod overview;
pub mod page;
pub mod payments;
pub mod purge;
pub mod scheduler;
pub mod threescale;
pub mod transfer;
pub mod webhooks;

pub use error::{DomainError, DomainResult};
pub use page::{Page, PageRequest};
