//! The plan's decisions, case by case.

use super::*;
use crate::api::{DeletionPolicy, RenewalPolicy};
use crate::controller::claims::{ClaimIndex, Claimant};
use crate::providers::{AvayaDesired, DesiredSpec, RemoteState, VonageDesired, fingerprint};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use secrecy::SecretString;
use serde_json::{Value, json};
use std::collections::BTreeMap;

fn ts(s: &str) -> Timestamp {
    s.parse().unwrap()
}

fn ready() -> Condition {
    Condition {
        type_: "Ready".into(),
        status: "True".into(),
        reason: "Available".into(),
        message: String::new(),
        observed_generation: Some(1),
        last_transition_time: Time(ts("2026-01-01T00:00:00Z")),
    }
}

fn facts() -> Facts {
    Facts {
        now: ts("2026-01-01T12:00:00Z"),
        generation: 1,
        uid: "uid-1".into(),
        provider: ProviderType::Avaya,
        status: WebhookSubscriptionStatus {
            observed_generation: Some(1),
            conditions: vec![ready()],
            subscription_id: Some("id-1".into()),
            applied_secret_hash: Some(fingerprint(&SecretString::from("tok"))),
            renewal_time: Some("2026-01-01T12:10:00Z".into()),
            ..Default::default()
        },
        annotations: Annotations {
            external_id: Some("id-1".into()),
            ..Default::default()
        },
        adoption: AdoptionPolicy::None,
        secret_hash: Some(fingerprint(&SecretString::from("tok"))),
        last_remote_check: Some(ts("2026-01-01T11:59:00Z")),
        drift_interval: Duration::from_secs(600),
        me: claimant("uid-1", "2026-01-01T00:00:00Z"),
        claims: Arc::new(ClaimIndex::default()),
    }
}

fn claimant(uid: &str, created: &str) -> Claimant {
    Claimant {
        uid: uid.into(),
        namespace: "team".into(),
        name: uid.into(),
        created: Some(ts(created)),
        recorded: false,
    }
}

/// An index where `uid-2` (older, with the id recorded in its status when `recorded`) names `id`.
fn claimed(id: &str, recorded: bool) -> Arc<dyn Claims> {
    let other = Claimant {
        recorded,
        ..claimant("uid-2", "2025-06-01T00:00:00Z")
    };
    Arc::new(ClaimIndex::from_claims([(ProviderType::Avaya, id.to_string(), other)]))
}

fn avaya(token: &str) -> Desired {
    Desired {
        endpoint: "https://h.example.com/a".into(),
        spec: DesiredSpec::Avaya(AvayaDesired {
            families: vec!["AGENT".into()],
            events: vec!["Agent.LoggedIn".into()],
            method: "POST".into(),
            auth_token: Some(SecretString::from(token)),
            auth_token_header: "auth-token".into(),
        }),
    }
}

fn remote_for(desired: &Desired, state: &str) -> Remote {
    Remote {
        id: "id-1".into(),
        state: match state {
            "ACTIVE" => RemoteState::Active,
            "INACTIVE" => RemoteState::Inactive,
            "Enabled" => RemoteState::Enabled,
            other => RemoteState::Unknown(other.into()),
        },
        expires_at: None,
        fields: desired.comparable(),
        generated_secret: None,
    }
}

#[test]
fn an_up_to_date_subscription_needs_no_remote_call() {
    assert_eq!(lookup(&facts()), Lookup::Nothing);
}

