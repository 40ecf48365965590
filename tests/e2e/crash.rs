//! Crash safety: the real `webhook-operator run` process, SIGKILLed at random moments while it creates
//! and deletes, and two replicas with leader election whose leader is killed or stopped. Whatever the
//! moment, each resource ends with exactly one remote subscription, deletions leave nothing behind, no
//! generated signing secret is lost, and no two replicas act at once.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use futures::StreamExt;
use kube::api::{Api, DeleteParams, ListParams};
use serde_json::json;
use tokio::process::{Child, Command};
use webhook_operator::api::WebhookSubscription;

use crate::support::env::Env;
use crate::support::fixtures::{AUTHVIA_SIGNING, AVAYA_TOKEN, GROUP, NS, Sub};
use crate::support::poll::eventually;

/// How long the whole system may take to converge after the last kill.
const CONVERGE: Duration = Duration::from_secs(180);

/// The environment, with providers allowed a high request rate (the test is about crashes, not limits).
async fn environment() -> (Env, PathBuf) {
    let env = Env::start(Duration::from_secs(600)).await;
    env.secret(NS, "avaya-token", &[("token", AVAYA_TOKEN)]);
    env.secret(
        NS,
        "authvia-hook",
        &[("signingSecret", AUTHVIA_SIGNING), ("apiKey", "api-key-1")],
    );
    for name in ["avaya", "vonage", "authvia"] {
        let mut provider = env.emu.get(GROUP, "v1alpha1", "webhookproviders", NS, name).unwrap();
        provider["spec"]["rateLimit"] = json!({"requestsPerSecond": 500, "burst": 500});
        env.put(GROUP, "v1alpha1", "webhookproviders", NS, provider);
    }
    let dir = std::env::temp_dir().join(format!("whop-crash-{}-{}", std::process::id(), fastrand::u32(..)));
    std::fs::create_dir_all(&dir).unwrap();
    let kubeconfig = dir.join("kubeconfig");
    env.emu.write_kubeconfig(&kubeconfig).unwrap();
    (env, kubeconfig)
}

/// Starts `webhook-operator run` against the environment.
fn operator(env: &Env, kubeconfig: &PathBuf, extra: &[&str]) -> Child {
    let log = kubeconfig.with_file_name(format!("operator-{}.log", fastrand::u32(..)));
    Command::new(env!("CARGO_BIN_EXE_webhook-operator"))
        .args(["run", "--cluster-resource-namespace", "webhook-operator"])
        .args(["--metrics-addr", "127.0.0.1:0", "--kubeconfig"])
        .arg(kubeconfig)
        .args(
            env.simulator_origins()
                .iter()
                .flat_map(|o| ["--allow-override-origin".to_string(), o.to_string()]),
        )
        .args(extra)
        .env(
            "RUST_LOG",
            "debug,kube_runtime=info,hyper=info,reqwest=info,h2=info,rustls=info",
        )
        .kill_on_drop(true)
        .stderr(std::fs::File::create(log).unwrap())
        .spawn()
        .unwrap()
}

/// The 200 resources: a third per provider, Vonage ones without a signing secret (the operator generates
/// and keeps one).
fn resources() -> Vec<WebhookSubscription> {
    (0..200)
        .map(|i| match i % 3 {
            0 => Sub::avaya(&format!("a-{i:03}"), &format!("/avaya/{i}")).build(),
            1 => Sub::vonage(&format!("v-{i:03}"), &format!("/vonage/{i}"))
                .without_signing_secret()
                .build(),
            _ => Sub::authvia(&format!("w-{i:03}"), &format!("/authvia/{i}")).build(),
        })
        .collect()
}

/// Remote subscription ids per provider, from the simulators.
fn remote_ids(env: &Env) -> BTreeMap<&'static str, Vec<String>> {
    BTreeMap::from([
        ("avaya", env.avaya.subscriptions().into_iter().map(|s| s.id).collect()),
        ("vonage", env.vonage.subscriptions().into_iter().map(|s| s.id).collect()),
        (
            "authvia",
            env.authvia.subscriptions().into_iter().map(|s| s.id).collect(),
        ),
    ])
}

