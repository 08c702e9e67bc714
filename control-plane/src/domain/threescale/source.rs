//! What `tollgate import 3scale` reads from a tenant: the shapes of porta's JSON (each type names
//! the representer it was taken from, under porta's `app/representers/`), and [`fetch`], which
//! reads them all into a [`Tenant`].
//!
//! Plaintext keys (`user_key`, app keys) are turned into their SHA-256 where they are read
//! ([`Key::from_value`]) and never kept, printed or logged; only the digest and what a gateway
//! would say of the value (too short, unreadable) travel on.

use std::collections::HashMap;
use std::future::Future;
use std::sync::Arc;

use serde::{Deserialize, Deserializer};

use super::client::{Client, SourceError};

/// Requests in flight at once while reading per-object details (users, app keys, plan limits).
pub const DEFAULT_CONCURRENCY: usize = 4;
pub const MAX_CONCURRENCY: usize = 16;

/// A decimal as 3scale sends it: a string (`"0.0100"`, BigDecimal columns such as
/// `cost_per_unit` and `vat_rate`) or a JSON number (`setup_fee` and `cost_per_month`, which
/// `app/representers/plan_representer.rb` turns `to_f`). Kept as the decimal text it was sent
/// as and parsed into `Decimal` by the mapping, never computed with as a float: a number is
/// taken by the shortest text that reads back as the same double, which is what Ruby printed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DecimalText(pub String);

impl<'de> Deserialize<'de> for DecimalText {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        match serde_json::Value::deserialize(d)? {
            serde_json::Value::String(s) => Ok(DecimalText(s)),
            serde_json::Value::Number(n) => Ok(DecimalText(n.to_string())),
            _ => Err(serde::de::Error::custom(
                "expected a decimal string or number",
            )),
        }
    }
}

/// A key value as read: its SHA-256 and what a gateway would say of it. The value itself is
/// dropped here.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Key {
    /// Lowercase hex SHA-256 of the value.
    pub sha256: String,
    /// Characters in the value (its length is checked; the value is gone).
    pub chars: usize,
    /// Why a gateway would refuse to read it (control characters, over 256 bytes), if it would.
    pub unreadable: Option<&'static str>,
}

impl Key {
    pub fn from_value(value: &str) -> Key {
        Key {
            sha256: crate::secrets::sha256_hex(value),
            chars: value.chars().count(),
            unreadable: tollgate_rules::names::credential_problem(value.as_bytes()),
        }
    }
}

/// A key in a JSON answer: deserialized straight into a [`Key`]; an error never quotes it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KeyField(pub Key);

impl<'de> Deserialize<'de> for KeyField {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        match serde_json::Value::deserialize(d)? {
            serde_json::Value::String(s) => Ok(KeyField(Key::from_value(&s))),
            _ => Err(serde::de::Error::custom("expected a string")),
        }
    }
}

/// `app/representers/service_representer.rb`.
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
pub struct Service {
    pub id: u64,
    pub name: String,
    #[serde(default)]
    pub system_name: String,
    /// `proxy.authentication_method`: `"1"` (API key: `user_key`), `"2"` (App ID and App Key),
    /// `"oauth"`, `"oidc"` (`ServiceRepresenter#backend_version`).
    #[serde(default)]
    pub backend_version: Option<String>,
    /// `incomplete`, `hidden`, `offline`, `published`, or `deleted` (`app/models/service.rb`).
    #[serde(default)]
    pub state: Option<String>,
    #[serde(default)]
    pub created_at: Option<String>,
}

/// `app/representers/metric_representer.rb` (a method has `parent_id`, no `unit`) and
/// `method_representer.rb`. `name` is the system name (`Metric#name`, `app/models/metric.rb`).
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
pub struct Metric {
    pub id: u64,
    #[serde(default)]
    pub system_name: Option<String>,
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub friendly_name: Option<String>,
    #[serde(default)]
    pub unit: Option<String>,
    #[serde(default)]
    pub parent_id: Option<u64>,
    #[serde(default)]
    pub created_at: Option<String>,
}

