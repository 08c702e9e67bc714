//! Prepaid credit (issue 18): what a request costs its application's wallet, and the wallet's
//! spend record, decremented exactly across every worker of the gateway.
//!
//! A wallet's spend is one shared-data record per wallet (`tg1/w/<wallet id>`, keyed by wallet,
//! not application: several applications spend from one wallet) holding this gateway's life-time
//! spend in nano-units, updated with compare-and-swap like the applications' counter records
//! ([`crate::counters`]), and created with them before traffic can reach it. A request is
//! admitted only while
//!
//! `own spend + others' spend (GlobalUsage::credit) + cost <= limit_nano`
//!
//! and its cost is then added to the own spend. The spend is never reported as money: the usage
//! reports carry the request's metric deltas, which the control plane prices and debits.
//!
//! Record layout, version 1: `[1u8] [spent u64 little-endian]`.

use crate::catalog::{PlanDef, WalletDef};
use crate::counters::{SharedStore, StoreError, Usage, MAX_CAS_ATTEMPTS};

const RECORD_VERSION: u8 = 1;

/// What `usage` costs on `plan`, in nano-units: the sum over the request's metric deltas (after
/// roll-up to parents, the deltas limits are checked with) of delta x price. A metric without a
/// price costs nothing; an invoiced plan (no prices) costs nothing. Saturates at `u64::MAX`
/// (about 1.8 x 10^10 currency units): such a request is refused by any smaller wallet rather
/// than wrapping around to a small cost.
pub fn cost_nano(plan: &PlanDef, usage: &Usage) -> u64 {
    plan.credit_prices.iter().fold(0u64, |total, price| {
        match usage.iter().find(|(m, _)| *m == price.metric) {
            Some(&(_, delta)) => total.saturating_add(delta.saturating_mul(price.nano_per_unit)),
            None => total,
        }
    })
}

/// One wallet's state after the decision.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CreditState<'c> {
    pub wallet: &'c WalletDef,
    /// What the request costs (or would have cost), nano-units.
    pub cost_nano: u64,
    /// What is left for further requests after this one (before it, when refused), nano-units.
    pub remaining_nano: u64,
}

/// Decodes a spend record; a missing, corrupt or unknown-version record reads as nothing spent,
/// as a counter record reads as empty (the record is only ever written by this module).
pub(crate) fn decode(bytes: Option<&[u8]>) -> u64 {
    match bytes {
        Some([RECORD_VERSION, rest @ ..]) => {
            rest.try_into().map(u64::from_le_bytes).unwrap_or_default()
        }
        _ => 0,
    }
}

pub(crate) fn encode(spent: u64) -> [u8; 9] {
    let mut out = [0u8; 9];
    out[0] = RECORD_VERSION;
    out[1..].copy_from_slice(&spent.to_le_bytes());
    out
}

/// This gateway's spend from `wallet` so far, nano-units.
pub fn own_spend(store: &mut dyn SharedStore, wallet: &WalletDef) -> Result<u64, StoreError> {
    let (bytes, _) = store.get(&wallet.spend_key())?;
    store.release();
    Ok(decode(bytes.as_deref()))
}

/// Creates an empty spend record for `wallet` unless one exists (see
/// [`crate::counters::ensure_record`]: the request path must always find a CAS token).
pub fn ensure_record(store: &mut dyn SharedStore, wallet: &WalletDef) -> Result<(), StoreError> {
    let key = wallet.spend_key();
    let (bytes, _) = store.get(&key)?;
    if bytes.is_none() {
        store.set(&key, &encode(0), None)?;
    } else {
        store.release();
    }
    Ok(())
}

