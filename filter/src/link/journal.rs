//! The journal protocol: every admitted unit reaches the control plane once, whichever worker
//! delivers it.
//!
//! - **Journal.** Every tick a worker folds its request-path usage ([`Meter`]) and writes its
//!   whole meter, with a heartbeat, to `tollgate/v1/journal/<gateway>` in shared data; the
//!   registry [`REGISTRY_KEY`] lists the gateway ids that have journals (updated with
//!   compare-and-swap, [`REGISTRY_CAS_ATTEMPTS`] tries).
//! - **Reports.** Every `flush_interval_ms` the next report goes out; it stays in flight, re-sent
//!   unchanged (same gateway id and sequence), until a 2xx. A 4xx other than 408/429 can never be
//!   accepted: the report is dropped and counted in `usage.dropped_entries`. A 5xx, 408, 429, a
//!   timeout or a reset is retried at the next flush; the control plane counts each
//!   `(gateway, sequence)` once, so a report whose answer was lost is not counted twice.
//! - **Adoption.** Every [`ADOPT_INTERVAL_MS`] a worker reads the registry; a journal whose
//!   heartbeat is older than [`crate::metering::ORPHAN_AFTER_MS`] belongs to a dead worker. Of
//!   several workers that find it, the one whose compare-and-swap empties the journal adopts it
//!   and delivers its reports under their original id and sequence.
//! - **Stall.** A worker that finds its own journal emptied was taken for dead (a long stall):
//!   what it had written is someone else's now. It starts a new journal under a new gateway id,
//!   keeping only the usage recorded since its last write.

use super::{call_headers, failed, new_gateway_id, Failure};
use crate::config::ControlPlane;
use crate::host::{Host, Level};
use crate::metering::{registry_decode, registry_encode, Meter, JOURNAL_PREFIX, REGISTRY_KEY};
use crate::worker::Shared;

/// How often a worker looks for journals of dead workers to adopt.
pub const ADOPT_INTERVAL_MS: u64 = 5_000;
/// CAS attempts when updating the journal registry.
pub const REGISTRY_CAS_ATTEMPTS: usize = 16;

/// The usage report in flight.
struct InFlight {
    token: u32,
    gateway: String,
    sequence: u64,
}

/// One worker's side of the protocol.
pub struct Journal {
    gateway: String,
    key: String,
    flush: Option<InFlight>,
    next_flush_ms: u64,
    next_adopt_ms: u64,
    /// Entries already counted in the `usage_dropped` stat.
    dropped_reported: u64,
}

impl Journal {
    pub fn new(gateway: String) -> Journal {
        Journal {
            key: format!("{JOURNAL_PREFIX}{gateway}"),
            gateway,
            flush: None,
            next_flush_ms: 0,
            next_adopt_ms: 0,
            dropped_reported: 0,
        }
    }

    /// The gateway id this worker's journal and new reports carry.
    pub fn gateway(&self) -> &str {
        &self.gateway
    }

    /// Whether `token` is this protocol's request.
    pub fn owns(&self, token: u32) -> bool {
        self.flush.as_ref().is_some_and(|f| f.token == token)
    }

    /// Lists this worker's journal in the registry so that others can adopt it if it dies.
    pub fn register<H: Host>(&self, host: &mut H) {
        for _ in 0..REGISTRY_CAS_ATTEMPTS {
            let Ok((bytes, cas)) = host.get(REGISTRY_KEY) else {
                return;
            };
            let mut ids = bytes.as_deref().map(registry_decode).unwrap_or_default();
            if ids.contains(&self.gateway) {
                return;
            }
            ids.push(self.gateway.clone());
            if host
                .set(REGISTRY_KEY, &registry_encode(&ids), cas)
                .unwrap_or(false)
            {
                return;
            }
        }
        host.log(
            Level::Warn,
            "tollgate: could not register the usage journal (contention)",
        );
    }

