//! The link to the control plane (control-plane mode), driven by each worker's `on_tick`:
//! - poll the service's snapshot (`If-None-Match` with the current version; 304 = unchanged) and
//!   swap the worker's catalog whole when a new one arrives;
//! - flush metered usage (see [`crate::metering`]) as reports, retried until acknowledged;
//! - keep the worker's journal in shared data and adopt journals of dead workers.
//!
//! Only `dispatch_http_call` from `on_tick` is used, to a cluster name (Envoy) or `host:port`
//! (Kong): no gRPC, no shared queues. While the control plane is away the last snapshot keeps
//! being enforced and usage stays buffered.

use std::hash::{BuildHasher, Hasher};
use std::rc::Rc;

use tollgate_protocol::{GlobalUsage, Snapshot};

use crate::catalog::Catalog;
use crate::config::ControlPlane;
use crate::counters::SharedStore;
use crate::global::GlobalView;
use crate::glue::{prepare_records, Shared};
use crate::host::{self, Level, SharedData};
use crate::metering::{registry_decode, registry_encode, Meter, JOURNAL_PREFIX, REGISTRY_KEY};

/// How often a worker looks for journals of dead workers to adopt.
pub const ADOPT_INTERVAL_MS: u64 = 5_000;
/// Largest snapshot body accepted (100,000 applications in JSON fit well below it).
pub const MAX_SNAPSHOT_BYTES: usize = 128 * 1024 * 1024;
/// Shared-data marker of counter-record preparation: `preparing:<ms>:<version>` or `done:<version>`.
const PREPARED_KEY: &str = "tollgate/v1/prepared";
/// Tick period while waiting for another worker to finish counter records.
const PENDING_TICK_MS: u32 = 20;
/// A preparation claim older than this is abandoned (its VM died) and taken over.
pub const CLAIM_TIMEOUT_MS: u64 = 5_000;

/// A decoded snapshot waiting for its counter records.
struct Pending {
    catalog: Catalog,
    started_ms: u64,
    decoded_ms: u64,
    body_size: usize,
}
/// CAS attempts when updating the journal registry.
const REGISTRY_CAS_ATTEMPTS: usize = 16;

pub struct Link {
    cp: ControlPlane,
    /// This gateway process, shared by all its workers (global quotas leave its usage out).
    instance: String,
    gateway: String,
    journal_key: String,
    version: Option<String>,
    poll: Option<u32>,
    /// Global usage request in flight, and the last answer (re-indexed when the catalog changes).
    global_poll: Option<u32>,
    last_global: Option<GlobalUsage>,
    /// A decoded snapshot waiting to be installed.
    pending: Option<Pending>,
    next_poll_ms: u64,
    next_global_ms: u64,
    /// The report in flight: (call token, gateway id, sequence).
    flush: Option<(u32, String, u64)>,
    next_flush_ms: u64,
    next_adopt_ms: u64,
    /// Entries already counted in the `usage_dropped` stat.
    dropped_reported: u64,
}

/// Shared-data key of this gateway process's instance id.
const INSTANCE_KEY: &str = "tollgate/v1/instance";

/// The instance id all workers of this process share: the first worker to configure creates it.
/// Shared data has no create-if-absent, so two workers configuring at the same instant could each
/// keep their own id; the only effect is that one counts the other's usage twice (stricter, never
/// looser, enforcement) until the process restarts.
fn instance_id(service: &str) -> String {
    let mut store = SharedData;
    let read = |store: &mut SharedData| match store.get(INSTANCE_KEY) {
        Ok((Some(v), _)) if !v.is_empty() => Some(String::from_utf8_lossy(&v).into_owned()),
        _ => None,
    };
    if let Some(id) = read(&mut store) {
        return id;
    }
    let id = format!("inst-{}", new_gateway_id(service));
    let _ = store.set(INSTANCE_KEY, id.as_bytes(), None);
    read(&mut store).unwrap_or(id)
}

fn new_gateway_id(service: &str) -> String {
    // RandomState is seeded from the host's WASI random_get: distinct per worker VM.
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u64(host::now_ms().unwrap_or(0));
    let service: String = service
        .chars()
        .filter(char::is_ascii_alphanumeric)
        .take(32)
        .collect();
    format!(
        "{service}-{:016x}{:08x}",
        h.finish(),
        host::now_ms().unwrap_or(0) as u32
    )
}

