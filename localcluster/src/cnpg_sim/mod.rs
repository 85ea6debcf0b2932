//! A CloudNativePG STATUS SIMULATOR: a stand-in for tests and `mallctl dev` only, never part of
//! the Mall operator or its image. On a real cluster the real CloudNativePG operator does this
//! work; on the local control plane (kwok, no containers) no PostgreSQL pod can ever run, so
//! this task plays the part CNPG's operator and instance managers play for a Cluster's status.
//!
//! # Contract
//! [`CnpgSimulator::spawn`] starts one tokio task that watches `postgresql.cnpg.io/v1`
//! `Cluster`s (and `Pooler`s) in all namespaces, or in [`SimulatorOptions::namespace`], and
//! moves each Cluster's `.status` one step every [`SimulatorOptions::step`] the way CloudNativePG
//! v1.30.1 documents and implements it (see [`model`], which cites the source for each
//! transition; `C:` = `github.com/cloudnative-pg/cloudnative-pg@v1.30.1/` in the Go module cache,
//! facts in `/work/shared/CLOUDNATIVEPG-FACTS.md`):
//! - create with N instances: `Initialized=False/BootstrapPending` -> "Setting up primary"
//!   (`targetPrimary=<c>-1`) -> "Waiting for the instances to become active" ->
//!   `currentPrimary=<c>-1`, `timelineID=1` -> per further instance "Creating a new replica"
//!   (lowest free serial) and "Waiting..." -> "Cluster in healthy state", `Ready=True`,
//!   `Initialized=True/BootstrapCompleted`, `readyInstances=N`;
//! - `spec.instances` changes: replicas are added the same way, or removed highest serial first;
//! - [`CnpgSimulator::fail_instance`]: `readyInstances` drops; for the primary, the failover of
//!   C:docs/src/failover.md ("Failing over", `targetPrimary=pending`, new primary = lowest Ready
//!   serial, `timelineID+1`), then the old primary rejoins after
//!   [`SimulatorOptions::rejoin_after`] and the cluster returns to healthy;
//! - `Ready` mirrors the phase on every write; `ContinuousArchiving=True` once a primary runs
//!   when the spec has a WAL archiver (plugin `isWALArchiver: true` or in-tree barmanObjectStore);
//! - the `<c>-app` Secret and `<c>-rw`/`-ro`/`-r` Services, owned by the Cluster ([`objects`]);
//! - a Pooler's `status.instances` = `spec.instances` and `status.phase` active/paused;
//! - distributed topology ([`model`]'s `topology`, facts §5): a Cluster whose `spec.replica`
//!   makes it a replica cluster bootstraps from the archive `bootstrap.recovery.source` names and
//!   replays the archive `replica.source` names; a primary writes WAL at
//!   [`SimulatorOptions::wal_bytes_per_second`] and archives it at segment boundaries and on
//!   `archive_timeout`, into an object store shared by every simulator given the same
//!   [`SimulatorOptions::object_store_dir`] ([`wal`]; ObjectStores `barmancloud.cnpg.io/v1` are
//!   watched for their `destinationPath`); spec turned replica -> demotion
//!   (`ReplicaClusterSwitch`, `switchReplicaClusterStatus.inProgress`, `status.demotionToken`);
//!   spec turned primary with a `promotionToken` -> "Promoting to primary cluster" until the token
//!   LSN is replayed (or "Cluster is unrecoverable and needs manual intervention"), without one
//!   -> promotion at once; [`CnpgSimulator::positions`] gives written/archived/replayed LSNs;
//! - `cnpg.io/fencedInstances`: those instances are not Ready and a fenced primary writes no WAL.
//!
//! Status is written by server-side apply on `/status`, field manager [`FIELD_MANAGER`]; build
//! the client with [`client_from_kubeconfig`] so requests carry User-Agent [`FIELD_MANAGER`].
//! State lives in memory; a restarted simulator rebuilds it from the written status and, for the
//! WAL, from the Cluster's own archive (WAL written but not archived is then lost).
//! Clusters step independently: each tick, every Cluster whose previous write has landed takes
//! its next step, and the writes run concurrently (bounded), so many Clusters progress as fast
//! as a few (CloudNativePG's controller, too, reconciles several Clusters at once).
//! API errors are logged (`tracing`) and the step is retried on the next tick; the task only
//! ends on [`CnpgSimulator::stop`] or drop.
//!
//! Not simulated: pods, PVCs, jobs, PDBs, the `-ca`/`-server`/`-replication`/`-superuser`
//! Secrets, in-cluster switchover requests (`kubectl cnpg promote`), hibernation, backups
//! (Backup/ScheduledBackup status), failover quorum and delays, streaming replication
//! (replicas follow the archive only), `pg_basebackup` bootstrap, `minApplyDelay`, the
//! empty-archive check of a new cluster, the fencing annotation CNPG itself adds while
//! demoting (the simulator fences internally), the rebuild of a diverged former primary (its
//! replay just stops), and WAL content (LSNs only; archiving is instantaneous).

