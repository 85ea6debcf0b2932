//! The Gateway a Gateway controller would run in a cluster, with the address it would report —
//! what the failover controller reads to point DNS at a region (no Gateway controller runs on a
//! local control plane).
//!
//! Contract: [`publish`] server-side applies `Namespace` `namespace`, a `gateway.networking.k8s.io/v1`
//! `Gateway` `name` there (class `example`, one HTTP listener) and its `status.addresses`
//! (`IPAddress` `address`) through the status subresource, as field manager
//! `localcluster-gateway`. The Gateway API CRDs must be installed.

use kube::api::{Api, ApiResource, DynamicObject, Patch, PatchParams};
use serde_json::json;

const MANAGER: &str = "localcluster-gateway";

/// Creates (or updates) the Gateway and its reported address (see the module header).
pub async fn publish(client: &kube::Client, namespace: &str, name: &str, address: &str) -> Result<(), kube::Error> {
    let params = PatchParams::apply(MANAGER).force();
    let namespaces: Api<k8s_openapi::api::core::v1::Namespace> = Api::all(client.clone());
    let ns = json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": namespace}});
    namespaces.patch(namespace, &params, &Patch::Apply(&ns)).await?;
    let ar = ApiResource {
        group: "gateway.networking.k8s.io".into(),
        version: "v1".into(),
        api_version: "gateway.networking.k8s.io/v1".into(),
        kind: "Gateway".into(),
        plural: "gateways".into(),
    };
    let api: Api<DynamicObject> = Api::namespaced_with(client.clone(), namespace, &ar);
    let meta = json!({"name": name, "namespace": namespace});
    let gateway = json!({"apiVersion": "gateway.networking.k8s.io/v1", "kind": "Gateway", "metadata": meta,
        "spec": {"gatewayClassName": "example", "listeners": [{"name": "http", "port": 80, "protocol": "HTTP"}]}});
    api.patch(name, &params, &Patch::Apply(&gateway)).await?;
    let status = json!({"apiVersion": "gateway.networking.k8s.io/v1", "kind": "Gateway", "metadata": meta,
        "status": {"addresses": [{"type": "IPAddress", "value": address}]}});
    api.patch_status(name, &params, &Patch::Apply(&status)).await?;
    Ok(())
}
