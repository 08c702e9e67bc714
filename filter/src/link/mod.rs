//! The link to the control plane (control-plane mode), driven by each worker's `on_tick` and
//! `on_http_call_response`. Two protocols, each in its own module with native tests against
//! [`crate::host::fake`]:
//! - [`snapshot`]: poll the service's snapshot and install it whole, one worker creating the
//!   counter records for all (the claim protocol);
//! - [`journal`]: usage reports retried until acknowledged, each worker's unreported usage kept
//!   in a journal in shared data, journals of dead workers adopted.
//!
//! This module is the glue: it owns the timers, the global-usage poll (global quotas), and routes
//! each call's answer to the protocol that made it.
//!
//! Only `dispatch_http_call` from `on_tick` is used, to a cluster name (Envoy) or `host:port`
//! (Kong): no gRPC, no shared queues. While the control plane is away the last snapshot keeps
//! being enforced and usage stays buffered.

#[cfg(test)]
mod harness;
pub mod journal;
pub mod snapshot;

use std::hash::{BuildHasher, Hasher};
use std::sync::Arc;

use tollgate_protocol::GlobalUsage;

use crate::config::ControlPlane;
use crate::global::GlobalView;
use crate::host::{Host, Level};
use crate::worker::Shared;
use journal::Journal;
use snapshot::SnapshotSync;

pub struct Link {
    cp: ControlPlane,
    /// This gateway process, shared by all its workers (global quotas leave its usage out).
    instance: String,
    snapshot: SnapshotSync,
    journal: Journal,
    /// Global usage request in flight, and the last answer (re-indexed when the catalog changes).
    global_poll: Option<u32>,
    last_global: Option<GlobalUsage>,
    next_global_ms: u64,
}

/// Shared-data key of this gateway process's instance id.
const INSTANCE_KEY: &str = "tollgate/v1/instance";

/// The instance id all workers of this process share: the first worker to configure creates it.
/// Shared data has no create-if-absent, so two workers configuring at the same instant could each
/// keep their own id; the only effect is that one counts the other's usage twice (stricter, never
/// looser, enforcement) until the process restarts.
fn instance_id<H: Host>(host: &mut H, service: &str) -> String {
    let read = |host: &mut H| match host.get(INSTANCE_KEY) {
        Ok((Some(v), _)) if !v.is_empty() => Some(String::from_utf8_lossy(&v).into_owned()),
        _ => None,
    };
    if let Some(id) = read(host) {
        return id;
    }
    let id = format!("inst-{}", new_gateway_id(host, service));
    let _ = host.set(INSTANCE_KEY, id.as_bytes(), None);
    read(host).unwrap_or(id)
}

fn new_gateway_id<H: Host>(host: &H, service: &str) -> String {
    // RandomState is seeded from the host's WASI random_get: distinct per worker VM.
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u64(host.now_ms().unwrap_or(0));
    let service_full = service;
    let service: String = service
        .chars()
        .filter(char::is_ascii_alphanumeric)
        .take(32)
        .collect();
    // The tag tells apart services whose ids agree on those 32 letters and digits (`api_1` and
    // `api-1`): journal adoption compares it (see `journal::same_service`).
    let mut tag: u32 = 0x811c_9dc5;
    for b in service_full.bytes() {
        tag = (tag ^ u32::from(b)).wrapping_mul(0x0100_0193); // FNV-1a
    }
    format!(
        "{service}-{tag:08x}-{:016x}{:08x}",
        h.finish(),
        host.now_ms().unwrap_or(0) as u32
    )
}

/// Headers of a call to the control plane.
fn call_headers(cp: &ControlPlane, method: &str, path: String) -> Vec<(&'static str, String)> {
    vec![
        (":method", method.to_string()),
        (":path", path),
        (":authority", cp.authority.clone()),
        ("authorization", format!("Bearer {}", cp.token)),
    ]
}

/// Which stat a failed exchange with the control plane counts in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Failure {
    /// `snapshot.failures`: snapshot and global usage.
    Snapshot,
    /// `usage.report_failures`.
    Usage,
}

fn failed<H: Host>(host: &H, shared: &Shared, what: &str, kind: Failure) {
    host.log(Level::Warn, &format!("tollgate: {what}"));
    if let Some(st) = &shared.stats {
        match kind {
            Failure::Snapshot => st.snapshot_failures.bump(),
            Failure::Usage => st.usage_report_failures.bump(),
        }
    }
}

