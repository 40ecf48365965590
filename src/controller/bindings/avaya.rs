//! Avaya Infinity: `spec.avaya` of providers and subscriptions.

use std::collections::BTreeSet;
use std::sync::Arc;

use super::Rotation;
use crate::api::{AvayaProvider, AvayaSubscription};
use crate::controller::endpoints::EndpointPolicy;
use crate::controller::error::{ConfigError, ReconcileError};
use crate::controller::observe::SecretSource;
use crate::providers::avaya::{AvayaClient, urls_for_customer};
use crate::providers::{AccountConfig, AvayaDesired, DesiredSpec, Field, ProviderType, WebhookApi};

/// The tenant's client: URLs derived from `customerId`, or both overrides (checked by `endpoints`).
pub fn client(
    p: &AvayaProvider,
    display: &str,
    endpoints: &EndpointPolicy,
    account: impl FnOnce(String, String) -> AccountConfig,
) -> Result<Arc<dyn WebhookApi>, ConfigError> {
    let (base, token, overridden) = match (&p.customer_id, &p.base_url, &p.token_url) {
        (Some(customer), _, _) => {
            let (base, token) = urls_for_customer(customer);
            (base, token, false)
        }
        (None, Some(base), Some(token)) => (base.clone(), token.clone(), true),
        _ => {
            return Err(ConfigError::provider(format!(
                "{display}: set spec.avaya.customerId, or both baseUrl and tokenUrl"
            )));
        }
    };
    let base = endpoints.resolve(ProviderType::Avaya, "spec.avaya.baseUrl", &base, overridden)?;
    let token = endpoints.resolve(ProviderType::Avaya, "spec.avaya.tokenUrl", &token, overridden)?;
    Ok(Arc::new(AvayaClient::new(account(base, token))))
}

/// Families, events, method and the delivery token.
pub async fn desired(a: &AvayaSubscription, reader: &mut impl SecretSource) -> Result<DesiredSpec, ReconcileError> {
    let auth_token = match &a.auth_token {
        Some(source) => Some(
            reader
                .value(&source.secret_key_ref, "spec.avaya.authToken", false)
                .await?,
        ),
        None => None,
    };
    Ok(DesiredSpec::Avaya(AvayaDesired {
        families: a.families.iter().map(wire_name).collect(),
        events: a.events.clone(),
        method: wire_name(&a.method),
        auth_token,
        auth_token_header: a.auth_token_header.clone(),
    }))
}

/// The API's spelling of an enum value (its serde name).
fn wire_name(value: &impl serde::Serialize) -> String {
    serde_json::to_value(value)
        .ok()
        .and_then(|v| v.as_str().map(str::to_string))
        .unwrap_or_default()
}

/// The delivery token's Secret.
pub fn referenced_secrets(a: &AvayaSubscription) -> Vec<String> {
    a.auth_token.iter().map(|t| t.secret_key_ref.name.clone()).collect()
}

/// Avaya rotates the delivery token through renew (which also extends the lifetime), unless the header
/// changes too, in which case the update carries both. A token removed from the spec is cleared by the
/// update (its transport has no token).
pub fn rotation(a: &AvayaDesired, rotated: bool, update: &mut BTreeSet<Field>) -> Rotation {
    if a.auth_token.is_none() {
        return Rotation::None;
    }
    let token_changed = update.remove(&Field::AuthToken) || rotated;
    if token_changed && !update.contains(&Field::AuthTokenHeader) {
        Rotation::ByRenew
    } else {
        Rotation::None
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use secrecy::SecretString;

    fn desired(token: Option<&str>) -> AvayaDesired {
        AvayaDesired {
            families: vec!["AGENT".into()],
            events: vec!["ALL".into()],
            method: "POST".into(),
            auth_token: token.map(SecretString::from),
            auth_token_header: "auth-token".into(),
        }
    }

    #[test]
    fn a_new_token_goes_through_renew_unless_the_header_changes_too() {
        let mut update = BTreeSet::new();
        assert_eq!(rotation(&desired(Some("t")), true, &mut update), Rotation::ByRenew);
        let mut update = BTreeSet::from([Field::AuthToken]);
        assert_eq!(rotation(&desired(Some("t")), false, &mut update), Rotation::ByRenew);
        assert!(update.is_empty(), "the token is not sent by update");
        let mut update = BTreeSet::from([Field::AuthToken, Field::AuthTokenHeader]);
        assert_eq!(rotation(&desired(Some("t")), true, &mut update), Rotation::None);
        assert_eq!(rotation(&desired(None), true, &mut BTreeSet::new()), Rotation::None);
        let mut update = BTreeSet::from([Field::AuthToken]);
        assert_eq!(rotation(&desired(None), false, &mut update), Rotation::None);
        assert_eq!(
            update,
            BTreeSet::from([Field::AuthToken]),
            "a removed token is cleared by the update"
        );
    }

    #[test]
    fn enum_values_use_the_api_spelling() {
        assert_eq!(wire_name(&crate::api::AvayaFamily::Interaction), "INTERACTION");
        assert_eq!(wire_name(&crate::api::AvayaDeliveryMethod::Put), "PUT");
    }
}
