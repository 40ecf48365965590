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

/// Polls the async `check` every `every` until it yields a value, failing the test with `what` (and the
/// last value seen, through `check`'s own message) after `within`.
pub async fn eventually<T, F, Fut>(what: &str, within: Duration, every: Duration, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = Instant::now() + within;
    loop {
        if let Some(value) = check().await {
            return value;
        }
        assert!(Instant::now() < deadline, "timed out waiting: {what}");
        tokio::time::sleep(every).await;
    }
}
