//! `Idempotency-Key` on POST: the same key with the same body gets the same answer and creates
//! nothing new; the same key with another body is refused (422).
//!
//! The key is claimed (a `pending` row) before the handler runs and completed with the response
//! after it, so two concurrent requests with one key never both create: the second gets 409
//! `idempotency_key_in_use` while the first is in flight. A 5xx answer releases the key so the
//! client can retry. Should the process die between the handler's commit and the completion, the
//! key stays pending (409) rather than risk a second object; keys are scoped per admin token.
//!
//! Stored responses can hold a just-created API key, so they are encrypted (ChaCha20-Poly1305)
//! with a key derived from the caller's plaintext token and the idempotency key: the database
//! alone cannot reveal them, and only the same caller retrying can replay them.

use axum::body::{to_bytes, Body};
use axum::extract::{Request, State};
use axum::http::{HeaderValue, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::auth::Caller;
use crate::domain::idempotency::{self as records, StoredResponse};
use crate::secrets::{open, open_v1, seal, sha256_hex, OpenError, SealedAt};
use crate::state::AppState;
use crate::web::error::ApiError;
use crate::web::MAX_BODY_BYTES;
use sha2::{Digest, Sha256};

/// Longest idempotency key accepted.
pub const MAX_KEY_BYTES: usize = 255;

pub async fn layer(State(state): State<AppState>, req: Request, next: Next) -> Response {
    if req.method() != Method::POST {
        return next.run(req).await;
    }
    let Some(key) = req.headers().get("idempotency-key") else {
        return next.run(req).await;
    };
    match handle(state, key.clone(), req, next).await {
        Ok(r) | Err(r) => r,
    }
}

async fn handle(
    state: AppState,
    key: HeaderValue,
    req: Request,
    next: Next,
) -> Result<Response, Response> {
    let key = key
        .to_str()
        .ok()
        .filter(|k| !k.is_empty() && k.len() <= MAX_KEY_BYTES)
        .ok_or_else(|| {
            ApiError::bad_request(
                Some("Idempotency-Key".into()),
                "invalid_idempotency_key",
                format!("Idempotency-Key must be 1-{MAX_KEY_BYTES} visible ASCII characters"),
            )
            .into_response()
        })?
        .to_string();
    let Some(caller) = req.extensions().get::<Caller>().cloned() else {
        return Err(
            ApiError::Internal("idempotency layer without a caller".into()).into_response(),
        );
    };
    let token_id = caller.token_id.clone();
    let cipher = cipher_for(&caller, &key);
    let (parts, body) = req.into_parts();
    let bytes = to_bytes(body, MAX_BODY_BYTES)
        .await
        .map_err(|_| ApiError::TooLarge.into_response())?;
    let fingerprint = sha256_hex(&format!(
        "{} {}\n{}",
        parts.method,
        parts.uri.path(),
        String::from_utf8_lossy(&bytes)
    ));

    match records::claim(&state.pool, &token_id, &key, &fingerprint).await {
        Ok(true) => {}
        Ok(false) => return Err(replay(&state, &token_id, &key, &fingerprint, &cipher).await),
        Err(e) => return Err(ApiError::from(e).into_response()),
    }

    let response = next
        .run(Request::from_parts(parts, Body::from(bytes)))
        .await;
    let (parts, body) = response.into_parts();
    let body = to_bytes(body, usize::MAX).await.unwrap_or_default();
    let completed = if parts.status.is_server_error() {
        records::release(&state.pool, &token_id, &key).await
    } else {
        let stored = StoredResponse {
            status: parts.status.as_u16(),
            sealed: seal(&cipher, &body, response_at(&row_key(&token_id, &key))),
        };
        records::complete(&state.pool, &token_id, &key, &stored).await
    };
    if let Err(e) = completed {
        tracing::error!(error = ?e, key, "cannot record idempotency key outcome");
    }
    Ok(Response::from_parts(parts, Body::from(body)))
}

/// The row key of a stored response (token ids hold no `/`, so no two rows share one).
fn row_key(token_id: &str, idem_key: &str) -> String {
    format!("{token_id}/{idem_key}")
}

/// Where a stored response is sealed: its row of `idempotency_keys`.
fn response_at(row: &str) -> SealedAt<'_> {
    SealedAt {
        table: "idempotency_keys",
        field: "response",
        row,
    }
}

