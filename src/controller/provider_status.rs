//! The `Ready` condition of `WebhookProvider`s and `ClusterWebhookProvider`s: whether the credentials
//! obtain a token. Checked every `provider_check_interval`; written only when it changes.

use std::sync::Arc;

use kube::api::{Api, Patch, PatchParams};
use kube::runtime::controller::Action as Requeue;
use kube::{Resource, ResourceExt};
use serde_json::json;

use super::context::Context;
use super::error::{ControllerError, ReconcileError};
use super::observe::{MANAGER, ProviderSettings};
use super::reason::Reason;
use super::status::set_condition;
use crate::api::{ClusterWebhookProvider, WebhookProvider, WebhookProviderStatus, condition};
use crate::providers::{ErrorKind, ProviderType, WebhookApi as _};

/// Ready from the outcome of a credentials check.
pub fn provider_condition(outcome: &Result<ProviderType, ReconcileError>) -> (bool, Reason, String) {
    match outcome {
        Ok(provider) => (
            true,
            Reason::CredentialsValid,
            format!("obtained an access token from {}", provider.as_str()),
        ),
        Err(e) => {
            let reason = match e {
                ReconcileError::Config(_) => Reason::CredentialsMissing,
                ReconcileError::Provider(p) if matches!(p.kind, ErrorKind::Unauthorized | ErrorKind::Forbidden) => {
                    Reason::Unauthorized
                }
                // The token endpoint refused the request itself (a wrong URL, grant or scope setting).
                ReconcileError::Provider(p) if p.kind == ErrorKind::Invalid => Reason::InvalidSpec,
                ReconcileError::Provider(_) | ReconcileError::Blocked { .. } | ReconcileError::Kube(_) => {
                    Reason::Unreachable
                }
            };
            (false, reason, e.to_string())
        }
    }
}

/// Checks a provider's credentials; returns its next status.
async fn check(
    ctx: &Context,
    settings: &ProviderSettings,
    generation: i64,
    current: &WebhookProviderStatus,
) -> WebhookProviderStatus {
    let outcome = async {
        let (api, _) = ctx.connect(settings).await?;
        api.check_credentials().await?;
        Ok::<_, ReconcileError>(api.provider())
    }
    .await;
    let (ready, reason, message) = provider_condition(&outcome);
    crate::telemetry::provider_ready(
        &settings.key,
        &settings.metric_labels(),
        Some(if ready { "True" } else { "False" }),
    );
    let mut next = current.clone();
    next.observed_generation = Some(generation);
    set_condition(
        &mut next.conditions,
        condition::READY,
        ready,
        reason,
        &message,
        generation,
        ctx.config.clock.now(),
    );
    next
}

/// Writes a provider's status by server-side apply when it changed; the next check is a period away.
async fn write<K>(
    api: Api<K>,
    provider: &K,
    current: &WebhookProviderStatus,
    next: WebhookProviderStatus,
    ctx: &Context,
) -> Result<Requeue, ControllerError>
where
    K: Resource<DynamicType = ()> + Clone + serde::de::DeserializeOwned + std::fmt::Debug,
{
    crate::telemetry::health().progress();
    if next != *current {
        let body = json!({"apiVersion": K::api_version(&()), "kind": K::kind(&()), "status": next});
        api.patch_status(
            &provider.meta().name.clone().unwrap_or_default(),
            &PatchParams::apply(MANAGER).force(),
            &Patch::Apply(&body),
        )
        .await
        .map_err(ControllerError::Status)?;
    }
    Ok(Requeue::requeue(ctx.config.provider_check_interval))
}

/// Reconciles a namespaced provider's `Ready`.
pub async fn reconcile_provider(p: Arc<WebhookProvider>, ctx: Arc<Context>) -> Result<Requeue, ControllerError> {
    let current = p.status.clone().unwrap_or_default();
    let settings = ProviderSettings::namespaced(&p);
    let next = check(&ctx, &settings, p.meta().generation.unwrap_or(0), &current).await;
    let api: Api<WebhookProvider> = Api::namespaced(ctx.client.clone(), &p.namespace().unwrap_or_default());
    write(api, &*p, &current, next, &ctx).await
}

/// Reconciles a cluster provider's `Ready`.
pub async fn reconcile_cluster_provider(
    p: Arc<ClusterWebhookProvider>,
    ctx: Arc<Context>,
) -> Result<Requeue, ControllerError> {
    let current = p.status.clone().unwrap_or_default();
    let settings = ProviderSettings::cluster(&p, &ctx.config.operator_namespace);
    let next = check(&ctx, &settings, p.meta().generation.unwrap_or(0), &current).await;
    write(Api::all(ctx.client.clone()), &*p, &current, next, &ctx).await
}

/// Retries a failed provider status write.
pub fn error_policy<K>(_p: Arc<K>, error: &ControllerError, _ctx: Arc<Context>) -> Requeue {
    tracing::warn!(error = %error, "provider status update failed");
    Requeue::requeue(std::time::Duration::from_secs(10))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::controller::error::ConfigError;
    use crate::providers::ProviderError;

    #[test]
    fn each_credentials_outcome_has_its_reason() {
        let (ready, reason, message) = provider_condition(&Ok(ProviderType::Vonage));
        assert!(ready);
        assert_eq!(reason, Reason::CredentialsValid);
        assert_eq!(message, "obtained an access token from vonage");
        let missing = Err(ConfigError::provider("Secret x does not exist").into());
        assert_eq!(provider_condition(&missing).1, Reason::CredentialsMissing);
        for (kind, reason) in [
            (ErrorKind::Unauthorized, Reason::Unauthorized),
            (ErrorKind::Forbidden, Reason::Unauthorized),
            (ErrorKind::Transient, Reason::Unreachable),
            (ErrorKind::Invalid, Reason::InvalidSpec),
        ] {
            let outcome = Err(ProviderError::new(kind, "avaya", "token", "x").into());
            let (ready, got, _) = provider_condition(&outcome);
            assert!(!ready);
            assert_eq!(got, reason, "{kind:?}");
        }
    }
}
