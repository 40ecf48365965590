//! The day-2 command line: `status`, `renew`, `reconcile`, `pause`, `resume`, against any cluster the way
//! kubectl finds it (`$KUBECONFIG` or `~/.kube/config`, `--context`, the context's namespace). The same
//! binary is the kubectl plugin `kubectl whsub` when installed as `kubectl-whsub`.
//!
//! The commands set the annotations the Argo CD actions set and wait, by a watch on the object, for the
//! operator's echo in `status`; what they print comes from pure functions over the objects.

pub mod advice;
pub mod complete;
#[cfg(feature = "sandbox")]
mod plan;
mod request;
mod status;

use kube::api::{Api, ListParams};
use kube::config::{KubeConfigOptions, Kubeconfig};

#[cfg(feature = "sandbox")]
pub use plan::{PlanArgs, run_plan};
pub use request::{Request, RequestArgs, run_request};
pub use status::{StatusArgs, render_status, run_status};

use crate::api::WebhookSubscription;

/// Which cluster and which subscriptions, as kubectl spells it.
#[derive(Clone, Debug, Default, PartialEq, Eq, clap::Args)]
pub struct Target {
    /// Kubeconfig file (default: $KUBECONFIG, then ~/.kube/config, then in-cluster).
    #[arg(long, value_name = "PATH")]
    pub kubeconfig: Option<std::path::PathBuf>,
    /// The kubeconfig context to use.
    #[arg(long, value_name = "NAME")]
    pub context: Option<String>,
    /// Namespace (default: the context's).
    #[arg(short = 'n', long, value_name = "NS")]
    pub namespace: Option<String>,
    /// Every namespace.
    #[arg(short = 'A', long)]
    pub all_namespaces: bool,
    /// Only subscriptions whose labels match (e.g. team=contact-centre).
    #[arg(short = 'l', long, value_name = "SELECTOR")]
    pub selector: Option<String>,
}

/// Errors a person can act on; printed as one line.
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    /// The kubeconfig could not be read or used.
    #[error("{0}")]
    Config(String),
    /// A call to the API server failed.
    #[error("{0}")]
    Kube(String),
    /// The selection named nothing.
    #[error("{0}")]
    NotFound(String),
    /// The operator did not answer in time, or answered with a failure.
    #[error("{0}")]
    Unhandled(String),
}

fn kube_error(what: &str, e: kube::Error) -> CliError {
    match e {
        kube::Error::Api(status) => CliError::Kube(format!("{what}: {} ({})", status.message, status.reason)),
        other => CliError::Kube(format!("{what}: {other}")),
    }
}

/// Reads a kubeconfig file. Read here rather than by kube, whose error quotes the path twice and repeats
/// the cause.
pub fn read_kubeconfig(path: &std::path::Path) -> Result<Kubeconfig, String> {
    let text =
        std::fs::read_to_string(path).map_err(|e| format!("cannot read the kubeconfig {}: {e}", path.display()))?;
    Kubeconfig::from_yaml(&text).map_err(|e| format!("the kubeconfig {} is not valid: {e}", path.display()))
}

/// A client for the target's cluster and the namespace it names (the context's when none is given).
pub async fn connect(target: &Target) -> Result<(kube::Client, String), CliError> {
    let options = KubeConfigOptions {
        context: target.context.clone(),
        ..KubeConfigOptions::default()
    };
    let mut config = match &target.kubeconfig {
        Some(path) => {
            let file = read_kubeconfig(path).map_err(CliError::Config)?;
            kube::Config::from_custom_kubeconfig(file, &options)
                .await
                .map_err(|e| CliError::Config(format!("the kubeconfig {} is not usable: {e}", path.display())))?
        }
        None if target.context.is_some() => kube::Config::from_kubeconfig(&options)
            .await
            .map_err(|e| CliError::Config(format!("cannot use the kubeconfig: {e}")))?,
        None => kube::Config::infer().await.map_err(|e| {
            CliError::Config(format!(
                "no Kubernetes configuration ({e}); set KUBECONFIG or pass --kubeconfig"
            ))
        })?,
    };
    crate::controller::identify(&mut config);
    let namespace = target
        .namespace
        .clone()
        .unwrap_or_else(|| config.default_namespace.clone());
    let client = kube::Client::try_from(config).map_err(|e| CliError::Config(format!("cannot build a client: {e}")))?;
    Ok((client, namespace))
}

/// The subscriptions `names` (in the namespace), or every one the namespace, `-A` and `-l` select.
pub async fn select(
    client: &kube::Client,
    namespace: &str,
    target: &Target,
    names: &[String],
) -> Result<Vec<WebhookSubscription>, CliError> {
    let api: Api<WebhookSubscription> = if target.all_namespaces {
        Api::all(client.clone())
    } else {
        Api::namespaced(client.clone(), namespace)
    };
    if !names.is_empty() {
        if target.all_namespaces {
            return Err(CliError::NotFound(
                "a name needs one namespace: use -n NAMESPACE instead of -A".into(),
            ));
        }
        let mut found = Vec::new();
        for name in names {
            match api
                .get_opt(name)
                .await
                .map_err(|e| kube_error("cannot read the subscription", e))?
            {
                Some(sub) => found.push(sub),
                None => {
                    return Err(CliError::NotFound(format!(
                        "webhooksubscription \"{name}\" not found in namespace {namespace}"
                    )));
                }
            }
        }
        return Ok(found);
    }
    let mut params = ListParams::default();
    if let Some(selector) = &target.selector {
        params = params.labels(selector);
    }
    let list = api
        .list(&params)
        .await
        .map_err(|e| kube_error("cannot list webhooksubscriptions", e))?;
    if list.items.is_empty() {
        let scope = if target.all_namespaces {
            "any namespace".to_string()
        } else {
            format!("namespace {namespace}")
        };
        return Err(CliError::NotFound(format!("no webhooksubscriptions in {scope}")));
    }
    Ok(list.items)
}

/// A duration as a person reads it: `3h12m`, `45s`; at most two units.
pub fn human(seconds: i64) -> String {
    let s = seconds.unsigned_abs();
    let (d, h, m, sec) = (s / 86_400, s / 3_600 % 24, s / 60 % 60, s % 60);
    match (d, h, m) {
        (0, 0, 0) => format!("{sec}s"),
        (0, 0, _) if sec == 0 => format!("{m}m"),
        (0, 0, _) => format!("{m}m{sec}s"),
        (0, _, _) => format!("{h}h{m}m"),
        _ => format!("{d}d{h}h"),
    }
}

/// `in 3h12m` or `5m ago` for a time relative to `now`.
pub fn relative(t: jiff::Timestamp, now: jiff::Timestamp) -> String {
    let seconds = t.as_second() - now.as_second();
    if seconds >= 0 {
        format!("in {}", human(seconds))
    } else {
        format!("{} ago", human(seconds))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_read_as_a_person_says_them() {
        assert_eq!(human(45), "45s");
        assert_eq!(human(120), "2m");
        assert_eq!(human(125), "2m5s");
        assert_eq!(human(3 * 3600 + 12 * 60 + 7), "3h12m");
        assert_eq!(human(2 * 86_400 + 5 * 3600), "2d5h");
        let now = jiff::Timestamp::from_second(1_800_000_000).unwrap();
        assert_eq!(relative(now + jiff::SignedDuration::from_secs(90), now), "in 1m30s");
        assert_eq!(relative(now - jiff::SignedDuration::from_secs(300), now), "5m ago");
    }
}
