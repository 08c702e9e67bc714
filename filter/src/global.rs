//! Global quotas: what other gateway instances admitted, as last reported by the control plane,
//! indexed by the current catalog for the request path. A view belongs to one catalog: after a
//! snapshot swap it is rebuilt from the raw answer.
//!
//! Over-admission bound: another instance's usage reaches this one after at most its flush
//! interval plus this one's poll interval, so a quota can be exceeded by at most
//! (other instances x their admission rate x (flush + poll)); with 1 s intervals, two seconds of
//! the other instances' traffic.
//!
//! Prepaid credit is shared the same way: each wallet's life-time spend by the other instances
//! (`GlobalUsage::credit`, priced by the control plane from their usage reports) is added to this
//! instance's own exact spend. Over-spend bound, by the same reasoning: a wallet can be overdrawn
//! by at most (other instances x the wallet's spend rate at each, in nano-units per second, x
//! (flush + poll)): the last request admitted anywhere saw every spend but the others' of that
//! last interval. E.g. two gateways each spending 0.01 a request at 100 requests/s with 1 s
//! intervals: 1 x 1.00/s x 2 s = 2.00 past the limit at worst. Within one instance, none.

use std::collections::HashMap;

use tollgate_protocol::{GlobalUsage, Period};

use crate::catalog::Catalog;
use crate::counters::OthersUsage;

#[derive(Debug, Default)]
pub struct GlobalView {
    /// (application index, metric index, period) -> (window start, others' usage).
    usage: HashMap<(u32, u32, Period), (i64, u64)>,
    /// Others' spend per wallet, by wallet index (empty when no wallet has any).
    credit: Vec<u64>,
}

impl GlobalView {
    /// Entries for applications, metrics or wallets the catalog does not have are skipped.
    pub fn build(catalog: &Catalog, global: &GlobalUsage) -> GlobalView {
        let mut usage = HashMap::with_capacity(global.entries.len());
        for e in &global.entries {
            let (Some(app), Some(metric)) = (
                catalog.app_index(&e.application),
                catalog.metric_index(&e.metric),
            ) else {
                continue;
            };
            usage.insert(
                (app as u32, metric as u32, e.period),
                (e.window_start, e.value),
            );
        }
        let mut credit = Vec::new();
        if !global.credit.is_empty() && !catalog.wallets.is_empty() {
            let index: HashMap<&str, usize> = catalog
                .wallets
                .iter()
                .enumerate()
                .map(|(i, w)| (w.id.as_str(), i))
                .collect();
            credit = vec![0u64; catalog.wallets.len()];
            for e in &global.credit {
                if let Some(&i) = index.get(e.wallet.as_str()) {
                    // A wallet named twice counts as the sum: never less than either entry.
                    credit[i] = credit[i].saturating_add(e.spent_nano);
                }
            }
        }
        GlobalView { usage, credit }
    }

    pub fn len(&self) -> usize {
        self.usage.len()
    }

    pub fn is_empty(&self) -> bool {
        self.usage.is_empty()
    }
}

impl OthersUsage for GlobalView {
    fn get(&self, app: usize, metric: usize, period: Period, window_start: i64) -> u64 {
        match self.usage.get(&(app as u32, metric as u32, period)) {
            // A value for an earlier window says nothing about the current one.
            Some(&(start, value)) if start == window_start => value,
            _ => 0,
        }
    }

    fn credit_spent(&self, wallet: usize) -> u64 {
        self.credit.get(wallet).copied().unwrap_or(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;
    use tollgate_protocol::GlobalUsageEntry;

    #[test]
    fn looks_up_by_catalog_index_and_window() {
        let (_, c) = Config::parse(
            br#"{"snapshot": {"plans": [{"id": "p"}], "applications": [
                {"id": "a1", "plan": "p", "state": "live"}, {"id": "a2", "plan": "p", "state": "live"}],
                "metrics": [{"name": "hits"}, {"name": "search", "parent": "hits"}]}}"#,
        )
        .unwrap();
        let c = c.unwrap();
        let entry =
            |application: &str, metric: &str, period, window_start, value| GlobalUsageEntry {
                application: application.into(),
                metric: metric.into(),
                period,
                window_start,
                value,
            };
        let v = GlobalView::build(
            &c,
            &GlobalUsage {
                entries: vec![
                    entry("a2", "search", Period::Day, 86_400, 7),
                    entry("gone", "hits", Period::Day, 86_400, 9),
                    entry("a1", "nope", Period::Day, 86_400, 9),
                ],
                credit: vec![],
            },
        );
        assert_eq!(v.len(), 1);
        assert_eq!(v.get(1, 1, Period::Day, 86_400), 7);
        assert_eq!(v.get(1, 1, Period::Day, 2 * 86_400), 0, "stale window");
        assert_eq!(v.get(0, 1, Period::Day, 86_400), 0);
        assert_eq!(v.get(1, 1, Period::Minute, 86_400), 0);
    }
}
