//! Request bodies in Kubernetes' protobuf encoding, which kubectl uses for the built-in kinds it creates
//! (`kubectl create secret`, `create configmap`, `create namespace`): the `runtime.Unknown` envelope and
//! the Secret, ConfigMap and Namespace messages, turned into the JSON the rest of the emulator works on.
//!
//! Hand-written rather than generated with prost: the emulator serves three built-in kinds, and their
//! few fields (numbers from Kubernetes' `generated.proto`) are less code than a protobuf toolchain and its
//! generated types. A field this decoder does not know is refused, never dropped silently.

use base64::Engine as _;
use serde_json::{Map, Value, json};

use crate::sandbox::kube::error::ApiError;

/// The prefix of every Kubernetes protobuf body: "k8s" and a zero byte.
pub(super) const MAGIC: &[u8] = b"k8s\x00";

/// One field of a message: its number and its value.
enum Wire<'a> {
    Varint(u64),
    Bytes(&'a [u8]),
}

fn malformed() -> ApiError {
    ApiError::bad_request("the protobuf body of the request is malformed")
}

fn varint(bytes: &[u8], at: &mut usize) -> Result<u64, ApiError> {
    let mut value = 0u64;
    for shift in (0..64).step_by(7) {
        let byte = *bytes.get(*at).ok_or_else(malformed)?;
        *at += 1;
        value |= u64::from(byte & 0x7f) << shift;
        if byte < 0x80 {
            return Ok(value);
        }
    }
    Err(malformed())
}

/// The fields of a message, in order.
fn fields(bytes: &[u8]) -> Result<Vec<(u64, Wire<'_>)>, ApiError> {
    let mut at = 0;
    let mut out = Vec::new();
    while at < bytes.len() {
        let key = varint(bytes, &mut at)?;
        let value = match key & 7 {
            0 => Wire::Varint(varint(bytes, &mut at)?),
            2 => {
                let len = usize::try_from(varint(bytes, &mut at)?).map_err(|_| malformed())?;
                let end = at
                    .checked_add(len)
                    .filter(|end| *end <= bytes.len())
                    .ok_or_else(malformed)?;
                let slice = &bytes[at..end];
                at = end;
                Wire::Bytes(slice)
            }
            _ => return Err(malformed()),
        };
        out.push((key >> 3, value));
    }
    Ok(out)
}

fn text(bytes: &[u8]) -> Result<String, ApiError> {
    String::from_utf8(bytes.to_vec()).map_err(|_| malformed())
}

fn unsupported(what: &str) -> ApiError {
    ApiError::new(
        415,
        "UnsupportedMediaType",
        format!(
            "the sandbox decodes protobuf bodies of Secrets, ConfigMaps, Namespaces and access reviews without {what}; send this object as JSON (kubectl apply -f does)"
        ),
    )
}

/// A `map<string, string|bytes>` entry: key 1, value 2.
fn map_entry(bytes: &[u8]) -> Result<(String, &[u8]), ApiError> {
    let mut key = String::new();
    let mut value: &[u8] = &[];
    for (number, wire) in fields(bytes)? {
        match (number, wire) {
            (1, Wire::Bytes(b)) => key = text(b)?,
            (2, Wire::Bytes(b)) => value = b,
            _ => return Err(malformed()),
        }
    }
    Ok((key, value))
}

/// Adds a map entry to `object[field]`, the value as text or base64.
fn insert_entry(object: &mut Value, field: &str, entry: &[u8], binary: bool) -> Result<(), ApiError> {
    let (key, value) = map_entry(entry)?;
    let value = if binary {
        json!(base64::engine::general_purpose::STANDARD.encode(value))
    } else {
        json!(text(value)?)
    };
    if !object[field].is_object() {
        object[field] = json!({});
    }
    object[field][key] = value;
    Ok(())
}

/// `ObjectMeta`: what a client may set on create (server-set fields arrive empty and are skipped).
fn object_meta(bytes: &[u8]) -> Result<Value, ApiError> {
    let mut meta = json!({});
    for (number, wire) in fields(bytes)? {
        match (number, wire) {
            (1, Wire::Bytes(b)) if !b.is_empty() => meta["name"] = json!(text(b)?),
            (2, Wire::Bytes(b)) if !b.is_empty() => meta["generateName"] = json!(text(b)?),
            (3, Wire::Bytes(b)) if !b.is_empty() => meta["namespace"] = json!(text(b)?),
            // selfLink, uid, resourceVersion, generation, creationTimestamp: set by the server.
            (1..=8, _) => {}
            (11, Wire::Bytes(b)) => insert_entry(&mut meta, "labels", b, false)?,
            (12, Wire::Bytes(b)) => insert_entry(&mut meta, "annotations", b, false)?,
            (14, Wire::Bytes(b)) => {
                if !meta["finalizers"].is_array() {
                    meta["finalizers"] = json!([]);
                }
                meta["finalizers"].as_array_mut().expect("array").push(json!(text(b)?));
            }
            (number, _) => return Err(unsupported(&format!("metadata field {number}"))),
        }
    }
    Ok(meta)
}

