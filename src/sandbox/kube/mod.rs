//! The emulated Kubernetes API: enough of a kube-apiserver that kube 5 (client, watcher, Controller,
//! finalizer helper, events Recorder) and real kubectl behave against it as against a cluster.

mod error;
mod http;
mod openapi;
pub mod rbac;
mod resources;
pub mod schema;
mod selectors;
mod store;
mod table;

use std::net::SocketAddr;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::Value;
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

pub use error::ApiError;
pub use http::{AuditRecord, FaultAction, FaultRule, RequestRecord, ServerConfig, WatchControl, WatchDelivery};
pub use store::{PatchKind, State, StoreOptions, Writer};

pub use http::Shared;

/// How to start the emulated API server.
#[derive(Clone, Debug)]
pub struct EmulatorOptions {
    /// Address to listen on; port 0 picks a free one.
    pub listen: SocketAddr,
    /// Store behaviour.
    pub store: StoreOptions,
    /// Server behaviour.
    pub server: ServerConfig,
}

impl Default for EmulatorOptions {
    fn default() -> Self {
        EmulatorOptions {
            listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            store: StoreOptions::default(),
            server: ServerConfig {
                minor_version: "35".into(),
                bookmark_interval: Duration::from_secs(60),
            },
        }
    }
}

/// A running emulated API server and the test hooks into it.
pub struct Emulator {
    addr: SocketAddr,
    shared: Arc<Shared>,
    server: Mutex<Option<(oneshot::Sender<()>, JoinHandle<()>)>>,
}

impl Emulator {
    /// Binds and starts serving.
    pub async fn start(options: EmulatorOptions) -> std::io::Result<Emulator> {
        let listener = TcpListener::bind(options.listen).await?;
        let addr = listener.local_addr()?;
        let shared = Arc::new(Shared::new(State::new(options.store), options.server));
        let emulator = Emulator {
            addr,
            shared,
            server: Mutex::new(None),
        };
        emulator.serve(listener);
        Ok(emulator)
    }

    fn serve(&self, listener: TcpListener) {
        let shared = self.shared.clone();
        let app = axum::Router::new().fallback(move |request| http::handle(shared.clone(), request));
        *self.server.lock().expect("server slot") = Some(super::spawn_server(listener, app));
    }

