//! Provider fidelity: what the providers document (or allow) and a lenient simulator let slip. Each test
//! has the simulator behave that way and shows the client, or the controller, coping: scopes per call,
//! whole transports, echoed defaults and masked secrets, verification failures, pagination, Vonage's
//! answers and late changes, token-bound expiry, PENDING, and auto-disable.

use std::collections::BTreeSet;
use std::time::Duration;

use reqwest::Method;
use serde_json::{Value, json};
use webhook_operator::providers::{DesiredSpec, ErrorKind, Field, WebhookApi, drift};
use webhook_operator::sandbox::providers::authvia::AuthviaSimulator;
use webhook_operator::sandbox::providers::avaya::{AvayaQuirks, AvayaSimulator};
use webhook_operator::sandbox::providers::vonage::VonageSimulator;
use webhook_operator::sandbox::receiver::Receiver;

use crate::support::env::{Env, condition};
use crate::support::fixtures::{
    AUTHVIA_ACCOUNT, AUTHVIA_ID, AUTHVIA_KEY, AUTHVIA_SIGNING, AVAYA_ID, AVAYA_SECRET, AVAYA_TOKEN, NS, Sub, VONAGE_ID,
    VONAGE_SECRET, authvia_client, authvia_desired, avaya_client, avaya_desired, creates, local, vonage_client,
    vonage_desired,
};
use crate::support::poll::{eventually, until};

const SIGNING: &str = "authvia-subscription-secret-0123456789";

/// The Secrets the subscription fixtures reference.
fn tenant_secrets(env: &Env) {
    env.secret(NS, "avaya-token", &[("token", AVAYA_TOKEN)]);
    env.secret(
        NS,
        "authvia-hook",
        &[("signingSecret", AUTHVIA_SIGNING), ("apiKey", "api-key-value")],
    );
}

/// The `scope` of every token request the AuthVia simulator served.
fn token_scopes(sim: &AuthviaSimulator) -> Vec<String> {
    sim.core
        .requests()
        .iter()
        .filter(|r| r.path.ends_with("/tokens"))
        .filter_map(|r| serde_json::from_str::<Value>(&r.body).ok())
        .filter_map(|b| b["scope"].as_str().map(str::to_string))
        .collect()
}

