//! `spec.cache`: the Valkey/Redis cache, run in the engine's own cluster mode (hash slots,
//! replicas with automatic failover inside each shard).
//!
//! Contract: API types only.

use crate::common::{QUANTITY_PATTERN, Resources};
use kube::KubeSchema;
use serde::{Deserialize, Serialize};

/// The cache tier.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct CacheSpec {
    /// Server program; both read the same configuration.
    #[serde(default)]
    pub engine: CacheEngine,
    /// Container image; absent = the engine's official image for the pinned version.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 512), regex(pattern = r"^[^\s]+$"))]
    pub image: Option<String>,
    /// Primaries (hash-slot owners). Cluster mode needs at least 3 for failover votes. May grow
    /// (slots move to the new shards without losing keys); shrinking is a manual migration
    /// (docs/cache.md), so a decrease is refused.
    #[serde(default = "default_shards")]
    #[schemars(range(min = 3, max = 99))]
    #[x_kube(validation = kube::core::Rule::new("self >= oldSelf").message("cache shards can only grow (shrinking is a manual migration, see docs/cache.md)"))]
    pub shards: i32,
    /// Replicas of each primary; a replica is promoted when its primary fails.
    #[serde(default = "default_replicas")]
    #[schemars(range(min = 0, max = 5))]
    pub replicas_per_shard: i32,
    /// `maxmemory` of each node.
    #[serde(default = "default_max_memory")]
    #[schemars(length(min = 1, max = 32), regex(pattern = QUANTITY_PATTERN))]
    pub max_memory: String,
    /// `maxmemory-policy`.
    #[serde(default)]
    pub eviction_policy: EvictionPolicy,
    /// Append-only-file persistence on a volume; off = a pure cache that restarts empty.
    #[serde(default)]
    pub persistence: CachePersistence,
    /// CPU and memory of each node (memory should exceed `maxMemory` by ~25 %).
    #[serde(default)]
    pub resources: Resources,
}

/// Cache server program.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub enum CacheEngine {
    /// Valkey (BSD-licensed Redis fork).
    #[default]
    Valkey,
    /// Redis.
    Redis,
}

/// `maxmemory-policy` values.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, schemars::JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum EvictionPolicy {
    /// Evict any key, least recently used first.
    #[default]
    AllkeysLru,
    /// Evict any key, least frequently used first.
    AllkeysLfu,
    /// Evict random keys.
    AllkeysRandom,
    /// Evict keys with a TTL, LRU first.
    VolatileLru,
    /// Evict keys with a TTL, LFU first.
    VolatileLfu,
    /// Evict random keys with a TTL.
    VolatileRandom,
    /// Evict keys with the nearest TTL.
    VolatileTtl,
    /// Refuse writes when full.
    Noeviction,
}

/// Persistence of cache nodes.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct CachePersistence {
    /// Append-only file on a PersistentVolumeClaim per node.
    #[serde(default)]
    pub enabled: bool,
    /// Volume size when enabled.
    #[serde(default = "default_volume")]
    #[schemars(length(min = 1, max = 32), regex(pattern = QUANTITY_PATTERN))]
    pub size: String,
}

impl Default for CachePersistence {
    fn default() -> Self {
        Self { enabled: false, size: default_volume() }
    }
}

fn default_shards() -> i32 {
    3
}
fn default_replicas() -> i32 {
    1
}
fn default_max_memory() -> String {
    "1Gi".into()
}
fn default_volume() -> String {
    "5Gi".into()
}
