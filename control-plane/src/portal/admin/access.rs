//! The admin portal (`/admin`): sign-in with an admin token (a session cookie, stored as SHA-256,
//! 12 hours; the token's scope applies: read tokens see, write tokens act), the session and CSRF
//! checks every admin form goes through, and the admin error pages.

use axum::extract::{Form, FromRequest, FromRequestParts, Request, State};
use axum::http::request::Parts;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{Html, IntoResponse, Response};

use crate::domain::access::sessions::{self, SESSION_TTL_SECS};
use crate::domain::access::tokens::{self, Scope, TokenCheck};
use crate::domain::DomainResult;
use crate::portal::html::{admin_page, csrf_input, field, html};
use crate::portal::session::{cookie, csrf_ok, set_cookie};
use crate::secrets::new_session_token;
use crate::state::AppState;
use crate::web::error::ApiError;

pub const ADMIN_COOKIE: &str = "tg_admin";
pub const ADMIN_CSRF_COOKIE: &str = "tg_admin_csrf";

pub use crate::portal::Fields;

pub struct AdminSession {
    pub scope: Scope,
    pub csrf: String,
    /// The admin token the session was opened with (`env` for TOLLGATE_ADMIN_TOKEN).
    pub token_id: String,
    /// The client address (see `web::client_ip`), for the audit log.
    pub ip: Option<String>,
}

impl AdminSession {
    /// Who the audit log records for this session's writes.
    pub fn actor(&self) -> crate::domain::audit::Actor {
        crate::domain::audit::Actor::session(&self.token_id, self.ip.clone())
    }
}

pub(super) fn redirect(to: &str) -> Response {
    (StatusCode::SEE_OTHER, [(header::LOCATION, to.to_string())]).into_response()
}

pub(super) fn failure(e: impl Into<ApiError>) -> Response {
    let e: ApiError = e.into();
    let status = e.into_response().status();
    (
        status,
        Html(admin_page(
            "Something went wrong",
            None,
            html! { p { "Please try again." } },
        )),
    )
        .into_response()
}

fn admin_cookie(name: &str, value: &str, max_age: i64) -> String {
    set_cookie(name, value, max_age).replace("Path=/portal", "Path=/admin")
}

async fn current(s: &AppState, headers: &HeaderMap) -> DomainResult<Option<AdminSession>> {
    let Some(token) = cookie(headers, ADMIN_COOKIE) else {
        return Ok(None);
    };
    let grant = sessions::current_admin(&s.pool, &token, s.env_token_sha256.as_deref()).await?;
    Ok(grant.map(|g| AdminSession {
        scope: g.scope,
        csrf: g.csrf,
        token_id: g.token_id,
        ip: None,
    }))
}

async fn require(s: &AppState, headers: &HeaderMap) -> Result<AdminSession, Response> {
    match current(s, headers).await {
        Ok(Some(a)) => Ok(a),
        Ok(None) => Err(redirect("/admin/sign_in")),
        Err(e) => Err(failure(e)),
    }
}

/// A signed-in admin, as a handler argument; otherwise the answer is the sign-in redirect.
impl FromRequestParts<AppState> for AdminSession {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, s: &AppState) -> Result<Self, Response> {
        let mut admin = require(s, &parts.headers).await?;
        admin.ip = crate::web::client_ip::of_parts(&s.limits, parts);
        Ok(admin)
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
        let ip = crate::web::client_ip::of(&s.limits, &req);
        let (headers, fields) = crate::portal::read_form(req, s).await?;
        let mut admin = require_write(s, &headers, &fields).await?;
        admin.ip = ip;
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
            Html(admin_page("Form expired", None, html! {})),
        )
            .into_response());
    }
    if admin.scope != Scope::Write {
        return Err((
            StatusCode::FORBIDDEN,
            Html(admin_page(
                "Read-only",
                Some(&admin.csrf),
                html! { p { "This session's token has read scope." } },
            )),
        )
            .into_response());
    }
    Ok(admin)
}

fn sign_in_page(error: Option<&str>, status: StatusCode) -> Response {
    let csrf = new_session_token();
    let body = html! {
        form method="post" action="/admin/sign_in" {
            (csrf_input(&csrf))
            (field("token", "Admin token", "password", "", error))
            button type="submit" { "Sign in" }
        }
    };
    (
        status,
        [(
            header::SET_COOKIE,
            admin_cookie(ADMIN_CSRF_COOKIE, &csrf, 3600),
        )],
        Html(admin_page("Admin sign-in", None, body)),
    )
        .into_response()
}

pub async fn sign_in_form() -> Response {
    sign_in_page(None, StatusCode::OK)
}

pub async fn sign_in(
    State(s): State<AppState>,
    crate::web::client_ip::ClientIp(ip): crate::web::client_ip::ClientIp,
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
                html! { p { "Reload the form and try again." } },
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
                html! { p { "Too many sign-in attempts from this address; try again later." } },
            )),
        )
            .into_response();
    }
    let token = f
        .get("token")
        .map(|t| t.trim().to_string())
        .unwrap_or_default();
    // An empty field is no token at all, like an empty Bearer header; an expired token gets the
    // same answer as an unknown one.
    let env = s.env_token_sha256.as_deref();
    let checked = match token.is_empty() {
        true => Ok(TokenCheck::Unknown),
        false => tokens::check(&s.pool, env, &token).await,
    };
    let (token_id, scope) = match checked {
        Ok(TokenCheck::Valid { id, scope }) => (id, scope),
        Ok(TokenCheck::Expired | TokenCheck::Unknown) => {
            return sign_in_page(
                Some("unknown or revoked admin token"),
                StatusCode::UNAUTHORIZED,
            )
        }
        Err(e) => return failure(e),
    };
    let session = match sessions::start_admin(&s.pool, &token_id, scope, env).await {
        Ok(session) => session,
        Err(e) => return failure(e),
    };
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
            Html(admin_page("Form expired", None, html! {})),
        )
            .into_response();
    }
    if let Some(token) = cookie(&headers, ADMIN_COOKIE) {
        // Signing out always clears the cookie; a session left behind expires on its own.
        let _ = sessions::end_admin(&s.pool, &token).await;
    }
    let mut r = redirect("/admin/sign_in");
    if let Ok(v) = admin_cookie(ADMIN_COOKIE, "", 0).parse() {
        r.headers_mut().append(header::SET_COOKIE, v);
    }
    r
}
