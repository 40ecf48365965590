//! The operator's metrics on `prometheus-client`: one process-wide registry, so the provider layer and
//! the controller record into it without threading handles through every call. Names follow
//! cert-manager's (`<component>_<object>_<what>_<unit>`). No label ever carries a secret: labels are
//! object names, provider kinds and types, operations, status codes and reasons.

use std::collections::HashMap;
use std::sync::{Mutex, OnceLock};
use std::time::Duration;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeLabelSet, EncodeMetric as _};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::{ConstGauge, Gauge};
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::metrics::info::Info;
use prometheus_client::registry::{Registry, Unit};

/// Which provider object a series is about: its kind, namespace (empty for a ClusterWebhookProvider),
/// name, and the API it speaks.
#[derive(Clone, Debug, Default, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ProviderLabels {
    /// `WebhookProvider` or `ClusterWebhookProvider`.
    pub provider_kind: String,
    /// The WebhookProvider's namespace; empty for a ClusterWebhookProvider.
    pub provider_namespace: String,
    /// The provider object's name.
    pub provider_name: String,
    /// `avaya`, `vonage` or `authvia`.
    pub provider_type: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    #[prometheus(flatten)]
    provider: ProviderLabels,
    operation: String,
    code: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct CallLabels {
    #[prometheus(flatten)]
    provider: ProviderLabels,
    operation: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReasonLabels {
    reason: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ConditionLabels {
    #[prometheus(flatten)]
    provider: ProviderLabels,
    condition: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct SubscriptionLabels {
    namespace: String,
    name: String,
    #[prometheus(flatten)]
    provider: ProviderLabels,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct SubscriptionConditionLabels {
    namespace: String,
    name: String,
    #[prometheus(flatten)]
    provider: ProviderLabels,
    condition: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct LeaseLabels {
    name: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct BuildLabels {
    version: String,
}

/// A subscription's gauges, from the status a pass leaves.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct SubscriptionGauges {
    /// The provider it goes through.
    pub provider: ProviderLabels,
    /// Ready condition status: True, False or Unknown.
    pub ready: String,
    /// Expiry, epoch seconds.
    pub expiration: Option<f64>,
    /// Next renewal, epoch seconds.
    pub renewal: Option<f64>,
}

/// The per-subscription gauges (Ready, expiry, next renewal), kept as one compact record per
/// subscription and written out at scrape time, as kube-state-metrics does: five metric objects per
/// subscription with their label sets would cost 10,000 subscriptions some 25 MiB.
#[derive(Debug, Default)]
struct SubscriptionSeries {
    by_key: Mutex<HashMap<(String, String), SubscriptionGauges>>,
}

impl Collector for SubscriptionSeries {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let known = self.by_key.lock().unwrap_or_else(|e| e.into_inner());
        let labels = |(namespace, name): &(String, String), g: &SubscriptionGauges| SubscriptionLabels {
            namespace: namespace.clone(),
            name: name.clone(),
            provider: g.provider.clone(),
        };
        {
            let mut family = encoder.encode_descriptor(
                "subscription_ready_status",
                "The Ready condition of each subscription",
                None,
                MetricType::Gauge,
            )?;
            for (key, g) in known.iter() {
                for condition in CONDITIONS {
                    let series = SubscriptionConditionLabels {
                        namespace: key.0.clone(),
                        name: key.1.clone(),
                        provider: g.provider.clone(),
                        condition: condition.to_string(),
                    };
                    ConstGauge::new(i64::from(g.ready == condition)).encode(family.encode_family(&series)?)?;
                }
            }
        }
        for (metric, help, pick) in [
            (
                "subscription_expiration_timestamp",
                "When each remote subscription expires unless renewed",
                (|g: &SubscriptionGauges| g.expiration) as fn(&SubscriptionGauges) -> Option<f64>,
            ),
            (
                "subscription_renewal_timestamp",
                "When the operator renews each remote subscription next",
                |g: &SubscriptionGauges| g.renewal,
            ),
        ] {
            let mut family = encoder.encode_descriptor(metric, help, Some(&Unit::Seconds), MetricType::Gauge)?;
            for (key, g) in known.iter() {
                if let Some(t) = pick(g) {
                    ConstGauge::new(t).encode(family.encode_family(&labels(key, g))?)?;
                }
            }
        }
        Ok(())
    }
}

type HistogramFamily<L> = Family<L, Histogram, fn() -> Histogram>;

const CONDITIONS: [&str; 3] = ["True", "False", "Unknown"];

struct Metrics {
    registry: Registry,
    provider_requests: Family<RequestLabels, Counter>,
    provider_request_duration: HistogramFamily<CallLabels>,
    provider_ready: Family<ConditionLabels, Gauge>,
    reconcile_duration: Histogram,
    reconcile_errors: Family<ReasonLabels, Counter>,
    deferred_passes: Family<ProviderLabels, Counter>,
    leader: Family<LeaseLabels, Gauge>,
    /// Each subscription's gauges, rendered at scrape time (see [`SubscriptionSeries`]).
    subscriptions: std::sync::Arc<SubscriptionSeries>,
    /// The same for providers, by their account key.
    providers: Mutex<HashMap<String, ProviderLabels>>,
}

fn provider_call_histogram() -> Histogram {
    // 25 ms to about 51 s: provider calls, including retries after a Retry-After.
    Histogram::new(exponential_buckets(0.025, 2.0, 12))
}

fn metrics() -> &'static Metrics {
    static METRICS: OnceLock<Metrics> = OnceLock::new();
    METRICS.get_or_init(|| {
        let mut registry = Registry::with_prefix("webhook_operator");
        let m = Metrics {
            registry: Registry::default(),
            provider_requests: Family::default(),
            provider_request_duration: Family::new_with_constructor(provider_call_histogram),
            provider_ready: Family::default(),
            reconcile_duration: Histogram::new(exponential_buckets(0.005, 2.5, 10)),
            reconcile_errors: Family::default(),
            deferred_passes: Family::default(),
            leader: Family::default(),
            subscriptions: std::sync::Arc::default(),
            providers: Mutex::new(HashMap::new()),
        };
        registry.register(
            "provider_requests",
            "Provider API requests by provider, operation and HTTP status (error: no response)",
            m.provider_requests.clone(),
        );
        registry.register_with_unit(
            "provider_request_duration",
            "Duration of provider API requests, each attempt on its own",
            Unit::Seconds,
            m.provider_request_duration.clone(),
        );
        registry.register(
            "provider_ready_status",
            "The Ready condition of each WebhookProvider and ClusterWebhookProvider",
            m.provider_ready.clone(),
        );
        registry.register_with_unit(
            "reconcile_duration",
            "Duration of subscription reconciles",
            Unit::Seconds,
            m.reconcile_duration.clone(),
        );
        registry.register(
            "reconcile_errors",
            "Failed reconciles by reason",
            m.reconcile_errors.clone(),
        );
        registry.register(
            "deferred_passes",
            "Routine passes sent away to come back because their account was at its rate limit",
            m.deferred_passes.clone(),
        );
        registry.register_collector(Box::new(m.subscriptions.clone()));
        registry.register(
            "leader_election_status",
            "1 while this replica holds the leader Lease (or runs without leader election), 0 otherwise",
            m.leader.clone(),
        );
        registry.register(
            "build",
            "The operator's version",
            Info::new(BuildLabels {
                version: env!("CARGO_PKG_VERSION").to_string(),
            }),
        );
        Metrics { registry, ..m }
    })
}

/// Counts one provider API request and records how long it took; `status` None: no response.
pub fn provider_request(provider: &ProviderLabels, operation: &str, status: Option<u16>, took: Duration) {
    let m = metrics();
    let code = status.map_or_else(|| "error".to_string(), |s| s.to_string());
    m.provider_requests
        .get_or_create(&RequestLabels {
            provider: provider.clone(),
            operation: operation.to_string(),
            code,
        })
        .inc();
    m.provider_request_duration
        .get_or_create(&CallLabels {
            provider: provider.clone(),
            operation: operation.to_string(),
        })
        .observe(took.as_secs_f64());
}

/// Counts a failed reconcile by reason.
pub fn reconcile_error(reason: &str) {
    metrics()
        .reconcile_errors
        .get_or_create(&ReasonLabels {
            reason: reason.to_string(),
        })
        .inc();
}

/// Counts a routine pass sent away because its account was at its rate limit.
pub fn deferred(provider: &ProviderLabels) {
    metrics().deferred_passes.get_or_create(provider).inc();
}

/// Records one reconcile's duration and, when it failed, its reason.
pub fn reconcile(duration: Duration, error_reason: Option<&str>) {
    metrics().reconcile_duration.observe(duration.as_secs_f64());
    if let Some(reason) = error_reason {
        reconcile_error(reason);
    }
}

/// Sets a subscription's gauges (None removes them, e.g. after deletion).
pub fn subscription(namespace: &str, name: &str, gauges: Option<SubscriptionGauges>) {
    let mut known = metrics().subscriptions.by_key.lock().unwrap_or_else(|e| e.into_inner());
    let key = (namespace.to_string(), name.to_string());
    match gauges {
        Some(g) => {
            known.insert(key, g);
        }
        None => {
            known.remove(&key);
        }
    }
}

/// Sets a provider's Ready gauge (`ready` None removes the provider's series).
pub fn provider_ready(key: &str, provider: &ProviderLabels, ready: Option<&str>) {
    let m = metrics();
    let mut known = m.providers.lock().unwrap_or_else(|e| e.into_inner());
    let previous = match ready {
        Some(_) => known
            .insert(key.to_string(), provider.clone())
            .filter(|p| p != provider),
        None => known.remove(key),
    };
    let series = |labels: &ProviderLabels, condition: &str| ConditionLabels {
        provider: labels.clone(),
        condition: condition.to_string(),
    };
    if let Some(previous) = previous {
        for condition in CONDITIONS {
            m.provider_ready.remove(&series(&previous, condition));
        }
    }
    if let Some(ready) = ready {
        for condition in CONDITIONS {
            m.provider_ready
                .get_or_create(&series(provider, condition))
                .set(i64::from(ready == condition));
        }
    }
}

/// Drops the Ready series of providers whose key is not in `live` (they were deleted).
pub fn retain_providers(live: &std::collections::HashSet<String>) {
    let gone: Vec<(String, ProviderLabels)> = {
        let known = metrics().providers.lock().unwrap_or_else(|e| e.into_inner());
        known
            .iter()
            .filter(|(k, _)| !live.contains(*k))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect()
    };
    for (key, labels) in gone {
        provider_ready(&key, &labels, None);
    }
}

/// Whether this replica leads (holds the Lease `name`, or runs without leader election).
pub fn leader(name: &str, leading: bool) {
    metrics()
        .leader
        .get_or_create(&LeaseLabels { name: name.to_string() })
        .set(i64::from(leading));
}

/// The registry in the OpenMetrics text format.
pub fn render() -> String {
    let mut out = String::new();
    prometheus_client::encoding::text::encode(&mut out, &metrics().registry).expect("writing to a String");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn avaya() -> ProviderLabels {
        ProviderLabels {
            provider_kind: "WebhookProvider".into(),
            provider_namespace: "team-a".into(),
            provider_name: "avaya".into(),
            provider_type: "avaya".into(),
        }
    }

    #[test]
    fn metrics_render_as_openmetrics_with_provider_kind_and_name() {
        provider_request(&avaya(), "renew", Some(200), Duration::from_millis(40));
        provider_request(&avaya(), "renew", Some(200), Duration::from_millis(60));
        provider_request(&avaya(), "create", None, Duration::from_secs(5));
        reconcile(Duration::from_millis(30), Some("RateLimited"));
        subscription(
            "team-a",
            "agents",
            Some(SubscriptionGauges {
                provider: avaya(),
                ready: "True".into(),
                expiration: Some(1_800_000_000.0),
                renewal: Some(1_799_999_000.0),
            }),
        );
        provider_ready("WebhookProvider/team-a/avaya", &avaya(), Some("False"));
        leader("webhook-operator", true);
        let text = render();
        let provider = r#"provider_kind="WebhookProvider",provider_namespace="team-a",provider_name="avaya",provider_type="avaya""#;
        assert!(
            text.contains(&format!(
                "webhook_operator_provider_requests_total{{{provider},operation=\"renew\",code=\"200\"}} 2"
            )),
            "{text}"
        );
        assert!(
            text.contains(&format!(
                "webhook_operator_provider_requests_total{{{provider},operation=\"create\",code=\"error\"}} 1"
            )),
            "{text}"
        );
        assert!(
            text.contains(&format!(
                "webhook_operator_provider_request_duration_seconds_count{{{provider},operation=\"renew\"}} 2"
            )),
            "{text}"
        );
        assert!(
            text.contains("# TYPE webhook_operator_provider_request_duration_seconds histogram"),
            "{text}"
        );
        assert!(
            text.contains("webhook_operator_reconcile_errors_total{reason=\"RateLimited\"}"),
            "{text}"
        );
        assert!(
            text.contains("webhook_operator_reconcile_duration_seconds_bucket{le="),
            "{text}"
        );
        assert!(text.contains(&format!("webhook_operator_subscription_ready_status{{namespace=\"team-a\",name=\"agents\",{provider},condition=\"True\"}} 1")), "{text}");
        assert!(text.contains(&format!("webhook_operator_subscription_expiration_timestamp_seconds{{namespace=\"team-a\",name=\"agents\",{provider}}} 1800000000")), "{text}");
        assert!(
            text.contains(&format!(
                "webhook_operator_provider_ready_status{{{provider},condition=\"False\"}} 1"
            )),
            "{text}"
        );
        assert!(
            text.contains("webhook_operator_leader_election_status{name=\"webhook-operator\"} 1"),
            "{text}"
        );
        assert!(
            text.contains(&format!(
                "webhook_operator_build_info{{version=\"{}\"}} 1",
                env!("CARGO_PKG_VERSION")
            )),
            "{text}"
        );
        assert!(text.ends_with("# EOF\n"), "OpenMetrics ends with EOF");

        // A subscription moved to another provider keeps no series under the old one; a deleted one none.
        let mut moved = avaya();
        moved.provider_name = "avaya-2".into();
        subscription(
            "team-a",
            "agents",
            Some(SubscriptionGauges {
                provider: moved,
                ready: "False".into(),
                expiration: None,
                renewal: None,
            }),
        );
        let text = render();
        assert!(!text.contains(&format!("name=\"agents\",{provider}")), "{text}");
        assert!(text.contains("provider_name=\"avaya-2\""), "{text}");
        assert!(!text.contains(
            "webhook_operator_subscription_expiration_timestamp_seconds{namespace=\"team-a\",name=\"agents\""
        ));
        subscription("team-a", "agents", None);
        retain_providers(&Default::default());
        let text = render();
        assert!(!text.contains("name=\"agents\""), "{text}");
        assert!(
            !text.contains(&format!("webhook_operator_provider_ready_status{{{provider}")),
            "{text}"
        );
    }
}
