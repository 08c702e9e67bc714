//! From a [`Tenant`] to the installation it should become: pure (no I/O), so every mapping rule
//! is tested natively. [`plan`] starts from the installation as it is (a [`Document`] read in the
//! import's transaction) and the links of earlier runs, and returns the installation as it
//! should be after this run, the links after it, and a [`Note`] for every 3scale object or field
//! that was not carried, with the reason. What the import writes is the difference
//! (`apply.rs`); with nothing changed in 3scale, the result equals the input, so a second run
//! writes nothing.
//!
//! Rules (docs/migrate-from-3scale.md has the table):
//! - A 3scale object is found again by its link (kind + 3scale id), never by name; a twin is
//!   updated field by field to what 3scale says now.
//! - Nothing is deleted in Tollgate because it is gone from 3scale: services, metrics, plans and
//!   accounts stay (billing history refers to them; a list read while 3scale changes can miss an
//!   object); an application gone from 3scale is suspended (its keys stop opening it, as in
//!   3scale) and reported. Keys and mapping rules do follow 3scale exactly: a key revoked there
//!   is revoked here, a rule set is replaced when it changed.
//! - A twin deleted in Tollgate is not made again (the operator's decision), and a key revoked in
//!   Tollgate is never added again while 3scale still has it: both are reported every run.
//! - Tollgate's own facts win: an application suspended here for non-payment stays suspended,
//!   one moved here to a customized copy of its plan stays on the copy.

use std::collections::{HashMap, HashSet};

use tollgate_protocol::Period;

use super::source::{DecimalText, Key, Tenant};
use crate::domain::accounts::applications::{
    check_app_id, ApplicationState, SuspensionReason, MAX_DESCRIPTION_CHARS,
};
use crate::domain::accounts::keys::{
    digest_prefix, MAX_ACTIVE_KEYS, MAX_LIVE_KEYS, MIN_IMPORTED_KEY_CHARS,
};
use crate::domain::accounts::{account, app_keys::MAX_APP_KEYS, check_email, BillingAddress};
use crate::domain::billing::calendar::day_of;
use crate::domain::catalog::mapping_rules::MAX_MAPPING_RULES_PER_SERVICE;
use crate::domain::catalog::plans::PlanState;
use crate::domain::catalog::{
    check_limits, check_method, check_metric_name, check_money, check_pattern, check_pricing_rules,
    metrics::check_unit, LimitInput, PricingModel, PricingRuleInput, MAX_NAME_CHARS,
    MAX_TRIAL_DAYS,
};
use crate::domain::transfer::{
    AccountDoc, AppKeyDoc, ApplicationDoc, Document, KeyDoc, MappingRuleDoc, MetricDoc, PlanDoc,
    ServiceDoc,
};
use crate::domain::DomainError;
use crate::money::format_amount;
use crate::secrets::new_id;

/// What a link joins: the kinds of 3scale objects the importer keeps a twin of.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Kind {
    Service,
    Metric,
    MappingRule,
    Plan,
    Account,
    Application,
    /// threescale_id `<application id>/<sha256>`.
    UserKey,
    /// threescale_id `<application id>/<sha256>`.
    AppKey,
}

impl Kind {
    pub const ALL: [Kind; 8] = [
        Kind::Service,
        Kind::Metric,
        Kind::MappingRule,
        Kind::Plan,
        Kind::Account,
        Kind::Application,
        Kind::UserKey,
        Kind::AppKey,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Service => "service",
            Kind::Metric => "metric",
            Kind::MappingRule => "mapping_rule",
            Kind::Plan => "plan",
            Kind::Account => "account",
            Kind::Application => "application",
            Kind::UserKey => "user_key",
            Kind::AppKey => "app_key",
        }
    }

    pub fn stored(raw: &str) -> Option<Kind> {
        Kind::ALL.into_iter().find(|k| k.as_str() == raw)
    }
}

/// Links: (kind, 3scale id) -> Tollgate id.
pub type Links = HashMap<(Kind, String), String>;

/// Why something was not carried, or not as it was.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum NoteKind {
    /// Tollgate has no place for it (policies, backend APIs, OAuth, approval, ...).
    NotCarried,
    /// It breaks a rule of Tollgate's (a name, a key, a price) or collides with what is here.
    Refused,
    /// Gone from 3scale: kept in Tollgate (an application is suspended).
    GoneFrom3scale,
    /// Its twin was deleted (a key revoked) in Tollgate: not made again.
    DeletedInTollgate,
    /// Carried, with a change worth knowing (a name made unique, a state mapped).
    Adjusted,
    /// Gateway configuration to set by hand (where clients send credentials).
    Gateway,
}

impl NoteKind {
    pub fn as_str(self) -> &'static str {
        match self {
            NoteKind::NotCarried => "not carried",
            NoteKind::Refused => "refused",
            NoteKind::GoneFrom3scale => "gone from 3scale",
            NoteKind::DeletedInTollgate => "deleted in Tollgate",
            NoteKind::Adjusted => "adjusted",
            NoteKind::Gateway => "gateway",
        }
    }
}

/// One line of the report: the 3scale object (and field) and the reason.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Note {
    pub kind: NoteKind,
    /// `service 12 "Echo"`, `application 7 user_key`, ...
    pub subject: String,
    pub reason: String,
}

/// Choices of the operator.
#[derive(Clone, Copy, Debug, Default)]
pub struct Options {
    /// Carry keys shorter than [`MIN_IMPORTED_KEY_CHARS`] (by digest; they stay guessable).
    pub accept_short_keys: bool,
}

/// The result of [`plan`].
#[derive(Debug)]
pub struct Planned {
    /// The installation after this run.
    pub after: Document,
    /// The links after this run.
    pub links: Links,
    pub notes: Vec<Note>,
}

/// The installation-wide uniqueness rules, kept current while `after` is changed.
#[derive(Default)]
struct Taken {
    /// Service name -> service id.
    service_names: HashMap<String, String>,
    /// app_id -> application id.
    app_ids: HashMap<String, String>,
    /// API key digest -> application id.
    api_keys: HashMap<String, String>,
    /// App key digest -> how many applications hold it.
    app_keys: HashMap<String, usize>,
}

impl Taken {
    fn of(doc: &Document) -> Taken {
        let mut t = Taken::default();
        for s in &doc.services {
            t.service_names.insert(s.name.clone(), s.id.clone());
        }
        for a in &doc.applications {
            if let Some(p) = &a.app_id {
                t.app_ids.insert(p.clone(), a.id.clone());
            }
            for k in &a.keys {
                t.api_keys.insert(k.key_sha256.clone(), a.id.clone());
            }
            for k in &a.app_keys {
                *t.app_keys.entry(k.key_sha256.clone()).or_default() += 1;
            }
        }
        t
    }

    fn drop_app_key(&mut self, digest: &str) {
        if let Some(n) = self.app_keys.get_mut(digest) {
            *n -= 1;
            if *n == 0 {
                self.app_keys.remove(digest);
            }
        }
    }
}

