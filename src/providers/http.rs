//! The HTTP layer every provider client shares: a per-account rate limiter, bearer tokens from the
//! account's cache (refreshed once on a 401), `Retry-After` on 429, bounded exponential backoff with jitter
//! for 5xx and transport errors (only where a retry cannot duplicate a subscription), and one error
//! classification. Responses are treated as sensitive: they are never logged and errors quote only the
//! provider's error fields, with every known secret value redacted.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use reqwest::Method;
use reqwest::header::{HeaderMap, RETRY_AFTER};
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;
use serde_json::Value;

use super::auth::{TokenCache, shown_url, transport_reason};
use super::error::{ErrorKind, ProviderError, Result, Violation};
use crate::clock::SharedClock;

/// Retry settings.
#[derive(Clone, Copy, Debug)]
pub struct RetryPolicy {
    /// Attempts per call, the first included.
    pub max_attempts: u32,
    /// First backoff step.
    pub base_delay: Duration,
    /// Largest backoff step.
    pub max_delay: Duration,
    /// A longer `Retry-After` is handed to the controller instead of waited out in the call.
    pub max_retry_after: Duration,
    /// Per-request timeout.
    pub timeout: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            max_attempts: 4,
            base_delay: Duration::from_millis(200),
            max_delay: Duration::from_secs(5),
            max_retry_after: Duration::from_secs(30),
            timeout: Duration::from_secs(15),
        }
    }
}

impl RetryPolicy {
    /// Exponential backoff with full jitter: a random delay up to `base * 2^(attempt-1)`, capped.
    pub fn backoff(&self, attempt: u32) -> Duration {
        let ceiling = self
            .base_delay
            .saturating_mul(2u32.saturating_pow(attempt.saturating_sub(1)))
            .min(self.max_delay);
        ceiling.mul_f64(0.5 + fastrand::f64() / 2.0)
    }
}

pub use super::limiter::{RateLimiter, Urgency};

/// One request to a provider API.
pub struct Call {
    /// For errors and metrics (`create`, `list`, ...).
    pub operation: &'static str,
    /// HTTP method.
    pub method: Method,
    /// Absolute URL.
    pub url: String,
    /// JSON body.
    pub body: Option<Value>,
    /// Whether repeating it cannot create a second subscription (everything but create).
    pub idempotent: bool,
    /// Secret values in this request, redacted from any error text.
    pub secrets: Vec<SecretString>,
    /// Renewals are served first when the account is at its rate limit.
    pub urgency: Urgency,
    /// What the call needs of its token (scopes, life left).
    pub token: super::auth::TokenNeeds,
}

impl Call {
    /// A call without a body.
    pub fn new(operation: &'static str, method: Method, url: String) -> Self {
        let idempotent = method != Method::POST;
        Call {
            operation,
            method,
            url,
            body: None,
            idempotent,
            secrets: Vec::new(),
            urgency: Urgency::Routine,
            token: Default::default(),
        }
    }

    /// With a token for these scopes instead of the account's default.
    pub fn scope(mut self, scope: String) -> Self {
        self.token.scope = Some(scope);
        self
    }

    /// With a token that still has at least `share` of its lifetime ahead.
    pub fn token_life_left(mut self, share: f64) -> Self {
        self.token.life_left = Some(share);
        self
    }

    /// With a JSON body.
    pub fn json(mut self, body: Value) -> Self {
        self.body = Some(body);
        self
    }

    /// Marks the call safe to repeat (or not).
    pub fn idempotent(mut self, idempotent: bool) -> Self {
        self.idempotent = idempotent;
        self
    }

    /// Marks the call a renewal: served before routine calls of the account.
    pub fn renewal(mut self) -> Self {
        self.urgency = Urgency::Renewal;
        self
    }

    /// Values to keep out of error messages.
    pub fn secrets(mut self, secrets: impl IntoIterator<Item = SecretString>) -> Self {
        self.secrets.extend(secrets);
        self
    }
}

/// A successful response. Its Debug output shows only the status and the size: bodies may echo secrets.
pub struct Reply {
    /// HTTP status.
    pub status: u16,
    /// The raw body.
    pub body: Bytes,
}

impl std::fmt::Debug for Reply {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "Reply {{ status: {}, body: <{} bytes> }}",
            self.status,
            self.body.len()
        )
    }
}

