//! End-to-end test support for the Mall operator, against any cluster: the local control plane
//! (`localcluster`) by default, or the cluster of `MALL_E2E_KUBECONFIG` (e.g. kind in users' CI).
//!
//! Contract: helpers only (the tests live in `tests/tests/`); they panic with a clear message
//! when the environment is broken, since a test cannot go on without it. The operator always
//! runs as a separate process under the Helm chart's RBAC alone, with its own ServiceAccount
//! token, so the audit log (local control plane only) attributes its writes.

pub mod bench;
mod env;
pub mod image;
pub mod leaks;
pub mod metrics_adapter;
mod operator;
pub use localcluster::prometheus;

pub use env::{Env, apply_yaml, skipped, wait_until};
pub use operator::{OperatorProcess, install_operator_identity, operator_bin};

use std::path::PathBuf;

/// The repository root (parent of this crate).
pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// Successful writes (HTTP status below 300) by `user` in the local control plane's audit log,
/// oldest first, as `verb resource[/subresource] name`, with Lease renewals left out (the leader
/// election's cost, not the Malls'). Panics when the log cannot be read.
pub fn writes_by(cluster: &localcluster::LocalCluster, user: &str) -> Vec<String> {
    localcluster::audit::read_events(&cluster.audit_log())
        .unwrap_or_else(|e| panic!("reading the audit log of {}: {e}", cluster.name()))
        .into_iter()
        .filter(|e| e.user == user && e.code.is_some_and(|c| c < 300))
        .filter(|e| e.resource.as_deref() != Some("leases"))
        .map(|e| {
            let sub = e.subresource.as_deref().map(|s| format!("/{s}")).unwrap_or_default();
            format!("{} {}{sub} {}", e.verb, e.resource.as_deref().unwrap_or("?"), e.name.as_deref().unwrap_or("?"))
        })
        .collect()
}

/// Directory of the pinned tool binaries (see `localcluster::tools`).
pub fn tools_bin() -> PathBuf {
    localcluster::tools::tools_dir().unwrap_or_else(|e| panic!("the pinned tools are not available: {e}"))
}

/// Whether the Mall is Ready for its current generation.
pub fn mall_ready(mall: &mall_crds::Mall) -> bool {
    mall.status.as_ref().is_some_and(|s| {
        s.observed_generation == mall.metadata.generation
            && s.conditions.iter().any(|c| c.type_ == "Ready" && c.status == "True")
    })
}
