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
pub mod requests;
pub mod status;
pub mod storefront;

pub use autoscaling::{AutoscalingSpec, ScalingEvent, TierScaling};
pub use cache::CacheSpec;
pub use cdn::CdnSpec;
pub use database::DatabaseSpec;
pub use regions::{FailoverSpec, Region, RegionRole};
pub use requests::{FailoverRequest, REQUEST_ANNOTATION, RequestAction};
pub use status::MallStatus;
pub use storefront::StorefrontSpec;

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::{CustomResourceDefinition, JSONSchemaProps};
use kube::{CustomResource, CustomResourceExt, KubeSchema};
use serde::{Deserialize, Serialize};

/// API group of the Mall.
pub const GROUP: &str = "mallctl.io";
/// API version of the Mall.
pub const VERSION: &str = "v1alpha1";
/// Longest Mall name: children are named `<mall>-<region>-<tier>-<n>` and must stay DNS labels.
/// Annotation the operator keeps on its leader-election Lease: its version (`mallctl version`
/// reads it).
pub const OPERATOR_VERSION_ANNOTATION: &str = "mallctl.io/operator-version";
pub const MAX_NAME_LEN: usize = 30;

/// A whole e-commerce stack: storefront, sharded PostgreSQL, cache, edge, autoscaling and regions.
// Each printcolumn repeats `type_ = ...`: clippy reads them as duplicated attributes.
#[allow(clippy::duplicated_attributes)]
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
    printcolumn(
        name = "Storefront",
        type_ = "integer",
        description = "Ready storefront replicas",
        json_path = ".status.tiers.storefront.ready"
    ),
    printcolumn(name = "Age", type_ = "date", json_path = ".metadata.creationTimestamp")
)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = kube::core::Rule::new("!has(self.regions) || self.regions.filter(r, r.role == 'primary').size() == 1").message("exactly one region must have role primary").field_path(".regions"))]
#[x_kube(validation = kube::core::Rule::new("!has(self.regions) || self.regions.size() < 2 && self.regions.all(r, !has(r.cluster)) || has(self.database.backup)").message("standby regions and regions in member clusters need spec.database.backup (standby regions replicate through the object store)").field_path(".regions"))]
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

/// Pattern of a Mall name: a DNS label starting with a letter (children are named after it).
pub const NAME_PATTERN: &str = "^[a-z]([-a-z0-9]*[a-z0-9])?$";

impl Mall {
    /// The CRD as the API server receives it: kube's derived CRD plus the one constraint it
    /// cannot express, on `metadata.name` (the only metadata field a CRD schema may restrict).
    pub fn definition() -> CustomResourceDefinition {
        let mut crd = <Mall as CustomResourceExt>::crd();
        let roots = crd.spec.versions.iter_mut().filter_map(|v| v.schema.as_mut()?.open_api_v3_schema.as_mut());
        for schema in roots {
            let metadata = schema.properties.get_or_insert_with(Default::default).entry("metadata".into()).or_default();
            metadata.type_ = Some("object".into());
            let name = JSONSchemaProps {
                type_: Some("string".into()),
                max_length: Some(MAX_NAME_LEN as i64),
                pattern: Some(NAME_PATTERN.into()),
                description: Some(format!(
                    "A DNS label of at most {MAX_NAME_LEN} characters starting with a letter: children are named after it."
                )),
                ..Default::default()
            };
            metadata.properties = Some([("name".to_string(), name)].into());
        }
        crd
    }
}
