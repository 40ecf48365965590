//! AuthVia simulator: the signed token exchange at `/v3/tokens` (HMAC-SHA256 over
//! `value.length.timestamp`, timestamp within 5 s), subscriptions under `/v3/accounts/{avid}`, the
//! create-time verification call to the destination (the create fails unless it answers 200-399), the
//! attempts/auto-disable rules with the disable callback, stored conditions and headers, and deliveries
//! carrying the `X-AUTHVIA-*` HMAC headers.
//!
//! Scopes are checked as documented: a create needs `subscriptions:create` and `{resource}:read` for its
//! type's resource, and `subscriptions:timeout` to set a timeout; reads, updates and deletes need
//! `subscriptions:read`, `:update` and `:delete` (our reading). A token carries the scopes it asked for
//! that the client was granted ([`AuthviaSimulator::grant`]). Lists come in pages (`limit`, a `next`
//! link). By default a subscription echoes the provider's defaults for what was not set and masks header
//! values; a PATCH with `null` removes a field.
//!
//! Written from AuthVia's documentation (`shared/providers.md`), not from our client: the keys and the
//! signature are this module's own, so a client that spells a key or signs differently fails the contract
//! tests instead of agreeing with itself.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::http::Method;
use axum::response::Response;
use serde_json::{Map, Value, json};

use super::{DeliveryOutcome, Router, SimCore, SimHttpRequest, empty_response, json_response, random_id};
use crate::clock::Clock;

/// Subscription keys: `type`, `destination`, `attempts`, `conditions`, `headers`, `secret` and `id` as
/// documented; AuthVia does not name the others in its docs, these are the sandbox's reading of its prose.
mod key {
    pub const TYPE: &str = "type";
    pub const DESTINATION: &str = "destination";
    pub const DESCRIPTION: &str = "description";
    pub const TIMEOUT: &str = "timeout";
    pub const ATTEMPTS: &str = "attempts";
    pub const AUTO_DISABLE: &str = "autoDisable";
    pub const DISABLE_CALLBACK_URL: &str = "disableCallbackURL";
    pub const DISABLED: &str = "disabled";
    pub const CONDITIONS: &str = "conditions";
    pub const HEADERS: &str = "headers";
    pub const SECRET: &str = "secret";
    pub const ID: &str = "id";
}

/// AuthVia's documented signature: Base64 of HMAC-SHA256 with the secret over
/// `{value}.{length of value}.{timestamp}` (token requests and delivery headers alike).
pub fn signature(secret: &[u8], value: &str, timestamp: i64) -> String {
    use base64::Engine as _;
    let signed = [value, &value.len().to_string(), &timestamp.to_string()].join(".");
    let mac = ring::hmac::sign(
        &ring::hmac::Key::new(ring::hmac::HMAC_SHA256, secret),
        signed.as_bytes(),
    );
    base64::engine::general_purpose::STANDARD.encode(mac.as_ref())
}

/// The API prefix.
pub const API_PREFIX: &str = "/v3";

/// One stored subscription: its JSON as AuthVia would hold it, plus delivery bookkeeping.
#[derive(Clone, Debug)]
pub struct AuthviaSubscription {
    /// Id.
    pub id: String,
    /// The stored fields (the keys of `key`), the secret included.
    pub body: Map<String, Value>,
    /// Failed deliveries so far.
    pub failures: u32,
    /// Disable callbacks made.
    pub disable_callbacks: u32,
}

impl AuthviaSubscription {
    /// `disabled`.
    pub fn disabled(&self) -> bool {
        self.body.get(key::DISABLED).and_then(Value::as_bool).unwrap_or(false)
    }

    /// A string field.
    pub fn text(&self, key: &str) -> Option<&str> {
        self.body.get(key).and_then(Value::as_str)
    }
}

struct State {
    account_id: String,
    subscriptions: BTreeMap<String, AuthviaSubscription>,
    /// The scopes the client may have (None: any).
    granted: Option<Vec<String>>,
    quirks: AuthviaQuirks,
}

