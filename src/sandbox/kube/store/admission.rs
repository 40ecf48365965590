//! Admission of the built-in kinds the emulator validates itself: `events.k8s.io/v1` Events, Secrets and
//! ConfigMaps.

use base64::Engine as _;
use serde_json::{Map, Value, json};

use super::super::error::ApiError;
use super::super::resources::ResourceType;
use super::*;

impl State {
    /// Kind-specific defaulting and validation on every write.
    pub(super) fn admit(
        &mut self,
        rt: &ResourceType,
        mut object: Value,
        old: Option<&Value>,
    ) -> Result<Value, ApiError> {
        let name = meta_str(&object, "name").unwrap_or_default().to_string();
        match (rt.group.as_str(), rt.plural.as_str()) {
            ("", "secrets") => admit_secret(rt, &name, &mut object, old)?,
            ("", "configmaps") => admit_config_map(rt, &name, &object, old)?,
            ("rbac.authorization.k8s.io", "rolebindings" | "clusterrolebindings") => {
                let causes = binding_violations(&object, old, rt.namespaced);
                if !causes.is_empty() {
                    return Err(ApiError::invalid(&rt.kind, &name, &rt.group, causes));
                }
            }
            ("events.k8s.io", "events") => {
                let causes = event_violations(&object, old);
                if !causes.is_empty() {
                    return Err(ApiError::invalid(&rt.kind, &name, &rt.group, causes));
                }
            }
            ("", "namespaces") => {
                // The API server labels every namespace with its name (NamespaceDefaultLabelName, 1.21+).
                let m = meta_mut(&mut object);
                let labels = m.entry("labels").or_insert_with(|| json!({}));
                if let Some(labels) = labels.as_object_mut() {
                    labels.insert("kubernetes.io/metadata.name".into(), json!(name));
                }
                object["status"] = json!({"phase": if meta(&object).get("deletionTimestamp").is_some() { "Terminating" } else { "Active" }});
            }
            ("apiextensions.k8s.io", "customresourcedefinitions") => {
                let types = from_crd(&object).map_err(|message| {
                    ApiError::invalid(
                        &rt.kind,
                        &name,
                        &rt.group,
                        vec![json!({"reason": "FieldValueInvalid", "message": message, "field": ""})],
                    )
                })?;
                let storage = object["spec"]["versions"]
                    .as_array()
                    .and_then(|vs| vs.iter().find(|v| v["storage"] == json!(true)))
                    .and_then(|v| v["name"].as_str())
                    .unwrap_or_default()
                    .to_string();
                let transition = old
                    .and_then(|o| o["status"]["conditions"][0]["lastTransitionTime"].as_str())
                    .map(str::to_string)
                    .unwrap_or_else(now_rfc3339);
                object["status"] = json!({
                    "acceptedNames": object["spec"]["names"],
                    "storedVersions": [storage],
                    "conditions": [
                        {"type": "NamesAccepted", "status": "True", "reason": "NoConflicts", "message": "no conflicts found", "lastTransitionTime": transition},
                        {"type": "Established", "status": "True", "reason": "InitialNamesAccepted", "message": "the initial names have been accepted", "lastTransitionTime": transition}
                    ]
                });
                let group = object["spec"]["group"].as_str().unwrap_or_default().to_string();
                let plural = object["spec"]["names"]["plural"]
                    .as_str()
                    .unwrap_or_default()
                    .to_string();
                self.resources
                    .retain(|r| !(r.custom && r.group == group && r.plural == plural));
                self.resources.extend(types);
            }
            _ => {}
        }
        if let Some(schema) = &rt.schema {
            let metadata = object["metadata"].clone();
            let admitted = schema::admit(schema, object, old).map_err(|errors| {
                let causes = errors
                    .iter()
                    .map(|e| json!({"reason": e.reason, "message": e.message, "field": e.field}))
                    .collect();
                ApiError::invalid(&rt.kind, &name, &rt.group, causes)
            })?;
            object = admitted.object;
            // metadata is ObjectMeta, never pruned or defaulted by the CR schema.
            object["metadata"] = metadata;
        }
        Ok(object)
    }
}

