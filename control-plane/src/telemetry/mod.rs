//! Operational metrics for Prometheus: what this process counted since it started (HTTP requests,
//! snapshots, usage reports, billing runs, charges, email deliveries), plus what is read from the
//! database and the pool at scrape time ([`readings`]). Served at `GET /metrics` by
//! `http::metrics`; every metric is described in docs/operations.md.
//!
//! Why `prometheus-client` (the Prometheus organisation's Rust client) rather than hand-written
//! exposition: label sets are typed (closed enums here, so a label's values are bounded by
//! construction), label values are escaped by the library, histograms keep their cumulative
//! buckets right, and since 0.26 it writes the Prometheus text format 0.0.4 that every scraper
//! reads. It depends on nothing we do not already build but two tiny crates (dtoa, its derive).
//! `metrics` + `metrics-exporter-prometheus` would bring a global recorder, an HTTP listener we do
//! not want and string-keyed labels, which would make unbounded cardinality one typo away.
//!
//! Counters live in this process: each replica exposes its own, reset when it restarts (PromQL's
//! `rate`/`increase` handle the reset; sum over replicas with `sum(...)`).
//!
//! The domain records through the plain functions below (no HTTP types): a metric is a side note
//! of the domain's work, never a reason for it to fail.

pub mod readings;

use std::sync::LazyLock;
use std::time::Duration;

use prometheus_client::encoding::{EncodeLabelSet, EncodeLabelValue, LabelValueEncoder};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

/// Every metric's name starts with this (`tollgate_`), added by the registry.
pub const PREFIX: &str = "tollgate";

/// Upper bounds (seconds) of the HTTP latency histogram: 1 ms (a cached snapshot) to 30 s (the
/// request timeout, `http::REQUEST_TIMEOUT`). Held snapshot polls last up to their wait (20 s).
pub const HTTP_DURATION_BUCKETS_SECONDS: [f64; 14] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];
/// Upper bounds (seconds) of the billing run duration: a few accounts take well under a second,
/// 100,000 invoices 22-106 s (BENCHMARKS.md, "Billing run"); two hours is far beyond any run
/// measured.
pub const BILLING_RUN_DURATION_BUCKETS_SECONDS: [f64; 11] = [
    0.1, 0.5, 1.0, 5.0, 15.0, 60.0, 300.0, 900.0, 1800.0, 3600.0, 7200.0,
];
/// Upper bounds (seconds) of one charge (claim, provider call, outcome applied): providers answer
/// in well under a second; 20 s is the provider call timeout (`payments::stripe::CALL_TIMEOUT`).
pub const CHARGE_DURATION_BUCKETS_SECONDS: [f64; 10] =
    [0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 20.0, 60.0];
/// Upper bounds (seconds) of an outbox message's delivery lag (enqueued to accepted by the
/// receiver): a pass every 2 s when idle; retries double from 30 s, and the 8th attempt comes
/// about an hour after the first (`billing::outbox`); a day covers an SMTP server down that long.
pub const DELIVERY_LAG_BUCKETS_SECONDS: [f64; 10] = [
    1.0, 5.0, 15.0, 60.0, 300.0, 900.0, 3600.0, 7200.0, 21600.0, 86400.0,
];

/// The route label of a request no route matched (any path: never the raw path, which would
/// make a series per path a client invents).
pub const UNMATCHED_ROUTE: &str = "unmatched";

/// Label values from closed sets: each enum names its values once, in snake case.
macro_rules! label_value {
    ($t:ty { $($variant:ident => $name:literal),+ $(,)? }) => {
        impl $t {
            /// Every value, so that each series exists (at 0) from the start.
            pub const ALL: &[$t] = &[$(<$t>::$variant),+];

            pub fn as_str(self) -> &'static str {
                match self { $(<$t>::$variant => $name),+ }
            }
        }
        impl EncodeLabelValue for $t {
            fn encode(&self, encoder: &mut LabelValueEncoder) -> Result<(), std::fmt::Error> {
                std::fmt::Write::write_str(encoder, self.as_str())
            }
        }
    };
}

