//! Wiring: the three controllers, what wakes a subscription (its provider, the provider's credentials
//! Secret, the Secrets it references), readiness, the periodic pruning of per-object state, and shutdown.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use futures::{StreamExt, TryStreamExt, stream};
use k8s_openapi::api::core::v1::{Namespace, Secret};
use kube::ResourceExt;
use kube::api::{Api, PartialObjectMeta};
use kube::runtime::controller::Controller;
use kube::runtime::reflector::{self, ObjectRef, Store};
use kube::runtime::watcher::{self, watcher};
use kube::runtime::{PredicateConfig, WatchStreamExt};

use super::bindings;
use super::cache::{Caches, ProviderKey};
use super::claims::ClaimFeed;
use super::context::{Config, Context};
use super::observe::uid_of;
use super::provider_status;
use crate::api::{ClusterWebhookProvider, WebhookProvider, WebhookSubscription};

/// How long passes in flight may take to finish after a shutdown signal (the kubelet's default grace
/// period is 30 s; the operator stops well within 5).
const SHUTDOWN_GRACE: Duration = Duration::from_secs(3);

/// How often per-object state is pruned to the objects that still exist.
const PRUNE_INTERVAL: Duration = Duration::from_secs(300);

/// Whether a change of the Secret `secret_ns/secret_name` concerns `sub`: one it references itself, or
/// the credentials of its provider (`credentials`: the credentials Secret's name of the provider it uses,
/// when that provider is known and its Secrets live in `secret_ns`).
pub fn uses_secret(sub: &WebhookSubscription, secret_ns: &str, secret_name: &str, credentials: Option<&str>) -> bool {
    credentials == Some(secret_name)
        || (sub.namespace().as_deref() == Some(secret_ns)
            && bindings::referenced_secrets(sub).iter().any(|n| n == secret_name))
}

/// Runs the controllers until `shutdown` resolves.
pub async fn run(
    client: kube::Client,
    config: Config,
    shutdown: impl std::future::Future<Output = ()> + Send + Sync + 'static,
) {
    run_with(Context::new(client, config), shutdown).await;
}

/// Whether a change of a subscription can change what a pass does: its spec (generation), annotations,
/// labels, finalizers or deletion. A status write (the operator's own, after every pass that changed
/// something) is not, so it does not wake the subscription a second time.
fn meaningful_change(sub: &WebhookSubscription) -> Option<u64> {
    use std::hash::{Hash, Hasher};
    let meta = &sub.metadata;
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    (
        meta.generation,
        &meta.annotations,
        &meta.labels,
        &meta.finalizers,
        meta.deletion_timestamp.as_ref().map(|t| t.0),
    )
        .hash(&mut hasher);
    Some(hasher.finish())
}

/// Drops what no pass needs from a watched object's metadata before it is cached (a Secret's
/// `last-applied-configuration` annotation would even hold its values).
fn slim<K: kube::Resource>(object: &mut K) {
    object.meta_mut().annotations = None;
    object.meta_mut().managed_fields = None;
}

