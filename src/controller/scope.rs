//! Which namespaces a replica watches: the whole cluster (the default), or a list given with
//! `run --namespace NS` (repeatable) for installs whose service account holds Roles in those namespaces
//! only. A namespaced install watches subscriptions, WebhookProviders and Secrets in its namespaces and
//! nothing cluster-scoped: ClusterWebhookProviders and Namespaces are out of its reach.
//!
//! A kube reflector store follows one watch: its `Init … InitDone` replaces the whole store. Several
//! namespaces mean several watches, so [`Scope::watch`] merges them into the events one watch would
//! send: the store is filled once, when every namespace has been listed, and a later relist of one
//! namespace (after a watch error) arrives as `Apply` and `Delete` so the other namespaces' objects stay.
//! kube-runtime offers no such merge, hence this module.

use std::collections::{HashSet, VecDeque};
use std::fmt::Debug;
use std::hash::Hash;

use futures::stream::{self, BoxStream};
use futures::{Stream, StreamExt};
use kube::api::Api;
use kube::runtime::WatchStreamExt;
use kube::runtime::reflector::{ObjectRef, Store};
use kube::runtime::watcher::{self, Event, watcher};
use kube::{Resource, core::NamespaceResourceScope};
use serde::de::DeserializeOwned;

/// The namespaces a replica watches.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum Scope {
    /// Every namespace, and the cluster-scoped kinds (ClusterWebhookProviders, Namespaces).
    #[default]
    Cluster,
    /// These namespaces only (sorted, without repeats, at least one).
    Namespaces(Vec<String>),
}

/// A namespace name as Kubernetes allows it (an RFC 1123 label).
fn is_namespace_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 63
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        && !name.starts_with('-')
        && !name.ends_with('-')
}

impl Scope {
    /// From `--namespace` values: none is the whole cluster.
    pub fn parse(names: &[String]) -> Result<Scope, String> {
        if names.is_empty() {
            return Ok(Scope::Cluster);
        }
        if let Some(bad) = names.iter().find(|n| !is_namespace_name(n)) {
            return Err(format!(
                "--namespace \"{bad}\" is not a namespace name: lower-case letters, digits and '-', at most 63 characters, \
                 starting and ending with a letter or digit"
            ));
        }
        let mut names = names.to_vec();
        names.sort();
        names.dedup();
        Ok(Scope::Namespaces(names))
    }

    /// Whether the cluster-scoped kinds are watched.
    pub fn is_cluster(&self) -> bool {
        matches!(self, Scope::Cluster)
    }

    /// Whether objects in `namespace` are watched.
    pub fn includes(&self, namespace: &str) -> bool {
        match self {
            Scope::Cluster => true,
            Scope::Namespaces(names) => names.iter().any(|n| n == namespace),
        }
    }

    /// For messages: "every namespace" or "namespaces a, b".
    pub fn describe(&self) -> String {
        match self {
            Scope::Cluster => "every namespace".to_string(),
            Scope::Namespaces(names) if names.len() == 1 => format!("namespace {}", names[0]),
            Scope::Namespaces(names) => format!("namespaces {}", names.join(", ")),
        }
    }

    /// The watch of a namespaced kind over this scope, with kube's default backoff on errors, as one
    /// stream of the events a single watch sends. `store` is the store these events are reflected
    /// into: a namespace's relist that no longer lists an object deletes the copy the store holds.
    pub fn watch<K>(
        &self,
        client: &kube::Client,
        config: &watcher::Config,
        store: Store<K>,
    ) -> BoxStream<'static, watcher::Result<Event<K>>>
    where
        K: Resource<Scope = NamespaceResourceScope> + Clone + DeserializeOwned + Debug + Send + Sync + 'static,
        K::DynamicType: Default + Eq + Hash + Clone + Send + Sync,
    {
        let mut watches = self.watches(client, config);
        match watches.pop() {
            Some(only) if watches.is_empty() => only,
            last => {
                watches.extend(last);
                merge(watches, store).boxed()
            }
        }
    }

