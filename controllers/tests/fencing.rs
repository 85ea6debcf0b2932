//! The failover-epoch fencing policy on a real local control plane (kube-apiserver 1.36 with the
//! CloudNativePG CRDs), installed by `reconcile::fencing::ensure` under the Helm chart's member
//! identity (so the chart's RBAC is proven sufficient): the API server itself refuses a stale
//! writer's update, with the policy's message, and leaves everything else alone.

use k8s_openapi::api::admissionregistration::v1::ValidatingAdmissionPolicy;
use kube::api::{Api, DynamicObject, Patch, PatchParams, PostParams};
use kube::core::{ApiResource, GroupVersionKind};
use localcluster::{LocalCluster, Options};
use mall_controllers::build::database::topology::EPOCH_ANNOTATION;
use mall_controllers::build::fencing::POLICY_NAME;
use mall_controllers::reconcile::fencing::{ensure, ensure_counted};
use serde_json::{Value, json};
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
        Err(kube::Error::Api(status)) => {
            eprintln!("{what}: refused ({}): {}", status.code, status.message);
            assert_eq!(status.code, 403, "{what}: {}", status.message);
            assert!(status.message.contains(POLICY_NAME), "{what}: not the fencing policy: {}", status.message);
            for w in words {
                assert!(status.message.contains(w), "{what}: message lacks {w:?}: {}", status.message);
            }
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
