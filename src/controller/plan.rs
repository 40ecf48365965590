//! The pure part of a reconcile: from what was observed, decide what to look up and what to change.
//! Nothing here performs I/O, so every branch is unit-tested.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use jiff::{SignedDuration, Timestamp};

use crate::api::{
    ANNOTATION_PREFIX, AdoptionPolicy, RenewalPolicy, WebhookSubscriptionStatus, condition, find_condition,
};
use crate::providers::{Desired, DesiredSpec, Field, Remote, drift};

/// The operator's annotations on a subscription.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Annotations {
    /// `paused: "true"`.
    pub paused: bool,
    /// `reconcile-requested-at`.
    pub reconcile_requested: Option<String>,
    /// `renew-requested-at`.
    pub renew_requested: Option<String>,
    /// `external-id`.
    pub external_id: Option<String>,
    /// `create-pending`.
    pub create_pending: Option<String>,
    /// `drift-check-interval` (a Go duration), overriding the operator's flag for this object.
    pub drift_check_interval: Option<Duration>,
}

/// Annotation names.
pub mod annotation {
    /// Stop all remote writes (deletion still runs).
    pub const PAUSED: &str = "webhook-operator.dev/paused";
    /// On-demand sync token.
    pub const RECONCILE_REQUESTED_AT: &str = "webhook-operator.dev/reconcile-requested-at";
    /// On-demand renewal token.
    pub const RENEW_REQUESTED_AT: &str = "webhook-operator.dev/renew-requested-at";
    /// The remote id: written after a create, or set by a user to import.
    pub const EXTERNAL_ID: &str = "webhook-operator.dev/external-id";
    /// Written before a create and cleared after: found alone, a create may have leaked.
    pub const CREATE_PENDING: &str = "webhook-operator.dev/create-pending";
    /// Per-object drift check interval.
    pub const DRIFT_CHECK_INTERVAL: &str = "webhook-operator.dev/drift-check-interval";
}

impl Annotations {
    /// Reads the operator's annotations (unknown ones under the prefix are ignored).
    pub fn parse(map: &BTreeMap<String, String>) -> Self {
        let get = |name: &str| map.get(name).filter(|v| !v.is_empty()).cloned();
        debug_assert!(annotation::PAUSED.starts_with(ANNOTATION_PREFIX));
        Annotations {
            paused: get(annotation::PAUSED).is_some_and(|v| v.eq_ignore_ascii_case("true")),
            reconcile_requested: get(annotation::RECONCILE_REQUESTED_AT),
            renew_requested: get(annotation::RENEW_REQUESTED_AT),
            external_id: get(annotation::EXTERNAL_ID),
            create_pending: get(annotation::CREATE_PENDING),
            drift_check_interval: get(annotation::DRIFT_CHECK_INTERVAL).and_then(|v| parse_go_duration(&v)),
        }
    }
}

/// Parses a Go duration such as `90s`, `5m`, `1h30m`, `1.5h`, `250ms`.
pub fn parse_go_duration(text: &str) -> Option<Duration> {
    let mut rest = text.trim();
    if rest.is_empty() {
        return None;
    }
    let mut total = 0f64;
    while !rest.is_empty() {
        let number_end = rest.find(|c: char| !(c.is_ascii_digit() || c == '.'))?;
        let number: f64 = rest[..number_end].parse().ok()?;
        rest = &rest[number_end..];
        let unit_end = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let scale = match &rest[..unit_end] {
            "ns" => 1e-9,
            "us" | "µs" => 1e-6,
            "ms" => 1e-3,
            "s" => 1.0,
            "m" => 60.0,
            "h" => 3600.0,
            _ => return None,
        };
        total += number * scale;
        rest = &rest[unit_end..];
    }
    Some(Duration::from_secs_f64(total))
}

/// What the controller knows before any remote call.
#[derive(Clone, Debug)]
pub struct Facts {
    /// Now, from the injectable clock.
    pub now: Timestamp,
    /// `metadata.generation`.
    pub generation: i64,
    /// `metadata.uid` (spreads renewal jitter deterministically).
    pub uid: String,
    /// Current status.
    pub status: WebhookSubscriptionStatus,
    /// Annotations.
    pub annotations: Annotations,
    /// `spec.adoptionPolicy`.
    pub adoption: AdoptionPolicy,
    /// Fingerprint of the Secret material the spec references now.
    pub secret_hash: Option<String>,
    /// When this process last read the remote subscription (None: not since it started).
    pub last_remote_check: Option<Timestamp>,
    /// Drift check interval (flag, or the object's annotation).
    pub drift_interval: Duration,
}

impl Facts {
    /// The remote id: the annotation (durable, or set by a user to import) before status.
    pub fn known_id(&self) -> Option<&str> {
        self.annotations
            .external_id
            .as_deref()
            .or(self.status.subscription_id.as_deref())
    }

