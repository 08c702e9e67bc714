//! What the filter asks of its host outside a request: time, logging, the tick, HTTP calls to
//! the control plane and their answers, shared data, metrics.
//!
//! [`Host`] is the seam the control-plane link ([`crate::link`]) and the worker state
//! ([`crate::worker`]) are written against, so their protocols (snapshot install, journals,
//! adoption) run natively in tests against [`fake::FakeHost`], several workers sharing one fake
//! shared-data map, as Kuadrant's wasm-shim does with its mocked host.
//!
//! Cost: callers are generic over `H: Host` and the one real host, [`wasm::ProxyWasm`], is a
//! zero-sized type, so every call is monomorphized and inlined into the same import call as
//! before; there is no vtable on any path. The request path keeps calling [`wasm`]'s header
//! functions directly (they exist only in the proxy-wasm module).
//!
//! `unsafe` lives in [`wasm`] alone: the only module allowed to reach proxy-wasm host functions
//! (`tests/kong_host_calls.rs` holds the source to that, and to the set Kong implements).

use crate::counters::SharedStore;

#[cfg(test)]
pub mod fake;
#[cfg(all(target_arch = "wasm32", not(test)))]
pub mod wasm;

/// A non-OK status from the host.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HostStatus(pub u32);

/// Log levels, numbered as proxy-wasm numbers them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Level {
    Info = 2,
    Warn = 3,
    Error = 4,
}

/// The host services of one worker VM. Shared data ([`SharedStore`]) is one map per VM id,
/// shared by every worker of the gateway process.
pub trait Host: SharedStore {
    /// Host time in Unix nanoseconds.
    fn now_nanos(&self) -> Result<u64, HostStatus>;

    /// Host time in Unix milliseconds.
    fn now_ms(&self) -> Result<u64, HostStatus> {
        self.now_nanos().map(|n| n / 1_000_000)
    }

    /// Host time in whole Unix seconds.
    fn now_secs(&self) -> Result<i64, HostStatus> {
        self.now_nanos().map(|n| (n / 1_000_000_000) as i64)
    }

    /// Nothing useful can be done if logging itself fails, so it cannot.
    fn log(&self, level: Level, message: &str);

    fn set_tick_period_ms(&mut self, period_ms: u32) -> Result<(), HostStatus>;

    /// Starts an HTTP call to `upstream` (an Envoy cluster name, or `host:port` in Kong); the
    /// answer arrives in `on_http_call_response` with the returned token.
    fn http_call(
        &mut self,
        upstream: &str,
        headers: &[(&str, String)],
        body: &[u8],
        timeout_ms: u32,
    ) -> Result<u32, HostStatus>;

    /// The `:status` of the HTTP call being answered; `None` when it failed (reset, timeout).
    fn call_response_status(&self) -> Option<u16>;

    /// A header of the HTTP call being answered.
    fn call_response_header(&self, name: &str) -> Option<Vec<u8>>;

    /// `max_len` bytes of the HTTP call's answer from `start` (fewer at the end, or wherever the
    /// host chooses to cut a piece).
    fn call_response_body_range(&self, start: usize, max_len: usize) -> Vec<u8>;

    /// The first `size` bytes of the HTTP call's answer.
    fn call_response_body(&self, size: usize) -> Vec<u8> {
        self.call_response_body_range(0, size)
    }

    /// A counter; `None` where the host refused to define it (stats are best effort).
    fn define_counter(&mut self, name: &str) -> Option<u32>;

    /// Adds to a counter `define_counter` returned; nothing for `None`.
    fn increment(&mut self, counter: Option<u32>, delta: u64);
}
