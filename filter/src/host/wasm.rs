//! Every call from the filter into the proxy-wasm host, and nothing else: [`ProxyWasm`], the
//! [`Host`] of the module Envoy and Kong load, and the request path's header and reply calls.
//!
//! Why our own imports instead of `proxy_wasm::hostcalls`: the SDK's wrappers `panic!` on any
//! status they did not expect (and `get_map_value` unwraps non-UTF-8 header values), and a panic
//! aborts the VM. Here every status is an `Err`, header values are bytes, and the host's status
//! comes back as a plain `u32` so an unknown value can never be an invalid enum.
//!
//! Kong (ngx_wasm_module, Kong 3.4–3.9) links every import but traps when some are *called*:
//! gRPC calls, shared queues, `proxy_get_log_level`, pausing in response headers. The import list
//! below is the complete set the filter calls; `tests/kong_host_calls.rs` fails if one Kong lacks
//! appears here, if any module but this one reaches the host, or if the metric calls (missing
//! from Kong builds without metrics support) can run while `stats` is off.

// The workspace denies unsafe code; calling the host's imported functions needs it, here only.
#![allow(unsafe_code)]

use std::ptr::{null, null_mut};

use super::{Host, HostStatus, Level};
use crate::counters::{SharedStore, StoreError};
use crate::header_map::HeaderMap;

const OK: u32 = 0;
const NOT_FOUND: u32 = 1;
const CAS_MISMATCH: u32 = 8;

const MAP_REQUEST_HEADERS: u32 = 0;
const MAP_RESPONSE_HEADERS: u32 = 2;
const MAP_HTTP_CALL_RESPONSE_HEADERS: u32 = 6;
const BUFFER_HTTP_CALL_RESPONSE_BODY: u32 = 4;
const BUFFER_PLUGIN_CONFIGURATION: u32 = 7;
const METRIC_COUNTER: u32 = 0;

#[link(wasm_import_module = "env")]
extern "C" {
    fn proxy_log(level: u32, message_data: *const u8, message_size: usize) -> u32;
    fn proxy_get_current_time_nanoseconds(return_time: *mut u64) -> u32;
    fn proxy_get_buffer_bytes(
        buffer_type: u32,
        start: usize,
        max_size: usize,
        return_buffer_data: *mut *mut u8,
        return_buffer_size: *mut usize,
    ) -> u32;
    fn proxy_set_tick_period_milliseconds(period: u32) -> u32;
    fn proxy_get_header_map_pairs(
        map_type: u32,
        return_map_data: *mut *mut u8,
        return_map_size: *mut usize,
    ) -> u32;
    fn proxy_get_header_map_value(
        map_type: u32,
        key_data: *const u8,
        key_size: usize,
        return_value_data: *mut *mut u8,
        return_value_size: *mut usize,
    ) -> u32;
    fn proxy_replace_header_map_value(
        map_type: u32,
        key_data: *const u8,
        key_size: usize,
        value_data: *const u8,
        value_size: usize,
    ) -> u32;
    fn proxy_remove_header_map_value(map_type: u32, key_data: *const u8, key_size: usize) -> u32;
    fn proxy_send_local_response(
        status_code: u32,
        status_code_details_data: *const u8,
        status_code_details_size: usize,
        body_data: *const u8,
        body_size: usize,
        headers_data: *const u8,
        headers_size: usize,
        grpc_status: i32,
    ) -> u32;
    fn proxy_get_shared_data(
        key_data: *const u8,
        key_size: usize,
        return_value_data: *mut *mut u8,
        return_value_size: *mut usize,
        return_cas: *mut u32,
    ) -> u32;
    fn proxy_set_shared_data(
        key_data: *const u8,
        key_size: usize,
        value_data: *const u8,
        value_size: usize,
        cas: u32,
    ) -> u32;
    fn proxy_get_property(
        path_data: *const u8,
        path_size: usize,
        return_value_data: *mut *mut u8,
        return_value_size: *mut usize,
    ) -> u32;
    fn proxy_set_property(
        path_data: *const u8,
        path_size: usize,
        value_data: *const u8,
        value_size: usize,
    ) -> u32;
    fn proxy_define_metric(
        metric_type: u32,
        name_data: *const u8,
        name_size: usize,
        return_id: *mut u32,
    ) -> u32;
    fn proxy_increment_metric(metric_id: u32, offset: i64) -> u32;
}

fn status(s: u32) -> Result<(), HostStatus> {
    if s == OK {
        Ok(())
    } else {
        Err(HostStatus(s))
    }
}

/// Takes ownership of a buffer the host allocated through `proxy_on_memory_allocate`.
///
/// # Safety
/// `data` must be null or a `size`-byte allocation made by this module's allocator.
unsafe fn take(data: *mut u8, size: usize) -> Vec<u8> {
    if data.is_null() {
        Vec::new()
    } else {
        Vec::from_raw_parts(data, size, size)
    }
}