impl Metric {
    /// The system name, which 3scale never changes after creation.
    pub fn system_name(&self) -> &str {
        self.system_name
            .as_deref()
            .or(self.name.as_deref())
            .unwrap_or("")
    }
}

/// `app/representers/proxy_rule_representer.rb` (`ProxyRuleRepresenter::JSON`).
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
pub struct MappingRule {
    pub id: u64,
    pub metric_id: u64,
    pub pattern: String,
    pub http_method: String,
    pub delta: i64,
    #[serde(default)]
    pub position: Option<i64>,
    #[serde(default)]
    pub last: Option<bool>,
    /// APIcast's "proxy pro" redirect (rendered only for such services).
    #[serde(default)]
    pub redirect_url: Option<String>,
    #[serde(default)]
    pub created_at: Option<String>,
}

/// `app/representers/proxy_representer.rb` (the part the importer reports on).
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
pub struct Proxy {
    /// `headers`, `query` or `authorization` (Basic).
    #[serde(default)]
    pub credentials_location: Option<String>,
    #[serde(default)]
    pub auth_user_key: Option<String>,
    #[serde(default)]
    pub auth_app_id: Option<String>,
    #[serde(default)]
    pub auth_app_key: Option<String>,
    #[serde(default)]
    pub api_backend: Option<String>,
    /// `app/representers/policy_config_representer.rb`: `{name, version, configuration, enabled}`.
    #[serde(default)]
    pub policies_config: Option<Vec<PolicyConfig>>,
}

#[derive(Clone, Debug, Deserialize, PartialEq)]
pub struct PolicyConfig {
    pub name: String,
    #[serde(default)]
    pub version: Option<String>,
    #[serde(default)]
    pub enabled: Option<bool>,
}

/// `app/representers/backend_api_config_representer.rb`.
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
pub struct BackendUsage {
    pub id: u64,
    #[serde(default)]
    pub path: Option<String>,
    #[serde(default)]
    pub backend_id: Option<u64>,
}

/// `app/representers/application_plan_representer.rb` with `plan_representer.rb`.
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
pub struct Plan {
    pub id: u64,
    pub name: String,
    /// `hidden` or `published` (`app/models/plan.rb`'s state machine).
    #[serde(default)]
    pub state: Option<String>,
    #[serde(default)]
    pub setup_fee: Option<DecimalText>,
    #[serde(default)]
    pub cost_per_month: Option<DecimalText>,
    #[serde(default)]
    pub trial_period_days: Option<i64>,
    /// A plan customized for one application (`Plan#customized?`).
    #[serde(default)]
    pub custom: Option<bool>,
    #[serde(default)]
    pub system_name: Option<String>,
    #[serde(default)]
    pub approval_required: Option<bool>,
    #[serde(default)]
    pub cancellation_period: Option<i64>,
    #[serde(default)]
    pub created_at: Option<String>,
}

/// `app/representers/usage_limit_representer.rb`; `period` one of
/// `ThreeScale::Core::UsageLimit::PERIODS` (eternity, year, month, week, day, hour, minute).
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
pub struct Limit {
    pub id: u64,
    pub period: String,
    pub value: i64,
    pub metric_id: u64,
}

/// `app/representers/pricing_rule_representer.rb`: `min`..`max` (inclusive, `max` null: no
/// end), each unit at `cost_per_unit` (`PricingRule#cost_for_value`: graduated).
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
pub struct PricingRule {
    pub id: u64,
    pub metric_id: u64,
    pub cost_per_unit: DecimalText,
    pub min: i64,
    #[serde(default)]
    pub max: Option<i64>,
}

