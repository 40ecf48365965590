//! Scale benchmark of the emulated API server (issue 3): 10,000 WebhookSubscriptions stored, a kube
//! watcher's initial list, sustained status patches, and the process RSS. Run it with
//! `cargo test --release --test e2e scale -- --ignored --nocapture`; it is not part of the default run
//! because its figures depend on the machine.

use std::time::{Duration, Instant};

use futures::{StreamExt, TryStreamExt};
use kube::api::{Api, Patch, PatchParams, PostParams};
use kube::runtime::watcher::{self, watcher};
use serde_json::json;
use webhook_operator::api::{WebhookSubscription, crds};

const OBJECTS: usize = 10_000;
const PATCH_SECONDS: u64 = 10;
const PATCH_WORKERS: usize = 16;

fn rss_mib(pid: u32) -> f64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("procfs");
    let kib: f64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .expect("VmRSS");
    kib / 1024.0
}

fn subscription(i: usize) -> WebhookSubscription {
    serde_json::from_value(json!({
        "apiVersion": "webhook-operator.dev/v1alpha1", "kind": "WebhookSubscription",
        "metadata": {"name": format!("sub-{i:05}"), "namespace": "default", "labels": {"team": format!("t{}", i % 20)}},
        "spec": {"providerRef": {"name": "avaya"}, "endpoint": format!("https://hooks.example.com/{i}"),
                 "avaya": {"families": ["AGENT"], "events": ["Agent.LoggedIn", "Agent.LoggedOut"]}}
    }))
    .unwrap()
}

/// Runs `work` on `workers` concurrent tasks over indices 0.. until `done` says stop; returns the count.
async fn hammer<F, Fut>(workers: usize, done: impl Fn(usize) -> bool + Send + Sync + Copy + 'static, work: F) -> usize
where
    F: Fn(usize) -> Fut + Send + Sync + Clone + 'static,
    Fut: std::future::Future<Output = ()> + Send,
{
    let mut tasks = Vec::new();
    for worker in 0..workers {
        let work = work.clone();
        tasks.push(tokio::spawn(async move {
            let mut count = 0;
            let mut i = worker;
            while !done(i) {
                work(i).await;
                count += 1;
                i += workers;
            }
            count
        }));
    }
    let mut total = 0;
    for t in tasks {
        total += t.await.unwrap();
    }
    total
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "benchmark: run with --release --ignored --nocapture"]
async fn scale_ten_thousand_subscriptions() {
    // The emulator in its own process (`sandbox --api-only`), so its RSS is its own.
    let dir = std::env::temp_dir().join(format!("whop-scale-{}", std::process::id()));
    let kubeconfig = dir.join("kubeconfig");
    let mut server = std::process::Command::new(env!("CARGO_BIN_EXE_webhook-operator"))
        .args(["sandbox", "--api-only", "--kubeconfig"])
        .arg(&kubeconfig)
        .stdout(std::process::Stdio::null())
        .spawn()
        .expect("sandbox starts");
    let pid = server.id();
    let deadline = Instant::now() + Duration::from_secs(20);
    while !kubeconfig.exists() {
        assert!(Instant::now() < deadline, "kubeconfig written");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    tokio::time::sleep(Duration::from_millis(100)).await;
    let yaml = std::fs::read_to_string(&kubeconfig).unwrap();
    let url = yaml
        .lines()
        .find_map(|l| l.trim().strip_prefix("server: "))
        .expect("server URL")
        .to_string();
    let client = kube::Client::try_from(kube::Config::new(url.parse().unwrap())).unwrap();
    let rss_idle = rss_mib(pid);

    let crd_api: Api<k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition> =
        Api::all(client.clone());
    for crd in crds() {
        crd_api.create(&Default::default(), &crd).await.unwrap();
    }
    let subs: Api<WebhookSubscription> = Api::namespaced(client.clone(), "default");
    let started = Instant::now();
    let api = subs.clone();
    let created = hammer(
        8,
        |i| i >= OBJECTS,
        move |i| {
            let api = api.clone();
            async move {
                api.create(&PostParams::default(), &subscription(i)).await.unwrap();
            }
        },
    )
    .await;
    assert_eq!(created, OBJECTS);
    let seeded = started.elapsed();
    let rss_seeded = rss_mib(pid);

    let started = Instant::now();
    let mut stream = watcher(subs.clone(), watcher::Config::default()).boxed();
    let mut initial = 0;
    loop {
        match stream.try_next().await.unwrap().unwrap() {
            watcher::Event::InitApply(_) => initial += 1,
            watcher::Event::InitDone => break,
            _ => {}
        }
    }
    let list_time = started.elapsed();
    assert_eq!(initial, OBJECTS);
    // Keep the watch open during the patch load, as the operator would.
    let drain = tokio::spawn(async move { while let Some(Ok(_)) = stream.next().await {} });

    let until = Instant::now() + Duration::from_secs(PATCH_SECONDS);
    let api = subs.clone();
    let patches = hammer(
        PATCH_WORKERS,
        move |_| Instant::now() >= until,
        move |i| {
            let api = api.clone();
            async move {
                let params = PatchParams::apply("webhook-operator").force();
                let status = json!({"apiVersion": "webhook-operator.dev/v1alpha1", "kind": "WebhookSubscription",
                    "status": {"remoteState": "ACTIVE", "renewalCount": i}});
                api.patch_status(&format!("sub-{:05}", i % OBJECTS), &params, &Patch::Apply(&status))
                    .await
                    .unwrap();
            }
        },
    )
    .await;
    let rate = patches as f64 / PATCH_SECONDS as f64;
    let rss = rss_mib(pid);
    drain.abort();
    server.kill().ok();
    server.wait().ok();
    std::fs::remove_dir_all(&dir).ok();
    println!(
        "scale: emulator RSS idle {rss_idle:.0} MiB; {OBJECTS} creates in {seeded:.1?} ({:.0}/s), RSS {rss_seeded:.0} MiB; \
         watcher initial list {list_time:.1?}; {patches} status applies in {PATCH_SECONDS}s = {rate:.0}/s \
         ({PATCH_WORKERS} clients); emulator RSS after load {rss:.0} MiB",
        OBJECTS as f64 / seeded.as_secs_f64()
    );
    assert!(rate >= 1000.0, "status patches per second: {rate:.0}");
    assert!(rss < 200.0, "emulator RSS {rss:.0} MiB");
}