struct Planner<'a> {
    opts: Options,
    now: i64,
    links: Links,
    notes: Vec<Note>,
    after: Document,
    taken: Taken,
    /// 3scale service id -> Tollgate service id (services carried this run).
    services: HashMap<u64, String>,
    /// 3scale metric id -> (Tollgate service id, metric name).
    metrics: HashMap<u64, (String, String)>,
    /// 3scale plan id -> Tollgate plan id.
    plans: HashMap<u64, String>,
    /// 3scale account id -> Tollgate account id.
    accounts: HashMap<u64, String>,
    /// Where each account and application of `after` is (tens of thousands: found by id, not by
    /// a scan each).
    account_pos: HashMap<String, usize>,
    app_pos: HashMap<String, usize>,
    tenant: &'a Tenant,
}

fn quote(s: &str) -> String {
    format!("{s:?}")
}

/// A name as Tollgate keeps it: trimmed, control characters dropped, at most
/// [`MAX_NAME_CHARS`]; `None` when nothing is left.
fn fit_name(raw: &str) -> Option<(String, bool)> {
    let clean: String = raw.chars().filter(|c| !c.is_control()).collect();
    let trimmed = clean.trim();
    if trimmed.is_empty() {
        return None;
    }
    let cut: String = trimmed.chars().take(MAX_NAME_CHARS).collect();
    let changed = cut != raw;
    Some((cut.trim_end().to_string(), changed))
}

fn created_at(raw: &Option<String>, now: i64) -> i64 {
    raw.as_deref()
        .and_then(super::source::parse_time)
        .unwrap_or(now)
}

/// A 3scale decimal as Tollgate stores money (`format_amount`), or why not.
fn money(field: &str, d: Option<&DecimalText>) -> Result<String, String> {
    let raw = d.map(|d| d.0.as_str()).unwrap_or("0");
    check_money(field, raw)
        .map(format_amount)
        .map_err(|e| e.to_string())
}

fn period(raw: &str) -> Option<Period> {
    Period::ALL.into_iter().find(|p| p.as_str() == raw)
}

fn sorted_limits(mut l: Vec<LimitInput>) -> Vec<LimitInput> {
    l.sort_by(|a, b| (&a.metric, a.period.as_str()).cmp(&(&b.metric, b.period.as_str())));
    l
}

fn sorted_pricing(mut p: Vec<PricingRuleInput>) -> Vec<PricingRuleInput> {
    p.sort_by(|a, b| (&a.metric, a.from).cmp(&(&b.metric, b.from)));
    p
}

/// The domain rule's message, without the field prefix the API adds.
fn why(e: DomainError) -> String {
    match e {
        DomainError::Invalid { message, .. } | DomainError::Conflict { message, .. } => message,
        other => other.to_string(),
    }
}

impl<'a> Planner<'a> {
    fn note(&mut self, kind: NoteKind, subject: impl Into<String>, reason: impl Into<String>) {
        self.notes.push(Note {
            kind,
            subject: subject.into(),
            reason: reason.into(),
        });
    }

    fn link(&self, kind: Kind, id: impl ToString) -> Option<&String> {
        self.links.get(&(kind, id.to_string()))
    }

    fn set_link(&mut self, kind: Kind, id: impl ToString, tollgate: &str) {
        self.links
            .insert((kind, id.to_string()), tollgate.to_string());
    }

    /// The Tollgate name of 3scale metric `id` on service `sid`, or a note on `subject` saying
    /// why there is none (the metric was refused, or belongs to a backend API).
    fn metric_name(&mut self, id: u64, sid: &str, subject: &str) -> Option<String> {
        match self.metrics.get(&id).cloned() {
            Some((s, name)) if s == sid => Some(name),
            Some(_) => {
                self.note(
                    NoteKind::Refused,
                    subject,
                    "its metric belongs to another service",
                );
                None
            }
            None => {
                self.note(
                    NoteKind::NotCarried,
                    subject,
                    format!("its metric {id} was not imported (refused above, or a backend API's)"),
                );
                None
            }
        }
    }

    fn service_pos(&self, id: &str) -> Option<usize> {
        self.after.services.iter().position(|s| s.id == id)
    }

    fn plan_pos(&self, id: &str) -> Option<usize> {
        self.after.plans.iter().position(|p| p.id == id)
    }

    // ---- services, metrics, mapping rules ----

    /// A free name for a service: 3scale's name, else `name (system_name)`; `None` if both are
    /// taken by another service.
    fn service_name(&self, name: &str, system_name: &str, own: Option<&str>) -> Option<String> {
        let free = |n: &str| match self.taken.service_names.get(n) {
            None => true,
            Some(holder) => Some(holder.as_str()) == own,
        };
        if free(name) {
            return Some(name.to_string());
        }
        let alt = fit_name(&format!("{name} ({system_name})"))?.0;
        free(&alt).then_some(alt)
    }

    fn services(&mut self) {
        let tenant = self.tenant;
        for sd in &tenant.services {
            let s = &sd.service;
            let subject = format!("service {} {}", s.id, quote(&s.name));
            let Some((name, _)) = fit_name(&s.name) else {
                self.note(NoteKind::Refused, subject, "it has no name");
                continue;
            };
            let id = match self.link(Kind::Service, s.id).cloned() {
                Some(tid) => {
                    let Some(pos) = self.service_pos(&tid) else {
                        self.note(
                            NoteKind::DeletedInTollgate,
                            subject,
                            format!("its twin {tid} was deleted in Tollgate: not made again, nor its metrics, plans and applications"),
                        );
                        continue;
                    };
                    let current = self.after.services[pos].name.clone();
                    match self.service_name(&name, &s.system_name, Some(&tid)) {
                        Some(n) if n != current => {
                            self.taken.service_names.remove(&current);
                            self.taken.service_names.insert(n.clone(), tid.clone());
                            self.after.services[pos].name = n;
                        }
                        Some(_) => {}
                        None => self.note(
                            NoteKind::Refused,
                            &subject,
                            format!("its new name is held by another service in Tollgate: kept {current:?}"),
                        ),
                    }
                    tid
                }
                None => {
                    let Some(n) = self.service_name(&name, &s.system_name, None) else {
                        self.note(
                            NoteKind::Refused,
                            subject,
                            "another service in Tollgate has its name (and its name with its system name): not imported",
                        );
                        continue;
                    };
                    if n != name {
                        self.note(
                            NoteKind::Adjusted,
                            &subject,
                            format!("named {n:?}: another service in Tollgate has its name"),
                        );
                    }
                    let tid = new_id("svc");
                    self.taken.service_names.insert(n.clone(), tid.clone());
                    self.after.services.push(ServiceDoc {
                        id: tid.clone(),
                        name: n,
                        created_at: created_at(&s.created_at, self.now),
                        metrics: Vec::new(),
                        mapping_rules: Vec::new(),
                    });
                    self.set_link(Kind::Service, s.id, &tid);
                    tid
                }
            };
            self.services.insert(s.id, id.clone());
            self.service_notes(sd, &subject);
            self.metrics_of(sd, &id, &subject);
            self.rules_of(sd, &id, &subject);
        }
        // Linked services gone from 3scale.
        let present: HashSet<String> = tenant
            .services
            .iter()
            .map(|s| s.service.id.to_string())
            .collect();
        let gone: Vec<(String, String)> = self
            .links
            .iter()
            .filter(|((k, id), _)| *k == Kind::Service && !present.contains(id))
            .map(|((_, id), t)| (id.clone(), t.clone()))
            .collect();
        for (id, t) in gone {
            if self.service_pos(&t).is_some() {
                self.note(
                    NoteKind::GoneFrom3scale,
                    format!("service {id}"),
                    format!("kept in Tollgate as {t} (nothing is deleted here because it is gone from 3scale; delete it with the admin API if it should go)"),
                );
            }
        }
    }