#[test]
fn every_trigger_reads_the_remote_side() {
    type Change = Box<dyn Fn(&mut Facts)>;
    let cases: Vec<(&str, Change)> = vec![
        ("spec changed", Box::new(|f| f.generation = 2)),
        (
            "secret changed",
            Box::new(|f| f.secret_hash = Some("sha256:other".into())),
        ),
        (
            "external-id set",
            Box::new(|f| f.annotations.external_id = Some("id-2".into())),
        ),
        (
            "not ready",
            Box::new(|f| f.status.conditions[0].status = "False".into()),
        ),
        (
            "reconcile requested",
            Box::new(|f| f.annotations.reconcile_requested = Some("t1".into())),
        ),
        (
            "renewal requested",
            Box::new(|f| f.annotations.renew_requested = Some("t1".into())),
        ),
        ("renewal due", Box::new(|f| f.now = ts("2026-01-01T12:10:00Z"))),
        ("drift check due", Box::new(|f| f.last_remote_check = None)),
    ];
    for (reason, change) in cases {
        let mut f = facts();
        change(&mut f);
        let why = f.remote_check_reason().map(CheckReason::as_str);
        assert_eq!(why, Some(reason));
        match reason {
            // A renewal or rotation of a Ready subscription is one call, with nothing read first.
            "secret changed" | "renewal requested" | "renewal due" => {
                assert!(matches!(lookup(&f), Lookup::Recorded(_)), "{reason}")
            }
            // A drift check on the operator's interval is served by the account's shared listing.
            "drift check due" => assert!(matches!(lookup(&f), Lookup::Listed(_, None)), "{reason}"),
            _ => assert!(matches!(lookup(&f), Lookup::Get(_)), "{reason}"),
        }
    }
    // A subscription with its own drift interval asks the shared listing for that age.
    let mut f = facts();
    f.last_remote_check = Some(ts("2026-01-01T11:59:00Z"));
    f.annotations.drift_check_interval = Some(Duration::from_secs(30));
    f.drift_interval = Duration::from_secs(30);
    assert_eq!(lookup(&f), Lookup::Listed("id-1".into(), Some(Duration::from_secs(30))));
    // A handled request does not trigger again.
    let mut f = facts();
    f.annotations.reconcile_requested = Some("t1".into());
    f.status.last_handled_reconcile_at = Some("t1".into());
    assert_eq!(lookup(&f), Lookup::Nothing);
}

#[test]
fn only_a_due_renewal_goes_before_routine_work_at_the_rate_limit() {
    let up_to_date = facts();
    assert!(
        !is_routine(&up_to_date, &lookup(&up_to_date)),
        "no call, nothing to send away"
    );
    let mut due = facts();
    due.now = ts("2026-01-01T12:10:00Z");
    assert!(!is_routine(&due, &lookup(&due)));
    // Due while the spec also changed: still a renewal.
    due.generation = 2;
    assert!(!is_routine(&due, &lookup(&due)));
    let mut requested = facts();
    requested.annotations.renew_requested = Some("t1".into());
    assert!(
        is_routine(&requested, &lookup(&requested)),
        "a requested renewal is not urgent"
    );
    let mut drift = facts();
    drift.last_remote_check = None;
    assert!(is_routine(&drift, &lookup(&drift)));
    let create = without_id();
    assert!(is_routine(&create, &lookup(&create)));
}

#[test]
fn searches_need_a_listing_only_as_recent_as_what_they_look_for() {
    let mut f = without_id();
    let find = Lookup::Find(Search::BeforeCreate);
    assert_eq!(listing_since(&find, &f), None, "a plain create looks in the inventory");
    f.adoption = AdoptionPolicy::AdoptOrCreate;
    f.me.created = Some(ts("2026-01-01T11:00:00Z"));
    assert_eq!(
        listing_since(&find, &f),
        Some(ts("2026-01-01T11:00:00Z")),
        "adoption: made at the provider before the resource"
    );
    f.annotations.create_pending = Some("2026-01-01T11:30:00Z".into());
    assert_eq!(
        listing_since(&Lookup::Find(Search::LeakRecovery), &f),
        Some(ts("2026-01-01T11:30:00Z")),
        "leak recovery: created after create-pending"
    );
    f.annotations.create_pending = Some("not a time".into());
    assert_eq!(listing_since(&Lookup::Find(Search::LeakRecovery), &f), Some(f.now));
    assert_eq!(listing_since(&Lookup::Get("id".into()), &f), None);
}

#[test]
fn drift_checks_and_plain_creates_use_the_shared_listing() {
    let mut drift = facts();
    drift.last_remote_check = None;
    assert!(uses_shared_listing(&lookup(&drift), AdoptionPolicy::None));
    let create = Lookup::Find(Search::BeforeCreate);
    assert!(uses_shared_listing(&create, AdoptionPolicy::None));
    assert!(
        !uses_shared_listing(&create, AdoptionPolicy::AdoptOrCreate),
        "adoption lists afresh"
    );
    assert!(!uses_shared_listing(
        &Lookup::Find(Search::LeakRecovery),
        AdoptionPolicy::None
    ));
    assert!(!uses_shared_listing(&Lookup::Get("id".into()), AdoptionPolicy::None));
}