pub mod model;
pub mod objects;
mod pooler;
pub mod spec;
pub mod wal;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use futures::future::BoxFuture;
use futures::stream::FuturesUnordered;
use futures::{FutureExt, StreamExt};
use kube::api::{Api, ApiResource, DynamicObject, GroupVersionKind, Patch, PatchParams};
use kube::runtime::{WatchStreamExt, watcher};
use serde_json::{Value, json};
use tokio::sync::{mpsc, oneshot};

use model::{ClusterSim, SpecView, WalIo, WalPositions};
use wal::{ArchiveLocation, WalStore};

/// Field manager and User-Agent of the simulator.
pub const FIELD_MANAGER: &str = "cnpg-status-simulator";

/// Errors of the simulator.
#[derive(Debug, thiserror::Error)]
pub enum CnpgSimError {
    /// The client could not be built.
    #[error("cannot build the simulator's client")]
    Client {
        /// The cause.
        #[source]
        source: crate::kubeconfig::KubeconfigError,
    },
    /// Writing a status failed.
    #[error("cannot write the status of {object}")]
    Status {
        /// `Kind namespace/name`.
        object: String,
        /// The cause.
        #[source]
        source: kube::Error,
    },
    /// Creating a Secret or Service failed.
    #[error("cannot create {object}")]
    Objects {
        /// `Kind namespace/name`.
        object: String,
        /// The cause.
        #[source]
        source: kube::Error,
    },
    /// The simulator task is gone.
    #[error("the CloudNativePG simulator is not running")]
    Stopped,
    /// The simulator task panicked.
    #[error("the CloudNativePG simulator task failed")]
    Join {
        /// The cause.
        #[source]
        source: tokio::task::JoinError,
    },
    /// `positions` named no known Cluster.
    #[error("no simulated Cluster {cluster} in namespace {namespace}")]
    NoSuchCluster {
        /// Namespace.
        namespace: String,
        /// Cluster name.
        cluster: String,
    },
    /// The shared object store could not be read or written.
    #[error("simulated object store")]
    Archive {
        /// The cause.
        #[source]
        source: wal::WalStoreError,
    },
    /// `fail_instance` named no known instance.
    #[error("no simulated instance {cluster}-{serial} in namespace {namespace}")]
    NoSuchInstance {
        /// Namespace.
        namespace: String,
        /// Cluster name.
        cluster: String,
        /// Serial.
        serial: u32,
    },
}

/// Settings of the simulator.
#[derive(Debug, Clone)]
pub struct SimulatorOptions {
    /// Time per step (one status transition per Cluster). Default 200 ms.
    pub step: Duration,
    /// How long a failed instance stays not Ready before it rejoins. Default 1 s.
    pub rejoin_after: Duration,
    /// Watch only this namespace (default: all).
    pub namespace: Option<String>,
    /// The simulated object store: a directory every simulator instance naming it shares (across
    /// processes and restarts), see [`wal::WalStore`]. `None`: this simulator's memory only.
    pub object_store_dir: Option<PathBuf>,
    /// WAL bytes a primary writes per simulated second. Default 16 KiB.
    pub wal_bytes_per_second: u64,
    /// Simulated seconds per real second, for the WAL rate and `archive_timeout` (300 makes
    /// CNPG's default 5min archive_timeout last 1 s). Default 1.
    pub clock_scale: f64,
}

impl Default for SimulatorOptions {
    fn default() -> Self {
        SimulatorOptions {
            step: Duration::from_millis(200),
            rejoin_after: Duration::from_secs(1),
            namespace: None,
            object_store_dir: None,
            wal_bytes_per_second: 16 * 1024,
            clock_scale: 1.0,
        }
    }
}

