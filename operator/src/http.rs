//! The operator's HTTP endpoints: `/metrics` (OpenMetrics), `/healthz` (the process runs),
//! `/readyz` (it reached the API server, the leader-election Lease is usable, and its controllers
//! are running or it is a standby).
//!
//! Contract: plain HTTP/1.1 on the given address; every other path is 404.

use crate::metrics::OperatorMetrics;
use http_body_util::Full;
use hyper::body::Bytes;
use hyper::{Request, Response, StatusCode};
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use tokio::net::TcpListener;

/// Shared state of the endpoints.
pub struct Probes {
    /// Set once the operator is ready.
    pub ready: AtomicBool,
    /// Metrics to serve.
    pub metrics: Arc<OperatorMetrics>,
}

fn respond(probes: &Probes, path: &str) -> Response<Full<Bytes>> {
    let (status, body, content_type) = match path {
        "/metrics" => {
            (StatusCode::OK, probes.metrics.encode(), "application/openmetrics-text; version=1.0.0; charset=utf-8")
        }
        "/healthz" => (StatusCode::OK, "ok\n".to_string(), "text/plain"),
        "/readyz" if probes.ready.load(Ordering::Relaxed) => (StatusCode::OK, "ok\n".to_string(), "text/plain"),
        "/readyz" => (StatusCode::SERVICE_UNAVAILABLE, "not ready\n".to_string(), "text/plain"),
        _ => (StatusCode::NOT_FOUND, "not found\n".to_string(), "text/plain"),
    };
    let mut response = Response::new(Full::new(Bytes::from(body)));
    *response.status_mut() = status;
    if let Ok(v) = http::HeaderValue::from_str(content_type) {
        response.headers_mut().insert(http::header::CONTENT_TYPE, v);
    }
    response
}

/// Binds `addr` and serves the probes until the task is dropped.
pub async fn serve(addr: SocketAddr, probes: Arc<Probes>) -> std::io::Result<tokio::task::JoinHandle<()>> {
    let listener = TcpListener::bind(addr).await?;
    tracing::info!(address = %listener.local_addr()?, "serving /metrics, /healthz, /readyz");
    Ok(tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else { continue };
            let probes = probes.clone();
            tokio::spawn(async move {
                let service = hyper::service::service_fn(move |req: Request<hyper::body::Incoming>| {
                    let response = respond(&probes, req.uri().path());
                    async move { Ok::<_, std::convert::Infallible>(response) }
                });
                let io = hyper_util::rt::TokioIo::new(stream);
                if let Err(e) = hyper::server::conn::http1::Builder::new().serve_connection(io, service).await {
                    tracing::debug!(error = %e, "probe connection ended");
                }
            });
        }
    }))
}
