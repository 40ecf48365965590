//! Reconcile errors: each maps to a condition reason, an Event reason and a requeue policy.

use std::time::Duration;

use crate::providers::{ErrorKind, ProviderError};

/// What to fix in the cluster before the controller can act (no remote call is made).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct ConfigError {
    /// Condition reason: `ProviderNotReady` (provider or its credentials) or `InvalidSpec`.
    pub reason: &'static str,
    /// What is wrong and how to fix it; never a secret value.
    pub message: String,
}

impl ConfigError {
    /// A problem with the provider or its credentials.
    pub fn provider(message: impl Into<String>) -> Self {
        ConfigError {
            reason: "ProviderNotReady",
            message: message.into(),
        }
    }

    /// A problem with the subscription's own spec or the Secrets it references.
    pub fn spec(message: impl Into<String>) -> Self {
        ConfigError {
            reason: "InvalidSpec",
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
        reason: &'static str,
        /// What to do.
        message: String,
    },
    /// The Kubernetes API failed.
    #[error("Kubernetes API: {}", kube_message(.0))]
    Kube(#[from] kube::Error),
}

/// A kube error in one line (its Display of an API error repeats the whole Status).
fn kube_message(e: &kube::Error) -> String {
    match e {
        kube::Error::Api(s) => format!("{} {}: {}", s.code, s.reason, s.message),
        other => other.to_string(),
    }
}

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
    pub fn ready_reason(&self) -> &'static str {
        match self {
            ReconcileError::Config(c) => c.reason,
            ReconcileError::Provider(p) => match p.kind {
                ErrorKind::Invalid => "InvalidSpec",
                ErrorKind::Unauthorized | ErrorKind::Forbidden => "ProviderNotReady",
                _ => "Unavailable",
            },
            ReconcileError::Blocked { reason, .. } => reason,
            ReconcileError::Kube(_) => "Unavailable",
        }
    }

    /// The `Synced` condition reason (also the Event reason and the metric label).
    pub fn synced_reason(&self) -> &'static str {
        match self {
            ReconcileError::Provider(p) => match p.kind {
                ErrorKind::Unauthorized | ErrorKind::Forbidden => "Unauthorized",
                ErrorKind::RateLimited => "RateLimited",
                _ => "ReconcileError",
            },
            _ => "ReconcileError",
        }
    }

    /// When to try again.
    pub fn retry(&self) -> Retry {
        match self {
            ReconcileError::Config(_) | ReconcileError::Blocked { .. } => Retry::OnChange,
            ReconcileError::Provider(p) => match p.kind {
                ErrorKind::Invalid | ErrorKind::Unsupported => Retry::OnChange,
                ErrorKind::RateLimited => Retry::After(p.retry_after.unwrap_or(Duration::from_secs(30))),
                ErrorKind::Unauthorized | ErrorKind::Forbidden => Retry::After(Duration::from_secs(300)),
                ErrorKind::NotFound | ErrorKind::Conflict | ErrorKind::Transient => Retry::Backoff,
            },
            ReconcileError::Kube(_) => Retry::Backoff,
        }
    }
}

/// Capped exponential backoff with jitter for the `failures`-th consecutive failure.
pub fn backoff(failures: u32) -> Duration {
    let base = Duration::from_secs(2).saturating_mul(2u32.saturating_pow(failures.saturating_sub(1).min(10)));
    let capped = base.min(Duration::from_secs(300));
    capped
        .mul_f64(0.8 + fastrand::f64() * 0.4)
        .min(Duration::from_secs(300))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_error_class_has_its_policy() {
        let p = |kind| ReconcileError::Provider(ProviderError::new(kind, "avaya", "create", "x"));
        assert_eq!(p(ErrorKind::Invalid).retry(), Retry::OnChange);
        assert_eq!(p(ErrorKind::Invalid).ready_reason(), "InvalidSpec");
        assert_eq!(p(ErrorKind::Unauthorized).synced_reason(), "Unauthorized");
        assert_eq!(p(ErrorKind::Transient).retry(), Retry::Backoff);
        let mut limited = ProviderError::new(ErrorKind::RateLimited, "vonage", "list", "slow down");
        limited.retry_after = Some(Duration::from_secs(42));
        let limited = ReconcileError::Provider(limited);
        assert_eq!(limited.retry(), Retry::After(Duration::from_secs(42)));
        assert_eq!(limited.synced_reason(), "RateLimited");
        assert_eq!(ReconcileError::Config(ConfigError::spec("x")).retry(), Retry::OnChange);
    }

    #[test]
    fn backoff_is_capped_with_jitter() {
        assert!(backoff(1) >= Duration::from_millis(1600) && backoff(1) <= Duration::from_millis(2400));
        for n in 1..40 {
            assert!(backoff(n) <= Duration::from_secs(300));
        }
    }
}
