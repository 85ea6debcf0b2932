//! The writes of a failover or switchover to the shard Clusters of one region.
//!
//! Contract: [`set_role`] server-side applies, as field manager [`super::FIELD_MANAGER`], only
//! a shard Cluster's `spec.replica` (`primary`, `source`, `self`, and `promotionToken` when
//! given) and its epoch annotation; the member cluster's admission policy refuses it when the
//! epoch is older than the Cluster's, or when it changes the role without a newer epoch (the
//! error is returned as is). [`delete_shards`] deletes a region's shard Clusters so the reconciler
//! recreates them from the new primary (the rebuild of a returning old primary), each only if it
//! is not at a newer epoch than the writer's (read, then a delete preconditioned on that read).

use super::probe::cluster_resource;
use crate::build::database::topology::{EPOCH_ANNOTATION, Topology};
use kube::api::{Api, DeleteParams, DynamicObject, Patch, PatchParams, Preconditions};
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
    /// The Cluster is at a newer epoch than this writer's: it was not deleted.
    #[error(
        "not deleting Cluster {cluster}: it is at failover epoch {live}, newer than this writer's {epoch} (fenced by a \
         newer failover)"
    )]
    Fenced {
        /// The Cluster.
        cluster: String,
        /// This writer's epoch.
        epoch: i64,
        /// The Cluster's.
        live: i64,
    },
}

impl ExecuteError {
    /// The Event reason: `FencedByNewerEpoch` when a newer epoch refused the write (the
    /// writer's view is stale), else `FencingRefused`.
    pub fn reason(&self) -> &'static str {
        let fenced = match self {
            ExecuteError::Fenced { .. } => true,
            ExecuteError::Write { source, cluster, .. } => crate::reconcile::refusal::classify(cluster.clone(), source)
                .is_some_and(|r| r.authority == crate::reconcile::refusal::Authority::EpochFence),
        };
        if fenced { "FencedByNewerEpoch" } else { "FencingRefused" }
    }

    /// One line for an Event or a status message: the API server's own message for a refusal
    /// (not the client's debug rendering of it), else the error chain.
    pub fn note(&self) -> String {
        match self {
            ExecuteError::Write { action, cluster, source: kube::Error::Api(status) } => {
                format!("{action} Cluster {cluster}: {}", status.message)
            }
            other => crate::reconcile::error_chain(other),
        }
    }
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

/// Deletes every shard Cluster of `region` (absent ones are fine), fenced like an update: each
/// is read first and deleted only if its epoch is not newer than `topology.epoch`, with the
/// read's UID and resourceVersion as preconditions, so a writer that missed a newer failover
/// never deletes a member that failover rebuilt or promoted (the admission policy cannot judge a
/// DELETE, which carries no epoch).
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
        let write = |source| ExecuteError::Write { action: "deleting", cluster: name.clone(), source };
        let Some(live) = api.get_opt(&name).await.map_err(write)? else { continue };
        let live_epoch = live.metadata.annotations.as_ref().and_then(|a| a.get(EPOCH_ANNOTATION)?.parse::<i64>().ok());
        if let Some(newer) = live_epoch.filter(|e| *e > topology.epoch) {
            return Err(ExecuteError::Fenced { cluster: name, epoch: topology.epoch, live: newer });
        }
        let params = DeleteParams {
            preconditions: Some(Preconditions {
                uid: live.metadata.uid.clone(),
                resource_version: live.metadata.resource_version.clone(),
            }),
            ..DeleteParams::background()
        };
        match api.delete(&name, &params).await {
            Ok(_) => {}
            Err(kube::Error::Api(e)) if e.code == 404 => {}
            Err(source) => return Err(write(source)),
        }
    }
    Ok(())
}
