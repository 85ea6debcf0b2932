//! The database tier: sharded PostgreSQL composed from CloudNativePG and its Barman Cloud Plugin.
//!
//! Contract: pure, built as the kopium types of `crate::cnpg` (typed [`Child`]ren). Per region (`<prefix>` = `<mall>[-<region>]`), in this order:
//! - with `spec.database.backup`: one Barman Cloud `ObjectStore` `<prefix>-db-backup`, shared by
//!   the region's shards (each archives below its own Cluster name, see [`backup`]); in a
//!   distributed topology ([`topology`]) also the other regions' `ObjectStore`s, once per
//!   cluster, which the members read each other's archives through;
//! - per shard `i` (0-based): the CloudNativePG `Cluster` `<prefix>-db-<i>` ([`cluster`]), its
//!   PgBouncer `Pooler` `<prefix>-db-<i>-pooler-rw` when pooling is enabled ([`pooler`]) and its
//!   `ScheduledBackup` `<prefix>-db-<i>` with backups ([`backup`]);
//! - the shard map ConfigMap `<prefix>-shardmap` ([`shardmap`], rule in [`shard`]).
//!
//! Every object has the Mall's labels (component [`COMPONENT`], per-shard objects also
//! `mallctl.io/shard`) and the controller owner reference. NetworkPolicies of this tier live in
//! `build::network`; [`tier`] returns both for a whole Mall, as JSON. See `docs/database.md`.

pub mod backup;
pub mod cluster;
pub mod pooler;
pub mod shard;
pub mod shardmap;
pub mod topology;

pub use backup::{object_store, scheduled_backup};
pub use cluster::{cluster, image_name};
pub use pooler::pooler;
pub use shard::shard_for;
pub use shardmap::shard_map;

use super::{BuildError, Child, Scope, names::SHARD_LABEL, names::Target, network};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use mall_crds::Mall;
use serde_json::Value;

/// Component name (label value) of every database-tier object.
pub const COMPONENT: &str = "database";
/// The Barman Cloud Plugin's name in CloudNativePG `plugins` and `pluginConfiguration`.
pub const BARMAN_PLUGIN: &str = "barman-cloud.cloudnative-pg.io";
/// Database and owner created by `bootstrap.initdb` in every shard.
pub const APP_DATABASE: &str = "app";

/// `<prefix>-db-<shard>`: the shard's CloudNativePG `Cluster` (at most 50 characters, as
/// CloudNativePG requires, given the Mall and region name limits).
pub fn cluster_name(scope: &Scope<'_>, shard: i32) -> String {
    scope.name(&format!("db-{shard}"))
}
/// `<cluster>-pooler-rw`: the shard's PgBouncer `Pooler` and its Service.
pub fn pooler_name(scope: &Scope<'_>, shard: i32) -> String {
    format!("{}-pooler-rw", cluster_name(scope, shard))
}
/// `<cluster>-app`: the Secret CloudNativePG creates for the `app` user.
pub fn app_secret_name(scope: &Scope<'_>, shard: i32) -> String {
    format!("{}-app", cluster_name(scope, shard))
}
/// `<mall>-db-<shard>-app`: in a distributed topology, the shard's application role credentials
/// (`kubernetes.io/basic-auth`, user [`APP_DATABASE`]), one Secret identical in every region
/// (generated once in the hub, copied to member clusters), given to every member's bootstrap so
/// the role's password is the same whichever region is primary.
pub fn shared_app_secret_name(mall: &str, shard: i32) -> String {
    format!("{mall}-db-{shard}-app")
}
/// The Secret the shard's application credentials are in: [`shared_app_secret_name`] in a
/// distributed topology, else CloudNativePG's own `<cluster>-app` ([`app_secret_name`]).
pub fn credentials_secret_name(scope: &Scope<'_>, shard: i32) -> String {
    if topology::Topology::of(scope.mall).is_some() {
        shared_app_secret_name(scope.mall_name(), shard)
    } else {
        app_secret_name(scope, shard)
    }
}
/// `<prefix>-db-backup`: the region's Barman Cloud `ObjectStore`.
pub fn object_store_name(scope: &Scope<'_>) -> String {
    scope.name("db-backup")
}
/// `<prefix>-shardmap`: the shard map ConfigMap.
pub fn shard_map_name(scope: &Scope<'_>) -> String {
    scope.name("shardmap")
}

/// Metadata of a per-shard object: the tier's metadata plus the shard label.
pub fn shard_meta(scope: &Scope<'_>, name: String, shard: i32) -> ObjectMeta {
    let mut meta = scope.meta(name, COMPONENT);
    if let Some(labels) = meta.labels.as_mut() {
        labels.insert(SHARD_LABEL.into(), shard.to_string());
    }
    meta
}

/// The database tier's CloudNativePG, plugin and ConfigMap objects in `scope` (order in the
/// module header).
pub fn build(scope: &Scope<'_>) -> Vec<Child> {
    let spec = &scope.mall.spec.database;
    let mut out: Vec<Child> = Vec::new();
    if let Some(backup) = &spec.backup {
        out.push(object_store(scope, backup).into());
        if topology::Topology::of(scope.mall).is_some() {
            // Every member reads the other regions' archives: their ObjectStores go here too,
            // unless that region's own scope puts it in the same cluster.
            for other in &scope.mall.spec.regions {
                let target = Target::of(other.cluster.as_ref());
                let first_here =
                    scope.mall.spec.regions.iter().find(|r| Target::of(r.cluster.as_ref()) == scope.target);
                if target != scope.target && first_here.map(|r| r.name.as_str()) == scope.region {
                    let reader =
                        Scope { mall: scope.mall, region: Some(other.name.as_str()), target: scope.target.clone() };
                    out.push(object_store(&reader, backup).into());
                }
            }
        }
    }
    for shard in 0..spec.shards {
        out.push(cluster(scope, shard).into());
        if spec.pooling.enabled {
            out.push(pooler(scope, shard).into());
        }
        if let Some(backup) = &spec.backup {
            out.push(scheduled_backup(scope, shard, backup).into());
        }
    }
    out.push(shard_map(scope).into());
    out
}

/// Every database-tier object of `mall`, region by region: the NetworkPolicies
/// (`build::network`) then [`build`]'s objects. What the lead's acceptance applies to a real API
/// server with the real CRDs.
pub fn tier(mall: &Mall) -> Result<Vec<Value>, BuildError> {
    let mut out = Vec::new();
    for scope in Scope::all(mall) {
        for child in network::build(&scope).into_iter().chain(build(&scope)) {
            out.push(child.to_value().map_err(BuildError::Serialize)?);
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests;
