//! The native shell's glue, safe Rust over [`crate::abi`]: what the wasm shell's `glue.rs` does,
//! with one configuration object per Envoy process instead of one VM per worker.
//!
//! - `config_new` (main thread) applies the plugin configuration through the very function the
//!   wasm shell uses (`worker::configure`), defines the stats, and starts the ticker.
//! - Requests (worker threads) run `request::on_request_headers` against their worker's slot and
//!   the striped store, exactly as the wasm shell runs it against its VM.
//! - The tick (main thread, Envoy's configuration scheduler) moves the workers' usage into the
//!   link's meter, runs the link, flushes stats and publishes a new snapshot to the workers.

use std::cell::RefCell;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{SystemTime, UNIX_EPOCH};

use tollgate_filter::config::{shared_data_id, Config};
use tollgate_filter::counters::{SharedStore, StoreError};
use tollgate_filter::header_map::HeaderMap;
use tollgate_filter::host::{Host, HostStatus, Level};
use tollgate_filter::link::Link;
use tollgate_filter::metering::JOURNAL_PREFIX;
use tollgate_filter::request::{
    failed as request_failed, on_request_headers as decide_request, Event, RequestHost, Verdict,
};
use tollgate_filter::response::Headers;
use tollgate_filter::worker::{configure, Shared};

use crate::abi::{self, ConfigHandle, FilterHandle, MainThreadOnly, Scheduler};
use crate::store::{process_store, StripedStore};
use crate::ticker::{self, Commit, Ticker};
use crate::workers::{Counts, Published, Workers};

/// The filter name the configuration must carry (`filter_name: tollgate`).
const FILTER_NAME: &[u8] = b"tollgate";
/// The status a failed call reports where Envoy gives none (proxy-wasm's `InternalFailure`, as
/// the link and its logs number statuses).
const HOST_FAILURE: u32 = 10;

/// An HTTP call's answer, copied out of Envoy's buffers.
pub struct CallAnswer {
    pub headers: Vec<(Vec<u8>, Vec<u8>)>,
    pub body: Vec<u8>,
}

/// The [`Host`] of the main thread: Envoy's configuration (stats, callouts), the store, the clock.
struct MainHost {
    config: ConfigHandle,
    store: Arc<StripedStore>,
    tick_ms: Arc<AtomicU32>,
    /// The callout being answered (`None` outside an answer, or for a failed call).
    answer: Option<CallAnswer>,
}

impl SharedStore for MainHost {
    fn get(&mut self, key: &str) -> Result<(Option<Vec<u8>>, Option<u32>), StoreError> {
        Ok(self.store.get(key))
    }

    fn set(&mut self, key: &str, value: &[u8], cas: Option<u32>) -> Result<bool, StoreError> {
        Ok(self.store.set(key, value, cas))
    }
}

fn now_nanos() -> Result<u64, HostStatus> {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .map_err(|_| HostStatus(HOST_FAILURE))
}

fn log(level: Level, message: &str) {
    // Tollgate's levels are numbered as proxy-wasm numbers them, as Envoy's ABI does (2..=4).
    abi::log(level as u32, message);
}

impl Host for MainHost {
    fn now_nanos(&self) -> Result<u64, HostStatus> {
        now_nanos()
    }

    fn log(&self, level: Level, message: &str) {
        log(level, message);
    }

    fn set_tick_period_ms(&mut self, period_ms: u32) -> Result<(), HostStatus> {
        self.tick_ms.store(period_ms, Ordering::Relaxed);
        Ok(())
    }

    fn http_call(
        &mut self,
        upstream: &str,
        headers: &[(&str, String)],
        body: &[u8],
        timeout_ms: u32,
    ) -> Result<u32, HostStatus> {
        // Envoy numbers callouts from 1 in a u64; the link's tokens are u32 (proxy-wasm's): they
        // would repeat only after four billion calls, long after the one in flight was answered.
        self.config
            .http_callout(upstream, headers, body, u64::from(timeout_ms))
            .map(|id| id as u32)
            .map_err(HostStatus)
    }

