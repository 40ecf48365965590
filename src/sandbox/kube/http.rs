//! The HTTP face of the emulated API server: manual routing (CRDs add routes at run time), the verbs,
//! watches as cursors over the event log, discovery, a minimal OpenAPI v3 for kubectl, and fault hooks.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::http::{HeaderMap, HeaderValue, Method, Request, StatusCode, header};
use axum::response::Response;
use serde_json::{Value, json};
use tokio::sync::{broadcast, mpsc, watch};

use super::error::ApiError;
use super::resources::ResourceType;
use super::selectors::{FieldSelector, LabelSelector};
use super::store::{ChangeType, DeleteOutcome, ListQuery, PatchKind, State, Writer};
use super::table::{self, IncludeObject};

/// One request as the server saw it, for test assertions.
#[derive(Clone, Debug)]
pub struct RequestRecord {
    /// HTTP method.
    pub method: String,
    /// Path without the query.
    pub path: String,
    /// Raw query string.
    pub query: String,
    /// Content-Type header.
    pub content_type: String,
    /// User-Agent header.
    pub user_agent: String,
    /// The body as text.
    pub body: String,
}

/// What a fault rule does to a matching request.
#[derive(Clone, Debug)]
pub enum FaultAction {
    /// Answer with this error instead of serving the request.
    Fail(ApiError),
    /// Wait this long, then serve the request.
    Delay(Duration),
    /// Break the connection: the response starts, then its body fails.
    Drop,
}

/// A request fault. A request matches when every given criterion holds; the first `skip` matches pass
/// untouched (so "the Nth call" is `skip(N - 1)`), then each match gets the action with `probability`,
/// `remaining` times.
#[derive(Clone, Debug)]
pub struct FaultRule {
    /// Methods to match (empty: any).
    pub methods: Vec<Method>,
    /// A regex the path must match, or any.
    pub path: Option<regex::Regex>,
    /// A fragment the raw query must contain, or any.
    pub query_contains: Option<String>,
    /// Matching requests still to let through before acting.
    pub skip: u32,
    /// Chance in [0, 1] that a match is acted on.
    pub probability: f64,
    /// How many more requests it acts on (None: forever).
    pub remaining: Option<u32>,
    /// What to do.
    pub action: FaultAction,
}

impl FaultRule {
    /// A rule acting on every request, forever; narrow it with the builder methods.
    pub fn new(action: FaultAction) -> Self {
        FaultRule {
            methods: Vec::new(),
            path: None,
            query_contains: None,
            skip: 0,
            probability: 1.0,
            remaining: None,
            action,
        }
    }

    /// Only these methods.
    pub fn methods(mut self, methods: &[Method]) -> Self {
        self.methods = methods.to_vec();
        self
    }

    /// Only writes (POST, PUT, PATCH, DELETE).
    pub fn writes(self) -> Self {
        self.methods(&[Method::POST, Method::PUT, Method::PATCH, Method::DELETE])
    }

    /// Only paths matching this regex (panics on an invalid one: test code).
    pub fn path(mut self, pattern: &str) -> Self {
        self.path = Some(regex::Regex::new(pattern).expect("fault path regex"));
        self
    }

    /// Only queries containing this fragment.
    pub fn query(mut self, fragment: &str) -> Self {
        self.query_contains = Some(fragment.to_string());
        self
    }

    /// Let the first `n` matches through.
    pub fn skip(mut self, n: u32) -> Self {
        self.skip = n;
        self
    }

    /// Act on a match with this probability.
    pub fn probability(mut self, p: f64) -> Self {
        self.probability = p;
        self
    }

    /// Act `n` times, then retire.
    pub fn times(mut self, n: u32) -> Self {
        self.remaining = Some(n);
        self
    }
}

/// How open watches deliver events (test control of R72f).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct WatchDelivery {
    /// Hold events back until unpaused (they are then delivered together, in order).
    pub paused: bool,
    /// Wait this long before delivering each batch of changes.
    pub delay: Duration,
}

