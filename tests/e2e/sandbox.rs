//! `webhook-operator sandbox`, the real binary: every example subscription becomes Ready, Avaya renews,
//! every provider's deliveries verify, and the process exits 0; bad input gets one line and a failure.

use std::process::Command;

use serde_json::Value;

use crate::support::{repo_root, tool_binary};

fn binary() -> Command {
    Command::new(env!("CARGO_BIN_EXE_webhook-operator"))
}

/// `namespace/name` of every WebhookSubscription in examples/.
fn example_subscriptions() -> Vec<String> {
    let mut names = Vec::new();
    for entry in std::fs::read_dir(repo_root().join("examples")).unwrap() {
        let text = std::fs::read_to_string(entry.unwrap().path()).unwrap();
        let docs: Vec<Value> = serde_saphyr::from_multiple(&text).unwrap();
        for doc in docs.iter().filter(|d| d["kind"] == "WebhookSubscription") {
            names.push(format!(
                "{}/{}",
                doc["metadata"]["namespace"].as_str().unwrap_or("default"),
                doc["metadata"]["name"].as_str().unwrap()
            ));
        }
    }
    names.sort();
    names
}

fn field<'a>(line: &'a str, key: &str) -> &'a str {
    line.split_whitespace()
        .find_map(|w| w.strip_prefix(&format!("{key}=")))
        .unwrap_or_else(|| panic!("no {key} in {line}"))
}

#[test]
fn sandbox_runs_the_whole_system_and_exits_cleanly() {
    let dir = tempdir();
    let kubeconfig = dir.join("sandbox.kubeconfig");
    let output = binary()
        .args([
            "sandbox",
            "--exit-after",
            "24s",
            "--lifetime",
            "12s",
            "--delivery-interval",
            "2s",
            "--kubeconfig",
        ])
        .arg(&kubeconfig)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // Meanwhile, real kubectl in "another terminal" sees the subscriptions with their columns.
    {
        let kubectl = tool_binary("kubectl", "WEBHOOK_OPERATOR_KUBECTL");
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
        let table = loop {
            std::thread::sleep(std::time::Duration::from_millis(500));
            let listed = kubectl_get(&kubectl, &kubeconfig, &dir);
            if listed.lines().filter(|l| l.contains(" True ")).count() == 3 {
                break listed;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "kubectl never showed 3 Ready subscriptions:\n{listed}"
            );
        };
        let header: Vec<&str> = table.lines().next().unwrap().split_whitespace().collect();
        assert_eq!(
            header,
            [
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
        assert!(table.contains("agent-events") && table.contains("ACTIVE"), "{table}");
    }
    let output = output.wait_with_output().unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "exit {:?}\n{stdout}\n{stderr}", output.status);
    assert!(
        stdout.contains(&format!("kubeconfig      {}", kubeconfig.display())),
        "{stdout}"
    );
    assert!(
        std::fs::read_to_string(&kubeconfig)
            .unwrap()
            .contains("server: http://127.0.0.1:")
    );

    let summary: Vec<&str> = stdout.lines().filter(|l| l.starts_with("summary: ")).collect();
    let names: Vec<String> = summary
        .iter()
        .map(|l| l.split_whitespace().nth(1).unwrap().to_string())
        .collect();
    assert_eq!(names, example_subscriptions(), "{stdout}");
    let mut providers = Vec::new();
    for line in &summary {
        assert_eq!(field(line, "ready"), "True", "{line}");
        assert!(
            field(line, "verified").parse::<u32>().unwrap() >= 1,
            "a verified delivery: {line}"
        );
        assert_eq!(
            field(line, "verified"),
            field(line, "deliveries"),
            "every delivery verified: {line}"
        );
        if field(line, "provider") == "avaya" {
            assert!(field(line, "renewals").parse::<u32>().unwrap() >= 1, "renewed: {line}");
        }
        providers.push(field(line, "provider").to_string());
    }
    providers.sort();
    assert_eq!(
        providers,
        example_provider_refs(),
        "the providerRef, as `kubectl get` shows it"
    );
}

/// The providerRef names of the example subscriptions, sorted.
fn example_provider_refs() -> Vec<String> {
    let mut names = Vec::new();
    for entry in std::fs::read_dir(repo_root().join("examples")).unwrap() {
        let text = std::fs::read_to_string(entry.unwrap().path()).unwrap();
        let docs: Vec<Value> = serde_saphyr::from_multiple(&text).unwrap();
        for doc in docs.iter().filter(|d| d["kind"] == "WebhookSubscription") {
            names.push(doc["spec"]["providerRef"]["name"].as_str().unwrap().to_string());
        }
    }
    names.sort();
    names
}

#[test]
fn sandbox_bad_input_gets_one_line_and_a_failure() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port().to_string();
    let dir = tempdir();
    let output = binary()
        .args(["sandbox", "--exit-after", "1s", "--port", &port, "--kubeconfig"])
        .arg(dir.join("k"))
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(stderr.trim().lines().count(), 1, "{stderr}");
    assert!(
        stderr.contains(&format!("cannot listen on 127.0.0.1:{port}")),
        "{stderr}"
    );

    // A kubeconfig path under a regular file cannot be written.
    let file = dir.join("plain-file");
    std::fs::write(&file, "x").unwrap();
    let output = binary()
        .args(["sandbox", "--exit-after", "1s", "--kubeconfig"])
        .arg(file.join("kubeconfig"))
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(stderr.trim().lines().count(), 1, "{stderr}");
    assert!(stderr.contains("cannot write the kubeconfig to"), "{stderr}");

    let output = binary().args(["sandbox", "--exit-after", "soon"]).output().unwrap();
    assert!(!output.status.success());
    assert!(String::from_utf8_lossy(&output.stderr).contains("is not a duration such as 30s"));
}

