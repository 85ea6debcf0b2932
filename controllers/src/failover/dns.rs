//! Traffic: the hub's external-dns `DNSEndpoint` for `spec.cdn.domains`.
//!
//! Contract: [`endpoint`] is pure: `<mall>-dns` in the Mall's namespace, owned by the Mall,
//! labelled `app.kubernetes.io/managed-by: mall-failover` (so the reconciler never prunes it),
//! with `spec.failover.dnsTTLSeconds` as TTL. `dnsMode: active`: every domain points at the
//! active region's Gateway addresses (A, or AAAA for IPv6 addresses). `dnsMode: weighted`: per
//! domain one record set per region that is Healthy or active and has addresses, with
//! `setIdentifier` = region and the provider-specific `weight` = `regions[].weight` (external-dns
//! honours it on providers with weighted routing, such as AWS Route 53). `None` when the Mall has
//! no CDN domains or no address is known yet (nothing is published rather than an empty record).
//! [`publish`] server-side applies it on the hub as [`super::FIELD_MANAGER`].

use crate::build::dns::{RecordType, dns_endpoint};
use crate::build::names::{MALL_LABEL, owner_reference};
use crate::externaldns::DnsEndpoint;
use crate::externaldns::dnsendpoint::DnsEndpointEndpointsProviderSpecific;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::{Api, Patch, PatchParams};
use mall_crds::Mall;
use mall_crds::regions::DnsMode;
use std::collections::{BTreeMap, BTreeSet};

/// The regions' Gateway addresses and which may take traffic.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Addresses {
    /// Region name → its Gateway's addresses (as last probed).
    pub by_region: BTreeMap<String, Vec<String>>,
    /// Regions that may take traffic in weighted mode (Healthy, or the active one).
    pub serving: BTreeSet<String>,
}

/// The DNSEndpoint for `mall` with `active` serving (see the module header).
pub fn endpoint(mall: &Mall, active: &str, addresses: &Addresses) -> Option<DnsEndpoint> {
    let cdn = mall.spec.cdn.as_ref()?;
    if cdn.domains.is_empty() {
        return None;
    }
    let name = mall.metadata.name.clone()?;
    let ttl = u32::try_from(mall.spec.failover.dns_ttl_seconds).ok();
    let metadata = ObjectMeta {
        name: Some(endpoint_name(&name)),
        namespace: mall.metadata.namespace.clone(),
        labels: Some(BTreeMap::from([
            ("app.kubernetes.io/managed-by".to_string(), super::FIELD_MANAGER.to_string()),
            (MALL_LABEL.to_string(), name),
        ])),
        owner_references: owner_reference(mall).map(|o| vec![o]),
        ..ObjectMeta::default()
    };
    let record = |targets: &[String]| {
        if targets.iter().all(|t| t.parse::<std::net::Ipv6Addr>().is_ok()) { RecordType::Aaaa } else { RecordType::A }
    };
    match mall.spec.failover.dns_mode {
        DnsMode::Active => {
            let targets = addresses.by_region.get(active).filter(|t| !t.is_empty())?;
            Some(dns_endpoint(metadata, &cdn.domains, targets, record(targets), ttl))
        }
        DnsMode::Weighted => {
            let mut endpoints = Vec::new();
            for region in &mall.spec.regions {
                let Some(targets) = addresses.by_region.get(&region.name).filter(|t| !t.is_empty()) else { continue };
                if !addresses.serving.contains(&region.name) && region.name != active {
                    continue;
                }
                let one = dns_endpoint(ObjectMeta::default(), &cdn.domains, targets, record(targets), ttl);
                for mut e in one.spec.endpoints.unwrap_or_default() {
                    e.set_identifier = Some(region.name.clone());
                    e.provider_specific = Some(vec![DnsEndpointEndpointsProviderSpecific {
                        name: Some("weight".into()),
                        value: Some(region.weight.to_string()),
                    }]);
                    endpoints.push(e);
                }
            }
            if endpoints.is_empty() {
                return None;
            }
            let mut all = dns_endpoint(metadata, &[], &[], RecordType::A, ttl);
            all.spec.endpoints = Some(endpoints);
            Some(all)
        }
    }
}

