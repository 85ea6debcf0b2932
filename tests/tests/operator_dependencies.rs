//! A cluster without the products the operator composes: the Mall says which is missing
//! (Degraded/DependencyMissing), what can be built is built, and installing the dependency later
//! converges without restarting the operator.

use k8s_openapi::api::apps::v1::Deployment;
use kube::api::Api;
use localcluster::{CnpgSimulator, SimulatorOptions};
use mall_crds::Mall;
use mall_e2e::{Env, OperatorProcess, apply_yaml, install_operator_identity, wait_until};
use serde_json::json;
use std::time::Duration;

const NS: &str = "deps";

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn missing_cloudnative_pg_is_reported_then_picked_up() {
    if std::env::var_os("MALL_E2E_KUBECONFIG").is_some() {
        mall_e2e::skipped(
            "missing CloudNativePG is reported then picked up",
            "it needs a cluster without CloudNativePG",
        );
        return;
    }
    let env = Env::start_with("operator-deps", 14, false).await;
    let dir = tempfile::tempdir().unwrap();
    let kubeconfig = install_operator_identity(&env, "mall-system", &[NS], dir.path()).await;
    let op = OperatorProcess::spawn(
        &kubeconfig,
        &dir.path().join("op.log"),
        &["--leader-election-namespace", "mall-system"],
    );
    let mall = json!({"apiVersion": "mallctl.io/v1alpha1", "kind": "Mall", "metadata": {"name": "deps", "namespace": NS},
        "spec": {"storefront": {"image": "shop:1"}, "database": {}}});
    apply_yaml(&env.client, Some(NS), &[mall]).await;
    let malls: Api<Mall> = Api::namespaced(env.client.clone(), NS);
    let degraded = wait_until("Degraded/DependencyMissing", Duration::from_secs(60), || async {
        let status = malls.get("deps").await.ok()?.status?;
        status.conditions.into_iter().find(|c| c.type_ == "Degraded" && c.reason == "DependencyMissing")
    })
    .await;
    assert!(
        degraded.message.contains("CloudNativePG") && degraded.message.contains("Cluster/deps-db-0"),
        "{}",
        degraded.message
    );
    let ready =
        malls.get("deps").await.unwrap().status.unwrap().conditions.into_iter().find(|c| c.type_ == "Ready").unwrap();
    assert_eq!(ready.status, "False");
    // What does not depend on CloudNativePG is there.
    let deployments: Api<Deployment> = Api::namespaced(env.client.clone(), NS);
    assert!(deployments.get_opt("deps-storefront").await.unwrap().is_some());
    // The operator keeps running (no crash loop).
    assert!(op.metric("mall_operator_reconciles_total").is_some(), "operator not answering:\n{}", op.log_text());

    env.install_third_party().await;
    let _sim = CnpgSimulator::spawn(env.client.clone(), SimulatorOptions::default());
    wait_until("Ready once CloudNativePG is installed", Duration::from_secs(90), || async {
        let status = malls.get("deps").await.ok()?.status?;
        status.conditions.iter().any(|c| c.type_ == "Ready" && c.status == "True").then_some(())
    })
    .await;
}
