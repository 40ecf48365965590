//! The controller: observe → pure plan → act → report, for `WebhookSubscription`s, plus the `Ready`
//! condition of `WebhookProvider`s and `ClusterWebhookProvider`s.
//!
//! A reconcile reads the provider, credentials and referenced Secrets (`observe`), decides what to read
//! and change (`plan`, pure), runs the change through the provider trait, and reports one status write
//! (only when it differs) and one Event per real transition.

pub mod error;
pub mod leader;
pub mod observe;
pub mod plan;
pub mod status;

use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::StreamExt;
use jiff::Timestamp;
use k8s_openapi::api::core::v1::Secret;
use kube::api::{Api, Patch, PatchParams};
use kube::runtime::controller::{Action as Requeue, Controller};
use kube::runtime::events::{Event, EventType, Recorder, Reporter};
use kube::runtime::finalizer::{Event as Finalizer, finalizer};
use kube::runtime::reflector::ObjectRef;
use kube::runtime::watcher;
use kube::{Resource, ResourceExt};
use secrecy::SecretString;
use serde_json::json;

use crate::api::{
    ClusterWebhookProvider, DeletionPolicy, FINALIZER, ProviderKind, WebhookProvider, WebhookProviderStatus,
    WebhookSubscription, WebhookSubscriptionStatus, condition,
};
use crate::clock::SharedClock;
use crate::providers::http::{RetryPolicy, http_client};
use crate::providers::{Desired, DesiredSpec, ErrorKind, Field, Remote, WebhookApi};
use error::{ReconcileError, Retry, backoff};
use observe::{MANAGER, ProviderRegistry, ProviderSettings};
use plan::{Action, Annotations, Facts, Lookup, Observation, RenewReason, annotation};
use status::{condition_state, format_time, set_condition};

/// Operator settings.
#[derive(Clone, Debug)]
pub struct Config {
    /// Where ClusterWebhookProviders' Secrets live (the operator's namespace).
    pub operator_namespace: String,
    /// How often an up-to-date subscription is compared with the provider.
    pub drift_interval: Duration,
    /// How often providers' credentials are checked.
    pub provider_check_interval: Duration,
    /// The clock expiry logic reads.
    pub clock: SharedClock,
    /// Provider call retries.
    pub retry: RetryPolicy,
    /// The `reportingInstance` of Events.
    pub instance: String,
}

impl Config {
    /// Defaults: drift checks every 10 minutes, provider checks every 5.
    pub fn new(operator_namespace: &str, clock: SharedClock) -> Self {
        Config {
            operator_namespace: operator_namespace.to_string(),
            drift_interval: Duration::from_secs(600),
            provider_check_interval: Duration::from_secs(300),
            clock,
            retry: RetryPolicy::default(),
            instance: std::env::var("POD_NAME").unwrap_or_else(|_| "webhook-operator".into()),
        }
    }
}

/// Why a subscription is held back from retrying: the inputs it failed with, and until when.
#[derive(Clone, Debug)]
struct Gate {
    inputs: String,
    until: Option<Timestamp>,
    failures: u32,
}

/// Shared by every reconcile.
pub struct Context {
    client: kube::Client,
    config: Config,
    registry: ProviderRegistry,
    recorder: Recorder,
    last_remote_check: Mutex<HashMap<String, Timestamp>>,
    gates: Mutex<HashMap<String, Gate>>,
    /// The status last written per subscription: the watch cache can lag behind our own write, and a
    /// stale status would make the next pass redo what was just done.
    written: Mutex<HashMap<String, WebhookSubscriptionStatus>>,
}

impl Context {
    /// A context on `client`.
    pub fn new(client: kube::Client, config: Config) -> Arc<Self> {
        let reporter = Reporter {
            controller: MANAGER.into(),
            instance: Some(config.instance.clone()),
        };
        Arc::new(Context {
            recorder: Recorder::new(client.clone(), reporter),
            registry: ProviderRegistry::new(http_client(config.retry.timeout), config.clock.clone(), config.retry),
            client,
            config,
            last_remote_check: Mutex::new(HashMap::new()),
            gates: Mutex::new(HashMap::new()),
            written: Mutex::new(HashMap::new()),
        })
    }

    /// The account's client, with the fingerprint of the credentials it was built from.
    async fn connect(&self, settings: &ProviderSettings) -> Result<(Arc<dyn WebhookApi>, String), ReconcileError> {
        let (client_id, secret) = observe::credentials(&self.client, settings).await?;
        let api = self.registry.client(settings, &client_id, &secret)?;
        Ok((api, crate::providers::fingerprint(&secret)))
    }