/// The API server's checks of an `events.k8s.io/v1` Event (what kube's Recorder must get right).
pub(super) fn event_violations(event: &Value, old: Option<&Value>) -> Vec<Value> {
    let mut causes = Vec::new();
    let mut violation = |field: &str, reason: &str, message: String| {
        causes.push(json!({"field": field, "reason": reason, "message": message}));
    };
    let text = |field: &str| event[field].as_str().unwrap_or("");
    if text("eventTime").is_empty() {
        violation("eventTime", "FieldValueRequired", "Required value".into());
    }
    if !matches!(text("type"), "Normal" | "Warning") {
        violation(
            "type",
            "FieldValueNotSupported",
            format!(
                "Unsupported value: \"{}\": supported values: \"Normal\", \"Warning\"",
                text("type")
            ),
        );
    }
    let controller = text("reportingController");
    let qualified = controller.split('/').count() <= 2
        && controller.split('/').next_back().is_some_and(|n| {
            !n.is_empty()
                && n.len() <= 63
                && n.chars().all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
                && n.starts_with(|c: char| c.is_ascii_alphanumeric())
                && n.ends_with(|c: char| c.is_ascii_alphanumeric())
        });
    if !qualified {
        violation(
            "reportingController",
            "FieldValueInvalid",
            format!("Invalid value: \"{controller}\": must be a qualified name"),
        );
    }
    for (field, limit) in [("reportingInstance", 128), ("action", 128), ("reason", 128)] {
        if text(field).is_empty() {
            violation(field, "FieldValueRequired", "Required value".into());
        } else if text(field).len() > limit {
            violation(
                field,
                "FieldValueTooLong",
                format!("Too long: may not be more than {limit} bytes"),
            );
        }
    }
    if text("note").len() > 1024 {
        violation(
            "note",
            "FieldValueTooLong",
            "Too long: may not be more than 1024 bytes".into(),
        );
    }
    if let Some(series) = event.get("series") {
        if series["count"].as_i64().is_none_or(|c| c < 2) {
            violation(
                "series.count",
                "FieldValueInvalid",
                "Invalid value: should be at least 2".into(),
            );
        }
        if series["lastObservedTime"].as_str().is_none_or(str::is_empty) {
            violation("series.lastObservedTime", "FieldValueRequired", "Required value".into());
        }
    }
    for legacy in [
        "deprecatedCount",
        "deprecatedFirstTimestamp",
        "deprecatedLastTimestamp",
        "deprecatedSource",
    ] {
        if event
            .get(legacy)
            .is_some_and(|v| !v.is_null() && *v != json!({}) && *v != json!(0))
        {
            violation(
                legacy,
                "FieldValueForbidden",
                "Forbidden: deprecated field must not be set".into(),
            );
        }
    }
    if let Some(old) = old {
        for field in [
            "action",
            "reason",
            "regarding",
            "reportingController",
            "reportingInstance",
            "type",
            "eventTime",
            "note",
        ] {
            if event.get(field) != old.get(field) {
                violation(field, "FieldValueInvalid", "Invalid value: field is immutable".into());
            }
        }
    }
    causes
}

/// RoleBinding and ClusterRoleBinding rules: a roleRef to a Role (RoleBindings only) or ClusterRole of
/// the RBAC group, that never changes; subjects of a known kind, service accounts with a namespace
/// (RoleBindings default it).
fn binding_violations(object: &Value, old: Option<&Value>, namespaced: bool) -> Vec<Value> {
    let mut causes = Vec::new();
    let role = &object["roleRef"];
    let kinds: &[&str] = if namespaced {
        &["Role", "ClusterRole"]
    } else {
        &["ClusterRole"]
    };
    let kind = role["kind"].as_str().unwrap_or_default();
    if !kinds.contains(&kind) {
        let supported: Vec<String> = kinds.iter().map(|k| format!("\"{k}\"")).collect();
        causes.push(json!({"reason": "FieldValueNotSupported", "message": format!("Unsupported value: \"{kind}\": supported values: {}", supported.join(", ")), "field": "roleRef.kind"}));
    }
    if role["name"].as_str().is_none_or(str::is_empty) {
        causes.push(json!({"reason": "FieldValueRequired", "message": "Required value", "field": "roleRef.name"}));
    }
    if role["apiGroup"] != "rbac.authorization.k8s.io" {
        causes.push(json!({"reason": "FieldValueNotSupported", "message": format!("Unsupported value: {}: supported values: \"rbac.authorization.k8s.io\"", role["apiGroup"]), "field": "roleRef.apiGroup"}));
    }
    for (i, subject) in object["subjects"].as_array().into_iter().flatten().enumerate() {
        match subject["kind"].as_str().unwrap_or_default() {
            "User" | "Group" => {}
            "ServiceAccount" if !namespaced && subject["namespace"].as_str().is_none_or(str::is_empty) => {
                causes.push(json!({"reason": "FieldValueRequired", "message": "Required value", "field": format!("subjects[{i}].namespace")}));
            }
            "ServiceAccount" => {}
            other => causes.push(json!({"reason": "FieldValueNotSupported", "message": format!("Unsupported value: \"{other}\": supported values: \"ServiceAccount\", \"User\", \"Group\""), "field": format!("subjects[{i}].kind")})),
        }
    }
    if let Some(old) = old
        && old["roleRef"] != object["roleRef"]
    {
        causes.push(json!({"reason": "FieldValueInvalid", "message": format!("Invalid value: {}: cannot change roleRef", object["roleRef"]), "field": "roleRef"}));
    }
    causes
}

