//! Custom resource validation as a Kubernetes API server does it: defaults, pruning of unknown fields,
//! structural OpenAPI checks, then CEL `x-kubernetes-validations` (only when the structural checks pass,
//! as the real server skips CEL on blocking errors).
//!
//! Messages follow apimachinery's field errors (`spec.x: Invalid value: …`) so that what a user sees here is
//! what `kubectl apply` shows against a real cluster.

use std::fmt;

use std::sync::Arc;

use kube::core::cel::{CompiledSchema, Validator, compile_schema};
use regex::Regex;
use serde_json::{Map, Value};

/// One reason an object is rejected.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FieldError {
    /// Dotted path of the offending field, e.g. `spec.avaya.events` or `spec.authvia.headers[1].name`.
    pub field: String,
    /// What rejected it: the OpenAPI keyword (`maxItems`, `pattern`, `enum`, `required`, `type`, …) or the
    /// text of the CEL rule.
    pub rule: String,
    /// The Kubernetes `causes[].reason`: FieldValueRequired, FieldValueInvalid, FieldValueNotSupported,
    /// FieldValueTooLong, FieldValueTooMany, FieldValueDuplicate.
    pub reason: &'static str,
    /// What is wrong and, where the schema says it, what to do.
    pub message: String,
}

impl fmt::Display for FieldError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.field, self.message)
    }
}

/// Top-level fields a custom resource carries besides what its schema declares.
const ROOT_SYSTEM_FIELDS: [&str; 3] = ["apiVersion", "kind", "metadata"];

/// Applies the schema's defaults to `object` (in place), as the API server does on every write and read.
fn apply_defaults(schema: &Value, object: &mut Value) {
    *object = kube::core::cel::apply_defaults(schema, object);
}

/// Removes every field the schema does not declare (outside `x-kubernetes-preserve-unknown-fields`) and
/// returns their paths, for `fieldValidation=Strict` (reject) or `Warn` (report).
pub fn prune(schema: &Value, object: &mut Value) -> Vec<String> {
    let mut pruned = Vec::new();
    if let Value::Object(map) = object {
        let properties = schema.get("properties").and_then(Value::as_object);
        let declared = |k: &str| properties.is_some_and(|p| p.contains_key(k)) || ROOT_SYSTEM_FIELDS.contains(&k);
        let unknown: Vec<String> = map.keys().filter(|k| !declared(k)).cloned().collect();
        if !preserves_unknown(schema) {
            for key in unknown {
                map.remove(&key);
                pruned.push(key);
            }
        }
        if let Some(properties) = properties {
            for (key, sub_schema) in properties {
                if let Some(child) = map.get_mut(key) {
                    prune_at(sub_schema, child, key, &mut pruned);
                }
            }
        }
    }
    pruned
}

fn preserves_unknown(schema: &Value) -> bool {
    schema
        .get("x-kubernetes-preserve-unknown-fields")
        .and_then(Value::as_bool)
        == Some(true)
}

fn prune_at(schema: &Value, value: &mut Value, path: &str, pruned: &mut Vec<String>) {
    match value {
        Value::Object(map) => {
            let properties = schema.get("properties").and_then(Value::as_object);
            if let Some(additional) = schema.get("additionalProperties").filter(|a| a.is_object()) {
                for (key, child) in map.iter_mut() {
                    prune_at(additional, child, &format!("{path}.{key}"), pruned);
                }
                return;
            }
            if !preserves_unknown(schema) {
                let unknown: Vec<String> = map
                    .keys()
                    .filter(|k| !properties.is_some_and(|p| p.contains_key(*k)))
                    .cloned()
                    .collect();
                for key in unknown {
                    map.remove(&key);
                    pruned.push(format!("{path}.{key}"));
                }
            }
            if let Some(properties) = properties {
                for (key, sub_schema) in properties {
                    if let Some(child) = map.get_mut(key) {
                        prune_at(sub_schema, child, &format!("{path}.{key}"), pruned);
                    }
                }
            }
        }
        Value::Array(items) => {
            if let Some(item_schema) = schema.get("items") {
                for (i, item) in items.iter_mut().enumerate() {
                    prune_at(item_schema, item, &format!("{path}[{i}]"), pruned);
                }
            }
        }
        _ => {}
    }
}