    async fn event(&self, sub: &WebhookSubscription, type_: EventType, reason: &str, note: String) {
        let event = Event {
            type_,
            reason: reason.into(),
            note: Some(note),
            action: reason.into(),
            secondary: None,
        };
        if let Err(e) = self.recorder.publish(&event, &sub.object_ref(&())).await {
            tracing::warn!(error = %e, "could not publish an Event");
        }
    }
}

/// The error the controller's error policy sees: only Kubernetes API failures (provider errors are
/// reported in status and requeued by the reconcile itself).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct ControllerError(String);

/// What one pass changed, for status and Events.
struct Applied {
    id: String,
    remote: Option<Remote>,
    renewed: bool,
    changed: bool,
}

fn provider_ref_display(sub: &WebhookSubscription) -> String {
    let kind = match sub.spec.provider_ref.kind {
        ProviderKind::WebhookProvider => "WebhookProvider",
        ProviderKind::ClusterWebhookProvider => "ClusterWebhookProvider",
    };
    format!("{kind} \"{}\"", sub.spec.provider_ref.name)
}

/// Reconciles one subscription (the finalizer protects remote cleanup).
pub async fn reconcile(sub: Arc<WebhookSubscription>, ctx: Arc<Context>) -> Result<Requeue, ControllerError> {
    let started = std::time::Instant::now();
    let ns = sub.namespace().unwrap_or_default();
    let api: Api<WebhookSubscription> = Api::namespaced(ctx.client.clone(), &ns);
    let result = finalizer(&api, FINALIZER, sub, |event| async {
        match event {
            Finalizer::Apply(sub) => apply(&sub, &ctx).await,
            Finalizer::Cleanup(sub) => {
                crate::telemetry::subscription(&sub.namespace().unwrap_or_default(), &sub.name_any(), None);
                ctx.written.lock().expect("written").remove(&observe::uid_of(&*sub));
                cleanup(&sub, &ctx).await
            }
        }
    })
    .await
    .map_err(|e| ControllerError(e.to_string()));
    crate::telemetry::reconcile(started.elapsed(), result.as_ref().err().map(|_| "KubernetesError"));
    result
}

/// Requeues after a Kubernetes API failure.
pub fn error_policy(_sub: Arc<WebhookSubscription>, error: &ControllerError, _ctx: Arc<Context>) -> Requeue {
    tracing::warn!(error = %error, "reconcile failed");
    Requeue::requeue(backoff(3))
}

/// A fingerprint of what a retry would use: a change lets a held-back subscription try at once.
fn inputs_of(sub: &WebhookSubscription, desired_hash: Option<&str>, provider: &str) -> String {
    format!(
        "{}|{}|{}|{}|{}",
        sub.meta().generation.unwrap_or(0),
        desired_hash.unwrap_or(""),
        provider,
        sub.annotations()
            .get(annotation::RECONCILE_REQUESTED_AT)
            .map(String::as_str)
            .unwrap_or(""),
        sub.annotations()
            .get(annotation::EXTERNAL_ID)
            .map(String::as_str)
            .unwrap_or(""),
    )
}