/// Moves a Secret's `stringData` into base64 `data` (stringData wins on a shared key), as the API server
/// does on every write: `stringData` is write-only and never stored.
pub(super) fn fold_string_data(object: &mut Value) {
    let engine = base64::engine::general_purpose::STANDARD;
    if let Some(Value::Object(string_data)) = object.as_object_mut().and_then(|o| o.remove("stringData")) {
        let mut data = object["data"].as_object().cloned().unwrap_or_default();
        for (k, v) in string_data {
            data.insert(k, json!(engine.encode(v.as_str().unwrap_or_default())));
        }
        object["data"] = Value::Object(data);
    }
}

/// Secrets: `stringData` folded into base64 `data`, key names, size and `immutable`.
pub(super) fn admit_secret(
    rt: &ResourceType,
    name: &str,
    object: &mut Value,
    old: Option<&Value>,
) -> Result<(), ApiError> {
    let engine = base64::engine::general_purpose::STANDARD;
    fold_string_data(object);
    // SetDefaults_Secret: a missing or empty type is Opaque.
    if object.get("type").is_none_or(|t| t.is_null() || t == "") {
        object["type"] = json!("Opaque");
    }
    let mut causes = Vec::new();
    let mut size = 0;
    for (k, v) in object["data"].as_object().into_iter().flatten() {
        let valid_key = !k.is_empty() && k.chars().all(|c| c.is_ascii_alphanumeric() || "-._".contains(c));
        if !valid_key {
            causes.push(json!({"reason": "FieldValueInvalid", "message": format!("Invalid value: \"{k}\": a valid config key must consist of alphanumeric characters, '-', '_' or '.'"), "field": format!("data[{k}]")}));
        }
        match v.as_str().map(|s| engine.decode(s)) {
            Some(Ok(bytes)) => size += bytes.len(),
            _ => causes.push(json!({"reason": "FieldValueInvalid", "message": "Invalid value: illegal base64 data", "field": format!("data[{k}]")})),
        }
    }
    if size > 1024 * 1024 {
        causes.push(json!({"reason": "FieldValueTooLong", "message": "Too long: may not be more than 1048576 bytes", "field": "data"}));
    }
    if let Some(old) = old
        && old["immutable"] == json!(true)
        && (old["data"] != object["data"] || old["immutable"] != object["immutable"])
    {
        causes.push(json!({"reason": "FieldValueForbidden", "message": "Forbidden: field is immutable when `immutable` is set", "field": "data"}));
    }
    if object["data"].as_object().is_some_and(Map::is_empty) {
        object.as_object_mut().expect("object").remove("data");
    }
    if causes.is_empty() {
        Ok(())
    } else {
        Err(ApiError::invalid(&rt.kind, name, &rt.group, causes))
    }
}

/// Whether `key` is a valid Secret or ConfigMap key (`IsConfigMapKey`).
fn is_config_key(key: &str) -> bool {
    !key.is_empty()
        && key.len() <= 253
        && key != "."
        && key != ".."
        && key.chars().all(|c| c.is_ascii_alphanumeric() || "-._".contains(c))
}

