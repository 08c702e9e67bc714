//! The planner and the writer, natively: a hand-made tenant in porta's shapes, planned against an
//! empty and then a populated installation (pure), and synced into an in-memory database twice
//! and after changes in 3scale (the second run writes nothing; a change writes just itself).

use super::plan::{plan, Kind, Links, NoteKind, Options};
use super::source::*;
use super::*;
use crate::domain::accounts::applications::{ApplicationState, SuspensionReason};
use crate::domain::transfer::{Document, FORMAT, FORMAT_VERSION};

const USER_KEY: &str = "4e7b7b09fb75bcb3f72459a336100dab";
const OTHER_KEY: &str = "9d1c2e3f4a5b6c7d8e9f0a1b2c3d4e5f";
const APP_KEY_1: &str = "appkey-one-0123456789abcdef";
const APP_KEY_2: &str = "appkey-two-0123456789abcdef";

fn metric(id: u64, name: &str, unit: Option<&str>, parent: Option<u64>) -> Metric {
    Metric {
        id,
        system_name: Some(name.into()),
        name: Some(name.into()),
        friendly_name: Some(name.into()),
        unit: unit.map(Into::into),
        parent_id: parent,
        created_at: Some("2024-01-02T03:04:05Z".into()),
    }
}

fn rule(
    id: u64,
    metric_id: u64,
    method: &str,
    pattern: &str,
    delta: i64,
    position: i64,
    last: bool,
) -> MappingRule {
    MappingRule {
        id,
        metric_id,
        pattern: pattern.into(),
        http_method: method.into(),
        delta,
        position: Some(position),
        last: Some(last),
        redirect_url: None,
        created_at: None,
    }
}

fn plan_of(id: u64, name: &str, state: &str, setup: &str, cost: &str, trial: i64) -> Plan {
    Plan {
        id,
        name: name.into(),
        state: Some(state.into()),
        setup_fee: Some(DecimalText(setup.into())),
        cost_per_month: Some(DecimalText(cost.into())),
        trial_period_days: Some(trial),
        custom: Some(false),
        system_name: Some(name.to_lowercase()),
        approval_required: Some(false),
        cancellation_period: Some(0),
        created_at: Some("2024-01-02T03:04:05Z".into()),
    }
}

fn limit(id: u64, metric_id: u64, period: &str, value: i64) -> Limit {
    Limit {
        id,
        period: period.into(),
        value,
        metric_id,
    }
}

fn price(id: u64, metric_id: u64, min: i64, max: Option<i64>, cost: &str) -> PricingRule {
    PricingRule {
        id,
        metric_id,
        cost_per_unit: DecimalText(cost.into()),
        min,
        max,
    }
}

fn account(id: u64, name: &str, email: &str, vat: &str, country: &str) -> AccountData {
    AccountData {
        account: Account {
            id,
            org_name: Some(name.into()),
            state: Some("approved".into()),
            vat_rate: Some(DecimalText(vat.into())),
            vat_code: None,
            billing_address: Some(BillingAddress {
                company: Some(name.into()),
                address1: Some("1 Main St".into()),
                address2: None,
                city: Some("Berlin".into()),
                country: Some(country.into()),
                state: None,
                zip: Some("10115".into()),
            }),
            created_at: Some("2024-01-02T03:04:05Z".into()),
        },
        email: Some(email.into()),
        users_problem: None,
    }
}

#[allow(clippy::too_many_arguments)]
fn app(
    id: u64,
    service: u64,
    plan: u64,
    account: u64,
    state: &str,
    user_key: Option<&str>,
    app_id: Option<&str>,
    app_keys: &[&str],
) -> ApplicationData {
    ApplicationData {
        application: Application {
            id,
            state: state.into(),
            service_id: service,
            plan_id: plan,
            account_id: account,
            name: Some(format!("App {id}")),
            description: Some(String::new()),
            user_key: user_key.map(|k| KeyField(Key::from_value(k))),
            application_id: app_id.map(Into::into),
            created_at: Some("2024-01-02T03:04:05Z".into()),
        },
        app_keys: app_keys.iter().map(|k| Key::from_value(k)).collect(),
        keys_problem: None,
    }
}

