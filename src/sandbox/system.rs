//! `webhook-operator sandbox`: the whole system on one machine. The emulated Kubernetes API, the three
//! provider simulators, a verifying webhook receiver and the controller (the same code as `run`); the
//! CRDs and `examples/` are applied through the API as a user would, with the providers pointed at the
//! simulators through their `baseUrl`/`tokenUrl` overrides.

use std::collections::BTreeMap;
use std::io::{IsTerminal, Write};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use jiff::Timestamp;
use kube::api::{Api, ApiResource, DynamicObject, GroupVersionKind, Patch, PatchParams};
use secrecy::SecretString;
use serde_json::{Value, json};

use super::LocalServer;
use super::kube::{Emulator, EmulatorOptions};
use super::providers::authvia::AuthviaSimulator;
use super::providers::avaya::AvayaSimulator;
use super::providers::vonage::VonageSimulator;
use super::receiver::{Expectation, Receiver};
use crate::api::{WebhookSubscription, crds};
use crate::clock::SystemClock;
use crate::controller::bindings::SubscriptionBlock;
use crate::controller::endpoints::{EndpointPolicy, Origin, own_domains};
use crate::controller::{self, Config};
use crate::providers::ProviderType;

/// The example manifests, compiled in so the sandbox runs from any directory.
pub const EXAMPLES: [(&str, &str); 4] = [
    ("00-namespace.yaml", include_str!("../../examples/00-namespace.yaml")),
    ("avaya.yaml", include_str!("../../examples/avaya.yaml")),
    ("vonage.yaml", include_str!("../../examples/vonage.yaml")),
    ("authvia.yaml", include_str!("../../examples/authvia.yaml")),
];

/// The operator's namespace in the sandbox (ClusterWebhookProviders' Secrets live here).
pub const OPERATOR_NAMESPACE: &str = "webhook-operator";
/// Deliveries in flight at once.
const DELIVERY_CONCURRENCY: usize = 16;
/// Above this many subscriptions the live view shows totals and only those that need attention.
const LIVE_VIEW_ROWS: usize = 30;
const MANAGER: &str = "webhook-operator-sandbox";

/// Sandbox settings.
#[derive(Clone, Debug)]
pub struct SandboxOptions {
    /// Port of the emulated API (0: any free port).
    pub port: u16,
    /// Where the kubeconfig is written.
    pub kubeconfig: PathBuf,
    /// Lifetime of Avaya subscriptions in the simulator (short, so renewals show within a minute).
    pub lifetime: Duration,
    /// How often each simulator delivers a test event to each subscription.
    pub delivery_interval: Duration,
    /// Stop by itself after this long.
    pub exit_after: Option<Duration>,
    /// Run the controller in-process (false: the banner says how to run `webhook-operator run` from
    /// outside, to kill and restart it).
    pub controller: bool,
}

/// Why the sandbox could not start: one line for the user.
#[derive(Debug, thiserror::Error)]
pub enum SandboxError {
    /// The port is taken or not allowed.
    #[error("cannot listen on 127.0.0.1:{port}: {reason}")]
    Listen {
        /// The port.
        port: u16,
        /// Why.
        reason: std::io::Error,
    },
    /// The kubeconfig cannot be written.
    #[error("cannot write the kubeconfig to {path}: {reason}")]
    Kubeconfig {
        /// The path.
        path: PathBuf,
        /// Why.
        reason: std::io::Error,
    },
    /// A simulator or the receiver could not start.
    #[error("cannot start {what}: {reason}")]
    Component {
        /// Which.
        what: &'static str,
        /// Why.
        reason: std::io::Error,
    },
    /// The examples could not be applied.
    #[error("cannot apply {what}: {message}")]
    Apply {
        /// Which document.
        what: String,
        /// Why.
        message: String,
    },
}

/// One subscription's line in the live view and the summary.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Row {
    /// `namespace/name`.
    pub name: String,
    /// avaya, vonage or authvia.
    pub provider: String,
    /// Ready condition status.
    pub ready: String,
    /// Remote state.
    pub state: String,
    /// Time until expiry, or `-`.
    pub expires: String,
    /// Renewals so far.
    pub renewals: i64,
    /// Deliveries received.
    pub deliveries: usize,
    /// Of which verified.
    pub verified: usize,
    /// The last delivery's verdict.
    pub last: String,
}

