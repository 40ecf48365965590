//! The sandbox: an emulated Kubernetes API and provider simulators, so the real operator and real kubectl
//! run on one machine without a cluster or provider accounts. Behind the default `sandbox` feature.

pub mod control;
pub mod kube;
pub mod providers;
pub mod receiver;
pub mod system;

use std::net::SocketAddr;
use std::sync::Mutex;

use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// The path (and query) of a URL: what tells the receiver which subscription a delivery is for.
pub fn url_path(url: &str) -> &str {
    let rest = url.split_once("://").map(|(_, r)| r).unwrap_or(url);
    rest.find('/').map(|i| &rest[i..]).unwrap_or("/")
}

/// Serves `app` on `listener` until the returned sender fires or is dropped.
pub(crate) fn spawn_server(listener: TcpListener, app: axum::Router) -> (oneshot::Sender<()>, JoinHandle<()>) {
    let (stop_tx, stop_rx) = oneshot::channel::<()>();
    let task = tokio::spawn(async move {
        let _ = axum::serve(listener, app)
            .with_graceful_shutdown(async {
                let _ = stop_rx.await;
            })
            .await;
    });
    (stop_tx, task)
}

/// An HTTP server of the sandbox on 127.0.0.1 (a simulator, the receiver), stopped on `stop` or drop.
#[derive(Debug)]
pub struct LocalServer {
    addr: SocketAddr,
    stop: Mutex<Option<oneshot::Sender<()>>>,
}

impl LocalServer {
    /// Binds `listen` (port 0: any free port) and serves `app`.
    pub async fn start(listen: SocketAddr, app: axum::Router) -> std::io::Result<LocalServer> {
        let listener = TcpListener::bind(listen).await?;
        let addr = listener.local_addr()?;
        let (stop, _task) = spawn_server(listener, app);
        Ok(LocalServer {
            addr,
            stop: Mutex::new(Some(stop)),
        })
    }

    /// `http://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Stops serving.
    pub fn stop(&self) {
        if let Some(stop) = self.stop.lock().expect("stop").take() {
            let _ = stop.send(());
        }
    }
}

impl Drop for LocalServer {
    fn drop(&mut self) {
        self.stop();
    }
}

/// How many requests a request log keeps: the most recent ones (a sandbox left running for days must not
/// grow without bound; tests and the benchmark clear the logs long before this).
pub const REQUEST_LOG_LIMIT: usize = 100_000;

/// Appends to a request log, dropping the oldest tenth when it is full.
pub fn push_bounded<T>(log: &mut Vec<T>, entry: T) {
    if log.len() >= REQUEST_LOG_LIMIT {
        log.drain(..REQUEST_LOG_LIMIT / 10);
    }
    log.push(entry);
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_request_log_keeps_the_most_recent_entries() {
        let mut log = Vec::new();
        for i in 0..super::REQUEST_LOG_LIMIT + 5 {
            super::push_bounded(&mut log, i);
        }
        assert!(log.len() <= super::REQUEST_LOG_LIMIT);
        assert_eq!(log.last(), Some(&(super::REQUEST_LOG_LIMIT + 4)));
        assert_eq!(log.first(), Some(&(super::REQUEST_LOG_LIMIT / 10)));
    }
}
