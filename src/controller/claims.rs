//! One claimant per remote subscription. Several `WebhookSubscription`s can name the same remote id (a
//! copied `external-id` annotation, by mistake or on purpose); exactly one of them may act on it, in any
//! namespace. The others get `AlreadyClaimed` and never call the provider for it.
//!
//! Who holds a claim: a subscription whose status (written only by the operator) records the id beats one
//! that merely carries the annotation (a fresh copy, or an old object re-pointed at someone else's id);
//! then the older object; then namespace and name, so that every replica decides alike.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use jiff::Timestamp;
use kube::ResourceExt;

use super::bindings;
use crate::api::{WebhookSubscription, annotation};
use crate::providers::ProviderType;

/// A subscription that names a remote id.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Claimant {
    /// `metadata.uid`.
    pub uid: String,
    /// Namespace.
    pub namespace: String,
    /// Name.
    pub name: String,
    /// `metadata.creationTimestamp`.
    pub created: Option<Timestamp>,
    /// Whether its status records the id (the operator created, adopted or imported it for this one).
    pub recorded: bool,
}

impl Claimant {
    /// Lower is stronger.
    fn rank(&self) -> (bool, Timestamp, &str, &str) {
        (
            !self.recorded,
            self.created.unwrap_or(Timestamp::MAX),
            &self.namespace,
            &self.name,
        )
    }

    /// Whether this claimant holds the id against `other`.
    pub fn beats(&self, other: &Claimant) -> bool {
        self.rank() < other.rank()
    }

    /// `namespace/name`, as messages name it.
    pub fn display(&self) -> String {
        format!("{}/{}", self.namespace, self.name)
    }
}

/// The claim a subscription makes: its provider type, the id it acts on (its `external-id` annotation,
/// else its status), and itself as the claimant.
pub fn claim_of(sub: &WebhookSubscription) -> Option<(ProviderType, String, Claimant)> {
    let provider = bindings::subscription_block(&sub.spec).ok()?.provider_type();
    let recorded = sub.status.as_ref().and_then(|s| s.subscription_id.clone());
    let external_id = sub
        .annotations()
        .get(annotation::EXTERNAL_ID)
        .filter(|v| !v.is_empty())
        .cloned();
    let id = external_id.or_else(|| recorded.clone())?;
    Some((
        provider,
        id.clone(),
        claimant(sub, recorded.as_deref() == Some(id.as_str())),
    ))
}

/// `sub` as a claimant.
pub fn claimant(sub: &WebhookSubscription, recorded: bool) -> Claimant {
    Claimant {
        uid: sub.uid().unwrap_or_default(),
        namespace: sub.namespace().unwrap_or_default(),
        name: sub.name_any(),
        created: sub.creation_timestamp().map(|t| t.0),
        recorded,
    }
}

/// Every claim in the cluster, by provider type and remote id.
#[derive(Debug, Default)]
pub struct ClaimIndex {
    by_id: HashMap<(ProviderType, String), Vec<Claimant>>,
}

impl ClaimIndex {
    /// The claims of these subscriptions (objects being deleted still hold theirs until they are gone).
    pub fn build<'a>(subs: impl IntoIterator<Item = &'a WebhookSubscription>) -> Self {
        ClaimIndex::from_claims(subs.into_iter().filter_map(claim_of))
    }

    /// An index of these claims.
    pub fn from_claims(claims: impl IntoIterator<Item = (ProviderType, String, Claimant)>) -> Self {
        let mut index = ClaimIndex::default();
        for (provider, id, claimant) in claims {
            index.by_id.entry((provider, id)).or_default().push(claimant);
        }
        index
    }

    /// How many ids are claimed.
    pub fn len(&self) -> usize {
        self.by_id.len()
    }

    /// Whether none is.
    pub fn is_empty(&self) -> bool {
        self.by_id.is_empty()
    }
}

/// Who names which remote id.
pub trait Claims: Send + Sync + std::fmt::Debug {
    /// Every subscription other than `me` (a uid) that names `id`.
    fn others(&self, provider: ProviderType, id: &str, me: &str) -> Vec<Claimant>;

