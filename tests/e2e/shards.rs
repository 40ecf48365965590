//! Sharding: two shards and a replica started without a shard (by mistake, or for what no shard takes)
//! against one sandbox. Each subscription is reconciled by exactly one of them, nothing is created twice,
//! each shard holds its own Lease, and a subscription moved to another shard by its label is taken over
//! without a remote change.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use kube::api::{Patch, PatchParams};
use serde_json::json;
use webhook_operator::controller::shard::Shard;
use webhook_operator::sandbox::kube::AuditRecord;

use crate::support::env::Env;
use crate::support::fixtures::{Sub, creates};
use crate::support::poll::until;

/// Who wrote each subscription's status, from the emulator's audit log.
fn status_writers(audit: &[AuditRecord]) -> BTreeMap<String, BTreeSet<String>> {
    let mut writers: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for record in audit.iter().filter(|r| {
        r.attributes.resource == "webhooksubscriptions" && r.attributes.subresource == "status" && r.allowed
    }) {
        writers
            .entry(record.attributes.name.clone())
            .or_default()
            .insert(record.user.clone());
    }
    writers
}

fn remote_writes(env: &Env) -> usize {
    [&env.avaya.core, &env.vonage.core, &env.authvia.core]
        .iter()
        .flat_map(|core| core.requests())
        .filter(|r| matches!(r.method.as_str(), "POST" | "PUT" | "PATCH") && !r.path.contains("token"))
        .count()
}

/// Starts an elected replica per (user, shard); each acts as its own user, so the audit log tells their
/// requests apart.
fn start_replicas(env: &mut Env, replicas: Vec<(&str, Shard)>) {
    env.put(
        "rbac.authorization.k8s.io",
        "v1",
        "clusterroles",
        "",
        json!({"metadata": {"name": "operator"}, "rules": [{"apiGroups": ["*"], "resources": ["*"], "verbs": ["*"]}]}),
    );
    let subjects: Vec<_> = replicas
        .iter()
        .map(|(user, _)| json!({"kind": "User", "name": user}))
        .collect();
    env.put(
        "rbac.authorization.k8s.io",
        "v1",
        "clusterrolebindings",
        "",
        json!({"metadata": {"name": "operator"},
               "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "operator"},
               "subjects": subjects}),
    );
    for (user, shard) in replicas {
        let client = env.emu.client_as(user);
        env.start_shard(client, "webhook-operator", user, shard);
    }
}

