//! The storefront tier: Deployment, Service and PodDisruptionBudget per region.
//!
//! Contract: pure. Pods meet Pod Security `restricted`, spread across zones, roll one surge pod
//! at a time with none unavailable, and are probed on `spec.storefront.healthPath`. They find
//! the database through the shard map (mounted at [`SHARDMAP_MOUNT`], `MALL_SHARD*` variables)
//! and the cache through its connection Secret (`CACHE_*` variables).

use super::{BuildError, Scope, security, to_value};
use k8s_openapi::api::apps::v1::{Deployment, DeploymentSpec, DeploymentStrategy, RollingUpdateDeployment};
use k8s_openapi::api::core::v1::{
    ConfigMapVolumeSource, Container, ContainerPort, EmptyDirVolumeSource, EnvFromSource, EnvVar, HTTPGetAction,
    PodSpec, PodTemplateSpec, Probe, ResourceRequirements, SecretEnvSource, Service, ServicePort, ServiceSpec,
    TopologySpreadConstraint, Volume, VolumeMount,
};
use k8s_openapi::api::policy::v1::{PodDisruptionBudget, PodDisruptionBudgetSpec};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use mall_crds::common::{ResourceAmounts, Resources};
use serde_json::Value;
use std::collections::BTreeMap;

/// Component name (label value and name suffix).
pub const COMPONENT: &str = "storefront";
/// Where the shard map ConfigMap is mounted in storefront pods.
pub const SHARDMAP_MOUNT: &str = "/etc/mall/shardmap";
/// UID the storefront runs as.
pub const UID: i64 = 10001;

/// The storefront's children in `scope`.
pub fn build(scope: &Scope<'_>) -> Result<Vec<Value>, BuildError> {
    let name = scope.name(COMPONENT);
    Ok(vec![to_value(&deployment(scope), &name)?, to_value(&service(scope), &name)?, to_value(&pdb(scope), &name)?])
}

/// Replicas the Deployment is created with (the autoscaler owns the field afterwards: the
/// Deployment of the autoscaled scope carries [`super::names::AUTOSCALED_ANNOTATION`]).
pub fn initial_replicas(scope: &Scope<'_>) -> i32 {
    let spec = &scope.mall.spec;
    match &spec.autoscaling {
        Some(a) => spec.storefront.replicas.clamp(a.storefront.min, a.storefront.max),
        None => spec.storefront.replicas,
    }
}

