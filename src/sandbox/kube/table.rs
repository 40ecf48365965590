//! Server-side `Table` rendering for `kubectl get`, from a CRD's `additionalPrinterColumns` or the
//! built-ins' usual columns.

use serde_json::{Value, json};

use super::resources::ResourceType;

/// Evaluates the JSONPath subset printer columns use: `.a.b`, `.a[0]`, `.a[*]`, `.a[?(@.k=="v")].b`.
pub fn json_path<'a>(root: &'a Value, path: &str) -> Vec<&'a Value> {
    let path = path
        .trim()
        .trim_start_matches('{')
        .trim_end_matches('}')
        .trim_start_matches('$');
    let mut current = vec![root];
    let mut rest = path;
    while !rest.is_empty() {
        if let Some(after) = rest.strip_prefix('.') {
            let end = after.find(['.', '[']).unwrap_or(after.len());
            let key = &after[..end];
            current = current.into_iter().filter_map(|v| v.get(key)).collect();
            rest = &after[end..];
        } else if let Some(after) = rest.strip_prefix('[') {
            let Some(close) = find_close(after) else {
                return Vec::new();
            };
            let selector = &after[..close];
            rest = &after[close + 1..];
            current = current
                .into_iter()
                .flat_map(|v| {
                    v.as_array()
                        .map(|a| a.iter().collect::<Vec<_>>())
                        .unwrap_or_default()
                        .into_iter()
                        .enumerate()
                })
                .filter(|(i, item)| select(selector, *i, item))
                .map(|(_, item)| item)
                .collect();
        } else {
            return Vec::new();
        }
    }
    current
}

fn find_close(s: &str) -> Option<usize> {
    let mut depth = 0;
    let mut quote = None;
    for (i, c) in s.char_indices() {
        match (c, quote) {
            ('"' | '\'', None) => quote = Some(c),
            (q, Some(open)) if q == open => quote = None,
            ('[', None) => depth += 1,
            (']', None) if depth == 0 => return Some(i),
            (']', None) => depth -= 1,
            _ => {}
        }
    }
    None
}

fn select(selector: &str, index: usize, item: &Value) -> bool {
    if selector == "*" {
        return true;
    }
    if let Ok(n) = selector.parse::<usize>() {
        return n == index;
    }
    let Some(filter) = selector.strip_prefix("?(").and_then(|s| s.strip_suffix(')')) else {
        return false;
    };
    let Some((lhs, rhs)) = filter.split_once("==") else {
        return false;
    };
    let field = lhs.trim().trim_start_matches('@');
    let expected = rhs.trim().trim_matches('"').trim_matches('\'');
    json_path(item, field).first().is_some_and(|v| match v {
        Value::String(s) => s == expected,
        other => *other == expected,
    })
}

/// apimachinery's `HumanDuration`: how `kubectl get` prints ages.
fn human_duration(seconds: i64) -> String {
    if seconds < -1 {
        return "<invalid>".to_string();
    }
    let s = seconds.max(0);
    let (m, h) = (s / 60, s / 3600);
    let (d, y) = (h / 24, h / (24 * 365));
    let pair = |a: i64, au: &str, b: i64, bu: &str| {
        if b == 0 {
            format!("{a}{au}")
        } else {
            format!("{a}{au}{b}{bu}")
        }
    };
    if s < 120 {
        format!("{s}s")
    } else if m < 10 {
        pair(m, "m", s % 60, "s")
    } else if m < 180 {
        format!("{m}m")
    } else if h < 8 {
        pair(h, "h", m % 60, "m")
    } else if h < 48 {
        format!("{h}h")
    } else if h < 24 * 8 {
        pair(d, "d", h % 24, "h")
    } else if h < 24 * 365 * 2 {
        format!("{d}d")
    } else if h < 24 * 365 * 8 {
        pair(y, "y", d % 365, "d")
    } else {
        format!("{y}y")
    }
}

fn age(timestamp: Option<&str>) -> Value {
    match timestamp.and_then(|t| t.parse::<jiff::Timestamp>().ok()) {
        Some(t) => json!(human_duration(jiff::Timestamp::now().as_second() - t.as_second())),
        None => json!("<unknown>"),
    }
}

struct Column {
    name: String,
    type_: String,
    format: String,
    description: String,
    priority: i64,
    path: String,
}

