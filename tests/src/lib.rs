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
pub mod metrics_adapter;
mod operator;
pub use localcluster::prometheus;

pub use env::{Env, apply_yaml, wait_until};
pub use operator::{OperatorProcess, install_operator_identity, operator_bin};

use std::path::PathBuf;

/// The repository root (parent of this crate).
pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
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
