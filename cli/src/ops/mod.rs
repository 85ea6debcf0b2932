//! Commands that talk to a cluster: `get`, `status`, `apply`, `diff`, `scale`, `event`, `failover`,
//! `switchover`, `version`, with kubectl-like connection flags.
//!
//! Contract: the connection comes from `--kubeconfig` (else `KUBECONFIG`, else
//! `~/.kube/config`, else the in-cluster configuration), `--context` and `-n/--namespace` (else
//! the context's namespace, else `default`); a cluster that cannot be reached, a missing Mall or a
//! refused apply or failover request is an error (exit 1) whose message names what failed; usage
//! errors exit 2 (clap).
//! Output goes to stdout, progress and errors to stderr.

pub mod apply;
pub mod diff;
pub mod edit;
pub mod failover;
pub mod get;
pub mod progress;
pub mod status;
pub mod version;
pub mod watch;

use clap::Args;
use kube::config::{KubeConfigOptions, Kubeconfig};
use std::path::PathBuf;

/// Connection flags, as kubectl has them.
#[derive(Args, Clone, Debug, Default)]
pub struct KubeArgs {
    /// Path to the kubeconfig file (default: $KUBECONFIG, then ~/.kube/config).
    #[arg(long, global = true)]
    pub kubeconfig: Option<PathBuf>,
    /// The kubeconfig context to use (default: its current context).
    #[arg(long, global = true)]
    pub context: Option<String>,
    /// Namespace (default: the context's, then `default`).
    #[arg(short = 'n', long, global = true)]
    pub namespace: Option<String>,
}

/// Why a connection could not be made.
#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    /// The kubeconfig could not be read or used.
    #[error("kubeconfig {path}")]
    Kubeconfig {
        /// File.
        path: String,
        /// Cause.
        #[source]
        source: kube::config::KubeconfigError,
    },
    /// No configuration was found.
    #[error("no kubeconfig: pass --kubeconfig or set KUBECONFIG")]
    Infer(#[source] kube::config::InferConfigError),
    /// The client could not be built.
    #[error("building the API client")]
    Client(#[source] kube::Error),
}

/// A client and the namespace to work in.
pub struct Connection {
    /// API client.
    pub client: kube::Client,
    /// Namespace.
    pub namespace: String,
}

impl KubeArgs {
    /// Connects as the flags say.
    pub async fn connect(&self) -> Result<Connection, ConnectError> {
        let options = KubeConfigOptions { context: self.context.clone(), ..Default::default() };
        let path = self.kubeconfig.clone().or_else(|| std::env::var_os("KUBECONFIG").map(PathBuf::from));
        let mut config = match path {
            Some(path) => {
                let err = |source| ConnectError::Kubeconfig { path: path.display().to_string(), source };
                let file = Kubeconfig::read_from(&path).map_err(err)?;
                kube::Config::from_custom_kubeconfig(file, &options).await.map_err(err)?
            }
            None if self.context.is_some() => kube::Config::from_kubeconfig(&options)
                .await
                .map_err(|source| ConnectError::Kubeconfig { path: "~/.kube/config".into(), source })?,
            None => kube::Config::infer().await.map_err(ConnectError::Infer)?,
        };
        config.connect_timeout = Some(std::time::Duration::from_secs(5));
        config.read_timeout = Some(std::time::Duration::from_secs(30));
        let agent = format!("mallctl/{}", env!("CARGO_PKG_VERSION"));
        if let Ok(value) = http::HeaderValue::from_str(&agent) {
            config.headers.push((http::header::USER_AGENT, value));
        }
        let namespace = self.namespace.clone().unwrap_or_else(|| config.default_namespace.clone());
        let client = kube::Client::try_from(config).map_err(ConnectError::Client)?;
        Ok(Connection { client, namespace })
    }
}

/// Output formats of the cluster commands.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum Output {
    /// Columns.
    #[default]
    Table,
    /// More columns.
    Wide,
    /// YAML.
    Yaml,
    /// JSON.
    Json,
}

/// A condition of a Mall as (status, reason, message).
pub fn condition(mall: &mall_crds::Mall, type_: &str) -> Option<(String, String, String)> {
    let c = mall.status.as_ref()?.conditions.iter().find(|c| c.type_ == type_)?;
    Some((c.status.clone(), c.reason.clone(), c.message.clone()))
}

/// Whether the Mall is Ready for its current generation.
pub fn is_ready(mall: &mall_crds::Mall) -> bool {
    mall.status.as_ref().is_some_and(|s| s.observed_generation == mall.metadata.generation)
        && condition(mall, "Ready").is_some_and(|c| c.0 == "True")
}

/// A short age (`42s`, `7m`, `3h`, `2d`) of a timestamp.
pub fn age(time: Option<&k8s_openapi::apimachinery::pkg::apis::meta::v1::Time>) -> String {
    let Some(time) = time else { return "-".into() };
    let seconds = k8s_openapi::jiff::Timestamp::now().duration_since(time.0).as_secs().max(0);
    match seconds {
        s if s < 120 => format!("{s}s"),
        s if s < 7200 => format!("{}m", s / 60),
        s if s < 172_800 => format!("{}h", s / 3600),
        s => format!("{}d", s / 86_400),
    }
}

/// Left-aligned columns separated by three spaces, as kubectl prints them.
pub fn table(rows: &[Vec<String>]) -> String {
    let widths: Vec<usize> = (0..rows.first().map_or(0, Vec::len))
        .map(|i| rows.iter().map(|r| r.get(i).map_or(0, |c| c.chars().count())).max().unwrap_or(0))
        .collect();
    let mut out = String::new();
    for row in rows {
        let cells: Vec<String> = row
            .iter()
            .enumerate()
            .map(|(i, c)| if i + 1 == row.len() { c.clone() } else { format!("{c:<w$}", w = widths[i]) })
            .collect();
        out.push_str(cells.join("   ").trim_end());
        out.push('\n');
    }
    out
}
