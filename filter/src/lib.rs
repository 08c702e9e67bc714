//! Tollgate's gateway filter.
//!
//! The decision logic is plain Rust in host-independent modules (tested natively and as wasm32);
//! the proxy-wasm glue in `glue` and the native Envoy shell (crate `tollgate-envoy`) only translate
//! host events into calls on it (the request path is [`request`], the configure step
//! [`worker::configure`]). The control-plane
//! link ([`link`]) and the worker state ([`worker`]) are written against the [`host::Host`]
//! trait, so their protocols run natively against a fake host in tests; every real call into the
//! host goes through `host::wasm`, the one module allowed to touch proxy-wasm host functions
//! (a test keeps it to the set both Envoy and Kong provide). Nothing here may panic: a panic
//! aborts the VM and with it the gateway worker's traffic (clippy denies unwrap/expect/panic).

pub mod catalog;
pub mod config;
pub mod counters;
pub mod credentials;
pub mod credit;
pub mod decision;
pub mod global;
pub mod header_map;
pub mod host;
pub mod link;
pub mod metering;
pub mod request;
pub mod response;
pub mod worker;

// The rules the control plane applies too (patterns, periods, names) live in `tollgate-rules`, so
// the control plane does not link this crate; re-exported under their old paths.
pub use tollgate_rules::{error, mapping, periods};

#[cfg(test)]
mod credit_tests;
#[cfg(test)]
mod decision_tests;

// The glue and the host imports (`host::wasm`) exist only in the module Envoy/Kong load; test
// binaries compiled to wasm32 (run under Node) exercise the same core without them.
#[cfg(all(target_arch = "wasm32", not(test)))]
mod glue;