/// The storefront Deployment.
pub fn deployment(scope: &Scope<'_>) -> Deployment {
    let sf = &scope.mall.spec.storefront;
    let selector = scope.selector(COMPONENT);
    let probe = |failure: i32, period: i32| Probe {
        http_get: Some(HTTPGetAction {
            path: Some(sf.health_path.clone()),
            port: IntOrString::String("http".into()),
            ..HTTPGetAction::default()
        }),
        period_seconds: Some(period),
        failure_threshold: Some(failure),
        timeout_seconds: Some(2),
        ..Probe::default()
    };
    let plain = |name: &str, value: String| EnvVar { name: name.into(), value: Some(value), ..EnvVar::default() };
    let mut env = vec![
        plain("MALL_NAME", scope.mall_name().into()),
        plain("PORT", sf.port.to_string()),
        // The shard map: how to route a key to its shard and where each shard is (docs/sharding.md).
        plain("MALL_SHARDMAP", format!("{SHARDMAP_MOUNT}/shards.json")),
        plain("MALL_SHARD_HASH", super::database::shard::RULE.into()),
        plain("MALL_SHARDS", scope.mall.spec.database.shards.to_string()),
    ];
    if let Some(region) = scope.region {
        env.push(plain("MALL_REGION", region.into()));
    }
    env.extend(sf.env.iter().cloned());
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
        ports: Some(vec![ContainerPort {
            name: Some("http".into()),
            container_port: sf.port,
            protocol: Some("TCP".into()),
            ..ContainerPort::default()
        }]),
        env: Some(env),
        env_from: (!env_from.is_empty()).then_some(env_from),
        readiness_probe: Some(probe(3, 5)),
        liveness_probe: Some(probe(6, 10)),
        startup_probe: Some(probe(60, 2)),
        resources: Some(resources(&sf.resources)),
        security_context: Some(security::container()),
        volume_mounts: Some(vec![VolumeMount {
            name: "tmp".into(),
            mount_path: "/tmp".into(),
            ..VolumeMount::default()
        }]),
        ..Container::default()
    };
    let mut metadata = scope.meta(scope.name(COMPONENT), COMPONENT);
    if scope.autoscaled() {
        super::names::mark_autoscaled(&mut metadata, "spec.replicas");
    }
    Deployment {
        metadata,
        spec: Some(DeploymentSpec {
            replicas: Some(initial_replicas(scope)),
            selector: LabelSelector { match_labels: Some(selector.clone()), ..LabelSelector::default() },
            strategy: Some(DeploymentStrategy {
                type_: Some("RollingUpdate".into()),
                rolling_update: Some(RollingUpdateDeployment {
                    max_surge: Some(IntOrString::String("25%".into())),
                    max_unavailable: Some(IntOrString::Int(0)),
                }),
            }),
            revision_history_limit: Some(5),
            template: PodTemplateSpec {
                metadata: Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta {
                    labels: Some(scope.labels(COMPONENT)),
                    ..Default::default()
                }),
                spec: Some(PodSpec {
                    containers: vec![container],
                    security_context: Some(security::pod(UID)),
                    automount_service_account_token: Some(false),
                    enable_service_links: Some(false),
                    termination_grace_period_seconds: Some(30),
                    topology_spread_constraints: Some(vec![TopologySpreadConstraint {
                        max_skew: sf.topology_spread.max_skew,
                        topology_key: sf.topology_spread.topology_key.clone(),
                        when_unsatisfiable: serde_plain(&sf.topology_spread.when_unsatisfiable),
                        label_selector: Some(LabelSelector { match_labels: Some(selector), ..Default::default() }),
                        ..TopologySpreadConstraint::default()
                    }]),
                    volumes: Some(vec![
                        Volume {
                            name: "tmp".into(),
                            empty_dir: Some(EmptyDirVolumeSource::default()),
                            ..Volume::default()
                        },
                        Volume {
                            name: "shardmap".into(),
                            config_map: Some(ConfigMapVolumeSource {
                                name: super::database::shard_map_name(scope),
                                ..ConfigMapVolumeSource::default()
                            }),
                            ..Volume::default()
                        },
                    ]),
                    ..PodSpec::default()
                }),
            },
            ..DeploymentSpec::default()
        }),
        ..Deployment::default()
    }
}

/// The storefront Service (port 80 → the container's `http` port).
pub fn service(scope: &Scope<'_>) -> Service {
    Service {
        metadata: scope.meta(scope.name(COMPONENT), COMPONENT),
        spec: Some(ServiceSpec {
            selector: Some(scope.selector(COMPONENT)),
            ports: Some(vec![ServicePort {
                name: Some("http".into()),
                port: 80,
                target_port: Some(IntOrString::String("http".into())),
                protocol: Some("TCP".into()),
                ..ServicePort::default()
            }]),
            ..ServiceSpec::default()
        }),
        ..Service::default()
    }
}

/// At most one storefront pod voluntarily down at a time.
pub fn pdb(scope: &Scope<'_>) -> PodDisruptionBudget {
    PodDisruptionBudget {
        metadata: scope.meta(scope.name(COMPONENT), COMPONENT),
        spec: Some(PodDisruptionBudgetSpec {
            max_unavailable: Some(IntOrString::Int(1)),
            selector: Some(LabelSelector { match_labels: Some(scope.selector(COMPONENT)), ..Default::default() }),
            ..PodDisruptionBudgetSpec::default()
        }),
        ..PodDisruptionBudget::default()
    }
}

/// The core/v1 form of the API's CPU/memory amounts.
pub fn resources(r: &Resources) -> ResourceRequirements {
    let list = |a: &Option<ResourceAmounts>| {
        a.as_ref().map(|a| {
            let mut m = BTreeMap::new();
            if let Some(cpu) = &a.cpu {
                m.insert("cpu".to_string(), Quantity(cpu.clone()));
            }
            if let Some(memory) = &a.memory {
                m.insert("memory".to_string(), Quantity(memory.clone()));
            }
            m
        })
    };
    ResourceRequirements { requests: list(&r.requests), limits: list(&r.limits), ..ResourceRequirements::default() }
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
