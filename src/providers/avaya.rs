//! Avaya Infinity Events API (`/api/events/v1`): OAuth2 client credentials with scope
//! `EVENT_NOTIFICATION`, subscriptions with `expiresIn`, `:renew` (optionally rotating the delivery
//! token), RFC 7807 errors with `violations`. Every response echoes `transport.authToken`, so responses
//! are parsed into JSON values whose token is immediately reduced to a fingerprint.

use std::collections::{BTreeMap, BTreeSet};

use futures::future::BoxFuture;
use reqwest::Method;
use secrecy::{ExposeSecret, SecretString};
use serde_json::{Map, Value, json};

use super::auth::TokenRequest;
use super::http::{ApiClient, Call, Reply};
use super::{
    AccountConfig, Desired, DesiredSpec, ErrorKind, Field, ProviderError, ProviderType, Remote, RemoteState, Result,
    WebhookApi, string_or_list,
};

const PROVIDER: &str = "avaya";
/// The page size the API allows at most.
const PAGE_SIZE: u32 = 25;
/// The header that carries the delivery token when none is named (the API's default).
const DEFAULT_TOKEN_HEADER: &str = "auth-token";
/// The share of its lifetime a token must still have to create or renew: a subscription's expiry is tied
/// to the token that created or renewed it (Avaya Experience Platform renew reference, same contract).
const TOKEN_LIFE_FOR_EXPIRY: f64 = 0.75;

/// The API and token URLs of a tenant (`customerId` is the subdomain of the tenant's portal).
pub fn urls_for_customer(customer_id: &str) -> (String, String) {
    (
        format!("https://core.{customer_id}.ec.avayacloud.com/api/events/v1"),
        format!("https://core.{customer_id}.ec.avayacloud.com/auth/realms/avaya/protocol/openid-connect/token"),
    )
}

/// A client for one Avaya tenant.
#[derive(Debug)]
pub struct AvayaClient {
    api: ApiClient,
    base_url: String,
}

impl AvayaClient {
    /// A client for `config` (base URL without a trailing slash).
    pub fn new(config: AccountConfig) -> Self {
        let base_url = config.base_url.trim_end_matches('/').to_string();
        let request = TokenRequest::ClientCredentials {
            token_url: config.token_url.clone(),
            client_id: config.client_id.clone(),
            client_secret: config.client_secret.clone(),
            scope: "EVENT_NOTIFICATION".into(),
        };
        AvayaClient {
            api: ApiClient::for_account(PROVIDER, config, request, Default::default()),
            base_url,
        }
    }

    /// The account's HTTP layer (token cache, for tests and metrics).
    pub fn api(&self) -> &ApiClient {
        &self.api
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base_url)
    }

    fn parse(&self, reply: &Reply, operation: &'static str) -> Result<Remote> {
        let value: Value = reply.parse(PROVIDER, operation)?;
        remote_from(&value, self.api.clock().now()).ok_or_else(|| {
            ProviderError::new(
                ErrorKind::Transient,
                PROVIDER,
                operation,
                "response has no subscriptionId",
            )
        })
    }
}

/// This client's own block of a desired subscription; any other provider's block is refused.
fn avaya(desired: &Desired) -> Result<&super::AvayaDesired> {
    let DesiredSpec::Avaya(spec) = &desired.spec else {
        return Err(super::wrong_block(ProviderType::Avaya));
    };
    Ok(spec)
}

