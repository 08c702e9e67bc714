//! `tollgate export` / `tollgate import <file>`: the catalog, the accounts and their applications
//! with key digests, app ids and app key digests, and the billing settings, as one JSON document
//! ([`Document`], format [`FORMAT`] version [`FORMAT_VERSION`]; described field by field in
//! `docs/export-import.md`). For backups and for moving an installation (SQLite to PostgreSQL
//! included): an import into an empty installation gives every key the decision it had.
//!
//! Import is all or nothing: the whole document is checked first ([`validate`], with the rules the
//! admin API applies to each object, and the references between them), then written in one
//! transaction, which first makes sure the installation is empty (no service, plan, account or
//! application): merging into a live catalog is not offered, so an import can never overwrite or
//! duplicate what is there. Ids are kept, so gateways, upstream headers (`x-tollgate-application`)
//! and API clients see the same ids.
//!
//! Not carried (and named in the document's `excluded`): secrets (the payment gateway's
//! credentials, admin, gateway and developer tokens, portal passwords), because they are sealed
//! with this installation's master key or only their digests exist and a new installation issues
//! its own; and history (usage, invoices, credit notes, credit balances, billing runs, sent email),
//! which stays with the installation that billed it. Each application's contract starts on the
//! import day (its remaining trial carried), so billing goes on from there.

use std::collections::{HashMap, HashSet};

use serde::{Deserialize, Serialize};

use crate::domain::accounts::applications::{
    check_app_id, check_description, ApplicationState, SuspensionReason,
};
use crate::domain::accounts::{account, app_keys, check_address, check_email, BillingAddress};
use crate::domain::audit::{self, Actor, Changes, Object};
use crate::domain::billing::calendar::day_of;
use crate::domain::billing::contracts::ImportedContract;
use crate::domain::billing::settings::BillingSettings;
use crate::domain::catalog::mapping_rules::MAX_MAPPING_RULES_PER_SERVICE;
use crate::domain::catalog::plans::PlanState;
use crate::domain::catalog::{
    check_limits, check_method, check_metric_name, check_money, check_name, check_pattern,
    check_pricing_rules, check_trial_days, metrics::check_unit, revision, LimitInput,
    PricingRuleInput,
};
use crate::domain::{DomainError, DomainResult};
use crate::money::format_amount;
use crate::secrets::new_id;
use crate::store::{begin_write, now, placeholders, rows_per_statement, Pool, Tx};

/// The document's `format`: what the file is.
pub const FORMAT: &str = "tollgate.export";
/// The document's `format_version`. Additive fields keep the version (an importer of the same
/// version refuses unknown fields, so a newer export is refused by an older `tollgate` rather than
/// half-read); any other change is a new version.
pub const FORMAT_VERSION: u32 = 1;
/// Largest file `tollgate import` reads: ~40 times a 20,000-application tenant.
pub const MAX_DOCUMENT_BYTES: u64 = 512 * 1024 * 1024;