/// The proxy-wasm host (Envoy, Kong). Zero-sized: every call compiles to the import call.
#[derive(Clone, Copy, Debug, Default)]
pub struct ProxyWasm;

impl Host for ProxyWasm {
    fn now_nanos(&self) -> Result<u64, HostStatus> {
        let mut nanos: u64 = 0;
        status(unsafe { proxy_get_current_time_nanoseconds(&mut nanos) })?;
        Ok(nanos)
    }

    fn log(&self, level: Level, message: &str) {
        // Nothing useful can be done if logging itself fails.
        let _ = unsafe { proxy_log(level as u32, message.as_ptr(), message.len()) };
    }

    fn set_tick_period_ms(&mut self, period_ms: u32) -> Result<(), HostStatus> {
        status(unsafe { proxy_set_tick_period_milliseconds(period_ms) })
    }

    /// The one SDK host call used: the SDK's dispatcher must register the token to route the
    /// answer (its registry is private), and it panics on an unknown token. Its wrapper turns
    /// Envoy's and Kong's failure statuses (BadArgument for an unknown cluster,
    /// InternalFailure) into errors.
    fn http_call(
        &mut self,
        upstream: &str,
        headers: &[(&str, String)],
        body: &[u8],
        timeout_ms: u32,
    ) -> Result<u32, HostStatus> {
        let headers: Vec<(&str, &str)> = headers.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let body = (!body.is_empty()).then_some(body);
        proxy_wasm::hostcalls::dispatch_http_call(
            upstream,
            headers,
            body,
            Vec::new(),
            std::time::Duration::from_millis(u64::from(timeout_ms)),
        )
        .map_err(|s| HostStatus(s as u32))
    }

    fn call_response_status(&self) -> Option<u16> {
        let v = get_header(MAP_HTTP_CALL_RESPONSE_HEADERS, ":status")
            .ok()
            .flatten()?;
        std::str::from_utf8(&v).ok()?.parse().ok()
    }

    fn call_response_header(&self, name: &str) -> Option<Vec<u8>> {
        get_header(MAP_HTTP_CALL_RESPONSE_HEADERS, name)
            .ok()
            .flatten()
    }

    fn call_response_body_range(&self, start: usize, max_len: usize) -> Vec<u8> {
        let mut data = null_mut();
        let mut len = 0;
        match unsafe {
            proxy_get_buffer_bytes(
                BUFFER_HTTP_CALL_RESPONSE_BODY,
                start,
                max_len,
                &mut data,
                &mut len,
            )
        } {
            OK => unsafe { take(data, len) },
            _ => Vec::new(),
        }
    }

    fn define_counter(&mut self, name: &str) -> Option<u32> {
        let mut id = 0;
        (unsafe { proxy_define_metric(METRIC_COUNTER, name.as_ptr(), name.len(), &mut id) } == OK)
            .then_some(id)
    }

    fn increment(&mut self, counter: Option<u32>, delta: u64) {
        if let Some(id) = counter {
            let _ = unsafe { proxy_increment_metric(id, i64::try_from(delta).unwrap_or(i64::MAX)) };
        }
    }
}

pub fn plugin_configuration(size: usize) -> Result<Vec<u8>, HostStatus> {
    let mut data = null_mut();
    let mut len = 0;
    match unsafe {
        proxy_get_buffer_bytes(BUFFER_PLUGIN_CONFIGURATION, 0, size, &mut data, &mut len)
    } {
        OK => Ok(unsafe { take(data, len) }),
        NOT_FOUND => Ok(Vec::new()),
        s => Err(HostStatus(s)),
    }
}

fn get_header(map: u32, name: &str) -> Result<Option<Vec<u8>>, HostStatus> {
    let mut data = null_mut();
    let mut len = 0;
    match unsafe { proxy_get_header_map_value(map, name.as_ptr(), name.len(), &mut data, &mut len) }
    {
        OK => Ok(Some(unsafe { take(data, len) })),
        NOT_FOUND => Ok(None),
        s => Err(HostStatus(s)),
    }
}

/// All request headers (pseudo-headers included) in one host call.
pub fn request_headers() -> Result<HeaderMap, HostStatus> {
    let mut data = null_mut();
    let mut len = 0;
    status(unsafe { proxy_get_header_map_pairs(MAP_REQUEST_HEADERS, &mut data, &mut len) })?;
    Ok(HeaderMap::parse(unsafe { take(data, len) }))
}

pub fn request_header(name: &str) -> Result<Option<Vec<u8>>, HostStatus> {
    get_header(MAP_REQUEST_HEADERS, name)
}

pub fn set_request_header(name: &str, value: &[u8]) -> Result<(), HostStatus> {
    status(unsafe {
        proxy_replace_header_map_value(
            MAP_REQUEST_HEADERS,
            name.as_ptr(),
            name.len(),
            value.as_ptr(),
            value.len(),
        )
    })
}

