//! Admin portal: accounts and their applications (suspend, resume), admin tokens (generate, shown
//! once, revoke), the payment gateway's credentials (write-only) and credit notes. Like the catalog
//! pages, every change is the admin API call of the same name, made in-process.

use axum::extract::{Path, State};
use axum::http::{Method, StatusCode};
use axum::response::Response;
use serde_json::{json, Value};

use super::access::{redirect, AdminSession, Fields, WriteForm};
use super::api as admin_api;
use super::forms::{
    error_for, failed, general_error, get, link, not_found, seg, show, text, write_form, FormError,
};
use crate::http::auth::Scope;
use crate::http::AppState;
use crate::portal::html::{alert, html, input, notice, post_button, select, table, Markup};

/// A secret shown once, right after it was made.
fn shown_once(what: &str, secret: &str) -> Markup {
    crate::portal::html::shown_once(
        &format!("{what} Copy it now: it is stored hashed and cannot be shown again."),
        "secret",
        secret,
    )
}

// ---- accounts ----

pub async fn accounts(State(s): State<AppState>, admin: AdminSession) -> Response {
    accounts_page(&s, &admin, &Fields::new(), &None, StatusCode::OK).await
}

async fn accounts_page(
    s: &AppState,
    admin: &AdminSession,
    f: &Fields,
    e: &FormError,
    status: StatusCode,
) -> Response {
    let list = admin_api::get(s, &admin.caller, "/accounts?limit=100").await;
    let rows: Vec<Vec<Markup>> = list
        .data()
        .iter()
        .map(|a| {
            vec![
                link(
                    &format!("/admin/accounts/{}", seg(&text(&a["id"]))),
                    &text(&a["name"]),
                ),
                html! { (text(&a["email"])) },
                html! { (text(&a["credit_balance"])) },
            ]
        })
        .collect();
    let more = list.body["has_more"] == json!(true);
    let form = write_form(
        admin,
        "/admin/accounts",
        "New account",
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
                "email",
                "Billing email",
                "email",
                &get(f, "email"),
                error_for(e, "email"),
                true
            ))
        },
        "Create account",
    );
    let body = html! {
        (general_error(e, &["name", "email"]))
        (table("accounts", &["Name", "Email", "Credit"], &rows))
        @if more { p { "Showing the first 100 accounts; the admin API lists the rest." } }
        (form)
    };
    show(admin, "Accounts", status, body)
}

pub async fn create_account(
    State(s): State<AppState>,
    WriteForm { admin, fields: f }: WriteForm,
) -> Response {
    let body = json!({"name": get(&f, "name"), "email": get(&f, "email")});
    let a = admin_api::call(&s, &admin.caller, Method::POST, "/accounts", Some(body)).await;
    if a.ok() {
        return redirect(&format!("/admin/accounts/{}", seg(&text(&a.body["id"]))));
    }
    accounts_page(&s, &admin, &f, &a.error(), failed(&a)).await
}

