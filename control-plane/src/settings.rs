//! Process settings from the environment (documented in docs/control-plane.md).

use std::net::SocketAddr;

/// Default listen address: loopback, so a fresh install is not exposed by accident.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:8080";
/// Default database: a SQLite file in the working directory, created on first start.
pub const DEFAULT_DATABASE_URL: &str = "sqlite://tollgate.db?mode=rwc";

#[derive(Clone, Debug)]
pub struct Settings {
    pub listen: SocketAddr,
    pub database_url: String,
    /// `TOLLGATE_ADMIN_TOKEN`: a bootstrap admin token with write scope (held hashed in memory).
    pub admin_token: Option<String>,
}

impl Settings {
    pub fn from_env() -> Result<Settings, String> {
        let listen = std::env::var("TOLLGATE_LISTEN").unwrap_or_else(|_| DEFAULT_LISTEN.into());
        let listen = listen.parse().map_err(|e| {
            format!("TOLLGATE_LISTEN={listen:?} is not an address like 127.0.0.1:8080: {e}")
        })?;
        let database_url =
            std::env::var("TOLLGATE_DATABASE_URL").unwrap_or_else(|_| DEFAULT_DATABASE_URL.into());
        let admin_token = std::env::var("TOLLGATE_ADMIN_TOKEN")
            .ok()
            .filter(|t| !t.is_empty());
        if let Some(t) = &admin_token {
            if t.len() < 32 {
                return Err("TOLLGATE_ADMIN_TOKEN must be at least 32 characters".into());
            }
        }
        Ok(Settings {
            listen,
            database_url,
            admin_token,
        })
    }
}