#[test]
fn without_an_id_the_adoption_rules_apply() {
    let mut f = facts();
    f.annotations.external_id = Option::None;
    f.status.subscription_id = Option::None;
    assert_eq!(lookup(&f), Lookup::Find(Search::BeforeCreate));
    f.annotations.create_pending = Some("2026-01-01T11:00:00Z".into());
    assert_eq!(lookup(&f), Lookup::Find(Search::LeakRecovery));

    let d = avaya("tok");
    let one = vec![remote_for(&d, "ACTIVE")];
    let two = vec![remote_for(&d, "ACTIVE"), remote_for(&d, "ACTIVE")];
    let decide_with = |policy, search, matches: Vec<Remote>| {
        let mut f = facts();
        f.adoption = policy;
        decide(&f, &d, Observation::Matches(search, matches))
    };
    use AdoptionPolicy::*;
    use Search::*;
    assert!(matches!(decide_with(None, BeforeCreate, vec![]), Action::Create));
    assert!(matches!(
        decide_with(None, BeforeCreate, one.clone()),
        Action::Blocked {
            reason: Reason::AlreadyExists,
            ..
        }
    ));
    assert!(matches!(
        decide_with(Adopt, BeforeCreate, vec![]),
        Action::Blocked {
            reason: Reason::NotFound,
            ..
        }
    ));
    assert!(matches!(
        decide_with(Adopt, BeforeCreate, one.clone()),
        Action::Adopt { .. }
    ));
    assert!(matches!(
        decide_with(AdoptOrCreate, BeforeCreate, vec![]),
        Action::Create
    ));
    assert!(matches!(
        decide_with(AdoptOrCreate, BeforeCreate, one.clone()),
        Action::Adopt { .. }
    ));
    assert!(matches!(
        decide_with(AdoptOrCreate, BeforeCreate, two.clone()),
        Action::Blocked {
            reason: Reason::AdoptionAmbiguous,
            ..
        }
    ));
    // Leak recovery adopts its own single match whatever the policy, and never creates twice.
    assert!(matches!(decide_with(None, LeakRecovery, one), Action::Adopt { .. }));
    assert!(matches!(decide_with(None, LeakRecovery, vec![]), Action::Create));
    assert!(matches!(
        decide_with(None, LeakRecovery, two),
        Action::Blocked {
            reason: Reason::AdoptionAmbiguous,
            ..
        }
    ));
}

#[test]
fn converge_updates_only_changed_fields_and_renews_avaya_for_rotation() {
    let f = facts();
    let d = avaya("tok");
    assert!(matches!(
        decide(&f, &d, Observation::Found(remote_for(&d, "ACTIVE"))),
        Action::Nothing(_)
    ));
    assert!(matches!(decide(&f, &d, Observation::Gone), Action::Recreate(_)));

    let mut moved = avaya("tok");
    moved.endpoint = "https://h.example.com/b".into();
    match decide(&f, &moved, Observation::Found(remote_for(&d, "ACTIVE"))) {
        Action::Converge { update, renew, .. } => {
            assert_eq!(update, BTreeSet::from([Field::Endpoint]));
            assert_eq!(renew, None);
        }
        other => panic!("{other:?}"),
    }
    // A rotated token goes through renew, not update.
    let mut rotated = facts();
    rotated.secret_hash = Some(fingerprint(&SecretString::from("tok2")));
    match decide(&rotated, &avaya("tok2"), Observation::Found(remote_for(&d, "ACTIVE"))) {
        Action::Converge { update, renew, .. } => {
            assert!(update.is_empty(), "{update:?}");
            assert_eq!(renew, Some(RenewReason::Rotation));
        }
        other => panic!("{other:?}"),
    }
    // INACTIVE is reactivated through renew; due and requested renewals too.
    assert!(matches!(
        decide(&f, &d, Observation::Found(remote_for(&d, "INACTIVE"))),
        Action::Converge {
            renew: Some(RenewReason::Reactivate),
            ..
        }
    ));
    let mut due = facts();
    due.now = ts("2026-01-01T12:10:01Z");
    assert!(matches!(
        decide(&due, &d, Observation::Found(remote_for(&d, "ACTIVE"))),
        Action::Converge {
            renew: Some(RenewReason::Due),
            ..
        }
    ));
}