/// `app/representers/account_representer.rb`; the fields defined for accounts
/// (`fields_representer.rb`: `org_name`, `vat_rate`, `vat_code`, `billing_address`, ...) appear
/// only when the provider defined them.
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
pub struct Account {
    pub id: u64,
    #[serde(default)]
    pub org_name: Option<String>,
    /// `created`, `pending`, `approved`, `rejected`, `suspended` (`app/models/account/states.rb`).
    #[serde(default)]
    pub state: Option<String>,
    #[serde(default)]
    pub vat_rate: Option<DecimalText>,
    #[serde(default)]
    pub vat_code: Option<String>,
    /// `Account::BillingAddress::Address#to_hash` (`app/models/account/billing_address.rb`).
    #[serde(default)]
    pub billing_address: Option<BillingAddress>,
    #[serde(default)]
    pub created_at: Option<String>,
}

#[derive(Clone, Debug, Default, Deserialize, PartialEq, Eq)]
pub struct BillingAddress {
    #[serde(default)]
    pub company: Option<String>,
    #[serde(default)]
    pub address1: Option<String>,
    #[serde(default)]
    pub address2: Option<String>,
    #[serde(default)]
    pub city: Option<String>,
    /// The country's code as the billing address form stores it
    /// (`app/views/shared/_billing_address_fields.html.erb`: `[c.name, c.code]`).
    #[serde(default)]
    pub country: Option<String>,
    #[serde(default)]
    pub state: Option<String>,
    #[serde(default)]
    pub zip: Option<String>,
}

/// `app/representers/user_representer.rb` (with the `email` field).
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
pub struct User {
    pub id: u64,
    #[serde(default)]
    pub email: Option<String>,
    /// `admin` or `member`.
    #[serde(default)]
    pub role: Option<String>,
    #[serde(default)]
    pub state: Option<String>,
}

/// `app/representers/cinstance_representer.rb`: `user_key` for API key services
/// (`backend_version` 1), `application_id` for the others; `name` and `description` are
/// application fields (`fields_representer.rb`).
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
pub struct Application {
    pub id: u64,
    /// `pending`, `live` or `suspended` (`app/models/contract/states.rb`).
    pub state: String,
    pub service_id: u64,
    pub plan_id: u64,
    pub account_id: u64,
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub description: Option<String>,
    #[serde(default)]
    pub user_key: Option<KeyField>,
    #[serde(default)]
    pub application_id: Option<String>,
    #[serde(default)]
    pub created_at: Option<String>,
}

/// `app/representers/application_key_representer.rb`.
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
pub struct AppKeyItem {
    pub value: KeyField,
}

/// A service with everything read under it.
#[derive(Clone, Debug)]
pub struct ServiceData {
    pub service: Service,
    /// Metrics and methods (merged from `metrics.json` and the methods of `hits`), by id.
    pub metrics: Vec<Metric>,
    pub mapping_rules: Vec<MappingRule>,
    pub proxy: Option<Proxy>,
    pub backend_usages: Vec<BackendUsage>,
    pub plans: Vec<PlanData>,
}

#[derive(Clone, Debug)]
pub struct PlanData {
    pub plan: Plan,
    pub limits: Vec<Limit>,
    pub pricing_rules: Vec<PricingRule>,
}

#[derive(Clone, Debug)]
pub struct AccountData {
    pub account: Account,
    /// Its first admin user's address (else its first user's).
    pub email: Option<String>,
    /// Why its users could not be read, when they could not.
    pub users_problem: Option<String>,
}

#[derive(Clone, Debug)]
pub struct ApplicationData {
    pub application: Application,
    /// App keys (App ID and App Key services only).
    pub app_keys: Vec<Key>,
    /// Why its app keys could not be read, when they could not.
    pub keys_problem: Option<String>,
}

/// A whole tenant as read.
#[derive(Clone, Debug, Default)]
pub struct Tenant {
    pub services: Vec<ServiceData>,
    pub accounts: Vec<AccountData>,
    pub applications: Vec<ApplicationData>,
}