impl Link {
    pub fn new(cp: ControlPlane) -> Link {
        let gateway = new_gateway_id(&cp.service_id);
        Link {
            journal_key: format!("{JOURNAL_PREFIX}{gateway}"),
            instance: instance_id(&cp.service_id),
            gateway,
            cp,
            version: None,
            poll: None,
            global_poll: None,
            last_global: None,
            pending: None,
            next_poll_ms: 0,
            next_global_ms: 0,
            flush: None,
            next_flush_ms: 0,
            next_adopt_ms: 0,
            dropped_reported: 0,
        }
    }

    pub fn gateway(&self) -> &str {
        &self.gateway
    }

    pub fn instance(&self) -> &str {
        &self.instance
    }

    /// The tick period this link needs.
    pub fn tick_ms(&self) -> u32 {
        self.cp
            .poll_interval_ms
            .min(self.cp.flush_interval_ms)
            .min(1_000)
    }

    /// Lists this worker's journal in the registry so that others can adopt it if it dies.
    pub fn register(&self) {
        let mut store = SharedData;
        for _ in 0..REGISTRY_CAS_ATTEMPTS {
            let Ok((bytes, cas)) = store.get(REGISTRY_KEY) else {
                return;
            };
            let mut ids = bytes.as_deref().map(registry_decode).unwrap_or_default();
            if ids.contains(&self.gateway) {
                return;
            }
            ids.push(self.gateway.clone());
            if store
                .set(REGISTRY_KEY, &registry_encode(&ids), cas)
                .unwrap_or(false)
            {
                return;
            }
        }
        host::log(
            Level::Warn,
            "tollgate: could not register the usage journal (contention)",
        );
    }

    fn headers(&self, method: &str, path: String) -> Vec<(&'static str, String)> {
        vec![
            (":method", method.to_string()),
            (":path", path),
            (":authority", self.cp.authority.clone()),
            ("authorization", format!("Bearer {}", self.cp.token)),
        ]
    }

    pub fn on_tick(&mut self, shared: &mut Shared) {
        let Ok(now) = host::now_ms() else { return };
        self.try_install(shared);
        self.sync_journal(shared, now);
        if self.poll.is_none() && now >= self.next_poll_ms {
            self.next_poll_ms = now + u64::from(self.cp.poll_interval_ms);
            let mut headers = self.headers(
                "GET",
                format!("/gateway/v1/services/{}/snapshot", self.cp.service_id),
            );
            if let Some(v) = &self.version {
                headers.push(("if-none-match", format!("\"{v}\"")));
            }
            headers.push((
                "accept",
                format!(
                    "{}, application/json",
                    tollgate_protocol::binary::MEDIA_TYPE
                ),
            ));
            match host::http_call(&self.cp.upstream, &headers, &[], self.cp.timeout_ms) {
                Ok(token) => self.poll = Some(token),
                Err(e) => self.failed(
                    shared,
                    &format!(
                        "cannot call the control plane for a snapshot (status {})",
                        e.0
                    ),
                    true,
                ),
            }
        }
        if self.global_poll.is_none() && shared.catalog.is_some() && now >= self.next_global_ms {
            self.next_global_ms = now + u64::from(self.cp.poll_interval_ms);
            let path = format!(
                "/gateway/v1/services/{}/global_usage?instance={}",
                self.cp.service_id, self.instance
            );
            match host::http_call(
                &self.cp.upstream,
                &self.headers("GET", path),
                &[],
                self.cp.timeout_ms,
            ) {
                Ok(token) => self.global_poll = Some(token),
                Err(e) => self.failed(
                    shared,
                    &format!(
                        "cannot call the control plane for global usage (status {})",
                        e.0
                    ),
                    true,
                ),
            }
        }
        if self.flush.is_none() && now >= self.next_flush_ms {
            self.next_flush_ms = now + u64::from(self.cp.flush_interval_ms);
            self.send_report(shared);
        }
        if now >= self.next_adopt_ms {
            self.next_adopt_ms = now + ADOPT_INTERVAL_MS;
            self.adopt_orphans(shared, now);
        }
    }

