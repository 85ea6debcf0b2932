//! The storefront tier: Deployment, Service and PodDisruptionBudget per region.
//!
//! Contract: pure. Pods meet Pod Security `restricted`, spread across zones, roll one surge pod
//! at a time with none unavailable, and are probed on `spec.storefront.healthPath`. They find
//! the database through the shard map (mounted at [`SHARDMAP_MOUNT`], `MALL_SHARD*` variables)
//! and the cache through its connection Secret (`CACHE_*` variables).

use super::kinds::{self, config_map_volume, empty_dir, env, http_port, http_probe, mount, restricted_pod, spread};
use super::{Child, Scope};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{Container, EnvFromSource, SecretEnvSource};
use std::collections::BTreeMap;

/// Component name (label value and name suffix).
pub const COMPONENT: &str = "storefront";
/// Where the shard map ConfigMap is mounted in storefront pods.
pub const SHARDMAP_MOUNT: &str = "/etc/mall/shardmap";
/// UID the storefront runs as.
pub const UID: i64 = 10001;

/// The storefront's children in `scope`: its Deployment, Service (port 80 to the container's
/// `http` port) and PodDisruptionBudget (one pod voluntarily down at a time).
pub fn build(scope: &Scope<'_>) -> Vec<Child> {
    vec![
        deployment(scope).into(),
        kinds::http_service(scope, COMPONENT).into(),
        kinds::pod_disruption_budget(scope, COMPONENT).into(),
    ]
}

/// Replicas the Deployment is created with (the autoscaler owns the field afterwards: the
/// Deployment of the autoscaled scope carries [`super::names::AUTOSCALED_ANNOTATION`]).
pub fn initial_replicas(scope: &Scope<'_>) -> i32 {
    let spec = &scope.mall.spec;
    scope.capacity(match &spec.autoscaling {
        Some(a) => spec.storefront.replicas.clamp(a.storefront.min, a.storefront.max),
        None => spec.storefront.replicas,
    })
}

/// The storefront Deployment.
pub fn deployment(scope: &Scope<'_>) -> Deployment {
    let sf = &scope.mall.spec.storefront;
    let selector = scope.selector(COMPONENT);
    let mut variables = vec![
        env("MALL_NAME", scope.mall_name()),
        env("PORT", sf.port.to_string()),
        // The shard map: how to route a key to its shard and where each shard is (docs/sharding.md).
        env("MALL_SHARDMAP", format!("{SHARDMAP_MOUNT}/shards.json")),
        env("MALL_SHARD_HASH", super::database::shard::RULE),
        env("MALL_SHARDS", scope.mall.spec.database.shards.to_string()),
    ];
    if let Some(region) = scope.region {
        variables.push(env("MALL_REGION", region));
    }
    variables.extend(sf.env.iter().cloned());
    // The cache connection (CACHE_ADDRESS, CACHE_USER, CACHE_PASSWORD, CACHE_URL, CACHE_MODE).
    let mut env_from = Vec::new();
    if scope.mall.spec.cache.is_some() {
        env_from.push(EnvFromSource {
            secret_ref: Some(SecretEnvSource { name: super::cache::secret_name(scope), optional: Some(false) }),
            ..EnvFromSource::default()
        });
    }
    env_from.extend(sf.env_from.iter().cloned());
    let container = Container {
        name: COMPONENT.into(),
        image: Some(sf.image.clone()),
        ports: Some(vec![http_port(sf.port)]),
        env: Some(variables),
        env_from: (!env_from.is_empty()).then_some(env_from),
        readiness_probe: Some(http_probe(&sf.health_path, 5, 3)),
        liveness_probe: Some(http_probe(&sf.health_path, 10, 6)),
        startup_probe: Some(http_probe(&sf.health_path, 2, 60)),
        resources: Some(kinds::resources(&sf.resources)),
        volume_mounts: Some(vec![mount("tmp", "/tmp")]),
        ..Container::default()
    };
    let topology = &sf.topology_spread;
    let pod = restricted_pod(
        UID,
        container,
        vec![spread(topology.max_skew, &topology.topology_key, &serde_plain(&topology.when_unsatisfiable), &selector)],
        vec![empty_dir("tmp", None), config_map_volume("shardmap", super::database::shard_map_name(scope), None)],
    );
    let mut metadata = scope.meta(scope.name(COMPONENT), COMPONENT);
    if scope.autoscaled() {
        super::names::mark_autoscaled(&mut metadata, "spec.replicas");
    }
    let template = kinds::pod_template(scope.labels(COMPONENT), BTreeMap::new(), pod);
    kinds::deployment(metadata, initial_replicas(scope), selector, template)
}

