//! Telemetry: logging setup, Prometheus metrics (named like cert-manager's) and the `/metrics`,
//! `/healthz`, `/readyz` endpoints. Metrics live in one process-wide registry so the provider layer and
//! the controller record into it without threading handles through every call. No label ever carries a
//! secret: labels are names, providers, operations, status codes and reasons.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, OnceLock};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

/// Reconcile duration histogram buckets, in seconds.
const BUCKETS: [f64; 10] = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0];

#[derive(Default)]
struct Histogram {
    counts: [u64; BUCKETS.len()],
    sum: f64,
    count: u64,
}

/// Per-subscription gauges.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct SubscriptionGauges {
    /// Provider name.
    pub provider: String,
    /// Ready condition status: True, False or Unknown.
    pub ready: String,
    /// Expiry, epoch seconds.
    pub expiration: Option<f64>,
    /// Next renewal, epoch seconds.
    pub renewal: Option<f64>,
}

#[derive(Default)]
struct Registry {
    provider_requests: BTreeMap<(String, String, String), u64>,
    reconcile_errors: BTreeMap<String, u64>,
    deferred_passes: BTreeMap<String, u64>,
    reconciles: Histogram,
    subscriptions: BTreeMap<(String, String), SubscriptionGauges>,
}

fn registry() -> &'static Mutex<Registry> {
    static REGISTRY: OnceLock<Mutex<Registry>> = OnceLock::new();
    REGISTRY.get_or_init(|| Mutex::new(Registry::default()))
}

/// Counts one provider API request by provider, operation and HTTP status (or `error` without one).
pub fn provider_request(provider: &str, operation: &str, status: Option<u16>) {
    let code = status.map_or_else(|| "error".to_string(), |s| s.to_string());
    *registry()
        .lock()
        .expect("metrics")
        .provider_requests
        .entry((provider.to_string(), operation.to_string(), code))
        .or_default() += 1;
}

/// Counts a failed reconcile by reason.
pub fn reconcile_error(reason: &str) {
    *registry()
        .lock()
        .expect("metrics")
        .reconcile_errors
        .entry(reason.to_string())
        .or_default() += 1;
}

/// Counts a routine pass sent away because its account was at its rate limit.
pub fn deferred(provider: &str) {
    *registry()
        .lock()
        .expect("metrics")
        .deferred_passes
        .entry(provider.to_string())
        .or_default() += 1;
}

/// Records one reconcile's duration and, when it failed, its reason.
pub fn reconcile(duration: Duration, error_reason: Option<&str>) {
    let mut r = registry().lock().expect("metrics");
    let seconds = duration.as_secs_f64();
    for (i, bound) in BUCKETS.iter().enumerate() {
        if seconds <= *bound {
            r.reconciles.counts[i] += 1;
        }
    }
    r.reconciles.sum += seconds;
    r.reconciles.count += 1;
    if let Some(reason) = error_reason {
        *r.reconcile_errors.entry(reason.to_string()).or_default() += 1;
    }
}

/// Sets a subscription's gauges (None removes them, e.g. after deletion).
pub fn subscription(namespace: &str, name: &str, gauges: Option<SubscriptionGauges>) {
    let mut r = registry().lock().expect("metrics");
    let key = (namespace.to_string(), name.to_string());
    match gauges {
        Some(g) => {
            r.subscriptions.insert(key, g);
        }
        None => {
            r.subscriptions.remove(&key);
        }
    }
}

fn escape(value: &str) -> String {
    value.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n")
}

