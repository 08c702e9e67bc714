//! The snapshot install protocol.
//!
//! 1. **Poll.** Every `poll_interval_ms` a worker asks for the service's snapshot with
//!    `If-None-Match` set to the version it installed (or the one waiting for its counter
//!    records); 304 means unchanged. Any other answer than 200 or 304, a timeout, or a body that
//!    does not decode keeps the installed snapshot (counted in `snapshot.failures`), and the next
//!    poll asks again.
//! 2. **Decode.** A binary snapshot is read from the host 64 KiB at a time into a catalog
//!    ([`Catalog::compile_chunked`]): the body never sits whole in the VM's memory, and a body
//!    cut short is refused whole. A JSON snapshot is parsed in one piece.
//! 3. **Claim and prepare.** Before a catalog can serve traffic each of its new applications
//!    needs a counter record in shared data (and each new prepaid wallet a spend record). Creating 100,000 records is the slow part, so one
//!    worker claims the work with compare-and-swap on [`PREPARED_KEY`]
//!    (`preparing:<ms>:<version>`), creates the records, and marks `done:<version>` (or, when
//!    creating them failed, `failed:<version>`: it, or the next worker to look, tries again on
//!    its next tick, [`MAX_PREPARE_ATTEMPTS`] times per worker). The others keep serving their
//!    old catalog, re-check every [`PENDING_TICK_MS`], and install when they read `done:` for
//!    their version. A claim older than [`CLAIM_TIMEOUT_MS`] belongs to a
//!    worker that died: the next worker to look takes it over.
//! 4. **Swap.** Usage counted against the old catalog's indexes is folded into names, then the
//!    worker's catalog is replaced whole (a request sees one snapshot from start to end) and the
//!    last global usage is re-indexed for it.

use std::collections::HashSet;
use std::sync::Arc;

use tollgate_protocol::{GlobalUsage, Snapshot};

use super::{call_headers, failed, Failure};
use crate::catalog::Catalog;
use crate::config::ControlPlane;
use crate::global::GlobalView;
use crate::host::{Host, Level};
use crate::worker::{count_skipped, prepare_records, prepare_wallet_records, Shared};

/// Largest snapshot body accepted (100,000 applications in JSON fit well below it).
pub const MAX_SNAPSHOT_BYTES: usize = 128 * 1024 * 1024;
/// Shared-data marker of counter-record preparation: `preparing:<ms>:<version>` or `done:<version>`.
pub const PREPARED_KEY: &str = "tollgate/v1/prepared";
/// Least time between the starts of two polls when the control plane holds them (see
/// [`SnapshotSync::on_answer`]).
pub const HELD_POLL_SPACING_MS: u32 = 100;
/// Tick period while waiting for another worker to finish counter records.
pub const PENDING_TICK_MS: u32 = 20;
/// A preparation claim older than this is abandoned (its VM died) and taken over.
pub const CLAIM_TIMEOUT_MS: u64 = 5_000;

/// Attempts at creating a snapshot's counter records (one per tick while pending) before the
/// snapshot is given up.
pub const MAX_PREPARE_ATTEMPTS: u32 = 3;

/// A decoded snapshot waiting for its counter records.
struct Pending {
    catalog: Catalog,
    started_ms: u64,
    decoded_ms: u64,
    body_size: usize,
    /// Failed attempts at creating its counter records.
    prepare_attempts: u32,
}

/// One worker's side of the protocol.
#[derive(Default)]
pub struct SnapshotSync {
    /// Version of the snapshot installed. Recorded on a whole install, not on decode: a snapshot
    /// that decoded but could not be installed is asked for again at the next poll.
    version: Option<String>,
    /// Snapshot request in flight.
    poll: Option<u32>,
    next_poll_ms: u64,
    /// When the last poll started: a control plane that holds polls lets the next one start
    /// [`HELD_POLL_SPACING_MS`] after it, not a whole poll interval.
    poll_started_ms: u64,
    /// The poll in flight could not ask to be held (no version to hold yet) though the
    /// configuration wants held polls: its answer lets the first held poll start at once.
    first_of_held: bool,
    /// A decoded snapshot waiting to be installed.
    pending: Option<Pending>,
}

