//! One slot per Envoy worker thread: the snapshot that worker enforces and the usage it metered.
//!
//! A worker locks only its own slot (Envoy tells each stream its worker index), so on the request
//! path the lock is uncontended; the main thread takes each slot briefly on its tick, to move the
//! usage out and, when the link installed a new snapshot, to hand the new one over.
//!
//! Metering across a snapshot swap: a slot's usage is keyed by the indexes of the catalog in that
//! slot, so it is folded into names against that same catalog before the slot gets a new one (the
//! rule `Meter::fold` states), then adopted by the link's meter, which reports it.

use std::cell::RefCell;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use tollgate_filter::catalog::Catalog;
use tollgate_filter::config::Config;
use tollgate_filter::decision::Reason;
use tollgate_filter::global::GlobalView;
use tollgate_filter::metering::Meter;
use tollgate_filter::request::{Event, View};
use tollgate_filter::worker::Stats;

/// What the link publishes to the workers.
#[derive(Clone)]
pub struct Published {
    pub config: Arc<Config>,
    pub catalog: Option<Arc<Catalog>>,
    pub global: Option<Arc<GlobalView>>,
}

impl Published {
    /// Whether `other` is the same snapshot and global usage (by identity: the link swaps them
    /// whole).
    pub fn same_as(&self, other: &Published) -> bool {
        fn same<T>(a: &Option<Arc<T>>, b: &Option<Arc<T>>) -> bool {
            match (a, b) {
                (Some(a), Some(b)) => Arc::ptr_eq(a, b),
                (None, None) => true,
                _ => false,
            }
        }
        Arc::ptr_eq(&self.config, &other.config)
            && same(&self.catalog, &other.catalog)
            && same(&self.global, &other.global)
    }
}

/// A worker's request stats since the last tick. Counted here, under the slot lock the request
/// holds anyway, and added to Envoy's counters on the tick: a counter call per request would cost
/// more than the count (the wasm shell buffers per worker VM for the same reason).
#[derive(Default)]
pub struct Counts {
    allowed: u64,
    errors: u64,
    rejected: [u64; Reason::ALL.len()],
}

impl Counts {
    pub fn count(&mut self, event: Event) {
        let slot = match event {
            Event::Allowed => &mut self.allowed,
            Event::Error => &mut self.errors,
            Event::Rejected(reason) => {
                match Reason::ALL.iter().position(|r| *r == reason) {
                    Some(i) => &mut self.rejected[i],
                    // Every reason is in Reason::ALL.
                    None => return,
                }
            }
        };
        *slot = slot.saturating_add(1);
    }

    /// Moves the counts into the link's stats (flushed to Envoy by the caller).
    fn drain_into(&mut self, stats: &Stats) {
        let c = std::mem::take(self);
        stats.allowed.add(c.allowed);
        stats.errors.add(c.errors);
        for (reason, n) in Reason::ALL.iter().zip(c.rejected) {
            if n > 0 {
                stats.rejected_n(*reason, n);
            }
        }
    }
}

struct Slot {
    view: Published,
    /// Usage admitted by this worker and not yet moved to the link (control-plane mode).
    meter: Option<RefCell<Meter>>,
    counts: Counts,
}

pub struct Workers {
    slots: Vec<Mutex<Slot>>,
}

fn lock(m: &Mutex<Slot>) -> MutexGuard<'_, Slot> {
    // A slot is consistent between statements; refusing all later requests would be worse.
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Moves a slot's usage into `into`, folded against the slot's own catalog.
fn drain_slot(slot: &mut Slot, into: &mut Meter) {
    let Some(meter) = &slot.meter else { return };
    let mut m = meter.borrow_mut();
    if let Some(catalog) = &slot.view.catalog {
        m.fold(catalog);
    }
    let taken = std::mem::replace(&mut *m, Meter::new(String::new()));
    into.adopt(taken);
}

impl Workers {
    /// `count` slots (Envoy's concurrency, at least one); `metering` in control-plane mode.
    pub fn new(count: usize, view: &Published, metering: bool) -> Workers {
        Workers {
            slots: (0..count.max(1))
                .map(|_| {
                    Mutex::new(Slot {
                        view: view.clone(),
                        meter: metering.then(|| RefCell::new(Meter::new(String::new()))),
                        counts: Counts::default(),
                    })
                })
                .collect(),
        }
    }

