//! The Argo CD health check and actions in `argocd/`, run by a real Lua 5.1 interpreter (Argo CD runs
//! gopher-lua, a Lua 5.1): health by observedGeneration, pause and the Ready reason; actions that set the
//! annotations the operator honours.

use mlua::{Lua, LuaSerdeExt, Value as LuaValue};
use serde_json::{Value, json};

use crate::support::repo_root;

const DIR: &str = "argocd/webhook-operator.dev/WebhookSubscription";

fn run(script: &str, obj: &Value) -> Value {
    let lua = Lua::new();
    let code = std::fs::read_to_string(repo_root().join(DIR).join(script)).unwrap();
    lua.globals().set("obj", lua.to_value(obj).unwrap()).unwrap();
    let result: LuaValue = lua
        .load(&code)
        .set_name(script)
        .eval()
        .unwrap_or_else(|e| panic!("{script}: {e}"));
    lua.from_value(result).unwrap()
}

/// Argo CD hands scripts the live object as Kubernetes serves it: no status key before the first write.
fn subscription(generation: i64, status: Value) -> Value {
    let mut obj = json!({
        "apiVersion": "webhook-operator.dev/v1alpha1", "kind": "WebhookSubscription",
        "metadata": {"name": "s", "namespace": "default", "generation": generation},
        "spec": {"providerRef": {"name": "avaya"}, "endpoint": "https://h.example.com", "avaya": {"families": ["AGENT"], "events": ["ALL"]}},
        "status": status
    });
    if obj["status"].is_null() {
        obj.as_object_mut().unwrap().remove("status");
    }
    obj
}

fn ready(status: &str, reason: &str) -> Value {
    json!({"observedGeneration": 2, "conditions": [
        {"type": "Synced", "status": "True", "reason": "ReconcileSuccess"},
        {"type": "Ready", "status": status, "reason": reason, "message": "details"}
    ]})
}

#[test]
fn health_follows_generation_pause_and_ready_reason() {
    let health = |obj: &Value| {
        let hs = run("health.lua", obj);
        (
            hs["status"].as_str().unwrap().to_string(),
            hs["message"].as_str().unwrap_or("").to_string(),
        )
    };
    assert_eq!(health(&subscription(2, ready("True", "Available"))).0, "Healthy");
    let (status, message) = health(&subscription(3, ready("True", "Available")));
    assert_eq!(status, "Progressing", "a spec the operator has not observed yet");
    assert!(message.contains("latest spec"));
    assert_eq!(health(&subscription(1, Value::Null)).0, "Progressing");
    let (status, message) = health(&subscription(2, ready("False", "InvalidSpec")));
    assert_eq!(status, "Degraded");
    assert_eq!(message, "InvalidSpec: details");
    for reason in [
        "ProviderNotReady",
        "AlreadyExists",
        "AdoptionAmbiguous",
        "NotFound",
        "Expired",
    ] {
        assert_eq!(
            health(&subscription(2, ready("False", reason))).0,
            "Degraded",
            "{reason}"
        );
    }
    for reason in ["Creating", "Unavailable"] {
        assert_eq!(
            health(&subscription(2, ready("False", reason))).0,
            "Progressing",
            "{reason}"
        );
    }
    let mut paused = subscription(2, ready("True", "Available"));
    paused["metadata"]["annotations"] = json!({"webhook-operator.dev/paused": "true"});
    assert_eq!(health(&paused).0, "Suspended");
}

#[test]
fn actions_set_the_request_annotations() {
    let obj = subscription(2, ready("True", "Available"));
    let actions = run("actions/discovery.lua", &obj);
    assert_eq!(actions["reconcile"]["disabled"], false);
    assert_eq!(actions["renew"]["disabled"], false, "Avaya subscriptions renew");
    let mut vonage = obj.clone();
    vonage["spec"] =
        json!({"providerRef": {"name": "v"}, "endpoint": "https://h.example.com", "vonage": {"events": ["x"]}});
    assert_eq!(
        run("actions/discovery.lua", &vonage)["renew"]["disabled"],
        true,
        "nothing to renew"
    );

    for (action, annotation) in [
        ("reconcile", "webhook-operator.dev/reconcile-requested-at"),
        ("renew", "webhook-operator.dev/renew-requested-at"),
    ] {
        let updated = run(&format!("actions/{action}/action.lua"), &obj);
        let token = updated["metadata"]["annotations"][annotation].as_str().unwrap();
        assert!(
            token.parse::<jiff::Timestamp>().is_ok(),
            "{action}: {token} is a timestamp"
        );
        assert_eq!(updated["spec"], obj["spec"], "{action} leaves the spec alone");
    }
    // The operator reads exactly these names.
    use webhook_operator::api::annotation;
    assert_eq!(
        annotation::RECONCILE_REQUESTED_AT,
        "webhook-operator.dev/reconcile-requested-at"
    );
    assert_eq!(
        annotation::RENEW_REQUESTED_AT,
        "webhook-operator.dev/renew-requested-at"
    );
    assert_eq!(annotation::PAUSED, "webhook-operator.dev/paused");
}