/// What [`fetch`] reports as it goes: `(what, done, of)`.
pub type Progress<'a> = &'a (dyn Fn(&str, u64, u64) + Sync);

/// Runs `work` for every item, at most `limit` at once, results in the items' order; the first
/// error stops the rest.
async fn each<I, T, F, Fut>(
    client: &Arc<Client>,
    items: Vec<I>,
    limit: usize,
    what: &str,
    progress: Progress<'_>,
    work: F,
) -> Result<Vec<T>, SourceError>
where
    I: Send + 'static,
    T: Send + 'static,
    F: Fn(Arc<Client>, I) -> Fut,
    Fut: Future<Output = Result<T, SourceError>> + Send + 'static,
{
    let total = items.len() as u64;
    let step = (total / 20).max(1);
    let gate = Arc::new(tokio::sync::Semaphore::new(limit.clamp(1, MAX_CONCURRENCY)));
    let mut set = tokio::task::JoinSet::new();
    let mut out: Vec<Option<T>> = Vec::with_capacity(items.len());
    out.resize_with(items.len(), || None);
    let mut done = 0u64;
    let mut collect = |joined: Result<(usize, Result<T, SourceError>), tokio::task::JoinError>,
                       out: &mut Vec<Option<T>>|
     -> Result<(), SourceError> {
        let (i, result) = joined.map_err(|e| SourceError::Transport {
            path: what.to_string(),
            detail: format!("a reader task failed: {e}"),
        })?;
        out[i] = Some(result?);
        done += 1;
        if done.is_multiple_of(step) || done == total {
            progress(what, done, total);
        }
        Ok(())
    };
    for (i, item) in items.into_iter().enumerate() {
        let permit = gate
            .clone()
            .acquire_owned()
            .await
            .map_err(|e| SourceError::Transport {
                path: what.to_string(),
                detail: e.to_string(),
            })?;
        let job = work(client.clone(), item);
        set.spawn(async move {
            let r = job.await;
            drop(permit);
            (i, r)
        });
        while let Some(joined) = set.try_join_next() {
            if let Err(e) = collect(joined, &mut out) {
                set.abort_all();
                return Err(e);
            }
        }
    }
    while let Some(joined) = set.join_next().await {
        if let Err(e) = collect(joined, &mut out) {
            set.abort_all();
            return Err(e);
        }
    }
    out.into_iter()
        .map(|t| {
            t.ok_or_else(|| SourceError::Transport {
                path: what.to_string(),
                detail: "a reader task gave no result".into(),
            })
        })
        .collect()
}

/// A per-object read that may find the object gone (deleted in 3scale while the import reads) or
/// not readable with this token: `Ok(Err(why))`, reported, not fatal.
fn tolerated<T>(r: Result<T, SourceError>) -> Result<Result<T, String>, SourceError> {
    match r {
        Ok(v) => Ok(Ok(v)),
        Err(SourceError::NotFound { path }) => Ok(Err(format!("{path} answered 404 (deleted in 3scale while this import read it?)"))),
        Err(SourceError::AccessDenied { path, status }) => Ok(Err(format!(
            "{path} answered {status}: the token's user may not read it (3scale lists an account's users only where multiple users are enabled)"
        ))),
        Err(e) => Err(e),
    }
}

