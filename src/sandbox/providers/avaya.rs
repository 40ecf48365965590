//! Avaya Infinity Events API simulator: OAuth2 client credentials (scope `EVENT_NOTIFICATION`),
//! subscriptions with UUID ids, pagination with `links`, ACTIVE → INACTIVE at expiry on a controllable
//! clock, `:renew` that reactivates and can rotate the token, problem+json errors with `violations` for
//! every documented limit, and deliveries that carry the token in the named header.
//!
//! As documented, and so stricter than a lenient server: an update's `transport` is the whole `Transport`
//! schema (type, method, endpoint, and the token with its header together) and replaces the stored one;
//! writes need a JSON content type, `:renew` without a body too; a subscription's lifetime is capped by
//! the remaining life of the token that created or renewed it. [`AvayaQuirks`] adds what the docs allow
//! but do not promise: PENDING for a while after create, masked token echoes, pages that shift.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::http::Method;
use axum::response::Response;
use jiff::Timestamp;
use serde_json::{Value, json};

use super::{DeliveryOutcome, SimCore, SimHttpRequest, empty_response, json_response, sync_router, typed_response};
use crate::clock::Clock;

/// The API path prefix.
pub const API_PREFIX: &str = "/api/events/v1";
/// The token path.
pub const TOKEN_PATH: &str = "/auth/realms/avaya/protocol/openid-connect/token";
const FAMILIES: [&str; 4] = ["AGENT", "INTERACTION", "QUEUE", "ALL"];

/// One stored subscription.
#[derive(Clone, Debug)]
pub struct AvayaSubscription {
    /// UUID.
    pub id: String,
    /// Creation time.
    pub created_at: Timestamp,
    /// Expiry.
    pub expires_at: Timestamp,
    /// Deactivated behind the operator's back (INACTIVE until renewed).
    pub deactivated: bool,
    /// `family`.
    pub family: Vec<String>,
    /// `events`.
    pub events: Vec<String>,
    /// `transport.method`.
    pub method: String,
    /// `transport.endpoint`.
    pub endpoint: String,
    /// `transport.authToken`.
    pub auth_token: Option<String>,
    /// `transport.authTokenHeader`.
    pub auth_token_header: String,
    /// How many times it was renewed.
    pub renewals: u32,
    /// How many times its lifetime ran out before a renewal came (it delivered nothing in between).
    pub lapses: u32,
}

/// Behaviours the documentation allows without promising them, off by default.
#[derive(Clone, Debug, Default)]
pub struct AvayaQuirks {
    /// How long a new subscription reports `PENDING` before `ACTIVE`.
    pub pending_for: Duration,
    /// Echo `authToken` masked (`****` and its last two characters) instead of in full.
    pub mask_tokens: bool,
    /// Each page after the first starts one entry early, as when a subscription is created between two
    /// page reads: one subscription shows on two pages.
    pub shifting_pages: bool,
}

#[derive(Debug)]
struct State {
    subscriptions: BTreeMap<String, AvayaSubscription>,
    lifetime: Duration,
    quirks: AvayaQuirks,
    /// Each renewal's arrival and how long its subscription still had (negative: it had lapsed), the
    /// most recent ones.
    renewal_margins: std::collections::VecDeque<(std::time::Instant, jiff::SignedDuration)>,
}

/// The simulator and its test handle.
#[derive(Debug)]
pub struct AvayaSimulator {
    /// Shared simulator machinery (clock, tokens, log, faults).
    pub core: Arc<SimCore>,
    state: Arc<Mutex<State>>,
    server: crate::sandbox::LocalServer,
}

struct Problem {
    status: u16,
    title: &'static str,
    kind: &'static str,
    violations: Vec<Value>,
}

impl Problem {
    fn new(status: u16, title: &'static str, kind: &'static str) -> Self {
        Problem {
            status,
            title,
            kind,
            violations: Vec::new(),
        }
    }

    fn violation(&mut self, field: &str, message: &str, code: u32) {
        self.violations
            .push(json!({"field": field, "message": message, "code": code}));
    }

