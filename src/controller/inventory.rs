//! The remote inventory of one provider account: one paginated listing shared by every subscription of
//! the account, kept current by this process's own calls. It answers adoption look-ups before a create
//! and drift checks, so creating N subscriptions costs N creates plus the listing's pages (not N listings),
//! and checking N subscriptions for drift costs one listing per interval (not N reads). Leak recovery
//! always lists afresh: a create whose answer was lost is exactly what no record of ours shows.
//!
//! [`Inventoried`] wraps an account's client: every create, update, renew and read records its answer and
//! every delete forgets its id, so the rest of the controller calls the provider as before.

use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::future::BoxFuture;
use secrecy::SecretString;
use serde_json::Value;

use crate::clock::SharedClock;
use crate::providers::http::RateLimiter;
use crate::providers::{Desired, Field, ProviderType, Remote, Result, WebhookApi};

/// A listing may come at most once per this many times its own duration: listing pages then take at
/// most a fifth of the account's rate limit, however many subscriptions it holds.
const LISTING_SHARE: u32 = 5;

/// What the account holds, as last listed plus this process's own changes since.
#[derive(Debug, Default)]
struct Listing {
    /// When the last listing started (None: never listed), and by the operator's clock.
    listed_at: Option<Instant>,
    listed_at_wall: Option<jiff::Timestamp>,
    by_id: HashMap<String, Remote>,
    /// Ids by the values of the adoption fields, so that a look-up does not scan the account.
    by_key: HashMap<String, BTreeSet<String>>,
    /// While a listing is under way: ids changed or deleted by our own calls since it started, which
    /// its (older) pages must not undo.
    changed_during_listing: HashMap<String, Option<Remote>>,
    /// When the listing under way started.
    listing: Option<Instant>,
    /// How long the last complete listing took.
    took: Duration,
}

/// The adoption key of a remote subscription or a desired one: the adoption fields' values.
fn key_of(fields: &std::collections::BTreeMap<Field, Value>, keys: &[Field]) -> String {
    let values: Vec<Option<&Value>> = keys.iter().map(|k| fields.get(k)).collect();
    serde_json::to_string(&values).unwrap_or_default()
}

impl Listing {
    fn insert(&mut self, remote: Remote, keys: &[Field]) {
        self.remove(&remote.id, keys);
        self.by_key
            .entry(key_of(&remote.fields, keys))
            .or_default()
            .insert(remote.id.clone());
        self.by_id.insert(remote.id.clone(), remote);
    }

    fn remove(&mut self, id: &str, keys: &[Field]) {
        if let Some(old) = self.by_id.remove(id) {
            let key = key_of(&old.fields, keys);
            if let Some(ids) = self.by_key.get_mut(&key) {
                ids.remove(id);
                if ids.is_empty() {
                    self.by_key.remove(&key);
                }
            }
        }
    }
}

/// One account's inventory.
#[derive(Debug)]
pub struct Inventory {
    listing: Mutex<Listing>,
    /// Held while listing, so that concurrent look-ups wait for one listing instead of starting their own.
    single_flight: tokio::sync::Mutex<()>,
    /// How old a listing may be for adoption look-ups and drift checks.
    max_age: Duration,
    listings: std::sync::atomic::AtomicU64,
    clock: SharedClock,
}

impl Inventory {
    /// An empty inventory whose listing is refreshed when older than `max_age`.
    pub fn new(max_age: Duration, clock: SharedClock) -> Self {
        Inventory {
            listing: Mutex::default(),
            single_flight: tokio::sync::Mutex::new(()),
            max_age,
            listings: Default::default(),
            clock,
        }
    }

    fn state(&self) -> std::sync::MutexGuard<'_, Listing> {
        self.listing.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// How many listings were made.
    pub fn listings(&self) -> u64 {
        self.listings.load(std::sync::atomic::Ordering::Relaxed)
    }

    fn fresh(&self, listed_since: Option<jiff::Timestamp>, max_age: Option<Duration>) -> bool {
        let state = self.state();
        match listed_since {
            Some(since) => state.listed_at_wall.is_some_and(|at| at >= since),
            None => self.current(&state, max_age),
        }
    }

    /// Whether the last listing is younger than the maximum age (`max_age`, or the inventory's own).
    fn current(&self, state: &Listing, max_age: Option<Duration>) -> bool {
        state
            .listed_at
            .is_some_and(|at| at.elapsed() < Self::allowed_age(max_age.unwrap_or(self.max_age), state.took))
    }

