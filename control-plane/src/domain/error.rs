//! The domain's one error type. It says what went wrong in the terms of the business (not found,
//! conflicts with the current state, invalid, rate-limited, the database is unavailable, a bug);
//! `http/error.rs` is the only place it becomes a status code and the JSON error object, and the
//! CLI and the portals show its message. Nothing here knows about HTTP.

use std::fmt;

#[derive(Debug)]
pub enum DomainError {
    /// The input cannot be understood at all (a malformed cursor, a parameter of the wrong shape).
    Malformed {
        code: &'static str,
        message: String,
        param: Option<String>,
    },
    /// No such object.
    NotFound { resource: &'static str, id: String },
    /// Conflicts with the current state (a sixth key, a plan in use, a charge in flight).
    Conflict {
        code: &'static str,
        message: String,
        param: Option<String>,
    },
    /// Well-formed but invalid (negative price, overlapping rules, unknown metric or plan).
    Invalid {
        code: &'static str,
        message: String,
        param: Option<String>,
    },
    /// The caller is known but not allowed this (another account's object, a suspended account).
    Forbidden(String),
    /// A rate limit (see `crate::rate_limit`); the caller may retry after `retry_after` seconds.
    RateLimited {
        code: &'static str,
        message: String,
        retry_after: u64,
    },
    /// The database is not answering in time or went away; nothing was committed, retry.
    Unavailable(String),
    /// A bug or an unexpected database error (logged where it is shown; the message stays generic).
    Internal(String),
}

pub type DomainResult<T> = Result<T, DomainError>;

impl DomainError {
    pub fn invalid(
        param: impl Into<String>,
        code: &'static str,
        message: impl Into<String>,
    ) -> Self {
        DomainError::Invalid {
            code,
            message: message.into(),
            param: Some(param.into()),
        }
    }

    pub fn conflict(code: &'static str, message: impl Into<String>) -> Self {
        DomainError::Conflict {
            code,
            message: message.into(),
            param: None,
        }
    }

    pub fn malformed(
        param: Option<String>,
        code: &'static str,
        message: impl Into<String>,
    ) -> Self {
        DomainError::Malformed {
            code,
            message: message.into(),
            param,
        }
    }

    pub fn not_found(resource: &'static str, id: impl Into<String>) -> Self {
        DomainError::NotFound {
            resource,
            id: id.into(),
        }
    }

    /// The same error with its `param` nested under `prefix` (`line1` -> `seller.address.line1`).
    pub fn with_param_prefix(self, prefix: &str) -> Self {
        let nest = |p: Option<String>| {
            Some(match p {
                Some(p) => format!("{prefix}.{}", p.trim_start_matches("billing_address.")),
                None => prefix.to_string(),
            })
        };
        match self {
            DomainError::Invalid {
                code,
                message,
                param,
            } => DomainError::Invalid {
                code,
                message,
                param: nest(param),
            },
            other => other,
        }
    }

    /// The message a person is shown; an internal error's detail goes to the log instead.
    pub fn public_message(self) -> String {
        if let DomainError::Internal(detail) = &self {
            tracing::error!(%detail, "internal error");
        }
        self.to_string()
    }

    /// The stable machine-readable code (the JSON error object's `code`).
    pub fn code(&self) -> &'static str {
        match self {
            DomainError::Malformed { code, .. }
            | DomainError::Conflict { code, .. }
            | DomainError::Invalid { code, .. }
            | DomainError::RateLimited { code, .. } => code,
            DomainError::NotFound { .. } => "resource_missing",
            DomainError::Forbidden(_) => "forbidden",
            DomainError::Unavailable(_) => "unavailable",
            DomainError::Internal(_) => "internal_error",
        }
    }
}

/// The message a person is shown: internal details stay in the log.
impl fmt::Display for DomainError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DomainError::Malformed { message, .. }
            | DomainError::Conflict { message, .. }
            | DomainError::Invalid { message, .. }
            | DomainError::RateLimited { message, .. }
            | DomainError::Forbidden(message)
            | DomainError::Unavailable(message) => f.write_str(message),
            DomainError::NotFound { resource, id } => write!(f, "no {resource} with id {id:?}"),
            DomainError::Internal(_) => {
                f.write_str("an internal error occurred; it has been logged")
            }
        }
    }
}

impl std::error::Error for DomainError {}

impl From<crate::money::CorruptAmount> for DomainError {
    fn from(e: crate::money::CorruptAmount) -> Self {
        DomainError::Internal(e.to_string())
    }
}

impl From<crate::domain::billing::currency::UnknownCurrency> for DomainError {
    fn from(e: crate::domain::billing::currency::UnknownCurrency) -> Self {
        DomainError::conflict(
            "unknown_currency",
            format!(
                "the stored currency code {:?} is not an ISO 4217 code Tollgate knows: nothing is issued or charged in a guessed currency; correct the stored value",
                e.0
            ),
        )
    }
}

impl From<sqlx::Error> for DomainError {
    fn from(e: sqlx::Error) -> Self {
        match e {
            sqlx::Error::PoolTimedOut => {
                DomainError::Unavailable("the database is busy; retry shortly".into())
            }
            // The database went away (restart, failover, network): nothing was committed, the
            // pool reconnects on its own; the client retries.
            sqlx::Error::Io(_) | sqlx::Error::PoolClosed | sqlx::Error::Protocol(_) => {
                tracing::warn!(error = %e, "database unreachable");
                DomainError::Unavailable("the database is unreachable; retry shortly".into())
            }
            // PostgreSQL connection exceptions (class 08) and shutdown / not yet accepting
            // connections (57P01-57P03).
            sqlx::Error::Database(d)
                if d.code().is_some_and(|c| {
                    c.starts_with("08") || matches!(c.as_ref(), "57P01" | "57P02" | "57P03")
                }) =>
            {
                tracing::warn!(error = %d, "database connection lost");
                DomainError::Unavailable("the database is unreachable; retry shortly".into())
            }
            // Lock contention the client should simply retry: SQLite busy/locked, PostgreSQL
            // deadlock, serialization failure or a lock not granted within `lock_timeout` (the
            // transaction was rolled back whole).
            sqlx::Error::Database(d)
                if d.code().is_some_and(|c| {
                    matches!(c.as_ref(), "5" | "6" | "517" | "40P01" | "40001" | "55P03")
                }) =>
            {
                tracing::warn!(error = %d, "transaction aborted by lock contention");
                DomainError::Unavailable("the database is busy; retry shortly".into())
            }
            // Text PostgreSQL cannot store (U+0000 from a path or form; JSON bodies are refused
            // before): the client's input, not a fault of ours. SQLite would have stored it.
            sqlx::Error::Database(d)
                if d.code()
                    .is_some_and(|c| matches!(c.as_ref(), "22021" | "22P05")) =>
            {
                DomainError::Invalid {
                    code: "invalid_text",
                    message: "text may not contain the NUL character".into(),
                    param: None,
                }
            }
            // A concurrent change removed or still references what this request relied on.
            sqlx::Error::Database(d) if d.is_foreign_key_violation() || d.is_unique_violation() => {
                DomainError::conflict(
                    "conflicting_change",
                    "a concurrent change conflicts with this request; retry",
                )
            }
            other => DomainError::Internal(other.to_string()),
        }
    }
}
