//! Step 2: the desired children of a Mall, as pure functions of its validated spec.
//!
//! Contract: no client, no clock, no environment. Given the same Mall, the same objects in the
//! same order, each with deterministic name and `app.kubernetes.io/*` labels; in the operator's
//! own cluster a controller owner reference to the Mall (absent only when the Mall has no uid, as
//! in `mallctl render`), in a member cluster the Mall's UID label instead ([`names`]).
//! One module per tier, each returning typed [`Child`]ren ([`set`]); [`children`] lists them all
//! as JSON for `mallctl render`, [`children_by_target`] groups them into one [`ChildSet`] per
//! cluster they go to, for apply.

pub mod cache;
pub mod database;
pub mod dns;
pub mod edge;
pub mod fencing;
pub mod kinds;
pub mod names;
pub mod network;
pub mod security;
pub mod set;
pub mod storefront;

pub use names::{Scope, Target};
pub use set::{Child, ChildSet, Live};

use mall_crds::Mall;
use serde_json::Value;
use std::collections::BTreeMap;

/// Why a child could not be built.
#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    /// A built object did not serialize (a bug, reported rather than panicking).
    #[error("serializing a child")]
    Serialize(#[source] kinds::KindsError),
    /// The cache tier could not be built.
    #[error("building the cache tier")]
    Cache(#[source] Box<cache::CacheError>),
    /// The edge tier could not be built.
    #[error("building the edge tier")]
    Edge(#[source] Box<edge::EdgeError>),
}

/// Every child of the Mall as JSON, region by region, tier by tier, with the cache password shown
/// as [`cache::PLACEHOLDER`] (what `mallctl render` prints; apply uses [`children_by_target`]).
pub fn children(mall: &Mall) -> Result<Vec<Value>, BuildError> {
    let children = children_with(mall, &|_| cache::CacheSecrets::placeholder())?;
    children.iter().map(|child| child.to_value().map_err(BuildError::Serialize)).collect()
}

/// Every child of the Mall in build order, with each region's cache credentials from
/// `cache_secrets` (apply reads them back from the existing Secret or generates them once; see
/// [`cache`]).
pub fn children_with(
    mall: &Mall,
    cache_secrets: &dyn Fn(&Scope<'_>) -> cache::CacheSecrets,
) -> Result<Vec<Child>, BuildError> {
    let mut out = Vec::new();
    for scope in Scope::all(mall) {
        out.extend(scope_children(&scope, cache_secrets)?);
    }
    Ok(out)
}

/// Every child of the Mall grouped by the cluster it goes to (each region's children to its
/// region's cluster; regions sharing a cluster share a set, in spec order).
pub fn children_by_target(
    plan: &crate::validate::Plan<'_>,
    cache_secrets: &dyn Fn(&Scope<'_>) -> cache::CacheSecrets,
) -> Result<BTreeMap<Target, ChildSet>, BuildError> {
    let mut out: BTreeMap<Target, ChildSet> = BTreeMap::new();
    for scope in &plan.scopes {
        let children = scope_children(scope, cache_secrets)?;
        out.entry(scope.target.clone()).or_default().extend(children);
    }
    Ok(out)
}

/// The children of one region, tier by tier.
fn scope_children(
    scope: &Scope<'_>,
    cache_secrets: &dyn Fn(&Scope<'_>) -> cache::CacheSecrets,
) -> Result<Vec<Child>, BuildError> {
    let mut out = Vec::new();
    out.extend(storefront::build(scope));
    out.extend(network::build(scope));
    out.extend(database::build(scope));
    out.extend(cache::build(scope, &cache_secrets(scope)).map_err(|e| BuildError::Cache(Box::new(e)))?);
    out.extend(edge::build(scope).map_err(|e| BuildError::Edge(Box::new(e)))?);
    Ok(out)
}
