//! No panic may reach Envoy. A panic that unwinds to an `extern "C"` hook aborts the whole process
//! (Rust's rule since 1.81): every worker's traffic, every listener. Clippy denies
//! `unwrap`/`expect`/`panic!` in this code but not an out-of-range index or an arithmetic
//! overflow in a debug build, so each hook runs its body through [`hook`], which turns a panic
//! into the hook's fallback (the request hook's follows the configured `fail_mode`), and the
//! panic's message goes to Envoy's log through the hook [`install`] sets.

use std::panic::{self, AssertUnwindSafe};
use std::sync::Once;

/// Runs `body` on `state`; if it panics, runs `fallback` on it instead (itself guarded: a
/// fallback that panics too yields `last_resort`).
///
/// `AssertUnwindSafe`: what a panicking body leaves behind is either dropped by the unwind (its
/// locals), behind a mutex whose poisoning every user recovers from (the store's stripes, the
/// worker slots: plain maps, consistent between statements), or in a `RefCell` whose borrow the
/// unwind released.
pub fn hook<S, R>(
    state: &mut S,
    body: impl FnOnce(&mut S) -> R,
    fallback: impl FnOnce(&mut S) -> R,
    last_resort: R,
) -> R {
    match panic::catch_unwind(AssertUnwindSafe(|| body(state))) {
        Ok(r) => r,
        Err(_) => panic::catch_unwind(AssertUnwindSafe(|| fallback(state))).unwrap_or(last_resort),
    }
}

/// Sends every panic's message (and where it happened) to `log`, once per process: the default
/// hook would write to Envoy's stderr, which operators rarely read.
pub fn install(log: fn(&str)) {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        panic::set_hook(Box::new(move |info| {
            log(&format!(
                "tollgate: panic (the hook's fallback applies): {info}"
            ));
        }));
    });
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code

    use super::*;

    #[test]
    fn a_panicking_body_yields_the_fallback() {
        // The state a panicking body left half-written is the fallback's to repair.
        let mut answered: Vec<u32> = Vec::new();
        let forward = hook(
            &mut answered,
            |a| {
                a.push(1);
                a[3] == 0
            },
            |a| {
                a.clear();
                a.push(503);
                false
            },
            true,
        );
        assert!(!forward);
        assert_eq!(answered, [503]);
        assert_eq!(
            hook(&mut (), |_| 7, |_| 0, 1),
            7,
            "no panic: the body's result"
        );
    }

    #[test]
    fn a_panicking_fallback_yields_the_last_resort() {
        let r: u32 = hook(&mut (), |_| panic!("body"), |_| panic!("fallback"), 42);
        assert_eq!(r, 42);
    }
}