/// Runs the controllers on `ctx` until `shutdown` resolves.
pub async fn run_with(ctx: Arc<Context>, shutdown: impl std::future::Future<Output = ()> + Send + Sync + 'static) {
    let client = ctx.client.clone();
    let wc = watcher::Config::default();
    // Subscriptions: the index of what each uses is kept from the same watch as the cache.
    let (store, writer) = reflector::store();
    let index = ctx.index.clone();
    let seen = ctx.clone();
    // Only this replica's shard: a subscription relabelled into another shard leaves this watch (and
    // this replica's cache) and joins the other's.
    let shard_wc = wc.clone().labels(&ctx.config.shard.label_selector());
    let scope = ctx.config.scope.clone();
    let subscription_events = scope
        .watch::<WebhookSubscription>(&client, &shard_wc, store.clone())
        // /readyz tells the truth over time: not ready while this watch fails, ready when it delivers.
        .inspect(|result| {
            let failure = result.as_ref().err().map(ToString::to_string);
            crate::telemetry::health().watch_result(failure.as_deref());
        })
        // managedFields and kubectl's copy of the last applied object are most of a stored object, and
        // no pass reads them.
        .modify(|sub: &mut WebhookSubscription| {
            sub.metadata.managed_fields = None;
            if let Some(annotations) = &mut sub.metadata.annotations {
                annotations.remove("kubectl.kubernetes.io/last-applied-configuration");
            }
        })
        .map_ok(move |event| {
            index.observe(&event);
            event
        })
        .reflect(writer)
        // After the cache holds it: a pass that finds the kept status gone reads this object or a newer one.
        .map_ok(move |event| {
            if let watcher::Event::Apply(sub) | watcher::Event::InitApply(sub) = &event
                && let Some(uid) = &sub.metadata.uid
            {
                seen.objects.seen(uid, sub.status.as_ref());
            }
            event
        })
        .applied_objects()
        .predicate_filter(meaningful_change, PredicateConfig::default());
    let controller = Controller::for_stream(subscription_events, store.clone())
        .with_config(kube::runtime::controller::Config::default().concurrency(ctx.config.reconcile_concurrency));
    ctx.watch_subscriptions(store.clone());
    // The claims of every subscription this replica does not reconcile (other shards'): only the claims
    // are kept, and passes check claims once these are listed too.
    let others = scope.watches::<WebhookSubscription>(&client, &wc.clone().labels(&ctx.config.shard.others_selector()));
    let other_claims = Arc::new(ClaimFeed::new(others.len()));
    ctx.follow_other_claims(other_claims.clone());
    let follow_claims = tokio::spawn({
        let feed = other_claims.clone();
        stream::select_all(
            others
                .into_iter()
                .enumerate()
                .map(|(slot, watch)| watch.map(move |event| (slot, event))),
        )
        .for_each(move |(slot, event)| {
            if let Ok(event) = event {
                feed.observe(slot, &event);
            }
            futures::future::ready(())
        })
    });
    let (provider_store, provider_writer) = reflector::store();
    let provider_controller = Controller::for_stream(
        scope
            .watch::<WebhookProvider>(&client, &wc, provider_store.clone())
            .reflect(provider_writer)
            .applied_objects(),
        provider_store.clone(),
    );
    // A namespaced install reads nothing cluster-scoped: its stores of ClusterWebhookProviders and
    // Namespaces are empty, and complete.
    let cluster_provider_controller = scope
        .is_cluster()
        .then(|| Controller::new(Api::<ClusterWebhookProvider>::all(client.clone()), wc.clone()));
    let cluster_provider_store = match &cluster_provider_controller {
        Some(controller) => controller.store(),
        None => empty_store(),
    };
    // Namespaces (labels only) and Secrets (metadata only: values are read when a pass needs them).
    let (wake_in_namespace, namespace_wakes) = futures::channel::mpsc::unbounded();
    let (namespace_store, namespaces) = if scope.is_cluster() {
        let (store, writer) = reflector::store();
        let follow = follow_namespace_labels(client.clone(), wc.clone(), writer, ctx.clone(), wake_in_namespace);
        (store, Some(tokio::spawn(follow)))
    } else {
        (empty_store(), None)
    };
    let (secret_store, secret_writer) = reflector::store();
    let caches = Arc::new(Caches::new(
        provider_store.clone(),
        cluster_provider_store.clone(),
        namespace_store,
        secret_store.clone(),
    ));
    ctx.use_caches(caches.clone());
    let sync = tokio::spawn({
        let caches = caches.clone();
        async move {
            other_claims.wait_listed().await;
            caches.sync().await
        }
    });
    let operator_namespace = ctx.config.operator_namespace.clone();
    tokio::spawn(signal_ready(store.clone()));
    let watchdog = tokio::spawn(expect_progress(
        provider_store.clone(),
        cluster_provider_store.clone(),
        ctx.config.provider_check_interval,
    ));
    let prune = tokio::spawn(prune_states(
        ctx.clone(),
        store,
        provider_store.clone(),
        cluster_provider_store.clone(),
    ));
    let (recheck_provider, provider_rechecks) = futures::channel::mpsc::unbounded();
    let (recheck_cluster_provider, cluster_provider_rechecks) = futures::channel::mpsc::unbounded();
    let forget = caches.clone();
    // Like the Namespace watch, its own task (passes wait for its cache; a controller trigger stream is
    // not polled while every reconcile slot is busy): a Secret's change rechecks the providers whose
    // credentials it holds and wakes the subscriptions that use it or them.
    let (wake_for_secret, secret_wakes) = futures::channel::mpsc::unbounded();
    let by_secret = ctx.index.clone();
    let secrets = scope
        .watch::<PartialObjectMeta<Secret>>(&client, &wc, secret_store.clone())
        .modify(slim)
        .map_ok(move |event| {
            if let watcher::Event::Delete(secret) = &event {
                forget.forget_secret(&secret.namespace().unwrap_or_default(), &secret.name_any());
            }
            event
        })
        .reflect(secret_writer)
        .touched_objects()
        .for_each(move |secret| {
            if let Ok(secret) = secret {
                let ns = secret.namespace().unwrap_or_default();
                let name = secret.name_any();
                // The providers whose credentials these are are checked again at once, and their
                // subscriptions woken (one Secret watch serves both).
                let mut subscriptions = by_secret.using_secret(&ns, &name);
                for p in provider_store
                    .state()
                    .iter()
                    .filter(|p| p.namespace().as_deref() == Some(&ns) && p.spec.credentials_secret_ref.name == name)
                {
                    let _ = recheck_provider.unbounded_send(ObjectRef::from_obj(&**p));
                    subscriptions.extend(by_secret.using_provider(&ProviderKey::Namespaced(ns.clone(), p.name_any())));
                }
                if ns == operator_namespace {
                    for p in cluster_provider_store
                        .state()
                        .iter()
                        .filter(|p| p.spec.credentials_secret_ref.name == name)
                    {
                        let _ = recheck_cluster_provider.unbounded_send(ObjectRef::from_obj(&**p));
                        subscriptions.extend(by_secret.using_provider(&ProviderKey::Cluster(p.name_any())));
                    }
                }
                for sub in subscriptions {
                    let _ = wake_for_secret.unbounded_send(sub);
                }
            }
            futures::future::ready(())
        });
    let secrets = tokio::spawn(secrets);
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let stop_rx_for_grace = stop_rx.clone();
    let stopped = |mut rx: tokio::sync::watch::Receiver<bool>| async move {
        let _ = rx.wait_for(|s| *s).await;
    };
    let (by_provider, by_cluster_provider) = (ctx.index.clone(), ctx.index.clone());
    // What changes of providers wake: their subscriptions.
    let controller = controller.watches_stream(scope.touched::<WebhookProvider>(&client, &wc), move |p| {
        by_provider.using_provider(&ProviderKey::Namespaced(
            p.namespace().unwrap_or_default(),
            p.name_any(),
        ))
    });
    let controller = if scope.is_cluster() {
        controller.watches(
            Api::<ClusterWebhookProvider>::all(client.clone()),
            wc.clone(),
            move |p: ClusterWebhookProvider| by_cluster_provider.using_provider(&ProviderKey::Cluster(p.name_any())),
        )
    } else {
        controller
    };
    let subscriptions = controller
        .reconcile_on(namespace_wakes)
        .reconcile_on(secret_wakes)
        .graceful_shutdown_on(stopped(stop_rx.clone()))
        .run(super::reconcile, super::error_policy, ctx.clone())
        .for_each(|result| async move {
            if let Err(e) = result {
                tracing::debug!(error = %e, "subscription controller");
            }
        });
    let providers = provider_controller
        .reconcile_on(provider_rechecks)
        .graceful_shutdown_on(stopped(stop_rx.clone()))
        .run(
            provider_status::reconcile_provider,
            provider_status::error_policy,
            ctx.clone(),
        )
        .for_each(|_| async {});
    let cluster_providers = async move {
        if let Some(controller) = cluster_provider_controller {
            controller
                .reconcile_on(cluster_provider_rechecks)
                .graceful_shutdown_on(stopped(stop_rx))
                .run(
                    provider_status::reconcile_cluster_provider,
                    provider_status::error_policy,
                    ctx,
                )
                .for_each(|_| async {})
                .await;
        }
    };
    tokio::spawn(async move {
        shutdown.await;
        let _ = stop_tx.send(true);
    });
    // After the signal, passes in flight get a short grace period, then are dropped: a process must stop
    // within seconds whatever is queued (a pass waiting on a rate limit or a Retry-After could take
    // minutes). A create dropped mid-way is recovered from its create-pending annotation.
    let mut stopping = stop_rx_for_grace;
    let grace = async move {
        let _ = stopping.wait_for(|s| *s).await;
        tokio::time::sleep(SHUTDOWN_GRACE).await;
    };
    tokio::select! {
        _ = async { futures::join!(subscriptions, providers, cluster_providers) } => {}
        () = grace => tracing::warn!(grace = ?SHUTDOWN_GRACE, "passes still in flight at shutdown were dropped"),
    }
    prune.abort();
    if let Some(namespaces) = namespaces {
        namespaces.abort();
    }
    secrets.abort();
    follow_claims.abort();
    sync.abort();
    watchdog.abort();
    crate::telemetry::health().expect_progress_within(None);
}

