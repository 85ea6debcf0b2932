//! What `mallctl dev` runs on top of the clusters: the CloudNativePG status simulator (a
//! stand-in: no database pod runs on the local control plane; on a real cluster CloudNativePG
//! does this), the operator (`--operator`, a separate `mall-operator` process against the first
//! cluster), and `--apply` of Mall manifests, waiting until each is Ready. A Mall region in a
//! member cluster (`spec.regions[].cluster`) is connected to the dev cluster named like the
//! region: the chart's member identity is installed there and its kubeconfig Secret created in
//! the hub.
//!
//! The simulators of all clusters share one simulated object store (`DIR/object-store`, emptied
//! at start and removed at stop), so a standby region's replica clusters bootstrap from and
//! follow the active region's archive as CloudNativePG's replica clusters do.
//!
//! Contract: everything started here is stopped by [`Stack::stop`] (the operator gets SIGTERM,
//! then SIGKILL after 10 s). Manifests are validated offline before they are sent.

use crate::input::read_documents;
use kube::api::{Api, Patch, PatchParams};
use localcluster::{CnpgSimulator, LocalCluster, SimulatorOptions};
use mall_crds::Mall;
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::time::{Duration, Instant};

/// Errors of the dev stack.
#[derive(Debug, thiserror::Error)]
pub enum StackError {
    /// A client for the simulator could not be built.
    #[error("cannot connect the CloudNativePG status simulator")]
    Simulator(#[source] localcluster::CnpgSimError),
    /// The simulated object store could not be created.
    #[error("cannot create the simulated object store {path}")]
    ObjectStore {
        /// Its directory.
        path: PathBuf,
        /// Cause.
        #[source]
        source: std::io::Error,
    },
    /// The embedded chart could not be written.
    #[error("cannot write the embedded chart")]
    Assets(#[source] localcluster::assets::AssetsError),
    /// The operator binary is missing.
    #[error(
        "mall-operator not found at {0} (build it: cargo build -p mall-operator; installed: cargo install --path operator; or set MALL_OPERATOR_BIN)"
    )]
    OperatorMissing(PathBuf),
    /// The operator could not be started.
    #[error("cannot start {path}")]
    Operator {
        /// Binary.
        path: PathBuf,
        /// Cause.
        #[source]
        source: std::io::Error,
    },
    /// A manifest could not be read or is not a valid Mall.
    #[error("{0}")]
    Manifest(String),
    /// Applying a manifest failed.
    #[error("applying Mall {name}")]
    Apply {
        /// Mall name.
        name: String,
        /// Cause.
        #[source]
        source: kube::Error,
    },
    /// A member cluster could not be connected.
    #[error("connecting a member cluster")]
    Member(#[source] localcluster::members::MemberError),
    /// A Mall did not become Ready in time.
    #[error("Mall {name} not Ready after {waited:?}: {detail}")]
    NotReady {
        /// Mall name.
        name: String,
        /// Time waited.
        waited: Duration,
        /// Its conditions.
        detail: String,
    },
}

/// The running extras.
pub struct Stack {
    simulators: Vec<CnpgSimulator>,
    operator: Option<Child>,
    object_store: PathBuf,
}

/// Where `mall-operator` is: `MALL_OPERATOR_BIN`, else beside this `mallctl`.
pub(crate) fn operator_binary() -> PathBuf {
    if let Some(p) = std::env::var_os("MALL_OPERATOR_BIN") {
        return PathBuf::from(p);
    }
    std::env::current_exe()
        .ok()
        .and_then(|p| p.parent().map(|d| d.join("mall-operator")))
        .unwrap_or_else(|| PathBuf::from("mall-operator"))
}

impl Stack {
    /// Starts the simulator in every cluster and, with `operator`, the operator against the first,
    /// logging to `dir/operator.log`.
    pub async fn start(clusters: &[LocalCluster], operator: bool, dir: &Path) -> Result<Stack, StackError> {
        let mut simulators = Vec::new();
        let object_store = dir.join("object-store");
        let _ = std::fs::remove_dir_all(&object_store);
        std::fs::create_dir_all(&object_store)
            .map_err(|source| StackError::ObjectStore { path: object_store.clone(), source })?;
        for cluster in clusters {
            let client = localcluster::cnpg_sim::client_from_kubeconfig(&cluster.kubeconfig())
                .await
                .map_err(StackError::Simulator)?;
            simulators.push(CnpgSimulator::spawn(
                client,
                SimulatorOptions {
                    step: Duration::from_millis(500),
                    object_store_dir: Some(object_store.clone()),
                    ..Default::default()
                },
            ));
            eprintln!(
                "mallctl dev: CloudNativePG status simulator running in {} (a stand-in for CloudNativePG, which cannot run here)",
                cluster.name()
            );
        }
        let operator = match (operator, clusters.first()) {
            (true, Some(hub)) => {
                let path = operator_binary();
                if !path.exists() {
                    return Err(StackError::OperatorMissing(path));
                }
                let log = dir.join("operator.log");
                let child = spawn_operator(&path, &hub.kubeconfig(), &log, &[])?;
                eprintln!("mallctl dev: operator running against {} (log: {})", hub.name(), log.display());
                Some(child)
            }
            _ => None,
        };
        Ok(Stack { simulators, operator, object_store })
    }