    fn send_report(&mut self, shared: &Shared) {
        let Some(meter) = &shared.meter else { return };
        let Ok(mut m) = meter.try_borrow_mut() else {
            return;
        };
        let Some(report) = m.next_report() else {
            return;
        };
        let body = serde_json::to_vec(report).unwrap_or_default();
        let (gateway, sequence) = (report.gateway.clone(), report.sequence);
        let mut headers = self.headers(
            "POST",
            format!("/gateway/v1/services/{}/usage", self.cp.service_id),
        );
        headers.push(("content-type", "application/json".into()));
        match host::http_call(&self.cp.upstream, &headers, &body, self.cp.timeout_ms) {
            Ok(token) => self.flush = Some((token, gateway, sequence)),
            Err(e) => {
                drop(m);
                self.failed(
                    shared,
                    &format!("cannot call the control plane with usage (status {})", e.0),
                    false,
                );
            }
        }
    }

    pub fn on_response(&mut self, token: u32, body_size: usize, shared: &mut Shared) {
        let status = host::call_response_status();
        if self.poll == Some(token) {
            self.poll = None;
            match status {
                Some(200) => self.apply_snapshot(body_size, shared),
                Some(304) => {}
                other => self.failed(
                    shared,
                    &format!("snapshot request answered {other:?}; keeping the last snapshot"),
                    true,
                ),
            }
        } else if self.global_poll == Some(token) {
            self.global_poll = None;
            match status {
                Some(200) => {
                    let body = host::call_response_body(body_size);
                    match serde_json::from_slice::<GlobalUsage>(&body) {
                        Ok(g) => {
                            shared.global = shared
                                .catalog
                                .as_ref()
                                .map(|c| Rc::new(GlobalView::build(c, &g)));
                            self.last_global = Some(g);
                        }
                        Err(e) => self.failed(
                            shared,
                            &format!("global usage is not valid JSON: {e}"),
                            true,
                        ),
                    }
                }
                other => self.failed(
                    shared,
                    &format!("global usage request answered {other:?}; keeping the last"),
                    true,
                ),
            }
        } else if self.flush.as_ref().is_some_and(|(t, _, _)| *t == token) {
            let Some((_, gateway, sequence)) = self.flush.take() else {
                return;
            };
            let Some(meter) = &shared.meter else { return };
            let Ok(mut m) = meter.try_borrow_mut() else {
                return;
            };
            match status {
                Some(s) if (200..300).contains(&s) => {
                    m.acknowledged(&gateway, sequence);
                    drop(m);
                    if let Some(st) = &shared.stats {
                        st.usage_reports.bump();
                    }
                    // More waiting (a backlog after an outage): send the next one right away.
                    self.next_flush_ms = 0;
                }
                Some(s) if (400..500).contains(&s) && s != 408 && s != 429 => {
                    m.refused(&gateway, sequence);
                    drop(m);
                    host::log(
                        Level::Error,
                        &format!("tollgate: the control plane refused usage report {gateway}/{sequence} ({s}); dropped"),
                    );
                    self.count_dropped(shared);
                }
                other => {
                    drop(m);
                    self.failed(
                        shared,
                        &format!(
                            "usage report {gateway}/{sequence} answered {other:?}; will retry"
                        ),
                        false,
                    );
                }
            }
        }
    }

    fn apply_snapshot(&mut self, body_size: usize, shared: &mut Shared) {
        let started_ms = host::now_ms().unwrap_or(0);
        if body_size > MAX_SNAPSHOT_BYTES {
            return self.failed(
                shared,
                &format!("snapshot of {body_size} bytes exceeds {MAX_SNAPSHOT_BYTES}"),
                true,
            );
        }
        let binary = host::call_response_header("content-type")
            .is_some_and(|t| t.starts_with(tollgate_protocol::binary::MEDIA_TYPE.as_bytes()));
        let compiled = if binary {
            // Read 64 KiB at a time: the body never sits whole in this VM's memory.
            Catalog::compile_chunked(body_size, host::call_response_body_range)
        } else {
            let body = host::call_response_body(body_size);
            match serde_json::from_slice::<Snapshot>(&body) {
                Ok(s) => Catalog::compile(&s, "snapshot"),
                Err(e) => {
                    return self.failed(shared, &format!("snapshot is not valid JSON: {e}"), true)
                }
            }
        };
        let catalog = match compiled {
            Ok(c) => c,
            Err(e) => return self.failed(shared, &format!("snapshot refused: {e}"), true),
        };
        let compiled_ms = host::now_ms().unwrap_or(0);
        self.version = catalog.version.clone();
        self.pending = Some(Pending {
            catalog,
            started_ms,
            decoded_ms: compiled_ms.saturating_sub(started_ms),
            body_size,
        });
        self.try_install(shared);
        if self.pending.is_some() {
            // Waiting for another worker's counter records: look again soon, not a tick later.
            let _ = host::set_tick_period_ms(PENDING_TICK_MS);
        }
    }

