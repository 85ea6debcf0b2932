//! CloudNativePG v1.30.1's own admission webhooks ([`CnpgWebhooks`]) on two real local control
//! planes at once: the mutating webhook defaults what it should, the validating webhook refuses
//! what CloudNativePG refuses in CloudNativePG's own words and admits a distributed-topology
//! member; stopping one cluster's webhooks removes its configurations (the same bad object is
//! then admitted by the CRD schema alone, which proves the refusal was the webhook's) and
//! leaves the other cluster's webhooks judging.

mod common;

use std::time::Instant;

use common::{chain, namespace, start};
use k8s_openapi::api::admissionregistration::v1::{MutatingWebhookConfiguration, ValidatingWebhookConfiguration};
use kube::api::{Api, DynamicObject, PostParams};
use localcluster::cnpg_webhooks::{self, CnpgWebhooks, cnpg_resource};
use localcluster::{LocalCluster, Options};
use serde_json::{Value, json};

const NS: &str = "shop";

fn cluster_object(name: &str, spec: Value) -> DynamicObject {
    serde_json::from_value(json!({
        "apiVersion": "postgresql.cnpg.io/v1",
        "kind": "Cluster",
        "metadata": { "name": name, "namespace": NS },
        "spec": spec,
    }))
    .expect("a Cluster object")
}

fn base_spec() -> Value {
    json!({ "instances": 3, "storage": { "size": "1Gi" } })
}

fn with(mut spec: Value, extra: Value) -> Value {
    if let (Some(spec), Some(extra)) = (spec.as_object_mut(), extra.as_object()) {
        for (k, v) in extra {
            spec.insert(k.clone(), v.clone());
        }
    }
    spec
}

/// An external cluster reached through the Barman Cloud plugin.
fn plugin_external(name: &str) -> Value {
    json!({
        "name": name,
        "plugin": {
            "name": "barman-cloud.cloudnative-pg.io",
            "parameters": { "barmanObjectName": format!("{name}-store"), "serverName": name }
        }
    })
}

fn two_bootstraps() -> Value {
    with(
        base_spec(),
        json!({
            "externalClusters": [plugin_external("origin")],
            "bootstrap": { "initdb": { "database": "app", "owner": "app" }, "recovery": { "source": "origin" } }
        }),
    )
}

fn dangling_replica() -> Value {
    with(
        base_spec(),
        json!({
            "externalClusters": [plugin_external("a"), plugin_external("b")],
            "replica": { "primary": "ghost-primary", "source": "ghost-source", "self": "b" },
            "bootstrap": { "recovery": { "source": "a" } }
        }),
    )
}

fn distributed_member() -> Value {
    with(
        base_spec(),
        json!({
            "externalClusters": [plugin_external("a"), plugin_external("b")],
            "replica": { "primary": "a", "source": "a", "self": "b" },
            "bootstrap": { "recovery": { "source": "a" } }
        }),
    )
}

async fn create(api: &Api<DynamicObject>, name: &str, spec: Value) -> Result<DynamicObject, kube::Error> {
    api.create(&PostParams::default(), &cluster_object(name, spec)).await
}

/// Expects a refusal whose message holds every one of `words`.
async fn refused(api: &Api<DynamicObject>, cluster: &str, name: &str, spec: Value, words: &[&str]) {
    match create(api, name, spec).await {
        Ok(_) => panic!("{cluster}: Cluster {name} was admitted; CloudNativePG refuses it"),
        Err(kube::Error::Api(status)) => {
            for w in words {
                assert!(
                    status.message.contains(w),
                    "{cluster}: refusal of {name} lacks {w:?}: {} (code {})",
                    status.message,
                    status.code
                );
            }
            assert!(
                status.message.contains("admission webhook") && status.message.contains("cnpg.io"),
                "{cluster}: refusal of {name} does not come from a CloudNativePG webhook: {}",
                status.message
            );
        }
        Err(e) => panic!("{cluster}: creating {name} failed outside admission: {e}"),
    }
}

/// Every verdict the brief lists, on one cluster whose webhooks run.
async fn judge(cluster: &LocalCluster) {
    let name = cluster.name().to_string();
    let api = Api::<DynamicObject>::namespaced_with(cluster.client(), NS, &cnpg_resource("Cluster", "clusters"));

    let valid = create(&api, "orders", base_spec()).await.unwrap_or_else(|e| panic!("{name}: valid Cluster: {e}"));
    let image = valid.data["spec"]["imageName"].as_str().unwrap_or_default();
    assert!(
        image.contains("postgresql"),
        "{name}: the mutating webhook did not default spec.imageName (got {image:?})"
    );

    refused(&api, &name, "two-bootstraps", two_bootstraps(), &["Only one bootstrap method can be specified at a time"])
        .await;
    refused(
        &api,
        &name,
        "dangling-replica",
        dangling_replica(),
        &["External cluster ghost-primary not found", "External cluster ghost-source not found"],
    )
    .await;

    let member = create(&api, "b", distributed_member())
        .await
        .unwrap_or_else(|e| panic!("{name}: distributed-topology member: {e}"));
    assert_eq!(member.data["spec"]["replica"]["self"], "b", "{name}: stored member");

    // The manager's reconcilers watch only their idle namespace: nothing ever gets a status here.
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    let orders = api.get("orders").await.unwrap_or_else(|e| panic!("{name}: get orders: {e}"));
    assert!(
        orders.data.get("status").is_none(),
        "{name}: CloudNativePG reconciled orders: {:?}",
        orders.data["status"]
    );
}

