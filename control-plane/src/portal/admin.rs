//! The admin portal (`/admin`), in progress: sign-in with an admin token (a session cookie, stored as
//! SHA-256, 12 hours; the token's scope applies: read tokens see, write tokens act), a dashboard
//! (catalog counts, revenue and outstanding money per currency), and invoices with their actions.

use std::collections::HashMap;

use axum::extract::{Form, FromRequest, FromRequestParts, Path, Query, Request, State};
use axum::http::request::Parts;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{Html, IntoResponse, Response};

use super::admin_forms::{options, text};
use super::html::{admin_page, esc, field};
use super::session::{cookie, csrf_ok, set_cookie, SESSION_TTL_SECS};
use crate::billing::calendar::{day_of, format_date, month_start, SECONDS_PER_DAY};
use crate::http::auth::{Caller, Scope};
use crate::http::error::ApiError;
use crate::http::AppState;
use crate::secrets::{new_session_token, sha256_hex};
use crate::store::now;

pub const ADMIN_COOKIE: &str = "tg_admin";
pub const ADMIN_CSRF_COOKIE: &str = "tg_admin_csrf";

pub(super) use super::Fields;

pub struct AdminSession {
    pub scope: Scope,
    pub csrf: String,
    /// Who acts: the API calls the portal makes run as this token.
    pub caller: Caller,
}

pub(super) fn redirect(to: &str) -> Response {
    (StatusCode::SEE_OTHER, [(header::LOCATION, to.to_string())]).into_response()
}

pub(super) fn failure(e: ApiError) -> Response {
    let status = e.into_response().status();
    (
        status,
        Html(admin_page(
            "Something went wrong",
            None,
            "<p>Please try again.</p>",
        )),
    )
        .into_response()
}

fn admin_cookie(name: &str, value: &str, max_age: i64) -> String {
    set_cookie(name, value, max_age).replace("Path=/portal", "Path=/admin")
}

async fn current(s: &AppState, headers: &HeaderMap) -> Result<Option<AdminSession>, sqlx::Error> {
    let Some(token) = cookie(headers, ADMIN_COOKIE) else {
        return Ok(None);
    };
    let row: Option<(String, String, String)> = sqlx::query_as(
        // A revoked token ends its sessions too; so does a changed (or removed)
        // TOLLGATE_ADMIN_TOKEN for the sessions opened with it.
        "SELECT s.scope, s.csrf_token, s.token_id FROM admin_sessions s WHERE s.id_sha256 = $1 AND s.expires_at > $2 \
         AND ((s.token_id = 'env' AND s.env_token_sha256 = $3) \
              OR (s.token_id <> 'env' AND EXISTS (SELECT 1 FROM admin_tokens t WHERE t.id = s.token_id AND (t.expires_at IS NULL OR t.expires_at > $2))))",
    )
    .bind(sha256_hex(&token))
    .bind(now())
    .bind(s.env_token_sha256.as_deref().unwrap_or(""))
    .fetch_optional(&s.pool)
    .await?;
    Ok(row.map(|(scope, csrf, token_id)| {
        let scope = Scope::parse(&scope).unwrap_or(Scope::Read);
        AdminSession {
            scope,
            csrf,
            caller: Caller {
                token_id,
                scope,
                // Only keys idempotent replays, which the portal never asks for.
                response_secret: [0; 32],
            },
        }
    }))
}

async fn require(s: &AppState, headers: &HeaderMap) -> Result<AdminSession, Response> {
    match current(s, headers).await {
        Ok(Some(a)) => Ok(a),
        Ok(None) => Err(redirect("/admin/sign_in")),
        Err(e) => Err(failure(e.into())),
    }
}

/// A signed-in admin, as a handler argument; otherwise the answer is the sign-in redirect.
impl FromRequestParts<AppState> for AdminSession {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, s: &AppState) -> Result<Self, Response> {
        require(s, &parts.headers).await
    }
}

/// A form post from a signed-in admin with a valid CSRF token and a write-scope token, as a
/// handler argument (the form is read first, then checked by [`require_write`]).
pub struct WriteForm {
    pub admin: AdminSession,
    pub fields: Fields,
}

impl FromRequest<AppState> for WriteForm {
    type Rejection = Response;

    async fn from_request(req: Request, s: &AppState) -> Result<Self, Response> {
        let (headers, fields) = super::read_form(req, s).await?;
        let admin = require_write(s, &headers, &fields).await?;
        Ok(WriteForm { admin, fields })
    }
}

