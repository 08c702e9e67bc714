//! Pushing a change to gateways: a snapshot request that names the version the gateway holds
//! (`If-None-Match`) and asks to wait (`Prefer: wait=<seconds>`, RFC 7240) is held until the
//! version moves or the wait runs out, so a change reaches every gateway as soon as it commits
//! instead of at its next poll.
//!
//! One watcher task per process reads the version every [`VERSION_CHECK_MS`] while at least one
//! request waits (nothing otherwise) and wakes the waiters when it moves. Reading the database,
//! not hooking this process's writes, is what makes it right with several replicas on one
//! PostgreSQL and for the part of the version that moves with time alone (keys whose grace ran
//! out): whichever replica committed the change, every replica's waiters see it within one check.
//! A woken waiter answers only a version newer than the one it holds (versions are ordered), so a
//! watcher reading that lags never makes it answer an older or unchanged version as new; and no
//! waiter reads the database itself: one reading serves every held request.

use std::sync::Once;
use std::time::Duration;

use tokio::sync::watch;
use tokio::time::Instant;

use super::snapshot;
use crate::domain::DomainResult;
use crate::store::Pool;

/// How often the watcher reads the version while requests wait: the most a held request answers
/// after the change committed, plus one query. 40 single-row reads a second per replica, only while
/// gateways hold requests.
pub const VERSION_CHECK_MS: u64 = 25;
/// Longest wait a gateway may ask for. Below the control plane's request timeout (30 s) with room
/// for the answer; a longer `Prefer: wait` is cut to this.
pub const MAX_SNAPSHOT_WAIT_SECS: u64 = 20;

/// Most snapshot requests one process holds at once. Each is a connection and a task: a few
/// dozen gateways of a few workers each hold a few hundred; past this, requests are answered at
/// once (no `Preference-Applied`), so a flood of held requests (a leaked gateway token) costs
/// polls, not the process's connections.
pub const MAX_HELD_REQUESTS: usize = 2_000;

/// The process's view of the snapshot version, for held snapshot requests.
pub struct VersionWatch {
    held: tokio::sync::Semaphore,
    version: watch::Sender<String>,
    /// `true` once the process is shutting down: waiters answer at once, so a held request never
    /// delays a graceful shutdown.
    closing: watch::Sender<bool>,
    started: Once,
}

impl Default for VersionWatch {
    fn default() -> VersionWatch {
        VersionWatch {
            held: tokio::sync::Semaphore::new(MAX_HELD_REQUESTS),
            version: watch::Sender::new(String::new()),
            closing: watch::Sender::new(false),
            started: Once::new(),
        }
    }
}

impl VersionWatch {
    /// A place among the held requests, or `None` when [`MAX_HELD_REQUESTS`] are held.
    pub fn try_hold(&self) -> Option<tokio::sync::SemaphorePermit<'_>> {
        self.held.try_acquire().ok()
    }

    /// Waits until the snapshot version differs from `held`, or `deadline`, or shutdown, and
    /// returns the version then current (equal to `held` when nothing changed).
    pub async fn wait_past(
        &self,
        pool: &Pool,
        held: &str,
        deadline: Instant,
    ) -> DomainResult<String> {
        let mut version = self.version.subscribe();
        let mut closing = self.closing.subscribe();
        self.started.call_once(|| {
            tokio::spawn(watch_versions(pool.clone(), self.version.clone()));
        });
        loop {
            if *closing.borrow_and_update() {
                return Ok(held.to_string());
            }
            let seen = version.borrow_and_update().clone();
            // Only a version newer than the held one answers: the watcher's last reading may be
            // older than the version this request read itself. No waiter reads the database:
            // a change wakes hundreds of held polls, one reading serves them all.
            if is_newer(&seen, held) {
                return Ok(seen);
            }
            tokio::select! {
                changed = version.changed() => {
                    if changed.is_err() {
                        return Ok(held.to_string());
                    }
                }
                _ = closing.changed() => {}
                () = tokio::time::sleep_until(deadline) => return Ok(held.to_string()),
            }
        }
    }

    /// Releases every held request (graceful shutdown).
    pub fn close(&self) {
        self.closing.send_replace(true);
    }
}

