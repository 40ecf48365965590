//! kube 5 drives the emulated API server the way the operator will: watcher, finalizer helper, Recorder,
//! server-side apply of status, generation rules and optimistic concurrency.

use std::sync::Arc;
use std::time::Duration;

use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::api::events::v1::Event as K8sEvent;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use kube::runtime::controller::Action;
use kube::runtime::events::{Event, EventType, Recorder, Reporter};
use kube::runtime::finalizer::{Event as FinalizerEvent, finalizer};
use kube::runtime::watcher::{self, watcher};
use kube::{Client, Resource, ResourceExt};
use serde_json::json;
use webhook_operator::api::{WebhookSubscription, crds};
use webhook_operator::sandbox::kube::{Emulator, EmulatorOptions, WatchControl};

use crate::support::fixtures::Sub;

const WAIT: Duration = Duration::from_secs(10);

async fn emulator() -> (Emulator, Client) {
    let emulator = Emulator::start(EmulatorOptions::default())
        .await
        .expect("emulator starts");
    let client = emulator.client();
    (emulator, client)
}

async fn install_crds(client: &Client) {
    let api: Api<CustomResourceDefinition> = Api::all(client.clone());
    for crd in crds() {
        api.create(&PostParams::default(), &crd).await.expect("CRD created");
    }
}

fn subscription(name: &str) -> WebhookSubscription {
    Sub::avaya(name, "/a").without_auth_token().build()
}

fn secret(name: &str) -> Secret {
    serde_json::from_value(json!({"metadata": {"name": name, "labels": {"app": "test"}}, "stringData": {"k": "v"}}))
        .unwrap()
}

/// The next watcher event, failing the test after a timeout or an error.
async fn next_event<S>(stream: &mut S) -> watcher::Event<Secret>
where
    S: futures::Stream<Item = Result<watcher::Event<Secret>, watcher::Error>> + Unpin,
{
    tokio::time::timeout(WAIT, stream.try_next())
        .await
        .expect("event in time")
        .expect("no error")
        .expect("stream open")
}

/// The names the watcher's initial list delivers, up to InitDone.
async fn initial_names<S>(stream: &mut S) -> Vec<String>
where
    S: futures::Stream<Item = Result<watcher::Event<Secret>, watcher::Error>> + Unpin,
{
    let mut names = Vec::new();
    loop {
        match next_event(stream).await {
            watcher::Event::InitApply(s) => names.push(s.name_any()),
            watcher::Event::InitDone => return names,
            _ => {}
        }
    }
}

/// How many plain (non-watch) GETs the server has served.
fn list_calls(emu: &Emulator) -> usize {
    emu.requests()
        .iter()
        .filter(|r| r.method == "GET" && !r.query.contains("watch"))
        .count()
}

#[tokio::test]
async fn watcher_pages_the_initial_list_then_follows_changes() {
    let (emu, client) = emulator().await;
    let secrets: Api<Secret> = Api::namespaced(client, "default");
    for i in 0..5 {
        secrets
            .create(&PostParams::default(), &secret(&format!("s{i}")))
            .await
            .unwrap();
    }
    let config = watcher::Config::default().labels("app=test").page_size(2);
    let mut stream = watcher(secrets.clone(), config).boxed();
    let initial = initial_names(&mut stream).await;
    assert_eq!(initial, vec!["s0", "s1", "s2", "s3", "s4"]);
    let pages = emu
        .requests()
        .iter()
        .filter(|r| r.method == "GET" && r.query.contains("limit=2"))
        .count();
    assert_eq!(pages, 3, "five items in pages of two");
    secrets.create(&PostParams::default(), &secret("s5")).await.unwrap();
    let next = next_event(&mut stream).await;
    assert!(matches!(next, watcher::Event::Apply(ref s) if s.name_any() == "s5"));

    // A closed stream resumes from the last resourceVersion without a relist.
    let lists_before = list_calls(&emu);
    emu.control_watches(WatchControl::Close);
    tokio::time::sleep(Duration::from_millis(100)).await;
    secrets.create(&PostParams::default(), &secret("s6")).await.unwrap();
    let next = next_event(&mut stream).await;
    assert!(matches!(next, watcher::Event::Apply(ref s) if s.name_any() == "s6"));
    let lists_after = list_calls(&emu);
    assert_eq!(lists_before, lists_after, "resumed with a watch, not a list");
}

