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
//! A woken waiter reads the version again itself before answering, so a watcher that lags never
//! makes it answer an unchanged version as new.

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

/// The process's view of the snapshot version, for held snapshot requests.
pub struct VersionWatch {
    version: watch::Sender<String>,
    /// `true` once the process is shutting down: waiters answer at once, so a held request never
    /// delays a graceful shutdown.
    closing: watch::Sender<bool>,
    started: Once,
}

impl Default for VersionWatch {
    fn default() -> VersionWatch {
        VersionWatch {
            version: watch::Sender::new(String::new()),
            closing: watch::Sender::new(false),
            started: Once::new(),
        }
    }
}

impl VersionWatch {
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
            if !seen.is_empty() && seen != held {
                // The watcher may lag (or lead) the database by one check: the answer is what
                // the database says now.
                let now = snapshot::version(pool).await?;
                if now != held {
                    return Ok(now);
                }
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
