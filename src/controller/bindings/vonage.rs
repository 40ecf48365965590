//! Vonage Contact Center: `spec.vonage` of providers and subscriptions.

use std::collections::BTreeSet;
use std::sync::Arc;

use kube::ResourceExt;

use super::Rotation;
use crate::api::{VonageProvider, VonageSubscription, WebhookSubscription};
use crate::controller::error::{ConfigError, ReconcileError};
use crate::controller::observe::SecretReader;
use crate::providers::vonage::{VonageClient, urls_for_region};
use crate::providers::{AccountConfig, DesiredSpec, Field, VonageDesired, WebhookApi};

/// The account's client: URLs of the region, or both overrides.
pub fn client(
    p: &VonageProvider,
    display: &str,
    account: impl FnOnce(String, String) -> AccountConfig,
) -> Result<Arc<dyn WebhookApi>, ConfigError> {
    let (base, token) = match (&p.region, &p.base_url, &p.token_url) {
        (Some(region), _, _) => {
            let region = serde_json::to_value(region).ok();
            urls_for_region(region.as_ref().and_then(|r| r.as_str()).unwrap_or("emea"))
        }
        (None, Some(base), Some(token)) => (base.clone(), token.clone()),
        _ => {
            return Err(ConfigError::provider(format!(
                "{display}: set spec.vonage.region, or both baseUrl and tokenUrl"
            )));
        }
    };
    Ok(Arc::new(VonageClient::new(account(base, token))))
}

/// The name (default `<namespace>-<name>`), events, enabled and the signing secret.
pub async fn desired(
    v: &VonageSubscription,
    sub: &WebhookSubscription,
    reader: &mut SecretReader<'_>,
) -> Result<DesiredSpec, ReconcileError> {
    let secret = match &v.signing_secret {
        Some(source) => Some(
            reader
                .signing_secret(source, "spec.vonage.signingSecret", random_secret)
                .await?,
        ),
        None => None,
    };
    Ok(DesiredSpec::Vonage(VonageDesired {
        name: v
            .name
            .clone()
            .unwrap_or_else(|| format!("{}-{}", sub.namespace().unwrap_or_default(), sub.name_any())),
        events: v.events.clone(),
        enabled: v.enabled,
        secret,
    }))
}

/// The signing secret's Secret.
pub fn referenced_secrets(v: &VonageSubscription) -> Vec<String> {
    v.signing_secret.iter().map(|s| s.secret_key_ref.name.clone()).collect()
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

/// Name of the Secret that keeps a secret Vonage generated (returned once, at create) when the spec
/// names none.
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
