//! The request path of both shells, host-independent: read the request, decide, answer or forward.
//!
//! The wasm shell (`glue.rs`, proxy-wasm) and the native Envoy shell (`tollgate-envoy`, Envoy's
//! dynamic-module ABI) each implement [`RequestHost`] over their host's header and local-reply
//! calls and call [`on_request_headers`]; everything a user can observe (statuses, bodies, quota
//! and upstream headers, credential stripping, fail modes, what is counted and metered) is decided
//! here once. Callers are generic over the host, so each shell's calls are monomorphized and
//! inlined as before: no vtable on the request path.

use std::borrow::Cow;
use std::cell::RefCell;

use crate::catalog::Catalog;
use crate::config::{Config, FailMode};
use crate::counters::{NoOthers, OthersUsage, SharedStore};
use crate::credentials::{extract_from, strip_query_params, Source};
use crate::decision::{decide, Decision, Reason, Rejection};
use crate::global::GlobalView;
use crate::header_map::HeaderMap;
use crate::host::{HostStatus, Level};
use crate::metering::Meter;
use crate::response::{local_reply, quota_headers, Headers};

/// What happened to a request, for the host's stats.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Event {
    Allowed,
    Rejected(Reason),
    /// A host call failed or usage could not be metered (logged as well).
    Error,
}

/// The calls the request path makes on its host, for the request being decided.
pub trait RequestHost {
    /// All request headers, pseudo-headers included where the host lists them.
    fn request_headers(&mut self) -> Result<HeaderMap, HostStatus>;
    /// One request header, for pseudo-headers a host leaves out of [`Self::request_headers`].
    fn request_header(&mut self, name: &str) -> Option<Vec<u8>>;
    /// Replaces every value of a request header (what the upstream receives).
    fn set_request_header(&mut self, name: &str, value: &[u8]) -> Result<(), HostStatus>;
    fn remove_request_header(&mut self, name: &str) -> Result<(), HostStatus>;
    /// Forwards the request to `path` (origin-form, query string included).
    fn set_request_path(&mut self, path: &str) -> Result<(), HostStatus>;
    /// Answers the request without forwarding it.
    fn send_local_response(
        &mut self,
        status: u16,
        headers: &Headers,
        body: &[u8],
    ) -> Result<(), HostStatus>;
    /// Host time in whole Unix seconds.
    fn now_secs(&self) -> Result<i64, HostStatus>;
    fn log(&self, level: Level, message: &str);
    /// Counts an event in the host's stats (where the configuration turns stats on).
    fn count(&mut self, event: Event);
}

/// What the worker currently enforces: one snapshot from the start of a request to its end.
#[derive(Clone, Copy)]
pub struct View<'a> {
    /// `None` only where the host kept running after refusing the configuration (Kong).
    pub config: Option<&'a Config>,
    /// `None` in control-plane mode before the first snapshot arrived.
    pub catalog: Option<&'a Catalog>,
    /// Usage of other gateway instances (global quotas).
    pub global: Option<&'a GlobalView>,
    /// Where admitted usage is metered (control-plane mode).
    pub meter: Option<&'a RefCell<Meter>>,
}

/// Whether the host forwards the request, or stops it (an answer was sent).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Forward,
    Stop,
}

