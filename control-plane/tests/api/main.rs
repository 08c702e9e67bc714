//! The HTTP layer's contract, in-process: the admin API, the developer API and the gateway API
//! answered by `http::router` over an in-memory SQLite database, called with
//! `tower::ServiceExt::oneshot`. `cargo test -p tollgate-control-plane` catches an API regression in
//! seconds, without Envoy, PostgreSQL or a browser; the pytest suite (`tests/`) still runs the
//! same contract through real processes on both databases.
//!
//! Every test builds its own control plane ([`support::TestApp`]), so tests run in parallel and
//! share nothing.

// A test crate: a failed unwrap or assertion is a failed test, which is what we want.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod access;
mod admin;
mod audit;
mod catalog;
mod contract;
mod developer;
mod errors;
mod gateway;
mod idempotency;
mod imported_keys;
mod keys;
mod metrics;
mod support;
mod transfer;
mod webhooks;