async fn fetch_service(c: Arc<Client>, service: Service) -> Result<ServiceData, SourceError> {
    let sid = service.id;
    let quiet = &|_: u64, _: u64| {};
    let metrics: Vec<Metric> = c
        .list(
            &format!("/admin/api/services/{sid}/metrics.json"),
            "metrics",
            "metric",
            quiet,
        )
        .await?;
    let mut by_id: HashMap<u64, Metric> = metrics.into_iter().map(|m| (m.id, m)).collect();
    // Only `hits` has methods (`Metric#only_hits_has_children`); `metrics.json` lists them too
    // (with `parent_id`), `methods.json` is read as well in case a version does not.
    if let Some(hits) = by_id
        .values()
        .find(|m| m.system_name() == "hits")
        .map(|m| m.id)
    {
        let methods: Vec<Metric> = c
            .list(
                &format!("/admin/api/services/{sid}/metrics/{hits}/methods.json"),
                "methods",
                "method",
                quiet,
            )
            .await?;
        for mut m in methods {
            m.parent_id = m.parent_id.or(Some(hits));
            by_id.entry(m.id).or_insert(m);
        }
    }
    let mut metrics: Vec<Metric> = by_id.into_values().collect();
    metrics.sort_by_key(|m| m.id);
    let mut mapping_rules: Vec<MappingRule> = c
        .list(
            &format!("/admin/api/services/{sid}/proxy/mapping_rules.json"),
            "mapping_rules",
            "mapping_rule",
            quiet,
        )
        .await?;
    // Evaluation order: by position, then id (`proxy.proxy_rules` is ordered by position).
    mapping_rules.sort_by_key(|r| (r.position.unwrap_or(i64::MAX), r.id));
    let proxy = tolerated(
        c.one::<Proxy>(&format!("/admin/api/services/{sid}/proxy.json"), "proxy")
            .await,
    )?
    .ok();
    let backend_usages = tolerated(
        c.list(
            &format!("/admin/api/services/{sid}/backend_usages.json"),
            "backend_usages",
            "backend_usage",
            quiet,
        )
        .await,
    )?
    .unwrap_or_default();
    let plans: Vec<Plan> = c
        .list(
            &format!("/admin/api/services/{sid}/application_plans.json"),
            "plans",
            "application_plan",
            quiet,
        )
        .await?;
    let mut out = Vec::with_capacity(plans.len());
    for plan in plans {
        let pid = plan.id;
        let limits = c
            .list(
                &format!("/admin/api/application_plans/{pid}/limits.json"),
                "limits",
                "limit",
                quiet,
            )
            .await?;
        let pricing_rules = c
            .list(
                &format!("/admin/api/application_plans/{pid}/pricing_rules.json"),
                "pricing_rules",
                "pricing_rule",
                quiet,
            )
            .await?;
        out.push(PlanData {
            plan,
            limits,
            pricing_rules,
        });
    }
    Ok(ServiceData {
        service,
        metrics,
        mapping_rules,
        proxy,
        backend_usages,
        plans: out,
    })
}

async fn fetch_account(c: Arc<Client>, account: Account) -> Result<AccountData, SourceError> {
    let path = format!("/admin/api/accounts/{}/users.json", account.id);
    let quiet = &|_: u64, _: u64| {};
    let users = tolerated(c.list::<User>(&path, "users", "user", quiet).await)?;
    let (email, users_problem) = match users {
        Ok(users) => {
            let pick = users
                .iter()
                .filter(|u| u.email.as_deref().is_some_and(|e| !e.trim().is_empty()))
                .min_by_key(|u| (u.role.as_deref() != Some("admin"), u.id));
            match pick {
                Some(u) => (u.email.clone(), None),
                None => (
                    None,
                    Some("the account has no user with an e-mail address".into()),
                ),
            }
        }
        Err(why) => (None, Some(why)),
    };
    Ok(AccountData {
        account,
        email,
        users_problem,
    })
}

async fn fetch_app_keys(c: Arc<Client>, app: Application) -> Result<ApplicationData, SourceError> {
    let path = format!(
        "/admin/api/accounts/{}/applications/{}/keys.json",
        app.account_id, app.id
    );
    let quiet = &|_: u64, _: u64| {};
    let keys = tolerated(c.list::<AppKeyItem>(&path, "keys", "key", quiet).await)?;
    Ok(match keys {
        Ok(keys) => ApplicationData {
            application: app,
            app_keys: keys.into_iter().map(|k| k.value.0).collect(),
            keys_problem: None,
        },
        Err(why) => ApplicationData {
            application: app,
            app_keys: Vec::new(),
            keys_problem: Some(why),
        },
    })
}