/// Commands to every open watch.
#[derive(Clone, Debug)]
pub enum WatchControl {
    /// End every stream cleanly; clients resume from their last resourceVersion.
    Close,
    /// Break every stream mid-response.
    Abort,
    /// Send a BOOKMARK now.
    Bookmark,
    /// Send this ERROR Status event, then close.
    Error(Value),
}

/// Server settings.
#[derive(Clone, Debug)]
pub struct ServerConfig {
    /// The `minor` version `/version` reports (kubectl dispatchers choose a binary by it).
    pub minor_version: String,
    /// How often idle watches get a BOOKMARK.
    pub bookmark_interval: Duration,
}

/// State shared by every request.
pub struct Shared {
    /// The store.
    pub state: Mutex<State>,
    /// Announces each committed revision.
    pub revisions: watch::Sender<u64>,
    /// Commands for open watches.
    pub watch_control: broadcast::Sender<WatchControl>,
    /// Every request served.
    pub requests: Mutex<Vec<RequestRecord>>,
    /// Active fault rules.
    pub faults: Mutex<Vec<FaultRule>>,
    /// Pause or delay of watch event delivery.
    pub watch_delivery: watch::Sender<WatchDelivery>,
    /// Settings.
    pub config: ServerConfig,
}

impl Shared {
    /// Runs `f` on the store and announces any new revision to watches.
    pub fn with_state<T>(&self, f: impl FnOnce(&mut State) -> T) -> T {
        let mut state = self.state.lock().expect("store lock");
        let result = f(&mut state);
        let revision = state.revision;
        drop(state);
        self.revisions.send_if_modified(|r| {
            let changed = *r != revision;
            *r = revision;
            changed
        });
        result
    }
}

fn json_response(code: StatusCode, body: &Value) -> Response {
    let mut response = Response::new(Body::from(serde_json::to_vec(body).expect("JSON serializes")));
    *response.status_mut() = code;
    response
        .headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    response
}

