//! Admin portal: services with their metrics and mapping rules, and plans with limits, pricing rules
//! and a cost preview. Every change is the catalog's domain function the admin API calls, with the
//! form read into the API's input type ([`parsed`]), so the same validation refuses it and the
//! same revision bump tells gateways; errors come back next to the field they name.

use std::collections::BTreeMap;

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::Response;
use rust_decimal::Decimal;
use serde::Serialize;
use serde_json::{json, Value};

use super::access::{redirect, AdminSession, Fields, WriteForm};
use super::forms::{
    error_for, general_error, get, link, not_found, options, parsed, refused, seg, show,
    write_form, FormError,
};
use crate::domain::access::tokens::Scope;
use crate::domain::billing::currency::Currency;
use crate::domain::billing::lines::PlanTerms;
use crate::domain::billing::preview::month_cost;
use crate::domain::catalog::plans::{self, Plan};
use crate::domain::catalog::{mapping_rules, metrics, services};
use crate::domain::{DomainResult, PageRequest};
use crate::portal::html::{html, input, notice, post_button, select, table, Markup};
use crate::state::AppState;

const PERIODS: &[&str] = &["minute", "hour", "day", "week", "month", "year", "eternity"];
const METHODS: &[&str] = &[
    "GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS", "ANY",
];
const MODELS: &[&str] = &["graduated", "volume", "package"];
/// Hits the cost preview starts with when none is asked for.
const DEFAULT_PREVIEW_UNITS: u64 = 10_000;
/// Rows a catalog page lists (the API's largest page).
const PAGE_ROWS: i64 = crate::domain::page::MAX_PAGE;

/// The first [`PAGE_ROWS`] items of a list; a list that cannot be read shows empty, as before.
fn first_page<T>(list: DomainResult<crate::domain::Page<T>>) -> Vec<T> {
    list.map(|p| p.data).unwrap_or_default()
}

fn first_rows() -> PageRequest {
    PageRequest {
        limit: PAGE_ROWS,
        after: String::new(),
    }
}

/// Rows as the API shows them, for a patch body that sends them back with one more or one less.
fn json_rows<T: Serialize>(rows: &[T]) -> Vec<Value> {
    rows.iter()
        .filter_map(|r| serde_json::to_value(r).ok())
        .collect()
}

/// A whole number from a form field; anything else goes to the API as text, whose error names it.
fn number(f: &Fields, name: &str) -> Value {
    let v = get(f, name);
    v.parse::<u64>().map(|n| json!(n)).unwrap_or(json!(v))
}

fn optional_number(f: &Fields, name: &str) -> Value {
    if get(f, name).is_empty() {
        Value::Null
    } else {
        number(f, name)
    }
}

// ---- services ----

pub async fn services(State(s): State<AppState>, admin: AdminSession) -> Response {
    services_page(&s, &admin, &Fields::new(), &None, StatusCode::OK).await
}

async fn services_page(
    s: &AppState,
    admin: &AdminSession,
    f: &Fields,
    e: &FormError,
    status: StatusCode,
) -> Response {
    let list = first_page(services::list_services(&s.pool, &first_rows()).await);
    let rows: Vec<Vec<Markup>> = list
        .iter()
        .map(|v| {
            vec![
                link(&format!("/admin/services/{}", v.id), &v.name),
                html! { code { (v.id) } },
            ]
        })
        .collect();
    let form = write_form(
        admin,
        "/admin/services",
        "New service",
        input(
            "name",
            "Name",
            "text",
            &get(f, "name"),
            error_for(e, "name"),
            true,
        ),
        "Create service",
    );
    let body = html! {
        (general_error(e, &["name"]))
        (table("services", &["Name", "Id"], &rows))
        (form)
    };
    show(admin, "Services", status, body)
}

