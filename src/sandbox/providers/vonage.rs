//! Vonage Contact Center Webhooks API simulator: regional token endpoint (`admin:read` / `admin:write`),
//! the versioned `Accept` header required on every call, unique subscription names, a generated signing
//! secret returned only by create, `enabled`, PATCH of any subset, event types, and deliveries signed with
//! a `Vonage-Signature` JWT (HS256 over the base64-decoded secret, carrying the SHA-256 of the body).
//!
//! Answers as the "Responses — Webhooks API" page documents them: every success is 200 with a JSON body;
//! errors carry `{"message": …}` (a duplicate name is a 400); a bad token is 401 with
//! `{error, error_description}` and a token without the needed scope 401 `{"message":"Unauthorized"}`.
//! Changes "may take up to 30 s to take effect": [`VonageSimulator::set_propagation_delay`] makes reads
//! show a create or change only after a delay.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::http::{Method, header};
use axum::response::Response;
use base64::Engine as _;
use serde_json::{Value, json};

use super::{DeliveryOutcome, SimCore, SimHttpRequest, json_response, random_id, sync_router};
use crate::clock::Clock;

/// The versioned media type the Vonage webhooks API requires in `Accept` (its API guide).
const VERSIONED_MEDIA_TYPE: &str = "application/vnd.newvoicemedia.v1+json";

/// The API path prefix.
pub const API_PREFIX: &str = "/webhooks";
/// The token path.
pub const TOKEN_PATH: &str = "/Auth/connect/token";
/// Event types the simulated account offers.
pub const EVENT_TYPES: [&str; 6] = [
    "agent.presencechanged.v1",
    "channel.alerted.v1",
    "channel.connected.v1",
    "channel.disconnected.v1",
    "channel.held.v1",
    "channel.ended.v1",
];

/// One stored subscription.
#[derive(Clone, Debug)]
pub struct VonageSubscription {
    /// 27-character id.
    pub id: String,
    /// Unique name.
    pub name: String,
    /// Delivery URL.
    pub url: String,
    /// Event types.
    pub events: Vec<String>,
    /// Whether notifications are sent.
    pub enabled: bool,
    /// Base64 signing secret.
    pub secret: String,
}

/// A subscription as stored, and what reads show of it while a change has not taken effect yet.
#[derive(Clone, Debug)]
struct Stored {
    current: VonageSubscription,
    /// What reads show until `visible_at` (None: nothing, for a create).
    shown_before: Option<VonageSubscription>,
    visible_at: jiff::Timestamp,
}

#[derive(Debug, Default)]
struct State {
    subscriptions: BTreeMap<String, Stored>,
    propagation: Duration,
}

impl State {
    /// What a read shows of `id` at `now`.
    fn shown(&self, id: &str, now: jiff::Timestamp) -> Option<&VonageSubscription> {
        let stored = self.subscriptions.get(id)?;
        if now >= stored.visible_at {
            Some(&stored.current)
        } else {
            stored.shown_before.as_ref()
        }
    }

    /// When a change made `now` shows.
    fn visible_at(&self, now: jiff::Timestamp) -> jiff::Timestamp {
        now + jiff::SignedDuration::try_from(self.propagation).unwrap_or_default()
    }
}

/// The simulator and its test handle.
#[derive(Debug)]
pub struct VonageSimulator {
    /// Shared machinery.
    pub core: Arc<SimCore>,
    state: Arc<Mutex<State>>,
    server: crate::sandbox::LocalServer,
}

fn error(status: u16, message: &str) -> Response {
    json_response(status, &json!({"message": message}))
}

fn render(sub: &VonageSubscription, with_secret: bool) -> Value {
    let mut v = json!({"subscriptionId": sub.id, "name": sub.name, "url": sub.url, "events": sub.events, "enabled": sub.enabled});
    if with_secret {
        v["secret"] = json!(sub.secret);
    }
    v
}