/// Waits until `count` subscriptions are Ready; returns them.
async fn all_ready(subs: &Api<WebhookSubscription>, count: usize) -> Vec<WebhookSubscription> {
    eventually(
        &format!("all {count} Ready"),
        CONVERGE,
        Duration::from_millis(300),
        || async {
            let list = subs.list(&ListParams::default()).await.ok()?;
            let ready = list
                .items
                .iter()
                .filter(|s| {
                    s.status
                        .as_ref()
                        .is_some_and(|st| st.conditions.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
                })
                .count();
            (ready == count).then_some(list.items)
        },
    )
    .await
}

/// Kills and restarts the operator `kills` times at random moments (0.2 to 1.5 s apart) while `work`
/// runs, then leaves one running.
async fn with_kills<F: std::future::Future<Output = ()>>(
    env: &Env,
    kubeconfig: &PathBuf,
    kills: usize,
    work: F,
) -> Child {
    let mut child = operator(env, kubeconfig, &[]);
    let killer = async {
        for _ in 0..kills {
            tokio::time::sleep(Duration::from_millis(200 + fastrand::u64(..1300))).await;
            child.kill().await.unwrap();
            child = operator(env, kubeconfig, &[]);
        }
    };
    futures::join!(work, killer);
    child
}

#[tokio::test]
async fn sigkills_during_creates_and_deletes_lose_nothing_and_duplicate_nothing() {
    let (env, kubeconfig) = environment().await;
    let subs: Api<WebhookSubscription> = Api::namespaced(env.client.clone(), NS);
    let created = Instant::now();
    let work = futures::stream::iter(resources()).for_each_concurrent(8, |sub| {
        let subs = subs.clone();
        async move {
            tokio::time::sleep(Duration::from_millis(fastrand::u64(..50))).await;
            subs.create(&Default::default(), &sub).await.unwrap();
        }
    });
    let mut child = with_kills(&env, &kubeconfig, 10, work).await;
    let all = all_ready(&subs, 200).await;
    eprintln!(
        "creates: 200 Ready {:.1}s after the first create",
        created.elapsed().as_secs_f64()
    );

    // Exactly one remote subscription per resource, and it is the one the resource records.
    let remote = remote_ids(&env);
    for (provider, prefix) in [("avaya", "a-"), ("vonage", "v-"), ("authvia", "w-")] {
        let mine: Vec<&WebhookSubscription> = all
            .iter()
            .filter(|s| s.metadata.name.as_deref().unwrap().starts_with(prefix))
            .collect();
        assert_eq!(remote[provider].len(), mine.len(), "{provider}: no duplicate, no leak");
        for s in mine {
            let id = s.status.as_ref().unwrap().subscription_id.clone().unwrap();
            assert!(remote[provider].contains(&id), "{provider}: {id} exists remotely");
        }
    }
    // No generated signing secret lost: each Vonage subscription's is kept and is the one Vonage has.
    for s in env.vonage.subscriptions() {
        let resource = s.name.strip_prefix("default-").unwrap().to_string();
        let kept = env
            .secret_value(&format!("{resource}-vonage-signing"), "secret")
            .unwrap_or_else(|| panic!("{resource}: generated secret lost"));
        assert_eq!(kept, s.secret, "{resource}: the kept secret is Vonage's");
    }

    // No secret value in anything the operator produced: its debug logs across every restart, and every
    // object it wrote or touched except the Secrets themselves (subscriptions, their status and
    // annotations, Events, providers, the Lease).
    let mut secrets: Vec<String> = [
        AVAYA_TOKEN,
        AUTHVIA_SIGNING,
        "api-key-1",
        crate::support::fixtures::AVAYA_SECRET,
        crate::support::fixtures::VONAGE_SECRET,
        crate::support::fixtures::AUTHVIA_KEY,
    ]
    .map(str::to_string)
    .to_vec();
    secrets.extend(env.vonage.subscriptions().into_iter().map(|s| s.secret));
    let mut outputs: Vec<(String, String)> = env.emu.with_state(|s| {
        s.resources()
            .iter()
            .filter(|rt| rt.plural != "secrets")
            .flat_map(|rt| s.objects_of(rt))
            .map(|o| (format!("{} {}", o["kind"], o["metadata"]["name"]), o.to_string()))
            .collect()
    });
    for entry in std::fs::read_dir(kubeconfig.parent().unwrap()).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "log") {
            outputs.push((path.display().to_string(), std::fs::read_to_string(&path).unwrap()));
        }
    }
    let scanned: usize = outputs.iter().map(|(_, text)| text.len()).sum();
    assert!(scanned > 100_000, "the scan covers real output ({scanned} bytes)");
    for (what, text) in &outputs {
        for secret in &secrets {
            assert!(!text.contains(secret.as_str()), "a secret value appears in {what}");
        }
    }
    eprintln!(
        "no-secret scan: {} outputs, {scanned} bytes, {} secret values",
        outputs.len(),
        secrets.len()
    );

    // Deletes, with 10 more kills.
    let work = async {
        subs.delete_collection(&DeleteParams::default(), &ListParams::default())
            .await
            .unwrap();
    };
    child.kill().await.unwrap();
    let deleting = Instant::now();
    let mut child = with_kills(&env, &kubeconfig, 10, work).await;
    eventually(
        "every resource deleted",
        CONVERGE,
        Duration::from_millis(500),
        || async {
            subs.list(&ListParams::default())
                .await
                .ok()
                .filter(|l| l.items.is_empty())
                .map(|_| ())
        },
    )
    .await;
    let left = remote_ids(&env);
    assert!(left.values().all(Vec::is_empty), "nothing left remotely: {left:?}");
    eprintln!(
        "deletes: 200 gone {:.1}s after the delete-collection",
        deleting.elapsed().as_secs_f64()
    );
    child.kill().await.unwrap();
}

