//! Leader election on a `coordination.k8s.io/v1` Lease, in the client-go style: read the Lease, and take
//! or renew it with a replace that carries its resourceVersion, so two contenders cannot both win (the
//! loser gets 409). Only the leader runs the controllers; a leader that cannot renew in time steps down.

use std::time::Duration;

use jiff::{SignedDuration, Timestamp};
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;
use kube::api::{Api, PostParams};
use serde_json::json;

use crate::clock::SharedClock;

/// Timing of the election.
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
    /// A leader that has not renewed for this long stops acting.
    pub renew_deadline: Duration,
}

impl Election {
    /// client-go's defaults: 15 s lease, renew every 2 s, give up after 10 s without a renewal.
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
}

/// What one attempt found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Attempt {
    /// We hold the lease (newly acquired or renewed).
    Leading,
    /// Someone else holds a valid lease.
    Following,
}

/// One acquire-or-renew attempt.
pub async fn try_acquire_or_renew(
    api: &Api<Lease>,
    election: &Election,
    clock: &SharedClock,
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
    let expired = spec.renew_time.as_ref().is_none_or(|MicroTime(renewed)| {
        let valid = SignedDuration::from_secs(i64::from(spec.lease_duration_seconds.unwrap_or(duration)));
        *renewed + valid < now
    });
    if holder != election.identity && !holder.is_empty() && !expired {
        return Ok(Attempt::Following);
    }
    if holder != election.identity {
        spec.acquire_time = Some(micro(now));
        spec.lease_transitions = Some(spec.lease_transitions.unwrap_or(0) + 1);
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

/// Runs `lead` while this replica holds the lease. Returns when `shutdown` resolves (releasing the lease)
/// or when leadership is lost (the caller should exit so a fresh process campaigns again).
pub async fn run_elected<F, Fut>(
    client: kube::Client,
    election: Election,
    clock: SharedClock,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
    lead: F,
) -> Result<(), LeadershipLost>
where
    F: FnOnce(tokio::sync::oneshot::Receiver<()>) -> Fut,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    let api: Api<Lease> = Api::namespaced(client, &election.namespace);
    tokio::pin!(shutdown);
    // Campaign.
    loop {
        match try_acquire_or_renew(&api, &election, &clock).await {
            Ok(Attempt::Leading) => break,
            Ok(Attempt::Following) => {}
            Err(e) => tracing::warn!(error = %e, "leader election: cannot read or write the Lease"),
        }
        tokio::select! {
            _ = &mut shutdown => return Ok(()),
            _ = tokio::time::sleep(election.retry_period) => {}
        }
    }
    tracing::info!(identity = %election.identity, lease = %election.name, "became the leader");
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel();
    let leading = tokio::spawn(lead(stop_rx));
    let mut last_renewal = tokio::time::Instant::now();
    let outcome = loop {
        tokio::select! {
            _ = &mut shutdown => break Ok(()),
            _ = tokio::time::sleep(election.retry_period) => {}
        }
        match try_acquire_or_renew(&api, &election, &clock).await {
            Ok(Attempt::Leading) => last_renewal = tokio::time::Instant::now(),
            Ok(Attempt::Following) => break Err(LeadershipLost),
            Err(e) => tracing::warn!(error = %e, "leader election: renewal failed"),
        }
        if last_renewal.elapsed() > election.renew_deadline {
            break Err(LeadershipLost);
        }
    };
    let _ = stop_tx.send(());
    let _ = tokio::time::timeout(Duration::from_secs(10), leading).await;
    if outcome.is_ok() {
        let _ = release(&api, &election).await;
    } else {
        tracing::error!("lost the leadership; stopping");
    }
    outcome
}

/// Leadership was lost while acting.
#[derive(Debug, thiserror::Error)]
#[error("lost the leader lease")]
pub struct LeadershipLost;
