//! Step 1 of a tick: which children the autoscaler sizes, and their replica counts as the cluster
//! shows them.
//!
//! Contract: [`targets`] is pure: the children of the autoscaled scope (the only one, or the
//! primary region), named by the builders' own name functions — the storefront Deployment, with
//! `spec.autoscaling.cache` each cache shard's StatefulSet, with `spec.autoscaling.database`
//! each shard's CloudNativePG `Cluster`. [`read`] GETs them (reads only; a child not there yet
//! is `None`) and [`counts`] (pure) turns them into [`ClusterCounts`]: the storefront's
//! `spec.replicas`/`status.readyReplicas`; per shard for the cache the replicas beside the
//! primary (`spec.replicas − 1`, the highest shard) and the fewest Ready (`readyReplicas − 1`),
//! for the database `spec.instances` (highest) and `status.readyInstances` (fewest). No storefront
//! Deployment yet means no counts (the tick is skipped); a tier with a shard missing is left out.

use super::super::ClusterCounts;
use super::super::Counts;
use crate::build::names::Scope;
use crate::build::{cache, database, storefront};
use crate::reconcile::kinds;
use kube::api::{Api, DynamicObject};
use mall_crds::Mall;
use serde_json::Value;

/// Why the children could not be read.
#[derive(Debug, thiserror::Error)]
pub enum CountsError {
    /// The Mall has no namespace.
    #[error("the Mall has no namespace")]
    NoNamespace,
    /// A kind the autoscaler sizes is not known (a bug).
    #[error("{0} is not a managed kind")]
    UnknownKind(&'static str),
    /// A GET failed.
    #[error("reading {kind} {name}")]
    Read {
        /// Kind.
        kind: &'static str,
        /// Name.
        name: String,
        /// Cause.
        #[source]
        source: kube::Error,
    },
}

/// What the autoscaler sizes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Target {
    /// A Deployment (`spec.replicas`).
    Deployment,
    /// A cache shard's StatefulSet (`spec.replicas` = 1 primary + replicas).
    CacheStatefulSet,
    /// A CloudNativePG `Cluster` (`spec.instances`).
    CnpgCluster,
}

impl Target {
    /// `(apiVersion, kind)`.
    pub fn type_meta(self) -> (&'static str, &'static str) {
        match self {
            Target::Deployment => ("apps/v1", "Deployment"),
            Target::CacheStatefulSet => ("apps/v1", "StatefulSet"),
            Target::CnpgCluster => ("postgresql.cnpg.io/v1", "Cluster"),
        }
    }

    /// The replica field under `spec`.
    pub fn field(self) -> &'static str {
        match self {
            Target::CnpgCluster => "instances",
            _ => "replicas",
        }
    }

    /// Serving nodes of the object not counted as the tier's replicas (the cache primary).
    pub fn offset(self) -> i64 {
        match self {
            Target::CacheStatefulSet => 1,
            _ => 0,
        }
    }

    fn ready_field(self) -> &'static str {
        match self {
            Target::CnpgCluster => "readyInstances",
            _ => "readyReplicas",
        }
    }
}

/// Names of the children the autoscaler sizes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Targets {
    /// The storefront Deployment.
    pub storefront: String,
    /// Cache StatefulSets, one per shard (empty unless the cache is autoscaled).
    pub cache: Vec<String>,
    /// CloudNativePG Clusters, one per shard (empty unless the database is autoscaled).
    pub database: Vec<String>,
}

/// The children of `mall` the autoscaler sizes (see the module header).
pub fn targets(mall: &Mall) -> Targets {
    let scope = Scope::autoscaler_scope(mall);
    let scaling = mall.spec.autoscaling.as_ref();
    let cache = match (&mall.spec.cache, scaling.and_then(|a| a.cache.as_ref())) {
        (Some(spec), Some(_)) => (0..spec.shards).map(|s| cache::shard_name(&scope, s)).collect(),
        _ => Vec::new(),
    };
    let database = match scaling.and_then(|a| a.database.as_ref()) {
        Some(_) => (0..mall.spec.database.shards).map(|s| database::cluster_name(&scope, s)).collect(),
        None => Vec::new(),
    };
    Targets { storefront: scope.name(storefront::COMPONENT), cache, database }
}

/// Live objects of the [`Targets`], by name (`None` = not there).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct LiveChildren {
    /// The storefront Deployment.
    pub storefront: (String, Option<Value>),
    /// Cache StatefulSets.
    pub cache: Vec<(String, Option<Value>)>,
    /// CloudNativePG Clusters.
    pub database: Vec<(String, Option<Value>)>,
}

impl LiveChildren {
    /// Every object with what it is.
    pub fn all(&self) -> impl Iterator<Item = (Target, &String, Option<&Value>)> {
        std::iter::once((Target::Deployment, &self.storefront))
            .chain(self.cache.iter().map(|c| (Target::CacheStatefulSet, c)))
            .chain(self.database.iter().map(|d| (Target::CnpgCluster, d)))
            .map(|(t, (n, v))| (t, n, v.as_ref()))
    }
}