pub async fn create_service(
    State(s): State<AppState>,
    WriteForm { admin, fields: f }: WriteForm,
) -> Response {
    let created = match parsed(&json!({"name": get(&f, "name")})) {
        Ok(input) => services::create_service(&s.pool, &admin.actor(), &input).await,
        Err(e) => Err(e),
    };
    match created {
        Ok(svc) => redirect(&format!("/admin/services/{}", seg(&svc.id))),
        Err(e) => {
            let (status, e) = refused(e);
            services_page(&s, &admin, &f, &e, status).await
        }
    }
}

pub async fn service(
    State(s): State<AppState>,
    admin: AdminSession,
    Path(id): Path<String>,
) -> Response {
    service_page(
        &s,
        &admin,
        &id,
        &Fields::new(),
        &None,
        html! {},
        StatusCode::OK,
    )
    .await
}

async fn service_page(
    s: &AppState,
    admin: &AdminSession,
    id: &str,
    f: &Fields,
    e: &FormError,
    done: Markup,
    status: StatusCode,
) -> Response {
    let Ok(svc) = services::get_service(&s.pool, id).await else {
        return not_found(admin);
    };
    let metrics = first_page(metrics::list_metrics(&s.pool, id, &first_rows()).await);
    let rules = first_page(mapping_rules::list_mapping_rules(&s.pool, id, &first_rows()).await);
    let metric_rows: Vec<Vec<Markup>> = metrics
        .iter()
        .map(|m| {
            vec![
                html! { (m.name) },
                html! { (m.unit) },
                html! { (m.parent.as_deref().unwrap_or("")) },
            ]
        })
        .collect();
    let names: Vec<String> = metrics.iter().map(|m| m.name.clone()).collect();
    let metric_options: Vec<(String, String)> =
        names.iter().map(|n| (n.clone(), n.clone())).collect();
    let mut parents = vec![(String::new(), "(none: a metric of its own)".to_string())];
    parents.extend(metric_options.iter().cloned());
    let rule_rows: Vec<Vec<Markup>> = rules
        .iter()
        .map(|r| {
            let rid = &r.id;
            vec![
                html! { (r.method) },
                html! { code { (r.pattern) } },
                html! { (r.metric) },
                html! { (r.delta) },
                if admin.scope == Scope::Write {
                    post_button(
                        &format!(
                            "/admin/services/{}/mapping_rules/{}/delete",
                            seg(id),
                            seg(rid)
                        ),
                        &admin.csrf,
                        "Delete",
                    )
                } else {
                    html! {}
                },
            ]
        })
        .collect();
    let metric_form = write_form(
        admin,
        &format!("/admin/services/{}/metrics", seg(id)),
        "New metric or method",
        html! {
            (input(
                "name",
                "Name",
                "text",
                &get(f, "name"),
                error_for(e, "name"),
                true
            ))
            (input(
                "unit",
                "Unit",
                "text",
                f.get("unit").map(String::as_str).unwrap_or("hit"),
                error_for(e, "unit"),
                true
            ))
            (select(
                "parent",
                "Parent (a method rolls up into it)",
                &parents,
                &get(f, "parent"),
                error_for(e, "parent")
            ))
        },
        "Add metric",
    );
    let rule_form = write_form(
        admin,
        &format!("/admin/services/{}/mapping_rules", seg(id)),
        "New mapping rule",
        html! {
            (select(
                "method",
                "HTTP method",
                &options(METHODS),
                &get(f, "method"),
                error_for(e, "method")
            ))
            (input(
                "pattern",
                "Path pattern (e.g. /v1/search/{id}$)",
                "text",
                &get(f, "pattern"),
                error_for(e, "pattern"),
                true
            ))
            (select(
                "metric",
                "Metric",
                &metric_options,
                &get(f, "metric"),
                error_for(e, "metric")
            ))
            (input(
                "delta",
                "Counts",
                "number",
                f.get("delta").map(String::as_str).unwrap_or("1"),
                error_for(e, "delta"),
                true
            ))
        },
        "Add rule",
    );
    let body = html! {
        (done)
        (general_error(e, &["name", "unit", "parent", "method", "pattern", "metric", "delta"]))
        p { "Id " code { (id) } }
        section {
            h2 { "Metrics" }
            (table("metrics", &["Name", "Unit", "Parent"], &metric_rows))
            (metric_form)
        }
        section {
            h2 { "Mapping rules" }
            (table("mapping rules", &["Method", "Pattern", "Metric", "Counts", ""], &rule_rows))
            (rule_form)
        }
    };
    show(admin, &format!("Service {}", svc.name), status, body)
}