    fn call_response_status(&self) -> Option<u16> {
        let a = self.answer.as_ref()?;
        let (_, v) = a.headers.iter().find(|(k, _)| k == b":status")?;
        std::str::from_utf8(v).ok()?.parse().ok()
    }

    fn call_response_header(&self, name: &str) -> Option<Vec<u8>> {
        let a = self.answer.as_ref()?;
        a.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name.as_bytes()))
            .map(|(_, v)| v.clone())
    }

    fn call_response_body_range(&self, start: usize, max_len: usize) -> Vec<u8> {
        let Some(a) = &self.answer else {
            return Vec::new();
        };
        let end = start.saturating_add(max_len).min(a.body.len());
        a.body
            .get(start..end)
            .map(<[u8]>::to_vec)
            .unwrap_or_default()
    }

    fn define_counter(&mut self, name: &str) -> Option<u32> {
        self.config.define_counter(name).map(|id| id as u32)
    }

    fn increment(&mut self, counter: Option<u32>, delta: u64) {
        if let Some(id) = counter {
            self.config.increment_counter(id as usize, delta);
        }
    }
}

/// What only the main thread touches: the link and its state (the wasm shell's root context).
struct Main {
    shared: Shared,
    link: Option<Link>,
    host: MainHost,
    /// What the workers were last handed.
    published: Published,
}

/// One filter configuration: shared by Envoy's main thread and every worker.
pub struct Root {
    store: Arc<StripedStore>,
    /// The configuration as applied (its `fail_mode` answers a request whose decision panicked).
    config: Arc<Config>,
    workers: Workers,
    main: MainThreadOnly<RefCell<Main>>,
    ticker: Mutex<Option<Ticker>>,
}

/// One HTTP stream: the quota headers to add to the upstream's answer.
pub struct Stream {
    pub root: *const Root,
    response_headers: Headers,
}

impl Stream {
    pub fn new(root: *const Root) -> Stream {
        Stream {
            root,
            response_headers: Headers::new(),
        }
    }
}

pub fn config_new(handle: ConfigHandle, name: &[u8], bytes: &[u8]) -> Option<Box<Root>> {
    if name != FILTER_NAME {
        log(
            Level::Error,
            &format!(
                "tollgate: filter_name must be \"tollgate\", not {:?}",
                String::from_utf8_lossy(name)
            ),
        );
        return None;
    }
    // The counter namespace first: applying the configuration writes its snapshot's records. A
    // configuration whose namespace cannot be read is refused here, the log naming the field as
    // `configure` would.
    let Some(namespace) = shared_data_id(bytes) else {
        let why = Config::parse(bytes).err().map_or_else(
            || "cannot read service_id or shared_data_id".to_string(),
            |e| e.to_string(),
        );
        log(Level::Error, &format!("tollgate: {why}"));
        return None;
    };
    let store = process_store(&namespace);
    let tick_ms = Arc::new(AtomicU32::new(0));
    let mut host = MainHost {
        config: handle,
        store: Arc::clone(&store),
        tick_ms: Arc::clone(&tick_ms),
        answer: None,
    };
    let mut shared = Shared::default();
    let link = configure(&mut host, &mut shared, bytes)?;
    let config = shared.config.clone()?;
    let published = Published {
        config,
        catalog: shared.catalog.clone(),
        global: shared.global.clone(),
    };
    let workers = Workers::new(abi::concurrency() as usize, &published, link.is_some());
    let ticker = start_ticker(handle, &tick_ms);
    Some(Box::new(Root {
        store,
        config: Arc::clone(&published.config),
        workers,
        main: MainThreadOnly::new(RefCell::new(Main {
            shared,
            link,
            host,
            published,
        })),
        ticker: Mutex::new(ticker),
    }))
}

