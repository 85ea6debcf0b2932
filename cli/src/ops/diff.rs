//! `mallctl diff -f FILE...`: what applying the manifests would change, object by object, in
//! every cluster the Mall's regions use — judged by the API servers themselves.
//!
//! Contract: every document must be a valid Mall (validated offline first, as `apply` does).
//! For each Mall: the Mall itself is server-side applied as a dry run (field manager `mallctl`)
//! and its spec compared with the live one; then its children are built as the operator would
//! build them from the new spec and the live status (active region, epoch, UID), the operator's
//! hand-overs applied (autoscaled replica fields, failover roles), and each is server-side applied
//! as a dry run with the operator's field manager in its region's cluster (the operator's own,
//! or a member reached through the region's kubeconfig Secret, as the operator reaches it); the
//! dry-run result is compared with the live object. Nothing is written anywhere. Printed: a
//! unified diff per changed object (`--- live` / `+++ after apply`, YAML, without status,
//! `managedFields`, `resourceVersion` and other server bookkeeping), `would create`/`would
//! delete` lines, and kinds a cluster does not serve. Secret values are never printed: both sides
//! show `<hidden>` for every data key. Exit 0: no differences; 1: differences; 2: an error (as
//! `kubectl diff`).

use super::{Connection, KubeArgs};
use anyhow::{Context as _, bail};
use kube::api::{Api, DynamicObject, ListParams, Patch, PatchParams};
use mall_controllers::build::{self, Target};
use mall_controllers::clusters::{Cluster, Clusters, Settings};
use mall_controllers::reconcile::{apply, dbsecrets, handoff, kinds, secrets};
use mall_crds::Mall;
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};

