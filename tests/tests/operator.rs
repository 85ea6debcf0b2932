//! The operator as a separate process against a real API server, under the chart's RBAC:
//! every single-cluster example converges to Ready with its children, a converged Mall costs
//! zero writes (audit log), an edit converges, a deletion removes every child.

use k8s_openapi::api::apps::v1::Deployment;
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams};
use localcluster::{CnpgSimulator, SimulatorOptions};
use mall_crds::Mall;
use mall_e2e::{Env, OperatorProcess, apply_yaml, install_operator_identity, repo_root, wait_until, writes_by};
use serde_json::{Value, json};
use std::time::Duration;

const NS: &str = "shop";
const OPERATOR_NS: &str = "mall-system";

/// Where the examples' autoscaler looks for Prometheus in this test: a loopback port nothing
/// serves (port 9, discard), so no test resolves the examples' in-cluster Prometheus name.
const LOOPBACK_PROMETHEUS: &str = "http://127.0.0.1:9";

/// An example Mall, its Prometheus (when it autoscales) replaced by [`LOOPBACK_PROMETHEUS`].
fn example(name: &str) -> Value {
    let text = std::fs::read_to_string(repo_root().join("examples").join(name)).unwrap();
    let mut mall: Value = serde_saphyr::from_str(&text).unwrap();
    if let Some(url) = mall.pointer_mut("/spec/autoscaling/prometheus/url") {
        *url = Value::String(LOOPBACK_PROMETHEUS.into());
    }
    mall
}

fn is_ready(m: &Mall) -> bool {
    m.status.as_ref().is_some_and(|s| {
        s.observed_generation == m.metadata.generation
            && s.conditions.iter().any(|c| c.type_ == "Ready" && c.status == "True")
    })
}

async fn wait_ready(malls: &Api<Mall>, name: &str, op: &OperatorProcess) -> Mall {
    let what = format!("Mall {name} Ready");
    let result = tokio::time::timeout(
        Duration::from_secs(120),
        wait_until(&what, Duration::from_secs(120), || async {
            malls.get_opt(name).await.ok().flatten().filter(is_ready)
        }),
    )
    .await;
    match result {
        Ok(m) => m,
        Err(_) => {
            let status = malls.get_opt(name).await.ok().flatten().and_then(|m| m.status);
            panic!("{what}: timed out; status: {status:#?}\noperator log tail:\n{}", tail(&op.log_text()));
        }
    }
}