/// Two services (API key and App ID modes), methods, rules with placeholders, `$` and a query
/// part, plans with fees, trial, limits (one of 0) and tiered prices, two accounts, and
/// applications of every state and key style.
fn tenant() -> Tenant {
    let echo = ServiceData {
        service: Service {
            id: 10,
            name: "Echo".into(),
            system_name: "echo".into(),
            backend_version: Some("1".into()),
            state: Some("published".into()),
            created_at: Some("2024-01-02T03:04:05Z".into()),
        },
        metrics: vec![
            metric(100, "hits", Some("hit"), None),
            metric(101, "search", None, Some(100)),
            metric(102, "bytes", Some("byte"), None),
        ],
        mapping_rules: vec![
            rule(1000, 100, "GET", "/", 1, 1, false),
            rule(1001, 101, "GET", "/search/{q}$", 1, 2, false),
            rule(1002, 102, "POST", "/upload?kind={k}", 3, 3, true),
        ],
        proxy: Some(Proxy {
            credentials_location: Some("query".into()),
            auth_user_key: Some("user_key".into()),
            policies_config: Some(vec![
                PolicyConfig {
                    name: "apicast".into(),
                    version: Some("builtin".into()),
                    enabled: Some(true),
                },
                PolicyConfig {
                    name: "cors".into(),
                    version: Some("builtin".into()),
                    enabled: Some(true),
                },
            ]),
            ..Proxy::default()
        }),
        backend_usages: vec![BackendUsage {
            id: 5,
            path: Some("/v2".into()),
            backend_id: Some(6),
        }],
        plans: vec![
            PlanData {
                plan: plan_of(20, "Basic", "published", "9.99", "19.0", 7),
                limits: vec![
                    limit(200, 100, "minute", 5),
                    limit(201, 101, "day", 2),
                    limit(202, 999, "day", 1),
                ],
                pricing_rules: vec![
                    price(300, 100, 1, Some(100), "0.01"),
                    price(301, 100, 101, None, "0.0050"),
                ],
            },
            PlanData {
                plan: plan_of(21, "Free", "hidden", "0", "0.0", 0),
                limits: vec![limit(203, 101, "eternity", 0)],
                pricing_rules: vec![],
            },
        ],
    };
    let pairs = ServiceData {
        service: Service {
            id: 11,
            name: "Pairs".into(),
            system_name: "pairs".into(),
            backend_version: Some("2".into()),
            state: Some("published".into()),
            created_at: None,
        },
        metrics: vec![metric(110, "hits", Some("hit"), None)],
        mapping_rules: vec![rule(1100, 110, "GET", "/", 1, 1, false)],
        proxy: None,
        backend_usages: vec![],
        plans: vec![PlanData {
            plan: plan_of(22, "Pair plan", "published", "0", "5", 0),
            limits: vec![limit(204, 110, "hour", 10)],
            pricing_rules: vec![],
        }],
    };
    Tenant {
        services: vec![echo, pairs],
        accounts: vec![
            account(30, "Acme", "dev@acme.example", "19.0", "DE"),
            account(31, "Solo", "solo@example.com", "0", "Germany"),
        ],
        applications: vec![
            app(40, 10, 20, 30, "live", Some(USER_KEY), None, &[]),
            app(41, 10, 21, 31, "suspended", Some(OTHER_KEY), None, &[]),
            app(
                42,
                11,
                22,
                31,
                "live",
                None,
                Some("a1b2c3d4"),
                &[APP_KEY_1, APP_KEY_2],
            ),
            app(43, 10, 20, 30, "live", Some("short"), None, &[]),
            app(
                44,
                10,
                20,
                30,
                "pending",
                Some("pending-key-0123456789"),
                None,
                &[],
            ),
        ],
    }
}

fn empty() -> Document {
    Document {
        format: FORMAT.into(),
        format_version: FORMAT_VERSION,
        exported_at: 0,
        excluded: vec![],
        billing_settings: Default::default(),
        services: vec![],
        plans: vec![],
        accounts: vec![],
        applications: vec![],
    }
}

const NOW: i64 = 1_790_000_000;

fn twin<'a>(links: &'a Links, kind: Kind, id: &str) -> &'a str {
    links
        .get(&(kind, id.to_string()))
        .map(String::as_str)
        .unwrap_or_else(|| panic!("no twin of {kind:?} {id}"))
}

fn app_doc<'a>(
    doc: &'a Document,
    links: &Links,
    id: u64,
) -> &'a crate::domain::transfer::ApplicationDoc {
    let tid = twin(links, Kind::Application, &id.to_string());
    doc.applications.iter().find(|a| a.id == tid).unwrap()
}

