//! The Argo CD resource customizations in `argocd/`, in Argo CD's own layout (`<group>/<Kind>/health.lua`
//! with `health_test.yaml` and `testdata/`, `actions/` with `action_test.yaml`), run the way Argo CD's
//! tests run them, by a real Lua 5.1 interpreter (Argo CD runs gopher-lua, a Lua 5.1): so they can be
//! contributed upstream as they are.

use std::path::{Path, PathBuf};

use mlua::{Lua, LuaSerdeExt, Value as LuaValue};
use serde_json::{Value, json};

use crate::support::repo_root;

/// The request annotations the actions set to the current time, compared as this fixed value (Argo CD's
/// action tests normalize `kubectl.kubernetes.io/restartedAt` the same way).
const TIME_ANNOTATIONS: [&str; 2] = [
    "webhook-operator.dev/reconcile-requested-at",
    "webhook-operator.dev/renew-requested-at",
];
const NORMALIZED_TIME: &str = "0001-01-01T00:00:00Z";

fn run(script: &Path, obj: &Value) -> Value {
    let lua = Lua::new();
    let code = std::fs::read_to_string(script).unwrap_or_else(|e| panic!("{}: {e}", script.display()));
    lua.globals().set("obj", lua.to_value(obj).unwrap()).unwrap();
    let result: LuaValue = lua
        .load(&code)
        .set_name(script.display().to_string())
        .eval()
        .unwrap_or_else(|e| panic!("{}: {e}", script.display()));
    lua.from_value(result).unwrap()
}

fn yaml(path: &Path) -> Value {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_saphyr::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// `argocd/<group>/<Kind>` directories.
fn kinds() -> Vec<PathBuf> {
    let mut dirs = Vec::new();
    for group in std::fs::read_dir(repo_root().join("argocd")).unwrap() {
        for kind in std::fs::read_dir(group.unwrap().path()).unwrap() {
            dirs.push(kind.unwrap().path());
        }
    }
    dirs.sort();
    dirs
}

/// Lua numbers come back as floats; compare numbers by value.
fn numbers_as_f64(value: &Value) -> Value {
    match value {
        Value::Number(n) => json!(n.as_f64()),
        Value::Array(items) => Value::Array(items.iter().map(numbers_as_f64).collect()),
        Value::Object(map) => Value::Object(map.iter().map(|(k, v)| (k.clone(), numbers_as_f64(v))).collect()),
        other => other.clone(),
    }
}

#[test]
fn every_kind_passes_its_health_tests() {
    let dirs = kinds();
    let names: Vec<String> = dirs
        .iter()
        .map(|d| d.file_name().unwrap().to_string_lossy().into_owned())
        .collect();
    assert_eq!(
        names,
        ["ClusterWebhookProvider", "WebhookProvider", "WebhookSubscription"],
        "a health check for each kind"
    );
    for dir in dirs {
        let tests = yaml(&dir.join("health_test.yaml"));
        let cases = tests["tests"].as_array().unwrap();
        assert!(cases.len() >= 5, "{}: {} cases", dir.display(), cases.len());
        let mut statuses = std::collections::BTreeSet::new();
        for case in cases {
            let input = case["inputPath"].as_str().unwrap();
            let got = run(&dir.join("health.lua"), &yaml(&dir.join(input)));
            let want = &case["healthStatus"];
            assert_eq!(got["status"], want["status"], "{}: {input}", dir.display());
            assert_eq!(got["message"], want["message"], "{}: {input}", dir.display());
            statuses.insert(got["status"].as_str().unwrap().to_string());
            let deleting = yaml(&dir.join(input))["metadata"]["deletionTimestamp"].is_string();
            if deleting {
                assert_eq!(
                    got["status"],
                    "Progressing",
                    "{}: an object being deleted",
                    dir.display()
                );
            }
        }
        for status in ["Healthy", "Progressing", "Degraded"] {
            assert!(statuses.contains(status), "{}: no {status} case", dir.display());
        }
        assert!(
            cases
                .iter()
                .any(|c| c["inputPath"].as_str().unwrap().contains("deleting")),
            "{}: a deletion case",
            dir.display()
        );
    }
}

#[test]
fn every_ready_reason_of_a_subscription_has_a_deliberate_health() {
    use webhook_operator::controller::Reason;
    let dir = repo_root().join("argocd/webhook-operator.dev/WebhookSubscription");
    let base = yaml(&dir.join("testdata/healthy.yaml"));
    // The reasons a subscription's Ready condition takes (the first block of the Reason enum).
    let ready_reasons = &Reason::ALL[..Reason::ALL.iter().position(|r| *r == Reason::ReconcileSuccess).unwrap()];
    for reason in ready_reasons.iter().filter(|r| **r != Reason::Available) {
        let mut obj = base.clone();
        obj["status"]["conditions"][0]["status"] = json!("False");
        obj["status"]["conditions"][0]["reason"] = json!(reason.as_str());
        let health = run(&dir.join("health.lua"), &obj);
        let status = health["status"].as_str().unwrap();
        assert!(matches!(status, "Progressing" | "Degraded"), "{reason:?}: {status}");
        assert!(
            health["message"].as_str().unwrap().starts_with(reason.as_str()),
            "{reason:?}"
        );
    }
}

#[test]
fn actions_pass_their_upstream_tests() {
    let dir = repo_root().join("argocd/webhook-operator.dev/WebhookSubscription/actions");
    let tests = yaml(&dir.join("action_test.yaml"));
    for case in tests["discoveryTests"].as_array().unwrap() {
        let input = case["inputPath"].as_str().unwrap();
        let got = run(&dir.join("discovery.lua"), &yaml(&dir.join(input)));
        let expected = case["result"].as_array().unwrap();
        assert_eq!(got.as_object().unwrap().len(), expected.len(), "{input}: {got}");
        for action in expected {
            let name = action["name"].as_str().unwrap();
            assert_eq!(got[name]["disabled"], action["disabled"], "{input}: {name}");
        }
    }
    let actions = tests["actionTests"].as_array().unwrap();
    assert_eq!(actions.len(), 2);
    for case in actions {
        let action = case["action"].as_str().unwrap();
        let input = yaml(&dir.join(case["inputPath"].as_str().unwrap()));
        let mut got = run(&dir.join(action).join("action.lua"), &input);
        for annotation in TIME_ANNOTATIONS {
            if let Some(value) = got["metadata"]["annotations"].get_mut(annotation) {
                assert!(
                    value.as_str().unwrap().parse::<jiff::Timestamp>().is_ok(),
                    "{action}: {value} is a timestamp"
                );
                *value = json!(NORMALIZED_TIME);
            }
        }
        let expected = yaml(&dir.join(case["expectedOutputPath"].as_str().unwrap()));
        assert_eq!(numbers_as_f64(&got), numbers_as_f64(&expected), "{action}");
    }
    // The operator reads exactly these names.
    use webhook_operator::api::annotation;
    assert_eq!(
        TIME_ANNOTATIONS,
        [annotation::RECONCILE_REQUESTED_AT, annotation::RENEW_REQUESTED_AT]
    );
    assert_eq!(annotation::PAUSED, "webhook-operator.dev/paused");
}