/// How the simulator echoes subscriptions (AuthVia documents no response shape).
#[derive(Clone, Debug)]
pub struct AuthviaQuirks {
    /// Echo `""`, `null` and the defaults for what a create left out.
    pub echo_defaults: bool,
    /// Echo header values masked.
    pub mask_headers: bool,
    /// Page size when a list names no `limit`.
    pub default_page_size: usize,
}

impl Default for AuthviaQuirks {
    fn default() -> Self {
        AuthviaQuirks {
            echo_defaults: true,
            mask_headers: true,
            default_page_size: 20,
        }
    }
}

/// The largest page a list answers.
const MAX_PAGE_SIZE: usize = 100;

/// The simulator and its test handle.
pub struct AuthviaSimulator {
    /// Shared machinery.
    pub core: Arc<SimCore>,
    state: Arc<Mutex<State>>,
    server: crate::sandbox::LocalServer,
}

impl std::fmt::Debug for AuthviaSimulator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuthviaSimulator")
            .field("url", &self.server.url())
            .finish_non_exhaustive()
    }
}

fn error(status: u16, message: &str) -> Response {
    json_response(status, &json!({"error": {"code": status, "message": message}}))
}

fn render(sub: &AuthviaSubscription, quirks: &AuthviaQuirks) -> Value {
    let mut body = sub.body.clone();
    body.remove(key::SECRET);
    body.insert(key::ID.into(), json!(sub.id));
    if quirks.echo_defaults {
        for (k, default) in [
            (key::DESCRIPTION, json!("")),
            (key::TIMEOUT, Value::Null),
            (key::AUTO_DISABLE, json!(true)),
            (key::DISABLE_CALLBACK_URL, Value::Null),
            (key::DISABLED, json!(false)),
            (key::CONDITIONS, json!({})),
            (key::HEADERS, json!({})),
        ] {
            body.entry(k).or_insert(default);
        }
    }
    if quirks.mask_headers
        && let Some(Value::Object(headers)) = body.get_mut(key::HEADERS)
    {
        for value in headers.values_mut() {
            *value = json!("********");
        }
    }
    Value::Object(body)
}

/// The scope a request lacks, if any: `needed` against the token's `scopes`.
fn missing_scope(needed: &[String], scopes: &[String]) -> Option<String> {
    needed.iter().find(|n| !scopes.contains(n)).cloned()
}

/// The scopes a create or update with `body` needs besides the operation's own.
fn body_scopes(body: &Map<String, Value>) -> Vec<String> {
    let mut needed = Vec::new();
    if let Some(kind) = body.get(key::TYPE).and_then(Value::as_str) {
        let resource = kind.split('.').next().unwrap_or(kind);
        needed.push(format!("{resource}:read"));
    }
    if body.get(key::TIMEOUT).is_some_and(|t| !t.is_null()) {
        needed.push("subscriptions:timeout".into());
    }
    needed
}

fn forbidden(scope: &str) -> Response {
    error(403, &format!("insufficient scope: {scope} is required"))
}

