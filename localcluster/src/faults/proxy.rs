//! The fault proxy server (see the parent module for its contract).
//!
//! Each accepted downstream connection gets its own upstream HTTP/1.1 connection, opened
//! lazily and reopened when closed; HTTP/1.1 serves one request at a time per connection, so
//! the upstream connection is free whenever the downstream sends its next request.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};

use http_body_util::{BodyExt, Full, combinators::BoxBody};
use hyper::body::{Bytes, Incoming};
use hyper::client::conn::http1::SendRequest;
use hyper::header::{CONTENT_TYPE, HeaderName};
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Mutex;
use tokio_rustls::{TlsAcceptor, TlsConnector};

use super::{FaultAction, FaultRule, decide};
use crate::LocalCluster;

/// Errors of the fault proxy.
#[derive(Debug, thiserror::Error)]
pub enum FaultError {
    /// The listening socket could not be bound.
    #[error("cannot bind the fault proxy on 127.0.0.1")]
    Bind(#[source] std::io::Error),
    /// The serving certificate could not be issued.
    #[error("cannot issue the fault proxy certificate")]
    Pki(#[source] crate::pki::PkiError),
    /// A PEM could not be parsed.
    #[error("cannot parse PEM of {what}")]
    Pem {
        /// What was parsed.
        what: String,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// TLS configuration failed.
    #[error("TLS configuration")]
    Tls(#[source] rustls::Error),
    /// A kubeconfig could not be rewritten.
    #[error("cannot write a proxied kubeconfig")]
    Kubeconfig(#[source] crate::kubeconfig::KubeconfigError),
    /// The kubeconfig does not authenticate with a bearer token.
    #[error("{path} has no bearer token: the fault proxy forwards tokens, not client certificates")]
    NoToken {
        /// The kubeconfig.
        path: PathBuf,
    },
    /// The kubeconfig could not be read.
    #[error("cannot read kubeconfig {path}")]
    ReadKubeconfig {
        /// The kubeconfig.
        path: PathBuf,
        /// The cause.
        #[source]
        source: kube::config::KubeconfigError,
    },
}

/// Counters of what the proxy did since start (or the last [`FaultProxy::reset_stats`]).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FaultStats {
    /// Requests received.
    pub requests: u64,
    /// Requests answered with an injected status.
    pub injected_status: u64,
    /// Requests whose connection was dropped.
    pub dropped: u64,
    /// Requests delayed.
    pub delayed: u64,
}

#[derive(Default)]
struct State {
    rules: RwLock<Vec<FaultRule>>,
    requests: AtomicU64,
    injected_status: AtomicU64,
    dropped: AtomicU64,
    delayed: AtomicU64,
}

/// A running fault proxy; stopped on drop.
pub struct FaultProxy {
    addr: SocketAddr,
    state: Arc<State>,
    task: tokio::task::JoinHandle<()>,
}

impl std::fmt::Debug for FaultProxy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FaultProxy").field("addr", &self.addr).finish()
    }
}

type ProxyBody = BoxBody<Bytes, hyper::Error>;

fn pem_err(what: &str) -> impl FnOnce(std::io::Error) -> FaultError + '_ {
    move |source| FaultError::Pem { what: what.to_string(), source }
}

impl FaultProxy {
    /// Starts a proxy in front of `cluster`'s API server on a free 127.0.0.1 port, with no
    /// faults. Must be called within a tokio runtime.
    pub async fn start(cluster: &LocalCluster) -> Result<FaultProxy, FaultError> {
        let cert = cluster.pki().issue_server("fault-proxy", &["127.0.0.1", "localhost"]).map_err(FaultError::Pki)?;
        let certs: Vec<CertificateDer<'static>> = rustls_pemfile::certs(&mut cert.cert_pem.as_bytes())
            .collect::<Result<_, _>>()
            .map_err(pem_err("proxy certificate"))?;
        let key: PrivateKeyDer<'static> = rustls_pemfile::private_key(&mut cert.key_pem.as_bytes())
            .map_err(pem_err("proxy key"))?
            .ok_or_else(|| pem_err("proxy key")(std::io::Error::other("no key")))?;
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut server = rustls::ServerConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .map_err(FaultError::Tls)?
            .with_no_client_auth()
            .with_single_cert(certs, key)
            .map_err(FaultError::Tls)?;
        server.alpn_protocols = vec![b"http/1.1".to_vec()];

        let mut roots = rustls::RootCertStore::empty();
        for ca in rustls_pemfile::certs(&mut cluster.pki().ca_pem().as_bytes()) {
            roots.add(ca.map_err(pem_err("cluster CA"))?).map_err(FaultError::Tls)?;
        }
        let mut client = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(FaultError::Tls)?
            .with_root_certificates(roots)
            .with_no_client_auth();
        client.alpn_protocols = vec![b"http/1.1".to_vec()];

        let listener = TcpListener::bind(("127.0.0.1", 0)).await.map_err(FaultError::Bind)?;
        let addr = listener.local_addr().map_err(FaultError::Bind)?;
        let state = Arc::new(State::default());
        let upstream = UpstreamTarget {
            addr: SocketAddr::from(([127, 0, 0, 1], cluster.ports().apiserver)),
            connector: TlsConnector::from(Arc::new(client)),
        };
        let task = tokio::spawn(serve(listener, TlsAcceptor::from(Arc::new(server)), upstream, state.clone()));
        Ok(FaultProxy { addr, state, task })
    }