/// The `Vonage-Signature` JWT for `body`: HS256 with the base64-decoded secret, `payload_hash` = hex
/// SHA-256 of the body, valid five minutes from `now` (epoch seconds).
pub fn signature_jwt(secret_b64: &str, body: &[u8], now: i64) -> Option<String> {
    let key = base64::engine::general_purpose::STANDARD.decode(secret_b64).ok()?;
    let url = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let digest = ring::digest::digest(&ring::digest::SHA256, body);
    let hash: String = digest.as_ref().iter().map(|b| format!("{b:02x}")).collect();
    let header = url.encode(br#"{"alg":"HS256","typ":"JWT"}"#);
    let claims = url.encode(serde_json::to_vec(&json!({"iat": now, "exp": now + 300, "payload_hash": hash})).ok()?);
    let signing_input = format!("{header}.{claims}");
    let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, &key);
    let signature = url.encode(ring::hmac::sign(&key, signing_input.as_bytes()).as_ref());
    Some(format!("{signing_input}.{signature}"))
}

/// Checks a secret the way the portal does: Base64 of at least 32 bytes.
fn valid_secret(secret: &str) -> bool {
    base64::engine::general_purpose::STANDARD
        .decode(secret)
        .is_ok_and(|bytes| bytes.len() >= 32)
}

