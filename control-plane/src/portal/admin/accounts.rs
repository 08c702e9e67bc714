//! Admin portal: accounts and their applications (suspend, resume), admin tokens (generate, shown
//! once, revoke), the payment gateway's credentials (write-only) and credit notes. Accounts and
//! applications, admin tokens, the gateway and credit notes call the domain directly (the same
//! functions the admin API calls, so the same validation and the same catalog revision bump).

use std::collections::BTreeMap;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::Response;
use serde_json::{json, Value};

use super::access::{redirect, AdminSession, Fields, WriteForm};
use super::forms::{
    error_for, general_error, get, link, not_found, seg, show, text, write_form, FormError,
};
use crate::domain::access::tokens::Scope;
use crate::domain::access::tokens::{self, TokenInput};
use crate::domain::accounts::account::{self, AccountInput};
use crate::domain::accounts::applications::{
    self, AppFilter, AppInput, ApplicationState, SuspendInput, SuspensionReason,
};
use crate::domain::billing::manual::{self, CreditNoteInput};
use crate::domain::payments::config::{self, GatewayInput};
use crate::domain::{DomainError, PageRequest};
use crate::portal::html::{alert, html, input, notice, post_button, select, table, Markup};
use crate::state::AppState;

/// Most accounts (and applications of one account) a page lists; the admin API lists the rest.
const PAGE_ROWS: i64 = 100;

/// A refused domain call as the form shows it: the field it names (the API error object's
/// `param`) with its message, and the status the page is answered with (the API's).
pub(super) fn refusal(e: DomainError) -> (FormError, StatusCode) {
    let param = match &e {
        DomainError::Malformed { param, .. }
        | DomainError::Conflict { param, .. }
        | DomainError::Invalid { param, .. } => param.clone().unwrap_or_default(),
        DomainError::NotFound { .. } => "id".to_string(),
        _ => String::new(),
    };
    let message = e.to_string();
    let status = axum::response::IntoResponse::into_response(e).status();
    (Some((param, message)), status)
}

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
    let first = PageRequest {
        limit: PAGE_ROWS,
        after: String::new(),
    };
    // A failed read shows an empty list, as the in-process API call did.
    let (list, more) = match account::list(&s.pool, &first).await {
        Ok(p) => (p.data, p.has_more),
        Err(e) => {
            tracing::error!(error = %e, "admin portal: cannot list accounts");
            (Vec::new(), false)
        }
    };
    let rows: Vec<Vec<Markup>> = list
        .iter()
        .map(|a| {
            vec![
                link(&format!("/admin/accounts/{}", seg(&a.id)), &a.name),
                html! { (a.email) },
                html! { (a.credit_balance) },
            ]
        })
        .collect();
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
        p {
            (super::exports::link("accounts.csv", &[]))
            " · "
            (super::exports::link("applications.csv", &[]))
        }
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
    let input = AccountInput {
        name: Some(get(&f, "name")),
        email: Some(get(&f, "email")),
        ..AccountInput::default()
    };
    match account::create(&s.pool, &admin.actor(), &input).await {
        Ok(a) => redirect(&format!("/admin/accounts/{}", seg(&a.id))),
        Err(e) => {
            let (e, status) = refusal(e);
            accounts_page(&s, &admin, &f, &e, status).await
        }
    }
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
    let Ok(acc) = account::get(&s.pool, id).await else {
        return not_found(admin);
    };
    let of_account = AppFilter {
        account_id: Some(id.to_string()),
        plan_id: None,
    };
    let first = PageRequest {
        limit: PAGE_ROWS,
        after: String::new(),
    };
    // Failed reads show empty lists, as the in-process API calls did.
    let apps = applications::list(&s.pool, &of_account, &first)
        .await
        .map(|p| p.data)
        .unwrap_or_else(|e| {
            tracing::error!(error = %e, "admin portal: cannot list applications");
            Vec::new()
        });
    let plans = applications::plan_choices(&s.pool, PAGE_ROWS)
        .await
        .unwrap_or_else(|e| {
            tracing::error!(error = %e, "admin portal: cannot list plans");
            Vec::new()
        });
    let plan_name = |pid: &str| {
        plans
            .iter()
            .find(|p| p.id == pid)
            .map(|p| p.name.clone())
            .unwrap_or_else(|| pid.to_string())
    };
    let write = admin.scope == Scope::Write;
    let rows: Vec<Vec<Markup>> = apps
        .iter()
        .map(|a| {
            let action = match (write, a.state) {
                (false, _) => html! {},
                (true, ApplicationState::Live) => post_button(
                    &format!("/admin/applications/{}/suspend", seg(&a.id)),
                    &admin.csrf,
                    "Suspend",
                ),
                (true, _) => post_button(
                    &format!("/admin/applications/{}/resume", seg(&a.id)),
                    &admin.csrf,
                    "Resume",
                ),
            };
            let state = match a.state_reason {
                None => a.state.as_str().to_string(),
                Some(reason) => format!("{} ({})", a.state.as_str(), reason.as_str()),
            };
            vec![
                html! { (a.name) },
                html! { code { (a.id) } },
                html! { (plan_name(&a.plan_id)) },
                html! { (state) },
                html! { (a.keys.len()) },
                html! { a href={ "/admin/applications/" (seg(&a.id)) "/alert_thresholds" } { "Usage alerts" } },
                action,
            ]
        })
        .collect();
    let plan_options: Vec<(String, String)> = plans
        .iter()
        .filter(|p| !p.custom)
        .map(|p| (p.id.clone(), format!("{} ({})", p.name, p.state)))
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
    let body = html! {
        (done)
        (general_error(e, &["name", "plan_id"]))
        p { "Id " code { (id) } " · " (acc.email) " · credit " (acc.credit_balance) }
        p { a href={ "/admin/invoices?account_id=" (seg(id)) } { "Invoices of this account" } }
        section {
            h2 { "Applications" }
            p { (super::exports::link("applications.csv", &[("account_id", id)])) }
            (table("applications", &["Name", "Id", "Plan", "State", "Keys", "Alerts", ""], &rows))
            (form)
        }
    };
    show(admin, &format!("Account {}", acc.name), status, body)
}

