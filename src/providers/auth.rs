//! Access tokens per provider account: fetched on first use, cached, refreshed shortly before they
//! expire, and dropped once when the API answers 401. Token values live in `SecretString` only.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use base64::Engine as _;
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;
use tokio::time::Instant;

use super::error::{ErrorKind, ProviderError, Result};
use crate::clock::SharedClock;

/// How an account obtains a token.
#[derive(Clone)]
pub enum TokenRequest {
    /// OAuth 2.0 client credentials, form-encoded (Avaya, Vonage).
    ClientCredentials {
        /// The token URL.
        token_url: String,
        /// `client_id`.
        client_id: String,
        /// `client_secret`.
        client_secret: SecretString,
        /// Space-separated scopes.
        scope: String,
    },
    /// AuthVia's signed exchange: an HMAC-SHA256 over `value.length.timestamp` with the secret key, as JSON.
    AuthviaSigned {
        /// `https://api.authvia.com/v3/tokens` or an override.
        token_url: String,
        /// `client_id`.
        client_id: String,
        /// The secret key that signs the request; never sent.
        secret_key: SecretString,
        /// Space-separated scopes.
        scope: String,
        /// The requested lifetime (`expiration`, e.g. `1h`): AuthVia documents no default, so we ask.
        expiration: Duration,
    },
}

impl std::fmt::Debug for TokenRequest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let (kind, url, client) = match self {
            TokenRequest::ClientCredentials {
                token_url, client_id, ..
            } => ("client_credentials", token_url, client_id),
            TokenRequest::AuthviaSigned {
                token_url, client_id, ..
            } => ("authvia_signed", token_url, client_id),
        };
        f.debug_struct("TokenRequest")
            .field("kind", &kind)
            .field("token_url", url)
            .field("client_id", client)
            .finish_non_exhaustive()
    }
}

struct Cached {
    token: SecretString,
    /// When it is refreshed anyway (a margin before it expires).
    refresh_at: Instant,
    /// When it was issued and when it expires, for calls that need most of its life left.
    issued_at: Instant,
    expires_at: Instant,
}

impl Cached {
    /// Whether at least `share` of its lifetime is still ahead.
    fn has_life_left(&self, share: f64, now: Instant) -> bool {
        let lifetime = self.expires_at.saturating_duration_since(self.issued_at);
        self.expires_at.saturating_duration_since(now) >= lifetime.mul_f64(share.clamp(0.0, 1.0))
    }
}

/// Tokens kept per scope set at most: the scope sets come from what tenants subscribe to (AuthVia's
/// `{resource}:read`), so the cache is bounded; the entry nearest its expiry makes room.
const MAX_SCOPE_SETS: usize = 64;

/// What a call needs of its token.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct TokenNeeds {
    /// The scopes to ask for instead of the account's default (space-separated, as sent).
    pub scope: Option<String>,
    /// The share of its lifetime a token must still have (Avaya ties a subscription's expiry to the token
    /// that created or renewed it, so those calls take a token with most of its life ahead).
    pub life_left: Option<f64>,
}

/// The token cache of one provider account.
pub struct TokenCache {
    provider: &'static str,
    request: TokenRequest,
    http: reqwest::Client,
    clock: SharedClock,
    cached: tokio::sync::Mutex<std::collections::HashMap<String, Cached>>,
    fetches: AtomicU64,
}

impl std::fmt::Debug for TokenCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenCache")
            .field("provider", &self.provider)
            .field("request", &self.request)
            .field("fetches", &self.fetches.load(Ordering::Relaxed))
            .finish_non_exhaustive()
    }
}

#[derive(Deserialize)]
struct TokenResponse {
    #[serde(alias = "token")]
    access_token: Option<SecretString>,
    expires_in: Option<f64>,
}

#[derive(Deserialize)]
struct OAuthError {
    /// A string (OAuth) or an object with a `message` (AuthVia-style).
    error: Option<serde_json::Value>,
    error_description: Option<String>,
    message: Option<String>,
}

/// What a refused OAuth 2.0 token request means (RFC 6749 §5.2): the credentials (`invalid_client`, `invalid_grant`,
/// `unauthorized_client`, or a 401), the scopes (`invalid_scope`, or a 403), a request the operator cannot
/// fix by retrying (any other 4xx), or trouble at the provider.
fn token_refusal_kind(status: u16, code: Option<&str>) -> ErrorKind {
    match (status, code) {
        (429, _) => ErrorKind::RateLimited,
        (401, _) | (400..=499, Some("invalid_client" | "invalid_grant" | "unauthorized_client")) => {
            ErrorKind::Unauthorized
        }
        (403, _) | (400..=499, Some("invalid_scope")) => ErrorKind::Forbidden,
        (400..=499, _) => ErrorKind::Invalid,
        _ => ErrorKind::Transient,
    }
}

