//! A minimal external-metrics API server (`external.metrics.k8s.io/v1beta1`) on 127.0.0.1, for
//! driving the real HorizontalPodAutoscaler from a replayed trace.
//!
//! Contract: [`MetricsAdapter::start`] listens on a free 127.0.0.1 port over TLS (HTTP/1.1, a
//! self-signed certificate for 127.0.0.1 made by rcgen) and answers what the aggregator and the
//! HPA ask: `/apis`, `/apis/external.metrics.k8s.io`, `/apis/external.metrics.k8s.io/v1beta1`,
//! `/healthz` (`/readyz`, `/livez`), minimal `/openapi/v2` and `/openapi/v3`, and
//! `GET /apis/external.metrics.k8s.io/v1beta1/namespaces/NS/METRIC` with an
//! `ExternalMetricValueList` of one item whose value is the [`MetricFn`]'s answer at the moment
//! of the request (rounded to milli-units); a metric the function does not know is a 404.
//! Every metric request is logged with its arrival [`Instant`] ([`MetricsAdapter::requests`]),
//! so a test can see when the HPA synced. [`MetricsAdapter::register`] wires it into a cluster
//! the loopback way (a `type: ExternalName` Service with `externalName: 127.0.0.1` and a named
//! port, an `APIService` with `insecureSkipTLSVerify`) and waits for `Available=True`. Nothing
//! connects to a pod or Service IP. The server task stops when the adapter is dropped.

use http_body_util::Full;
use hyper::body::Bytes;
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use kube::api::{Api, DynamicObject, Patch, PatchParams};
use kube::core::{ApiResource, GroupVersionKind};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use serde_json::{Value, json};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;

/// The value of metric `name` (first argument) at an instant; `None`: no such metric.
pub type MetricFn = Arc<dyn Fn(&str, Instant) -> Option<f64> + Send + Sync>;

/// The APIService name the adapter registers.
pub const API_SERVICE: &str = "v1beta1.external.metrics.k8s.io";