#[test]
fn a_first_plan_carries_the_tenant_and_a_second_changes_nothing() {
    let t = tenant();
    let first = plan(&t, &empty(), &Links::new(), Options::default(), NOW);
    crate::domain::transfer::validate(&first.after).unwrap();
    let doc = &first.after;
    assert_eq!(doc.services.len(), 2);
    let echo = doc.services.iter().find(|s| s.name == "Echo").unwrap();
    let names: Vec<(&str, Option<&str>, &str)> = echo
        .metrics
        .iter()
        .map(|m| (m.name.as_str(), m.parent.as_deref(), m.unit.as_str()))
        .collect();
    assert_eq!(
        names,
        vec![
            ("hits", None, "hit"),
            ("bytes", None, "byte"),
            ("search", Some("hits"), "hit")
        ]
    );
    // Rules in 3scale's order, patterns as they were (the filter reads 3scale's syntax).
    let rules: Vec<(&str, &str, u32, bool)> = echo
        .mapping_rules
        .iter()
        .map(|r| (r.pattern.as_str(), r.metric.as_str(), r.delta, r.last))
        .collect();
    assert_eq!(
        rules,
        vec![
            ("/", "hits", 1, false),
            ("/search/{q}$", "search", 1, false),
            ("/upload?kind={k}", "bytes", 3, true)
        ]
    );
    assert!(
        echo.mapping_rules.windows(2).all(|w| w[0].id < w[1].id),
        "ids order evaluation"
    );
    let basic = doc.plans.iter().find(|p| p.name == "Basic").unwrap();
    assert_eq!(
        (
            basic.setup_fee.as_str(),
            basic.fixed_fee.as_str(),
            basic.trial_days
        ),
        ("9.99", "19.00", 7)
    );
    assert_eq!(
        basic.limits.len(),
        2,
        "the limit on a metric not imported is dropped"
    );
    assert_eq!(
        basic
            .pricing_rules
            .iter()
            .map(|p| (p.from, p.to, p.unit_price.as_str()))
            .collect::<Vec<_>>(),
        vec![(1, Some(100), "0.01"), (101, None, "0.005")]
    );
    let free = doc.plans.iter().find(|p| p.name == "Free").unwrap();
    assert_eq!(
        free.limits[0].value, 0,
        "a 0 limit (method not allowed) stays 0"
    );
    let acme = doc.accounts.iter().find(|a| a.name == "Acme").unwrap();
    assert_eq!(
        (
            acme.vat_rate.as_str(),
            acme.billing_address.country.as_str(),
            acme.billing_address.postal_code.as_str()
        ),
        ("19.00", "DE", "10115")
    );
    let solo = doc.accounts.iter().find(|a| a.name == "Solo").unwrap();
    assert_eq!(
        solo.billing_address.country, "",
        "a country name is not a code"
    );
    let links = &first.links;
    let live = app_doc(doc, links, 40);
    assert_eq!((live.state, live.keys.len()), (ApplicationState::Live, 1));
    assert_eq!(
        live.keys[0].key_sha256,
        crate::secrets::sha256_hex(USER_KEY)
    );
    assert_eq!(
        live.keys[0].prefix,
        format!("sha256:{}", &crate::secrets::sha256_hex(USER_KEY)[..8])
    );
    let suspended = app_doc(doc, links, 41);
    assert_eq!(
        (suspended.state, suspended.state_reason),
        (ApplicationState::Suspended, Some(SuspensionReason::Admin))
    );
    let pair = app_doc(doc, links, 42);
    assert_eq!(
        (pair.app_id.as_deref(), pair.app_keys.len(), pair.keys.len()),
        (Some("a1b2c3d4"), 2, 0)
    );
    assert!(
        app_doc(doc, links, 43).keys.is_empty(),
        "a 5-character key is not carried by default"
    );
    assert_eq!(
        app_doc(doc, links, 44).state,
        ApplicationState::Suspended,
        "pending: 3scale refuses it too"
    );
    // The trial counts from the application's creation in 3scale (long past here).
    assert_eq!(
        live.trial_ends_on,
        Some(crate::domain::billing::calendar::day_of(NOW))
    );
    // Nothing secret in the document.
    assert!(!format!("{doc:?}").contains(USER_KEY) && !format!("{doc:?}").contains(APP_KEY_1));

    // The report names what was not carried, and why.
    let has = |kind: NoteKind, subject: &str, reason: &str| {
        first
            .notes
            .iter()
            .any(|n| n.kind == kind && n.subject.contains(subject) && n.reason.contains(reason))
    };
    assert!(
        has(
            NoteKind::NotCarried,
            "policy \"cors\"",
            "no APIcast policies"
        ),
        "{:#?}",
        first.notes
    );
    assert!(has(
        NoteKind::NotCarried,
        "backend usage 5",
        "no backend APIs"
    ));
    assert!(has(NoteKind::NotCarried, "limit 202", "not imported"));
    assert!(has(
        NoteKind::Refused,
        "application 43",
        "--accept-short-keys"
    ));
    assert!(has(NoteKind::Refused, "billing_address.country", "Germany"));
    assert!(has(NoteKind::Adjusted, "application 44", "pending"));
    assert!(has(NoteKind::Gateway, "service 10", "query"));
    assert!(!first
        .notes
        .iter()
        .any(|n| n.reason.contains(USER_KEY) || n.subject.contains(USER_KEY)));

    // Run again against the result: the same installation, the same links.
    let second = plan(&t, &first.after, &first.links, Options::default(), NOW + 60);
    assert_eq!(second.after, first.after);
    assert_eq!(second.links, first.links);

    // Short keys on request.
    let short = plan(
        &t,
        &first.after,
        &first.links,
        Options {
            accept_short_keys: true,
        },
        NOW,
    );
    assert_eq!(app_doc(&short.after, &short.links, 43).keys.len(), 1);
}

