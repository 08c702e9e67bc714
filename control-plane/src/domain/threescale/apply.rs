//! The difference between the installation as it is and as [`super::plan::plan`] says it should
//! be, described line by line (what `--dry-run` prints) and written inside the import's
//! transaction. Objects new to the installation go through the writers of `tollgate import
//! <file>` (`domain/transfer.rs`, multi-row statements); changed ones are updated in place,
//! through the same rules the admin API applies (contracts follow a plan change or a rename).

use std::collections::{HashMap, HashSet};

use crate::domain::accounts::applications::SuspensionReason;
use crate::domain::billing::calendar::day_of;
use crate::domain::billing::contracts;
use crate::domain::catalog::check_method;
use crate::domain::transfer::{
    self, AccountColumns, AccountDoc, AppKeyDoc, ApplicationDoc, Document, KeyDoc, MappingRuleDoc,
    MetricDoc, PlanDoc, ServiceDoc,
};
use crate::domain::{DomainError, DomainResult};
use crate::store::Tx;

/// How many objects of each kind a run creates, changes or removes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Counts {
    pub services_created: usize,
    pub services_updated: usize,
    pub metrics_created: usize,
    pub metrics_updated: usize,
    pub mapping_rules_created: usize,
    pub mapping_rules_updated: usize,
    pub mapping_rules_deleted: usize,
    pub plans_created: usize,
    pub plans_updated: usize,
    pub accounts_created: usize,
    pub accounts_updated: usize,
    pub applications_created: usize,
    pub applications_updated: usize,
    pub keys_added: usize,
    pub keys_revoked: usize,
    pub app_keys_added: usize,
    pub app_keys_removed: usize,
}

impl Counts {
    /// `(name, count)` of every figure, in a stable order (the summary and the audit event).
    pub fn pairs(&self) -> [(&'static str, usize); 17] {
        [
            ("services_created", self.services_created),
            ("services_updated", self.services_updated),
            ("metrics_created", self.metrics_created),
            ("metrics_updated", self.metrics_updated),
            ("mapping_rules_created", self.mapping_rules_created),
            ("mapping_rules_updated", self.mapping_rules_updated),
            ("mapping_rules_deleted", self.mapping_rules_deleted),
            ("plans_created", self.plans_created),
            ("plans_updated", self.plans_updated),
            ("accounts_created", self.accounts_created),
            ("accounts_updated", self.accounts_updated),
            ("applications_created", self.applications_created),
            ("applications_updated", self.applications_updated),
            ("keys_added", self.keys_added),
            ("keys_revoked", self.keys_revoked),
            ("app_keys_added", self.app_keys_added),
            ("app_keys_removed", self.app_keys_removed),
        ]
    }

    pub fn is_empty(&self) -> bool {
        self.pairs().iter().all(|(_, n)| *n == 0)
    }
}

/// A changed service: its rename and what changed under it.
struct ServiceChange<'a> {
    after: &'a ServiceDoc,
    renamed_from: Option<&'a str>,
    new_metrics: Vec<MetricDoc>,
    changed_metrics: Vec<(&'a MetricDoc, &'a MetricDoc)>,
    new_rules: Vec<MappingRuleDoc>,
    changed_rules: Vec<(&'a MappingRuleDoc, &'a MappingRuleDoc)>,
    removed_rules: Vec<&'a MappingRuleDoc>,
}

/// The difference between two states of the installation.
pub struct Changes<'a> {
    new_services: Vec<&'a ServiceDoc>,
    services: Vec<ServiceChange<'a>>,
    new_plans: Vec<&'a PlanDoc>,
    changed_plans: Vec<(&'a PlanDoc, &'a PlanDoc)>,
    new_accounts: Vec<&'a AccountDoc>,
    changed_accounts: Vec<(&'a AccountDoc, &'a AccountDoc)>,
    new_apps: Vec<&'a ApplicationDoc>,
    changed_apps: Vec<(&'a ApplicationDoc, &'a ApplicationDoc)>,
    new_keys: Vec<(&'a str, &'a KeyDoc)>,
    removed_keys: Vec<(&'a str, &'a KeyDoc)>,
    new_app_keys: Vec<(&'a str, &'a AppKeyDoc)>,
    removed_app_keys: Vec<(&'a str, &'a AppKeyDoc)>,
}

