//! The Helm chart, rendered by real helm (v4): it lints, installs the same CRDs the code generates, runs
//! the operator with `run`, and grants exactly what the controller uses.

use std::process::Command;

use serde_json::Value;

use crate::support::{repo_root, tool_binary};

fn helm(args: &[&str]) -> Option<String> {
    let binary = tool_binary("helm", "WEBHOOK_OPERATOR_HELM")?;
    let home = std::env::temp_dir().join(format!("whop-helm-{}", std::process::id()));
    let output = Command::new(binary)
        .args(args)
        .env("HELM_CACHE_HOME", home.join("cache"))
        .env("HELM_CONFIG_HOME", home.join("config"))
        .env("HELM_DATA_HOME", home.join("data"))
        .current_dir(repo_root())
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "helm {args:?} failed: {}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    Some(String::from_utf8(output.stdout).unwrap())
}

fn rules_for<'a>(role: &'a Value, group: &str, resource: &str) -> Vec<&'a str> {
    role["rules"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| {
            r["apiGroups"].as_array().unwrap().iter().any(|g| g == group)
                && r["resources"].as_array().unwrap().iter().any(|x| x == resource)
        })
        .flat_map(|r| r["verbs"].as_array().unwrap().iter().map(|v| v.as_str().unwrap()))
        .collect()
}

#[test]
fn chart_lints_renders_and_matches_the_generated_crds() {
    let Some(lint) = helm(&["lint", "charts/webhook-operator"]) else {
        return;
    };
    assert!(lint.contains("0 chart(s) failed"), "{lint}");
    let rendered = helm(&[
        "template",
        "demo",
        "charts/webhook-operator",
        "--namespace",
        "webhook-operator",
        "--include-crds",
        "--set",
        "driftCheckInterval=2m",
        "--set",
        "allowedOverrideOrigins={http://webhook-double.test:8080}",
    ])
    .unwrap();
    let docs: Vec<Value> = serde_saphyr::from_multiple(&rendered).unwrap();
    let docs: Vec<&Value> = docs.iter().filter(|d| d.is_object()).collect();
    let of_kind = |kind: &'static str| docs.iter().copied().filter(move |d| d["kind"] == kind);

    // The chart's CRDs are the generated ones.
    let crds: Vec<&Value> = of_kind("CustomResourceDefinition").collect();
    assert_eq!(crds.len(), 3);
    for crd in webhook_operator::api::crds() {
        let file = webhook_operator::api::crd_file_name(&crd);
        let generated = webhook_operator::api::crd_yaml(&crd).unwrap();
        let in_chart = std::fs::read_to_string(repo_root().join("charts/webhook-operator/crds").join(&file)).unwrap();
        assert_eq!(
            in_chart, generated,
            "charts/webhook-operator/crds/{file} is stale; copy crds/ into the chart"
        );
    }

    let deployment = of_kind("Deployment").next().expect("a Deployment");
    let container = &deployment["spec"]["template"]["spec"]["containers"][0];
    let args: Vec<&str> = container["args"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a.as_str().unwrap())
        .collect();
    assert_eq!(args[0], "run");
    assert!(args.contains(&"--drift-check-interval=2m"), "{args:?}");
    assert!(args.contains(&"--leader-election"), "{args:?}");
    assert!(
        args.contains(&"--allow-override-origin=http://webhook-double.test:8080"),
        "{args:?}"
    );
    let lease_role = of_kind("Role").next().expect("a Role for the Lease");
    assert_eq!(lease_role["metadata"]["namespace"], "webhook-operator");
    let lease_verbs = rules_for(lease_role, "coordination.k8s.io", "leases");
    for verb in ["get", "create", "update"] {
        assert!(lease_verbs.contains(&verb), "{verb} leases");
    }
    // Without leader election: no Role, and never two pods at once.
    let single = helm(&[
        "template",
        "demo",
        "charts/webhook-operator",
        "--set",
        "leaderElection.enabled=false",
    ])
    .unwrap();
    let single: Vec<Value> = serde_saphyr::from_multiple(&single).unwrap();
    assert!(single.iter().all(|d| d["kind"] != "Role"));
    let single_deployment = single.iter().find(|d| d["kind"] == "Deployment").unwrap();
    assert_eq!(single_deployment["spec"]["strategy"]["type"], "Recreate");
    assert_eq!(container["readinessProbe"]["httpGet"]["path"], "/readyz");
    assert_eq!(container["livenessProbe"]["httpGet"]["path"], "/healthz");
    assert!(args.contains(&"--metrics-addr=0.0.0.0:8080"), "{args:?}");
    let env: Vec<&str> = container["env"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["name"].as_str().unwrap())
        .collect();
    assert!(env.contains(&"POD_NAMESPACE"));
    assert_eq!(
        deployment["spec"]["template"]["spec"]["serviceAccountName"],
        of_kind("ServiceAccount").next().unwrap()["metadata"]["name"]
    );

    // What the rules grant is proven by `rbac::the_chart_grants_exactly_what_the_operator_uses`.
    let role = of_kind("ClusterRole").next().expect("a ClusterRole");
    assert!(
        rules_for(role, "", "secrets").iter().all(|v| *v != "delete"),
        "never deletes Secrets"
    );

    // The operator binary accepts the flags the chart passes.
    let help = Command::new(env!("CARGO_BIN_EXE_webhook-operator"))
        .args(["run", "--help"])
        .output()
        .unwrap();
    let help = String::from_utf8_lossy(&help.stdout);
    for flag in args.iter().skip(1) {
        let name = flag.split('=').next().unwrap();
        assert!(help.contains(name), "run does not accept {name}");
    }
}