    fn response(self, instance: &str) -> Response {
        let mut body = json!({
            "type": format!("https://developers.avayacloud.com/avaya-infinity/docs/error-handling#{}", self.kind),
            "title": self.title,
            "status": self.status,
            "detail": if self.violations.is_empty() { self.title.to_string() } else { format!("{} constraint violation(s)", self.violations.len()) },
            "instance": instance,
        });
        if !self.violations.is_empty() {
            body["violations"] = json!(self.violations);
        }
        typed_response(self.status, "application/problem+json", &body)
    }
}

fn validate_family(family: &Value, problem: &mut Problem) -> Option<Vec<String>> {
    let Some(items) = family.as_array() else {
        problem.violation("family", "must be an array of AGENT, INTERACTION, QUEUE or ALL", 20001);
        return None;
    };
    let values: Vec<String> = items.iter().filter_map(|v| v.as_str().map(str::to_string)).collect();
    if values.is_empty() || values.len() > 3 {
        problem.violation("family", "size must be between 1 and 3", 20002);
    }
    if values.iter().any(|f| !FAMILIES.contains(&f.as_str())) || values.len() != items.len() {
        problem.violation("family", "must be one of AGENT, INTERACTION, QUEUE, ALL", 20003);
    }
    if values.len() > 1 && values.iter().any(|f| f == "ALL") {
        problem.violation("family", "ALL must be the only value", 20004);
    }
    Some(values)
}

fn validate_events(events: &Value, problem: &mut Problem) -> Option<Vec<String>> {
    let Some(items) = events.as_array() else {
        problem.violation("events", "must be an array of event names", 20005);
        return None;
    };
    let values: Vec<String> = items.iter().filter_map(|v| v.as_str().map(str::to_string)).collect();
    if values.is_empty() || values.len() > 25 {
        problem.violation("events", "size must be between 1 and 25", 20006);
    }
    if values.len() != items.len() || values.iter().any(|e| e.is_empty() || e.len() > 256) {
        problem.violation("events", "each event must be 1 to 256 characters", 20007);
    }
    Some(values)
}

/// Checks transport fields that are present; `create` also requires the endpoint. An update's transport
/// is the whole `Transport` schema: type, method and endpoint, and the token with its header or neither.
fn validate_transport(t: &Value, create: bool, problem: &mut Problem) {
    if !t.is_object() {
        problem.violation("transport", "must be an object", 20010);
        return;
    }
    if !create {
        for required in ["type", "method", "endpoint"] {
            if t.get(required).is_none() {
                problem.violation(
                    &format!("transport.{required}"),
                    "is required: send the whole transport",
                    20018,
                );
            }
        }
        if t.get("authToken").is_some() != t.get("authTokenHeader").is_some() {
            problem.violation(
                "transport.authToken",
                "authToken and authTokenHeader must be sent together",
                20019,
            );
        }
    }
    if let Some(kind) = t.get("type")
        && kind != "WEBHOOK"
    {
        problem.violation("transport.type", "must be WEBHOOK", 20011);
    }
    if let Some(method) = t.get("method")
        && method != "POST"
        && method != "PUT"
    {
        problem.violation("transport.method", "must be POST or PUT", 20012);
    }
    match t.get("endpoint").and_then(Value::as_str) {
        Some(e) if e.len() > 2048 => problem.violation("transport.endpoint", "must be at most 2048 characters", 20013),
        Some(e) if !(e.starts_with("https://") || e.starts_with("http://")) => {
            problem.violation("transport.endpoint", "must be a valid URI", 20014)
        }
        None if create => problem.violation("transport.endpoint", "is required for WEBHOOK transport", 20015),
        _ => {}
    }
    let token = t.get("authToken").and_then(Value::as_str);
    if token.is_some_and(|v| v.is_empty() || v.len() > 256) {
        problem.violation("transport.authToken", "must be 1 to 256 characters", 20016);
    }
    if t.get("authTokenHeader")
        .and_then(Value::as_str)
        .is_some_and(|v| v.is_empty() || v.len() > 256)
    {
        problem.violation("transport.authTokenHeader", "must be 1 to 256 characters", 20017);
    }
}