    /// The address it listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The server URL for clients.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// A kubeconfig that points at this server (context namespace `default`, no credentials).
    pub fn kubeconfig(&self) -> String {
        format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: webhook-operator-sandbox\n  cluster:\n    server: {url}\nusers:\n- name: sandbox\n  user: {{}}\ncontexts:\n- name: webhook-operator-sandbox\n  context:\n    cluster: webhook-operator-sandbox\n    user: sandbox\n    namespace: default\ncurrent-context: webhook-operator-sandbox\n",
            url = self.url()
        )
    }

    /// Writes the kubeconfig to `path`.
    pub fn write_kubeconfig(&self, path: &Path) -> std::io::Result<()> {
        if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::create_dir_all(parent)?;
        }
        std::fs::write(path, self.kubeconfig())
    }

    /// A kube client for this server.
    pub fn client(&self) -> kube::Client {
        let mut config = kube::Config::new(self.url().parse().expect("server URL is a valid URI"));
        crate::controller::identify(&mut config);
        kube::Client::try_from(config).expect("client for the emulated API server")
    }

    /// A handle to the shared state that callbacks can keep (e.g. the sandbox receiver's resolver).
    pub fn shared(&self) -> Arc<Shared> {
        self.shared.clone()
    }

    /// Direct access to the store (bypasses HTTP, still notifies watches).
    pub fn with_state<T>(&self, f: impl FnOnce(&mut State) -> T) -> T {
        self.shared.with_state(f)
    }

    /// Reads an object directly from the store.
    pub fn get(&self, group: &str, version: &str, plural: &str, namespace: &str, name: &str) -> Option<Value> {
        self.with_state(|s| {
            s.resource(group, version, plural)
                .and_then(|rt| s.get(&rt, namespace, name).ok())
        })
    }

    /// Polls the store until `predicate` holds for the object (None: absent), or the timeout passes.
    #[allow(clippy::too_many_arguments)]
    pub async fn wait_for(
        &self,
        group: &str,
        version: &str,
        plural: &str,
        namespace: &str,
        name: &str,
        timeout: Duration,
        predicate: impl Fn(Option<&Value>) -> bool,
    ) -> Result<Option<Value>, Option<Value>> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let object = self.get(group, version, plural, namespace, name);
            if predicate(object.as_ref()) {
                return Ok(object);
            }
            if tokio::time::Instant::now() >= deadline {
                return Err(object);
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Every request served so far.
    pub fn requests(&self) -> Vec<RequestRecord> {
        self.shared.requests.lock().expect("request log").clone()
    }

    /// The authorization decisions on impersonated requests, oldest first.
    pub fn audit(&self) -> Vec<AuditRecord> {
        self.shared.audit.lock().expect("audit log").clone()
    }

    /// A kube client that acts as `user` (`Impersonate-User`), authorized by the RBAC objects held.
    pub fn client_as(&self, user: &str) -> kube::Client {
        let mut config = kube::Config::new(self.url().parse().expect("server URL is a valid URI"));
        crate::controller::identify(&mut config);
        config.headers.push((
            reqwest::header::HeaderName::from_static("impersonate-user"),
            reqwest::header::HeaderValue::from_str(user).expect("a user name is a header value"),
        ));
        kube::Client::try_from(config).expect("client for the emulated API server")
    }

    /// Forgets the request log.
    pub fn clear_requests(&self) {
        self.shared.requests.lock().expect("request log").clear();
    }

    /// Adds a request fault rule.
    pub fn inject_fault(&self, rule: FaultRule) {
        self.shared.faults.lock().expect("fault rules").push(rule);
    }

    /// Removes every fault rule.
    pub fn clear_faults(&self) {
        self.shared.faults.lock().expect("fault rules").clear();
    }

    /// Sends a command to every open watch.
    pub fn control_watches(&self, command: WatchControl) {
        let _ = self.shared.watch_control.send(command);
    }

    /// Pauses or delays the delivery of watch events (held events are delivered in order afterwards).
    pub fn set_watch_delivery(&self, delivery: WatchDelivery) {
        self.shared.watch_delivery.send_replace(delivery);
    }

    /// The next `times` writes to the named object get 409 Conflict, as if another actor had written first.
    pub fn inject_conflicts(&self, plural: &str, name: &str, times: u32) {
        let mut error = ApiError::new(
            409,
            "Conflict",
            format!(
                "Operation cannot be fulfilled on {plural} \"{name}\": the object has been modified; please apply your changes to the latest version and try again"
            ),
        );
        error.details = serde_json::json!({"name": name, "kind": plural});
        let path = format!("/{}/{}(/status)?$", regex::escape(plural), regex::escape(name));
        self.inject_fault(
            FaultRule::new(FaultAction::Fail(error))
                .methods(&[axum::http::Method::PUT, axum::http::Method::PATCH])
                .path(&path)
                .times(times),
        );
    }

    /// Compacts the event log: watches resuming from an older revision get an in-stream 410.
    pub fn compact(&self) {
        self.with_state(State::compact);
    }

    /// Stops serving (an outage): open connections are closed, the store is kept.
    pub async fn stop(&self) {
        self.control_watches(WatchControl::Abort);
        let server = self.server.lock().expect("server slot").take();
        if let Some((stop, task)) = server {
            let _ = stop.send(());
            let _ = tokio::time::timeout(Duration::from_secs(5), task).await;
        }
    }

    /// Serves again on the same port with the same store.
    pub async fn restart(&self) -> std::io::Result<()> {
        let listener = TcpListener::bind(self.addr).await?;
        self.serve(listener);
        Ok(())
    }
}