    /// The strongest other subscription that names `id`, whether or not it beats `me`.
    fn other(&self, provider: ProviderType, id: &str, me: &str) -> Option<Claimant> {
        self.others(provider, id, me)
            .into_iter()
            .min_by(|a, b| a.rank().cmp(&b.rank()))
    }

    /// The other subscription that holds `id` against `me`, if one does.
    fn holder_against(&self, provider: ProviderType, id: &str, me: &Claimant) -> Option<Claimant> {
        self.other(provider, id, &me.uid).filter(|other| other.beats(me))
    }
}

/// The claimants of `id` in `by_key` other than `me`.
fn claimants_other_than(
    by_key: &HashMap<ClaimKey, Vec<Claimant>>,
    provider: ProviderType,
    id: &str,
    me: &str,
) -> Vec<Claimant> {
    by_key
        .get(&(provider, id.to_string()))
        .into_iter()
        .flatten()
        .filter(|c| c.uid != me)
        .cloned()
        .collect()
}

impl Claims for ClaimIndex {
    fn others(&self, provider: ProviderType, id: &str, me: &str) -> Vec<Claimant> {
        claimants_other_than(&self.by_id, provider, id, me)
    }
}

/// How long a claim this process recorded is remembered apart from the watch cache: the cache-built
/// index is rebuilt every second, and the cache itself may lag the operator's own writes.
const RECENT_FOR: Duration = Duration::from_secs(60);

/// Claims this process recorded lately (a status that names an id), which the cache-built index may not
/// show yet: without them a copy made right after the original became Ready would slip through. Indexed
/// both ways, so recording and looking up cost the same at ten thousand subscriptions as at ten.
#[derive(Debug, Default)]
pub struct RecentClaims {
    inner: Mutex<Recent>,
}

type ClaimKey = (ProviderType, String);

#[derive(Debug, Default)]
struct Recent {
    /// Each subscription's latest claim.
    by_uid: HashMap<String, (Instant, ClaimKey)>,
    /// The claimants of each id.
    by_key: HashMap<ClaimKey, Vec<Claimant>>,
    /// When expired entries were last dropped.
    pruned: Option<Instant>,
}

impl Recent {
    fn remove(&mut self, uid: &str) {
        if let Some((_, key)) = self.by_uid.remove(uid)
            && let Some(claimants) = self.by_key.get_mut(&key)
        {
            claimants.retain(|c| c.uid != uid);
            if claimants.is_empty() {
                self.by_key.remove(&key);
            }
        }
    }

    /// Drops expired claims, at most once per [`RECENT_FOR`] (amortised: never a scan per write).
    fn prune(&mut self, now: Instant) {
        if self.pruned.is_some_and(|at| now.duration_since(at) < RECENT_FOR) {
            return;
        }
        self.pruned = Some(now);
        let expired: Vec<String> = self
            .by_uid
            .iter()
            .filter(|(_, (at, _))| now.duration_since(*at) >= RECENT_FOR)
            .map(|(uid, _)| uid.clone())
            .collect();
        for uid in expired {
            self.remove(&uid);
        }
    }
}

impl RecentClaims {
    fn lock(&self) -> std::sync::MutexGuard<'_, Recent> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Records that `claimant` now holds `id`, replacing its earlier claim.
    pub fn record(&self, provider: ProviderType, id: &str, claimant: Claimant) {
        let mut recent = self.lock();
        let now = Instant::now();
        recent.prune(now);
        recent.remove(&claimant.uid);
        let key = (provider, id.to_string());
        recent.by_uid.insert(claimant.uid.clone(), (now, key.clone()));
        recent.by_key.entry(key).or_default().push(claimant);
    }

    /// Forgets a deleted subscription's claim.
    pub fn forget(&self, uid: &str) {
        self.lock().remove(uid);
    }

    /// How many are remembered.
    pub fn len(&self) -> usize {
        self.lock().by_uid.len()
    }

