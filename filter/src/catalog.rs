//! The snapshot compiled for the hot path: names resolved to indexes, keys decoded to bytes,
//! per-application shared-data keys pre-built, and everything cross-checked once so the request
//! path never meets a dangling reference.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};

use tollgate_protocol::{ApplicationState, Period, Snapshot, SuspensionReason, Wallet};

use tollgate_rules::mapping::Pattern;
pub use tollgate_rules::names::{
    is_valid_metric_name, MAX_KEYS_PER_APPLICATION, MAX_METRIC_NAME_BYTES,
};

use crate::error::ConfigError;

/// How many skipped applications' reasons a catalog keeps for the log (all are counted).
pub const MAX_SKIPPED_REASONS_KEPT: usize = 8;
pub use tollgate_rules::names::MAX_ID_BYTES;
/// Deepest metric hierarchy (3scale has two levels: hits and its methods).
pub const MAX_METRIC_DEPTH: usize = 8;

/// Prefix of the per-application counter record in shared data.
/// Short on purpose: with 100,000 applications every byte of the key is 100 kB of shared data.
pub const COUNTER_KEY_PREFIX: &str = "tg1/c/";

/// Prefix of a prepaid wallet's spend record in shared data (see `credit`). Short for the same
/// reason as [`COUNTER_KEY_PREFIX`].
pub const WALLET_KEY_PREFIX: &str = "tg1/w/";
/// Longest `top_up_url` kept: it travels in the `Link` header of every 402 `insufficient_credit`.
pub const MAX_TOP_UP_URL_BYTES: usize = 2_048;
/// [`AppDef::wallet`] of an application that spends from no wallet.
const NO_WALLET: u32 = u32::MAX;

/// A compiled mapping rule; `metric` is an index into the catalog's metric table.
#[derive(Clone, Debug)]
pub struct Rule {
    /// `None` matches any method.
    pub method: Option<String>,
    pub pattern: Pattern,
    pub metric: usize,
    pub delta: u64,
    pub last: bool,
}

#[derive(Debug, PartialEq, Eq)]
pub struct MetricDef {
    pub name: String,
    pub parent: Option<usize>,
}

#[derive(Debug, PartialEq, Eq)]
pub struct LimitDef {
    pub metric: usize,
    pub period: Period,
    pub value: u64,
    /// Policy name in rate-limit headers: `<metric>-<period>`, e.g. `hits-minute`.
    pub policy_name: String,
}

/// What one unit of a metric costs on a prepaid plan; `metric` indexes the metric table.
#[derive(Debug, PartialEq, Eq)]
pub struct CreditPriceDef {
    pub metric: usize,
    pub nano_per_unit: u64,
}

#[derive(Debug, PartialEq, Eq)]
pub struct PlanDef {
    pub id: String,
    pub limits: Vec<LimitDef>,
    /// Prices of a prepaid plan, at most one per metric; empty for an invoiced plan.
    pub credit_prices: Vec<CreditPriceDef>,
}

/// A prepaid wallet the gateway enforces (protocol [`Wallet`]).
#[derive(Debug, PartialEq, Eq)]
pub struct WalletDef {
    pub id: String,
    /// Everything the wallet may ever spend on gateway usage, in nano-units.
    pub limit_nano: u64,
}

impl WalletDef {
    /// Shared-data key of the wallet's spend record (this gateway's life-time spend).
    pub fn spend_key(&self) -> String {
        let mut k = String::with_capacity(WALLET_KEY_PREFIX.len() + self.id.len());
        k.push_str(WALLET_KEY_PREFIX);
        k.push_str(&self.id);
        k
    }
}

#[derive(Debug, PartialEq, Eq)]
pub struct AppDef {
    /// Position in `Catalog::apps` (metering keys usage by it on the request path).
    pub index: usize,
    pub id: String,
    pub plan: usize,
    pub state: ApplicationState,
    pub state_reason: Option<SuspensionReason>,
    /// Index into `Catalog::wallets` of the wallet the application spends from, [`NO_WALLET`]
    /// for none: a `u32` sits in the struct's padding where an `Option<usize>` would add 8 bytes
    /// to each of 100,000 applications per worker VM.
    wallet: u32,
}

impl AppDef {
    /// Index into `Catalog::wallets` of the wallet this application spends from.
    pub fn wallet(&self) -> Option<usize> {
        (self.wallet != NO_WALLET).then_some(self.wallet as usize)
    }

    /// Shared-data key of the application's counter record. Built when needed rather than stored:
    /// with 100,000 applications per worker VM, every byte kept per application counts.
    pub fn counter_key(&self) -> String {
        let mut k = String::with_capacity(COUNTER_KEY_PREFIX.len() + self.id.len());
        k.push_str(COUNTER_KEY_PREFIX);
        k.push_str(&self.id);
        k
    }
}

/// Keys are SHA-256 digests, already uniformly distributed: their first 8 bytes are a perfect
/// hash, so SipHash over 32 bytes on every request would be wasted work.
#[derive(Default)]
pub struct DigestHasher(u64);

impl Hasher for DigestHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes.iter().take(8) {
            self.0 = (self.0 << 8) | u64::from(b);
        }
    }
}

