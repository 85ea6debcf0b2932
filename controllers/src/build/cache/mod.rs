//! The cache tier: a Valkey/Redis cluster in the engine's own cluster mode (16384 hash slots
//! over `shards` primaries, `replicasPerShard` replicas each, automatic failover by the nodes).
//!
//! Contract: pure. [`build`] turns a validated `spec.cache` into, per region: the ConfigMap
//! (`cache.conf`, `cluster.sh`, `shards`), the connection Secret, a headless and a client
//! Service, one StatefulSet per shard (`<prefix>-cache-<shard>`, pod 0 is the shard's first
//! primary), one PodDisruptionBudget and a NetworkPolicy admitting only the storefront (and the
//! nodes themselves). The pods form, grow and repair the cluster by themselves with `cluster.sh`
//! over the StatefulSets' stable DNS names; the operator never connects to a cache pod.
//!
//! Password: builders take no randomness. The caller passes [`CacheSecrets`]: the apply step
//! reuses the password of the existing `<prefix>-cache-connection` Secret, or fills 32 bytes
//! from its RNG once ([`CacheSecrets::from_random_bytes`]) and creates the Secret, never
//! overwriting it. `mallctl render` passes [`CacheSecrets::placeholder`]; that Secret carries
//! the annotation [`PASSWORD_ANNOTATION`]` = placeholder` and must never be applied.

mod config;
mod statefulset;

pub use config::{CLUSTER_SCRIPT, NODE_TIMEOUT_MS, cache_conf, eviction_policy, quantity_bytes};
pub use statefulset::{initial_replicas, statefulset};

use super::{Child, Scope, kinds, storefront};
use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::{ConfigMap, Secret, Service, ServicePort};
use k8s_openapi::api::networking::v1::NetworkPolicy;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use mall_crds::CacheSpec;
use std::collections::BTreeMap;

/// Component name (label value and name suffix).
pub const COMPONENT: &str = "cache";
/// Client port of every node.
pub const PORT: i32 = 6379;
/// Cluster bus port of every node (client port + 10000).
pub const BUS_PORT: i32 = 16379;
/// UID of the official Valkey and Redis images' user.
pub const UID: i64 = 999;
/// The ACL user clients and replicas authenticate as (the default user can do nothing).
pub const USER: &str = "mall";
/// Value of the password in rendered output, before apply generates the real one.
pub const PLACEHOLDER: &str = "<generated-at-apply>";
/// Annotation on the connection Secret: `generated` (create once, never overwrite) or
/// `placeholder` (render output, never apply).
pub const PASSWORD_ANNOTATION: &str = "mallctl.io/password";
/// Shortest accepted password (a 32-byte secret in hex is 64).
pub const MIN_PASSWORD_LEN: usize = 43;

/// Why the cache tier could not be built.
#[derive(Debug, thiserror::Error)]
pub enum CacheError {
    /// A quantity the validator accepted did not convert (a bug, reported rather than panicking).
    #[error("spec.cache.{field} {value:?} is not a quantity")]
    Quantity {
        /// Field.
        field: &'static str,
        /// Its value.
        value: String,
    },
    /// The password handed in is too short or not URL-safe.
    #[error("cache password must be at least {MIN_PASSWORD_LEN} URL-safe characters ([A-Za-z0-9_-])")]
    WeakPassword,
}

/// The generated credentials of a cache cluster (see the module header for who generates them).
#[derive(Clone, PartialEq, Eq)]
pub struct CacheSecrets {
    password: String,
    placeholder: bool,
}

impl std::fmt::Debug for CacheSecrets {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CacheSecrets").field("placeholder", &self.placeholder).finish_non_exhaustive()
    }
}

impl CacheSecrets {
    /// A password read back from the existing Secret (checked, never logged).
    pub fn new(password: impl Into<String>) -> Result<Self, CacheError> {
        let password = password.into();
        let url_safe = password.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
        if password.len() < MIN_PASSWORD_LEN || !url_safe {
            return Err(CacheError::WeakPassword);
        }
        Ok(Self { password, placeholder: false })
    }

    /// A new password: 32 random bytes from the caller's RNG, hex-encoded (64 characters).
    pub fn from_random_bytes(bytes: &[u8; 32]) -> Self {
        let password = bytes.iter().map(|b| format!("{b:02x}")).collect();
        Self { password, placeholder: false }
    }

    /// The marked stand-in used by `mallctl render`.
    pub fn placeholder() -> Self {
        Self { password: PLACEHOLDER.into(), placeholder: true }
    }

    /// The password.
    pub fn password(&self) -> &str {
        &self.password
    }
}