/// The running sandbox.
pub struct Sandbox {
    /// The emulated API server.
    pub emulator: Emulator,
    /// Avaya simulator.
    pub avaya: AvayaSimulator,
    /// Vonage simulator.
    pub vonage: VonageSimulator,
    /// AuthVia simulator.
    pub authvia: AuthviaSimulator,
    /// The verifying receiver.
    pub receiver: Arc<Receiver>,
    /// The control surface (faults, remote ids).
    pub control: LocalServer,
    options: SandboxOptions,
}

fn documents() -> Result<Vec<Value>, SandboxError> {
    let mut docs = Vec::new();
    for (file, text) in EXAMPLES {
        let parsed: Vec<Value> = serde_saphyr::from_multiple(text).map_err(|e| SandboxError::Apply {
            what: file.into(),
            message: e.to_string(),
        })?;
        docs.extend(parsed.into_iter().filter(|d| d.is_object()));
    }
    Ok(docs)
}

/// The `clientId`/`clientSecret` of the credentials Secret a provider document names.
fn credentials_of(docs: &[Value], provider: &Value) -> Option<(String, String)> {
    let secret_name = provider["spec"]["credentialsSecretRef"]["name"].as_str()?;
    let namespace = if provider["kind"] == "ClusterWebhookProvider" {
        OPERATOR_NAMESPACE
    } else {
        provider["metadata"]["namespace"].as_str().unwrap_or("default")
    };
    let secret = docs.iter().find(|d| {
        d["kind"] == "Secret"
            && d["metadata"]["name"] == secret_name
            && d["metadata"]["namespace"].as_str().unwrap_or("default") == namespace
    })?;
    let id_key = provider["spec"]["credentialsSecretRef"]["clientIdKey"]
        .as_str()
        .unwrap_or("clientId");
    let secret_key = provider["spec"]["credentialsSecretRef"]["clientSecretKey"]
        .as_str()
        .unwrap_or("clientSecret");
    Some((
        secret["stringData"][id_key].as_str()?.to_string(),
        secret["stringData"][secret_key].as_str()?.to_string(),
    ))
}

fn provider_doc<'a>(docs: &'a [Value], block: &str) -> Option<&'a Value> {
    docs.iter().find(|d| {
        (d["kind"] == "WebhookProvider" || d["kind"] == "ClusterWebhookProvider") && d["spec"].get(block).is_some()
    })
}

fn api_resource(doc: &Value) -> Option<(ApiResource, bool)> {
    let (group, version) = match doc["apiVersion"].as_str()?.split_once('/') {
        Some((g, v)) => (g.to_string(), v.to_string()),
        None => (String::new(), doc["apiVersion"].as_str()?.to_string()),
    };
    let kind = doc["kind"].as_str()?;
    let (plural, namespaced) = match kind {
        "Namespace" => ("namespaces", false),
        "Secret" => ("secrets", true),
        "WebhookProvider" => ("webhookproviders", true),
        "ClusterWebhookProvider" => ("clusterwebhookproviders", false),
        "WebhookSubscription" => ("webhooksubscriptions", true),
        _ => return None,
    };
    let gvk = GroupVersionKind::gvk(&group, &version, kind);
    Some((ApiResource::from_gvk_with_plural(&gvk, plural), namespaced))
}

fn decoded(secret: &Value, key: &str) -> Option<String> {
    let encoded = secret["data"][key].as_str()?;
    String::from_utf8(base64::engine::general_purpose::STANDARD.decode(encoded).ok()?).ok()
}