/// The serde name of a unit enum variant (`ScheduleAnyway`).
fn serde_plain<T: serde::Serialize>(v: &T) -> String {
    serde_json::to_value(v).ok().and_then(|v| v.as_str().map(str::to_string)).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::mall_from;
    use serde_json::json;

    #[test]
    fn deployment_follows_spec_and_is_restricted() {
        let mall = mall_from(json!({"storefront": {"image": "shop:2", "port": 9000, "healthPath": "/ready",
            "resources": {"requests": {"cpu": "250m"}}}}));
        let scope = &Scope::all(&mall)[0];
        let d = deployment(scope);
        let spec = d.spec.unwrap();
        assert_eq!(spec.replicas, Some(2));
        let pod = spec.template.spec.unwrap();
        let c = &pod.containers[0];
        assert_eq!(c.image.as_deref(), Some("shop:2"));
        assert_eq!(c.ports.as_ref().unwrap()[0].container_port, 9000);
        assert_eq!(c.readiness_probe.as_ref().unwrap().http_get.as_ref().unwrap().path.as_deref(), Some("/ready"));
        assert_eq!(c.resources.as_ref().unwrap().requests.as_ref().unwrap()["cpu"].0, "250m");
        let sc = c.security_context.as_ref().unwrap();
        assert_eq!(sc.allow_privilege_escalation, Some(false));
        assert_eq!(sc.capabilities.as_ref().unwrap().drop.as_ref().unwrap(), &["ALL"]);
        assert_eq!(pod.security_context.unwrap().run_as_non_root, Some(true));
        assert_eq!(pod.topology_spread_constraints.as_ref().unwrap()[0].when_unsatisfiable, "ScheduleAnyway");
        let env: Vec<_> = c.env.as_ref().unwrap().iter().map(|e| e.name.as_str()).collect();
        assert!(env.contains(&"MALL_SHARDMAP") && env.contains(&"MALL_SHARDS"), "{env:?}");
        assert!(c.env_from.is_none(), "no cache, no cache Secret");
        let volumes = pod.volumes.unwrap();
        assert_eq!(volumes[1].config_map.as_ref().unwrap().name, "shop-shardmap");
    }

    #[test]
    fn cache_connection_is_wired_when_there_is_a_cache() {
        let mall = mall_from(json!({"cache": {}}));
        let d = deployment(&Scope::all(&mall)[0]);
        let pod = d.spec.unwrap().template.spec.unwrap();
        let env_from = pod.containers[0].env_from.clone().unwrap();
        assert_eq!(env_from[0].secret_ref.as_ref().unwrap().name, "shop-cache-connection");
    }

    #[test]
    fn autoscaling_bounds_initial_replicas() {
        let mall = mall_from(json!({"storefront": {"image": "x", "replicas": 1},
            "autoscaling": {"prometheus": {"url": "http://p:9090"}, "storefront": {"min": 3, "max": 9, "targetPerReplica": 50}}}));
        assert_eq!(initial_replicas(&Scope::all(&mall)[0]), 3);
        let annotations = deployment(&Scope::all(&mall)[0]).metadata.annotations.unwrap();
        assert_eq!(annotations[crate::build::names::AUTOSCALED_ANNOTATION], "spec.replicas");
        let plain = mall_from(json!({"storefront": {"image": "x"}}));
        assert_eq!(deployment(&Scope::all(&plain)[0]).metadata.annotations, None);
    }
}
