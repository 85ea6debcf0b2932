//! `spec.cdn`: the in-cluster edge cache tier (Varnish per region) and the caching policy it
//! emits as `Cache-Control`/`Surrogate-Control`, so an external CDN in front follows the same rules.
//!
//! Contract: API types only.

use crate::common::{DNS_LABEL_PATTERN, DNS_SUBDOMAIN_PATTERN, DURATION_PATTERN, QUANTITY_PATTERN};
use kube::KubeSchema;
use serde::{Deserialize, Serialize};

/// A hostname (a DNS subdomain, optionally with one leading wildcard label).
pub const HOSTNAME_PATTERN: &str = r"^(\*\.)?[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)+$";

/// The edge tier.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct CdnSpec {
    /// Hostnames served (the HTTPRoute's `hostnames`).
    #[schemars(length(min = 1, max = 16), inner(length(min = 1, max = 253), regex(pattern = HOSTNAME_PATTERN)))]
    #[x_kube(validation = kube::core::Rule::new("self.all(d, self.exists_one(e, e == d))").message("domains must be unique"))]
    pub domains: Vec<String>,
    /// `kubernetes.io/tls` Secret for the domains (referenced by the Gateway listener you own).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 253), regex(pattern = DNS_SUBDOMAIN_PATTERN))]
    pub tls_secret_name: Option<String>,
    /// The Gateway (Gateway API v1) the edge's HTTPRoute attaches to.
    pub gateway: ParentGateway,
    /// Edge pods per region.
    #[serde(default = "default_replicas")]
    #[schemars(range(min = 1, max = 100))]
    pub replicas: i32,
    /// Memory of each edge's object cache (Varnish `malloc` storage).
    #[serde(default = "default_cache_size")]
    #[schemars(length(min = 1, max = 32), regex(pattern = QUANTITY_PATTERN))]
    pub cache_size: String,
    /// Path rules, first match wins. Cart, checkout and account paths, and any request with a
    /// cookie session or `Authorization`, bypass the cache unless a rule says otherwise.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 64))]
    #[x_kube(validation = kube::core::Rule::new("self.all(r, self.exists_one(s, s.pathPrefix == r.pathPrefix))").message("each pathPrefix may appear once"))]
    pub rules: Vec<CacheRule>,
    /// TTL of paths no rule matches.
    #[serde(default = "default_ttl")]
    #[schemars(length(min = 2, max = 16), regex(pattern = DURATION_PATTERN))]
    pub default_ttl: String,
    /// How long stale objects may be served when the storefront fails (Varnish grace,
    /// `stale-if-error`).
    #[serde(default = "default_stale")]
    #[schemars(length(min = 2, max = 16), regex(pattern = DURATION_PATTERN))]
    pub stale_if_error: String,
    /// Ban every cached object when the storefront image changes.
    #[serde(default = "default_true")]
    pub purge_on_rollout: bool,
    /// Source networks (IPv4 CIDRs) allowed to send `PURGE` and `BAN` to the edge.
    #[serde(default = "default_purge_cidrs")]
    #[schemars(
        length(min = 1, max = 16),
        inner(length(min = 9, max = 43), regex(pattern = r"^[0-9]{1,3}(\.[0-9]{1,3}){3}/[0-9]{1,2}$"))
    )]
    #[x_kube(validation = kube::core::Rule::new("self.all(c, isCIDR(c))").message("must be IPv4 CIDRs (a.b.c.d/n)"))]
    pub purge_allowed_cidrs: Vec<String>,
    /// The caching headers the edge adds to responses.
    #[serde(default)]
    pub headers: CacheHeaders,
}

/// A Gateway API `parentRef` to a Gateway.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct ParentGateway {
    /// Gateway name.
    #[schemars(length(min = 1, max = 253), regex(pattern = DNS_SUBDOMAIN_PATTERN))]
    pub name: String,
    /// Gateway namespace; absent = the Mall's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 63), regex(pattern = DNS_LABEL_PATTERN))]
    pub namespace: Option<String>,
    /// Listener name on the Gateway.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 253), regex(pattern = DNS_SUBDOMAIN_PATTERN))]
    pub section_name: Option<String>,
}

/// One path rule: cache for `ttl`, or `bypass` the cache.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, KubeSchema)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = kube::core::Rule::new("has(self.ttl) != (has(self.bypass) && self.bypass)").message("set exactly one of ttl or bypass: true"))]
pub struct CacheRule {
    /// URL path prefix, starting with `/`.
    #[schemars(length(min = 1, max = 256), regex(pattern = r"^/[A-Za-z0-9._~!$&'()*+,;=:@%/\-]*$"))]
    pub path_prefix: String,
    /// Cache matching responses this long at the edge (and `s-maxage`/`Surrogate-Control`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 2, max = 16), regex(pattern = DURATION_PATTERN))]
    pub ttl: Option<String>,
    /// Never cache: always pass to the storefront.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bypass: Option<bool>,
}

/// Headers the edge emits.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct CacheHeaders {
    /// `max-age` browsers may cache cacheable responses for (`0s` = `no-cache` for browsers).
    #[serde(default = "default_browser_max_age")]
    #[schemars(length(min = 2, max = 16), regex(pattern = DURATION_PATTERN))]
    pub browser_max_age: String,
    /// Emit `Surrogate-Control: max-age=<ttl>, stale-if-error=<staleIfError>` for CDNs in front.
    #[serde(default = "default_true")]
    pub surrogate_control: bool,
}

impl Default for CacheHeaders {
    fn default() -> Self {
        Self { browser_max_age: default_browser_max_age(), surrogate_control: true }
    }
}

fn default_replicas() -> i32 {
    2
}
fn default_cache_size() -> String {
    "256Mi".into()
}
fn default_ttl() -> String {
    "60s".into()
}
fn default_stale() -> String {
    "6h".into()
}
fn default_true() -> bool {
    true
}
fn default_browser_max_age() -> String {
    "0s".into()
}
fn default_purge_cidrs() -> Vec<String> {
    vec!["127.0.0.1/32".into()]
}
