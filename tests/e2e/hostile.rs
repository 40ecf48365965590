//! Hostile and careless tenants, side by side with healthy subscriptions: each mistake gets the condition
//! reason and a message that names what to fix, makes no remote call it should not, and every other
//! subscription goes on working. (Mistakes the schema refuses at `kubectl apply` are `invalid_objects`.)

use std::time::Duration;

use k8s_openapi::api::core::v1::Secret;
use kube::api::{Api, PostParams};
use serde_json::json;
use webhook_operator::api::{AdoptionPolicy, WebhookSubscription, annotation};

use crate::support::env::{Env, condition};
use crate::support::fixtures::{AUTHVIA_SIGNING, AVAYA_TOKEN, GROUP, NS, Sub, creates};

struct Case {
    mistake: &'static str,
    object: WebhookSubscription,
    reason: &'static str,
    /// Words of the Ready message that say what is wrong and what to do.
    says: &'static [&'static str],
}

fn with_spec(sub: Sub, change: impl FnOnce(&mut serde_json::Value)) -> WebhookSubscription {
    let mut value = serde_json::to_value(sub.build()).unwrap();
    change(&mut value["spec"]);
    serde_json::from_value(value).unwrap()
}

fn cases(victim_id: &str) -> Vec<Case> {
    vec![
        Case {
            mistake: "a provider that does not exist",
            object: Sub::avaya("h-no-provider", "/h/1").provider("nope").build(),
            reason: "ProviderNotReady",
            says: &[
                "WebhookProvider \"nope\" does not exist in namespace default",
                "create it or fix spec.providerRef",
            ],
        },
        Case {
            mistake: "a token Secret that does not exist",
            object: with_spec(Sub::avaya("h-no-secret", "/h/2"), |s| {
                s["avaya"]["authToken"]["secretKeyRef"]["name"] = json!("missing-token")
            }),
            reason: "InvalidSpec",
            says: &[
                "Secret default/missing-token (referenced by spec.avaya.authToken) does not exist",
                "create it or fix the reference",
            ],
        },
        Case {
            mistake: "a token Secret without the key",
            object: with_spec(Sub::avaya("h-no-key", "/h/3"), |s| {
                s["avaya"]["authToken"]["secretKeyRef"]["key"] = json!("nokey")
            }),
            reason: "InvalidSpec",
            says: &["has no key \"nokey\"", "add the key or fix the reference"],
        },
        Case {
            mistake: "a Vonage block on an Avaya provider",
            object: Sub::vonage("h-wrong-block", "/h/4").provider("avaya").build(),
            reason: "InvalidSpec",
            says: &[
                "spec.vonage is set but WebhookProvider \"avaya\" is for avaya",
                "use spec.avaya instead",
            ],
        },
        Case {
            mistake: "paused: \"yes\"",
            object: Sub::vonage("h-paused-yes", "/h/5")
                .annotate(annotation::PAUSED, "yes")
                .build(),
            reason: "InvalidSpec",
            says: &["webhook-operator.dev/paused is \"yes\"", "write \"true\" to pause"],
        },
        Case {
            mistake: "a drift check every second",
            object: Sub::vonage("h-drift-1s", "/h/6")
                .annotate(annotation::DRIFT_CHECK_INTERVAL, "1s")
                .build(),
            reason: "InvalidSpec",
            says: &["drift-check-interval is \"1s\", out of range", "between 10s and 8760h"],
        },
        Case {
            mistake: "a drift check interval that is not a duration",
            object: Sub::vonage("h-drift-soon", "/h/7")
                .annotate(annotation::DRIFT_CHECK_INTERVAL, "soon")
                .build(),
            reason: "InvalidSpec",
            says: &["\"soon\" is not a duration", "between 10s and 8760h"],
        },
        Case {
            mistake: "a drift check interval past Go's limit",
            object: Sub::vonage("h-drift-huge", "/h/8")
                .annotate(annotation::DRIFT_CHECK_INTERVAL, "99999999999999999999h")
                .build(),
            reason: "InvalidSpec",
            says: &["longer than the 2562047h"],
        },
        Case {
            mistake: "a renewBefore past Go's limit",
            object: with_spec(Sub::avaya("h-renew-huge", "/h/9"), |s| {
                s["renewal"] = json!({"renewBefore": "99999999999999999999h"})
            }),
            reason: "InvalidSpec",
            says: &["spec.renewal.renewBefore", "use a duration such as 5m"],
        },
        Case {
            mistake: "another namespace's external-id (a copied manifest)",
            object: Sub::vonage("h-copy", "/h/10")
                .annotate(annotation::EXTERNAL_ID, victim_id)
                .build(),
            reason: "AlreadyClaimed",
            says: &[
                "claimed by WebhookSubscription team-victim/victim",
                "Remove the webhook-operator.dev/external-id annotation",
            ],
        },
        Case {
            mistake: "an AuthVia condition that is an object",
            object: with_spec(Sub::authvia("h-condition", "/h/11"), |s| {
                s["authvia"]["conditions"] = json!({"status": {"nested": true}})
            }),
            reason: "InvalidSpec",
            says: &["spec.authvia.conditions.status must be a string, number or boolean"],
        },
        Case {
            mistake: "a generated signing secret aimed at someone else's Secret",
            object: with_spec(Sub::vonage("h-not-owned", "/h/12"), |s| {
                s["vonage"]["signingSecret"]["secretKeyRef"]["name"] = json!("someone-elses")
            }),
            reason: "InvalidSpec",
            says: &[
                "exists without key \"secret\" and is not owned by this subscription",
                "use another Secret",
            ],
        },
        Case {
            mistake: "a provider pointed at the tenant's own host",
            object: Sub::vonage("h-exfiltrate", "/h/13").provider("exfiltrate").build(),
            reason: "ProviderNotReady",
            says: &["spec.vonage.baseUrl", "is refused", "--allow-override-origin"],
        },
        Case {
            mistake: "a provider whose credentials Secret does not exist",
            object: Sub::vonage("h-no-credentials", "/h/14")
                .provider("no-credentials")
                .build(),
            reason: "ProviderNotReady",
            says: &["Secret default/gone-credentials", "does not exist"],
        },
        Case {
            mistake: "a cluster provider that does not admit the namespace",
            object: Sub::vonage("h-not-admitted", "/h/15")
                .cluster_provider("restricted")
                .build(),
            reason: "ProviderNotReady",
            says: &["does not admit namespace default", "ask the platform team"],
        },
        Case {
            mistake: "adoptionPolicy Adopt with nothing to adopt",
            object: Sub::vonage("h-adopt-nothing", "/h/16")
                .adoption(AdoptionPolicy::Adopt)
                .build(),
            reason: "NotFound",
            says: &["adoptionPolicy is Adopt but no remote subscription matches"],
        },
        Case {
            mistake: "a remote subscription of the same name exists (adoptionPolicy None)",
            object: with_spec(Sub::vonage("h-exists", "/h/17"), |s| {
                s["vonage"]["name"] = json!("taken-name")
            }),
            reason: "AlreadyExists",
            says: &[
                "already matches this one and adoptionPolicy is None",
                "set spec.adoptionPolicy to Adopt",
            ],
        },
    ]
}