/// Reads the whole tenant: services (each with metrics and methods, mapping rules, proxy,
/// backend usages, application plans with limits and pricing rules), accounts (with an e-mail
/// address from their users) and applications (with app keys where the service uses App ID and
/// App Key). Objects are de-duplicated by id: offset paging over a list that changes while it is
/// read can show one twice.
pub async fn fetch(
    client: Arc<Client>,
    concurrency: usize,
    progress: Progress<'_>,
) -> Result<Tenant, SourceError> {
    let services: Vec<Service> = client
        .list(
            "/admin/api/services.json",
            "services",
            "service",
            &|n, of| progress("service pages", n, of),
        )
        .await?;
    let services = dedup(services, |s| s.id)
        .into_iter()
        .filter(|s| s.state.as_deref() != Some("deleted"))
        .collect();
    let services = each(
        &client,
        services,
        concurrency,
        "services",
        progress,
        fetch_service,
    )
    .await?;
    let accounts: Vec<Account> = client
        .list(
            "/admin/api/accounts.json",
            "accounts",
            "account",
            &|n, of| progress("account pages", n, of),
        )
        .await?;
    let accounts = each(
        &client,
        dedup(accounts, |a| a.id),
        concurrency,
        "accounts (users)",
        progress,
        fetch_account,
    )
    .await?;
    let apps: Vec<Application> = client
        .list(
            "/admin/api/applications.json",
            "applications",
            "application",
            &|n, of| progress("application pages", n, of),
        )
        .await?;
    let pair_services: std::collections::HashSet<u64> = services
        .iter()
        .filter(|s: &&ServiceData| s.service.backend_version.as_deref() == Some("2"))
        .map(|s| s.service.id)
        .collect();
    let (pairs, singles): (Vec<Application>, Vec<Application>) = dedup(apps, |a| a.id)
        .into_iter()
        .partition(|a| pair_services.contains(&a.service_id));
    let mut applications = each(
        &client,
        pairs,
        concurrency,
        "applications (app keys)",
        progress,
        fetch_app_keys,
    )
    .await?;
    applications.extend(singles.into_iter().map(|a| ApplicationData {
        application: a,
        app_keys: Vec::new(),
        keys_problem: None,
    }));
    applications.sort_by_key(|a| a.application.id);
    Ok(Tenant {
        services,
        accounts,
        applications,
    })
}

fn dedup<T>(items: Vec<T>, id: impl Fn(&T) -> u64) -> Vec<T> {
    let mut seen = std::collections::HashSet::new();
    items.into_iter().filter(|i| seen.insert(id(i))).collect()
}

