//! AuthVia: `spec.authvia` of providers and subscriptions.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use secrecy::SecretString;
use serde_json::{Map, Value};

use super::Rotation;
use crate::api::{AuthViaProvider, AuthViaSubscription};
use crate::controller::endpoints::EndpointPolicy;
use crate::controller::error::{ConfigError, ReconcileError};
use crate::controller::observe::SecretSource;
use crate::providers::authvia::{AuthviaClient, DEFAULT_BASE_URL};
use crate::providers::{AccountConfig, AuthviaDesired, DesiredSpec, Field, ProviderType, WebhookApi};

/// The account's client: the public API (or the override, checked by `endpoints`), tokens at
/// `<base>/tokens`.
pub fn client(
    p: &AuthViaProvider,
    endpoints: &EndpointPolicy,
    account: impl FnOnce(String, String) -> AccountConfig,
) -> Result<Arc<dyn WebhookApi>, ConfigError> {
    let (base, overridden) = match &p.base_url {
        Some(base) => (base.clone(), true),
        None => (DEFAULT_BASE_URL.to_string(), false),
    };
    let token = endpoints.resolve(
        ProviderType::Authvia,
        "spec.authvia.baseUrl",
        &AuthviaClient::token_url(&base),
        overridden,
    )?;
    let base = endpoints.resolve(ProviderType::Authvia, "spec.authvia.baseUrl", &base, overridden)?;
    Ok(Arc::new(AuthviaClient::new(
        account(base, token),
        &p.account_id,
        p.scopes.clone(),
    )))
}

/// Every field, with the signing secret and Secret-backed header values read.
pub async fn desired(a: &AuthViaSubscription, reader: &mut impl SecretSource) -> Result<DesiredSpec, ReconcileError> {
    let secret = match &a.signing_secret {
        Some(source) => Some(
            reader
                .signing_secret(source, "spec.authvia.signingSecret", || random_text(48))
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
    Ok(DesiredSpec::Authvia(AuthviaDesired {
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
    }))
}

/// The signing secret's and the headers' Secrets.
pub fn referenced_secrets(a: &AuthViaSubscription) -> Vec<String> {
    a.signing_secret
        .iter()
        .map(|s| s.secret_key_ref.name.clone())
        .chain(
            a.headers
                .iter()
                .filter_map(|h| h.value_from.as_ref())
                .map(|v| v.secret_key_ref.name.clone()),
        )
        .collect()
}

/// A new signing secret or header value is sent by update.
pub fn rotation(a: &AuthviaDesired, rotated: bool, update: &mut BTreeSet<Field>) -> Rotation {
    if !rotated {
        return Rotation::None;
    }
    if a.secret.is_some() {
        update.insert(Field::Secret);
    }
    if !a.headers.is_empty() {
        update.insert(Field::Headers);
    }
    if a.secret.is_some() || !a.headers.is_empty() {
        Rotation::ByUpdate
    } else {
        Rotation::None
    }
}

fn random_text(len: usize) -> String {
    std::iter::repeat_with(fastrand::alphanumeric).take(len).collect()
}

/// Checks AuthVia conditions: each value a scalar, or a non-empty list of scalars (the schema cannot say
/// "scalar or list", so the controller does).
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::controller::reason::Reason;
    use serde_json::json;

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
        assert_eq!(err.reason, Reason::InvalidSpec);
        let empty = Some(BTreeMap::from([("status".to_string(), json!([]))]));
        assert!(conditions(&empty).is_err());
    }

    #[test]
    fn a_rotation_sends_the_secret_and_the_headers() {
        let desired = AuthviaDesired {
            event_type: "payments.update".into(),
            description: None,
            timeout_seconds: None,
            attempts: 3,
            auto_disable: true,
            disable_callback_url: None,
            disabled: false,
            conditions: Map::new(),
            headers: vec![("x-key".into(), SecretString::from("v"))],
            secret: Some(SecretString::from("s".repeat(32))),
        };
        let mut update = BTreeSet::new();
        assert_eq!(rotation(&desired, true, &mut update), Rotation::ByUpdate);
        assert_eq!(update, BTreeSet::from([Field::Secret, Field::Headers]));
        assert_eq!(rotation(&desired, false, &mut BTreeSet::new()), Rotation::None);
    }
}
