//! Observe: resolve a subscription's provider, credentials and referenced Secrets into a provider client
//! and a [`Desired`] subscription. Anything missing or mismatched becomes a [`ConfigError`] that says what
//! to fix; no remote call is made for it. Secret values are read into `SecretString`s only.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};

use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::{Namespace, Secret};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use kube::api::{Api, Patch, PatchParams};
use kube::{Resource, ResourceExt};
use secrecy::{ExposeSecret, SecretString};
use serde_json::{Map, Value, json};

use super::error::{ConfigError, ReconcileError};
use crate::api::{
    AuthViaProvider, AvayaProvider, ClusterWebhookProvider, CredentialsSecretRef, ProviderKind, RateLimit,
    SecretKeySelector, SigningSecretSource, VonageProvider, WebhookProvider, WebhookSubscription,
};
use crate::clock::SharedClock;
use crate::providers::authvia::{AuthviaClient, DEFAULT_BASE_URL};
use crate::providers::avaya::{AvayaClient, urls_for_customer};
use crate::providers::http::RetryPolicy;
use crate::providers::vonage::{VonageClient, urls_for_region};
use crate::providers::{
    AccountConfig, AuthviaDesired, AvayaDesired, Desired, DesiredSpec, ProviderType, VonageDesired, WebhookApi,
    fingerprint_bytes,
};

/// The manager name of the operator's own writes.
pub const MANAGER: &str = "webhook-operator";

/// A provider's spec, whichever kind holds it.
#[derive(Clone, Debug)]
pub struct ProviderSettings {
    /// `WebhookProvider/ns/name` or `ClusterWebhookProvider/name`: the account's key.
    pub key: String,
    /// Human-readable reference for messages.
    pub display: String,
    /// Avaya block.
    pub avaya: Option<AvayaProvider>,
    /// Vonage block.
    pub vonage: Option<VonageProvider>,
    /// AuthVia block.
    pub authvia: Option<AuthViaProvider>,
    /// Credentials.
    pub credentials: CredentialsSecretRef,
    /// Where the credentials Secret lives.
    pub credentials_namespace: String,
    /// Rate limit.
    pub rate_limit: Option<RateLimit>,
}

impl ProviderSettings {
    /// From a namespaced provider.
    pub fn namespaced(p: &WebhookProvider) -> Self {
        let ns = p.namespace().unwrap_or_default();
        ProviderSettings {
            key: format!("WebhookProvider/{ns}/{}", p.name_any()),
            display: format!("WebhookProvider \"{}\"", p.name_any()),
            avaya: p.spec.avaya.clone(),
            vonage: p.spec.vonage.clone(),
            authvia: p.spec.authvia.clone(),
            credentials: p.spec.credentials_secret_ref.clone(),
            credentials_namespace: ns,
            rate_limit: p.spec.rate_limit.clone(),
        }
    }

    /// From a cluster provider, whose Secrets live in the operator's namespace.
    pub fn cluster(p: &ClusterWebhookProvider, operator_namespace: &str) -> Self {
        ProviderSettings {
            key: format!("ClusterWebhookProvider/{}", p.name_any()),
            display: format!("ClusterWebhookProvider \"{}\"", p.name_any()),
            avaya: p.spec.avaya.clone(),
            vonage: p.spec.vonage.clone(),
            authvia: p.spec.authvia.clone(),
            credentials: p.spec.credentials_secret_ref.clone(),
            credentials_namespace: operator_namespace.to_string(),
            rate_limit: p.spec.rate_limit.clone(),
        }
    }

    /// Which API the provider is for.
    pub fn provider_type(&self) -> Result<ProviderType, ConfigError> {
        match (&self.avaya, &self.vonage, &self.authvia) {
            (Some(_), None, None) => Ok(ProviderType::Avaya),
            (None, Some(_), None) => Ok(ProviderType::Vonage),
            (None, None, Some(_)) => Ok(ProviderType::Authvia),
            _ => Err(ConfigError::provider(format!(
                "{} must set exactly one of spec.avaya, spec.vonage or spec.authvia",
                self.display
            ))),
        }
    }
}

