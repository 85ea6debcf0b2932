//! Step 4: what the Mall's status says, from what the children's own statuses say.
//!
//! Contract: pure — observed objects and the time in, the reconciler's part of the status out
//! (`observedGeneration`, conditions, tier counts, shards, active region). Conditions:
//! `Ready` (every tier serving), `Progressing` (something still rolling out), `Degraded`
//! (something wrong a person should look at: a missing dependency, a shard short of instances,
//! an invalid spec, a failed apply), and `BackupsConfigured`. A condition keeps its
//! `lastTransitionTime` while its status does not change, so an unchanged world computes an
//! identical status and costs no write. The live children come in as a [`ChildSet<Live>`],
//! destructured without `..`: every kind says whether it counts towards the status.

use crate::build::names::SHARD_LABEL;
use crate::build::{ChildSet, Live};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use mall_crds::Mall;
use mall_crds::status::{Count, ShardStatus, TierCounts};
use serde_json::Value;
use std::collections::BTreeMap;

/// CloudNativePG's phase of a healthy cluster.
pub const CNPG_HEALTHY: &str = "Cluster in healthy state";

/// What the reconciler observed this time.
#[derive(Debug, Default)]
pub struct Observed<'a> {
    /// Live children by kind and name.
    pub live: Option<&'a ChildSet<Live>>,
    /// Missing dependencies, with the children they prevent.
    pub missing: Option<&'a BTreeMap<&'static str, Vec<String>>>,
    /// Why the spec was refused, when it was.
    pub invalid: Option<String>,
    /// Why applying failed, when it did.
    pub apply_error: Option<String>,
    /// Regions whose cluster could not be reconciled, each with the error.
    pub unreachable: Vec<String>,
    /// Children left alone because an object of that name belongs to another Mall.
    pub conflicts: Vec<String>,
    /// Writes the API server refused, as (reason, description) ([`crate::reconcile::refusal`]).
    pub refused: Vec<(String, String)>,
    /// While the Mall is deleted: member clusters whose children could not be deleted yet.
    pub cleanup_blocked: Vec<String>,
}

/// The status fields this reconciler owns.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ReconcilerStatus {
    /// Generation observed.
    pub observed_generation: Option<i64>,
    /// Conditions.
    pub conditions: Vec<Condition>,
    /// Tier counts.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tiers: Option<TierCounts>,
    /// Shards.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub shards: Vec<ShardStatus>,
    /// Region serving writes.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub active_region: Option<String>,
}

/// Whether `computed` must be written at once rather than coalesced: the first status, a new
/// observed generation, or a condition whose status (True/False/Unknown) or reason differs from
/// the live one. Counts, shard phases and messages alone are progress.
pub fn is_urgent(computed: &ReconcilerStatus, live: Option<&mall_crds::status::MallStatus>) -> bool {
    let Some(live) = live else { return true };
    if computed.observed_generation != live.observed_generation {
        return true;
    }
    computed.conditions.iter().any(|c| {
        live.conditions.iter().find(|l| l.type_ == c.type_).is_none_or(|l| l.status != c.status || l.reason != c.reason)
    })
}

struct Verdict {
    ready: Vec<String>,
    progressing: Vec<String>,
    degraded: Vec<(String, String)>,
}

fn int(v: &Value) -> i32 {
    v.as_i64().and_then(|i| i32::try_from(i).ok()).unwrap_or(0)
}

fn component(o: &Value) -> &str {
    o["metadata"]["labels"]["app.kubernetes.io/component"].as_str().unwrap_or_default()
}

/// Sums desired/ready of workloads (Deployments, StatefulSets) of one component, noting
/// not-ready ones.
fn workloads(live: &BTreeMap<String, Value>, comp: &str, v: &mut Verdict) -> Option<Count> {
    let mut count: Option<Count> = None;
    for (name, o) in live.iter().filter(|(_, o)| component(o) == comp) {
        let desired = int(&o["spec"]["replicas"]);
        let ready = int(&o["status"]["readyReplicas"]);
        let updated = int(&o["status"]["updatedReplicas"]);
        let generation = o["metadata"]["generation"].as_i64().unwrap_or(0);
        let seen = o["status"]["observedGeneration"].as_i64().unwrap_or(0);
        let c = count.get_or_insert_with(Count::default);
        c.desired += desired;
        c.ready += ready;
        if ready < desired || updated < desired || seen < generation {
            v.progressing.push(format!("{comp} {name}: {ready}/{desired} ready"));
        }
        if desired > 0 && ready == 0 {
            v.ready.push(format!("{comp} {name} has no ready replica"));
        }
    }
    count
}