fn labelled(sub: Sub, shard: Option<&str>) -> webhook_operator::api::WebhookSubscription {
    let mut sub = sub.build();
    if let Some(shard) = shard {
        sub.metadata.labels = Some([("webhook-operator.dev/shard".to_string(), shard.to_string())].into());
    }
    sub
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shards_split_the_subscriptions_and_a_replica_without_a_shard_takes_only_the_rest() {
    let mut env = Env::start(Duration::from_secs(600)).await;
    env.subscription_secrets();
    start_replicas(
        &mut env,
        vec![
            ("shard-a", Shard::parse("webhook-operator.dev/shard=a").unwrap()),
            ("shard-b", Shard::parse("webhook-operator.dev/shard=b").unwrap()),
            ("unsharded", Shard::unsharded()),
        ],
    );
    let mut owner = BTreeMap::new();
    for i in 0..3 {
        env.create_sub(labelled(Sub::avaya(&format!("a-{i}"), &format!("/a/{i}")), Some("a")))
            .await;
        env.create_sub(labelled(Sub::vonage(&format!("b-{i}"), &format!("/b/{i}")), Some("b")))
            .await;
        env.create_sub(labelled(Sub::authvia(&format!("u-{i}"), &format!("/u/{i}")), None))
            .await;
        owner.insert(format!("a-{i}"), "shard-a");
        owner.insert(format!("b-{i}"), "shard-b");
        owner.insert(format!("u-{i}"), "unsharded");
    }
    for name in owner.keys() {
        env.wait_ready(name).await;
    }
    // Each subscription was created once and written by exactly its shard.
    assert_eq!(creates(&env.avaya.core), 3);
    assert_eq!(creates(&env.vonage.core), 3);
    assert_eq!(creates(&env.authvia.core), 3);
    let writers = status_writers(&env.emu.audit());
    for (name, expected) in &owner {
        let by = writers.get(name).cloned().unwrap_or_default();
        assert_eq!(by, BTreeSet::from([expected.to_string()]), "{name}: {writers:?}");
    }
    // Each shard holds its own Lease.
    for (lease, holder) in [
        ("webhook-operator-shard-a", "shard-a"),
        ("webhook-operator-shard-b", "shard-b"),
        ("webhook-operator", "unsharded"),
    ] {
        let held = env
            .emu
            .get("coordination.k8s.io", "v1", "leases", "webhook-operator", lease)
            .unwrap_or_else(|| panic!("Lease {lease}"));
        assert_eq!(held["spec"]["holderIdentity"], holder, "{lease}");
    }

    // Moving a-0 to shard b is a label change: shard b takes it over, nothing changes remotely.
    let writes_before = remote_writes(&env);
    env.subs()
        .patch(
            "a-0",
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"labels": {"webhook-operator.dev/shard": "b"}}})),
        )
        .await
        .unwrap();
    let moved_at = env.emu.audit().len();
    env.annotate("a-0", "webhook-operator.dev/reconcile-requested-at", "moved")
        .await;
    until("shard b handles the request for a-0", || {
        env.get_sub("a-0")
            .and_then(|s| s.status)
            .and_then(|s| s.last_handled_reconcile_at)
            .as_deref()
            == Some("moved")
    })
    .await;
    let after = status_writers(&env.emu.audit()[moved_at..]);
    assert_eq!(
        after.get("a-0"),
        Some(&BTreeSet::from(["shard-b".to_string()])),
        "{after:?}"
    );
    assert_eq!(
        remote_writes(&env),
        writes_before,
        "no create, update or renew for the move"
    );
    env.stop_controller().await;
}

/// A copy of another subscription's external-id placed in another shard (or out of every shard) is
/// refused as in one replica: each replica follows the claims of the subscriptions it does not reconcile.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_copy_in_another_shard_never_takes_over() {
    let mut env = Env::start(Duration::from_secs(600)).await;
    env.tenant("team-b");
    start_replicas(
        &mut env,
        vec![
            ("shard-a", Shard::parse("webhook-operator.dev/shard=a").unwrap()),
            ("unsharded", Shard::unsharded()),
        ],
    );
    env.create_sub(labelled(Sub::vonage("in-a", "/vonage/in-a"), Some("a")))
        .await;
    env.create_sub(labelled(Sub::vonage("in-none", "/vonage/in-none"), None))
        .await;
    let mut ids = BTreeMap::new();
    for name in ["in-a", "in-none"] {
        ids.insert(
            name,
            env.wait_ready(name).await.status.unwrap().subscription_id.unwrap(),
        );
    }
    // Each copied into the other replica's share, from another namespace.
    for (victim, copy_shard) in [("in-a", None), ("in-none", Some("a"))] {
        env.create_sub(labelled(
            Sub::vonage(&format!("copy-of-{victim}"), "/vonage/evil")
                .namespace("team-b")
                .annotate(webhook_operator::api::annotation::EXTERNAL_ID, &ids[victim]),
            copy_shard,
        ))
        .await;
    }
    for victim in ["in-a", "in-none"] {
        let copy = format!("copy-of-{victim}");
        until(&format!("{copy} refused with AlreadyClaimed"), || {
            env.get_sub_in("team-b", &copy)
                .and_then(|s| crate::support::env::condition(&s, "Ready"))
                .is_some_and(|c| c.1 == "AlreadyClaimed" && c.2.contains(&format!("default/{victim}")))
        })
        .await;
        let remote = env.vonage.subscription(&ids[victim]).unwrap();
        assert_eq!(
            remote.url,
            format!("https://hooks.example.com/vonage/{victim}"),
            "never rewritten"
        );
    }
    assert_eq!(env.vonage.subscriptions().len(), 2, "nothing created for the copies");
    env.stop_controller().await;
}
