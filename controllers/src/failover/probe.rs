//! One health probe of one region, and what it saw of the region's shard Clusters.
//!
//! Contract: [`probe`] makes four reads against the region's cluster, together bounded by
//! `timeout`: the Mall's shard Clusters of that region (by label, its uid included: the API answers, and each
//! shard's phase, role, epoch and tokens are read from them), the region's storefront Deployment,
//! and, with `spec.cdn`, the parent Gateway's `status.addresses`. The probe fails (naming why)
//! when the API does not answer in time, a shard Cluster is missing or not in CloudNativePG's
//! healthy or promotion phase, a member that should have been seeded from another region was
//! created with `initdb` (a standby made before the topology: an independent database, reported
//! and never promoted), or a storefront that should run has no ready pod. It also reads
//! the witness Leases held in that cluster ([`WITNESS_LABEL`], [`witness`]). Nothing is written.

use crate::build::database::topology::{EPOCH_ANNOTATION, Topology};
use crate::build::names::{MALL_LABEL, MALL_UID_LABEL, REGION_LABEL, SHARD_LABEL};
use crate::build::storefront;
use chrono::{DateTime, Utc};
use kube::api::{Api, ApiResource, DynamicObject, ListParams};
use mall_crds::Mall;
use serde_json::Value;
use std::collections::BTreeMap;
use std::time::Duration;

/// CloudNativePG's healthy phase.
pub const PHASE_HEALTHY: &str = "Cluster in healthy state";
/// CloudNativePG's phase while a replica cluster promotes with a token.
pub const PHASE_PROMOTING: &str = "Promoting to primary cluster";
/// CloudNativePG's phase after a wrong promotion token.
pub const PHASE_UNRECOVERABLE: &str = "Cluster is unrecoverable and needs manual intervention";

/// What a probe saw of one shard Cluster.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Shard {
    /// Shard index.
    pub index: i32,
    /// Cluster name.
    pub name: String,
    /// `status.phase`.
    pub phase: String,
    /// `spec.replica.primary` (the member that should be primary).
    pub primary: Option<String>,
    /// The epoch annotation.
    pub epoch: Option<i64>,
    /// `status.timelineID`.
    pub timeline: i64,
    /// `status.demotionToken`.
    pub demotion_token: Option<String>,
    /// `status.lastPromotionToken`.
    pub last_promotion_token: Option<String>,
    /// Created with `bootstrap.initdb` (an independent database, not a copy of another member).
    pub initdb: bool,
}

impl Shard {
    /// Whether its spec makes it the primary member (`replica.primary` names itself).
    pub fn claims_primary(&self) -> bool {
        self.primary.as_deref().is_none_or(|p| p == self.name)
    }
}

/// The result of one probe.
#[derive(Clone, Debug)]
pub struct Probe {
    /// `Err(why)` when the region failed the probe.
    pub outcome: Result<(), String>,
    /// Whether its API answered (a failed probe may still have reached it).
    pub reachable: bool,
    /// Its shard Clusters, by index.
    pub shards: Vec<Shard>,
    /// Its storefront's ready pods.
    pub storefront_ready: i32,
    /// The parent Gateway's addresses.
    pub gateway_addresses: Vec<String>,
    /// Witness reports held in this region's cluster: region seen → when it was last seen
    /// healthy (Lease `renewTime`, see [`WITNESS_LABEL`]).
    pub witnessed: BTreeMap<String, DateTime<Utc>>,
}

/// Label of a witness Lease in a region's cluster, naming the region it watches: a witness agent
/// there renews the Lease while it reaches that region's API server.
pub const WITNESS_LABEL: &str = "mallctl.io/witness-of";

/// What the witnesses in the other regions' clusters say about `region`: `Some(true)` one saw
/// it healthy within three probe intervals, `Some(false)` they report on it but not recently,
/// `None` no witness reports on it (or none of their clusters answered).
pub fn witness(probes: &BTreeMap<String, Probe>, region: &str, interval: Duration, now: DateTime<Utc>) -> Option<bool> {
    let fresh = chrono::Duration::from_std(interval * 3).unwrap_or(chrono::Duration::MAX);
    let seen: Vec<DateTime<Utc>> = probes
        .iter()
        .filter(|(r, p)| r.as_str() != region && p.reachable)
        .filter_map(|(_, p)| p.witnessed.get(region).copied())
        .collect();
    if seen.is_empty() { None } else { Some(seen.iter().any(|t| now - *t <= fresh)) }
}

impl Probe {
    /// A probe that did not reach the region.
    pub fn failed(why: String) -> Probe {
        Probe {
            outcome: Err(why),
            reachable: false,
            shards: Vec::new(),
            storefront_ready: 0,
            gateway_addresses: Vec::new(),
            witnessed: BTreeMap::new(),
        }
    }
}

/// The CloudNativePG `Cluster` resource (of the kopium type).
pub fn cluster_resource() -> ApiResource {
    ApiResource::erase::<crate::cnpg::Cluster>(&())
}

/// Reads a shard from a Cluster object.
pub fn shard_of(o: &DynamicObject) -> Shard {
    let data = &o.data;
    let text = |v: &Value| v.as_str().filter(|s| !s.is_empty()).map(str::to_string);
    Shard {
        index: o.metadata.labels.as_ref().and_then(|l| l.get(SHARD_LABEL)).and_then(|s| s.parse().ok()).unwrap_or(-1),
        name: o.metadata.name.clone().unwrap_or_default(),
        phase: data["status"]["phase"].as_str().unwrap_or_default().to_string(),
        primary: text(&data["spec"]["replica"]["primary"]),
        epoch: o.metadata.annotations.as_ref().and_then(|a| a.get(EPOCH_ANNOTATION)).and_then(|e| e.parse().ok()),
        timeline: data["status"]["timelineID"].as_i64().unwrap_or(0),
        demotion_token: text(&data["status"]["demotionToken"]),
        last_promotion_token: text(&data["status"]["lastPromotionToken"]),
        initdb: data["spec"]["bootstrap"]["initdb"].is_object(),
    }
}