/// The registry in the Prometheus text format.
pub fn render() -> String {
    let r = registry().lock().expect("metrics");
    let mut out = String::new();
    out.push_str("# HELP webhook_operator_provider_requests_total Provider API requests by provider, operation and HTTP status.\n");
    out.push_str("# TYPE webhook_operator_provider_requests_total counter\n");
    for ((provider, operation, code), n) in &r.provider_requests {
        let _ = writeln!(
            out,
            "webhook_operator_provider_requests_total{{provider=\"{}\",operation=\"{}\",code=\"{}\"}} {n}",
            escape(provider),
            escape(operation),
            escape(code)
        );
    }
    out.push_str("# HELP webhook_operator_reconcile_errors_total Failed reconciles by reason.\n");
    out.push_str("# TYPE webhook_operator_reconcile_errors_total counter\n");
    for (reason, n) in &r.reconcile_errors {
        let _ = writeln!(
            out,
            "webhook_operator_reconcile_errors_total{{reason=\"{}\"}} {n}",
            escape(reason)
        );
    }
    out.push_str(
        "# HELP webhook_operator_deferred_passes_total Routine passes sent away to come back because their account was at its rate limit.\n",
    );
    out.push_str("# TYPE webhook_operator_deferred_passes_total counter\n");
    for (provider, n) in &r.deferred_passes {
        let _ = writeln!(
            out,
            "webhook_operator_deferred_passes_total{{provider=\"{}\"}} {n}",
            escape(provider)
        );
    }
    out.push_str("# HELP webhook_operator_reconcile_duration_seconds Duration of subscription reconciles.\n");
    out.push_str("# TYPE webhook_operator_reconcile_duration_seconds histogram\n");
    for (i, bound) in BUCKETS.iter().enumerate() {
        let _ = writeln!(
            out,
            "webhook_operator_reconcile_duration_seconds_bucket{{le=\"{bound}\"}} {}",
            r.reconciles.counts[i]
        );
    }
    let _ = writeln!(
        out,
        "webhook_operator_reconcile_duration_seconds_bucket{{le=\"+Inf\"}} {}",
        r.reconciles.count
    );
    let _ = writeln!(
        out,
        "webhook_operator_reconcile_duration_seconds_sum {}",
        r.reconciles.sum
    );
    let _ = writeln!(
        out,
        "webhook_operator_reconcile_duration_seconds_count {}",
        r.reconciles.count
    );
    out.push_str("# HELP webhook_operator_subscription_ready_status The Ready condition of each subscription.\n");
    out.push_str("# TYPE webhook_operator_subscription_ready_status gauge\n");
    for ((ns, name), g) in &r.subscriptions {
        for condition in ["True", "False", "Unknown"] {
            let _ = writeln!(
                out,
                "webhook_operator_subscription_ready_status{{namespace=\"{}\",name=\"{}\",provider=\"{}\",condition=\"{condition}\"}} {}",
                escape(ns),
                escape(name),
                escape(&g.provider),
                u8::from(g.ready == condition)
            );
        }
    }
    out.push_str(
        "# HELP webhook_operator_subscription_expiration_timestamp_seconds When each remote subscription expires.\n",
    );
    out.push_str("# TYPE webhook_operator_subscription_expiration_timestamp_seconds gauge\n");
    for ((ns, name), g) in &r.subscriptions {
        if let Some(t) = g.expiration {
            let _ = writeln!(
                out,
                "webhook_operator_subscription_expiration_timestamp_seconds{{namespace=\"{}\",name=\"{}\",provider=\"{}\"}} {t}",
                escape(ns),
                escape(name),
                escape(&g.provider)
            );
        }
    }
    out.push_str("# HELP webhook_operator_subscription_renewal_timestamp_seconds When the operator renews each remote subscription next.\n");
    out.push_str("# TYPE webhook_operator_subscription_renewal_timestamp_seconds gauge\n");
    for ((ns, name), g) in &r.subscriptions {
        if let Some(t) = g.renewal {
            let _ = writeln!(
                out,
                "webhook_operator_subscription_renewal_timestamp_seconds{{namespace=\"{}\",name=\"{}\",provider=\"{}\"}} {t}",
                escape(ns),
                escape(name),
                escape(&g.provider)
            );
        }
    }
    out
}

/// What `/readyz` and `/healthz` report: whether the caches are synced, and whether the controller is
/// making progress.
#[derive(Debug, Default)]
pub struct Health {
    ready: AtomicBool,
    /// When a reconcile last completed.
    last_progress: Mutex<Option<tokio::time::Instant>>,
    /// How long the controller may go without completing a reconcile while it has work (None: no
    /// expectation, as on a follower or with nothing to reconcile).
    expect_within: Mutex<Option<Duration>>,
}

impl Health {
    /// Marks the process ready.
    pub fn set_ready(&self) {
        self.ready.store(true, Ordering::SeqCst);
    }

    /// Whether it is ready.
    pub fn is_ready(&self) -> bool {
        self.ready.load(Ordering::SeqCst)
    }

    /// A reconcile completed.
    pub fn progress(&self) {
        *self.last_progress.lock().unwrap_or_else(|e| e.into_inner()) = Some(tokio::time::Instant::now());
    }

    /// From now on a reconcile must complete at least every `window` (None: no expectation).
    pub fn expect_progress_within(&self, window: Option<Duration>) {
        let mut expected = self.expect_within.lock().unwrap_or_else(|e| e.into_inner());
        if expected.is_none() && window.is_some() {
            // The count starts when the expectation does.
            self.progress();
        }
        *expected = window;
    }

    /// Why the controller is not making progress, if it is not.
    pub fn stalled(&self) -> Option<String> {
        let window = (*self.expect_within.lock().unwrap_or_else(|e| e.into_inner()))?;
        let last = (*self.last_progress.lock().unwrap_or_else(|e| e.into_inner()))?;
        let idle = last.elapsed();
        (idle > window).then(|| {
            format!(
                "no reconcile completed for {}s (expected at least every {}s)\n",
                idle.as_secs(),
                window.as_secs()
            )
        })
    }
}

/// The process-wide health flag.
pub fn health() -> &'static Health {
    static HEALTH: OnceLock<Health> = OnceLock::new();
    HEALTH.get_or_init(Health::default)
}

/// Answers one plain HTTP/1.1 request: `/metrics`, `/healthz`, `/readyz`.
fn respond(path: &str) -> (u16, &'static str, String) {
    match path {
        "/metrics" => (200, "text/plain; version=0.0.4", render()),
        "/healthz" | "/livez" => match health().stalled() {
            None => (200, "text/plain", "ok\n".into()),
            Some(why) => (503, "text/plain", why),
        },
        "/readyz" if health().is_ready() => (200, "text/plain", "ok\n".into()),
        "/readyz" => (503, "text/plain", "caches not synced yet\n".into()),
        _ => (404, "text/plain", "not found\n".into()),
    }
}

