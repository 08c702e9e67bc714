//! Prepaid credit through the whole decision (issue 18): admitted exactly while the wallet can
//! pay, shared by the applications of one wallet, others' spend counted, saturating arithmetic,
//! refusals that spend or count nothing, the order of refusals, and the 402 answer. Against the
//! in-memory store with Envoy's CAS semantics; the same tests run compiled to wasm32.

use tollgate_protocol::{GlobalCreditEntry, GlobalUsage, NANO_PER_UNIT};

use crate::catalog::Catalog;
use crate::config::Config;
use crate::counters::tests::FakeStore;
use crate::counters::{ensure_record, NoOthers, OthersUsage, SharedStore, StoreError};
use crate::credentials::{extract, sha256};
use crate::credit::{self, own_spend};
use crate::decision::{decide, Decision, Reason};
use crate::global::GlobalView;
use crate::response::local_reply;

// 2026-11-25T17:31:12Z.
const NOW: i64 = 1_795_627_872;
/// 0.01 a call.
const CENT: u64 = NANO_PER_UNIT / 100;
const TOP_UP: &str = "https://portal.example/wallet?from=402";

fn hex(d: [u8; 32]) -> String {
    d.iter().map(|b| format!("{b:02x}")).collect()
}

/// Applications `a`, `b` (sharing wallet `w` of `limit_nano`), `c` (an invoiced plan, in the
/// wallet too), `d` (the prepaid plan, in no wallet) and `lim` (a prepaid plan with a limit of 3
/// a minute, in wallet `w2`). `/` counts one `hits` at 0.01; `/free` one `free` (no price);
/// `/bulk` 5 `hits`.
fn snapshot(limit_nano: u64, w2_limit_nano: u64) -> String {
    format!(
        r#"{{"snapshot": {{
          "plans": [
            {{"id": "prepaid", "credit_prices": [{{"metric": "hits", "nano_per_unit": {CENT}}}]}},
            {{"id": "invoiced"}},
            {{"id": "prepaid-limited", "limits": [{{"metric": "hits", "period": "minute", "value": 3}}],
              "credit_prices": [{{"metric": "hits", "nano_per_unit": {CENT}}}]}}],
          "applications": [
            {{"id": "a", "plan": "prepaid", "state": "live", "key_sha256": ["{ka}"]}},
            {{"id": "b", "plan": "prepaid", "state": "live", "key_sha256": ["{kb}"]}},
            {{"id": "c", "plan": "invoiced", "state": "live", "key_sha256": ["{kc}"]}},
            {{"id": "d", "plan": "prepaid", "state": "live", "key_sha256": ["{kd}"]}},
            {{"id": "lim", "plan": "prepaid-limited", "state": "live", "key_sha256": ["{kl}"]}}],
          "metrics": [{{"name": "hits"}}, {{"name": "free"}}],
          "mapping_rules": [
            {{"method": "GET", "pattern": "/$", "metric": "hits", "delta": 1}},
            {{"method": "GET", "pattern": "/free$", "metric": "free", "delta": 1}},
            {{"method": "GET", "pattern": "/bulk$", "metric": "hits", "delta": 5}}],
          "wallets": [
            {{"id": "w", "limit_nano": {limit_nano}, "applications": ["a", "b", "c"]}},
            {{"id": "w2", "limit_nano": {w2_limit_nano}, "applications": ["lim"]}}],
          "top_up_url": "{TOP_UP}"}}}}"#,
        ka = hex(sha256(b"key-a")),
        kb = hex(sha256(b"key-b")),
        kc = hex(sha256(b"key-c")),
        kd = hex(sha256(b"key-d")),
        kl = hex(sha256(b"key-lim")),
    )
}

struct Harness {
    config: Config,
    catalog: Catalog,
    store: FakeStore,
}

impl Harness {
    fn new(limit_nano: u64) -> Harness {
        Harness::with(limit_nano, NANO_PER_UNIT)
    }

