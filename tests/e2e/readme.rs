//! The README's kubectl block, every line in order, run by bash with real kubectl 1.35 and helm 4 against
//! the real `webhook-operator sandbox` binary, each answer checked against what a cluster would answer.
//! A command added to the block without a check here fails the test, so the README stays runnable.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use tokio::io::{AsyncBufReadExt, BufReader};

use crate::support::{repo_root, tool_binary};

/// The lines of the README's `sh` block that starts with `export KUBECONFIG=`.
fn readme_commands() -> Vec<String> {
    let readme = std::fs::read_to_string(repo_root().join("README.md")).unwrap();
    let mut blocks = Vec::new();
    let mut current: Option<Vec<String>> = None;
    for line in readme.lines() {
        match (&mut current, line.trim_end()) {
            (None, "```sh") => current = Some(Vec::new()),
            (Some(_), "```") => blocks.push(current.take().unwrap()),
            (Some(block), text) => block.push(text.to_string()),
            (None, _) => {}
        }
    }
    blocks
        .into_iter()
        .find(|b| b.first().is_some_and(|l| l.starts_with("export KUBECONFIG=")))
        .expect("the README has a kubectl block starting with export KUBECONFIG=")
}

/// A command's trailing `# comment`, if any (quotes in the command hold no `#` here).
fn comment(line: &str) -> Option<&str> {
    line.split_once("  #").map(|(_, c)| c.trim())
}

struct Shell {
    kubeconfig: PathBuf,
    home: PathBuf,
    path: String,
    editor: PathBuf,
}

impl Shell {
    fn run(&self, line: &str) -> Output {
        Command::new("bash")
            .args(["-o", "pipefail", "-c", line])
            .current_dir(repo_root())
            .env("PATH", &self.path)
            .env("KUBECONFIG", &self.kubeconfig)
            .env("HOME", &self.home)
            .env("KUBE_EDITOR", &self.editor)
            .env_remove("KUBERNETES_SERVICE_HOST")
            .output()
            .expect("bash runs")
    }