    /// What the service's gateway side says that Tollgate does not carry.
    fn service_notes(&mut self, sd: &super::source::ServiceData, subject: &str) {
        let s = &sd.service;
        match s.backend_version.as_deref() {
            Some("1") | Some("2") | None => {}
            Some(other) => self.note(
                NoteKind::NotCarried,
                subject,
                format!("authentication mode {other:?} (OAuth / OpenID Connect): Tollgate has no OAuth flow; its applications are imported without credentials (give them API keys)"),
            ),
        }
        for b in &sd.backend_usages {
            self.note(
                NoteKind::NotCarried,
                format!("{subject} backend usage {}", b.id),
                format!(
                    "backend API {} at path {:?}: Tollgate has no backend APIs; its metrics, methods and mapping rules are not imported (recreate them on the service, the path prefixed to the patterns) and limits on them are dropped",
                    b.backend_id.map(|i| i.to_string()).unwrap_or_default(),
                    b.path.clone().unwrap_or_default()
                ),
            );
        }
        if let Some(proxy) = &sd.proxy {
            for p in proxy.policies_config.iter().flatten() {
                if p.name != "apicast" {
                    self.note(
                        NoteKind::NotCarried,
                        format!("{subject} policy {:?}", p.name),
                        "Tollgate has no APIcast policies: configure the equivalent in the gateway (Envoy filters or Kong plugins)",
                    );
                }
            }
            if let Some(up) = proxy.api_backend.as_deref().filter(|u| !u.is_empty()) {
                self.note(
                    NoteKind::Gateway,
                    format!("{subject} api_backend"),
                    format!("upstream {up:?}: routing is the gateway's (an Envoy cluster or Kong service)"),
                );
            }
            // Where APIcast reads credentials (`credentials_location`) and under which names:
            // the filter's `credentials` can read the same, but it is the gateway's
            // configuration, not the control plane's.
            let location = proxy.credentials_location.as_deref().unwrap_or("query");
            let (user_key, app_id, app_key) = (
                proxy.auth_user_key.as_deref().unwrap_or("user_key"),
                proxy.auth_app_id.as_deref().unwrap_or("app_id"),
                proxy.auth_app_key.as_deref().unwrap_or("app_key"),
            );
            let pair = s.backend_version.as_deref() == Some("2");
            let setting = match (location, pair) {
                ("query", false) => Some(format!("\"credentials\": {{\"query\": {user_key:?}}}")),
                ("headers", false) => Some(format!("\"credentials\": {{\"header\": {user_key:?}}}")),
                ("query", true) => Some(format!(
                    "\"credentials\": {{\"app_id\": {{\"query\": {app_id:?}}}, \"app_key\": {{\"query\": {app_key:?}}}}}"
                )),
                ("headers", true) => Some(format!(
                    "\"credentials\": {{\"app_id\": {{\"header\": {app_id:?}}}, \"app_key\": {{\"header\": {app_key:?}}}}}"
                )),
                _ => None,
            };
            match setting {
                Some(setting) => self.note(
                    NoteKind::Gateway,
                    format!("{subject} credentials"),
                    format!("APIcast reads them from {location}: give the filter {setting} so clients change nothing (docs/filter-configuration.md)"),
                ),
                None => self.note(
                    NoteKind::NotCarried,
                    format!("{subject} credentials"),
                    format!("APIcast reads them from {location:?} (HTTP Basic): the filter does not read Basic credentials; clients send the key as a header, a query parameter or a Bearer token instead"),
                ),
            }
        }
    }

    fn metrics_of(&mut self, sd: &super::source::ServiceData, sid: &str, subject: &str) {
        let Some(pos) = self.service_pos(sid) else {
            return;
        };
        // Parents first, so a method finds its parent's name.
        let mut ordered: Vec<&super::source::Metric> = sd.metrics.iter().collect();
        ordered.sort_by_key(|m| (m.parent_id.is_some(), m.id));
        let mut units: HashMap<u64, String> = HashMap::new();
        for m in ordered {
            let msubject = format!("{subject} metric {} {}", m.id, quote(m.system_name()));
            let name = m.system_name().to_string();
            if let Err(e) = check_metric_name("name", &name) {
                self.note(
                    NoteKind::Refused,
                    msubject,
                    format!(
                        "{}; its mapping rules, limits and pricing rules are dropped",
                        why(e)
                    ),
                );
                continue;
            }
            let parent = match m.parent_id {
                None => None,
                Some(p) => match self.metrics.get(&p) {
                    Some((s, n)) if s == sid => {
                        let parent_doc = self.after.services[pos]
                            .metrics
                            .iter()
                            .find(|x| &x.name == n);
                        if parent_doc.is_some_and(|d| d.parent.is_some()) {
                            self.note(
                                NoteKind::Refused,
                                msubject,
                                "a method of a method (two levels at most)",
                            );
                            continue;
                        }
                        Some(n.clone())
                    }
                    _ => {
                        self.note(
                            NoteKind::Refused,
                            msubject,
                            "its parent metric was not imported",
                        );
                        continue;
                    }
                },
            };
            // A method has no unit of its own in 3scale: it counts in its parent's.
            let raw_unit = m
                .unit
                .clone()
                .or_else(|| m.parent_id.and_then(|p| units.get(&p).cloned()))
                .unwrap_or_else(|| "hit".into());
            let unit = match check_unit(&raw_unit) {
                Ok(u) => u,
                Err(e) => {
                    self.note(
                        NoteKind::Adjusted,
                        &msubject,
                        format!("unit {raw_unit:?}: {}; \"hit\" used", why(e)),
                    );
                    "hit".into()
                }
            };
            units.insert(m.id, unit.clone());
            let twin = self.links.get(&(Kind::Metric, m.id.to_string())).cloned();
            let tname = match twin {
                Some(tid) => {
                    let found = self.after.services[pos]
                        .metrics
                        .iter()
                        .position(|x| x.id == tid);
                    let Some(i) = found else {
                        self.note(
                            NoteKind::DeletedInTollgate,
                            msubject,
                            format!("its twin {tid} was deleted in Tollgate: not made again; its mapping rules, limits and pricing rules are dropped"),
                        );
                        continue;
                    };
                    let doc = &mut self.after.services[pos].metrics[i];
                    doc.unit = unit;
                    doc.parent = parent;
                    doc.name.clone()
                }
                None => {
                    // A metric of the same name on the twin service (made here by hand) is the
                    // same meter: adopted rather than duplicated (names are unique per service).
                    let metrics = &mut self.after.services[pos].metrics;
                    let id = match metrics.iter_mut().find(|x| x.name == name) {
                        Some(doc) => {
                            doc.unit = unit;
                            doc.parent = parent;
                            doc.id.clone()
                        }
                        None => {
                            let id = new_id("met");
                            metrics.push(MetricDoc {
                                id: id.clone(),
                                name: name.clone(),
                                unit,
                                parent,
                                created_at: created_at(&m.created_at, self.now),
                            });
                            id
                        }
                    };
                    self.set_link(Kind::Metric, m.id, &id);
                    name
                }
            };
            self.metrics.insert(m.id, (sid.to_string(), tname));
        }
        let present: HashSet<String> = sd.metrics.iter().map(|m| m.id.to_string()).collect();
        let own: HashSet<&str> = self.after.services[pos]
            .metrics
            .iter()
            .map(|m| m.id.as_str())
            .collect();
        let gone: Vec<String> = self
            .links
            .iter()
            .filter(|((k, id), t)| {
                *k == Kind::Metric && !present.contains(id) && own.contains(t.as_str())
            })
            .map(|((_, id), _)| id.clone())
            .collect();
        for id in gone {
            self.note(
                NoteKind::GoneFrom3scale,
                format!("{subject} metric {id}"),
                "kept in Tollgate (its usage and prices refer to it)",
            );
        }
    }

