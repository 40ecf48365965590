//! Reconcile errors: each maps to a typed condition reason, an Event reason and a retry policy.

use std::time::Duration;

use super::reason::Reason;
use crate::providers::{ErrorKind, ProviderError};

/// What to fix in the cluster before the controller can act (no remote call is made).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct ConfigError {
    /// Condition reason: [`Reason::ProviderNotReady`] (provider or its credentials) or
    /// [`Reason::InvalidSpec`].
    pub reason: Reason,
    /// What is wrong and how to fix it; never a secret value.
    pub message: String,
}

impl ConfigError {
    /// A problem with the provider or its credentials.
    pub fn provider(message: impl Into<String>) -> Self {
        ConfigError {
            reason: Reason::ProviderNotReady,
            message: message.into(),
        }
    }

    /// A problem with the subscription's own spec or the Secrets it references.
    pub fn spec(message: impl Into<String>) -> Self {
        ConfigError {
            reason: Reason::InvalidSpec,
            message: message.into(),
        }
    }
}

/// Everything a reconcile can fail with.
#[derive(Debug, thiserror::Error)]
pub enum ReconcileError {
    /// Cluster configuration to fix (missing provider, Secret or key, wrong block).
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The provider refused or failed.
    #[error(transparent)]
    Provider(#[from] ProviderError),
    /// The remote side does not allow a safe decision (e.g. several candidates for adoption).
    #[error("{message}")]
    Blocked {
        /// Condition reason.
        reason: Reason,
        /// What to do.
        message: String,
    },
    /// The Kubernetes API failed.
    #[error("Kubernetes API: {}", kube_message(.0))]
    Kube(#[from] kube::Error),
}

/// The error the controller's error policy sees: only Kubernetes API failures (provider errors are
/// reported in status and requeued by the reconcile itself).
#[derive(Debug, thiserror::Error)]
pub enum ControllerError {
    /// Adding or removing the finalizer, or the cleanup it guards, failed.
    #[error("finalizer: {0}")]
    Finalizer(#[source] Box<kube::runtime::finalizer::Error<ReconcileError>>),
    /// A status write failed.
    #[error("status write: {}", kube_message(.0))]
    Status(#[source] kube::Error),
}

/// A kube error in one line (its Display of an API error repeats the whole Status).
fn kube_message(e: &kube::Error) -> String {
    match e {
        kube::Error::Api(s) => format!("{} {}: {}", s.code, s.reason, s.message),
        other => other.to_string(),
    }
}

/// How often a subscription blocked by another's claim looks again.
pub const CLAIM_RECHECK: Duration = Duration::from_secs(300);

/// How soon a subscription whose remote side does not show a recent change yet looks again.
pub const VISIBILITY_RECHECK: Duration = Duration::from_secs(10);

/// How to retry after an error.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Retry {
    /// Only a change to the object (or what it references) can help.
    OnChange,
    /// After this long.
    After(Duration),
    /// Exponential backoff with jitter, by the object's failure count.
    Backoff,
}

impl ReconcileError {
    /// The `Ready` condition reason.
    pub fn ready_reason(&self) -> Reason {
        match self {
            ReconcileError::Config(c) => c.reason,
            ReconcileError::Provider(p) => match p.kind {
                ErrorKind::Invalid => Reason::InvalidSpec,
                ErrorKind::DestinationUnverified => Reason::DestinationUnverified,
                ErrorKind::Unauthorized | ErrorKind::Forbidden => Reason::ProviderNotReady,
                ErrorKind::NotFound
                | ErrorKind::Conflict
                | ErrorKind::RateLimited
                | ErrorKind::Transient
                | ErrorKind::Unsupported => Reason::Unavailable,
            },
            ReconcileError::Blocked { reason, .. } => *reason,
            ReconcileError::Kube(_) => Reason::Unavailable,
        }
    }

    /// The `Synced` condition reason: what failed, as specifically as it is known (a spec or provider to
    /// fix, a refusal, a rate limit); `ReconcileError` only for a call that failed for no named reason.
    pub fn synced_reason(&self) -> Reason {
        match self {
            ReconcileError::Config(c) => c.reason,
            ReconcileError::Blocked { reason, .. } => *reason,
            ReconcileError::Provider(p) => match p.kind {
                ErrorKind::Unauthorized | ErrorKind::Forbidden => Reason::Unauthorized,
                ErrorKind::RateLimited => Reason::RateLimited,
                ErrorKind::Invalid => Reason::InvalidSpec,
                ErrorKind::DestinationUnverified => Reason::DestinationUnverified,
                ErrorKind::NotFound | ErrorKind::Conflict | ErrorKind::Transient | ErrorKind::Unsupported => {
                    Reason::ReconcileError
                }
            },
            ReconcileError::Kube(_) => Reason::ReconcileError,
        }
    }

    /// The Event reason and metric label: the specific Synced reason, else the Ready one.
    pub fn event_reason(&self) -> Reason {
        match self.synced_reason() {
            Reason::ReconcileError => self.ready_reason(),
            other => other,
        }
    }

    /// Whether a subscription that was Ready stays Ready: transient trouble does not make a working
    /// remote subscription unusable; anything that needs a fix does.
    pub fn keeps_ready(&self) -> bool {
        match self {
            ReconcileError::Provider(p) => matches!(p.kind, ErrorKind::Transient | ErrorKind::RateLimited),
            ReconcileError::Kube(_) => true,
            // A change of ours the provider does not show yet is not a fault of the subscription.
            ReconcileError::Blocked {
                reason: Reason::NotVisibleYet,
                ..
            } => true,
            ReconcileError::Config(_) | ReconcileError::Blocked { .. } => false,
        }
    }

    /// Whether the failure counts in `failedAttempts` (a call failed, rather than a decision refused).
    pub fn counts_as_attempt(&self) -> bool {
        matches!(self, ReconcileError::Provider(_) | ReconcileError::Kube(_))
    }

    /// Whether the spec generation was fully looked at: the error is about this generation, so
    /// `observedGeneration` moves to it.
    pub fn judges_generation(&self) -> bool {
        match self {
            ReconcileError::Blocked {
                reason: Reason::NotVisibleYet,
                ..
            } => false,
            ReconcileError::Config(_) | ReconcileError::Blocked { .. } => true,
            ReconcileError::Provider(p) => p.kind == ErrorKind::Invalid,
            ReconcileError::Kube(_) => false,
        }
    }

    /// When to try again.
    pub fn retry(&self) -> Retry {
        match self {
            // The other resource may go away without this one changing: look again now and then.
            ReconcileError::Blocked {
                reason: Reason::AlreadyClaimed,
                ..
            } => Retry::After(CLAIM_RECHECK),
            ReconcileError::Blocked {
                reason: Reason::NotVisibleYet,
                ..
            } => Retry::After(VISIBILITY_RECHECK),
            ReconcileError::Config(_) | ReconcileError::Blocked { .. } => Retry::OnChange,
            ReconcileError::Provider(p) => match p.kind {
                ErrorKind::Invalid | ErrorKind::Unsupported => Retry::OnChange,
                ErrorKind::RateLimited => Retry::After(p.retry_after.unwrap_or(Duration::from_secs(30))),
                ErrorKind::Unauthorized | ErrorKind::Forbidden => Retry::After(Duration::from_secs(300)),
                ErrorKind::NotFound | ErrorKind::Conflict | ErrorKind::Transient | ErrorKind::DestinationUnverified => {
                    Retry::Backoff
                }
            },
            ReconcileError::Kube(_) => Retry::Backoff,
        }
    }
}

/// Capped exponential backoff for the `failures`-th consecutive failure: 2 s doubling to 300 s, scaled by
/// `jitter` in [0, 1) to between 80% and 120% (and still at most 300 s).
pub fn backoff(failures: u32, jitter: f64) -> Duration {
    let base = Duration::from_secs(2).saturating_mul(2u32.saturating_pow(failures.saturating_sub(1).min(10)));
    let capped = base.min(Duration::from_secs(300));
    capped
        .mul_f64(0.8 + jitter.clamp(0.0, 1.0) * 0.4)
        .min(Duration::from_secs(300))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_error_class_has_its_policy() {
        let p = |kind| ReconcileError::Provider(ProviderError::new(kind, "avaya", "create", "x"));
        assert_eq!(p(ErrorKind::Invalid).retry(), Retry::OnChange);
        assert_eq!(p(ErrorKind::Invalid).ready_reason(), Reason::InvalidSpec);
        assert_eq!(p(ErrorKind::Invalid).event_reason(), Reason::InvalidSpec);
        assert!(p(ErrorKind::Invalid).judges_generation());
        assert_eq!(p(ErrorKind::Unauthorized).synced_reason(), Reason::Unauthorized);
        // Synced names what failed: a spec or provider to fix, not a generic ReconcileError.
        assert_eq!(p(ErrorKind::Invalid).synced_reason(), Reason::InvalidSpec);
        let spec: ReconcileError = ConfigError::spec("Secret default/x does not exist").into();
        assert_eq!(spec.synced_reason(), Reason::InvalidSpec);
        let provider: ReconcileError = ConfigError::provider("WebhookProvider \"p\" does not exist").into();
        assert_eq!(provider.synced_reason(), Reason::ProviderNotReady);
        let blocked = ReconcileError::Blocked {
            reason: Reason::AlreadyClaimed,
            message: "m".into(),
        };
        assert_eq!(blocked.synced_reason(), Reason::AlreadyClaimed);
        assert_eq!(p(ErrorKind::Transient).synced_reason(), Reason::ReconcileError);
        assert_eq!(p(ErrorKind::Forbidden).ready_reason(), Reason::ProviderNotReady);
        assert_eq!(p(ErrorKind::Transient).retry(), Retry::Backoff);
        assert!(p(ErrorKind::Transient).keeps_ready());
        assert!(!p(ErrorKind::Conflict).keeps_ready());
        let mut limited = ProviderError::new(ErrorKind::RateLimited, "vonage", "list", "slow down");
        limited.retry_after = Some(Duration::from_secs(42));
        let limited = ReconcileError::Provider(limited);
        assert_eq!(limited.retry(), Retry::After(Duration::from_secs(42)));
        assert_eq!(limited.synced_reason(), Reason::RateLimited);
        assert!(limited.keeps_ready() && limited.counts_as_attempt());
        let config = ReconcileError::Config(ConfigError::spec("x"));
        assert_eq!(config.retry(), Retry::OnChange);
        assert!(!config.counts_as_attempt() && config.judges_generation());
        assert_eq!(config.event_reason(), Reason::InvalidSpec);
        let unverified = p(ErrorKind::DestinationUnverified);
        assert_eq!(unverified.retry(), Retry::Backoff, "the receiver may come up");
        assert_eq!(unverified.ready_reason(), Reason::DestinationUnverified);
        assert!(!unverified.keeps_ready() && unverified.counts_as_attempt());
        let not_visible = ReconcileError::Blocked {
            reason: Reason::NotVisibleYet,
            message: "x".into(),
        };
        assert_eq!(not_visible.retry(), Retry::After(VISIBILITY_RECHECK));
        assert!(not_visible.keeps_ready() && !not_visible.judges_generation());
    }

    #[test]
    fn backoff_is_capped_with_jitter() {
        assert_eq!(backoff(1, 0.0), Duration::from_millis(1600));
        assert_eq!(backoff(1, 1.0), Duration::from_millis(2400));
        assert_eq!(backoff(3, 0.5), Duration::from_secs(8));
        for n in 1..40 {
            assert!(backoff(n, 1.0) <= Duration::from_secs(300));
        }
        assert_eq!(backoff(u32::MAX, 0.5), Duration::from_secs(300));
    }
}
