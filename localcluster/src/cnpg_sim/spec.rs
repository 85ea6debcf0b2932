//! What the simulator reads from a Cluster object: [`SpecView`].
//!
//! Contract: pure parsing of a Cluster's JSON, no API access. The archive names stay as the spec
//! gives them (an ObjectStore name, a serverName); the runner resolves the ObjectStore's
//! `destinationPath`. Sources: C:api/v1/cluster_types.go, C:api/v1/cluster_funcs.go
//! (`IsReplica`), C:docs/src/fencing.md, P:internal/cnpgi/operator/config/config.go.

use serde_json::Value;

/// The Barman Cloud Plugin's name.
pub const BARMAN_PLUGIN: &str = "barman-cloud.cloudnative-pg.io";
/// The fencing annotation (C:pkg/utils/labels_annotations.go).
pub const FENCED_ANNOTATION: &str = "cnpg.io/fencedInstances";

/// An archive named by a spec: an ObjectStore (same namespace) and a serverName.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ArchiveRef {
    /// `barmanObjectName`.
    pub object_store: String,
    /// `serverName` (default: the Cluster's name).
    pub server_name: String,
}

/// What the simulator reads from a Cluster.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SpecView {
    /// `spec.instances` (CRD default 1).
    pub instances: u32,
    /// A WAL archiver is configured: a `spec.plugins[]` entry with `isWALArchiver: true` (not
    /// `enabled: false`), or the in-tree `spec.backup.barmanObjectStore`.
    pub wal_archiver: bool,
    /// The archive this Cluster writes (Barman Cloud Plugin WAL archiver).
    pub archive: Option<ArchiveRef>,
    /// The Cluster is a replica cluster (C:api/v1/cluster_funcs.go `IsReplica`): `replica.enabled`
    /// when set, else `replica.primary` != `replica.self` (default metadata.name).
    pub replica: bool,
    /// The archive it follows: `replica.source` (else `bootstrap.recovery.source`) resolved
    /// through `externalClusters[].plugin`.
    pub source_archive: Option<ArchiveRef>,
    /// `bootstrap.recovery` is used: the first instance restores from [`SpecView::source_archive`].
    pub recovery: bool,
    /// `replica.promotionToken` (empty = none).
    pub promotion_token: String,
    /// `postgresql.parameters.archive_timeout` (PostgreSQL syntax; CNPG's default 5min).
    pub archive_timeout: String,
    /// `cnpg.io/fencedInstances`: `None` = none, `Some(vec!["*"])` = all.
    pub fenced: Vec<String>,
}

impl Default for SpecView {
    fn default() -> Self {
        SpecView {
            instances: 1,
            wal_archiver: false,
            archive: None,
            replica: false,
            source_archive: None,
            recovery: false,
            promotion_token: String::new(),
            archive_timeout: "5min".to_string(),
            fenced: Vec::new(),
        }
    }
}

fn plugin_archive(plugin: &Value, cluster_name: &str) -> Option<ArchiveRef> {
    if plugin["name"].as_str() != Some(BARMAN_PLUGIN) {
        return None;
    }
    let params = &plugin["parameters"];
    Some(ArchiveRef {
        object_store: params["barmanObjectName"].as_str()?.to_string(),
        server_name: params["serverName"].as_str().filter(|s| !s.is_empty()).unwrap_or(cluster_name).to_string(),
    })
}

impl SpecView {
    /// Reads a Cluster object's JSON (`metadata` included when present).
    pub fn from_object(data: &Value) -> SpecView {
        let metadata = &data["metadata"];
        SpecView::parse(
            metadata["name"].as_str().unwrap_or_default(),
            metadata["annotations"][FENCED_ANNOTATION].as_str(),
            &data["spec"],
        )
    }

    /// Reads a watched Cluster (its `metadata` is not in `data`).
    pub fn from_cluster(obj: &kube::api::DynamicObject) -> SpecView {
        let annotations = obj.metadata.annotations.as_ref();
        SpecView::parse(
            obj.metadata.name.as_deref().unwrap_or_default(),
            annotations.and_then(|a| a.get(FENCED_ANNOTATION)).map(String::as_str),
            &obj.data["spec"],
        )
    }

