//! AuthVia subscriptions: the signed token exchange at `/v3/tokens`, then the subscription endpoints
//! under the account (AVID).
//!
//! AuthVia documents the create body but not the other endpoints, the response shape or several JSON
//! keys. Every such choice is in this module's [`wire`] table and the path helpers below, and is listed
//! in the README's provider matrix:
//! - paths: `POST/GET /accounts/{avid}/subscriptions`, `GET/PATCH/DELETE /accounts/{avid}/subscriptions/{id}`;
//! - keys: `description`, `timeout`, `autoDisable`, `disableCallbackURL`, `disabled` (documented by name
//!   only in prose); the subscription's id is read from `id`;
//! - a list answers with a JSON array, or an object holding it under `subscriptions`, `items` or `data`,
//!   with the next page (if any) as a link under `next` or `links.next`; `limit` asks for large pages;
//! - a create refused because the test delivery to the destination failed names "verification";
//! - tokens are requested with an explicit `expiration`, since the default lifetime is unknown.
//!
//! Scopes are documented: a create needs `subscriptions:create` and `{resource}:read` for the type's
//! resource, and `subscriptions:timeout` to set a timeout. Each call asks for a token with the scopes it
//! needs (see [`scopes_for`]), so a client that was not granted `subscriptions:timeout` still manages
//! subscriptions without a timeout.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use futures::future::BoxFuture;
use reqwest::Method;
use secrecy::ExposeSecret;
use serde_json::{Map, Value, json};

use super::auth::TokenRequest;
use super::http::{ApiClient, Call, Reply};
use super::{
    AccountConfig, Desired, DesiredSpec, ErrorKind, Field, ProviderError, ProviderType, Remote, RemoteState, Result,
    WebhookApi,
};

const PROVIDER: &str = "authvia";
/// The public API.
pub const DEFAULT_BASE_URL: &str = "https://api.authvia.com/v3";
/// Page size asked for when listing.
const PAGE_LIMIT: u32 = 100;
/// The token lifetime we ask for.
const TOKEN_LIFETIME: Duration = Duration::from_secs(3600);

/// The JSON keys of a subscription, in one place.
pub mod wire {
    /// Event type (documented).
    pub const TYPE: &str = "type";
    /// Delivery URL (documented).
    pub const DESTINATION: &str = "destination";
    /// Purpose (assumed key).
    pub const DESCRIPTION: &str = "description";
    /// Delivery timeout in seconds (assumed key).
    pub const TIMEOUT: &str = "timeout";
    /// Retry attempts (documented).
    pub const ATTEMPTS: &str = "attempts";
    /// Auto-disable switch (written `auto-disable` in prose; key assumed).
    pub const AUTO_DISABLE: &str = "autoDisable";
    /// Disable callback (named in prose).
    pub const DISABLE_CALLBACK_URL: &str = "disableCallbackURL";
    /// Disabled flag (assumed key).
    pub const DISABLED: &str = "disabled";
    /// Conditions (documented).
    pub const CONDITIONS: &str = "conditions";
    /// Static headers (documented).
    pub const HEADERS: &str = "headers";
    /// Signing secret (documented).
    pub const SECRET: &str = "secret";
    /// Subscription id (seen in the conditions example).
    pub const ID: &str = "id";
}

/// A client for one AuthVia account.
#[derive(Debug)]
pub struct AuthviaClient {
    api: ApiClient,
    base_url: String,
    account_id: String,
    /// Scopes the provider adds to every token (`spec.authvia.scopes`).
    extra_scopes: Vec<String>,
}

/// This client's own block of a desired subscription; any other provider's block is refused.
fn authvia(desired: &Desired) -> Result<&super::AuthviaDesired> {
    let DesiredSpec::Authvia(spec) = &desired.spec else {
        return Err(super::wrong_block(ProviderType::Authvia));
    };
    Ok(spec)
}

/// A non-empty string, or null for `""`/`null` (how a provider may echo an optional field left unset).
fn optional_text(value: &Value) -> Value {
    match value {
        Value::String(s) if !s.is_empty() => json!(s),
        _ => Value::Null,
    }
}

/// A whole number however it is echoed (`10`, `10.0`, `"10"`), else the value as it came.
fn whole_number(value: &Value) -> Value {
    let number = match value {
        Value::Number(n) => n
            .as_i64()
            .or_else(|| n.as_f64().filter(|f| f.fract() == 0.0).map(|f| f as i64)),
        Value::String(s) => s.trim().parse::<i64>().ok(),
        _ => None,
    };
    number.map_or_else(|| value.clone(), |n| json!(n))
}

