//! The environment of the controller tests: the emulated API with the CRDs, the three simulators, the
//! verifying receiver, a WebhookProvider per simulator with its credentials, and the controller.

use std::sync::Arc;
use std::time::{Duration, Instant};

use kube::Client;
use kube::api::{Api, Patch, PatchParams, PostParams};
use serde_json::{Value, json};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use webhook_operator::api::{WebhookSubscription, crds};
use webhook_operator::clock::SystemClock;
use webhook_operator::controller::endpoints::Origin;
use webhook_operator::controller::leader::{Election, LeaderGuard, run_elected};
use webhook_operator::controller::scope::Scope;
use webhook_operator::controller::shard::Shard;
use webhook_operator::controller::{self, Config, Context};
use webhook_operator::sandbox::kube::{Emulator, EmulatorOptions};
use webhook_operator::sandbox::providers::authvia::AuthviaSimulator;
use webhook_operator::sandbox::providers::avaya::AvayaSimulator;
use webhook_operator::sandbox::providers::vonage::VonageSimulator;
use webhook_operator::sandbox::receiver::Receiver;

use super::fixtures::{
    AUTHVIA_ACCOUNT, AUTHVIA_ID, AUTHVIA_KEY, AUTHVIA_SIGNING, AVAYA_ID, AVAYA_SECRET, AVAYA_TOKEN, GROUP, NS,
    VONAGE_ID, VONAGE_SECRET, local,
};
use super::poll::WAIT;

/// Emulator, simulators, receiver, providers and their Secrets, and a running controller.
pub struct Env {
    pub emu: Emulator,
    pub client: Client,
    pub avaya: AvayaSimulator,
    pub vonage: VonageSimulator,
    pub authvia: AuthviaSimulator,
    pub receiver: Receiver,
    /// Running controllers (several for sharding tests).
    controllers: Vec<(oneshot::Sender<()>, JoinHandle<()>)>,
    /// The running controller's context (its per-object state is inspected by tests).
    pub context: Option<Arc<Context>>,
}

impl Env {
    pub async fn start(avaya_lifetime: Duration) -> Env {
        let emu = Emulator::start(EmulatorOptions::default()).await.unwrap();
        let client = emu.client();
        let receiver = Receiver::start(local()).await.unwrap();
        let avaya = AvayaSimulator::start(local(), AVAYA_ID, AVAYA_SECRET, avaya_lifetime)
            .await
            .unwrap();
        let vonage = VonageSimulator::start(local(), VONAGE_ID, VONAGE_SECRET).await.unwrap();
        let authvia = AuthviaSimulator::start(local(), AUTHVIA_ACCOUNT, AUTHVIA_ID, AUTHVIA_KEY)
            .await
            .unwrap();
        for core in [&avaya.core, &vonage.core, &authvia.core] {
            core.deliver_to(Some(receiver.url()));
        }
        let env = Env {
            emu,
            client,
            avaya,
            vonage,
            authvia,
            receiver,
            controllers: Vec::new(),
            context: None,
        };
        for crd in crds() {
            env.put(
                "apiextensions.k8s.io",
                "v1",
                "customresourcedefinitions",
                "",
                serde_json::to_value(crd).unwrap(),
            );
        }
        env.put(
            "",
            "v1",
            "namespaces",
            "",
            json!({"metadata": {"name": "webhook-operator"}}),
        );
        env.secret(
            "webhook-operator",
            "vonage-credentials",
            &[("clientId", VONAGE_ID), ("clientSecret", VONAGE_SECRET)],
        );
        env.tenant(NS);
        env
    }

    /// The simulators' origins, which the tests' providers override their URLs with.
    pub fn simulator_origins(&self) -> Vec<Origin> {
        [self.avaya.base_url(), self.vonage.base_url(), self.authvia.base_url()]
            .iter()
            .map(|u| Origin::parse(&reqwest::Url::parse(u).unwrap().origin().ascii_serialization()).unwrap())
            .collect()
    }

    /// A tenant namespace (created unless it is the default one) with the three providers' credentials and
    /// a WebhookProvider per simulator, all on the same provider accounts.
    pub fn tenant(&self, ns: &str) {
        if ns != NS {
            self.put("", "v1", "namespaces", "", json!({"metadata": {"name": ns}}));
        }
        for (name, id, secret) in [
            ("avaya-credentials", AVAYA_ID, AVAYA_SECRET),
            ("vonage-credentials", VONAGE_ID, VONAGE_SECRET),
            ("authvia-credentials", AUTHVIA_ID, AUTHVIA_KEY),
        ] {
            self.secret(ns, name, &[("clientId", id), ("clientSecret", secret)]);
        }
        let blocks = [
            (
                "avaya",
                json!({"avaya": {"baseUrl": self.avaya.base_url(), "tokenUrl": self.avaya.token_url()}}),
            ),
            (
                "vonage",
                json!({"vonage": {"baseUrl": self.vonage.base_url(), "tokenUrl": self.vonage.token_url()}}),
            ),
            (
                "authvia",
                json!({"authvia": {"accountId": AUTHVIA_ACCOUNT, "baseUrl": self.authvia.base_url()}}),
            ),
        ];
        for (name, mut spec) in blocks {
            spec["credentialsSecretRef"] = json!({"name": format!("{name}-credentials")});
            let provider = json!({
                "apiVersion": "webhook-operator.dev/v1alpha1", "kind": "WebhookProvider",
                "metadata": {"name": name, "namespace": ns}, "spec": spec
            });
            self.put(GROUP, "v1alpha1", "webhookproviders", ns, provider);
        }
    }