impl SnapshotSync {
    /// Whether `token` is this protocol's request.
    pub fn owns(&self, token: u32) -> bool {
        self.poll == Some(token)
    }

    /// Whether a decoded snapshot waits for its counter records.
    pub fn is_pending(&self) -> bool {
        self.pending.is_some()
    }

    /// Asks for the snapshot when the poll interval has passed and no request is in flight.
    pub fn poll<H: Host>(&mut self, cp: &ControlPlane, shared: &Shared, host: &mut H, now: u64) {
        if let Err(e) = self.start_poll(cp, host, now) {
            failed(
                host,
                shared,
                &format!(
                    "cannot call the control plane for a snapshot (status {})",
                    e.0
                ),
                Failure::Snapshot,
            );
        }
    }

    /// Starts the next held poll at once after an answer of a control plane that holds polls,
    /// so that no change waits for a tick in between. From a call's answer: a host that refuses
    /// a call there is asked again at the next tick, which counts a failure if it still refuses.
    pub fn poll_again<H: Host>(&mut self, cp: &ControlPlane, host: &mut H, now: u64) {
        let _ = self.start_poll(cp, host, now);
    }

    fn start_poll<H: Host>(
        &mut self,
        cp: &ControlPlane,
        host: &mut H,
        now: u64,
    ) -> Result<(), crate::host::HostStatus> {
        if self.poll.is_some() || now < self.next_poll_ms {
            return Ok(());
        }
        self.next_poll_ms = now + u64::from(cp.poll_interval_ms);
        self.poll_started_ms = now;
        let mut headers = call_headers(
            cp,
            "GET",
            format!("/gateway/v1/services/{}/snapshot", cp.service_id),
        );
        // While a snapshot waits for its counter records, asking for it again would only decode
        // it again: ask for something newer.
        let asked = self
            .pending
            .as_ref()
            .and_then(|p| p.catalog.version.as_ref())
            .or(self.version.as_ref());
        // Holding the version: ask the control plane to hold the poll until it moves (a long
        // poll), so a change arrives as it commits, not at the next poll. The call's timeout
        // covers the hold. Polls still start at most once per `poll_interval_ms`, so a control
        // plane that does not hold is polled as before, never in a loop.
        let mut timeout_ms = cp.timeout_ms;
        self.first_of_held = cp.snapshot_wait_s > 0 && asked.is_none();
        if let Some(v) = asked {
            headers.push(("if-none-match", format!("\"{v}\"")));
            if cp.snapshot_wait_s > 0 {
                headers.push(("prefer", format!("wait={}", cp.snapshot_wait_s)));
                timeout_ms = timeout_ms.saturating_add(cp.snapshot_wait_s.saturating_mul(1_000));
            }
        }
        // Newest compact version first (TGS2 carries app keys); an older control plane answers
        // TGS1 or JSON, which this filter reads too.
        headers.push((
            "accept",
            format!(
                "{}, {}, application/json",
                tollgate_protocol::binary::MEDIA_TYPE_V2,
                tollgate_protocol::binary::MEDIA_TYPE
            ),
        ));
        self.poll = Some(host.http_call(&cp.upstream, &headers, &[], timeout_ms)?);
        Ok(())
    }

    /// The control plane answered the snapshot request (`status` `None`: reset or timeout).
    pub fn on_answer<H: Host>(
        &mut self,
        status: Option<u16>,
        body_size: usize,
        tick_ms: u32,
        last_global: Option<&GlobalUsage>,
        shared: &mut Shared,
        host: &mut H,
    ) {
        self.poll = None;
        // The control plane held this poll (or would have), or this was the first poll and the
        // next can be held: the next one may start at once, for the next change, but only after
        // an answer that was taken (a 304, or a 200 that decoded): a refused 200 (too large, not a
        // snapshot, a proxy's page) waits for the poll interval, never loops on downloads. Spaced
        // by HELD_POLL_SPACING_MS all the same, so a burst of changes cannot turn polling into a
        // loop either.
        let may_hurry =
            self.first_of_held || host.call_response_header("preference-applied").is_some();
        let taken = match status {
            Some(200) => {
                let before = self.version.clone();
                self.decode(body_size, tick_ms, last_global, shared, host);
                self.pending.is_some() || self.version != before
            }
            Some(304) => true,
            other => {
                failed(
                    host,
                    shared,
                    &format!("snapshot request answered {other:?}; keeping the last snapshot"),
                    Failure::Snapshot,
                );
                false
            }
        };
        if taken && may_hurry {
            self.next_poll_ms = self.poll_started_ms + u64::from(HELD_POLL_SPACING_MS);
        }
    }