#[tokio::test]
async fn watcher_relists_after_an_in_stream_410() {
    let (emu, client) = emulator().await;
    let secrets: Api<Secret> = Api::namespaced(client, "default");
    secrets.create(&PostParams::default(), &secret("a")).await.unwrap();
    let mut stream = watcher(secrets.clone(), watcher::Config::default()).boxed();
    let mut inits = 0;
    let mut saw_b_in_relist = false;
    let deadline = tokio::time::Instant::now() + WAIT;
    let mut compacted = false;
    let mut saw_410 = false;
    while tokio::time::Instant::now() < deadline {
        let event = match tokio::time::timeout(WAIT, stream.next()).await.unwrap().unwrap() {
            Ok(event) => event,
            // kube surfaces the in-stream ERROR once, then relists on the next poll.
            Err(watcher::Error::WatchError(status)) if status.code == 410 => {
                saw_410 = true;
                continue;
            }
            Err(other) => panic!("unexpected watcher error: {other}"),
        };
        match event {
            watcher::Event::Init => inits += 1,
            watcher::Event::InitApply(s) if inits == 2 && s.name_any() == "b" => saw_b_in_relist = true,
            watcher::Event::InitDone if !compacted => {
                // History is gone: the resume must get ERROR 410 in the stream and relist.
                emu.control_watches(WatchControl::Close);
                secrets.create(&PostParams::default(), &secret("b")).await.unwrap();
                emu.compact();
                compacted = true;
            }
            watcher::Event::InitDone => break,
            _ => {}
        }
    }
    assert_eq!(inits, 2, "one initial list and one relist");
    assert!(saw_410, "the resume got an in-stream 410, not an HTTP error");
    assert!(saw_b_in_relist);
}

#[tokio::test]
async fn streaming_lists_end_with_the_initial_events_bookmark() {
    let (emu, client) = emulator().await;
    let secrets: Api<Secret> = Api::namespaced(client, "default");
    secrets.create(&PostParams::default(), &secret("a")).await.unwrap();
    let mut stream = watcher(secrets, watcher::Config::default().streaming_lists()).boxed();
    let names = initial_names(&mut stream).await;
    assert_eq!(names, vec!["a"]);
    assert!(
        emu.requests()
            .iter()
            .any(|r| r.query.contains("sendInitialEvents=true"))
    );
    assert!(
        !emu.requests()
            .iter()
            .any(|r| r.method == "GET" && r.query.contains("limit=")),
        "no list call"
    );
}

#[derive(Debug, thiserror::Error)]
#[error("never")]
struct Never;

#[tokio::test]
async fn finalizer_helper_round_trip_and_deletion() {
    let (emu, client) = emulator().await;
    install_crds(&client).await;
    let subs: Api<WebhookSubscription> = Api::namespaced(client, "default");
    subs.create(&PostParams::default(), &subscription("f")).await.unwrap();
    let name = "webhook-operator.dev/finalizer";
    let run = |obj: WebhookSubscription| {
        let subs = subs.clone();
        async move {
            let mut cleaned = false;
            let flag = &mut cleaned;
            finalizer(&subs, name, Arc::new(obj), |event| async move {
                if let FinalizerEvent::Cleanup(_) = event {
                    *flag = true;
                }
                Ok::<_, Never>(Action::await_change())
            })
            .await
            .expect("finalizer helper succeeds");
            cleaned
        }
    };
    // First call adds the finalizer (test null + add), second applies.
    assert!(!run(subs.get("f").await.unwrap()).await);
    let with_finalizer = subs.get("f").await.unwrap();
    assert_eq!(with_finalizer.finalizers(), &[name.to_string()]);
    assert_eq!(
        with_finalizer.meta().generation,
        Some(1),
        "metadata changes keep generation"
    );
    assert!(!run(with_finalizer).await);

    let deleted = subs.delete("f", &DeleteParams::default()).await.unwrap();
    let marked = deleted
        .left()
        .expect("an object with finalizers is marked, not removed");
    assert!(marked.meta().deletion_timestamp.is_some());
    assert_eq!(marked.meta().generation, Some(2), "deletion marking bumps generation");
    assert!(run(marked).await, "cleanup ran");
    let gone = emu
        .wait_for(
            "webhook-operator.dev",
            "v1alpha1",
            "webhooksubscriptions",
            "default",
            "f",
            WAIT,
            |o| o.is_none(),
        )
        .await;
    assert!(gone.is_ok(), "removing the last finalizer deletes the object");
    // Re-creating and adding the first finalizer again works: no empty finalizers list was left behind.
    subs.create(&PostParams::default(), &subscription("f")).await.unwrap();
    assert!(!run(subs.get("f").await.unwrap()).await);
}