pub async fn create_metric(
    State(s): State<AppState>,
    Path(id): Path<String>,
    WriteForm { admin, fields: f }: WriteForm,
) -> Response {
    let mut body = json!({"name": get(&f, "name"), "unit": get(&f, "unit")});
    let parent = get(&f, "parent");
    if !parent.is_empty() {
        body["parent"] = json!(parent);
    }
    let done = match parsed(&body) {
        Ok(input) => metrics::create_metric(&s.pool, &admin.actor(), &id, &input)
            .await
            .map(drop),
        Err(e) => Err(e),
    };
    after(&s, &admin, &id, &f, done, "Metric added.").await
}

pub async fn create_rule(
    State(s): State<AppState>,
    Path(id): Path<String>,
    WriteForm { admin, fields: f }: WriteForm,
) -> Response {
    let body = json!({"method": get(&f, "method"), "pattern": get(&f, "pattern"),
                      "metric": get(&f, "metric"), "delta": number(&f, "delta")});
    let done = match parsed(&body) {
        Ok(input) => mapping_rules::create_mapping_rule(&s.pool, &admin.actor(), &id, &input)
            .await
            .map(drop),
        Err(e) => Err(e),
    };
    after(&s, &admin, &id, &f, done, "Mapping rule added.").await
}

pub async fn delete_rule(
    State(s): State<AppState>,
    Path((id, rule)): Path<(String, String)>,
    WriteForm { admin, .. }: WriteForm,
) -> Response {
    let done = mapping_rules::delete_mapping_rule(&s.pool, &admin.actor(), &id, &rule)
        .await
        .map(drop);
    after(
        &s,
        &admin,
        &id,
        &Fields::new(),
        done,
        "Mapping rule deleted.",
    )
    .await
}

async fn after(
    s: &AppState,
    admin: &AdminSession,
    id: &str,
    f: &Fields,
    result: DomainResult<()>,
    done: &str,
) -> Response {
    match result {
        Ok(()) => {
            service_page(
                s,
                admin,
                id,
                &Fields::new(),
                &None,
                notice(done),
                StatusCode::OK,
            )
            .await
        }
        Err(e) => {
            let (status, e) = refused(e);
            service_page(s, admin, id, f, &e, html! {}, status).await
        }
    }
}

// ---- plans ----

async fn service_options(s: &AppState) -> Vec<(String, String)> {
    first_page(services::list_services(&s.pool, &first_rows()).await)
        .into_iter()
        .map(|v| (v.id, v.name))
        .collect()
}

pub async fn plans(State(s): State<AppState>, admin: AdminSession) -> Response {
    plans_page(&s, &admin, &Fields::new(), &None, StatusCode::OK).await
}

