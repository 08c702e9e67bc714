//! Bindings to Envoy 1.39's dynamic-module ABI (`source/extensions/dynamic_modules/abi/abi.h`,
//! ABI version `v0.1.0`), written here from the header's documented contract: only the HTTP-filter
//! hooks Envoy requires and the callbacks Tollgate uses. This is the one module of the crate
//! allowed `unsafe`; everything above it ([`crate::shell`]) is safe Rust over [`FilterHandle`],
//! [`ConfigHandle`] and [`Scheduler`].
//!
//! How the pieces meet:
//! - Envoy `dlopen`s `libtollgate_envoy.so`, calls [`envoy_dynamic_module_on_program_init`] and
//!   compares the string it returns with its own ABI version (1.39.3 logs a warning on a mismatch
//!   and loads the module anyway: the end-to-end suite checks the "matched" line instead).
//! - Hooks (`envoy_dynamic_module_on_*`) are exported from this library; Envoy resolves every
//!   HTTP-filter hook when a filter configuration is created and refuses a module missing one, so
//!   the hooks Tollgate has no use for exist here and do nothing.
//! - Callbacks (`envoy_dynamic_module_callback_*`) are functions of the Envoy executable, resolved
//!   by the dynamic linker when the library is loaded.
//!
//! Provenance: the signatures follow `abi/abi.h` as Envoy's repository has it for ABI `v0.1.0` (the
//! version Envoy 1.39.3 reports; the header promises no breaking change within a released
//! version). `tests/test_envoy_filter.py` checks that every callback imported here is exported by
//! the Envoy the suite runs and that every hook Envoy requires is exported here; the rest of the
//! suite exercises each one.
//!
//! Calling convention notes: a C enum is an `int` (passed here as `u32`/`i32` of the same size);
//! the header's `envoy_buffer`/`module_buffer` structs are `{const char*, size_t}` passed by value.
//!
//! Nothing here may unwind into Envoy: a panic that reached an `extern "C"` function would abort
//! the process (Rust's rule since 1.81). Clippy denies unwrap/expect/panic, but an index out of
//! range still panics, so every hook runs its body through [`crate::panics::hook`] with a
//! fallback: the request hook applies the configured `fail_mode` (closed: a 503 `unavailable`),
//! `config_new` refuses the configuration, the other hooks do nothing.

#![allow(unsafe_code)]

use std::ffi::{c_char, c_void};
use std::ptr::{null, null_mut};
use std::thread::ThreadId;

use tollgate_filter::header_map::HeaderMap;

use crate::panics;
use crate::shell::{self, Root, Stream};

/// [`crate::ABI_VERSION`], NUL-terminated for C: the `ENVOY_DYNAMIC_MODULES_ABI_VERSION` of the
/// header shipped with Envoy 1.39.x. Envoy compares it with its own and logs "Dynamic module ABI
/// version v0.1.0 matched." (the end-to-end suite checks that line).
const ABI_VERSION_C: &str = concat!(abi_version!(), "\0");

#[repr(C)]
#[derive(Clone, Copy)]
pub struct EnvoyBuffer {
    ptr: *const u8,
    length: usize,
}

#[repr(C)]
#[derive(Clone, Copy)]
pub struct ModuleBuffer {
    ptr: *const u8,
    length: usize,
}

impl ModuleBuffer {
    fn of(bytes: &[u8]) -> ModuleBuffer {
        ModuleBuffer {
            ptr: bytes.as_ptr(),
            length: bytes.len(),
        }
    }

    /// The null buffer: for `set_header`, "remove the header".
    fn null() -> ModuleBuffer {
        ModuleBuffer {
            ptr: null(),
            length: 0,
        }
    }
}

/// `envoy_dynamic_module_type_module_http_header` and `..._envoy_http_header` (same layout).
#[repr(C)]
#[derive(Clone, Copy)]
pub struct HttpHeader {
    key_ptr: *const u8,
    key_length: usize,
    value_ptr: *const u8,
    value_length: usize,
}