/// A form post from a signed-in admin with a valid CSRF token and a write-scope token.
async fn require_write(
    s: &AppState,
    headers: &HeaderMap,
    f: &Fields,
) -> Result<AdminSession, Response> {
    let admin = require(s, headers).await?;
    if !csrf_ok(&admin.csrf, f.get("csrf").map(String::as_str)) {
        return Err((
            StatusCode::FORBIDDEN,
            Html(admin_page("Form expired", None, "")),
        )
            .into_response());
    }
    if admin.scope != Scope::Write {
        return Err((
            StatusCode::FORBIDDEN,
            Html(admin_page(
                "Read-only",
                Some(&admin.csrf),
                "<p>This session's token has read scope.</p>",
            )),
        )
            .into_response());
    }
    Ok(admin)
}

fn sign_in_page(error: Option<&str>, status: StatusCode) -> Response {
    let csrf = new_session_token();
    let body = format!(
        "<form method=\"post\" action=\"/admin/sign_in\"><input type=\"hidden\" name=\"csrf\" value=\"{csrf}\">{}<button type=\"submit\">Sign in</button></form>",
        field("token", "Admin token", "password", "", error)
    );
    (
        status,
        [(
            header::SET_COOKIE,
            admin_cookie(ADMIN_CSRF_COOKIE, &csrf, 3600),
        )],
        Html(admin_page("Admin sign-in", None, &body)),
    )
        .into_response()
}

pub async fn sign_in_form() -> Response {
    sign_in_page(None, StatusCode::OK)
}

pub async fn sign_in(
    State(s): State<AppState>,
    crate::rate_limit::ClientIp(ip): crate::rate_limit::ClientIp,
    headers: HeaderMap,
    Form(f): Form<Fields>,
) -> Response {
    let ok = cookie(&headers, ADMIN_CSRF_COOKIE)
        .is_some_and(|c| csrf_ok(&c, f.get("csrf").map(String::as_str)));
    if !ok {
        return (
            StatusCode::FORBIDDEN,
            Html(admin_page(
                "Form expired",
                None,
                "<p>Reload the form and try again.</p>",
            )),
        )
            .into_response();
    }
    // Admin sign-ins share the per-IP sign-in window with the developer portal.
    if let Err(retry_after) = s.limits.sign_in_attempt(&format!("admin:{ip}")) {
        return (
            StatusCode::TOO_MANY_REQUESTS,
            [(header::RETRY_AFTER, retry_after.to_string())],
            Html(admin_page(
                "Too many attempts",
                None,
                "<p>Too many sign-in attempts from this address; try again later.</p>",
            )),
        )
            .into_response();
    }
    let token = f
        .get("token")
        .map(|t| t.trim().to_string())
        .unwrap_or_default();
    let caller =
        match crate::http::auth::authenticate(&s, Some(Ok(format!("Bearer {token}")))).await {
            Ok(c) => c,
            Err(ApiError::Unauthorized(_)) => {
                return sign_in_page(
                    Some("unknown or revoked admin token"),
                    StatusCode::UNAUTHORIZED,
                )
            }
            Err(e) => return failure(e),
        };
    let session = new_session_token();
    let t = now();
    let env_digest = (caller.token_id == "env")
        .then(|| s.env_token_sha256.as_deref().map(str::to_string))
        .flatten();
    let stored = sqlx::query("INSERT INTO admin_sessions (id_sha256, token_id, scope, csrf_token, created_at, expires_at, env_token_sha256) VALUES ($1, $2, $3, $4, $5, $6, $7)")
        .bind(sha256_hex(&session))
        .bind(&caller.token_id)
        .bind(caller.scope.as_str())
        .bind(new_session_token())
        .bind(t)
        .bind(t + SESSION_TTL_SECS)
        .bind(env_digest)
        .execute(&s.pool)
        .await;
    if let Err(e) = stored {
        return failure(e.into());
    }
    let mut r = redirect("/admin");
    if let Ok(v) = admin_cookie(ADMIN_COOKIE, &session, SESSION_TTL_SECS).parse() {
        r.headers_mut().append(header::SET_COOKIE, v);
    }
    r
}