impl State {
    fn status(&self, sub: &AvayaSubscription, now: Timestamp) -> &'static str {
        let pending_for = jiff::SignedDuration::try_from(self.quirks.pending_for).unwrap_or_default();
        if sub.deactivated || now >= sub.expires_at {
            "INACTIVE"
        } else if now < sub.created_at + pending_for {
            "PENDING"
        } else {
            "ACTIVE"
        }
    }

    /// The expiry of a subscription created or renewed `now` with a token that expires at `token_expiry`:
    /// the configured lifetime, but never past the token's own expiry.
    fn expiry(&self, now: Timestamp, token_expiry: Timestamp) -> Timestamp {
        let full = now + jiff::SignedDuration::try_from(self.lifetime).expect("lifetime");
        full.min(token_expiry)
    }

    fn render(&self, sub: &AvayaSubscription, now: Timestamp) -> Value {
        let expires_in = (sub.expires_at.as_second() - now.as_second()).max(0);
        let mut transport = json!({"type": "WEBHOOK", "method": sub.method, "endpoint": sub.endpoint, "authTokenHeader": sub.auth_token_header});
        if let Some(token) = &sub.auth_token {
            // The real API echoes the token in every response (a quirk masks it).
            transport["authToken"] = if self.quirks.mask_tokens {
                let tail: String = token
                    .chars()
                    .rev()
                    .take(2)
                    .collect::<Vec<_>>()
                    .into_iter()
                    .rev()
                    .collect();
                json!(format!("****{tail}"))
            } else {
                json!(token)
            };
        }
        json!({
            "subscriptionId": sub.id,
            "createdAt": sub.created_at.to_string(),
            "expiresAt": sub.expires_at.to_string(),
            "expiresIn": expires_in,
            "status": self.status(sub, now),
            "family": sub.family,
            "events": sub.events,
            "transport": transport,
        })
    }
}

impl AvayaSimulator {
    /// Starts on `listen` with these credentials; subscriptions live `lifetime`, tokens 900 s.
    pub async fn start(
        listen: SocketAddr,
        client_id: &str,
        client_secret: &str,
        lifetime: Duration,
    ) -> std::io::Result<Self> {
        let core = Arc::new(SimCore::new(client_id, client_secret, Duration::from_secs(900)));
        let state = Arc::new(Mutex::new(State {
            subscriptions: BTreeMap::new(),
            lifetime,
            quirks: AvayaQuirks::default(),
            renewal_margins: Default::default(),
        }));
        let server =
            super::start_simulator(listen, core.clone(), sync_router(core.clone(), state.clone(), route)).await?;
        Ok(AvayaSimulator { core, state, server })
    }

    /// `baseUrl` for a WebhookProvider.
    pub fn base_url(&self) -> String {
        format!("{}{API_PREFIX}", self.server.url())
    }

    /// `tokenUrl` for a WebhookProvider.
    pub fn token_url(&self) -> String {
        format!("{}{TOKEN_PATH}", self.server.url())
    }

    /// Each renewal since the last call: when it arrived and how long its subscription still had then
    /// (negative: it had lapsed).
    pub fn take_renewal_margins(&self) -> Vec<(std::time::Instant, jiff::SignedDuration)> {
        self.state.lock().expect("state").renewal_margins.drain(..).collect()
    }

    /// Turns on the behaviours the documentation allows without promising them.
    pub fn set_quirks(&self, quirks: AvayaQuirks) {
        self.state.lock().expect("state").quirks = quirks;
    }

    /// Sets the lifetime of subscriptions created or renewed from now on.
    pub fn set_lifetime(&self, lifetime: Duration) {
        self.state.lock().expect("state").lifetime = lifetime;
    }