/// A store that is complete and empty: what a namespaced install holds of cluster-scoped kinds.
fn empty_store<K>() -> Store<K>
where
    K: kube::Resource + Clone + 'static,
    K::DynamicType: Default + Eq + std::hash::Hash + Clone,
{
    let (store, mut writer) = reflector::store();
    writer.apply_watcher_event(&watcher::Event::Init);
    writer.apply_watcher_event(&watcher::Event::InitDone);
    store
}

/// Follows Namespaces' labels into `writer`. A change of a Namespace's labels can admit its
/// subscriptions to a ClusterWebhookProvider or refuse them: those subscriptions are woken (other changes
/// of a Namespace wake nothing). This runs as its own task, not as one of the controller's trigger
/// streams: the controller stops polling those while every reconcile slot is busy, and passes wait for
/// this cache.
async fn follow_namespace_labels(
    client: kube::Client,
    wc: watcher::Config,
    writer: reflector::store::Writer<PartialObjectMeta<Namespace>>,
    ctx: Arc<Context>,
    wake: futures::channel::mpsc::UnboundedSender<ObjectRef<WebhookSubscription>>,
) {
    watcher(Api::<PartialObjectMeta<Namespace>>::all(client), wc)
        .default_backoff()
        .modify(slim)
        .reflect(writer)
        .touched_objects()
        .predicate_filter(
            |ns: &PartialObjectMeta<Namespace>| {
                use std::hash::{Hash, Hasher};
                let mut hasher = std::collections::hash_map::DefaultHasher::new();
                ns.metadata.labels.hash(&mut hasher);
                Some(hasher.finish())
            },
            PredicateConfig::default(),
        )
        .for_each(move |ns| {
            if let Ok(ns) = ns {
                for sub in ctx.index.using_cluster_provider_in(&ns.name_any()) {
                    let _ = wake.unbounded_send(sub);
                }
            }
            futures::future::ready(())
        })
        .await;
}