#[tokio::test]
async fn every_mistake_is_reported_and_every_healthy_subscription_keeps_working() {
    let mut env = Env::start(Duration::from_secs(600)).await;
    env.secret(NS, "avaya-token", &[("token", AVAYA_TOKEN)]);
    env.secret(
        NS,
        "authvia-hook",
        &[("signingSecret", AUTHVIA_SIGNING), ("apiKey", "k")],
    );
    env.secret(NS, "someone-elses", &[("other", "value")]);
    env.tenant("team-victim");
    let trap = env.receiver.url();
    let providers = [
        (
            "exfiltrate",
            json!({"vonage": {"baseUrl": format!("{trap}/webhooks"), "tokenUrl": format!("{trap}/token")},
                              "credentialsSecretRef": {"name": "vonage-credentials"}}),
        ),
        (
            "no-credentials",
            json!({"vonage": {"baseUrl": env.vonage.base_url(), "tokenUrl": env.vonage.token_url()},
                                  "credentialsSecretRef": {"name": "gone-credentials"}}),
        ),
    ];
    for (name, spec) in providers {
        env.put(
            GROUP,
            "v1alpha1",
            "webhookproviders",
            NS,
            json!({
            "apiVersion": "webhook-operator.dev/v1alpha1", "kind": "WebhookProvider",
            "metadata": {"name": name, "namespace": NS}, "spec": spec}),
        );
    }
    env.vonage_cluster_provider(
        "restricted",
        json!({"namespaceSelector": {"matchLabels": {"team": "payments"}}}),
    );
    env.vonage
        .insert("taken-name", "https://hooks.example.com/elsewhere", &["agent.*"]);
    env.start_controller();

    // Healthy subscriptions of every provider, and the victim of the copied external-id.
    let healthy = ["ok-avaya", "ok-vonage", "ok-authvia"];
    env.create_sub(Sub::avaya("ok-avaya", "/ok/avaya")).await;
    env.create_sub(Sub::vonage("ok-vonage", "/ok/vonage")).await;
    env.create_sub(Sub::authvia("ok-authvia", "/ok/authvia")).await;
    let victims: Api<WebhookSubscription> = Api::namespaced(env.client.clone(), "team-victim");
    victims
        .create(
            &PostParams::default(),
            &Sub::vonage("victim", "/victim").namespace("team-victim").build(),
        )
        .await
        .unwrap();
    for name in healthy {
        env.wait_ready(name).await;
    }
    let victim_id = crate::support::poll::eventually(
        "victim Ready",
        crate::support::poll::WAIT,
        Duration::from_millis(50),
        || async {
            let v = env.get_sub_in("team-victim", "victim")?;
            condition(&v, "Ready").filter(|c| c.0 == "True")?;
            v.status?.subscription_id
        },
    )
    .await;

    let cases = cases(&victim_id);
    for case in &cases {
        env.create_sub(case.object.clone()).await;
    }
    for case in &cases {
        let name = case.object.metadata.name.clone().unwrap();
        let s = env.wait_condition(&name, "Ready", "False", case.reason).await;
        let message = condition(&s, "Ready").unwrap().2;
        for words in case.says {
            assert!(message.contains(words), "{}: {message:?} lacks {words:?}", case.mistake);
        }
    }
    // Nothing reached the tenant's own host, the victim's remote subscription is untouched, and the
    // healthy ones still work: a rotation of the shared token goes through.
    assert!(
        env.receiver
            .deliveries()
            .iter()
            .all(|d| !d.path.contains("token") && !d.path.contains("webhooks"))
    );
    assert_eq!(
        env.vonage.subscription(&victim_id).unwrap().url,
        "https://hooks.example.com/victim"
    );
    env.secret(NS, "avaya-token", &[("token", "rotated-after-the-mistakes")]);
    let id = env
        .get_sub("ok-avaya")
        .unwrap()
        .status
        .unwrap()
        .subscription_id
        .unwrap();
    crate::support::poll::until("the healthy subscription rotated", || {
        env.avaya.subscription(&id).and_then(|s| s.auth_token).as_deref() == Some("rotated-after-the-mistakes")
    })
    .await;
    for name in healthy {
        assert_eq!(
            condition(&env.get_sub(name).unwrap(), "Ready").unwrap().0,
            "True",
            "{name}"
        );
    }
    let secrets: Api<Secret> = Api::namespaced(env.client.clone(), NS);
    let untouched = secrets.get("someone-elses").await.unwrap();
    assert_eq!(
        untouched.data.unwrap().len(),
        1,
        "a user's Secret is never written into"
    );
    eprintln!(
        "{} controller-level mistakes reported; healthy subscriptions unaffected",
        cases.len()
    );
}

