//! The edge tier (in-cluster CDN), per region: Varnish in front of the storefront.
//!
//! Contract: pure. [`build`] turns a validated `spec.cdn` into a ConfigMap holding the generated
//! VCL ([`vcl::vcl`], backend = the storefront Service's DNS name, port 80), a Deployment of
//! Varnish pods (Pod Security `restricted`, spread across zones), its Service (port 80), a
//! PodDisruptionBudget and a Gateway API `HTTPRoute` (`gateway.networking.k8s.io/v1`, the
//! kopium type [`crate::gateway::HttpRoute`]) attaching the domains to `spec.cdn.gateway`; the
//! TLS Secret is noted on the route (annotation [`TLS_ANNOTATION`]) since the Gateway listener
//! that terminates TLS is the user's. Service and PodDisruptionBudget come from `build::kinds`.
//!
//! Purge on rollout: with `purgeOnRollout`, the pod template carries [`IMAGE_HASH_ANNOTATION`],
//! a hash of the storefront image. A new storefront image changes it, so the edge pods roll and
//! start with empty caches (Varnish `malloc` storage does not survive a restart): nothing cached
//! from the old storefront is served by a new pod. No Job, no connection from the operator.

pub mod vcl;

use super::kinds::{self, config_map_volume, empty_dir, http_port, http_probe, mount, restricted_pod, spread};
use super::{Child, Scope, storefront};
use crate::gateway::HttpRoute;
use crate::gateway::httproute::{
    HttpRouteParentRefs, HttpRouteRules, HttpRouteRulesBackendRefs, HttpRouteRulesMatches, HttpRouteRulesMatchesPath,
    HttpRouteRulesMatchesPathType, HttpRouteSpec,
};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{ConfigMap, Container};
use mall_crds::CdnSpec;
use std::collections::BTreeMap;
pub use vcl::{Backend, HEALTH_PATH, VclError};

/// Component name (label value and name suffix).
pub const COMPONENT: &str = "edge";
/// Port Varnish listens on in the pod (unprivileged).
pub const HTTP_PORT: i32 = 8080;
/// UID of the official Varnish image's user.
pub const UID: i64 = 1000;
/// Varnish image.
pub const IMAGE: &str = "varnish:7.6";
/// Pod-template annotation: hash of the storefront image (rolls the edge when it changes).
pub const IMAGE_HASH_ANNOTATION: &str = "mallctl.io/storefront-image-hash";
/// HTTPRoute annotation naming the TLS Secret the Gateway listener should use.
pub const TLS_ANNOTATION: &str = "mallctl.io/tls-secret";

/// Why the edge tier could not be built.
#[derive(Debug, thiserror::Error)]
pub enum EdgeError {
    /// The VCL could not be generated.
    #[error("generating the edge VCL")]
    Vcl(#[source] VclError),
}

/// The storefront as the edge reaches it: `<prefix>-storefront.<ns>.svc:80`.
pub fn storefront_backend(scope: &Scope<'_>) -> Backend {
    let service = scope.name(storefront::COMPONENT);
    let host = match scope.namespace() {
        Some(ns) => format!("{service}.{ns}.svc"),
        None => service,
    };
    Backend { host, port: 80, health_path: scope.mall.spec.storefront.health_path.clone() }
}

/// The edge tier's children in `scope` (none without `spec.cdn`).
pub fn build(scope: &Scope<'_>) -> Result<Vec<Child>, EdgeError> {
    let Some(cdn) = &scope.mall.spec.cdn else { return Ok(Vec::new()) };
    let vcl = vcl::vcl(cdn, &storefront_backend(scope)).map_err(EdgeError::Vcl)?;
    Ok(vec![
        config_map(scope, vcl).into(),
        deployment(scope, cdn).into(),
        kinds::http_service(scope, COMPONENT).into(),
        kinds::pod_disruption_budget(scope, COMPONENT).into(),
        http_route(scope, cdn).into(),
    ])
}

/// The ConfigMap holding `default.vcl`.
pub fn config_map(scope: &Scope<'_>, vcl: String) -> ConfigMap {
    ConfigMap {
        metadata: scope.meta(scope.name(COMPONENT), COMPONENT),
        data: Some(BTreeMap::from([("default.vcl".to_string(), vcl)])),
        ..ConfigMap::default()
    }
}

/// FNV-1a 64 of `text` in hex: a stable, dependency-free fingerprint (not a security hash).
pub fn fingerprint(text: &str) -> String {
    let hash = text.bytes().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3));
    format!("{hash:016x}")
}