    /// Installs the pending catalog once its counter records exist. Creating 100,000 records is
    /// the slow part of applying a snapshot, so one VM claims it (compare-and-swap on a marker in
    /// shared data) while the others wait for the marker to say it is done, re-checking every tick;
    /// a claim older than [`CLAIM_TIMEOUT_MS`] is taken over.
    fn try_install(&mut self, shared: &mut Shared) {
        let Some(pending) = self.pending.as_ref() else {
            return;
        };
        let now = host::now_ms().unwrap_or(0);
        let version = pending.catalog.version.clone().unwrap_or_default();
        let mut store = SharedData;
        let (marker, cas) = store.get(PREPARED_KEY).unwrap_or((None, None));
        let marker = marker
            .map(|m| String::from_utf8_lossy(&m).into_owned())
            .unwrap_or_default();
        let done = !version.is_empty() && marker == format!("done:{version}");
        if !done {
            let claimed_at: Option<u64> = marker
                .strip_prefix("preparing:")
                .and_then(|rest| rest.split(':').next())
                .and_then(|t| t.parse().ok());
            if claimed_at.is_some_and(|t| now.saturating_sub(t) < CLAIM_TIMEOUT_MS) {
                return; // another VM is creating the records; check again next tick
            }
            let claim = format!("preparing:{now}:{version}");
            if !store
                .set(PREPARED_KEY, claim.as_bytes(), cas)
                .unwrap_or(false)
            {
                return; // another VM claimed it first
            }
            // Records exist for every application of this worker's previous catalog: create only
            // the new ones.
            let known: std::collections::HashSet<&str> = shared
                .catalog
                .as_ref()
                .map(|c| c.apps.iter().map(|a| a.id.as_str()).collect())
                .unwrap_or_default();
            let ok = prepare_records(
                pending
                    .catalog
                    .apps
                    .iter()
                    .filter(|a| !known.contains(a.id.as_str())),
            );
            drop(known);
            let _ = store.set(PREPARED_KEY, format!("done:{version}").as_bytes(), None);
            if !ok {
                self.pending = None;
                return self.failed(
                    shared,
                    "cannot prepare counter records for the new snapshot",
                    true,
                );
            }
        }
        let Some(pending) = self.pending.take() else {
            return;
        };
        let _ = host::set_tick_period_ms(self.tick_ms());
        // Usage counted against the old catalog's indexes is named before the swap.
        if let (Some(meter), Some(old)) = (&shared.meter, &shared.catalog) {
            if let Ok(mut m) = meter.try_borrow_mut() {
                m.fold(old);
            }
        }
        host::log(
            Level::Info,
            &format!(
                "tollgate: snapshot {} applied: {} applications, {} plans, {} bytes in {} ms (decode {} ms, {})",
                if version.is_empty() { "-" } else { version.as_str() },
                pending.catalog.apps.len(),
                pending.catalog.plans.len(),
                pending.body_size,
                host::now_ms().unwrap_or(now).saturating_sub(pending.started_ms),
                pending.decoded_ms,
                if done { "counter records made by another worker" } else { "counter records made here" },
            ),
        );
        let catalog = pending.catalog;
        if let Some(summary) = catalog.skipped_summary() {
            host::log(
                Level::Warn,
                &format!("tollgate: snapshot {version}: {summary}"),
            );
            if let Some(st) = &shared.stats {
                st.snapshot_skipped_applications
                    .add(catalog.skipped_apps as u64);
            }
        }
        // Global usage is indexed by catalog positions: re-index the last answer for the new one.
        shared.global = self
            .last_global
            .as_ref()
            .map(|g| Rc::new(GlobalView::build(&catalog, g)));
        shared.catalog = Some(Rc::new(catalog));
        if let Some(st) = &shared.stats {
            st.snapshot_updates.bump();
        }
    }

