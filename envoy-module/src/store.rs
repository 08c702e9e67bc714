//! The counters' shared data, in process: a map split into [`STRIPES`] mutex-guarded shards.
//!
//! The filter's counting (`tollgate_filter::counters::enforce`) reads an application's record,
//! decides, and writes it back with the token it read (compare-and-swap), retrying a lost race.
//! Under proxy-wasm each of those is a host call and a lost race costs another round trip; here a
//! request's [`Transaction`] keeps the key's stripe locked from its read to its write, so the write
//! always finds the token it read: exact across every worker thread, and never a retry.
//!
//! The link (main thread) uses [`StripedStore::get`]/[`StripedStore::set`] without holding a lock
//! between them, with proxy-wasm's semantics (tokens, a missing token writing unconditionally).

use std::collections::{HashMap, HashSet};
use std::hash::{BuildHasher, BuildHasherDefault, DefaultHasher};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, PoisonError};

use tollgate_filter::counters::{SharedStore, StoreError};

/// Shards of the map. Records are one per application, so two requests wait on each other only
/// when their applications share a stripe: with 64 stripes and at most a few dozen workers, that
/// is rare, and each wait lasts one record's read-modify-write (well under a microsecond).
pub const STRIPES: usize = 64;

type Shard = HashMap<String, (Vec<u8>, u32)>;

pub struct StripedStore {
    shards: Vec<Mutex<Shard>>,
    /// Fixed-key hashing: which stripe a key lives in never changes.
    hasher: BuildHasherDefault<DefaultHasher>,
    /// Usage journals of destroyed configurations, removed once adopted (see [`Self::retire`]).
    retired: Mutex<HashSet<String>>,
}

/// The process's store for `namespace` (a configuration's `shared_data_id`: by default its
/// service, or `standalone`). Like proxy-wasm shared data (one map per `vm_id`, alive as long as
/// the process), it outlives any one filter configuration: a listener update that replaces the
/// configuration keeps every count, and the new link adopts the old one's usage journal. Two
/// namespaces share nothing: not a counter record, not a journal (a link never adopts another
/// service's usage, which the control plane would refuse whole), not a snapshot marker.
///
/// Stores are never dropped, as shared data is not: namespaces are few (one per service or
/// operator-chosen id) and a listener that comes back finds its counts.
pub fn process_store(namespace: &str) -> Arc<StripedStore> {
    static STORES: OnceLock<Mutex<HashMap<String, Arc<StripedStore>>>> = OnceLock::new();
    let mut stores = STORES
        .get_or_init(Mutex::default)
        .lock()
        .unwrap_or_else(PoisonError::into_inner);
    Arc::clone(stores.entry(namespace.to_string()).or_default())
}

impl Default for StripedStore {
    fn default() -> StripedStore {
        StripedStore {
            shards: (0..STRIPES).map(|_| Mutex::new(HashMap::new())).collect(),
            hasher: BuildHasherDefault::default(),
            retired: Mutex::default(),
        }
    }
}

/// A shard's lock, whether or not a thread panicked while holding it: the data is a map of byte
/// strings, consistent between statements, and refusing every later request would be worse.
fn lock(m: &Mutex<Shard>) -> MutexGuard<'_, Shard> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

fn read(shard: &Shard, key: &str) -> (Option<Vec<u8>>, Option<u32>) {
    match shard.get(key) {
        Some((v, cas)) => (Some(v.clone()), Some(*cas)),
        None => (None, None),
    }
}

/// Writes `value` if `cas` is absent or still the key's token; a new token on each write (never 0,
/// which proxy-wasm reads as "no token").
fn write(shard: &mut Shard, key: &str, value: &[u8], cas: Option<u32>) -> bool {
    match shard.get_mut(key) {
        Some((v, token)) => {
            if cas.is_some_and(|c| c != *token) {
                return false;
            }
            v.clear();
            v.extend_from_slice(value);
            *token = token.checked_add(1).unwrap_or(1);
            true
        }
        None => {
            shard.insert(key.to_string(), (value.to_vec(), 1));
            true
        }
    }
}

