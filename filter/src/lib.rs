//! Tollgate's gateway filter.
//!
//! The decision logic is plain Rust in host-independent modules (tested natively and as wasm32);
//! the proxy-wasm glue in [`glue`] only translates host events into calls on it, and every call
//! into the host goes through [`host`], the one module allowed to touch proxy-wasm host functions
//! (a test keeps it to the set both Envoy and Kong provide). Nothing here may panic: a panic
//! aborts the VM and with it the gateway worker's traffic (clippy denies unwrap/expect/panic).

pub mod catalog;
pub mod config;
pub mod counters;
pub mod credentials;
pub mod decision;
pub mod error;
pub mod global;
pub mod header_map;
pub mod mapping;
pub mod metering;
pub mod periods;
pub mod response;

#[cfg(test)]
mod decision_tests;

// The glue and host imports exist only in the module Envoy/Kong load; test binaries compiled to
// wasm32 (run under Node) exercise the same core without them.
#[cfg(all(target_arch = "wasm32", not(test)))]
mod glue;
#[cfg(all(target_arch = "wasm32", not(test)))]
mod host;
#[cfg(all(target_arch = "wasm32", not(test)))]
mod link;
