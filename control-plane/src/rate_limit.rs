//! In-process abuse limits (documented in docs/portal.md, "Limits"): fixed-window counters keyed by
//! client IP, account or application, bounded in memory, and a bound on concurrent Argon2id work.
//!
//! The counters live in this process: with several replicas each enforces its own windows (an
//! attacker gets at most replicas x the limit). The client IP is the socket's peer address; behind
//! a reverse proxy every request then comes from the proxy, unless `TOLLGATE_TRUST_FORWARDED_FOR=true`
//! says to take the last address of `X-Forwarded-For` (the one the nearest proxy appended).

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::Semaphore;

use crate::store::now;

/// Most keys one [`Windows`] tracks; when full, expired windows are dropped, then the oldest.
pub const MAX_TRACKED_KEYS: usize = 10_000;
/// Default: failed sign-ins per account (email) per window before the account is locked for the
/// rest of the window (a right password is refused too).
pub const DEFAULT_SIGN_IN_FAILURES_PER_ACCOUNT: u32 = 10;
/// Default: sign-in attempts (portal and admin portal) per client IP per window.
pub const DEFAULT_SIGN_IN_ATTEMPTS_PER_IP: u32 = 50;
/// Default length of the sign-in windows.
pub const DEFAULT_SIGN_IN_WINDOW_SECS: i64 = 15 * 60;
/// Default: failed bearer-token authentications (developer and admin API) per client IP per
/// sign-in window, per kind of token; past it every bearer request of that kind from the address
/// is answered 429 until the window ends. Valid tokens never count. Tokens carry 256 random bits,
/// so this bounds the lookups a guesser costs, not its odds. Gateway tokens are not limited:
/// gateways poll every second, often from one address behind NAT, and one gateway left with a
/// revoked token would lock its whole fleet out of snapshots and usage reports.
pub const DEFAULT_TOKEN_FAILURES_PER_IP: u32 = 100;
/// Default: sign-ups per client IP per hour.
pub const DEFAULT_SIGN_UPS_PER_IP_PER_HOUR: u32 = 20;
/// Default: applications one account may hold when it creates them itself (portal).
pub const DEFAULT_MAX_APPLICATIONS_PER_ACCOUNT: i64 = 20;
/// Default: Argon2id hashes or verifications running at once.
pub const DEFAULT_MAX_CONCURRENT_PASSWORD_HASHES: usize = 4;
/// How long a sign-in or sign-up waits for an Argon2id slot before it is answered 503.
pub const PASSWORD_HASH_WAIT_SECS: u64 = 5;
/// Key rotations per application per hour (admin API, portal, CLI).
pub const MAX_ROTATIONS_PER_APPLICATION_PER_HOUR: u32 = 10;
/// Webhook test events and replays an account may ask for per hour (developer API and portal):
/// each is a delivery retried for days, so an unbounded stream of them to a slow receiver would
/// fill the sender. The admin's are not limited.
pub const MAX_WEBHOOK_SENDS_PER_ACCOUNT_PER_HOUR: u32 = 60;
const SECS_PER_HOUR: i64 = 3600;

/// The configured limits (`TOLLGATE_*` settings; see [`crate::settings`]).
#[derive(Clone, Debug)]
pub struct LimitSettings {
    pub sign_in_failures_per_account: u32,
    pub sign_in_attempts_per_ip: u32,
    pub sign_in_window_secs: i64,
    pub sign_ups_per_ip_per_hour: u32,
    pub token_failures_per_ip: u32,
    pub max_applications_per_account: i64,
    pub max_concurrent_password_hashes: usize,
    pub trust_forwarded_for: bool,
}

impl Default for LimitSettings {
    fn default() -> Self {
        LimitSettings {
            sign_in_failures_per_account: DEFAULT_SIGN_IN_FAILURES_PER_ACCOUNT,
            sign_in_attempts_per_ip: DEFAULT_SIGN_IN_ATTEMPTS_PER_IP,
            sign_in_window_secs: DEFAULT_SIGN_IN_WINDOW_SECS,
            sign_ups_per_ip_per_hour: DEFAULT_SIGN_UPS_PER_IP_PER_HOUR,
            token_failures_per_ip: DEFAULT_TOKEN_FAILURES_PER_IP,
            max_applications_per_account: DEFAULT_MAX_APPLICATIONS_PER_ACCOUNT,
            max_concurrent_password_hashes: DEFAULT_MAX_CONCURRENT_PASSWORD_HASHES,
            trust_forwarded_for: false,
        }
    }
}

