//! NetworkPolicy pieces: default-deny ingress policies with explicit openings.
//!
//! Contract: pure. [`ingress_policy`] restricts ingress only (`policyTypes: [Ingress]`), so the
//! selected pods accept nothing but what its rules admit; egress stays open.

use k8s_openapi::api::networking::v1::{
    NetworkPolicy, NetworkPolicyIngressRule, NetworkPolicyPeer, NetworkPolicyPort, NetworkPolicySpec,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

/// A TCP port by number.
pub fn tcp(port: i32) -> NetworkPolicyPort {
    NetworkPolicyPort {
        port: Some(IntOrString::Int(port)),
        protocol: Some("TCP".into()),
        ..NetworkPolicyPort::default()
    }
}

/// The pods `selector` selects, in the policy's own namespace.
pub fn pods(selector: LabelSelector) -> NetworkPolicyPeer {
    NetworkPolicyPeer { pod_selector: Some(selector), ..NetworkPolicyPeer::default() }
}

/// Admits `from` on the TCP `ports`.
pub fn allow(from: NetworkPolicyPeer, ports: &[i32]) -> NetworkPolicyIngressRule {
    NetworkPolicyIngressRule { from: Some(vec![from]), ports: Some(ports.iter().copied().map(tcp).collect()) }
}

/// Ingress to the pods `pod_selector` selects: denied but for `rules`.
pub fn ingress_policy(
    metadata: ObjectMeta,
    pod_selector: LabelSelector,
    rules: Vec<NetworkPolicyIngressRule>,
) -> NetworkPolicy {
    NetworkPolicy {
        metadata,
        spec: Some(NetworkPolicySpec {
            pod_selector: Some(pod_selector),
            policy_types: Some(vec!["Ingress".into()]),
            ingress: Some(rules),
            ..NetworkPolicySpec::default()
        }),
    }
}
