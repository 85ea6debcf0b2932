//! The CloudNativePG status simulator's distributed topology on TWO local control planes, each
//! with its own simulator, sharing one object-store directory: a primary Cluster in the first and
//! its replica Cluster in the second (ObjectStores in both naming the same destinationPath), the
//! replica replaying the primary's archive, a controlled switchover with the demotion token
//! written through the two API servers, then a failover without a token and the WAL it lost.

mod common;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::{chain, eventually, namespace, start};
use futures::StreamExt;
use kube::api::{Api, ApiResource, DynamicObject, GroupVersionKind, Patch, PatchParams, PostParams};
use kube::runtime::{WatchStreamExt, watcher};
use localcluster::cnpg_sim::model::{PHASE_PROMOTING, Role, WalPositions};
use localcluster::cnpg_sim::wal::{PromotionToken, lsn_string};
use localcluster::cnpg_sim::{self, CnpgSimulator, SimulatorOptions};
use localcluster::{LocalCluster, Options};
use serde_json::{Value, json};

const NS: &str = "shop";
const HEALTHY: &str = "Cluster in healthy state";
const BOUND: Duration = Duration::from_secs(60);
const DESTINATION: &str = "s3://mall/shard-0/";

fn cluster_api(client: &kube::Client) -> Api<DynamicObject> {
    let ar = ApiResource::from_gvk(&GroupVersionKind::gvk("postgresql.cnpg.io", "v1", "Cluster"));
    Api::namespaced_with(client.clone(), NS, &ar)
}

fn condition<'a>(status: &'a Value, type_: &str) -> &'a Value {
    status["conditions"].as_array().and_then(|cs| cs.iter().find(|c| c["type"] == type_)).unwrap_or(&Value::Null)
}

/// A control plane with the CNPG and Barman Cloud CRDs, namespace `shop`, ObjectStore `store`
/// (same destinationPath everywhere) and its own simulator on the shared directory.
async fn region(name: &str, index: u8, store_dir: &std::path::Path) -> (LocalCluster, CnpgSimulator) {
    let cluster = start(Options::new(name).index(index)).await;
    let files = tokio::task::spawn_blocking(localcluster::thirdparty::crd_files).await.expect("join").expect("files");
    let crds: Vec<_> = files
        .into_iter()
        .filter(|f| {
            f.to_string_lossy().contains("/cloudnative-pg@") || f.to_string_lossy().contains("/plugin-barman-cloud@")
        })
        .collect();
    localcluster::install_crds(&cluster.client(), &crds).await.unwrap_or_else(|e| panic!("CRDs: {}", chain(&e)));
    namespace(&cluster.client(), NS, &[]).await;
    let ar = ApiResource::from_gvk(&GroupVersionKind::gvk("barmancloud.cnpg.io", "v1", "ObjectStore"));
    let stores = Api::<DynamicObject>::namespaced_with(cluster.client(), NS, &ar);
    let store: DynamicObject = serde_json::from_value(json!({
        "apiVersion": "barmancloud.cnpg.io/v1", "kind": "ObjectStore",
        "metadata": {"name": "store", "namespace": NS},
        "spec": {"configuration": {"destinationPath": DESTINATION}},
    }))
    .expect("ObjectStore object");
    stores.create(&PostParams::default(), &store).await.unwrap_or_else(|e| panic!("ObjectStore: {}", chain(&e)));
    let client = cnpg_sim::client_from_kubeconfig(&cluster.kubeconfig()).await.expect("simulator client");
    let opts = SimulatorOptions {
        step: Duration::from_millis(100),
        object_store_dir: Some(store_dir.to_path_buf()),
        // 16 KiB per simulated second, 300 simulated seconds per second: a 16 MiB segment every
        // ~3.4 s, CNPG's default archive_timeout (5min) every second.
        clock_scale: 300.0,
        ..SimulatorOptions::default()
    };
    (cluster, CnpgSimulator::spawn(client, opts))
}

/// A member of the topology: lists both members as external clusters (plugin archives).
fn member(name: &str, primary: &str, source: &str, extra: Value) -> DynamicObject {
    let plugin = |server: &str| json!({"name": "barman-cloud.cloudnative-pg.io", "parameters": {"barmanObjectName": "store", "serverName": server}});
    let mut spec = json!({
        "instances": 2,
        "storage": {"size": "1Gi"},
        "plugins": [{"name": "barman-cloud.cloudnative-pg.io", "isWALArchiver": true,
                     "parameters": {"barmanObjectName": "store"}}],
        "externalClusters": [{"name": "pg-a", "plugin": plugin("pg-a")}, {"name": "pg-b", "plugin": plugin("pg-b")}],
        "replica": {"primary": primary, "source": source},
    });
    if let (Some(spec), Some(extra)) = (spec.as_object_mut(), extra.as_object()) {
        spec.extend(extra.clone());
    }
    serde_json::from_value(json!({
        "apiVersion": "postgresql.cnpg.io/v1", "kind": "Cluster",
        "metadata": {"name": name, "namespace": NS}, "spec": spec,
    }))
    .expect("Cluster object")
}

