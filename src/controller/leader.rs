//! Leader election on a `coordination.k8s.io/v1` Lease, in the client-go style: read the Lease, and take
//! or renew it with a replace that carries its resourceVersion, so two contenders cannot both win (the
//! loser gets 409). Only the leader acts.
//!
//! Expiry is judged on this replica's own monotonic clock, from when it last saw the Lease record change
//! (never by comparing the holder's `renewTime` with the local wall clock, which skew would fool). The
//! leader stops acting before anyone else can take the Lease: it holds a [`LeaderGuard`] valid for
//! `renew_deadline` after each renewal (shorter than `lease_duration`), every write checks it, and when it
//! lapses the controllers are aborted at once.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use jiff::Timestamp;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;
use kube::api::{Api, PostParams};
use serde_json::json;
use tokio::time::Instant;

use crate::clock::SharedClock;

/// Name, place and timing of the election.
#[derive(Clone, Debug)]
pub struct Election {
    /// Lease namespace.
    pub namespace: String,
    /// Lease name.
    pub name: String,
    /// This replica's identity (the pod name).
    pub identity: String,
    /// How long a lease is valid without renewal.
    pub lease_duration: Duration,
    /// How often the leader renews and followers retry.
    pub retry_period: Duration,
    /// A leader that has not renewed for this long stops acting (shorter than `lease_duration`).
    pub renew_deadline: Duration,
}

impl Election {
    /// client-go's defaults: 15 s lease, renew every 2 s, stop acting 10 s after the last renewal.
    pub fn new(namespace: &str, name: &str, identity: &str) -> Self {
        Election {
            namespace: namespace.to_string(),
            name: name.to_string(),
            identity: identity.to_string(),
            lease_duration: Duration::from_secs(15),
            retry_period: Duration::from_secs(2),
            renew_deadline: Duration::from_secs(10),
        }
    }

    /// Checks that the timings keep two leaders apart: retry < renew deadline < lease duration.
    pub fn validate(&self) -> Result<(), String> {
        if self.retry_period.is_zero() || self.retry_period >= self.renew_deadline {
            return Err("the leader election retry period must be shorter than the renew deadline".into());
        }
        if self.renew_deadline >= self.lease_duration {
            return Err(
                "the leader election renew deadline must be shorter than the lease duration, so a leader stops acting before another can take the lease".into(),
            );
        }
        if i32::try_from(self.lease_duration.as_secs()).is_err() {
            return Err("the leader election lease duration is too long".into());
        }
        Ok(())
    }
}

/// Whether this replica may act as the leader now.
#[derive(Debug, Default)]
pub struct LeaderGuard {
    valid_until: Mutex<Option<Instant>>,
}

impl LeaderGuard {
    /// A guard that is not valid yet.
    pub fn new() -> Arc<Self> {
        Arc::new(LeaderGuard::default())
    }

    /// Valid until `until`.
    fn extend(&self, until: Instant) {
        *self.valid_until.lock().unwrap_or_else(|e| e.into_inner()) = Some(until);
    }

    /// No longer valid.
    fn revoke(&self) {
        *self.valid_until.lock().unwrap_or_else(|e| e.into_inner()) = None;
    }

    /// Whether the leader may act now (its last renewal is within the renew deadline).
    pub fn is_valid(&self) -> bool {
        self.valid_until
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .is_some_and(|until| Instant::now() < until)
    }
}

/// What one attempt found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Attempt {
    /// We hold the lease (newly acquired or renewed).
    Leading,
    /// Someone else holds a valid lease.
    Following,
}

/// The Lease record as last seen, and when this replica saw it change.
#[derive(Clone, Debug, Default)]
pub struct Observed {
    record: Option<(String, Option<Timestamp>, Option<i32>)>,
    since: Option<Instant>,
}

impl Observed {
    /// Records what the Lease says now; returns whether the holder's lease has run out, judged by how long
    /// this replica has seen the same record (a holder that renews changes its `renewTime`).
    pub fn expired(
        &mut self,
        holder: &str,
        renewed: Option<Timestamp>,
        duration_seconds: Option<i32>,
        default: Duration,
        now: Instant,
    ) -> bool {
        let record = (holder.to_string(), renewed, duration_seconds);
        if self.record.as_ref() != Some(&record) {
            self.record = Some(record);
            self.since = Some(now);
        }
        let valid = duration_seconds
            .and_then(|s| u64::try_from(s).ok())
            .map_or(default, Duration::from_secs);
        holder.is_empty() || renewed.is_none() || self.since.is_none_or(|since| now.duration_since(since) >= valid)
    }
}

