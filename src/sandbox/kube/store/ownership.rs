//! Server-side apply field ownership: which manager owns which leaf paths, how a write moves them,
//! when an apply conflicts, and the `managedFields` rendering.

use std::collections::BTreeSet;

use serde_json::{Value, json};

use super::super::error::ApiError;
use super::super::resources::ResourceType;
use super::now_rfc3339;

/// One `managedFields` entry: the leaf paths a manager owns through one operation on one subresource.
#[derive(Clone, Debug, PartialEq)]
pub(super) struct ManagedEntry {
    pub(super) manager: String,
    pub(super) apply: bool,
    pub(super) status: bool,
    pub(super) time: String,
    pub(super) fields: BTreeSet<String>,
}

/// How a write changes field ownership.
pub(super) enum Ownership<'a> {
    /// POST, PUT, merge/JSON/strategic patch: the writer takes the fields whose values changed.
    Update(&'a str),
    /// Apply: the writer's applied set becomes exactly these paths.
    Apply(&'a str, BTreeSet<String>),
    /// The request set `metadata.managedFields` itself (kubectl does, to move client-side-apply ownership
    /// to server-side apply): the entries become exactly these.
    Replace(Vec<ManagedEntry>),
}

/// Leaf paths of an object (objects are granular, lists and scalars are leaves).
pub(super) fn leaf_paths(value: &Value) -> BTreeSet<String> {
    fn walk(value: &Value, prefix: &str, out: &mut BTreeSet<String>) {
        match value {
            // An empty object owns nothing (it only makes its parent exist).
            Value::Object(map) => {
                for (k, v) in map {
                    walk(v, &format!("{prefix}/{}", k.replace('~', "~0").replace('/', "~1")), out);
                }
            }
            _ => {
                out.insert(prefix.to_string());
            }
        }
    }
    let mut out = BTreeSet::new();
    walk(value, "", &mut out);
    out.retain(|p| {
        !p.starts_with("/apiVersion") && !p.starts_with("/kind") && p != "/metadata/name" && p != "/metadata/namespace"
    });
    out
}

/// Paths a write can own: everything but identity and server-set metadata, and only `status` on `/status`.
pub(super) fn owned_paths(object: &Value, status: bool) -> BTreeSet<String> {
    const SERVER_SET: [&str; 8] = [
        "/metadata/uid",
        "/metadata/resourceVersion",
        "/metadata/generation",
        "/metadata/creationTimestamp",
        "/metadata/managedFields",
        "/metadata/deletionTimestamp",
        "/metadata/deletionGracePeriodSeconds",
        "/metadata/selfLink",
    ];
    let mut paths = leaf_paths(object);
    paths.retain(|p| {
        !SERVER_SET.iter().any(|s| overlaps(p, s)) && (p == "/status" || p.starts_with("/status/")) == status
    });
    paths
}

/// Whether two leaf paths touch the same field (equal, or one inside the other).
pub(super) fn overlaps(a: &str, b: &str) -> bool {
    a == b
        || a.strip_prefix(b).is_some_and(|r| r.starts_with('/'))
        || b.strip_prefix(a).is_some_and(|r| r.starts_with('/'))
}

/// Paths whose values differ between two versions of an object.
pub(super) fn changed_paths(old: &Value, new: &Value, status: bool) -> BTreeSet<String> {
    let mut paths = owned_paths(old, status);
    paths.extend(owned_paths(new, status));
    paths.retain(|p| old.pointer(p) != new.pointer(p));
    paths
}

/// The ownership after a write: the writer gains the changed fields (update) or exactly its applied set
/// (apply); every other manager loses the fields whose values changed; empty entries disappear.
pub(super) fn owned_after(
    entries: &[ManagedEntry],
    old: &Value,
    new: &Value,
    status: bool,
    ownership: Ownership,
) -> Vec<ManagedEntry> {
    let changed = changed_paths(old, new, status);
    let (manager, apply, fields) = match ownership {
        Ownership::Update(manager) => (manager, false, None),
        Ownership::Apply(manager, fields) => (manager, true, Some(fields)),
        Ownership::Replace(entries) => return entries,
    };
    let is_writer = |e: &ManagedEntry| e.manager == manager && e.apply == apply && e.status == status;
    let mut result: Vec<ManagedEntry> = entries
        .iter()
        .filter(|e| !is_writer(e))
        .cloned()
        .map(|mut e| {
            e.fields.retain(|f| !changed.iter().any(|c| overlaps(f, c)));
            e
        })
        .filter(|e| !e.fields.is_empty())
        .collect();
    let previous = entries.iter().find(|e| is_writer(e));
    let fields = match fields {
        Some(applied) => applied,
        None => {
            let mut owned = previous.map(|e| e.fields.clone()).unwrap_or_default();
            owned.retain(|f| new.pointer(f).is_some());
            owned.extend(changed);
            owned
        }
    };
    if !fields.is_empty() {
        let time = match previous {
            Some(p) if p.fields == fields => p.time.clone(),
            _ => now_rfc3339(),
        };
        result.push(ManagedEntry {
            manager: manager.to_string(),
            apply,
            status,
            time,
            fields,
        });
    }
    result
}

/// Without `force`, an apply may not change a value another manager owns.
pub(super) fn check_apply_conflicts(
    entries: &[ManagedEntry],
    manager: &str,
    status: bool,
    live: &Value,
    config: &Value,
    applied: &BTreeSet<String>,
) -> Result<(), ApiError> {
    let mut conflicts: Vec<(String, String)> = Vec::new();
    for path in applied {
        if config.pointer(path) == live.pointer(path) {
            continue;
        }
        for entry in entries.iter().filter(|e| e.manager != manager && e.status == status) {
            if entry.fields.iter().any(|f| overlaps(f, path)) {
                conflicts.push((entry.manager.clone(), dotted(path)));
            }
        }
    }
    if conflicts.is_empty() {
        return Ok(());
    }
    let n = conflicts.len();
    let lines: Vec<String> = conflicts
        .iter()
        .map(|(m, f)| format!("conflict with \"{m}\": {f}"))
        .collect();
    let mut error = ApiError::new(
        409,
        "Conflict",
        format!(
            "Apply failed with {n} conflict{}: {}",
            if n == 1 { "" } else { "s" },
            lines.join("\n")
        ),
    );
    error.details = json!({
        "causes": conflicts.iter().map(|(m, f)| json!({
            "reason": "FieldManagerConflict", "message": format!("conflict with \"{m}\""), "field": f
        })).collect::<Vec<_>>()
    });
    Err(error)
}

/// `/spec/a~1b` as `.spec.a/b`.
pub(super) fn dotted(path: &str) -> String {
    path.split('/')
        .skip(1)
        .map(|s| format!(".{}", s.replace("~1", "/").replace("~0", "~")))
        .collect()
}

/// `managedFields` as the API server shows them (FieldsV1 with `f:` keys; lists are atomic here).
pub(super) fn render_managed_fields(entries: &[ManagedEntry], rt: &ResourceType) -> Vec<Value> {
    entries
        .iter()
        .map(|e| {
            let mut fields = json!({});
            for path in &e.fields {
                let mut node = &mut fields;
                for segment in path.split('/').skip(1) {
                    let key = format!("f:{}", segment.replace("~1", "/").replace("~0", "~"));
                    node = node
                        .as_object_mut()
                        .expect("fieldsV1 nodes are objects")
                        .entry(key)
                        .or_insert_with(|| json!({}));
                }
            }
            let mut entry = json!({
                "manager": e.manager,
                "operation": if e.apply { "Apply" } else { "Update" },
                "apiVersion": rt.api_version(),
                "time": e.time,
                "fieldsType": "FieldsV1",
                "fieldsV1": fields,
            });
            if e.status {
                entry["subresource"] = json!("status");
            }
            entry
        })
        .collect()
}

/// `managedFields` as a client wrote them, read back into entries. A request that sets them replaces
/// the server's record (as the API server allows); keys it cannot map to a field (`k:`, `v:`, `i:` list
/// members) make the list they sit in the owned leaf, lists being atomic here.
pub(super) fn parse_managed_fields(value: &Value) -> Result<Vec<ManagedEntry>, ApiError> {
    fn walk(node: &Value, prefix: &str, out: &mut BTreeSet<String>) {
        let children: Vec<(&String, &Value)> = node
            .as_object()
            .into_iter()
            .flatten()
            .filter(|(k, _)| k.as_str() != ".")
            .collect();
        if children.is_empty() || children.iter().any(|(k, _)| !k.starts_with("f:")) {
            if !prefix.is_empty() {
                out.insert(prefix.to_string());
            }
            return;
        }
        for (key, child) in children {
            let segment = key["f:".len()..].replace('~', "~0").replace('/', "~1");
            walk(child, &format!("{prefix}/{segment}"), out);
        }
    }
    let invalid = |message: &str| {
        ApiError::new(
            422,
            "Invalid",
            format!("metadata.managedFields: Invalid value: {message}"),
        )
    };
    let entries = value.as_array().ok_or_else(|| invalid("must be a list"))?;
    let mut parsed = Vec::new();
    for entry in entries {
        // A single empty entry is how a client clears managedFields.
        if entry.as_object().is_some_and(serde_json::Map::is_empty) {
            continue;
        }
        let manager = entry["manager"]
            .as_str()
            .ok_or_else(|| invalid("manager: Required value"))?;
        let apply = match entry["operation"].as_str() {
            Some("Apply") => true,
            Some("Update") => false,
            _ => return Err(invalid("operation: must be Apply or Update")),
        };
        let mut fields = BTreeSet::new();
        walk(&entry["fieldsV1"], "", &mut fields);
        parsed.push(ManagedEntry {
            manager: manager.to_string(),
            apply,
            status: entry["subresource"] == "status",
            time: entry["time"].as_str().map(str::to_string).unwrap_or_else(now_rfc3339),
            fields,
        });
    }
    Ok(parsed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn managed_fields_written_by_a_client_read_back_as_rendered() {
        let rt = crate::sandbox::kube::resources::builtins().remove(1);
        let entries = vec![ManagedEntry {
            manager: "kubectl".into(),
            apply: true,
            status: false,
            time: "2026-01-01T00:00:00Z".into(),
            fields: ["/data/a~1b", "/metadata/labels/x", "/type"].map(String::from).into(),
        }];
        let rendered = Value::Array(render_managed_fields(&entries, &rt));
        assert_eq!(parse_managed_fields(&rendered).unwrap(), entries);
        let with_list_keys = json!([{"manager": "m", "operation": "Update", "fieldsV1": {
            "f:spec": {".": {}, "f:items": {"k:{\"name\":\"a\"}": {}}}
        }}]);
        let parsed = parse_managed_fields(&with_list_keys).unwrap();
        assert_eq!(parsed[0].fields, ["/spec/items".to_string()].into());
        assert!(parse_managed_fields(&json!([{}])).unwrap().is_empty(), "[{{}}] clears");
        assert_eq!(parse_managed_fields(&json!([{"manager": "m"}])).unwrap_err().code, 422);
    }

    #[test]
    fn leaf_paths_overlap_and_read_as_kubectl_prints_them() {
        let object = json!({"spec": {"a": 1, "list": [1, 2], "nested": {"b~c": "x"}}});
        let leaves = leaf_paths(&object);
        assert!(
            leaves.contains("/spec/a") && leaves.contains("/spec/list"),
            "{leaves:?}"
        );
        assert!(overlaps("/spec", "/spec/a"));
        assert!(overlaps("/spec/a", "/spec/a"));
        assert!(!overlaps("/spec/a", "/spec/ab"));
        assert_eq!(dotted("/spec/a~1b"), ".spec.a/b");
    }

    #[test]
    fn status_writes_own_only_status() {
        let object = json!({"metadata": {"name": "n", "labels": {"x": "1"}}, "spec": {"a": 1}, "status": {"s": 2}});
        let main = owned_paths(&object, false);
        let status = owned_paths(&object, true);
        assert!(main.iter().all(|p| !p.starts_with("/status")), "{main:?}");
        assert!(status.iter().all(|p| p.starts_with("/status")), "{status:?}");
        assert!(!main.iter().any(|p| p == "/metadata/name"), "identity is nobody's");
        let changed = changed_paths(
            &object,
            &json!({"metadata": {"name": "n", "labels": {"x": "2"}}, "spec": {"a": 1}, "status": {"s": 2}}),
            false,
        );
        assert!(changed.iter().any(|p| p.starts_with("/metadata/labels")), "{changed:?}");
    }
}
