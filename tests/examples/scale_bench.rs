//! The operator SCALE BENCHMARK (issue #14 item 7): N Malls created at once against a fresh
//! local control plane, the operator as a separate release-built process under the chart's
//! RBAC, and the same objects applied by a plain `kubectl apply --server-side` as the floor.
//!
//! ```sh
//! export CARGO_TARGET_DIR=$HOME/.cache/mall-operator/target
//! cargo run --release -p mall-e2e --example scale_bench -- --malls 10,100,300 [--idle 300s]
//!     [--pod-startup 0s] [--sim-step 50ms] [--concurrency 8] [--audit-reads] [--no-build]
//!     [--timeout 600s]
//! ```
//!
//! Before anything else it runs `cargo build --release -p mall-operator` (skip with
//! `--no-build`; `MALL_OPERATOR_BIN` picks another binary) and uses
//! `$CARGO_TARGET_DIR/release/mall-operator`.
//!
//! For each N, one after the other:
//! 1. a fresh local control plane (kwok pod start-up `--pod-startup`, default 0), every CRD, the
//!    chart's ServiceAccount and RBAC, the CloudNativePG status simulator (step `--sim-step`,
//!    default 50 ms, namespace `bench` only), and the operator (production flags and log level,
//!    `--concurrency` passed on when given) — measuring starts once it holds the Lease;
//! 2. N Malls created as fast as possible (32 requests in flight) in namespace `bench` (Pod
//!    Security `restricted`), a mix in thirds: `minimal.yaml` (storefront, one 3-instance shard;
//!    7 children, 2 pods); the same with a 3-shard cache (16 children, 5 pods); and a larger
//!    shop (3 storefront replicas, 2 shards of 2 instances, cache 3x1, CDN tier; 24 children,
//!    11 pods);
//! 3. time until every Mall is Ready (observedGeneration current, Ready=True), polled every
//!    500 ms with one LIST;
//! 4. per Mall, from the API server's audit log (one clock for every writer, attributed to the
//!    operator's ServiceAccount): the Mall's create (stageTimestamp) to the moment every one of
//!    its children had been written by the operator at least once ("all children applied").
//!    The audit log is used rather than a watch of the status because it sees the children
//!    themselves (a status with observedGeneration only says a reconcile ended) and is
//!    independent of the operator's own reporting. Also: where the time goes (first operator
//!    write per Mall, last CloudNativePG simulator status write, last pod status write by kwok),
//!    and the operator's writes by kind (children, re-writes, status, events); per CloudNativePG
//!    Cluster, the operator's create → the simulator's first status write and its progress
//!    time; every writer's share of the API server's writes;
//! 5. operator peak RSS (VmHWM) and CPU seconds (utime+stime of /proc/PID/stat over clock
//!    ticks), control-plane CPU per component;
//! 6. `--idle` (default 300 s, the issue's 5 minutes) after all are Ready: every write by the
//!    operator's user, Lease renewals reported apart;
//! 7. one more Mall (a probe, alone, on the converged cluster): create to all children applied
//!    — the "within 200 ms after the operator sees it" figure;
//! 8. the operator is stopped, then the FLOOR: one `kubectl apply --server-side` (the pinned
//!    kubectl) of the same rendered objects (`mall_controllers::build::children` of every Mall,
//!    without owner references, plus the namespace) into the fresh namespace `floor`, timed.
//!
//! `--audit-reads` also logs the operator's `get` and `list` requests in the audit log (an
//! audit policy of this benchmark) and reports them per reconcile: evidence for where the
//! operator's time goes, at the cost of a slightly busier API server.
//!
//! A table per N compares with the targets: one Mall's children applied within 200 ms, 300
//! Malls Ready within 120 s on 2 cores (control plane included), operator RSS < 100 MB, 0 idle
//! writes, and the operator's time over the kubectl floor. Loopback only.

use k8s_openapi::api::coordination::v1::Lease;
use kube::api::{Api, ListParams, PostParams};
use localcluster::audit::{self, AuditEvent};
use localcluster::{CnpgSimulator, Options, SimulatorOptions};
use mall_controllers::reconcile::kinds;
use mall_crds::Mall;
use mall_e2e::bench::{self, MeasuredOperator};
use mall_e2e::{install_operator_identity, operator_bin};
use serde_json::{Value, json};
use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