impl Reply {
    /// Parses the body.
    pub fn parse<T: serde::de::DeserializeOwned>(&self, provider: &'static str, operation: &'static str) -> Result<T> {
        serde_json::from_slice(&self.body).map_err(|e| {
            // serde's message names the field and type, never the value.
            ProviderError::new(
                ErrorKind::Transient,
                provider,
                operation,
                format!(
                    "unexpected response shape: {}",
                    e.to_string().split(" at line").next().unwrap_or("")
                ),
            )
        })
    }
}

/// The pieces of an error body we quote: RFC 7807 (Avaya) and the common `message`/`error` forms.
#[derive(Deserialize, Default)]
#[serde(default)]
struct ErrorBody {
    title: Option<String>,
    detail: Option<String>,
    message: Option<String>,
    error: Option<Value>,
    violations: Vec<RawViolation>,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct RawViolation {
    field: String,
    message: String,
}

/// An account's connection to a provider API.
pub struct ApiClient {
    provider: &'static str,
    labels: crate::telemetry::ProviderLabels,
    http: reqwest::Client,
    tokens: Arc<TokenCache>,
    limiter: Arc<RateLimiter>,
    policy: RetryPolicy,
    headers: HeaderMap,
    clock: SharedClock,
}

impl std::fmt::Debug for ApiClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ApiClient")
            .field("provider", &self.provider)
            .field("tokens", &self.tokens)
            .finish_non_exhaustive()
    }
}

/// The reqwest client every provider uses (rustls with the ring provider, which kube also uses).
pub fn http_client(timeout: Duration) -> reqwest::Client {
    // Both kube and reqwest use rustls; with one provider installed process-wide the first TLS handshake
    // cannot panic over an ambiguous choice.
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::builder()
        .timeout(timeout)
        .connect_timeout(Duration::from_secs(5))
        .user_agent(concat!("webhook-operator/", env!("CARGO_PKG_VERSION")))
        .build()
        .expect("HTTP client builds")
}

impl ApiClient {
    /// A client for one account: its token cache (`request`), its rate limiter, and `headers` sent on
    /// every call.
    pub fn for_account(
        provider: &'static str,
        config: super::AccountConfig,
        request: super::auth::TokenRequest,
        headers: HeaderMap,
    ) -> Self {
        let tokens = TokenCache::new(provider, request, config.http.clone(), config.clock.clone());
        ApiClient {
            provider,
            labels: config.labels,
            http: config.http,
            tokens: Arc::new(tokens),
            limiter: config.limiter,
            policy: config.retry,
            headers,
            clock: config.clock,
        }
    }

