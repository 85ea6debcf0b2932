//! `mallctl version`: this client's version and what the cluster runs.
//!
//! Contract: prints `mallctl`, then (unless `--client`) the Kubernetes version and API server,
//! the Mall CRD (its served and storage versions, and whether this mallctl's `v1alpha1` is among
//! them) and the operator: the version and identity of the holder of its leader-election Lease
//! (`--lease-namespace`/`--lease-name`, the chart's defaults) and how long ago it renewed. A CRD
//! or Lease that is absent, or cannot be read, is said so on its line (exit 0: the cluster was
//! reached); a cluster that cannot be reached is an error (exit 1) after the client line.
//! `-o json` prints one object with the same facts.

use super::{KubeArgs, Output};
use anyhow::Context as _;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::Api;
use serde_json::{Value, json};

/// Where to look for the operator.
pub struct LeaseRef<'a> {
    /// Namespace of the leader-election Lease.
    pub namespace: &'a str,
    /// Its name.
    pub name: &'a str,
}

/// What the CRD says, in one line.
fn crd_line(crd: Option<&CustomResourceDefinition>) -> (String, Value) {
    let Some(crd) = crd else {
        return ("not installed (install the chart, or: mallctl crd | kubectl apply -f -)".into(), Value::Null);
    };
    let served: Vec<&str> = crd.spec.versions.iter().filter(|v| v.served).map(|v| v.name.as_str()).collect();
    let storage = crd.spec.versions.iter().find(|v| v.storage).map_or("-", |v| v.name.as_str());
    let ours = mall_crds::VERSION;
    let verdict = if served.contains(&ours) { "served" } else { "NOT served: upgrade the CRD" };
    let line =
        format!("{} served {} (storage {storage}); this mallctl's {ours}: {verdict}", crd_name(), served.join(", "));
    (line, json!({"served": served, "storage": storage, "clientVersionServed": served.contains(&ours)}))
}

fn crd_name() -> String {
    format!("malls.{}", mall_crds::GROUP)
}

/// What the Lease says, in one line.
fn operator_line(lease: Option<&Lease>, at: &LeaseRef<'_>) -> (String, Value) {
    let Some(lease) = lease else {
        return (
            format!(
                "no leader-election Lease {}/{} (not running, or elsewhere: --lease-namespace)",
                at.namespace, at.name
            ),
            Value::Null,
        );
    };
    let version = lease
        .metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(mall_crds::OPERATOR_VERSION_ANNOTATION))
        .cloned()
        .unwrap_or_else(|| "unknown (older than 0.1.0)".into());
    let spec = lease.spec.clone().unwrap_or_default();
    let holder = spec.holder_identity.unwrap_or_default();
    let renewed = spec.renew_time.map(|t| k8s_openapi::jiff::Timestamp::now().duration_since(t.0).as_secs().max(0));
    let duration = i64::from(spec.lease_duration_seconds.unwrap_or(15));
    let state = match renewed {
        None => "never renewed".to_string(),
        Some(s) if holder.is_empty() => format!("released {s}s ago: no leader"),
        Some(s) if s > duration => format!("renewed {s}s ago: EXPIRED, no leader is running"),
        Some(s) => format!("renewed {s}s ago"),
    };
    let line = format!("{version}, leader {holder} (Lease {}/{}, {state})", at.namespace, at.name);
    (line, json!({"version": version, "leader": holder, "renewedSecondsAgo": renewed}))
}

/// Runs `version`.
pub async fn run(kube: &KubeArgs, client_only: bool, lease: LeaseRef<'_>, output: Output) -> anyhow::Result<()> {
    let client_version = env!("CARGO_PKG_VERSION");
    let json_out = matches!(output, Output::Json);
    if !json_out {
        println!("mallctl:     {client_version}");
    }
    if client_only {
        if json_out {
            println!("{}", json!({"mallctl": client_version}));
        }
        return Ok(());
    }
    let conn = kube.connect().await?;
    let server = conn.client.apiserver_version().await.context("reaching the cluster")?;
    let crds: Api<CustomResourceDefinition> = Api::all(conn.client.clone());
    let (crd, crd_json) = match crds.get_opt(&crd_name()).await {
        Ok(crd) => crd_line(crd.as_ref()),
        Err(e) => (format!("cannot read CRD {}: {e}", crd_name()), Value::Null),
    };
    let leases: Api<Lease> = Api::namespaced(conn.client.clone(), lease.namespace);
    let (operator, operator_json) = match leases.get_opt(lease.name).await {
        Ok(l) => operator_line(l.as_ref(), &lease),
        Err(e) => (format!("cannot read Lease {}/{}: {e}", lease.namespace, lease.name), Value::Null),
    };
    if json_out {
        let value = json!({"mallctl": client_version, "kubernetes": server.git_version, "crd": crd_json,
            "operator": operator_json});
        println!("{}", serde_json::to_string_pretty(&value)?);
    } else {
        println!("Kubernetes:  {}", server.git_version);
        println!("Mall CRD:    {crd}");
        println!("operator:    {operator}");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_say_what_is_missing() {
        let at = LeaseRef { namespace: "mall-system", name: "mall-operator" };
        assert!(crd_line(None).0.contains("not installed"));
        assert!(operator_line(None, &at).0.contains("no leader-election Lease mall-system/mall-operator"));
        let crd: CustomResourceDefinition = serde_json::from_value(json!({"metadata": {"name": "x"}, "spec": {
            "group": "g", "names": {"kind": "Mall", "plural": "malls"}, "scope": "Namespaced",
            "versions": [{"name": "v1alpha1", "served": true, "storage": true}]}}))
        .unwrap();
        assert!(crd_line(Some(&crd)).0.ends_with("v1alpha1: served"), "{}", crd_line(Some(&crd)).0);
        let lease: Lease = serde_json::from_value(json!({"metadata": {"annotations":
            {mall_crds::OPERATOR_VERSION_ANNOTATION: "9.9.9"}}, "spec": {"holderIdentity": "pod-a",
            "leaseDurationSeconds": 15, "renewTime": "2020-01-01T00:00:00.000000Z"}}))
        .unwrap();
        let line = operator_line(Some(&lease), &at).0;
        assert!(line.starts_with("9.9.9, leader pod-a") && line.contains("EXPIRED"), "{line}");
    }
}
