//! Step 3: make the cluster hold exactly the desired children — the only step that writes.
//!
//! Contract: server-side apply with one field manager ([`FIELD_MANAGER`]) and `force` (the
//! operator owns the fields it sets); an object whose live state already contains every desired
//! field is not written at all (a converged Mall costs zero writes); children that are provably
//! this Mall's — its UID label, or a controller owner reference to its UID — and no longer
//! desired are deleted (so a tier removed from the spec disappears), and nothing else ever is: an
//! object with the Mall's name label but another UID (another hub's Mall of the same name in a
//! shared member cluster) is neither pruned nor overwritten, it is reported as a conflict. Kinds
//! the cluster does not serve are skipped and reported.
//!
//! The desired children come in as one typed [`ChildSet`]; [`serialize`] is the one place they
//! become the JSON server-side apply sends (with `apiVersion` and `kind`, Secrets normalized by
//! [`secrets::normalize`](super::secrets::normalize)), and [`keep`] the names pruning keeps. Both
//! destructure the set without `..`. Pruning looks at every kind in
//! [`MANAGED`](super::kinds::MANAGED), whether or not the set holds objects of it.

use super::compare::is_subset;
use super::kinds::{Kind, MANAGED, find};
use super::refusal::{Authority, Refusal};
use super::store::ChildStores;
use crate::build::ChildSet;
use crate::build::kinds::{KindsError, resource_value};
use crate::build::names::{FIELD_MANAGER, MALL_LABEL, MALL_UID_LABEL, MANAGED_BY};
use futures::{StreamExt, TryStreamExt};
use kube::api::{Api, DeleteParams, DynamicObject, ListParams, Patch, PatchParams};
use serde::Serialize;
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};

/// Why applying failed.
#[derive(Debug, thiserror::Error)]
pub enum ApplyError {
    /// A built child did not serialize (a builder bug).
    #[error("serializing a child")]
    Serialize(#[source] KindsError),
    /// A built child has no kind the operator manages (a builder bug).
    #[error("child {api_version}/{kind} {name} is not a managed kind")]
    UnknownKind {
        /// apiVersion of the child.
        api_version: String,
        /// Kind of the child.
        kind: String,
        /// Name of the child.
        name: String,
    },
    /// Listing existing children failed.
    #[error("listing {plural}")]
    List {
        /// Resource.
        plural: &'static str,
        /// Cause.
        #[source]
        source: kube::Error,
    },
    /// A server-side apply failed.
    #[error("applying {kind} {name}")]
    Apply {
        /// Kind.
        kind: &'static str,
        /// Name.
        name: String,
        /// Cause.
        #[source]
        source: kube::Error,
    },
    /// Deleting an unwanted child failed.
    #[error("pruning {kind} {name}")]
    Prune {
        /// Kind.
        kind: &'static str,
        /// Name.
        name: String,
        /// Cause.
        #[source]
        source: kube::Error,
    },
}

/// What apply did and saw.
#[derive(Debug, Default)]
pub struct Applied {
    /// Children written (created or changed), as `Kind/name`.
    pub written: Vec<String>,
    /// Children deleted by pruning, as `Kind/name`.
    pub pruned: Vec<String>,
    /// Children skipped because their kind is not served, with the missing dependency.
    pub missing: BTreeMap<&'static str, Vec<String>>,
    /// Live children after apply, by plural resource name then object name.
    pub live: BTreeMap<&'static str, BTreeMap<String, Value>>,
    /// Desired children left alone because an object of that name belongs to another Mall.
    pub conflicts: Vec<String>,
    /// Writes the API server refused ([`super::refusal`]); the other children were still applied,
    /// unless the refusal came from the epoch fence ([`apply`]).
    pub refused: Vec<Refusal>,
}

/// Whether a live object is provably the Mall's with UID `uid`: its UID label says so, or it has
/// no UID label and a controller owner reference to that UID (children made before the label).
/// Without a UID (a Mall not yet stored) every labelled object counts as the Mall's.
pub fn is_ours(object: &Value, uid: Option<&str>) -> bool {
    let Some(uid) = uid else { return true };
    match object["metadata"]["labels"][MALL_UID_LABEL].as_str() {
        Some(label) => label == uid,
        None => object["metadata"]["ownerReferences"]
            .as_array()
            .into_iter()
            .flatten()
            .any(|o| o["uid"].as_str() == Some(uid) && o["controller"].as_bool() == Some(true)),
    }
}

/// Whether the live object already holds every field of the desired one. Items of a list
/// response carry no `apiVersion`/`kind`, so those are left out of the comparison.
fn converged(desired: &Value, live: &Value) -> bool {
    match desired.as_object() {
        Some(fields) => fields
            .iter()
            .filter(|(k, _)| k.as_str() != "apiVersion" && k.as_str() != "kind")
            .all(|(k, v)| live.get(k).is_some_and(|l| is_subset(v, l))),
        None => false,
    }
}

/// The label selector of every child of the Mall `mall`.
pub fn selector(mall: &str) -> String {
    format!("app.kubernetes.io/managed-by={MANAGED_BY},{MALL_LABEL}={mall}")
}

/// Where apply reads the live children from.
#[derive(Clone, Copy)]
pub struct LiveSource<'a> {
    /// Watch-fed caches (the operator); `None`: LIST every kind (tests, one-shot tools).
    pub stores: Option<&'a ChildStores>,
}