fn shards(clusters: &BTreeMap<String, Value>, v: &mut Verdict) -> (Count, Vec<ShardStatus>) {
    let mut total = Count::default();
    let mut out = Vec::new();
    for (name, o) in clusters {
        let desired = int(&o["spec"]["instances"]);
        let ready = int(&o["status"]["readyInstances"]);
        let phase = o["status"]["phase"].as_str().map(str::to_string);
        let primary = o["status"]["currentPrimary"].as_str().filter(|p| !p.is_empty()).map(str::to_string);
        let index = o["metadata"]["labels"][SHARD_LABEL].as_str().and_then(|s| s.parse().ok()).unwrap_or(-1);
        total.desired += desired;
        total.ready += ready;
        let healthy = phase.as_deref() == Some(CNPG_HEALTHY);
        if primary.is_none() || ready == 0 {
            v.ready.push(format!("database shard {index} ({name}) has no ready primary"));
        } else if ready < desired && healthy {
            // CloudNativePG keeps a cluster healthy while a replica is merely unready: the
            // shard serves, one short (Ready, but Degraded naming it).
            v.degraded.push((
                "ShardDegraded".into(),
                format!("database shard {index} ({name}): {ready}/{desired} instances ready"),
            ));
        } else if ready < desired {
            // Still creating its instances (or replacing one): not Ready until complete.
            v.ready.push(format!("database shard {index} ({name}): {ready}/{desired} instances ready"));
        }
        if !healthy {
            v.progressing
                .push(format!("database shard {index} ({name}): {}", phase.as_deref().unwrap_or("no status yet")));
        }
        out.push(ShardStatus { index, cluster: name.clone(), phase, instances: Count { desired, ready }, primary });
    }
    out.sort_by_key(|s| (s.index, s.cluster.clone()));
    (total, out)
}

fn condition(type_: &str, ok: bool, reason: &str, message: String, generation: Option<i64>, now: &Time) -> Condition {
    Condition {
        type_: type_.into(),
        status: if ok { "True" } else { "False" }.into(),
        reason: reason.into(),
        message,
        observed_generation: generation,
        last_transition_time: now.clone(),
    }
}

/// Keeps the previous transition time of each condition whose status did not change.
fn keep_transitions(mut conditions: Vec<Condition>, previous: &[Condition]) -> Vec<Condition> {
    for c in &mut conditions {
        if let Some(p) = previous.iter().find(|p| p.type_ == c.type_ && p.status == c.status) {
            c.last_transition_time = p.last_transition_time.clone();
        }
    }
    conditions
}

