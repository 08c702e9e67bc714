//! The cheapest Rust proxy-wasm HTTP filter there is: the same SDK and build profile as the
//! Tollgate filter, a context per request, and every callback answering `Continue` at once.
//! What Envoy spends on it per request is the host's floor (entering the VM for context create,
//! request headers, response headers, done, log and delete), which no filter can go below;
//! `cargo xtask bench-filter` reports the Tollgate filter both over bare Envoy and over this.

#![cfg(target_arch = "wasm32")]

use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::ContextType;

proxy_wasm::main! {{
    proxy_wasm::set_root_context(|_| -> Box<dyn RootContext> { Box::new(Root) });
}}

struct Root;

impl Context for Root {}

impl RootContext for Root {
    fn create_http_context(&self, _context_id: u32) -> Option<Box<dyn HttpContext>> {
        Some(Box::new(Request))
    }

    fn get_type(&self) -> Option<ContextType> {
        Some(ContextType::HttpContext)
    }
}

struct Request;

impl Context for Request {}

impl HttpContext for Request {}
