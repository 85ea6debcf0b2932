//! Children in member clusters, which no garbage collector removes: the finalizer, the record of
//! which members hold children, and the clean-up on delete.
//!
//! Contract: a Mall writes to a member cluster only after it carries the finalizer
//! [`FINALIZER`] and its annotation [`MEMBERS_ANNOTATION`] lists that member (one metadata
//! patch, conditioned on the resourceVersion). A member no longer named by the spec is emptied of
//! the Mall's children (only what its UID proves to be the Mall's) and then dropped from the
//! record; with no member left, the finalizer goes too. On delete every recorded member is
//! emptied and the finalizer removed; while a member cannot be reached the Mall stays, with a
//! `Degraded/CleanupBlocked` condition, unless the Mall is annotated
//! [`RELEASE_ANNOTATION`]`: "true"`, which releases it and reports, as a Warning Event, what was
//! left behind. Children in the operator's own cluster are removed by its garbage collector
//! (owner references) and need none of this.

use super::apply::{self, LiveSource, Owner};
use super::targets;
use super::{Context, Error};
use crate::build::{ChildSet, Target};
use kube::ResourceExt;
use kube::api::{Api, Patch, PatchParams};
use mall_crds::Mall;
use std::collections::BTreeSet;

/// Finalizer of a Mall with children in member clusters.
pub const FINALIZER: &str = "mallctl.io/member-cleanup";
/// Annotation listing the member clusters holding the Mall's children, as `secret/key`, comma
/// separated.
pub const MEMBERS_ANNOTATION: &str = "mallctl.io/member-clusters";
/// Annotation that, set to `"true"`, lets a Mall being deleted go although some member cluster
/// cannot be reached (its children there are left behind).
pub const RELEASE_ANNOTATION: &str = "mallctl.io/release-unreachable-members";

/// The members recorded on the Mall.
pub fn recorded(mall: &Mall) -> BTreeSet<Target> {
    let text = mall.annotations().get(MEMBERS_ANNOTATION).cloned().unwrap_or_default();
    text.split(',')
        .filter_map(|entry| {
            let (secret, key) = entry.trim().split_once('/')?;
            (!secret.is_empty() && !key.is_empty())
                .then(|| Target::Member { secret: secret.to_string(), key: key.to_string() })
        })
        .collect()
}

fn encode(members: &BTreeSet<Target>) -> Option<String> {
    let entries: Vec<String> = members
        .iter()
        .filter_map(|t| match t {
            Target::Member { secret, key } => Some(format!("{secret}/{key}")),
            Target::Local => None,
        })
        .collect();
    (!entries.is_empty()).then(|| entries.join(","))
}

fn has_finalizer(mall: &Mall) -> bool {
    mall.finalizers().iter().any(|f| f == FINALIZER)
}

/// Writes the finalizer and the member record as `members` says (finalizer present iff some
/// member is recorded); returns whether it wrote.
async fn write_record(ctx: &Context, mall: &Mall, members: &BTreeSet<Target>) -> Result<bool, Error> {
    let want_finalizer = !members.is_empty();
    let encoded = encode(members);
    let current = mall.annotations().get(MEMBERS_ANNOTATION).cloned();
    if has_finalizer(mall) == want_finalizer && current == encoded {
        return Ok(false);
    }
    let mut finalizers: Vec<String> = mall.finalizers().iter().filter(|f| *f != FINALIZER).cloned().collect();
    if want_finalizer {
        finalizers.push(FINALIZER.to_string());
    }
    let patch = serde_json::json!({"metadata": {
        "resourceVersion": mall.resource_version(),
        "finalizers": finalizers,
        "annotations": {MEMBERS_ANNOTATION: encoded},
    }});
    let api: Api<Mall> = Api::namespaced(ctx.client.clone(), &mall.namespace().unwrap_or_default());
    api.patch(&mall.name_any(), &PatchParams::default(), &Patch::Merge(&patch)).await.map_err(Error::Record)?;
    Ok(true)
}

/// Before applying: records every member the plan writes to (with the finalizer). Returns the
/// members recorded before that the plan no longer names (to be emptied), and whether it wrote.
pub async fn record_members(
    ctx: &Context,
    mall: &Mall,
    planned: &BTreeSet<Target>,
) -> Result<(BTreeSet<Target>, bool), Error> {
    let before = recorded(mall);
    let planned: BTreeSet<Target> = planned.iter().filter(|t| t.is_member()).cloned().collect();
    let union: BTreeSet<Target> = before.union(&planned).cloned().collect();
    let wrote = write_record(ctx, mall, &union).await?;
    Ok((before.difference(&planned).cloned().collect(), wrote))
}