    /// Stops the operator and the simulators.
    pub async fn stop(mut self) {
        if let Some(child) = self.operator.take() {
            stop_operator(child).await;
            eprintln!("mallctl dev: operator stopped");
        }
        for sim in self.simulators.drain(..) {
            let _ = sim.stop().await;
        }
        let _ = std::fs::remove_dir_all(&self.object_store);
    }
}

/// Starts `mall-operator` (`path`) against the cluster of `kubeconfig`, its Lease in
/// `kube-system`, metrics and health on free loopback ports, rechecking every 5 s, logging to
/// `log`; `extra` arguments follow.
pub(crate) fn spawn_operator(path: &Path, kubeconfig: &Path, log: &Path, extra: &[&str]) -> Result<Child, StackError> {
    let err = |source| StackError::Operator { path: path.to_path_buf(), source };
    let file = std::fs::File::create(log).map_err(err)?;
    Command::new(path)
        .env("KUBECONFIG", kubeconfig)
        .args(["--leader-election-namespace", "kube-system", "--metrics-address", "127.0.0.1:0"])
        .args(["--health-address", "127.0.0.1:0", "--recheck-interval", "5s"])
        .args(extra)
        .stdout(std::process::Stdio::null())
        .stderr(file)
        .spawn()
        .map_err(err)
}

/// Stops an operator: SIGTERM (it releases its Lease), SIGKILL after 10 s.
pub(crate) async fn stop_operator(mut child: Child) {
    let _ = Command::new("kill").args(["-TERM", &child.id().to_string()]).status();
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(10) && matches!(child.try_wait(), Ok(None)) {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let _ = child.kill();
    let _ = child.wait();
}

/// For every region of `mall` in a member cluster: installs the chart's member identity into the
/// dev cluster named like the region and stores its kubeconfig (token and CA embedded) in the
/// hub under the Secret and key the region names.
async fn connect_members(clusters: &[LocalCluster], mall: &Mall, namespace: &str) -> Result<(), StackError> {
    let Some(hub) = clusters.first() else { return Ok(()) };
    for region in &mall.spec.regions {
        let Some(reference) = &region.cluster else { continue };
        let member = clusters.iter().skip(1).find(|c| c.name() == region.name).ok_or_else(|| {
            StackError::Manifest(format!(
                "region {:?} runs in a member cluster: start one named like it (--clusters {},{})",
                region.name,
                hub.name(),
                mall.spec
                    .regions
                    .iter()
                    .filter(|r| r.cluster.is_some())
                    .map(|r| r.name.as_str())
                    .collect::<Vec<_>>()
                    .join(",")
            ))
        })?;
        let root = tokio::task::spawn_blocking(localcluster::assets::root)
            .await
            .map_err(|e| StackError::Manifest(format!("writing the embedded chart: {e}")))?
            .map_err(StackError::Assets)?;
        let kubeconfig = localcluster::members::install_member_identity(member, &root, &[namespace])
            .await
            .map_err(StackError::Member)?;
        localcluster::members::put_kubeconfig_secret(
            &hub.client(),
            namespace,
            &reference.secret_name,
            &reference.key,
            &kubeconfig,
        )
        .await
        .map_err(StackError::Member)?;
        eprintln!(
            "mallctl dev: region {} runs in cluster {} (Secret {namespace}/{} in {} holds its kubeconfig, with the chart's member Role)",
            region.name,
            member.name(),
            reference.secret_name,
            hub.name()
        );
    }
    Ok(())
}

/// Validates and applies every Mall in `files` into the first of `clusters` (creating
/// namespaces; regions in member clusters go to the clusters named like them), returning
/// (namespace, name) of each.
pub async fn apply(clusters: &[LocalCluster], files: &[String]) -> Result<Vec<(String, String)>, StackError> {
    let Some(cluster) = clusters.first() else { return Ok(Vec::new()) };
    let client = cluster.client();
    let mut applied = Vec::new();
    for file in files {
        let docs = read_documents(file).map_err(|e| StackError::Manifest(e.to_string()))?;
        for doc in docs {
            let mall = mall_controllers::validate::validate_value(&doc.value, None)
                .map_err(|e| StackError::Manifest(format!("{file}: {e}")))?;
            let namespace = mall.metadata.namespace.clone().unwrap_or_else(|| "default".into());
            let name = mall.metadata.name.clone().unwrap_or_default();
            let ns: Api<k8s_openapi::api::core::v1::Namespace> = Api::all(client.clone());
            let ns_object =
                serde_json::json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": namespace}});
            ns.patch(&namespace, &PatchParams::apply("mallctl"), &Patch::Apply(&ns_object))
                .await
                .map_err(|source| StackError::Apply { name: name.clone(), source })?;
            connect_members(clusters, &mall, &namespace).await?;
            let mut value: Value = doc.value.clone();
            value["metadata"]["namespace"] = Value::String(namespace.clone());
            let api: Api<Mall> = Api::namespaced(client.clone(), &namespace);
            api.patch(&name, &PatchParams::apply("mallctl").force(), &Patch::Apply(&value))
                .await
                .map_err(|source| StackError::Apply { name: name.clone(), source })?;
            eprintln!("mallctl dev: applied Mall {namespace}/{name} from {file}");
            applied.push((namespace, name));
        }
    }
    Ok(applied)
}

/// Waits until every Mall is Ready for its current generation, printing `mall NS/NAME Ready in Xs`
/// and its tier counts; fails after `timeout`.
pub async fn wait_ready(
    cluster: &LocalCluster,
    malls: &[(String, String)],
    timeout: Duration,
) -> Result<(), StackError> {
    let client = cluster.client();
    let start = Instant::now();
    for (namespace, name) in malls {
        let api: Api<Mall> = Api::namespaced(client.clone(), namespace);
        loop {
            let mall = api.get_opt(name).await.ok().flatten();
            let status = mall.as_ref().and_then(|m| m.status.clone());
            let ready = mall.as_ref().is_some_and(|m| {
                status.as_ref().is_some_and(|s| {
                    s.observed_generation == m.metadata.generation
                        && s.conditions.iter().any(|c| c.type_ == "Ready" && c.status == "True")
                })
            });
            if ready {
                let tiers = status.as_ref().and_then(|s| s.tiers.clone()).unwrap_or_default();
                println!(
                    "mall {namespace}/{name} Ready in {:.1}s: storefront {}/{}, database {}/{} instances in {} shard(s){}{}",
                    start.elapsed().as_secs_f64(),
                    tiers.storefront.ready,
                    tiers.storefront.desired,
                    tiers.database.ready,
                    tiers.database.desired,
                    status.as_ref().map(|s| s.shards.len()).unwrap_or(0),
                    tiers.cache.map(|c| format!(", cache {}/{}", c.ready, c.desired)).unwrap_or_default(),
                    tiers.edge.map(|c| format!(", edge {}/{}", c.ready, c.desired)).unwrap_or_default(),
                );
                break;
            }
            if start.elapsed() > timeout {
                let detail = status
                    .map(|s| {
                        s.conditions
                            .iter()
                            .map(|c| format!("{}={} {}: {}", c.type_, c.status, c.reason, c.message))
                            .collect::<Vec<_>>()
                            .join("; ")
                    })
                    .unwrap_or_else(|| "no status yet".into());
                return Err(StackError::NotReady { name: name.clone(), waited: start.elapsed(), detail });
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }
    Ok(())
}
