//! Portal pages and form handlers.

use std::collections::HashMap;

use axum::extract::{Form, FromRequest, FromRequestParts, Request, State};
use axum::http::request::Parts;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{Html, IntoResponse, Response};

use super::html::{esc, field, page};
use super::session::{
    self, Session, CSRF_COOKIE, MAX_PASSWORD_CHARS, MIN_PASSWORD_CHARS, SESSION_COOKIE,
    SESSION_TTL_SECS,
};
use crate::http::error::{ApiError, ApiResult};
use crate::http::AppState;
use crate::rate_limit::ClientIp;
use crate::secrets::{new_id, new_session_token};
use crate::store::now;

pub use super::Fields;

/// Errors become a plain page (the API's JSON errors are for programs).
pub fn failure(e: ApiError) -> Response {
    let status = e.into_response().status();
    (
        status,
        Html(page(
            "Something went wrong",
            None,
            "<p>Please try again.</p>",
        )),
    )
        .into_response()
}

fn redirect(to: &str) -> Response {
    (StatusCode::SEE_OTHER, [(header::LOCATION, to.to_string())]).into_response()
}

/// 429: a rate limit of the portals, with `Retry-After`.
pub fn too_many(retry_after: u64, signed_in_csrf: Option<&str>) -> Response {
    let minutes = retry_after.div_ceil(60);
    let body = format!("<p class=\"error\" role=\"alert\">Too many attempts. Try again in {minutes} minute(s).</p>");
    (
        StatusCode::TOO_MANY_REQUESTS,
        [(header::RETRY_AFTER, retry_after.to_string())],
        Html(page("Too many attempts", signed_in_csrf, &body)),
    )
        .into_response()
}

/// An error of a signed-in form: limits as their own page, the rest as [`failure`].
pub fn signed_in_failure(e: ApiError, session: &Session) -> Response {
    match e.retry_after() {
        Some(r) => too_many(r, Some(&session.csrf)),
        None => failure(e),
    }
}

pub fn forbidden() -> Response {
    (StatusCode::FORBIDDEN, Html(page("Form expired", None, "<p>The form expired or was not sent from this site. Go back, reload it and try again.</p>"))).into_response()
}

pub async fn home(State(s): State<AppState>, headers: HeaderMap) -> Response {
    match session::current(&s.pool, &headers).await {
        Ok(Some(_)) => redirect("/portal/applications"),
        Ok(None) => redirect("/portal/sign_in"),
        Err(e) => failure(e),
    }
}

/// A pre-session form: a fresh double-submit CSRF cookie and the same value in the form.
fn anonymous_form(
    title: &str,
    action: &str,
    fields: &str,
    button: &str,
    notice: &str,
    status: StatusCode,
) -> Response {
    let csrf = new_session_token();
    let body = format!(
        "{notice}<form method=\"post\" action=\"{action}\" novalidate><input type=\"hidden\" name=\"csrf\" value=\"{csrf}\">{fields}<button type=\"submit\">{}</button></form>",
        esc(button)
    );
    (
        status,
        [(
            header::SET_COOKIE,
            session::set_cookie(CSRF_COOKIE, &csrf, 3600),
        )],
        Html(page(title, None, &body)),
    )
        .into_response()
}

fn sign_up_page(f: &Fields, errors: &HashMap<&str, String>, status: StatusCode) -> Response {
    let v = |k: &str| f.get(k).map(String::as_str).unwrap_or("");
    let e = |k: &str| errors.get(k).map(String::as_str);
    let fields = format!(
        "{}{}{}",
        field("name", "Company or your name", "text", v("name"), e("name")),
        field("email", "Email", "email", v("email"), e("email")),
        field(
            "password",
            &format!("Password (at least {MIN_PASSWORD_CHARS} characters)"),
            "password",
            "",
            e("password")
        ),
    );
    anonymous_form(
        "Sign up",
        "/portal/sign_up",
        &fields,
        "Create account",
        "",
        status,
    )
}

pub async fn sign_up_form() -> Response {
    sign_up_page(&Fields::new(), &HashMap::new(), StatusCode::OK)
}

fn anonymous_csrf_ok(headers: &HeaderMap, f: &Fields) -> bool {
    session::cookie(headers, CSRF_COOKIE)
        .is_some_and(|c| session::csrf_ok(&c, f.get("csrf").map(String::as_str)))
}

/// Signed in: the session cookie, the pre-session CSRF cookie cleared, on to the applications.
fn signed_in(token: &str) -> Response {
    let mut r = redirect("/portal/applications");
    if let Ok(v) = session::set_cookie(SESSION_COOKIE, token, SESSION_TTL_SECS).parse() {
        r.headers_mut().append(header::SET_COOKIE, v);
    }
    r.headers_mut().append(
        header::SET_COOKIE,
        header::HeaderValue::from_static(
            "tg_csrf=; Path=/portal; HttpOnly; Secure; SameSite=Lax; Max-Age=0",
        ),
    );
    r
}

