//! Metering: admitted usage, aggregated per (application, metric, UTC minute), reported to the
//! control plane exactly once.
//!
//! - On the request path, usage is added to a map keyed by catalog indexes (no allocation); on
//!   each tick it is folded into name-keyed pending entries (names survive a snapshot swap).
//! - A report takes up to [`MAX_REPORT_ENTRIES`] pending entries and the next sequence number of
//!   this gateway instance. It stays in flight, and is re-sent unchanged (same gateway id and
//!   sequence), until the control plane acknowledges it; the control plane counts each
//!   `(gateway, sequence)` once. A 4xx answer other than 408/429 means the report can never be
//!   accepted: it is dropped and counted in `dropped_entries` (logged by the glue).
//! - The whole state is persisted as a journal in shared data every tick, so a worker VM that is
//!   torn down (configuration reload) leaves its unflushed usage behind; another worker adopts a
//!   journal whose heartbeat is older than [`ORPHAN_AFTER_MS`] and delivers it, in-flight reports
//!   under their original gateway id and sequence.
//! - Pending entries are capped at [`MAX_PENDING_ENTRIES`] per worker; past it, usage for a new
//!   (application, metric, hour) is dropped and counted, never silently.

use std::collections::{BTreeMap, HashMap};

use serde::{Deserialize, Serialize};
use tollgate_protocol::{UsageEntry, UsageReport};

use crate::catalog::Catalog;
use crate::counters::Usage;

/// Entries per report (the control plane accepts up to 10,000).
pub const MAX_REPORT_ENTRIES: usize = 5_000;
/// Pending entries one worker buffers while the control plane is away. An entry is one
/// (application, metric, minute): 100 busy applications with 2 metrics fill 12,000 per hour.
pub const MAX_PENDING_ENTRIES: usize = 200_000;
/// A journal whose heartbeat is older than this belongs to a dead worker and may be adopted.
pub const ORPHAN_AFTER_MS: u64 = 10_000;
/// Shared-data key listing the gateway ids that have journals.
pub const REGISTRY_KEY: &str = "tollgate/v1/journals";
/// Prefix of each worker's journal key.
pub const JOURNAL_PREFIX: &str = "tollgate/v1/journal/";

/// Usage is aggregated per UTC minute: the control plane keeps hours for billing and the
/// minutes of each gateway instance for global minute quotas.
const BUCKET_SECS: i64 = 60;

/// Unreported usage by (application id, metric name, minute start).
type Pending = BTreeMap<(String, String, i64), u64>;

/// What one worker has metered and not yet had acknowledged.
#[derive(Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct Meter {
    pub gateway: String,
    /// The gateway process (shared by its workers), sent with reports for global quotas.
    #[serde(default)]
    pub instance: Option<String>,
    next_sequence: u64,
    /// Unreported usage by (application id, metric name, minute start).
    #[serde(with = "pending_as_list")]
    pending: Pending,
    /// The report sent and not yet acknowledged, re-sent as is.
    in_flight: Option<UsageReport>,
    /// Reports adopted from dead workers, delivered under their own gateway id and sequence.
    adopted: Vec<UsageReport>,
    /// Heartbeat of the journal, host milliseconds.
    pub heartbeat_ms: u64,
    /// Entries that could not be buffered or were refused by the control plane.
    pub dropped_entries: u64,
    #[serde(skip)]
    hot: HashMap<(u32, u32, i64), u64>,
}

impl Meter {
    pub fn new(gateway: String) -> Meter {
        Meter {
            gateway,
            next_sequence: 1,
            ..Meter::default()
        }
    }

    /// Request path: adds an admitted request's usage (metric indexes of the current catalog).
    pub fn record(&mut self, app_index: usize, usage: &Usage, now: i64) {
        let minute = now - now.rem_euclid(BUCKET_SECS);
        for &(metric, delta) in usage {
            let slot = self
                .hot
                .entry((app_index as u32, metric as u32, minute))
                .or_insert(0);
            *slot = slot.saturating_add(delta);
        }
    }