/// Opens a stored response. Responses stored before sealed values carried their place (the first
/// format) are still read: their key is already derived from the token and the idempotency key
/// ([`cipher_for`]), so they too open only in their own row; they expire within a day.
fn open_response(cipher: &[u8; 32], sealed: &str, row: &str) -> Option<Vec<u8>> {
    match open(cipher, sealed, response_at(row)) {
        Ok(body) => Some(body),
        Err(OpenError::FirstFormat) => open_v1(cipher, sealed),
        Err(_) => None,
    }
}

/// The key stored responses are sealed with: only the holder of the token can re-derive it.
fn cipher_for(caller: &Caller, idem_key: &str) -> [u8; 32] {
    Sha256::new()
        .chain_update(caller.response_secret)
        .chain_update(idem_key.as_bytes())
        .finalize()
        .into()
}

async fn replay(
    state: &AppState,
    token_id: &str,
    key: &str,
    fingerprint: &str,
    cipher: &[u8; 32],
) -> Response {
    match records::claimed(&state.pool, token_id, key).await {
        Err(e) => ApiError::from(e).into_response(),
        Ok(None) => ApiError::conflict(
            "idempotency_key_in_use",
            "this Idempotency-Key was just released; retry",
        )
        .into_response(),
        Ok(Some(claim)) if claim.request_sha256 != fingerprint => ApiError::Invalid {
            code: "idempotency_key_reused",
            message: "this Idempotency-Key was used with a different request".into(),
            param: Some("Idempotency-Key".into()),
        }
        .into_response(),
        Ok(Some(claim)) => match claim.response {
            Some(stored) => replayed(cipher, &stored, &row_key(token_id, key)),
            None => ApiError::conflict(
                "idempotency_key_in_use",
                "a request with this Idempotency-Key is in progress",
            )
            .into_response(),
        },
    }
}

/// The stored answer, as it was given, marked `Idempotent-Replayed: true`.
fn replayed(cipher: &[u8; 32], stored: &StoredResponse, row: &str) -> Response {
    let Some(body) = open_response(cipher, &stored.sealed, row) else {
        return ApiError::Internal("stored idempotent response does not decrypt".into())
            .into_response();
    };
    let Ok(status) = StatusCode::from_u16(stored.status) else {
        return ApiError::Internal(format!(
            "stored idempotent status {} is no status",
            stored.status
        ))
        .into_response();
    };
    let mut r = (status, body).into_response();
    r.headers_mut()
        .insert("content-type", HeaderValue::from_static("application/json"));
    r.headers_mut()
        .insert("idempotent-replayed", HeaderValue::from_static("true"));
    r
}

/// `Idempotency-Key` is not 1 to 255 visible ASCII characters (400 `invalid_idempotency_key`).
#[derive(utoipa::ToResponse)]
#[allow(dead_code)] // documentation only: the answers are built above
pub struct InvalidIdempotencyKey(super::api_doc::ErrorBody);

/// A request with this `Idempotency-Key` is in flight, or the key was just released after a 5xx
/// (409 `idempotency_key_in_use`): retry.
#[derive(utoipa::ToResponse)]
#[allow(dead_code)]
pub struct IdempotencyKeyInUse(super::api_doc::ErrorBody);

/// This `Idempotency-Key` was used with a different request (422 `idempotency_key_reused`).
#[derive(utoipa::ToResponse)]
#[allow(dead_code)]
pub struct IdempotencyKeyReused(super::api_doc::ErrorBody);

/// The answers the idempotency layer gives on any admin POST carrying `Idempotency-Key` (a replay
/// is the stored answer with `Idempotent-Replayed: true`), as reusable responses.
#[derive(utoipa::OpenApi)]
#[openapi(components(responses(
    InvalidIdempotencyKey,
    IdempotencyKeyInUse,
    IdempotencyKeyReused
)))]
pub struct IdempotencyApi;
