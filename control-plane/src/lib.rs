//! Tollgate's control plane: the `tollgate` binary's library.
//!
//! - [`store`]: the database (SQLite by default, PostgreSQL by URL), migrations, ids and time.
//! - [`domain`]: catalog, accounts, billing and payments; knows nothing of HTTP.
//! - [`http`]: the admin, developer and gateway JSON APIs (axum), one file per resource.
//! - [`portal`]: the developer and admin portals (server-rendered HTML over the domain).
//! - [`web`]: what `http` and `portal` share: domain errors as HTTP (the one place), the JSON
//!   body reader, the client's address. [`state`]: what every handler shares.
//! - [`server`]: `tollgate serve`, the process: start-up, background tasks, listener, shutdown.
//! - [`telemetry`]: the Prometheus metrics this process counts and reads (docs/operations.md).
//! - [`cli`]: `tollgate` subcommands for people at a terminal.

pub mod cli;
pub mod domain;
pub mod http;
pub mod money;
pub mod outbound;
pub mod portal;
pub mod rate_limit;
pub mod secrets;
pub mod server;
pub mod settings;
pub mod state;
pub mod store;
pub mod telemetry;
pub mod web;
