//! What every reconcile shares: settings, the Kubernetes client, the provider clients, the Event
//! recorder, and the little the controller remembers per object between passes.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use jiff::Timestamp;
use kube::Resource;
use kube::runtime::reflector::Store;
use secrecy::SecretString;

use super::accounts::ProviderRegistry;
use super::cache::{Caches, SubscriptionIndex};
use super::claims::{ClaimFeed, ClaimIndex, LiveClaims, RecentClaims};
use super::endpoints::EndpointPolicy;
use super::error::ReconcileError;
use super::events::{EventPublisher, EventType};
use super::inventory::Inventoried;
use super::leader::LeaderGuard;
use super::observe::{self, MANAGER, ProviderSettings, Reads};
use super::plan::{Gate, OwnAnnotations};
use super::report::{Note, Severity};
use crate::api::{WebhookSubscription, WebhookSubscriptionStatus};
use crate::clock::SharedClock;
use crate::providers::fingerprint;
use crate::providers::http::{RetryPolicy, http_client};

/// Operator settings.
#[derive(Clone, Debug)]
pub struct Config {
    /// Where ClusterWebhookProviders' Secrets live (the operator's namespace).
    pub operator_namespace: String,
    /// How often an up-to-date subscription is compared with the provider.
    pub drift_interval: Duration,
    /// How often providers' credentials are checked.
    pub provider_check_interval: Duration,
    /// The clock expiry logic reads.
    pub clock: SharedClock,
    /// Provider call retries.
    pub retry: RetryPolicy,
    /// The `reportingInstance` of Events.
    pub instance: String,
    /// Where provider credentials may be sent.
    pub endpoints: EndpointPolicy,
    /// With leader election: whether this replica may act now (every write checks it).
    pub leadership: Option<Arc<LeaderGuard>>,
    /// How many subscriptions are reconciled at once (0: no bound).
    pub reconcile_concurrency: u16,
    /// Which subscriptions this replica reconciles (by their shard label).
    pub shard: super::shard::Shard,
    /// Which namespaces it watches.
    pub scope: super::scope::Scope,
}

impl Config {
    /// Defaults: drift checks every 10 minutes, provider checks every 5.
    pub fn new(operator_namespace: &str, clock: SharedClock) -> Self {
        Config {
            operator_namespace: operator_namespace.to_string(),
            drift_interval: Duration::from_secs(600),
            provider_check_interval: Duration::from_secs(300),
            clock,
            retry: RetryPolicy::default(),
            instance: std::env::var("POD_NAME").unwrap_or_else(|_| "webhook-operator".into()),
            endpoints: EndpointPolicy::default(),
            leadership: None,
            reconcile_concurrency: 32,
            shard: super::shard::Shard::unsharded(),
            scope: super::scope::Scope::Cluster,
        }
    }
}

/// What the controller remembers of one subscription between passes (by uid).
#[derive(Clone, Debug, Default)]
pub struct ObjectState {
    /// Held back after a failure.
    pub gate: Option<Gate>,
    /// When this process last read the remote subscription.
    pub last_remote_check: Option<Timestamp>,
    /// The status last written: the watch cache can lag behind our own write, and a stale status would
    /// make the next pass redo what was just done.
    pub written: Option<WebhookSubscriptionStatus>,
    /// The operator's own annotations as it last wrote them (same reason).
    pub own_annotations: Option<OwnAnnotations>,
}

/// Per-object state, removed when the object is deleted.
#[derive(Debug, Default)]
pub struct ObjectStates(Mutex<HashMap<String, ObjectState>>);

impl ObjectStates {
    fn map(&self) -> std::sync::MutexGuard<'_, HashMap<String, ObjectState>> {
        // A panic elsewhere while holding the lock leaves plain data behind: keep using it.
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The state of `uid` (empty when unknown).
    pub fn get(&self, uid: &str) -> ObjectState {
        self.map().get(uid).cloned().unwrap_or_default()
    }

    /// Changes the state of `uid`.
    pub fn update(&self, uid: &str, change: impl FnOnce(&mut ObjectState)) {
        change(self.map().entry(uid.to_string()).or_default());
    }