type DigestMap<V> = HashMap<[u8; 32], V, BuildHasherDefault<DigestHasher>>;

/// An application reachable by its `app_id`, with the digests of its `app_key`s: kept here rather
/// than in [`AppDef`], so applications without an `app_id` pay nothing for them.
#[derive(Debug)]
struct ByAppId {
    index: usize,
    app_keys: Box<[[u8; 32]]>,
}

#[derive(Debug)]
pub struct Catalog {
    pub metrics: Vec<MetricDef>,
    pub rules: Vec<Rule>,
    pub plans: Vec<PlanDef>,
    pub apps: Vec<AppDef>,
    by_key: DigestMap<usize>,
    by_app_id: HashMap<String, ByAppId>,
    apps_sorted: bool,
    pub version: Option<String>,
    /// Applications of the snapshot left out because they were invalid (too many keys, a bad
    /// digest, an unknown plan, ...): one bad application never refuses the whole snapshot.
    pub skipped_apps: usize,
    /// Why, for the first [`MAX_SKIPPED_REASONS_KEPT`] of them (and of skipped wallet entries).
    pub skipped_reasons: Vec<ConfigError>,
    /// Prepaid wallets, in snapshot order.
    pub wallets: Vec<WalletDef>,
    /// Applications named by a wallet that were left out of it: not in the catalog (unknown, or
    /// skipped as invalid), or already in an earlier wallet (the first listing wins).
    pub skipped_wallet_entries: usize,
    /// Linked from the 402 `insufficient_credit` answer; `None` when absent or unusable.
    pub top_up_url: Option<String>,
    /// The snapshot's `top_up_url` could not be used (logged with the skipped entries).
    pub top_up_url_dropped: bool,
}

impl Catalog {
    /// Everything of the snapshot but its wallets.
    fn compile_without_wallets(s: &Snapshot, at: &str) -> Result<Catalog, ConfigError> {
        let mut metrics = Vec::with_capacity(s.metrics.len());
        let mut metric_index = HashMap::new();
        for (i, m) in s.metrics.iter().enumerate() {
            let field = format!("{at}.metrics[{i}].name");
            check_metric_name(&field, &m.name)?;
            if metric_index.insert(m.name.clone(), i).is_some() {
                return Err(ConfigError::new(
                    field,
                    format!("duplicate metric {:?}", m.name),
                ));
            }
            metrics.push(MetricDef {
                name: m.name.clone(),
                parent: None,
            });
        }
        for (i, m) in s.metrics.iter().enumerate() {
            if let Some(parent) = &m.parent {
                let field = format!("{at}.metrics[{i}].parent");
                let p = *metric_index.get(parent).ok_or_else(|| {
                    ConfigError::new(&field, format!("unknown metric {parent:?}"))
                })?;
                metrics[i].parent = Some(p);
            }
        }
        for (i, _) in s.metrics.iter().enumerate() {
            let mut depth = 0;
            let mut cur = metrics[i].parent;
            while let Some(p) = cur {
                depth += 1;
                if depth > MAX_METRIC_DEPTH || p == i {
                    return Err(ConfigError::new(
                        format!("{at}.metrics[{i}].parent"),
                        "metric hierarchy has a cycle or is deeper than 8",
                    ));
                }
                cur = metrics[p].parent;
            }
        }
        let metric = |field: &str, name: &str| {
            metric_index
                .get(name)
                .copied()
                .ok_or_else(|| ConfigError::new(field, format!("unknown metric {name:?}")))
        };

        let mut rules = Vec::with_capacity(s.mapping_rules.len());
        for (i, r) in s.mapping_rules.iter().enumerate() {
            let f = |name: &str| format!("{at}.mapping_rules[{i}].{name}");
            let method = r.method.to_ascii_uppercase();
            if method.is_empty() || !method.bytes().all(|b| b.is_ascii_uppercase()) {
                return Err(ConfigError::new(
                    f("method"),
                    format!("{:?} is not an HTTP method", r.method),
                ));
            }
            if r.delta == 0 {
                return Err(ConfigError::new(f("delta"), "must be at least 1"));
            }
            rules.push(Rule {
                method: (method != "ANY").then_some(method),
                pattern: Pattern::parse(&f("pattern"), &r.pattern)?,
                metric: metric(&f("metric"), &r.metric)?,
                delta: r.delta,
                last: r.last,
            });
        }

        let mut plans = Vec::with_capacity(s.plans.len());
        let mut plan_index = HashMap::new();
        for (i, p) in s.plans.iter().enumerate() {
            let field = format!("{at}.plans[{i}].id");
            check_id(&field, &p.id)?;
            if plan_index.insert(p.id.as_str(), i).is_some() {
                return Err(ConfigError::new(
                    field,
                    format!("duplicate plan {:?}", p.id),
                ));
            }
            let mut limits: Vec<LimitDef> = Vec::with_capacity(p.limits.len());
            for (j, l) in p.limits.iter().enumerate() {
                let field = format!("{at}.plans[{i}].limits[{j}].metric");
                let m = metric(&field, &l.metric)?;
                if limits.iter().any(|x| x.metric == m && x.period == l.period) {
                    return Err(ConfigError::new(
                        field,
                        format!("two limits on {:?} per {}", l.metric, l.period.as_str()),
                    ));
                }
                limits.push(LimitDef {
                    metric: m,
                    period: l.period,
                    value: l.value,
                    policy_name: format!("{}-{}", l.metric, l.period.as_str()),
                });
            }
            let mut credit_prices: Vec<CreditPriceDef> = Vec::with_capacity(p.credit_prices.len());
            for (j, c) in p.credit_prices.iter().enumerate() {
                let field = format!("{at}.plans[{i}].credit_prices[{j}].metric");
                let m = metric(&field, &c.metric)?;
                // One price per metric: two would leave which one charges to chance.
                if credit_prices.iter().any(|x| x.metric == m) {
                    return Err(ConfigError::new(
                        field,
                        format!("two prices for {:?}", c.metric),
                    ));
                }
                credit_prices.push(CreditPriceDef {
                    metric: m,
                    nano_per_unit: c.nano_per_unit,
                });
            }
            plans.push(PlanDef {
                id: p.id.clone(),
                limits,
                credit_prices,
            });
        }

        let mut catalog = Catalog {
            metrics,
            rules,
            plans,
            apps: Vec::with_capacity(s.applications.len()),
            by_key: DigestMap::with_capacity_and_hasher(s.applications.len(), Default::default()),
            by_app_id: HashMap::new(),
            apps_sorted: true,
            version: s.version.clone(),
            skipped_apps: 0,
            skipped_reasons: Vec::new(),
            wallets: Vec::new(),
            skipped_wallet_entries: 0,
            top_up_url: None,
            top_up_url_dropped: false,
        };
        let mut app_ids = HashMap::with_capacity(s.applications.len());
        for (i, a) in s.applications.iter().enumerate() {
            let f = |name: &str| format!("{at}.applications[{i}].{name}");
            let added = (|| {
                if app_ids.contains_key(a.id.as_str()) {
                    return Err(ConfigError::new(
                        f("id"),
                        format!("duplicate application {:?}", a.id),
                    ));
                }
                let plan = *plan_index.get(a.plan.as_str()).ok_or_else(|| {
                    ConfigError::new(f("plan"), format!("unknown plan {:?}", a.plan))
                })?;
                check_key_count(&f, a.key_sha256.len(), a.app_key_sha256.len())?;
                let keys = decode_digests(&f, "key_sha256", &a.key_sha256)?;
                let app_keys = decode_digests(&f, "app_key_sha256", &a.app_key_sha256)?;
                catalog.push_app(
                    &f,
                    &a.id,
                    plan,
                    a.state,
                    a.state_reason,
                    &keys,
                    a.app_id.as_deref(),
                    &app_keys,
                )
            })();
            match added {
                Ok(()) => {
                    app_ids.insert(a.id.as_str(), i);
                }
                Err(e) => catalog.skip(e),
            }
        }
        catalog.apps_sorted = catalog.apps.windows(2).all(|w| w[0].id < w[1].id);
        Ok(catalog)
    }

