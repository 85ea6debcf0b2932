//! End-to-end test support for the Mall operator, against any cluster: the local control plane
//! (`localcluster`) by default, or the cluster of `KUBECONFIG` (e.g. kind in users' CI).
//!
//! Contract: helpers only; the tests live in `tests/tests/`.

use std::path::PathBuf;
use std::process::Command;

/// The repository root (parent of this crate).
pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// Directory of the pinned tool binaries (`hack/tools.sh` builds them when missing;
/// `MALL_TOOLS_BIN` overrides). Panics with the script's output when it fails: tests need it.
pub fn tools_bin() -> PathBuf {
    static BIN: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    BIN.get_or_init(locate_tools).clone()
}

fn locate_tools() -> PathBuf {
    if let Some(dir) = std::env::var_os("MALL_TOOLS_BIN") {
        return PathBuf::from(dir);
    }
    let out = Command::new("bash")
        .arg(repo_root().join("hack/tools.sh"))
        .output()
        .unwrap_or_else(|e| panic!("running hack/tools.sh: {e}"));
    assert!(out.status.success(), "hack/tools.sh failed:\n{}", String::from_utf8_lossy(&out.stderr));
    let stdout = String::from_utf8_lossy(&out.stdout);
    PathBuf::from(stdout.lines().last().unwrap_or_default().trim())
}
