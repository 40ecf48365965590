//! Discovery: `/version`, `/api`, `/apis`, group and resource lists from the registered resources (CRDs
//! appear as they are established), and the OpenAPI documents (`openapi` builds them).

use axum::body::Body;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::Response;
use serde_json::{Value, json};

use super::request::{json_response, text_response, unknown_path};
use super::{ServerConfig, Shared};
use crate::sandbox::kube::error::ApiError;
use crate::sandbox::kube::openapi;
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

/// Serves the discovery paths; None for any other path.
pub(super) fn route(shared: &Shared, segments: &[&str], accept: &str) -> Option<Result<Response, ApiError>> {
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
        ["openapi", "v3"] => ok(shared.with_state(|s| openapi::v3_index(s.resources()))),
        ["openapi", "v3", rest @ ..] => Some(
            shared
                .with_state(|s| openapi::v3_document(s.resources(), &rest.join("/")))
                .map(|d| json_response(StatusCode::OK, &d))
                .ok_or_else(unknown_path),
        ),
        ["openapi", "v2"] => {
            let document = shared.with_state(|s| openapi::v2_document(s.resources()));
            if accept.contains("protobuf") {
                let mut response = Response::new(Body::from(openapi::v2_protobuf(&document)));
                response
                    .headers_mut()
                    .insert(header::CONTENT_TYPE, HeaderValue::from_static(openapi::V2_PROTOBUF));
                Some(Ok(response))
            } else {
                ok(document)
            }
        }
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
}
