//! A local webhook receiver that verifies every delivery the way a real consumer must: Avaya's token in
//! the configured header, Vonage's `Vonage-Signature` JWT (HS256 with the base64-decoded secret, checked
//! against the body's SHA-256 and its expiry), AuthVia's `X-AUTHVIA-*` HMAC headers.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU16, Ordering};
use std::sync::{Arc, Mutex};

use axum::body::Body;
use axum::http::{HeaderMap, Request, StatusCode};
use axum::response::Response;
use base64::Engine as _;
use jiff::Timestamp;
use secrecy::{ExposeSecret, SecretString};
use serde_json::Value;

use super::LocalServer;
use crate::providers::ProviderType;

/// What a delivery to a path must prove.
#[derive(Clone, Debug)]
pub enum Expectation {
    /// Avaya: this token in this header.
    AvayaToken {
        /// Header name.
        header: String,
        /// Expected token.
        token: SecretString,
    },
    /// Vonage: a JWT signed with this base64 secret.
    VonageSecret(SecretString),
    /// AuthVia: an HMAC with this secret.
    AuthviaSecret(SecretString),
}

impl Expectation {
    fn provider(&self) -> ProviderType {
        match self {
            Expectation::AvayaToken { .. } => ProviderType::Avaya,
            Expectation::VonageSecret(_) => ProviderType::Vonage,
            Expectation::AuthviaSecret(_) => ProviderType::Authvia,
        }
    }
}

/// One received delivery and the verdict.
#[derive(Clone, Debug)]
pub struct Delivery {
    /// Request path (identifies the subscription).
    pub path: String,
    /// Whose delivery it claimed to be, when the path was known.
    pub provider: Option<ProviderType>,
    /// Whether the token or signature checked out.
    pub verified: bool,
    /// Why not, or `ok`.
    pub reason: String,
    /// When it arrived.
    pub at: Timestamp,
}

/// Finds the expectation for a path (the sandbox reads it from the subscriptions and their Secrets).
pub type Resolver = Arc<dyn Fn(&str) -> Option<Expectation> + Send + Sync>;

/// What arrived at one path: the live view's columns, kept per path so that neither a long run nor
/// many subscriptions make it rescan every delivery.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PathTally {
    /// Deliveries received.
    pub deliveries: usize,
    /// Of which verified.
    pub verified: usize,
    /// The last one's verdict (`verified` or why not).
    pub last: String,
}

struct Inner {
    expectations: Mutex<HashMap<String, Expectation>>,
    resolver: Mutex<Option<Resolver>>,
    /// The most recent deliveries.
    deliveries: Mutex<Vec<Delivery>>,
    tallies: Mutex<HashMap<String, PathTally>>,
    status: AtomicU16,
}

/// The running receiver.
pub struct Receiver {
    server: LocalServer,
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Receiver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Receiver")
            .field("url", &self.server.url())
            .finish_non_exhaustive()
    }
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

fn header<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

/// Verifies a delivery against an expectation: Ok, or the reason it fails.
pub fn verify(expectation: &Expectation, headers: &HeaderMap, body: &[u8], now: Timestamp) -> Result<(), String> {
    match expectation {
        Expectation::AvayaToken { header: name, token } => {
            let got = header(headers, name).ok_or_else(|| format!("no {name} header"))?;
            if constant_time_eq(got.as_bytes(), token.expose_secret().as_bytes()) {
                Ok(())
            } else {
                Err(format!("{name} does not carry the current token"))
            }
        }
        Expectation::VonageSecret(secret) => {
            let raw = header(headers, "vonage-signature").ok_or("no Vonage-Signature header")?;
            let jwt = raw.strip_prefix("Bearer ").unwrap_or(raw);
            let parts: Vec<&str> = jwt.split('.').collect();
            let [head, claims, signature] = parts.as_slice() else {
                return Err("Vonage-Signature is not a JWT".into());
            };
            let key = base64::engine::general_purpose::STANDARD
                .decode(secret.expose_secret())
                .map_err(|_| "the expected secret is not Base64")?;
            let url = base64::engine::general_purpose::URL_SAFE_NO_PAD;
            let header_json: Value = serde_json::from_slice(&url.decode(head).map_err(|_| "bad JWT header")?)
                .map_err(|_| "bad JWT header")?;
            if header_json["alg"] != "HS256" {
                return Err("JWT is not HS256".into());
            }
            let signature = url.decode(signature).map_err(|_| "bad JWT signature encoding")?;
            let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, &key);
            ring::hmac::verify(&key, format!("{head}.{claims}").as_bytes(), &signature)
                .map_err(|_| "JWT signature does not match the current secret")?;
            let claims: Value = serde_json::from_slice(&url.decode(claims).map_err(|_| "bad JWT claims")?)
                .map_err(|_| "bad JWT claims")?;
            if claims["exp"].as_i64().is_none_or(|exp| exp < now.as_second()) {
                return Err("JWT expired".into());
            }
            let digest = ring::digest::digest(&ring::digest::SHA256, body);
            let hash: String = digest.as_ref().iter().map(|b| format!("{b:02x}")).collect();
            let claimed = claims["payload_hash"].as_str().unwrap_or("");
            if constant_time_eq(claimed.as_bytes(), hash.as_bytes()) {
                Ok(())
            } else {
                Err("payload_hash does not match the body".into())
            }
        }
        Expectation::AuthviaSecret(secret) => {
            let signature = header(headers, "x-authvia-signature").ok_or("no X-AUTHVIA-SIGNATURE header")?;
            let value = header(headers, "x-authvia-value").ok_or("no X-AUTHVIA-VALUE header")?;
            let timestamp: i64 = header(headers, "x-authvia-timestamp")
                .and_then(|t| t.parse().ok())
                .ok_or("no X-AUTHVIA-TIMESTAMP header")?;
            if header(headers, "x-authvia-algorithm") != Some("SHA-256") {
                return Err("X-AUTHVIA-ALGORITHM is not SHA-256".into());
            }
            let expected =
                crate::sandbox::providers::authvia::signature(secret.expose_secret().as_bytes(), value, timestamp);
            if constant_time_eq(expected.as_bytes(), signature.as_bytes()) {
                Ok(())
            } else {
                Err("X-AUTHVIA-SIGNATURE does not match the current secret".into())
            }
        }
    }
}