/// Removes `null` values of fields that are not `nullable`, as the API server does before defaulting.
fn drop_non_nullable_nulls(schema: &Value, value: &mut Value) {
    let Value::Object(map) = value else {
        if let (Value::Array(items), Some(item_schema)) = (value, schema.get("items")) {
            items.iter_mut().for_each(|i| drop_non_nullable_nulls(item_schema, i));
        }
        return;
    };
    let properties = schema.get("properties").and_then(Value::as_object);
    let additional = schema.get("additionalProperties").filter(|a| a.is_object());
    let mut nulls = Vec::new();
    for (key, child) in map.iter_mut() {
        let child_schema = properties.and_then(|p| p.get(key)).or(additional);
        match (child_schema, child.is_null()) {
            (Some(s), true) if s.get("nullable").and_then(Value::as_bool) != Some(true) => nulls.push(key.clone()),
            (Some(s), false) => drop_non_nullable_nulls(s, child),
            _ => {}
        }
    }
    for key in nulls {
        map.remove(&key);
    }
}

/// What admitting an object produced: the stored form and the fields that were pruned from it.
#[derive(Clone, Debug, PartialEq)]
pub struct Admitted {
    /// The object after null-dropping, pruning and defaulting.
    pub object: Value,
    /// Paths of the unknown fields that were dropped.
    pub pruned: Vec<String>,
}

/// A CRD version's structural schema with its CEL rules compiled once (compiling per request would
/// dominate the cost of every write).
#[derive(Clone, Debug)]
pub struct Schema {
    /// The `openAPIV3Schema`.
    pub raw: Value,
    compiled: Arc<CompiledSchema>,
    /// Whether CEL rules sit on the root itself (they see every field, so they always run).
    root_rules: bool,
    /// The top-level properties with CEL rules somewhere beneath them.
    ruled_properties: Vec<String>,
}

impl Schema {
    /// Compiles the rules of `raw`.
    pub fn new(raw: Value) -> Self {
        let compiled = compile_schema(&raw);
        let root_rules = !compiled.validations.is_empty()
            || [&compiled.all_of, &compiled.one_of, &compiled.any_of]
                .into_iter()
                .flatten()
                .any(has_rules);
        let ruled_properties = compiled
            .properties
            .iter()
            .filter(|(_, child)| has_rules(child))
            .map(|(key, _)| key.clone())
            .collect();
        Schema {
            raw,
            compiled: Arc::new(compiled),
            root_rules,
            ruled_properties,
        }
    }

    /// Whether an update must run the CEL rules: on a create always; on an update when the root has rules
    /// or a top-level property with rules changed. Unchanged values are ratcheted, as the API server does
    /// (CRDValidationRatcheting, on by default since 1.30): their errors would be dropped anyway, so a
    /// status write does not pay for the spec's rules.
    fn cel_needed(&self, object: &Value, old: Option<&Value>) -> bool {
        let Some(old) = old else { return true };
        self.root_rules || self.ruled_properties.iter().any(|key| object.get(key) != old.get(key))
    }
}

fn has_rules(schema: &CompiledSchema) -> bool {
    !schema.validations.is_empty()
        || schema.properties.values().any(has_rules)
        || schema.items.as_deref().is_some_and(has_rules)
        || schema.additional_properties.as_deref().is_some_and(has_rules)
        || [&schema.all_of, &schema.one_of, &schema.any_of]
            .into_iter()
            .flatten()
            .any(has_rules)
}

/// Compiled `pattern`s, by their text: compiling one costs more than the rest of a write's validation.
/// Patterns come from installed CRDs, so the cache is small; it is emptied if it ever reaches the bound.
fn pattern_regex(pattern: &str) -> Result<Regex, String> {
    const BOUND: usize = 1024;
    static CACHE: std::sync::LazyLock<std::sync::Mutex<std::collections::HashMap<String, Result<Regex, String>>>> =
        std::sync::LazyLock::new(Default::default);
    let mut cache = CACHE.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    if let Some(compiled) = cache.get(pattern) {
        return compiled.clone();
    }
    if cache.len() >= BOUND {
        cache.clear();
    }
    let compiled = Regex::new(pattern).map_err(|e| e.to_string());
    cache.insert(pattern.to_string(), compiled.clone());
    compiled
}

