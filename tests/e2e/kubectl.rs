//! Real kubectl 1.35 drives the emulated API server: CRDs, Established, examples with validation on,
//! printer columns, a CEL rejection, and `delete --wait` of an object whose finalizer a test removes.

use std::path::PathBuf;
use std::process::{Command, Output};
use std::time::Duration;

use serde_json::json;
use webhook_operator::sandbox::kube::{Emulator, EmulatorOptions};

use crate::support::{repo_root, tool_binary};

/// The kubectl binary (a failure when missing).
fn kubectl_binary() -> PathBuf {
    tool_binary("kubectl", "WEBHOOK_OPERATOR_KUBECTL")
}

struct Kubectl {
    binary: PathBuf,
    kubeconfig: PathBuf,
    home: PathBuf,
}

impl Kubectl {
    fn new(binary: PathBuf, emulator: &Emulator, name: &str) -> Self {
        let home = std::env::temp_dir().join(format!("webhook-operator-kubectl-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&home);
        std::fs::create_dir_all(&home).unwrap();
        let kubeconfig = home.join("kubeconfig");
        emulator.write_kubeconfig(&kubeconfig).unwrap();
        Kubectl {
            binary,
            kubeconfig,
            home,
        }
    }

    async fn run(&self, args: &[&str]) -> Output {
        let mut command = Command::new(&self.binary);
        command
            .args(args)
            .arg("--kubeconfig")
            .arg(&self.kubeconfig)
            .arg("--cache-dir")
            .arg(self.home.join("cache"))
            .env("HOME", &self.home)
            .env_remove("KUBERNETES_SERVICE_HOST")
            .current_dir(repo_root());
        tokio::task::spawn_blocking(move || command.output().expect("kubectl runs"))
            .await
            .unwrap()
    }

    async fn ok(&self, args: &[&str]) -> String {
        let output = self.run(args).await;
        assert!(
            output.status.success(),
            "kubectl {args:?} failed: {}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8(output.stdout).unwrap()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubectl_applies_lists_rejects_and_deletes() {
    let binary = kubectl_binary();
    let emulator = Emulator::start(EmulatorOptions::default()).await.unwrap();
    let kubectl = Kubectl::new(binary, &emulator, "flow");

    let applied = kubectl.ok(&["apply", "-f", "crds/"]).await;
    assert_eq!(applied.matches("created").count(), 3, "{applied}");
    kubectl
        .ok(&[
            "wait",
            "--for=condition=Established",
            "crd/webhooksubscriptions.webhook-operator.dev",
            "--timeout=20s",
        ])
        .await;

    // Validation stays on: kubectl finds fieldValidation in the OpenAPI document and lets the server check.
    let applied = kubectl.ok(&["apply", "-f", "examples/"]).await;
    for name in ["agent-events", "agent-presence", "failed-payments"] {
        assert!(
            applied.contains(&format!("webhooksubscription.webhook-operator.dev/{name} created")),
            "{applied}"
        );
    }
    assert!(
        emulator
            .requests()
            .iter()
            .any(|r| r.query.contains("fieldValidation=Strict"))
    );
    let again = kubectl.ok(&["apply", "-f", "examples/"]).await;
    assert!(
        again.contains("webhooksubscription.webhook-operator.dev/agent-events unchanged"),
        "{again}"
    );

    let table = kubectl.ok(&["get", "webhooksubscriptions"]).await;
    let header: Vec<&str> = table.lines().next().unwrap().split_whitespace().collect();
    assert_eq!(
        header,
        vec![
            "NAME", "PROVIDER", "READY", "REASON", "SYNCED", "STATE", "EXPIRES", "AGE"
        ]
    );
    assert!(
        table
            .lines()
            .any(|l| l.starts_with("agent-events") && l.contains("avaya")),
        "{table}"
    );
    let wide = kubectl.ok(&["get", "whsub", "-o", "wide"]).await;
    let header: Vec<&str> = wide.lines().next().unwrap().split_whitespace().collect();
    assert_eq!(
        header,
        vec![
            "NAME",
            "PROVIDER",
            "READY",
            "REASON",
            "SYNCED",
            "STATE",
            "EXPIRES",
            "AGE",
            "SUBSCRIPTION-ID",
            "RENEWAL",
            "MESSAGE"
        ]
    );

    // A bad object is refused with the CEL rule's message.
    let bad = kubectl.home.join("bad.yaml");
    std::fs::write(
        &bad,
        "apiVersion: webhook-operator.dev/v1alpha1\nkind: WebhookSubscription\nmetadata: {name: bad, namespace: default}\nspec:\n  providerRef: {name: avaya}\n  endpoint: https://hooks.example.com/x\n  avaya: {families: [ALL, AGENT], events: [ALL]}\n",
    )
    .unwrap();
    let rejected = kubectl.run(&["apply", "-f", bad.to_str().unwrap()]).await;
    assert!(!rejected.status.success());
    let stderr = String::from_utf8_lossy(&rejected.stderr);
    assert!(
        stderr.contains("ALL must be the only family; remove the other families or remove ALL"),
        "{stderr}"
    );

    // delete --wait blocks on the finalizer until something removes it.
    kubectl
        .ok(&[
            "patch",
            "whsub",
            "agent-events",
            "--type=merge",
            "-p",
            r#"{"metadata":{"finalizers":["webhook-operator.dev/finalizer"]}}"#,
        ])
        .await;
    let delete = {
        let binary = kubectl.binary.clone();
        let (kubeconfig, cache) = (kubectl.kubeconfig.clone(), kubectl.home.join("cache"));
        let home = kubectl.home.clone();
        tokio::task::spawn_blocking(move || {
            Command::new(binary)
                .args([
                    "delete",
                    "whsub",
                    "agent-events",
                    "--wait",
                    "--timeout=30s",
                    "--kubeconfig",
                ])
                .arg(kubeconfig)
                .arg("--cache-dir")
                .arg(cache)
                .env("HOME", home)
                .output()
                .unwrap()
        })
    };
    let marked = emulator
        .wait_for(
            "webhook-operator.dev",
            "v1alpha1",
            "webhooksubscriptions",
            "default",
            "agent-events",
            Duration::from_secs(20),
            |o| o.is_some_and(|o| o["metadata"]["deletionTimestamp"].is_string()),
        )
        .await;
    assert!(marked.is_ok(), "kubectl delete marked the object");
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(!delete.is_finished(), "delete --wait waits for the finalizer");
    emulator.with_state(|s| {
        let rt = s
            .resource("webhook-operator.dev", "v1alpha1", "webhooksubscriptions")
            .unwrap();
        s.patch(
            &rt,
            "default",
            "agent-events",
            webhook_operator::sandbox::kube::PatchKind::Merge,
            json!({"metadata": {"finalizers": null}}),
            false,
            &webhook_operator::sandbox::kube::Writer::by("test"),
        )
        .unwrap();
    });
    let output = delete.await.unwrap();
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    assert!(String::from_utf8_lossy(&output.stdout).contains("deleted"));
    assert!(
        emulator
            .get(
                "webhook-operator.dev",
                "v1alpha1",
                "webhooksubscriptions",
                "default",
                "agent-events"
            )
            .is_none()
    );
    let _ = std::fs::remove_dir_all(&kubectl.home);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubectl_manages_config_maps() {
    let binary = kubectl_binary();
    let emulator = Emulator::start(EmulatorOptions::default()).await.unwrap();
    let kubectl = Kubectl::new(binary, &emulator, "configmaps");
    let file = kubectl.home.join("settings.yaml");
    std::fs::write(
        &file,
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: settings\n  namespace: default\ndata:\n  level: debug\n  mode: fast\n",
    )
    .unwrap();
    let applied = kubectl.ok(&["apply", "-f", file.to_str().unwrap()]).await;
    assert!(applied.contains("configmap/settings created"), "{applied}");
    let table = kubectl.ok(&["get", "cm", "settings"]).await;
    let header: Vec<&str> = table.lines().next().unwrap().split_whitespace().collect();
    assert_eq!(header, vec!["NAME", "DATA", "AGE"]);
    let row: Vec<&str> = table.lines().nth(1).unwrap().split_whitespace().collect();
    assert_eq!(&row[..2], &["settings", "2"], "{table}");
    kubectl
        .ok(&[
            "patch",
            "configmap",
            "settings",
            "--type=merge",
            "-p",
            r#"{"data":{"level":"info"}}"#,
        ])
        .await;
    let level = kubectl
        .ok(&["get", "configmap", "settings", "-o", "jsonpath={.data.level}"])
        .await;
    assert_eq!(level.trim(), "info");
    let refused = kubectl
        .run(&[
            "patch",
            "configmap",
            "settings",
            "--type=merge",
            "-p",
            r#"{"data":{"bad key":"x"}}"#,
        ])
        .await;
    assert!(!refused.status.success());
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(stderr.contains("a valid config key"), "{stderr}");
    kubectl.ok(&["delete", "configmap", "settings", "--wait"]).await;
    let gone = kubectl.run(&["get", "configmap", "settings"]).await;
    assert!(String::from_utf8_lossy(&gone.stderr).contains("NotFound"));
}

/// What a new user types first: kubectl sends these built-in kinds as protobuf.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubectl_create_namespace_secret_and_configmap_work_as_on_a_cluster() {
    let binary = kubectl_binary();
    let emulator = Emulator::start(EmulatorOptions::default()).await.unwrap();
    let kubectl = Kubectl::new(binary, &emulator, "create");
    let created = kubectl.ok(&["create", "namespace", "team-a"]).await;
    assert!(created.contains("namespace/team-a created"), "{created}");
    kubectl
        .ok(&[
            "create",
            "secret",
            "generic",
            "avaya-credentials",
            "-n",
            "team-a",
            "--from-literal=clientId=client-1",
            "--from-literal=clientSecret=s3cret",
        ])
        .await;
    let secret = kubectl
        .ok(&[
            "get",
            "secret",
            "avaya-credentials",
            "-n",
            "team-a",
            "-o",
            "jsonpath={.type} {.data.clientId}",
        ])
        .await;
    assert_eq!(secret.trim(), "Opaque Y2xpZW50LTE=", "type defaulted, data base64");
    kubectl
        .ok(&[
            "create",
            "configmap",
            "settings",
            "-n",
            "team-a",
            "--from-literal=level=debug",
        ])
        .await;
    let level = kubectl
        .ok(&["get", "cm", "settings", "-n", "team-a", "-o", "jsonpath={.data.level}"])
        .await;
    assert_eq!(level.trim(), "debug");
    assert!(emulator.requests().iter().filter(|r| r.method == "POST").count() >= 3);
}