/// Validates the fields present in `body` (all of them on create), returning the message of the first problem.
fn validate(body: &Map<String, Value>, create: bool) -> Result<(), String> {
    let text = |k: &str| body.get(k).and_then(Value::as_str);
    if create && text(key::TYPE).is_none_or(str::is_empty) {
        return Err("type is required".into());
    }
    if create && body.get(key::DESTINATION).is_none() {
        return Err("destination is required".into());
    }
    if let Some(d) = body.get(key::DESTINATION)
        && d.as_str().is_none_or(|d| d.len() < 10)
    {
        return Err("destination must be a URL of at least 10 characters".into());
    }
    if let Some(d) = body.get(key::DESCRIPTION)
        && d.as_str().is_none_or(|d| d.len() > 256)
    {
        return Err("description must be at most 256 characters".into());
    }
    if let Some(t) = body.get(key::TIMEOUT)
        && t.as_i64().is_none_or(|t| !(5..=15).contains(&t))
    {
        return Err("timeout must be between 5 and 15".into());
    }
    let attempts = match body.get(key::ATTEMPTS) {
        None => 50,
        Some(a) => match a.as_i64() {
            Some(a) if (0..=50).contains(&a) => a,
            _ => return Err("attempts must be between 0 and 50".into()),
        },
    };
    if body.get(key::AUTO_DISABLE).is_some_and(|v| v == &json!(false)) && attempts > 3 {
        return Err("auto-disable may only be turned off when attempts is 3 or less".into());
    }
    if let Some(c) = body.get(key::DISABLE_CALLBACK_URL)
        && c.as_str().is_none_or(|c| c.len() < 10)
    {
        return Err("disableCallbackURL must be a URL of at least 10 characters".into());
    }
    if let Some(s) = body.get(key::SECRET)
        && s.as_str().is_none_or(|s| !(32..=64).contains(&s.len()))
    {
        return Err("secret must be 32 to 64 characters".into());
    }
    if let Some(conditions) = body.get(key::CONDITIONS) {
        let map = conditions.as_object().ok_or("conditions must be an object")?;
        for (key, value) in map {
            let scalar = |v: &Value| v.is_string() || v.is_number() || v.is_boolean();
            let ok = scalar(value) || value.as_array().is_some_and(|a| !a.is_empty() && a.iter().all(scalar));
            if !ok {
                return Err(format!(
                    "conditions.{key} must be a scalar or a non-empty list of scalars"
                ));
            }
        }
    }
    if let Some(headers) = body.get(key::HEADERS) {
        let map = headers.as_object().ok_or("headers must be an object")?;
        if map.values().any(|v| !v.is_string()) {
            return Err("headers values must be strings".into());
        }
    }
    if let Some(d) = body.get(key::DISABLED)
        && !d.is_boolean()
    {
        return Err("disabled must be a boolean".into());
    }
    Ok(())
}

/// The `X-AUTHVIA-*` headers for a delivery signed with `secret` at `timestamp`.
pub fn signature_headers(secret: &str, timestamp: i64) -> Vec<(String, String)> {
    let value = random_id(64);
    let signature = signature(secret.as_bytes(), &value, timestamp);
    vec![
        ("X-AUTHVIA-SIGNATURE".into(), signature),
        ("X-AUTHVIA-VALUE".into(), value),
        ("X-AUTHVIA-TIMESTAMP".into(), timestamp.to_string()),
        ("X-AUTHVIA-ALGORITHM".into(), "SHA-256".into()),
    ]
}

impl AuthviaSimulator {
    /// Starts on `listen` for account `account_id` with these credentials.
    pub async fn start(
        listen: SocketAddr,
        account_id: &str,
        client_id: &str,
        secret_key: &str,
    ) -> std::io::Result<Self> {
        let core = Arc::new(SimCore::new(client_id, secret_key, Duration::from_secs(3600)));
        let state = Arc::new(Mutex::new(State {
            account_id: account_id.to_string(),
            subscriptions: BTreeMap::new(),
            granted: None,
            quirks: AuthviaQuirks::default(),
        }));
        let router: Router = {
            let core = core.clone();
            let state = state.clone();
            Arc::new(move |request| {
                let core = core.clone();
                let state = state.clone();
                Box::pin(async move { route(core, state, request).await })
            })
        };
        let server = super::start_simulator(listen, core.clone(), router).await?;
        Ok(AuthviaSimulator { core, state, server })
    }

    /// `baseUrl` for a WebhookProvider.
    pub fn base_url(&self) -> String {
        format!("{}{API_PREFIX}", self.server.url())
    }

    /// Limits the scopes the client may have (None: any); tokens issued from now on carry only these.
    pub fn grant(&self, scopes: Option<&[&str]>) {
        self.state.lock().expect("state").granted = scopes.map(|s| s.iter().map(|s| s.to_string()).collect());
    }

    /// Sets how subscriptions are echoed and listed.
    pub fn set_quirks(&self, quirks: AuthviaQuirks) {
        self.state.lock().expect("state").quirks = quirks;
    }

