//! Observe: the reads of a pass, and nothing else. Resolves a subscription's provider (checking that a
//! cluster provider admits the namespace), reads its credentials and the Secrets the spec references, and
//! reads the remote subscription when the plan asks for it. Anything missing or mismatched becomes a
//! [`ConfigError`] that says what to fix. Secret values are read into `SecretString`s only; a signing
//! secret to be generated is only queued here ([`SecretReader::to_generate`]), `act` writes it.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use k8s_openapi::api::core::v1::{Namespace, Secret};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use kube::api::Api;
use kube::runtime::reflector::ObjectRef;
use kube::{Resource, ResourceExt};
use secrecy::{ExposeSecret, SecretString};

use super::bindings::{self, ProviderBlock};
use super::cache::{Caches, SecretValues};
use super::error::{ConfigError, ReconcileError};
use super::inventory::Inventoried;
use super::plan::{Lookup, Observation, Search};
use super::reason::Reason;
use crate::api::{
    AuthViaProvider, AvayaProvider, ClusterWebhookProvider, CredentialsSecretRef, ProviderKind, RateLimit,
    SecretKeySelector, SigningSecretSource, VonageProvider, WebhookProvider, WebhookProviderStatus,
    WebhookSubscription, condition, find_condition,
};
use crate::providers::{Desired, ProviderType, WebhookApi};

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
    /// Why the provider's own check refused its credentials, when its current `Ready` says so.
    pub credentials_refused: Option<String>,
    /// Where its subscriptions may deliver (empty: anywhere).
    pub allowed_endpoints: Vec<crate::api::AllowedEndpoint>,
}

/// Why a provider's `Ready` (for its current generation) says its credentials do not work: missing, or
/// refused by the provider. A transient failure to reach the provider is not such a reason.
pub fn credentials_refused(generation: Option<i64>, status: Option<&WebhookProviderStatus>) -> Option<String> {
    let status = status?;
    if status.observed_generation != generation {
        return None;
    }
    let ready = find_condition(&status.conditions, condition::READY)?;
    let refused = [Reason::Unauthorized.as_str(), Reason::CredentialsMissing.as_str()];
    (ready.status == "False" && refused.contains(&ready.reason.as_str())).then(|| ready.message.clone())
}

impl ProviderSettings {
    /// From a namespaced provider.
    pub fn namespaced(p: &WebhookProvider) -> Self {
        let ns = p.namespace().unwrap_or_default();
        ProviderSettings {
            key: provider_key(p),
            display: format!("WebhookProvider \"{}\"", p.name_any()),
            avaya: p.spec.avaya.clone(),
            vonage: p.spec.vonage.clone(),
            authvia: p.spec.authvia.clone(),
            credentials: p.spec.credentials_secret_ref.clone(),
            credentials_namespace: ns,
            rate_limit: p.spec.rate_limit.clone(),
            credentials_refused: credentials_refused(p.meta().generation, p.status.as_ref()),
            allowed_endpoints: p.spec.allowed_endpoints.clone(),
        }
    }

    /// From a cluster provider, whose Secrets live in the operator's namespace.
    pub fn cluster(p: &ClusterWebhookProvider, operator_namespace: &str) -> Self {
        ProviderSettings {
            key: cluster_provider_key(p),
            display: format!("ClusterWebhookProvider \"{}\"", p.name_any()),
            avaya: p.spec.avaya.clone(),
            vonage: p.spec.vonage.clone(),
            authvia: p.spec.authvia.clone(),
            credentials: p.spec.credentials_secret_ref.clone(),
            credentials_namespace: operator_namespace.to_string(),
            rate_limit: p.spec.rate_limit.clone(),
            credentials_refused: credentials_refused(p.meta().generation, p.status.as_ref()),
            allowed_endpoints: p.spec.allowed_endpoints.clone(),
        }
    }

    /// The provider's one block.
    pub fn block(&self) -> Result<ProviderBlock<'_>, ConfigError> {
        bindings::provider_block(&self.avaya, &self.vonage, &self.authvia, &self.display)
    }

    /// The provider object, as metrics label it (from its key: `Kind/namespace/name` or `Kind/name`).
    pub fn metric_labels(&self) -> crate::telemetry::ProviderLabels {
        let parts: Vec<&str> = self.key.split('/').collect();
        let (kind, namespace, name) = match parts.as_slice() {
            [kind, namespace, name] => (*kind, *namespace, *name),
            [kind, name] => (*kind, "", *name),
            _ => ("", "", self.key.as_str()),
        };
        crate::telemetry::ProviderLabels {
            provider_kind: kind.to_string(),
            provider_namespace: namespace.to_string(),
            provider_name: name.to_string(),
            provider_type: self
                .block()
                .map_or("unknown", |b| b.provider_type().as_str())
                .to_string(),
        }
    }
}

