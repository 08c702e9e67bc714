//! What one worker VM keeps between requests: the state its request contexts share, its stats,
//! and the counter records it creates before traffic can reach an application. Written against
//! [`Host`] so the control-plane link's native tests drive the very same state.

use std::cell::{Cell, RefCell};
use std::rc::Rc;
use std::sync::Arc;

use crate::catalog::{AppDef, Catalog, WalletDef};
use crate::config::Config;
use crate::counters::ensure_record;
use crate::credit;
use crate::decision::Reason;
use crate::global::GlobalView;
use crate::host::{Host, Level};
use crate::link::Link;
use crate::metering::Meter;

/// How often each worker adds its locally counted stats to the host's counters. Counting locally
/// saves a host call (~0.6 us under V8) per request; stats lag by at most this interval.
pub const STATS_FLUSH_INTERVAL_MS: u32 = 1_000;

/// A host counter (Envoy exposes it as `wasmcustom.<name>`) with increments buffered per worker.
pub struct Counter {
    id: Option<u32>,
    pending: Cell<u64>,
}

impl Counter {
    fn define<H: Host>(host: &mut H, name: &str) -> Counter {
        Counter {
            id: host.define_counter(name),
            pending: Cell::new(0),
        }
    }

    pub fn bump(&self) {
        self.add(1);
    }

    pub fn add(&self, n: u64) {
        self.pending.set(self.pending.get().saturating_add(n));
    }

    fn flush<H: Host>(&self, host: &mut H) {
        let n = self.pending.replace(0);
        if n > 0 {
            host.increment(self.id, n);
        }
    }
}

pub struct Stats {
    pub allowed: Counter,
    unauthorized: Counter,
    pub errors: Counter,
    rejected: Vec<(Reason, Counter)>,
    pub snapshot_updates: Counter,
    pub snapshot_failures: Counter,
    /// Invalid applications left out of an installed snapshot (the rest of it applied).
    pub snapshot_skipped_applications: Counter,
    /// Wallet entries left out of an installed snapshot (unknown application, or one already in
    /// an earlier wallet).
    pub snapshot_skipped_wallet_entries: Counter,
    pub usage_reports: Counter,
    pub usage_report_failures: Counter,
    pub usage_dropped: Counter,
}

impl Stats {
    /// Defines the host counters. Only called where the configuration turns stats on: Kong builds
    /// without metrics support trap on the metric calls.
    pub fn define<H: Host>(host: &mut H) -> Stats {
        Stats {
            allowed: Counter::define(host, "tollgate.allowed"),
            unauthorized: Counter::define(host, "tollgate.unauthorized"),
            errors: Counter::define(host, "tollgate.errors"),
            rejected: Reason::ALL
                .iter()
                .map(|r| {
                    (
                        *r,
                        Counter::define(host, &format!("tollgate.rejected.{}", r.code())),
                    )
                })
                .collect(),
            snapshot_updates: Counter::define(host, "tollgate.snapshot.updates"),
            snapshot_failures: Counter::define(host, "tollgate.snapshot.failures"),
            snapshot_skipped_applications: Counter::define(
                host,
                "tollgate.snapshot.skipped_applications",
            ),
            snapshot_skipped_wallet_entries: Counter::define(
                host,
                "tollgate.snapshot.skipped_wallet_entries",
            ),
            usage_reports: Counter::define(host, "tollgate.usage.reports"),
            usage_report_failures: Counter::define(host, "tollgate.usage.report_failures"),
            usage_dropped: Counter::define(host, "tollgate.usage.dropped_entries"),
        }
    }

    fn rejected_counter(&self, reason: Reason) -> Option<&Counter> {
        self.rejected
            .iter()
            .find_map(|(r, c)| (*r == reason).then_some(c))
    }

    pub fn rejected(&self, reason: Reason) {
        self.rejected_n(reason, 1);
    }

    /// `n` rejections for `reason` (the native shell adds up a worker's between ticks).
    pub fn rejected_n(&self, reason: Reason, n: u64) {
        if let Some(c) = self.rejected_counter(reason) {
            c.add(n);
        }
        if reason.is_auth_failure() {
            self.unauthorized.add(n);
        }
    }

    /// Adds the locally counted increments to the host's counters.
    pub fn flush<H: Host>(&self, host: &mut H) {
        for c in [
            &self.allowed,
            &self.unauthorized,
            &self.errors,
            &self.snapshot_updates,
            &self.snapshot_failures,
            &self.snapshot_skipped_applications,
            &self.snapshot_skipped_wallet_entries,
            &self.usage_reports,
            &self.usage_report_failures,
            &self.usage_dropped,
        ] {
            c.flush(host);
        }
        for (_, c) in &self.rejected {
            c.flush(host);
        }
    }
}

