//! The committed CRDs are the generated ones, and carry what users and kubectl rely on.

use serde_json::Value;
use webhook_operator::api::{crd_file_name, crd_yaml, crds};

use crate::support::repo_root;

#[test]
fn committed_crds_match_the_types() {
    let dir = repo_root().join("crds");
    let mut expected_files: Vec<String> = Vec::new();
    for crd in crds() {
        let file = crd_file_name(&crd);
        let committed = std::fs::read_to_string(dir.join(&file)).unwrap_or_default();
        assert_eq!(
            committed,
            crd_yaml(&crd).unwrap(),
            "crds/{file} is out of date with src/api; run `cargo run -- crds --output-dir crds`"
        );
        expected_files.push(file);
    }
    let mut present: Vec<String> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    present.sort();
    expected_files.sort();
    assert_eq!(present, expected_files, "crds/ holds files the types do not generate");
}

#[test]
fn crds_command_prints_every_crd() {
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_webhook-operator"))
        .arg("crds")
        .output()
        .expect("run webhook-operator crds");
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let printed = String::from_utf8(output.stdout).unwrap();
    let docs: Vec<Value> = serde_saphyr::from_multiple(&printed).expect("valid multi-document YAML");
    let names: Vec<&str> = docs.iter().map(|d| d["metadata"]["name"].as_str().unwrap()).collect();
    assert_eq!(
        names,
        vec![
            "clusterwebhookproviders.webhook-operator.dev",
            "webhookproviders.webhook-operator.dev",
            "webhooksubscriptions.webhook-operator.dev"
        ]
    );
}

#[test]
fn crds_into_a_closed_pipe_stops_quietly() {
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_webhook-operator"))
        .arg("crds")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("run webhook-operator crds");
    // `crds | true`: the reader is gone before the first write, which then fails with a broken pipe.
    drop(child.stdout.take());
    let output = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
}

/// Walks every declared property and collects those without a description.
fn undocumented(schema: &Value, path: &str, out: &mut Vec<String>) {
    if let Some(props) = schema.get("properties").and_then(Value::as_object) {
        for (name, sub) in props {
            let sub_path = format!("{path}.{name}");
            if sub.get("description").and_then(Value::as_str).is_none_or(str::is_empty) {
                out.push(sub_path.clone());
            }
            undocumented(sub, &sub_path, out);
        }
    }
    if let Some(items) = schema.get("items") {
        undocumented(items, &format!("{path}[]"), out);
    }
    if let Some(additional) = schema.get("additionalProperties").filter(|a| a.is_object()) {
        undocumented(additional, &format!("{path}{{}}"), out);
    }
}

#[test]
fn every_field_is_described_and_the_api_surface_is_complete() {
    for crd in crds() {
        let crd_json = serde_json::to_value(&crd).unwrap();
        let kind = crd.spec.names.kind.clone();
        let version = &crd_json["spec"]["versions"][0];
        let schema = &version["schema"]["openAPIV3Schema"];
        let mut missing = Vec::new();
        undocumented(schema, &kind, &mut missing);
        assert!(missing.is_empty(), "fields without a description: {missing:?}");
        assert_eq!(
            version["subresources"]["status"],
            serde_json::json!({}),
            "{kind}: status subresource"
        );
        let text = serde_json::to_string(schema).unwrap();
        assert!(text.contains("x-kubernetes-validations"), "{kind}: CEL rules present");
        assert!(
            !text.contains(".?"),
            "{kind}: no CEL optional syntax (kube-cel cannot evaluate it)"
        );
    }

    let sub = serde_json::to_value(webhook_operator::api::crds().pop().unwrap()).unwrap();
    assert_eq!(
        sub["spec"]["names"]["shortNames"],
        serde_json::json!(["whsub", "whsubs"])
    );
    let columns: Vec<(String, String, i64)> = sub["spec"]["versions"][0]["additionalPrinterColumns"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            (
                c["name"].as_str().unwrap().to_uppercase(),
                c["type"].as_str().unwrap().to_string(),
                c["priority"].as_i64().unwrap_or(0),
            )
        })
        .collect();
    let expected = [
        ("PROVIDER", "string", 0),
        ("READY", "string", 0),
        ("REASON", "string", 0),
        ("SYNCED", "string", 0),
        ("STATE", "string", 0),
        // Future timestamps must be strings: a `date` column prints <invalid> for a time to come.
        ("EXPIRES", "string", 0),
        ("AGE", "date", 0),
        ("SUBSCRIPTION-ID", "string", 1),
        ("RENEWAL", "string", 1),
        ("MESSAGE", "string", 1),
    ];
    let expected: Vec<(String, String, i64)> = expected
        .iter()
        .map(|(n, t, p)| (n.to_string(), t.to_string(), *p))
        .collect();
    assert_eq!(columns, expected);
}

#[test]
fn status_follows_the_api_conventions() {
    for crd in crds() {
        let crd = serde_json::to_value(&crd).unwrap();
        let kind = crd["spec"]["names"]["kind"].as_str().unwrap().to_string();
        let status = &crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["status"]["properties"];
        // Conditions merge by type under server-side apply, as every Kubernetes condition list does.
        let conditions = &status["conditions"];
        assert_eq!(conditions["x-kubernetes-list-type"], "map", "{kind}");
        assert_eq!(
            conditions["x-kubernetes-list-map-keys"],
            serde_json::json!(["type"]),
            "{kind}"
        );
        assert_eq!(
            conditions["items"]["properties"]["lastTransitionTime"]["format"], "date-time",
            "{kind}"
        );
        // Every status time is a date-time, so the API server refuses anything else. The lastHandled*
        // fields echo request annotations as written, which need not be times.
        for (field, schema) in status.as_object().unwrap() {
            if (field.ends_with("At") || field.ends_with("Time")) && !field.starts_with("lastHandled") {
                assert_eq!(schema["format"], "date-time", "{kind}.status.{field}");
            }
        }
    }
}