    /// The ids it holds, readable from elsewhere (the sandbox's control surface) while it runs.
    pub fn ids(&self) -> impl Fn() -> Vec<String> + Send + Sync + 'static {
        let state = self.state.clone();
        move || {
            state
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .subscriptions
                .keys()
                .cloned()
                .collect()
        }
    }

    /// Every stored subscription.
    pub fn subscriptions(&self) -> Vec<AvayaSubscription> {
        self.state
            .lock()
            .expect("state")
            .subscriptions
            .values()
            .cloned()
            .collect()
    }

    /// One subscription.
    pub fn subscription(&self, id: &str) -> Option<AvayaSubscription> {
        self.state.lock().expect("state").subscriptions.get(id).cloned()
    }

    /// The state the API would report now (`ACTIVE` / `INACTIVE`).
    pub fn status_of(&self, id: &str) -> Option<&'static str> {
        let state = self.state.lock().expect("state");
        let now = self.core.clock.now();
        state.subscriptions.get(id).map(|s| state.status(s, now))
    }

    /// Deactivates a subscription behind the operator's back.
    pub fn deactivate(&self, id: &str) -> bool {
        let mut state = self.state.lock().expect("state");
        state.subscriptions.get_mut(id).map(|s| s.deactivated = true).is_some()
    }

    /// Deletes a subscription behind the operator's back.
    pub fn remove(&self, id: &str) -> bool {
        self.state.lock().expect("state").subscriptions.remove(id).is_some()
    }

    /// Stores a subscription directly (e.g. one made outside the operator, for adoption tests).
    pub fn insert(&self, family: &[&str], events: &[&str], endpoint: &str, auth_token: Option<&str>) -> String {
        let now = self.core.clock.now();
        let mut state = self.state.lock().expect("state");
        let id = uuid::Uuid::new_v4().to_string();
        let expires_at = now + jiff::SignedDuration::try_from(state.lifetime).expect("lifetime");
        state.subscriptions.insert(
            id.clone(),
            AvayaSubscription {
                id: id.clone(),
                created_at: now,
                expires_at,
                deactivated: false,
                family: family.iter().map(|s| s.to_string()).collect(),
                events: events.iter().map(|s| s.to_string()).collect(),
                method: "POST".into(),
                endpoint: endpoint.into(),
                auth_token: auth_token.map(str::to_string),
                auth_token_header: "auth-token".into(),
                renewals: 0,
                lapses: 0,
            },
        );
        id
    }

    /// Delivers a test event to the subscription's endpoint with its token in the named header.
    /// INACTIVE subscriptions deliver nothing (None).
    pub async fn deliver(&self, id: &str) -> Option<DeliveryOutcome> {
        let (sub, active) = {
            let state = self.state.lock().expect("state");
            let sub = state.subscriptions.get(id)?.clone();
            let active = state.status(&sub, self.core.clock.now()) == "ACTIVE";
            (sub, active)
        };
        if !active {
            return None;
        }
        let event = sub.events.first().cloned().unwrap_or_else(|| "Agent.LoggedIn".into());
        let body = serde_json::to_vec(&json!({
            "eventType": event,
            "family": sub.family.first(),
            "subscriptionId": sub.id,
            "timestamp": self.core.clock.now().to_string(),
            "data": {"agentId": "sandbox-agent"}
        }))
        .expect("JSON");
        let headers = sub
            .auth_token
            .iter()
            .map(|t| (sub.auth_token_header.clone(), t.clone()))
            .collect();
        let method = if sub.method == "PUT" {
            reqwest::Method::PUT
        } else {
            reqwest::Method::POST
        };
        Some(
            self.core
                .send_delivery(method, &sub.endpoint, headers, body, "application/json")
                .await,
        )
    }
}

