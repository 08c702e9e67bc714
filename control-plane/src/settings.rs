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
    /// `TOLLGATE_SMTP_URL` (e.g. `smtp://127.0.0.1:2525`, `smtps://user:pass@mail.example.com`):
    /// where invoice email goes. Without it, email waits in the outbox.
    pub smtp_url: Option<String>,
    /// `TOLLGATE_MAIL_FROM`: the sender of billing email.
    pub mail_from: String,
    /// `TOLLGATE_BILLING_SCHEDULER=off` turns the daily billing run off (runs are then started by
    /// `tollgate billing run` or the API only).
    pub billing_scheduler: bool,
    /// `TOLLGATE_MASTER_KEY` (at least 32 characters): seals payment-gateway secrets at rest. Without
    /// it the control plane refuses to store them.
    pub master_key: Option<[u8; 32]>,
    /// Abuse limits: `TOLLGATE_SIGN_IN_FAILURES_PER_ACCOUNT`, `TOLLGATE_SIGN_IN_ATTEMPTS_PER_IP`,
    /// `TOLLGATE_SIGN_IN_WINDOW_SECS`, `TOLLGATE_SIGN_UPS_PER_IP_PER_HOUR`,
    /// `TOLLGATE_MAX_APPLICATIONS_PER_ACCOUNT`, `TOLLGATE_MAX_CONCURRENT_PASSWORD_HASHES`,
    /// `TOLLGATE_TRUST_FORWARDED_FOR` (defaults in [`crate::rate_limit`]).
    pub limits: crate::rate_limit::LimitSettings,
    /// `TOLLGATE_ADMIN_EMAIL`: the provider's operator address; told when a webhook endpoint is
    /// disabled after a retry window of failures. Without it only the log says so.
    pub admin_email: Option<String>,
    /// The webhook retry schedule: `TOLLGATE_WEBHOOK_RETRY_FIRST_MS`,
    /// `TOLLGATE_WEBHOOK_RETRY_MAX_MS`, `TOLLGATE_WEBHOOK_RETRY_WINDOW_SECS` (defaults in
    /// [`crate::domain::webhooks::signing`]: 5 s, 12 h, 3 days). A window under three days
    /// breaks the documented promise: for test set-ups.
    pub webhook_retry: crate::domain::webhooks::signing::RetrySchedule,
    /// `TOLLGATE_METRICS_TOKEN` (at least [`MIN_METRICS_TOKEN_CHARS`] characters): the Bearer
    /// token `GET /metrics` requires. Unset: `/metrics` is refused (docs/operations.md).
    pub metrics_token: Option<String>,
}

fn webhook_retry_from_env() -> Result<crate::domain::webhooks::signing::RetrySchedule, String> {
    let d = crate::domain::webhooks::signing::RetrySchedule::default();
    let first_delay_ms = positive("TOLLGATE_WEBHOOK_RETRY_FIRST_MS", d.first_delay_ms)?;
    let max_delay_ms = positive("TOLLGATE_WEBHOOK_RETRY_MAX_MS", d.max_delay_ms)?;
    let window_secs = positive("TOLLGATE_WEBHOOK_RETRY_WINDOW_SECS", d.window_ms / 1000)?;
    if max_delay_ms < first_delay_ms {
        return Err(
            "TOLLGATE_WEBHOOK_RETRY_MAX_MS must not be below TOLLGATE_WEBHOOK_RETRY_FIRST_MS"
                .into(),
        );
    }
    Ok(crate::domain::webhooks::signing::RetrySchedule {
        first_delay_ms,
        max_delay_ms,
        window_ms: window_secs.saturating_mul(1000),
    })
}

/// Shortest metrics token accepted: as long as the admin token's minimum, so it cannot be guessed.
pub const MIN_METRICS_TOKEN_CHARS: usize = 32;

/// A positive integer setting, or its default when unset.
fn positive<T: std::str::FromStr + PartialOrd + Default + Copy>(
    name: &str,
    default: T,
) -> Result<T, String> {
    match std::env::var(name) {
        Err(_) => Ok(default),
        Ok(v) if v.is_empty() => Ok(default),
        Ok(v) => match v.parse::<T>() {
            Ok(n) if n > T::default() => Ok(n),
            _ => Err(format!("{name}={v:?}: a positive integer")),
        },
    }
}

