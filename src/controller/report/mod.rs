//! Report: the pure last step of a pass. From the current status, the facts of the pass and how it ended,
//! compute the next status, the Events to emit, when to look again and how the object's retry gate
//! changes. The effects (one status write when it differs, the Events, metrics) are the caller's.

use std::time::Duration;

use jiff::{SignedDuration, Timestamp};

use super::act::{Applied, Done};
use super::error::{ReconcileError, Retry, backoff};
use super::plan::{self, Gate, OwnAnnotations, RenewReason, Wake};
use super::reason::Reason;
use super::status::{condition_state, format_time, set_condition};
use crate::api::{Annotations, RenewalPolicy, WebhookSubscriptionStatus, condition, find_condition};
use crate::providers::{Field, ProviderType, RemoteState};

/// How far two reads of one expiry may differ and still be the same lifetime (an expiry derived from a
/// whole-second `expiresIn` at the moment of each read).
const SAME_EXPIRY: SignedDuration = SignedDuration::from_secs(2);

/// How soon a subscription the provider reports PENDING is read again.
pub const PENDING_RECHECK: Duration = Duration::from_secs(3);

/// The facts of a pass that the report needs.
#[derive(Clone, Debug)]
pub struct Pass<'a> {
    /// Now, from the injectable clock.
    pub now: Timestamp,
    /// `metadata.generation`.
    pub generation: i64,
    /// `metadata.uid` (renewal jitter).
    pub uid: &'a str,
    /// The object's annotations.
    pub annotations: &'a Annotations,
    /// `spec.renewal`.
    pub renewal: Option<&'a RenewalPolicy>,
    /// The drift check interval in force.
    pub drift_interval: Duration,
    /// The provider's API, when it was resolved.
    pub provider: Option<ProviderType>,
    /// A random number in [0, 1) that spreads retry backoffs.
    pub jitter: f64,
    /// Whether the spec wants the provider to deliver (None: the spec was not read).
    pub wants_delivery: Option<bool>,
}

/// How a pass ended.
#[derive(Debug)]
pub enum Outcome {
    /// The paused annotation is set: nothing was done.
    Paused,
    /// Held back after a failure with the same inputs.
    Held(Wake),
    /// Up to date: nothing was read or written.
    UpToDate,
    /// The remote subscription was read, and changed where needed.
    Applied {
        /// What was applied.
        applied: Applied,
        /// The secret material now applied.
        secret_hash: Option<String>,
        /// The steps done.
        done: Vec<Done>,
    },
    /// The pass failed.
    Failed {
        /// Why.
        error: ReconcileError,
        /// [`plan::inputs_of`] the pass, for the retry gate.
        inputs: String,
        /// The steps done before the failure.
        done: Vec<Done>,
    },
}

/// Normal or Warning.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Severity {
    /// Something the operator did.
    Normal,
    /// Something that needs attention.
    Warning,
}

/// An Event to emit on the subscription.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Note {
    /// Normal or Warning.
    pub severity: Severity,
    /// The Event reason.
    pub reason: Reason,
    /// The Event note; never a secret.
    pub message: String,
}

impl Note {
    fn normal(reason: Reason, message: String) -> Self {
        Note {
            severity: Severity::Normal,
            reason,
            message,
        }
    }

    fn warning(reason: Reason, message: String) -> Self {
        Note {
            severity: Severity::Warning,
            reason,
            message,
        }
    }
}

/// How the object's retry gate changes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum GateChange {
    /// As it is.
    Keep,
    /// Removed: the pass succeeded.
    Clear,
    /// Set after a failure.
    Set(Gate),
}

/// The effects a pass must have.
#[derive(Clone, Debug, PartialEq)]
pub struct Report {
    /// The next status (written only when it differs from the current one).
    pub status: WebhookSubscriptionStatus,
    /// The Events, in order.
    pub events: Vec<Note>,
    /// When to look again.
    pub wake: Wake,
    /// The retry gate.
    pub gate: GateChange,
    /// The reason (metric label) and message of a failed pass.
    pub error: Option<(Reason, String)>,
    /// The operator's own annotations, when the pass wrote them.
    pub own_annotations: Option<OwnAnnotations>,
}

impl Report {
    /// The status to write: only when it differs from the current one (a write that changes nothing
    /// would still wake every watcher).
    pub fn status_write(&self, current: &WebhookSubscriptionStatus) -> Option<&WebhookSubscriptionStatus> {
        (self.status != *current).then_some(&self.status)
    }
}

