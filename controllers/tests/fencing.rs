//! The failover-epoch fencing policy on a real local control plane (kube-apiserver 1.36 with the
//! CloudNativePG CRDs), installed by `reconcile::fencing::ensure` under the Helm chart's member
//! identity (so the chart's RBAC is proven sufficient): the API server itself refuses a stale
//! writer's update, with the policy's message, and leaves everything else alone. Then `apply`
//! against CloudNativePG's own webhooks: refusals reported by who refused them, and a fenced
//! (stale) view writing nothing else.

use k8s_openapi::api::admissionregistration::v1::ValidatingAdmissionPolicy;
use kube::api::{Api, DynamicObject, Patch, PatchParams, PostParams};
use kube::core::{ApiResource, GroupVersionKind};
use localcluster::{LocalCluster, Options};
use mall_controllers::build::ChildSet;
use mall_controllers::build::database::topology::EPOCH_ANNOTATION;
use mall_controllers::build::database::topology::Topology;
use mall_controllers::build::fencing::POLICY_NAME;
use mall_controllers::failover::execute::{ExecuteError, delete_shards};
use mall_controllers::reconcile::apply::{LiveSource, Owner, apply};
use mall_controllers::reconcile::fencing::{ensure, ensure_counted};
use mall_controllers::reconcile::refusal::{Authority, classify};
use serde_json::{Value, json};
use std::collections::BTreeSet;
use std::path::Path;
use std::time::{Duration, Instant};

const NS: &str = "shop";

fn clusters(client: &kube::Client) -> Api<DynamicObject> {
    let gvk = GroupVersionKind::gvk("postgresql.cnpg.io", "v1", "Cluster");
    Api::namespaced_with(client.clone(), NS, &ApiResource::from_gvk_with_plural(&gvk, "clusters"))
}

/// A distributed-topology member (`self: b`, following `a`), at `epoch` when given.
fn cluster(name: &str, epoch: Option<&str>) -> DynamicObject {
    let annotations = epoch.map(|e| json!({ EPOCH_ANNOTATION: e })).unwrap_or(json!({}));
    let external = |n: &str| {
        json!({"name": n, "plugin": {"name": "barman-cloud.cloudnative-pg.io",
            "parameters": {"barmanObjectName": format!("{n}-store"), "serverName": n}}})
    };
    serde_json::from_value(json!({
        "apiVersion": "postgresql.cnpg.io/v1", "kind": "Cluster",
        "metadata": {"name": name, "namespace": NS, "annotations": annotations},
        "spec": {
            "instances": 3, "storage": {"size": "1Gi"},
            "externalClusters": [external("a"), external("b")],
            "replica": {"primary": "a", "source": "a", "self": "b"},
            "bootstrap": {"recovery": {"source": "a"}},
        },
    }))
    .expect("a Cluster object")
}

async fn merge(api: &Api<DynamicObject>, name: &str, patch: Value, dry_run: bool) -> Result<(), kube::Error> {
    let params = PatchParams { dry_run, ..Default::default() };
    api.patch(name, &params, &Patch::Merge(&patch)).await.map(drop)
}

fn epoch_patch(epoch: &str, primary: Option<&str>) -> Value {
    let mut patch = json!({"metadata": {"annotations": {EPOCH_ANNOTATION: epoch}}});
    if let Some(primary) = primary {
        patch["spec"] = json!({"replica": {"primary": primary}});
    }
    patch
}

/// The update is refused by the fencing policy with a message holding `words`.
async fn refused(api: &Api<DynamicObject>, what: &str, patch: Value, words: &[&str]) {
    match merge(api, "fenced", patch, false).await {
        Ok(()) => panic!("{what}: admitted; the fencing policy must refuse it"),
        Err(error @ kube::Error::Api(_)) => {
            let kube::Error::Api(status) = &error else { unreachable!() };
            eprintln!("{what}: refused ({}): {}", status.code, status.message);
            assert_eq!(status.code, 403, "{what}: {}", status.message);
            assert!(status.message.contains(POLICY_NAME), "{what}: not the fencing policy: {}", status.message);
            for w in words {
                assert!(status.message.contains(w), "{what}: message lacks {w:?}: {}", status.message);
            }
            // The reconciler tells this refusal apart from a failure to answer, by who refused.
            let refusal = classify("Cluster/fenced".into(), &error).expect("a refusal, not a failure");
            assert_eq!(refusal.authority, Authority::EpochFence, "{what}: {refusal:?}");
        }
        Err(e) => panic!("{what}: failed outside admission: {e}"),
    }
}