impl Sandbox {
    /// Starts every component and applies the CRDs and the examples.
    pub async fn start(options: SandboxOptions) -> Result<Sandbox, SandboxError> {
        let docs = documents()?;
        let emulator = Emulator::start(EmulatorOptions {
            listen: SocketAddr::from(([127, 0, 0, 1], options.port)),
            ..Default::default()
        })
        .await
        .map_err(|reason| SandboxError::Listen {
            port: options.port,
            reason,
        })?;
        emulator
            .write_kubeconfig(&options.kubeconfig)
            .map_err(|reason| SandboxError::Kubeconfig {
                path: options.kubeconfig.clone(),
                reason,
            })?;
        let local = SocketAddr::from(([127, 0, 0, 1], 0));
        let component = |what| move |reason| SandboxError::Component { what, reason };
        let receiver = Arc::new(
            Receiver::start(local)
                .await
                .map_err(component("the webhook receiver"))?,
        );
        // The simulators accept exactly the credentials the examples' Secrets hold.
        let creds = |block: &str| {
            provider_doc(&docs, block)
                .and_then(|p| credentials_of(&docs, p))
                .unwrap_or_else(|| ("sandbox-client-id".into(), "sandbox-client-secret".into()))
        };
        let (avaya_id, avaya_secret) = creds("avaya");
        let (vonage_id, vonage_secret) = creds("vonage");
        let (authvia_id, authvia_secret) = creds("authvia");
        let authvia_account = provider_doc(&docs, "authvia")
            .and_then(|p| p["spec"]["authvia"]["accountId"].as_str())
            .unwrap_or("AVSANDBOX")
            .to_string();
        let avaya = AvayaSimulator::start(local, &avaya_id, &avaya_secret, options.lifetime)
            .await
            .map_err(component("the Avaya simulator"))?;
        let vonage = VonageSimulator::start(local, &vonage_id, &vonage_secret)
            .await
            .map_err(component("the Vonage simulator"))?;
        let authvia = AuthviaSimulator::start(local, &authvia_account, &authvia_id, &authvia_secret)
            .await
            .map_err(component("the AuthVia simulator"))?;
        for core in [&avaya.core, &vonage.core, &authvia.core] {
            core.deliver_to(Some(receiver.url()));
        }
        let ids = {
            let (avaya, vonage, authvia) = (avaya.ids(), vonage.ids(), authvia.ids());
            Arc::new(move || json!({"avaya": avaya(), "vonage": vonage(), "authvia": authvia()}))
                as Arc<dyn Fn() -> Value + Send + Sync>
        };
        let control = LocalServer::start(
            local,
            super::control::router(super::control::controlled(&emulator, &avaya, &vonage, &authvia, ids)),
        )
        .await
        .map_err(component("the control surface"))?;
        let sandbox = Sandbox {
            emulator,
            avaya,
            vonage,
            authvia,
            receiver,
            control,
            options,
        };
        sandbox.install(docs).await?;
        sandbox.receiver.set_resolver(sandbox.resolver());
        Ok(sandbox)
    }

    /// Applies the CRDs (waiting until they are served) and the examples, providers rewritten to the simulators.
    async fn install(&self, docs: Vec<Value>) -> Result<(), SandboxError> {
        let client = self.emulator.client();
        let apply_error = |what: String| {
            move |e: kube::Error| SandboxError::Apply {
                what,
                message: e.to_string(),
            }
        };
        let crd_api: Api<k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition> =
            Api::all(client.clone());
        for crd in crds() {
            let name = kube::ResourceExt::name_any(&crd);
            crd_api
                .patch(&name, &PatchParams::apply(MANAGER).force(), &Patch::Apply(&crd))
                .await
                .map_err(apply_error(format!("CustomResourceDefinition {name}")))?;
        }
        for doc in docs {
            let kind = doc["kind"].as_str().unwrap_or_default().to_string();
            let name = doc["metadata"]["name"].as_str().unwrap_or_default().to_string();
            let Some((resource, namespaced)) = api_resource(&doc) else {
                return Err(SandboxError::Apply {
                    what: format!("{kind} {name}"),
                    message: "the sandbox applies only Namespaces, Secrets and webhook-operator kinds".into(),
                });
            };
            let api: Api<DynamicObject> = if namespaced {
                let ns = doc["metadata"]["namespace"].as_str().unwrap_or("default").to_string();
                Api::namespaced_with(client.clone(), &ns, &resource)
            } else {
                Api::all_with(client.clone(), &resource)
            };
            api.patch(&name, &PatchParams::apply(MANAGER).force(), &Patch::Apply(&doc))
                .await
                .map_err(apply_error(format!("{kind} {name}")))?;
        }
        Ok(())
    }

