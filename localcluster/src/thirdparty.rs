//! Third-party sources read at set-up time from the Go module cache: kwok's stage files and the
//! CRDs the operator depends on.
//!
//! Contract: nothing third-party is copied into the repository. [`module_dir`] runs
//! `go mod download -json MODULE@VERSION` inside `<repo>/hack/tools/thirdparty` (whose go.mod and
//! go.sum pin the versions) and returns the `Dir` it reports, failing when the JSON carries an
//! `Error`. Answers are cached per process. All functions block (they may download).

use std::collections::HashMap;
use std::path::PathBuf;
use std::process::Command;
use std::sync::Mutex;

/// kwok's module and version.
pub const KWOK: (&str, &str) = ("sigs.k8s.io/kwok", "v0.8.0");
/// CloudNativePG's module and version.
pub const CLOUDNATIVE_PG: (&str, &str) = ("github.com/cloudnative-pg/cloudnative-pg", "v1.30.1");
/// The Barman Cloud plugin's module and version.
pub const BARMAN_CLOUD: (&str, &str) = ("github.com/cloudnative-pg/plugin-barman-cloud", "v0.15.0");
/// Gateway API's module and version.
pub const GATEWAY_API: (&str, &str) = ("sigs.k8s.io/gateway-api", "v1.5.0");
/// external-dns' module and version.
pub const EXTERNAL_DNS: (&str, &str) = ("sigs.k8s.io/external-dns", "v0.22.0");

/// Errors of locating third-party sources.
#[derive(Debug, thiserror::Error)]
pub enum ThirdPartyError {
    /// The embedded module definitions could not be written.
    #[error("cannot write the embedded go.mod of the third-party modules")]
    Assets(#[source] Box<crate::assets::AssetsError>),
    /// `go` could not be run.
    #[error("cannot run `go mod download` for {module}")]
    Go {
        /// module@version
        module: String,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// `go mod download` printed something that is not its JSON.
    #[error("cannot parse `go mod download -json {module}` output")]
    Json {
        /// module@version
        module: String,
        /// The cause.
        #[source]
        source: serde_json::Error,
    },
    /// `go mod download` reported an error.
    #[error("go mod download {module}: {message}")]
    Download {
        /// module@version
        module: String,
        /// Go's message.
        message: String,
    },
    /// A directory expected in a module is unreadable.
    #[error("cannot read {path}")]
    Read {
        /// The path.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
}

/// The module cache directory of `module@version`, downloading it when needed. Blocking.
pub fn module_dir(module: &str, version: &str) -> Result<PathBuf, ThirdPartyError> {
    static CACHE: Mutex<Option<HashMap<String, PathBuf>>> = Mutex::new(None);
    let key = format!("{module}@{version}");
    let mut cache = CACHE.lock().unwrap_or_else(|p| p.into_inner());
    if let Some(dir) = cache.as_ref().and_then(|c| c.get(&key)) {
        return Ok(dir.clone());
    }
    let root = crate::assets::root().map_err(|source| ThirdPartyError::Assets(Box::new(source)))?;
    let output = Command::new("go")
        .args(["mod", "download", "-json", &key])
        .current_dir(root.join("hack/tools/thirdparty"))
        .output()
        .map_err(|source| ThirdPartyError::Go { module: key.clone(), source })?;
    let json: serde_json::Value = serde_json::from_slice(&output.stdout)
        .map_err(|source| ThirdPartyError::Json { module: key.clone(), source })?;
    if let Some(message) = json.get("Error").and_then(|e| e.as_str()) {
        return Err(ThirdPartyError::Download { module: key, message: message.to_string() });
    }
    let Some(dir) = json.get("Dir").and_then(|d| d.as_str()) else {
        return Err(ThirdPartyError::Download {
            module: key,
            message: format!(
                "no Dir in the output (exit {}): {}",
                output.status,
                String::from_utf8_lossy(&output.stderr)
            ),
        });
    };
    let dir = PathBuf::from(dir);
    cache.get_or_insert_with(HashMap::new).insert(key, dir.clone());
    Ok(dir)
}

/// kwok's `kustomize/stage` directory. Blocking.
pub fn kwok_stage_dir() -> Result<PathBuf, ThirdPartyError> {
    Ok(module_dir(KWOK.0, KWOK.1)?.join("kustomize/stage"))
}

/// The YAML files under `dir` (sorted) that hold at least one CustomResourceDefinition.
fn crd_yamls(dir: PathBuf) -> Result<Vec<PathBuf>, ThirdPartyError> {
    let read_err = |source| ThirdPartyError::Read { path: dir.clone(), source };
    let mut files = Vec::new();
    for entry in std::fs::read_dir(&dir).map_err(read_err)? {
        let path = entry.map_err(read_err)?.path();
        if path.extension().is_some_and(|e| e == "yaml" || e == "yml") {
            let text = std::fs::read_to_string(&path)
                .map_err(|source| ThirdPartyError::Read { path: path.clone(), source })?;
            if text.contains("kind: CustomResourceDefinition") {
                files.push(path);
            }
        }
    }
    files.sort();
    Ok(files)
}

/// The CRD files the operator depends on: CloudNativePG v1.30.1 (`config/crd/bases`), the
/// Barman Cloud plugin v0.15.0 (`config/crd/bases`), Gateway API v1.5.0 standard channel
/// (`config/crd/standard`, CRDs only: its ValidatingAdmissionPolicy file is left out) and
/// external-dns v0.22.0's `DNSEndpoint`. Blocking.
pub fn crd_files() -> Result<Vec<PathBuf>, ThirdPartyError> {
    let mut files = Vec::new();
    for ((module, version), sub) in
        [(CLOUDNATIVE_PG, "config/crd/bases"), (BARMAN_CLOUD, "config/crd/bases"), (GATEWAY_API, "config/crd/standard")]
    {
        files.extend(crd_yamls(module_dir(module, version)?.join(sub))?);
    }
    files.push(
        module_dir(EXTERNAL_DNS.0, EXTERNAL_DNS.1)?.join("config/crd/standard/dnsendpoints.externaldns.k8s.io.yaml"),
    );
    Ok(files)
}