pub async fn sign_up(
    State(s): State<AppState>,
    ClientIp(ip): ClientIp,
    headers: HeaderMap,
    Form(f): Form<Fields>,
) -> Response {
    if !anonymous_csrf_ok(&headers, &f) {
        return forbidden();
    }
    let mut errors: HashMap<&str, String> = HashMap::new();
    let name = f
        .get("name")
        .map(|n| n.trim().to_string())
        .unwrap_or_default();
    if let Err(e) = crate::catalog::check_name("name", &name) {
        errors.insert("name", error_message(e));
    }
    let email = match crate::http::accounts::check_email(
        f.get("email").map(String::as_str).unwrap_or(""),
    ) {
        Ok(e) => e.to_lowercase(),
        Err(e) => {
            errors.insert("email", error_message(e));
            String::new()
        }
    };
    let password = f.get("password").cloned().unwrap_or_default();
    let chars = password.chars().count();
    if !(MIN_PASSWORD_CHARS..=MAX_PASSWORD_CHARS).contains(&chars) {
        errors.insert(
            "password",
            format!("{MIN_PASSWORD_CHARS} to {MAX_PASSWORD_CHARS} characters"),
        );
    }
    if errors.is_empty() {
        let taken: Result<Option<(String,)>, _> =
            sqlx::query_as("SELECT id FROM portal_users WHERE email = $1")
                .bind(&email)
                .fetch_optional(&s.pool)
                .await;
        match taken {
            Ok(Some(_)) => {
                errors.insert(
                    "email",
                    "an account with this email exists: sign in instead".into(),
                );
            }
            Ok(None) => {}
            Err(e) => return failure(e.into()),
        }
    }
    if !errors.is_empty() {
        return sign_up_page(&f, &errors, StatusCode::UNPROCESSABLE_ENTITY);
    }
    if let Err(retry_after) = s.limits.sign_up_attempt(&ip) {
        return too_many(retry_after, None);
    }
    match create_user(&s, &name, &email, password).await {
        Ok(token) => signed_in(&token),
        Err(e) => failure(e),
    }
}

fn error_message(e: ApiError) -> String {
    match e {
        ApiError::Invalid { message, .. } | ApiError::BadRequest { message, .. } => message,
        _ => "invalid".into(),
    }
}

async fn create_user(s: &AppState, name: &str, email: &str, password: String) -> ApiResult<String> {
    let hash = session::hash_password(&s.limits, password).await?;
    let account_id = new_id("acct");
    let user_id = new_id("usr");
    let t = now();
    let mut tx = crate::store::begin_write(&s.pool).await?;
    sqlx::query(
        "INSERT INTO accounts (id, name, email, billing_address, vat_rate, vat_code, created_at, updated_at) VALUES ($1, $2, $3, '{}', '0', NULL, $4, $4)",
    )
    .bind(&account_id)
    .bind(name)
    .bind(email)
    .bind(t)
    .execute(&mut *tx)
    .await?;
    sqlx::query("INSERT INTO portal_users (id, account_id, email, password_hash, created_at) VALUES ($1, $2, $3, $4, $5)")
        .bind(&user_id)
        .bind(&account_id)
        .bind(email)
        .bind(hash)
        .bind(t)
        .execute(&mut *tx)
        .await?;
    tx.commit().await?;
    session::start(&s.pool, &user_id).await
}

fn sign_in_page(email: &str, error: Option<&str>, status: StatusCode) -> Response {
    let notice = error
        .map(|e| format!("<p class=\"error\" role=\"alert\">{}</p>", esc(e)))
        .unwrap_or_default();
    let fields = format!(
        "{}{}",
        field("email", "Email", "email", email, None),
        field("password", "Password", "password", "", None)
    );
    anonymous_form(
        "Sign in",
        "/portal/sign_in",
        &fields,
        "Sign in",
        &notice,
        status,
    )
}

pub async fn sign_in_form() -> Response {
    sign_in_page("", None, StatusCode::OK)
}

