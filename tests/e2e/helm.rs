//! The Helm chart, rendered by real helm (v4): it lints, installs the same CRDs the code generates, runs
//! the operator with `run`, and grants exactly what the controller uses.

use std::process::Command;

use serde_json::Value;

use crate::support::{repo_root, tool_binary};

/// The image every rendering names (the chart has no default: no public image is published).
const IMAGE: &str = "image.repository=registry.example.com/webhook-operator";

fn helm_output(args: &[&str]) -> std::process::Output {
    let binary = tool_binary("helm", "WEBHOOK_OPERATOR_HELM");
    let home = std::env::temp_dir().join(format!("whop-helm-{}", std::process::id()));
    Command::new(binary)
        .args(args)
        .env("HELM_CACHE_HOME", home.join("cache"))
        .env("HELM_CONFIG_HOME", home.join("config"))
        .env("HELM_DATA_HOME", home.join("data"))
        .current_dir(repo_root())
        .output()
        .unwrap()
}

/// Renders the chart (`helm template rel charts/webhook-operator -n webhook-operator ARGS`) into objects.
fn render(args: &[&str]) -> Vec<Value> {
    let mut all = vec![
        "template",
        "rel",
        "charts/webhook-operator",
        "--namespace",
        "webhook-operator",
    ];
    all.extend_from_slice(args);
    let rendered = helm(&all);
    let docs: Vec<Value> = serde_saphyr::from_multiple(&rendered).unwrap();
    docs.into_iter().filter(Value::is_object).collect()
}

fn of_kind<'a>(docs: &'a [Value], kind: &str) -> impl Iterator<Item = &'a Value> + 'a {
    let kind = kind.to_string();
    docs.iter().filter(move |d| d["kind"] == kind.as_str())
}

fn numbers_as_f64(value: &Value) -> Value {
    match value {
        Value::Number(n) => serde_json::json!(n.as_f64()),
        Value::Array(items) => Value::Array(items.iter().map(numbers_as_f64).collect()),
        Value::Object(map) => Value::Object(map.iter().map(|(k, v)| (k.clone(), numbers_as_f64(v))).collect()),
        other => other.clone(),
    }
}