#[test]
fn vonage_rotation_sends_the_secret() {
    let d = Desired {
        endpoint: "https://h.example.com/v".into(),
        spec: DesiredSpec::Vonage(VonageDesired {
            name: "n-1".into(),
            events: vec!["agent.presencechanged.v1".into()],
            enabled: true,
            secret: Some(SecretString::from("c2VjcmV0")),
        }),
    };
    let mut f = facts();
    f.secret_hash = d.secret_hash();
    let mut remote = remote_for(&d, "Enabled");
    assert!(matches!(
        decide(&f, &d, Observation::Found(remote.clone())),
        Action::Converge { .. }
    ));
    f.status.applied_secret_hash = d.secret_hash();
    assert!(matches!(
        decide(&f, &d, Observation::Found(remote.clone())),
        Action::Nothing(_)
    ));
    // Disabled behind our back: drift in `enabled`.
    remote.fields.insert(Field::Enabled, json!(false));
    match decide(&f, &d, Observation::Found(remote)) {
        Action::Converge { update, .. } => assert_eq!(update, BTreeSet::from([Field::Enabled])),
        other => panic!("{other:?}"),
    }
}

#[test]
fn renewal_time_follows_the_policy_with_bounded_jitter() {
    let observed = ts("2026-01-01T00:00:00Z");
    let expires = ts("2026-01-01T00:15:00Z");
    let default = renewal_time(observed, expires, None, "uid-1");
    // Two thirds of 900 s = 600 s, minus up to 45 s of jitter.
    assert!(
        default <= ts("2026-01-01T00:10:00Z") && default >= ts("2026-01-01T00:09:15Z"),
        "{default}"
    );
    assert_eq!(
        default,
        renewal_time(observed, expires, None, "uid-1"),
        "stable per object"
    );
    let before = RenewalPolicy {
        renew_before: Some("2m".into()),
        renew_before_percentage: None,
    };
    let at = renewal_time(observed, expires, Some(&before), "uid-2");
    assert!(
        at <= ts("2026-01-01T00:13:00Z") && at >= ts("2026-01-01T00:12:15Z"),
        "{at}"
    );
    let percent = RenewalPolicy {
        renew_before: None,
        renew_before_percentage: Some(50),
    };
    let at = renewal_time(observed, expires, Some(&percent), "uid-3");
    assert!(
        at <= ts("2026-01-01T00:07:30Z") && at >= ts("2026-01-01T00:06:45Z"),
        "{at}"
    );
    // A renewBefore longer than the lifetime renews at once.
    let long = RenewalPolicy {
        renew_before: Some("1h".into()),
        renew_before_percentage: None,
    };
    assert_eq!(renewal_time(observed, expires, Some(&long), "uid-4"), observed);
}

#[test]
fn vonage_subscriptions_are_never_renewed() {
    let d = Desired {
        endpoint: "https://h.example.com/v".into(),
        spec: DesiredSpec::Vonage(VonageDesired {
            name: "n-1".into(),
            events: vec!["agent.presencechanged.v1".into()],
            enabled: true,
            secret: None,
        }),
    };
    let mut f = facts();
    f.provider = ProviderType::Vonage;
    f.secret_hash = None;
    f.status.applied_secret_hash = None;
    f.annotations.renew_requested = Some("t1".into());
    f.now = ts("2026-01-01T12:10:01Z");
    assert!(matches!(
        decide(&f, &d, Observation::Found(remote_for(&d, "Enabled"))),
        Action::Nothing(_)
    ));
}

#[test]
fn adopting_sends_the_secrets_because_the_remote_ones_are_unknown() {
    let d = avaya("tok");
    let mut f = facts();
    f.annotations.external_id = None;
    f.status.subscription_id = None;
    f.adoption = AdoptionPolicy::Adopt;
    match decide(
        &f,
        &d,
        Observation::Matches(Search::BeforeCreate, vec![remote_for(&d, "ACTIVE")]),
    ) {
        Action::Adopt { remote, update, renew } => {
            assert_eq!(remote.id, "id-1");
            assert!(update.is_empty());
            assert_eq!(renew, Some(RenewReason::Rotation), "the token is pushed through renew");
        }
        other => panic!("{other:?}"),
    }
    let mut moved = avaya("tok");
    moved.endpoint = "https://h.example.com/b".into();
    match decide(
        &f,
        &moved,
        Observation::Matches(Search::BeforeCreate, vec![remote_for(&d, "ACTIVE")]),
    ) {
        Action::Adopt { update, .. } => assert_eq!(update, BTreeSet::from([Field::Endpoint])),
        other => panic!("{other:?}"),
    }
}