/// Envoy's error log level (numbered as proxy-wasm numbers levels, like Tollgate's `Level`).
const LOG_ERROR: u32 = tollgate_filter::host::Level::Error as u32;
const LOG_WARN: u32 = tollgate_filter::host::Level::Warn as u32;
const HEADER_TYPE_REQUEST: u32 = 0;
const HEADER_TYPE_RESPONSE: u32 = 2;
const METRICS_SUCCESS: u32 = 0;
const CALLOUT_INIT_SUCCESS: u32 = 0;
const CALLOUT_RESULT_SUCCESS: u32 = 0;
/// `..._on_http_filter_*_status_Continue` (headers, body and trailers alike).
const STATUS_CONTINUE: u32 = 0;
/// `envoy_dynamic_module_type_on_http_filter_request_headers_status_StopIteration`.
const STATUS_STOP_ITERATION: u32 = 1;

extern "C" {
    fn envoy_dynamic_module_callback_log(level: u32, message: ModuleBuffer);
    fn envoy_dynamic_module_callback_get_concurrency() -> u32;

    fn envoy_dynamic_module_callback_http_get_headers_size(filter: *mut c_void, kind: u32)
        -> usize;
    fn envoy_dynamic_module_callback_http_get_headers(
        filter: *mut c_void,
        kind: u32,
        result: *mut HttpHeader,
    ) -> bool;
    fn envoy_dynamic_module_callback_http_set_header(
        filter: *mut c_void,
        kind: u32,
        key: ModuleBuffer,
        value: ModuleBuffer,
    ) -> bool;
    fn envoy_dynamic_module_callback_http_send_response(
        filter: *mut c_void,
        status: u32,
        headers: *mut HttpHeader,
        headers_size: usize,
        body: ModuleBuffer,
        details: ModuleBuffer,
    );
    fn envoy_dynamic_module_callback_http_filter_get_worker_index(filter: *mut c_void) -> u32;

    fn envoy_dynamic_module_callback_http_filter_config_define_counter(
        config: *mut c_void,
        name: ModuleBuffer,
        label_names: *mut ModuleBuffer,
        label_names_length: usize,
        counter_id: *mut usize,
    ) -> u32;
    fn envoy_dynamic_module_callback_http_filter_config_increment_counter(
        config: *mut c_void,
        id: usize,
        label_values: *mut ModuleBuffer,
        label_values_length: usize,
        value: u64,
    ) -> u32;
    fn envoy_dynamic_module_callback_http_filter_config_scheduler_new(
        config: *mut c_void,
    ) -> *mut c_void;
    fn envoy_dynamic_module_callback_http_filter_config_scheduler_commit(
        scheduler: *mut c_void,
        event_id: u64,
    );
    fn envoy_dynamic_module_callback_http_filter_config_scheduler_delete(scheduler: *mut c_void);
    fn envoy_dynamic_module_callback_http_filter_config_http_callout(
        config: *mut c_void,
        callout_id: *mut u64,
        cluster: ModuleBuffer,
        headers: *mut HttpHeader,
        headers_size: usize,
        body: ModuleBuffer,
        timeout_ms: u64,
    ) -> u32;
}

/// glibc's `Dl_info` (`<dlfcn.h>`), filled by `dladdr`.
#[repr(C)]
struct DlInfo {
    dli_fname: *const c_char,
    dli_fbase: *mut c_void,
    dli_sname: *const c_char,
    dli_saddr: *mut c_void,
}

/// `<dlfcn.h>` on Linux (glibc and musl alike).
const RTLD_NOW: i32 = 0x2;
const RTLD_NOLOAD: i32 = 0x4;
const RTLD_NODELETE: i32 = 0x1000;

extern "C" {
    fn dladdr(addr: *const c_void, info: *mut DlInfo) -> i32;
    fn dlopen(filename: *const c_char, flags: i32) -> *mut c_void;
}