#[tokio::test]
async fn a_killed_or_stopped_leader_is_replaced_and_never_acts_beside_the_new_one() {
    let (env, kubeconfig) = environment().await;
    let election = |id: &'static str| {
        [
            "--leader-election",
            "--leader-election-id",
            id,
            "--leader-election-lease-duration",
            "3s",
            "--leader-election-renew-deadline",
            "2s",
            "--leader-election-retry-period",
            "500ms",
        ]
    };
    let holder = || {
        env.emu
            .get(
                "coordination.k8s.io",
                "v1",
                "leases",
                "webhook-operator",
                "webhook-operator",
            )
            .and_then(|l| l["spec"]["holderIdentity"].as_str().map(str::to_string))
    };
    let mut a = operator(&env, &kubeconfig, &election("replica-a"));
    let leader = eventually(
        "replica-a leads",
        Duration::from_secs(20),
        Duration::from_millis(100),
        || async { (holder().as_deref() == Some("replica-a")).then_some(()) },
    );
    leader.await;
    let mut b = operator(&env, &kubeconfig, &election("replica-b"));
    let subs: Api<WebhookSubscription> = Api::namespaced(env.client.clone(), NS);
    for sub in resources().into_iter().take(30) {
        subs.create(&Default::default(), &sub).await.unwrap();
    }
    // SIGKILL the leader mid-work: replica-b takes over within the lease.
    tokio::time::sleep(Duration::from_millis(300)).await;
    a.kill().await.unwrap();
    let killed = Instant::now();
    eventually(
        "replica-b leads",
        Duration::from_secs(10),
        Duration::from_millis(100),
        || async { (holder().as_deref() == Some("replica-b")).then_some(()) },
    )
    .await;
    let handover = killed.elapsed();
    assert!(
        handover < Duration::from_secs(5),
        "handover within the lease: {handover:?}"
    );
    eprintln!(
        "leader SIGKILLed: replica-b led {:.1}s later (lease 3 s)",
        handover.as_secs_f64()
    );
    // SIGSTOP the new leader (hung), start another: it takes over; the hung one, resumed, acts no more
    // and exits.
    let c = operator(&env, &kubeconfig, &election("replica-c"));
    for sub in resources().into_iter().skip(30).take(30) {
        subs.create(&Default::default(), &sub).await.unwrap();
    }
    let b_pid = b.id().unwrap().to_string();
    assert!(
        std::process::Command::new("kill")
            .args(["-STOP", &b_pid])
            .status()
            .unwrap()
            .success()
    );
    let stopped = Instant::now();
    eventually(
        "replica-c leads",
        Duration::from_secs(15),
        Duration::from_millis(100),
        || async { (holder().as_deref() == Some("replica-c")).then_some(()) },
    )
    .await;
    eprintln!(
        "leader SIGSTOPped: replica-c led {:.1}s later (lease 3 s)",
        stopped.elapsed().as_secs_f64()
    );
    assert!(
        std::process::Command::new("kill")
            .args(["-CONT", &b_pid])
            .status()
            .unwrap()
            .success()
    );
    let status = tokio::time::timeout(Duration::from_secs(10), b.wait())
        .await
        .expect("the resumed old leader exits")
        .unwrap();
    assert!(!status.success(), "it exits non-zero: {status:?}");
    let all = all_ready(&subs, 60).await;
    let remote: usize = remote_ids(&env).values().map(Vec::len).sum();
    assert_eq!(remote, all.len(), "no double create across three leaders");
    drop(c);
}
