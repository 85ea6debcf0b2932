//! The PgBouncer `Pooler` of one shard.
//!
//! Contract: pure; only called with `spec.database.pooling.enabled`. Type `rw` (in front of the
//! primary), named `<cluster>-pooler-rw` (CloudNativePG requires a name different from every
//! Cluster; its Service has the same name), `instances`, `poolMode` and the `max_client_conn` /
//! `default_pool_size` PgBouncer parameters from `spec.database.pooling`.

use super::{Scope, cluster_name, pooler_name, shard_meta};
use crate::cnpg::pooler::{Pooler, PoolerCluster, PoolerPgbouncer, PoolerPgbouncerPoolMode, PoolerSpec, PoolerType};
use mall_crds::database::PoolMode;
use std::collections::BTreeMap;

/// Shard `shard`'s `Pooler`.
pub fn pooler(scope: &Scope<'_>, shard: i32) -> Pooler {
    let pooling = &scope.mall.spec.database.pooling;
    Pooler {
        metadata: shard_meta(scope, pooler_name(scope, shard), shard),
        spec: PoolerSpec {
            cluster: PoolerCluster { name: cluster_name(scope, shard) },
            r#type: Some(PoolerType::Rw),
            instances: Some(pooling.instances),
            pgbouncer: PoolerPgbouncer {
                pool_mode: Some(match pooling.mode {
                    PoolMode::Session => PoolerPgbouncerPoolMode::Session,
                    PoolMode::Transaction => PoolerPgbouncerPoolMode::Transaction,
                }),
                parameters: Some(BTreeMap::from([
                    ("max_client_conn".to_string(), pooling.max_client_connections.to_string()),
                    ("default_pool_size".to_string(), pooling.default_pool_size.to_string()),
                ])),
                ..PoolerPgbouncer::default()
            },
            ..PoolerSpec::default()
        },
        status: None,
    }
}