/// Keeps this library mapped until the process exits, whatever the stanza's `do_not_close`:
/// re-opens the already loaded library (`RTLD_NOLOAD`: never a second copy) with
/// `RTLD_NODELETE`, so a later `dlclose` by Envoy cannot unmap code that a tick thread still
/// runs or the panic hook points to, nor drop the process's counter stores with it.
fn pin_library() -> bool {
    let mut info = DlInfo {
        dli_fname: null(),
        dli_fbase: null_mut(),
        dli_sname: null(),
        dli_saddr: null_mut(),
    };
    let here = envoy_dynamic_module_on_program_init as *const c_void;
    // SAFETY: `here` is an address inside this library; `info` outlives the call.
    if unsafe { dladdr(here, &mut info) } == 0 || info.dli_fname.is_null() {
        return false;
    }
    // SAFETY: `dli_fname` is the NUL-terminated path the loader keeps for this library (valid
    // while it is loaded, which it is: we are running in it). The handle is deliberately never
    // closed: holding it is the point.
    !unsafe { dlopen(info.dli_fname, RTLD_NOW | RTLD_NOLOAD | RTLD_NODELETE) }.is_null()
}

/// Logs under Envoy's `dynamic_modules` logger id.
pub fn log(level: u32, message: &str) {
    // SAFETY: the buffer points into `message`, valid for the call; Envoy copies it.
    unsafe { envoy_dynamic_module_callback_log(level, ModuleBuffer::of(message.as_bytes())) }
}

/// Envoy's worker count (`--concurrency`). The header requires the main thread: only called
/// from `on_http_filter_config_new`.
pub fn concurrency() -> u32 {
    // SAFETY: no arguments; called on the main thread as documented.
    unsafe { envoy_dynamic_module_callback_get_concurrency() }
}

/// One HTTP stream's filter in Envoy (`DynamicModuleHttpFilter*`), valid during the hook that
/// handed it over.
pub struct FilterHandle(*mut c_void);

impl FilterHandle {
    /// Every request header, pseudo-headers included, copied into one buffer.
    pub fn request_headers(&self) -> Option<HeaderMap> {
        // SAFETY: `self.0` is the live filter of the current hook (request headers phase).
        let n = unsafe {
            envoy_dynamic_module_callback_http_get_headers_size(self.0, HEADER_TYPE_REQUEST)
        };
        let empty = HttpHeader {
            key_ptr: null(),
            key_length: 0,
            value_ptr: null(),
            value_length: 0,
        };
        let mut raw = vec![empty; n];
        // SAFETY: `raw` has room for the `n` headers Envoy just counted (the header's
        // precondition); Envoy fills it with pointers into its header map.
        let ok = unsafe {
            envoy_dynamic_module_callback_http_get_headers(
                self.0,
                HEADER_TYPE_REQUEST,
                raw.as_mut_ptr(),
            )
        };
        if !ok {
            return None;
        }
        // SAFETY: each pointer/length pair points into Envoy's request header map, valid until
        // the end of this hook unless a setter is called; the map copies them before any setter
        // runs. A null pointer (never sent for a present header) reads as empty.
        let bytes = |ptr: *const u8, len: usize| -> &[u8] {
            if ptr.is_null() {
                &[]
            } else {
                unsafe { std::slice::from_raw_parts(ptr, len) }
            }
        };
        Some(HeaderMap::from_pairs(raw.iter().map(|h| {
            (
                bytes(h.key_ptr, h.key_length),
                bytes(h.value_ptr, h.value_length),
            )
        })))
    }

    fn set_header(&self, kind: u32, name: &str, value: Option<&[u8]>) -> bool {
        let value = value.map_or(ModuleBuffer::null(), ModuleBuffer::of);
        // SAFETY: live filter; Envoy copies key and value before returning.
        unsafe {
            envoy_dynamic_module_callback_http_set_header(
                self.0,
                kind,
                ModuleBuffer::of(name.as_bytes()),
                value,
            )
        }
    }

    /// Replaces every value of a request header; `None` removes it.
    pub fn set_request_header(&self, name: &str, value: Option<&[u8]>) -> bool {
        self.set_header(HEADER_TYPE_REQUEST, name, value)
    }

    pub fn set_response_header(&self, name: &str, value: &[u8]) -> bool {
        self.set_header(HEADER_TYPE_RESPONSE, name, Some(value))
    }

