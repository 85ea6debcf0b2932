//! The CloudNativePG status simulator (a stand-in for tests and `mallctl dev`) against the real
//! CNPG v1.30.1 CRDs on a local control plane: create, scale, failover, owned objects and
//! garbage collection, each checked against the documented order of phases.

mod common;

use std::time::{Duration, Instant};

use common::{chain, eventually, namespace, start};
use futures::StreamExt;
use k8s_openapi::api::core::v1::{Secret, Service};
use kube::api::{Api, ApiResource, DeleteParams, DynamicObject, GroupVersionKind, Patch, PatchParams, PostParams};
use kube::runtime::{WatchStreamExt, watcher};
use localcluster::cnpg_sim::{self, CnpgSimulator, SimulatorOptions};
use localcluster::{LocalCluster, Options};
use serde_json::{Value, json};
use tokio::sync::mpsc;

const NS: &str = "shop";
const HEALTHY: &str = "Cluster in healthy state";
const WAITING: &str = "Waiting for the instances to become active";
const REPLICA: &str = "Creating a new replica";
const FIRST: &str = "Setting up primary";
const FAILOVER: &str = "Failing over";
const BOUND: Duration = Duration::from_secs(30);

fn resource(kind: &str) -> ApiResource {
    ApiResource::from_gvk(&GroupVersionKind::gvk("postgresql.cnpg.io", "v1", kind))
}

fn condition<'a>(status: &'a Value, type_: &str) -> &'a Value {
    status["conditions"].as_array().and_then(|cs| cs.iter().find(|c| c["type"] == type_)).unwrap_or(&Value::Null)
}

/// Every status the API server reports for Cluster `pg`, in order.
struct Observed {
    rx: mpsc::UnboundedReceiver<Value>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Observed {
    fn drop(&mut self) {
        // An open watch would hold up the API server's shutdown.
        self.task.abort();
    }
}

impl Observed {
    /// Starts the watch and returns once its initial list is done, so no later write is missed.
    async fn watch(client: &kube::Client) -> Observed {
        let api = Api::<DynamicObject>::namespaced_with(client.clone(), NS, &resource("Cluster"));
        let (tx, rx) = mpsc::unbounded_channel();
        let (listed, mut listed_rx) = mpsc::unbounded_channel();
        let stream = watcher(api, watcher::Config::default().fields("metadata.name=pg")).default_backoff();
        let task = tokio::spawn(async move {
            let mut stream = stream.boxed();
            while let Some(event) = stream.next().await {
                let status = match event {
                    Ok(watcher::Event::Apply(obj) | watcher::Event::InitApply(obj)) => obj.data.get("status").cloned(),
                    Ok(watcher::Event::InitDone) => {
                        let _ = listed.send(());
                        continue;
                    }
                    _ => continue,
                };
                if tx.send(status.unwrap_or(Value::Null)).is_err() {
                    return;
                }
            }
        });
        tokio::time::timeout(BOUND, listed_rx.recv()).await.expect("the watch did not list in time");
        Observed { rx, task }
    }

    /// Consumes statuses until `done` holds for one; returns the statuses consumed (bounded).
    async fn until(&mut self, what: &str, done: impl Fn(&Value) -> bool) -> Vec<Value> {
        let deadline = Instant::now() + BOUND;
        let mut batch = Vec::new();
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match tokio::time::timeout(left, self.rx.recv()).await {
                Ok(Some(status)) => {
                    let finished = done(&status);
                    batch.push(status);
                    if finished {
                        return batch;
                    }
                }
                Ok(None) => panic!("the watch ended while waiting for {what}"),
                Err(_) => panic!("timed out after {BOUND:?} waiting for {what}; saw phases {:?}", phases(&batch)),
            }
        }
    }
}

/// The phases of `statuses`, consecutive repeats collapsed.
fn phases(statuses: &[Value]) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for s in statuses {
        if let Some(p) = s["phase"].as_str()
            && out.last().map(String::as_str) != Some(p)
        {
            out.push(p.to_string());
        }
    }
    out
}

fn healthy_with(n: u64) -> impl Fn(&Value) -> bool {
    move |s| s["phase"] == HEALTHY && s["readyInstances"] == n && s["instances"] == n
}

