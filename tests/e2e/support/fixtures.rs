//! Typed fixtures: provider credentials, desired subscriptions for the clients, and
//! `WebhookSubscription`s built from the API types.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use secrecy::SecretString;
use serde_json::{Map, json};
use webhook_operator::api::{
    AdoptionPolicy, AuthViaHeader, AuthViaSubscription, AvayaDeliveryMethod, AvayaFamily, AvayaSubscription,
    DeletionPolicy, ProviderKind, ProviderRef, SecretKeySelector, SecretValueSource, SigningSecretSource,
    VonageSubscription, WebhookSubscription, WebhookSubscriptionSpec,
};
use webhook_operator::clock::SharedClock;
use webhook_operator::providers::authvia::AuthviaClient;
use webhook_operator::providers::avaya::AvayaClient;
use webhook_operator::providers::http::{RetryPolicy, http_client};
use webhook_operator::providers::vonage::VonageClient;
use webhook_operator::providers::{AccountConfig, AuthviaDesired, AvayaDesired, Desired, DesiredSpec, VonageDesired};
use webhook_operator::sandbox::providers::authvia::AuthviaSimulator;
use webhook_operator::sandbox::providers::avaya::AvayaSimulator;
use webhook_operator::sandbox::providers::vonage::VonageSimulator;

/// The namespace the operator tests use.
pub const NS: &str = "default";
/// The API group of the operator's kinds.
pub const GROUP: &str = "webhook-operator.dev";

pub const LOCAL: ([u8; 4], u16) = ([127, 0, 0, 1], 0);
pub const AVAYA_ID: &str = "avaya-client";
pub const AVAYA_SECRET: &str = "avaya-client-secret-0123456789";
pub const VONAGE_ID: &str = "vonage-client";
pub const VONAGE_SECRET: &str = "vonage-client-secret-0123456789";
pub const AUTHVIA_ACCOUNT: &str = "AVID0001";
pub const AUTHVIA_ID: &str = "authvia-client-01";
pub const AUTHVIA_KEY: &str = "authvia-secret-key-0123456789abcdef";

/// How many creates (POST to the subscriptions collection) a simulator has answered.
pub fn creates(core: &webhook_operator::sandbox::providers::SimCore) -> usize {
    core.requests()
        .iter()
        .filter(|r| r.method == "POST" && r.path.ends_with("/subscriptions"))
        .count()
}

pub fn local() -> SocketAddr {
    SocketAddr::from(LOCAL)
}

pub fn account(base_url: String, token_url: String, id: &str, secret: &str) -> AccountConfig {
    AccountConfig {
        base_url,
        token_url,
        client_id: id.into(),
        client_secret: SecretString::from(secret),
        limiter: std::sync::Arc::new(webhook_operator::providers::http::RateLimiter::new(50.0, 50)),
        retry: RetryPolicy {
            base_delay: Duration::from_millis(20),
            ..RetryPolicy::default()
        },
        http: http_client(Duration::from_secs(5)),
        clock: Arc::new(webhook_operator::clock::SystemClock) as SharedClock,
        labels: Default::default(),
    }
}

/// A client of the Avaya simulator with its credentials.
pub fn avaya_client(sim: &AvayaSimulator) -> AvayaClient {
    AvayaClient::new(account(sim.base_url(), sim.token_url(), AVAYA_ID, AVAYA_SECRET))
}

/// A client of the Vonage simulator with its credentials.
pub fn vonage_client(sim: &VonageSimulator) -> VonageClient {
    VonageClient::new(account(sim.base_url(), sim.token_url(), VONAGE_ID, VONAGE_SECRET))
}

/// A client of the AuthVia simulator with its credentials, adding `extra_scopes` to every token.
pub fn authvia_client(sim: &AuthviaSimulator, extra_scopes: Vec<String>) -> AuthviaClient {
    AuthviaClient::new(
        account(
            sim.base_url(),
            AuthviaClient::token_url(&sim.base_url()),
            AUTHVIA_ID,
            AUTHVIA_KEY,
        ),
        AUTHVIA_ACCOUNT,
        extra_scopes,
    )
}

pub const AVAYA_TOKEN: &str = "avaya-delivery-token-one";
pub const AUTHVIA_SIGNING: &str = "authvia-signing-secret-0123456789abcdef";

pub fn avaya_desired(endpoint: &str, token: &str) -> Desired {
    Desired {
        endpoint: endpoint.into(),
        spec: DesiredSpec::Avaya(AvayaDesired {
            families: vec!["AGENT".into()],
            events: vec!["Agent.LoggedIn".into(), "Agent.LoggedOut".into()],
            method: "POST".into(),
            auth_token: Some(SecretString::from(token)),
            auth_token_header: "x-avaya-token".into(),
        }),
    }
}

pub fn vonage_desired(name: &str, endpoint: &str, secret: Option<&str>) -> Desired {
    Desired {
        endpoint: endpoint.into(),
        spec: DesiredSpec::Vonage(VonageDesired {
            name: name.into(),
            events: vec!["agent.presencechanged.v1".into()],
            enabled: true,
            secret: secret.map(SecretString::from),
        }),
    }
}

