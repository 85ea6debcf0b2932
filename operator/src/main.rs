//! `mall-operator`: reconciles Malls in the cluster of `KUBECONFIG` (or in-cluster config).
//!
//! Contract: thin wiring. Flags and environment → one kube client with its own User-Agent →
//! leader election (only the Lease holder runs controllers; a Lease blocked by a missing
//! namespace or missing rights is one error line naming the fix and a non-ready `/readyz`) →
//! one Mall controller per watched namespace (or one for all) → `/metrics`, `/healthz`,
//! `/readyz` → JSON logs → on SIGTERM or SIGINT, controllers drain, the Lease is released,
//! exit 0. Losing the Lease exits 1.

mod autoscale;
mod failover;
mod http;
mod leader;
mod metrics;

use anyhow::Context as _;
use clap::{Parser, ValueEnum};
use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::apps::v1::{Deployment, StatefulSet};
use kube::ResourceExt as _;
use kube::api::{Api, DynamicObject};
use kube::runtime::controller::{Config as ControllerConfig, Controller};
use kube::runtime::{WatchStreamExt, predicates, reflector, watcher};
use mall_controllers::reconcile::{self, Context, kinds};
use mall_crds::Mall;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;
use tokio::sync::watch;

/// Command-line flags.
#[derive(Parser, Debug)]
#[command(name = "mall-operator", version, about = "Reconciles Mall resources into e-commerce stacks.")]
struct Args {
    /// Namespaces to watch, comma-separated; empty = all namespaces.
    #[arg(long, env = "MALL_NAMESPACES", value_delimiter = ',')]
    namespaces: Vec<String>,
    /// Reconciles running at once (per namespace controller).
    #[arg(long, default_value_t = 8)]
    concurrency: u16,
    /// Address of `/metrics`.
    #[arg(long, default_value = "0.0.0.0:8080")]
    metrics_address: SocketAddr,
    /// Address of `/healthz` and `/readyz`.
    #[arg(long, default_value = "0.0.0.0:8081")]
    health_address: SocketAddr,
    /// Namespace of the leader-election Lease.
    #[arg(long, env = "POD_NAMESPACE", default_value = "mall-system")]
    leader_election_namespace: String,
    /// Name of the leader-election Lease.
    #[arg(long, default_value = "mall-operator")]
    leader_election_id: String,
    /// Identity in the Lease (default: the pod name, else host name and process id).
    #[arg(long, env = "POD_NAME")]
    identity: Option<String>,
    /// Run without leader election (a single replica only).
    #[arg(long)]
    no_leader_election: bool,
    /// How often a Mall waiting on something no watch shows (a dependency to be installed, a
    /// tier still starting) is looked at again; a converged Mall every five times that.
    #[arg(long, default_value = "60s", value_parser = parse_duration)]
    recheck_interval: Duration,
    /// How often each autoscaled Mall's loop ticks (reads metrics, decides, scales); 0 disables
    /// the autoscaler.
    #[arg(long, default_value = "15s", value_parser = parse_duration)]
    autoscale_interval: Duration,
    /// Run the failover controller (regional health probes, failover, switchover) for Malls
    /// with two or more regions and a backup.
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set)]
    failover: bool,
    /// Log format.
    #[arg(long, value_enum, default_value_t = LogFormat::Json)]
    log_format: LogFormat,
}

#[derive(Clone, Copy, Debug, ValueEnum)]
enum LogFormat {
    Json,
    Text,
}

fn parse_duration(text: &str) -> Result<Duration, String> {
    if text.trim() == "0" {
        return Ok(Duration::ZERO);
    }
    mall_crds::common::parse_duration(text)
        .ok_or_else(|| format!("{text:?} is not a duration such as 30s, 5m or 250ms"))
}

fn init_logging(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,kube=warn"));
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr);
    match format {
        LogFormat::Json => builder.json().flatten_event(true).init(),
        LogFormat::Text => builder.init(),
    }
}

async fn client(identity: &str) -> anyhow::Result<kube::Client> {
    let mut config = kube::Config::infer().await.context("loading KUBECONFIG or the in-cluster configuration")?;
    let agent = format!("mall-operator/{} ({identity})", env!("CARGO_PKG_VERSION"));
    config.headers.push((::http::header::USER_AGENT, ::http::HeaderValue::from_str(&agent)?));
    kube::Client::try_from(config).context("building the API client")
}