/// Marks the process ready once the subscription cache has synced.
async fn signal_ready(store: Store<WebhookSubscription>) {
    // kube-runtime's readiness signal wakes only its most recent waiter (the Controller also waits on
    // it), so poll again until the value is memoized.
    loop {
        match tokio::time::timeout(Duration::from_millis(500), store.wait_until_ready()).await {
            Ok(Ok(())) => {
                tracing::info!("subscription cache synced; ready");
                crate::telemetry::health().set_ready();
                return;
            }
            Ok(Err(_)) => return,
            Err(_) => {}
        }
    }
}

/// While any provider exists, its status is checked every `provider_check_interval`, so a controller
/// that completes no reconcile for three of those is stuck: `/healthz` says so and the kubelet restarts
/// it. With no provider there may be nothing to do, and no verdict.
async fn expect_progress(
    providers: Store<WebhookProvider>,
    cluster_providers: Store<ClusterWebhookProvider>,
    provider_check_interval: Duration,
) {
    let window = provider_check_interval.saturating_mul(3).max(Duration::from_secs(60));
    let mut tick = tokio::time::interval(Duration::from_secs(15));
    loop {
        tick.tick().await;
        let has_work = !providers.state().is_empty() || !cluster_providers.state().is_empty();
        crate::telemetry::health().expect_progress_within(has_work.then_some(window));
    }
}

