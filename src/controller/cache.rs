//! What a pass reads from Kubernetes, from watches instead of requests: providers and Namespaces from
//! their caches, Secrets from a metadata-only watch plus their values read once per resourceVersion, and
//! the index from a Secret or provider to the subscriptions that use it (so that an event looks up its
//! subscriptions instead of scanning them all). An up-to-date pass makes no Kubernetes read.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Arc, Mutex};

use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::{Namespace, Secret};
use kube::ResourceExt;
use kube::api::{Api, PartialObjectMeta};
use kube::runtime::reflector::{ObjectRef, Store};
use kube::runtime::watcher;
use secrecy::SecretString;

use super::bindings;
use crate::api::{ClusterWebhookProvider, ProviderKind, WebhookProvider, WebhookSubscription};

/// A Secret as a pass uses it: its values (only in `SecretString`s) and its owners.
#[derive(Clone, Debug)]
pub struct SecretValues {
    /// `metadata.resourceVersion` these values are from.
    pub resource_version: String,
    /// Non-empty values by key.
    pub data: BTreeMap<String, SecretString>,
    /// The uids of its owners.
    pub owner_uids: Vec<String>,
}

impl SecretValues {
    /// From a Secret read in full.
    pub fn of(secret: &Secret) -> Self {
        SecretValues {
            resource_version: secret.resource_version().unwrap_or_default(),
            data: secret
                .data
                .iter()
                .flatten()
                .map(|(k, ByteString(bytes))| (k.clone(), String::from_utf8_lossy(bytes).into_owned()))
                .filter(|(_, v)| !v.is_empty())
                .map(|(k, v)| (k, SecretString::from(v)))
                .collect(),
            owner_uids: secret.owner_references().iter().map(|o| o.uid.clone()).collect(),
        }
    }
}

/// Whether resourceVersion `a` is known to be at least `b` (versions that are not numbers are only equal
/// or not, as the API conventions keep them opaque).
fn at_least(a: &str, b: &str) -> bool {
    a == b
        || matches!(
            (a.parse::<u64>(), b.parse::<u64>()),
            (Ok(a), Ok(b)) if a >= b
        )
}

/// A Secret's namespace and name.
type SecretKey = (String, String);

/// The caches a pass reads, filled by the controller's watches.
pub struct Caches {
    /// WebhookProviders.
    pub providers: Store<WebhookProvider>,
    /// ClusterWebhookProviders.
    pub cluster_providers: Store<ClusterWebhookProvider>,
    /// Namespaces, metadata only (their labels admit them to cluster providers).
    pub namespaces: Store<PartialObjectMeta<Namespace>>,
    /// Secrets, metadata only (no value is held for a Secret no subscription uses).
    pub secrets: Store<PartialObjectMeta<Secret>>,
    values: Mutex<HashMap<SecretKey, Arc<SecretValues>>>,
    /// One read at a time per Secret: the passes of a thousand subscriptions that share a Secret, started
    /// together (at a restart, or after a rotation), read it once.
    reading: Mutex<HashMap<SecretKey, Arc<tokio::sync::Mutex<()>>>>,
    /// Whether every store has its first listing: None until then, Some(false) if a store's writer
    /// went away first.
    synced: tokio::sync::watch::Sender<Option<bool>>,
}

impl std::fmt::Debug for Caches {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Caches").finish_non_exhaustive()
    }
}

impl Caches {
    /// Caches over these stores.
    pub fn new(
        providers: Store<WebhookProvider>,
        cluster_providers: Store<ClusterWebhookProvider>,
        namespaces: Store<PartialObjectMeta<Namespace>>,
        secrets: Store<PartialObjectMeta<Secret>>,
    ) -> Self {
        Caches {
            providers,
            cluster_providers,
            namespaces,
            secrets,
            values: Mutex::default(),
            reading: Mutex::default(),
            synced: tokio::sync::watch::Sender::new(None),
        }
    }