    /// Compiles a snapshot: [`Catalog::compile_without_wallets`], then its wallets, which name
    /// applications and so come last.
    pub fn compile(s: &Snapshot, at: &str) -> Result<Catalog, ConfigError> {
        let mut catalog = Catalog::compile_without_wallets(s, at)?;
        catalog.add_wallets(&s.wallets, s.top_up_url.as_deref(), at)?;
        Ok(catalog)
    }

    /// Compiles a snapshot in the compact encoding ([`tollgate_protocol::binary`]): applications go
    /// straight from the buffer into the catalog, with no intermediate tree.
    pub fn compile_binary(bytes: &[u8]) -> Result<Catalog, ConfigError> {
        let len = bytes.len();
        Catalog::compile_chunked(len, |off, max| {
            bytes[off.min(len)..off.saturating_add(max).min(len)].to_vec()
        })
    }

    /// The same, reading the encoded snapshot piece by piece (`read(offset, max_len)`): a gateway
    /// never holds the whole body in its memory, only 64 KiB of it and the catalog.
    pub fn compile_chunked(
        total: usize,
        read: impl FnMut(usize, usize) -> Vec<u8>,
    ) -> Result<Catalog, ConfigError> {
        let (head, mut apps) = tollgate_protocol::binary::ChunkedDecoder::new(total, read)
            .map_err(|e| ConfigError::new("snapshot", e))?;
        let mut catalog = Catalog::compile_without_wallets(&head, "snapshot")?;
        // Exact sizes up front: growing by doubling would leave the peak in wasm memory for good.
        catalog.apps.reserve_exact(apps.len());
        catalog.by_key.reserve(apps.len());
        let mut i = 0;
        while let Some(rec) = apps.next_app() {
            let rec =
                rec.map_err(|e| ConfigError::new(format!("snapshot.applications[{i}]"), e))?;
            let f = |name: &str| format!("snapshot.applications[{i}].{name}");
            let plan = rec.plan as usize;
            let added = if plan >= catalog.plans.len() {
                Err(ConfigError::new(
                    f("plan"),
                    format!("plan index {plan} out of range"),
                ))
            } else if let Err(e) = check_key_count(&f, rec.keys.len() / 32, rec.app_keys.len() / 32)
            {
                Err(e)
            } else {
                // The encoding guarantees strictly increasing ids: no duplicate check needed.
                // No per-application allocation: digests go from the buffer into the key map.
                catalog.push_app(
                    &f,
                    rec.id,
                    plan,
                    rec.state,
                    rec.state_reason,
                    rec.keys,
                    rec.app_id,
                    rec.app_keys,
                )
            };
            if let Err(e) = added {
                catalog.skip(e);
            }
            i += 1;
        }
        catalog.apps_sorted = true;
        // The head carries the wallets; the applications they name are in now.
        catalog.add_wallets(&head.wallets, head.top_up_url.as_deref(), "snapshot")?;
        Ok(catalog)
    }

