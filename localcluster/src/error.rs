//! [`ClusterError`]: everything that can go wrong starting and driving a local cluster.
//!
//! Contract: one enum for the crate's cluster lifecycle; each variant names the component or
//! step at fault and keeps its cause as `#[source]`.

use std::path::PathBuf;
use std::time::Duration;

use crate::kubeconfig::KubeconfigError;
use crate::options::OptionsError;
use crate::pki::PkiError;
use crate::process::ProcessError;
use crate::thirdparty::ThirdPartyError;
use crate::tools::ToolsError;

/// Errors of starting and driving a local cluster.
#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    /// Invalid options.
    #[error("invalid options")]
    Options(#[source] OptionsError),
    /// The tools could not be located or built.
    #[error("cannot locate the tool binaries")]
    Tools(#[source] ToolsError),
    /// Third-party files could not be located.
    #[error("cannot locate third-party files")]
    ThirdParty(#[source] ThirdPartyError),
    /// The PKI could not be created.
    #[error("cannot create the cluster PKI")]
    Pki(#[source] PkiError),
    /// kwok's configuration could not be assembled.
    #[error("cannot assemble the kwok configuration")]
    Kwok(#[source] crate::kwok::KwokError),
    /// A kubeconfig could not be written or loaded.
    #[error("kubeconfig")]
    Kubeconfig(#[source] KubeconfigError),
    /// A process could not be started or stopped.
    #[error("process")]
    Process(#[source] ProcessError),
    /// A file or directory could not be created.
    #[error("cannot create {path}")]
    Io {
        /// The path.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// A component exited during start-up.
    #[error("{component} exited during start-up ({status}); last lines of {log}:\n{log_tail}")]
    Exited {
        /// The component.
        component: String,
        /// Its exit status.
        status: String,
        /// Its log file.
        log: PathBuf,
        /// The last lines of its log.
        log_tail: String,
    },
    /// The cluster did not become ready in time.
    #[error(
        "timed out after {timeout:?} waiting for {what} (component: {component}); last lines of {log}:\n{log_tail}"
    )]
    Timeout {
        /// What was awaited.
        what: String,
        /// The component most likely at fault.
        component: String,
        /// The time allowed.
        timeout: Duration,
        /// Its log file.
        log: PathBuf,
        /// The last lines of its log.
        log_tail: String,
    },
    /// An API call failed.
    #[error("API call failed: {what}")]
    Api {
        /// What was attempted.
        what: String,
        /// The cause.
        #[source]
        source: kube::Error,
    },
    /// CloudNativePG's webhooks ([`crate::Options::cnpg_webhooks`]) could not be started or
    /// stopped.
    #[error("CloudNativePG webhooks")]
    CnpgWebhooks(#[source] Box<crate::cnpg_webhooks::CnpgWebhooksError>),
    /// A blocking helper task panicked.
    #[error("a blocking set-up task failed")]
    Join(#[source] tokio::task::JoinError),
}
