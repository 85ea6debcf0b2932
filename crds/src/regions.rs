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
    /// Capacity of a standby region's storefront, cache and edge, in percent of the active
    /// region's (at least one replica each while above 0): warm enough to take the traffic
    /// while the autoscaler catches up after a failover.
    #[serde(default = "default_standby_capacity")]
    #[schemars(range(min = 0, max = 100))]
    pub standby_capacity_percent: i32,
    /// How the hub's `DNSEndpoint` for `spec.cdn.domains` points at the regions.
    #[serde(default)]
    pub dns_mode: DnsMode,
    /// TTL of those DNS records, in seconds: clients follow a failover within about this time.
    #[serde(default = "default_dns_ttl", rename = "dnsTTLSeconds")]
    #[schemars(range(min = 1, max = 86400))]
    pub dns_ttl_seconds: i32,
}

/// DNS publication of the regions' Gateway addresses.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub enum DnsMode {
    /// One record set: the active region's Gateway addresses only.
    #[default]
    Active,
    /// One record set per healthy region (`setIdentifier` = region, weight = its `weight`;
    /// provider-specific: external-dns honours it on providers with weighted routing, such as
    /// AWS Route 53). Writes still go to the active region's database.
    Weighted,
}

impl Default for FailoverSpec {
    fn default() -> Self {
        Self {
            mode: FailoverMode::default(),
            probe_interval: default_probe_interval(),
            failure_threshold: default_threshold(),
            cooldown: default_cooldown(),
            require_witness: false,
            standby_capacity_percent: default_standby_capacity(),
            dns_mode: DnsMode::default(),
            dns_ttl_seconds: default_dns_ttl(),
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
fn default_standby_capacity() -> i32 {
    50
}
fn default_dns_ttl() -> i32 {
    30
}
fn default_cooldown() -> String {
    "10m".into()
}
