//! Names, labels and owner references shared by every builder.
//!
//! Contract: pure and deterministic. Children are named `<mall>[-<region>]-<component>[-<n>]`
//! (the region suffix only when `spec.regions` is set) and labelled with the
//! `app.kubernetes.io/*` set below plus the Mall's name and, once it has one, its UID. Children in
//! the operator's own cluster are owned by the Mall (controller reference, so its garbage
//! collector removes them); children of a region in a member cluster, where the Mall does not
//! exist, carry no owner reference: the UID label alone says whose they are, and the Mall's
//! finalizer deletes them. Validation keeps Mall names to 30 characters and region names to 12,
//! so every name here is a DNS label.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use kube::Resource;
use mall_crds::Mall;
use mall_crds::regions::{ClusterRef, RegionRole};
use std::collections::BTreeMap;

/// Field manager of every write the reconciler makes.
pub const FIELD_MANAGER: &str = "mall-operator";
/// `app.kubernetes.io/managed-by` value, and the ownership label selector used for pruning.
pub const MANAGED_BY: &str = "mall-operator";
/// `app.kubernetes.io/part-of` value.
pub const PART_OF: &str = "mall";
/// Label naming the owning Mall (pruning selects on it with `managed-by`).
pub const MALL_LABEL: &str = "mallctl.io/mall";
/// Label holding the owning Mall's UID: what makes a child provably this Mall's (in a member
/// cluster, two hubs may hold Malls of the same namespace and name).
pub const MALL_UID_LABEL: &str = "mallctl.io/mall-uid";
/// Label naming the region a child belongs to.
pub const REGION_LABEL: &str = "mallctl.io/region";
/// Label naming the database shard of a child.
pub const SHARD_LABEL: &str = "mallctl.io/shard";
/// Field manager of the autoscaler's writes (replica fields, `lastScaling`, `MetricsUnavailable`).
pub const AUTOSCALER_MANAGER: &str = "mall-autoscaler";
/// Annotation on a child whose size the autoscaler controls; the value is the field it owns once
/// it has scaled the child (`spec.replicas`, or `spec.instances` for CloudNativePG), see
/// `reconcile::handoff`.
pub const AUTOSCALED_ANNOTATION: &str = "mallctl.io/autoscaled";

/// The cluster a region's children go to.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Target {
    /// The operator's own cluster (the hub).
    Local,
    /// A member cluster, reached through a kubeconfig Secret in the Mall's namespace.
    Member {
        /// Secret name.
        secret: String,
        /// Key of the kubeconfig in the Secret.
        key: String,
    },
}

impl Target {
    /// The target of a region with this cluster reference.
    pub fn of(cluster: Option<&ClusterRef>) -> Target {
        match cluster {
            None => Target::Local,
            Some(c) => Target::Member { secret: c.secret_name.clone(), key: c.key.clone() },
        }
    }

    /// Whether this is a member cluster.
    pub fn is_member(&self) -> bool {
        matches!(self, Target::Member { .. })
    }
}

impl std::fmt::Display for Target {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Target::Local => f.write_str("the operator's cluster"),
            Target::Member { secret, key } => write!(f, "the member cluster of Secret {secret} (key {key})"),
        }
    }
}

/// Where a set of children goes: one region of the Mall.
#[derive(Clone, Debug)]
pub struct Scope<'a> {
    /// The Mall.
    pub mall: &'a Mall,
    /// Region name when the Mall lists regions.
    pub region: Option<&'a str>,
    /// The cluster the region's children go to.
    pub target: Target,
}

