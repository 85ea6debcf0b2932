//! Installing CustomResourceDefinitions from YAML files.
//!
//! Contract: [`install_crds`] reads every YAML document of the given files, requires each to be
//! a `CustomResourceDefinition` (empty documents are skipped), applies them with server-side
//! apply (field manager `localcluster`, forced: large CRDs do not fit client-side apply's
//! annotation) and waits until every one reports `Established=True`, up to the timeout.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Api, Patch, PatchParams};

/// Errors of installing CRDs.
#[derive(Debug, thiserror::Error)]
pub enum CrdError {
    /// A file could not be read or parsed.
    #[error("cannot read CRDs from {path}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: crate::kwok::KwokError,
    },
    /// A document is not a CRD.
    #[error("{path}: document {index} is not a CustomResourceDefinition")]
    NotACrd {
        /// The file.
        path: PathBuf,
        /// The document index.
        index: usize,
        /// The cause.
        #[source]
        source: serde_json::Error,
    },
    /// The apply failed.
    #[error("cannot apply CRD {name}")]
    Apply {
        /// The CRD name.
        name: String,
        /// The cause.
        #[source]
        source: kube::Error,
    },
    /// A CRD did not become Established.
    #[error("CRD {name} not Established after {timeout:?}")]
    Timeout {
        /// The CRD name.
        name: String,
        /// The time allowed.
        timeout: Duration,
    },
}

/// Parses the CRDs of one file.
pub fn read_crds(path: &Path) -> Result<Vec<CustomResourceDefinition>, CrdError> {
    let docs =
        crate::kwok::read_yaml_docs(path).map_err(|source| CrdError::Read { path: path.to_path_buf(), source })?;
    docs.into_iter()
        .enumerate()
        .map(|(index, doc)| {
            let kind_ok = doc.get("kind").and_then(|k| k.as_str()) == Some("CustomResourceDefinition");
            let parsed = serde_json::from_value::<CustomResourceDefinition>(doc);
            match (kind_ok, parsed) {
                (true, Ok(crd)) => Ok(crd),
                (false, _) => Err(CrdError::NotACrd {
                    path: path.to_path_buf(),
                    index,
                    source: <serde_json::Error as serde::de::Error>::custom("kind mismatch"),
                }),
                (true, Err(source)) => Err(CrdError::NotACrd { path: path.to_path_buf(), index, source }),
            }
        })
        .collect()
}

/// Applies the CRDs in `paths` and waits up to 60 s for each to be Established. Returns the
/// names installed.
pub async fn install_crds(client: &kube::Client, paths: &[PathBuf]) -> Result<Vec<String>, CrdError> {
    let mut crds = Vec::new();
    for path in paths {
        crds.extend(read_crds(path)?);
    }
    install_crd_objects(client, &crds, Duration::from_secs(60)).await
}

/// Applies CRD objects and waits up to `timeout` for each to be Established.
pub async fn install_crd_objects(
    client: &kube::Client,
    crds: &[CustomResourceDefinition],
    timeout: Duration,
) -> Result<Vec<String>, CrdError> {
    let api: Api<CustomResourceDefinition> = Api::all(client.clone());
    let params = PatchParams::apply("localcluster").force();
    let mut names = Vec::new();
    for crd in crds {
        let name = crd.metadata.name.clone().unwrap_or_default();
        let mut crd = crd.clone();
        crd.metadata.managed_fields = None;
        crd.metadata.resource_version = None;
        crd.status = None;
        api.patch(&name, &params, &Patch::Apply(&crd))
            .await
            .map_err(|source| CrdError::Apply { name: name.clone(), source })?;
        names.push(name);
    }
    let deadline = Instant::now() + timeout;
    for name in &names {
        loop {
            let established = api.get_opt(name).await.ok().flatten().is_some_and(|c| {
                c.status
                    .and_then(|s| s.conditions)
                    .is_some_and(|cs| cs.iter().any(|c| c.type_ == "Established" && c.status == "True"))
            });
            if established {
                break;
            }
            if Instant::now() >= deadline {
                return Err(CrdError::Timeout { name: name.clone(), timeout });
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    Ok(names)
}
