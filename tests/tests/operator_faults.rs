//! The operator under API faults, each test printing its figures:
//! - a fault proxy in front of the API server fails 20 % of the operator's requests (500 or 429)
//!   and delays half of them for a minute while Malls are created and edited: every Mall
//!   converges once the faults stop, the operator's request rate stays bounded (the highest
//!   rate per second is printed), and it writes nothing in the idle minute that follows (audit
//!   log);
//! - the whole control plane (API server and etcd) SIGKILLed and restarted while Malls change:
//!   the same operator process reconverges them, without a restart of its own;
//! - a second field manager fighting over operator-owned fields of a child: the operator's
//!   values win on its fields, the other manager's own fields stay, and the fight ends (no hot
//!   loop).
//!
//! Cluster indexes are unique within this test binary (binaries run one after another).

use k8s_openapi::api::apps::v1::Deployment;
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams};
use localcluster::faults::FaultRule;
use localcluster::{CnpgSimulator, SimulatorOptions};
use mall_crds::Mall;
use mall_e2e::{Env, OperatorProcess, apply_yaml, install_operator_identity, mall_ready, wait_until, writes_by};
use serde_json::{Value, json};
use std::time::{Duration, Instant};

const OPERATOR_NS: &str = "mall-system";
const USER: &str = "system:serviceaccount:mall-system:mall-mall-operator";

fn mall(namespace: &str, name: &str, image: &str) -> Value {
    json!({"apiVersion": "mallctl.io/v1alpha1", "kind": "Mall",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {"storefront": {"image": image}, "database": {"instancesPerShard": 1}, "cache": {}}})
}

fn image_of(d: &Deployment) -> Option<String> {
    d.spec.as_ref()?.template.spec.as_ref()?.containers.first()?.image.clone()
}

/// Waits until every Mall in `names` is Ready for its generation and its storefront runs
/// `image`; returns how long that took.
async fn converged(
    client: &kube::Client,
    namespace: &str,
    names: &[&str],
    image: &str,
    op: &mut OperatorProcess,
) -> Duration {
    let start = Instant::now();
    let malls: Api<Mall> = Api::namespaced(client.clone(), namespace);
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), namespace);
    for name in names {
        let what = format!("Mall {namespace}/{name} Ready running {image}");
        let done = tokio::time::timeout(
            Duration::from_secs(150),
            wait_until(&what, Duration::from_secs(150), || async {
                let m = malls.get(name).await.ok().filter(mall_ready)?;
                let d = deployments.get(&format!("{name}-storefront")).await.ok()?;
                (image_of(&d).as_deref() == Some(image)).then_some(m)
            }),
        )
        .await;
        if done.is_err() {
            let status = malls.get(name).await.ok().and_then(|m| m.status);
            let log = op.log_text();
            let lines: Vec<&str> = log.lines().collect();
            panic!(
                "{what}: timed out; status: {status:#?}\noperator ({}) log tail:\n{}",
                op.state(),
                lines[lines.len().saturating_sub(30)..].join("\n")
            );
        }
    }
    start.elapsed()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_minute_of_failing_and_slow_api_calls_converges_then_costs_nothing() {
    const NS: &str = "faults";
    let env = Env::start("operator-faults", 0).await;
    let Some(local) = env.local_only("API faults through the fault proxy", "the proxy fronts the local API server")
    else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let token = install_operator_identity(&env, OPERATOR_NS, &[NS], dir.path()).await;
    env.namespace(NS, &[]).await;
    let proxy = local.fault_proxy().await.expect("fault proxy");
    let through_proxy = local.proxied_kubeconfig(&proxy, &token).expect("proxied kubeconfig");
    let _sim = CnpgSimulator::spawn(env.client.clone(), SimulatorOptions::default());
    let mut op = OperatorProcess::spawn(
        &through_proxy,
        &dir.path().join("operator.log"),
        &["--leader-election-namespace", OPERATOR_NS],
    );
    // The faults are about an operator at work, not its start-up (which fails fast on purpose).
    op.wait_ready(Duration::from_secs(60));

    // A minute of faults: 10 % answered 500, 10 % 429, half of the rest delayed 300 ms.
    proxy.set_rules(vec![
        FaultRule::status(500, 0.10),
        FaultRule::status(429, 0.10 / 0.90),
        FaultRule::latency(Duration::from_millis(300)).with_probability(0.5),
    ]);
    proxy.reset_stats();
    let names = ["f0", "f1", "f2"];
    let faults = Instant::now();
    let mut max_rate = 0;
    let mut last = 0;
    let mut edited = false;
    for (i, name) in names.iter().enumerate() {
        apply_yaml(&env.client, Some(NS), &[mall(NS, name, "shop:1")]).await;
        tokio::time::sleep(Duration::from_secs(u64::try_from(i).unwrap_or(0) * 2)).await;
    }
    let mut sampled = Instant::now();
    while faults.elapsed() < Duration::from_secs(60) {
        tokio::time::sleep(Duration::from_secs(1)).await;
        let now = proxy.stats().requests;
        // Per second of the interval actually slept (a loaded machine oversleeps).
        let rate = (now - last) as f64 / sampled.elapsed().as_secs_f64().max(1.0);
        max_rate = max_rate.max(rate.round() as u64);
        (last, sampled) = (now, Instant::now());
        if !edited && faults.elapsed() > Duration::from_secs(30) {
            // Edits arrive while the faults go on.
            for name in names {
                apply_yaml(&env.client, Some(NS), &[mall(NS, name, "shop:2")]).await;
            }
            edited = true;
        }
    }
    let stats = proxy.stats();
    proxy.clear();
    let took = converged(&env.client, NS, &names, "shop:2", &mut op).await;
    println!(
        "api faults: {} operator requests in 60 s ({} answered 500/429, {} delayed), max {max_rate} req/s; \
         3 Malls converged {:.1} s after the faults stopped",
        stats.requests,
        stats.injected_status,
        stats.delayed,
        took.as_secs_f64()
    );
    assert!(stats.injected_status > 0 && stats.delayed > 0, "no fault fired: {stats:?}");
    // Bounded: retries back off instead of hammering a failing API server. Creating 3 Malls
    // (about 40 children each) is a legitimate burst; a retry storm is thousands a second.
    assert!(max_rate <= 300, "the operator sent {max_rate} requests in one second under faults");
    assert!(stats.requests <= 60 * 50, "more than 50 requests a second on average under faults: {stats:?}");

    // An idle minute afterwards: nothing written.
    tokio::time::sleep(Duration::from_secs(5)).await;
    let before = writes_by(local, USER).len();
    tokio::time::sleep(Duration::from_secs(60)).await;
    let idle = writes_by(local, USER).split_off(before);
    println!("api faults: {} writes in the idle minute after convergence", idle.len());
    assert!(idle.is_empty(), "writes in the idle minute: {idle:#?}");
}