/// An HTTP method as a label: the standard ones, anything else `other` (a client may send any
/// token as a method).
#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq)]
pub enum Method {
    Get,
    Head,
    Post,
    Put,
    Patch,
    Delete,
    Options,
    Other,
}
label_value!(Method { Get => "GET", Head => "HEAD", Post => "POST", Put => "PUT", Patch => "PATCH", Delete => "DELETE", Options => "OPTIONS", Other => "other" });

impl Method {
    pub fn of(method: &str) -> Method {
        match method {
            "GET" => Method::Get,
            "HEAD" => Method::Head,
            "POST" => Method::Post,
            "PUT" => Method::Put,
            "PATCH" => Method::Patch,
            "DELETE" => Method::Delete,
            "OPTIONS" => Method::Options,
            _ => Method::Other,
        }
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RequestLabels {
    /// The matched route template (`/admin/api/v1/services/{id}`) or [`UNMATCHED_ROUTE`].
    pub route: String,
    pub method: Method,
    /// The status code answered (a bounded set: the codes this server answers).
    pub status: u16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RouteLabels {
    pub route: String,
    pub method: Method,
}

/// How a snapshot request was answered.
#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq)]
pub enum SnapshotAnswer {
    /// 200 with the snapshot (a new version, or a gateway without one).
    Full,
    /// 304: the gateway holds the current version.
    NotModified,
}
label_value!(SnapshotAnswer { Full => "full", NotModified => "not_modified" });

/// The snapshot's encoding as a label.
#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq)]
pub enum SnapshotEncoding {
    Json,
    Binary,
}
label_value!(SnapshotEncoding { Json => "json", Binary => "binary" });

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct SnapshotLabels {
    pub answer: SnapshotAnswer,
    /// Whether the request was held (long poll: `Prefer: wait` with the current version).
    pub held: bool,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct EncodingLabels {
    pub encoding: SnapshotEncoding,
}

/// What became of a usage report.
#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq)]
pub enum ReportOutcome {
    /// Counted (its counter updates are in `tollgate_usage_counter_updates_total`).
    Recorded,
    /// A retry of a report already counted: acknowledged, nothing added.
    Duplicate,
    /// Refused whole with a 4xx (out of bounds, out of scope); nothing recorded.
    Refused,
    /// Failed (database unavailable, 5xx); the gateway retries it.
    Failed,
}
label_value!(ReportOutcome { Recorded => "recorded", Duplicate => "duplicate", Refused => "refused", Failed => "failed" });

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReportLabels {
    pub outcome: ReportOutcome,
}

/// An entry of a recorded report: counted, or ignored (an application or metric the service no
/// longer has).
#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq)]
pub enum EntryOutcome {
    Accepted,
    Ignored,
}
label_value!(EntryOutcome { Accepted => "accepted", Ignored => "ignored" });

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct EntryLabels {
    pub outcome: EntryOutcome,
}

/// How a billing run ended.
#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq)]
pub enum RunResult {
    Succeeded,
    Failed,
}
label_value!(RunResult { Succeeded => "succeeded", Failed => "failed" });

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RunLabels {
    pub result: RunResult,
}

/// What issued an invoice.
#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq)]
pub enum IssuedBy {
    /// A billing run (daily, or started through the API).
    Run,
    /// An admin issuing one invoice (API or portal).
    Manual,
}
label_value!(IssuedBy { Run => "run", Manual => "manual" });

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct IssuedLabels {
    pub by: IssuedBy,
}

/// A payment provider as a label.
#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq)]
pub enum Provider {
    Stripe,
    Braintree,
}
label_value!(Provider { Stripe => "stripe", Braintree => "braintree" });

/// How a charge attempt ended, as far as this request knows.
#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq)]
pub enum ChargeOutcome {
    Succeeded,
    Declined,
    /// Strong customer authentication needed: the developer pays in the portal.
    ActionRequired,
    /// The account has no card: declined without calling the provider.
    NoPaymentMethod,
    /// No answer (timeout, transport error): looked up before any retry.
    Unknown,
}
label_value!(ChargeOutcome { Succeeded => "succeeded", Declined => "declined", ActionRequired => "action_required", NoPaymentMethod => "no_payment_method", Unknown => "unknown" });

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ChargeLabels {
    pub provider: Provider,
    pub outcome: ChargeOutcome,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ProviderLabels {
    pub provider: Provider,
}

/// An outbox, as a label. Adding an outbox (webhooks) is a variant here and one entry in
/// [`readings::OUTBOXES`].
#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq)]
pub enum Outbox {
    Email,
    Webhook,
}
label_value!(Outbox { Email => "email", Webhook => "webhook" });

/// What became of one delivery attempt of an outbox message.
#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq)]
pub enum DeliveryResult {
    /// Accepted by the receiver (SMTP server, webhook endpoint).
    Delivered,
    /// Failed; retried later.
    Retried,
    /// Failed for the last time; the message is given up.
    GivenUp,
}
label_value!(DeliveryResult { Delivered => "delivered", Retried => "retried", GivenUp => "given_up" });

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OutboxLabels {
    pub outbox: Outbox,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct DeliveryLabels {
    pub outbox: Outbox,
    pub result: DeliveryResult,
}

type HistogramFamily<L> = Family<L, Histogram, fn() -> Histogram>;

fn histograms<L: Clone + std::hash::Hash + Eq>(new: fn() -> Histogram) -> HistogramFamily<L> {
    Family::new_with_constructor(new)
}

/// The process's metrics and the registry they are encoded from.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    http_requests: Family<RequestLabels, Counter>,
    http_duration: HistogramFamily<RouteLabels>,
    snapshot_requests: Family<SnapshotLabels, Counter>,
    snapshots_held: Gauge,
    snapshot_bytes: Family<EncodingLabels, Counter>,
    snapshot_revision: Gauge,
    usage_reports: Family<ReportLabels, Counter>,
    usage_counter_updates: Family<EntryLabels, Counter>,
    billing_runs: Family<RunLabels, Counter>,
    billing_run_duration: HistogramFamily<RunLabels>,
    invoices_issued: Family<IssuedLabels, Counter>,
    charges: Family<ChargeLabels, Counter>,
    charge_duration: HistogramFamily<ProviderLabels>,
    deliveries: Family<DeliveryLabels, Counter>,
    delivery_lag: HistogramFamily<OutboxLabels>,
}

impl Default for Metrics {
    fn default() -> Metrics {
        Metrics::new()
    }
}

impl Metrics {
    /// A fresh set of metrics, registered (the process uses [`get`]; tests make their own).
    pub fn new() -> Metrics {
        let mut registry = Registry::with_prefix(PREFIX);
        let m = Metrics {
            http_requests: Family::default(),
            http_duration: histograms(|| Histogram::new(HTTP_DURATION_BUCKETS_SECONDS)),
            snapshot_requests: Family::default(),
            snapshots_held: Gauge::default(),
            snapshot_bytes: Family::default(),
            snapshot_revision: Gauge::default(),
            usage_reports: Family::default(),
            usage_counter_updates: Family::default(),
            billing_runs: Family::default(),
            billing_run_duration: histograms(|| {
                Histogram::new(BILLING_RUN_DURATION_BUCKETS_SECONDS)
            }),
            invoices_issued: Family::default(),
            charges: Family::default(),
            charge_duration: histograms(|| Histogram::new(CHARGE_DURATION_BUCKETS_SECONDS)),
            deliveries: Family::default(),
            delivery_lag: histograms(|| Histogram::new(DELIVERY_LAG_BUCKETS_SECONDS)),
            registry: Registry::default(),
        };
        // Names without the suffixes the encoder adds: `_total` for counters, the unit for
        // `register_with_unit` (`_seconds`, `_bytes`).
        use prometheus_client::registry::Unit;
        registry.register(
            "http_requests",
            "HTTP requests answered, by matched route template, method and status code",
            m.http_requests.clone(),
        );
        registry.register_with_unit(
            "http_request_duration",
            "Time to answer an HTTP request (to the response head), by route and method",
            Unit::Seconds,
            m.http_duration.clone(),
        );
        registry.register(
            "snapshot_requests",
            "Gateway snapshot requests, by answer (full: 200, not_modified: 304) and whether they were held",
            m.snapshot_requests.clone(),
        );
        registry.register(
            "snapshot_requests_held",
            "Snapshot requests held right now (long polls waiting for the version to move)",
            m.snapshots_held.clone(),
        );
        registry.register_with_unit(
            "snapshot_served",
            "Snapshot bodies served (200), by encoding",
            Unit::Bytes,
            m.snapshot_bytes.clone(),
        );
        registry.register(
            "snapshot_catalog_revision",
            "Catalog revision of the last snapshot this process served in full (0 before the first)",
            m.snapshot_revision.clone(),
        );
        registry.register(
            "usage_reports",
            "Usage reports from gateways, by outcome (recorded, duplicate, refused, failed)",
            m.usage_reports.clone(),
        );
        registry.register(
            "usage_counter_updates",
            "Entries of recorded usage reports (one counter update each: application, metric, minute), by outcome",
            m.usage_counter_updates.clone(),
        );
        registry.register(
            "billing_runs",
            "Billing runs finished in this process, by result",
            m.billing_runs.clone(),
        );
        registry.register_with_unit(
            "billing_run_duration",
            "Duration of a billing run (billing then charging), by result",
            Unit::Seconds,
            m.billing_run_duration.clone(),
        );
        registry.register(
            "invoices_issued",
            "Invoices issued, by what issued them (run, manual)",
            m.invoices_issued.clone(),
        );
        registry.register(
            "charges",
            "Charge attempts of invoices, by provider and outcome",
            m.charges.clone(),
        );
        registry.register_with_unit(
            "charge_duration",
            "Duration of a charge attempt (claim, provider call, outcome applied), by provider",
            Unit::Seconds,
            m.charge_duration.clone(),
        );
        registry.register(
            "outbox_deliveries",
            "Delivery attempts of outbox messages, by outbox and result",
            m.deliveries.clone(),
        );
        registry.register_with_unit(
            "outbox_delivery_lag",
            "Time from a message's enqueueing to its delivery, by outbox",
            Unit::Seconds,
            m.delivery_lag.clone(),
        );
        m.create_closed_series();
        Metrics { registry, ..m }
    }

    /// Creates every series whose labels come from closed sets, at 0: a query or `rate()` then
    /// sees them before the first event (a missing series is not a zero to PromQL).
    fn create_closed_series(&self) {
        for &answer in SnapshotAnswer::ALL {
            for held in [false, true] {
                self.snapshot_requests
                    .get_or_create(&SnapshotLabels { answer, held })
                    .inc_by(0);
            }
        }
        for &encoding in SnapshotEncoding::ALL {
            self.snapshot_bytes
                .get_or_create(&EncodingLabels { encoding })
                .inc_by(0);
        }
        for &outcome in ReportOutcome::ALL {
            self.usage_reports
                .get_or_create(&ReportLabels { outcome })
                .inc_by(0);
        }
        for &outcome in EntryOutcome::ALL {
            self.usage_counter_updates
                .get_or_create(&EntryLabels { outcome })
                .inc_by(0);
        }
        for &result in RunResult::ALL {
            self.billing_runs
                .get_or_create(&RunLabels { result })
                .inc_by(0);
        }
        for &by in IssuedBy::ALL {
            self.invoices_issued
                .get_or_create(&IssuedLabels { by })
                .inc_by(0);
        }
        for &provider in Provider::ALL {
            for &outcome in ChargeOutcome::ALL {
                self.charges
                    .get_or_create(&ChargeLabels { provider, outcome })
                    .inc_by(0);
            }
        }
        for &outbox in Outbox::ALL {
            for &result in DeliveryResult::ALL {
                self.deliveries
                    .get_or_create(&DeliveryLabels { outbox, result })
                    .inc_by(0);
            }
        }
    }

    pub fn http_request(&self, route: &str, method: Method, status: u16, took: Duration) {
        self.http_requests
            .get_or_create(&RequestLabels {
                route: route.to_string(),
                method,
                status,
            })
            .inc();
        self.http_duration
            .get_or_create(&RouteLabels {
                route: route.to_string(),
                method,
            })
            .observe(took.as_secs_f64());
    }

    pub fn snapshot_request(&self, answer: SnapshotAnswer, held: bool) {
        self.snapshot_requests
            .get_or_create(&SnapshotLabels { answer, held })
            .inc();
    }

    pub fn snapshot_served(&self, encoding: SnapshotEncoding, bytes: usize) {
        self.snapshot_bytes
            .get_or_create(&EncodingLabels { encoding })
            .inc_by(u64::try_from(bytes).unwrap_or(u64::MAX));
    }

    /// The catalog revision (the first part of a snapshot version) of a snapshot served in full.
    /// Replicas serving different revisions for long means one of them lost its database.
    pub fn snapshot_revision(&self, revision: i64) {
        self.snapshot_revision.set(revision);
    }

    /// Counts a held snapshot request until the guard drops (answered, or the client left).
    pub fn snapshot_held(&self) -> HeldGuard<'_> {
        self.snapshots_held.inc();
        HeldGuard(&self.snapshots_held)
    }

    pub fn usage_report(&self, outcome: ReportOutcome, accepted: u64, ignored: u64) {
        self.usage_reports
            .get_or_create(&ReportLabels { outcome })
            .inc();
        for (outcome, n) in [
            (EntryOutcome::Accepted, accepted),
            (EntryOutcome::Ignored, ignored),
        ] {
            if n > 0 {
                self.usage_counter_updates
                    .get_or_create(&EntryLabels { outcome })
                    .inc_by(n);
            }
        }
    }

    pub fn billing_run(&self, result: RunResult, took: Duration) {
        self.billing_runs.get_or_create(&RunLabels { result }).inc();
        self.billing_run_duration
            .get_or_create(&RunLabels { result })
            .observe(took.as_secs_f64());
    }

    pub fn invoices_issued(&self, by: IssuedBy, n: u64) {
        self.invoices_issued
            .get_or_create(&IssuedLabels { by })
            .inc_by(n);
    }

    pub fn charge(&self, provider: Provider, outcome: ChargeOutcome, took: Duration) {
        self.charges
            .get_or_create(&ChargeLabels { provider, outcome })
            .inc();
        self.charge_duration
            .get_or_create(&ProviderLabels { provider })
            .observe(took.as_secs_f64());
    }

    /// One delivery attempt of a message enqueued `lag` ago (the lag is observed when delivered).
    pub fn delivery(&self, outbox: Outbox, result: DeliveryResult, lag: Duration) {
        self.deliveries
            .get_or_create(&DeliveryLabels { outbox, result })
            .inc();
        if result == DeliveryResult::Delivered {
            self.delivery_lag
                .get_or_create(&OutboxLabels { outbox })
                .observe(lag.as_secs_f64());
        }
    }

    /// The exposition: this process's metrics, then the scrape-time `readings`.
    pub fn encode(&self, readings: &readings::Readings) -> Result<String, std::fmt::Error> {
        let mut out = String::new();
        prometheus_client::encoding::prometheus_text::encode(&mut out, &self.registry)?;
        prometheus_client::encoding::prometheus_text::encode(&mut out, &readings.registry())?;
        Ok(out)
    }
}

/// Decrements the held-requests gauge when dropped.
pub struct HeldGuard<'a>(&'a Gauge);

impl Drop for HeldGuard<'_> {
    fn drop(&mut self) {
        self.0.dec();
    }
}

static METRICS: LazyLock<Metrics> = LazyLock::new(Metrics::new);

/// The process's metrics.
pub fn get() -> &'static Metrics {
    &METRICS
}

/// The content type of the exposition (Prometheus text format 0.0.4).
pub const CONTENT_TYPE: &str = prometheus_client::encoding::prometheus_text::CONTENT_TYPE;

#[cfg(test)]
mod tests;