    /// Waits for every store's first listing, then lets [`Caches::ready`] answer; run once, beside the
    /// watches. A kube store's readiness wakes only the last of its waiters (kube-runtime's controllers
    /// wait on it too), so passes must not wait on the stores themselves, and this looks again every
    /// 100 ms rather than count on being woken.
    pub async fn sync(&self) {
        async fn synced<K>(store: &Store<K>) -> bool
        where
            K: kube::Resource + Clone + 'static,
            K::DynamicType: Eq + std::hash::Hash + Clone,
        {
            loop {
                match tokio::time::timeout(std::time::Duration::from_millis(100), store.wait_until_ready()).await {
                    Ok(result) => return result.is_ok(),
                    Err(_) => continue,
                }
            }
        }
        let all = synced(&self.providers).await
            && synced(&self.cluster_providers).await
            && synced(&self.namespaces).await
            && synced(&self.secrets).await;
        self.synced.send_replace(Some(all));
    }

    fn values(&self) -> std::sync::MutexGuard<'_, HashMap<SecretKey, Arc<SecretValues>>> {
        self.values.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Waits until every cache has its first listing (at once after that); false if it never will.
    pub async fn ready(&self) -> bool {
        let mut synced = self.synced.subscribe();
        matches!(synced.wait_for(Option::is_some).await.map(|s| *s), Ok(Some(true)))
    }

    /// A Secret's values: from memory while its resourceVersion is the one they were read at (or older
    /// than a write of our own), otherwise read once.
    pub async fn secret(
        &self,
        client: &kube::Client,
        namespace: &str,
        name: &str,
    ) -> Result<Option<Arc<SecretValues>>, kube::Error> {
        let key = (namespace.to_string(), name.to_string());
        let current = || {
            let watched = self
                .secrets
                .get(&ObjectRef::new(name).within(namespace))
                .and_then(|m| m.resource_version())?;
            let known = self.values().get(&key).cloned()?;
            at_least(&known.resource_version, &watched).then_some(known)
        };
        if let Some(known) = current() {
            return Ok(Some(known));
        }
        let one_reader = self
            .reading
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .entry(key.clone())
            .or_default()
            .clone();
        let read = {
            let _reading = one_reader.lock().await;
            // Another pass may have read it meanwhile.
            match current() {
                Some(known) => Ok(Some(known)),
                None => Api::<Secret>::namespaced(client.clone(), namespace)
                    .get_opt(name)
                    .await
                    .map(|read| self.remember(&key, read)),
            }
        };
        let mut reading = self.reading.lock().unwrap_or_else(|e| e.into_inner());
        // The map's and ours: nobody else is waiting.
        if Arc::strong_count(&one_reader) <= 2 {
            reading.remove(&key);
        }
        read
    }

    /// Keeps what a read found (or forgets a Secret that is gone).
    fn remember(&self, key: &SecretKey, read: Option<Secret>) -> Option<Arc<SecretValues>> {
        let mut values = self.values();
        match read {
            Some(secret) => {
                let read = Arc::new(SecretValues::of(&secret));
                values.insert(key.clone(), read.clone());
                Some(read)
            }
            None => {
                values.remove(key);
                None
            }
        }
    }

    /// Remembers a Secret the operator wrote (a generated signing secret), so that a cache that has not
    /// seen the write yet does not hide it.
    pub fn wrote_secret(&self, namespace: &str, name: &str, secret: &Secret) {
        self.values().insert(
            (namespace.to_string(), name.to_string()),
            Arc::new(SecretValues::of(secret)),
        );
    }

    /// Forgets a deleted Secret's values.
    pub fn forget_secret(&self, namespace: &str, name: &str) {
        self.values().remove(&(namespace.to_string(), name.to_string()));
    }

    /// How many Secrets' values are held.
    pub fn secret_values_held(&self) -> usize {
        self.values().len()
    }

    /// A Namespace's labels (None: no such Namespace).
    pub fn namespace_labels(&self, name: &str) -> Option<BTreeMap<String, String>> {
        self.namespaces.get(&ObjectRef::new(name)).map(|n| n.labels().clone())
    }
}

