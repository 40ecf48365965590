//! `WebhookSubscription`: one remote webhook subscription on Avaya Infinity, Vonage Contact Center or
//! AuthVia.
// kube's `printcolumn(...)` repeats `type_ = …` per column; clippy reads that as a duplicated attribute.
#![allow(clippy::duplicated_attributes)]

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::{CustomResource, KubeSchema};
use serde::{Deserialize, Serialize};

use super::common::{AdoptionPolicy, DeletionPolicy, SecretValueSource, SigningSecretSource};

/// Desired state of one remote webhook subscription.
#[derive(CustomResource, KubeSchema, Clone, Debug, PartialEq, Serialize, Deserialize)]
#[kube(
    group = "webhook-operator.dev",
    version = "v1alpha1",
    kind = "WebhookSubscription",
    plural = "webhooksubscriptions",
    singular = "webhooksubscription",
    namespaced,
    status = "WebhookSubscriptionStatus",
    shortname = "whsub",
    shortname = "whsubs",
    category = "webhooks",
    doc = "A webhook subscription on a remote provider, kept created, up to date, renewed and rotated by webhook-operator.",
    printcolumn(
        name = "Provider",
        type_ = "string",
        json_path = ".spec.providerRef.name",
        description = "The WebhookProvider or ClusterWebhookProvider this subscription uses"
    ),
    printcolumn(
        name = "Ready",
        type_ = "string",
        json_path = ".status.conditions[?(@.type==\"Ready\")].status",
        description = "Whether the remote subscription is usable"
    ),
    printcolumn(
        name = "Reason",
        type_ = "string",
        json_path = ".status.conditions[?(@.type==\"Ready\")].reason",
        description = "Why the subscription is or is not ready (the troubleshooting table says what to do)"
    ),
    printcolumn(
        name = "Synced",
        type_ = "string",
        json_path = ".status.conditions[?(@.type==\"Synced\")].status",
        description = "Whether the last reconcile brought the remote subscription in line with the spec"
    ),
    printcolumn(
        name = "State",
        type_ = "string",
        json_path = ".status.remoteState",
        description = "The state the provider reports"
    ),
    printcolumn(
        name = "Expires",
        type_ = "string",
        json_path = ".status.expiresAt",
        description = "When the remote subscription expires unless renewed"
    ),
    printcolumn(name = "Age", type_ = "date", json_path = ".metadata.creationTimestamp"),
    printcolumn(
        name = "Subscription-ID",
        type_ = "string",
        json_path = ".status.subscriptionId",
        priority = 1,
        description = "The provider's id of the remote subscription"
    ),
    printcolumn(
        name = "Renewal",
        type_ = "string",
        json_path = ".status.renewalTime",
        priority = 1,
        description = "When the operator renews the remote subscription next"
    ),
    printcolumn(
        name = "Message",
        type_ = "string",
        json_path = ".status.conditions[?(@.type==\"Ready\")].message",
        priority = 1,
        description = "The Ready condition's message"
    )
)]
#[serde(rename_all = "camelCase")]
#[x_kube(
    validation = Rule::new("has(self.avaya) || has(self.vonage) || has(self.authvia)").message("spec: set one provider block, spec.avaya, spec.vonage or spec.authvia, matching the type of the provider named in spec.providerRef"),
    validation = Rule::new("(has(self.avaya) ? 1 : 0) + (has(self.vonage) ? 1 : 0) + (has(self.authvia) ? 1 : 0) <= 1").message("spec: only one provider block may be set; keep the one of spec.avaya, spec.vonage or spec.authvia that matches the provider and remove the others"),
    validation = Rule::new("!has(self.renewal) || has(self.avaya)").message("spec.renewal applies only to Avaya subscriptions, the only ones that expire; remove spec.renewal"),
    validation = Rule::new("has(self.avaya) == has(oldSelf.avaya) && has(self.vonage) == has(oldSelf.vonage) && has(self.authvia) == has(oldSelf.authvia)").message("spec: the provider block (avaya, vonage or authvia) cannot change; to move to another provider, create a new WebhookSubscription and delete this one (set spec.deletionPolicy: Orphan first to keep the remote subscription)")
)]
pub struct WebhookSubscriptionSpec {
    /// The provider account this subscription is created in. Immutable: the remote subscription lives in
    /// that account.
    #[x_kube(validation = Rule::new("self == oldSelf").message("spec.providerRef cannot change: the remote subscription lives in that provider's account; to move it, create a new WebhookSubscription for the other provider and delete this one (set spec.deletionPolicy: Orphan first to keep the remote subscription)"))]
    pub provider_ref: ProviderRef,
    /// The https URL that receives the deliveries.
    #[schemars(length(min = 1, max = 2048))]
    #[x_kube(validation = Rule::new("isURL(self) && url(self).getScheme() != ''").message("spec.endpoint must be an absolute URL with its scheme and host, for example https://hooks.example.com/events"))]
    #[x_kube(validation = Rule::new("!isURL(self) || url(self).getScheme() in ['', 'https']").message("spec.endpoint must use https (https://...): the providers refuse plain http"))]
    pub endpoint: String,
    /// Avaya Infinity Events API subscription; set only when the provider is of type avaya.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub avaya: Option<AvayaSubscription>,
    /// Vonage Contact Center webhook subscription; set only when the provider is of type vonage.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vonage: Option<VonageSubscription>,
    /// AuthVia subscription; set only when the provider is of type authvia.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub authvia: Option<AuthViaSubscription>,
    /// When to renew a subscription that expires (Avaya). Without it, the operator renews when two thirds
    /// of the lifetime the provider reported have passed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub renewal: Option<RenewalPolicy>,
    /// What happens to the remote subscription when this resource is deleted: Delete (default) or Orphan.
    #[serde(default)]
    pub deletion_policy: DeletionPolicy,
    /// Whether an existing remote subscription that matches this one may be taken over: None (default, a
    /// match is an error), Adopt (never create), or AdoptOrCreate.
    #[serde(default)]
    pub adoption_policy: AdoptionPolicy,
}