    fn ok(&self, line: &str) -> String {
        let output = self.run(line);
        assert!(
            output.status.success(),
            "`{line}` failed ({}): {}{}",
            output.status,
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8(output.stdout).unwrap()
    }

    /// Polls a command until its output satisfies `done`.
    async fn until(&self, line: &str, what: &str, done: impl Fn(&str) -> bool) -> String {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let output = self.run(line);
            let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
            if output.status.success() && done(&stdout) {
                return stdout;
            }
            assert!(Instant::now() < deadline, "{what}: `{line}` still says {stdout}");
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
    }
}

fn dir_of(binary: &Path) -> String {
    binary.parent().unwrap().display().to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_command_of_the_readme_kubectl_block_answers_as_a_cluster_would() {
    let kubectl = tool_binary("kubectl", "WEBHOOK_OPERATOR_KUBECTL");
    let helm = tool_binary("helm", "WEBHOOK_OPERATOR_HELM");
    let home = std::env::temp_dir().join(format!("whop-readme-{}-{}", std::process::id(), fastrand::u64(..)));
    std::fs::create_dir_all(&home).unwrap();
    // `kubectl edit` rotates the token the way a person would: replaces the value in the editor.
    let editor = home.join("editor.sh");
    let rotated = "cm90YXRlZC10b2tlbi1mcm9tLWVkaXQ="; // base64 of rotated-token-from-edit
    std::fs::write(
        &editor,
        format!("#!/bin/sh\nsed -i 's/^\\(  token: \\).*/\\1{rotated}/' \"$1\"\n"),
    )
    .unwrap();
    std::fs::set_permissions(&editor, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let kubeconfig = home.join("webhook-operator-sandbox.kubeconfig");
    let mut sandbox = tokio::process::Command::new(env!("CARGO_BIN_EXE_webhook-operator"))
        .args([
            "sandbox",
            "--exit-after",
            "240s",
            "--delivery-interval",
            "2s",
            "--kubeconfig",
        ])
        .arg(&kubeconfig)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(sandbox.stdout.take().unwrap()).lines();
    let mut control = None;
    while let Some(line) = lines.next_line().await.unwrap() {
        if let Some(rest) = line.trim().strip_prefix("control") {
            control = rest.split_whitespace().next().map(str::to_string);
            break;
        }
    }
    let control = control.expect("the sandbox prints its control URL");
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });

    // The kubectl plugin, as a user installs it: the binary under the name kubectl-whsub on PATH.
    let plugins = home.join("plugins");
    std::fs::create_dir_all(&plugins).unwrap();
    std::os::unix::fs::symlink(env!("CARGO_BIN_EXE_webhook-operator"), plugins.join("kubectl-whsub")).unwrap();
    std::os::unix::fs::symlink(
        env!("CARGO_BIN_EXE_webhook-operator"),
        plugins.join("kubectl_complete-whsub"),
    )
    .unwrap();
    let shell = Shell {
        kubeconfig: kubeconfig.clone(),
        home: home.clone(),
        path: format!(
            "{}:{}:{}:/usr/bin:/bin",
            plugins.display(),
            dir_of(&kubectl),
            dir_of(&helm)
        ),
        editor,
    };
    let ready = "kubectl get webhooksubscriptions -o jsonpath='{range .items[*]}{.status.conditions[?(@.type==\"Ready\")].status}{\" \"}{end}'";
    shell
        .until(ready, "every example becomes Ready", |s| s.trim() == "True True True")
        .await;
    let applied_hash = "kubectl get webhooksubscription agent-events -o jsonpath='{.status.appliedSecretHash}'";
    let _ = rustls::crypto::ring::default_provider().install_default();
    let remote = || async {
        reqwest::get(format!("{control}/subscriptions"))
            .await
            .unwrap()
            .json::<serde_json::Value>()
            .await
            .unwrap()
    };

    let commands = readme_commands();
    assert!(commands.len() > 15, "{commands:?}");
    for line in &commands {
        if line.starts_with("export KUBECONFIG=") {
            continue; // the shell has it, pointing at this sandbox's kubeconfig
        }
        let command = line.split("  #").next().unwrap().trim();
        match command {
            "kubectl get webhooksubscriptions -o wide" => {
                let table = shell.ok(command);
                assert!(table.starts_with("NAME"), "{table}");
                assert!(
                    table.contains("SUBSCRIPTION-ID") && table.contains("RENEWAL"),
                    "{table}"
                );
                assert_eq!(table.matches(" True ").count(), 6, "Ready and Synced of each: {table}");
            }
            "kubectl get webhooks -A" => {
                let all = shell.ok(command);
                for kind in ["clusterwebhookprovider.", "webhookprovider.", "webhooksubscription."] {
                    assert!(all.contains(kind), "{kind} missing: {all}");
                }
            }
            "kubectl explain webhooksubscription.spec.avaya.families" => {
                let doc = shell.ok(command);
                assert!(doc.contains("KIND:       WebhookSubscription"), "{doc}");
                assert!(doc.contains("FIELD: families <[]string>"), "{doc}");
                assert!(doc.contains("Event families"), "{doc}");
            }
            "kubectl describe webhooksubscription agent-events" => {
                let described = shell.ok(command);
                assert!(
                    described.contains("Remote State:") && described.contains("ACTIVE"),
                    "{described}"
                );
                assert!(described.contains("Created"), "events listed: {described}");
            }
            "kubectl events --for webhooksubscription/agent-events" => {
                let events = shell.ok(command);
                assert!(events.contains("WebhookSubscription/agent-events"), "{events}");
                assert!(events.contains("created avaya subscription"), "{events}");
            }
            "kubectl edit secret avaya-webhook-token" => {
                let before = shell.ok(applied_hash);
                assert!(shell.ok(command).contains("secret/avaya-webhook-token edited"));
                let data = shell.ok("kubectl get secret avaya-webhook-token -o jsonpath='{.data.token}'");
                assert_eq!(data, rotated);
                shell
                    .until(applied_hash, "the rotated token is sent", |h| {
                        h != before && !h.is_empty()
                    })
                    .await;
            }
            "kubectl diff -f examples/" => {
                let output = shell.run(command);
                assert!(
                    output.status.success() && output.stdout.is_empty(),
                    "no difference expected: {}{}",
                    String::from_utf8_lossy(&output.stdout),
                    String::from_utf8_lossy(&output.stderr)
                );
            }
            "kubectl apply -f examples/" => {
                let applied = shell.ok(command);
                for name in ["agent-events", "agent-presence", "failed-payments"] {
                    assert!(
                        applied.contains(&format!("webhooksubscription.webhook-operator.dev/{name} ")),
                        "{applied}"
                    );
                }
            }
            "kubectl apply --server-side -f examples/" => {
                let applied = shell.ok(command);
                assert_eq!(applied.matches("serverside-applied").count(), 12, "{applied}");
            }
            "kubectl get webhooksubscriptions -o yaml | kubectl apply -f -" => {
                // A v1 List, validated client-side item by item against /openapi/v2.
                let applied = shell.ok(command);
                assert_eq!(
                    applied.matches("webhooksubscription.webhook-operator.dev/").count(),
                    3,
                    "{applied}"
                );
                let invalid = shell.run(
                    "kubectl get webhooksubscriptions -o yaml | sed 's/endpoint:/endpiont:/' | kubectl apply -f -",
                );
                let error = String::from_utf8_lossy(&invalid.stderr);
                assert!(
                    !invalid.status.success() && error.contains("unknown field \"endpiont\""),
                    "{error}"
                );
            }
            c if c.starts_with("kubectl create secret generic avaya-webhook-token --from-literal=token=") => {
                // Rotation without base64 by hand: the value is written, and sent.
                let before = shell.ok(applied_hash);
                assert!(shell.ok(command).contains("secret/avaya-webhook-token configured"));
                let data = shell.ok("kubectl get secret avaya-webhook-token -o jsonpath='{.data.token}'");
                assert_eq!(data, "YW5vdGhlci1sb25nLXJhbmRvbS10b2tlbg==");
                shell
                    .until(applied_hash, "the applied token is sent", |h| {
                        h != before && !h.is_empty()
                    })
                    .await;
            }
            "kubectl label webhooksubscription agent-events team=contact-centre" => {
                shell.ok(command);
                let label = shell.ok("kubectl get webhooksubscription -l team=contact-centre -o name");
                assert_eq!(label.trim(), "webhooksubscription.webhook-operator.dev/agent-events");
            }
            c if c.starts_with(
                "kubectl annotate webhooksubscription agent-events webhook-operator.dev/reconcile-requested-at=",
            ) =>
            {
                let at = c.rsplit('=').next().unwrap();
                shell.ok(command);
                shell
                    .until(
                        "kubectl get webhooksubscription agent-events -o jsonpath='{.status.lastHandledReconcileAt}'",
                        "the reconcile request is handled",
                        |handled| handled == at,
                    )
                    .await;
            }
            c if c.starts_with("kubectl patch webhooksubscription agent-events --type merge") => {
                shell.ok(command);
                shell
                    .until(
                        "kubectl get webhooksubscription agent-events -o jsonpath='{.metadata.generation}/{.status.observedGeneration}'",
                        "the patched spec is applied",
                        |g| g == "2/2",
                    )
                    .await;
            }
            "kubectl whsub status agent-events" => {
                let status = shell.ok(command);
                assert!(
                    status.starts_with("default/agent-events  (avaya through WebhookProvider avaya)"),
                    "{status}"
                );
                assert!(status.contains("Ready:    True   Available"), "{status}");
                assert!(
                    status.contains("Expires:  in ") && status.contains("Events:"),
                    "{status}"
                );
            }
            "kubectl whsub status" => {
                let status = shell.ok(command);
                for name in ["agent-events", "agent-presence", "failed-payments"] {
                    assert!(status.contains(&format!("default/{name}  (")), "{name}: {status}");
                }
                assert_eq!(
                    status.matches("  Events:").count(),
                    3,
                    "each with its own Events: {status}"
                );
            }
            "kubectl whsub renew agent-events" => {
                let before =
                    shell.ok("kubectl get webhooksubscription agent-events -o jsonpath='{.status.renewalCount}'");
                let answer = shell.ok(command);
                assert!(
                    answer.starts_with("default/agent-events: renewed; expires in "),
                    "{answer}"
                );
                let after =
                    shell.ok("kubectl get webhooksubscription agent-events -o jsonpath='{.status.renewalCount}'");
                assert!(
                    after.parse::<u32>().unwrap() > before.parse::<u32>().unwrap_or(0),
                    "{before} -> {after}"
                );
            }
            "kubectl whsub reconcile -l team=contact-centre" => {
                let answer = shell.ok(command);
                assert_eq!(
                    answer.trim(),
                    "default/agent-events: checked against the provider",
                    "only the labelled one"
                );
            }
            "kubectl whsub pause agent-events" => {
                assert_eq!(
                    shell.ok(command).trim(),
                    "default/agent-events: paused: no remote writes until resumed"
                );
                let synced = shell.ok(
                    "kubectl get webhooksubscription agent-events -o jsonpath='{.status.conditions[?(@.type==\"Synced\")].reason}'",
                );
                assert_eq!(synced, "ReconcilePaused");
            }
            "kubectl whsub resume agent-events" => {
                assert_eq!(shell.ok(command).trim(), "default/agent-events: resumed");
            }
            "kubectl whsub renew agent-presence" => {
                let answer = shell.ok(command);
                assert!(
                    answer.contains("its subscriptions do not expire: nothing to renew"),
                    "{answer}"
                );
            }
            "kubectl create namespace team-a" => {
                assert_eq!(shell.ok(command).trim(), "namespace/team-a created");
            }
            c if c.starts_with("kubectl create secret generic avaya-webhook-token -n team-a") => {
                assert_eq!(shell.ok(command).trim(), "secret/avaya-webhook-token created");
            }
            c if c.starts_with("kubectl get secret avaya-webhook-token -n team-a") => {
                // base64 of another-long-random-token
                assert_eq!(shell.ok(command), "YW5vdGhlci1sb25nLXJhbmRvbS10b2tlbg==");
            }
            c if c.starts_with("helm template webhook-operator charts/webhook-operator") => {
                let applied = shell.ok(command);
                assert!(
                    applied.contains("clusterrole.rbac.authorization.k8s.io/webhook-operator created"),
                    "{applied}"
                );
                assert!(
                    applied.contains("rolebinding.rbac.authorization.k8s.io/webhook-operator-leader-election created")
                );
            }
            c if c.starts_with("kubectl auth can-i") => {
                let expected = comment(line).expect("a can-i line says # yes or # no");
                let output = shell.run(command);
                assert_eq!(String::from_utf8_lossy(&output.stdout).trim(), expected, "{command}");
                assert_eq!(output.status.success(), expected == "yes", "can-i exits 1 for no");
            }
            "kubectl delete webhooksubscription failed-payments --wait" => {
                let before = remote().await;
                assert_eq!(before["authvia"].as_array().unwrap().len(), 1, "{before}");
                assert!(shell.ok(command).contains("\"failed-payments\" deleted"));
                let after = remote().await;
                assert!(
                    after["authvia"].as_array().unwrap().is_empty(),
                    "deleted remotely first: {after}"
                );
                let gone = shell.run("kubectl get webhooksubscription failed-payments");
                assert!(String::from_utf8_lossy(&gone.stderr).contains("NotFound"));
            }
            other => panic!("the README shows `{other}` and this test does not check it; add its check"),
        }
    }
    // kubectl's completion of the plugin (what `kubectl whsub status agent-<TAB>` asks kubectl), through
    // kubectl_complete-whsub: subscription names read from the sandbox, then cobra's directive.
    let names = shell.ok("kubectl __complete whsub status agent-");
    let lines: Vec<&str> = names.lines().collect();
    assert_eq!(lines, ["agent-events", "agent-presence", ":4"], "{names}");
    let commands = shell.ok("kubectl __complete whsub re");
    assert!(
        commands.lines().any(|l| l.starts_with("renew\t")) && commands.lines().any(|l| l.starts_with("resume\t")),
        "{commands}"
    );
    let _ = sandbox.kill().await;
    let _ = std::fs::remove_dir_all(&home);
}

#[test]
fn the_readme_block_is_found_and_commented_answers_are_read() {
    let commands = readme_commands();
    assert!(commands[0].starts_with("export KUBECONFIG="));
    assert_eq!(comment("kubectl auth can-i x  # no"), Some("no"));
    assert_eq!(comment("kubectl get x"), None);
}