/// A subscription body in the operator's terms. Fields are normalised the way [`Desired::comparable`]
/// writes them, with the documented defaults for `null` (attempts 50, auto-disable on, not disabled, no
/// conditions, no headers); header values are never kept (they may come back masked), only the names.
/// A field the body does not carry at all is left out, so it is never taken for drift.
fn remote_from(value: &Value) -> Option<Remote> {
    let id = match &value[wire::ID] {
        Value::String(s) => s.clone(),
        Value::Number(n) => n.to_string(),
        _ => return None,
    };
    let mut fields = BTreeMap::new();
    let mut read = |field: Field, key: &str, normalise: &dyn Fn(&Value) -> Value| {
        if let Some(v) = value.get(key) {
            fields.insert(field, normalise(v));
        }
    };
    read(Field::Endpoint, wire::DESTINATION, &Value::clone);
    read(Field::EventType, wire::TYPE, &Value::clone);
    read(Field::Description, wire::DESCRIPTION, &optional_text);
    read(Field::Timeout, wire::TIMEOUT, &whole_number);
    read(Field::Attempts, wire::ATTEMPTS, &|v| {
        if v.is_null() { json!(50) } else { whole_number(v) }
    });
    read(Field::AutoDisable, wire::AUTO_DISABLE, &|v| {
        if v.is_null() { json!(true) } else { v.clone() }
    });
    read(Field::DisableCallbackUrl, wire::DISABLE_CALLBACK_URL, &optional_text);
    read(Field::Disabled, wire::DISABLED, &|v| {
        if v.is_null() { json!(false) } else { v.clone() }
    });
    read(Field::Conditions, wire::CONDITIONS, &|v| {
        if v.is_null() { json!({}) } else { v.clone() }
    });
    read(Field::Headers, wire::HEADERS, &|v| {
        super::header_names(v.as_object().into_iter().flatten().map(|(name, _)| name.as_str()))
    });
    let disabled = value[wire::DISABLED].as_bool().unwrap_or(false);
    Some(Remote {
        id,
        state: RemoteState::from_enabled(!disabled),
        expires_at: None,
        fields,
        generated_secret: None,
    })
}

/// The resource an event type is about (`business_processes` of `business_processes.update`).
fn resource_of(event_type: &str) -> &str {
    event_type.split('.').next().unwrap_or(event_type)
}

/// What a call does, for the scopes its token needs.
#[derive(Clone, Copy, Debug)]
pub enum Operation<'a> {
    /// Reading subscriptions (and checking the credentials).
    Read,
    /// Creating `desired`.
    Create(&'a super::AuthviaDesired),
    /// Sending `fields` of `desired`.
    Update(&'a super::AuthviaDesired, &'a BTreeSet<Field>),
    /// Deleting one.
    Delete,
}

/// The scopes a call needs (AuthVia's create reference): `subscriptions:create` plus `{resource}:read`
/// for the type's resource, `subscriptions:timeout` whenever a timeout is sent, `subscriptions:read`,
/// `subscriptions:update` and `subscriptions:delete` for the other calls (a changed type on update also
/// needs its resource's read scope); then `extra`, the provider's own additions. Sorted, each once, so
/// equal needs share one cached token.
pub fn scopes_for(operation: Operation<'_>, extra: &[String]) -> String {
    let mut scopes: BTreeSet<String> = extra.iter().cloned().collect();
    let mut add = |scope: String| {
        scopes.insert(scope);
    };
    match operation {
        Operation::Read => add("subscriptions:read".into()),
        Operation::Delete => add("subscriptions:delete".into()),
        Operation::Create(a) => {
            add("subscriptions:create".into());
            add(format!("{}:read", resource_of(&a.event_type)));
            if a.timeout_seconds.is_some() {
                add("subscriptions:timeout".into());
            }
        }
        Operation::Update(a, fields) => {
            add("subscriptions:update".into());
            if fields.contains(&Field::EventType) {
                add(format!("{}:read", resource_of(&a.event_type)));
            }
            if fields.contains(&Field::Timeout) && a.timeout_seconds.is_some() {
                add("subscriptions:timeout".into());
            }
        }
    }
    scopes.into_iter().collect::<Vec<_>>().join(" ")
}

