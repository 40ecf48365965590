//! The HTTP face of the emulated API server: manual routing (CRDs add routes at run time), the verbs,
//! watches as cursors over the event log, discovery, a minimal OpenAPI v3 for kubectl, and fault hooks.

mod discovery;
mod faults;
mod protobuf;
mod request;
mod reviews;
mod verbs;
mod watches;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::http::{HeaderMap, Method, Request, header};
use axum::response::Response;
use tokio::sync::{broadcast, watch};

pub use faults::{FaultAction, FaultRule};
pub use watches::{WatchControl, WatchDelivery};

use super::error::ApiError;
use super::rbac::{Attributes, User};
use super::store::{State, Writer};
use faults::matching_fault;
use request::{Query, error_response, manager_from_user_agent, metadata_only, resolve, unknown_path};

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

/// One authorization decision on an impersonated request (the emulator's audit log).
#[derive(Clone, Debug)]
pub struct AuditRecord {
    /// Who the request acted as.
    pub user: String,
    /// What it asked to do.
    pub attributes: Attributes,
    /// Whether RBAC allowed it.
    pub allowed: bool,
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
    /// Every authorization decision on an impersonated request.
    pub audit: Mutex<Vec<AuditRecord>>,
    /// Active fault rules.
    pub faults: Mutex<Vec<FaultRule>>,
    /// Pause or delay of watch event delivery.
    pub watch_delivery: watch::Sender<WatchDelivery>,
    /// Settings.
    pub config: ServerConfig,
}

impl Shared {
    /// A server state over `state`, with no faults, no open watches and immediate delivery.
    pub fn new(state: State, config: ServerConfig) -> Self {
        Shared {
            state: Mutex::new(state),
            revisions: watch::channel(0).0,
            watch_control: broadcast::channel(64).0,
            requests: Mutex::new(Vec::new()),
            audit: Mutex::new(Vec::new()),
            faults: Mutex::new(Vec::new()),
            watch_delivery: watch::channel(WatchDelivery::default()).0,
            config,
        }
    }

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
    crate::sandbox::push_bounded(
        &mut shared.requests.lock().expect("request log"),
        RequestRecord {
            method: parts.method.to_string(),
            path: path.clone(),
            query: raw_query.clone(),
            content_type: header_str(&parts.headers, header::CONTENT_TYPE),
            user_agent: header_str(&parts.headers, header::USER_AGENT),
            body: String::from_utf8_lossy(&body).into_owned(),
        },
    );
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
    let user = impersonated(&parts.headers);
    let request = Incoming {
        user: user.as_ref(),
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

/// The user a request impersonates (`Impersonate-User`, `Impersonate-Group`), None for the sandbox's
/// own administrator. Impersonation is allowed because the caller is that administrator.
fn impersonated(headers: &HeaderMap) -> Option<User> {
    let name = headers.get("impersonate-user")?.to_str().ok()?;
    let groups: Vec<String> = headers
        .get_all("impersonate-group")
        .iter()
        .filter_map(|v| v.to_str().ok().map(str::to_string))
        .collect();
    Some(User::impersonated(name, &groups))
}

/// The RBAC verb of a resource request.
fn verb_of(method: &Method, named: bool, watch: bool) -> &'static str {
    match (method.as_str(), named) {
        ("GET", _) if watch => "watch",
        ("GET", true) => "get",
        ("GET", false) => "list",
        ("POST", _) => "create",
        ("PUT", _) => "update",
        ("PATCH", _) => "patch",
        ("DELETE", true) => "delete",
        ("DELETE", false) => "deletecollection",
        _ => "unknown",
    }
}

/// The parts of a request the router reads.
struct Incoming<'a> {
    user: Option<&'a User>,
    method: &'a Method,
    path: &'a str,
    query: &'a Query,
    accept: &'a str,
    content_type: &'a str,
    user_agent: &'a str,
    body: &'a Bytes,
}

