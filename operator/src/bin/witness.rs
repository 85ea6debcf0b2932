//! `mall-witness`: the witness agent of one region (see
//! `mall_controllers::failover::witness`). It runs in a region's cluster (the chart's member
//! mode, or any process with that cluster's kubeconfig) and, every `--interval`, checks each
//! watched region's API server and renews Lease `mallctl-witness-<region>` in `--namespace` of
//! its own cluster for every region it reaches. The hub's failover controller reads those
//! Leases when `spec.failover.requireWitness` is set: a region the hub cannot reach but a witness
//! still sees is a partition, not an outage, and is not failed over automatically.

use clap::Parser;
use mall_controllers::failover::witness;
use std::path::PathBuf;
use std::time::Duration;

/// Reports which other regions this region's cluster reaches.
#[derive(Parser, Debug)]
#[command(name = "mall-witness", version)]
struct Args {
    /// This witness's region (the Leases' holder).
    #[arg(long)]
    region: String,
    /// Namespace of the Mall in this cluster: the Leases go there.
    #[arg(long)]
    namespace: String,
    /// A region to watch and a kubeconfig reaching its API server, as `REGION=PATH`
    /// (repeatable).
    #[arg(long = "watch", value_parser = parse_watch, required = true)]
    watch: Vec<(String, PathBuf)>,
    /// Time between two checks (the check's timeout, too).
    #[arg(long, default_value = "2s", value_parser = parse_interval)]
    interval: Duration,
}

fn parse_watch(text: &str) -> Result<(String, PathBuf), String> {
    let (region, path) = text.split_once('=').ok_or_else(|| format!("{text:?} is not REGION=PATH"))?;
    if region.is_empty() || path.is_empty() {
        return Err(format!("{text:?} is not REGION=PATH"));
    }
    Ok((region.to_string(), PathBuf::from(path)))
}

fn parse_interval(text: &str) -> Result<Duration, String> {
    mall_crds::common::parse_duration(text)
        .filter(|d| !d.is_zero())
        .ok_or_else(|| format!("{text:?} is not a duration such as 2s or 500ms"))
}

async fn client_from(path: &PathBuf) -> Result<kube::Client, String> {
    let kubeconfig = kube::config::Kubeconfig::read_from(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let mut config = kube::Config::from_custom_kubeconfig(kubeconfig, &kube::config::KubeConfigOptions::default())
        .await
        .map_err(|e| format!("{}: {e}", path.display()))?;
    config.connect_timeout = Some(Duration::from_secs(2));
    kube::Client::try_from(config).map_err(|e| format!("{}: {e}", path.display()))
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    tracing_subscriber::fmt().json().with_writer(std::io::stderr).init();
    let args = Args::parse();
    let local = match kube::Client::try_default().await {
        Ok(c) => c,
        Err(e) => {
            eprintln!("mall-witness: no client for this cluster: {e}");
            return std::process::ExitCode::from(2);
        }
    };
    let mut watched = Vec::new();
    for (region, path) in &args.watch {
        match client_from(path).await {
            Ok(c) => watched.push((region.clone(), c)),
            Err(e) => {
                eprintln!("mall-witness: --watch {region}: {e}");
                return std::process::ExitCode::from(2);
            }
        }
    }
    tracing::info!(region = %args.region, watched = watched.len(), "witness started");
    loop {
        let started = tokio::time::Instant::now();
        for (region, remote) in &watched {
            match witness::check(remote, args.interval).await {
                Ok(()) => {
                    let lease =
                        witness::lease(&args.namespace, region, &args.region, chrono::Utc::now(), args.interval);
                    if let Err(e) = witness::record(&local, &lease).await {
                        tracing::warn!(region = %region, error = %e, "could not record the witness Lease");
                    }
                }
                Err(e) => tracing::info!(region = %region, error = %e, "region not reached"),
            }
        }
        tokio::select! {
            _ = tokio::time::sleep_until(started + args.interval) => {}
            _ = tokio::signal::ctrl_c() => return std::process::ExitCode::SUCCESS,
        }
    }
}
