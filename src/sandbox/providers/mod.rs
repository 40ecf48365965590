//! Stateful, in-memory simulators of the three provider APIs, each on its own 127.0.0.1 port: token
//! endpoints with lifetimes, the subscription endpoints with the providers' documented limits, a request
//! log, fault injection, and deliveries signed the way each provider signs them.

// Handlers return a ready error `Response` as `Err`; its size does not matter in a test server.
#![allow(clippy::result_large_err)]

pub mod authvia;
pub mod avaya;
pub mod vonage;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::http::{HeaderMap, Method, Request, StatusCode, header};
use axum::response::Response;
use jiff::Timestamp;
use serde_json::{Value, json};

use super::LocalServer;
use crate::clock::{Clock, ShiftedClock};

/// One request a simulator served.
#[derive(Clone, Debug)]
pub struct SimRequest {
    /// Method.
    pub method: String,
    /// Path.
    pub path: String,
    /// Raw query.
    pub query: String,
    /// The `Accept` header.
    pub accept: String,
    /// Body as text.
    pub body: String,
    /// The status answered.
    pub status: u16,
    /// When it arrived (wall-clock order, for measuring gaps between calls).
    pub at: std::time::Instant,
}

/// What a fault does.
#[derive(Clone, Debug)]
pub enum SimFaultAction {
    /// Answer with this status (and `Retry-After` seconds, for 429).
    Status(u16, Option<u64>),
    /// Wait, then serve.
    Delay(Duration),
    /// Break the connection mid-response.
    Drop,
    /// Serve the request (its change happens), then break the connection before the answer arrives: a
    /// call that timed out for the client but succeeded at the provider.
    LoseAnswer,
    /// Answer with this status, content type and body instead (what a proxy or gateway in front of any
    /// SaaS API answers: an HTML error page, an empty 200, a truncated JSON).
    Raw(u16, &'static str, &'static str),
}

/// A fault on requests whose method matches (None: any) and whose path contains `path`.
#[derive(Clone, Debug)]
pub struct SimFault {
    /// Method, or any.
    pub method: Option<Method>,
    /// Path fragment.
    pub path: String,
    /// How many requests it still hits (None: forever).
    pub remaining: Option<u32>,
    /// What happens.
    pub action: SimFaultAction,
}

impl SimFault {
    /// A fault on every request whose path contains `path`.
    pub fn on(path: &str, action: SimFaultAction) -> Self {
        SimFault {
            method: None,
            path: path.to_string(),
            remaining: None,
            action,
        }
    }

    /// Only for `method`.
    pub fn method(mut self, method: Method) -> Self {
        self.method = Some(method);
        self
    }

    /// Only `n` times.
    pub fn times(mut self, n: u32) -> Self {
        self.remaining = Some(n);
        self
    }
}

/// A response whose body fails: the connection breaks before the answer arrives.
fn broken_response() -> Response {
    let broken =
        futures::stream::once(async { Err::<Bytes, _>(std::io::Error::other("connection dropped by the simulator")) });
    Response::new(Body::from_stream(broken))
}

/// The outcome of one delivery attempt.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DeliveryOutcome {
    /// The receiver's status, or None when it could not be reached.
    pub status: Option<u16>,
}

impl DeliveryOutcome {
    /// Whether the receiver accepted it (what each provider counts as success: 2xx, AuthVia also 3xx).
    pub fn accepted(&self) -> bool {
        self.status.is_some_and(|s| (200..400).contains(&s))
    }
}

/// What a valid bearer token allows.
#[derive(Clone, Debug)]
pub struct Grant {
    /// Its scopes.
    pub scopes: Vec<String>,
    /// When it expires (on the simulator's clock).
    pub expires_at: Timestamp,
}

/// Whether a request says its body is JSON (`application/json`, parameters allowed).
pub fn is_json(headers: &HeaderMap) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|v| v.trim().eq_ignore_ascii_case("application/json"))
}

