//! One binding per provider: everything the controller knows about "this is Avaya" (or Vonage, or
//! AuthVia) lives in that provider's module: its CRD blocks → the client and the desired subscription,
//! the Secrets it references, and how a rotated secret reaches the provider. This file only dispatches,
//! with exhaustive `match`es, so a fourth provider is a new module plus the arms the compiler asks for.

pub mod authvia;
pub mod avaya;
pub mod vonage;

use std::collections::BTreeSet;
use std::sync::Arc;

use super::endpoints::EndpointPolicy;
use super::error::{ConfigError, ReconcileError};
use super::observe::SecretSource;
use crate::api::{
    AuthViaProvider, AuthViaSubscription, AvayaProvider, AvayaSubscription, VonageProvider, VonageSubscription,
    WebhookSubscription, WebhookSubscriptionSpec,
};
use crate::providers::{AccountConfig, Desired, DesiredSpec, Field, ProviderType, WebhookApi};

/// The provider block a subscription sets.
#[derive(Clone, Copy, Debug)]
pub enum SubscriptionBlock<'a> {
    /// `spec.avaya`.
    Avaya(&'a AvayaSubscription),
    /// `spec.vonage`.
    Vonage(&'a VonageSubscription),
    /// `spec.authvia`.
    Authvia(&'a AuthViaSubscription),
}

impl SubscriptionBlock<'_> {
    /// The API the block is for.
    pub fn provider_type(self) -> ProviderType {
        match self {
            SubscriptionBlock::Avaya(_) => ProviderType::Avaya,
            SubscriptionBlock::Vonage(_) => ProviderType::Vonage,
            SubscriptionBlock::Authvia(_) => ProviderType::Authvia,
        }
    }
}

/// The one provider block of a subscription spec (the schema requires exactly one; an object that
/// slipped past it gets an InvalidSpec error, never a guess).
pub fn subscription_block(spec: &WebhookSubscriptionSpec) -> Result<SubscriptionBlock<'_>, ConfigError> {
    // Destructured without `..`: a new field on the spec must be looked at here.
    let WebhookSubscriptionSpec {
        provider_ref: _,
        endpoint: _,
        avaya,
        vonage,
        authvia,
        renewal: _,
        deletion_policy: _,
        adoption_policy: _,
    } = spec;
    match (avaya, vonage, authvia) {
        (Some(a), None, None) => Ok(SubscriptionBlock::Avaya(a)),
        (None, Some(v), None) => Ok(SubscriptionBlock::Vonage(v)),
        (None, None, Some(a)) => Ok(SubscriptionBlock::Authvia(a)),
        _ => Err(ConfigError::spec(
            "spec must set exactly one of spec.avaya, spec.vonage or spec.authvia, matching the provider's type",
        )),
    }
}

/// The provider block of a WebhookProvider or ClusterWebhookProvider.
#[derive(Clone, Copy, Debug)]
pub enum ProviderBlock<'a> {
    /// `spec.avaya`.
    Avaya(&'a AvayaProvider),
    /// `spec.vonage`.
    Vonage(&'a VonageProvider),
    /// `spec.authvia`.
    Authvia(&'a AuthViaProvider),
}

impl ProviderBlock<'_> {
    /// The API the block is for.
    pub fn provider_type(self) -> ProviderType {
        match self {
            ProviderBlock::Avaya(_) => ProviderType::Avaya,
            ProviderBlock::Vonage(_) => ProviderType::Vonage,
            ProviderBlock::Authvia(_) => ProviderType::Authvia,
        }
    }
}

/// The one block of a provider spec.
pub fn provider_block<'a>(
    avaya: &'a Option<AvayaProvider>,
    vonage: &'a Option<VonageProvider>,
    authvia: &'a Option<AuthViaProvider>,
    display: &str,
) -> Result<ProviderBlock<'a>, ConfigError> {
    match (avaya, vonage, authvia) {
        (Some(a), None, None) => Ok(ProviderBlock::Avaya(a)),
        (None, Some(v), None) => Ok(ProviderBlock::Vonage(v)),
        (None, None, Some(a)) => Ok(ProviderBlock::Authvia(a)),
        _ => Err(ConfigError::provider(format!(
            "{display} must set exactly one of spec.avaya, spec.vonage or spec.authvia"
        ))),
    }
}

/// A client for the account, from the provider block and the account's shared settings.
pub fn client(
    block: ProviderBlock<'_>,
    display: &str,
    endpoints: &EndpointPolicy,
    account: impl FnOnce(String, String) -> AccountConfig,
) -> Result<Arc<dyn WebhookApi>, ConfigError> {
    match block {
        ProviderBlock::Avaya(p) => avaya::client(p, display, endpoints, account),
        ProviderBlock::Vonage(p) => vonage::client(p, display, endpoints, account),
        ProviderBlock::Authvia(p) => authvia::client(p, endpoints, account),
    }
}

