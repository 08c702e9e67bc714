//! Admin authentication: `Authorization: Bearer <token>`, looked up by SHA-256. Scopes: `read`
//! (GET) and `write` (everything; implies read).

use axum::extract::{Request, State};
use axum::http::Method;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use crate::domain::access::tokens::{self, TokenCheck};
use crate::rate_limit::TokenKind;
use crate::state::AppState;
use crate::web::error::ApiError;

pub use crate::domain::access::tokens::Scope;

/// Who is calling; put in request extensions by [`layer`].
#[derive(Clone)]
pub struct Caller {
    /// The token's id (`env` for TOLLGATE_ADMIN_TOKEN): idempotency keys are scoped by it.
    pub token_id: String,
    pub scope: Scope,
    /// A secret only the holder of the plaintext token can re-derive (the server stores just the
    /// token's hash): stored idempotent responses are encrypted with it, since they can carry a
    /// freshly created API key.
    pub response_secret: [u8; 32],
}

impl std::fmt::Debug for Caller {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Caller")
            .field("token_id", &self.token_id)
            .field("scope", &self.scope)
            .finish_non_exhaustive()
    }
}

fn response_secret(token: &str) -> [u8; 32] {
    use sha2::{Digest, Sha256};
    Sha256::new()
        .chain_update(b"tollgate idempotent response v1\0")
        .chain_update(token.as_bytes())
        .finalize()
        .into()
}

pub async fn layer(State(state): State<AppState>, mut req: Request, next: Next) -> Response {
    // Take what is needed out of the request before awaiting: `&Request` is not `Send`.
    let header = req
        .headers()
        .get("authorization")
        .map(|h| h.to_str().map(str::to_string));
    // Failed authentications are limited per client address, like sign-in (a missing header is
    // not a guess and does not count; a valid token never counts).
    let ip = crate::web::client_ip::of(&state.limits, &req);
    if let Some(limited) = state
        .limits
        .token_rate_limited(TokenKind::Admin, ip.as_deref())
    {
        return limited.into_response();
    }
    let presented = header.is_some();
    match authenticate(&state, header).await {
        Ok(caller) => {
            let writes = !matches!(*req.method(), Method::GET | Method::HEAD | Method::OPTIONS);
            if writes && caller.scope != Scope::Write {
                return ApiError::Forbidden(
                    "this token has read scope; writing needs a write token".into(),
                )
                .into_response();
            }
            req.extensions_mut().insert(caller);
            next.run(req).await
        }
        Err(e) => {
            if presented && matches!(e, ApiError::Unauthorized(_)) {
                state.limits.token_failed(TokenKind::Admin, ip.as_deref());
            }
            e.into_response()
        }
    }
}

pub(crate) async fn authenticate(
    state: &AppState,
    header: Option<Result<String, axum::http::header::ToStrError>>,
) -> Result<Caller, ApiError> {
    let header = header
        .ok_or_else(|| ApiError::Unauthorized("send Authorization: Bearer <admin token>".into()))?;
    let token = header
        .ok()
        .as_deref()
        .and_then(|h| {
            h.strip_prefix("Bearer ")
                .or_else(|| h.strip_prefix("bearer "))
        })
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .map(str::to_string)
        .ok_or_else(|| {
            ApiError::Unauthorized("the Authorization header must be `Bearer <admin token>`".into())
        })?;
    match tokens::check(&state.pool, state.env_token_sha256.as_deref(), &token).await? {
        TokenCheck::Valid { id, scope } => Ok(Caller {
            token_id: id,
            scope,
            response_secret: response_secret(&token),
        }),
        TokenCheck::Expired => Err(ApiError::Unauthorized("the admin token has expired".into())),
        TokenCheck::Unknown => Err(ApiError::Unauthorized(
            "unknown or revoked admin token".into(),
        )),
    }
}

/// The audit log's actor of an API request, with the client address: an admin API request's
/// token id (routes behind [`layer`], which puts the [`Caller`] in), or a developer API request's
/// account (routes behind `developer::layer`: the writes admins and developers share, such as
/// webhook endpoints, are recorded whoever makes them).
impl axum::extract::FromRequestParts<AppState> for crate::domain::audit::Actor {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        s: &AppState,
    ) -> Result<Self, ApiError> {
        use crate::domain::audit::Actor;
        let ip = crate::web::client_ip::of_parts(&s.limits, parts);
        if let Some(caller) = parts.extensions.get::<Caller>() {
            return Ok(Actor::token(&caller.token_id, ip));
        }
        match parts.extensions.get::<crate::http::developer::Developer>() {
            Some(dev) => Ok(Actor::account(&dev.account_id, ip)),
            None => Err(ApiError::Internal(
                "an API route outside the admin and developer layers".into(),
            )),
        }
    }
}