    fn failed(&self, shared: &Shared, what: &str, snapshot: bool) {
        host::log(Level::Warn, &format!("tollgate: {what}"));
        if let Some(st) = &shared.stats {
            if snapshot {
                st.snapshot_failures.bump();
            } else {
                st.usage_report_failures.bump();
            }
        }
    }

    fn count_dropped(&mut self, shared: &Shared) {
        let Some(meter) = &shared.meter else { return };
        let dropped = meter
            .try_borrow()
            .map(|m| m.dropped_entries)
            .unwrap_or(self.dropped_reported);
        if dropped > self.dropped_reported {
            if let Some(st) = &shared.stats {
                st.usage_dropped.add(dropped - self.dropped_reported);
            }
            self.dropped_reported = dropped;
        }
    }

    /// Folds request-path usage and writes the journal. If another worker adopted this journal
    /// (it found the heartbeat stale, e.g. after a long stall), what it took is no longer ours.
    fn sync_journal(&mut self, shared: &Shared, now: u64) {
        let Some(meter) = &shared.meter else { return };
        let mut store = SharedData;
        let claimed = matches!(store.get(&self.journal_key), Ok((Some(v), _)) if v.is_empty());
        let Ok(mut m) = meter.try_borrow_mut() else {
            return;
        };
        if claimed {
            host::log(Level::Warn, "tollgate: this worker's usage journal was adopted by another worker; starting a new one");
            let mut fresh = Meter::new(new_gateway_id(&self.cp.service_id));
            std::mem::swap(&mut fresh, &mut m);
            // Keep only what was recorded after the journal was last written (not yet folded).
            m.take_hot_from(&mut fresh);
            self.gateway = m.gateway.clone();
            self.journal_key = format!("{JOURNAL_PREFIX}{}", self.gateway);
            self.flush = None;
            drop(m);
            self.register();
            return;
        }
        if let Some(catalog) = &shared.catalog {
            m.fold(catalog);
        }
        m.heartbeat_ms = now;
        let journal = m.encode();
        drop(m);
        if store.set(&self.journal_key, &journal, None).is_err() {
            host::log(Level::Warn, "tollgate: cannot write the usage journal");
        }
        self.count_dropped(shared);
    }

    fn adopt_orphans(&mut self, shared: &Shared, now: u64) {
        let Some(meter) = &shared.meter else { return };
        let mut store = SharedData;
        let Ok((Some(registry), _)) = store.get(REGISTRY_KEY) else {
            return;
        };
        let mut gone = Vec::new();
        for id in registry_decode(&registry) {
            if id == self.gateway {
                continue;
            }
            let key = format!("{JOURNAL_PREFIX}{id}");
            let Ok((bytes, cas)) = store.get(&key) else {
                continue;
            };
            let Some(bytes) = bytes.filter(|b| !b.is_empty()) else {
                gone.push(id);
                continue;
            };
            let Some(orphan) = Meter::decode(&bytes).filter(|o| o.is_orphan(now)) else {
                continue;
            };
            // Claim it with compare-and-swap: of several adopters exactly one wins.
            if store.set(&key, &[], cas).unwrap_or(false) {
                host::log(
                    Level::Info,
                    &format!("tollgate: adopted the usage journal of dead worker {id}"),
                );
                if let Ok(mut m) = meter.try_borrow_mut() {
                    m.adopt(orphan);
                }
                gone.push(id);
            }
        }
        if !gone.is_empty() {
            for _ in 0..REGISTRY_CAS_ATTEMPTS {
                let Ok((bytes, cas)) = store.get(REGISTRY_KEY) else {
                    return;
                };
                let ids: Vec<String> = bytes
                    .as_deref()
                    .map(registry_decode)
                    .unwrap_or_default()
                    .into_iter()
                    .filter(|i| !gone.contains(i))
                    .collect();
                if store
                    .set(REGISTRY_KEY, &registry_encode(&ids), cas)
                    .unwrap_or(false)
                {
                    return;
                }
            }
        }
    }
}
