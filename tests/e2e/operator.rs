//! The real controller against the emulated API server and the provider simulators.

use std::sync::Arc;
use std::time::{Duration, Instant};

use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use kube::{Client, ResourceExt};
use secrecy::SecretString;
use serde_json::{Value, json};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use webhook_operator::api::{WebhookSubscription, crds};
use webhook_operator::clock::SystemClock;
use webhook_operator::controller::{self, Config};
use webhook_operator::sandbox::kube::{Emulator, EmulatorOptions, FaultAction, FaultRule};
use webhook_operator::sandbox::providers::authvia::AuthviaSimulator;
use webhook_operator::sandbox::providers::avaya::AvayaSimulator;
use webhook_operator::sandbox::providers::vonage::VonageSimulator;
use webhook_operator::sandbox::providers::{SimFault, SimFaultAction};
use webhook_operator::sandbox::receiver::{Expectation, Receiver};

use crate::providers::{
    AUTHVIA_ACCOUNT, AUTHVIA_ID, AUTHVIA_KEY, AVAYA_ID, AVAYA_SECRET, VONAGE_ID, VONAGE_SECRET, local,
};

const WAIT: Duration = Duration::from_secs(20);
const NS: &str = "default";
const GROUP: &str = "webhook-operator.dev";

/// Emulator, simulators, receiver, providers and their Secrets, and a running controller.
pub struct Env {
    pub emu: Emulator,
    pub client: Client,
    pub avaya: AvayaSimulator,
    pub vonage: VonageSimulator,
    pub authvia: AuthviaSimulator,
    pub receiver: Receiver,
    controller: Option<(oneshot::Sender<()>, JoinHandle<()>)>,
}