/// Forwards the request to `path` (an origin-form `:path`, query string included).
///
/// Envoy takes the query string inside `:path`. Kong's ngx_wasm_module does not: it traps the VM
/// when a filter sets a `:path` holding a query string ("NYI - cannot set request path with
/// querystring"), and a `:path` set without one leaves nginx's `$args` (the query it forwards) as
/// the client sent it. So on nginx the path and the query are set apart: `:path` without the
/// query, and `$args` through the `ngx.args` property.
pub fn set_request_path(path: &str) -> Result<(), HostStatus> {
    if !is_nginx() {
        return set_request_header(":path", path.as_bytes());
    }
    let (bare, query) = path.split_once('?').unwrap_or((path, ""));
    set_request_header(":path", bare.as_bytes())?;
    set_property(NGX_ARGS, query.as_bytes())
}

/// The `ngx.args` property (nginx's `$args`), as a NUL-separated property path.
const NGX_ARGS: &[u8] = b"ngx\0args";

thread_local! {
    static NGINX: std::cell::Cell<Option<bool>> = const { std::cell::Cell::new(None) };
}

/// Whether the host is nginx (Kong's ngx_wasm_module): only it answers `ngx.*` properties
/// (Envoy answers "not found"). Asked once per VM, in a request context (nginx variables belong
/// to a request), and only on the path that rewrites the query.
fn is_nginx() -> bool {
    NGINX.with(|c| {
        if let Some(known) = c.get() {
            return known;
        }
        let nginx = get_property(NGX_ARGS).is_ok();
        c.set(Some(nginx));
        nginx
    })
}

/// A property; its path is the segments joined by NUL bytes.
fn get_property(path: &[u8]) -> Result<Vec<u8>, HostStatus> {
    let mut data = null_mut();
    let mut len = 0;
    status(unsafe { proxy_get_property(path.as_ptr(), path.len(), &mut data, &mut len) })?;
    Ok(unsafe { take(data, len) })
}

fn set_property(path: &[u8], value: &[u8]) -> Result<(), HostStatus> {
    status(unsafe { proxy_set_property(path.as_ptr(), path.len(), value.as_ptr(), value.len()) })
}

pub fn remove_request_header(name: &str) -> Result<(), HostStatus> {
    status(unsafe { proxy_remove_header_map_value(MAP_REQUEST_HEADERS, name.as_ptr(), name.len()) })
}

pub fn set_response_header(name: &str, value: &[u8]) -> Result<(), HostStatus> {
    status(unsafe {
        proxy_replace_header_map_value(
            MAP_RESPONSE_HEADERS,
            name.as_ptr(),
            name.len(),
            value.as_ptr(),
            value.len(),
        )
    })
}

/// Sends a local reply. The caller must return `Action::Pause` afterwards.
pub fn send_local_response(
    status_code: u16,
    headers: &[(&str, String)],
    body: &[u8],
) -> Result<(), HostStatus> {
    let map = serialize_map(headers);
    status(unsafe {
        proxy_send_local_response(
            u32::from(status_code),
            null(),
            0,
            body.as_ptr(),
            body.len(),
            map.as_ptr(),
            map.len(),
            -1,
        )
    })
}

/// The proxy-wasm header map encoding: count, (key len, value len) pairs, then NUL-terminated data.
fn serialize_map(map: &[(&str, String)]) -> Vec<u8> {
    let size = 4 + map
        .iter()
        .map(|(k, v)| k.len() + v.len() + 10)
        .sum::<usize>();
    let mut out = Vec::with_capacity(size);
    out.extend_from_slice(&(map.len() as u32).to_le_bytes());
    for (k, v) in map {
        out.extend_from_slice(&(k.len() as u32).to_le_bytes());
        out.extend_from_slice(&(v.len() as u32).to_le_bytes());
    }
    for (k, v) in map {
        out.extend_from_slice(k.as_bytes());
        out.push(0);
        out.extend_from_slice(v.as_bytes());
        out.push(0);
    }
    out
}

/// Shared data of this VM id (shared by every worker of the gateway).
impl SharedStore for ProxyWasm {
    fn get(&mut self, key: &str) -> Result<(Option<Vec<u8>>, Option<u32>), StoreError> {
        let mut data = null_mut();
        let mut len = 0;
        let mut cas = 0;
        match unsafe {
            proxy_get_shared_data(key.as_ptr(), key.len(), &mut data, &mut len, &mut cas)
        } {
            OK => Ok((Some(unsafe { take(data, len) }), (cas != 0).then_some(cas))),
            NOT_FOUND => Ok((None, None)),
            s => Err(StoreError::Host(s)),
        }
    }

    fn set(&mut self, key: &str, value: &[u8], cas: Option<u32>) -> Result<bool, StoreError> {
        match unsafe {
            proxy_set_shared_data(
                key.as_ptr(),
                key.len(),
                value.as_ptr(),
                value.len(),
                cas.unwrap_or(0),
            )
        } {
            OK => Ok(true),
            CAS_MISMATCH => Ok(false),
            s => Err(StoreError::Host(s)),
        }
    }
}
