//! `mallctl get`, `status`, `apply`, `version`, `completion`, `scale` and `event` as a user runs them against a real API server (a local
//! control plane with the operator and the CloudNativePG status simulator): output and exit
//! codes for a Mall that becomes Ready, a `--wait` that times out naming the blocking condition,
//! a bad manifest, a missing Mall, and an unreachable cluster.

use localcluster::{CnpgSimulator, LocalCluster, Options, SimulatorOptions};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::Duration;

fn mallctl(kubeconfig: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_mallctl"))
        .arg("--kubeconfig")
        .arg(kubeconfig)
        .args(args)
        .current_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/.."))
        .output()
        .expect("mallctl runs")
}

fn text(out: &Output) -> (String, String) {
    (String::from_utf8_lossy(&out.stdout).into_owned(), String::from_utf8_lossy(&out.stderr).into_owned())
}

/// The operator binary next to mallctl.
fn operator_bin() -> PathBuf {
    let bin = PathBuf::from(env!("CARGO_BIN_EXE_mallctl"));
    bin.with_file_name("mall-operator")
}

struct Operator(Child);

impl Drop for Operator {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn start_operator(kubeconfig: &Path, log: &Path) -> Operator {
    let file = std::fs::File::create(log).expect("log file");
    let child = Command::new(operator_bin())
        .env("KUBECONFIG", kubeconfig)
        .args(["--leader-election-namespace", "kube-system", "--metrics-address", "127.0.0.1:0"])
        .args(["--health-address", "127.0.0.1:0", "--recheck-interval", "2s", "--autoscale-interval", "0"])
        .stdout(Stdio::null())
        .stderr(file)
        .spawn()
        .expect("mall-operator starts (cargo build --bins first)");
    Operator(child)
}

/// Runs `mallctl --kubeconfig K ARGS` on a pseudo-terminal (util-linux `script`); what the
/// terminal showed, and script's stderr. Panics unless it exits 0.
fn on_a_terminal(kubeconfig: &Path, args: &str) -> (String, String) {
    let command = format!("{} --kubeconfig {} {args}", env!("CARGO_BIN_EXE_mallctl"), kubeconfig.display());
    let out = Command::new("script")
        .args(["-q", "-e", "-c", &command, "/dev/null"])
        .current_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/.."))
        .stdin(Stdio::null())
        .output()
        .expect("script (util-linux) runs");
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{command} on a terminal failed:\n{stdout}\n{stderr}");
    (stdout, stderr)
}

/// A kubeconfig pointing at a port nothing listens on.
fn dead_kubeconfig(kubeconfig: &Path, dir: &Path) -> PathBuf {
    let dead = dir.join("dead.kubeconfig");
    localcluster::kubeconfig::rewrite_server(kubeconfig, &dead, "https://127.0.0.1:1").unwrap();
    dead
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn get_status_and_apply_against_a_cluster() {
    let cluster = LocalCluster::start(Options::new("mallctl-ops").index(27).pod_startup(Duration::from_millis(300)))
        .await
        .expect("local control plane");
    let mut crds = vec![mall_crds::Mall::definition()];
    for path in localcluster::thirdparty::crd_files().expect("third-party CRDs") {
        crds.extend(localcluster::crds::read_crds(&path).expect("CRD file"));
    }
    localcluster::install_crd_objects(&cluster.client(), &crds, Duration::from_secs(60)).await.expect("CRDs");
    let _sim = CnpgSimulator::spawn(cluster.client(), SimulatorOptions::default());
    let dir = tempfile::tempdir().unwrap();
    let kubeconfig = cluster.kubeconfig();
    let mut operator = Some(start_operator(&kubeconfig, &dir.path().join("operator.log")));
    let ns = serde_json::json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "shop"}});
    let api: kube::Api<k8s_openapi::api::core::v1::Namespace> = kube::Api::all(cluster.client());
    api.patch("shop", &kube::api::PatchParams::apply("test"), &kube::api::Patch::Apply(&ns)).await.unwrap();

    // An empty namespace.
    let out = mallctl(&kubeconfig, &["get", "-n", "shop"]);
    assert!(out.status.success());
    assert_eq!(text(&out).1.trim(), "No Malls in namespace shop.");

    // apply --wait: progress on stderr, Ready on stdout, exit 0.
    let out =
        mallctl(&kubeconfig, &["-n", "shop", "apply", "-f", "examples/minimal.yaml", "--wait", "--timeout", "120s"]);
    let (stdout, stderr) = text(&out);
    let log = std::fs::read_to_string(dir.path().join("operator.log")).unwrap_or_default();
    assert!(out.status.success(), "apply --wait failed:\n{stdout}\n{stderr}\noperator log:\n{log}");
    assert!(stdout.contains("applied (generation 1)") && stdout.contains("Ready after"), "{stdout}");
    assert!(stderr.contains("storefront"), "no progress lines: {stderr}");
    let name = stdout.split_whitespace().nth(1).and_then(|n| n.split('/').nth(1)).expect("mall name").to_string();

    // On a terminal, --wait draws live per-tier bars (indicatif) instead of lines.
    let ns = serde_json::json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "tty"}});
    api.patch("tty", &kube::api::PatchParams::apply("test"), &kube::api::Patch::Apply(&ns)).await.unwrap();
    let (stdout, stderr) = on_a_terminal(&kubeconfig, "-n tty apply -f examples/minimal.yaml --wait --timeout 120s");
    assert!(
        stdout.contains("storefront [") && stdout.contains("database ["),
        "no bars on the terminal: {stdout}\n{stderr}"
    );
    assert!(stdout.contains("Ready after"), "{stdout}");
    assert!(!stdout.contains("mall tty/corner-shop: storefront"), "plain lines on a terminal: {stdout}");

    // get: a table, wide, JSON.
    let out = mallctl(&kubeconfig, &["get", "-n", "shop"]);
    let (stdout, _) = text(&out);
    let lines: Vec<&str> = stdout.lines().collect();
    assert!(lines[0].starts_with("NAME") && lines[0].contains("READY") && lines[0].contains("STOREFRONT"), "{stdout}");
    assert!(lines[1].starts_with(&name) && lines[1].contains("True"), "{stdout}");
    let out = mallctl(&kubeconfig, &["get", &name, "-n", "shop", "-o", "wide"]);
    assert!(text(&out).0.lines().next().unwrap_or_default().contains("EPOCH"), "{}", text(&out).0);
    let out = mallctl(&kubeconfig, &["get", &name, "-n", "shop", "-o", "json"]);
    let value: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON");
    assert_eq!(value["kind"], "Mall");
    assert_eq!(value["metadata"]["name"].as_str(), Some(name.as_str()));

    // status: tiers, shards with primaries, conditions, events.
    let out = mallctl(&kubeconfig, &["status", &name, "-n", "shop"]);
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stderr}");
    for section in ["Tiers (ready/desired)", "Shards", "Conditions", "Events", "PRIMARY", "Ready", "Applied"] {
        assert!(stdout.contains(section), "status lacks {section:?}:\n{stdout}");
    }

    // version: the client, Kubernetes, the CRD and the operator holding the Lease.
    let out = mallctl(&kubeconfig, &["version", "--lease-namespace", "kube-system"]);
    let (stdout, stderr) = text(&out);
    println!("$ mallctl version --lease-namespace kube-system\n{stdout}");
    assert!(out.status.success(), "{stderr}");
    let version = env!("CARGO_PKG_VERSION");
    assert!(stdout.starts_with(&format!("mallctl:     {version}\nKubernetes:  v1.")), "{stdout}");
    assert!(stdout.contains("Mall CRD:    malls.mallctl.io served v1alpha1 (storage v1alpha1)"), "{stdout}");
    assert!(stdout.contains(&format!("operator:    {version}, leader ")), "{stdout}");
    let out = mallctl(&kubeconfig, &["version", "--lease-namespace", "nowhere"]);
    assert!(text(&out).0.contains("no leader-election Lease nowhere/mall-operator"), "{}", text(&out).0);
    let out = mallctl(Path::new("/nonexistent"), &["version", "--client"]);
    assert_eq!(text(&out).0, format!("mallctl:     {version}\n"));
    let out = mallctl(&kubeconfig, &["completion", "bash"]);
    assert!(out.status.success() && text(&out).0.contains("_mallctl()"), "{}", text(&out).1);

    // scale and event: refused on a Mall that is not autoscaled, then on one that is.
    let out = mallctl(&kubeconfig, &["-n", "shop", "scale", &name, "--tier", "storefront", "--max", "8"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out).1.contains("has no spec.autoscaling"), "{}", text(&out).1);
    let original =
        std::fs::read_to_string(PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../examples/minimal.yaml")).unwrap();
    let mut autoscaled: serde_json::Value = serde_saphyr::from_str(&original).unwrap();
    // A loopback Prometheus nobody scrapes (the operator runs with --autoscale-interval 0).
    autoscaled["metadata"]["name"] = serde_json::json!("autoscaled-shop");
    autoscaled["spec"]["autoscaling"] = serde_json::json!({"prometheus": {"url": "http://127.0.0.1:9"},
        "storefront": {"min": 1, "max": 4, "targetPerReplica": 50}});
    let auto = "autoscaled-shop".to_string();
    let file = dir.path().join("autoscaled.json");
    std::fs::write(&file, autoscaled.to_string()).unwrap();
    let out = mallctl(&kubeconfig, &["-n", "shop", "apply", "-f", file.to_str().unwrap()]);
    assert!(out.status.success(), "{}", text(&out).1);
    let add_double_eleven = vec![
        "event",
        "add",
        &auto,
        "double-eleven",
        "--start",
        "2026-11-11T00:00:00+08:00",
        "--end",
        "2026-11-12T00:00:00+08:00",
        "--multiplier",
        "8",
    ];
    let edits: Vec<(Vec<&str>, Result<&str, &str>)> = vec![
        (
            vec!["scale", &auto, "--tier", "storefront", "--min", "2", "--max", "8"],
            Ok("storefront: min 1 -> 2, max 4 -> 8"),
        ),
        (vec!["scale", &auto, "--tier", "storefront", "--min", "9"], Err("spec.autoscaling.storefront")),
        (vec!["scale", &auto, "--tier", "cache", "--max", "3"], Err("spec.autoscaling.cache is not set")),
        (vec!["scale", "no-such-mall", "--tier", "storefront", "--max", "3"], Err("\"no-such-mall\" not found")),
        (
            add_double_eleven.clone(),
            Ok("event double-eleven added (2026-11-11T00:00:00+08:00 to 2026-11-12T00:00:00+08:00)"),
        ),
        (add_double_eleven, Err("already has an event \"double-eleven\"")),
        (
            vec![
                "event",
                "add",
                &auto,
                "backwards",
                "--start",
                "2026-12-12T00:00:00Z",
                "--end",
                "2026-12-11T00:00:00Z",
                "--min-replicas",
                "3",
            ],
            Err("spec.autoscaling.events[1].end: end must be after start"),
        ),
        (
            vec!["event", "add", &auto, "no-size", "--start", "2026-12-12T00:00:00Z", "--end", "2026-12-13T00:00:00Z"],
            Err("set multiplier or minReplicas"),
        ),
    ];
    for (args, expected) in edits {
        let mut full = vec!["-n", "shop"];
        full.extend(args.iter().copied());
        let out = mallctl(&kubeconfig, &full);
        let (stdout, stderr) = text(&out);
        println!("$ mallctl {}\n{stdout}{stderr}", full.join(" "));
        match expected {
            Ok(said) => {
                assert!(out.status.success(), "{args:?}: {stderr}");
                assert_eq!(stdout.trim(), format!("mall/{auto}: {said}"), "{args:?}");
            }
            Err(words) => {
                assert_eq!(out.status.code(), Some(1), "{args:?} must fail: {stdout}");
                assert!(stderr.contains(words), "{args:?}: {stderr}");
            }
        }
    }
    let out = mallctl(&kubeconfig, &["get", &auto, "-n", "shop", "-o", "json"]);
    let live: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON");
    assert_eq!(live["spec"]["autoscaling"]["storefront"]["max"], 8, "scale landed");
    assert_eq!(live["spec"]["autoscaling"]["events"].as_array().map(Vec::len), Some(1), "only the valid event");
    // plan: the promotion replayed on a baseline trace (100 req/s, x8 during the event): the
    // storefront's max 8 would cap it; an unknown event is an error naming the ones there are.
    let trace = dir.path().join("baseline.csv");
    let rows: String = (0..600).map(|t| format!("{t},{}\n", if t % 2 == 0 { 90 } else { 110 })).collect();
    std::fs::write(&trace, format!("t,rps\n{rows}")).unwrap();
    let trace = trace.to_str().unwrap();
    let out = mallctl(&kubeconfig, &["-n", "shop", "plan", &auto, "--event", "double-eleven", "--trace", trace]);
    let (stdout, stderr) = text(&out);
    println!("$ mallctl -n shop plan {auto} --event double-eleven --trace baseline.csv\n{stdout}{stderr}");
    assert!(out.status.success(), "{stderr}");
    assert!(stdout.contains("peak demand:    880.0 req/s"), "{stdout}");
    assert!(stdout.contains("WOULD CAP IT") && stdout.contains("--tier storefront --max"), "{stdout}");
    let args = ["-n", "shop", "plan", &auto, "--event", "double-eleven", "--trace", trace, "-o", "json"];
    let report: serde_json::Value = serde_json::from_slice(&mallctl(&kubeconfig, &args).stdout).expect("JSON");
    assert_eq!((report["max"].as_i64(), report["cappedByMax"].as_bool()), (Some(8), Some(true)), "{report}");
    assert!(report["neededAtPeak"].as_i64() > Some(8) && report["peakReplicas"].as_i64() == Some(8), "{report}");
    assert_eq!(report["simulatedSeconds"], 24 * 3600 + 10 * 60 + 2 * 30 * 60, "{report}");
    // The baseline from the Mall's own Prometheus: a real server scraping 30 req/s.
    let exporter = localcluster::prometheus::Exporter::start("shop", &auto, 30.0).await;
    let prometheus = localcluster::prometheus::Prometheus::start(exporter.address, dir.path());
    let patch = serde_json::json!({"spec": {"autoscaling": {"prometheus": {"url": prometheus.url}}}});
    let malls: kube::Api<mall_crds::Mall> = kube::Api::namespaced(cluster.client(), "shop");
    malls.patch(&auto, &kube::api::PatchParams::default(), &kube::api::Patch::Merge(&patch)).await.unwrap();
    let args = ["-n", "shop", "plan", &auto, "--event", "double-eleven", "--history", "1m", "-o", "json"];
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    let report: serde_json::Value = loop {
        // Readiness, not a retry: Prometheus needs two scrapes before irate has a value.
        let out = mallctl(&kubeconfig, &args);
        if out.status.success() {
            break serde_json::from_slice(&out.stdout).expect("JSON");
        }
        assert!(std::time::Instant::now() < deadline, "no history after 30 s: {}", text(&out).1);
        std::thread::sleep(Duration::from_secs(1));
    };
    println!("plan from Prometheus history: {report}");
    assert!((report["baselineMean"].as_f64().unwrap_or(0.0) - 30.0).abs() < 3.0, "{report}");
    assert!(
        report["baseline"].as_str().is_some_and(|b| b.contains("the last 1m of sum(irate(mall_http_requests_total"))
    );
    assert_eq!(report["cappedByMax"], false, "240 req/s needs 4 pods of 71 req/s: {report}");
    drop(prometheus);
    let out = mallctl(&kubeconfig, &["-n", "shop", "plan", &auto, "--event", "black-friday", "--trace", trace]);
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out).1.contains("has no event \"black-friday\" (events: double-eleven)"), "{}", text(&out).1);

    let out = mallctl(&kubeconfig, &["-n", "shop", "event", "list", &auto]);
    let (stdout, _) = text(&out);
    println!("$ mallctl -n shop event list {auto}\n{stdout}");
    assert!(stdout.starts_with("NAME") && stdout.contains("double-eleven") && stdout.contains("8x"), "{stdout}");
    assert!(stdout.lines().nth(1).is_some_and(|l| l.trim_end().ends_with("over")), "{stdout}");
    let out = mallctl(&kubeconfig, &["-n", "shop", "event", "remove", &auto, "double-eleven"]);
    assert_eq!(text(&out).0.trim(), format!("mall/{auto}: event double-eleven removed"));
    let out = mallctl(&kubeconfig, &["-n", "shop", "event", "remove", &auto, "double-eleven"]);
    assert_eq!(out.status.code(), Some(1));
    let out = mallctl(&kubeconfig, &["-n", "shop", "event", "list", &auto, "-o", "json"]);
    assert_eq!(serde_json::from_slice::<serde_json::Value>(&out.stdout).expect("JSON"), serde_json::json!([]));

    // A missing Mall: exit 1 naming it.
    let out = mallctl(&kubeconfig, &["status", "no-such-mall", "-n", "shop"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out).1.contains("\"no-such-mall\" not found in namespace shop"), "{}", text(&out).1);
    let out = mallctl(&kubeconfig, &["get", "no-such-mall", "-n", "shop"]);
    assert_eq!(out.status.code(), Some(1));

    // A bad manifest: nothing is sent, exit 1 naming the field.
    let out = mallctl(&kubeconfig, &["-n", "shop", "apply", "-f", "examples/invalid/shards-zero.yaml"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out).1.contains("spec.database.shards"), "{}", text(&out).1);

    // diff: nothing to change for the applied manifest; a new image and a second shard show as
    // a unified diff of the Mall and the storefront, and the new shard's objects to create.
    let out = mallctl(&kubeconfig, &["-n", "shop", "diff", "-f", "examples/minimal.yaml"]);
    let (stdout, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(0), "{stdout}\n{stderr}");
    assert_eq!((stdout.as_str(), stderr.trim()), ("", "no differences"));
    let edited = dir.path().join("edited.yaml");
    let original =
        std::fs::read_to_string(PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../examples/minimal.yaml")).unwrap();
    std::fs::write(&edited, original.replace("image:", "image: ghcr.io/example/storefront:9.9.9 #")).unwrap();
    let two_shards = dir.path().join("two-shards.yaml");
    std::fs::write(&two_shards, original.replace("database: {}", "database: {shards: 2}")).unwrap();
    let out = mallctl(&kubeconfig, &["-n", "shop", "diff", "-f", edited.to_str().unwrap()]);
    let (stdout, stderr) = text(&out);
    println!("$ mallctl -n shop diff -f edited.yaml\n{stdout}{stderr}");
    assert_eq!(out.status.code(), Some(1), "{stdout}\n{stderr}");
    for line in [
        "--- live/Mall/corner-shop",
        "+++ after-apply/Deployment/corner-shop-storefront",
        "-        image: ghcr.io/example/storefront:1.0.0",
        "+        image: ghcr.io/example/storefront:9.9.9",
    ] {
        assert!(stdout.contains(line), "diff lacks {line:?}:\n{stdout}");
    }
    let with_cache = dir.path().join("with-cache.yaml");
    std::fs::write(&with_cache, format!("{original}  cache: {{}}\n")).unwrap();
    let out = mallctl(&kubeconfig, &["-n", "shop", "diff", "-f", with_cache.to_str().unwrap()]);
    let (stdout, stderr) = text(&out);
    println!("$ mallctl -n shop diff -f with-cache.yaml\n{stdout}{stderr}");
    assert_eq!(out.status.code(), Some(1), "{stdout}\n{stderr}");
    assert!(stdout.contains("would create StatefulSet/corner-shop-cache"), "{stdout}");
    // What the API server would refuse is an error naming its reason (exit 2), not a diff.
    let out = mallctl(&kubeconfig, &["-n", "shop", "diff", "-f", two_shards.to_str().unwrap()]);
    let (stdout, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(2), "{stdout}\n{stderr}");
    assert!(
        stderr.contains("the API server would refuse corner-shop") && stderr.contains("shards is immutable"),
        "{stderr}"
    );
    let out =
        mallctl(&dead_kubeconfig(&kubeconfig, dir.path()), &["-n", "shop", "diff", "-f", "examples/minimal.yaml"]);
    assert_eq!(out.status.code(), Some(2), "an error is exit 2: {}", text(&out).1);

    // --wait times out naming the blocking condition when nobody reconciles.
    drop(operator.take());
    let out =
        mallctl(&kubeconfig, &["-n", "shop", "apply", "-f", edited.to_str().unwrap(), "--wait", "--timeout", "3s"]);
    let (stdout, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(1), "{stdout}\n{stderr}");
    assert!(stderr.contains("not Ready after 3s") && stderr.contains("generation 2 not observed yet"), "{stderr}");

    // An unreachable cluster: exit 1 with the connection error.
    let out = mallctl(&dead_kubeconfig(&kubeconfig, dir.path()), &["get", "-n", "shop"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out).1.contains("listing Malls in shop"), "{}", text(&out).1);

    // Usage errors exit 2.
    let out = mallctl(&kubeconfig, &["get", "-o", "xml"]);
    assert_eq!(out.status.code(), Some(2));
}
