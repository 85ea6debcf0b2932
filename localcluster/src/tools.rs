//! Locating the pinned tool binaries (etcd, kube-apiserver, kube-controller-manager,
//! kube-scheduler, kubectl, kwok, helm).
//!
//! Contract: [`tools_dir`] returns the directory holding them: `$MALL_TOOLS_BIN` when set,
//! otherwise the last stdout line of `bash hack/tools.sh` (in [`crate::assets::root`]: the copy
//! embedded in this binary, or `$MALL_REPO_ROOT`), which builds them into a cache keyed on the
//! pinned go.sum files (minutes when cold, instant when warm). The answer is cached
//! for the life of the process; concurrent callers wait for the first one. The call blocks: call
//! it from `spawn_blocking` in async code ([`crate::LocalCluster::start`] does).

use std::path::PathBuf;
use std::process::Command;
use std::sync::Mutex;

/// Errors of locating the tools.
#[derive(Debug, thiserror::Error)]
pub enum ToolsError {
    /// `hack/tools.sh` could not be run.
    #[error("cannot run {script}")]
    Run {
        /// The script.
        script: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// `hack/tools.sh` failed.
    #[error("{script} failed ({status}); its last output:\n{stderr_tail}")]
    Failed {
        /// The script.
        script: PathBuf,
        /// Its exit status.
        status: std::process::ExitStatus,
        /// The last lines of its stderr.
        stderr_tail: String,
    },
    /// The embedded tool definitions could not be written.
    #[error(transparent)]
    Assets(#[from] crate::assets::AssetsError),
    /// A binary is missing from the tools directory.
    #[error("{binary} not found in {dir}")]
    Missing {
        /// The binary.
        binary: String,
        /// The directory.
        dir: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
}

/// The directory of the tool binaries (see the module documentation). Blocking.
pub fn tools_dir() -> Result<PathBuf, ToolsError> {
    static CACHE: Mutex<Option<PathBuf>> = Mutex::new(None);
    let mut cached = CACHE.lock().unwrap_or_else(|p| p.into_inner());
    if let Some(dir) = cached.as_ref() {
        return Ok(dir.clone());
    }
    let dir = match std::env::var_os("MALL_TOOLS_BIN") {
        Some(dir) => PathBuf::from(dir),
        None => run_tools_script()?,
    };
    *cached = Some(dir.clone());
    Ok(dir)
}

/// The path of `hack/tools.sh` in [`crate::assets::root`].
pub fn script() -> Result<PathBuf, ToolsError> {
    Ok(crate::assets::root()?.join("hack/tools.sh"))
}

fn run_tools_script() -> Result<PathBuf, ToolsError> {
    let script = script()?;
    tracing::info!(script = %script.display(), "locating tools (a cold build takes minutes)");
    let output = Command::new("bash")
        .arg(&script)
        .output()
        .map_err(|source| ToolsError::Run { script: script.clone(), source })?;
    let stdout = String::from_utf8_lossy(&output.stdout);
    let last = stdout.lines().rev().find(|l| !l.trim().is_empty());
    match (output.status.success(), last) {
        (true, Some(line)) => Ok(PathBuf::from(line.trim())),
        _ => {
            let stderr = String::from_utf8_lossy(&output.stderr);
            let lines: Vec<&str> = stderr.lines().collect();
            Err(ToolsError::Failed {
                script,
                status: output.status,
                stderr_tail: lines[lines.len().saturating_sub(20)..].join("\n"),
            })
        }
    }
}

/// The path of one tool binary, checked to exist. Blocking.
pub fn tool(name: &str) -> Result<PathBuf, ToolsError> {
    let dir = tools_dir()?;
    let path = dir.join(name);
    std::fs::metadata(&path).map_err(|source| ToolsError::Missing {
        binary: name.to_string(),
        dir: dir.clone(),
        source,
    })?;
    Ok(path)
}