fn error_response(error: &ApiError) -> Response {
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

fn text_response(text: &'static str) -> Response {
    Response::new(Body::from(text))
}

/// Parsed query parameters (repeated keys keep the last value).
struct Query(Vec<(String, String)>);

impl Query {
    fn parse(raw: &str) -> Self {
        Query(form_urlencoded::parse(raw.as_bytes()).into_owned().collect())
    }
    fn get(&self, key: &str) -> Option<&str> {
        self.0.iter().rev().find(|(k, _)| k == key).map(|(_, v)| v.as_str())
    }
    fn flag(&self, key: &str) -> bool {
        matches!(self.get(key), Some("true" | "1"))
    }
}

/// The resource a path names.
struct Target {
    rt: ResourceType,
    namespace: Option<String>,
    name: Option<String>,
    subresource: Option<String>,
}

/// The axum entry point.
pub async fn handle(shared: Arc<Shared>, request: Request<Body>) -> Response {
    let (parts, body) = request.into_parts();
    let body = match axum::body::to_bytes(body, 16 * 1024 * 1024).await {
        Ok(b) => b,
        Err(_) => return error_response(&ApiError::new(413, "RequestEntityTooLarge", "request body too large")),
    };
    let path = parts.uri.path().to_string();
    let raw_query = parts.uri.query().unwrap_or("").to_string();
    let header_str =
        |h: &HeaderMap, k: header::HeaderName| h.get(k).and_then(|v| v.to_str().ok()).unwrap_or("").to_string();
    shared.requests.lock().expect("request log").push(RequestRecord {
        method: parts.method.to_string(),
        path: path.clone(),
        query: raw_query.clone(),
        content_type: header_str(&parts.headers, header::CONTENT_TYPE),
        user_agent: header_str(&parts.headers, header::USER_AGENT),
        body: String::from_utf8_lossy(&body).into_owned(),
    });
    if let Some(action) = matching_fault(&shared, &parts.method, &path, &raw_query) {
        match action {
            FaultAction::Fail(error) => return error_response(&error),
            FaultAction::Delay(delay) => tokio::time::sleep(delay).await,
            FaultAction::Drop => {
                let broken = futures::stream::once(async {
                    Err::<Bytes, _>(std::io::Error::other("connection dropped by the sandbox"))
                });
                return Response::new(Body::from_stream(broken));
            }
        }
    }
    let query = Query::parse(&raw_query);
    let accept = header_str(&parts.headers, header::ACCEPT);
    let content_type = header_str(&parts.headers, header::CONTENT_TYPE);
    let user_agent = header_str(&parts.headers, header::USER_AGENT);
    let request = Incoming {
        method: &parts.method,
        path: &path,
        query: &query,
        accept: &accept,
        content_type: &content_type,
        user_agent: &user_agent,
        body: &body,
    };
    match serve(&shared, &request).await {
        Ok(response) => response,
        Err(error) => error_response(&error),
    }
}

fn matching_fault(shared: &Shared, method: &Method, path: &str, query: &str) -> Option<FaultAction> {
    let mut faults = shared.faults.lock().expect("fault rules");
    for index in 0..faults.len() {
        let rule = &mut faults[index];
        let matches = (rule.methods.is_empty() || rule.methods.contains(method))
            && rule.path.as_ref().is_none_or(|p| p.is_match(path))
            && rule.query_contains.as_deref().is_none_or(|q| query.contains(q));
        if !matches {
            continue;
        }
        if rule.skip > 0 {
            rule.skip -= 1;
            continue;
        }
        if rule.probability < 1.0 && fastrand::f64() >= rule.probability {
            continue;
        }
        let action = rule.action.clone();
        if let Some(remaining) = rule.remaining.as_mut() {
            *remaining = remaining.saturating_sub(1);
            if *remaining == 0 {
                faults.remove(index);
            }
        }
        return Some(action);
    }
    None
}

/// The parts of a request the router reads.
struct Incoming<'a> {
    method: &'a Method,
    path: &'a str,
    query: &'a Query,
    accept: &'a str,
    content_type: &'a str,
    user_agent: &'a str,
    body: &'a Bytes,
}

