//! The per-account rate limiter every provider call goes through: a token bucket that serves renewals
//! first and tells routine work when to come back instead of letting it queue.
//!
//! Why renewals first: a subscription whose renewal waits behind a burst of creates or a drift sweep of
//! the same account expires, and Avaya stops delivering. Why routine passes are told to come back: a
//! pass waiting here holds one of the controller's bounded reconcile slots, so a long queue of creates
//! would also keep renewals from starting at all.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use tokio::time::Instant;

/// How urgent a provider call is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Urgency {
    /// A renewal: served before any routine call of the account.
    Renewal,
    /// Everything else (creates, updates, reads, listings, deletes).
    Routine,
}

/// How long a routine call may expect to wait for its token before its pass is sent away to come back.
pub const ROUTINE_WAIT: Duration = Duration::from_secs(2);

/// A token bucket: `rate` requests per second on average, bursts of up to `burst`. One per account,
/// shared by every client built for it; a new rate applies at once, also to calls already waiting.
#[derive(Debug)]
pub struct RateLimiter {
    /// (rate, burst).
    limits: Mutex<(f64, f64)>,
    /// (tokens, when counted).
    bucket: Mutex<(f64, Instant)>,
    /// A `Retry-After` the account was given: no call until then, from any subscription.
    paused_until: Mutex<Option<Instant>>,
    /// Calls waiting for a token, and how many of them are renewals.
    waiting: AtomicUsize,
    renewals_waiting: AtomicUsize,
    /// The end of the line of routine passes sent away: each one sent away comes back one token later
    /// than the previous, so they return at the rate the account can serve.
    sent_away_until: Mutex<Instant>,
    /// Wakes waiting calls when the rate changes or a renewal got its token.
    changed: tokio::sync::Notify,
}

fn limits(requests_per_second: f64, burst: u32) -> (f64, f64) {
    (requests_per_second.max(0.01), f64::from(burst.max(1)))
}

/// A bucket's tokens at `now`, from its count at its last time.
fn refilled((tokens, last): (f64, Instant), rate: f64, burst: f64, now: Instant) -> f64 {
    (tokens + now.saturating_duration_since(last).as_secs_f64() * rate).min(burst)
}

fn locked<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|e| e.into_inner())
}

/// Counts a waiting call while it waits.
struct Waiting<'a> {
    count: &'a AtomicUsize,
    /// Woken when it ends (routine calls stand back while renewals wait).
    notify: Option<&'a tokio::sync::Notify>,
}

impl<'a> Waiting<'a> {
    fn new(count: &'a AtomicUsize, notify: Option<&'a tokio::sync::Notify>) -> Self {
        count.fetch_add(1, Ordering::SeqCst);
        Waiting { count, notify }
    }
}

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        self.count.fetch_sub(1, Ordering::SeqCst);
        if let Some(notify) = self.notify {
            notify.notify_waiters();
        }
    }
}

impl RateLimiter {
    /// A full bucket.
    pub fn new(requests_per_second: f64, burst: u32) -> Self {
        let (rate, burst) = limits(requests_per_second, burst);
        let now = Instant::now();
        RateLimiter {
            limits: Mutex::new((rate, burst)),
            bucket: Mutex::new((burst, now)),
            paused_until: Mutex::new(None),
            waiting: AtomicUsize::new(0),
            renewals_waiting: AtomicUsize::new(0),
            sent_away_until: Mutex::new(now),
            changed: tokio::sync::Notify::new(),
        }
    }

    /// Sets a new rate and burst; calls already waiting are served at the new rate.
    pub fn set(&self, requests_per_second: f64, burst: u32) {
        let new = limits(requests_per_second, burst);
        let mut current = locked(&self.limits);
        if *current != new {
            *current = new;
            drop(current);
            self.changed.notify_waiters();
        }
    }

    /// Requests per second.
    pub fn rate(&self) -> f64 {
        locked(&self.limits).0
    }

    /// Holds every call of the account for `wait` (a 429's `Retry-After` applies to the account, not only
    /// to the call that received it).
    pub fn pause(&self, wait: Duration) {
        let until = Instant::now() + wait;
        let mut paused = locked(&self.paused_until);
        *paused = Some(paused.map_or(until, |p| p.max(until)));
        // After the pause calls resume at the steady rate, not as a burst of every waiter.
        *locked(&self.bucket) = (0.0, until);
    }

    /// The tokens in the bucket now.
    fn tokens(&self, rate: f64, burst: f64, now: Instant) -> f64 {
        refilled(*locked(&self.bucket), rate, burst, now)
    }

    /// Waits for a token (and for the end of a pause). A routine call stands back while a renewal waits.
    pub async fn acquire(&self, urgency: Urgency) {
        let _waiting = Waiting::new(&self.waiting, None);
        let _renewal = (urgency == Urgency::Renewal).then(|| Waiting::new(&self.renewals_waiting, Some(&self.changed)));
        loop {
            let paused = *locked(&self.paused_until);
            if let Some(until) = paused.filter(|u| *u > Instant::now()) {
                tokio::time::sleep_until(until).await;
                continue;
            }
            // Registered before the bucket is read, so a change made meanwhile is not missed.
            let changed = self.changed.notified();
            let wait = {
                let (rate, burst) = *locked(&self.limits);
                let mut bucket = locked(&self.bucket);
                let now = Instant::now();
                let tokens = refilled(*bucket, rate, burst, now);
                let renewal_ahead = urgency == Urgency::Routine && self.renewals_waiting.load(Ordering::SeqCst) > 0;
                if tokens >= 1.0 && !renewal_ahead {
                    *bucket = (tokens - 1.0, now);
                    return;
                }
                *bucket = (tokens, now);
                Duration::from_secs_f64(((1.0 - tokens) / rate).max(1.0 / rate / 4.0))
            };
            tokio::select! {
                () = tokio::time::sleep(wait) => {}
                () = changed => {}
            }
        }
    }

