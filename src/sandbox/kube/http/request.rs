//! Reading a request (query, target resource, bodies, selectors, field validation, the representation
//! asked for) and writing responses.

use axum::body::{Body, Bytes};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::Response;
use serde_json::{Value, json};

use crate::sandbox::kube::error::ApiError;
use crate::sandbox::kube::resources::ResourceType;
use crate::sandbox::kube::selectors::{FieldSelector, LabelSelector};
use crate::sandbox::kube::store::{ListQuery, PatchKind, State};
use crate::sandbox::kube::table::IncludeObject;

/// A JSON response.
pub(super) fn json_response(code: StatusCode, body: &Value) -> Response {
    let mut response = Response::new(Body::from(serde_json::to_vec(body).expect("JSON serializes")));
    *response.status_mut() = code;
    response
        .headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    response
}

/// An error as a `Status`, with `Retry-After` when it has one.
pub(super) fn error_response(error: &ApiError) -> Response {
    let mut response = json_response(
        StatusCode::from_u16(error.code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
        &error.to_status(),
    );
    if let Some(seconds) = error.retry_after_seconds {
        response
            .headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from(seconds));
    }
    response
}

/// A plain-text response.
pub(super) fn text_response(text: &'static str) -> Response {
    Response::new(Body::from(text))
}

/// Parsed query parameters (repeated keys keep the last value).
pub(super) struct Query(Vec<(String, String)>);

impl Query {
    pub(super) fn parse(raw: &str) -> Self {
        Query(form_urlencoded::parse(raw.as_bytes()).into_owned().collect())
    }
    pub(super) fn get(&self, key: &str) -> Option<&str> {
        self.0.iter().rev().find(|(k, _)| k == key).map(|(_, v)| v.as_str())
    }
    pub(super) fn flag(&self, key: &str) -> bool {
        matches!(self.get(key), Some("true" | "1"))
    }
}

/// The resource a path names.
pub(super) struct Target {
    pub(super) rt: ResourceType,
    pub(super) namespace: Option<String>,
    pub(super) name: Option<String>,
    pub(super) subresource: Option<String>,
}

/// 404 for a path the server does not serve.
pub(super) fn unknown_path() -> ApiError {
    ApiError::new(404, "NotFound", "the server could not find the requested resource")
}

/// A JSON body, or a protobuf one (what kubectl sends for the built-in kinds it creates).
pub(super) fn parse_json(body: &Bytes) -> Result<Value, ApiError> {
    if body.starts_with(super::protobuf::MAGIC) {
        return super::protobuf::decode(body);
    }
    serde_json::from_slice(body)
        .map_err(|e| ApiError::bad_request(format!("the body of the request could not be decoded as JSON: {e}")))
}

/// An apply body: JSON or YAML.
pub(super) fn parse_yaml(body: &Bytes) -> Result<Value, ApiError> {
    serde_json::from_slice(body).or_else(|_| {
        let text = std::str::from_utf8(body).map_err(|_| ApiError::bad_request("apply body is not UTF-8"))?;
        serde_saphyr::from_str(text).map_err(|e| ApiError::bad_request(format!("error decoding YAML: {e}")))
    })
}

/// `fieldValidation=Strict` turns unknown fields of a custom resource into 400; `Warn` (default) reports them.
pub(super) fn strict_unknown_fields(rt: &ResourceType, object: &Value, query: &Query) -> Result<Vec<String>, ApiError> {
    let Some(schema) = rt.schema.as_ref().map(|s| &s.raw) else {
        return Ok(Vec::new());
    };
    let mut copy = object.clone();
    let unknown = crate::sandbox::kube::schema::prune(schema, &mut copy);
    match query.get("fieldValidation") {
        Some("Strict") if !unknown.is_empty() => {
            let fields: Vec<String> = unknown.iter().map(|f| format!("unknown field \"{f}\"")).collect();
            Err(ApiError::bad_request(format!(
                "strict decoding error: {}",
                fields.join(", ")
            )))
        }
        Some("Ignore") => Ok(Vec::new()),
        _ => Ok(unknown),
    }
}

