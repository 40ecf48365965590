//! Vonage Contact Center (NewVoiceMedia) Webhooks API: regional hosts, the versioned `Accept` header on
//! every call, OAuth2 client credentials (`admin:read admin:write`), subscriptions with a unique `name`,
//! `enabled` and a write-only signing `secret` that Vonage generates (and returns once) when none is given.
//!
//! Choices where the documentation is silent (see the README's provider matrix): delete is
//! `DELETE /subscriptions/{id}`; a duplicate name (409, or a 400 whose message says the name exists) is
//! a conflict, not an invalid spec; the list is not paginated. A 401 may mean a token without the scope
//! (documented), so its message says so.

use std::collections::{BTreeMap, BTreeSet};

use futures::future::BoxFuture;
use reqwest::Method;
use reqwest::header::{ACCEPT, HeaderMap, HeaderValue};
use secrecy::{ExposeSecret, SecretString};
use serde_json::{Map, Value, json};

use super::auth::TokenRequest;
use super::http::{ApiClient, Call, Reply};
use super::{
    AccountConfig, Desired, DesiredSpec, ErrorKind, Field, ProviderError, ProviderType, Remote, RemoteState, Result,
    WebhookApi,
};

const PROVIDER: &str = "vonage";
/// The media type that selects the API version; required on every request.
pub const MEDIA_TYPE: &str = "application/vnd.newvoicemedia.v1+json";

/// The API and token URLs of a region (`emea`, `nam`, `apac`).
pub fn urls_for_region(region: &str) -> (String, String) {
    (
        format!("https://{region}.api.newvoicemedia.com/webhooks"),
        format!("https://{region}.cc.vonage.com/Auth/connect/token"),
    )
}

/// A client for one Vonage Contact Center account.
#[derive(Debug)]
pub struct VonageClient {
    api: ApiClient,
    base_url: String,
}

/// This client's own block of a desired subscription; any other provider's block is refused.
fn vonage(desired: &Desired) -> Result<&super::VonageDesired> {
    let DesiredSpec::Vonage(spec) = &desired.spec else {
        return Err(super::wrong_block(ProviderType::Vonage));
    };
    Ok(spec)
}

fn remote_from(value: &Value) -> Option<Remote> {
    let id = value["subscriptionId"].as_str()?.to_string();
    let mut fields = BTreeMap::new();
    if let Some(url) = value["url"].as_str() {
        fields.insert(Field::Endpoint, json!(url));
    }
    if let Some(name) = value["name"].as_str() {
        fields.insert(Field::Name, json!(name));
    }
    if let Some(events) = value["events"].as_array() {
        let mut events: Vec<&str> = events.iter().filter_map(Value::as_str).collect();
        events.sort();
        events.dedup();
        fields.insert(Field::Events, json!(events));
    }
    let enabled = value["enabled"].as_bool().unwrap_or(true);
    fields.insert(Field::Enabled, json!(enabled));
    Some(Remote {
        id,
        state: RemoteState::from_enabled(enabled),
        expires_at: None,
        fields,
        generated_secret: value["secret"].as_str().map(SecretString::from),
    })
}

/// A refusal in the operator's terms: a duplicate name comes back as a 400 whose message says so (the
/// docs do not promise 409), which is a conflict with an existing subscription, not a spec to fix; a 401
/// after a fresh token is either the credentials or a missing scope, which Vonage does not tell apart.
fn classify(mut e: ProviderError) -> ProviderError {
    let message = e.message.to_ascii_lowercase();
    if e.kind == ErrorKind::Invalid
        && ["already exists", "already in use", "duplicate", "unique"]
            .iter()
            .any(|m| message.contains(m))
    {
        e.kind = ErrorKind::Conflict;
    }
    if e.kind == ErrorKind::Unauthorized {
        e.message = format!(
            "{}; Vonage answers 401 both for refused credentials and for a token without the admin:read and admin:write scopes: check the API credential has both",
            e.message
        );
    }
    e
}

impl VonageClient {
    /// A client for `config`.
    pub fn new(config: AccountConfig) -> Self {
        let base_url = config.base_url.trim_end_matches('/').to_string();
        let request = TokenRequest::ClientCredentials {
            token_url: config.token_url.clone(),
            client_id: config.client_id.clone(),
            client_secret: config.client_secret.clone(),
            scope: "admin:read admin:write".into(),
        };
        let mut headers = HeaderMap::new();
        headers.insert(ACCEPT, HeaderValue::from_static(MEDIA_TYPE));
        VonageClient {
            api: ApiClient::for_account(PROVIDER, config, request, headers),
            base_url,
        }
    }