/// Starts the ticker when the configuration asked for a tick (stats, control-plane mode).
fn start_ticker(handle: ConfigHandle, tick_ms: &Arc<AtomicU32>) -> Option<Ticker> {
    if tick_ms.load(Ordering::Relaxed) == 0 {
        return None;
    }
    let Some(scheduler) = handle.scheduler() else {
        log(
            Level::Warn,
            "tollgate: no scheduler: stats and the control-plane link stop",
        );
        return None;
    };
    // The thread owns the scheduler: it is deleted when the thread leaves its loop, after its
    // last commit. That may come after the configuration was destroyed (destroyed on the tick
    // thread itself, inside a commit): Envoy's scheduler does not keep the configuration alive
    // (a commit only takes a reference for its duration, or no configuration with a scheduler
    // could ever reach its destroy), so it outlives the configuration harmlessly.
    match ticker::start(Arc::new(scheduler), Arc::clone(tick_ms)) {
        Ok(t) => Some(t),
        Err(e) => {
            log(
                Level::Error,
                &format!("tollgate: cannot start the tick thread ({e}): stats and the control-plane link stop"),
            );
            None
        }
    }
}

impl Commit for Scheduler {
    fn commit(&self) {
        Scheduler::commit(self, 0);
    }
}

/// Envoy drops the configuration. Not necessarily on the main thread: every stream holds a
/// shared pointer to the configuration and whoever drops the last one runs this (a worker thread
/// at the end of a stream, or the tick thread inside a scheduler commit). Whatever the thread,
/// `root` is exclusively owned here: no hook of this configuration can run any more (Envoy drops
/// scheduled events and callout answers once its reference count is zero), so the main-thread
/// state is taken out by value and its last usage persisted from here (the drain and the journal
/// write only touch the store, the clock and the log).
pub fn config_destroy(root: Box<Root>) {
    let Root {
        store,
        workers,
        main,
        ticker,
        ..
    } = *root;
    // The workers' last usage into the journal, for the process's next link to deliver; the
    // journal's key goes once that link has adopted it.
    let mut m = main.into_inner().into_inner();
    if let (Some(link), Some(meter)) = (&mut m.link, &m.shared.meter) {
        if let Ok(mut meter) = meter.try_borrow_mut() {
            workers.drain(&mut meter);
        }
        link.persist(&m.shared, &mut m.host);
        store.retire(format!("{JOURNAL_PREFIX}{}", link.gateway()));
        log(
            Level::Info,
            &format!(
                "tollgate: configuration destroyed; its usage journal {} awaits adoption",
                link.gateway()
            ),
        );
    }
    let ticker = ticker.into_inner().unwrap_or_else(PoisonError::into_inner);
    if let Some(t) = ticker {
        t.stop();
    }
}

/// The main thread's tick: workers' usage to the link, the link's protocols, stats, publication.
pub fn on_tick(root: &Root) {
    let Some(cell) = root.main.get() else { return };
    let Ok(mut main) = cell.try_borrow_mut() else {
        return;
    };
    let m = &mut *main;
    if let Some(link) = &mut m.link {
        if let Some(meter) = &m.shared.meter {
            if let Ok(mut meter) = meter.try_borrow_mut() {
                root.workers.drain(&mut meter);
            }
        }
        link.on_tick(&mut m.shared, &mut m.host);
    }
    if let Some(s) = &m.shared.stats {
        root.workers.drain_counts(s);
        s.flush(&mut m.host);
    }
    publish(root, m);
}

/// The answer to a control-plane call (main thread).
pub fn on_callout_done(root: &Root, callout_id: u64, answer: Option<CallAnswer>) {
    let Some(cell) = root.main.get() else { return };
    let Ok(mut main) = cell.try_borrow_mut() else {
        return;
    };
    let m = &mut *main;
    let body_size = answer.as_ref().map_or(0, |a| a.body.len());
    m.host.answer = answer;
    if let Some(link) = &mut m.link {
        link.on_response(callout_id as u32, body_size, &mut m.shared, &mut m.host);
    }
    m.host.answer = None;
    publish(root, m);
}

/// Hands a new snapshot or global usage to the workers, once.
fn publish(root: &Root, m: &mut Main) {
    let Some(config) = m.shared.config.clone() else {
        return;
    };
    let next = Published {
        config,
        catalog: m.shared.catalog.clone(),
        global: m.shared.global.clone(),
    };
    if next.same_as(&m.published) {
        return;
    }
    match &m.shared.meter {
        Some(meter) => match meter.try_borrow_mut() {
            Ok(mut meter) => root.workers.publish(&next, &mut meter),
            Err(_) => return,
        },
        None => {
            let mut unused = tollgate_filter::metering::Meter::new(String::new());
            root.workers.publish(&next, &mut unused);
        }
    }
    m.published = next;
}

