//! Every example parses, passes the CRDs' schema and CEL rules as the API server runs them, and names only
//! Secrets the examples provide.

use std::collections::BTreeSet;

use k8s_openapi::api::core::v1::Secret;
use serde_json::Value;
use webhook_operator::api::{ClusterWebhookProvider, WebhookProvider, WebhookSubscription};

use crate::support::{admit, repo_root};

fn example_documents() -> Vec<(String, Value)> {
    let mut docs = Vec::new();
    let mut paths: Vec<_> = std::fs::read_dir(repo_root().join("examples"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .collect();
    paths.sort();
    for path in paths {
        let text = std::fs::read_to_string(&path).unwrap();
        let parsed: Vec<Value> =
            serde_saphyr::from_multiple(&text).unwrap_or_else(|e| panic!("{} is not valid YAML: {e}", path.display()));
        let file = path.file_name().unwrap().to_string_lossy().into_owned();
        docs.extend(parsed.into_iter().map(|d| (file.clone(), d)));
    }
    docs
}

#[test]
fn examples_pass_schema_and_cel_and_reference_existing_secrets() {
    let docs = example_documents();
    let mut secrets = BTreeSet::new();
    let mut referenced = BTreeSet::new();
    let mut kinds = BTreeSet::new();
    for (file, doc) in &docs {
        let kind = doc["kind"]
            .as_str()
            .unwrap_or_else(|| panic!("{file}: document without kind"));
        kinds.insert(kind.to_string());
        let ns = doc["metadata"]["namespace"].as_str().unwrap_or("default").to_string();
        match kind {
            "Secret" => {
                let _: Secret = serde_json::from_value(doc.clone()).unwrap();
                let keys = doc["stringData"].as_object().or(doc["data"].as_object()).unwrap();
                for key in keys.keys() {
                    secrets.insert((
                        ns.clone(),
                        doc["metadata"]["name"].as_str().unwrap().to_string(),
                        key.clone(),
                    ));
                }
            }
            "Namespace" => {}
            "WebhookSubscription" | "WebhookProvider" | "ClusterWebhookProvider" => {
                let admitted = admit(doc.clone()).unwrap_or_else(|errors| {
                    panic!(
                        "{file}: {kind} rejected: {}",
                        errors.iter().map(|e| e.to_string()).collect::<Vec<_>>().join("; ")
                    )
                });
                assert!(
                    admitted.pruned.is_empty(),
                    "{file}: unknown fields {:?}",
                    admitted.pruned
                );
                collect_refs(kind, &ns, &admitted.object, &mut referenced);
            }
            other => panic!("{file}: unexpected kind {other}"),
        }
    }
    for kind in [
        "WebhookSubscription",
        "WebhookProvider",
        "ClusterWebhookProvider",
        "Secret",
    ] {
        assert!(kinds.contains(kind), "examples have no {kind}");
    }
    let missing: Vec<_> = referenced.difference(&secrets).collect();
    assert!(
        missing.is_empty(),
        "examples reference Secrets they do not provide: {missing:?}"
    );
    // Each provider type has a provider and a subscription.
    for block in ["avaya", "vonage", "authvia"] {
        assert!(
            docs.iter()
                .any(|(_, d)| d["kind"] == "WebhookSubscription" && d["spec"].get(block).is_some()),
            "no example subscription for {block}"
        );
        assert!(
            docs.iter().any(
                |(_, d)| d["kind"].as_str().unwrap().ends_with("WebhookProvider") && d["spec"].get(block).is_some()
            ),
            "no example provider for {block}"
        );
    }
}

/// Secret keys an object expects to exist (generated signing secrets are created by the operator).
fn collect_refs(kind: &str, ns: &str, object: &Value, out: &mut BTreeSet<(String, String, String)>) {
    let spec = &object["spec"];
    match kind {
        "WebhookSubscription" => {
            let sub: WebhookSubscription = serde_json::from_value(object.clone()).unwrap();
            let mut refs = Vec::new();
            if let Some(a) = &sub.spec.avaya {
                refs.extend(a.auth_token.iter().map(|t| t.secret_key_ref.clone()));
            }
            if let Some(v) = &sub.spec.vonage {
                refs.extend(
                    v.signing_secret
                        .iter()
                        .filter(|s| !s.generate)
                        .map(|s| s.secret_key_ref.clone()),
                );
            }
            if let Some(a) = &sub.spec.authvia {
                refs.extend(
                    a.signing_secret
                        .iter()
                        .filter(|s| !s.generate)
                        .map(|s| s.secret_key_ref.clone()),
                );
                refs.extend(
                    a.headers
                        .iter()
                        .filter_map(|h| h.value_from.as_ref())
                        .map(|v| v.secret_key_ref.clone()),
                );
            }
            for r in refs {
                out.insert((ns.to_string(), r.name, r.key));
            }
        }
        "WebhookProvider" => {
            let p: WebhookProvider = serde_json::from_value(object.clone()).unwrap();
            let c = &p.spec.credentials_secret_ref;
            out.insert((ns.to_string(), c.name.clone(), c.client_id_key.clone()));
            out.insert((ns.to_string(), c.name.clone(), c.client_secret_key.clone()));
        }
        _ => {
            let p: ClusterWebhookProvider = serde_json::from_value(object.clone()).unwrap();
            let c = &p.spec.credentials_secret_ref;
            // ClusterWebhookProviders read their Secrets from the operator's namespace.
            out.insert(("webhook-operator".to_string(), c.name.clone(), c.client_id_key.clone()));
            out.insert((
                "webhook-operator".to_string(),
                c.name.clone(),
                c.client_secret_key.clone(),
            ));
            assert!(spec.get("namespaceSelector").is_some());
        }
    }
}
