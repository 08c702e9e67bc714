//! Test harness of the link's protocols: workers of one gateway process on a fake host, and a
//! fake control plane that answers their calls the way `tollgate serve` does (snapshot with
//! `ETag`/304, usage reports counted once per `(gateway, sequence)`), or fails them.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::rc::Rc;

use tollgate_protocol::{Snapshot, UsageReport};

use super::Link;
use crate::catalog::Catalog;
use crate::config::Config;
use crate::counters::{add_usage, NoOthers, OthersUsage, Usage};
use crate::credentials::{sha256, Presented, Source};
use crate::decision::{decide, Decision, Reason};
use crate::host::fake::{Answer, Call, FakeHost, World};
use crate::host::Host;
use crate::metering::Meter;
use crate::worker::{Shared, Stats};

/// 2026-11-25T17:31:12Z, in host milliseconds.
pub const START_MS: u64 = 1_795_627_872_000;

/// The plugin configuration of control-plane mode, stats on.
const CONFIG: &str = r#"{"service_id": "svc_1", "stats": true,
    "control_plane": {"cluster": "tollgate", "token": "tgw_x"}}"#;

/// A snapshot: plan `p` (1,000 hits a minute) and the given live applications, each with the
/// key `key-<id>`.
pub fn snapshot(version: &str, apps: &[&str]) -> Snapshot {
    let apps: Vec<serde_json::Value> = apps
        .iter()
        .map(|id| {
            let key: String = sha256(format!("key-{id}").as_bytes())
                .iter()
                .map(|b| format!("{b:02x}"))
                .collect();
            serde_json::json!({"id": id, "plan": "p", "state": "live", "key_sha256": [key]})
        })
        .collect();
    serde_json::from_value(serde_json::json!({
        "version": version,
        "plans": [{"id": "p", "limits": [{"metric": "hits", "period": "minute", "value": 1000}]}],
        "metrics": [{"name": "hits"}],
        "mapping_rules": [{"method": "GET", "pattern": "/", "metric": "hits", "delta": 1}],
        "applications": apps,
    }))
    .unwrap()
}

/// [`snapshot`] with the plan on prepaid credit (`price_nano` per `hits`) and every application in
/// wallet `w` of `limit_nano`.
pub fn prepaid_snapshot(
    version: &str,
    apps: &[&str],
    price_nano: u64,
    limit_nano: u64,
) -> Snapshot {
    let mut s = snapshot(version, apps);
    s.plans[0].credit_prices = vec![tollgate_protocol::CreditPrice {
        metric: "hits".into(),
        nano_per_unit: price_nano,
    }];
    s.wallets = vec![tollgate_protocol::Wallet {
        id: "w".into(),
        limit_nano,
        applications: apps.iter().map(|a| a.to_string()).collect(),
    }];
    s
}

/// One worker VM as the glue runs it: `on_configure` in control-plane mode, then ticks and
/// call answers.
pub struct Worker {
    pub link: Link,
    pub shared: Shared,
    pub host: FakeHost,
}

impl Worker {
    /// What `on_configure` does in control-plane mode.
    pub fn start(world: &Rc<World>) -> Worker {
        Worker::start_for(world, "svc_1")
    }

    /// [`Worker::start`] for a stanza of `service` (several may share one VM's shared data).
    pub fn start_for(world: &Rc<World>, service: &str) -> Worker {
        let mut host = FakeHost::new(world);
        let config_json = CONFIG.replace("svc_1", service);
        let (config, catalog) = Config::parse(config_json.as_bytes()).unwrap();
        assert!(catalog.is_none());
        let link = Link::new(config.control_plane.clone().unwrap(), &mut host);
        let mut meter = Meter::new(link.gateway().to_string());
        meter.instance = Some(link.instance().to_string());
        link.register(&mut host);
        let shared = Shared {
            stats: config.stats.then(|| Rc::new(Stats::define(&mut host))),
            meter: Some(Rc::new(RefCell::new(meter))),
            config: Some(std::sync::Arc::new(config)),
            ..Shared::default()
        };
        Worker { link, shared, host }
    }

    /// `on_tick`: the link, then the stats flush.
    pub fn tick(&mut self) {
        self.link.on_tick(&mut self.shared, &mut self.host);
        if let Some(s) = &self.shared.stats {
            s.flush(&mut self.host);
        }
    }

    /// `on_http_call_response` with `answer` for the call `token`.
    pub fn deliver(&mut self, token: u32, answer: Answer) {
        let size = answer.body_size();
        self.host.answer = Some(answer);
        self.link
            .on_response(token, size, &mut self.shared, &mut self.host);
        self.host.answer = None;
        if let Some(s) = &self.shared.stats {
            s.flush(&mut self.host);
        }
    }

    /// Takes the calls made so far whose path contains `part`.
    pub fn take_calls(&mut self, part: &str) -> Vec<Call> {
        let (taken, kept) = std::mem::take(&mut self.host.calls)
            .into_iter()
            .partition(|c| c.path().contains(part));
        self.host.calls = kept;
        taken
    }

    pub fn catalog(&self) -> Option<&Catalog> {
        self.shared.catalog.as_deref()
    }

    pub fn version(&self) -> Option<&str> {
        self.catalog()?.version.as_deref()
    }

    /// What the request path does for `n` admitted requests of `app` on metric `hits`.
    pub fn hits(&mut self, app: &str, n: u64) {
        let catalog = self.shared.catalog.clone().expect("a catalog");
        let index = catalog.app_index(app).expect("a known application");
        let mut usage = Usage::new();
        add_usage(
            &catalog,
            &mut usage,
            catalog.metric_index("hits").unwrap(),
            1,
        );
        let now = self.host.now_secs().unwrap();
        let meter = self.shared.meter.clone().unwrap();
        for _ in 0..n {
            meter.borrow_mut().record(index, &usage, now);
        }
    }