/// A message of string fields only, by number.
fn strings_message(bytes: &[u8], names: &[&str]) -> Result<Value, ApiError> {
    let mut object = json!({});
    for (number, wire) in fields(bytes)? {
        let name = usize::try_from(number)
            .ok()
            .and_then(|n| n.checked_sub(1))
            .and_then(|i| names.get(i));
        match (name, wire) {
            (Some(name), Wire::Bytes(b)) if !b.is_empty() => object[*name] = json!(text(b)?),
            (Some(_), Wire::Bytes(_)) => {}
            _ => return Err(unsupported(&format!("field {number} of an access review"))),
        }
    }
    Ok(object)
}

/// `kubectl auth can-i`'s SelfSubjectAccessReview (spec 2: resourceAttributes 1, nonResourceAttributes 2)
/// and `can-i --list`'s SelfSubjectRulesReview (spec 2: namespace 1); metadata and status are empty.
fn access_review(kind: &str, raw: &[u8]) -> Result<Value, ApiError> {
    let mut spec = json!({});
    for (number, wire) in fields(raw)? {
        match (kind, number, wire) {
            (_, 1 | 3, _) => {}
            ("SelfSubjectAccessReview", 2, Wire::Bytes(b)) => {
                for (n, w) in fields(b)? {
                    match (n, w) {
                        (1, Wire::Bytes(attrs)) => {
                            const RESOURCE: [&str; 7] = [
                                "namespace",
                                "verb",
                                "group",
                                "version",
                                "resource",
                                "subresource",
                                "name",
                            ];
                            spec["resourceAttributes"] = strings_message(attrs, &RESOURCE)?;
                        }
                        (2, Wire::Bytes(attrs)) => {
                            spec["nonResourceAttributes"] = strings_message(attrs, &["path", "verb"])?;
                        }
                        (n, _) => return Err(unsupported(&format!("{kind} spec field {n}"))),
                    }
                }
            }
            ("SelfSubjectRulesReview", 2, Wire::Bytes(b)) => spec = strings_message(b, &["namespace"])?,
            (_, number, _) => return Err(unsupported(&format!("{kind} field {number}"))),
        }
    }
    Ok(json!({"apiVersion": "authorization.k8s.io/v1", "kind": kind, "metadata": {}, "spec": spec}))
}