    /// Sends a local reply (Envoy's `sendLocalReply`); the hook then stops the stream.
    pub fn send_response(&self, status: u16, headers: &[(&str, String)], body: &[u8]) {
        let mut raw: Vec<HttpHeader> = headers
            .iter()
            .map(|(k, v)| HttpHeader {
                key_ptr: k.as_ptr(),
                key_length: k.len(),
                value_ptr: v.as_ptr(),
                value_length: v.len(),
            })
            .collect();
        // SAFETY: live filter; `raw`, `headers` and `body` outlive the call, Envoy copies them.
        unsafe {
            envoy_dynamic_module_callback_http_send_response(
                self.0,
                u32::from(status),
                raw.as_mut_ptr(),
                raw.len(),
                ModuleBuffer::of(body),
                ModuleBuffer::of(b"tollgate"),
            )
        }
    }

    /// Index of the Envoy worker thread running this stream (0..concurrency).
    pub fn worker_index(&self) -> u32 {
        // SAFETY: live filter.
        unsafe { envoy_dynamic_module_callback_http_filter_get_worker_index(self.0) }
    }
}

/// A filter configuration in Envoy (`DynamicModuleHttpFilterConfig*`). Envoy keeps it alive
/// until it calls `on_http_filter_config_destroy`, after every stream created from it ended.
#[derive(Clone, Copy)]
pub struct ConfigHandle(*mut c_void);

impl ConfigHandle {
    /// Defines a counter; only possible inside `on_http_filter_config_new` (Envoy freezes stat
    /// creation after it).
    pub fn define_counter(&self, name: &str) -> Option<usize> {
        let mut id = 0usize;
        // SAFETY: live configuration; `id` outlives the call; no labels.
        let r = unsafe {
            envoy_dynamic_module_callback_http_filter_config_define_counter(
                self.0,
                ModuleBuffer::of(name.as_bytes()),
                null_mut(),
                0,
                &mut id,
            )
        };
        (r == METRICS_SUCCESS).then_some(id)
    }

    /// Adds to a counter from outside any stream (main thread).
    pub fn increment_counter(&self, id: usize, value: u64) -> bool {
        // SAFETY: live configuration; no labels.
        unsafe {
            envoy_dynamic_module_callback_http_filter_config_increment_counter(
                self.0,
                id,
                null_mut(),
                0,
                value,
            ) == METRICS_SUCCESS
        }
    }

    /// Starts an HTTP call to an Envoy cluster from the configuration (main thread); the answer
    /// arrives in [`envoy_dynamic_module_on_http_filter_config_http_callout_done`]. `Err` carries
    /// Envoy's `http_callout_init_result` (2: cluster not found, 4: cannot create request).
    pub fn http_callout(
        &self,
        cluster: &str,
        headers: &[(&str, String)],
        body: &[u8],
        timeout_ms: u64,
    ) -> Result<u64, u32> {
        let mut raw: Vec<HttpHeader> = headers
            .iter()
            .map(|(k, v)| HttpHeader {
                key_ptr: k.as_ptr(),
                key_length: k.len(),
                value_ptr: v.as_ptr(),
                value_length: v.len(),
            })
            .collect();
        let mut id = 0u64;
        // SAFETY: live configuration, main thread; every buffer outlives the call and Envoy
        // copies headers and body into its request message.
        let r = unsafe {
            envoy_dynamic_module_callback_http_filter_config_http_callout(
                self.0,
                &mut id,
                ModuleBuffer::of(cluster.as_bytes()),
                raw.as_mut_ptr(),
                raw.len(),
                ModuleBuffer::of(body),
                timeout_ms,
            )
        };
        if r == CALLOUT_INIT_SUCCESS {
            Ok(id)
        } else {
            Err(r)
        }
    }

    /// A scheduler posting events to this configuration on the main thread.
    pub fn scheduler(&self) -> Option<Scheduler> {
        // SAFETY: live configuration; Envoy allocates the scheduler, we delete it in `Drop`.
        let p = unsafe { envoy_dynamic_module_callback_http_filter_config_scheduler_new(self.0) };
        (!p.is_null()).then_some(Scheduler(p))
    }
}

/// Envoy's `DynamicModuleHttpFilterConfigScheduler`: `commit` from any thread runs
/// `on_http_filter_config_scheduled` on the main thread.
pub struct Scheduler(*mut c_void);

