//! Step 3 across clusters: apply each target cluster's share of the children, concurrently.
//!
//! Contract: every cluster the Mall's regions name gets its children; the operator's own cluster
//! is always visited (so children left there by an earlier spec are pruned). A member cluster
//! first gets the Mall's namespace and copies of the Secrets its children refer to; a target that
//! receives shard Clusters of a distributed topology first gets the failover epoch's admission
//! policy ([`super::fencing`]). A target that
//! cannot be reached or cannot be used (a bad kubeconfig Secret) becomes a [`RegionFailure`]
//! naming its regions and the error, while every other target is still applied (a write it
//! refuses is a [`super::refusal::Refusal`] tagged with its regions, not a failure);
//! the registry then leaves that member alone until its retry time ([`crate::clusters`]).

use super::apply::{self, Applied, LiveSource, Owner};
use super::{Context, secrets};
use crate::build::{ChildSet, Scope, Target};
use crate::clusters::{Cluster, ClusterError};
use k8s_openapi::api::core::v1::Namespace;
use kube::api::{Api, Patch, PatchParams};
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

/// Why one target could not be reconciled.
#[derive(Debug, thiserror::Error)]
pub enum TargetError {
    /// The member cluster could not be used.
    #[error(transparent)]
    Cluster(#[from] ClusterError),
    /// Discovery failed.
    #[error(transparent)]
    Discovery(#[from] super::kinds::DiscoveryError),
    /// The namespace could not be made.
    #[error("creating namespace {namespace}")]
    Namespace {
        /// Namespace.
        namespace: String,
        /// Cause.
        #[source]
        source: kube::Error,
    },
    /// Secrets could not be read, generated or copied.
    #[error(transparent)]
    Secrets(#[from] secrets::SecretsError),
    /// The failover epoch's admission policy could not be installed.
    #[error(transparent)]
    Fencing(#[from] super::fencing::FencingError),
    /// Applying failed.
    #[error(transparent)]
    Apply(#[from] apply::ApplyError),
}

/// One target that could not be reconciled this time.
#[derive(Debug)]
pub struct RegionFailure {
    /// The regions whose children go there (empty: the Mall's only, unnamed region).
    pub regions: Vec<String>,
    /// The target.
    pub target: Target,
    /// The error, on one line.
    pub error: String,
    /// When to look again (members only).
    pub retry_in: Option<Duration>,
}

impl RegionFailure {
    /// `region eu, us: <error>` (or `<target>: <error>` for a Mall without regions).
    pub fn describe(&self) -> String {
        if self.regions.is_empty() {
            format!("{}: {}", self.target, self.error)
        } else {
            let label = if self.regions.len() == 1 { "region" } else { "regions" };
            format!("{label} {} ({}): {}", self.regions.join(", "), self.target, self.error)
        }
    }
}

/// The cluster of `target`.
pub async fn cluster(ctx: &Context, namespace: &str, target: &Target) -> Result<Arc<Cluster>, ClusterError> {
    match target {
        Target::Local => Ok(ctx.clusters.local()),
        Target::Member { secret, key } => ctx.clusters.member(namespace, secret, key).await,
    }
}

/// Creates `namespace` in a member cluster unless it already exists (a GET, then a create).
async fn ensure_namespace(cluster: &Cluster, namespace: &str) -> Result<(), TargetError> {
    if cluster.has_namespace(namespace) {
        return Ok(());
    }
    let api: Api<Namespace> = Api::all(cluster.client.clone());
    let err = |source| TargetError::Namespace { namespace: namespace.into(), source };
    if api.get_opt(namespace).await.map_err(err)?.is_none() {
        let object = serde_json::json!({
            "apiVersion": "v1", "kind": "Namespace",
            "metadata": {"name": namespace, "labels": {
                "app.kubernetes.io/managed-by": crate::build::names::MANAGED_BY,
                "pod-security.kubernetes.io/enforce": "restricted",
            }},
        });
        api.patch(namespace, &PatchParams::apply(crate::build::names::FIELD_MANAGER), &Patch::Apply(&object))
            .await
            .map_err(err)?;
    }
    cluster.namespace_seen(namespace);
    Ok(())
}

/// Applies `children` (this target's share) into `cluster`.
pub async fn apply_target(
    plan: &crate::validate::Plan<'_>,
    target: &Target,
    cluster: &Cluster,
    mut children: ChildSet,
    sources: &[k8s_openapi::api::core::v1::Secret],
) -> Result<Applied, TargetError> {
    let served = cluster.kinds.served(&cluster.client).await?;
    if target.is_member() {
        ensure_namespace(cluster, &plan.namespace).await?;
        if let Some(scope) = plan.scopes.iter().find(|s| &s.target == target) {
            let copies = secrets::member_copies(cluster, plan.mall, &plan.namespace, scope, sources).await?;
            children.secrets.splice(0..0, copies);
        }
    }
    // Shard Clusters of a distributed topology only go where the epoch fence guards them.
    if !children.clusters.is_empty() && crate::build::database::topology::Topology::of(plan.mall).is_some() {
        super::fencing::ensure(&cluster.client).await?;
    }
    let owner = Owner { namespace: &plan.namespace, name: &plan.name, uid: plan.uid.as_deref() };
    Ok(apply::apply(&cluster.client, owner, children, &served, LiveSource { stores: cluster.stores.as_ref() }).await?)
}

/// What all targets did together.
#[derive(Debug, Default)]
pub struct Outcome {
    /// Merged results of the targets that were applied.
    pub applied: Applied,
    /// Targets that failed.
    pub failures: Vec<RegionFailure>,
}

/// Applies every target's children concurrently (`by_target` from the builders; `extra` are
/// targets to visit with no children, to prune what an earlier spec left there).
pub async fn apply_all(
    ctx: &Context,
    plan: &crate::validate::Plan<'_>,
    resolved: &Resolved,
    mut by_target: BTreeMap<Target, ChildSet>,
    extra: &BTreeSet<Target>,
    sources: &[k8s_openapi::api::core::v1::Secret],
) -> Outcome {
    // Every target looked up is visited: one that could not be resolved reports its failure.
    for target in extra.iter().chain(resolved.keys()) {
        by_target.entry(target.clone()).or_default();
    }
    by_target.entry(Target::Local).or_default();
    let runs = by_target.into_iter().map(|(target, children)| async move {
        let result = match resolved.get(&target) {
            Some(Ok(cluster)) => apply_target(plan, &target, cluster, children, sources).await.map_err(|e| {
                cluster.forget_namespaces();
                let retry = match &e {
                    TargetError::Cluster(c) => c.retry_in(),
                    _ => None,
                };
                (super::error_chain(&e), retry)
            }),
            Some(Err(failed)) => Err(failed.clone()),
            None => Err(("no client for this cluster".to_string(), None)),
        };
        (target, result)
    });
    let results = futures::future::join_all(runs).await;
    let mut outcome = Outcome::default();
    for (target, result) in results {
        match result {
            Ok(mut applied) => {
                if let Target::Member { secret, key } = &target {
                    ctx.clusters.succeeded(&plan.namespace, secret, key);
                }
                let regions: Vec<String> = plan.regions_in(&target).into_iter().map(str::to_string).collect();
                for refusal in &mut applied.refused {
                    refusal.regions.clone_from(&regions);
                }
                merge(&mut outcome.applied, applied);
            }
            Err((error, retry_in)) => {
                let retry_in = match (&target, retry_in) {
                    (Target::Member { secret, key }, None) => {
                        let random = u64::from_le_bytes(ctx.entropy.bytes32()[..8].try_into().unwrap_or_default());
                        Some(ctx.clusters.failed(&plan.namespace, secret, key, &error, random))
                    }
                    (_, retry) => retry,
                };
                let regions = plan.regions_in(&target).into_iter().map(str::to_string).collect();
                outcome.failures.push(RegionFailure { regions, target, error, retry_in });
            }
        }
    }
    outcome
}

fn merge(into: &mut Applied, from: Applied) {
    into.written.extend(from.written);
    into.pruned.extend(from.pruned);
    into.conflicts.extend(from.conflicts);
    into.refused.extend(from.refused);
    for (dependency, children) in from.missing {
        into.missing.entry(dependency).or_default().extend(children);
    }
    for (plural, objects) in from.live {
        into.live.entry(plural).or_default().extend(objects);
    }
}

/// Each target's cluster, or why it cannot be used (the error on one line and, for a member
/// cooling down, when to look again).
pub type Resolved = BTreeMap<Target, Result<Arc<Cluster>, (String, Option<Duration>)>>;

/// Resolves every target's cluster.
pub async fn resolve(ctx: &Context, namespace: &str, targets: &BTreeSet<Target>) -> Resolved {
    let lookups = targets.iter().map(|target| async move {
        let result = cluster(ctx, namespace, target).await.map_err(|e| match &e {
            ClusterError::CoolingDown { last, retry_in } => (last.clone(), Some(*retry_in)),
            other => (super::error_chain(other), None),
        });
        (target.clone(), result)
    });
    futures::future::join_all(lookups).await.into_iter().collect()
}

/// The scopes whose cluster resolved, with it.
pub fn resolved_scopes<'a>(plan: &crate::validate::Plan<'a>, resolved: &Resolved) -> Vec<(Scope<'a>, Arc<Cluster>)> {
    plan.scopes
        .iter()
        .filter_map(|s| match resolved.get(&s.target) {
            Some(Ok(cluster)) => Some((s.clone(), cluster.clone())),
            _ => None,
        })
        .collect()
}