/// The whole admission of a custom resource write, in the API server's order: drop nulls of non-nullable
/// fields, prune unknown fields, apply defaults, then validate (structural, then CEL).
pub fn admit(schema: &Schema, mut object: Value, old: Option<&Value>) -> Result<Admitted, Vec<FieldError>> {
    let raw = &schema.raw;
    drop_non_nullable_nulls(raw, &mut object);
    let pruned = prune(raw, &mut object);
    apply_defaults(raw, &mut object);
    let errors = validate(schema, &object, old);
    if errors.is_empty() {
        Ok(Admitted { object, pruned })
    } else {
        Err(errors)
    }
}

/// Runs the structural checks and, when they pass, the CEL rules. `object` must already be defaulted and
/// pruned; `old` is the stored object for transition rules (`oldSelf`), `None` on create.
pub fn validate(schema: &Schema, object: &Value, old: Option<&Value>) -> Vec<FieldError> {
    let schema_rules = schema;
    let compiled = &schema.compiled;
    let schema = &schema.raw;
    let mut errors = Vec::new();
    if let Value::Object(map) = object {
        let properties = schema.get("properties").and_then(Value::as_object);
        for required in string_list(schema, "required") {
            if !map.contains_key(required) {
                errors.push(required_error(required));
            }
        }
        if let Some(properties) = properties {
            for (key, sub_schema) in properties {
                // Ratcheting: a top-level value the update leaves as it was is not checked again.
                let unchanged = old.is_some_and(|old| old.get(key) == map.get(key));
                if let Some(child) = map.get(key)
                    && !unchanged
                {
                    check(sub_schema, child, key, &mut errors);
                }
            }
        }
    }
    if errors.is_empty()
        && schema_rules.cel_needed(object, old)
        && let Err(cel_errors) = Validator::new().validate_compiled(compiled, object, old)
    {
        for e in cel_errors.into_vec() {
            errors.push(FieldError {
                field: if e.field_path.is_empty() {
                    "<root>".to_string()
                } else {
                    e.field_path.clone()
                },
                rule: e.rule.clone(),
                reason: match e.reason.as_deref() {
                    Some("FieldValueRequired") => "FieldValueRequired",
                    Some("FieldValueForbidden") => "FieldValueForbidden",
                    Some("FieldValueDuplicate") => "FieldValueDuplicate",
                    _ => "FieldValueInvalid",
                },
                message: format!("Invalid value: {}", e.message),
            });
        }
    }
    errors
}

fn string_list<'a>(schema: &'a Value, key: &str) -> impl Iterator<Item = &'a str> {
    schema
        .get(key)
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
}

fn required_error(field: &str) -> FieldError {
    FieldError {
        field: field.to_string(),
        rule: "required".to_string(),
        reason: "FieldValueRequired",
        message: "Required value".to_string(),
    }
}

fn invalid(path: &str, rule: &str, value: &Value, detail: String) -> FieldError {
    FieldError {
        field: path.to_string(),
        rule: rule.to_string(),
        reason: "FieldValueInvalid",
        message: format!("Invalid value: {}: {path} in body {detail}", short_json(value)),
    }
}

/// A value as the API server quotes it in messages: scalars as JSON, containers by their kind.
fn short_json(value: &Value) -> String {
    match value {
        Value::Object(_) => "\"object\"".to_string(),
        Value::Array(_) => "\"array\"".to_string(),
        other => other.to_string(),
    }
}