    /// The providers' own hosts, redirected to the simulators: the examples are applied exactly as written
    /// (customerId, region, the default AuthVia API), and no other override host is allowed.
    fn redirects(&self) -> EndpointPolicy {
        let mut redirects = Vec::new();
        for provider in ProviderType::ALL {
            // Exhaustive: a new provider must say where its simulator is.
            let simulator = match provider {
                ProviderType::Avaya => self.avaya.base_url(),
                ProviderType::Vonage => self.vonage.base_url(),
                ProviderType::Authvia => self.authvia.base_url(),
            };
            let url = reqwest::Url::parse(&simulator).expect("simulator URL");
            let to = Origin::parse(&url.origin().ascii_serialization()).expect("simulator origin");
            for domain in own_domains(provider) {
                let from = Origin::parse(&format!("https://*.{domain}")).expect("provider domain");
                redirects.push((from, to.clone()));
            }
        }
        EndpointPolicy {
            allowed_origins: Vec::new(),
            redirects,
        }
    }

    /// What a delivery to a path must prove: read from the subscriptions and Secrets in the store, so a
    /// rotation changes the expectation as it changes the provider. Paths are found through an index of
    /// endpoints (rebuilt when a path is not in it or no longer matches), not by copying every
    /// subscription under the store's lock for each delivery.
    fn resolver(&self) -> super::receiver::Resolver {
        let shared = self.emulator.shared();
        let index: Arc<std::sync::Mutex<std::collections::HashMap<String, (String, String)>>> = Arc::default();
        Arc::new(move |path: &str| {
            shared.with_state(|state| {
                let subs = state.resource("webhook-operator.dev", "v1alpha1", "webhooksubscriptions")?;
                let secrets = state.resource("", "v1", "secrets")?;
                fn endpoint_path(s: &Value) -> Option<&str> {
                    s["spec"]["endpoint"].as_str().map(super::url_path)
                }
                let find = |rebuild: bool| {
                    let mut index = index.lock().unwrap_or_else(|e| e.into_inner());
                    if rebuild {
                        *index = state
                            .stored_of(&subs)
                            .filter_map(|s| {
                                let key = (
                                    s["metadata"]["namespace"].as_str()?.to_string(),
                                    s["metadata"]["name"].as_str()?.to_string(),
                                );
                                Some((endpoint_path(s)?.to_string(), key))
                            })
                            .collect();
                    }
                    let (ns, name) = index.get(path)?.clone();
                    state
                        .get(&subs, &ns, &name)
                        .ok()
                        .filter(|s| endpoint_path(s) == Some(path))
                };
                let sub = find(false).or_else(|| find(true))?;
                let ns = sub["metadata"]["namespace"].as_str()?.to_string();
                let read = |selector: &Value| {
                    let secret = state.get(&secrets, &ns, selector["name"].as_str()?).ok()?;
                    decoded(&secret, selector["key"].as_str()?).map(SecretString::from)
                };
                let typed: WebhookSubscription = serde_json::from_value(sub).ok()?;
                match controller::bindings::subscription_block(&typed.spec).ok()? {
                    SubscriptionBlock::Avaya(a) => Some(Expectation::AvayaToken {
                        header: a.auth_token_header.clone(),
                        token: read(&json!(a.auth_token.as_ref()?.secret_key_ref))?,
                    }),
                    SubscriptionBlock::Vonage(v) => {
                        let secret = match &v.signing_secret {
                            Some(s) => read(&json!(s.secret_key_ref))?,
                            None => read(&json!({
                                "name": controller::bindings::vonage::generated_secret_name(&typed),
                                "key": controller::bindings::vonage::GENERATED_SECRET_KEY,
                            }))?,
                        };
                        Some(Expectation::VonageSecret(secret))
                    }
                    SubscriptionBlock::Authvia(a) => Some(Expectation::AuthviaSecret(read(&json!(
                        a.signing_secret.as_ref()?.secret_key_ref
                    ))?)),
                }
            })
        })
    }

