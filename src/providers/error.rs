//! One classification of every provider failure, which the controller maps to conditions and requeues.

use std::time::Duration;

/// What kind of failure, decided once from the HTTP status (or the transport) of the provider's answer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ErrorKind {
    /// The request was refused as invalid (4xx with a reason): retrying the same request cannot help.
    Invalid,
    /// The credentials were refused (token endpoint, or 401 after one refresh).
    Unauthorized,
    /// The credentials work but lack a permission or scope.
    Forbidden,
    /// The subscription does not exist.
    NotFound,
    /// The request collides with existing state (e.g. a duplicate Vonage name).
    Conflict,
    /// Too many requests; `retry_after` says when to try again.
    RateLimited,
    /// 5xx, timeouts, refused connections: worth retrying with backoff.
    Transient,
    /// The provider has no such operation (e.g. renew outside Avaya).
    Unsupported,
    /// The provider's test delivery to the destination failed at create (AuthVia verifies the
    /// destination first): the receiver may simply not be up yet, so it is retried with backoff.
    DestinationUnverified,
}

impl ErrorKind {
    /// The kind an HTTP status means.
    pub fn from_status(status: u16) -> Self {
        match status {
            401 => ErrorKind::Unauthorized,
            403 => ErrorKind::Forbidden,
            404 | 410 => ErrorKind::NotFound,
            409 => ErrorKind::Conflict,
            429 => ErrorKind::RateLimited,
            400..=499 => ErrorKind::Invalid,
            _ => ErrorKind::Transient,
        }
    }
}

/// A field the provider rejected, with its message (from Avaya's problem+json `violations`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Violation {
    /// The provider's field path, e.g. `transport.endpoint`.
    pub field: String,
    /// Why.
    pub message: String,
}

/// A failed provider call. The message never holds a secret, a token or a raw response body: it is built
/// from the operation, the status and the provider's own error title/detail fields only.
#[derive(Clone, Debug, thiserror::Error)]
#[error("{provider} {operation}: {message}")]
pub struct ProviderError {
    /// Classification.
    pub kind: ErrorKind,
    /// `avaya`, `vonage` or `authvia`.
    pub provider: &'static str,
    /// What was attempted (`create`, `renew`, `token`, ...).
    pub operation: &'static str,
    /// The HTTP status, when there was a response.
    pub status: Option<u16>,
    /// Human-readable, secret-free explanation.
    pub message: String,
    /// Field-level reasons for an invalid request.
    pub violations: Vec<Violation>,
    /// For rate limiting: when the provider allows the next call.
    pub retry_after: Option<Duration>,
}

impl ProviderError {
    /// A new error of `kind`.
    pub fn new(kind: ErrorKind, provider: &'static str, operation: &'static str, message: impl Into<String>) -> Self {
        ProviderError {
            kind,
            provider,
            operation,
            status: None,
            message: message.into(),
            violations: Vec::new(),
            retry_after: None,
        }
    }

    /// Whether the remote object is gone (what a delete counts as success).
    pub fn is_not_found(&self) -> bool {
        self.kind == ErrorKind::NotFound
    }
}

/// Short for results of provider calls.
pub type Result<T> = std::result::Result<T, ProviderError>;