/// The whole export.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Document {
    /// Always [`FORMAT`].
    pub format: String,
    /// [`FORMAT_VERSION`].
    pub format_version: u32,
    /// When it was made (Unix seconds).
    pub exported_at: i64,
    /// What the document does not carry and why (informational; ignored on import).
    pub excluded: Vec<Excluded>,
    pub billing_settings: BillingSettings,
    pub services: Vec<ServiceDoc>,
    pub plans: Vec<PlanDoc>,
    pub accounts: Vec<AccountDoc>,
    pub applications: Vec<ApplicationDoc>,
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct Excluded {
    pub what: String,
    pub why: String,
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct ServiceDoc {
    pub id: String,
    pub name: String,
    pub created_at: i64,
    /// Metrics and methods (a method names its parent metric).
    pub metrics: Vec<MetricDoc>,
    /// In evaluation order.
    pub mapping_rules: Vec<MappingRuleDoc>,
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct MetricDoc {
    pub id: String,
    pub name: String,
    pub unit: String,
    /// The parent metric's name (methods: usually `hits`).
    pub parent: Option<String>,
    pub created_at: i64,
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct MappingRuleDoc {
    pub id: String,
    pub method: String,
    pub pattern: String,
    /// The metric's name.
    pub metric: String,
    pub delta: u32,
    pub last: bool,
    pub created_at: i64,
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct PlanDoc {
    pub id: String,
    pub service_id: String,
    pub name: String,
    pub state: PlanState,
    /// Decimal strings in the billing currency.
    pub setup_fee: String,
    pub fixed_fee: String,
    pub trial_days: i64,
    /// The plan this one is an application's customized copy of.
    pub parent_plan_id: Option<String>,
    pub created_at: i64,
    /// As the admin API takes them (metrics by name).
    pub limits: Vec<LimitInput>,
    pub pricing_rules: Vec<PricingRuleInput>,
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct AccountDoc {
    pub id: String,
    pub name: String,
    pub email: String,
    pub billing_address: BillingAddress,
    /// Percent, a decimal string.
    pub vat_rate: String,
    pub vat_code: Option<String>,
    pub created_at: i64,
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct ApplicationDoc {
    pub id: String,
    pub account_id: String,
    pub plan_id: String,
    pub name: String,
    pub description: String,
    pub state: ApplicationState,
    pub state_reason: Option<SuspensionReason>,
    pub app_id: Option<String>,
    pub created_at: i64,
    /// The last trial day of its current contract (a day number: days since 1970-01-01, UTC),
    /// so an imported application keeps what is left of its trial and gets no new one.
    pub trial_ends_on: Option<i64>,
    /// Live API keys, as SHA-256.
    pub keys: Vec<KeyDoc>,
    /// App keys, as SHA-256.
    pub app_keys: Vec<AppKeyDoc>,
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq, sqlx::FromRow)]
#[serde(deny_unknown_fields)]
pub struct KeyDoc {
    pub id: String,
    pub key_sha256: String,
    /// As listed: a generated key's first characters, or `sha256:…` for an imported one.
    pub prefix: String,
    pub created_at: i64,
    /// Set for a rotated key in its grace period: it works until then.
    pub expires_at: Option<i64>,
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq, sqlx::FromRow)]
#[serde(deny_unknown_fields)]
pub struct AppKeyDoc {
    pub id: String,
    pub key_sha256: String,
    pub created_at: i64,
}

/// What an export leaves out, named in every document.
fn excluded() -> Vec<Excluded> {
    let e = |what: &str, why: &str| Excluded {
        what: what.into(),
        why: why.into(),
    };
    vec![
        e("payment_gateway", "the provider's credentials are sealed with this installation's TOLLGATE_MASTER_KEY: enter them again (PUT /admin/api/v1/payment_gateway)"),
        e("admin_tokens", "secrets (stored as digests): create new ones with `tollgate token create`"),
        e("gateway_tokens", "secrets (stored as digests): create new ones and give them to the gateways"),
        e("account_tokens", "developers' API tokens, secrets: developers create new ones"),
        e("portal_users", "developer portal sign-ins and password hashes: developers sign up again or are invited"),
        e("usage", "metered history stays with the installation that billed it; limits count from zero in the new one"),
        e("invoices", "invoices, credit notes, invoice numbers, charge attempts and billing runs stay with the installation that issued them"),
        e("credit_balances", "credit follows from invoices that are not carried: settle it before moving"),
        e("contracts", "each application's contract starts on the import day (what is left of its trial is carried)"),
        e("payment_customers", "cards live at the payment provider under customers of the old configuration"),
        e("webhook_endpoints", "their signing secrets are sealed with this installation's TOLLGATE_MASTER_KEY and receivers hold them: create the endpoints again and give receivers the new secrets; events and deliveries stay behind"),
        e("admin_email", "TOLLGATE_ADMIN_EMAIL is an environment setting of each installation, not stored data"),
    ]
}

/// A check of the document failed: the message names where (`services[2].metrics[0].name`).
fn at(path: &str, e: DomainError) -> DomainError {
    match e {
        DomainError::Invalid {
            code,
            message,
            param,
        } => DomainError::Invalid {
            code,
            message,
            param: Some(match param {
                Some(p) => format!("{path}.{p}"),
                None => path.to_string(),
            }),
        },
        other => other,
    }
}

fn invalid(path: String, code: &'static str, message: impl Into<String>) -> DomainError {
    DomainError::invalid(path, code, message)
}

/// Ids are kept: they travel to gateways and in upstream headers, so they follow the filter's
/// rule for ids.
fn check_id(path: &str, id: &str) -> DomainResult<()> {
    let max = tollgate_rules::names::MAX_ID_BYTES;
    if id.is_empty() || id.len() > max || !id.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(invalid(
            format!("{path}.id"),
            "invalid_id",
            format!("1-{max} visible ASCII characters"),
        ));
    }
    Ok(())
}

fn unique<'a>(
    seen: &mut HashSet<&'a str>,
    path: &str,
    field: &str,
    v: &'a str,
) -> DomainResult<()> {
    if seen.insert(v) {
        Ok(())
    } else {
        Err(invalid(
            format!("{path}.{field}"),
            "duplicate",
            format!("{v:?} appears twice"),
        ))
    }
}

fn check_digest(path: String, d: &str) -> DomainResult<()> {
    if d.len() == 64
        && d.bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    {
        Ok(())
    } else {
        Err(invalid(
            path,
            "invalid_key_sha256",
            "a SHA-256 digest: 64 lowercase hex characters",
        ))
    }
}

/// Checks the whole document (every object with the admin API's rules, and every reference)
/// before anything is written.
pub fn validate(doc: &Document) -> DomainResult<()> {
    if doc.format != FORMAT || doc.format_version != FORMAT_VERSION {
        return Err(invalid(
            "format_version".into(),
            "unsupported_format",
            format!(
                "this tollgate reads {FORMAT:?} version {FORMAT_VERSION}, not {:?} version {}",
                doc.format, doc.format_version
            ),
        ));
    }
    doc.billing_settings
        .validate()
        .map_err(|e| at("billing_settings", e))?;
    let mut ids = HashSet::new();
    let mut service_names = HashSet::new();
    // service id -> metric name -> metric id
    let mut metrics_of: HashMap<&str, HashMap<String, String>> = HashMap::new();
    for (i, s) in doc.services.iter().enumerate() {
        let p = format!("services[{i}]");
        check_id(&p, &s.id)?;
        unique(&mut ids, &p, "id", &s.id)?;
        // The unique index on services.name, exactly (as the admin API applies it).
        let name = check_name("name", &s.name).map_err(|e| at(&p, e))?;
        if !service_names.insert(name.clone()) {
            return Err(invalid(
                format!("{p}.name"),
                "duplicate",
                format!("two services named {name:?}"),
            ));
        }
        let mut names: HashMap<String, String> = HashMap::new();
        let mut parents: HashMap<&str, Option<&str>> = HashMap::new();
        for (j, m) in s.metrics.iter().enumerate() {
            let mp = format!("{p}.metrics[{j}]");
            check_id(&mp, &m.id)?;
            unique(&mut ids, &mp, "id", &m.id)?;
            check_metric_name("name", &m.name).map_err(|e| at(&mp, e))?;
            check_unit(&m.unit).map_err(|e| at(&mp, e))?;
            if names.insert(m.name.clone(), m.id.clone()).is_some() {
                return Err(invalid(
                    format!("{mp}.name"),
                    "duplicate",
                    format!("two metrics named {:?}", m.name),
                ));
            }
            parents.insert(&m.name, m.parent.as_deref());
        }
        for (j, m) in s.metrics.iter().enumerate() {
            if let Some(parent) = &m.parent {
                // Two levels, as the admin API allows: metrics, and methods under them.
                match parents.get(parent.as_str()) {
                    Some(None) => {}
                    Some(Some(_)) => {
                        return Err(invalid(
                            format!("{p}.metrics[{j}].parent"),
                            "invalid_parent",
                            "a method cannot have methods",
                        ))
                    }
                    None => {
                        return Err(invalid(
                            format!("{p}.metrics[{j}].parent"),
                            "unknown_metric",
                            format!("the service has no metric {parent:?}"),
                        ))
                    }
                }
            }
        }
        if s.mapping_rules.len() as i64 > MAX_MAPPING_RULES_PER_SERVICE {
            return Err(invalid(
                format!("{p}.mapping_rules"),
                "too_many_mapping_rules",
                format!("a service has at most {MAX_MAPPING_RULES_PER_SERVICE} mapping rules"),
            ));
        }
        for (j, r) in s.mapping_rules.iter().enumerate() {
            let rp = format!("{p}.mapping_rules[{j}]");
            check_id(&rp, &r.id)?;
            unique(&mut ids, &rp, "id", &r.id)?;
            check_method(&r.method).map_err(|e| at(&rp, e))?;
            check_pattern(&r.pattern).map_err(|e| at(&rp, e))?;
            if r.delta == 0 {
                return Err(invalid(
                    format!("{rp}.delta"),
                    "invalid_delta",
                    "must be at least 1",
                ));
            }
            if !names.contains_key(&r.metric) {
                return Err(invalid(
                    format!("{rp}.metric"),
                    "unknown_metric",
                    format!("the service has no metric {:?}", r.metric),
                ));
            }
        }
        metrics_of.insert(&s.id, names);
    }
    let mut plan_service: HashMap<&str, &str> = HashMap::new();
    for (i, pl) in doc.plans.iter().enumerate() {
        let p = format!("plans[{i}]");
        check_id(&p, &pl.id)?;
        unique(&mut ids, &p, "id", &pl.id)?;
        let Some(metrics) = metrics_of.get(pl.service_id.as_str()) else {
            return Err(invalid(
                format!("{p}.service_id"),
                "unknown_service",
                format!("no service with id {:?} in the document", pl.service_id),
            ));
        };
        check_name("name", &pl.name).map_err(|e| at(&p, e))?;
        check_money("setup_fee", &pl.setup_fee).map_err(|e| at(&p, e))?;
        check_money("fixed_fee", &pl.fixed_fee).map_err(|e| at(&p, e))?;
        check_trial_days(pl.trial_days).map_err(|e| at(&p, e))?;
        check_limits(&pl.limits, metrics).map_err(|e| at(&p, e))?;
        check_pricing_rules(&pl.pricing_rules, metrics).map_err(|e| at(&p, e))?;
        plan_service.insert(&pl.id, &pl.service_id);
    }
    for (i, pl) in doc.plans.iter().enumerate() {
        if let Some(parent) = &pl.parent_plan_id {
            // A customized copy's parent is an original plan (one level, as the API makes them):
            // never the plan itself, never another copy (no chain, no cycle).
            let parent_is_copy = doc
                .plans
                .iter()
                .any(|q| &q.id == parent && q.parent_plan_id.is_some());
            if parent == &pl.id || parent_is_copy {
                return Err(invalid(
                    format!("plans[{i}].parent_plan_id"),
                    "invalid_parent_plan",
                    "a customized plan's parent is an original plan (not itself, not another customized plan)",
                ));
            }
            if plan_service.get(parent.as_str()) != Some(&pl.service_id.as_str()) {
                return Err(invalid(
                    format!("plans[{i}].parent_plan_id"),
                    "unknown_plan",
                    format!("no plan {parent:?} of the same service in the document"),
                ));
            }
        }
    }
    let mut account_ids = HashSet::new();
    for (i, a) in doc.accounts.iter().enumerate() {
        let p = format!("accounts[{i}]");
        check_id(&p, &a.id)?;
        unique(&mut ids, &p, "id", &a.id)?;
        account_ids.insert(a.id.as_str());
        check_name("name", &a.name).map_err(|e| at(&p, e))?;
        check_email(&a.email).map_err(|e| at(&p, e))?;
        check_address(&a.billing_address).map_err(|e| at(&p, e))?;
        account::check_vat_rate(&a.vat_rate).map_err(|e| at(&p, e))?;
        if let Some(code) = &a.vat_code {
            account::check_vat_code(code).map_err(|e| at(&p, e))?;
        }
    }
    let mut app_ids_seen = HashSet::new();
    let mut digests = HashSet::new();
    for (i, a) in doc.applications.iter().enumerate() {
        let p = format!("applications[{i}]");
        check_id(&p, &a.id)?;
        unique(&mut ids, &p, "id", &a.id)?;
        if !account_ids.contains(a.account_id.as_str()) {
            return Err(invalid(
                format!("{p}.account_id"),
                "unknown_account",
                format!("no account {:?} in the document", a.account_id),
            ));
        }
        if !plan_service.contains_key(a.plan_id.as_str()) {
            return Err(invalid(
                format!("{p}.plan_id"),
                "unknown_plan",
                format!("no plan {:?} in the document", a.plan_id),
            ));
        }
        check_name("name", &a.name).map_err(|e| at(&p, e))?;
        check_description(&a.description).map_err(|e| at(&p, e))?;
        // A suspended application without a reason is read as suspended by an admin, as the
        // gateway reads it; only a live one with a reason is contradictory.
        if a.state == ApplicationState::Live && a.state_reason.is_some() {
            return Err(invalid(
                format!("{p}.state_reason"),
                "invalid_state",
                "a live application has no suspension reason",
            ));
        }
        if let Some(app_id) = &a.app_id {
            check_app_id(app_id).map_err(|e| at(&p, e))?;
            unique(&mut app_ids_seen, &p, "app_id", app_id)?;
        }
        // A trial ends at most MAX_TRIAL_DAYS from today: a file cannot give free service
        // forever (the API's bound on a plan's trial).
        if let Some(day) = a.trial_ends_on {
            let today = crate::domain::billing::calendar::day_of(crate::store::now());
            if day > today + crate::domain::catalog::MAX_TRIAL_DAYS {
                return Err(invalid(
                    format!("{p}.trial_ends_on"),
                    "invalid_trial",
                    format!(
                        "at most {} days from today",
                        crate::domain::catalog::MAX_TRIAL_DAYS
                    ),
                ));
            }
        }
        let active = a.keys.iter().filter(|k| k.expires_at.is_none()).count() as i64;
        if active > crate::domain::accounts::keys::MAX_ACTIVE_KEYS {
            return Err(invalid(
                format!("{p}.keys"),
                "too_many_keys",
                format!(
                    "at most {} active keys (without expires_at)",
                    crate::domain::accounts::keys::MAX_ACTIVE_KEYS
                ),
            ));
        }
        if a.keys.len() as i64 > crate::domain::accounts::keys::MAX_LIVE_KEYS {
            return Err(invalid(
                format!("{p}.keys"),
                "too_many_keys",
                format!(
                    "at most {} live keys",
                    crate::domain::accounts::keys::MAX_LIVE_KEYS
                ),
            ));
        }
        for (j, k) in a.keys.iter().enumerate() {
            let kp = format!("{p}.keys[{j}]");
            check_id(&kp, &k.id)?;
            unique(&mut ids, &kp, "id", &k.id)?;
            check_digest(format!("{kp}.key_sha256"), &k.key_sha256)?;
            // A key opens one application: never two (the same rule as the unique index).
            unique(&mut digests, &kp, "key_sha256", &k.key_sha256)?;
            if k.prefix.chars().count() > 64 || k.prefix.chars().any(char::is_control) {
                return Err(invalid(
                    format!("{kp}.prefix"),
                    "invalid_prefix",
                    "at most 64 printable characters",
                ));
            }
        }
        if !a.app_keys.is_empty() && a.app_id.is_none() {
            return Err(invalid(
                format!("{p}.app_keys"),
                "app_id_required",
                "app keys need the application's app_id",
            ));
        }
        if a.app_keys.len() as i64 > app_keys::MAX_APP_KEYS {
            return Err(invalid(
                format!("{p}.app_keys"),
                "app_key_limit_reached",
                format!("at most {} app keys", app_keys::MAX_APP_KEYS),
            ));
        }
        let mut own = HashSet::new();
        for (j, k) in a.app_keys.iter().enumerate() {
            let kp = format!("{p}.app_keys[{j}]");
            check_id(&kp, &k.id)?;
            unique(&mut ids, &kp, "id", &k.id)?;
            check_digest(format!("{kp}.key_sha256"), &k.key_sha256)?;
            unique(&mut own, &kp, "key_sha256", &k.key_sha256)?;
        }
    }
    // An app key that is also an API key would open the API key's application alone for
    // whoever holds the app key (the same rule as the API's).
    let app_key_digests: HashSet<&str> = doc
        .applications
        .iter()
        .flat_map(|a| a.app_keys.iter().map(|k| k.key_sha256.as_str()))
        .collect();
    for (i, a) in doc.applications.iter().enumerate() {
        for (j, k) in a.keys.iter().enumerate() {
            if app_key_digests.contains(k.key_sha256.as_str()) {
                return Err(invalid(
                    format!("applications[{i}].keys[{j}].key_sha256"),
                    "key_in_use",
                    "an API key may not also be an app key",
                ));
            }
        }
    }
    Ok(())
}

/// Reads a document from JSON text: a malformed one is refused with where it broke.
pub fn parse(text: &[u8]) -> DomainResult<Document> {
    let mut de = serde_json::Deserializer::from_slice(text);
    serde_path_to_error::deserialize(&mut de).map_err(|e| {
        DomainError::malformed(
            Some(e.path().to_string()),
            "invalid_document",
            format!("at {}: {}", e.path(), e.inner()),
        )
    })
}

// ---- export ----

#[derive(sqlx::FromRow)]
struct ServiceRow {
    id: String,
    name: String,
    created_at: i64,
}

#[derive(sqlx::FromRow)]
struct MetricRow {
    id: String,
    service_id: String,
    name: String,
    unit: String,
    parent: Option<String>,
    created_at: i64,
}

#[derive(sqlx::FromRow)]
struct RuleRow {
    id: String,
    service_id: String,
    http_method: String,
    pattern: String,
    metric: String,
    delta: i64,
    is_last: i64,
    created_at: i64,
}

#[derive(sqlx::FromRow)]
struct PlanRow {
    id: String,
    service_id: String,
    name: String,
    state: String,
    setup_fee: String,
    fixed_fee: String,
    trial_days: i64,
    parent_plan_id: Option<String>,
    created_at: i64,
}

#[derive(sqlx::FromRow)]
struct LimitRow {
    plan_id: String,
    metric: String,
    period: String,
    limit_value: i64,
}

#[derive(sqlx::FromRow)]
struct PriceRow {
    plan_id: String,
    metric: String,
    model: String,
    range_from: i64,
    range_to: Option<i64>,
    unit_price: String,
    package_size: Option<i64>,
}

#[derive(sqlx::FromRow)]
struct AccountRow {
    id: String,
    name: String,
    email: String,
    billing_address: String,
    vat_rate: String,
    vat_code: Option<String>,
    created_at: i64,
}

#[derive(sqlx::FromRow)]
struct AppRow {
    id: String,
    account_id: String,
    plan_id: String,
    name: String,
    description: String,
    state: String,
    state_reason: Option<String>,
    app_id: Option<String>,
    created_at: i64,
    trial_ends_on: Option<i64>,
}

#[derive(sqlx::FromRow)]
struct OwnedKey {
    application_id: String,
    #[sqlx(flatten)]
    key: KeyDoc,
}

#[derive(sqlx::FromRow)]
struct OwnedAppKey {
    application_id: String,
    #[sqlx(flatten)]
    key: AppKeyDoc,
}

fn corrupt(what: &str, e: impl std::fmt::Display) -> DomainError {
    DomainError::Internal(format!("stored {what} unreadable: {e}"))
}

fn unsigned(what: &str, v: i64) -> DomainResult<u64> {
    u64::try_from(v).map_err(|_| corrupt(what, format!("{v} is negative")))
}

/// Exports the installation: read in one transaction (one consistent view on both databases;
/// on PostgreSQL at `REPEATABLE READ`).
pub async fn export(pool: &Pool) -> DomainResult<Document> {
    let mut tx = pool.begin().await?;
    if crate::store::backend() == crate::store::Backend::Postgres {
        sqlx::query("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ READ ONLY")
            .execute(&mut *tx)
            .await?;
    }
    let settings: Option<(String,)> =
        sqlx::query_as("SELECT settings FROM billing_settings WHERE id = 1")
            .fetch_optional(&mut *tx)
            .await?;
    let billing_settings = match settings {
        Some((json,)) => serde_json::from_str(&json).map_err(|e| corrupt("billing settings", e))?,
        None => BillingSettings::default(),
    };
    let services: Vec<ServiceRow> =
        sqlx::query_as("SELECT id, name, created_at FROM services ORDER BY id")
            .fetch_all(&mut *tx)
            .await?;
    let metrics: Vec<MetricRow> = sqlx::query_as(
        "SELECT m.id AS id, m.service_id AS service_id, m.name AS name, m.unit AS unit, \
         p.name AS parent, m.created_at AS created_at \
         FROM metrics m LEFT JOIN metrics p ON p.id = m.parent_id ORDER BY m.id",
    )
    .fetch_all(&mut *tx)
    .await?;
    let rules: Vec<RuleRow> = sqlx::query_as(
        "SELECT r.id AS id, r.service_id AS service_id, r.http_method AS http_method, \
         r.pattern AS pattern, m.name AS metric, r.delta AS delta, r.is_last AS is_last, \
         r.created_at AS created_at FROM mapping_rules r JOIN metrics m ON m.id = r.metric_id ORDER BY r.id",
    )
    .fetch_all(&mut *tx)
    .await?;
    let mut by_service: HashMap<String, ServiceDoc> = HashMap::new();
    let mut order = Vec::with_capacity(services.len());
    for s in services {
        order.push(s.id.clone());
        by_service.insert(
            s.id.clone(),
            ServiceDoc {
                id: s.id,
                name: s.name,
                created_at: s.created_at,
                metrics: Vec::new(),
                mapping_rules: Vec::new(),
            },
        );
    }
    for m in metrics {
        if let Some(s) = by_service.get_mut(&m.service_id) {
            s.metrics.push(MetricDoc {
                id: m.id,
                name: m.name,
                unit: m.unit,
                parent: m.parent,
                created_at: m.created_at,
            });
        }
    }
    for r in rules {
        if let Some(s) = by_service.get_mut(&r.service_id) {
            s.mapping_rules.push(MappingRuleDoc {
                id: r.id,
                method: r.http_method,
                pattern: r.pattern,
                metric: r.metric,
                delta: u32::try_from(r.delta).map_err(|e| corrupt("mapping rule delta", e))?,
                last: r.is_last != 0,
                created_at: r.created_at,
            });
        }
    }
    let services = order
        .into_iter()
        .filter_map(|id| by_service.remove(&id))
        .collect();

    let plan_rows: Vec<PlanRow> = sqlx::query_as(
        "SELECT id, service_id, name, state, setup_fee, fixed_fee, trial_days, parent_plan_id, created_at \
         FROM plans ORDER BY id",
    )
    .fetch_all(&mut *tx)
    .await?;
    let limit_rows: Vec<LimitRow> = sqlx::query_as(
        "SELECT l.plan_id AS plan_id, m.name AS metric, l.period AS period, l.limit_value AS limit_value \
         FROM plan_limits l JOIN metrics m ON m.id = l.metric_id ORDER BY l.plan_id, m.name, l.period",
    )
    .fetch_all(&mut *tx)
    .await?;
    let price_rows: Vec<PriceRow> = sqlx::query_as(
        "SELECT r.plan_id AS plan_id, m.name AS metric, r.model AS model, r.range_from AS range_from, \
         r.range_to AS range_to, r.unit_price AS unit_price, r.package_size AS package_size \
         FROM pricing_rules r JOIN metrics m ON m.id = r.metric_id ORDER BY r.plan_id, m.name, r.range_from",
    )
    .fetch_all(&mut *tx)
    .await?;
    let mut limits: HashMap<String, Vec<LimitInput>> = HashMap::new();
    for l in limit_rows {
        limits.entry(l.plan_id).or_default().push(LimitInput {
            metric: l.metric,
            period: crate::domain::catalog::stored_period(&l.period)?,
            value: unsigned("limit", l.limit_value)?,
        });
    }
    let mut prices: HashMap<String, Vec<PricingRuleInput>> = HashMap::new();
    for r in price_rows {
        let model = crate::domain::catalog::PricingModel::stored(&r.model)?;
        prices.entry(r.plan_id).or_default().push(PricingRuleInput {
            metric: r.metric,
            from: unsigned("pricing rule", r.range_from)?,
            to: r
                .range_to
                .map(|t| unsigned("pricing rule", t))
                .transpose()?,
            unit_price: format_amount(crate::money::stored(&r.unit_price)?),
            model,
            package_size: r
                .package_size
                .map(|n| unsigned("package size", n))
                .transpose()?,
        });
    }
    let mut plans = Vec::with_capacity(plan_rows.len());
    for p in plan_rows {
        plans.push(PlanDoc {
            state: PlanState::stored(&p.state)?,
            setup_fee: format_amount(crate::money::stored(&p.setup_fee)?),
            fixed_fee: format_amount(crate::money::stored(&p.fixed_fee)?),
            limits: limits.remove(&p.id).unwrap_or_default(),
            pricing_rules: prices.remove(&p.id).unwrap_or_default(),
            id: p.id,
            service_id: p.service_id,
            name: p.name,
            trial_days: p.trial_days,
            parent_plan_id: p.parent_plan_id,
            created_at: p.created_at,
        });
    }

    let account_rows: Vec<AccountRow> = sqlx::query_as(
        "SELECT id, name, email, billing_address, vat_rate, vat_code, created_at FROM accounts ORDER BY id",
    )
    .fetch_all(&mut *tx)
    .await?;
    let mut accounts = Vec::with_capacity(account_rows.len());
    for a in account_rows {
        accounts.push(AccountDoc {
            billing_address: serde_json::from_str(&a.billing_address)
                .map_err(|e| corrupt("billing address", e))?,
            vat_rate: format_amount(crate::money::stored(&a.vat_rate)?),
            id: a.id,
            name: a.name,
            email: a.email,
            vat_code: a.vat_code,
            created_at: a.created_at,
        });
    }

    let app_rows: Vec<AppRow> = sqlx::query_as(
        "SELECT a.id AS id, a.account_id AS account_id, a.plan_id AS plan_id, a.name AS name, \
         a.description AS description, a.state AS state, a.state_reason AS state_reason, \
         a.app_id AS app_id, a.created_at AS created_at, c.trial_ends_on AS trial_ends_on \
         FROM applications a LEFT JOIN contracts c ON c.application_id = a.id AND c.ends_on IS NULL \
         ORDER BY a.id",
    )
    .fetch_all(&mut *tx)
    .await?;
    let key_rows: Vec<OwnedKey> = sqlx::query_as(
        "SELECT application_id, id, key_sha256, prefix, created_at, expires_at FROM application_keys \
         WHERE expires_at IS NULL OR expires_at > $1 ORDER BY id",
    )
    .bind(now())
    .fetch_all(&mut *tx)
    .await?;
    let app_key_rows: Vec<OwnedAppKey> = sqlx::query_as(
        "SELECT application_id, id, key_sha256, created_at FROM application_app_keys ORDER BY id",
    )
    .fetch_all(&mut *tx)
    .await?;
    tx.commit().await?;
    let mut keys: HashMap<String, Vec<KeyDoc>> = HashMap::new();
    for k in key_rows {
        keys.entry(k.application_id).or_default().push(k.key);
    }
    let mut akeys: HashMap<String, Vec<AppKeyDoc>> = HashMap::new();
    for k in app_key_rows {
        akeys.entry(k.application_id).or_default().push(k.key);
    }
    let mut applications = Vec::with_capacity(app_rows.len());
    for a in app_rows {
        let state = ApplicationState::parse(&a.state)?;
        let state_reason = SuspensionReason::parse_stored(a.state_reason.as_deref())?;
        applications.push(ApplicationDoc {
            keys: keys.remove(&a.id).unwrap_or_default(),
            app_keys: akeys.remove(&a.id).unwrap_or_default(),
            id: a.id,
            account_id: a.account_id,
            plan_id: a.plan_id,
            name: a.name,
            description: a.description,
            state,
            state_reason,
            app_id: a.app_id,
            created_at: a.created_at,
            trial_ends_on: a.trial_ends_on,
        });
    }
    Ok(Document {
        format: FORMAT.into(),
        format_version: FORMAT_VERSION,
        exported_at: now(),
        excluded: excluded(),
        billing_settings,
        services,
        plans,
        accounts,
        applications,
    })
}

// ---- import ----

/// What an import wrote.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Imported {
    pub services: usize,
    pub plans: usize,
    pub accounts: usize,
    pub applications: usize,
    pub keys: usize,
    pub app_keys: usize,
}

/// Refuses unless the installation holds no service, plan, account or application.
async fn must_be_empty(tx: &mut Tx) -> DomainResult<()> {
    let mut held = Vec::new();
    for table in ["services", "plans", "accounts", "applications"] {
        let (n,): (i64,) = sqlx::query_as(&format!("SELECT COUNT(*) FROM {table}"))
            .fetch_one(&mut **tx)
            .await?;
        if n > 0 {
            held.push(format!("{n} {table}"));
        }
    }
    if held.is_empty() {
        Ok(())
    } else {
        Err(DomainError::conflict(
            "not_empty",
            format!(
                "this installation is not empty ({}): import needs an empty one and merges nothing; nothing was changed",
                held.join(", ")
            ),
        ))
    }
}

/// Validates `doc` whole, then writes it in one transaction into an empty installation, with one
/// audit event (`installation.imported`, the counts as its changes): not one per row. An import
/// writes up to tens of thousands of rows in multi-row statements; an event per row would double
/// that and bury the log, and the document itself is the record of what came in (`tollgate
/// export` gives it back). The event says when, who (`cli`) and how much.
pub async fn import(pool: &Pool, actor: &Actor, doc: &Document) -> DomainResult<Imported> {
    validate(doc)?;
    let mut tx = begin_write(pool).await?;
    // Two imports at once (PostgreSQL): the second waits here, then finds the first's rows and
    // is refused `not_empty`, instead of racing it to a unique key (SQLite's write lock
    // serializes them already).
    if crate::store::backend() == crate::store::Backend::Postgres {
        sqlx::query("LOCK TABLE services IN EXCLUSIVE MODE")
            .execute(&mut *tx)
            .await?;
    }
    must_be_empty(&mut tx).await?;
    let t = now();
    let today = day_of(t);
    let mut done = Imported::default();
    let settings =
        serde_json::to_string(&doc.billing_settings).map_err(|e| corrupt("billing settings", e))?;
    sqlx::query("DELETE FROM billing_settings WHERE id = 1")
        .execute(&mut *tx)
        .await?;
    sqlx::query("INSERT INTO billing_settings (id, settings, updated_at) VALUES (1, $1, $2)")
        .bind(settings)
        .bind(t)
        .execute(&mut *tx)
        .await?;
    for s in &doc.services {
        sqlx::query(
            "INSERT INTO services (id, name, created_at, updated_at) VALUES ($1, $2, $3, $4)",
        )
        .bind(&s.id)
        .bind(s.name.trim())
        .bind(s.created_at)
        .bind(t)
        .execute(&mut *tx)
        .await?;
        let ids: HashMap<&str, &str> = s
            .metrics
            .iter()
            .map(|m| (m.name.as_str(), m.id.as_str()))
            .collect();
        // Parents first: a method's row references its metric's.
        let (roots, methods): (Vec<&MetricDoc>, Vec<&MetricDoc>) =
            s.metrics.iter().partition(|m| m.parent.is_none());
        for m in roots.into_iter().chain(methods) {
            sqlx::query("INSERT INTO metrics (id, service_id, name, unit, parent_id, created_at) VALUES ($1, $2, $3, $4, $5, $6)")
                .bind(&m.id)
                .bind(&s.id)
                .bind(&m.name)
                .bind(m.unit.trim())
                .bind(m.parent.as_deref().and_then(|p| ids.get(p).copied()))
                .bind(m.created_at)
                .execute(&mut *tx)
                .await?;
        }
        for r in &s.mapping_rules {
            sqlx::query("INSERT INTO mapping_rules (id, service_id, http_method, pattern, metric_id, delta, is_last, created_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)")
                .bind(&r.id)
                .bind(&s.id)
                .bind(check_method(&r.method)?)
                .bind(&r.pattern)
                .bind(ids.get(r.metric.as_str()).copied())
                .bind(i64::from(r.delta))
                .bind(i64::from(r.last))
                .bind(r.created_at)
                .execute(&mut *tx)
                .await?;
        }
        done.services += 1;
    }
    let metric_ids: HashMap<&str, HashMap<String, String>> = doc
        .services
        .iter()
        .map(|s| {
            (
                s.id.as_str(),
                s.metrics
                    .iter()
                    .map(|m| (m.name.clone(), m.id.clone()))
                    .collect(),
            )
        })
        .collect();
    // Originals before their customized copies (a copy references its original).
    let (originals, copies): (Vec<&PlanDoc>, Vec<&PlanDoc>) =
        doc.plans.iter().partition(|p| p.parent_plan_id.is_none());
    for p in originals.into_iter().chain(copies) {
        let metrics = metric_ids
            .get(p.service_id.as_str())
            .ok_or_else(|| DomainError::Internal("validated plan lost its service".into()))?;
        sqlx::query(
            "INSERT INTO plans (id, service_id, name, state, setup_fee, fixed_fee, trial_days, parent_plan_id, created_at, updated_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
        )
        .bind(&p.id)
        .bind(&p.service_id)
        .bind(p.name.trim())
        .bind(p.state.as_str())
        .bind(format_amount(check_money("setup_fee", &p.setup_fee)?))
        .bind(format_amount(check_money("fixed_fee", &p.fixed_fee)?))
        .bind(p.trial_days)
        .bind(&p.parent_plan_id)
        .bind(p.created_at)
        .bind(t)
        .execute(&mut *tx)
        .await?;
        for (metric_id, l) in check_limits(&p.limits, metrics)? {
            sqlx::query("INSERT INTO plan_limits (plan_id, metric_id, period, limit_value) VALUES ($1, $2, $3, $4)")
                .bind(&p.id)
                .bind(metric_id)
                .bind(l.period.as_str())
                .bind(i64::try_from(l.value).map_err(|e| DomainError::Internal(e.to_string()))?)
                .execute(&mut *tx)
                .await?;
        }
        for r in check_pricing_rules(&p.pricing_rules, metrics)? {
            let big = |v: u64| i64::try_from(v).map_err(|e| DomainError::Internal(e.to_string()));
            sqlx::query(
                "INSERT INTO pricing_rules (id, plan_id, metric_id, model, range_from, range_to, unit_price, package_size) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
            )
            .bind(new_id("pr"))
            .bind(&p.id)
            .bind(&r.metric_id)
            .bind(r.model.as_str())
            .bind(big(r.from)?)
            .bind(r.to.map(big).transpose()?)
            .bind(format_amount(r.unit_price))
            .bind(r.package_size.map(big).transpose()?)
            .execute(&mut *tx)
            .await?;
        }
        done.plans += 1;
    }
    let trial_days: HashMap<&str, i64> = doc
        .plans
        .iter()
        .map(|p| (p.id.as_str(), p.trial_days))
        .collect();
    // Accounts, applications and their keys in multi-row statements: tens of thousands of rows
    // cost a few hundred round trips, not one each (the PostgreSQL figure in BENCHMARKS.md).
    /// An account's columns as the admin API stores them (trimmed, normalized).
    struct NewAccount<'d> {
        doc: &'d AccountDoc,
        name: String,
        email: String,
        billing_address: String,
        vat_rate: String,
        vat_code: Option<String>,
    }
    let accounts: Vec<NewAccount> = doc
        .accounts
        .iter()
        .map(|a| {
            Ok(NewAccount {
                doc: a,
                name: check_name("name", &a.name)?,
                email: check_email(&a.email)?,
                billing_address: check_address(&a.billing_address)?,
                vat_rate: format_amount(account::check_vat_rate(&a.vat_rate)?),
                vat_code: match &a.vat_code {
                    Some(c) => account::check_vat_code(c)?,
                    None => None,
                },
            })
        })
        .collect::<DomainResult<_>>()?;
    for chunk in accounts.chunks(rows_per_statement(8)) {
        let sql = format!(
            "INSERT INTO accounts (id, name, email, billing_address, vat_rate, vat_code, created_at, updated_at) VALUES {}",
            placeholders(chunk.len(), 8)
        );
        let mut q = sqlx::query(&sql).persistent(false);
        for a in chunk {
            q = q
                .bind(&a.doc.id)
                .bind(&a.name)
                .bind(&a.email)
                .bind(&a.billing_address)
                .bind(&a.vat_rate)
                .bind(&a.vat_code)
                .bind(a.doc.created_at)
                .bind(t);
        }
        q.execute(&mut *tx).await?;
    }
    done.accounts = accounts.len();
    let names: Vec<String> = doc
        .applications
        .iter()
        .map(|a| check_name("name", &a.name))
        .collect::<DomainResult<_>>()?;
    let apps: Vec<(&ApplicationDoc, &String)> = doc.applications.iter().zip(&names).collect();
    for chunk in apps.chunks(rows_per_statement(10)) {
        let sql = format!(
            "INSERT INTO applications (id, account_id, plan_id, name, description, state, state_reason, created_at, updated_at, app_id) VALUES {}",
            placeholders(chunk.len(), 10)
        );
        let mut q = sqlx::query(&sql).persistent(false);
        for (a, name) in chunk {
            q = q
                .bind(&a.id)
                .bind(&a.account_id)
                .bind(&a.plan_id)
                .bind(*name)
                .bind(&a.description)
                .bind(a.state.as_str())
                .bind(a.state_reason.map(SuspensionReason::as_str))
                .bind(a.created_at)
                .bind(t)
                .bind(&a.app_id);
        }
        q.execute(&mut *tx).await?;
    }
    done.applications = apps.len();
    // Billing goes on from the import day; what is left of a trial is kept, never a new one.
    let contracts: Vec<ImportedContract> = apps
        .iter()
        .map(|(a, name)| ImportedContract {
            application_id: &a.id,
            account_id: &a.account_id,
            application_name: name,
            plan_id: &a.plan_id,
            trial_ends_on: a
                .trial_ends_on
                .unwrap_or(today + trial_days.get(a.plan_id.as_str()).copied().unwrap_or(0))
                .max(today),
        })
        .collect();
    crate::domain::billing::contracts::start_imported(&mut tx, &contracts, t).await?;
    let keys: Vec<(&str, &KeyDoc)> = doc
        .applications
        .iter()
        .flat_map(|a| a.keys.iter().map(move |k| (a.id.as_str(), k)))
        .collect();
    for chunk in keys.chunks(rows_per_statement(6)) {
        let sql = format!(
            "INSERT INTO application_keys (id, application_id, key_sha256, prefix, created_at, expires_at) VALUES {}",
            placeholders(chunk.len(), 6)
        );
        let mut q = sqlx::query(&sql).persistent(false);
        for (app, k) in chunk {
            q = q
                .bind(&k.id)
                .bind(*app)
                .bind(&k.key_sha256)
                .bind(&k.prefix)
                .bind(k.created_at)
                .bind(k.expires_at);
        }
        q.execute(&mut *tx).await?;
    }
    done.keys = keys.len();
    let app_keys: Vec<(&str, &AppKeyDoc)> = doc
        .applications
        .iter()
        .flat_map(|a| a.app_keys.iter().map(move |k| (a.id.as_str(), k)))
        .collect();
    for chunk in app_keys.chunks(rows_per_statement(4)) {
        let sql = format!(
            "INSERT INTO application_app_keys (id, application_id, key_sha256, created_at) VALUES {}",
            placeholders(chunk.len(), 4)
        );
        let mut q = sqlx::query(&sql).persistent(false);
        for (app, k) in chunk {
            q = q
                .bind(&k.id)
                .bind(*app)
                .bind(&k.key_sha256)
                .bind(k.created_at);
        }
        q.execute(&mut *tx).await?;
    }
    done.app_keys = app_keys.len();
    let count =
        |name: &'static str, n: usize| (name, serde_json::Value::Null, serde_json::json!(n));
    let changes = Changes::of(&[
        count("services", done.services),
        count("plans", done.plans),
        count("accounts", done.accounts),
        count("applications", done.applications),
        count("keys", done.keys),
        count("app_keys", done.app_keys),
    ]);
    let object = Object {
        kind: "installation",
        id: "installation",
    };
    audit::record(&mut tx, actor, "installation.imported", object, &changes).await?;
    revision::bump(&mut tx).await?;
    tx.commit().await?;
    Ok(done)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn doc() -> Document {
        Document {
            format: FORMAT.into(),
            format_version: FORMAT_VERSION,
            exported_at: 0,
            excluded: excluded(),
            billing_settings: BillingSettings::default(),
            services: vec![ServiceDoc {
                id: "svc_1".into(),
                name: "S".into(),
                created_at: 0,
                metrics: vec![
                    MetricDoc {
                        id: "met_1".into(),
                        name: "hits".into(),
                        unit: "hit".into(),
                        parent: None,
                        created_at: 0,
                    },
                    MetricDoc {
                        id: "met_2".into(),
                        name: "search".into(),
                        unit: "hit".into(),
                        parent: Some("hits".into()),
                        created_at: 0,
                    },
                ],
                mapping_rules: vec![MappingRuleDoc {
                    id: "mr_1".into(),
                    method: "GET".into(),
                    pattern: "/search$".into(),
                    metric: "search".into(),
                    delta: 1,
                    last: false,
                    created_at: 0,
                }],
            }],
            plans: vec![PlanDoc {
                id: "plan_1".into(),
                service_id: "svc_1".into(),
                name: "P".into(),
                state: PlanState::Published,
                setup_fee: "0".into(),
                fixed_fee: "10".into(),
                trial_days: 0,
                parent_plan_id: None,
                created_at: 0,
                limits: vec![],
                pricing_rules: vec![],
            }],
            accounts: vec![AccountDoc {
                id: "acc_1".into(),
                name: "A".into(),
                email: "a@example.com".into(),
                billing_address: BillingAddress::default(),
                vat_rate: "19".into(),
                vat_code: None,
                created_at: 0,
            }],
            applications: vec![ApplicationDoc {
                id: "app_1".into(),
                account_id: "acc_1".into(),
                plan_id: "plan_1".into(),
                name: "X".into(),
                description: String::new(),
                state: ApplicationState::Live,
                state_reason: None,
                app_id: Some("pub-1".into()),
                created_at: 0,
                trial_ends_on: None,
                keys: vec![KeyDoc {
                    id: "key_1".into(),
                    key_sha256: "a".repeat(64),
                    prefix: "tg_abcd".into(),
                    created_at: 0,
                    expires_at: None,
                }],
                app_keys: vec![AppKeyDoc {
                    id: "akey_1".into(),
                    key_sha256: "b".repeat(64),
                    created_at: 0,
                }],
            }],
        }
    }

    #[track_caller]
    fn refused(d: &Document, param: &str) {
        match validate(d) {
            Err(DomainError::Invalid { param: p, .. }) => assert_eq!(p.as_deref(), Some(param)),
            other => panic!("expected a refusal at {param}, got {other:?}"),
        }
    }

    #[test]
    fn a_sound_document_passes_and_each_broken_reference_is_named() {
        validate(&doc()).unwrap();
        let mut d = doc();
        d.format_version = 2;
        refused(&d, "format_version");
        let mut d = doc();
        d.applications[0].plan_id = "gone".into();
        refused(&d, "applications[0].plan_id");
        let mut d = doc();
        d.applications[0].account_id = "gone".into();
        refused(&d, "applications[0].account_id");
        let mut d = doc();
        d.plans[0].limits.push(LimitInput {
            metric: "nope".into(),
            period: tollgate_protocol::Period::Day,
            value: 1,
        });
        refused(&d, "plans[0].limits[0].metric");
        let mut d = doc();
        d.services[0].mapping_rules[0].pattern = "no-slash".into();
        refused(&d, "services[0].mapping_rules[0].pattern");
        let mut d = doc();
        d.services[0].metrics[1].parent = Some("search".into());
        refused(&d, "services[0].metrics[1].parent");
        // One key digest on two applications: refused, never merged.
        let mut d = doc();
        let mut twin = d.applications[0].clone();
        twin.id = "app_2".into();
        twin.app_id = None;
        twin.app_keys.clear();
        twin.keys[0].id = "key_2".into();
        d.applications.push(twin);
        refused(&d, "applications[1].keys[0].key_sha256");
        let mut d = doc();
        d.applications[0].keys[0].key_sha256 = "A".repeat(64);
        refused(&d, "applications[0].keys[0].key_sha256");
        let mut d = doc();
        d.applications[0].app_id = None;
        refused(&d, "applications[0].app_keys");
        let mut d = doc();
        d.applications[0].state_reason = Some(SuspensionReason::Admin);
        refused(&d, "applications[0].state_reason");
        let mut d = doc();
        d.services.push(d.services[0].clone());
        d.services[1].id = "svc_2".into();
        refused(&d, "services[1].name");
        let mut d = doc();
        d.applications[0].id = "svc_1".into();
        refused(&d, "applications[0].id");
        let mut d = doc();
        d.accounts[0].email = "nope".into();
        refused(&d, "accounts[0].email");
        // An API key that is also an app key would open its application for the app key's holder.
        let mut d = doc();
        d.applications[0].app_keys[0].key_sha256 = d.applications[0].keys[0].key_sha256.clone();
        refused(&d, "applications[0].keys[0].key_sha256");
        // A plan that is its own parent (or a copy's copy) could never be deleted or billed right.
        let mut d = doc();
        d.plans[0].parent_plan_id = Some(d.plans[0].id.clone());
        refused(&d, "plans[0].parent_plan_id");
        // Free service forever is not a trial.
        let mut d = doc();
        d.applications[0].trial_ends_on =
            Some(crate::domain::billing::calendar::day_of(crate::store::now()) + 3_651);
        refused(&d, "applications[0].trial_ends_on");
    }

    #[test]
    fn the_format_round_trips_and_refuses_unknown_fields() {
        let d = doc();
        let text = serde_json::to_vec(&d).unwrap();
        assert_eq!(parse(&text).unwrap(), d);
        let mut v: serde_json::Value = serde_json::from_slice(&text).unwrap();
        v["applications"][0]["surprise"] = serde_json::json!(1);
        let e = parse(&serde_json::to_vec(&v).unwrap()).unwrap_err();
        assert!(e.to_string().contains("applications[0]"), "{e}");
        assert!(parse(&text[..text.len() / 2]).is_err());
    }
}
