//! Step 3: make the cluster hold exactly the desired children — the only step that writes.
//!
//! Contract: server-side apply with one field manager ([`FIELD_MANAGER`]) and `force` (the
//! operator owns the fields it sets); an object whose live state already contains every desired
//! field is not written at all (a converged Mall costs zero writes); children carrying the
//! Mall's ownership labels that are no longer desired are deleted (pruning by label, so a tier
//! removed from the spec disappears). Kinds the cluster does not serve are skipped and reported.

use super::compare::is_subset;
use super::kinds::{Kind, MANAGED, find};
use crate::build::names::{FIELD_MANAGER, MALL_LABEL, MANAGED_BY};
use kube::api::{Api, DeleteParams, DynamicObject, ListParams, Patch, PatchParams};
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};

/// Why applying failed.
#[derive(Debug, thiserror::Error)]
pub enum ApplyError {
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

/// Applies `children` into `namespace`, prunes the Mall's children not among them, and returns
/// the live state. `served` holds the plural names of the kinds the server serves.
pub async fn apply(
    client: &kube::Client,
    namespace: &str,
    mall: &str,
    children: &[Value],
    served: &BTreeSet<&'static str>,
) -> Result<Applied, ApplyError> {
    let mut applied = Applied::default();
    let mut desired: BTreeMap<&'static str, Vec<(&Kind, String, &Value)>> = BTreeMap::new();
    for child in children {
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
    let params = ListParams::default().labels(&selector(mall));
    let kinds: Vec<&'static Kind> = MANAGED.iter().filter(|k| served.contains(k.plural)).collect();
    // One LIST per kind, all at once (they are independent reads); then apply in kind order.
    let lists = futures::future::try_join_all(kinds.iter().map(|kind| {
        let api: Api<DynamicObject> = Api::namespaced_with(client.clone(), namespace, &kind.api_resource());
        let params = params.clone();
        async move { api.list(&params).await.map_err(|source| ApplyError::List { plural: kind.plural, source }) }
    }))
    .await?;
    for (kind, existing) in kinds.into_iter().zip(lists) {
        let api: Api<DynamicObject> = Api::namespaced_with(client.clone(), namespace, &kind.api_resource());
        let mut live: BTreeMap<String, Value> = existing
            .items
            .into_iter()
            .filter_map(|o| Some((o.metadata.name.clone()?, serde_json::to_value(o).ok()?)))
            .collect();
        let wanted = desired.remove(kind.plural).unwrap_or_default();
        let wanted_names: BTreeSet<&str> = wanted.iter().map(|(_, n, _)| n.as_str()).collect();
        for (kind, name, child) in &wanted {
            if live.get(name).is_some_and(|l| converged(child, l)) {
                continue;
            }
            let result = api
                .patch(name, &PatchParams::apply(FIELD_MANAGER).force(), &Patch::Apply(child))
                .await
                .map_err(|source| ApplyError::Apply { kind: kind.kind, name: name.clone(), source })?;
            if let Ok(value) = serde_json::to_value(result) {
                live.insert(name.clone(), value);
            }
            applied.written.push(format!("{}/{name}", kind.kind));
        }
        let unwanted: Vec<String> = live.keys().filter(|n| !wanted_names.contains(n.as_str())).cloned().collect();
        for name in unwanted {
            match api.delete(&name, &DeleteParams::background()).await {
                Ok(_) => {}
                Err(kube::Error::Api(s)) if s.code == 404 => {}
                Err(source) => return Err(ApplyError::Prune { kind: kind.kind, name, source }),
            }
            live.remove(&name);
            applied.pruned.push(format!("{}/{name}", kind.kind));
        }
        applied.live.insert(kind.plural, live);
    }
    Ok(applied)
}