fn json_type(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(n) if n.is_i64() || n.is_u64() => "integer",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

fn check(schema: &Value, value: &Value, path: &str, errors: &mut Vec<FieldError>) {
    if value.is_null() {
        if schema.get("nullable").and_then(Value::as_bool) != Some(true) && !preserves_unknown(schema) {
            errors.push(invalid(path, "nullable", value, "must not be null".to_string()));
        }
        return;
    }
    let int_or_string = schema.get("x-kubernetes-int-or-string").and_then(Value::as_bool) == Some(true);
    if let Some(expected) = schema.get("type").and_then(Value::as_str) {
        let actual = json_type(value);
        let accepted = actual == expected
            || (expected == "number" && actual == "integer")
            || (int_or_string && matches!(actual, "integer" | "string"));
        if !accepted {
            errors.push(invalid(
                path,
                "type",
                value,
                format!("must be of type {expected}: \"{actual}\""),
            ));
            return;
        }
    }
    if let Some(allowed) = schema.get("enum").and_then(Value::as_array)
        && !allowed.contains(value)
    {
        let supported: Vec<String> = allowed.iter().map(Value::to_string).collect();
        errors.push(FieldError {
            field: path.to_string(),
            rule: "enum".to_string(),
            reason: "FieldValueNotSupported",
            message: format!(
                "Unsupported value: {}: supported values: {}",
                value,
                supported.join(", ")
            ),
        });
    }
    match value {
        Value::String(s) => check_string(schema, value, s, path, errors),
        Value::Number(n) => check_number(schema, value, n.as_f64().unwrap_or_default(), path, errors),
        Value::Array(items) => check_array(schema, items, path, errors),
        Value::Object(map) => check_object(schema, map, path, errors),
        _ => {}
    }
}

fn check_string(schema: &Value, value: &Value, s: &str, path: &str, errors: &mut Vec<FieldError>) {
    let chars = s.chars().count() as u64;
    if let Some(max) = schema.get("maxLength").and_then(Value::as_u64)
        && chars > max
    {
        errors.push(FieldError {
            field: path.to_string(),
            rule: "maxLength".to_string(),
            reason: "FieldValueTooLong",
            message: format!("Too long: may not be more than {max} bytes"),
        });
    }
    if let Some(min) = schema.get("minLength").and_then(Value::as_u64)
        && chars < min
    {
        errors.push(invalid(
            path,
            "minLength",
            value,
            format!("should be at least {min} chars long"),
        ));
    }
    if let Some(pattern) = schema.get("pattern").and_then(Value::as_str) {
        match pattern_regex(pattern) {
            Ok(re) if !re.is_match(s) => {
                errors.push(invalid(path, "pattern", value, format!("should match '{pattern}'")));
            }
            Ok(_) => {}
            Err(e) => errors.push(invalid(path, "pattern", value, format!("has an unusable pattern: {e}"))),
        }
    }
    if schema.get("format").and_then(Value::as_str) == Some("date-time") && s.parse::<jiff::Timestamp>().is_err() {
        errors.push(invalid(path, "format", value, "must be of type date-time".to_string()));
    }
}

fn check_number(schema: &Value, value: &Value, n: f64, path: &str, errors: &mut Vec<FieldError>) {
    let exclusive = |k: &str| schema.get(k).and_then(Value::as_bool) == Some(true);
    if let Some(max) = schema.get("maximum").and_then(Value::as_f64) {
        if exclusive("exclusiveMaximum") && n >= max {
            errors.push(invalid(
                path,
                "maximum",
                value,
                format!("should be less than {}", trim_float(max)),
            ));
        } else if n > max {
            errors.push(invalid(
                path,
                "maximum",
                value,
                format!("should be less than or equal to {}", trim_float(max)),
            ));
        }
    }
    if let Some(min) = schema.get("minimum").and_then(Value::as_f64) {
        if exclusive("exclusiveMinimum") && n <= min {
            errors.push(invalid(
                path,
                "minimum",
                value,
                format!("should be greater than {}", trim_float(min)),
            ));
        } else if n < min {
            errors.push(invalid(
                path,
                "minimum",
                value,
                format!("should be greater than or equal to {}", trim_float(min)),
            ));
        }
    }
}

fn trim_float(f: f64) -> String {
    if f.fract() == 0.0 {
        format!("{}", f as i64)
    } else {
        f.to_string()
    }
}

fn check_array(schema: &Value, items: &[Value], path: &str, errors: &mut Vec<FieldError>) {
    let len = items.len() as u64;
    if let Some(max) = schema.get("maxItems").and_then(Value::as_u64)
        && len > max
    {
        errors.push(FieldError {
            field: path.to_string(),
            rule: "maxItems".to_string(),
            reason: "FieldValueTooMany",
            message: format!("Too many: {len}: must have at most {max} items"),
        });
    }
    if let Some(min) = schema.get("minItems").and_then(Value::as_u64)
        && len < min
    {
        errors.push(invalid(
            path,
            "minItems",
            &Value::from(len),
            format!("should have at least {min} items"),
        ));
    }
    match schema.get("x-kubernetes-list-type").and_then(Value::as_str) {
        Some("set") => {
            for (i, item) in items.iter().enumerate() {
                if items[..i].contains(item) {
                    errors.push(duplicate(&format!("{path}[{i}]"), item));
                }
            }
        }
        Some("map") => {
            let keys: Vec<&str> = string_list(schema, "x-kubernetes-list-map-keys").collect();
            let key_of = |item: &Value| keys.iter().map(|k| item.get(*k).cloned()).collect::<Vec<_>>();
            for (i, item) in items.iter().enumerate() {
                if items[..i].iter().any(|earlier| key_of(earlier) == key_of(item)) {
                    errors.push(duplicate(&format!("{path}[{i}]"), item));
                }
            }
        }
        _ => {}
    }
    if let Some(item_schema) = schema.get("items") {
        for (i, item) in items.iter().enumerate() {
            check(item_schema, item, &format!("{path}[{i}]"), errors);
        }
    }
}

fn duplicate(path: &str, item: &Value) -> FieldError {
    FieldError {
        field: path.to_string(),
        rule: "x-kubernetes-list-type".to_string(),
        reason: "FieldValueDuplicate",
        message: format!("Duplicate value: {}", short_json(item)),
    }
}

fn check_object(schema: &Value, map: &Map<String, Value>, path: &str, errors: &mut Vec<FieldError>) {
    for required in string_list(schema, "required") {
        if !map.contains_key(required) {
            errors.push(required_error(&format!("{path}.{required}")));
        }
    }
    let count = map.len() as u64;
    if let Some(max) = schema.get("maxProperties").and_then(Value::as_u64)
        && count > max
    {
        errors.push(FieldError {
            field: path.to_string(),
            rule: "maxProperties".to_string(),
            reason: "FieldValueTooMany",
            message: format!("Too many: {count}: must have at most {max} items"),
        });
    }
    let properties = schema.get("properties").and_then(Value::as_object);
    let additional = schema.get("additionalProperties").filter(|a| a.is_object());
    for (key, child) in map {
        let child_path = format!("{path}.{key}");
        if let Some(sub_schema) = properties.and_then(|p| p.get(key)).or(additional) {
            check(sub_schema, child, &child_path, errors);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn schema() -> Value {
        json!({
            "type": "object",
            "properties": {
                "spec": {
                    "type": "object",
                    "required": ["name"],
                    "properties": {
                        "name": {"type": "string", "minLength": 3, "maxLength": 5, "pattern": "^[a-z]+$"},
                        "count": {"type": "integer", "minimum": 1, "maximum": 3, "default": 2},
                        "tags": {"type": "array", "maxItems": 2, "x-kubernetes-list-type": "set", "items": {"type": "string"}},
                        "mode": {"type": "string", "enum": ["A", "B"]},
                        "free": {"type": "object", "x-kubernetes-preserve-unknown-fields": true},
                        "opt": {"type": "string", "nullable": true}
                    },
                    "x-kubernetes-validations": [{"rule": "self.name != 'abc'", "message": "spec.name must not be abc"}]
                }
            }
        })
    }

    fn rules(errors: &[FieldError]) -> Vec<(String, String)> {
        errors.iter().map(|e| (e.field.clone(), e.rule.clone())).collect()
    }

    #[test]
    fn structural_errors_name_the_field_and_keyword() {
        let object = json!({"spec": {"count": 7, "tags": ["a", "a", "b"], "mode": "C"}});
        let errors = validate(&Schema::new(schema()), &object, None);
        assert_eq!(
            rules(&errors),
            vec![
                ("spec.name".to_string(), "required".to_string()),
                ("spec.count".to_string(), "maximum".to_string()),
                ("spec.mode".to_string(), "enum".to_string()),
                ("spec.tags".to_string(), "maxItems".to_string()),
                ("spec.tags[1]".to_string(), "x-kubernetes-list-type".to_string()),
            ]
        );
        assert_eq!(
            errors[1].message,
            "Invalid value: 7: spec.count in body should be less than or equal to 3"
        );
        assert_eq!(
            errors[2].message,
            "Unsupported value: \"C\": supported values: \"A\", \"B\""
        );
    }

    #[test]
    fn cel_runs_only_after_structural_checks_pass() {
        let bad_both = json!({"spec": {"name": "abc", "count": 9}});
        assert_eq!(
            rules(&validate(&Schema::new(schema()), &bad_both, None)),
            vec![("spec.count".into(), "maximum".into())]
        );
        let bad_cel = json!({"spec": {"name": "abc"}});
        let errors = validate(&Schema::new(schema()), &bad_cel, None);
        assert_eq!(errors.len(), 1);
        assert_eq!(errors[0].rule, "self.name != 'abc'");
        assert!(errors[0].message.contains("spec.name must not be abc"));
    }

    #[test]
    fn an_update_that_leaves_a_value_as_it_was_is_not_checked_again() {
        let mut raw = schema();
        raw["properties"]["status"] =
            json!({"type": "object", "properties": {"phase": {"type": "string", "pattern": "^[A-Z]"}}});
        let schema = Schema::new(raw);
        // Stored before the schema tightened: spec breaks both a structural check and a rule.
        let old = json!({"spec": {"name": "abc", "count": 9}, "status": {"phase": "Old"}});
        let status_write = json!({"spec": {"name": "abc", "count": 9}, "status": {"phase": "New"}});
        assert!(
            validate(&schema, &status_write, Some(&old)).is_empty(),
            "spec unchanged: ratcheted"
        );
        let bad_status = json!({"spec": {"name": "abc", "count": 9}, "status": {"phase": "new"}});
        assert_eq!(
            rules(&validate(&schema, &bad_status, Some(&old))),
            vec![("status.phase".into(), "pattern".into())],
            "what changed is still checked"
        );
        let spec_write = json!({"spec": {"name": "abc", "count": 2}, "status": {"phase": "Old"}});
        assert_eq!(
            rules(&validate(&schema, &spec_write, Some(&old))),
            vec![("spec".into(), "self.name != 'abc'".into())],
            "a changed spec runs its rules"
        );
        assert!(!schema.cel_needed(&status_write, Some(&old)));
        assert!(schema.cel_needed(&status_write, None), "a create always runs them");
    }

    #[test]
    fn prune_keeps_declared_and_preserved_fields() {
        let mut object = json!({
            "apiVersion": "x/v1", "kind": "K", "metadata": {"name": "n"}, "extra": 1,
            "spec": {"name": "abcd", "typo": true, "free": {"anything": {"goes": 1}}}
        });
        let pruned = prune(&schema(), &mut object);
        assert_eq!(pruned, vec!["extra".to_string(), "spec.typo".to_string()]);
        assert_eq!(object["spec"]["free"]["anything"]["goes"], 1);
        assert_eq!(object["metadata"]["name"], "n");
    }

    #[test]
    fn defaults_and_nulls() {
        let mut object = json!({"spec": {"name": "abcd", "mode": null, "opt": null}});
        drop_non_nullable_nulls(&schema(), &mut object);
        apply_defaults(&schema(), &mut object);
        assert_eq!(object, json!({"spec": {"name": "abcd", "count": 2, "opt": null}}));
        assert!(validate(&Schema::new(schema()), &object, None).is_empty());
    }
}