/// Spends `cost` from `wallet` if `own + others + cost <= limit_nano`, in one compare-and-swap
/// on its record: `Ok(Ok(state))` spent, `Ok(Err(state))` refused with nothing written.
pub fn spend<'c>(
    store: &mut dyn SharedStore,
    wallet: &'c WalletDef,
    cost: u64,
    others: u64,
) -> Result<Result<CreditState<'c>, CreditState<'c>>, StoreError> {
    let key = wallet.spend_key();
    for _ in 0..MAX_CAS_ATTEMPTS {
        let (bytes, cas) = store.get(&key)?;
        let spent = decode(bytes.as_deref());
        let before = spent.saturating_add(others);
        let after = before.saturating_add(cost);
        if after > wallet.limit_nano {
            store.release();
            return Ok(Err(CreditState {
                wallet,
                cost_nano: cost,
                remaining_nano: wallet.limit_nano.saturating_sub(before),
            }));
        }
        if store.set(&key, &encode(spent.saturating_add(cost)), cas)? {
            return Ok(Ok(CreditState {
                wallet,
                cost_nano: cost,
                remaining_nano: wallet.limit_nano - after,
            }));
        }
    }
    Err(StoreError::Contended)
}

/// Gives back what [`spend`] took for a request that was then refused (a limit) or could not be
/// counted: a refused request spends nothing. Until it lands, a concurrent request of the same
/// wallet sees the wallet poorer by `cost` and may be refused (never wrongly admitted). Should the
/// give-back itself fail (the store failing, or losing [`MAX_CAS_ATTEMPTS`] races in a row), the
/// spend stays counted: the wallet looks `cost` poorer in this gateway, never richer.
pub fn give_back(
    store: &mut dyn SharedStore,
    wallet: &WalletDef,
    cost: u64,
) -> Result<(), StoreError> {
    let key = wallet.spend_key();
    for _ in 0..MAX_CAS_ATTEMPTS {
        let (bytes, cas) = store.get(&key)?;
        let spent = decode(bytes.as_deref());
        if store.set(&key, &encode(spent.saturating_sub(cost)), cas)? {
            return Ok(());
        }
    }
    Err(StoreError::Contended)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    use proptest::prelude::*;
    use tollgate_protocol::Period;

    use crate::catalog::Catalog;
    use crate::counters::tests::{
        limits, property_limits, property_metrics, FakeStore, PROPERTY_METRICS,
    };
    use crate::counters::{add_usage, enforce, ensure_record, Enforcement, OthersUsage};
    use crate::periods::window;

    #[test]
    fn record_round_trips_and_garbage_reads_as_nothing_spent() {
        for n in [0, 1, 10 * tollgate_protocol::NANO_PER_UNIT, u64::MAX] {
            assert_eq!(decode(Some(&encode(n))), n);
        }
        assert_eq!(decode(None), 0);
        assert_eq!(decode(Some(&[])), 0);
        assert_eq!(decode(Some(&[1, 2, 3])), 0);
        let mut other_version = encode(5);
        other_version[0] = 9;
        assert_eq!(decode(Some(&other_version)), 0);
    }

    #[test]
    fn preparing_a_record_again_keeps_what_was_spent() {
        let wallet = WalletDef {
            id: "w".into(),
            limit_nano: 10,
        };
        let mut store = FakeStore::default();
        super::ensure_record(&mut store, &wallet).unwrap();
        assert_eq!(own_spend(&mut store, &wallet).unwrap(), 0);
        assert!(spend(&mut store, &wallet, 3, 0).unwrap().is_ok());
        // A snapshot swap, a restarted worker, a listener update: the record is prepared again.
        super::ensure_record(&mut store, &wallet).unwrap();
        assert_eq!(own_spend(&mut store, &wallet).unwrap(), 3);
        give_back(&mut store, &wallet, 5).unwrap();
        assert_eq!(
            own_spend(&mut store, &wallet).unwrap(),
            0,
            "a give-back never goes below 0"
        );
    }

    /// A store where another worker spends `other_cost` from the wallet between this worker's
    /// read of the record and its write, once.
    struct Interleaved {
        store: FakeStore,
        other_cost: Option<u64>,
    }

    impl SharedStore for Interleaved {
        fn get(&mut self, key: &str) -> Result<(Option<Vec<u8>>, Option<u32>), StoreError> {
            let read = self.store.get(key)?;
            if let Some(cost) = self.other_cost.take() {
                let spent = decode(read.0.as_deref());
                assert!(self.store.set(key, &encode(spent + cost), read.1)?);
            }
            Ok(read)
        }
        fn set(&mut self, key: &str, value: &[u8], cas: Option<u32>) -> Result<bool, StoreError> {
            self.store.set(key, value, cas)
        }
    }

    /// Two workers at once: the one whose write comes second re-reads, and sees the wallet the
    /// first one left (here: empty), instead of writing over its spend.
    #[test]
    fn a_spend_racing_another_re_reads_and_never_writes_over_it() {
        let wallet = WalletDef {
            id: "w".into(),
            limit_nano: 10,
        };
        let mut s = Interleaved {
            store: FakeStore::default(),
            other_cost: None,
        };
        super::ensure_record(&mut s, &wallet).unwrap();
        s.other_cost = Some(9);
        let refused = spend(&mut s, &wallet, 2, 0).unwrap().unwrap_err();
        assert_eq!(refused.remaining_nano, 1);
        assert_eq!(
            own_spend(&mut s, &wallet).unwrap(),
            9,
            "the other's spend stands"
        );
        s.other_cost = Some(0);
        assert!(spend(&mut s, &wallet, 1, 0).unwrap().is_ok());
        // A give-back racing a spend keeps that spend too.
        s.other_cost = Some(3);
        give_back(&mut s, &wallet, 1).unwrap();
        assert_eq!(own_spend(&mut s, &wallet).unwrap(), 10 + 3 - 1);
    }

    /// Others' spend of wallet 0, fixed per request.
    struct OthersSpent(u64);

    impl OthersUsage for OthersSpent {
        fn get(&self, _: usize, _: usize, _: Period, _: i64) -> u64 {
            0
        }
        fn credit_spent(&self, wallet: usize) -> u64 {
            if wallet == 0 {
                self.0
            } else {
                0
            }
        }
    }

    /// Plan `p` with `limits` (metric, period, value) and `prices` (metric, nano), applications
    /// `a` and `b` on it, both in wallet `w` of `limit_nano`.
    fn catalog(
        limits: &[(usize, usize, u64)],
        prices: &[(usize, u64)],
        limit_nano: u64,
    ) -> Catalog {
        let mut priced = Vec::new();
        let prices: Vec<_> = prices
            .iter()
            .filter(|(m, _)| {
                let fresh = !priced.contains(m);
                priced.push(*m);
                fresh
            })
            .map(|&(m, n)| serde_json::json!({"metric": PROPERTY_METRICS[m].0, "nano_per_unit": n}))
            .collect();
        let snapshot = serde_json::json!({
            "plans": [{"id": "p", "limits": property_limits(limits), "credit_prices": prices}],
            "applications": [{"id": "a", "plan": "p", "state": "live"},
                             {"id": "b", "plan": "p", "state": "live"}],
            "metrics": property_metrics(),
            "wallets": [{"id": "w", "limit_nano": limit_nano, "applications": ["a", "b"]}],
        });
        let snapshot: tollgate_protocol::Snapshot = serde_json::from_value(snapshot).unwrap();
        Catalog::compile(&snapshot, "snapshot").unwrap()
    }

    #[derive(Debug, Clone)]
    struct Step {
        advance: i64,
        app: usize,
        usage: Vec<(usize, u64)>,
        others: u64,
    }

    fn step() -> impl Strategy<Value = Step> {
        (
            prop_oneof![3 => Just(0i64), 1 => 0i64..4_000, 1 => 0i64..40_000_000],
            0usize..2,
            proptest::collection::vec((0usize..4, 1u64..4), 0..3),
            prop_oneof![3 => Just(0u64), 1 => 0u64..20],
        )
            .prop_map(|(advance, app, usage, others)| Step {
                advance,
                app,
                usage,
                others,
            })
    }

    /// The stored values, CAS tokens left out (a give-back moves the token, not the value).
    fn values(store: &FakeStore) -> HashMap<String, Vec<u8>> {
        store
            .data
            .iter()
            .map(|(k, (v, _))| (k.clone(), v.clone()))
            .collect()
    }

    proptest! {
        #![proptest_config(ProptestConfig {
            cases: 256,
            // No files: the same test runs under wasm32-wasip1 with no file system.
            failure_persistence: None,
            ..ProptestConfig::default()
        })]

        /// Any sequence of requests of two applications sharing a wallet, under any limits,
        /// prices and others' spend: the decision is the model's (402 when the wallet cannot pay,
        /// else 429 when a limit would be exceeded, else admitted); the wallet's record always
        /// holds exactly the cost of the admitted requests, which with the others' spend never
        /// exceeds the wallet's limit when anything priced was admitted; and a refused request
        /// leaves every stored value as it was.
        #[test]
        fn the_wallet_spends_exactly_what_admitted_requests_cost(
            limits in limits(),
            prices in proptest::collection::vec((0usize..4, 0u64..5), 0..4),
            limit_nano in 0u64..30,
            start in 0i64..4_000_000_000,
            steps in proptest::collection::vec(step(), 1..40),
        ) {
            let catalog = catalog(&limits, &prices, limit_nano);
            let plan = &catalog.plans[0];
            let wallet = &catalog.wallets[0];
            let mut store = FakeStore::default();
            for app in &catalog.apps {
                ensure_record(&mut store, app).unwrap();
            }
            super::ensure_record(&mut store, wallet).unwrap();
            let mut spent = 0u64;
            let mut counts: HashMap<(usize, usize, Period, i64), u64> = HashMap::new();
            let mut now = start;
            for s in &steps {
                now += s.advance;
                let app = &catalog.apps[s.app];
                let mut usage = Usage::new();
                for &(m, d) in &s.usage {
                    add_usage(&catalog, &mut usage, m, d);
                }
                let cost: u64 = plan
                    .credit_prices
                    .iter()
                    .map(|p| usage.iter().find(|(m, _)| *m == p.metric).map_or(0, |(_, d)| d * p.nano_per_unit))
                    .sum();
                let pays = cost == 0 || spent + s.others + cost <= limit_nano;
                let fits = plan.limits.iter().all(|l| {
                    usage.iter().find(|(m, _)| *m == l.metric).is_none_or(|&(_, d)| {
                        let w = window(l.period, now).start;
                        counts.get(&(s.app, l.metric, l.period, w)).copied().unwrap_or(0) + d <= l.value
                    })
                });
                let before = values(&store);
                let r = enforce(&mut store, &catalog, app, plan, &usage, &OthersSpent(s.others), now).unwrap();
                match r {
                    Enforcement::InsufficientCredit { credit } => {
                        prop_assert!(!pays, "402 with credit left at {now}: {s:?}");
                        prop_assert_eq!(credit.cost_nano, cost);
                        prop_assert_eq!(credit.remaining_nano, limit_nano.saturating_sub(spent + s.others));
                        prop_assert_eq!(values(&store), before, "a 402 changed a value");
                    }
                    Enforcement::Exceeded { .. } => {
                        prop_assert!(pays && !fits, "429 at {now}: {s:?}");
                        prop_assert_eq!(values(&store), before, "a 429 changed a value");
                    }
                    Enforcement::Admitted { .. } => {
                        prop_assert!(pays && fits, "admitted at {now}: {s:?}");
                        spent += cost;
                        for l in &plan.limits {
                            if let Some(&(_, d)) = usage.iter().find(|(m, _)| *m == l.metric) {
                                let w = window(l.period, now).start;
                                *counts.entry((s.app, l.metric, l.period, w)).or_default() += d;
                            }
                        }
                        if cost > 0 {
                            prop_assert!(spent + s.others <= limit_nano);
                        }
                    }
                }
                prop_assert_eq!(own_spend(&mut store, wallet).unwrap(), spent);
            }
        }
    }
}
