//! `GET /metrics`: the Prometheus exposition (`crate::telemetry`), and the layer that counts and
//! times every HTTP request by its matched route.
//!
//! Access: `Authorization: Bearer <TOLLGATE_METRICS_TOKEN>` (compared in constant time, as
//! SHA-256 digests). Without that variable `/metrics` is refused (403): the listener also serves
//! the public developer portal, and the figures (invoices, charges declined, traffic by route)
//! are the provider's business. docs/operations.md argues the choice.

use std::time::Instant;

use axum::extract::{MatchedPath, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use crate::secrets::{constant_time_eq, sha256_hex};
use crate::state::AppState;
use crate::telemetry::{self, readings::Readings, Method, UNMATCHED_ROUTE};
use crate::web::error::{ApiError, ApiResult};

/// The environment variable holding the token Prometheus presents.
pub const METRICS_TOKEN_ENV: &str = "TOLLGATE_METRICS_TOKEN";

/// The exposition, after reading the outboxes and the pool.
#[utoipa::path(
    get,
    path = "/metrics",
    tag = "operations",
    summary = "Prometheus metrics (text format 0.0.4)",
    description = "Every metric is described in docs/operations.md. Requires `Authorization: Bearer <TOLLGATE_METRICS_TOKEN>`; refused (403) when the server has no metrics token.",
    responses(
        (status = 200, description = "The exposition", content_type = "text/plain; version=0.0.4; charset=utf-8", body = String),
        (status = 401, description = "No or a wrong metrics token", body = crate::http::api_doc::ErrorBody),
        (status = 403, description = "The server has no metrics token (`TOLLGATE_METRICS_TOKEN` unset): metrics are off", body = crate::http::api_doc::ErrorBody),
        (status = 500, description = "The exposition could not be written", body = crate::http::api_doc::ErrorBody),
    ),
    security(("metrics_token" = []))
)]
pub async fn serve(State(state): State<AppState>, headers: HeaderMap) -> ApiResult<Response> {
    let Some(expected) = state.metrics_token_sha256.as_deref() else {
        return Err(ApiError::Forbidden(format!(
            "metrics are off: start the server with {METRICS_TOKEN_ENV} set and scrape with that Bearer token"
        )));
    };
    let presented = headers
        .get("authorization")
        .and_then(|h| h.to_str().ok())
        .and_then(|h| {
            h.strip_prefix("Bearer ")
                .or_else(|| h.strip_prefix("bearer "))
        })
        .map(|t| sha256_hex(t.trim()));
    // Digests of equal length, compared in constant time: the comparison says nothing about how
    // much of the token was right.
    if !presented.is_some_and(|p| constant_time_eq(&p, expected)) {
        return Err(ApiError::Unauthorized(format!(
            "send Authorization: Bearer <{METRICS_TOKEN_ENV}>"
        )));
    }
    let readings = Readings::read(&state.pool).await;
    let body = telemetry::get()
        .encode(&readings)
        .map_err(|e| ApiError::Internal(format!("encoding the metrics: {e}")))?;
    let mut r = (StatusCode::OK, body).into_response();
    r.headers_mut().insert(
        "content-type",
        HeaderValue::from_static(telemetry::CONTENT_TYPE),
    );
    Ok(r)
}

/// Counts and times every request by its route template (axum's [`MatchedPath`], never the raw
/// path: a client inventing paths must not invent series), method and status.
pub async fn track(req: Request, next: Next) -> Response {
    let started = Instant::now();
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| UNMATCHED_ROUTE.to_string(), |p| p.as_str().to_string());
    let method = Method::of(req.method().as_str());
    let response = next.run(req).await;
    telemetry::get().http_request(
        &route,
        method,
        response.status().as_u16(),
        started.elapsed(),
    );
    response
}

/// This file's part of the generated document.
#[derive(utoipa::OpenApi)]
#[openapi(paths(serve))]
pub struct MetricsApi;