/// Unix seconds of an `xmlschema` time (`2019-02-08T18:23:04Z`, `2019-02-08T19:23:04+01:00`,
/// fractions ignored), as porta renders `created_at`; `None` for anything else.
pub fn parse_time(s: &str) -> Option<i64> {
    let b = s.as_bytes();
    if b.len() < 20
        || b[4] != b'-'
        || b[7] != b'-'
        || b[10] != b'T'
        || b[13] != b':'
        || b[16] != b':'
    {
        return None;
    }
    let num = |r: std::ops::Range<usize>| -> Option<i64> {
        let part = s.get(r)?;
        part.bytes()
            .all(|c| c.is_ascii_digit())
            .then(|| part.parse().ok())?
    };
    let (y, mo, d) = (num(0..4)?, num(5..7)?, num(8..10)?);
    let (h, mi, se) = (num(11..13)?, num(14..16)?, num(17..19)?);
    if !(1..=12).contains(&mo) || !(1..=31).contains(&d) || h > 23 || mi > 59 || se > 60 {
        return None;
    }
    let mut rest = &s[19..];
    if let Some(frac) = rest.strip_prefix('.') {
        let digits = frac.bytes().take_while(u8::is_ascii_digit).count();
        rest = &frac[digits..];
    }
    let offset = match rest {
        "Z" | "z" => 0,
        _ => {
            let sign = match rest.as_bytes().first()? {
                b'+' => 1,
                b'-' => -1,
                _ => return None,
            };
            let t = &rest[1..];
            if t.len() != 5 || t.as_bytes()[2] != b':' {
                return None;
            }
            let oh: i64 = t[..2].parse().ok()?;
            let om: i64 = t[3..].parse().ok()?;
            sign * (oh * 3600 + om * 60)
        }
    };
    let days = tollgate_rules::periods::days_from_civil(y, mo as u32, d as u32);
    Some(days * 86_400 + h * 3600 + mi * 60 + se - offset)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_as_porta_renders_them() {
        assert_eq!(parse_time("1970-01-01T00:00:00Z"), Some(0));
        assert_eq!(parse_time("2019-02-08T18:23:04Z"), Some(1_549_650_184));
        assert_eq!(parse_time("2019-02-08T19:23:04+01:00"), Some(1_549_650_184));
        assert_eq!(parse_time("2019-02-08T18:23:04.123Z"), Some(1_549_650_184));
        for bad in [
            "",
            "2019-02-08",
            "2019-13-08T18:23:04Z",
            "2019-02-08T18:23:04",
            "x019-02-08T18:23:04Z",
        ] {
            assert_eq!(parse_time(bad), None, "{bad}");
        }
    }

    /// Answers shaped as porta renders them (representers named on each type), links and fields
    /// the importer does not read included: they parse, unknown fields are ignored.
    #[test]
    fn porta_answers_parse() {
        use crate::domain::threescale::client::parse_page;
        let plans = br#"{"plans":[{"application_plan":{"id":7,"name":"Basic","state":"published",
            "setup_fee":9.99,"cost_per_month":19.0,"trial_period_days":7,"cancellation_period":0,
            "approval_required":false,"default":false,"created_at":"2024-01-02T03:04:05Z",
            "updated_at":"2024-01-02T03:04:05Z","custom":false,"system_name":"basic",
            "links":[{"rel":"service","href":"https://t-admin.example.com/admin/api/services/2"}]}}]}"#;
        let p: Vec<Plan> = parse_page("/p", plans, "plans", "application_plan")
            .unwrap()
            .items;
        assert_eq!(p[0].setup_fee, Some(DecimalText("9.99".into())));
        assert_eq!(p[0].cost_per_month, Some(DecimalText("19.0".into())));
        let rules =
            br#"{"pricing_rules":[{"pricing_rule":{"id":1,"metric_id":2,"cost_per_unit":"0.0100",
            "min":1,"max":null,"created_at":"x","updated_at":"x","links":[]}}]}"#;
        let r: Vec<PricingRule> = parse_page("/r", rules, "pricing_rules", "pricing_rule")
            .unwrap()
            .items;
        assert_eq!((r[0].cost_per_unit.0.as_str(), r[0].max), ("0.0100", None));
        let methods = br#"{"methods":[{"method":{"id":5,"name":"search","system_name":"search",
            "friendly_name":"Search","description":"","parent_id":4,"created_at":"x","updated_at":"x"}}]}"#;
        let m: Vec<Metric> = parse_page("/m", methods, "methods", "method")
            .unwrap()
            .items;
        assert_eq!(
            (m[0].system_name(), m[0].parent_id, m[0].unit.as_deref()),
            ("search", Some(4), None)
        );
        let accounts = br#"{"accounts":[{"account":{"id":3,"created_at":"2024-01-02T03:04:05Z",
            "updated_at":"x","credit_card_stored":false,"monthly_billing_enabled":true,
            "monthly_charging_enabled":true,"state":"approved","links":[],"org_name":"Acme",
            "vat_rate":"19.0","billing_address":{"company":"Acme","address":"1 Main St",
            "address1":"1 Main St","address2":null,"phone_number":null,"city":"Berlin",
            "country":"DE","state":null,"zip":"10115"}}}],
            "metadata":{"per_page":1,"total_entries":2,"total_pages":2,"current_page":1}}"#;
        let page = parse_page::<Account>("/a", accounts, "accounts", "account").unwrap();
        assert_eq!(page.paging.map(|p| p.total_pages), Some(2));
        let a = &page.items[0];
        assert_eq!(
            a.billing_address.as_ref().and_then(|b| b.zip.as_deref()),
            Some("10115")
        );
        let apps = br#"{"applications":[{"application":{"id":9,"state":"live","enabled":true,
            "created_at":"2024-01-02T03:04:05Z","updated_at":"x","service_id":2,"service_name":"S",
            "plan_id":7,"plan_name":"Basic","account_id":3,"org_name":"Acme","first_traffic_at":null,
            "first_daily_traffic_at":null,"application_id":"3a7f21c9","links":[],"name":"Mobile",
            "description":"d"}}]}"#;
        let x: Vec<Application> = parse_page("/x", apps, "applications", "application")
            .unwrap()
            .items;
        assert_eq!(
            (x[0].application_id.as_deref(), x[0].user_key.is_none()),
            (Some("3a7f21c9"), true)
        );
        let keys = br#"{"keys":[{"key":{"value":"a9b8c7d6e5f4a3b2c1d0e9f8a7b6c5d4","created_at":"x","updated_at":"x","links":[]}}]}"#;
        let k: Vec<AppKeyItem> = parse_page("/k", keys, "keys", "key").unwrap().items;
        assert_eq!(
            k[0].value.0.sha256,
            crate::secrets::sha256_hex("a9b8c7d6e5f4a3b2c1d0e9f8a7b6c5d4")
        );
        let proxy = br#"{"proxy":{"service_id":2,"credentials_location":"headers","auth_user_key":"user-key",
            "policies_config":[{"name":"apicast","version":"builtin","configuration":{},"enabled":true}]}}"#;
        let p: Proxy = crate::domain::threescale::client::parse_one("/p", proxy, "proxy").unwrap();
        assert_eq!(p.policies_config.map(|c| c.len()), Some(1));
    }

    #[test]
    fn decimals_stay_text_and_keys_become_digests() {
        #[derive(Deserialize)]
        struct Fees {
            a: DecimalText,
            b: DecimalText,
            c: DecimalText,
        }
        let f: Fees = serde_json::from_str(r#"{"a": 10.0, "b": "0.0100", "c": 0.1}"#).unwrap();
        assert_eq!(
            (f.a.0.as_str(), f.b.0.as_str(), f.c.0.as_str()),
            ("10.0", "0.0100", "0.1")
        );
        let app: Application = serde_json::from_str(
            r#"{"id": 1, "state": "live", "service_id": 2, "plan_id": 3, "account_id": 4,
                "user_key": "4e7b7b09fb75bcb3f72459a336100dab"}"#,
        )
        .unwrap();
        let key = app.user_key.unwrap().0;
        assert_eq!(
            key.sha256,
            crate::secrets::sha256_hex("4e7b7b09fb75bcb3f72459a336100dab")
        );
        assert_eq!((key.chars, key.unreadable), (32, None));
        assert!(!format!("{:?}", Key::from_value("secret-value-1234")).contains("secret-value"));
        // A key of the wrong type is refused without quoting what was there.
        let e = serde_json::from_str::<Application>(
            r#"{"id": 1, "state": "live", "service_id": 2, "plan_id": 3, "account_id": 4, "user_key": 12345678}"#,
        )
        .unwrap_err();
        assert!(!e.to_string().contains("12345678"), "{e}");
    }
}
