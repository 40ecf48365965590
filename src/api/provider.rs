//! `WebhookProvider` and `ClusterWebhookProvider`: how to reach one provider account.
// kube's `printcolumn(...)` repeats `type_ = …` per column; clippy reads that as a duplicated attribute.
#![allow(clippy::duplicated_attributes)]

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, LabelSelector};
use kube::{CustomResource, KubeSchema};
use serde::{Deserialize, Serialize};

/// How to reach one provider account: its API location and the Secret that holds its credentials.
#[derive(CustomResource, KubeSchema, Clone, Debug, PartialEq, Serialize, Deserialize)]
#[kube(
    group = "webhook-operator.dev",
    version = "v1alpha1",
    kind = "WebhookProvider",
    plural = "webhookproviders",
    singular = "webhookprovider",
    namespaced,
    status = "WebhookProviderStatus",
    shortname = "whprov",
    category = "webhooks",
    doc = "A provider account (Avaya Infinity, Vonage Contact Center or AuthVia) that WebhookSubscriptions in the same namespace can use.",
    printcolumn(
        name = "Ready",
        type_ = "string",
        json_path = ".status.conditions[?(@.type==\"Ready\")].status",
        description = "Whether the credentials obtain a token"
    ),
    printcolumn(
        name = "Reason",
        type_ = "string",
        json_path = ".status.conditions[?(@.type==\"Ready\")].reason",
        description = "Why the provider is or is not ready"
    ),
    printcolumn(name = "Age", type_ = "date", json_path = ".metadata.creationTimestamp")
)]
#[serde(rename_all = "camelCase")]
#[x_kube(
    validation = Rule::new("has(self.avaya) || has(self.vonage) || has(self.authvia)").message("spec: set one provider block, spec.avaya, spec.vonage or spec.authvia"),
    validation = Rule::new("(has(self.avaya) ? 1 : 0) + (has(self.vonage) ? 1 : 0) + (has(self.authvia) ? 1 : 0) <= 1").message("spec: only one provider block may be set; keep one of spec.avaya, spec.vonage or spec.authvia and remove the others")
)]
pub struct WebhookProviderSpec {
    /// Avaya Infinity Events API account.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub avaya: Option<AvayaProvider>,
    /// Vonage Contact Center (NewVoiceMedia) account.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vonage: Option<VonageProvider>,
    /// AuthVia account.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub authvia: Option<AuthViaProvider>,
    /// The Secret that holds the API credentials. A ClusterWebhookProvider reads it from the operator's
    /// namespace.
    pub credentials_secret_ref: CredentialsSecretRef,
    /// The request budget every call to this account shares.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rate_limit: Option<RateLimit>,
    /// Where subscriptions through this provider may deliver: each endpoint must match one entry (its
    /// host, and its path under the entry's prefix). Unset or empty allows any https endpoint.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 64))]
    pub allowed_endpoints: Vec<AllowedEndpoint>,
}

