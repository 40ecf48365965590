//! OpenAPI as kubectl reads it: a v3 document per served group version (`kubectl explain`, and the check
//! that a kind supports server-side field validation) and the v2 document (client-side validation, which
//! kubectl still uses for the items of a `v1 List`). Both come from what is served: the built-in kinds'
//! upstream schemas (k8s-openapi's, generated from the Kubernetes sources) and each served CRD version's
//! `openAPIV3Schema`, so a CRD installed at run time shows up in both.

mod v2;

use std::collections::BTreeSet;
use std::sync::OnceLock;

use k8s_openapi::Resource;
use k8s_openapi::api::authorization::v1::{SelfSubjectAccessReview, SelfSubjectRulesReview};
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{ConfigMap, Event as CoreEvent, Namespace, Secret, ServiceAccount};
use k8s_openapi::api::events::v1::Event;
use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding, Role, RoleBinding};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use schemars::JsonSchema;
use schemars::generate::{SchemaGenerator, SchemaSettings};
use serde_json::{Map, Value, json};

use super::resources::ResourceType;

pub use v2::{V2_PROTOBUF, v2_document, v2_protobuf};

/// Where v3 documents keep their schemas; `$ref`s point here.
const COMPONENTS: &str = "#/components/schemas/";

/// The OpenAPI document path of a resource's group version: `api/v1` or `apis/{group}/{version}`.
pub fn document_path(rt: &ResourceType) -> String {
    if rt.group.is_empty() {
        format!("api/{}", rt.version)
    } else {
        format!("apis/{}/{}", rt.group, rt.version)
    }
}

fn gvk_extension(group: &str, version: &str, kind: &str) -> Value {
    json!([{"group": group, "version": version, "kind": kind}])
}

/// The upstream schemas of the built-in kinds the emulator serves and of everything they refer to, keyed
/// by definition name (`io.k8s.api.core.v1.Secret`), each kind tagged with its group-version-kind.
fn builtin_definitions() -> &'static Map<String, Value> {
    static DEFINITIONS: OnceLock<Map<String, Value>> = OnceLock::new();
    DEFINITIONS.get_or_init(|| {
        let mut generator = SchemaSettings::openapi3().into_generator();
        let mut kinds = Vec::new();
        fn add<T: JsonSchema + Resource>(generator: &mut SchemaGenerator, kinds: &mut Vec<(String, Value)>) {
            generator.subschema_for::<T>();
            kinds.push((
                T::schema_name().into_owned(),
                gvk_extension(T::GROUP, T::VERSION, T::KIND),
            ));
        }
        add::<Namespace>(&mut generator, &mut kinds);
        add::<Secret>(&mut generator, &mut kinds);
        add::<ConfigMap>(&mut generator, &mut kinds);
        add::<CoreEvent>(&mut generator, &mut kinds);
        add::<Event>(&mut generator, &mut kinds);
        add::<Lease>(&mut generator, &mut kinds);
        add::<CustomResourceDefinition>(&mut generator, &mut kinds);
        add::<Role>(&mut generator, &mut kinds);
        add::<ClusterRole>(&mut generator, &mut kinds);
        add::<RoleBinding>(&mut generator, &mut kinds);
        add::<ClusterRoleBinding>(&mut generator, &mut kinds);
        add::<SelfSubjectAccessReview>(&mut generator, &mut kinds);
        add::<SelfSubjectRulesReview>(&mut generator, &mut kinds);
        add::<ServiceAccount>(&mut generator, &mut kinds);
        let mut definitions = generator.take_definitions(true);
        for (name, gvk) in kinds {
            let schema = definitions.get_mut(&name).expect("a generated kind has a definition");
            schema["x-kubernetes-group-version-kind"] = gvk;
            // k8s-openapi lists `metadata` as required (its Rust field is not optional); the API server
            // does not, and an object without metadata is valid input (generateName comes from a flag).
            if let Some(required) = schema.get_mut("required").and_then(Value::as_array_mut) {
                required.retain(|r| r != "metadata");
                if required.is_empty() {
                    schema.as_object_mut().expect("schema").remove("required");
                }
            }
        }
        definitions
    })
}

/// The definition name of a resource's kind: the upstream name for a built-in kind, the reversed group
/// then version and kind for a custom resource (`dev.webhook-operator.v1alpha1.WebhookSubscription`), as
/// the API server names them.
fn definition_name(rt: &ResourceType) -> String {
    if rt.custom {
        let reversed: Vec<&str> = rt.group.split('.').rev().collect();
        return format!("{}.{}.{}", reversed.join("."), rt.version, rt.kind);
    }
    let gvk = gvk_extension(&rt.group, &rt.version, &rt.kind);
    builtin_definitions()
        .iter()
        .find(|(_, schema)| schema["x-kubernetes-group-version-kind"] == gvk)
        .map(|(name, _)| name.clone())
        .unwrap_or_else(|| format!("io.k8s.sandbox.{}.{}", rt.version, rt.kind))
}