    /// A ClusterWebhookProvider on the Vonage simulator's account (credentials in the operator's
    /// namespace), with `extra` (a namespaceSelector, allowedEndpoints...) added to its spec.
    pub fn vonage_cluster_provider(&self, name: &str, extra: Value) {
        let mut spec = json!({
            "vonage": {"baseUrl": self.vonage.base_url(), "tokenUrl": self.vonage.token_url()},
            "credentialsSecretRef": {"name": "vonage-credentials"},
        });
        for (k, v) in extra.as_object().into_iter().flatten() {
            spec[k] = v.clone();
        }
        self.put(
            GROUP,
            "v1alpha1",
            "clusterwebhookproviders",
            "",
            json!({"apiVersion": "webhook-operator.dev/v1alpha1", "kind": "ClusterWebhookProvider",
                   "metadata": {"name": name}, "spec": spec}),
        );
    }

    /// The Secrets the fixtures' subscriptions read: Avaya's delivery token, AuthVia's signing secret and
    /// header value.
    pub fn subscription_secrets(&self) {
        self.secret(NS, "avaya-token", &[("token", AVAYA_TOKEN)]);
        self.secret(
            NS,
            "authvia-hook",
            &[("signingSecret", AUTHVIA_SIGNING), ("apiKey", "api-key-1")],
        );
    }

    /// A subscription in any namespace, straight from the store.
    pub fn get_sub_in(&self, ns: &str, name: &str) -> Option<WebhookSubscription> {
        self.emu
            .get(GROUP, "v1alpha1", "webhooksubscriptions", ns, name)
            .map(|v| serde_json::from_value(v).unwrap())
    }

    /// Writes an object straight into the store (not through HTTP: no fault rule sees it).
    pub fn put(&self, group: &str, version: &str, plural: &str, ns: &str, object: Value) {
        self.emu.with_state(|s| {
            let rt = s.resource(group, version, plural).expect("resource");
            s.put(&rt, ns, object).expect("stored");
        });
    }

    pub fn secret(&self, ns: &str, name: &str, data: &[(&str, &str)]) {
        let data: serde_json::Map<String, Value> = data.iter().map(|(k, v)| (k.to_string(), json!(v))).collect();
        self.put(
            "",
            "v1",
            "secrets",
            ns,
            json!({"metadata": {"name": name, "namespace": ns}, "stringData": data}),
        );
    }

    pub fn start_controller(&mut self) {
        self.start_controller_with(|_| {});
    }

    /// Starts the controller with the tests' settings, changed by `adjust`.
    pub fn start_controller_with(&mut self, adjust: impl FnOnce(&mut Config)) {
        let mut config = Config::new("webhook-operator", Arc::new(SystemClock));
        config.drift_interval = Duration::from_secs(3600);
        config.provider_check_interval = Duration::from_secs(3600);
        config.retry.base_delay = Duration::from_millis(50);
        config.endpoints.allowed_origins = self.simulator_origins();
        adjust(&mut config);
        let (tx, rx) = oneshot::channel::<()>();
        let context = Context::new(self.client.clone(), config);
        self.context = Some(context.clone());
        let task = tokio::spawn(async move {
            controller::run_with(context, async {
                let _ = rx.await;
            })
            .await;
        });
        self.controllers.push((tx, task));
    }

    /// Starts the controller as production runs it: through `client` (one that impersonates the chart's
    /// service account, say) and campaigning for the leader Lease in `lease_namespace`.
    pub fn start_elected_controller(&mut self, client: Client, lease_namespace: &str) {
        self.start_shard(client, lease_namespace, "replica-a", Shard::unsharded());
    }

    /// Starts an elected controller for `shard` (its own Lease), as replica `identity`.
    pub fn start_shard(&mut self, client: Client, lease_namespace: &str, identity: &str, shard: Shard) {
        self.start_replica(client, lease_namespace, identity, shard, Scope::Cluster);
    }

    /// Starts an elected controller that watches `scope` only.
    pub fn start_scoped(&mut self, client: Client, lease_namespace: &str, scope: Scope) {
        self.start_replica(client, lease_namespace, "replica-a", Shard::unsharded(), scope);
    }

