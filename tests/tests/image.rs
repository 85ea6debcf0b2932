//! The operator image, proven on this machine: the `Dockerfile` built with podman from the
//! static binary (`hack/image.sh binary`, which `.ci/run` runs first), no remote image pulled;
//! the same binary and timestamp give the same image id; it runs as 65532 with no shell; and the
//! container, on the host network under the chart's RBAC with a read-only token kubeconfig,
//! reconciles a Mall to Ready against the local control plane. Prints the image size and the
//! time from `podman run` to Ready.

use kube::api::Api;
use localcluster::{CnpgSimulator, SimulatorOptions};
use mall_crds::Mall;
use mall_e2e::image::{Podman, static_binary};
use mall_e2e::{Env, apply_yaml, install_operator_identity, mall_ready, repo_root, wait_until};
use serde_json::{Value, json};
use std::time::{Duration, Instant};

const NS: &str = "image-shop";
const OPERATOR_NS: &str = "mall-system";
const TAG: &str = "localhost/mall-operator:e2e";

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).map(|a| a.port()).expect("a free port")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_image_runs_the_operator_to_a_ready_mall() {
    let binary = static_binary().unwrap_or_else(|e| panic!("{e}"));
    let podman = Podman::new().unwrap_or_else(|e| panic!("{e}"));
    let epoch: u64 = std::env::var("SOURCE_DATE_EPOCH").ok().and_then(|s| s.parse().ok()).unwrap_or(1);

    // Build twice without cache: same binary and timestamp, same image.
    let started = Instant::now();
    let id = podman.build(&binary, TAG, epoch).unwrap_or_else(|e| panic!("{e}"));
    let build_time = started.elapsed();
    let again = podman.build(&binary, TAG, epoch).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(id, again, "two builds of the same binary at the same timestamp differ");
    let inspect = |format: &str| podman.output(&["image", "inspect", "--format", format, TAG]).unwrap();
    let size: u64 = inspect("{{.Size}}").parse().expect("image size");
    let binary_size = std::fs::metadata(&binary).map(|m| m.len()).unwrap_or(0);
    eprintln!(
        "image {TAG} {id}: {:.1} MB (binary {:.1} MB), built in {build_time:?}",
        size as f64 / 1e6,
        binary_size as f64 / 1e6
    );
    assert_eq!(inspect("{{.Config.User}}"), "65532:65532");
    assert_eq!(inspect("{{.Config.Entrypoint}}"), "[/mall-operator]");
    assert_eq!(inspect("{{len .RootFS.Layers}}"), "1", "one layer: the binary");
    // No shell to run.
    match podman.output(&["run", "--rm", "--ulimit", "host", "--entrypoint", "/bin/sh", TAG, "-c", "true"]) {
        Ok(out) => panic!("the image has a shell: {out}"),
        Err(e) => assert!(e.to_string().contains("/bin/sh"), "refused for another reason: {e}"),
    }

    // The operator's identity as the chart gives it, the CloudNativePG status simulator, a Mall.
    let env = Env::start("operator-image", 29).await;
    let dir = tempfile::tempdir().unwrap();
    let kubeconfig = install_operator_identity(&env, OPERATOR_NS, &[NS], dir.path()).await;
    env.namespace(NS, &[("pod-security.kubernetes.io/enforce", "restricted")]).await;
    let _sim = CnpgSimulator::spawn(env.client.clone(), SimulatorOptions::default());
    let text = std::fs::read_to_string(repo_root().join("examples/minimal.yaml")).unwrap();
    let mut mall: Value = serde_saphyr::from_str(&text).unwrap();
    mall["metadata"]["namespace"] = json!(NS);
    let name = mall["metadata"]["name"].as_str().unwrap().to_string();
    apply_yaml(&env.client, Some(NS), &[mall]).await;

    let (metrics, health) = (free_port(), free_port());
    let flags = [
        format!("--metrics-address=127.0.0.1:{metrics}"),
        format!("--health-address=127.0.0.1:{health}"),
        format!("--leader-election-namespace={OPERATOR_NS}"),
        "--recheck-interval=2s".to_string(),
    ];
    let flags: Vec<&str> = flags.iter().map(String::as_str).collect();
    let log = dir.path().join("operator.log");
    let container_name = format!("mall-e2e-image-{}", std::process::id());
    let started = Instant::now();
    let mut container = podman
        .run(TAG, &container_name, &kubeconfig, &[("RUST_LOG", "info,kube=warn")], &flags, &log)
        .unwrap_or_else(|e| panic!("{e}"));
    let malls: Api<Mall> = Api::namespaced(env.client.clone(), NS);
    let log_text = || std::fs::read_to_string(&log).unwrap_or_default();
    let ready = tokio::time::timeout(Duration::from_secs(120), async {
        loop {
            if let Some(m) = malls.get_opt(&name).await.ok().flatten().filter(mall_ready) {
                return Ok(m);
            }
            if container.exited() {
                return Err("the container exited");
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    })
    .await;
    let to_ready = started.elapsed();
    match ready {
        Ok(Ok(_)) => {}
        Ok(Err(why)) => panic!("{why}; its log:\n{}", log_text()),
        Err(_) => panic!("Mall {name} not Ready after 120 s; container log:\n{}", log_text()),
    }
    eprintln!("Mall {name} Ready {to_ready:?} after `podman run`");

    // The process in the container runs as 65532:65532 and leads through the Lease.
    let pid = wait_until("the container's pid", Duration::from_secs(10), || async { container.pid() }).await;
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let ids = |key: &str| status.lines().find(|l| l.starts_with(key)).and_then(|l| l.split_whitespace().nth(1));
    assert_eq!((ids("Uid:"), ids("Gid:")), (Some("65532"), Some("65532")), "{status}");
    let text = log_text();
    assert!(text.contains("acquired leadership"), "{text}");
    assert!(!text.contains("\"level\":\"ERROR\""), "errors in the container log:\n{text}");
}