/// The Varnish Deployment.
pub fn deployment(scope: &Scope<'_>, cdn: &CdnSpec) -> Deployment {
    let selector = scope.selector(COMPONENT);
    let mut annotations = BTreeMap::new();
    if cdn.purge_on_rollout {
        annotations.insert(IMAGE_HASH_ANNOTATION.to_string(), fingerprint(&scope.mall.spec.storefront.image));
    }
    let container = Container {
        name: COMPONENT.into(),
        image: Some(IMAGE.into()),
        command: Some(
            ["varnishd", "-F", "-f", "/etc/varnish/default.vcl", "-a", "http=:8080,HTTP", "-s"]
                .iter()
                .map(|s| s.to_string())
                .chain([format!("malloc,{}", varnish_size(&cdn.cache_size))])
                .chain(
                    ["-n", "/var/lib/varnish/edge", "-T", "none", "-p", "feature=+http2"].iter().map(|s| s.to_string()),
                )
                .collect(),
        ),
        ports: Some(vec![http_port(HTTP_PORT)]),
        readiness_probe: Some(http_probe(HEALTH_PATH, 5, 2)),
        liveness_probe: Some(http_probe(HEALTH_PATH, 5, 6)),
        volume_mounts: Some(vec![
            mount("vcl", "/etc/varnish"),
            mount("work", "/var/lib/varnish"),
            mount("tmp", "/tmp"),
        ]),
        ..Container::default()
    };
    let pod = restricted_pod(
        UID,
        container,
        vec![spread(1, "topology.kubernetes.io/zone", "ScheduleAnyway", &selector)],
        vec![
            config_map_volume("vcl", scope.name(COMPONENT), Some(0o444)),
            empty_dir("work", Some("Memory")),
            empty_dir("tmp", None),
        ],
    );
    let template = kinds::pod_template(scope.labels(COMPONENT), annotations, pod);
    kinds::deployment(scope.meta(scope.name(COMPONENT), COMPONENT), scope.capacity(cdn.replicas), selector, template)
}

/// A Kubernetes quantity as a Varnish size (`512Mi` → `512M`, binary units; `k`/`M`/`G` → bytes).
pub fn varnish_size(quantity: &str) -> String {
    match crate::build::cache::quantity_bytes(quantity) {
        Some(bytes) if bytes % (1 << 20) == 0 => format!("{}M", bytes >> 20),
        Some(bytes) => format!("{bytes}"),
        None => "256M".into(),
    }
}

/// The HTTPRoute: the domains, attached to `spec.cdn.gateway`, all paths to the edge Service.
pub fn http_route(scope: &Scope<'_>, cdn: &CdnSpec) -> HttpRoute {
    let mut metadata = scope.meta(scope.name(COMPONENT), COMPONENT);
    if let Some(tls) = &cdn.tls_secret_name {
        metadata.annotations = Some(BTreeMap::from([(TLS_ANNOTATION.to_string(), tls.clone())]));
    }
    let everything = HttpRouteRulesMatches {
        path: Some(HttpRouteRulesMatchesPath {
            r#type: Some(HttpRouteRulesMatchesPathType::PathPrefix),
            value: Some("/".into()),
        }),
        ..HttpRouteRulesMatches::default()
    };
    let edge_service = HttpRouteRulesBackendRefs {
        group: Some(String::new()),
        kind: Some("Service".into()),
        name: scope.name(COMPONENT),
        port: Some(80),
        ..HttpRouteRulesBackendRefs::default()
    };
    HttpRoute {
        metadata,
        spec: HttpRouteSpec {
            parent_refs: Some(vec![HttpRouteParentRefs {
                group: Some("gateway.networking.k8s.io".into()),
                kind: Some("Gateway".into()),
                name: cdn.gateway.name.clone(),
                namespace: cdn.gateway.namespace.clone(),
                section_name: cdn.gateway.section_name.clone(),
                ..HttpRouteParentRefs::default()
            }]),
            hostnames: Some(cdn.domains.clone()),
            rules: Some(vec![HttpRouteRules {
                matches: Some(vec![everything]),
                backend_refs: Some(vec![edge_service]),
                ..HttpRouteRules::default()
            }]),
        },
        status: None,
    }
}

#[cfg(test)]
mod tests;
