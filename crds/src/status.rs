//! `status` of a Mall: what the operator observed, never what it merely wished.
//!
//! Contract: API types only. Writers: the reconciler (conditions, tiers, shards), the autoscaler
//! (`lastScaling` and the `MetricsUnavailable` condition, field manager `mall-autoscaler`), the
//! failover controller (`activeRegion`, `regions`, `failoverEpoch`). `conditions` is a map list
//! keyed by `type`, so under server-side apply each writer owns only its own conditions.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::KubeSchema;
use serde::{Deserialize, Serialize};

/// Observed state of a Mall.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct MallStatus {
    /// The `metadata.generation` this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// `Ready`, `Progressing`, `Degraded` (and tier-specific ones), with reasons; keyed by `type`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["type"]))]
    pub conditions: Vec<Condition>,
    /// Desired and ready counts per tier.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tiers: Option<TierCounts>,
    /// Per-shard database state.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub shards: Vec<ShardStatus>,
    /// Region currently serving writes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub active_region: Option<String>,
    /// Health of each region as last probed.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub regions: Vec<RegionStatus>,
    /// Incremented by every failover; writers in older epochs are fenced.
    #[serde(default)]
    pub failover_epoch: i64,
    /// The autoscaler's most recent scale action.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_scaling: Option<ScalingDecision>,
}

/// Desired/ready counts of each tier.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct TierCounts {
    /// Storefront pods.
    pub storefront: Count,
    /// Database instances (all shards).
    pub database: Count,
    /// Cache nodes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cache: Option<Count>,
    /// Edge pods.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub edge: Option<Count>,
}

/// A desired/ready pair.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct Count {
    /// What the spec asks for.
    pub desired: i32,
    /// What is Ready now.
    pub ready: i32,
}

/// State of one shard's CloudNativePG cluster.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct ShardStatus {
    /// Shard number (0-based).
    pub index: i32,
    /// CloudNativePG `Cluster` name.
    pub cluster: String,
    /// CloudNativePG phase.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phase: Option<String>,
    /// Instances Ready / desired.
    pub instances: Count,
    /// Current primary pod.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub primary: Option<String>,
}

/// Health of a region.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct RegionStatus {
    /// Region name.
    pub name: String,
    /// `Healthy`, `Unreachable` or `Degraded`.
    pub health: String,
    /// Consecutive failed probes.
    #[serde(default)]
    pub consecutive_failures: i32,
    /// Last probe time (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_probe: Option<String>,
}

/// One scale action of the autoscaler.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct ScalingDecision {
    /// When (RFC 3339).
    pub time: String,
    /// Tier scaled (`storefront`, `cache`, `database`).
    pub tier: String,
    /// Replicas before.
    pub from: i32,
    /// Replicas after.
    pub to: i32,
    /// Why, in words.
    pub reason: String,
}
