//! `/metrics`, `/healthz` (`/livez`) and `/readyz` over HTTP, served by axum: GET only (other methods get
//! 405 with `Allow`), anything else 404; axum's server keeps accepting after transient accept errors
//! (such as running out of file descriptors) with a pause instead of spinning.

use std::net::SocketAddr;

use axum::Router;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;

/// The OpenMetrics text format's media type.
const OPENMETRICS: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

fn text(status: StatusCode, body: String) -> Response {
    (status, [(header::CONTENT_TYPE, "text/plain; charset=utf-8")], body).into_response()
}

async fn metrics() -> Response {
    ([(header::CONTENT_TYPE, OPENMETRICS)], super::render()).into_response()
}

async fn healthz() -> Response {
    match super::health().stalled() {
        None => text(StatusCode::OK, "ok\n".into()),
        Some(why) => text(StatusCode::SERVICE_UNAVAILABLE, why),
    }
}

async fn readyz() -> Response {
    match super::health().not_ready() {
        None => text(StatusCode::OK, "ok\n".into()),
        Some(why) => text(StatusCode::SERVICE_UNAVAILABLE, why),
    }
}

/// The telemetry routes.
pub fn router() -> Router {
    Router::new()
        .route("/metrics", get(metrics))
        .route("/healthz", get(healthz))
        .route("/livez", get(healthz))
        .route("/readyz", get(readyz))
        .fallback(|| async { text(StatusCode::NOT_FOUND, "not found\n".into()) })
}

/// Serves the telemetry endpoints on `addr` until the process ends; returns the bound address.
pub async fn serve(addr: SocketAddr) -> std::io::Result<SocketAddr> {
    let listener = tokio::net::TcpListener::bind(addr).await?;
    let bound = listener.local_addr()?;
    tokio::spawn(async move {
        if let Err(e) = axum::serve(listener, router()).await {
            tracing::error!(error = %e, "the telemetry server stopped");
        }
    });
    Ok(bound)
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    async fn request(addr: SocketAddr, method: &str, path: &str) -> String {
        let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
        stream
            .write_all(format!("{method} {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").as_bytes())
            .await
            .unwrap();
        let mut response = String::new();
        stream.read_to_string(&mut response).await.unwrap();
        response
    }

    #[tokio::test]
    async fn endpoints_answer_over_http() {
        let addr = serve(SocketAddr::from(([127, 0, 0, 1], 0))).await.unwrap();
        assert!(request(addr, "GET", "/healthz").await.starts_with("HTTP/1.1 200 OK"));
        assert!(request(addr, "GET", "/nope").await.starts_with("HTTP/1.1 404"));
        let refused = request(addr, "POST", "/metrics").await;
        assert!(refused.starts_with("HTTP/1.1 405"), "{refused}");
        assert!(refused.to_lowercase().contains("allow: get,head"), "{refused}");
        let metrics = request(addr, "GET", "/metrics").await;
        assert!(metrics.contains("application/openmetrics-text"), "{metrics}");
        assert!(metrics.contains("# TYPE webhook_operator_build info"), "{metrics}");
    }
}