pub fn authvia_desired(endpoint: &str, secret: &str, header_value: &str) -> Desired {
    let mut conditions = Map::new();
    conditions.insert("status".into(), json!(["failed", "!completed"]));
    Desired {
        endpoint: endpoint.into(),
        spec: DesiredSpec::Authvia(AuthviaDesired {
            event_type: "business_processes.update".into(),
            description: Some("payments failures".into()),
            timeout_seconds: Some(10),
            attempts: 3,
            auto_disable: true,
            disable_callback_url: Some("https://hooks.example.com/authvia/disabled".into()),
            disabled: false,
            conditions,
            headers: vec![("X-Api-Key".into(), SecretString::from(header_value))],
            secret: Some(SecretString::from(secret)),
        }),
    }
}

fn key(name: &str, key: &str) -> SecretKeySelector {
    SecretKeySelector {
        name: name.into(),
        key: key.into(),
    }
}

/// A `WebhookSubscription` in [`NS`], built from the API types.
#[derive(Clone, Debug)]
pub struct Sub(WebhookSubscription);

impl Sub {
    fn new(name: &str, provider: &str, path: &str) -> Self {
        let spec = WebhookSubscriptionSpec {
            provider_ref: ProviderRef {
                kind: ProviderKind::WebhookProvider,
                name: provider.into(),
            },
            endpoint: format!("https://hooks.example.com{path}"),
            avaya: None,
            vonage: None,
            authvia: None,
            renewal: None,
            deletion_policy: DeletionPolicy::Delete,
            adoption_policy: AdoptionPolicy::None,
        };
        let mut sub = WebhookSubscription::new(name, spec);
        sub.metadata.namespace = Some(NS.into());
        Sub(sub)
    }

    /// Avaya: AGENT / Agent.LoggedIn, token from Secret `avaya-token` key `token`, header `x-avaya-token`.
    pub fn avaya(name: &str, path: &str) -> Self {
        let mut sub = Sub::new(name, "avaya", path);
        sub.0.spec.avaya = Some(AvayaSubscription {
            families: vec![AvayaFamily::Agent],
            events: vec!["Agent.LoggedIn".into()],
            method: AvayaDeliveryMethod::Post,
            auth_token: Some(SecretValueSource {
                secret_key_ref: key("avaya-token", "token"),
            }),
            auth_token_header: "x-avaya-token".into(),
        });
        sub
    }

    /// Vonage: agent.presencechanged.v1, a signing secret generated into Secret `<name>-signing`.
    pub fn vonage(name: &str, path: &str) -> Self {
        let mut sub = Sub::new(name, "vonage", path);
        sub.0.spec.vonage = Some(VonageSubscription {
            name: None,
            events: vec!["agent.presencechanged.v1".into()],
            enabled: true,
            signing_secret: Some(SigningSecretSource {
                secret_key_ref: key(&format!("{name}-signing"), "secret"),
                generate: true,
            }),
        });
        sub
    }

    /// AuthVia: business_processes.update, 3 attempts, a condition, a Secret header and signing secret
    /// from Secret `authvia-hook`.
    pub fn authvia(name: &str, path: &str) -> Self {
        let mut sub = Sub::new(name, "authvia", path);
        sub.0.spec.authvia = Some(AuthViaSubscription {
            event_type: "business_processes.update".into(),
            description: None,
            timeout_seconds: None,
            attempts: 3,
            auto_disable: true,
            disable_callback_url: None,
            disabled: false,
            conditions: Some([("status".to_string(), json!("failed"))].into_iter().collect()),
            headers: vec![AuthViaHeader {
                name: "X-Api-Key".into(),
                value: None,
                value_from: Some(SecretValueSource {
                    secret_key_ref: key("authvia-hook", "apiKey"),
                }),
            }],
            signing_secret: Some(SigningSecretSource {
                secret_key_ref: key("authvia-hook", "signingSecret"),
                generate: false,
            }),
        });
        sub
    }

    /// In another namespace.
    pub fn namespace(mut self, ns: &str) -> Self {
        self.0.metadata.namespace = Some(ns.into());
        self
    }

    /// Names another WebhookProvider.
    pub fn provider(mut self, name: &str) -> Self {
        self.0.spec.provider_ref.name = name.into();
        self
    }

    /// Names a ClusterWebhookProvider.
    pub fn cluster_provider(mut self, name: &str) -> Self {
        self.0.spec.provider_ref = ProviderRef {
            kind: ProviderKind::ClusterWebhookProvider,
            name: name.into(),
        };
        self
    }

    /// With this adoption policy.
    pub fn adoption(mut self, policy: AdoptionPolicy) -> Self {
        self.0.spec.adoption_policy = policy;
        self
    }

    /// With an annotation.
    pub fn annotate(mut self, key: &str, value: &str) -> Self {
        self.0
            .metadata
            .annotations
            .get_or_insert_with(Default::default)
            .insert(key.into(), value.into());
        self
    }

    /// Without Vonage's signing secret (the operator generates one).
    pub fn without_signing_secret(mut self) -> Self {
        if let Some(v) = &mut self.0.spec.vonage {
            v.signing_secret = None;
        }
        self
    }

    /// Without Avaya's delivery token.
    pub fn without_auth_token(mut self) -> Self {
        if let Some(a) = &mut self.0.spec.avaya {
            a.auth_token = None;
            a.auth_token_header = "auth-token".into();
        }
        self
    }

    /// The object.
    pub fn build(self) -> WebhookSubscription {
        self.0
    }
}

impl From<Sub> for WebhookSubscription {
    fn from(sub: Sub) -> Self {
        sub.0
    }
}