    /// Disables a subscription the way auto-disable does after `attempts` failed deliveries, without
    /// the deliveries (and without the callback).
    pub fn auto_disable(&self, id: &str) -> bool {
        let mut state = self.state.lock().expect("state");
        let Some(sub) = state.subscriptions.get_mut(id) else {
            return false;
        };
        sub.failures = sub.body.get(key::ATTEMPTS).and_then(Value::as_i64).unwrap_or(50).max(1) as u32;
        sub.body.insert(key::DISABLED.into(), json!(true));
        true
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
    pub fn subscriptions(&self) -> Vec<AuthviaSubscription> {
        self.state
            .lock()
            .expect("state")
            .subscriptions
            .values()
            .cloned()
            .collect()
    }

    /// One subscription.
    pub fn subscription(&self, id: &str) -> Option<AuthviaSubscription> {
        self.state.lock().expect("state").subscriptions.get(id).cloned()
    }

    /// Deletes a subscription behind the operator's back.
    pub fn remove(&self, id: &str) -> bool {
        self.state.lock().expect("state").subscriptions.remove(id).is_some()
    }

    /// Stores a subscription directly (made outside the operator).
    pub fn insert(&self, event_type: &str, destination: &str) -> String {
        let id = random_id(24);
        let mut body = Map::new();
        body.insert(key::TYPE.into(), json!(event_type));
        body.insert(key::DESTINATION.into(), json!(destination));
        body.insert(key::ATTEMPTS.into(), json!(50));
        self.state.lock().expect("state").subscriptions.insert(
            id.clone(),
            AuthviaSubscription {
                id: id.clone(),
                body,
                failures: 0,
                disable_callbacks: 0,
            },
        );
        id
    }

    /// Delivers a test event with the `X-AUTHVIA-*` headers and the static headers. A failed delivery
    /// counts toward `attempts`; reaching it disables the subscription (unless auto-disable is off) and
    /// calls the disable callback. Disabled subscriptions deliver nothing.
    pub async fn deliver(&self, id: &str) -> Option<DeliveryOutcome> {
        let sub = self.subscription(id).filter(|s| !s.disabled())?;
        let outcome = send_event(&self.core, &sub, "business_processes.update").await;
        if !outcome.accepted() {
            let callback = {
                let mut state = self.state.lock().expect("state");
                let stored = state.subscriptions.get_mut(id)?;
                stored.failures += 1;
                let attempts = stored.body.get(key::ATTEMPTS).and_then(Value::as_i64).unwrap_or(50);
                let auto_disable = stored
                    .body
                    .get(key::AUTO_DISABLE)
                    .and_then(Value::as_bool)
                    .unwrap_or(true);
                if auto_disable && i64::from(stored.failures) >= attempts.max(1) {
                    stored.body.insert(key::DISABLED.into(), json!(true));
                    stored.disable_callbacks += 1;
                    stored.text(key::DISABLE_CALLBACK_URL).map(str::to_string)
                } else {
                    None
                }
            };
            if let Some(url) = callback {
                let separator = if url.contains('?') { '&' } else { '?' };
                let millis = self.core.clock.now().as_millisecond();
                let target = self
                    .core
                    .delivery_url(&format!("{url}{separator}id={id}&timestamp={millis}"));
                let _ = reqwest::Client::new().get(target).send().await;
            }
        }
        Some(outcome)
    }
}

async fn send_event(core: &SimCore, sub: &AuthviaSubscription, kind: &str) -> DeliveryOutcome {
    let destination = sub.text(key::DESTINATION).unwrap_or_default().to_string();
    let now = core.clock.now().as_second();
    let mut headers = match sub.text(key::SECRET) {
        Some(secret) => signature_headers(secret, now),
        // Without a per-subscription secret the account-level secret signs.
        None => signature_headers(core.client_secret(), now),
    };
    for (name, value) in sub
        .body
        .get(key::HEADERS)
        .and_then(Value::as_object)
        .into_iter()
        .flatten()
    {
        headers.push((name.clone(), value.as_str().unwrap_or_default().to_string()));
    }
    let body = serde_json::to_vec(&json!({
        "type": sub.text(key::TYPE).unwrap_or(kind),
        "subscriptionId": sub.id,
        "timestamp": now,
        "data": {"id": random_id(12), "status": "failed"}
    }))
    .expect("JSON");
    core.send_delivery(reqwest::Method::POST, &destination, headers, body, "application/json")
        .await
}

async fn route(core: Arc<SimCore>, state: Arc<Mutex<State>>, request: SimHttpRequest) -> Response {
    if request.path == format!("{API_PREFIX}/tokens") && request.method == Method::POST {
        let granted = state.lock().expect("state").granted.clone();
        return token(&core, &request, granted.as_deref());
    }
    let Some(rest) = request.path.strip_prefix(API_PREFIX) else {
        return error(404, "not found");
    };
    let scopes = match core.authorize(&request.headers) {
        Ok(scopes) => scopes,
        Err(r) => return r,
    };
    let operation_scope = match request.method {
        Method::GET => "subscriptions:read",
        Method::POST => "subscriptions:create",
        Method::PATCH => "subscriptions:update",
        Method::DELETE => "subscriptions:delete",
        _ => return error(405, "method not allowed"),
    };
    if let Some(missing) = missing_scope(&[operation_scope.to_string()], &scopes) {
        return forbidden(&missing);
    }
    let segments: Vec<String> = rest.trim_matches('/').split('/').map(str::to_string).collect();
    let account = state.lock().expect("state").account_id.clone();
    match segments.iter().map(String::as_str).collect::<Vec<_>>().as_slice() {
        ["accounts", avid, "subscriptions", ..] if *avid != account => error(404, "account not found"),
        ["accounts", _, "subscriptions"] => match request.method {
            Method::GET => list(&state.lock().expect("state"), &request),
            Method::POST => create(&core, &state, &request, &scopes).await,
            _ => error(405, "method not allowed"),
        },
        ["accounts", _, "subscriptions", id] => {
            let id = id.to_string();
            let mut guard = state.lock().expect("state");
            let quirks = guard.quirks.clone();
            let Some(sub) = guard.subscriptions.get_mut(&id) else {
                return error(404, &format!("subscription {id} not found"));
            };
            match request.method {
                Method::GET => json_response(200, &render(sub, &quirks)),
                Method::PATCH => {
                    let body = match request.json() {
                        Ok(Value::Object(b)) => b,
                        Ok(_) => return error(400, "the body must be an object"),
                        Err(r) => return r,
                    };
                    if let Some(missing) = missing_scope(&body_scopes(&body), &scopes) {
                        return forbidden(&missing);
                    }
                    // A merge patch: `null` removes a field.
                    let mut merged = sub.body.clone();
                    for (k, v) in &body {
                        if v.is_null() {
                            merged.remove(k);
                        } else {
                            merged.insert(k.clone(), v.clone());
                        }
                    }
                    if let Err(message) = validate(&merged, false) {
                        return error(400, &message);
                    }
                    sub.body = merged;
                    // Re-enabling clears the failure count.
                    if body.get(key::DISABLED) == Some(&json!(false)) {
                        sub.failures = 0;
                    }
                    json_response(200, &render(sub, &quirks))
                }
                Method::DELETE => {
                    guard.subscriptions.remove(&id);
                    empty_response(204)
                }
                _ => error(405, "method not allowed"),
            }
        }
        _ => error(404, "not found"),
    }
}

/// One page: `limit` entries (at most [`MAX_PAGE_SIZE`]) from the `cursor`, and a `next` link while
/// more follow.
fn list(state: &State, request: &SimHttpRequest) -> Response {
    let limit = match request.query.get("limit").map(|l| l.parse::<usize>()) {
        None => state.quirks.default_page_size,
        Some(Ok(l)) if (1..=MAX_PAGE_SIZE).contains(&l) => l,
        Some(_) => return error(400, &format!("limit must be between 1 and {MAX_PAGE_SIZE}")),
    };
    let from = match request.query.get("cursor").map(|c| c.parse::<usize>()) {
        None => 0,
        Some(Ok(c)) => c,
        Some(Err(_)) => return error(400, "cursor is not valid"),
    };
    let items: Vec<Value> = state
        .subscriptions
        .values()
        .skip(from)
        .take(limit)
        .map(|s| render(s, &state.quirks))
        .collect();
    let more = from.saturating_add(limit) < state.subscriptions.len();
    let next = more.then(|| {
        format!(
            "{API_PREFIX}/accounts/{}/subscriptions?limit={limit}&cursor={}",
            state.account_id,
            from + limit
        )
    });
    json_response(200, &json!({"items": items, "next": next}))
}

async fn create(core: &SimCore, state: &Mutex<State>, request: &SimHttpRequest, scopes: &[String]) -> Response {
    let mut body = match request.json() {
        Ok(Value::Object(b)) => b,
        Ok(_) => return error(400, "the body must be an object"),
        Err(r) => return r,
    };
    if let Err(message) = validate(&body, true) {
        return error(400, &message);
    }
    if let Some(missing) = missing_scope(&body_scopes(&body), scopes) {
        return forbidden(&missing);
    }
    body.entry(key::ATTEMPTS).or_insert(json!(50));
    let sub = AuthviaSubscription {
        id: random_id(24),
        body,
        failures: 0,
        disable_callbacks: 0,
    };
    // AuthVia sends a test payload to the destination and expects 200-399 before it accepts the subscription.
    let verification = send_event(core, &sub, "subscriptions.verification").await;
    if !verification.accepted() {
        let answer = verification
            .status
            .map(|s| format!("HTTP {s}"))
            .unwrap_or_else(|| "no answer".into());
        return error(400, &format!("destination verification failed: {answer}"));
    }
    let mut state = state.lock().expect("state");
    let rendered = render(&sub, &state.quirks);
    state.subscriptions.insert(sub.id.clone(), sub);
    json_response(201, &rendered)
}

fn token(core: &SimCore, request: &SimHttpRequest, granted: Option<&[String]>) -> Response {
    let body = match request.json() {
        Ok(b) => b,
        Err(r) => return r,
    };
    let text = |k: &str| body[k].as_str().unwrap_or("");
    let client_id = text("client_id");
    if !(12..=36).contains(&client_id.len()) || client_id != core.client_id() {
        return error(404, "client not found");
    }
    if text("audience") != "api.authvia.com/v3" {
        return error(400, "audience must be api.authvia.com/v3");
    }
    let timestamp = body["timestamp"].as_i64().unwrap_or(0);
    if (core.clock.now().as_second() - timestamp).abs() > 5 {
        return error(400, "timestamp must be within 5 seconds of the server time");
    }
    let value = text("signature_value");
    if !(16..=1024).contains(&value.len()) {
        return error(400, "signature_value must be 16 to 1024 characters");
    }
    if signature(core.client_secret().as_bytes(), value, timestamp) != text("signature") {
        return error(400, "signature does not match");
    }
    if text("scope").len() < 5 {
        return error(400, "scope is required");
    }
    let lifetime = parse_expiration(text("expiration"));
    // The token carries what was asked for and granted.
    let scopes = text("scope")
        .split_whitespace()
        .filter(|s| granted.is_none_or(|g| g.iter().any(|g| g == s)))
        .map(str::to_string)
        .collect();
    let (token, _) = core.issue_token(scopes, lifetime);
    json_response(201, &json!({"type": "Bearer", "token": token}))
}

/// `5m`, `1h`, `1d` (AuthVia's `expiration` override).
fn parse_expiration(text: &str) -> Option<Duration> {
    let (number, unit) = text.split_at(text.find(|c: char| !c.is_ascii_digit())?);
    let n: u64 = number.parse().ok()?;
    let unit_seconds: u64 = match unit {
        "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        _ => return None,
    };
    n.checked_mul(unit_seconds).map(Duration::from_secs)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signature_follows_the_documented_recipe() {
        // Computed independently (Python's hmac) for "d3f1a9.6.1767225600".
        assert_eq!(
            signature(b"0123456789abcdef0123456789abcdef", "d3f1a9", 1_767_225_600),
            "SpTjJ46TO9/CIzEHr871d+AdsxXp/nAEfZJHzWmMFD4="
        );
    }

    #[test]
    fn expirations_parse_without_overflow() {
        assert_eq!(parse_expiration("5m"), Some(Duration::from_secs(300)));
        assert_eq!(parse_expiration("1d"), Some(Duration::from_secs(86_400)));
        assert_eq!(parse_expiration("99999999999999999d"), None);
        assert_eq!(parse_expiration("5"), None);
    }
}
