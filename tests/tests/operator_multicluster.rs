//! One Mall across three real control planes (hub, eu, us): the operator runs against the hub
//! under the chart's RBAC and reaches the members through kubeconfig Secrets holding the chart's
//! member identity. Each region's children land in its own cluster and none in the hub; a
//! converged Mall costs zero writes in every cluster's audit log; two Malls of the same name in
//! two namespaces, and a second hub sharing a member, never touch each other's objects; a
//! killed member leaves the other region reconciled, the status naming the lost one, without a
//! hot loop, and it is reconciled again after restart; a rotated kubeconfig Secret is picked up
//! without a restart; deleting the Mall removes every child from every cluster.

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{ConfigMap, Secret, Service};
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams};
use localcluster::members::{install_member_identity, put_kubeconfig_secret};
use localcluster::{CnpgSimulator, SimulatorOptions};
use mall_crds::Mall;
use mall_e2e::{Env, OperatorProcess, apply_yaml, install_operator_identity, repo_root, wait_until};
use serde_json::{Value, json};
use std::time::{Duration, Instant};

const OPERATOR_NS: &str = "mall-system";
const OPERATOR_USER: &str = "system:serviceaccount:mall-system:mall-mall-operator";
const NAMESPACES: [&str; 2] = ["malls", "other"];
const SELECTOR: &str = "app.kubernetes.io/managed-by=mall-operator";

fn mall(namespace: &str, image: &str) -> Value {
    let text = std::fs::read_to_string(repo_root().join("examples/multi-cluster.yaml")).unwrap();
    let mut value: Value = serde_saphyr::from_str(&text).unwrap();
    value["metadata"]["namespace"] = json!(namespace);
    value["spec"]["storefront"]["image"] = json!(image);
    value
}

fn condition(m: &Mall, type_: &str) -> Option<(String, String, String)> {
    let c = m.status.as_ref()?.conditions.iter().find(|c| c.type_ == type_)?;
    Some((c.status.clone(), c.reason.clone(), c.message.clone()))
}

fn is_ready(m: &Mall) -> bool {
    m.status.as_ref().is_some_and(|s| s.observed_generation == m.metadata.generation)
        && condition(m, "Ready").is_some_and(|c| c.0 == "True")
}

