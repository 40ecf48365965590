//! Polling with a deadline: tests wait for behaviour, never for a fixed time.

use std::time::{Duration, Instant};

/// How long a test waits for the controller before failing.
pub const WAIT: Duration = Duration::from_secs(20);

/// Polls `done` until it holds, failing the test with `what` after [`WAIT`].
pub async fn until(what: &str, done: impl Fn() -> bool) {
    let deadline = Instant::now() + WAIT;
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting: {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