/// What the provider should hold for `sub`, with its Secrets read (and signing secrets to generate
/// queued on the reader).
pub async fn desired(
    sub: &WebhookSubscription,
    provider: ProviderType,
    provider_display: &str,
    reader: &mut impl SecretSource,
) -> Result<Desired, ReconcileError> {
    let block = subscription_block(&sub.spec)?;
    let set = block.provider_type();
    if set != provider {
        return Err(ConfigError::spec(format!(
            "spec.{} is set but {provider_display} is for {}; use spec.{} instead, or point spec.providerRef at a provider for {}",
            set.as_str(),
            provider.as_str(),
            provider.as_str(),
            set.as_str()
        ))
        .into());
    }
    let spec = match block {
        SubscriptionBlock::Avaya(a) => avaya::desired(a, reader).await?,
        SubscriptionBlock::Vonage(v) => vonage::desired(v, sub, reader).await?,
        SubscriptionBlock::Authvia(a) => authvia::desired(a, reader).await?,
    };
    Ok(Desired {
        endpoint: sub.spec.endpoint.clone(),
        spec,
    })
}

/// Names of the Secrets in its namespace whose change must reach the subscription.
pub fn referenced_secrets(sub: &WebhookSubscription) -> Vec<String> {
    match subscription_block(&sub.spec) {
        Ok(SubscriptionBlock::Avaya(a)) => avaya::referenced_secrets(a),
        Ok(SubscriptionBlock::Vonage(v)) => vonage::referenced_secrets(v, sub),
        Ok(SubscriptionBlock::Authvia(a)) => authvia::referenced_secrets(a),
        Err(_) => Vec::new(),
    }
}

/// How a changed secret reaches the provider.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Rotation {
    /// Nothing to send (no secret changed, or the provider takes none).
    None,
    /// Sent by updating the fields added to the update set.
    ByUpdate,
    /// Sent through a renew (Avaya's delivery token).
    ByRenew,
}

/// Adds to `update` what a rotation must send, and says whether it goes through a renew. `rotated`: the
/// secret material differs from what was last applied.
pub fn rotation(desired: &DesiredSpec, rotated: bool, update: &mut BTreeSet<Field>) -> Rotation {
    match desired {
        DesiredSpec::Avaya(a) => avaya::rotation(a, rotated, update),
        DesiredSpec::Vonage(v) => vonage::rotation(v, rotated, update),
        DesiredSpec::Authvia(a) => authvia::rotation(a, rotated, update),
    }
}

/// The delivery token a rotation's renew carries (Avaya's `authToken`).
pub fn rotation_token(desired: &DesiredSpec) -> Option<&secrecy::SecretString> {
    match desired {
        DesiredSpec::Avaya(a) => a.auth_token.as_ref(),
        DesiredSpec::Vonage(_) | DesiredSpec::Authvia(_) => None,
    }
}

/// How long the provider may take to show a create or change in its reads: a subscription it does not
/// show within that time after our last write is not yet believed gone (Vonage: "changes may take up to
/// 30 s to take effect").
pub fn propagation_delay(provider: ProviderType) -> std::time::Duration {
    match provider {
        ProviderType::Vonage => std::time::Duration::from_secs(30),
        ProviderType::Avaya | ProviderType::Authvia => std::time::Duration::ZERO,
    }
}

/// Whether the provider disables subscriptions by itself after failed deliveries (AuthVia's
/// auto-disable): such a subscription is reported, not silently re-enabled by the next drift check.
pub fn disables_on_failures(provider: ProviderType) -> bool {
    match provider {
        ProviderType::Authvia => true,
        ProviderType::Avaya | ProviderType::Vonage => false,
    }
}

/// Whether the provider's subscriptions expire, so that they are renewed (and reactivated by renew).
pub fn expires(provider: ProviderType) -> bool {
    match provider {
        ProviderType::Avaya => true,
        ProviderType::Vonage | ProviderType::Authvia => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn spec(blocks: serde_json::Value) -> WebhookSubscriptionSpec {
        let mut spec = json!({"providerRef": {"name": "p"}, "endpoint": "https://h.example.com/x"});
        for (k, v) in blocks.as_object().unwrap() {
            spec[k] = v.clone();
        }
        serde_json::from_value(spec).unwrap()
    }

    #[test]
    fn exactly_one_block_or_invalid_spec() {
        let avaya = json!({"families": ["AGENT"], "events": ["ALL"]});
        let vonage = json!({"events": ["agent.*"]});
        assert!(matches!(
            subscription_block(&spec(json!({"avaya": avaya}))),
            Ok(SubscriptionBlock::Avaya(_))
        ));
        let none = subscription_block(&spec(json!({}))).unwrap_err();
        assert_eq!(none.reason, super::super::reason::Reason::InvalidSpec);
        assert!(subscription_block(&spec(json!({"avaya": avaya, "vonage": vonage}))).is_err());
    }

    #[test]
    fn only_avaya_subscriptions_expire() {
        assert_eq!(
            ProviderType::ALL.iter().filter(|p| expires(**p)).collect::<Vec<_>>(),
            vec![&ProviderType::Avaya]
        );
    }
}