    fn rules_of(&mut self, sd: &super::source::ServiceData, sid: &str, subject: &str) {
        let Some(pos) = self.service_pos(sid) else {
            return;
        };
        // What 3scale has, in evaluation order, each checked with the API's rules.
        let mut desired: Vec<(u64, MappingRuleDoc)> = Vec::new();
        for r in &sd.mapping_rules {
            let rsubject = format!(
                "{subject} mapping rule {} {} {}",
                r.id,
                r.http_method,
                quote(&r.pattern)
            );
            let Some(metric) = self.metric_name(r.metric_id, sid, &rsubject) else {
                continue;
            };
            let method = match check_method(&r.http_method) {
                Ok(m) => m,
                Err(e) => {
                    self.note(NoteKind::Refused, rsubject, why(e));
                    continue;
                }
            };
            if let Err(e) = check_pattern(&r.pattern) {
                self.note(NoteKind::Refused, rsubject, why(e));
                continue;
            }
            let Some(delta) = u32::try_from(r.delta).ok().filter(|d| *d >= 1) else {
                self.note(
                    NoteKind::Refused,
                    rsubject,
                    format!("delta {} (at least 1)", r.delta),
                );
                continue;
            };
            if r.redirect_url.as_deref().is_some_and(|u| !u.is_empty()) {
                self.note(
                    NoteKind::NotCarried,
                    &rsubject,
                    "its redirect_url: Tollgate meters, it does not redirect",
                );
            }
            desired.push((
                r.id,
                MappingRuleDoc {
                    id: String::new(),
                    method,
                    pattern: r.pattern.clone(),
                    metric,
                    delta,
                    last: r.last.unwrap_or(false),
                    created_at: created_at(&r.created_at, self.now),
                },
            ));
        }
        // The service's rules that are twins of 3scale rules, in Tollgate's (id) order.
        let twin_of: HashMap<String, String> = self
            .links
            .iter()
            .filter(|((k, _), _)| *k == Kind::MappingRule)
            .map(|((_, ts), t)| (t.clone(), ts.clone()))
            .collect();
        let rules = &self.after.services[pos].mapping_rules;
        // (3scale id, Tollgate id) of each twin rule.
        let current: Vec<(String, String)> = rules
            .iter()
            .filter_map(|r| twin_of.get(&r.id).map(|ts| (ts.clone(), r.id.clone())))
            .collect();
        let others = rules.len() - current.len();
        let room = (MAX_MAPPING_RULES_PER_SERVICE as usize).saturating_sub(others);
        if desired.len() > room {
            for (id, r) in desired.drain(room..) {
                self.note(
                    NoteKind::Refused,
                    format!(
                        "{subject} mapping rule {id} {} {}",
                        r.method,
                        quote(&r.pattern)
                    ),
                    format!("a service has at most {MAX_MAPPING_RULES_PER_SERVICE} mapping rules"),
                );
            }
        }
        let same_order = current.len() == desired.len()
            && current
                .iter()
                .zip(&desired)
                .all(|((ts, _), (id, _))| *ts == id.to_string());
        let rules = &mut self.after.services[pos].mapping_rules;
        if same_order {
            // Updated in place (their ids, hence their order, stay).
            for ((_, tid), (_, want)) in current.iter().zip(&desired) {
                if let Some(r) = rules.iter_mut().find(|r| &r.id == tid) {
                    r.method.clone_from(&want.method);
                    r.pattern.clone_from(&want.pattern);
                    r.metric.clone_from(&want.metric);
                    r.delta = want.delta;
                    r.last = want.last;
                }
            }
            return;
        }
        // Order changed (or rules came or went): the twins are replaced by new rules in 3scale's
        // order (ids order evaluation, and new ids sort after every existing one).
        let old: HashSet<String> = current.into_iter().map(|(_, tid)| tid).collect();
        rules.retain(|r| !old.contains(&r.id));
        self.links
            .retain(|(k, _), t| !(*k == Kind::MappingRule && old.contains(t)));
        for (ts, mut r) in desired {
            r.id = new_id("mr");
            self.links
                .insert((Kind::MappingRule, ts.to_string()), r.id.clone());
            rules.push(r);
        }
    }

    // ---- plans ----

    fn plans(&mut self) {
        let tenant = self.tenant;
        for sd in &tenant.services {
            let Some(sid) = self.services.get(&sd.service.id).cloned() else {
                continue;
            };
            let Some(spos) = self.service_pos(&sid) else {
                continue;
            };
            for pd in &sd.plans {
                self.plan_one(pd, &sid, spos, &format!("service {}", sd.service.id));
            }
            let present: HashSet<String> = sd.plans.iter().map(|p| p.plan.id.to_string()).collect();
            let gone: Vec<(String, String)> = self
                .links
                .iter()
                .filter(|((k, id), t)| {
                    *k == Kind::Plan
                        && !present.contains(id)
                        && self
                            .after
                            .plans
                            .iter()
                            .any(|p| &p.id == *t && p.service_id == sid)
                })
                .map(|((_, id), t)| (id.clone(), t.clone()))
                .collect();
            for (id, t) in gone {
                self.note(
                    NoteKind::GoneFrom3scale,
                    format!("plan {id}"),
                    format!("kept in Tollgate as {t} (contracts and invoices refer to it)"),
                );
            }
        }
    }