/// Kinds applied before the workloads that use them (configuration, Services, policies): a
/// workload never starts without its default-deny NetworkPolicy or its ConfigMap.
fn stage(kind: &Kind) -> usize {
    match kind.plural {
        "secrets" | "configmaps" | "services" | "networkpolicies" | "poddisruptionbudgets" | "objectstores" => 0,
        _ => 1,
    }
}

/// Writes (applies or deletes) in flight at once for one Mall.
const WRITES_IN_FLIGHT: usize = 16;

/// The Mall whose children are applied.
#[derive(Clone, Copy, Debug)]
pub struct Owner<'a> {
    /// Namespace (of the Mall, and of its children in every cluster).
    pub namespace: &'a str,
    /// Mall name.
    pub name: &'a str,
    /// Mall UID (`None` before it is stored).
    pub uid: Option<&'a str>,
}

/// The objects of one kind as JSON with `apiVersion` and `kind`.
fn values<T>(objects: Vec<T>) -> Result<Vec<Value>, ApplyError>
where
    T: Serialize + kube::Resource<DynamicType = ()>,
{
    objects.iter().map(|object| resource_value(object).map_err(ApplyError::Serialize)).collect()
}

/// The desired children as the JSON server-side apply sends, kind by kind in field order.
pub fn serialize(children: ChildSet) -> Result<Vec<Value>, ApplyError> {
    let ChildSet {
        secrets,
        config_maps,
        services,
        network_policies,
        pod_disruption_budgets,
        object_stores,
        clusters,
        poolers,
        scheduled_backups,
        stateful_sets,
        deployments,
        jobs,
        http_routes,
        dns_endpoints,
    } = children;
    let mut out = super::secrets::normalize(values(secrets)?);
    out.extend(values(config_maps)?);
    out.extend(values(services)?);
    out.extend(values(network_policies)?);
    out.extend(values(pod_disruption_budgets)?);
    out.extend(values(object_stores)?);
    out.extend(values(clusters)?);
    out.extend(values(poolers)?);
    out.extend(values(scheduled_backups)?);
    out.extend(values(stateful_sets)?);
    out.extend(values(deployments)?);
    out.extend(values(jobs)?);
    out.extend(values(http_routes)?);
    out.extend(values(dns_endpoints)?);
    Ok(out)
}

/// Adds the names of `objects` to what pruning keeps of their kind.
fn keep_names<T: kube::Resource<DynamicType = ()>>(keep: &mut BTreeMap<String, BTreeSet<String>>, objects: &[T]) {
    let names = objects.iter().filter_map(|o| o.meta().name.clone());
    keep.entry(T::plural(&()).into_owned()).or_default().extend(names);
}

/// The names pruning keeps, by plural resource name: those of the desired children. A kind
/// absent here keeps nothing.
pub fn keep(children: &ChildSet) -> BTreeMap<String, BTreeSet<String>> {
    let ChildSet {
        secrets,
        config_maps,
        services,
        network_policies,
        pod_disruption_budgets,
        object_stores,
        clusters,
        poolers,
        scheduled_backups,
        stateful_sets,
        deployments,
        jobs,
        http_routes,
        dns_endpoints,
    } = children;
    let mut keep = BTreeMap::new();
    keep_names(&mut keep, secrets);
    keep_names(&mut keep, config_maps);
    keep_names(&mut keep, services);
    keep_names(&mut keep, network_policies);
    keep_names(&mut keep, pod_disruption_budgets);
    keep_names(&mut keep, object_stores);
    keep_names(&mut keep, clusters);
    keep_names(&mut keep, poolers);
    keep_names(&mut keep, scheduled_backups);
    keep_names(&mut keep, stateful_sets);
    keep_names(&mut keep, deployments);
    keep_names(&mut keep, jobs);
    keep_names(&mut keep, http_routes);
    keep_names(&mut keep, dns_endpoints);
    keep
}