/// One acquire-or-renew attempt.
pub async fn try_acquire_or_renew(
    api: &Api<Lease>,
    election: &Election,
    clock: &SharedClock,
    observed: &mut Observed,
) -> Result<Attempt, kube::Error> {
    let now = clock.now();
    let micro = |t: Timestamp| MicroTime(t);
    let duration = i32::try_from(election.lease_duration.as_secs()).unwrap_or(i32::MAX);
    let Some(mut lease) = api.get_opt(&election.name).await? else {
        let lease: Lease = serde_json::from_value(json!({
            "metadata": {"name": election.name, "namespace": election.namespace},
            "spec": {"holderIdentity": election.identity, "leaseDurationSeconds": duration, "leaseTransitions": 0,
                     "acquireTime": micro(now), "renewTime": micro(now)}
        }))
        .expect("lease JSON");
        return match api.create(&PostParams::default(), &lease).await {
            Ok(_) => Ok(Attempt::Leading),
            Err(kube::Error::Api(e)) if e.code == 409 => Ok(Attempt::Following),
            Err(e) => Err(e),
        };
    };
    let spec = lease.spec.get_or_insert_with(Default::default);
    let holder = spec.holder_identity.clone().unwrap_or_default();
    let expired = observed.expired(
        &holder,
        spec.renew_time.as_ref().map(|MicroTime(t)| *t),
        spec.lease_duration_seconds,
        election.lease_duration,
        Instant::now(),
    );
    if holder != election.identity && !expired {
        return Ok(Attempt::Following);
    }
    if holder != election.identity {
        spec.acquire_time = Some(micro(now));
        spec.lease_transitions = Some(spec.lease_transitions.unwrap_or(0).saturating_add(1));
        spec.holder_identity = Some(election.identity.clone());
    }
    spec.renew_time = Some(micro(now));
    spec.lease_duration_seconds = Some(duration);
    // The replace carries the resourceVersion we read: a concurrent winner makes it fail with 409.
    match api.replace(&election.name, &PostParams::default(), &lease).await {
        Ok(_) => Ok(Attempt::Leading),
        Err(kube::Error::Api(e)) if e.code == 409 => Ok(Attempt::Following),
        Err(e) => Err(e),
    }
}

/// Gives the lease up (on shutdown), so a follower takes over at once rather than after it expires.
pub async fn release(api: &Api<Lease>, election: &Election) -> Result<(), kube::Error> {
    if let Some(mut lease) = api.get_opt(&election.name).await?
        && let Some(spec) = lease.spec.as_mut()
        && spec.holder_identity.as_deref() == Some(election.identity.as_str())
    {
        spec.holder_identity = None;
        spec.renew_time = None;
        api.replace(&election.name, &PostParams::default(), &lease).await?;
    }
    Ok(())
}