    fn parse(name: &str, fenced: Option<&str>, spec: &Value) -> SpecView {
        let instances = spec["instances"].as_u64().map_or(1, |n| u32::try_from(n).unwrap_or(u32::MAX));
        let plugins = spec["plugins"].as_array().cloned().unwrap_or_default();
        let archiver = plugins
            .iter()
            .find(|p| p["isWALArchiver"].as_bool() == Some(true) && p["enabled"].as_bool() != Some(false));
        let in_tree = spec["backup"]["barmanObjectStore"].is_object();
        let replica_cfg = &spec["replica"];
        let self_name = replica_cfg["self"].as_str().filter(|s| !s.is_empty()).unwrap_or(name);
        let replica = match replica_cfg["enabled"].as_bool() {
            Some(enabled) => enabled,
            None => replica_cfg["primary"].as_str().is_some_and(|p| !p.is_empty() && p != self_name),
        };
        let source = replica_cfg["source"]
            .as_str()
            .or_else(|| spec["bootstrap"]["recovery"]["source"].as_str())
            .unwrap_or_default();
        let source_archive = spec["externalClusters"]
            .as_array()
            .and_then(|ecs| ecs.iter().find(|ec| ec["name"].as_str() == Some(source)))
            .and_then(|ec| plugin_archive(&ec["plugin"], name));
        let fenced = fenced.and_then(|s| serde_json::from_str::<Vec<String>>(s).ok()).unwrap_or_default();
        SpecView {
            instances,
            wal_archiver: archiver.is_some() || in_tree,
            archive: archiver.and_then(|p| plugin_archive(p, name)),
            replica,
            source_archive,
            recovery: spec["bootstrap"]["recovery"].is_object(),
            promotion_token: replica_cfg["promotionToken"].as_str().unwrap_or_default().to_string(),
            archive_timeout: spec["postgresql"]["parameters"]["archive_timeout"].as_str().unwrap_or("5min").to_string(),
            fenced,
        }
    }

    /// Whether instance `name` is fenced.
    pub fn is_fenced(&self, name: &str) -> bool {
        self.fenced.iter().any(|f| f == "*" || f == name)
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn reads_replica_topology_archives_and_fencing() {
        let data = json!({
            "metadata": {"name": "pg-b", "annotations": {FENCED_ANNOTATION: "[\"pg-b-1\"]"}},
            "spec": {
                "instances": 2,
                "plugins": [{"name": BARMAN_PLUGIN, "isWALArchiver": true, "parameters": {"barmanObjectName": "store"}}],
                "bootstrap": {"recovery": {"source": "pg-a"}},
                "replica": {"primary": "pg-a", "source": "pg-a"},
                "externalClusters": [{"name": "pg-a", "plugin": {"name": BARMAN_PLUGIN,
                    "parameters": {"barmanObjectName": "store", "serverName": "pg-a"}}}],
                "postgresql": {"parameters": {"archive_timeout": "1d"}},
            },
        });
        let v = SpecView::from_object(&data);
        assert!(v.replica && v.recovery && v.wal_archiver);
        assert_eq!(v.archive, Some(ArchiveRef { object_store: "store".into(), server_name: "pg-b".into() }));
        assert_eq!(v.source_archive, Some(ArchiveRef { object_store: "store".into(), server_name: "pg-a".into() }));
        assert_eq!(v.archive_timeout, "1d");
        assert!(v.is_fenced("pg-b-1") && !v.is_fenced("pg-b-2"));
        let primary = SpecView::from_object(&json!({"metadata": {"name": "pg-a"},
            "spec": {"replica": {"primary": "pg-a", "source": "pg-b"}}}));
        assert!(!primary.replica);
        let legacy = SpecView::from_object(&json!({"metadata": {"name": "x"},
            "spec": {"replica": {"enabled": true, "source": "y"}}}));
        assert!(legacy.replica);
    }
}