#[test]
fn a_failed_subscription_is_held_until_its_time_or_a_change() {
    let now = ts("2026-01-01T12:00:00Z");
    let gate = Gate {
        inputs: "a".into(),
        until: Some(ts("2026-01-01T12:00:10Z")),
        failures: 2,
    };
    assert_eq!(held(Some(&gate), "a", now), Some(Wake::After(Duration::from_secs(10))));
    assert_eq!(held(Some(&gate), "b", now), None, "changed inputs retry at once");
    assert_eq!(
        held(Some(&gate), "a", ts("2026-01-01T12:00:10Z")),
        None,
        "its time has come"
    );
    assert_eq!(held(None, "a", now), None);
    let until_change = Gate { until: None, ..gate };
    assert_eq!(held(Some(&until_change), "a", now), Some(Wake::OnChange));
    let a = Annotations::default();
    assert_ne!(
        inputs_of(1, &a, Some("h1"), "p"),
        inputs_of(1, &a, Some("h2"), "p"),
        "a rotated secret is a new input"
    );
    assert_ne!(inputs_of(1, &a, None, "p"), inputs_of(2, &a, None, "p"));
    let requested = Annotations {
        reconcile_requested: Some("t".into()),
        ..Default::default()
    };
    assert_ne!(inputs_of(1, &a, None, "p"), inputs_of(1, &requested, None, "p"));
}

#[test]
fn own_annotation_writes_win_over_an_older_cache() {
    let own = OwnAnnotations {
        resource_version: "42".into(),
        external_id: None,
        create_pending: Some("2026-01-01T11:00:00Z".into()),
    };
    let cached = Annotations {
        reconcile_requested: Some("t".into()),
        ..Default::default()
    };
    let trusted = trust_own_writes(cached.clone(), Some("41"), Some(&own));
    assert_eq!(
        trusted.create_pending, own.create_pending,
        "the cache lags: our write stands"
    );
    assert_eq!(
        trusted.reconcile_requested.as_deref(),
        Some("t"),
        "the rest comes from the cache"
    );
    assert_eq!(
        lookup(&Facts {
            annotations: trusted,
            ..without_id()
        }),
        Lookup::Find(Search::LeakRecovery)
    );
    // Caught up (or a user changed it since): the cache is the truth.
    let imported = Annotations {
        external_id: Some("id-9".into()),
        ..Default::default()
    };
    assert_eq!(trust_own_writes(imported.clone(), Some("43"), Some(&own)), imported);
    assert_eq!(trust_own_writes(imported.clone(), Some("42"), Some(&own)), imported);
    assert_eq!(trust_own_writes(imported.clone(), Some("opaque"), Some(&own)), imported);
    assert_eq!(trust_own_writes(imported.clone(), Some("1"), None), imported);
}

fn without_id() -> Facts {
    let mut f = facts();
    f.annotations.external_id = None;
    f.status.subscription_id = None;
    f
}

#[test]
fn input_the_schema_cannot_check_is_reported_with_its_fix() {
    let bad = Annotations::parse(&std::collections::BTreeMap::from([(
        crate::api::annotation::DRIFT_CHECK_INTERVAL.to_string(),
        "99999999999999999999h".to_string(),
    )]));
    let problem = check_input(&bad, None).unwrap();
    assert!(problem.contains("drift-check-interval"), "{problem}");
    assert_ne!(
        inputs_of(1, &bad, None, "p"),
        inputs_of(1, &Annotations::default(), None, "p"),
        "fixing it is a new input"
    );
    let long = RenewalPolicy {
        renew_before: Some("99999999999999999999h".into()),
        renew_before_percentage: None,
    };
    let problem = check_input(&Annotations::default(), Some(&long)).unwrap();
    assert!(problem.starts_with("spec.renewal.renewBefore:"), "{problem}");
    let fine = RenewalPolicy {
        renew_before: Some("5m".into()),
        renew_before_percentage: None,
    };
    assert_eq!(check_input(&Annotations::default(), Some(&fine)), None);
}

