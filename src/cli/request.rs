//! `renew`, `reconcile`, `pause`, `resume`: the annotations the Argo CD actions set, then (unless
//! `--no-wait`) a watch on each object until the operator's echo shows it handled the request.

use std::time::Duration;

use jiff::Timestamp;
use kube::ResourceExt;
use kube::api::{Api, Patch, PatchParams};
use kube::runtime::wait::await_condition;
use serde_json::{Value, json};

use super::{CliError, Target, advice, kube_error, relative, select};
use crate::api::{WebhookSubscription, annotation, condition, find_condition};

/// What to ask the operator.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Request {
    /// Renew now (Avaya; a check for providers whose subscriptions do not expire).
    Renew,
    /// Compare with the provider now.
    Reconcile,
    /// Stop remote writes.
    Pause,
    /// Resume remote writes.
    Resume,
}

/// Arguments of the request commands.
#[derive(Clone, Debug, clap::Args)]
pub struct RequestArgs {
    /// Subscriptions to ask about (default: every one selected by -n, -A, -l).
    pub names: Vec<String>,
    #[command(flatten)]
    pub target: Target,
    /// Return once the annotation is set, without waiting for the operator.
    #[arg(long)]
    pub no_wait: bool,
    /// How long to wait for the operator's answer.
    #[arg(long, default_value = "60s", value_parser = parse_timeout)]
    pub timeout: Duration,
}

fn parse_timeout(text: &str) -> Result<Duration, String> {
    crate::api::parse_go_duration(text).map_err(|e| e.to_string())
}

/// The annotation patch that asks; `token` is what the operator echoes.
pub fn request_patch(request: Request, token: &str) -> Value {
    let annotations = match request {
        Request::Renew => json!({annotation::RENEW_REQUESTED_AT: token}),
        Request::Reconcile => json!({annotation::RECONCILE_REQUESTED_AT: token}),
        Request::Pause => json!({annotation::PAUSED: "true"}),
        Request::Resume => json!({annotation::PAUSED: null}),
    };
    json!({"metadata": {"annotations": annotations}})
}

/// Whether `sub` shows the request handled.
pub fn handled(request: Request, token: &str, sub: &WebhookSubscription) -> bool {
    let status = sub.status.clone().unwrap_or_default();
    let synced = find_condition(&status.conditions, condition::SYNCED).map(|c| c.reason.as_str());
    match request {
        Request::Renew => status.last_handled_renew_at.as_deref() == Some(token),
        Request::Reconcile => status.last_handled_reconcile_at.as_deref() == Some(token),
        Request::Pause => synced == Some("ReconcilePaused"),
        Request::Resume => synced.is_some_and(|r| r != "ReconcilePaused"),
    }
}

/// One line on how a handled request left the subscription; `Err` when it is not Ready.
pub fn outcome(request: Request, sub: &WebhookSubscription, now: Timestamp) -> Result<String, String> {
    let name = format!("{}/{}", sub.namespace().unwrap_or_default(), sub.name_any());
    let status = sub.status.clone().unwrap_or_default();
    let ready = find_condition(&status.conditions, condition::READY);
    let expiry = status
        .expires_at
        .as_deref()
        .and_then(|t| t.parse::<Timestamp>().ok())
        .map(|t| format!("; expires {}", relative(t, now)));
    let done = match request {
        Request::Renew if expiry.is_none() => {
            "checked against the provider (its subscriptions do not expire: nothing to renew)".to_string()
        }
        Request::Renew => format!("renewed{}", expiry.unwrap_or_default()),
        Request::Reconcile => "checked against the provider".to_string(),
        Request::Pause => "paused: no remote writes until resumed".to_string(),
        Request::Resume => "resumed".to_string(),
    };
    match ready {
        Some(c) if c.status == "True" || request == Request::Pause => Ok(format!("{name}: {done}")),
        Some(c) => {
            let todo = advice::advice(&c.reason).map_or(String::new(), |t| format!("; to do: {t}"));
            Err(format!(
                "{name}: {done}, but not Ready: {}: {}{todo}",
                c.reason, c.message
            ))
        }
        None => Err(format!("{name}: {done}, but Ready is not reported yet")),
    }
}

