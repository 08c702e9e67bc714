//! The journal protocol: every admitted unit reaches the control plane once, whichever worker
//! delivers it.
//!
//! - **Journal.** Every tick a worker folds its request-path usage ([`Meter`]) and writes its
//!   whole meter, with a heartbeat, to `tollgate/v1/journal/<gateway>` in shared data; the
//!   registry [`REGISTRY_KEY`] lists the gateway ids that have journals (updated with
//!   compare-and-swap, [`REGISTRY_CAS_ATTEMPTS`] tries; a worker writes its journal before it
//!   lists its id).
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
use crate::counters::StoreError;
use crate::host::{Host, Level};
use crate::metering::{
    registry_decode, registry_encode, Meter, Unfolded, JOURNAL_PREFIX, REGISTRY_KEY,
};
use crate::worker::Shared;

/// How often a worker looks for journals of dead workers to adopt.
pub const ADOPT_INTERVAL_MS: u64 = 5_000;
/// CAS attempts when updating the journal registry.
pub const REGISTRY_CAS_ATTEMPTS: usize = 16;

/// The CAS token [`create_if_absent`] writes with on Envoy, where any token writes a missing key
/// and a token other than the key's own is refused. Tokens come from one counter per process
/// (from 1, one per write), so a key created in the moment between a read and this write, at
/// start-up, never has this one.
const CREATE_CAS: u32 = u32::MAX;

/// Writes `key` only if it does not exist; `Ok(false)` when another worker created it first.
///
/// The hosts differ on a missing key: Envoy writes it whatever the token, and writes an existing
/// key unconditionally for token 0 (`cas` `None`); ngx_wasm_module (Kong) writes a missing key for
/// token 0 only, and an existing key only for its own token. So: [`CREATE_CAS`] first (Envoy:
/// created, or refused because the key exists; Kong: always refused), then, if the key is still
/// missing (only on Kong), token 0, which Kong writes only to a missing key.
fn create_if_absent<H: Host>(host: &mut H, key: &str, value: &[u8]) -> Result<bool, StoreError> {
    if host.set(key, value, Some(CREATE_CAS))? {
        return Ok(true);
    }
    match host.get(key)? {
        (None, _) => host.set(key, value, None),
        (Some(_), _) => Ok(false),
    }
}

/// The service part of a gateway id (see `new_gateway_id`: `<service letters>-<service tag>-<random>`,
/// or `<service letters>-<random>` from filters before the tag), which tells whose journal a
/// registry entry is.
fn service_part(gateway: &str) -> &str {
    gateway.rsplit_once('-').map_or("", |(service, _)| service)
}