async fn get(client: &kube::Client, namespace: &str, target: Target, name: &str) -> Result<Option<Value>, CountsError> {
    let (api_version, kind) = target.type_meta();
    let ar = kinds::find(api_version, kind).ok_or(CountsError::UnknownKind(kind))?.api_resource();
    let api: Api<DynamicObject> = Api::namespaced_with(client.clone(), namespace, &ar);
    match api.get_opt(name).await {
        Ok(object) => Ok(object.and_then(|o| serde_json::to_value(o).ok())),
        // Kind not served (CloudNativePG not installed): nothing to size.
        Err(kube::Error::Api(s)) if s.code == 404 => Ok(None),
        Err(source) => Err(CountsError::Read { kind, name: name.to_string(), source }),
    }
}

/// GETs the targets of `mall`.
pub async fn read(client: &kube::Client, mall: &Mall, targets: &Targets) -> Result<LiveChildren, CountsError> {
    let namespace = mall.metadata.namespace.as_deref().ok_or(CountsError::NoNamespace)?;
    let mut live = LiveChildren {
        storefront: (
            targets.storefront.clone(),
            get(client, namespace, Target::Deployment, &targets.storefront).await?,
        ),
        ..LiveChildren::default()
    };
    for name in &targets.cache {
        live.cache.push((name.clone(), get(client, namespace, Target::CacheStatefulSet, name).await?));
    }
    for name in &targets.database {
        live.database.push((name.clone(), get(client, namespace, Target::CnpgCluster, name).await?));
    }
    Ok(live)
}

fn int(v: &Value) -> i64 {
    v.as_i64().unwrap_or(0)
}

/// Desired (highest) and Ready (fewest) over the objects of one tier; None if any is missing.
fn tier(objects: &[(String, Option<Value>)], target: Target) -> Option<Counts> {
    if objects.is_empty() {
        return None;
    }
    let mut replicas = i64::MIN;
    let mut ready = i64::MAX;
    for (_, o) in objects {
        let o = o.as_ref()?;
        replicas = replicas.max(int(&o["spec"][target.field()]) - target.offset());
        ready = ready.min(int(&o["status"][target.ready_field()]) - target.offset());
    }
    let clamp = |v: i64| i32::try_from(v.max(0)).unwrap_or(i32::MAX);
    Some(Counts { replicas: clamp(replicas), ready: clamp(ready.min(replicas)) })
}

/// The counts the engine sees (see the module header); None without a storefront Deployment.
pub fn counts(live: &LiveChildren) -> Option<ClusterCounts> {
    let storefront = tier(std::slice::from_ref(&live.storefront), Target::Deployment)?;
    Some(ClusterCounts {
        storefront,
        cache: tier(&live.cache, Target::CacheStatefulSet),
        database: tier(&live.database, Target::CnpgCluster),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::mall_from;
    use serde_json::json;

    #[test]
    fn targets_follow_the_builders_names() {
        let mall = mall_from(json!({"cache": {"shards": 3}, "database": {"shards": 2},
            "autoscaling": {"prometheus": {"url": "http://p:9090"},
                "cache": {"min": 0, "max": 3, "targetPerReplica": 1000}},
            "regions": [{"name": "west", "role": "standby"}, {"name": "east", "role": "primary"}]}));
        let t = targets(&mall);
        assert_eq!(t.storefront, "shop-east-storefront");
        assert_eq!(t.cache, ["shop-east-cache-0", "shop-east-cache-1", "shop-east-cache-2"]);
        assert!(t.database.is_empty());
        let plain = targets(&mall_from(json!({"autoscaling": {"prometheus": {"url": "http://p:9090"}}})));
        assert_eq!((plain.storefront.as_str(), plain.cache.len()), ("shop-storefront", 0));
    }

    #[test]
    fn counts_per_tier() {
        let obj = |spec: Value, status: Value| Some(json!({"spec": spec, "status": status}));
        let live = LiveChildren {
            storefront: ("sf".into(), obj(json!({"replicas": 4}), json!({"readyReplicas": 3}))),
            cache: vec![
                ("c0".into(), obj(json!({"replicas": 3}), json!({"readyReplicas": 3}))),
                ("c1".into(), obj(json!({"replicas": 2}), json!({"readyReplicas": 1}))),
            ],
            database: vec![("d0".into(), obj(json!({"instances": 3}), json!({})))],
        };
        let c = counts(&live).unwrap();
        assert_eq!(c.storefront, Counts { replicas: 4, ready: 3 });
        assert_eq!(c.cache, Some(Counts { replicas: 2, ready: 0 }));
        assert_eq!(c.database, Some(Counts { replicas: 3, ready: 0 }));
        // A missing shard leaves its tier out; a missing storefront skips the tick.
        let partial = LiveChildren { cache: vec![("c0".into(), None)], ..live.clone() };
        assert_eq!(counts(&partial).unwrap().cache, None);
        assert_eq!(counts(&LiveChildren { storefront: ("sf".into(), None), ..live }), None);
    }
}