    fn start_replica(&mut self, client: Client, lease_namespace: &str, identity: &str, shard: Shard, scope: Scope) {
        let mut config = Config::new("webhook-operator", Arc::new(SystemClock));
        config.drift_interval = Duration::from_secs(3600);
        config.provider_check_interval = Duration::from_secs(3600);
        config.retry.base_delay = Duration::from_millis(50);
        config.endpoints.allowed_origins = self.simulator_origins();
        config.instance = identity.to_string();
        let guard = LeaderGuard::new();
        config.leadership = Some(guard.clone());
        let mut election = Election::new(lease_namespace, &shard.lease_name("webhook-operator"), identity);
        election.lease_duration = Duration::from_secs(4);
        election.renew_deadline = Duration::from_secs(3);
        election.retry_period = Duration::from_millis(200);
        config.shard = shard;
        config.scope = scope;
        let (tx, rx) = oneshot::channel::<()>();
        let context = Context::new(client.clone(), config);
        self.context = Some(context.clone());
        let task = tokio::spawn(async move {
            let _ = run_elected(
                client,
                election,
                Arc::new(SystemClock),
                guard,
                async {
                    let _ = rx.await;
                },
                move |stop| async move {
                    controller::run_with(context, async {
                        let _ = stop.await;
                    })
                    .await
                },
            )
            .await;
        });
        self.controllers.push((tx, task));
    }

    pub async fn stop_controller(&mut self) {
        for (tx, task) in std::mem::take(&mut self.controllers) {
            let _ = tx.send(());
            let _ = tokio::time::timeout(Duration::from_secs(10), task).await;
        }
    }

    /// How many WebhookSubscriptions the store holds, in every namespace.
    pub fn subs_in_store(&self) -> usize {
        self.emu.with_state(|s| {
            s.resource(GROUP, "v1alpha1", "webhooksubscriptions")
                .map_or(0, |rt| s.objects_of(&rt).len())
        })
    }

    pub fn subs(&self) -> Api<WebhookSubscription> {
        Api::namespaced(self.client.clone(), NS)
    }

    pub async fn create_sub(&self, sub: impl Into<WebhookSubscription>) -> WebhookSubscription {
        let sub = sub.into();
        let api: Api<WebhookSubscription> =
            Api::namespaced(self.client.clone(), sub.metadata.namespace.as_deref().unwrap_or(NS));
        api.create(&PostParams::default(), &sub).await.unwrap()
    }

    pub fn get_sub(&self, name: &str) -> Option<WebhookSubscription> {
        self.emu
            .get(GROUP, "v1alpha1", "webhooksubscriptions", NS, name)
            .map(|v| serde_json::from_value(v).unwrap())
    }

    /// Waits until `predicate` holds for the subscription, with a useful failure message.
    pub async fn wait(
        &self,
        name: &str,
        what: &str,
        predicate: impl Fn(&WebhookSubscription) -> bool,
    ) -> WebhookSubscription {
        let deadline = Instant::now() + WAIT;
        loop {
            let sub = self.get_sub(name);
            if let Some(s) = &sub
                && predicate(s)
            {
                return s.clone();
            }
            assert!(
                Instant::now() < deadline,
                "{name}: timed out waiting for {what}; last: {:#?}",
                sub.map(|s| s.status)
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    pub async fn wait_ready(&self, name: &str) -> WebhookSubscription {
        self.wait(name, "Ready=True", |s| {
            condition(s, "Ready").is_some_and(|c| c.0 == "True")
        })
        .await
    }

    pub async fn wait_condition(&self, name: &str, type_: &str, status: &str, reason: &str) -> WebhookSubscription {
        self.wait(name, &format!("{type_}={status} ({reason})"), |s| {
            condition(s, type_).is_some_and(|c| c.0 == status && c.1 == reason)
        })
        .await
    }

    pub async fn annotate(&self, name: &str, key: &str, value: &str) {
        let patch = json!({"metadata": {"annotations": {key: value}}});
        self.subs()
            .patch(name, &PatchParams::default(), &Patch::Merge(&patch))
            .await
            .unwrap();
    }

    /// Reasons of the Events about `name`, in order.
    pub fn event_reasons(&self, name: &str) -> Vec<String> {
        let mut events = self.events_about(name);
        events.sort_by_key(|e| e["eventTime"].as_str().unwrap_or("").to_string());
        events
            .iter()
            .map(|e| e["reason"].as_str().unwrap_or("").to_string())
            .collect()
    }

    /// The Events about `name` with `reason`.
    pub fn events_of(&self, name: &str, reason: &str) -> Vec<Value> {
        let mut events = self.events_about(name);
        events.retain(|e| e["reason"] == reason);
        events
    }

    fn events_about(&self, name: &str) -> Vec<Value> {
        self.emu.with_state(|s| {
            let rt = s.resource("events.k8s.io", "v1", "events").unwrap();
            s.objects_of(&rt)
                .into_iter()
                .filter(|e| e["regarding"]["name"] == name)
                .collect()
        })
    }

    pub fn secret_value(&self, name: &str, key: &str) -> Option<String> {
        use base64::Engine as _;
        let secret = self.emu.get("", "v1", "secrets", NS, name)?;
        let encoded = secret["data"][key].as_str()?;
        String::from_utf8(base64::engine::general_purpose::STANDARD.decode(encoded).ok()?).ok()
    }
}

pub fn condition(s: &WebhookSubscription, type_: &str) -> Option<(String, String, String)> {
    s.status
        .as_ref()?
        .conditions
        .iter()
        .find(|c| c.type_ == type_)
        .map(|c| (c.status.clone(), c.reason.clone(), c.message.clone()))
}
