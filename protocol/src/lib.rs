//! The contract between the Tollgate gateway filter and the control plane.
//!
//! Pure serde types, no behaviour. The filter reads a [`Snapshot`] (inline in its plugin
//! configuration in standalone mode, or fetched from the control plane) and the control plane
//! produces exactly this shape. The JSON field names are a public contract: fields may be added,
//! never renamed. Unknown fields are ignored on purpose so that an older filter keeps working
//! against a newer control plane.

use serde::{Deserialize, Serialize};

pub mod binary;

/// Everything a gateway needs to decide a request locally.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Snapshot {
    /// Opaque version chosen by the producer; the filter echoes it when asking for updates.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    #[serde(default)]
    pub plans: Vec<Plan>,
    #[serde(default)]
    pub applications: Vec<Application>,
    #[serde(default)]
    pub metrics: Vec<Metric>,
    #[serde(default)]
    pub mapping_rules: Vec<MappingRule>,
    /// Prepaid wallets the gateway enforces (issue 18): each names the applications that spend
    /// from it. An application in no wallet spends nothing. Added after `mapping_rules`; an older
    /// filter ignores it and enforces no credit (upgrade gateways before selling prepaid plans).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub wallets: Vec<Wallet>,
    /// Where a developer tops up a wallet (the developer portal's wallet page), linked from the
    /// filter's 402 `insufficient_credit` answer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub top_up_url: Option<String>,
}

/// Money in the gateway is an integer count of nano-units (10^-9) of the wallet's currency: the
/// filter does no decimal or float arithmetic. 1.00 is 1,000,000,000; the largest amount is
/// about 1.8 x 10^10 currency units.
pub const NANO_PER_UNIT: u64 = 1_000_000_000;

/// A prepaid wallet as the gateway sees it.
///
/// The gateway admits a priced request only while
/// `own spend + others' spend (GlobalUsage::credit) + the request's cost <= limit_nano`, where
/// the spends are life-time sums of gateway usage costs: the limit moves only when money moves
/// (a top-up, a grant, a fixed fee), not with every usage report.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Wallet {
    pub id: String,
    /// Everything the wallet may ever spend on gateway usage, in nano-units: all credits
    /// (top-ups, grants, refunds into the wallet) plus the overdraft limit, minus every debit
    /// that is not gateway usage (fixed fees, corrections). Rises with a top-up or a grant.
    pub limit_nano: u64,
    /// Ids of applications in this snapshot spending from the wallet.
    #[serde(default)]
    pub applications: Vec<String>,
}

/// What one unit of a metric costs an application whose plan is prepaid.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CreditPrice {
    pub metric: String,
    /// Nano-units per unit of the metric: the highest marginal price among the metric's pricing
    /// rules, rounded up, so the gateway never charges less than the control plane debits.
    pub nano_per_unit: u64,
}

/// A plan as the gateway sees it: only what enforcement needs (prices stay in the control plane).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Plan {
    pub id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(default)]
    pub limits: Vec<Limit>,
    /// Prices of a prepaid-credit plan (`"billing": "prepaid_credit"`); empty for invoiced plans.
    /// A metric without a price costs nothing. Usage rolls up to parents first, so a price on a
    /// parent charges its methods too.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub credit_prices: Vec<CreditPrice>,
}

/// At most `value` units of `metric` per calendar-aligned UTC `period`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Limit {
    pub metric: String,
    pub period: Period,
    pub value: u64,
}

/// Calendar-aligned UTC windows (weeks start on Monday, ISO 8601).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Period {
    Minute,
    Hour,
    Day,
    Week,
    Month,
    Year,
    Eternity,
}

impl Period {
    pub const ALL: [Period; 7] = [
        Period::Minute,
        Period::Hour,
        Period::Day,
        Period::Week,
        Period::Month,
        Period::Year,
        Period::Eternity,
    ];