/// Every status the API server reports for one Cluster, collected in the background.
struct History {
    seen: Arc<Mutex<Vec<Value>>>,
    task: tokio::task::JoinHandle<()>,
}

impl History {
    fn watch(api: Api<DynamicObject>, name: &str) -> History {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let sink = seen.clone();
        let stream =
            watcher(api, watcher::Config::default().fields(&format!("metadata.name={name}"))).default_backoff();
        let task = tokio::spawn(async move {
            let mut stream = stream.boxed();
            while let Some(event) = stream.next().await {
                if let Ok(watcher::Event::Apply(obj) | watcher::Event::InitApply(obj)) = event {
                    sink.lock().expect("lock").push(obj.data["status"].clone());
                }
            }
        });
        History { seen, task }
    }

    /// Statuses seen so far; the next call returns only newer ones.
    fn drain(&self) -> Vec<Value> {
        std::mem::take(&mut *self.seen.lock().expect("lock"))
    }
}

impl Drop for History {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Waits until `done` holds for the Cluster's status; returns that status.
async fn status_until(api: &Api<DynamicObject>, name: &str, what: &str, done: impl Fn(&Value) -> bool) -> Value {
    let deadline = std::time::Instant::now() + BOUND;
    let mut last = Value::Null;
    while std::time::Instant::now() < deadline {
        if let Ok(obj) = api.get(name).await {
            last = obj.data["status"].clone();
            if done(&last) {
                return last;
            }
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("timed out after {BOUND:?} waiting for {what}; last status {last:#}");
}

async fn positions(sim: &CnpgSimulator, name: &str) -> WalPositions {
    sim.positions(NS, name).await.unwrap_or_else(|e| panic!("positions of {name}: {}", chain(&e)))
}

fn healthy(n: u64) -> impl Fn(&Value) -> bool {
    move |s| s["phase"] == HEALTHY && s["readyInstances"] == n && s["instances"] == n
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn simulated_distributed_topology_switchover_and_failover() {
    let store_dir = tempfile::tempdir().expect("object store dir");
    let (mut c1, sim1) = region("cnpgdist1", 17, store_dir.path()).await;
    let (mut c2, sim2) = region("cnpgdist2", 18, store_dir.path()).await;
    let (a_api, b_api) = (cluster_api(&c1.client()), cluster_api(&c2.client()));
    let (a_seen, b_seen) = (History::watch(a_api.clone(), "pg-a"), History::watch(b_api.clone(), "pg-b"));

    // A primary in region 1, its replica in region 2 (bootstrapped from A's archive).
    a_api.create(&PostParams::default(), &member("pg-a", "pg-a", "pg-b", json!({}))).await.expect("create pg-a");
    status_until(&a_api, "pg-a", "pg-a healthy", healthy(2)).await;
    let replica = member(
        "pg-b",
        "pg-a",
        "pg-a",
        json!({"bootstrap": {"recovery": {"source": "pg-a"}},
               "postgresql": {"parameters": {"archive_timeout": "1d"}}}),
    );
    b_api.create(&PostParams::default(), &replica).await.expect("create pg-b");
    let b = status_until(&b_api, "pg-b", "pg-b healthy", healthy(2)).await;
    assert_eq!((&b["currentPrimary"], &b["timelineID"]), (&json!("pg-b-1"), &json!(1)));
    let file = store_dir.path().join("s3%3A%2F%2Fmall%2Fshard-0%2F").join("pg-a").join("wal.json");
    assert!(file.is_file(), "pg-a's archive is not at {file:?}");

    // The replica replays what the primary archives (archive_timeout 5min = 1 s here).
    let pa = positions(&sim1, "pg-a").await;
    assert_eq!(pa.role, Some(Role::Primary));
    let pb = eventually("pg-b to replay past pg-a's archive", BOUND, || async {
        let pb = sim2.positions(NS, "pg-b").await.ok()?;
        (pb.replayed > pa.archived).then_some(pb)
    })
    .await;
    assert_eq!((pb.role, &pb.system_identifier), (Some(Role::Replica), &pa.system_identifier));
    eprintln!("replica replayed {} (primary archived {})", lsn_string(pb.replayed), lsn_string(pa.archived));

    // Controlled switchover: demote A (region 1), read its token, promote B (region 2).
    let pp = PatchParams::default();
    a_api.patch("pg-a", &pp, &Patch::Merge(json!({"spec": {"replica": {"primary": "pg-b"}}}))).await.expect("demote");
    let a = status_until(&a_api, "pg-a", "pg-a's demotionToken", |s| {
        s["demotionToken"].is_string() && condition(s, "ReplicaClusterSwitch")["status"] == "True"
    })
    .await;
    let token = a["demotionToken"].as_str().expect("token").to_string();
    let during = a_seen.drain();
    assert!(
        during.iter().any(|s| condition(s, "ReplicaClusterSwitch")["status"] == "False"
            && s["switchReplicaClusterStatus"]["inProgress"] == true),
        "no ReplicaClusterSwitch=False with inProgress"
    );
    let content = PromotionToken::decode(&token).expect("a CNPG token");
    let pa = positions(&sim1, "pg-a").await;
    assert_eq!((pa.role, pa.archived), (Some(Role::Replica), pa.written), "A archived its last WAL");
    assert_eq!(content.redo_location, lsn_string(pa.written));
    assert_eq!((content.timeline.as_str(), Some(&content.system_identifier)), ("1", pa.system_identifier.as_ref()));
    b_seen.drain();
    let promote = json!({"spec": {"replica": {"primary": "pg-b", "promotionToken": token}}});
    b_api.patch("pg-b", &pp, &Patch::Merge(promote)).await.expect("promote");
    let b = status_until(&b_api, "pg-b", "pg-b promoted", |s| s["timelineID"] == 2 && healthy(2)(s)).await;
    assert_eq!(b["lastPromotionToken"], token.as_str());
    assert!(b["demotionToken"].is_null());
    assert_eq!(b["currentPrimary"], "pg-b-1");
    assert!(b_seen.drain().iter().any(|s| s["phase"] == PHASE_PROMOTING), "no 'Promoting to primary cluster'");
    // A follows B on timeline 2, no rebuild.
    status_until(&a_api, "pg-a", "pg-a replica on timeline 2", |s| s["timelineID"] == 2 && healthy(2)(s)).await;
    let pb = positions(&sim2, "pg-b").await;
    assert_eq!((pb.role, pb.timeline, pb.replayed), (Some(Role::Primary), 2, pa.written));

    // Region 2 lost: B fenced (writes nothing more), A told it is the primary, no token.
    let fence = json!({"metadata": {"annotations": {"cnpg.io/fencedInstances": "[\"*\"]"}}});
    b_api.patch("pg-b", &pp, &Patch::Merge(fence)).await.expect("fence pg-b");
    status_until(&b_api, "pg-b", "pg-b fenced", |s| s["readyInstances"] == 0).await;
    let pb = positions(&sim2, "pg-b").await;
    sim2.stop().await.expect("stop simulator 2");
    eventually("pg-a to replay pg-b's archive", BOUND, || async {
        let pa = sim1.positions(NS, "pg-a").await.ok()?;
        (pa.replayed == pb.archived).then_some(())
    })
    .await;
    a_seen.drain();
    a_api.patch("pg-a", &pp, &Patch::Merge(json!({"spec": {"replica": {"primary": "pg-a"}}}))).await.expect("failover");
    status_until(&a_api, "pg-a", "pg-a primary on timeline 3", |s| {
        s["timelineID"] == 3 && healthy(2)(s) && s["demotionToken"].is_null()
    })
    .await;
    assert!(!a_seen.drain().iter().any(|s| s["phase"] == PHASE_PROMOTING), "a failover needs no promotion phase");
    let pa = positions(&sim1, "pg-a").await;
    assert_eq!((pa.role, pa.timeline, pa.replayed), (Some(Role::Primary), 3, pb.archived));
    let lost = pb.written - pa.replayed;
    eprintln!(
        "failover lost {lost} bytes of WAL ({} written, {} archived)",
        lsn_string(pb.written),
        lsn_string(pb.archived)
    );
    assert!(lost > 0 && lost == pb.written - pb.archived, "lost {lost}: {pb:?} {pa:?}");

    drop((a_seen, b_seen));
    sim1.stop().await.expect("stop simulator 1");
    c1.stop().await.expect("stop cluster 1");
    c2.stop().await.expect("stop cluster 2");
}
