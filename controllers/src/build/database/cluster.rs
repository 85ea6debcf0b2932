//! The CloudNativePG `Cluster` of one shard.
//!
//! Contract: pure. `instances` = `instancesPerShard` (the initial size when the autoscaler sizes
//! the database: the Cluster then carries `mallctl.io/autoscaled: spec.instances`); the community image of `postgresVersion`
//! ([`image_name`]); storage, resources, parameters and synchronous replication from the spec;
//! anti-affinity across zones, `preferred` (see `docs/database.md`); `bootstrap.initdb` of
//! database and owner [`APP_DATABASE`]; the Barman Cloud Plugin as WAL archiver only with
//! `spec.database.backup`; the Mall, region and shard labels passed on to CloudNativePG's pods.
//! In a distributed topology ([`Topology`], two or more regions) a member also gets its archive
//! `serverName`, `externalClusters`, `replica`, its bootstrap (`initdb` or `recovery`) and the
//! [`EPOCH_ANNOTATION`], as `topology` describes.

use super::topology::{EPOCH_ANNOTATION, Topology};
use super::{APP_DATABASE, BARMAN_PLUGIN, Scope, cluster_name, object_store_name, shard_meta};
use crate::build::kinds::amounts;
use crate::build::names::{MALL_LABEL, REGION_LABEL, SHARD_LABEL, mark_autoscaled};
use crate::cnpg::cluster::{
    Cluster, ClusterAffinity, ClusterBootstrap, ClusterBootstrapInitdb, ClusterBootstrapInitdbSecret,
    ClusterBootstrapRecovery, ClusterBootstrapRecoverySecret, ClusterExternalClusters, ClusterExternalClustersPlugin,
    ClusterInheritedMetadata, ClusterPlugins, ClusterPostgresql, ClusterPostgresqlSynchronous,
    ClusterPostgresqlSynchronousDataDurability, ClusterPostgresqlSynchronousMethod, ClusterReplica, ClusterResources,
    ClusterSpec, ClusterStorage,
};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use mall_crds::common::{ResourceAmounts, Resources};
use mall_crds::database::{DataDurability, Synchronous};
use std::collections::BTreeMap;

/// Registry and repository of CloudNativePG's community PostgreSQL images.
pub const IMAGE_REPOSITORY: &str = "ghcr.io/cloudnative-pg/postgresql";
/// Tag suffix after the major version: the `standard` image (PGDG packages and common
/// extensions, no Barman Cloud: the plugin brings its own) on Debian trixie.
pub const IMAGE_FLAVOUR: &str = "standard-trixie";
/// Topology the instances of a shard spread over.
pub const ZONE_TOPOLOGY_KEY: &str = "topology.kubernetes.io/zone";

/// `ghcr.io/cloudnative-pg/postgresql:<major>-standard-trixie`, following the major's newest minor.
pub fn image_name(postgres_version: i32) -> String {
    format!("{IMAGE_REPOSITORY}:{postgres_version}-{IMAGE_FLAVOUR}")
}

/// The `Cluster` of shard `shard` in `scope`.
pub fn cluster(scope: &Scope<'_>, shard: i32) -> Cluster {
    let db = &scope.mall.spec.database;
    let topology = Topology::of(scope.mall).filter(|t| scope.region.is_some_and(|r| t.member(r).is_some()));
    let plugins = db.backup.as_ref().map(|_| {
        let mut parameters = BTreeMap::from([("barmanObjectName".to_string(), object_store_name(scope))]);
        if let (Some(t), Some(region)) = (&topology, scope.region) {
            let server = t.server_name(region, shard);
            if server != cluster_name(scope, shard) {
                parameters.insert("serverName".into(), server);
            }
        }
        vec![ClusterPlugins {
            name: BARMAN_PLUGIN.into(),
            is_wal_archiver: Some(true),
            parameters: Some(parameters),
            ..ClusterPlugins::default()
        }]
    });
    let mut inherited = BTreeMap::from([
        (MALL_LABEL.to_string(), scope.mall_name().to_string()),
        (SHARD_LABEL.to_string(), shard.to_string()),
    ]);
    if let Some(region) = scope.region {
        inherited.insert(REGION_LABEL.into(), region.into());
    }
    let mut metadata = shard_meta(scope, cluster_name(scope, shard), shard);
    if scope.autoscaled() && scope.mall.spec.autoscaling.as_ref().is_some_and(|a| a.database.is_some()) {
        mark_autoscaled(&mut metadata, "spec.instances");
    }
    let distributed = topology.as_ref().zip(scope.region).map(|(t, region)| member(t, region, shard));
    if let Some(t) = &topology {
        metadata.annotations.get_or_insert_with(BTreeMap::new).insert(EPOCH_ANNOTATION.into(), t.epoch.to_string());
    }
    let (external_clusters, replica, bootstrap) = match distributed {
        Some(m) => (Some(m.external_clusters), Some(m.replica), m.bootstrap),
        None => (None, None, initdb()),
    };
    Cluster {
        metadata,
        spec: ClusterSpec {
            instances: i64::from(db.instances_per_shard),
            image_name: Some(image_name(db.postgres_version)),
            storage: Some(ClusterStorage {
                size: Some(db.storage.size.clone()),
                storage_class: db.storage.storage_class.clone(),
                ..ClusterStorage::default()
            }),
            resources: resources(&db.resources),
            postgresql: Some(ClusterPostgresql {
                parameters: (!db.parameters.is_empty()).then(|| db.parameters.clone()),
                synchronous: db.synchronous.as_ref().map(synchronous),
                ..ClusterPostgresql::default()
            }),
            affinity: Some(ClusterAffinity {
                enable_pod_anti_affinity: Some(true),
                topology_key: Some(ZONE_TOPOLOGY_KEY.into()),
                pod_anti_affinity_type: Some("preferred".into()),
                ..ClusterAffinity::default()
            }),
            bootstrap: Some(bootstrap),
            external_clusters,
            replica,
            plugins,
            inherited_metadata: Some(ClusterInheritedMetadata {
                labels: Some(inherited),
                ..ClusterInheritedMetadata::default()
            }),
            ..ClusterSpec::default()
        },
        status: None,
    }
}