/// The JSON object a protobuf request body (`runtime.Unknown` around the object) stands for.
pub(super) fn decode(body: &[u8]) -> Result<Value, ApiError> {
    let envelope = body.strip_prefix(MAGIC).ok_or_else(malformed)?;
    let (mut api_version, mut kind, mut raw) = (String::new(), String::new(), None);
    for (number, wire) in fields(envelope)? {
        match (number, wire) {
            (1, Wire::Bytes(type_meta)) => {
                for (n, w) in fields(type_meta)? {
                    match (n, w) {
                        (1, Wire::Bytes(b)) => api_version = text(b)?,
                        (2, Wire::Bytes(b)) => kind = text(b)?,
                        _ => return Err(malformed()),
                    }
                }
            }
            (2, Wire::Bytes(b)) => raw = Some(b),
            (3, Wire::Bytes(b)) | (4, Wire::Bytes(b)) if b.is_empty() => {}
            (3 | 4, _) => return Err(unsupported("a content encoding or type")),
            _ => return Err(malformed()),
        }
    }
    let raw = raw.ok_or_else(malformed)?;
    if api_version == "authorization.k8s.io/v1" {
        return access_review(&kind, raw);
    }
    if api_version != "v1" || !["Secret", "ConfigMap", "Namespace"].contains(&kind.as_str()) {
        return Err(unsupported(&format!("other kinds ({api_version} {kind})")));
    }
    let mut object = json!({"apiVersion": api_version, "kind": kind});
    for (number, wire) in fields(raw)? {
        match (api_version.as_str(), kind.as_str(), number, wire) {
            (_, _, 1, Wire::Bytes(b)) => object["metadata"] = object_meta(b)?,
            ("v1", "Secret", 2, Wire::Bytes(b)) => insert_entry(&mut object, "data", b, true)?,
            ("v1", "Secret", 3, Wire::Bytes(b)) => object["type"] = json!(text(b)?),
            ("v1", "Secret", 4, Wire::Bytes(b)) => insert_entry(&mut object, "stringData", b, false)?,
            ("v1", "Secret", 5, Wire::Varint(v)) => object["immutable"] = json!(v != 0),
            ("v1", "ConfigMap", 2, Wire::Bytes(b)) => insert_entry(&mut object, "data", b, false)?,
            ("v1", "ConfigMap", 3, Wire::Bytes(b)) => insert_entry(&mut object, "binaryData", b, true)?,
            ("v1", "ConfigMap", 4, Wire::Varint(v)) => object["immutable"] = json!(v != 0),
            ("v1", "Namespace", 2, Wire::Bytes(spec)) => {
                let mut finalizers = Vec::new();
                for (n, w) in fields(spec)? {
                    match (n, w) {
                        (1, Wire::Bytes(b)) => finalizers.push(json!(text(b)?)),
                        _ => return Err(malformed()),
                    }
                }
                if !finalizers.is_empty() {
                    object["spec"] = json!({"finalizers": finalizers});
                }
            }
            // A Namespace's status is the server's.
            ("v1", "Namespace", 3, _) => {}
            (_, _, number, _) => return Err(unsupported(&format!("{kind} field {number}"))),
        }
    }
    if object.get("metadata").is_none() {
        object["metadata"] = Value::Object(Map::new());
    }
    Ok(object)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn field(number: u64, bytes: &[u8]) -> Vec<u8> {
        let mut out = vec![
            u8::try_from((number << 3) | 2).unwrap(),
            u8::try_from(bytes.len()).unwrap(),
        ];
        out.extend_from_slice(bytes);
        out
    }

    fn entry(key: &str, value: &[u8]) -> Vec<u8> {
        [field(1, key.as_bytes()), field(2, value)].concat()
    }

    fn envelope(kind: &str, raw: Vec<u8>) -> Vec<u8> {
        let type_meta = [field(1, b"v1"), field(2, kind.as_bytes())].concat();
        [
            MAGIC.to_vec(),
            field(1, &type_meta),
            field(2, &raw),
            field(3, b""),
            field(4, b""),
        ]
        .concat()
    }

    #[test]
    fn what_kubectl_create_sends_decodes_to_the_json_object() {
        // As kubectl 1.35 sent `create configmap c --from-literal=k=v` (captured from the wire).
        let captured = b"k8s\x00\x0a\x0f\x0a\x02v1\x12\x09ConfigMap\x12\x1b\x0a\x11\x0a\x01c\x12\x00\x1a\x00\x22\x00*\x002\x008\x00B\x00\x12\x06\x0a\x01k\x12\x01v\x1a\x00\x22\x00";
        assert_eq!(
            decode(captured).unwrap(),
            json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c"}, "data": {"k": "v"}})
        );
        let meta = [field(1, b"s"), field(3, b"team-a"), field(11, &entry("app", b"x"))].concat();
        let secret = [
            field(1, &meta),
            field(2, &entry("token", b"\x00\x01")),
            field(3, b"Opaque"),
        ]
        .concat();
        assert_eq!(
            decode(&envelope("Secret", secret)).unwrap(),
            json!({"apiVersion": "v1", "kind": "Secret", "type": "Opaque",
                   "metadata": {"name": "s", "namespace": "team-a", "labels": {"app": "x"}},
                   "data": {"token": "AAE="}})
        );
        let namespace = [field(1, &field(1, b"team-a")), field(2, b""), field(3, &field(1, b""))].concat();
        assert_eq!(
            decode(&envelope("Namespace", namespace)).unwrap(),
            json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "team-a"}})
        );
    }

    #[test]
    fn anything_else_is_refused_with_a_reason_never_a_panic() {
        assert_eq!(decode(&envelope("Pod", field(1, b""))).unwrap_err().code, 415);
        assert_eq!(decode(&envelope("Secret", field(9, b"x"))).unwrap_err().code, 415);
        let mut g = crate::fuzz::Gen::new(77);
        for _ in 0..crate::fuzz::CASES {
            let tail = g.text(&["\n", "\x12", "\x02", "\x00", "\u{7f}", "k", "\x08", "\u{ff}"], 12);
            let _ = decode(&[MAGIC, tail.as_bytes()].concat());
        }
    }
}
