//! The expiry rule of every report: past a known `expiresAt` nothing is Ready, no wait sleeps past it,
//! and a pause says what it holds back.

use std::time::Duration;

use jiff::Timestamp;

use super::{Note, Pass, Report, Wake};
use crate::api::{WebhookSubscriptionStatus, condition};
use crate::controller::reason::Reason;
use crate::controller::status::{condition_state, format_time, set_condition};

/// Past a known `expiresAt` a subscription is not Ready, whatever kept it from being renewed (a pause,
/// an outage, a held retry); and a pass that would otherwise sleep past the expiry wakes for it.
pub(super) fn truthful_expiry(current: &WebhookSubscriptionStatus, pass: &Pass<'_>, report: &mut Report) {
    let Some(expires) = time_of(&report.status.expires_at) else {
        return;
    };
    if expires > pass.now {
        let left = until(pass.now, expires);
        report.wake = match report.wake {
            Wake::After(d) if d <= left => Wake::After(d),
            Wake::After(_) | Wake::OnChange => Wake::After(left),
        };
        return;
    }
    let expired = (String::from("False"), Reason::Expired.as_str().to_string());
    if condition_state(&report.status.conditions, condition::READY).as_ref() == Some(&expired) {
        return;
    }
    let paused = pass.annotations.paused;
    let message = format!(
        "subscription {} expired at {} {}",
        report.status.subscription_id.as_deref().unwrap_or("(unknown)"),
        format_time(expires),
        if paused {
            "while paused; remove the webhook-operator.dev/paused annotation to renew (reactivate) it"
        } else {
            "before it could be renewed; it is renewed (reactivated) as soon as the provider answers"
        }
    );
    set_condition(
        &mut report.status.conditions,
        condition::READY,
        false,
        Reason::Expired,
        &message,
        pass.generation,
        pass.now,
    );
    if condition_state(&current.conditions, condition::READY).as_ref() != Some(&expired) {
        report.events.push(Note::warning(Reason::Expired, message));
    }
}

/// The Synced message of a paused subscription: what the pause holds back.
pub(super) fn paused_message(status: &WebhookSubscriptionStatus, pass: &Pass<'_>) -> String {
    let mut message = String::from(
        "paused by the webhook-operator.dev/paused annotation: no remote writes until it is removed (deletion still runs)",
    );
    if let Some(expires) = time_of(&status.expires_at).filter(|t| *t > pass.now) {
        let due = time_of(&status.renewal_time).is_some_and(|t| t <= pass.now);
        message.push_str(&format!(
            "; the remote subscription expires at {}{}",
            format_time(expires),
            if due {
                " and its renewal is due now"
            } else {
                " and is not renewed while paused"
            }
        ));
    }
    if let Some(token) = pass
        .annotations
        .renew_requested
        .as_deref()
        .filter(|t| status.last_handled_renew_at.as_deref() != Some(*t))
    {
        message.push_str(&format!(
            "; the renewal requested at {token} is deferred until the pause is removed"
        ));
    }
    message
}

/// A retry while a renewal is due must come before the expiry: the wait is at most half the time left
/// (and at least a second), so a backoff never sleeps through the lifetime a renewal would extend.
pub(super) fn before_expiry(wait: Duration, status: &WebhookSubscriptionStatus, now: Timestamp) -> Duration {
    let due = time_of(&status.renewal_time).is_some_and(|t| t <= now);
    match time_of(&status.expires_at).filter(|t| due && *t > now) {
        Some(expires) => wait.min((until(now, expires) / 2).max(Duration::from_secs(1))),
        None => wait,
    }
}

/// A status timestamp.
pub(super) fn time_of(text: &Option<String>) -> Option<Timestamp> {
    text.as_deref().and_then(|t| t.parse::<Timestamp>().ok())
}

/// How long from `now` to `t` (zero when past).
pub(super) fn until(now: Timestamp, t: Timestamp) -> Duration {
    Duration::try_from(t.duration_since(now)).unwrap_or(Duration::ZERO)
}
