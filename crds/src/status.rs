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
    /// The most recent failover or switchover, with its recovery time and data loss.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_failover: Option<FailoverRecord>,
    /// A switchover in progress (its state survives an operator restart).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub switchover: Option<SwitchoverState>,
    /// The outcome of the most recent `mallctl failover`/`switchover` request.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_request: Option<RequestOutcome>,
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

/// Health and database role of a region.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct RegionStatus {
    /// Region name.
    pub name: String,
    /// `Unknown` (not probed enough yet), `Healthy`, `Down`, `Fenced` (demoted after a failover,
    /// waiting to be rebuilt) or `Rebuilding`.
    pub health: String,
    /// Consecutive failed probes.
    #[serde(default)]
    pub consecutive_failures: i32,
    /// Consecutive successful probes.
    #[serde(default)]
    pub consecutive_successes: i32,
    /// Last probe time (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_probe: Option<String>,
    /// What the last failed probe saw.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
    /// `primary` or `replica`: the role of this region's shard Clusters.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub role: Option<String>,
    /// The epoch this region's shard Clusters were (re)built in: their archive folder is
    /// `<cluster>` in epoch 0 and `<cluster>-e<epoch>` after a rebuild, so a rebuilt member
    /// never writes into an old archive.
    #[serde(default)]
    pub server_epoch: i64,
    /// The region this region's shards were seeded from by recovery; absent = `initdb`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seeded_from: Option<String>,
}

/// One completed (or running) failover or switchover.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct FailoverRecord {
    /// `failover` (no token: the old primary is lost or fenced) or `switchover` (controlled).
    pub kind: String,
    /// The region that was active.
    pub from: String,
    /// The region that is active now.
    pub to: String,
    /// The epoch it moved to.
    pub epoch: i64,
    /// Why (a probe failure, a request).
    pub reason: String,
    /// When the region was first seen down, or the request arrived (RFC 3339).
    pub started: String,
    /// When every shard was primary in the new region and its storefront Ready (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub completed: Option<String>,
    /// Recovery time: from `started` to `completed`, in milliseconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rto_milliseconds: Option<i64>,
    /// Data loss, stated: `0` for a switchover, or the bound of writes not yet archived.
    pub rpo: String,
}

/// A switchover in progress.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct SwitchoverState {
    /// The region giving up the primary role.
    pub from: String,
    /// The region taking it.
    pub to: String,
    /// The epoch of the switchover.
    pub epoch: i64,
    /// When it started (RFC 3339).
    pub started: String,
    /// Per shard: the demotion token read from the old primary, once there is one.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub shards: Vec<ShardSwitch>,
}

/// A shard's progress in a switchover.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct ShardSwitch {
    /// Shard number.
    pub index: i32,
    /// `status.demotionToken` of the old primary's Cluster.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub demotion_token: Option<String>,
    /// Whether the new primary has promoted with it.
    #[serde(default)]
    pub promoted: bool,
}

/// What became of a `mallctl failover`/`switchover` request.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct RequestOutcome {
    /// The request's id (from the `mallctl.io/request` annotation).
    pub id: String,
    /// `Accepted`, `Refused`, `Completed` or `Failed`.
    pub outcome: String,
    /// Why, in words.
    pub message: String,
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
