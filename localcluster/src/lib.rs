//! `localcluster`: a real Kubernetes control plane on loopback, for tests and demos.
//!
//! # What runs
//! [`LocalCluster::start`] launches, as child processes on free 127.0.0.1 ports:
//! - **etcd** v3.6.16 (`--unsafe-no-fsync`, data in `<dir>/etcd-data`);
//! - **kube-apiserver** v1.36.3 with a generated CA, a serving certificate (SANs 127.0.0.1,
//!   localhost, kubernetes.default.svc), client-certificate and ServiceAccount-token
//!   authentication, `--authorization-mode=Node,RBAC`, the default admission plugins (including
//!   PodSecurity) and an audit log ([`audit`]: one line per write, `Metadata` level);
//! - **kube-controller-manager** v1.36.3 (all default controllers: Deployments, ReplicaSets,
//!   StatefulSets, Jobs, garbage collector, namespace deletion, HPA, PV binder, token and root-CA
//!   publishers; client rate limits raised to 200 qps / 400 burst; more flags through
//!   [`Options::kcm_args`]);
//! - **kube-scheduler** v1.36.3 (the real scheduler places every pod);
//! - **kwok** v0.8.0 in place of kubelets: it keeps the fake Nodes (three zones, label
//!   `topology.kubernetes.io/zone` = `zone-a`/`zone-b`/`zone-c`) Ready through node leases,
//!   makes scheduled pods Running and Ready after [`Options::pod_startup`] (per-pod override:
//!   annotation [`kwok::STARTUP_DELAY_ANNOTATION`]), completes Job pods, removes terminating
//!   pods, and provisions and binds PersistentVolumes for the default StorageClass
//!   `kwok-volume`.
//!
//! With [`Options::cnpg_webhooks`] (or [`CnpgWebhooks::start`] on a running cluster), the real
//! CloudNativePG v1.30.1 operator binary also runs, as the judge of every CNPG object written:
//! its own mutating and validating admission webhooks, its reconcilers confined to an empty
//! namespace ([`cnpg_webhooks`]).
//!
//! Each component runs as the identity of its own client certificate (`localcluster-admin`,
//! `system:kube-controller-manager`, `system:kube-scheduler`, `system:kwok`, all in
//! `system:masters`), so the audit log tells them apart; give code under test its own identity
//! with [`LocalCluster::user_kubeconfig`] (a ServiceAccount token, subject to RBAC).
//! Pod IPs come from `127.(64+index).0.0/16` and ClusterIPs from `127.(96+index).0.0/16`: every
//! fictional address stays on loopback, and nothing ever connects to one. Several clusters (a
//! hub and regions) run side by side with distinct [`Options::index`] values; one takes about
//! 570 MB of RSS.
//!
//! # Where things are
//! - Binaries: built from pinned Go modules by `hack/tools.sh` into
//!   `~/.cache/mall-operator/tools/<hash of go.mod/go.sum>/bin` (about 9 minutes cold on two
//!   cores, instant warm); override with `MALL_TOOLS_BIN` ([`tools`]). The script, the pinned
//!   go.mod/go.sum files and the Helm chart travel inside the binary and are written once to
//!   `~/.cache/mall-operator/assets/<key>`, so an installed binary needs no checkout;
//!   `MALL_REPO_ROOT` points at a checkout instead ([`assets`]).
//! - Third-party files (kwok stages and StorageClass, CRDs): read at set-up time from the Go
//!   module cache (`go mod download -json` in `hack/tools/thirdparty`), never copied into the
//!   repository ([`thirdparty`]).
//! - The cluster directory ([`LocalCluster::dir`], a temporary directory by default, kept with
//!   `LOCALCLUSTER_KEEP=1`): `kubeconfig` (admin), `pki/`, `logs/<component>.log`,
//!   `audit/audit.log`, `kwok/stages.yaml`, `users/*.kubeconfig`, `etcd-data/`.
//!
//! # Lifecycle
//! Start returns once `/readyz` answers, the `default` ServiceAccount exists and every node is
//! Ready (about 5 s warm on two cores); a failure names the component and quotes its log.
//! [`LocalCluster::stop`] stops in order (kwok, scheduler, controller manager, API server,
//! etcd; SIGTERM, timeout, SIGKILL); [`LocalCluster::kill`] SIGKILLs everything at once (a
//! region outage); [`LocalCluster::restart`] brings it back on the same data, PKI and ports.
//! Children share a process group, get `SIGKILL` as parent-death signal (set from a dedicated
//! spawner thread, so only the test process's death triggers it) and are killed and reaped
//! on drop: a panic, a Ctrl-C or a killed test runner leaves no orphans. A temporary directory
//! left by a test process that died without unwinding (SIGKILL, SIGTERM, Ctrl-C) is removed by
//! the next [`LocalCluster::start`] once its owner pid is gone.
//!
//! # Traps worth knowing
//! - kube 5 sends no User-Agent; clients from this crate set one (the audit log shows it).
//! - kube 5 retries 429, 503 and 504 by itself (`Config::default_retry`): an injected 429 is
//!   only visible to callers that switch that off.
//! - kwok's identity is random per process, so a restarted kwok cannot renew its predecessor's
//!   node leases; [`LocalCluster::restart`] deletes them first (otherwise new pods stay Pending
//!   for the 200 s lease duration).
//! - kube-apiserver ignores SIGTERM once etcd is gone: [`LocalCluster::stop`] stops it before
//!   etcd and SIGKILLs after a timeout.
//!
//! # Compared with kind
//! kind runs real kubelets and a container runtime in Docker containers; here the same
//! control-plane binaries run as plain processes and kwok fakes the nodes. What kind's clusters
//! give a controller through the API (scheduling, Deployments, StatefulSets with PVCs, Jobs,
//! garbage collection, RBAC, PodSecurity admission, server-side apply, watches, HPA) behaves
//! the same; start-up takes seconds instead of a minute, and no container image is pulled.
//!
//! # What kwok does not simulate
//! No container runs: no images, probes, logs, exec, port-forward, resource usage or metrics
//! (so no metrics-server; HPAs need an external metrics source), no networking (pod and
//! Service IPs are unreachable by design; kube-proxy, DNS, CNI and EndpointSlices with loopback
//! addresses are absent), no crash loops or OOM kills unless a Stage says so, no real volume
//! contents, and node pressure or eviction only if driven through the API. Readiness is a timer
//! ([`Options::pod_startup`], plus about 15 ms of kwok overhead already subtracted).
//!
//! # Faults
//! [`faults::FaultProxy`] sits in front of the API server and fails, delays or drops a chosen
//! fraction of requests per resource, switched at run time; clients behind it use bearer tokens
//! so the audit log still names them.

pub mod assets;
pub mod audit;
pub mod base64;
mod cluster;
pub mod cnpg_sim;
pub mod cnpg_webhooks;
pub mod crds;
mod error;
pub mod faults;
pub mod gateway;
pub mod kubeconfig;
pub mod kwok;
mod launch;
pub mod members;
mod options;
pub mod pki;
mod plane;
mod process;
pub mod prometheus;
pub mod storage;
pub mod thirdparty;
pub mod tools;

pub use cluster::{ClusterError, LocalCluster, Ports};
pub use cnpg_sim::{CnpgSimError, CnpgSimulator, SimulatorOptions};
pub use cnpg_webhooks::{CnpgWebhooks, CnpgWebhooksError};
pub use crds::{install_crd_objects, install_crds};
pub use options::{Options, OptionsError};
pub use process::ProcessError;

#[cfg(test)]
mod tests {
    fn assert_send_sync<T: Send + Sync>() {}

    #[test]
    fn handles_can_move_between_tasks() {
        assert_send_sync::<crate::LocalCluster>();
        assert_send_sync::<crate::faults::FaultProxy>();
    }
}