/// A cached client and the fingerprint of the settings it was built from.
type Account = (String, Arc<dyn WebhookApi>);

/// Provider clients by account, rebuilt when the provider or its credentials change (token caches and
/// rate limiters live as long as the account's settings do).
pub struct ProviderRegistry {
    clients: Mutex<HashMap<String, Account>>,
    http: reqwest::Client,
    clock: SharedClock,
    retry: RetryPolicy,
}

impl std::fmt::Debug for ProviderRegistry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ProviderRegistry").finish_non_exhaustive()
    }
}

impl ProviderRegistry {
    /// An empty registry.
    pub fn new(http: reqwest::Client, clock: SharedClock, retry: RetryPolicy) -> Self {
        ProviderRegistry {
            clients: Mutex::new(HashMap::new()),
            http,
            clock,
            retry,
        }
    }

    /// The client for `settings` with these credentials.
    pub fn client(
        &self,
        settings: &ProviderSettings,
        client_id: &str,
        client_secret: &SecretString,
    ) -> Result<Arc<dyn WebhookApi>, ConfigError> {
        let provider_type = settings.provider_type()?;
        let identity = serde_json::to_vec(&json!({
            "avaya": settings.avaya, "vonage": settings.vonage, "authvia": settings.authvia,
            "rateLimit": settings.rate_limit, "clientId": client_id, "secret": client_secret.expose_secret(),
        }))
        .expect("JSON");
        let fingerprint = fingerprint_bytes(&identity);
        let mut clients = self.clients.lock().expect("registry");
        if let Some((existing, client)) = clients.get(&settings.key)
            && *existing == fingerprint
        {
            return Ok(client.clone());
        }
        let (rps, burst) = settings
            .rate_limit
            .as_ref()
            .map(|r| (f64::from(r.requests_per_second.max(1)), r.burst.max(1) as u32))
            .unwrap_or((5.0, 10));
        let account = |base_url: String, token_url: String| AccountConfig {
            base_url,
            token_url,
            client_id: client_id.to_string(),
            client_secret: client_secret.clone(),
            requests_per_second: rps,
            burst,
            retry: self.retry,
            http: self.http.clone(),
            clock: self.clock.clone(),
        };
        let client: Arc<dyn WebhookApi> = match provider_type {
            ProviderType::Avaya => {
                let a = settings.avaya.as_ref().expect("checked");
                let (base, token) = match (&a.customer_id, &a.base_url, &a.token_url) {
                    (Some(customer), _, _) => urls_for_customer(customer),
                    (None, Some(base), Some(token)) => (base.clone(), token.clone()),
                    _ => {
                        return Err(ConfigError::provider(format!(
                            "{}: set spec.avaya.customerId, or both baseUrl and tokenUrl",
                            settings.display
                        )));
                    }
                };
                Arc::new(AvayaClient::new(account(base, token)))
            }
            ProviderType::Vonage => {
                let v = settings.vonage.as_ref().expect("checked");
                let (base, token) = match (&v.region, &v.base_url, &v.token_url) {
                    (Some(region), _, _) => {
                        let region = serde_json::to_value(region).expect("JSON");
                        urls_for_region(region.as_str().unwrap_or("emea"))
                    }
                    (None, Some(base), Some(token)) => (base.clone(), token.clone()),
                    _ => {
                        return Err(ConfigError::provider(format!(
                            "{}: set spec.vonage.region, or both baseUrl and tokenUrl",
                            settings.display
                        )));
                    }
                };
                Arc::new(VonageClient::new(account(base, token)))
            }
            ProviderType::Authvia => {
                let a = settings.authvia.as_ref().expect("checked");
                let base = a.base_url.clone().unwrap_or_else(|| DEFAULT_BASE_URL.to_string());
                let token = AuthviaClient::token_url(&base);
                let scopes = (!a.scopes.is_empty()).then(|| a.scopes.join(" "));
                Arc::new(AuthviaClient::new(account(base, token), &a.account_id, scopes))
            }
        };
        clients.insert(settings.key.clone(), (fingerprint, client.clone()));
        Ok(client)
    }
}

