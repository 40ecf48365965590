//! `plan -f FILE`: offline, what applying a WebhookSubscription would do. It is checked against the CRD's
//! schema and CEL rules (the same engine the sandbox's API server runs), and the create request the
//! operator would send is produced by the provider client itself, against a local recorder standing in
//! for the provider, so it is the request and not a description of it. Secret-backed values are never
//! read: they appear as `<Secret NAME key KEY>`. Needs the sandbox feature (the schema and CEL engine).

use std::fmt::Write as _;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use axum::body::Bytes;
use axum::http::{Method, StatusCode, Uri};
use serde_json::{Value, json};

use super::CliError;
use crate::api::{ClusterWebhookProvider, WebhookProvider, WebhookSubscription, crds};
use crate::controller::bindings::{self, ProviderBlock};
use crate::controller::endpoints::{EndpointPolicy, Origin, own_domains};
use crate::controller::observe::Placeholders;
use crate::providers::{AccountConfig, ProviderType};
use crate::sandbox::kube::schema::{Schema, admit};

/// `plan` arguments.
#[derive(Clone, Debug, clap::Args)]
pub struct PlanArgs {
    /// Files with WebhookSubscriptions, and optionally the providers they name (repeatable).
    #[arg(short = 'f', long = "filename", value_name = "FILE", required = true)]
    pub files: Vec<PathBuf>,
}

/// The openAPIV3Schema of the CRD for `kind`.
fn schema_of(kind: &str) -> Option<Schema> {
    let crd = crds().into_iter().find(|c| c.spec.names.kind == kind)?;
    let version = crd.spec.versions.first()?;
    let raw = serde_json::to_value(version.schema.as_ref()?.open_api_v3_schema.as_ref()?).ok()?;
    Some(Schema::new(raw))
}

/// One request the recorder saw.
#[derive(Clone, Debug)]
struct Recorded {
    method: String,
    path: String,
    body: Value,
}

/// What the run's requests go through: the local recorder (its URL and what it saw) and one HTTP client.
struct Recorder {
    origin: Origin,
    seen: Arc<Mutex<Vec<Recorded>>>,
    http: reqwest::Client,
}

impl Recorder {
    /// An account on the recorder (the credentials only reach it).
    fn account(&self, base_url: String, token_url: String) -> AccountConfig {
        AccountConfig {
            base_url,
            token_url,
            client_id: "plan".into(),
            client_secret: "plan".into(),
            limiter: Arc::new(crate::providers::http::RateLimiter::new(100.0, 100)),
            retry: crate::providers::http::RetryPolicy::default(),
            http: self.http.clone(),
            clock: Arc::new(crate::clock::SystemClock),
            labels: Default::default(),
        }
    }
}