const NS: &str = "bench";
const FLOOR_NS: &str = "floor";
const OPERATOR_NS: &str = "mall-system";
const OPERATOR_USER: &str = "system:serviceaccount:mall-system:mall-mall-operator";
const IN_FLIGHT: usize = 32;

struct Args {
    malls: Vec<usize>,
    idle: Duration,
    pod_startup: Duration,
    sim_step: Duration,
    concurrency: Option<u16>,
    audit_reads: bool,
    build: bool,
    timeout: Duration,
}

fn usage(problem: &str) -> ! {
    eprintln!(
        "scale_bench: {problem}\nusage: scale_bench --malls 10,100,300 [--idle 300s] [--pod-startup 0s] [--sim-step 50ms] [--concurrency N] [--audit-reads] [--no-build] [--timeout 600s]"
    );
    std::process::exit(2)
}

fn parse_args() -> Args {
    let mut args = Args {
        malls: vec![10, 100],
        idle: Duration::from_secs(300),
        pod_startup: Duration::ZERO,
        sim_step: Duration::from_millis(50),
        concurrency: None,
        audit_reads: false,
        build: true,
        timeout: Duration::from_secs(600),
    };
    let mut it = std::env::args().skip(1);
    let duration = |v: Option<String>, flag: &str| {
        let v = v.unwrap_or_else(|| usage(&format!("{flag} needs a value")));
        if v == "0" || v == "0s" {
            return Duration::ZERO;
        }
        mall_crds::common::parse_duration(&v).unwrap_or_else(|| usage(&format!("{flag}: {v:?} is not a duration")))
    };
    while let Some(flag) = it.next() {
        match flag.as_str() {
            "--malls" => {
                let v = it.next().unwrap_or_else(|| usage("--malls needs a value"));
                args.malls = v
                    .split(',')
                    .map(|n| n.trim().parse().unwrap_or_else(|_| usage(&format!("--malls: {n:?} is not a number"))))
                    .collect();
            }
            "--idle" => args.idle = duration(it.next(), "--idle"),
            "--pod-startup" => args.pod_startup = duration(it.next(), "--pod-startup"),
            "--sim-step" => args.sim_step = duration(it.next(), "--sim-step"),
            "--timeout" => args.timeout = duration(it.next(), "--timeout"),
            "--concurrency" => {
                let v = it.next().unwrap_or_else(|| usage("--concurrency needs a value"));
                args.concurrency = Some(v.parse().unwrap_or_else(|_| usage("--concurrency: not a number")));
            }
            "--audit-reads" => args.audit_reads = true,
            "--no-build" => args.build = false,
            other => usage(&format!("unknown argument {other:?}")),
        }
    }
    args
}

/// Mall `i` of the mix, in `namespace`.
fn mall_value(name: &str, i: usize, namespace: &str) -> Value {
    let mut spec = json!({
        "storefront": {"image": format!("ghcr.io/example/storefront:1.0.{}", i % 7)},
        "database": {},
    });
    match i % 3 {
        0 => {}
        1 => spec["cache"] = json!({"shards": 3, "replicasPerShard": 0}),
        _ => {
            spec["storefront"]["replicas"] = json!(3);
            spec["database"] = json!({"shards": 2, "instancesPerShard": 2});
            spec["cache"] = json!({"shards": 3, "replicasPerShard": 1});
            spec["cdn"] = json!({"domains": [format!("{name}.example.com")], "gateway": {"name": "public"}});
        }
    }
    json!({
        "apiVersion": "mallctl.io/v1alpha1",
        "kind": "Mall",
        "metadata": {"name": name, "namespace": namespace},
        "spec": spec,
    })
}

fn typed(value: &Value) -> Mall {
    serde_json::from_value(value.clone()).expect("a benchmark Mall deserializes")
}

fn is_ready(m: &Mall) -> bool {
    m.status.as_ref().is_some_and(|s| {
        s.observed_generation == m.metadata.generation
            && s.conditions.iter().any(|c| c.type_ == "Ready" && c.status == "True")
    })
}

/// `(plural, name)` of every child of `mall` → the Mall's name; returns the child count.
fn map_children(mall: &Mall, map: &mut HashMap<(String, String), String>) -> usize {
    let children = mall_controllers::build::children(mall).expect("the benchmark Malls build");
    let name = mall.metadata.name.clone().unwrap_or_default();
    for c in &children {
        let plural = kinds::find(c["apiVersion"].as_str().unwrap_or_default(), c["kind"].as_str().unwrap_or_default())
            .map(|k| k.plural.to_string())
            .unwrap_or_default();
        map.insert((plural, c["metadata"]["name"].as_str().unwrap_or_default().to_string()), name.clone());
    }
    children.len()
}

