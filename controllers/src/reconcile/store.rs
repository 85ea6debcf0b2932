//! Watch-fed caches of the operator's children, so a reconcile reads memory, not the API.
//!
//! Contract: one watch per managed kind the cluster serves (per watched namespace, or one for
//! all; Secrets always per namespace, because the chart grants them per namespace, never
//! cluster-wide), selecting `app.kubernetes.io/managed-by=mall-operator`, started lazily the
//! first time a reconcile asks for that kind — a CRD installed later gets its cache then. Until
//! a kind's cache has finished its first LIST, [`ChildStores::children`] returns `None` and the
//! caller LISTs as before, so correctness never depends on the cache (a watch the operator may
//! not make simply never becomes ready). Objects are kept as compact JSON, indexed by Mall,
//! without `managedFields` except the autoscaler's entry (the replica hand-off reads it).
//! The cache may lag the API by a watch event; callers treat it as a hint: server-side apply is
//! idempotent (a stale "missing" costs one redundant apply), a stale "present" costs one 404
//! on prune, and nothing that must not be regenerated (a password) is decided from a miss.
//! With a trigger ([`ChildStores::with_trigger`], member clusters), every change after the first
//! LIST is reported as (namespace, Mall) so the Mall is reconciled, as owned-object watches do in
//! the operator's own cluster.

use super::kinds::Kind;
use crate::build::names::{AUTOSCALER_MANAGER, MALL_LABEL, MANAGED_BY};
use crate::clusters::Trigger;
use futures::StreamExt;
use kube::api::{Api, DynamicObject};
use kube::runtime::{WatchStreamExt, watcher};
use serde_json::Value;
use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, RwLock};

/// Children of one kind in one namespace scope, indexed by (namespace, Mall) then name.
#[derive(Default)]
struct Index {
    by_mall: HashMap<(String, String), BTreeMap<String, Arc<str>>>,
    /// (namespace, name) → Mall, to move or drop an entry whose labels changed.
    owner: HashMap<(String, String), String>,
}

impl Index {
    fn insert(&mut self, object: &DynamicObject) {
        let (Some(ns), Some(name)) = (object.metadata.namespace.clone(), object.metadata.name.clone()) else {
            return;
        };
        self.remove(&ns, &name);
        let Some(mall) = object.metadata.labels.as_ref().and_then(|l| l.get(MALL_LABEL)).cloned() else { return };
        let Ok(json) = serde_json::to_string(object) else { return };
        self.by_mall.entry((ns.clone(), mall.clone())).or_default().insert(name.clone(), json.into());
        self.owner.insert((ns, name), mall);
    }

    fn remove(&mut self, namespace: &str, name: &str) {
        let key = (namespace.to_string(), name.to_string());
        if let Some(mall) = self.owner.remove(&key) {
            let by_mall = (key.0, mall);
            if let Some(children) = self.by_mall.get_mut(&by_mall) {
                children.remove(name);
                if children.is_empty() {
                    self.by_mall.remove(&by_mall);
                }
            }
        }
    }
}

/// One kind's cache in one namespace scope.
struct Cached {
    index: Arc<RwLock<Index>>,
    ready: Arc<AtomicBool>,
    task: tokio::task::JoinHandle<()>,
}