    fn renewal_due(&self) -> bool {
        self.status
            .renewal_time
            .as_deref()
            .and_then(|t| t.parse::<Timestamp>().ok())
            .is_some_and(|t| t <= self.now)
    }

    fn renew_requested(&self) -> bool {
        self.annotations.renew_requested.is_some()
            && self.annotations.renew_requested != self.status.last_handled_renew_at
    }

    fn reconcile_requested(&self) -> bool {
        self.annotations.reconcile_requested.is_some()
            && self.annotations.reconcile_requested != self.status.last_handled_reconcile_at
    }

    fn drift_check_due(&self) -> bool {
        self.last_remote_check.is_none_or(|last| {
            self.now.duration_since(last)
                >= SignedDuration::try_from(self.drift_interval).unwrap_or(SignedDuration::MAX)
        })
    }

    /// Why the remote subscription must be read now, or None when nothing asks for it.
    pub fn remote_check_reason(&self) -> Option<&'static str> {
        let ready = find_condition(&self.status.conditions, condition::READY).is_some_and(|c| c.status == "True");
        if self.status.observed_generation != Some(self.generation) {
            Some("spec changed")
        } else if self.secret_hash != self.status.applied_secret_hash {
            Some("secret changed")
        } else if self.annotations.external_id.as_deref() != self.status.subscription_id.as_deref() {
            Some("external-id set")
        } else if !ready {
            Some("not ready")
        } else if self.reconcile_requested() {
            Some("reconcile requested")
        } else if self.renew_requested() {
            Some("renewal requested")
        } else if self.renewal_due() {
            Some("renewal due")
        } else if self.drift_check_due() {
            Some("drift check due")
        } else {
            None
        }
    }
}

/// Why matches are searched for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Search {
    /// `create-pending` without `external-id`: a create may have succeeded unrecorded.
    LeakRecovery,
    /// No id yet: the adoption policy decides what a match means.
    BeforeCreate,
}

/// The first decision: what to read from the provider.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Lookup {
    /// Up to date: no remote call.
    Nothing,
    /// Read the subscription with this id.
    Get(String),
    /// List the account and match on the adoption fields.
    Find(Search),
}

/// Decides what to read.
pub fn lookup(facts: &Facts) -> Lookup {
    match facts.known_id() {
        Some(id) => match facts.remote_check_reason() {
            Some(_) => Lookup::Get(id.to_string()),
            None => Lookup::Nothing,
        },
        None if facts.annotations.create_pending.is_some() => Lookup::Find(Search::LeakRecovery),
        None => Lookup::Find(Search::BeforeCreate),
    }
}

/// What the provider said.
#[derive(Clone, Debug)]
pub enum Observation {
    /// The subscription.
    Found(Remote),
    /// The id is unknown to the provider.
    Gone,
    /// Subscriptions matching on the adoption fields.
    Matches(Search, Vec<Remote>),
}

/// Why a renew is sent.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RenewReason {
    /// A new delivery token (Avaya rotates through renew).
    Rotation,
    /// The provider reports it INACTIVE.
    Reactivate,
    /// `renew-requested-at`.
    Requested,
    /// `renewalTime` has come.
    Due,
}

/// The second decision: what to change.
#[derive(Clone, Debug)]
pub enum Action {
    /// Nothing to change (status may still record what was read).
    Nothing(Option<Remote>),
    /// Create a subscription.
    Create,
    /// The known subscription is gone: create a new one (with a Warning).
    Recreate,
    /// Take over this existing subscription, then converge it.
    Adopt(Remote),
    /// Send only these fields, and/or renew.
    Converge {
        /// The subscription as read.
        remote: Remote,
        /// Fields to update.
        update: BTreeSet<Field>,
        /// Whether (and why) to renew.
        renew: Option<RenewReason>,
    },
    /// No safe move: a condition explains what the user must decide.
    Blocked {
        /// Condition reason.
        reason: &'static str,
        /// What to do.
        message: String,
    },
}

fn ids(remotes: &[Remote]) -> String {
    remotes.iter().map(|r| r.id.as_str()).collect::<Vec<_>>().join(", ")
}

