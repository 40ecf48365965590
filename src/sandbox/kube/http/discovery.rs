//! Discovery: `/version`, `/api`, `/apis`, group and resource lists from the registered resources (CRDs
//! appear as they are established), and the minimal OpenAPI v3 kubectl reads.

use axum::http::StatusCode;
use axum::response::Response;
use serde_json::{Value, json};

use super::request::{json_response, text_response, unknown_path};
use super::{ServerConfig, Shared};
use crate::sandbox::kube::error::ApiError;
use crate::sandbox::kube::resources::ResourceType;

/// `/version`.
pub(super) fn version(config: &ServerConfig) -> Value {
    json!({
        "major": "1", "minor": config.minor_version,
        "gitVersion": format!("v1.{}.0-webhook-operator-sandbox", config.minor_version),
        "gitCommit": "0000000000000000000000000000000000000000", "gitTreeState": "clean",
        "buildDate": "2026-01-01T00:00:00Z", "goVersion": "go1.25", "compiler": "gc", "platform": "linux/amd64"
    })
}

/// `/apis`: every group with its versions.
pub(super) fn group_list(resources: &[ResourceType]) -> Value {
    let mut groups: Vec<(String, Vec<String>)> = Vec::new();
    for r in resources.iter().filter(|r| !r.group.is_empty()) {
        match groups.iter_mut().find(|(g, _)| *g == r.group) {
            Some((_, versions)) if !versions.contains(&r.version) => versions.push(r.version.clone()),
            Some(_) => {}
            None => groups.push((r.group.clone(), vec![r.version.clone()])),
        }
    }
    let groups: Vec<Value> = groups
        .into_iter()
        .map(|(name, versions)| {
            let versions: Vec<Value> = versions
                .iter()
                .map(|v| json!({"groupVersion": format!("{name}/{v}"), "version": v}))
                .collect();
            json!({"name": name, "versions": versions, "preferredVersion": versions[0]})
        })
        .collect();
    json!({"kind": "APIGroupList", "apiVersion": "v1", "groups": groups})
}

/// The resources of one group version, with their status subresources.
pub(super) fn resource_list(resources: &[ResourceType], group: &str, version: &str) -> Value {
    let mut entries = Vec::new();
    for r in resources.iter().filter(|r| r.group == group && r.version == version) {
        entries.push(r.discovery_entry());
        if r.status_subresource {
            entries.push(json!({"name": format!("{}/status", r.plural), "singularName": "", "namespaced": r.namespaced, "kind": r.kind, "verbs": ["get", "patch", "update"]}));
        }
    }
    let group_version = if group.is_empty() {
        version.to_string()
    } else {
        format!("{group}/{version}")
    };
    json!({"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": group_version, "resources": entries})
}

/// The built-in kinds kubectl may apply, per OpenAPI group-version document.
pub(super) const OPENAPI_KINDS: [(&str, &str, &str, &str, &str, bool); 7] = [
    ("api/v1", "", "v1", "Namespace", "namespaces", false),
    ("api/v1", "", "v1", "Secret", "secrets", true),
    ("api/v1", "", "v1", "ConfigMap", "configmaps", true),
    ("api/v1", "", "v1", "Event", "events", true),
    ("apis/events.k8s.io/v1", "events.k8s.io", "v1", "Event", "events", true),
    (
        "apis/coordination.k8s.io/v1",
        "coordination.k8s.io",
        "v1",
        "Lease",
        "leases",
        true,
    ),
    (
        "apis/apiextensions.k8s.io/v1",
        "apiextensions.k8s.io",
        "v1",
        "CustomResourceDefinition",
        "customresourcedefinitions",
        false,
    ),
];

/// `/openapi/v3`: one document per group version.
pub(super) fn openapi_index() -> Value {
    let mut paths = serde_json::Map::new();
    for (doc, ..) in OPENAPI_KINDS {
        paths.insert(
            doc.to_string(),
            json!({"serverRelativeURL": format!("/openapi/v3/{doc}?hash=sandbox")}),
        );
    }
    json!({"paths": paths})
}