/// A random 32-byte secret, Base64.
pub fn generate_secret() -> String {
    let bytes: Vec<u8> = std::iter::repeat_with(|| fastrand::u8(..)).take(32).collect();
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

fn validate(body: &Value, create: bool) -> Result<(), String> {
    let present = |k: &str| body.get(k).is_some_and(|v| !v.is_null());
    if create {
        for required in ["name", "url", "events"] {
            if !present(required) {
                return Err(format!("\"{required}\" is required"));
            }
        }
    }
    if present("name") {
        let name = body["name"].as_str().ok_or("\"name\" must be a string")?;
        if !(3..=128).contains(&name.chars().count()) {
            return Err("\"name\" length must be between 3 and 128 characters".into());
        }
    }
    if present("url") {
        let url = body["url"].as_str().ok_or("\"url\" must be a string")?;
        if !url.starts_with("https://") || url.len() <= "https://".len() {
            return Err("\"url\" must be a fully qualified https URL".into());
        }
    }
    if present("events") {
        let events = body["events"].as_array().ok_or("\"events\" must be an array")?;
        if events.is_empty() {
            return Err("\"events\" must contain at least 1 item".into());
        }
        for e in events {
            let name = e.as_str().ok_or("\"events\" must contain strings")?;
            let known = EVENT_TYPES.contains(&name)
                || name
                    .strip_suffix('*')
                    .is_some_and(|prefix| EVENT_TYPES.iter().any(|t| t.starts_with(prefix)));
            if !known {
                return Err(format!("\"events\" contains an unknown event type: {name}"));
            }
        }
    }
    if present("enabled") && !body["enabled"].is_boolean() {
        return Err("\"enabled\" must be a boolean".into());
    }
    if present("secret") && !body["secret"].as_str().is_some_and(valid_secret) {
        return Err("\"secret\" must be a Base64-encoded value of at least 32 bytes".into());
    }
    Ok(())
}

impl VonageSimulator {
    /// Starts on `listen` with these credentials (tokens last 2 h).
    pub async fn start(listen: SocketAddr, client_id: &str, client_secret: &str) -> std::io::Result<Self> {
        let core = Arc::new(SimCore::new(client_id, client_secret, Duration::from_secs(7200)));
        let state = Arc::new(Mutex::new(State::default()));
        let server =
            super::start_simulator(listen, core.clone(), sync_router(core.clone(), state.clone(), route)).await?;
        Ok(VonageSimulator { core, state, server })
    }

    /// `baseUrl` for a WebhookProvider.
    pub fn base_url(&self) -> String {
        format!("{}{API_PREFIX}", self.server.url())
    }

    /// `tokenUrl` for a WebhookProvider.
    pub fn token_url(&self) -> String {
        format!("{}{TOKEN_PATH}", self.server.url())
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

    /// Makes creates and changes show in reads only after `delay` (the docs: up to 30 s).
    pub fn set_propagation_delay(&self, delay: Duration) {
        self.state.lock().expect("state").propagation = delay;
    }

    /// Every stored subscription (as stored, whether reads show it yet or not).
    pub fn subscriptions(&self) -> Vec<VonageSubscription> {
        let state = self.state.lock().expect("state");
        state.subscriptions.values().map(|s| s.current.clone()).collect()
    }

    /// One subscription, as stored.
    pub fn subscription(&self, id: &str) -> Option<VonageSubscription> {
        self.state
            .lock()
            .expect("state")
            .subscriptions
            .get(id)
            .map(|s| s.current.clone())
    }

    /// Deletes a subscription behind the operator's back.
    pub fn remove(&self, id: &str) -> bool {
        self.state.lock().expect("state").subscriptions.remove(id).is_some()
    }

    /// Disables a subscription behind the operator's back.
    pub fn disable(&self, id: &str) -> bool {
        self.state
            .lock()
            .expect("state")
            .subscriptions
            .get_mut(id)
            .map(|s| {
                s.current.enabled = false;
                s.shown_before = None;
            })
            .is_some()
    }

    /// Stores a subscription directly (made outside the operator), visible at once.
    pub fn insert(&self, name: &str, url: &str, events: &[&str]) -> String {
        let id = random_id(27);
        let now = self.core.clock.now();
        self.state.lock().expect("state").subscriptions.insert(
            id.clone(),
            Stored {
                current: VonageSubscription {
                    id: id.clone(),
                    name: name.into(),
                    url: url.into(),
                    events: events.iter().map(|s| s.to_string()).collect(),
                    enabled: true,
                    secret: generate_secret(),
                },
                shown_before: None,
                visible_at: now,
            },
        );
        id
    }

    /// Delivers a CloudEvents test event signed with a `Vonage-Signature` JWT; disabled ones deliver nothing.
    pub async fn deliver(&self, id: &str) -> Option<DeliveryOutcome> {
        let sub = self.subscription(id).filter(|s| s.enabled)?;
        let now = self.core.clock.now();
        let event_type = sub.events.first().cloned().unwrap_or_else(|| EVENT_TYPES[0].into());
        let body = serde_json::to_vec(&json!({
            "specversion": "1.0",
            "type": event_type.trim_end_matches('*'),
            "id": uuid::Uuid::new_v4().to_string(),
            "source": "/agent",
            "subject": sub.id,
            "time": now.to_string(),
            "datacontenttype": "application/json",
            "data": {"timestamp": now.to_string(), "user": {"agentId": "sandbox-agent", "userId": "sandbox-user"}}
        }))
        .expect("JSON");
        let jwt = signature_jwt(&sub.secret, &body, now.as_second())?;
        Some(
            self.core
                .send_delivery(
                    reqwest::Method::POST,
                    &sub.url,
                    vec![("Vonage-Signature".into(), format!("Bearer {jwt}"))],
                    body,
                    "application/cloudevents+json",
                )
                .await,
        )
    }
}

fn route(core: &SimCore, state: &Mutex<State>, request: SimHttpRequest) -> Response {
    if request.path == TOKEN_PATH && request.method == Method::POST {
        return token(core, &request);
    }
    let Some(rest) = request.path.strip_prefix(API_PREFIX) else {
        return error(404, "Not Found");
    };
    let scopes = match core.authorize(&request.headers) {
        Ok(s) => s,
        Err(_) => {
            return json_response(
                401,
                &json!({"error": "invalid_token", "error_description": "The access token is invalid or has expired"}),
            );
        }
    };
    let accept = request
        .headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    if !accept.split(',').any(|a| a.trim() == VERSIONED_MEDIA_TYPE) {
        return error(400, "Version missing from Accept header!");
    }
    let needed = if request.method == Method::GET {
        "admin:read"
    } else {
        "admin:write"
    };
    // Documented: a token without the scope an endpoint needs gets 401, not 403.
    if !scopes.iter().any(|s| s == needed) {
        return error(401, "Unauthorized");
    }
    let now = core.clock.now();
    let mut state = state.lock().expect("state");
    let segments: Vec<&str> = rest.trim_matches('/').split('/').collect();
    match (request.method.clone(), segments.as_slice()) {
        (Method::GET, ["event-types"]) => json_response(
            200,
            &json!({"eventTypes": EVENT_TYPES.iter().map(|t| json!({"name": t, "description": format!("{t} notification"), "jsonSchema": {}})).collect::<Vec<_>>()}),
        ),
        (Method::GET, ["subscriptions"]) => {
            let shown: Vec<Value> = state
                .subscriptions
                .keys()
                .filter_map(|id| state.shown(id, now))
                .map(|s| render(s, false))
                .collect();
            json_response(200, &json!({"subscriptions": shown}))
        }
        (Method::POST, ["subscriptions"]) => {
            let body = match request.json() {
                Ok(b) => b,
                Err(r) => return r,
            };
            if let Err(message) = validate(&body, true) {
                return error(400, &message);
            }
            let name = body["name"].as_str().unwrap_or_default();
            // Names are unique whether reads show the holder yet or not.
            if state.subscriptions.values().any(|s| s.current.name == name) {
                return error(400, &format!("A subscription with the name '{name}' already exists"));
            }
            let sub = VonageSubscription {
                id: random_id(27),
                name: name.into(),
                url: body["url"].as_str().unwrap_or_default().into(),
                events: body["events"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(|e| e.as_str().map(str::to_string))
                    .collect(),
                enabled: body["enabled"].as_bool().unwrap_or(true),
                secret: body["secret"]
                    .as_str()
                    .map(str::to_string)
                    .unwrap_or_else(generate_secret),
            };
            // The secret comes back only here, once.
            let rendered = render(&sub, true);
            let visible_at = state.visible_at(now);
            state.subscriptions.insert(
                sub.id.clone(),
                Stored {
                    current: sub,
                    shown_before: None,
                    visible_at,
                },
            );
            json_response(200, &rendered)
        }
        (method, ["subscriptions", id]) => {
            let id = id.to_string();
            if !state.subscriptions.contains_key(&id) {
                return error(404, &format!("Subscription {id} not found"));
            }
            match method {
                Method::GET => match state.shown(&id, now) {
                    Some(sub) => json_response(200, &render(sub, false)),
                    None => error(404, &format!("Subscription {id} not found")),
                },
                Method::PATCH => {
                    let body = match request.json() {
                        Ok(b) => b,
                        Err(r) => return r,
                    };
                    if let Err(message) = validate(&body, false) {
                        return error(400, &message);
                    }
                    if let Some(name) = body["name"].as_str()
                        && state
                            .subscriptions
                            .values()
                            .any(|s| s.current.name == name && s.current.id != id)
                    {
                        return error(400, &format!("A subscription with the name '{name}' already exists"));
                    }
                    let shown_before = state.shown(&id, now).cloned();
                    let visible_at = state.visible_at(now);
                    let stored = state.subscriptions.get_mut(&id).expect("checked");
                    let sub = &mut stored.current;
                    if let Some(v) = body["name"].as_str() {
                        sub.name = v.into();
                    }
                    if let Some(v) = body["url"].as_str() {
                        sub.url = v.into();
                    }
                    if let Some(v) = body["events"].as_array() {
                        sub.events = v.iter().filter_map(|e| e.as_str().map(str::to_string)).collect();
                    }
                    if let Some(v) = body["enabled"].as_bool() {
                        sub.enabled = v;
                    }
                    if let Some(v) = body["secret"].as_str() {
                        sub.secret = v.into();
                    }
                    let rendered = render(sub, false);
                    stored.shown_before = shown_before;
                    stored.visible_at = visible_at;
                    json_response(200, &rendered)
                }
                Method::DELETE => {
                    let gone = state.subscriptions.remove(&id).expect("checked");
                    json_response(200, &render(&gone.current, false))
                }
                _ => error(405, "Method Not Allowed"),
            }
        }
        _ => error(404, "Not Found"),
    }
}

fn token(core: &SimCore, request: &SimHttpRequest) -> Response {
    let form = request.form();
    if form.get("grant_type").map(String::as_str) != Some("client_credentials") {
        return json_response(400, &json!({"error": "unsupported_grant_type"}));
    }
    let id = form.get("client_id").map(String::as_str).unwrap_or("");
    let secret = form.get("client_secret").map(String::as_str).unwrap_or("");
    if !core.credentials_match(id, secret) {
        return json_response(400, &json!({"error": "invalid_client"}));
    }
    let scopes: Vec<String> = form
        .get("scope")
        .map(|s| s.split_whitespace().map(str::to_string).collect())
        .unwrap_or_default();
    if scopes.is_empty() || scopes.iter().any(|s| s != "admin:read" && s != "admin:write") {
        return json_response(400, &json!({"error": "invalid_scope"}));
    }
    let (token, lifetime) = core.issue_token(scopes, None);
    json_response(
        200,
        &json!({"access_token": token, "expires_in": lifetime.as_secs(), "token_type": "Bearer"}),
    )
}