    fn with(limit_nano: u64, w2_limit_nano: u64) -> Harness {
        let (config, catalog) =
            Config::parse(snapshot(limit_nano, w2_limit_nano).as_bytes()).unwrap();
        let catalog = catalog.unwrap();
        let mut store = FakeStore::default();
        for app in &catalog.apps {
            ensure_record(&mut store, app).unwrap();
        }
        for wallet in &catalog.wallets {
            credit::ensure_record(&mut store, wallet).unwrap();
        }
        Harness {
            config,
            catalog,
            store,
        }
    }

    fn decide_with(&mut self, others: &dyn OthersUsage, path: &str, key: &str) -> Decision<'_> {
        let presented = extract(&self.config.credentials, path, |name| {
            (name == "x-api-key").then_some(key.as_bytes())
        });
        decide(
            &self.config,
            &self.catalog,
            others,
            presented,
            "GET",
            path,
            NOW,
            &mut self.store,
        )
    }

    /// `None` when forwarded, else why not.
    fn reason(&mut self, path: &str, key: &str) -> Option<Reason> {
        self.reason_with(&NoOthers, path, key)
    }

    fn reason_with(&mut self, others: &dyn OthersUsage, path: &str, key: &str) -> Option<Reason> {
        match self.decide_with(others, path, key) {
            Decision::Forward { uncounted, .. } => {
                assert_eq!(uncounted, None);
                None
            }
            Decision::Reject(r) => Some(r.reason),
        }
    }

    fn spent(&mut self, wallet: &str) -> u64 {
        let w = self
            .catalog
            .wallets
            .iter()
            .find(|w| w.id == wallet)
            .unwrap();
        own_spend(&mut self.store, w).unwrap()
    }

    /// The value of a shared-data key (the CAS token left out: it moves with every write).
    fn value(&self, key: &str) -> Vec<u8> {
        self.store.data[key].0.clone()
    }

    fn record_of(&self, app: &str) -> Vec<u8> {
        let i = self.catalog.app_index(app).unwrap();
        self.value(&self.catalog.apps[i].counter_key())
    }
}

/// Issue 18's case: a wallet of 10.00 at 0.01 a call admits exactly 1,000 calls, then answers
/// 402 `insufficient_credit` with the top-up link, and keeps refusing without spending more.
#[test]
fn a_wallet_of_ten_at_a_cent_a_call_admits_exactly_a_thousand_then_402() {
    let mut h = Harness::new(10 * NANO_PER_UNIT);
    for i in 0..1_000 {
        assert_eq!(h.reason("/", "key-a"), None, "call {i}");
    }
    assert_eq!(h.spent("w"), 10 * NANO_PER_UNIT);
    for _ in 0..3 {
        assert_eq!(h.reason("/", "key-a"), Some(Reason::InsufficientCredit));
    }
    assert_eq!(h.spent("w"), 10 * NANO_PER_UNIT, "a refusal spends nothing");

    let Harness {
        config,
        catalog,
        store,
    } = &mut h;
    let presented = extract(&config.credentials, "/", |n| {
        (n == "x-api-key").then_some(&b"key-a"[..])
    });
    let Decision::Reject(r) = decide(
        config, catalog, &NoOthers, presented, "GET", "/", NOW, store,
    ) else {
        panic!("refused")
    };
    let reply = local_reply(&r, catalog, &config.credentials, config.quota_headers);
    assert_eq!(reply.status, 402);
    let header = |name: &str| {
        reply
            .headers
            .iter()
            .find(|(k, _)| *k == name)
            .map(|(_, v)| v.as_str())
    };
    assert_eq!(header("content-type"), Some("application/problem+json"));
    assert_eq!(
        header("link"),
        Some(&*format!("<{TOP_UP}>; rel=\"payment\""))
    );
    assert_eq!(
        header("retry-after"),
        None,
        "waiting does not refill a wallet"
    );
    let body: serde_json::Value = serde_json::from_slice(&reply.body).unwrap();
    assert_eq!(body["type"], "urn:tollgate:problem:insufficient_credit");
    assert_eq!(body["code"], "insufficient_credit");
    assert_eq!(body["status"], 402);
    assert_eq!(body["top_up_url"], TOP_UP);
    assert!(body["title"].as_str().unwrap().contains("credit"));
    assert!(body["detail"].as_str().unwrap().contains("top up"));
}

