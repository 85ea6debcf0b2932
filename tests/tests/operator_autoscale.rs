//! The autoscaler inside the operator (issue #15 item 3), end to end: the operator as a separate
//! process under the chart's RBAC with `--autoscale-interval 2s`, a real Prometheus scraping a
//! storefront stand-in on 127.0.0.1, a Mall whose `spec.autoscaling` points at it.
//!
//! Load up → the storefront Deployment grows to `max` and never beyond, `status.lastScaling`
//! says why, a `Scaled` Event exists, and the steady Mall then costs no write; an unrelated edit
//! (the image) does not reset the replicas — the reconciler handed `spec.replicas` to the
//! `mall-autoscaler` field manager; Prometheus stops → `MetricsUnavailable=True` and the size
//! holds, and the condition survives the reconciler's own status writes; the Mall stays Ready.

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::events::v1::Event;
use kube::api::{Api, ListParams, Patch, PatchParams};
use localcluster::{CnpgSimulator, SimulatorOptions};
use mall_crds::Mall;
use mall_e2e::prometheus::{Exporter, Prometheus};
use mall_e2e::{Env, OperatorProcess, apply_yaml, install_operator_identity, wait_until, writes_by};
use serde_json::json;
use std::time::{Duration, Instant};

const NS: &str = "autoscale";
const OPERATOR_NS: &str = "mall-system";
const MAX: i32 = 5;

fn ready(m: &Mall) -> bool {
    m.status.as_ref().is_some_and(|s| {
        s.observed_generation == m.metadata.generation
            && s.conditions.iter().any(|c| c.type_ == "Ready" && c.status == "True")
    })
}

fn condition(m: &Mall, type_: &str) -> Option<String> {
    m.status.as_ref()?.conditions.iter().find(|c| c.type_ == type_).map(|c| c.status.clone())
}

fn tail(text: &str) -> String {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(40)..].join("\n")
}

