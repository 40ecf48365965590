//! The day-2 command line outside a cluster: the kubectl plugin name, shell completion, and errors a
//! person can act on. (Against a live operator, `readme` runs `kubectl whsub` through real kubectl.)

use std::process::Command;

fn binary() -> Command {
    Command::new(env!("CARGO_BIN_EXE_webhook-operator"))
}

#[test]
fn installed_as_kubectl_whsub_it_speaks_as_the_plugin() {
    let dir = std::env::temp_dir().join(format!("whop-cli-{}-{}", std::process::id(), fastrand::u64(..)));
    std::fs::create_dir_all(&dir).unwrap();
    let plugin = dir.join("kubectl-whsub");
    std::os::unix::fs::symlink(env!("CARGO_BIN_EXE_webhook-operator"), &plugin).unwrap();
    let help = Command::new(&plugin).arg("--help").output().unwrap();
    let help = String::from_utf8_lossy(&help.stdout);
    assert!(help.contains("Usage: kubectl whsub <COMMAND>"), "{help}");
    for command in ["status", "renew", "reconcile", "pause", "resume", "completion"] {
        assert!(help.contains(command), "{command}: {help}");
    }
    let completion = Command::new(&plugin).args(["completion", "bash"]).output().unwrap();
    assert!(completion.status.success());
    let script = String::from_utf8_lossy(&completion.stdout);
    assert!(
        script.contains("kubectl-whsub") && script.contains("renew") && script.contains("--all-namespaces"),
        "{script}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn completion_scripts_cover_every_shell() {
    for shell in ["bash", "zsh", "fish"] {
        let output = binary().args(["completion", shell]).output().unwrap();
        assert!(output.status.success(), "{shell}");
        let script = String::from_utf8_lossy(&output.stdout);
        assert!(
            script.contains("webhook-operator") && script.contains("status"),
            "{shell}: {script}"
        );
    }
}

#[test]
fn without_a_cluster_the_commands_say_how_to_point_at_one() {
    let output = binary()
        .args(["status", "--kubeconfig", "/nonexistent/kubeconfig"])
        .output()
        .unwrap();
    assert!(!output.status.success());
    assert_eq!(
        String::from_utf8_lossy(&output.stderr).trim(),
        "error: cannot read the kubeconfig /nonexistent/kubeconfig: No such file or directory (os error 2)"
    );
}

#[test]
fn plan_checks_offline_and_shows_the_request_the_client_would_send() {
    let output = binary()
        .args([
            "plan",
            "-f",
            "examples/avaya.yaml",
            "-f",
            "examples/vonage.yaml",
            "-f",
            "examples/authvia.yaml",
        ])
        .current_dir(crate::support::repo_root())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(
        stdout.contains("✓ default/agent-events: valid (schema and CEL rules)"),
        "{stdout}"
    );
    assert!(
        stdout.contains("POST https://core.avaya1234.ec.avayacloud.com/api/events/v1/subscriptions"),
        "{stdout}"
    );
    assert!(
        stdout.contains("\"authToken\": \"<Secret avaya-webhook-token key token>\""),
        "{stdout}"
    );
    assert!(
        stdout.contains("POST https://emea.api.newvoicemedia.com/webhooks/subscriptions"),
        "{stdout}"
    );
    assert!(stdout.contains("POST https://api.authvia.com/v3/"), "{stdout}");
    // Secret values in the files are never read.
    for value in ["replace-with-a-long-random-token", "replace-with-your-client-secret"] {
        assert!(!stdout.contains(value), "{value} leaked: {stdout}");
    }

    // A mistake is refused with the field and the rule's message, offline.
    let dir = std::env::temp_dir().join(format!("whop-plan-{}-{}", std::process::id(), fastrand::u64(..)));
    std::fs::create_dir_all(&dir).unwrap();
    let bad = dir.join("bad.yaml");
    let example = std::fs::read_to_string(crate::support::repo_root().join("examples/avaya.yaml")).unwrap();
    std::fs::write(
        &bad,
        example.replace(
            "https://hooks.example.com/avaya/agent-events",
            "http://hooks.example.com/x",
        ),
    )
    .unwrap();
    let output = binary().args(["plan", "-f"]).arg(&bad).output().unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("✗ default/agent-events: refused by the WebhookSubscription schema"),
        "{stderr}"
    );
    assert!(stderr.contains("spec.endpoint: Invalid value"), "{stderr}");
    assert!(stderr.contains("the providers refuse plain http"), "{stderr}");
    // An endpoint the provider in the files does not allow is refused as the operator would.
    let outside = dir.join("outside.yaml");
    let example = std::fs::read_to_string(crate::support::repo_root().join("examples/vonage.yaml")).unwrap();
    std::fs::write(
        &outside,
        example.replace("hooks.example.com/vonage/presence", "hooks.example.com/other/presence"),
    )
    .unwrap();
    let output = binary().args(["plan", "-f"]).arg(&outside).output().unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("is not allowed by ClusterWebhookProvider \"vonage-emea\": its spec.allowedEndpoints admit hooks.example.com/vonage"),
        "{stderr}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}