/// A signing secret the pass decided to generate: `act` writes it (into a Secret the subscription owns)
/// before any remote call uses it.
#[derive(Clone, Debug)]
pub struct SecretToGenerate {
    /// Secret name.
    pub name: String,
    /// Key.
    pub key: String,
    /// The new value.
    pub value: SecretString,
}

/// Reads the Secrets of one namespace for one pass, each at most once: references often share a Secret
/// (a provider's id and secret, AuthVia's signing secret and header values).
pub struct SecretReader<'a> {
    reads: Reads<'a>,
    namespace: String,
    /// The uid of the subscription the pass is for: the owner a generated Secret must have.
    owner_uid: String,
    cache: HashMap<String, Option<Arc<SecretValues>>>,
    to_generate: Vec<SecretToGenerate>,
}

/// Where a subscription's Secret-backed values come from: the cluster (a pass), or placeholders (`plan`,
/// which shows what would be sent without reading any Secret).
pub trait SecretSource {
    /// The value of `selector`; a missing Secret or key is an error naming `used_by`.
    fn value(
        &mut self,
        selector: &SecretKeySelector,
        used_by: &str,
        provider_error: bool,
    ) -> impl std::future::Future<Output = Result<SecretString, ReconcileError>> + Send;

    /// A signing secret, generated with `new_value` when the source asks for it and none exists.
    fn signing_secret(
        &mut self,
        source: &SigningSecretSource,
        field: &str,
        new_value: impl Fn() -> String + Send,
    ) -> impl std::future::Future<Output = Result<SecretString, ReconcileError>> + Send;
}

impl SecretSource for SecretReader<'_> {
    fn value(
        &mut self,
        selector: &SecretKeySelector,
        used_by: &str,
        provider_error: bool,
    ) -> impl std::future::Future<Output = Result<SecretString, ReconcileError>> + Send {
        SecretReader::value(self, selector, used_by, provider_error)
    }

    fn signing_secret(
        &mut self,
        source: &SigningSecretSource,
        field: &str,
        new_value: impl Fn() -> String + Send,
    ) -> impl std::future::Future<Output = Result<SecretString, ReconcileError>> + Send {
        SecretReader::signing_secret(self, source, field, new_value)
    }
}

/// Values that name their Secret instead of holding it: `<Secret NAME key KEY>`.
#[derive(Clone, Copy, Debug, Default)]
pub struct Placeholders;

impl SecretSource for Placeholders {
    async fn value(
        &mut self,
        selector: &SecretKeySelector,
        _used_by: &str,
        _provider_error: bool,
    ) -> Result<SecretString, ReconcileError> {
        Ok(SecretString::from(format!(
            "<Secret {} key {}>",
            selector.name, selector.key
        )))
    }

    async fn signing_secret(
        &mut self,
        source: &SigningSecretSource,
        _field: &str,
        _new_value: impl Fn() -> String + Send,
    ) -> Result<SecretString, ReconcileError> {
        let r = &source.secret_key_ref;
        let verb = if source.generate { "generated into " } else { "" };
        Ok(SecretString::from(format!("<{verb}Secret {} key {}>", r.name, r.key)))
    }
}

/// Where a pass reads Kubernetes objects from: the watches' caches when the controller runs them, the API
/// otherwise.
#[derive(Clone, Copy)]
pub struct Reads<'a> {
    /// The client, for what no cache holds.
    pub client: &'a kube::Client,
    /// The controller's caches.
    pub caches: Option<&'a Caches>,
}

impl<'a> SecretReader<'a> {
    /// A reader of `namespace`, for the subscription with `owner_uid`.
    pub fn new(reads: Reads<'a>, namespace: &str, owner_uid: &str) -> Self {
        SecretReader {
            reads,
            namespace: namespace.to_string(),
            owner_uid: owner_uid.to_string(),
            cache: HashMap::new(),
            to_generate: Vec::new(),
        }
    }

    /// The Secret, if it exists.
    async fn secret(&mut self, name: &str) -> Result<Option<&SecretValues>, kube::Error> {
        if !self.cache.contains_key(name) {
            let secret = match self.reads.caches {
                Some(caches) => caches.secret(self.reads.client, &self.namespace, name).await?,
                None => {
                    let secrets: Api<Secret> = Api::namespaced(self.reads.client.clone(), &self.namespace);
                    secrets.get_opt(name).await?.map(|s| Arc::new(SecretValues::of(&s)))
                }
            };
            self.cache.insert(name.to_string(), secret);
        }
        Ok(self.cache[name].as_deref())
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
        match key_value(secret, &selector.key) {
            Some(v) => Ok(v),
            None => Err(err(format!(
                "Secret {namespace}/{} has no key \"{}\" (referenced by {used_by}); add the key or fix the reference",
                selector.name, selector.key
            ))),
        }
    }