    fn decode<H: Host>(
        &mut self,
        body_size: usize,
        tick_ms: u32,
        last_global: Option<&GlobalUsage>,
        shared: &mut Shared,
        host: &mut H,
    ) {
        let started_ms = host.now_ms().unwrap_or(0);
        if body_size > MAX_SNAPSHOT_BYTES {
            return failed(
                host,
                shared,
                &format!("snapshot of {body_size} bytes exceeds {MAX_SNAPSHOT_BYTES}"),
                Failure::Snapshot,
            );
        }
        // Either compact version: the decoder tells them apart by their magic.
        let binary = host.call_response_header("content-type").is_some_and(|t| {
            [
                tollgate_protocol::binary::MEDIA_TYPE,
                tollgate_protocol::binary::MEDIA_TYPE_V2,
            ]
            .iter()
            .any(|m| t.starts_with(m.as_bytes()))
        });
        let compiled = if binary {
            // Read 64 KiB at a time: the body never sits whole in this VM's memory.
            Catalog::compile_chunked(body_size, |start, max_len| {
                host.call_response_body_range(start, max_len)
            })
        } else {
            let body = host.call_response_body(body_size);
            match serde_json::from_slice::<Snapshot>(&body) {
                Ok(s) => Catalog::compile(&s, "snapshot"),
                Err(e) => {
                    return failed(
                        host,
                        shared,
                        &format!("snapshot is not valid JSON: {e}"),
                        Failure::Snapshot,
                    )
                }
            }
        };
        let catalog = match compiled {
            Ok(c) => c,
            Err(e) => {
                return failed(
                    host,
                    shared,
                    &format!("snapshot refused: {e}"),
                    Failure::Snapshot,
                )
            }
        };
        let compiled_ms = host.now_ms().unwrap_or(0);
        self.pending = Some(Pending {
            catalog,
            started_ms,
            decoded_ms: compiled_ms.saturating_sub(started_ms),
            body_size,
            prepare_attempts: 0,
        });
        self.try_install(tick_ms, last_global, shared, host);
        if self.pending.is_some() {
            // Waiting for another worker's counter records: look again soon, not a tick later.
            let _ = host.set_tick_period_ms(PENDING_TICK_MS);
        }
    }

