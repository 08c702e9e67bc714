//! Exact counting across worker threads: one shared-data record per application holding the
//! current window and count of each (metric, period) limit, updated with compare-and-swap.
//!
//! One key per application (not per window) keeps the shared-data key set bounded: proxy-wasm
//! shared data has no TTL and no real delete. The period start lives inside the value, so a stale
//! window simply reads as zero.
//!
//! Record layout, version 1 (little-endian):
//! `[1u8] { [period u8] [name_len u8] [metric name] [window_start i64] [count u64] }*`

use tollgate_protocol::Period;

use crate::catalog::{AppDef, Catalog, LimitDef, PlanDef};
use crate::credit::{self, CreditState};
use crate::periods::window;

/// Compare-and-swap attempts before giving up on one request. Two racing workers settle in one
/// retry; 32 is far past anything contention on a 2–64 core host produces.
pub const MAX_CAS_ATTEMPTS: usize = 32;
const RECORD_VERSION: u8 = 1;

/// Host shared data (per VM id, shared by all workers), abstracted so it can be faked in tests.
pub trait SharedStore {
    /// The value and its CAS token; `(None, None)` when the key does not exist.
    fn get(&mut self, key: &str) -> Result<(Option<Vec<u8>>, Option<u32>), StoreError>;
    /// Writes the value if `cas` still matches; `Ok(false)` on a CAS mismatch.
    fn set(&mut self, key: &str, value: &[u8], cas: Option<u32>) -> Result<bool, StoreError>;
    /// The value last read will not be written back (a rejected request counts nothing). A store
    /// that locks a key from its read to its write (the native shell's) unlocks it here, so
    /// other requests do not wait while this one builds and sends its answer. Shared data has
    /// nothing to release.
    fn release(&mut self) {}
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StoreError {
    /// The host answered with an unexpected status.
    Host(u32),
    /// Lost the CAS race `MAX_CAS_ATTEMPTS` times in a row.
    Contended,
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Entry {
    period: Period,
    metric: String,
    window_start: i64,
    count: u64,
}

fn period_code(p: Period) -> u8 {
    match p {
        Period::Minute => 0,
        Period::Hour => 1,
        Period::Day => 2,
        Period::Week => 3,
        Period::Month => 4,
        Period::Year => 5,
        Period::Eternity => 6,
    }
}

fn period_from(code: u8) -> Option<Period> {
    Period::ALL.get(usize::from(code)).copied()
}

/// Decodes a record; a corrupt or unknown-version record reads as empty (counts restart) rather
/// than wedging the application forever.
fn decode(bytes: &[u8]) -> Vec<Entry> {
    let mut out = Vec::new();
    if bytes.first() != Some(&RECORD_VERSION) {
        return out;
    }
    let mut rest = &bytes[1..];
    while !rest.is_empty() {
        let Some(entry) = (|| {
            let period = period_from(*rest.first()?)?;
            let len = usize::from(*rest.get(1)?);
            let metric = std::str::from_utf8(rest.get(2..2 + len)?).ok()?.to_string();
            let at = 2 + len;
            let window_start = i64::from_le_bytes(rest.get(at..at + 8)?.try_into().ok()?);
            let count = u64::from_le_bytes(rest.get(at + 8..at + 16)?.try_into().ok()?);
            rest = &rest[at + 16..];
            Some(Entry {
                period,
                metric,
                window_start,
                count,
            })
        })() else {
            return Vec::new();
        };
        out.push(entry);
    }
    out
}

fn encode(entries: &[Entry]) -> Vec<u8> {
    let mut out =
        Vec::with_capacity(1 + entries.iter().map(|e| 18 + e.metric.len()).sum::<usize>());
    out.push(RECORD_VERSION);
    for e in entries {
        out.push(period_code(e.period));
        // Metric names are validated to at most 64 bytes when the catalog is compiled.
        out.push(e.metric.len().min(255) as u8);
        out.extend_from_slice(&e.metric.as_bytes()[..e.metric.len().min(255)]);
        out.extend_from_slice(&e.window_start.to_le_bytes());
        out.extend_from_slice(&e.count.to_le_bytes());
    }
    out
}

/// One limit's state after the decision, for quota headers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LimitState<'c> {
    pub limit: &'c LimitDef,
    /// Units left in the window after this request (0 when rejected).
    pub remaining: u64,
    /// Seconds until the window resets; `None` for eternity.
    pub reset_in: Option<u64>,
    /// Window length in seconds; `None` for eternity.
    pub window_secs: Option<u64>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Enforcement<'c> {
    /// Counted (and its cost spent from its wallet). `tightest` is the most constrained limit
    /// the request touched, if any.
    Admitted { tightest: Option<LimitState<'c>> },
    /// Nothing counted, nothing spent. `violated` is the limit that will stay exceeded longest.
    Exceeded { violated: LimitState<'c> },
    /// Nothing counted, nothing spent: the wallet cannot pay the request's cost.
    InsufficientCredit { credit: CreditState<'c> },
}

/// Usage other gateway instances admitted in a window of an application's metric, as last told by
/// the control plane (global quotas). Zero in standalone mode.
pub trait OthersUsage {
    fn get(&self, app: usize, metric: usize, period: Period, window_start: i64) -> u64;

    /// Nano-units other gateway instances spent from the wallet at index `wallet` (life-time).
    fn credit_spent(&self, wallet: usize) -> u64 {
        let _ = wallet;
        0
    }
}

/// No other instances (standalone mode, or before the first global usage arrived).
pub struct NoOthers;

impl OthersUsage for NoOthers {
    fn get(&self, _app: usize, _metric: usize, _period: Period, _window_start: i64) -> u64 {
        0
    }
}

/// Usage a request adds, per metric index, after roll-up to parents.
pub type Usage = Vec<(usize, u64)>;

/// Adds `delta` to `metric` and every ancestor (`search` -> `hits`).
pub fn add_usage(catalog: &Catalog, usage: &mut Usage, metric: usize, delta: u64) {
    let mut cur = Some(metric);
    while let Some(m) = cur {
        match usage.iter_mut().find(|(k, _)| *k == m) {
            Some((_, d)) => *d = d.saturating_add(delta),
            None => usage.push((m, delta)),
        }
        cur = catalog.metrics.get(m).and_then(|d| d.parent);
    }
}

/// Decides a request and counts it: its cost first (an application spending from a prepaid
/// wallet, on a plan with prices), then every limit of `plan` it touches.
///
/// The cost is spent from the wallet's record with compare-and-swap ([`credit::spend`]); the
/// limits are checked and counted in one CAS transaction on the application's record. Shared
/// data has no transaction over two keys, so a request the limits then refuse (or that cannot be
/// counted) gives its cost back ([`credit::give_back`]): a refused request counts nothing and
/// spends nothing once its decision is made. In between, a concurrent request of the same wallet
/// sees it poorer by that cost, so the race can only refuse a request the wallet could just pay,
/// never admit one it cannot.
///
/// Hence the order of refusals: a request its wallet cannot pay is 402 `insufficient_credit`
/// whatever its limits say (the credit is checked first); one it can pay, over a limit, is 429.
pub fn enforce<'c>(
    store: &mut dyn SharedStore,
    catalog: &'c Catalog,
    app: &AppDef,
    plan: &'c PlanDef,
    usage: &Usage,
    others: &dyn OthersUsage,
    now: i64,
) -> Result<Enforcement<'c>, StoreError> {
    // A zero-cost request (an unpriced metric, an invoiced plan, an application in no wallet)
    // touches no wallet: it is admitted even at a zero balance.
    let charged = match app.wallet() {
        Some(w) => {
            let cost = credit::cost_nano(plan, usage);
            match (catalog.wallets.get(w), cost) {
                (Some(wallet), 1..) => Some((wallet, cost, others.credit_spent(w))),
                _ => None,
            }
        }
        None => None,
    };
    if let Some((wallet, cost, others_spent)) = charged {
        if let Err(credit) = credit::spend(store, wallet, cost, others_spent)? {
            return Ok(Enforcement::InsufficientCredit { credit });
        }
    }
    let counted = count_limits(store, catalog, app, plan, usage, others, now);
    if let Some((wallet, cost, _)) = charged {
        if !matches!(counted, Ok(Enforcement::Admitted { .. })) {
            // Refused by a limit, or not counted: spend nothing. A give-back that fails leaves
            // the wallet poorer here, never richer (see `credit::give_back`).
            let _ = credit::give_back(store, wallet, cost);
        }
    }
    counted
}

/// Checks every limit of `plan` touched by `usage` and, if all have room, counts the usage, all
/// in one CAS transaction on the application's record. A rejected request counts nothing.
fn count_limits<'c>(
    store: &mut dyn SharedStore,
    catalog: &'c Catalog,
    app: &AppDef,
    plan: &'c PlanDef,
    usage: &Usage,
    others: &dyn OthersUsage,
    now: i64,
) -> Result<Enforcement<'c>, StoreError> {
    let touched: Vec<(&LimitDef, u64)> = plan
        .limits
        .iter()
        .filter_map(|l| {
            usage
                .iter()
                .find(|(m, _)| *m == l.metric)
                .map(|(_, d)| (l, *d))
        })
        .collect();
    if touched.is_empty() {
        return Ok(Enforcement::Admitted { tightest: None });
    }
    let key = app.counter_key();
    for _ in 0..MAX_CAS_ATTEMPTS {
        let (bytes, cas) = store.get(&key)?;
        let mut entries = bytes.as_deref().map(decode).unwrap_or_default();
        let mut states = Vec::with_capacity(touched.len());
        let mut violated: Option<LimitState<'c>> = None;
        for &(limit, delta) in &touched {
            let w = window(limit.period, now);
            let metric = &catalog.metrics[limit.metric].name;
            let current = entries
                .iter()
                .find(|e| {
                    e.period == limit.period && e.metric == *metric && e.window_start == w.start
                })
                .map_or(0, |e| e.count);
            let after = current.saturating_add(delta);
            // Global quotas: what other gateway instances admitted in this window counts too.
            let seen =
                after.saturating_add(others.get(app.index, limit.metric, limit.period, w.start));
            let state = LimitState {
                limit,
                remaining: limit.value.saturating_sub(seen),
                reset_in: w.reset_in(now),
                window_secs: w.end.map(|e| (e - w.start) as u64),
            };
            if seen > limit.value {
                let candidate = LimitState {
                    remaining: 0,
                    ..state
                };
                // Retry-After must cover every violated limit: keep the one resetting last.
                if violated.is_none_or(|v| later(candidate.reset_in, v.reset_in)) {
                    violated = Some(candidate);
                }
            }
            states.push((state, w.start, metric, after));
        }
        if let Some(violated) = violated {
            store.release();
            return Ok(Enforcement::Exceeded { violated });
        }
        // Only the entries of the limits this request touched change. Every other entry stays as
        // it is (another method's count, another plan's limit the application may return to),
        // except entries of metrics the catalog no longer has, which no limit can read again:
        // that keeps the record bounded by the catalog.
        entries.retain(|e| catalog.metrics.iter().any(|m| m.name == e.metric));
        for (state, start, metric, after) in &states {
            let period = state.limit.period;
            match entries
                .iter_mut()
                .find(|e| e.period == period && e.metric == **metric)
            {
                Some(e) => {
                    e.window_start = *start;
                    e.count = *after;
                }
                None => entries.push(Entry {
                    period,
                    metric: (*metric).clone(),
                    window_start: *start,
                    count: *after,
                }),
            }
        }
        if store.set(&key, &encode(&entries), cas)? {
            let tightest = states
                .into_iter()
                .map(|(s, ..)| s)
                .reduce(|a, b| tighter(a, b));
            return Ok(Enforcement::Admitted { tightest });
        }
    }
    Err(StoreError::Contended)
}

