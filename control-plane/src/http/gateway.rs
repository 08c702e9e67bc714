//! What gateways call: the snapshot of a service and usage reports (`domain/gateway`,
//! `domain/metering`). Authenticated with gateway tokens, which can do nothing else. The
//! handlers check the caller's scope, call the domain, and encode: the snapshot as JSON or the
//! compact binary form, cached per version, with its version as the ETag (304 on a match).

use std::collections::HashMap;
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Path, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::Extension;
use axum::Json;
use tollgate_protocol::{UsageAck, UsageReport};

use super::error::{ApiError, ApiResult};
use super::extract::{ApiQuery, RawBody};
use super::AppState;
use crate::domain::gateway::{self, snapshot, GatewayCaller};
use crate::domain::metering;
use crate::secrets::sha256_hex;

/// Gateway authentication: `Authorization: Bearer <gateway token>`.
pub async fn layer(State(state): State<AppState>, mut req: Request, next: Next) -> Response {
    let token = req
        .headers()
        .get("authorization")
        .and_then(|h| h.to_str().ok())
        .and_then(|h| h.strip_prefix("Bearer "))
        .map(|t| sha256_hex(t.trim()));
    let Some(digest) = token else {
        return ApiError::Unauthorized("send Authorization: Bearer <gateway token>".into())
            .into_response();
    };
    match gateway::authenticate(&state.pool, &digest).await {
        Ok(Some(caller)) => {
            req.extensions_mut().insert(caller);
            next.run(req).await
        }
        Ok(None) => {
            ApiError::Unauthorized("unknown or revoked gateway token".into()).into_response()
        }
        Err(e) => ApiError::from(e).into_response(),
    }
}

/// Bumps the catalog revision after every successful admin write (wrapped around the admin API).
pub async fn bump_on_write(State(state): State<AppState>, req: Request, next: Next) -> Response {
    // Billing writes (settings, runs, invoices) do not change what gateways enforce.
    let path = req.uri().path();
    let billing = path.contains("/billing/") || path.contains("/invoices");
    let writes = !billing
        && !matches!(
            *req.method(),
            axum::http::Method::GET | axum::http::Method::HEAD
        );
    let response = next.run(req).await;
    if writes && response.status().is_success() {
        if let Err(e) =
            sqlx::query("UPDATE catalog_revision SET revision = revision + 1 WHERE id = 1")
                .execute(&state.pool)
                .await
        {
            tracing::error!(error = %e, "cannot bump the catalog revision; gateways may serve a stale snapshot");
        }
    }
    response
}

/// Serialized snapshots by service, reused while the version holds: many gateways polling every
/// second cost one build per change, not one per poll.
#[derive(Default)]
pub struct SnapshotCache {
    entries: std::sync::Mutex<HashMap<String, (String, Arc<Bytes>)>>,
}

pub async fn snapshot(
    State(s): State<AppState>,
    Extension(caller): Extension<GatewayCaller>,
    Path(service_id): Path<String>,
    headers: HeaderMap,
) -> ApiResult<Response> {
    caller.check_service(&s.pool, &service_id).await?;
    let version = snapshot::version(&s.pool).await?;
    let etag = format!("\"{version}\"");
    if headers.get("if-none-match").and_then(|v| v.to_str().ok()) == Some(etag.as_str()) {
        return Ok((StatusCode::NOT_MODIFIED, [("etag", etag)]).into_response());
    }
    // The compact encoding when the gateway asks for it (the Tollgate filter does), else JSON.
    let binary = headers
        .get("accept")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|a| a.contains(tollgate_protocol::binary::MEDIA_TYPE));
    let cache_key = format!("{service_id}/{}", if binary { "binary" } else { "json" });
    let cached = s.snapshots.entries.lock().ok().and_then(|m| {
        m.get(&cache_key)
            .filter(|(v, _)| *v == version)
            .map(|(_, b)| b.clone())
    });
    let body = match cached {
        Some(b) => b,
        None => {
            let snap = snapshot::build(&s.pool, &service_id, version.clone()).await?;
            let encoded = if binary {
                // An application the compact format cannot carry is left out (its keys open
                // nothing on the gateways), never the whole snapshot.
                let (bytes, skipped) = tollgate_protocol::binary::encode_reporting(&snap)
                    .map_err(ApiError::Internal)?;
                for why in skipped {
                    tracing::warn!("snapshot of service {service_id}: {why}; left out");
                }
                bytes
            } else {
                serde_json::to_vec(&snap).map_err(|e| ApiError::Internal(e.to_string()))?
            };
            let bytes = Arc::new(Bytes::from(encoded));
            if let Ok(mut m) = s.snapshots.entries.lock() {
                m.insert(cache_key, (version, bytes.clone()));
            }
            bytes
        }
    };
    let mut r = (StatusCode::OK, Bytes::clone(&body)).into_response();
    let content_type = if binary {
        tollgate_protocol::binary::MEDIA_TYPE
    } else {
        "application/json"
    };
    r.headers_mut()
        .insert("content-type", HeaderValue::from_static(content_type));
    if let Ok(v) = HeaderValue::from_str(&etag) {
        r.headers_mut().insert("etag", v);
    }
    Ok(r)
}

pub async fn usage(
    State(s): State<AppState>,
    Extension(caller): Extension<GatewayCaller>,
    Path(service_id): Path<String>,
    RawBody(body): RawBody,
) -> ApiResult<Json<UsageAck>> {
    caller.check_service(&s.pool, &service_id).await?;
    let report: UsageReport = super::extract::parse(&body)?;
    Ok(Json(
        metering::reports::record(&s.pool, &caller, &service_id, &report).await?,
    ))
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GlobalUsageParams {
    /// The asking gateway instance: its own usage is left out.
    instance: String,
}

/// `GET /gateway/v1/services/{id}/global_usage?instance=<id>`: usage admitted by all *other*
/// instances in the current window of every period the service's plans limit. A gateway adds it to
/// its own counts, so a quota holds across gateways within (instances x rate x (flush + poll)).
pub async fn global_usage(
    State(s): State<AppState>,
    Extension(caller): Extension<GatewayCaller>,
    Path(service_id): Path<String>,
    ApiQuery(p): ApiQuery<GlobalUsageParams>,
) -> ApiResult<Json<tollgate_protocol::GlobalUsage>> {
    caller.check_service(&s.pool, &service_id).await?;
    Ok(Json(
        metering::global_usage::of_others(&s.pool, &caller, &service_id, &p.instance).await?,
    ))
}