// SAFETY: the header documents commit as the way to reach the main thread from other threads
// (it posts to the main dispatcher, which is thread-safe); the pointer is owned by this value
// and deleted once, in `Drop`.
unsafe impl Send for Scheduler {}
// SAFETY: as above; `commit` takes `&self` and Envoy serializes posts on its dispatcher.
unsafe impl Sync for Scheduler {}

impl Scheduler {
    pub fn commit(&self, event_id: u64) {
        // SAFETY: `self.0` came from `scheduler_new` and is not deleted until `Drop`.
        unsafe {
            envoy_dynamic_module_callback_http_filter_config_scheduler_commit(self.0, event_id)
        }
    }
}

impl Drop for Scheduler {
    fn drop(&mut self) {
        // SAFETY: deleted exactly once; the owner stops every thread that commits first.
        unsafe { envoy_dynamic_module_callback_http_filter_config_scheduler_delete(self.0) }
    }
}

/// A value only ever touched on the thread that created it (Envoy's main thread), shared by
/// reference with worker threads that never reach into it.
pub struct MainThreadOnly<T> {
    owner: ThreadId,
    value: T,
}

// SAFETY: `get` hands the value out only on the owner thread, so a `T` that is not `Sync` (the
// link's `Rc`s and `Cell`s) is never reached from two threads at once.
unsafe impl<T> Sync for MainThreadOnly<T> {}
// SAFETY: moved only as part of `Root`. Envoy may destroy `Root` on any thread (whoever drops the
// configuration's last shared pointer), but only once no hook can run for it any more: the value
// is then exclusively owned by that thread (`into_inner`), every `Rc` in it having been created
// and cloned only inside it, on the owner thread, which no longer reaches it.
unsafe impl<T> Send for MainThreadOnly<T> {}

impl<T> MainThreadOnly<T> {
    pub fn new(value: T) -> MainThreadOnly<T> {
        MainThreadOnly {
            owner: std::thread::current().id(),
            value,
        }
    }

    /// The value, on the owner thread only.
    pub fn get(&self) -> Option<&T> {
        (std::thread::current().id() == self.owner).then_some(&self.value)
    }

    /// The value, on any thread: owning `self` means nothing else can reach it any more (see
    /// `shell::config_destroy`).
    pub fn into_inner(self) -> T {
        self.value
    }
}

// ------------------------------------------------------------------------------------------------
// Event hooks
// ------------------------------------------------------------------------------------------------

/// Envoy compares the returned string with its ABI version; null would unload the module.
#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_program_init() -> *const c_char {
    panics::install(|m| log(LOG_ERROR, m));
    if !pin_library() {
        log(
            LOG_WARN,
            "tollgate: cannot pin the module in memory: keep do_not_close: true in the stanza",
        );
    }
    ABI_VERSION_C.as_ptr().cast()
}

/// # Safety
/// Envoy passes a live configuration pointer and two buffers valid for the call.
#[no_mangle]
pub unsafe extern "C" fn envoy_dynamic_module_on_http_filter_config_new(
    config_envoy: *mut c_void,
    name: EnvoyBuffer,
    config: EnvoyBuffer,
) -> *const c_void {
    // SAFETY: Envoy's buffers are valid for the duration of this hook (we copy what we keep).
    let bytes = |b: EnvoyBuffer| -> &[u8] {
        if b.ptr.is_null() {
            &[]
        } else {
            unsafe { std::slice::from_raw_parts(b.ptr, b.length) }
        }
    };
    let root = panics::hook(
        &mut (),
        |_| shell::config_new(ConfigHandle(config_envoy), bytes(name), bytes(config)),
        |_| None,
        None,
    );
    match root {
        Some(root) => Box::into_raw(root).cast_const().cast(),
        // Null makes Envoy refuse the configuration (and, at startup, refuse to start).
        None => null(),
    }
}

