//! The same controller against a real cluster (kind, k3d, ...): set `WEBHOOK_OPERATOR_E2E_KUBECONFIG`.
//! The controller runs in this process with the provider simulators on 127.0.0.1, so no image is needed;
//! it installs the CRDs, works in a fresh namespace and deletes it afterwards. It is ignored by default, so
//! a run without a cluster reports it as not run; `cargo test --test e2e -- --ignored cluster::` runs it,
//! and fails when the variable is missing.

use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::{Namespace, Secret};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use serde_json::json;
use webhook_operator::api::{WebhookProvider, WebhookSubscription, crds};
use webhook_operator::clock::SystemClock;
use webhook_operator::controller::endpoints::Origin;
use webhook_operator::controller::{self, Config};
use webhook_operator::sandbox::providers::avaya::AvayaSimulator;
use webhook_operator::sandbox::providers::vonage::VonageSimulator;

use crate::support::fixtures::{AVAYA_ID, AVAYA_SECRET, LOCAL, Sub, VONAGE_ID, VONAGE_SECRET};
use crate::support::poll::eventually;

const MANAGER: &str = "webhook-operator-e2e";

async fn wait_ready(api: &Api<WebhookSubscription>, name: &str) -> WebhookSubscription {
    eventually(&format!("{name} Ready"), Duration::from_secs(60), POLL, || async {
        api.get(name).await.ok().filter(|sub| {
            sub.status
                .as_ref()
                .is_some_and(|s| s.conditions.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
        })
    })
    .await
}

const POLL: Duration = Duration::from_millis(200);

#[tokio::test]
#[ignore = "needs a real cluster: set WEBHOOK_OPERATOR_E2E_KUBECONFIG and run with --ignored"]
async fn against_a_real_cluster() {
    let path = std::env::var_os("WEBHOOK_OPERATOR_E2E_KUBECONFIG")
        .expect("set WEBHOOK_OPERATOR_E2E_KUBECONFIG to a kind/k3d kubeconfig to run against a real cluster");
    let kubeconfig = kube::config::Kubeconfig::read_from(&path).expect("readable kubeconfig");
    let config = kube::Config::from_custom_kubeconfig(kubeconfig, &Default::default())
        .await
        .unwrap();
    let client = kube::Client::try_from(config).unwrap();
    let apply = PatchParams::apply(MANAGER).force();

    let crd_api: Api<CustomResourceDefinition> = Api::all(client.clone());
    for crd in crds() {
        let name = kube::ResourceExt::name_any(&crd);
        crd_api.patch(&name, &apply, &Patch::Apply(&crd)).await.unwrap();
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    let ns = format!("whop-e2e-{}", fastrand::u32(..));
    let namespaces: Api<Namespace> = Api::all(client.clone());
    for name in [ns.as_str(), "webhook-operator"] {
        let body = json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}});
        namespaces.patch(name, &apply, &Patch::Apply(&body)).await.unwrap();
    }
    let local = std::net::SocketAddr::from(LOCAL);
    let avaya = AvayaSimulator::start(local, AVAYA_ID, AVAYA_SECRET, Duration::from_secs(20))
        .await
        .unwrap();
    let vonage = VonageSimulator::start(local, VONAGE_ID, VONAGE_SECRET).await.unwrap();
    let secrets: Api<Secret> = Api::namespaced(client.clone(), &ns);
    for (name, data) in [
        (
            "avaya-credentials",
            json!({"clientId": AVAYA_ID, "clientSecret": AVAYA_SECRET}),
        ),
        (
            "vonage-credentials",
            json!({"clientId": VONAGE_ID, "clientSecret": VONAGE_SECRET}),
        ),
        ("avaya-token", json!({"token": "real-cluster-token-1"})),
    ] {
        let body = json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": name}, "stringData": data});
        secrets.patch(name, &apply, &Patch::Apply(&body)).await.unwrap();
    }
    let providers: Api<WebhookProvider> = Api::namespaced(client.clone(), &ns);
    for (name, block) in [
        (
            "avaya",
            json!({"avaya": {"baseUrl": avaya.base_url(), "tokenUrl": avaya.token_url()}}),
        ),
        (
            "vonage",
            json!({"vonage": {"baseUrl": vonage.base_url(), "tokenUrl": vonage.token_url()}}),
        ),
    ] {
        let mut spec = block;
        spec["credentialsSecretRef"] = json!({"name": format!("{name}-credentials")});
        let body = json!({"apiVersion": "webhook-operator.dev/v1alpha1", "kind": "WebhookProvider", "metadata": {"name": name}, "spec": spec});
        providers.patch(name, &apply, &Patch::Apply(&body)).await.unwrap();
    }

    let mut config = Config::new("webhook-operator", Arc::new(SystemClock));
    config.drift_interval = Duration::from_secs(600);
    config.endpoints.allowed_origins = [avaya.base_url(), vonage.base_url()]
        .iter()
        .map(|u| Origin::parse(&reqwest::Url::parse(u).unwrap().origin().ascii_serialization()).unwrap())
        .collect();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let controller = tokio::spawn(controller::run(client.clone(), config, async {
        let _ = stopped.await;
    }));

    let subs: Api<WebhookSubscription> = Api::namespaced(client.clone(), &ns);
    let agents = Sub::avaya("agents", "/avaya").namespace(&ns).build();
    let presence = Sub::vonage("presence", "/vonage").namespace(&ns).build();
    subs.create(&PostParams::default(), &agents).await.unwrap();
    subs.create(&PostParams::default(), &presence).await.unwrap();
    let agents = wait_ready(&subs, "agents").await;
    wait_ready(&subs, "presence").await;
    let id = agents.status.unwrap().subscription_id.unwrap();

    // Renewed before the 20 s lifetime runs out; rotation reaches the provider.
    eventually("renewed on a real cluster", Duration::from_secs(30), POLL, || async {
        assert_eq!(avaya.status_of(&id), Some("ACTIVE"));
        (avaya.subscription(&id).unwrap().renewals > 0).then_some(())
    })
    .await;
    let body = json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "avaya-token"}, "stringData": {"token": "real-cluster-token-2"}});
    secrets
        .patch("avaya-token", &apply, &Patch::Apply(&body))
        .await
        .unwrap();
    eventually("rotated on a real cluster", Duration::from_secs(30), POLL, || async {
        (avaya.subscription(&id).unwrap().auth_token.as_deref() == Some("real-cluster-token-2")).then_some(())
    })
    .await;

    // Deletion removes the remote side and lets the objects go.
    subs.delete("agents", &DeleteParams::default()).await.unwrap();
    subs.delete("presence", &DeleteParams::default()).await.unwrap();
    eventually("subscriptions deleted", Duration::from_secs(60), POLL, || async {
        subs.list(&Default::default())
            .await
            .unwrap()
            .items
            .is_empty()
            .then_some(())
    })
    .await;
    assert!(avaya.subscriptions().is_empty() && vonage.subscriptions().is_empty());
    let _ = stop.send(());
    let _ = controller.await;
    namespaces.delete(&ns, &DeleteParams::default()).await.unwrap();
}