async fn apply(sub: &WebhookSubscription, ctx: &Context) -> Result<Requeue, ReconcileError> {
    let now = ctx.config.clock.now();
    let uid = observe::uid_of(sub);
    let annotations = Annotations::parse(sub.annotations());
    let current = ctx
        .written
        .lock()
        .expect("written")
        .get(&uid)
        .cloned()
        .unwrap_or_else(|| sub.status.clone().unwrap_or_default());
    let generation = sub.meta().generation.unwrap_or(0);
    if annotations.paused {
        let mut next = current.clone();
        set_condition(
            &mut next.conditions,
            condition::SYNCED,
            false,
            "ReconcilePaused",
            "paused by the webhook-operator.dev/paused annotation: no remote writes until it is removed (deletion still runs)",
            generation,
            now,
        );
        report(sub, ctx, &current, next).await?;
        return Ok(Requeue::await_change());
    }

    let result = converge(sub, ctx, &annotations, &current, now, &uid).await;
    let mut next = current.clone();
    match result {
        Ok(Converged::Held(wait)) => {
            return Ok(wait.map_or_else(Requeue::await_change, |w| {
                Requeue::requeue(w.max(Duration::from_millis(100)))
            }));
        }
        Ok(Converged::Applied(done)) => {
            let (applied, desired, facts) = *done;
            ctx.gates.lock().expect("gates").remove(&uid);
            next.observed_generation = Some(generation);
            next.subscription_id = Some(applied.id.clone());
            next.applied_secret_hash = desired.secret_hash();
            next.last_handled_reconcile_at = annotations.reconcile_requested.clone();
            next.last_handled_renew_at = annotations.renew_requested.clone();
            next.failed_attempts = None;
            if let Some(remote) = &applied.remote {
                next.remote_state = Some(remote.state.clone());
                next.expires_at = remote.expires_at.map(format_time);
                next.renewal_time = remote
                    .expires_at
                    .map(|exp| plan::renewal_time(now, exp, sub.spec.renewal.as_ref(), &facts.uid))
                    .map(format_time);
            }
            if applied.renewed {
                next.last_renewed_at = Some(format_time(now));
                next.renewal_count = Some(next.renewal_count.unwrap_or(0) + 1);
            }
            let state = next.remote_state.clone().unwrap_or_default();
            let (ready, reason, message) = if state == "INACTIVE" {
                (
                    false,
                    "Expired",
                    format!("subscription {} is INACTIVE at the provider", applied.id),
                )
            } else if state == "PENDING" {
                (
                    false,
                    "Creating",
                    format!("subscription {} is PENDING at the provider", applied.id),
                )
            } else {
                (true, "Available", format!("subscription {} is {state}", applied.id))
            };
            set_condition(
                &mut next.conditions,
                condition::READY,
                ready,
                reason,
                &message,
                generation,
                now,
            );
            let synced = if applied.changed {
                "the provider was brought in line with the spec"
            } else {
                "the provider matches the spec"
            };
            set_condition(
                &mut next.conditions,
                condition::SYNCED,
                true,
                "ReconcileSuccess",
                synced,
                generation,
                now,
            );
        }
        Ok(Converged::UpToDate) => {
            // Nothing read, nothing written.
            ctx.gates.lock().expect("gates").remove(&uid);
        }
        Err((error, inputs)) => {
            let (failures, wait) = {
                let mut gates = ctx.gates.lock().expect("gates");
                let failures = gates.get(&uid).map(|g| g.failures).unwrap_or(0) + 1;
                let wait = match error.retry() {
                    Retry::OnChange => None,
                    Retry::After(d) => Some(d),
                    Retry::Backoff => Some(backoff(failures)),
                };
                let until = wait.map(|w| now + jiff::SignedDuration::try_from(w).unwrap_or_default());
                gates.insert(
                    uid.clone(),
                    Gate {
                        inputs,
                        until,
                        failures,
                    },
                );
                (failures, wait)
            };
            tracing::info!(subscription = %sub.name_any(), reason = error.synced_reason(), error = %error, "reconcile failed");
            crate::telemetry::reconcile_error(error.synced_reason_or_ready());
            // Transient trouble leaves a working subscription Ready; anything that needs a fix does not.
            let keeps_ready = matches!(&error, ReconcileError::Provider(p) if matches!(p.kind, ErrorKind::Transient | ErrorKind::RateLimited))
                || matches!(error, ReconcileError::Kube(_));
            if !keeps_ready || condition_state(&next.conditions, condition::READY).is_none() {
                set_condition(
                    &mut next.conditions,
                    condition::READY,
                    false,
                    error.ready_reason(),
                    &error.to_string(),
                    generation,
                    now,
                );
            }
            set_condition(
                &mut next.conditions,
                condition::SYNCED,
                false,
                error.synced_reason(),
                &error.to_string(),
                generation,
                now,
            );
            if matches!(error, ReconcileError::Provider(_) | ReconcileError::Kube(_)) {
                next.failed_attempts = Some(i32::try_from(failures).unwrap_or(i32::MAX));
                next.last_failure_time = Some(format_time(now));
            }
            if matches!(error, ReconcileError::Config(_) | ReconcileError::Blocked { .. })
                || (matches!(&error, ReconcileError::Provider(p) if p.kind == ErrorKind::Invalid))
            {
                next.observed_generation = Some(generation);
            }
            let changed = condition_state(&current.conditions, condition::SYNCED)
                != condition_state(&next.conditions, condition::SYNCED)
                || condition_state(&current.conditions, condition::READY)
                    != condition_state(&next.conditions, condition::READY);
            if changed {
                ctx.event(
                    sub,
                    EventType::Warning,
                    error.synced_reason_or_ready(),
                    error.to_string(),
                )
                .await;
            }
            report(sub, ctx, &current, next).await?;
            return Ok(wait.map_or_else(Requeue::await_change, Requeue::requeue));
        }
    }
    let ready_before = condition_state(&current.conditions, condition::READY);
    let ready_after = condition_state(&next.conditions, condition::READY);
    if ready_before != ready_after
        && let Some((status, reason)) = &ready_after
    {
        let note = next
            .conditions
            .iter()
            .find(|c| c.type_ == condition::READY)
            .map(|c| c.message.clone())
            .unwrap_or_default();
        let type_ = if status == "True" {
            EventType::Normal
        } else {
            EventType::Warning
        };
        ctx.event(sub, type_, reason, note).await;
    }
    report(sub, ctx, &current, next.clone()).await?;
    Ok(Requeue::requeue(next_wake(
        &next,
        now,
        drift_interval(ctx, &annotations),
    )))
}

