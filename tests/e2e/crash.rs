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

/// The environment, with providers allowed a high request rate (the test is about crashes, not limits)
/// and Avaya subscriptions that live `lifetime`.
async fn environment(lifetime: Duration) -> (Env, PathBuf) {
    let env = Env::start(lifetime).await;
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
    let (env, kubeconfig) = environment(Duration::from_secs(600)).await;
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
    // Avaya subscriptions live 8 s, so renewals (every ~5 s) are due while leaders change hands.
    let (env, kubeconfig) = environment(Duration::from_secs(8)).await;
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
    // Renewals went on through both handovers (each Avaya subscription renewed at least twice and
    // active), and no subscription was ever renewed twice in a row by two leaders: one renewal answers
    // for ~5 s, so two of the same subscription within 1.5 s are two replicas acting at once.
    eventually(
        "every Avaya subscription renewed twice and active",
        CONVERGE,
        Duration::from_millis(300),
        || async {
            let avaya = env.avaya.subscriptions();
            (avaya.len() == 20
                && avaya
                    .iter()
                    .all(|s| s.renewals >= 2 && env.avaya.status_of(&s.id) == Some("ACTIVE")))
            .then_some(())
        },
    )
    .await;
    let renewals = renewals_by_id(&env);
    let total: usize = renewals.values().map(Vec::len).sum();
    for (id, times) in &renewals {
        for pair in times.windows(2) {
            let gap = pair[1] - pair[0];
            assert!(
                gap > Duration::from_millis(1500),
                "{id} renewed twice {gap:?} apart: two replicas acted at once"
            );
        }
    }
    eprintln!("{total} renewals across three leaders, none doubled");
    drop(c);
}

/// When each Avaya subscription was renewed (successful `:renew` calls), in order.
fn renewals_by_id(env: &Env) -> BTreeMap<String, Vec<Instant>> {
    let mut by_id: BTreeMap<String, Vec<Instant>> = BTreeMap::new();
    for request in env.avaya.core.requests() {
        if request.method == "POST"
            && request.status < 300
            && let Some(id) = request.path.strip_suffix(":renew").and_then(|p| p.rsplit('/').next())
        {
            by_id.entry(id.to_string()).or_default().push(request.at);
        }
    }
    by_id
}

#[tokio::test]
async fn sigkills_during_renewals_and_rotations_leave_every_subscription_alive_and_current() {
    // Avaya subscriptions live 10 s: renewals fall due all the time while the operator is killed.
    let (env, kubeconfig) = environment(Duration::from_secs(10)).await;
    let subs: Api<WebhookSubscription> = Api::namespaced(env.client.clone(), NS);
    let mut child = operator(&env, &kubeconfig, &[]);
    let resources: Vec<WebhookSubscription> = resources().into_iter().take(60).collect();
    let vonage_names: Vec<String> = resources
        .iter()
        .filter_map(|s| s.metadata.name.clone())
        .filter(|n| n.starts_with("v-"))
        .collect();
    // The Vonage ones keep their signing secret in their own Secret, which the user rotates.
    for name in &vonage_names {
        env.secret(NS, &format!("{name}-vonage-signing"), &[("secret", &signing_secret(0))]);
    }
    let resources: Vec<WebhookSubscription> = resources
        .into_iter()
        .map(|mut s| {
            if let Some(v) = &mut s.spec.vonage {
                v.signing_secret = Some(webhook_operator::api::SigningSecretSource {
                    secret_key_ref: webhook_operator::api::SecretKeySelector {
                        name: format!("{}-vonage-signing", s.metadata.name.as_deref().unwrap()),
                        key: "secret".into(),
                    },
                    generate: false,
                });
            }
            s
        })
        .collect();
    for sub in &resources {
        subs.create(&Default::default(), sub).await.unwrap();
    }
    all_ready(&subs, 60).await;
    child.kill().await.unwrap();

    // Three rounds of rotation of every Secret, with 10 kills at random moments among them.
    let rotations = async {
        for round in 1..=3 {
            tokio::time::sleep(Duration::from_millis(1500)).await;
            env.secret(NS, "avaya-token", &[("token", &format!("avaya-token-{round}"))]);
            env.secret(
                NS,
                "authvia-hook",
                &[
                    ("signingSecret", &authvia_signing(round)),
                    ("apiKey", &format!("api-key-{round}")),
                ],
            );
            for name in &vonage_names {
                env.secret(
                    NS,
                    &format!("{name}-vonage-signing"),
                    &[("secret", &signing_secret(round))],
                );
            }
        }
    };
    let started = Instant::now();
    let mut child = with_kills(&env, &kubeconfig, 10, rotations).await;

    // Converged: every subscription carries the last values, Avaya ones are active and keep renewing,
    // and there is still exactly one remote subscription per resource.
    eventually(
        "every remote subscription carries the last rotation",
        CONVERGE,
        Duration::from_millis(300),
        || async {
            let avaya = env.avaya.subscriptions();
            let vonage = env.vonage.subscriptions();
            let authvia = env.authvia.subscriptions();
            let current = avaya.len() == 20
                && avaya.iter().all(|s| {
                    s.auth_token.as_deref() == Some("avaya-token-3") && env.avaya.status_of(&s.id) == Some("ACTIVE")
                })
                && vonage.len() == 20
                && vonage.iter().all(|s| s.secret == signing_secret(3))
                && authvia.len() == 20
                && authvia
                    .iter()
                    .all(|s| s.text("secret") == Some(authvia_signing(3).as_str()));
            if !current {
                eprintln!(
                    "stale: avaya {:?} vonage {} authvia {:?}",
                    avaya
                        .iter()
                        .filter(|s| s.auth_token.as_deref() != Some("avaya-token-3")
                            || env.avaya.status_of(&s.id) != Some("ACTIVE"))
                        .map(|s| (s.auth_token.clone(), env.avaya.status_of(&s.id)))
                        .collect::<Vec<_>>(),
                    vonage.iter().filter(|s| s.secret != signing_secret(3)).count(),
                    authvia
                        .iter()
                        .filter(|s| s.text("secret") != Some(authvia_signing(3).as_str()))
                        .map(|s| s.text("secret").map(str::to_string))
                        .collect::<Vec<_>>(),
                );
            }
            current.then_some(())
        },
    )
    .await;
    eprintln!(
        "rotations: 3 rounds and 10 kills, all current {:.1}s after the first rotation",
        started.elapsed().as_secs_f64()
    );
    let all = all_ready(&subs, 60).await;
    let remote = remote_ids(&env);
    assert!(
        remote.values().all(|ids| ids.len() == 20),
        "no duplicate, no leak: {remote:?}"
    );
    for s in &all {
        let id = s.status.as_ref().unwrap().subscription_id.clone().unwrap();
        assert!(remote.values().any(|ids| ids.contains(&id)), "{id} exists remotely");
    }
    let renewed_before: u32 = env.avaya.subscriptions().iter().map(|s| s.renewals).sum();
    eventually(
        "renewals go on after the last kill",
        Duration::from_secs(30),
        Duration::from_millis(300),
        || async {
            env.avaya
                .subscriptions()
                .iter()
                .all(|s| s.renewals > 0 && env.avaya.status_of(&s.id) == Some("ACTIVE"))
                .then_some(())
                .filter(|()| env.avaya.subscriptions().iter().map(|s| s.renewals).sum::<u32>() >= renewed_before + 20)
        },
    )
    .await;
    child.kill().await.unwrap();
}