    /// A signing secret: its value, or (with `generate: true`, when the key is missing and the Secret is
    /// absent or owned by this subscription) a new value queued for `act` to write.
    pub async fn signing_secret(
        &mut self,
        source: &SigningSecretSource,
        field: &str,
        new_value: impl Fn() -> String,
    ) -> Result<SecretString, ReconcileError> {
        let selector = &source.secret_key_ref;
        if let Some(queued) = self
            .to_generate
            .iter()
            .find(|g| g.name == selector.name && g.key == selector.key)
        {
            return Ok(queued.value.clone());
        }
        match self.value(selector, field, false).await {
            Ok(v) => Ok(v),
            Err(ReconcileError::Config(_)) if source.generate => {
                let owner_uid = self.owner_uid.clone();
                let namespace = self.namespace.clone();
                let existing = self.secret(&selector.name).await?;
                if !may_generate_into(existing, &owner_uid) {
                    return Err(ConfigError::spec(format!(
                        "{field}: Secret {namespace}/{} exists without key \"{}\" and is not owned by this subscription, so it is not generated into; add the key or use another Secret",
                        selector.name, selector.key
                    ))
                    .into());
                }
                let value = SecretString::from(new_value());
                self.to_generate.push(SecretToGenerate {
                    name: selector.name.clone(),
                    key: selector.key.clone(),
                    value: value.clone(),
                });
                Ok(value)
            }
            Err(e) => Err(e),
        }
    }

    /// The signing secrets this pass decided to generate.
    pub fn to_generate(self) -> Vec<SecretToGenerate> {
        self.to_generate
    }
}

/// A non-empty value of a Secret key.
fn key_value(secret: &SecretValues, key: &str) -> Option<SecretString> {
    secret.data.get(key).cloned()
}

/// Whether the operator may write a generated key into this Secret: only one that does not exist yet or
/// that the subscription owns (a user's Secret is never written).
pub fn may_generate_into(existing: Option<&SecretValues>, owner_uid: &str) -> bool {
    existing.is_none_or(|s| s.owner_uids.iter().any(|uid| uid == owner_uid))
}

/// Whether a namespace with these labels is selected; an operator outside Kubernetes' four (or In/NotIn
/// without values) is an error, never a silent "no".
pub fn selector_matches(selector: &LabelSelector, labels: &BTreeMap<String, String>) -> Result<bool, String> {
    let labels_ok = selector
        .match_labels
        .iter()
        .flatten()
        .all(|(k, v)| labels.get(k) == Some(v));
    let mut expressions_ok = true;
    for (i, e) in selector.match_expressions.iter().flatten().enumerate() {
        let values = e.values.clone().unwrap_or_default();
        let matched = match e.operator.as_str() {
            "In" | "NotIn" if values.is_empty() => {
                return Err(format!(
                    "spec.namespaceSelector.matchExpressions[{i}]: {} needs values",
                    e.operator
                ));
            }
            "In" => labels.get(&e.key).is_some_and(|v| values.contains(v)),
            "NotIn" => labels.get(&e.key).is_none_or(|v| !values.contains(v)),
            "Exists" => labels.contains_key(&e.key),
            "DoesNotExist" => !labels.contains_key(&e.key),
            other => {
                return Err(format!(
                    "spec.namespaceSelector.matchExpressions[{i}].operator {other:?} is not In, NotIn, Exists or DoesNotExist"
                ));
            }
        };
        expressions_ok &= matched;
    }
    Ok(labels_ok && expressions_ok)
}

