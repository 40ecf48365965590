//! RBAC proven: the controller runs as the chart's service account, elected through the Lease, against
//! the emulated API holding the chart's rendered roles, which authorizes every request it makes. Every
//! (verb, group, resource, subresource) it used must be granted, and every grant must have been used.

use std::collections::BTreeSet;
use std::process::Command;
use std::time::Duration;

use serde_json::{Value, json};

use crate::support::env::Env;
use crate::support::fixtures::{GROUP, NS, Sub};
use crate::support::poll::until;
use crate::support::{repo_root, tool_binary};

const SERVICE_ACCOUNT: &str = "system:serviceaccount:webhook-operator:webhook-operator";

/// (verb, API group, resource, subresource).
type Access = (String, String, String, String);

/// The chart's RBAC objects as `helm template` renders them with the default values.
fn rendered_rbac(helm: &std::path::Path) -> Vec<Value> {
    let output = Command::new(helm)
        .args([
            "template",
            "webhook-operator",
            "charts/webhook-operator",
            "--namespace",
            "webhook-operator",
            "--set",
            "image.repository=registry.example.com/webhook-operator",
            "--show-only",
            "templates/rbac.yaml",
        ])
        .current_dir(repo_root())
        .output()
        .unwrap();
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    serde_saphyr::from_multiple(&String::from_utf8(output.stdout).unwrap()).unwrap()
}

/// Every access the rules of the rendered roles grant.
fn granted(objects: &[Value]) -> BTreeSet<Access> {
    let mut out = BTreeSet::new();
    for role in objects
        .iter()
        .filter(|o| o["kind"] == "ClusterRole" || o["kind"] == "Role")
    {
        for rule in role["rules"].as_array().into_iter().flatten() {
            let list = |k: &str| -> Vec<String> {
                rule[k]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(|v| v.as_str().map(str::to_string))
                    .collect()
            };
            for group in list("apiGroups") {
                for resource in list("resources") {
                    let (resource, sub) = resource.split_once('/').unwrap_or((&resource, ""));
                    for verb in list("verbs") {
                        out.insert((verb, group.clone(), resource.to_string(), sub.to_string()));
                    }
                }
            }
        }
    }
    out
}

fn show(accesses: &BTreeSet<Access>) -> Vec<String> {
    accesses
        .iter()
        .map(|(verb, group, resource, sub)| {
            let resource = if sub.is_empty() {
                resource.clone()
            } else {
                format!("{resource}/{sub}")
            };
            format!("{verb} {resource}.{group}")
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_chart_grants_exactly_what_the_operator_uses() {
    let helm = tool_binary("helm", "WEBHOOK_OPERATOR_HELM");
    let rbac = rendered_rbac(&helm);
    // Avaya subscriptions live 6 s: renewals, and the repeated Renewed Event patched as a series.
    let mut env = Env::start(Duration::from_secs(6)).await;
    for object in &rbac {
        let (group, plural, ns) = match object["kind"].as_str().unwrap() {
            "ClusterRole" => ("rbac.authorization.k8s.io", "clusterroles", ""),
            "ClusterRoleBinding" => ("rbac.authorization.k8s.io", "clusterrolebindings", ""),
            "Role" => ("rbac.authorization.k8s.io", "roles", "webhook-operator"),
            "RoleBinding" => ("rbac.authorization.k8s.io", "rolebindings", "webhook-operator"),
            other => panic!("templates/rbac.yaml renders a {other}"),
        };
        env.put(group, "v1", plural, ns, object.clone());
    }
    env.subscription_secrets();
    env.vonage_cluster_provider(
        "vonage-shared",
        json!({"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": NS}}}),
    );
    let client = env.emu.client_as(SERVICE_ACCOUNT);
    env.start_elected_controller(client, "webhook-operator");

    // Everything the operator does on a working day.
    env.create_sub(Sub::avaya("agents", "/avaya/agents")).await;
    env.create_sub(Sub::vonage("presence", "/vonage/presence")).await;
    env.create_sub(Sub::authvia("payments", "/authvia/payments")).await;
    env.create_sub(Sub::vonage("shared", "/vonage/shared").cluster_provider("vonage-shared"))
        .await;
    for name in ["agents", "presence", "payments", "shared"] {
        env.wait_ready(name).await;
    }
    until("two Avaya renewals", || {
        env.get_sub("agents")
            .and_then(|s| s.status)
            .and_then(|s| s.renewal_count)
            .unwrap_or(0)
            >= 2
    })
    .await;
    let hash = |env: &Env| {
        env.get_sub("agents")
            .and_then(|s| s.status)
            .and_then(|s| s.applied_secret_hash)
    };
    let before = hash(&env);
    env.secret(NS, "avaya-token", &[("token", "avaya-delivery-token-rotated")]);
    until("the rotated token is sent", || hash(&env) != before).await;
    let mut payments = env.get_sub("payments").unwrap();
    payments.spec.authvia.as_mut().unwrap().attempts = 5;
    env.put(
        GROUP,
        "v1alpha1",
        "webhooksubscriptions",
        NS,
        serde_json::to_value(&payments).unwrap(),
    );
    until("the spec change is applied", || {
        env.get_sub("payments")
            .and_then(|s| s.status)
            .and_then(|s| s.observed_generation)
            == Some(2)
    })
    .await;
    env.subs().delete("presence", &Default::default()).await.unwrap();
    until("the deleted subscription is gone", || env.get_sub("presence").is_none()).await;
    env.stop_controller().await;

    let audit = env.emu.audit();
    let denied: BTreeSet<Access> = audit
        .iter()
        .filter(|r| r.user == SERVICE_ACCOUNT && !r.allowed)
        .map(|r| access(&r.attributes))
        .collect();
    assert!(denied.is_empty(), "the chart does not grant: {:?}", show(&denied));
    let used: BTreeSet<Access> = audit
        .iter()
        .filter(|r| r.user == SERVICE_ACCOUNT)
        .map(|r| access(&r.attributes))
        .collect();
    assert!(
        used.len() > 10,
        "the controller ran as the service account: {:?}",
        show(&used)
    );
    let granted = granted(&rbac);
    let unused: BTreeSet<Access> = granted.difference(&used).cloned().collect();
    assert!(
        unused.is_empty(),
        "granted but never used: {:?} (used: {:?})",
        show(&unused),
        show(&used)
    );
}

fn access(a: &webhook_operator::sandbox::kube::rbac::Attributes) -> Access {
    (
        a.verb.clone(),
        a.group.clone(),
        a.resource.clone(),
        a.subresource.clone(),
    )
}
