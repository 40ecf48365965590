//! When to look again and when to retry: the renewal schedule, and the gate that holds a failed
//! subscription back until its inputs change or its time comes.

use std::time::Duration;

use jiff::{SignedDuration, Timestamp};

use crate::api::{Annotations, RenewalPolicy, parse_go_duration};

/// When to renew: `renewBefore` or `renewBeforePercentage` of the lifetime the provider reported
/// (`observed_at` → `expires_at`), by default when two thirds of it have passed, minus a jitter of up to
/// 5% of the lifetime (at most 5 minutes) derived from the uid, so renewals spread out but stay stable.
pub fn renewal_time(
    observed_at: Timestamp,
    expires_at: Timestamp,
    policy: Option<&RenewalPolicy>,
    uid: &str,
) -> Timestamp {
    let lifetime = expires_at.duration_since(observed_at).max(SignedDuration::ZERO);
    let lifetime_secs = lifetime.as_secs_f64();
    let before_secs = match policy {
        Some(RenewalPolicy {
            renew_before: Some(before),
            ..
        }) => parse_go_duration(before)
            .map(|d| d.as_secs_f64())
            .unwrap_or(lifetime_secs / 3.0),
        Some(RenewalPolicy {
            renew_before_percentage: Some(p),
            ..
        }) => lifetime_secs * f64::from(*p) / 100.0,
        _ => lifetime_secs / 3.0,
    }
    .min(lifetime_secs);
    let spread = (lifetime_secs / 20.0).min(300.0);
    let digest = ring::digest::digest(&ring::digest::SHA256, uid.as_bytes());
    let fraction = f64::from(u16::from_be_bytes([digest.as_ref()[0], digest.as_ref()[1]])) / f64::from(u16::MAX);
    SignedDuration::try_from_secs_f64(before_secs + spread * fraction)
        .ok()
        .and_then(|before| expires_at.checked_sub(before).ok())
        .unwrap_or(observed_at)
        .max(observed_at)
}

/// When to look at an object again.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Wake {
    /// Only when it (or something it references) changes.
    OnChange,
    /// After this long.
    After(Duration),
}

/// Why a subscription is held back from retrying: the inputs it failed with, and until when.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Gate {
    /// [`inputs_of`] the failed pass.
    pub inputs: String,
    /// Until when (None: until the inputs change).
    pub until: Option<Timestamp>,
    /// Consecutive failures.
    pub failures: u32,
}

/// A fingerprint of what a retry would use: a change lets a held-back subscription try at once.
pub fn inputs_of(generation: i64, annotations: &Annotations, secret_hash: Option<&str>, provider: &str) -> String {
    format!(
        "{generation}|{}|{provider}|{}|{}|{}",
        secret_hash.unwrap_or(""),
        annotations.reconcile_requested.as_deref().unwrap_or(""),
        annotations.external_id.as_deref().unwrap_or(""),
        annotations.problems.join(";"),
    )
}

/// What is wrong with what the user wrote beyond the schema: the operator's annotations, and a
/// `renewBefore` too long to be a duration. Nothing is done remotely until it is fixed.
pub fn check_input(annotations: &Annotations, renewal: Option<&RenewalPolicy>) -> Option<String> {
    if let Some(problem) = annotations.problems.first() {
        return Some(problem.clone());
    }
    let before = renewal?.renew_before.as_deref()?;
    parse_go_duration(before)
        .err()
        .map(|e| format!("spec.renewal.renewBefore: {e}; use a duration such as 5m or 1h30m, or renewBeforePercentage"))
}

/// Whether a subscription that failed stays quiet: its inputs are the same and its time has not come.
/// Returns when to look again if so.
pub fn held(gate: Option<&Gate>, inputs: &str, now: Timestamp) -> Option<Wake> {
    let gate = gate.filter(|g| g.inputs == inputs)?;
    match gate.until {
        None => Some(Wake::OnChange),
        Some(until) if now < until => Some(Wake::After(
            Duration::try_from(until.duration_since(now)).unwrap_or(Duration::ZERO),
        )),
        Some(_) => None,
    }
}
