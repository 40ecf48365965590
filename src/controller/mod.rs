//! The controller. One pass over a `WebhookSubscription` reads top to bottom in [`reconcile`]:
//!
//! 1. **observe** (`observe.rs`): the provider object, its credentials, the Secrets the spec references
//!    (through the provider's binding in `bindings/`), and later the remote subscription when the plan
//!    asks for it. Reads only.
//! 2. **plan** (`plan/`, pure): is the object held back after a failure, what to read, and what to
//!    change: create, adopt, update, renew, recreate, or nothing; on deletion: delete, orphan, or look
//!    for a leaked create.
//! 3. **act** (`act.rs`): carries the plan out through the provider trait and the Kubernetes API, and
//!    records each step done.
//! 4. **report** (`report/`, pure): turns the current status, the facts and the outcome into the next
//!    status, the Events, the retry gate and when to look again. [`record`] then writes them.
//!
//! Around it: `context.rs` (settings, clients, per-object state), `watch.rs` (what wakes a subscription),
//! `provider_status.rs` (the providers' own `Ready`), `reason.rs` and `error.rs` (every reason, every
//! error with its retry policy), `leader.rs` (leader election).

pub mod accounts;
pub mod act;
pub mod bindings;
pub mod cache;
pub mod claims;
pub mod context;
pub mod endpoints;
pub mod error;
pub mod events;
pub mod inventory;
pub mod leader;
pub mod observe;
pub mod plan;
pub mod provider_status;
pub mod reason;
pub mod report;
pub mod scope;
pub mod shard;
pub mod status;
pub mod watch;

use std::sync::Arc;

use kube::api::Api;
use kube::runtime::controller::Action as Requeue;
use kube::runtime::finalizer::{Event as Finalizer, finalizer};
use kube::{Resource, ResourceExt};

pub use context::{Config, Context};
pub use error::{ConfigError, ControllerError, ReconcileError};
pub use reason::Reason;
pub use watch::{run, run_with, shutdown_signal};

use crate::api::{Annotations, FINALIZER, WebhookSubscription, WebhookSubscriptionStatus, condition};
use crate::providers::WebhookApi as _;
use claims::Claims as _;
use context::ObjectState;
use error::backoff;
use observe::uid_of;
use plan::{Deletion, Facts, Leak, Wake};
use report::{Cleanup, GateChange, Outcome, Pass, Report};
use status::condition_state;

/// Names the operator to the API server: a writer without a field manager is recorded under its user
/// agent's product, so `managedFields` and audit logs say webhook-operator rather than "unknown".
pub fn identify(config: &mut kube::Config) {
    config.headers.push((
        reqwest::header::USER_AGENT,
        reqwest::header::HeaderValue::from_static(concat!("webhook-operator/", env!("CARGO_PKG_VERSION"))),
    ));
}

/// How soon a pass that found this replica without the right to act looks again.
const LEADERSHIP_RECHECK: std::time::Duration = std::time::Duration::from_secs(1);

/// Reconciles one subscription (the finalizer protects remote cleanup).
pub async fn reconcile(sub: Arc<WebhookSubscription>, ctx: Arc<Context>) -> Result<Requeue, ControllerError> {
    let started = std::time::Instant::now();
    let api: Api<WebhookSubscription> = Api::namespaced(ctx.client.clone(), &sub.namespace().unwrap_or_default());
    let result = finalizer(&api, FINALIZER, sub, |event| async {
        match event {
            Finalizer::Apply(sub) => apply(&sub, &ctx).await,
            Finalizer::Cleanup(sub) => cleanup(&sub, &ctx).await,
        }
    })
    .await
    .map_err(|e| ControllerError::Finalizer(Box::new(e)));
    crate::telemetry::reconcile(
        started.elapsed(),
        result.as_ref().err().map(|_| Reason::KubernetesError.as_str()),
    );
    crate::telemetry::health().progress();
    result
}

/// Requeues after a Kubernetes API failure.
pub fn error_policy(_sub: Arc<WebhookSubscription>, error: &ControllerError, _ctx: Arc<Context>) -> Requeue {
    tracing::warn!(error = %error, "reconcile failed");
    Requeue::requeue(backoff(3, fastrand::f64()))
}