/// What every simulator shares: clock, credentials, issued tokens, request log, faults, delivery target.
#[derive(Debug)]
pub struct SimCore {
    /// The clock expiries run on (tests move it forward).
    pub clock: ShiftedClock,
    client_id: String,
    client_secret: String,
    token_lifetime: Mutex<Duration>,
    tokens: Mutex<HashMap<String, (Timestamp, Vec<String>)>>,
    log: Mutex<Vec<SimRequest>>,
    faults: Mutex<Vec<SimFault>>,
    /// Deliveries go here (scheme, host and port) instead of the endpoint's own host: the sandbox cannot
    /// reach the internet, and the endpoints are https URLs.
    deliver_to: Mutex<Option<String>>,
    http: reqwest::Client,
}

impl SimCore {
    fn new(client_id: &str, client_secret: &str, token_lifetime: Duration) -> Self {
        SimCore {
            clock: ShiftedClock::new(),
            client_id: client_id.to_string(),
            client_secret: client_secret.to_string(),
            token_lifetime: Mutex::new(token_lifetime),
            tokens: Mutex::new(HashMap::new()),
            log: Mutex::new(Vec::new()),
            faults: Mutex::new(Vec::new()),
            deliver_to: Mutex::new(None),
            http: crate::providers::http::http_client(Duration::from_secs(10)),
        }
    }

    /// Whether these are the configured credentials.
    pub fn credentials_match(&self, client_id: &str, secret: &str) -> bool {
        client_id == self.client_id && secret == self.client_secret
    }

    /// The configured client secret (AuthVia verifies signatures with it).
    pub fn client_secret(&self) -> &str {
        &self.client_secret
    }

    /// The configured client id.
    pub fn client_id(&self) -> &str {
        &self.client_id
    }

    /// Issues a token with `scopes` for the configured lifetime (or `lifetime`); returns it and its lifetime.
    pub fn issue_token(&self, scopes: Vec<String>, lifetime: Option<Duration>) -> (String, Duration) {
        let lifetime = lifetime.unwrap_or(*self.token_lifetime.lock().expect("lifetime"));
        let token: String = std::iter::repeat_with(fastrand::alphanumeric).take(40).collect();
        let expires = self.clock.now() + jiff::SignedDuration::try_from(lifetime).expect("lifetime fits");
        self.tokens
            .lock()
            .expect("tokens")
            .insert(token.clone(), (expires, scopes));
        (token, lifetime)
    }

    /// Sets the lifetime of tokens issued from now on.
    pub fn set_token_lifetime(&self, lifetime: Duration) {
        *self.token_lifetime.lock().expect("lifetime") = lifetime;
    }

    /// Revokes every issued token (the next call with one gets 401).
    pub fn revoke_tokens(&self) {
        self.tokens.lock().expect("tokens").clear();
    }

    /// The tokens issued and still known (for leak assertions in tests).
    pub fn issued_tokens(&self) -> Vec<String> {
        self.tokens.lock().expect("tokens").keys().cloned().collect()
    }

    /// How many tokens were issued and are still known.
    pub fn tokens_issued(&self) -> usize {
        self.tokens.lock().expect("tokens").len()
    }

    /// The scopes of a valid bearer token, or a 401 response.
    pub fn authorize(&self, headers: &HeaderMap) -> Result<Vec<String>, Response> {
        self.authorize_token(headers).map(|grant| grant.scopes)
    }

    /// A valid bearer token's scopes and expiry, or a 401 response.
    pub fn authorize_token(&self, headers: &HeaderMap) -> Result<Grant, Response> {
        let token = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer ").or_else(|| v.strip_prefix("bearer ")))
            .unwrap_or("");
        let tokens = self.tokens.lock().expect("tokens");
        match tokens.get(token) {
            Some((expires, scopes)) if self.clock.now() < *expires => Ok(Grant {
                scopes: scopes.clone(),
                expires_at: *expires,
            }),
            Some(_) => Err(json_response(
                401,
                &json!({"error": "invalid_token", "message": "the access token expired"}),
            )),
            None => Err(json_response(
                401,
                &json!({"error": "invalid_token", "message": "unknown access token"}),
            )),
        }
    }

