//! The one error type of the admin API and its one conversion to an HTTP response:
//! `{"error": {"type", "code", "message", "param"}}`. Handlers use `?` and nothing else.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::json;

use crate::domain::DomainError;

#[derive(Debug)]
pub enum ApiError {
    /// 400: the request cannot be understood (bad JSON, bad query parameter).
    BadRequest {
        code: &'static str,
        message: String,
        param: Option<String>,
    },
    /// 413: a body over [`super::MAX_BODY_BYTES`].
    TooLarge,
    /// 408: the request took longer than `http::REQUEST_TIMEOUT`; its work was abandoned.
    TimedOut,
    /// 401: no valid token.
    Unauthorized(String),
    /// 403: a valid token without the scope.
    Forbidden(String),
    /// 404: no such object.
    NotFound { resource: &'static str, id: String },
    /// 404: no such route.
    NoRoute(String),
    /// 409: conflicts with the current state (a sixth key, a plan in use, a key in flight).
    Conflict {
        code: &'static str,
        message: String,
        param: Option<String>,
    },
    /// 422: well-formed but invalid (negative price, overlapping rules, unknown metric or plan).
    Invalid {
        code: &'static str,
        message: String,
        param: Option<String>,
    },
    /// 429: a rate limit (see `crate::rate_limit`); answered with `Retry-After`.
    TooManyRequests {
        code: &'static str,
        message: String,
        retry_after: u64,
    },
    /// 503: the database is not answering in time.
    Unavailable(String),
    /// 500: a bug or an unexpected database error (logged; the message stays generic).
    Internal(String),
}

impl ApiError {
    pub fn invalid(
        param: impl Into<String>,
        code: &'static str,
        message: impl Into<String>,
    ) -> Self {
        ApiError::Invalid {
            code,
            message: message.into(),
            param: Some(param.into()),
        }
    }

    pub fn conflict(code: &'static str, message: impl Into<String>) -> Self {
        ApiError::Conflict {
            code,
            message: message.into(),
            param: None,
        }
    }

    pub fn bad_request(
        param: Option<String>,
        code: &'static str,
        message: impl Into<String>,
    ) -> Self {
        ApiError::BadRequest {
            code,
            message: message.into(),
            param,
        }
    }

    pub fn not_found(resource: &'static str, id: impl Into<String>) -> Self {
        ApiError::NotFound {
            resource,
            id: id.into(),
        }
    }
}

impl From<DomainError> for ApiError {
    fn from(e: DomainError) -> Self {
        match e {
            DomainError::Malformed {
                code,
                message,
                param,
            } => ApiError::BadRequest {
                code,
                message,
                param,
            },
            DomainError::NotFound { resource, id } => ApiError::NotFound { resource, id },
            DomainError::Conflict {
                code,
                message,
                param,
            } => ApiError::Conflict {
                code,
                message,
                param,
            },
            DomainError::Invalid {
                code,
                message,
                param,
            } => ApiError::Invalid {
                code,
                message,
                param,
            },
            DomainError::Forbidden(m) => ApiError::Forbidden(m),
            DomainError::RateLimited {
                code,
                message,
                retry_after,
            } => ApiError::TooManyRequests {
                code,
                message,
                retry_after,
            },
            DomainError::Unavailable(m) => ApiError::Unavailable(m),
            DomainError::Internal(m) => ApiError::Internal(m),
        }
    }
}

impl From<sqlx::Error> for ApiError {
    fn from(e: sqlx::Error) -> Self {
        DomainError::from(e).into()
    }
}

impl From<crate::domain::billing::currency::UnknownCurrency> for ApiError {
    fn from(e: crate::domain::billing::currency::UnknownCurrency) -> Self {
        DomainError::from(e).into()
    }
}

impl From<crate::domain::payments::units::UnitError> for ApiError {
    fn from(e: crate::domain::payments::units::UnitError) -> Self {
        DomainError::from(e).into()
    }
}

impl From<crate::money::CorruptAmount> for ApiError {
    fn from(e: crate::money::CorruptAmount) -> Self {
        DomainError::from(e).into()
    }
}

impl ApiError {
    /// The message a client is shown (internal details stay in the log).
    pub fn public_message(self) -> String {
        self.into_parts().3
    }