fn route(core: &SimCore, state: &Mutex<State>, request: SimHttpRequest) -> Response {
    if request.path == TOKEN_PATH && request.method == Method::POST {
        return token(core, &request);
    }
    let Some(rest) = request.path.strip_prefix(API_PREFIX) else {
        return Problem::new(404, "Not Found", "resource-not-found").response(&request.path);
    };
    let grant = match core.authorize_token(&request.headers) {
        Ok(grant) => grant,
        Err(response) => return response,
    };
    if [Method::POST, Method::PATCH].contains(&request.method) && !super::is_json(&request.headers) {
        return Problem::new(415, "Unsupported Media Type", "constraint-violation").response(&request.path);
    }
    let now = core.clock.now();
    let mut state = state.lock().expect("state");
    let segments: Vec<&str> = rest.trim_matches('/').split('/').collect();
    match (request.method.clone(), segments.as_slice()) {
        (Method::POST, ["subscriptions"]) => create(&mut state, &request, now, grant.expires_at),
        (Method::GET, ["subscriptions"]) => list(&state, &request, now),
        (method, ["subscriptions", id]) => {
            if let Some(id) = id.strip_suffix(":renew") {
                if method != Method::POST {
                    return Problem::new(405, "Method Not Allowed", "constraint-violation").response(&request.path);
                }
                return renew(&mut state, id, &request, now, grant.expires_at);
            }
            if !state.subscriptions.contains_key(*id) {
                return Problem::new(404, "Subscription not found", "resource-not-found").response(&request.path);
            }
            match method {
                Method::GET => json_response(200, &state.render(&state.subscriptions[*id], now)),
                Method::PATCH => patch(&mut state, id, &request, now),
                Method::DELETE => {
                    state.subscriptions.remove(*id);
                    empty_response(204)
                }
                _ => Problem::new(405, "Method Not Allowed", "constraint-violation").response(&request.path),
            }
        }
        _ => Problem::new(404, "Not Found", "resource-not-found").response(&request.path),
    }
}

fn token(core: &SimCore, request: &SimHttpRequest) -> Response {
    let form = request.form();
    if form.get("grant_type").map(String::as_str) != Some("client_credentials") {
        return json_response(
            400,
            &json!({"error": "unsupported_grant_type", "error_description": "only client_credentials is supported"}),
        );
    }
    let id = form.get("client_id").map(String::as_str).unwrap_or("");
    let secret = form.get("client_secret").map(String::as_str).unwrap_or("");
    if !core.credentials_match(id, secret) {
        return json_response(
            401,
            &json!({"error": "invalid_client", "error_description": "Invalid client or Invalid client credentials"}),
        );
    }
    let scopes: Vec<String> = form
        .get("scope")
        .map(|s| s.split_whitespace().map(str::to_string).collect())
        .unwrap_or_default();
    if !scopes.iter().any(|s| s == "EVENT_NOTIFICATION") {
        return json_response(
            400,
            &json!({"error": "invalid_scope", "error_description": "scope EVENT_NOTIFICATION is required"}),
        );
    }
    let (token, lifetime) = core.issue_token(scopes, None);
    json_response(
        200,
        &json!({"access_token": token, "expires_in": lifetime.as_secs(), "token_type": "Bearer", "scope": "EVENT_NOTIFICATION"}),
    )
}

fn create(state: &mut State, request: &SimHttpRequest, now: Timestamp, token_expiry: Timestamp) -> Response {
    let body = match request.json() {
        Ok(b) => b,
        Err(r) => return r,
    };
    let mut problem = Problem::new(400, "Constraint Violation", "constraint-violation");
    let family = validate_family(&body["family"], &mut problem);
    let events = validate_events(&body["events"], &mut problem);
    validate_transport(&body["transport"], true, &mut problem);
    if !problem.violations.is_empty() {
        return problem.response(&request.path);
    }
    let t = &body["transport"];
    let id = uuid::Uuid::new_v4().to_string();
    let sub = AvayaSubscription {
        id: id.clone(),
        created_at: now,
        expires_at: state.expiry(now, token_expiry),
        deactivated: false,
        family: family.unwrap_or_default(),
        events: events.unwrap_or_default(),
        method: t["method"].as_str().unwrap_or("POST").into(),
        endpoint: t["endpoint"].as_str().unwrap_or_default().into(),
        auth_token: t["authToken"].as_str().map(str::to_string),
        auth_token_header: t["authTokenHeader"].as_str().unwrap_or("auth-token").into(),
        renewals: 0,
        lapses: 0,
    };
    let rendered = state.render(&sub, now);
    state.subscriptions.insert(id, sub);
    json_response(201, &rendered)
}

