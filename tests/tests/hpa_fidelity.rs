//! Fidelity of the simulated `hpa` baseline (`sim::baselines::Hpa`) against the real
//! HorizontalPodAutoscaler of kube-controller-manager v1.36.3 on the local control plane.
//!
//! Contract: a 30-minute excerpt of `../shared/traces/double-eleven.csv` around the surge
//! (t = 4800..6600) is replayed time-compressed, one HPA sync (15 s of trace) per ~1.18 s of
//! wall time (≈12.7×). The real HPA reads an External metric from [`MetricsAdapter`] on 127.0.0.1
//! (`AverageValue` = the storefront's targetPerReplica, 100), which serves at each sync what the
//! simulator's 15 s-scrape pipeline exposes (`Pipeline::rate(t, 15)`, the default `irate`
//! query) — the very series the simulated HPA reads, so the comparison tests the HPA algorithm
//! and pod start-up, not the metric pipeline. Both run the same parameters
//! (`HpaConfig::default()`: tolerance 0.1, sync 15 s, scale-up 100 % or 4 pods per 15 s,
//! scale-down stabilization 300 s then 100 % per 15 s; start-up 30 s, 11 replicas at t=0), the
//! real ones compressed: [`SYNC_FLAG`] as `--horizontal-pod-autoscaler-sync-period`, behavior
//! windows and policy periods in whole seconds holding the same syncs ([`compress`]), kwok's
//! Ready delay per pod by annotation. Deployment `spec.replicas` and `status.readyReplicas` are
//! sampled once per trace second and compared with the simulated counts; the share of seconds
//! within ±1 replica must be at least 90 % for both (a replay below that is repeated once on a
//! fresh control plane: a metric fetch failing under load shifts one decision). The test prints
//! `hpa fidelity: N% of S sampled seconds within ±1 replica (compression Kx)`;
//! `MALL_HPA_FIDELITY_CSV=FILE` also writes the series (and the HPA's events next to it).
//!
//! Timing (the traps of the recipe in `LOCAL-CONTROL-PLANE.md`): the HPA is re-queued one period
//! after each sync (and on each informer resync), so the real interval is the flag plus some ms
//! that vary, more while it scales (an open-loop replay clock drifted by two syncs over this
//! excerpt: measured). The replay is therefore phase-locked to the real syncs: the n-th metric
//! request of the replay is sync n and gets the value of the scrape at trace second 15n (what
//! the simulated HPA reads at its sync at 15n); trace second 15n + u (0 ≤ u < 15) is the wall
//! instant (u + 0.8)/15 of the way from sync n to sync n+1, and the Deployment's state there
//! (from a watch) is the real sample. A calibration HPA first measures the real interval P;
//! pods get a Ready delay of 2P minus kwok's 15 ms (30 s of trace time); the compression
//! reported is 15 s / P.
//! Loopback only: the adapter listens on 127.0.0.1 and nothing connects to pod or Service IPs.

use futures::StreamExt;
use k8s_openapi::api::apps::v1::Deployment;
use kube::api::{Api, DeleteParams};
use kube::runtime::WatchStreamExt;
use localcluster::{LocalCluster, Options, kwok::STARTUP_DELAY_ANNOTATION};
use mall_e2e::metrics_adapter::{MetricFn, MetricsAdapter};
use mall_e2e::{apply_yaml, repo_root, wait_until};
use mall_simulator::baselines::{Hpa, HpaConfig};
use mall_simulator::{Pipeline, SimConfig, Trace, simulate};
use serde_json::{Value, json};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const NS: &str = "fidelity";
/// `--horizontal-pod-autoscaler-sync-period`, one sync of the compressed replay (15 s of trace).
/// Not 1 s: the interval between syncs is this plus some ms of jitter and processing (hundreds
/// while it scales), and the scale event of the previous sync must fall clearly outside the 1 s
/// policy period, as the one 15 s back does in the simulator (at 1 s it fell inside now and then:
/// a run-to-run flip that shifted the whole surge by one sync). With the ~13 ms overhead the
/// interval is ~1.18 s, so the 300 s window (the last 20 syncs) becomes 23 s, half a sync from
/// either edge (19 intervals = 22.4 s, 20 = 23.6 s).
const SYNC_FLAG: &str = "1165ms";
const FROM: usize = 4800;
const LEN: usize = 1800;
/// Where within a trace second the Deployment is sampled (the HPA writes and kwok marks pods
/// Ready a few tens of milliseconds, i.e. a few tenths of trace seconds, after the ideal instant).
const SAMPLE_AT: f64 = 0.8;
const METRIC: &str = "storefront_rps";
const CALIBRATION_METRIC: &str = "calibration";
const KWOK_OVERHEAD_MS: f64 = 15.0;