    /// Every request so far.
    pub fn requests(&self) -> Vec<SimRequest> {
        self.log.lock().expect("log").clone()
    }

    /// Forgets the request log.
    pub fn clear_requests(&self) {
        self.log.lock().expect("log").clear();
    }

    /// Adds a fault.
    pub fn inject(&self, fault: SimFault) {
        self.faults.lock().expect("faults").push(fault);
    }

    /// Removes every fault.
    pub fn clear_faults(&self) {
        self.faults.lock().expect("faults").clear();
    }

    /// Sends deliveries to this base URL (e.g. the sandbox receiver) instead of the endpoint's host.
    pub fn deliver_to(&self, base: Option<String>) {
        *self.deliver_to.lock().expect("deliver_to") = base;
    }

    /// The URL a delivery for `endpoint` actually goes to.
    pub fn delivery_url(&self, endpoint: &str) -> String {
        match self.deliver_to.lock().expect("deliver_to").as_deref() {
            None => endpoint.to_string(),
            Some(base) => {
                format!("{}{}", base.trim_end_matches('/'), super::url_path(endpoint))
            }
        }
    }

    /// POSTs (or PUTs) a delivery and reports the receiver's answer.
    pub async fn send_delivery(
        &self,
        method: reqwest::Method,
        endpoint: &str,
        headers: Vec<(String, String)>,
        body: Vec<u8>,
        content_type: &str,
    ) -> DeliveryOutcome {
        let mut request = self
            .http
            .request(method, self.delivery_url(endpoint))
            .header(header::CONTENT_TYPE.as_str(), content_type)
            .body(body);
        for (name, value) in headers {
            request = request.header(name, value);
        }
        DeliveryOutcome {
            status: request.send().await.ok().map(|r| r.status().as_u16()),
        }
    }

    fn matching_fault(&self, method: &Method, path: &str) -> Option<SimFaultAction> {
        let mut faults = self.faults.lock().expect("faults");
        let index = faults
            .iter()
            .position(|f| f.method.as_ref().is_none_or(|m| m == method) && path.contains(&f.path))?;
        let action = faults[index].action.clone();
        if let Some(remaining) = faults[index].remaining.as_mut() {
            *remaining = remaining.saturating_sub(1);
            if *remaining == 0 {
                faults.remove(index);
            }
        }
        Some(action)
    }
}

/// A request as the simulators' routers see it.
pub struct SimHttpRequest {
    /// Method.
    pub method: Method,
    /// Path segments after the leading slash.
    pub path: String,
    /// Parsed query.
    pub query: HashMap<String, String>,
    /// Headers.
    pub headers: HeaderMap,
    /// Body.
    pub body: Bytes,
}

impl SimHttpRequest {
    /// The body as JSON (Null when empty), or a 400.
    pub fn json(&self) -> Result<Value, Response> {
        if self.body.is_empty() {
            return Ok(Value::Null);
        }
        serde_json::from_slice(&self.body).map_err(|_| {
            json_response(
                400,
                &json!({"error": "invalid_request", "message": "the body is not valid JSON"}),
            )
        })
    }

    /// The body as a form.
    pub fn form(&self) -> HashMap<String, String> {
        form_urlencoded::parse(&self.body).into_owned().collect()
    }
}

/// A JSON response.
pub fn json_response(status: u16, body: &Value) -> Response {
    typed_response(status, "application/json", body)
}

/// A JSON response with a given content type.
pub fn typed_response(status: u16, content_type: &'static str, body: &Value) -> Response {
    let mut response = Response::new(Body::from(serde_json::to_vec(body).expect("JSON")));
    *response.status_mut() = StatusCode::from_u16(status).expect("status");
    response
        .headers_mut()
        .insert(header::CONTENT_TYPE, content_type.parse().expect("content type"));
    response
}

