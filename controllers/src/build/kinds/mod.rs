//! Builders of the Kubernetes kinds more than one tier creates: Services and PodDisruptionBudgets
//! ([`service`](mod@service)), the restricted pod and Deployment skeleton ([`workload`]),
//! NetworkPolicy rules ([`policy`]), and the serialization of typed objects ([`resource_value`]).
//!
//! Contract: pure constructors, no defaults of their own beyond what each function documents.
//! A tier composes them and adds only what is its own (containers, ports, extra fields), so one
//! change here changes every tier alike.

pub mod policy;
pub mod service;
pub mod workload;

pub use policy::{allow, ingress_policy, pods, tcp};
pub use service::{http_service, pod_disruption_budget, service, service_port};
pub use workload::{
    amounts, config_map_volume, deployment, empty_dir, env, http_port, http_probe, mount, pod_template, resources,
    restricted_pod, spread,
};

use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use serde::Serialize;
use serde_json::Value;

/// Why a typed object could not become JSON.
#[derive(Debug, thiserror::Error)]
pub enum KindsError {
    /// A built object did not serialize (a bug, reported rather than panicking).
    #[error("serializing {kind} {name}")]
    Serialize {
        /// Kind of the object.
        kind: String,
        /// Its name.
        name: String,
        /// Cause.
        #[source]
        source: serde_json::Error,
    },
}

/// A selector matching exactly `labels`.
pub fn match_labels<K: Into<String>, V: Into<String>>(labels: impl IntoIterator<Item = (K, V)>) -> LabelSelector {
    LabelSelector {
        match_labels: Some(labels.into_iter().map(|(k, v)| (k.into(), v.into())).collect()),
        ..LabelSelector::default()
    }
}

/// Serializes a typed object of a kind with a static type (`DynamicType = ()`: k8s-openapi's
/// types and kopium's), adding `apiVersion` and `kind`.
pub fn resource_value<T>(object: &T) -> Result<Value, KindsError>
where
    T: Serialize + kube::Resource<DynamicType = ()>,
{
    let kind = T::kind(&()).into_owned();
    let name = object.meta().name.clone().unwrap_or_default();
    let mut value =
        serde_json::to_value(object).map_err(|source| KindsError::Serialize { kind: kind.clone(), name, source })?;
    if let Some(map) = value.as_object_mut() {
        map.insert("apiVersion".into(), Value::String(T::api_version(&()).into_owned()));
        map.insert("kind".into(), Value::String(kind));
    }
    Ok(value)
}

#[cfg(test)]
mod tests;
