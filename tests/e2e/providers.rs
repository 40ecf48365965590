//! Contract tests: each provider client against its simulator, every endpoint and every error class,
//! through the real HTTP layer.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use secrecy::SecretString;
use serde_json::{Value, json};
use webhook_operator::providers::authvia::AuthviaClient;
use webhook_operator::providers::avaya::AvayaClient;
use webhook_operator::providers::vonage::VonageClient;
use webhook_operator::providers::{DesiredSpec, ErrorKind, Field, WebhookApi, drift};
use webhook_operator::sandbox::providers::authvia::AuthviaSimulator;
use webhook_operator::sandbox::providers::avaya::AvayaSimulator;
use webhook_operator::sandbox::providers::vonage::{VonageSimulator, generate_secret};
use webhook_operator::sandbox::providers::{SimFault, SimFaultAction};
use webhook_operator::sandbox::receiver::{Expectation, Receiver};

use crate::support::fixtures::{
    AUTHVIA_ACCOUNT, AUTHVIA_ID, AUTHVIA_KEY, AVAYA_ID, AVAYA_SECRET, VONAGE_ID, VONAGE_SECRET, account,
    authvia_client, authvia_desired, avaya_client, avaya_desired, local, vonage_client, vonage_desired,
};

fn kind_of<T: std::fmt::Debug>(result: Result<T, webhook_operator::providers::ProviderError>) -> ErrorKind {
    result.expect_err("expected an error").kind
}

