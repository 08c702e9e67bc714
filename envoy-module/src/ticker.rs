//! The `tollgate-tick` thread: asks Envoy's main thread for a tick every `tick_ms` (through the
//! configuration's scheduler, [`Commit`]) until its configuration goes.
//!
//! Kept apart from the ABI so that its one subtle rule is unit-tested: Envoy may destroy the
//! configuration on *this* thread (a scheduler's commit briefly holds a strong reference to the
//! configuration; if that was the last one, `on_http_filter_config_destroy` runs inside the
//! commit), so [`Ticker::stop`] must never join the thread it runs on (`pthread_join` on itself
//! fails with `EDEADLK`, which Rust's `join` reports by panicking).

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::mpsc::{self, RecvTimeoutError};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

/// Posts one tick to the main thread (Envoy's configuration scheduler).
pub trait Commit: Send + Sync + 'static {
    fn commit(&self);
}

/// A running tick thread. Dropping it without [`Ticker::stop`] also ends the thread (the channel
/// disconnects), without waiting for it.
pub struct Ticker {
    stop: mpsc::Sender<()>,
    thread: JoinHandle<()>,
}

/// Starts the thread; it reads `period_ms` before each wait (the link may change its tick).
pub fn start<C: Commit>(commit: Arc<C>, period_ms: Arc<AtomicU32>) -> std::io::Result<Ticker> {
    let (stop, stopped) = mpsc::channel::<()>();
    let thread = std::thread::Builder::new()
        .name("tollgate-tick".into())
        .spawn(move || loop {
            let ms = period_ms.load(Ordering::Relaxed).max(1);
            match stopped.recv_timeout(Duration::from_millis(u64::from(ms))) {
                Err(RecvTimeoutError::Timeout) => commit.commit(),
                // Stop asked, or the configuration (and the sender with it) is gone. `commit`
                // (the scheduler) is dropped here, after its last use.
                _ => break,
            }
        })?;
    Ok(Ticker { stop, thread })
}

impl Ticker {
    /// Ends the thread. From another thread: waits until it has returned, so that nothing
    /// commits any more once this returns. From the tick thread itself (the configuration
    /// destroyed inside a commit): returns at once, and the thread leaves its loop as soon as the
    /// commit returns, the channel being closed.
    pub fn stop(self) {
        let _ = self.stop.send(());
        if self.thread.thread().id() != std::thread::current().id() {
            let _ = self.thread.join();
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code

    use super::*;
    use std::sync::atomic::AtomicBool;
    use std::sync::Mutex;
    use std::time::Instant;

    /// A commit that, like Envoy when the commit held the configuration's last reference,
    /// destroys the configuration (stops its ticker) on the tick thread itself.
    #[derive(Default)]
    struct DestroyOnCommit {
        ticker: Mutex<Option<Ticker>>,
        stopped_cleanly: AtomicBool,
        commits: AtomicU32,
    }

    impl Commit for DestroyOnCommit {
        fn commit(&self) {
            self.commits.fetch_add(1, Ordering::SeqCst);
            let t = self.ticker.lock().unwrap().take();
            if let Some(t) = t {
                t.stop();
                self.stopped_cleanly.store(true, Ordering::SeqCst);
            }
        }
    }

    #[test]
    fn stopping_from_the_tick_thread_does_not_join_itself() {
        let c = Arc::new(DestroyOnCommit::default());
        let t = start(Arc::clone(&c), Arc::new(AtomicU32::new(1))).unwrap();
        *c.ticker.lock().unwrap() = Some(t);
        // The thread holds the other reference until it leaves its loop.
        let deadline = Instant::now() + Duration::from_secs(5);
        while Arc::strong_count(&c) > 1 {
            assert!(Instant::now() < deadline, "the tick thread never ended");
            std::thread::sleep(Duration::from_millis(5));
        }
        assert!(
            c.stopped_cleanly.load(Ordering::SeqCst),
            "stop() on the tick thread panicked (joined itself)"
        );
        assert_eq!(
            c.commits.load(Ordering::SeqCst),
            1,
            "no commit after the stop"
        );
    }

    struct Count(AtomicU32);
    impl Commit for Count {
        fn commit(&self) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }

    #[test]
    fn stopping_from_another_thread_waits_for_the_thread() {
        let c = Arc::new(Count(AtomicU32::new(0)));
        let t = start(Arc::clone(&c), Arc::new(AtomicU32::new(1))).unwrap();
        std::thread::sleep(Duration::from_millis(20));
        t.stop();
        // Joined: the thread dropped its reference, and no commit follows.
        assert_eq!(Arc::strong_count(&c), 1);
        let n = c.0.load(Ordering::SeqCst);
        std::thread::sleep(Duration::from_millis(20));
        assert_eq!(c.0.load(Ordering::SeqCst), n);
    }
}
