//! The OpenAPI v2 document. client-go asks for it only as protobuf (gnostic's `openapi_v2.Document`) and
//! kubectl validates each item of a `v1 List` against it before sending anything.
//!
//! Hand-written encoding rather than prost with gnostic's generated types: the document needs six of its
//! messages and a handful of fields (numbers from gnostic's OpenAPIv2.proto), which is less code than a
//! protobuf toolchain in the build.

use serde_json::{Map, Value, json};

use super::{COMPONENTS, all_schemas};
use crate::sandbox::kube::resources::ResourceType;

/// The media type `/openapi/v2` answers with. client-go asks for the `...v2@v1.0+protobuf` spelling, but
/// `@` is not a media-type character and Go's parser refuses it in a response, so kube-openapi answers
/// with the dotted spelling.
pub const V2_PROTOBUF: &str = "application/com.github.proto-openapi.spec.v2.v1.0+protobuf";

/// A v3 schema as the API server publishes it in v2, which cannot say everything v3 can: what v2 cannot
/// express is left out so that client-side validation is never stricter than the server. A subtree that
/// keeps unknown fields, a nullable or int-or-string value loses its type (any value passes); `anyOf`,
/// `oneOf`, `not`, defaults and CEL rules are dropped; references point at `#/definitions/`.
fn to_v2(schema: &Value) -> Value {
    let Some(object) = schema.as_object() else {
        return json!({});
    };
    let mut out = Map::new();
    if let Some(description) = object.get("description") {
        out.insert("description".into(), description.clone());
    }
    if object.get("x-kubernetes-preserve-unknown-fields") == Some(&json!(true)) {
        return Value::Object(out);
    }
    if let Some(Value::String(target)) = object.get("$ref") {
        out.insert("$ref".into(), json!(target.replacen(COMPONENTS, "#/definitions/", 1)));
        return Value::Object(out);
    }
    // `allOf: [{$ref}]` is how v3 gives a reference a description; v2 takes the reference itself.
    if let Some(Value::Array(all_of)) = object.get("allOf")
        && let [single] = all_of.as_slice()
        && single.get("$ref").is_some()
    {
        let mut reference = to_v2(single);
        if let Some(description) = object.get("description") {
            reference["description"] = description.clone();
        }
        return reference;
    }
    let untyped =
        object.get("nullable") == Some(&json!(true)) || object.get("x-kubernetes-int-or-string") == Some(&json!(true));
    if let Some(kind) = object.get("type").filter(|_| !untyped) {
        out.insert("type".into(), kind.clone());
    }
    if let Some(format) = object.get("format") {
        out.insert("format".into(), format.clone());
    }
    if let Some(required) = object.get("required") {
        out.insert("required".into(), required.clone());
    }
    if let Some(Value::Object(properties)) = object.get("properties") {
        let converted: Map<String, Value> = properties.iter().map(|(k, v)| (k.clone(), to_v2(v))).collect();
        out.insert("properties".into(), Value::Object(converted));
    }
    match object.get("additionalProperties") {
        Some(Value::Bool(allowed)) => {
            out.insert("additionalProperties".into(), json!(allowed));
        }
        Some(schema @ Value::Object(_)) => {
            out.insert("additionalProperties".into(), to_v2(schema));
        }
        _ => {}
    }
    if let Some(items) = object.get("items") {
        out.insert("items".into(), to_v2(items));
    }
    if let Some(gvk) = object.get("x-kubernetes-group-version-kind") {
        out.insert("x-kubernetes-group-version-kind".into(), gvk.clone());
    }
    Value::Object(out)
}

/// `/openapi/v2` as JSON: every served kind and the definitions they refer to.
pub fn v2_document(resources: &[ResourceType]) -> Value {
    let definitions: Map<String, Value> = all_schemas(resources)
        .iter()
        .map(|(name, schema)| (name.clone(), to_v2(schema)))
        .collect();
    json!({
        "swagger": "2.0",
        "info": {"title": "Kubernetes", "version": "v1.35.0"},
        "paths": {},
        "definitions": definitions,
    })
}

/// Protobuf writing: a message is a sequence of (field number, value) records.
#[derive(Default)]
struct Message(Vec<u8>);

impl Message {
    fn varint(&mut self, mut value: u64) {
        while value >= 0x80 {
            self.0.push((value as u8 & 0x7f) | 0x80);
            value >>= 7;
        }
        self.0.push(value as u8);
    }

    fn bytes(&mut self, field: u64, bytes: &[u8]) {
        self.varint((field << 3) | 2);
        self.varint(bytes.len() as u64);
        self.0.extend_from_slice(bytes);
    }

    fn string(&mut self, field: u64, text: &str) {
        self.bytes(field, text.as_bytes());
    }

    fn boolean(&mut self, field: u64, value: bool) {
        self.varint(field << 3);
        self.varint(u64::from(value));
    }

    fn message(&mut self, field: u64, message: Message) {
        self.bytes(field, &message.0);
    }
}