    /// Installs the pending catalog once its counter records exist (steps 3 and 4 of the module
    /// documentation); a no-op while nothing is pending.
    pub fn try_install<H: Host>(
        &mut self,
        tick_ms: u32,
        last_global: Option<&GlobalUsage>,
        shared: &mut Shared,
        host: &mut H,
    ) {
        let Some(pending) = self.pending.as_ref() else {
            return;
        };
        let now = host.now_ms().unwrap_or(0);
        let version = pending.catalog.version.clone().unwrap_or_default();
        let (marker, cas) = host.get(PREPARED_KEY).unwrap_or((None, None));
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
            if !host
                .set(PREPARED_KEY, claim.as_bytes(), cas)
                .unwrap_or(false)
            {
                return; // another VM claimed it first
            }
            // The claim's token: the outcome is written over this claim only, not over the claim
            // of a worker that took over meanwhile.
            let claim_cas = match host.get(PREPARED_KEY) {
                Ok((Some(m), cas)) if m == claim.as_bytes() => cas,
                _ => None,
            };
            // Records exist for every application and wallet of this worker's previous catalog:
            // create only the new ones.
            let (known, known_wallets): (HashSet<&str>, HashSet<&str>) = shared
                .catalog
                .as_ref()
                .map(|c| {
                    (
                        c.apps.iter().map(|a| a.id.as_str()).collect(),
                        c.wallets.iter().map(|w| w.id.as_str()).collect(),
                    )
                })
                .unwrap_or_default();
            let ok = prepare_records(
                host,
                pending
                    .catalog
                    .apps
                    .iter()
                    .filter(|a| !known.contains(a.id.as_str())),
            ) && prepare_wallet_records(
                host,
                pending
                    .catalog
                    .wallets
                    .iter()
                    .filter(|w| !known_wallets.contains(w.id.as_str())),
            );
            drop((known, known_wallets));
            // `done:` only once every record exists: the others install on it. A failure releases
            // the claim (`failed:`), so the next worker to look tries at once.
            let outcome = if ok { "done" } else { "failed" };
            if let Some(cas) = claim_cas {
                let _ = host.set(
                    PREPARED_KEY,
                    format!("{outcome}:{version}").as_bytes(),
                    Some(cas),
                );
            }
            if !ok {
                let attempts = self.pending.as_ref().map_or(0, |p| p.prepare_attempts) + 1;
                let gave_up = attempts >= MAX_PREPARE_ATTEMPTS;
                if gave_up {
                    self.pending = None;
                } else if let Some(p) = self.pending.as_mut() {
                    p.prepare_attempts = attempts;
                }
                return failed(
                    host,
                    shared,
                    &format!(
                        "cannot prepare counter records for snapshot {version} (attempt {attempts} of {MAX_PREPARE_ATTEMPTS}); {}",
                        if gave_up { "keeping the last snapshot" } else { "will retry" }
                    ),
                    Failure::Snapshot,
                );
            }
        }
        let Some(pending) = self.pending.take() else {
            return;
        };
        let _ = host.set_tick_period_ms(tick_ms);
        // Usage counted against the old catalog's indexes is named before the swap.
        if let (Some(meter), Some(old)) = (&shared.meter, &shared.catalog) {
            if let Ok(mut m) = meter.try_borrow_mut() {
                m.fold(old);
            }
        }
        host.log(
            Level::Info,
            &format!(
                "tollgate: snapshot {} applied: {} applications, {} plans, {} bytes in {} ms (decode {} ms, {})",
                if version.is_empty() { "-" } else { version.as_str() },
                pending.catalog.apps.len(),
                pending.catalog.plans.len(),
                pending.body_size,
                host.now_ms().unwrap_or(now).saturating_sub(pending.started_ms),
                pending.decoded_ms,
                if done { "counter records made by another worker" } else { "counter records made here" },
            ),
        );
        let catalog = pending.catalog;
        if let Some(summary) = catalog.skipped_summary() {
            host.log(
                Level::Warn,
                &format!("tollgate: snapshot {version}: {summary}"),
            );
            count_skipped(shared.stats.as_deref(), &catalog);
        }
        // Global usage is indexed by catalog positions: re-index the last answer for the new one.
        shared.global = last_global.map(|g| Arc::new(GlobalView::build(&catalog, g)));
        self.version = catalog.version.clone();
        shared.catalog = Some(Arc::new(catalog));
        if let Some(st) = &shared.stats {
            st.snapshot_updates.bump();
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code

    use std::cell::RefCell;
    use std::rc::Rc;

    use super::*;
    use crate::host::fake::World;
    use crate::link::harness::{snapshot, ControlPlane, Mode, Worker, START_MS};

    fn apps(n: usize) -> Vec<String> {
        (0..n).map(|i| format!("app-{i:04}")).collect()
    }

    fn refs(ids: &[String]) -> Vec<&str> {
        ids.iter().map(String::as_str).collect()
    }

    /// A worker on snapshot `v1` of `ids`, served by `cp`.
    fn installed(world: &Rc<World>, cp: &mut ControlPlane) -> Worker {
        let mut w = Worker::start(world);
        w.tick();
        cp.serve(&mut w);
        assert_eq!(w.version(), cp.snapshot.version.as_deref());
        w
    }

    fn has_record(world: &World, w: &Worker, app: &str) -> bool {
        let catalog = w.catalog().unwrap();
        let app = &catalog.apps[catalog.app_index(app).unwrap()];
        world.value(&app.counter_key()).is_some()
    }

    #[test]
    fn a_snapshot_read_in_pieces_installs_whole_with_every_record() {
        let world = World::new(START_MS);
        let ids = apps(300);
        let mut cp = ControlPlane::new(snapshot("v1", &refs(&ids)));
        let mut w = Worker::start(&world);
        // The host hands the body out 1,000 bytes at a time.
        w.host.max_read_bytes = 1_000;
        w.tick();
        assert!(w.catalog().is_none(), "nothing before the first snapshot");
        cp.serve(&mut w);
        let catalog = w.catalog().unwrap();
        assert_eq!(catalog.version.as_deref(), Some("v1"));
        assert_eq!(catalog.apps.len(), 300);
        assert!(w.host.body_reads.get() > 10, "read in pieces");
        for id in &ids {
            assert!(has_record(&world, &w, id), "{id} has its counter record");
        }
        assert_eq!(world.value(PREPARED_KEY).unwrap(), b"done:v1");
        assert_eq!(w.counter("tollgate.snapshot.updates"), 1);
        assert_eq!(w.host.tick_ms, Some(w.link.tick_ms()));

        // The next poll names the version; 304 changes nothing.
        world.advance_ms(500);
        w.tick();
        let polls = w.take_calls("/snapshot");
        assert_eq!(polls[0].header("if-none-match"), Some("\"v1\""));
        let before = w.shared.catalog.clone().unwrap();
        w.deliver(polls[0].token, cp.answer(&polls[0]));
        assert!(Arc::ptr_eq(&before, w.shared.catalog.as_ref().unwrap()));
        assert_eq!(w.counter("tollgate.snapshot.updates"), 1);
        assert_eq!(w.counter("tollgate.snapshot.failures"), 0);
    }

    #[test]
    fn a_poll_holding_a_version_asks_to_be_held_and_is_never_repeated_in_a_loop() {
        let world = World::new(START_MS);
        let mut cp = ControlPlane::new(snapshot("v1", &["a1"]));
        let mut w = Worker::start(&world);
        w.tick();
        let first = w.take_calls("/snapshot").remove(0);
        assert_eq!(first.header("prefer"), None, "no version to hold yet");
        assert_eq!(first.timeout_ms, 5_000);
        w.deliver(first.token, cp.answer(&first));
        assert_eq!(w.version(), Some("v1"));

        world.advance_ms(500);
        w.tick();
        let held = w.take_calls("/snapshot").remove(0);
        assert_eq!(held.header("prefer"), Some("wait=10"));
        assert_eq!(held.timeout_ms, 15_000, "the call outlives the hold");
        // While it is held, no other poll starts.
        for _ in 0..20 {
            world.advance_ms(500);
            w.tick();
        }
        assert!(w.take_calls("/snapshot").is_empty());
        w.deliver(held.token, cp.answer(&held));

        // A control plane that answers at once (one that does not hold) is polled once per
        // poll interval, as without the preference.
        w.tick();
        let p = w.take_calls("/snapshot").remove(0);
        w.deliver(p.token, cp.answer(&p));
        world.advance_ms(499);
        w.tick();
        assert!(w.take_calls("/snapshot").is_empty());
        world.advance_ms(1);
        w.tick();
        assert_eq!(w.take_calls("/snapshot").len(), 1);
    }

    #[test]
    fn after_a_held_poll_the_next_one_starts_at_once_but_never_in_a_loop() {
        let world = World::new(START_MS);
        let mut cp = ControlPlane::new(snapshot("v1", &["a1"]));
        cp.holds = true;
        let mut w = Worker::start(&world);
        w.tick();
        cp.serve(&mut w);
        world.advance_ms(500);
        w.tick();
        let held = w.take_calls("/snapshot").remove(0);
        assert_eq!(held.header("prefer"), Some("wait=10"));
        // Held 10 s, then the answer: the next held poll starts from the answer, not a tick later.
        world.advance_ms(10_000);
        w.deliver(held.token, cp.answer(&held));
        let next = w.take_calls("/snapshot");
        assert_eq!(next.len(), 1, "started from the answer");
        // A change answered at once: the next poll waits HELD_POLL_SPACING_MS from the start of
        // the one answered, however many changes come.
        cp.snapshot = snapshot("v2", &["a1", "a2"]);
        w.deliver(next[0].token, cp.answer(&next[0]));
        assert_eq!(w.version(), Some("v2"));
        assert!(w.take_calls("/snapshot").is_empty(), "spaced");
        world.advance_ms(u64::from(HELD_POLL_SPACING_MS));
        w.tick();
        let after = w.take_calls("/snapshot");
        assert_eq!(after.len(), 1);
        assert_eq!(after[0].header("if-none-match"), Some("\"v2\""));
    }

    #[test]
    fn a_refused_snapshot_from_a_holding_control_plane_is_asked_again_only_at_the_poll_interval() {
        let world = World::new(START_MS);
        let mut cp = ControlPlane::new(snapshot("v1", &["a1"]));
        cp.holds = true;
        let mut w = Worker::start(&world);
        w.tick();
        cp.serve(&mut w);
        world.advance_ms(500);
        w.tick();
        let mut call = w.take_calls("/snapshot").remove(0);
        // Twenty answers that cannot be decoded, each after a 200 ms download: one poll per
        // poll interval, not one per answer.
        let mut polls = 0;
        for _ in 0..20 {
            world.advance_ms(200);
            let mut bad = cp.answer(&call);
            cp.snapshot = snapshot("v2", &["a1"]);
            bad.status = Some(200);
            bad.body = b"<html>proxy error</html>".to_vec();
            bad.headers.retain(|(k, _)| k != "content-type");
            bad.headers
                .push(("content-type".into(), b"text/html".to_vec()));
            w.deliver(call.token, bad);
            let mut next = w.take_calls("/snapshot");
            while next.is_empty() {
                world.advance_ms(100);
                w.tick();
                next = w.take_calls("/snapshot");
            }
            polls += 1;
            call = next.remove(0);
        }
        assert_eq!(polls, 20);
        assert!(
            world.now_ms() - START_MS >= 20 * 500,
            "each refused answer waited for the poll interval"
        );
        assert_eq!(w.version(), Some("v1"));
    }

    #[test]
    fn failures_and_bodies_cut_short_keep_the_old_snapshot_until_a_new_one_installs_whole() {
        let world = World::new(START_MS);
        let mut cp = ControlPlane::new(snapshot("v1", &["a1", "a2"]));
        let mut w = installed(&world, &mut cp);
        let old = w.shared.catalog.clone().unwrap();
        cp.snapshot = snapshot("v2", &["a1", "a2", "a3"]);

        type Fail = fn(&mut ControlPlane);
        let cases: [(&str, Fail, bool); 5] = [
            ("503", |cp| cp.snapshot_mode = Mode::Status(503), false),
            ("500", |cp| cp.snapshot_mode = Mode::Status(500), false),
            ("timeout", |cp| cp.snapshot_mode = Mode::Timeout, false),
            ("binary cut short", |cp| cp.snapshot_mode = Mode::Up, true),
            ("JSON cut short", |cp| cp.binary = false, true),
        ];
        for (i, (what, set_up, cut)) in cases.into_iter().enumerate() {
            set_up(&mut cp);
            world.advance_ms(500);
            w.tick();
            let poll = w.take_calls("/snapshot").remove(0);
            // A failed snapshot never advances the version asked for.
            assert_eq!(poll.header("if-none-match"), Some("\"v1\""), "{what}");
            let mut answer = cp.answer(&poll);
            if cut {
                // The body ends early (reset mid-body) while its announced size stays.
                answer.announced_size = Some(answer.body.len());
                answer.body.truncate(answer.body.len() - 10);
            }
            w.deliver(poll.token, answer);
            assert!(
                Arc::ptr_eq(&old, w.shared.catalog.as_ref().unwrap()),
                "{what}: the old snapshot is kept"
            );
            assert_eq!(
                w.counter("tollgate.snapshot.failures"),
                i as u64 + 1,
                "{what}"
            );
        }
        assert!(
            world
                .value(&{
                    let mut k = crate::catalog::COUNTER_KEY_PREFIX.to_string();
                    k.push_str("a3");
                    k
                })
                .is_none(),
            "nothing of a refused snapshot reached shared data"
        );

        // The control plane is back: the next poll installs v2 whole.
        cp.binary = true;
        world.advance_ms(500);
        w.tick();
        cp.serve(&mut w);
        assert_eq!(w.version(), Some("v2"));
        assert_eq!(w.catalog().unwrap().apps.len(), 3);
        assert!(has_record(&world, &w, "a3"));
        assert_eq!(w.counter("tollgate.snapshot.updates"), 2);
    }

    #[test]
    fn of_two_racing_workers_one_makes_the_records_and_both_install() {
        let world = World::new(START_MS);
        let mut cp = ControlPlane::new(snapshot("v1", &["a1"]));
        let mut a = installed(&world, &mut cp);
        let b = Rc::new(RefCell::new(installed(&world, &mut cp)));
        let cp = Rc::new(RefCell::new(cp));
        cp.borrow_mut().snapshot = snapshot("v2", &["a1", "a2"]);
        world.advance_ms(500);
        a.tick();
        b.borrow_mut().tick();
        let poll_a = a.take_calls("/snapshot").remove(0);
        let answer_a = cp.borrow_mut().answer(&poll_a);

        // Between A's read of the marker and its compare-and-swap, B gets v2, claims the work,
        // makes the records and installs.
        let (b2, cp2) = (Rc::clone(&b), Rc::clone(&cp));
        world.after_get(PREPARED_KEY, move || {
            let mut b = b2.borrow_mut();
            let poll = b.take_calls("/snapshot").remove(0);
            let answer = cp2.borrow_mut().answer(&poll);
            b.deliver(poll.token, answer);
        });
        a.deliver(poll_a.token, answer_a);
        let b = Rc::try_unwrap(b).ok().unwrap().into_inner();
        assert_eq!(b.version(), Some("v2"));
        assert!(b.host.logged("counter records made here"));
        // A lost the claim: it keeps v1 and looks again soon.
        assert_eq!(a.version(), Some("v1"));
        assert_eq!(a.host.tick_ms, Some(PENDING_TICK_MS));

        world.advance_ms(u64::from(PENDING_TICK_MS));
        a.tick();
        assert_eq!(a.version(), Some("v2"));
        assert!(a.host.logged("counter records made by another worker"));
        assert_eq!(a.host.tick_ms, Some(a.link.tick_ms()));
        let a2 = {
            let c = a.catalog().unwrap();
            c.apps[c.app_index("a2").unwrap()].counter_key()
        };
        assert_eq!(world.writes(&a2), 1, "the new record is made once");
        assert_eq!(
            world.writes(PREPARED_KEY),
            4,
            "v1 claim + done, v2 claim + done"
        );
    }

    #[test]
    fn records_that_cannot_be_made_are_never_marked_done_and_are_made_on_a_retry() {
        let world = World::new(START_MS);
        let mut cp = ControlPlane::new(snapshot("v1", &["a1"]));
        let mut a = installed(&world, &mut cp);
        let mut b = installed(&world, &mut cp);
        cp.snapshot = snapshot("v2", &["a1", "a2"]);

        // Shared data refuses new counter records: A claims v2's and cannot make them.
        world.refuse_writes(Some(crate::catalog::COUNTER_KEY_PREFIX));
        world.advance_ms(500);
        a.tick();
        cp.serve(&mut a);
        assert_eq!(a.version(), Some("v1"));
        assert!(a.link.snapshot.is_pending(), "A tries again");
        assert_eq!(world.value(PREPARED_KEY).unwrap(), b"failed:v2");
        // B gets v2 and does not install it without a2's record.
        b.tick();
        cp.serve(&mut b);
        assert_eq!(b.version(), Some("v1"));
        assert_ne!(world.value(PREPARED_KEY).unwrap(), b"done:v2");

        // Shared data takes writes again: the next tick makes the records and both install.
        world.refuse_writes(None);
        world.advance_ms(u64::from(PENDING_TICK_MS));
        a.tick();
        b.tick();
        assert_eq!(a.version(), Some("v2"));
        assert_eq!(b.version(), Some("v2"));
        assert!(has_record(&world, &a, "a2"));
        assert_eq!(world.value(PREPARED_KEY).unwrap(), b"done:v2");
        assert_eq!(a.host.tick_ms, Some(a.link.tick_ms()));
    }

    #[test]
    fn a_snapshot_given_up_before_it_installed_is_fetched_again_at_the_next_poll() {
        let world = World::new(START_MS);
        let mut cp = ControlPlane::new(snapshot("v1", &["a1"]));
        let mut w = installed(&world, &mut cp);
        cp.snapshot = snapshot("v2", &["a1", "a2"]);

        // v2 decodes, but its counter records cannot be made: given up after every attempt.
        world.refuse_writes(Some(crate::catalog::COUNTER_KEY_PREFIX));
        world.advance_ms(500);
        w.tick();
        cp.serve(&mut w);
        for _ in 1..MAX_PREPARE_ATTEMPTS {
            assert!(w.link.snapshot.is_pending());
            world.advance_ms(u64::from(PENDING_TICK_MS));
            w.tick();
            w.host.calls.clear();
        }
        assert!(!w.link.snapshot.is_pending());
        assert_eq!(
            w.version(),
            Some("v1"),
            "the last good snapshot is enforced"
        );

        // The next poll still names v1, so the control plane sends v2 again, and it installs.
        world.refuse_writes(None);
        world.advance_ms(500);
        w.tick();
        let poll = w.take_calls("/snapshot").remove(0);
        assert_eq!(poll.header("if-none-match"), Some("\"v1\""));
        w.deliver(poll.token, cp.answer(&poll));
        assert_eq!(w.version(), Some("v2"));
        assert!(has_record(&world, &w, "a2"));
    }

    #[test]
    fn a_claim_left_by_a_dead_worker_is_taken_over_after_the_timeout() {
        let world = World::new(START_MS);
        let mut cp = ControlPlane::new(snapshot("v1", &["a1"]));
        let mut a = installed(&world, &mut cp);
        let mut b = installed(&world, &mut cp);
        let old_b = b.shared.catalog.clone().unwrap();
        cp.snapshot = snapshot("v2", &["a1", "a2", "a3"]);

        // A claims v2's records and dies right after writing the claim.
        a.host.die_after_set = Some(PREPARED_KEY.to_string());
        world.advance_ms(500);
        a.tick();
        cp.serve(&mut a);
        assert!(a.host.is_dead());
        let marker = String::from_utf8(world.value(PREPARED_KEY).unwrap()).unwrap();
        assert!(marker.starts_with("preparing:"), "{marker}");

        // B gets v2 and waits for A's records, serving v1 meanwhile.
        b.tick();
        let poll = b.take_calls("/snapshot").remove(0);
        let answer = cp.answer(&poll);
        b.deliver(poll.token, answer);
        for _ in 0..(CLAIM_TIMEOUT_MS / 1_000) {
            assert!(Arc::ptr_eq(&old_b, b.shared.catalog.as_ref().unwrap()));
            assert!(b.link.snapshot.is_pending());
            assert_eq!(b.host.tick_ms, Some(PENDING_TICK_MS));
            world.advance_ms(999);
            b.tick();
            b.host.calls.clear();
        }
        // Past the timeout B takes the claim over and installs v2 with every record.
        world.advance_ms(CLAIM_TIMEOUT_MS);
        b.tick();
        assert_eq!(b.version(), Some("v2"));
        assert!(b.host.logged("counter records made here"));
        for id in ["a1", "a2", "a3"] {
            assert!(has_record(&world, &b, id), "{id}");
        }
        assert_eq!(world.value(PREPARED_KEY).unwrap(), b"done:v2");
    }
}
