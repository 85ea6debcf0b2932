//! The Pooler part of the simulator: `status.instances` and `status.phase` of a CloudNativePG
//! `Pooler` (C:internal/controller/pooler_status.go).
//!
//! Contract: [`pooler_status`] writes the status by server-side apply (field manager
//! [`FIELD_MANAGER`]) only when it differs from the object's current status.

use kube::api::{Api, DynamicObject, Patch, PatchParams};
use serde_json::json;

use super::{CnpgSimError, FIELD_MANAGER, resource};

/// C:internal/controller/pooler_status.go: `instances` from the Deployment's replicas (here
/// `spec.instances`, default 1), phase `paused` while `spec.pgbouncer.paused`, else `active`.
pub(super) async fn pooler_status(client: kube::Client, obj: DynamicObject) -> Result<(), CnpgSimError> {
    let (Some(ns), Some(name)) = (obj.metadata.namespace.clone(), obj.metadata.name.clone()) else { return Ok(()) };
    let spec = &obj.data["spec"];
    let instances = spec["instances"].as_i64().unwrap_or(1);
    let (phase, reason) = if spec["pgbouncer"]["paused"].as_bool() == Some(true) {
        ("paused", "pgbouncer is paused")
    } else {
        ("active", "")
    };
    let status = &obj.data["status"];
    if status["instances"].as_i64() == Some(instances) && status["phase"].as_str() == Some(phase) {
        return Ok(());
    }
    let mut body = json!({"instances": instances, "phase": phase});
    if !reason.is_empty() {
        body["phaseReason"] = json!(reason);
    }
    let patch = json!({"apiVersion": "postgresql.cnpg.io/v1", "kind": "Pooler", "status": body});
    let api = Api::<DynamicObject>::namespaced_with(client, &ns, &resource("Pooler"));
    api.patch_status(&name, &PatchParams::apply(FIELD_MANAGER).force(), &Patch::Apply(&patch))
        .await
        .map_err(|source| CnpgSimError::Status { object: format!("Pooler {ns}/{name}"), source })?;
    Ok(())
}