fn rule_differs(a: &MappingRuleDoc, b: &MappingRuleDoc) -> bool {
    (&a.method, &a.pattern, &a.metric, a.delta, a.last)
        != (&b.method, &b.pattern, &b.metric, b.delta, b.last)
}

fn sorted<T: Clone, K: Ord>(v: &[T], key: impl Fn(&T) -> K) -> Vec<T> {
    let mut v = v.to_vec();
    v.sort_by_key(key);
    v
}

fn limits_differ(a: &PlanDoc, b: &PlanDoc) -> bool {
    let key = |l: &crate::domain::catalog::LimitInput| (l.metric.clone(), l.period.as_str());
    sorted(&a.limits, key) != sorted(&b.limits, key)
}

fn pricing_differ(a: &PlanDoc, b: &PlanDoc) -> bool {
    let key = |p: &crate::domain::catalog::PricingRuleInput| (p.metric.clone(), p.from);
    sorted(&a.pricing_rules, key) != sorted(&b.pricing_rules, key)
}

fn plan_fields_differ(a: &PlanDoc, b: &PlanDoc) -> bool {
    (&a.name, a.state, &a.setup_fee, &a.fixed_fee, a.trial_days)
        != (&b.name, b.state, &b.setup_fee, &b.fixed_fee, b.trial_days)
}

fn account_differs(a: &AccountDoc, b: &AccountDoc) -> bool {
    (
        &a.name,
        &a.email,
        &a.billing_address,
        &a.vat_rate,
        &a.vat_code,
    ) != (
        &b.name,
        &b.email,
        &b.billing_address,
        &b.vat_rate,
        &b.vat_code,
    )
}

fn app_differs(a: &ApplicationDoc, b: &ApplicationDoc) -> bool {
    (
        &a.name,
        &a.description,
        &a.plan_id,
        a.state,
        a.state_reason,
        &a.app_id,
    ) != (
        &b.name,
        &b.description,
        &b.plan_id,
        b.state,
        b.state_reason,
        &b.app_id,
    )
}