/// The provider a subscription names, as an index key.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum ProviderKey {
    /// A WebhookProvider: namespace and name.
    Namespaced(String, String),
    /// A ClusterWebhookProvider: name.
    Cluster(String),
}

impl ProviderKey {
    /// The provider `sub` names.
    pub fn of(sub: &WebhookSubscription) -> Self {
        let name = sub.spec.provider_ref.name.clone();
        match sub.spec.provider_ref.kind {
            ProviderKind::WebhookProvider => ProviderKey::Namespaced(sub.namespace().unwrap_or_default(), name),
            ProviderKind::ClusterWebhookProvider => ProviderKey::Cluster(name),
        }
    }
}

/// What one subscription uses.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Uses {
    provider: ProviderKey,
    /// Secrets it references itself (namespace, name).
    secrets: Vec<(String, String)>,
}

#[derive(Debug, Default)]
struct IndexState {
    uses: HashMap<ObjectRef<WebhookSubscription>, Uses>,
    by_secret: HashMap<(String, String), HashSet<ObjectRef<WebhookSubscription>>>,
    by_provider: HashMap<ProviderKey, HashSet<ObjectRef<WebhookSubscription>>>,
    /// Subscriptions that name a ClusterWebhookProvider, by their namespace: whether the provider admits
    /// them depends on their Namespace's labels.
    cluster_users_by_namespace: HashMap<String, HashSet<ObjectRef<WebhookSubscription>>>,
    /// During a relist: the subscriptions seen so far (the others are gone when it ends).
    relisting: Option<HashSet<ObjectRef<WebhookSubscription>>>,
}

impl IndexState {
    fn remove(&mut self, sub: &ObjectRef<WebhookSubscription>) {
        let Some(old) = self.uses.remove(sub) else {
            return;
        };
        if let Some(subs) = self.by_provider.get_mut(&old.provider) {
            subs.remove(sub);
            if subs.is_empty() {
                self.by_provider.remove(&old.provider);
            }
        }
        if let (ProviderKey::Cluster(_), Some(ns)) = (&old.provider, &sub.namespace)
            && let Some(subs) = self.cluster_users_by_namespace.get_mut(ns)
        {
            subs.remove(sub);
            if subs.is_empty() {
                self.cluster_users_by_namespace.remove(ns);
            }
        }
        for secret in old.secrets {
            if let Some(subs) = self.by_secret.get_mut(&secret) {
                subs.remove(sub);
                if subs.is_empty() {
                    self.by_secret.remove(&secret);
                }
            }
        }
    }

    fn set(&mut self, sub: &WebhookSubscription) {
        let key = ObjectRef::from_obj(sub);
        if let Some(seen) = &mut self.relisting {
            seen.insert(key.clone());
        }
        let ns = sub.namespace().unwrap_or_default();
        let uses = Uses {
            provider: ProviderKey::of(sub),
            secrets: bindings::referenced_secrets(sub)
                .into_iter()
                .map(|name| (ns.clone(), name))
                .collect(),
        };
        if self.uses.get(&key) == Some(&uses) {
            return;
        }
        self.remove(&key);
        self.by_provider
            .entry(uses.provider.clone())
            .or_default()
            .insert(key.clone());
        for secret in &uses.secrets {
            self.by_secret.entry(secret.clone()).or_default().insert(key.clone());
        }
        if let ProviderKey::Cluster(_) = uses.provider {
            self.cluster_users_by_namespace
                .entry(ns)
                .or_default()
                .insert(key.clone());
        }
        self.uses.insert(key, uses);
    }
}

/// The index from what subscriptions use to the subscriptions, kept by the subscription watch.
#[derive(Debug, Default)]
pub struct SubscriptionIndex(Mutex<IndexState>);