    /// Adds the prepaid wallets once the applications are in. A wallet itself that is invalid (a
    /// bad or repeated id) refuses the snapshot, as a bad plan does: leaving it out would let its
    /// applications spend without limit. An application entry that cannot apply is left out and
    /// counted ([`Catalog::skipped_wallet_entries`]): an id the catalog does not have (unknown, or
    /// an application skipped as invalid, whose keys open nothing anyway), or an application
    /// already in an earlier wallet, which keeps spending from that first wallet (one writer per
    /// fact: the control plane lists each application once; the first listing wins, as the first
    /// application keeps a key hash two of them claim). A `top_up_url` that cannot be a header
    /// value is dropped the same way: the 402 then carries no link.
    fn add_wallets(
        &mut self,
        wallets: &[Wallet],
        top_up_url: Option<&str>,
        at: &str,
    ) -> Result<(), ConfigError> {
        let mut ids = HashMap::with_capacity(wallets.len());
        // Applications by id: a scan per entry would cost applications x entries on a snapshot
        // not sorted by id.
        let by_id: Option<HashMap<&str, usize>> = (!self.apps_sorted && !wallets.is_empty())
            .then(|| self.apps.iter().map(|a| (a.id.as_str(), a.index)).collect());
        // Each application's wallet, written into the applications once all are resolved.
        let mut wallet_of = vec![
            NO_WALLET;
            if wallets.is_empty() {
                0
            } else {
                self.apps.len()
            }
        ];
        let mut skipped = Vec::new();
        let mut defs = Vec::with_capacity(wallets.len());
        for (w, wallet) in wallets.iter().enumerate() {
            let field = format!("{at}.wallets[{w}].id");
            check_id(&field, &wallet.id)?;
            if ids.insert(wallet.id.as_str(), w).is_some() {
                return Err(ConfigError::new(
                    field,
                    format!("duplicate wallet {:?}", wallet.id),
                ));
            }
            let index = u32::try_from(w)
                .ok()
                .filter(|&i| i != NO_WALLET)
                .ok_or_else(|| ConfigError::new(&field, "too many wallets"))?;
            for (k, app_id) in wallet.applications.iter().enumerate() {
                let found = match &by_id {
                    Some(map) => map.get(app_id.as_str()).copied(),
                    None => self.app_index(app_id),
                };
                let why = match found.map(|a| (a, wallet_of[a])) {
                    None => format!("unknown application {app_id:?}"),
                    Some((_, first)) if first != NO_WALLET => format!(
                        "application {app_id:?} is in wallet {:?} already",
                        wallets[first as usize].id
                    ),
                    Some((a, _)) => {
                        wallet_of[a] = index;
                        continue;
                    }
                };
                skipped.push(ConfigError::new(
                    format!("{at}.wallets[{w}].applications[{k}]"),
                    why,
                ));
            }
            defs.push(WalletDef {
                id: wallet.id.clone(),
                limit_nano: wallet.limit_nano,
            });
        }
        drop(by_id);
        for (app, wallet) in self.apps.iter_mut().zip(wallet_of) {
            app.wallet = wallet;
        }
        self.wallets = defs;
        self.skipped_wallet_entries += skipped.len();
        for why in skipped {
            self.keep_reason(why);
        }
        if let Some(url) = top_up_url {
            if is_header_safe_url(url) {
                self.top_up_url = Some(url.to_string());
            } else {
                self.top_up_url_dropped = true;
                self.keep_reason(ConfigError::new(
                    format!("{at}.top_up_url"),
                    format!(
                        "not an http(s) URL of at most {MAX_TOP_UP_URL_BYTES} visible ASCII characters without <>\" or spaces; left out"
                    ),
                ));
            }
        }
        Ok(())
    }