#[test]
fn deletion_deletes_orphans_releases_or_looks_for_a_leak() {
    let with_id = Annotations {
        external_id: Some("id-1".into()),
        ..Default::default()
    };
    let pending = Annotations {
        create_pending: Some("2026-01-01T11:00:00Z".into()),
        ..Default::default()
    };
    let status_only = WebhookSubscriptionStatus {
        subscription_id: Some("id-2".into()),
        ..Default::default()
    };
    use DeletionPolicy::{Delete, Orphan};
    assert_eq!(deletion(Delete, &with_id, None), Deletion::Delete("id-1".into()));
    assert_eq!(
        deletion(Delete, &Annotations::default(), Some(&status_only)),
        Deletion::Delete("id-2".into())
    );
    assert_eq!(deletion(Delete, &pending, None), Deletion::FindLeak);
    assert_eq!(deletion(Delete, &Annotations::default(), None), Deletion::Release);
    assert_eq!(deletion(Orphan, &with_id, None), Deletion::Orphan(Some("id-1".into())));
    assert_eq!(deletion(Orphan, &pending, None), Deletion::Orphan(None));

    let d = avaya("tok");
    let none = ClaimIndex::default();
    let leaked_of = |m: &[Remote], claims: &dyn Claims| leaked(m, claims, ProviderType::Avaya, "uid-1");
    assert_eq!(leaked_of(&[], &none), Leak::None);
    assert_eq!(
        leaked_of(&[remote_for(&d, "ACTIVE")], &none),
        Leak::Delete("id-1".into())
    );
    assert_eq!(
        leaked_of(&[remote_for(&d, "ACTIVE"), remote_for(&d, "ACTIVE")], &none),
        Leak::Ambiguous(2)
    );
    // Another subscription's remote one is never taken for our leak.
    assert_eq!(
        leaked_of(&[remote_for(&d, "ACTIVE")], &*claimed("id-1", false)),
        Leak::None
    );
}

#[test]
fn a_remote_id_another_subscription_holds_is_never_touched() {
    // A copy carrying the holder's external-id: blocked before any call.
    let mut copy = facts();
    copy.status.subscription_id = None;
    copy.claims = claimed("id-1", true);
    let (reason, message) = check_claim(&copy).expect("blocked");
    assert_eq!(reason, Reason::AlreadyClaimed);
    assert!(
        message.contains("claimed by WebhookSubscription team/uid-2"),
        "{message}"
    );
    // The holder itself is not blocked by a weaker copy.
    let mut holder = facts();
    holder.claims = Arc::new(ClaimIndex::from_claims([(
        ProviderType::Avaya,
        "id-1".to_string(),
        claimant("uid-9", "2024-01-01T00:00:00Z"),
    )]));
    assert_eq!(check_claim(&holder), None, "recorded beats older-but-unrecorded");
    assert_eq!(check_claim(&facts()), None);
}

#[test]
fn claimed_matches_are_neither_adopted_nor_advised() {
    let d = avaya("tok");
    let mut f = without_id();
    f.claims = claimed("id-1", true);
    let only_claimed = vec![remote_for(&d, "ACTIVE")];
    for policy in [
        AdoptionPolicy::None,
        AdoptionPolicy::Adopt,
        AdoptionPolicy::AdoptOrCreate,
    ] {
        f.adoption = policy;
        match decide(&f, &d, Observation::Matches(Search::BeforeCreate, only_claimed.clone())) {
            Action::Blocked { reason, message } => {
                assert_eq!(reason, Reason::AlreadyClaimed, "{policy:?}");
                assert!(
                    !message.contains("adoptionPolicy"),
                    "never advise adopting it: {message}"
                );
            }
            other => panic!("{policy:?}: {other:?}"),
        }
    }
    // Leak recovery: someone else's is not our leak; create ours.
    assert!(matches!(
        decide(&f, &d, Observation::Matches(Search::LeakRecovery, only_claimed)),
        Action::Create
    ));
}

#[test]
fn renewal_time_survives_any_lifetime() {
    let observed = ts("2026-01-01T00:00:00Z");
    let far = jiff::Timestamp::MAX;
    assert!(renewal_time(observed, far, None, "u") >= observed);
    assert_eq!(renewal_time(observed, observed, None, "u"), observed);
    let before = RenewalPolicy {
        renew_before: Some("99999999999999999999h".into()),
        renew_before_percentage: None,
    };
    let at = renewal_time(observed, ts("2026-01-01T00:15:00Z"), Some(&before), "u");
    assert!(at >= observed && at <= ts("2026-01-01T00:10:00Z"), "{at}");
}