async fn serve(shared: &Arc<Shared>, request: &Incoming<'_>) -> Result<Response, ApiError> {
    let Incoming {
        method,
        path,
        query,
        accept,
        content_type,
        user_agent,
        body,
    } = *request;
    let segments: Vec<&str> = path.trim_matches('/').split('/').filter(|s| !s.is_empty()).collect();
    match segments.as_slice() {
        ["version"] => return Ok(json_response(StatusCode::OK, &version(&shared.config))),
        ["healthz" | "readyz" | "livez"] => return Ok(text_response("ok")),
        ["api"] => {
            return Ok(json_response(
                StatusCode::OK,
                &json!({"kind": "APIVersions", "versions": ["v1"], "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": "127.0.0.1"}]}),
            ));
        }
        ["apis"] => {
            return Ok(json_response(
                StatusCode::OK,
                &shared.with_state(|s| group_list(s.resources())),
            ));
        }
        ["api", "v1"] => {
            return Ok(json_response(
                StatusCode::OK,
                &shared.with_state(|s| resource_list(s.resources(), "", "v1")),
            ));
        }
        ["apis", group] => {
            let groups = shared.with_state(|s| group_list(s.resources()));
            return groups["groups"]
                .as_array()
                .and_then(|gs| gs.iter().find(|g| g["name"] == *group))
                .map(|g| {
                    let mut g = g.clone();
                    g["kind"] = json!("APIGroup");
                    g["apiVersion"] = json!("v1");
                    json_response(StatusCode::OK, &g)
                })
                .ok_or_else(unknown_path);
        }
        ["apis", group, version] => {
            let list = shared.with_state(|s| resource_list(s.resources(), group, version));
            if list["resources"].as_array().is_none_or(Vec::is_empty) {
                return Err(unknown_path());
            }
            return Ok(json_response(StatusCode::OK, &list));
        }
        ["openapi", "v3"] => return Ok(json_response(StatusCode::OK, &openapi_index())),
        ["openapi", "v3", rest @ ..] => {
            return openapi_document(&rest.join("/"))
                .map(|d| json_response(StatusCode::OK, &d))
                .ok_or_else(unknown_path);
        }
        _ => {}
    }
    let target = shared.with_state(|s| resolve(s, &segments)).ok_or_else(unknown_path)?;
    let dry_run = query.get("dryRun") == Some("All");
    let writer = Writer {
        manager: query
            .get("fieldManager")
            .map(str::to_string)
            .or_else(|| manager_from_user_agent(user_agent)),
        force: query.flag("force"),
        dry_run,
    };
    let namespace = target.namespace.clone().unwrap_or_default();
    let status = target.subresource.as_deref() == Some("status");
    if target.subresource.as_deref().is_some_and(|s| s != "status") || (status && !target.rt.status_subresource) {
        return Err(unknown_path());
    }
    match (method.clone(), target.name.clone()) {
        (Method::GET, None) if query.flag("watch") => {
            watch_response(shared.clone(), target, query, metadata_only(accept))
        }
        (Method::GET, None) => {
            let list_query = list_query(&target, query)?;
            let (items, revision, token) = shared.with_state(|s| s.list(&target.rt, &list_query))?;
            if let Some(include) = table_requested(accept, query) {
                return Ok(json_response(
                    StatusCode::OK,
                    &table::render(&target.rt, &items, revision, token.as_deref(), include),
                ));
            }
            let mut metadata = json!({"resourceVersion": revision.to_string()});
            if let Some(token) = token {
                metadata["continue"] = json!(token);
            }
            if metadata_only(accept) {
                let items: Vec<Value> = items.iter().map(partial_object).collect();
                let list = json!({"kind": "PartialObjectMetadataList", "apiVersion": "meta.k8s.io/v1", "metadata": metadata, "items": items});
                return Ok(json_response(StatusCode::OK, &list));
            }
            let list = json!({"kind": target.rt.list_kind(), "apiVersion": target.rt.api_version(), "metadata": metadata, "items": items});
            Ok(json_response(StatusCode::OK, &list))
        }
        (Method::GET, Some(name)) => {
            let (object, revision) =
                shared.with_state(|s| s.get(&target.rt, &namespace, &name).map(|o| (o, s.revision)))?;
            if let Some(include) = table_requested(accept, query) {
                return Ok(json_response(
                    StatusCode::OK,
                    &table::render(&target.rt, &[object], revision, None, include),
                ));
            }
            Ok(json_response(StatusCode::OK, &view(accept, object)))
        }
        (Method::POST, None) => {
            let object = parse_json(body)?;
            let strict = strict_unknown_fields(&target.rt, &object, query)?;
            let created = shared.with_state(|s| s.create(&target.rt, &namespace, object, &writer))?;
            Ok(with_warnings(json_response(StatusCode::CREATED, &created), &strict))
        }
        (Method::PUT, Some(name)) => {
            let object = parse_json(body)?;
            let strict = strict_unknown_fields(&target.rt, &object, query)?;
            let (object, created) =
                shared.with_state(|s| s.replace(&target.rt, &namespace, &name, object, status, &writer))?;
            let code = if created { StatusCode::CREATED } else { StatusCode::OK };
            Ok(with_warnings(json_response(code, &object), &strict))
        }
        (Method::PATCH, Some(name)) => {
            let media = content_type.split(';').next().unwrap_or("").trim();
            let kind = match media {
                "application/json-patch+json" => PatchKind::Json,
                "application/merge-patch+json" => PatchKind::Merge,
                "application/strategic-merge-patch+json" => PatchKind::Strategic,
                "application/apply-patch+yaml" | "application/apply-patch+yml" => PatchKind::Apply,
                other => {
                    return Err(ApiError::new(
                        415,
                        "UnsupportedMediaType",
                        format!(
                            "the body of the request was in an unknown format - accepted media types include: application/json-patch+json, application/merge-patch+json, application/apply-patch+yaml (got {other})"
                        ),
                    ));
                }
            };
            if writer.force && kind != PatchKind::Apply {
                return Err(ApiError::new(
                    422,
                    "Invalid",
                    "force: Invalid value: true: may not be specified for non-apply patch",
                ));
            }
            let patch = if kind == PatchKind::Apply {
                if query.get("fieldManager").is_none() {
                    return Err(ApiError::new(
                        422,
                        "Invalid",
                        "PatchOptions.meta.k8s.io \"\" is invalid: fieldManager: Required value: is required for apply patch",
                    ));
                }
                parse_yaml(body)?
            } else {
                parse_json(body)?
            };
            let (object, created) =
                shared.with_state(|s| s.patch(&target.rt, &namespace, &name, kind, patch, status, &writer))?;
            Ok(json_response(
                if created { StatusCode::CREATED } else { StatusCode::OK },
                &view(accept, object),
            ))
        }
        (Method::DELETE, Some(name)) => {
            let options = if body.is_empty() { json!({}) } else { parse_json(body)? };
            let dry_run = dry_run || options["dryRun"].as_array().is_some_and(|d| d.contains(&json!("All")));
            match shared.with_state(|s| s.delete(&target.rt, &namespace, &name, &options, dry_run))? {
                DeleteOutcome::Marked(object) => Ok(json_response(StatusCode::OK, &object)),
                DeleteOutcome::Removed(object) => Ok(json_response(
                    StatusCode::OK,
                    &json!({
                        "kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success",
                        "details": {"name": name, "group": target.rt.group, "kind": target.rt.plural, "uid": object["metadata"]["uid"]}
                    }),
                )),
            }
        }
        (Method::DELETE, None) => {
            let list_query = list_query(&target, query)?;
            let deleted = shared.with_state(|s| -> Result<Vec<Value>, ApiError> {
                let (items, _, _) = s.list(
                    &target.rt,
                    &ListQuery {
                        limit: None,
                        continue_token: None,
                        ..list_query
                    },
                )?;
                let mut deleted = Vec::new();
                for item in items {
                    let ns = item["metadata"]["namespace"].as_str().unwrap_or_default().to_string();
                    let name = item["metadata"]["name"].as_str().unwrap_or_default().to_string();
                    match s.delete(&target.rt, &ns, &name, &json!({}), dry_run)? {
                        DeleteOutcome::Marked(o) | DeleteOutcome::Removed(o) => deleted.push(o),
                    }
                }
                Ok(deleted)
            })?;
            let list = json!({"kind": target.rt.list_kind(), "apiVersion": target.rt.api_version(), "metadata": {}, "items": deleted});
            Ok(json_response(StatusCode::OK, &list))
        }
        _ => Err(ApiError::new(
            405,
            "MethodNotAllowed",
            format!("the server does not allow this method on the requested resource ({method})"),
        )),
    }
}

