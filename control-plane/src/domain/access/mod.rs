//! Who may act: admin API tokens (scoped `read` or `write`), developer API tokens (scoped to one
//! account), gateway tokens (scoped to services), the developer portal's users (Argon2id
//! passwords) and the sessions both portals keep in a cookie. Every secret handed out (token,
//! session cookie) is shown once and stored only as its SHA-256; a password only as its Argon2id
//! hash. Reading the `Authorization` header, cookies and the rate limits around failed attempts
//! stay with the HTTP layer and the portals.

pub mod account_tokens;
pub mod gateway_tokens;
pub mod passwords;
pub mod sessions;
pub mod tokens;
pub mod users;

use serde::Serialize;

/// The answer to deleting (revoking) a token: `{"object": ..., "id": ..., "deleted": true}`.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Deleted {
    /// The kind of what was deleted (`admin_token`, `account_token`, `gateway_token`).
    pub object: &'static str,
    pub id: String,
    /// Always `true`.
    pub deleted: bool,
}

impl Deleted {
    fn new(object: &'static str, id: String) -> Deleted {
        Deleted {
            object,
            id,
            deleted: true,
        }
    }
}

#[cfg(test)]
mod tests;
