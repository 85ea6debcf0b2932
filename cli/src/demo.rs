//! `mallctl demo`: the whole product on the embedded default, in about three minutes, no
//! cluster needed.
//!
//! Contract: builds what is missing first (the pinned Kubernetes tools, with progress; Debian's
//! `prometheus` when absent and running as root), then, all on 127.0.0.1: three local control
//! planes (hub, eu, us; indexes 8-10), CloudNativePG's own admission webhooks beside each, the
//! CloudNativePG status simulator (a stand-in; CloudNativePG cannot run here) in eu and us sharing
//! one simulated object store, a Gateway address per region, a real Prometheus scraping a
//! storefront load exporter, and the operator against the hub. It applies a Mall with regions eu
//! (primary) and us (standby) and waits until it is Ready; announces a Double Eleven promotion
//! (`--multiplier` times normal traffic, `--surge-in` after Ready, lasting `--surge-for`) the way
//! `mallctl event add` does, and plays it through the exporter in real time, printing demand,
//! storefront replicas and Ready capacity every few seconds while the operator's autoscaler
//! (its production path: Prometheus → engine → the eu member cluster) sizes the storefront;
//! then kills eu's whole control plane and reports the failover to us. It ends with a summary
//! (peak replicas, SLO-violation seconds — demand above the Ready capacity — RTO, epoch, DNS) and
//! an SVG plot it names, stops every process it started and exits 0. Ctrl-C or SIGTERM stops
//! everything at any phase (exit 1). Files (kubeconfigs, logs, the plot) go to `--dir`.

use crate::demo_live::{Recorder, Summary};
use anyhow::{Context as _, anyhow, bail};
use kube::api::Api;
use localcluster::prometheus::{Exporter, Prometheus};
use localcluster::{CnpgSimulator, LocalCluster, Options, SimulatorOptions};
use mall_crds::Mall;
use serde_json::{Value, json};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};
use tokio::signal::unix::{SignalKind, signal};

/// Arguments of `mallctl demo`.
#[derive(clap::Args, Debug, Clone)]
pub struct Args {
    /// Directory for kubeconfigs, logs and the plot (created).
    #[arg(long, default_value = ".mallctl-demo")]
    pub dir: PathBuf,
    /// Time from the Mall being Ready to the promotion's midnight.
    #[arg(long, default_value = "45s", value_parser = crate::dev::parse_duration)]
    pub surge_in: Duration,
    /// How long the promotion's surge lasts.
    #[arg(long, default_value = "45s", value_parser = crate::dev::parse_duration)]
    pub surge_for: Duration,
    /// Normal storefront traffic, requests/s.
    #[arg(long, default_value_t = 20.0)]
    pub baseline: f64,
    /// The promotion's traffic relative to normal.
    #[arg(long, default_value_t = 8.0)]
    pub multiplier: f64,
}

/// Cluster names and their indexes (loopback CIDRs and ports do not meet `mallctl dev`'s 0-7).
pub const CLUSTERS: [(&str, u8); 3] = [("hub", 8), ("eu", 9), ("us", 10)];
/// Namespace and name of the demo's Mall.
pub const NS: &str = "malls";
/// The Mall.
pub const NAME: &str = "double-eleven";
/// What one storefront replica should serve (`targetPerReplica`).
pub const PER_REPLICA: f64 = 10.0;

/// Everything the demo started, stopped in reverse by [`Parts::stop`].
#[derive(Default)]
struct Parts {
    clusters: Vec<LocalCluster>,
    simulators: Vec<CnpgSimulator>,
    operator: Option<std::process::Child>,
    prometheus: Option<Prometheus>,
    load: Option<tokio::task::JoinHandle<()>>,
}

impl Parts {
    async fn stop(&mut self) {
        if let Some(load) = self.load.take() {
            load.abort();
        }
        if let Some(child) = self.operator.take() {
            crate::dev_stack::stop_operator(child).await;
        }
        for sim in self.simulators.drain(..) {
            let _ = sim.stop().await;
        }
        self.prometheus = None;
        if let Err(e) = crate::dev::stop_all(std::mem::take(&mut self.clusters)).await {
            eprintln!("mallctl demo: stopping the clusters: {e}");
        }
        eprintln!("mallctl demo: everything it started is stopped");
    }
}