#[test]
fn a_change_in_3scale_changes_its_twin_and_nothing_else() {
    let t = tenant();
    let first = plan(&t, &empty(), &Links::new(), Options::default(), NOW);
    let mut t2 = tenant();
    // A regenerated user key, a resumed application, a new limit value and fee, rules reordered,
    // an app key removed, an application deleted, an account's address.
    t2.applications[0].application.user_key = Some(KeyField(Key::from_value(
        "regenerated-key-0123456789abcdef",
    )));
    t2.applications[1].application.state = "live".into();
    t2.services[0].plans[0].limits[0].value = 50;
    t2.services[0].plans[0].plan.cost_per_month = Some(DecimalText("29.5".into()));
    t2.services[0].mapping_rules.swap(0, 1);
    t2.services[0].mapping_rules[0].position = Some(1);
    t2.services[0].mapping_rules[1].position = Some(2);
    t2.applications[2].app_keys.pop();
    t2.applications.retain(|a| a.application.id != 44);
    t2.accounts[0].email = Some("billing@acme.example".into());
    let second = plan(&t2, &first.after, &first.links, Options::default(), NOW);
    crate::domain::transfer::validate(&second.after).unwrap();
    let (a, l) = (&second.after, &second.links);
    let live = app_doc(a, l, 40);
    assert_eq!(live.keys.len(), 1);
    assert_eq!(
        live.keys[0].key_sha256,
        crate::secrets::sha256_hex("regenerated-key-0123456789abcdef"),
        "the old key is revoked, as in 3scale"
    );
    assert_eq!(app_doc(a, l, 41).state, ApplicationState::Live);
    assert_eq!(app_doc(a, l, 42).app_keys.len(), 1);
    let gone = app_doc(a, l, 44);
    assert_eq!(
        (gone.state, gone.state_reason),
        (ApplicationState::Suspended, Some(SuspensionReason::Admin))
    );
    assert!(second
        .notes
        .iter()
        .any(|n| n.kind == NoteKind::GoneFrom3scale && n.subject == "application 44"));
    let basic = a.plans.iter().find(|p| p.name == "Basic").unwrap();
    assert_eq!(basic.fixed_fee, "29.50");
    assert!(basic
        .limits
        .iter()
        .any(|l| l.metric == "hits" && l.value == 50));
    let echo = a.services.iter().find(|s| s.name == "Echo").unwrap();
    let order: Vec<&str> = echo
        .mapping_rules
        .iter()
        .map(|r| r.pattern.as_str())
        .collect();
    assert_eq!(order, vec!["/search/{q}$", "/", "/upload?kind={k}"]);
    assert!(
        echo.mapping_rules.windows(2).all(|w| w[0].id < w[1].id),
        "reordered rules get ids in the new order"
    );
    assert_eq!(
        a.accounts.iter().find(|x| x.name == "Acme").unwrap().email,
        "billing@acme.example"
    );
    // Everything else as it was: the ids of untouched objects, the other plan, the other service.
    assert_eq!(
        a.services.iter().find(|s| s.name == "Pairs"),
        first.after.services.iter().find(|s| s.name == "Pairs")
    );
    assert_eq!(
        a.plans.iter().find(|p| p.name == "Free"),
        first.after.plans.iter().find(|p| p.name == "Free")
    );
    // And again: nothing more.
    let third = plan(&t2, &second.after, &second.links, Options::default(), NOW);
    assert_eq!(third.after, second.after);
    assert_eq!(third.links, second.links);
}

