//! Wiring: the three controllers, what wakes a subscription (its provider, the provider's credentials
//! Secret, the Secrets it references), readiness, the periodic pruning of per-object state, and shutdown.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::core::v1::Secret;
use kube::ResourceExt;
use kube::api::Api;
use kube::runtime::controller::Controller;
use kube::runtime::reflector::{ObjectRef, Store};
use kube::runtime::watcher;

use super::bindings;
use super::context::{Config, Context};
use super::observe::uid_of;
use super::provider_status;
use crate::api::{ClusterWebhookProvider, ProviderKind, WebhookProvider, WebhookSubscription};

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

/// Runs the controllers on `ctx` until `shutdown` resolves.
pub async fn run_with(ctx: Arc<Context>, shutdown: impl std::future::Future<Output = ()> + Send + Sync + 'static) {
    let client = ctx.client.clone();
    let wc = watcher::Config::default();
    let controller = Controller::new(Api::<WebhookSubscription>::all(client.clone()), wc.clone());
    let store = controller.store();
    ctx.watch_subscriptions(store.clone());
    let provider_controller = Controller::new(Api::<WebhookProvider>::all(client.clone()), wc.clone());
    let cluster_provider_controller = Controller::new(Api::<ClusterWebhookProvider>::all(client.clone()), wc.clone());
    let (provider_store, cluster_provider_store) = (provider_controller.store(), cluster_provider_controller.store());
    let (by_provider, by_cluster_provider, by_secret) = (store.clone(), store.clone(), store.clone());
    let operator_namespace = ctx.config.operator_namespace.clone();
    tokio::spawn(signal_ready(store.clone()));
    let watchdog = tokio::spawn(expect_progress(
        provider_controller.store(),
        cluster_provider_controller.store(),
        ctx.config.provider_check_interval,
    ));
    let prune = tokio::spawn(prune_states(ctx.clone(), store));
    let (recheck_provider, provider_rechecks) = futures::channel::mpsc::unbounded();
    let (recheck_cluster_provider, cluster_provider_rechecks) = futures::channel::mpsc::unbounded();
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let stopped = |mut rx: tokio::sync::watch::Receiver<bool>| async move {
        let _ = rx.wait_for(|s| *s).await;
    };
    let subscriptions = controller
        .watches(
            Api::<WebhookProvider>::all(client.clone()),
            wc.clone(),
            move |p: WebhookProvider| {
                let ns = p.namespace().unwrap_or_default();
                by_provider
                    .state()
                    .into_iter()
                    .filter(|s| {
                        s.namespace().as_deref() == Some(&ns)
                            && s.spec.provider_ref.kind == ProviderKind::WebhookProvider
                            && s.spec.provider_ref.name == p.name_any()
                    })
                    .map(|s| ObjectRef::from_obj(&*s))
                    .collect::<Vec<_>>()
            },
        )
        .watches(
            Api::<ClusterWebhookProvider>::all(client.clone()),
            wc.clone(),
            move |p: ClusterWebhookProvider| {
                by_cluster_provider
                    .state()
                    .into_iter()
                    .filter(|s| {
                        s.spec.provider_ref.kind == ProviderKind::ClusterWebhookProvider
                            && s.spec.provider_ref.name == p.name_any()
                    })
                    .map(|s| ObjectRef::from_obj(&*s))
                    .collect::<Vec<_>>()
            },
        )
        .watches(Api::<Secret>::all(client.clone()), wc.clone(), move |secret: Secret| {
            let ns = secret.namespace().unwrap_or_default();
            let name = secret.name_any();
            // The providers whose credentials these are are checked again at once (one Secret watch serves
            // both: a second would double what the operator holds of every Secret).
            for p in provider_store
                .state()
                .iter()
                .filter(|p| p.namespace().as_deref() == Some(&ns) && p.spec.credentials_secret_ref.name == name)
            {
                let _ = recheck_provider.unbounded_send(ObjectRef::from_obj(&**p));
            }
            if ns == operator_namespace {
                for p in cluster_provider_store
                    .state()
                    .iter()
                    .filter(|p| p.spec.credentials_secret_ref.name == name)
                {
                    let _ = recheck_cluster_provider.unbounded_send(ObjectRef::from_obj(&**p));
                }
            }
            by_secret
                .state()
                .into_iter()
                .filter(|s| {
                    let provider = &s.spec.provider_ref.name;
                    let credentials = match s.spec.provider_ref.kind {
                        ProviderKind::WebhookProvider if s.namespace().as_deref() == Some(&ns) => provider_store
                            .get(&ObjectRef::new(provider).within(&ns))
                            .map(|p| p.spec.credentials_secret_ref.name.clone()),
                        ProviderKind::ClusterWebhookProvider if ns == operator_namespace => cluster_provider_store
                            .get(&ObjectRef::new(provider))
                            .map(|p| p.spec.credentials_secret_ref.name.clone()),
                        ProviderKind::WebhookProvider | ProviderKind::ClusterWebhookProvider => None,
                    };
                    uses_secret(s, &ns, &name, credentials.as_deref())
                })
                .map(|s| ObjectRef::from_obj(&*s))
                .collect::<Vec<_>>()
        })
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
    let cluster_providers = cluster_provider_controller
        .reconcile_on(cluster_provider_rechecks)
        .graceful_shutdown_on(stopped(stop_rx))
        .run(
            provider_status::reconcile_cluster_provider,
            provider_status::error_policy,
            ctx,
        )
        .for_each(|_| async {});
    tokio::spawn(async move {
        shutdown.await;
        let _ = stop_tx.send(true);
    });
    futures::join!(subscriptions, providers, cluster_providers);
    prune.abort();
    watchdog.abort();
    crate::telemetry::health().expect_progress_within(None);
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

/// Drops the state of subscriptions that no longer exist, in case one went without a cleanup pass.
async fn prune_states(ctx: Arc<Context>, store: Store<WebhookSubscription>) {
    let mut tick = tokio::time::interval(PRUNE_INTERVAL);
    tick.tick().await;
    loop {
        tick.tick().await;
        let live: HashSet<String> = store.state().iter().map(|s| uid_of(&**s)).collect();
        ctx.objects.retain_live(&live);
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