pub async fn sign_out(
    State(s): State<AppState>,
    headers: HeaderMap,
    Form(f): Form<Fields>,
) -> Response {
    let admin = match require(&s, &headers).await {
        Ok(a) => a,
        Err(r) => return r,
    };
    if !csrf_ok(&admin.csrf, f.get("csrf").map(String::as_str)) {
        return (
            StatusCode::FORBIDDEN,
            Html(admin_page("Form expired", None, "")),
        )
            .into_response();
    }
    if let Some(token) = cookie(&headers, ADMIN_COOKIE) {
        let _ = sqlx::query("DELETE FROM admin_sessions WHERE id_sha256 = $1")
            .bind(sha256_hex(&token))
            .execute(&s.pool)
            .await;
    }
    let mut r = redirect("/admin/sign_in");
    if let Ok(v) = admin_cookie(ADMIN_COOKIE, "", 0).parse() {
        r.headers_mut().append(header::SET_COOKIE, v);
    }
    r
}

pub async fn dashboard(State(s): State<AppState>, admin: AdminSession) -> Response {
    let month = month_start(day_of(now())) * SECONDS_PER_DAY;
    let counts: Result<(i64, i64, i64, i64), _> = sqlx::query_as(
        "SELECT (SELECT COUNT(*) FROM services), (SELECT COUNT(*) FROM plans), (SELECT COUNT(*) FROM accounts), (SELECT COUNT(*) FROM applications)",
    )
    .fetch_one(&s.pool)
    .await;
    let money: Result<Vec<(String, String, String)>, _> = sqlx::query_as(
        "SELECT currency, state, total FROM invoices WHERE kind = 'invoice' AND ((state = 'paid' AND paid_at >= $1) OR state IN ('pending', 'unpaid', 'failed'))",
    )
    .bind(month)
    .fetch_all(&s.pool)
    .await;
    // Today's usage per service and metric (UTC day; hourly counters, read by time).
    let usage: Result<Vec<(String, String, i64)>, _> = sqlx::query_as(
        "SELECT s.name, m.name, CAST(SUM(c.value) AS BIGINT) FROM usage_counters c JOIN metrics m ON m.id = c.metric_id \
         JOIN services s ON s.id = m.service_id WHERE c.bucket_start >= $1 GROUP BY s.name, m.name ORDER BY s.name, m.name",
    )
    .bind(day_of(now()) * SECONDS_PER_DAY)
    .fetch_all(&s.pool)
    .await;
    let (counts, money, usage) = match (counts, money, usage) {
        (Ok(c), Ok(m), Ok(u)) => (c, m, u),
        (Err(e), _, _) | (_, Err(e), _) | (_, _, Err(e)) => return failure(e.into()),
    };
    let usage_rows: Vec<Vec<String>> = usage
        .iter()
        .map(|(svc, metric, n)| vec![esc(svc), esc(metric), n.to_string()])
        .collect();
    // Sums per currency in Decimal (never floats).
    let mut revenue: HashMap<String, rust_decimal::Decimal> = HashMap::new();
    let mut outstanding: HashMap<String, rust_decimal::Decimal> = HashMap::new();
    for (currency, state, total) in money {
        let target = if state == "paid" {
            &mut revenue
        } else {
            &mut outstanding
        };
        *target.entry(currency).or_default() +=
            total.parse::<rust_decimal::Decimal>().unwrap_or_default();
    }
    let show = |m: &HashMap<String, rust_decimal::Decimal>| {
        let mut v: Vec<String> = m.iter().map(|(c, a)| format!("{a} {c}")).collect();
        v.sort();
        if v.is_empty() {
            "0".to_string()
        } else {
            v.join(", ")
        }
    };
    let body = format!(
        "<p>Services {} · plans {} · accounts {} · applications {}</p>\
         <p>Revenue since {}: <strong id=\"revenue\">{}</strong></p><p>Outstanding (issued, unpaid, failed): <strong id=\"outstanding\">{}</strong></p>\
         <section><h2>Usage today (UTC)</h2>{}</section>",
        counts.0,
        counts.1,
        counts.2,
        counts.3,
        format_date(month / SECONDS_PER_DAY),
        esc(&show(&revenue)),
        esc(&show(&outstanding)),
        super::html::table("usage today", &["Service", "Metric", "Count"], &usage_rows),
    );
    Html(admin_page("Dashboard", Some(&admin.csrf), &body)).into_response()
}

type InvoiceRow = (String, Option<String>, String, String, String, String);

pub async fn invoices(
    State(s): State<AppState>,
    admin: AdminSession,
    Query(q): Query<Fields>,
) -> Response {
    let filter = InvoiceFilter {
        state: q.get("state").cloned().unwrap_or_default(),
        account_id: q.get("account_id").cloned().unwrap_or_default(),
    };
    invoices_page(&s, &admin, &filter, "", StatusCode::OK).await
}

