//! [`CnpgWebhooks`]: CloudNativePG v1.30.1's own admission webhooks judging every CNPG object
//! (`postgresql.cnpg.io` Cluster, Pooler, ScheduledBackup, Backup, Database, ...) written to a
//! [`LocalCluster`].
//!
//! Contract: [`CnpgWebhooks::start`] runs the real CloudNativePG operator binary
//! (`cnpg-manager`, built by `hack/tools.sh` from the pinned module in `hack/tools/cnpg`) as a
//! child process against one cluster and returns only once the webhooks answer: a dry-run
//! probe Cluster with two bootstrap methods is refused with CloudNativePG's own words. On the
//! way it (idempotently) installs the CloudNativePG CRDs, creates the namespaces
//! [`OPERATOR_NAMESPACE`] and [`IDLE_NAMESPACE`], the Service [`SERVICE_NAME`]
//! (`type: ExternalName`, `externalName: 127.0.0.1`) and the two webhook configurations of the
//! module's `config/webhook/manifests.yaml` (read from the Go module cache), renamed
//! `cnpg-mutating-webhook-configuration` / `cnpg-validating-webhook-configuration`, each
//! `clientConfig` pointing at that Service on the manager's free port with the cluster CA as
//! `caBundle`. The API server dials `127.0.0.1:<port>` and checks the certificate against
//! `cnpg-webhook-service.cnpg-system.svc`, which the cluster's own PKI issued.
//!
//! How the manager runs: `cnpg-manager controller --leader-elect=false --webhook-port=<free port>
//! --metrics-bind-address=127.0.0.1:0` with `OPERATOR_NAMESPACE=cnpg-system`, its reconcilers
//! confined to the empty namespace [`IDLE_NAMESPACE`] (`WATCH_NAMESPACE`), its own client
//! certificate (user `cnpg-manager`, group `system:masters`, so the audit log names it) and
//! `WEBHOOK_CERT_DIR=<cluster dir>/cnpg-webhooks` holding `apiserver.crt`/`apiserver.key`. That
//! variable is CloudNativePG's "certificates are provided" (OLM) mode: the operator skips its own
//! PKI (no operator Deployment, no `cnpg-webhook-cert` Secret, no fixed
//! `/run/secrets/cnpg.io/webhook` directory, no CA patching), so every instance has its own
//! directory and port and any number run side by side without privileges or mount namespaces.
//! One manager serves one cluster; start one per cluster (about 1-2 s warm each). Its webhook
//! server listens on every interface of the port (the binary has no host flag); nothing connects
//! anywhere but 127.0.0.1.
//!
//! Stopping: [`CnpgWebhooks::stop`] deletes the two webhook configurations (so later CNPG writes
//! are not refused for want of a server) and then stops the process (SIGTERM, 5 s, SIGKILL).
//! Dropping without `stop` only kills the process: the configurations stay, with
//! `failurePolicy: Fail`, so CNPG writes to that cluster are refused until it is stopped too.
//!
//! Layout: this file holds the process lifecycle; `objects` the API objects it applies.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use k8s_openapi::api::admissionregistration::v1::{MutatingWebhookConfiguration, ValidatingWebhookConfiguration};
use kube::api::{Api, ApiResource, DeleteParams, DynamicObject, PostParams};

use crate::LocalCluster;
use crate::process::{Proc, ProcessError, free_port, tail};

mod objects;
use objects::{apply_configurations, apply_namespaces_and_service, probe_cluster};

/// The operator namespace (the Service lives there; the manager's `OPERATOR_NAMESPACE`).
pub const OPERATOR_NAMESPACE: &str = "cnpg-system";
/// The empty namespace the manager's reconcilers are confined to (`WATCH_NAMESPACE`).
pub const IDLE_NAMESPACE: &str = "cnpg-webhooks-idle";
/// The ExternalName Service the webhook configurations name.
pub const SERVICE_NAME: &str = "cnpg-webhook-service";
/// The mutating webhook configuration's name.
pub const MUTATING_CONFIGURATION: &str = "cnpg-mutating-webhook-configuration";
/// The validating webhook configuration's name.
pub const VALIDATING_CONFIGURATION: &str = "cnpg-validating-webhook-configuration";
/// The component name (binary in the tools directory, log file `logs/cnpg-manager.log`).
pub const COMPONENT: &str = "cnpg-manager";
/// What CloudNativePG answers to the readiness probe (a Cluster with two bootstrap methods).
pub const PROBE_REFUSAL: &str = "Only one bootstrap method can be specified at a time";