impl SubscriptionIndex {
    fn state(&self) -> std::sync::MutexGuard<'_, IndexState> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Follows one event of the subscription watch.
    pub fn observe(&self, event: &watcher::Event<WebhookSubscription>) {
        let mut state = self.state();
        match event {
            watcher::Event::Apply(sub) | watcher::Event::InitApply(sub) => state.set(sub),
            watcher::Event::Delete(sub) => state.remove(&ObjectRef::from_obj(sub)),
            watcher::Event::Init => state.relisting = Some(HashSet::new()),
            watcher::Event::InitDone => {
                if let Some(seen) = state.relisting.take() {
                    let gone: Vec<_> = state.uses.keys().filter(|k| !seen.contains(*k)).cloned().collect();
                    for sub in gone {
                        state.remove(&sub);
                    }
                }
            }
        }
    }

    /// The subscriptions that reference Secret `namespace/name` themselves.
    pub fn using_secret(&self, namespace: &str, name: &str) -> Vec<ObjectRef<WebhookSubscription>> {
        self.state()
            .by_secret
            .get(&(namespace.to_string(), name.to_string()))
            .map(|s| s.iter().cloned().collect())
            .unwrap_or_default()
    }

    /// The subscriptions that name this provider.
    pub fn using_provider(&self, provider: &ProviderKey) -> Vec<ObjectRef<WebhookSubscription>> {
        self.state()
            .by_provider
            .get(provider)
            .map(|s| s.iter().cloned().collect())
            .unwrap_or_default()
    }

    /// The subscriptions in `namespace` that name a ClusterWebhookProvider (a change of the Namespace's
    /// labels can admit or refuse them).
    pub fn using_cluster_provider_in(&self, namespace: &str) -> Vec<ObjectRef<WebhookSubscription>> {
        self.state()
            .cluster_users_by_namespace
            .get(namespace)
            .map(|s| s.iter().cloned().collect())
            .unwrap_or_default()
    }

    /// How many subscriptions are indexed.
    pub fn len(&self) -> usize {
        self.state().uses.len()
    }