/// Which invoices the list shows (empty: all).
#[derive(Default)]
pub(super) struct InvoiceFilter {
    pub state: String,
    pub account_id: String,
}

/// Most invoices one page lists (newest first); the admin API pages through all of them.
const INVOICES_SHOWN: i64 = 200;

pub(super) async fn invoices_page(
    s: &AppState,
    admin: &AdminSession,
    filter: &InvoiceFilter,
    notice: &str,
    status: StatusCode,
) -> Response {
    let rows: Result<Vec<InvoiceRow>, _> = sqlx::query_as(
        "SELECT i.id, i.number, i.state, i.total, i.currency, a.name FROM invoices i JOIN accounts a ON a.id = i.account_id \
         WHERE i.kind = 'invoice' AND ($1 = '' OR i.state = $1) AND ($2 = '' OR i.account_id = $2) ORDER BY i.id DESC LIMIT $3",
    )
    .bind(&filter.state)
    .bind(&filter.account_id)
    .bind(INVOICES_SHOWN)
    .fetch_all(&s.pool)
    .await;
    let rows = match rows {
        Ok(r) => r,
        Err(e) => return failure(e.into()),
    };
    let csrf = esc(&admin.csrf);
    let action = |id: &str, name: &str| {
        format!(
            "<form method=\"post\" action=\"/admin/invoices/{}/{name}\" style=\"display:inline\"><input type=\"hidden\" name=\"csrf\" value=\"{csrf}\"><button type=\"submit\">{}</button></form>",
            esc(id),
            name
        )
    };
    let body_rows: String = rows
        .iter()
        .map(|(id, number, st, total, currency, account)| {
            let actions: Vec<&str> = match st.as_str() {
                "open" => vec!["finalize", "issue", "cancel"],
                "finalized" => vec!["issue", "cancel"],
                "pending" | "unpaid" => vec!["charge", "cancel"],
                "failed" => vec!["charge"],
                _ => vec![],
            };
            let mut buttons: String = if admin.scope == Scope::Write { actions.iter().map(|a| action(id, a)).collect() } else { String::new() };
            if admin.scope == Scope::Write && matches!(st.as_str(), "pending" | "unpaid" | "paid" | "failed") {
                // A credit note refunds part or all of an issued invoice (net amount, VAT added).
                buttons.push_str(&format!(
                    "<details><summary>Credit note</summary><form method=\"post\" action=\"/admin/invoices/{}/credit_note\"><input type=\"hidden\" name=\"csrf\" value=\"{csrf}\">\
                     <label for=\"amount-{0}\">Net amount</label><input id=\"amount-{0}\" name=\"amount\" required>\
                     <label for=\"reason-{0}\">Reason</label><input id=\"reason-{0}\" name=\"reason\"><button type=\"submit\">Issue credit note</button></form></details>",
                    esc(id)
                ));
            }
            format!(
                "<tr><td>{}</td><td>{}</td><td>{}</td><td>{} {}</td><td><a href=\"/admin/api/v1/invoices/{}.pdf\">PDF</a></td><td>{buttons}</td></tr>",
                esc(number.as_deref().unwrap_or("(draft)")),
                esc(account),
                esc(st),
                esc(total),
                esc(currency),
                esc(id)
            )
        })
        .collect();
    let body = format!(
        "{notice}<table class=\"sortable\"><thead><tr><th scope=\"col\">Number</th><th scope=\"col\">Account</th><th scope=\"col\">State</th><th scope=\"col\">Total</th><th scope=\"col\"></th><th scope=\"col\">Actions</th></tr></thead><tbody>{body_rows}</tbody></table>"
    );
    (
        status,
        Html(admin_page("Invoices", Some(&admin.csrf), &body)),
    )
        .into_response()
}