/// One pass over a live subscription.
async fn apply(given: &WebhookSubscription, ctx: &Context) -> Result<Requeue, ReconcileError> {
    let uid = uid_of(given);
    let state = ctx.objects.get(&uid);
    // Read after the state: a status the state no longer keeps is in this copy.
    let newest = ctx.newest(given);
    let sub = newest.as_deref().unwrap_or(given);
    let annotations = plan::trust_own_writes(
        Annotations::parse(sub.annotations()),
        sub.meta().resource_version.as_deref(),
        state.own_annotations.as_ref(),
    );
    let current = state
        .written
        .clone()
        .unwrap_or_else(|| sub.status.clone().unwrap_or_default());
    let mut pass = Pass {
        now: ctx.config.clock.now(),
        generation: sub.meta().generation.unwrap_or(0),
        uid: &uid,
        annotations: &annotations,
        renewal: sub.spec.renewal.as_ref(),
        drift_interval: annotations.drift_check_interval.unwrap_or(ctx.config.drift_interval),
        provider: None,
        jitter: fastrand::f64(),
        wants_delivery: None,
    };
    let outcome = if let Some(problem) = plan::check_input(&annotations, sub.spec.renewal.as_ref()) {
        Outcome::Failed {
            error: ConfigError::spec(problem).into(),
            inputs: plan::inputs_of(pass.generation, &annotations, None, ""),
            done: Vec::new(),
        }
    } else if annotations.paused {
        Outcome::Paused
    } else {
        converge(sub, ctx, &mut pass, &current, &state).await
    };
    let report = report::report(&current, &pass, state.gate.as_ref(), outcome);
    record(sub, ctx, &current, report).await
}

/// Observe → plan → act, up to the outcome.
async fn converge(
    sub: &WebhookSubscription,
    ctx: &Context,
    pass: &mut Pass<'_>,
    current: &WebhookSubscriptionStatus,
    state: &ObjectState,
) -> Outcome {
    let failed = |error, inputs| Outcome::Failed {
        error,
        inputs,
        done: Vec::new(),
    };
    // Observe: the provider, its credentials and the Secrets the spec references.
    let observed = async {
        let settings = observe::resolve_provider(ctx.reads(), sub, &ctx.config).await?;
        if let Some(why) = &settings.credentials_refused {
            return Err(ConfigError::provider(format!(
                "{} cannot use its credentials: {why}; fix its credentials Secret (this subscription goes on by itself then)",
                settings.display
            ))
            .into());
        }
        // Plan: a provider that names where its subscriptions may deliver refuses others, before any call.
        plan::check_endpoint(&settings.allowed_endpoints, &sub.spec.endpoint, &settings.display).map_err(ConfigError::spec)?;
        let (api, credentials) = ctx.connect(&settings).await?;
        let (desired, to_generate) = observe::desired(ctx.reads(), sub, api.provider(), &settings.display).await?;
        let identity = format!("{}|{credentials}", settings.key);
        Ok::<_, ReconcileError>((api, identity, desired, to_generate))
    }
    .await;
    let (api, identity, desired, to_generate) = match observed {
        Ok(observed) => observed,
        Err(error) => return failed(error, plan::inputs_of(pass.generation, pass.annotations, None, "")),
    };
    pass.provider = Some(api.provider());
    pass.wants_delivery = Some(desired.wants_delivery());
    let secret_hash = desired.secret_hash();
    let inputs = plan::inputs_of(pass.generation, pass.annotations, secret_hash.as_deref(), &identity);

    // Plan: a subscription held back after a failure stays quiet until its inputs change or its time comes.
    if let Some(wake) = plan::held(state.gate.as_ref(), &inputs, pass.now) {
        return Outcome::Held(wake);
    }
    // Plan: what to read.
    let facts = Facts {
        now: pass.now,
        generation: pass.generation,
        uid: pass.uid.to_string(),
        provider: api.provider(),
        status: current.clone(),
        annotations: pass.annotations.clone(),
        adoption: sub.spec.adoption_policy,
        secret_hash: secret_hash.clone(),
        last_remote_check: state.last_remote_check,
        drift_interval: pass.drift_interval,
        me: claims::claimant(sub, false),
        claims: Arc::new(ctx.claims()),
    };
    // Plan: a remote id another subscription holds is never touched.
    if let Some((reason, message)) = plan::check_claim(&facts) {
        return failed(ReconcileError::Blocked { reason, message }, inputs);
    }
    // Act only while this replica may (a deposed or resumed leader writes nothing).
    if !ctx.may_act() {
        return Outcome::Held(Wake::After(LEADERSHIP_RECHECK));
    }
    let lookup = plan::lookup(&facts);
    // Plan: routine work stands back while its account is at the rate limit, so that due renewals find
    // both a reconcile slot and the next token (a create that waited could cost a renewal its lifetime).
    if plan::is_routine(&facts, &lookup) {
        let shared_listing = plan::uses_shared_listing(&lookup, sub.spec.adoption_policy);
        if let Some(after) = api.come_back_after(shared_listing) {
            tracing::debug!(subscription = %sub.name_any(), after_ms = after.as_millis() as u64, "account at its rate limit; coming back later");
            crate::telemetry::deferred(api.labels());
            return Outcome::Held(Wake::After(after));
        }
    }
    // Act: signing secrets this pass generated are stored before anything uses them.
    let mut done = Vec::new();
    if let Err(e) = act::store_generated(ctx.reads(), sub, &to_generate, &mut done).await {
        return Outcome::Failed {
            error: e.into(),
            inputs,
            done,
        };
    }
    if let Some(reason) = facts.remote_check_reason() {
        tracing::debug!(subscription = %sub.name_any(), reason = reason.as_str(), "looking at the remote subscription");
    }
    // Observe: the remote side.
    let listing_since = plan::listing_since(&lookup, &facts);
    let observation = match observe::remote(api.as_ref(), lookup, &desired, listing_since, pass.now).await {
        Ok(None) => return Outcome::UpToDate,
        Ok(Some(observation)) => observation,
        Err(error) => return Outcome::Failed { error, inputs, done },
    };
    let unread = matches!(observation, plan::Observation::Recorded(_));
    if !unread {
        ctx.objects.update(pass.uid, |s| s.last_remote_check = Some(pass.now));
    }

    // Plan: what to change; act: change it.
    let action = plan::decide(&facts, &desired, observation);
    if !ctx.may_act() {
        return Outcome::Held(Wake::After(LEADERSHIP_RECHECK));
    }
    let mut acted = act::run(&ctx.client, sub, api.as_ref(), &facts, &desired, action).await;
    // Observe (from the answer): a subscription acted on unread turned out to be gone.
    if unread && matches!(&acted.result, Err(ReconcileError::Provider(e)) if e.is_not_found()) {
        done.extend(acted.done);
        let action = plan::decide(&facts, &desired, plan::Observation::Gone);
        acted = act::run(&ctx.client, sub, api.as_ref(), &facts, &desired, action).await;
    }
    done.extend(acted.done);
    match acted.result {
        Ok(applied) => Outcome::Applied {
            applied,
            secret_hash,
            done,
        },
        Err(error) => Outcome::Failed { error, inputs, done },
    }
}