    /// One watch per namespace of this scope (one for the whole cluster), each with kube's default
    /// backoff.
    pub fn watches<K>(
        &self,
        client: &kube::Client,
        config: &watcher::Config,
    ) -> Vec<BoxStream<'static, watcher::Result<Event<K>>>>
    where
        K: Resource<Scope = NamespaceResourceScope> + Clone + DeserializeOwned + Debug + Send + 'static,
        K::DynamicType: Default,
    {
        let apis: Vec<Api<K>> = match self {
            Scope::Cluster => vec![Api::all(client.clone())],
            Scope::Namespaces(names) => names.iter().map(|ns| Api::namespaced(client.clone(), ns)).collect(),
        };
        apis.into_iter()
            .map(|api| watcher(api, config.clone()).default_backoff().boxed())
            .collect()
    }

    /// The objects of a namespaced kind that change in this scope, for a controller's trigger (no store).
    pub fn touched<K>(&self, client: &kube::Client, config: &watcher::Config) -> BoxStream<'static, watcher::Result<K>>
    where
        K: Resource<Scope = NamespaceResourceScope> + Clone + DeserializeOwned + Debug + Send + 'static,
        K::DynamicType: Default,
    {
        stream::select_all(
            self.watches::<K>(client, config)
                .into_iter()
                .map(|watch| watch.touched_objects().boxed()),
        )
        .boxed()
    }
}

/// What the merge emits: an event as one watch sends it, the deletion of an object the store holds
/// (looked up when emitted: the merge keeps keys, not objects), or a watch error.
enum Out<K: Resource> {
    Event(Event<K>),
    Forget(ObjectRef<K>),
    Error(watcher::Error),
}

/// One namespace's watch as the merge follows it.
struct Followed<K: Resource> {
    /// Its first listing has completed.
    listed: bool,
    /// The keys of the listing under way.
    listing: Option<HashSet<ObjectRef<K>>>,
    /// The keys of this namespace the merged stream has delivered and not deleted.
    known: HashSet<ObjectRef<K>>,
}

/// The merge's decisions, apart from the streams: fed each namespace's events, it queues what the
/// merged stream emits.
struct Merge<K: Resource> {
    namespaces: Vec<Followed<K>>,
    /// Every namespace has been listed once, and `InitDone` emitted.
    synced: bool,
    /// Until then, what namespaces already listed send (emitted after `InitDone`: before it, the store
    /// would lose them when the listing buffer replaces it).
    held: Vec<Out<K>>,
    out: VecDeque<Out<K>>,
}

impl<K> Merge<K>
where
    K: Resource,
    K::DynamicType: Default + Eq + Hash + Clone,
{
    fn new(namespaces: usize) -> Self {
        Merge {
            namespaces: (0..namespaces)
                .map(|_| Followed {
                    listed: false,
                    listing: None,
                    known: HashSet::new(),
                })
                .collect(),
            synced: false,
            held: Vec::new(),
            out: VecDeque::from([Out::Event(Event::Init)]),
        }
    }

    fn on(&mut self, namespace: usize, event: watcher::Result<Event<K>>) {
        let followed = &mut self.namespaces[namespace];
        let first_listing = !followed.listed;
        let mut emitted = Vec::new();
        match event {
            Err(e) => emitted.push(Out::Error(e)),
            Ok(Event::Init) => followed.listing = Some(HashSet::new()),
            Ok(Event::InitApply(obj)) => {
                let key = ObjectRef::from_obj(&obj);
                followed.listing.get_or_insert_default().insert(key.clone());
                followed.known.insert(key);
                emitted.push(Out::Event(if first_listing {
                    Event::InitApply(obj)
                } else {
                    Event::Apply(obj)
                }));
            }
            Ok(Event::InitDone) => {
                let listed = followed.listing.take().unwrap_or_default();
                emitted.extend(followed.known.difference(&listed).cloned().map(Out::Forget));
                followed.known = listed;
                followed.listed = true;
            }
            Ok(Event::Apply(obj)) => {
                followed.known.insert(ObjectRef::from_obj(&obj));
                emitted.push(Out::Event(Event::Apply(obj)));
            }
            Ok(Event::Delete(obj)) => {
                followed.known.remove(&ObjectRef::from_obj(&obj));
                emitted.push(Out::Event(Event::Delete(obj)));
            }
        }
        if self.synced {
            self.out.extend(emitted);
            return;
        }
        for out in emitted {
            match out {
                // A first listing fills the listing buffer; errors are reported at once.
                Out::Event(Event::InitApply(_)) | Out::Error(_) => self.out.push_back(out),
                other => self.held.push(other),
            }
        }
        if self.namespaces.iter().all(|n| n.listed) {
            self.synced = true;
            self.out.push_back(Out::Event(Event::InitDone));
            self.out.extend(self.held.drain(..));
        }
    }
}

