//! `spec.autoscaling`: traffic-aware scaling of the storefront, cache replicas and database read
//! replicas from Prometheus, with announced promotions (`events`).
//!
//! Contract: API types only; the engine that reads them is `mall_controllers::autoscaler`.

use crate::common::{DURATION_PATTERN, SecretKeyRef};
use kube::KubeSchema;
use serde::{Deserialize, Serialize};

/// Autoscaling of every tier.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct AutoscalingSpec {
    /// Where the traffic metrics come from.
    pub prometheus: PrometheusSource,
    /// Storefront pods: load is requests/s per pod.
    #[serde(default = "TierScaling::storefront_default")]
    pub storefront: TierScaling,
    /// Cache replicas per shard: load is commands/s per node.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cache: Option<TierScaling>,
    /// Database instances per shard (primary + read replicas): load is queries/s per instance.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub database: Option<TierScaling>,
    /// p99 latency objective of the storefront; scaling up when it is breached.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub latency_slo: Option<LatencySlo>,
    /// How fast capacity may go down.
    #[serde(default)]
    pub scale_down: ScaleDown,
    /// How fast capacity may go up.
    #[serde(default)]
    pub scale_up: ScaleUp,
    /// Announced promotions: capacity is Ready when they start.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 32))]
    #[x_kube(validation = kube::core::Rule::new("self.all(e, self.exists_one(f, f.name == e.name))").message("event names must be unique"))]
    pub events: Vec<ScalingEvent>,
}

/// Prometheus endpoint.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct PrometheusSource {
    /// Base URL of the Prometheus HTTP API (`http://prometheus.monitoring:9090`).
    #[schemars(length(min = 8, max = 1024), regex(pattern = r"^https?://[^\s/]+(/[^\s]*)?$"))]
    pub url: String,
    /// Secret key holding a bearer token, when Prometheus needs one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auth_secret: Option<SecretKeyRef>,
}

/// Bounds and target of one tier.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = kube::core::Rule::new("self.min <= self.max").message("min must not exceed max").field_path(".min"))]
#[x_kube(validation = kube::core::Rule::new("self.targetPerReplica > 0.0").message("targetPerReplica must be greater than 0").field_path(".targetPerReplica"))]
pub struct TierScaling {
    /// Fewest replicas.
    #[schemars(range(min = 0, max = 10000))]
    pub min: i32,
    /// Most replicas.
    #[schemars(range(min = 1, max = 10000))]
    pub max: i32,
    /// Load one replica should carry (requests/s for the storefront).
    #[schemars(range(min = 0.001, max = 1000000000.0))]
    pub target_per_replica: f64,
    /// PromQL returning the tier's total load now; `$namespace` and `$mall` are substituted.
    /// Absent = the documented default query (docs/autoscaling.md).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 4096))]
    pub query: Option<String>,
}

impl TierScaling {
    fn storefront_default() -> Self {
        Self { min: 2, max: 20, target_per_replica: 100.0, query: None }
    }
}

/// p99 latency objective.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct LatencySlo {
    /// p99 objective (`300ms`).
    #[schemars(length(min = 2, max = 16), regex(pattern = DURATION_PATTERN))]
    pub p99: String,
    /// PromQL returning the storefront's p99 latency in seconds; absent = the default query.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 4096))]
    pub query: Option<String>,
}

/// Scale-down limits.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct ScaleDown {
    /// Highest recommendation within this window is used (no flapping).
    #[serde(default = "default_stabilization")]
    #[schemars(length(min = 2, max = 16), regex(pattern = DURATION_PATTERN))]
    pub stabilization: String,
    /// At most this percentage of replicas removed per minute.
    #[serde(default = "default_down_percent")]
    #[schemars(range(min = 1, max = 100))]
    pub max_percent_per_minute: i32,
}

impl Default for ScaleDown {
    fn default() -> Self {
        Self { stabilization: default_stabilization(), max_percent_per_minute: default_down_percent() }
    }
}

/// Scale-up limits.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct ScaleUp {
    /// At most this many times the current replicas per step (`4` = quadruple).
    #[serde(default = "default_up_factor")]
    #[schemars(range(min = 1, max = 100))]
    pub max_factor_per_step: i32,
    /// At least this many pods may always be added in one step.
    #[serde(default = "default_up_pods")]
    #[schemars(range(min = 1, max = 1000))]
    pub min_pods_per_step: i32,
}

impl Default for ScaleUp {
    fn default() -> Self {
        Self { max_factor_per_step: default_up_factor(), min_pods_per_step: default_up_pods() }
    }
}

/// An announced promotion.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = kube::core::Rule::new("self.end > self.start").message("end must be after start").field_path(".end"))]
#[x_kube(validation = kube::core::Rule::new("has(self.multiplier) || has(self.minReplicas)").message("set multiplier or minReplicas (or both)"))]
pub struct ScalingEvent {
    /// Event name (shown in scaling reasons).
    #[schemars(length(min = 1, max = 63), regex(pattern = crate::common::DNS_LABEL_PATTERN))]
    pub name: String,
    /// When traffic starts (RFC 3339, e.g. `2026-11-11T00:00:00+08:00`).
    #[schemars(length(min = 20, max = 40), extend("format" = "date-time"))]
    pub start: String,
    /// When the promotion ends; capacity is then released gradually.
    #[schemars(length(min = 20, max = 40), extend("format" = "date-time"))]
    pub end: String,
    /// How long before `start` to begin adding capacity (at least the pods' start-up time).
    #[serde(default = "default_warmup")]
    #[schemars(length(min = 2, max = 16), regex(pattern = DURATION_PATTERN))]
    pub warmup: String,
    /// Expected traffic relative to normal (`20` = twenty times).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1.0, max = 1000.0))]
    pub multiplier: Option<f64>,
    /// Storefront replicas Ready at `start` at the least.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 10000))]
    pub min_replicas: Option<i32>,
}

fn default_stabilization() -> String {
    "120s".into()
}
fn default_down_percent() -> i32 {
    50
}
fn default_up_factor() -> i32 {
    4
}
fn default_up_pods() -> i32 {
    4
}
fn default_warmup() -> String {
    "10m".into()
}