fn authvia(disabled: bool) -> Desired {
    Desired {
        endpoint: "https://h.example.com/v".into(),
        spec: DesiredSpec::Authvia(crate::providers::AuthviaDesired {
            event_type: "business_processes.update".into(),
            description: None,
            timeout_seconds: None,
            attempts: 50,
            auto_disable: true,
            disable_callback_url: None,
            disabled,
            conditions: Default::default(),
            headers: Vec::new(),
            secret: None,
        }),
    }
}

#[test]
fn a_subscription_the_provider_disabled_stays_disabled_until_asked_again() {
    let desired = authvia(false);
    let mut disabled_remote = remote_for(&desired, "Enabled");
    disabled_remote.state = RemoteState::Disabled;
    disabled_remote.fields.insert(Field::Disabled, json!(true));
    let mut f = facts();
    f.provider = ProviderType::Authvia;
    f.secret_hash = None;
    f.status.applied_secret_hash = None;
    // A drift check: reported, not re-enabled.
    assert!(held_disabled(&f, &desired, &disabled_remote));
    assert!(matches!(
        converge(&f, &desired, disabled_remote.clone()),
        Action::Nothing(_)
    ));
    // A spec change or the reconcile annotation re-enables it.
    let mut changed = f.clone();
    changed.generation = 2;
    let Action::Converge { update, .. } = converge(&changed, &desired, disabled_remote.clone()) else {
        panic!("a spec change re-enables");
    };
    assert_eq!(update, BTreeSet::from([Field::Disabled]));
    let mut asked = f.clone();
    asked.annotations.reconcile_requested = Some("2026-01-01T12:00:00Z".into());
    assert!(!held_disabled(&asked, &desired, &disabled_remote));
    // Disabled by the spec itself: nothing to hold or report.
    assert!(!held_disabled(&f, &authvia(true), &disabled_remote));
    // Vonage does not disable by itself: its drift is undone.
    let mut vonage = f.clone();
    vonage.provider = ProviderType::Vonage;
    assert!(!held_disabled(&vonage, &desired, &disabled_remote));
}

#[test]
fn a_subscription_missing_right_after_a_write_is_not_believed_gone_where_changes_show_late() {
    let desired = avaya("tok");
    let mut f = facts();
    f.provider = ProviderType::Vonage;
    f.status.last_remote_write_time = Some("2026-01-01T11:59:45Z".into());
    let Action::Blocked { reason, message } = decide(&f, &desired, Observation::Gone) else {
        panic!("15 s after the write a 404 is not believed");
    };
    assert_eq!(reason, Reason::NotVisibleYet);
    assert!(message.contains("id-1") && message.contains("30 s"), "{message}");
    f.status.last_remote_write_time = Some("2026-01-01T11:59:20Z".into());
    assert!(matches!(decide(&f, &desired, Observation::Gone), Action::Recreate(id) if id == "id-1"));
    // Avaya shows its changes at once.
    f.provider = ProviderType::Avaya;
    f.status.last_remote_write_time = Some("2026-01-01T11:59:59Z".into());
    assert!(matches!(decide(&f, &desired, Observation::Gone), Action::Recreate(_)));
}

#[test]
fn echoed_defaults_and_masked_secrets_are_not_drift() {
    let desired = authvia(false);
    let remote = Remote {
        id: "id-1".into(),
        state: RemoteState::Enabled,
        expires_at: None,
        // What a provider that echoes its defaults reports for fields the spec leaves unset.
        fields: BTreeMap::from([
            (Field::Endpoint, json!("https://h.example.com/v")),
            (Field::EventType, json!("business_processes.update")),
            (Field::Description, Value::Null),
            (Field::Timeout, json!(15)),
            (Field::Attempts, json!(50)),
            (Field::AutoDisable, json!(true)),
            (Field::DisableCallbackUrl, Value::Null),
            (Field::Disabled, json!(false)),
            (Field::Conditions, json!({})),
            (Field::Headers, json!([])),
        ]),
        generated_secret: None,
    };
    assert!(drift(&desired, &remote).is_empty());
    // A masked Avaya token is a token: no drift; a token removed from the spec is.
    let with_token = avaya("tok");
    let mut masked = remote_for(&with_token, "ACTIVE");
    masked.fields.insert(Field::AuthToken, json!(true));
    assert!(drift(&with_token, &masked).is_empty());
    let mut without_token = avaya("tok");
    if let DesiredSpec::Avaya(a) = &mut without_token.spec {
        a.auth_token = None;
    }
    assert_eq!(drift(&without_token, &masked), BTreeSet::from([Field::AuthToken]));
}