/// # Safety
/// `config_module` is a pointer [`envoy_dynamic_module_on_http_filter_config_new`] returned.
#[no_mangle]
pub unsafe extern "C" fn envoy_dynamic_module_on_http_filter_config_destroy(
    config_module: *const c_void,
) {
    if !config_module.is_null() {
        // SAFETY: created by `Box::into_raw` in `config_new`; Envoy destroys it once, after every
        // stream created from it and with no hook of it running or to come, on whichever thread
        // dropped the configuration's last reference (not necessarily the main thread).
        let root = unsafe { Box::from_raw(config_module.cast_mut().cast::<Root>()) };
        // A panic here leaks what the unwind did not drop: better than aborting Envoy.
        panics::hook(
            &mut Some(root),
            |r| r.take().map_or((), shell::config_destroy),
            |_| (),
            (),
        );
    }
}

/// # Safety
/// `config_module` is a live configuration this module created.
#[no_mangle]
pub unsafe extern "C" fn envoy_dynamic_module_on_http_filter_new(
    config_module: *const c_void,
    _filter_envoy: *mut c_void,
) -> *const c_void {
    let stream = Box::new(Stream::new(config_module.cast::<Root>()));
    Box::into_raw(stream).cast_const().cast()
}

/// The stream and its configuration behind a filter's module pointer.
///
/// # Safety
/// `filter_module` was returned by [`envoy_dynamic_module_on_http_filter_new`] and not yet
/// destroyed; Envoy calls a stream's hooks one at a time, on its worker thread.
unsafe fn stream<'a>(filter_module: *const c_void) -> Option<(&'a Root, &'a mut Stream)> {
    // SAFETY: see the function's contract.
    let stream = unsafe { filter_module.cast_mut().cast::<Stream>().as_mut()? };
    // SAFETY: Envoy keeps the configuration alive while any stream created from it lives (each
    // `DynamicModuleHttpFilter` holds a shared pointer to its config).
    let root = unsafe { stream.root.as_ref()? };
    Some((root, stream))
}

/// # Safety
/// Envoy's contract for this hook: live filter and module pointers.
#[no_mangle]
pub unsafe extern "C" fn envoy_dynamic_module_on_http_filter_request_headers(
    filter_envoy: *mut c_void,
    filter_module: *const c_void,
    _end_of_stream: bool,
) -> u32 {
    // SAFETY: per this hook's contract.
    let Some((root, stream)) = (unsafe { stream(filter_module) }) else {
        return STATUS_CONTINUE;
    };
    let filter = FilterHandle(filter_envoy);
    let forward = panics::hook(
        stream,
        |s| shell::on_request_headers(root, s, &filter),
        |s| shell::on_request_failed(root, s, &filter),
        // Not even the fallback could answer: hold the request (Envoy's stream timeout ends it)
        // rather than let it through unmetered.
        false,
    );
    if forward {
        STATUS_CONTINUE
    } else {
        STATUS_STOP_ITERATION
    }
}

/// # Safety
/// Envoy's contract for this hook: live filter and module pointers.
#[no_mangle]
pub unsafe extern "C" fn envoy_dynamic_module_on_http_filter_response_headers(
    filter_envoy: *mut c_void,
    filter_module: *const c_void,
    _end_of_stream: bool,
) -> u32 {
    // SAFETY: per this hook's contract.
    if let Some((_, stream)) = unsafe { stream(filter_module) } {
        let filter = FilterHandle(filter_envoy);
        // On a panic the answer goes on without (some of) its quota headers.
        panics::hook(
            stream,
            |s| shell::on_response_headers(s, &filter),
            |_| (),
            (),
        );
    }
    STATUS_CONTINUE
}

/// # Safety
/// `filter_module` was returned by [`envoy_dynamic_module_on_http_filter_new`]; called once.
#[no_mangle]
pub unsafe extern "C" fn envoy_dynamic_module_on_http_filter_destroy(filter_module: *const c_void) {
    if !filter_module.is_null() {
        // SAFETY: created by `Box::into_raw` in `on_http_filter_new`, destroyed once.
        drop(unsafe { Box::from_raw(filter_module.cast_mut().cast::<Stream>()) });
    }
}

