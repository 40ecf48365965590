//! `status [NAME]`: conditions with their reasons, the remote id and state, expiry and next renewal in
//! human time, the last Events, and what to do about a failing reason (from the README's table).

use std::collections::HashMap;
use std::fmt::Write as _;

use jiff::Timestamp;
use k8s_openapi::api::events::v1::Event;
use kube::ResourceExt;
use kube::api::{Api, ListParams};

use super::{CliError, Target, advice, kube_error, relative, select};
use crate::api::{WebhookSubscription, condition, find_condition};

/// `status` arguments.
#[derive(Clone, Debug, clap::Args)]
pub struct StatusArgs {
    /// Subscriptions to show (default: every one selected by -n, -A, -l).
    pub names: Vec<String>,
    #[command(flatten)]
    pub target: Target,
    /// How many of each subscription's most recent Events to show.
    #[arg(long, default_value_t = 5)]
    pub events: usize,
}

fn time(value: Option<&str>, now: Timestamp) -> Option<String> {
    let value = value?;
    Some(match value.parse::<Timestamp>() {
        Ok(t) => format!("{} ({value})", relative(t, now)),
        Err(_) => value.to_string(),
    })
}

/// One subscription's status as text. `events` are the Events about it, in any order.
pub fn render_status(sub: &WebhookSubscription, events: &[Event], now: Timestamp, max_events: usize) -> String {
    let mut out = String::new();
    let status = sub.status.clone().unwrap_or_default();
    let reference = &sub.spec.provider_ref;
    let provider_type =
        crate::controller::bindings::subscription_block(&sub.spec).map_or("unknown", |b| b.provider_type().as_str());
    let _ = writeln!(
        out,
        "{}/{}  ({provider_type} through {} {}) -> {}",
        sub.namespace().unwrap_or_default(),
        sub.name_any(),
        reference.kind.as_str(),
        reference.name,
        sub.spec.endpoint
    );
    let mut failing = Vec::new();
    for type_ in [condition::READY, condition::SYNCED] {
        match find_condition(&status.conditions, type_) {
            Some(c) => {
                let _ = write!(out, "  {:<9} {:<6} {}", format!("{type_}:"), c.status, c.reason);
                if !c.message.is_empty() {
                    let _ = write!(out, ": {}", c.message);
                }
                out.push('\n');
                if c.status != "True" {
                    failing.push(c.reason.clone());
                }
            }
            None => {
                let _ = writeln!(out, "  {:<9} not reported yet", format!("{type_}:"));
            }
        }
    }
    let observed = status.observed_generation.unwrap_or(0);
    let generation = sub.metadata.generation.unwrap_or(0);
    if observed < generation {
        let _ = writeln!(
            out,
            "  Spec:     generation {generation} not observed yet (status is of generation {observed})"
        );
    }
    let remote = match (&status.subscription_id, &status.remote_state) {
        (Some(id), Some(state)) => format!("{id} ({state})"),
        (Some(id), None) => id.clone(),
        _ => "none yet".into(),
    };
    let _ = writeln!(out, "  Remote:   {remote}");
    if let Some(expires) = time(status.expires_at.as_deref(), now) {
        let _ = writeln!(out, "  Expires:  {expires}");
    }
    if let Some(renewal) = time(status.renewal_time.as_deref(), now) {
        let count = status.renewal_count.unwrap_or(0);
        let last = time(status.last_renewed_at.as_deref(), now).map_or(String::new(), |t| format!(", last {t}"));
        let _ = writeln!(out, "  Renewal:  {renewal}; {count} renewal(s){last}");
    }
    if let Some(failures) = status.failed_attempts {
        let since = time(status.last_failure_time.as_deref(), now).unwrap_or_default();
        let _ = writeln!(out, "  Failures: {failures} in a row, last {since}");
    }
    let mut recent: Vec<&Event> = events.iter().collect();
    recent.sort_by_key(|e| std::cmp::Reverse(event_time(e)));
    if !recent.is_empty() {
        out.push_str("  Events:\n");
        for e in recent.into_iter().take(max_events) {
            let when = event_time(e).map_or("-".to_string(), |t| relative(t, now));
            let count = e.series.as_ref().map_or(String::new(), |s| format!(" (x{})", s.count));
            let _ = writeln!(
                out,
                "    {when:<10} {:<8} {}{count}: {}",
                e.type_.as_deref().unwrap_or(""),
                e.reason.as_deref().unwrap_or(""),
                e.note.as_deref().unwrap_or("")
            );
        }
    }
    failing.dedup();
    for reason in failing {
        if let Some(todo) = advice::advice(&reason) {
            let _ = writeln!(out, "  To do ({reason}): {todo}");
        }
    }
    out
}