    fn plan_one(&mut self, pd: &super::source::PlanData, sid: &str, spos: usize, service: &str) {
        let p = &pd.plan;
        let subject = format!("{service} plan {} {}", p.id, quote(&p.name));
        let Some((name, _)) = fit_name(&p.name) else {
            self.note(NoteKind::Refused, subject, "it has no name");
            return;
        };
        let (setup_fee, fixed_fee) = match (
            money("setup_fee", p.setup_fee.as_ref()),
            money("cost_per_month", p.cost_per_month.as_ref()),
        ) {
            (Ok(a), Ok(b)) => (a, b),
            (Err(e), _) | (_, Err(e)) => {
                self.note(
                    NoteKind::Refused,
                    subject,
                    format!("a fee Tollgate cannot take ({e}): not imported, nor its applications"),
                );
                return;
            }
        };
        let trial_days = p.trial_period_days.unwrap_or(0).max(0);
        if trial_days > MAX_TRIAL_DAYS {
            self.note(NoteKind::Refused, subject, format!("a trial of {trial_days} days (at most {MAX_TRIAL_DAYS}): not imported, nor its applications"));
            return;
        }
        if p.approval_required == Some(true) {
            self.note(NoteKind::NotCarried, &subject, "approval_required: Tollgate plans need no approval (applications are live when an admin creates them)");
        }
        if p.cancellation_period.unwrap_or(0) > 0 {
            self.note(
                NoteKind::NotCarried,
                &subject,
                "cancellation_period: Tollgate ends a contract on the day of the change",
            );
        }
        if p.custom == Some(true) {
            self.note(NoteKind::Adjusted, &subject, "a plan 3scale customized for one application: imported as a hidden plan of its own (3scale's list does not say which plan it customizes)");
        }
        let state = match p.state.as_deref() {
            Some("published") => PlanState::Published,
            _ => PlanState::Hidden,
        };
        let metric_names: HashMap<String, String> = self.after.services[spos]
            .metrics
            .iter()
            .map(|m| (m.name.clone(), m.id.clone()))
            .collect();
        // Limits.
        let mut limits: Vec<LimitInput> = Vec::new();
        for l in &pd.limits {
            let lsubject = format!("{subject} limit {} ({} per {})", l.id, l.value, l.period);
            let Some(per) = period(&l.period) else {
                self.note(
                    NoteKind::Refused,
                    lsubject,
                    format!(
                        "period {:?} (Tollgate: minute, hour, day, week, month, year, eternity)",
                        l.period
                    ),
                );
                continue;
            };
            let Some(metric) = self.metric_name(l.metric_id, sid, &lsubject) else {
                continue;
            };
            if limits.iter().any(|x| x.metric == metric && x.period == per) {
                self.note(
                    NoteKind::Refused,
                    lsubject,
                    "a second limit on the same metric and period",
                );
                continue;
            }
            // 3scale stores a negative value as 0 (`UsageLimit#set_value_default_value`): 0
            // means the metric is not allowed at all, in both.
            limits.push(LimitInput {
                metric,
                period: per,
                value: u64::try_from(l.value).unwrap_or(0),
            });
        }
        if let Err(e) = check_limits(&limits, &metric_names) {
            self.note(
                NoteKind::Refused,
                &subject,
                format!("its limits: {}; none carried", why(e)),
            );
            limits.clear();
        }
        // Pricing rules: graduated, as 3scale prices (`PricingRule#cost_for_value`).
        let mut pricing: Vec<PricingRuleInput> = Vec::new();
        for r in &pd.pricing_rules {
            let rsubject = format!("{subject} pricing rule {}", r.id);
            let Some(metric) = self.metric_name(r.metric_id, sid, &rsubject) else {
                continue;
            };
            let price = match money("cost_per_unit", Some(&r.cost_per_unit)) {
                Ok(p) => p,
                Err(e) => {
                    self.note(NoteKind::Refused, rsubject, e);
                    continue;
                }
            };
            let (Ok(from), to) = (u64::try_from(r.min), r.max.map(u64::try_from)) else {
                self.note(
                    NoteKind::Refused,
                    rsubject,
                    format!("min {} is negative", r.min),
                );
                continue;
            };
            let Ok(to) = to.transpose() else {
                self.note(NoteKind::Refused, rsubject, "max is negative");
                continue;
            };
            pricing.push(PricingRuleInput {
                metric,
                from,
                to,
                unit_price: price,
                model: PricingModel::Graduated,
                package_size: None,
            });
        }
        // Drop, one at a time, a rule the domain refuses (overlapping tiers): the rest are kept.
        while let Err(e) = check_pricing_rules(&pricing, &metric_names) {
            let index = match &e {
                DomainError::Invalid { param: Some(p), .. } => p
                    .strip_prefix("pricing_rules[")
                    .and_then(|rest| rest.split(']').next())
                    .and_then(|i| i.parse::<usize>().ok()),
                _ => None,
            };
            match index.filter(|i| *i < pricing.len()) {
                Some(i) => {
                    let r = pricing.remove(i);
                    self.note(
                        NoteKind::Refused,
                        format!("{subject} pricing rule on {} from {}", r.metric, r.from),
                        why(e),
                    );
                }
                None => {
                    self.note(
                        NoteKind::Refused,
                        &subject,
                        format!("its pricing rules: {}; none carried", why(e)),
                    );
                    pricing.clear();
                }
            }
        }
        let limits = sorted_limits(limits);
        let pricing = sorted_pricing(pricing);
        let id = match self.link(Kind::Plan, p.id).cloned() {
            Some(tid) => {
                let Some(pos) = self.plan_pos(&tid) else {
                    self.note(NoteKind::DeletedInTollgate, subject, format!("its twin {tid} was deleted in Tollgate: not made again, nor its applications"));
                    return;
                };
                if self.after.plans[pos].service_id != sid {
                    self.note(
                        NoteKind::Refused,
                        subject,
                        format!("its twin {tid} belongs to another service"),
                    );
                    return;
                }
                let doc = &mut self.after.plans[pos];
                doc.name = name;
                doc.state = state;
                doc.setup_fee = setup_fee;
                doc.fixed_fee = fixed_fee;
                doc.trial_days = trial_days;
                if sorted_limits(doc.limits.clone()) != limits {
                    doc.limits = limits;
                }
                if sorted_pricing(doc.pricing_rules.clone()) != pricing {
                    doc.pricing_rules = pricing;
                }
                tid
            }
            None => {
                let tid = new_id("plan");
                self.after.plans.push(PlanDoc {
                    id: tid.clone(),
                    service_id: sid.to_string(),
                    name,
                    state,
                    setup_fee,
                    fixed_fee,
                    trial_days,
                    parent_plan_id: None,
                    created_at: created_at(&p.created_at, self.now),
                    limits,
                    pricing_rules: pricing,
                });
                self.set_link(Kind::Plan, p.id, &tid);
                tid
            }
        };
        self.plans.insert(p.id, id);
    }

    // ---- accounts ----