fn helm(args: &[&str]) -> String {
    let output = helm_output(args);
    assert!(
        output.status.success(),
        "helm {args:?} failed: {}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).unwrap()
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
    let lint = helm(&["lint", "--strict", "charts/webhook-operator", "--set", IMAGE]);
    assert!(lint.contains("0 chart(s) failed"), "{lint}");
    let docs = render(&[
        "--set",
        IMAGE,
        "--set",
        "driftCheckInterval=2m",
        "--set",
        "allowedOverrideOrigins={http://webhook-double.test:8080}",
    ]);
    let of_kind = |kind: &'static str| of_kind(&docs, kind);

    // The chart's CRDs are the generated ones, rendered as templates (so that upgrades upgrade them).
    let crds: Vec<&Value> = of_kind("CustomResourceDefinition").collect();
    assert_eq!(crds.len(), 3);
    for crd in webhook_operator::api::crds() {
        let file = webhook_operator::api::crd_file_name(&crd);
        let generated = webhook_operator::api::crd_yaml(&crd).unwrap();
        let in_chart =
            std::fs::read_to_string(repo_root().join("charts/webhook-operator/files/crds").join(&file)).unwrap();
        assert_eq!(
            in_chart, generated,
            "charts/webhook-operator/files/crds/{file} is stale; copy crds/ into the chart"
        );
        let rendered = crds
            .iter()
            .find(|c| c["metadata"]["name"].as_str() == crd.metadata.name.as_deref())
            .expect("rendered");
        // Helm's YAML round trip writes 1000.0 as 1000: compare numbers by value.
        assert_eq!(
            numbers_as_f64(&rendered["spec"]),
            numbers_as_f64(&serde_json::to_value(&crd).unwrap()["spec"])
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
    let single = render(&["--set", IMAGE, "--set", "leaderElection.enabled=false"]);
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

#[test]
fn every_option_turned_on_renders_a_complete_install() {
    let docs = render(&["--values", "charts/webhook-operator/ci/all-on-values.yaml"]);
    let one = |kind: &str| {
        let found: Vec<&Value> = of_kind(&docs, kind).collect();
        assert_eq!(found.len(), 1, "one {kind}: {found:?}");
        found[0]
    };
    let deployment = one("Deployment");
    assert_eq!(deployment["metadata"]["name"], "platform-hooks", "fullnameOverride");
    assert_eq!(deployment["spec"]["replicas"], 2);
    let pod = &deployment["spec"]["template"]["spec"];
    let container = &pod["containers"][0];
    assert_eq!(
        container["image"],
        "registry.example.com/platform/webhook-operator@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
        "a digest pins the image"
    );
    let args: Vec<&str> = container["args"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(Value::as_str)
        .collect();
    assert!(
        args.contains(&"--leader-election-name=platform-hooks"),
        "extraArgs: {args:?}"
    );
    assert!(
        args.contains(&"--shard-selector=webhook-operator.dev/shard=eu"),
        "{args:?}"
    );
    assert!(args.contains(&"--metrics-addr=0.0.0.0:9090"), "{args:?}");
    assert!(args.contains(&"--log-format=json"), "{args:?}");
    assert!(
        container["env"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["name"] == "HTTPS_PROXY"),
        "extraEnv"
    );
    assert_eq!(pod["priorityClassName"], "system-cluster-critical");
    assert_eq!(
        pod["topologySpreadConstraints"][0]["topologyKey"],
        "kubernetes.io/hostname"
    );
    assert_eq!(
        pod["securityContext"]["runAsNonRoot"], true,
        "restricted pod security kept"
    );
    assert_eq!(container["securityContext"]["readOnlyRootFilesystem"], true);
    assert_eq!(container["securityContext"]["capabilities"]["drop"][0], "ALL");
    assert_eq!(
        deployment["spec"]["template"]["metadata"]["labels"]["app.kubernetes.io/name"], "hooks",
        "nameOverride"
    );

    let service = one("Service");
    assert_eq!(service["metadata"]["name"], "platform-hooks-metrics");
    assert_eq!(service["spec"]["ports"][0]["port"], 9090);
    assert_eq!(service["spec"]["ports"][0]["targetPort"], "metrics");
    let selector = service["spec"]["selector"].as_object().unwrap();
    let pod_labels = &deployment["spec"]["template"]["metadata"]["labels"];
    assert!(
        selector.iter().all(|(k, v)| &pod_labels[k] == v),
        "the Service selects the pods"
    );
    let monitor = one("ServiceMonitor");
    assert_eq!(monitor["metadata"]["labels"]["release"], "prometheus");
    assert_eq!(monitor["spec"]["endpoints"][0]["port"], "metrics");
    let monitored = monitor["spec"]["selector"]["matchLabels"].as_object().unwrap();
    assert!(
        monitored.iter().all(|(k, v)| &service["metadata"]["labels"][k] == v),
        "selects the Service"
    );
    // Alerts only on metrics the operator exposes: one sample of each family, then their `# TYPE` lines
    // (a family without samples is not printed).
    let rule = one("PrometheusRule");
    assert_eq!(rule["metadata"]["labels"]["release"], "prometheus");
    record_one_of_each_metric();
    let exposed: Vec<String> = webhook_operator::telemetry::render()
        .lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .filter_map(|l| l.split_whitespace().next().map(str::to_string))
        .collect();
    let alerts = rule["spec"]["groups"][0]["rules"].as_array().unwrap();
    let names: Vec<&str> = alerts.iter().filter_map(|r| r["alert"].as_str()).collect();
    for wanted in [
        "WebhookSubscriptionExpiringSoon",
        "WebhookSubscriptionRenewalFailing",
        "WebhookProviderNotReady",
        "WebhookOperatorReconcileErrors",
    ] {
        assert!(names.contains(&wanted), "{names:?}");
    }
    for alert in alerts {
        let expr = alert["expr"].as_str().unwrap();
        assert!(expr.contains("webhook_operator_"), "{expr}");
        for metric in expr
            .split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .filter(|w| w.starts_with("webhook_operator_"))
        {
            let family = ["_total", "_bucket", "_count", "_sum"]
                .iter()
                .find_map(|suffix| metric.strip_suffix(suffix))
                .unwrap_or(metric);
            assert!(
                exposed.iter().any(|e| e == family),
                "{metric} in {expr} is not exposed: {exposed:?}"
            );
        }
    }
    assert!(
        expr_of(alerts, "WebhookSubscriptionExpiringSoon").ends_with("< 1800"),
        "expiryWarningSeconds"
    );
    let budget = one("PodDisruptionBudget");
    assert_eq!(budget["spec"]["minAvailable"], 1);
    let policy = one("NetworkPolicy");
    assert_eq!(policy["spec"]["ingress"][0]["ports"][0]["port"], "metrics");
    assert!(policy["spec"]["ingress"][0]["from"][0]["namespaceSelector"].is_object());
    let egress_ports: Vec<i64> = policy["spec"]["egress"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|rule| {
            rule["ports"]
                .as_array()
                .unwrap()
                .iter()
                .filter_map(|p| p["port"].as_i64())
        })
        .collect();
    assert!(
        egress_ports.contains(&53) && egress_ports.contains(&443),
        "{egress_ports:?}"
    );

    // Aggregated roles: view reads subscriptions and providers, edit manages them; never cluster providers.
    let view = of_kind(&docs, "ClusterRole")
        .find(|r| r["metadata"]["name"] == "platform-hooks-view")
        .unwrap();
    assert_eq!(
        view["metadata"]["labels"]["rbac.authorization.k8s.io/aggregate-to-view"],
        "true"
    );
    assert_eq!(
        rules_for(view, "webhook-operator.dev", "webhooksubscriptions"),
        ["get", "list", "watch"]
    );
    let edit = of_kind(&docs, "ClusterRole")
        .find(|r| r["metadata"]["name"] == "platform-hooks-edit")
        .unwrap();
    assert_eq!(
        edit["metadata"]["labels"]["rbac.authorization.k8s.io/aggregate-to-edit"],
        "true"
    );
    assert!(rules_for(edit, "webhook-operator.dev", "webhookproviders").contains(&"create"));
    for role in [view, edit] {
        assert!(rules_for(role, "webhook-operator.dev", "clusterwebhookproviders").is_empty());
    }
    let account = one("ServiceAccount");
    assert_eq!(pod["serviceAccountName"], account["metadata"]["name"]);
    assert!(account["metadata"]["annotations"]["eks.amazonaws.com/role-arn"].is_string());

    // NOTES.txt renders and names the install.
    let notes = helm(&[
        "install",
        "rel",
        "charts/webhook-operator",
        "--namespace",
        "webhook-operator",
        "--dry-run=client",
        "--values",
        "charts/webhook-operator/ci/all-on-values.yaml",
    ]);
    assert!(notes.contains("deployment/platform-hooks"), "{notes}");
    assert!(notes.contains("leader election on"), "{notes}");
}

#[test]
fn watch_namespaces_render_a_flag_and_a_role_per_namespace() {
    let docs = render(&["--set", IMAGE, "--set", "watchNamespaces={team-a,team-b}"]);
    let deployment = of_kind(&docs, "Deployment").next().unwrap();
    let args: Vec<&str> = deployment["spec"]["template"]["spec"]["containers"][0]["args"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(Value::as_str)
        .collect();
    let namespaces: Vec<&&str> = args.iter().filter(|a| a.starts_with("--namespace=")).collect();
    assert_eq!(namespaces, [&"--namespace=team-a", &"--namespace=team-b"]);
    let in_namespace = |kind: &str| -> Vec<String> {
        of_kind(&docs, kind)
            .filter(|o| !o["metadata"]["name"].as_str().unwrap().ends_with("-leader-election"))
            .map(|o| o["metadata"]["namespace"].as_str().unwrap_or("<cluster>").to_string())
            .collect()
    };
    assert_eq!(in_namespace("Role"), ["team-a", "team-b"]);
    assert_eq!(in_namespace("RoleBinding"), ["team-a", "team-b"]);
    assert_eq!(of_kind(&docs, "ClusterRoleBinding").count(), 0, "no cluster-wide grant");
    // Only the aggregated user roles remain cluster-scoped (and go with aggregateToDefaultRoles=false).
    assert!(of_kind(&docs, "ClusterRole").all(|r| {
        r["metadata"]["labels"]
            .as_object()
            .unwrap()
            .keys()
            .any(|k| k.starts_with("rbac.authorization.k8s.io/aggregate-to-"))
    }));
    let docs = render(&[
        "--set",
        IMAGE,
        "--set",
        "watchNamespaces={team-a}",
        "--set",
        "rbac.aggregateToDefaultRoles=false",
        "--set",
        "crds.enabled=false",
    ]);
    let cluster_scoped: Vec<&str> = docs
        .iter()
        .filter(|o| o["metadata"]["namespace"].is_null())
        .map(|o| o["kind"].as_str().unwrap())
        .collect();
    assert!(cluster_scoped.is_empty(), "{cluster_scoped:?}");
}

#[test]
fn bad_values_are_refused_with_a_message_naming_them() {
    let cases: [(&[&str], &str); 11] = [
        (
            &["--set", "replicaCount=abc"],
            "at '/replicaCount': got string, want integer",
        ),
        (
            &["--set", "logFormat=xml"],
            "at '/logFormat': value must be one of 'text', 'json'",
        ),
        (
            &["--set", "driftCheckInterval=banana"],
            "at '/driftCheckInterval': 'banana' does not match pattern",
        ),
        (&["--set", "replicaCount=0"], "at '/replicaCount'"),
        (&["--set", "image.digest=latest"], "at '/image/digest'"),
        (
            &["--set", "replicaCount=2", "--set", "leaderElection.enabled=false"],
            "replicaCount is 2 but leaderElection.enabled is false",
        ),
        (
            &["--set", "unknownValue=1"],
            "additional properties 'unknownValue' not allowed",
        ),
        (&["--set", "shardSelector=team=eu"], "at '/shardSelector'"),
        (&["--set", "watchNamespaces={team-a,Team_B}"], "at '/watchNamespaces/1'"),
        (&["--set", "reconcileConcurrency=1001"], "at '/reconcileConcurrency'"),
        (
            &["--set", "metrics.prometheusRule.expiryWarningSeconds=soon"],
            "at '/metrics/prometheusRule/expiryWarningSeconds'",
        ),
    ];
    for (args, message) in cases {
        let mut all = vec!["template", "rel", "charts/webhook-operator", "--set", IMAGE];
        all.extend_from_slice(args);
        let output = helm_output(&all);
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(!output.status.success(), "{args:?} rendered");
        assert!(stderr.contains(message), "{args:?}: {stderr}");
    }
    // No image: the chart has no placeholder to fall back on.
    let output = helm_output(&["template", "rel", "charts/webhook-operator"]);
    assert!(!output.status.success());
    assert!(String::from_utf8_lossy(&output.stderr).contains("image.repository is required"));
}

#[test]
fn crds_upgrade_with_the_release_and_stay_when_it_is_uninstalled() {
    // Helm never upgrades a chart's crds/ directory; the chart has none, its CRDs are templates.
    let shown = helm(&["show", "crds", "charts/webhook-operator"]);
    assert!(shown.trim().is_empty(), "nothing in crds/: {shown}");
    let upgrade = render(&["--is-upgrade", "--set", IMAGE]);
    let crds: Vec<&Value> = of_kind(&upgrade, "CustomResourceDefinition").collect();
    assert_eq!(crds.len(), 3, "an upgrade applies the CRDs");
    for crd in &crds {
        assert_eq!(crd["metadata"]["annotations"]["helm.sh/resource-policy"], "keep");
        assert_eq!(crd["metadata"]["labels"]["app.kubernetes.io/managed-by"], "Helm");
    }
    let not_kept = render(&["--set", IMAGE, "--set", "crds.keep=false"]);
    assert!(
        of_kind(&not_kept, "CustomResourceDefinition")
            .all(|c| c["metadata"]["annotations"]["helm.sh/resource-policy"].is_null())
    );
    let managed_elsewhere = render(&["--set", IMAGE, "--set", "crds.enabled=false"]);
    assert_eq!(of_kind(&managed_elsewhere, "CustomResourceDefinition").count(), 0);
}

fn expr_of<'a>(alerts: &'a [Value], name: &str) -> &'a str {
    alerts
        .iter()
        .find(|a| a["alert"] == name)
        .and_then(|a| a["expr"].as_str())
        .unwrap_or_default()
}

/// One sample in every metric family, under a provider no other test uses.
fn record_one_of_each_metric() {
    use webhook_operator::telemetry;
    let provider = telemetry::ProviderLabels {
        provider_kind: "WebhookProvider".into(),
        provider_namespace: "helm-chart-test".into(),
        provider_name: "alerts".into(),
        provider_type: "avaya".into(),
    };
    telemetry::provider_request(&provider, "create", Some(201), std::time::Duration::from_millis(5));
    telemetry::provider_ready("WebhookProvider/helm-chart-test/alerts", &provider, Some("True"));
    telemetry::reconcile(std::time::Duration::from_millis(5), Some("HelmChartTest"));
    telemetry::deferred(&provider);
    telemetry::subscription(
        "helm-chart-test",
        "alerts",
        Some(telemetry::SubscriptionGauges {
            provider,
            ready: "True".into(),
            expiration: Some(2e9),
            renewal: Some(2e9),
        }),
    );
    telemetry::leader("helm-chart-test", false);
}