/// `POST /admin/invoices/{id}/{action}`: issue, cancel or charge, with a write-scope session.
pub async fn invoice_action(
    State(s): State<AppState>,
    Path((id, action)): Path<(String, String)>,
    WriteForm { admin, .. }: WriteForm,
) -> Response {
    // The admin API's own action routes: same checks, same states, same emails.
    if !matches!(action.as_str(), "finalize" | "issue" | "cancel" | "charge") {
        return failure(ApiError::not_found("action", &action));
    }
    let path = format!("/invoices/{}/{action}", super::admin_forms::seg(&id));
    let a = super::admin_api::call(&s, &admin.caller, axum::http::Method::POST, &path, None).await;
    let notice = match a.error() {
        None => format!(
            "<p class=\"notice\" role=\"status\">Invoice {}: {} done.</p>",
            esc(&id),
            esc(&action)
        ),
        Some((_, message)) => format!(
            "<p class=\"error\" role=\"alert\">Invoice {}: {} failed: {}</p>",
            esc(&id),
            esc(&action),
            esc(&message)
        ),
    };
    let status = if a.ok() { StatusCode::OK } else { a.status };
    invoices_page(&s, &admin, &InvoiceFilter::default(), &notice, status).await
}

/// Text fields of the billing settings form: (form name, JSON path, label).
const SETTINGS_TEXT: &[(&str, &str, &str)] = &[
    ("currency", "currency", "Currency (ISO 4217)"),
    ("due_days", "due_days", "Days to pay"),
    (
        "run_hour_utc",
        "run_hour_utc",
        "Daily billing run, hour (UTC)",
    ),
    ("retry.attempts", "retry.attempts", "Charge attempts"),
    (
        "retry.interval_days",
        "retry.interval_days",
        "Days between attempts",
    ),
    ("seller.name", "seller.name", "Seller name"),
    ("seller.vat_id", "seller.vat_id", "Seller VAT id"),
    (
        "payment_method_url",
        "payment_method_url",
        "Card update page (for emails)",
    ),
];
const SETTINGS_AREAS: &[(&str, &str)] = &[
    ("invoice_footer", "Invoice footer"),
    ("vat_zero_text", "Text on invoices without VAT"),
    (
        "email_texts.invoice_issued.subject",
        "Email, invoice issued: subject",
    ),
    (
        "email_texts.invoice_issued.body",
        "Email, invoice issued: body",
    ),
    (
        "email_texts.charge_succeeded.subject",
        "Email, charge succeeded: subject",
    ),
    (
        "email_texts.charge_succeeded.body",
        "Email, charge succeeded: body",
    ),
    (
        "email_texts.charge_failed.subject",
        "Email, charge failed: subject",
    ),
    (
        "email_texts.charge_failed.body",
        "Email, charge failed: body",
    ),
    (
        "email_texts.final_failure.subject",
        "Email, final failure: subject",
    ),
    (
        "email_texts.final_failure.body",
        "Email, final failure: body",
    ),
];
const NUMBER_FIELDS: &[&str] = &[
    "due_days",
    "run_hour_utc",
    "retry.attempts",
    "retry.interval_days",
];

fn get_path<'a>(v: &'a serde_json::Value, path: &str) -> &'a serde_json::Value {
    path.split('.').fold(v, |v, k| &v[k])
}

fn set_path(v: &mut serde_json::Value, path: &str, value: serde_json::Value) {
    let mut cur = v;
    let parts: Vec<&str> = path.split('.').collect();
    for (i, k) in parts.iter().enumerate() {
        if i + 1 == parts.len() {
            cur[*k] = value;
            return;
        }
        if !cur[*k].is_object() {
            cur[*k] = serde_json::json!({});
        }
        cur = &mut cur[*k];
    }
}