    /// Moves request-path counts not yet folded out of `other` (when a worker starts a new journal).
    pub fn take_hot_from(&mut self, other: &mut Meter) {
        for (k, v) in other.hot.drain() {
            let slot = self.hot.entry(k).or_insert(0);
            *slot = slot.saturating_add(v);
        }
    }

    /// Moves the request-path counts into name-keyed pending entries. Must run before the catalog
    /// the indexes refer to is replaced.
    pub fn fold(&mut self, catalog: &Catalog) {
        let hot = std::mem::take(&mut self.hot);
        for ((app, metric, hour), delta) in hot {
            let (Some(app), Some(metric)) = (
                catalog.apps.get(app as usize),
                catalog.metrics.get(metric as usize),
            ) else {
                self.dropped_entries += 1;
                continue;
            };
            let key = (app.id.clone(), metric.name.clone(), hour);
            self.add_pending(key, delta);
        }
    }

    fn add_pending(&mut self, key: (String, String, i64), delta: u64) {
        let full = self.pending.len() >= MAX_PENDING_ENTRIES;
        match self.pending.entry(key) {
            std::collections::btree_map::Entry::Occupied(mut e) => {
                let v = e.get_mut();
                *v = v.saturating_add(delta);
            }
            std::collections::btree_map::Entry::Vacant(e) if !full => {
                e.insert(delta);
            }
            std::collections::btree_map::Entry::Vacant(_) => self.dropped_entries += 1,
        }
    }

    /// The next report to send: an adopted one first, then the in-flight one (a retry), else a new
    /// one from pending entries. `None` when there is nothing to report.
    pub fn next_report(&mut self) -> Option<&UsageReport> {
        if !self.adopted.is_empty() {
            return self.adopted.first();
        }
        if self.in_flight.is_none() && !self.pending.is_empty() {
            let mut entries = Vec::with_capacity(self.pending.len().min(MAX_REPORT_ENTRIES));
            while entries.len() < MAX_REPORT_ENTRIES {
                let Some(((application, metric, bucket_start), delta)) = self.pending.pop_first()
                else {
                    break;
                };
                entries.push(UsageEntry {
                    application,
                    metric,
                    bucket_start,
                    delta,
                });
            }
            self.in_flight = Some(UsageReport {
                gateway: self.gateway.clone(),
                instance: self.instance.clone(),
                sequence: self.next_sequence,
                entries,
            });
            self.next_sequence += 1;
        }
        self.in_flight.as_ref()
    }

    /// Whether a report is waiting for an answer (its own in flight, or adopted ones): then
    /// [`Meter::next_report`] returns one of those rather than making a new one.
    pub fn has_report_waiting(&self) -> bool {
        self.in_flight.is_some() || !self.adopted.is_empty()
    }

    /// The control plane answered 2xx for `(gateway, sequence)`: that report is done.
    pub fn acknowledged(&mut self, gateway: &str, sequence: u64) {
        self.settle(gateway, sequence);
    }

    /// The control plane refused `(gateway, sequence)` for good (4xx): drop it, counted.
    pub fn refused(&mut self, gateway: &str, sequence: u64) {
        if let Some(r) = self.settle(gateway, sequence) {
            self.dropped_entries += r.entries.len() as u64;
        }
    }

    fn settle(&mut self, gateway: &str, sequence: u64) -> Option<UsageReport> {
        if let Some(i) = self
            .adopted
            .iter()
            .position(|r| r.gateway == gateway && r.sequence == sequence)
        {
            return Some(self.adopted.remove(i));
        }
        if self
            .in_flight
            .as_ref()
            .is_some_and(|r| r.gateway == gateway && r.sequence == sequence)
        {
            return self.in_flight.take();
        }
        None
    }