/// A `Subscription` body in the operator's terms; the echoed token becomes a fingerprint. `now` turns
/// `expiresIn` into an expiry (an `expiresIn` too large for a timestamp is ignored, not trusted).
fn remote_from(value: &Value, now: jiff::Timestamp) -> Option<Remote> {
    let id = value["subscriptionId"].as_str()?.to_string();
    let transport = &value["transport"];
    let mut fields = BTreeMap::new();
    if let Some(endpoint) = transport["endpoint"].as_str() {
        fields.insert(Field::Endpoint, json!(endpoint));
    }
    let mut families = string_or_list(&value["family"]);
    families.sort();
    fields.insert(Field::Families, json!(families));
    let mut events = string_or_list(&value["events"]);
    events.sort();
    fields.insert(Field::Events, json!(events));
    if let Some(method) = transport["method"].as_str() {
        fields.insert(Field::Method, json!(method));
    }
    // Only whether a token is set: the echo may be masked or cut short, and a token is never compared by
    // its echo (a rotation is known from what was last sent). The header is default `auth-token`.
    let token_set = transport["authToken"].as_str().is_some_and(|t| !t.is_empty());
    fields.insert(Field::AuthToken, json!(token_set));
    if token_set {
        let header = transport["authTokenHeader"].as_str().unwrap_or(DEFAULT_TOKEN_HEADER);
        fields.insert(Field::AuthTokenHeader, json!(header.to_ascii_lowercase()));
    }
    // `expiresIn` is computed when the response is built: the only reliable source of the expiry.
    let expires_at = value["expiresIn"]
        .as_i64()
        .and_then(|seconds| now.checked_add(jiff::SignedDuration::from_secs(seconds)).ok())
        .or_else(|| value["expiresAt"].as_str().and_then(|s| s.parse().ok()));
    Some(Remote {
        id,
        state: RemoteState::from_avaya(value["status"].as_str()),
        expires_at,
        fields,
        generated_secret: None,
    })
}

/// The whole `transport`: the documented `Transport` schema requires its fields together, on create and on
/// update alike (nothing says a partial one is merged). Without a token, `authToken` and its header are
/// left out together, which clears a token set before.
fn transport(desired: &Desired, a: &super::AvayaDesired) -> Value {
    let mut t = json!({"type": "WEBHOOK", "method": a.method, "endpoint": desired.endpoint});
    if let Some(token) = &a.auth_token {
        t["authToken"] = json!(token.expose_secret());
        t["authTokenHeader"] = json!(a.auth_token_header);
    }
    t
}

/// Whether an update touches the transport (then all of it is sent).
fn touches_transport(fields: &BTreeSet<Field>) -> bool {
    fields.iter().any(|f| match f {
        Field::Endpoint | Field::Method | Field::AuthToken | Field::AuthTokenHeader => true,
        Field::Families
        | Field::Events
        | Field::Name
        | Field::Enabled
        | Field::Secret
        | Field::EventType
        | Field::Description
        | Field::Timeout
        | Field::Attempts
        | Field::AutoDisable
        | Field::DisableCallbackUrl
        | Field::Disabled
        | Field::Conditions
        | Field::Headers => false,
    })
}

impl WebhookApi for AvayaClient {
    fn provider(&self) -> ProviderType {
        ProviderType::Avaya
    }