/// A kube client from a kubeconfig (e.g. [`crate::LocalCluster::kubeconfig`]) that sends
/// User-Agent `cnpg-status-simulator`, so the audit log names the simulator.
pub async fn client_from_kubeconfig(path: &Path) -> Result<kube::Client, CnpgSimError> {
    crate::kubeconfig::client_from_kubeconfig(path, FIELD_MANAGER)
        .await
        .map_err(|source| CnpgSimError::Client { source })
}

enum Command {
    Fail { namespace: String, cluster: String, serial: u32, reply: oneshot::Sender<bool> },
    Positions { namespace: String, cluster: String, reply: oneshot::Sender<Option<WalPositions>> },
}

/// The running simulator. Dropping it aborts the task.
pub struct CnpgSimulator {
    commands: mpsc::UnboundedSender<Command>,
    stop: Option<oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<()>>,
}

fn resource(kind: &str) -> ApiResource {
    ApiResource::from_gvk(&GroupVersionKind::gvk("postgresql.cnpg.io", "v1", kind))
}

impl CnpgSimulator {
    /// Starts the simulator on the current tokio runtime.
    pub fn spawn(client: kube::Client, opts: SimulatorOptions) -> CnpgSimulator {
        let (commands, rx) = mpsc::unbounded_channel();
        let (stop, stop_rx) = oneshot::channel();
        let task = tokio::spawn(run(client, opts, rx, stop_rx));
        CnpgSimulator { commands, stop: Some(stop), task: Some(task) }
    }

    /// Fault injection: instance `<cluster>-<serial>` in `namespace` stops being Ready (see the
    /// module documentation for what follows).
    pub async fn fail_instance(&self, namespace: &str, cluster: &str, serial: u32) -> Result<(), CnpgSimError> {
        let (reply, rx) = oneshot::channel();
        let cmd = Command::Fail { namespace: namespace.to_string(), cluster: cluster.to_string(), serial, reply };
        self.commands.send(cmd).map_err(|_| CnpgSimError::Stopped)?;
        match rx.await {
            Ok(true) => Ok(()),
            Ok(false) => Err(CnpgSimError::NoSuchInstance {
                namespace: namespace.to_string(),
                cluster: cluster.to_string(),
                serial,
            }),
            Err(_) => Err(CnpgSimError::Stopped),
        }
    }

    /// The WAL positions of Cluster `namespace/cluster` (written, archived, replayed, timeline):
    /// e.g. what a failover without a token lost is the old primary's `written` minus the new
    /// primary's `replayed` at promotion.
    pub async fn positions(&self, namespace: &str, cluster: &str) -> Result<WalPositions, CnpgSimError> {
        let (reply, rx) = oneshot::channel();
        let cmd = Command::Positions { namespace: namespace.to_string(), cluster: cluster.to_string(), reply };
        self.commands.send(cmd).map_err(|_| CnpgSimError::Stopped)?;
        rx.await.map_err(|_| CnpgSimError::Stopped)?.ok_or_else(|| CnpgSimError::NoSuchCluster {
            namespace: namespace.to_string(),
            cluster: cluster.to_string(),
        })
    }

    /// Stops the task and waits for it.
    pub async fn stop(mut self) -> Result<(), CnpgSimError> {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        match self.task.take() {
            Some(task) => task.await.map_err(|source| CnpgSimError::Join { source }),
            None => Ok(()),
        }
    }
}