#[tokio::test]
async fn avaya_client_against_its_simulator() {
    let sim = AvayaSimulator::start(local(), AVAYA_ID, AVAYA_SECRET, Duration::from_secs(600))
        .await
        .unwrap();
    let receiver = Receiver::start(local()).await.unwrap();
    sim.core.deliver_to(Some(receiver.url()));
    let client = avaya_client(&sim);

    client.check_credentials().await.unwrap();
    let desired = avaya_desired("https://hooks.example.com/avaya/one", "token-one-0001");
    let created = client.create(&desired).await.unwrap();
    assert_eq!(created.id.len(), 36, "a UUID");
    assert_eq!(created.state, "ACTIVE");
    let expires = created.expires_at.expect("expiresIn read");
    let left = expires.duration_since(jiff::Timestamp::now()).as_secs();
    assert!((595..=600).contains(&left), "{left}");
    assert!(drift(&desired, &created).is_empty(), "created as desired");

    // Deliveries carry the token in the named header.
    receiver.expect(
        "/avaya/one",
        Expectation::AvayaToken {
            header: "x-avaya-token".into(),
            token: SecretString::from("token-one-0001"),
        },
    );
    assert!(sim.deliver(&created.id).await.unwrap().accepted());
    assert!(receiver.deliveries().last().unwrap().verified);

    // Pagination: 30 more subscriptions, pages of 25.
    for i in 0..30 {
        sim.insert(
            &["QUEUE"],
            &["ALL"],
            &format!("https://elsewhere.example.com/{i}"),
            None,
        );
    }
    sim.core.clear_requests();
    let all = client.list().await.unwrap();
    assert_eq!(all.len(), 31);
    let pages: Vec<String> = sim.core.requests().iter().map(|r| r.query.clone()).collect();
    assert_eq!(pages, vec!["pageNumber=1&pageSize=25", "pageNumber=2&pageSize=25"]);
    let matches = client.find_matches(&desired).await.unwrap();
    assert_eq!(
        matches.iter().map(|r| r.id.as_str()).collect::<Vec<_>>(),
        vec![created.id.as_str()]
    );

    // Update sends only the changed fields.
    let mut changed = avaya_desired("https://hooks.example.com/avaya/one", "token-one-0001");
    if let DesiredSpec::Avaya(a) = &mut changed.spec {
        a.events = vec!["Agent.Ready".into()];
    }
    let fields = drift(&changed, &client.get(&created.id).await.unwrap());
    assert_eq!(fields, BTreeSet::from([Field::Events]));
    sim.core.clear_requests();
    let updated = client.update(&created.id, &changed, &fields).await.unwrap();
    assert!(drift(&changed, &updated).is_empty());
    assert_eq!(sim.core.requests()[0].body, r#"{"events":["Agent.Ready"]}"#);

    // Expiry on the simulator's clock, then renew reactivates and rotates the token.
    sim.core.clock.advance(Duration::from_secs(601));
    assert_eq!(client.get(&created.id).await.unwrap().state, "INACTIVE");
    assert!(sim.deliver(&created.id).await.is_none(), "INACTIVE delivers nothing");
    let rotated = SecretString::from("token-two-0002");
    let renewed = client.renew(&created.id, Some(&rotated)).await.unwrap();
    assert_eq!(renewed.state, "ACTIVE");
    assert_eq!(
        sim.subscription(&created.id).unwrap().auth_token.as_deref(),
        Some("token-two-0002")
    );
    sim.deliver(&created.id).await.unwrap();
    assert!(
        !receiver.deliveries().last().unwrap().verified,
        "old token no longer matches"
    );
    receiver.expect(
        "/avaya/one",
        Expectation::AvayaToken {
            header: "x-avaya-token".into(),
            token: rotated.clone(),
        },
    );
    sim.deliver(&created.id).await.unwrap();
    assert!(receiver.deliveries().last().unwrap().verified);
    // Renew without a body keeps the token.
    client.renew(&created.id, None).await.unwrap();
    assert_eq!(sim.subscription(&created.id).unwrap().renewals, 2);

    // Errors: invalid with violations, not found, unauthorized.
    let mut bad = avaya_desired("https://hooks.example.com/avaya/bad", "t");
    if let DesiredSpec::Avaya(a) = &mut bad.spec {
        a.families = vec!["AGENT".into(), "ALL".into()];
    }
    let err = client.create(&bad).await.unwrap_err();
    assert_eq!(err.kind, ErrorKind::Invalid);
    assert_eq!(err.violations[0].field, "family");
    assert!(err.to_string().contains("family: ALL must be the only value"), "{err}");
    assert_eq!(
        kind_of(client.get("00000000-0000-0000-0000-000000000000").await),
        ErrorKind::NotFound
    );
    let wrong = AvayaClient::new(account(sim.base_url(), sim.token_url(), AVAYA_ID, "wrong-secret"));
    let err = wrong.check_credentials().await.unwrap_err();
    assert_eq!(err.kind, ErrorKind::Unauthorized);
    assert!(err.message.contains("invalid_client"), "{err}");

    // Delete, then a second delete is NotFound (what the controller counts as success).
    client.delete(&created.id).await.unwrap();
    assert!(sim.subscription(&created.id).is_none());
    assert!(client.delete(&created.id).await.unwrap_err().is_not_found());
}

#[tokio::test]
async fn shared_http_layer_retries_refreshes_and_classifies() {
    let sim = AvayaSimulator::start(local(), AVAYA_ID, AVAYA_SECRET, Duration::from_secs(600))
        .await
        .unwrap();
    let client = avaya_client(&sim);
    let id = sim.insert(&["AGENT"], &["ALL"], "https://hooks.example.com/x", None);

    // 5xx on a read: retried with backoff, then success.
    sim.core
        .inject(SimFault::on("/subscriptions/", SimFaultAction::Status(503, None)).times(2));
    client.get(&id).await.unwrap();
    // 5xx on a create: not retried (a retry could create twice), classified transient.
    sim.core
        .inject(SimFault::on("/subscriptions", SimFaultAction::Status(500, None)).method(axum::http::Method::POST));
    sim.core.clear_requests();
    let err = client
        .create(&avaya_desired("https://hooks.example.com/y", "tok-y-123"))
        .await
        .unwrap_err();
    assert_eq!(err.kind, ErrorKind::Transient);
    assert_eq!(sim.core.requests().iter().filter(|r| r.method == "POST").count(), 1);
    sim.core.clear_faults();

    // 429 with Retry-After: waited out (measured), then success.
    sim.core
        .inject(SimFault::on("/subscriptions/", SimFaultAction::Status(429, Some(1))).times(1));
    sim.core.clear_requests();
    let started = Instant::now();
    client.get(&id).await.unwrap();
    let spacing = started.elapsed();
    assert!(
        spacing >= Duration::from_millis(990),
        "Retry-After honoured: {spacing:?}"
    );
    let served: Vec<u16> = sim.core.requests().iter().map(|r| r.status).collect();
    assert_eq!(served, vec![429, 200]);
    // A Retry-After beyond what a call waits is handed back as RateLimited with the delay.
    sim.core
        .inject(SimFault::on("/subscriptions/", SimFaultAction::Status(429, Some(120))).times(1));
    let err = client.get(&id).await.unwrap_err();
    assert_eq!(err.kind, ErrorKind::RateLimited);
    assert_eq!(err.retry_after, Some(Duration::from_secs(120)));

    // A dropped connection on a read is retried.
    sim.core
        .inject(SimFault::on("/subscriptions/", SimFaultAction::Drop).times(1));
    client.get(&id).await.unwrap();

    // Token refresh before expiry: with 2 s tokens, a call after 2 s uses a new token.
    sim.core.set_token_lifetime(Duration::from_secs(2));
    sim.core.revoke_tokens();
    let fetched = client.api().tokens().fetches();
    client.get(&id).await.unwrap();
    assert_eq!(client.api().tokens().fetches(), fetched + 1, "refreshed after a 401");
    tokio::time::sleep(Duration::from_millis(2100)).await;
    sim.core.clear_requests();
    client.get(&id).await.unwrap();
    assert_eq!(client.api().tokens().fetches(), fetched + 2, "refreshed before expiry");
    let statuses: Vec<u16> = sim.core.requests().iter().map(|r| r.status).collect();
    assert_eq!(statuses, vec![200, 200], "token, then the call: no 401 on the way");

    // The token endpoint down: transient.
    sim.core.revoke_tokens();
    sim.core
        .inject(SimFault::on("/openid-connect/token", SimFaultAction::Status(503, None)));
    let fresh = avaya_client(&sim);
    assert_eq!(kind_of(fresh.get(&id).await), ErrorKind::Transient);
    sim.core.clear_faults();

    // 403 is Forbidden.
    sim.core
        .inject(SimFault::on("/subscriptions/", SimFaultAction::Status(403, None)).times(1));
    assert_eq!(kind_of(client.get(&id).await), ErrorKind::Forbidden);
    // Latency within the timeout is only slower.
    sim.core
        .inject(SimFault::on("/subscriptions/", SimFaultAction::Delay(Duration::from_millis(300))).times(1));
    let started = Instant::now();
    client.get(&id).await.unwrap();
    assert!(started.elapsed() >= Duration::from_millis(300));
}

#[tokio::test]
async fn vonage_client_against_its_simulator() {
    let sim = VonageSimulator::start(local(), VONAGE_ID, VONAGE_SECRET).await.unwrap();
    let receiver = Receiver::start(local()).await.unwrap();
    sim.core.deliver_to(Some(receiver.url()));
    let client = vonage_client(&sim);

    assert!(
        client
            .event_types()
            .await
            .unwrap()
            .contains(&"agent.presencechanged.v1".to_string())
    );
    // No secret given: Vonage generates one and returns it only now.
    let desired = vonage_desired("team-a-agents", "https://hooks.example.com/vonage/a", None);
    let created = client.create(&desired).await.unwrap();
    assert_eq!(created.id.len(), 27);
    assert_eq!(created.state, "Enabled");
    let generated = created.generated_secret.clone().expect("secret returned once");
    assert!(client.get(&created.id).await.unwrap().generated_secret.is_none());
    assert!(
        client
            .list()
            .await
            .unwrap()
            .iter()
            .all(|r| r.generated_secret.is_none())
    );

    // The delivery's JWT verifies with that secret, and not with another.
    receiver.expect("/vonage/a", Expectation::VonageSecret(generated.clone()));
    assert!(sim.deliver(&created.id).await.unwrap().accepted());
    assert!(receiver.deliveries().last().unwrap().verified);
    receiver.expect(
        "/vonage/a",
        Expectation::VonageSecret(SecretString::from(generate_secret())),
    );
    sim.deliver(&created.id).await.unwrap();
    let last = receiver.deliveries().last().unwrap().clone();
    assert!(!last.verified);
    assert_eq!(last.reason, "JWT signature does not match the current secret");

    // Duplicate names conflict; adoption finds the existing one by name.
    assert_eq!(kind_of(client.create(&desired).await), ErrorKind::Conflict);
    assert_eq!(client.find_matches(&desired).await.unwrap().len(), 1);

    // PATCH of a subset: rotate the secret and disable.
    let rotated = generate_secret();
    let mut changed = vonage_desired("team-a-agents", "https://hooks.example.com/vonage/a", Some(&rotated));
    if let DesiredSpec::Vonage(v) = &mut changed.spec {
        v.enabled = false;
    }
    sim.core.clear_requests();
    let fields = BTreeSet::from([Field::Secret, Field::Enabled]);
    let updated = client.update(&created.id, &changed, &fields).await.unwrap();
    assert_eq!(updated.state, "Disabled");
    let body: serde_json::Value = serde_json::from_str(&sim.core.requests()[0].body).unwrap();
    assert_eq!(
        body.as_object().unwrap().keys().collect::<Vec<_>>(),
        vec!["enabled", "secret"]
    );
    assert_eq!(sim.subscription(&created.id).unwrap().secret, rotated);
    assert!(sim.deliver(&created.id).await.is_none(), "disabled delivers nothing");

    // Every API call carried the versioned Accept header.
    assert!(
        sim.core
            .requests()
            .iter()
            .filter(|r| r.path.starts_with("/webhooks"))
            .all(|r| r.accept == "application/vnd.newvoicemedia.v1+json")
    );
    // Invalid input names the field.
    let err = client
        .create(&vonage_desired("x", "https://hooks.example.com/vonage/b", None))
        .await
        .unwrap_err();
    assert_eq!(err.kind, ErrorKind::Invalid);
    assert!(
        err.message.contains("\"name\" length must be between 3 and 128"),
        "{err}"
    );

    client.delete(&created.id).await.unwrap();
    assert!(client.get(&created.id).await.unwrap_err().is_not_found());
    let wrong = VonageClient::new(account(sim.base_url(), sim.token_url(), VONAGE_ID, "nope"));
    assert_eq!(kind_of(wrong.list().await), ErrorKind::Unauthorized);
}

#[tokio::test]
async fn authvia_client_against_its_simulator() {
    let sim = AuthviaSimulator::start(local(), AUTHVIA_ACCOUNT, AUTHVIA_ID, AUTHVIA_KEY)
        .await
        .unwrap();
    let receiver = Receiver::start(local()).await.unwrap();
    sim.core.deliver_to(Some(receiver.url()));
    let token_url = AuthviaClient::token_url(&sim.base_url());
    let client = AuthviaClient::new(
        account(sim.base_url(), token_url.clone(), AUTHVIA_ID, AUTHVIA_KEY),
        AUTHVIA_ACCOUNT,
        Vec::new(),
    );
    client.check_credentials().await.unwrap();

    // The create-time verification call must succeed.
    let secret = "authvia-subscription-secret-0123456789";
    let desired = authvia_desired("https://hooks.example.com/authvia/a", secret, "api-key-value-1");
    receiver.set_status(500);
    let err = client.create(&desired).await.unwrap_err();
    assert_eq!(
        err.kind,
        ErrorKind::DestinationUnverified,
        "retried, not an invalid spec"
    );
    assert!(
        err.message.contains("destination verification failed: HTTP 500"),
        "{err}"
    );
    receiver.set_status(200);
    receiver.expect("/authvia/a", Expectation::AuthviaSecret(SecretString::from(secret)));
    let created = client.create(&desired).await.unwrap();
    assert!(
        receiver.deliveries().last().unwrap().verified,
        "verification call was signed"
    );
    assert!(drift(&desired, &created).is_empty(), "{:?}", drift(&desired, &created));
    let stored = sim.subscription(&created.id).unwrap();
    assert_eq!(stored.body["conditions"], json!({"status": ["failed", "!completed"]}));
    assert_eq!(stored.body["headers"], json!({"X-Api-Key": "api-key-value-1"}));
    // The wire format as the sandbox reads AuthVia's documentation, spelled here and in the simulator
    // independently of the client: a key the client misspells shows up as a difference.
    let mut wire = stored.body.clone();
    assert_eq!(wire.remove("secret"), Some(json!(secret)));
    assert_eq!(
        Value::Object(wire),
        json!({
            "type": "business_processes.update",
            "destination": "https://hooks.example.com/authvia/a",
            "description": "payments failures",
            "timeout": 10,
            "attempts": 3,
            "autoDisable": true,
            "disableCallbackURL": "https://hooks.example.com/authvia/disabled",
            "disabled": false,
            "conditions": {"status": ["failed", "!completed"]},
            "headers": {"X-Api-Key": "api-key-value-1"},
        })
    );

    // Auto-disable may be off only with at most 3 attempts.
    let mut bad = authvia_desired("https://hooks.example.com/authvia/b", secret, "v");
    if let DesiredSpec::Authvia(a) = &mut bad.spec {
        a.attempts = 10;
        a.auto_disable = false;
    }
    let err = client.create(&bad).await.unwrap_err();
    assert!(
        err.message
            .contains("auto-disable may only be turned off when attempts is 3 or less"),
        "{err}"
    );

    assert_eq!(client.list().await.unwrap().len(), 1);
    assert_eq!(client.find_matches(&desired).await.unwrap().len(), 1);

    // Rotation through update.
    let rotated = "authvia-rotated-secret-abcdefghijklmnop";
    let changed = authvia_desired("https://hooks.example.com/authvia/a", rotated, "api-key-value-1");
    client
        .update(&created.id, &changed, &BTreeSet::from([Field::Secret]))
        .await
        .unwrap();
    receiver.expect("/authvia/a", Expectation::AuthviaSecret(SecretString::from(rotated)));
    sim.deliver(&created.id).await.unwrap();
    assert!(receiver.deliveries().last().unwrap().verified);

    // Failed deliveries reach `attempts` (3): disabled, and the callback is called.
    receiver.set_status(503);
    for _ in 0..3 {
        sim.deliver(&created.id).await.unwrap();
    }
    let disabled = sim.subscription(&created.id).unwrap();
    assert!(disabled.disabled());
    assert_eq!(disabled.disable_callbacks, 1);
    assert!(receiver.deliveries().iter().any(|d| d.path == "/authvia/disabled"));
    assert_eq!(client.get(&created.id).await.unwrap().state, "Disabled");
    receiver.set_status(200);
    // Re-enable through update.
    let fields = drift(&changed, &client.get(&created.id).await.unwrap());
    assert_eq!(fields, BTreeSet::from([Field::Disabled]));
    let enabled = client.update(&created.id, &changed, &fields).await.unwrap();
    assert_eq!(enabled.state, "Enabled");

    client.delete(&created.id).await.unwrap();
    assert!(client.delete(&created.id).await.unwrap_err().is_not_found());
    let wrong = AuthviaClient::new(
        account(
            sim.base_url(),
            token_url,
            AUTHVIA_ID,
            "wrong-key-wrong-key-wrong-key-00",
        ),
        AUTHVIA_ACCOUNT,
        Vec::new(),
    );
    let err = wrong.check_credentials().await.unwrap_err();
    assert_eq!(err.kind, ErrorKind::Unauthorized);
    assert!(err.message.contains("signature does not match"), "{err}");
}

/// A `MakeWriter` that appends every log line to a shared buffer.
#[derive(Clone, Default)]
struct Captured(Arc<std::sync::Mutex<Vec<u8>>>);

impl std::io::Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for Captured {
    type Writer = Captured;
    fn make_writer(&'a self) -> Self::Writer {
        self.clone()
    }
}

const CAPTURE_CHILD: &str = "WEBHOOK_OPERATOR_LOG_CAPTURE_CHILD";

/// Runs a full create/renew/rotate/delete cycle with every log at TRACE captured, in a process of its own:
/// tracing's callsite caches are process-wide, and other tests' threads would race them.
#[test]
fn no_secret_reaches_logs_errors_or_debug_output() {
    if std::env::var_os(CAPTURE_CHILD).is_none() {
        let output = std::process::Command::new(std::env::current_exe().unwrap())
            .args([
                "--exact",
                "providers::no_secret_reaches_logs_errors_or_debug_output",
                "--test-threads",
                "1",
            ])
            .env(CAPTURE_CHILD, "1")
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&output.stdout);
        assert!(
            output.status.success() && stdout.contains("1 passed"),
            "the capture run failed:\n{stdout}{}",
            String::from_utf8_lossy(&output.stderr)
        );
        return;
    }
    let captured = Captured::default();
    tracing_subscriber::fmt()
        .with_max_level(tracing::Level::TRACE)
        .with_writer(captured.clone())
        .with_ansi(false)
        .init();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(full_cycle_without_leaks(captured));
}

