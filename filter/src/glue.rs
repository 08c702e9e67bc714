//! The proxy-wasm contexts: they translate host events into calls on the decision core and apply
//! its outcome through [`crate::host`]. No logic lives here that a native test could not see.

use std::borrow::Cow;
use std::cell::RefCell;
use std::rc::Rc;

use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::{Action, ContextType};

use crate::catalog::Catalog;
use crate::config::{Config, FailMode};
use crate::counters::{NoOthers, OthersUsage};
use crate::credentials::{extract_from, strip_query_params, Source};
use crate::decision::{decide, Decision, Reason, Rejection};
use crate::global::GlobalView;
use crate::host::wasm::{self as host, ProxyWasm};
use crate::host::{Host, Level};
use crate::link::Link;
use crate::metering::Meter;
use crate::response::{local_reply, quota_headers, Headers};
use crate::worker::{prepare_records, Shared, Stats};

proxy_wasm::main! {{
    std::panic::set_hook(Box::new(|info| {
        // Unreachable by design (clippy denies panics); if it ever happens, say where before the
        // VM aborts.
        ProxyWasm.log(Level::Error, &format!("tollgate: panic: {info}"));
    }));
    proxy_wasm::set_root_context(|_| -> Box<dyn RootContext> { Box::new(Root::default()) });
}}

/// How often each worker adds its locally counted stats to the host's counters. Counting locally
/// saves a host call (~0.6 us under V8) per request; stats lag by at most this interval.
const STATS_FLUSH_INTERVAL_MS: u32 = 1_000;

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
        let (config, catalog) = match Config::parse(&bytes) {
            Ok(c) => c,
            Err(e) => {
                // Refusing the configuration makes Envoy refuse to start (or keep the last one).
                ProxyWasm.log(Level::Error, &format!("tollgate: {e}"));
                return false;
            }
        };
        if let Some(catalog) = &catalog {
            if !prepare_records(&mut self.host, &catalog.apps) {
                return false;
            }
            ProxyWasm.log(
                Level::Info,
                &format!(
                    "tollgate: configured with {} applications, {} plans, {} mapping rules",
                    catalog.apps.len(),
                    catalog.plans.len(),
                    catalog.rules.len()
                ),
            );
        }
        // Stats are defined once per VM, and only where the configuration asks for them.
        if self.shared.stats.is_none() {
            self.shared.stats = config
                .stats
                .then(|| Stats::define(&mut self.host))
                .map(Rc::new);
        }
        let mut tick_ms = self.shared.stats.as_ref().map(|_| STATS_FLUSH_INTERVAL_MS);
        if let Some(cp) = &config.control_plane {
            let link = Link::new(cp.clone(), &mut self.host);
            ProxyWasm.log(
                Level::Info,
                &format!(
                    "tollgate: control-plane mode, service {}, gateway {}",
                    cp.service_id,
                    link.gateway()
                ),
            );
            tick_ms = Some(tick_ms.unwrap_or(u32::MAX).min(link.tick_ms()));
            let mut meter = Meter::new(link.gateway().to_string());
            meter.instance = Some(link.instance().to_string());
            self.shared.meter = Some(Rc::new(RefCell::new(meter)));
            link.register(&mut self.host);
            self.link = Some(link);
        }
        if let Some(ms) = tick_ms {
            if let Err(e) = self.host.set_tick_period_ms(ms) {
                ProxyWasm.log(
                    Level::Warn,
                    &format!(
                        "tollgate: no tick (status {}): stats and the control-plane link stop",
                        e.0
                    ),
                );
            }
        }
        if let Some(summary) = catalog.as_ref().and_then(Catalog::skipped_summary) {
            ProxyWasm.log(Level::Warn, &format!("tollgate: snapshot: {summary}"));
            if let (Some(s), Some(c)) = (&self.shared.stats, &catalog) {
                s.snapshot_skipped_applications.add(c.skipped_apps as u64);
            }
        }
        self.shared.catalog = catalog.map(Rc::new);
        self.shared.config = Some(Rc::new(config));
        true
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
    config: Option<Rc<Config>>,
    catalog: Option<Rc<Catalog>>,
    stats: Option<Rc<Stats>>,
    meter: Option<Rc<RefCell<Meter>>>,
    global: Option<Rc<GlobalView>>,
    /// Quota headers to add to the upstream's response.
    response_headers: Headers,
}

impl Context for Request {}

impl Request {
    fn reply(
        &self,
        rejection: &Rejection<'_>,
        config: &Config,
        catalog: Option<&Catalog>,
    ) -> Action {
        let empty;
        let catalog = match catalog {
            Some(c) => c,
            None => {
                empty = Catalog::empty();
                &empty
            }
        };
        let reply = local_reply(rejection, catalog, &config.credentials);
        self.send(reply.status, &reply.headers, &reply.body);
        if let Some(s) = &self.stats {
            s.rejected(rejection.reason);
        }
        Action::Pause
    }

    fn send(&self, status: u16, headers: &Headers, body: &[u8]) {
        if let Err(e) = host::send_local_response(status, headers, body) {
            ProxyWasm.log(
                Level::Error,
                &format!("tollgate: local reply failed (status {})", e.0),
            );
        }
    }

