//! What was used: usage reports from gateways, recorded exactly once into counters per
//! (application, metric, hour) — and per gateway instance, per hour and minute, for global usage —
//! and the usage of all other instances a gateway adds to its own counts. Billing rates the hourly
//! counters (`crate::domain::billing::lines`).

pub mod alerts;
pub mod global_usage;
pub mod reports;

/// The tables usage is counted in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Counters {
    /// Per (application, metric, hour): what billing rates.
    Hours,
    /// Per (instance, application, metric, hour): global usage over windows of an hour or more.
    InstanceHours,
    /// Per (instance, application, metric, minute): global usage over minute windows.
    InstanceMinutes,
}

impl Counters {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Counters::Hours => "usage_counters",
            Counters::InstanceHours => "usage_instance_hours",
            Counters::InstanceMinutes => "usage_instance_minutes",
        }
    }
}

/// How long per-instance minute counts are kept (they only serve minute windows).
pub const INSTANCE_MINUTES_KEPT_SECS: i64 = 2 * 3600;
/// Most entries in one usage report; gateways split larger flushes (the filter sends at most 5,000).
pub const MAX_REPORT_ENTRIES: usize = 10_000;
/// Largest delta one counter (application, metric, minute) may receive from one report, summed
/// over the report's entries for it: a sanity bound far above any minute of real traffic (a
/// mapping rule adds at most 2^32 - 1 per request), so one report cannot add an unbounded amount.
pub const MAX_COUNTER_DELTA_PER_REPORT: u64 = 1 << 40;
/// Most one stored counter (application, metric, and hour or minute) may hold. A report that
/// would take one past it is refused whole (422 `counter_overflow`, nothing recorded; the filter
/// drops a report refused with a 4xx instead of retrying it). Far above any real hour of
/// traffic (2^48 is 78 billion a second), and low enough that sums over a year of hours, which
/// billing and global usage compute, stay within i64: 8,784 x 2^48 < 2^62.
pub const MAX_COUNTER_VALUE: i64 = 1 << 48;
/// Usage older than this is refused. A gateway keeps unacknowledged reports and retries them while
/// the control plane is down, so usage may arrive late; 7 days covers an outage over a long weekend
/// with margin. Applied report ids are kept 4 times as long to recognize retries.
pub const MAX_REPORT_AGE_SECS: i64 = 7 * 24 * 3600;
/// How far in the future (by this server's clock) a report's minute may start: gateway clocks drift.
pub const MAX_CLOCK_SKEW_SECS: i64 = 300;
/// Longest gateway id or instance id a report may name, in bytes.
pub const MAX_GATEWAY_NAME_BYTES: usize = 128;
/// Longest application id or metric name a report entry may name, in bytes: above every id
/// Tollgate makes and every metric name the catalog accepts (200 characters of up to 4 bytes).
pub const MAX_ENTRY_NAME_BYTES: usize = 800;