impl Receiver {
    /// Starts on `listen` (port 0: any free port).
    pub async fn start(listen: SocketAddr) -> std::io::Result<Receiver> {
        let inner = Arc::new(Inner {
            expectations: Mutex::new(HashMap::new()),
            resolver: Mutex::new(None),
            deliveries: Mutex::new(Vec::new()),
            tallies: Mutex::new(HashMap::new()),
            status: AtomicU16::new(200),
        });
        let app_inner = inner.clone();
        let app = axum::Router::new().fallback(move |request: Request<Body>| {
            let inner = app_inner.clone();
            async move { receive(inner, request).await }
        });
        let server = LocalServer::start(listen, app).await?;
        Ok(Receiver { server, inner })
    }

    /// `http://127.0.0.1:PORT`: where the simulators deliver.
    pub fn url(&self) -> String {
        self.server.url()
    }

    /// Deliveries to `path` must satisfy `expectation`.
    pub fn expect(&self, path: &str, expectation: Expectation) {
        self.inner
            .expectations
            .lock()
            .expect("expectations")
            .insert(path.to_string(), expectation);
    }

    /// Consults `resolver` for paths without an explicit expectation.
    pub fn set_resolver(&self, resolver: Resolver) {
        *self.inner.resolver.lock().expect("resolver") = Some(resolver);
    }

    /// The status it answers with (e.g. 500 to make deliveries fail).
    pub fn set_status(&self, status: u16) {
        self.inner.status.store(status, Ordering::SeqCst);
    }

    /// The most recent deliveries (up to [`crate::sandbox::REQUEST_LOG_LIMIT`]).
    pub fn deliveries(&self) -> Vec<Delivery> {
        self.inner.deliveries.lock().expect("deliveries").clone()
    }

    /// What arrived at each path since the start.
    pub fn tallies(&self) -> HashMap<String, PathTally> {
        self.inner.tallies.lock().expect("tallies").clone()
    }

    /// Stops serving.
    pub fn stop(&self) {
        self.server.stop();
    }
}

async fn receive(inner: Arc<Inner>, request: Request<Body>) -> Response {
    let (parts, body) = request.into_parts();
    let body = axum::body::to_bytes(body, 4 * 1024 * 1024).await.unwrap_or_default();
    let path = parts.uri.path().to_string();
    let expectation = inner
        .expectations
        .lock()
        .expect("expectations")
        .get(&path)
        .cloned()
        .or_else(|| {
            let resolver = inner.resolver.lock().expect("resolver").clone();
            resolver.and_then(|r| r(&path))
        });
    let now = Timestamp::now();
    let (provider, verdict) = match &expectation {
        None => (None, Err("no subscription delivers to this path".to_string())),
        Some(e) => (Some(e.provider()), verify(e, &parts.headers, &body, now)),
    };
    let delivery = Delivery {
        path,
        provider,
        verified: verdict.is_ok(),
        reason: verdict.err().unwrap_or_else(|| "ok".into()),
        at: now,
    };
    {
        let mut tallies = inner.tallies.lock().expect("tallies");
        let tally = tallies.entry(delivery.path.clone()).or_default();
        tally.deliveries += 1;
        tally.verified += usize::from(delivery.verified);
        tally.last = if delivery.verified {
            "verified".into()
        } else {
            delivery.reason.clone()
        };
    }
    crate::sandbox::push_bounded(&mut inner.deliveries.lock().expect("deliveries"), delivery);
    let mut response = Response::new(Body::empty());
    *response.status_mut() = StatusCode::from_u16(inner.status.load(Ordering::SeqCst)).unwrap_or(StatusCode::OK);
    response
}
