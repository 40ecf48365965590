//! Remote webhook APIs behind one small trait: [`WebhookApi`]. Each provider module maps the
//! provider-neutral [`Desired`] subscription to its wire format and its responses back to [`Remote`];
//! `http` (rate limit, retries, classification) and `auth` (token caches) are shared.
//!
//! Secret values (tokens, signing secrets, secret headers) appear only in `SecretString`s; what is
//! compared or reported is their [`fingerprint`].

pub mod auth;
pub mod authvia;
pub mod avaya;
pub mod error;
pub mod http;
pub mod limiter;
pub mod vonage;

use std::collections::{BTreeMap, BTreeSet};

use futures::future::BoxFuture;
use jiff::Timestamp;
use secrecy::{ExposeSecret, SecretString};
use serde_json::{Map, Value, json};

pub use error::{ErrorKind, ProviderError, Result, Violation};

/// The three supported APIs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ProviderType {
    /// Avaya Infinity Events API.
    Avaya,
    /// Vonage Contact Center (NewVoiceMedia) webhooks.
    Vonage,
    /// AuthVia subscriptions.
    Authvia,
}

impl ProviderType {
    /// Every supported API.
    pub const ALL: [ProviderType; 3] = [ProviderType::Avaya, ProviderType::Vonage, ProviderType::Authvia];

    /// The name used in specs, logs and metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            ProviderType::Avaya => "avaya",
            ProviderType::Vonage => "vonage",
            ProviderType::Authvia => "authvia",
        }
    }
}

/// A remote field the operator manages (the unit of drift detection and of partial updates).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Field {
    /// Delivery URL (Avaya `transport.endpoint`, Vonage `url`, AuthVia `destination`).
    Endpoint,
    /// Avaya `family`.
    Families,
    /// Avaya and Vonage `events`.
    Events,
    /// Avaya `transport.method`.
    Method,
    /// Avaya `transport.authTokenHeader`.
    AuthTokenHeader,
    /// Avaya `transport.authToken` (echoed by Avaya, compared by fingerprint).
    AuthToken,
    /// Vonage `name`.
    Name,
    /// Vonage `enabled`.
    Enabled,
    /// Vonage and AuthVia signing `secret` (never read back).
    Secret,
    /// AuthVia `type`.
    EventType,
    /// AuthVia description.
    Description,
    /// AuthVia timeout.
    Timeout,
    /// AuthVia `attempts`.
    Attempts,
    /// AuthVia auto-disable switch.
    AutoDisable,
    /// AuthVia disable callback URL.
    DisableCallbackUrl,
    /// AuthVia `disabled`.
    Disabled,
    /// AuthVia `conditions`.
    Conditions,
    /// AuthVia static `headers` (values compared by fingerprint).
    Headers,
}

/// A short, one-way fingerprint of a secret value (`sha256:` and 16 hex digits): enough to notice a
/// change, useless for recovering the value.
pub fn fingerprint(secret: &SecretString) -> String {
    fingerprint_bytes(secret.expose_secret().as_bytes())
}

/// [`fingerprint`] of raw bytes.
pub fn fingerprint_bytes(bytes: &[u8]) -> String {
    let digest = ring::digest::digest(&ring::digest::SHA256, bytes);
    let hex: String = digest.as_ref()[..8].iter().map(|b| format!("{b:02x}")).collect();
    format!("sha256:{hex}")
}

/// What the operator wants on the provider, with secrets resolved from Kubernetes Secrets.
#[derive(Clone, Debug)]
pub struct Desired {
    /// Delivery URL.
    pub endpoint: String,
    /// The provider-specific part.
    pub spec: DesiredSpec,
}

/// The provider-specific part of [`Desired`].
#[derive(Clone, Debug)]
pub enum DesiredSpec {
    /// Avaya Infinity.
    Avaya(AvayaDesired),
    /// Vonage Contact Center.
    Vonage(VonageDesired),
    /// AuthVia.
    Authvia(AuthviaDesired),
}