/// The phase-locked replay: `None` before it starts, then the wall instants of its syncs.
type Syncs = Arc<Mutex<Option<Vec<Instant>>>>;

/// Wall instant of trace second `t` + [`SAMPLE_AT`], interpolated between the syncs.
fn sample_instant(syncs: &[Instant], period: Duration, t: usize) -> Instant {
    let n = t / 15;
    let from = syncs[n];
    let to = syncs.get(n + 1).copied().unwrap_or(from + period);
    from + (to - from).mul_f64(((t % 15) as f64 + SAMPLE_AT) / 15.0)
}

fn deployment(name: &str, replicas: i32, startup: Option<String>) -> Value {
    let annotations = startup.map_or_else(|| json!({}), |d| json!({STARTUP_DELAY_ANNOTATION: d}));
    json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": name, "namespace": NS},
        "spec": {"replicas": replicas, "selector": {"matchLabels": {"app": name}},
            "strategy": {"type": "RollingUpdate"},
            "template": {"metadata": {"labels": {"app": name}, "annotations": annotations},
                "spec": {"containers": [{"name": "app", "image": "shop:1"}]}}}})
}

/// A window or policy period of `s` trace seconds, in whole compressed seconds holding the same
/// syncs as in the simulator: there a sync at 15 s intervals counts what is strictly younger than
/// `s`, i.e. the last N = ⌈s / 15⌉ syncs (itself included); here syncs come every `period` wall
/// seconds, so the window is (N − ½)·period rounded, half a sync from either edge.
fn compress(s: u32, sync: u32, period: f64, min: u32) -> u32 {
    if s == 0 {
        return 0;
    }
    let n = f64::from(s.div_ceil(sync.max(1)));
    (((n - 0.5) * period).round() as u32).max(min)
}

fn hpa(name: &str, metric: &str, cfg: &HpaConfig, sim: &SimConfig, period: f64) -> Value {
    let window = |s: u32| compress(s, cfg.sync_period, period, 0);
    let secs = |s: u32| compress(s, cfg.sync_period, period, 1);
    json!({"apiVersion": "autoscaling/v2", "kind": "HorizontalPodAutoscaler",
        "metadata": {"name": name, "namespace": NS},
        "spec": {"scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": name},
            "minReplicas": sim.min, "maxReplicas": sim.max,
            "metrics": [{"type": "External", "external": {"metric": {"name": metric},
                "target": {"type": "AverageValue", "averageValue": format!("{}", sim.target)}}}],
            "behavior": {
                "scaleUp": {"stabilizationWindowSeconds": window(cfg.up_stabilization), "selectPolicy": "Max",
                    "tolerance": format!("{}", cfg.tolerance),
                    "policies": [
                        {"type": "Percent", "value": cfg.up_percent as i32, "periodSeconds": secs(cfg.up_period)},
                        {"type": "Pods", "value": cfg.up_pods, "periodSeconds": secs(cfg.up_period)}]},
                "scaleDown": {"stabilizationWindowSeconds": window(cfg.down_stabilization), "selectPolicy": "Max",
                    "tolerance": format!("{}", cfg.tolerance),
                    "policies": [{"type": "Percent", "value": cfg.down_percent as i32,
                                  "periodSeconds": secs(cfg.down_period)}]}}}})
}