    /// The lowercase name used in JSON, headers and problem bodies.
    pub fn as_str(self) -> &'static str {
        match self {
            Period::Minute => "minute",
            Period::Hour => "hour",
            Period::Day => "day",
            Period::Week => "week",
            Period::Month => "month",
            Period::Year => "year",
            Period::Eternity => "eternity",
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Application {
    pub id: String,
    /// Id of a plan in the same snapshot.
    pub plan: String,
    pub state: ApplicationState,
    /// Why a suspended application is suspended; `non_payment` makes the filter answer 402.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub state_reason: Option<SuspensionReason>,
    /// Lowercase hex SHA-256 of each valid key. Plaintext keys never leave the control plane.
    #[serde(default)]
    pub key_sha256: Vec<String>,
    /// Public application identifier for 3scale-style `app_id` + `app_key` authentication; the
    /// `app_key` must then hash to one of `app_key_sha256` (or, as before that field existed, to
    /// one of `key_sha256`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub app_id: Option<String>,
    /// Lowercase hex SHA-256 of each `app_key` of the application: secrets that open it only
    /// together with its `app_id` (never alone), unique within the application but not across
    /// applications (3scale's model). Added after `app_id`; an older filter ignores it.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub app_key_sha256: Vec<String>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ApplicationState {
    Live,
    Suspended,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SuspensionReason {
    /// Suspended by an admin.
    Admin,
    /// Suspended after the last failed charge; lifted when the invoice is paid.
    NonPayment,
}

/// A metric (`hits`) or a method (a metric whose `parent` is `hits`); usage rolls up to parents.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Metric {
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parent: Option<String>,
}

/// 3scale-style mapping rule: HTTP method + path pattern -> metric increment.
///
/// Pattern syntax: literal characters, `{name}` wildcards matching one or more characters other
/// than `/`, `?` and `&`, an optional `?k=v&k2={x}` query part whose parameters must be present,
/// and a trailing `$` anchoring the path (otherwise the pattern matches as a prefix).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct MappingRule {
    /// An HTTP method, or `ANY`.
    pub method: String,
    pub pattern: String,
    pub metric: String,
    #[serde(default = "default_delta")]
    pub delta: u64,
    /// Stop evaluating further rules when this one matches.
    #[serde(default, skip_serializing_if = "is_false")]
    pub last: bool,
}

/// Metered usage a gateway sends to the control plane (`POST /gateway/v1/services/{id}/usage`).
///
/// `(gateway, sequence)` is the idempotency id: the control plane records it in the same
/// transaction as the counters, so a retried report is counted once and a failed one not at all.
/// A gateway instance numbers its reports 1, 2, 3, ... and retries a report with the same number
/// until it is acknowledged.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct UsageReport {
    /// Unique per reporter (per worker VM): a new id never reuses old numbers.
    pub gateway: String,
    /// The gateway process (an Envoy, a Kong node) the usage was admitted by; all its workers share
    /// it. Global quotas subtract a gateway's own usage from what it is told others used.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub instance: Option<String>,
    pub sequence: u64,
    pub entries: Vec<UsageEntry>,
}

/// Admitted usage of one application and metric in one minute (after roll-up to parents).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct UsageEntry {
    pub application: String,
    pub metric: String,
    /// Start of the UTC minute the usage happened in (Unix seconds, a multiple of 60).
    pub bucket_start: i64,
    pub delta: u64,
}

/// Usage admitted by other gateway instances in the current windows of a service's limits
/// (`GET /gateway/v1/services/{id}/global_usage?instance=<id>`): what a gateway adds to its own
/// counts to enforce one quota across several gateways.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct GlobalUsage {
    pub entries: Vec<GlobalUsageEntry>,
    /// Life-time gateway usage cost debited to each prepaid wallet from the reports of all other
    /// instances. Added after `entries`; absent means zero.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub credit: Vec<GlobalCreditEntry>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct GlobalCreditEntry {
    pub wallet: String,
    /// Nano-units (see [`NANO_PER_UNIT`]).
    pub spent_nano: u64,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct GlobalUsageEntry {
    pub application: String,
    pub metric: String,
    pub period: Period,
    /// Start of the window the value belongs to (Unix seconds); a gateway ignores stale windows.
    pub window_start: i64,
    /// Usage by all other instances in that window.
    pub value: u64,
}

/// The control plane's answer to a usage report.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct UsageAck {
    /// True when this `(gateway, sequence)` was already counted: nothing was added this time.
    pub duplicate: bool,
    /// Entries counted.
    pub accepted: u64,
    /// Entries for applications or metrics the control plane does not know (deleted since).
    pub ignored: u64,
}

fn default_delta() -> u64 {
    1
}

fn is_false(b: &bool) -> bool {
    !*b
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn standalone_example_from_the_contract_parses() {
        let json = r#"{
          "plans": [{"id": "basic", "limits": [{"metric": "hits", "period": "minute", "value": 3}]}],
          "applications": [{"id": "app-1", "plan": "basic", "state": "live",
                            "key_sha256": ["2bb80d537b1da3e38bd30361aa855686bde0eacd7162fef6a25fe97bf527a25b"]}],
          "metrics": [{"name": "hits"}, {"name": "search", "parent": "hits"}],
          "mapping_rules": [{"method": "GET", "pattern": "/", "metric": "hits", "delta": 1}]}"#;
        let s: Snapshot = serde_json::from_str(json).unwrap();
        assert_eq!(s.plans[0].limits[0].period, Period::Minute);
        assert_eq!(s.applications[0].state, ApplicationState::Live);
        assert_eq!(s.metrics[1].parent.as_deref(), Some("hits"));
        assert_eq!(s.mapping_rules[0].delta, 1);
        assert!(!s.mapping_rules[0].last);
    }

    #[test]
    fn unknown_fields_are_ignored_for_forward_compatibility() {
        let s: Snapshot =
            serde_json::from_str(r#"{"plans": [], "added_later": {"x": 1}}"#).unwrap();
        assert!(s.plans.is_empty());
    }

    #[test]
    fn suspension_reason_round_trips_in_snake_case() {
        let a = Application {
            id: "a".into(),
            plan: "p".into(),
            state: ApplicationState::Suspended,
            state_reason: Some(SuspensionReason::NonPayment),
            key_sha256: vec![],
            app_id: None,
            app_key_sha256: vec![],
        };
        let j = serde_json::to_string(&a).unwrap();
        assert!(j.contains(r#""state":"suspended""#), "{j}");
        assert!(j.contains(r#""state_reason":"non_payment""#), "{j}");
        assert_eq!(serde_json::from_str::<Application>(&j).unwrap(), a);
    }

    #[test]
    fn unknown_period_is_an_error() {
        let e =
            serde_json::from_str::<Limit>(r#"{"metric":"hits","period":"fortnight","value":1}"#);
        assert!(e.is_err());
    }
}