async fn replicas(deployments: &Api<Deployment>) -> Option<i32> {
    deployments.get("shop-storefront").await.ok()?.spec?.replicas
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn autoscaler_scales_hands_off_and_holds_without_metrics() {
    let started = Instant::now();
    let env = Env::start("operator-autoscale", 16).await;
    let dir = tempfile::tempdir().unwrap();
    let kubeconfig = install_operator_identity(&env, OPERATOR_NS, &[NS], dir.path()).await;
    let _sim = CnpgSimulator::spawn(env.client.clone(), SimulatorOptions::default());
    let exporter = Exporter::start(NS, "shop", 20.0).await;
    let mut prometheus = Prometheus::start(exporter.address, dir.path());
    let op = OperatorProcess::spawn(
        &kubeconfig,
        &dir.path().join("operator.log"),
        &["--leader-election-namespace", OPERATOR_NS, "--autoscale-interval", "2s"],
    );
    let malls: Api<Mall> = Api::namespaced(env.client.clone(), NS);
    let deployments: Api<Deployment> = Api::namespaced(env.client.clone(), NS);
    let mall = json!({"apiVersion": "mallctl.io/v1alpha1", "kind": "Mall",
    "metadata": {"name": "shop", "namespace": NS},
    "spec": {
        "storefront": {"image": "shop:1", "replicas": 2},
        "database": {},
        "autoscaling": {
            "prometheus": {"url": prometheus.url},
            "storefront": {"min": 1, "max": MAX, "targetPerReplica": 10}
        }
    }});
    apply_yaml(&env.client, Some(NS), &[mall]).await;
    let log = || tail(&op.log_text());

    // 20 requests/s at 10 per replica: the initial 2 replicas are right; metrics flow.
    let what = "the Mall Ready with MetricsUnavailable=False";
    tokio::time::timeout(
        Duration::from_secs(90),
        wait_until(what, Duration::from_secs(90), || async {
            let m = malls.get("shop").await.ok()?;
            (ready(&m) && condition(&m, "MetricsUnavailable").as_deref() == Some("False")).then_some(())
        }),
    )
    .await
    .unwrap_or_else(|_| panic!("{what}: timed out\n{}", log()));
    assert_eq!(replicas(&deployments).await, Some(2));

    // Load up tenfold: the storefront grows to max, never beyond.
    exporter.set_rate(200.0);
    let deadline = Instant::now() + Duration::from_secs(40);
    loop {
        let n = replicas(&deployments).await.unwrap_or(0);
        assert!(n <= MAX, "replicas {n} above max {MAX}");
        if n == MAX {
            break;
        }
        assert!(Instant::now() < deadline, "storefront still at {n} replicas after the load rose\n{}", log());
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let last = wait_until("status.lastScaling", Duration::from_secs(20), || async {
        malls.get("shop").await.ok()?.status?.last_scaling.filter(|l| l.to == MAX)
    })
    .await;
    assert!(last.tier == "storefront" && last.from >= 2 && last.from < MAX, "{last:?}");
    assert!(!last.reason.is_empty(), "{last:?}");
    let events: Api<Event> = Api::namespaced(env.client.clone(), NS);
    let scaled = wait_until("a Scaled event", Duration::from_secs(20), || async {
        let list = events.list(&ListParams::default()).await.ok()?;
        list.items.into_iter().find(|e| {
            e.reason.as_deref() == Some("Scaled")
                && e.regarding.as_ref().and_then(|r| r.name.as_deref()) == Some("shop")
        })
    })
    .await;
    let note = scaled.note.unwrap_or_default();
    assert!(note.contains(&last.reason), "event note {note:?} carries the reason {:?}", last.reason);

    // A steady Mall costs no write: 4 ticks at the size the load needs.
    let user = format!("system:serviceaccount:{OPERATOR_NS}:mall-mall-operator");
    wait_until("the Mall Ready at the new size", Duration::from_secs(30), || async {
        let m = malls.get("shop").await.ok()?;
        let tiers = m.status.as_ref()?.tiers.clone()?;
        (ready(&m) && tiers.storefront.ready == MAX && tiers.storefront.desired == MAX).then_some(())
    })
    .await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    if let Some(local) = env.local_only(
        "autoscaled Mall at steady state: 0 writes",
        "it counts writes in the local control plane's audit log",
    ) {
        let before = writes_by(local, &user).len();
        tokio::time::sleep(Duration::from_secs(8)).await;
        let steady: Vec<String> = writes_by(local, &user).split_off(before);
        assert!(steady.is_empty(), "a steady Mall was written: {steady:#?}\n{}", log());
    }

    // An unrelated edit does not reset the replicas: the reconciler released spec.replicas.
    let patch = json!({"spec": {"storefront": {"image": "shop:2"}}});
    malls.patch("shop", &PatchParams::default(), &Patch::Merge(&patch)).await.unwrap();
    wait_until("the new image applied", Duration::from_secs(30), || async {
        let d = deployments.get("shop-storefront").await.ok()?;
        (d.spec?.template.spec?.containers.first()?.image.as_deref() == Some("shop:2")).then_some(())
    })
    .await;
    for _ in 0..10 {
        assert_eq!(replicas(&deployments).await, Some(MAX), "the edit reset the replicas\n{}", log());
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    let d = deployments.get("shop-storefront").await.unwrap();
    let managed = d.metadata.managed_fields.unwrap_or_default();
    let owns_replicas = |manager: &str| {
        managed.iter().filter(|m| m.manager.as_deref() == Some(manager)).any(|m| {
            m.fields_v1.as_ref().is_some_and(|f| f.0.get("f:spec").and_then(|s| s.get("f:replicas")).is_some())
        })
    };
    assert!(owns_replicas("mall-autoscaler"), "mall-autoscaler owns spec.replicas: {managed:#?}");
    assert!(!owns_replicas("mall-operator"), "the reconciler released spec.replicas: {managed:#?}");

    // Prometheus stops: MetricsUnavailable, and the size holds.
    prometheus.stop();
    let what = "MetricsUnavailable=True";
    let m = tokio::time::timeout(
        Duration::from_secs(30),
        wait_until(what, Duration::from_secs(30), || async {
            let m = malls.get("shop").await.ok()?;
            (condition(&m, "MetricsUnavailable").as_deref() == Some("True")).then_some(m)
        }),
    )
    .await
    .unwrap_or_else(|_| panic!("{what}: timed out\n{}", log()));
    let unavailable = m.status.unwrap().conditions.into_iter().find(|c| c.type_ == "MetricsUnavailable").unwrap();
    assert_eq!(unavailable.reason, "NoData", "{unavailable:?}");
    assert!(unavailable.message.contains("Prometheus"), "{unavailable:?}");
    // Another edit makes the reconciler write its status: the autoscaler's condition stays.
    let patch = json!({"spec": {"storefront": {"image": "shop:3"}}});
    malls.patch("shop", &PatchParams::default(), &Patch::Merge(&patch)).await.unwrap();
    for _ in 0..20 {
        assert_eq!(replicas(&deployments).await, Some(MAX), "replicas moved without metrics\n{}", log());
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    let m = wait_until("Ready after the edit", Duration::from_secs(30), || async {
        malls.get("shop").await.ok().filter(ready)
    })
    .await;
    assert_eq!(condition(&m, "MetricsUnavailable").as_deref(), Some("True"), "{:#?}", m.status);
    assert_eq!(replicas(&deployments).await, Some(MAX));
    eprintln!("operator_autoscale took {:?}", started.elapsed());
}