/// Why the adapter could not start or register.
#[derive(Debug, thiserror::Error)]
pub enum AdapterError {
    /// Certificate generation failed.
    #[error("adapter certificate: {0}")]
    Cert(#[from] rcgen::Error),
    /// TLS configuration failed.
    #[error("adapter TLS: {0}")]
    Tls(#[from] rustls::Error),
    /// Binding the listener failed.
    #[error("adapter listener: {0}")]
    Io(#[from] std::io::Error),
    /// The cluster refused an object.
    #[error("registering the adapter: {0}")]
    Kube(#[from] kube::Error),
    /// The APIService did not become Available.
    #[error("APIService {API_SERVICE} not Available after {0:?}: {1}")]
    NotAvailable(Duration, String),
}

/// A running adapter.
pub struct MetricsAdapter {
    port: u16,
    requests: Arc<Mutex<Vec<(String, Instant)>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for MetricsAdapter {
    fn drop(&mut self) {
        self.task.abort();
    }
}

struct State {
    metric: MetricFn,
    requests: Arc<Mutex<Vec<(String, Instant)>>>,
}

impl MetricsAdapter {
    /// Starts the adapter on a free 127.0.0.1 port. Must be called within a tokio runtime.
    pub async fn start(metric: MetricFn) -> Result<MetricsAdapter, AdapterError> {
        let key = rcgen::generate_simple_self_signed(vec!["127.0.0.1".to_string(), "localhost".to_string()])?;
        let certs = vec![CertificateDer::from(key.cert.der().to_vec())];
        let der = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.signing_key.serialize_der()));
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut server = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()?
            .with_no_client_auth()
            .with_single_cert(certs, der)?;
        server.alpn_protocols = vec![b"http/1.1".to_vec()];
        let acceptor = TlsAcceptor::from(Arc::new(server));
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let port = listener.local_addr()?.port();
        let requests = Arc::new(Mutex::new(Vec::new()));
        let state = Arc::new(State { metric, requests: requests.clone() });
        let task = tokio::spawn(async move {
            loop {
                let Ok((tcp, _)) = listener.accept().await else { continue };
                let acceptor = acceptor.clone();
                let state = state.clone();
                tokio::spawn(async move {
                    let Ok(tls) = acceptor.accept(tcp).await else { return };
                    let service = service_fn(move |req| {
                        let state = state.clone();
                        async move { Ok::<_, std::convert::Infallible>(handle(&req, &state)) }
                    });
                    let _ =
                        hyper::server::conn::http1::Builder::new().serve_connection(TokioIo::new(tls), service).await;
                });
            }
        });
        Ok(MetricsAdapter { port, requests, task })
    }

    /// The port on 127.0.0.1.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Metric requests so far: (metric name, arrival), in order.
    pub fn requests(&self) -> Vec<(String, Instant)> {
        self.requests.lock().map(|r| r.clone()).unwrap_or_default()
    }

    /// Creates the ExternalName Service `external-metrics` in `namespace` (which must exist) and
    /// the APIService, then waits up to `timeout` for `Available=True`.
    pub async fn register(
        &self,
        client: &kube::Client,
        namespace: &str,
        timeout: Duration,
    ) -> Result<(), AdapterError> {
        let pp = PatchParams::apply("metrics-adapter").force();
        let service = json!({"apiVersion": "v1", "kind": "Service",
            "metadata": {"name": "external-metrics", "namespace": namespace},
            "spec": {"type": "ExternalName", "externalName": "127.0.0.1",
                     "ports": [{"name": "https", "port": self.port, "protocol": "TCP"}]}});
        let services: Api<DynamicObject> = Api::namespaced_with(
            client.clone(),
            namespace,
            &ApiResource::erase::<k8s_openapi::api::core::v1::Service>(&()),
        );
        services.patch("external-metrics", &pp, &Patch::Apply(&service)).await?;
        let gvk = GroupVersionKind::gvk("apiregistration.k8s.io", "v1", "APIService");
        let ar = ApiResource::from_gvk_with_plural(&gvk, "apiservices");
        let api_services: Api<DynamicObject> = Api::all_with(client.clone(), &ar);
        let api_service = json!({"apiVersion": "apiregistration.k8s.io/v1", "kind": "APIService",
            "metadata": {"name": API_SERVICE},
            "spec": {"group": "external.metrics.k8s.io", "version": "v1beta1",
                     "service": {"name": "external-metrics", "namespace": namespace, "port": self.port},
                     "insecureSkipTLSVerify": true, "groupPriorityMinimum": 100, "versionPriority": 100}});
        api_services.patch(API_SERVICE, &pp, &Patch::Apply(&api_service)).await?;
        let start = Instant::now();
        let mut last = String::from("no status yet");
        while start.elapsed() < timeout {
            if let Ok(obj) = api_services.get(API_SERVICE).await {
                let conditions = obj.data["status"]["conditions"].as_array().cloned().unwrap_or_default();
                if let Some(c) = conditions.iter().find(|c| c["type"] == "Available") {
                    if c["status"] == "True" {
                        return Ok(());
                    }
                    last = format!("{}: {}", c["reason"], c["message"]);
                }
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        Err(AdapterError::NotAvailable(timeout, last))
    }
}

fn reply(status: StatusCode, body: &Value) -> Response<Full<Bytes>> {
    let mut resp = Response::new(Full::new(Bytes::from(body.to_string())));
    *resp.status_mut() = status;
    resp.headers_mut().insert(hyper::header::CONTENT_TYPE, hyper::header::HeaderValue::from_static("application/json"));
    resp
}

fn not_found(path: &str) -> Response<Full<Bytes>> {
    reply(
        StatusCode::NOT_FOUND,
        &json!({"kind": "Status", "apiVersion": "v1", "status": "Failure", "reason": "NotFound", "code": 404,
                "message": format!("{path} not found")}),
    )
}

fn handle(req: &Request<hyper::body::Incoming>, state: &State) -> Response<Full<Bytes>> {
    let path = req.uri().path().trim_end_matches('/');
    let group_version = json!({"groupVersion": "external.metrics.k8s.io/v1beta1", "version": "v1beta1"});
    let group = json!({"kind": "APIGroup", "apiVersion": "v1", "name": "external.metrics.k8s.io",
        "versions": [group_version], "preferredVersion": group_version});
    match path {
        "/healthz" | "/readyz" | "/livez" => {
            let mut resp = Response::new(Full::new(Bytes::from_static(b"ok")));
            resp.headers_mut()
                .insert(hyper::header::CONTENT_TYPE, hyper::header::HeaderValue::from_static("text/plain"));
            resp
        }
        "/apis" => reply(StatusCode::OK, &json!({"kind": "APIGroupList", "apiVersion": "v1", "groups": [group]})),
        "/apis/external.metrics.k8s.io" => reply(StatusCode::OK, &group),
        "/apis/external.metrics.k8s.io/v1beta1" => reply(
            StatusCode::OK,
            &json!({"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": "external.metrics.k8s.io/v1beta1",
                "resources": [{"name": "*", "singularName": "", "namespaced": true,
                               "kind": "ExternalMetricValueList", "verbs": ["get"]}]}),
        ),
        "/openapi/v2" => reply(
            StatusCode::OK,
            &json!({"swagger": "2.0", "info": {"title": "mall-e2e metrics adapter", "version": "v1beta1"}, "paths": {}}),
        ),
        "/openapi/v3" => reply(StatusCode::OK, &json!({"paths": {}})),
        _ => {
            let Some(rest) = path.strip_prefix("/apis/external.metrics.k8s.io/v1beta1/namespaces/") else {
                return not_found(path);
            };
            let Some((_, metric)) = rest.split_once('/') else { return not_found(path) };
            let now = Instant::now();
            let Some(value) = (state.metric)(metric, now) else { return not_found(path) };
            if let Ok(mut log) = state.requests.lock() {
                log.push((metric.to_string(), now));
            }
            let milli = (value * 1000.0).round().max(0.0) as i64;
            let timestamp = chrono::Utc::now().format("%Y-%m-%dT%H:%M:%SZ").to_string();
            reply(
                StatusCode::OK,
                &json!({"kind": "ExternalMetricValueList", "apiVersion": "external.metrics.k8s.io/v1beta1",
                    "metadata": {}, "items": [{"metricName": metric, "metricLabels": {},
                    "timestamp": timestamp, "value": format!("{milli}m")}]}),
            )
        }
    }
}