/// Asks, waits and reports for each selected subscription; the text to print, or the failures.
pub async fn run_request(request: Request, args: &RequestArgs) -> Result<String, CliError> {
    let (client, namespace) = super::connect(&args.target).await?;
    let subs = select(&client, &namespace, &args.target, &args.names).await?;
    // Millisecond precision: two requests in the same second are two requests.
    let token = Timestamp::now().strftime("%Y-%m-%dT%H:%M:%S%.3fZ").to_string();
    let patch = request_patch(request, &token);
    let mut lines = Vec::new();
    let mut failures = Vec::new();
    for sub in &subs {
        let ns = sub.namespace().unwrap_or_default();
        let api: Api<WebhookSubscription> = Api::namespaced(client.clone(), &ns);
        api.patch(&sub.name_any(), &PatchParams::default(), &Patch::Merge(&patch))
            .await
            .map_err(|e| kube_error("cannot annotate the subscription", e))?;
        if args.no_wait {
            lines.push(format!("{ns}/{}: requested", sub.name_any()));
            continue;
        }
        let wanted = token.clone();
        let waited = tokio::time::timeout(
            args.timeout,
            await_condition(api, &sub.name_any(), move |s: Option<&WebhookSubscription>| {
                s.is_some_and(|s| handled(request, &wanted, s))
            }),
        )
        .await;
        match waited {
            Ok(Ok(Some(answered))) => match outcome(request, &answered, Timestamp::now()) {
                Ok(line) => lines.push(line),
                Err(line) => failures.push(line),
            },
            Ok(Ok(None)) => failures.push(format!("{ns}/{}: deleted while waiting", sub.name_any())),
            Ok(Err(e)) => failures.push(format!("{ns}/{}: watch failed: {e}", sub.name_any())),
            Err(_) => failures.push(format!(
                "{ns}/{}: the operator did not answer within {}s (is it running, and does it reconcile this namespace or shard?)",
                sub.name_any(),
                args.timeout.as_secs()
            )),
        }
    }
    if failures.is_empty() {
        Ok(lines.join("\n"))
    } else {
        lines.extend(failures);
        Err(CliError::Unhandled(lines.join("\n")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sub(status: Value) -> WebhookSubscription {
        serde_json::from_value(json!({
            "apiVersion": "webhook-operator.dev/v1alpha1", "kind": "WebhookSubscription",
            "metadata": {"name": "s", "namespace": "team-a"},
            "spec": {"providerRef": {"name": "p"}, "endpoint": "https://h.example.com/", "vonage": {"events": ["e"]}},
            "status": status
        }))
        .unwrap()
    }

    fn ready(reason: &str, status: &str) -> Value {
        json!([{"type": "Ready", "status": status, "reason": reason, "message": "m", "lastTransitionTime": "2027-01-01T00:00:00Z"},
               {"type": "Synced", "status": status, "reason": reason, "message": "m", "lastTransitionTime": "2027-01-01T00:00:00Z"}])
    }

    #[test]
    fn requests_set_the_annotations_the_operator_echoes() {
        assert_eq!(
            request_patch(Request::Renew, "t1"),
            json!({"metadata": {"annotations": {"webhook-operator.dev/renew-requested-at": "t1"}}})
        );
        assert_eq!(
            request_patch(Request::Resume, "t1"),
            json!({"metadata": {"annotations": {"webhook-operator.dev/paused": null}}}),
            "resume removes the annotation"
        );
        let echoed = sub(json!({"lastHandledRenewAt": "t1", "conditions": ready("Available", "True")}));
        assert!(handled(Request::Renew, "t1", &echoed));
        assert!(
            !handled(Request::Renew, "t2", &echoed),
            "an older echo is not this request's"
        );
        assert!(!handled(Request::Reconcile, "t1", &echoed));
        let paused = sub(
            json!({"conditions": [{"type": "Synced", "status": "False", "reason": "ReconcilePaused", "message": "", "lastTransitionTime": "2027-01-01T00:00:00Z"}]}),
        );
        assert!(handled(Request::Pause, "x", &paused));
        assert!(!handled(Request::Resume, "x", &paused));
        assert!(handled(Request::Resume, "x", &echoed));
    }

    #[test]
    fn outcomes_say_what_happened_and_what_to_do() {
        let now = "2027-01-01T00:00:00Z".parse().unwrap();
        let vonage = sub(json!({"conditions": ready("Available", "True")}));
        assert_eq!(
            outcome(Request::Renew, &vonage, now).unwrap(),
            "team-a/s: checked against the provider (its subscriptions do not expire: nothing to renew)"
        );
        let avaya = sub(json!({"expiresAt": "2027-01-01T01:00:00Z", "conditions": ready("Available", "True")}));
        assert_eq!(
            outcome(Request::Renew, &avaya, now).unwrap(),
            "team-a/s: renewed; expires in 1h0m"
        );
        let broken = sub(json!({"conditions": ready("ProviderNotReady", "False")}));
        let error = outcome(Request::Reconcile, &broken, now).unwrap_err();
        assert!(
            error.starts_with(
                "team-a/s: checked against the provider, but not Ready: ProviderNotReady: m; to do: the message names"
            ),
            "{error}"
        );
    }
}
