//! The repository files the local control plane needs at run time, embedded in the binary.
//!
//! Contract: [`root`] returns a directory laid out like the repository for those files
//! (`hack/tools.sh`, `hack/tools/*/go.{mod,sum}`, `charts/mall-operator/**`): `$MALL_REPO_ROOT`
//! when set (a checkout, for development against edited files), otherwise the copy embedded at
//! build time (`build.rs`), written once to `$MALL_ASSETS_CACHE/<key>` (default
//! `~/.cache/mall-operator/assets/<key>`), the key naming the embedded paths and contents. So an
//! installed `mallctl` (`cargo install --path cli`) needs no checkout, and a binary never runs
//! tool definitions other than those it was built with. The copy is written into a temporary
//! sibling and renamed into place, so concurrent processes never see a half-written one. The
//! answer is cached for the life of the process.

use std::path::{Path, PathBuf};
use std::sync::Mutex;

include!(concat!(env!("OUT_DIR"), "/assets.rs"));

/// Errors of writing the embedded files.
#[derive(Debug, thiserror::Error)]
pub enum AssetsError {
    /// A file or directory could not be written.
    #[error("cannot write the embedded tool definitions and chart to {path}")]
    Write {
        /// The path.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
}

/// The directory the embedded copies are written under: `$MALL_ASSETS_CACHE`, else
/// `~/.cache/mall-operator/assets` (the system temporary directory without a home).
fn cache_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("MALL_ASSETS_CACHE") {
        return PathBuf::from(dir);
    }
    match std::env::var_os("HOME") {
        Some(home) => PathBuf::from(home).join(".cache/mall-operator/assets"),
        None => std::env::temp_dir().join("mall-operator-assets"),
    }
}

/// The root directory (see the module documentation). Blocking (writes files the first time).
pub fn root() -> Result<PathBuf, AssetsError> {
    static CACHE: Mutex<Option<PathBuf>> = Mutex::new(None);
    let mut cached = CACHE.lock().unwrap_or_else(|p| p.into_inner());
    if let Some(dir) = cached.as_ref() {
        return Ok(dir.clone());
    }
    let dir = match std::env::var_os("MALL_REPO_ROOT") {
        Some(root) => PathBuf::from(root),
        None => materialize(&cache_dir())?,
    };
    *cached = Some(dir.clone());
    Ok(dir)
}

/// Writes the embedded files to `parent/<key>` unless a complete copy is there; returns it.
pub fn materialize(parent: &Path) -> Result<PathBuf, AssetsError> {
    let dest = parent.join(KEY);
    let marker = dest.join(".complete");
    if marker.is_file() {
        return Ok(dest);
    }
    let err = |path: &Path| {
        let path = path.to_path_buf();
        move |source| AssetsError::Write { path, source }
    };
    std::fs::create_dir_all(parent).map_err(err(parent))?;
    let tmp = tempfile::Builder::new().prefix(".writing-").tempdir_in(parent).map_err(err(parent))?;
    for (relative, contents) in FILES {
        let path = tmp.path().join(relative);
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(err(dir))?;
        }
        std::fs::write(&path, contents).map_err(err(&path))?;
    }
    std::fs::write(tmp.path().join(".complete"), KEY).map_err(err(&marker))?;
    let staged = tmp.keep();
    match std::fs::rename(&staged, &dest) {
        Ok(()) => Ok(dest),
        // Another process put a complete copy there first: use it, drop ours.
        Err(_) if marker.is_file() => {
            let _ = std::fs::remove_dir_all(&staged);
            Ok(dest)
        }
        // Something incomplete is in the way (copies are only ever renamed in whole, so not a
        // copy being written): replace it.
        Err(_) => {
            let replaced = std::fs::remove_dir_all(&dest).and_then(|()| std::fs::rename(&staged, &dest));
            if replaced.is_err() {
                let _ = std::fs::remove_dir_all(&staged);
            }
            replaced.map(|()| dest.clone()).map_err(|source| AssetsError::Write { path: dest, source })
        }
    }
}

/// The embedded files' paths, relative to the repository root (sorted).
pub fn paths() -> impl Iterator<Item = &'static str> {
    FILES.iter().map(|(path, _)| *path)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn checkout() -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap().to_path_buf()
    }

    #[test]
    fn embeds_the_tool_definitions_and_the_chart_as_checked_in() {
        let paths: Vec<&str> = paths().collect();
        for expected in [
            "hack/tools.sh",
            "hack/tools/kubernetes/go.mod",
            "hack/tools/cnpg/go.sum",
            "hack/tools/thirdparty/go.mod",
            "charts/mall-operator/Chart.yaml",
            "charts/mall-operator/crds/mall.yaml",
            "charts/mall-operator/templates/member-rbac.yaml",
        ] {
            assert!(paths.contains(&expected), "{expected} is not embedded: {paths:?}");
        }
        for (path, contents) in FILES {
            let on_disk = std::fs::read(checkout().join(path)).unwrap();
            assert!(on_disk == *contents, "the embedded {path} differs from the checkout's (rebuild)");
        }
    }

    #[test]
    fn materializes_once_and_reuses_a_complete_copy() {
        let parent = tempfile::tempdir().unwrap();
        let dir = materialize(parent.path()).unwrap();
        assert_eq!(dir, parent.path().join(KEY));
        let script = std::fs::read(dir.join("hack/tools.sh")).unwrap();
        assert_eq!(script, std::fs::read(checkout().join("hack/tools.sh")).unwrap());
        // A complete copy is used as it is (not rewritten).
        std::fs::write(dir.join("hack/tools.sh"), "edited").unwrap();
        assert_eq!(materialize(parent.path()).unwrap(), dir);
        assert_eq!(std::fs::read_to_string(dir.join("hack/tools.sh")).unwrap(), "edited");
        // Nothing but the copy is left behind.
        let names: Vec<_> = std::fs::read_dir(parent.path()).unwrap().flatten().map(|e| e.file_name()).collect();
        assert_eq!(names, vec![std::ffi::OsString::from(KEY)]);
    }

    #[test]
    fn an_incomplete_copy_is_replaced_and_errors_name_the_path() {
        let parent = tempfile::tempdir().unwrap();
        // Something without the marker in the way is not trusted: it is replaced.
        std::fs::create_dir_all(parent.path().join(KEY).join("hack")).unwrap();
        std::fs::write(parent.path().join(KEY).join("hack/tools.sh"), "partial").unwrap();
        let dir = materialize(parent.path()).unwrap();
        assert_eq!(
            std::fs::read(dir.join("hack/tools.sh")).unwrap(),
            std::fs::read(checkout().join("hack/tools.sh")).unwrap()
        );
        assert!(dir.join(".complete").is_file());
        // An unwritable parent names the path.
        let file = parent.path().join("a-file");
        std::fs::write(&file, "x").unwrap();
        let err = materialize(&file).unwrap_err();
        assert!(err.to_string().contains("a-file"), "{err}");
    }
}