impl ReconcileError {
    fn synced_reason_or_ready(&self) -> &'static str {
        match self.synced_reason() {
            "ReconcileError" => self.ready_reason(),
            other => other,
        }
    }
}

fn drift_interval(ctx: &Context, annotations: &Annotations) -> Duration {
    annotations.drift_check_interval.unwrap_or(ctx.config.drift_interval)
}

/// The next time to look: the renewal time or the next drift check, whichever comes first.
fn next_wake(status: &WebhookSubscriptionStatus, now: Timestamp, drift: Duration) -> Duration {
    let renewal = status
        .renewal_time
        .as_deref()
        .and_then(|t| t.parse::<Timestamp>().ok())
        .map(|t| Duration::try_from(t.duration_since(now)).unwrap_or(Duration::ZERO));
    renewal.map_or(drift, |r| r.min(drift)).max(Duration::from_millis(200))
}

/// Writes status by server-side apply, only when it changed; keeps the subscription's gauges current.
async fn report(
    sub: &WebhookSubscription,
    ctx: &Context,
    current: &WebhookSubscriptionStatus,
    next: WebhookSubscriptionStatus,
) -> Result<(), kube::Error> {
    let epoch = |t: &Option<String>| {
        t.as_deref()
            .and_then(|t| t.parse::<Timestamp>().ok())
            .map(|t| t.as_second() as f64)
    };
    crate::telemetry::subscription(
        &sub.namespace().unwrap_or_default(),
        &sub.name_any(),
        Some(crate::telemetry::SubscriptionGauges {
            provider: observe::block_type(sub).as_str().to_string(),
            ready: condition_state(&next.conditions, condition::READY).map_or_else(|| "Unknown".into(), |c| c.0),
            expiration: epoch(&next.expires_at),
            renewal: epoch(&next.renewal_time),
        }),
    );
    if *current == next {
        return Ok(());
    }
    let api: Api<WebhookSubscription> = Api::namespaced(ctx.client.clone(), &sub.namespace().unwrap_or_default());
    let body = json!({
        "apiVersion": WebhookSubscription::api_version(&()),
        "kind": WebhookSubscription::kind(&()),
        "status": next,
    });
    api.patch_status(
        &sub.name_any(),
        &PatchParams::apply(MANAGER).force(),
        &Patch::Apply(&body),
    )
    .await?;
    ctx.written.lock().expect("written").insert(observe::uid_of(sub), next);
    Ok(())
}

async fn annotate(sub: &WebhookSubscription, ctx: &Context, values: serde_json::Value) -> Result<(), kube::Error> {
    let api: Api<WebhookSubscription> = Api::namespaced(ctx.client.clone(), &sub.namespace().unwrap_or_default());
    api.patch(
        &sub.name_any(),
        &PatchParams::default(),
        &Patch::Merge(json!({"metadata": {"annotations": values}})),
    )
    .await?;
    Ok(())
}

/// How a pass ended when it did not fail.
enum Converged {
    /// Up to date: nothing read, nothing to record.
    UpToDate,
    /// Held back after a failure with the same inputs: look again then (None: only on a change).
    Held(Option<Duration>),
    /// Something was read or changed.
    Applied(Box<(Applied, Desired, Facts)>),
}

