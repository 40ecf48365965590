//! Act: carry out what `plan` decided, through the provider trait and the Kubernetes API. No decisions
//! here: each step is the plan's, and what was done is recorded as [`Done`] for `report` to turn into
//! status and Events, even when a later step fails.

use std::collections::BTreeSet;

use k8s_openapi::api::core::v1::Secret;
use kube::api::{Api, Patch, PatchParams};
use kube::{Resource, ResourceExt};
use secrecy::{ExposeSecret, SecretString};
use serde_json::json;

use super::bindings;
use super::error::ReconcileError;
use super::observe::{MANAGER, Reads, SecretToGenerate};
use super::plan::{Action, Facts, OwnAnnotations, RenewReason};
use super::status::format_time;
use crate::api::{WebhookSubscription, annotation};
use crate::providers::{Desired, Field, Remote, WebhookApi};

/// What a pass did to the remote subscription.
#[derive(Clone, Debug)]
pub struct Applied {
    /// The remote id.
    pub id: String,
    /// The remote subscription as last read or written.
    pub remote: Remote,
    /// Whether it was renewed.
    pub renewed: bool,
    /// Whether the provider's answer started a new lifetime (a create or a renew): only then is the
    /// renewal time computed afresh; later reads of the same expiry leave it as it is.
    pub new_lifetime: bool,
    /// Whether anything was written to the provider.
    pub changed: bool,
}

/// One step carried out, in order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Done {
    /// The known remote subscription was found deleted (a new one is created).
    RemoteGone(String),
    /// A remote subscription was created.
    Created(String),
    /// An existing remote subscription was taken over.
    Adopted(String),
    /// These fields were updated.
    Updated(String, BTreeSet<Field>),
    /// It was renewed, for this reason.
    Renewed(String, RenewReason),
    /// A signing secret was generated into this Secret and key.
    SecretGenerated(String, String),
    /// The operator's own annotations were written.
    Annotated(OwnAnnotations),
}

/// The steps done, and how the pass ended.
#[derive(Debug)]
pub struct Acted {
    /// What was done, in order (also when a later step failed).
    pub done: Vec<Done>,
    /// The result.
    pub result: Result<Applied, ReconcileError>,
}

/// Runs a plan's action.
pub async fn run(
    client: &kube::Client,
    sub: &WebhookSubscription,
    api: &dyn WebhookApi,
    facts: &Facts,
    desired: &Desired,
    action: Action,
) -> Acted {
    let mut done = Vec::new();
    let result = carry_out(client, sub, api, facts, desired, action, &mut done).await;
    Acted { done, result }
}

async fn carry_out(
    client: &kube::Client,
    sub: &WebhookSubscription,
    api: &dyn WebhookApi,
    facts: &Facts,
    desired: &Desired,
    action: Action,
    done: &mut Vec<Done>,
) -> Result<Applied, ReconcileError> {
    match action {
        Action::Nothing(remote) => Ok(Applied {
            id: remote.id.clone(),
            remote,
            renewed: false,
            new_lifetime: false,
            changed: false,
        }),
        Action::Blocked { reason, message } => Err(ReconcileError::Blocked { reason, message }),
        Action::Recreate(gone) => {
            done.push(Done::RemoteGone(gone));
            create(client, sub, api, facts, desired, done).await
        }
        Action::Create => create(client, sub, api, facts, desired, done).await,
        Action::Adopt { remote, update, renew } => {
            annotate(client, sub, Some(&remote.id), None, done).await?;
            done.push(Done::Adopted(remote.id.clone()));
            let mut applied = converge(api, desired, remote, &update, renew, done).await?;
            applied.changed = true;
            Ok(applied)
        }
        Action::Converge { remote, update, renew } => converge(api, desired, remote, &update, renew, done).await,
    }
}

/// Creates the remote subscription, with `create-pending` written before the call and the id right
/// after it, so that a lost id is looked up rather than created twice.
async fn create(
    client: &kube::Client,
    sub: &WebhookSubscription,
    api: &dyn WebhookApi,
    facts: &Facts,
    desired: &Desired,
    done: &mut Vec<Done>,
) -> Result<Applied, ReconcileError> {
    annotate(client, sub, None, Some(&format_time(facts.now)), done).await?;
    let created = api.create(desired).await?;
    annotate(client, sub, Some(&created.id), None, done).await?;
    done.push(Done::Created(created.id.clone()));
    Ok(Applied {
        id: created.id.clone(),
        remote: created,
        renewed: false,
        new_lifetime: true,
        changed: true,
    })
}