    /// Runs `f` with worker `index`'s view and stats, its slot locked for the duration (one
    /// request).
    pub fn with_view<R>(&self, index: usize, f: impl FnOnce(View<'_>, &mut Counts) -> R) -> R {
        // Envoy's worker indexes are below its concurrency, the slot count; `%` keeps any other
        // value in range rather than trusting it.
        let mut guard = lock(&self.slots[index % self.slots.len()]);
        let slot = &mut *guard;
        f(
            View {
                config: Some(&slot.view.config),
                catalog: slot.view.catalog.as_deref(),
                global: slot.view.global.as_deref(),
                meter: slot.meter.as_ref(),
            },
            &mut slot.counts,
        )
    }

    /// Moves every worker's request stats into `stats` (main thread, each tick).
    pub fn drain_counts(&self, stats: &Stats) {
        for s in &self.slots {
            lock(s).counts.drain_into(stats);
        }
    }

    /// Moves every worker's usage into the link's meter (main thread, each tick).
    pub fn drain(&self, into: &mut Meter) {
        for s in &self.slots {
            drain_slot(&mut lock(s), into);
        }
    }

    /// Hands `next` to every worker; usage recorded against a catalog being replaced moves into
    /// `into` first.
    pub fn publish(&self, next: &Published, into: &mut Meter) {
        for s in &self.slots {
            let mut slot = lock(s);
            if !slot.view.same_as(next) {
                drain_slot(&mut slot, into);
                slot.view = next.clone();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code

    use super::*;
    use tollgate_filter::counters::Usage;

    /// A standalone configuration with an inline snapshot of `apps` (all on one plan).
    fn published(apps: &[&str]) -> Published {
        let apps_json: Vec<String> = apps
            .iter()
            .map(|a| {
                let key = a.len() + usize::from(a.as_bytes()[0]);
                format!(
                    r#"{{"id": "{a}", "plan": "p", "state": "live", "key_sha256": ["{key:064x}"]}}"#
                )
            })
            .collect();
        let json = format!(
            r#"{{"snapshot": {{"metrics": [{{"name": "hits"}}],
                "plans": [{{"id": "p", "limits": []}}],
                "applications": [{}]}}}}"#,
            apps_json.join(",")
        );
        let (config, catalog) = Config::parse(json.as_bytes()).unwrap();
        Published {
            config: Arc::new(config),
            catalog: catalog.map(Arc::new),
            global: None,
        }
    }

    fn record(w: &Workers, worker: usize, app: &str, n: u64) {
        w.with_view(worker, |v, _| {
            let i = v.catalog.unwrap().app_index(app).unwrap();
            let usage: Usage = vec![(0, n)];
            v.meter.unwrap().borrow_mut().record(i, &usage, 120);
        });
    }

    fn reported(meter: &mut Meter) -> Vec<(String, u64)> {
        let mut out: Vec<(String, u64)> = meter
            .next_report()
            .map(|r| {
                r.entries
                    .iter()
                    .map(|e| (e.application.clone(), e.delta))
                    .collect()
            })
            .unwrap_or_default();
        out.sort();
        out
    }

    #[test]
    fn usage_of_every_worker_reaches_the_link_once() {
        let v1 = published(&["a", "b"]);
        let w = Workers::new(3, &v1, true);
        record(&w, 0, "a", 2);
        record(&w, 1, "a", 3);
        record(&w, 2, "b", 1);
        let mut link = Meter::new("gw".into());
        w.drain(&mut link);
        w.drain(&mut link);
        assert_eq!(reported(&mut link), vec![("a".into(), 5), ("b".into(), 1)]);
    }

    /// The new snapshot lists applications in another order: usage recorded before the swap still
    /// goes to the application it was recorded for, not to whichever now has its index.
    #[test]
    fn a_snapshot_swap_keeps_usage_with_its_application() {
        let v1 = published(&["a", "b"]);
        let w = Workers::new(2, &v1, true);
        record(&w, 0, "a", 4);
        let v2 = published(&["b", "a"]);
        let mut link = Meter::new("gw".into());
        w.publish(&v2, &mut link);
        record(&w, 1, "b", 1);
        w.drain(&mut link);
        assert_eq!(reported(&mut link), vec![("a".into(), 4), ("b".into(), 1)]);
        w.with_view(0, |v, _| {
            assert_eq!(v.catalog.unwrap().app_index("b"), Some(0))
        });
    }

    #[test]
    fn standalone_workers_meter_nothing() {
        let v1 = published(&["a"]);
        let w = Workers::new(1, &v1, false);
        w.with_view(7, |v, _| {
            assert!(v.meter.is_none());
            assert!(v.catalog.is_some());
        });
    }
}
