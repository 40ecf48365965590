//! The pure part of a reconcile: from what was observed, decide what to read, what to change, whether a
//! failed subscription is still held back, and what deleting it means. Nothing here performs I/O, so every
//! branch is unit-tested; `act` carries the decisions out.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use jiff::{SignedDuration, Timestamp};

use super::bindings::{self, Rotation};
use super::claims::{Claimant, Claims};
use super::reason::Reason;
use crate::api::{
    AdoptionPolicy, Annotations, DeletionPolicy, RenewalPolicy, WebhookSubscriptionStatus, condition, find_condition,
    parse_go_duration,
};
use crate::providers::{Desired, Field, ProviderType, Remote, drift};

/// What the controller knows before any remote call.
#[derive(Clone, Debug)]
pub struct Facts {
    /// Now, from the injectable clock.
    pub now: Timestamp,
    /// `metadata.generation`.
    pub generation: i64,
    /// `metadata.uid` (spreads renewal jitter deterministically).
    pub uid: String,
    /// The provider's API.
    pub provider: ProviderType,
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
    /// This subscription as a claimant of remote ids (`recorded` is set per id).
    pub me: Claimant,
    /// Every claim in the cluster.
    pub claims: Arc<dyn Claims>,
}

impl Facts {
    /// This subscription as a claimant of `id`.
    fn claimant_for(&self, id: &str) -> Claimant {
        Claimant {
            recorded: self.status.subscription_id.as_deref() == Some(id),
            ..self.me.clone()
        }
    }

    /// Whether another subscription names `id` (then it is not this one's to adopt).
    fn claimed_by_other(&self, id: &str) -> Option<Claimant> {
        self.claims.other(self.provider, id, &self.me.uid)
    }

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

/// Refuses to act on a remote id that another subscription holds: no call is made for it, whatever the
/// pass would otherwise do.
pub fn check_claim(facts: &Facts) -> Option<(Reason, String)> {
    let id = facts.known_id()?;
    let holder = facts
        .claims
        .holder_against(facts.provider, id, &facts.claimant_for(id))?;
    Some((
        Reason::AlreadyClaimed,
        format!(
            "remote subscription {id} is claimed by WebhookSubscription {}; this resource never touches it. Remove the webhook-operator.dev/external-id annotation (a copied one) to get a subscription of its own, or delete the other resource first to move the subscription here",
            holder.display()
        ),
    ))
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
    /// Nothing to change (status records what was read).
    Nothing(Remote),
    /// Create a subscription.
    Create,
    /// The known subscription (this id) is gone: create a new one.
    Recreate(String),
    /// Take over this existing subscription, then send these fields and/or renew. The adopted
    /// subscription's secrets are unknown, so they are always sent.
    Adopt {
        /// The subscription taken over.
        remote: Remote,
        /// Fields to update.
        update: BTreeSet<Field>,
        /// Whether (and why) to renew.
        renew: Option<RenewReason>,
    },
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
        reason: Reason,
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
        Observation::Gone => Action::Recreate(facts.known_id().unwrap_or_default().to_string()),
        Observation::Matches(search, matches) => {
            // Matches another subscription names are its own, never candidates for this one.
            let (mut matches, claimed): (Vec<Remote>, Vec<Remote>) = matches
                .into_iter()
                .partition(|m| facts.claimed_by_other(&m.id).is_none());
            match (search, facts.adoption, matches.len()) {
                (_, _, n) if n > 1 => Action::Blocked {
                    reason: Reason::AdoptionAmbiguous,
                    message: format!(
                        "{n} remote subscriptions match this one ({}); set the webhook-operator.dev/external-id annotation to the one to keep",
                        ids(&matches)
                    ),
                },
                // A create of ours may have succeeded before its id was recorded: take the single match.
                (Search::LeakRecovery, _, 1) => adopt(facts, desired, matches.remove(0)),
                (Search::LeakRecovery, _, _) => Action::Create,
                (Search::BeforeCreate, _, 0) if !claimed.is_empty() => {
                    let taken = &claimed[0];
                    let holder = facts.claimed_by_other(&taken.id).map(|c| c.display()).unwrap_or_default();
                    Action::Blocked {
                        reason: Reason::AlreadyClaimed,
                        message: format!(
                            "remote subscription {} matches this one and is claimed by WebhookSubscription {holder}; change the spec so that it does not match (for Vonage, spec.vonage.name), or delete the other resource first",
                            taken.id
                        ),
                    }
                }
                (Search::BeforeCreate, AdoptionPolicy::None, 1) => Action::Blocked {
                    reason: Reason::AlreadyExists,
                    message: format!(
                        "remote subscription {} already matches this one and adoptionPolicy is None; set spec.adoptionPolicy to Adopt or AdoptOrCreate to take it over, or change the spec",
                        matches[0].id
                    ),
                },
                (Search::BeforeCreate, AdoptionPolicy::Adopt, 0) => Action::Blocked {
                    reason: Reason::NotFound,
                    message: "adoptionPolicy is Adopt but no remote subscription matches; create one at the provider, set the webhook-operator.dev/external-id annotation, or use AdoptOrCreate".into(),
                },
                (Search::BeforeCreate, _, 1) => adopt(facts, desired, matches.remove(0)),
                (Search::BeforeCreate, _, _) => Action::Create,
            }
        }
        Observation::Found(remote) => converge(facts, desired, remote),
    }
}

