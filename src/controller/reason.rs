//! Every reason the operator writes: condition reasons, Event reasons and metric labels. One enum, so
//! a reason is spelled once and the README's troubleshooting table can be checked against it.

/// Declares [`Reason`] with its spelling on the wire.
macro_rules! reasons {
    ($($(#[$doc:meta])* $name:ident),* $(,)?) => {
        /// A condition, Event or metric reason.
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub enum Reason {
            $($(#[$doc])* $name,)*
        }

        impl Reason {
            /// Every reason.
            pub const ALL: &'static [Reason] = &[$(Reason::$name,)*];

            /// As written in conditions, Events and metric labels.
            pub fn as_str(self) -> &'static str {
                match self {
                    $(Reason::$name => stringify!($name),)*
                }
            }
        }
    };
}

reasons! {
    // Ready of a subscription.
    /// The provider reports the subscription usable.
    Available,
    /// The provider reports it PENDING.
    Creating,
    /// The provider reports it INACTIVE.
    Expired,
    /// The provider or the Kubernetes API failed transiently.
    Unavailable,
    /// The spec, a referenced Secret, or the provider's answer to it needs a fix.
    InvalidSpec,
    /// The provider object or its credentials need a fix.
    ProviderNotReady,
    /// A remote match exists and adoptionPolicy is None.
    AlreadyExists,
    /// adoptionPolicy is Adopt and nothing matches.
    NotFound,
    /// Several remote subscriptions match.
    AdoptionAmbiguous,
    /// Another WebhookSubscription holds the remote subscription.
    AlreadyClaimed,
    /// The provider's test delivery to the endpoint failed at create (AuthVia); retried with backoff.
    DestinationUnverified,
    /// The provider disabled the subscription after failed deliveries (AuthVia's auto-disable); it stays
    /// disabled until the spec changes or a reconcile is requested.
    DisabledByProvider,
    /// The provider does not show a change of ours yet (Vonage: up to 30 s); looked at again shortly.
    NotVisibleYet,
    // Synced of a subscription.
    /// The provider matches the spec.
    ReconcileSuccess,
    /// The last pass failed.
    ReconcileError,
    /// The paused annotation is set.
    ReconcilePaused,
    /// The provider answered 429.
    RateLimited,
    /// The provider answered 401 or 403.
    Unauthorized,
    // Events of what a pass did.
    /// A remote subscription was created.
    Created,
    /// Fields of the remote subscription were updated.
    Updated,
    /// Avaya's delivery token was rotated through renew.
    Rotated,
    /// An INACTIVE subscription was renewed.
    Reactivated,
    /// The remote subscription was renewed.
    Renewed,
    /// A renewal was requested for a subscription that does not expire (Vonage, AuthVia): handled as a
    /// check against the provider.
    RenewNotApplicable,
    /// An existing remote subscription was taken over.
    Adopted,
    /// The remote subscription disappeared outside the operator.
    RemoteDeleted,
    /// Paused with a known expiry: it will not be renewed while paused.
    ExpiresWhilePaused,
    /// A signing secret was generated into a Secret owned by the subscription.
    SecretGenerated,
    /// Deleted with deletionPolicy Orphan: the remote subscription is kept.
    Orphaned,
    /// The remote subscription was deleted.
    Deleted,
    /// The remote delete failed (retried).
    DeleteFailed,
    /// The provider could not be reached to delete the remote subscription.
    ProviderUnavailable,
    // Ready of a provider.
    /// The credentials obtained a token.
    CredentialsValid,
    /// The credentials Secret or a key is missing, or the provider object is incomplete.
    CredentialsMissing,
    /// The token endpoint could not be reached.
    Unreachable,
    // Metrics only.
    /// A Kubernetes API failure the controller's error policy retries.
    KubernetesError,
}

impl std::fmt::Display for Reason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reasons_are_unique_camel_case_words() {
        let mut seen = std::collections::BTreeSet::new();
        for reason in Reason::ALL {
            let s = reason.as_str();
            assert!(s.chars().next().is_some_and(|c| c.is_ascii_uppercase()), "{s}");
            assert!(s.chars().all(|c| c.is_ascii_alphanumeric()), "{s}");
            assert!(seen.insert(s), "{s} twice");
        }
    }
}