/// A raw call with a token of these scopes (what no client of ours would send).
async fn raw(method: Method, url: &str, token: &str, content_type: Option<&str>, body: Option<Value>) -> (u16, Value) {
    let mut request = reqwest::Client::new()
        .request(method, url)
        .bearer_auth(token)
        .header("Accept", webhook_operator::providers::vonage::MEDIA_TYPE);
    if let Some(ct) = content_type {
        request = request.header("Content-Type", ct);
    }
    if let Some(body) = body {
        request = request.body(body.to_string());
    }
    let response = request.send().await.unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

#[tokio::test]
async fn authvia_tokens_carry_the_scopes_each_call_needs_and_a_missing_one_is_named() {
    let sim = AuthviaSimulator::start(local(), AUTHVIA_ACCOUNT, AUTHVIA_ID, AUTHVIA_KEY)
        .await
        .unwrap();
    let receiver = Receiver::start(local()).await.unwrap();
    sim.core.deliver_to(Some(receiver.url()));
    // A client granted everything but the timeout scope.
    sim.grant(Some(&[
        "subscriptions:create",
        "subscriptions:read",
        "subscriptions:update",
        "subscriptions:delete",
        "business_processes:read",
    ]));
    let client = authvia_client(&sim, Vec::new());
    let mut desired = authvia_desired("https://hooks.example.com/authvia/s", SIGNING, "v1");
    let err = client.create(&desired).await.unwrap_err();
    assert_eq!(err.kind, ErrorKind::Forbidden);
    assert!(
        err.message.contains("subscriptions:timeout is required") && err.message.contains("ask AuthVia"),
        "the missing scope is named with the fix: {err}"
    );
    assert!(sim.subscriptions().is_empty());
    assert_eq!(
        token_scopes(&sim),
        vec!["business_processes:read subscriptions:create subscriptions:timeout"],
        "create asks for create, the type's resource read scope, and timeout"
    );

    // Without a timeout the same client creates, reads, updates and deletes, each with its own scopes.
    if let DesiredSpec::Authvia(a) = &mut desired.spec {
        a.timeout_seconds = None;
    }
    sim.core.clear_requests();
    let created = client.create(&desired).await.unwrap();
    client.get(&created.id).await.unwrap();
    let mut renamed = desired.clone();
    if let DesiredSpec::Authvia(a) = &mut renamed.spec {
        a.description = Some("renamed".into());
    }
    client
        .update(&created.id, &renamed, &BTreeSet::from([Field::Description]))
        .await
        .unwrap();
    client.delete(&created.id).await.unwrap();
    assert_eq!(
        token_scopes(&sim),
        vec![
            "business_processes:read subscriptions:create",
            "subscriptions:read",
            "subscriptions:update",
            "subscriptions:delete",
        ]
    );

    // Another resource needs its own read scope.
    if let DesiredSpec::Authvia(a) = &mut desired.spec {
        a.event_type = "customers.update".into();
    }
    let err = client.create(&desired).await.unwrap_err();
    assert!(err.message.contains("customers:read is required"), "{err}");

    // Extra scopes of the provider ride along on every token.
    let extra = authvia_client(&sim, vec!["customers:read".into()]);
    sim.grant(None);
    sim.core.clear_requests();
    extra.list().await.unwrap();
    assert_eq!(token_scopes(&sim), vec!["customers:read subscriptions:read"]);
}

#[tokio::test]
async fn avaya_updates_send_the_whole_transport_and_a_removed_token_is_cleared() {
    let sim = AvayaSimulator::start(local(), AVAYA_ID, AVAYA_SECRET, Duration::from_secs(600))
        .await
        .unwrap();
    sim.set_quirks(AvayaQuirks {
        mask_tokens: true,
        ..Default::default()
    });
    let client = avaya_client(&sim);
    let desired = avaya_desired("https://hooks.example.com/avaya/t", "token-0000-one");
    let created = client.create(&desired).await.unwrap();
    let read = client.get(&created.id).await.unwrap();
    assert!(drift(&desired, &read).is_empty(), "a masked echo is not drift");

    // A new endpoint: the whole transport goes, the token and its header with it.
    let moved = avaya_desired("https://hooks.example.com/avaya/moved", "token-0000-one");
    let fields = drift(&moved, &read);
    assert_eq!(fields, BTreeSet::from([Field::Endpoint]));
    sim.core.clear_requests();
    client.update(&created.id, &moved, &fields).await.unwrap();
    let sent: Value = serde_json::from_str(&sim.core.requests()[0].body).unwrap();
    assert_eq!(
        sent,
        json!({"transport": {"type": "WEBHOOK", "method": "POST", "endpoint": "https://hooks.example.com/avaya/moved",
                              "authToken": "token-0000-one", "authTokenHeader": "x-avaya-token"}})
    );
    assert_eq!(
        sim.subscription(&created.id).unwrap().auth_token.as_deref(),
        Some("token-0000-one")
    );

    // The simulator refuses a partial transport, as the schema does.
    let (token, _) = sim.core.issue_token(vec!["EVENT_NOTIFICATION".into()], None);
    let url = format!("{}/subscriptions/{}", sim.base_url(), created.id);
    let (status, problem) = raw(
        Method::PATCH,
        &url,
        &token,
        Some("application/json"),
        Some(json!({"transport": {"endpoint": "https://hooks.example.com/x"}})),
    )
    .await;
    assert_eq!(status, 400);
    let fields: Vec<&str> = problem["violations"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|v| v["field"].as_str())
        .collect();
    assert!(
        fields.contains(&"transport.type") && fields.contains(&"transport.method"),
        "{problem}"
    );
    // Writes without a JSON content type are refused, `:renew` without a body too.
    let (status, _) = raw(Method::POST, &format!("{url}:renew"), &token, None, None).await;
    assert_eq!(status, 415);
    client.renew(&created.id, None).await.unwrap();

    // A token removed from the spec is drift, and the update clears it.
    let mut without = moved.clone();
    if let DesiredSpec::Avaya(a) = &mut without.spec {
        a.auth_token = None;
    }
    let fields = drift(&without, &client.get(&created.id).await.unwrap());
    assert_eq!(fields, BTreeSet::from([Field::AuthToken]));
    let cleared = client.update(&created.id, &without, &fields).await.unwrap();
    assert_eq!(sim.subscription(&created.id).unwrap().auth_token, None);
    assert!(drift(&without, &cleared).is_empty());
}

#[tokio::test]
async fn avaya_expiry_is_bound_to_the_token_so_creates_and_renewals_take_a_fresh_one() {
    let sim = AvayaSimulator::start(local(), AVAYA_ID, AVAYA_SECRET, Duration::from_secs(3600))
        .await
        .unwrap();
    let client = avaya_client(&sim);
    let desired = avaya_desired("https://hooks.example.com/avaya/e", "token-0000-two");
    let created = client.create(&desired).await.unwrap();
    let left = created
        .expires_at
        .unwrap()
        .duration_since(jiff::Timestamp::now())
        .as_secs();
    assert!(
        (890..=900).contains(&left),
        "a 3600 s lifetime is cut to the 900 s token: {left}"
    );

    // PENDING right after create, then ACTIVE.
    sim.set_quirks(AvayaQuirks {
        pending_for: Duration::from_secs(30),
        ..Default::default()
    });
    let other = avaya_desired("https://hooks.example.com/avaya/p", "token-0000-three");
    assert_eq!(client.create(&other).await.unwrap().state, "PENDING");
    sim.core.clock.advance(Duration::from_secs(31));
    let listed = client.list().await.unwrap();
    assert_eq!(listed.len(), 2);
    assert!(listed.iter().all(|r| r.state == "ACTIVE"));

    // Tokens of 4 s: 1.5 s into one, a renewal would get at most 2.5 s; the client takes a new token.
    sim.core.set_token_lifetime(Duration::from_secs(4));
    let short = avaya_client(&sim);
    short.check_credentials().await.unwrap();
    let fetched = short.api().tokens().fetches();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let renewed = short.renew(&created.id, None).await.unwrap();
    assert_eq!(
        short.api().tokens().fetches(),
        fetched + 1,
        "a fresh token for the renewal"
    );
    let left = renewed
        .expires_at
        .unwrap()
        .duration_since(jiff::Timestamp::now())
        .as_secs_f64();
    assert!(left >= 3.0, "the renewal got the new token's life: {left}");
    // A plain read reuses the token it has.
    short.get(&created.id).await.unwrap();
    assert_eq!(short.api().tokens().fetches(), fetched + 1);
}

#[tokio::test]
async fn listings_see_every_subscription_exactly_once() {
    // Avaya pages that shift while read: one subscription shows on two pages.
    let avaya = AvayaSimulator::start(local(), AVAYA_ID, AVAYA_SECRET, Duration::from_secs(600))
        .await
        .unwrap();
    avaya.set_quirks(AvayaQuirks {
        shifting_pages: true,
        ..Default::default()
    });
    for i in 0..60 {
        avaya.insert(&["AGENT"], &["ALL"], &format!("https://h.example.com/{i}"), None);
    }
    let client = avaya_client(&avaya);
    let listed = client.list().await.unwrap();
    let ids: BTreeSet<&str> = listed.iter().map(|r| r.id.as_str()).collect();
    assert_eq!((listed.len(), ids.len()), (60, 60), "each once");

    // AuthVia pages: followed by their `next` link, in pages of the size asked for.
    let authvia = AuthviaSimulator::start(local(), AUTHVIA_ACCOUNT, AUTHVIA_ID, AUTHVIA_KEY)
        .await
        .unwrap();
    for i in 0..250 {
        authvia.insert("business_processes.update", &format!("https://h.example.com/{i}"));
    }
    let client = authvia_client(&authvia, Vec::new());
    let listed = client.list().await.unwrap();
    let ids: BTreeSet<&str> = listed.iter().map(|r| r.id.as_str()).collect();
    assert_eq!((listed.len(), ids.len()), (250, 250));
    let pages = authvia
        .core
        .requests()
        .iter()
        .filter(|r| r.path.ends_with("/subscriptions"))
        .count();
    assert_eq!(pages, 3, "pages of 100");
    let matches = client
        .find_matches(&authvia_desired("https://h.example.com/249", SIGNING, "v"))
        .await
        .unwrap();
    assert_eq!(matches.len(), 1);
}

#[tokio::test]
async fn vonage_answers_as_its_responses_page_documents() {
    let sim = VonageSimulator::start(local(), VONAGE_ID, VONAGE_SECRET).await.unwrap();
    let client = vonage_client(&sim);
    let desired = vonage_desired("team-a-orders", "https://hooks.example.com/vonage/a", None);
    let created = client.create(&desired).await.unwrap();
    assert_eq!(sim.core.requests().last().unwrap().status, 200, "every success is 200");

    // A duplicate name is a 400 with a message: a conflict, not a spec to fix.
    let err = client.create(&desired).await.unwrap_err();
    assert_eq!(sim.core.requests().last().unwrap().status, 400);
    assert_eq!(err.kind, ErrorKind::Conflict, "{err}");

    // A token without the scope gets 401 {"message": "Unauthorized"}; a bad token 401 with an OAuth body.
    let (read_only, _) = sim.core.issue_token(vec!["admin:read".into()], None);
    let (status, body) = raw(
        Method::PATCH,
        &format!("{}/subscriptions/{}", sim.base_url(), created.id),
        &read_only,
        Some("application/json"),
        Some(json!({"enabled": false})),
    )
    .await;
    assert_eq!((status, body), (401, json!({"message": "Unauthorized"})));
    let (status, body) = raw(
        Method::GET,
        &format!("{}/subscriptions", sim.base_url()),
        "not-a-token",
        None,
        None,
    )
    .await;
    assert_eq!(status, 401);
    assert!(
        body["error"].is_string() && body["error_description"].is_string(),
        "{body}"
    );
    let (status, _) = raw(
        Method::GET,
        &format!("{}/subscriptions", sim.base_url()),
        &read_only,
        None,
        None,
    )
    .await;
    assert_eq!(status, 200, "reads need admin:read only");

    // Changes take a while to show: reads miss a new subscription, and show the old version of a change.
    sim.set_propagation_delay(Duration::from_secs(20));
    let late = client
        .create(&vonage_desired(
            "team-a-late",
            "https://hooks.example.com/vonage/b",
            None,
        ))
        .await
        .unwrap();
    assert!(client.get(&late.id).await.unwrap_err().is_not_found());
    assert!(client.list().await.unwrap().iter().all(|r| r.id != late.id));
    let mut off = desired.clone();
    if let DesiredSpec::Vonage(v) = &mut off.spec {
        v.enabled = false;
    }
    client
        .update(&created.id, &off, &BTreeSet::from([Field::Enabled]))
        .await
        .unwrap();
    assert_eq!(client.get(&created.id).await.unwrap().state, "Enabled", "not shown yet");
    sim.core.clock.advance(Duration::from_secs(21));
    assert_eq!(client.get(&created.id).await.unwrap().state, "Disabled");
    client.get(&late.id).await.unwrap();
    client.delete(&late.id).await.unwrap();
    assert_eq!(sim.core.requests().last().unwrap().status, 200);
}

/// The operator against simulators that echo defaults, mask secrets, start PENDING: Ready, then drift
/// checks that find nothing to change write nothing; a token removed from the spec is cleared.
#[tokio::test]
async fn drift_checks_against_echoed_defaults_and_masked_secrets_write_nothing() {
    let mut env = Env::start(Duration::from_secs(600)).await;
    tenant_secrets(&env);
    env.avaya.set_quirks(AvayaQuirks {
        mask_tokens: true,
        pending_for: Duration::from_secs(2),
        ..Default::default()
    });
    // AuthVia's simulator echoes defaults and masks header values by default.
    env.start_controller();
    let interval = "webhook-operator.dev/drift-check-interval";
    env.create_sub(Sub::avaya("av", "/fidelity/av").annotate(interval, "10s"))
        .await;
    env.create_sub(Sub::authvia("au", "/fidelity/au").annotate(interval, "10s"))
        .await;
    // PENDING first: not Ready, read again soon, Ready when ACTIVE.
    env.wait_condition("av", "Ready", "False", "Creating").await;
    let av = env.wait_ready("av").await;
    assert_eq!(av.status.unwrap().remote_state.as_deref(), Some("ACTIVE"));
    env.wait_ready("au").await;

    for core in [&env.avaya.core, &env.authvia.core] {
        core.clear_requests();
    }
    let writes = |core: &webhook_operator::sandbox::providers::SimCore| {
        core.requests()
            .iter()
            .filter(|r| r.method != "GET" && !r.path.contains("token"))
            .map(|r| format!("{} {}", r.method, r.path))
            .collect::<Vec<_>>()
    };
    let reads = |core: &webhook_operator::sandbox::providers::SimCore| {
        core.requests().iter().filter(|r| r.method == "GET").count()
    };
    // Two drift checks each (every 10 s).
    eventually(
        "two drift checks each",
        Duration::from_secs(40),
        Duration::from_millis(200),
        || {
            let done = reads(&env.avaya.core) >= 2 && reads(&env.authvia.core) >= 2;
            async move { done.then_some(()) }
        },
    )
    .await;
    assert_eq!(writes(&env.avaya.core), Vec::<String>::new());
    assert_eq!(writes(&env.authvia.core), Vec::<String>::new());
    assert!(env.event_reasons("av").iter().all(|r| r != "Updated" && r != "Rotated"));

    // The token removed from the spec is cleared at Avaya.
    let id = env.get_sub("av").unwrap().status.unwrap().subscription_id.unwrap();
    let patch = json!({"spec": {"avaya": {"authToken": null}}});
    env.subs()
        .patch(
            "av",
            &kube::api::PatchParams::default(),
            &kube::api::Patch::Merge(&patch),
        )
        .await
        .unwrap();
    until("the token is cleared at the provider", || {
        env.avaya.subscription(&id).is_some_and(|s| s.auth_token.is_none())
    })
    .await;
    env.stop_controller().await;
}

/// AuthVia's verification call fails while the receiver is down: the subscription says so and is retried
/// with backoff, then created once the receiver answers; a scope the client lacks is named.
#[tokio::test]
async fn a_destination_that_fails_verification_is_retried_and_a_missing_scope_is_named() {
    let mut env = Env::start(Duration::from_secs(600)).await;
    tenant_secrets(&env);
    env.receiver.set_status(503);
    env.start_controller();
    env.create_sub(Sub::authvia("late", "/fidelity/late")).await;
    let failing = env
        .wait_condition("late", "Ready", "False", "DestinationUnverified")
        .await;
    let message = condition(&failing, "Ready").unwrap().2;
    assert!(message.contains("retried with backoff"), "{message}");
    assert!(env.authvia.subscriptions().is_empty());
    env.receiver.set_status(200);
    env.wait_ready("late").await;
    assert_eq!(
        env.authvia.subscriptions().len(),
        1,
        "one subscription, no spec edit needed"
    );

    // A client without subscriptions:timeout: a subscription with a timeout says which scope is missing.
    env.authvia.grant(Some(&[
        "subscriptions:create",
        "subscriptions:read",
        "subscriptions:update",
        "subscriptions:delete",
        "business_processes:read",
    ]));
    let mut timed = Sub::authvia("timed", "/fidelity/timed").build();
    timed.spec.authvia.as_mut().unwrap().timeout_seconds = Some(10);
    env.create_sub(timed).await;
    let refused = env.wait_condition("timed", "Ready", "False", "ProviderNotReady").await;
    let message = condition(&refused, "Ready").unwrap().2;
    assert!(message.contains("subscriptions:timeout"), "{message}");
    env.stop_controller().await;
}

/// AuthVia disables a subscription after failed deliveries: reported (condition and Event), not
/// re-enabled by drift checks, re-enabled by the reconcile annotation.
#[tokio::test]
async fn a_subscription_the_provider_disabled_is_reported_and_re_enabled_on_request() {
    let mut env = Env::start(Duration::from_secs(600)).await;
    tenant_secrets(&env);
    env.start_controller();
    env.create_sub(Sub::authvia("off", "/fidelity/off").annotate("webhook-operator.dev/drift-check-interval", "10s"))
        .await;
    env.wait_ready("off").await;
    let id = env.get_sub("off").unwrap().status.unwrap().subscription_id.unwrap();
    assert!(env.authvia.auto_disable(&id));
    let disabled = env.wait_condition("off", "Ready", "False", "DisabledByProvider").await;
    assert_eq!(disabled.status.unwrap().remote_state.as_deref(), Some("Disabled"));
    assert_eq!(env.events_of("off", "DisabledByProvider").len(), 1);
    // Another drift check leaves it as it is.
    env.authvia.core.clear_requests();
    eventually(
        "the next drift check",
        Duration::from_secs(30),
        Duration::from_millis(200),
        || {
            let read = env.authvia.core.requests().iter().any(|r| r.method == "GET");
            async move { read.then_some(()) }
        },
    )
    .await;
    assert!(env.authvia.core.requests().iter().all(|r| r.method != "PATCH"));
    assert!(env.authvia.subscription(&id).unwrap().disabled());
    assert_eq!(env.events_of("off", "DisabledByProvider").len(), 1, "said once");

    env.annotate(
        "off",
        "webhook-operator.dev/reconcile-requested-at",
        "2026-12-06T00:00:00Z",
    )
    .await;
    env.wait_ready("off").await;
    assert!(!env.authvia.subscription(&id).unwrap().disabled());
    env.stop_controller().await;
}

/// Vonage shows a change up to 30 s late: a read that misses a subscription just created is not taken
/// for a deletion (no second create, no name collision).
#[tokio::test]
async fn a_vonage_subscription_not_shown_yet_is_not_recreated() {
    let mut env = Env::start(Duration::from_secs(600)).await;
    tenant_secrets(&env);
    env.vonage.set_propagation_delay(Duration::from_secs(8));
    env.start_controller();
    env.create_sub(Sub::vonage("fresh", "/fidelity/fresh")).await;
    env.wait_ready("fresh").await;
    // Asked to look right away: the provider does not show it yet.
    env.annotate(
        "fresh",
        "webhook-operator.dev/reconcile-requested-at",
        "2026-12-06T00:00:00Z",
    )
    .await;
    env.wait_condition("fresh", "Synced", "False", "NotVisibleYet").await;
    let waiting = env.get_sub("fresh").unwrap();
    assert_eq!(condition(&waiting, "Ready").unwrap().0, "True", "still Ready");
    env.wait_condition("fresh", "Synced", "True", "ReconcileSuccess").await;
    assert_eq!(env.vonage.subscriptions().len(), 1);
    let creates = creates(&env.vonage.core);
    assert_eq!(creates, 1);
    assert!(env.events_of("fresh", "RemoteDeleted").is_empty());
    env.stop_controller().await;
}

#[test]
fn secrets_are_fingerprinted_not_compared() {
    // Two different tokens are both "a token": rotation is known from what was last sent.
    let a = avaya_desired("https://h.example.com/a", "token-a-000");
    let b = avaya_desired("https://h.example.com/a", "token-b-000");
    assert_eq!(a.comparable(), b.comparable());
    assert_ne!(a.secret_hash(), b.secret_hash());
}

/// What any SaaS API can answer through a gateway, on every endpoint a client calls: an HTML error page, an
/// empty or truncated 200, a 502 without a body. Each is a transient failure quoting no body, never a
/// panic, never "invalid spec".
#[tokio::test]
async fn gateway_answers_are_transient_on_every_provider() {
    use webhook_operator::sandbox::providers::{SimCore, SimFault, SimFaultAction};
    let avaya = AvayaSimulator::start(local(), AVAYA_ID, AVAYA_SECRET, Duration::from_secs(600))
        .await
        .unwrap();
    let vonage = VonageSimulator::start(local(), VONAGE_ID, VONAGE_SECRET).await.unwrap();
    let authvia = AuthviaSimulator::start(local(), AUTHVIA_ACCOUNT, AUTHVIA_ID, AUTHVIA_KEY)
        .await
        .unwrap();
    let clients: Vec<(Box<dyn WebhookApi>, &SimCore, String)> = vec![
        (
            Box::new(avaya_client(&avaya)),
            &avaya.core,
            avaya.insert(&["AGENT"], &["ALL"], "https://h.example.com/g", None),
        ),
        (
            Box::new(vonage_client(&vonage)),
            &vonage.core,
            vonage.insert("gateway-test", "https://h.example.com/g", &["agent.presencechanged.v1"]),
        ),
        (
            Box::new(authvia_client(&authvia, Vec::new())),
            &authvia.core,
            authvia.insert("business_processes.update", "https://h.example.com/g"),
        ),
    ];
    let answers = [
        SimFaultAction::Raw(502, "text/html", "<html><body>Bad Gateway</body></html>"),
        SimFaultAction::Raw(503, "text/plain", ""),
        SimFaultAction::Raw(200, "text/html", "<html>maintenance</html>"),
        SimFaultAction::Raw(200, "application/json", "{\"subscriptionId\": \"trunc"),
        SimFaultAction::Raw(200, "application/json", ""),
    ];
    for (client, core, id) in &clients {
        client.check_credentials().await.unwrap();
        for answer in &answers {
            // Every attempt of the call gets the answer (reads are retried).
            core.inject(SimFault::on("/subscriptions", answer.clone()));
            for result in [client.get(id).await.map(|_| ()), client.list().await.map(|_| ())] {
                let err = result.expect_err("a gateway answer is no subscription");
                assert_eq!(
                    err.kind,
                    ErrorKind::Transient,
                    "{:?}: {answer:?}: {err}",
                    client.provider()
                );
                assert!(!err.message.contains("<html"), "no body quoted: {err}");
            }
            core.clear_faults();
        }
        client.get(id).await.unwrap();
    }
}