pub async fn sign_in(
    State(s): State<AppState>,
    ClientIp(ip): ClientIp,
    headers: HeaderMap,
    Form(f): Form<Fields>,
) -> Response {
    if !anonymous_csrf_ok(&headers, &f) {
        return forbidden();
    }
    let email = f
        .get("email")
        .map(|e| e.trim().to_lowercase())
        .unwrap_or_default();
    // Per IP, then per account: a locked account refuses even the right password until its
    // window ends (the answer is the same for emails with and without an account).
    let account_key = format!("portal:{email}");
    if let Err(retry_after) = s.limits.sign_in_attempt(&ip) {
        return too_many(retry_after, None);
    }
    if let Some(retry_after) = s.limits.account_locked(&account_key) {
        return too_many(retry_after, None);
    }
    let password = f.get("password").cloned().unwrap_or_default();
    let row: Result<Option<(String, String)>, _> =
        sqlx::query_as("SELECT id, password_hash FROM portal_users WHERE email = $1")
            .bind(&email)
            .fetch_optional(&s.pool)
            .await;
    let row = match row {
        Ok(r) => r,
        Err(e) => return failure(e.into()),
    };
    // The same answer for an unknown email and a wrong password (no account enumeration); a dummy
    // verification keeps the timing alike.
    let (user_id, stored) = row.unwrap_or_else(|| (String::new(), "$argon2id$v=19$m=19456,t=2,p=1$c29tZXNhbHRzb21lc2FsdA$0000000000000000000000000000000000000000000".into()));
    let ok = match session::verify_password(&s.limits, password, stored).await {
        Ok(ok) => ok && !user_id.is_empty(),
        Err(e) => return failure(e),
    };
    if ok {
        s.limits.sign_in_failures.clear(&account_key);
    } else {
        s.limits.sign_in_failed(&account_key);
        return sign_in_page(
            &email,
            Some("The email or the password is wrong."),
            StatusCode::UNAUTHORIZED,
        );
    }
    match session::start(&s.pool, &user_id).await {
        Ok(token) => signed_in(&token),
        Err(e) => failure(e),
    }
}

/// The session, or a redirect to sign in.
pub async fn require(s: &AppState, headers: &HeaderMap) -> Result<Session, Response> {
    match session::current(&s.pool, headers).await {
        Ok(Some(session)) => Ok(session),
        Ok(None) => Err(redirect("/portal/sign_in")),
        Err(e) => Err(failure(e)),
    }
}

/// A signed-in developer, as a handler argument; otherwise the answer is the sign-in redirect.
impl FromRequestParts<AppState> for Session {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, s: &AppState) -> Result<Self, Response> {
        require(s, &parts.headers).await
    }
}

/// A form post from a signed-in developer with the session's CSRF token, as a handler argument
/// (the form is read first, then checked by [`require_form`]).
pub struct SessionForm {
    pub session: Session,
    pub fields: Fields,
}

impl FromRequest<AppState> for SessionForm {
    type Rejection = Response;

    async fn from_request(req: Request, s: &AppState) -> Result<Self, Response> {
        let (headers, fields) = super::read_form(req, s).await?;
        let session = require_form(s, &headers, &fields).await?;
        Ok(SessionForm { session, fields })
    }
}

/// A form post from a signed-in developer with the session's CSRF token.
pub async fn require_form(
    s: &AppState,
    headers: &HeaderMap,
    f: &Fields,
) -> Result<Session, Response> {
    let session = require(s, headers).await?;
    if !session::csrf_ok(&session.csrf, f.get("csrf").map(String::as_str)) {
        return Err(forbidden());
    }
    Ok(session)
}

pub async fn sign_out(
    State(s): State<AppState>,
    headers: HeaderMap,
    Form(f): Form<Fields>,
) -> Response {
    if let Err(r) = require_form(&s, &headers, &f).await {
        return r;
    }
    if let Err(e) = session::end(&s.pool, &headers).await {
        return failure(e);
    }
    let mut r = redirect("/portal/sign_in");
    r.headers_mut().append(
        header::SET_COOKIE,
        header::HeaderValue::from_static(
            "tg_session=; Path=/portal; HttpOnly; Secure; SameSite=Lax; Max-Age=0",
        ),
    );
    r
}