    fn accounts(&mut self) {
        let tenant = self.tenant;
        for ad in &tenant.accounts {
            let a = &ad.account;
            let label = a.org_name.clone().unwrap_or_default();
            let subject = format!("account {} {}", a.id, quote(&label));
            let twin = self.link(Kind::Account, a.id).cloned();
            let pos = match &twin {
                Some(tid) => match self.account_pos.get(tid) {
                    Some(p) => Some(*p),
                    None => {
                        self.note(NoteKind::DeletedInTollgate, subject, format!("its twin {tid} was deleted in Tollgate: not made again, nor its applications"));
                        continue;
                    }
                },
                None => None,
            };
            match self.account_doc(ad, &subject) {
                Ok(doc) => {
                    if a.state.as_deref().is_some_and(|s| s != "approved") {
                        self.note(NoteKind::NotCarried, &subject, format!("its state {:?}: Tollgate accounts have no approval state (its applications' own states are carried)", a.state.clone().unwrap_or_default()));
                    }
                    let id = match pos {
                        Some(p) => {
                            let cur = &mut self.after.accounts[p];
                            cur.name = doc.name;
                            cur.email = doc.email;
                            cur.billing_address = doc.billing_address;
                            cur.vat_rate = doc.vat_rate;
                            cur.vat_code = doc.vat_code;
                            cur.id.clone()
                        }
                        None => {
                            let id = doc.id.clone();
                            self.account_pos
                                .insert(id.clone(), self.after.accounts.len());
                            self.after.accounts.push(doc);
                            self.set_link(Kind::Account, a.id, &id);
                            id
                        }
                    };
                    self.accounts.insert(a.id, id);
                }
                Err(reason) => match pos {
                    Some(p) => {
                        let id = self.after.accounts[p].id.clone();
                        self.note(
                            NoteKind::Refused,
                            subject,
                            format!("{reason}: its twin {id} is left as it is"),
                        );
                        self.accounts.insert(a.id, id);
                    }
                    None => self.note(
                        NoteKind::Refused,
                        subject,
                        format!("{reason}: not imported, nor its applications"),
                    ),
                },
            }
        }
        let present: HashSet<String> = tenant
            .accounts
            .iter()
            .map(|a| a.account.id.to_string())
            .collect();
        let gone: Vec<(String, String)> = self
            .links
            .iter()
            .filter(|((k, id), t)| {
                *k == Kind::Account
                    && !present.contains(id)
                    && self.account_pos.contains_key(t.as_str())
            })
            .map(|((_, id), t)| (id.clone(), t.clone()))
            .collect();
        for (id, t) in gone {
            self.note(
                NoteKind::GoneFrom3scale,
                format!("account {id}"),
                format!("kept in Tollgate as {t} (invoices refer to it)"),
            );
        }
    }

    /// The account as Tollgate would store it (a new id; the caller keeps the twin's), or why not.
    fn account_doc(
        &mut self,
        ad: &super::source::AccountData,
        subject: &str,
    ) -> Result<AccountDoc, String> {
        let a = &ad.account;
        let name = match a.org_name.as_deref().and_then(fit_name) {
            Some((n, _)) => n,
            None => {
                self.note(
                    NoteKind::Adjusted,
                    subject,
                    "no organization name: named after its 3scale id",
                );
                format!("3scale account {}", a.id)
            }
        };
        let email = match (&ad.email, &ad.users_problem) {
            (Some(e), _) => {
                check_email(e).map_err(|e| format!("its e-mail address: {}", why(e)))?
            }
            (None, Some(p)) => return Err(format!("no e-mail address ({p})")),
            (None, None) => return Err("no e-mail address".into()),
        };
        let vat_rate = match &a.vat_rate {
            None => "0.00".to_string(),
            Some(v) => format_amount(
                account::check_vat_rate(&v.0)
                    .map_err(|e| format!("its VAT rate {:?}: {}", v.0, why(e)))?,
            ),
        };
        let vat_code = match a.vat_code.as_deref() {
            None => None,
            Some(c) => match account::check_vat_code(c) {
                Ok(c) => c,
                Err(e) => {
                    self.note(NoteKind::Refused, format!("{subject} vat_code"), why(e));
                    None
                }
            },
        };
        let billing_address = match &a.billing_address {
            None => BillingAddress::default(),
            Some(b) => {
                let field = |v: &Option<String>| v.clone().unwrap_or_default().trim().to_string();
                let raw_country = field(&b.country);
                let country = if raw_country.len() == 2
                    && raw_country.bytes().all(|c| c.is_ascii_alphabetic())
                {
                    raw_country.to_ascii_uppercase()
                } else {
                    if !raw_country.is_empty() {
                        self.note(
                            NoteKind::Refused,
                            format!("{subject} billing_address.country"),
                            format!(
                                "{raw_country:?} is not an ISO 3166-1 alpha-2 code: left empty"
                            ),
                        );
                    }
                    String::new()
                };
                let addr = BillingAddress {
                    line1: field(&b.address1),
                    line2: field(&b.address2),
                    city: field(&b.city),
                    postal_code: field(&b.zip),
                    region: field(&b.state),
                    country,
                };
                match crate::domain::accounts::check_address(&addr) {
                    Ok(_) => addr,
                    Err(e) => {
                        self.note(
                            NoteKind::Refused,
                            format!("{subject} billing_address"),
                            format!("{}: not carried", why(e)),
                        );
                        BillingAddress::default()
                    }
                }
            }
        };
        Ok(AccountDoc {
            id: new_id("acct"),
            name,
            email,
            billing_address,
            vat_rate,
            vat_code,
            created_at: created_at(&a.created_at, self.now),
        })
    }

    // ---- applications and keys ----

