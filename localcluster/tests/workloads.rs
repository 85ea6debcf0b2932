//! Workloads on one cluster with a 2 s pod start-up delay: a Deployment becomes Ready no sooner
//! than the delay and `kubectl rollout status` returns; a StatefulSet with volumeClaimTemplates
//! rolls out in order with its PVCs Bound; a Job completes; deleting a Deployment
//! garbage-collects its ReplicaSet and pods.

mod common;

use std::time::{Duration, Instant};

use common::{eventually, kubectl, namespace, obj, start};
use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet, StatefulSet};
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{PersistentVolumeClaim, Pod, Service};
use kube::api::{Api, DeleteParams, ListParams, PostParams};
use localcluster::{LocalCluster, Options};
use serde_json::json;

const DELAY: Duration = Duration::from_secs(2);

fn is_ready(pod: &Pod) -> bool {
    pod.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|cs| cs.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}

fn pod_template(app: &str) -> serde_json::Value {
    json!({
        "metadata": { "labels": { "app": app } },
        "spec": { "containers": [{ "name": "app", "image": "registry.invalid/app:1" }] }
    })
}

async fn deployment_ready_after_delay(cluster: &LocalCluster) {
    let client = cluster.client();
    namespace(&client, "deploy", &[]).await;
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), "deploy");
    let pods: Api<Pod> = Api::namespaced(client.clone(), "deploy");
    let t0 = Instant::now();
    deployments
        .create(
            &PostParams::default(),
            &obj(json!({
                "metadata": { "name": "web" },
                "spec": {
                    "replicas": 3,
                    "selector": { "matchLabels": { "app": "web" } },
                    "template": pod_template("web"),
                }
            })),
        )
        .await
        .expect("create deployment");
    let selector = ListParams::default().labels("app=web");
    // All three pods exist and are scheduled well before the delay, and none is Ready yet.
    let scheduled = eventually("3 scheduled pods", Duration::from_secs(10), || async {
        let list = pods.list(&selector).await.ok()?;
        let scheduled =
            list.items.iter().filter(|p| p.spec.as_ref().and_then(|s| s.node_name.as_ref()).is_some()).count();
        (scheduled == 3).then_some(list.items)
    })
    .await;
    let at = t0.elapsed();
    assert!(at < DELAY, "pods took {at:?} to be scheduled");
    assert!(
        scheduled.iter().all(|p| !is_ready(p)),
        "a pod was Ready {at:?} after creation, before the {DELAY:?} delay"
    );
    let ready_at = eventually("3 Ready pods", Duration::from_secs(15), || async {
        let list = pods.list(&selector).await.ok()?;
        (list.items.iter().filter(|p| is_ready(p)).count() == 3).then(|| t0.elapsed())
    })
    .await;
    assert!(ready_at >= DELAY - Duration::from_millis(30), "Ready after {ready_at:?}");
    assert!(ready_at < DELAY + Duration::from_secs(3), "Ready only after {ready_at:?}");
    let (ok, out) = kubectl(cluster, &["rollout", "status", "-n", "deploy", "deployment/web", "--timeout=30s"]).await;
    assert!(ok, "kubectl rollout status failed: {out}");
    assert!(out.contains("successfully rolled out"), "{out}");
    // Pod IPs come from the cluster's loopback pod CIDR.
    let ip = pods.list(&selector).await.expect("list").items[0]
        .status
        .as_ref()
        .and_then(|s| s.pod_ip.clone())
        .expect("pod IP");
    assert!(ip.starts_with("127.64."), "pod IP {ip} outside 127.64.0.0/16");

    // Garbage collection: deleting the Deployment removes its ReplicaSet and pods.
    deployments.delete("web", &DeleteParams::default()).await.expect("delete deployment");
    let replicasets: Api<ReplicaSet> = Api::namespaced(client.clone(), "deploy");
    eventually("ReplicaSet and pods collected", Duration::from_secs(30), || async {
        let rs = replicasets.list(&selector).await.ok()?.items.len();
        let p = pods.list(&selector).await.ok()?.items.len();
        (rs == 0 && p == 0).then_some(())
    })
    .await;
}