/// Avaya subscription settings.
#[derive(Clone, Debug)]
pub struct AvayaDesired {
    /// `family`.
    pub families: Vec<String>,
    /// `events`.
    pub events: Vec<String>,
    /// Delivery method, `POST` or `PUT`.
    pub method: String,
    /// The token Avaya sends with each delivery.
    pub auth_token: Option<SecretString>,
    /// The header that carries it.
    pub auth_token_header: String,
}

/// Vonage subscription settings.
#[derive(Clone, Debug)]
pub struct VonageDesired {
    /// Unique name (also the adoption key).
    pub name: String,
    /// Event types.
    pub events: Vec<String>,
    /// Whether notifications are sent.
    pub enabled: bool,
    /// Base64 signing secret; None lets Vonage generate one (returned once, at create).
    pub secret: Option<SecretString>,
}

/// AuthVia subscription settings.
#[derive(Clone, Debug)]
pub struct AuthviaDesired {
    /// Event type, e.g. `business_processes.update`.
    pub event_type: String,
    /// Purpose.
    pub description: Option<String>,
    /// Delivery timeout in seconds (5-15).
    pub timeout_seconds: Option<i64>,
    /// Attempts before auto-disable (0-50).
    pub attempts: i64,
    /// Whether AuthVia disables the subscription after `attempts` failures.
    pub auto_disable: bool,
    /// Called when AuthVia disables it.
    pub disable_callback_url: Option<String>,
    /// Administratively disabled.
    pub disabled: bool,
    /// Equality filters on event attributes.
    pub conditions: Map<String, Value>,
    /// Static delivery headers, name and value (values may come from Secrets).
    pub headers: Vec<(String, SecretString)>,
    /// HMAC signing secret (32-64 characters).
    pub secret: Option<SecretString>,
}

fn sorted(values: &[String]) -> Value {
    let mut v = values.to_vec();
    v.sort();
    v.dedup();
    json!(v)
}

/// Header names in comparable form: lowercased and sorted. Values are secrets a provider may mask or
/// truncate when it echoes them, so they are never compared: a changed value is known from
/// `appliedSecretHash` (the fingerprint of what was last sent), not from the echo.
pub(crate) fn header_names<'a>(names: impl IntoIterator<Item = &'a str>) -> Value {
    let names: BTreeSet<String> = names.into_iter().map(str::to_ascii_lowercase).collect();
    json!(names)
}

impl Desired {
    /// The fields a provider reports back, in the form [`Remote::fields`] uses, for drift detection. Only
    /// what the spec sets is compared: an optional field left unset takes the provider's default, which
    /// the provider may echo in its own way (`""`, `null`, a number), and is never drift.
    pub fn comparable(&self) -> BTreeMap<Field, Value> {
        let mut fields = BTreeMap::from([(Field::Endpoint, json!(self.endpoint))]);
        match &self.spec {
            DesiredSpec::Avaya(a) => {
                fields.insert(Field::Families, sorted(&a.families));
                fields.insert(Field::Events, sorted(&a.events));
                fields.insert(Field::Method, json!(a.method));
                // Whether a token is set, not which: the echo may be masked (a rotation is known from
                // `appliedSecretHash`), but a token removed from the spec must be cleared remotely.
                fields.insert(Field::AuthToken, json!(a.auth_token.is_some()));
                if a.auth_token.is_some() {
                    fields.insert(Field::AuthTokenHeader, json!(a.auth_token_header.to_ascii_lowercase()));
                }
            }
            DesiredSpec::Vonage(v) => {
                fields.insert(Field::Name, json!(v.name));
                fields.insert(Field::Events, sorted(&v.events));
                fields.insert(Field::Enabled, json!(v.enabled));
            }
            DesiredSpec::Authvia(a) => {
                fields.insert(Field::EventType, json!(a.event_type));
                if let Some(description) = &a.description {
                    fields.insert(Field::Description, json!(description));
                }
                if let Some(timeout) = a.timeout_seconds {
                    fields.insert(Field::Timeout, json!(timeout));
                }
                fields.insert(Field::Attempts, json!(a.attempts));
                fields.insert(Field::AutoDisable, json!(a.auto_disable));
                if let Some(callback) = &a.disable_callback_url {
                    fields.insert(Field::DisableCallbackUrl, json!(callback));
                }
                fields.insert(Field::Disabled, json!(a.disabled));
                // Always compared: conditions or headers removed from the spec must go remotely too.
                fields.insert(Field::Conditions, Value::Object(a.conditions.clone()));
                fields.insert(Field::Headers, header_names(a.headers.iter().map(|(n, _)| n.as_str())));
            }
        }
        fields
    }

