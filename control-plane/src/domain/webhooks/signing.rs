//! Standard Webhooks signatures and the retry schedule (both pure).
//!
//! Signature: `webhook-signature: v1,<base64 of HMAC-SHA256(secret bytes, "<id>.<timestamp>.<body>")>`
//! where the secret bytes are the base64 after `whsec_`, `<id>` the `webhook-id` (the event id,
//! the same on every retry) and `<timestamp>` the `webhook-timestamp` (Unix seconds of this
//! attempt), as <https://www.standardwebhooks.com/> specifies; any receiver's Standard Webhooks
//! library verifies it.

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use hmac::{Hmac, Mac};
use sha2::Sha256;

/// The prefix of a signing secret as shown to its owner.
pub const SECRET_PREFIX: &str = "whsec_";

/// A new signing secret: `whsec_` + base64 of [`crate::secrets::WEBHOOK_SECRET_BYTES`] random bytes.
pub fn new_secret() -> String {
    format!(
        "{SECRET_PREFIX}{}",
        STANDARD.encode(crate::secrets::random_webhook_secret())
    )
}

/// The key bytes of a `whsec_` secret; `None` if it is not one.
pub fn secret_bytes(secret: &str) -> Option<Vec<u8>> {
    STANDARD
        .decode(secret.strip_prefix(SECRET_PREFIX)?)
        .ok()
        .filter(|b| !b.is_empty())
}

/// The `webhook-signature` header value for one attempt.
pub fn sign(key: &[u8], id: &str, timestamp: i64, body: &[u8]) -> String {
    // HMAC takes keys of any length; `new_from_slice` cannot fail for it.
    let mut mac = match Hmac::<Sha256>::new_from_slice(key) {
        Ok(m) => m,
        Err(_) => return String::new(),
    };
    mac.update(id.as_bytes());
    mac.update(b".");
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    format!("v1,{}", STANDARD.encode(mac.finalize().into_bytes()))
}

/// Default delay before the first retry, and the floor of every retry delay.
pub const FIRST_RETRY_DELAY_MS: i64 = 5_000;
/// Default ceiling of one retry delay: the exponential growth stops here.
pub const MAX_RETRY_DELAY_MS: i64 = 12 * 3_600_000;
/// Default retry window: a delivery keeps being retried until this long after its first
/// attempt (or its replay), then is given up (`failed`). Three days, so a receiver down over a
/// weekend still gets everything.
pub const RETRY_WINDOW_MS: i64 = 3 * 24 * 3_600_000;

/// When a failed delivery is tried again: exponential backoff with full jitter above a floor.
/// After failure `n` (1-based) the delay is uniform in `[first, max(first, min(max, first·2^(n-1)))]`,
/// and the delivery is given up once its window is spent (the last attempt is at or after the
/// window's end, so the schedule spans at least the window, whatever the jitter draws). Attempts
/// per delivery are bounded by the window over the floor (`window / first + 1`); with the default
/// schedule a delivery takes about 20 attempts to spend its window.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RetrySchedule {
    pub first_delay_ms: i64,
    pub max_delay_ms: i64,
    pub window_ms: i64,
}

impl Default for RetrySchedule {
    fn default() -> Self {
        RetrySchedule {
            first_delay_ms: FIRST_RETRY_DELAY_MS,
            max_delay_ms: MAX_RETRY_DELAY_MS,
            window_ms: RETRY_WINDOW_MS,
        }
    }
}

impl RetrySchedule {
    /// The largest delay after failure `failures` (1-based).
    pub fn ceiling_ms(&self, failures: i64) -> i64 {
        let doublings = (failures - 1).clamp(0, 40) as u32;
        self.first_delay_ms
            .saturating_mul(1i64 << doublings)
            .min(self.max_delay_ms)
            .max(self.first_delay_ms)
    }