/// When to refresh a token of this lifetime: a fifth of it, at most 60 s, before it expires.
fn refresh_margin(lifetime: Duration) -> Duration {
    (lifetime / 5).min(Duration::from_secs(60))
}

/// `Base64(HMAC-SHA256(key, "{value}.{len(value)}.{timestamp}"))`: AuthVia's signature logic, shared by
/// its token exchange and its delivery signatures.
pub fn authvia_signature(key: &[u8], value: &str, timestamp: i64) -> String {
    let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, key);
    let message = format!("{value}.{}.{timestamp}", value.len());
    base64::engine::general_purpose::STANDARD.encode(ring::hmac::sign(&key, message.as_bytes()).as_ref())
}

impl TokenCache {
    /// A cache that fetches with `request` through `http`.
    pub fn new(provider: &'static str, request: TokenRequest, http: reqwest::Client, clock: SharedClock) -> Self {
        TokenCache {
            provider,
            request,
            http,
            clock,
            cached: tokio::sync::Mutex::new(Default::default()),
            fetches: AtomicU64::new(0),
        }
    }

    /// How many tokens were fetched so far.
    pub fn fetches(&self) -> u64 {
        self.fetches.load(Ordering::Relaxed)
    }

    /// A valid token with the account's default scopes.
    pub async fn token(&self) -> Result<SecretString> {
        self.token_for(&TokenNeeds::default()).await
    }

    /// A valid token for `needs`: the cached one for its scopes, or a fresh one when it is missing, near
    /// expiry, or has less of its life left than asked. Concurrent callers wait for one fetch.
    pub async fn token_for(&self, needs: &TokenNeeds) -> Result<SecretString> {
        let scope = needs.scope.clone().unwrap_or_else(|| self.default_scope().to_string());
        let mut cached = self.cached.lock().await;
        let now = Instant::now();
        if let Some(c) = cached.get(&scope)
            && now < c.refresh_at
            && needs.life_left.is_none_or(|share| c.has_life_left(share, now))
        {
            return Ok(c.token.clone());
        }
        let (token, lifetime) = self.fetch(&scope).await?;
        let now = Instant::now();
        if cached.len() >= MAX_SCOPE_SETS && !cached.contains_key(&scope) {
            let nearest = cached.iter().min_by_key(|(_, c)| c.expires_at).map(|(k, _)| k.clone());
            if let Some(nearest) = nearest {
                cached.remove(&nearest);
            }
        }
        cached.insert(
            scope,
            Cached {
                token: token.clone(),
                refresh_at: now + lifetime.saturating_sub(refresh_margin(lifetime)),
                issued_at: now,
                expires_at: now + lifetime,
            },
        );
        Ok(token)
    }

    /// Forgets `stale` (the API refused it), so the next `token_for` fetches a new one.
    pub async fn invalidate(&self, stale: &SecretString) {
        self.cached
            .lock()
            .await
            .retain(|_, c| c.token.expose_secret() != stale.expose_secret());
    }

    /// The scopes asked for when a call names none.
    fn default_scope(&self) -> &str {
        match &self.request {
            TokenRequest::ClientCredentials { scope, .. } | TokenRequest::AuthviaSigned { scope, .. } => scope,
        }
    }