/// # Safety
/// Envoy's contract: live configuration pointers, on the main thread.
#[no_mangle]
pub unsafe extern "C" fn envoy_dynamic_module_on_http_filter_config_scheduled(
    _config_envoy: *mut c_void,
    config_module: *const c_void,
    _event_id: u64,
) {
    // SAFETY: a live configuration this module created (Envoy drops pending events with it).
    if let Some(root) = unsafe { config_module.cast::<Root>().as_ref() } {
        // A panicking tick is skipped; the next one runs again.
        panics::hook(&mut (), |_| shell::on_tick(root), |_| (), ());
    }
}

/// # Safety
/// Envoy's contract: live configuration pointers, on the main thread; `headers` and
/// `body_chunks` arrays of the given sizes (or null), valid during the hook.
#[no_mangle]
pub unsafe extern "C" fn envoy_dynamic_module_on_http_filter_config_http_callout_done(
    _config_envoy: *mut c_void,
    config_module: *const c_void,
    callout_id: u64,
    result: u32,
    headers: *const HttpHeader,
    headers_size: usize,
    body_chunks: *const EnvoyBuffer,
    body_chunks_size: usize,
) {
    // SAFETY: a live configuration this module created.
    let Some(root) = (unsafe { config_module.cast::<Root>().as_ref() }) else {
        return;
    };
    // On a panic the link is told the call failed (as for a reset): it retries as it would.
    panics::hook(
        &mut (),
        // SAFETY: as for the hook (the closure runs during it).
        |_| unsafe {
            callout_done(
                root,
                callout_id,
                result,
                headers,
                headers_size,
                body_chunks,
                body_chunks_size,
            )
        },
        |_| shell::on_callout_done(root, callout_id, None),
        (),
    );
}

/// The body of [`envoy_dynamic_module_on_http_filter_config_http_callout_done`].
///
/// # Safety
/// As for that hook: `headers` and `body_chunks` arrays of the given sizes (or null), valid
/// during the call.
unsafe fn callout_done(
    root: &Root,
    callout_id: u64,
    result: u32,
    headers: *const HttpHeader,
    headers_size: usize,
    body_chunks: *const EnvoyBuffer,
    body_chunks_size: usize,
) {
    // SAFETY: arrays and the buffers they point to are valid during this call (copied below).
    let slice = |ptr: *const u8, len: usize| -> &[u8] {
        if ptr.is_null() {
            &[]
        } else {
            unsafe { std::slice::from_raw_parts(ptr, len) }
        }
    };
    let answer = if result == CALLOUT_RESULT_SUCCESS {
        let headers: &[HttpHeader] = if headers.is_null() {
            &[]
        } else {
            // SAFETY: `headers_size` entries, per the hook's contract.
            unsafe { std::slice::from_raw_parts(headers, headers_size) }
        };
        let chunks: &[EnvoyBuffer] = if body_chunks.is_null() {
            &[]
        } else {
            // SAFETY: `body_chunks_size` entries, per the hook's contract.
            unsafe { std::slice::from_raw_parts(body_chunks, body_chunks_size) }
        };
        let mut body = Vec::with_capacity(chunks.iter().map(|c| c.length).sum());
        for c in chunks {
            body.extend_from_slice(slice(c.ptr, c.length));
        }
        Some(shell::CallAnswer {
            headers: headers
                .iter()
                .map(|h| {
                    (
                        slice(h.key_ptr, h.key_length).to_vec(),
                        slice(h.value_ptr, h.value_length).to_vec(),
                    )
                })
                .collect(),
            body,
        })
    } else {
        None
    };
    shell::on_callout_done(root, callout_id, answer);
}

// Hooks Envoy requires and Tollgate has no use for: bodies and trailers pass through, no
// per-stream callouts, streams or schedulers are ever started, watermarks concern terminal
// filters only.

/// # Safety
/// Does nothing with its arguments.
#[no_mangle]
pub unsafe extern "C" fn envoy_dynamic_module_on_http_filter_request_body(
    _filter_envoy: *mut c_void,
    _filter_module: *const c_void,
    _end_of_stream: bool,
) -> u32 {
    STATUS_CONTINUE
}

/// # Safety
/// Does nothing with its arguments.
#[no_mangle]
pub unsafe extern "C" fn envoy_dynamic_module_on_http_filter_request_trailers(
    _filter_envoy: *mut c_void,
    _filter_module: *const c_void,
) -> u32 {
    STATUS_CONTINUE
}