#[test]
fn tollgate_decisions_stand_deleted_twins_revoked_keys_and_non_payment() {
    let t = tenant();
    let first = plan(&t, &empty(), &Links::new(), Options::default(), NOW);
    let mut doc = first.after.clone();
    let links = first.links.clone();
    // The operator revokes the imported user key of 40, deletes application 41, and Tollgate's
    // billing suspends 42 for non-payment.
    let a40 = twin(&links, Kind::Application, "40").to_string();
    doc.applications
        .iter_mut()
        .find(|a| a.id == a40)
        .unwrap()
        .keys
        .clear();
    let a41 = twin(&links, Kind::Application, "41").to_string();
    doc.applications.retain(|a| a.id != a41);
    let a42 = twin(&links, Kind::Application, "42").to_string();
    let pair = doc.applications.iter_mut().find(|a| a.id == a42).unwrap();
    pair.state = ApplicationState::Suspended;
    pair.state_reason = Some(SuspensionReason::NonPayment);
    let next = plan(&t, &doc, &links, Options::default(), NOW);
    assert_eq!(next.after, doc, "nothing is made again or resumed");
    let has = |kind: NoteKind, subject: &str| {
        next.notes
            .iter()
            .any(|n| n.kind == kind && n.subject.contains(subject))
    };
    assert!(
        has(NoteKind::DeletedInTollgate, "application 40"),
        "{:#?}",
        next.notes
    );
    assert!(has(NoteKind::DeletedInTollgate, "application 41"));
    assert!(has(NoteKind::Adjusted, "application 42"));
}

#[test]
fn collisions_with_what_is_here_are_refused_never_merged() {
    let t = tenant();
    // An installation with a hand-made service named "Echo", an application holding USER_KEY
    // and another holding app_id "a1b2c3d4".
    let mut here = plan(&t, &empty(), &Links::new(), Options::default(), NOW).after;
    for a in &mut here.applications {
        a.id = format!("hand_{}", a.id);
    }
    let mut here_links = Links::new();
    // Forget the links: to the importer these are someone else's objects.
    here_links.clear();
    let next = plan(&t, &here, &here_links, Options::default(), NOW);
    crate::domain::transfer::validate(&next.after).unwrap();
    let echo_names: Vec<&str> = next
        .after
        .services
        .iter()
        .map(|s| s.name.as_str())
        .filter(|n| n.starts_with("Echo"))
        .collect();
    assert_eq!(
        echo_names,
        vec!["Echo", "Echo (echo)"],
        "a second service, named apart"
    );
    let has = |kind: NoteKind, subject: &str, reason: &str| {
        next.notes
            .iter()
            .any(|n| n.kind == kind && n.subject.contains(subject) && n.reason.contains(reason))
    };
    assert!(
        has(
            NoteKind::Refused,
            "application 40 \"App 40\" user_key",
            "another application"
        ),
        "{:#?}",
        next.notes
    );
    assert!(has(
        NoteKind::Refused,
        "application 42 \"App 42\" app_id",
        "belongs to"
    ));
    let fresh = app_doc(&next.after, &next.links, 42);
    assert!(fresh.app_id.is_none() && fresh.app_keys.is_empty());
}

#[test]
fn an_app_id_and_a_user_key_can_move_between_applications_in_one_run() {
    let mut t = tenant();
    t.applications
        .push(app(45, 11, 22, 30, "live", None, Some("e5f6a7b8"), &[]));
    let first = plan(&t, &empty(), &Links::new(), Options::default(), NOW);
    let mut t2 = t.clone();
    for a in &mut t2.applications {
        match a.application.id {
            42 => a.application.application_id = Some("e5f6a7b8".into()),
            45 => a.application.application_id = Some("a1b2c3d4".into()),
            40 => a.application.user_key = Some(KeyField(Key::from_value(OTHER_KEY))),
            41 => a.application.user_key = Some(KeyField(Key::from_value(USER_KEY))),
            _ => {}
        }
    }
    let next = plan(&t2, &first.after, &first.links, Options::default(), NOW);
    crate::domain::transfer::validate(&next.after).unwrap();
    assert_eq!(
        app_doc(&next.after, &next.links, 42).app_id.as_deref(),
        Some("e5f6a7b8")
    );
    assert_eq!(
        app_doc(&next.after, &next.links, 45).app_id.as_deref(),
        Some("a1b2c3d4")
    );
    assert_eq!(
        app_doc(&next.after, &next.links, 41).keys[0].key_sha256,
        crate::secrets::sha256_hex(USER_KEY)
    );
}