/// An AuthVia signing secret (32 to 64 characters) for rotation `round`.
fn authvia_signing(round: u8) -> String {
    format!("authvia-signing-secret-of-rotation-round-{round}")
}

/// A Vonage signing secret (base64 of 32 bytes) for rotation `round`.
fn signing_secret(round: u8) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode([round; 32])
}

#[tokio::test]
async fn sigterm_stops_within_seconds_whatever_is_queued_and_nothing_is_duplicated() {
    let (env, kubeconfig) = environment(Duration::from_secs(600)).await;
    // One request per second: 40 creates queue up behind the account's rate limit.
    let mut avaya = env.emu.get(GROUP, "v1alpha1", "webhookproviders", NS, "avaya").unwrap();
    avaya["spec"]["rateLimit"] = json!({"requestsPerSecond": 1, "burst": 1});
    env.put(GROUP, "v1alpha1", "webhookproviders", NS, avaya.clone());
    let subs: Api<WebhookSubscription> = Api::namespaced(env.client.clone(), NS);
    let mut child = operator(&env, &kubeconfig, &[]);
    for i in 0..40 {
        subs.create(
            &Default::default(),
            &Sub::avaya(&format!("queued-{i:02}"), &format!("/queued/{i}")).build(),
        )
        .await
        .unwrap();
    }
    eventually(
        "the first creates went through",
        Duration::from_secs(30),
        Duration::from_millis(100),
        || async { (env.avaya.subscriptions().len() >= 2).then_some(()) },
    )
    .await;
    let pid = child.id().unwrap().to_string();
    let signalled = Instant::now();
    assert!(
        std::process::Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .unwrap()
            .success()
    );
    tokio::time::timeout(Duration::from_secs(10), child.wait())
        .await
        .expect("the process exits after SIGTERM")
        .unwrap();
    let stopped = signalled.elapsed();
    assert!(stopped < Duration::from_secs(5), "stopped {stopped:?} after SIGTERM");
    eprintln!(
        "SIGTERM with {} of 40 created: exited after {:.1}s",
        env.avaya.subscriptions().len(),
        stopped.as_secs_f64()
    );
    // Started again without the limit: the interrupted creates are recovered, none duplicated.
    avaya["spec"]["rateLimit"] = json!({"requestsPerSecond": 500, "burst": 500});
    env.put(GROUP, "v1alpha1", "webhookproviders", NS, avaya);
    let mut child = operator(&env, &kubeconfig, &[]);
    let all = all_ready(&subs, 40).await;
    assert_eq!(env.avaya.subscriptions().len(), 40, "one remote subscription each");
    for s in &all {
        let id = s.status.as_ref().unwrap().subscription_id.clone().unwrap();
        assert!(env.avaya.subscription(&id).is_some(), "{id} exists remotely");
    }
    child.kill().await.unwrap();
}