/// The watcher: while anyone waits, reads the version every [`VERSION_CHECK_MS`] and publishes
/// it when it moved. A failed read is retried at the next check (waiters keep waiting; their own
/// deadline bounds them).
async fn watch_versions(pool: Pool, tx: watch::Sender<String>) {
    let mut tick = tokio::time::interval(Duration::from_millis(VERSION_CHECK_MS));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        // The sender holds no receiver of its own: a count of zero means nobody waits.
        if tx.receiver_count() == 0 {
            continue;
        }
        match snapshot::version(&pool).await {
            Ok(v) => {
                tx.send_if_modified(|current| {
                    if *current == v {
                        false
                    } else {
                        *current = v;
                        true
                    }
                });
            }
            Err(e) => tracing::debug!(error = %e, "snapshot version check failed"),
        }
    }
}

/// Whether snapshot version `a` comes after `b`. Versions are `"<revision>.<expired keys>"`: the
/// revision only grows, and the count of expired keys only grows between revisions (the purge
/// that removes expired keys bumps the revision), so the pair ordered as numbers is the order of
/// time. An unreadable version is never newer.
fn is_newer(a: &str, b: &str) -> bool {
    let parse = |v: &str| -> Option<(u64, u64)> {
        let (r, e) = v.split_once('.')?;
        Some((r.parse().ok()?, e.parse().ok()?))
    };
    match (parse(a), parse(b)) {
        (Some(a), Some(b)) => a > b,
        _ => false,
    }
}

/// The wait a request asks for in `Prefer` (`wait=<seconds>`, RFC 7240 section 4.3), capped at
/// [`MAX_SNAPSHOT_WAIT_SECS`]; `None` when it asks for none (or for 0, or says it unreadably).
pub fn requested_wait<'a>(prefer: impl IntoIterator<Item = &'a str>) -> Option<Duration> {
    prefer
        .into_iter()
        .flat_map(|h| h.split(','))
        .filter_map(|p| {
            let (name, value) = p.trim().split_once('=')?;
            name.trim()
                .eq_ignore_ascii_case("wait")
                .then(|| value.trim().trim_matches('"').parse::<u64>().ok())
                .flatten()
        })
        .next()
        .filter(|s| *s > 0)
        .map(|s| Duration::from_secs(s.min(MAX_SNAPSHOT_WAIT_SECS)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_are_ordered_by_revision_then_expired_keys() {
        assert!(is_newer("8.0", "7.3"));
        assert!(is_newer("7.4", "7.3"));
        assert!(is_newer("10.0", "9.9"), "as numbers, not as text");
        assert!(!is_newer("7.3", "7.3"));
        assert!(!is_newer("7.2", "7.3"));
        assert!(!is_newer("", "7.3"));
        assert!(!is_newer("x.y", "7.3"));
    }

    #[test]
    fn the_wait_is_read_from_prefer_and_capped() {
        assert_eq!(requested_wait(["wait=5"]), Some(Duration::from_secs(5)));
        assert_eq!(
            requested_wait(["respond-async, wait=3"]),
            Some(Duration::from_secs(3))
        );
        assert_eq!(
            requested_wait(["return=minimal", "Wait = \"7\""]),
            Some(Duration::from_secs(7))
        );
        assert_eq!(
            requested_wait(["wait=86400"]),
            Some(Duration::from_secs(MAX_SNAPSHOT_WAIT_SECS))
        );
        assert_eq!(requested_wait(["wait=0"]), None);
        assert_eq!(requested_wait(["wait=-1"]), None);
        assert_eq!(requested_wait(["wait=1.5"]), None);
        assert_eq!(requested_wait(["handling=lenient"]), None);
        assert_eq!(requested_wait([]), None);
    }
}