/// Fixed windows: key -> (window start, count).
#[derive(Default)]
pub struct Windows {
    map: Mutex<HashMap<String, (i64, u32)>>,
}

impl Windows {
    fn with<R>(&self, f: impl FnOnce(&mut HashMap<String, (i64, u32)>) -> R) -> R {
        let mut m = self.map.lock().unwrap_or_else(|p| p.into_inner());
        f(&mut m)
    }

    /// Seconds until `key`'s window ends if it has reached `limit`, without counting.
    pub fn blocked(&self, key: &str, limit: u32, window_secs: i64) -> Option<u64> {
        let t = now();
        self.with(|m| match m.get(key) {
            Some(&(start, n)) if t < start + window_secs && n >= limit => {
                Some((start + window_secs - t).max(1) as u64)
            }
            _ => None,
        })
    }

    /// Counts one event for `key`; `Err(retry_after_secs)` (and nothing counted) when the window
    /// already holds `limit`.
    pub fn hit(&self, key: &str, limit: u32, window_secs: i64) -> Result<(), u64> {
        let t = now();
        self.with(|m| {
            if !m.contains_key(key) && m.len() >= MAX_TRACKED_KEYS {
                m.retain(|_, (start, _)| t < *start + window_secs);
                if m.len() >= MAX_TRACKED_KEYS {
                    if let Some(oldest) = m.iter().min_by_key(|(_, v)| v.0).map(|(k, _)| k.clone())
                    {
                        m.remove(&oldest);
                    }
                }
            }
            let e = m.entry(key.to_string()).or_insert((t, 0));
            if t >= e.0 + window_secs {
                *e = (t, 0);
            }
            if e.1 >= limit {
                return Err((e.0 + window_secs - t).max(1) as u64);
            }
            e.1 += 1;
            Ok(())
        })
    }

    /// Forgets `key` (a successful sign-in clears the account's failures).
    pub fn clear(&self, key: &str) {
        self.with(|m| m.remove(key));
    }
}

/// The process's limiters, shared through `AppState`.
pub struct Limiter {
    pub settings: LimitSettings,
    pub sign_in_ip: Windows,
    pub sign_in_failures: Windows,
    pub sign_up_ip: Windows,
    pub token_failures: Windows,
    pub rotations: Windows,
    pub webhook_sends: Windows,
    pub hashes: Semaphore,
}

impl Limiter {
    pub fn new(settings: LimitSettings) -> Arc<Limiter> {
        Arc::new(Limiter {
            hashes: Semaphore::new(settings.max_concurrent_password_hashes.max(1)),
            settings,
            sign_in_ip: Windows::default(),
            sign_in_failures: Windows::default(),
            sign_up_ip: Windows::default(),
            token_failures: Windows::default(),
            rotations: Windows::default(),
            webhook_sends: Windows::default(),
        })
    }

    /// One sign-in attempt from `ip`.
    pub fn sign_in_attempt(&self, ip: &str) -> Result<(), u64> {
        self.sign_in_ip.hit(
            ip,
            self.settings.sign_in_attempts_per_ip,
            self.settings.sign_in_window_secs,
        )
    }

    /// Whether `account` (an email or token kind) is locked after too many failures.
    pub fn account_locked(&self, account: &str) -> Option<u64> {
        self.sign_in_failures.blocked(
            account,
            self.settings.sign_in_failures_per_account,
            self.settings.sign_in_window_secs,
        )
    }

    pub fn sign_in_failed(&self, account: &str) {
        let _ = self.sign_in_failures.hit(
            account,
            self.settings.sign_in_failures_per_account,
            self.settings.sign_in_window_secs,
        );
    }

    pub fn sign_up_attempt(&self, ip: &str) -> Result<(), u64> {
        self.sign_up_ip
            .hit(ip, self.settings.sign_ups_per_ip_per_hour, SECS_PER_HOUR)
    }

    /// Whether `ip` has used its failed authentications with `kind` of bearer token this window
    /// (seconds to wait). Checked before the token is looked up.
    pub fn token_blocked(&self, kind: TokenKind, ip: Option<&str>) -> Option<u64> {
        let ip = ip?;
        self.token_failures.blocked(
            &kind.key(ip),
            self.settings.token_failures_per_ip,
            self.settings.sign_in_window_secs,
        )
    }