/// Names the provider account a subscription is created in.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct ProviderRef {
    /// WebhookProvider (in the subscription's namespace, the default) or ClusterWebhookProvider.
    #[serde(default)]
    pub kind: ProviderKind,
    /// Name of the WebhookProvider or ClusterWebhookProvider.
    #[schemars(length(min = 1, max = 253))]
    pub name: String,
}

/// The kind of provider object a subscription refers to.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub enum ProviderKind {
    /// A namespaced WebhookProvider in the subscription's namespace.
    #[default]
    WebhookProvider,
    /// A cluster-scoped ClusterWebhookProvider that admits the subscription's namespace.
    ClusterWebhookProvider,
}

impl ProviderKind {
    /// The kind's name.
    pub fn as_str(self) -> &'static str {
        match self {
            ProviderKind::WebhookProvider => "WebhookProvider",
            ProviderKind::ClusterWebhookProvider => "ClusterWebhookProvider",
        }
    }
}

/// Event families of the Avaya Infinity Events API.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, schemars::JsonSchema)]
pub enum AvayaFamily {
    /// Agent events (login, logout, ready, not-ready).
    #[serde(rename = "AGENT")]
    Agent,
    /// Interaction events (created, completed, transferred).
    #[serde(rename = "INTERACTION")]
    Interaction,
    /// Queue events.
    #[serde(rename = "QUEUE")]
    Queue,
    /// Every family; must be the only entry.
    #[serde(rename = "ALL")]
    All,
}

/// The HTTP method Avaya uses to deliver events.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub enum AvayaDeliveryMethod {
    /// Deliver with POST (the default).
    #[default]
    #[serde(rename = "POST")]
    Post,
    /// Deliver with PUT.
    #[serde(rename = "PUT")]
    Put,
}

fn default_auth_token_header() -> String {
    "auth-token".to_string()
}