/// Decides what to change from what was read.
pub fn decide(facts: &Facts, desired: &Desired, observation: Observation) -> Action {
    match observation {
        Observation::Gone => Action::Recreate,
        Observation::Matches(search, mut matches) => match (search, facts.adoption, matches.len()) {
            (_, _, n) if n > 1 => Action::Blocked {
                reason: "AdoptionAmbiguous",
                message: format!(
                    "{n} remote subscriptions match this one ({}); set the webhook-operator.dev/external-id annotation to the one to keep",
                    ids(&matches)
                ),
            },
            // A create of ours may have succeeded before its id was recorded: take the single match.
            (Search::LeakRecovery, _, 1) => Action::Adopt(matches.remove(0)),
            (Search::LeakRecovery, _, _) => Action::Create,
            (Search::BeforeCreate, AdoptionPolicy::None, 1) => Action::Blocked {
                reason: "AlreadyExists",
                message: format!(
                    "remote subscription {} already matches this one and adoptionPolicy is None; set spec.adoptionPolicy to Adopt or AdoptOrCreate to take it over, or change the spec",
                    matches[0].id
                ),
            },
            (Search::BeforeCreate, AdoptionPolicy::Adopt, 0) => Action::Blocked {
                reason: "NotFound",
                message: "adoptionPolicy is Adopt but no remote subscription matches; create one at the provider, set the webhook-operator.dev/external-id annotation, or use AdoptOrCreate".into(),
            },
            (Search::BeforeCreate, _, 1) => Action::Adopt(matches.remove(0)),
            (Search::BeforeCreate, _, _) => Action::Create,
        },
        Observation::Found(remote) => converge(facts, desired, remote),
    }
}

/// The changes that bring `remote` in line with `desired`.
pub fn converge(facts: &Facts, desired: &Desired, remote: Remote) -> Action {
    let mut update = drift(desired, &remote);
    let rotated = facts.secret_hash != facts.status.applied_secret_hash;
    let mut renew = None;
    match &desired.spec {
        DesiredSpec::Avaya(a) => {
            // Avaya rotates the delivery token through renew, which also extends the lifetime.
            let token_changed = update.remove(&Field::AuthToken) || (rotated && a.auth_token.is_some());
            renew = if token_changed && !update.contains(&Field::AuthTokenHeader) {
                Some(RenewReason::Rotation)
            } else if remote.is_inactive() {
                Some(RenewReason::Reactivate)
            } else if facts.renew_requested() {
                Some(RenewReason::Requested)
            } else if facts.renewal_due() {
                Some(RenewReason::Due)
            } else {
                None
            };
        }
        DesiredSpec::Vonage(v) => {
            if rotated && v.secret.is_some() {
                update.insert(Field::Secret);
            }
        }
        DesiredSpec::Authvia(a) => {
            if rotated {
                if a.secret.is_some() {
                    update.insert(Field::Secret);
                }
                if !a.headers.is_empty() {
                    update.insert(Field::Headers);
                }
            }
        }
    }
    if update.is_empty() && renew.is_none() {
        Action::Nothing(Some(remote))
    } else {
        Action::Converge { remote, update, renew }
    }
}

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
    let at = expires_at - SignedDuration::from_secs_f64(before_secs + spread * fraction);
    at.max(observed_at)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::providers::{AvayaDesired, VonageDesired, fingerprint};
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
    use secrecy::SecretString;
    use serde_json::json;

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
        }
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
            state: state.into(),
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
            assert_eq!(f.remote_check_reason(), Some(reason));
            assert!(matches!(lookup(&f), Lookup::Get(_)), "{reason}");
        }
        // A handled request does not trigger again.
        let mut f = facts();
        f.annotations.reconcile_requested = Some("t1".into());
        f.status.last_handled_reconcile_at = Some("t1".into());
        assert_eq!(lookup(&f), Lookup::Nothing);
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
                reason: "AlreadyExists",
                ..
            }
        ));
        assert!(matches!(
            decide_with(Adopt, BeforeCreate, vec![]),
            Action::Blocked { reason: "NotFound", .. }
        ));
        assert!(matches!(
            decide_with(Adopt, BeforeCreate, one.clone()),
            Action::Adopt(_)
        ));
        assert!(matches!(
            decide_with(AdoptOrCreate, BeforeCreate, vec![]),
            Action::Create
        ));
        assert!(matches!(
            decide_with(AdoptOrCreate, BeforeCreate, one.clone()),
            Action::Adopt(_)
        ));
        assert!(matches!(
            decide_with(AdoptOrCreate, BeforeCreate, two.clone()),
            Action::Blocked {
                reason: "AdoptionAmbiguous",
                ..
            }
        ));
        // Leak recovery adopts its own single match whatever the policy, and never creates twice.
        assert!(matches!(decide_with(None, LeakRecovery, one), Action::Adopt(_)));
        assert!(matches!(decide_with(None, LeakRecovery, vec![]), Action::Create));
        assert!(matches!(
            decide_with(None, LeakRecovery, two),
            Action::Blocked {
                reason: "AdoptionAmbiguous",
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
        assert!(matches!(decide(&f, &d, Observation::Gone), Action::Recreate));

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
    fn go_durations() {
        assert_eq!(parse_go_duration("1h30m"), Some(Duration::from_secs(5400)));
        assert_eq!(parse_go_duration("1.5s"), Some(Duration::from_millis(1500)));
        assert_eq!(parse_go_duration("250ms"), Some(Duration::from_millis(250)));
        assert_eq!(parse_go_duration("5"), None);
        assert_eq!(parse_go_duration("5x"), None);
    }
}