#[tokio::test]
async fn a_shared_provider_keeps_its_events_on_the_endpoints_it_allows() {
    let mut env = Env::start(Duration::from_secs(600)).await;
    env.vonage_cluster_provider(
        "vonage-shared",
        json!({"allowedEndpoints": [{"host": "hooks.example.com", "pathPrefix": "/vonage/team-a"}]}),
    );
    env.start_controller();
    env.create_sub(Sub::vonage("inside", "/vonage/team-a/presence").cluster_provider("vonage-shared"))
        .await;
    env.create_sub(Sub::vonage("outside", "/vonage/team-b/presence").cluster_provider("vonage-shared"))
        .await;
    env.wait_ready("inside").await;
    let refused = env.wait_condition("outside", "Ready", "False", "InvalidSpec").await;
    let (_, _, message) = condition(&refused, "Ready").unwrap();
    assert!(
        message.contains("spec.endpoint https://hooks.example.com/vonage/team-b/presence is not allowed by ClusterWebhookProvider \"vonage-shared\"")
            && message.contains("admit hooks.example.com/vonage/team-a"),
        "{message}"
    );
    let (_, synced, _) = condition(&refused, "Synced").unwrap();
    assert_eq!(synced, "InvalidSpec");
    // Exactly one remote subscription: the refused one made no call.
    let created = creates(&env.vonage.core);
    assert_eq!(created, 1);
    // The provider's owner allows team-b too: the refused subscription goes on by itself.
    env.vonage_cluster_provider(
        "vonage-shared",
        json!({"allowedEndpoints": [
            {"host": "hooks.example.com", "pathPrefix": "/vonage/team-a"},
            {"host": "hooks.example.com", "pathPrefix": "/vonage/team-b"}
        ]}),
    );
    env.wait_ready("outside").await;
}