fn tempdir() -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("whop-sandbox-{}-{}", std::process::id(), fastrand::u64(..)));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// `kubectl get webhooksubscriptions -o wide` against the sandbox (empty until its kubeconfig exists).
fn kubectl_get(kubectl: &std::path::Path, kubeconfig: &std::path::Path, dir: &std::path::Path) -> String {
    if !kubeconfig.exists() {
        return String::new();
    }
    let output = Command::new(kubectl)
        .args(["get", "webhooksubscriptions", "-o", "wide", "--kubeconfig"])
        .arg(kubeconfig)
        .arg("--cache-dir")
        .arg(dir.join("kubectl-cache"))
        .output()
        .unwrap();
    String::from_utf8_lossy(&output.stdout).into_owned()
}

#[tokio::test]
async fn without_its_controller_the_sandbox_serves_an_operator_run_from_outside_and_scripted_faults() {
    use tokio::io::{AsyncBufReadExt, BufReader};
    let dir = tempdir();
    let kubeconfig = dir.join("kubeconfig");
    let mut sandbox = tokio::process::Command::new(env!("CARGO_BIN_EXE_webhook-operator"))
        .args(["sandbox", "--no-controller", "--exit-after", "120s", "--kubeconfig"])
        .arg(&kubeconfig)
        .stdout(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    // The banner: the control surface's URL and the `run` command line.
    let mut lines = BufReader::new(sandbox.stdout.take().unwrap()).lines();
    let (mut control, mut command) = (None, None);
    while control.is_none() || command.is_none() {
        let line = tokio::time::timeout(std::time::Duration::from_secs(30), lines.next_line())
            .await
            .expect("the banner")
            .unwrap()
            .expect("more banner");
        if let Some(rest) = line.trim().strip_prefix("control ") {
            control = rest.split_whitespace().next().map(str::to_string);
        }
        if let Some(rest) = line.trim().strip_prefix("webhook-operator run ") {
            command = Some(rest.split_whitespace().map(str::to_string).collect::<Vec<_>>());
        }
    }
    let (control, command) = (control.unwrap(), command.unwrap());
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    let run = || {
        tokio::process::Command::new(env!("CARGO_BIN_EXE_webhook-operator"))
            .arg("run")
            .args(&command)
            .stderr(std::process::Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .unwrap()
    };
    // A scripted fault: Vonage refuses the next two creates; the operator, run from outside, is killed
    // once and restarted.
    let http = webhook_operator::providers::http::http_client(std::time::Duration::from_secs(10));
    let injected = http
        .post(format!("{control}/faults/vonage"))
        .json(&serde_json::json!({"status": 503, "path": "/webhooks/subscriptions", "method": "POST", "times": 2}))
        .send()
        .await
        .unwrap();
    assert_eq!(injected.status(), 201);
    let refused = http
        .post(format!("{control}/faults/kubernetes"))
        .json(&serde_json::json!({"status": 500, "path": "("}))
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), 400, "a bad rule is refused with a reason");
    let mut operator = run();
    tokio::time::sleep(std::time::Duration::from_millis(700)).await;
    operator.kill().await.unwrap();
    let mut operator = run();
    let ids = crate::support::poll::eventually(
        "one remote subscription per example",
        std::time::Duration::from_secs(60),
        std::time::Duration::from_millis(500),
        || {
            let http = http.clone();
            let control = control.clone();
            async move {
                let ids: Value = http
                    .get(format!("{control}/subscriptions"))
                    .send()
                    .await
                    .ok()?
                    .json()
                    .await
                    .ok()?;
                let counts: Vec<usize> = ["avaya", "vonage", "authvia"]
                    .iter()
                    .map(|p| ids[p].as_array().map_or(0, Vec::len))
                    .collect();
                (counts == [1, 1, 1]).then_some(ids)
            }
        },
    )
    .await;
    // The examples were applied as written: Ready through the redirected hosts.
    let client = {
        let file = kube::config::Kubeconfig::read_from(&kubeconfig).unwrap();
        let config = kube::Config::from_custom_kubeconfig(file, &Default::default())
            .await
            .unwrap();
        kube::Client::try_from(config).unwrap()
    };
    let subs: kube::Api<webhook_operator::api::WebhookSubscription> = kube::Api::all(client);
    crate::support::poll::eventually(
        "every example Ready",
        std::time::Duration::from_secs(60),
        std::time::Duration::from_millis(500),
        || async {
            let list = subs.list(&Default::default()).await.ok()?;
            list.items
                .iter()
                .all(|s| {
                    s.status
                        .as_ref()
                        .is_some_and(|st| st.conditions.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
                })
                .then_some(())
        },
    )
    .await;
    assert_eq!(
        http.delete(format!("{control}/faults")).send().await.unwrap().status(),
        200
    );
    assert!(ids["vonage"][0].is_string());
    operator.kill().await.unwrap();
    sandbox.kill().await.unwrap();
}