impl<'a> Changes<'a> {
    /// What turns `before` into `after` (objects are matched by id; nothing is ever removed but
    /// mapping rules, keys and app keys).
    pub fn between(before: &'a Document, after: &'a Document) -> Changes<'a> {
        let services: HashMap<&str, &ServiceDoc> =
            before.services.iter().map(|s| (s.id.as_str(), s)).collect();
        let plans: HashMap<&str, &PlanDoc> =
            before.plans.iter().map(|p| (p.id.as_str(), p)).collect();
        let accounts: HashMap<&str, &AccountDoc> =
            before.accounts.iter().map(|a| (a.id.as_str(), a)).collect();
        let apps: HashMap<&str, &ApplicationDoc> = before
            .applications
            .iter()
            .map(|a| (a.id.as_str(), a))
            .collect();
        let mut c = Changes {
            new_services: Vec::new(),
            services: Vec::new(),
            new_plans: Vec::new(),
            changed_plans: Vec::new(),
            new_accounts: Vec::new(),
            changed_accounts: Vec::new(),
            new_apps: Vec::new(),
            changed_apps: Vec::new(),
            new_keys: Vec::new(),
            removed_keys: Vec::new(),
            new_app_keys: Vec::new(),
            removed_app_keys: Vec::new(),
        };
        for s in &after.services {
            let Some(old) = services.get(s.id.as_str()) else {
                c.new_services.push(s);
                continue;
            };
            let old_metrics: HashMap<&str, &MetricDoc> =
                old.metrics.iter().map(|m| (m.id.as_str(), m)).collect();
            let old_rules: HashMap<&str, &MappingRuleDoc> = old
                .mapping_rules
                .iter()
                .map(|r| (r.id.as_str(), r))
                .collect();
            let new_rule_ids: HashSet<&str> =
                s.mapping_rules.iter().map(|r| r.id.as_str()).collect();
            let change = ServiceChange {
                after: s,
                renamed_from: (old.name != s.name).then_some(old.name.as_str()),
                new_metrics: s
                    .metrics
                    .iter()
                    .filter(|m| !old_metrics.contains_key(m.id.as_str()))
                    .cloned()
                    .collect(),
                changed_metrics: s
                    .metrics
                    .iter()
                    .filter_map(|m| old_metrics.get(m.id.as_str()).map(|o| (*o, m)))
                    .filter(|(o, m)| (&o.unit, &o.parent) != (&m.unit, &m.parent))
                    .collect(),
                new_rules: s
                    .mapping_rules
                    .iter()
                    .filter(|r| !old_rules.contains_key(r.id.as_str()))
                    .cloned()
                    .collect(),
                changed_rules: s
                    .mapping_rules
                    .iter()
                    .filter_map(|r| old_rules.get(r.id.as_str()).map(|o| (*o, r)))
                    .filter(|(o, r)| rule_differs(o, r))
                    .collect(),
                removed_rules: old
                    .mapping_rules
                    .iter()
                    .filter(|r| !new_rule_ids.contains(r.id.as_str()))
                    .collect(),
            };
            if change.renamed_from.is_some()
                || !change.new_metrics.is_empty()
                || !change.changed_metrics.is_empty()
                || !change.new_rules.is_empty()
                || !change.changed_rules.is_empty()
                || !change.removed_rules.is_empty()
            {
                c.services.push(change);
            }
        }
        for p in &after.plans {
            match plans.get(p.id.as_str()) {
                None => c.new_plans.push(p),
                Some(o)
                    if plan_fields_differ(o, p) || limits_differ(o, p) || pricing_differ(o, p) =>
                {
                    c.changed_plans.push((o, p))
                }
                Some(_) => {}
            }
        }
        for a in &after.accounts {
            match accounts.get(a.id.as_str()) {
                None => c.new_accounts.push(a),
                Some(o) if account_differs(o, a) => c.changed_accounts.push((o, a)),
                Some(_) => {}
            }
        }
        for a in &after.applications {
            let old = apps.get(a.id.as_str());
            match old {
                None => c.new_apps.push(a),
                Some(o) if app_differs(o, a) => c.changed_apps.push((o, a)),
                Some(_) => {}
            }
            let old_keys: HashSet<&str> = old
                .map(|o| o.keys.iter().map(|k| k.id.as_str()).collect())
                .unwrap_or_default();
            let new_keys: HashSet<&str> = a.keys.iter().map(|k| k.id.as_str()).collect();
            c.new_keys.extend(
                a.keys
                    .iter()
                    .filter(|k| !old_keys.contains(k.id.as_str()))
                    .map(|k| (a.id.as_str(), k)),
            );
            let old_akeys: HashSet<&str> = old
                .map(|o| o.app_keys.iter().map(|k| k.id.as_str()).collect())
                .unwrap_or_default();
            let new_akeys: HashSet<&str> = a.app_keys.iter().map(|k| k.id.as_str()).collect();
            c.new_app_keys.extend(
                a.app_keys
                    .iter()
                    .filter(|k| !old_akeys.contains(k.id.as_str()))
                    .map(|k| (a.id.as_str(), k)),
            );
            if let Some(o) = old {
                c.removed_keys.extend(
                    o.keys
                        .iter()
                        .filter(|k| !new_keys.contains(k.id.as_str()))
                        .map(|k| (a.id.as_str(), k)),
                );
                c.removed_app_keys.extend(
                    o.app_keys
                        .iter()
                        .filter(|k| !new_akeys.contains(k.id.as_str()))
                        .map(|k| (a.id.as_str(), k)),
                );
            }
        }
        c
    }

    pub fn counts(&self) -> Counts {
        let mut n = Counts {
            services_created: self.new_services.len(),
            plans_created: self.new_plans.len(),
            plans_updated: self.changed_plans.len(),
            accounts_created: self.new_accounts.len(),
            accounts_updated: self.changed_accounts.len(),
            applications_created: self.new_apps.len(),
            applications_updated: self.changed_apps.len(),
            keys_added: self.new_keys.len(),
            keys_revoked: self.removed_keys.len(),
            app_keys_added: self.new_app_keys.len(),
            app_keys_removed: self.removed_app_keys.len(),
            ..Counts::default()
        };
        for s in &self.new_services {
            n.metrics_created += s.metrics.len();
            n.mapping_rules_created += s.mapping_rules.len();
        }
        for s in &self.services {
            n.services_updated += usize::from(s.renamed_from.is_some());
            n.metrics_created += s.new_metrics.len();
            n.metrics_updated += s.changed_metrics.len();
            n.mapping_rules_created += s.new_rules.len();
            n.mapping_rules_updated += s.changed_rules.len();
            n.mapping_rules_deleted += s.removed_rules.len();
        }
        n
    }

    /// One line per change, for the terminal: ids, names and fields, never a key (keys by id and
    /// `sha256:` prefix, as the admin API lists them). `origin(id)` names an object's 3scale twin.
    pub fn describe(&self, origin: &dyn Fn(&str) -> String) -> Vec<String> {
        let mut out = Vec::new();
        for s in &self.new_services {
            out.push(format!(
                "create service {} {:?}{} with {} metric(s), {} mapping rule(s)",
                s.id,
                s.name,
                origin(&s.id),
                s.metrics.len(),
                s.mapping_rules.len()
            ));
        }
        for s in &self.services {
            let id = &s.after.id;
            if let Some(old) = s.renamed_from {
                out.push(format!(
                    "update service {id}: name {old:?} -> {:?}",
                    s.after.name
                ));
            }
            for m in &s.new_metrics {
                out.push(format!(
                    "create metric {} {:?} on service {id}{}",
                    m.id,
                    m.name,
                    origin(&m.id)
                ));
            }
            for (o, m) in &s.changed_metrics {
                out.push(format!(
                    "update metric {} {:?}: unit {:?} -> {:?}, parent {:?} -> {:?}",
                    m.id, m.name, o.unit, m.unit, o.parent, m.parent
                ));
            }
            for r in &s.removed_rules {
                out.push(format!(
                    "delete mapping rule {} {} {:?} of service {id}",
                    r.id, r.method, r.pattern
                ));
            }
            for r in &s.new_rules {
                out.push(format!(
                    "create mapping rule {} {} {:?} -> {} +{}{} on service {id}{}",
                    r.id,
                    r.method,
                    r.pattern,
                    r.metric,
                    r.delta,
                    if r.last { " (last)" } else { "" },
                    origin(&r.id)
                ));
            }
            for (o, r) in &s.changed_rules {
                out.push(format!(
                    "update mapping rule {}: {} {:?} -> {} +{} was {} {:?} -> {} +{}",
                    r.id,
                    r.method,
                    r.pattern,
                    r.metric,
                    r.delta,
                    o.method,
                    o.pattern,
                    o.metric,
                    o.delta
                ));
            }
        }
        for p in &self.new_plans {
            out.push(format!(
                "create plan {} {:?} on service {}{}: setup fee {}, fixed fee {}, trial {} day(s), {} limit(s), {} pricing rule(s)",
                p.id, p.name, p.service_id, origin(&p.id), p.setup_fee, p.fixed_fee, p.trial_days, p.limits.len(), p.pricing_rules.len()
            ));
        }
        for (o, p) in &self.changed_plans {
            let mut what = Vec::new();
            if o.name != p.name {
                what.push(format!("name {:?} -> {:?}", o.name, p.name));
            }
            if o.state != p.state {
                what.push(format!(
                    "state {} -> {}",
                    o.state.as_str(),
                    p.state.as_str()
                ));
            }
            if o.setup_fee != p.setup_fee {
                what.push(format!("setup fee {} -> {}", o.setup_fee, p.setup_fee));
            }
            if o.fixed_fee != p.fixed_fee {
                what.push(format!("fixed fee {} -> {}", o.fixed_fee, p.fixed_fee));
            }
            if o.trial_days != p.trial_days {
                what.push(format!("trial {} -> {} day(s)", o.trial_days, p.trial_days));
            }
            if limits_differ(o, p) {
                let show = |l: &[crate::domain::catalog::LimitInput]| {
                    l.iter()
                        .map(|l| format!("{}/{}={}", l.metric, l.period.as_str(), l.value))
                        .collect::<Vec<_>>()
                        .join(" ")
                };
                what.push(format!(
                    "limits [{}] -> [{}]",
                    show(&o.limits),
                    show(&p.limits)
                ));
            }
            if pricing_differ(o, p) {
                what.push(format!(
                    "pricing rules ({} -> {})",
                    o.pricing_rules.len(),
                    p.pricing_rules.len()
                ));
            }
            out.push(format!(
                "update plan {} {:?}: {}",
                p.id,
                p.name,
                what.join(", ")
            ));
        }
        for a in &self.new_accounts {
            out.push(format!(
                "create account {} {:?} <{}>{}",
                a.id,
                a.name,
                a.email,
                origin(&a.id)
            ));
        }
        for (o, a) in &self.changed_accounts {
            let mut what = Vec::new();
            if o.name != a.name {
                what.push(format!("name {:?} -> {:?}", o.name, a.name));
            }
            if o.email != a.email {
                what.push(format!("email {} -> {}", o.email, a.email));
            }
            if o.billing_address != a.billing_address {
                what.push("billing address".to_string());
            }
            if o.vat_rate != a.vat_rate {
                what.push(format!("VAT rate {} -> {}", o.vat_rate, a.vat_rate));
            }
            if o.vat_code != a.vat_code {
                what.push(format!("VAT code {:?} -> {:?}", o.vat_code, a.vat_code));
            }
            out.push(format!("update account {}: {}", a.id, what.join(", ")));
        }
        for a in &self.new_apps {
            out.push(format!(
                "create application {} {:?} of account {} on plan {}, {}{}{}",
                a.id,
                a.name,
                a.account_id,
                a.plan_id,
                a.state.as_str(),
                a.app_id
                    .as_deref()
                    .map(|p| format!(", app_id {p:?}"))
                    .unwrap_or_default(),
                origin(&a.id)
            ));
        }
        for (o, a) in &self.changed_apps {
            let mut what = Vec::new();
            if o.name != a.name {
                what.push(format!("name {:?} -> {:?}", o.name, a.name));
            }
            if o.description != a.description {
                what.push("description".to_string());
            }
            if o.plan_id != a.plan_id {
                what.push(format!("plan {} -> {}", o.plan_id, a.plan_id));
            }
            if (o.state, o.state_reason) != (a.state, a.state_reason) {
                what.push(format!(
                    "state {} -> {}",
                    o.state.as_str(),
                    a.state.as_str()
                ));
            }
            if o.app_id != a.app_id {
                what.push(format!("app_id {:?} -> {:?}", o.app_id, a.app_id));
            }
            out.push(format!("update application {}: {}", a.id, what.join(", ")));
        }
        for (app, k) in &self.removed_keys {
            out.push(format!(
                "revoke key {} {} of application {app}",
                k.id, k.prefix
            ));
        }
        for (app, k) in &self.new_keys {
            out.push(format!(
                "add key {} {} to application {app}",
                k.id, k.prefix
            ));
        }
        for (app, k) in &self.removed_app_keys {
            out.push(format!(
                "remove app key {} {} of application {app}",
                k.id,
                crate::domain::accounts::keys::digest_prefix(&k.key_sha256)
            ));
        }
        for (app, k) in &self.new_app_keys {
            out.push(format!(
                "add app key {} {} to application {app}",
                k.id,
                crate::domain::accounts::keys::digest_prefix(&k.key_sha256)
            ));
        }
        out
    }

    /// Writes the changes inside `tx` (the caller has locked what it read, bumps the revision and
    /// commits). `after` is the whole installation after them (for metric ids and trials).
    pub async fn write(&self, tx: &mut Tx, after: &Document, t: i64) -> DomainResult<()> {
        let today = day_of(t);
        transfer::insert_services(tx, &self.new_services, t).await?;
        // Renames in two steps (every renamed service to its id first), so two services may
        // swap names without meeting the unique index half-way.
        for s in &self.services {
            if s.renamed_from.is_some() {
                sqlx::query("UPDATE services SET name = $2 WHERE id = $1")
                    .bind(&s.after.id)
                    .bind(&s.after.id)
                    .execute(&mut **tx)
                    .await?;
            }
        }
        for s in &self.services {
            let sid = s.after.id.as_str();
            if s.renamed_from.is_some() {
                sqlx::query("UPDATE services SET name = $2, updated_at = $3 WHERE id = $1")
                    .bind(sid)
                    .bind(&s.after.name)
                    .bind(t)
                    .execute(&mut **tx)
                    .await?;
            }
            transfer::insert_metrics(tx, sid, &s.new_metrics, &s.after.metrics).await?;
            let ids: HashMap<&str, &str> = s
                .after
                .metrics
                .iter()
                .map(|m| (m.name.as_str(), m.id.as_str()))
                .collect();
            for (_, m) in &s.changed_metrics {
                sqlx::query("UPDATE metrics SET unit = $2, parent_id = $3 WHERE id = $1")
                    .bind(&m.id)
                    .bind(m.unit.trim())
                    .bind(m.parent.as_deref().and_then(|p| ids.get(p).copied()))
                    .execute(&mut **tx)
                    .await?;
            }
            for r in &s.removed_rules {
                sqlx::query("DELETE FROM mapping_rules WHERE id = $1")
                    .bind(&r.id)
                    .execute(&mut **tx)
                    .await?;
            }
            transfer::insert_mapping_rules(tx, sid, &s.new_rules, &s.after.metrics).await?;
            for (_, r) in &s.changed_rules {
                let metric = ids.get(r.metric.as_str()).copied().ok_or_else(|| {
                    DomainError::Internal(format!("planned rule {} lost its metric", r.id))
                })?;
                sqlx::query(
                    "UPDATE mapping_rules SET http_method = $2, pattern = $3, metric_id = $4, delta = $5, is_last = $6 WHERE id = $1",
                )
                .bind(&r.id)
                .bind(check_method(&r.method)?)
                .bind(&r.pattern)
                .bind(metric)
                .bind(i64::from(r.delta))
                .bind(i64::from(r.last))
                .execute(&mut **tx)
                .await?;
            }
        }
        let metric_ids = transfer::metric_ids_of(&after.services);
        // New plans never customize another (3scale's list does not say which they copy).
        transfer::insert_plans(tx, &self.new_plans, &metric_ids, t).await?;
        for (o, p) in &self.changed_plans {
            sqlx::query(
                "UPDATE plans SET name = $2, state = $3, setup_fee = $4, fixed_fee = $5, trial_days = $6, updated_at = $7 WHERE id = $1",
            )
            .bind(&p.id)
            .bind(&p.name)
            .bind(p.state.as_str())
            .bind(&p.setup_fee)
            .bind(&p.fixed_fee)
            .bind(p.trial_days)
            .bind(t)
            .execute(&mut **tx)
            .await?;
            let metrics = metric_ids
                .get(p.service_id.as_str())
                .ok_or_else(|| DomainError::Internal("planned plan lost its service".into()))?;
            let (limits, pricing) = (limits_differ(o, p), pricing_differ(o, p));
            if limits {
                sqlx::query("DELETE FROM plan_limits WHERE plan_id = $1")
                    .bind(&p.id)
                    .execute(&mut **tx)
                    .await?;
            }
            if pricing {
                sqlx::query("DELETE FROM pricing_rules WHERE plan_id = $1")
                    .bind(&p.id)
                    .execute(&mut **tx)
                    .await?;
            }
            transfer::insert_plan_rules(
                tx,
                &p.id,
                if limits { &p.limits } else { &[] },
                if pricing { &p.pricing_rules } else { &[] },
                metrics,
            )
            .await?;
        }
        transfer::insert_accounts(tx, &self.new_accounts, t).await?;
        for (_, a) in &self.changed_accounts {
            let c = AccountColumns::of(a)?;
            sqlx::query(
                "UPDATE accounts SET name = $2, email = $3, billing_address = $4, vat_rate = $5, vat_code = $6, updated_at = $7 WHERE id = $1",
            )
            .bind(&a.id)
            .bind(&c.name)
            .bind(&c.email)
            .bind(&c.billing_address)
            .bind(&c.vat_rate)
            .bind(&c.vat_code)
            .bind(t)
            .execute(&mut **tx)
            .await?;
        }
        let trial_days: HashMap<&str, i64> = after
            .plans
            .iter()
            .map(|p| (p.id.as_str(), p.trial_days))
            .collect();
        // Keys and app ids leave before any arrives (3scale may have moved one between
        // applications in one run).
        for (_, k) in &self.removed_keys {
            sqlx::query("DELETE FROM application_keys WHERE id = $1")
                .bind(&k.id)
                .execute(&mut **tx)
                .await?;
        }
        for (_, k) in &self.removed_app_keys {
            sqlx::query("DELETE FROM application_app_keys WHERE id = $1")
                .bind(&k.id)
                .execute(&mut **tx)
                .await?;
        }
        for (o, a) in &self.changed_apps {
            if o.app_id.is_some() && o.app_id != a.app_id {
                sqlx::query("UPDATE applications SET app_id = NULL WHERE id = $1")
                    .bind(&a.id)
                    .execute(&mut **tx)
                    .await?;
            }
        }
        transfer::insert_applications(tx, &self.new_apps, &trial_days, today, t).await?;
        for (o, a) in &self.changed_apps {
            sqlx::query(
                "UPDATE applications SET name = $2, description = $3, state = $4, state_reason = $5, updated_at = $6 WHERE id = $1",
            )
            .bind(&a.id)
            .bind(&a.name)
            .bind(&a.description)
            .bind(a.state.as_str())
            .bind(a.state_reason.map(SuspensionReason::as_str))
            .bind(t)
            .execute(&mut **tx)
            .await?;
            if o.name != a.name {
                contracts::rename(tx, &a.id, &a.name).await?;
            }
            if o.plan_id != a.plan_id {
                sqlx::query("UPDATE applications SET plan_id = $2 WHERE id = $1")
                    .bind(&a.id)
                    .bind(&a.plan_id)
                    .execute(&mut **tx)
                    .await?;
                // Billed as a plan change in the API: the old contract ends today, the new
                // starts today, the trial is not restarted.
                contracts::change_plan(tx, &a.id, &a.plan_id, t).await?;
            }
            if a.app_id.is_some() && o.app_id != a.app_id {
                sqlx::query("UPDATE applications SET app_id = $2 WHERE id = $1")
                    .bind(&a.id)
                    .bind(&a.app_id)
                    .execute(&mut **tx)
                    .await?;
            }
        }
        transfer::insert_keys(tx, &self.new_keys).await?;
        transfer::insert_app_keys(tx, &self.new_app_keys).await?;
        Ok(())
    }
}