/// Polls until every Mall in `names` is Ready or `timeout`; returns each one's first Ready time
/// (epoch seconds).
async fn wait_all_ready(api: &Api<Mall>, names: &[String], timeout: Duration) -> HashMap<String, f64> {
    let start = Instant::now();
    let mut ready: HashMap<String, f64> = HashMap::new();
    let mut last_report = Instant::now();
    loop {
        if let Ok(list) = api.list(&ListParams::default()).await {
            let now = bench::now_epoch();
            for m in list.items.iter().filter(|m| is_ready(m)) {
                let name = m.metadata.name.clone().unwrap_or_default();
                if names.contains(&name) {
                    ready.entry(name).or_insert(now);
                }
            }
            if ready.len() == names.len() {
                return ready;
            }
            if start.elapsed() > timeout {
                let stuck: Vec<String> = list
                    .items
                    .iter()
                    .filter(|m| !is_ready(m) && names.contains(&m.metadata.name.clone().unwrap_or_default()))
                    .take(3)
                    .map(|m| {
                        let conds = m.status.as_ref().map(|s| {
                            s.conditions
                                .iter()
                                .map(|c| format!("{}={} {}", c.type_, c.status, c.reason))
                                .collect::<Vec<_>>()
                        });
                        format!("{}: {conds:?}", m.metadata.name.clone().unwrap_or_default())
                    })
                    .collect();
                eprintln!("  TIMEOUT: {} of {} Ready; e.g. {stuck:#?}", ready.len(), names.len());
                return ready;
            }
        }
        if last_report.elapsed() > Duration::from_secs(15) {
            eprintln!("  ... {:>5.1} s: {} of {} Ready", start.elapsed().as_secs_f64(), ready.len(), names.len());
            last_report = Instant::now();
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// Creates the Malls `values` with up to [`IN_FLIGHT`] requests at once.
async fn create_all(api: &Api<Mall>, values: &[Value]) {
    let sem = Arc::new(tokio::sync::Semaphore::new(IN_FLIGHT));
    let mut set = tokio::task::JoinSet::new();
    for v in values {
        let permit = sem.clone().acquire_owned().await.expect("semaphore open");
        let api = api.clone();
        let mall = typed(v);
        set.spawn(async move {
            let _permit = permit;
            api.create(&PostParams::default(), &mall).await
        });
    }
    while let Some(result) = set.join_next().await {
        result.expect("create task").expect("creating a Mall");
    }
}

/// Per-Mall timing from the audit log.
#[derive(Default)]
struct Timing {
    /// Create (stageTimestamp) to every child written once, seconds, per Mall that got there.
    latencies: Vec<f64>,
    /// Create to the operator's first write of a child, seconds.
    first_write: Vec<f64>,
    /// Malls some child of which was never written.
    incomplete: usize,
    /// Earliest create and latest "all children applied", epoch seconds.
    first_create: f64,
    last_applied: f64,
}

fn timing(
    events: &[AuditEvent],
    names: &[String],
    children: &HashMap<(String, String), String>,
    counts: &HashMap<String, usize>,
) -> Timing {
    let mut created: HashMap<&str, f64> = HashMap::new();
    for e in
        events.iter().filter(|e| e.verb == "create" && e.resource.as_deref() == Some("malls") && bench::succeeded(e))
    {
        if let (Some(name), Some(t)) = (e.name.as_deref(), bench::event_time(e)) {
            created.insert(name, t);
        }
    }
    // First write of each child by the operator.
    let mut first: HashMap<(String, String), f64> = HashMap::new();
    for e in events.iter().filter(|e| e.user == OPERATOR_USER && bench::succeeded(e) && e.subresource.is_none()) {
        let key = (e.resource.clone().unwrap_or_default(), e.name.clone().unwrap_or_default());
        if children.contains_key(&key)
            && let Some(t) = bench::event_time(e)
        {
            first.entry(key).or_insert(t);
        }
    }
    let mut per_mall: HashMap<&str, (usize, f64, f64)> = HashMap::new();
    for (key, t) in &first {
        let mall = children[key].as_str();
        let entry = per_mall.entry(mall).or_insert((0, f64::MAX, 0.0));
        entry.0 += 1;
        entry.1 = entry.1.min(*t);
        entry.2 = entry.2.max(*t);
    }
    let mut out = Timing { first_create: f64::MAX, ..Default::default() };
    for name in names {
        let Some(c) = created.get(name.as_str()) else {
            out.incomplete += 1;
            continue;
        };
        out.first_create = out.first_create.min(*c);
        match per_mall.get(name.as_str()) {
            Some((n, lo, hi)) if *n == counts[name] => {
                out.latencies.push(hi - c);
                out.first_write.push(lo - c);
                out.last_applied = out.last_applied.max(*hi);
            }
            _ => out.incomplete += 1,
        }
    }
    out
}

fn describe(e: &AuditEvent) -> String {
    let sub = e.subresource.as_deref().map(|s| format!("/{s}")).unwrap_or_default();
    format!("{} {}{sub}", e.verb, e.resource.as_deref().unwrap_or("?"))
}

fn in_window(e: &AuditEvent, from: f64, to: f64) -> bool {
    bench::event_time(e).is_some_and(|t| t >= from && t <= to)
}

fn cpu_map(dir: &Path) -> BTreeMap<String, f64> {
    let mut m = BTreeMap::new();
    for (name, cpu) in bench::components_cpu(dir) {
        *m.entry(name).or_insert(0.0) += cpu;
    }
    m
}

fn ms(s: f64) -> String {
    if s.is_nan() { "n/a".into() } else { format!("{:.0} ms", s * 1000.0) }
}

async fn run(n: usize, index: u8, args: &Args) {
    let date =
        std::process::Command::new("date").output().map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string());
    eprintln!("== N = {n} ({})", date.unwrap_or_default());
    let dir = tempfile::tempdir().expect("temporary directory");
    let started = Instant::now();
    let opts = Options::new(format!("bench-{n}")).index(index).pod_startup(args.pod_startup);
    let env = bench::start_env(opts, dir.path(), args.audit_reads.then_some(OPERATOR_USER)).await;
    let cluster = env.local.as_ref().expect("a local control plane");
    let cluster_dir = cluster.dir().to_path_buf();
    let audit_log = cluster.audit_log();
    let kubeconfig = install_operator_identity(&env, OPERATOR_NS, &[NS], dir.path()).await;
    env.namespace(NS, &[("pod-security.kubernetes.io/enforce", "restricted")]).await;
    let sim_client = localcluster::cnpg_sim::client_from_kubeconfig(&env.kubeconfig).await.expect("simulator client");
    let sim = CnpgSimulator::spawn(
        sim_client,
        SimulatorOptions { step: args.sim_step, namespace: Some(NS.into()), ..SimulatorOptions::default() },
    );
    let mut extra = vec!["--leader-election-namespace".to_string(), OPERATOR_NS.to_string()];
    if let Some(c) = args.concurrency {
        extra.extend(["--concurrency".to_string(), c.to_string()]);
    }
    let mut op = MeasuredOperator::spawn(&kubeconfig, &dir.path().join("operator.log"), &extra);
    let leases: Api<Lease> = Api::namespaced(env.client.clone(), OPERATOR_NS);
    let wait_start = Instant::now();
    while op.metric("mall_operator_leader").unwrap_or(0.0) < 1.0 {
        assert!(wait_start.elapsed() < Duration::from_secs(60), "the operator did not become leader within 60 s");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let holder = leases.get_opt("mall-operator").await.ok().flatten().and_then(|l| l.spec?.holder_identity);
    tokio::time::sleep(Duration::from_secs(1)).await;
    eprintln!(
        "  set-up {:.1} s (cluster, CRDs, identity, operator leading as {holder:?})",
        started.elapsed().as_secs_f64()
    );

    // The burst.
    let names: Vec<String> = (0..n).map(|i| format!("shop-{i:04}")).collect();
    let values: Vec<Value> = names.iter().enumerate().map(|(i, name)| mall_value(name, i, NS)).collect();
    let mut children: HashMap<(String, String), String> = HashMap::new();
    let mut counts: HashMap<String, usize> = HashMap::new();
    for (name, v) in names.iter().zip(&values) {
        counts.insert(name.clone(), map_children(&typed(v), &mut children));
    }
    let total_children: usize = counts.values().sum();
    let malls: Api<Mall> = Api::namespaced(env.client.clone(), NS);
    let pid = op.pid();
    let (op_cpu0, own_cpu0, cp_cpu0) =
        (bench::cpu_seconds(pid).unwrap_or(0.0), bench::own_cpu(), cpu_map(&cluster_dir));
    let burst_start = bench::now_epoch();
    let t0 = Instant::now();
    create_all(&malls, &values).await;
    let created_in = t0.elapsed();
    eprintln!("  {n} Malls created in {:.2} s ({total_children} children to apply)", created_in.as_secs_f64());
    let ready = wait_all_ready(&malls, &names, args.timeout).await;
    let all_ready = t0.elapsed();
    let ready_end = bench::now_epoch();
    let op_cpu_burst = bench::cpu_seconds(pid).unwrap_or(0.0) - op_cpu0;
    let own_cpu_burst = bench::own_cpu() - own_cpu0;
    let cp_cpu1 = cpu_map(&cluster_dir);
    let hwm_burst = bench::status_kb(pid, "VmHWM").unwrap_or(0);
    let reconciles = op.metric("mall_operator_reconciles_total").unwrap_or(f64::NAN);
    let rec_sum = op.metric("mall_operator_reconcile_duration_seconds_sum").unwrap_or(f64::NAN);
    let rec_count = op.metric("mall_operator_reconcile_duration_seconds_count").unwrap_or(f64::NAN);
    let op_writes_metric = op.metric("mall_operator_writes_total").unwrap_or(f64::NAN);
    eprintln!("  all Ready after {:.1} s ({} of {n})", all_ready.as_secs_f64(), ready.len());

    // Idle.
    let idle_start = bench::now_epoch();
    let op_cpu_idle0 = bench::cpu_seconds(pid).unwrap_or(0.0);
    let reconciles_idle0 = op.metric("mall_operator_reconciles_total").unwrap_or(f64::NAN);
    if !args.idle.is_zero() {
        eprintln!("  idle {:.0} s ...", args.idle.as_secs_f64());
        tokio::time::sleep(args.idle).await;
    }
    let idle_end = bench::now_epoch();
    let op_cpu_idle = bench::cpu_seconds(pid).unwrap_or(0.0) - op_cpu_idle0;
    let reconciles_idle = op.metric("mall_operator_reconciles_total").unwrap_or(f64::NAN) - reconciles_idle0;
    let rss_idle = bench::status_kb(pid, "VmRSS").unwrap_or(0);

    // The probe: one Mall alone on the converged cluster.
    let probe_name = "probe-0000".to_string();
    let probe = mall_value(&probe_name, 1, NS);
    let probe_children = map_children(&typed(&probe), &mut children);
    counts.insert(probe_name.clone(), probe_children);
    create_all(&malls, std::slice::from_ref(&probe)).await;
    let probe_ready = wait_all_ready(&malls, std::slice::from_ref(&probe_name), Duration::from_secs(120)).await;
    tokio::time::sleep(Duration::from_millis(500)).await;

    let hwm = bench::status_kb(pid, "VmHWM").unwrap_or(0);
    let op_cpu_total = bench::cpu_seconds(pid).unwrap_or(0.0);
    let log = std::fs::read_to_string(&op.log).unwrap_or_default();
    let failed_reconciles = log.lines().filter(|l| l.contains("reconcile failed")).count();
    let sample_failure =
        log.lines().find(|l| l.contains("reconcile failed")).map(|l| l.chars().take(400).collect::<String>());
    op.terminate(Duration::from_secs(10));
    drop(sim);

    // The audit log, once.
    let events = audit::read_events(&audit_log).expect("reading the audit log");
    let burst = timing(&events, &names, &children, &counts);
    let probe_timing = timing(&events, std::slice::from_ref(&probe_name), &children, &counts);
    let op_events: Vec<&AuditEvent> = events.iter().filter(|e| e.user == OPERATOR_USER).collect();
    let is_write = |e: &AuditEvent| !matches!(e.verb.as_str(), "get" | "list" | "watch");
    let mut burst_writes: BTreeMap<String, usize> = BTreeMap::new();
    let mut child_writes = 0usize;
    let mut refused = 0usize;
    for e in op_events.iter().filter(|e| is_write(e) && in_window(e, burst_start, ready_end)) {
        if !bench::succeeded(e) {
            refused += 1;
            continue;
        }
        let key = (e.resource.clone().unwrap_or_default(), e.name.clone().unwrap_or_default());
        if e.subresource.is_none() && children.contains_key(&key) {
            child_writes += 1;
        } else {
            *burst_writes.entry(describe(e)).or_default() += 1;
        }
    }
    let mut reads: BTreeMap<String, usize> = BTreeMap::new();
    for e in op_events.iter().filter(|e| !is_write(e) && in_window(e, burst_start, ready_end)) {
        *reads.entry(format!("{} {}", e.verb, e.resource.as_deref().unwrap_or("?"))).or_default() += 1;
    }
    let mut idle_writes: BTreeMap<String, usize> = BTreeMap::new();
    let mut idle_leases = 0usize;
    for e in op_events.iter().filter(|e| is_write(e) && bench::succeeded(e) && in_window(e, idle_start, idle_end)) {
        if e.resource.as_deref() == Some("leases") {
            idle_leases += 1;
        } else {
            *idle_writes.entry(format!("{} {}", describe(e), e.name.as_deref().unwrap_or("?"))).or_default() += 1;
        }
    }
    let idle_other: usize = idle_writes.values().sum();
    let last_of = |pred: &dyn Fn(&AuditEvent) -> bool| {
        events
            .iter()
            .filter(|e| bench::succeeded(e) && in_window(e, burst_start, ready_end) && pred(e))
            .filter_map(bench::event_time)
            .fold(f64::NAN, f64::max)
    };
    let last_sim = last_of(&|e| {
        e.user_agent.as_deref().is_some_and(|a| a.starts_with(localcluster::cnpg_sim::FIELD_MANAGER))
            && e.resource.as_deref() == Some("clusters")
    });
    let last_pod = last_of(&|e| e.user.contains("kwok") && e.resource.as_deref() == Some("pods"));
    let sim_spread = cluster_progress(&events, &op_events, &|e| in_window(e, burst_start, ready_end));
    // Every writer's share of the API server's write load during the burst.
    let mut by_writer: BTreeMap<String, usize> = BTreeMap::new();
    for e in events.iter().filter(|e| is_write(e) && in_window(e, burst_start, ready_end)) {
        let who = e.user.rsplit(':').next().unwrap_or(&e.user).to_string();
        *by_writer.entry(format!("{who} {}", describe(e))).or_default() += 1;
    }
    let mut by_writer: Vec<(String, usize)> = by_writer.into_iter().collect();
    by_writer.sort_by_key(|(_, n)| std::cmp::Reverse(*n));
    let total_writes: usize = by_writer.iter().map(|(_, n)| n).sum();
    let top: Vec<String> = by_writer.iter().take(14).map(|(k, n)| format!("{k}: {n}")).collect();
    let pods_created = events
        .iter()
        .filter(|e| {
            e.verb == "create"
                && e.resource.as_deref() == Some("pods")
                && e.subresource.is_none()
                && bench::succeeded(e)
        })
        .filter(|e| e.namespace.as_deref() == Some(NS) && in_window(e, burst_start, ready_end))
        .count();

    // The floor: the same objects by one kubectl apply --server-side into a fresh namespace.
    let mut floor_objects = vec![json!({
        "apiVersion": "v1", "kind": "Namespace",
        "metadata": {"name": FLOOR_NS, "labels": {"pod-security.kubernetes.io/enforce": "restricted"}},
    })];
    for (i, name) in names.iter().enumerate() {
        let mall = typed(&mall_value(name, i, FLOOR_NS));
        floor_objects.extend(mall_controllers::build::children(&mall).expect("the benchmark Malls build"));
    }
    let floor_file = dir.path().join("floor.json");
    let list = json!({"apiVersion": "v1", "kind": "List", "items": floor_objects});
    std::fs::write(&floor_file, serde_json::to_vec(&list).expect("JSON")).expect("writing the floor objects");
    let (floor_time, floor_result) = bench::kubectl_apply(&env.kubeconfig, &floor_file);
    if let Err(e) = &floor_result {
        eprintln!("  FLOOR FAILED: {e}");
    }

    // Report.
    let p50 = bench::quantile(&burst.latencies, 0.5);
    let p99 = bench::quantile(&burst.latencies, 0.99);
    let fw50 = bench::quantile(&burst.first_write, 0.5);
    let fw99 = bench::quantile(&burst.first_write, 0.99);
    let probe_latency = probe_timing.latencies.first().copied().unwrap_or(f64::NAN);
    let probe_first = probe_timing.first_write.first().copied().unwrap_or(f64::NAN);
    let operator_time = burst.last_applied - burst.first_create;
    let rel = |t: f64| if t.is_nan() { "n/a".to_string() } else { format!("{:.1} s", t - burst.first_create) };
    let ratio = operator_time / floor_time.as_secs_f64();
    let ready_s = all_ready.as_secs_f64();
    let yes = |b: bool| if b { "yes" } else { "NO" };
    println!();
    println!(
        "### N = {n} Malls ({total_children} children, {pods_created} pods; pod start-up {:?}, simulator step {:?}, operator concurrency {})",
        args.pod_startup,
        args.sim_step,
        args.concurrency.map(|c| c.to_string()).unwrap_or_else(|| "8 (default)".into())
    );
    println!();
    println!("| figure | measured | target | met |");
    println!("|---|---|---|---|");
    println!(
        "| one Mall alone (probe on the converged cluster): create → all {probe_children} children applied | {} (first write after {}) | ≤ 200 ms | {} |",
        ms(probe_latency),
        ms(probe_first),
        yes(probe_latency <= 0.2)
    );
    println!(
        "| burst: create → all children applied, p50 / p99 ({} Malls measured, {} incomplete) | {} / {} | ≤ 200 ms | {} |",
        burst.latencies.len(),
        burst.incomplete,
        ms(p50),
        ms(p99),
        yes(p99 <= 0.2)
    );
    println!(
        "| burst: create → operator's first child write, p50 / p99 (queueing) | {} / {} | | |",
        ms(fw50),
        ms(fw99)
    );
    let scaled = 120.0 * n as f64 / 300.0;
    println!(
        "| all {n} Ready (first create → last Ready; {} of {n} Ready) | {ready_s:.1} s | 300 in ≤ 120 s (pro rata {scaled:.0} s) | {} |",
        ready.len(),
        yes(ready.len() == n && ready_s <= scaled.max(1.0))
    );
    println!(
        "| operator peak RSS (VmHWM) | {:.1} MB (at all-Ready {:.1} MB, after idle VmRSS {:.1} MB) | < 100 MB | {} |",
        hwm as f64 / 1024.0,
        hwm_burst as f64 / 1024.0,
        rss_idle as f64 / 1024.0,
        yes(hwm < 100 * 1024)
    );
    println!("| operator CPU | {op_cpu_burst:.2} s burst, {op_cpu_idle:.2} s idle, {op_cpu_total:.2} s total | | |");
    println!(
        "| operator writes during {:.0} s idle (Lease renewals apart) | {idle_other} ({idle_leases} Lease renewals) | 0 | {} |",
        idle_end - idle_start,
        yes(idle_other == 0)
    );
    println!(
        "| operator time (first create → last Mall's children applied) / kubectl floor ({} objects) | {:.2} s / {:.2} s = {ratio:.2} | | {} |",
        list["items"].as_array().map(Vec::len).unwrap_or(0),
        operator_time,
        floor_time.as_secs_f64(),
        if floor_result.is_ok() { "" } else { "floor FAILED" }
    );
    println!();
    println!(
        "Where the time went (from the first create): Malls created by {:.1} s; last Mall's children applied {}; last CloudNativePG simulator status write {}; last pod status write (kwok) {}; all Ready {ready_s:.1} s.",
        created_in.as_secs_f64(),
        rel(burst.last_applied),
        rel(last_sim),
        rel(last_pod)
    );
    println!(
        "CloudNativePG simulator per Cluster: operator's create → first simulator status write p50 / p99 {} / {}; first → last status write (progress) p50 / p99 {} / {}; {} status writes.",
        ms(sim_spread.pickup.0),
        ms(sim_spread.pickup.1),
        ms(sim_spread.progress.0),
        ms(sim_spread.progress.1),
        sim_spread.writes
    );
    println!("All writes during the burst: {total_writes}; largest: {}.", top.join(", "));
    println!(
        "Operator during the burst: {reconciles} reconciles ({failed_reconciles} failed; mean {:.0} ms each), {op_writes_metric} writes by its metric; audit: {child_writes} child writes for {total_children} children ({} re-writes), {refused} refused, other writes {burst_writes:?}.",
        rec_sum / rec_count * 1000.0,
        child_writes.saturating_sub(total_children)
    );
    if let Some(s) = sample_failure {
        println!("First failed reconcile: {s}");
    }
    if !reads.is_empty() {
        let total: usize = reads.values().sum();
        println!(
            "Operator reads during the burst (audit): {total} ({:.1} per reconcile): {reads:?}",
            total as f64 / reconciles
        );
    }
    if idle_other > 0 {
        let mut by_kind: BTreeMap<String, usize> = BTreeMap::new();
        for (w, c) in &idle_writes {
            *by_kind.entry(w.rsplit_once(' ').map(|(k, _)| k.to_string()).unwrap_or_default()).or_default() += c;
        }
        let some: Vec<&String> = idle_writes.keys().take(10).collect();
        println!("Idle writes by kind: {by_kind:?}; e.g. {some:?}");
    }
    println!("Idle: {reconciles_idle} reconciles, {op_cpu_idle:.2} s CPU.");
    let mut cp: Vec<String> =
        cp_cpu1.iter().map(|(k, v)| format!("{k} {:.1}", v - cp_cpu0.get(k).copied().unwrap_or(0.0))).collect();
    cp.push(format!("benchmark driver + CNPG simulator {own_cpu_burst:.1}"));
    cp.push(format!("mall-operator {op_cpu_burst:.1}"));
    println!(
        "CPU seconds during the burst ({ready_s:.1} s wall, 2 cores = {:.0} CPU-s available): {}; load average now {}.",
        2.0 * ready_s,
        cp.join(", "),
        std::fs::read_to_string("/proc/loadavg").unwrap_or_default().trim()
    );
    if probe_ready.is_empty() {
        println!("(the probe Mall did not become Ready within 120 s)");
    }
    if let Some(mut cluster) = env.local {
        let _ = cluster.stop().await;
    }
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    // Warnings of the in-process parts (the CloudNativePG simulator's failed steps) on stderr;
    // kube-client's own lines are off (set-up polls while CRDs are being established).
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn,kube_client=off"));
    tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).init();
    let args = parse_args();
    if args.build && std::env::var_os("MALL_OPERATOR_BIN").is_none() {
        let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
        let status = std::process::Command::new(cargo)
            .args(["build", "--release", "-p", "mall-operator"])
            .current_dir(mall_e2e::repo_root())
            .status()
            .expect("cargo runs");
        assert!(status.success(), "cargo build --release -p mall-operator failed");
    }
    eprintln!("operator binary: {}", operator_bin().display());
    for (i, n) in args.malls.iter().enumerate() {
        run(*n, 20 + (i as u8 % 10), &args).await;
    }
}

/// How the CloudNativePG simulator progressed per Cluster, from the audit log.
struct SimSpread {
    /// Operator's first write of a Cluster → the simulator's first status write (p50, p99 s).
    pickup: (f64, f64),
    /// Simulator's first → last status write of a Cluster (p50, p99 s).
    progress: (f64, f64),
    /// Status writes by the simulator.
    writes: usize,
}

fn cluster_progress(
    events: &[AuditEvent],
    op_events: &[&AuditEvent],
    window: &dyn Fn(&AuditEvent) -> bool,
) -> SimSpread {
    let mut created: HashMap<String, f64> = HashMap::new();
    for e in op_events.iter().filter(|e| e.resource.as_deref() == Some("clusters") && e.subresource.is_none()) {
        if let (Some(name), Some(t)) = (e.name.clone(), bench::event_time(e)) {
            created.entry(name).and_modify(|v| *v = v.min(t)).or_insert(t);
        }
    }
    let mut sim: HashMap<String, (f64, f64)> = HashMap::new();
    let mut writes = 0;
    for e in events.iter().filter(|e| {
        window(e)
            && bench::succeeded(e)
            && e.resource.as_deref() == Some("clusters")
            && e.subresource.as_deref() == Some("status")
            && e.user_agent.as_deref().is_some_and(|a| a.starts_with(localcluster::cnpg_sim::FIELD_MANAGER))
    }) {
        writes += 1;
        if let (Some(name), Some(t)) = (e.name.clone(), bench::event_time(e)) {
            let entry = sim.entry(name).or_insert((t, t));
            entry.0 = entry.0.min(t);
            entry.1 = entry.1.max(t);
        }
    }
    let mut pickup: Vec<f64> = sim.iter().filter_map(|(name, (first, _))| Some(first - created.get(name)?)).collect();
    let mut progress: Vec<f64> = sim.values().map(|(first, last)| last - first).collect();
    let pct = |v: &mut Vec<f64>| {
        v.sort_by(f64::total_cmp);
        let at = |q: f64| v.get(((v.len() as f64 - 1.0) * q).round() as usize).copied().unwrap_or(f64::NAN);
        (at(0.5), at(0.99))
    };
    SimSpread { pickup: pct(&mut pickup), progress: pct(&mut progress), writes }
}