/// Observe, plan, act. `Ok(None)`: up to date, nothing to record. Errors carry the inputs they failed with.
async fn converge(
    sub: &WebhookSubscription,
    ctx: &Context,
    annotations: &Annotations,
    current: &WebhookSubscriptionStatus,
    now: Timestamp,
    uid: &str,
) -> Result<Converged, (ReconcileError, String)> {
    let fallback_inputs = inputs_of(sub, None, "");
    let settings = observe::resolve_provider(&ctx.client, sub, &ctx.config.operator_namespace)
        .await
        .map_err(|e| (e, fallback_inputs.clone()))?;
    let (api, credentials) = ctx.connect(&settings).await.map_err(|e| (e, fallback_inputs.clone()))?;
    let desired = observe::desired(&ctx.client, sub, api.provider(), &settings.display)
        .await
        .map_err(|e| (e, fallback_inputs.clone()))?;
    let secret_hash = desired.secret_hash();
    let provider_identity = format!("{}|{credentials}", settings.key);
    let inputs = inputs_of(sub, secret_hash.as_deref(), &provider_identity);

    // A subscription held back after a failure stays quiet until its inputs change or its time comes.
    if let Some(gate) = ctx.gates.lock().expect("gates").get(uid)
        && gate.inputs == inputs
        && gate.until.is_none_or(|until| now < until)
    {
        let wait = gate
            .until
            .map(|until| Duration::try_from(until.duration_since(now)).unwrap_or(Duration::ZERO));
        return Ok(Converged::Held(wait));
    }

    let facts = Facts {
        now,
        generation: sub.meta().generation.unwrap_or(0),
        uid: uid.to_string(),
        status: current.clone(),
        annotations: annotations.clone(),
        adoption: sub.spec.adoption_policy,
        secret_hash,
        last_remote_check: ctx.last_remote_check.lock().expect("checks").get(uid).copied(),
        drift_interval: drift_interval(ctx, annotations),
    };
    let fail = |e: ReconcileError| (e, inputs.clone());
    let observation = match plan::lookup(&facts) {
        Lookup::Nothing => return Ok(Converged::UpToDate),
        Lookup::Get(id) => {
            tracing::debug!(subscription = %sub.name_any(), reason = facts.remote_check_reason(), "reading the remote subscription");
            match api.get(&id).await {
                Ok(remote) => Observation::Found(remote),
                Err(e) if e.is_not_found() => Observation::Gone,
                Err(e) => return Err(fail(e.into())),
            }
        }
        Lookup::Find(search) => {
            Observation::Matches(search, api.find_matches(&desired).await.map_err(|e| fail(e.into()))?)
        }
    };
    ctx.last_remote_check
        .lock()
        .expect("checks")
        .insert(uid.to_string(), now);
    let action = plan::decide(&facts, &desired, observation);
    let applied = act(sub, ctx, api.as_ref(), &facts, &desired, action)
        .await
        .map_err(fail)?;
    Ok(Converged::Applied(Box::new((applied, desired, facts))))
}

fn field_names(fields: &BTreeSet<Field>) -> String {
    fields.iter().map(|f| format!("{f:?}")).collect::<Vec<_>>().join(", ")
}

/// Runs a plan's action through the provider.
async fn act(
    sub: &WebhookSubscription,
    ctx: &Context,
    api: &dyn WebhookApi,
    facts: &Facts,
    desired: &Desired,
    action: Action,
) -> Result<Applied, ReconcileError> {
    let provider = api.provider().as_str();
    match action {
        Action::Nothing(remote) => Ok(Applied {
            id: facts.known_id().unwrap_or_default().to_string(),
            remote,
            renewed: false,
            changed: false,
        }),
        Action::Blocked { reason, message } => Err(ReconcileError::Blocked { reason, message }),
        Action::Create | Action::Recreate => {
            if matches!(action, Action::Recreate) {
                ctx.event(
                    sub,
                    EventType::Warning,
                    "RemoteDeleted",
                    format!(
                        "{provider} subscription {} was deleted outside the operator; creating a new one",
                        facts.known_id().unwrap_or_default()
                    ),
                )
                .await;
            }
            // Recorded before the call: if the id is lost after it, the next pass looks the remote side up.
            annotate(
                sub,
                ctx,
                json!({annotation::CREATE_PENDING: format_time(facts.now), annotation::EXTERNAL_ID: null}),
            )
            .await?;
            let created = api.create(desired).await?;
            annotate(
                sub,
                ctx,
                json!({annotation::EXTERNAL_ID: created.id, annotation::CREATE_PENDING: null}),
            )
            .await?;
            if let Some(secret) = &created.generated_secret {
                keep_generated_secret(sub, ctx, secret).await?;
            }
            ctx.event(
                sub,
                EventType::Normal,
                "Created",
                format!("created {provider} subscription {}", created.id),
            )
            .await;
            Ok(Applied {
                id: created.id.clone(),
                remote: Some(created),
                renewed: false,
                changed: true,
            })
        }
        Action::Adopt(remote) => {
            annotate(
                sub,
                ctx,
                json!({annotation::EXTERNAL_ID: remote.id, annotation::CREATE_PENDING: null}),
            )
            .await?;
            ctx.event(
                sub,
                EventType::Normal,
                "Adopted",
                format!("adopted existing {provider} subscription {}", remote.id),
            )
            .await;
            // The adopted subscription's secrets are unknown: treat them as changed.
            let mut adopted_facts = facts.clone();
            adopted_facts.status.applied_secret_hash = None;
            let id = remote.id.clone();
            let next = plan::converge(&adopted_facts, desired, remote);
            let mut applied = Box::pin(act(sub, ctx, api, &adopted_facts, desired, next)).await?;
            applied.id = id;
            applied.changed = true;
            Ok(applied)
        }
        Action::Converge { remote, update, renew } => {
            let id = remote.id.clone();
            let mut latest = remote;
            if !update.is_empty() {
                latest = api.update(&id, desired, &update).await?;
                ctx.event(
                    sub,
                    EventType::Normal,
                    "Updated",
                    format!("updated {provider} subscription {id}: {}", field_names(&update)),
                )
                .await;
            }
            let mut renewed = false;
            if let Some(reason) = renew {
                let token: Option<&SecretString> = match (&desired.spec, reason) {
                    (DesiredSpec::Avaya(a), RenewReason::Rotation) => a.auth_token.as_ref(),
                    _ => None,
                };
                latest = api.renew(&id, token).await?;
                renewed = true;
                let (event_reason, note) = match reason {
                    RenewReason::Rotation => (
                        "Rotated",
                        format!("renewed {provider} subscription {id} with the new token"),
                    ),
                    RenewReason::Reactivate => (
                        "Reactivated",
                        format!("{provider} subscription {id} was INACTIVE; renewed it"),
                    ),
                    RenewReason::Requested => ("Renewed", format!("renewed {provider} subscription {id} on request")),
                    RenewReason::Due => (
                        "Renewed",
                        format!("renewed {provider} subscription {id} before it expires"),
                    ),
                };
                ctx.event(sub, EventType::Normal, event_reason, note).await;
            }
            Ok(Applied {
                id,
                remote: Some(latest),
                renewed,
                changed: true,
            })
        }
    }
}