/// The operator under the chart's identity in `env`, its Malls in `namespace`, with the
/// CloudNativePG status simulator; its log in `dir`.
async fn operator(env: &Env, namespace: &str, dir: &std::path::Path) -> OperatorProcess {
    let kubeconfig = install_operator_identity(env, OPERATOR_NS, &[namespace], dir).await;
    env.namespace(namespace, &[]).await;
    OperatorProcess::spawn(&kubeconfig, &dir.join("operator.log"), &["--leader-election-namespace", OPERATOR_NS])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_control_plane_killed_and_restarted_while_malls_change_reconverges() {
    const NS: &str = "restart";
    let mut env = Env::start("operator-restart", 1).await;
    if env.local_only("control plane killed and restarted", "it kills the local control plane").is_none() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    // The simulator's watches reconnect after the restart, as CloudNativePG's would.
    let _sim = CnpgSimulator::spawn(env.client.clone(), SimulatorOptions::default());
    let mut op = operator(&env, NS, dir.path()).await;
    let pid = op.id();
    for name in ["r0", "r1", "r2"] {
        apply_yaml(&env.client, Some(NS), &[mall(NS, name, "shop:1")]).await;
    }
    converged(&env.client, NS, &["r0", "r1", "r2"], "shop:1", &mut op).await;

    // An edit lands, and the control plane dies at once (mid-reconcile).
    apply_yaml(&env.client, Some(NS), &[mall(NS, "r0", "shop:2")]).await;
    let cluster = env.local.as_mut().expect("local");
    cluster.kill();
    tokio::time::sleep(Duration::from_secs(3)).await;
    let down = Instant::now();
    cluster.restart().await.expect("the control plane restarts");
    println!("control plane restart: back in {:.1} s", down.elapsed().as_secs_f64());
    let client = env.local.as_ref().expect("local").client();
    // More changes while the operator reconnects: an edit and a deletion.
    apply_yaml(&client, Some(NS), &[mall(NS, "r1", "shop:2")]).await;
    Api::<Mall>::namespaced(client.clone(), NS).delete("r2", &DeleteParams::background()).await.expect("delete r2");

    let took = converged(&client, NS, &["r0", "r1"], "shop:2", &mut op).await;
    let selector = "app.kubernetes.io/managed-by=mall-operator,mallctl.io/mall=r2";
    wait_until("the children of r2 to be gone", Duration::from_secs(90), || async {
        let d: Api<Deployment> = Api::namespaced(client.clone(), NS);
        d.list(&ListParams::default().labels(selector)).await.ok()?.items.is_empty().then_some(())
    })
    .await;
    println!("control plane restart: the operator reconverged 2 edits and a deletion in {:.1} s", took.as_secs_f64());
    assert_eq!(op.id(), pid);
    assert_eq!(op.terminate(Duration::from_secs(10)), Some(0), "the operator had exited or did not stop cleanly");
}

/// Another field manager force-applies the storefront image (an operator-owned field) and a
/// label of its own, five times: each time the operator puts its image back; the label stays,
/// owned by the other manager; the operator writes the Deployment about once per intrusion.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_second_field_manager_loses_the_operators_fields_and_keeps_its_own() {
    const NS: &str = "fight";
    let env = Env::start("operator-fight", 2).await;
    let dir = tempfile::tempdir().unwrap();
    let _sim = CnpgSimulator::spawn(env.client.clone(), SimulatorOptions::default());
    let mut op = operator(&env, NS, dir.path()).await;
    apply_yaml(&env.client, Some(NS), &[mall(NS, "shop", "shop:1")]).await;
    converged(&env.client, NS, &["shop"], "shop:1", &mut op).await;
    let deployments: Api<Deployment> = Api::namespaced(env.client.clone(), NS);
    let writes_before = env.local.as_ref().map(|l| writes_by(l, USER).len());

    let rounds = 5;
    for round in 0..rounds {
        let intruder = json!({"apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": "shop-storefront", "labels": {"team.example/owner": format!("intruder-{round}")}},
            "spec": {"template": {"spec": {"containers": [{"name": "storefront", "image": "evil:1"}]}}}});
        deployments
            .patch("shop-storefront", &PatchParams::apply("intruder").force(), &Patch::Apply(&intruder))
            .await
            .expect("the intruder's apply");
        wait_until(&format!("round {round}: the operator's image back"), Duration::from_secs(30), || async {
            let d = deployments.get("shop-storefront").await.ok()?;
            (image_of(&d).as_deref() == Some("shop:1")).then_some(d)
        })
        .await;
    }
    tokio::time::sleep(Duration::from_secs(3)).await;
    let d = deployments.get("shop-storefront").await.unwrap();
    assert_eq!(image_of(&d).as_deref(), Some("shop:1"));
    let label = d.metadata.labels.as_ref().and_then(|l| l.get("team.example/owner")).cloned();
    assert_eq!(label.as_deref(), Some(format!("intruder-{}", rounds - 1).as_str()), "the intruder's own label went");
    let managers = d.metadata.managed_fields.clone().unwrap_or_default();
    let owns = |manager: &str, path: &[&str]| {
        managers.iter().filter(|m| m.manager.as_deref() == Some(manager)).any(|m| {
            let mut v = m.fields_v1.as_ref().map(|f| &f.0);
            for p in path {
                v = v.and_then(|x| x.get(*p));
            }
            v.is_some()
        })
    };
    assert!(owns("intruder", &["f:metadata", "f:labels", "f:team.example/owner"]), "{managers:#?}");
    let image_field = ["f:spec", "f:template", "f:spec", "f:containers", r#"k:{"name":"storefront"}"#, "f:image"];
    assert!(!owns("intruder", &image_field), "the intruder kept the image: {managers:#?}");
    assert!(owns("mall-operator", &image_field), "the operator does not own the image: {managers:#?}");
    if let (Some(local), Some(before)) =
        (env.local_only("field fight: writes per intrusion", "it counts writes in the audit log"), writes_before)
    {
        let writes: Vec<String> =
            writes_by(local, USER).split_off(before).into_iter().filter(|w| w.contains("shop-storefront")).collect();
        println!("field fight: {} operator writes of the storefront for {rounds} intrusions", writes.len());
        assert!(writes.len() <= 2 * rounds, "a hot loop: {writes:#?}");
    }
}