    /// Adds one application after checking what the caller has not; on an error nothing of the
    /// application is added (its keys open nothing).
    #[allow(clippy::too_many_arguments)] // the fields of one application
    fn push_app(
        &mut self,
        field: &dyn Fn(&str) -> String,
        id: &str,
        plan: usize,
        state: ApplicationState,
        state_reason: Option<SuspensionReason>,
        keys: &[u8],
        app_id: Option<&str>,
        app_keys: &[u8],
    ) -> Result<(), ConfigError> {
        check_id(&field("id"), id)?;
        let index = self.apps.len();
        let digests = || digests_of(keys);
        for (k, digest) in digests().enumerate() {
            if let Some(&other) = self.by_key.get(&digest) {
                return Err(ConfigError::new(
                    field(&format!("key_sha256[{k}]")),
                    format!(
                        "the same key hash belongs to application {:?} too",
                        self.apps[other].id
                    ),
                ));
            }
        }
        match app_id {
            Some(app_id) => {
                check_id(&field("app_id"), app_id)?;
                if self.by_app_id.contains_key(app_id) {
                    return Err(ConfigError::new(
                        field("app_id"),
                        format!("duplicate app_id {app_id:?}"),
                    ));
                }
                self.by_app_id.insert(
                    app_id.to_string(),
                    ByAppId {
                        index,
                        app_keys: digests_of(app_keys).collect(),
                    },
                );
            }
            // App keys without an app_id could never be presented: a producer's mistake worth
            // naming rather than silently carrying.
            None if !app_keys.is_empty() => {
                return Err(ConfigError::new(
                    field("app_key_sha256"),
                    "app keys need an app_id",
                ));
            }
            None => {}
        }
        for digest in digests() {
            self.by_key.insert(digest, index);
        }
        self.apps.push(AppDef {
            index,
            id: id.to_string(),
            plan,
            state,
            state_reason,
            wallet: NO_WALLET,
        });
        Ok(())
    }

    /// Leaves one application out: counted, and its reason kept for the log.
    fn skip(&mut self, why: ConfigError) {
        self.skipped_apps += 1;
        self.keep_reason(why);
    }

    fn keep_reason(&mut self, why: ConfigError) {
        if self.skipped_reasons.len() < MAX_SKIPPED_REASONS_KEPT {
            self.skipped_reasons.push(why);
        }
    }

    /// One log line about what was left out of the snapshot, `None` when nothing was.
    pub fn skipped_summary(&self) -> Option<String> {
        let mut what = Vec::new();
        if self.skipped_apps > 0 {
            what.push(format!(
                "{} invalid applications skipped (their keys open nothing)",
                self.skipped_apps
            ));
        }
        if self.skipped_wallet_entries > 0 {
            what.push(format!(
                "{} wallet entries skipped (unknown applications, or already in an earlier wallet)",
                self.skipped_wallet_entries
            ));
        }
        if self.top_up_url_dropped {
            what.push("the top-up URL left out".to_string());
        }
        (!what.is_empty()).then(|| {
            let reasons: Vec<String> = self.skipped_reasons.iter().map(|e| e.to_string()).collect();
            format!(
                "{}; the rest applies: {}",
                what.join(", "),
                reasons.join("; ")
            )
        })
    }

    /// A catalog with nothing in it (for replies made before any snapshot arrived).
    pub fn empty() -> Catalog {
        Catalog {
            metrics: Vec::new(),
            rules: Vec::new(),
            plans: Vec::new(),
            apps: Vec::new(),
            by_key: DigestMap::default(),
            by_app_id: HashMap::new(),
            apps_sorted: true,
            version: None,
            skipped_apps: 0,
            skipped_reasons: Vec::new(),
            wallets: Vec::new(),
            skipped_wallet_entries: 0,
            top_up_url: None,
            top_up_url_dropped: false,
        }
    }

    /// Index of the application `id`: a binary search when the snapshot lists applications in id
    /// order (the control plane does), else a scan.
    pub fn app_index(&self, id: &str) -> Option<usize> {
        if self.apps_sorted {
            self.apps.binary_search_by(|a| a.id.as_str().cmp(id)).ok()
        } else {
            self.apps.iter().position(|a| a.id == id)
        }
    }

    pub fn metric_index(&self, name: &str) -> Option<usize> {
        self.metrics.iter().position(|m| m.name == name)
    }

    pub fn app_by_key_digest(&self, digest: &[u8; 32]) -> Option<&AppDef> {
        self.by_key.get(digest).map(|&i| &self.apps[i])
    }

    pub fn app_by_app_id(&self, app_id: &str) -> Option<&AppDef> {
        self.by_app_id.get(app_id).map(|e| &self.apps[e.index])
    }

    /// The application a 3scale-style `app_id` + `app_key` pair opens: the one with that
    /// `app_id`, when the key's digest is one of its `app_key_sha256` or (standalone
    /// configurations written before app keys existed) one of its own `key_sha256`. The one
    /// decision for both modes: the control plane's snapshot and an inline one read the same.
    pub fn app_by_pair(&self, app_id: &str, key_digest: &[u8; 32]) -> Option<&AppDef> {
        let entry = self.by_app_id.get(app_id)?;
        let opens = entry.app_keys.contains(key_digest)
            || self.by_key.get(key_digest) == Some(&entry.index);
        opens.then(|| &self.apps[entry.index])
    }

    pub fn plan_of(&self, app: &AppDef) -> &PlanDef {
        &self.plans[app.plan]
    }
}