    fn applications(&mut self) {
        let tenant = self.tenant;
        let today = day_of(self.now);
        let versions: HashMap<u64, Option<&str>> = tenant
            .services
            .iter()
            .map(|s| (s.service.id, s.service.backend_version.as_deref()))
            .collect();
        // Phase 1: each application's twin and fields; keys and app ids wait for phase 2, after
        // every key and app id leaving an application has left (3scale may have moved one).
        struct Wanted {
            tid: String,
            subject: String,
            /// `None`: not managed (API key services: an app_id set here by hand stays).
            app_id: Option<Option<String>>,
            user_keys: Vec<String>,
            app_keys: Vec<String>,
            ts_id: u64,
        }
        let mut wanted: Vec<Wanted> = Vec::new();
        // Each 3scale application's key links (`<application id>/<sha256>`), found once.
        let mut key_links: HashMap<u64, Vec<(Kind, String)>> = HashMap::new();
        for (kind, id) in self.links.keys() {
            if matches!(kind, Kind::UserKey | Kind::AppKey) {
                if let Some(app) = id.split('/').next().and_then(|a| a.parse::<u64>().ok()) {
                    key_links.entry(app).or_default().push((*kind, id.clone()));
                }
            }
        }
        let mut present: HashSet<String> = HashSet::new();
        for ad in &tenant.applications {
            let a = &ad.application;
            present.insert(a.id.to_string());
            let label = a.name.clone().unwrap_or_default();
            let subject = format!("application {} {}", a.id, quote(&label));
            let twin = self.link(Kind::Application, a.id).cloned();
            let pos = match &twin {
                Some(tid) => match self.app_pos.get(tid) {
                    Some(p) => Some(*p),
                    None => {
                        self.note(
                            NoteKind::DeletedInTollgate,
                            subject,
                            format!("its twin {tid} was deleted in Tollgate: not made again"),
                        );
                        continue;
                    }
                },
                None => None,
            };
            let missing =
                |what: &str, id: u64| format!("its {what} {id} was not imported (see above)");
            let (Some(plan), Some(account)) = (
                self.plans.get(&a.plan_id).cloned(),
                self.accounts.get(&a.account_id).cloned(),
            ) else {
                let reason = if self.plans.contains_key(&a.plan_id) {
                    missing("account", a.account_id)
                } else {
                    missing("plan", a.plan_id)
                };
                match pos {
                    Some(p) => self.note(
                        NoteKind::Refused,
                        subject,
                        format!(
                            "{reason}: its twin {} is left as it is",
                            self.after.applications[p].id
                        ),
                    ),
                    None => self.note(
                        NoteKind::Refused,
                        subject,
                        format!("{reason}: not imported"),
                    ),
                }
                continue;
            };
            let name = match a.name.as_deref().and_then(fit_name) {
                Some((n, _)) => n,
                None => format!("3scale application {}", a.id),
            };
            let mut description: String = a.description.clone().unwrap_or_default();
            if description.chars().count() > MAX_DESCRIPTION_CHARS {
                description = description.chars().take(MAX_DESCRIPTION_CHARS).collect();
                self.note(
                    NoteKind::Adjusted,
                    &subject,
                    format!("description cut to {MAX_DESCRIPTION_CHARS} characters"),
                );
            }
            let state = match a.state.as_str() {
                "live" => ApplicationState::Live,
                "suspended" => ApplicationState::Suspended,
                other => {
                    self.note(NoteKind::Adjusted, &subject, format!("state {other:?}: imported suspended (3scale refuses its traffic until it is accepted)"));
                    ApplicationState::Suspended
                }
            };
            // Credentials as the service's authentication mode has them.
            let mut user_keys = Vec::new();
            let mut app_keys = Vec::new();
            let mut app_id = None;
            match versions.get(&a.service_id).copied().flatten() {
                Some("2") => {
                    app_id = Some(None);
                    match a.application_id.as_deref() {
                        Some(p) => match check_app_id(p) {
                            Ok(p) => app_id = Some(Some(p)),
                            Err(e) => self.note(
                                NoteKind::Refused,
                                format!("{subject} app_id"),
                                format!("{}: imported without app_id and app keys", why(e)),
                            ),
                        },
                        None => self.note(
                            NoteKind::Refused,
                            format!("{subject} app_id"),
                            "3scale gave none",
                        ),
                    }
                    if let Some(p) = &ad.keys_problem {
                        self.note(NoteKind::Refused, format!("{subject} app keys"), p.clone());
                    }
                    if matches!(app_id, Some(Some(_))) {
                        for k in &ad.app_keys {
                            if let Some(d) = self.key_ok(
                                k,
                                &format!("{subject} app key {}", digest_prefix(&k.sha256)),
                            ) {
                                if !app_keys.contains(&d) {
                                    app_keys.push(d);
                                }
                            }
                        }
                    }
                }
                Some("1") | None => {
                    if let Some(k) = &a.user_key {
                        if let Some(d) = self.key_ok(
                            &k.0,
                            &format!("{subject} user_key {}", digest_prefix(&k.0.sha256)),
                        ) {
                            user_keys.push(d);
                        }
                    }
                }
                // OAuth / OIDC: reported once per service; the application comes without
                // credentials.
                Some(_) => {}
            }
            let tid = match pos {
                Some(p) => {
                    let cur = &mut self.after.applications[p];
                    if cur.account_id != account {
                        self.notes.push(Note {
                            kind: NoteKind::Refused,
                            subject: subject.clone(),
                            reason: format!(
                                "its twin {} belongs to another account in Tollgate: not moved",
                                cur.id
                            ),
                        });
                    }
                    cur.name = name;
                    cur.description = description;
                    // A customized copy of the plan, made here, is kept.
                    let on_copy = self.after.plans.iter().any(|x| {
                        x.id == cur.plan_id && x.parent_plan_id.as_deref() == Some(plan.as_str())
                    });
                    if !on_copy {
                        cur.plan_id = plan;
                    }
                    if cur.state_reason == Some(SuspensionReason::NonPayment) {
                        if state == ApplicationState::Live {
                            self.notes.push(Note { kind: NoteKind::Adjusted, subject: subject.clone(), reason: "suspended in Tollgate for non-payment: stays suspended until paid".into() });
                        }
                    } else {
                        cur.state = state;
                        cur.state_reason = (state == ApplicationState::Suspended)
                            .then_some(SuspensionReason::Admin);
                    }
                    // App ids leave first (phase 2 sets them), so two applications can swap.
                    if let Some(want) = &app_id {
                        if &cur.app_id != want {
                            if let Some(old) = cur.app_id.take() {
                                self.taken.app_ids.remove(&old);
                            }
                        }
                    }
                    cur.id.clone()
                }
                None => {
                    let tid = new_id("app");
                    self.app_pos
                        .insert(tid.clone(), self.after.applications.len());
                    let trial = self
                        .after
                        .plans
                        .iter()
                        .find(|x| x.id == plan)
                        .map(|x| x.trial_days)
                        .unwrap_or(0);
                    // What is left of the trial 3scale gave it (its trial counts from its creation).
                    let trial_ends_on =
                        (day_of(created_at(&a.created_at, self.now)) + trial).max(today);
                    self.after.applications.push(ApplicationDoc {
                        id: tid.clone(),
                        account_id: account,
                        plan_id: plan,
                        name,
                        description,
                        state,
                        state_reason: (state == ApplicationState::Suspended)
                            .then_some(SuspensionReason::Admin),
                        app_id: None,
                        created_at: created_at(&a.created_at, self.now),
                        trial_ends_on: Some(trial_ends_on),
                        keys: Vec::new(),
                        app_keys: Vec::new(),
                    });
                    self.set_link(Kind::Application, a.id, &tid);
                    tid
                }
            };
            // Keys that left 3scale leave here now.
            self.drop_stale_keys(&key_links, a.id, &tid, Kind::UserKey, &user_keys);
            self.drop_stale_keys(&key_links, a.id, &tid, Kind::AppKey, &app_keys);
            wanted.push(Wanted {
                tid,
                subject,
                app_id,
                user_keys,
                app_keys,
                ts_id: a.id,
            });
        }
        // Linked applications gone from 3scale: suspended, as 3scale no longer lets them in.
        let gone: Vec<(String, String)> = self
            .links
            .iter()
            .filter(|((k, id), _)| *k == Kind::Application && !present.contains(id))
            .map(|((_, id), t)| (id.clone(), t.clone()))
            .collect();
        for (id, t) in gone {
            if let Some(app) = self
                .app_pos
                .get(&t)
                .map(|p| &mut self.after.applications[*p])
            {
                if app.state == ApplicationState::Live {
                    app.state = ApplicationState::Suspended;
                    app.state_reason = Some(SuspensionReason::Admin);
                }
                self.notes.push(Note {
                    kind: NoteKind::GoneFrom3scale,
                    subject: format!("application {id}"),
                    reason: format!("its twin {t} is suspended, not deleted (its contract and invoices stay; delete it with the admin API once sure)"),
                });
            }
        }
        // Phase 2: app ids and keys.
        for w in wanted {
            let Some(pos) = self.app_pos.get(&w.tid).copied() else {
                continue;
            };
            let mut app_id_ok = true;
            if let Some(Some(p)) = &w.app_id {
                match self.taken.app_ids.get(p) {
                    Some(holder) if holder != &w.tid => {
                        self.notes.push(Note { kind: NoteKind::Refused, subject: format!("{} app_id", w.subject), reason: format!("app_id {p:?} belongs to {holder} in Tollgate: imported without app_id and app keys") });
                        app_id_ok = false;
                    }
                    _ => {
                        self.taken.app_ids.insert(p.clone(), w.tid.clone());
                        self.after.applications[pos].app_id = Some(p.clone());
                    }
                }
            } else if w.app_id == Some(None) {
                app_id_ok = false;
            }
            for d in &w.user_keys {
                self.add_key(pos, w.ts_id, &w.subject, d, Kind::UserKey);
            }
            if app_id_ok {
                for d in &w.app_keys {
                    self.add_key(pos, w.ts_id, &w.subject, d, Kind::AppKey);
                }
            }
        }
    }