    /// The proxy's address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The proxy's URL, `https://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("https://{}", self.addr)
    }

    /// Replaces the fault rules (takes effect for the next request).
    pub fn set_rules(&self, rules: Vec<FaultRule>) {
        *self.state.rules.write().unwrap_or_else(|p| p.into_inner()) = rules;
    }

    /// Removes every fault rule.
    pub fn clear(&self) {
        self.set_rules(Vec::new());
    }

    /// The counters.
    pub fn stats(&self) -> FaultStats {
        let s = &self.state;
        FaultStats {
            requests: s.requests.load(Ordering::Relaxed),
            injected_status: s.injected_status.load(Ordering::Relaxed),
            dropped: s.dropped.load(Ordering::Relaxed),
            delayed: s.delayed.load(Ordering::Relaxed),
        }
    }

    /// Resets the counters.
    pub fn reset_stats(&self) {
        let s = &self.state;
        for c in [&s.requests, &s.injected_status, &s.dropped, &s.delayed] {
            c.store(0, Ordering::Relaxed);
        }
    }

    /// Writes `<token_kubeconfig>.proxied` — the token kubeconfig with its server replaced by
    /// this proxy — and returns its path. Fails unless the kubeconfig uses a bearer token.
    pub fn kubeconfig_for(&self, token_kubeconfig: &Path) -> Result<PathBuf, FaultError> {
        let config = kube::config::Kubeconfig::read_from(token_kubeconfig)
            .map_err(|source| FaultError::ReadKubeconfig { path: token_kubeconfig.to_path_buf(), source })?;
        let has_token = config.auth_infos.iter().any(|a| a.auth_info.as_ref().is_some_and(|i| i.token.is_some()));
        if !has_token {
            return Err(FaultError::NoToken { path: token_kubeconfig.to_path_buf() });
        }
        let mut out = token_kubeconfig.as_os_str().to_owned();
        out.push(".proxied");
        let out = PathBuf::from(out);
        crate::kubeconfig::rewrite_server(token_kubeconfig, &out, &self.url()).map_err(FaultError::Kubeconfig)?;
        Ok(out)
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

#[derive(Clone)]
struct UpstreamTarget {
    addr: SocketAddr,
    connector: TlsConnector,
}

impl UpstreamTarget {
    async fn connect(&self) -> std::io::Result<SendRequest<Incoming>> {
        let tcp = TcpStream::connect(self.addr).await?;
        tcp.set_nodelay(true)?;
        let name = ServerName::IpAddress(self.addr.ip().into());
        let tls = self.connector.connect(name, tcp).await?;
        let (sender, conn) =
            hyper::client::conn::http1::handshake(TokioIo::new(tls)).await.map_err(std::io::Error::other)?;
        tokio::spawn(async move {
            if let Err(e) = conn.await {
                tracing::debug!(error = %e, "fault proxy upstream connection ended");
            }
        });
        Ok(sender)
    }
}

async fn serve(listener: TcpListener, acceptor: TlsAcceptor, up: UpstreamTarget, state: Arc<State>) {
    loop {
        let (tcp, _) = match listener.accept().await {
            Ok(conn) => conn,
            Err(e) => {
                tracing::warn!(error = %e, "fault proxy accept");
                continue;
            }
        };
        let _ = tcp.set_nodelay(true);
        let acceptor = acceptor.clone();
        let up = up.clone();
        let state = state.clone();
        tokio::spawn(async move {
            let tls = match acceptor.accept(tcp).await {
                Ok(tls) => tls,
                Err(e) => {
                    tracing::debug!(error = %e, "fault proxy TLS accept");
                    return;
                }
            };
            let sender: Arc<Mutex<Option<SendRequest<Incoming>>>> = Arc::new(Mutex::new(None));
            let service = service_fn(move |req| handle(req, up.clone(), sender.clone(), state.clone()));
            if let Err(e) =
                hyper::server::conn::http1::Builder::new().serve_connection(TokioIo::new(tls), service).await
            {
                tracing::debug!(error = %e, "fault proxy connection ended");
            }
        });
    }
}

fn status_response(code: u16) -> Response<ProxyBody> {
    let status = StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let reason = match code {
        409 => "Conflict",
        429 => "TooManyRequests",
        503 => "ServiceUnavailable",
        504 => "Timeout",
        _ => "InternalError",
    };
    let body = serde_json::json!({
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": format!("injected fault: {code}"),
        "reason": reason,
        "code": code,
    });
    let mut resp = Response::new(Full::new(Bytes::from(body.to_string())).map_err(|never| match never {}).boxed());
    *resp.status_mut() = status;
    resp.headers_mut().insert(CONTENT_TYPE, hyper::header::HeaderValue::from_static("application/json"));
    if code == 429 {
        resp.headers_mut().insert(hyper::header::RETRY_AFTER, hyper::header::HeaderValue::from_static("1"));
    }
    resp
}

const HOP_BY_HOP: [&str; 6] = ["connection", "keep-alive", "proxy-connection", "upgrade", "te", "trailer"];

async fn handle(
    mut req: Request<Incoming>,
    up: UpstreamTarget,
    sender: Arc<Mutex<Option<SendRequest<Incoming>>>>,
    state: Arc<State>,
) -> Result<Response<ProxyBody>, std::io::Error> {
    state.requests.fetch_add(1, Ordering::Relaxed);
    let decision = {
        let rules = state.rules.read().unwrap_or_else(|p| p.into_inner());
        decide(&rules, req.method().as_str(), req.uri().path(), rand::random::<f64>)
    };
    if !decision.delay.is_zero() {
        state.delayed.fetch_add(1, Ordering::Relaxed);
        tokio::time::sleep(decision.delay).await;
    }
    match decision.failure {
        Some(FaultAction::Status(code)) => {
            state.injected_status.fetch_add(1, Ordering::Relaxed);
            return Ok(status_response(code));
        }
        Some(FaultAction::Drop) => {
            state.dropped.fetch_add(1, Ordering::Relaxed);
            return Err(std::io::Error::other("injected connection drop"));
        }
        Some(FaultAction::Latency(_)) | None => {}
    }
    for name in HOP_BY_HOP {
        req.headers_mut().remove(HeaderName::from_static(name));
    }
    let resp = {
        let mut guard = sender.lock().await;
        let reusable = guard.as_ref().is_some_and(|s| !s.is_closed());
        if !reusable {
            *guard = Some(up.connect().await?);
        }
        let Some(s) = guard.as_mut() else {
            return Err(std::io::Error::other("no upstream connection"));
        };
        s.ready().await.map_err(std::io::Error::other)?;
        s.send_request(req).await.map_err(std::io::Error::other)?
    };
    Ok(resp.map(|body| body.boxed()))
}