pub async fn account(
    State(s): State<AppState>,
    admin: AdminSession,
    Path(id): Path<String>,
) -> Response {
    account_page(
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

async fn account_page(
    s: &AppState,
    admin: &AdminSession,
    id: &str,
    f: &Fields,
    e: &FormError,
    done: Markup,
    status: StatusCode,
) -> Response {
    let acc = admin_api::get(s, &admin.caller, &format!("/accounts/{}", seg(id))).await;
    if !acc.ok() {
        return not_found(admin);
    }
    let apps = admin_api::get(
        s,
        &admin.caller,
        &format!("/applications?limit=100&account_id={}", seg(id)),
    )
    .await;
    let plans = admin_api::get(s, &admin.caller, "/plans?limit=100").await;
    let plan_name = |pid: &str| {
        plans
            .data()
            .iter()
            .find(|p| text(&p["id"]) == pid)
            .map(|p| text(&p["name"]))
            .unwrap_or_else(|| pid.to_string())
    };
    let write = admin.scope == Scope::Write;
    let rows: Vec<Vec<Markup>> = apps
        .data()
        .iter()
        .map(|a| {
            let app = text(&a["id"]);
            let state = text(&a["state"]);
            let reason = text(&a["state_reason"]);
            let action = match (write, state.as_str()) {
                (false, _) => html! {},
                (true, "live") => post_button(
                    &format!("/admin/applications/{}/suspend", seg(&app)),
                    &admin.csrf,
                    "Suspend",
                ),
                (true, _) => post_button(
                    &format!("/admin/applications/{}/resume", seg(&app)),
                    &admin.csrf,
                    "Resume",
                ),
            };
            let state = if reason.is_empty() {
                state
            } else {
                format!("{state} ({reason})")
            };
            vec![
                html! { (text(&a["name"])) },
                html! { code { (app) } },
                html! { (plan_name(&text(&a["plan_id"]))) },
                html! { (state) },
                html! { (a["keys"].as_array().map(Vec::len).unwrap_or(0)) },
                action,
            ]
        })
        .collect();
    let plan_options: Vec<(String, String)> = plans
        .data()
        .iter()
        .filter(|p| p["custom"] != json!(true))
        .map(|p| {
            (
                text(&p["id"]),
                format!("{} ({})", text(&p["name"]), text(&p["state"])),
            )
        })
        .collect();
    let form = write_form(
        admin,
        &format!("/admin/accounts/{}/applications", seg(id)),
        "New application",
        html! {
            (input(
                "name",
                "Name",
                "text",
                &get(f, "name"),
                error_for(e, "name"),
                true
            ))
            (select(
                "plan_id",
                "Plan",
                &plan_options,
                &get(f, "plan_id"),
                error_for(e, "plan_id")
            ))
        },
        "Create application (shows its key once)",
    );
    let a = &acc.body;
    let body = html! {
        (done)
        (general_error(e, &["name", "plan_id"]))
        p { "Id " code { (id) } " · " (text(&a["email"])) " · credit " (text(&a["credit_balance"])) }
        p { a href={ "/admin/invoices?account_id=" (seg(id)) } { "Invoices of this account" } }
        section {
            h2 { "Applications" }
            (table("applications", &["Name", "Id", "Plan", "State", "Keys", ""], &rows))
            (form)
        }
    };
    show(
        admin,
        &format!("Account {}", text(&a["name"])),
        status,
        body,
    )
}

pub async fn create_application(
    State(s): State<AppState>,
    Path(id): Path<String>,
    WriteForm { admin, fields: f }: WriteForm,
) -> Response {
    let body = json!({"account_id": id, "name": get(&f, "name"), "plan_id": get(&f, "plan_id")});
    let a = admin_api::call(&s, &admin.caller, Method::POST, "/applications", Some(body)).await;
    if a.ok() {
        let done = shown_once("Application created. Its API key:", &text(&a.body["key"]));
        return account_page(
            &s,
            &admin,
            &id,
            &Fields::new(),
            &None,
            done,
            StatusCode::CREATED,
        )
        .await;
    }
    account_page(&s, &admin, &id, &f, &a.error(), html! {}, failed(&a)).await
}

/// `POST /admin/applications/{id}/{suspend|resume}`; back to the application's account.
pub async fn application_action(
    State(s): State<AppState>,
    Path((id, action)): Path<(String, String)>,
    WriteForm { admin, .. }: WriteForm,
) -> Response {
    if action != "suspend" && action != "resume" {
        return not_found(&admin);
    }
    let app = admin_api::get(&s, &admin.caller, &format!("/applications/{}", seg(&id))).await;
    if !app.ok() {
        return not_found(&admin);
    }
    let account = text(&app.body["account_id"]);
    let body = (action == "suspend").then(|| json!({"reason": "admin"}));
    let a = admin_api::call(
        &s,
        &admin.caller,
        Method::POST,
        &format!("/applications/{}/{action}", seg(&id)),
        body,
    )
    .await;
    let done = if a.ok() {
        notice(&format!(
            "Application {} {}.",
            text(&app.body["name"]),
            if action == "suspend" {
                "suspended"
            } else {
                "resumed"
            }
        ))
    } else {
        html! {}
    };
    account_page(
        &s,
        &admin,
        &account,
        &Fields::new(),
        &a.error(),
        done,
        if a.ok() { StatusCode::OK } else { failed(&a) },
    )
    .await
}

// ---- admin tokens ----

pub async fn tokens(State(s): State<AppState>, admin: AdminSession) -> Response {
    tokens_page(&s, &admin, &Fields::new(), &None, html! {}, StatusCode::OK).await
}

async fn tokens_page(
    s: &AppState,
    admin: &AdminSession,
    f: &Fields,
    e: &FormError,
    done: Markup,
    status: StatusCode,
) -> Response {
    let list = admin_api::get(s, &admin.caller, "/tokens?limit=100").await;
    let write = admin.scope == Scope::Write;
    let rows: Vec<Vec<Markup>> = list
        .data()
        .iter()
        .map(|t| {
            let id = text(&t["id"]);
            let this = id == admin.caller.token_id;
            vec![
                html! { (text(&t["name"])) },
                html! { (text(&t["scope"])) },
                html! { code { (id) } },
                if this {
                    html! { "(this session)" }
                } else if write {
                    post_button(
                        &format!("/admin/tokens/{}/revoke", seg(&id)),
                        &admin.csrf,
                        "Revoke",
                    )
                } else {
                    html! {}
                },
            ]
        })
        .collect();
    let scopes = vec![
        (
            "read".to_string(),
            "read: sees everything, changes nothing".to_string(),
        ),
        ("write".to_string(), "write: everything".to_string()),
    ];
    let form = write_form(
        admin,
        "/admin/tokens",
        "New admin token",
        html! {
            (input(
                "name",
                "Name",
                "text",
                &get(f, "name"),
                error_for(e, "name"),
                true
            ))
            (select(
                "scope",
                "Scope",
                &scopes,
                &get(f, "scope"),
                error_for(e, "scope")
            ))
        },
        "Generate token",
    );
    let body = html! {
        (done)
        (general_error(e, &["name", "scope"]))
        (table("admin tokens", &["Name", "Scope", "Id", ""], &rows))
        (form)
    };
    show(admin, "Admin tokens", status, body)
}

pub async fn create_token(
    State(s): State<AppState>,
    WriteForm { admin, fields: f }: WriteForm,
) -> Response {
    let body = json!({"name": get(&f, "name"), "scope": get(&f, "scope")});
    let a = admin_api::call(&s, &admin.caller, Method::POST, "/tokens", Some(body)).await;
    if a.ok() {
        let done = shown_once("Token generated:", &text(&a.body["token"]));
        return tokens_page(&s, &admin, &Fields::new(), &None, done, StatusCode::CREATED).await;
    }
    tokens_page(&s, &admin, &f, &a.error(), html! {}, failed(&a)).await
}

pub async fn revoke_token(
    State(s): State<AppState>,
    Path(id): Path<String>,
    WriteForm { admin, .. }: WriteForm,
) -> Response {
    let a = admin_api::call(
        &s,
        &admin.caller,
        Method::DELETE,
        &format!("/tokens/{}", seg(&id)),
        None,
    )
    .await;
    if a.status == StatusCode::NOT_FOUND {
        return not_found(&admin);
    }
    let done = if a.ok() {
        notice("Token revoked.")
    } else {
        html! {}
    };
    tokens_page(
        &s,
        &admin,
        &Fields::new(),
        &a.error(),
        done,
        if a.ok() { StatusCode::OK } else { failed(&a) },
    )
    .await
}

// ---- payment gateway ----

/// (form/API name, label, secret?) per provider; secrets are write-only: never shown, and left
/// empty they keep the stored value.
const STRIPE_FIELDS: &[(&str, &str, bool)] = &[
    ("secret_key", "Secret key (sk_...)", true),
    ("publishable_key", "Publishable key (pk_...)", false),
    ("webhook_secret", "Webhook signing secret (whsec_...)", true),
    ("api_base", "API base URL (empty: Stripe's)", false),
    (
        "js_url",
        "Stripe.js URL (empty: https://js.stripe.com/v3/)",
        false,
    ),
];
const BRAINTREE_FIELDS: &[(&str, &str, bool)] = &[
    ("merchant_id", "Merchant id", false),
    ("public_key", "Public key", false),
    ("private_key", "Private key", true),
    ("environment", "Environment (sandbox or production)", false),
    (
        "api_base",
        "GraphQL endpoint base URL (empty: Braintree's)",
        false,
    ),
    (
        "js_url",
        "Braintree web SDK base URL (empty: Braintree's CDN)",
        false,
    ),
    (
        MERCHANT_ACCOUNTS,
        "Merchant account per currency (EUR=account-id, JPY=account-id)",
        false,
    ),
];

/// The Braintree field that is an object in the API (currency -> merchant account id) and
/// `EUR=id, JPY=id` in the form.
const MERCHANT_ACCOUNTS: &str = "merchant_accounts";

fn merchant_accounts_text(stored: &Value) -> String {
    stored
        .as_object()
        .map(|m| {
            m.iter()
                .map(|(code, id)| format!("{code}={}", text(id)))
                .collect::<Vec<_>>()
                .join(", ")
        })
        .unwrap_or_default()
}

/// `EUR=id, JPY=id` (commas, spaces or new lines between pairs) as the API's object; a pair
/// without `=` keeps an empty id, which the API refuses with the field named.
fn merchant_accounts_json(typed: &str) -> Value {
    Value::Object(
        typed
            .split(|c: char| c == ',' || c.is_whitespace())
            .filter(|p| !p.is_empty())
            .map(|pair| {
                let (code, id) = pair.split_once('=').unwrap_or((pair, ""));
                (code.trim().to_uppercase(), json!(id.trim()))
            })
            .collect(),
    )
}

pub async fn gateway(State(s): State<AppState>, admin: AdminSession) -> Response {
    gateway_page(&s, &admin, &Fields::new(), &None, html! {}, StatusCode::OK).await
}

async fn gateway_page(
    s: &AppState,
    admin: &AdminSession,
    f: &Fields,
    e: &FormError,
    done: Markup,
    status: StatusCode,
) -> Response {
    let current = admin_api::get(s, &admin.caller, "/billing/gateway")
        .await
        .body;
    let kind = text(&current["type"]);
    let form_for = |provider: &str, title: &str, fields: &[(&str, &str, bool)]| {
        let same = kind == provider;
        let inputs: Vec<Markup> = fields
            .iter()
            .map(|(name, label, secret)| {
                let stored = &current[*name];
                if *secret {
                    let hint = if same && stored["set"] == json!(true) {
                        format!(
                            "{label} — set, ends in {}; leave empty to keep",
                            text(&stored["last4"])
                        )
                    } else {
                        label.to_string()
                    };
                    input(
                        &format!("{provider}.{name}"),
                        &hint,
                        "password",
                        "",
                        error_for(e, name).filter(|_| get(f, "type") == provider),
                        false,
                    )
                } else {
                    let value = f
                        .get(&format!("{provider}.{name}"))
                        .cloned()
                        .unwrap_or_else(|| match (same, *name) {
                            (false, _) => String::new(),
                            (true, MERCHANT_ACCOUNTS) => merchant_accounts_text(stored),
                            (true, _) => text(stored),
                        });
                    input(
                        &format!("{provider}.{name}"),
                        label,
                        "text",
                        &value,
                        error_for(e, name).filter(|_| get(f, "type") == provider),
                        false,
                    )
                }
            })
            .collect();
        write_form(
            admin,
            "/admin/gateway",
            title,
            html! {
                input type="hidden" name="type" value=(provider);
                @for i in &inputs { (i) }
            },
            &format!("Use {title}"),
        )
    };
    let state = if kind.is_empty() {
        "No payment gateway is configured: invoices are not charged.".to_string()
    } else {
        format!("Invoices are charged through {kind}.")
    };
    let general = general_error(
        e,
        &[
            "secret_key",
            "publishable_key",
            "webhook_secret",
            "api_base",
            "js_url",
            "merchant_id",
            "public_key",
            "private_key",
            "environment",
            MERCHANT_ACCOUNTS,
        ],
    );
    let body = html! {
        (done)
        (general)
        p id="gateway-state" { (state) }
        (form_for("stripe", "Stripe", STRIPE_FIELDS))
        (form_for("braintree", "Braintree", BRAINTREE_FIELDS))
    };
    show(admin, "Payment gateway", status, body)
}

/// Saves one provider's form through `PUT /billing/gateway`. Empty secret fields keep the stored
/// secret of the same provider and the same `api_base` (opened here, server-side; never sent to the
/// browser).
pub async fn save_gateway(
    State(s): State<AppState>,
    WriteForm { admin, fields: f }: WriteForm,
) -> Response {
    let provider = get(&f, "type");
    let fields = match provider.as_str() {
        "stripe" => STRIPE_FIELDS,
        "braintree" => BRAINTREE_FIELDS,
        _ => {
            return gateway_page(
                &s,
                &admin,
                &f,
                &Some(("type".into(), "choose Stripe or Braintree".into())),
                html! {},
                StatusCode::UNPROCESSABLE_ENTITY,
            )
            .await
        }
    };
    let stored = match crate::domain::payments::config::load(&s.pool, s.master_key.as_deref()).await
    {
        // A stored secret is kept only for the host it was entered for: a changed api_base needs
        // every secret typed again (else one edit would send them to any host).
        Ok(Some(c))
            if c.provider() == provider
                && crate::domain::payments::config::same_api_base(
                    &c,
                    &get(&f, &format!("{provider}.api_base")),
                ) =>
        {
            crate::domain::payments::config::secrets_of(&c)
        }
        _ => Vec::new(),
    };
    let mut body = json!({"type": provider});
    for (name, _, secret) in fields {
        let mut v = get(&f, &format!("{provider}.{name}"));
        if *secret && v.is_empty() {
            if let Some((_, old)) = stored.iter().find(|(n, _)| n == name) {
                v = old.clone();
            }
        }
        if *name == MERCHANT_ACCOUNTS {
            body[*name] = merchant_accounts_json(&v);
        } else if !v.is_empty() {
            body[*name] = Value::String(v);
        }
    }
    let a = admin_api::call(
        &s,
        &admin.caller,
        Method::PUT,
        "/billing/gateway",
        Some(body),
    )
    .await;
    if a.ok() {
        let done = html! {
            (notice("Saved."))
            @if let Some(w) = a.body["warning"].as_str() { (alert(w)) }
        };
        return gateway_page(&s, &admin, &Fields::new(), &None, done, StatusCode::OK).await;
    }
    // Never echo secrets back into the form.
    let mut shown = f.clone();
    for (name, _, secret) in fields {
        if *secret {
            shown.remove(&format!("{provider}.{name}"));
        }
    }
    gateway_page(&s, &admin, &shown, &a.error(), html! {}, failed(&a)).await
}

// ---- credit notes ----

/// `POST /admin/invoices/{id}/credit_note` (amount, reason): the credit note's page is its PDF.
pub async fn credit_note(
    State(s): State<AppState>,
    Path(id): Path<String>,
    WriteForm { admin, fields: f }: WriteForm,
) -> Response {
    let body = json!({"amount": get(&f, "amount"), "reason": get(&f, "reason")});
    let a = admin_api::call(
        &s,
        &admin.caller,
        Method::POST,
        &format!("/invoices/{}/credit_notes", seg(&id)),
        Some(body),
    )
    .await;
    let message = match a.error() {
        None => notice(&format!(
            "Credit note {} issued for {} {}.",
            text(&a.body["number"]),
            text(&a.body["total"]),
            text(&a.body["currency"])
        )),
        Some((p, m)) => alert(&format!(
            "Credit note refused: {}{m}",
            if p.is_empty() {
                String::new()
            } else {
                format!("{p}: ")
            }
        )),
    };
    let status = if a.ok() {
        StatusCode::CREATED
    } else {
        failed(&a)
    };
    super::billing::invoices_page(
        &s,
        &admin,
        &super::billing::InvoiceFilter::default(),
        message,
        status,
    )
    .await
}