/// Routes a request: discovery, or a verb on a resource.
async fn serve(shared: &Arc<Shared>, request: &Incoming<'_>) -> Result<Response, ApiError> {
    let segments: Vec<&str> = request
        .path
        .trim_matches('/')
        .split('/')
        .filter(|s| !s.is_empty())
        .collect();
    if let Some(answer) = discovery::route(shared, &segments, request.accept) {
        return answer;
    }
    let query = request.query;
    let target = shared.with_state(|s| resolve(s, &segments)).ok_or_else(unknown_path)?;
    let status = target.subresource.as_deref() == Some("status");
    if target.subresource.as_deref().is_some_and(|s| s != "status") || (status && !target.rt.status_subresource) {
        return Err(unknown_path());
    }
    if let Some(user) = request.user {
        let attributes = Attributes {
            verb: verb_of(request.method, target.name.is_some(), query.flag("watch")).to_string(),
            group: target.rt.group.clone(),
            resource: target.rt.plural.clone(),
            subresource: target.subresource.clone().unwrap_or_default(),
            namespace: target.namespace.clone().unwrap_or_default(),
            name: target.name.clone().unwrap_or_default(),
        };
        // A server-side apply or a PUT that creates the object is a create as well, and needs that verb
        // too (the API server authorizes it so: patch alone may not create).
        let may_create = match *request.method {
            Method::PATCH => request.content_type.starts_with("application/apply-patch"),
            Method::PUT => target.rt.create_on_update,
            _ => false,
        };
        let creates = may_create
            && target
                .name
                .as_deref()
                .is_some_and(|name| shared.with_state(|s| s.get(&target.rt, &attributes.namespace, name).is_err()));
        let mut asked = vec![attributes.clone()];
        if creates {
            asked.push(Attributes {
                verb: "create".into(),
                ..attributes
            });
        }
        for attributes in asked {
            let allowed = shared.with_state(|s| s.rbac().decide(user, &attributes).allowed);
            crate::sandbox::push_bounded(
                &mut shared.audit.lock().expect("audit log"),
                AuditRecord {
                    user: user.name.clone(),
                    attributes: attributes.clone(),
                    allowed,
                },
            );
            if !allowed {
                let mut error = ApiError::new(403, "Forbidden", attributes.forbidden_message(user));
                error.details = serde_json::json!({"name": attributes.name, "group": attributes.group, "kind": attributes.resource});
                return Err(error);
            }
        }
    }
    if target.rt.review {
        return match (request.method, target.name.is_none()) {
            (&Method::POST, true) => reviews::answer(shared, &target.rt, request.user, request.body),
            _ => Err(ApiError::new(
                405,
                "MethodNotAllowed",
                format!(
                    "the server does not allow this method on the requested resource ({})",
                    request.method
                ),
            )),
        };
    }
    let dry_run = query.get("dryRun") == Some("All");
    let name = target.name.clone();
    let call = verbs::Call {
        shared,
        namespace: target.namespace.clone().unwrap_or_default(),
        target,
        query,
        accept: request.accept,
        content_type: request.content_type,
        body: request.body,
        writer: Writer {
            manager: query
                .get("fieldManager")
                .map(str::to_string)
                .or_else(|| manager_from_user_agent(request.user_agent)),
            force: query.flag("force"),
            dry_run,
        },
        status,
        dry_run,
    };
    match (request.method.clone(), name.as_deref()) {
        (Method::GET, None) if query.flag("watch") => {
            watches::watch_response(shared.clone(), call.target, query, metadata_only(request.accept))
        }
        (Method::GET, None) => verbs::list(call),
        (Method::GET, Some(name)) => verbs::get(call, name),
        (Method::POST, None) => verbs::create(call),
        (Method::PUT, Some(name)) => verbs::replace(call, name),
        (Method::PATCH, Some(name)) => verbs::patch(call, name),
        (Method::DELETE, Some(name)) => verbs::delete(call, name),
        (Method::DELETE, None) => verbs::delete_collection(call),
        (method, _) => Err(ApiError::new(
            405,
            "MethodNotAllowed",
            format!("the server does not allow this method on the requested resource ({method})"),
        )),
    }
}