impl StripedStore {
    fn stripe(&self, key: &str) -> usize {
        (self.hasher.hash_one(key) % STRIPES as u64) as usize
    }

    fn shard(&self, i: usize) -> &Mutex<Shard> {
        // `i` comes from `stripe`, always below STRIPES == shards.len().
        &self.shards[i % self.shards.len()]
    }

    /// The value and its token (link, main thread).
    pub fn get(&self, key: &str) -> (Option<Vec<u8>>, Option<u32>) {
        read(&lock(self.shard(self.stripe(key))), key)
    }

    /// Compare-and-swap write (link, main thread); `false` on a token mismatch. Emptying a
    /// retired journal (its adopter's claim) removes the key instead.
    pub fn set(&self, key: &str, value: &[u8], cas: Option<u32>) -> bool {
        let mut shard = lock(self.shard(self.stripe(key)));
        let written = write(&mut shard, key, value, cas);
        if written && value.is_empty() && self.unretire(key) {
            shard.remove(key);
        }
        written
    }

    /// The journal `key` of a configuration Envoy destroyed: its last usage is in it, and no
    /// one will write it again, so once an adopter has claimed it (written it empty) the key
    /// can go. Without this, every listener update would leave one key behind for the
    /// process's life (each configuration journals under a new gateway id). Only for an owner
    /// known destroyed: a stalled owner finds its emptied journal and starts a new one, which
    /// relies on reading it empty, not missing.
    pub fn retire(&self, key: String) {
        let mut shard = lock(self.shard(self.stripe(&key)));
        if shard.get(&key).is_some_and(|(v, _)| v.is_empty()) {
            shard.remove(&key);
        } else {
            self.retired
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .insert(key);
        }
    }

    /// Whether `key` was retired (and no longer is).
    fn unretire(&self, key: &str) -> bool {
        self.retired
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(key)
    }

    /// Keys held (tests: that nothing grows).
    #[cfg(test)]
    fn len(&self) -> usize {
        self.shards.iter().map(|s| lock(s).len()).sum()
    }

    /// A request's view of the store: see [`Transaction`].
    pub fn transaction(&self) -> Transaction<'_> {
        Transaction {
            store: self,
            held: None,
        }
    }
}

/// The store as one request sees it: a `get` locks the key's stripe and keeps it locked until the
/// `set` that follows (or the next `get`, or the end of the request), so nothing can come between
/// a read and the write made from it. One stripe at a time: no lock-order deadlock is possible.
pub struct Transaction<'s> {
    store: &'s StripedStore,
    held: Option<(usize, MutexGuard<'s, Shard>)>,
}

impl Transaction<'_> {
    fn guard(&mut self, key: &str) -> &mut Shard {
        let stripe = self.store.stripe(key);
        let store = self.store;
        if self.held.as_ref().is_some_and(|h| h.0 != stripe) {
            // Release the stripe held before taking another (one lock at a time: no deadlock).
            self.held = None;
        }
        &mut self
            .held
            .get_or_insert_with(|| (stripe, lock(store.shard(stripe))))
            .1
    }
}