/// Probes `region` of `mall` through `client` within `timeout`.
pub async fn probe(client: &kube::Client, mall: &Mall, region: &str, timeout: Duration) -> Probe {
    match tokio::time::timeout(timeout, reads(client, mall, region)).await {
        Ok(probe) => probe,
        Err(_) => Probe::failed(format!("no answer within {timeout:?}")),
    }
}

async fn reads(client: &kube::Client, mall: &Mall, region: &str) -> Probe {
    let ns = mall.metadata.namespace.clone().unwrap_or_default();
    let name = mall.metadata.name.clone().unwrap_or_default();
    let clusters: Api<DynamicObject> = Api::namespaced_with(client.clone(), &ns, &cluster_resource());
    // Only this Mall's Clusters (its uid): a Mall of the same name on another hub is not ours.
    let mut selector = format!("{MALL_LABEL}={name},{REGION_LABEL}={region}");
    if let Some(uid) = &mall.metadata.uid {
        selector.push_str(&format!(",{MALL_UID_LABEL}={uid}"));
    }
    let listed = match clusters.list(&ListParams::default().labels(&selector)).await {
        Ok(list) => list,
        Err(e) => return Probe::failed(format!("API: {}", crate::reconcile::error_chain(&e))),
    };
    let mut shards: Vec<Shard> = listed.items.iter().map(shard_of).collect();
    shards.sort_by_key(|s| s.index);
    let mut problems = Vec::new();
    let seed = Topology::of(mall).and_then(|t| t.member(region).and_then(|m| m.seeded_from.clone()));
    for i in 0..mall.spec.database.shards {
        match shards.iter().find(|s| s.index == i) {
            None => problems.push(format!("shard {i}: no Cluster")),
            Some(s) if s.initdb && seed.is_some() => problems.push(format!(
                "shard {i} ({}) was created with initdb: it is an independent database, not a replica of {}; it \
                 is never promoted nor rewritten: delete it (its data is not replicated anywhere) and the operator \
                 rebuilds it from {}",
                s.name,
                seed.as_deref().unwrap_or_default(),
                seed.as_deref().unwrap_or_default()
            )),
            Some(s) if s.phase != PHASE_HEALTHY && s.phase != PHASE_PROMOTING => problems.push(format!(
                "shard {i} ({}): {}",
                s.name,
                if s.phase.is_empty() { "no phase yet" } else { &s.phase }
            )),
            Some(_) => {}
        }
    }
    let deployments: Api<k8s_openapi::api::apps::v1::Deployment> = Api::namespaced(client.clone(), &ns);
    let storefront_name = format!("{name}-{region}-{}", storefront::COMPONENT);
    let mut storefront_ready = 0;
    match deployments.get_opt(&storefront_name).await {
        Ok(Some(d)) => {
            let desired = d.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1);
            storefront_ready = d.status.as_ref().and_then(|s| s.ready_replicas).unwrap_or(0);
            if desired > 0 && storefront_ready == 0 {
                problems.push(format!("storefront {storefront_name}: no ready pod"));
            }
        }
        Ok(None) => problems.push(format!("storefront {storefront_name}: missing")),
        Err(e) => problems.push(format!("storefront: {}", crate::reconcile::error_chain(&e))),
    }
    let gateway_addresses = match &mall.spec.cdn {
        Some(cdn) => {
            gateway_addresses(client, cdn.gateway.namespace.as_deref().unwrap_or(&ns), &cdn.gateway.name).await
        }
        None => Vec::new(),
    };
    let leases: Api<k8s_openapi::api::coordination::v1::Lease> = Api::namespaced(client.clone(), &ns);
    let witnessed = match leases.list(&ListParams::default().labels(WITNESS_LABEL)).await {
        Ok(list) => list
            .items
            .iter()
            .filter_map(|l| {
                let of = l.metadata.labels.as_ref()?.get(WITNESS_LABEL)?.clone();
                let renewed = l.spec.as_ref()?.renew_time.as_ref()?;
                let at = DateTime::<Utc>::from_timestamp_millis(renewed.0.as_millisecond())?;
                Some((of, at))
            })
            .collect(),
        Err(_) => BTreeMap::new(),
    };
    Probe {
        outcome: if problems.is_empty() { Ok(()) } else { Err(problems.join("; ")) },
        reachable: true,
        shards,
        storefront_ready,
        gateway_addresses,
        witnessed,
    }
}

/// `status.addresses[].value` of Gateway `namespace/name` (empty when unknown).
async fn gateway_addresses(client: &kube::Client, namespace: &str, name: &str) -> Vec<String> {
    let resource = ApiResource {
        group: "gateway.networking.k8s.io".into(),
        version: "v1".into(),
        api_version: "gateway.networking.k8s.io/v1".into(),
        kind: "Gateway".into(),
        plural: "gateways".into(),
    };
    let api: Api<DynamicObject> = Api::namespaced_with(client.clone(), namespace, &resource);
    match api.get_opt(name).await {
        Ok(Some(g)) => g.data["status"]["addresses"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|a| a["value"].as_str().map(str::to_string))
            .collect(),
        _ => Vec::new(),
    }
}
