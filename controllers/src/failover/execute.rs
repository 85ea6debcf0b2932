//! The writes of a failover or switchover to the shard Clusters of one region.
//!
//! Contract: [`set_role`] server-side applies, as field manager [`super::FIELD_MANAGER`], only
//! a shard Cluster's `spec.replica` (`primary`, `source`, `self`, and `promotionToken` when
//! given) and its epoch annotation; the member cluster's admission policy refuses it when the
//! epoch is older than the Cluster's, or when it changes the role without a newer epoch (the
//! error is returned as is). [`delete_shards`] deletes a region's shard Clusters so the reconciler
//! recreates them from the new primary (the rebuild of a returning old primary).

use super::probe::cluster_resource;
use crate::build::database::topology::{EPOCH_ANNOTATION, Topology};
use kube::api::{Api, DeleteParams, DynamicObject, Patch, PatchParams};
use serde_json::json;

/// A write to a shard Cluster failed.
#[derive(Debug, thiserror::Error)]
pub enum ExecuteError {
    /// The API server refused or did not answer.
    #[error("{action} Cluster {cluster}")]
    Write {
        /// What was attempted.
        action: &'static str,
        /// The Cluster.
        cluster: String,
        /// Cause (an admission refusal names the policy and its message).
        #[source]
        source: kube::Error,
    },
}

/// Gives shard `shard`'s member in `region` the role of the topology in epoch `epoch`:
/// `replica.primary` = the member of `primary`, its source as [`Topology::source_of`] says, and
/// `promotion_token` when promoting with one (a switchover).
pub async fn set_role(
    client: &kube::Client,
    namespace: &str,
    topology: &Topology,
    region: &str,
    shard: i32,
    epoch: i64,
    promotion_token: Option<&str>,
) -> Result<(), ExecuteError> {
    let name = topology.cluster(region, shard);
    let mut replica = json!({
        "primary": topology.cluster(&topology.active, shard),
        "source": topology.cluster(topology.source_of(region), shard),
        "self": name,
    });
    if let Some(token) = promotion_token {
        replica["promotionToken"] = json!(token);
    }
    let body = json!({
        "apiVersion": "postgresql.cnpg.io/v1", "kind": "Cluster",
        "metadata": {"name": name, "annotations": {EPOCH_ANNOTATION: epoch.to_string()}},
        "spec": {"replica": replica},
    });
    let api: Api<DynamicObject> = Api::namespaced_with(client.clone(), namespace, &cluster_resource());
    api.patch(&name, &PatchParams::apply(super::FIELD_MANAGER).force(), &Patch::Apply(&body))
        .await
        .map(|_| ())
        .map_err(|source| ExecuteError::Write { action: "setting the role of", cluster: name.clone(), source })
}

/// Deletes every shard Cluster of `region` (absent ones are fine).
pub async fn delete_shards(
    client: &kube::Client,
    namespace: &str,
    topology: &Topology,
    region: &str,
    shards: i32,
) -> Result<(), ExecuteError> {
    let api: Api<DynamicObject> = Api::namespaced_with(client.clone(), namespace, &cluster_resource());
    for shard in 0..shards {
        let name = topology.cluster(region, shard);
        match api.delete(&name, &DeleteParams::background()).await {
            Ok(_) => {}
            Err(kube::Error::Api(e)) if e.code == 404 => {}
            Err(source) => return Err(ExecuteError::Write { action: "deleting", cluster: name, source }),
        }
    }
    Ok(())
}