    pub fn counter(&self, name: &str) -> u64 {
        self.host.counter(name)
    }

    /// What the request path decides for `GET /` with `app`'s key (`key-<app>`), against this
    /// worker's catalog, global usage and the shared data: `None` when forwarded, else why not.
    pub fn request(&mut self, app: &str) -> Option<Reason> {
        let catalog = self.shared.catalog.clone().expect("a catalog");
        let global = self.shared.global.clone();
        let others: &dyn OthersUsage = match &global {
            Some(g) => &**g,
            None => &NoOthers,
        };
        let config = self.shared.config.clone().unwrap();
        let presented = Ok(Presented::Key {
            digest: sha256(format!("key-{app}").as_bytes()),
            source: Source::Header("x-api-key".into()),
        });
        let now = self.host.now_secs().unwrap();
        match decide(
            &config,
            &catalog,
            others,
            presented,
            "GET",
            "/",
            now,
            &mut self.host,
        ) {
            Decision::Forward { app, usage, .. } => {
                let meter = self.shared.meter.clone().unwrap();
                meter.borrow_mut().record(app.index, &usage, now);
                None
            }
            Decision::Reject(r) => Some(r.reason),
        }
    }
}

/// How the fake control plane answers one kind of call.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    Up,
    /// Answers with this status.
    Status(u16),
    /// The call times out (no `:status`).
    Timeout,
    /// Counts the report, then its answer is lost (timeout): the worker must retry it.
    CountThenTimeout,
}

/// The control plane, as the gateway sees it.
pub struct ControlPlane {
    pub snapshot: Snapshot,
    /// Serve the compact binary encoding (else JSON).
    pub binary: bool,
    /// Say that a poll asking to wait was held (`preference-applied`), as Tollgate's control
    /// plane does; the harness answers at once all the same (the test plays the time).
    pub holds: bool,
    pub snapshot_mode: Mode,
    pub usage_mode: Mode,
    /// Reports counted, by `(gateway, sequence)`: the control plane's exactly-once ingestion.
    pub counted: BTreeMap<(String, u64), UsageReport>,
    /// Report deliveries, duplicates included.
    pub deliveries: usize,
}

impl ControlPlane {
    pub fn new(snapshot: Snapshot) -> ControlPlane {
        ControlPlane {
            snapshot,
            binary: true,
            holds: false,
            snapshot_mode: Mode::Up,
            usage_mode: Mode::Up,
            counted: BTreeMap::new(),
            deliveries: 0,
        }
    }

    /// Answers every call `worker` made so far, in order.
    pub fn serve(&mut self, worker: &mut Worker) {
        for call in std::mem::take(&mut worker.host.calls) {
            let answer = self.answer(&call);
            worker.deliver(call.token, answer);
        }
    }

    pub fn answer(&mut self, call: &Call) -> Answer {
        let path = call.path();
        if path.ends_with("/snapshot") {
            self.answer_snapshot(call)
        } else if path.contains("/global_usage") {
            Answer {
                body: br#"{"entries": []}"#.to_vec(),
                ..Answer::status(200)
            }
        } else if path.ends_with("/usage") {
            self.answer_report(call)
        } else {
            Answer::status(404)
        }
    }

    fn answer_snapshot(&mut self, call: &Call) -> Answer {
        match self.snapshot_mode {
            Mode::Status(s) => return Answer::status(s),
            Mode::Timeout | Mode::CountThenTimeout => return Answer::failed(),
            Mode::Up => {}
        }
        let version = self.snapshot.version.clone().unwrap_or_default();
        let applied: Vec<(String, Vec<u8>)> = match call.header("prefer") {
            Some(p) if self.holds => vec![("preference-applied".into(), p.as_bytes().to_vec())],
            _ => Vec::new(),
        };
        if call.header("if-none-match") == Some(format!("\"{version}\"").as_str()) {
            return Answer {
                headers: applied,
                ..Answer::status(304)
            };
        }
        let (content_type, body) = if self.binary {
            // What the control plane answers this filter's `Accept`: the newest version.
            let format = tollgate_protocol::binary::Format::V2;
            (
                format.media_type(),
                tollgate_protocol::binary::encode_as(&self.snapshot, format)
                    .unwrap()
                    .0,
            )
        } else {
            (
                "application/json",
                serde_json::to_vec(&self.snapshot).unwrap(),
            )
        };
        Answer {
            headers: [("content-type".into(), content_type.as_bytes().to_vec())]
                .into_iter()
                .chain(applied)
                .collect(),
            body,
            ..Answer::status(200)
        }
    }

    fn answer_report(&mut self, call: &Call) -> Answer {
        match self.usage_mode {
            Mode::Status(s) => return Answer::status(s),
            Mode::Timeout => return Answer::failed(),
            Mode::Up | Mode::CountThenTimeout => {}
        }
        let report: UsageReport = serde_json::from_slice(&call.body).unwrap();
        self.deliveries += 1;
        let key = (report.gateway.clone(), report.sequence);
        if let Some(seen) = self.counted.get(&key) {
            // A retry must be the same report: the id alone decides what was counted.
            assert_eq!(seen, &report, "report {key:?} re-sent with other content");
        } else {
            self.counted.insert(key, report);
        }
        if self.usage_mode == Mode::CountThenTimeout {
            Answer::failed()
        } else {
            Answer::status(200)
        }
    }

    /// Hits of `app` counted (each report once).
    pub fn hits(&self, app: &str) -> u64 {
        self.counted
            .values()
            .flat_map(|r| &r.entries)
            .filter(|e| e.application == app && e.metric == "hits")
            .map(|e| e.delta)
            .sum()
    }
}
