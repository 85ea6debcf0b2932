//! Lifecycle: three clusters run at once (a hub and two regions, distinct loopback CIDRs,
//! each answering for itself); a region killed outright and restarted keeps its objects and
//! runs new pods again; an orderly stop leaves no process behind.

mod common;

use std::time::Duration;

use common::{eventually, obj, start};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{ConfigMap, Node, Pod, Service};
use kube::api::{Api, ListParams, PostParams};
use localcluster::{LocalCluster, Options};
use serde_json::json;

async fn ready_pods(client: &kube::Client, ns: &str, app: &str) -> usize {
    let pods: Api<Pod> = Api::namespaced(client.clone(), ns);
    let Ok(list) = pods.list(&ListParams::default().labels(&format!("app={app}"))).await else {
        return 0;
    };
    list.items
        .iter()
        .filter(|p| {
            p.status
                .as_ref()
                .and_then(|s| s.conditions.as_ref())
                .is_some_and(|cs| cs.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
        })
        .count()
}

async fn deploy(client: &kube::Client, name: &str, replicas: i32) {
    Api::<Deployment>::namespaced(client.clone(), "default")
        .create(
            &PostParams::default(),
            &obj(json!({
                "metadata": { "name": name },
                "spec": {
                    "replicas": replicas,
                    "selector": { "matchLabels": { "app": name } },
                    "template": {
                        "metadata": { "labels": { "app": name } },
                        "spec": { "containers": [{ "name": "c", "image": "registry.invalid/x:1" }] }
                    }
                }
            })),
        )
        .await
        .expect("create deployment");
}

fn pids_of(cluster: &LocalCluster) -> Vec<String> {
    // Processes whose command line names this cluster's directory.
    let dir = cluster.dir().display().to_string();
    let out = std::process::Command::new("ps").args(["-eo", "pid,args"]).output().expect("ps");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| l.contains(&dir) && !l.contains(" ps "))
        .map(str::to_string)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_clusters_kill_restart_stop() {
    let (hub, mut east, mut west) = tokio::join!(
        start(Options::new("hub").index(0)),
        start(Options::new("east").index(1)),
        start(Options::new("west").index(2)),
    );
    // Each cluster answers for itself: its own nodes, its own Service range.
    for (cluster, index) in [(&hub, 0u8), (&east, 1), (&west, 2)] {
        let client = cluster.client();
        let nodes = Api::<Node>::all(client.clone()).list(&ListParams::default()).await.expect("list nodes");
        assert_eq!(nodes.items.len(), 3);
        for node in &nodes.items {
            let labels = node.metadata.labels.clone().unwrap_or_default();
            assert_eq!(labels.get("topology.kubernetes.io/region"), Some(&cluster.name().to_string()));
        }
        let svc: Service = Api::namespaced(client.clone(), "default")
            .create(
                &PostParams::default(),
                &obj(json!({
                    "metadata": { "name": "probe" },
                    "spec": { "ports": [{ "port": 80 }], "selector": { "app": "probe" } }
                })),
            )
            .await
            .expect("create service");
        let ip = svc.spec.and_then(|s| s.cluster_ip).expect("cluster IP");
        assert!(
            ip.starts_with(&format!("127.{}.", 96 + index)),
            "{}: ClusterIP {ip} outside {}",
            cluster.name(),
            cluster.service_cidr()
        );
        assert_eq!(cluster.pod_cidr(), format!("127.{}.0.0/16", 64 + index));
    }
    assert_ne!(hub.server(), east.server());

    // Kill a region outright; the others keep answering; restart it: objects survive.
    let east_client = east.client();
    Api::<ConfigMap>::namespaced(east_client.clone(), "default")
        .create(&PostParams::default(), &obj(json!({ "metadata": { "name": "survivor" }, "data": { "k": "v" } })))
        .await
        .expect("create configmap");
    deploy(&east_client, "before", 2).await;
    eventually("pods before the outage", Duration::from_secs(20), || async {
        (ready_pods(&east_client, "default", "before").await == 2).then_some(())
    })
    .await;
    east.kill();
    assert!(!east.is_running());
    assert!(pids_of(&east).is_empty(), "left after kill: {:?}", pids_of(&east));
    Api::<ConfigMap>::namespaced(east_client.clone(), "default")
        .get("survivor")
        .await
        .expect_err("a killed cluster answered");
    Api::<Node>::all(hub.client()).list(&ListParams::default()).await.expect("the hub answers during the outage");
    east.restart().await.unwrap_or_else(|e| panic!("restart: {}", common::chain(&e)));
    let cm = Api::<ConfigMap>::namespaced(east_client.clone(), "default")
        .get("survivor")
        .await
        .expect("configmap survives a restart");
    assert_eq!(cm.data.and_then(|d| d.get("k").cloned()).as_deref(), Some("v"));
    // The restarted kwok takes over the nodes at once: new pods become Ready.
    deploy(&east_client, "after", 2).await;
    eventually("pods after the restart", Duration::from_secs(20), || async {
        (ready_pods(&east_client, "default", "after").await == 2).then_some(())
    })
    .await;

    // An orderly stop leaves nothing behind; a stopped cluster restarts too.
    west.stop().await.expect("stop");
    assert!(pids_of(&west).is_empty(), "left after stop: {:?}", pids_of(&west));
    drop(west);
    let dir = east.dir().to_path_buf();
    drop(east);
    assert!(!dir.exists(), "temporary directory {} left behind", dir.display());
    drop(hub);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn start_failure_names_the_component_and_its_log() {
    let opts = Options::new("broken").index(3).apiserver_arg("--no-such-flag=1");
    let err = LocalCluster::start(opts).await.expect_err("an API server with an unknown flag started");
    let text = common::chain(&err);
    assert!(
        matches!(&err, localcluster::ClusterError::Exited { component, .. } if component == "kube-apiserver"),
        "{text}"
    );
    assert!(text.contains("unknown flag: --no-such-flag"), "{text}");
}