/// An Avaya Infinity Events API webhook subscription.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct AvayaSubscription {
    /// Event families to subscribe to (AGENT, INTERACTION, QUEUE), at most 3; ALL must stand alone.
    #[schemars(length(min = 1, max = 3))]
    #[x_kube(
        validation = Rule::new("!self.exists(f, f == 'ALL') || self.size() == 1").message("spec.avaya.families: ALL must be the only family; remove the other families or remove ALL"),
        validation = Rule::new("self.all(f, self.exists_one(g, g == f))").message("spec.avaya.families lists a family twice; remove the duplicate")
    )]
    pub families: Vec<AvayaFamily>,
    /// Event names to receive (1 to 25, each 1 to 256 characters, e.g. Agent.LoggedIn), or [ALL] for every
    /// event of the chosen families.
    #[schemars(length(min = 1, max = 25), inner(length(min = 1, max = 256)))]
    #[x_kube(validation = Rule::new("!self.exists(e, e == 'ALL') || self.size() == 1").message("spec.avaya.events: ALL must be the only entry; use [ALL] for every event of the families, or list event names without ALL"))]
    pub events: Vec<String>,
    /// The HTTP method Avaya delivers with: POST (default) or PUT.
    #[serde(default)]
    pub method: AvayaDeliveryMethod,
    /// The token Avaya sends with every delivery, from a Secret key (1 to 256 characters). Changing the
    /// Secret rotates it through a renew.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auth_token: Option<SecretValueSource>,
    /// The header that carries authToken on each delivery (default auth-token).
    #[serde(default = "default_auth_token_header")]
    #[schemars(length(min = 1, max = 256), pattern(r"^[A-Za-z0-9!#$%&'*+.^_`|~-]+$"))]
    pub auth_token_header: String,
}

fn default_true() -> bool {
    true
}

/// A Vonage Contact Center (NewVoiceMedia) webhook subscription.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct VonageSubscription {
    /// Subscription name, unique in the account (3 to 128 characters); the key by which an existing
    /// subscription is adopted. Defaults to `<namespace>-<name>` of this resource.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 3, max = 128))]
    pub name: Option<String>,
    /// Event types to receive, e.g. agent.presencechanged.v1 or channel.ended.v1; wildcards select sets of
    /// types.
    #[schemars(length(min = 1, max = 100), inner(length(min = 1, max = 256), pattern(r"^\S+$")))]
    pub events: Vec<String>,
    /// Whether notifications are sent (default true).
    #[serde(default = "default_true")]
    pub enabled: bool,
    /// The base64 signing secret (at least 32 bytes) Vonage signs deliveries with. Without it the operator
    /// generates one into the Secret <name>-vonage-signing (key secret, owned by this subscription) before
    /// creating the subscription, so it is never lost (a secret Vonage generated would be returned only
    /// once).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signing_secret: Option<SigningSecretSource>,
}

fn default_attempts() -> i32 {
    50
}

/// An AuthVia subscription.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, KubeSchema)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("!has(self.autoDisable) || self.autoDisable || (has(self.attempts) && self.attempts <= 3)").message("spec.authvia.autoDisable may be false only when spec.authvia.attempts is 3 or less; lower attempts to 0-3 or set autoDisable to true"))]
pub struct AuthViaSubscription {
    /// The event type to receive, `<resource>.<action>`, e.g. business_processes.update.
    #[serde(rename = "type")]
    #[schemars(length(min = 1, max = 128), pattern(r"^[a-z][a-z0-9_]*(\.[a-z][a-z0-9_]*)+$"))]
    pub event_type: String,
    /// What the subscription is for (at most 256 characters).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 256))]
    pub description: Option<String>,
    /// How long AuthVia waits for the endpoint to answer, 5 to 15 seconds (needs the
    /// subscriptions:timeout scope).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 5, max = 15))]
    pub timeout_seconds: Option<i32>,
    /// Delivery attempts per event before AuthVia gives up (0 to 50, default 50).
    #[serde(default = "default_attempts")]
    #[schemars(range(min = 0, max = 50))]
    pub attempts: i32,
    /// Whether AuthVia disables the subscription when an event runs out of attempts (default true); may be
    /// false only when attempts is 3 or less.
    #[serde(default = "default_true")]
    pub auto_disable: bool,
    /// An https URL AuthVia calls (GET, with id and timestamp query parameters) right after it disables
    /// the subscription.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 10, max = 2048))]
    #[x_kube(validation = Rule::new("isURL(self) && url(self).getScheme() == 'https'").message("spec.authvia.disableCallbackUrl must be an absolute https:// URL"))]
    pub disable_callback_url: Option<String>,
    /// Whether the subscription is disabled (default false). Setting it back to false re-enables a
    /// subscription AuthVia disabled.
    #[serde(default)]
    pub disabled: bool,
    /// Equality filters on event attributes: each key must match; a list means any of; a `!` prefix on a
    /// string negates it. Values are strings, numbers, booleans or lists of them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "condition_map_schema")]
    pub conditions: Option<BTreeMap<String, serde_json::Value>>,
    /// Static headers AuthVia adds to every delivery; sensitive values come from Secrets.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 20))]
    #[x_kube(
        validation = Rule::new("self.all(h, self.exists_one(o, o.name.lowerAscii() == h.name.lowerAscii()))").message("spec.authvia.headers names a header twice; header names are case-insensitive, keep one entry per name"),
        validation = Rule::new("self.all(h, !h.name.lowerAscii().startsWith('x-authvia-'))").message("spec.authvia.headers must not set X-AUTHVIA-* headers; AuthVia uses them to sign deliveries")
    )]
    pub headers: Vec<AuthViaHeader>,
    /// The secret (32 to 64 characters) AuthVia signs deliveries with. Without it AuthVia signs with the
    /// account-level secret.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signing_secret: Option<SigningSecretSource>,
}

