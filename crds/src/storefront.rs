//! `spec.storefront`: the shop's web tier (a Deployment the operator builds and autoscales).
//!
//! Contract: API types only; bounds and rules live in the attributes and reach the CRD schema.

use crate::common::Resources;
use k8s_openapi::api::core::v1::{EnvFromSource, EnvVar};
use kube::KubeSchema;
use serde::{Deserialize, Serialize};

/// The storefront Deployment.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct StorefrontSpec {
    /// Container image of the storefront, e.g. `registry.example/shop:1.4.2`.
    #[schemars(length(min = 1, max = 512), regex(pattern = r"^[^\s]+$"))]
    pub image: String,
    /// Port the storefront listens on.
    #[serde(default = "default_port")]
    #[schemars(range(min = 1, max = 65535))]
    pub port: i32,
    /// HTTP path answering 200 when the storefront can serve (readiness and liveness probes).
    #[serde(default = "default_health_path")]
    #[schemars(length(min = 1, max = 256), regex(pattern = r"^/[^\s]*$"))]
    pub health_path: String,
    /// Replicas when autoscaling is off; the starting size when it is on.
    #[serde(default = "default_replicas")]
    #[schemars(range(min = 0, max = 1000))]
    pub replicas: i32,
    /// CPU and memory of each storefront container.
    #[serde(default)]
    pub resources: Resources,
    /// Extra environment variables (the operator adds the shard map, cache and edge wiring).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 128))]
    pub env: Vec<EnvVar>,
    /// Extra environment sources (ConfigMaps, Secrets).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 32))]
    pub env_from: Vec<EnvFromSource>,
    /// How pods spread across zones.
    #[serde(default)]
    pub topology_spread: TopologySpread,
}

/// Spread of pods across a topology domain.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct TopologySpread {
    /// Largest allowed difference in pod count between two domains.
    #[serde(default = "default_max_skew")]
    #[schemars(range(min = 1, max = 100))]
    pub max_skew: i32,
    /// Node label that defines a domain.
    #[serde(default = "default_topology_key")]
    #[schemars(length(min = 1, max = 316))]
    pub topology_key: String,
    /// What the scheduler does when the spread cannot be met.
    #[serde(default)]
    pub when_unsatisfiable: WhenUnsatisfiable,
}

impl Default for TopologySpread {
    fn default() -> Self {
        Self {
            max_skew: default_max_skew(),
            topology_key: default_topology_key(),
            when_unsatisfiable: WhenUnsatisfiable::default(),
        }
    }
}

/// `topologySpreadConstraints[].whenUnsatisfiable`.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, schemars::JsonSchema)]
pub enum WhenUnsatisfiable {
    /// Prefer the spread, schedule anyway.
    #[default]
    ScheduleAnyway,
    /// Leave pods Pending rather than break the spread.
    DoNotSchedule,
}

fn default_port() -> i32 {
    8080
}
fn default_health_path() -> String {
    "/healthz".into()
}
fn default_replicas() -> i32 {
    2
}
fn default_max_skew() -> i32 {
    1
}
fn default_topology_key() -> String {
    "topology.kubernetes.io/zone".into()
}

/// Kept for builders that name things after a storefront port: the port's name.
pub const STOREFRONT_PORT_NAME: &str = "http";