    /// Folds request-path usage and writes the journal. If another worker adopted this journal
    /// (it found the heartbeat stale, e.g. after a long stall), what it took is no longer ours.
    pub fn sync<H: Host>(&mut self, cp: &ControlPlane, shared: &Shared, host: &mut H, now: u64) {
        let Some(meter) = &shared.meter else { return };
        let claimed = matches!(host.get(&self.key), Ok((Some(v), _)) if v.is_empty());
        let Ok(mut m) = meter.try_borrow_mut() else {
            return;
        };
        if claimed {
            host.log(Level::Warn, "tollgate: this worker's usage journal was adopted by another worker; starting a new one");
            let mut fresh = Meter::new(new_gateway_id(host, &cp.service_id));
            std::mem::swap(&mut fresh, &mut m);
            // Keep only what was recorded after the journal was last written (not yet folded).
            m.take_hot_from(&mut fresh);
            self.gateway = m.gateway.clone();
            self.key = format!("{JOURNAL_PREFIX}{}", self.gateway);
            self.flush = None;
            drop(m);
            self.register(host);
            return;
        }
        if let Some(catalog) = &shared.catalog {
            m.fold(catalog);
        }
        m.heartbeat_ms = now;
        let journal = m.encode();
        drop(m);
        if host.set(&self.key, &journal, None).is_err() {
            host.log(Level::Warn, "tollgate: cannot write the usage journal");
        }
        self.count_dropped(shared);
    }

    /// Sends the next report when the flush interval has passed and none is in flight.
    pub fn flush<H: Host>(&mut self, cp: &ControlPlane, shared: &Shared, host: &mut H, now: u64) {
        if self.flush.is_some() || now < self.next_flush_ms {
            return;
        }
        self.next_flush_ms = now + u64::from(cp.flush_interval_ms);
        let Some(meter) = &shared.meter else { return };
        let Ok(mut m) = meter.try_borrow_mut() else {
            return;
        };
        let Some(report) = m.next_report() else {
            return;
        };
        let body = serde_json::to_vec(report).unwrap_or_default();
        let (gateway, sequence) = (report.gateway.clone(), report.sequence);
        let mut headers = call_headers(
            cp,
            "POST",
            format!("/gateway/v1/services/{}/usage", cp.service_id),
        );
        headers.push(("content-type", "application/json".into()));
        match host.http_call(&cp.upstream, &headers, &body, cp.timeout_ms) {
            Ok(token) => {
                self.flush = Some(InFlight {
                    token,
                    gateway,
                    sequence,
                })
            }
            Err(e) => {
                drop(m);
                failed(
                    host,
                    shared,
                    &format!("cannot call the control plane with usage (status {})", e.0),
                    Failure::Usage,
                );
            }
        }
    }

    /// The control plane answered the report in flight (`status` `None`: reset or timeout).
    pub fn on_answer<H: Host>(&mut self, status: Option<u16>, shared: &Shared, host: &mut H) {
        let Some(InFlight {
            gateway, sequence, ..
        }) = self.flush.take()
        else {
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
                host.log(
                    Level::Error,
                    &format!("tollgate: the control plane refused usage report {gateway}/{sequence} ({s}); dropped"),
                );
                self.count_dropped(shared);
            }
            other => {
                drop(m);
                failed(
                    host,
                    shared,
                    &format!("usage report {gateway}/{sequence} answered {other:?}; will retry"),
                    Failure::Usage,
                );
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

    /// Every [`ADOPT_INTERVAL_MS`]: adopts the journals of dead workers and drops their ids (and
    /// those of journals already adopted) from the registry.
    pub fn adopt<H: Host>(&mut self, shared: &Shared, host: &mut H, now: u64) {
        if now < self.next_adopt_ms {
            return;
        }
        self.next_adopt_ms = now + ADOPT_INTERVAL_MS;
        let Some(meter) = &shared.meter else { return };
        let Ok((Some(registry), _)) = host.get(REGISTRY_KEY) else {
            return;
        };
        let mut gone = Vec::new();
        for id in registry_decode(&registry) {
            if id == self.gateway {
                continue;
            }
            let key = format!("{JOURNAL_PREFIX}{id}");
            let Ok((bytes, cas)) = host.get(&key) else {
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
            if host.set(&key, &[], cas).unwrap_or(false) {
                host.log(
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
                let Ok((bytes, cas)) = host.get(REGISTRY_KEY) else {
                    return;
                };
                let ids: Vec<String> = bytes
                    .as_deref()
                    .map(registry_decode)
                    .unwrap_or_default()
                    .into_iter()
                    .filter(|i| !gone.contains(i))
                    .collect();
                if host
                    .set(REGISTRY_KEY, &registry_encode(&ids), cas)
                    .unwrap_or(false)
                {
                    return;
                }
            }
        }
    }
}