pub async fn create_application(
    State(s): State<AppState>,
    Path(id): Path<String>,
    WriteForm { admin, fields: f }: WriteForm,
) -> Response {
    let input = AppInput {
        account_id: Some(id.clone()),
        name: Some(get(&f, "name")),
        plan_id: Some(get(&f, "plan_id")),
        description: None,
        app_id: None,
    };
    match applications::create(&s.pool, &admin.actor(), &input).await {
        Ok(created) => {
            let done = shown_once("Application created. Its API key:", &created.key);
            account_page(
                &s,
                &admin,
                &id,
                &Fields::new(),
                &None,
                done,
                StatusCode::CREATED,
            )
            .await
        }
        Err(e) => {
            let (e, status) = refusal(e);
            account_page(&s, &admin, &id, &f, &e, html! {}, status).await
        }
    }
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
    let Ok(app) = applications::get(&s.pool, &id).await else {
        return not_found(&admin);
    };
    let done = if action == "suspend" {
        let input = SuspendInput {
            reason: Some(SuspensionReason::Admin),
        };
        applications::suspend(&s.pool, &admin.actor(), &id, &input).await
    } else {
        applications::resume(&s.pool, &admin.actor(), &id).await
    };
    let (done, e, status) = match done {
        Ok(_) => (
            notice(&format!(
                "Application {} {}.",
                app.name,
                if action == "suspend" {
                    "suspended"
                } else {
                    "resumed"
                }
            )),
            None,
            StatusCode::OK,
        ),
        Err(e) => {
            let (e, status) = refusal(e);
            (html! {}, e, status)
        }
    };
    account_page(
        &s,
        &admin,
        &app.account_id,
        &Fields::new(),
        &e,
        done,
        status,
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
    // A page that cannot be read shows no rows (as the API's error answer did).
    let list = tokens::list(
        &s.pool,
        &PageRequest {
            limit: PAGE_ROWS,
            after: String::new(),
        },
    )
    .await
    .map(|p| p.data)
    .unwrap_or_default();
    let write = admin.scope == Scope::Write;
    let rows: Vec<Vec<Markup>> = list
        .iter()
        .map(|t| {
            let id = t.id.clone();
            let this = id == admin.token_id;
            vec![
                html! { (t.name) },
                html! { (t.scope.as_str()) },
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
    // `WriteForm` has checked the session's write scope, as the API checks the token's.
    let input = TokenInput {
        name: Some(get(&f, "name")),
        scope: Some(get(&f, "scope")),
        expires_in_days: None,
    };
    match tokens::create(&s.pool, &admin.actor(), input).await {
        Ok(created) => {
            let done = shown_once("Token generated:", &created.token);
            tokens_page(&s, &admin, &Fields::new(), &None, done, StatusCode::CREATED).await
        }
        Err(e) => {
            let (e, status) = refusal(e);
            tokens_page(&s, &admin, &f, &e, html! {}, status).await
        }
    }
}

pub async fn revoke_token(
    State(s): State<AppState>,
    Path(id): Path<String>,
    WriteForm { admin, .. }: WriteForm,
) -> Response {
    let (e, done, status) = match tokens::revoke(&s.pool, &admin.actor(), id).await {
        Ok(_) => (None, notice("Token revoked."), StatusCode::OK),
        Err(DomainError::NotFound { .. }) => return not_found(&admin),
        Err(e) => {
            let (e, status) = refusal(e);
            (e, html! {}, status)
        }
    };
    tokens_page(&s, &admin, &Fields::new(), &e, done, status).await
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

/// `EUR=id, JPY=id` (commas, spaces or new lines between pairs) as the input's map; a pair
/// without `=` keeps an empty id, which `config::save` refuses with the field named.
fn merchant_accounts_map(typed: &str) -> BTreeMap<String, String> {
    typed
        .split(|c: char| c == ',' || c.is_whitespace())
        .filter(|p| !p.is_empty())
        .map(|pair| {
            let (code, id) = pair.split_once('=').unwrap_or((pair, ""));
            (code.trim().to_uppercase(), id.trim().to_string())
        })
        .collect()
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
    // The view as the API answers it (a failed read shows no provider, as the error answer did).
    let current = config::public_view(&s.pool)
        .await
        .ok()
        .and_then(|v| serde_json::to_value(v).ok())
        .unwrap_or(Value::Null);
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
    let stored = match config::load(&s.pool, s.master_key.as_deref()).await {
        // A stored secret is kept only for the host it was entered for: a changed api_base needs
        // every secret typed again (else one edit would send them to any host).
        Ok(Some(c))
            if c.provider() == provider
                && config::same_api_base(&c, &get(&f, &format!("{provider}.api_base"))) =>
        {
            config::secrets_of(&c)
        }
        _ => Vec::new(),
    };
    let mut input = GatewayInput {
        kind: Some(provider.clone()),
        ..GatewayInput::default()
    };
    for (name, _, secret) in fields {
        let mut v = get(&f, &format!("{provider}.{name}"));
        if *secret && v.is_empty() {
            if let Some((_, old)) = stored.iter().find(|(n, _)| n == name) {
                v = old.clone();
            }
        }
        if *name == MERCHANT_ACCOUNTS {
            input.merchant_accounts = Some(merchant_accounts_map(&v));
            continue;
        }
        // An empty field is absent (the provider's default), as in the API's body.
        let v = Some(v).filter(|v| !v.is_empty());
        match *name {
            "secret_key" => input.secret_key = v,
            "publishable_key" => input.publishable_key = v,
            "webhook_secret" => input.webhook_secret = v,
            "merchant_id" => input.merchant_id = v,
            "public_key" => input.public_key = v,
            "private_key" => input.private_key = v,
            "environment" => input.environment = v,
            "api_base" => input.api_base = v,
            "js_url" => input.js_url = v,
            other => unreachable!("form field {other} is not a gateway field"),
        }
    }
    // `WriteForm` has checked the session's write scope, as the API checks the token's.
    let refused = match config::save(&s.pool, s.master_key.as_deref(), &admin.actor(), input).await
    {
        Ok(view) => {
            let done = html! {
                (notice("Saved."))
                @if let Some(w) = &view.warning { (alert(w)) }
            };
            return gateway_page(&s, &admin, &Fields::new(), &None, done, StatusCode::OK).await;
        }
        Err(e) => refusal(e),
    };
    // Never echo secrets back into the form.
    let mut shown = f.clone();
    for (name, _, secret) in fields {
        if *secret {
            shown.remove(&format!("{provider}.{name}"));
        }
    }
    gateway_page(&s, &admin, &shown, &refused.0, html! {}, refused.1).await
}

// ---- credit notes ----

/// `POST /admin/invoices/{id}/credit_note` (amount, reason): the credit note's page is its PDF.
pub async fn credit_note(
    State(s): State<AppState>,
    Path(id): Path<String>,
    WriteForm { admin, fields: f }: WriteForm,
) -> Response {
    let input = CreditNoteInput {
        amount: Some(get(&f, "amount")),
        reason: Some(get(&f, "reason")),
    };
    // `WriteForm` has checked the session's write scope, as the API checks the token's.
    let (message, status) = match manual::credit_note(&s.pool, &admin.actor(), &id, input).await {
        Ok(cn) => (
            notice(&format!(
                "Credit note {} issued for {} {}.",
                cn.number.as_deref().unwrap_or(""),
                cn.total,
                cn.currency
            )),
            StatusCode::CREATED,
        ),
        Err(e) => {
            let (refused, status) = refusal(e);
            let (p, m) = refused.unwrap_or_default();
            let p = if p.is_empty() { p } else { format!("{p}: ") };
            (alert(&format!("Credit note refused: {p}{m}")), status)
        }
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