/// Prints a phase heading.
fn phase(n: u32, text: &str) {
    println!("\n[{n}/6] {text}");
}

/// Runs the demo to completion (blocking; builds its own runtime).
pub fn run(args: Args) -> anyhow::Result<()> {
    crate::dev::build_tools()?;
    ensure_prometheus()?;
    let operator = crate::dev_stack::operator_binary();
    if !operator.exists() {
        return Err(crate::dev_stack::StackError::OperatorMissing(operator).into());
    }
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    runtime.block_on(async {
        let mut sigint = signal(SignalKind::interrupt())?;
        let mut sigterm = signal(SignalKind::terminate())?;
        let mut parts = Parts::default();
        let outcome = tokio::select! {
            r = demo(&args, &operator, &mut parts) => r,
            _ = sigint.recv() => Err(anyhow!("interrupted (SIGINT)")),
            _ = sigterm.recv() => Err(anyhow!("terminated (SIGTERM)")),
        };
        parts.stop().await;
        outcome
    })
}

/// Installs Debian's `prometheus` when it is missing and this runs as root (with apt's
/// progress), else says how.
fn ensure_prometheus() -> anyhow::Result<()> {
    let bin = Prometheus::binary();
    if bin.exists() {
        return Ok(());
    }
    if !is_root() {
        bail!(
            "{} not found: install Debian's prometheus (sudo apt-get install -y prometheus) or set PROMETHEUS_BIN",
            bin.display()
        );
    }
    eprintln!("mallctl demo: installing Debian's prometheus (apt-get)");
    for args in [&["update", "-q"][..], &["install", "-y", "-q", "--no-install-recommends", "prometheus"][..]] {
        let status = std::process::Command::new("apt-get").args(args).status().context("running apt-get")?;
        if !status.success() {
            bail!("apt-get {} failed ({status})", args.join(" "));
        }
    }
    Ok(())
}

/// Whether this process runs as root (`Uid:` in `/proc/self/status`).
fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| s.lines().find(|l| l.starts_with("Uid:")).map(|l| l.split_whitespace().nth(1) == Some("0")))
        .unwrap_or(false)
}

/// The demo's Mall (see the module header); autoscaled from `prometheus`.
pub fn mall(prometheus: &str) -> Value {
    json!({"apiVersion": "mallctl.io/v1alpha1", "kind": "Mall",
    "metadata": {"name": NAME, "namespace": NS},
    "spec": {
        "storefront": {"image": "ghcr.io/example/storefront:2.3.1", "replicas": 2},
        "database": {"shards": 2, "parameters": {"archive_timeout": "60s"},
            "backup": {"objectStore": {"destinationPath": "s3://double-eleven-backups/pg/",
                "credentials": {"secretName": "backup-s3"}}}},
        "cdn": {"domains": ["shop.example.test"], "gateway": {"name": "public"}},
        "regions": [
            {"name": "eu", "role": "primary", "cluster": {"secretName": "cluster-eu-kubeconfig"}},
            {"name": "us", "role": "standby", "cluster": {"secretName": "cluster-us-kubeconfig"}}
        ],
        "failover": {"mode": "automatic", "probeInterval": "2s", "failureThreshold": 3, "cooldown": "10s",
            "requireWitness": false, "dnsTTLSeconds": 5},
        "autoscaling": {"prometheus": {"url": prometheus},
            "storefront": {"min": 2, "max": 24, "targetPerReplica": PER_REPLICA},
            "scaleDown": {"stabilization": "20s"}}
    }})
}

async fn start_clusters(dir: &Path, parts: &mut Parts) -> anyhow::Result<()> {
    let crd_files = tokio::task::spawn_blocking(localcluster::thirdparty::crd_files).await??;
    let starts = CLUSTERS.iter().map(|(name, index)| {
        let crd_files = crd_files.clone();
        async move {
            let opts = Options::new(*name).index(*index).pod_startup(Duration::from_secs(2)).cnpg_webhooks(true);
            let cluster = LocalCluster::start(opts).await.with_context(|| format!("starting cluster {name}"))?;
            crate::dev::install(&cluster, &crd_files).await?;
            Ok::<LocalCluster, anyhow::Error>(cluster)
        }
    });
    let mut failure = None;
    for result in futures::future::join_all(starts).await {
        match result {
            Ok(cluster) => parts.clusters.push(cluster),
            Err(e) => failure = failure.or(Some(e)),
        }
    }
    if let Some(e) = failure {
        return Err(e);
    }
    for cluster in &parts.clusters {
        let path = dir.join(format!("{}.kubeconfig", cluster.name()));
        crate::dev::copy_kubeconfig(&cluster.kubeconfig(), &path)?;
        println!("  {} at {} (kubeconfig {})", cluster.name(), cluster.server(), path.display());
    }
    Ok(())
}

