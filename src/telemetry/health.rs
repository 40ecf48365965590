//! What `/healthz` and `/readyz` report, kept true over time: ready once the caches have synced, not
//! ready again while the subscription watch is failing or the process is stopping; unhealthy when the
//! controller has work but completes nothing.

use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

/// The process's readiness and liveness.
#[derive(Debug, Default)]
pub struct Health {
    synced: AtomicBool,
    stopping: AtomicBool,
    /// Since when, and why, the subscription watch has been failing (None: it is working).
    watch_failing: Mutex<Option<(tokio::time::Instant, String)>>,
    /// When a reconcile last completed.
    last_progress: Mutex<Option<tokio::time::Instant>>,
    /// How long the controller may go without completing a reconcile while it has work (None: no
    /// expectation, as on a follower or with nothing to reconcile).
    expect_within: Mutex<Option<Duration>>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Health {
    /// The caches have synced (or, on a follower, the process is ready to take over).
    pub fn set_ready(&self) {
        self.synced.store(true, Ordering::SeqCst);
    }

    /// The process is stopping: not ready from now on.
    pub fn set_stopping(&self) {
        self.stopping.store(true, Ordering::SeqCst);
    }

    /// The subscription watch failed (`Some(why)`) or delivered again (`None`).
    pub fn watch_result(&self, failure: Option<&str>) {
        let mut failing = lock(&self.watch_failing);
        match failure {
            Some(why) => {
                let since = failing
                    .as_ref()
                    .map_or_else(tokio::time::Instant::now, |(since, _)| *since);
                *failing = Some((since, why.to_string()));
            }
            None => *failing = None,
        }
    }

    /// Why the process is not ready, if it is not.
    pub fn not_ready(&self) -> Option<String> {
        if self.stopping.load(Ordering::SeqCst) {
            return Some("stopping\n".into());
        }
        if !self.synced.load(Ordering::SeqCst) {
            return Some("caches not synced yet\n".into());
        }
        lock(&self.watch_failing).as_ref().map(|(since, why)| {
            format!(
                "the subscription watch has been failing for {}s: {why}\n",
                since.elapsed().as_secs()
            )
        })
    }

    /// Whether it is ready.
    pub fn is_ready(&self) -> bool {
        self.not_ready().is_none()
    }

    /// A reconcile completed.
    pub fn progress(&self) {
        *lock(&self.last_progress) = Some(tokio::time::Instant::now());
    }

    /// From now on a reconcile must complete at least every `window` (None: no expectation).
    pub fn expect_progress_within(&self, window: Option<Duration>) {
        let mut expected = lock(&self.expect_within);
        if expected.is_none() && window.is_some() {
            // The count starts when the expectation does.
            self.progress();
        }
        *expected = window;
    }

    /// Why the controller is not making progress, if it is not.
    pub fn stalled(&self) -> Option<String> {
        let window = (*lock(&self.expect_within))?;
        let last = (*lock(&self.last_progress))?;
        let idle = last.elapsed();
        (idle > window).then(|| {
            format!(
                "no reconcile completed for {}s (expected at least every {}s)\n",
                idle.as_secs(),
                window.as_secs()
            )
        })
    }
}

/// The process-wide health.
pub fn health() -> &'static Health {
    static HEALTH: std::sync::OnceLock<Health> = std::sync::OnceLock::new();
    HEALTH.get_or_init(Health::default)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn a_controller_with_work_that_completes_nothing_is_unhealthy() {
        let health = Health::default();
        assert_eq!(health.stalled(), None, "no expectation, no verdict");
        health.expect_progress_within(Some(Duration::from_secs(60)));
        tokio::time::advance(Duration::from_secs(59)).await;
        assert_eq!(health.stalled(), None);
        tokio::time::advance(Duration::from_secs(2)).await;
        assert!(health.stalled().unwrap().starts_with("no reconcile completed for 61s"));
        health.progress();
        assert_eq!(health.stalled(), None);
        health.expect_progress_within(None);
        tokio::time::advance(Duration::from_secs(600)).await;
        assert_eq!(health.stalled(), None, "a follower, or nothing to do");
    }

    #[tokio::test(start_paused = true)]
    async fn readiness_follows_the_watch_and_ends_when_stopping() {
        let health = Health::default();
        assert_eq!(health.not_ready().as_deref(), Some("caches not synced yet\n"));
        health.set_ready();
        assert!(health.is_ready());
        health.watch_result(Some("connection refused"));
        tokio::time::advance(Duration::from_secs(7)).await;
        health.watch_result(Some("connection refused"));
        assert_eq!(
            health.not_ready().as_deref(),
            Some("the subscription watch has been failing for 7s: connection refused\n"),
            "counted from the first failure"
        );
        health.watch_result(None);
        assert!(health.is_ready(), "ready again once the watch delivers");
        health.set_stopping();
        assert_eq!(health.not_ready().as_deref(), Some("stopping\n"));
    }
}