impl SharedStore for Transaction<'_> {
    fn get(&mut self, key: &str) -> Result<(Option<Vec<u8>>, Option<u32>), StoreError> {
        Ok(read(self.guard(key), key))
    }

    fn set(&mut self, key: &str, value: &[u8], cas: Option<u32>) -> Result<bool, StoreError> {
        let written = write(self.guard(key), key, value, cas);
        // The write ends the read-modify-write: let other requests in.
        self.held = None;
        Ok(written)
    }

    fn release(&mut self) {
        // No write follows the read (a rejection): let other requests in before the answer is
        // built and sent.
        self.held = None;
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code

    use super::*;
    use std::sync::atomic::{AtomicU64, Ordering};
    use std::thread;

    #[test]
    fn each_namespace_has_its_own_store_for_the_process() {
        let a = process_store("svc_a");
        assert!(
            Arc::ptr_eq(&a, &process_store("svc_a")),
            "a listener update finds its counts"
        );
        let b = process_store("svc_b");
        assert!(!Arc::ptr_eq(&a, &b));
        assert!(a.set("tollgate/v1/journal/g1", b"usage of svc_a", None));
        assert_eq!(b.get("tollgate/v1/journal/g1"), (None, None));
    }

    #[test]
    fn a_retired_journal_goes_once_adopted_and_only_then() {
        let s = StripedStore::default();
        assert!(s.set("journal/old", b"usage", None));
        assert!(s.set("journal/stalled", b"usage", None));
        s.retire("journal/old".into());
        let (_, cas) = s.get("journal/old");
        assert!(
            !s.set("journal/old", b"", cas.map(|c| c + 1)),
            "a lost claim removes nothing"
        );
        assert!(s.get("journal/old").0.is_some());
        assert!(s.set("journal/old", b"", cas), "the adopter's claim");
        assert_eq!(s.get("journal/old"), (None, None), "removed");
        // A journal whose owner was not destroyed (a stall) is only emptied: its owner must read
        // it empty to know it was taken for dead.
        let (_, cas) = s.get("journal/stalled");
        assert!(s.set("journal/stalled", b"", cas));
        assert_eq!(s.get("journal/stalled").0.as_deref(), Some(&b""[..]));
        // Retired after it was already adopted: removed at once.
        s.retire("journal/stalled".into());
        assert_eq!(s.len(), 0);
        assert!(s.retired.lock().unwrap().is_empty());
    }

    #[test]
    fn tokens_follow_proxy_wasm_semantics() {
        let s = StripedStore::default();
        assert_eq!(s.get("k"), (None, None));
        assert!(s.set("k", b"a", None));
        let (v, t) = s.get("k");
        assert_eq!(v.as_deref(), Some(&b"a"[..]));
        assert!(s.set("k", b"b", t));
        // The token moved with the write: the old one is refused, nothing changes.
        assert!(!s.set("k", b"c", t));
        assert_eq!(s.get("k").0.as_deref(), Some(&b"b"[..]));
        assert!(s.set("k", b"d", None), "no token writes unconditionally");
    }

    /// Eight threads each add one to the same record 2,000 times through request transactions
    /// that read, pause, then write with the token they read: with the stripe held from read to
    /// write, every write succeeds and none is lost (a plain CAS map would refuse some).
    #[test]
    fn read_modify_writes_never_lose_a_race() {
        const THREADS: usize = 8;
        const PER_THREAD: u64 = 2_000;
        let s = StripedStore::default();
        let refused = AtomicU64::new(0);
        thread::scope(|scope| {
            for _ in 0..THREADS {
                scope.spawn(|| {
                    for _ in 0..PER_THREAD {
                        let mut tx = s.transaction();
                        let (v, cas) = tx.get("app").unwrap();
                        let n = v.map_or(0, |b| u64::from_le_bytes(b.try_into().unwrap()));
                        thread::yield_now();
                        if !tx.set("app", &(n + 1).to_le_bytes(), cas).unwrap() {
                            refused.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                });
            }
        });
        let total = u64::from_le_bytes(s.get("app").0.unwrap().try_into().unwrap());
        assert_eq!(refused.load(Ordering::Relaxed), 0);
        assert_eq!(total, THREADS as u64 * PER_THREAD);
    }

    #[test]
    fn a_released_read_frees_its_stripe() {
        let s = StripedStore::default();
        let mut tx = s.transaction();
        let _ = tx.get("app").unwrap();
        let stripe = s.shard(s.stripe("app"));
        assert!(stripe.try_lock().is_err(), "held from the read");
        tx.release();
        assert!(
            stripe.try_lock().is_ok(),
            "free once released, the transaction still alive"
        );
        drop(tx);
    }

    #[test]
    fn a_transaction_can_move_between_stripes() {
        let s = StripedStore::default();
        let mut tx = s.transaction();
        // Many keys: some share a stripe, most do not; none may deadlock the one thread.
        for i in 0..200 {
            let key = format!("k{i}");
            let (_, cas) = tx.get(&key).unwrap();
            let _ = tx.get("other").unwrap();
            assert!(tx.set(&key, b"x", cas).unwrap());
        }
        drop(tx);
        assert_eq!(s.get("k199").0.as_deref(), Some(&b"x"[..]));
    }

    /// Issue 18, with real threads: eight workers deciding requests of two applications that
    /// share one prepaid wallet, through the filter's `enforce` and request transactions, admit
    /// exactly what the wallet pays for, and each admitted request is counted once.
    #[test]
    fn threads_spending_from_one_wallet_admit_exactly_what_it_pays_for() {
        use tollgate_filter::catalog::Catalog;
        use tollgate_filter::counters::{add_usage, enforce, ensure_record, Enforcement, NoOthers};
        use tollgate_filter::credit;
        use tollgate_protocol::{
            ApplicationState, CreditPrice, Limit, Metric, Period, Plan, Snapshot, Wallet,
        };

        const THREADS: usize = 8;
        const PER_THREAD: u64 = 300;
        const PAID_FOR: u64 = 1_000;
        let app = |id: &str| tollgate_protocol::Application {
            id: id.into(),
            plan: "prepaid".into(),
            state: ApplicationState::Live,
            state_reason: None,
            key_sha256: vec![],
            app_id: None,
            app_key_sha256: vec![],
        };
        let snapshot = Snapshot {
            version: None,
            plans: vec![Plan {
                id: "prepaid".into(),
                name: None,
                // A limit never reached: each request also counts in its application's record.
                limits: vec![Limit {
                    metric: "hits".into(),
                    period: Period::Eternity,
                    value: u64::MAX,
                }],
                credit_prices: vec![CreditPrice {
                    metric: "hits".into(),
                    nano_per_unit: 3,
                }],
            }],
            applications: vec![app("a"), app("b")],
            metrics: vec![Metric {
                name: "hits".into(),
                parent: None,
            }],
            mapping_rules: vec![],
            wallets: vec![Wallet {
                id: "w".into(),
                limit_nano: 3 * PAID_FOR,
                applications: vec!["a".into(), "b".into()],
            }],
            top_up_url: None,
        };
        let catalog = Catalog::compile(&snapshot, "snapshot").unwrap();
        let s = StripedStore::default();
        for a in &catalog.apps {
            ensure_record(&mut s.transaction(), a).unwrap();
        }
        credit::ensure_record(&mut s.transaction(), &catalog.wallets[0]).unwrap();
        let mut usage = Vec::new();
        add_usage(&catalog, &mut usage, 0, 1);
        let admitted = AtomicU64::new(0);
        thread::scope(|scope| {
            for t in 0..THREADS {
                let (catalog, usage, admitted, s) = (&catalog, &usage, &admitted, &s);
                scope.spawn(move || {
                    let app = &catalog.apps[t % 2];
                    for _ in 0..PER_THREAD {
                        let mut tx = s.transaction();
                        let r = enforce(
                            &mut tx,
                            catalog,
                            app,
                            &catalog.plans[0],
                            usage,
                            &NoOthers,
                            0,
                        );
                        match r.unwrap() {
                            Enforcement::Admitted { .. } => {
                                admitted.fetch_add(1, Ordering::Relaxed);
                            }
                            Enforcement::InsufficientCredit { .. } => {}
                            other => panic!("{other:?}"),
                        }
                    }
                });
            }
        });
        assert_eq!(admitted.load(Ordering::Relaxed), PAID_FOR);
        let spent = credit::own_spend(&mut s.transaction(), &catalog.wallets[0]).unwrap();
        assert_eq!(spent, 3 * PAID_FOR);
    }
}
