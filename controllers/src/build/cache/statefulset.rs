//! One StatefulSet per cache shard: pod 0 is the shard's first primary, the others replicate it.
//!
//! Contract: pure. Pods run `cluster.sh run` from the ConfigMap, meet Pod Security
//! `restricted`, spread across zones and hosts within their shard, hand their slots to a replica
//! before a planned stop (`preStop: cluster.sh prestop`) and are Ready only when the cluster is
//! `ok` and, for a replica, the link to its primary is up.

use super::{BUS_PORT, COMPONENT, PORT, UID, USER, config_name, headless_name, secret_name, shard_name};
use crate::build::names::{SHARD_LABEL, mark_autoscaled};
use crate::build::{Scope, security, storefront};
use k8s_openapi::api::apps::v1::{StatefulSet, StatefulSetSpec};
use k8s_openapi::api::core::v1::{
    ConfigMapVolumeSource, Container, ContainerPort, EmptyDirVolumeSource, EnvVar, EnvVarSource, ExecAction, Lifecycle,
    LifecycleHandler, ObjectFieldSelector, PersistentVolumeClaim, PersistentVolumeClaimSpec, PodSpec, PodTemplateSpec,
    Probe, SecretKeySelector, TCPSocketAction, TopologySpreadConstraint, Volume, VolumeMount,
    VolumeResourceRequirements,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta};
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
    match scope.mall.spec.autoscaling.as_ref().and_then(|a| a.cache.as_ref()) {
        Some(a) => spec.replicas_per_shard.clamp(a.min, a.max),
        None => spec.replicas_per_shard,
    }
}

fn env(name: &str, value: impl Into<String>) -> EnvVar {
    EnvVar { name: name.into(), value: Some(value.into()), ..EnvVar::default() }
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
    let mount =
        |name: &str, path: &str| VolumeMount { name: name.into(), mount_path: path.into(), ..VolumeMount::default() };
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
        resources: Some(storefront::resources(&spec.resources)),
        security_context: Some(security::container()),
        volume_mounts: Some(vec![mount("config", "/etc/cache"), mount("data", "/data"), mount("run", "/run/cache")]),
        ..Container::default()
    };
    let spread = |key: &str| TopologySpreadConstraint {
        max_skew: 1,
        topology_key: key.into(),
        when_unsatisfiable: "ScheduleAnyway".into(),
        label_selector: Some(LabelSelector { match_labels: Some(selector.clone()), ..Default::default() }),
        ..TopologySpreadConstraint::default()
    };
    let mut volumes = vec![
        Volume {
            name: "config".into(),
            config_map: Some(ConfigMapVolumeSource {
                name: config_name(scope),
                default_mode: Some(0o444),
                ..ConfigMapVolumeSource::default()
            }),
            ..Volume::default()
        },
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
        volumes.push(Volume {
            name: "data".into(),
            empty_dir: Some(EmptyDirVolumeSource::default()),
            ..Volume::default()
        });
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
            selector: LabelSelector { match_labels: Some(selector.clone()), ..LabelSelector::default() },
            template: PodTemplateSpec {
                metadata: Some(ObjectMeta { labels: Some(labels), ..ObjectMeta::default() }),
                spec: Some(PodSpec {
                    containers: vec![container],
                    security_context: Some(security::pod(UID)),
                    automount_service_account_token: Some(false),
                    enable_service_links: Some(false),
                    termination_grace_period_seconds: Some(30),
                    topology_spread_constraints: Some(vec![
                        spread("topology.kubernetes.io/zone"),
                        spread("kubernetes.io/hostname"),
                    ]),
                    volumes: Some(volumes),
                    ..PodSpec::default()
                }),
            },
            volume_claim_templates: claims,
            ..StatefulSetSpec::default()
        }),
        ..StatefulSet::default()
    }
}
