//! The pure part of a reconcile: from what was observed, decide what to read, what to change, whether a
//! failed subscription is still held back, and what deleting it means. Nothing here performs I/O, so every
//! branch is unit-tested (`tests.rs`); `act` carries the decisions out. Renewal timing and the retry gate are
//! in `schedule.rs`, deletion in `deletion.rs`.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use jiff::{SignedDuration, Timestamp};

use super::bindings::{self, Rotation};
use super::claims::{Claimant, Claims};
use super::reason::Reason;
use crate::api::{AdoptionPolicy, Annotations, WebhookSubscriptionStatus, condition, find_condition};
use crate::providers::{Desired, Field, ProviderType, Remote, RemoteState, drift};

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

    /// Whether the provider may not show our last write yet (a read that misses the subscription then is
    /// not believed).
    fn wrote_recently(&self) -> bool {
        let delay = bindings::propagation_delay(self.provider);
        !delay.is_zero()
            && self
                .status
                .last_remote_write_time
                .as_deref()
                .and_then(|t| t.parse::<Timestamp>().ok())
                .is_some_and(|written| {
                    self.now.duration_since(written) < SignedDuration::try_from(delay).unwrap_or(SignedDuration::MAX)
                })
    }

    /// Whether the user asked for the remote subscription to be set as the spec says: a spec change or
    /// the reconcile annotation (what re-enables a subscription the provider disabled).
    fn asked_to_apply(&self) -> bool {
        self.status.observed_generation != Some(self.generation) || self.reconcile_requested()
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

    /// Why the remote subscription must be looked at now, or None when nothing asks for it.
    pub fn remote_check_reason(&self) -> Option<CheckReason> {
        let ready = find_condition(&self.status.conditions, condition::READY).is_some_and(|c| c.status == "True");
        if self.status.observed_generation != Some(self.generation) {
            Some(CheckReason::SpecChanged)
        } else if self.secret_hash != self.status.applied_secret_hash {
            Some(CheckReason::SecretChanged)
        } else if self.annotations.external_id.as_deref() != self.status.subscription_id.as_deref() {
            Some(CheckReason::ExternalIdSet)
        } else if !ready {
            Some(CheckReason::NotReady)
        } else if self.reconcile_requested() {
            Some(CheckReason::ReconcileRequested)
        } else if self.renew_requested() {
            Some(CheckReason::RenewRequested)
        } else if self.renewal_due() {
            Some(CheckReason::RenewalDue)
        } else if self.drift_check_due() {
            Some(CheckReason::DriftCheckDue)
        } else {
            None
        }
    }

    /// The remote subscription as status records it (what a pass that needs no read acts on): no fields,
    /// so nothing counts as drift.
    fn recorded_remote(&self, id: &str) -> Remote {
        Remote {
            id: id.to_string(),
            state: RemoteState::parse(self.status.remote_state.as_deref().unwrap_or_default()),
            expires_at: self.status.expires_at.as_deref().and_then(|t| t.parse().ok()),
            fields: Default::default(),
            generated_secret: None,
        }
    }
}

/// Why a pass looks at the remote subscription.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CheckReason {
    /// `metadata.generation` moved.
    SpecChanged,
    /// A referenced Secret's value changed (rotation).
    SecretChanged,
    /// `external-id` names another subscription than status (an import, or a fix by hand).
    ExternalIdSet,
    /// Not Ready: what is wrong is read afresh.
    NotReady,
    /// `reconcile-requested-at`.
    ReconcileRequested,
    /// `renew-requested-at`.
    RenewRequested,
    /// `renewalTime` has come.
    RenewalDue,
    /// The drift check interval has passed.
    DriftCheckDue,
}