    /// For a routine pass about to call: `None` when its call can expect a token within
    /// [`ROUTINE_WAIT`]; otherwise how long to stay away. Passes sent away are spaced one token apart,
    /// so they come back at the rate the account serves instead of all at once.
    pub fn come_back_after(&self) -> Option<Duration> {
        let (rate, burst) = *locked(&self.limits);
        let now = Instant::now();
        let paused = locked(&self.paused_until)
            .map(|until| until.saturating_duration_since(now))
            .unwrap_or_default();
        let ahead = self.waiting.load(Ordering::SeqCst) as f64;
        let expected =
            paused + Duration::from_secs_f64(((ahead + 1.0 - self.tokens(rate, burst, now)) / rate).max(0.0));
        if expected <= ROUTINE_WAIT {
            return None;
        }
        let mut line = locked(&self.sent_away_until);
        let back = (*line).max(now + expected);
        *line = back + Duration::from_secs_f64(1.0 / rate);
        Some(back.saturating_duration_since(now))
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;

    #[tokio::test(start_paused = true)]
    async fn a_new_rate_applies_to_calls_already_waiting() {
        let limiter = Arc::new(RateLimiter::new(0.01, 1));
        limiter.acquire(Urgency::Routine).await;
        // The next token would take 100 s at the old rate.
        let waiting = tokio::spawn({
            let limiter = limiter.clone();
            async move { limiter.acquire(Urgency::Routine).await }
        });
        tokio::time::sleep(Duration::from_millis(50)).await;
        let raised = Instant::now();
        limiter.set(100.0, 1);
        tokio::time::timeout(Duration::from_secs(2), waiting)
            .await
            .expect("served at the new rate")
            .unwrap();
        assert!(raised.elapsed() < Duration::from_secs(1));
    }

    #[tokio::test(start_paused = true)]
    async fn a_pause_holds_every_call_of_the_account() {
        let limiter = RateLimiter::new(100.0, 100);
        limiter.pause(Duration::from_millis(300));
        let start = Instant::now();
        futures::future::join_all((0..5).map(|_| limiter.acquire(Urgency::Routine))).await;
        assert!(start.elapsed() >= Duration::from_millis(300), "{:?}", start.elapsed());
        let again = Instant::now();
        limiter.acquire(Urgency::Routine).await;
        assert!(again.elapsed() < Duration::from_millis(100), "the pause is over");
    }

    #[tokio::test(start_paused = true)]
    async fn rate_limiter_spaces_requests_after_the_burst() {
        let limiter = RateLimiter::new(2.0, 2);
        let start = Instant::now();
        for _ in 0..4 {
            limiter.acquire(Urgency::Routine).await;
        }
        // Two from the burst, then one every 500 ms.
        let elapsed = start.elapsed();
        assert!(
            elapsed >= Duration::from_millis(1000) && elapsed < Duration::from_millis(1100),
            "{elapsed:?}"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_renewal_is_served_before_routine_calls_that_waited_longer() {
        let limiter = Arc::new(RateLimiter::new(1.0, 1));
        limiter.acquire(Urgency::Routine).await;
        let served = Arc::new(Mutex::new(Vec::new()));
        let call = |name: &'static str, urgency| {
            let (limiter, served) = (limiter.clone(), served.clone());
            tokio::spawn(async move {
                limiter.acquire(urgency).await;
                locked(&served).push(name);
            })
        };
        let routine: Vec<_> = (0..5).map(|_| call("routine", Urgency::Routine)).collect();
        tokio::time::sleep(Duration::from_millis(100)).await;
        let renewal = call("renewal", Urgency::Renewal);
        renewal.await.unwrap();
        for r in routine {
            r.await.unwrap();
        }
        let served = locked(&served).clone();
        assert_eq!(served.first(), Some(&"renewal"), "{served:?}");
        assert_eq!(served.len(), 6);
    }

    #[tokio::test(start_paused = true)]
    async fn routine_passes_are_sent_away_one_token_apart_when_the_wait_is_long() {
        let limiter = Arc::new(RateLimiter::new(5.0, 1));
        assert_eq!(limiter.come_back_after(), None, "a full bucket serves at once");
        limiter.acquire(Urgency::Routine).await;
        // Twenty calls queue: the twenty-first would wait about 4 s.
        let queued: Vec<_> = (0..20)
            .map(|_| {
                let limiter = limiter.clone();
                tokio::spawn(async move { limiter.acquire(Urgency::Routine).await })
            })
            .collect();
        tokio::task::yield_now().await;
        let first = limiter.come_back_after().expect("sent away");
        let second = limiter.come_back_after().expect("sent away");
        assert!(first >= Duration::from_secs(4), "{first:?}");
        let spacing = second - first;
        assert!(
            spacing.abs_diff(Duration::from_millis(200)) < Duration::from_millis(1),
            "{spacing:?}"
        );
        for q in queued {
            q.await.unwrap();
        }
        assert_eq!(limiter.come_back_after(), None, "the queue is served");
    }
}
