//! Tollgate's native Envoy shell: the filter's decision core (`tollgate-filter`: credentials,
//! catalog, mapping, periods, counters, quota headers, metering, the control-plane link) loaded
//! into Envoy 1.39 as a dynamic module (`libtollgate_envoy.so`, a C ABI) instead of a wasm VM.
//!
//! The same plugin configuration JSON, the same control-plane protocol, the same answers; what
//! differs is the host:
//! - one configuration object per filter stanza serves every worker thread, so counters live in
//!   an in-process lock-striped map ([`store`], one per `shared_data_id`) where a
//!   read-modify-write holds its stripe: exact across workers with no compare-and-swap retry;
//! - each worker thread keeps its own slot ([`workers`]): the snapshot it enforces and the usage it
//!   metered, behind a mutex only the main thread ever contends for;
//! - the control-plane link (snapshot polls, usage reports, global usage) runs once per filter
//!   configuration (two are alive during a listener update) on the main thread, driven by Envoy's
//!   configuration scheduler (a module thread only posts the tick) and Envoy's HTTP callouts to
//!   the configured cluster: never on a request.
//!
//! `abi` is the one module with `unsafe` (the extern "C" ABI). It and `shell` (its safe glue)
//! reference symbols only the Envoy executable defines, so unit tests leave them out and test the
//! host-independent parts.

/// The ABI version string, as a literal for `concat!`.
macro_rules! abi_version {
    () => {
        "v0.1.0"
    };
}

#[cfg(not(test))]
mod abi;
pub mod panics;
#[cfg(not(test))]
mod shell;
pub mod store;
pub mod ticker;
pub mod workers;

/// The ABI version string this module reports to Envoy (see `abi`).
pub const ABI_VERSION: &str = abi_version!();
