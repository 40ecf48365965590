//! The sandbox's control surface over HTTP: fault injection into the emulated Kubernetes API and the
//! provider simulators, and what the simulators hold, so that a test or a person can script faults while
//! `webhook-operator run` is started, killed and restarted from outside.
//!
//! - `POST /faults/kubernetes` `{"status": 500, "method": "PATCH", "path": "regex", "times": 3,
//!   "probability": 0.3}` (all but `status` optional);
//! - `POST /faults/{avaya|vonage|authvia}` `{"status": 503, "path": "/subscriptions", "method": "POST",
//!   "retryAfter": 2, "times": 3}`, or `"action": "drop"` / `"lose-answer"` instead of `status`;
//! - `DELETE /faults` clears every fault;
//! - `GET /subscriptions` lists the remote subscription ids per provider.

use std::sync::Arc;

use axum::Json;
use axum::extract::{Path, State};
use axum::http::{Method, StatusCode};
use axum::routing::{delete, get, post};
use serde::Deserialize;
use serde_json::{Value, json};

use super::kube::{ApiError, Emulator, FaultAction, FaultRule};
use super::providers::authvia::AuthviaSimulator;
use super::providers::avaya::AvayaSimulator;
use super::providers::vonage::VonageSimulator;
use super::providers::{SimCore, SimFault, SimFaultAction};

/// What the control surface acts on.
pub struct Controlled {
    /// Adds a fault rule to the emulated API (None clears them).
    pub faults: Arc<dyn Fn(Option<FaultRule>) + Send + Sync>,
    /// The simulators' shared machinery, by provider name.
    pub cores: Vec<(&'static str, Arc<SimCore>)>,
    /// Remote subscription ids, by provider name.
    pub subscriptions: Arc<dyn Fn() -> Value + Send + Sync>,
}

/// A Kubernetes API fault.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct KubeFault {
    status: u16,
    method: Option<String>,
    path: Option<String>,
    times: Option<u32>,
    probability: Option<f64>,
}

/// A provider fault.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct ProviderFault {
    status: Option<u16>,
    action: Option<String>,
    path: Option<String>,
    method: Option<String>,
    retry_after: Option<u64>,
    times: Option<u32>,
}

type Answer = (StatusCode, Json<Value>);

fn bad(message: impl Into<String>) -> Answer {
    (StatusCode::BAD_REQUEST, Json(json!({"error": message.into()})))
}

fn method(name: &str) -> Result<Method, Answer> {
    name.to_ascii_uppercase()
        .parse()
        .map_err(|_| bad(format!("{name:?} is not an HTTP method")))
}

async fn kube_fault(State(c): State<Arc<Controlled>>, Json(f): Json<KubeFault>) -> Answer {
    let Ok(status) = StatusCode::from_u16(f.status) else {
        return bad("status must be an HTTP status code");
    };
    let mut rule = FaultRule::new(FaultAction::Fail(ApiError::new(
        status.as_u16(),
        status.canonical_reason().unwrap_or("Injected"),
        "injected by the sandbox control surface",
    )));
    if let Some(m) = &f.method {
        match method(m) {
            Ok(m) => rule = rule.methods(&[m]),
            Err(e) => return e,
        }
    }
    if let Some(path) = &f.path {
        if regex::Regex::new(path).is_err() {
            return bad(format!("path {path:?} is not a regular expression"));
        }
        rule = rule.path(path);
    }
    if let Some(times) = f.times {
        rule = rule.times(times);
    }
    if let Some(p) = f.probability {
        if !(0.0..=1.0).contains(&p) {
            return bad("probability must be between 0 and 1");
        }
        rule = rule.probability(p);
    }
    (c.faults)(Some(rule));
    (StatusCode::CREATED, Json(json!({"injected": "kubernetes"})))
}

async fn provider_fault(
    State(c): State<Arc<Controlled>>,
    Path(provider): Path<String>,
    Json(f): Json<ProviderFault>,
) -> Answer {
    let Some((_, core)) = c.cores.iter().find(|(name, _)| *name == provider) else {
        return (
            StatusCode::NOT_FOUND,
            Json(json!({"error": format!("no simulator {provider:?}; use avaya, vonage or authvia")})),
        );
    };
    let action = match (f.status, f.action.as_deref()) {
        (Some(status), None) => SimFaultAction::Status(status, f.retry_after),
        (None, Some("drop")) => SimFaultAction::Drop,
        (None, Some("lose-answer")) => SimFaultAction::LoseAnswer,
        _ => return bad("give status, or action drop or lose-answer"),
    };
    let mut fault = SimFault::on(f.path.as_deref().unwrap_or("/"), action);
    if let Some(m) = &f.method {
        match method(m) {
            Ok(m) => fault = fault.method(m),
            Err(e) => return e,
        }
    }
    if let Some(times) = f.times {
        fault = fault.times(times);
    }
    core.inject(fault);
    (StatusCode::CREATED, Json(json!({"injected": provider})))
}

async fn clear(State(c): State<Arc<Controlled>>) -> Answer {
    (c.faults)(None);
    for (_, core) in &c.cores {
        core.clear_faults();
    }
    (StatusCode::OK, Json(json!({"cleared": true})))
}

async fn subscriptions(State(c): State<Arc<Controlled>>) -> Answer {
    (StatusCode::OK, Json((c.subscriptions)()))
}

/// The control surface's routes.
pub fn router(controlled: Controlled) -> axum::Router {
    axum::Router::new()
        .route("/faults/kubernetes", post(kube_fault))
        .route("/faults/{provider}", post(provider_fault))
        .route("/faults", delete(clear))
        .route("/subscriptions", get(subscriptions))
        .with_state(Arc::new(controlled))
}

/// What a sandbox controls: its emulator and simulators.
pub fn controlled(
    emulator: &Emulator,
    avaya: &AvayaSimulator,
    vonage: &VonageSimulator,
    authvia: &AuthviaSimulator,
    ids: Arc<dyn Fn() -> Value + Send + Sync>,
) -> Controlled {
    let faults_target = emulator.shared();
    Controlled {
        faults: Arc::new(move |rule| {
            let mut faults = faults_target.faults.lock().unwrap_or_else(|e| e.into_inner());
            match rule {
                Some(rule) => faults.push(rule),
                None => faults.clear(),
            }
        }),
        cores: vec![
            ("avaya", avaya.core.clone()),
            ("vonage", vonage.core.clone()),
            ("authvia", authvia.core.clone()),
        ],
        subscriptions: ids,
    }
}