fn settings_page(
    admin: &AdminSession,
    values: &serde_json::Value,
    error: Option<(&str, &str)>,
    notice: &str,
    status: StatusCode,
) -> Response {
    let err_for = |name: &str| error.filter(|(p, _)| *p == name).map(|(_, m)| m);
    let mut fields = String::new();
    fields.push_str(&super::html::select(
        "mode",
        "Mode",
        &options(&["postpaid", "prepaid"]),
        &text(&values["mode"]),
        err_for("mode"),
    ));
    fields.push_str(&super::html::select(
        "numbering",
        "Invoice numbers",
        &options(&["monthly", "yearly"]),
        &text(&values["numbering"]),
        err_for("numbering"),
    ));
    for (name, label) in [
        ("charging_enabled", "Charge issued invoices"),
        (
            "suspend_on_failure",
            "Suspend applications after the last failed charge",
        ),
    ] {
        let checked = if values[name].as_bool() == Some(true) {
            " checked"
        } else {
            ""
        };
        fields.push_str(&format!("<label><input type=\"checkbox\" name=\"{name}\" value=\"on\"{checked}> {label}</label>"));
    }
    for (name, path, label) in SETTINGS_TEXT {
        // Not `required`: seller and card-page fields may stay empty, and the browser must not
        // block the form over them; the server validates every field.
        fields.push_str(&super::html::input(
            name,
            label,
            "text",
            &text(get_path(values, path)),
            err_for(name),
            false,
        ));
    }
    for (name, label) in SETTINGS_AREAS {
        let e = err_for(name)
            .map(|m| {
                format!(
                    "<span class=\"error\" id=\"{name}-error\">{}</span>",
                    esc(m)
                )
            })
            .unwrap_or_default();
        fields.push_str(&format!(
            "<label for=\"{name}\">{}{e}</label><textarea id=\"{name}\" name=\"{name}\" rows=\"3\" cols=\"70\">{}</textarea>",
            esc(label),
            esc(&text(get_path(values, name)))
        ));
    }
    let general = error.filter(|(p, _)| {
        !SETTINGS_TEXT.iter().any(|t| t.0 == *p) && !SETTINGS_AREAS.iter().any(|t| t.0 == *p)
    });
    let general = general
        .map(|(p, m)| {
            format!(
                "<p class=\"error\" role=\"alert\">{}: {}</p>",
                esc(p),
                esc(m)
            )
        })
        .unwrap_or_default();
    let body = format!(
        "{notice}{general}<form method=\"post\" action=\"/admin/billing\"><input type=\"hidden\" name=\"csrf\" value=\"{}\">{fields}<button type=\"submit\">Save</button></form>",
        esc(&admin.csrf)
    );
    (
        status,
        Html(admin_page("Billing settings", Some(&admin.csrf), &body)),
    )
        .into_response()
}

pub async fn billing_settings(State(s): State<AppState>, admin: AdminSession) -> Response {
    match crate::billing::settings::load(&s.pool).await {
        Ok(settings) => settings_page(
            &admin,
            &serde_json::to_value(&settings).unwrap_or_default(),
            None,
            "",
            StatusCode::OK,
        ),
        Err(e) => failure(e),
    }
}

/// Saves the whole form through the same validation as `PUT /billing/settings`; an invalid value
/// is shown next to its field and nothing changes.
pub async fn save_billing_settings(
    State(s): State<AppState>,
    WriteForm { admin, fields: f }: WriteForm,
) -> Response {
    let mut patch = serde_json::json!({});
    for key in ["mode", "numbering"] {
        if let Some(v) = f.get(key) {
            patch[key] = serde_json::json!(v);
        }
    }
    for key in ["charging_enabled", "suspend_on_failure"] {
        patch[key] = serde_json::json!(f.get(key).is_some_and(|v| v == "on"));
    }
    let mut bad_number = None;
    for (name, path, _) in SETTINGS_TEXT {
        let Some(v) = f.get(*name) else { continue };
        let value = if NUMBER_FIELDS.contains(name) {
            match v.trim().parse::<i64>() {
                Ok(n) => serde_json::json!(n),
                Err(_) => {
                    bad_number.get_or_insert(*name);
                    continue;
                }
            }
        } else {
            serde_json::json!(v.trim())
        };
        set_path(&mut patch, path, value);
    }
    for (name, _) in SETTINGS_AREAS {
        if let Some(v) = f.get(*name) {
            set_path(&mut patch, name, serde_json::json!(v.replace("\r\n", "\n")));
        }
    }
    let mut shown = patch.clone();
    if let Some(name) = bad_number {
        set_path(
            &mut shown,
            name,
            serde_json::json!(f.get(name).cloned().unwrap_or_default()),
        );
        return settings_page(
            &admin,
            &shown,
            Some((name, "a whole number")),
            "",
            StatusCode::UNPROCESSABLE_ENTITY,
        );
    }
    let saved = async {
        let mut tx = crate::store::begin_write(&s.pool).await?;
        let settings = crate::billing::settings::update(&mut tx, patch).await?;
        tx.commit().await?;
        Ok::<_, ApiError>(settings)
    }
    .await;
    match saved {
        Ok(settings) => settings_page(
            &admin,
            &serde_json::to_value(&settings).unwrap_or_default(),
            None,
            "<p class=\"notice\" role=\"status\">Saved.</p>",
            StatusCode::OK,
        ),
        Err(
            ApiError::Invalid { message, param, .. } | ApiError::Conflict { message, param, .. },
        ) => {
            let param = param.unwrap_or_default();
            settings_page(
                &admin,
                &shown,
                Some((&param, &message)),
                "",
                StatusCode::UNPROCESSABLE_ENTITY,
            )
        }
        Err(e) => failure(e),
    }
}