    /// Counts one failed authentication with `kind` of bearer token from `ip`.
    pub fn token_failed(&self, kind: TokenKind, ip: Option<&str>) {
        let Some(ip) = ip else { return };
        let _ = self.token_failures.hit(
            &kind.key(ip),
            self.settings.token_failures_per_ip,
            self.settings.sign_in_window_secs,
        );
    }

    /// [`Limiter::token_blocked`] as the API's 429 error object.
    pub fn token_rate_limited(
        &self,
        kind: TokenKind,
        ip: Option<&str>,
    ) -> Option<crate::domain::DomainError> {
        self.token_blocked(kind, ip)
            .map(|retry_after| crate::domain::DomainError::RateLimited {
                code: "authentication_rate_limited",
                message: format!(
                    "too many failed {} token authentications from this address; retry later",
                    kind.as_str()
                ),
                retry_after,
            })
    }

    /// Counts one webhook test or replay of account `account_id`; `Err(seconds to wait)` past
    /// [`MAX_WEBHOOK_SENDS_PER_ACCOUNT_PER_HOUR`].
    pub fn webhook_send(&self, account_id: &str) -> Result<(), u64> {
        self.webhook_sends.hit(
            account_id,
            MAX_WEBHOOK_SENDS_PER_ACCOUNT_PER_HOUR,
            SECS_PER_HOUR,
        )
    }

    /// Seconds to wait when application `app_id` has used its rotations of this hour.
    pub fn rotation_blocked(&self, app_id: &str) -> Option<u64> {
        self.rotations.blocked(
            app_id,
            MAX_ROTATIONS_PER_APPLICATION_PER_HOUR,
            SECS_PER_HOUR,
        )
    }

    /// Counts one rotation of application `app_id`.
    pub fn rotated(&self, app_id: &str) {
        let _ = self.rotations.hit(
            app_id,
            MAX_ROTATIONS_PER_APPLICATION_PER_HOUR,
            SECS_PER_HOUR,
        );
    }

    /// A slot for one Argon2id computation, waiting at most [`PASSWORD_HASH_WAIT_SECS`].
    pub async fn hash_slot(&self) -> Option<tokio::sync::SemaphorePermit<'_>> {
        tokio::time::timeout(
            Duration::from_secs(PASSWORD_HASH_WAIT_SECS),
            self.hashes.acquire(),
        )
        .await
        .ok()
        .and_then(Result::ok)
    }

    /// The client's address: the socket peer, or with `trust_forwarded_for` the last entry of
    /// `forwarded_for` (the last `X-Forwarded-For` header's value: the one the nearest proxy
    /// appended). Reading the request is the HTTP layer's (`http/client_ip.rs`).
    pub fn client_ip(&self, peer: Option<SocketAddr>, forwarded_for: Option<&str>) -> String {
        if self.settings.trust_forwarded_for {
            // The last entry only (earlier ones are whatever the client sent).
            let forwarded = forwarded_for
                .and_then(|v| v.rsplit(',').next())
                .and_then(|s| s.trim().parse::<IpAddr>().ok());
            if let Some(ip) = forwarded {
                return ip.to_string();
            }
        }
        peer.map(|p| p.ip().to_string())
            .unwrap_or_else(|| "unknown".into())
    }
}

/// The kinds of bearer token limited, each with its own failure windows (a guesser of developer
/// tokens does not lock the admin API out).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TokenKind {
    Developer,
    Admin,
}

impl TokenKind {
    pub fn as_str(self) -> &'static str {
        match self {
            TokenKind::Developer => "account",
            TokenKind::Admin => "admin",
        }
    }

    fn key(self, ip: &str) -> String {
        format!("{}:{ip}", self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_window_refuses_past_its_limit_and_counts_nothing_then() {
        let w = Windows::default();
        for _ in 0..3 {
            assert!(w.hit("a", 3, 60).is_ok());
        }
        let retry = w.hit("a", 3, 60).unwrap_err();
        assert!((1..=60).contains(&retry));
        assert!(w.blocked("a", 3, 60).is_some());
        assert!(w.hit("b", 3, 60).is_ok(), "keys are independent");
        w.clear("a");
        assert!(w.hit("a", 3, 60).is_ok());
    }

    #[test]
    fn tracked_keys_stay_bounded() {
        let w = Windows::default();
        for i in 0..MAX_TRACKED_KEYS + 50 {
            let _ = w.hit(&format!("k{i}"), 1, 3600);
        }
        assert!(w.with(|m| m.len()) <= MAX_TRACKED_KEYS);
    }
}