/// A custom resource version's published schema: its `openAPIV3Schema` with `apiVersion`, `kind` and
/// `metadata` described as for every kind (metadata by reference to ObjectMeta), tagged with its kind.
fn custom_resource_schema(rt: &ResourceType) -> Value {
    let mut schema = rt
        .schema
        .as_ref()
        .map(|s| s.raw.clone())
        .unwrap_or_else(|| json!({"type": "object", "x-kubernetes-preserve-unknown-fields": true}));
    let common = &builtin_definitions()["io.k8s.api.core.v1.Secret"]["properties"];
    if !schema["properties"].is_object() {
        schema["properties"] = json!({});
    }
    for field in ["apiVersion", "kind", "metadata"] {
        schema["properties"][field] = common[field].clone();
    }
    schema["x-kubernetes-group-version-kind"] = gvk_extension(&rt.group, &rt.version, &rt.kind);
    schema
}

/// The schema of a served resource's kind.
fn kind_schema(rt: &ResourceType) -> Value {
    if rt.custom {
        custom_resource_schema(rt)
    } else {
        builtin_definitions()
            .get(&definition_name(rt))
            .cloned()
            .unwrap_or_else(|| json!({"type": "object", "x-kubernetes-group-version-kind": gvk_extension(&rt.group, &rt.version, &rt.kind)}))
    }
}

/// Every `$ref` target under `value`, as definition names.
fn references(value: &Value, out: &mut BTreeSet<String>) {
    match value {
        Value::Object(map) => {
            for (k, v) in map {
                match (k.as_str(), v) {
                    ("$ref", Value::String(target)) => {
                        if let Some(name) = target.strip_prefix(COMPONENTS) {
                            out.insert(name.to_string());
                        }
                    }
                    _ => references(v, out),
                }
            }
        }
        Value::Array(items) => items.iter().for_each(|v| references(v, out)),
        _ => {}
    }
}

/// The served kinds' schemas plus every built-in definition they refer to, directly or not.
fn schemas_with_references(kinds: &[&ResourceType]) -> Map<String, Value> {
    let mut schemas = Map::new();
    let mut pending = BTreeSet::new();
    for rt in kinds {
        let schema = kind_schema(rt);
        references(&schema, &mut pending);
        schemas.insert(definition_name(rt), schema);
    }
    while let Some(name) = pending.pop_first() {
        if schemas.contains_key(&name) {
            continue;
        }
        if let Some(schema) = builtin_definitions().get(&name) {
            references(schema, &mut pending);
            schemas.insert(name, schema.clone());
        }
    }
    schemas
}

/// The paths of one resource: the collection (list, create) and the object (read, replace, patch with the
/// `fieldValidation` parameter kubectl looks for, delete), each naming its group-version-kind.
fn resource_paths(rt: &ResourceType, paths: &mut Map<String, Value>) {
    let ns = if rt.namespaced { "namespaces/{namespace}/" } else { "" };
    let collection = format!("/{}/{ns}{}", document_path(rt), rt.plural);
    let gvk = json!({"group": rt.group, "version": rt.version, "kind": rt.kind});
    let body = json!({"$ref": format!("{COMPONENTS}{}", definition_name(rt))});
    let validation =
        json!({"name": "fieldValidation", "in": "query", "schema": {"type": "string", "uniqueItems": true}});
    let operation = |action: &str, parameters: Vec<Value>, request: bool| {
        let mut op = json!({
            "x-kubernetes-action": action,
            "x-kubernetes-group-version-kind": gvk,
            "parameters": parameters,
            "responses": {"200": {"description": "OK", "content": {"application/json": {"schema": body}}}},
        });
        if request {
            op["requestBody"] = json!({"content": {"*/*": {"schema": body}}, "required": true});
        }
        op
    };
    paths.insert(
        collection.clone(),
        json!({
            "get": operation("list", vec![], false),
            "post": operation("post", vec![validation.clone()], true),
        }),
    );
    let mut patch = operation("patch", vec![validation.clone()], false);
    // kubectl sends a strategic merge patch only where the document lists it, as the API server lists it
    // for built-in kinds and never for custom resources.
    let mut patch_types = vec![
        "application/apply-patch+yaml",
        "application/json-patch+json",
        "application/merge-patch+json",
    ];
    if !rt.custom {
        patch_types.push("application/strategic-merge-patch+json");
    }
    let content: Map<String, Value> = patch_types
        .into_iter()
        .map(|t| (t.to_string(), json!({"schema": {"type": "object"}})))
        .collect();
    patch["requestBody"] = json!({"content": content, "required": true});
    paths.insert(
        format!("{collection}/{{name}}"),
        json!({
            "get": operation("get", vec![], false),
            "put": operation("put", vec![validation], true),
            "patch": patch,
            "delete": operation("delete", vec![], false),
        }),
    );
}

/// The v3 document of one group version (`api/v1`, `apis/{group}/{version}`), or None when nothing is
/// served there.
pub fn v3_document(resources: &[ResourceType], path: &str) -> Option<Value> {
    let kinds: Vec<&ResourceType> = resources.iter().filter(|r| document_path(r) == path).collect();
    if kinds.is_empty() {
        return None;
    }
    let mut paths = Map::new();
    for rt in &kinds {
        resource_paths(rt, &mut paths);
    }
    Some(json!({
        "openapi": "3.0.0",
        "info": {"title": "Kubernetes", "version": "v1.35.0"},
        "paths": paths,
        "components": {"schemas": schemas_with_references(&kinds)},
    }))
}