    /// Entries not yet acknowledged (pending, in flight and adopted), for stats and tests.
    pub fn unacknowledged_entries(&self) -> usize {
        self.pending.len()
            + self.hot.len()
            + self.in_flight.as_ref().map_or(0, |r| r.entries.len())
            + self.adopted.iter().map(|r| r.entries.len()).sum::<usize>()
    }

    /// The journal written to shared data.
    pub fn encode(&self) -> Vec<u8> {
        serde_json::to_vec(self).unwrap_or_default()
    }

    pub fn decode(bytes: &[u8]) -> Option<Meter> {
        serde_json::from_slice(bytes).ok()
    }

    /// Takes over a dead worker's journal: its reports keep their gateway id and sequence (the
    /// control plane may already have counted one), its pending entries join ours.
    pub fn adopt(&mut self, orphan: Meter) {
        self.adopted.extend(orphan.adopted);
        self.adopted.extend(orphan.in_flight);
        for (key, delta) in orphan.pending {
            self.add_pending(key, delta);
        }
        self.dropped_entries += orphan.dropped_entries;
    }

    /// Whether a journal is an orphan at `now_ms`.
    pub fn is_orphan(&self, now_ms: u64) -> bool {
        now_ms.saturating_sub(self.heartbeat_ms) > ORPHAN_AFTER_MS
    }
}

/// JSON object keys must be strings: the pending map travels as a list of entries.
mod pending_as_list {
    use serde::{Deserialize, Deserializer, Serialize, Serializer};
    use tollgate_protocol::UsageEntry;