/// `bootstrap.initdb` of [`APP_DATABASE`] owned by [`APP_DATABASE`].
fn initdb() -> ClusterBootstrap {
    ClusterBootstrap {
        initdb: Some(ClusterBootstrapInitdb {
            database: Some(APP_DATABASE.into()),
            owner: Some(APP_DATABASE.into()),
            ..ClusterBootstrapInitdb::default()
        }),
        ..ClusterBootstrap::default()
    }
}

/// What a member of a distributed topology adds to its Cluster.
struct Distributed {
    external_clusters: Vec<ClusterExternalClusters>,
    replica: ClusterReplica,
    bootstrap: ClusterBootstrap,
}

/// The member of shard `shard` in `region` (see `topology`'s module header).
fn member(t: &Topology, region: &str, shard: i32) -> Distributed {
    let external_clusters = t
        .members
        .iter()
        .map(|m| ClusterExternalClusters {
            name: t.cluster(&m.region, shard),
            plugin: Some(ClusterExternalClustersPlugin {
                name: BARMAN_PLUGIN.into(),
                parameters: Some(BTreeMap::from([
                    ("barmanObjectName".to_string(), t.object_store(&m.region)),
                    ("serverName".to_string(), t.server_name(&m.region, shard)),
                ])),
                ..ClusterExternalClustersPlugin::default()
            }),
            ..ClusterExternalClusters::default()
        })
        .collect();
    let replica = ClusterReplica {
        primary: Some(t.cluster(&t.active, shard)),
        source: t.cluster(t.source_of(region), shard),
        r#_self: Some(t.cluster(region, shard)),
        ..ClusterReplica::default()
    };
    // Identical role credentials in every member: the password is the same whichever is primary.
    let secret = super::shared_app_secret_name(&t.mall, shard);
    let bootstrap = match t.member(region).and_then(|m| m.seeded_from.as_deref()) {
        None => {
            let mut b = initdb();
            if let Some(i) = b.initdb.as_mut() {
                i.secret = Some(ClusterBootstrapInitdbSecret { name: secret });
            }
            b
        }
        Some(seed) => ClusterBootstrap {
            recovery: Some(ClusterBootstrapRecovery {
                source: Some(t.cluster(seed, shard)),
                database: Some(APP_DATABASE.into()),
                owner: Some(APP_DATABASE.into()),
                secret: Some(ClusterBootstrapRecoverySecret { name: secret }),
                ..ClusterBootstrapRecovery::default()
            }),
            ..ClusterBootstrap::default()
        },
    };
    Distributed { external_clusters, replica, bootstrap }
}

/// `{method: any, number, dataDurability}`.
fn synchronous(s: &Synchronous) -> ClusterPostgresqlSynchronous {
    ClusterPostgresqlSynchronous {
        method: ClusterPostgresqlSynchronousMethod::Any,
        number: i64::from(s.number),
        data_durability: Some(match s.data_durability {
            DataDurability::Required => ClusterPostgresqlSynchronousDataDurability::Required,
            DataDurability::Preferred => ClusterPostgresqlSynchronousDataDurability::Preferred,
        }),
        failover_quorum: None,
        max_standby_names_from_cluster: None,
        standby_names_post: None,
        standby_names_pre: None,
    }
}

/// The spec's CPU/memory as CloudNativePG's `resources` (absent when the spec sets none).
fn resources(r: &Resources) -> Option<ClusterResources> {
    let list = |a: &Option<ResourceAmounts>| {
        a.as_ref().map(|a| amounts(a).into_iter().map(|(k, v)| (k, IntOrString::String(v))).collect::<BTreeMap<_, _>>())
    };
    (r.requests.is_some() || r.limits.is_some()).then(|| ClusterResources {
        requests: list(&r.requests),
        limits: list(&r.limits),
        ..ClusterResources::default()
    })
}