/// Merges the namespaces' watches (see the module's comment).
fn merge<K>(
    watches: Vec<BoxStream<'static, watcher::Result<Event<K>>>>,
    store: Store<K>,
) -> impl Stream<Item = watcher::Result<Event<K>>> + Send
where
    K: Resource + Clone + Send + Sync + 'static,
    K::DynamicType: Default + Eq + Hash + Clone + Send + Sync,
{
    let merge = Merge::new(watches.len());
    let events = stream::select_all(
        watches
            .into_iter()
            .enumerate()
            .map(|(i, watch)| watch.map(move |event| (i, event))),
    );
    stream::unfold((events, merge, store), |(mut events, mut merge, store)| async move {
        loop {
            match merge.out.pop_front() {
                Some(Out::Event(event)) => return Some((Ok(event), (events, merge, store))),
                Some(Out::Error(e)) => return Some((Err(e), (events, merge, store))),
                // Everything emitted before has been reflected by now: the store holds the object.
                Some(Out::Forget(key)) => {
                    if let Some(obj) = store.get(&key) {
                        return Some((Ok(Event::Delete((*obj).clone())), (events, merge, store)));
                    }
                }
                None => {
                    let (namespace, event) = events.next().await?;
                    merge.on(namespace, event);
                }
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::ConfigMap;
    use kube::runtime::reflector;

    fn cm(ns: &str, name: &str, value: &str) -> ConfigMap {
        let mut cm = ConfigMap::default();
        cm.metadata.namespace = Some(ns.into());
        cm.metadata.name = Some(name.into());
        cm.data = Some([("v".to_string(), value.to_string())].into());
        cm
    }

    /// Feeds `events` (namespace index, event) through the merge into a real store, as the merged
    /// stream does, and returns the store and the events emitted.
    fn run(namespaces: usize, events: Vec<(usize, Event<ConfigMap>)>) -> (Store<ConfigMap>, Vec<String>) {
        let (store, mut writer) = reflector::store();
        let mut merge = Merge::new(namespaces);
        let mut emitted = Vec::new();
        let mut drain = |merge: &mut Merge<ConfigMap>, writer: &mut reflector::store::Writer<ConfigMap>| {
            while let Some(out) = merge.out.pop_front() {
                let event = match out {
                    Out::Event(e) => e,
                    Out::Forget(key) => match store.get(&key) {
                        Some(obj) => Event::Delete((*obj).clone()),
                        None => continue,
                    },
                    Out::Error(_) => unreachable!(),
                };
                emitted.push(describe(&event));
                writer.apply_watcher_event(&event);
            }
        };
        drain(&mut merge, &mut writer);
        for (ns, event) in events {
            merge.on(ns, Ok(event));
            drain(&mut merge, &mut writer);
        }
        (store, emitted)
    }

    fn describe(event: &Event<ConfigMap>) -> String {
        let name = |o: &ConfigMap| {
            format!(
                "{}/{}",
                o.metadata.namespace.as_deref().unwrap(),
                o.metadata.name.as_deref().unwrap()
            )
        };
        match event {
            Event::Init => "Init".into(),
            Event::InitDone => "InitDone".into(),
            Event::InitApply(o) => format!("InitApply {}", name(o)),
            Event::Apply(o) => format!("Apply {}", name(o)),
            Event::Delete(o) => format!("Delete {}", name(o)),
        }
    }

    fn held(store: &Store<ConfigMap>) -> Vec<String> {
        let mut names: Vec<String> = store
            .state()
            .iter()
            .map(|o| {
                format!(
                    "{}/{}={}",
                    o.metadata.namespace.as_deref().unwrap(),
                    o.metadata.name.as_deref().unwrap(),
                    o.data.as_ref().unwrap()["v"]
                )
            })
            .collect();
        names.sort();
        names
    }

    /// Namespace a listed with x, then x changed; namespace b listed with y.
    fn both_listed() -> Vec<(usize, Event<ConfigMap>)> {
        vec![
            (0, Event::Init),
            (0, Event::InitApply(cm("a", "x", "1"))),
            (0, Event::InitDone),
            (0, Event::Apply(cm("a", "x", "2"))),
            (1, Event::Init),
            (1, Event::InitApply(cm("b", "y", "1"))),
            (1, Event::InitDone),
        ]
    }

    #[test]
    fn the_store_is_ready_once_every_namespace_is_listed_and_holds_them_all() {
        let mut events = both_listed();
        let last = events.pop();
        // Namespace a already listed: its change waits for the store to be filled.
        let (store, emitted) = run(2, events.clone());
        assert_eq!(emitted, ["Init", "InitApply a/x", "InitApply b/y"]);
        assert!(store.state().is_empty(), "not filled before every namespace is listed");
        events.extend(last);
        let (store, emitted) = run(2, events);
        assert_eq!(
            emitted,
            ["Init", "InitApply a/x", "InitApply b/y", "InitDone", "Apply a/x"]
        );
        assert_eq!(held(&store), ["a/x=2", "b/y=1"]);
    }

    #[test]
    fn a_relist_of_one_namespace_keeps_the_others_and_drops_what_it_no_longer_lists() {
        let mut events = both_listed();
        events.insert(2, (0, Event::InitApply(cm("a", "gone", "1"))));
        events.extend([
            // Namespace a's watch failed and lists again: gone was deleted meanwhile, x changed.
            (0, Event::Init),
            (0, Event::InitApply(cm("a", "x", "3"))),
            (0, Event::InitDone),
            (1, Event::Delete(cm("b", "y", "1"))),
            (1, Event::Apply(cm("b", "z", "1"))),
        ]);
        let (store, emitted) = run(2, events);
        assert_eq!(emitted[6..], ["Apply a/x", "Delete a/gone", "Delete b/y", "Apply b/z"]);
        assert_eq!(held(&store), ["a/x=3", "b/z=1"]);
    }

    #[test]
    fn a_first_listing_cut_short_and_started_again_leaves_nothing_stale() {
        let (store, _) = run(
            2,
            vec![
                (0, Event::Init),
                (0, Event::InitApply(cm("a", "stale", "1"))),
                (0, Event::Init),
                (0, Event::InitApply(cm("a", "x", "1"))),
                (0, Event::InitDone),
                (0, Event::Init),
                (0, Event::InitApply(cm("a", "x", "2"))),
                (0, Event::InitApply(cm("a", "new", "1"))),
                (0, Event::InitDone),
                (1, Event::Init),
                (1, Event::InitDone),
            ],
        );
        assert_eq!(held(&store), ["a/new=1", "a/x=2"]);
    }

    #[test]
    fn namespace_lists_are_checked_sorted_and_described() {
        assert_eq!(Scope::parse(&[]), Ok(Scope::Cluster));
        let scope = Scope::parse(&["team-b".into(), "team-a".into(), "team-b".into()]).unwrap();
        assert_eq!(scope, Scope::Namespaces(vec!["team-a".into(), "team-b".into()]));
        assert_eq!(scope.describe(), "namespaces team-a, team-b");
        assert!(scope.includes("team-a") && !scope.includes("team-c") && !scope.is_cluster());
        for bad in ["", "Team-A", "team_a", "-a", "a-", &"a".repeat(64)] {
            let error = Scope::parse(&[bad.to_string()]).unwrap_err();
            assert!(error.contains("--namespace") && error.contains("lower-case"), "{error}");
        }
    }
}