/// One object's difference.
#[derive(Debug, PartialEq, Eq)]
pub enum Change {
    /// Absent now; created by the apply.
    Create,
    /// Present; these lines change (a unified diff).
    Update(String),
    /// Present, a child of the Mall no longer built: the operator deletes it.
    Delete,
    /// Its kind is not served by that cluster: the operator skips it (a missing dependency).
    NotServed(&'static str),
}

/// Server bookkeeping and status, left out of the comparison; Secret values hidden.
pub fn normalize(object: &Value) -> Value {
    let mut object = object.clone();
    if let Some(map) = object.as_object_mut() {
        map.remove("status");
    }
    if let Some(meta) = object.get_mut("metadata").and_then(Value::as_object_mut) {
        for key in ["managedFields", "resourceVersion", "generation", "creationTimestamp", "uid", "selfLink"] {
            meta.remove(key);
        }
        if meta.get("annotations").and_then(Value::as_object).is_some_and(serde_json::Map::is_empty) {
            meta.remove("annotations");
        }
    }
    if object["kind"] == "Secret" {
        for field in ["data", "stringData"] {
            if let Some(data) = object.get_mut(field).and_then(Value::as_object_mut) {
                for value in data.values_mut() {
                    *value = Value::String("<hidden>".into());
                }
            }
        }
    }
    object
}

/// A unified diff of two objects as YAML (`None`: equal).
pub fn unified(live: &Value, after: &Value, label: &str) -> Option<String> {
    let (a, b) = (yaml(&normalize(live)), yaml(&normalize(after)));
    if a == b {
        return None;
    }
    let diff = similar::TextDiff::from_lines(&a, &b);
    Some(
        diff.unified_diff()
            .context_radius(3)
            .header(&format!("live/{label}"), &format!("after-apply/{label}"))
            .to_string(),
    )
}

fn yaml(value: &Value) -> String {
    serde_saphyr::to_string(value).unwrap_or_else(|_| value.to_string())
}

/// Dry-run server-side apply of `object` as `manager`; the object the server would store.
async fn dry_apply(api: &Api<DynamicObject>, name: &str, object: &Value, manager: &str) -> anyhow::Result<Value> {
    let params = PatchParams { dry_run: true, ..PatchParams::apply(manager).force() };
    match api.patch(name, &params, &Patch::Apply(object)).await {
        Ok(stored) => Ok(serde_json::to_value(stored)?),
        Err(kube::Error::Api(status)) => bail!("the API server would refuse {name}: {}", status.message),
        Err(e) => Err(e).with_context(|| format!("dry-run apply of {name}")),
    }
}

/// What one Mall document would change; lines are printed as they are found.
async fn mall_changes(
    conn: &Connection,
    namespace: Option<&str>,
    doc: &Value,
    out: &mut Vec<(String, Change)>,
) -> anyhow::Result<()> {
    let name = doc["metadata"]["name"].as_str().unwrap_or_default().to_string();
    // As `apply`: -n, else the manifest's, else the context's.
    let namespace = namespace.or_else(|| doc["metadata"]["namespace"].as_str()).unwrap_or(&conn.namespace).to_string();
    let mall_api: Api<Mall> = Api::namespaced(conn.client.clone(), &namespace);
    let live_mall = mall_api.get_opt(&name).await.with_context(|| format!("reading Mall {namespace}/{name}"))?;
    let raw: Api<DynamicObject> =
        Api::namespaced_with(conn.client.clone(), &namespace, &kube::api::ApiResource::erase::<Mall>(&()));
    let mut doc = doc.clone();
    doc["metadata"]["namespace"] = Value::String(namespace.clone());
    let after = dry_apply(&raw, &name, &doc, "mallctl").await?;
    let label = format!("Mall/{name}");
    match &live_mall {
        None => out.push((label, Change::Create)),
        Some(live) => {
            let spec = |v: &Value| serde_json::json!({"kind": "Mall", "metadata": {"name": name}, "spec": v["spec"]});
            if let Some(d) = unified(&spec(&serde_json::to_value(live)?), &spec(&after), &label) {
                out.push((label, Change::Update(d)));
            }
        }
    }
    // The children the operator would build from the new spec and the live status.
    let mut desired: Mall = serde_json::from_value(after).context("the dry-run Mall")?;
    if let Some(live) = &live_mall {
        desired.status = live.status.clone();
        desired.metadata.uid = live.metadata.uid.clone();
    }
    let plan = mall_controllers::validate::plan(&desired).map_err(|e| anyhow::anyhow!("{e}"))?;
    let settings = Settings { user_agent: format!("mallctl/{}", env!("CARGO_PKG_VERSION")), ..Settings::default() };
    let clusters = Clusters::new(Cluster::new("local", conn.client.clone(), settings.discovery_ttl, None), settings);
    let mut reached: BTreeMap<Target, std::sync::Arc<Cluster>> = BTreeMap::new();
    for target in plan.targets().into_iter().chain([Target::Local]) {
        let cluster = match &target {
            Target::Local => clusters.local(),
            Target::Member { secret, key } => clusters
                .member(&namespace, secret, key)
                .await
                .map_err(|e| anyhow::anyhow!(mall_controllers::reconcile::error_chain(&e)))
                .with_context(|| {
                    format!("reaching the cluster of region {} (Secret {secret})", plan.regions_in(&target).join(","))
                })?,
        };
        reached.insert(target, cluster);
    }
    // The cache passwords as the operator would read them back (values are never printed).
    let scopes: Vec<_> =
        plan.scopes.iter().filter_map(|s| Some((s.clone(), reached.get(&s.target)?.clone()))).collect();
    let entropy = mall_controllers::reconcile::OsEntropy;
    let credentials =
        mall_controllers::reconcile::secrets::CacheCredentials::resolve(&desired, &namespace, &entropy, &scopes)
            .await
            .context("reading the cache credentials")?;
    let mut by_target =
        build::children_by_target(&plan, &|scope| credentials.for_scope(scope)).context("building the children")?;
    // The Secrets the reconciler adds: the shard credentials of a distributed topology (in the
    // hub) and, in each member, copies of the hub's Secrets the children refer to.
    let local = clusters.local();
    let shard_credentials =
        dbsecrets::resolve(&local, &desired, &namespace, &entropy).await.context("shard credentials")?;
    if plan.has_members() {
        let mut sources = secrets::hub_sources(&local, &desired, &namespace).await.context("hub Secrets")?;
        sources.extend(shard_credentials.iter().cloned());
        for scope in plan.scopes.iter().filter(|s| s.target.is_member()) {
            let Some(cluster) = reached.get(&scope.target) else { continue };
            let copies = secrets::member_copies(cluster, &desired, &namespace, scope, &sources)
                .await
                .context("Secret copies")?;
            by_target.entry(scope.target.clone()).or_default().secrets.splice(0..0, copies);
        }
    }
    by_target.entry(Target::Local).or_default().secrets.extend(shard_credentials);
    for (target, children) in by_target {
        let regions = plan.regions_in(&target).join(",");
        let place = if regions.is_empty() { String::new() } else { format!(" (region {regions})") };
        let Some(cluster) = reached.get(&target).cloned() else { continue };
        let served = cluster.kinds.served(&cluster.client).await.context("discovery")?;
        let desired_values = apply::serialize(children).context("serializing the children")?;
        let mut wanted: BTreeSet<(&'static str, String)> = BTreeSet::new();
        for mut child in desired_values {
            let (api_version, kind_name) =
                (child["apiVersion"].as_str().unwrap_or_default(), child["kind"].as_str().unwrap_or_default());
            let child_name = child["metadata"]["name"].as_str().unwrap_or_default().to_string();
            let Some(kind) = kinds::find(api_version, kind_name) else { bail!("{kind_name} is not a managed kind") };
            let label = format!("{}/{child_name}{place}", kind.kind);
            wanted.insert((kind.plural, child_name.clone()));
            if !served.contains(kind.plural) {
                out.push((label, Change::NotServed(kind.dependency.unwrap_or(kind.plural))));
                continue;
            }
            let api: Api<DynamicObject> =
                Api::namespaced_with(cluster.client.clone(), &namespace, &kind.api_resource());
            let live = api.get_opt(&child_name).await.with_context(|| format!("reading {label}"))?;
            let live = live.map(serde_json::to_value).transpose()?;
            handoff::prepare(&mut child, live.as_ref());
            let after = dry_apply(&api, &child_name, &child, build::names::FIELD_MANAGER).await?;
            match live {
                None => out.push((label, Change::Create)),
                Some(live) => {
                    if let Some(d) = unified(&live, &after, &label) {
                        out.push((label, Change::Update(d)));
                    }
                }
            }
        }
        // What the operator would prune there: its children of this Mall no longer built.
        let uid = desired.metadata.uid.as_deref();
        for kind in kinds::MANAGED.iter().filter(|k| served.contains(k.plural)) {
            let api: Api<DynamicObject> =
                Api::namespaced_with(cluster.client.clone(), &namespace, &kind.api_resource());
            let params = ListParams::default().labels(&apply::selector(&name));
            let listed = api.list(&params).await.with_context(|| format!("listing {}", kind.plural))?;
            for object in listed.items {
                let object_name = object.metadata.name.clone().unwrap_or_default();
                let value = serde_json::to_value(&object)?;
                if apply::is_ours(&value, uid) && !wanted.contains(&(kind.plural, object_name.clone())) {
                    out.push((format!("{}/{object_name}{place}", kind.kind), Change::Delete));
                }
            }
        }
    }
    Ok(())
}

/// Runs `diff`; `Ok(true)` when something would change.
pub async fn run(kube: &KubeArgs, files: &[String]) -> anyhow::Result<bool> {
    let mut docs = Vec::new();
    for file in files {
        for doc in crate::input::read_documents(file)? {
            mall_controllers::validate::validate_value(&doc.value, None).map_err(|e| anyhow::anyhow!("{file}: {e}"))?;
            docs.push(doc.value);
        }
    }
    let conn = kube.connect().await?;
    let mut changes = Vec::new();
    for doc in &docs {
        mall_changes(&conn, kube.namespace.as_deref(), doc, &mut changes).await?;
    }
    let by_kind: BTreeMap<&str, usize> = changes.iter().fold(BTreeMap::new(), |mut m, (_, c)| {
        *m.entry(match c {
            Change::Create => "create",
            Change::Update(_) => "change",
            Change::Delete => "delete",
            Change::NotServed(_) => "not served",
        })
        .or_default() += 1;
        m
    });
    for (label, change) in &changes {
        match change {
            Change::Create => println!("would create {label}"),
            Change::Delete => println!("would delete {label}"),
            Change::NotServed(dependency) => {
                println!("would skip {label}: the cluster does not serve it (install {dependency})")
            }
            Change::Update(diff) => print!("{diff}"),
        }
    }
    if changes.is_empty() {
        eprintln!("no differences");
    } else {
        let summary: Vec<String> = by_kind.iter().map(|(k, n)| format!("{n} to {k}")).collect();
        eprintln!("{}", summary.join(", "));
    }
    Ok(changes.iter().any(|(_, c)| !matches!(c, Change::NotServed(_))))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn bookkeeping_is_ignored_and_secrets_are_hidden() {
        let live = json!({"kind": "Secret", "metadata": {"name": "s", "resourceVersion": "1", "managedFields": []},
            "data": {"password": "c2VjcmV0"}, "status": {}});
        let after = json!({"kind": "Secret", "metadata": {"name": "s", "resourceVersion": "2"},
            "data": {"password": "b3RoZXI="}});
        assert_eq!(unified(&live, &after, "Secret/s"), None, "values differ but are never shown");
        let more = json!({"kind": "Secret", "metadata": {"name": "s"}, "data": {"password": "x", "user": "y"}});
        let d = unified(&live, &more, "Secret/s").expect("a new key is a difference");
        assert!(d.contains("+  user: <hidden>") && !d.contains("c2VjcmV0"), "{d}");
    }

    #[test]
    fn a_change_is_a_unified_diff() {
        let live = json!({"kind": "Deployment", "metadata": {"name": "d", "generation": 3}, "spec": {"replicas": 2}});
        let after = json!({"kind": "Deployment", "metadata": {"name": "d", "generation": 4}, "spec": {"replicas": 3}});
        let d = unified(&live, &after, "Deployment/d").expect("different");
        assert!(d.starts_with("--- live/Deployment/d\n+++ after-apply/Deployment/d\n"), "{d}");
        assert!(d.contains("-  replicas: 2\n+  replicas: 3\n"), "{d}");
    }
}