impl<'a> Scope<'a> {
    /// Every region of the Mall (one unnamed scope when `spec.regions` is empty).
    pub fn all(mall: &'a Mall) -> Vec<Scope<'a>> {
        if mall.spec.regions.is_empty() {
            vec![Scope { mall, region: None, target: Target::Local }]
        } else {
            mall.spec
                .regions
                .iter()
                .map(|r| Scope { mall, region: Some(r.name.as_str()), target: Target::of(r.cluster.as_ref()) })
                .collect()
        }
    }

    /// The Mall's name.
    pub fn mall_name(&self) -> &str {
        self.mall.metadata.name.as_deref().unwrap_or_default()
    }

    /// The namespace children go to (the Mall's).
    pub fn namespace(&self) -> Option<String> {
        self.mall.metadata.namespace.clone()
    }

    /// `<mall>[-<region>]`: the prefix of every child name in this scope.
    pub fn prefix(&self) -> String {
        match self.region {
            Some(region) => format!("{}-{}", self.mall_name(), region),
            None => self.mall_name().to_string(),
        }
    }

    /// `<prefix>-<component>`.
    pub fn name(&self, component: &str) -> String {
        format!("{}-{}", self.prefix(), component)
    }

    /// Labels of a child of `component` (`storefront`, `cache`, `edge`, `database`, ...).
    pub fn labels(&self, component: &str) -> BTreeMap<String, String> {
        let mut labels = self.selector(component);
        labels.insert("app.kubernetes.io/managed-by".into(), MANAGED_BY.into());
        labels.insert("app.kubernetes.io/part-of".into(), PART_OF.into());
        labels.insert(MALL_LABEL.into(), self.mall_name().into());
        if let Some(region) = self.region {
            labels.insert(REGION_LABEL.into(), region.into());
        }
        if let Some(uid) = self.mall.metadata.uid.as_deref() {
            labels.insert(MALL_UID_LABEL.into(), uid.into());
        }
        labels
    }

    /// The stable subset of [`Self::labels`] used in selectors (never changes for a child).
    pub fn selector(&self, component: &str) -> BTreeMap<String, String> {
        BTreeMap::from([
            ("app.kubernetes.io/name".to_string(), component.to_string()),
            ("app.kubernetes.io/instance".to_string(), self.prefix()),
            ("app.kubernetes.io/component".to_string(), component.to_string()),
        ])
    }

    /// The region serving writes: `status.activeRegion` when it names a listed region (the
    /// failover controller moves it), else the spec's primary. `None` without regions.
    pub fn active_region(mall: &'a Mall) -> Option<&'a str> {
        let listed = |name: &str| mall.spec.regions.iter().any(|r| r.name == name);
        mall.status
            .as_ref()
            .and_then(|s| s.active_region.as_deref())
            .filter(|a| listed(a))
            .or_else(|| mall.spec.regions.iter().find(|r| r.role == RegionRole::Primary).map(|r| r.name.as_str()))
            .or_else(|| mall.spec.regions.first().map(|r| r.name.as_str()))
    }

    /// Whether this scope is a standby region: the Mall lists two or more regions and this one
    /// is not active.
    pub fn is_standby(&self) -> bool {
        self.mall.spec.regions.len() > 1 && self.region.is_some() && self.region != Self::active_region(self.mall)
    }

    /// Whether the failover controller fenced this region after a failover and rebuilds it
    /// (`status.regions[].health` = `Rebuilding`): it serves nothing meanwhile.
    pub fn is_rebuilding(&self) -> bool {
        let status = self.mall.status.as_ref();
        status
            .is_some_and(|s| s.regions.iter().any(|r| Some(r.name.as_str()) == self.region && r.health == "Rebuilding"))
    }

    /// `replicas` as this scope runs them: unchanged in the active (or only) region; in a standby
    /// region `spec.failover.standbyCapacityPercent` of it, rounded up, and at least one while
    /// the percentage and `replicas` are above 0 (a warm standby); 0 in a region being rebuilt
    /// after a failover ([`Self::is_rebuilding`]).
    pub fn capacity(&self, replicas: i32) -> i32 {
        if !self.is_standby() || replicas <= 0 {
            return replicas;
        }
        if self.is_rebuilding() {
            return 0;
        }
        let percent = i64::from(self.mall.spec.failover.standby_capacity_percent.clamp(0, 100));
        let scaled = (i64::from(replicas) * percent + 99) / 100;
        i32::try_from(scaled).unwrap_or(replicas)
    }

    /// Whether the autoscaler sizes this scope's children: the Mall has `spec.autoscaling` and
    /// this is its only scope or its active region (standby regions run
    /// [`Self::capacity`] of the spec's sizes).
    pub fn autoscaled(&self) -> bool {
        self.mall.spec.autoscaling.is_some()
            && match self.region {
                None => true,
                Some(region) => Self::active_region(self.mall) == Some(region),
            }
    }

    /// The scope the autoscaler drives (see [`Self::autoscaled`]): the active region, else the
    /// first (or only) scope.
    pub fn autoscaler_scope(mall: &'a Mall) -> Scope<'a> {
        let active = Self::active_region(mall);
        let region = mall.spec.regions.iter().find(|r| Some(r.name.as_str()) == active);
        Scope {
            mall,
            region: region.map(|r| r.name.as_str()),
            target: Target::of(region.and_then(|r| r.cluster.as_ref())),
        }
    }

    /// Metadata of a child: name, namespace, labels and, in the operator's own cluster, the
    /// controller owner reference to the Mall.
    pub fn meta(&self, name: impl Into<String>, component: &str) -> ObjectMeta {
        let owner = if self.target.is_member() { None } else { owner_reference(self.mall) };
        ObjectMeta {
            name: Some(name.into()),
            namespace: self.namespace(),
            labels: Some(self.labels(component)),
            owner_references: owner.map(|o| vec![o]),
            ..ObjectMeta::default()
        }
    }
}

/// Marks `meta` as sized by the autoscaler, which owns `field` once it has scaled the child.
pub fn mark_autoscaled(meta: &mut ObjectMeta, field: &str) {
    meta.annotations.get_or_insert_with(BTreeMap::new).insert(AUTOSCALED_ANNOTATION.into(), field.into());
}

/// The controller owner reference to `mall` (None before the Mall has a uid, e.g. in `render`).
pub fn owner_reference(mall: &Mall) -> Option<OwnerReference> {
    mall.controller_owner_ref(&())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::mall_from;
    use serde_json::json;

    #[test]
    fn single_region_names_have_no_suffix() {
        let mall = mall_from(json!({}));
        let scopes = Scope::all(&mall);
        assert_eq!(scopes.len(), 1);
        assert_eq!(scopes[0].name("storefront"), "shop-storefront");
        let meta = scopes[0].meta("shop-storefront", "storefront");
        assert_eq!(meta.namespace.as_deref(), Some("ns"));
        let owner = &meta.owner_references.unwrap()[0];
        assert_eq!((owner.kind.as_str(), owner.controller), ("Mall", Some(true)));
        assert_eq!(meta.labels.unwrap()[MALL_LABEL], "shop");
    }

    #[test]
    fn the_autoscaler_drives_the_only_scope_or_the_primary_region() {
        let scaling = json!({"prometheus": {"url": "http://prom:9090"}});
        assert!(!Scope::all(&mall_from(json!({})))[0].autoscaled());
        assert!(Scope::all(&mall_from(json!({"autoscaling": scaling})))[0].autoscaled());
        let mall = mall_from(json!({"autoscaling": scaling, "regions": [
            {"name": "west", "role": "standby"}, {"name": "east", "role": "primary"}]}));
        let scopes = Scope::all(&mall);
        assert_eq!((scopes[0].autoscaled(), scopes[1].autoscaled()), (false, true));
        assert_eq!(Scope::autoscaler_scope(&mall).region, Some("east"));
        let mut meta = ObjectMeta::default();
        mark_autoscaled(&mut meta, "spec.replicas");
        assert_eq!(meta.annotations.unwrap()[AUTOSCALED_ANNOTATION], "spec.replicas");
    }

    #[test]
    fn regions_suffix_names_and_label_children() {
        let mall = mall_from(json!({"regions": [
            {"name": "east", "role": "primary"}, {"name": "west", "role": "standby"}]}));
        let names: Vec<_> = Scope::all(&mall).iter().map(|s| s.name("cache")).collect();
        assert_eq!(names, ["shop-east-cache", "shop-west-cache"]);
        assert_eq!(Scope::all(&mall)[1].labels("cache")[REGION_LABEL], "west");
        assert_eq!(Scope::all(&mall)[1].selector("cache")["app.kubernetes.io/instance"], "shop-west");
    }
}
