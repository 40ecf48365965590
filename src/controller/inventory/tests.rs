//! The inventory against a fake account that counts its listings.

use std::sync::atomic::{AtomicUsize, Ordering};

use serde_json::json;

use super::*;
use crate::providers::{DesiredSpec, RemoteState, VonageDesired};

#[derive(Default)]
struct FakeAccount {
    remotes: Mutex<Vec<Remote>>,
    lists: AtomicUsize,
    /// Something to run while a listing is under way (after its pages were read).
    during_list: Mutex<Option<Box<dyn FnOnce() + Send>>>,
}

impl std::fmt::Debug for FakeAccount {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("FakeAccount")
    }
}

fn remote(id: &str, name: &str) -> Remote {
    Remote {
        id: id.into(),
        state: RemoteState::Enabled,
        expires_at: None,
        fields: [
            (Field::Name, json!(name)),
            (Field::Endpoint, json!("https://h.example.com/x")),
        ]
        .into_iter()
        .collect(),
        generated_secret: None,
    }
}

fn desired(name: &str) -> Desired {
    Desired {
        endpoint: "https://h.example.com/x".into(),
        spec: DesiredSpec::Vonage(VonageDesired {
            name: name.into(),
            events: vec!["agent.*".into()],
            enabled: true,
            secret: None,
        }),
    }
}

fn unsupported() -> crate::providers::ProviderError {
    crate::providers::ProviderError::new(crate::providers::ErrorKind::Unsupported, "fake", "call", "not faked")
}

impl WebhookApi for FakeAccount {
    fn provider(&self) -> ProviderType {
        ProviderType::Vonage
    }
    fn check_credentials(&self) -> BoxFuture<'_, Result<()>> {
        Box::pin(async { Ok(()) })
    }
    fn create<'a>(&'a self, desired: &'a Desired) -> BoxFuture<'a, Result<Remote>> {
        Box::pin(async move {
            let DesiredSpec::Vonage(v) = &desired.spec else {
                return Err(unsupported());
            };
            let mut remotes = self.remotes.lock().unwrap();
            let created = remote(&format!("id-{}", remotes.len()), &v.name);
            remotes.push(created.clone());
            Ok(created)
        })
    }
    fn get<'a>(&'a self, _id: &'a str) -> BoxFuture<'a, Result<Remote>> {
        Box::pin(async { Err(unsupported()) })
    }
    fn list(&self) -> BoxFuture<'_, Result<Vec<Remote>>> {
        Box::pin(async move {
            self.lists.fetch_add(1, Ordering::SeqCst);
            let pages = self.remotes.lock().unwrap().clone();
            tokio::time::sleep(Duration::from_millis(20)).await;
            if let Some(hook) = self.during_list.lock().unwrap().take() {
                hook();
            }
            Ok(pages)
        })
    }
    fn update<'a>(&'a self, _: &'a str, _: &'a Desired, _: &'a BTreeSet<Field>) -> BoxFuture<'a, Result<Remote>> {
        Box::pin(async { Err(unsupported()) })
    }
    fn delete<'a>(&'a self, id: &'a str) -> BoxFuture<'a, Result<()>> {
        Box::pin(async move {
            self.remotes.lock().unwrap().retain(|r| r.id != id);
            Ok(())
        })
    }
    fn adoption_fields(&self) -> &'static [Field] {
        &[Field::Name]
    }
}

fn clock() -> SharedClock {
    Arc::new(crate::clock::SystemClock)
}

fn unlimited() -> Arc<RateLimiter> {
    Arc::new(RateLimiter::new(10_000.0, 10_000))
}

