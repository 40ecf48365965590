//! AuthVia subscriptions: the signed token exchange at `/v3/tokens`, then the subscription endpoints
//! under the account (AVID).
//!
//! AuthVia documents the create body but not the other endpoints, the response shape or several JSON
//! keys. Every such choice is in this module's [`wire`] table and the path helpers below, and is listed
//! in the README's provider matrix:
//! - paths: `POST/GET /accounts/{avid}/subscriptions`, `GET/PATCH/DELETE /accounts/{avid}/subscriptions/{id}`;
//! - keys: `description`, `timeout`, `autoDisable`, `disableCallbackURL`, `disabled` (documented by name
//!   only in prose); the subscription's id is read from `id`;
//! - a list answers with a JSON array, or an object holding it under `subscriptions`, `items` or `data`;
//! - tokens are requested with an explicit `expiration`, since the default lifetime is unknown.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use futures::future::BoxFuture;
use reqwest::Method;
use secrecy::{ExposeSecret, SecretString};
use serde_json::{Map, Value, json};

use super::auth::TokenRequest;
use super::http::{ApiClient, Call, Reply};
use super::{
    AccountConfig, Desired, DesiredSpec, ErrorKind, Field, ProviderError, ProviderType, Remote, RemoteState, Result,
    WebhookApi, fingerprint,
};

const PROVIDER: &str = "authvia";
/// The public API.
pub const DEFAULT_BASE_URL: &str = "https://api.authvia.com/v3";
/// Scopes requested when the provider names none.
pub const DEFAULT_SCOPES: &str = "subscriptions:create subscriptions:read subscriptions:update subscriptions:delete";
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
}

/// This client's own block of a desired subscription; any other provider's block is refused.
fn authvia(desired: &Desired) -> Result<&super::AuthviaDesired> {
    let DesiredSpec::Authvia(spec) = &desired.spec else {
        return Err(super::wrong_block(ProviderType::Authvia));
    };
    Ok(spec)
}

fn remote_from(value: &Value) -> Option<Remote> {
    let id = match &value[wire::ID] {
        Value::String(s) => s.clone(),
        Value::Number(n) => n.to_string(),
        _ => return None,
    };
    let mut fields = BTreeMap::new();
    let mut copy = |field: Field, key: &str| {
        if let Some(v) = value.get(key) {
            fields.insert(field, v.clone());
        }
    };
    copy(Field::Endpoint, wire::DESTINATION);
    copy(Field::EventType, wire::TYPE);
    copy(Field::Description, wire::DESCRIPTION);
    copy(Field::Timeout, wire::TIMEOUT);
    copy(Field::Attempts, wire::ATTEMPTS);
    copy(Field::AutoDisable, wire::AUTO_DISABLE);
    copy(Field::DisableCallbackUrl, wire::DISABLE_CALLBACK_URL);
    copy(Field::Disabled, wire::DISABLED);
    copy(Field::Conditions, wire::CONDITIONS);
    if let Some(headers) = value[wire::HEADERS].as_object() {
        let map: BTreeMap<String, String> = headers
            .iter()
            .map(|(k, v)| {
                let text = v.as_str().map(str::to_string).unwrap_or_else(|| v.to_string());
                (k.to_ascii_lowercase(), fingerprint(&SecretString::from(text)))
            })
            .collect();
        fields.insert(Field::Headers, json!(map));
    }
    let disabled = value[wire::DISABLED].as_bool().unwrap_or(false);
    Some(Remote {
        id,
        state: RemoteState::from_enabled(!disabled),
        expires_at: None,
        fields,
        generated_secret: None,
    })
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
    // Unset optional values are left out rather than sent as null.
    if !value.is_null() {
        body.insert(key.into(), value);
    }
}

impl AuthviaClient {
    /// A client for `config` and the account `account_id` (AVID), asking for `scopes` (space-separated).
    pub fn new(config: AccountConfig, account_id: &str, scopes: Option<String>) -> Self {
        let base_url = config.base_url.trim_end_matches('/').to_string();
        let request = TokenRequest::AuthviaSigned {
            token_url: config.token_url.clone(),
            client_id: config.client_id.clone(),
            secret_key: config.client_secret.clone(),
            scope: scopes.unwrap_or_else(|| DEFAULT_SCOPES.into()),
            expiration: TOKEN_LIFETIME,
        };
        AuthviaClient {
            api: ApiClient::for_account(PROVIDER, config, request, Default::default()),
            base_url,
            account_id: account_id.to_string(),
        }
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
            let reply = self.api.send(call).await?;
            Self::parse(&reply, "create")
        })
    }

    fn get<'a>(&'a self, id: &'a str) -> BoxFuture<'a, Result<Remote>> {
        Box::pin(async move {
            let reply = self.api.get("get", self.item(id)).await?;
            Self::parse(&reply, "get")
        })
    }

    fn list(&self) -> BoxFuture<'_, Result<Vec<Remote>>> {
        Box::pin(async move {
            let reply = self.api.get("list", self.collection()).await?;
            let value: Value = reply.parse(PROVIDER, "list")?;
            let items = match &value {
                Value::Array(items) => items.clone(),
                other => ["subscriptions", "items", "data"]
                    .iter()
                    .find_map(|k| other[*k].as_array().cloned())
                    .unwrap_or_default(),
            };
            Ok(items.iter().filter_map(remote_from).collect())
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
            let reply = self.api.send(call).await?;
            Self::parse(&reply, "update")
        })
    }

    fn delete<'a>(&'a self, id: &'a str) -> BoxFuture<'a, Result<()>> {
        Box::pin(async move { self.api.delete(self.item(id)).await })
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