/// The report of one pass.
pub fn report(current: &WebhookSubscriptionStatus, pass: &Pass<'_>, gate: Option<&Gate>, outcome: Outcome) -> Report {
    let mut report = report_outcome(current, pass, gate, outcome);
    truthful_expiry(current, pass, &mut report);
    report
}

/// The report of one pass, before the expiry rule.
fn report_outcome(
    current: &WebhookSubscriptionStatus,
    pass: &Pass<'_>,
    gate: Option<&Gate>,
    outcome: Outcome,
) -> Report {
    let mut next = current.clone();
    match outcome {
        Outcome::Paused => {
            let message = paused_message(&next, pass);
            let synced_before =
                crate::api::find_condition(&current.conditions, condition::SYNCED).map(|c| c.message.clone());
            set_condition(
                &mut next.conditions,
                condition::SYNCED,
                false,
                Reason::ReconcilePaused,
                &message,
                pass.generation,
                pass.now,
            );
            let expires = time_of(&next.expires_at).filter(|t| *t > pass.now);
            // Warned ahead of time: when the pause begins, and again when a renewal falls due during it.
            let events = match expires {
                Some(expires) if synced_before.as_deref() != Some(message.as_str()) => vec![Note::warning(
                    Reason::ExpiresWhilePaused,
                    format!(
                        "paused: remote subscription {} expires at {} and is not renewed while paused; remove the webhook-operator.dev/paused annotation before then",
                        next.subscription_id.as_deref().unwrap_or("(unknown)"),
                        format_time(expires)
                    ),
                )],
                _ => Vec::new(),
            };
            // Look again when a renewal falls due (to say so) and at expiry (to say it expired).
            let wake = [time_of(&next.renewal_time), expires]
                .into_iter()
                .flatten()
                .filter(|t| *t > pass.now)
                .min()
                .map_or(Wake::OnChange, |t| Wake::After(until(pass.now, t)));
            Report {
                status: next,
                events,
                wake,
                gate: GateChange::Keep,
                error: None,
                own_annotations: None,
            }
        }
        Outcome::Held(wake) => Report {
            status: next,
            events: Vec::new(),
            wake: match wake {
                Wake::After(d) => Wake::After(d.max(Duration::from_millis(100))),
                Wake::OnChange => Wake::OnChange,
            },
            gate: GateChange::Keep,
            error: None,
            own_annotations: None,
        },
        Outcome::UpToDate => Report {
            wake: Wake::After(next_wake(&next, pass.now, pass.drift_interval)),
            status: next,
            events: Vec::new(),
            gate: GateChange::Clear,
            error: None,
            own_annotations: None,
        },
        Outcome::Applied {
            applied,
            secret_hash,
            done,
        } => {
            let renew_asked = pass
                .annotations
                .renew_requested
                .as_ref()
                .filter(|t| current.last_handled_renew_at.as_ref() != Some(*t))
                .cloned();
            let ready = applied_status(&mut next, pass, &applied, secret_hash);
            let mut events = done_notes(pass.provider, &done);
            if let (Some(asked), Some(provider)) = (renew_asked, pass.provider)
                && !super::bindings::expires(provider)
            {
                events.push(Note::normal(
                    Reason::RenewNotApplicable,
                    format!(
                        "renewal requested ({asked}), but {} subscriptions do not expire: nothing to renew; the subscription was checked against the provider instead",
                        provider.as_str()
                    ),
                ));
            }
            // A step's Event (Created, Adopted, Renewed...) already says the subscription works; a Ready
            // Event beside it would double the writes of every create. It is kept when nothing else was
            // said, or when Ready turned false.
            let ready_changed = condition_state(&current.conditions, condition::READY)
                != condition_state(&next.conditions, condition::READY);
            if ready_changed && (events.is_empty() || ready.severity == Severity::Warning) {
                events.push(ready);
            }
            // A subscription the provider is still setting up is looked at again soon, not at the next
            // drift check: Ready follows when it turns ACTIVE.
            let mut wake = next_wake(&next, pass.now, pass.drift_interval);
            if applied.remote.state == RemoteState::Pending {
                wake = wake.min(PENDING_RECHECK);
            }
            Report {
                wake: Wake::After(wake),
                status: next,
                events,
                gate: GateChange::Clear,
                error: None,
                own_annotations: last_annotated(&done),
            }
        }
        Outcome::Failed { error, inputs, done } => {
            let failures = gate.map_or(0, |g| g.failures).saturating_add(1);
            let wait = match error.retry() {
                Retry::OnChange => None,
                Retry::After(d) => Some(d),
                Retry::Backoff => Some(backoff(failures, pass.jitter)),
            }
            .map(|w| before_expiry(w, &next, pass.now));
            let until = wait.map(|w| {
                SignedDuration::try_from(w)
                    .ok()
                    .and_then(|w| pass.now.checked_add(w).ok())
                    .unwrap_or(Timestamp::MAX)
            });
            failed_status(&mut next, pass, &error, failures);
            let mut events = done_notes(pass.provider, &done);
            let changed = condition_state(&current.conditions, condition::SYNCED)
                != condition_state(&next.conditions, condition::SYNCED)
                || condition_state(&current.conditions, condition::READY)
                    != condition_state(&next.conditions, condition::READY);
            // A failure that needs a person is told again when its cause changes (a second missing key
            // after the first was fixed); transient trouble only when its reason does.
            let message = |conditions| find_condition(conditions, condition::SYNCED).map(|c| &c.message);
            let new_cause = !error.keeps_ready() && message(&current.conditions) != message(&next.conditions);
            if changed || new_cause {
                events.push(Note::warning(error.event_reason(), error.to_string()));
            }
            Report {
                status: next,
                events,
                wake: wait.map_or(Wake::OnChange, Wake::After),
                gate: GateChange::Set(Gate {
                    inputs,
                    until,
                    failures,
                }),
                error: Some((error.event_reason(), error.to_string())),
                own_annotations: last_annotated(&done),
            }
        }
    }
}