/// Carries out a report: the retry gate, metrics, Events, and the status write when it changed.
async fn record(
    sub: &WebhookSubscription,
    ctx: &Context,
    current: &WebhookSubscriptionStatus,
    report: Report,
) -> Result<Requeue, ReconcileError> {
    let uid = uid_of(sub);
    let status_write = report.status_write(current).cloned();
    let Report {
        status,
        events,
        wake,
        gate,
        error,
        own_annotations,
    } = report;
    if let Some(own) = own_annotations {
        ctx.objects.update(&uid, |s| s.own_annotations = Some(own));
    }
    match gate {
        GateChange::Keep => {}
        GateChange::Clear => ctx.objects.update(&uid, |s| s.gate = None),
        GateChange::Set(gate) => ctx.objects.update(&uid, |s| s.gate = Some(gate)),
    }
    if let Some((reason, message)) = &error {
        tracing::warn!(
            namespace = %sub.namespace().unwrap_or_default(),
            subscription = %sub.name_any(),
            reason = reason.as_str(),
            error = %message,
            "reconcile failed"
        );
        crate::telemetry::reconcile_error(reason.as_str());
    }
    record_gauges(sub, &status);
    ctx.publish(sub, events).await;
    if let Some(next) = status_write {
        act::write_status(&ctx.client, sub, &next).await?;
        if let (Some(id), Ok(block)) = (&next.subscription_id, bindings::subscription_block(&sub.spec)) {
            ctx.recent_claims
                .record(block.provider_type(), id, claims::claimant(sub, true));
        }
        ctx.objects.update(&uid, |s| s.written = Some(next));
        // The watch may have shown this write before it was recorded above: then the cache holds it
        // already and the copy goes now (otherwise the watch lets it go when it shows it).
        if let Some(cached) = ctx.newest(sub) {
            ctx.objects.seen(&uid, cached.status.as_ref());
        }
    }
    Ok(match wake {
        Wake::OnChange => Requeue::await_change(),
        Wake::After(after) => Requeue::requeue(after),
    })
}

/// The subscription's gauges, from the status a pass leaves.
fn record_gauges(sub: &WebhookSubscription, status: &WebhookSubscriptionStatus) {
    let epoch = |t: &Option<String>| {
        t.as_deref()
            .and_then(|t| t.parse::<jiff::Timestamp>().ok())
            .map(|t| t.as_second() as f64)
    };
    crate::telemetry::subscription(
        &sub.namespace().unwrap_or_default(),
        &sub.name_any(),
        Some(crate::telemetry::SubscriptionGauges {
            provider: subscription_provider_labels(sub),
            ready: condition_state(&status.conditions, condition::READY).map_or_else(|| "Unknown".into(), |c| c.0),
            expiration: epoch(&status.expires_at),
            renewal: epoch(&status.renewal_time),
        }),
    );
}

