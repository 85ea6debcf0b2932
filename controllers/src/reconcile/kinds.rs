//! The kinds of children the operator manages, and which of them the cluster serves.
//!
//! Contract: [`MANAGED`] is the one list used to apply, observe and prune children, so a kind
//! the builders stop producing is still pruned. It lists the fields of `build::ChildSet` in
//! field order (a test compares it with `build::set::field_kinds`), so the typed set and the
//! pruned kinds cannot drift apart. Kinds from CRDs the operator composes but does
//! not install (CloudNativePG, its Barman Cloud Plugin, Gateway API, external-dns) may be
//! missing; [`Availability`] says which, from API discovery, cached for a short time so a
//! dependency installed later is picked up without a restart.

use kube::core::{ApiResource, GroupVersionKind};
use std::collections::BTreeSet;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// One kind of child.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Kind {
    /// API group ("" for core).
    pub group: &'static str,
    /// Version.
    pub version: &'static str,
    /// Kind.
    pub kind: &'static str,
    /// Plural resource name.
    pub plural: &'static str,
    /// The product that provides it when it is not built into Kubernetes.
    pub dependency: Option<&'static str>,
}

impl Kind {
    /// `group/version` (or `version` for core).
    pub fn api_version(&self) -> String {
        if self.group.is_empty() { self.version.to_string() } else { format!("{}/{}", self.group, self.version) }
    }

    /// The dynamic API resource of this kind.
    pub fn api_resource(&self) -> ApiResource {
        ApiResource::from_gvk_with_plural(&GroupVersionKind::gvk(self.group, self.version, self.kind), self.plural)
    }
}

const fn core(group: &'static str, version: &'static str, kind: &'static str, plural: &'static str) -> Kind {
    Kind { group, version, kind, plural, dependency: None }
}

const fn dep(
    group: &'static str,
    version: &'static str,
    kind: &'static str,
    plural: &'static str,
    dependency: &'static str,
) -> Kind {
    Kind { group, version, kind, plural, dependency: Some(dependency) }
}

/// Every kind the operator creates, in apply order (configuration before workloads).
pub const MANAGED: &[Kind] = &[
    core("", "v1", "Secret", "secrets"),
    core("", "v1", "ConfigMap", "configmaps"),
    core("", "v1", "Service", "services"),
    core("networking.k8s.io", "v1", "NetworkPolicy", "networkpolicies"),
    core("policy", "v1", "PodDisruptionBudget", "poddisruptionbudgets"),
    dep("barmancloud.cnpg.io", "v1", "ObjectStore", "objectstores", "Barman Cloud Plugin v0.15 (barmancloud.cnpg.io)"),
    dep("postgresql.cnpg.io", "v1", "Cluster", "clusters", "CloudNativePG v1.30 (postgresql.cnpg.io)"),
    dep("postgresql.cnpg.io", "v1", "Pooler", "poolers", "CloudNativePG v1.30 (postgresql.cnpg.io)"),
    dep("postgresql.cnpg.io", "v1", "ScheduledBackup", "scheduledbackups", "CloudNativePG v1.30 (postgresql.cnpg.io)"),
    core("apps", "v1", "StatefulSet", "statefulsets"),
    core("apps", "v1", "Deployment", "deployments"),
    core("batch", "v1", "Job", "jobs"),
    dep("gateway.networking.k8s.io", "v1", "HTTPRoute", "httproutes", "Gateway API v1.5 (gateway.networking.k8s.io)"),
    dep(
        "externaldns.k8s.io",
        "v1alpha1",
        "DNSEndpoint",
        "dnsendpoints",
        "external-dns v0.22 DNSEndpoint (externaldns.k8s.io)",
    ),
];

/// The managed kind of an object with this `apiVersion` and `kind`.
pub fn find(api_version: &str, kind: &str) -> Option<&'static Kind> {
    MANAGED.iter().find(|k| k.kind == kind && k.api_version() == api_version)
}

/// Served kinds, from discovery, refreshed at most every `ttl`.
pub struct Availability {
    ttl: Duration,
    cached: Mutex<Option<(Instant, BTreeSet<&'static str>)>>,
}

/// Why discovery failed.
#[derive(Debug, thiserror::Error)]
#[error("API discovery failed")]
pub struct DiscoveryError(#[source] pub kube::Error);

impl Availability {
    /// A cache refreshed at most every `ttl`.
    pub fn new(ttl: Duration) -> Self {
        Self { ttl, cached: Mutex::new(None) }
    }

    /// Plural names of the managed kinds the API server serves.
    pub async fn served(&self, client: &kube::Client) -> Result<BTreeSet<&'static str>, DiscoveryError> {
        if let Some((at, set)) = self.cached.lock().unwrap_or_else(std::sync::PoisonError::into_inner).as_ref()
            && at.elapsed() < self.ttl
        {
            return Ok(set.clone());
        }
        let mut served = BTreeSet::new();
        let groups: BTreeSet<(&str, &str)> = MANAGED.iter().map(|k| (k.group, k.version)).collect();
        for (group, version) in groups {
            let url = if group.is_empty() { format!("/api/{version}") } else { format!("/apis/{group}/{version}") };
            let request =
                http::Request::get(url).body(Vec::new()).map_err(|e| DiscoveryError(kube::Error::HttpError(e)))?;
            match client.request::<k8s_openapi::apimachinery::pkg::apis::meta::v1::APIResourceList>(request).await {
                Ok(list) => {
                    for kind in MANAGED.iter().filter(|k| k.group == group && k.version == version) {
                        if list.resources.iter().any(|r| r.name == kind.plural) {
                            served.insert(kind.plural);
                        }
                    }
                }
                Err(kube::Error::Api(status)) if status.code == 404 => {}
                Err(e) => return Err(DiscoveryError(e)),
            }
        }
        *self.cached.lock().unwrap_or_else(std::sync::PoisonError::into_inner) = Some((Instant::now(), served.clone()));
        Ok(served)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_kind_is_findable_and_plural_unique() {
        for k in MANAGED {
            assert_eq!(find(&k.api_version(), k.kind), Some(k));
        }
        let plurals: BTreeSet<_> = MANAGED.iter().map(|k| (k.group, k.plural)).collect();
        assert_eq!(plurals.len(), MANAGED.len());
        assert_eq!(find("apps/v1", "Deployment").unwrap().api_resource().plural, "deployments");
        assert!(find("v1", "Pod").is_none());
    }

    #[test]
    fn managed_lists_the_child_set_fields_in_order() {
        let managed: Vec<(String, String, String)> =
            MANAGED.iter().map(|k| (k.api_version(), k.kind.to_string(), k.plural.to_string())).collect();
        assert_eq!(managed, crate::build::set::field_kinds());
    }
}