fn check_metric_name(field: &str, name: &str) -> Result<(), ConfigError> {
    if is_valid_metric_name(name) {
        Ok(())
    } else {
        Err(ConfigError::new(
            field,
            format!("{name:?}: 1-{MAX_METRIC_NAME_BYTES} characters from A-Z a-z 0-9 _ - ."),
        ))
    }
}

fn check_key_count(
    field: &dyn Fn(&str) -> String,
    keys: usize,
    app_keys: usize,
) -> Result<(), ConfigError> {
    for (name, n) in [("key_sha256", keys), ("app_key_sha256", app_keys)] {
        if n > MAX_KEYS_PER_APPLICATION {
            return Err(ConfigError::new(
                field(name),
                format!("{n} keys, more than {MAX_KEYS_PER_APPLICATION}"),
            ));
        }
    }
    Ok(())
}

/// Hex digests decoded into one buffer of 32-byte digests (the compact encoding's shape).
fn decode_digests(
    field: &dyn Fn(&str) -> String,
    name: &str,
    hex: &[String],
) -> Result<Vec<u8>, ConfigError> {
    let mut out = Vec::with_capacity(hex.len() * 32);
    for (k, h) in hex.iter().enumerate() {
        out.extend_from_slice(&decode_sha256_hex(h).ok_or_else(|| {
            ConfigError::new(
                field(&format!("{name}[{k}]")),
                "must be 64 hex characters (a SHA-256 digest)",
            )
        })?);
    }
    Ok(out)
}

fn digests_of(buf: &[u8]) -> impl Iterator<Item = [u8; 32]> + '_ {
    buf.chunks_exact(32).map(|c| {
        let mut d = [0u8; 32];
        d.copy_from_slice(c);
        d
    })
}

fn check_id(field: &str, id: &str) -> Result<(), ConfigError> {
    // Ids travel in upstream request headers and shared-data keys: visible ASCII only.
    let ok = !id.is_empty() && id.len() <= MAX_ID_BYTES && id.bytes().all(|b| b.is_ascii_graphic());
    if ok {
        Ok(())
    } else {
        Err(ConfigError::new(
            field,
            format!("{id:?}: 1-{MAX_ID_BYTES} visible ASCII characters"),
        ))
    }
}

/// Whether `url` can go into a `Link: <url>; rel="payment"` header and a JSON body as it is: an
/// http(s) URL of visible ASCII, without the characters that would end the `<...>` or a quoted
/// string early.
fn is_header_safe_url(url: &str) -> bool {
    (url.starts_with("https://") || url.starts_with("http://"))
        && url.len() <= MAX_TOP_UP_URL_BYTES
        && url
            .bytes()
            .all(|b| b.is_ascii_graphic() && !b"<>\"\\".contains(&b))
}