/// # Safety
/// Does nothing with its arguments.
#[no_mangle]
pub unsafe extern "C" fn envoy_dynamic_module_on_http_filter_response_body(
    _filter_envoy: *mut c_void,
    _filter_module: *const c_void,
    _end_of_stream: bool,
) -> u32 {
    STATUS_CONTINUE
}

/// # Safety
/// Does nothing with its arguments.
#[no_mangle]
pub unsafe extern "C" fn envoy_dynamic_module_on_http_filter_response_trailers(
    _filter_envoy: *mut c_void,
    _filter_module: *const c_void,
) -> u32 {
    STATUS_CONTINUE
}

/// # Safety
/// Does nothing with its arguments.
#[no_mangle]
pub unsafe extern "C" fn envoy_dynamic_module_on_http_filter_stream_complete(
    _filter_envoy: *mut c_void,
    _filter_module: *const c_void,
) {
}

/// # Safety
/// Does nothing with its arguments.
#[no_mangle]
#[allow(clippy::too_many_arguments)]
pub unsafe extern "C" fn envoy_dynamic_module_on_http_filter_http_callout_done(
    _filter_envoy: *mut c_void,
    _filter_module: *const c_void,
    _callout_id: u64,
    _result: u32,
    _headers: *const HttpHeader,
    _headers_size: usize,
    _body_chunks: *const EnvoyBuffer,
    _body_chunks_size: usize,
) {
}

/// # Safety
/// Does nothing with its arguments.
#[no_mangle]
pub unsafe extern "C" fn envoy_dynamic_module_on_http_filter_http_stream_headers(
    _filter_envoy: *mut c_void,
    _filter_module: *const c_void,
    _stream_id: u64,
    _headers: *const HttpHeader,
    _headers_size: usize,
    _end_stream: bool,
) {
}

/// # Safety
/// Does nothing with its arguments.
#[no_mangle]
pub unsafe extern "C" fn envoy_dynamic_module_on_http_filter_http_stream_data(
    _filter_envoy: *mut c_void,
    _filter_module: *const c_void,
    _stream_id: u64,
    _data: *const EnvoyBuffer,
    _data_count: usize,
    _end_stream: bool,
) {
}

/// # Safety
/// Does nothing with its arguments.
#[no_mangle]
pub unsafe extern "C" fn envoy_dynamic_module_on_http_filter_http_stream_trailers(
    _filter_envoy: *mut c_void,
    _filter_module: *const c_void,
    _stream_id: u64,
    _trailers: *const HttpHeader,
    _trailers_size: usize,
) {
}

/// # Safety
/// Does nothing with its arguments.
#[no_mangle]
pub unsafe extern "C" fn envoy_dynamic_module_on_http_filter_http_stream_complete(
    _filter_envoy: *mut c_void,
    _filter_module: *const c_void,
    _stream_id: u64,
) {
}

/// # Safety
/// Does nothing with its arguments.
#[no_mangle]
pub unsafe extern "C" fn envoy_dynamic_module_on_http_filter_http_stream_reset(
    _filter_envoy: *mut c_void,
    _filter_module: *const c_void,
    _stream_id: u64,
    _reason: u32,
) {
}

/// # Safety
/// Does nothing with its arguments.
#[no_mangle]
pub unsafe extern "C" fn envoy_dynamic_module_on_http_filter_scheduled(
    _filter_envoy: *mut c_void,
    _filter_module: *const c_void,
    _event_id: u64,
) {
}

/// # Safety
/// Does nothing with its arguments.
#[no_mangle]
pub unsafe extern "C" fn envoy_dynamic_module_on_http_filter_downstream_above_write_buffer_high_watermark(
    _filter_envoy: *mut c_void,
    _filter_module: *const c_void,
) {
}

/// # Safety
/// Does nothing with its arguments.
#[no_mangle]
pub unsafe extern "C" fn envoy_dynamic_module_on_http_filter_downstream_below_write_buffer_low_watermark(
    _filter_envoy: *mut c_void,
    _filter_module: *const c_void,
) {
}