/// Whether reset `a` comes after reset `b` (`None` = never, the latest of all).
fn later(a: Option<u64>, b: Option<u64>) -> bool {
    match (a, b) {
        (None, Some(_)) => true,
        (Some(x), Some(y)) => x > y,
        _ => false,
    }
}

/// The more constrained of two limits: fewer units left; on a tie, the one resetting later.
fn tighter<'c>(a: LimitState<'c>, b: LimitState<'c>) -> LimitState<'c> {
    if b.remaining < a.remaining || (b.remaining == a.remaining && later(b.reset_in, a.reset_in)) {
        b
    } else {
        a
    }
}

/// Creates an empty record for `app` unless one exists. Runs when a configuration is applied, so
/// the request path always finds the key and can rely on compare-and-swap (a CAS token of 0, what a
/// missing key has, means an unconditional write to the host).
pub fn ensure_record(store: &mut dyn SharedStore, app: &AppDef) -> Result<(), StoreError> {
    let key = app.counter_key();
    let (bytes, _) = store.get(&key)?;
    if bytes.is_none() {
        store.set(&key, &encode(&[]), None)?;
    }
    Ok(())
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use std::collections::HashMap;

    /// An in-memory host with Envoy's semantics: CAS tokens from a global counter, a missing
    /// `cas` writing unconditionally, and optional forced CAS failures to model racing workers.
    #[derive(Default)]
    pub struct FakeStore {
        pub data: HashMap<String, (Vec<u8>, u32)>,
        next_cas: u32,
        pub fail_next_sets: usize,
        pub sets: usize,
        /// Reads that ended without a write ([`SharedStore::release`]).
        pub releases: usize,
    }

    impl SharedStore for FakeStore {
        fn get(&mut self, key: &str) -> Result<(Option<Vec<u8>>, Option<u32>), StoreError> {
            Ok(match self.data.get(key) {
                Some((v, cas)) => (Some(v.clone()), Some(*cas)),
                None => (None, None),
            })
        }
        fn set(&mut self, key: &str, value: &[u8], cas: Option<u32>) -> Result<bool, StoreError> {
            self.sets += 1;
            if self.fail_next_sets > 0 {
                self.fail_next_sets -= 1;
                return Ok(false);
            }
            if let (Some(c), Some((_, cur))) = (cas, self.data.get(key)) {
                if c != *cur {
                    return Ok(false);
                }
            }
            self.next_cas += 1;
            self.data
                .insert(key.to_string(), (value.to_vec(), self.next_cas));
            Ok(true)
        }
        fn release(&mut self) {
            self.releases += 1;
        }
    }

    #[test]
    fn record_round_trips_and_garbage_reads_empty() {
        let e = vec![
            Entry {
                period: Period::Minute,
                metric: "hits".into(),
                window_start: 60,
                count: 3,
            },
            Entry {
                period: Period::Eternity,
                metric: "search".into(),
                window_start: 0,
                count: u64::MAX,
            },
        ];
        assert_eq!(decode(&encode(&e)), e);
        assert!(decode(&[]).is_empty());
        assert!(decode(&[9, 1, 2]).is_empty());
        let mut truncated = encode(&e);
        truncated.pop();
        assert!(decode(&truncated).is_empty());
    }

    /// Issue 15 item 1: a request on an unmetered method (`/other`, counting only `hits`) used to
    /// drop the `search` entry, so alternating `/other` and `/search` admitted every search.
    #[test]
    fn a_request_on_another_method_keeps_the_method_count() {
        let (catalog, _) = property_catalog(&[(0, 1, 100), (1, 1, 2)], &[]);
        let mut store = FakeStore::default();
        let app = &catalog.apps[0];
        ensure_record(&mut store, app).unwrap();
        let plan = &catalog.plans[0];
        let mut admitted_searches = 0;
        for i in 0..6 {
            let metric = if i % 2 == 0 { 2 } else { 1 }; // "other", then "search"
            let mut usage = Usage::new();
            add_usage(&catalog, &mut usage, metric, 1);
            let r = enforce(
                &mut store,
                &catalog,
                app,
                plan,
                &usage,
                &NoOthers,
                3_600 * 100,
            );
            if metric == 1 && matches!(r, Ok(Enforcement::Admitted { .. })) {
                admitted_searches += 1;
            }
        }
        assert_eq!(admitted_searches, 2);
    }

    /// Metrics of the property catalog: `hits`, its methods `search` and `other`, and `data`.
    pub(crate) const PROPERTY_METRICS: [(&str, Option<&str>); 4] = [
        ("hits", None),
        ("search", Some("hits")),
        ("other", Some("hits")),
        ("data", None),
    ];

    /// `(metric, period, value)` limits of [`PROPERTY_METRICS`] as snapshot JSON, the first of
    /// each (metric, period) kept (a plan has one limit per pair).
    pub(crate) fn property_limits(ls: &[(usize, usize, u64)]) -> Vec<serde_json::Value> {
        let mut seen = Vec::new();
        ls.iter()
            .filter(|(m, p, _)| {
                let fresh = !seen.contains(&(*m, *p));
                seen.push((*m, *p));
                fresh
            })
            .map(|&(m, p, v)| {
                serde_json::json!({"metric": PROPERTY_METRICS[m].0,
                    "period": Period::ALL[p].as_str(), "value": v})
            })
            .collect()
    }

    /// The metrics of [`PROPERTY_METRICS`] as snapshot JSON.
    pub(crate) fn property_metrics() -> Vec<serde_json::Value> {
        PROPERTY_METRICS
            .iter()
            .map(|(n, p)| serde_json::json!({"name": n, "parent": p}))
            .collect()
    }

    /// A catalog with one application and two plans built from `(metric, period, value)` limits.
    fn property_catalog(
        plan_a: &[(usize, usize, u64)],
        plan_b: &[(usize, usize, u64)],
    ) -> (Catalog, ()) {
        let snapshot = serde_json::json!({
            "plans": [{"id": "a", "limits": property_limits(plan_a)},
                      {"id": "b", "limits": property_limits(plan_b)}],
            "applications": [{"id": "app", "plan": "a", "state": "live"}],
            "metrics": property_metrics(),
        });
        let snapshot: tollgate_protocol::Snapshot = serde_json::from_value(snapshot).unwrap();
        (Catalog::compile(&snapshot, "snapshot").unwrap(), ())
    }

    use proptest::prelude::*;

    #[derive(Debug, Clone)]
    struct Step {
        /// Seconds the clock moves forward before the request (0 often: same window).
        advance: i64,
        /// Which plan the application is on for this request (plans change under traffic).
        plan: usize,
        /// Metrics the request increments, with their deltas (none: an unmetered request).
        usage: Vec<(usize, u64)>,
    }

    fn step() -> impl Strategy<Value = Step> {
        (
            prop_oneof![3 => Just(0i64), 1 => 0i64..4_000, 1 => 0i64..40_000_000],
            prop_oneof![4 => Just(0usize), 1 => Just(1usize)],
            proptest::collection::vec((0usize..4, 1u64..4), 0..3),
        )
            .prop_map(|(advance, plan, usage)| Step {
                advance,
                plan,
                usage,
            })
    }

    /// Up to 4 `(metric, period, value)` limits over [`PROPERTY_METRICS`], small values.
    pub(crate) fn limits() -> impl Strategy<Value = Vec<(usize, usize, u64)>> {
        proptest::collection::vec((0usize..4, 0usize..7, 0u64..6), 0..5)
    }

    proptest! {
        #![proptest_config(ProptestConfig {
            cases: 256,
            // No files: the same test runs under wasm32-wasip1 with no file system.
            failure_persistence: None,
            ..ProptestConfig::default()
        })]

        /// Any sequence of requests over any plans and clock: for every limit and window, the
        /// admitted count never exceeds the limit and always equals what a model that counts
        /// every admitted request says (so nothing is lost or reset either); a rejected request
        /// leaves the record byte for byte as it was; and the decision is exactly the model's.
        #[test]
        fn counts_never_exceed_limits_and_rejections_change_nothing(
            plan_a in limits(),
            plan_b in limits(),
            start in 0i64..4_000_000_000,
            steps in proptest::collection::vec(step(), 1..40),
        ) {
            let (catalog, ()) = property_catalog(&plan_a, &plan_b);
            let app = &catalog.apps[0];
            let mut store = FakeStore::default();
            ensure_record(&mut store, app).unwrap();
            // Model: admitted units per (metric, period, window start), of every admitted request.
            let mut model: HashMap<(usize, Period, i64), u64> = HashMap::new();
            let mut now = start;
            for s in &steps {
                now += s.advance;
                let plan = &catalog.plans[s.plan];
                let mut usage = Usage::new();
                for &(m, d) in &s.usage {
                    add_usage(&catalog, &mut usage, m, d);
                }
                let fits = plan.limits.iter().all(|l| {
                    usage.iter().find(|(m, _)| *m == l.metric).is_none_or(|&(_, d)| {
                        let w = window(l.period, now).start;
                        model.get(&(l.metric, l.period, w)).copied().unwrap_or(0) + d <= l.value
                    })
                });
                let before = store.data.clone();
                let (sets_before, releases_before) = (store.sets, store.releases);
                let r = enforce(&mut store, &catalog, app, plan, &usage, &NoOthers, now).unwrap();
                match r {
                    Enforcement::Admitted { .. } => {
                        prop_assert!(fits, "admitted over a limit at {now}: {s:?}");
                        for l in &plan.limits {
                            if let Some(&(_, d)) = usage.iter().find(|(m, _)| *m == l.metric) {
                                let w = window(l.period, now).start;
                                *model.entry((l.metric, l.period, w)).or_default() += d;
                            }
                        }
                    }
                    Enforcement::Exceeded { .. } => {
                        prop_assert!(!fits, "rejected with room left at {now}: {s:?}");
                        prop_assert_eq!(&store.data, &before, "a rejected request changed the record");
                        // Nothing written, and the read released at once (not at the request's end).
                        prop_assert_eq!(store.sets, sets_before);
                        prop_assert_eq!(store.releases, releases_before + 1, "a rejection releases its read");
                    }
                    // No wallet in this catalog (credit.rs has the property test with one).
                    Enforcement::InsufficientCredit { .. } => prop_assert!(false, "no wallet here"),
                }
                // Every limit of every plan: the stored count of the current window is the model's.
                let entries = decode(&store.data[&app.counter_key()].0);
                for p in &catalog.plans {
                    for l in &p.limits {
                        let w = window(l.period, now).start;
                        let stored = entries
                            .iter()
                            .find(|e| e.period == l.period && e.metric == catalog.metrics[l.metric].name && e.window_start == w)
                            .map_or(0, |e| e.count);
                        let want = model.get(&(l.metric, l.period, w)).copied().unwrap_or(0);
                        prop_assert_eq!(stored, want, "count of {} at {}", l.policy_name, now);
                    }
                }
                // Admitted under either plan, a count stays within the larger of the two limits.
                for p in &catalog.plans {
                    for l in &p.limits {
                        let w = window(l.period, now).start;
                        let bound = catalog
                            .plans
                            .iter()
                            .flat_map(|q| &q.limits)
                            .filter(|x| x.metric == l.metric && x.period == l.period)
                            .map(|x| x.value)
                            .max()
                            .unwrap_or(0);
                        let n = model.get(&(l.metric, l.period, w)).copied().unwrap_or(0);
                        prop_assert!(n <= bound, "{} admitted {} > {}", l.policy_name, n, bound);
                    }
                }
            }
        }
    }
}