/// Decides the request whose headers just arrived. On [`Verdict::Forward`], `response_headers`
/// holds the quota headers to add to the upstream's answer.
pub fn on_request_headers<H: RequestHost>(
    host: &mut H,
    view: View<'_>,
    store: &mut dyn SharedStore,
    response_headers: &mut Headers,
) -> Verdict {
    let Some(config) = view.config else {
        return unconfigured(host);
    };
    let Some(catalog) = view.catalog else {
        // Control-plane mode before the first snapshot arrived.
        let mode = config
            .control_plane
            .as_ref()
            .map_or(FailMode::Closed, |cp| cp.fail_mode);
        return cannot_decide(
            host,
            config,
            mode,
            "no snapshot received from the control plane yet",
        );
    };
    // One host call for all headers; a host that leaves pseudo-headers out of the map still
    // answers for them one by one.
    let headers = match host.request_headers() {
        Ok(h) => h,
        Err(e) => {
            error(
                host,
                &format!("cannot read request headers (status {})", e.0),
            );
            return cannot_decide(
                host,
                config,
                config.fail_mode,
                "request headers unavailable",
            );
        }
    };
    let path_bytes = header_or_ask(&headers, host, ":path");
    let method_bytes = header_or_ask(&headers, host, ":method");
    let (Ok(path), Ok(method)) = (
        std::str::from_utf8(&path_bytes),
        std::str::from_utf8(&method_bytes),
    ) else {
        let r = Rejection {
            reason: Reason::MalformedRequest,
            detail: "request method or path is not valid UTF-8".into(),
            quota: None,
        };
        return reply(host, &r, config, Some(catalog));
    };
    let presented = extract_from(&config.credentials, path, &headers);
    let others: &dyn OthersUsage = match view.global {
        Some(g) => g,
        None => &NoOthers,
    };
    let now = match host.now_secs() {
        Ok(t) => t,
        Err(e) => {
            error(host, &format!("clock unavailable (status {})", e.0));
            return cannot_decide(host, config, config.fail_mode, "clock unavailable");
        }
    };
    match decide(config, catalog, others, presented, method, path, now, store) {
        Decision::Reject(r) => reply(host, &r, config, Some(catalog)),
        Decision::Forward {
            app,
            plan,
            quota,
            source,
            uncounted,
            usage,
        } => {
            if let Some(e) = uncounted {
                error(
                    host,
                    &format!("forwarding uncounted (fail_mode open): {e:?}"),
                );
            }
            if let Some(meter) = view.meter {
                match meter.try_borrow_mut() {
                    Ok(mut m) => m.record(app.index, &usage, now),
                    Err(_) => error(host, "meter busy: usage of one request not metered"),
                }
            }
            let up = &config.upstream_headers;
            // Replacing (not adding) also overwrites any value a client sent to spoof them.
            for (name, value) in [(&up.application, &app.id), (&up.plan, &plan.id)] {
                if let Some(name) = name {
                    if host.set_request_header(name, value.as_bytes()).is_err() {
                        error(host, "cannot set upstream header");
                    }
                }
            }
            if config.strip_credentials {
                let stripped = match &source {
                    Source::Header(name) => host.remove_request_header(name),
                    Source::Bearer => host.remove_request_header("authorization"),
                    Source::Headers(a, b) => host
                        .remove_request_header(a)
                        .and(host.remove_request_header(b)),
                    Source::Query(names) => host.set_request_path(&strip_query_params(path, names)),
                };
                if stripped.is_err() {
                    error(host, "cannot strip credentials");
                }
            }
            if let Some(q) = &quota {
                quota_headers(q, config.quota_headers, response_headers);
            }
            host.count(Event::Allowed);
            Verdict::Forward
        }
    }
}

fn header_or_ask<'h, H: RequestHost>(
    headers: &'h HeaderMap,
    host: &mut H,
    name: &str,
) -> Cow<'h, [u8]> {
    match headers.get(name) {
        Some(v) => Cow::Borrowed(v),
        None => Cow::Owned(host.request_header(name).unwrap_or_default()),
    }
}

fn reply<H: RequestHost>(
    host: &mut H,
    rejection: &Rejection<'_>,
    config: &Config,
    catalog: Option<&Catalog>,
) -> Verdict {
    let empty;
    let catalog = match catalog {
        Some(c) => c,
        None => {
            empty = Catalog::empty();
            &empty
        }
    };
    let reply = local_reply(
        rejection,
        catalog,
        &config.credentials,
        config.quota_headers,
    );
    send(host, reply.status, &reply.headers, &reply.body);
    host.count(Event::Rejected(rejection.reason));
    Verdict::Stop
}