/// Reads the Secrets of one namespace for one pass, each at most once: references often share a Secret
/// (a provider's id and secret, AuthVia's signing secret and header values).
pub struct SecretReader<'a> {
    client: &'a kube::Client,
    namespace: String,
    cache: HashMap<String, Option<Secret>>,
}

impl<'a> SecretReader<'a> {
    /// A reader of `namespace`.
    pub fn new(client: &'a kube::Client, namespace: &str) -> Self {
        SecretReader {
            client,
            namespace: namespace.to_string(),
            cache: HashMap::new(),
        }
    }

    /// The Secret, if it exists.
    async fn secret(&mut self, name: &str) -> Result<Option<&Secret>, kube::Error> {
        if !self.cache.contains_key(name) {
            let secrets: Api<Secret> = Api::namespaced(self.client.clone(), &self.namespace);
            let secret = secrets.get_opt(name).await?;
            self.cache.insert(name.to_string(), secret);
        }
        Ok(self.cache[name].as_ref())
    }

    /// One key's value, or a ConfigError naming the Secret, the key and where it is used.
    pub async fn value(
        &mut self,
        selector: &SecretKeySelector,
        used_by: &str,
        provider_error: bool,
    ) -> Result<SecretString, ReconcileError> {
        let namespace = self.namespace.clone();
        let err = |message: String| -> ReconcileError {
            if provider_error {
                ConfigError::provider(message).into()
            } else {
                ConfigError::spec(message).into()
            }
        };
        let Some(secret) = self.secret(&selector.name).await? else {
            return Err(err(format!(
                "Secret {namespace}/{} (referenced by {used_by}) does not exist; create it or fix the reference",
                selector.name
            )));
        };
        let value = secret
            .data
            .as_ref()
            .and_then(|d| d.get(&selector.key))
            .map(|ByteString(bytes)| String::from_utf8_lossy(bytes).into_owned());
        match value {
            Some(v) if !v.is_empty() => Ok(SecretString::from(v)),
            _ => Err(err(format!(
                "Secret {namespace}/{} has no key \"{}\" (referenced by {used_by}); add the key or fix the reference",
                selector.name, selector.key
            ))),
        }
    }
}

/// Whether a namespace with these labels is selected.
pub fn selector_matches(selector: &LabelSelector, labels: &BTreeMap<String, String>) -> bool {
    let labels_ok = selector
        .match_labels
        .iter()
        .flatten()
        .all(|(k, v)| labels.get(k) == Some(v));
    let expressions_ok = selector.match_expressions.iter().flatten().all(|e| {
        let values = e.values.clone().unwrap_or_default();
        match e.operator.as_str() {
            "In" => labels.get(&e.key).is_some_and(|v| values.contains(v)),
            "NotIn" => labels.get(&e.key).is_none_or(|v| !values.contains(v)),
            "Exists" => labels.contains_key(&e.key),
            "DoesNotExist" => !labels.contains_key(&e.key),
            _ => false,
        }
    });
    labels_ok && expressions_ok
}

/// Finds the subscription's provider, checking that its namespace may use a cluster provider.
pub async fn resolve_provider(
    client: &kube::Client,
    sub: &WebhookSubscription,
    operator_namespace: &str,
) -> Result<ProviderSettings, ReconcileError> {
    let ns = sub.namespace().unwrap_or_default();
    let name = &sub.spec.provider_ref.name;
    match sub.spec.provider_ref.kind {
        ProviderKind::WebhookProvider => {
            let api: Api<WebhookProvider> = Api::namespaced(client.clone(), &ns);
            match api.get_opt(name).await? {
                Some(p) => Ok(ProviderSettings::namespaced(&p)),
                None => Err(ConfigError::provider(format!(
                    "WebhookProvider \"{name}\" does not exist in namespace {ns}; create it or fix spec.providerRef (kind ClusterWebhookProvider for a cluster-wide one)"
                ))
                .into()),
            }
        }
        ProviderKind::ClusterWebhookProvider => {
            let api: Api<ClusterWebhookProvider> = Api::all(client.clone());
            let Some(p) = api.get_opt(name).await? else {
                return Err(ConfigError::provider(format!(
                    "ClusterWebhookProvider \"{name}\" does not exist; create it or fix spec.providerRef"
                ))
                .into());
            };
            if let Some(selector) = &p.spec.namespace_selector {
                let namespaces: Api<Namespace> = Api::all(client.clone());
                let labels = namespaces
                    .get_opt(&ns)
                    .await?
                    .map(|n| n.labels().clone())
                    .unwrap_or_default();
                if !selector_matches(selector, &labels) {
                    return Err(ConfigError::provider(format!(
                        "ClusterWebhookProvider \"{name}\" does not admit namespace {ns} (its spec.namespaceSelector does not match the namespace's labels); ask the platform team to admit it, or use a WebhookProvider in this namespace"
                    ))
                    .into());
                }
            }
            Ok(ProviderSettings::cluster(&p, operator_namespace))
        }
    }
}