/// The provider a subscription names, as metrics label it.
fn subscription_provider_labels(sub: &WebhookSubscription) -> crate::telemetry::ProviderLabels {
    let reference = &sub.spec.provider_ref;
    let namespace = match reference.kind {
        crate::api::ProviderKind::WebhookProvider => sub.namespace().unwrap_or_default(),
        crate::api::ProviderKind::ClusterWebhookProvider => String::new(),
    };
    crate::telemetry::ProviderLabels {
        provider_kind: reference.kind.as_str().to_string(),
        provider_namespace: namespace,
        provider_name: reference.name.clone(),
        provider_type: bindings::subscription_block(&sub.spec)
            .map_or("unknown", |b| b.provider_type().as_str())
            .to_string(),
    }
}

/// One pass over a deleted subscription: plan what deleting means, act, report.
async fn cleanup(sub: &WebhookSubscription, ctx: &Context) -> Result<Requeue, ReconcileError> {
    crate::telemetry::subscription(&sub.namespace().unwrap_or_default(), &sub.name_any(), None);
    let uid = uid_of(sub);
    let state = ctx.objects.get(&uid);
    ctx.objects.forget(&uid);
    ctx.recent_claims.forget(&uid);
    // A lagging cache must not hide the id or the pending create this process just wrote.
    let annotations = plan::trust_own_writes(
        Annotations::parse(sub.annotations()),
        sub.meta().resource_version.as_deref(),
        state.own_annotations.as_ref(),
    );
    let status = state.written.as_ref().or(sub.status.as_ref());
    let outcome = match plan::deletion(sub.spec.deletion_policy, &annotations, status) {
        Deletion::Orphan(id) => Cleanup::Orphaned(id),
        Deletion::Release => Cleanup::Released,
        deletion @ (Deletion::Delete(_) | Deletion::FindLeak) => delete_remote(sub, ctx, deletion).await?,
    };
    let (notes, result) = report::cleanup(outcome);
    ctx.publish(sub, notes).await;
    result.map(|()| Requeue::await_change())
}

/// Deletes the remote subscription, or the single match of a leaked create; never one that another
/// subscription holds.
async fn delete_remote(
    sub: &WebhookSubscription,
    ctx: &Context,
    deletion: Deletion,
) -> Result<Cleanup, ReconcileError> {
    let known_id = match &deletion {
        Deletion::Delete(id) => Some(id.clone()),
        Deletion::FindLeak | Deletion::Orphan(_) | Deletion::Release => None,
    };
    let claims = ctx.claims();
    let provider = bindings::subscription_block(&sub.spec).map(|b| b.provider_type());
    if let (Some(id), Ok(provider)) = (&known_id, provider) {
        let recorded = sub.status.as_ref().and_then(|s| s.subscription_id.as_deref()) == Some(id.as_str());
        if let Some(holder) = claims.holder_against(provider, id, &claims::claimant(sub, recorded)) {
            return Ok(Cleanup::Claimed {
                id: id.clone(),
                holder: holder.display(),
            });
        }
    }
    let connected = async {
        let settings = observe::resolve_provider(ctx.reads(), sub, &ctx.config).await?;
        let (api, _) = ctx.connect(&settings).await?;
        Ok::<_, ReconcileError>((api, settings))
    }
    .await;
    let (api, settings) = match connected {
        Ok(connected) => connected,
        Err(ReconcileError::Config(error)) => {
            return Ok(Cleanup::ProviderUnavailable {
                provider_ref: observe::provider_ref_display(sub),
                id: known_id,
                error,
            });
        }
        Err(e) => return Err(e),
    };
    let target = match known_id {
        Some(id) => id,
        None => {
            let (desired, _) = observe::desired(ctx.reads(), sub, api.provider(), &settings.display).await?;
            let matches = api.matches(&desired, Some(ctx.config.clock.now())).await?;
            match plan::leaked(&matches, &claims, api.provider(), &uid_of(sub)) {
                Leak::Delete(id) => id,
                Leak::None => return Ok(Cleanup::NoLeak),
                Leak::Ambiguous(n) => return Ok(Cleanup::LeakAmbiguous(n)),
            }
        }
    };
    if !ctx.may_act() {
        return Err(ReconcileError::Blocked {
            reason: Reason::Unavailable,
            message: "not the leader now; the deletion is retried".into(),
        });
    }
    let result = act::delete(api.as_ref(), &target).await;
    Ok(Cleanup::DeleteAnswered {
        provider: api.provider(),
        id: target,
        result,
    })
}