const FIELD_MANAGER: &str = "localcluster-cnpg-webhooks";

/// Errors of starting and stopping the CloudNativePG webhooks.
#[derive(Debug, thiserror::Error)]
pub enum CnpgWebhooksError {
    /// The manager binary is not available.
    #[error("cannot locate the cnpg-manager binary (built by hack/tools.sh)")]
    Tools(#[source] crate::tools::ToolsError),
    /// The CloudNativePG module could not be located in the Go module cache.
    #[error("cannot locate the CloudNativePG module")]
    ThirdParty(#[source] crate::thirdparty::ThirdPartyError),
    /// The CloudNativePG CRDs could not be installed.
    #[error("cannot install the CloudNativePG CRDs")]
    Crds(#[source] crate::crds::CrdError),
    /// The module's webhook manifests could not be read.
    #[error("cannot read the webhook manifests {path}")]
    Manifests {
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: crate::kwok::KwokError,
    },
    /// A webhook manifest does not have the expected shape.
    #[error("webhook manifest {path}: {what}")]
    Shape {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        what: String,
        /// The cause.
        #[source]
        source: serde_json::Error,
    },
    /// A certificate could not be issued.
    #[error("cannot issue the webhook certificates")]
    Pki(#[source] crate::pki::PkiError),
    /// The manager's kubeconfig could not be written.
    #[error("cannot write the cnpg-manager kubeconfig")]
    Kubeconfig(#[source] crate::kubeconfig::KubeconfigError),
    /// A file or directory could not be written.
    #[error("cannot write {path}")]
    Io {
        /// The path.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// The manager could not be started or stopped.
    #[error("cnpg-manager process")]
    Process(#[source] ProcessError),
    /// An API call failed.
    #[error("API call failed: {what}")]
    Api {
        /// What was attempted.
        what: String,
        /// The cause.
        #[source]
        source: kube::Error,
    },
    /// The manager exited during start-up.
    #[error("cnpg-manager exited during start-up ({status}); last lines of {log}:\n{log_tail}")]
    Exited {
        /// Its exit status.
        status: String,
        /// Its log file.
        log: PathBuf,
        /// The last lines of its log.
        log_tail: String,
    },
    /// The webhooks did not judge the probe in time.
    #[error(
        "timed out after {timeout:?} waiting for the cnpg-manager webhooks to refuse the probe (last answer: \
         {last}); last lines of {log}:\n{log_tail}"
    )]
    Timeout {
        /// The time allowed.
        timeout: Duration,
        /// The last answer to the probe.
        last: String,
        /// The manager's log file.
        log: PathBuf,
        /// The last lines of its log.
        log_tail: String,
    },
    /// A blocking set-up task panicked.
    #[error("a blocking set-up task failed")]
    Join(#[source] tokio::task::JoinError),
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> CnpgWebhooksError + '_ {
    move |source| CnpgWebhooksError::Io { path: path.to_path_buf(), source }
}

fn api_err(what: impl Into<String>) -> impl FnOnce(kube::Error) -> CnpgWebhooksError {
    let what = what.into();
    move |source| CnpgWebhooksError::Api { what, source }
}

/// The `ApiResource` of a CloudNativePG kind (`postgresql.cnpg.io/v1`), e.g. `("Cluster",
/// "clusters")`, for [`DynamicObject`] APIs.
pub fn cnpg_resource(kind: &str, plural: &str) -> ApiResource {
    ApiResource {
        group: "postgresql.cnpg.io".into(),
        version: "v1".into(),
        api_version: "postgresql.cnpg.io/v1".into(),
        kind: kind.into(),
        plural: plural.into(),
    }
}

/// The running CloudNativePG webhooks of one cluster. See the module documentation.
pub struct CnpgWebhooks {
    proc: Option<Proc>,
    client: kube::Client,
    port: u16,
    log: PathBuf,
}

impl std::fmt::Debug for CnpgWebhooks {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CnpgWebhooks").field("port", &self.port).field("log", &self.log).finish()
    }
}

/// What the blocking part of the set-up found.
struct Setup {
    program: PathBuf,
    crd_files: Vec<PathBuf>,
    manifests: Vec<serde_json::Value>,
    manifests_path: PathBuf,
}

fn locate() -> Result<Setup, CnpgWebhooksError> {
    let program = crate::tools::tool(COMPONENT).map_err(CnpgWebhooksError::Tools)?;
    let (module, version) = crate::thirdparty::CLOUDNATIVE_PG;
    let dir = crate::thirdparty::module_dir(module, version).map_err(CnpgWebhooksError::ThirdParty)?;
    let crd_dir = dir.join("config/crd/bases");
    let mut crd_files = Vec::new();
    for entry in std::fs::read_dir(&crd_dir).map_err(io_err(&crd_dir))? {
        let path = entry.map_err(io_err(&crd_dir))?.path();
        if path.extension().is_some_and(|e| e == "yaml") {
            crd_files.push(path);
        }
    }
    crd_files.sort();
    let manifests_path = dir.join("config/webhook/manifests.yaml");
    let manifests = crate::kwok::read_yaml_docs(&manifests_path)
        .map_err(|source| CnpgWebhooksError::Manifests { path: manifests_path.clone(), source })?;
    Ok(Setup { program, crd_files, manifests, manifests_path })
}

impl CnpgWebhooks {
    /// Starts CloudNativePG's webhooks for `cluster` and waits (up to 90 s) until they judge a
    /// probe object (see the module documentation).
    pub async fn start(cluster: &LocalCluster) -> Result<CnpgWebhooks, CnpgWebhooksError> {
        Self::start_with_timeout(cluster, Duration::from_secs(90)).await
    }

    /// Like [`CnpgWebhooks::start`] with the time allowed for the webhooks to become ready.
    pub async fn start_with_timeout(
        cluster: &LocalCluster,
        timeout: Duration,
    ) -> Result<CnpgWebhooks, CnpgWebhooksError> {
        let started = Instant::now();
        let setup = tokio::task::spawn_blocking(locate).await.map_err(CnpgWebhooksError::Join)??;
        let client = cluster.client();
        crate::crds::install_crds(&client, &setup.crd_files).await.map_err(CnpgWebhooksError::Crds)?;

        // Certificates and kubeconfig, in a directory of this cluster.
        let dir = cluster.dir().join("cnpg-webhooks");
        std::fs::create_dir_all(&dir).map_err(io_err(&dir))?;
        let dns = format!("{SERVICE_NAME}.{OPERATOR_NAMESPACE}.svc");
        let serving = cluster.pki().issue_server("cnpg-webhook", &[&dns]).map_err(CnpgWebhooksError::Pki)?;
        for (name, pem) in [("apiserver.crt", &serving.cert_pem), ("apiserver.key", &serving.key_pem)] {
            let path = dir.join(name);
            std::fs::write(&path, pem).map_err(io_err(&path))?;
        }
        let identity =
            cluster.pki().issue_client(COMPONENT, COMPONENT, &["system:masters"]).map_err(CnpgWebhooksError::Pki)?;
        let kubeconfig = dir.join("kubeconfig");
        crate::kubeconfig::write_kubeconfig(
            &kubeconfig,
            COMPONENT,
            &cluster.server(),
            &cluster.ca_path(),
            &crate::kubeconfig::Credentials::Certificate { cert: identity.cert_path, key: identity.key_path },
            OPERATOR_NAMESPACE,
        )
        .map_err(CnpgWebhooksError::Kubeconfig)?;

        let port = free_port().map_err(io_err(Path::new("127.0.0.1:0")))?;
        apply_namespaces_and_service(&client, port).await?;

        let log = cluster.log_path(COMPONENT);
        let args: Vec<String> = vec![
            "controller".into(),
            "--leader-elect=false".into(),
            format!("--webhook-port={port}"),
            "--metrics-bind-address=127.0.0.1:0".into(),
        ];
        let env: Vec<(String, String)> = [
            ("KUBECONFIG", kubeconfig.display().to_string()),
            ("OPERATOR_NAMESPACE", OPERATOR_NAMESPACE.to_string()),
            ("WATCH_NAMESPACE", IDLE_NAMESPACE.to_string()),
            ("POD_NAME", format!("cnpg-manager-{}", cluster.name())),
            ("WEBHOOK_CERT_DIR", dir.display().to_string()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect();
        let proc = Proc::spawn_with_env(COMPONENT, &setup.program, &args, &env, &log, None)
            .map_err(CnpgWebhooksError::Process)?;
        let mut hooks = CnpgWebhooks { proc: Some(proc), client: client.clone(), port, log };

        apply_configurations(&client, &setup, port, cluster.pki().ca_pem()).await?;
        hooks.wait_ready(timeout).await?;
        tracing::info!(cluster = %cluster.name(), port, elapsed = ?started.elapsed(), "CloudNativePG webhooks ready");
        Ok(hooks)
    }

    /// Polls the probe until CloudNativePG refuses it with [`PROBE_REFUSAL`].
    async fn wait_ready(&mut self, timeout: Duration) -> Result<(), CnpgWebhooksError> {
        let deadline = Instant::now() + timeout;
        let api: Api<DynamicObject> =
            Api::namespaced_with(self.client.clone(), IDLE_NAMESPACE, &cnpg_resource("Cluster", "clusters"));
        let probe: DynamicObject = serde_json::from_value(probe_cluster()).map_err(|source| {
            CnpgWebhooksError::Shape { path: PathBuf::from("(probe)"), what: "probe Cluster".into(), source }
        })?;
        let params = PostParams { dry_run: true, field_manager: Some(FIELD_MANAGER.into()) };
        let mut last;
        loop {
            if let Some(proc) = self.proc.as_mut()
                && let Some(status) = proc.try_exit()
            {
                return Err(CnpgWebhooksError::Exited {
                    status: status.to_string(),
                    log: self.log.clone(),
                    log_tail: tail(&self.log, 30),
                });
            }
            match api.create(&params, &probe).await {
                Err(kube::Error::Api(status)) if status.message.contains(PROBE_REFUSAL) => return Ok(()),
                Err(e) => last = e.to_string(),
                Ok(_) => last = "the probe was admitted".into(),
            }
            if Instant::now() >= deadline {
                return Err(CnpgWebhooksError::Timeout {
                    timeout,
                    last,
                    log: self.log.clone(),
                    log_tail: tail(&self.log, 30),
                });
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// The manager's webhook port (on 127.0.0.1 for the API server).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The manager's log file (`<cluster dir>/logs/cnpg-manager.log`).
    pub fn log_path(&self) -> &Path {
        &self.log
    }

    /// Whether the manager process still runs.
    pub fn is_running(&mut self) -> bool {
        self.proc.as_mut().is_some_and(|p| p.try_exit().is_none())
    }

    /// Deletes the webhook configurations, then stops the manager (SIGTERM, 5 s, SIGKILL).
    /// Idempotent.
    pub async fn stop(&mut self) -> Result<(), CnpgWebhooksError> {
        if self.proc.is_none() {
            return Ok(());
        }
        let dp = DeleteParams::default();
        let mutating: Api<MutatingWebhookConfiguration> = Api::all(self.client.clone());
        let validating: Api<ValidatingWebhookConfiguration> = Api::all(self.client.clone());
        let results = [
            mutating.delete(MUTATING_CONFIGURATION, &dp).await.map(|_| ()),
            validating.delete(VALIDATING_CONFIGURATION, &dp).await.map(|_| ()),
        ];
        // Stop the process whatever the API said (the cluster may already be gone).
        if let Some(mut proc) = self.proc.take() {
            proc.stop(Duration::from_secs(5)).await.map_err(CnpgWebhooksError::Process)?;
        }
        for result in results {
            match result {
                Ok(()) => {}
                Err(kube::Error::Api(s)) if s.code == 404 => {}
                Err(e) => return Err(api_err("delete the CloudNativePG webhook configurations")(e)),
            }
        }
        Ok(())
    }
}