// ---- through the database ----

async fn pool() -> crate::store::Pool {
    let pool = crate::store::connect_in_memory().await.unwrap();
    crate::store::migrate(&pool).await.unwrap();
    pool
}

const SOURCE: &str = "https://acme-admin.3scale.net";

#[tokio::test]
async fn sync_twice_writes_once_and_a_change_writes_itself() {
    let pool = pool().await;
    let t = tenant();
    // A dry run writes nothing.
    let dry = sync(&pool, SOURCE, &t, true, Options::default())
        .await
        .unwrap();
    assert!(
        !dry.written && dry.counts.applications_created == 5,
        "{:?}",
        dry.counts
    );
    assert!(dry.changes.iter().any(|l| l.starts_with("create service")));
    assert!(crate::domain::transfer::export(&pool)
        .await
        .unwrap()
        .services
        .is_empty());
    let first = sync(&pool, SOURCE, &t, false, Options::default())
        .await
        .unwrap();
    assert!(first.written);
    assert_eq!(
        (
            first.counts.services_created,
            first.counts.plans_created,
            first.counts.accounts_created
        ),
        (2, 3, 2)
    );
    assert_eq!(
        (first.counts.keys_added, first.counts.app_keys_added),
        (3, 2)
    );
    let after_first = crate::domain::transfer::export(&pool).await.unwrap();
    let events: Vec<(String,)> = sqlx::query_as("SELECT action FROM audit_events")
        .fetch_all(&pool)
        .await
        .unwrap();
    assert_eq!(events, vec![("threescale_import.applied".to_string(),)]);

    let second = sync(&pool, SOURCE, &t, false, Options::default())
        .await
        .unwrap();
    assert!(
        !second.written && second.counts.is_empty() && second.changes.is_empty(),
        "{:?}",
        second.changes
    );
    let mut again = crate::domain::transfer::export(&pool).await.unwrap();
    again.exported_at = after_first.exported_at;
    assert_eq!(again, after_first);

    let mut t2 = tenant();
    t2.services[0].plans[0].limits[0].value = 50;
    t2.applications[0].application.user_key = Some(KeyField(Key::from_value(
        "regenerated-key-0123456789abcdef",
    )));
    t2.applications[0].application.plan_id = 21;
    t2.services[0].mapping_rules[2].delta = 4;
    let third = sync(&pool, SOURCE, &t2, false, Options::default())
        .await
        .unwrap();
    assert_eq!(
        (
            third.counts.plans_updated,
            third.counts.applications_updated,
            third.counts.keys_added,
            third.counts.keys_revoked,
            third.counts.mapping_rules_updated
        ),
        (1, 1, 1, 1, 1),
        "{:#?}",
        third.changes
    );
    assert_eq!(
        third.counts.applications_created
            + third.counts.accounts_updated
            + third.counts.services_updated,
        0
    );
    // The plan change is billed as one: the old contract ended, a new one started.
    let contracts: Vec<(String, Option<i64>)> = sqlx::query_as(
        "SELECT plan_id, ends_on FROM contracts WHERE application_id = (SELECT tollgate_id FROM threescale_links WHERE kind = 'application' AND threescale_id = '40') ORDER BY created_at, id",
    )
    .fetch_all(&pool)
    .await
    .unwrap();
    assert_eq!(contracts.len(), 2);
    assert!(contracts[0].1.is_some() && contracts[1].1.is_none());
    let fourth = sync(&pool, SOURCE, &t2, false, Options::default())
        .await
        .unwrap();
    assert!(!fourth.written, "{:?}", fourth.changes);
    // Another tenant's links are its own: the same ids there are different objects.
    let other = sync(
        &pool,
        "https://other-admin.3scale.net",
        &t2,
        true,
        Options::default(),
    )
    .await
    .unwrap();
    assert_eq!(other.counts.services_created, 2);
    assert!(other
        .notes
        .iter()
        .any(|n| n.subject.contains("service 10") && n.reason.contains("named")));
}
