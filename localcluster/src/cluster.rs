//! [`LocalCluster`]: start, stop, kill and restart a local control plane, and hand out clients.
//!
//! Contract: [`LocalCluster::start`] returns only once the API server answers `/readyz`, the
//! `default` ServiceAccount exists in `default` and every fake node is Ready; on failure the error
//! names the component at fault with the last lines of its log, and everything started is killed.
//! The value owns its child processes: dropping it SIGKILLs and reaps them (and removes a
//! temporary directory); children also die with the test process (parent-death signal), so a
//! Ctrl-C leaves no orphans. [`LocalCluster::restart`] reuses the data directory, PKI and ports,
//! so objects survive and existing clients keep working.

use std::path::{Path, PathBuf};
use std::time::Duration;

use k8s_openapi::api::authentication::v1::{TokenRequest, TokenRequestSpec};
use k8s_openapi::api::core::v1::ServiceAccount;
use kube::api::{Api, Patch, PatchParams, PostParams};

pub use crate::error::ClusterError;
use crate::kubeconfig::{self, Credentials};
use crate::options::Options;
use crate::pki::Pki;
use crate::plane::Plane;
pub use crate::plane::Ports;
use crate::process::kill_all;

/// A running local cluster. See the crate documentation.
pub struct LocalCluster {
    plane: Plane,
    temp: Option<tempfile::TempDir>,
    cnpg: Option<crate::cnpg_webhooks::CnpgWebhooks>,
}

impl std::fmt::Debug for LocalCluster {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LocalCluster")
            .field("name", &self.plane.opts.name)
            .field("dir", &self.plane.dir)
            .field("ports", &self.plane.ports)
            .finish()
    }
}

/// The order of an orderly stop, with each component's timeout.
const STOP_ORDER: [(&str, Duration); 5] = [
    ("kwok", Duration::from_secs(5)),
    ("kube-scheduler", Duration::from_secs(5)),
    ("kube-controller-manager", Duration::from_secs(5)),
    ("kube-apiserver", Duration::from_secs(15)),
    ("etcd", Duration::from_secs(10)),
];

impl LocalCluster {
    /// Starts a cluster and waits until it is ready (see the module documentation).
    pub async fn start(opts: Options) -> Result<LocalCluster, ClusterError> {
        let (plane, temp) = crate::launch::start(opts).await?;
        let mut cluster = LocalCluster { plane, temp, cnpg: None };
        cluster.start_cnpg_webhooks().await?;
        Ok(cluster)
    }

    /// Starts CloudNativePG's webhooks when [`Options::cnpg_webhooks`] asks for them.
    async fn start_cnpg_webhooks(&mut self) -> Result<(), ClusterError> {
        if self.plane.opts.cnpg_webhooks {
            let hooks = crate::cnpg_webhooks::CnpgWebhooks::start(self)
                .await
                .map_err(|e| ClusterError::CnpgWebhooks(Box::new(e)))?;
            self.cnpg = Some(hooks);
        }
        Ok(())
    }

    /// CloudNativePG's webhooks, when started with [`Options::cnpg_webhooks`].
    pub fn cnpg_webhooks(&mut self) -> Option<&mut crate::cnpg_webhooks::CnpgWebhooks> {
        self.cnpg.as_mut()
    }

    /// The cluster's name.
    pub fn name(&self) -> &str {
        &self.plane.opts.name
    }

    /// The options it was started with.
    pub fn options(&self) -> &Options {
        &self.plane.opts
    }

    /// The cluster directory (data, logs, PKI, kubeconfigs, audit log).
    pub fn dir(&self) -> &Path {
        &self.plane.dir
    }

    /// The admin kubeconfig (client certificate, group `system:masters`).
    pub fn kubeconfig(&self) -> PathBuf {
        self.plane.dir.join("kubeconfig")
    }

    /// The API server URL, `https://127.0.0.1:PORT`.
    pub fn server(&self) -> String {
        self.plane.server()
    }

    /// The ports in use.
    pub fn ports(&self) -> Ports {
        self.plane.ports
    }

    /// The CA certificate file every serving certificate chains to.
    pub fn ca_path(&self) -> PathBuf {
        self.plane.pki.ca_path()
    }

    /// The cluster PKI (to issue more certificates).
    pub fn pki(&self) -> &Pki {
        &self.plane.pki
    }

    /// The audit log (JSON lines; one line per write, see [`crate::audit`]).
    pub fn audit_log(&self) -> PathBuf {
        self.plane.audit_log()
    }

    /// The log file of a component (`etcd`, `kube-apiserver`, `kube-controller-manager`,
    /// `kube-scheduler`, `kwok`).
    pub fn log_path(&self, component: &str) -> PathBuf {
        self.plane.log_path(component)
    }

    /// The directory of the tool binaries.
    pub fn tools_dir(&self) -> &Path {
        &self.plane.tools
    }

    /// A `kubectl` command with `--kubeconfig` set to the admin kubeconfig.
    pub fn kubectl(&self) -> tokio::process::Command {
        let mut cmd = tokio::process::Command::new(self.plane.tools.join("kubectl"));
        cmd.arg("--kubeconfig").arg(self.kubeconfig());
        cmd
    }

    /// An admin client (user agent `localcluster/<name>`); it keeps working across restarts.
    pub fn client(&self) -> kube::Client {
        self.plane.client.clone()
    }

    /// The pod CIDR.
    pub fn pod_cidr(&self) -> String {
        self.plane.opts.pod_cidr()
    }

    /// The Service CIDR.
    pub fn service_cidr(&self) -> String {
        self.plane.opts.service_cidr()
    }