async fn cnpg_crds(cluster: &LocalCluster) {
    let files = tokio::task::spawn_blocking(localcluster::thirdparty::crd_files).await.expect("join").expect("files");
    let cnpg: Vec<_> = files.into_iter().filter(|f| f.to_string_lossy().contains("/cloudnative-pg@")).collect();
    assert!(!cnpg.is_empty(), "no CloudNativePG CRD files found");
    localcluster::install_crds(&cluster.client(), &cnpg).await.unwrap_or_else(|e| panic!("CRDs: {}", chain(&e)));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn simulated_cnpg_cluster_lifecycle() {
    let mut cluster = start(Options::new("cnpgsim")).await;
    let admin = cluster.client();
    cnpg_crds(&cluster).await;
    namespace(&admin, NS, &[]).await;
    let sim_client = cnpg_sim::client_from_kubeconfig(&cluster.kubeconfig()).await.expect("simulator client");
    let sim = CnpgSimulator::spawn(sim_client, SimulatorOptions::default());
    let clusters = Api::<DynamicObject>::namespaced_with(admin.clone(), NS, &resource("Cluster"));
    let mut observed = Observed::watch(&admin).await;

    // Create: the documented order, ending healthy.
    let started = Instant::now();
    let pg: DynamicObject = serde_json::from_value(json!({
        "apiVersion": "postgresql.cnpg.io/v1", "kind": "Cluster",
        "metadata": {"name": "pg", "namespace": NS},
        "spec": {
            "instances": 3,
            "storage": {"size": "1Gi"},
            "plugins": [{"name": "barman-cloud.cloudnative-pg.io", "isWALArchiver": true,
                         "parameters": {"barmanObjectName": "pg-store"}}],
        },
    }))
    .expect("cluster object");
    clusters.create(&PostParams::default(), &pg).await.unwrap_or_else(|e| panic!("create Cluster: {}", chain(&e)));
    let batch = observed.until("3 healthy instances", healthy_with(3)).await;
    eprintln!("create: healthy after {:?}", started.elapsed());
    assert_eq!(phases(&batch), [FIRST, WAITING, REPLICA, WAITING, REPLICA, WAITING, HEALTHY], "phases while creating");
    let first = batch.iter().find(|s| condition(s, "Initialized").is_object()).expect("an Initialized condition");
    assert_eq!(condition(first, "Initialized")["reason"], "BootstrapPending");
    let setting_up = batch.iter().find(|s| s["phase"] == FIRST).expect("Setting up primary");
    assert_eq!(setting_up["targetPrimary"], "pg-1");
    assert_eq!(setting_up["phaseReason"], "Creating primary instance pg-1");
    let first_replica = batch.iter().find(|s| s["phase"] == REPLICA).expect("a replica");
    assert_eq!((&first_replica["currentPrimary"], &first_replica["timelineID"]), (&json!("pg-1"), &json!(1)));
    assert_eq!(first_replica["phaseReason"], "Creating replica pg-2-join");
    for s in &batch {
        if let Some(p) = s["phase"].as_str() {
            assert_eq!(condition(s, "Ready")["status"] == "True", p == HEALTHY, "Ready mirrors the phase: {s:#}");
        }
    }
    let last = batch.last().expect("a status");
    assert_eq!(condition(last, "Ready")["reason"], "ClusterIsReady");
    assert_eq!(condition(last, "Initialized")["reason"], "BootstrapCompleted");
    assert_eq!(condition(last, "ContinuousArchiving")["status"], "True");
    assert_eq!(last["currentPrimary"], "pg-1");
    assert_eq!(last["targetPrimary"], "pg-1");
    assert_eq!(last["instancesStatus"]["healthy"], json!(["pg-1", "pg-2", "pg-3"]));
    assert_eq!(last["instanceNames"], json!(["pg-1", "pg-2", "pg-3"]));
    assert_eq!((&last["writeService"], &last["readService"]), (&json!("pg-rw"), &json!("pg-r")));

    // What CNPG creates next to it, owned by the Cluster.
    let uid = clusters.get("pg").await.expect("get Cluster").metadata.uid.expect("uid");
    let secrets: Api<Secret> = Api::namespaced(admin.clone(), NS);
    let app = secrets.get("pg-app").await.expect("pg-app Secret");
    assert_eq!(app.type_.as_deref(), Some("kubernetes.io/basic-auth"));
    let data = app.data.clone().expect("data");
    for key in ["username", "password", "dbname", "host", "port", "uri"] {
        assert!(data.contains_key(key), "pg-app lacks {key}");
    }
    assert_eq!(data["host"].0, b"pg-rw");
    assert_eq!(app.metadata.owner_references.expect("owner")[0].uid, uid);
    let services: Api<Service> = Api::namespaced(admin.clone(), NS);
    for (name, key, value) in
        [("pg-rw", "cnpg.io/instanceRole", "primary"), ("pg-ro", "cnpg.io/instanceRole", "replica")]
    {
        let svc = services.get(name).await.unwrap_or_else(|e| panic!("Service {name}: {e}"));
        let spec = svc.spec.expect("spec");
        assert_eq!(spec.type_.as_deref(), Some("ClusterIP"));
        let selector = spec.selector.expect("selector");
        assert_eq!((selector["cnpg.io/cluster"].as_str(), selector[key].as_str()), ("pg", value));
        assert_eq!(svc.metadata.owner_references.expect("owner")[0].uid, uid);
    }
    services.get("pg-r").await.expect("Service pg-r");

    // Scale up to 5.
    let started = Instant::now();
    clusters
        .patch("pg", &PatchParams::default(), &Patch::Merge(json!({"spec": {"instances": 5}})))
        .await
        .expect("scale to 5");
    let batch = observed.until("5 healthy instances", healthy_with(5)).await;
    eprintln!("scale 3->5: healthy after {:?}", started.elapsed());
    assert_eq!(phases(&batch), [HEALTHY, REPLICA, WAITING, REPLICA, WAITING, HEALTHY], "phases while scaling up");
    assert_eq!(batch.last().expect("status")["instanceNames"], json!(["pg-1", "pg-2", "pg-3", "pg-4", "pg-5"]));

    // Fail the primary: failover to pg-2 on timeline 2, then pg-1 rejoins.
    let started = Instant::now();
    sim.fail_instance(NS, "pg", 1).await.expect("fail pg-1");
    assert!(sim.fail_instance(NS, "pg", 9).await.is_err(), "an unknown instance was failed");
    let batch = observed.until("healthy after failover", |s| healthy_with(5)(s) && s["currentPrimary"] == "pg-2").await;
    eprintln!("failover: healthy after {:?}", started.elapsed());
    // The first write after the fault is already the failover's (nothing else changed before it).
    assert_eq!(phases(&batch), [FAILOVER, HEALTHY], "phases while failing over");
    let reasons: Vec<&str> = batch.iter().filter_map(|s| s["phaseReason"].as_str()).collect();
    assert!(reasons.contains(&"Initiating a failover from pg-1"), "{reasons:?}");
    assert!(reasons.contains(&"Failing over from pg-1 to pg-2"), "{reasons:?}");
    assert!(batch.iter().any(|s| s["targetPrimary"] == "pending"), "targetPrimary was never pending");
    assert!(batch.iter().any(|s| s["readyInstances"] == 4), "readyInstances never dropped");
    let last = batch.last().expect("status");
    assert_eq!((&last["timelineID"], &last["targetPrimary"]), (&json!(2), &json!("pg-2")));
    assert_eq!(condition(last, "Ready")["status"], "True");

    // Scale down to 4: the highest serial goes, the primary stays.
    clusters
        .patch("pg", &PatchParams::default(), &Patch::Merge(json!({"spec": {"instances": 4}})))
        .await
        .expect("scale to 4");
    let batch = observed.until("4 healthy instances", healthy_with(4)).await;
    let last = batch.last().expect("status");
    assert_eq!(last["instanceNames"], json!(["pg-1", "pg-2", "pg-3", "pg-4"]));
    assert_eq!(last["currentPrimary"], "pg-2");
    assert_eq!(phases(&batch), [HEALTHY], "scaling down has no phase of its own");

    // A Pooler gets its instances.
    let poolers = Api::<DynamicObject>::namespaced_with(admin.clone(), NS, &resource("Pooler"));
    let pooler: DynamicObject = serde_json::from_value(json!({
        "apiVersion": "postgresql.cnpg.io/v1", "kind": "Pooler",
        "metadata": {"name": "pg-pooler-rw", "namespace": NS},
        "spec": {"cluster": {"name": "pg"}, "instances": 2, "type": "rw", "pgbouncer": {"poolMode": "session"}},
    }))
    .expect("pooler object");
    poolers.create(&PostParams::default(), &pooler).await.unwrap_or_else(|e| panic!("create Pooler: {}", chain(&e)));
    eventually("Pooler status.instances=2", BOUND, || async {
        let p = poolers.get("pg-pooler-rw").await.ok()?;
        (p.data["status"]["instances"] == 2 && p.data["status"]["phase"] == "active").then_some(())
    })
    .await;

    // The status writes came from the simulator's own identity.
    let events = localcluster::audit::read_events(&cluster.audit_log()).expect("audit log");
    let status_writers: Vec<_> = events
        .iter()
        .filter(|e| e.resource.as_deref() == Some("clusters") && e.subresource.as_deref() == Some("status"))
        .filter_map(|e| e.user_agent.clone())
        .collect();
    assert!(!status_writers.is_empty(), "no Cluster status write in the audit log");
    assert!(status_writers.iter().all(|ua| ua.starts_with("cnpg-status-simulator")), "{status_writers:?}");

    // Deleting the Cluster garbage-collects its Secret and Services.
    let started = Instant::now();
    clusters.delete("pg", &DeleteParams::default()).await.expect("delete Cluster");
    // The garbage collector sees a CRD's objects only after its next discovery resync (every 30 s
    // in kube-controller-manager), so this wait is longer.
    eventually("pg-app and the Services to be garbage-collected", Duration::from_secs(90), || async {
        let secret_gone = secrets.get_opt("pg-app").await.ok()?.is_none();
        let mut services_gone = true;
        for name in ["pg-rw", "pg-ro", "pg-r"] {
            services_gone &= services.get_opt(name).await.ok()?.is_none();
        }
        (secret_gone && services_gone).then_some(())
    })
    .await;
    eprintln!("garbage collection after {:?}", started.elapsed());

    drop(observed);
    sim.stop().await.expect("stop the simulator");
    cluster.stop().await.expect("stop the cluster");
}
