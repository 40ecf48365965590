//! The report of a deletion: its Events, and whether the finalizer may be released.

use super::Note;
use crate::controller::error::{ConfigError, ReconcileError};
use crate::controller::reason::Reason;
use crate::providers::{ProviderError, ProviderType};

/// How a deletion ended.
#[derive(Debug)]
pub enum Cleanup {
    /// deletionPolicy Orphan (with the id, when one is known).
    Orphaned(Option<String>),
    /// Nothing remote to delete.
    Released,
    /// The provider could not be resolved: the remote subscription may remain.
    ProviderUnavailable {
        /// `WebhookProvider "name"` or `ClusterWebhookProvider "name"`.
        provider_ref: String,
        /// The id, when known.
        id: Option<String>,
        /// Why.
        error: ConfigError,
    },
    /// Another subscription holds the remote subscription: it is not deleted.
    Claimed {
        /// The remote id.
        id: String,
        /// `namespace/name` of the holder.
        holder: String,
    },
    /// The leak search found nothing that is ours.
    NoLeak,
    /// The leak search found several candidates: none is deleted.
    LeakAmbiguous(usize),
    /// The provider answered the delete of `id`.
    DeleteAnswered {
        /// The provider.
        provider: ProviderType,
        /// The remote id.
        id: String,
        /// Its answer.
        result: Result<(), ProviderError>,
    },
}

/// The Events of a deletion, and whether the finalizer may be released (an error is retried).
pub fn cleanup(outcome: Cleanup) -> (Vec<Note>, Result<(), ReconcileError>) {
    match outcome {
        Cleanup::Orphaned(id) => (
            id.into_iter()
                .map(|id| {
                    Note::normal(
                        Reason::Orphaned,
                        format!("deletionPolicy is Orphan: remote subscription {id} is kept"),
                    )
                })
                .collect(),
            Ok(()),
        ),
        Cleanup::Released | Cleanup::NoLeak => (Vec::new(), Ok(())),
        Cleanup::Claimed { id, holder } => (
            vec![Note::warning(
                Reason::AlreadyClaimed,
                format!("remote subscription {id} is claimed by WebhookSubscription {holder}; it was not deleted"),
            )],
            Ok(()),
        ),
        Cleanup::LeakAmbiguous(n) => (
            vec![Note::warning(
                Reason::AdoptionAmbiguous,
                format!("{n} remote subscriptions match; none deleted, delete the leaked one at the provider"),
            )],
            Ok(()),
        ),
        Cleanup::ProviderUnavailable {
            provider_ref,
            id,
            error,
        } => (
            vec![Note::warning(
                Reason::ProviderUnavailable,
                format!(
                    "cannot reach {provider_ref} to delete remote subscription {}: {error}; it may remain at the provider, delete it there",
                    id.as_deref().unwrap_or("(unknown id)")
                ),
            )],
            Ok(()),
        ),
        Cleanup::DeleteAnswered { provider, id, result } => match result {
            // Already gone is what a delete wants.
            Ok(()) => (vec![deleted(provider, &id)], Ok(())),
            Err(e) if e.is_not_found() => (vec![deleted(provider, &id)], Ok(())),
            Err(e) => (vec![Note::warning(Reason::DeleteFailed, e.to_string())], Err(e.into())),
        },
    }
}

fn deleted(provider: ProviderType, id: &str) -> Note {
    Note::normal(
        Reason::Deleted,
        format!("deleted {} subscription {id}", provider.as_str()),
    )
}