/// Serves the telemetry endpoints until the process ends (a tiny HTTP/1.1 server: one request per
/// connection, GET only, which is all Prometheus and kubelet probes need).
pub async fn serve(addr: SocketAddr) -> std::io::Result<SocketAddr> {
    let listener = TcpListener::bind(addr).await?;
    let bound = listener.local_addr()?;
    tokio::spawn(async move {
        loop {
            let Ok((mut stream, _)) = listener.accept().await else {
                continue;
            };
            tokio::spawn(async move {
                let mut buffer = vec![0u8; 4096];
                let read = tokio::time::timeout(Duration::from_secs(5), stream.read(&mut buffer)).await;
                let Ok(Ok(n)) = read else { return };
                let request = String::from_utf8_lossy(&buffer[..n]);
                let path = request
                    .lines()
                    .next()
                    .and_then(|line| line.split_whitespace().nth(1))
                    .unwrap_or("/")
                    .split('?')
                    .next()
                    .unwrap_or("/")
                    .to_string();
                let (status, content_type, body) = respond(&path);
                let reason = match status {
                    200 => "OK",
                    404 => "Not Found",
                    _ => "Service Unavailable",
                };
                let response = format!(
                    "HTTP/1.1 {status} {reason}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = stream.write_all(response.as_bytes()).await;
                let _ = stream.shutdown().await;
            });
        }
    });
    Ok(bound)
}

/// Logs to stderr, filtered by `RUST_LOG` (default `default_filter`), as JSON when `json` is set.
pub fn init_logging(default_filter: &str, json: bool) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default_filter));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let _ = if json {
        builder.json().try_init()
    } else {
        builder.try_init()
    };
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metrics_render_in_the_text_format() {
        provider_request("avaya", "renew", Some(200));
        provider_request("avaya", "renew", Some(200));
        provider_request("vonage", "create", None);
        reconcile(Duration::from_millis(30), Some("RateLimited"));
        subscription(
            "default",
            "agents",
            Some(SubscriptionGauges {
                provider: "avaya".into(),
                ready: "True".into(),
                expiration: Some(1_800_000_000.0),
                renewal: Some(1_799_999_000.0),
            }),
        );
        let text = render();
        assert!(text.contains(
            "webhook_operator_provider_requests_total{provider=\"avaya\",operation=\"renew\",code=\"200\"} 2"
        ));
        assert!(text.contains(
            "webhook_operator_provider_requests_total{provider=\"vonage\",operation=\"create\",code=\"error\"} 1"
        ));
        assert!(text.contains("webhook_operator_reconcile_errors_total{reason=\"RateLimited\"}"));
        assert!(text.contains("webhook_operator_reconcile_duration_seconds_bucket{le=\"0.05\"}"));
        assert!(text.contains(
            "webhook_operator_subscription_ready_status{namespace=\"default\",name=\"agents\",provider=\"avaya\",condition=\"True\"} 1"
        ));
        assert!(text.contains("webhook_operator_subscription_expiration_timestamp_seconds{namespace=\"default\",name=\"agents\",provider=\"avaya\"} 1800000000"));
        subscription("default", "agents", None);
        assert!(!render().contains("name=\"agents\""));
    }

    #[tokio::test(start_paused = true)]
    async fn a_controller_with_work_that_completes_nothing_is_unhealthy() {
        let health = Health::default();
        assert_eq!(health.stalled(), None, "no expectation, no verdict");
        health.expect_progress_within(Some(Duration::from_secs(60)));
        tokio::time::advance(Duration::from_secs(59)).await;
        assert_eq!(health.stalled(), None);
        tokio::time::advance(Duration::from_secs(2)).await;
        assert!(health.stalled().unwrap().starts_with("no reconcile completed for 61s"));
        health.progress();
        assert_eq!(health.stalled(), None);
        health.expect_progress_within(None);
        tokio::time::advance(Duration::from_secs(600)).await;
        assert_eq!(health.stalled(), None, "a follower, or nothing to do");
    }

    #[tokio::test]
    async fn endpoints_answer_over_http() {
        let addr = serve(SocketAddr::from(([127, 0, 0, 1], 0))).await.unwrap();
        let get = |path: &'static str| async move {
            let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
            stream
                .write_all(format!("GET {path} HTTP/1.1\r\nHost: x\r\n\r\n").as_bytes())
                .await
                .unwrap();
            let mut response = String::new();
            stream.read_to_string(&mut response).await.unwrap();
            response
        };
        assert!(get("/healthz").await.starts_with("HTTP/1.1 200 OK"));
        assert!(get("/nope").await.starts_with("HTTP/1.1 404"));
        let metrics = get("/metrics").await;
        assert!(metrics.contains("# TYPE webhook_operator_provider_requests_total counter"));
    }
}
