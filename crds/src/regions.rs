//! `spec.regions` and `spec.failover`: where the stack runs and how the standby takes over.
//!
//! Contract: API types only; the failover controller reads them.

use crate::common::{DNS_SUBDOMAIN_PATTERN, DURATION_PATTERN, SECRET_KEY_PATTERN};
use kube::KubeSchema;
use serde::{Deserialize, Serialize};

/// A region name: a short DNS label (it suffixes children's names).
pub const REGION_NAME_PATTERN: &str = r"^[a-z]([-a-z0-9]*[a-z0-9])?$";

/// One region.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct Region {
    /// Region name, unique in the Mall; children in it are named `<mall>-<region>-...`.
    #[schemars(length(min = 1, max = 12), regex(pattern = REGION_NAME_PATTERN))]
    pub name: String,
    /// `primary` serves writes; `standby` replicates and takes over on failover.
    pub role: RegionRole,
    /// Member cluster holding this region, through a kubeconfig Secret in the Mall's namespace;
    /// absent = the operator's own cluster.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cluster: Option<ClusterRef>,
    /// Share of traffic (DNS weight) the region gets while healthy.
    #[serde(default = "default_weight")]
    #[schemars(range(min = 0, max = 100))]
    pub weight: i32,
}

/// Region role.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub enum RegionRole {
    /// Serves writes.
    Primary,
    /// Replica, promoted on failover.
    Standby,
}

/// A kubeconfig Secret for a member cluster.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct ClusterRef {
    /// Secret name.
    #[schemars(length(min = 1, max = 253), regex(pattern = DNS_SUBDOMAIN_PATTERN))]
    pub secret_name: String,
    /// Key holding the kubeconfig.
    #[serde(default = "default_kubeconfig_key")]
    #[schemars(length(min = 1, max = 253), regex(pattern = SECRET_KEY_PATTERN))]
    pub key: String,
}

/// Regional failover.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct FailoverSpec {
    /// `automatic`: the operator promotes the standby after `failureThreshold` failed probes;
    /// `manual`: only `mallctl failover` does.
    #[serde(default)]
    pub mode: FailoverMode,
    /// Time between health probes of each region.
    #[serde(default = "default_probe_interval")]
    #[schemars(length(min = 2, max = 16), regex(pattern = DURATION_PATTERN))]
    pub probe_interval: String,
    /// Consecutive failed probes before the primary region counts as lost.
    #[serde(default = "default_threshold")]
    #[schemars(range(min = 1, max = 100))]
    pub failure_threshold: i32,
    /// Least time between two failovers.
    #[serde(default = "default_cooldown")]
    #[schemars(length(min = 2, max = 16), regex(pattern = DURATION_PATTERN))]
    pub cooldown: String,
    /// Promote only when a third party (another region) also sees the primary down.
    #[serde(default)]
    pub require_witness: bool,
}

impl Default for FailoverSpec {
    fn default() -> Self {
        Self {
            mode: FailoverMode::default(),
            probe_interval: default_probe_interval(),
            failure_threshold: default_threshold(),
            cooldown: default_cooldown(),
            require_witness: false,
        }
    }
}

/// Failover trigger.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub enum FailoverMode {
    /// The operator fails over by itself.
    #[default]
    Automatic,
    /// An operator (a person) runs `mallctl failover`.
    Manual,
}

fn default_weight() -> i32 {
    1
}
fn default_kubeconfig_key() -> String {
    "kubeconfig".into()
}
fn default_probe_interval() -> String {
    "10s".into()
}
fn default_threshold() -> i32 {
    3
}
fn default_cooldown() -> String {
    "10m".into()
}