fn list(state: &State, request: &SimHttpRequest, now: Timestamp) -> Response {
    let number: i64 = request
        .query
        .get("pageNumber")
        .and_then(|v| v.parse().ok())
        .unwrap_or(1);
    let size: i64 = request.query.get("pageSize").and_then(|v| v.parse().ok()).unwrap_or(10);
    let mut problem = Problem::new(400, "Constraint Violation", "constraint-violation");
    if number < 1 {
        problem.violation("pageNumber", "must be at least 1", 20020);
    }
    if !(1..=25).contains(&size) {
        problem.violation("pageSize", "must be between 1 and 25", 20021);
    }
    if !problem.violations.is_empty() {
        return problem.response(&request.path);
    }
    let all: Vec<&AvayaSubscription> = state.subscriptions.values().collect();
    let total = all.len() as i64;
    let pages = ((total + size - 1) / size).max(1);
    let shift = i64::from(state.quirks.shifting_pages && number > 1);
    let start = ((number - 1) * size - shift).clamp(0, total) as usize;
    let end = (start + size as usize).min(all.len());
    let link = |n: i64| format!("{API_PREFIX}/subscriptions?pageNumber={n}&pageSize={size}");
    json_response(
        200,
        &json!({
            "pagination": {"pageNumber": number, "pageSize": size, "total": total, "totalPages": pages},
            "subscriptions": all[start..end].iter().map(|s| state.render(s, now)).collect::<Vec<_>>(),
            "links": {
                "prev": if number > 1 { link(number - 1) } else { String::new() },
                "next": if number < pages { link(number + 1) } else { String::new() },
            }
        }),
    )
}

fn patch(state: &mut State, id: &str, request: &SimHttpRequest, now: Timestamp) -> Response {
    let body = match request.json() {
        Ok(b) => b,
        Err(r) => return r,
    };
    let mut problem = Problem::new(400, "Constraint Violation", "constraint-violation");
    let family = body.get("family").and_then(|f| validate_family(f, &mut problem));
    let events = body.get("events").and_then(|e| validate_events(e, &mut problem));
    if let Some(t) = body.get("transport") {
        validate_transport(t, false, &mut problem);
    }
    if !problem.violations.is_empty() {
        return problem.response(&request.path);
    }
    let sub = state.subscriptions.get_mut(id).expect("checked");
    if let Some(f) = family {
        sub.family = f;
    }
    if let Some(e) = events {
        sub.events = e;
    }
    // A transport replaces the stored one: a token left out is gone.
    if let Some(t) = body.get("transport") {
        sub.method = t["method"].as_str().unwrap_or("POST").into();
        sub.endpoint = t["endpoint"].as_str().unwrap_or_default().into();
        sub.auth_token = t["authToken"].as_str().map(str::to_string);
        sub.auth_token_header = t["authTokenHeader"].as_str().unwrap_or("auth-token").into();
    }
    let sub = sub.clone();
    json_response(200, &state.render(&sub, now))
}

fn renew(state: &mut State, id: &str, request: &SimHttpRequest, now: Timestamp, token_expiry: Timestamp) -> Response {
    let body = match request.json() {
        Ok(b) => b,
        Err(r) => return r,
    };
    let token = body["transport"]["authToken"].as_str();
    if token.is_some_and(|t| t.len() > 256) {
        let mut problem = Problem::new(400, "Constraint Violation", "constraint-violation");
        problem.violation("transport.authToken", "must be at most 256 characters", 20030);
        return problem.response(&request.path);
    }
    let expires_at = state.expiry(now, token_expiry);
    let Some(sub) = state.subscriptions.get_mut(id) else {
        return Problem::new(404, "Subscription not found", "resource-not-found").response(&request.path);
    };
    // Renew works before and after expiry, and reactivates.
    if now >= sub.expires_at {
        sub.lapses += 1;
    }
    let margin = sub.expires_at.duration_since(now);
    if state.renewal_margins.len() >= crate::sandbox::REQUEST_LOG_LIMIT {
        state.renewal_margins.pop_front();
    }
    state.renewal_margins.push_back((std::time::Instant::now(), margin));
    let Some(sub) = state.subscriptions.get_mut(id) else {
        return Problem::new(404, "Subscription not found", "resource-not-found").response(&request.path);
    };
    sub.expires_at = expires_at;
    sub.deactivated = false;
    sub.renewals += 1;
    if let Some(token) = token {
        sub.auth_token = (!token.is_empty()).then(|| token.to_string());
    }
    let sub = sub.clone();
    json_response(200, &state.render(&sub, now))
}