    /// The watch shows `status` for `uid`, already in the cache: once that is the status last written,
    /// the copy kept for a lagging cache is let go, so that in steady state no status is held twice. A
    /// pass reads the newest cached object after its state, so it sees that status either way.
    pub fn seen(&self, uid: &str, status: Option<&WebhookSubscriptionStatus>) {
        if let Some(state) = self.map().get_mut(uid)
            && state.written.is_some()
            && state.written.as_ref() == status
        {
            state.written = None;
        }
    }

    /// How many statuses are kept for a lagging cache (none once the watch has caught up).
    pub fn statuses_held(&self) -> usize {
        self.map().values().filter(|s| s.written.is_some()).count()
    }

    /// Forgets a deleted object.
    pub fn forget(&self, uid: &str) {
        self.map().remove(uid);
    }

    /// Forgets every object not in `live` (objects deleted without a cleanup pass, e.g. a finalizer
    /// removed by hand).
    pub fn retain_live(&self, live: &HashSet<String>) {
        self.map().retain(|uid, _| live.contains(uid));
    }

    /// How many objects are remembered.
    pub fn len(&self) -> usize {
        self.map().len()
    }

    /// Whether none is.
    pub fn is_empty(&self) -> bool {
        self.map().is_empty()
    }
}

/// Shared by every reconcile.
pub struct Context {
    /// The Kubernetes client.
    pub client: kube::Client,
    /// Settings.
    pub config: Config,
    /// Provider clients by account.
    pub registry: ProviderRegistry,
    events: EventPublisher,
    /// Per-object state.
    pub objects: ObjectStates,
    /// The subscriptions the controller watches (set when it starts).
    subscriptions: OnceLock<Store<WebhookSubscription>>,
    /// The claims of the subscriptions other replicas reconcile (set when the controller starts).
    other_claims: OnceLock<Arc<ClaimFeed>>,
    /// The claim index, rebuilt from `subscriptions` at most once per [`CLAIMS_FRESH_FOR`].
    claims: Mutex<Option<(Instant, Arc<ClaimIndex>)>>,
    /// Claims this process recorded, which the index may not show yet.
    pub recent_claims: Arc<RecentClaims>,
    /// The watches' caches (set when the controller starts; passes read the API without them).
    caches: OnceLock<Arc<Caches>>,
    /// From Secrets and providers to the subscriptions that use them.
    pub index: Arc<SubscriptionIndex>,
}

/// How long a claim index is reused: rebuilding it is linear in the subscriptions, so it is rebuilt at
/// most this often, never per pass.
const CLAIMS_FRESH_FOR: Duration = Duration::from_secs(1);

impl Context {
    /// A context on `client`.
    pub fn new(client: kube::Client, config: Config) -> Arc<Self> {
        Arc::new(Context {
            events: EventPublisher::new(client.clone(), MANAGER, &config.instance, config.clock.clone()),
            registry: ProviderRegistry::new(
                http_client(config.retry.timeout),
                config.clock.clone(),
                config.retry,
                config.endpoints.clone(),
                config.drift_interval,
            ),
            client,
            config,
            objects: ObjectStates::default(),
            subscriptions: OnceLock::new(),
            other_claims: OnceLock::new(),
            claims: Mutex::new(None),
            recent_claims: Arc::default(),
            caches: OnceLock::new(),
            index: Arc::default(),
        })
    }

    /// Whether this replica may write now: always without leader election; with it, only while its last
    /// Lease renewal is within the renew deadline (a leader that was stopped and resumes must not act).
    pub fn may_act(&self) -> bool {
        self.config.leadership.as_ref().is_none_or(|g| g.is_valid())
    }

    /// Gives the context the watches' caches.
    pub fn use_caches(&self, caches: Arc<Caches>) {
        let _ = self.caches.set(caches);
    }

    /// The watches' caches, once the controller runs.
    pub fn caches(&self) -> Option<&Caches> {
        self.caches.get().map(|c| &**c)
    }