async fn plans_page(
    s: &AppState,
    admin: &AdminSession,
    f: &Fields,
    e: &FormError,
    status: StatusCode,
) -> Response {
    let services = service_options(s).await;
    let list = first_page(plans::list_plans(&s.pool, &first_rows(), "").await);
    let rows: Vec<Vec<Markup>> = list
        .iter()
        .filter(|p| !p.custom)
        .map(|p| {
            let service = services
                .iter()
                .find(|(id, _)| *id == p.service_id)
                .map(|(_, n)| n.clone())
                .unwrap_or_default();
            vec![
                link(&format!("/admin/plans/{}", seg(&p.id)), &p.name),
                html! { (service) },
                html! { (p.state.as_str()) },
                html! { (p.fixed_fee) },
                html! { (p.setup_fee) },
                html! { (p.trial_days) },
            ]
        })
        .collect();
    let form = write_form(
        admin,
        "/admin/plans",
        "New plan",
        html! {
            (select(
                "service_id",
                "Service",
                &services,
                &get(f, "service_id"),
                error_for(e, "service_id")
            ))
            (input(
                "name",
                "Name",
                "text",
                &get(f, "name"),
                error_for(e, "name"),
                true
            ))
            (input(
                "fixed_fee",
                "Monthly fee",
                "text",
                f.get("fixed_fee").map(String::as_str).unwrap_or("0"),
                error_for(e, "fixed_fee"),
                true
            ))
            (input(
                "setup_fee",
                "Setup fee",
                "text",
                f.get("setup_fee").map(String::as_str).unwrap_or("0"),
                error_for(e, "setup_fee"),
                true
            ))
            (input(
                "trial_days",
                "Trial days",
                "number",
                f.get("trial_days").map(String::as_str).unwrap_or("0"),
                error_for(e, "trial_days"),
                true
            ))
        },
        "Create plan",
    );
    let body = html! {
        (general_error(e, &["service_id", "name", "fixed_fee", "setup_fee", "trial_days"]))
        (table(
            "plans",
            &["Name", "Service", "State", "Monthly fee", "Setup fee", "Trial days"],
            &rows
        ))
        (form)
    };
    show(admin, "Plans", status, body)
}

fn plan_fields(f: &Fields) -> Value {
    json!({"name": get(f, "name"), "fixed_fee": get(f, "fixed_fee"), "setup_fee": get(f, "setup_fee"),
           "trial_days": number(f, "trial_days")})
}

pub async fn create_plan(
    State(s): State<AppState>,
    WriteForm { admin, fields: f }: WriteForm,
) -> Response {
    let mut body = plan_fields(&f);
    body["service_id"] = json!(get(&f, "service_id"));
    let created = match parsed(&body) {
        Ok(input) => plans::create_plan(&s.pool, &admin.actor(), &input).await,
        Err(e) => Err(e),
    };
    match created {
        Ok(plan) => redirect(&format!("/admin/plans/{}", seg(&plan.id))),
        Err(e) => {
            let (status, e) = refused(e);
            plans_page(&s, &admin, &f, &e, status).await
        }
    }
}

pub async fn plan(
    State(s): State<AppState>,
    admin: AdminSession,
    Path(id): Path<String>,
    Query(q): Query<Fields>,
) -> Response {
    plan_page(
        &s,
        &admin,
        &id,
        &q,
        &Fields::new(),
        &None,
        html! {},
        StatusCode::OK,
    )
    .await
}

/// The preview's figures: units asked per priced metric ("hits" when none is priced), and the
/// cost of a month at those units, or why there is none.
fn preview(
    plan: Option<&PlanTerms>,
    currency: &str,
    q: &Fields,
) -> (BTreeMap<String, u64>, Result<String, String>) {
    let Some(plan) = plan else {
        return (BTreeMap::new(), Err("the plan is gone".into()));
    };
    let Some(cur) = Currency::parse(currency) else {
        return (
            BTreeMap::new(),
            Err(format!("unknown billing currency {currency}")),
        );
    };
    let mut names: Vec<&str> = plan
        .metrics
        .iter()
        .map(|m| m.metric_name.as_str())
        .collect();
    if names.is_empty() {
        names.push("hits");
    }
    let mut units = BTreeMap::new();
    for metric in names {
        let raw = q
            .get(&format!("units.{metric}"))
            .map(|v| v.trim().to_string());
        let n = match raw.as_deref() {
            None | Some("") => DEFAULT_PREVIEW_UNITS,
            Some(v) => match v.parse::<u64>() {
                Ok(n) => n,
                Err(_) => return (units, Err(format!("{metric}: a whole number of units"))),
            },
        };
        units.insert(metric.to_string(), n);
    }
    match month_cost(cur, plan, &units) {
        Ok(c) => {
            let parts: Vec<String> = units
                .iter()
                .map(|(m, n)| {
                    let amount = c.usage.get(m).copied().unwrap_or(Decimal::ZERO);
                    format!("{} for {n} {m}", cur.format(amount))
                })
                .collect();
            let text = format!(
                "{} {currency} a month: monthly fee {}, usage {} (before VAT; a first month is prorated and the setup fee added)",
                cur.format(c.total),
                cur.format(c.fixed_fee),
                parts.join(", ")
            );
            (units, Ok(text))
        }
        Err(_) => (units, Err("the amount is too large to compute".into())),
    }
}