fn limits_from_env() -> Result<crate::rate_limit::LimitSettings, String> {
    let d = crate::rate_limit::LimitSettings::default();
    Ok(crate::rate_limit::LimitSettings {
        sign_in_failures_per_account: positive(
            "TOLLGATE_SIGN_IN_FAILURES_PER_ACCOUNT",
            d.sign_in_failures_per_account,
        )?,
        sign_in_attempts_per_ip: positive(
            "TOLLGATE_SIGN_IN_ATTEMPTS_PER_IP",
            d.sign_in_attempts_per_ip,
        )?,
        sign_in_window_secs: positive("TOLLGATE_SIGN_IN_WINDOW_SECS", d.sign_in_window_secs)?,
        sign_ups_per_ip_per_hour: positive(
            "TOLLGATE_SIGN_UPS_PER_IP_PER_HOUR",
            d.sign_ups_per_ip_per_hour,
        )?,
        token_failures_per_ip: positive("TOLLGATE_TOKEN_FAILURES_PER_IP", d.token_failures_per_ip)?,
        max_applications_per_account: positive(
            "TOLLGATE_MAX_APPLICATIONS_PER_ACCOUNT",
            d.max_applications_per_account,
        )?,
        max_concurrent_password_hashes: positive(
            "TOLLGATE_MAX_CONCURRENT_PASSWORD_HASHES",
            d.max_concurrent_password_hashes,
        )?,
        trust_forwarded_for: match std::env::var("TOLLGATE_TRUST_FORWARDED_FOR").as_deref() {
            Err(_) | Ok("") | Ok("false") => false,
            Ok("true") => true,
            Ok(other) => {
                return Err(format!(
                    "TOLLGATE_TRUST_FORWARDED_FOR={other:?}: use \"true\" or \"false\""
                ))
            }
        },
    })
}

/// Sender of billing email when `TOLLGATE_MAIL_FROM` is not set.
pub const DEFAULT_MAIL_FROM: &str = "Tollgate Billing <billing@localhost>";

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
        let smtp_url = std::env::var("TOLLGATE_SMTP_URL")
            .ok()
            .filter(|u| !u.is_empty());
        let mail_from =
            std::env::var("TOLLGATE_MAIL_FROM").unwrap_or_else(|_| DEFAULT_MAIL_FROM.into());
        let billing_scheduler = match std::env::var("TOLLGATE_BILLING_SCHEDULER").as_deref() {
            Err(_) | Ok("on") | Ok("") => true,
            Ok("off") => false,
            Ok(other) => {
                return Err(format!(
                    "TOLLGATE_BILLING_SCHEDULER={other:?}: use \"on\" or \"off\""
                ))
            }
        };
        let master_key = match std::env::var("TOLLGATE_MASTER_KEY") {
            Ok(k) if k.len() >= 32 => Some(crate::secrets::derive_key(
                "tollgate master key v1",
                k.as_bytes(),
            )),
            Ok(k) if !k.is_empty() => {
                return Err("TOLLGATE_MASTER_KEY must be at least 32 characters".into())
            }
            _ => None,
        };
        let admin_email = std::env::var("TOLLGATE_ADMIN_EMAIL")
            .ok()
            .filter(|e| !e.trim().is_empty());
        if let Some(e) = &admin_email {
            if !e.contains('@') || e.chars().any(char::is_control) {
                return Err(format!(
                    "TOLLGATE_ADMIN_EMAIL={e:?} is not an email address"
                ));
            }
        }
        let metrics_token = std::env::var("TOLLGATE_METRICS_TOKEN")
            .ok()
            .filter(|t| !t.is_empty());
        if metrics_token
            .as_deref()
            .is_some_and(|t| t.chars().count() < MIN_METRICS_TOKEN_CHARS)
        {
            return Err(format!(
                "TOLLGATE_METRICS_TOKEN must be at least {MIN_METRICS_TOKEN_CHARS} characters"
            ));
        }
        Ok(Settings {
            metrics_token,
            limits: limits_from_env()?,
            admin_email,
            webhook_retry: webhook_retry_from_env()?,
            master_key,
            listen,
            database_url,
            admin_token,
            smtp_url,
            mail_from,
            billing_scheduler,
        })
    }
}