/// Reads the provider's credentials.
pub async fn credentials(
    client: &kube::Client,
    settings: &ProviderSettings,
) -> Result<(String, SecretString), ReconcileError> {
    let r = &settings.credentials;
    let used_by = format!("spec.credentialsSecretRef of {}", settings.display);
    let id_selector = SecretKeySelector {
        name: r.name.clone(),
        key: r.client_id_key.clone(),
    };
    let secret_selector = SecretKeySelector {
        name: r.name.clone(),
        key: r.client_secret_key.clone(),
    };
    let mut reader = SecretReader::new(client, &settings.credentials_namespace);
    let id = reader.value(&id_selector, &used_by, true).await?;
    let secret = reader.value(&secret_selector, &used_by, true).await?;
    Ok((id.expose_secret().to_string(), secret))
}

/// Name of the Secret that keeps a Vonage-generated signing secret when the spec names none.
pub fn vonage_secret_name(sub: &WebhookSubscription) -> String {
    format!("{}-vonage-signing", sub.name_any())
}

/// A signing secret: read it, or (with `generate: true`) create it once in a Secret the subscription owns.
async fn signing_secret(
    reader: &mut SecretReader<'_>,
    sub: &WebhookSubscription,
    source: &SigningSecretSource,
    field: &str,
    value: impl Fn() -> String,
) -> Result<SecretString, ReconcileError> {
    let ns = sub.namespace().unwrap_or_default();
    let selector = &source.secret_key_ref;
    match reader.value(selector, field, false).await {
        Ok(v) => Ok(v),
        Err(ReconcileError::Config(_)) if source.generate => {
            let existing = reader.secret(&selector.name).await?;
            if existing.is_some_and(|s| {
                s.owner_references()
                    .iter()
                    .all(|o| o.uid != sub.uid().unwrap_or_default())
            }) {
                return Err(ConfigError::spec(format!(
                    "{field}: Secret {ns}/{} exists without key \"{}\" and is not owned by this subscription, so it is not generated into; add the key or use another Secret",
                    selector.name, selector.key
                ))
                .into());
            }
            let generated = value();
            store_secret(reader.client, sub, &selector.name, &selector.key, &generated).await?;
            Ok(SecretString::from(generated))
        }
        Err(e) => Err(e),
    }
}

/// Writes `key` of a Secret owned by the subscription (server-side apply, so other keys stay).
pub async fn store_secret(
    client: &kube::Client,
    sub: &WebhookSubscription,
    name: &str,
    key: &str,
    value: &str,
) -> Result<(), kube::Error> {
    let ns = sub.namespace().unwrap_or_default();
    let secrets: Api<Secret> = Api::namespaced(client.clone(), &ns);
    let owner = sub.controller_owner_ref(&()).expect("subscriptions have a uid");
    let body = json!({
        "apiVersion": "v1", "kind": "Secret",
        "metadata": {"name": name, "namespace": ns, "ownerReferences": [owner],
                     "labels": {"app.kubernetes.io/managed-by": MANAGER}},
        "type": "Opaque",
        "stringData": {key: value},
    });
    secrets
        .patch(name, &PatchParams::apply(MANAGER).force(), &Patch::Apply(&body))
        .await?;
    Ok(())
}