#[allow(clippy::too_many_arguments)]
pub(super) async fn plan_page(
    s: &AppState,
    admin: &AdminSession,
    id: &str,
    q: &Fields,
    f: &Fields,
    e: &FormError,
    done: Markup,
    status: StatusCode,
) -> Response {
    let Ok(plan) = plans::get_plan(&s.pool, id).await else {
        return not_found(admin);
    };
    // Unreadable settings show no currency, as before (the preview says why it has no figure).
    let currency = crate::domain::billing::settings::load(&s.pool)
        .await
        .map(|st| st.currency)
        .unwrap_or_default();
    let metrics = first_page(metrics::list_metrics(&s.pool, &plan.service_id, &first_rows()).await);
    let metric_options: Vec<(String, String)> = metrics
        .iter()
        .map(|m| (m.name.clone(), m.name.clone()))
        .collect();
    let base = format!("/admin/plans/{}", seg(id));
    let write = admin.scope == Scope::Write;
    let remove = |kind: &str, i: usize| {
        if write {
            post_button(&format!("{base}/{kind}/{i}/remove"), &admin.csrf, "Remove")
        } else {
            html! {}
        }
    };
    let limit_rows: Vec<Vec<Markup>> = plan
        .limits
        .iter()
        .enumerate()
        .map(|(i, l)| {
            vec![
                html! { (l.metric) },
                html! { (l.period.as_str()) },
                html! { (l.value) },
                remove("limits", i),
            ]
        })
        .collect();
    let rule_rows: Vec<Vec<Markup>> = plan
        .pricing_rules
        .iter()
        .enumerate()
        .map(|(i, r)| {
            vec![
                html! { (r.metric) },
                html! { (r.model.as_str()) },
                html! { (r.from) },
                html! {
                    @match r.to { None => "no end", Some(to) => (to) }
                },
                html! { (r.unit_price) },
                html! { (r.package_size.map(|n| n.to_string()).unwrap_or_default()) },
                remove("pricing_rules", i),
            ]
        })
        .collect();
    // What the form shows: the field as posted (after a refusal), else the plan's value.
    let stored = |name: &str| match name {
        "name" => plan.name.clone(),
        "state" => plan.state.as_str().to_string(),
        "fixed_fee" => plan.fixed_fee.to_string(),
        "setup_fee" => plan.setup_fee.to_string(),
        "trial_days" => plan.trial_days.to_string(),
        _ => String::new(),
    };
    let val = |name: &str| f.get(name).cloned().unwrap_or_else(|| stored(name));
    let details = write_form(
        admin,
        &base,
        "Plan",
        html! {
            (input(
                "name",
                "Name",
                "text",
                &val("name"),
                error_for(e, "name"),
                true
            ))
            (select(
                "state",
                "State",
                &options(&["hidden", "published"]),
                &val("state"),
                error_for(e, "state")
            ))
            (input(
                "fixed_fee",
                &format!("Monthly fee ({currency})"),
                "text",
                &val("fixed_fee"),
                error_for(e, "fixed_fee"),
                true
            ))
            (input(
                "setup_fee",
                &format!("Setup fee ({currency})"),
                "text",
                &val("setup_fee"),
                error_for(e, "setup_fee"),
                true
            ))
            (input(
                "trial_days",
                "Trial days",
                "number",
                &val("trial_days"),
                error_for(e, "trial_days"),
                true
            ))
        },
        "Save plan",
    );
    let limit_form = write_form(
        admin,
        &format!("{base}/limits"),
        "New limit",
        html! {
            (select(
                "metric",
                "Metric",
                &metric_options,
                &get(f, "metric"),
                error_for(e, "metric")
            ))
            (select(
                "period",
                "Period",
                &options(PERIODS),
                &get(f, "period"),
                error_for(e, "period")
            ))
            (input(
                "value",
                "At most",
                "number",
                &get(f, "value"),
                error_for(e, "value"),
                true
            ))
        },
        "Add limit",
    );
    let rule_form = write_form(
        admin,
        &format!("{base}/pricing_rules"),
        "New pricing rule",
        html! {
            (select(
                "rule_metric",
                "Metric",
                &metric_options,
                &get(f, "rule_metric"),
                error_for(e, "rule_metric")
            ))
            (select(
                "model",
                "Model",
                &options(MODELS),
                &get(f, "model"),
                error_for(e, "model")
            ))
            (input(
                "from",
                "From unit",
                "number",
                f.get("from").map(String::as_str).unwrap_or("1"),
                error_for(e, "from"),
                true
            ))
            (input(
                "to",
                "To unit (empty: no end)",
                "number",
                &get(f, "to"),
                error_for(e, "to"),
                false
            ))
            (input(
                "unit_price",
                &format!("Price per unit, or per package ({currency})"),
                "text",
                &get(f, "unit_price"),
                error_for(e, "unit_price"),
                true
            ))
            (input(
                "package_size",
                "Package size (package model)",
                "number",
                &get(f, "package_size"),
                error_for(e, "package_size"),
                false
            ))
        },
        "Add pricing rule",
    );
    let (units, cost) = match crate::domain::billing::run::load_plan(&s.pool, id).await {
        Ok(terms) => preview(terms.as_ref(), &currency, q),
        Err(e) => (
            BTreeMap::new(),
            Err(format!("no preview: {}", e.public_message())),
        ),
    };
    let unit_inputs: Vec<Markup> = units
        .iter()
        .map(|(m, n)| {
            input(
                &format!("units.{m}"),
                &format!("Units of {m} in a month"),
                "number",
                &n.to_string(),
                None,
                true,
            )
        })
        .collect();
    let body = html! {
        (done)
        (general_error(e, &["name", "state", "fixed_fee", "setup_fee", "trial_days", "metric", "period", "value", "rule_metric", "model", "from", "to", "unit_price", "package_size", "thresholds"]))
        p { "Id " code { (id) } " · service " code { (plan.service_id) } }
        (details)
        section {
            h2 { "Limits" }
            (table("limits", &["Metric", "Period", "At most", ""], &limit_rows))
            (limit_form)
        }
        section {
            h2 { "Pricing rules" }
            (table("pricing rules", &["Metric", "Model", "From", "To", "Unit price", "Package", ""], &rule_rows))
            (rule_form)
        }
        (super::alerts::plan_section(s, admin, id, f, e).await)
        section {
            h2 { "Cost preview" }
            form method="get" action=(base) {
                @for i in &unit_inputs { (i) }
                button type="submit" { "Preview" }
            }
            @match &cost {
                Ok(c) => p id="preview" role="status" { strong { (c) } },
                Err(m) => p id="preview" class="error" role="alert" { (m) },
            }
        }
    };
    show(admin, &format!("Plan {}", plan.name), status, body)
}