#[tokio::test]
async fn recorder_creates_then_patches_a_series() {
    let (emu, client) = emulator().await;
    let secrets: Api<Secret> = Api::namespaced(client.clone(), "default");
    let created = secrets
        .create(&PostParams::default(), &secret("regarding"))
        .await
        .unwrap();
    let recorder = Recorder::new(
        client.clone(),
        Reporter {
            controller: "webhook-operator".into(),
            instance: Some("test".into()),
        },
    );
    let event = Event {
        type_: EventType::Normal,
        reason: "Created".into(),
        note: Some("made".into()),
        action: "Create".into(),
        secondary: None,
    };
    let reference = created.object_ref(&());
    recorder.publish(&event, &reference).await.unwrap();
    recorder.publish(&event, &reference).await.unwrap();
    let events: Api<K8sEvent> = Api::namespaced(client.clone(), "default");
    let stored = events.list(&Default::default()).await.unwrap().items;
    assert_eq!(stored.len(), 1);
    assert_eq!(stored[0].series.as_ref().map(|s| s.count), Some(2));
    // The core/v1 view that `kubectl describe` reads, selected as kubectl selects it.
    let core: Api<k8s_openapi::api::core::v1::Event> = Api::namespaced(client, "default");
    let selector = format!(
        "involvedObject.name=regarding,involvedObject.uid={}",
        created.uid().unwrap()
    );
    let view = core
        .list(&kube::api::ListParams::default().fields(&selector))
        .await
        .unwrap()
        .items;
    assert_eq!(view.len(), 1);
    assert_eq!(view[0].count, Some(2));
    assert_eq!(view[0].reason, stored[0].reason);
    assert_eq!(view[0].message, stored[0].note);
    assert_eq!(view[0].involved_object.name.as_deref(), Some("regarding"));
    let writes: Vec<String> = emu
        .requests()
        .iter()
        .filter(|r| r.path.contains("/events") && r.method != "GET")
        .map(|r| r.method.clone())
        .collect();
    assert_eq!(writes, vec!["POST", "PATCH"]);
}

#[tokio::test]
async fn status_apply_generation_and_conflicts() {
    let (_emu, client) = emulator().await;
    install_crds(&client).await;
    let subs: Api<WebhookSubscription> = Api::namespaced(client, "default");
    let created = subs.create(&PostParams::default(), &subscription("s")).await.unwrap();
    let status = json!({"apiVersion": "webhook-operator.dev/v1alpha1", "kind": "WebhookSubscription",
        "status": {"remoteState": "ACTIVE", "subscriptionId": "1b4e28ba-2fa1-11d2-883f-0016d3cca427"}});
    let params = PatchParams::apply("webhook-operator").force();
    let first = subs.patch_status("s", &params, &Patch::Apply(&status)).await.unwrap();
    assert_ne!(first.resource_version(), created.resource_version());
    assert_eq!(first.meta().generation, Some(1), "status writes keep generation");
    let again = subs.patch_status("s", &params, &Patch::Apply(&status)).await.unwrap();
    assert_eq!(
        again.resource_version(),
        first.resource_version(),
        "a no-op apply keeps resourceVersion"
    );

    // Status sent to the main endpoint is ignored; a spec change bumps generation.
    let patched = subs
        .patch(
            "s",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"endpoint": "https://hooks.example.com/b"}, "status": {"remoteState": "X"}})),
        )
        .await
        .unwrap();
    assert_eq!(patched.meta().generation, Some(2));
    assert_eq!(patched.status.unwrap().remote_state.as_deref(), Some("ACTIVE"));

    // A replace with a stale resourceVersion conflicts.
    let mut stale = first.clone();
    stale.spec.endpoint = "https://hooks.example.com/c".into();
    let err = subs.replace("s", &PostParams::default(), &stale).await.unwrap_err();
    assert!(
        matches!(err, kube::Error::Api(ref s) if s.code == 409 && s.reason == "Conflict"),
        "{err}"
    );

    // The schema's CEL rules answer 422 with the rule's message.
    let mut bad = subscription("bad");
    bad.spec.endpoint = "http://hooks.example.com".into();
    let err = subs.create(&PostParams::default(), &bad).await.unwrap_err();
    match err {
        kube::Error::Api(s) => {
            assert_eq!((s.code, s.reason.as_str()), (422, "Invalid"));
            assert!(
                s.message.contains("spec.endpoint must use https (https://...)"),
                "{}",
                s.message
            );
        }
        other => panic!("expected 422, got {other}"),
    }
}