    /// The subscriptions as the live view shows them.
    pub fn rows(&self) -> Vec<Row> {
        let now = Timestamp::now();
        let tallies = self.receiver.tallies();
        let subs = self.emulator.with_state(|s| {
            s.resource("webhook-operator.dev", "v1alpha1", "webhooksubscriptions")
                .map(|rt| s.objects_of(&rt))
                .unwrap_or_default()
        });
        let mut rows: Vec<Row> = subs
            .into_iter()
            .filter_map(|v| serde_json::from_value::<WebhookSubscription>(v).ok())
            .map(|sub| {
                let status = sub.status.clone().unwrap_or_default();
                let tally = tallies
                    .get(super::url_path(&sub.spec.endpoint))
                    .cloned()
                    .unwrap_or_default();
                let expires = status
                    .expires_at
                    .as_deref()
                    .and_then(|t| t.parse::<Timestamp>().ok())
                    .map(|t| {
                        let secs = t.duration_since(now).as_secs();
                        if secs >= 0 {
                            format!("in {secs}s")
                        } else {
                            format!("{}s ago", -secs)
                        }
                    })
                    .unwrap_or_else(|| "-".into());
                Row {
                    name: format!(
                        "{}/{}",
                        sub.metadata.namespace.clone().unwrap_or_default(),
                        sub.metadata.name.clone().unwrap_or_default()
                    ),
                    // The providerRef, as the PROVIDER column of `kubectl get` shows it: the block only
                    // says which API the subscription expects, not which provider it goes through.
                    provider: sub.spec.provider_ref.name.clone(),
                    ready: status
                        .conditions
                        .iter()
                        .find(|c| c.type_ == "Ready")
                        .map(|c| {
                            if c.status == "True" {
                                c.status.clone()
                            } else {
                                format!("{} ({})", c.status, c.reason)
                            }
                        })
                        .unwrap_or_else(|| "-".into()),
                    state: status.remote_state.clone().unwrap_or_else(|| "-".into()),
                    expires,
                    renewals: status.renewal_count.unwrap_or(0),
                    deliveries: tally.deliveries,
                    verified: tally.verified,
                    last: if tally.deliveries == 0 { "-".into() } else { tally.last },
                }
            })
            .collect();
        rows.sort_by(|a, b| a.name.cmp(&b.name));
        rows
    }

    /// Each simulator delivers a test event to each of its subscriptions, [`DELIVERY_CONCURRENCY`] at a
    /// time.
    pub async fn deliver_all(&self) {
        use futures::StreamExt as _;
        let avaya = self.avaya.subscriptions().into_iter().map(|s| s.id);
        let vonage = self.vonage.subscriptions().into_iter().map(|s| s.id);
        let authvia = self.authvia.subscriptions().into_iter().map(|s| s.id);
        let deliveries = avaya
            .map(|id| (ProviderType::Avaya, id))
            .chain(vonage.map(|id| (ProviderType::Vonage, id)))
            .chain(authvia.map(|id| (ProviderType::Authvia, id)));
        futures::stream::iter(deliveries)
            .for_each_concurrent(DELIVERY_CONCURRENCY, |(provider, id)| async move {
                // Exhaustive: a new provider's simulator must deliver too. The verdict is the receiver's.
                let _outcome = match provider {
                    ProviderType::Avaya => self.avaya.deliver(&id).await,
                    ProviderType::Vonage => self.vonage.deliver(&id).await,
                    ProviderType::Authvia => self.authvia.deliver(&id).await,
                };
            })
            .await;
    }

    /// The arguments of `webhook-operator run` against this sandbox from outside (with `--no-controller`):
    /// its kubeconfig, and the providers' own hosts redirected to the simulators.
    pub fn operator_args(&self) -> Vec<String> {
        let mut args = vec![
            "run".to_string(),
            "--kubeconfig".to_string(),
            self.options.kubeconfig.display().to_string(),
            "--cluster-resource-namespace".to_string(),
            OPERATOR_NAMESPACE.to_string(),
            "--metrics-addr".to_string(),
            "127.0.0.1:0".to_string(),
        ];
        for (from, to) in self.redirects().redirects {
            args.push("--redirect-provider-host".to_string());
            args.push(format!("{from}={to}"));
        }
        args
    }

    /// How to use it, printed once at start.
    pub fn banner(&self) -> String {
        let kubeconfig = self.options.kubeconfig.display();
        let outside = if self.options.controller {
            String::new()
        } else {
            format!(
                "  controller      not running here; start (and kill, and restart) it with
                  webhook-operator {}
",
                self.operator_args().join(" ")
            )
        };
        format!(
            "webhook-operator sandbox\n  Kubernetes API  {api} (emulated)\n  kubeconfig      {kubeconfig}\n  try             kubectl --kubeconfig {kubeconfig} get webhooksubscriptions -A -o wide\n  Avaya           {avaya} (token {avaya_token})\n  Vonage          {vonage} (token {vonage_token})\n  AuthVia         {authvia}\n  receiver        {receiver}\n  control         {control} (POST /faults/kubernetes, POST /faults/{{avaya|vonage|authvia}}, DELETE /faults, GET /subscriptions)\n{outside}  Avaya subscriptions live {lifetime}s here, so renewals show within a minute. Ctrl-C stops everything.\n",
            api = self.emulator.url(),
            avaya = self.avaya.base_url(),
            avaya_token = self.avaya.token_url(),
            vonage = self.vonage.base_url(),
            vonage_token = self.vonage.token_url(),
            authvia = self.authvia.base_url(),
            receiver = self.receiver.url(),
            control = self.control.url(),
            lifetime = self.options.lifetime.as_secs(),
        )
    }