async fn admitted(api: &Api<DynamicObject>, name: &str, what: &str, patch: Value) {
    if let Err(e) = merge(api, name, patch, false).await {
        panic!("{what}: refused, must be admitted: {e}");
    }
}

async fn live(api: &Api<DynamicObject>, name: &str) -> DynamicObject {
    api.get(name).await.unwrap_or_else(|e| panic!("reading Cluster {name}: {e}"))
}

/// A client of the chart's member identity (`mode=member` for [`NS`]).
async fn member_client(cluster: &LocalCluster) -> kube::Client {
    let repo = Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("the repository root");
    let text = localcluster::members::install_member_identity(cluster, repo, &[NS])
        .await
        .unwrap_or_else(|e| panic!("member identity: {e}"));
    let kubeconfig = kube::config::Kubeconfig::from_yaml(&text).expect("member kubeconfig");
    let config = kube::Config::from_custom_kubeconfig(kubeconfig, &Default::default()).await.expect("config");
    kube::Client::try_from(config).expect("member client")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_api_server_refuses_stale_writers() {
    let local = LocalCluster::start(Options::new("fencing").index(19)).await.unwrap_or_else(|e| panic!("start: {e}"));
    let admin = local.client();
    let files = localcluster::thirdparty::crd_files().expect("third-party CRD files");
    localcluster::crds::install_crds(&admin, &files).await.unwrap_or_else(|e| panic!("CRDs: {e}"));
    let member = member_client(&local).await;

    // Installed by the member identity; a second ensure writes nothing and is cheap.
    let started = Instant::now();
    let first = ensure_counted(&member).await.unwrap_or_else(|e| panic!("first ensure: {e:?}"));
    eprintln!("first ensure: {first:?} in {:?}", started.elapsed());
    assert_eq!(first.written, 2);
    let started = Instant::now();
    let second = ensure_counted(&member).await.unwrap_or_else(|e| panic!("second ensure: {e:?}"));
    eprintln!("converged ensure (2 GETs): {second:?} in {:?}", started.elapsed());
    assert_eq!(second.written, 0, "a converged cluster costs no write");
    ensure(&member).await.unwrap_or_else(|e| panic!("third ensure: {e:?}"));
    let started = Instant::now();
    let (policy, binding) = mall_controllers::build::fencing::objects();
    let params = PatchParams::apply("mall-operator").force();
    let policies: Api<ValidatingAdmissionPolicy> = Api::all(member.clone());
    policies.patch(POLICY_NAME, &params, &Patch::Apply(&policy)).await.expect("no-op apply of the policy");
    let bindings: Api<k8s_openapi::api::admissionregistration::v1::ValidatingAdmissionPolicyBinding> =
        Api::all(member.clone());
    bindings.patch(POLICY_NAME, &params, &Patch::Apply(&binding)).await.expect("no-op apply of the binding");
    eprintln!("for comparison, two no-op server-side applies: {:?}", started.elapsed());

    let api = clusters(&member);
    api.create(&PostParams::default(), &cluster("fenced", Some("1"))).await.expect("Cluster at epoch 1");

    // Readiness, not a retry hiding failures: the API server enforces a new policy only once its
    // policy informer has seen it, so wait (bounded) until a write the policy must refuse is
    // refused, as a dry run that changes nothing. Every assertion below is a single attempt.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match merge(&api, "fenced", epoch_patch("1", Some("b")), true).await {
            Err(kube::Error::Api(status)) if status.message.contains(POLICY_NAME) => break,
            other => assert!(Instant::now() < deadline, "policy not enforced after 10 s: {other:?}"),
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    admitted(&api, "fenced", "a change of instances at the same epoch", json!({"spec": {"instances": 2}})).await;
    refused(
        &api,
        "replica.primary changed at the same epoch",
        epoch_patch("1", Some("b")),
        &["spec.replica changed at failover epoch 1 but the cluster is at epoch 1"],
    )
    .await;
    refused(&api, "spec.replica removed at the same epoch", json!({"spec": {"replica": null}}), &["spec.replica"])
        .await;
    admitted(&api, "fenced", "replica.primary changed at epoch 2", epoch_patch("2", Some("b"))).await;
    let now = live(&api, "fenced").await;
    assert_eq!(now.data["spec"]["replica"]["primary"], "b");
    assert_eq!(now.metadata.annotations.as_ref().and_then(|a| a.get(EPOCH_ANNOTATION)).map(String::as_str), Some("2"));
    refused(
        &api,
        "a stale writer lowering the epoch",
        epoch_patch("1", None),
        &["failover epoch 1 is older than the cluster's 2: this writer was fenced by a newer failover"],
    )
    .await;
    refused(
        &api,
        "a stale writer moving the primary back",
        epoch_patch("1", Some("a")),
        &["failover epoch 1 is older than the cluster's 2"],
    )
    .await;
    refused(
        &api,
        "the annotation removed",
        json!({"metadata": {"annotations": {EPOCH_ANNOTATION: null}}}),
        &["cannot be removed", "epoch 2"],
    )
    .await;
    refused(&api, "a non-numeric epoch", epoch_patch("two", None), &["\"two\" is not a non-negative integer"]).await;
    refused(&api, "an epoch too large to be one", epoch_patch(&"9".repeat(40), None), &["not a non-negative integer"])
        .await;
    admitted(&api, "fenced", "the same epoch, other fields", json!({"metadata": {"labels": {"x": "y"}}})).await;
    admitted(&api, "fenced", "a higher epoch without a replica change", epoch_patch("3", None)).await;

    // A DELETE carries no epoch for the policy to judge: the failover controller's rebuild
    // deletes a member only if it is not at a newer epoch than its own (read, then a delete
    // preconditioned on that read).
    api.create(&PostParams::default(), &cluster("shop-eu-db-0", Some("3"))).await.expect("a member at epoch 3");
    let topology = |epoch| Topology { mall: "shop".into(), active: "us".into(), epoch, members: Vec::new() };
    let stale = delete_shards(&member, NS, &topology(2), "eu", 1).await.expect_err("a stale rebuild must not delete");
    assert!(matches!(stale, ExecuteError::Fenced { live: 3, epoch: 2, .. }), "{stale:?}");
    assert_eq!(stale.reason(), "FencedByNewerEpoch");
    live(&api, "shop-eu-db-0").await;
    delete_shards(&member, NS, &topology(3), "eu", 1).await.expect("a rebuild at the member's epoch deletes it");
    assert!(api.get_opt("shop-eu-db-0").await.expect("read").is_none_or(|c| c.metadata.deletion_timestamp.is_some()));

    // A status write (CloudNativePG's own, with its identity: the member one may not) is not
    // matched.
    clusters(&admin)
        .patch_status("fenced", &PatchParams::default(), &Patch::Merge(&json!({"status": {"phase": "fenced test"}})))
        .await
        .expect("a status write is not fenced");

    // A Cluster without the annotation is not fenced (a single-region Mall's, or anybody's).
    api.create(&PostParams::default(), &cluster("free", None)).await.expect("Cluster without an epoch");
    admitted(&api, "free", "replica.primary of an unfenced Cluster", json!({"spec": {"replica": {"primary": "b"}}}))
        .await;

    // The API server type-checked every expression against the CloudNativePG schema.
    let deadline = Instant::now() + Duration::from_secs(15);
    let status = loop {
        let policy = policies.get(POLICY_NAME).await.expect("policy");
        if let Some(status) = policy.status.filter(|s| s.type_checking.is_some()) {
            break Some(status);
        }
        if Instant::now() > deadline {
            break None;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    match status.and_then(|s| s.type_checking) {
        Some(checking) => {
            let warnings = checking.expression_warnings.unwrap_or_default();
            assert!(warnings.is_empty(), "type-checking warnings: {warnings:?}");
        }
        None => eprintln!("no type-checking status within 15 s (status controller not running here)"),
    }
}

/// A child of Mall `shop` (UID `uid-1`) as the builders label it.
fn labelled(mut object: Value) -> Value {
    object["metadata"]["labels"] = json!({
        "app.kubernetes.io/managed-by": "mall-operator", "mallctl.io/mall": "shop", "mallctl.io/mall-uid": "uid-1"});
    object
}

fn children(clusters: Vec<Value>, config_maps: &[&str]) -> ChildSet {
    ChildSet {
        clusters: clusters.into_iter().map(|c| serde_json::from_value(labelled(c)).expect("a typed Cluster")).collect(),
        config_maps: config_maps
            .iter()
            .map(|n| serde_json::from_value(labelled(json!({"metadata": {"name": n}, "data": {"k": "v"}}))).unwrap())
            .collect(),
        ..Default::default()
    }
}

/// A distributed-topology member at `epoch` (the same object as [`cluster`], as apply sends it).
fn member(name: &str, epoch: &str) -> Value {
    let mut object = serde_json::to_value(cluster(name, Some(epoch))).unwrap();
    object["metadata"].as_object_mut().unwrap().remove("namespace");
    object
}

/// Apply on a real API server with CloudNativePG's own webhooks: a refusal is reported by who
/// refused it while the other children are applied; a stale view is refused by the fence and
/// then writes nothing else in that cluster.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn apply_reports_refusals_and_a_fenced_view_writes_nothing_else() {
    let local = LocalCluster::start(Options::new("refusals").index(20).cnpg_webhooks(true))
        .await
        .unwrap_or_else(|e| panic!("start: {e}"));
    let admin = local.client();
    let files = localcluster::thirdparty::crd_files().expect("third-party CRD files");
    localcluster::crds::install_crds(&admin, &files).await.unwrap_or_else(|e| panic!("CRDs: {e}"));
    let namespaces: Api<k8s_openapi::api::core::v1::Namespace> = Api::all(admin.clone());
    namespaces
        .create(&PostParams::default(), &serde_json::from_value(json!({"metadata": {"name": NS}})).unwrap())
        .await
        .expect("namespace");
    ensure(&admin).await.unwrap_or_else(|e| panic!("fencing policy: {e:?}"));
    let served: BTreeSet<&'static str> = ["clusters", "configmaps"].into();
    let owner = Owner { namespace: NS, name: "shop", uid: Some("uid-1") };
    let run = |set: ChildSet| apply(&admin, owner, set, &served, LiveSource { stores: None });

    // CloudNativePG refuses a replica whose primary is no external cluster; the ConfigMap lands.
    let mut dangling = member("shop-eu-db-1", "3");
    dangling["spec"]["replica"]["primary"] = json!("ghost");
    let applied = run(children(vec![member("shop-eu-db-0", "3"), dangling], &["shop-config"]))
        .await
        .unwrap_or_else(|e| panic!("apply: {e:?}"));
    eprintln!("refused: {:?}", applied.refused);
    assert_eq!(applied.refused.len(), 1, "{:?}", applied.refused);
    assert_eq!(applied.refused[0].authority, Authority::CloudNativePg);
    assert_eq!(applied.refused[0].object, "Cluster/shop-eu-db-1");
    assert!(applied.written.contains(&"ConfigMap/shop-config".to_string()), "{:?}", applied.written);
    assert!(applied.written.contains(&"Cluster/shop-eu-db-0".to_string()), "{:?}", applied.written);

    // Readiness of the new policy (see the other test), as a dry run.
    let api = clusters(&admin);
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match merge(&api, "shop-eu-db-0", epoch_patch("2", None), true).await {
            Err(kube::Error::Api(status)) if status.message.contains(POLICY_NAME) => break,
            other => assert!(Instant::now() < deadline, "policy not enforced after 10 s: {other:?}"),
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // A view older than the live member (epoch 2 against 3): refused by the fence, and nothing
    // else of that apply is written (no new ConfigMap, no change to the existing one).
    let configs: Api<k8s_openapi::api::core::v1::ConfigMap> = Api::namespaced(admin.clone(), NS);
    let before = configs.get("shop-config").await.expect("ConfigMap").metadata.resource_version;
    let mut stale = member("shop-eu-db-0", "2");
    stale["spec"]["replica"]["primary"] = json!("b");
    let applied = run(children(vec![stale], &["shop-config", "shop-more"])).await.unwrap_or_else(|e| panic!("{e:?}"));
    eprintln!("stale view: {:?}", applied.refused);
    assert_eq!(applied.refused.len(), 1, "{:?}", applied.refused);
    assert_eq!(applied.refused[0].authority, Authority::EpochFence);
    assert!(applied.refused[0].message.contains("fenced by a newer failover"), "{:?}", applied.refused);
    assert!(applied.written.is_empty() && applied.pruned.is_empty(), "{applied:?}");
    assert!(configs.get_opt("shop-more").await.expect("read").is_none(), "a fenced view created a ConfigMap");
    assert_eq!(configs.get("shop-config").await.expect("ConfigMap").metadata.resource_version, before);
    let live = live(&api, "shop-eu-db-0").await;
    assert_eq!(live.data["spec"]["replica"]["primary"], "a");
}