/// Drops the state of subscriptions that no longer exist, in case one went without a cleanup pass, and
/// the clients, inventories and limiters of providers that no longer exist.
async fn prune_states(
    ctx: Arc<Context>,
    store: Store<WebhookSubscription>,
    providers: Store<WebhookProvider>,
    cluster_providers: Store<ClusterWebhookProvider>,
) {
    let mut tick = tokio::time::interval(PRUNE_INTERVAL);
    tick.tick().await;
    loop {
        tick.tick().await;
        let live: HashSet<String> = store.state().iter().map(|s| uid_of(&**s)).collect();
        ctx.objects.retain_live(&live);
        let accounts: HashSet<String> = providers
            .state()
            .iter()
            .map(|p| super::observe::provider_key(p))
            .chain(
                cluster_providers
                    .state()
                    .iter()
                    .map(|p| super::observe::cluster_provider_key(p)),
            )
            .collect();
        crate::telemetry::retain_providers(&accounts);
        ctx.registry.retain_accounts(&accounts);
    }
}

/// Ctrl-C, or SIGTERM (what Kubernetes sends a pod).
pub async fn shutdown_signal() {
    #[cfg(unix)]
    {
        if let Ok(mut term) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = term.recv() => {}
            }
            return;
        }
    }
    let _ = tokio::signal::ctrl_c().await;
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn sub(ns: &str, spec: serde_json::Value) -> WebhookSubscription {
        serde_json::from_value(json!({
            "apiVersion": "webhook-operator.dev/v1alpha1", "kind": "WebhookSubscription",
            "metadata": {"name": "s", "namespace": ns}, "spec": spec,
        }))
        .unwrap()
    }

    #[test]
    fn a_secret_wakes_the_subscriptions_that_use_it() {
        let s = sub(
            "team-a",
            json!({"providerRef": {"name": "p"}, "endpoint": "https://h.example.com/x",
                   "authvia": {"type": "payments.update", "signingSecret": {"secretKeyRef": {"name": "sign", "key": "k"}},
                               "headers": [{"name": "x-key", "valueFrom": {"secretKeyRef": {"name": "hdr", "key": "k"}}}]}}),
        );
        assert!(uses_secret(&s, "team-a", "sign", None));
        assert!(uses_secret(&s, "team-a", "hdr", None));
        assert!(
            !uses_secret(&s, "team-b", "sign", None),
            "another namespace's Secret of the same name"
        );
        assert!(!uses_secret(&s, "team-a", "other", None));
        assert!(uses_secret(&s, "webhook-operator", "creds", Some("creds")));
    }
}
