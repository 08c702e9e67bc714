//! The client's address as the abuse limits see it (`crate::rate_limit`), read from a request:
//! the socket peer, or with `TOLLGATE_TRUST_FORWARDED_FOR=true` the last `X-Forwarded-For` entry.

use std::net::SocketAddr;

use axum::extract::{ConnectInfo, FromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::HeaderMap;

use crate::rate_limit::Limiter;
use crate::state::AppState;

/// The value of the last `X-Forwarded-For` header (the one the nearest proxy appended to).
fn last_forwarded_for(headers: &HeaderMap) -> Option<&str> {
    headers
        .get_all("x-forwarded-for")
        .iter()
        .next_back()
        .and_then(|v| v.to_str().ok())
}

/// The client address of a request in a middleware (see [`Limiter::client_ip`]), or `None` for a
/// request without a peer address: only in-process calls have none (`tollgate serve` always
/// records the peer), and lumping them under one "unknown" address would let one caller's
/// failures limit every other.
pub fn of(limits: &Limiter, req: &Request) -> Option<String> {
    let peer = req
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0)?;
    Some(limits.client_ip(Some(peer), last_forwarded_for(req.headers())))
}

/// [`of`] for an extractor's request parts.
pub fn of_parts(limits: &Limiter, parts: &Parts) -> Option<String> {
    let peer = parts
        .extensions
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0)?;
    Some(limits.client_ip(Some(peer), last_forwarded_for(&parts.headers)))
}

/// The client's address as the limits see it (see [`Limiter::client_ip`]), as a handler argument.
pub struct ClientIp(pub String);

impl FromRequestParts<AppState> for ClientIp {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, s: &AppState) -> Result<Self, Self::Rejection> {
        let peer = parts
            .extensions
            .get::<ConnectInfo<SocketAddr>>()
            .map(|c| c.0);
        Ok(ClientIp(
            s.limits.client_ip(peer, last_forwarded_for(&parts.headers)),
        ))
    }
}