/// Computes the reconciler's status of `mall` from `observed` at time `now`.
pub fn compute(mall: &Mall, observed: &Observed<'_>, now: Time) -> ReconcilerStatus {
    let generation = mall.metadata.generation;
    let mut v = Verdict { ready: Vec::new(), progressing: Vec::new(), degraded: Vec::new() };
    let nothing = ChildSet::<Live>::default();
    // Workloads and database clusters report readiness; the other kinds have no status to count.
    let ChildSet {
        secrets: _,
        config_maps: _,
        services: _,
        network_policies: _,
        pod_disruption_budgets: _,
        object_stores: _,
        clusters,
        poolers: _,
        scheduled_backups: _,
        stateful_sets,
        deployments,
        jobs: _,
        http_routes: _,
        dns_endpoints: _,
    } = observed.live.unwrap_or(&nothing);
    let storefront = workloads(deployments, "storefront", &mut v);
    let edge = workloads(deployments, "edge", &mut v);
    let cache = workloads(stateful_sets, "cache", &mut v);
    let (database, shard_list) = shards(clusters, &mut v);
    if let Some(missing) = observed.missing.filter(|m| !m.is_empty()) {
        let names: Vec<String> =
            missing.iter().map(|(dep, children)| format!("{dep} (needed by {})", children.join(", "))).collect();
        v.degraded.push(("DependencyMissing".into(), format!("missing: {}", names.join("; "))));
        v.ready.push("a dependency is missing".into());
    }
    if let Some(err) = &observed.apply_error {
        v.degraded.push(("ApplyFailed".into(), err.clone()));
        v.ready.push("applying children failed".into());
    }
    if !observed.cleanup_blocked.is_empty() {
        let message = format!("deleting the Mall waits on: {}", observed.cleanup_blocked.join("; "));
        v.degraded.push(("CleanupBlocked".into(), message));
        v.ready.push("the Mall is being deleted".into());
    }
    for failure in &observed.unreachable {
        v.degraded.push(("RegionUnreachable".into(), failure.clone()));
        v.ready.push(failure.clone());
    }
    if !observed.conflicts.is_empty() {
        let message =
            format!("objects of another Mall with the same names were left alone: {}", observed.conflicts.join(", "));
        v.degraded.push(("OwnershipConflict".into(), message));
        v.ready.push("some children belong to another Mall".into());
    }
    for (reason, description) in &observed.refused {
        v.degraded.push((reason.clone(), description.clone()));
    }
    if let Some(err) = &observed.invalid {
        v.degraded.push(("InvalidSpec".into(), err.clone()));
        v.ready.push("the spec is invalid".into());
    }
    if storefront.is_none() && observed.invalid.is_none() && observed.cleanup_blocked.is_empty() {
        v.progressing.push("storefront not created yet".into());
        v.ready.push("storefront not created yet".into());
    }
    let mut conditions = vec![
        if v.ready.is_empty() {
            condition("Ready", true, "AllTiersServing", "every tier is serving".into(), generation, &now)
        } else {
            condition("Ready", false, "NotServing", v.ready.join("; "), generation, &now)
        },
        if v.progressing.is_empty() {
            condition("Progressing", false, "Converged", "every child matches the spec".into(), generation, &now)
        } else {
            condition("Progressing", true, "RollingOut", v.progressing.join("; "), generation, &now)
        },
        match v.degraded.first() {
            None => condition("Degraded", false, "Healthy", "nothing needs attention".into(), generation, &now),
            Some((reason, _)) => {
                let message = v.degraded.iter().map(|(_, m)| m.as_str()).collect::<Vec<_>>().join("; ");
                condition("Degraded", true, reason, message, generation, &now)
            }
        },
    ];
    conditions.push(match &mall.spec.database.backup {
        None => condition(
            "BackupsConfigured",
            false,
            "BackupsDisabled",
            "spec.database.backup is not set: no backups are taken".into(),
            generation,
            &now,
        ),
        Some(b) if b.encryption == mall_crds::database::Encryption::None => condition(
            "BackupsConfigured",
            true,
            "ScheduledUnencrypted",
            format!("backups on '{}' without server-side encryption", b.schedule),
            generation,
            &now,
        ),
        Some(b) => {
            condition("BackupsConfigured", true, "Scheduled", format!("backups on '{}'", b.schedule), generation, &now)
        }
    });
    let previous = mall.status.as_ref().map(|s| s.conditions.as_slice()).unwrap_or_default();
    let tiers = (observed.invalid.is_none()).then(|| TierCounts {
        storefront: storefront.unwrap_or_default(),
        database,
        cache,
        edge,
    });
    ReconcilerStatus {
        observed_generation: generation,
        conditions: keep_transitions(conditions, previous),
        tiers,
        shards: shard_list,
        // With a distributed topology the failover controller owns it; otherwise (one region,
        // or regions without standby replication) it is the spec's primary.
        active_region: crate::build::database::topology::Topology::of(mall)
            .is_none()
            .then(|| {
                mall.status.as_ref().and_then(|s| s.active_region.clone()).or_else(|| {
                    mall.spec.regions.iter().find(|r| r.role == mall_crds::RegionRole::Primary).map(|r| r.name.clone())
                })
            })
            .flatten(),
    }
}

#[cfg(test)]
mod tests;