/// A 402 without a top-up URL in the snapshot carries no link, and says so in nothing else.
#[test]
fn without_a_top_up_url_the_402_has_no_link() {
    let json = snapshot(0, 0).replace(
        &format!(r#""top_up_url": "{TOP_UP}""#),
        r#""version": "no-link""#,
    );
    let (config, catalog) = Config::parse(json.as_bytes()).unwrap();
    let catalog = catalog.unwrap();
    assert_eq!(catalog.top_up_url, None);
    let mut store = FakeStore::default();
    let presented = extract(&config.credentials, "/", |n| {
        (n == "x-api-key").then_some(&b"key-a"[..])
    });
    let Decision::Reject(r) = decide(
        &config, &catalog, &NoOthers, presented, "GET", "/", NOW, &mut store,
    ) else {
        panic!("refused")
    };
    let reply = local_reply(&r, &catalog, &config.credentials, config.quota_headers);
    assert_eq!(reply.status, 402);
    assert!(reply.headers.iter().all(|(k, _)| *k != "link"));
    let body: serde_json::Value = serde_json::from_slice(&reply.body).unwrap();
    assert_eq!(body["code"], "insufficient_credit");
    assert!(body.get("top_up_url").is_none());
}

#[test]
fn applications_of_one_wallet_spend_from_it_together() {
    let mut h = Harness::new(NANO_PER_UNIT); // 100 calls
    let mut admitted = 0;
    for i in 0..150 {
        let key = if i % 3 == 0 { "key-a" } else { "key-b" };
        if h.reason("/", key).is_none() {
            admitted += 1;
        }
    }
    assert_eq!(admitted, 100);
    assert_eq!(h.reason("/", "key-a"), Some(Reason::InsufficientCredit));
    assert_eq!(h.reason("/", "key-b"), Some(Reason::InsufficientCredit));
    // One record per wallet, none per application of it.
    assert!(h.store.data.contains_key("tg1/w/w"));
    assert_eq!(
        h.store
            .data
            .keys()
            .filter(|k| k.starts_with("tg1/w/"))
            .count(),
        2
    );
}

/// What costs nothing is admitted at a zero balance: an unpriced metric, an application on an
/// invoiced plan in a wallet, and (by the contract) an application on a priced plan that is in
/// no wallet.
#[test]
fn a_zero_cost_request_is_admitted_at_zero_balance() {
    let mut h = Harness::new(0);
    assert_eq!(h.reason("/", "key-a"), Some(Reason::InsufficientCredit));
    let before = h.value("tg1/w/w");
    for _ in 0..5 {
        assert_eq!(h.reason("/free", "key-a"), None);
        assert_eq!(h.reason("/", "key-c"), None);
        assert_eq!(h.reason("/", "key-d"), None);
    }
    assert_eq!(h.value("tg1/w/w"), before, "nothing spent, nothing written");
    assert_eq!(h.spent("w"), 0);
}

#[test]
fn what_other_gateways_spent_counts_toward_the_limit() {
    let mut h = Harness::new(10 * NANO_PER_UNIT);
    // Others spent 9.95 of the 10.00 (and an entry for a wallet this catalog lacks is ignored).
    let global = GlobalUsage {
        entries: vec![],
        credit: vec![
            GlobalCreditEntry {
                wallet: "w".into(),
                spent_nano: 995 * CENT,
            },
            GlobalCreditEntry {
                wallet: "gone".into(),
                spent_nano: u64::MAX,
            },
        ],
    };
    let view = GlobalView::build(&h.catalog, &global);
    for _ in 0..5 {
        assert_eq!(h.reason_with(&view, "/", "key-b"), None);
    }
    assert_eq!(
        h.reason_with(&view, "/", "key-a"),
        Some(Reason::InsufficientCredit)
    );
    assert_eq!(
        h.spent("w"),
        5 * CENT,
        "only this gateway's own spend is recorded"
    );
    // Without the others' spend (standalone), the rest of the 10.00 is there.
    assert_eq!(h.reason("/", "key-a"), None);
    // Others' spend beyond the limit refuses everything priced, and nothing overflows.
    let view = GlobalView::build(
        &h.catalog,
        &GlobalUsage {
            entries: vec![],
            credit: vec![GlobalCreditEntry {
                wallet: "w".into(),
                spent_nano: u64::MAX,
            }],
        },
    );
    assert_eq!(
        h.reason_with(&view, "/", "key-a"),
        Some(Reason::InsufficientCredit)
    );
    assert_eq!(h.reason_with(&view, "/free", "key-a"), None);
}

/// Costs and spends saturate at `u64::MAX` instead of wrapping to a small number.
#[test]
fn costs_and_spends_saturate_instead_of_wrapping() {
    let huge = u64::MAX / 3; // 5 units of it overflow u64
    let json = snapshot(u64::MAX - 1, NANO_PER_UNIT).replace(
        &format!(r#""nano_per_unit": {CENT}}}]}},"#),
        &format!(r#""nano_per_unit": {huge}}}]}},"#),
    );
    let (config, catalog) = Config::parse(json.as_bytes()).unwrap();
    let mut h = Harness {
        config,
        catalog: catalog.unwrap(),
        store: FakeStore::default(),
    };
    for wallet in &h.catalog.wallets {
        credit::ensure_record(&mut h.store, wallet).unwrap();
    }
    let plan = &h.catalog.plans[0];
    let usage = crate::decision::usage_of(&h.catalog, "GET", "/bulk").unwrap();
    assert_eq!(
        credit::cost_nano(plan, &usage),
        u64::MAX,
        "saturated, not wrapped"
    );
    assert_eq!(
        h.reason("/bulk", "key-a"),
        Some(Reason::InsufficientCredit),
        "a saturated cost exceeds any wallet below u64::MAX"
    );
    // Two calls of `huge` fit in u64::MAX - 1; a third would overflow the spend: refused.
    assert_eq!(h.reason("/", "key-a"), None);
    assert_eq!(h.reason("/", "key-a"), None);
    assert_eq!(h.reason("/", "key-a"), Some(Reason::InsufficientCredit));
    assert_eq!(h.spent("w"), 2 * huge);
}

/// A request its limit refuses spends nothing; one its wallet refuses counts nothing; and when
/// both apply, the 402 comes first.
#[test]
fn refusals_spend_and_count_nothing_and_credit_is_checked_before_limits() {
    // `lim`: 3 a minute, wallet w2 of 0.10 (10 calls).
    let mut h = Harness::with(NANO_PER_UNIT, 10 * CENT);
    for _ in 0..3 {
        assert_eq!(h.reason("/", "key-lim"), None);
    }
    let spent = h.value("tg1/w/w2");
    assert_eq!(h.reason("/", "key-lim"), Some(Reason::LimitExceeded));
    assert_eq!(h.value("tg1/w/w2"), spent, "the 429 gave its cost back");
    assert_eq!(h.spent("w2"), 3 * CENT);

    // Wallet w2 of 0.02: two fit, the third is refused for credit before its limit is reached,
    // and the application's counts stay as they were.
    let mut h = Harness::with(NANO_PER_UNIT, 2 * CENT);
    assert_eq!(h.reason("/", "key-lim"), None);
    assert_eq!(h.reason("/", "key-lim"), None);
    let counts = h.record_of("lim");
    assert_eq!(h.reason("/", "key-lim"), Some(Reason::InsufficientCredit));
    assert_eq!(h.record_of("lim"), counts, "the 402 counted nothing");

    // Out of credit and over the limit: 402 (topping up is what helps, not waiting).
    let mut h = Harness::with(NANO_PER_UNIT, 3 * CENT);
    for _ in 0..3 {
        assert_eq!(h.reason("/", "key-lim"), None);
    }
    assert_eq!(h.reason("/", "key-lim"), Some(Reason::InsufficientCredit));
    // Suspension and unknown keys still come first.
    assert_eq!(h.reason("/", "key-none"), Some(Reason::InvalidCredentials));
}

/// A store that fails every write of the applications' counter records: the limits cannot be
/// counted, so the request's spend is given back (fail mode closed answers 503).
struct CountersFail(FakeStore);

impl SharedStore for CountersFail {
    fn get(&mut self, key: &str) -> Result<(Option<Vec<u8>>, Option<u32>), StoreError> {
        self.0.get(key)
    }
    fn set(&mut self, key: &str, value: &[u8], cas: Option<u32>) -> Result<bool, StoreError> {
        if key.starts_with("tg1/c/") {
            return Err(StoreError::Host(7));
        }
        self.0.set(key, value, cas)
    }
    fn release(&mut self) {
        self.0.release();
    }
}

#[test]
fn a_request_that_cannot_be_counted_spends_nothing() {
    let h = Harness::with(NANO_PER_UNIT, NANO_PER_UNIT);
    let mut store = CountersFail(h.store);
    let presented = extract(&h.config.credentials, "/", |n| {
        (n == "x-api-key").then_some(&b"key-lim"[..])
    });
    let Decision::Reject(r) = decide(
        &h.config, &h.catalog, &NoOthers, presented, "GET", "/", NOW, &mut store,
    ) else {
        panic!("fail mode closed")
    };
    assert_eq!(r.reason, Reason::Unavailable);
    let w2 = &h.catalog.wallets[1];
    assert_eq!(own_spend(&mut store, w2).unwrap(), 0);
}

#[test]
fn wallet_races_are_retried_and_never_over_spend() {
    let mut h = Harness::new(3 * CENT);
    let mut admitted = 0;
    for i in 0..10 {
        // Every other call, a competing write lands between the wallet's read and its write.
        h.store.fail_next_sets = i % 2;
        if h.reason("/", "key-a").is_none() {
            admitted += 1;
        }
    }
    assert_eq!(admitted, 3);
    assert_eq!(h.spent("w"), 3 * CENT);
}

mod catalog {
    use super::*;
    use crate::error::ConfigError;

    fn compile(json: &str) -> Result<Catalog, ConfigError> {
        let s: tollgate_protocol::Snapshot = serde_json::from_str(json).unwrap();
        Catalog::compile(&s, "snapshot")
    }

    const BASE: &str = r#""plans": [{"id": "p", "credit_prices": [{"metric": "hits", "nano_per_unit": 7}]}],
        "metrics": [{"name": "hits"}],
        "applications": [{"id": "z", "plan": "p", "state": "live"}, {"id": "a", "plan": "p", "state": "live"},
                         {"id": "bad", "plan": "gone", "state": "live"}]"#;

    fn wallet_of(c: &Catalog, app: &str) -> Option<String> {
        let a = &c.apps[c.app_index(app).unwrap()];
        a.wallet().map(|w| c.wallets[w].id.clone())
    }

    /// Unknown applications (and ones skipped as invalid) are left out of a wallet and counted;
    /// an application in two wallets spends from the first; the compact encoding, whose head
    /// carries the wallets, compiles to the same assignment.
    #[test]
    fn wallet_entries_that_cannot_apply_are_skipped_and_the_first_wallet_wins() {
        let json = format!(
            r#"{{{BASE}, "wallets": [
                {{"id": "w1", "limit_nano": 5, "applications": ["z", "ghost", "bad"]}},
                {{"id": "w2", "limit_nano": 9, "applications": ["a", "z"]}}]}}"#
        );
        let c = compile(&json).unwrap();
        assert_eq!(c.wallets.len(), 2);
        assert_eq!(wallet_of(&c, "z").as_deref(), Some("w1"));
        assert_eq!(wallet_of(&c, "a").as_deref(), Some("w2"));
        assert_eq!(c.skipped_wallet_entries, 3);
        assert_eq!(c.skipped_apps, 1);
        let fields: Vec<&str> = c.skipped_reasons.iter().map(|e| e.field.as_str()).collect();
        assert_eq!(
            fields,
            [
                "snapshot.applications[2].plan",
                "snapshot.wallets[0].applications[1]",
                "snapshot.wallets[0].applications[2]",
                "snapshot.wallets[1].applications[1]"
            ]
        );
        assert!(c.skipped_reasons[3]
            .message
            .contains("in wallet \"w1\" already"));
        let summary = c.skipped_summary().unwrap();
        assert!(summary.contains("3 wallet entries skipped"), "{summary}");

        let s: tollgate_protocol::Snapshot = serde_json::from_str(&json).unwrap();
        for format in [
            tollgate_protocol::binary::Format::V1,
            tollgate_protocol::binary::Format::V2,
        ] {
            let bytes = tollgate_protocol::binary::encode_as(&s, format).unwrap().0;
            let b = Catalog::compile_binary(&bytes).unwrap();
            assert_eq!(b.wallets, c.wallets);
            assert_eq!(b.plans, c.plans);
            assert_eq!(wallet_of(&b, "z").as_deref(), Some("w1"));
            assert_eq!(wallet_of(&b, "a").as_deref(), Some("w2"));
            assert_eq!(b.skipped_wallet_entries, 3);
        }
    }

    #[test]
    fn a_bad_wallet_or_price_refuses_the_snapshot_naming_the_field() {
        let field = |extra: &str, plans: Option<&str>| {
            let base = match plans {
                Some(p) => BASE.replace(r#"[{"metric": "hits", "nano_per_unit": 7}]"#, p),
                None => BASE.to_string(),
            };
            compile(&format!("{{{base}{extra}}}")).unwrap_err().field
        };
        assert_eq!(
            field(
                r#", "wallets": [{"id": "w", "limit_nano": 1}, {"id": "w", "limit_nano": 2}]"#,
                None
            ),
            "snapshot.wallets[1].id"
        );
        assert_eq!(
            field(
                r#", "wallets": [{"id": "with space", "limit_nano": 1}]"#,
                None
            ),
            "snapshot.wallets[0].id"
        );
        assert_eq!(
            field("", Some(r#"[{"metric": "nope", "nano_per_unit": 1}]"#)),
            "snapshot.plans[0].credit_prices[0].metric"
        );
        assert_eq!(
            field(
                "",
                Some(
                    r#"[{"metric": "hits", "nano_per_unit": 1}, {"metric": "hits", "nano_per_unit": 2}]"#
                )
            ),
            "snapshot.plans[0].credit_prices[1].metric"
        );
    }

    #[test]
    fn a_top_up_url_that_cannot_be_a_header_is_left_out() {
        for (url, kept) in [
            ("https://portal.example/wallet", true),
            ("http://localhost:8080/portal/wallet?x=1", true),
            ("javascript:alert(1)", false),
            ("https://portal.example/a b", false),
            ("https://portal.example/>; rel=\"next\"", false),
            ("https://portal.example/\r\nset-cookie: x", false),
        ] {
            let json = format!(
                r#"{{{BASE}, "top_up_url": {}}}"#,
                serde_json::to_string(url).unwrap()
            );
            let c = compile(&json).unwrap();
            assert_eq!(c.top_up_url.is_some(), kept, "{url:?}");
            assert_eq!(c.top_up_url_dropped, !kept);
        }
        let long = format!("https://portal.example/{}", "a".repeat(3_000));
        let c = compile(&format!(r#"{{{BASE}, "top_up_url": "{long}"}}"#)).unwrap();
        assert!(c.top_up_url.is_none());
        assert!(c.skipped_summary().unwrap().contains("top-up URL left out"));
    }

    #[test]
    #[cfg(target_pointer_width = "64")]
    fn an_application_keeps_its_size() {
        // The wallet index sits in padding: 100,000 applications per worker VM cost no more.
        assert_eq!(std::mem::size_of::<crate::catalog::AppDef>(), 48);
    }
}
