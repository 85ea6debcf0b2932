//! NetworkPolicies of the database tier: default-deny ingress to every pod of a shard's
//! CloudNativePG cluster, with the few openings PostgreSQL and CloudNativePG need.
//!
//! Contract: pure. One `NetworkPolicy` per shard, named like the shard's `Cluster`
//! (`<prefix>-db-<i>`), selecting the pods CloudNativePG labels `cnpg.io/cluster: <cluster>`
//! (instances, their join/initdb jobs and the shard's PgBouncer pods) and admitting only:
//! - the storefront pods of the same region, to PostgreSQL/PgBouncer ([`POSTGRES_PORT`]);
//! - the pods of the same shard cluster (replication, poolers, jobs), to [`POSTGRES_PORT`] and the
//!   instance manager ([`INSTANCE_MANAGER_PORT`]);
//! - the CloudNativePG operator (namespace [`CNPG_NAMESPACE`], pods
//!   `app.kubernetes.io/name: cloudnative-pg`), to [`INSTANCE_MANAGER_PORT`].
//!
//! Egress is not restricted. The cache tier writes its own policy (`build::cache`).

use super::kinds::{allow, ingress_policy, match_labels, pods};
use super::{Child, Scope, database, storefront};
use k8s_openapi::api::networking::v1::{NetworkPolicy, NetworkPolicyPeer};

/// PostgreSQL's port (instances and PgBouncer).
pub const POSTGRES_PORT: i32 = 5432;
/// CloudNativePG's instance manager (status, backups, the operator's health checks).
pub const INSTANCE_MANAGER_PORT: i32 = 8000;
/// Namespace of the CloudNativePG operator.
pub const CNPG_NAMESPACE: &str = "cnpg-system";
/// Label CloudNativePG puts on every pod of a cluster (instances, jobs, poolers).
pub const CNPG_CLUSTER_LABEL: &str = "cnpg.io/cluster";

/// The database tier's NetworkPolicies in `scope`, one per shard.
pub fn build(scope: &Scope<'_>) -> Vec<Child> {
    (0..scope.mall.spec.database.shards).map(|shard| database_policy(scope, shard).into()).collect()
}

/// Default-deny ingress to shard `shard`'s pods, but for the openings in the module header.
pub fn database_policy(scope: &Scope<'_>, shard: i32) -> NetworkPolicy {
    let cluster = database::cluster_name(scope, shard);
    let own_pods = match_labels([(CNPG_CLUSTER_LABEL, cluster.as_str())]);
    let operator = NetworkPolicyPeer {
        namespace_selector: Some(match_labels([("kubernetes.io/metadata.name", CNPG_NAMESPACE)])),
        pod_selector: Some(match_labels([("app.kubernetes.io/name", "cloudnative-pg")])),
        ..NetworkPolicyPeer::default()
    };
    ingress_policy(
        database::shard_meta(scope, cluster.clone(), shard),
        own_pods.clone(),
        vec![
            allow(pods(match_labels(scope.selector(storefront::COMPONENT))), &[POSTGRES_PORT]),
            allow(pods(own_pods), &[POSTGRES_PORT, INSTANCE_MANAGER_PORT]),
            allow(operator, &[INSTANCE_MANAGER_PORT]),
        ],
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::build::names::SHARD_LABEL;
    use crate::testing::mall_from;
    use serde_json::json;

    #[test]
    fn one_policy_per_shard_admits_only_storefront_own_pods_and_operator() {
        let mall = mall_from(json!({"database": {"shards": 3},
            "regions": [{"name": "east", "role": "primary"}, {"name": "west", "role": "standby"}]}));
        let scope = &Scope::all(&mall)[1];
        let objects = crate::testing::values(build(scope));
        assert_eq!(objects.len(), 3);
        let p = &objects[2];
        assert_eq!(
            (p["kind"].as_str(), p["apiVersion"].as_str()),
            (Some("NetworkPolicy"), Some("networking.k8s.io/v1"))
        );
        assert_eq!(p["metadata"]["name"], "shop-west-db-2");
        assert_eq!(p["metadata"]["labels"][SHARD_LABEL], "2");
        assert_eq!(p["metadata"]["ownerReferences"][0]["kind"], "Mall");
        assert_eq!(p["spec"]["podSelector"]["matchLabels"], json!({"cnpg.io/cluster": "shop-west-db-2"}));
        assert_eq!(p["spec"]["policyTypes"], json!(["Ingress"]));
        let rules = p["spec"]["ingress"].as_array().unwrap();
        assert_eq!(rules.len(), 3);
        assert_eq!(rules[0]["from"][0]["podSelector"]["matchLabels"]["app.kubernetes.io/instance"], "shop-west");
        assert_eq!(rules[0]["from"][0]["podSelector"]["matchLabels"]["app.kubernetes.io/name"], "storefront");
        assert_eq!(rules[0]["ports"], json!([{"port": 5432, "protocol": "TCP"}]));
        assert_eq!(rules[1]["from"][0]["podSelector"]["matchLabels"], json!({"cnpg.io/cluster": "shop-west-db-2"}));
        assert_eq!(rules[1]["ports"], json!([{"port": 5432, "protocol": "TCP"}, {"port": 8000, "protocol": "TCP"}]));
        assert_eq!(
            rules[2]["from"][0]["namespaceSelector"]["matchLabels"]["kubernetes.io/metadata.name"],
            "cnpg-system"
        );
        assert_eq!(rules[2]["from"][0]["podSelector"]["matchLabels"]["app.kubernetes.io/name"], "cloudnative-pg");
        assert_eq!(rules[2]["ports"], json!([{"port": 8000, "protocol": "TCP"}]));
        // Every object round-trips through the k8s-openapi type.
        for o in &objects {
            let typed: NetworkPolicy = serde_json::from_value(o.clone()).unwrap();
            assert_eq!(crate::build::kinds::resource_value(&typed).unwrap(), *o);
        }
    }
}
