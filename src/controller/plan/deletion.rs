//! What deleting a subscription means for its remote subscription.

use super::super::claims::Claims;
use crate::api::{Annotations, DeletionPolicy, WebhookSubscriptionStatus};
use crate::providers::{ProviderType, Remote};

/// What deleting a `WebhookSubscription` means for its remote subscription.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Deletion {
    /// deletionPolicy Orphan: keep it (the id, when one is known, goes into an Event).
    Orphan(Option<String>),
    /// Nothing was ever created: release at once.
    Release,
    /// Delete this remote subscription.
    Delete(String),
    /// A create may have leaked before its id was recorded: look for its single match.
    FindLeak,
}

/// Decides what deleting means.
pub fn deletion(
    policy: DeletionPolicy,
    annotations: &Annotations,
    status: Option<&WebhookSubscriptionStatus>,
) -> Deletion {
    let id = annotations
        .external_id
        .clone()
        .or_else(|| status.and_then(|s| s.subscription_id.clone()));
    match (policy, id) {
        (DeletionPolicy::Orphan, id) => Deletion::Orphan(id),
        (DeletionPolicy::Delete, Some(id)) => Deletion::Delete(id),
        (DeletionPolicy::Delete, None) if annotations.create_pending.is_some() => Deletion::FindLeak,
        (DeletionPolicy::Delete, None) => Deletion::Release,
    }
}

/// What a leak search during deletion found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Leak {
    /// The single match: ours, delete it.
    Delete(String),
    /// Nothing leaked.
    None,
    /// Several match: delete none (it cannot be told which is ours).
    Ambiguous(usize),
}

/// Decides which leaked subscription to delete (matches another subscription names are not ours).
pub fn leaked(matches: &[Remote], claims: &dyn Claims, provider: ProviderType, me: &str) -> Leak {
    let ours: Vec<&Remote> = matches
        .iter()
        .filter(|m| claims.other(provider, &m.id, me).is_none())
        .collect();
    match ours.as_slice() {
        [only] => Leak::Delete(only.id.clone()),
        [] => Leak::None,
        many => Leak::Ambiguous(many.len()),
    }
}
