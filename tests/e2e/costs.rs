//! What the work costs, counted at the provider: creating many subscriptions of one account lists it
//! once (not once per create), and a restarted controller checks every subscription for drift from one
//! listing of the account (not one read per subscription), writing nothing.

use std::time::Duration;

use futures::StreamExt;
use kube::api::ListParams;

use crate::support::env::{Env, condition};
use crate::support::fixtures::{AVAYA_TOKEN, NS, Sub};
use crate::support::poll::{eventually, until};

/// Avaya's list call (one per page), its creates, and reads of single subscriptions.
fn avaya_calls(env: &Env) -> (usize, usize, usize) {
    let requests = env.avaya.core.requests();
    let list = requests
        .iter()
        .filter(|r| r.method == "GET" && r.path.ends_with("/subscriptions"))
        .count();
    let create = requests
        .iter()
        .filter(|r| r.method == "POST" && r.path.ends_with("/subscriptions"))
        .count();
    let read = requests
        .iter()
        .filter(|r| r.method == "GET" && r.path.contains("/subscriptions/"))
        .count();
    (list, create, read)
}

#[tokio::test]
async fn creates_share_one_listing_and_a_restart_reads_the_account_not_each_subscription() {
    const N: usize = 60;
    let mut env = Env::start(Duration::from_secs(600)).await;
    env.secret(NS, "avaya-token", &[("token", AVAYA_TOKEN)]);
    env.start_controller();
    futures::stream::iter(0..N)
        .for_each_concurrent(16, |i| {
            let env = &env;
            async move {
                env.create_sub(Sub::avaya(&format!("cost-{i:02}"), &format!("/cost/{i}")))
                    .await;
            }
        })
        .await;
    let subs = env.subs();
    eventually(
        "all Ready",
        Duration::from_secs(60),
        Duration::from_millis(200),
        || async {
            let list = subs.list(&ListParams::default()).await.ok()?;
            list.items
                .iter()
                .all(|s| condition(s, "Ready").is_some_and(|c| c.0 == "True"))
                .then_some(())
                .filter(|()| list.items.len() == N)
        },
    )
    .await;
    let (list, create, read) = avaya_calls(&env);
    assert_eq!(create, N, "one create each");
    assert_eq!(
        list, 1,
        "one listing (of the empty account) for all {N} creates, not one per create"
    );
    assert_eq!(read, 0, "nothing read back one by one");
    // Once the watch shows each status write, the copies kept for a lagging cache are let go.
    let context = env.context.clone().unwrap();
    until("no status held twice", || context.objects.statuses_held() == 0).await;

    // A restart: every subscription is due a drift check (this process never looked at them), served by
    // one listing of the account: ⌈60 / 25⌉ = 3 pages.
    env.stop_controller().await;
    env.avaya.core.clear_requests();
    env.emu.clear_requests();
    let writes_before = env.emu.with_state(|s| s.revision);
    env.start_controller();
    let context = env.context.clone().unwrap();
    until("every subscription looked at again", || context.objects.len() == N).await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let (list, create, read) = avaya_calls(&env);
    assert_eq!(
        (list, create, read),
        (3, 0, 0),
        "one listing of 3 pages, no create, no read"
    );
    assert_eq!(
        env.emu.with_state(|s| s.revision),
        writes_before,
        "nothing changed, so nothing was written"
    );
    // Sixty passes that start together and share the token Secret read it once, as the providers'
    // checks read each credentials Secret once.
    let secret_reads: Vec<String> = env
        .emu
        .requests()
        .into_iter()
        .filter(|r| r.method == "GET" && r.path.contains("/secrets/"))
        .map(|r| r.path)
        .collect();
    let distinct: std::collections::BTreeSet<&String> = secret_reads.iter().collect();
    assert_eq!(
        distinct.len(),
        secret_reads.len(),
        "each Secret read once: {secret_reads:?}"
    );
    assert!(
        secret_reads.iter().any(|p| p.ends_with("/secrets/avaya-token")),
        "{secret_reads:?}"
    );

    // An up-to-date pass reads nothing: a label on every subscription wakes each once, and the only
    // requests the API server sees besides the test's own patches are the open watches.
    env.emu.clear_requests();
    env.avaya.core.clear_requests();
    for i in 0..N {
        env.subs()
            .patch(
                &format!("cost-{i:02}"),
                &kube::api::PatchParams::default(),
                &kube::api::Patch::Merge(serde_json::json!({"metadata": {"labels": {"touched": "yes"}}})),
            )
            .await
            .unwrap();
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    let requests: Vec<String> = env
        .emu
        .requests()
        .into_iter()
        .filter(|r| !r.query.contains("watch"))
        .map(|r| format!("{} {}", r.method, r.path))
        .collect();
    assert_eq!(requests.len(), N, "only the test's {N} patches: {requests:?}");
    assert!(requests.iter().all(|r| r.starts_with("PATCH")), "{requests:?}");
    assert_eq!(avaya_calls(&env), (0, 0, 0), "and no provider call");
}

/// Whether every subscription is Ready.
async fn all_ready(env: &Env, n: usize) -> Option<()> {
    let list = env.subs().list(&ListParams::default()).await.ok()?;
    (list.items.len() == n
        && list
            .items
            .iter()
            .all(|s| condition(s, "Ready").is_some_and(|c| c.0 == "True")))
    .then_some(())
}

#[tokio::test]
async fn renewals_go_first_when_a_burst_of_creates_saturates_the_account() {
    const RENEWING: usize = 8;
    const CREATES: usize = 60;
    // The renewing ones live 12 s and renew 8 s in: a renewal that waits 4 s lets one lapse.
    let mut env = Env::start(Duration::from_secs(12)).await;
    env.secret(NS, "avaya-token", &[("token", AVAYA_TOKEN)]);
    let mut provider = env
        .emu
        .get("webhook-operator.dev", "v1alpha1", "webhookproviders", NS, "avaya")
        .unwrap();
    provider["spec"]["rateLimit"] = serde_json::json!({"requestsPerSecond": 4, "burst": 4});
    env.put("webhook-operator.dev", "v1alpha1", "webhookproviders", NS, provider);
    env.start_controller();
    for i in 0..RENEWING {
        env.create_sub(Sub::avaya(&format!("renewing-{i}"), &format!("/renewing/{i}")))
            .await;
    }
    eventually(
        "the renewing ones Ready",
        Duration::from_secs(30),
        Duration::from_millis(100),
        || all_ready(&env, RENEWING),
    )
    .await;
    // What is created or renewed from now on lives long: the burst adds no renewals of its own.
    env.avaya.set_lifetime(Duration::from_secs(600));
    // 60 creates at 4 requests/s: about 15 s of saturation, through the renewal of every renewing one.
    let started = std::time::Instant::now();
    for i in 0..CREATES {
        env.create_sub(Sub::avaya(&format!("burst-{i:02}"), &format!("/burst/{i}")))
            .await;
    }
    eventually("all Ready", Duration::from_secs(90), Duration::from_millis(250), || {
        all_ready(&env, RENEWING + CREATES)
    })
    .await;
    let saturated = started.elapsed();
    let subscriptions = env.avaya.subscriptions();
    assert_eq!(subscriptions.len(), RENEWING + CREATES, "one remote each");
    let renewing: Vec<_> = subscriptions
        .iter()
        .filter(|s| s.endpoint.contains("/renewing/"))
        .map(|s| (s.renewals, s.lapses))
        .collect();
    assert!(
        renewing.iter().all(|(renewals, _)| *renewals >= 1) && saturated > Duration::from_secs(10),
        "every renewing one renewed during the {saturated:?} burst: {renewing:?}"
    );
    assert!(
        subscriptions.iter().all(|s| s.lapses == 0),
        "renewals waited behind creates until subscriptions lapsed: {renewing:?}"
    );
}
