//! Provider faults end to end: outages shorter and longer than the renewal window, and a token endpoint
//! that fails for a while. Each ends converged, with nothing lost and no retry storm.

use std::time::{Duration, Instant};

use webhook_operator::sandbox::providers::{SimFault, SimFaultAction};

use crate::support::env::{Env, condition};
use crate::support::fixtures::{AVAYA_TOKEN, NS, Sub};

/// An Avaya environment whose subscriptions live `lifetime`, with one subscription Ready; its id.
async fn avaya_with(lifetime: Duration, name: &str) -> (Env, String) {
    let mut env = Env::start(lifetime).await;
    env.secret(NS, "avaya-token", &[("token", AVAYA_TOKEN)]);
    env.start_controller();
    env.create_sub(Sub::avaya(name, &format!("/avaya/{name}"))).await;
    let id = env.wait_ready(name).await.status.unwrap().subscription_id.unwrap();
    (env, id)
}

fn outage() -> SimFault {
    SimFault::on("/", SimFaultAction::Status(503, None))
}

#[tokio::test]
async fn an_outage_shorter_than_the_renewal_window_expires_nothing() {
    // 12 s lifetime: the renewal falls due at about 8 s; Avaya is down from 6.5 s to 9.5 s.
    let (env, id) = avaya_with(Duration::from_secs(12), "steady").await;
    let start = Instant::now();
    let mut down = false;
    let mut renewed_after_outage = false;
    while start.elapsed() < Duration::from_secs(14) {
        let t = start.elapsed();
        if !down && t >= Duration::from_millis(6500) && t < Duration::from_millis(9500) {
            env.avaya.core.inject(outage());
            down = true;
        }
        if down && t >= Duration::from_millis(9500) {
            env.avaya.core.clear_faults();
            down = false;
        }
        assert_eq!(env.avaya.status_of(&id), Some("ACTIVE"), "never expired ({t:?})");
        let sub = env.get_sub("steady").unwrap();
        assert_eq!(
            condition(&sub, "Ready").unwrap().0,
            "True",
            "stays Ready through the outage ({t:?})"
        );
        renewed_after_outage |= t > Duration::from_millis(9500) && env.avaya.subscription(&id).unwrap().renewals > 0;
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(renewed_after_outage, "the due renewal went through once Avaya answered");
}

#[tokio::test]
async fn an_outage_past_the_expiry_is_reported_and_reactivated_on_return() {
    // 4 s lifetime; Avaya is down for 7 s from the moment the subscription is Ready.
    let (env, id) = avaya_with(Duration::from_secs(4), "outage").await;
    env.avaya.core.inject(outage());
    let expired = env.wait_condition("outage", "Ready", "False", "Expired").await;
    assert!(
        condition(&expired, "Ready")
            .unwrap()
            .2
            .contains("before it could be renewed")
    );
    tokio::time::sleep(Duration::from_secs(7).saturating_sub(Duration::from_secs(4))).await;
    env.avaya.core.clear_faults();
    let back = env.wait_ready("outage").await;
    assert_eq!(
        back.status.unwrap().subscription_id.as_deref(),
        Some(id.as_str()),
        "the same subscription"
    );
    assert_eq!(env.avaya.status_of(&id), Some("ACTIVE"));
    let reasons = env.event_reasons("outage");
    assert!(reasons.contains(&"Expired".to_string()), "{reasons:?}");
    assert!(reasons.contains(&"Reactivated".to_string()), "{reasons:?}");
    assert_eq!(env.avaya.subscriptions().len(), 1, "reactivated, not recreated");
}

#[tokio::test]
async fn a_failing_token_endpoint_is_retried_with_backoff_not_a_storm() {
    let mut env = Env::start(Duration::from_secs(600)).await;
    env.start_controller();
    // Vonage's token endpoint fails for 6 s while ten subscriptions wait to be created.
    env.vonage
        .core
        .inject(SimFault::on("/Auth/connect/token", SimFaultAction::Status(503, None)));
    for i in 0..10 {
        env.create_sub(Sub::vonage(&format!("t-{i}"), &format!("/vonage/t-{i}")))
            .await;
    }
    tokio::time::sleep(Duration::from_secs(6)).await;
    let attempts = env
        .vonage
        .core
        .requests()
        .iter()
        .filter(|r| r.path.ends_with("/Auth/connect/token"))
        .count();
    // Ten subscriptions share one account: their passes back off (2 s, 4 s, …) and the HTTP layer
    // retries a token request a few times, so 6 s stay far from a storm.
    assert!(attempts <= 120, "{attempts} token requests in 6 s");
    env.vonage.core.clear_faults();
    for i in 0..10 {
        env.wait_ready(&format!("t-{i}")).await;
    }
    assert_eq!(env.vonage.subscriptions().len(), 10);
    eprintln!("token endpoint down 6 s: {attempts} token requests from 10 subscriptions");
}

#[tokio::test]
async fn kubernetes_api_faults_end_converged_with_one_remote_subscription_each() {
    use webhook_operator::sandbox::kube::{ApiError, FaultAction, FaultRule, WatchControl};
    let mut env = Env::start(Duration::from_secs(600)).await;
    env.secret(NS, "avaya-token", &[("token", AVAYA_TOKEN)]);
    env.start_controller();
    let names: Vec<String> = (0..24).map(|i| format!("k-{i:02}")).collect();
    // A third of the operator's writes fail with 500, and some with a 409, while watches drop, get an
    // in-stream 410 (relist) and the event log is compacted.
    env.emu.inject_fault(
        FaultRule::new(FaultAction::Fail(ApiError::new(500, "InternalError", "injected")))
            .writes()
            .probability(0.3),
    );
    for (i, name) in names.iter().enumerate() {
        let sub = if i % 2 == 0 {
            Sub::avaya(name, &format!("/avaya/{name}"))
        } else {
            Sub::vonage(name, &format!("/vonage/{name}"))
        };
        // The test's own creates go straight to the store: only the operator's requests see faults.
        env.put(
            "webhook-operator.dev",
            "v1alpha1",
            "webhooksubscriptions",
            NS,
            serde_json::to_value(sub.build()).unwrap(),
        );
        match i % 6 {
            1 => env.emu.control_watches(WatchControl::Abort),
            3 => env.emu.control_watches(WatchControl::Error(serde_json::json!({
                "kind": "Status", "apiVersion": "v1", "status": "Failure", "reason": "Expired", "code": 410,
                "message": "too old resource version"}))),
            5 => {
                env.emu.compact();
                env.emu.inject_conflicts("webhooksubscriptions", name, 2);
            }
            _ => {}
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Then a full outage of the API for 3 s.
    env.emu.inject_fault(FaultRule::new(FaultAction::Fail(ApiError::new(
        503,
        "ServiceUnavailable",
        "injected outage",
    ))));
    tokio::time::sleep(Duration::from_secs(3)).await;
    env.emu.clear_faults();
    for name in &names {
        env.wait_ready(name).await;
    }
    let remote = env.avaya.subscriptions().len() + env.vonage.subscriptions().len();
    assert_eq!(remote, names.len(), "exactly one remote subscription each");
}

#[tokio::test]
async fn a_429_storm_slows_the_whole_account_down_to_what_retry_after_allows() {
    let mut env = Env::start(Duration::from_secs(600)).await;
    env.start_controller();
    // Every Vonage API call answers 429 with Retry-After: 2 for 6 s, while ten subscriptions want
    // creating on the one account.
    env.vonage.core.inject(SimFault::on(
        "/webhooks/subscriptions",
        SimFaultAction::Status(429, Some(2)),
    ));
    env.vonage.core.clear_requests();
    for i in 0..10 {
        env.create_sub(Sub::vonage(&format!("r-{i}"), &format!("/vonage/r-{i}")))
            .await;
    }
    tokio::time::sleep(Duration::from_secs(6)).await;
    let during = env
        .vonage
        .core
        .requests()
        .iter()
        .filter(|r| r.path.starts_with("/webhooks/subscriptions"))
        .count();
    env.vonage.core.clear_faults();
    for i in 0..10 {
        env.wait_ready(&format!("r-{i}")).await;
    }
    assert_eq!(env.vonage.subscriptions().len(), 10);
    // The first ten calls arrive together; after that the account waits out each Retry-After as one,
    // resuming at its steady rate: about one call per 2 s, not ten.
    eprintln!("429 storm, Retry-After 2 s, 6 s, 10 subscriptions: {during} API calls");
    assert!(during <= 16, "{during} calls in 6 s");
}

#[tokio::test]
async fn provider_calls_that_time_out_are_retried_or_recovered_never_duplicated() {
    let mut env = Env::start(Duration::from_secs(600)).await;
    env.secret(NS, "avaya-token", &[("token", AVAYA_TOKEN)]);
    env.start_controller_with(|config| config.retry.timeout = Duration::from_secs(1));
    // Each provider answers its next create 2 s late, past the client's 1 s timeout (the create still
    // happens), and Avaya's next list too.
    for core in [&env.avaya.core, &env.vonage.core] {
        core.inject(
            SimFault::on("/subscriptions", SimFaultAction::Delay(Duration::from_secs(2)))
                .method(axum::http::Method::POST)
                .times(1),
        );
    }
    env.avaya.core.inject(
        SimFault::on("/subscriptions", SimFaultAction::Delay(Duration::from_secs(2)))
            .method(axum::http::Method::GET)
            .times(1),
    );
    env.create_sub(Sub::avaya("slow-a", "/avaya/slow")).await;
    env.create_sub(Sub::vonage("slow-v", "/vonage/slow")).await;
    env.wait_ready("slow-a").await;
    env.wait_ready("slow-v").await;
    assert_eq!(env.avaya.subscriptions().len(), 1, "created once");
    assert_eq!(env.vonage.subscriptions().len(), 1, "created once");
}
