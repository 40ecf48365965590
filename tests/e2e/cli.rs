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