    /// Whether the spec wants the provider to deliver (not administratively disabled).
    pub fn wants_delivery(&self) -> bool {
        match &self.spec {
            DesiredSpec::Avaya(_) => true,
            DesiredSpec::Vonage(v) => v.enabled,
            DesiredSpec::Authvia(a) => !a.disabled,
        }
    }

    /// Every secret value in this subscription (for redaction).
    pub fn secrets(&self) -> Vec<SecretString> {
        match &self.spec {
            DesiredSpec::Avaya(a) => a.auth_token.iter().cloned().collect(),
            DesiredSpec::Vonage(v) => v.secret.iter().cloned().collect(),
            DesiredSpec::Authvia(a) => a
                .secret
                .iter()
                .cloned()
                .chain(a.headers.iter().map(|(_, v)| v.clone()))
                .collect(),
        }
    }

    /// A fingerprint of all secret material, stored in status as `appliedSecretHash` to notice rotations.
    pub fn secret_hash(&self) -> Option<String> {
        let secrets = self.secrets();
        if secrets.is_empty() {
            return None;
        }
        let joined: Vec<u8> = secrets
            .iter()
            .flat_map(|s| {
                let mut bytes = s.expose_secret().as_bytes().to_vec();
                bytes.push(0);
                bytes
            })
            .collect();
        Some(fingerprint_bytes(&joined))
    }
}

/// What a provider says of a subscription, as far as the operator acts on it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RemoteState {
    /// Avaya `ACTIVE`: delivering.
    Active,
    /// Avaya `INACTIVE`: expired or stopped; renew reactivates it.
    Inactive,
    /// Avaya `PENDING`: not delivering yet.
    Pending,
    /// Vonage or AuthVia: delivering.
    Enabled,
    /// Vonage `enabled: false` or AuthVia `disabled` (by the user, or AuthVia's auto-disable).
    Disabled,
    /// A state the operator does not know, kept as the provider wrote it.
    Unknown(String),
}

impl RemoteState {
    /// From Avaya's `status`.
    pub fn from_avaya(status: Option<&str>) -> Self {
        match status {
            Some("ACTIVE") => RemoteState::Active,
            Some("INACTIVE") => RemoteState::Inactive,
            Some("PENDING") => RemoteState::Pending,
            Some(other) => RemoteState::Unknown(other.to_string()),
            None => RemoteState::Unknown("UNKNOWN".into()),
        }
    }

    /// From an enabled switch (Vonage `enabled`, AuthVia `!disabled`).
    pub fn from_enabled(enabled: bool) -> Self {
        if enabled {
            RemoteState::Enabled
        } else {
            RemoteState::Disabled
        }
    }

    /// From what [`RemoteState::as_str`] wrote (e.g. `status.remoteState`).
    pub fn parse(text: &str) -> Self {
        match text {
            "ACTIVE" => RemoteState::Active,
            "INACTIVE" => RemoteState::Inactive,
            "PENDING" => RemoteState::Pending,
            "Enabled" => RemoteState::Enabled,
            "Disabled" => RemoteState::Disabled,
            other => RemoteState::Unknown(other.to_string()),
        }
    }

    /// As the provider writes it (and `status.remoteState` shows it).
    pub fn as_str(&self) -> &str {
        match self {
            RemoteState::Active => "ACTIVE",
            RemoteState::Inactive => "INACTIVE",
            RemoteState::Pending => "PENDING",
            RemoteState::Enabled => "Enabled",
            RemoteState::Disabled => "Disabled",
            RemoteState::Unknown(s) => s,
        }
    }
}

impl PartialEq<&str> for RemoteState {
    fn eq(&self, other: &&str) -> bool {
        self.as_str() == *other
    }
}