fn unknown_path() -> ApiError {
    ApiError::new(404, "NotFound", "the server could not find the requested resource")
}

fn parse_json(body: &Bytes) -> Result<Value, ApiError> {
    serde_json::from_slice(body)
        .map_err(|e| ApiError::bad_request(format!("the body of the request could not be decoded as JSON: {e}")))
}

fn parse_yaml(body: &Bytes) -> Result<Value, ApiError> {
    serde_json::from_slice(body).or_else(|_| {
        let text = std::str::from_utf8(body).map_err(|_| ApiError::bad_request("apply body is not UTF-8"))?;
        serde_saphyr::from_str(text).map_err(|e| ApiError::bad_request(format!("error decoding YAML: {e}")))
    })
}

/// `fieldValidation=Strict` turns unknown fields of a custom resource into 400; `Warn` (default) reports them.
fn strict_unknown_fields(rt: &ResourceType, object: &Value, query: &Query) -> Result<Vec<String>, ApiError> {
    let Some(schema) = rt.schema.as_ref().map(|s| &s.raw) else {
        return Ok(Vec::new());
    };
    let mut copy = object.clone();
    let unknown = super::schema::prune(schema, &mut copy);
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

fn with_warnings(mut response: Response, unknown: &[String]) -> Response {
    for field in unknown {
        if let Ok(value) = HeaderValue::from_str(&format!("299 - \"unknown field \\\"{field}\\\"\"")) {
            response.headers_mut().append(header::WARNING, value);
        }
    }
    response
}

fn table_requested(accept: &str, query: &Query) -> Option<IncludeObject> {
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

fn list_query(target: &Target, query: &Query) -> Result<ListQuery, ApiError> {
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

fn resolve(state: &State, segments: &[&str]) -> Option<Target> {
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

fn version(config: &ServerConfig) -> Value {
    json!({
        "major": "1", "minor": config.minor_version,
        "gitVersion": format!("v1.{}.0-webhook-operator-sandbox", config.minor_version),
        "gitCommit": "0000000000000000000000000000000000000000", "gitTreeState": "clean",
        "buildDate": "2026-01-01T00:00:00Z", "goVersion": "go1.25", "compiler": "gc", "platform": "linux/amd64"
    })
}

fn group_list(resources: &[ResourceType]) -> Value {
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

fn resource_list(resources: &[ResourceType], group: &str, version: &str) -> Value {
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

/// The built-in kinds kubectl may apply, per OpenAPI group-version document.
const OPENAPI_KINDS: [(&str, &str, &str, &str, &str, bool); 6] = [
    ("api/v1", "", "v1", "Namespace", "namespaces", false),
    ("api/v1", "", "v1", "Secret", "secrets", true),
    ("api/v1", "", "v1", "Event", "events", true),
    ("apis/events.k8s.io/v1", "events.k8s.io", "v1", "Event", "events", true),
    (
        "apis/coordination.k8s.io/v1",
        "coordination.k8s.io",
        "v1",
        "Lease",
        "leases",
        true,
    ),
    (
        "apis/apiextensions.k8s.io/v1",
        "apiextensions.k8s.io",
        "v1",
        "CustomResourceDefinition",
        "customresourcedefinitions",
        false,
    ),
];

fn openapi_index() -> Value {
    let mut paths = serde_json::Map::new();
    for (doc, ..) in OPENAPI_KINDS {
        paths.insert(
            doc.to_string(),
            json!({"serverRelativeURL": format!("/openapi/v3/{doc}?hash=sandbox")}),
        );
    }
    json!({"paths": paths})
}

/// A per-group-version document with one PATCH operation per kind that names the `fieldValidation`
/// parameter: kubectl then validates on the server (`fieldValidation=Strict`) instead of client-side.
fn openapi_document(doc: &str) -> Option<Value> {
    let mut paths = serde_json::Map::new();
    for (d, group, version, kind, plural, namespaced) in OPENAPI_KINDS.iter().filter(|k| k.0 == doc) {
        let ns = if *namespaced { "namespaces/{namespace}/" } else { "" };
        paths.insert(
            format!("/{d}/{ns}{plural}/{{name}}"),
            json!({"patch": {
                "x-kubernetes-group-version-kind": {"group": group, "version": version, "kind": kind},
                "parameters": [{"name": "fieldValidation", "in": "query", "schema": {"type": "string"}}],
                "requestBody": {"content": {"application/merge-patch+json": {"schema": {"type": "object"}}, "application/json-patch+json": {"schema": {"type": "object"}}}},
                "responses": {"200": {"description": "OK"}}
            }}),
        );
    }
    (!paths.is_empty()).then(|| json!({"openapi": "3.0.0", "info": {"title": "Kubernetes", "version": "v1.35.0"}, "paths": paths, "components": {"schemas": {}}}))
}

fn watch_line(event_type: &str, object: &Value) -> Bytes {
    let mut line = serde_json::to_vec(&json!({"type": event_type, "object": object})).expect("JSON serializes");
    line.push(b'\n');
    Bytes::from(line)
}

fn bookmark(rt: &ResourceType, revision: u64, initial_end: bool) -> Bytes {
    let mut metadata = json!({"resourceVersion": revision.to_string()});
    if initial_end {
        metadata["annotations"] = json!({"k8s.io/initial-events-end": "true"});
    }
    watch_line(
        "BOOKMARK",
        &json!({"kind": rt.kind, "apiVersion": rt.api_version(), "metadata": metadata}),
    )
}

fn expired(requested: u64, current: u64) -> Value {
    json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure", "message": format!("too old resource version: {requested} ({current})"), "reason": "Expired", "code": 410})
}

type Chunk = Result<Bytes, std::io::Error>;

fn watch_response(
    shared: Arc<Shared>,
    target: Target,
    query: &Query,
    metadata_only: bool,
) -> Result<Response, ApiError> {
    let filter = list_query(&target, query)?;
    let allow_bookmarks = query.flag("allowWatchBookmarks");
    let send_initial = query.flag("sendInitialEvents");
    if send_initial && (query.get("resourceVersionMatch") != Some("NotOlderThan") || !allow_bookmarks) {
        return Err(ApiError::new(
            422,
            "Invalid",
            "sendInitialEvents requires resourceVersionMatch=NotOlderThan and allowWatchBookmarks=true",
        ));
    }
    let requested: Option<u64> = query
        .get("resourceVersion")
        .filter(|v| !v.is_empty() && *v != "0")
        .and_then(|v| v.parse().ok());
    let timeout = Duration::from_secs(query.get("timeoutSeconds").and_then(|t| t.parse().ok()).unwrap_or(1800));
    let (tx, rx) = mpsc::channel::<Chunk>(1024);
    let rt = target.rt.clone();
    tokio::spawn(async move {
        let mut revisions = shared.revisions.subscribe();
        let mut control = shared.watch_control.subscribe();
        let matches = |o: &Value| {
            o["metadata"]["namespace"]
                .as_str()
                .is_none_or(|ns| filter.namespace.as_ref().is_none_or(|f| f == ns))
                && filter.labels.matches(o)
                && filter.fields.matches(o)
        };
        // The initial part: synthetic ADDED for a fresh watch, or a replay from the log.
        let (lines, ended, mut last) = {
            let state = shared.state.lock().expect("store lock");
            let mut lines = Vec::new();
            let mut ended = false;
            match requested {
                None => {
                    let items = state.objects_of(&rt).into_iter().filter(|o| matches(o));
                    lines.extend(items.map(|o| watch_line("ADDED", &shown(metadata_only, o))));
                    if send_initial {
                        lines.push(bookmark(&rt, state.revision, true));
                    }
                }
                Some(rv) => match state.changes_since(rv) {
                    None => {
                        lines.push(watch_line("ERROR", &expired(rv, state.revision)));
                        ended = true;
                    }
                    Some(entries) => lines.extend(translate(&state, &rt, &entries, &matches, metadata_only)),
                },
            }
            (lines, ended, state.revision)
        };
        if !lines.is_empty() && !wait_for_delivery(&shared, &tx).await {
            return;
        }
        for line in lines {
            if tx.send(Ok(line)).await.is_err() {
                return;
            }
        }
        if ended {
            return;
        }
        let deadline = tokio::time::sleep(timeout);
        tokio::pin!(deadline);
        let mut ticker = tokio::time::interval(shared.config.bookmark_interval);
        ticker.tick().await;
        loop {
            tokio::select! {
                _ = &mut deadline => {
                    if allow_bookmarks { let _ = tx.send(Ok(bookmark(&rt, last, false))).await; }
                    return;
                }
                _ = ticker.tick(), if allow_bookmarks => {
                    if tx.send(Ok(bookmark(&rt, last, false))).await.is_err() { return; }
                }
                command = control.recv() => match command {
                    Ok(WatchControl::Close) | Err(broadcast::error::RecvError::Closed) => return,
                    Ok(WatchControl::Abort) => { let _ = tx.send(Err(std::io::Error::other("connection aborted by the sandbox"))).await; return; }
                    Ok(WatchControl::Bookmark) => { if tx.send(Ok(bookmark(&rt, last, false))).await.is_err() { return; } }
                    Ok(WatchControl::Error(status)) => { let _ = tx.send(Ok(watch_line("ERROR", &status))).await; return; }
                    Err(broadcast::error::RecvError::Lagged(_)) => {}
                },
                changed = revisions.changed() => {
                    if changed.is_err() { return; }
                    if !wait_for_delivery(&shared, &tx).await { return; }
                    let batch = {
                        let state = shared.state.lock().expect("store lock");
                        let batch = match state.changes_since(last) {
                            None => Err(watch_line("ERROR", &expired(last, state.revision))),
                            Some(entries) => Ok(translate(&state, &rt, &entries, &matches, metadata_only)),
                        };
                        last = state.revision;
                        batch
                    };
                    match batch {
                        Ok(lines) => for line in lines { if tx.send(Ok(line)).await.is_err() { return; } },
                        Err(error) => { let _ = tx.send(Ok(error)).await; return; }
                    }
                }
                _ = tx.closed() => return,
            }
        }
    });
    let stream = futures::stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|chunk| (chunk, rx)) });
    let mut response = Response::new(Body::from_stream(stream));
    response
        .headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    Ok(response)
}

/// Whether the client asked for `PartialObjectMetadata` (kube's metadata-only APIs and watchers).
fn metadata_only(accept: &str) -> bool {
    accept.contains("as=PartialObjectMetadata")
}

/// An object reduced to its metadata, as `meta.k8s.io/v1` `PartialObjectMetadata`.
fn partial_object(object: &Value) -> Value {
    json!({"kind": "PartialObjectMetadata", "apiVersion": "meta.k8s.io/v1", "metadata": object["metadata"]})
}

fn view(accept: &str, object: Value) -> Value {
    shown(metadata_only(accept), object)
}

fn shown(metadata_only: bool, object: Value) -> Value {
    if metadata_only { partial_object(&object) } else { object }
}

/// Holds a watch while delivery is paused, then applies the configured delay; false when the client left.
async fn wait_for_delivery(shared: &Shared, tx: &mpsc::Sender<Chunk>) -> bool {
    let mut delivery = shared.watch_delivery.subscribe();
    loop {
        let current = *delivery.borrow_and_update();
        if !current.paused {
            if !current.delay.is_zero() {
                tokio::time::sleep(current.delay).await;
            }
            return !tx.is_closed();
        }
        tokio::select! {
            changed = delivery.changed() => if changed.is_err() { return false; },
            _ = tx.closed() => return false,
        }
    }
}

/// Turns log entries into watch lines for one watcher, with selector transitions as ADDED/DELETED.
fn translate(
    state: &State,
    rt: &ResourceType,
    entries: &[super::store::LogEntry],
    matches: &impl Fn(&Value) -> bool,
    metadata_only: bool,
) -> Vec<Bytes> {
    entries
        .iter()
        .filter(|e| e.group == rt.group && e.plural == rt.plural)
        .filter_map(|e| {
            let now = matches(&e.object);
            let before = e.previous.as_deref().is_some_and(matches);
            let event = match e.change {
                ChangeType::Added if now => "ADDED",
                ChangeType::Modified if now && before => "MODIFIED",
                ChangeType::Modified if now => "ADDED",
                ChangeType::Modified if before => "DELETED",
                ChangeType::Deleted if now => "DELETED",
                _ => return None,
            };
            Some(watch_line(
                event,
                &shown(metadata_only, state.at_version(rt, &e.object)),
            ))
        })
        .collect()
}

/// The field manager of an update without `fieldManager`: the User-Agent's program name, as the API server does.
fn manager_from_user_agent(user_agent: &str) -> Option<String> {
    let name = user_agent.split('/').next().unwrap_or("").trim();
    (!name.is_empty()).then(|| name.chars().take(128).collect())
}