fn columns(rt: &ResourceType) -> Vec<Column> {
    let column = |name: &str, type_: &str, path: &str, description: &str| Column {
        name: name.to_string(),
        type_: type_.to_string(),
        format: String::new(),
        description: description.to_string(),
        priority: 0,
        path: path.to_string(),
    };
    let mut columns = vec![Column {
        format: "name".into(),
        ..column(
            "Name",
            "string",
            ".metadata.name",
            "Name must be unique within a namespace.",
        )
    }];
    match (rt.custom, rt.plural.as_str()) {
        (true, _) if !rt.printer_columns.is_empty() => columns.extend(rt.printer_columns.iter().map(|c| {
            let path = c["jsonPath"].as_str().unwrap_or_default().to_string();
            Column {
                name: c["name"].as_str().unwrap_or_default().to_string(),
                type_: c["type"].as_str().unwrap_or("string").to_string(),
                format: c["format"].as_str().unwrap_or_default().to_string(),
                description: c["description"]
                    .as_str()
                    .map(str::to_string)
                    .unwrap_or_else(|| format!("Custom resource definition column (in JSONPath format): {path}")),
                priority: c["priority"].as_i64().unwrap_or(0),
                path,
            }
        })),
        (false, "events") => {
            // kubectl's own event columns; "Last Seen" first, so drop the leading name column.
            columns.clear();
            let (seen, object, message) = if rt.group.is_empty() {
                (".lastTimestamp", ".involvedObject.name", ".message")
            } else {
                (".eventTime", ".regarding.name", ".note")
            };
            columns.extend([
                column("Last Seen", "date", seen, "When the event was last observed"),
                column("Type", "string", ".type", "Normal or Warning"),
                column("Reason", "string", ".reason", "Why the event happened"),
                column("Object", "string", object, "What the event is about"),
                column("Message", "string", message, "A human-readable description"),
            ]);
        }
        (false, "secrets") => columns.extend([
            column("Type", "string", ".type", "The type of the secret"),
            column("Data", "integer", ".data", "The number of keys in the secret"),
            column("Age", "date", ".metadata.creationTimestamp", "Age"),
        ]),
        (false, "configmaps") => columns.extend([
            column("Data", "integer", ".data", "The number of keys in the config map"),
            column("Age", "date", ".metadata.creationTimestamp", "Age"),
        ]),
        (false, "namespaces") => columns.extend([
            column("Status", "string", ".status.phase", "The status of the namespace"),
            column("Age", "date", ".metadata.creationTimestamp", "Age"),
        ]),
        (false, "leases") => columns.extend([
            column("Holder", "string", ".spec.holderIdentity", "The holder of the lease"),
            column("Age", "date", ".metadata.creationTimestamp", "Age"),
        ]),
        (false, "serviceaccounts") => columns.extend([
            column(
                "Secrets",
                "integer",
                ".secrets",
                "The number of secrets of the service account",
            ),
            column("Age", "date", ".metadata.creationTimestamp", "Age"),
        ]),
        (false, "rolebindings" | "clusterrolebindings") => columns.extend([
            column("Role", "string", ".roleRef", "The role bound (kind/name)"),
            column("Age", "date", ".metadata.creationTimestamp", "Age"),
        ]),
        (false, "customresourcedefinitions" | "roles" | "clusterroles") => {
            columns.push(column(
                "Created At",
                "date",
                ".metadata.creationTimestamp",
                "When the CRD was created",
            ));
            columns.last_mut().expect("column").type_ = "string".into();
        }
        _ => columns.push(column("Age", "date", ".metadata.creationTimestamp", "Age")),
    }
    columns
}

fn cell(column: &Column, object: &Value) -> Value {
    match column.path.as_str() {
        ".data" => return json!(object["data"].as_object().map_or(0, |d| d.len())),
        ".secrets" => return json!(object["secrets"].as_array().map_or(0, Vec::len)),
        ".roleRef" => {
            let role = &object["roleRef"];
            return json!(format!(
                "{}/{}",
                role["kind"].as_str().unwrap_or_default(),
                role["name"].as_str().unwrap_or_default()
            ));
        }
        _ => {}
    }
    let found = json_path(object, &column.path);
    let Some(value) = found.first() else { return Value::Null };
    match column.type_.as_str() {
        "date" => age(value.as_str()),
        "integer" => value.as_i64().map(Value::from).unwrap_or(Value::Null),
        "number" => value.as_f64().map(Value::from).unwrap_or(Value::Null),
        "boolean" => value.as_bool().map(Value::from).unwrap_or(Value::Null),
        _ => match value {
            Value::String(s) => json!(s),
            other => json!(other.to_string()),
        },
    }
}

/// How much of each object a Table row carries (`includeObject`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum IncludeObject {
    /// No object.
    None,
    /// PartialObjectMetadata (the default).
    Metadata,
    /// The whole object.
    Object,
}

/// Renders objects as a `meta.k8s.io/v1` Table.
pub fn render(
    rt: &ResourceType,
    objects: &[Value],
    revision: u64,
    continue_token: Option<&str>,
    include: IncludeObject,
) -> Value {
    let columns = columns(rt);
    let definitions: Vec<Value> = columns
        .iter()
        .map(|c| json!({"name": c.name, "type": c.type_, "format": c.format, "description": c.description, "priority": c.priority}))
        .collect();
    let rows: Vec<Value> = objects
        .iter()
        .map(|o| {
            let cells: Vec<Value> = columns.iter().map(|c| cell(c, o)).collect();
            let object = match include {
                IncludeObject::None => Value::Null,
                IncludeObject::Metadata => {
                    json!({"kind": "PartialObjectMetadata", "apiVersion": "meta.k8s.io/v1", "metadata": o["metadata"]})
                }
                IncludeObject::Object => o.clone(),
            };
            json!({"cells": cells, "object": object})
        })
        .collect();
    let mut metadata = json!({"resourceVersion": revision.to_string()});
    if let Some(token) = continue_token {
        metadata["continue"] = json!(token);
    }
    json!({"kind": "Table", "apiVersion": "meta.k8s.io/v1", "metadata": metadata, "columnDefinitions": definitions, "rows": rows})
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_path_filters_conditions() {
        let object = json!({"status": {"conditions": [{"type": "Synced", "status": "False"}, {"type": "Ready", "status": "True"}]}});
        let found = json_path(&object, ".status.conditions[?(@.type==\"Ready\")].status");
        assert_eq!(found, vec![&json!("True")]);
        assert!(json_path(&object, ".status.missing").is_empty());
        assert_eq!(json_path(&object, ".status.conditions[0].type"), vec![&json!("Synced")]);
    }

    #[test]
    fn human_durations_match_kubectl() {
        for (seconds, text) in [
            (-5, "<invalid>"),
            (45, "45s"),
            (310, "5m10s"),
            (600, "10m"),
            (3 * 3600, "3h"),
            (50 * 3600, "2d2h"),
            (30 * 86400, "30d"),
        ] {
            assert_eq!(human_duration(seconds), text);
        }
    }
}