/// Runs `lead` while this replica holds the lease, with `guard` valid while it may act. Returns when
/// `shutdown` resolves (releasing the lease) or when leadership is lost (the caller should exit so a fresh
/// process campaigns again).
pub async fn run_elected<F, Fut>(
    client: kube::Client,
    election: Election,
    clock: SharedClock,
    guard: Arc<LeaderGuard>,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
    lead: F,
) -> Result<(), LeadershipLost>
where
    F: FnOnce(tokio::sync::oneshot::Receiver<()>) -> Fut,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    let api: Api<Lease> = Api::namespaced(client, &election.namespace);
    let mut observed = Observed::default();
    tokio::pin!(shutdown);
    crate::telemetry::leader(&election.name, false);
    // Campaign.
    loop {
        let attempt_started = Instant::now();
        match try_acquire_or_renew(&api, &election, &clock, &mut observed).await {
            Ok(Attempt::Leading) => {
                guard.extend(attempt_started + election.renew_deadline);
                break;
            }
            Ok(Attempt::Following) => {}
            Err(e) => tracing::warn!(error = %e, "leader election: cannot read or write the Lease"),
        }
        tokio::select! {
            _ = &mut shutdown => return Ok(()),
            _ = tokio::time::sleep(election.retry_period) => {}
        }
    }
    tracing::info!(identity = %election.identity, lease = %election.name, "became the leader");
    crate::telemetry::leader(&election.name, true);
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel();
    let mut leading = tokio::spawn(lead(stop_rx));
    // The last renewal is counted from when its request started: the Lease may have been written then.
    let mut renewed_at = Instant::now();
    let outcome = loop {
        let deadline = renewed_at + election.renew_deadline;
        // In this order when several are ready at once (a panic's backtrace can take longer to print than
        // the renew deadline): a controller that ended is reported as such, whatever else happened.
        tokio::select! {
            biased;
            // The controllers must never end while leading: holding the Lease with nothing acting would
            // stop every tenant. Give the Lease up and let the process exit.
            ended = &mut leading => {
                let why = match ended {
                    Ok(()) => "it returned".to_string(),
                    Err(e) if e.is_panic() => "it panicked".to_string(),
                    Err(e) => e.to_string(),
                };
                guard.revoke();
                crate::telemetry::leader(&election.name, false);
                let _ = release(&api, &election).await;
                tracing::error!(reason = %why, "the controller stopped while leading; released the lease");
                return Err(LeadershipLost::ControllerEnded(why));
            }
            _ = &mut shutdown => break Ok(()),
            _ = tokio::time::sleep_until(deadline) => break Err(LeadershipLost::Lease),
            _ = tokio::time::sleep(election.retry_period) => {}
        }
        let attempt_started = Instant::now();
        match tokio::time::timeout_at(deadline, try_acquire_or_renew(&api, &election, &clock, &mut observed)).await {
            Ok(Ok(Attempt::Leading)) => {
                renewed_at = attempt_started;
                guard.extend(attempt_started + election.renew_deadline);
            }
            Ok(Ok(Attempt::Following)) => break Err(LeadershipLost::Lease),
            Ok(Err(e)) => tracing::warn!(error = %e, "leader election: renewal failed"),
            Err(_) => break Err(LeadershipLost::Lease),
        }
    };
    crate::telemetry::leader(&election.name, false);
    match outcome {
        Ok(()) => {
            let _ = stop_tx.send(());
            if tokio::time::timeout(election.renew_deadline, &mut leading)
                .await
                .is_err()
            {
                leading.abort();
            }
            guard.revoke();
            let _ = release(&api, &election).await;
        }
        Err(_) => {
            // Stop at once: another replica may take the lease when it runs out.
            guard.revoke();
            leading.abort();
            let _ = stop_tx.send(());
            tracing::error!("lost the leadership; stopping");
        }
    }
    outcome
}

/// Why a leader stopped leading before it was asked to.
#[derive(Debug, thiserror::Error)]
pub enum LeadershipLost {
    /// The Lease could not be renewed in time, or another replica holds it.
    #[error("lost the leader lease")]
    Lease,
    /// The controllers ended while leading (the Lease was released).
    #[error("the controller stopped while leading ({0})")]
    ControllerEnded(String),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn expiry_is_judged_by_how_long_this_replica_saw_the_same_record() {
        let mut observed = Observed::default();
        let lease = Duration::from_secs(15);
        let t0 = Instant::now();
        // The holder's renewTime is far in the past by our clock (skew): not expired on first sight.
        let stale: Timestamp = "2000-01-01T00:00:00Z".parse().unwrap();
        assert!(!observed.expired("a", Some(stale), Some(15), lease, t0));
        assert!(!observed.expired("a", Some(stale), Some(15), lease, t0 + Duration::from_secs(14)));
        assert!(observed.expired("a", Some(stale), Some(15), lease, t0 + Duration::from_secs(15)));
        // A renewal (a new renewTime) restarts the count.
        let renewed: Timestamp = "2000-01-01T00:00:02Z".parse().unwrap();
        assert!(!observed.expired("a", Some(renewed), Some(15), lease, t0 + Duration::from_secs(16)));
        assert!(!observed.expired("a", Some(renewed), Some(15), lease, t0 + Duration::from_secs(30)));
        assert!(observed.expired("a", Some(renewed), Some(15), lease, t0 + Duration::from_secs(31)));
        // Released: free at once.
        assert!(observed.expired("", None, Some(15), lease, t0 + Duration::from_secs(32)));
    }

    #[tokio::test(start_paused = true)]
    async fn the_guard_lapses_at_its_deadline() {
        let guard = LeaderGuard::new();
        assert!(!guard.is_valid());
        guard.extend(Instant::now() + Duration::from_secs(10));
        assert!(guard.is_valid());
        tokio::time::advance(Duration::from_secs(10)).await;
        assert!(
            !guard.is_valid(),
            "a stopped (SIGSTOP) leader resumes without the right to act"
        );
    }

    #[test]
    fn timings_must_keep_two_leaders_apart() {
        let mut e = Election::new("ns", "lease", "me");
        assert!(e.validate().is_ok());
        e.renew_deadline = Duration::from_secs(15);
        assert!(e.validate().unwrap_err().contains("shorter than the lease duration"));
        e.renew_deadline = Duration::from_secs(10);
        e.retry_period = Duration::from_secs(10);
        assert!(e.validate().unwrap_err().contains("retry period"));
    }
}
