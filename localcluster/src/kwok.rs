//! kwok configuration: the Stage file and the fake Nodes.
//!
//! Contract: [`write_stages`] assembles, at set-up time, kwok v0.8.0's own stage files read from
//! the Go module cache (node initialize + heartbeat with lease, pod complete/delete, volume
//! provision/bind/delete) plus this crate's own pod-ready Stage `localcluster-pod-ready`: kwok's
//! `pod/fast/pod-ready` with a `delay` of the configured start-up time minus kwok's ~15 ms
//! overhead (a pod may override it with the annotation [`STARTUP_DELAY_ANNOTATION`], a Go
//! duration such as `"2s"`). [`nodes`] are the Node objects spread over [`ZONES`].

use std::path::{Path, PathBuf};
use std::time::Duration;

use k8s_openapi::api::core::v1::Node;
use kube::api::ObjectMeta;

/// The zones fake nodes are spread over (`topology.kubernetes.io/zone`).
pub const ZONES: [&str; 3] = ["zone-a", "zone-b", "zone-c"];

/// Pod annotation overriding the start-up delay of that pod (a Go duration, e.g. `"1500ms"`).
pub const STARTUP_DELAY_ANNOTATION: &str = "localcluster.mall-operator.io/startup-delay";

/// kwok's processing overhead subtracted from the requested start-up delay.
pub const KWOK_OVERHEAD: Duration = Duration::from_millis(15);

/// kwok's stage files used as they are (relative to `kustomize/stage`).
const STAGES: [&str; 8] = [
    "node/fast/node-initialize.yaml",
    "node/heartbeat-with-lease/node-heartbeat-with-lease.yaml",
    "pod/fast/pod-complete.yaml",
    "pod/fast/pod-delete.yaml",
    "volume/fast/pvc-provision.yaml",
    "volume/fast/pv-bind.yaml",
    "volume/fast/pvc-delete.yaml",
    "volume/fast/pv-delete.yaml",
];

/// The stage the delayed pod-ready Stage is derived from.
const POD_READY: &str = "pod/fast/pod-ready.yaml";

/// kwok's default StorageClass (`kwok-volume`, default class, `Immediate` binding).
pub const STORAGE_CLASS: &str = "volume/fast/storage-class.yaml";

/// Errors of assembling the kwok configuration.
#[derive(Debug, thiserror::Error)]
pub enum KwokError {
    /// A stage file could not be read.
    #[error("cannot read kwok file {path}")]
    Read {
        /// The path.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// A stage file is not the YAML expected.
    #[error("cannot parse kwok file {path}")]
    Parse {
        /// The path.
        path: PathBuf,
        /// The cause.
        #[source]
        source: Box<serde_saphyr::Error>,
    },
    /// The pod-ready stage does not have the expected shape.
    #[error("kwok file {path} has no spec mapping")]
    Shape {
        /// The path.
        path: PathBuf,
    },
    /// The assembled file could not be written.
    #[error("cannot write {path}")]
    Write {
        /// The path.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
}

/// Reads the YAML documents of a file as JSON values (empty documents skipped).
pub fn read_yaml_docs(path: &Path) -> Result<Vec<serde_json::Value>, KwokError> {
    let text = std::fs::read_to_string(path).map_err(|source| KwokError::Read { path: path.to_path_buf(), source })?;
    let docs: Vec<serde_json::Value> = serde_saphyr::from_multiple(&text)
        .map_err(|source| KwokError::Parse { path: path.to_path_buf(), source: Box::new(source) })?;
    Ok(docs.into_iter().filter(|d| !d.is_null()).collect())
}

/// Writes kwok's stage configuration to `out`, reading the stage files from `stage_dir`
/// (kwok's `kustomize/stage`), with pods becoming Ready `pod_startup` after they are scheduled.
pub fn write_stages(stage_dir: &Path, pod_startup: Duration, out: &Path) -> Result<(), KwokError> {
    let mut docs = Vec::new();
    for rel in STAGES {
        docs.extend(read_yaml_docs(&stage_dir.join(rel))?);
    }
    let ready_path = stage_dir.join(POD_READY);
    for mut doc in read_yaml_docs(&ready_path)? {
        doc["metadata"]["name"] = "localcluster-pod-ready".into();
        let Some(spec) = doc.get_mut("spec").and_then(|s| s.as_object_mut()) else {
            return Err(KwokError::Shape { path: ready_path });
        };
        let millis = pod_startup.saturating_sub(KWOK_OVERHEAD).as_millis() as u64;
        spec.insert(
            "delay".into(),
            serde_json::json!({
                "durationMilliseconds": millis,
                "durationFrom": {
                    "jq": {
                        "expression":
                            format!(".metadata.annotations[\"{STARTUP_DELAY_ANNOTATION}\"]")
                    }
                }
            }),
        );
        docs.push(doc);
    }
    let text = docs.iter().map(|d| d.to_string()).collect::<Vec<_>>().join("\n---\n");
    std::fs::write(out, text).map_err(|source| KwokError::Write { path: out.to_path_buf(), source })
}

/// The fake nodes: `nodes_per_zone` per zone, named `<zone>-<i>`, labelled with the zone, the
/// region (`region`), hostname and `type=kwok`.
pub fn nodes(region: &str, nodes_per_zone: u32) -> Vec<Node> {
    let mut out = Vec::new();
    for zone in ZONES {
        for i in 0..nodes_per_zone {
            let name = format!("{zone}-{i}");
            let labels = [
                ("topology.kubernetes.io/zone", zone.to_string()),
                ("topology.kubernetes.io/region", region.to_string()),
                ("kubernetes.io/hostname", name.clone()),
                ("kubernetes.io/os", "linux".to_string()),
                ("kubernetes.io/arch", "amd64".to_string()),
                ("type", "kwok".to_string()),
            ];
            out.push(Node {
                metadata: ObjectMeta {
                    name: Some(name),
                    labels: Some(labels.into_iter().map(|(k, v)| (k.to_string(), v)).collect()),
                    annotations: Some([("kwok.x-k8s.io/node".to_string(), "fake".to_string())].into()),
                    ..ObjectMeta::default()
                },
                ..Node::default()
            });
        }
    }
    out
}