/// Adds a `Warning` header per unknown field.
pub(super) fn with_warnings(mut response: Response, unknown: &[String]) -> Response {
    for field in unknown {
        if let Ok(value) = HeaderValue::from_str(&format!("299 - \"unknown field \\\"{field}\\\"\"")) {
            response.headers_mut().append(header::WARNING, value);
        }
    }
    response
}

/// Whether (and how) the client asked for a Table.
pub(super) fn table_requested(accept: &str, query: &Query) -> Option<IncludeObject> {
    if !accept.split(',').next().is_some_and(|first| first.contains("as=Table"))
        && !accept.starts_with("application/json;as=Table")
    {
        return None;
    }
    Some(match query.get("includeObject") {
        Some("None") => IncludeObject::None,
        Some("Object") => IncludeObject::Object,
        _ => IncludeObject::Metadata,
    })
}

/// The namespace, selectors and paging of a list or watch.
pub(super) fn list_query(target: &Target, query: &Query) -> Result<ListQuery, ApiError> {
    let extra: &[&str] = match (target.rt.group.as_str(), target.rt.plural.as_str()) {
        ("", "secrets") => &["type"],
        // What the API server accepts for events.k8s.io/v1 Events.
        ("events.k8s.io", "events") => &[
            "regarding.name",
            "regarding.namespace",
            "regarding.kind",
            "regarding.uid",
            "reason",
            "type",
            "reportingController",
        ],
        _ => &[],
    };
    Ok(ListQuery {
        namespace: target.namespace.clone(),
        labels: LabelSelector::parse(query.get("labelSelector").unwrap_or(""))?,
        fields: FieldSelector::parse(query.get("fieldSelector").unwrap_or(""), extra)?,
        limit: query.get("limit").and_then(|l| l.parse().ok()),
        continue_token: query.get("continue").filter(|c| !c.is_empty()).map(str::to_string),
    })
}

/// The resource a path names, among the registered ones.
pub(super) fn resolve(state: &State, segments: &[&str]) -> Option<Target> {
    let (group, version, rest) = match segments {
        ["api", version, rest @ ..] => ("", *version, rest),
        ["apis", group, version, rest @ ..] => (*group, *version, rest),
        _ => return None,
    };
    let (namespace, rest) = match rest {
        ["namespaces", ns, plural, tail @ ..] if !matches!(*plural, "status" | "finalize") => (Some(ns.to_string()), {
            let mut v = vec![*plural];
            v.extend_from_slice(tail);
            v
        }),
        other => (None, other.to_vec()),
    };
    let rt = state.resource(group, version, rest.first()?)?;
    if rt.namespaced != namespace.is_some() && rest.len() > 1 {
        return None;
    }
    Some(Target {
        namespace: if rt.namespaced { namespace } else { None },
        name: rest.get(1).map(|s| s.to_string()),
        subresource: rest.get(2).map(|s| s.to_string()),
        rt,
    })
}

/// Whether the client asked for `PartialObjectMetadata` (kube's metadata-only APIs and watchers).
pub(super) fn metadata_only(accept: &str) -> bool {
    accept.contains("as=PartialObjectMetadata")
}

/// An object reduced to its metadata, as `meta.k8s.io/v1` `PartialObjectMetadata`.
pub(super) fn partial_object(object: &Value) -> Value {
    json!({"kind": "PartialObjectMetadata", "apiVersion": "meta.k8s.io/v1", "metadata": object["metadata"]})
}

/// The object, or its metadata when that was asked for.
pub(super) fn view(accept: &str, object: Value) -> Value {
    shown(metadata_only(accept), object)
}

/// The object, or its metadata.
pub(super) fn shown(metadata_only: bool, object: Value) -> Value {
    if metadata_only { partial_object(&object) } else { object }
}