async fn applications_page(
    s: &AppState,
    session: &Session,
    notice: &str,
    error: Option<&str>,
    status: StatusCode,
) -> Response {
    let apps: Result<Vec<(String, String, String, String)>, _> = sqlx::query_as(
        "SELECT a.name, p.name, a.state, a.id FROM applications a JOIN plans p ON p.id = a.plan_id WHERE a.account_id = $1 ORDER BY a.id",
    )
    .bind(&session.account_id)
    .fetch_all(&s.pool)
    .await;
    let plans: Result<Vec<(String, String)>, _> =
        sqlx::query_as("SELECT id, name FROM plans WHERE state = 'published' AND parent_plan_id IS NULL ORDER BY name, id")
            .fetch_all(&s.pool)
            .await;
    let (apps, plans) = match (apps, plans) {
        (Ok(a), Ok(p)) => (a, p),
        (Err(e), _) | (_, Err(e)) => return failure(e.into()),
    };
    let rows: String = apps
        .iter()
        .map(|(name, plan, state, id)| {
            format!(
                "<tr><td><a href=\"/portal/applications/{}\">{}</a></td><td>{}</td><td>{}</td><td><code>{}</code></td></tr>",
                esc(id),
                esc(name),
                esc(plan),
                esc(state),
                esc(id)
            )
        })
        .collect();
    let table = if apps.is_empty() {
        "<p>No applications yet.</p>".to_string()
    } else {
        format!("<table><caption>Your applications</caption><thead><tr><th scope=\"col\">Name</th><th scope=\"col\">Plan</th><th scope=\"col\">State</th><th scope=\"col\">Id</th></tr></thead><tbody>{rows}</tbody></table>")
    };
    let options: String = plans
        .iter()
        .map(|(id, name)| format!("<option value=\"{}\">{}</option>", esc(id), esc(name)))
        .collect();
    let err = error
        .map(|e| format!("<span class=\"error\" id=\"app-error\">{}</span>", esc(e)))
        .unwrap_or_default();
    let form = if plans.is_empty() {
        "<p>No plan is published yet.</p>".to_string()
    } else {
        format!(
            "<h2>New application</h2><form method=\"post\" action=\"/portal/applications\"><input type=\"hidden\" name=\"csrf\" value=\"{}\">\
             <label for=\"name\">Name{err}</label><input id=\"name\" name=\"name\" required>\
             <label for=\"plan_id\">Plan</label><select id=\"plan_id\" name=\"plan_id\">{options}</select>\
             <button type=\"submit\">Create application</button></form>",
            esc(&session.csrf)
        )
    };
    (
        status,
        Html(page(
            "Applications",
            Some(&session.csrf),
            &format!(
                "{notice}<p>Signed in as {}</p>{table}{form}",
                esc(&session.email)
            ),
        )),
    )
        .into_response()
}

pub async fn applications(State(s): State<AppState>, session: Session) -> Response {
    applications_page(&s, &session, "", None, StatusCode::OK).await
}

pub async fn create_application(
    State(s): State<AppState>,
    SessionForm { session, fields: f }: SessionForm,
) -> Response {
    let name = f
        .get("name")
        .map(|n| n.trim().to_string())
        .unwrap_or_default();
    if let Err(e) = crate::catalog::check_name("name", &name) {
        return applications_page(
            &s,
            &session,
            "",
            Some(&error_message(e)),
            StatusCode::UNPROCESSABLE_ENTITY,
        )
        .await;
    }
    let plan_id = f.get("plan_id").cloned().unwrap_or_default();
    let published: Result<Option<(String,)>, _> = sqlx::query_as(
        "SELECT id FROM plans WHERE id = $1 AND state = 'published' AND parent_plan_id IS NULL",
    )
    .bind(&plan_id)
    .fetch_optional(&s.pool)
    .await;
    match published {
        Ok(Some(_)) => {}
        Ok(None) => {
            return applications_page(
                &s,
                &session,
                "",
                Some("choose one of the published plans"),
                StatusCode::UNPROCESSABLE_ENTITY,
            )
            .await
        }
        Err(e) => return failure(e.into()),
    }
    match insert_application(&s, &session.account_id, &plan_id, &name).await {
        Ok(key) => {
            let notice = format!(
                "<div class=\"notice\" role=\"status\"><p>Application <strong>{}</strong> created. Its API key, shown only now:</p><p><code id=\"new-key\">{}</code></p></div>",
                esc(&name),
                esc(&key)
            );
            applications_page(&s, &session, &notice, None, StatusCode::CREATED).await
        }
        Err(e @ ApiError::Conflict { .. }) => {
            let message = e.public_message();
            applications_page(&s, &session, "", Some(&message), StatusCode::CONFLICT).await
        }
        Err(e) => failure(e),
    }
}

async fn insert_application(
    s: &AppState,
    account_id: &str,
    plan_id: &str,
    name: &str,
) -> ApiResult<String> {
    let mut tx = crate::store::begin_write(&s.pool).await?;
    // Lock the account row (PostgreSQL; SQLite's write lock serializes anyway) so two concurrent
    // creations cannot both see room under the cap.
    sqlx::query("UPDATE accounts SET updated_at = updated_at WHERE id = $1")
        .bind(account_id)
        .execute(&mut *tx)
        .await?;
    let (held,): (i64,) = sqlx::query_as("SELECT COUNT(*) FROM applications WHERE account_id = $1")
        .bind(account_id)
        .fetch_one(&mut *tx)
        .await?;
    let cap = s.limits.settings.max_applications_per_account;
    if held >= cap {
        return Err(ApiError::conflict(
            "application_limit_reached",
            format!(
                "an account creates at most {cap} applications itself; ask the provider for more"
            ),
        ));
    }
    let (_, _, key) =
        crate::http::applications::insert_application(&mut tx, account_id, plan_id, name, "")
            .await?;
    sqlx::query("UPDATE catalog_revision SET revision = revision + 1 WHERE id = 1")
        .execute(&mut *tx)
        .await?;
    tx.commit().await?;
    Ok(key)
}
