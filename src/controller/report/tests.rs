//! Status, Events, gate and wake of a pass, case by case.

use std::collections::{BTreeMap, BTreeSet};

use super::*;
use crate::api::find_condition;
use crate::controller::error::ConfigError;
use crate::providers::{ErrorKind, ProviderError, Remote};

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
        wants_delivery: Some(true),
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
            new_lifetime: false,
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
        "the provider matches the spec"
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
    assert_eq!(
        r.wake,
        Wake::After(PENDING_RECHECK),
        "read again soon, not at the drift check"
    );
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
fn a_subscription_the_provider_disabled_is_not_ready_and_says_how_to_re_enable_it() {
    let a = Annotations::default();
    let mut authvia = pass(&a);
    authvia.provider = Some(ProviderType::Authvia);
    let r = report(&ready_status(), &authvia, None, applied(RemoteState::Disabled, false));
    assert_eq!(state(&r, "Ready"), Some(("False".into(), "DisabledByProvider".into())));
    let message = &find_condition(&r.status.conditions, "Ready").unwrap().message;
    assert!(
        message.contains("reconcile-requested-at") && message.contains("spec.endpoint"),
        "{message}"
    );
    assert_eq!(r.events.len(), 1, "one Warning Event when it turns");
    assert_eq!(r.events[0].severity, Severity::Warning);
    assert_eq!(
        r.status.last_remote_write_time,
        ready_status().last_remote_write_time,
        "nothing written"
    );
    // Disabled by the spec: Ready.
    authvia.wants_delivery = Some(false);
    let r = report(&ready_status(), &authvia, None, applied(RemoteState::Disabled, false));
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
            new_lifetime: true,
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
fn a_create_that_is_ready_at_once_is_one_event() {
    let a = Annotations::default();
    let created = |state| Outcome::Applied {
        applied: Applied {
            id: "id-1".into(),
            remote: remote(state, None),
            renewed: false,
            new_lifetime: true,
            changed: true,
        },
        secret_hash: None,
        done: vec![Done::Created("id-1".into())],
    };
    let r = report(&Default::default(), &pass(&a), None, created(RemoteState::Active));
    assert_eq!(state(&r, "Ready"), Some(("True".into(), "Available".into())));
    assert_eq!(
        r.events,
        vec![Note::normal(Reason::Created, "created avaya subscription id-1".into())],
        "Created says it works; no second Event for Ready"
    );
    // Not ready after the create: the Warning says why, beside the step.
    let r = report(&Default::default(), &pass(&a), None, created(RemoteState::Inactive));
    let reasons: Vec<_> = r.events.iter().map(|n| (n.reason, n.severity)).collect();
    assert_eq!(
        reasons,
        vec![
            (Reason::Created, Severity::Normal),
            (Reason::Expired, Severity::Warning)
        ]
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
            new_lifetime: true,
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
fn a_renewal_request_for_a_subscription_that_does_not_expire_says_so() {
    let a = Annotations {
        renew_requested: Some("r1".into()),
        ..Annotations::default()
    };
    let mut vonage = pass(&a);
    vonage.provider = Some(ProviderType::Vonage);
    let r = report(&ready_status(), &vonage, None, applied(RemoteState::Active, false));
    assert_eq!(r.status.last_handled_renew_at.as_deref(), Some("r1"), "echoed");
    let note = r
        .events
        .iter()
        .find(|e| e.reason == Reason::RenewNotApplicable)
        .expect("an Event");
    assert!(
        note.message.contains("vonage subscriptions do not expire"),
        "{}",
        note.message
    );
    // Handled once: the echo is there, the next pass says nothing.
    let again = report(&r.status, &vonage, None, applied(RemoteState::Active, false));
    assert!(again.events.iter().all(|e| e.reason != Reason::RenewNotApplicable));
    // Avaya renews: no such Event.
    let mut avaya = pass(&a);
    avaya.provider = Some(ProviderType::Avaya);
    let renewed = report(&ready_status(), &avaya, None, applied(RemoteState::Active, false));
    assert!(renewed.events.iter().all(|e| e.reason != Reason::RenewNotApplicable));
}

#[test]
fn a_new_cause_of_the_same_failure_is_told_again_but_a_repeat_is_not() {
    let a = Annotations::default();
    let first = report(
        &ready_status(),
        &pass(&a),
        None,
        failed(ConfigError::spec("Secret default/x has no key token").into()),
    );
    assert_eq!(first.events.len(), 1);
    assert_eq!(state(&first, "Synced"), Some(("False".into(), "InvalidSpec".into())));
    // The same cause again: nothing new to tell.
    let again = report(
        &first.status,
        &pass(&a),
        None,
        failed(ConfigError::spec("Secret default/x has no key token").into()),
    );
    assert!(again.events.is_empty(), "{:?}", again.events);
    // The key was added, another one is missing: the same reason, a new message, a new Event.
    let next = report(
        &first.status,
        &pass(&a),
        None,
        failed(ConfigError::spec("Secret default/x has no key header").into()),
    );
    assert_eq!(next.events.len(), 1, "{:?}", next.events);
    assert!(next.events[0].message.contains("no key header"));
    // Transient trouble with a new wording is not an Event of its own.
    let transient = report(
        &ready_status(),
        &pass(&a),
        None,
        failed(provider_error(ErrorKind::Transient)),
    );
    let mut other = ProviderError::new(ErrorKind::Transient, "avaya", "get", "another wording");
    other.status = Some(503);
    let reworded = report(&transient.status, &pass(&a), None, failed(other.into()));
    assert!(reworded.events.is_empty(), "{:?}", reworded.events);
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
        Reason::DestinationUnverified => failed(provider_error(ErrorKind::DestinationUnverified)),
        Reason::NotVisibleYet => blocked(reason),
        Reason::DisabledByProvider => {
            let mut authvia = pass(&a);
            authvia.provider = Some(ProviderType::Authvia);
            return Some(report(
                &Default::default(),
                &authvia,
                None,
                applied(RemoteState::Disabled, false),
            ));
        }
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
    let (notes, _) = cleanup(Cleanup::LeakAmbiguous(2));
    assert_eq!(notes[0].reason, Reason::AdoptionAmbiguous);
    assert!(cleanup(Cleanup::NoLeak).0.is_empty());
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

#[test]
fn the_renewal_time_is_fixed_by_the_answer_that_started_the_lifetime() {
    let a = Annotations::default();
    let read = |expires: &str, new_lifetime: bool| Outcome::Applied {
        applied: Applied {
            id: "id-1".into(),
            remote: remote(RemoteState::Active, Some(expires)),
            renewed: new_lifetime,
            new_lifetime,
            changed: new_lifetime,
        },
        secret_hash: Some("sha256:abc".into()),
        done: Vec::new(),
    };
    // Renewed at 12:00 for 15 minutes: renewal at about two thirds of it.
    let renewed = report(&ready_status(), &pass(&a), None, read("2026-01-01T12:15:00Z", true)).status;
    let scheduled = renewed.renewal_time.clone().unwrap();
    // Read again five minutes later (the expiry derived from `expiresIn` a second off): nothing moves and
    // nothing is written.
    let later = Pass {
        now: ts("2026-01-01T12:05:00Z"),
        ..pass(&a)
    };
    let drift_read = report(&renewed, &later, None, read("2026-01-01T12:15:01Z", false));
    assert_eq!(drift_read.status.renewal_time.as_deref(), Some(scheduled.as_str()));
    assert_eq!(drift_read.status.expires_at, renewed.expires_at);
    assert_eq!(
        drift_read.status_write(&renewed),
        None,
        "a read that changes nothing writes nothing"
    );
    // An expiry that really moved (renewed by someone else) is taken, and the renewal follows it.
    let moved = report(&renewed, &later, None, read("2026-01-01T12:30:00Z", false)).status;
    assert_eq!(moved.expires_at.as_deref(), Some("2026-01-01T12:30:00Z"));
    assert_ne!(moved.renewal_time.as_deref(), Some(scheduled.as_str()));
    // The next renewal answer fixes a new time from its own lifetime.
    let renewed_again = report(&renewed, &later, None, read("2026-01-01T12:20:00Z", true)).status;
    let next: Timestamp = renewed_again.renewal_time.as_deref().unwrap().parse().unwrap();
    assert!(
        next > ts("2026-01-01T12:14:00Z") && next <= ts("2026-01-01T12:15:00Z"),
        "{next}"
    );
}
