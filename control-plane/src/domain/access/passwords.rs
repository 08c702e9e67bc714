//! Portal passwords: Argon2id hashes with the crate's default parameters, computed off the async
//! threads and at most `TOLLGATE_MAX_CONCURRENT_PASSWORD_HASHES` at once, since each costs tens
//! of milliseconds of CPU and memory and a burst of sign-ins must not starve the API.

use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::Argon2;

use crate::domain::{DomainError, DomainResult};
use crate::rate_limit::Limiter;
use crate::secrets::random_salt;

/// Password length bounds (characters).
pub const MIN_PASSWORD_CHARS: usize = 10;
pub const MAX_PASSWORD_CHARS: usize = 256;

/// A well-formed hash no password matches: verifying against it when an email has no user takes
/// the same time as a wrong password (no account enumeration by timing).
pub const DUMMY_HASH: &str = "$argon2id$v=19$m=19456,t=2,p=1$c29tZXNhbHRzb21lc2FsdA$0000000000000000000000000000000000000000000";

/// A new password's length: [`MIN_PASSWORD_CHARS`] to [`MAX_PASSWORD_CHARS`] characters.
pub fn check_password(password: &str) -> DomainResult<()> {
    let chars = password.chars().count();
    if (MIN_PASSWORD_CHARS..=MAX_PASSWORD_CHARS).contains(&chars) {
        Ok(())
    } else {
        Err(DomainError::invalid(
            "password",
            "invalid_password",
            format!("{MIN_PASSWORD_CHARS} to {MAX_PASSWORD_CHARS} characters"),
        ))
    }
}

fn busy() -> DomainError {
    DomainError::Unavailable("too many sign-ins at once; retry shortly".into())
}

/// Argon2id with the crate's default parameters, off the async threads, at most
/// `TOLLGATE_MAX_CONCURRENT_PASSWORD_HASHES` at once (unavailable after a bounded wait).
pub async fn hash_password(limits: &Limiter, password: String) -> DomainResult<String> {
    let _slot = limits.hash_slot().await.ok_or_else(busy)?;
    tokio::task::spawn_blocking(move || {
        let salt = SaltString::encode_b64(&random_salt())
            .map_err(|e| DomainError::Internal(e.to_string()))?;
        Argon2::default()
            .hash_password(password.as_bytes(), &salt)
            .map(|h| h.to_string())
            .map_err(|e| DomainError::Internal(e.to_string()))
    })
    .await
    .map_err(|e| DomainError::Internal(e.to_string()))?
}

/// Checks `password` against an Argon2id hash, under the same concurrency bound as
/// [`hash_password`]. A stored hash that does not parse matches nothing.
pub async fn verify_password(
    limits: &Limiter,
    password: String,
    stored: String,
) -> DomainResult<bool> {
    let _slot = limits.hash_slot().await.ok_or_else(busy)?;
    Ok(tokio::task::spawn_blocking(move || {
        PasswordHash::new(&stored)
            .map(|h| {
                Argon2::default()
                    .verify_password(password.as_bytes(), &h)
                    .is_ok()
            })
            .unwrap_or(false)
    })
    .await
    .unwrap_or(false))
}
