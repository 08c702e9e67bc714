//! Tollgate's control plane: the `tollgate` binary's library.
//!
//! - [`store`]: the database (SQLite by default, PostgreSQL by URL), migrations, ids and time.
//! - [`catalog`]: validation rules of what is sold (limits, pricing rules, mapping rules).
//! - [`http`]: the admin API (axum), one file per resource, errors converted in one place.
//! - [`cli`]: `tollgate` subcommands for people at a terminal.

pub mod billing;
pub mod catalog;
pub mod cli;
pub mod http;
pub mod money;
pub mod outbound;
pub mod payments;
pub mod portal;
pub mod purge;
pub mod rate_limit;
pub mod secrets;
pub mod settings;
pub mod store;