/// A content hash of a document, for the index's `hash` parameter: kubectl caches documents by URL, so
/// the URL changes when a CRD's schema does.
fn content_hash(document: &Value) -> String {
    let bytes = serde_json::to_vec(document).expect("JSON serializes");
    ring::digest::digest(&ring::digest::SHA256, &bytes)
        .as_ref()
        .iter()
        .map(|b| format!("{b:02X}"))
        .collect()
}

/// `/openapi/v3`: every served group version with the URL of its document.
pub fn v3_index(resources: &[ResourceType]) -> Value {
    let documents: BTreeSet<String> = resources.iter().map(document_path).collect();
    let mut paths = Map::new();
    for path in documents {
        if let Some(document) = v3_document(resources, &path) {
            let url = format!("/openapi/v3/{path}?hash={}", content_hash(&document));
            paths.insert(path, json!({"serverRelativeURL": url}));
        }
    }
    json!({"paths": paths})
}

/// Every served kind's schema and what they refer to (the v2 document's definitions before conversion).
fn all_schemas(resources: &[ResourceType]) -> Map<String, Value> {
    let kinds: Vec<&ResourceType> = resources.iter().collect();
    schemas_with_references(&kinds)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sandbox::kube::resources::{builtins, from_crd};

    fn with_subscriptions() -> Vec<ResourceType> {
        let crd: Value = serde_saphyr::from_str(include_str!(
            "../../../../crds/webhooksubscriptions.webhook-operator.dev.yaml"
        ))
        .unwrap();
        let mut resources = builtins();
        resources.extend(from_crd(&crd).unwrap());
        resources
    }

    #[test]
    fn a_crd_document_carries_its_schema_and_object_meta() {
        let resources = with_subscriptions();
        let doc = v3_document(&resources, "apis/webhook-operator.dev/v1alpha1").unwrap();
        let schema = &doc["components"]["schemas"]["dev.webhook-operator.v1alpha1.WebhookSubscription"];
        assert_eq!(
            schema["x-kubernetes-group-version-kind"][0]["kind"],
            json!("WebhookSubscription")
        );
        assert!(schema["properties"]["spec"]["properties"]["avaya"]["properties"]["families"].is_object());
        assert_eq!(
            schema["properties"]["metadata"]["allOf"][0]["$ref"],
            json!("#/components/schemas/io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta")
        );
        let meta = &doc["components"]["schemas"]["io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta"];
        assert!(
            meta["properties"]["labels"].is_object(),
            "referenced definitions come along"
        );
        let patch = &doc["paths"]["/apis/webhook-operator.dev/v1alpha1/namespaces/{namespace}/webhooksubscriptions/{name}"]
            ["patch"];
        assert_eq!(patch["parameters"][0]["name"], json!("fieldValidation"));
        assert_eq!(
            patch["x-kubernetes-group-version-kind"]["kind"],
            json!("WebhookSubscription")
        );
        let content = patch["requestBody"]["content"].as_object().unwrap();
        assert!(content.contains_key("application/merge-patch+json"));
        assert!(
            !content.contains_key("application/strategic-merge-patch+json"),
            "custom resources take no strategic merge patch"
        );
    }

    #[test]
    fn built_in_documents_use_the_upstream_schemas() {
        let resources = builtins();
        let doc = v3_document(&resources, "api/v1").unwrap();
        let secret = &doc["components"]["schemas"]["io.k8s.api.core.v1.Secret"];
        assert_eq!(
            secret["properties"]["data"]["additionalProperties"]["format"],
            json!("byte")
        );
        assert!(secret.get("required").is_none(), "{secret}");
        assert!(v3_document(&resources, "apis/nope/v1").is_none());
        let index = v3_index(&resources);
        let url = index["paths"]["api/v1"]["serverRelativeURL"].as_str().unwrap();
        assert!(url.starts_with("/openapi/v3/api/v1?hash="), "{index}");
    }

    #[test]
    fn the_index_hash_changes_with_a_crd_schema() {
        let resources = with_subscriptions();
        let before = v3_index(&resources)["paths"]["apis/webhook-operator.dev/v1alpha1"].clone();
        let mut changed = resources.clone();
        let rt = changed.iter_mut().find(|r| r.custom).unwrap();
        let mut raw = rt.schema.as_ref().unwrap().raw.clone();
        raw["properties"]["spec"]["description"] = json!("changed");
        rt.schema = Some(crate::sandbox::kube::schema::Schema::new(raw));
        let after = v3_index(&changed)["paths"]["apis/webhook-operator.dev/v1alpha1"].clone();
        assert_ne!(before, after);
        assert_eq!(
            before,
            v3_index(&resources)["paths"]["apis/webhook-operator.dev/v1alpha1"]
        );
    }
}