    fn unconfigured(&self) -> Action {
        // Only reachable where the host kept running after refusing the configuration (Kong).
        let body = br#"{"type":"urn:tollgate:problem:unavailable","title":"The gateway filter is not configured","status":503,"code":"unavailable"}"#;
        self.send(
            503,
            &vec![("content-type", "application/problem+json".to_string())],
            body,
        );
        if let Some(s) = &self.stats {
            s.rejected(Reason::Unavailable);
        }
        Action::Pause
    }

    /// The host failed us before a decision: apply the configured fail mode.
    fn cannot_decide(&self, config: &Config, mode: FailMode, why: &str) -> Action {
        match mode {
            FailMode::Open => Action::Continue,
            FailMode::Closed => self.reply(
                &Rejection {
                    reason: Reason::Unavailable,
                    detail: why.into(),
                    quota: None,
                },
                config,
                None,
            ),
        }
    }

    fn error(&self, what: &str) {
        ProxyWasm.log(Level::Warn, &format!("tollgate: {what}"));
        if let Some(s) = &self.stats {
            s.errors.bump();
        }
    }
}

impl HttpContext for Request {
    fn on_http_request_headers(&mut self, _num_headers: usize, _end_of_stream: bool) -> Action {
        let Some(config) = self.config.clone() else {
            return self.unconfigured();
        };
        let Some(catalog) = self.catalog.clone() else {
            // Control-plane mode before the first snapshot arrived.
            let mode = config
                .control_plane
                .as_ref()
                .map_or(FailMode::Closed, |cp| cp.fail_mode);
            return self.cannot_decide(
                &config,
                mode,
                "no snapshot received from the control plane yet",
            );
        };
        // One host call for all headers; a host that leaves pseudo-headers out of the map still
        // answers for them one by one.
        let headers = match host::request_headers() {
            Ok(h) => h,
            Err(e) => {
                self.error(&format!("cannot read request headers (status {})", e.0));
                return self.cannot_decide(
                    &config,
                    config.fail_mode,
                    "request headers unavailable",
                );
            }
        };
        let pseudo = |name: &str| -> Cow<'_, [u8]> {
            match headers.get(name) {
                Some(v) => Cow::Borrowed(v),
                None => Cow::Owned(
                    host::request_header(name)
                        .ok()
                        .flatten()
                        .unwrap_or_default(),
                ),
            }
        };
        let path_bytes = pseudo(":path");
        let method_bytes = pseudo(":method");
        let (Ok(path), Ok(method)) = (
            std::str::from_utf8(&path_bytes),
            std::str::from_utf8(&method_bytes),
        ) else {
            let r = Rejection {
                reason: Reason::MalformedRequest,
                detail: "request method or path is not valid UTF-8".into(),
                quota: None,
            };
            return self.reply(&r, &config, Some(&catalog));
        };
        let presented = extract_from(&config.credentials, path, &headers);
        let others: &dyn OthersUsage = match &self.global {
            Some(g) => g.as_ref(),
            None => &NoOthers,
        };
        let now = match ProxyWasm.now_secs() {
            Ok(t) => t,
            Err(e) => {
                self.error(&format!("clock unavailable (status {})", e.0));
                return self.cannot_decide(&config, config.fail_mode, "clock unavailable");
            }
        };
        match decide(
            &config,
            &catalog,
            others,
            presented,
            method,
            path,
            now,
            &mut ProxyWasm,
        ) {
            Decision::Reject(r) => self.reply(&r, &config, Some(&catalog)),
            Decision::Forward {
                app,
                plan,
                quota,
                source,
                uncounted,
                usage,
            } => {
                if let Some(e) = uncounted {
                    self.error(&format!("forwarding uncounted (fail_mode open): {e:?}"));
                }
                if let Some(meter) = &self.meter {
                    match meter.try_borrow_mut() {
                        Ok(mut m) => m.record(app.index, &usage, now),
                        Err(_) => self.error("meter busy: usage of one request not metered"),
                    }
                }
                let up = &config.upstream_headers;
                // Replacing (not adding) also overwrites any value a client sent to spoof them.
                for (name, value) in [(&up.application, &app.id), (&up.plan, &plan.id)] {
                    if let Some(name) = name {
                        if host::set_request_header(name, value.as_bytes()).is_err() {
                            self.error("cannot set upstream header");
                        }
                    }
                }
                if config.strip_credentials {
                    let stripped = match &source {
                        Source::Header(name) => host::remove_request_header(name),
                        Source::Bearer => host::remove_request_header("authorization"),
                        Source::Headers(a, b) => {
                            host::remove_request_header(a).and(host::remove_request_header(b))
                        }
                        Source::Query(names) => {
                            host::set_request_path(&strip_query_params(path, names))
                        }
                    };
                    if stripped.is_err() {
                        self.error("cannot strip credentials");
                    }
                }
                if let Some(q) = &quota {
                    quota_headers(q, &mut self.response_headers);
                }
                if let Some(s) = &self.stats {
                    s.allowed.bump();
                }
                Action::Continue
            }
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
