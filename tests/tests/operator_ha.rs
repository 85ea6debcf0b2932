//! The operator under failure: two replicas (only the Lease holder writes; the standby takes
//! over when the leader dies), and an operator SIGKILLed 50 times at seeded random moments while
//! Malls are created, changed and deleted (no orphaned or duplicated child afterwards, and every
//! child holds exactly what a clean run writes).

use kube::api::{Api, DeleteParams, DynamicObject, ListParams, Patch, PatchParams};
use localcluster::{CnpgSimulator, SimulatorOptions, audit};
use mall_controllers::reconcile::kinds::MANAGED;
use mall_crds::Mall;
use mall_e2e::{Env, OperatorProcess, apply_yaml, install_operator_identity, wait_until};
use serde_json::{Value, json};
use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

const NS: &str = "ha";
const OPERATOR_NS: &str = "mall-system";
const USER: &str = "system:serviceaccount:mall-system:mall-mall-operator";

fn mall(name: &str, image: &str) -> Value {
    json!({"apiVersion": "mallctl.io/v1alpha1", "kind": "Mall",
        "metadata": {"name": name, "namespace": NS},
        "spec": {"storefront": {"image": image}, "database": {"instancesPerShard": 1}, "cache": {}}})
}

fn ready(m: &Mall) -> bool {
    m.status.as_ref().is_some_and(|s| {
        s.observed_generation == m.metadata.generation
            && s.conditions.iter().any(|c| c.type_ == "Ready" && c.status == "True")
    })
}