#[tokio::test]
async fn apply_ownership_conflicts_and_managed_fields() {
    let (_emu, client) = emulator().await;
    let secrets: Api<Secret> = Api::namespaced(client, "default");
    let config = |value: &str| json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "lease", "labels": {"holder": value}}});
    let a = PatchParams::apply("contender-a");
    let b = PatchParams::apply("contender-b");
    secrets.patch("lease", &a, &Patch::Apply(config("a"))).await.unwrap();
    // b applying the same value shares ownership; applying another value conflicts (no force).
    secrets.patch("lease", &b, &Patch::Apply(config("a"))).await.unwrap();
    let err = secrets
        .patch("lease", &b, &Patch::Apply(config("b")))
        .await
        .unwrap_err();
    match err {
        kube::Error::Api(s) => {
            assert_eq!((s.code, s.reason.as_str()), (409, "Conflict"));
            assert!(
                s.message
                    .contains("conflict with \"contender-a\": .metadata.labels.holder"),
                "{}",
                s.message
            );
        }
        other => panic!("expected 409, got {other}"),
    }
    let forced = secrets
        .patch("lease", &b.clone().force(), &Patch::Apply(config("b")))
        .await
        .unwrap();
    let managers: Vec<(String, String)> = forced
        .managed_fields()
        .iter()
        .map(|m| (m.manager.clone().unwrap(), m.operation.clone().unwrap()))
        .collect();
    assert_eq!(managers, vec![("contender-b".to_string(), "Apply".to_string())]);
}

#[tokio::test]
async fn metadata_only_reads_faults_and_paused_watches() {
    use kube::core::PartialObjectMeta;
    use webhook_operator::sandbox::kube::{FaultAction, FaultRule, WatchDelivery};
    let (emu, client) = emulator().await;
    let secrets: Api<Secret> = Api::namespaced(client.clone(), "default");
    secrets.create(&PostParams::default(), &secret("a")).await.unwrap();

    let meta: PartialObjectMeta<Secret> = secrets.get_metadata("a").await.unwrap();
    assert_eq!(meta.name_any(), "a");
    let listed = secrets.list_metadata(&Default::default()).await.unwrap();
    assert_eq!(listed.items.len(), 1);

    // The second GET of "a" breaks mid-response; the rule then retires.
    emu.inject_fault(
        FaultRule::new(FaultAction::Drop)
            .methods(&[axum_method("GET")])
            .path("/secrets/a$")
            .skip(1)
            .times(1),
    );
    secrets.get("a").await.expect("first call passes");
    assert!(secrets.get("a").await.is_err(), "second call dropped");
    secrets.get("a").await.expect("rule retired");

    // Injected conflicts hit the next writes to that object only.
    emu.inject_conflicts("secrets", "a", 1);
    let merge = Patch::Merge(json!({"metadata": {"labels": {"x": "1"}}}));
    let err = secrets.patch("a", &PatchParams::default(), &merge).await.unwrap_err();
    assert!(matches!(err, kube::Error::Api(ref s) if s.code == 409), "{err}");
    secrets.patch("a", &PatchParams::default(), &merge).await.unwrap();

    // A paused watch holds events back, then delivers them in order.
    let mut stream = watcher(secrets.clone(), watcher::Config::default()).boxed();
    assert_eq!(initial_names(&mut stream).await, vec!["a"]);
    emu.set_watch_delivery(WatchDelivery {
        paused: true,
        delay: Duration::ZERO,
    });
    secrets.create(&PostParams::default(), &secret("b")).await.unwrap();
    assert!(
        tokio::time::timeout(Duration::from_millis(400), stream.try_next())
            .await
            .is_err(),
        "nothing while paused"
    );
    emu.set_watch_delivery(WatchDelivery::default());
    match next_event(&mut stream).await {
        watcher::Event::Apply(s) => assert_eq!(s.name_any(), "b"),
        other => panic!("expected b, got {other:?}"),
    }
}

fn axum_method(name: &str) -> axum::http::Method {
    name.parse().unwrap()
}