/// ConfigMaps (`ValidateConfigMap`): keys, string `data`, base64 `binaryData`, no key in both, at most
/// 1 MiB in all, and `immutable`.
pub(super) fn admit_config_map(
    rt: &ResourceType,
    name: &str,
    object: &Value,
    old: Option<&Value>,
) -> Result<(), ApiError> {
    let engine = base64::engine::general_purpose::STANDARD;
    let mut causes = Vec::new();
    let mut cause = |reason: &str, message: String, field: String| {
        causes.push(json!({"reason": reason, "message": message, "field": field}));
    };
    let mut size = 0usize;
    let data = object["data"].as_object();
    for (k, v) in data.into_iter().flatten() {
        if !is_config_key(k) {
            cause(
                "FieldValueInvalid",
                format!(
                    "Invalid value: \"{k}\": a valid config key must consist of alphanumeric characters, '-', '_' or '.'"
                ),
                format!("data[{k}]"),
            );
        }
        match v.as_str() {
            Some(text) => size = size.saturating_add(text.len()),
            None => cause(
                "FieldValueTypeInvalid",
                "Invalid value: must be a string".into(),
                format!("data[{k}]"),
            ),
        }
    }
    for (k, v) in object["binaryData"].as_object().into_iter().flatten() {
        if !is_config_key(k) {
            cause(
                "FieldValueInvalid",
                format!(
                    "Invalid value: \"{k}\": a valid config key must consist of alphanumeric characters, '-', '_' or '.'"
                ),
                format!("binaryData[{k}]"),
            );
        }
        if data.is_some_and(|d| d.contains_key(k)) {
            cause(
                "FieldValueInvalid",
                format!("Invalid value: \"{k}\": duplicate of key present in data"),
                format!("binaryData[{k}]"),
            );
        }
        match v.as_str().map(|s| engine.decode(s)) {
            Some(Ok(bytes)) => size = size.saturating_add(bytes.len()),
            _ => cause(
                "FieldValueInvalid",
                "Invalid value: illegal base64 data".into(),
                format!("binaryData[{k}]"),
            ),
        }
    }
    if size > 1024 * 1024 {
        cause(
            "FieldValueTooLong",
            "Too long: may not be more than 1048576 bytes".into(),
            "data".into(),
        );
    }
    if let Some(old) = old
        && old["immutable"] == json!(true)
        && (old["data"] != object["data"]
            || old["binaryData"] != object["binaryData"]
            || old["immutable"] != object["immutable"])
    {
        cause(
            "FieldValueForbidden",
            "Forbidden: field is immutable when `immutable` is set".into(),
            "data".into(),
        );
    }
    if causes.is_empty() {
        Ok(())
    } else {
        Err(ApiError::invalid(&rt.kind, name, &rt.group, causes))
    }
}

#[cfg(test)]
mod binding_tests {
    use super::*;

    #[test]
    fn bindings_name_a_role_that_never_changes() {
        let good = json!({"roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "r"},
            "subjects": [{"kind": "ServiceAccount", "name": "sa"}]});
        assert!(binding_violations(&good, None, true).is_empty());
        let causes = binding_violations(&good, None, false);
        let fields: Vec<&str> = causes.iter().filter_map(|c| c["field"].as_str()).collect();
        assert_eq!(fields, ["roleRef.kind", "subjects[0].namespace"], "{causes:?}");
        let mut changed = good.clone();
        changed["roleRef"]["name"] = json!("other");
        let causes = binding_violations(&changed, Some(&good), true);
        assert!(
            causes[0]["message"]
                .as_str()
                .unwrap()
                .ends_with("cannot change roleRef"),
            "{causes:?}"
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_maps_take_string_and_binary_data_within_their_rules() {
        let cms = crate::sandbox::kube::resources::builtins()
            .into_iter()
            .find(|r| r.plural == "configmaps")
            .expect("config maps are built in");
        admit_config_map(
            &cms,
            "c",
            &json!({"data": {"a.b": "x"}, "binaryData": {"bin": "AAE="}}),
            None,
        )
        .unwrap();
        for bad in [
            json!({"data": {"bad key": "x"}}),
            json!({"data": {"k": 1}}),
            json!({"binaryData": {"k": "not base64!"}}),
            json!({"data": {"k": "x"}, "binaryData": {"k": "AAE="}}),
            json!({"data": {"k": "x".repeat(1024 * 1024 + 1)}}),
        ] {
            assert_eq!(admit_config_map(&cms, "c", &bad, None).unwrap_err().code, 422, "{bad}");
        }
        let old = json!({"data": {"k": "x"}, "immutable": true});
        assert!(admit_config_map(&cms, "c", &json!({"data": {"k": "y"}, "immutable": true}), Some(&old)).is_err());
    }

    fn secrets() -> ResourceType {
        crate::sandbox::kube::resources::builtins()
            .into_iter()
            .find(|r| r.plural == "secrets")
            .expect("secrets are built in")
    }

    #[test]
    fn secrets_fold_string_data_and_refuse_bad_data() {
        let mut secret = json!({"stringData": {"k": "v"}});
        admit_secret(&secrets(), "s", &mut secret, None).unwrap();
        assert_eq!(secret["data"]["k"], json!("dg=="));
        assert_eq!(secret["type"], json!("Opaque"));
        let mut bad = json!({"data": {"k": "not base64!"}});
        assert_eq!(admit_secret(&secrets(), "s", &mut bad, None).unwrap_err().code, 422);
        let old = json!({"data": {"k": "dg=="}, "immutable": true});
        let mut changed = json!({"data": {"k": "dw=="}, "immutable": true});
        assert!(admit_secret(&secrets(), "s", &mut changed, Some(&old)).is_err());
    }

    #[test]
    fn events_need_their_required_fields() {
        let violations = event_violations(&json!({"metadata": {"name": "e"}}), None);
        assert!(!violations.is_empty());
        assert!(
            violations
                .iter()
                .all(|v| v["field"].is_string() && v["message"].is_string())
        );
    }
}