/// Non-Lease writes by the operator's identity, per User-Agent (which names the replica).
fn writes_by_agent(env: &Env) -> BTreeMap<String, usize> {
    let mut out = BTreeMap::new();
    let Some(cluster) = &env.local else { return out };
    let events = audit::read_events(&cluster.audit_log()).unwrap_or_else(|e| panic!("reading the audit log: {e}"));
    for e in events {
        if e.user == USER && e.code.is_some_and(|c| c < 300) && e.resource.as_deref() != Some("leases") {
            *out.entry(e.user_agent.unwrap_or_default()).or_default() += 1;
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn only_the_leader_writes_and_a_standby_takes_over() {
    let env = Env::start("operator-ha", 12).await;
    let dir = tempfile::tempdir().unwrap();
    let kubeconfig = install_operator_identity(&env, OPERATOR_NS, &[NS], dir.path()).await;
    let _sim = CnpgSimulator::spawn(env.client.clone(), SimulatorOptions::default());
    let args = |id: &'static str| ["--leader-election-namespace", OPERATOR_NS, "--identity", id];
    let mut alpha = OperatorProcess::spawn(&kubeconfig, &dir.path().join("alpha.log"), &args("alpha"));
    // Let alpha take the Lease first, then start the standby.
    let leases: Api<k8s_openapi::api::coordination::v1::Lease> = Api::namespaced(env.client.clone(), OPERATOR_NS);
    wait_until("alpha to hold the Lease", Duration::from_secs(30), || async {
        let lease = leases.get_opt("mall-operator").await.ok()??;
        (lease.spec?.holder_identity.as_deref() == Some("alpha")).then_some(())
    })
    .await;
    let _beta = OperatorProcess::spawn(&kubeconfig, &dir.path().join("beta.log"), &args("beta"));
    apply_yaml(&env.client, Some(NS), &[mall("leader", "shop:1")]).await;
    let malls: Api<Mall> = Api::namespaced(env.client.clone(), NS);
    wait_until("Mall leader Ready", Duration::from_secs(90), || async { malls.get("leader").await.ok().filter(ready) })
        .await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    if env
        .local_only("HA: only the leader writes", "it attributes writes from the local control plane's audit log")
        .is_some()
    {
        let writers = writes_by_agent(&env);
        assert_eq!(writers.len(), 1, "only one replica may write: {writers:?}");
        assert!(writers.keys().all(|a| a.contains("(alpha)")), "{writers:?}");
    }

    // The leader dies without releasing the Lease: the standby takes over once it expires.
    alpha.kill();
    let patch = json!({"spec": {"storefront": {"image": "shop:2"}}});
    malls.patch("leader", &PatchParams::default(), &Patch::Merge(&patch)).await.unwrap();
    wait_until("beta to converge the edit", Duration::from_secs(90), || async {
        malls.get("leader").await.ok().filter(ready)
    })
    .await;
    let lease = leases.get("mall-operator").await.unwrap();
    assert_eq!(lease.spec.unwrap().holder_identity.as_deref(), Some("beta"));
    if env
        .local_only(
            "HA: the standby writes after taking over",
            "it attributes writes from the local control plane's audit log",
        )
        .is_some()
    {
        let writers = writes_by_agent(&env);
        assert!(writers.keys().any(|a| a.contains("(beta)")), "beta never wrote: {writers:?}");
    }
}

/// A small deterministic generator (xorshift64*), so a failure can be replayed.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// Kill rounds: the operator is SIGKILLed this many times at seeded random moments.
const ROUNDS: u64 = 50;

/// The first path where `live` lacks a field of `desired` or differs from it (`None`: `live`
/// holds everything `desired` sets, as a clean run's server-side apply leaves it).
fn first_difference(desired: &Value, live: &Value, path: &str) -> Option<String> {
    match (desired, live) {
        (Value::Object(d), Value::Object(l)) => d.iter().find_map(|(k, v)| match l.get(k) {
            Some(lv) => first_difference(v, lv, &format!("{path}.{k}")),
            None if v.is_null() => None,
            None => Some(format!("{path}.{k}: missing (want {v})")),
        }),
        (Value::Array(d), Value::Array(l)) if d.len() == l.len() => {
            d.iter().zip(l).enumerate().find_map(|(i, (dv, lv))| first_difference(dv, lv, &format!("{path}[{i}]")))
        }
        _ if desired == live => None,
        _ => Some(format!("{path}: {live} (want {desired})")),
    }
}

/// Children of `mall` as `Kind/name`, by label.
async fn children(client: &kube::Client, mall: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let selector = format!("app.kubernetes.io/managed-by=mall-operator,mallctl.io/mall={mall}");
    for kind in MANAGED {
        let api: Api<DynamicObject> = Api::namespaced_with(client.clone(), NS, &kind.api_resource());
        let list = api
            .list(&ListParams::default().labels(&selector))
            .await
            .unwrap_or_else(|e| panic!("listing {} of {mall}: {e}", kind.kind));
        out.extend(list.items.into_iter().filter_map(|o| Some(format!("{}/{}", kind.kind, o.metadata.name?))));
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn killed_at_random_moments_leaves_no_orphan_or_duplicate() {
    let env = Env::start("operator-kill", 13).await;
    let dir = tempfile::tempdir().unwrap();
    let kubeconfig = install_operator_identity(&env, OPERATOR_NS, &[NS], dir.path()).await;
    let _sim = CnpgSimulator::spawn(env.client.clone(), SimulatorOptions::default());
    let malls: Api<Mall> = Api::namespaced(env.client.clone(), NS);
    let seed = 0x5EED_2026_u64;
    let mut rng = Rng(seed);
    let mut images: BTreeMap<String, String> = BTreeMap::new();
    let log = dir.path().join("operator.log");
    for round in 0..ROUNDS {
        let mut op = OperatorProcess::spawn(&kubeconfig, &log, &["--no-leader-election"]);
        let name = format!("m{}", rng.below(5));
        match (images.contains_key(&name), rng.below(3)) {
            (false, _) | (true, 0) => {
                let image = format!("shop:{round}");
                apply_yaml(&env.client, Some(NS), &[mall(&name, &image)]).await;
                images.insert(name, image);
            }
            (true, 1) => {
                malls.delete(&name, &DeleteParams::background()).await.unwrap();
                images.remove(&name);
            }
            (true, _) => {
                let image = format!("shop:edit-{round}");
                let patch = json!({"spec": {"storefront": {"image": image}}});
                malls.patch(&name, &PatchParams::default(), &Patch::Merge(&patch)).await.unwrap();
                images.insert(name, image);
            }
        }
        // Kill somewhere between "just started" and "in the middle of applying".
        tokio::time::sleep(Duration::from_millis(100 + rng.below(1500))).await;
        op.kill();
    }
    let _op = OperatorProcess::spawn(&kubeconfig, &log, &["--no-leader-election"]);
    for (name, image) in &images {
        wait_until(
            &format!("Mall {name} Ready after the kills (seed {seed:#x})"),
            Duration::from_secs(120),
            || async { malls.get(name).await.ok().filter(ready) },
        )
        .await;
        // Exactly the children the operator would build: nothing missing, nothing extra.
        let live = malls.get(name).await.unwrap();
        let expected: BTreeSet<String> = mall_controllers::build::children(&live)
            .unwrap()
            .iter()
            .map(|c| format!("{}/{}", c["kind"].as_str().unwrap(), c["metadata"]["name"].as_str().unwrap()))
            .collect();
        wait_until(&format!("children of {name} to match the spec"), Duration::from_secs(60), || async {
            (children(&env.client, name).await == expected).then_some(())
        })
        .await;
        // Every child holds exactly what a clean run writes (the built object, field by field,
        // with the cache password the operator generated once and keeps).
        let secrets: Api<k8s_openapi::api::core::v1::Secret> = Api::namespaced(env.client.clone(), NS);
        let connection = secrets.get(&format!("{name}-cache-connection")).await.unwrap();
        let password = connection.data.unwrap()["CACHE_PASSWORD"].0.clone();
        let password = mall_controllers::build::cache::CacheSecrets::new(String::from_utf8(password).unwrap()).unwrap();
        let built = mall_controllers::build::children_with(&live, &|_| password.clone()).unwrap();
        for desired in built.iter().map(|c| c.to_value().unwrap()) {
            let kind = MANAGED.iter().find(|k| k.kind == desired["kind"]).expect("a managed kind");
            let api: Api<DynamicObject> = Api::namespaced_with(env.client.clone(), NS, &kind.api_resource());
            let child = desired["metadata"]["name"].as_str().unwrap();
            let got = serde_json::to_value(api.get(child).await.unwrap()).unwrap();
            if let Some(diff) = first_difference(&desired, &got, &format!("{}/{child}", kind.kind)) {
                panic!("{name} after {ROUNDS} kills (seed {seed:#x}) differs from a clean run at {diff}");
            }
        }
        let d: Api<k8s_openapi::api::apps::v1::Deployment> = Api::namespaced(env.client.clone(), NS);
        let deployed = d.get(&format!("{name}-storefront")).await.unwrap();
        let got = deployed.spec.unwrap().template.spec.unwrap().containers[0].image.clone();
        assert_eq!(got.as_deref(), Some(image.as_str()), "{name} runs the last image applied");
    }
    // No child of a deleted Mall survives (owner references + garbage collection).
    for gone in (0..5).map(|i| format!("m{i}")).filter(|n| !images.contains_key(n)) {
        wait_until(&format!("children of deleted {gone} to be collected"), Duration::from_secs(90), || async {
            children(&env.client, &gone).await.is_empty().then_some(())
        })
        .await;
    }
}
