//! One StatefulSet per cache shard: pod 0 is the shard's first primary, the others replicate it.
//!
//! Contract: pure. Pods run `cluster.sh run` from the ConfigMap, meet Pod Security
//! `restricted`, spread across zones and hosts within their shard, hand their slots to a replica
//! before a planned stop (`preStop: cluster.sh prestop`) and are Ready only when the cluster is
//! `ok` and, for a replica, the link to its primary is up.

use super::{BUS_PORT, COMPONENT, PORT, UID, USER, config_name, headless_name, secret_name, shard_name};
use crate::build::Scope;
use crate::build::kinds::{self, env, mount};
use crate::build::names::{SHARD_LABEL, mark_autoscaled};
use k8s_openapi::api::apps::v1::{StatefulSet, StatefulSetSpec};
use k8s_openapi::api::core::v1::{
    Container, ContainerPort, EmptyDirVolumeSource, EnvVar, EnvVarSource, ExecAction, Lifecycle, LifecycleHandler,
    ObjectFieldSelector, PersistentVolumeClaim, PersistentVolumeClaimSpec, Probe, SecretKeySelector, TCPSocketAction,
    Volume, VolumeResourceRequirements,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use mall_crds::CacheSpec;
use mall_crds::cache::CacheEngine;
use std::collections::BTreeMap;

/// Image when `spec.cache.image` is absent.
pub fn default_image(engine: CacheEngine) -> &'static str {
    match engine {
        CacheEngine::Valkey => "valkey/valkey:8.1",
        CacheEngine::Redis => "redis:7.4",
    }
}

/// Replicas per shard the StatefulSets start with (the autoscaler owns them afterwards).
pub fn initial_replicas(scope: &Scope<'_>, spec: &CacheSpec) -> i32 {
    scope.capacity(match scope.mall.spec.autoscaling.as_ref().and_then(|a| a.cache.as_ref()) {
        Some(a) => spec.replicas_per_shard.clamp(a.min, a.max),
        None => spec.replicas_per_shard,
    })
}

fn field_env(name: &str, path: &str) -> EnvVar {
    EnvVar {
        name: name.into(),
        value_from: Some(EnvVarSource {
            field_ref: Some(ObjectFieldSelector { field_path: path.into(), ..ObjectFieldSelector::default() }),
            ..EnvVarSource::default()
        }),
        ..EnvVar::default()
    }
}

fn script(action: &str) -> ExecAction {
    ExecAction { command: Some(vec!["sh".into(), "/etc/cache/cluster.sh".into(), action.into()]) }
}

/// The StatefulSet of `shard`.
pub fn statefulset(scope: &Scope<'_>, spec: &CacheSpec, shard: i32) -> StatefulSet {
    let name = shard_name(scope, shard);
    let mut selector = scope.selector(COMPONENT);
    selector.insert(SHARD_LABEL.into(), shard.to_string());
    let mut labels = scope.labels(COMPONENT);
    labels.insert(SHARD_LABEL.into(), shard.to_string());
    let host_template =
        format!("{}-{{shard}}-{{ordinal}}.{}.$(POD_NAMESPACE).svc", scope.name(COMPONENT), headless_name(scope));
    let password = EnvVar {
        name: "CACHE_PASSWORD".into(),
        value_from: Some(EnvVarSource {
            secret_key_ref: Some(SecretKeySelector {
                name: secret_name(scope),
                key: "CACHE_PASSWORD".into(),
                optional: Some(false),
            }),
            ..EnvVarSource::default()
        }),
        ..EnvVar::default()
    };
    let container = Container {
        name: COMPONENT.into(),
        image: Some(spec.image.clone().unwrap_or_else(|| default_image(spec.engine).into())),
        command: Some(vec!["sh".into(), "/etc/cache/cluster.sh".into(), "run".into()]),
        env: Some(vec![
            field_env("POD_NAME", "metadata.name"),
            field_env("POD_NAMESPACE", "metadata.namespace"),
            env("SHARD", shard.to_string()),
            env("NODE_HOST_TEMPLATE", host_template),
            env("NODE_PORT", PORT.to_string()),
            env("CACHE_USER", USER),
            password,
            env("CONFIG_DIR", "/etc/cache"),
            env("DATA_DIR", "/data"),
            env("RUN_DIR", "/run/cache"),
        ]),
        ports: Some(vec![
            ContainerPort { name: Some("redis".into()), container_port: PORT, ..ContainerPort::default() },
            ContainerPort { name: Some("bus".into()), container_port: BUS_PORT, ..ContainerPort::default() },
        ]),
        readiness_probe: Some(Probe {
            exec: Some(script("probe")),
            period_seconds: Some(5),
            timeout_seconds: Some(8),
            failure_threshold: Some(2),
            ..Probe::default()
        }),
        liveness_probe: Some(Probe {
            tcp_socket: Some(TCPSocketAction { port: IntOrString::Int(PORT), ..TCPSocketAction::default() }),
            period_seconds: Some(10),
            failure_threshold: Some(6),
            ..Probe::default()
        }),
        lifecycle: Some(Lifecycle {
            pre_stop: Some(LifecycleHandler { exec: Some(script("prestop")), ..LifecycleHandler::default() }),
            ..Lifecycle::default()
        }),
        resources: Some(kinds::resources(&spec.resources)),
        volume_mounts: Some(vec![mount("config", "/etc/cache"), mount("data", "/data"), mount("run", "/run/cache")]),
        ..Container::default()
    };
    let spread = |key: &str| kinds::spread(1, key, "ScheduleAnyway", &selector);
    let mut volumes = vec![
        kinds::config_map_volume("config", config_name(scope), Some(0o444)),
        Volume {
            name: "run".into(),
            empty_dir: Some(EmptyDirVolumeSource {
                medium: Some("Memory".into()),
                size_limit: Some(Quantity("1Mi".into())),
            }),
            ..Volume::default()
        },
    ];
    let claims = if spec.persistence.enabled {
        Some(vec![PersistentVolumeClaim {
            metadata: ObjectMeta { name: Some("data".into()), labels: Some(labels.clone()), ..ObjectMeta::default() },
            spec: Some(PersistentVolumeClaimSpec {
                access_modes: Some(vec!["ReadWriteOnce".into()]),
                resources: Some(VolumeResourceRequirements {
                    requests: Some(BTreeMap::from([("storage".to_string(), Quantity(spec.persistence.size.clone()))])),
                    ..VolumeResourceRequirements::default()
                }),
                ..PersistentVolumeClaimSpec::default()
            }),
            ..PersistentVolumeClaim::default()
        }])
    } else {
        volumes.push(kinds::empty_dir("data", None));
        None
    };
    let mut metadata = scope.meta(name, COMPONENT);
    if scope.autoscaled() && scope.mall.spec.autoscaling.as_ref().is_some_and(|a| a.cache.is_some()) {
        mark_autoscaled(&mut metadata, "spec.replicas");
    }
    StatefulSet {
        metadata,
        spec: Some(StatefulSetSpec {
            replicas: Some(1 + initial_replicas(scope, spec)),
            service_name: Some(headless_name(scope)),
            pod_management_policy: Some("Parallel".into()),
            selector: kinds::match_labels(selector.clone()),
            template: kinds::pod_template(
                labels,
                BTreeMap::new(),
                kinds::restricted_pod(
                    UID,
                    container,
                    vec![spread("topology.kubernetes.io/zone"), spread("kubernetes.io/hostname")],
                    volumes,
                ),
            ),
            volume_claim_templates: claims,
            ..StatefulSetSpec::default()
        }),
        ..StatefulSet::default()
    }
}
