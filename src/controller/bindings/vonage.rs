//! Vonage Contact Center: `spec.vonage` of providers and subscriptions.

use std::collections::BTreeSet;
use std::sync::Arc;

use kube::ResourceExt;

use super::Rotation;
use crate::api::{SecretKeySelector, SigningSecretSource, VonageProvider, VonageSubscription, WebhookSubscription};
use crate::controller::endpoints::EndpointPolicy;
use crate::controller::error::{ConfigError, ReconcileError};
use crate::controller::observe::SecretSource;
use crate::providers::vonage::{VonageClient, urls_for_region};
use crate::providers::{AccountConfig, DesiredSpec, Field, ProviderType, VonageDesired, WebhookApi};

/// The account's client: URLs of the region, or both overrides (checked by `endpoints`).
pub fn client(
    p: &VonageProvider,
    display: &str,
    endpoints: &EndpointPolicy,
    account: impl FnOnce(String, String) -> AccountConfig,
) -> Result<Arc<dyn WebhookApi>, ConfigError> {
    let (base, token, overridden) = match (&p.region, &p.base_url, &p.token_url) {
        (Some(region), _, _) => {
            let region = serde_json::to_value(region).ok();
            let (base, token) = urls_for_region(region.as_ref().and_then(|r| r.as_str()).unwrap_or("emea"));
            (base, token, false)
        }
        (None, Some(base), Some(token)) => (base.clone(), token.clone(), true),
        _ => {
            return Err(ConfigError::provider(format!(
                "{display}: set spec.vonage.region, or both baseUrl and tokenUrl"
            )));
        }
    };
    let base = endpoints.resolve(ProviderType::Vonage, "spec.vonage.baseUrl", &base, overridden)?;
    let token = endpoints.resolve(ProviderType::Vonage, "spec.vonage.tokenUrl", &token, overridden)?;
    Ok(Arc::new(VonageClient::new(account(base, token))))
}

/// The name (default `<namespace>-<name>`), events, enabled and the signing secret. Without a
/// `signingSecret`, the operator generates one into `<name>-vonage-signing` before the create: a secret
/// Vonage generated would come back only once, in the create's answer, and be lost with it.
pub async fn desired(
    v: &VonageSubscription,
    sub: &WebhookSubscription,
    reader: &mut impl SecretSource,
) -> Result<DesiredSpec, ReconcileError> {
    let source = v.signing_secret.clone().unwrap_or_else(|| generated_source(sub));
    let secret = reader
        .signing_secret(&source, "spec.vonage.signingSecret", random_secret)
        .await?;
    Ok(DesiredSpec::Vonage(VonageDesired {
        name: v
            .name
            .clone()
            .unwrap_or_else(|| format!("{}-{}", sub.namespace().unwrap_or_default(), sub.name_any())),
        events: v.events.clone(),
        enabled: v.enabled,
        secret: Some(secret),
    }))
}

/// Where the operator keeps the signing secret of a subscription that names none.
fn generated_source(sub: &WebhookSubscription) -> SigningSecretSource {
    SigningSecretSource {
        secret_key_ref: SecretKeySelector {
            name: generated_secret_name(sub),
            key: GENERATED_SECRET_KEY.into(),
        },
        generate: true,
    }
}

/// The signing secret's Secret (the generated one's when the spec names none).
pub fn referenced_secrets(v: &VonageSubscription, sub: &WebhookSubscription) -> Vec<String> {
    vec![match &v.signing_secret {
        Some(s) => s.secret_key_ref.name.clone(),
        None => generated_secret_name(sub),
    }]
}

/// A new signing secret is sent by update.
pub fn rotation(v: &VonageDesired, rotated: bool, update: &mut BTreeSet<Field>) -> Rotation {
    if rotated && v.secret.is_some() {
        update.insert(Field::Secret);
        Rotation::ByUpdate
    } else {
        Rotation::None
    }
}

/// Name of the Secret that keeps the signing secret the operator generated when the spec names none.
pub fn generated_secret_name(sub: &WebhookSubscription) -> String {
    format!("{}-vonage-signing", sub.name_any())
}

/// The key of that Secret.
pub const GENERATED_SECRET_KEY: &str = "secret";

/// A random Vonage signing secret: Base64 of 32 random bytes.
pub fn random_secret() -> String {
    use base64::Engine as _;
    let bytes: Vec<u8> = std::iter::repeat_with(|| fastrand::u8(..)).take(32).collect();
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;
    use secrecy::SecretString;

    #[test]
    fn a_new_secret_is_sent_by_update() {
        let desired = |secret: Option<&str>| VonageDesired {
            name: "n".into(),
            events: vec!["agent.*".into()],
            enabled: true,
            secret: secret.map(SecretString::from),
        };
        let mut update = BTreeSet::new();
        assert_eq!(rotation(&desired(Some("s")), true, &mut update), Rotation::ByUpdate);
        assert_eq!(update, BTreeSet::from([Field::Secret]));
        assert_eq!(rotation(&desired(None), true, &mut BTreeSet::new()), Rotation::None);
        assert_eq!(
            rotation(&desired(Some("s")), false, &mut BTreeSet::new()),
            Rotation::None
        );
    }

    #[test]
    fn generated_secrets_are_32_bytes_of_base64() {
        use base64::Engine as _;
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(random_secret())
            .unwrap();
        assert_eq!(bytes.len(), 32);
        assert_ne!(random_secret(), random_secret());
    }
}