/// Vonage returns a secret it generated once, at create: keep it in a Secret owned by the subscription.
async fn keep_generated_secret(
    sub: &WebhookSubscription,
    ctx: &Context,
    secret: &SecretString,
) -> Result<(), kube::Error> {
    let name = observe::vonage_secret_name(sub);
    observe::store_secret(
        &ctx.client,
        sub,
        &name,
        "secret",
        secrecy::ExposeSecret::expose_secret(secret),
    )
    .await?;
    ctx.event(
        sub,
        EventType::Normal,
        "SecretStored",
        format!("Vonage generated the signing secret; stored it in Secret {name}, key secret (set spec.vonage.signingSecret to manage it yourself)"),
    )
    .await;
    Ok(())
}

async fn cleanup(sub: &WebhookSubscription, ctx: &Context) -> Result<Requeue, ReconcileError> {
    let annotations = Annotations::parse(sub.annotations());
    let id = annotations
        .external_id
        .clone()
        .or_else(|| sub.status.as_ref().and_then(|s| s.subscription_id.clone()));
    if sub.spec.deletion_policy == DeletionPolicy::Orphan {
        if let Some(id) = &id {
            ctx.event(
                sub,
                EventType::Normal,
                "Orphaned",
                format!("deletionPolicy is Orphan: remote subscription {id} is kept"),
            )
            .await;
        }
        return Ok(Requeue::await_change());
    }
    if id.is_none() && annotations.create_pending.is_none() {
        return Ok(Requeue::await_change());
    }
    let resolved = async {
        let settings = observe::resolve_provider(&ctx.client, sub, &ctx.config.operator_namespace).await?;
        let (api, _) = ctx.connect(&settings).await?;
        Ok::<_, ReconcileError>((api, settings))
    }
    .await;
    let (api, settings) = match resolved {
        Ok(r) => r,
        Err(ReconcileError::Config(e)) => {
            ctx.event(
                sub,
                EventType::Warning,
                "ProviderUnavailable",
                format!(
                    "cannot reach {} to delete remote subscription {}: {e}; it may remain at the provider, delete it there",
                    provider_ref_display(sub),
                    id.as_deref().unwrap_or("(unknown id)")
                ),
            )
            .await;
            return Ok(Requeue::await_change());
        }
        Err(e) => return Err(e),
    };
    let target = match id {
        Some(id) => Some(id),
        None => {
            // A create may have leaked: delete its single match, never anything ambiguous.
            let desired = observe::desired(&ctx.client, sub, api.provider(), &settings.display).await?;
            let matches = api.find_matches(&desired).await?;
            match matches.as_slice() {
                [only] => Some(only.id.clone()),
                [] => None,
                many => {
                    ctx.event(
                        sub,
                        EventType::Warning,
                        "AdoptionAmbiguous",
                        format!(
                            "{} remote subscriptions match; none deleted, delete the leaked one at the provider",
                            many.len()
                        ),
                    )
                    .await;
                    None
                }
            }
        }
    };
    if let Some(id) = target {
        match api.delete(&id).await {
            Ok(()) => {}
            Err(e) if e.is_not_found() => {}
            Err(e) => {
                ctx.event(sub, EventType::Warning, "DeleteFailed", e.to_string()).await;
                return Err(e.into());
            }
        }
        ctx.event(
            sub,
            EventType::Normal,
            "Deleted",
            format!("deleted {} subscription {id}", api.provider().as_str()),
        )
        .await;
    }
    Ok(Requeue::await_change())
}