/// Applies `children` into the owner's namespace, prunes the Mall's children not among them,
/// and returns the live state. `served` holds the plural names of the kinds the server serves.
/// Children are applied in two stages (configuration, then workloads); within a stage,
/// concurrently.
pub async fn apply(
    client: &kube::Client,
    owner: Owner<'_>,
    children: ChildSet,
    served: &BTreeSet<&'static str>,
    source: LiveSource<'_>,
) -> Result<Applied, ApplyError> {
    let (namespace, mall) = (owner.namespace, owner.name);
    let mut applied = Applied::default();
    let keep = keep(&children);
    let children = serialize(children)?;
    let mut desired: BTreeMap<&'static str, Vec<(&'static Kind, String, &Value)>> = BTreeMap::new();
    for child in &children {
        let api_version = child["apiVersion"].as_str().unwrap_or_default();
        let kind_name = child["kind"].as_str().unwrap_or_default();
        let name = child["metadata"]["name"].as_str().unwrap_or_default().to_string();
        let kind = find(api_version, kind_name).ok_or_else(|| ApplyError::UnknownKind {
            api_version: api_version.into(),
            kind: kind_name.into(),
            name: name.clone(),
        })?;
        if !served.contains(kind.plural) {
            let dependency = kind.dependency.unwrap_or(kind.plural);
            applied.missing.entry(dependency).or_default().push(format!("{}/{name}", kind.kind));
            continue;
        }
        desired.entry(kind.plural).or_default().push((kind, name, child));
    }
    let kinds: Vec<&'static Kind> = MANAGED.iter().filter(|k| served.contains(k.plural)).collect();
    let lists =
        futures::future::try_join_all(kinds.iter().map(|kind| live_children(client, namespace, mall, kind, source)))
            .await?;
    let mut live: BTreeMap<&'static str, BTreeMap<String, Value>> = kinds.iter().map(|k| k.plural).zip(lists).collect();
    // Objects of another Mall of the same name (same name label, other UID) are set aside: never
    // pruned, never overwritten, never counted as this Mall's.
    let mut foreign: BTreeSet<(&'static str, String)> = BTreeSet::new();
    for (plural, objects) in &mut live {
        objects.retain(|name, object| {
            let ours = is_ours(object, owner.uid);
            if !ours {
                foreign.insert((plural, name.clone()));
            }
            ours
        });
    }
    if fenced_out(client, namespace, &desired, &mut live, &mut applied).await? {
        applied.live = live;
        return Ok(applied);
    }
    for current in 0..2 {
        let in_stage: Vec<&'static Kind> = kinds.iter().copied().filter(|k| stage(k) == current).collect();
        let mut writes = Vec::new();
        for kind in &in_stage {
            let existing = live.get(kind.plural);
            for (kind, name, child) in desired.get(kind.plural).into_iter().flatten() {
                if foreign.contains(&(kind.plural, name.clone())) {
                    applied.conflicts.push(format!("{}/{name}", kind.kind));
                    continue;
                }
                let mut child = (*child).clone();
                let current = existing.and_then(|l| l.get(name));
                super::handoff::prepare(&mut child, current);
                if current.is_some_and(|l| converged(&child, l)) {
                    continue;
                }
                writes.push(Write::Apply { kind, name: name.clone(), child });
            }
            let wanted = keep.get(kind.plural);
            for name in existing.into_iter().flat_map(|l| l.keys()).filter(|n| !wanted.is_some_and(|w| w.contains(*n)))
            {
                writes.push(Write::Delete { kind, name: name.clone() });
            }
        }
        let done: Vec<Done> = futures::stream::iter(writes.into_iter().map(|w| w.run(client, namespace)))
            .buffer_unordered(WRITES_IN_FLIGHT)
            .try_collect()
            .await?;
        for outcome in done {
            outcome.record(&mut applied, &mut live);
        }
    }
    // Completion order is arbitrary; events and logs read better in kind order.
    let order = |entry: &String| {
        let kind = entry.split('/').next().unwrap_or_default();
        (MANAGED.iter().position(|k| k.kind == kind), entry.clone())
    };
    applied.written.sort_by_key(order);
    applied.pruned.sort_by_key(order);
    applied.live = live;
    Ok(applied)
}

