//! RBAC proven: the controller runs as the chart's service account, elected through the Lease, against
//! the emulated API holding the chart's rendered roles, which authorizes every request it makes. Every
//! (verb, group, resource, subresource) it used must be granted, and every grant must have been used.

use std::collections::BTreeSet;
use std::process::Command;
use std::time::Duration;

use serde_json::{Value, json};

use kube::Api;
use webhook_operator::api::WebhookSubscription;
use webhook_operator::controller::scope::Scope;

use crate::support::env::Env;
use crate::support::fixtures::{GROUP, NS, Sub};
use crate::support::poll::until;
use crate::support::{repo_root, tool_binary};

const SERVICE_ACCOUNT: &str = "system:serviceaccount:webhook-operator:webhook-operator";

/// (verb, API group, resource, subresource).
type Access = (String, String, String, String);

/// The chart's RBAC objects as `helm template` renders them with the default values and `set`.
fn rendered_rbac(helm: &std::path::Path, set: &[&str]) -> Vec<Value> {
    let mut args = vec![
        "template",
        "webhook-operator",
        "charts/webhook-operator",
        "--namespace",
        "webhook-operator",
        "--set",
        "image.repository=registry.example.com/webhook-operator",
        "--show-only",
        "templates/rbac.yaml",
    ];
    for value in set {
        args.extend(["--set", value]);
    }
    let output = Command::new(helm).args(args).current_dir(repo_root()).output().unwrap();
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

/// Loads the rendered RBAC objects into the emulator.
fn load(env: &Env, rbac: &[Value]) {
    for object in rbac {
        let ns = object["metadata"]["namespace"].as_str().unwrap_or_default();
        let (plural, namespaced) = match object["kind"].as_str().unwrap() {
            "ClusterRole" => ("clusterroles", false),
            "ClusterRoleBinding" => ("clusterrolebindings", false),
            "Role" => ("roles", true),
            "RoleBinding" => ("rolebindings", true),
            other => panic!("templates/rbac.yaml renders a {other}"),
        };
        assert_eq!(namespaced, !ns.is_empty(), "{object}");
        env.put("rbac.authorization.k8s.io", "v1", plural, ns, object.clone());
    }
}

/// Everything the operator does on a working day, in namespace NS and in `other`: renewals and the
/// repeated Renewed Event patched as a series, a rotation, a spec change, a generated signing secret, a
/// deletion. Then the controller is stopped.
async fn working_day(env: &mut Env, other: &str) {
    env.create_sub(Sub::avaya("agents", "/avaya/agents")).await;
    env.create_sub(Sub::authvia("payments", "/authvia/payments")).await;
    env.create_sub(Sub::vonage("presence", "/vonage/presence").namespace(other))
        .await;
    for name in ["agents", "payments"] {
        env.wait_ready(name).await;
    }
    until("presence is Ready", || {
        env.get_sub_in(other, "presence")
            .is_some_and(|s| crate::support::env::condition(&s, "Ready").is_some_and(|(status, _, _)| status == "True"))
    })
    .await;
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
    let before = hash(env);
    env.secret(NS, "avaya-token", &[("token", "avaya-delivery-token-rotated")]);
    until("the rotated token is sent", || hash(env) != before).await;
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
    Api::<WebhookSubscription>::namespaced(env.client.clone(), other)
        .delete("presence", &Default::default())
        .await
        .unwrap();
    until("the deleted subscription is gone", || {
        env.get_sub_in(other, "presence").is_none()
    })
    .await;
}

/// What the service account asked for, after the controller stopped; asserts nothing was denied.
async fn audited(env: &mut Env) -> Vec<webhook_operator::sandbox::kube::rbac::Attributes> {
    env.stop_controller().await;
    let audit = env.emu.audit();
    let denied: BTreeSet<Access> = audit
        .iter()
        .filter(|r| r.user == SERVICE_ACCOUNT && !r.allowed)
        .map(|r| access(&r.attributes))
        .collect();
    assert!(denied.is_empty(), "the chart does not grant: {:?}", show(&denied));
    let used: Vec<_> = audit
        .into_iter()
        .filter(|r| r.user == SERVICE_ACCOUNT)
        .map(|r| r.attributes)
        .collect();
    assert!(used.len() > 10, "the controller ran as the service account");
    used
}

/// Every grant was used.
fn assert_all_used(rbac: &[Value], used: &[webhook_operator::sandbox::kube::rbac::Attributes]) {
    let used: BTreeSet<Access> = used.iter().map(access).collect();
    let granted = granted(rbac);
    let unused: BTreeSet<Access> = granted.difference(&used).cloned().collect();
    assert!(
        unused.is_empty(),
        "granted but never used: {:?} (used: {:?})",
        show(&unused),
        show(&used)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_chart_grants_exactly_what_the_operator_uses() {
    let helm = tool_binary("helm", "WEBHOOK_OPERATOR_HELM");
    let rbac = rendered_rbac(&helm, &[]);
    // Avaya subscriptions live 6 s: renewals, and the repeated Renewed Event patched as a series.
    let mut env = Env::start(Duration::from_secs(6)).await;
    load(&env, &rbac);
    env.tenant("team-b");
    env.subscription_secrets();
    env.vonage_cluster_provider(
        "vonage-shared",
        json!({"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": NS}}}),
    );
    let client = env.emu.client_as(SERVICE_ACCOUNT);
    env.start_elected_controller(client, "webhook-operator");
    env.create_sub(Sub::vonage("shared", "/vonage/shared").cluster_provider("vonage-shared"))
        .await;
    env.wait_ready("shared").await;
    working_day(&mut env, "team-b").await;
    let used = audited(&mut env).await;
    assert_all_used(&rbac, &used);
}

/// watchNamespaces: Roles in those namespaces, nothing cluster-scoped; the controller run with the same
/// namespaces never asks for more, and leaves every other namespace alone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_namespaced_install_grants_and_uses_only_its_namespaces() {
    let helm = tool_binary("helm", "WEBHOOK_OPERATOR_HELM");
    let rbac = rendered_rbac(&helm, &[&format!("watchNamespaces={{{NS},team-b}}")]);
    assert!(
        rbac.iter().all(|o| o["kind"] == "Role" || o["kind"] == "RoleBinding"),
        "only Roles and RoleBindings: {rbac:?}"
    );
    let mut env = Env::start(Duration::from_secs(6)).await;
    env.tenant("team-b");
    env.tenant("team-c");
    load(&env, &rbac);
    env.subscription_secrets();
    env.vonage_cluster_provider("vonage-shared", json!({}));
    let client = env.emu.client_as(SERVICE_ACCOUNT);
    env.start_scoped(
        client,
        "webhook-operator",
        Scope::parse(&[NS.to_string(), "team-b".to_string()]).unwrap(),
    );
    env.create_sub(Sub::vonage("elsewhere", "/vonage/elsewhere").namespace("team-c"))
        .await;
    env.create_sub(Sub::vonage("shared", "/vonage/shared").cluster_provider("vonage-shared"))
        .await;
    let shared = env
        .wait("shared", "told the ClusterWebhookProvider is out of reach", |s| {
            crate::support::env::condition(s, "Ready").is_some_and(|(_, _, message)| message.contains("out of reach"))
        })
        .await;
    let (_, reason, message) = crate::support::env::condition(&shared, "Ready").unwrap();
    assert_eq!(reason, "ProviderNotReady", "{message}");
    assert!(
        message.contains("namespaces default, team-b")
            && message.contains("use a WebhookProvider in namespace default"),
        "{message}"
    );
    working_day(&mut env, "team-b").await;
    let used = audited(&mut env).await;
    let outside: Vec<_> = used
        .iter()
        .filter(|a| ![NS, "team-b", "webhook-operator"].contains(&a.namespace.as_str()))
        .map(|a| format!("{} {} in {:?}", a.verb, a.resource, a.namespace))
        .collect();
    assert!(
        outside.is_empty(),
        "requests beyond the watched namespaces: {outside:?}"
    );
    assert_all_used(&rbac, &used);
    let elsewhere = env.get_sub_in("team-c", "elsewhere").unwrap();
    assert!(
        elsewhere.metadata.finalizers.is_none() && elsewhere.status.is_none(),
        "a subscription in an unwatched namespace is left alone: {elsewhere:?}"
    );
    assert!(
        env.vonage.subscriptions().iter().all(|s| !s.url.contains("elsewhere")),
        "nothing created for it"
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