/// A provider account shared by many namespaces; its credentials Secret lives in the operator's namespace.
#[derive(CustomResource, KubeSchema, Clone, Debug, PartialEq, Serialize, Deserialize)]
#[kube(
    group = "webhook-operator.dev",
    version = "v1alpha1",
    kind = "ClusterWebhookProvider",
    plural = "clusterwebhookproviders",
    singular = "clusterwebhookprovider",
    status = "WebhookProviderStatus",
    shortname = "cwhprov",
    category = "webhooks",
    doc = "A provider account (Avaya Infinity, Vonage Contact Center or AuthVia) shared by WebhookSubscriptions in the namespaces it admits.",
    printcolumn(
        name = "Ready",
        type_ = "string",
        json_path = ".status.conditions[?(@.type==\"Ready\")].status",
        description = "Whether the credentials obtain a token"
    ),
    printcolumn(
        name = "Reason",
        type_ = "string",
        json_path = ".status.conditions[?(@.type==\"Ready\")].reason",
        description = "Why the provider is or is not ready"
    ),
    printcolumn(name = "Age", type_ = "date", json_path = ".metadata.creationTimestamp")
)]
#[serde(rename_all = "camelCase")]
#[x_kube(
    validation = Rule::new("has(self.avaya) || has(self.vonage) || has(self.authvia)").message("spec: set one provider block, spec.avaya, spec.vonage or spec.authvia"),
    validation = Rule::new("(has(self.avaya) ? 1 : 0) + (has(self.vonage) ? 1 : 0) + (has(self.authvia) ? 1 : 0) <= 1").message("spec: only one provider block may be set; keep one of spec.avaya, spec.vonage or spec.authvia and remove the others"),
    validation = Rule::new("!has(self.namespaceSelector) || !has(self.namespaceSelector.matchExpressions) || self.namespaceSelector.matchExpressions.all(e, e.operator in ['In', 'NotIn', 'Exists', 'DoesNotExist'] && ((e.operator in ['In', 'NotIn']) == (has(e.values) && size(e.values) > 0)))").message("spec.namespaceSelector.matchExpressions: operator must be In, NotIn, Exists or DoesNotExist; In and NotIn need values, Exists and DoesNotExist take none")
)]
pub struct ClusterWebhookProviderSpec {
    /// Avaya Infinity Events API account.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub avaya: Option<AvayaProvider>,
    /// Vonage Contact Center (NewVoiceMedia) account.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vonage: Option<VonageProvider>,
    /// AuthVia account.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub authvia: Option<AuthViaProvider>,
    /// The Secret that holds the API credentials, in the operator's namespace.
    pub credentials_secret_ref: CredentialsSecretRef,
    /// The request budget every call to this account shares.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rate_limit: Option<RateLimit>,
    /// Which namespaces may use this provider, by their labels. Unset admits every namespace.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace_selector: Option<LabelSelector>,
    /// Where subscriptions through this provider may deliver: each endpoint must match one entry (its
    /// host, and its path under the entry's prefix). Unset or empty allows any https endpoint.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 64))]
    pub allowed_endpoints: Vec<AllowedEndpoint>,
}

/// An endpoint a provider's subscriptions may deliver to.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct AllowedEndpoint {
    /// The host: exact (`hooks.example.com`) or every subdomain of a domain (`*.example.com`, which does
    /// not admit example.com itself). Lower case, without a port.
    #[schemars(length(min = 1, max = 253), pattern(r"^(\*\.)?[a-z0-9]([-a-z0-9.]*[a-z0-9])?$"))]
    pub host: String,
    /// The path the endpoint's path must be or be under (`/team-a` admits `/team-a` and `/team-a/events`,
    /// not `/team-ab`). Unset admits every path.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 1024), pattern(r"^/"))]
    pub path_prefix: Option<String>,
}

/// An Avaya Infinity tenant.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, KubeSchema)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("has(self.customerId) ? !has(self.baseUrl) && !has(self.tokenUrl) : has(self.baseUrl) && has(self.tokenUrl)").message("spec.avaya: set customerId (the tenant subdomain, e.g. avaya1234), or both baseUrl and tokenUrl, but not both forms"))]
pub struct AvayaProvider {
    /// The tenant subdomain from the portal URL (avaya1234 in https://core.avaya1234.ec.avayacloud.com);
    /// the API and token URLs are derived from it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 63), pattern(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"))]
    pub customer_id: Option<String>,
    /// Override of the Events API base URL (…/api/events/v1). Credentials go there, so the operator accepts
    /// only https on *.avayacloud.com unless its installer allowed the origin (--allow-override-origin).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 2048))]
    #[x_kube(validation = Rule::new("isURL(self) && url(self).getScheme() in ['http', 'https']").message("spec.avaya.baseUrl must be an absolute http(s) URL"))]
    pub base_url: Option<String>,
    /// Override of the OAuth2 token URL; the same rule as baseUrl applies.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 2048))]
    #[x_kube(validation = Rule::new("isURL(self) && url(self).getScheme() in ['http', 'https']").message("spec.avaya.tokenUrl must be an absolute http(s) URL"))]
    pub token_url: Option<String>,
}

/// Vonage Contact Center regions.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum VonageRegion {
    /// Europe, Middle East and Africa.
    Emea,
    /// North America.
    Nam,
    /// Asia Pacific.
    Apac,
}