/// A per-group-version document with one PATCH operation per kind that names the `fieldValidation`
/// parameter: kubectl then validates on the server (`fieldValidation=Strict`) instead of client-side.
pub(super) fn openapi_document(doc: &str) -> Option<Value> {
    let mut paths = serde_json::Map::new();
    for (d, group, version, kind, plural, namespaced) in OPENAPI_KINDS.iter().filter(|k| k.0 == doc) {
        let ns = if *namespaced { "namespaces/{namespace}/" } else { "" };
        paths.insert(
            format!("/{d}/{ns}{plural}/{{name}}"),
            json!({"patch": {
                "x-kubernetes-group-version-kind": {"group": group, "version": version, "kind": kind},
                "parameters": [{"name": "fieldValidation", "in": "query", "schema": {"type": "string"}}],
                "requestBody": {"content": {"application/merge-patch+json": {"schema": {"type": "object"}}, "application/json-patch+json": {"schema": {"type": "object"}}}},
                "responses": {"200": {"description": "OK"}}
            }}),
        );
    }
    (!paths.is_empty()).then(|| json!({"openapi": "3.0.0", "info": {"title": "Kubernetes", "version": "v1.35.0"}, "paths": paths, "components": {"schemas": {}}}))
}

/// Serves the discovery paths; None for any other path.
pub(super) fn route(shared: &Shared, segments: &[&str]) -> Option<Result<Response, ApiError>> {
    let ok = |body: Value| Some(Ok(json_response(StatusCode::OK, &body)));
    match segments {
        ["version"] => ok(version(&shared.config)),
        ["healthz" | "readyz" | "livez"] => Some(Ok(text_response("ok"))),
        ["api"] => ok(
            json!({"kind": "APIVersions", "versions": ["v1"], "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": "127.0.0.1"}]}),
        ),
        ["apis"] => ok(shared.with_state(|s| group_list(s.resources()))),
        ["api", "v1"] => ok(shared.with_state(|s| resource_list(s.resources(), "", "v1"))),
        ["apis", group] => {
            let groups = shared.with_state(|s| group_list(s.resources()));
            Some(
                groups["groups"]
                    .as_array()
                    .and_then(|gs| gs.iter().find(|g| g["name"] == *group))
                    .map(|g| {
                        let mut g = g.clone();
                        g["kind"] = json!("APIGroup");
                        g["apiVersion"] = json!("v1");
                        json_response(StatusCode::OK, &g)
                    })
                    .ok_or_else(unknown_path),
            )
        }
        ["apis", group, version] => {
            let list = shared.with_state(|s| resource_list(s.resources(), group, version));
            if list["resources"].as_array().is_none_or(Vec::is_empty) {
                return Some(Err(unknown_path()));
            }
            ok(list)
        }
        ["openapi", "v3"] => ok(openapi_index()),
        ["openapi", "v3", rest @ ..] => Some(
            openapi_document(&rest.join("/"))
                .map(|d| json_response(StatusCode::OK, &d))
                .ok_or_else(unknown_path),
        ),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn groups_and_resources_come_from_what_is_registered() {
        let resources = crate::sandbox::kube::resources::builtins();
        let groups = group_list(&resources);
        let names: Vec<&str> = groups["groups"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|g| g["name"].as_str())
            .collect();
        assert!(
            names.contains(&"coordination.k8s.io") && names.contains(&"events.k8s.io"),
            "{names:?}"
        );
        assert!(!names.contains(&""), "the core group is served at /api");
        let core = resource_list(&resources, "", "v1");
        assert_eq!(core["groupVersion"], json!("v1"));
        assert!(
            core["resources"]
                .as_array()
                .unwrap()
                .iter()
                .any(|r| r["name"] == "namespaces/status")
        );
        assert!(
            resource_list(&resources, "nope", "v1")["resources"]
                .as_array()
                .unwrap()
                .is_empty()
        );
    }

    #[test]
    fn openapi_documents_let_kubectl_validate_on_the_server() {
        let index = openapi_index();
        assert!(index["paths"]["api/v1"]["serverRelativeURL"].is_string());
        let doc = openapi_document("api/v1").unwrap();
        let patch = &doc["paths"]["/api/v1/namespaces/{namespace}/secrets/{name}"]["patch"];
        assert_eq!(patch["parameters"][0]["name"], json!("fieldValidation"));
        assert!(openapi_document("apis/unknown/v1").is_none());
        assert_eq!(
            version(&ServerConfig {
                minor_version: "35".into(),
                bookmark_interval: std::time::Duration::from_secs(1)
            })["minor"],
            json!("35")
        );
    }
}
