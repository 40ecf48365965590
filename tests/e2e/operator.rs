//! The real controller against the emulated API server and the provider simulators.

use std::time::{Duration, Instant};

use futures::StreamExt;
use kube::ResourceExt;
use kube::api::{Api, DeleteParams, Patch, PatchParams};
use secrecy::SecretString;
use serde_json::json;
use webhook_operator::api::{AdoptionPolicy, WebhookSubscription, annotation};
use webhook_operator::sandbox::kube::{FaultAction, FaultRule, WatchDelivery};
use webhook_operator::sandbox::providers::{SimFault, SimFaultAction};
use webhook_operator::sandbox::receiver::Expectation;

use crate::support::env::{Env, condition};
use crate::support::fixtures::{
    AUTHVIA_SIGNING, AVAYA_SECRET, AVAYA_TOKEN, GROUP, NS, Sub, VONAGE_ID, VONAGE_SECRET, creates,
};
use crate::support::poll::{WAIT, eventually, until};

async fn env_with_subscriptions(lifetime: Duration) -> Env {
    let mut env = Env::start(lifetime).await;
    env.subscription_secrets();
    env.start_controller();
    env.create_sub(Sub::avaya("agents", "/avaya/agents")).await;
    env.create_sub(Sub::vonage("presence", "/vonage/presence")).await;
    env.create_sub(Sub::authvia("payments", "/authvia/payments")).await;
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
    assert!(
        !env.event_reasons("agents").contains(&"Available".to_string()),
        "one Event per create: Created says it is ready"
    );

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
    let renewals_before = env.avaya.subscription(&id).unwrap().renewals;
    env.avaya.core.clear_requests();
    let until = Instant::now() + Duration::from_secs(7);
    while Instant::now() < until {
        assert_eq!(env.avaya.status_of(&id), Some("ACTIVE"), "never INACTIVE");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let renewed = env.get_sub("agents").unwrap().status.unwrap();
    assert!(renewed.renewal_count.unwrap_or(0) >= 2, "{renewed:?}");
    let renewals = env.avaya.subscription(&id).unwrap().renewals - renewals_before;
    assert!(renewals >= 2);
    assert!(renewed.last_renewed_at.is_some());
    // Each renewal was one call: the renew itself, nothing read before it.
    let calls: Vec<String> = env
        .avaya
        .core
        .requests()
        .into_iter()
        .filter(|r| r.path.contains(&id))
        .map(|r| format!("{} {}", r.method, r.path))
        .collect();
    assert!(
        calls.iter().all(|c| c.starts_with("POST") && c.ends_with(":renew")),
        "{calls:?}"
    );
    assert!(
        calls.len() as u32 >= renewals && calls.len() as u32 <= renewals + 1,
        "one call per renewal: {calls:?}"
    );

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
    request_renewal(&env, "agents", "renew-1").await;
    assert!(env.avaya.subscription(&id).unwrap().renewals > before);

    // The same Event again within minutes is a count on the first one (events.k8s.io series), not a
    // second object.
    request_renewal(&env, "agents", "renew-2").await;
    let renewed: Vec<_> = env
        .events_of("agents", "Renewed")
        .into_iter()
        .filter(|e| e["note"].as_str().is_some_and(|n| n.ends_with("on request")))
        .collect();
    assert_eq!(
        renewed.len(),
        1,
        "one Event object for two requested renewals: {renewed:?}"
    );
    assert_eq!(renewed[0]["series"]["count"], 2);
    assert!(renewed[0]["series"]["lastObservedTime"].is_string());
}

/// Asks for a renewal of `name` and waits until a pass has handled the request.
async fn request_renewal(env: &Env, name: &str, request: &str) {
    env.annotate(name, "webhook-operator.dev/renew-requested-at", request)
        .await;
    env.wait(name, "renew handled", |s| {
        s.status
            .as_ref()
            .and_then(|st| st.last_handled_renew_at.clone())
            .as_deref()
            == Some(request)
    })
    .await;
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

    // Avaya: a new token in the Secret → renew with it (one call, nothing read first) → the next delivery
    // carries it.
    let started = Instant::now();
    env.avaya.core.clear_requests();
    env.secret(NS, "avaya-token", &[("token", "avaya-delivery-token-two")]);
    until("Avaya token rotated", || {
        env.avaya.subscription(&avaya_id).unwrap().auth_token.as_deref() == Some("avaya-delivery-token-two")
    })
    .await;
    let calls: Vec<String> = env
        .avaya
        .core
        .requests()
        .into_iter()
        .filter(|r| r.path.contains(&avaya_id))
        .map(|r| format!("{} {}", r.method, r.path))
        .collect();
    assert_eq!(
        calls,
        vec![format!(
            "POST {}/subscriptions/{avaya_id}:renew",
            webhook_operator::sandbox::providers::avaya::API_PREFIX
        )]
    );
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
    env.authvia.core.clear_requests();
    env.secret(
        NS,
        "authvia-hook",
        &[("signingSecret", rotated), ("apiKey", "api-key-1")],
    );
    until("AuthVia secret rotated", || {
        env.authvia.subscription(&authvia_id).unwrap().text("secret") == Some(rotated)
    })
    .await;
    let calls: Vec<String> = env
        .authvia
        .core
        .requests()
        .into_iter()
        .filter(|r| r.path.contains(&authvia_id))
        .map(|r| r.method)
        .collect();
    assert_eq!(
        calls,
        vec!["PATCH".to_string()],
        "a rotation is one update, nothing read first"
    );
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
    env.create_sub(Sub::vonage("stranded", "/vonage/stranded")).await;
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
    env.create_sub(Sub::vonage("taken", "/vonage/taken")).await;
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
    env.create_sub(Sub::vonage("lonely", "/vonage/lonely").adoption(AdoptionPolicy::Adopt))
        .await;
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
    env.create_sub(Sub::avaya("imported", "/avaya/imported").annotate(annotation::EXTERNAL_ID, &imported))
        .await;
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
    let leaky = Sub::authvia("leaky", "/authvia/leaky").annotate(annotation::PAUSED, "true");
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

    // The provider refuses the request as invalid: InvalidSpec, one attempt, no storm. (A failed
    // verification call is retried instead: see `fidelity`.)
    env.authvia.core.inject(
        SimFault::on("/subscriptions", SimFaultAction::Status(400, None))
            .method(axum::http::Method::POST)
            .times(1),
    );
    env.create_sub(Sub::authvia("refused", "/authvia/refused")).await;
    let refused = env.wait_condition("refused", "Ready", "False", "InvalidSpec").await;
    assert!(condition(&refused, "Ready").unwrap().2.contains("injected HTTP 400"));
    tokio::time::sleep(Duration::from_secs(2)).await;
    let creates = creates(&env.authvia.core);
    assert_eq!(creates, 1, "no retry until the spec changes");
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
    env.create_sub(Sub::vonage("limited", "/vonage/limited")).await;
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
    env.create_sub(Sub::avaya("no-provider", "/avaya/x").provider("nope"))
        .await;
    let s = env
        .wait_condition("no-provider", "Ready", "False", "ProviderNotReady")
        .await;
    assert!(
        condition(&s, "Ready")
            .unwrap()
            .2
            .contains("WebhookProvider \"nope\" does not exist in namespace default")
    );
    env.create_sub(Sub::avaya("no-secret", "/avaya/y")).await;
    let s = env.wait_condition("no-secret", "Ready", "False", "InvalidSpec").await;
    assert!(
        condition(&s, "Ready")
            .unwrap()
            .2
            .contains("Secret default/avaya-token (referenced by spec.avaya.authToken) does not exist"),
        "{:?}",
        condition(&s, "Ready")
    );
    env.create_sub(Sub::vonage("wrong-block", "/vonage/w").provider("avaya"))
        .await;
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
    env.vonage_cluster_provider(
        "vonage-shared",
        json!({"namespaceSelector": {"matchLabels": {"team": "contact-centre"}}}),
    );
    env.create_sub(Sub::vonage("shared", "/vonage/shared").cluster_provider("vonage-shared"))
        .await;
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
    // The label change alone wakes the subscription (no request annotation, no timer: it waits on change).
    env.wait_ready("shared").await;
    env.put(
        "",
        "v1",
        "namespaces",
        "",
        json!({"metadata": {"name": "default", "labels": {"team": "elsewhere"}}}),
    );
    let s = env.wait_condition("shared", "Ready", "False", "ProviderNotReady").await;
    assert!(
        condition(&s, "Ready")
            .unwrap()
            .2
            .contains("does not admit namespace default")
    );

    // Providers report whether their credentials work.
    let providers: Api<webhook_operator::api::WebhookProvider> = Api::namespaced(env.client.clone(), NS);
    eventually(
        "provider avaya Ready (CredentialsValid)",
        WAIT,
        Duration::from_millis(50),
        || async {
            let p = providers.get("avaya").await.unwrap();
            p.status
                .and_then(|s| s.conditions.into_iter().find(|c| c.type_ == "Ready"))
                .filter(|c| c.status == "True" && c.reason == "CredentialsValid")
        },
    )
    .await;
}

/// Plain GET over HTTP/1.1: status line and body.
async fn http_get(addr: &str, path: &str) -> Option<String> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(addr).await.ok()?;
    stream
        .write_all(format!("GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n").as_bytes())
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
        .args(
            env.simulator_origins()
                .iter()
                .flat_map(|o| ["--allow-override-origin".to_string(), o.to_string()]),
        )
        .kill_on_drop(true)
        .stderr(std::fs::File::create(dir.join("operator.log")).unwrap())
        .spawn()
        .unwrap();
    env.create_sub(Sub::avaya("from-binary", "/avaya/binary")).await;
    env.wait_ready("from-binary").await;
    eventually("/readyz answers 200", WAIT, Duration::from_millis(100), || async {
        http_get(&metrics, "/readyz")
            .await
            .filter(|r| r.starts_with("HTTP/1.1 200"))
    })
    .await;
    let body = http_get(&metrics, "/metrics").await.unwrap();
    assert!(body.contains("application/openmetrics-text"), "{body}");
    // Every provider series names the provider object: kind, namespace, name, and the API it speaks.
    let provider =
        r#"provider_kind="WebhookProvider",provider_namespace="default",provider_name="avaya",provider_type="avaya""#;
    let has = |line: String| assert!(body.contains(&line), "{line} missing in {body}");
    has(format!(
        r#"webhook_operator_provider_requests_total{{{provider},operation="create",code="201"}} 1"#
    ));
    has(format!(
        r#"webhook_operator_provider_request_duration_seconds_count{{{provider},operation="create"}} 1"#
    ));
    has(format!(
        r#"webhook_operator_subscription_ready_status{{namespace="default",name="from-binary",{provider},condition="True"}} 1"#
    ));
    has(format!(
        r#"webhook_operator_subscription_expiration_timestamp_seconds{{namespace="default",name="from-binary",{provider}}}"#
    ));
    has(format!(
        r#"webhook_operator_provider_ready_status{{{provider},condition="True"}} 1"#
    ));
    has(r#"webhook_operator_leader_election_status{name="webhook-operator"} 1"#.to_string());
    has(format!(
        r#"webhook_operator_build_info{{version="{}"}} 1"#,
        env!("CARGO_PKG_VERSION")
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
    let log = std::fs::read_to_string(dir.join("operator.log")).unwrap();
    assert!(log.contains("became the leader"), "{log}");
    assert!(!log.contains('\u{1b}'), "no colour codes in a log file: {log}");
}

#[test]
fn a_missing_kubeconfig_is_named_once_with_its_cause() {
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_webhook-operator"))
        .args(["run", "--kubeconfig", "/nonexistent/kubeconfig"])
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(
        stderr.trim(),
        "error: cannot read the kubeconfig /nonexistent/kubeconfig: No such file or directory (os error 2)"
    );
}

#[tokio::test]
async fn per_object_state_is_forgotten_when_subscriptions_are_deleted() {
    let mut env = Env::start(Duration::from_secs(600)).await;
    env.start_controller();
    let context = env.context.clone().unwrap();
    // A thousand that fail before any remote call (their provider does not exist) and a few real ones:
    // each leaves state behind (retry gate, written status, last remote check).
    futures::stream::iter(0..1000)
        .for_each_concurrent(32, |i| {
            let env = &env;
            async move {
                env.create_sub(Sub::avaya(&format!("absent-{i:04}"), "/avaya/absent").provider("absent"))
                    .await;
            }
        })
        .await;
    for i in 0..10 {
        env.create_sub(Sub::vonage(&format!("real-{i}"), &format!("/vonage/real-{i}")))
            .await;
    }
    until("every subscription reconciled once", || context.objects.len() == 1010).await;
    for i in 0..10 {
        env.wait_ready(&format!("real-{i}")).await;
    }
    env.subs()
        .delete_collection(&DeleteParams::default(), &Default::default())
        .await
        .unwrap();
    // 1,010 finalizer passes on a debug build sharing two cores: what is asserted is the state left
    // behind, not how fast deletion goes, so this wait is longer than the usual one.
    eventually(
        "every subscription deleted",
        Duration::from_secs(90),
        Duration::from_millis(50),
        || async { (env.subs_in_store() == 0).then_some(()) },
    )
    .await;
    assert_eq!(context.objects.len(), 0, "per-object state outlived its objects");
    assert!(
        env.vonage.subscriptions().is_empty(),
        "the real ones were deleted remotely"
    );
}

#[tokio::test]
async fn a_create_whose_answer_was_lost_is_adopted_despite_a_lagging_cache() {
    let mut env = Env::start(Duration::from_secs(600)).await;
    env.start_controller();
    // The create succeeds at Vonage but its answer never arrives, and the controller's cache lags 4 s
    // behind, longer than the retry: the next pass must trust its own create-pending, not the cache.
    env.vonage.core.inject(
        SimFault::on("/webhooks/subscriptions", SimFaultAction::LoseAnswer)
            .method(axum::http::Method::POST)
            .times(1),
    );
    env.emu.set_watch_delivery(WatchDelivery {
        paused: false,
        delay: Duration::from_secs(4),
    });
    env.create_sub(Sub::vonage("lost-answer", "/vonage/lost-answer")).await;
    let ready = env.wait_ready("lost-answer").await;
    assert_eq!(env.vonage.subscriptions().len(), 1, "created once, never twice");
    assert_eq!(
        ready.status.unwrap().subscription_id.as_deref(),
        Some(env.vonage.subscriptions()[0].id.as_str())
    );
    let reasons = env.event_reasons("lost-answer");
    assert!(reasons.contains(&"Adopted".to_string()), "{reasons:?}");
    assert!(!reasons.contains(&"AlreadyExists".to_string()), "{reasons:?}");
}

#[tokio::test]
async fn a_vonage_signing_secret_is_generated_and_kept_before_the_create() {
    let mut env = Env::start(Duration::from_secs(600)).await;
    env.start_controller();
    // The first create fails: the secret the operator generated must already be kept, and be the one the
    // retry sends.
    env.vonage.core.inject(
        SimFault::on("/webhooks/subscriptions", SimFaultAction::Status(500, None))
            .method(axum::http::Method::POST)
            .times(1),
    );
    env.create_sub(Sub::vonage("unsigned", "/vonage/unsigned").without_signing_secret())
        .await;
    env.wait_ready("unsigned").await;
    let kept = env
        .secret_value("unsigned-vonage-signing", "secret")
        .expect("kept in the generated Secret");
    let posts: Vec<String> = env
        .vonage
        .core
        .requests()
        .into_iter()
        .filter(|r| r.method == "POST" && r.path.ends_with("/subscriptions"))
        .map(|r| r.body)
        .collect();
    assert_eq!(posts.len(), 2, "one failed create, one retry");
    for body in &posts {
        let sent: serde_json::Value = serde_json::from_str(body).unwrap();
        assert_eq!(sent["secret"], json!(kept), "every create sends the kept secret");
    }
    assert_eq!(env.vonage.subscriptions().len(), 1);
    assert_eq!(env.vonage.subscriptions()[0].secret, kept);
    assert!(env.event_reasons("unsigned").contains(&"SecretGenerated".to_string()));

    // The Secret is deleted: a new secret is generated and rotated in.
    let secrets: Api<k8s_openapi::api::core::v1::Secret> = Api::namespaced(env.client.clone(), NS);
    secrets
        .delete("unsigned-vonage-signing", &DeleteParams::default())
        .await
        .unwrap();
    until("a new secret generated and sent", || {
        env.secret_value("unsigned-vonage-signing", "secret")
            .is_some_and(|s| s != kept && env.vonage.subscriptions()[0].secret == s)
    })
    .await;
    assert_eq!(env.vonage.subscriptions().len(), 1);
}

#[tokio::test]
async fn a_copied_external_id_never_takes_over_another_namespaces_subscription() {
    let mut env = Env::start(Duration::from_secs(600)).await;
    env.tenant("team-b");
    env.start_controller();
    let victim = env.create_sub(Sub::vonage("victim", "/vonage/victim")).await;
    let id = env.wait_ready("victim").await.status.unwrap().subscription_id.unwrap();
    // Another tenant, on the same account, copies the victim's external-id.
    env.create_sub(
        Sub::vonage("copy", "/vonage/evil")
            .namespace("team-b")
            .annotate(annotation::EXTERNAL_ID, &id),
    )
    .await;
    until("the copy refused with AlreadyClaimed", || {
        env.get_sub_in("team-b", "copy")
            .and_then(|s| condition(&s, "Ready"))
            .is_some_and(|c| c.0 == "False" && c.1 == "AlreadyClaimed")
    })
    .await;
    let copy = env.get_sub_in("team-b", "copy").unwrap();
    let message = condition(&copy, "Ready").unwrap().2;
    assert!(
        message.contains("claimed by WebhookSubscription default/victim"),
        "{message}"
    );
    let remote = env.vonage.subscription(&id).unwrap();
    assert_eq!(remote.url, "https://hooks.example.com/vonage/victim", "never rewritten");
    assert_eq!(env.vonage.subscriptions().len(), 1);
    let ready = env.get_sub("victim").unwrap();
    assert_eq!(condition(&ready, "Ready").unwrap().1, "Available");
    assert_eq!(ready.uid(), victim.uid());

    // Deleting the copy does not delete the victim's remote subscription.
    let copies: Api<WebhookSubscription> = Api::namespaced(env.client.clone(), "team-b");
    copies.delete("copy", &DeleteParams::default()).await.unwrap();
    until("the copy is gone", || env.get_sub_in("team-b", "copy").is_none()).await;
    assert!(
        env.vonage.subscription(&id).is_some(),
        "the victim's remote subscription survives"
    );
    assert_eq!(
        condition(&env.get_sub("victim").unwrap(), "Ready").unwrap().1,
        "Available"
    );
}

#[tokio::test]
async fn annotations_that_cannot_be_understood_are_reported_and_stop_nobody() {
    let mut env = Env::start(Duration::from_secs(600)).await;
    env.start_controller();
    env.create_sub(
        Sub::vonage("forever", "/vonage/forever").annotate(annotation::DRIFT_CHECK_INTERVAL, "99999999999999999999h"),
    )
    .await;
    env.create_sub(Sub::vonage("yes", "/vonage/yes").annotate(annotation::PAUSED, "yes"))
        .await;
    env.create_sub(Sub::vonage("fine", "/vonage/fine")).await;
    let s = env.wait_condition("forever", "Ready", "False", "InvalidSpec").await;
    let message = condition(&s, "Ready").unwrap().2;
    assert!(
        message.contains("annotation webhook-operator.dev/drift-check-interval")
            && message.contains("between 10s and 8760h"),
        "{message}"
    );
    let s = env.wait_condition("yes", "Ready", "False", "InvalidSpec").await;
    assert!(condition(&s, "Ready").unwrap().2.contains("write \"true\" to pause"));
    env.wait_ready("fine").await;
    assert_eq!(
        env.vonage.subscriptions().len(),
        1,
        "nothing created for the unclear ones"
    );
    // Fixed, each goes on by itself.
    env.annotate("yes", annotation::PAUSED, "false").await;
    env.annotate("forever", annotation::DRIFT_CHECK_INTERVAL, "30m").await;
    env.wait_ready("yes").await;
    env.wait_ready("forever").await;
    assert_eq!(env.vonage.subscriptions().len(), 3);
}

#[tokio::test]
async fn a_subscription_paused_past_its_expiry_says_so_and_recovers_when_resumed() {
    let mut env = Env::start(Duration::from_secs(4)).await;
    env.secret(NS, "avaya-token", &[("token", AVAYA_TOKEN)]);
    env.start_controller();
    env.create_sub(Sub::avaya("sleepy", "/avaya/sleepy")).await;
    env.wait_ready("sleepy").await;
    env.annotate("sleepy", annotation::PAUSED, "true").await;
    let expired = env.wait_condition("sleepy", "Ready", "False", "Expired").await;
    assert!(condition(&expired, "Ready").unwrap().2.contains("while paused"));
    let reasons = env.event_reasons("sleepy");
    assert!(
        reasons.contains(&"ExpiresWhilePaused".to_string()),
        "warned ahead: {reasons:?}"
    );
    assert!(reasons.contains(&"Expired".to_string()), "{reasons:?}");
    // Status times have second precision, so Expired may be said up to a second early: wait until Avaya
    // agrees before resuming.
    let id = expired.status.unwrap().subscription_id.unwrap();
    until("INACTIVE at Avaya", || env.avaya.status_of(&id) == Some("INACTIVE")).await;
    env.annotate("sleepy", annotation::PAUSED, "false").await;
    env.wait_ready("sleepy").await;
    let reasons = env.event_reasons("sleepy");
    assert!(reasons.contains(&"Reactivated".to_string()), "{reasons:?}");
}

#[tokio::test]
async fn wrong_credentials_are_noticed_at_once_by_the_provider_and_its_subscriptions() {
    let mut env = Env::start(Duration::from_secs(600)).await;
    env.start_controller();
    env.create_sub(Sub::vonage("creds", "/vonage/creds")).await;
    env.wait_ready("creds").await;
    let providers: Api<webhook_operator::api::WebhookProvider> = Api::namespaced(env.client.clone(), NS);
    let provider_ready = |reason: &'static str| {
        let providers = providers.clone();
        move || {
            let providers = providers.clone();
            async move {
                let p = providers.get("vonage").await.ok()?;
                p.status?
                    .conditions
                    .into_iter()
                    .find(|c| c.type_ == "Ready" && c.reason == reason)
            }
        }
    };
    eventually(
        "provider Ready",
        WAIT,
        Duration::from_millis(50),
        provider_ready("CredentialsValid"),
    )
    .await;
    // The credentials Secret changes to a wrong secret: checked again at once (the periodic check is an
    // hour away in this environment), and the subscription says why without calling the provider.
    env.secret(
        NS,
        "vonage-credentials",
        &[("clientId", "vonage-client"), ("clientSecret", "wrong")],
    );
    let refused = eventually(
        "provider Unauthorized",
        WAIT,
        Duration::from_millis(50),
        provider_ready("Unauthorized"),
    )
    .await;
    assert_eq!(refused.status, "False");
    let s = env.wait_condition("creds", "Ready", "False", "ProviderNotReady").await;
    assert!(
        condition(&s, "Ready")
            .unwrap()
            .2
            .contains("WebhookProvider \"vonage\" cannot use its credentials"),
        "{:?}",
        condition(&s, "Ready")
    );
    // Fixed: both recover by themselves.
    env.secret(
        NS,
        "vonage-credentials",
        &[("clientId", VONAGE_ID), ("clientSecret", VONAGE_SECRET)],
    );
    eventually(
        "provider Ready again",
        WAIT,
        Duration::from_millis(50),
        provider_ready("CredentialsValid"),
    )
    .await;
    env.wait_ready("creds").await;
}

#[tokio::test]
async fn credentials_are_never_sent_to_a_host_the_tenant_chose() {
    let mut env = Env::start(Duration::from_secs(600)).await;
    // A tenant points a provider at a host of its own (here the receiver, which records every request),
    // over plain http, with the account's real credentials.
    let trap = env.receiver.url();
    env.put(
        GROUP,
        "v1alpha1",
        "webhookproviders",
        NS,
        json!({
            "apiVersion": "webhook-operator.dev/v1alpha1", "kind": "WebhookProvider",
            "metadata": {"name": "exfiltrate", "namespace": NS},
            "spec": {"vonage": {"baseUrl": format!("{trap}/webhooks"), "tokenUrl": format!("{trap}/token")},
                     "credentialsSecretRef": {"name": "vonage-credentials"}}
        }),
    );
    env.start_controller();
    env.create_sub(Sub::vonage("exfil", "/vonage/exfil").provider("exfiltrate"))
        .await;
    let s = env.wait_condition("exfil", "Ready", "False", "ProviderNotReady").await;
    let message = condition(&s, "Ready").unwrap().2;
    assert!(
        message.contains("spec.vonage.baseUrl") && message.contains("is refused"),
        "{message}"
    );
    assert!(message.contains("--allow-override-origin"), "{message}");
    let providers: Api<webhook_operator::api::WebhookProvider> = Api::namespaced(env.client.clone(), NS);
    let refused = eventually("provider not Ready", WAIT, Duration::from_millis(50), || async {
        providers
            .get("exfiltrate")
            .await
            .ok()?
            .status?
            .conditions
            .into_iter()
            .find(|c| c.type_ == "Ready" && c.status == "False")
    })
    .await;
    assert!(refused.message.contains("is refused"), "{refused:?}");
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        env.receiver.deliveries().is_empty(),
        "nothing reached the tenant's host"
    );
}
