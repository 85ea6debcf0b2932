//! Benchmark of the local control plane: tool build time (warm; cold with `--cold`), start-up
//! time of one cluster to Ready (against the 10 s target), its resident memory, the
//! third-party CRD install, an orderly stop, and three clusters started at once.
//!
//! Contract: prints one `name: value` line per figure on stdout (progress on stderr) and
//! exits 1 on any failure. `--cold` builds the tools into a fresh empty `MALL_TOOLS_CACHE` with
//! an empty `GOCACHE` (10-14 minutes on two cores; both are removed afterwards); `--runs N` (default
//! 3) sets how many single-cluster starts are timed.
//!
//! ```sh
//! cargo run --release -p localcluster --example cluster_bench [-- --cold] [-- --runs 5]
//! ```

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use localcluster::{LocalCluster, Options};

/// Warm start-to-Ready target.
const TARGET: Duration = Duration::from_secs(10);

/// Errors of the benchmark.
#[derive(Debug, thiserror::Error)]
enum BenchError {
    #[error("usage: cluster_bench [--cold] [--runs N]")]
    Usage,
    #[error("cannot run hack/tools.sh")]
    Run(#[source] std::io::Error),
    #[error("hack/tools.sh failed ({0})")]
    Tools(std::process::ExitStatus),
    #[error("cannot create a temporary directory")]
    Temp(#[source] std::io::Error),
    #[error("cluster start failed")]
    Start(#[source] localcluster::ClusterError),
    #[error("cluster stop failed")]
    Stop(#[source] localcluster::ClusterError),
    #[error("third-party CRDs")]
    ThirdParty(#[source] localcluster::thirdparty::ThirdPartyError),
    #[error("CRD install failed")]
    Crds(#[source] localcluster::crds::CrdError),
    #[error("a blocking task failed")]
    Join(#[source] tokio::task::JoinError),
    #[error("cannot start the runtime")]
    Runtime(#[source] std::io::Error),
}

struct Args {
    cold: bool,
    runs: usize,
}

fn parse_args() -> Result<Args, BenchError> {
    let mut args = Args { cold: false, runs: 3 };
    let mut it = std::env::args().skip(1);
    while let Some(arg) = it.next() {
        match arg.as_str() {
            "--cold" => args.cold = true,
            "--runs" => {
                args.runs = it.next().and_then(|n| n.parse().ok()).filter(|n| *n > 0).ok_or(BenchError::Usage)?
            }
            _ => return Err(BenchError::Usage),
        }
    }
    Ok(args)
}

/// Runs `hack/tools.sh` (progress on stderr), optionally into another cache; returns its time.
fn time_tools(cache: Option<&Path>) -> Result<Duration, BenchError> {
    let mut cmd = Command::new("bash");
    let script = localcluster::tools::script().map_err(|e| BenchError::Run(std::io::Error::other(e.to_string())))?;
    cmd.arg(script).stdout(Stdio::null()).stderr(Stdio::inherit());
    if let Some(cache) = cache {
        // An empty Go build cache too, or the "cold" build would reuse compiled packages.
        cmd.env("MALL_TOOLS_CACHE", cache.join("tools")).env("GOCACHE", cache.join("gocache"));
    }
    let started = Instant::now();
    let status = cmd.status().map_err(BenchError::Run)?;
    if !status.success() {
        return Err(BenchError::Tools(status));
    }
    Ok(started.elapsed())
}

/// Sum of VmRSS (bytes) and count of the processes whose command line mentions `dir`.
fn rss_of(dir: &Path) -> (u64, usize) {
    let needle = dir.to_string_lossy().into_owned();
    let mut total = 0;
    let mut count = 0;
    for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        if !entry.file_name().to_string_lossy().bytes().all(|b| b.is_ascii_digit()) {
            continue;
        }
        let Ok(cmdline) = std::fs::read(entry.path().join("cmdline")) else { continue };
        if !String::from_utf8_lossy(&cmdline).contains(&needle) {
            continue;
        }
        let Ok(status) = std::fs::read_to_string(entry.path().join("status")) else { continue };
        let kb = status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok());
        if let Some(kb) = kb {
            total += kb * 1024;
            count += 1;
        }
    }
    (total, count)
}

fn mb(bytes: u64) -> String {
    format!("{:.0} MB", bytes as f64 / 1e6)
}

fn secs(d: Duration) -> String {
    format!("{:.2} s", d.as_secs_f64())
}

async fn start(name: &str, index: u8) -> Result<(LocalCluster, Duration), BenchError> {
    let started = Instant::now();
    let cluster = LocalCluster::start(Options::new(name).index(index)).await.map_err(BenchError::Start)?;
    Ok((cluster, started.elapsed()))
}

async fn bench(args: &Args) -> Result<(), BenchError> {
    // One single-cluster start first also warms the page cache and the Go module cache lookups.
    let mut times = Vec::new();
    for run in 0..args.runs {
        let (mut cluster, took) = start("bench", 0).await?;
        eprintln!("run {}: ready in {}", run + 1, secs(took));
        times.push(took);
        if run + 1 == args.runs {
            let (rss_ready, procs) = rss_of(cluster.dir());
            tokio::time::sleep(Duration::from_secs(10)).await;
            let (rss_settled, _) = rss_of(cluster.dir());
            let files = tokio::task::spawn_blocking(localcluster::thirdparty::crd_files)
                .await
                .map_err(BenchError::Join)?
                .map_err(BenchError::ThirdParty)?;
            let begin = Instant::now();
            let names = localcluster::install_crds(&cluster.client(), &files).await.map_err(BenchError::Crds)?;
            let crd_time = begin.elapsed();
            let (rss_crds, _) = rss_of(cluster.dir());
            println!("cluster RSS at Ready ({procs} processes): {}", mb(rss_ready));
            println!("cluster RSS 10 s after Ready: {}", mb(rss_settled));
            println!("third-party CRD install ({} CRDs, to Established): {}", names.len(), secs(crd_time));
            println!("cluster RSS with the third-party CRDs: {}", mb(rss_crds));
            let begin = Instant::now();
            cluster.stop().await.map_err(BenchError::Stop)?;
            println!("orderly stop: {}", secs(begin.elapsed()));
        } else {
            cluster.stop().await.map_err(BenchError::Stop)?;
        }
    }
    times.sort();
    let median = times[times.len() / 2];
    let (min, max) = (times[0], times[times.len() - 1]);
    println!(
        "warm start to Ready, {} runs: median {}, min {}, max {} ({:.0}% of the {} s target)",
        times.len(),
        secs(median),
        secs(min),
        secs(max),
        100.0 * median.as_secs_f64() / TARGET.as_secs_f64(),
        TARGET.as_secs()
    );

    let begin = Instant::now();
    let (a, b, c) = tokio::join!(start("hub", 0), start("east", 1), start("west", 2));
    let wall = begin.elapsed();
    let mut clusters = Vec::new();
    for result in [a, b, c] {
        let (cluster, took) = result?;
        eprintln!("{} ready in {}", cluster.name(), secs(took));
        clusters.push(cluster);
    }
    let rss: u64 = clusters.iter().map(|c| rss_of(c.dir()).0).sum();
    println!(
        "three clusters started at once, all Ready: {} ({:.0}% of the {} s target); RSS {}",
        secs(wall),
        100.0 * wall.as_secs_f64() / TARGET.as_secs_f64(),
        TARGET.as_secs(),
        mb(rss)
    );
    for cluster in &mut clusters {
        cluster.stop().await.map_err(BenchError::Stop)?;
    }
    Ok(())
}

fn run() -> Result<(), BenchError> {
    let args = parse_args()?;
    if std::env::var_os("MALL_TOOLS_BIN").is_some() {
        println!("tools: MALL_TOOLS_BIN is set; hack/tools.sh not timed");
    } else {
        if args.cold {
            let cache = tempfile::tempdir().map_err(BenchError::Temp)?;
            eprintln!("cold build into {} (10-14 minutes on two cores)", cache.path().display());
            let cold = time_tools(Some(cache.path()))?;
            println!(
                "cold tool build (empty MALL_TOOLS_CACHE and GOCACHE, modules already downloaded): {}",
                secs(cold)
            );
        }
        let warm = time_tools(None)?;
        println!("warm hack/tools.sh: {}", secs(warm));
        if !args.cold {
            println!("cold tool build: not measured (run with --cold: about 10-14 minutes)");
        }
    }
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().map_err(BenchError::Runtime)?;
    runtime.block_on(bench(&args))
}

fn main() -> std::process::ExitCode {
    match run() {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            let mut text = e.to_string();
            let mut source = std::error::Error::source(&e);
            while let Some(s) = source {
                text.push_str(&format!(": {s}"));
                source = s.source();
            }
            eprintln!("cluster_bench: {text}");
            std::process::ExitCode::from(1)
        }
    }
}