/// `<mall>-dns`: the name of the Mall's `DNSEndpoint`.
pub fn endpoint_name(mall: &str) -> String {
    format!("{mall}-dns")
}

/// The targets the hub's `DNSEndpoint` of Mall `namespace/mall` publishes now (none when it does
/// not exist or cannot be read).
pub async fn published_targets(client: &kube::Client, namespace: &str, mall: &str) -> Vec<String> {
    let api: Api<DnsEndpoint> = Api::namespaced(client.clone(), namespace);
    let Ok(Some(e)) = api.get_opt(&endpoint_name(mall)).await else { return Vec::new() };
    e.spec.endpoints.unwrap_or_default().into_iter().flat_map(|e| e.targets.unwrap_or_default()).collect()
}

/// Applies `endpoint` on the hub.
pub async fn publish(client: &kube::Client, endpoint: &DnsEndpoint) -> Result<(), kube::Error> {
    let ns = endpoint.metadata.namespace.clone().unwrap_or_default();
    let name = endpoint.metadata.name.clone().unwrap_or_default();
    let api: Api<DnsEndpoint> = Api::namespaced(client.clone(), &ns);
    api.patch(&name, &PatchParams::apply(super::FIELD_MANAGER).force(), &Patch::Apply(endpoint)).await.map(|_| ())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::build::kinds::resource_value;
    use crate::testing::mall_from;
    use serde_json::json;

    fn mall(mode: &str) -> Mall {
        mall_from(json!({
            "cdn": {"domains": ["shop.example.com"], "gateway": {"name": "public"}},
            "regions": [{"name": "eu", "role": "primary", "weight": 70}, {"name": "us", "role": "standby", "weight": 30}],
            "failover": {"dnsMode": mode, "dnsTTLSeconds": 15}}))
    }

    fn addresses() -> Addresses {
        Addresses {
            by_region: BTreeMap::from([
                ("eu".to_string(), vec!["127.0.10.1".to_string()]),
                ("us".to_string(), vec!["127.0.20.1".to_string()]),
            ]),
            serving: BTreeSet::from(["eu".to_string(), "us".to_string()]),
        }
    }

    #[test]
    fn active_mode_points_every_domain_at_the_active_region() {
        let e = resource_value(&endpoint(&mall("active"), "us", &addresses()).expect("endpoint")).unwrap();
        assert_eq!(e["metadata"]["name"], "shop-dns");
        assert_eq!(e["metadata"]["labels"]["app.kubernetes.io/managed-by"], "mall-failover");
        assert_eq!(e["metadata"]["ownerReferences"][0]["kind"], "Mall");
        assert_eq!(
            e["spec"]["endpoints"],
            json!([{"dnsName": "shop.example.com", "recordType": "A", "recordTTL": 15, "targets": ["127.0.20.1"]}])
        );
        assert!(endpoint(&mall("active"), "us", &Addresses::default()).is_none(), "no address, no record");
    }

    #[test]
    fn weighted_mode_has_one_set_per_serving_region() {
        let mut a = addresses();
        let e = resource_value(&endpoint(&mall("weighted"), "eu", &a).expect("endpoint")).unwrap();
        let sets: Vec<(&str, &str)> = e["spec"]["endpoints"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| (e["setIdentifier"].as_str().unwrap(), e["providerSpecific"][0]["value"].as_str().unwrap()))
            .collect();
        assert_eq!(sets, [("eu", "70"), ("us", "30")]);
        a.serving.remove("us");
        let e = resource_value(&endpoint(&mall("weighted"), "eu", &a).expect("endpoint")).unwrap();
        assert_eq!(e["spec"]["endpoints"].as_array().unwrap().len(), 1);
    }
}