impl Link {
    pub fn new<H: Host>(cp: ControlPlane, host: &mut H) -> Link {
        let gateway = new_gateway_id(host, &cp.service_id);
        Link {
            journal: Journal::new(gateway),
            instance: instance_id(host, &cp.service_id),
            cp,
            snapshot: SnapshotSync::default(),
            global_poll: None,
            last_global: None,
            next_global_ms: 0,
        }
    }

    pub fn gateway(&self) -> &str {
        self.journal.gateway()
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
    pub fn register<H: Host>(&self, host: &mut H) {
        self.journal.register(host);
    }

    pub fn on_tick<H: Host>(&mut self, shared: &mut Shared, host: &mut H) {
        let Ok(now) = host.now_ms() else { return };
        let tick_ms = self.tick_ms();
        self.snapshot
            .try_install(tick_ms, self.last_global.as_ref(), shared, host);
        self.journal.sync(&self.cp, shared, host, now);
        self.snapshot.poll(&self.cp, shared, host, now);
        self.poll_global(shared, host, now);
        self.journal.flush(&self.cp, shared, host, now);
        self.journal.adopt(shared, host, now);
    }

    /// Writes this link's journal now (the native shell, when Envoy drops its configuration): the
    /// usage in it is delivered by the next link of the process, which adopts the journal once its
    /// heartbeat is stale, as a wasm worker adopts a dead worker's.
    pub fn persist<H: Host>(&mut self, shared: &Shared, host: &mut H) {
        if let Ok(now) = host.now_ms() {
            self.journal.sync(&self.cp, shared, host, now);
        }
    }

    fn poll_global<H: Host>(&mut self, shared: &Shared, host: &mut H, now: u64) {
        if self.global_poll.is_some() || shared.catalog.is_none() || now < self.next_global_ms {
            return;
        }
        self.next_global_ms = now + u64::from(self.cp.poll_interval_ms);
        let path = format!(
            "/gateway/v1/services/{}/global_usage?instance={}",
            self.cp.service_id, self.instance
        );
        match host.http_call(
            &self.cp.upstream,
            &call_headers(&self.cp, "GET", path),
            &[],
            self.cp.timeout_ms,
        ) {
            Ok(token) => self.global_poll = Some(token),
            Err(e) => failed(
                host,
                shared,
                &format!(
                    "cannot call the control plane for global usage (status {})",
                    e.0
                ),
                Failure::Snapshot,
            ),
        }
    }

    pub fn on_response<H: Host>(
        &mut self,
        token: u32,
        body_size: usize,
        shared: &mut Shared,
        host: &mut H,
    ) {
        let status = host.call_response_status();
        if self.snapshot.owns(token) {
            let tick_ms = self.tick_ms();
            self.snapshot.on_answer(
                status,
                body_size,
                tick_ms,
                self.last_global.as_ref(),
                shared,
                host,
            );
            if let Ok(now) = host.now_ms() {
                self.snapshot.poll_again(&self.cp, host, now);
            }
        } else if self.global_poll == Some(token) {
            self.global_poll = None;
            self.on_global_answer(status, body_size, shared, host);
        } else if self.journal.owns(token) {
            self.journal.on_answer(status, shared, host);
        }
    }

    fn on_global_answer<H: Host>(
        &mut self,
        status: Option<u16>,
        body_size: usize,
        shared: &mut Shared,
        host: &mut H,
    ) {
        match status {
            Some(200) => {
                let body = host.call_response_body(body_size);
                match serde_json::from_slice::<GlobalUsage>(&body) {
                    Ok(g) => {
                        shared.global = shared
                            .catalog
                            .as_ref()
                            .map(|c| Arc::new(GlobalView::build(c, &g)));
                        self.last_global = Some(g);
                    }
                    Err(e) => failed(
                        host,
                        shared,
                        &format!("global usage is not valid JSON: {e}"),
                        Failure::Snapshot,
                    ),
                }
            }
            other => failed(
                host,
                shared,
                &format!("global usage request answered {other:?}; keeping the last"),
                Failure::Snapshot,
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code

    use tollgate_protocol::Period;

    use super::harness::{prepaid_snapshot, snapshot, ControlPlane, Worker, START_MS};
    use super::*;
    use crate::counters::OthersUsage;
    use crate::decision::Reason;
    use crate::host::fake::{Answer, World};
    use crate::metering::ORPHAN_AFTER_MS;
    use crate::periods::window;

    /// Answers the snapshot polls made so far (304 while the version is unchanged).
    fn answer_snapshot_polls(w: &mut Worker, cp: &mut ControlPlane) {
        for call in w.take_calls("/snapshot") {
            let answer = cp.answer(&call);
            w.deliver(call.token, answer);
        }
    }

    #[test]
    fn global_usage_survives_failures_and_follows_the_catalog_across_a_swap() {
        let world = World::new(START_MS);
        let mut cp = ControlPlane::new(snapshot("v1", &["a1", "a2"]));
        let mut w = Worker::start(&world);
        w.tick();
        cp.serve(&mut w);
        let minute = window(Period::Minute, w.host.now_secs().unwrap()).start;
        let others = |w: &Worker, app: &str| {
            let c = w.catalog().unwrap();
            let g = w.shared.global.as_ref().unwrap();
            g.get(c.app_index(app).unwrap(), 0, Period::Minute, minute)
        };

        // Asked only once a catalog is installed; the answer is indexed for it.
        world.advance_ms(500);
        w.tick();
        answer_snapshot_polls(&mut w, &mut cp);
        let call = w.take_calls("/global_usage").remove(0);
        assert!(call
            .path()
            .ends_with(&format!("instance={}", w.link.instance())));
        let body = format!(
            r#"{{"entries": [{{"application": "a2", "metric": "hits", "period": "minute",
                "window_start": {minute}, "value": 7}}]}}"#
        );
        w.deliver(
            call.token,
            Answer {
                body: body.into_bytes(),
                ..Answer::status(200)
            },
        );
        assert_eq!(others(&w, "a2"), 7);