/// What a worker's requests share: the settings, the catalog (swapped whole when a new snapshot
/// arrives, so a request sees one snapshot from start to end) and the meter.
///
/// The settings, catalog and global usage are `Arc`s: the native shell (`tollgate-envoy`) runs
/// one link on Envoy's main thread and hands them to every worker thread. Under wasm32 (no
/// threads) an `Arc` costs what an `Rc` does.
#[derive(Default)]
pub struct Shared {
    pub config: Option<Arc<Config>>,
    pub catalog: Option<Arc<Catalog>>,
    pub stats: Option<Rc<Stats>>,
    pub meter: Option<Rc<RefCell<Meter>>>,
    /// Usage of other gateway instances (global quotas), indexed for the current catalog.
    pub global: Option<Arc<GlobalView>>,
}

/// Creates every application's counter record before traffic can reach it, so the request path
/// always has a CAS token (see `counters::ensure_record`).
pub fn prepare_records<'a, H: Host>(
    host: &mut H,
    apps: impl IntoIterator<Item = &'a AppDef>,
) -> bool {
    for app in apps {
        if let Err(e) = ensure_record(host, app) {
            host.log(
                Level::Error,
                &format!(
                    "tollgate: cannot create counter record for {}: {e:?}",
                    app.id
                ),
            );
            return false;
        }
    }
    true
}

/// Creates every wallet's spend record before traffic can reach it, as [`prepare_records`] does
/// for applications. An existing record is kept: the spend survives a snapshot swap, a worker VM
/// restart and a listener update (the native shell's process-wide store).
pub fn prepare_wallet_records<'a, H: Host>(
    host: &mut H,
    wallets: impl IntoIterator<Item = &'a WalletDef>,
) -> bool {
    for wallet in wallets {
        if let Err(e) = credit::ensure_record(host, wallet) {
            host.log(
                Level::Error,
                &format!(
                    "tollgate: cannot create spend record for wallet {}: {e:?}",
                    wallet.id
                ),
            );
            return false;
        }
    }
    true
}

/// Counts what a snapshot left out in the stats (the log line is the caller's).
pub fn count_skipped(stats: Option<&Stats>, catalog: &Catalog) {
    if let Some(s) = stats {
        s.snapshot_skipped_applications
            .add(catalog.skipped_apps as u64);
        s.snapshot_skipped_wallet_entries
            .add(catalog.skipped_wallet_entries as u64);
    }
}

/// Applies a plugin configuration (the JSON both shells take) to a worker's state: parses it,
/// creates the counter records of an inline snapshot, defines the stats once, starts the
/// control-plane link and asks the host for the tick they need. `None` when the configuration is
/// refused (logged, naming the field): the host then refuses it too.
pub fn configure<H: Host>(host: &mut H, shared: &mut Shared, bytes: &[u8]) -> Option<Option<Link>> {
    let (config, catalog) = match Config::parse(bytes) {
        Ok(c) => c,
        Err(e) => {
            host.log(Level::Error, &format!("tollgate: {e}"));
            return None;
        }
    };
    if let Some(catalog) = &catalog {
        if !prepare_records(host, &catalog.apps) || !prepare_wallet_records(host, &catalog.wallets)
        {
            return None;
        }
        host.log(
            Level::Info,
            &format!(
                "tollgate: configured with {} applications, {} plans, {} mapping rules, {} wallets",
                catalog.apps.len(),
                catalog.plans.len(),
                catalog.rules.len(),
                catalog.wallets.len()
            ),
        );
    }
    // Stats are defined once per worker, and only where the configuration asks for them.
    if shared.stats.is_none() {
        shared.stats = config.stats.then(|| Stats::define(host)).map(Rc::new);
    }
    let mut tick_ms = shared.stats.as_ref().map(|_| STATS_FLUSH_INTERVAL_MS);
    let mut link = None;
    if let Some(cp) = &config.control_plane {
        let l = Link::new(cp.clone(), host);
        host.log(
            Level::Info,
            &format!(
                "tollgate: control-plane mode, service {}, gateway {}",
                cp.service_id,
                l.gateway()
            ),
        );
        tick_ms = Some(tick_ms.unwrap_or(u32::MAX).min(l.tick_ms()));
        let mut meter = Meter::new(l.gateway().to_string());
        meter.instance = Some(l.instance().to_string());
        shared.meter = Some(Rc::new(RefCell::new(meter)));
        l.register(host);
        link = Some(l);
    }
    if let Some(ms) = tick_ms {
        if let Err(e) = host.set_tick_period_ms(ms) {
            host.log(
                Level::Warn,
                &format!(
                    "tollgate: no tick (status {}): stats and the control-plane link stop",
                    e.0
                ),
            );
        }
    }
    if let Some(summary) = catalog.as_ref().and_then(Catalog::skipped_summary) {
        host.log(Level::Warn, &format!("tollgate: snapshot: {summary}"));
        if let Some(c) = &catalog {
            count_skipped(shared.stats.as_deref(), c);
        }
    }
    shared.catalog = catalog.map(Arc::new);
    shared.config = Some(Arc::new(config));
    Some(link)
}