/// gnostic `Schema` (fields: 1 $ref, 2 format, 4 description, 19 required, 21 additionalProperties,
/// 22 type, 23 items, 25 properties, 31 vendor extensions).
fn schema_message(schema: &Value) -> Message {
    let mut m = Message::default();
    let text = |key: &str| schema.get(key).and_then(Value::as_str);
    if let Some(reference) = text("$ref") {
        m.string(1, reference);
    }
    if let Some(format) = text("format") {
        m.string(2, format);
    }
    if let Some(description) = text("description") {
        m.string(4, description);
    }
    for required in schema["required"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
    {
        m.string(19, required);
    }
    match &schema["additionalProperties"] {
        Value::Bool(allowed) => {
            let mut item = Message::default();
            item.boolean(2, *allowed);
            m.message(21, item);
        }
        inner @ Value::Object(_) => {
            let mut item = Message::default();
            item.message(1, schema_message(inner));
            m.message(21, item);
        }
        _ => {}
    }
    let types: Vec<&str> = match &schema["type"] {
        Value::String(t) => vec![t.as_str()],
        Value::Array(ts) => ts.iter().filter_map(Value::as_str).collect(),
        _ => Vec::new(),
    };
    if !types.is_empty() {
        let mut type_item = Message::default();
        types.iter().for_each(|t| type_item.string(1, t));
        m.message(22, type_item);
    }
    if schema["items"].is_object() {
        let mut items = Message::default();
        items.message(1, schema_message(&schema["items"]));
        m.message(23, items);
    }
    if let Some(properties) = schema["properties"].as_object() {
        let mut named = Message::default();
        for (name, property) in properties {
            named.message(1, named_schema(name, property));
        }
        m.message(25, named);
    }
    if let Some(gvk) = schema.get("x-kubernetes-group-version-kind") {
        // gnostic keeps extension values as YAML text; JSON is YAML.
        let mut any = Message::default();
        any.string(2, &gvk.to_string());
        let mut extension = Message::default();
        extension.string(1, "x-kubernetes-group-version-kind");
        extension.message(2, any);
        m.message(31, extension);
    }
    m
}

/// gnostic `NamedSchema` (1 name, 2 value).
fn named_schema(name: &str, schema: &Value) -> Message {
    let mut m = Message::default();
    m.string(1, name);
    m.message(2, schema_message(schema));
    m
}

/// `/openapi/v2` as gnostic's protobuf `Document` (1 swagger, 2 info, 9 definitions).
pub fn v2_protobuf(document: &Value) -> Vec<u8> {
    let mut m = Message::default();
    m.string(1, document["swagger"].as_str().unwrap_or("2.0"));
    let mut info = Message::default();
    info.string(1, document["info"]["title"].as_str().unwrap_or_default());
    info.string(2, document["info"]["version"].as_str().unwrap_or_default());
    m.message(2, info);
    let mut definitions = Message::default();
    for (name, schema) in document["definitions"].as_object().into_iter().flatten() {
        definitions.message(1, named_schema(name, schema));
    }
    m.message(9, definitions);
    m.0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn v2_says_only_what_it_can_express() {
        let v3 = json!({
            "type": "object",
            "required": ["spec"],
            "properties": {
                "metadata": {"allOf": [{"$ref": "#/components/schemas/Meta"}], "description": "meta"},
                "spec": {"type": "object", "properties": {
                    "name": {"type": "string", "nullable": true, "x-kubernetes-validations": [{"rule": "self != ''"}]},
                    "port": {"x-kubernetes-int-or-string": true, "anyOf": [{"type": "integer"}, {"type": "string"}]},
                    "extra": {"type": "object", "x-kubernetes-preserve-unknown-fields": true, "properties": {"a": {"type": "string"}}},
                    "tags": {"type": "array", "items": {"type": "string"}},
                    "labels": {"type": "object", "additionalProperties": {"type": "string"}}
                }}
            }
        });
        let v2 = to_v2(&v3);
        assert_eq!(
            v2["properties"]["metadata"],
            json!({"$ref": "#/definitions/Meta", "description": "meta"})
        );
        let spec = &v2["properties"]["spec"]["properties"];
        assert_eq!(spec["name"], json!({}), "nullable: any value");
        assert_eq!(spec["port"], json!({}), "int-or-string: any value");
        assert_eq!(spec["extra"], json!({}), "unknown fields kept: not validated");
        assert_eq!(spec["tags"]["items"]["type"], json!("string"));
        assert_eq!(spec["labels"]["additionalProperties"]["type"], json!("string"));
        assert_eq!(v2["required"], json!(["spec"]));
    }

    #[test]
    fn protobuf_fields_are_gnostic_numbers() {
        let document = json!({
            "swagger": "2.0", "info": {"title": "T", "version": "V"},
            "definitions": {"D": {"type": "string", "x-kubernetes-group-version-kind": [{"kind": "K"}]}}
        });
        let bytes = v2_protobuf(&document);
        // swagger (1, "2.0"), then info (2) with title (1) and version (2).
        assert_eq!(&bytes[..5], b"\x0a\x032.0");
        assert_eq!(&bytes[5..13], b"\x12\x06\x0a\x01T\x12\x01V");
        let text = String::from_utf8_lossy(&bytes);
        assert!(text.contains("x-kubernetes-group-version-kind"));
        assert!(text.contains(r#"[{"kind":"K"}]"#));
        // definitions (9) → NamedSchema (1) named "D" whose schema has type (22) → TypeItem value (1).
        let at = bytes.iter().position(|b| *b == (9 << 3 | 2)).unwrap();
        assert_eq!(bytes[at + 2], 1 << 3 | 2, "an additional_properties entry");
        assert!(
            bytes.windows(11).any(|w| w == b"\xb2\x01\x08\x0a\x06string"),
            "type: string"
        );
    }
}