async fn statefulset_in_order_with_pvcs(cluster: &LocalCluster) {
    let client = cluster.client();
    namespace(&client, "sts", &[]).await;
    Api::<Service>::namespaced(client.clone(), "sts")
        .create(
            &PostParams::default(),
            &obj(json!({
                "metadata": { "name": "db" },
                "spec": { "clusterIP": "None", "selector": { "app": "db" },
                          "ports": [{ "port": 5432 }] }
            })),
        )
        .await
        .expect("create headless service");
    let mut template = pod_template("db");
    template["spec"]["containers"][0]["volumeMounts"] = json!([{ "name": "data", "mountPath": "/data" }]);
    Api::<StatefulSet>::namespaced(client.clone(), "sts")
        .create(
            &PostParams::default(),
            &obj(json!({
                "metadata": { "name": "db" },
                "spec": {
                    "replicas": 3,
                    "serviceName": "db",
                    "selector": { "matchLabels": { "app": "db" } },
                    "template": template,
                    "volumeClaimTemplates": [{
                        "metadata": { "name": "data" },
                        "spec": { "accessModes": ["ReadWriteOnce"],
                                  "resources": { "requests": { "storage": "1Gi" } } }
                    }]
                }
            })),
        )
        .await
        .expect("create statefulset");
    let (ok, out) = kubectl(cluster, &["rollout", "status", "-n", "sts", "statefulset/db", "--timeout=60s"]).await;
    assert!(ok, "kubectl rollout status failed: {out}");
    let pods: Api<Pod> = Api::namespaced(client.clone(), "sts");
    let mut created = Vec::new();
    for i in 0..3 {
        let pod = pods.get(&format!("db-{i}")).await.expect("pod");
        assert!(is_ready(&pod), "db-{i} not Ready");
        created.push(pod.metadata.creation_timestamp.expect("creation timestamp").0);
    }
    // OrderedReady: db-(i+1) is created only once db-i is Ready, DELAY later.
    for i in 0..2 {
        assert!(
            created[i + 1] > created[i],
            "db-{} created at {:?}, not after db-{i} at {:?}",
            i + 1,
            created[i + 1],
            created[i]
        );
    }
    let pvcs: Api<PersistentVolumeClaim> = Api::namespaced(client, "sts");
    eventually("3 Bound PVCs", Duration::from_secs(20), || async {
        let list = pvcs.list(&ListParams::default()).await.ok()?;
        let bound =
            list.items.iter().filter(|p| p.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Bound")).count();
        (bound == 3).then_some(())
    })
    .await;
}

async fn job_completes(cluster: &LocalCluster) {
    let client = cluster.client();
    namespace(&client, "jobs", &[]).await;
    let mut template = pod_template("batch");
    template["spec"]["restartPolicy"] = json!("Never");
    Api::<Job>::namespaced(client.clone(), "jobs")
        .create(
            &PostParams::default(),
            &obj(json!({
                "metadata": { "name": "once" },
                "spec": { "completions": 2, "parallelism": 2, "template": template }
            })),
        )
        .await
        .expect("create job");
    let (ok, out) =
        kubectl(cluster, &["wait", "-n", "jobs", "job/once", "--for=condition=Complete", "--timeout=60s"]).await;
    assert!(ok, "job did not complete: {out}");
    let job = Api::<Job>::namespaced(client, "jobs").get("once").await.expect("get job");
    assert_eq!(job.status.and_then(|s| s.succeeded), Some(2));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn workloads_run_under_kwok() {
    let cluster = start(Options::new("workloads").pod_startup(DELAY)).await;
    tokio::join!(
        deployment_ready_after_delay(&cluster),
        statefulset_in_order_with_pvcs(&cluster),
        job_completes(&cluster),
    );
}