    /// A key's digest if a gateway reads it and it is long enough (or short keys are accepted).
    fn key_ok(&mut self, k: &Key, subject: &str) -> Option<String> {
        if let Some(why) = k.unreadable {
            self.note(
                NoteKind::Refused,
                subject,
                format!(
                    "a gateway would refuse to read it ({why}): not carried; re-key this client"
                ),
            );
            return None;
        }
        if k.chars < MIN_IMPORTED_KEY_CHARS && !self.opts.accept_short_keys {
            self.note(
                NoteKind::Refused,
                subject,
                format!("{} characters (at least {MIN_IMPORTED_KEY_CHARS}: a shorter key can be guessed through a gateway): not carried; run with --accept-short-keys to carry it anyway, or re-key this client", k.chars),
            );
            return None;
        }
        Some(k.sha256.clone())
    }

    /// Revokes the twins of application `ts`'s keys of `kind` that 3scale no longer has
    /// (`key_links`: the key links of each 3scale application).
    fn drop_stale_keys(
        &mut self,
        key_links: &HashMap<u64, Vec<(Kind, String)>>,
        ts: u64,
        tid: &str,
        kind: Kind,
        keep: &[String],
    ) {
        let prefix = format!("{ts}/");
        let stale: Vec<(String, String)> = key_links
            .get(&ts)
            .into_iter()
            .flatten()
            .filter(|(k, id)| {
                *k == kind
                    && !id
                        .strip_prefix(&prefix)
                        .is_some_and(|digest| keep.iter().any(|d| d == digest))
            })
            .filter_map(|(k, id)| {
                self.links
                    .get(&(*k, id.clone()))
                    .map(|t| (id.clone(), t.clone()))
            })
            .collect();
        let Some(app) = self
            .app_pos
            .get(tid)
            .map(|p| &mut self.after.applications[*p])
        else {
            return;
        };
        for (id, key_id) in stale {
            match kind {
                Kind::UserKey => {
                    if let Some(i) = app.keys.iter().position(|k| k.id == key_id) {
                        let k = app.keys.remove(i);
                        self.taken.api_keys.remove(&k.key_sha256);
                    }
                }
                _ => {
                    if let Some(i) = app.app_keys.iter().position(|k| k.id == key_id) {
                        let k = app.app_keys.remove(i);
                        self.taken.drop_app_key(&k.key_sha256);
                    }
                }
            }
            self.links.remove(&(kind, id));
        }
    }

    /// Gives application `after.applications[pos]` (twin of 3scale application `ts`) key digest
    /// `d` of `kind`, unless it has it, it was revoked here, or a rule refuses it.
    fn add_key(&mut self, pos: usize, ts: u64, subject: &str, d: &str, kind: Kind) {
        let link_id = format!("{ts}/{d}");
        let label = match kind {
            Kind::UserKey => "user_key",
            _ => "app key",
        };
        let ksubject = format!("{subject} {label} {}", digest_prefix(d));
        let app = &self.after.applications[pos];
        let tid = app.id.clone();
        let held = match kind {
            Kind::UserKey => app
                .keys
                .iter()
                .find(|k| k.key_sha256 == d)
                .map(|k| k.id.clone()),
            _ => app
                .app_keys
                .iter()
                .find(|k| k.key_sha256 == d)
                .map(|k| k.id.clone()),
        };
        if let Some(linked) = self.links.get(&(kind, link_id.clone())).cloned() {
            if held.as_deref() == Some(linked.as_str()) {
                return;
            }
            if held.is_none() {
                self.note(
                    NoteKind::DeletedInTollgate,
                    ksubject,
                    format!(
                        "revoked in Tollgate ({linked}) while 3scale still has it: not added again"
                    ),
                );
                return;
            }
        }
        if let Some(id) = held {
            // Added here by hand before: the same key, now linked.
            self.set_link(kind, &link_id, &id);
            return;
        }
        match kind {
            Kind::UserKey => {
                if let Some(holder) = self.taken.api_keys.get(d) {
                    self.note(NoteKind::Refused, ksubject, format!("another application ({holder}) holds this key in Tollgate: keys are never shared (3scale keeps user keys unique per service, Tollgate across the installation)"));
                    return;
                }
                if self.taken.app_keys.contains_key(d) {
                    self.note(NoteKind::Refused, ksubject, "it is an app key of an application in Tollgate: an API key may not also be an app key");
                    return;
                }
                let app = &self.after.applications[pos];
                let active = app.keys.iter().filter(|k| k.expires_at.is_none()).count() as i64;
                if active >= MAX_ACTIVE_KEYS || app.keys.len() as i64 >= MAX_LIVE_KEYS {
                    self.note(NoteKind::Refused, ksubject, format!("its twin {tid} holds the most keys an application may ({MAX_ACTIVE_KEYS} active)"));
                    return;
                }
                let id = new_id("key");
                self.after.applications[pos].keys.push(KeyDoc {
                    id: id.clone(),
                    key_sha256: d.to_string(),
                    prefix: digest_prefix(d),
                    created_at: self.now,
                    expires_at: None,
                });
                self.taken.api_keys.insert(d.to_string(), tid);
                self.set_link(kind, &link_id, &id);
            }
            _ => {
                if self.taken.api_keys.contains_key(d) {
                    self.note(NoteKind::Refused, ksubject, "it is an API key (user key) of an application in Tollgate: an app key may not also be an API key");
                    return;
                }
                if self.after.applications[pos].app_keys.len() as i64 >= MAX_APP_KEYS {
                    self.note(
                        NoteKind::Refused,
                        ksubject,
                        format!("its twin {tid} holds {MAX_APP_KEYS} app keys already"),
                    );
                    return;
                }
                let id = new_id("akey");
                self.after.applications[pos].app_keys.push(AppKeyDoc {
                    id: id.clone(),
                    key_sha256: d.to_string(),
                    created_at: self.now,
                });
                *self.taken.app_keys.entry(d.to_string()).or_default() += 1;
                self.set_link(kind, &link_id, &id);
            }
        }
    }
}

/// The installation `current` should become to mirror `tenant` (see the module's rules), with
/// the links after this run and the report.
pub fn plan(
    tenant: &Tenant,
    current: &Document,
    links: &Links,
    opts: Options,
    now: i64,
) -> Planned {
    let mut p = Planner {
        opts,
        now,
        links: links.clone(),
        notes: Vec::new(),
        after: current.clone(),
        taken: Taken::of(current),
        services: HashMap::new(),
        metrics: HashMap::new(),
        plans: HashMap::new(),
        accounts: HashMap::new(),
        account_pos: current
            .accounts
            .iter()
            .enumerate()
            .map(|(i, a)| (a.id.clone(), i))
            .collect(),
        app_pos: current
            .applications
            .iter()
            .enumerate()
            .map(|(i, a)| (a.id.clone(), i))
            .collect(),
        tenant,
    };
    p.services();
    p.plans();
    p.accounts();
    p.applications();
    Planned {
        after: p.after,
        links: p.links,
        notes: p.notes,
    }
}