async fn full_cycle_without_leaks(captured: Captured) {
    let mut outputs: Vec<String> = Vec::new();

    let receiver = Receiver::start(local()).await.unwrap();
    let avaya = AvayaSimulator::start(local(), AVAYA_ID, AVAYA_SECRET, Duration::from_secs(600))
        .await
        .unwrap();
    let vonage = VonageSimulator::start(local(), VONAGE_ID, VONAGE_SECRET).await.unwrap();
    let authvia = AuthviaSimulator::start(local(), AUTHVIA_ACCOUNT, AUTHVIA_ID, AUTHVIA_KEY)
        .await
        .unwrap();
    for core in [&avaya.core, &vonage.core, &authvia.core] {
        core.deliver_to(Some(receiver.url()));
    }
    let avaya_client = avaya_client(&avaya);
    let vonage_client = vonage_client(&vonage);
    let authvia_client = authvia_client(&authvia, Vec::new());
    let secrets = [
        "avaya-token-first-aaaa",
        "avaya-token-rotated-bbbb",
        "authvia-subscription-secret-cccccccccccc",
        "authvia-rotated-secret-dddddddddddddddd",
        "authvia-header-value-eeee",
    ];

    // Avaya: create, renew with a new token, a rejected update that echoes nothing, delete.
    let desired = avaya_desired("https://hooks.example.com/a", secrets[0]);
    let created = avaya_client.create(&desired).await.unwrap();
    outputs.push(format!("{created:?} {desired:?}"));
    let renewed = avaya_client
        .renew(&created.id, Some(&SecretString::from(secrets[1])))
        .await
        .unwrap();
    outputs.push(format!("{renewed:?}"));
    let mut bad = avaya_desired("https://hooks.example.com/a", secrets[1]);
    if let DesiredSpec::Avaya(a) = &mut bad.spec {
        a.events = vec![String::new()];
    }
    let err = avaya_client
        .update(&created.id, &bad, &BTreeSet::from([Field::Events, Field::AuthToken]))
        .await
        .unwrap_err();
    outputs.push(format!("{err} {err:?}"));
    avaya_client.delete(&created.id).await.unwrap();

    // Vonage: generated secret, rotation, delete.
    let created = vonage_client
        .create(&vonage_desired("leak-check", "https://hooks.example.com/v", None))
        .await
        .unwrap();
    let generated = created.generated_secret.clone().unwrap();
    outputs.push(format!("{created:?}"));
    let rotated = generate_secret();
    let changed = vonage_desired("leak-check", "https://hooks.example.com/v", Some(&rotated));
    outputs.push(format!(
        "{:?}",
        vonage_client
            .update(&created.id, &changed, &BTreeSet::from([Field::Secret]))
            .await
            .unwrap()
    ));
    vonage_client.delete(&created.id).await.unwrap();

    // AuthVia: signed token exchange, create with secret header, rotate, a failing create, delete.
    let desired = authvia_desired("https://hooks.example.com/v/auth", secrets[2], secrets[4]);
    let created = authvia_client.create(&desired).await.unwrap();
    outputs.push(format!("{created:?} {desired:?}"));
    let changed = authvia_desired("https://hooks.example.com/v/auth", secrets[3], secrets[4]);
    authvia_client
        .update(&created.id, &changed, &BTreeSet::from([Field::Secret, Field::Headers]))
        .await
        .unwrap();
    receiver.set_status(500);
    let err = authvia_client
        .create(&authvia_desired(
            "https://hooks.example.com/v/other",
            secrets[3],
            secrets[4],
        ))
        .await
        .unwrap_err();
    outputs.push(format!("{err} {err:?}"));
    authvia_client.delete(&created.id).await.unwrap();

    let mut all_secrets: Vec<String> = secrets.iter().map(|s| s.to_string()).collect();
    all_secrets.extend([AVAYA_SECRET, VONAGE_SECRET, AUTHVIA_KEY].map(str::to_string));
    all_secrets.push(secrecy::ExposeSecret::expose_secret(&generated).to_string());
    all_secrets.push(rotated);
    for core in [&avaya.core, &vonage.core, &authvia.core] {
        all_secrets.extend(core.issued_tokens());
    }
    let log = String::from_utf8(captured.0.lock().unwrap().clone()).unwrap();
    assert!(log.contains("provider call"), "trace logging was captured");
    assert!(
        log.lines().count() > 20,
        "a full cycle logs plenty: {}",
        log.lines().count()
    );
    for secret in &all_secrets {
        assert!(!log.contains(secret.as_str()), "a secret value reached the logs");
        for output in &outputs {
            assert!(
                !output.contains(secret.as_str()),
                "a secret value reached an error or Debug output: {output}"
            );
        }
    }
}