/// Whether a refused create says the test delivery to the destination failed (AuthVia verifies the
/// destination at create; how it reports a failure is not documented, so its wording is what tells).
fn is_verification_failure(e: &ProviderError) -> bool {
    e.kind == ErrorKind::Invalid && e.message.to_ascii_lowercase().contains("verif")
}

fn put(body: &mut Map<String, Value>, a: &super::AuthviaDesired, desired: &Desired, field: Field) {
    let (key, value) = match field {
        Field::EventType => (wire::TYPE, json!(a.event_type)),
        Field::Endpoint => (wire::DESTINATION, json!(desired.endpoint)),
        Field::Description => (wire::DESCRIPTION, json!(a.description)),
        Field::Timeout => (wire::TIMEOUT, json!(a.timeout_seconds)),
        Field::Attempts => (wire::ATTEMPTS, json!(a.attempts)),
        Field::AutoDisable => (wire::AUTO_DISABLE, json!(a.auto_disable)),
        Field::DisableCallbackUrl => (wire::DISABLE_CALLBACK_URL, json!(a.disable_callback_url)),
        Field::Disabled => (wire::DISABLED, json!(a.disabled)),
        Field::Conditions => (wire::CONDITIONS, Value::Object(a.conditions.clone())),
        Field::Headers => {
            let headers: Map<String, Value> = a
                .headers
                .iter()
                .map(|(name, value)| (name.clone(), json!(value.expose_secret())))
                .collect();
            (wire::HEADERS, Value::Object(headers))
        }
        Field::Secret => match &a.secret {
            Some(secret) => (wire::SECRET, json!(secret.expose_secret())),
            None => return,
        },
        _ => return,
    };
    // Unset optional values are left out rather than sent as null (they keep the provider's default).
    if !value.is_null() {
        body.insert(key.into(), value);
    }
}

impl AuthviaClient {
    /// A client for `config` and the account `account_id` (AVID); every token also asks for `extra_scopes`.
    pub fn new(config: AccountConfig, account_id: &str, extra_scopes: Vec<String>) -> Self {
        let base_url = config.base_url.trim_end_matches('/').to_string();
        let request = TokenRequest::AuthviaSigned {
            token_url: config.token_url.clone(),
            client_id: config.client_id.clone(),
            secret_key: config.client_secret.clone(),
            scope: scopes_for(Operation::Read, &extra_scopes),
            expiration: TOKEN_LIFETIME,
        };
        AuthviaClient {
            api: ApiClient::for_account(PROVIDER, config, request, Default::default()),
            base_url,
            account_id: account_id.to_string(),
            extra_scopes,
        }
    }

    /// Sends `call` with a token for `operation`'s scopes; a refusal for want of a scope names them.
    async fn send(&self, call: Call, operation: Operation<'_>) -> Result<Reply> {
        let scope = scopes_for(operation, &self.extra_scopes);
        self.api.send(call.scope(scope.clone())).await.map_err(|mut e| {
            if e.kind == ErrorKind::Forbidden {
                e.message = format!(
                    "{}; the token was asked for scopes \"{scope}\": AuthVia grants scopes per client, so ask AuthVia to grant the missing one (subscriptions:timeout is needed only with spec.authvia.timeoutSeconds)",
                    e.message
                );
            }
            e
        })
    }

    /// One page of the listing, and the link to the next one.
    fn page(value: &Value) -> (Vec<Value>, Option<String>) {
        let items = match value {
            Value::Array(items) => items.clone(),
            other => ["subscriptions", "items", "data"]
                .iter()
                .find_map(|k| other[*k].as_array().cloned())
                .unwrap_or_default(),
        };
        let next = [&value["next"], &value["links"]["next"]]
            .into_iter()
            .find_map(|v| v.as_str().filter(|n| !n.is_empty()).map(str::to_string));
        (items, next)
    }

    /// The token URL for a base URL (`{base}/tokens`).
    pub fn token_url(base_url: &str) -> String {
        format!("{}/tokens", base_url.trim_end_matches('/'))
    }

    /// The account's HTTP layer.
    pub fn api(&self) -> &ApiClient {
        &self.api
    }

    fn collection(&self) -> String {
        format!("{}/accounts/{}/subscriptions", self.base_url, self.account_id)
    }