impl std::fmt::Display for RemoteState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A subscription as the provider reports it. Secret values are not kept (only fingerprints), except a
/// signing secret the provider generated, which the caller must store at once.
#[derive(Clone, Debug)]
pub struct Remote {
    /// The provider's id.
    pub id: String,
    /// The provider's state.
    pub state: RemoteState,
    /// When it expires (providers with expiry), from the response's own `expiresIn`.
    pub expires_at: Option<Timestamp>,
    /// The managed fields as reported, in [`Desired::comparable`] form.
    pub fields: BTreeMap<Field, Value>,
    /// A secret the provider generated and returned once (Vonage create without a secret).
    pub generated_secret: Option<SecretString>,
}

impl Remote {
    /// Whether the provider says the subscription is not delivering.
    pub fn is_inactive(&self) -> bool {
        match self.state {
            RemoteState::Inactive | RemoteState::Disabled => true,
            RemoteState::Active | RemoteState::Pending | RemoteState::Enabled | RemoteState::Unknown(_) => false,
        }
    }
}

/// The fields whose reported value differs from the desired one (fields the provider does not report,
/// such as write-only secrets, never count as drift).
pub fn drift(desired: &Desired, remote: &Remote) -> BTreeSet<Field> {
    desired
        .comparable()
        .into_iter()
        .filter(|(field, value)| remote.fields.get(field).is_some_and(|r| r != value))
        .map(|(field, _)| field)
        .collect()
}

/// The operations the controller needs from a provider account.
pub trait WebhookApi: Send + Sync + std::fmt::Debug {
    /// Which API this is.
    fn provider(&self) -> ProviderType;

    /// Obtains a token: whether the credentials work (the provider's `Ready`).
    fn check_credentials(&self) -> BoxFuture<'_, Result<()>>;

    /// Creates a subscription. Not idempotent: the caller guards against leaks.
    fn create<'a>(&'a self, desired: &'a Desired) -> BoxFuture<'a, Result<Remote>>;

    /// Reads one subscription (`NotFound` when it is gone).
    fn get<'a>(&'a self, id: &'a str) -> BoxFuture<'a, Result<Remote>>;

    /// Every subscription of the account (all pages).
    fn list(&self) -> BoxFuture<'_, Result<Vec<Remote>>>;

    /// Sends only `fields` of `desired`.
    fn update<'a>(
        &'a self,
        id: &'a str,
        desired: &'a Desired,
        fields: &'a BTreeSet<Field>,
    ) -> BoxFuture<'a, Result<Remote>>;

    /// Extends the lifetime (and reactivates), optionally rotating the delivery token.
    fn renew<'a>(&'a self, id: &'a str, auth_token: Option<&'a SecretString>) -> BoxFuture<'a, Result<Remote>> {
        let _ = (id, auth_token);
        Box::pin(async move {
            Err(ProviderError::new(
                ErrorKind::Unsupported,
                self.provider().as_str(),
                "renew",
                "this provider's subscriptions do not expire",
            ))
        })
    }

    /// Deletes a subscription (`NotFound` when it was already gone).
    fn delete<'a>(&'a self, id: &'a str) -> BoxFuture<'a, Result<()>>;

    /// The fields that identify "the same subscription" for adoption and leak recovery.
    fn adoption_fields(&self) -> &'static [Field];

    /// Remote subscriptions that match `desired` on the adoption fields.
    fn find_matches<'a>(&'a self, desired: &'a Desired) -> BoxFuture<'a, Result<Vec<Remote>>> {
        Box::pin(async move { Ok(matching(self.list().await?, self.adoption_fields(), desired)) })
    }
}

/// The subscriptions of a listing that match `desired` on `keys`, each id once: pages that shift while
/// they are read can return the same subscription twice, which is not two candidates.
pub fn matching(listed: Vec<Remote>, keys: &[Field], desired: &Desired) -> Vec<Remote> {
    let wanted = desired.comparable();
    let mut seen = std::collections::HashSet::new();
    listed
        .into_iter()
        .filter(|r| keys.iter().all(|k| r.fields.get(k) == wanted.get(k)))
        .filter(|r| seen.insert(r.id.clone()))
        .collect()
}

