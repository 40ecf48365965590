//! Report: the pure last step of a pass. From the current status, the facts of the pass and how it ended,
//! compute the next status, the Events to emit, when to look again and how the object's retry gate
//! changes. The effects (one status write when it differs, the Events, metrics) are the caller's.

use std::time::Duration;

use jiff::{SignedDuration, Timestamp};

use super::act::{Applied, Done};
use super::error::{ConfigError, ReconcileError, Retry, backoff};
use super::plan::{self, Gate, Leak, OwnAnnotations, RenewReason, Wake};
use super::reason::Reason;
use super::status::{condition_state, format_time, set_condition};
use crate::api::{Annotations, RenewalPolicy, WebhookSubscriptionStatus, condition};
use crate::providers::{Field, ProviderError, ProviderType, RemoteState};

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

/// Past a known `expiresAt` a subscription is not Ready, whatever kept it from being renewed (a pause,
/// an outage, a held retry); and a pass that would otherwise sleep past the expiry wakes for it.
fn truthful_expiry(current: &WebhookSubscriptionStatus, pass: &Pass<'_>, report: &mut Report) {
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
fn paused_message(status: &WebhookSubscriptionStatus, pass: &Pass<'_>) -> String {
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
fn before_expiry(wait: Duration, status: &WebhookSubscriptionStatus, now: Timestamp) -> Duration {
    let due = time_of(&status.renewal_time).is_some_and(|t| t <= now);
    match time_of(&status.expires_at).filter(|t| due && *t > now) {
        Some(expires) => wait.min((until(now, expires) / 2).max(Duration::from_secs(1))),
        None => wait,
    }
}

/// A status timestamp.
fn time_of(text: &Option<String>) -> Option<Timestamp> {
    text.as_deref().and_then(|t| t.parse::<Timestamp>().ok())
}

/// How long from `now` to `t` (zero when past).
fn until(now: Timestamp, t: Timestamp) -> Duration {
    Duration::try_from(t.duration_since(now)).unwrap_or(Duration::ZERO)
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
            let ready = applied_status(&mut next, pass, &applied, secret_hash);
            let mut events = done_notes(pass.provider, &done);
            if condition_state(&current.conditions, condition::READY)
                != condition_state(&next.conditions, condition::READY)
            {
                events.push(ready);
            }
            Report {
                wake: Wake::After(next_wake(&next, pass.now, pass.drift_interval)),
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
            if changed {
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
    next.observed_generation = Some(pass.generation);
    next.subscription_id = Some(applied.id.clone());
    next.applied_secret_hash = secret_hash;
    next.last_handled_reconcile_at = pass.annotations.reconcile_requested.clone();
    next.last_handled_renew_at = pass.annotations.renew_requested.clone();
    next.failed_attempts = None;
    let remote = &applied.remote;
    next.remote_state = Some(remote.state.as_str().to_string());
    next.expires_at = remote.expires_at.map(format_time);
    next.renewal_time = remote
        .expires_at
        .map(|exp| plan::renewal_time(pass.now, exp, pass.renewal, pass.uid))
        .map(format_time);
    if applied.renewed {
        next.last_renewed_at = Some(format_time(pass.now));
        next.renewal_count = Some(next.renewal_count.unwrap_or(0).saturating_add(1));
    }
    let (ready, reason, message) = ready_from_state(applied);
    set_condition(
        &mut next.conditions,
        condition::READY,
        ready,
        reason,
        &message,
        pass.generation,
        pass.now,
    );
    let synced = if applied.changed {
        "the provider was brought in line with the spec"
    } else {
        "the provider matches the spec"
    };
    set_condition(
        &mut next.conditions,
        condition::SYNCED,
        true,
        Reason::ReconcileSuccess,
        synced,
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
fn ready_from_state(applied: &Applied) -> (bool, Reason, String) {
    let id = &applied.id;
    match &applied.remote.state {
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
    /// The leak search found this.
    LeakSearched(Leak),
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
        Cleanup::Released | Cleanup::LeakSearched(Leak::None) => (Vec::new(), Ok(())),
        Cleanup::Claimed { id, holder } => (
            vec![Note::warning(
                Reason::AlreadyClaimed,
                format!("remote subscription {id} is claimed by WebhookSubscription {holder}; it was not deleted"),
            )],
            Ok(()),
        ),
        // Deleting the single match is decided by the caller's plan; reaching here means nothing to do.
        Cleanup::LeakSearched(Leak::Delete(_)) => (Vec::new(), Ok(())),
        Cleanup::LeakSearched(Leak::Ambiguous(n)) => (
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

#[cfg(test)]
mod tests {
    use std::collections::{BTreeMap, BTreeSet};

    use super::*;
    use crate::api::find_condition;
    use crate::controller::error::ConfigError;
    use crate::providers::{ErrorKind, Remote};

    fn ts(s: &str) -> Timestamp {
        s.parse().unwrap()
    }

    const NOW: &str = "2026-01-01T12:00:00Z";

    fn pass(annotations: &Annotations) -> Pass<'_> {
        Pass {
            now: ts(NOW),
            generation: 2,
            uid: "uid-1",
            annotations,
            renewal: None,
            drift_interval: Duration::from_secs(600),
            provider: Some(ProviderType::Avaya),
            jitter: 0.5,
        }
    }

    fn remote(state: RemoteState, expires_at: Option<&str>) -> Remote {
        Remote {
            id: "id-1".into(),
            state,
            expires_at: expires_at.map(ts),
            fields: BTreeMap::new(),
            generated_secret: None,
        }
    }

    fn applied(state: RemoteState, changed: bool) -> Outcome {
        Outcome::Applied {
            applied: Applied {
                id: "id-1".into(),
                remote: remote(state, None),
                renewed: false,
                changed,
            },
            secret_hash: Some("sha256:abc".into()),
            done: Vec::new(),
        }
    }

    fn failed(error: ReconcileError) -> Outcome {
        Outcome::Failed {
            error,
            inputs: "in".into(),
            done: Vec::new(),
        }
    }

    fn provider_error(kind: ErrorKind) -> ReconcileError {
        ProviderError::new(kind, "avaya", "get", "the provider said no").into()
    }

    /// (status, reason) of a condition.
    fn state(report: &Report, type_: &str) -> Option<(String, String)> {
        condition_state(&report.status.conditions, type_)
    }

    fn ready_status() -> WebhookSubscriptionStatus {
        let a = Annotations::default();
        report(&Default::default(), &pass(&a), None, applied(RemoteState::Active, true)).status
    }

    #[test]
    fn a_first_success_is_ready_available_synced_and_announced() {
        let a = Annotations {
            reconcile_requested: Some("t1".into()),
            ..Default::default()
        };
        let r = report(&Default::default(), &pass(&a), None, applied(RemoteState::Active, true));
        assert_eq!(state(&r, "Ready"), Some(("True".into(), "Available".into())));
        assert_eq!(state(&r, "Synced"), Some(("True".into(), "ReconcileSuccess".into())));
        let s = &r.status;
        assert_eq!(s.observed_generation, Some(2));
        assert_eq!(s.subscription_id.as_deref(), Some("id-1"));
        assert_eq!(s.remote_state.as_deref(), Some("ACTIVE"));
        assert_eq!(s.applied_secret_hash.as_deref(), Some("sha256:abc"));
        assert_eq!(s.last_handled_reconcile_at.as_deref(), Some("t1"));
        assert_eq!(
            find_condition(&s.conditions, "Synced").unwrap().message,
            "the provider was brought in line with the spec"
        );
        assert_eq!(
            r.events,
            vec![Note::normal(Reason::Available, "subscription id-1 is ACTIVE".into())]
        );
        assert_eq!(r.gate, GateChange::Clear);
        assert_eq!(r.wake, Wake::After(Duration::from_secs(600)), "the next drift check");
        assert_eq!(r.error, None);
    }

    #[test]
    fn an_unchanged_pass_writes_the_same_status_and_emits_nothing() {
        let a = Annotations::default();
        let current = ready_status();
        let r = report(&current, &pass(&a), None, applied(RemoteState::Active, true));
        assert_eq!(r.status, current);
        assert_eq!(r.status_write(&current), None, "no write");
        assert!(r.status_write(&Default::default()).is_some());
        assert!(r.events.is_empty());
        let r = report(&current, &pass(&a), None, Outcome::UpToDate);
        assert_eq!(r.status, current);
        assert!(r.events.is_empty());
        assert_eq!(r.gate, GateChange::Clear);
    }

    #[test]
    fn pending_is_creating_and_inactive_is_expired() {
        let a = Annotations::default();
        let r = report(&ready_status(), &pass(&a), None, applied(RemoteState::Pending, false));
        assert_eq!(state(&r, "Ready"), Some(("False".into(), "Creating".into())));
        assert_eq!(r.events[0].severity, Severity::Warning);
        let r = report(&ready_status(), &pass(&a), None, applied(RemoteState::Inactive, false));
        assert_eq!(state(&r, "Ready"), Some(("False".into(), "Expired".into())));
        assert_eq!(
            find_condition(&r.status.conditions, "Ready").unwrap().message,
            "subscription id-1 is INACTIVE at the provider"
        );
        // A subscription the user disabled is what they asked for.
        let r = report(&ready_status(), &pass(&a), None, applied(RemoteState::Disabled, false));
        assert_eq!(state(&r, "Ready"), Some(("True".into(), "Available".into())));
    }

    #[test]
    fn renewals_schedule_the_next_one_from_the_answer() {
        let a = Annotations {
            renew_requested: Some("r1".into()),
            ..Default::default()
        };
        let outcome = Outcome::Applied {
            applied: Applied {
                id: "id-1".into(),
                remote: remote(RemoteState::Active, Some("2026-01-01T12:15:00Z")),
                renewed: true,
                changed: true,
            },
            secret_hash: None,
            done: vec![Done::Renewed("id-1".into(), RenewReason::Requested)],
        };
        let r = report(&ready_status(), &pass(&a), None, outcome);
        let s = &r.status;
        assert_eq!(s.expires_at.as_deref(), Some("2026-01-01T12:15:00Z"));
        let renewal: Timestamp = s.renewal_time.as_deref().unwrap().parse().unwrap();
        assert!(renewal <= ts("2026-01-01T12:10:00Z") && renewal >= ts("2026-01-01T12:09:15Z"));
        assert_eq!(s.last_renewed_at.as_deref(), Some(NOW));
        assert_eq!(s.renewal_count, Some(1));
        assert_eq!(s.last_handled_renew_at.as_deref(), Some("r1"));
        assert_eq!(
            r.events,
            vec![Note::normal(
                Reason::Renewed,
                "renewed avaya subscription id-1 on request".into()
            )]
        );
        assert_eq!(
            r.wake,
            Wake::After(Duration::try_from(renewal.duration_since(ts(NOW))).unwrap())
        );
    }

    #[test]
    fn every_step_done_is_an_event_in_order() {
        let a = Annotations::default();
        let done = vec![
            Done::RemoteGone("old".into()),
            Done::Created("id-1".into()),
            Done::SecretGenerated("s-vonage-signing".into(), "secret".into()),
            Done::Adopted("id-1".into()),
            Done::Updated("id-1".into(), BTreeSet::from([Field::Endpoint, Field::Events])),
            Done::Renewed("id-1".into(), RenewReason::Rotation),
            Done::Renewed("id-1".into(), RenewReason::Reactivate),
            Done::Renewed("id-1".into(), RenewReason::Due),
        ];
        let outcome = Outcome::Applied {
            applied: Applied {
                id: "id-1".into(),
                remote: remote(RemoteState::Active, None),
                renewed: true,
                changed: true,
            },
            secret_hash: None,
            done,
        };
        let r = report(&ready_status(), &pass(&a), None, outcome);
        let reasons: Vec<_> = r.events.iter().map(|n| n.reason).collect();
        assert_eq!(
            reasons,
            vec![
                Reason::RemoteDeleted,
                Reason::Created,
                Reason::SecretGenerated,
                Reason::Adopted,
                Reason::Updated,
                Reason::Rotated,
                Reason::Reactivated,
                Reason::Renewed
            ]
        );
        assert_eq!(r.events[0].severity, Severity::Warning);
        assert_eq!(r.events[4].message, "updated avaya subscription id-1: Endpoint, Events");
    }

    #[test]
    fn a_transient_failure_keeps_a_working_subscription_ready_and_backs_off() {
        let a = Annotations::default();
        let r = report(
            &ready_status(),
            &pass(&a),
            None,
            failed(provider_error(ErrorKind::Transient)),
        );
        assert_eq!(state(&r, "Ready"), Some(("True".into(), "Available".into())));
        assert_eq!(state(&r, "Synced"), Some(("False".into(), "ReconcileError".into())));
        assert_eq!(r.status.failed_attempts, Some(1));
        assert_eq!(r.status.last_failure_time.as_deref(), Some(NOW));
        assert_eq!(r.status.observed_generation, ready_status().observed_generation);
        assert_eq!(r.wake, Wake::After(Duration::from_secs(2)));
        assert_eq!(
            r.gate,
            GateChange::Set(Gate {
                inputs: "in".into(),
                until: Some(ts("2026-01-01T12:00:02Z")),
                failures: 1
            })
        );
        assert_eq!(r.events.len(), 1, "Synced flipped: one Warning");
        assert_eq!(r.events[0].reason, Reason::Unavailable);
        // The third failure in a row waits longer, and says nothing new.
        let previous = Gate {
            inputs: "in".into(),
            until: None,
            failures: 2,
        };
        let again = report(
            &r.status,
            &pass(&a),
            Some(&previous),
            failed(provider_error(ErrorKind::Transient)),
        );
        assert_eq!(again.wake, Wake::After(Duration::from_secs(8)));
        assert_eq!(again.status.failed_attempts, Some(3));
        assert!(again.events.is_empty());
        // With no Ready yet, a transient failure is Unavailable.
        let first = report(
            &Default::default(),
            &pass(&a),
            None,
            failed(provider_error(ErrorKind::Transient)),
        );
        assert_eq!(state(&first, "Ready"), Some(("False".into(), "Unavailable".into())));
    }

    #[test]
    fn failures_that_need_a_fix_wait_for_a_change() {
        let a = Annotations::default();
        let r = report(
            &ready_status(),
            &pass(&a),
            None,
            failed(provider_error(ErrorKind::Invalid)),
        );
        assert_eq!(state(&r, "Ready"), Some(("False".into(), "InvalidSpec".into())));
        assert_eq!(r.wake, Wake::OnChange);
        assert_eq!(r.status.observed_generation, Some(2), "this generation was judged");
        assert!(matches!(&r.gate, GateChange::Set(g) if g.until.is_none()));
        assert_eq!(
            r.error,
            Some((Reason::InvalidSpec, "avaya get: the provider said no".into()))
        );
    }

    #[test]
    fn rate_limits_wait_for_retry_after() {
        let a = Annotations::default();
        let mut limited = ProviderError::new(ErrorKind::RateLimited, "vonage", "list", "slow down");
        limited.retry_after = Some(Duration::from_secs(42));
        let r = report(&ready_status(), &pass(&a), None, failed(limited.into()));
        assert_eq!(state(&r, "Synced"), Some(("False".into(), "RateLimited".into())));
        assert_eq!(state(&r, "Ready"), Some(("True".into(), "Available".into())));
        assert_eq!(r.wake, Wake::After(Duration::from_secs(42)));
        assert_eq!(r.events[0].reason, Reason::RateLimited);
    }

    #[test]
    fn paused_and_held_subscriptions_change_nothing_but_synced() {
        let a = Annotations::default();
        let current = ready_status();
        let r = report(&current, &pass(&a), None, Outcome::Paused);
        assert_eq!(state(&r, "Synced"), Some(("False".into(), "ReconcilePaused".into())));
        assert_eq!(state(&r, "Ready"), Some(("True".into(), "Available".into())));
        assert_eq!((r.wake, r.gate), (Wake::OnChange, GateChange::Keep));
        let r = report(&current, &pass(&a), None, Outcome::Held(Wake::After(Duration::ZERO)));
        assert_eq!(r.status, current);
        assert_eq!(r.wake, Wake::After(Duration::from_millis(100)), "never a hot loop");
        assert_eq!(r.gate, GateChange::Keep);
    }

    /// One failing or succeeding pass per reason of the README's troubleshooting table.
    fn scenario(reason: Reason) -> Option<Report> {
        let a = Annotations::default();
        let blocked = |reason| {
            failed(ReconcileError::Blocked {
                reason,
                message: "m".into(),
            })
        };
        let outcome = match reason {
            Reason::Available => applied(RemoteState::Active, false),
            Reason::Creating => applied(RemoteState::Pending, false),
            Reason::Expired => applied(RemoteState::Inactive, false),
            Reason::Unavailable | Reason::ReconcileError => failed(provider_error(ErrorKind::Transient)),
            Reason::InvalidSpec => failed(ConfigError::spec("Secret default/x does not exist").into()),
            Reason::ProviderNotReady => failed(ConfigError::provider("WebhookProvider \"p\" does not exist").into()),
            Reason::AlreadyExists | Reason::NotFound | Reason::AdoptionAmbiguous | Reason::AlreadyClaimed => {
                blocked(reason)
            }
            Reason::RateLimited => failed(provider_error(ErrorKind::RateLimited)),
            Reason::Unauthorized => failed(provider_error(ErrorKind::Unauthorized)),
            Reason::ReconcilePaused => Outcome::Paused,
            _ => return None,
        };
        Some(report(&Default::default(), &pass(&a), None, outcome))
    }

    #[test]
    fn every_reason_of_the_troubleshooting_table_is_reported() {
        let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).unwrap();
        let table = readme
            .split("## Troubleshooting")
            .nth(1)
            .and_then(|rest| rest.split("\n## ").next())
            .expect("README has a Troubleshooting section");
        let mut listed = Vec::new();
        for row in table.lines().filter(|l| l.starts_with("| `")) {
            let first_cell = row.split('|').nth(1).unwrap_or_default();
            listed.extend(first_cell.split('`').skip(1).step_by(2).map(str::to_string));
        }
        assert!(listed.len() >= 12, "{listed:?}");
        for name in listed {
            let reason = Reason::ALL
                .iter()
                .copied()
                .find(|r| r.as_str() == name)
                .unwrap_or_else(|| panic!("README reason {name} is not a Reason"));
            let r = scenario(reason).unwrap_or_else(|| panic!("no scenario reports {name}"));
            let reported: Vec<String> = r.status.conditions.iter().map(|c| c.reason.clone()).collect();
            assert!(reported.contains(&name), "{name}: the scenario reported {reported:?}");
        }
    }

    #[test]
    fn deletions_report_what_happened() {
        let (notes, result) = cleanup(Cleanup::Orphaned(Some("id-1".into())));
        assert_eq!(notes[0].reason, Reason::Orphaned);
        assert!(result.is_ok());
        assert_eq!(cleanup(Cleanup::Orphaned(None)).0, vec![]);
        let (notes, result) = cleanup(Cleanup::DeleteAnswered {
            provider: ProviderType::Vonage,
            id: "id-1".into(),
            result: Err(ProviderError::new(ErrorKind::NotFound, "vonage", "delete", "gone")),
        });
        assert_eq!(
            notes,
            vec![Note::normal(Reason::Deleted, "deleted vonage subscription id-1".into())]
        );
        assert!(result.is_ok(), "already gone is deleted");
        let (notes, result) = cleanup(Cleanup::DeleteAnswered {
            provider: ProviderType::Vonage,
            id: "id-1".into(),
            result: Err(ProviderError::new(ErrorKind::Transient, "vonage", "delete", "503")),
        });
        assert_eq!(notes[0].reason, Reason::DeleteFailed);
        assert!(result.is_err(), "retried");
        let (notes, result) = cleanup(Cleanup::ProviderUnavailable {
            provider_ref: "WebhookProvider \"p\"".into(),
            id: None,
            error: ConfigError::provider("gone"),
        });
        assert_eq!(notes[0].reason, Reason::ProviderUnavailable);
        assert!(notes[0].message.contains("(unknown id)"));
        assert!(result.is_ok(), "released: nothing can be done");
        let (notes, _) = cleanup(Cleanup::LeakSearched(Leak::Ambiguous(2)));
        assert_eq!(notes[0].reason, Reason::AdoptionAmbiguous);
        assert!(cleanup(Cleanup::LeakSearched(Leak::None)).0.is_empty());
    }

    #[test]
    fn next_wake_is_the_renewal_or_the_drift_check() {
        let now = ts(NOW);
        let mut s = WebhookSubscriptionStatus::default();
        assert_eq!(next_wake(&s, now, Duration::from_secs(600)), Duration::from_secs(600));
        s.renewal_time = Some("2026-01-01T12:01:00Z".into());
        assert_eq!(next_wake(&s, now, Duration::from_secs(600)), Duration::from_secs(60));
        s.renewal_time = Some("2025-01-01T00:00:00Z".into());
        assert_eq!(next_wake(&s, now, Duration::from_secs(600)), Duration::from_millis(200));
    }

    fn expiring(expires: &str, renewal: &str) -> WebhookSubscriptionStatus {
        let mut s = ready_status();
        s.expires_at = Some(expires.into());
        s.renewal_time = Some(renewal.into());
        s
    }

    #[test]
    fn past_a_known_expiry_nothing_is_ready_whatever_the_cause() {
        let a = Annotations::default();
        let current = expiring("2026-01-01T11:59:00Z", "2026-01-01T11:50:00Z");
        // The provider is down: the transient error would keep Ready, the expiry does not.
        let r = report(&current, &pass(&a), None, failed(provider_error(ErrorKind::Transient)));
        assert_eq!(state(&r, "Ready"), Some(("False".into(), "Expired".into())));
        let message = crate::api::find_condition(&r.status.conditions, "Ready")
            .unwrap()
            .message
            .clone();
        assert!(
            message.contains("expired at 2026-01-01T11:59:00Z before it could be renewed"),
            "{message}"
        );
        assert!(
            r.events
                .iter()
                .any(|n| n.reason == Reason::Expired && n.severity == Severity::Warning)
        );
        // Held back after the failure: the same.
        let r = report(
            &current,
            &pass(&a),
            None,
            Outcome::Held(Wake::After(Duration::from_secs(60))),
        );
        assert_eq!(state(&r, "Ready"), Some(("False".into(), "Expired".into())));
        assert!(r.status_write(&current).is_some());
        // Said once: the next pass over the expired status adds nothing.
        let again = report(
            &r.status,
            &pass(&a),
            None,
            Outcome::Held(Wake::After(Duration::from_secs(60))),
        );
        assert!(again.events.is_empty());
        assert_eq!(again.status_write(&r.status), None);
    }

    #[test]
    fn a_due_renewal_is_retried_before_the_expiry_whatever_the_backoff() {
        let a = Annotations::default();
        // Renewal due, 6 s left: the third failure's 8 s backoff becomes 3 s.
        let current = expiring("2026-01-01T12:00:06Z", "2026-01-01T11:59:00Z");
        let previous = Gate {
            inputs: "in".into(),
            until: None,
            failures: 2,
        };
        let r = report(
            &current,
            &pass(&a),
            Some(&previous),
            failed(provider_error(ErrorKind::Transient)),
        );
        assert_eq!(r.wake, Wake::After(Duration::from_secs(3)));
        assert!(matches!(&r.gate, GateChange::Set(g) if g.until == Some(ts("2026-01-01T12:00:03Z"))));
        // Not yet due: the backoff stands.
        let calm = expiring("2026-01-01T12:10:00Z", "2026-01-01T12:05:00Z");
        let r = report(
            &calm,
            &pass(&a),
            Some(&previous),
            failed(provider_error(ErrorKind::Transient)),
        );
        assert_eq!(r.wake, Wake::After(Duration::from_secs(8)));
    }

    #[test]
    fn a_wait_never_sleeps_past_a_known_expiry() {
        let a = Annotations::default();
        let current = expiring("2026-01-01T12:00:30Z", "2026-01-01T11:59:00Z");
        let r = report(&current, &pass(&a), None, failed(ConfigError::spec("x").into()));
        assert_eq!(
            r.wake,
            Wake::After(Duration::from_secs(30)),
            "wakes to report the expiry"
        );
    }

    #[test]
    fn a_pause_says_what_it_holds_back_ahead_of_time() {
        let a = Annotations {
            paused: true,
            renew_requested: Some("r7".into()),
            ..Default::default()
        };
        let current = expiring("2026-01-01T12:10:00Z", "2026-01-01T12:05:00Z");
        let r = report(&current, &pass(&a), None, Outcome::Paused);
        let synced = crate::api::find_condition(&r.status.conditions, "Synced")
            .unwrap()
            .message
            .clone();
        assert!(
            synced.contains("expires at 2026-01-01T12:10:00Z and is not renewed while paused"),
            "{synced}"
        );
        assert!(synced.contains("the renewal requested at r7 is deferred"), "{synced}");
        assert_eq!(r.events.len(), 1);
        assert_eq!(
            (r.events[0].reason, r.events[0].severity),
            (Reason::ExpiresWhilePaused, Severity::Warning)
        );
        assert_eq!(
            r.wake,
            Wake::After(Duration::from_secs(300)),
            "when the renewal falls due"
        );
        assert_eq!(
            state(&r, "Ready"),
            Some(("True".into(), "Available".into())),
            "still delivering"
        );
        // The renewal falls due while paused: said once more.
        let mut due = pass(&a);
        due.now = ts("2026-01-01T12:06:00Z");
        let r2 = report(&r.status, &due, None, Outcome::Paused);
        assert_eq!(r2.events.len(), 1);
        assert!(r2.events[0].message.contains("expires at 2026-01-01T12:10:00Z"));
        assert_eq!(r2.wake, Wake::After(Duration::from_secs(240)), "then at the expiry");
        // Past the expiry, paused: Expired, and how to recover.
        let mut late = pass(&a);
        late.now = ts("2026-01-01T12:11:00Z");
        let r3 = report(&r2.status, &late, None, Outcome::Paused);
        assert_eq!(state(&r3, "Ready"), Some(("False".into(), "Expired".into())));
        let ready = crate::api::find_condition(&r3.status.conditions, "Ready")
            .unwrap()
            .message
            .clone();
        assert!(
            ready.contains("while paused; remove the webhook-operator.dev/paused annotation"),
            "{ready}"
        );
    }
}