/// Checks a provider's credentials; returns its next status.
async fn provider_status(
    ctx: &Context,
    settings: &ProviderSettings,
    generation: i64,
    current: &WebhookProviderStatus,
) -> WebhookProviderStatus {
    let now = ctx.config.clock.now();
    let outcome = async {
        let (api, _) = ctx.connect(settings).await?;
        api.check_credentials().await?;
        Ok::<_, ReconcileError>(api.provider())
    }
    .await;
    let mut next = current.clone();
    next.observed_generation = Some(generation);
    match outcome {
        Ok(provider) => set_condition(
            &mut next.conditions,
            condition::READY,
            true,
            "CredentialsValid",
            &format!("obtained an access token from {}", provider.as_str()),
            generation,
            now,
        ),
        Err(e) => {
            let reason = match &e {
                ReconcileError::Config(_) => "CredentialsMissing",
                ReconcileError::Provider(p) if matches!(p.kind, ErrorKind::Unauthorized | ErrorKind::Forbidden) => {
                    "Unauthorized"
                }
                _ => "Unreachable",
            };
            set_condition(
                &mut next.conditions,
                condition::READY,
                false,
                reason,
                &e.to_string(),
                generation,
                now,
            );
        }
    }
    next
}

/// Writes a provider's status by server-side apply when it changed; the next check is a period away.
async fn update_provider_status<K>(
    api: Api<K>,
    provider: &K,
    current: &WebhookProviderStatus,
    next: WebhookProviderStatus,
    ctx: &Context,
) -> Result<Requeue, ControllerError>
where
    K: Resource<DynamicType = ()> + Clone + serde::de::DeserializeOwned + std::fmt::Debug,
{
    if next != *current {
        let body = json!({"apiVersion": K::api_version(&()), "kind": K::kind(&()), "status": next});
        api.patch_status(
            &provider.meta().name.clone().unwrap_or_default(),
            &PatchParams::apply(MANAGER).force(),
            &Patch::Apply(&body),
        )
        .await
        .map_err(|e| ControllerError(e.to_string()))?;
    }
    Ok(Requeue::requeue(ctx.config.provider_check_interval))
}

/// Reconciles a namespaced provider's `Ready`.
pub async fn reconcile_provider(p: Arc<WebhookProvider>, ctx: Arc<Context>) -> Result<Requeue, ControllerError> {
    let current = p.status.clone().unwrap_or_default();
    let settings = ProviderSettings::namespaced(&p);
    let next = provider_status(&ctx, &settings, p.meta().generation.unwrap_or(0), &current).await;
    let api: Api<WebhookProvider> = Api::namespaced(ctx.client.clone(), &p.namespace().unwrap_or_default());
    update_provider_status(api, &*p, &current, next, &ctx).await
}

/// Reconciles a cluster provider's `Ready`.
pub async fn reconcile_cluster_provider(
    p: Arc<ClusterWebhookProvider>,
    ctx: Arc<Context>,
) -> Result<Requeue, ControllerError> {
    let current = p.status.clone().unwrap_or_default();
    let settings = ProviderSettings::cluster(&p, &ctx.config.operator_namespace);
    let next = provider_status(&ctx, &settings, p.meta().generation.unwrap_or(0), &current).await;
    update_provider_status(Api::all(ctx.client.clone()), &*p, &current, next, &ctx).await
}

fn provider_error_policy<K>(_p: Arc<K>, error: &ControllerError, _ctx: Arc<Context>) -> Requeue {
    tracing::warn!(error = %error, "provider status update failed");
    Requeue::requeue(Duration::from_secs(10))
}