    /// The provider name.
    pub fn provider(&self) -> &'static str {
        self.provider
    }

    /// The account's token cache.
    pub fn tokens(&self) -> &TokenCache {
        &self.tokens
    }

    /// The clock responses are timed by.
    pub fn clock(&self) -> &SharedClock {
        &self.clock
    }

    /// Obtains a token: whether the account's credentials work.
    pub async fn check_credentials(&self) -> Result<()> {
        self.tokens.token().await.map(|_| ())
    }

    /// A GET of `url`.
    pub async fn get(&self, operation: &'static str, url: String) -> Result<Reply> {
        self.send(Call::new(operation, Method::GET, url)).await
    }

    /// A DELETE of `url` (`NotFound` when it was already gone).
    pub async fn delete(&self, url: String) -> Result<()> {
        self.send(Call::new("delete", Method::DELETE, url)).await.map(|_| ())
    }

    /// Sends a call with rate limiting, authentication and the retry rules; classifies failures.
    pub async fn send(&self, call: Call) -> Result<Reply> {
        let mut attempt = 0;
        let mut refreshed = false;
        loop {
            attempt += 1;
            self.limiter.acquire(call.urgency).await;
            let token = self.tokens.token_for(&call.token).await?;
            let mut request = self
                .http
                .request(call.method.clone(), &call.url)
                .headers(self.headers.clone())
                .bearer_auth(token.expose_secret());
            match &call.body {
                Some(body) => request = request.json(body),
                // A write without a body still says JSON: Avaya's `:renew` may refuse it otherwise.
                None if [Method::POST, Method::PUT, Method::PATCH].contains(&call.method) => {
                    request = request.header(reqwest::header::CONTENT_TYPE, "application/json");
                }
                None => {}
            }
            tracing::debug!(
                provider = self.provider,
                operation = call.operation,
                attempt,
                "provider call"
            );
            let started = std::time::Instant::now();
            let response = match request.send().await {
                Ok(r) => {
                    let status = Some(r.status().as_u16());
                    crate::telemetry::provider_request(&self.labels, call.operation, status, started.elapsed());
                    r
                }
                Err(e) => {
                    crate::telemetry::provider_request(&self.labels, call.operation, None, started.elapsed());
                    // A connect failure never reached the provider, so even a create may be repeated.
                    let safe = call.idempotent || e.is_connect();
                    if safe && attempt < self.policy.max_attempts {
                        tokio::time::sleep(self.policy.backoff(attempt)).await;
                        continue;
                    }
                    let shown = reqwest::Url::parse(&call.url)
                        .map(|u| shown_url(&u))
                        .unwrap_or_default();
                    let reason = format!("{shown} unreachable: {}", transport_reason(&e));
                    return Err(self.error(&call, ErrorKind::Transient, None, reason));
                }
            };
            let status = response.status().as_u16();
            let retry_after = retry_after(response.headers(), &self.clock);
            let body = match response.bytes().await {
                Ok(b) => b,
                Err(e) => {
                    if call.idempotent && attempt < self.policy.max_attempts {
                        tokio::time::sleep(self.policy.backoff(attempt)).await;
                        continue;
                    }
                    return Err(self.error(&call, ErrorKind::Transient, Some(status), transport_reason(&e)));
                }
            };
            match status {
                200..=299 => return Ok(Reply { status, body }),
                401 if !refreshed => {
                    // The token may have been revoked or expired early: one fresh token, one more try.
                    self.tokens.invalidate(&token).await;
                    refreshed = true;
                    attempt -= 1;
                    continue;
                }
                429 => {
                    let wait = retry_after.unwrap_or_else(|| self.policy.backoff(attempt));
                    if attempt < self.policy.max_attempts && wait <= self.policy.max_retry_after {
                        tracing::debug!(
                            provider = self.provider,
                            wait_ms = wait.as_millis() as u64,
                            "rate limited; the account waits"
                        );
                        // The retry's acquire waits it out, with every other call of the account.
                        self.limiter.pause(wait);
                        continue;
                    }
                    let mut e = self.error_from_body(&call, status, &body);
                    e.retry_after = Some(wait);
                    return Err(e);
                }
                500..=599 if call.idempotent && attempt < self.policy.max_attempts => {
                    tokio::time::sleep(self.policy.backoff(attempt)).await;
                    continue;
                }
                _ => return Err(self.error_from_body(&call, status, &body)),
            }
        }
    }

    fn error(&self, call: &Call, kind: ErrorKind, status: Option<u16>, message: String) -> ProviderError {
        let mut e = ProviderError::new(kind, self.provider, call.operation, redact(&message, &call.secrets));
        e.status = status;
        e
    }

    fn error_from_body(&self, call: &Call, status: u16, body: &[u8]) -> ProviderError {
        let parsed: ErrorBody = serde_json::from_slice(body).unwrap_or_default();
        let mut parts: Vec<String> = Vec::new();
        for text in [parsed.title, parsed.detail, parsed.message].into_iter().flatten() {
            if !parts.contains(&text) {
                parts.push(text);
            }
        }
        if let Some(error) = parsed.error {
            match error {
                Value::String(s) => parts.push(s),
                other => {
                    if let Some(m) = other.get("message").and_then(Value::as_str) {
                        parts.push(m.to_string());
                    }
                }
            }
        }
        let violations: Vec<Violation> = parsed
            .violations
            .into_iter()
            .map(|v| Violation {
                field: v.field,
                message: redact(&v.message, &call.secrets),
            })
            .collect();
        for v in &violations {
            parts.push(format!("{}: {}", v.field, v.message));
        }
        let message = if parts.is_empty() {
            format!("HTTP {status}")
        } else {
            format!("HTTP {status}: {}", parts.join("; "))
        };
        let mut e = self.error(call, ErrorKind::from_status(status), Some(status), message);
        e.violations = violations;
        e
    }
}