impl CheckReason {
    /// For logs.
    pub fn as_str(self) -> &'static str {
        match self {
            CheckReason::SpecChanged => "spec changed",
            CheckReason::SecretChanged => "secret changed",
            CheckReason::ExternalIdSet => "external-id set",
            CheckReason::NotReady => "not ready",
            CheckReason::ReconcileRequested => "reconcile requested",
            CheckReason::RenewRequested => "renewal requested",
            CheckReason::RenewalDue => "renewal due",
            CheckReason::DriftCheckDue => "drift check due",
        }
    }

    /// Whether the remote subscription must be read first. A renewal and a rotation of a Ready
    /// subscription are one call each: the renew or update answers with the subscription, and a
    /// subscription gone meanwhile answers NotFound (then it is recreated).
    fn needs_read(self) -> bool {
        match self {
            CheckReason::SecretChanged | CheckReason::RenewRequested | CheckReason::RenewalDue => false,
            CheckReason::SpecChanged
            | CheckReason::ExternalIdSet
            | CheckReason::NotReady
            | CheckReason::ReconcileRequested
            | CheckReason::DriftCheckDue => true,
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
    /// Act on the subscription with this id as status records it, without reading it first.
    Recorded(String),
    /// Look the subscription with this id up in the account's inventory (a drift check), listed within
    /// the subscription's own drift interval if it has one (else the operator's).
    Listed(String, Option<Duration>),
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

/// Whether a search needs a listing made now rather than the account's inventory: leak recovery (a create
/// whose answer was lost is in no record of ours), and adoption a user asked for (the subscription to
/// adopt was typically just made at the provider). A plain create looks in the inventory.
pub fn needs_fresh_listing(search: Search, adoption: AdoptionPolicy) -> bool {
    match (search, adoption) {
        (Search::LeakRecovery, _) => true,
        (Search::BeforeCreate, AdoptionPolicy::Adopt | AdoptionPolicy::AdoptOrCreate) => true,
        (Search::BeforeCreate, AdoptionPolicy::None) => false,
    }
}

/// How recent a listing a search needs: leak recovery one started after `create-pending` was written (a
/// create made after that is in no older listing), requested adoption one started after the resource
/// was created (the subscription to adopt was made at the provider before); a plain create looks in the
/// account's inventory (None). Passes created together share one listing instead of one each.
pub fn listing_since(lookup: &Lookup, facts: &Facts) -> Option<Timestamp> {
    let Lookup::Find(search) = lookup else { return None };
    if !needs_fresh_listing(*search, facts.adoption) {
        return None;
    }
    Some(match search {
        Search::LeakRecovery => facts
            .annotations
            .create_pending
            .as_deref()
            .and_then(|t| t.parse::<Timestamp>().ok())
            .map_or(facts.now, |pending| pending.min(facts.now)),
        Search::BeforeCreate => facts.me.created.map_or(facts.now, |created| created.min(facts.now)),
    })
}

/// Whether a look-up is served by the account's shared listing (and so waits for one under way).
pub fn uses_shared_listing(lookup: &Lookup, adoption: AdoptionPolicy) -> bool {
    match lookup {
        Lookup::Listed(..) => true,
        Lookup::Find(search) => !needs_fresh_listing(*search, adoption),
        Lookup::Nothing | Lookup::Get(_) | Lookup::Recorded(_) => false,
    }
}

/// Whether the pass's remote work is routine: it stands back while the account is at its rate limit.
/// Only a due renewal goes first: a subscription whose renewal waits can expire; anything else can wait.
pub fn is_routine(facts: &Facts, lookup: &Lookup) -> bool {
    *lookup != Lookup::Nothing && !facts.renewal_due()
}

/// Decides what to read.
pub fn lookup(facts: &Facts) -> Lookup {
    match facts.known_id() {
        Some(id) => match facts.remote_check_reason() {
            // A drift check is served by the account's shared listing, on the subscription's own interval
            // too: reading each by itself would let a tenant's short intervals take any share of the
            // account's rate limit, while listings keep to theirs.
            Some(CheckReason::DriftCheckDue) => Lookup::Listed(id.to_string(), facts.annotations.drift_check_interval),
            Some(reason) if reason.needs_read() => Lookup::Get(id.to_string()),
            Some(_) => Lookup::Recorded(id.to_string()),
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
    /// Not read: the subscription with this id, as status records it.
    Recorded(String),
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
        Observation::Gone if facts.wrote_recently() => {
            let id = facts.known_id().unwrap_or_default();
            Action::Blocked {
                reason: Reason::NotVisibleYet,
                message: format!(
                    "{} does not show subscription {id} yet; it was written less than {} s ago and the provider takes that long to show changes, so it is looked at again rather than created twice",
                    facts.provider.as_str(),
                    bindings::propagation_delay(facts.provider).as_secs()
                ),
            }
        }
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
                // Nothing listed yet after a create whose answer was lost: Vonage may not show it for
                // 30 s, but its unique name refuses a second one (a conflict, retried until it shows).
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
        Observation::Recorded(id) => converge(facts, desired, facts.recorded_remote(&id)),
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
    // A subscription the provider disabled after failed deliveries stays disabled (and is reported) until
    // the user asks again; re-enabling it on every drift check would hide a broken receiver.
    if held_disabled(facts, desired, &remote) {
        update.remove(&Field::Disabled);
    }
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

/// Whether `remote` was disabled by the provider (not by the spec) and stays so: the provider disables on
/// failures, the spec wants delivery, and the user has not asked again (spec change or reconcile).
pub fn held_disabled(facts: &Facts, desired: &Desired, remote: &Remote) -> bool {
    bindings::disables_on_failures(facts.provider)
        && remote.state == RemoteState::Disabled
        && desired.wants_delivery()
        && !facts.asked_to_apply()
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

mod deletion;
mod endpoints;
mod schedule;
#[cfg(test)]
mod tests;

pub use deletion::*;
pub use endpoints::check_endpoint;
pub use schedule::*;