fn tail(text: &str) -> String {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(30)..].join("\n")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn examples_converge_cost_nothing_when_converged_and_clean_up() {
    let env = Env::start("operator-e2e", 11).await;
    let dir = tempfile::tempdir().unwrap();
    let kubeconfig = install_operator_identity(&env, OPERATOR_NS, &[NS], dir.path()).await;
    env.namespace(NS, &[("pod-security.kubernetes.io/enforce", "restricted")]).await;
    let _sim = CnpgSimulator::spawn(env.client.clone(), SimulatorOptions::default());
    let op = OperatorProcess::spawn(
        &kubeconfig,
        &dir.path().join("operator.log"),
        &["--leader-election-namespace", OPERATOR_NS],
    );
    let malls: Api<Mall> = Api::namespaced(env.client.clone(), NS);

    // Every single-cluster example converges.
    let mut names = Vec::new();
    for file in ["minimal.yaml", "production.yaml", "double-eleven.yaml"] {
        let mut mall = example(file);
        mall["metadata"]["namespace"] = json!(NS);
        names.push(mall["metadata"]["name"].as_str().unwrap().to_string());
        apply_yaml(&env.client, Some(NS), &[mall]).await;
    }
    for name in &names {
        let mall = wait_ready(&malls, name, &op).await;
        let status = mall.status.unwrap();
        let tiers = status.tiers.unwrap();
        assert!(tiers.storefront.ready >= 1 && tiers.storefront.ready == tiers.storefront.desired, "{name}: {tiers:?}");
        assert_eq!(
            status.shards.len() as i32,
            mall.spec.database.shards * mall.spec.regions.len().max(1) as i32,
            "{name}"
        );
        // With standby regions, converged also means the failover controller has seen every
        // region Healthy (failureThreshold probes each); until then it writes health changes.
        if mall.spec.regions.len() > 1 {
            wait_until(&format!("{name}: every region Healthy"), Duration::from_secs(120), || async {
                let m = malls.get(name).await.ok()?;
                let regions = m.status?.regions;
                (regions.len() == mall.spec.regions.len() && regions.iter().all(|r| r.health == "Healthy"))
                    .then_some(())
            })
            .await;
        }
    }
    // Region-suffixed children of the two-region example.
    let deployments: Api<Deployment> = Api::namespaced(env.client.clone(), NS);
    for region in ["east", "west"] {
        let d = deployments.get(&format!("singles-day-{region}-storefront")).await.unwrap();
        let owner = &d.metadata.owner_references.unwrap()[0];
        assert_eq!((owner.kind.as_str(), owner.name.as_str(), owner.controller), ("Mall", "singles-day", Some(true)));
        // Admitted under Pod Security "restricted": no ReplicaFailure.
        let conditions = d.status.and_then(|s| s.conditions).unwrap_or_default();
        assert!(!conditions.iter().any(|c| c.type_ == "ReplicaFailure" && c.status == "True"), "{conditions:?}");
    }

    // Pod Security "restricted" admitted every pod the operator asked for: every workload in
    // the namespace has all its replicas ready and no ReplicaFailure.
    for d in deployments.list(&Default::default()).await.unwrap() {
        let name = d.metadata.name.clone().unwrap_or_default();
        let status = d.status.unwrap_or_default();
        let replicas = d.spec.and_then(|s| s.replicas).unwrap_or(1);
        assert_eq!(status.ready_replicas.unwrap_or(0), replicas, "Deployment {name} not fully admitted/ready");
        let failed = status
            .conditions
            .unwrap_or_default()
            .into_iter()
            .any(|c| c.type_ == "ReplicaFailure" && c.status == "True");
        assert!(!failed, "Deployment {name} has ReplicaFailure");
    }
    // No Secret value (cache passwords, connection URLs) in the operator's log, Events, the
    // Malls' status or ConfigMaps.
    let (leaks, looked_for) = mall_e2e::leaks::secret_leaks(&env.client, &[NS, OPERATOR_NS], &op.log_text()).await;
    println!("secret scan: {looked_for} Secret values looked for in the operator log, Events, status and ConfigMaps");
    assert!(looked_for >= 3, "the scan found too few Secret values to look for ({looked_for})");
    assert!(leaks.is_empty(), "Secret values leaked: {leaks:#?}");
    // The scan sees a leak when there is one: a ConfigMap holding a managed Secret's value.
    let secrets: Api<k8s_openapi::api::core::v1::Secret> = Api::namespaced(env.client.clone(), NS);
    let managed =
        secrets.list(&ListParams::default().labels("app.kubernetes.io/managed-by=mall-operator")).await.unwrap();
    let value = managed
        .items
        .iter()
        .flat_map(|s| s.data.clone().unwrap_or_default().into_values())
        .filter_map(|v| String::from_utf8(v.0).ok())
        .find(|v| v.len() >= 12)
        .expect("a managed Secret value");
    let probe = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "leak-probe", "namespace": NS},
        "data": {"note": format!("copied by hand: {value}")}});
    apply_yaml(&env.client, Some(NS), &[probe]).await;
    let (leaks, _) = mall_e2e::leaks::secret_leaks(&env.client, &[NS], "").await;
    assert!(leaks.iter().any(|l| l.ends_with("appears in ConfigMap shop/leak-probe")), "{leaks:#?}");
    assert!(!leaks.iter().any(|l| l.contains(&value)), "a leak report must not print the value");
    let maps: Api<k8s_openapi::api::core::v1::ConfigMap> = Api::namespaced(env.client.clone(), NS);
    maps.delete("leak-probe", &DeleteParams::default()).await.unwrap();
    let statefulsets: Api<k8s_openapi::api::apps::v1::StatefulSet> = Api::namespaced(env.client.clone(), NS);
    let sts = statefulsets.list(&Default::default()).await.unwrap();
    assert!(!sts.items.is_empty(), "the cache tier has StatefulSets");
    for s in sts {
        let name = s.metadata.name.clone().unwrap_or_default();
        let replicas = s.spec.and_then(|sp| sp.replicas).unwrap_or(1);
        assert_eq!(
            s.status.and_then(|st| st.ready_replicas).unwrap_or(0),
            replicas,
            "StatefulSet {name} not fully ready"
        );
    }

    // A converged Mall costs nothing: 100 reconciles triggered through an owned object, 0 writes.
    let user = format!("system:serviceaccount:{OPERATOR_NS}:mall-mall-operator");
    if let Some(local) = env.local_only(
        "converged Malls: 0 writes over 100 reconciles",
        "it counts writes in the local control plane's audit log",
    ) {
        tokio::time::sleep(Duration::from_secs(3)).await;
        let writes_before = writes_by(local, &user).len();
        let reconciles_before = op.metric("mall_operator_reconciles_total").unwrap_or(0.0);
        // Each change of an owned object triggers a reconcile; changes closer than the
        // controller's debounce merge, so poke until 100 reconciles happened (bounded). The poke
        // is an annotation on the shard's CloudNativePG Cluster: it changes nothing the Mall
        // depends on (on a Deployment it would bump the generation and start a real rollout).
        let clusters: Api<kube::api::DynamicObject> = Api::namespaced_with(
            env.client.clone(),
            NS,
            &mall_controllers::reconcile::kinds::find("postgresql.cnpg.io/v1", "Cluster").unwrap().api_resource(),
        );
        let mut reconciles = 0.0;
        for i in 0..200 {
            let patch = json!({"metadata": {"annotations": {"e2e/poke": i.to_string()}}});
            clusters.patch("corner-shop-db-0", &PatchParams::default(), &Patch::Merge(&patch)).await.unwrap();
            tokio::time::sleep(Duration::from_millis(260)).await;
            reconciles = op.metric("mall_operator_reconciles_total").unwrap_or(0.0) - reconciles_before;
            if reconciles >= 100.0 {
                break;
            }
        }
        tokio::time::sleep(Duration::from_secs(2)).await;
        assert!(reconciles >= 100.0, "only {reconciles} reconciles were triggered");
        let writes: Vec<String> = writes_by(local, &user).split_off(writes_before);
        let mut counts = std::collections::BTreeMap::<&str, usize>::new();
        for w in &writes {
            *counts.entry(w.as_str()).or_default() += 1;
        }
        let log = op.log_text();
        let status_log: Vec<&str> =
            log.lines().filter(|l| l.contains("writing status")).map(|l| &l[..l.len().min(3000)]).collect::<Vec<_>>();
        let status_log = status_log[status_log.len().saturating_sub(3)..].join("\n");
        assert!(
            writes.is_empty(),
            "converged Malls were written {} times over {reconciles} reconciles: {counts:#?}\n{status_log}",
            writes.len()
        );
    }

    // An edit converges.
    let patch = json!({"spec": {"storefront": {"image": "ghcr.io/example/storefront:1.0.1"}}});
    malls.patch("corner-shop", &PatchParams::default(), &Patch::Merge(&patch)).await.unwrap();
    wait_until("the storefront image to follow the edit", Duration::from_secs(60), || async {
        let d = deployments.get("corner-shop-storefront").await.ok()?;
        let image = d.spec?.template.spec?.containers.first()?.image.clone()?;
        (image == "ghcr.io/example/storefront:1.0.1").then_some(())
    })
    .await;
    wait_ready(&malls, "corner-shop", &op).await;

    // Deleting a Mall removes every child, and its metric series.
    let series = format!("mall=\"{NS}/singles-day\"");
    let text = op.metrics_text().expect("/metrics answers");
    assert!(text.contains(&format!("mall_operator_children_managed{{{series}}}")), "{text}");
    assert!(text.contains("mall_operator_build_info{version="), "{text}");
    malls.delete("singles-day", &DeleteParams::background()).await.unwrap();
    let selector = "app.kubernetes.io/managed-by=mall-operator,mallctl.io/mall=singles-day";
    wait_until("every child of singles-day to be gone", Duration::from_secs(60), || async {
        for kind in mall_controllers::reconcile::kinds::MANAGED {
            let api: Api<kube::api::DynamicObject> = Api::namespaced_with(env.client.clone(), NS, &kind.api_resource());
            if !api.list(&ListParams::default().labels(selector)).await.ok()?.items.is_empty() {
                return None;
            }
        }
        Some(())
    })
    .await;
    wait_until("the deleted Mall's metric series to go", Duration::from_secs(30), || async {
        (!op.metrics_text()?.contains(&series)).then_some(())
    })
    .await;
    // The other Malls are untouched.
    assert!(is_ready(&malls.get("corner-shop").await.unwrap()));
}