    /// The delay after failure `failures`, `random` being any uniformly random number.
    pub fn delay_ms(&self, failures: i64, random: u64) -> i64 {
        let span = (self.ceiling_ms(failures) - self.first_delay_ms) as u64;
        self.first_delay_ms + (random % (span + 1)) as i64
    }

    /// Whether a delivery whose window started at `window_started_ms` is given up after an
    /// attempt failed at `now_ms`.
    pub fn gives_up(&self, window_started_ms: i64, now_ms: i64) -> bool {
        now_ms >= window_started_ms.saturating_add(self.window_ms)
    }

    /// The most attempts a delivery can take (every delay drawn at the floor).
    pub fn max_attempts(&self) -> i64 {
        self.window_ms / self.first_delay_ms.max(1) + 1
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The example of the Standard Webhooks specification's reference libraries.
    #[test]
    fn signs_the_standard_webhooks_vector() {
        let key = secret_bytes("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").unwrap();
        assert_eq!(
            sign(
                &key,
                "msg_p5jXN8AQM9LWM0D4loKWxJek",
                1_614_265_330,
                br#"{"test": 2432232314}"#
            ),
            "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="
        );
    }

    #[test]
    fn secrets_are_whsec_and_24_random_bytes() {
        let a = new_secret();
        let b = new_secret();
        assert_ne!(a, b);
        assert!(a.starts_with(SECRET_PREFIX));
        assert_eq!(secret_bytes(&a).unwrap().len(), 24);
        assert_eq!(secret_bytes("whsec_"), None);
        assert_eq!(secret_bytes("sk_abc"), None);
    }

    #[test]
    fn delays_grow_exponentially_between_a_floor_and_a_ceiling() {
        let s = RetrySchedule::default();
        assert_eq!(s.ceiling_ms(1), FIRST_RETRY_DELAY_MS);
        assert_eq!(s.ceiling_ms(2), 2 * FIRST_RETRY_DELAY_MS);
        assert_eq!(s.ceiling_ms(5), 16 * FIRST_RETRY_DELAY_MS);
        assert_eq!(s.ceiling_ms(60), MAX_RETRY_DELAY_MS);
        for failures in 1..70 {
            for random in [0, 1, 7, u64::MAX / 3, u64::MAX] {
                let d = s.delay_ms(failures, random);
                assert!(d >= FIRST_RETRY_DELAY_MS, "{failures} {random} {d}");
                assert!(d <= s.ceiling_ms(failures), "{failures} {random} {d}");
            }
        }
        // Full jitter: the whole range is reachable.
        assert_eq!(s.delay_ms(5, 0), FIRST_RETRY_DELAY_MS);
        let top = (s.ceiling_ms(5) - FIRST_RETRY_DELAY_MS) as u64;
        assert_eq!(s.delay_ms(5, top), s.ceiling_ms(5));
    }

    /// Whatever the jitter draws, the last attempt is at or after the window's end (at least three
    /// days after the first), and the attempts stay under their bound.
    #[test]
    fn the_schedule_spans_at_least_three_days_within_the_attempt_bound() {
        let s = RetrySchedule::default();
        assert!(s.window_ms >= 3 * 24 * 3_600_000);
        // The cheapest draw (every delay at the floor) and the dearest, and a pseudo-random one.
        let mut seed = 0x9e37_79b9_7f4a_7c15u64;
        let mut xorshift = move || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        for draw in 0..3 {
            let start = 0i64;
            let mut t = start;
            let mut attempts = 1;
            while !s.gives_up(start, t) {
                let r = match draw {
                    0 => 0,
                    1 => u64::MAX,
                    _ => xorshift(),
                };
                t += s.delay_ms(attempts, r);
                attempts += 1;
            }
            assert!(t - start >= s.window_ms, "draw {draw}: {t}");
            assert!(attempts <= s.max_attempts(), "draw {draw}: {attempts}");
            if draw == 2 {
                assert!((15..=60).contains(&attempts), "{attempts}");
            }
        }
    }
}
