//! Developer portal: signing up, in and out, the session and CSRF checks every signed-in form
//! goes through, and the error pages all developer pages share.
//!
//! Sign-up does not tell whether an email already has an account: a taken email gets the same
//! answer (303 to the applications, a session cookie, the CSRF cookie cleared) after the same work
//! (an Argon2 hash, one write transaction) as a new one. The new owner is signed in; for a taken
//! email the cookie is a random token no session has, so the browser lands on the sign-in page,
//! and the account's owner is told by email that someone tried to sign up with the address
//! (at most one such email a day). Someone probing emails learns an address is taken only by
//! completing a sign-up, which counts against the per-IP sign-up limit in both cases, and
//! alerts the owner.

use std::collections::HashMap;

use axum::extract::{Form, FromRequest, FromRequestParts, Request, State};
use axum::http::request::Parts;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{Html, IntoResponse, Response};

use crate::domain::access::{passwords, users};
use crate::portal::html::{alert, csrf_input, field, html, page, Markup};
use crate::portal::session::{
    self, Session, CSRF_COOKIE, MIN_PASSWORD_CHARS, SESSION_COOKIE, SESSION_TTL_SECS,
};
use crate::secrets::new_session_token;
use crate::state::AppState;
use crate::web::client_ip::ClientIp;
use crate::web::error::ApiError;

pub use crate::portal::Fields;

/// Errors become a plain page (the API's JSON errors are for programs).
pub fn failure(e: impl Into<ApiError>) -> Response {
    let e: ApiError = e.into();
    let status = e.into_response().status();
    (
        status,
        Html(page(
            "Something went wrong",
            None,
            html! { p { "Please try again." } },
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
    let body = alert(&format!(
        "Too many attempts. Try again in {minutes} minute(s)."
    ));
    (
        StatusCode::TOO_MANY_REQUESTS,
        [(header::RETRY_AFTER, retry_after.to_string())],
        Html(page("Too many attempts", signed_in_csrf, body)),
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
    let body = html! {
        p { "The form expired or was not sent from this site. Go back, reload it and try again." }
    };
    (
        StatusCode::FORBIDDEN,
        Html(page("Form expired", None, body)),
    )
        .into_response()
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
    fields: Markup,
    button: &str,
    notice: Markup,
    status: StatusCode,
) -> Response {
    let csrf = new_session_token();
    let body = html! {
        (notice)
        form method="post" action=(action) novalidate {
            (csrf_input(&csrf))
            (fields)
            button type="submit" { (button) }
        }
    };
    (
        status,
        [(
            header::SET_COOKIE,
            session::set_cookie(CSRF_COOKIE, &csrf, 3600),
        )],
        Html(page(title, None, body)),
    )
        .into_response()
}

fn sign_up_page(f: &Fields, errors: &HashMap<&str, String>, status: StatusCode) -> Response {
    let v = |k: &str| f.get(k).map(String::as_str).unwrap_or("");
    let e = |k: &str| errors.get(k).map(String::as_str);
    let fields = html! {
        (field("name", "Company or your name", "text", v("name"), e("name")))
        (field("email", "Email", "email", v("email"), e("email")))
        (field(
            "password",
            &format!("Password (at least {MIN_PASSWORD_CHARS} characters)"),
            "password",
            "",
            e("password")
        ))
    };
    anonymous_form(
        "Sign up",
        "/portal/sign_up",
        fields,
        "Create account",
        html! {},
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
    if let Err(e) = crate::domain::catalog::check_name("name", &name) {
        errors.insert("name", error_message(e));
    }
    let email = match crate::domain::accounts::check_email(
        f.get("email").map(String::as_str).unwrap_or(""),
    ) {
        Ok(e) => e.to_lowercase(),
        Err(e) => {
            errors.insert("email", error_message(e));
            String::new()
        }
    };
    let password = f.get("password").cloned().unwrap_or_default();
    if let Err(e) = passwords::check_password(&password) {
        errors.insert("password", error_message(e));
    }
    if !errors.is_empty() {
        return sign_up_page(&f, &errors, StatusCode::UNPROCESSABLE_ENTITY);
    }
    // The limit counts taken and free emails alike, so probing for accounts costs sign-ups.
    if let Err(retry_after) = s.limits.sign_up_attempt(&ip) {
        return too_many(retry_after, None);
    }
    let sign_up = users::SignUp {
        name,
        email,
        password,
    };
    match users::sign_up(&s.pool, &s.limits, sign_up).await {
        Ok(token) => signed_in(&token),
        Err(e) => failure(e),
    }
}

pub(super) fn error_message(e: impl Into<ApiError>) -> String {
    let e: ApiError = e.into();
    match e {
        ApiError::Invalid { message, .. } | ApiError::BadRequest { message, .. } => message,
        _ => "invalid".into(),
    }
}

fn sign_in_page(email: &str, error: Option<&str>, status: StatusCode) -> Response {
    let notice = html! { @if let Some(e) = error { (alert(e)) } };
    let fields = html! {
        (field("email", "Email", "email", email, None))
        (field("password", "Password", "password", "", None))
    };
    anonymous_form(
        "Sign in",
        "/portal/sign_in",
        fields,
        "Sign in",
        notice,
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
    // The same answer for an unknown email and a wrong password (no account enumeration).
    let user_id = match users::authenticate(&s.pool, &s.limits, &email, password).await {
        Ok(found) => found,
        Err(e) => return failure(e),
    };
    let Some(user_id) = user_id else {
        s.limits.sign_in_failed(&account_key);
        return sign_in_page(
            &email,
            Some("The email or the password is wrong."),
            StatusCode::UNAUTHORIZED,
        );
    };
    s.limits.sign_in_failures.clear(&account_key);
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
        let (headers, fields) = crate::portal::read_form(req, s).await?;
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