    /// Writes a kubeconfig for ServiceAccount `namespace/name` (created when missing) with a
    /// 24-hour token from the TokenRequest API, and returns its path. The identity is
    /// `system:serviceaccount:<namespace>:<name>` and has only what RBAC grants it. The
    /// namespace must exist.
    pub async fn user_kubeconfig(&self, namespace: &str, name: &str) -> Result<PathBuf, ClusterError> {
        let api: Api<ServiceAccount> = Api::namespaced(self.plane.client.clone(), namespace);
        let sa = ServiceAccount {
            metadata: kube::api::ObjectMeta { name: Some(name.to_string()), ..Default::default() },
            ..Default::default()
        };
        api.patch(name, &PatchParams::apply("localcluster"), &Patch::Apply(&sa))
            .await
            .map_err(|source| ClusterError::Api { what: format!("apply ServiceAccount {namespace}/{name}"), source })?;
        let token = self.service_account_token(namespace, name).await?;
        let path = self.plane.dir.join("users").join(format!("{namespace}.{name}.kubeconfig"));
        kubeconfig::write_kubeconfig(
            &path,
            &format!("{}-{namespace}-{name}", self.plane.opts.name),
            &self.server(),
            &self.ca_path(),
            &Credentials::Token(token),
            namespace,
        )
        .map_err(ClusterError::Kubeconfig)?;
        Ok(path)
    }

    /// A 24-hour token of the existing ServiceAccount `namespace/name` (TokenRequest API).
    pub async fn service_account_token(&self, namespace: &str, name: &str) -> Result<String, ClusterError> {
        let api: Api<ServiceAccount> = Api::namespaced(self.plane.client.clone(), namespace);
        let request = TokenRequest {
            spec: Some(TokenRequestSpec { expiration_seconds: Some(24 * 3600), ..Default::default() }),
            ..Default::default()
        };
        Ok(api
            .create_token_request(name, &PostParams::default(), &request)
            .await
            .map_err(|source| ClusterError::Api { what: format!("TokenRequest for {namespace}/{name}"), source })?
            .status
            .and_then(|s| s.token)
            .unwrap_or_default())
    }

    /// A client for ServiceAccount `namespace/name` (see [`LocalCluster::user_kubeconfig`]),
    /// with user agent `localcluster/<namespace>/<name>`.
    pub async fn user_client(&self, namespace: &str, name: &str) -> Result<kube::Client, ClusterError> {
        let path = self.user_kubeconfig(namespace, name).await?;
        kubeconfig::client_from_kubeconfig(&path, &format!("localcluster/{namespace}/{name}"))
            .await
            .map_err(ClusterError::Kubeconfig)
    }

    /// Starts a [`crate::faults::FaultProxy`] in front of this cluster's API server.
    pub async fn fault_proxy(&self) -> Result<crate::faults::FaultProxy, crate::faults::FaultError> {
        crate::faults::FaultProxy::start(self).await
    }

    /// Writes a copy of a token kubeconfig (e.g. from [`LocalCluster::user_kubeconfig`]) that
    /// goes through `proxy`, and returns its path.
    pub fn proxied_kubeconfig(
        &self,
        proxy: &crate::faults::FaultProxy,
        token_kubeconfig: &Path,
    ) -> Result<PathBuf, crate::faults::FaultError> {
        proxy.kubeconfig_for(token_kubeconfig)
    }

    /// Stops every component in order (CloudNativePG's webhooks if started with the cluster,
    /// kwok, scheduler, controller manager, API server, etcd), each with SIGTERM, a timeout,
    /// then SIGKILL.
    pub async fn stop(&mut self) -> Result<(), ClusterError> {
        if let Some(mut hooks) = self.cnpg.take() {
            hooks.stop().await.map_err(|e| ClusterError::CnpgWebhooks(Box::new(e)))?;
        }
        for (component, timeout) in STOP_ORDER {
            for proc in self.plane.procs.iter_mut().filter(|p| p.component() == component) {
                proc.stop(timeout).await.map_err(ClusterError::Process)?;
            }
        }
        kill_all(None, &mut self.plane.procs);
        self.plane.procs.clear();
        self.plane.pgid = None;
        Ok(())
    }

    /// SIGKILLs every component at once (a region outage). The data directory stays.
    pub fn kill(&mut self) {
        // Dropping the webhooks kills their manager; their configurations stay in etcd.
        self.cnpg = None;
        kill_all(self.plane.pgid.take(), &mut self.plane.procs);
        self.plane.procs.clear();
    }

    /// Whether every component process is still running.
    pub fn is_running(&mut self) -> bool {
        !self.plane.procs.is_empty() && self.plane.procs.iter_mut().all(|p| p.try_exit().is_none())
    }

    /// Restarts the cluster on the same data directory, PKI and ports (stopping it first if it
    /// runs) and waits until it is ready again. Objects survive.
    pub async fn restart(&mut self) -> Result<(), ClusterError> {
        if !self.plane.procs.is_empty() {
            self.stop().await?;
        }
        crate::launch::launch(&mut self.plane, true).await?;
        self.start_cnpg_webhooks().await
    }
}

impl Drop for LocalCluster {
    fn drop(&mut self) {
        self.cnpg = None;
        kill_all(self.plane.pgid.take(), &mut self.plane.procs);
        self.plane.procs.clear();
        let keep =
            self.plane.opts.keep_dir || std::env::var("LOCALCLUSTER_KEEP").is_ok_and(|v| v == "1" || v == "true");
        if let Some(temp) = self.temp.take()
            && keep
        {
            let path = temp.keep();
            let _ = std::fs::remove_file(path.join(crate::launch::OWNER_FILE));
            tracing::info!(dir = %path.display(), "kept local cluster directory");
        }
    }
}