    /// Whether none is.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// The cache-built index with this process's recent claims over it (a recent claim replaces what the
/// index says of the same subscription).
#[derive(Debug, Clone)]
pub struct LiveClaims {
    /// Built from the watch cache.
    pub index: Arc<ClaimIndex>,
    /// Recorded by this process.
    pub recent: Arc<RecentClaims>,
    /// The subscriptions other replicas reconcile, live.
    pub others: Option<Arc<ClaimFeed>>,
}

impl Claims for LiveClaims {
    fn others(&self, provider: ProviderType, id: &str, me: &str) -> Vec<Claimant> {
        let recent = self.recent.lock();
        let fresh = |uid: &str| recent.by_uid.get(uid).is_some_and(|(at, _)| at.elapsed() < RECENT_FOR);
        // What the watches say (this replica's cache, and the other replicas' subscriptions, live), except
        // of subscriptions whose claim this process recorded lately: that record is newer.
        let mut others: Vec<Claimant> = self
            .index
            .others(provider, id, me)
            .into_iter()
            .chain(self.others.iter().flat_map(|feed| feed.others(provider, id, me)))
            .filter(|c| !fresh(&c.uid))
            .collect();
        others.extend(
            recent
                .by_key
                .get(&(provider, id.to_string()))
                .into_iter()
                .flatten()
                .filter(|c| c.uid != me && fresh(&c.uid))
                .cloned(),
        );
        others
    }
}

/// A claim: provider type, remote id, claimant.
pub type Claim = (ProviderType, String, Claimant);

/// The claims of the subscriptions this replica does not reconcile (other shards'; see
/// [`super::shard::Shard::others_selector`]), followed from their watches as claims only, not objects,
/// and looked up live: another replica's claim counts from the moment its watch event arrives (an
/// index rebuilt from time to time would let a copy slip through in between). One slot per watch (one
/// per namespace of a namespaced install), each replaced whole by its relist.
#[derive(Debug)]
pub struct ClaimFeed {
    inner: Mutex<Feed>,
    /// Whether every slot has been listed once: a pass checks claims only after.
    listed: tokio::sync::watch::Sender<bool>,
}

#[derive(Debug, Default)]
struct Feed {
    slots: Vec<Slot>,
    /// The claimants of each id, over every slot.
    by_key: HashMap<ClaimKey, Vec<Claimant>>,
}

#[derive(Debug, Default)]
struct Slot {
    listed: bool,
    /// The listing under way.
    relisting: Option<HashMap<String, Claim>>,
    /// By uid.
    claims: HashMap<String, Claim>,
}

impl Feed {
    fn unindex(&mut self, (provider, id, claimant): &Claim) {
        let key = (*provider, id.clone());
        if let Some(claimants) = self.by_key.get_mut(&key) {
            claimants.retain(|c| c.uid != claimant.uid);
            if claimants.is_empty() {
                self.by_key.remove(&key);
            }
        }
    }

    fn index(&mut self, (provider, id, claimant): &Claim) {
        self.by_key
            .entry((*provider, id.clone()))
            .or_default()
            .push(claimant.clone());
    }

