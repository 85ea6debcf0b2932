//! [`Plane`]: the state of one control plane — its directory, PKI, ports, running processes and
//! admin client — shared by the launcher, which starts and restarts the processes, and
//! [`crate::LocalCluster`], which owns a plane and hands out what tests need.
//!
//! Contract: plain data; no lifecycle logic (that is in `launch`), no public API of its own
//! beyond [`Ports`].

use std::path::PathBuf;

use crate::options::Options;
use crate::pki::Pki;
use crate::process::Proc;

/// Ports of one cluster (all on 127.0.0.1), fixed for its lifetime.
#[derive(Debug, Clone, Copy)]
pub struct Ports {
    /// etcd client port.
    pub etcd_client: u16,
    /// etcd peer port.
    pub etcd_peer: u16,
    /// kube-apiserver secure port.
    pub apiserver: u16,
}

/// One control plane's state.
pub(crate) struct Plane {
    pub(crate) opts: Options,
    pub(crate) dir: PathBuf,
    pub(crate) tools: PathBuf,
    pub(crate) kwok_stage_dir: PathBuf,
    pub(crate) pki: Pki,
    pub(crate) ports: Ports,
    pub(crate) procs: Vec<Proc>,
    pub(crate) pgid: Option<i32>,
    pub(crate) client: kube::Client,
}

impl Plane {
    /// The API server URL.
    pub(crate) fn server(&self) -> String {
        format!("https://127.0.0.1:{}", self.ports.apiserver)
    }

    /// The audit log.
    pub(crate) fn audit_log(&self) -> PathBuf {
        self.dir.join("audit/audit.log")
    }

    /// The log file of a component.
    pub(crate) fn log_path(&self, component: &str) -> PathBuf {
        self.dir.join("logs").join(format!("{component}.log"))
    }
}