/// Finds the subscription's provider, checking that its namespace may use a cluster provider.
pub async fn resolve_provider(
    reads: Reads<'_>,
    sub: &WebhookSubscription,
    config: &super::Config,
) -> Result<ProviderSettings, ReconcileError> {
    let client = reads.client;
    let ns = sub.namespace().unwrap_or_default();
    let name = &sub.spec.provider_ref.name;
    if let Some(caches) = reads.caches {
        // The caches fill once at start; until then a provider would look absent.
        let _ = caches.ready().await;
    }
    match sub.spec.provider_ref.kind {
        ProviderKind::WebhookProvider => {
            let provider = match reads.caches {
                Some(caches) => caches.providers.get(&ObjectRef::new(name).within(&ns)),
                None => Api::<WebhookProvider>::namespaced(client.clone(), &ns)
                    .get_opt(name)
                    .await?
                    .map(Arc::new),
            };
            match provider {
                Some(p) => Ok(ProviderSettings::namespaced(&p)),
                None => Err(ConfigError::provider(format!(
                    "WebhookProvider \"{name}\" does not exist in namespace {ns}; create it or fix spec.providerRef (kind ClusterWebhookProvider for a cluster-wide one)"
                ))
                .into()),
            }
        }
        ProviderKind::ClusterWebhookProvider => {
            if !config.scope.is_cluster() {
                return Err(ConfigError::provider(format!(
                    "ClusterWebhookProvider \"{name}\" is out of reach: this operator is installed for {} only (run --namespace), \
                     and reads nothing cluster-scoped; use a WebhookProvider in namespace {ns}, or ask the platform team for a cluster-wide install",
                    config.scope.describe()
                ))
                .into());
            }
            let provider = match reads.caches {
                Some(caches) => caches.cluster_providers.get(&ObjectRef::new(name)),
                None => Api::<ClusterWebhookProvider>::all(client.clone())
                    .get_opt(name)
                    .await?
                    .map(Arc::new),
            };
            let Some(p) = provider else {
                return Err(ConfigError::provider(format!(
                    "ClusterWebhookProvider \"{name}\" does not exist; create it or fix spec.providerRef"
                ))
                .into());
            };
            if let Some(selector) = &p.spec.namespace_selector {
                let labels = match reads.caches {
                    Some(caches) => caches.namespace_labels(&ns),
                    None => Api::<Namespace>::all(client.clone())
                        .get_opt(&ns)
                        .await?
                        .map(|n| n.labels().clone()),
                }
                .unwrap_or_default();
                let admitted = selector_matches(selector, &labels).map_err(|problem| {
                    ConfigError::provider(format!(
                        "ClusterWebhookProvider \"{name}\" has an invalid {problem}; ask the platform team to fix it"
                    ))
                })?;
                if !admitted {
                    return Err(ConfigError::provider(format!(
                        "ClusterWebhookProvider \"{name}\" does not admit namespace {ns} (its spec.namespaceSelector does not match the namespace's labels); ask the platform team to admit it, or use a WebhookProvider in this namespace"
                    ))
                    .into());
                }
            }
            Ok(ProviderSettings::cluster(&p, &config.operator_namespace))
        }
    }
}

/// Reads the provider's credentials.
pub async fn credentials(
    reads: Reads<'_>,
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
    let mut reader = SecretReader::new(reads, &settings.credentials_namespace, "");
    let id = reader.value(&id_selector, &used_by, true).await?;
    let secret = reader.value(&secret_selector, &used_by, true).await?;
    Ok((id.expose_secret().to_string(), secret))
}

/// What the provider should hold, with the referenced Secrets read, and the signing secrets to generate.
pub async fn desired(
    reads: Reads<'_>,
    sub: &WebhookSubscription,
    provider: ProviderType,
    provider_display: &str,
) -> Result<(Desired, Vec<SecretToGenerate>), ReconcileError> {
    let mut reader = SecretReader::new(reads, &sub.namespace().unwrap_or_default(), &uid_of(sub));
    let desired = bindings::desired(sub, provider, provider_display, &mut reader).await?;
    Ok((desired, reader.to_generate()))
}

/// Reads what the plan asked for from the provider: one subscription, the account's matches, or the
/// account's inventory.
/// The remote side, as `lookup` says; a search looks at a listing started at `listing_since` or later
/// (None: the account's current inventory), and leak recovery at a second one started `now`.
pub async fn remote(
    api: &Inventoried,
    lookup: Lookup,
    desired: &Desired,
    listing_since: Option<jiff::Timestamp>,
    now: jiff::Timestamp,
) -> Result<Option<Observation>, ReconcileError> {
    let read = |id: String| async move {
        match api.get(&id).await {
            Ok(remote) => Ok(Some(Observation::Found(remote))),
            Err(e) if e.is_not_found() => Ok(Some(Observation::Gone)),
            Err(e) => Err(ReconcileError::from(e)),
        }
    };
    Ok(match lookup {
        Lookup::Nothing => None,
        Lookup::Recorded(id) => Some(Observation::Recorded(id)),
        Lookup::Get(id) => return read(id).await,
        // Not in the listing: read by itself before believing it gone (a listing may have shifted).
        Lookup::Listed(id, max_age) => match api.listed(&id, max_age).await? {
            Some(remote) => Some(Observation::Found(remote)),
            None => return read(id).await,
        },
        Lookup::Find(search) => {
            let mut matches = api.matches(desired, listing_since).await?;
            // "Our create did not happen" is only believed from two listings, the second started now: a
            // listing that shifts under concurrent deletes can skip an entry, and a create on a skipped
            // entry would be a duplicate.
            if search == Search::LeakRecovery && matches.is_empty() {
                matches = api.matches(desired, Some(now)).await?;
            }
            Some(Observation::Matches(search, matches))
        }
    })
}