    pub fn serialize<S: Serializer>(map: &super::Pending, s: S) -> Result<S::Ok, S::Error> {
        let list: Vec<UsageEntry> = map
            .iter()
            .map(|((application, metric, bucket_start), delta)| UsageEntry {
                application: application.clone(),
                metric: metric.clone(),
                bucket_start: *bucket_start,
                delta: *delta,
            })
            .collect();
        list.serialize(s)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<super::Pending, D::Error> {
        let list = Vec::<UsageEntry>::deserialize(d)?;
        Ok(list
            .into_iter()
            .map(|e| ((e.application, e.metric, e.bucket_start), e.delta))
            .collect())
    }
}

/// Registry of gateway ids with journals: one id per line.
pub fn registry_decode(bytes: &[u8]) -> Vec<String> {
    String::from_utf8_lossy(bytes)
        .lines()
        .filter(|l| !l.is_empty())
        .map(str::to_string)
        .collect()
}

pub fn registry_encode(ids: &[String]) -> Vec<u8> {
    ids.join("\n").into_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;

    const NOW: i64 = 1_795_627_872;

    fn catalog() -> Catalog {
        let (_, c) = Config::parse(
            br#"{"snapshot": {"plans": [{"id": "p"}], "applications": [
                {"id": "a1", "plan": "p", "state": "live"}, {"id": "a2", "plan": "p", "state": "live"}],
                "metrics": [{"name": "hits"}, {"name": "search", "parent": "hits"}]}}"#,
        )
        .unwrap();
        c.unwrap()
    }

    #[test]
    fn aggregates_per_app_metric_hour() {
        let c = catalog();
        let mut m = Meter::new("gw".into());
        m.record(0, &vec![(1, 1), (0, 1)], NOW);
        m.record(0, &vec![(0, 1)], NOW + 1);
        m.record(1, &vec![(0, 5)], NOW + 3_600);
        m.fold(&c);
        let r = m.next_report().unwrap().clone();
        assert_eq!((r.gateway.as_str(), r.sequence), ("gw", 1));
        // NOW is 12 s into its minute: NOW + 1 is the same minute.
        let hour = NOW - NOW % 60;
        assert_eq!(
            r.entries,
            vec![
                UsageEntry {
                    application: "a1".into(),
                    metric: "hits".into(),
                    bucket_start: hour,
                    delta: 2
                },
                UsageEntry {
                    application: "a1".into(),
                    metric: "search".into(),
                    bucket_start: hour,
                    delta: 1
                },
                UsageEntry {
                    application: "a2".into(),
                    metric: "hits".into(),
                    bucket_start: hour + 3_600,
                    delta: 5
                },
            ]
        );
    }

    #[test]
    fn a_report_is_resent_unchanged_until_acknowledged() {
        let c = catalog();
        let mut m = Meter::new("gw".into());
        m.record(0, &vec![(0, 1)], NOW);
        m.fold(&c);
        let first = m.next_report().unwrap().clone();
        // New usage while the report is in flight waits for the next report.
        m.record(0, &vec![(0, 7)], NOW);
        m.fold(&c);
        assert_eq!(
            m.next_report().unwrap(),
            &first,
            "retry = same gateway, sequence and entries"
        );
        m.acknowledged("gw", first.sequence);
        let second = m.next_report().unwrap().clone();
        assert_eq!(second.sequence, 2);
        assert_eq!(second.entries[0].delta, 7);
        m.acknowledged("gw", 2);
        assert!(m.next_report().is_none());
        assert_eq!(m.unacknowledged_entries(), 0);
    }

    #[test]
    fn refused_reports_are_dropped_and_counted() {
        let c = catalog();
        let mut m = Meter::new("gw".into());
        m.record(0, &vec![(0, 1), (1, 1)], NOW);
        m.fold(&c);
        let r = m.next_report().unwrap().clone();
        m.refused("gw", r.sequence);
        assert_eq!(m.dropped_entries, 2);
        assert!(m.next_report().is_none());
    }

    #[test]
    fn reports_are_capped_and_split() {
        let c = catalog();
        let mut m = Meter::new("gw".into());
        for h in 0..(MAX_REPORT_ENTRIES as i64 + 10) {
            m.record(0, &vec![(0, 1)], NOW + h * 3_600);
        }
        m.fold(&c);
        let a = m.next_report().unwrap().clone();
        assert_eq!(a.entries.len(), MAX_REPORT_ENTRIES);
        m.acknowledged("gw", a.sequence);
        assert_eq!(m.next_report().unwrap().entries.len(), 10);
    }

    #[test]
    fn journal_round_trips_and_orphans_are_adopted_with_their_ids() {
        let c = catalog();
        let mut dead = Meter::new("gw-dead".into());
        dead.record(0, &vec![(0, 3)], NOW);
        dead.fold(&c);
        let in_flight = dead.next_report().unwrap().clone();
        dead.record(1, &vec![(0, 4)], NOW);
        dead.fold(&c);
        dead.heartbeat_ms = 1_000;
        let journal = dead.encode();
        let restored = Meter::decode(&journal).unwrap();
        assert_eq!(restored, dead);
        assert!(!restored.is_orphan(1_000 + ORPHAN_AFTER_MS));
        assert!(restored.is_orphan(1_001 + ORPHAN_AFTER_MS));

        let mut alive = Meter::new("gw-alive".into());
        alive.adopt(restored);
        // The dead worker's in-flight report goes first, under its own id and sequence.
        assert_eq!(alive.next_report().unwrap(), &in_flight);
        alive.acknowledged("gw-dead", in_flight.sequence);
        // Its pending usage is reported as ours.
        let r = alive.next_report().unwrap().clone();
        assert_eq!(
            (
                r.gateway.as_str(),
                r.entries[0].application.as_str(),
                r.entries[0].delta
            ),
            ("gw-alive", "a2", 4)
        );
        assert!(Meter::decode(b"garbage").is_none());
    }

    #[test]
    fn registry_round_trips() {
        let ids = vec!["a".to_string(), "b".to_string()];
        assert_eq!(registry_decode(&registry_encode(&ids)), ids);
        assert!(registry_decode(b"").is_empty());
    }
}