type Key = (&'static str, Option<String>);

/// Caches of the children, per kind and namespace scope.
pub struct ChildStores {
    client: kube::Client,
    /// Watched namespaces; `None` = all namespaces.
    namespaces: Option<Vec<String>>,
    caches: Mutex<BTreeMap<Key, Cached>>,
    trigger: Option<Trigger>,
    /// Every kind watched per namespace, any namespace (member clusters, where the operator's
    /// identity holds Roles per namespace only).
    per_namespace: bool,
}

impl ChildStores {
    /// Caches for the given namespaces (`None`: one cluster-wide cache per kind).
    pub fn new(client: kube::Client, namespaces: Option<Vec<String>>) -> Self {
        Self { client, namespaces, caches: Mutex::new(BTreeMap::new()), trigger: None, per_namespace: false }
    }

    /// Caches of every kind per namespace, for any namespace asked about (member clusters).
    pub fn per_namespace(client: kube::Client) -> Self {
        Self { client, namespaces: None, caches: Mutex::new(BTreeMap::new()), trigger: None, per_namespace: true }
    }

    /// Reports every change seen after a cache's first LIST to `trigger`.
    pub fn with_trigger(mut self, trigger: Trigger) -> Self {
        self.trigger = Some(trigger);
        self
    }

    /// The cache key of `kind` for a Mall in `namespace`; `None` if not watched here.
    fn key(&self, kind: &'static Kind, namespace: &str) -> Option<Key> {
        let watched = self.namespaces.as_ref().is_none_or(|list| list.iter().any(|n| n == namespace));
        let cluster_wide = !self.per_namespace && self.namespaces.is_none() && kind.plural != "secrets";
        watched.then(|| (kind.plural, (!cluster_wide).then(|| namespace.to_string())))
    }

    fn caches(&self) -> std::sync::MutexGuard<'_, BTreeMap<Key, Cached>> {
        self.caches.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Reads the ready cache of `kind` for `namespace` (starting it on first use).
    fn read<T>(&self, kind: &'static Kind, namespace: &str, f: impl FnOnce(&Index) -> T) -> Option<T> {
        let key = self.key(kind, namespace)?;
        let index = {
            let mut caches = self.caches();
            let cached = caches.entry(key.clone()).or_insert_with(|| self.start(kind, key.1));
            if !cached.ready.load(Ordering::Acquire) {
                return None;
            }
            cached.index.clone()
        };
        let index = index.read().unwrap_or_else(std::sync::PoisonError::into_inner);
        Some(f(&index))
    }

    /// The Mall's children of `kind` in `namespace`, by name, from the cache; `None` when the
    /// kind is not cached (yet): the caller LISTs. Starts the kind's cache on first use.
    pub fn children(&self, kind: &'static Kind, namespace: &str, mall: &str) -> Option<BTreeMap<String, Value>> {
        self.read(kind, namespace, |index| {
            let key = (namespace.to_string(), mall.to_string());
            index
                .by_mall
                .get(&key)
                .into_iter()
                .flatten()
                .filter_map(|(name, json)| Some((name.clone(), serde_json::from_str(json).ok()?)))
                .collect()
        })
    }

    /// One cached child by name, if the cache is ready and holds it (a miss proves nothing).
    pub fn get(&self, kind: &'static Kind, namespace: &str, mall: &str, name: &str) -> Option<Value> {
        self.read(kind, namespace, |index| {
            let json = index.by_mall.get(&(namespace.to_string(), mall.to_string()))?.get(name)?;
            serde_json::from_str(json).ok()
        })
        .flatten()
    }

    fn start(&self, kind: &'static Kind, scope: Option<String>) -> Cached {
        let ar = kind.api_resource();
        let api: Api<DynamicObject> = match &scope {
            Some(ns) => Api::namespaced_with(self.client.clone(), ns, &ar),
            None => Api::all_with(self.client.clone(), &ar),
        };
        let config = watcher::Config::default().labels(&format!("app.kubernetes.io/managed-by={MANAGED_BY}"));
        let index = Arc::new(RwLock::new(Index::default()));
        let ready = Arc::new(AtomicBool::new(false));
        let (writer, flag, plural) = (index.clone(), ready.clone(), kind.plural);
        let trigger = self.trigger.clone();
        let notify = move |object: &DynamicObject| {
            let mall = object.metadata.labels.as_ref().and_then(|l| l.get(MALL_LABEL));
            if let (Some(trigger), Some(ns), Some(mall)) = (&trigger, object.metadata.namespace.as_deref(), mall) {
                trigger(ns, mall);
            }
        };
        let task = tokio::spawn(async move {
            let mut events = std::pin::pin!(watcher(api, config).backoff(crate::watch::backoff()).modify(slim));
            let mut relisting: Option<Index> = None;
            while let Some(event) = events.next().await {
                let event = match event {
                    Ok(event) => event,
                    Err(e) => {
                        tracing::debug!(kind = plural, error = %e, "child cache watch error (retrying)");
                        continue;
                    }
                };
                match event {
                    watcher::Event::Init => relisting = Some(Index::default()),
                    watcher::Event::InitApply(o) => relisting.get_or_insert_with(Index::default).insert(&o),
                    watcher::Event::InitDone => {
                        let fresh = relisting.take().unwrap_or_default();
                        *writer.write().unwrap_or_else(std::sync::PoisonError::into_inner) = fresh;
                        flag.store(true, Ordering::Release);
                    }
                    watcher::Event::Apply(o) => {
                        writer.write().unwrap_or_else(std::sync::PoisonError::into_inner).insert(&o);
                        notify(&o);
                    }
                    watcher::Event::Delete(o) => {
                        notify(&o);
                        let (ns, name) =
                            (o.metadata.namespace.unwrap_or_default(), o.metadata.name.unwrap_or_default());
                        writer.write().unwrap_or_else(std::sync::PoisonError::into_inner).remove(&ns, &name);
                    }
                }
            }
        });
        Cached { index, ready, task }
    }
}

impl Drop for ChildStores {
    fn drop(&mut self) {
        for cached in self.caches().values() {
            cached.task.abort();
        }
    }
}

/// Drops what the reconciler never reads from a cached child: managed fields other than the
/// autoscaler's (the replica hand-off reads that one).
fn slim(object: &mut DynamicObject) {
    if let Some(fields) = object.metadata.managed_fields.as_mut() {
        fields.retain(|f| f.manager.as_deref() == Some(AUTOSCALER_MANAGER));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn object(ns: &str, name: &str, mall: Option<&str>) -> DynamicObject {
        let mut labels = serde_json::Map::new();
        if let Some(m) = mall {
            labels.insert(MALL_LABEL.into(), json!(m));
        }
        serde_json::from_value(json!({
            "apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"namespace": ns, "name": name, "labels": labels},
            "data": {"k": "v"}
        }))
        .expect("object")
    }

    #[test]
    fn index_follows_label_changes_and_deletes() {
        let mut index = Index::default();
        index.insert(&object("a", "x", Some("m1")));
        index.insert(&object("a", "y", Some("m1")));
        index.insert(&object("b", "x", Some("m1")));
        assert_eq!(index.by_mall[&("a".into(), "m1".into())].len(), 2);
        index.insert(&object("a", "x", Some("m2")));
        assert_eq!(index.by_mall[&("a".into(), "m1".into())].len(), 1);
        assert!(index.by_mall[&("a".into(), "m2".into())].contains_key("x"));
        index.insert(&object("a", "y", None));
        assert!(!index.by_mall.contains_key(&("a".into(), "m1".into())));
        index.remove("a", "x");
        assert!(!index.by_mall.contains_key(&("a".into(), "m2".into())));
        assert_eq!(index.by_mall.len(), 1);
    }
}