/// `WebhookProvider "name"` or `ClusterWebhookProvider "name"`, as a subscription refers to it.
pub fn provider_ref_display(sub: &WebhookSubscription) -> String {
    format!(
        "{} \"{}\"",
        sub.spec.provider_ref.kind.as_str(),
        sub.spec.provider_ref.name
    )
}

/// `metadata.uid` or an empty string.
pub fn uid_of<K: Resource>(object: &K) -> String {
    object.meta().uid.clone().unwrap_or_default()
}

/// The account key of a WebhookProvider (what clients, inventories and rate limits are kept by).
pub fn provider_key(p: &WebhookProvider) -> String {
    format!("WebhookProvider/{}/{}", p.namespace().unwrap_or_default(), p.name_any())
}

/// The account key of a ClusterWebhookProvider.
pub fn cluster_provider_key(p: &ClusterWebhookProvider) -> String {
    format!("ClusterWebhookProvider/{}", p.name_any())
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelectorRequirement, ObjectMeta, OwnerReference};

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
        assert_eq!(
            selector_matches(&selector("In", Some(vec!["payments"])), &labels),
            Ok(true)
        );
        assert_eq!(
            selector_matches(&selector("NotIn", Some(vec!["payments"])), &labels),
            Ok(false)
        );
        assert_eq!(selector_matches(&selector("Exists", None), &labels), Ok(true));
        assert_eq!(selector_matches(&selector("DoesNotExist", None), &labels), Ok(false));
        let unknown = selector_matches(&selector("Maybe", Some(vec!["payments"])), &labels).unwrap_err();
        assert!(
            unknown.contains("operator \"Maybe\" is not In, NotIn, Exists or DoesNotExist"),
            "{unknown}"
        );
        assert!(
            selector_matches(&selector("In", None), &labels)
                .unwrap_err()
                .contains("In needs values")
        );
        let by_label = LabelSelector {
            match_labels: Some(BTreeMap::from([("team".to_string(), "search".to_string())])),
            match_expressions: None,
        };
        assert_eq!(selector_matches(&by_label, &labels), Ok(false));
        assert_eq!(selector_matches(&LabelSelector::default(), &labels), Ok(true));
    }

    #[test]
    fn only_a_current_credentials_refusal_stops_the_subscriptions() {
        use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
        let status = |reason: &str, generation: i64| WebhookProviderStatus {
            observed_generation: Some(generation),
            conditions: vec![Condition {
                type_: "Ready".into(),
                status: "False".into(),
                reason: reason.into(),
                message: "token request refused with HTTP 401".into(),
                observed_generation: Some(generation),
                last_transition_time: Time(jiff::Timestamp::UNIX_EPOCH),
            }],
        };
        assert!(credentials_refused(Some(2), Some(&status("Unauthorized", 2))).is_some());
        assert!(credentials_refused(Some(2), Some(&status("CredentialsMissing", 2))).is_some());
        assert_eq!(
            credentials_refused(Some(2), Some(&status("Unreachable", 2))),
            None,
            "an outage is not a refusal"
        );
        assert_eq!(
            credentials_refused(Some(3), Some(&status("Unauthorized", 2))),
            None,
            "stale"
        );
        assert_eq!(credentials_refused(Some(2), None), None);
    }

    #[test]
    fn generated_secrets_go_only_into_absent_or_owned_secrets() {
        assert!(may_generate_into(None, "uid-1"));
        let owned_by = |uid: &str| {
            SecretValues::of(&Secret {
                metadata: ObjectMeta {
                    owner_references: Some(vec![OwnerReference {
                        uid: uid.into(),
                        ..Default::default()
                    }]),
                    ..Default::default()
                },
                ..Default::default()
            })
        };
        assert!(may_generate_into(Some(&owned_by("uid-1")), "uid-1"));
        assert!(!may_generate_into(Some(&owned_by("uid-2")), "uid-1"));
        assert!(!may_generate_into(Some(&SecretValues::of(&Secret::default())), "uid-1"));
    }
}