/// Status after a pass that read (and perhaps changed) the remote subscription; returns the Event of its
/// Ready condition, for when that changed.
fn applied_status(
    next: &mut WebhookSubscriptionStatus,
    pass: &Pass<'_>,
    applied: &Applied,
    secret_hash: Option<String>,
) -> Note {
    let remote = &applied.remote;
    // The renewal time is fixed when a create or renew answers, from that answer's lifetime; a later read
    // of the same expiry (Avaya derives it from `expiresIn`, so it moves by a second or so) keeps both,
    // so a drift check neither shifts the renewal towards the expiry nor writes anything.
    let same_lifetime = !applied.new_lifetime
        && next.observed_generation == Some(pass.generation)
        && next.renewal_time.is_some()
        && match (time_of(&next.expires_at), remote.expires_at) {
            (Some(known), Some(read)) => known.duration_since(read).abs() <= SAME_EXPIRY,
            _ => false,
        };
    next.observed_generation = Some(pass.generation);
    next.subscription_id = Some(applied.id.clone());
    next.applied_secret_hash = secret_hash;
    next.last_handled_reconcile_at = pass.annotations.reconcile_requested.clone();
    next.last_handled_renew_at = pass.annotations.renew_requested.clone();
    next.failed_attempts = None;
    next.remote_state = Some(remote.state.as_str().to_string());
    if !same_lifetime {
        next.expires_at = remote.expires_at.map(format_time);
        next.renewal_time = remote
            .expires_at
            .map(|exp| plan::renewal_time(pass.now, exp, pass.renewal, pass.uid))
            .map(format_time);
    }
    if applied.changed {
        next.last_remote_write_time = Some(format_time(pass.now));
    }
    if applied.renewed {
        next.last_renewed_at = Some(format_time(pass.now));
        next.renewal_count = Some(next.renewal_count.unwrap_or(0).saturating_add(1));
    }
    let (ready, reason, message) = ready_from_state(applied, pass);
    set_condition(
        &mut next.conditions,
        condition::READY,
        ready,
        reason,
        &message,
        pass.generation,
        pass.now,
    );
    // One message whether this pass changed something or not (the Events say what changed), so the read
    // after a change writes nothing.
    set_condition(
        &mut next.conditions,
        condition::SYNCED,
        true,
        Reason::ReconcileSuccess,
        "the provider matches the spec",
        pass.generation,
        pass.now,
    );
    if ready {
        Note::normal(reason, message)
    } else {
        Note::warning(reason, message)
    }
}

/// Ready from what the provider reports.
fn ready_from_state(applied: &Applied, pass: &Pass<'_>) -> (bool, Reason, String) {
    let id = &applied.id;
    match &applied.remote.state {
        // Disabled although the spec wants delivery: the provider did it (the plan holds it back).
        RemoteState::Disabled
            if pass.wants_delivery == Some(true)
                && pass.provider.is_some_and(super::bindings::disables_on_failures) =>
        {
            (
                false,
                Reason::DisabledByProvider,
                format!(
                    "{} disabled subscription {id}: it does so when deliveries to spec.endpoint keep failing (spec.authvia.attempts); fix the receiver, then re-enable it by changing the spec or setting the webhook-operator.dev/reconcile-requested-at annotation",
                    pass.provider.map_or("the provider", ProviderType::as_str)
                ),
            )
        }
        RemoteState::Inactive => (
            false,
            Reason::Expired,
            format!("subscription {id} is INACTIVE at the provider"),
        ),
        RemoteState::Pending => (
            false,
            Reason::Creating,
            format!("subscription {id} is PENDING at the provider"),
        ),
        state @ (RemoteState::Active | RemoteState::Enabled | RemoteState::Disabled | RemoteState::Unknown(_)) => {
            (true, Reason::Available, format!("subscription {id} is {state}"))
        }
    }
}