/// When an Event last happened: its series' last observation, else its time.
fn event_time(e: &Event) -> Option<Timestamp> {
    let micro = e
        .series
        .as_ref()
        .map(|s| s.last_observed_time.0)
        .or(e.event_time.as_ref().map(|t| t.0))?;
    Some(micro)
}

/// The Events about WebhookSubscriptions, by (namespace, name).
fn by_subscription(events: Vec<Event>) -> HashMap<(String, String), Vec<Event>> {
    let mut grouped: HashMap<(String, String), Vec<Event>> = HashMap::new();
    for event in events {
        let Some(regarding) = &event.regarding else { continue };
        if regarding.kind.as_deref() != Some("WebhookSubscription") {
            continue;
        }
        let key = (
            regarding.namespace.clone().unwrap_or_default(),
            regarding.name.clone().unwrap_or_default(),
        );
        grouped.entry(key).or_default().push(event);
    }
    grouped
}

/// Prints the status of the selected subscriptions; fails when none is selected. The Events are read
/// in one list (of the one subscription, or of every subscription in the scope), never one per object.
pub async fn run_status(args: &StatusArgs) -> Result<String, CliError> {
    let (client, namespace) = super::connect(&args.target).await?;
    let subs = select(&client, &namespace, &args.target, &args.names).await?;
    let (api, fields) = match subs.as_slice() {
        [one] => (
            Api::<Event>::namespaced(client.clone(), &one.namespace().unwrap_or_default()),
            format!("regarding.kind=WebhookSubscription,regarding.name={}", one.name_any()),
        ),
        _ if args.target.all_namespaces => (
            Api::all(client.clone()),
            "regarding.kind=WebhookSubscription".to_string(),
        ),
        _ => (
            Api::namespaced(client.clone(), &namespace),
            "regarding.kind=WebhookSubscription".to_string(),
        ),
    };
    let events = api
        .list(&ListParams::default().fields(&fields))
        .await
        .map_err(|e| kube_error("cannot list the Events", e))?
        .items;
    let mut grouped = by_subscription(events);
    let now = Timestamp::now();
    let mut out = String::new();
    for (i, sub) in subs.iter().enumerate() {
        let key = (sub.namespace().unwrap_or_default(), sub.name_any());
        let events = grouped.remove(&key).unwrap_or_default();
        if i > 0 {
            out.push('\n');
        }
        out.push_str(&render_status(sub, &events, now, args.events));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;
    use serde_json::json;

    fn at(seconds: i64) -> Timestamp {
        Timestamp::from_second(1_800_000_000 + seconds).unwrap()
    }

    fn sub(status: serde_json::Value) -> WebhookSubscription {
        serde_json::from_value(json!({
            "apiVersion": "webhook-operator.dev/v1alpha1", "kind": "WebhookSubscription",
            "metadata": {"name": "agent-events", "namespace": "team-a", "generation": 2},
            "spec": {"providerRef": {"name": "avaya"}, "endpoint": "https://hooks.example.com/a",
                     "avaya": {"families": ["AGENT"], "events": ["Agent.LoggedIn"]}},
            "status": status
        }))
        .unwrap()
    }

    fn event(seconds: i64, reason: &str, note: &str) -> Event {
        Event {
            event_time: Some(MicroTime(at(seconds))),
            reason: Some(reason.into()),
            note: Some(note.into()),
            type_: Some("Normal".into()),
            ..Event::default()
        }
    }

    #[test]
    fn a_working_subscription_reads_at_a_glance() {
        let s = sub(json!({
            "observedGeneration": 2, "subscriptionId": "4e9f", "remoteState": "ACTIVE",
            "expiresAt": "2027-01-15T08:30:00Z", "renewalTime": "2027-01-15T08:10:00Z", "renewalCount": 3,
            "conditions": [
                {"type": "Ready", "status": "True", "reason": "Available", "message": "ACTIVE", "lastTransitionTime": "2027-01-15T08:00:00Z"},
                {"type": "Synced", "status": "True", "reason": "ReconcileSuccess", "message": "", "lastTransitionTime": "2027-01-15T08:00:00Z"}
            ]
        }));
        let now = "2027-01-15T08:00:00Z".parse().unwrap();
        let events = [event(-120, "Created", "created"), event(-60, "Renewed", "renewed")];
        let text = render_status(&s, &events, now, 5);
        assert!(
            text.starts_with(
                "team-a/agent-events  (avaya through WebhookProvider avaya) -> https://hooks.example.com/a\n"
            ),
            "{text}"
        );
        assert!(text.contains("  Ready:    True   Available: ACTIVE\n"), "{text}");
        assert!(text.contains("  Remote:   4e9f (ACTIVE)\n"), "{text}");
        assert!(text.contains("  Expires:  in 30m (2027-01-15T08:30:00Z)\n"), "{text}");
        assert!(
            text.contains("  Renewal:  in 10m (2027-01-15T08:10:00Z); 3 renewal(s)\n"),
            "{text}"
        );
        let renewed = text.find("Renewed").unwrap();
        assert!(renewed < text.find("Created").unwrap(), "newest Event first: {text}");
        assert!(!text.contains("To do"), "{text}");
        assert_eq!(
            render_status(&s, &events, now, 1).matches("ago").count(),
            1,
            "at most N Events"
        );
    }

    #[test]
    fn events_are_grouped_by_the_subscription_they_regard() {
        let about = |ns: &str, name: &str, kind: &str| Event {
            regarding: Some(k8s_openapi::api::core::v1::ObjectReference {
                kind: Some(kind.into()),
                namespace: Some(ns.into()),
                name: Some(name.into()),
                ..Default::default()
            }),
            ..event(0, "Created", "created")
        };
        let grouped = by_subscription(vec![
            about("a", "s1", "WebhookSubscription"),
            about("a", "s1", "WebhookSubscription"),
            about("b", "s1", "WebhookSubscription"),
            about("a", "s1", "Secret"),
        ]);
        assert_eq!(grouped[&("a".to_string(), "s1".to_string())].len(), 2);
        assert_eq!(
            grouped[&("b".to_string(), "s1".to_string())].len(),
            1,
            "namespaces kept apart"
        );
        assert_eq!(grouped.len(), 2, "other kinds left out");
    }

    #[test]
    fn a_failing_subscription_says_what_to_do() {
        let s = sub(json!({
            "observedGeneration": 1, "failedAttempts": 2, "lastFailureTime": "2027-01-15T07:59:00Z",
            "conditions": [
                {"type": "Ready", "status": "False", "reason": "InvalidSpec", "message": "Secret team-a/avaya-token has no key token", "lastTransitionTime": "2027-01-15T07:59:00Z"},
                {"type": "Synced", "status": "False", "reason": "InvalidSpec", "message": "Secret team-a/avaya-token has no key token", "lastTransitionTime": "2027-01-15T07:59:00Z"}
            ]
        }));
        let text = render_status(&s, &[], "2027-01-15T08:00:00Z".parse().unwrap(), 5);
        assert!(
            text.contains("Ready:    False  InvalidSpec: Secret team-a/avaya-token has no key token"),
            "{text}"
        );
        assert!(text.contains("generation 2 not observed yet"), "{text}");
        assert!(text.contains("Remote:   none yet"), "{text}");
        assert!(text.contains("Failures: 2 in a row, last 1m ago"), "{text}");
        assert_eq!(
            text.matches("To do (InvalidSpec): fix the spec or Secret").count(),
            1,
            "once: {text}"
        );
    }
}
