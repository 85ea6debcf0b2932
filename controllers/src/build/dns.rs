//! external-dns `DNSEndpoint`s (`externaldns.k8s.io/v1alpha1`): DNS records for external-dns to
//! publish, such as a region's domains pointing at its Gateway.
//!
//! Contract: pure. [`dns_endpoint`] makes one endpoint per domain, in the order given, each with
//! the same targets (order kept), record type and TTL; metadata is the caller's, as is
//! validating the names and targets.

use crate::externaldns::DnsEndpoint;
use crate::externaldns::dnsendpoint::{DnsEndpointEndpoints, DnsEndpointSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

/// The DNS record types the operator publishes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RecordType {
    /// IPv4 addresses.
    A,
    /// IPv6 addresses.
    Aaaa,
    /// An alias to another name (one target).
    Cname,
}

impl RecordType {
    /// The record type as external-dns spells it (`A`, `AAAA`, `CNAME`).
    pub fn as_str(self) -> &'static str {
        match self {
            RecordType::A => "A",
            RecordType::Aaaa => "AAAA",
            RecordType::Cname => "CNAME",
        }
    }
}

/// A `DNSEndpoint` with `metadata`: every one of `domains` as a `record_type` record to
/// `targets`, with a TTL of `ttl_seconds` (the provider's default when `None`).
pub fn dns_endpoint(
    metadata: ObjectMeta,
    domains: &[String],
    targets: &[String],
    record_type: RecordType,
    ttl_seconds: Option<u32>,
) -> DnsEndpoint {
    let endpoints = domains
        .iter()
        .map(|domain| DnsEndpointEndpoints {
            dns_name: Some(domain.clone()),
            targets: Some(targets.to_vec()),
            record_type: Some(record_type.as_str().into()),
            record_ttl: ttl_seconds.map(i64::from),
            ..DnsEndpointEndpoints::default()
        })
        .collect();
    DnsEndpoint { metadata, spec: DnsEndpointSpec { endpoints: Some(endpoints) }, status: None }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::build::kinds::resource_value;
    use serde_json::json;

    fn meta() -> ObjectMeta {
        ObjectMeta { name: Some("shop-east-dns".into()), namespace: Some("ns".into()), ..ObjectMeta::default() }
    }

    #[test]
    fn one_endpoint_per_domain_with_the_same_targets() {
        let domains = ["shop.example.com".to_string(), "www.shop.example.com".to_string()];
        let targets = ["203.0.113.7".to_string(), "203.0.113.8".to_string()];
        let value = resource_value(&dns_endpoint(meta(), &domains, &targets, RecordType::A, Some(30))).unwrap();
        assert_eq!(value["apiVersion"], "externaldns.k8s.io/v1alpha1");
        assert_eq!(value["kind"], "DNSEndpoint");
        assert_eq!(value["metadata"]["name"], "shop-east-dns");
        assert_eq!(
            value["spec"],
            json!({"endpoints": [
                {"dnsName": "shop.example.com", "recordType": "A", "recordTTL": 30,
                    "targets": ["203.0.113.7", "203.0.113.8"]},
                {"dnsName": "www.shop.example.com", "recordType": "A", "recordTTL": 30,
                    "targets": ["203.0.113.7", "203.0.113.8"]},
            ]})
        );
        assert!(value.get("status").is_none());
    }

    #[test]
    fn ttl_is_left_to_the_provider_when_absent_and_types_are_spelled_as_external_dns_does() {
        let domains = ["shop.example.com".to_string()];
        let endpoint = dns_endpoint(meta(), &domains, &["lb.example.net".to_string()], RecordType::Cname, None);
        let first = &endpoint.spec.endpoints.as_ref().unwrap()[0];
        assert_eq!((first.record_type.as_deref(), first.record_ttl), (Some("CNAME"), None));
        assert_eq!(RecordType::Aaaa.as_str(), "AAAA");
        let empty = dns_endpoint(meta(), &[], &[], RecordType::A, None);
        assert_eq!(empty.spec.endpoints, Some(Vec::new()));
    }
}