/// Status after a failed pass.
fn failed_status(next: &mut WebhookSubscriptionStatus, pass: &Pass<'_>, error: &ReconcileError, failures: u32) {
    // Transient trouble leaves a working subscription Ready; anything that needs a fix does not.
    if !error.keeps_ready() || condition_state(&next.conditions, condition::READY).is_none() {
        set_condition(
            &mut next.conditions,
            condition::READY,
            false,
            error.ready_reason(),
            &error.to_string(),
            pass.generation,
            pass.now,
        );
    }
    set_condition(
        &mut next.conditions,
        condition::SYNCED,
        false,
        error.synced_reason(),
        &error.to_string(),
        pass.generation,
        pass.now,
    );
    if error.counts_as_attempt() {
        next.failed_attempts = Some(i32::try_from(failures).unwrap_or(i32::MAX));
        next.last_failure_time = Some(format_time(pass.now));
    }
    if error.judges_generation() {
        next.observed_generation = Some(pass.generation);
    }
}

/// The last write of the operator's own annotations among the steps done.
fn last_annotated(done: &[Done]) -> Option<OwnAnnotations> {
    done.iter().rev().find_map(|step| match step {
        Done::Annotated(own) => Some(own.clone()),
        Done::RemoteGone(_)
        | Done::Created(_)
        | Done::Adopted(_)
        | Done::Updated(..)
        | Done::Renewed(..)
        | Done::SecretGenerated(..) => None,
    })
}

/// The Events of the steps done.
fn done_notes(provider: Option<ProviderType>, done: &[Done]) -> Vec<Note> {
    let provider = provider.map_or("provider", ProviderType::as_str);
    done.iter()
        .filter_map(|step| {
            Some(match step {
                Done::RemoteGone(id) => Note::warning(
                    Reason::RemoteDeleted,
                    format!("{provider} subscription {id} was deleted outside the operator; creating a new one"),
                ),
                Done::Created(id) => Note::normal(Reason::Created, format!("created {provider} subscription {id}")),
                Done::Adopted(id) => Note::normal(
                    Reason::Adopted,
                    format!("adopted existing {provider} subscription {id}"),
                ),
                Done::Updated(id, fields) => Note::normal(
                    Reason::Updated,
                    format!("updated {provider} subscription {id}: {}", field_names(fields)),
                ),
                Done::Renewed(id, reason) => match reason {
                    RenewReason::Rotation => Note::normal(
                        Reason::Rotated,
                        format!("renewed {provider} subscription {id} with the new token"),
                    ),
                    RenewReason::Reactivate => Note::normal(
                        Reason::Reactivated,
                        format!("{provider} subscription {id} was INACTIVE; renewed it"),
                    ),
                    RenewReason::Requested => Note::normal(
                        Reason::Renewed,
                        format!("renewed {provider} subscription {id} on request"),
                    ),
                    RenewReason::Due => Note::normal(
                        Reason::Renewed,
                        format!("renewed {provider} subscription {id} before it expires"),
                    ),
                },
                Done::Annotated(_) => return None,
                Done::SecretGenerated(name, key) => Note::normal(
                    Reason::SecretGenerated,
                    format!("generated a signing secret into Secret {name}, key {key} (owned by this subscription)"),
                ),
            })
        })
        .collect()
}

fn field_names(fields: &std::collections::BTreeSet<Field>) -> String {
    fields.iter().map(|f| format!("{f:?}")).collect::<Vec<_>>().join(", ")
}

/// The next time to look: the renewal time or the next drift check, whichever comes first.
pub fn next_wake(status: &WebhookSubscriptionStatus, now: Timestamp, drift: Duration) -> Duration {
    let renewal = status
        .renewal_time
        .as_deref()
        .and_then(|t| t.parse::<Timestamp>().ok())
        .map(|t| Duration::try_from(t.duration_since(now)).unwrap_or(Duration::ZERO));
    renewal.map_or(drift, |r| r.min(drift)).max(Duration::from_millis(200))
}

mod cleanup;
mod expiry;
#[cfg(test)]
mod tests;

pub use cleanup::{Cleanup, cleanup};
use expiry::{before_expiry, paused_message, time_of, truthful_expiry, until};