    /// The account's HTTP layer.
    pub fn api(&self) -> &ApiClient {
        &self.api
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base_url)
    }

    fn parse(reply: &Reply, operation: &'static str) -> Result<Remote> {
        let value: Value = reply.parse(PROVIDER, operation)?;
        remote_from(&value).ok_or_else(|| {
            ProviderError::new(
                ErrorKind::Transient,
                PROVIDER,
                operation,
                "response has no subscriptionId",
            )
        })
    }

    /// The event type names the account offers (`GET /event-types`).
    pub async fn event_types(&self) -> Result<Vec<String>> {
        let reply = self.api.get("event-types", self.url("/event-types")).await?;
        let value: Value = reply.parse(PROVIDER, "event-types")?;
        Ok(value["eventTypes"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|t| t["name"].as_str().map(str::to_string))
            .collect())
    }
}

impl WebhookApi for VonageClient {
    fn provider(&self) -> ProviderType {
        ProviderType::Vonage
    }

    fn check_credentials(&self) -> BoxFuture<'_, Result<()>> {
        Box::pin(self.api.check_credentials())
    }

    fn create<'a>(&'a self, desired: &'a Desired) -> BoxFuture<'a, Result<Remote>> {
        Box::pin(async move {
            let v = vonage(desired)?;
            let mut body = json!({"name": v.name, "url": desired.endpoint, "events": v.events, "enabled": v.enabled});
            if let Some(secret) = &v.secret {
                body["secret"] = json!(secret.expose_secret());
            }
            let call = Call::new("create", Method::POST, self.url("/subscriptions"))
                .json(body)
                .secrets(desired.secrets());
            let reply = self.api.send(call).await.map_err(classify)?;
            let mut created = Self::parse(&reply, "create")?;
            // Only a secret Vonage generated is news; one we sent is ours already.
            if v.secret.is_some() {
                created.generated_secret = None;
            }
            Ok(created)
        })
    }

    fn get<'a>(&'a self, id: &'a str) -> BoxFuture<'a, Result<Remote>> {
        Box::pin(async move {
            let reply = self
                .api
                .get("get", self.url(&format!("/subscriptions/{id}")))
                .await
                .map_err(classify)?;
            Self::parse(&reply, "get")
        })
    }

    fn list(&self) -> BoxFuture<'_, Result<Vec<Remote>>> {
        Box::pin(async move {
            let reply = self
                .api
                .get("list", self.url("/subscriptions"))
                .await
                .map_err(classify)?;
            let value: Value = reply.parse(PROVIDER, "list")?;
            Ok(value["subscriptions"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(remote_from)
                .map(|mut r| {
                    r.generated_secret = None;
                    r
                })
                .collect())
        })
    }

    fn update<'a>(
        &'a self,
        id: &'a str,
        desired: &'a Desired,
        fields: &'a BTreeSet<Field>,
    ) -> BoxFuture<'a, Result<Remote>> {
        Box::pin(async move {
            let v = vonage(desired)?;
            let mut body = Map::new();
            for field in fields {
                match field {
                    Field::Name => body.insert("name".into(), json!(v.name)),
                    Field::Endpoint => body.insert("url".into(), json!(desired.endpoint)),
                    Field::Events => body.insert("events".into(), json!(v.events)),
                    Field::Enabled => body.insert("enabled".into(), json!(v.enabled)),
                    Field::Secret => v
                        .secret
                        .as_ref()
                        .and_then(|s| body.insert("secret".into(), json!(s.expose_secret()))),
                    _ => None,
                };
            }
            let call = Call::new("update", Method::PATCH, self.url(&format!("/subscriptions/{id}")))
                .json(Value::Object(body))
                .secrets(desired.secrets());
            let reply = self.api.send(call).await.map_err(classify)?;
            let mut remote = Self::parse(&reply, "update")?;
            remote.generated_secret = None;
            Ok(remote)
        })
    }

    fn delete<'a>(&'a self, id: &'a str) -> BoxFuture<'a, Result<()>> {
        Box::pin(async move {
            self.api
                .delete(self.url(&format!("/subscriptions/{id}")))
                .await
                .map_err(classify)
        })
    }

    fn adoption_fields(&self) -> &'static [Field] {
        // Names are unique per account.
        &[Field::Name]
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fuzz::{CASES, Gen};

    #[test]
    fn any_response_body_is_read_without_panicking() {
        let keys = ["id", "name", "url", "events", "enabled", "secret"];
        let mut g = Gen::new(31);
        for _ in 0..CASES {
            let _ = remote_from(&g.json(&keys, 3));
        }
    }
}