/// Adopting: the remote subscription's secrets are unknown, so converge as if every secret had rotated.
fn adopt(facts: &Facts, desired: &Desired, remote: Remote) -> Action {
    let mut unknown_secrets = facts.clone();
    unknown_secrets.status.applied_secret_hash = None;
    match converge(&unknown_secrets, desired, remote) {
        Action::Nothing(remote) => Action::Adopt {
            remote,
            update: BTreeSet::new(),
            renew: None,
        },
        Action::Converge { remote, update, renew } => Action::Adopt { remote, update, renew },
        other => other,
    }
}

/// The changes that bring `remote` in line with `desired`.
pub fn converge(facts: &Facts, desired: &Desired, remote: Remote) -> Action {
    let mut update = drift(desired, &remote);
    let rotated = facts.secret_hash != facts.status.applied_secret_hash;
    let rotation = bindings::rotation(&desired.spec, rotated, &mut update);
    let renew = if rotation == Rotation::ByRenew {
        Some(RenewReason::Rotation)
    } else if !bindings::expires(facts.provider) {
        None
    } else if remote.is_inactive() {
        Some(RenewReason::Reactivate)
    } else if facts.renew_requested() {
        Some(RenewReason::Requested)
    } else if facts.renewal_due() {
        Some(RenewReason::Due)
    } else {
        None
    };
    if update.is_empty() && renew.is_none() {
        Action::Nothing(remote)
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

/// The operator's own annotations as it last wrote them, and the resourceVersion of that write.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OwnAnnotations {
    /// `metadata.resourceVersion` the write returned.
    pub resource_version: String,
    /// `external-id` as written.
    pub external_id: Option<String>,
    /// `create-pending` as written.
    pub create_pending: Option<String>,
}

/// The annotations to act on: the cached object's, unless the cache is older than the operator's own
/// last write of `external-id`/`create-pending` (a lagging cache without `create-pending` would make a
/// create that timed out look like someone else's subscription).
pub fn trust_own_writes(
    mut cached: Annotations,
    cached_version: Option<&str>,
    own: Option<&OwnAnnotations>,
) -> Annotations {
    let Some(own) = own else {
        return cached;
    };
    let older = match (
        cached_version.and_then(|v| v.parse::<u64>().ok()),
        own.resource_version.parse::<u64>().ok(),
    ) {
        (Some(cached), Some(written)) => cached < written,
        // Opaque versions cannot be ordered: the cache is taken as current.
        _ => false,
    };
    if older {
        cached.external_id = own.external_id.clone();
        cached.create_pending = own.create_pending.clone();
    }
    cached
}

/// What deleting a `WebhookSubscription` means for its remote subscription.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Deletion {
    /// deletionPolicy Orphan: keep it (the id, when one is known, goes into an Event).
    Orphan(Option<String>),
    /// Nothing was ever created: release at once.
    Release,
    /// Delete this remote subscription.
    Delete(String),
    /// A create may have leaked before its id was recorded: look for its single match.
    FindLeak,
}

/// The other subscription that holds `id` against the one being deleted (then the remote subscription is
/// not deleted with it).
pub fn deletion_holder(claims: &dyn Claims, provider: ProviderType, id: &str, me: &Claimant) -> Option<Claimant> {
    claims.holder_against(provider, id, me)
}

/// Decides what deleting means.
pub fn deletion(
    policy: DeletionPolicy,
    annotations: &Annotations,
    status: Option<&WebhookSubscriptionStatus>,
) -> Deletion {
    let id = annotations
        .external_id
        .clone()
        .or_else(|| status.and_then(|s| s.subscription_id.clone()));
    match (policy, id) {
        (DeletionPolicy::Orphan, id) => Deletion::Orphan(id),
        (DeletionPolicy::Delete, Some(id)) => Deletion::Delete(id),
        (DeletionPolicy::Delete, None) if annotations.create_pending.is_some() => Deletion::FindLeak,
        (DeletionPolicy::Delete, None) => Deletion::Release,
    }
}

/// What a leak search during deletion found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Leak {
    /// The single match: ours, delete it.
    Delete(String),
    /// Nothing leaked.
    None,
    /// Several match: delete none (it cannot be told which is ours).
    Ambiguous(usize),
}

/// Decides which leaked subscription to delete (matches another subscription names are not ours).
pub fn leaked(matches: &[Remote], claims: &dyn Claims, provider: ProviderType, me: &str) -> Leak {
    let ours: Vec<&Remote> = matches
        .iter()
        .filter(|m| claims.other(provider, &m.id, me).is_none())
        .collect();
    match ours.as_slice() {
        [only] => Leak::Delete(only.id.clone()),
        [] => Leak::None,
        many => Leak::Ambiguous(many.len()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::controller::claims::{ClaimIndex, Claimant};
    use crate::providers::{AvayaDesired, DesiredSpec, RemoteState, VonageDesired, fingerprint};
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
}