/// A pagination link (`links.next`, `next`) as a URL to request with the bearer token: a path at the
/// API's own origin, or an absolute URL at that same origin. Anything else is refused: a link must never
/// carry the token to another host.
pub(crate) fn same_origin_link(base_url: &str, link: &str) -> std::result::Result<String, String> {
    let base = reqwest::Url::parse(base_url).map_err(|_| "the API base URL is not absolute".to_string())?;
    let next = base
        .join(link)
        .map_err(|_| "the next-page link is not a URL".to_string())?;
    if next.origin() != base.origin() {
        return Err(
            "the next-page link points at another host; the listing was stopped rather than send the token there"
                .into(),
        );
    }
    Ok(next.to_string())
}

/// `Retry-After` as seconds or an HTTP date.
fn retry_after(headers: &HeaderMap, clock: &SharedClock) -> Option<Duration> {
    let value = headers.get(RETRY_AFTER)?.to_str().ok()?.trim();
    if let Ok(seconds) = value.parse::<f64>() {
        // `inf`, `1e400` or a negative number is no wait the operator can honour.
        return Duration::try_from_secs_f64(seconds).ok();
    }
    let at = jiff::fmt::rfc2822::parse(value).ok()?.timestamp();
    let wait = at.duration_since(clock.now());
    Some(Duration::try_from(wait).unwrap_or(Duration::ZERO))
}

/// Replaces every occurrence of a secret value (at least 4 characters) with `[redacted]`.
pub fn redact(text: &str, secrets: &[SecretString]) -> String {
    let mut out = text.to_string();
    for secret in secrets {
        let value = secret.expose_secret();
        if value.len() >= 4 {
            out = out.replace(value, "[redacted]");
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_and_is_capped() {
        let policy = RetryPolicy::default();
        for _ in 0..100 {
            let first = policy.backoff(1);
            assert!(first >= Duration::from_millis(100) && first <= Duration::from_millis(200));
            assert!(policy.backoff(30) <= policy.max_delay);
        }
    }

    #[test]
    fn any_retry_after_is_read_without_panicking() {
        let clock: SharedClock = Arc::new(crate::clock::SystemClock);
        let mut g = crate::fuzz::Gen::new(21);
        let pieces = [
            "1",
            "0",
            ".",
            "e",
            "400",
            "-",
            "inf",
            "NaN",
            " ",
            "Mon, 01 Jan 2026 00:00:00 GMT",
            "9",
        ];
        for _ in 0..crate::fuzz::CASES {
            let text = g.text(&pieces, 6);
            let Ok(value) = text.parse::<reqwest::header::HeaderValue>() else {
                continue;
            };
            let mut headers = HeaderMap::new();
            headers.insert(RETRY_AFTER, value);
            let _ = retry_after(&headers, &clock);
        }
        for (text, wait) in [
            ("inf", None),
            ("1e400", None),
            ("-5", None),
            ("NaN", None),
            ("0.5", Some(Duration::from_millis(500))),
        ] {
            let mut headers = HeaderMap::new();
            headers.insert(RETRY_AFTER, text.parse().unwrap());
            assert_eq!(retry_after(&headers, &clock), wait, "{text}");
        }
    }

    #[test]
    fn retry_after_reads_seconds_and_dates() {
        let clock: SharedClock = Arc::new(crate::clock::SystemClock);
        let mut headers = HeaderMap::new();
        headers.insert(RETRY_AFTER, "2".parse().unwrap());
        assert_eq!(retry_after(&headers, &clock), Some(Duration::from_secs(2)));
        let later = clock.now() + jiff::SignedDuration::from_secs(30);
        let date = jiff::fmt::rfc2822::to_string(&later.to_zoned(jiff::tz::TimeZone::UTC)).unwrap();
        headers.insert(RETRY_AFTER, date.parse().unwrap());
        let wait = retry_after(&headers, &clock).unwrap();
        assert!(
            wait > Duration::from_secs(28) && wait <= Duration::from_secs(30),
            "{wait:?}"
        );
    }

    #[test]
    fn redaction_removes_secret_values() {
        let secrets = vec![SecretString::from("tok-123456")];
        assert_eq!(
            redact("bad token tok-123456 given", &secrets),
            "bad token [redacted] given"
        );
    }
}