pub fn decode_sha256_hex(hex: &str) -> Option<[u8; 32]> {
    let b = hex.as_bytes();
    if b.len() != 64 {
        return None;
    }
    let nibble = |c: u8| match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        b'A'..=b'F' => Some(c - b'A' + 10),
        _ => None,
    };
    let mut out = [0u8; 32];
    for (i, o) in out.iter_mut().enumerate() {
        *o = (nibble(b[2 * i])? << 4) | nibble(b[2 * i + 1])?;
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn snap(json: &str) -> Snapshot {
        serde_json::from_str(json).unwrap()
    }

    /// The error refusing the snapshot, or else the reason its (first) bad application was
    /// skipped for.
    fn err(json: &str) -> ConfigError {
        match Catalog::compile(&snap(json), "snapshot") {
            Err(e) => e,
            Ok(c) => c.skipped_reasons.into_iter().next().unwrap(),
        }
    }

    /// Issue 15 item 2: an application over the key bound (or otherwise invalid) is left out,
    /// counted, and the rest of the snapshot installs, from JSON and from the compact encoding.
    #[test]
    fn one_bad_application_is_skipped_not_the_snapshot() {
        let many: Vec<String> = (0..=MAX_KEYS_PER_APPLICATION)
            .map(|i| format!("{:064x}", i + 1))
            .collect();
        let snapshot = snap(&format!(
            r#"{{"plans": [{{"id": "p"}}], "applications": [
                {{"id": "a", "plan": "p", "state": "live", "key_sha256": ["{KEY}"]}},
                {{"id": "b", "plan": "p", "state": "live", "key_sha256": {many:?}}},
                {{"id": "c", "plan": "gone", "state": "live", "key_sha256": ["{k2}"]}},
                {{"id": "d", "plan": "p", "state": "suspended", "key_sha256": ["{k3}"]}}]}}"#,
            k2 = "ab".repeat(32),
            k3 = "cd".repeat(32),
        ));
        let from_json = Catalog::compile(&snapshot, "snapshot").unwrap();
        let ids: Vec<&str> = from_json.apps.iter().map(|a| a.id.as_str()).collect();
        assert_eq!(ids, ["a", "d"]);
        assert_eq!(from_json.skipped_apps, 2);
        assert_eq!(
            from_json.skipped_reasons[0].field,
            "snapshot.applications[1].key_sha256"
        );
        // The skipped application's keys open nothing; the others' still do.
        assert!(from_json
            .app_by_key_digest(&decode_sha256_hex(&many[0]).unwrap())
            .is_none());
        assert_eq!(
            from_json
                .app_by_key_digest(&decode_sha256_hex(KEY).unwrap())
                .unwrap()
                .id,
            "a"
        );
        assert!(from_json
            .skipped_summary()
            .unwrap()
            .contains("2 invalid applications skipped"));
        // The compact encoding carries up to 255 keys: the filter skips the application there too.
        let mut encodable = snapshot.clone();
        encodable.applications.remove(2);
        let bytes = tollgate_protocol::binary::encode(&encodable).unwrap();
        let from_binary = Catalog::compile_binary(&bytes).unwrap();
        let ids: Vec<&str> = from_binary.apps.iter().map(|a| a.id.as_str()).collect();
        assert_eq!(ids, ["a", "d"]);
        assert_eq!(from_binary.skipped_apps, 1);
        assert!(from_binary
            .app_by_key_digest(&decode_sha256_hex(&many[3]).unwrap())
            .is_none());
        // A key shared with an earlier application: the later one is skipped, the key keeps
        // opening the first.
        let c = Catalog::compile(
            &snap(&format!(
                r#"{{"plans": [{{"id": "p"}}], "applications": [
                {{"id": "a", "plan": "p", "state": "live", "key_sha256": ["{KEY}"]}},
                {{"id": "b", "plan": "p", "state": "live", "key_sha256": ["{k2}", "{KEY}"]}}]}}"#,
                k2 = "ab".repeat(32)
            )),
            "snapshot",
        )
        .unwrap();
        assert_eq!(c.apps.len(), 1);
        assert_eq!(
            c.app_by_key_digest(&decode_sha256_hex(KEY).unwrap())
                .unwrap()
                .id,
            "a"
        );
        assert!(c.app_by_key_digest(&[0xab; 32]).is_none());
    }

    const KEY: &str = "2bb80d537b1da3e38bd30361aa855686bde0eacd7162fef6a25fe97bf527a25b";

    #[test]
    fn resolves_references() {
        let c = Catalog::compile(
            &snap(&format!(
                r#"{{"plans": [{{"id": "basic", "limits": [{{"metric": "search", "period": "hour", "value": 5}}]}}],
                "applications": [{{"id": "app-1", "plan": "basic", "state": "live", "key_sha256": ["{KEY}"], "app_id": "a1"}}],
                "metrics": [{{"name": "hits"}}, {{"name": "search", "parent": "hits"}}],
                "mapping_rules": [{{"method": "get", "pattern": "/s", "metric": "search"}}]}}"#
            )),
            "snapshot",
        )
        .unwrap();
        assert_eq!(c.metrics[1].parent, Some(0));
        assert_eq!(c.plans[0].limits[0].policy_name, "search-hour");
        assert_eq!(c.rules[0].method.as_deref(), Some("GET"));
        let digest = decode_sha256_hex(KEY).unwrap();
        assert_eq!(c.app_by_key_digest(&digest).unwrap().id, "app-1");
        assert_eq!(c.app_by_app_id("a1").unwrap().counter_key(), "tg1/c/app-1");
    }

    #[test]
    fn dangling_references_name_the_field() {
        assert_eq!(
            err(r#"{"plans": [{"id": "p", "limits": [{"metric": "nope", "period": "day", "value": 1}]}]}"#).field,
            "snapshot.plans[0].limits[0].metric"
        );
        assert_eq!(
            err(r#"{"plans": [], "applications": [{"id": "a", "plan": "gone", "state": "live"}]}"#)
                .field,
            "snapshot.applications[0].plan"
        );
        assert_eq!(
            err(r#"{"metrics": [{"name": "hits", "parent": "x"}]}"#).field,
            "snapshot.metrics[0].parent"
        );
        assert_eq!(
            err(r#"{"metrics": [{"name": "hits"}], "mapping_rules": [{"method": "GET", "pattern": "/", "metric": "m"}]}"#).field,
            "snapshot.mapping_rules[0].metric"
        );
    }

    #[test]
    fn bad_values_are_refused() {
        assert_eq!(
            err(r#"{"plans": [{"id": "p"}], "applications": [{"id": "a", "plan": "p", "state": "live", "key_sha256": ["abc"]}]}"#).field,
            "snapshot.applications[0].key_sha256[0]"
        );
        assert_eq!(
            err(r#"{"metrics": [{"name": "a b"}]}"#).field,
            "snapshot.metrics[0].name"
        );
        assert_eq!(
            err(r#"{"metrics": [{"name": "a", "parent": "b"}, {"name": "b", "parent": "a"}]}"#)
                .field,
            "snapshot.metrics[0].parent"
        );
        assert_eq!(
            err(r#"{"plans": [{"id": "p"}, {"id": "p"}]}"#).field,
            "snapshot.plans[1].id"
        );
        assert_eq!(
            err(r#"{"metrics": [{"name": "hits"}], "mapping_rules": [{"method": "GET", "pattern": "/", "metric": "hits", "delta": 0}]}"#).field,
            "snapshot.mapping_rules[0].delta"
        );
    }

    /// Issue 22: app keys reach the catalog from JSON and from TGS2 alike (TGS1 drops them); app
    /// keys without an app_id skip their application; the bound on keys holds for app keys too.
    #[test]
    fn app_keys_compile_from_json_and_tgs2() {
        let snapshot = snap(&format!(
            r#"{{"plans": [{{"id": "p"}}], "applications": [
                {{"id": "a", "plan": "p", "state": "live", "app_id": "pub-a", "app_key_sha256": ["{KEY}"]}},
                {{"id": "b", "plan": "p", "state": "live", "app_id": "pub-b", "app_key_sha256": ["{KEY}"]}},
                {{"id": "c", "plan": "p", "state": "live", "app_key_sha256": ["{KEY}"]}},
                {{"id": "d", "plan": "p", "state": "live", "app_id": "pub-d", "app_key_sha256": {many:?}}}]}}"#,
            many = (0..=MAX_KEYS_PER_APPLICATION)
                .map(|i| format!("{:064x}", i + 1))
                .collect::<Vec<_>>()
        ));
        let digest = decode_sha256_hex(KEY).unwrap();
        let v2 =
            tollgate_protocol::binary::encode_as(&snapshot, tollgate_protocol::binary::Format::V2)
                .unwrap()
                .0;
        for c in [
            Catalog::compile(&snapshot, "snapshot").unwrap(),
            Catalog::compile_binary(&v2).unwrap(),
        ] {
            assert_eq!(c.app_by_pair("pub-a", &digest).unwrap().id, "a");
            assert_eq!(c.app_by_pair("pub-b", &digest).unwrap().id, "b");
            assert!(c.app_by_pair("pub-a", &[0; 32]).is_none());
            assert!(
                c.app_by_key_digest(&digest).is_none(),
                "an app key alone opens nothing"
            );
            assert_eq!(c.skipped_apps, 2);
            assert!(c
                .app_by_pair(
                    "pub-d",
                    &[0; 31]
                        .iter()
                        .chain(&[1])
                        .copied()
                        .collect::<Vec<u8>>()
                        .try_into()
                        .unwrap()
                )
                .is_none());
        }
        let v1 = tollgate_protocol::binary::encode(&snapshot).unwrap();
        let c = Catalog::compile_binary(&v1).unwrap();
        assert!(c.app_by_pair("pub-a", &digest).is_none());
    }

    #[test]
    fn one_key_hash_cannot_open_two_applications() {
        let e = err(&format!(
            r#"{{"plans": [{{"id": "p"}}], "applications": [
                {{"id": "a", "plan": "p", "state": "live", "key_sha256": ["{KEY}"]}},
                {{"id": "b", "plan": "p", "state": "live", "key_sha256": ["{}"]}}]}}"#,
            KEY.to_uppercase()
        ));
        assert_eq!(e.field, "snapshot.applications[1].key_sha256[0]");
    }

    #[test]
    fn compact_encoding_compiles_to_the_same_catalog() {
        let json = format!(
            r#"{{"version": "9.1", "plans": [{{"id": "p", "limits": [{{"metric": "hits", "period": "day", "value": 3}}]}}, {{"id": "q"}}],
            "applications": [
                {{"id": "b", "plan": "q", "state": "suspended", "state_reason": "non_payment", "key_sha256": ["{KEY}"], "app_id": "pub-b"}},
                {{"id": "a", "plan": "p", "state": "live"}}],
            "metrics": [{{"name": "hits"}}],
            "mapping_rules": [{{"method": "GET", "pattern": "/", "metric": "hits"}}]}}"#
        );
        let snapshot = snap(&json);
        let bytes = tollgate_protocol::binary::encode(&snapshot).unwrap();
        let from_json = Catalog::compile(&snapshot, "snapshot").unwrap();
        let from_binary = Catalog::compile_binary(&bytes).unwrap();
        assert_eq!(from_binary.version.as_deref(), Some("9.1"));
        assert_eq!(from_binary.plans, from_json.plans);
        assert_eq!(from_binary.rules.len(), 1);
        // Same applications (the binary form is sorted by id), same lookups.
        assert_eq!(
            from_binary
                .apps
                .iter()
                .map(|a| a.id.as_str())
                .collect::<Vec<_>>(),
            vec!["a", "b"]
        );
        let digest = decode_sha256_hex(KEY).unwrap();
        let b = from_binary.app_by_key_digest(&digest).unwrap();
        assert_eq!(
            (b.id.as_str(), b.state_reason),
            ("b", Some(SuspensionReason::NonPayment))
        );
        assert_eq!(from_binary.plans[b.plan].id, "q");
        assert_eq!(from_binary.app_by_app_id("pub-b").unwrap().id, "b");
        assert_eq!(from_binary.app_index("b"), Some(1));
        // Truncated or foreign bytes are refused with the field.
        assert_eq!(
            Catalog::compile_binary(&bytes[..bytes.len() - 3])
                .unwrap_err()
                .field,
            "snapshot.applications[1]"
        );
        assert_eq!(
            Catalog::compile_binary(b"{}").unwrap_err().field,
            "snapshot"
        );
    }
}