    /// Whether none is.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn sub(ns: &str, name: &str, provider: &str, secret: &str) -> WebhookSubscription {
        serde_json::from_value(json!({
            "apiVersion": "webhook-operator.dev/v1alpha1", "kind": "WebhookSubscription",
            "metadata": {"name": name, "namespace": ns},
            "spec": {"providerRef": {"name": provider}, "endpoint": "https://h.example.com/x",
                     "avaya": {"families": ["AGENT"], "events": ["Agent.LoggedIn"],
                               "authToken": {"secretKeyRef": {"name": secret, "key": "token"}}}},
        }))
        .unwrap()
    }

    #[tokio::test]
    async fn every_pass_waiting_for_the_first_listings_goes_on_once_they_are_in() {
        use kube::runtime::reflector::store;
        use kube::runtime::watcher::Event;
        let (providers, mut provider_writer) = store::<WebhookProvider>();
        let (cluster_providers, mut cluster_provider_writer) = store::<ClusterWebhookProvider>();
        let (namespaces, mut namespace_writer) = store_for_metadata::<Namespace>();
        let (secrets, mut secret_writer) = store_for_metadata::<Secret>();
        let caches = Arc::new(Caches::new(providers, cluster_providers, namespaces, secrets));
        // Many passes wait at once (a kube store alone would wake only the last of them).
        let waiting: Vec<_> = (0..20)
            .map(|_| {
                let caches = caches.clone();
                tokio::spawn(async move { caches.ready().await })
            })
            .collect();
        let sync = tokio::spawn({
            let caches = caches.clone();
            async move { caches.sync().await }
        });
        tokio::task::yield_now().await;
        // Another waiter on a store after it (as kube-runtime's controllers are) takes the wake-up.
        let other = tokio::spawn({
            let caches = caches.clone();
            async move { caches.providers.wait_until_ready().await.is_ok() }
        });
        tokio::task::yield_now().await;
        provider_writer.apply_watcher_event(&Event::InitDone);
        cluster_provider_writer.apply_watcher_event(&Event::InitDone);
        namespace_writer.apply_watcher_event(&Event::InitDone);
        secret_writer.apply_watcher_event(&Event::InitDone);
        for pass in waiting {
            let ready = tokio::time::timeout(std::time::Duration::from_secs(5), pass)
                .await
                .expect("woken")
                .unwrap();
            assert!(ready);
        }
        sync.await.unwrap();
        assert!(other.await.unwrap());
        assert!(caches.ready().await, "and at once afterwards");
    }

    fn store_for_metadata<K>() -> (
        kube::runtime::reflector::Store<PartialObjectMeta<K>>,
        kube::runtime::reflector::store::Writer<PartialObjectMeta<K>>,
    )
    where
        K: kube::Resource<DynamicType = ()> + Clone,
        PartialObjectMeta<K>: kube::Resource<DynamicType = ()> + Clone,
    {
        kube::runtime::reflector::store()
    }

    fn names(refs: Vec<ObjectRef<WebhookSubscription>>) -> Vec<String> {
        let mut names: Vec<String> = refs.into_iter().map(|r| r.name).collect();
        names.sort();
        names
    }

    #[test]
    fn the_index_follows_changes_deletes_and_relists() {
        let index = SubscriptionIndex::default();
        index.observe(&watcher::Event::Apply(sub("a", "one", "p", "token")));
        index.observe(&watcher::Event::Apply(sub("a", "two", "p", "token")));
        index.observe(&watcher::Event::Apply(sub("b", "three", "p", "token")));
        assert_eq!(names(index.using_secret("a", "token")), ["one", "two"]);
        assert_eq!(names(index.using_secret("b", "token")), ["three"]);
        let p_in_a = ProviderKey::Namespaced("a".into(), "p".into());
        assert_eq!(names(index.using_provider(&p_in_a)), ["one", "two"]);
        // A spec change moves it; a delete removes it.
        index.observe(&watcher::Event::Apply(sub("a", "two", "q", "other")));
        assert_eq!(names(index.using_secret("a", "token")), ["one"]);
        assert_eq!(names(index.using_secret("a", "other")), ["two"]);
        index.observe(&watcher::Event::Delete(sub("a", "one", "p", "token")));
        assert!(index.using_secret("a", "token").is_empty());
        assert!(index.using_provider(&p_in_a).is_empty());
        // A relist that no longer shows "three" drops it.
        index.observe(&watcher::Event::Init);
        index.observe(&watcher::Event::InitApply(sub("a", "two", "q", "other")));
        index.observe(&watcher::Event::InitDone);
        assert!(index.using_secret("b", "token").is_empty());
        assert_eq!(index.len(), 1);
    }

    #[test]
    fn subscriptions_of_a_cluster_provider_are_found_by_namespace() {
        let index = SubscriptionIndex::default();
        let cluster = |ns: &str, name: &str| {
            let mut s = sub(ns, name, "shared", "token");
            s.spec.provider_ref.kind = ProviderKind::ClusterWebhookProvider;
            s
        };
        index.observe(&watcher::Event::Apply(cluster("a", "one")));
        index.observe(&watcher::Event::Apply(cluster("b", "two")));
        index.observe(&watcher::Event::Apply(sub("a", "own", "p", "token")));
        assert_eq!(
            names(index.using_cluster_provider_in("a")),
            ["one"],
            "not the namespaced provider's"
        );
        assert_eq!(names(index.using_cluster_provider_in("b")), ["two"]);
        // Moved to a namespaced provider, or deleted: no longer found.
        index.observe(&watcher::Event::Apply(sub("a", "one", "p", "token")));
        assert!(index.using_cluster_provider_in("a").is_empty());
        index.observe(&watcher::Event::Delete(cluster("b", "two")));
        assert!(index.using_cluster_provider_in("b").is_empty());
    }

    #[test]
    fn resource_versions_compare_as_numbers_when_they_are() {
        assert!(at_least("12", "9"));
        assert!(!at_least("9", "12"));
        assert!(at_least("opaque", "opaque"));
        assert!(!at_least("opaque-2", "opaque-1"));
    }
}