fn send<H: RequestHost>(host: &mut H, status: u16, headers: &Headers, body: &[u8]) {
    if let Err(e) = host.send_local_response(status, headers, body) {
        host.log(
            Level::Error,
            &format!("tollgate: local reply failed (status {})", e.0),
        );
    }
}

fn unconfigured<H: RequestHost>(host: &mut H) -> Verdict {
    let body = br#"{"type":"urn:tollgate:problem:unavailable","title":"The gateway filter is not configured","status":503,"code":"unavailable"}"#;
    send(
        host,
        503,
        &vec![("content-type", "application/problem+json".to_string())],
        body,
    );
    host.count(Event::Rejected(Reason::Unavailable));
    Verdict::Stop
}

/// The shell failed to decide (the native shell caught a panic at its hook): the configured fail
/// mode, as when the host fails the filter.
pub fn failed<H: RequestHost>(host: &mut H, config: &Config, why: &str) -> Verdict {
    error(host, why);
    cannot_decide(host, config, config.fail_mode, why)
}

/// The host failed us before a decision: apply the configured fail mode.
fn cannot_decide<H: RequestHost>(
    host: &mut H,
    config: &Config,
    mode: FailMode,
    why: &str,
) -> Verdict {
    match mode {
        FailMode::Open => Verdict::Forward,
        FailMode::Closed => reply(
            host,
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

fn error<H: RequestHost>(host: &mut H, what: &str) {
    host.log(Level::Warn, &format!("tollgate: {what}"));
    host.count(Event::Error);
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code

    use super::*;

    /// Records the local reply and the counted events; every other call fails.
    #[derive(Default)]
    struct Recorder {
        sent: Option<(u16, Headers, Vec<u8>)>,
        events: Vec<Event>,
    }

    impl RequestHost for Recorder {
        fn request_headers(&mut self) -> Result<HeaderMap, HostStatus> {
            Err(HostStatus(10))
        }
        fn request_header(&mut self, _: &str) -> Option<Vec<u8>> {
            None
        }
        fn set_request_header(&mut self, _: &str, _: &[u8]) -> Result<(), HostStatus> {
            Err(HostStatus(10))
        }
        fn remove_request_header(&mut self, _: &str) -> Result<(), HostStatus> {
            Err(HostStatus(10))
        }
        fn set_request_path(&mut self, _: &str) -> Result<(), HostStatus> {
            Err(HostStatus(10))
        }
        fn send_local_response(
            &mut self,
            status: u16,
            headers: &Headers,
            body: &[u8],
        ) -> Result<(), HostStatus> {
            self.sent = Some((status, headers.clone(), body.to_vec()));
            Ok(())
        }
        fn now_secs(&self) -> Result<i64, HostStatus> {
            Ok(0)
        }
        fn log(&self, _: Level, _: &str) {}
        fn count(&mut self, event: Event) {
            self.events.push(event);
        }
    }

    fn config(fail_mode: &str) -> Config {
        let json = format!(
            r#"{{"fail_mode": "{fail_mode}", "snapshot": {{"plans": [], "applications": [], "metrics": [{{"name": "hits"}}], "mapping_rules": []}}}}"#
        );
        Config::parse(json.as_bytes()).unwrap().0
    }

    /// What the native shell answers when a decision panicked: the configured fail mode.
    #[test]
    fn a_failed_decision_follows_the_fail_mode() {
        let mut host = Recorder::default();
        assert_eq!(failed(&mut host, &config("closed"), "panic"), Verdict::Stop);
        let (status, headers, body) = host.sent.take().expect("closed answers");
        assert_eq!(status, 503);
        assert!(headers
            .iter()
            .any(|(k, v)| *k == "content-type" && v == "application/problem+json"));
        let body: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(body["code"], "unavailable");
        assert_eq!(
            host.events,
            [Event::Error, Event::Rejected(Reason::Unavailable)]
        );

        let mut host = Recorder::default();
        assert_eq!(
            failed(&mut host, &config("open"), "panic"),
            Verdict::Forward
        );
        assert!(host.sent.is_none(), "open forwards, uncounted");
    }
}