    /// Seconds to send in `Retry-After`, for a rate limit.
    pub fn retry_after(&self) -> Option<u64> {
        match self {
            ApiError::TooManyRequests { retry_after, .. } => Some(*retry_after),
            _ => None,
        }
    }

    /// (status, type, code, message, param) of the JSON error object.
    fn into_parts(
        self,
    ) -> (
        StatusCode,
        &'static str,
        &'static str,
        String,
        Option<String>,
    ) {
        match self {
            ApiError::BadRequest {
                code,
                message,
                param,
            } => (
                StatusCode::BAD_REQUEST,
                "invalid_request_error",
                code,
                message,
                param,
            ),
            ApiError::TimedOut => (
                StatusCode::REQUEST_TIMEOUT,
                "api_error",
                "request_timeout",
                format!(
                    "the request took longer than {} s and was abandoned; nothing it had not committed was kept",
                    crate::http::REQUEST_TIMEOUT.as_secs()
                ),
                None,
            ),
            ApiError::TooLarge => (
                StatusCode::PAYLOAD_TOO_LARGE,
                "invalid_request_error",
                "body_too_large",
                format!(
                    "request bodies are limited to {} bytes ({} on provider webhooks)",
                    super::MAX_BODY_BYTES,
                    crate::domain::payments::webhooks::MAX_WEBHOOK_BYTES
                ),
                None,
            ),
            ApiError::Unauthorized(m) => (
                StatusCode::UNAUTHORIZED,
                "authentication_error",
                "unauthorized",
                m,
                None,
            ),
            ApiError::Forbidden(m) => (
                StatusCode::FORBIDDEN,
                "permission_error",
                "insufficient_scope",
                m,
                None,
            ),
            ApiError::NotFound { resource, id } => (
                StatusCode::NOT_FOUND,
                "invalid_request_error",
                "resource_missing",
                format!("no {resource} with id {id:?}"),
                Some("id".to_string()),
            ),
            ApiError::NoRoute(path) => (
                StatusCode::NOT_FOUND,
                "invalid_request_error",
                "route_not_found",
                format!("no route {path}; see /openapi.json"),
                None,
            ),
            ApiError::Conflict {
                code,
                message,
                param,
            } => (StatusCode::CONFLICT, "conflict_error", code, message, param),
            ApiError::Invalid {
                code,
                message,
                param,
            } => (
                StatusCode::UNPROCESSABLE_ENTITY,
                "invalid_request_error",
                code,
                message,
                param,
            ),
            ApiError::TooManyRequests { code, message, .. } => (
                StatusCode::TOO_MANY_REQUESTS,
                "rate_limit_error",
                code,
                message,
                None,
            ),
            ApiError::Unavailable(m) => (
                StatusCode::SERVICE_UNAVAILABLE,
                "api_error",
                "unavailable",
                m,
                None,
            ),
            ApiError::Internal(detail) => {
                tracing::error!(%detail, "internal error");
                (
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "api_error",
                    "internal_error",
                    "an internal error occurred; it has been logged".to_string(),
                    None,
                )
            }
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let retry_after = self.retry_after();
        let (status, kind, code, message, param) = self.into_parts();
        let body =
            json!({"error": {"type": kind, "code": code, "message": message, "param": param}});
        let mut response = (status, Json(body)).into_response();
        if let Some(Ok(v)) = retry_after.map(|s| s.to_string().parse()) {
            response.headers_mut().insert("retry-after", v);
        }
        if status == StatusCode::UNAUTHORIZED {
            if let Ok(v) = "Bearer realm=\"tollgate-admin\"".parse() {
                response.headers_mut().insert("www-authenticate", v);
            }
        }
        response
    }
}

pub type ApiResult<T> = Result<T, ApiError>;

/// A domain error answered directly (a handler that returns `DomainResult`).
impl IntoResponse for DomainError {
    fn into_response(self) -> Response {
        ApiError::from(self).into_response()
    }
}
