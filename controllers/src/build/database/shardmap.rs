//! The shard map: the ConfigMap telling applications how to route a key and where each shard is.
//!
//! Contract: pure. `<prefix>-shardmap` with keys `shards` (count), `hash` ([`shard::RULE`]),
//! `database` (`app`) and `shards.json` (one object per shard, in order: `shard`, `cluster`,
//! `rw`/`ro`/`r` Service names, `pooler` (or null), `write` (pooler if any, else `rw`), `secret`
//! (`<cluster>-app`; in a distributed topology the shard's Secret shared by every region,
//! `<mall>-db-<shard>-app`, with `username` and `password`), `database`, `port`). Format documented in `docs/sharding.md`.

use super::{
    APP_DATABASE, COMPONENT, Scope, cluster_name, credentials_secret_name, pooler_name, shard, shard_map_name,
};
use crate::build::network::POSTGRES_PORT;
use k8s_openapi::api::core::v1::ConfigMap;
use serde_json::{Value, json};
use std::collections::BTreeMap;

/// The `shards.json` entry of shard `shard`.
pub fn shard_entry(scope: &Scope<'_>, shard: i32) -> Value {
    let cluster = cluster_name(scope, shard);
    let rw = format!("{cluster}-rw");
    let pooler = scope.mall.spec.database.pooling.enabled.then(|| pooler_name(scope, shard));
    let write = pooler.clone().unwrap_or_else(|| rw.clone());
    json!({
        "shard": shard,
        "cluster": cluster,
        "rw": rw,
        "ro": format!("{cluster}-ro"),
        "r": format!("{cluster}-r"),
        "pooler": pooler,
        "write": write,
        "secret": credentials_secret_name(scope, shard),
        "database": APP_DATABASE,
        "port": POSTGRES_PORT,
    })
}

/// The shard map ConfigMap of `scope`.
pub fn shard_map(scope: &Scope<'_>) -> ConfigMap {
    let shards = scope.mall.spec.database.shards;
    let entries = Value::Array((0..shards).map(|s| shard_entry(scope, s)).collect());
    ConfigMap {
        metadata: scope.meta(shard_map_name(scope), COMPONENT),
        data: Some(BTreeMap::from([
            ("shards".to_string(), shards.to_string()),
            ("hash".to_string(), shard::RULE.to_string()),
            ("database".to_string(), APP_DATABASE.to_string()),
            ("shards.json".to_string(), format!("{entries:#}\n")),
        ])),
        ..ConfigMap::default()
    }
}