/// A local stand-in for a provider: answers token requests with a token and records everything else,
/// answering it with a refusal so the client stops there.
async fn recorder() -> Result<Recorder, CliError> {
    let seen: Arc<Mutex<Vec<Recorded>>> = Arc::default();
    let log = seen.clone();
    let app = axum::Router::new().fallback(move |method: Method, uri: Uri, body: Bytes| {
        let log = log.clone();
        async move {
            let path = uri.path().to_string();
            if method == Method::POST && (path.ends_with("/token") || path.ends_with("/tokens")) {
                return (
                    StatusCode::OK,
                    json!({"access_token": "plan", "expires_in": 3600}).to_string(),
                );
            }
            let body = serde_json::from_slice(&body).unwrap_or(Value::Null);
            log.lock().unwrap_or_else(|e| e.into_inner()).push(Recorded {
                method: method.to_string(),
                path,
                body,
            });
            (
                StatusCode::BAD_REQUEST,
                json!({"message": "recorded by plan; not sent"}).to_string(),
            )
        }
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .map_err(|e| CliError::Config(format!("cannot start the local recorder: {e}")))?;
    let addr = listener
        .local_addr()
        .map_err(|e| CliError::Config(format!("cannot start the local recorder: {e}")))?;
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    let origin = Origin::parse(&format!("http://{addr}")).map_err(|e| CliError::Config(e.to_string()))?;
    Ok(Recorder {
        origin,
        seen,
        http: crate::providers::http::http_client(std::time::Duration::from_secs(5)),
    })
}

/// The provider a subscription names, from the files: how messages name it, and its block.
fn provider_block_in<'a>(
    sub: &WebhookSubscription,
    namespaced: &'a [WebhookProvider],
    cluster: &'a [ClusterWebhookProvider],
) -> Option<(String, ProviderBlock<'a>, &'a [crate::api::AllowedEndpoint])> {
    let reference = &sub.spec.provider_ref;
    let ns = sub.metadata.namespace.clone().unwrap_or_else(|| "default".into());
    let (avaya, vonage, authvia, allowed) = match reference.kind {
        crate::api::ProviderKind::WebhookProvider => {
            let p = namespaced.iter().find(|p| {
                p.metadata.name.as_deref() == Some(&reference.name)
                    && p.metadata.namespace.as_deref().unwrap_or("default") == ns
            })?;
            (
                &p.spec.avaya,
                &p.spec.vonage,
                &p.spec.authvia,
                p.spec.allowed_endpoints.as_slice(),
            )
        }
        crate::api::ProviderKind::ClusterWebhookProvider => {
            let p = cluster
                .iter()
                .find(|p| p.metadata.name.as_deref() == Some(&reference.name))?;
            (
                &p.spec.avaya,
                &p.spec.vonage,
                &p.spec.authvia,
                p.spec.allowed_endpoints.as_slice(),
            )
        }
    };
    let display = crate::controller::observe::provider_ref_display(sub);
    let block = bindings::provider_block(avaya, vonage, authvia, &display).ok()?;
    Some((display, block, allowed))
}

/// The create request for `sub` through `block`: method, the provider's real URL, and the body.
async fn create_request(
    recorder: &Recorder,
    sub: &WebhookSubscription,
    display: &str,
    block: ProviderBlock<'_>,
) -> Result<(String, String, Value), String> {
    let provider: ProviderType = block.provider_type();
    // The URLs the operator would call (as resolved without redirects), then the same client pointed at
    // the recorder by redirecting the provider's own hosts, as the sandbox does.
    let mut real_base = String::new();
    bindings::client(block, display, &EndpointPolicy::default(), |base, token| {
        real_base = base.clone();
        recorder.account(base, token)
    })
    .map_err(|e| e.to_string())?;
    let redirects = own_domains(provider)
        .iter()
        .filter_map(|d| Origin::parse(&format!("https://*.{d}")).ok())
        .map(|from| (from, recorder.origin.clone()))
        .collect();
    let policy = EndpointPolicy {
        redirects,
        ..EndpointPolicy::default()
    };
    let api = bindings::client(block, display, &policy, |base, token| recorder.account(base, token))
        .map_err(|e| e.to_string())?;
    let desired = bindings::desired(sub, provider, display, &mut Placeholders)
        .await
        .map_err(|e| e.to_string())?;
    recorder.seen.lock().unwrap_or_else(|e| e.into_inner()).clear();
    let _ = api.create(&desired).await;
    let recorded = recorder
        .seen
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .first()
        .cloned()
        .ok_or("the client sent no request")?;
    let origin = reqwest::Url::parse(&real_base)
        .map(|u| u.origin().ascii_serialization())
        .unwrap_or_default();
    Ok((recorded.method, format!("{origin}{}", recorded.path), recorded.body))
}

/// Plans every subscription in the files; the text to print, or the report with the refusals.
pub async fn run_plan(args: &PlanArgs) -> Result<String, CliError> {
    let mut docs: Vec<Value> = Vec::new();
    for file in &args.files {
        let text = std::fs::read_to_string(file)
            .map_err(|e| CliError::Config(format!("cannot read {}: {e}", file.display())))?;
        let parsed: Vec<Value> = serde_saphyr::from_multiple(&text)
            .map_err(|e| CliError::Config(format!("{} is not YAML: {e}", file.display())))?;
        docs.extend(parsed.into_iter().filter(Value::is_object));
    }
    let of = |kind: &'static str| docs.iter().filter(move |d| d["kind"] == kind);
    let namespaced: Vec<WebhookProvider> = of("WebhookProvider")
        .filter_map(|d| serde_json::from_value(d.clone()).ok())
        .collect();
    let cluster: Vec<ClusterWebhookProvider> = of("ClusterWebhookProvider")
        .filter_map(|d| serde_json::from_value(d.clone()).ok())
        .collect();
    let schema =
        schema_of("WebhookSubscription").ok_or_else(|| CliError::Config("no WebhookSubscription CRD".into()))?;
    let recorder = recorder().await?;
    let mut out = String::new();
    let mut refused = false;
    let subs: Vec<&Value> = of("WebhookSubscription").collect();
    if subs.is_empty() {
        return Err(CliError::NotFound("no WebhookSubscription in the files".into()));
    }
    for doc in subs {
        let name = format!(
            "{}/{}",
            doc["metadata"]["namespace"].as_str().unwrap_or("default"),
            doc["metadata"]["name"].as_str().unwrap_or("(no name)")
        );
        let admitted = match admit(&schema, doc.clone(), None) {
            Ok(admitted) => admitted,
            Err(errors) => {
                refused = true;
                let _ = writeln!(out, "✗ {name}: refused by the WebhookSubscription schema");
                for e in errors {
                    let _ = writeln!(out, "    {}: {}", e.field, e.message);
                }
                continue;
            }
        };
        let sub: WebhookSubscription = match serde_json::from_value(admitted.object) {
            Ok(sub) => sub,
            Err(e) => {
                refused = true;
                let _ = writeln!(out, "✗ {name}: {e}");
                continue;
            }
        };
        let _ = writeln!(out, "✓ {name}: valid (schema and CEL rules)");
        for field in &admitted.pruned {
            let _ = writeln!(out, "    note: unknown field {field} would be dropped");
        }
        let Some((display, block, allowed)) = provider_block_in(&sub, &namespaced, &cluster) else {
            let _ = writeln!(
                out,
                "    its provider {} is not in the files: add it to see the request",
                crate::controller::observe::provider_ref_display(&sub)
            );
            continue;
        };
        if let Err(why) = crate::controller::plan::check_endpoint(allowed, &sub.spec.endpoint, &display) {
            refused = true;
            let _ = writeln!(out, "    ✗ the operator would refuse it: {why}");
            continue;
        }
        match create_request(&recorder, &sub, &display, block).await {
            Ok((method, url, body)) => {
                let _ = writeln!(out, "    creates it through {display}:");
                let _ = writeln!(out, "    {method} {url}");
                let pretty = serde_json::to_string_pretty(&body).unwrap_or_default();
                for line in pretty.lines() {
                    let _ = writeln!(out, "    {line}");
                }
            }
            Err(why) => {
                refused = true;
                let _ = writeln!(out, "    ✗ the operator would refuse it: {why}");
            }
        }
    }
    if refused {
        Err(CliError::Unhandled(out.trim_end().to_string()))
    } else {
        Ok(out)
    }
}