/// Whether two gateway ids belong to one service. An id without the tag (written by an older
/// filter, before an upgrade) is compared by its letters and digits only, so its journal is still
/// adopted after the upgrade.
fn same_service(theirs: &str, mine: &str) -> bool {
    let (t, m) = (service_part(theirs), service_part(mine));
    t == m || (!t.contains('-') && m.split('-').next() == Some(t))
}

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
    ///
    /// Every write is conditional, the first one included: an unconditional write creating the
    /// registry could overwrite the id another worker registered a moment before, and a journal
    /// missing from the registry is never adopted. A missing key has no CAS token, so the first
    /// write is [`create_if_absent`].
    pub fn register<H: Host>(&self, host: &mut H) {
        // The journal exists before its id is listed: an adopter takes a listed id without a
        // journal for one already adopted and drops it, and this worker's first tick (its first
        // journal write) may come after another worker's adoption pass.
        let mut first = Meter::new(self.gateway.clone());
        first.heartbeat_ms = host.now_ms().unwrap_or(0);
        if create_if_absent(host, &self.key, &first.encode()).is_err() {
            host.log(Level::Warn, "tollgate: cannot write the usage journal");
        }
        for _ in 0..REGISTRY_CAS_ATTEMPTS {
            let Ok((bytes, cas)) = host.get(REGISTRY_KEY) else {
                return;
            };
            let mut ids = bytes.as_deref().map(registry_decode).unwrap_or_default();
            if ids.contains(&self.gateway) {
                return;
            }
            ids.push(self.gateway.clone());
            let value = registry_encode(&ids);
            let written = match (bytes, cas) {
                (Some(_), Some(cas)) => host.set(REGISTRY_KEY, &value, Some(cas)),
                (None, _) => create_if_absent(host, REGISTRY_KEY, &value),
                // A value without a token cannot be updated conditionally: read again.
                (Some(_), None) => Ok(false),
            };
            if written.unwrap_or(false) {
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
    ///
    /// The write is a compare-and-swap against the read that found the journal ours, as in
    /// [`Journal::journal_in_flight`]: an adopter claiming it in between makes the write fail,
    /// rather than the write bringing back usage the adopter now reports (counted twice).
    pub fn sync<H: Host>(&mut self, cp: &ControlPlane, shared: &Shared, host: &mut H, now: u64) {
        let Some(meter) = &shared.meter else { return };
        let read = host.get(&self.key);
        let claimed = matches!(&read, Ok((Some(v), _)) if v.is_empty());
        let cas = read.map_or(None, |(_, cas)| cas);
        let Ok(mut m) = meter.try_borrow_mut() else {
            return;
        };
        if claimed {
            drop(m);
            return self.start_new_journal(cp, shared, host, None);
        }
        // What the claimed journal would not hold if the write below is refused.
        let unjournaled = m.unfolded();
        if let Some(catalog) = &shared.catalog {
            m.fold(catalog);
        }
        m.heartbeat_ms = now;
        let journal = m.encode();
        drop(m);
        match host.set(&self.key, &journal, cas) {
            Ok(true) => {}
            // Claimed between the read and this write: the adopter has the journal as last
            // written; this tick's usage is not in it.
            Ok(false) => return self.start_new_journal(cp, shared, host, Some(unjournaled)),
            Err(_) => host.log(Level::Warn, "tollgate: cannot write the usage journal"),
        }
        self.count_dropped(shared);
    }

    /// This worker's journal was adopted: starts a new one under a new gateway id, keeping only
    /// the usage the adopted journal does not hold (recorded after its last write, and
    /// `unjournaled`, folded since).
    fn start_new_journal<H: Host>(
        &mut self,
        cp: &ControlPlane,
        shared: &Shared,
        host: &mut H,
        unjournaled: Option<Unfolded>,
    ) {
        let Some(meter) = &shared.meter else { return };
        let Ok(mut m) = meter.try_borrow_mut() else {
            return;
        };
        host.log(Level::Warn, "tollgate: this worker's usage journal was adopted by another worker; starting a new one");
        let mut fresh = Meter::new(new_gateway_id(host, &cp.service_id));
        std::mem::swap(&mut fresh, &mut m);
        // Keep only what was recorded after the journal was last written (not yet folded).
        m.take_hot_from(&mut fresh);
        if let Some(counts) = unjournaled {
            m.restore_unfolded(counts);
        }
        self.gateway = m.gateway.clone();
        self.key = format!("{JOURNAL_PREFIX}{}", self.gateway);
        self.flush = None;
        drop(m);
        self.register(host);
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
        let new_report = !m.has_report_waiting();
        let Some(report) = m.next_report() else {
            return;
        };
        let body = serde_json::to_vec(report).unwrap_or_default();
        let (gateway, sequence) = (report.gateway.clone(), report.sequence);
        if new_report && !self.journal_in_flight(&m, host) {
            return; // adopted since this tick's sync: the next sync starts a new journal
        }
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

    /// Journals a report just put in flight, before it can reach the control plane. Otherwise
    /// the journal would still hold its entries as pending until the next tick, and a worker
    /// torn down in between (the report counted) would leave them to an adopter that reports
    /// them again under its own id: counted twice. In flight, the adopter re-sends the report
    /// under this worker's id and sequence, which the control plane counts once.
    ///
    /// Compare-and-swap against this tick's read, so a journal another worker claimed meanwhile
    /// is not brought back; `false` then, and nothing is sent.
    fn journal_in_flight<H: Host>(&self, meter: &Meter, host: &mut H) -> bool {
        let cas = match host.get(&self.key) {
            Ok((Some(v), _)) if v.is_empty() => return false,
            Ok((_, cas)) => cas,
            Err(_) => None,
        };
        match host.set(&self.key, &meter.encode(), cas) {
            Ok(written) => written,
            Err(_) => {
                // As when the tick's journal write fails: the report still goes.
                host.log(Level::Warn, "tollgate: cannot write the usage journal");
                true
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
            // Another service's journal (two stanzas sharing one `vm_id`, or one
            // `shared_data_id`) is left to that service's workers: its reports go to its own
            // service's usage route with its own token; here they would be refused whole.
            if id == self.gateway || !same_service(&id, &self.gateway) {
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

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code

    use std::cell::RefCell;
    use std::rc::Rc;

    use super::*;
    use crate::counters::SharedStore;
    use crate::host::fake::{FakeHost, World};
    use crate::link::harness::{snapshot, ControlPlane, Mode, Worker, START_MS};
    use crate::metering::ORPHAN_AFTER_MS;

    /// Workers on snapshot v1 (`a1`, `a2`), their first tick done.
    fn workers(world: &Rc<World>, cp: &mut ControlPlane, n: usize) -> Vec<Worker> {
        (0..n)
            .map(|_| {
                let mut w = Worker::start(world);
                w.tick();
                cp.serve(&mut w);
                assert_eq!(w.version(), Some("v1"));
                w
            })
            .collect()
    }

    /// Ticks and serves every live worker, one flush interval apart, until nothing is left to
    /// report (bounded).
    fn deliver_everything(world: &World, cp: &mut ControlPlane, workers: &mut [&mut Worker]) {
        for _ in 0..10 {
            world.advance_ms(1_000);
            for w in workers.iter_mut() {
                w.tick();
                cp.serve(w);
            }
        }
        for w in workers.iter() {
            let m = w.shared.meter.as_ref().unwrap().borrow();
            assert_eq!(m.unacknowledged_entries(), 0, "{} delivered all", m.gateway);
        }
    }

    fn registry(world: &World) -> Vec<String> {
        registry_decode(&world.value(REGISTRY_KEY).unwrap_or_default())
    }

    #[test]
    fn a_dead_workers_journal_is_adopted_once_and_no_hit_is_lost_or_counted_twice() {
        let world = World::new(START_MS);
        let mut cp = ControlPlane::new(snapshot("v1", &["a1", "a2"]));
        let mut ws = workers(&world, &mut cp, 3);
        let mut c = ws.pop().unwrap();
        let b = Rc::new(RefCell::new(ws.pop().unwrap()));
        let mut a = ws.pop().unwrap();
        let dead_id = c.link.gateway().to_string();
        assert_eq!(registry(&world).len(), 3);

        // C reports 5 hits; the control plane counts them but the answer is lost.
        c.hits("a1", 5);
        world.advance_ms(1_000);
        c.tick();
        cp.usage_mode = Mode::CountThenTimeout;
        cp.serve(&mut c);
        assert_eq!(cp.hits("a1"), 5);
        // 7 more, journaled on the next tick; then C's VM is torn down.
        c.hits("a1", 7);
        c.hits("a2", 2);
        world.advance_ms(100);
        c.tick();
        c.host.die();
        cp.usage_mode = Mode::Up;

        // A and B live on; C's journal is not an orphan until its heartbeat is ORPHAN_AFTER_MS
        // old.
        for _ in 0..(ORPHAN_AFTER_MS / 1_000) {
            world.advance_ms(1_000);
            for w in [&mut a, &mut *b.borrow_mut()] {
                w.tick();
                cp.serve(w);
            }
        }
        assert_eq!(
            world
                .value(&format!("{JOURNAL_PREFIX}{dead_id}"))
                .map(|v| v.is_empty()),
            Some(false)
        );
        // Now both look for orphans at the same moment: B claims C's journal between A's read
        // and A's compare-and-swap.
        world.advance_ms(1_000);
        a.link.journal.next_adopt_ms = 0;
        b.borrow_mut().link.journal.next_adopt_ms = 0;
        let journal_key = format!("{JOURNAL_PREFIX}{dead_id}");
        let b2 = Rc::clone(&b);
        world.after_get(&journal_key, move || b2.borrow_mut().tick());
        a.tick();
        let mut b = Rc::try_unwrap(b).ok().unwrap().into_inner();
        assert!(b.host.logged("adopted the usage journal of dead worker"));
        assert!(
            !a.host.logged("adopted the usage journal"),
            "A lost the compare-and-swap"
        );
        assert_eq!(world.value(&journal_key).unwrap(), b"", "claimed");
        assert!(!registry(&world).contains(&dead_id));

        deliver_everything(&world, &mut cp, &mut [&mut a, &mut b]);
        // C's report went again under its own id and sequence (counted once), the rest as B's.
        assert!(
            cp.deliveries > cp.counted.len(),
            "the lost answer was retried"
        );
        assert_eq!(cp.counted.keys().filter(|(g, _)| *g == dead_id).count(), 1);
        assert_eq!(cp.hits("a1"), 12);
        assert_eq!(cp.hits("a2"), 2);
    }

    #[test]
    fn gateway_ids_tell_services_apart_beyond_their_letters_and_digits() {
        let world = World::new(START_MS);
        let a = Worker::start_for(&world, "api_1");
        let b = Worker::start_for(&world, "api-1");
        let (ga, gb) = (a.link.gateway().to_string(), b.link.gateway().to_string());
        assert!(!same_service(&ga, &gb), "{ga} {gb}");
        let a2 = Worker::start_for(&world, "api_1");
        assert!(same_service(a2.link.gateway(), &ga));
        // A journal of a filter from before the tag: adopted by its service after an upgrade.
        assert!(same_service("api1-00ff00ff00ff00ff00000001", &ga));
        assert!(!same_service("api2-00ff00ff00ff00ff00000001", &ga));
    }

    #[test]
    fn a_dead_workers_journal_is_adopted_only_by_a_worker_of_its_own_service() {
        let world = World::new(START_MS);
        let mut cp = ControlPlane::new(snapshot("v1", &["a1"]));
        let mut ws = workers(&world, &mut cp, 2);
        let mut c = ws.pop().unwrap();
        let mut a = ws.pop().unwrap();
        // A stanza of another service in the same VM's shared data.
        let mut other = Worker::start_for(&world, "svc_2");
        other.tick();
        cp.serve(&mut other);
        let dead_id = c.link.gateway().to_string();

        c.hits("a1", 4);
        world.advance_ms(100);
        c.tick();
        c.host.die();
        for _ in 0..(ORPHAN_AFTER_MS / 1_000) + 1 {
            world.advance_ms(1_000);
            other.tick();
            cp.serve(&mut other);
        }
        // The other service's worker looks first: it leaves the orphan alone.
        other.link.journal.next_adopt_ms = 0;
        other.tick();
        assert!(!other.host.logged("adopted the usage journal"));
        assert!(registry(&world).contains(&dead_id));
        // A worker of the dead one's service adopts it and delivers its hits.
        a.link.journal.next_adopt_ms = 0;
        a.tick();
        assert!(a.host.logged("adopted the usage journal of dead worker"));
        deliver_everything(&world, &mut cp, &mut [&mut a]);
        assert_eq!(cp.hits("a1"), 4);
    }

    #[test]
    fn a_stalled_worker_taken_for_dead_starts_a_new_journal_without_double_counting() {
        let world = World::new(START_MS);
        let mut cp = ControlPlane::new(snapshot("v1", &["a1"]));
        let mut ws = workers(&world, &mut cp, 2);
        let mut c = ws.pop().unwrap();
        let mut a = ws.pop().unwrap();
        let old_id = c.link.gateway().to_string();

        // C's first report (3) is acknowledged.
        c.hits("a1", 3);
        world.advance_ms(1_000);
        c.tick();
        cp.serve(&mut c);
        // Its second (2) goes out, is journaled in flight on the next tick, and its answer is
        // slow; 4 more hits are recorded and not yet journaled when C stalls.
        c.hits("a1", 2);
        world.advance_ms(1_000);
        c.tick();
        world.advance_ms(100);
        c.tick();
        let late = c.take_calls("/usage");
        assert_eq!(late.len(), 1);
        c.hits("a1", 4);

        // A takes C for dead and delivers its journal: the report in flight under C's id.
        world.advance_ms(ORPHAN_AFTER_MS + ADOPT_INTERVAL_MS);
        a.tick();
        assert!(a.host.logged(&format!("dead worker {old_id}")));
        deliver_everything(&world, &mut cp, &mut [&mut a]);
        assert_eq!(cp.hits("a1"), 5);

        // C wakes up: what it had journaled is A's now; it keeps only the 4 unjournaled hits.
        c.tick();
        assert!(c
            .host
            .logged("adopted by another worker; starting a new one"));
        assert_ne!(c.link.gateway(), old_id);
        assert!(registry(&world).contains(&c.link.gateway().to_string()));
        // C's slow report reaches the control plane after all: a duplicate, and its answer
        // changes nothing at C.
        let stale = cp.answer(&late[0]);
        c.deliver(late[0].token, stale);
        deliver_everything(&world, &mut cp, &mut [&mut a, &mut c]);
        assert_eq!(cp.hits("a1"), 9);
        assert_eq!(cp.counted.keys().filter(|(g, _)| *g == old_id).count(), 2);
    }

    #[test]
    fn a_journal_adopted_between_the_ticks_read_and_write_is_not_brought_back() {
        let world = World::new(START_MS);
        let mut cp = ControlPlane::new(snapshot("v1", &["a1"]));
        let mut ws = workers(&world, &mut cp, 2);
        let c = Rc::new(RefCell::new(ws.pop().unwrap()));
        let a = ws.pop().unwrap();
        let old_id = c.borrow().link.gateway().to_string();
        // C journals 5 hits (pending, not reported yet), records 4 more, and stalls.
        c.borrow_mut().hits("a1", 5);
        world.advance_ms(100);
        c.borrow_mut().tick();
        c.borrow_mut().hits("a1", 4);
        world.advance_ms(ORPHAN_AFTER_MS + ADOPT_INTERVAL_MS);

        // C wakes up; A takes it for dead and adopts its journal between C's read of it and C's
        // write.
        let a = Rc::new(RefCell::new(a));
        let a2 = Rc::clone(&a);
        world.after_get(&format!("{JOURNAL_PREFIX}{old_id}"), move || {
            a2.borrow_mut().tick();
        });
        c.borrow_mut().tick();
        let mut a = Rc::try_unwrap(a).ok().unwrap().into_inner();
        let mut c = Rc::try_unwrap(c).ok().unwrap().into_inner();
        assert!(a.host.logged(&format!("dead worker {old_id}")));
        assert_eq!(
            world.value(&format!("{JOURNAL_PREFIX}{old_id}")).unwrap(),
            b"",
            "the claimed journal stays claimed"
        );
        assert_ne!(c.link.gateway(), old_id, "C starts a new journal");
        deliver_everything(&world, &mut cp, &mut [&mut a, &mut c]);
        assert_eq!(cp.hits("a1"), 9, "each hit counted once");
    }

    #[test]
    fn a_worker_dying_right_after_sending_a_report_leaves_it_in_flight_not_pending() {
        for mode in [Mode::Up, Mode::CountThenTimeout] {
            let world = World::new(START_MS);
            let mut cp = ControlPlane::new(snapshot("v1", &["a1"]));
            let mut ws = workers(&world, &mut cp, 2);
            let mut c = ws.pop().unwrap();
            let mut a = ws.pop().unwrap();
            // C journals 6 hits, sends them, the control plane counts them, and C's VM is torn
            // down before its next tick.
            c.hits("a1", 6);
            world.advance_ms(1_000);
            c.tick();
            cp.usage_mode = mode;
            cp.serve(&mut c);
            cp.usage_mode = Mode::Up;
            assert_eq!(cp.hits("a1"), 6, "{mode:?}");
            c.host.die();
            // A adopts C's journal: the report goes again under C's id, a duplicate.
            world.advance_ms(ORPHAN_AFTER_MS + ADOPT_INTERVAL_MS);
            a.tick();
            assert!(a.host.logged("adopted the usage journal"), "{mode:?}");
            deliver_everything(&world, &mut cp, &mut [&mut a]);
            assert_eq!(cp.hits("a1"), 6, "{mode:?}: counted once");
        }
    }

    #[test]
    fn reports_are_retried_through_5xx_and_timeouts_and_a_refused_one_is_dropped_and_counted() {
        let world = World::new(START_MS);
        let mut cp = ControlPlane::new(snapshot("v1", &["a1"]));
        let mut w = workers(&world, &mut cp, 1).pop().unwrap();
        w.hits("a1", 4);
        let mut sent = Vec::new();
        for (i, mode) in [
            Mode::Status(503),
            Mode::Timeout,
            Mode::Status(500),
            Mode::Status(429),
            Mode::Status(408),
            Mode::Up,
        ]
        .into_iter()
        .enumerate()
        {
            cp.usage_mode = mode;
            world.advance_ms(1_000);
            w.tick();
            let report = w.take_calls("/usage").remove(0);
            sent.push(report.body.clone());
            let answer = cp.answer(&report);
            w.deliver(report.token, answer);
            let failures = w.counter("tollgate.usage.report_failures");
            assert_eq!(failures, (i as u64 + 1).min(5), "{mode:?}");
            w.host.calls.clear();
        }
        assert!(sent.windows(2).all(|p| p[0] == p[1]), "re-sent unchanged");
        assert_eq!(cp.hits("a1"), 4);
        assert_eq!(w.counter("tollgate.usage.reports"), 1);

        // A 4xx can never be accepted: dropped, counted, never re-sent.
        w.hits("a1", 2);
        cp.usage_mode = Mode::Status(400);
        world.advance_ms(1_000);
        w.tick();
        cp.serve(&mut w);
        assert_eq!(w.counter("tollgate.usage.dropped_entries"), 1);
        assert!(w.host.logged("refused usage report"));
        world.advance_ms(1_000);
        w.tick();
        assert!(w.take_calls("/usage").is_empty());
        assert_eq!(cp.hits("a1"), 4);
    }

    #[test]
    fn two_workers_creating_the_registry_at_once_are_both_listed() {
        let world = World::new(START_MS);
        // No registry yet. B starts and registers between A's read of the missing registry and
        // A's write: A's first write must not overwrite B's id.
        let b: Rc<RefCell<Option<Worker>>> = Rc::new(RefCell::new(None));
        let (b2, w2) = (Rc::clone(&b), Rc::clone(&world));
        world.after_get(REGISTRY_KEY, move || {
            *b2.borrow_mut() = Some(Worker::start(&w2));
        });
        let a = Worker::start(&world);
        let b = b.borrow_mut().take().unwrap();
        let ids = registry(&world);
        assert_eq!(ids.len(), 2, "{ids:?}");
        assert!(ids.contains(&a.link.gateway().to_string()), "{ids:?}");
        assert!(ids.contains(&b.link.gateway().to_string()), "{ids:?}");
    }

    #[test]
    fn a_worker_is_adoptable_before_its_first_tick_even_if_another_looks_for_orphans_first() {
        let world = World::new(START_MS);
        let mut cp = ControlPlane::new(snapshot("v1", &["a1"]));
        let mut a = Worker::start(&world);
        let mut b = Worker::start(&world);
        // A's first tick (an adoption pass) runs before B's first tick.
        a.tick();
        cp.serve(&mut a);
        assert!(registry(&world).contains(&b.link.gateway().to_string()));
        b.tick();
        cp.serve(&mut b);
        // B journals 3 hits and dies: A adopts its journal and every hit is counted.
        b.hits("a1", 3);
        world.advance_ms(100);
        b.tick();
        b.host.die();
        world.advance_ms(ORPHAN_AFTER_MS + ADOPT_INTERVAL_MS);
        a.tick();
        assert!(a.host.logged("adopted the usage journal"));
        deliver_everything(&world, &mut cp, &mut [&mut a]);
        assert_eq!(cp.hits("a1"), 3);
    }

    #[test]
    fn registration_retries_through_concurrent_registry_writes() {
        let world = World::new(START_MS);
        // An earlier worker registered (creating the registry is the other test's race).
        FakeHost::new(&world)
            .set(REGISTRY_KEY, b"gw-first", None)
            .unwrap();
        // Three other workers register between this one's read and its compare-and-swap.
        for i in 0..3 {
            let mut other = FakeHost::new(&world);
            let w2 = Rc::clone(&world);
            world.after_get(REGISTRY_KEY, move || {
                let mut ids = registry(&w2);
                ids.push(format!("gw-other-{i}"));
                assert!(other
                    .set(REGISTRY_KEY, &registry_encode(&ids), None)
                    .unwrap());
            });
        }
        let w = Worker::start(&world);
        let ids = registry(&world);
        assert_eq!(ids.len(), 5, "{ids:?}");
        assert!(ids.contains(&w.link.gateway().to_string()));
        assert_eq!(world.writes(REGISTRY_KEY), 5);
    }
}