    fn check_credentials(&self) -> BoxFuture<'_, Result<()>> {
        Box::pin(self.api.check_credentials())
    }

    fn create<'a>(&'a self, desired: &'a Desired) -> BoxFuture<'a, Result<Remote>> {
        Box::pin(async move {
            let a = avaya(desired)?;
            let body = json!({
                "family": a.families,
                "events": a.events,
                "transport": transport(desired, a),
            });
            let call = Call::new("create", Method::POST, self.url("/subscriptions"))
                .json(body)
                .token_life_left(TOKEN_LIFE_FOR_EXPIRY)
                .secrets(desired.secrets());
            let reply = self.api.send(call).await?;
            self.parse(&reply, "create")
        })
    }

    fn get<'a>(&'a self, id: &'a str) -> BoxFuture<'a, Result<Remote>> {
        Box::pin(async move {
            let reply = self.api.get("get", self.url(&format!("/subscriptions/{id}"))).await?;
            self.parse(&reply, "get")
        })
    }

    fn list(&self) -> BoxFuture<'_, Result<Vec<Remote>>> {
        Box::pin(async move {
            let first = self.url(&format!("/subscriptions?pageNumber=1&pageSize={PAGE_SIZE}"));
            super::follow_pages(PROVIDER, &self.base_url, first, |url| async move {
                let page: Value = self.api.get("list", url).await?.parse(PROVIDER, "list")?;
                let now = self.api.clock().now();
                let items = page["subscriptions"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(|item| remote_from(item, now))
                    .collect();
                Ok((items, page["links"]["next"].as_str().map(str::to_string)))
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
            let a = avaya(desired)?;
            let mut body = Map::new();
            if fields.contains(&Field::Families) {
                body.insert("family".into(), json!(a.families));
            }
            if fields.contains(&Field::Events) {
                body.insert("events".into(), json!(a.events));
            }
            if touches_transport(fields) {
                body.insert("transport".into(), transport(desired, a));
            }
            let call = Call::new("update", Method::PATCH, self.url(&format!("/subscriptions/{id}")))
                .json(Value::Object(body))
                .secrets(desired.secrets());
            let reply = self.api.send(call).await?;
            self.parse(&reply, "update")
        })
    }

    fn renew<'a>(&'a self, id: &'a str, auth_token: Option<&'a SecretString>) -> BoxFuture<'a, Result<Remote>> {
        Box::pin(async move {
            // Renewing twice is harmless, so the call may be retried.
            // Without a body the transport stays as it is; the HTTP layer still names a JSON content type.
            let mut call = Call::new("renew", Method::POST, self.url(&format!("/subscriptions/{id}:renew")))
                .idempotent(true)
                .renewal()
                .token_life_left(TOKEN_LIFE_FOR_EXPIRY);
            if let Some(token) = auth_token {
                call = call
                    .json(json!({"transport": {"authToken": token.expose_secret()}}))
                    .secrets([token.clone()]);
            }
            let reply = self.api.send(call).await?;
            self.parse(&reply, "renew")
        })
    }

    fn delete<'a>(&'a self, id: &'a str) -> BoxFuture<'a, Result<()>> {
        Box::pin(async move { self.api.delete(self.url(&format!("/subscriptions/{id}"))).await })
    }

    fn adoption_fields(&self) -> &'static [Field] {
        // Avaya has no name or idempotency key: the same endpoint with the same families and events is
        // taken to be the same subscription.
        &[Field::Endpoint, Field::Families, Field::Events]
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fuzz::{CASES, Gen};

    #[test]
    fn pages_are_followed_only_at_the_apis_own_origin() {
        let base = "https://core.t.ec.avayacloud.com/api/events/v1";
        assert_eq!(
            crate::providers::http::same_origin_link(base, "/api/events/v1/subscriptions?pageNumber=2").unwrap(),
            "https://core.t.ec.avayacloud.com/api/events/v1/subscriptions?pageNumber=2"
        );
        assert!(
            crate::providers::http::same_origin_link(
                base,
                "https://core.t.ec.avayacloud.com/api/events/v1/subscriptions?pageNumber=3"
            )
            .is_ok()
        );
        for hostile in [
            "https://evil.example/steal",
            "//evil.example/steal",
            "http://core.t.ec.avayacloud.com/api/events/v1/subscriptions",
            "https://core.t.ec.avayacloud.com:8443/x",
        ] {
            assert!(
                crate::providers::http::same_origin_link(base, hostile).is_err(),
                "{hostile}"
            );
        }
    }

    #[test]
    fn any_response_body_is_read_without_panicking() {
        let now: jiff::Timestamp = "2026-01-01T00:00:00Z".parse().unwrap();
        let keys = [
            "subscriptionId",
            "transport",
            "endpoint",
            "family",
            "events",
            "method",
            "authToken",
            "authTokenHeader",
            "expiresIn",
            "expiresAt",
            "status",
        ];
        let mut g = Gen::new(11);
        for _ in 0..CASES {
            let _ = remote_from(&g.json(&keys, 3), now);
        }
        let huge = serde_json::json!({"subscriptionId": "s", "expiresIn": i64::MAX});
        assert_eq!(
            remote_from(&huge, now).unwrap().expires_at,
            None,
            "an absurd expiresIn is not trusted"
        );
        let negative = serde_json::json!({"subscriptionId": "s", "expiresIn": i64::MIN});
        assert!(remote_from(&negative, now).is_some());
    }

    #[test]
    fn any_next_link_is_judged_without_panicking() {
        let mut g = Gen::new(12);
        let pieces = [
            "/",
            "api",
            "https://",
            "core.t.ec.avayacloud.com",
            "evil",
            "?",
            "#",
            "..",
            "%",
            ":",
            "@",
            "\\",
        ];
        for _ in 0..CASES {
            let link = g.text(&pieces, 8);
            if let Ok(url) =
                crate::providers::http::same_origin_link("https://core.t.ec.avayacloud.com/api/events/v1", &link)
            {
                assert!(url.starts_with("https://core.t.ec.avayacloud.com/"), "{link:?} → {url}");
            }
        }
    }
}
