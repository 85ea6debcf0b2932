//! Step 2: the desired children of a Mall, as pure functions of its validated spec.
//!
//! Contract: no client, no clock, no environment. Given the same Mall, the same objects in the
//! same order, each with deterministic name and `app.kubernetes.io/*` labels; in the operator's
//! own cluster a controller owner reference to the Mall (absent only when the Mall has no uid, as
//! in `mallctl render`), in a member cluster the Mall's UID label instead ([`names`]).
//! One module per tier; [`children`] lists them all for `mallctl render`, [`children_by_target`]
//! groups them by the cluster they go to, for apply.

pub mod cache;
pub mod database;
pub mod dns;
pub mod edge;
pub mod kinds;
pub mod names;
pub mod network;
pub mod security;
pub mod storefront;

pub use names::{Scope, Target};

use mall_crds::Mall;
use serde::Serialize;
use serde_json::Value;
use std::collections::BTreeMap;

/// Why a child could not be built.
#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    /// A built object did not serialize (a bug, reported rather than panicking).
    #[error("serializing {kind} {name}")]
    Serialize {
        /// Kind of the object.
        kind: &'static str,
        /// Its name.
        name: String,
        /// Cause.
        #[source]
        source: serde_json::Error,
    },
    /// The cache tier could not be built.
    #[error("building the cache tier")]
    Cache(#[source] Box<cache::CacheError>),
    /// The edge tier could not be built.
    #[error("building the edge tier")]
    Edge(#[source] Box<edge::EdgeError>),
    /// The database tier could not be built.
    #[error("building the database tier")]
    Database(#[source] Box<database::DatabaseError>),
}

/// Serializes a typed object, adding `apiVersion` and `kind` for k8s-openapi types.
pub fn to_value<T: Serialize + k8s_openapi::Resource>(object: &T, name: &str) -> Result<Value, BuildError> {
    let mut value = serde_json::to_value(object).map_err(|source| BuildError::Serialize {
        kind: T::KIND,
        name: name.to_string(),
        source,
    })?;
    if let Some(map) = value.as_object_mut() {
        map.insert("apiVersion".into(), Value::String(T::API_VERSION.into()));
        map.insert("kind".into(), Value::String(T::KIND.into()));
    }
    Ok(value)
}

/// Every child of the Mall, region by region, tier by tier, with the cache password shown as
/// [`cache::PLACEHOLDER`] (for `mallctl render`; apply uses [`children_with`]).
pub fn children(mall: &Mall) -> Result<Vec<Value>, BuildError> {
    children_with(mall, &|_| cache::CacheSecrets::placeholder())
}

/// Every child of the Mall, with each region's cache credentials from `cache_secrets` (apply
/// reads them back from the existing Secret or generates them once; see [`cache`]).
pub fn children_with(
    mall: &Mall,
    cache_secrets: &dyn Fn(&Scope<'_>) -> cache::CacheSecrets,
) -> Result<Vec<Value>, BuildError> {
    let mut out = Vec::new();
    for scope in Scope::all(mall) {
        out.extend(scope_children(&scope, cache_secrets)?);
    }
    Ok(out)
}

/// Every child of the Mall grouped by the cluster it goes to (each region's children to its
/// region's cluster; regions sharing a cluster share an entry, in spec order).
pub fn children_by_target(
    mall: &Mall,
    cache_secrets: &dyn Fn(&Scope<'_>) -> cache::CacheSecrets,
) -> Result<BTreeMap<Target, Vec<Value>>, BuildError> {
    let mut out: BTreeMap<Target, Vec<Value>> = BTreeMap::new();
    for scope in Scope::all(mall) {
        let children = scope_children(&scope, cache_secrets)?;
        out.entry(scope.target.clone()).or_default().extend(children);
    }
    Ok(out)
}

/// The children of one region, tier by tier.
fn scope_children(
    scope: &Scope<'_>,
    cache_secrets: &dyn Fn(&Scope<'_>) -> cache::CacheSecrets,
) -> Result<Vec<Value>, BuildError> {
    let mut out = Vec::new();
    out.extend(storefront::build(scope)?);
    out.extend(network::build(scope)?);
    out.extend(database::build(scope).map_err(|e| BuildError::Database(Box::new(e)))?);
    out.extend(cache::build(scope, &cache_secrets(scope)).map_err(|e| BuildError::Cache(Box::new(e)))?);
    out.extend(edge::build(scope).map_err(|e| BuildError::Edge(Box::new(e)))?);
    Ok(out)
}