/// The native side of [`RequestHost`]: Envoy's header map and local replies for one stream, stats
/// counted in the worker's slot.
struct NativeRequest<'a> {
    filter: &'a FilterHandle,
    counts: &'a mut Counts,
}

fn ok_or_failed(ok: bool) -> Result<(), HostStatus> {
    if ok {
        Ok(())
    } else {
        Err(HostStatus(HOST_FAILURE))
    }
}

impl RequestHost for NativeRequest<'_> {
    fn request_headers(&mut self) -> Result<HeaderMap, HostStatus> {
        self.filter
            .request_headers()
            .ok_or(HostStatus(HOST_FAILURE))
    }

    fn request_header(&mut self, name: &str) -> Option<Vec<u8>> {
        // Envoy's header list holds the pseudo-headers: nothing is ever missing from it.
        let _ = name;
        None
    }

    fn set_request_header(&mut self, name: &str, value: &[u8]) -> Result<(), HostStatus> {
        ok_or_failed(self.filter.set_request_header(name, Some(value)))
    }

    fn remove_request_header(&mut self, name: &str) -> Result<(), HostStatus> {
        ok_or_failed(self.filter.set_request_header(name, None))
    }

    fn set_request_path(&mut self, path: &str) -> Result<(), HostStatus> {
        ok_or_failed(
            self.filter
                .set_request_header(":path", Some(path.as_bytes())),
        )
    }

    fn send_local_response(
        &mut self,
        status: u16,
        headers: &Headers,
        body: &[u8],
    ) -> Result<(), HostStatus> {
        self.filter.send_response(status, headers, body);
        Ok(())
    }

    fn now_secs(&self) -> Result<i64, HostStatus> {
        now_nanos().map(|n| (n / 1_000_000_000) as i64)
    }

    fn log(&self, level: Level, message: &str) {
        log(level, message);
    }

    fn count(&mut self, event: Event) {
        self.counts.count(event);
    }
}

/// Decides a request (worker thread); `true` lets it through, `false` means it was answered.
pub fn on_request_headers(root: &Root, stream: &mut Stream, filter: &FilterHandle) -> bool {
    #[cfg(feature = "panic-probe")]
    probe_panic(filter);
    let mut tx = root.store.transaction();
    let verdict = root
        .workers
        .with_view(filter.worker_index() as usize, |view, counts| {
            let mut req = NativeRequest { filter, counts };
            decide_request(&mut req, view, &mut tx, &mut stream.response_headers)
        });
    verdict == Verdict::Forward
}

/// Test builds (`panic-probe`): a request carrying the probe header panics, as a bug would.
#[cfg(feature = "panic-probe")]
#[allow(clippy::panic)] // the point of the probe
fn probe_panic(filter: &FilterHandle) {
    if filter
        .request_headers()
        .is_some_and(|h| h.get("x-tollgate-panic-probe").is_some())
    {
        panic!("panic probe");
    }
}

/// A request whose decision panicked (caught at the hook): the configured `fail_mode`, as when
/// the host fails the filter (closed: a 503 `unavailable` problem; open: forwarded uncounted).
pub fn on_request_failed(root: &Root, stream: &mut Stream, filter: &FilterHandle) -> bool {
    stream.response_headers.clear();
    // The worker's stats are not reached again (its slot may be what panicked): the error is
    // counted nowhere but the log.
    let mut counts = Counts::default();
    let mut req = NativeRequest {
        filter,
        counts: &mut counts,
    };
    request_failed(
        &mut req,
        &root.config,
        "the request could not be decided (panic)",
    ) == Verdict::Forward
}

/// Adds the quota headers to the upstream's answer.
pub fn on_response_headers(stream: &mut Stream, filter: &FilterHandle) {
    for (name, value) in stream.response_headers.drain(..) {
        filter.set_response_header(name, value.as_bytes());
    }
}