async fn ready(deployments: &Api<Deployment>, name: &str, n: i32) {
    wait_until(&format!("{name}: {n} Ready"), Duration::from_secs(60), || async {
        let d = deployments.get(name).await.ok()?;
        (d.status?.ready_replicas.unwrap_or(0) == n).then_some(())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn real_hpa_agrees_with_the_simulated_hpa() {
    if std::env::var_os("MALL_E2E_KUBECONFIG").is_some() {
        mall_e2e::skipped(
            "real HPA agrees with the simulated HPA",
            "it sets kube-controller-manager flags of the local control plane",
        );
        return;
    }
    // One sync whose metric fetch fails or lands late on a loaded machine makes the real HPA
    // decide one scrape later, and the curves stay apart for the scale-down window that follows
    // (seen once in CI: 42.5 %, then 100 % on the same commit). Such a replay is repeated once on
    // a fresh control plane; a model error fails both.
    let (mut spec, mut ready) = replay_once().await;
    if spec < 90.0 || ready < 90.0 {
        println!(
            "hpa fidelity: replay 1 below 90 % ({spec:.1} % / {ready:.1} %): one more replay on a fresh control plane"
        );
        (spec, ready) = replay_once().await;
    }
    assert!(spec >= 90.0, "spec.replicas agreement {spec:.1}% < 90%");
    assert!(ready >= 90.0, "readyReplicas agreement {ready:.1}% < 90%");
}

/// One replay on a fresh control plane: the shares (%) of sampled seconds within ±1 replica for
/// `spec.replicas` and `readyReplicas`.
async fn replay_once() -> (f64, f64) {
    // The development traces sit beside the repository (`../shared/traces`), as in CI.
    let path = repo_root().join("../shared/traces/double-eleven.csv");
    assert!(path.exists(), "{} is missing: the fidelity check replays it", path.display());
    let wall = Instant::now();
    let full = Trace::read(&path).unwrap();
    let excerpt = Trace { name: "double-eleven-surge".into(), rps: full.rps[FROM..FROM + LEN].to_vec() };
    let cfg = HpaConfig::default();
    let sim_cfg = SimConfig {
        startup: 30,
        capacity: 100.0 / 0.7,
        scrape_interval: 15,
        query_window: 15,
        target: 100.0,
        min: 4,
        max: 400,
    };
    let sim = simulate(&excerpt, &sim_cfg, &mut Hpa::new(cfg.clone()), None, true);
    let series = sim.series.unwrap();
    let sim_ready: Vec<i32> = series.capacity.iter().map(|c| (c / sim_cfg.capacity).round() as i32).collect();
    let pipeline = Pipeline::new(&excerpt, sim_cfg.scrape_interval);
    let values: Vec<f64> = (0..LEN as u32).map(|t| pipeline.rate(t, sim_cfg.query_window)).collect();

    // The adapter: before the replay the first value; during it, request n (sync n) gets the
    // scrape at 15n (a request within half a period of the previous one is the same sync); the
    // calibration metric is constant at one replica's target.
    let replay: Syncs = Arc::new(Mutex::new(None));
    let half_period = Duration::from_millis(600);
    let metric: MetricFn = {
        let replay = replay.clone();
        let values = values.clone();
        let target = sim_cfg.target;
        Arc::new(move |name: &str, now: Instant| match name {
            METRIC => {
                let mut replay = replay.lock().unwrap();
                let Some(syncs) = replay.as_mut() else { return Some(values[0]) };
                if syncs.last().is_none_or(|&last| now - last > half_period) {
                    syncs.push(now);
                }
                Some(values[(15 * (syncs.len() - 1)).min(LEN - 1)])
            }
            CALIBRATION_METRIC => Some(target),
            _ => None,
        })
    };
    let adapter = MetricsAdapter::start(metric).await.unwrap();

    let mut cluster = LocalCluster::start(
        Options::new("hpa-fidelity")
            .index(15)
            .kcm_arg(format!("--horizontal-pod-autoscaler-sync-period={SYNC_FLAG}"))
            .kcm_arg("--kube-api-qps=1000")
            .kcm_arg("--kube-api-burst=2000"),
    )
    .await
    .unwrap_or_else(|e| panic!("starting the local control plane: {e}"));
    let client = cluster.client();
    apply_yaml(&client, None, &[json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NS}})]).await;
    adapter.register(&client, NS, Duration::from_secs(60)).await.unwrap();
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), NS);

    // Calibration: the real interval between two syncs of an HPA that does not scale.
    apply_yaml(&client, Some(NS), &[deployment("calib", 1, None)]).await;
    ready(&deployments, "calib", 1).await;
    let calib_cfg = SimConfig { min: 1, max: 2, ..sim_cfg.clone() };
    apply_yaml(&client, Some(NS), &[hpa("calib", CALIBRATION_METRIC, &cfg, &calib_cfg, 1.0)]).await;
    let syncs = |name: &str| -> Vec<Instant> {
        adapter.requests().into_iter().filter(|(m, _)| m == name).map(|(_, at)| at).collect()
    };
    wait_until("calibration syncs", Duration::from_secs(30), || async {
        (syncs(CALIBRATION_METRIC).len() >= 10).then_some(())
    })
    .await;
    let calib = syncs(CALIBRATION_METRIC);
    // The median: a load spike on the shared cores stretches single intervals.
    let mut intervals: Vec<f64> = calib.windows(2).skip(1).map(|w| (w[1] - w[0]).as_secs_f64()).collect();
    intervals.sort_by(f64::total_cmp);
    let period = intervals[intervals.len() / 2];
    let k = f64::from(cfg.sync_period) / period;
    let hpas: Api<kube::api::DynamicObject> = Api::namespaced_with(
        client.clone(),
        NS,
        &kube::core::ApiResource::erase::<k8s_openapi::api::autoscaling::v2::HorizontalPodAutoscaler>(&()),
    );
    hpas.delete("calib", &DeleteParams::default()).await.unwrap();
    deployments.delete("calib", &DeleteParams::default()).await.unwrap();

    // The storefront: the simulator's initial count, Ready delay = start-up in compressed time.
    let startup_ms = f64::from(sim_cfg.startup) / k * 1000.0 - KWOK_OVERHEAD_MS;
    let initial = sim_cfg.initial_replicas(excerpt.rps[0]);
    apply_yaml(&client, Some(NS), &[deployment("shop", initial, Some(format!("{}ms", startup_ms.round())))]).await;
    ready(&deployments, "shop", initial).await;
    apply_yaml(&client, Some(NS), &[hpa("shop", METRIC, &cfg, &sim_cfg, period)]).await;
    // The Deployment's history, from a watch: (arrival, spec.replicas, status.readyReplicas).
    let history: Arc<Mutex<Vec<(Instant, i32, i32)>>> = Arc::new(Mutex::new(Vec::new()));
    let watch = {
        let history = history.clone();
        let stream = kube::runtime::watcher(
            deployments.clone(),
            kube::runtime::watcher::Config::default().fields("metadata.name=shop"),
        );
        tokio::spawn(async move {
            let mut stream = std::pin::pin!(stream.applied_objects());
            while let Some(Ok(d)) = stream.next().await {
                let spec = d.spec.and_then(|s| s.replicas).unwrap_or(0);
                let ready = d.status.and_then(|s| s.ready_replicas).unwrap_or(0);
                history.lock().unwrap().push((Instant::now(), spec, ready));
            }
        })
    };
    // Warm-up at the first value, then the replay: 120 syncs and the one that ends the last.
    wait_until("first HPA syncs", Duration::from_secs(30), || async { (syncs(METRIC).len() >= 3).then_some(()) }).await;
    *replay.lock().unwrap() = Some(Vec::new());
    let started = Instant::now();
    let needed = LEN / 15 + 1;
    wait_until("the replay", Duration::from_secs(600), || async {
        let n = replay.lock().unwrap().as_ref().map_or(0, Vec::len);
        (n >= needed).then_some(())
    })
    .await;
    // Let the last sync's effects land (one compressed second).
    tokio::time::sleep(Duration::from_secs_f64(period)).await;
    let replay_wall = started.elapsed();
    watch.abort();
    let sync_times = replay.lock().unwrap().clone().unwrap();
    let history = history.lock().unwrap().clone();
    let state_at =
        |at: Instant| history.iter().rev().find(|(seen, _, _)| *seen <= at).map_or((0, 0), |&(_, s, r)| (s, r));
    let period_d = Duration::from_secs_f64(period);
    let (real_spec, real_ready): (Vec<i32>, Vec<i32>) =
        (0..LEN).map(|t| state_at(sample_instant(&sync_times, period_d, t))).unzip();
    let intervals: Vec<f64> = sync_times.windows(2).map(|w| (w[1] - w[0]).as_secs_f64() * 1000.0).collect();
    let (lo, hi) = intervals.iter().fold((f64::MAX, f64::MIN), |(lo, hi), &p| (lo.min(p), hi.max(p)));
    let run_period = intervals.iter().sum::<f64>() / intervals.len().max(1) as f64;
    let agree = |real: &[i32], sim: &[i32]| real.iter().zip(sim).filter(|(r, s)| (**r - **s).abs() <= 1).count();
    let spec_ok = agree(&real_spec, &series.replicas);
    let ready_ok = agree(&real_ready, &sim_ready);
    let worst: Vec<(usize, i32, i32)> = (0..LEN)
        .filter(|&t| (real_spec[t] - series.replicas[t]).abs() > 1)
        .take(20)
        .map(|t| (t, real_spec[t], series.replicas[t]))
        .collect();
    let percent = |n: usize| 100.0 * n as f64 / LEN as f64;
    println!("hpa fidelity: {:.1}% of {LEN} sampled seconds within ±1 replica (compression {k:.2}x)", percent(spec_ok));
    println!(
        "hpa fidelity: readyReplicas {:.1}% within ±1; excerpt t={FROM}..{} of double-eleven; sync interval \
         {:.1} ms calibrated, {run_period:.1} ms in the replay ({lo:.0}..{hi:.0}); max replicas real {} sim {}; \
         replay {:.0} s, test {:.0} s wall",
        percent(ready_ok),
        FROM + LEN,
        period * 1000.0,
        real_spec.iter().max().unwrap_or(&0),
        series.replicas.iter().max().unwrap_or(&0),
        replay_wall.as_secs_f64(),
        wall.elapsed().as_secs_f64(),
    );
    println!("seconds off by more than one replica (t, real, sim), first 20: {worst:?}");
    if let Some(path) = std::env::var_os("MALL_HPA_FIDELITY_CSV") {
        // Per-second series and per-sync decisions, for plots and post-mortems.
        let mut csv = String::from("t,value,real_spec,sim_spec,real_ready,sim_ready,sync_ms\n");
        for t in 0..LEN {
            let sync = (t % 15 == 0)
                .then(|| sync_times.get(t / 15).map(|&at| format!("{:.1}", (at - started).as_secs_f64() * 1000.0)))
                .flatten()
                .unwrap_or_default();
            csv += &format!(
                "{t},{:.1},{},{},{},{},{sync}\n",
                values[t], real_spec[t], series.replicas[t], real_ready[t], sim_ready[t]
            );
        }
        std::fs::write(&path, csv).unwrap();
        let events = cluster
            .kubectl()
            .args([
                "get",
                "events",
                "-n",
                NS,
                "--field-selector",
                "involvedObject.kind=HorizontalPodAutoscaler",
                "-o",
                "custom-columns=T:.lastTimestamp,C:.count,R:.reason,M:.message",
            ])
            .output()
            .await
            .unwrap();
        std::fs::write(std::path::Path::new(&path).with_extension("events.txt"), events.stdout).unwrap();
    }
    drop(adapter);
    cluster.stop().await.ok();
    (percent(spec_ok), percent(ready_ok))
}