async fn wait_for(
    malls: &Api<Mall>,
    name: &str,
    what: &str,
    op: &OperatorProcess,
    test: impl Fn(&Mall) -> bool,
) -> Mall {
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        if let Some(m) = malls.get_opt(name).await.ok().flatten().filter(|m| test(m)) {
            return m;
        }
        if Instant::now() > deadline {
            let status = malls.get_opt(name).await.ok().flatten().and_then(|m| m.status);
            let log = op.log_text();
            let tail: Vec<&str> = log.lines().rev().take(30).collect();
            panic!("{what}: timed out; status: {status:#?}\noperator log tail:\n{}", tail.join("\n"));
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Names of the Deployments of Mall `name` in `namespace` of a cluster.
async fn deployments(client: &kube::Client, namespace: &str, name: &str) -> Vec<String> {
    let api: Api<Deployment> = Api::namespaced(client.clone(), namespace);
    let list = api.list(&ListParams::default().labels(&format!("{SELECTOR},mallctl.io/mall={name}"))).await;
    let mut names: Vec<String> =
        list.expect("listing Deployments").items.into_iter().filter_map(|d| d.metadata.name).collect();
    names.sort();
    names
}

/// Every object of the kinds checked here that carries the operator's label in `namespace`.
async fn managed(client: &kube::Client, namespace: &str) -> Vec<String> {
    let params = ListParams::default().labels(SELECTOR);
    let mut out = Vec::new();
    let d: Api<Deployment> = Api::namespaced(client.clone(), namespace);
    out.extend(
        d.list(&params)
            .await
            .expect("Deployments")
            .items
            .into_iter()
            .map(|o| format!("Deployment/{}", o.metadata.name.unwrap_or_default())),
    );
    let s: Api<Service> = Api::namespaced(client.clone(), namespace);
    out.extend(
        s.list(&params)
            .await
            .expect("Services")
            .items
            .into_iter()
            .map(|o| format!("Service/{}", o.metadata.name.unwrap_or_default())),
    );
    let c: Api<ConfigMap> = Api::namespaced(client.clone(), namespace);
    out.extend(
        c.list(&params)
            .await
            .expect("ConfigMaps")
            .items
            .into_iter()
            .map(|o| format!("ConfigMap/{}", o.metadata.name.unwrap_or_default())),
    );
    let x: Api<Secret> = Api::namespaced(client.clone(), namespace);
    out.extend(
        x.list(&params)
            .await
            .expect("Secrets")
            .items
            .into_iter()
            .map(|o| format!("Secret/{}", o.metadata.name.unwrap_or_default())),
    );
    out
}

/// Successful writes by the operator's identities in `env`'s audit log (Leases apart).
fn writes(env: &Env) -> Vec<String> {
    let mut writes = mall_e2e::writes_by(env.local.as_ref().expect("a local control plane"), OPERATOR_USER);
    writes.retain(|w| !w.contains(" events "));
    writes
}

async fn connect(hub: &Env, member: &Env, secret: &str) {
    let kubeconfig = install_member_identity(member.local.as_ref().expect("local"), &repo_root(), &NAMESPACES)
        .await
        .expect("member identity");
    for ns in NAMESPACES {
        put_kubeconfig_secret(&hub.client, ns, secret, "kubeconfig", &kubeconfig).await.expect("kubeconfig Secret");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn one_mall_spans_three_clusters() {
    let (hub, eu, us) = tokio::join!(Env::start("mc-hub", 21), Env::start("mc-eu", 22), Env::start("mc-us", 23));
    let dir = tempfile::tempdir().unwrap();
    let kubeconfig = install_operator_identity(&hub, OPERATOR_NS, &NAMESPACES, dir.path()).await;
    connect(&hub, &eu, "cluster-eu-kubeconfig").await;
    connect(&hub, &us, "cluster-us-kubeconfig").await;
    // One object store for the three simulators: the us shards replicate eu's through it.
    let store = tempfile::tempdir().unwrap();
    let options =
        || SimulatorOptions { object_store_dir: Some(store.path().to_path_buf()), ..SimulatorOptions::default() };
    let _sims: Vec<CnpgSimulator> =
        [&hub, &eu, &us].iter().map(|e| CnpgSimulator::spawn(e.client.clone(), options())).collect();
    let op = OperatorProcess::spawn(
        &kubeconfig,
        &dir.path().join("operator.log"),
        &["--leader-election-namespace", OPERATOR_NS],
    );
    let malls: Api<Mall> = Api::namespaced(hub.client.clone(), "malls");
    let others: Api<Mall> = Api::namespaced(hub.client.clone(), "other");

    // Converges with each region's children in its own cluster, none in the hub.
    apply_yaml(&hub.client, None, &[mall("malls", "shop:1"), mall("other", "shop:1")]).await;
    // Converged also means the failover controller has probed both regions Healthy
    // (failureThreshold probes each); until then it writes health changes.
    let converged = |m: &Mall| {
        is_ready(m)
            && m.status
                .as_ref()
                .is_some_and(|s| s.regions.len() == 2 && s.regions.iter().all(|r| r.health == "Healthy"))
    };
    let ready = wait_for(&malls, "global-shop", "malls/global-shop Ready", &op, converged).await;
    wait_for(&others, "global-shop", "other/global-shop Ready", &op, converged).await;
    assert!(ready.metadata.finalizers.unwrap_or_default().contains(&"mallctl.io/member-cleanup".to_string()));
    assert_eq!(deployments(&eu.client, "malls", "global-shop").await, ["global-shop-eu-storefront"]);
    assert_eq!(deployments(&us.client, "malls", "global-shop").await, ["global-shop-us-storefront"]);
    assert_eq!(deployments(&eu.client, "other", "global-shop").await, ["global-shop-eu-storefront"]);
    // Only the shard credentials live in the hub: made there once and copied to each region.
    assert_eq!(
        managed(&hub.client, "malls").await,
        ["Secret/global-shop-db-0-app", "Secret/global-shop-db-1-app"],
        "children in the hub"
    );
    let credential = |client: kube::Client| async move {
        let s: Secret = Api::namespaced(client, "malls").get("global-shop-db-0-app").await.unwrap();
        s.data.unwrap()["password"].0.clone()
    };
    assert_eq!(credential(eu.client.clone()).await, credential(hub.client.clone()).await, "eu's copy");
    assert_eq!(credential(us.client.clone()).await, credential(hub.client.clone()).await, "us's copy");
    let eu_store: Deployment =
        Api::namespaced(eu.client.clone(), "malls").get("global-shop-eu-storefront").await.unwrap();
    assert!(eu_store.metadata.owner_references.is_none(), "a member child has no owner reference");
    assert_eq!(eu_store.metadata.labels.unwrap()["mallctl.io/mall-uid"], ready.metadata.uid.clone().unwrap());
    let password = |client: kube::Client, region: &'static str| async move {
        let s: Secret =
            Api::namespaced(client, "malls").get(&format!("global-shop-{region}-cache-connection")).await.unwrap();
        s.data.unwrap()["CACHE_PASSWORD"].0.clone()
    };
    assert_eq!(
        password(eu.client.clone(), "eu").await,
        password(us.client.clone(), "us").await,
        "one cache password for every region"
    );

    // Converged: zero writes in every cluster's audit log over a quiet period of reconciles.
    let before: Vec<usize> = [&hub, &eu, &us].iter().map(|e| writes(e).len()).collect();
    let reconciles_before = op.metric("mall_operator_reconciles_total").unwrap_or(0.0);
    tokio::time::sleep(Duration::from_secs(8)).await;
    let reconciled = op.metric("mall_operator_reconciles_total").unwrap_or(0.0) - reconciles_before;
    for (env, before) in [&hub, &eu, &us].iter().zip(before) {
        let after = writes(env);
        assert_eq!(after.len(), before, "writes while converged: {:?}", &after[before..]);
    }
    assert!(reconciled >= 4.0, "the quiet period saw only {reconciled} reconciles");
    println!("converged: 0 writes in 3 audit logs over {reconciled} reconciles");

    // A second hub (the us control plane, with its own operator) shares the eu member: its Mall of
    // the same namespace and name has a region `ap` there. Neither prunes the other's objects.
    let kubeconfig2 = install_operator_identity(&us, OPERATOR_NS, &NAMESPACES, dir.path()).await;
    let second = {
        let kc = install_member_identity(eu.local.as_ref().unwrap(), &repo_root(), &NAMESPACES).await.unwrap();
        put_kubeconfig_secret(&us.client, "malls", "cluster-eu-kubeconfig", "kubeconfig", &kc).await.unwrap();
        OperatorProcess::spawn(
            &kubeconfig2,
            &dir.path().join("operator2.log"),
            &["--leader-election-namespace", OPERATOR_NS],
        )
    };
    let mut shared = mall("malls", "shop:1");
    shared["spec"]["regions"] =
        json!([{"name": "ap", "role": "primary", "cluster": {"secretName": "cluster-eu-kubeconfig"}}]);
    shared["spec"].as_object_mut().unwrap().remove("failover");
    apply_yaml(&us.client, None, &[shared]).await;
    let malls2: Api<Mall> = Api::namespaced(us.client.clone(), "malls");
    wait_for(&malls2, "global-shop", "second hub's Mall Ready", &second, is_ready).await;
    apply_yaml(&hub.client, None, &[mall("malls", "shop:2")]).await;
    wait_for(&malls, "global-shop", "edit Ready", &op, is_ready).await;
    assert_eq!(
        deployments(&eu.client, "malls", "global-shop").await,
        ["global-shop-ap-storefront", "global-shop-eu-storefront"]
    );
    malls2.delete("global-shop", &DeleteParams::default()).await.unwrap();
    wait_until("the second hub's Mall gone", Duration::from_secs(60), || async {
        malls2.get_opt("global-shop").await.unwrap().is_none().then_some(())
    })
    .await;
    assert_eq!(deployments(&eu.client, "malls", "global-shop").await, ["global-shop-eu-storefront"]);
    drop(second);

    // eu killed: us is still reconciled, the status names eu, the operator does not hot-loop.
    let mut eu = eu;
    eu.local.as_mut().unwrap().kill();
    let killed = Instant::now();
    apply_yaml(&hub.client, None, &[mall("malls", "shop:3")]).await;
    let image = |client: kube::Client, name: &'static str| async move {
        let d: Deployment = Api::namespaced(client, "malls").get(name).await.ok()?;
        d.spec?.template.spec?.containers.first()?.image.clone()
    };
    wait_until("us storefront at shop:3", Duration::from_secs(60), || async {
        (image(us.client.clone(), "global-shop-us-storefront").await.as_deref() == Some("shop:3")).then_some(())
    })
    .await;
    let degraded = wait_for(&malls, "global-shop", "Degraded/RegionUnreachable naming eu", &op, |m| {
        condition(m, "Degraded").is_some_and(|c| c.1 == "RegionUnreachable" && c.2.contains("region eu"))
    })
    .await;
    println!("eu unreachable after {:.1}s: {:?}", killed.elapsed().as_secs_f64(), condition(&degraded, "Degraded"));
    let reconciles_before = op.metric("mall_operator_reconciles_total").unwrap_or(0.0);
    let hub_writes = writes(&hub).len();
    let us_writes = writes(&us).len();
    let window = Duration::from_secs(20);
    tokio::time::sleep(window).await;
    let reconciles = op.metric("mall_operator_reconciles_total").unwrap_or(0.0) - reconciles_before;
    let (hub_w, us_w) = (writes(&hub).len() - hub_writes, writes(&us).len() - us_writes);
    println!(
        "eu down for {}s: {reconciles} reconciles ({:.2}/s), {hub_w} writes to hub, {us_w} writes to us",
        window.as_secs(),
        reconciles / window.as_secs_f64()
    );
    assert!(reconciles / window.as_secs_f64() < 3.0, "hot loop: {reconciles} reconciles in {window:?}");
    assert!(hub_w <= 4 && us_w <= 4, "writes while eu is down: hub {hub_w}, us {us_w}");

    // eu back: reconciled again (the edit made while it was down arrives).
    eu.local.as_mut().unwrap().restart().await.expect("eu restarts");
    wait_until("eu storefront at shop:3", Duration::from_secs(90), || async {
        (image(eu.client.clone(), "global-shop-eu-storefront").await.as_deref() == Some("shop:3")).then_some(())
    })
    .await;
    wait_for(&malls, "global-shop", "Ready again after eu restart", &op, is_ready).await;

    // A rotated kubeconfig Secret is picked up without a restart: a broken one makes us
    // unreachable, a fresh one (new token) brings it back.
    let broken = localcluster::members::embedded_kubeconfig(
        "us",
        &us.local.as_ref().unwrap().server(),
        us.local.as_ref().unwrap().pki().ca_pem().as_bytes(),
        "not-a-token",
    );
    put_kubeconfig_secret(&hub.client, "malls", "cluster-us-kubeconfig", "kubeconfig", &broken).await.unwrap();
    wait_for(&malls, "global-shop", "us unreachable with a broken kubeconfig", &op, |m| {
        condition(m, "Degraded").is_some_and(|c| c.1 == "RegionUnreachable" && c.2.contains("region us"))
    })
    .await;
    connect(&hub, &us, "cluster-us-kubeconfig").await;
    wait_for(&malls, "global-shop", "Ready after the kubeconfig rotation", &op, is_ready).await;

    // Delete: every child leaves every cluster, then the Mall goes.
    malls.delete("global-shop", &DeleteParams::default()).await.unwrap();
    wait_until("malls/global-shop deleted", Duration::from_secs(60), || async {
        malls.get_opt("global-shop").await.unwrap().is_none().then_some(())
    })
    .await;
    assert!(managed(&eu.client, "malls").await.is_empty(), "left in eu: {:?}", managed(&eu.client, "malls").await);
    assert!(managed(&us.client, "malls").await.is_empty(), "left in us: {:?}", managed(&us.client, "malls").await);
    assert_eq!(
        deployments(&eu.client, "other", "global-shop").await,
        ["global-shop-eu-storefront"],
        "the other namespace's Mall keeps its children"
    );

    // A Mall whose member is gone stays (CleanupBlocked) until it is released by annotation.
    eu.local.as_mut().unwrap().kill();
    others.delete("global-shop", &DeleteParams::default()).await.unwrap();
    wait_for(&others, "global-shop", "Degraded/CleanupBlocked", &op, |m| {
        condition(m, "Degraded").is_some_and(|c| c.1 == "CleanupBlocked" && c.2.contains("cluster-eu-kubeconfig"))
    })
    .await;
    assert!(managed(&us.client, "other").await.is_empty(), "us was emptied although eu is down");
    let release = json!({"metadata": {"annotations": {"mallctl.io/release-unreachable-members": "true"}}});
    others.patch("global-shop", &PatchParams::default(), &Patch::Merge(&release)).await.unwrap();
    wait_until("other/global-shop released", Duration::from_secs(60), || async {
        others.get_opt("global-shop").await.unwrap().is_none().then_some(())
    })
    .await;
    // The operator publishes the Event once the finalizer is off, so it may land just after the
    // Mall is gone.
    let events: Api<k8s_openapi::api::events::v1::Event> = Api::namespaced(hub.client.clone(), "other");
    let reasons = || async {
        let list = events.list(&ListParams::default()).await.expect("events");
        list.items.into_iter().filter_map(|e| e.reason).collect::<Vec<String>>()
    };
    let released = tokio::time::timeout(Duration::from_secs(15), async {
        while !reasons().await.iter().any(|r| r == "ReleasedUnreachableMembers") {
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    })
    .await;
    assert!(released.is_ok(), "no ReleasedUnreachableMembers Event; events: {:?}", reasons().await);
}