    /// Where a pass reads Kubernetes objects from.
    pub fn reads(&self) -> Reads<'_> {
        Reads {
            client: &self.client,
            caches: self.caches(),
        }
    }

    /// Gives the context the controller's view of every subscription (for claims).
    pub fn watch_subscriptions(&self, store: Store<WebhookSubscription>) {
        let _ = self.subscriptions.set(store);
    }

    /// Uses `feed` for the claims of the subscriptions this replica does not reconcile.
    pub fn follow_other_claims(&self, feed: Arc<ClaimFeed>) {
        let _ = self.other_claims.set(feed);
    }

    /// The newest cached copy of `sub` (the one a pass was given can be older than what the watch has
    /// shown since; see [`ObjectStates::seen`]).
    pub fn newest(&self, sub: &WebhookSubscription) -> Option<Arc<WebhookSubscription>> {
        self.subscriptions
            .get()?
            .get(&kube::runtime::reflector::ObjectRef::from_obj(sub))
    }

    /// Every claim of a remote id in the cluster (this replica's subscriptions and the others'): the cache's (at most [`CLAIMS_FRESH_FOR`] old) with
    /// this process's recent ones over it.
    pub fn claims(&self) -> LiveClaims {
        let mut cached = self.claims.lock().unwrap_or_else(|e| e.into_inner());
        let index = match cached.as_ref() {
            Some((built, index)) if built.elapsed() < CLAIMS_FRESH_FOR => index.clone(),
            _ => {
                let index = Arc::new(match self.subscriptions.get() {
                    Some(store) => ClaimIndex::build(store.state().iter().map(|s| &**s)),
                    None => ClaimIndex::default(),
                });
                *cached = Some((Instant::now(), index.clone()));
                index
            }
        };
        LiveClaims {
            index,
            recent: self.recent_claims.clone(),
            others: self.other_claims.get().cloned(),
        }
    }

    /// The account's client, with the fingerprint of the credentials it was built from.
    pub async fn connect(&self, settings: &ProviderSettings) -> Result<(Arc<Inventoried>, String), ReconcileError> {
        let (client_id, secret): (String, SecretString) = observe::credentials(self.reads(), settings).await?;
        let api = self.registry.client(settings, &client_id, &secret)?;
        Ok((api, fingerprint(&secret)))
    }

    /// Publishes the Events of a pass on the subscription (a failure to publish is logged, not retried).
    pub async fn publish(&self, sub: &WebhookSubscription, notes: Vec<Note>) {
        let regarding = sub.object_ref(&());
        for note in notes {
            let type_ = match note.severity {
                Severity::Normal => EventType::Normal,
                Severity::Warning => EventType::Warning,
            };
            let published = self
                .events
                .publish(&regarding, type_, note.reason.as_str(), &note.message)
                .await;
            if let Err(e) = published {
                tracing::warn!(error = %e, "could not publish an Event");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_status_kept_for_a_lagging_cache_is_let_go_once_the_watch_shows_it() {
        let states = ObjectStates::default();
        let written = WebhookSubscriptionStatus {
            subscription_id: Some("id-1".into()),
            ..Default::default()
        };
        states.update("uid-1", |s| s.written = Some(written.clone()));
        states.seen("uid-1", None);
        states.seen("uid-1", Some(&WebhookSubscriptionStatus::default()));
        assert_eq!(
            states.get("uid-1").written.as_ref(),
            Some(&written),
            "an older status: kept"
        );
        states.seen("uid-1", Some(&written));
        assert_eq!(states.get("uid-1").written, None);
        states.seen("uid-2", Some(&written));
        assert_eq!(states.len(), 1, "an unknown object gets no state");
    }

    #[test]
    fn object_state_is_forgotten_on_delete_and_pruned_to_live_objects() {
        let states = ObjectStates::default();
        for i in 0..1000 {
            states.update(&format!("uid-{i}"), |s| {
                s.last_remote_check = Some(Timestamp::UNIX_EPOCH)
            });
        }
        assert_eq!(states.len(), 1000);
        states.forget("uid-0");
        assert!(states.get("uid-0").last_remote_check.is_none());
        let live: HashSet<String> = (500..1000).map(|i| format!("uid-{i}")).collect();
        states.retain_live(&live);
        assert_eq!(states.len(), 500);
        states.retain_live(&HashSet::new());
        assert!(states.is_empty());
    }
}