async fn demo(args: &Args, operator: &Path, parts: &mut Parts) -> anyhow::Result<()> {
    let began = Instant::now();
    std::fs::create_dir_all(&args.dir).with_context(|| format!("creating {}", args.dir.display()))?;
    let dir = std::path::absolute(&args.dir)?;
    phase(1, "three local Kubernetes control planes (hub, eu, us), CloudNativePG's webhooks beside each");
    start_clusters(&dir, parts).await?;
    let (hub, eu, us) = (parts.clusters[0].client(), parts.clusters[1].client(), parts.clusters[2].client());
    let store = dir.join("object-store");
    std::fs::create_dir_all(&store)?;
    for (client, name) in [(eu.clone(), "eu"), (us.clone(), "us")] {
        let options = SimulatorOptions {
            object_store_dir: Some(store.clone()),
            clock_scale: 10.0,
            step: Duration::from_millis(500),
            ..SimulatorOptions::default()
        };
        parts.simulators.push(CnpgSimulator::spawn(client, options));
        println!("  CloudNativePG status simulator in {name} (a stand-in: CloudNativePG itself cannot run here)");
    }
    localcluster::gateway::publish(&eu, NS, "public", "127.0.10.1").await.context("the eu Gateway")?;
    localcluster::gateway::publish(&us, NS, "public", "127.0.20.1").await.context("the us Gateway")?;

    phase(2, "a real Prometheus scraping the storefront's request counter, and the operator");
    let exporter = Exporter::start(NS, NAME, args.baseline).await;
    let prometheus = Prometheus::try_start(exporter.address, &dir).context("starting Prometheus")?;
    let url = prometheus.url.clone();
    parts.prometheus = Some(prometheus);
    println!("  Prometheus {url}, storefront at {:.0} req/s", args.baseline);
    let log = dir.join("operator.log");
    let child = crate::dev_stack::spawn_operator(
        operator,
        &parts.clusters[0].kubeconfig(),
        &log,
        &["--autoscale-interval", "2s"],
    )?;
    parts.operator = Some(child);
    println!("  mall-operator against hub (log {})", log.display());

    phase(3, "one Mall: storefront, 2 PostgreSQL shards, edge, regions eu (primary) and us (standby)");
    let file = dir.join("double-eleven.yaml");
    std::fs::write(&file, serde_saphyr::to_string(&mall(&url))?)?;
    let applied = crate::dev_stack::apply(&parts.clusters, &[file.display().to_string()]).await?;
    crate::dev_stack::wait_ready(&parts.clusters[0], &applied, Duration::from_secs(300)).await?;
    let malls: Api<Mall> = Api::namespaced(hub.clone(), NS);
    wait_for(&malls, Duration::from_secs(120), "both regions Healthy", |m| {
        ["eu", "us"].iter().all(|r| region_health(m, r) == "Healthy")
    })
    .await?;
    println!("  regions eu and us Healthy; DNS for shop.example.test -> {:?}", dns_targets(&hub).await);

    phase(4, "Double Eleven: the promotion is announced, then midnight comes");
    let midnight = chrono::Utc::now() + chrono::Duration::from_std(args.surge_in)?;
    let end = midnight + chrono::Duration::from_std(args.surge_for)?;
    let event = crate::ops::edit::NewEvent {
        name: "double-eleven".into(),
        start: midnight.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        end: end.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        warmup: Some("20s".into()),
        multiplier: Some(args.multiplier),
        min_replicas: None,
    };
    let kube = crate::ops::KubeArgs {
        kubeconfig: Some(parts.clusters[0].kubeconfig()),
        context: None,
        namespace: Some(NS.into()),
    };
    let (_, said) = crate::ops::edit::edit(&kube, NAME, |spec| crate::ops::edit::add_event(spec, NAME, &event)).await?;
    println!("  mallctl event add: {said}, x{}, warm-up 20s", args.multiplier);
    let recorder = Recorder {
        exporter,
        baseline: args.baseline,
        multiplier: args.multiplier,
        midnight,
        end,
        capacity_per_pod: PER_REPLICA / 0.7,
    };
    parts.load = Some(recorder.drive_load());
    let summary: Summary = recorder.watch(&eu, until(end, Duration::from_secs(10))).await;

    phase(5, "a regional outage: eu's whole control plane is killed");
    parts.clusters[1].kill();
    let killed = Instant::now();
    let after = wait_for(&malls, Duration::from_secs(120), "us active after eu died", |m| {
        m.status.as_ref().is_some_and(|s| {
            s.active_region.as_deref() == Some("us") && s.last_failover.as_ref().is_some_and(|l| l.completed.is_some())
        })
    })
    .await?;
    let rto = killed.elapsed();
    let status = after.status.clone().unwrap_or_default();
    let record = status.last_failover.clone().unwrap_or_default();
    println!(
        "  us active in epoch {} after {:.1} s ({}; status RTO {} ms); RPO: {}",
        status.failover_epoch,
        rto.as_secs_f64(),
        record.reason,
        record.rto_milliseconds.unwrap_or(-1),
        record.rpo
    );
    let dns = wait_dns(&hub, "127.0.20.1").await;
    let (wanted, ready) = storefront_replicas(&us, "us").await.unwrap_or_default();
    println!("  DNS -> {dns:?}; us storefront: {wanted} wanted, {ready} Ready (the autoscaler now sizes us)");

    phase(6, "summary");
    let plot = dir.join("demo.svg");
    std::fs::write(&plot, summary.svg()).with_context(|| format!("writing {}", plot.display()))?;
    println!("{}", summary.text(args));
    println!(
        "failover:       eu killed -> us active in {:.1} s (status RTO {} ms), epoch {}, DNS -> {}",
        rto.as_secs_f64(),
        record.rto_milliseconds.unwrap_or(-1),
        status.failover_epoch,
        dns.join(",")
    );
    println!("plot:           {} (demand, Ready capacity, replicas over time)", plot.display());
    println!("took:           {:.0} s", began.elapsed().as_secs_f64());
    Ok(())
}

