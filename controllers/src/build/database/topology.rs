//! The distributed database topology of a Mall with standby regions: one CloudNativePG `Cluster`
//! per shard per region, replicating through the object store (CloudNativePG's "distributed
//! topology", `docs/src/replica_cluster.md`).
//!
//! Contract: pure. [`Topology::of`] resolves, from the Mall's spec and status, which region is
//! active, the failover epoch (the fencing token stamped on every shard Cluster as
//! [`EPOCH_ANNOTATION`]) and, per region, the epoch its shards were (re)built in and the region
//! they were seeded from. Only Malls with two or more regions and `spec.database.backup` have a
//! topology (validation refuses standby regions without backup); every other Mall keeps its
//! single-region Clusters unchanged.
//!
//! Per shard `i`, the member of region `r` is `<mall>-<r>-db-<i>` and:
//! - archives WAL to its region's `ObjectStore` under [`server_name`]: the Cluster name in
//!   epoch 0 (the layout single-region Malls have), `<cluster>-e<k>` once rebuilt in epoch `k`;
//! - lists every member (itself included) in `externalClusters`, read through the Barman Cloud
//!   Plugin from that member's region `ObjectStore` and server name;
//! - has `replica: {primary: <active member>, source, self: <itself>}`: replicas follow the
//!   active member, the active member names the next region's member as its source (CloudNativePG
//!   needs one; it is followed only once the member is demoted);
//! - bootstraps with `initdb` when it was seeded by nobody (the initial primary in epoch 0),
//!   else with `recovery` from the member of the region it was seeded from.
//!
//! Initially (no status yet) the spec's primary is active and seeds every other region.

use mall_crds::Mall;
use mall_crds::regions::RegionRole;

/// Annotation on every shard Cluster of a topology: the failover epoch it was written in. The
/// member clusters' admission policy refuses an update that lowers it, or that changes
/// `spec.replica` without raising it.
pub const EPOCH_ANNOTATION: &str = "mallctl.io/failover-epoch";

/// The resolved topology (see the module header).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Topology {
    /// The Mall's name.
    pub mall: String,
    /// The region serving writes.
    pub active: String,
    /// The failover epoch.
    pub epoch: i64,
    /// Every region, in spec order.
    pub members: Vec<Member>,
}

/// One region's place in the topology.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Member {
    /// Region name.
    pub region: String,
    /// The epoch its shards were (re)built in.
    pub server_epoch: i64,
    /// The region it was seeded from by recovery; `None` = `initdb`.
    pub seeded_from: Option<String>,
}

impl Topology {
    /// The topology of `mall`, when it has one (two or more regions and a backup).
    pub fn of(mall: &Mall) -> Option<Topology> {
        let spec = &mall.spec;
        if spec.regions.len() < 2 || spec.database.backup.is_none() {
            return None;
        }
        let primary = spec.regions.iter().find(|r| r.role == RegionRole::Primary).unwrap_or(&spec.regions[0]);
        let status = mall.status.as_ref();
        let listed = |name: &str| spec.regions.iter().any(|r| r.name == name);
        let active =
            status.and_then(|s| s.active_region.clone()).filter(|a| listed(a)).unwrap_or_else(|| primary.name.clone());
        let members = spec
            .regions
            .iter()
            .map(|region| {
                let seen = status.and_then(|s| s.regions.iter().find(|r| r.name == region.name));
                match seen {
                    Some(seen) if seen.server_epoch > 0 || seen.seeded_from.is_some() => Member {
                        region: region.name.clone(),
                        server_epoch: seen.server_epoch,
                        seeded_from: seen.seeded_from.clone().filter(|s| listed(s)),
                    },
                    _ => Member {
                        region: region.name.clone(),
                        server_epoch: 0,
                        seeded_from: (region.name != primary.name).then(|| primary.name.clone()),
                    },
                }
            })
            .collect();
        Some(Topology {
            mall: mall.metadata.name.clone().unwrap_or_default(),
            active,
            epoch: status.map_or(0, |s| s.failover_epoch),
            members,
        })
    }