/// Names of the cache objects in a scope.
pub fn config_name(scope: &Scope<'_>) -> String {
    scope.name(COMPONENT)
}
/// The connection Secret (`CACHE_*` keys) the storefront reads with `envFrom`.
pub fn secret_name(scope: &Scope<'_>) -> String {
    scope.name("cache-connection")
}
/// The headless Service giving every node a stable DNS name.
pub fn headless_name(scope: &Scope<'_>) -> String {
    scope.name("cache-headless")
}
/// The StatefulSet of one shard.
pub fn shard_name(scope: &Scope<'_>, shard: i32) -> String {
    format!("{}-{shard}", scope.name(COMPONENT))
}

/// The cache tier's children in `scope` (none without `spec.cache`).
pub fn build(scope: &Scope<'_>, secrets: &CacheSecrets) -> Result<Vec<Child>, CacheError> {
    let Some(spec) = &scope.mall.spec.cache else { return Ok(Vec::new()) };
    let mut out: Vec<Child> = vec![
        config_map(scope, spec)?.into(),
        connection_secret(scope, secrets).into(),
        headless_service(scope).into(),
        client_service(scope).into(),
    ];
    for shard in 0..spec.shards {
        out.push(statefulset(scope, spec, shard).into());
    }
    out.push(kinds::pod_disruption_budget(scope, COMPONENT).into());
    out.push(network_policy(scope).into());
    Ok(out)
}

/// `cache.conf`, `cluster.sh` and `shards` (the initial shard count the bootstrap uses).
pub fn config_map(scope: &Scope<'_>, spec: &CacheSpec) -> Result<ConfigMap, CacheError> {
    Ok(ConfigMap {
        metadata: scope.meta(config_name(scope), COMPONENT),
        data: Some(BTreeMap::from([
            ("cache.conf".to_string(), cache_conf(spec)?),
            ("cluster.sh".to_string(), CLUSTER_SCRIPT.to_string()),
            ("shards".to_string(), format!("{}\n", spec.shards)),
        ])),
        ..ConfigMap::default()
    })
}

/// The client address: the client Service, a seed for cluster-aware clients.
pub fn client_address(scope: &Scope<'_>) -> String {
    match scope.namespace() {
        Some(ns) => format!("{}.{ns}.svc:{PORT}", scope.name(COMPONENT)),
        None => format!("{}:{PORT}", scope.name(COMPONENT)),
    }
}

/// The connection Secret: the nodes read `CACHE_PASSWORD`, the storefront all keys.
pub fn connection_secret(scope: &Scope<'_>, secrets: &CacheSecrets) -> Secret {
    let mut meta = scope.meta(secret_name(scope), COMPONENT);
    let mark = if secrets.placeholder { "placeholder" } else { "generated" };
    meta.annotations = Some(BTreeMap::from([(PASSWORD_ANNOTATION.to_string(), mark.to_string())]));
    let address = client_address(scope);
    Secret {
        metadata: meta,
        type_: Some("Opaque".into()),
        // `data`, not the write-only `stringData`, so server-side apply compares like with like.
        data: Some(BTreeMap::from([
            ("CACHE_MODE".to_string(), ByteString("cluster".into())),
            ("CACHE_ADDRESS".to_string(), ByteString(address.clone().into_bytes())),
            ("CACHE_USER".to_string(), ByteString(USER.into())),
            ("CACHE_PASSWORD".to_string(), ByteString(secrets.password.clone().into_bytes())),
            (
                "CACHE_URL".to_string(),
                ByteString(format!("redis://{USER}:{}@{address}", secrets.password).into_bytes()),
            ),
        ])),
        ..Secret::default()
    }
}

fn port(name: &str, port: i32) -> ServicePort {
    kinds::service_port(name, port, IntOrString::Int(port))
}

/// Headless Service: stable per-pod DNS names, published before readiness so nodes can meet.
pub fn headless_service(scope: &Scope<'_>) -> Service {
    let mut service =
        kinds::service(scope, headless_name(scope), COMPONENT, vec![port("redis", PORT), port("bus", BUS_PORT)]);
    if let Some(spec) = service.spec.as_mut() {
        spec.cluster_ip = Some("None".into());
        spec.publish_not_ready_addresses = Some(true);
    }
    service
}

/// Client Service: the seed address in the connection Secret.
pub fn client_service(scope: &Scope<'_>) -> Service {
    kinds::service(scope, scope.name(COMPONENT), COMPONENT, vec![port("redis", PORT)])
}

/// Ingress to cache pods: the storefront on the client port; other nodes on both ports.
pub fn network_policy(scope: &Scope<'_>) -> NetworkPolicy {
    let peer = |component: &str| kinds::pods(kinds::match_labels(scope.selector(component)));
    kinds::ingress_policy(
        scope.meta(scope.name(COMPONENT), COMPONENT),
        kinds::match_labels(scope.selector(COMPONENT)),
        vec![kinds::allow(peer(storefront::COMPONENT), &[PORT]), kinds::allow(peer(COMPONENT), &[PORT, BUS_PORT])],
    )
}

#[cfg(test)]
mod tests;
