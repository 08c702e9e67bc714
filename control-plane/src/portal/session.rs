//! Portal sign-in plumbing: the cookies that carry a session (HttpOnly; the session is stored as
//! SHA-256 by `domain::access::sessions`) and CSRF tokens (per session; before sign-in a
//! double-submit cookie). Passwords are `domain::access::passwords`.

use axum::http::HeaderMap;

use crate::domain::access::sessions;
use crate::domain::DomainResult;
use crate::secrets::constant_time_eq;
use crate::store::Pool;

pub use crate::domain::access::passwords::{
    hash_password, verify_password, MAX_PASSWORD_CHARS, MIN_PASSWORD_CHARS,
};
pub use crate::domain::access::sessions::{start, Session, SESSION_TTL_SECS};

pub const SESSION_COOKIE: &str = "tg_session";
pub const CSRF_COOKIE: &str = "tg_csrf";

pub fn cookie(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get_all("cookie")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|kv| kv.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.to_string())
}

/// `Set-Cookie` for a portal cookie: HttpOnly, Secure, SameSite=Lax, scoped to /portal.
pub fn set_cookie(name: &str, value: &str, max_age: i64) -> String {
    format!("{name}={value}; Path=/portal; HttpOnly; Secure; SameSite=Lax; Max-Age={max_age}")
}

/// The session of this request, if its cookie names a live one.
pub async fn current(pool: &Pool, headers: &HeaderMap) -> DomainResult<Option<Session>> {
    match cookie(headers, SESSION_COOKIE) {
        Some(token) => sessions::current(pool, &token).await,
        None => Ok(None),
    }
}

pub async fn end(pool: &Pool, headers: &HeaderMap) -> DomainResult<()> {
    match cookie(headers, SESSION_COOKIE) {
        Some(token) => sessions::end(pool, &token).await,
        None => Ok(()),
    }
}

/// A form's CSRF field against the expected token (constant time).
pub fn csrf_ok(expected: &str, presented: Option<&str>) -> bool {
    presented.is_some_and(|p| !expected.is_empty() && constant_time_eq(expected, p))
}