fn shutdown_signal() -> watch::Receiver<bool> {
    let (tx, rx) = watch::channel(false);
    tokio::spawn(async move {
        let ctrl_c = tokio::signal::ctrl_c();
        let term = async {
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(mut s) => {
                    s.recv().await;
                }
                Err(_) => futures::future::pending::<()>().await,
            }
        };
        tokio::select! { _ = ctrl_c => {}, _ = term => {} }
        tracing::info!("shutdown requested");
        tx.send_replace(true);
    });
    rx
}

async fn wait_for(mut rx: watch::Receiver<bool>) {
    while !*rx.borrow() {
        if rx.changed().await.is_err() {
            return;
        }
    }
}

/// Changes of member clusters' children, as (namespace, Mall name), for the controllers.
type MemberChanges = tokio::sync::broadcast::Sender<(String, String)>;

/// Runs the Mall controller for one namespace (or all) until `shutdown`.
async fn run_controller(
    ctx: Arc<Context>,
    namespace: Option<String>,
    concurrency: u16,
    shutdown: watch::Receiver<bool>,
    member_changes: MemberChanges,
    operator_metrics: Arc<metrics::OperatorMetrics>,
) {
    let client = ctx.client.clone();
    let (malls, deployments, statefulsets): (Api<Mall>, Api<Deployment>, Api<StatefulSet>) = match &namespace {
        Some(ns) => (
            Api::namespaced(client.clone(), ns),
            Api::namespaced(client.clone(), ns),
            Api::namespaced(client.clone(), ns),
        ),
        None => (Api::all(client.clone()), Api::all(client.clone()), Api::all(client.clone())),
    };
    let children = watcher::Config::default()
        .labels(&format!("app.kubernetes.io/managed-by={}", mall_controllers::build::names::MANAGED_BY));
    let (reader, writer) = reflector::store();
    // Only spec changes (generation) of a Mall trigger it: its own status writes do not. A
    // change of a Mall's children in a member cluster triggers it too (through the Mall cache).
    // A deleted Mall's metric series go with it (also one deleted while the watch was down:
    // after each relist only the Malls in the store keep theirs).
    let store = reader.clone();
    let own = reflector(writer, watcher(malls, watcher::Config::default()))
        .backoff(mall_controllers::watch::backoff())
        .inspect_ok(move |event| match event {
            watcher::Event::Delete(mall) => {
                operator_metrics.forget(&format!("{}/{}", mall.namespace().unwrap_or_default(), mall.name_any()));
            }
            watcher::Event::InitDone => operator_metrics.retain(|key| {
                key.split_once('/')
                    .is_some_and(|(ns, name)| store.get(&reflector::ObjectRef::new(name).within(ns)).is_some())
            }),
            _ => {}
        })
        .applied_objects()
        .predicate_filter(predicates::generation, Default::default());
    let scope = namespace.clone();
    let members = futures::stream::unfold(member_changes.subscribe(), |mut rx| async move {
        loop {
            match rx.recv().await {
                Ok(change) => return Some((change, rx)),
                Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => continue,
                Err(tokio::sync::broadcast::error::RecvError::Closed) => return None,
            }
        }
    })
    .filter(move |(ns, _)| futures::future::ready(scope.as_ref().is_none_or(|s| s == ns)))
    .map(|(ns, name)| reflector::ObjectRef::<Mall>::new(&name).within(&ns));
    let trigger = own;
    let mut controller = Controller::for_stream(trigger, reader)
        .owns(deployments, children.clone())
        .owns(statefulsets, children.clone())
        .reconcile_on(members)
        .trigger_backoff(mall_controllers::watch::backoff())
        .with_config(ControllerConfig::default().concurrency(concurrency).debounce(Duration::from_millis(50)));
    let served = ctx.served_locally().await.unwrap_or_default();
    if served.contains("clusters") {
        let cnpg = kinds::find("postgresql.cnpg.io/v1", "Cluster").map(|k| k.api_resource());
        if let Some(ar) = cnpg {
            let api: Api<DynamicObject> = match &namespace {
                Some(ns) => Api::namespaced_with(client.clone(), ns, &ar),
                None => Api::all_with(client.clone(), &ar),
            };
            controller = controller.owns_with(api, ar, children.clone());
        }
    } else {
        tracing::warn!("CloudNativePG is not installed: database status is re-checked on a timer");
    }
    controller
        .graceful_shutdown_on(wait_for(shutdown))
        .run(reconcile::reconcile, reconcile::error_policy, ctx)
        .for_each(|result| async move {
            match result {
                Ok((object, _)) => tracing::debug!(mall = %object, "reconciled"),
                Err(e) => tracing::debug!(error = %reconcile::error_chain(&e), "controller event"),
            }
        })
        .await;
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    init_logging(args.log_format);
    let identity = args.identity.clone().unwrap_or_else(|| {
        let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default();
        format!("{}-{}", host.trim(), std::process::id())
    });
    let client = client(&identity).await?;
    let operator_metrics = Arc::new(metrics::OperatorMetrics::new());
    let probes = Arc::new(http::Probes { ready: Default::default(), metrics: operator_metrics.clone() });
    let _metrics_server =
        http::serve(args.metrics_address, probes.clone()).await.context("binding --metrics-address")?;
    let _health_server = if args.health_address != args.metrics_address {
        Some(http::serve(args.health_address, probes.clone()).await.context("binding --health-address")?)
    } else {
        None
    };
    client.apiserver_version().await.context("reaching the API server")?;
    let shutdown = shutdown_signal();

    let elector = (!args.no_leader_election).then(|| {
        leader::Elector::new(
            client.clone(),
            &args.leader_election_namespace,
            &args.leader_election_id,
            &identity,
            leader::Timing::default(),
        )
    });
    // Ready once the API server answered and, with leader election, the Lease is usable.
    match &elector {
        Some(e) => {
            let (mut usable, probes) = (e.usable(), probes.clone());
            tokio::spawn(async move {
                loop {
                    let ok = *usable.borrow_and_update() == Some(true);
                    probes.ready.store(ok, Ordering::Relaxed);
                    if usable.changed().await.is_err() {
                        return;
                    }
                }
            });
        }
        None => probes.ready.store(true, Ordering::Relaxed),
    }
    let election = elector.map(|e| {
        let mut leading = e.watch();
        let shutdown = shutdown.clone();
        let handle = tokio::spawn(async move { e.run(shutdown).await });
        (handle, async move {
            while !*leading.borrow() {
                if leading.changed().await.is_err() {
                    return false;
                }
            }
            true
        })
    });
    let election_task = match election {
        Some((handle, became_leader)) => {
            tracing::info!(identity = %identity, lease = %args.leader_election_id, "waiting for leadership");
            tokio::select! {
                leads = became_leader => if !leads { return Ok(()) },
                _ = wait_for(shutdown.clone()) => return Ok(()),
            }
            Some(handle)
        }
        None => None,
    };
    operator_metrics.set_leader(true);

    let watched = (!args.namespaces.is_empty()).then(|| args.namespaces.clone());
    let (member_changes, _) = tokio::sync::broadcast::channel::<(String, String)>(1024);
    let sender = member_changes.clone();
    let trigger: mall_controllers::clusters::Trigger = Arc::new(move |namespace: &str, mall: &str| {
        let _ = sender.send((namespace.to_string(), mall.to_string()));
    });
    let ctx = Arc::new(
        Context::new(client, "mall-operator", operator_metrics.clone())
            .with_recheck(args.recheck_interval)
            .with_child_stores(watched)
            .with_member_trigger(trigger),
    );
    let namespaces: Vec<Option<String>> =
        if args.namespaces.is_empty() { vec![None] } else { args.namespaces.iter().cloned().map(Some).collect() };
    tracing::info!(namespaces = ?args.namespaces, concurrency = args.concurrency, "starting controllers");
    if !args.autoscale_interval.is_zero() {
        let (client, interval) = (ctx.client.clone(), args.autoscale_interval);
        tokio::spawn(autoscale::run(client, namespaces.clone(), interval, shutdown.clone()));
    }
    if args.failover {
        tokio::spawn(failover::run(ctx.client.clone(), namespaces.clone(), shutdown.clone()));
    }
    let controllers = futures::future::join_all(namespaces.into_iter().map(|ns| {
        let metrics = operator_metrics.clone();
        run_controller(ctx.clone(), ns, args.concurrency, shutdown.clone(), member_changes.clone(), metrics)
    }));
    match election_task {
        Some(mut handle) => {
            tokio::select! {
                _ = controllers => {
                    // Controllers drained after a shutdown request; let the elector release.
                    if let Ok(Ok(Err(e))) = tokio::time::timeout(Duration::from_secs(5), &mut handle).await {
                        tracing::warn!(error = %e, "leader election ended with an error");
                    }
                }
                result = &mut handle => {
                    if let Ok(Err(e)) = result {
                        tracing::error!(error = %e, "leadership lost: exiting so that only one replica writes");
                        std::process::exit(1);
                    }
                }
            }
        }
        None => controllers.await.into_iter().for_each(drop),
    }
    tracing::info!("stopped");
    Ok(())
}
