//! Patch bodies: JSON patch with Kubernetes' `test` semantics, merge patch, and strategic merge patch
//! reduced to a merge patch.

use serde_json::Value;

use super::super::error::ApiError;

/// RFC 6902 with Kubernetes' `test` semantics: testing a missing path for `null` succeeds (kube's finalizer
/// helper sends exactly that for an object without finalizers).
pub(super) fn apply_json_patch(object: &mut Value, patch: Value) -> Result<(), ApiError> {
    let ops = patch
        .as_array()
        .ok_or_else(|| ApiError::bad_request("json patch must be an array of operations"))?;
    if ops.len() > 10_000 {
        return Err(ApiError::new(
            413,
            "RequestEntityTooLarge",
            "The allowed number of operations in a JSON patch is 10000",
        ));
    }
    let kept: Vec<Value> = ops
        .iter()
        .filter(|op| {
            let missing_null_test = op["op"] == "test"
                && op["value"].is_null()
                && op["path"]
                    .as_str()
                    .is_some_and(|p| object.pointer(p).is_none_or(Value::is_null));
            !missing_null_test
        })
        .cloned()
        .collect();
    let parsed: json_patch::Patch = serde_json::from_value(Value::Array(kept))
        .map_err(|e| ApiError::bad_request(format!("invalid json patch: {e}")))?;
    json_patch::patch(object, &parsed).map_err(|e| {
        ApiError::new(
            422,
            "Invalid",
            format!("the server rejected our request due to an error in our request: {e}"),
        )
    })
}

/// Removes strategic-merge-patch directives so what is left applies as a merge patch.
pub(super) fn strip_strategic_directives(mut patch: Value) -> Value {
    if let Value::Object(map) = &mut patch {
        map.retain(|k, _| {
            !k.starts_with("$setElementOrder/")
                && !k.starts_with("$deleteFromPrimitiveList/")
                && k != "$retainKeys"
                && k != "$patch"
        });
        for v in map.values_mut() {
            *v = strip_strategic_directives(std::mem::take(v));
        }
    }
    patch
}

/// Removes the value at a JSON pointer, if there is one.
pub(super) fn remove_path(object: &mut Value, pointer: &str) {
    if let Some((parent, key)) = pointer.rsplit_once('/')
        && let Some(Value::Object(map)) = object.pointer_mut(parent)
    {
        map.remove(&key.replace("~1", "/").replace("~0", "~"));
    }
}

/// Objects merge key by key; lists and scalars replace; null deletes.
pub(super) fn deep_merge(target: &mut Value, patch: &Value) {
    match (target, patch) {
        (Value::Object(t), Value::Object(p)) => {
            for (k, v) in p {
                if v.is_null() {
                    t.remove(k);
                } else {
                    deep_merge(t.entry(k.clone()).or_insert(Value::Null), v);
                }
            }
        }
        (t, p) => *t = p.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn testing_a_missing_path_for_null_succeeds_as_in_kubernetes() {
        let mut object = json!({"metadata": {"name": "a"}});
        let add_first_finalizer = json!([
            {"op": "test", "path": "/metadata/finalizers", "value": null},
            {"op": "add", "path": "/metadata/finalizers", "value": ["f"]},
        ]);
        apply_json_patch(&mut object, add_first_finalizer).unwrap();
        assert_eq!(object["metadata"]["finalizers"], json!(["f"]));
        let stale = json!([{"op": "test", "path": "/metadata/name", "value": "b"}]);
        assert_eq!(apply_json_patch(&mut object, stale).unwrap_err().code, 422);
        assert_eq!(apply_json_patch(&mut object, json!({})).unwrap_err().code, 400);
    }

    #[test]
    fn merge_patches_replace_lists_and_delete_with_null() {
        let mut object = json!({"a": {"b": 1, "c": [1, 2]}, "d": "x"});
        deep_merge(&mut object, &json!({"a": {"c": [3], "e": true}, "d": null}));
        assert_eq!(object, json!({"a": {"b": 1, "c": [3], "e": true}}));
        remove_path(&mut object, "/a/b");
        remove_path(&mut object, "/missing/path");
        assert_eq!(object, json!({"a": {"c": [3], "e": true}}));
    }

    #[test]
    fn strategic_directives_are_stripped_at_every_level() {
        let patch = json!({"$retainKeys": ["a"], "spec": {"$setElementOrder/items": [], "x": 1, "$patch": "replace"}});
        assert_eq!(strip_strategic_directives(patch), json!({"spec": {"x": 1}}));
    }
}