fn random_text(len: usize) -> String {
    std::iter::repeat_with(fastrand::alphanumeric).take(len).collect()
}

/// A random Vonage signing secret: Base64 of 32 random bytes.
pub fn random_vonage_secret() -> String {
    use base64::Engine as _;
    let bytes: Vec<u8> = std::iter::repeat_with(|| fastrand::u8(..)).take(32).collect();
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

/// Checks AuthVia conditions: each value a scalar, or a non-empty list of scalars.
fn conditions(raw: &Option<BTreeMap<String, Value>>) -> Result<Map<String, Value>, ConfigError> {
    let mut out = Map::new();
    for (key, value) in raw.iter().flatten() {
        let scalar = |v: &Value| v.is_string() || v.is_number() || v.is_boolean();
        let ok = scalar(value) || value.as_array().is_some_and(|a| !a.is_empty() && a.iter().all(scalar));
        if !ok {
            return Err(ConfigError::spec(format!(
                "spec.authvia.conditions.{key} must be a string, number or boolean, or a non-empty list of them"
            )));
        }
        out.insert(key.clone(), value.clone());
    }
    Ok(out)
}

/// Builds what the provider should hold, reading (and where asked, generating) the referenced Secrets.
pub async fn desired(
    client: &kube::Client,
    sub: &WebhookSubscription,
    provider_type: ProviderType,
    provider_display: &str,
) -> Result<Desired, ReconcileError> {
    let ns = sub.namespace().unwrap_or_default();
    let spec = &sub.spec;
    let set = block_type(sub);
    if set != provider_type {
        return Err(ConfigError::spec(format!(
            "spec.{} is set but {provider_display} is for {}; use spec.{} instead, or point spec.providerRef at a provider for {}",
            set.as_str(),
            provider_type.as_str(),
            provider_type.as_str(),
            set.as_str()
        ))
        .into());
    }
    let mut reader = SecretReader::new(client, &ns);
    let spec_out = match provider_type {
        ProviderType::Avaya => {
            let a = spec.avaya.as_ref().expect("checked");
            let auth_token = match &a.auth_token {
                Some(source) => Some(
                    reader
                        .value(&source.secret_key_ref, "spec.avaya.authToken", false)
                        .await?,
                ),
                None => None,
            };
            DesiredSpec::Avaya(AvayaDesired {
                families: a
                    .families
                    .iter()
                    .map(|f| {
                        serde_json::to_value(f)
                            .expect("JSON")
                            .as_str()
                            .unwrap_or_default()
                            .to_string()
                    })
                    .collect(),
                events: a.events.clone(),
                method: serde_json::to_value(a.method)
                    .expect("JSON")
                    .as_str()
                    .unwrap_or("POST")
                    .to_string(),
                auth_token,
                auth_token_header: a.auth_token_header.clone(),
            })
        }
        ProviderType::Vonage => {
            let v = spec.vonage.as_ref().expect("checked");
            let secret = match &v.signing_secret {
                Some(source) => Some(
                    signing_secret(
                        &mut reader,
                        sub,
                        source,
                        "spec.vonage.signingSecret",
                        random_vonage_secret,
                    )
                    .await?,
                ),
                None => None,
            };
            DesiredSpec::Vonage(VonageDesired {
                name: v.name.clone().unwrap_or_else(|| format!("{ns}-{}", sub.name_any())),
                events: v.events.clone(),
                enabled: v.enabled,
                secret,
            })
        }
        ProviderType::Authvia => {
            let a = spec.authvia.as_ref().expect("checked");
            let secret = match &a.signing_secret {
                Some(source) => Some(
                    signing_secret(&mut reader, sub, source, "spec.authvia.signingSecret", || {
                        random_text(48)
                    })
                    .await?,
                ),
                None => None,
            };
            let mut headers = Vec::new();
            for (i, h) in a.headers.iter().enumerate() {
                let value = match (&h.value, &h.value_from) {
                    (Some(v), _) => SecretString::from(v.clone()),
                    (None, Some(source)) => {
                        let used_by = format!("spec.authvia.headers[{i}].valueFrom");
                        reader.value(&source.secret_key_ref, &used_by, false).await?
                    }
                    (None, None) => {
                        return Err(ConfigError::spec(format!(
                            "spec.authvia.headers[{i}] needs value or valueFrom.secretKeyRef"
                        ))
                        .into());
                    }
                };
                headers.push((h.name.clone(), value));
            }
            DesiredSpec::Authvia(AuthviaDesired {
                event_type: a.event_type.clone(),
                description: a.description.clone(),
                timeout_seconds: a.timeout_seconds.map(i64::from),
                attempts: i64::from(a.attempts),
                auto_disable: a.auto_disable,
                disable_callback_url: a.disable_callback_url.clone(),
                disabled: a.disabled,
                conditions: conditions(&a.conditions)?,
                headers,
                secret,
            })
        }
    };
    Ok(Desired {
        endpoint: spec.endpoint.clone(),
        spec: spec_out,
    })
}

/// Which API a subscription's spec block is for (the schema requires exactly one block).
pub fn block_type(sub: &WebhookSubscription) -> ProviderType {
    match (&sub.spec.avaya, &sub.spec.vonage) {
        (Some(_), _) => ProviderType::Avaya,
        (_, Some(_)) => ProviderType::Vonage,
        _ => ProviderType::Authvia,
    }
}

/// A Secret change must reach subscriptions that reference it by name in their namespace.
pub fn referenced_secrets(sub: &WebhookSubscription) -> Vec<String> {
    let spec = &sub.spec;
    let mut names = Vec::new();
    if let Some(a) = &spec.avaya
        && let Some(t) = &a.auth_token
    {
        names.push(t.secret_key_ref.name.clone());
    }
    if let Some(v) = &spec.vonage
        && let Some(s) = &v.signing_secret
    {
        names.push(s.secret_key_ref.name.clone());
    }
    if let Some(a) = &spec.authvia {
        if let Some(s) = &a.signing_secret {
            names.push(s.secret_key_ref.name.clone());
        }
        for h in &a.headers {
            if let Some(v) = &h.value_from {
                names.push(v.secret_key_ref.name.clone());
            }
        }
    }
    names
}

/// `metadata.uid` or an empty string.
pub fn uid_of<K: Resource>(object: &K) -> String {
    object.meta().uid.clone().unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelectorRequirement;

    #[test]
    fn namespace_selectors() {
        let labels = BTreeMap::from([("team".to_string(), "payments".to_string())]);
        let selector = |op: &str, values: Option<Vec<&str>>| LabelSelector {
            match_labels: None,
            match_expressions: Some(vec![LabelSelectorRequirement {
                key: "team".into(),
                operator: op.into(),
                values: values.map(|v| v.into_iter().map(str::to_string).collect()),
            }]),
        };
        assert!(selector_matches(&selector("In", Some(vec!["payments"])), &labels));
        assert!(!selector_matches(&selector("NotIn", Some(vec!["payments"])), &labels));
        assert!(selector_matches(&selector("Exists", None), &labels));
        assert!(!selector_matches(&selector("DoesNotExist", None), &labels));
        let by_label = LabelSelector {
            match_labels: Some(BTreeMap::from([("team".to_string(), "search".to_string())])),
            match_expressions: None,
        };
        assert!(!selector_matches(&by_label, &labels));
        assert!(selector_matches(&LabelSelector::default(), &labels));
    }

    #[test]
    fn conditions_must_be_scalars_or_lists_of_scalars() {
        let ok = Some(BTreeMap::from([
            ("status".to_string(), json!("failed")),
            ("amount".to_string(), json!([1, 2])),
        ]));
        assert_eq!(conditions(&ok).unwrap().len(), 2);
        let bad = Some(BTreeMap::from([("status".to_string(), json!({"nested": true}))]));
        let err = conditions(&bad).unwrap_err();
        assert!(err.message.starts_with("spec.authvia.conditions.status must be"));
        assert_eq!(err.reason, "InvalidSpec");
    }
}