    /// The member of `region`.
    pub fn member(&self, region: &str) -> Option<&Member> {
        self.members.iter().find(|m| m.region == region)
    }

    /// `<mall>-<region>-db-<shard>`: the shard's Cluster in `region`.
    pub fn cluster(&self, region: &str, shard: i32) -> String {
        format!("{}-{region}-db-{shard}", self.mall)
    }

    /// `<mall>-<region>-db-backup`: the `ObjectStore` of `region`'s archive.
    pub fn object_store(&self, region: &str) -> String {
        format!("{}-{region}-db-backup", self.mall)
    }

    /// The archive folder (`serverName`) of shard `shard`'s member in `region`.
    pub fn server_name(&self, region: &str, shard: i32) -> String {
        server_name(&self.cluster(region, shard), self.member(region).map_or(0, |m| m.server_epoch))
    }

    /// The region whose member a replica in `region` follows, and the one the active member
    /// names as its (unused) source: the next region in spec order.
    pub fn source_of(&self, region: &str) -> &str {
        if region != self.active {
            return &self.active;
        }
        let at = self.members.iter().position(|m| m.region == region).unwrap_or(0);
        let next = &self.members[(at + 1) % self.members.len()];
        &next.region
    }
}

/// The archive folder of a member Cluster built in `server_epoch`: the Cluster name in epoch 0,
/// `<cluster>-e<epoch>` after.
pub fn server_name(cluster: &str, server_epoch: i64) -> String {
    if server_epoch == 0 { cluster.to_string() } else { format!("{cluster}-e{server_epoch}") }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::mall_from;
    use mall_crds::status::{MallStatus, RegionStatus};
    use serde_json::json;

    fn three() -> Mall {
        mall_from(json!({"regions": [
                    {"name": "eu", "role": "primary"}, {"name": "us", "role": "standby"}, {"name": "ap", "role": "standby"}],
        }))
    }

    #[test]
    fn initially_the_spec_primary_is_active_and_seeds_the_others() {
        let t = Topology::of(&three()).expect("topology");
        assert_eq!((t.active.as_str(), t.epoch), ("eu", 0));
        let seeds: Vec<Option<&str>> = t.members.iter().map(|m| m.seeded_from.as_deref()).collect();
        assert_eq!(seeds, [None, Some("eu"), Some("eu")]);
        assert_eq!(t.cluster("us", 1), "shop-us-db-1");
        assert_eq!(t.server_name("us", 1), "shop-us-db-1");
        assert_eq!((t.source_of("eu"), t.source_of("us"), t.source_of("ap")), ("us", "eu", "eu"));
    }

    #[test]
    fn the_status_moves_the_active_region_and_records_rebuilds() {
        let mut mall = three();
        mall.status = Some(MallStatus {
            active_region: Some("us".into()),
            failover_epoch: 2,
            regions: vec![RegionStatus {
                name: "eu".into(),
                server_epoch: 2,
                seeded_from: Some("us".into()),
                ..RegionStatus::default()
            }],
            ..MallStatus::default()
        });
        let t = Topology::of(&mall).expect("topology");
        assert_eq!((t.active.as_str(), t.epoch), ("us", 2));
        assert_eq!(t.server_name("eu", 0), "shop-eu-db-0-e2");
        assert_eq!(t.member("eu").and_then(|m| m.seeded_from.as_deref()), Some("us"));
        assert_eq!(t.member("us").and_then(|m| m.seeded_from.as_deref()), Some("eu"));
        assert_eq!((t.source_of("us"), t.source_of("eu")), ("ap", "us"));
    }

    #[test]
    fn one_region_or_no_backup_has_no_topology() {
        assert!(Topology::of(&mall_from(json!({"regions": [{"name": "eu", "role": "primary"}]}))).is_none());
        // Validation refuses this Mall; the builder still must not make a topology of it.
        let mut mall = three();
        mall.spec.database.backup = None;
        assert!(Topology::of(&mall).is_none());
    }
}