/// The field manager of an update without `fieldManager`: the User-Agent's program name, as the API server does.
pub(super) fn manager_from_user_agent(user_agent: &str) -> Option<String> {
    let name = user_agent.split('/').next().unwrap_or("").trim();
    (!name.is_empty()).then(|| name.chars().take(128).collect())
}

/// The patch kind a Content-Type names.
pub(super) fn patch_kind(content_type: &str) -> Result<PatchKind, ApiError> {
    match content_type.split(';').next().unwrap_or("").trim() {
        "application/json-patch+json" => Ok(PatchKind::Json),
        "application/merge-patch+json" => Ok(PatchKind::Merge),
        "application/strategic-merge-patch+json" => Ok(PatchKind::Strategic),
        "application/apply-patch+yaml" | "application/apply-patch+yml" => Ok(PatchKind::Apply),
        other => Err(ApiError::new(
            415,
            "UnsupportedMediaType",
            format!(
                "the body of the request was in an unknown format - accepted media types include: application/json-patch+json, application/merge-patch+json, application/apply-patch+yaml (got {other})"
            ),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sandbox::kube::store::StoreOptions;

    #[test]
    fn queries_keep_the_last_value_and_read_flags() {
        let q = Query::parse("watch=1&limit=5&limit=7&labelSelector=a%3Db&force=false");
        assert_eq!(q.get("limit"), Some("7"));
        assert_eq!(q.get("labelSelector"), Some("a=b"));
        assert!(q.flag("watch") && !q.flag("force") && !q.flag("missing"));
    }

    #[test]
    fn paths_resolve_to_registered_resources() {
        let state = State::new(StoreOptions::default());
        let t = resolve(&state, &["api", "v1", "namespaces", "d", "secrets", "s"]).unwrap();
        assert_eq!(
            (t.rt.plural.as_str(), t.namespace.as_deref(), t.name.as_deref()),
            ("secrets", Some("d"), Some("s"))
        );
        let t = resolve(&state, &["api", "v1", "namespaces", "d", "status"]).unwrap();
        assert_eq!(
            (t.rt.plural.as_str(), t.name.as_deref(), t.subresource.as_deref()),
            ("namespaces", Some("d"), Some("status"))
        );
        assert!(resolve(&state, &["apis", "nope.example.com", "v1", "things"]).is_none());
        assert!(
            resolve(&state, &["api", "v1", "namespaces", "d", "namespaces", "x"]).is_none(),
            "cluster-scoped under a namespace"
        );
    }

    #[test]
    fn content_types_name_the_patch_kind() {
        assert_eq!(
            patch_kind("application/merge-patch+json; charset=utf-8").unwrap(),
            PatchKind::Merge
        );
        assert_eq!(patch_kind("application/apply-patch+yaml").unwrap(), PatchKind::Apply);
        assert_eq!(patch_kind("application/json-patch+json").unwrap(), PatchKind::Json);
        assert_eq!(patch_kind("text/plain").unwrap_err().code, 415);
    }

    #[test]
    fn representations_and_managers_follow_the_request() {
        assert_eq!(
            table_requested(
                "application/json;as=Table;v=v1;g=meta.k8s.io,application/json",
                &Query::parse("")
            ),
            Some(IncludeObject::Metadata)
        );
        assert_eq!(table_requested("application/json", &Query::parse("")), None);
        assert!(metadata_only(
            "application/json;as=PartialObjectMetadata;g=meta.k8s.io;v=v1"
        ));
        let object = json!({"metadata": {"name": "a"}, "spec": {"x": 1}});
        assert_eq!(shown(true, object.clone())["kind"], json!("PartialObjectMetadata"));
        assert_eq!(shown(false, object.clone()), object);
        assert_eq!(
            manager_from_user_agent("kubectl/v1.35.0 (linux/amd64)").as_deref(),
            Some("kubectl")
        );
        assert_eq!(manager_from_user_agent(""), None);
        assert_eq!(parse_json(&Bytes::from_static(b"{")).unwrap_err().code, 400);
        assert_eq!(parse_yaml(&Bytes::from_static(b"a: 1")).unwrap(), json!({"a": 1}));
    }
}
