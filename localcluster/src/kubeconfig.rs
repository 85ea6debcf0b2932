//! Kubeconfig files and kube clients built from them.
//!
//! Contract: kubeconfigs written here have one cluster, one user and one current context, refer
//! to certificate files by absolute path (so `kubectl` and kube-rs both read them), and are
//! written as JSON (a subset of YAML). [`client_from_kubeconfig`] always sets a `User-Agent`
//! header (kube 5 sends none, which leaves audit entries with a null user agent and non-apply
//! writes with the field manager `unknown`).

use std::path::{Path, PathBuf};

use hyper::header::{HeaderValue, USER_AGENT};
use kube::config::{KubeConfigOptions, Kubeconfig};

/// Errors of writing and reading kubeconfigs.
#[derive(Debug, thiserror::Error)]
pub enum KubeconfigError {
    /// A kubeconfig could not be written.
    #[error("cannot write kubeconfig {path}")]
    Write {
        /// The path.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// A kubeconfig could not be read or interpreted.
    #[error("cannot load kubeconfig {path}")]
    Load {
        /// The path.
        path: PathBuf,
        /// The cause.
        #[source]
        source: kube::config::KubeconfigError,
    },
    /// A kubeconfig could not be serialized.
    #[error("cannot serialize kubeconfig {path}")]
    Serialize {
        /// The path.
        path: PathBuf,
        /// The cause.
        #[source]
        source: serde_json::Error,
    },
    /// The user agent is not a valid header value.
    #[error("invalid user agent {user_agent:?}")]
    UserAgent {
        /// The value.
        user_agent: String,
        /// The cause.
        #[source]
        source: hyper::header::InvalidHeaderValue,
    },
    /// The client could not be built.
    #[error("cannot build a client from {path}")]
    Client {
        /// The path.
        path: PathBuf,
        /// The cause.
        #[source]
        source: kube::Error,
    },
}

/// How a kubeconfig's user authenticates.
#[derive(Debug, Clone)]
pub enum Credentials {
    /// A client certificate and key (files).
    Certificate {
        /// Certificate file.
        cert: PathBuf,
        /// Key file.
        key: PathBuf,
    },
    /// A bearer token.
    Token(String),
}

fn write_json(path: &Path, value: &serde_json::Value) -> Result<(), KubeconfigError> {
    let text = serde_json::to_string_pretty(value)
        .map_err(|source| KubeconfigError::Serialize { path: path.to_path_buf(), source })?;
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent)
            .map_err(|source| KubeconfigError::Write { path: path.to_path_buf(), source })?;
    }
    std::fs::write(path, text).map_err(|source| KubeconfigError::Write { path: path.to_path_buf(), source })
}

/// Writes a kubeconfig for `server` (an `https://` URL) trusting `ca` with `credentials`;
/// `name` names the cluster, user and context, `namespace` is the context's default.
pub fn write_kubeconfig(
    path: &Path,
    name: &str,
    server: &str,
    ca: &Path,
    credentials: &Credentials,
    namespace: &str,
) -> Result<(), KubeconfigError> {
    let user = match credentials {
        Credentials::Certificate { cert, key } => serde_json::json!({
            "client-certificate": cert,
            "client-key": key,
        }),
        Credentials::Token(token) => serde_json::json!({ "token": token }),
    };
    let doc = serde_json::json!({
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{ "name": name, "cluster": { "server": server, "certificate-authority": ca } }],
        "users": [{ "name": name, "user": user }],
        "contexts": [{
            "name": name,
            "context": { "cluster": name, "user": name, "namespace": namespace }
        }],
        "current-context": name,
    });
    write_json(path, &doc)
}

/// Copies the kubeconfig at `from` to `to` with every cluster's server replaced by `server`
/// (credentials, CA and contexts unchanged).
pub fn rewrite_server(from: &Path, to: &Path, server: &str) -> Result<(), KubeconfigError> {
    let mut config =
        Kubeconfig::read_from(from).map_err(|source| KubeconfigError::Load { path: from.to_path_buf(), source })?;
    for cluster in &mut config.clusters {
        if let Some(c) = cluster.cluster.as_mut() {
            c.server = Some(server.to_string());
        }
    }
    let value = serde_json::to_value(&config)
        .map_err(|source| KubeconfigError::Serialize { path: to.to_path_buf(), source })?;
    write_json(to, &value)
}

/// Loads a kube [`kube::Config`] from a kubeconfig file, with `user_agent` set.
pub async fn config_from_kubeconfig(path: &Path, user_agent: &str) -> Result<kube::Config, KubeconfigError> {
    let load = |source| KubeconfigError::Load { path: path.to_path_buf(), source };
    let kubeconfig = Kubeconfig::read_from(path).map_err(load)?;
    let mut config =
        kube::Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default()).await.map_err(load)?;
    let value = HeaderValue::from_str(user_agent)
        .map_err(|source| KubeconfigError::UserAgent { user_agent: user_agent.to_string(), source })?;
    config.headers.push((USER_AGENT, value));
    Ok(config)
}

/// A kube client from a kubeconfig file, sending `user_agent`.
pub async fn client_from_kubeconfig(path: &Path, user_agent: &str) -> Result<kube::Client, KubeconfigError> {
    let config = config_from_kubeconfig(path, user_agent).await?;
    kube::Client::try_from(config).map_err(|source| KubeconfigError::Client { path: path.to_path_buf(), source })
}
