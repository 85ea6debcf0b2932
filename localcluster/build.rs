//! Embeds the repository files `mallctl` and the local control plane need at run time (the pinned
//! tool definitions `hack/tools.sh` + `hack/tools/*/go.{mod,sum}` and the Helm chart
//! `charts/mall-operator`) so an installed binary works outside the checkout
//! (`localcluster::assets`). Writes `$OUT_DIR/assets.rs`: the files (sorted, paths relative to
//! the repository root, contents by `include_bytes!`) and a content key (FNV-1a 64 over paths
//! and contents) naming the cache directory they are written to.

use std::path::{Path, PathBuf};

/// What is embedded, relative to the repository root: files, or directories taken whole.
const ROOTS: &[&str] = &["hack/tools.sh", "hack/tools", "charts/mall-operator"];

fn walk(dir: &Path, out: &mut Vec<PathBuf>) -> std::io::Result<()> {
    if dir.is_file() {
        out.push(dir.to_path_buf());
        return Ok(());
    }
    for entry in std::fs::read_dir(dir)? {
        walk(&entry?.path(), out)?;
    }
    Ok(())
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let manifest = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR")?);
    let repo = manifest.parent().ok_or("the crate has no parent directory")?.to_path_buf();
    let mut files = Vec::new();
    for root in ROOTS {
        let path = repo.join(root);
        println!("cargo:rerun-if-changed={}", path.display());
        walk(&path, &mut files).map_err(|e| format!("reading {}: {e}", path.display()))?;
    }
    files.sort();
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    let mut feed = |bytes: &[u8]| {
        for b in bytes {
            hash ^= u64::from(*b);
            hash = hash.wrapping_mul(0x0100_0000_01b3);
        }
    };
    let mut entries = String::new();
    for file in &files {
        let relative = file.strip_prefix(&repo)?.to_str().ok_or("a non-UTF-8 path")?;
        let contents = std::fs::read(file)?;
        feed(relative.as_bytes());
        feed(&[0]);
        feed(&(contents.len() as u64).to_le_bytes());
        feed(&contents);
        entries.push_str(&format!("    ({relative:?}, include_bytes!({:?})),\n", file.display().to_string()));
    }
    let code = format!(
        "/// The embedded files: (path relative to the repository root, contents).\n\
         pub(crate) static FILES: &[(&str, &[u8])] = &[\n{entries}];\n\
         /// A key of the embedded paths and contents (names their cache directory).\n\
         pub(crate) const KEY: &str = \"{hash:016x}\";\n"
    );
    let out = PathBuf::from(std::env::var("OUT_DIR")?).join("assets.rs");
    std::fs::write(&out, code)?;
    Ok(())
}