    async fn fetch(&self, scope: &str) -> Result<(SecretString, Duration)> {
        self.fetches.fetch_add(1, Ordering::Relaxed);
        let error = |kind, message: String| ProviderError::new(kind, self.provider, "token", message);
        let (url, request, requested_lifetime) = match &self.request {
            TokenRequest::ClientCredentials {
                token_url,
                client_id,
                client_secret,
                scope: _,
            } => {
                let form = [
                    ("grant_type", "client_credentials"),
                    ("client_id", client_id.as_str()),
                    ("client_secret", client_secret.expose_secret()),
                    ("scope", scope),
                ];
                (token_url, self.http.post(token_url).form(&form), None)
            }
            TokenRequest::AuthviaSigned {
                token_url,
                client_id,
                secret_key,
                scope: _,
                expiration,
            } => {
                let timestamp = self.clock.now().as_second();
                let value: String = std::iter::repeat_with(fastrand::alphanumeric).take(64).collect();
                let signature = authvia_signature(secret_key.expose_secret().as_bytes(), &value, timestamp);
                let body = serde_json::json!({
                    "client_id": client_id,
                    "audience": "api.authvia.com/v3",
                    "timestamp": timestamp,
                    "signature_value": value,
                    "signature": signature,
                    "scope": scope,
                    "expiration": format!("{}m", expiration.as_secs().div_ceil(60).max(1)),
                });
                (token_url, self.http.post(token_url).json(&body), Some(*expiration))
            }
        };
        tracing::debug!(provider = self.provider, token_url = %url, "requesting an access token");
        let response = request.send().await.map_err(|e| {
            let shown = reqwest::Url::parse(url).map(|u| shown_url(&u)).unwrap_or_default();
            error(
                ErrorKind::Transient,
                format!("token endpoint {shown} unreachable: {}", transport_reason(&e)),
            )
        })?;
        let status = response.status().as_u16();
        let body = response.bytes().await.map_err(|e| {
            error(
                ErrorKind::Transient,
                format!("token response unreadable: {}", transport_reason(&e)),
            )
        })?;
        if !(200..300).contains(&status) {
            let refusal = serde_json::from_slice::<OAuthError>(&body).ok();
            let code = refusal
                .as_ref()
                .and_then(|e| e.error.as_ref())
                .and_then(|v| v.as_str().map(str::to_string));
            let detail = refusal
                .and_then(|e| {
                    let error = e.error.and_then(|v| match v {
                        serde_json::Value::String(s) => Some(s),
                        other => other.get("message").and_then(|m| m.as_str()).map(str::to_string),
                    });
                    let parts: Vec<String> = [error, e.error_description, e.message].into_iter().flatten().collect();
                    (!parts.is_empty()).then(|| parts.join(": "))
                })
                .unwrap_or_else(|| "no error description".into());
            let kind = match &self.request {
                TokenRequest::ClientCredentials { .. } => token_refusal_kind(status, code.as_deref()),
                // AuthVia's own exchange documents only 400 and 404: both mean the client id or the
                // signature (the secret key) was not accepted.
                TokenRequest::AuthviaSigned { .. } => match status {
                    400 | 401 | 404 => ErrorKind::Unauthorized,
                    other => token_refusal_kind(other, None),
                },
            };
            let mut e = error(kind, format!("token request refused with HTTP {status}: {detail}"));
            e.status = Some(status);
            return Err(e);
        }
        let parsed: TokenResponse = serde_json::from_slice(&body)
            .map_err(|_| error(ErrorKind::Transient, "token response is not the expected JSON".into()))?;
        let token = parsed
            .access_token
            .ok_or_else(|| error(ErrorKind::Transient, "token response has no access token".into()))?;
        let lifetime = parsed
            .expires_in
            .filter(|s| *s > 0.0)
            .map(Duration::from_secs_f64)
            .or(requested_lifetime)
            .unwrap_or(Duration::from_secs(300));
        Ok((token, lifetime))
    }
}

/// Where a request went, for messages: scheme, host, port and path, never userinfo or a query.
pub(crate) fn shown_url(url: &reqwest::Url) -> String {
    let mut shown = format!("{}://{}", url.scheme(), url.host_str().unwrap_or_default());
    if let Some(port) = url.port() {
        shown.push_str(&format!(":{port}"));
    }
    shown.push_str(url.path());
    shown
}