/// A bound on pages followed, in case next-page links ever loop.
const MAX_PAGES: usize = 10_000;

/// Reads a paginated listing: `first`, then each next-page link `fetch` returns (at the API's own origin
/// only, each page once, at most [`MAX_PAGES`]). Pages shift while they are read (a create or delete
/// between two pages): a subscription seen on two pages is one subscription.
pub(crate) async fn follow_pages<F, Fut>(
    provider: &'static str,
    base_url: &str,
    first: String,
    mut fetch: F,
) -> Result<Vec<Remote>>
where
    F: FnMut(String) -> Fut,
    Fut: std::future::Future<Output = Result<(Vec<Remote>, Option<String>)>>,
{
    let mut url = first;
    let mut all = Vec::new();
    let mut pages_seen = std::collections::HashSet::new();
    let mut ids_seen = std::collections::HashSet::new();
    for _ in 0..MAX_PAGES {
        if !pages_seen.insert(url.clone()) {
            break;
        }
        let (page, next) = fetch(url).await?;
        all.extend(page.into_iter().filter(|r| ids_seen.insert(r.id.clone())));
        match next.filter(|n| !n.is_empty()) {
            Some(next) => {
                url = http::same_origin_link(base_url, &next)
                    .map_err(|why| ProviderError::new(ErrorKind::Transient, provider, "list", why))?
            }
            None => break,
        }
    }
    Ok(all)
}

/// The error for a subscription handed to the client of another provider.
pub(crate) fn wrong_block(provider: ProviderType) -> ProviderError {
    let name = provider.as_str();
    ProviderError::new(
        ErrorKind::Invalid,
        name,
        "build",
        format!("the subscription has no {name} block"),
    )
}

/// String or array of strings (Avaya's list example shows `family` as a plain string).
pub(crate) fn string_or_list(value: &Value) -> Vec<String> {
    match value {
        Value::String(s) => vec![s.clone()],
        Value::Array(items) => items.iter().filter_map(|v| v.as_str().map(str::to_string)).collect(),
        _ => Vec::new(),
    }
}

/// How to reach one provider account.
#[derive(Clone)]
pub struct AccountConfig {
    /// API base URL, without a trailing slash.
    pub base_url: String,
    /// Token endpoint.
    pub token_url: String,
    /// Client id.
    pub client_id: String,
    /// Client secret (AuthVia: the signing secret key).
    pub client_secret: SecretString,
    /// The account's rate limiter, shared by every client built for it.
    pub limiter: std::sync::Arc<http::RateLimiter>,
    /// Retry rules.
    pub retry: http::RetryPolicy,
    /// The HTTP client.
    pub http: reqwest::Client,
    /// Time source for expiries and signatures.
    pub clock: crate::clock::SharedClock,
    /// The provider object the account belongs to, as metrics label it.
    pub labels: crate::telemetry::ProviderLabels,
}

impl std::fmt::Debug for AccountConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AccountConfig")
            .field("base_url", &self.base_url)
            .field("token_url", &self.token_url)
            .field("client_id", &self.client_id)
            .field("limiter", &self.limiter)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vonage(name: &str) -> Desired {
        Desired {
            endpoint: "https://h.example.com/v".into(),
            spec: DesiredSpec::Vonage(VonageDesired {
                name: name.into(),
                events: vec!["agent.*".into()],
                enabled: true,
                secret: None,
            }),
        }
    }

    fn listed(id: &str, desired: &Desired) -> Remote {
        Remote {
            id: id.into(),
            state: RemoteState::Enabled,
            expires_at: None,
            fields: desired.comparable(),
            generated_secret: None,
        }
    }

    #[test]
    fn a_subscription_listed_twice_is_one_match() {
        let mine = vonage("mine");
        let other = vonage("other");
        let shifted = vec![listed("a", &mine), listed("b", &other), listed("a", &mine)];
        let found = matching(shifted, &[Field::Name], &mine);
        assert_eq!(found.iter().map(|r| r.id.as_str()).collect::<Vec<_>>(), vec!["a"]);
        assert!(matching(vec![listed("b", &other)], &[Field::Name], &mine).is_empty());
    }
}
