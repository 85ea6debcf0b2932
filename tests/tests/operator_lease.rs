//! A new user's first run: `mall-operator` with an admin kubeconfig against a cluster where the
//! leader-election namespace does not exist. It must say so in one error line naming the fix,
//! report not ready on `/readyz` while the namespace is missing, and once the namespace is
//! created take the Lease and reconcile without a restart.

use k8s_openapi::api::coordination::v1::Lease;
use kube::api::Api;
use localcluster::{CnpgSimulator, SimulatorOptions};
use mall_crds::Mall;
use mall_e2e::{Env, OperatorProcess, apply_yaml, mall_ready, wait_until};
use serde_json::json;
use std::time::{Duration, Instant};

const NS: &str = "first-run";
/// What the one error line says (see `operator/src/leader.rs`).
const BLOCKED: &str = "leader election cannot start: namespace";

fn count(log: &str, needle: &str) -> usize {
    log.lines().filter(|l| l.contains(needle)).count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_lease_namespace_is_one_clear_error_and_not_ready_until_it_exists() {
    let env = Env::start("operator-lease", 31).await;
    let _sim = CnpgSimulator::spawn(env.client.clone(), SimulatorOptions::default());
    // Unique, so that a cluster given through MALL_E2E_KUBECONFIG cannot already have it.
    let lease_ns = format!("mall-lease-{}", std::process::id());
    env.namespace(NS, &[]).await;
    let mall = json!({"apiVersion": "mallctl.io/v1alpha1", "kind": "Mall",
        "metadata": {"name": "first", "namespace": NS},
        "spec": {"storefront": {"image": "shop:1"}, "database": {"instancesPerShard": 1}}});
    apply_yaml(&env.client, Some(NS), &[mall]).await;

    let dir = tempfile::tempdir().unwrap();
    let op = OperatorProcess::spawn(
        &env.kubeconfig,
        &dir.path().join("operator.log"),
        &["--leader-election-namespace", &lease_ns],
    );
    let started = Instant::now();
    wait_until("the blocked-Lease error line", Duration::from_secs(30), || async {
        (count(&op.log_text(), BLOCKED) > 0).then_some(())
    })
    .await;
    eprintln!("blocked-Lease error after {:?}", started.elapsed());
    // Several retries happen in the next 7 s (backoff 2 s, 4 s): /readyz stays not ready
    // throughout, and nothing is reconciled.
    let watch_until = Instant::now() + Duration::from_secs(7);
    let mut probes = 0;
    while Instant::now() < watch_until {
        assert_eq!(op.readyz(), Some(503), "/readyz while the Lease namespace is missing");
        probes += 1;
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let log = op.log_text();
    let line = log.lines().find(|l| l.contains(BLOCKED)).unwrap_or_default().to_string();
    eprintln!("after {probes} /readyz probes, the line: {line}");
    assert_eq!(count(&log, BLOCKED), 1, "the error must be said once:\n{log}");
    assert_eq!(count(&log, "lease update failed"), 0, "no repeated warnings:\n{log}");
    for fix in [format!("kubectl create namespace {lease_ns}"), "--leader-election-namespace".to_string()] {
        assert!(line.contains(&fix), "the line names the fix {fix:?}: {line}");
    }
    assert_eq!(count(&log, "acquired leadership"), 0, "{log}");
    let malls: Api<Mall> = Api::namespaced(env.client.clone(), NS);
    let status = malls.get("first").await.unwrap().status;
    assert!(status.is_none(), "a Mall was reconciled without leadership: {status:?}");

    // Creating the namespace is enough: the next retry takes the Lease and reconciles.
    env.namespace(&lease_ns, &[]).await;
    let created = Instant::now();
    wait_until("Mall first Ready after the namespace exists", Duration::from_secs(120), || async {
        malls.get("first").await.ok().filter(mall_ready)
    })
    .await;
    eprintln!("Mall Ready {:?} after the namespace was created", created.elapsed());
    assert_eq!(op.readyz(), Some(200), "/readyz once leading");
    let leases: Api<Lease> = Api::namespaced(env.client.clone(), &lease_ns);
    let holder = leases.get("mall-operator").await.unwrap().spec.and_then(|s| s.holder_identity);
    assert!(holder.is_some(), "the Lease has a holder");
    let log = op.log_text();
    assert_eq!(count(&log, BLOCKED), 1, "{log}");
    assert_eq!(count(&log, "the leader-election Lease is usable now"), 1, "{log}");
    assert_eq!(count(&log, "acquired leadership"), 1, "{log}");
}
