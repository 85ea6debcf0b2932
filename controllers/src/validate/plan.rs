//! The validated plan: what the rest of the pipeline works from once a Mall has passed
//! validation.
//!
//! Contract: pure. [`plan`] validates the Mall (the same checks as [`super::validate`]) and
//! resolves what the builders, apply and status need and would otherwise re-derive from the raw
//! spec: the Mall's identity, each region with the cluster its children go to (the operator's own,
//! or a member cluster named by a kubeconfig Secret), the active region (from the status; the
//! spec's `role: primary` is only the initial, preferred primary), the failover epoch, and the
//! failover timings parsed with the workspace's one duration parser
//! ([`mall_crds::common::parse_duration`]).

use super::{FieldError, Invalid};
use crate::build::Scope;
use crate::build::names::Target;
use mall_crds::Mall;
use mall_crds::common::parse_duration;
use mall_crds::regions::{FailoverMode, RegionRole};
use std::collections::BTreeSet;
use std::time::Duration;

/// The resolved input of a reconcile.
#[derive(Clone, Debug)]
pub struct Plan<'a> {
    /// The Mall.
    pub mall: &'a Mall,
    /// Its namespace (children go to the namespace of the same name in every cluster).
    pub namespace: String,
    /// Its name.
    pub name: String,
    /// Its UID, once it has one (`mallctl render` has none).
    pub uid: Option<String>,
    /// One scope per region (one unnamed scope when the Mall lists no regions), in spec order.
    pub scopes: Vec<Scope<'a>>,
    /// The region serving writes: `status.activeRegion` when it names a listed region, else the
    /// spec's primary. `None` when the Mall lists no regions.
    pub active_region: Option<String>,
    /// The failover epoch (`status.failoverEpoch`).
    pub epoch: i64,
    /// Failover settings, parsed (present when the Mall lists regions).
    pub failover: Option<Failover>,
}

/// `spec.failover`, parsed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Failover {
    /// Automatic or manual.
    pub mode: FailoverMode,
    /// Time between two probes of a region.
    pub probe_interval: Duration,
    /// Consecutive failed probes before a region counts as down.
    pub failure_threshold: u32,
    /// Least time between two failovers.
    pub cooldown: Duration,
    /// Whether a witness must confirm a failure first.
    pub require_witness: bool,
}

impl Plan<'_> {
    /// Every cluster this Mall's children go to.
    pub fn targets(&self) -> BTreeSet<Target> {
        self.scopes.iter().map(|s| s.target.clone()).collect()
    }

    /// Whether any region lives in a member cluster (the Mall then needs a finalizer).
    pub fn has_members(&self) -> bool {
        self.scopes.iter().any(|s| s.target.is_member())
    }

    /// The region names whose children go to `target`.
    pub fn regions_in(&self, target: &Target) -> Vec<&str> {
        self.scopes.iter().filter(|s| &s.target == target).filter_map(|s| s.region).collect()
    }
}

/// Validates `mall` and resolves its plan.
pub fn plan(mall: &Mall) -> Result<Plan<'_>, Invalid> {
    super::validate(mall)?;
    let field = |path: &str, message: &str| Invalid(vec![FieldError { path: path.into(), message: message.into() }]);
    let namespace = mall.metadata.namespace.clone().ok_or_else(|| field("metadata.namespace", "Required value"))?;
    let name = mall.metadata.name.clone().ok_or_else(|| field("metadata.name", "Required value"))?;
    let status = mall.status.as_ref();
    let listed = |r: &str| mall.spec.regions.iter().any(|region| region.name == r);
    let active_region = status
        .and_then(|s| s.active_region.clone())
        .filter(|r| listed(r))
        .or_else(|| mall.spec.regions.iter().find(|r| r.role == RegionRole::Primary).map(|r| r.name.clone()));
    let failover = if mall.spec.regions.is_empty() {
        None
    } else {
        let spec = &mall.spec.failover;
        let duration = |path: &str, text: &str| {
            parse_duration(text).ok_or_else(|| field(path, &format!("{text:?} is not a duration such as 10s or 5m")))
        };
        Some(Failover {
            mode: spec.mode,
            probe_interval: duration("spec.failover.probeInterval", &spec.probe_interval)?,
            failure_threshold: u32::try_from(spec.failure_threshold.max(1)).unwrap_or(1),
            cooldown: duration("spec.failover.cooldown", &spec.cooldown)?,
            require_witness: spec.require_witness,
        })
    };
    Ok(Plan {
        mall,
        namespace,
        name,
        uid: mall.metadata.uid.clone(),
        scopes: Scope::all(mall),
        active_region,
        epoch: status.map_or(0, |s| s.failover_epoch),
        failover,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::mall_from;
    use serde_json::json;

    #[test]
    fn regions_resolve_to_their_clusters() {
        let mut mall = mall_from(json!({"regions": [
            {"name": "eu", "role": "primary", "cluster": {"secretName": "eu-kubeconfig"}},
            {"name": "us", "role": "standby", "cluster": {"secretName": "us-kubeconfig", "key": "config"}},
            {"name": "hq", "role": "standby"}],
            "database": {"backup": {"objectStore": {"destinationPath": "s3://bucket/p/", "credentials": {"secretName": "s3"}}}},
            "failover": {"probeInterval": "2s", "failureThreshold": 3, "cooldown": "1m"}}));
        mall.metadata.uid = Some("u-1".into());
        let plan = plan(&mall).expect("valid");
        assert_eq!((plan.namespace.as_str(), plan.name.as_str(), plan.uid.as_deref()), ("ns", "shop", Some("u-1")));
        let targets: Vec<Target> = plan.scopes.iter().map(|s| s.target.clone()).collect();
        assert_eq!(targets[0], Target::Member { secret: "eu-kubeconfig".into(), key: "kubeconfig".into() });
        assert_eq!(targets[1], Target::Member { secret: "us-kubeconfig".into(), key: "config".into() });
        assert_eq!(targets[2], Target::Local);
        assert!(plan.has_members());
        assert_eq!(plan.targets().len(), 3);
        assert_eq!(plan.regions_in(&Target::Local), ["hq"]);
        assert_eq!(plan.active_region.as_deref(), Some("eu"));
        let failover = plan.failover.expect("failover");
        assert_eq!((failover.probe_interval, failover.cooldown), (Duration::from_secs(2), Duration::from_secs(60)));
        assert_eq!(failover.failure_threshold, 3);
    }

    #[test]
    fn the_status_names_the_active_region_once_it_moved() {
        let mut mall = mall_from(json!({"regions": [
            {"name": "eu", "role": "primary"}, {"name": "us", "role": "standby"}]}));
        mall.status = Some(mall_crds::status::MallStatus {
            active_region: Some("us".into()),
            failover_epoch: 4,
            ..Default::default()
        });
        let plan = plan(&mall).expect("valid");
        assert_eq!((plan.active_region.as_deref(), plan.epoch), (Some("us"), 4));
        assert!(!plan.has_members());
        mall.status = Some(mall_crds::status::MallStatus { active_region: Some("gone".into()), ..Default::default() });
        assert_eq!(super::plan(&mall).expect("valid").active_region.as_deref(), Some("eu"));
    }

    #[test]
    fn a_mall_without_regions_has_one_local_scope_and_no_failover() {
        let mall = mall_from(json!({}));
        let plan = plan(&mall).expect("valid");
        assert_eq!(plan.targets().into_iter().collect::<Vec<_>>(), [Target::Local]);
        assert!(plan.failover.is_none() && plan.active_region.is_none());
    }
}