#[tokio::test]
async fn a_listing_that_takes_long_comes_at_most_once_per_five_times_its_duration() {
    let fake = Arc::new(FakeAccount::default());
    // A 1 ms interval, but a listing takes at least 20 ms.
    let inventory = Arc::new(Inventory::new(Duration::from_millis(1), clock()));
    let account = Inventoried::new(fake.clone(), inventory.clone(), unlimited());
    account.listed("x", None).await.unwrap();
    let took = inventory.state().took;
    assert!(took >= Duration::from_millis(20), "{took:?}");
    tokio::time::sleep(Duration::from_millis(40)).await;
    account.listed("x", None).await.unwrap();
    assert_eq!(
        fake.lists.load(Ordering::SeqCst),
        1,
        "still current at twice its duration"
    );
    tokio::time::sleep(took * LISTING_SHARE).await;
    account.listed("x", None).await.unwrap();
    assert_eq!(fake.lists.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn a_subscriptions_own_drift_interval_is_served_by_the_shared_listing_within_its_share() {
    let fake = Arc::new(FakeAccount::default());
    // The operator's interval is long; a tenant asks for 1 ms on its subscriptions.
    let inventory = Arc::new(Inventory::new(Duration::from_secs(600), clock()));
    let account = Inventoried::new(fake.clone(), inventory.clone(), unlimited());
    let own = Some(Duration::from_millis(1));
    account.listed("x", None).await.unwrap();
    let took = inventory.state().took;
    // However many subscriptions ask, and however often, the account is listed at most once per five
    // times a listing's duration: never one read per subscription.
    for _ in 0..100 {
        account.listed("x", own).await.unwrap();
    }
    assert_eq!(fake.lists.load(Ordering::SeqCst), 1);
    tokio::time::sleep(took * LISTING_SHARE).await;
    account.listed("x", own).await.unwrap();
    assert_eq!(
        fake.lists.load(Ordering::SeqCst),
        2,
        "the short interval is honoured past the share"
    );
    account.listed("x", None).await.unwrap();
    assert_eq!(
        fake.lists.load(Ordering::SeqCst),
        2,
        "the operator's interval is not due"
    );
}

#[tokio::test]
async fn a_pass_needing_a_listing_under_way_is_told_when_to_come_back() {
    let fake = Arc::new(FakeAccount::default());
    let inventory = Arc::new(Inventory::new(Duration::from_millis(1), clock()));
    let account = Arc::new(Inventoried::new(fake.clone(), inventory.clone(), unlimited()));
    assert_eq!(account.come_back_after(true), None, "nothing under way");
    let listing = tokio::spawn({
        let account = account.clone();
        async move { account.listed("x", None).await.map(|_| ()) }
    });
    while inventory.state().listing.is_none() {
        tokio::task::yield_now().await;
    }
    let after = account.come_back_after(true).expect("a listing is under way");
    assert!(after >= Duration::from_secs(1), "{after:?}");
    assert_eq!(
        account.come_back_after(false),
        None,
        "a pass without the listing goes on"
    );
    listing.await.unwrap().unwrap();
    assert_eq!(account.come_back_after(true), None, "the listing is current");
}

#[tokio::test]
async fn concurrent_look_ups_share_one_listing_and_creates_keep_it_current() {
    let fake = Arc::new(FakeAccount::default());
    for i in 0..500 {
        fake.remotes
            .lock()
            .unwrap()
            .push(remote(&format!("old-{i}"), &format!("old-{i}")));
    }
    let account = Inventoried::new(
        fake.clone(),
        Arc::new(Inventory::new(Duration::from_secs(600), clock())),
        unlimited(),
    );
    // 200 look-ups and creates at once: one listing between them.
    let work = (0..200).map(|i| {
        let account = &account;
        async move {
            let wanted = desired(&format!("new-{i}"));
            assert!(account.matches(&wanted, None).await.unwrap().is_empty());
            account.create(&wanted).await.unwrap();
        }
    });
    futures::future::join_all(work).await;
    assert_eq!(fake.lists.load(Ordering::SeqCst), 1, "one listing, not one per create");
    assert_eq!(account.inventory.len(), 700);
    // What was created and what was listed are both found, by their adoption key alone.
    assert_eq!(account.matches(&desired("new-7"), None).await.unwrap().len(), 1);
    assert_eq!(account.matches(&desired("old-7"), None).await.unwrap()[0].id, "old-7");
    assert_eq!(fake.lists.load(Ordering::SeqCst), 1);
    // A delete is forgotten; leak recovery lists afresh.
    account.delete("old-7").await.unwrap();
    assert!(account.matches(&desired("old-7"), None).await.unwrap().is_empty());
    assert!(
        account
            .matches(&desired("old-8"), Some(jiff::Timestamp::now()))
            .await
            .unwrap()
            .len()
            == 1
    );
    assert_eq!(fake.lists.load(Ordering::SeqCst), 2);
    assert_eq!(
        account.listed("old-9", None).await.unwrap().map(|r| r.id),
        Some("old-9".into())
    );
    assert_eq!(account.listed("old-7", None).await.unwrap().map(|r| r.id), None);
}

#[tokio::test]
async fn our_own_changes_during_a_listing_are_not_undone_by_its_older_pages() {
    let fake = Arc::new(FakeAccount::default());
    fake.remotes.lock().unwrap().push(remote("doomed", "doomed"));
    let inventory = Arc::new(Inventory::new(Duration::from_secs(600), clock()));
    let account = Arc::new(Inventoried::new(fake.clone(), inventory.clone(), unlimited()));
    // While the listing is under way (its pages already read), one subscription is deleted and another
    // created by this process.
    let during = account.clone();
    *fake.during_list.lock().unwrap() = Some(Box::new(move || {
        during.inventory.forget("doomed", &[Field::Name]);
        during.inventory.record(&remote("born", "born"), &[Field::Name]);
    }));
    account.matches(&desired("anything"), None).await.unwrap();
    assert_eq!(account.listed("doomed", None).await.unwrap().map(|r| r.id), None);
    assert_eq!(
        account.listed("born", None).await.unwrap().map(|r| r.id),
        Some("born".into())
    );
    assert_eq!(inventory.listings(), 1);
}

#[tokio::test]
async fn a_listing_older_than_the_maximum_age_is_refreshed() {
    let fake = Arc::new(FakeAccount::default());
    // Longer than five listings (20 ms each), so the interval decides.
    let account = Inventoried::new(
        fake.clone(),
        Arc::new(Inventory::new(Duration::from_millis(150), clock())),
        unlimited(),
    );
    account.matches(&desired("a"), None).await.unwrap();
    account.matches(&desired("a"), None).await.unwrap();
    assert_eq!(fake.lists.load(Ordering::SeqCst), 1);
    tokio::time::sleep(Duration::from_millis(160)).await;
    account.matches(&desired("a"), None).await.unwrap();
    assert_eq!(fake.lists.load(Ordering::SeqCst), 2);
}