    /// Runs the controller, deliveries and the live view until Ctrl-C or `exit_after`; returns the final rows.
    pub async fn run(self) -> Vec<Row> {
        let mut config = Config::new(OPERATOR_NAMESPACE, Arc::new(SystemClock));
        config.drift_interval = Duration::from_secs(60);
        config.instance = "sandbox".into();
        config.endpoints = self.redirects();
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let client = self.emulator.client();
        let in_process = self.options.controller;
        let controller = tokio::spawn(async move {
            if in_process {
                controller::run(client, config, async {
                    let _ = stop_rx.await;
                })
                .await;
            }
        });
        let interactive = std::io::stdout().is_terminal();
        let stop = async {
            match self.options.exit_after {
                Some(after) => {
                    tokio::select! {
                        _ = tokio::time::sleep(after) => {}
                        _ = controller::shutdown_signal() => {}
                    }
                }
                None => controller::shutdown_signal().await,
            }
        };
        tokio::pin!(stop);
        // Delivery rounds run beside the view and the stop signal, which never wait for a round.
        let mut deliveries = tokio::time::interval(self.options.delivery_interval);
        let delivering = async {
            loop {
                deliveries.tick().await;
                self.deliver_all().await;
            }
        };
        tokio::pin!(delivering);
        let mut redraw = tokio::time::interval(Duration::from_secs(1));
        let mut skip = 0;
        let mut last_lines: BTreeMap<String, String> = BTreeMap::new();
        loop {
            tokio::select! {
                _ = &mut stop => break,
                () = &mut delivering => {}
                _ = redraw.tick() => {
                    // Building the rows reads every subscription: with many, the view refreshes less often.
                    if skip > 0 {
                        skip -= 1;
                        continue;
                    }
                    let rows = self.rows();
                    skip = rows.len() / 1000;
                    if interactive {
                        let mut out = std::io::stdout().lock();
                        let _ = write!(out, "\x1b[H\x1b[2J{}\n{}", self.banner(), table(&rows));
                        let _ = out.flush();
                    } else {
                        // Plain output: one line per subscription whenever its line changes.
                        for row in &rows {
                            // The countdown alone is no news.
                            let key = plain(&Row { expires: String::new(), ..row.clone() }, false);
                            if last_lines.get(&row.name) != Some(&key) {
                                println!("{}", plain(row, false));
                                last_lines.insert(row.name.clone(), key);
                            }
                        }
                    }
                }
            }
        }
        let _ = stop_tx.send(());
        let _ = tokio::time::timeout(Duration::from_secs(10), controller).await;
        let rows = self.rows();
        self.emulator.stop().await;
        self.receiver.stop();
        rows
    }
}

/// The live view's table.
/// Whether a subscription's row calls for a look: not Ready, or its last delivery failed.
fn needs_attention(row: &Row) -> bool {
    row.ready != "True" || (row.deliveries > 0 && row.last != "verified")
}

/// The live view: every subscription while they fit the screen; beyond that the totals, then those that
/// need attention (not Ready, or whose last delivery failed), at most [`LIVE_VIEW_ROWS`] of them.
pub fn table(rows: &[Row]) -> String {
    if rows.len() <= LIVE_VIEW_ROWS {
        return rows_table(rows);
    }
    let mut by_provider: BTreeMap<&str, (usize, usize)> = BTreeMap::new();
    for row in rows {
        let entry = by_provider.entry(row.provider.as_str()).or_default();
        entry.0 += 1;
        entry.1 += usize::from(row.ready == "True");
    }
    let attention: Vec<Row> = rows.iter().filter(|r| needs_attention(r)).cloned().collect();
    let ready = rows.iter().filter(|r| r.ready == "True").count();
    let providers: Vec<String> = by_provider
        .iter()
        .map(|(p, (total, ready))| format!("{p} {ready}/{total}"))
        .collect();
    let mut out = format!(
        "{} subscriptions, {ready} Ready ({}); {} need attention\n",
        rows.len(),
        providers.join(", "),
        attention.len()
    );
    if !attention.is_empty() {
        out.push_str(&rows_table(&attention[..attention.len().min(LIVE_VIEW_ROWS)]));
        if attention.len() > LIVE_VIEW_ROWS {
            out.push_str(&format!("… and {} more\n", attention.len() - LIVE_VIEW_ROWS));
        }
    }
    out
}