/// PATCHes the plan and shows it again: the notice on success, the error by its field otherwise.
async fn patch_plan(
    s: &AppState,
    admin: &AdminSession,
    id: &str,
    body: Value,
    f: &Fields,
    done: &str,
) -> Response {
    let updated = match parsed(&body) {
        Ok(input) => plans::update_plan(&s.pool, &admin.actor(), id, &input).await,
        Err(e) => Err(e),
    };
    match updated {
        Ok(_) => {
            plan_page(
                s,
                admin,
                id,
                &Fields::new(),
                &Fields::new(),
                &None,
                notice(done),
                StatusCode::OK,
            )
            .await
        }
        Err(e) => {
            let (status, e) = refused(e);
            // Errors about a rule row name e.g. `pricing_rules[2].metric`: the form's field is `rule_metric`.
            let e = e.map(|(p, m)| {
                if p.starts_with("pricing_rules") && p.ends_with(".metric") {
                    ("rule_metric".to_string(), m)
                } else {
                    (p, m)
                }
            });
            plan_page(s, admin, id, &Fields::new(), f, &e, html! {}, status).await
        }
    }
}

async fn current_plan(s: &AppState, id: &str) -> Option<Plan> {
    plans::get_plan(&s.pool, id).await.ok()
}

pub async fn update_plan(
    State(s): State<AppState>,
    Path(id): Path<String>,
    WriteForm { admin, fields: f }: WriteForm,
) -> Response {
    let mut body = plan_fields(&f);
    body["state"] = json!(get(&f, "state"));
    patch_plan(&s, &admin, &id, body, &f, "Plan saved.").await
}

