//! The pod and Deployment skeleton of every workload the operator builds.
//!
//! Contract: pure. [`restricted_pod`] meets Pod Security `restricted` (the security contexts of
//! `build::security` on the pod and on its one container), mounts no service-account token, sets
//! no service-link variables and grants 30 s to stop. [`deployment`] rolls out one 25 % surge at a
//! time with no pod unavailable and keeps 5 revisions. The rest are the small parts (ports,
//! probes, volumes, resources) tiers fill their containers with.

use crate::build::security;
use k8s_openapi::api::apps::v1::{Deployment, DeploymentSpec, DeploymentStrategy, RollingUpdateDeployment};
use k8s_openapi::api::core::v1::{
    ConfigMapVolumeSource, Container, ContainerPort, EmptyDirVolumeSource, EnvVar, HTTPGetAction, PodSpec,
    PodTemplateSpec, Probe, ResourceRequirements, TopologySpreadConstraint, Volume, VolumeMount,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use mall_crds::common::{ResourceAmounts, Resources};
use std::collections::BTreeMap;

/// The pod spec of `container` running as `uid` (see the module header), spread by `spread`,
/// with `volumes`. The container's security context is set here.
pub fn restricted_pod(
    uid: i64,
    mut container: Container,
    spread: Vec<TopologySpreadConstraint>,
    volumes: Vec<Volume>,
) -> PodSpec {
    container.security_context = Some(security::container());
    PodSpec {
        containers: vec![container],
        security_context: Some(security::pod(uid)),
        automount_service_account_token: Some(false),
        enable_service_links: Some(false),
        termination_grace_period_seconds: Some(30),
        topology_spread_constraints: Some(spread),
        volumes: Some(volumes),
        ..PodSpec::default()
    }
}

/// A pod template with `labels` and, when there are any, `annotations`.
pub fn pod_template(
    labels: BTreeMap<String, String>,
    annotations: BTreeMap<String, String>,
    spec: PodSpec,
) -> PodTemplateSpec {
    PodTemplateSpec {
        metadata: Some(ObjectMeta {
            labels: Some(labels),
            annotations: (!annotations.is_empty()).then_some(annotations),
            ..ObjectMeta::default()
        }),
        spec: Some(spec),
    }
}

/// A Deployment of `replicas` pods selected by `selector` (see the module header for the rollout).
pub fn deployment(
    metadata: ObjectMeta,
    replicas: i32,
    selector: BTreeMap<String, String>,
    template: PodTemplateSpec,
) -> Deployment {
    Deployment {
        metadata,
        spec: Some(DeploymentSpec {
            replicas: Some(replicas),
            selector: super::match_labels(selector),
            strategy: Some(DeploymentStrategy {
                type_: Some("RollingUpdate".into()),
                rolling_update: Some(RollingUpdateDeployment {
                    max_surge: Some(IntOrString::String("25%".into())),
                    max_unavailable: Some(IntOrString::Int(0)),
                }),
            }),
            revision_history_limit: Some(5),
            template,
            ..DeploymentSpec::default()
        }),
        ..Deployment::default()
    }
}

/// Spreads the pods `selector` selects over `key` domains, at most `max_skew` apart.
pub fn spread(
    max_skew: i32,
    key: &str,
    when_unsatisfiable: &str,
    selector: &BTreeMap<String, String>,
) -> TopologySpreadConstraint {
    TopologySpreadConstraint {
        max_skew,
        topology_key: key.into(),
        when_unsatisfiable: when_unsatisfiable.into(),
        label_selector: Some(super::match_labels(selector.clone())),
        ..TopologySpreadConstraint::default()
    }
}

/// The TCP container port named `http`.
pub fn http_port(port: i32) -> ContainerPort {
    ContainerPort {
        name: Some("http".into()),
        container_port: port,
        protocol: Some("TCP".into()),
        ..ContainerPort::default()
    }
}

/// GET `path` on the container port named `http` every `period` s, 2 s timeout, failing after
/// `failure` misses.
pub fn http_probe(path: &str, period: i32, failure: i32) -> Probe {
    Probe {
        http_get: Some(HTTPGetAction {
            path: Some(path.into()),
            port: IntOrString::String("http".into()),
            ..HTTPGetAction::default()
        }),
        period_seconds: Some(period),
        failure_threshold: Some(failure),
        timeout_seconds: Some(2),
        ..Probe::default()
    }
}

/// The variable `name` = `value`.
pub fn env(name: &str, value: impl Into<String>) -> EnvVar {
    EnvVar { name: name.into(), value: Some(value.into()), ..EnvVar::default() }
}

/// Mounts the volume `name` at `path`.
pub fn mount(name: &str, path: &str) -> VolumeMount {
    VolumeMount { name: name.into(), mount_path: path.into(), ..VolumeMount::default() }
}

/// An `emptyDir` volume, on `medium` when given (`Memory`).
pub fn empty_dir(name: &str, medium: Option<&str>) -> Volume {
    Volume {
        name: name.into(),
        empty_dir: Some(EmptyDirVolumeSource { medium: medium.map(str::to_string), ..EmptyDirVolumeSource::default() }),
        ..Volume::default()
    }
}

/// The ConfigMap `config_map` as the volume `name`, files in `default_mode` when given.
pub fn config_map_volume(name: &str, config_map: String, default_mode: Option<i32>) -> Volume {
    Volume {
        name: name.into(),
        config_map: Some(ConfigMapVolumeSource { name: config_map, default_mode, ..ConfigMapVolumeSource::default() }),
        ..Volume::default()
    }
}

/// The amounts the API sets, by resource name (`cpu`, `memory`).
pub fn amounts(a: &ResourceAmounts) -> BTreeMap<String, String> {
    [("cpu", &a.cpu), ("memory", &a.memory)]
        .into_iter()
        .filter_map(|(k, v)| v.as_ref().map(|v| (k.to_string(), v.clone())))
        .collect()
}

/// The core/v1 form of the API's CPU/memory amounts.
pub fn resources(r: &Resources) -> ResourceRequirements {
    let list = |a: &Option<ResourceAmounts>| {
        a.as_ref().map(|a| amounts(a).into_iter().map(|(k, v)| (k, Quantity(v))).collect::<BTreeMap<_, _>>())
    };
    ResourceRequirements { requests: list(&r.requests), limits: list(&r.limits), ..ResourceRequirements::default() }
}