/// An empty response.
pub fn empty_response(status: u16) -> Response {
    let mut response = Response::new(Body::empty());
    *response.status_mut() = StatusCode::from_u16(status).expect("status");
    response
}

/// A simulator's routing function.
pub type Router = Arc<dyn Fn(SimHttpRequest) -> futures::future::BoxFuture<'static, Response> + Send + Sync>;

/// A [`Router`] around a synchronous routing function over shared simulator state.
pub fn sync_router<S: Send + Sync + 'static>(
    core: Arc<SimCore>,
    state: Arc<S>,
    route: fn(&SimCore, &S, SimHttpRequest) -> Response,
) -> Router {
    Arc::new(move |request| {
        let response = route(&core, &state, request);
        Box::pin(async move { response })
    })
}

/// Starts a simulator's server: `router` behind the shared request log and fault rules of `core`.
pub async fn start_simulator(listen: SocketAddr, core: Arc<SimCore>, router: Router) -> std::io::Result<LocalServer> {
    let app = axum::Router::new().fallback(move |request: Request<Body>| {
        let core = core.clone();
        let router = router.clone();
        async move { serve(core, router, request).await }
    });
    LocalServer::start(listen, app).await
}

async fn serve(core: Arc<SimCore>, router: Router, request: Request<Body>) -> Response {
    let (parts, body) = request.into_parts();
    let body = axum::body::to_bytes(body, 4 * 1024 * 1024).await.unwrap_or_default();
    let path = parts.uri.path().to_string();
    let raw_query = parts.uri.query().unwrap_or("").to_string();
    let mut record = SimRequest {
        method: parts.method.to_string(),
        path: path.clone(),
        query: raw_query.clone(),
        accept: parts
            .headers
            .get(header::ACCEPT)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_string(),
        body: String::from_utf8_lossy(&body).into_owned(),
        status: 0,
        at: std::time::Instant::now(),
    };
    let response = match core.matching_fault(&parts.method, &path) {
        Some(SimFaultAction::Status(status, retry_after)) => {
            let mut response = json_response(
                status,
                &json!({"error": "injected", "message": format!("injected HTTP {status}")}),
            );
            if let Some(seconds) = retry_after {
                response
                    .headers_mut()
                    .insert(header::RETRY_AFTER, seconds.to_string().parse().expect("header"));
            }
            response
        }
        Some(SimFaultAction::Drop) => broken_response(),
        Some(SimFaultAction::Raw(status, content_type, body)) => {
            let mut response = Response::new(Body::from(body));
            *response.status_mut() = StatusCode::from_u16(status).expect("status");
            response
                .headers_mut()
                .insert(header::CONTENT_TYPE, content_type.parse().expect("content type"));
            response
        }
        Some(SimFaultAction::LoseAnswer) => {
            let query = form_urlencoded::parse(raw_query.as_bytes()).into_owned().collect();
            let served = router(SimHttpRequest {
                method: parts.method.clone(),
                path: path.clone(),
                query,
                headers: parts.headers.clone(),
                body,
            })
            .await;
            let mut lost = broken_response();
            *lost.status_mut() = served.status();
            lost
        }
        other => {
            if let Some(SimFaultAction::Delay(delay)) = other {
                tokio::time::sleep(delay).await;
            }
            let query = form_urlencoded::parse(raw_query.as_bytes()).into_owned().collect();
            router(SimHttpRequest {
                method: parts.method.clone(),
                path,
                query,
                headers: parts.headers.clone(),
                body,
            })
            .await
        }
    };
    record.status = response.status().as_u16();
    crate::sandbox::push_bounded(&mut core.log.lock().expect("log"), record);
    response
}

/// A random id of `len` letters and digits.
pub fn random_id(len: usize) -> String {
    std::iter::repeat_with(fastrand::alphanumeric).take(len).collect()
}