/// The Mall's live children of `kind`: from the cache when it has them, else one LIST.
async fn live_children(
    client: &kube::Client,
    namespace: &str,
    mall: &str,
    kind: &'static Kind,
    source: LiveSource<'_>,
) -> Result<BTreeMap<String, Value>, ApplyError> {
    if let Some(cached) = source.stores.and_then(|s| s.children(kind, namespace, mall)) {
        return Ok(cached);
    }
    let api: Api<DynamicObject> = Api::namespaced_with(client.clone(), namespace, &kind.api_resource());
    let params = ListParams::default().labels(&selector(mall));
    let list = api.list(&params).await.map_err(|source| ApplyError::List { plural: kind.plural, source })?;
    Ok(list.items.into_iter().filter_map(|o| Some((o.metadata.name.clone()?, serde_json::to_value(o).ok()?))).collect())
}

/// One write of a reconcile.
enum Write {
    Apply { kind: &'static Kind, name: String, child: Value },
    Delete { kind: &'static Kind, name: String },
}

/// What a write did.
enum Done {
    Applied {
        kind: &'static Kind,
        name: String,
        value: Option<Value>,
    },
    Deleted {
        kind: &'static Kind,
        name: String,
    },
    /// The API server answered with a verdict against the object ([`super::refusal`]).
    Refused(Refusal),
}

impl Done {
    /// Records what this write did in `applied` and in the `live` objects.
    fn record(self, applied: &mut Applied, live: &mut BTreeMap<&'static str, BTreeMap<String, Value>>) {
        match self {
            Done::Applied { kind, name, value } => {
                applied.written.push(format!("{}/{name}", kind.kind));
                if let Some(value) = value {
                    live.entry(kind.plural).or_default().insert(name, value);
                }
            }
            Done::Deleted { kind, name } => {
                if let Some(l) = live.get_mut(kind.plural) {
                    l.remove(&name);
                }
                applied.pruned.push(format!("{}/{name}", kind.kind));
            }
            Done::Refused(refusal) => applied.refused.push(refusal),
        }
    }
}

/// The writes of a stale view go first: a desired topology member whose epoch is older than
/// its live Cluster's ([`super::handoff::is_stale`]) is applied before anything else, as this
/// operator's view has it. When the member cluster's fence refuses one, nothing else is written
/// in that cluster (returns `true`; the refusals are in `applied`): an operator fenced by a newer
/// failover must not resize, repoint or prune the rest of a region it no longer governs either.
async fn fenced_out(
    client: &kube::Client,
    namespace: &str,
    desired: &BTreeMap<&'static str, Vec<(&'static Kind, String, &Value)>>,
    live: &mut BTreeMap<&'static str, BTreeMap<String, Value>>,
    applied: &mut Applied,
) -> Result<bool, ApplyError> {
    let stale: Vec<Write> = desired
        .values()
        .flatten()
        .filter(|(kind, name, child)| super::handoff::is_stale(child, live.get(kind.plural).and_then(|l| l.get(name))))
        .map(|(kind, name, child)| Write::Apply { kind, name: name.clone(), child: (*child).clone() })
        .collect();
    if stale.is_empty() {
        return Ok(false);
    }
    let mut fenced = false;
    for write in stale {
        let done = write.run(client, namespace).await?;
        fenced |= matches!(&done, Done::Refused(r) if r.authority == Authority::EpochFence);
        done.record(applied, live);
    }
    Ok(fenced)
}

impl Write {
    async fn run(self, client: &kube::Client, namespace: &str) -> Result<Done, ApplyError> {
        match self {
            Write::Apply { kind, name, child } => {
                let api: Api<DynamicObject> = Api::namespaced_with(client.clone(), namespace, &kind.api_resource());
                match api.patch(&name, &PatchParams::apply(FIELD_MANAGER).force(), &Patch::Apply(&child)).await {
                    Ok(result) => Ok(Done::Applied { kind, name, value: serde_json::to_value(result).ok() }),
                    Err(source) => match super::refusal::classify(format!("{}/{name}", kind.kind), &source) {
                        Some(refusal) => Ok(Done::Refused(refusal)),
                        None => Err(ApplyError::Apply { kind: kind.kind, name, source }),
                    },
                }
            }
            Write::Delete { kind, name } => {
                let api: Api<DynamicObject> = Api::namespaced_with(client.clone(), namespace, &kind.api_resource());
                match api.delete(&name, &DeleteParams::background()).await {
                    Ok(_) => {}
                    Err(kube::Error::Api(s)) if s.code == 404 => {}
                    Err(source) => return Err(ApplyError::Prune { kind: kind.kind, name, source }),
                }
                Ok(Done::Deleted { kind, name })
            }
        }
    }
}