/// Polls `done` until it holds, failing the test with `what` after `WAIT`.
async fn until(what: &str, done: impl Fn() -> bool) {
    let deadline = Instant::now() + WAIT;
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting: {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
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
            controller: None,
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
        for (name, id, secret) in [
            ("avaya-credentials", AVAYA_ID, AVAYA_SECRET),
            ("vonage-credentials", VONAGE_ID, VONAGE_SECRET),
            ("authvia-credentials", AUTHVIA_ID, AUTHVIA_KEY),
        ] {
            env.secret(NS, name, &[("clientId", id), ("clientSecret", secret)]);
        }
        env.secret(
            "webhook-operator",
            "vonage-credentials",
            &[("clientId", VONAGE_ID), ("clientSecret", VONAGE_SECRET)],
        );
        let blocks = [
            (
                "avaya",
                json!({"avaya": {"baseUrl": env.avaya.base_url(), "tokenUrl": env.avaya.token_url()}}),
            ),
            (
                "vonage",
                json!({"vonage": {"baseUrl": env.vonage.base_url(), "tokenUrl": env.vonage.token_url()}}),
            ),
            (
                "authvia",
                json!({"authvia": {"accountId": AUTHVIA_ACCOUNT, "baseUrl": env.authvia.base_url()}}),
            ),
        ];
        for (name, mut spec) in blocks {
            spec["credentialsSecretRef"] = json!({"name": format!("{name}-credentials")});
            let provider = json!({
                "apiVersion": "webhook-operator.dev/v1alpha1", "kind": "WebhookProvider",
                "metadata": {"name": name, "namespace": NS}, "spec": spec
            });
            env.put(GROUP, "v1alpha1", "webhookproviders", NS, provider);
        }
        env
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
        let mut config = Config::new("webhook-operator", Arc::new(SystemClock));
        config.drift_interval = Duration::from_secs(3600);
        config.provider_check_interval = Duration::from_secs(3600);
        config.retry.base_delay = Duration::from_millis(50);
        let (tx, rx) = oneshot::channel::<()>();
        let client = self.client.clone();
        let task = tokio::spawn(async move {
            controller::run(client, config, async {
                let _ = rx.await;
            })
            .await;
        });
        self.controller = Some((tx, task));
    }

    pub async fn stop_controller(&mut self) {
        if let Some((tx, task)) = self.controller.take() {
            let _ = tx.send(());
            let _ = tokio::time::timeout(Duration::from_secs(10), task).await;
        }
    }

    pub fn subs(&self) -> Api<WebhookSubscription> {
        Api::namespaced(self.client.clone(), NS)
    }

    pub async fn create_sub(&self, object: Value) -> WebhookSubscription {
        let sub: WebhookSubscription = serde_json::from_value(object).unwrap();
        self.subs().create(&PostParams::default(), &sub).await.unwrap()
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
        self.emu.with_state(|s| {
            let rt = s.resource("events.k8s.io", "v1", "events").unwrap();
            let mut events: Vec<Value> = s
                .objects_of(&rt)
                .into_iter()
                .filter(|e| e["regarding"]["name"] == name)
                .collect();
            events.sort_by_key(|e| e["eventTime"].as_str().unwrap_or("").to_string());
            events
                .iter()
                .map(|e| e["reason"].as_str().unwrap_or("").to_string())
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

fn avaya_sub(name: &str, path: &str) -> Value {
    json!({
        "apiVersion": "webhook-operator.dev/v1alpha1", "kind": "WebhookSubscription",
        "metadata": {"name": name, "namespace": NS},
        "spec": {"providerRef": {"name": "avaya"}, "endpoint": format!("https://hooks.example.com{path}"),
                 "avaya": {"families": ["AGENT"], "events": ["Agent.LoggedIn"],
                           "authToken": {"secretKeyRef": {"name": "avaya-token", "key": "token"}},
                           "authTokenHeader": "x-avaya-token"}}
    })
}

fn vonage_sub(name: &str, path: &str) -> Value {
    json!({
        "apiVersion": "webhook-operator.dev/v1alpha1", "kind": "WebhookSubscription",
        "metadata": {"name": name, "namespace": NS},
        "spec": {"providerRef": {"name": "vonage"}, "endpoint": format!("https://hooks.example.com{path}"),
                 "vonage": {"events": ["agent.presencechanged.v1"],
                            "signingSecret": {"secretKeyRef": {"name": format!("{name}-signing"), "key": "secret"}, "generate": true}}}
    })
}

fn authvia_sub(name: &str, path: &str) -> Value {
    json!({
        "apiVersion": "webhook-operator.dev/v1alpha1", "kind": "WebhookSubscription",
        "metadata": {"name": name, "namespace": NS},
        "spec": {"providerRef": {"name": "authvia"}, "endpoint": format!("https://hooks.example.com{path}"),
                 "authvia": {"type": "business_processes.update", "attempts": 3, "conditions": {"status": "failed"},
                             "headers": [{"name": "X-Api-Key", "valueFrom": {"secretKeyRef": {"name": "authvia-hook", "key": "apiKey"}}}],
                             "signingSecret": {"secretKeyRef": {"name": "authvia-hook", "key": "signingSecret"}}}}
    })
}

const AVAYA_TOKEN: &str = "avaya-delivery-token-one";
const AUTHVIA_SIGNING: &str = "authvia-signing-secret-0123456789abcdef";

async fn env_with_subscriptions(lifetime: Duration) -> Env {
    let mut env = Env::start(lifetime).await;
    env.secret(NS, "avaya-token", &[("token", AVAYA_TOKEN)]);
    env.secret(
        NS,
        "authvia-hook",
        &[("signingSecret", AUTHVIA_SIGNING), ("apiKey", "api-key-1")],
    );
    env.start_controller();
    env.create_sub(avaya_sub("agents", "/avaya/agents")).await;
    env.create_sub(vonage_sub("presence", "/vonage/presence")).await;
    env.create_sub(authvia_sub("payments", "/authvia/payments")).await;
    env
}

fn external_id(s: &WebhookSubscription) -> Option<String> {
    s.annotations().get("webhook-operator.dev/external-id").cloned()
}

#[tokio::test]
async fn each_provider_becomes_ready_and_steady_state_is_silent() {
    let env = env_with_subscriptions(Duration::from_secs(600)).await;
    let agents = env.wait_ready("agents").await;
    let presence = env.wait_ready("presence").await;
    let payments = env.wait_ready("payments").await;

    let status = agents.status.clone().unwrap();
    let id = status.subscription_id.clone().unwrap();
    assert_eq!(external_id(&agents).as_deref(), Some(id.as_str()));
    assert_eq!(status.remote_state.as_deref(), Some("ACTIVE"));
    assert!(status.expires_at.is_some() && status.renewal_time.is_some());
    assert_eq!(status.observed_generation, Some(1));
    assert!(
        agents
            .finalizers()
            .contains(&"webhook-operator.dev/finalizer".to_string())
    );
    assert_eq!(env.avaya.subscriptions().len(), 1);
    assert_eq!(
        env.avaya.subscription(&id).unwrap().auth_token.as_deref(),
        Some(AVAYA_TOKEN)
    );
    assert_eq!(
        presence.status.clone().unwrap().remote_state.as_deref(),
        Some("Enabled")
    );
    assert_eq!(
        payments.status.clone().unwrap().remote_state.as_deref(),
        Some("Enabled")
    );
    assert_eq!(env.vonage.subscriptions().len(), 1);
    assert_eq!(env.authvia.subscriptions().len(), 1);
    // The generated Vonage signing secret is in a Secret owned by the subscription, and at Vonage.
    let generated = env
        .secret_value("presence-signing", "secret")
        .expect("generated secret stored");
    assert_eq!(env.vonage.subscriptions()[0].secret, generated);
    assert_eq!(
        env.vonage.subscriptions()[0].name,
        "default-presence",
        "default name <namespace>-<name>"
    );
    let owner =
        env.emu.get("", "v1", "secrets", NS, "presence-signing").unwrap()["metadata"]["ownerReferences"][0]["uid"]
            .clone();
    assert_eq!(owner, json!(presence.uid().unwrap()));
    assert!(
        env.emu
            .get("", "v1", "secrets", NS, "presence-vonage-signing")
            .is_none(),
        "the secret we sent is not mistaken for one Vonage generated"
    );
    assert!(env.event_reasons("agents").contains(&"Created".to_string()));
    // The pass after the create (woken by the operator's own annotation write) sees its own status, even
    // when the watch cache lags: no spurious renew or rotation.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(env.avaya.subscription(&id).unwrap().renewals, 0);
    assert_eq!(env.get_sub("agents").unwrap().status.unwrap().renewal_count, None);
    assert!(!env.event_reasons("agents").contains(&"Rotated".to_string()));
    assert!(env.event_reasons("agents").contains(&"Available".to_string()));

    // Steady state: reconciles of up-to-date objects make no remote call and no Kubernetes write.
    tokio::time::sleep(Duration::from_millis(500)).await;
    for core in [&env.avaya.core, &env.vonage.core, &env.authvia.core] {
        core.clear_requests();
    }
    env.emu.clear_requests();
    let rounds = 5;
    for i in 0..rounds {
        for name in ["agents", "presence", "payments"] {
            // An unrelated annotation change wakes the controller without changing anything it manages.
            env.annotate(name, "example.com/touch", &i.to_string()).await;
        }
        tokio::time::sleep(Duration::from_millis(150)).await;
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let writes: Vec<String> = env
        .emu
        .requests()
        .iter()
        .filter(|r| r.method != "GET")
        .map(|r| format!("{} {}", r.method, r.path))
        .collect();
    assert_eq!(
        writes.len(),
        rounds * 3,
        "only the test's own annotation patches: {writes:#?}"
    );
    let remote: usize = [&env.avaya.core, &env.vonage.core, &env.authvia.core]
        .iter()
        .map(|c| c.requests().len())
        .sum();
    assert_eq!(remote, 0, "no remote calls in steady state");
}

#[tokio::test]
async fn spec_change_updates_once_and_remote_deletion_recreates() {
    let env = env_with_subscriptions(Duration::from_secs(600)).await;
    let presence = env.wait_ready("presence").await;
    let first_id = presence.status.unwrap().subscription_id.unwrap();
    env.vonage.core.clear_requests();
    let patch = json!({"spec": {"vonage": {"events": ["agent.presencechanged.v1", "channel.ended.v1"]}}});
    env.subs()
        .patch("presence", &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .unwrap();
    env.wait("presence", "generation 2 observed", |s| {
        s.status.as_ref().and_then(|st| st.observed_generation) == Some(2) && condition(s, "Ready").unwrap().0 == "True"
    })
    .await;
    let writes: Vec<String> = env
        .vonage
        .core
        .requests()
        .iter()
        .filter(|r| r.method != "GET" && r.path.starts_with("/webhooks"))
        .map(|r| format!("{} {} {}", r.method, r.path, r.body))
        .collect();
    assert_eq!(
        writes,
        vec![format!(
            r#"PATCH /webhooks/subscriptions/{first_id} {{"events":["agent.presencechanged.v1","channel.ended.v1"]}}"#
        )]
    );

    // Deleted behind the operator's back: recreated on the next check, with a Warning Event.
    let agents = env.wait_ready("agents").await;
    let old = agents.status.unwrap().subscription_id.unwrap();
    assert!(env.avaya.remove(&old));
    env.annotate("agents", "webhook-operator.dev/reconcile-requested-at", "r1")
        .await;
    let agents = env
        .wait("agents", "a new subscription", |s| {
            s.status
                .as_ref()
                .and_then(|st| st.subscription_id.clone())
                .is_some_and(|id| id != old)
                && s.status
                    .as_ref()
                    .and_then(|st| st.last_handled_reconcile_at.clone())
                    .as_deref()
                    == Some("r1")
        })
        .await;
    let new = agents.status.unwrap().subscription_id.unwrap();
    assert_eq!(
        env.avaya
            .subscriptions()
            .iter()
            .map(|s| s.id.clone())
            .collect::<Vec<_>>(),
        vec![new]
    );
    assert!(env.event_reasons("agents").contains(&"RemoteDeleted".to_string()));
}

#[tokio::test]
async fn avaya_is_renewed_before_expiry_and_reactivated() {
    let env = env_with_subscriptions(Duration::from_secs(4)).await;
    let agents = env.wait_ready("agents").await;
    let id = agents.status.unwrap().subscription_id.unwrap();
    // Watch the simulator for 7 s: renewals keep it ACTIVE the whole time.
    let until = Instant::now() + Duration::from_secs(7);
    while Instant::now() < until {
        assert_eq!(env.avaya.status_of(&id), Some("ACTIVE"), "never INACTIVE");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let renewed = env.get_sub("agents").unwrap().status.unwrap();
    assert!(renewed.renewal_count.unwrap_or(0) >= 2, "{renewed:?}");
    assert!(env.avaya.subscription(&id).unwrap().renewals >= 2);
    assert!(renewed.last_renewed_at.is_some());

    // Forced INACTIVE: reactivated through renew on the next check.
    env.avaya.deactivate(&id);
    env.annotate("agents", "webhook-operator.dev/reconcile-requested-at", "check-1")
        .await;
    env.wait("agents", "reactivated", |s| {
        s.status
            .as_ref()
            .and_then(|st| st.last_handled_reconcile_at.clone())
            .as_deref()
            == Some("check-1")
    })
    .await;
    assert_eq!(env.avaya.status_of(&id), Some("ACTIVE"));
    assert!(env.event_reasons("agents").contains(&"Reactivated".to_string()));

    // On-demand renewal, echoed in status.
    let before = env.avaya.subscription(&id).unwrap().renewals;
    env.annotate("agents", "webhook-operator.dev/renew-requested-at", "renew-1")
        .await;
    env.wait("agents", "renew handled", |s| {
        s.status
            .as_ref()
            .and_then(|st| st.last_handled_renew_at.clone())
            .as_deref()
            == Some("renew-1")
    })
    .await;
    assert!(env.avaya.subscription(&id).unwrap().renewals > before);
}

#[tokio::test]
async fn rotated_secrets_reach_the_provider_and_the_next_delivery() {
    let mut env = env_with_subscriptions(Duration::from_secs(600)).await;
    let avaya_id = env.wait_ready("agents").await.status.unwrap().subscription_id.unwrap();
    let vonage_id = env
        .wait_ready("presence")
        .await
        .status
        .unwrap()
        .subscription_id
        .unwrap();
    let authvia_id = env
        .wait_ready("payments")
        .await
        .status
        .unwrap()
        .subscription_id
        .unwrap();

    // Avaya: a new token in the Secret → renew with it → the next delivery carries it.
    let started = Instant::now();
    env.secret(NS, "avaya-token", &[("token", "avaya-delivery-token-two")]);
    until("Avaya token rotated", || {
        env.avaya.subscription(&avaya_id).unwrap().auth_token.as_deref() == Some("avaya-delivery-token-two")
    })
    .await;
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "rotation within seconds: {:?}",
        started.elapsed()
    );
    env.receiver.expect(
        "/avaya/agents",
        Expectation::AvayaToken {
            header: "x-avaya-token".into(),
            token: SecretString::from("avaya-delivery-token-two"),
        },
    );
    env.avaya.deliver(&avaya_id).await.unwrap();
    assert!(env.receiver.deliveries().last().unwrap().verified);
    env.wait("agents", "Rotated recorded", |_| {
        env.event_reasons("agents").contains(&"Rotated".to_string())
    })
    .await;

    // AuthVia: a new signing secret → update → deliveries signed with it.
    let rotated = "authvia-signing-secret-rotated-abcdefghij";
    env.secret(
        NS,
        "authvia-hook",
        &[("signingSecret", rotated), ("apiKey", "api-key-1")],
    );
    until("AuthVia secret rotated", || {
        env.authvia.subscription(&authvia_id).unwrap().text("secret") == Some(rotated)
    })
    .await;
    env.receiver.expect(
        "/authvia/payments",
        Expectation::AuthviaSecret(SecretString::from(rotated)),
    );
    env.authvia.deliver(&authvia_id).await.unwrap();
    assert!(env.receiver.deliveries().last().unwrap().verified);

    // Vonage: rotate the generated secret by hand → update → JWTs verify with the new one.
    let new_secret = webhook_operator::controller::bindings::vonage::random_secret();
    env.secret(NS, "presence-signing", &[("secret", &new_secret)]);
    until("Vonage secret rotated", || {
        env.vonage.subscription(&vonage_id).unwrap().secret == new_secret
    })
    .await;
    env.receiver.expect(
        "/vonage/presence",
        Expectation::VonageSecret(SecretString::from(new_secret.clone())),
    );
    env.vonage.deliver(&vonage_id).await.unwrap();
    assert!(env.receiver.deliveries().last().unwrap().verified);

    // Restarting the controller keeps the secret and makes no remote write.
    env.wait("presence", "secret hash recorded", |s| {
        s.status.as_ref().unwrap().applied_secret_hash.is_some()
    })
    .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    env.stop_controller().await;
    env.vonage.core.clear_requests();
    env.start_controller();
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(
        env.secret_value("presence-signing", "secret").as_deref(),
        Some(new_secret.as_str())
    );
    assert_eq!(env.vonage.subscription(&vonage_id).unwrap().secret, new_secret);
    let writes = env.vonage.core.requests().iter().filter(|r| r.method != "GET").count();
    assert_eq!(
        writes, 1,
        "only the token request after a restart (one drift read per object is allowed)"
    );
}

#[tokio::test]
async fn deletion_orphaning_and_pause() {
    let env = env_with_subscriptions(Duration::from_secs(600)).await;
    let avaya_id = env.wait_ready("agents").await.status.unwrap().subscription_id.unwrap();
    let vonage_id = env
        .wait_ready("presence")
        .await
        .status
        .unwrap()
        .subscription_id
        .unwrap();
    let authvia_id = env
        .wait_ready("payments")
        .await
        .status
        .unwrap()
        .subscription_id
        .unwrap();

    // Delete: remote gone, finalizer removed, object gone.
    env.subs().delete("agents", &DeleteParams::default()).await.unwrap();
    env.emu
        .wait_for(GROUP, "v1alpha1", "webhooksubscriptions", NS, "agents", WAIT, |o| {
            o.is_none()
        })
        .await
        .expect("deleted");
    assert!(env.avaya.subscription(&avaya_id).is_none());

    // Orphan: the object goes, the remote subscription stays.
    let patch = json!({"spec": {"deletionPolicy": "Orphan"}});
    env.subs()
        .patch("presence", &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .unwrap();
    env.wait("presence", "generation 2", |s| {
        s.status.as_ref().unwrap().observed_generation == Some(2)
    })
    .await;
    env.subs().delete("presence", &DeleteParams::default()).await.unwrap();
    env.emu
        .wait_for(GROUP, "v1alpha1", "webhooksubscriptions", NS, "presence", WAIT, |o| {
            o.is_none()
        })
        .await
        .expect("deleted");
    assert!(env.vonage.subscription(&vonage_id).is_some(), "orphaned");

    // Paused: spec changes make no remote write; deletion still runs.
    env.annotate("payments", "webhook-operator.dev/paused", "true").await;
    env.wait_condition("payments", "Synced", "False", "ReconcilePaused")
        .await;
    env.authvia.core.clear_requests();
    let patch = json!({"spec": {"authvia": {"description": "changed while paused"}}});
    env.subs()
        .patch("payments", &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert!(env.authvia.core.requests().is_empty(), "no remote calls while paused");
    env.subs().delete("payments", &DeleteParams::default()).await.unwrap();
    env.emu
        .wait_for(GROUP, "v1alpha1", "webhooksubscriptions", NS, "payments", WAIT, |o| {
            o.is_none()
        })
        .await
        .expect("deleted while paused");
    assert!(env.authvia.subscription(&authvia_id).is_none());

    // The provider is gone: deletion still completes, with a Warning that the remote side may remain.
    env.create_sub(vonage_sub("stranded", "/vonage/stranded")).await;
    let stranded = env
        .wait_ready("stranded")
        .await
        .status
        .unwrap()
        .subscription_id
        .unwrap();
    env.emu.with_state(|s| {
        let rt = s.resource(GROUP, "v1alpha1", "webhookproviders").unwrap();
        s.delete(&rt, NS, "vonage", &json!({}), false).unwrap();
    });
    env.subs().delete("stranded", &DeleteParams::default()).await.unwrap();
    env.emu
        .wait_for(GROUP, "v1alpha1", "webhooksubscriptions", NS, "stranded", WAIT, |o| {
            o.is_none()
        })
        .await
        .expect("deleted without its provider");
    assert!(env.vonage.subscription(&stranded).is_some());
    assert!(
        env.event_reasons("stranded")
            .contains(&"ProviderUnavailable".to_string())
    );
}

#[tokio::test]
async fn adoption_import_and_leak_recovery() {
    let mut env = Env::start(Duration::from_secs(600)).await;
    env.start_controller();
    // None (the default): an existing match is an error, nothing is created.
    let existing = env.vonage.insert(
        "default-taken",
        "https://hooks.example.com/vonage/taken",
        &["agent.presencechanged.v1"],
    );
    env.create_sub(vonage_sub("taken", "/vonage/taken")).await;
    let blocked = env.wait_condition("taken", "Ready", "False", "AlreadyExists").await;
    assert!(condition(&blocked, "Ready").unwrap().2.contains(&existing));
    assert_eq!(env.vonage.subscriptions().len(), 1);
    // Adopt: takes it over (and pushes the spec's generated secret to it).
    let patch = json!({"spec": {"adoptionPolicy": "Adopt"}});
    env.subs()
        .patch("taken", &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .unwrap();
    let adopted = env.wait_ready("taken").await;
    assert_eq!(
        adopted.status.unwrap().subscription_id.as_deref(),
        Some(existing.as_str())
    );
    assert_eq!(
        env.vonage.subscription(&existing).unwrap().secret,
        env.secret_value("taken-signing", "secret").unwrap()
    );
    assert_eq!(env.vonage.subscriptions().len(), 1);
    // Adopt with nothing to adopt waits with a clear reason; AdoptOrCreate creates.
    let mut lonely = vonage_sub("lonely", "/vonage/lonely");
    lonely["spec"]["adoptionPolicy"] = json!("Adopt");
    env.create_sub(lonely).await;
    env.wait_condition("lonely", "Ready", "False", "NotFound").await;
    let patch = json!({"spec": {"adoptionPolicy": "AdoptOrCreate"}});
    env.subs()
        .patch("lonely", &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .unwrap();
    env.wait_ready("lonely").await;
    assert_eq!(env.vonage.subscriptions().len(), 2);

    // Import by external-id.
    let imported = env.avaya.insert(
        &["AGENT"],
        &["Agent.LoggedIn"],
        "https://hooks.example.com/elsewhere",
        None,
    );
    env.secret(NS, "avaya-token", &[("token", AVAYA_TOKEN)]);
    let mut import = avaya_sub("imported", "/avaya/imported");
    import["metadata"]["annotations"] = json!({"webhook-operator.dev/external-id": imported});
    env.create_sub(import).await;
    let ready = env.wait_ready("imported").await;
    assert_eq!(
        ready.status.unwrap().subscription_id.as_deref(),
        Some(imported.as_str())
    );
    let remote = env.avaya.subscription(&imported).unwrap();
    assert_eq!(
        remote.endpoint, "https://hooks.example.com/avaya/imported",
        "converged to the spec"
    );
    assert_eq!(remote.auth_token.as_deref(), Some(AVAYA_TOKEN));
    assert_eq!(env.avaya.subscriptions().len(), 1);

    // Leak recovery: the create succeeds but recording its id fails; the next pass adopts it.
    let mut leaky = authvia_sub("leaky", "/authvia/leaky");
    leaky["metadata"]["annotations"] = json!({"webhook-operator.dev/paused": "true"});
    env.secret(
        NS,
        "authvia-hook",
        &[("signingSecret", AUTHVIA_SIGNING), ("apiKey", "k")],
    );
    env.create_sub(leaky).await;
    env.wait_condition("leaky", "Synced", "False", "ReconcilePaused").await;
    env.emu.inject_fault(
        FaultRule::new(FaultAction::Fail(webhook_operator::sandbox::kube::ApiError::new(
            500,
            "InternalError",
            "injected",
        )))
        .methods(&[axum::http::Method::PATCH])
        .path("/webhooksubscriptions/leaky$")
        .skip(1)
        .times(1),
    );
    let mut unpaused = serde_json::to_value(env.get_sub("leaky").unwrap()).unwrap();
    unpaused["metadata"]["annotations"] = json!({});
    env.put(GROUP, "v1alpha1", "webhooksubscriptions", NS, unpaused);
    let ready = env.wait_ready("leaky").await;
    assert_eq!(env.authvia.subscriptions().len(), 1, "created once, never twice");
    assert_eq!(
        ready.status.unwrap().subscription_id,
        Some(env.authvia.subscriptions()[0].id.clone())
    );
    assert!(env.event_reasons("leaky").contains(&"Adopted".to_string()));
}

#[tokio::test]
async fn errors_are_classified_without_retry_storms() {
    let mut env = Env::start(Duration::from_secs(600)).await;
    env.secret(
        NS,
        "authvia-hook",
        &[("signingSecret", AUTHVIA_SIGNING), ("apiKey", "k")],
    );
    env.start_controller();

    // The provider refuses (AuthVia's verification call fails): InvalidSpec, one attempt, no storm.
    env.receiver.set_status(500);
    env.create_sub(authvia_sub("refused", "/authvia/refused")).await;
    let refused = env.wait_condition("refused", "Ready", "False", "InvalidSpec").await;
    assert!(
        condition(&refused, "Ready")
            .unwrap()
            .2
            .contains("destination verification failed")
    );
    tokio::time::sleep(Duration::from_secs(2)).await;
    let creates = env
        .authvia
        .core
        .requests()
        .iter()
        .filter(|r| r.method == "POST" && r.path.ends_with("/subscriptions"))
        .count();
    assert_eq!(creates, 1, "no retry until the spec changes");
    env.receiver.set_status(200);
    let patch = json!({"spec": {"authvia": {"description": "fixed"}}});
    env.subs()
        .patch("refused", &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .unwrap();
    env.wait_ready("refused").await;

    // 429 with Retry-After: the operator waits as told.
    env.vonage.core.inject(
        SimFault::on("/webhooks/subscriptions", SimFaultAction::Status(429, Some(1)))
            .method(axum::http::Method::GET)
            .times(5),
    );
    env.create_sub(vonage_sub("limited", "/vonage/limited")).await;
    env.wait_ready("limited").await;
    let statuses: Vec<u16> = env
        .vonage
        .core
        .requests()
        .iter()
        .filter(|r| r.method == "GET")
        .map(|r| r.status)
        .collect();
    assert_eq!(statuses.iter().filter(|s| **s == 429).count(), 5, "{statuses:?}");
    assert!(env.event_reasons("limited").contains(&"RateLimited".to_string()));

    // Missing provider, missing Secret, wrong block: a clear condition and no remote call.
    for core in [&env.avaya.core, &env.vonage.core, &env.authvia.core] {
        core.clear_requests();
    }
    let mut missing = avaya_sub("no-provider", "/avaya/x");
    missing["spec"]["providerRef"]["name"] = json!("nope");
    env.create_sub(missing).await;
    let s = env
        .wait_condition("no-provider", "Ready", "False", "ProviderNotReady")
        .await;
    assert!(
        condition(&s, "Ready")
            .unwrap()
            .2
            .contains("WebhookProvider \"nope\" does not exist in namespace default")
    );
    env.create_sub(avaya_sub("no-secret", "/avaya/y")).await;
    let s = env.wait_condition("no-secret", "Ready", "False", "InvalidSpec").await;
    assert!(
        condition(&s, "Ready")
            .unwrap()
            .2
            .contains("Secret default/avaya-token (referenced by spec.avaya.authToken) does not exist"),
        "{:?}",
        condition(&s, "Ready")
    );
    let mut wrong = vonage_sub("wrong-block", "/vonage/w");
    wrong["spec"]["providerRef"]["name"] = json!("avaya");
    env.create_sub(wrong).await;
    let s = env.wait_condition("wrong-block", "Ready", "False", "InvalidSpec").await;
    assert!(
        condition(&s, "Ready")
            .unwrap()
            .2
            .contains("spec.vonage is set but WebhookProvider \"avaya\" is for avaya; use spec.avaya instead")
    );
    assert!(
        env.avaya
            .core
            .requests()
            .iter()
            .all(|r| !r.path.contains("/subscriptions"))
    );
    // The missing Secret appears: the subscription recovers by itself (Secrets are watched).
    env.secret(NS, "avaya-token", &[("token", AVAYA_TOKEN)]);
    env.wait_ready("no-secret").await;

    // A ClusterWebhookProvider admits only the namespaces its selector matches.
    env.put(
        GROUP,
        "v1alpha1",
        "clusterwebhookproviders",
        "",
        json!({
            "apiVersion": "webhook-operator.dev/v1alpha1", "kind": "ClusterWebhookProvider",
            "metadata": {"name": "vonage-shared"},
            "spec": {"vonage": {"baseUrl": env.vonage.base_url(), "tokenUrl": env.vonage.token_url()},
                     "credentialsSecretRef": {"name": "vonage-credentials"},
                     "namespaceSelector": {"matchLabels": {"team": "contact-centre"}}}
        }),
    );
    let mut shared = vonage_sub("shared", "/vonage/shared");
    shared["spec"]["providerRef"] = json!({"kind": "ClusterWebhookProvider", "name": "vonage-shared"});
    env.create_sub(shared).await;
    let s = env.wait_condition("shared", "Ready", "False", "ProviderNotReady").await;
    assert!(
        condition(&s, "Ready")
            .unwrap()
            .2
            .contains("does not admit namespace default")
    );
    env.put(
        "",
        "v1",
        "namespaces",
        "",
        json!({"metadata": {"name": "default", "labels": {"team": "contact-centre"}}}),
    );
    env.annotate("shared", "webhook-operator.dev/reconcile-requested-at", "after-label")
        .await;
    env.wait_ready("shared").await;

    // Providers report whether their credentials work.
    let providers: Api<webhook_operator::api::WebhookProvider> = Api::namespaced(env.client.clone(), NS);
    let deadline = Instant::now() + WAIT;
    loop {
        let p = providers.get("avaya").await.unwrap();
        let ready = p
            .status
            .and_then(|s| s.conditions.into_iter().find(|c| c.type_ == "Ready"));
        if ready
            .as_ref()
            .is_some_and(|c| c.status == "True" && c.reason == "CredentialsValid")
        {
            break;
        }
        assert!(Instant::now() < deadline, "provider Ready: {ready:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Plain GET over HTTP/1.1: status line and body.
async fn http_get(addr: &str, path: &str) -> Option<String> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(addr).await.ok()?;
    stream
        .write_all(format!("GET {path} HTTP/1.1\r\nHost: localhost\r\n\r\n").as_bytes())
        .await
        .ok()?;
    let mut response = String::new();
    stream.read_to_string(&mut response).await.ok()?;
    Some(response)
}

#[tokio::test]
async fn the_run_command_reconciles_and_serves_metrics() {
    let env = Env::start(Duration::from_secs(600)).await;
    env.secret(NS, "avaya-token", &[("token", AVAYA_TOKEN)]);
    let dir = std::env::temp_dir().join(format!("whop-run-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let kubeconfig = dir.join("kubeconfig");
    env.emu.write_kubeconfig(&kubeconfig).unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let metrics = format!("127.0.0.1:{port}");
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_webhook-operator"))
        .args([
            "run",
            "--cluster-resource-namespace",
            "webhook-operator",
            "--metrics-addr",
            &metrics,
            "--leader-election",
            "--leader-election-id",
            "replica-0",
            "--kubeconfig",
        ])
        .arg(&kubeconfig)
        .kill_on_drop(true)
        .stderr(std::fs::File::create(dir.join("operator.log")).unwrap())
        .spawn()
        .unwrap();
    env.create_sub(avaya_sub("from-binary", "/avaya/binary")).await;
    env.wait_ready("from-binary").await;
    let deadline = Instant::now() + WAIT;
    loop {
        if http_get(&metrics, "/readyz")
            .await
            .is_some_and(|r| r.starts_with("HTTP/1.1 200"))
        {
            break;
        }
        assert!(Instant::now() < deadline, "/readyz never became ready");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let body = http_get(&metrics, "/metrics").await.unwrap();
    assert!(
        body.contains(r#"webhook_operator_provider_requests_total{provider="avaya",operation="create",code="201"} 1"#),
        "{body}"
    );
    assert!(body.contains(r#"webhook_operator_subscription_ready_status{namespace="default",name="from-binary",provider="avaya",condition="True"} 1"#), "{body}");
    assert!(body.contains(
        "webhook_operator_subscription_expiration_timestamp_seconds{namespace=\"default\",name=\"from-binary\""
    ));
    assert!(!body.contains(AVAYA_TOKEN) && !body.contains(AVAYA_SECRET));
    let lease = env
        .emu
        .get(
            "coordination.k8s.io",
            "v1",
            "leases",
            "webhook-operator",
            "webhook-operator",
        )
        .unwrap();
    assert_eq!(
        lease["spec"]["holderIdentity"], "replica-0",
        "it acted as the elected leader"
    );
    child.kill().await.unwrap();
}