/// Runs the controllers until `shutdown` resolves.
pub async fn run(
    client: kube::Client,
    config: Config,
    shutdown: impl std::future::Future<Output = ()> + Send + Sync + 'static,
) {
    let ctx = Context::new(client.clone(), config.clone());
    let wc = watcher::Config::default();
    let subs: Api<WebhookSubscription> = Api::all(client.clone());
    let controller = Controller::new(subs, wc.clone());
    let store = controller.store();
    let provider_controller = Controller::new(Api::<WebhookProvider>::all(client.clone()), wc.clone());
    let cluster_provider_controller = Controller::new(Api::<ClusterWebhookProvider>::all(client.clone()), wc.clone());
    let (provider_store, cluster_provider_store) = (provider_controller.store(), cluster_provider_controller.store());
    let (by_provider, by_cluster_provider, by_secret) = (store.clone(), store.clone(), store);
    let operator_namespace = config.operator_namespace.clone();
    let readiness = controller.store();
    tokio::spawn(async move {
        // kube-runtime's readiness signal wakes only its most recent waiter (the Controller also waits on
        // it), so poll again until the value is memoized.
        loop {
            match tokio::time::timeout(Duration::from_millis(500), readiness.wait_until_ready()).await {
                Ok(Ok(())) => {
                    tracing::info!("subscription cache synced; ready");
                    crate::telemetry::health().set_ready();
                    return;
                }
                Ok(Err(_)) => return,
                Err(_) => {}
            }
        }
    });
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let stopped = |mut rx: tokio::sync::watch::Receiver<bool>| async move {
        let _ = rx.wait_for(|s| *s).await;
    };
    let subscriptions = controller
        .watches(
            Api::<WebhookProvider>::all(client.clone()),
            wc.clone(),
            move |p: WebhookProvider| {
                let ns = p.namespace().unwrap_or_default();
                by_provider
                    .state()
                    .into_iter()
                    .filter(|s| {
                        s.namespace().as_deref() == Some(&ns)
                            && s.spec.provider_ref.kind == ProviderKind::WebhookProvider
                            && s.spec.provider_ref.name == p.name_any()
                    })
                    .map(|s| ObjectRef::from_obj(&*s))
                    .collect::<Vec<_>>()
            },
        )
        .watches(
            Api::<ClusterWebhookProvider>::all(client.clone()),
            wc.clone(),
            move |p: ClusterWebhookProvider| {
                by_cluster_provider
                    .state()
                    .into_iter()
                    .filter(|s| {
                        s.spec.provider_ref.kind == ProviderKind::ClusterWebhookProvider
                            && s.spec.provider_ref.name == p.name_any()
                    })
                    .map(|s| ObjectRef::from_obj(&*s))
                    .collect::<Vec<_>>()
            },
        )
        .watches(Api::<Secret>::all(client.clone()), wc.clone(), move |secret: Secret| {
            let ns = secret.namespace().unwrap_or_default();
            let name = secret.name_any();
            // Referenced by the subscription itself, or the credentials of a provider it uses.
            by_secret
                .state()
                .into_iter()
                .filter(|s| {
                    let same_ns = s.namespace().as_deref() == Some(&ns);
                    let provider = &s.spec.provider_ref.name;
                    let credentials = match s.spec.provider_ref.kind {
                        ProviderKind::WebhookProvider if same_ns => provider_store
                            .get(&ObjectRef::new(provider).within(&ns))
                            .map(|p| p.spec.credentials_secret_ref.name.clone()),
                        ProviderKind::ClusterWebhookProvider if ns == operator_namespace => cluster_provider_store
                            .get(&ObjectRef::new(provider))
                            .map(|p| p.spec.credentials_secret_ref.name.clone()),
                        _ => None,
                    };
                    credentials.as_deref() == Some(name.as_str())
                        || (same_ns && observe::referenced_secrets(s).contains(&name))
                })
                .map(|s| ObjectRef::from_obj(&*s))
                .collect::<Vec<_>>()
        })
        .graceful_shutdown_on(stopped(stop_rx.clone()))
        .run(reconcile, error_policy, ctx.clone())
        .for_each(|result| async move {
            if let Err(e) = result {
                tracing::debug!(error = %e, "subscription controller");
            }
        });
    let providers = provider_controller
        .graceful_shutdown_on(stopped(stop_rx.clone()))
        .run(reconcile_provider, provider_error_policy, ctx.clone())
        .for_each(|_| async {});
    let cluster_providers = cluster_provider_controller
        .graceful_shutdown_on(stopped(stop_rx))
        .run(reconcile_cluster_provider, provider_error_policy, ctx)
        .for_each(|_| async {});
    tokio::spawn(async move {
        shutdown.await;
        let _ = stop_tx.send(true);
    });
    futures::join!(subscriptions, providers, cluster_providers);
}

/// Ctrl-C, or SIGTERM (what Kubernetes sends a pod).
pub async fn shutdown_signal() {
    #[cfg(unix)]
    {
        if let Ok(mut term) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = term.recv() => {}
            }
            return;
        }
    }
    let _ = tokio::signal::ctrl_c().await;
}