/// `end` plus `extra`, as an `Instant`.
fn until(end: chrono::DateTime<chrono::Utc>, extra: Duration) -> Instant {
    let left = (end - chrono::Utc::now()).to_std().unwrap_or_default();
    Instant::now() + left + extra
}

fn region_health(m: &Mall, region: &str) -> String {
    m.status
        .as_ref()
        .and_then(|s| s.regions.iter().find(|r| r.name == region))
        .map(|r| r.health.clone())
        .unwrap_or_default()
}

async fn wait_for(
    malls: &Api<Mall>,
    timeout: Duration,
    what: &str,
    test: impl Fn(&Mall) -> bool,
) -> anyhow::Result<Mall> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(m) = malls.get_opt(NAME).await.ok().flatten().filter(|m| test(m)) {
            return Ok(m);
        }
        if Instant::now() > deadline {
            bail!("{what}: not after {timeout:?}");
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

async fn dns_targets(hub: &kube::Client) -> Vec<String> {
    mall_controllers::failover::dns::published_targets(hub, NS, NAME).await
}

async fn wait_dns(hub: &kube::Client, address: &str) -> Vec<String> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let targets = dns_targets(hub).await;
        if targets.iter().any(|t| t == address) || Instant::now() > deadline {
            return targets;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// `spec.replicas` and `status.readyReplicas` of `region`'s storefront.
pub async fn storefront_replicas(client: &kube::Client, region: &str) -> Option<(i32, i32)> {
    let api: Api<k8s_openapi::api::apps::v1::Deployment> = Api::namespaced(client.clone(), NS);
    let d = api.get_opt(&format!("{NAME}-{region}-storefront")).await.ok().flatten()?;
    Some((d.spec.and_then(|s| s.replicas).unwrap_or(0), d.status.and_then(|s| s.ready_replicas).unwrap_or(0)))
}