    fn item(&self, id: &str) -> String {
        format!("{}/{id}", self.collection())
    }

    fn parse(reply: &Reply, operation: &'static str) -> Result<Remote> {
        let value: Value = reply.parse(PROVIDER, operation)?;
        remote_from(&value)
            .ok_or_else(|| ProviderError::new(ErrorKind::Transient, PROVIDER, operation, "response has no id"))
    }
}

const ALL_FIELDS: [Field; 11] = [
    Field::EventType,
    Field::Endpoint,
    Field::Description,
    Field::Timeout,
    Field::Attempts,
    Field::AutoDisable,
    Field::DisableCallbackUrl,
    Field::Disabled,
    Field::Conditions,
    Field::Headers,
    Field::Secret,
];

impl WebhookApi for AuthviaClient {
    fn provider(&self) -> ProviderType {
        ProviderType::Authvia
    }

    fn check_credentials(&self) -> BoxFuture<'_, Result<()>> {
        Box::pin(self.api.check_credentials())
    }

    fn create<'a>(&'a self, desired: &'a Desired) -> BoxFuture<'a, Result<Remote>> {
        Box::pin(async move {
            let a = authvia(desired)?;
            let mut body = Map::new();
            for field in ALL_FIELDS {
                put(&mut body, a, desired, field);
            }
            if a.headers.is_empty() {
                body.remove(wire::HEADERS);
            }
            let call = Call::new("create", Method::POST, self.collection())
                .json(Value::Object(body))
                .secrets(desired.secrets());
            let reply = self.send(call, Operation::Create(a)).await.map_err(|mut e| {
                if is_verification_failure(&e) {
                    e.kind = ErrorKind::DestinationUnverified;
                    e.message = format!(
                        "{}; AuthVia sends a test event to spec.endpoint at create and needs a 200-399 answer: retried with backoff until the receiver answers",
                        e.message
                    );
                }
                e
            })?;
            Self::parse(&reply, "create")
        })
    }

    fn get<'a>(&'a self, id: &'a str) -> BoxFuture<'a, Result<Remote>> {
        Box::pin(async move {
            let reply = self
                .send(Call::new("get", Method::GET, self.item(id)), Operation::Read)
                .await?;
            Self::parse(&reply, "get")
        })
    }

    fn list(&self) -> BoxFuture<'_, Result<Vec<Remote>>> {
        Box::pin(async move {
            let first = format!("{}?limit={PAGE_LIMIT}", self.collection());
            super::follow_pages(PROVIDER, &self.base_url, first, |url| async move {
                let reply = self.send(Call::new("list", Method::GET, url), Operation::Read).await?;
                let value: Value = reply.parse(PROVIDER, "list")?;
                let (items, next) = Self::page(&value);
                Ok((items.iter().filter_map(remote_from).collect(), next))
            })
            .await
        })
    }

    fn update<'a>(
        &'a self,
        id: &'a str,
        desired: &'a Desired,
        fields: &'a BTreeSet<Field>,
    ) -> BoxFuture<'a, Result<Remote>> {
        Box::pin(async move {
            let a = authvia(desired)?;
            let mut body = Map::new();
            for field in fields {
                put(&mut body, a, desired, *field);
            }
            let call = Call::new("update", Method::PATCH, self.item(id))
                .json(Value::Object(body))
                .secrets(desired.secrets());
            let reply = self.send(call, Operation::Update(a, fields)).await?;
            Self::parse(&reply, "update")
        })
    }

    fn delete<'a>(&'a self, id: &'a str) -> BoxFuture<'a, Result<()>> {
        Box::pin(async move {
            let call = Call::new("delete", Method::DELETE, self.item(id));
            self.send(call, Operation::Delete).await.map(|_| ())
        })
    }

    fn adoption_fields(&self) -> &'static [Field] {
        // No name or idempotency key: the same destination for the same event type is the same subscription.
        &[Field::Endpoint, Field::EventType]
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fuzz::{CASES, Gen};

    #[test]
    fn any_response_body_is_read_without_panicking() {
        let keys = [
            "id",
            "type",
            "destination",
            "description",
            "timeout",
            "attempts",
            "autoDisable",
            "disableCallbackURL",
            "disabled",
            "conditions",
            "headers",
            "secret",
        ];
        let mut g = Gen::new(41);
        for _ in 0..CASES {
            let _ = remote_from(&g.json(&keys, 3));
        }
    }
}