        // 503, a timeout and a body that is not JSON keep the last answer.
        for (i, answer) in [
            Answer::status(503),
            Answer::failed(),
            Answer {
                body: b"{".to_vec(),
                ..Answer::status(200)
            },
        ]
        .into_iter()
        .enumerate()
        {
            world.advance_ms(500);
            w.tick();
            answer_snapshot_polls(&mut w, &mut cp);
            let call = w.take_calls("/global_usage").remove(0);
            w.deliver(call.token, answer);
            assert_eq!(others(&w, "a2"), 7);
            assert_eq!(w.counter("tollgate.snapshot.failures"), i as u64 + 1);
        }

        // A new catalog moves a2 to another index: the last answer is re-indexed for it.
        cp.snapshot = snapshot("v2", &["a0", "a1", "a2"]);
        world.advance_ms(500);
        w.tick();
        w.take_calls("/global_usage");
        cp.serve(&mut w);
        assert_eq!(w.version(), Some("v2"));
        assert_eq!(w.catalog().unwrap().app_index("a2"), Some(2));
        assert_eq!(others(&w, "a2"), 7);
        assert_eq!(others(&w, "a0"), 0);
    }

    /// 0.01 a call.
    const CENT: u64 = tollgate_protocol::NANO_PER_UNIT / 100;

    /// Issue 18: a wallet's spend lives in shared data beside the limit counters and survives
    /// what they survive: a snapshot swap that moves every application's index, a worker VM
    /// replaced by a new one, and the adoption of the dead worker's journal (which delivers its
    /// usage, the control plane's debit, exactly once). A top-up arrives as a snapshot raising
    /// `limit_nano`, and what other gateways spent arrives with the global usage, re-indexed
    /// for each new catalog.
    #[test]
    fn a_wallets_spend_survives_swaps_restarts_and_adoption() {
        let world = World::new(START_MS);
        // 0.10 in the wallet at 0.01 a call: 10 calls.
        let mut cp = ControlPlane::new(prepaid_snapshot("v1", &["a1", "a2"], CENT, 10 * CENT));
        let mut w = Worker::start(&world);
        w.tick();
        cp.serve(&mut w);
        assert_eq!(w.version(), Some("v1"));
        assert!(
            world.value("tg1/w/w").is_some(),
            "made with the counter records"
        );
        for app in ["a1", "a1", "a1", "a1", "a2", "a2"] {
            assert_eq!(w.request(app), None);
        }

        // A new snapshot moves a1 and a2 to other indexes: 4 calls left, whoever makes them.
        cp.snapshot = prepaid_snapshot("v2", &["a0", "a1", "a2"], CENT, 10 * CENT);
        world.advance_ms(500);
        w.tick();
        cp.serve(&mut w);
        assert_eq!(w.version(), Some("v2"));
        for _ in 0..4 {
            assert_eq!(w.request("a0"), None);
        }
        for app in ["a0", "a1", "a2"] {
            assert_eq!(w.request(app), Some(Reason::InsufficientCredit));
        }
        // The usage goes into the journal on the next tick; then the VM is torn down.
        world.advance_ms(100);
        w.tick();
        w.host.die();

        // Its replacement (a new VM, as after a crash or a reload) finds the wallet spent...
        let mut n = Worker::start(&world);
        n.tick();
        cp.serve(&mut n);
        assert_eq!(n.version(), Some("v2"));
        assert_eq!(n.request("a1"), Some(Reason::InsufficientCredit));
        // ...and a top-up of 0.02 (a snapshot raising the limit) lets exactly 2 more calls in.
        cp.snapshot = prepaid_snapshot("v3", &["a0", "a1", "a2"], CENT, 12 * CENT);
        world.advance_ms(500);
        n.tick();
        cp.serve(&mut n);
        assert_eq!(n.version(), Some("v3"));
        assert_eq!(n.request("a1"), None);
        assert_eq!(n.request("a2"), None);
        assert_eq!(n.request("a0"), Some(Reason::InsufficientCredit));

        // The dead worker's journal is adopted and delivered: the control plane sees every
        // admitted call once (what it prices and debits), and the spend here is unchanged.
        for _ in 0..(ORPHAN_AFTER_MS / 1_000 + 10) {
            world.advance_ms(1_000);
            n.tick();
            cp.serve(&mut n);
        }
        assert!(n.host.logged("adopted the usage journal of dead worker"));
        assert_eq!(cp.hits("a0") + cp.hits("a1") + cp.hits("a2"), 12);
        assert_eq!(n.request("a2"), Some(Reason::InsufficientCredit));

        // What other gateways spent comes with the global usage: with the limit at 0.20 and
        // 0.05 spent elsewhere, 3 more calls here.
        cp.snapshot = prepaid_snapshot("v4", &["a0", "a1", "a2"], CENT, 20 * CENT);
        world.advance_ms(1_000);
        n.tick();
        for call in std::mem::take(&mut n.host.calls) {
            let answer = if call.path().contains("/global_usage") {
                Answer {
                    body: format!(
                        r#"{{"entries": [], "credit": [{{"wallet": "w", "spent_nano": {}}}]}}"#,
                        5 * CENT
                    )
                    .into_bytes(),
                    ..Answer::status(200)
                }
            } else {
                cp.answer(&call)
            };
            n.deliver(call.token, answer);
        }
        assert_eq!(n.version(), Some("v4"));
        let view = n.shared.global.clone().unwrap();
        assert_eq!(view.credit_spent(0), 5 * CENT);
        for _ in 0..3 {
            assert_eq!(n.request("a1"), None);
        }
        assert_eq!(n.request("a1"), Some(Reason::InsufficientCredit));
        // A new catalog keeps the others' spend (the last answer, re-indexed).
        cp.snapshot = prepaid_snapshot("v5", &["a0", "a1", "a2"], CENT, 20 * CENT);
        cp.snapshot.wallets.insert(
            0,
            tollgate_protocol::Wallet {
                id: "another".into(),
                limit_nano: 0,
                applications: vec![],
            },
        );
        world.advance_ms(1_000);
        n.tick();
        n.take_calls("/global_usage");
        cp.serve(&mut n);
        assert_eq!(n.version(), Some("v5"));
        assert!(
            world.value("tg1/w/another").is_some(),
            "a new wallet's record is made before the snapshot serves"
        );
        let view = n.shared.global.clone().unwrap();
        assert_eq!((view.credit_spent(0), view.credit_spent(1)), (0, 5 * CENT));
        assert_eq!(n.request("a1"), Some(Reason::InsufficientCredit));
    }
}
