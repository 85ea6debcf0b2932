//! The `Mall` custom resource (`mallctl.io/v1alpha1`): API types, defaults and validation rules.
//!
//! Contract: types only — no client, no I/O. Every validation rule lives here once, as OpenAPI
//! bounds (schemars attributes) and CEL `x-kubernetes-validations` (kube's `KubeSchema` derive),
//! and reaches both enforcers from the generated schema: the API server through the CRD
//! ([`Mall::crd`]), and `mall_controllers::validate` offline (operator and `mallctl validate`).

pub mod autoscaling;
pub mod cache;
pub mod cdn;
pub mod common;
pub mod database;
pub mod regions;
pub mod status;
pub mod storefront;

pub use autoscaling::{AutoscalingSpec, ScalingEvent, TierScaling};
pub use cache::CacheSpec;
pub use cdn::CdnSpec;
pub use database::DatabaseSpec;
pub use regions::{FailoverSpec, Region, RegionRole};
pub use status::MallStatus;
pub use storefront::StorefrontSpec;

use kube::{CustomResource, CustomResourceExt, KubeSchema};
use serde::{Deserialize, Serialize};

/// API group of the Mall.
pub const GROUP: &str = "mallctl.io";
/// API version of the Mall.
pub const VERSION: &str = "v1alpha1";
/// Longest Mall name: children are named `<mall>-<region>-<tier>-<n>` and must stay DNS labels.
pub const MAX_NAME_LEN: usize = 30;

/// A whole e-commerce stack: storefront, sharded PostgreSQL, cache, edge, autoscaling and regions.
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[kube(
    group = "mallctl.io",
    version = "v1alpha1",
    kind = "Mall",
    namespaced,
    status = "MallStatus",
    shortname = "mall",
    category = "mallctl",
    derive = "PartialEq",
    printcolumn(name = "Ready", type_ = "string", json_path = r#".status.conditions[?(@.type=="Ready")].status"#),
    printcolumn(name = "Active region", type_ = "string", json_path = ".status.activeRegion"),
    printcolumn(name = "Storefront", type_ = "integer", description = "Ready storefront replicas", json_path = ".status.tiers.storefront.ready"),
    printcolumn(name = "Age", type_ = "date", json_path = ".metadata.creationTimestamp"),
    validation = kube::core::Rule::new("self.metadata.name.size() <= 30 && self.metadata.name.matches('^[a-z]([-a-z0-9]*[a-z0-9])?$')").message("a Mall name must be a DNS label of at most 30 characters starting with a letter (children are named after it)").field_path(".metadata.name"),
)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = kube::core::Rule::new("!has(self.regions) || self.regions.filter(r, r.role == 'primary').size() == 1").message("exactly one region must have role primary").field_path(".regions"))]
#[x_kube(validation = kube::core::Rule::new("!has(self.autoscaling) || !has(self.autoscaling.database) || self.autoscaling.database.min >= 1 && self.autoscaling.database.max <= 9").message("database instances per shard scale within 1..9").field_path(".autoscaling.database"))]
#[x_kube(validation = kube::core::Rule::new("!has(self.autoscaling) || !has(self.autoscaling.cache) || self.autoscaling.cache.max <= 5").message("cache replicas per shard scale within 0..5").field_path(".autoscaling.cache"))]
#[x_kube(validation = kube::core::Rule::new("!has(self.autoscaling) || !has(self.autoscaling.cache) || has(self.cache)").message("autoscaling.cache needs spec.cache").field_path(".autoscaling.cache"))]
pub struct MallSpec {
    /// The web tier.
    pub storefront: StorefrontSpec,
    /// Sharded PostgreSQL through CloudNativePG.
    pub database: DatabaseSpec,
    /// Valkey/Redis cluster; absent = no cache tier.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cache: Option<CacheSpec>,
    /// In-cluster edge cache (Varnish) behind a Gateway; absent = no edge tier.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cdn: Option<CdnSpec>,
    /// Traffic-aware autoscaling; absent = fixed sizes from the spec.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub autoscaling: Option<AutoscalingSpec>,
    /// Regions; empty = one region in the operator's own cluster, children without suffix.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 8))]
    #[x_kube(validation = kube::core::Rule::new("self.all(r, self.exists_one(s, s.name == r.name))").message("region names must be unique"))]
    pub regions: Vec<Region>,
    /// Regional failover policy.
    #[serde(default)]
    pub failover: FailoverSpec,
}

impl Mall {
    /// The CRD as the API server receives it.
    pub fn definition() -> k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition
    {
        <Mall as CustomResourceExt>::crd()
    }
}