impl Drop for CnpgSimulator {
    fn drop(&mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}

/// One watched Cluster.
struct Tracked {
    object: DynamicObject,
    sim: ClusterSim,
    objects_done: bool,
    /// A write of this Cluster is in flight: no further step until it lands.
    busy: bool,
}

type Key = (String, String);

fn key_of(obj: &DynamicObject) -> Option<Key> {
    Some((obj.metadata.namespace.clone()?, obj.metadata.name.clone()?))
}

/// Cluster steps (each at most one status write) in flight at once.
const STEPS_IN_FLIGHT: usize = 32;

async fn run(
    client: kube::Client,
    opts: SimulatorOptions,
    mut commands: mpsc::UnboundedReceiver<Command>,
    mut stop: oneshot::Receiver<()>,
) {
    let api = |kind: &str| match &opts.namespace {
        Some(ns) => Api::<DynamicObject>::namespaced_with(client.clone(), ns, &resource(kind)),
        None => Api::<DynamicObject>::all_with(client.clone(), &resource(kind)),
    };
    let clusters_api = api("Cluster");
    let poolers_api = api("Pooler");
    let store = WalStore::new(opts.object_store_dir.clone());
    let stores_api = match &opts.namespace {
        Some(ns) => Api::<DynamicObject>::namespaced_with(client.clone(), ns, &object_store_resource()),
        None => Api::<DynamicObject>::all_with(client.clone(), &object_store_resource()),
    };
    // ObjectStore `namespace/name` -> `spec.configuration.destinationPath`.
    let mut destinations: BTreeMap<Key, String> = BTreeMap::new();
    let mut object_stores = watcher(stores_api, watcher::Config::default()).default_backoff().boxed();
    let mut clusters = watcher(clusters_api, watcher::Config::default()).default_backoff().boxed();
    let mut poolers = watcher(poolers_api, watcher::Config::default()).default_backoff().boxed();
    let mut tracked: BTreeMap<Key, Tracked> = BTreeMap::new();
    let mut relisted: BTreeSet<Key> = BTreeSet::new();
    type Landed = (Key, Option<String>, Result<Value, CnpgSimError>);
    let mut inflight: FuturesUnordered<BoxFuture<'static, Landed>> = FuturesUnordered::new();
    let mut rotation = 0usize;
    let mut pooler_writes: FuturesUnordered<BoxFuture<'static, Result<(), CnpgSimError>>> = FuturesUnordered::new();
    let mut ticker = tokio::time::interval(opts.step);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = &mut stop => return,
            Some(cmd) = commands.recv() => match cmd {
                Command::Fail { namespace, cluster, serial, reply } => {
                    let ok = tracked
                        .get_mut(&(namespace, cluster))
                        .is_some_and(|t| t.sim.fail_instance(serial, Instant::now()));
                    let _ = reply.send(ok);
                }
                Command::Positions { namespace, cluster, reply } => {
                    let _ = reply.send(tracked.get(&(namespace, cluster)).map(|t| t.sim.positions()));
                }
            },
            Some(event) = object_stores.next() => match event {
                Ok(watcher::Event::Apply(obj) | watcher::Event::InitApply(obj)) => {
                    let path = obj.data["spec"]["configuration"]["destinationPath"].as_str().map(str::to_string);
                    if let (Some(key), Some(path)) = (key_of(&obj), path) {
                        destinations.insert(key, path);
                    }
                }
                Ok(watcher::Event::Delete(obj)) => {
                    if let Some(key) = key_of(&obj) {
                        destinations.remove(&key);
                    }
                }
                Ok(_) => {}
                Err(e) => tracing::debug!(error = %e, "CNPG simulator: ObjectStore watch error"),
            },
            Some(event) = clusters.next() => match event {
                Ok(watcher::Event::Init) => relisted.clear(),
                Ok(watcher::Event::InitApply(obj)) => {
                    if let Some(key) = key_of(&obj) {
                        relisted.insert(key);
                    }
                    observe(&mut tracked, obj);
                }
                Ok(watcher::Event::InitDone) => tracked.retain(|k, _| relisted.contains(k)),
                Ok(watcher::Event::Apply(obj)) => observe(&mut tracked, obj),
                Ok(watcher::Event::Delete(obj)) => {
                    if let Some(key) = key_of(&obj) {
                        tracked.remove(&key);
                    }
                }
                Err(e) => tracing::debug!(error = %e, "CNPG simulator: Cluster watch error"),
            },
            Some(event) = poolers.next() => match event {
                Ok(watcher::Event::Apply(obj) | watcher::Event::InitApply(obj)) => {
                    pooler_writes.push(pooler::pooler_status(client.clone(), obj).boxed());
                }
                Ok(_) => {}
                Err(e) => tracing::debug!(error = %e, "CNPG simulator: Pooler watch error"),
            },
            Some((key, uid, outcome)) = inflight.next(), if !inflight.is_empty() => {
                // A Cluster recreated meanwhile (new uid) is a new simulation: not this write's.
                let t = tracked.get_mut(&key).filter(|t| t.object.metadata.uid == uid);
                match outcome {
                    Ok(status) => {
                        if let Some(t) = t {
                            t.sim.mark_written(status);
                            t.objects_done = true;
                            t.busy = false;
                        }
                    }
                    Err(e) => {
                        if let Some(t) = t {
                            t.busy = false;
                        }
                        tracing::warn!(error = %e, source = ?std::error::Error::source(&e), "CNPG simulator step");
                    }
                }
            }
            Some(result) = pooler_writes.next(), if !pooler_writes.is_empty() => {
                if let Err(e) = result {
                    tracing::warn!(error = %e, "CNPG simulator: Pooler status");
                }
            }
            _ = ticker.tick() => {
                // Every Cluster whose last write has landed takes its next step; the writes run
                // concurrently (at most STEPS_IN_FLIGHT, starting where the last tick stopped),
                // as CloudNativePG's controller reconciles several Clusters at once — so one
                // slow write never holds the others back.
                let due: Vec<Key> = tracked.iter().filter(|(_, t)| !t.busy).map(|(k, _)| k.clone()).collect();
                let room = STEPS_IN_FLIGHT.saturating_sub(inflight.len());
                let start = if due.is_empty() { 0 } else { rotation % due.len() };
                let mut launched = 0;
                for key in due.iter().cycle().skip(start).take(due.len()) {
                    if launched >= room {
                        break;
                    }
                    let Some(t) = tracked.get_mut(key) else { continue };
                    let spec = SpecView::from_cluster(&t.object);
                    let locate = |a: &Option<spec::ArchiveRef>| {
                        let a = a.as_ref()?;
                        let path = destinations.get(&(key.0.clone(), a.object_store.clone()))?;
                        Some(ArchiveLocation { destination_path: path.clone(), server_name: a.server_name.clone() })
                    };
                    let (own, source) = (locate(&spec.archive), locate(&spec.source_archive));
                    let read = |loc: &Option<ArchiveLocation>| loc.as_ref().and_then(|l| logged(store.read(l)).flatten());
                    let mut io = WalIo {
                        followed: read(&source),
                        own: read(&own),
                        bytes_per_second: opts.wal_bytes_per_second,
                        clock_scale: opts.clock_scale,
                        ..WalIo::default()
                    };
                    let status = t.sim.step_wal(&spec, Instant::now(), opts.rejoin_after, &mut io);
                    if let (Some(loc), Some(state)) = (&own, io.archive.take()) {
                        logged(store.write(loc, &state));
                    }
                    let Some(status) = status else { continue };
                    t.busy = true;
                    launched += 1;
                    let write = write_step(client.clone(), t.object.clone(), !t.objects_done, status);
                    let (key, uid) = (key.clone(), t.object.metadata.uid.clone());
                    inflight.push(write.map(move |outcome| (key, uid, outcome)).boxed());
                }
                rotation = rotation.wrapping_add(start + launched);
            }
        }
    }
}