/// What a person can act on from a transport failure: a timeout, a DNS lookup that failed, a TLS
/// handshake that failed (with the TLS library's reason), a refused connection, or the innermost
/// cause. reqwest's own text wraps the cause in layers and may carry the URL's query; this names the
/// cause once. The causes are the HTTP and TLS stacks' messages, which carry no credentials.
pub(crate) fn transport_reason(e: &reqwest::Error) -> String {
    let mut causes: Vec<String> = Vec::new();
    let (mut tls, mut refused) = (false, false);
    let mut source = std::error::Error::source(e);
    while let Some(cause) = source {
        causes.push(cause.to_string());
        tls |= cause.is::<rustls::Error>();
        // The connector wraps the TLS library's error in io::Errors, which do not chain as sources.
        let mut io = cause.downcast_ref::<std::io::Error>();
        while let Some(e) = io {
            refused |= e.kind() == std::io::ErrorKind::ConnectionRefused;
            let inner = e.get_ref();
            tls |= inner.is_some_and(|inner| inner.is::<rustls::Error>());
            io = inner.and_then(|inner| inner.downcast_ref::<std::io::Error>());
        }
        source = cause.source();
    }
    let innermost = causes.last().cloned().unwrap_or_default();
    let all = causes.join(": ").to_lowercase();
    if e.is_timeout() {
        "timed out".into()
    } else if all.contains("dns error") || all.contains("failed to lookup address") {
        format!("DNS lookup failed ({innermost})")
    } else if tls || all.contains("certificate") {
        format!("TLS handshake failed ({innermost})")
    } else if refused || all.contains("connection refused") {
        "connection refused".into()
    } else if e.is_body() || e.is_decode() {
        format!("response body broken ({innermost})")
    } else if innermost.is_empty() {
        "request failed".into()
    } else {
        innermost
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn failure(url: &str, timeout: Duration) -> String {
        let client = crate::providers::http::http_client(timeout);
        let error = client.get(url).send().await.expect_err("the request fails");
        transport_reason(&error)
    }

    #[tokio::test]
    async fn transport_failures_name_their_cause() {
        // Refused: nothing listens on the port any more.
        let closed = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap();
        let refused = failure(&format!("http://{closed}/token"), Duration::from_secs(5)).await;
        assert_eq!(refused, "connection refused");
        // TLS: a plain-text server answers an https request.
        let plain = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let plain_addr = plain.local_addr().unwrap();
        tokio::spawn(async move {
            while let Ok((mut stream, _)) = plain.accept().await {
                let _ = tokio::io::AsyncWriteExt::write_all(&mut stream, b"HTTP/1.1 200 OK\r\n\r\n").await;
            }
        });
        let tls = failure(&format!("https://{plain_addr}/token"), Duration::from_secs(5)).await;
        assert!(tls.starts_with("TLS handshake failed ("), "{tls}");
        // Timeout: a server that accepts and never answers.
        let silent = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let silent_addr = silent.local_addr().unwrap();
        tokio::spawn(async move {
            let mut held = Vec::new();
            while let Ok((stream, _)) = silent.accept().await {
                held.push(stream);
            }
        });
        let slow = failure(&format!("http://{silent_addr}/token"), Duration::from_millis(200)).await;
        assert_eq!(slow, "timed out");
        // Messages show where the request went, never a query or credentials.
        let url = reqwest::Url::parse("https://user:pass@login.example.com:8443/oauth/token?secret=x").unwrap();
        assert_eq!(shown_url(&url), "https://login.example.com:8443/oauth/token");
    }

    #[test]
    fn authvia_signature_matches_the_documented_logic() {
        // Reference value computed independently (Python hmac) for "abc.3.1700000000" with key "key".
        assert_eq!(
            authvia_signature(b"key", "abc", 1_700_000_000),
            "Jfa33h5RmPUMhK12ozV0ZN8xoGRWSt3olvYAujDm/h4="
        );
    }

    #[test]
    fn token_refusals_are_told_apart() {
        assert_eq!(token_refusal_kind(400, Some("invalid_client")), ErrorKind::Unauthorized);
        assert_eq!(token_refusal_kind(400, Some("invalid_grant")), ErrorKind::Unauthorized);
        assert_eq!(token_refusal_kind(401, None), ErrorKind::Unauthorized);
        assert_eq!(token_refusal_kind(400, Some("invalid_scope")), ErrorKind::Forbidden);
        assert_eq!(token_refusal_kind(403, None), ErrorKind::Forbidden);
        assert_eq!(
            token_refusal_kind(400, Some("invalid_request")),
            ErrorKind::Invalid,
            "not the credentials"
        );
        assert_eq!(token_refusal_kind(400, None), ErrorKind::Invalid);
        assert_eq!(token_refusal_kind(429, None), ErrorKind::RateLimited);
        assert_eq!(token_refusal_kind(503, None), ErrorKind::Transient);
    }

    #[test]
    fn refresh_margin_is_bounded() {
        assert_eq!(refresh_margin(Duration::from_secs(900)), Duration::from_secs(60));
        assert_eq!(refresh_margin(Duration::from_secs(10)), Duration::from_secs(2));
    }

    #[test]
    fn debug_never_shows_the_secret() {
        let request = TokenRequest::ClientCredentials {
            token_url: "https://t".into(),
            client_id: "id".into(),
            client_secret: SecretString::from("s3cr3t-value"),
            scope: "x".into(),
        };
        assert!(!format!("{request:?}").contains("s3cr3t"));
    }
}