    /// How old a listing may get: the drift interval asked for, or more when listing takes long (a large
    /// account at a low rate limit), so that listings take at most [`LISTING_SHARE`] of the account's
    /// time however short the intervals subscriptions ask for.
    fn allowed_age(asked: Duration, took: Duration) -> Duration {
        asked.max(took.saturating_mul(LISTING_SHARE))
    }

    /// While a listing that a drift check or a plain create would wait for is under way: about how long
    /// it still takes (from how long the last one took). A pass is better off coming back then than
    /// holding a reconcile slot while it waits.
    pub fn listing_under_way(&self) -> Option<Duration> {
        let state = self.state();
        let started = state.listing?;
        if self.current(&state, None) {
            return None;
        }
        Some(state.took.saturating_sub(started.elapsed()).max(Duration::from_secs(1)))
    }

    /// Lists the account unless a listing that started at or after `since` (or, without `since`, one
    /// younger than the maximum age) exists; one listing at a time, shared by every caller.
    async fn ensure(
        &self,
        api: &dyn WebhookApi,
        since: Option<jiff::Timestamp>,
        max_age: Option<Duration>,
    ) -> Result<()> {
        if self.fresh(since, max_age) {
            return Ok(());
        }
        let _one = self.single_flight.lock().await;
        if self.fresh(since, max_age) {
            return Ok(());
        }
        let started = Instant::now();
        let started_wall = self.clock.now();
        {
            let mut state = self.state();
            state.listing = Some(started);
            state.changed_during_listing.clear();
        }
        self.listings.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let listed = api.list().await;
        let keys = api.adoption_fields();
        let mut state = self.state();
        state.listing = None;
        let changed = std::mem::take(&mut state.changed_during_listing);
        let listed = listed?;
        state.by_id.clear();
        state.by_key.clear();
        for remote in listed {
            state.insert(remote, keys);
        }
        for (id, change) in changed {
            match change {
                Some(remote) => state.insert(remote, keys),
                None => state.remove(&id, keys),
            }
        }
        state.listed_at = Some(started);
        state.listed_at_wall = Some(started_wall);
        state.took = started.elapsed();
        Ok(())
    }

    /// The account's subscriptions that match `desired` on the adoption fields, each id once; with
    /// `since`, from a listing that started then or later (so that it holds what was made at the provider
    /// before then), otherwise from one within the maximum age.
    pub async fn matches(
        &self,
        api: &dyn WebhookApi,
        desired: &Desired,
        since: Option<jiff::Timestamp>,
    ) -> Result<Vec<Remote>> {
        self.ensure(api, since, None).await?;
        let keys = api.adoption_fields();
        let state = self.state();
        let ids = state.by_key.get(&key_of(&desired.comparable(), keys));
        Ok(ids
            .into_iter()
            .flatten()
            .filter_map(|id| state.by_id.get(id).cloned())
            .collect())
    }

    /// The subscription with `id` as listed within `max_age` (a subscription's own drift interval) or the
    /// inventory's maximum age, each stretched so that listing keeps to its share (None: not listed).
    pub async fn listed(&self, api: &dyn WebhookApi, id: &str, max_age: Option<Duration>) -> Result<Option<Remote>> {
        self.ensure(api, None, max_age).await?;
        Ok(self.state().by_id.get(id).cloned())
    }

    /// Records a provider's answer about one subscription.
    fn record(&self, remote: &Remote, keys: &[Field]) {
        let mut state = self.state();
        let mut remote = remote.clone();
        // A secret the provider generated is the caller's to store, never the inventory's to keep.
        remote.generated_secret = None;
        // An answer that does not mention a field (a renew's) says nothing about it: keep what was known.
        if let Some(known) = state.by_id.get(&remote.id) {
            for (field, value) in &known.fields {
                remote.fields.entry(*field).or_insert_with(|| value.clone());
            }
        }
        if state.listing.is_some() {
            state
                .changed_during_listing
                .insert(remote.id.clone(), Some(remote.clone()));
        }
        state.insert(remote, keys);
    }

    /// Forgets a deleted subscription.
    fn forget(&self, id: &str, keys: &[Field]) {
        let mut state = self.state();
        if state.listing.is_some() {
            state.changed_during_listing.insert(id.to_string(), None);
        }
        state.remove(id, keys);
    }

    /// How many subscriptions it holds.
    pub fn len(&self) -> usize {
        self.state().by_id.len()
    }