    /// Sets (or, with `None`, removes) the claim of subscription `uid` in `slot`.
    fn set(&mut self, slot: usize, uid: String, claim: Option<Claim>) {
        let old = match &claim {
            Some(claim) => self.slots[slot].claims.insert(uid, claim.clone()),
            None => self.slots[slot].claims.remove(&uid),
        };
        if let Some(old) = old {
            self.unindex(&old);
        }
        if let Some(claim) = &claim {
            self.index(claim);
        }
    }
}

impl ClaimFeed {
    /// A feed of `slots` watches.
    pub fn new(slots: usize) -> Self {
        ClaimFeed {
            inner: Mutex::new(Feed {
                slots: (0..slots).map(|_| Slot::default()).collect(),
                by_key: HashMap::new(),
            }),
            listed: tokio::sync::watch::Sender::new(slots == 0),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Feed> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Follows one event of watch `slot`.
    pub fn observe(&self, slot: usize, event: &kube::runtime::watcher::Event<WebhookSubscription>) {
        use kube::runtime::watcher::Event;
        let mut feed = self.lock();
        if slot >= feed.slots.len() {
            return;
        }
        let uid = |sub: &WebhookSubscription| sub.uid().unwrap_or_default();
        match event {
            Event::Init => feed.slots[slot].relisting = Some(HashMap::new()),
            Event::InitApply(sub) => {
                if let Some(claim) = claim_of(sub) {
                    feed.slots[slot]
                        .relisting
                        .get_or_insert_default()
                        .insert(uid(sub), claim);
                }
            }
            Event::InitDone => {
                let listed = feed.slots[slot].relisting.take().unwrap_or_default();
                let old = std::mem::take(&mut feed.slots[slot].claims);
                for claim in old.values() {
                    feed.unindex(claim);
                }
                for claim in listed.values() {
                    feed.index(claim);
                }
                feed.slots[slot].claims = listed;
                feed.slots[slot].listed = true;
            }
            Event::Apply(sub) => feed.set(slot, uid(sub), claim_of(sub)),
            Event::Delete(sub) => feed.set(slot, uid(sub), None),
        }
        if feed.slots.iter().all(|s| s.listed) {
            self.listed.send_if_modified(|listed| !std::mem::replace(listed, true));
        }
    }

    /// Resolves once every watch has been listed.
    pub async fn wait_listed(&self) {
        let _ = self.listed.subscribe().wait_for(|listed| *listed).await;
    }
}

impl Claims for ClaimFeed {
    fn others(&self, provider: ProviderType, id: &str, me: &str) -> Vec<Claimant> {
        claimants_other_than(&self.lock().by_key, provider, id, me)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn sub(
        ns: &str,
        name: &str,
        uid: &str,
        created: &str,
        annotation: Option<&str>,
        status: Option<&str>,
    ) -> WebhookSubscription {
        let mut object = json!({
            "apiVersion": "webhook-operator.dev/v1alpha1", "kind": "WebhookSubscription",
            "metadata": {"name": name, "namespace": ns, "uid": uid, "creationTimestamp": created},
            "spec": {"providerRef": {"name": "p"}, "endpoint": "https://h.example.com/x",
                     "vonage": {"events": ["agent.*"]}},
        });
        if let Some(id) = annotation {
            object["metadata"]["annotations"] = json!({"webhook-operator.dev/external-id": id});
        }
        if let Some(id) = status {
            object["status"] = json!({"subscriptionId": id});
        }
        serde_json::from_value(object).unwrap()
    }

    fn me(s: &WebhookSubscription) -> Claimant {
        claim_of(s).unwrap().2
    }

    #[test]
    fn the_feed_follows_claims_per_watch_and_is_listed_once_every_watch_is() {
        use kube::runtime::watcher::Event;
        let feed = ClaimFeed::new(2);
        let held = |feed: &ClaimFeed| {
            let mut ids: Vec<String> = ["R1", "R2"]
                .iter()
                .flat_map(|id| {
                    feed.others(ProviderType::Vonage, id, "me")
                        .into_iter()
                        .map(move |c| format!("{}:{id}", c.name))
                })
                .collect();
            ids.sort();
            ids
        };
        let a = sub("a", "a", "u-a", "2026-01-01T00:00:00Z", None, Some("R1"));
        let b = sub("b", "b", "u-b", "2026-01-01T00:00:00Z", Some("R2"), None);
        let unclaimed = sub("a", "c", "u-c", "2026-01-01T00:00:00Z", None, None);
        feed.observe(0, &Event::Init);
        feed.observe(0, &Event::InitApply(a.clone()));
        feed.observe(0, &Event::InitApply(unclaimed.clone()));
        feed.observe(0, &Event::InitDone);
        assert!(!*feed.listed.borrow(), "one watch of two listed");
        feed.observe(1, &Event::Init);
        feed.observe(1, &Event::InitApply(b.clone()));
        feed.observe(1, &Event::InitDone);
        assert!(*feed.listed.borrow());
        assert_eq!(held(&feed), ["a:R1", "b:R2"]);
        // The copy's annotation removed: no claim; a relist of watch 0 that no longer lists a.
        let mut b_released = b.clone();
        b_released.metadata.annotations = None;
        feed.observe(1, &Event::Apply(b_released));
        feed.observe(0, &Event::Init);
        feed.observe(0, &Event::InitDone);
        assert!(held(&feed).is_empty());
        feed.observe(1, &Event::Apply(b.clone()));
        feed.observe(1, &Event::Delete(b));
        assert!(held(&feed).is_empty());
    }

    #[test]
    fn the_recorded_owner_holds_against_a_copy_in_any_namespace() {
        let victim = sub(
            "team-a",
            "hooks",
            "u1",
            "2026-01-02T00:00:00Z",
            Some("id-1"),
            Some("id-1"),
        );
        // A copy of `kubectl get -o yaml` made later elsewhere: the annotation only.
        let copy = sub("team-b", "hooks", "u2", "2026-01-03T00:00:00Z", Some("id-1"), None);
        // An old object re-pointed at the victim's id: older, but nothing recorded it.
        let old = sub(
            "team-c",
            "old",
            "u3",
            "2025-01-01T00:00:00Z",
            Some("id-1"),
            Some("id-7"),
        );
        let index = ClaimIndex::build([&victim, &copy, &old]);
        assert_eq!(
            index
                .holder_against(ProviderType::Vonage, "id-1", &me(&copy))
                .map(|c| c.uid),
            Some("u1".to_string())
        );
        assert_eq!(
            index
                .holder_against(ProviderType::Vonage, "id-1", &me(&old))
                .map(|c| c.uid),
            Some("u1".to_string())
        );
        assert_eq!(
            index.holder_against(ProviderType::Vonage, "id-1", &me(&victim)),
            None,
            "the owner keeps it"
        );
        assert_eq!(
            index
                .other(ProviderType::Vonage, "id-1", "u1")
                .map(|c| c.display())
                .as_deref(),
            Some("team-c/old")
        );
        // The same id of another provider type is another subscription.
        assert_eq!(index.holder_against(ProviderType::Avaya, "id-1", &me(&copy)), None);
        assert_eq!(
            index.len(),
            1,
            "a subscription claims the id it acts on (the annotation), not its old one"
        );
    }

    #[test]
    fn between_unrecorded_claims_the_older_wins_then_the_name() {
        let first = sub("a", "x", "u1", "2026-01-01T00:00:00Z", Some("id-2"), None);
        let second = sub("b", "x", "u2", "2026-01-05T00:00:00Z", Some("id-2"), None);
        let twin = sub("a", "y", "u3", "2026-01-01T00:00:00Z", Some("id-2"), None);
        let index = ClaimIndex::build([&first, &second, &twin]);
        assert_eq!(
            index
                .holder_against(ProviderType::Vonage, "id-2", &me(&second))
                .map(|c| c.uid),
            Some("u1".to_string())
        );
        assert_eq!(
            index
                .holder_against(ProviderType::Vonage, "id-2", &me(&twin))
                .map(|c| c.uid),
            Some("u1".to_string())
        );
        assert_eq!(index.holder_against(ProviderType::Vonage, "id-2", &me(&first)), None);
    }

    #[test]
    fn a_claim_recorded_by_this_process_counts_before_the_cache_shows_it() {
        // The cache still shows the original without its id; the copy has only the annotation.
        let original = sub("team-a", "hooks", "u1", "2026-01-02T00:00:00Z", None, None);
        let copy = sub("team-b", "hooks", "u2", "2026-01-03T00:00:00Z", Some("id-1"), None);
        let live = LiveClaims {
            others: None,
            index: Arc::new(ClaimIndex::build([&original, &copy])),
            recent: Arc::default(),
        };
        assert_eq!(live.holder_against(ProviderType::Vonage, "id-1", &me(&copy)), None);
        live.recent
            .record(ProviderType::Vonage, "id-1", claimant(&original, true));
        assert_eq!(
            live.holder_against(ProviderType::Vonage, "id-1", &me(&copy))
                .map(|c| c.uid)
                .as_deref(),
            Some("u1")
        );
        // A later claim of the same subscription replaces its earlier one; a deleted one is forgotten.
        live.recent
            .record(ProviderType::Vonage, "id-9", claimant(&original, true));
        assert_eq!(live.holder_against(ProviderType::Vonage, "id-1", &me(&copy)), None);
        live.recent.forget("u1");
        assert!(live.recent.is_empty());
    }
}