/// Sends the fields to update, then renews (with the new token when the renew is a rotation).
async fn converge(
    api: &dyn WebhookApi,
    desired: &Desired,
    remote: Remote,
    update: &BTreeSet<Field>,
    renew: Option<RenewReason>,
    done: &mut Vec<Done>,
) -> Result<Applied, ReconcileError> {
    let id = remote.id.clone();
    let mut latest = remote;
    if !update.is_empty() {
        latest = api.update(&id, desired, update).await?;
        done.push(Done::Updated(id.clone(), update.clone()));
    }
    let mut renewed = false;
    if let Some(reason) = renew {
        let token = match reason {
            RenewReason::Rotation => bindings::rotation_token(&desired.spec),
            RenewReason::Reactivate | RenewReason::Requested | RenewReason::Due => None,
        };
        latest = api.renew(&id, token).await?;
        renewed = true;
        done.push(Done::Renewed(id.clone(), reason));
    }
    Ok(Applied {
        id,
        remote: latest,
        renewed,
        new_lifetime: renewed,
        changed: !update.is_empty() || renewed,
    })
}

/// Writes a subscription's status by server-side apply (the operator owns every status field).
pub async fn write_status(
    client: &kube::Client,
    sub: &WebhookSubscription,
    status: &crate::api::WebhookSubscriptionStatus,
) -> Result<(), kube::Error> {
    let api: Api<WebhookSubscription> = Api::namespaced(client.clone(), &sub.namespace().unwrap_or_default());
    let body = json!({
        "apiVersion": WebhookSubscription::api_version(&()),
        "kind": WebhookSubscription::kind(&()),
        "status": status,
    });
    api.patch_status(
        &sub.name_any(),
        &PatchParams::apply(MANAGER).force(),
        &Patch::Apply(&body),
    )
    .await?;
    Ok(())
}

/// Writes the signing secrets the pass generated, before anything uses them.
pub async fn store_generated(
    reads: Reads<'_>,
    sub: &WebhookSubscription,
    secrets: &[SecretToGenerate],
    done: &mut Vec<Done>,
) -> Result<(), kube::Error> {
    for s in secrets {
        let written = store_secret(reads.client, sub, &s.name, &s.key, &s.value).await?;
        if let Some(caches) = reads.caches {
            caches.wrote_secret(&sub.namespace().unwrap_or_default(), &s.name, &written);
        }
        done.push(Done::SecretGenerated(s.name.clone(), s.key.clone()));
    }
    Ok(())
}

/// Deletes the remote subscription.
pub async fn delete(api: &dyn WebhookApi, id: &str) -> crate::providers::Result<()> {
    api.delete(id).await
}

/// Writes `key` of a Secret owned by the subscription (server-side apply, so other keys stay).
async fn store_secret(
    client: &kube::Client,
    sub: &WebhookSubscription,
    name: &str,
    key: &str,
    value: &SecretString,
) -> Result<Secret, kube::Error> {
    let ns = sub.namespace().unwrap_or_default();
    let secrets: Api<Secret> = Api::namespaced(client.clone(), &ns);
    let body = json!({
        "apiVersion": "v1", "kind": "Secret",
        "metadata": {"name": name, "namespace": ns, "ownerReferences": sub.controller_owner_ref(&()).into_iter().collect::<Vec<_>>(),
                     "labels": {"app.kubernetes.io/managed-by": MANAGER}},
        "type": "Opaque",
        "stringData": {key: value.expose_secret()},
    });
    secrets
        .patch(name, &PatchParams::apply(MANAGER).force(), &Patch::Apply(&body))
        .await
}

/// Writes `external-id` and `create-pending` (None removes one), and records what was written: the
/// watch cache may lag behind it, and the next pass must not act on the older values.
async fn annotate(
    client: &kube::Client,
    sub: &WebhookSubscription,
    external_id: Option<&str>,
    create_pending: Option<&str>,
    done: &mut Vec<Done>,
) -> Result<(), kube::Error> {
    let api: Api<WebhookSubscription> = Api::namespaced(client.clone(), &sub.namespace().unwrap_or_default());
    let values = json!({annotation::EXTERNAL_ID: external_id, annotation::CREATE_PENDING: create_pending});
    let written = api
        .patch(
            &sub.name_any(),
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"annotations": values}})),
        )
        .await?;
    done.push(Done::Annotated(OwnAnnotations {
        resource_version: written.resource_version().unwrap_or_default(),
        external_id: external_id.map(str::to_string),
        create_pending: create_pending.map(str::to_string),
    }));
    Ok(())
}