    /// Whether it holds none.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// An account's client with its inventory: the provider calls, each answer recorded.
#[derive(Debug)]
pub struct Inventoried {
    api: Arc<dyn WebhookApi>,
    /// The account's inventory.
    pub inventory: Arc<Inventory>,
    /// The account's rate limiter.
    limiter: Arc<RateLimiter>,
    /// The provider object, as metrics label it.
    labels: crate::telemetry::ProviderLabels,
}

impl Inventoried {
    /// `api` recording into `inventory`, limited by `limiter`.
    pub fn new(api: Arc<dyn WebhookApi>, inventory: Arc<Inventory>, limiter: Arc<RateLimiter>) -> Self {
        Inventoried {
            api,
            inventory,
            limiter,
            labels: crate::telemetry::ProviderLabels::default(),
        }
    }

    /// Labels its metrics with the provider object it serves.
    pub fn with_labels(mut self, labels: crate::telemetry::ProviderLabels) -> Self {
        self.labels = labels;
        self
    }

    /// The provider object, as metrics label it.
    pub fn labels(&self) -> &crate::telemetry::ProviderLabels {
        &self.labels
    }

    /// For a routine pass: `None` to go on now, or how long to stay away because the account is at its
    /// rate limit or (`shared_listing`) the listing the pass needs is under way.
    pub fn come_back_after(&self, shared_listing: bool) -> Option<Duration> {
        let jitter = || Duration::from_millis(fastrand::u64(0..500));
        shared_listing
            .then(|| self.inventory.listing_under_way())
            .flatten()
            .map(|wait| wait + jitter())
            .or_else(|| self.limiter.come_back_after())
    }

    /// See [`Inventory::matches`].
    pub async fn matches(&self, desired: &Desired, since: Option<jiff::Timestamp>) -> Result<Vec<Remote>> {
        self.inventory.matches(self.api.as_ref(), desired, since).await
    }

    /// See [`Inventory::listed`].
    pub async fn listed(&self, id: &str, max_age: Option<Duration>) -> Result<Option<Remote>> {
        self.inventory.listed(self.api.as_ref(), id, max_age).await
    }

    fn recorded(&self, answer: Result<Remote>) -> Result<Remote> {
        if let Ok(remote) = &answer {
            self.inventory.record(remote, self.api.adoption_fields());
        }
        answer
    }
}

impl WebhookApi for Inventoried {
    fn provider(&self) -> ProviderType {
        self.api.provider()
    }

    fn check_credentials(&self) -> BoxFuture<'_, Result<()>> {
        self.api.check_credentials()
    }

    fn create<'a>(&'a self, desired: &'a Desired) -> BoxFuture<'a, Result<Remote>> {
        Box::pin(async move { self.recorded(self.api.create(desired).await) })
    }

    fn get<'a>(&'a self, id: &'a str) -> BoxFuture<'a, Result<Remote>> {
        Box::pin(async move {
            let answer = self.api.get(id).await;
            if matches!(&answer, Err(e) if e.is_not_found()) {
                self.inventory.forget(id, self.api.adoption_fields());
            }
            self.recorded(answer)
        })
    }

    fn list(&self) -> BoxFuture<'_, Result<Vec<Remote>>> {
        self.api.list()
    }

    fn update<'a>(
        &'a self,
        id: &'a str,
        desired: &'a Desired,
        fields: &'a std::collections::BTreeSet<Field>,
    ) -> BoxFuture<'a, Result<Remote>> {
        Box::pin(async move { self.recorded(self.api.update(id, desired, fields).await) })
    }

    fn renew<'a>(&'a self, id: &'a str, auth_token: Option<&'a SecretString>) -> BoxFuture<'a, Result<Remote>> {
        Box::pin(async move { self.recorded(self.api.renew(id, auth_token).await) })
    }

    fn delete<'a>(&'a self, id: &'a str) -> BoxFuture<'a, Result<()>> {
        Box::pin(async move {
            let answer = self.api.delete(id).await;
            if answer.is_ok() || matches!(&answer, Err(e) if e.is_not_found()) {
                self.inventory.forget(id, self.api.adoption_fields());
            }
            answer
        })
    }

    fn adoption_fields(&self) -> &'static [Field] {
        self.api.adoption_fields()
    }

    fn find_matches<'a>(&'a self, desired: &'a Desired) -> BoxFuture<'a, Result<Vec<Remote>>> {
        Box::pin(async move { self.matches(desired, None).await })
    }
}

#[cfg(test)]
mod tests;
