//! Telemetry: logging setup, the metrics (on `prometheus-client`, named like cert-manager's), the health
//! the probes read, and the HTTP server for `/metrics`, `/healthz` and `/readyz` (on axum).

mod health;
mod metrics;
mod server;

pub use health::{Health, health};
pub use metrics::{
    ProviderLabels, SubscriptionGauges, deferred, leader, provider_ready, provider_request, reconcile, reconcile_error,
    render, retain_providers, subscription,
};
pub use server::{router, serve};

/// Logs to stderr, filtered by `RUST_LOG` (default `default_filter`), as JSON when `json` is set, in
/// colour only on a terminal.
pub fn init_logging(default_filter: &str, json: bool) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default_filter));
    // Colours only on a terminal: files and log collectors get plain text.
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr);
    let _ = if json {
        builder.json().try_init()
    } else {
        builder.try_init()
    };
}