fn rows_table(rows: &[Row]) -> String {
    let header = [
        "SUBSCRIPTION",
        "PROVIDER",
        "READY",
        "STATE",
        "EXPIRES",
        "RENEWALS",
        "DELIVERIES",
        "LAST DELIVERY",
    ];
    let cells: Vec<[String; 8]> = rows
        .iter()
        .map(|r| {
            [
                r.name.clone(),
                r.provider.clone(),
                r.ready.clone(),
                r.state.clone(),
                r.expires.clone(),
                r.renewals.to_string(),
                format!("{}/{} verified", r.verified, r.deliveries),
                r.last.clone(),
            ]
        })
        .collect();
    let mut widths = header.map(str::len);
    for row in &cells {
        for (i, c) in row.iter().enumerate() {
            widths[i] = widths[i].max(c.len());
        }
    }
    let line = |cols: Vec<&str>| {
        cols.iter()
            .enumerate()
            .map(|(i, c)| format!("{c:<w$}", w = widths[i]))
            .collect::<Vec<_>>()
            .join("  ")
            .trim_end()
            .to_string()
    };
    let mut out = line(header.to_vec());
    out.push('\n');
    for row in &cells {
        out.push_str(&line(row.iter().map(String::as_str).collect()));
        out.push('\n');
    }
    out
}

/// One row as `key=value` words (the plain view, and the summary when `summary` is set).
pub fn plain(row: &Row, summary: bool) -> String {
    format!(
        "{}{} provider={} ready={} state={} expires={} renewals={} deliveries={} verified={} last={}",
        if summary { "summary: " } else { "" },
        row.name,
        row.provider,
        row.ready.replace(' ', ""),
        row.state,
        row.expires.replace(' ', ""),
        row.renewals,
        row.deliveries,
        row.verified,
        row.last.replace(' ', "_"),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(i: usize, ready: &str, last: &str) -> Row {
        Row {
            name: format!("default/sub-{i:05}"),
            provider: ["avaya", "vonage", "authvia"][i % 3].into(),
            ready: ready.into(),
            state: "ACTIVE".into(),
            expires: "-".into(),
            renewals: 0,
            deliveries: usize::from(last != "-"),
            verified: usize::from(last == "verified"),
            last: last.into(),
        }
    }

    #[test]
    fn a_few_subscriptions_are_all_shown() {
        let rows: Vec<Row> = (0..3).map(|i| row(i, "True", "verified")).collect();
        let shown = table(&rows);
        assert_eq!(shown.lines().count(), 4, "{shown}");
    }

    #[test]
    fn many_subscriptions_show_totals_and_those_that_need_attention() {
        let mut rows: Vec<Row> = (0..10_000).map(|i| row(i, "True", "verified")).collect();
        rows[7] = row(7, "False (Unauthorized)", "-");
        rows[8] = row(8, "True", "bad signature");
        let shown = table(&rows);
        let lines: Vec<&str> = shown.lines().collect();
        assert!(
            lines[0].starts_with("10000 subscriptions, 9999 Ready (authvia 3333/3333, avaya 3334/3334, vonage 3332/3333); 2 need attention"),
            "{shown}"
        );
        assert_eq!(lines.len(), 4, "totals, header and the two: {shown}");
        assert!(lines[2].contains("sub-00007") && lines[3].contains("sub-00008"));
        // Never more than a screen.
        let failing: Vec<Row> = (0..10_000).map(|i| row(i, "False (Unavailable)", "-")).collect();
        let shown = table(&failing);
        assert_eq!(shown.lines().count(), 1 + 1 + LIVE_VIEW_ROWS + 1);
        assert!(shown.ends_with("… and 9970 more\n"), "{shown}");
    }
}