async fn configurations(client: &kube::Client) -> (bool, bool) {
    let m = Api::<MutatingWebhookConfiguration>::all(client.clone())
        .get_opt(cnpg_webhooks::MUTATING_CONFIGURATION)
        .await
        .expect("get mutating configuration");
    let v = Api::<ValidatingWebhookConfiguration>::all(client.clone())
        .get_opt(cnpg_webhooks::VALIDATING_CONFIGURATION)
        .await
        .expect("get validating configuration");
    (m.is_some(), v.is_some())
}

async fn start_hooks(cluster: &LocalCluster) -> CnpgWebhooks {
    let started = Instant::now();
    let hooks = CnpgWebhooks::start(cluster)
        .await
        .unwrap_or_else(|e| panic!("CloudNativePG webhooks on {}: {}", cluster.name(), chain(&e)));
    eprintln!("CloudNativePG webhooks on {} ready in {:?} (port {})", cluster.name(), started.elapsed(), hooks.port());
    hooks
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cloudnative_pg_webhooks_judge_cnpg_objects_on_two_clusters() {
    let (east, west) = tokio::join!(
        start(Options::new("cnpg-hooks-east").index(25)),
        start(Options::new("cnpg-hooks-west").index(26))
    );
    let (mut east_hooks, mut west_hooks) = tokio::join!(start_hooks(&east), start_hooks(&west));
    assert_ne!(east_hooks.port(), west_hooks.port(), "each manager has its own port");
    for cluster in [&east, &west] {
        namespace(&cluster.client(), NS, &[]).await;
    }
    tokio::join!(judge(&east), judge(&west));

    // Stopping east's webhooks removes its configurations; west keeps judging.
    east_hooks.stop().await.unwrap_or_else(|e| panic!("stop east: {}", chain(&e)));
    assert!(!east_hooks.is_running(), "east's manager still runs after stop");
    assert_eq!(configurations(&east.client()).await, (false, false), "east's configurations after stop");
    assert_eq!(configurations(&west.client()).await, (true, true), "west's configurations");
    let east_api = Api::<DynamicObject>::namespaced_with(east.client(), NS, &cnpg_resource("Cluster", "clusters"));
    create(&east_api, "two-bootstraps", two_bootstraps())
        .await
        .unwrap_or_else(|e| panic!("without webhooks the CRD schema alone admits two bootstraps, but: {e}"));
    let west_api = Api::<DynamicObject>::namespaced_with(west.client(), NS, &cnpg_resource("Cluster", "clusters"));
    refused(&west_api, "cnpg-hooks-west", "two-bootstraps", two_bootstraps(), &["Only one bootstrap method"]).await;

    west_hooks.stop().await.unwrap_or_else(|e| panic!("stop west: {}", chain(&e)));
    assert_eq!(configurations(&west.client()).await, (false, false), "west's configurations after stop");
}

/// The option hook: the webhooks start with the cluster, judge, and come back after a restart
/// (a new manager on a new port).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cnpg_webhooks_option_starts_them_with_the_cluster_and_after_restart() {
    let mut cluster = start(Options::new("cnpg-hooks-opt").index(24).cnpg_webhooks(true)).await;
    namespace(&cluster.client(), NS, &[]).await;
    let api = Api::<DynamicObject>::namespaced_with(cluster.client(), NS, &cnpg_resource("Cluster", "clusters"));
    let first_port = cluster.cnpg_webhooks().expect("webhooks started with the cluster").port();
    refused(&api, "cnpg-hooks-opt", "two-bootstraps", two_bootstraps(), &["Only one bootstrap method"]).await;

    cluster.restart().await.unwrap_or_else(|e| panic!("restart: {}", chain(&e)));
    let hooks = cluster.cnpg_webhooks().expect("webhooks after restart");
    assert!(hooks.is_running(), "the manager runs after restart");
    eprintln!("webhook port {first_port} before the restart, {} after", hooks.port());
    refused(&api, "cnpg-hooks-opt", "two-bootstraps", two_bootstraps(), &["Only one bootstrap method"]).await;
    create(&api, "orders", base_spec()).await.unwrap_or_else(|e| panic!("valid Cluster after restart: {e}"));

    cluster.stop().await.unwrap_or_else(|e| panic!("stop: {}", chain(&e)));
    assert!(cluster.cnpg_webhooks().is_none(), "stop ends the webhooks");
}
