//! The proxy-wasm contexts: they translate host events into calls on the decision core and apply
//! its outcome through [`crate::host`]. No logic lives here that a native test could not see.

use std::cell::RefCell;
use std::rc::Rc;
use std::sync::Arc;

use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::{Action, ContextType};

use crate::catalog::Catalog;
use crate::config::Config;
use crate::global::GlobalView;
use crate::header_map::HeaderMap;
use crate::host::wasm::{self as host, ProxyWasm};
use crate::host::{Host, HostStatus, Level};
use crate::link::Link;
use crate::metering::Meter;
use crate::request::{on_request_headers, Event, RequestHost, Verdict, View};
use crate::response::Headers;
use crate::worker::{configure, Shared, Stats};

proxy_wasm::main! {{
    std::panic::set_hook(Box::new(|info| {
        // Unreachable by design (clippy denies panics); if it ever happens, say where before the
        // VM aborts.
        ProxyWasm.log(Level::Error, &format!("tollgate: panic: {info}"));
    }));
    proxy_wasm::set_root_context(|_| -> Box<dyn RootContext> { Box::new(Root::default()) });
}}

#[derive(Default)]
struct Root {
    shared: Shared,
    link: Option<Link>,
    host: ProxyWasm,
}

impl Context for Root {
    fn on_http_call_response(
        &mut self,
        token: u32,
        _num_headers: usize,
        body_size: usize,
        _num_trailers: usize,
    ) {
        if let Some(link) = &mut self.link {
            link.on_response(token, body_size, &mut self.shared, &mut self.host);
        }
    }
}

impl RootContext for Root {
    fn on_configure(&mut self, plugin_configuration_size: usize) -> bool {
        let bytes = match host::plugin_configuration(plugin_configuration_size) {
            Ok(b) => b,
            Err(e) => {
                ProxyWasm.log(
                    Level::Error,
                    &format!(
                        "tollgate: cannot read plugin configuration (status {})",
                        e.0
                    ),
                );
                return false;
            }
        };
        match configure(&mut self.host, &mut self.shared, &bytes) {
            Some(link) => {
                if link.is_some() {
                    self.link = link;
                }
                true
            }
            // Refusing the configuration makes Envoy refuse to start (or keep the last one).
            None => false,
        }
    }

    fn on_tick(&mut self) {
        if let Some(link) = &mut self.link {
            link.on_tick(&mut self.shared, &mut self.host);
        }
        if let Some(s) = &self.shared.stats {
            s.flush(&mut self.host);
        }
    }

    fn create_http_context(&self, _context_id: u32) -> Option<Box<dyn HttpContext>> {
        Some(Box::new(Request {
            config: self.shared.config.clone(),
            catalog: self.shared.catalog.clone(),
            stats: self.shared.stats.clone(),
            meter: self.shared.meter.clone(),
            global: self.shared.global.clone(),
            response_headers: Headers::new(),
        }))
    }

    fn get_type(&self) -> Option<ContextType> {
        Some(ContextType::HttpContext)
    }
}

struct Request {
    config: Option<Arc<Config>>,
    catalog: Option<Arc<Catalog>>,
    stats: Option<Rc<Stats>>,
    meter: Option<Rc<RefCell<Meter>>>,
    global: Option<Arc<GlobalView>>,
    /// Quota headers to add to the upstream's response.
    response_headers: Headers,
}

impl Context for Request {}

/// The proxy-wasm side of [`RequestHost`]: the request's header map and local replies through
/// [`host`], stats counted per worker and flushed on the tick.
struct WasmRequest<'a> {
    stats: Option<&'a Stats>,
}

impl RequestHost for WasmRequest<'_> {
    fn request_headers(&mut self) -> Result<HeaderMap, HostStatus> {
        host::request_headers()
    }

    fn request_header(&mut self, name: &str) -> Option<Vec<u8>> {
        host::request_header(name).ok().flatten()
    }

    fn set_request_header(&mut self, name: &str, value: &[u8]) -> Result<(), HostStatus> {
        host::set_request_header(name, value)
    }

    fn remove_request_header(&mut self, name: &str) -> Result<(), HostStatus> {
        host::remove_request_header(name)
    }

    fn set_request_path(&mut self, path: &str) -> Result<(), HostStatus> {
        host::set_request_path(path)
    }

    fn send_local_response(
        &mut self,
        status: u16,
        headers: &Headers,
        body: &[u8],
    ) -> Result<(), HostStatus> {
        host::send_local_response(status, headers, body)
    }

    fn now_secs(&self) -> Result<i64, HostStatus> {
        ProxyWasm.now_secs()
    }

    fn log(&self, level: Level, message: &str) {
        ProxyWasm.log(level, message);
    }

    fn count(&mut self, event: Event) {
        if let Some(s) = self.stats {
            match event {
                Event::Allowed => s.allowed.bump(),
                Event::Rejected(reason) => s.rejected(reason),
                Event::Error => s.errors.bump(),
            }
        }
    }
}

impl HttpContext for Request {
    fn on_http_request_headers(&mut self, _num_headers: usize, _end_of_stream: bool) -> Action {
        let view = View {
            config: self.config.as_deref(),
            catalog: self.catalog.as_deref(),
            global: self.global.as_deref(),
            meter: self.meter.as_deref(),
        };
        let mut req = WasmRequest {
            stats: self.stats.as_deref(),
        };
        match on_request_headers(&mut req, view, &mut ProxyWasm, &mut self.response_headers) {
            Verdict::Forward => Action::Continue,
            // After a local reply (proxy-wasm requires pausing the stream that was answered).
            Verdict::Stop => Action::Pause,
        }
    }

    fn on_http_response_headers(&mut self, _num_headers: usize, _end_of_stream: bool) -> Action {
        // Never pause here: Kong cannot resume a response paused in its headers phase.
        for (name, value) in self.response_headers.drain(..) {
            let _ = host::set_response_header(name, value.as_bytes());
        }
        Action::Continue
    }
}