fn condition_map_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
    schemars::json_schema!({
        "type": "object",
        "description": "Equality filters on event attributes: each key must match; a list means any of; a `!` prefix on a string negates it.",
        "additionalProperties": { "x-kubernetes-preserve-unknown-fields": true },
        "nullable": true
    })
}

/// One static header of an AuthVia delivery.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, KubeSchema)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("has(self.value) != has(self.valueFrom)").message("spec.authvia.headers[]: set exactly one of value or valueFrom.secretKeyRef"))]
pub struct AuthViaHeader {
    /// Header name.
    #[schemars(length(min = 1, max = 256), pattern(r"^[A-Za-z0-9!#$%&'*+.^_`|~-]+$"))]
    pub name: String,
    /// A literal value, for values that are not sensitive.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 4096))]
    pub value: Option<String>,
    /// The value from a Secret key, for sensitive values.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value_from: Option<SecretValueSource>,
}

/// When to renew a subscription that expires.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, KubeSchema)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("!(has(self.renewBefore) && has(self.renewBeforePercentage))").message("spec.renewal: set either renewBefore or renewBeforePercentage, not both"))]
pub struct RenewalPolicy {
    /// Renew this long before expiry, as a Go duration such as 5m or 1h30m. Clamped to the lifetime the
    /// provider reports.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 32), pattern(r"^([0-9]+(\.[0-9]+)?(ns|us|µs|ms|s|m|h))+$"))]
    pub renew_before: Option<String>,
    /// Renew when this share of the lifetime is left, 1 to 99 percent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 99))]
    pub renew_before_percentage: Option<i32>,
}

/// Observed state of a webhook subscription, written only by the operator.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct WebhookSubscriptionStatus {
    /// The metadata.generation the status was computed from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// Ready (is the remote subscription usable) and Synced (did the last reconcile succeed).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["type"]))]
    pub conditions: Vec<Condition>,
    /// The provider's id of the remote subscription.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subscription_id: Option<String>,
    /// What the provider says of the subscription: ACTIVE, INACTIVE, PENDING, Enabled or Disabled.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub remote_state: Option<String>,
    /// When the remote subscription expires unless renewed (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("format" = "date-time"))]
    pub expires_at: Option<String>,
    /// When the operator renews the remote subscription next (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("format" = "date-time"))]
    pub renewal_time: Option<String>,
    /// When the remote subscription was last renewed (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("format" = "date-time"))]
    pub last_renewed_at: Option<String>,
    /// How many renewals the operator has made.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub renewal_count: Option<i64>,
    /// When the operator last created, changed or renewed the remote subscription (RFC 3339): a provider
    /// that shows changes late (Vonage: up to 30 s) is not believed to have lost it before that has passed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("format" = "date-time"))]
    pub last_remote_write_time: Option<String>,
    /// Consecutive failed reconciles; reset by a success.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failed_attempts: Option<i32>,
    /// When the last reconcile failed (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("format" = "date-time"))]
    pub last_failure_time: Option<String>,
    /// A hash of the spec and secret values last applied to the provider; detects rotation without storing
    /// a secret.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub applied_secret_hash: Option<String>,
    /// The last webhook-operator.dev/reconcile-requested-at value handled.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_handled_reconcile_at: Option<String>,
    /// The last webhook-operator.dev/renew-requested-at value handled.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_handled_renew_at: Option<String>,
}