/// After applying: drops from the record the members in `emptied` (no longer planned, and now
/// holding none of the Mall's children).
pub async fn forget_members(
    ctx: &Context,
    mall: &Mall,
    planned: &BTreeSet<Target>,
    emptied: &BTreeSet<Target>,
) -> Result<bool, Error> {
    if emptied.is_empty() {
        return Ok(false);
    }
    let fresh: Api<Mall> = Api::namespaced(ctx.client.clone(), &mall.namespace().unwrap_or_default());
    let Some(current) = fresh.get_opt(&mall.name_any()).await.map_err(Error::Record)? else { return Ok(false) };
    let keep: BTreeSet<Target> =
        recorded(&current).into_iter().filter(|t| planned.contains(t) || !emptied.contains(t)).collect();
    write_record(ctx, &current, &keep).await
}

/// What deleting a Mall did.
pub struct Finalized {
    /// Members that could not be emptied, described.
    pub blocked: Vec<String>,
    /// Whether the finalizer was removed (the Mall is gone or going).
    pub released: bool,
    /// Children deleted, as `Kind/name`.
    pub pruned: Vec<String>,
}

/// Deletes the Mall's children from every recorded member and, when done (or released by
/// [`RELEASE_ANNOTATION`]), removes the finalizer.
pub async fn finalize(ctx: &Context, mall: &Mall) -> Result<Finalized, Error> {
    let namespace = mall.namespace().ok_or(Error::NoNamespace)?;
    let name = mall.name_any();
    let members = recorded(mall);
    let resolved = targets::resolve(ctx, &namespace, &members).await;
    let owner = Owner { namespace: &namespace, name: &name, uid: mall.metadata.uid.as_deref() };
    let mut blocked = Vec::new();
    let mut pruned = Vec::new();
    for target in &members {
        let cluster = match resolved.get(target) {
            Some(Ok(cluster)) => cluster.clone(),
            Some(Err((error, _))) => {
                blocked.push(format!("{target}: {error}"));
                continue;
            }
            None => continue,
        };
        let emptied = async {
            let served = cluster.kinds.served(&cluster.client).await?;
            let source = LiveSource { stores: cluster.stores.as_ref() };
            Ok::<_, targets::TargetError>(
                apply::apply(&cluster.client, owner, ChildSet::default(), &served, source).await?,
            )
        };
        match emptied.await {
            Ok(applied) => pruned.extend(applied.pruned),
            Err(e) => {
                if let Target::Member { secret, key } = target {
                    let random = u64::from_le_bytes(ctx.entropy.bytes32()[..8].try_into().unwrap_or_default());
                    ctx.clusters.failed(&namespace, secret, key, &super::error_chain(&e), random);
                }
                blocked.push(format!("{target}: {}", super::error_chain(&e)));
            }
        }
    }
    let release = mall.annotations().get(RELEASE_ANNOTATION).is_some_and(|v| v == "true");
    let released = blocked.is_empty() || release;
    if released && has_finalizer(mall) {
        let finalizers: Vec<String> = mall.finalizers().iter().filter(|f| *f != FINALIZER).cloned().collect();
        let patch =
            serde_json::json!({"metadata": {"resourceVersion": mall.resource_version(), "finalizers": finalizers}});
        let api: Api<Mall> = Api::namespaced(ctx.client.clone(), &namespace);
        match api.patch(&name, &PatchParams::default(), &Patch::Merge(&patch)).await {
            Ok(_) => {}
            Err(kube::Error::Api(s)) if s.code == 404 => {}
            Err(e) => return Err(Error::Record(e)),
        }
    }
    Ok(Finalized { blocked, released, pruned })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::mall_from;
    use serde_json::json;

    #[test]
    fn the_member_record_round_trips_and_ignores_junk() {
        let members: BTreeSet<Target> = [
            Target::Member { secret: "eu".into(), key: "kubeconfig".into() },
            Target::Member { secret: "us".into(), key: "config".into() },
            Target::Local,
        ]
        .into();
        let encoded = encode(&members).expect("members");
        assert_eq!(encoded, "eu/kubeconfig,us/config");
        let mut mall = mall_from(json!({}));
        mall.metadata.annotations = Some([(MEMBERS_ANNOTATION.to_string(), format!("{encoded},junk,/x, a/"))].into());
        let back = recorded(&mall);
        assert_eq!(back.len(), 2);
        assert!(back.iter().all(Target::is_member));
        assert_eq!(encode(&BTreeSet::from([Target::Local])), None);
        assert!(!has_finalizer(&mall));
    }
}