/// A Vonage Contact Center account.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, KubeSchema)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("has(self.region) ? !has(self.baseUrl) && !has(self.tokenUrl) : has(self.baseUrl) && has(self.tokenUrl)").message("spec.vonage: set region (emea, nam or apac), or both baseUrl and tokenUrl, but not both forms"))]
pub struct VonageProvider {
    /// The account's region: emea, nam or apac.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub region: Option<VonageRegion>,
    /// Override of the Webhooks API base URL (…/webhooks). Credentials go there, so the operator accepts
    /// only https on *.newvoicemedia.com or *.vonage.com unless its installer allowed the origin
    /// (--allow-override-origin).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 2048))]
    #[x_kube(validation = Rule::new("isURL(self) && url(self).getScheme() in ['http', 'https']").message("spec.vonage.baseUrl must be an absolute http(s) URL"))]
    pub base_url: Option<String>,
    /// Override of the OAuth2 token URL; the same rule as baseUrl applies.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 2048))]
    #[x_kube(validation = Rule::new("isURL(self) && url(self).getScheme() in ['http', 'https']").message("spec.vonage.tokenUrl must be an absolute http(s) URL"))]
    pub token_url: Option<String>,
}

/// An AuthVia account.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct AuthViaProvider {
    /// The account's AVID, which the subscription endpoints are scoped to.
    #[schemars(length(min = 1, max = 64), pattern(r"^[A-Za-z0-9_-]+$"))]
    pub account_id: String,
    /// Override of the API base URL (default https://api.authvia.com/v3); tokens are requested at
    /// `<baseUrl>/tokens`. Credentials go there, so the operator accepts only https on *.authvia.com unless
    /// its installer allowed the origin (--allow-override-origin).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 2048))]
    #[x_kube(validation = Rule::new("isURL(self) && url(self).getScheme() in ['http', 'https']").message("spec.authvia.baseUrl must be an absolute http(s) URL"))]
    pub base_url: Option<String>,
    /// Scopes added to every token request. Each call already asks for the scopes it needs:
    /// subscriptions:create and {resource}:read of the type to create, subscriptions:timeout when a
    /// timeout is sent, subscriptions:read, :update or :delete for the other calls.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 32), inner(length(min = 1, max = 128), pattern(r"^\S+$")))]
    pub scopes: Vec<String>,
}

fn default_client_id_key() -> String {
    "clientId".to_string()
}

fn default_client_secret_key() -> String {
    "clientSecret".to_string()
}

/// Where a provider's API credentials are.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct CredentialsSecretRef {
    /// Name of the Secret.
    #[schemars(length(min = 1, max = 253))]
    pub name: String,
    /// Key of the OAuth client id (AuthVia: the client id) (default clientId).
    #[serde(default = "default_client_id_key")]
    #[schemars(length(min = 1, max = 253), pattern(r"^[-._a-zA-Z0-9]+$"))]
    pub client_id_key: String,
    /// Key of the OAuth client secret (AuthVia: the secret key that signs token requests) (default
    /// clientSecret).
    #[serde(default = "default_client_secret_key")]
    #[schemars(length(min = 1, max = 253), pattern(r"^[-._a-zA-Z0-9]+$"))]
    pub client_secret_key: String,
}

fn default_requests_per_second() -> i32 {
    5
}

fn default_burst() -> i32 {
    10
}

/// A token-bucket request budget.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct RateLimit {
    /// Sustained requests per second to the account (default 5).
    #[serde(default = "default_requests_per_second")]
    #[schemars(range(min = 1, max = 1000))]
    pub requests_per_second: i32,
    /// Requests that may be made at once after a quiet period (default 10).
    #[serde(default = "default_burst")]
    #[schemars(range(min = 1, max = 1000))]
    pub burst: i32,
}

/// Observed state of a provider account.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct WebhookProviderStatus {
    /// The metadata.generation the status was computed from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// Ready: whether the credentials obtain a token.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["type"]))]
    pub conditions: Vec<Condition>,
}