fn object_store_resource() -> ApiResource {
    ApiResource::from_gvk(&GroupVersionKind::gvk("barmancloud.cnpg.io", "v1", "ObjectStore"))
}

/// The value of an object-store access; an error is logged (the next tick retries).
fn logged<T>(result: Result<T, wal::WalStoreError>) -> Option<T> {
    result
        .map_err(|source| {
            let e = CnpgSimError::Archive { source };
            tracing::warn!(error = %e, source = ?std::error::Error::source(&e), "CNPG simulator archive");
        })
        .ok()
}

/// Records the newest version of a Cluster; a new uid starts a new simulation.
fn observe(tracked: &mut BTreeMap<Key, Tracked>, obj: DynamicObject) {
    let Some(key) = key_of(&obj) else { return };
    if obj.metadata.deletion_timestamp.is_some() {
        tracked.remove(&key);
        return;
    }
    match tracked.get_mut(&key) {
        Some(t) if t.object.metadata.uid == obj.metadata.uid => t.object = obj,
        _ => {
            let status = obj.data.get("status").cloned().unwrap_or(Value::Null);
            let sim = ClusterSim::from_status(&key.1, &status);
            tracked.insert(key, Tracked { object: obj, sim, objects_done: false, busy: false });
        }
    }
}

/// The writes of one step of one Cluster: its objects (on its first step), then its status.
/// Returns the status written.
async fn write_step(
    client: kube::Client,
    cluster: DynamicObject,
    first: bool,
    status: Value,
) -> Result<Value, CnpgSimError> {
    if first {
        objects::ensure_objects(&client, &cluster).await?;
    }
    let (ns, name) = key_of(&cluster).unwrap_or_default();
    let patch = json!({"apiVersion": "postgresql.cnpg.io/v1", "kind": "Cluster", "status": status});
    let api = Api::<DynamicObject>::namespaced_with(client, &ns, &resource("Cluster"));
    api.patch_status(&name, &PatchParams::apply(FIELD_MANAGER).force(), &Patch::Apply(&patch))
        .await
        .map_err(|source| CnpgSimError::Status { object: format!("Cluster {ns}/{name}"), source })?;
    Ok(status)
}