pub async fn add_limit(
    State(s): State<AppState>,
    Path(id): Path<String>,
    WriteForm { admin, fields: f }: WriteForm,
) -> Response {
    let Some(plan) = current_plan(&s, &id).await else {
        return not_found(&admin);
    };
    let mut limits = json_rows(&plan.limits);
    limits.push(json!({"metric": get(&f, "metric"), "period": get(&f, "period"), "value": number(&f, "value")}));
    patch_plan(
        &s,
        &admin,
        &id,
        json!({"limits": limits}),
        &f,
        "Limit added.",
    )
    .await
}

pub async fn add_pricing_rule(
    State(s): State<AppState>,
    Path(id): Path<String>,
    WriteForm { admin, fields: f }: WriteForm,
) -> Response {
    let Some(plan) = current_plan(&s, &id).await else {
        return not_found(&admin);
    };
    // The read form of a rule is the form the API takes back.
    let mut rules = json_rows(&plan.pricing_rules);
    let mut rule = json!({"metric": get(&f, "rule_metric"), "model": get(&f, "model"), "from": number(&f, "from"),
                          "to": optional_number(&f, "to"), "unit_price": get(&f, "unit_price")});
    if !get(&f, "package_size").is_empty() {
        rule["package_size"] = number(&f, "package_size");
    }
    rules.push(rule);
    patch_plan(
        &s,
        &admin,
        &id,
        json!({"pricing_rules": rules}),
        &f,
        "Pricing rule added.",
    )
    .await
}

/// `POST /admin/plans/{id}/{limits|pricing_rules}/{index}/remove`.
pub async fn remove_row(
    State(s): State<AppState>,
    Path((id, kind, index)): Path<(String, String, usize)>,
    WriteForm { admin, .. }: WriteForm,
) -> Response {
    let Some(plan) = current_plan(&s, &id).await else {
        return not_found(&admin);
    };
    let mut rows = match kind.as_str() {
        "limits" => json_rows(&plan.limits),
        "pricing_rules" => json_rows(&plan.pricing_rules),
        _ => return not_found(&admin),
    };
    if index >= rows.len() {
        return not_found(&admin);
    }
    rows.remove(index);
    let mut body = json!({});
    body[kind.as_str()] = json!(rows);
    patch_plan(&s, &admin, &id, body, &Fields::new(), "Removed.").await
}
