//! `mallctl`: validate and render Malls offline, print the CRD, simulate the autoscaler, start
//! local clusters, and operate Malls in a cluster (`get`, `status`, `apply`, `scale`, `event`,
//! `failover`, `switchover`, `version`).
//!
//! Contract: exit 0 on success, 1 when input is invalid or a command fails (with one line per
//! problem on stdout for `validate`, a message on stderr otherwise), 2 on usage errors.

mod bench;
mod demo;
mod demo_live;
mod dev;
mod dev_stack;
mod input;
mod ops;
mod plan;
mod plot;
mod render;
mod simulate;
mod validate;

use clap::{Parser, Subcommand, ValueEnum};
use std::process::ExitCode;

#[derive(Parser)]
#[command(name = "mallctl", version, about = "Operate Malls: one resource, a whole e-commerce stack.")]
struct Cli {
    #[command(flatten)]
    kube: ops::KubeArgs,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// List Malls of the namespace (or show one): readiness, active region, storefront and
    /// database counts.
    Get {
        /// A Mall name (all Malls of the namespace when absent).
        name: Option<String>,
        /// Output format.
        #[arg(short = 'o', long = "output", value_enum, default_value_t = ops::Output::Table)]
        output: ops::Output,
    },
    /// Show one Mall: tiers, shards and primaries, regions (health, failed probes, last error),
    /// active region and epoch, the last failover or switchover, a switchover in progress, the
    /// last request's outcome, the last scaling decision, conditions and recent Events.
    Status {
        /// The Mall name.
        name: String,
    },
    /// Validate Mall manifests offline, then server-side apply them (field manager `mallctl`).
    Apply {
        /// Manifest files (YAML or JSON, several documents allowed; `-` reads stdin).
        #[arg(short = 'f', long = "filename", required = true, num_args = 1..)]
        files: Vec<String>,
        /// Wait until every applied Mall is Ready for its new generation, printing progress.
        #[arg(long)]
        wait: bool,
        /// How long --wait waits, e.g. 5m or 90s.
        #[arg(long, value_parser = dev::parse_duration, default_value = "5m")]
        timeout: std::time::Duration,
    },
    /// Show what applying Mall manifests would change: the Mall's spec and every child in every
    /// region's cluster, each judged by a server-side dry run (nothing is written; Secret values
    /// are never shown). Exit 0: no differences, 1: differences, 2: an error.
    Diff {
        /// Manifest files (YAML or JSON, several documents allowed; `-` reads stdin).
        #[arg(short = 'f', long = "filename", required = true, num_args = 1..)]
        files: Vec<String>,
    },
    /// Before a promotion: replay the traffic it should bring (the event's multiplier over the
    /// Mall's recent Prometheus history, or a trace) through the autoscaler with the Mall's live
    /// settings; print peak demand and replicas, replica-hours, SLO-violation seconds and whether
    /// `max` would cap it.
    Plan(plan::Args),
    /// Change the autoscaling bounds of one tier of a live Mall (validated offline first; a
    /// concurrent change is never overwritten). A tier not autoscaled yet needs --min, --max and
    /// --target-per-replica.
    Scale {
        /// The Mall name.
        name: String,
        /// The tier.
        #[arg(long, value_enum)]
        tier: ops::edit::Tier,
        /// Fewest replicas.
        #[arg(long)]
        min: Option<i32>,
        /// Most replicas.
        #[arg(long)]
        max: Option<i32>,
        /// Load one replica serves (the tier's metric per replica).
        #[arg(long)]
        target_per_replica: Option<f64>,
    },
    /// Print this mallctl's version and, unless --client, the cluster's: Kubernetes, the Mall
    /// CRD's served versions, and the operator holding the leader-election Lease.
    Version {
        /// Only this mallctl's version (no cluster needed).
        #[arg(long)]
        client: bool,
        /// Namespace of the operator's leader-election Lease.
        #[arg(long, default_value = "mall-system")]
        lease_namespace: String,
        /// Name of that Lease.
        #[arg(long, default_value = "mall-operator")]
        lease_name: String,
        /// Output format (table: lines; json: one object).
        #[arg(short = 'o', long = "output", value_enum, default_value_t = ops::Output::Table)]
        output: ops::Output,
    },
    /// Print a shell completion script: `source <(mallctl completion bash)`.
    Completion {
        /// The shell.
        shell: clap_complete::Shell,
    },
    /// Announced promotions of a Mall (`spec.autoscaling.events`): add, list, remove.
    Event {
        #[command(subcommand)]
        action: EventAction,
    },
    /// Request a failover: make REGION the active region without the old primary's demotion
    /// token (for a lost or fenced region; writes not yet archived may be lost). Refused
    /// (exit 1, nothing written) when REGION is not a region of the Mall, is already active, or
    /// is not Healthy (unless --force).
    Failover {
        /// The Mall name.
        name: String,
        /// The region to make active.
        #[arg(long, value_name = "REGION")]
        to: String,
        /// Skip the check that REGION is Healthy (the other checks stay).
        #[arg(long)]
        force: bool,
        /// Wait for the operator's answer, printing progress; exit 1 when it refuses or fails.
        #[arg(long)]
        wait: bool,
        /// How long --wait waits, e.g. 5m or 90s.
        #[arg(long, value_parser = dev::parse_duration, default_value = "5m")]
        timeout: std::time::Duration,
    },
    /// Request a switchover: demote the active region, then promote REGION with its demotion
    /// token (no data loss). Refused (exit 1, nothing written) when REGION is not a region of the
    /// Mall, is already active, when REGION or the active region is not Healthy, or while a
    /// switchover is in progress.
    Switchover {
        /// The Mall name.
        name: String,
        /// The region to make active.
        #[arg(long, value_name = "REGION")]
        to: String,
        /// Wait for the operator's answer, printing progress; exit 1 when it refuses or fails.
        #[arg(long)]
        wait: bool,
        /// How long --wait waits, e.g. 5m or 90s.
        #[arg(long, value_parser = dev::parse_duration, default_value = "5m")]
        timeout: std::time::Duration,
    },
    /// Replay a traffic trace against the autoscaler and the hpa/keda/kpa/oracle baselines
    /// (deterministic); `--bench` runs the repository's trace sets (tuned and held-out) at
    /// several pod capacities and prints ratios and the acceptance verdict; `--generate DIR`
    /// writes those trace sets.
    Simulate(simulate::Args),
    /// Print the Mall CustomResourceDefinition (YAML), as installed by the Helm chart.
    Crd,
    /// Check Mall manifests exactly as the API server would; one line per problem:
    /// `FILE: spec.path.to.field: message`. Documents of other kinds in a bundle are skipped
    /// (said so on stderr). Exit 0 when all Malls are valid, 1 otherwise.
    Validate {
        /// Manifest files (YAML or JSON, several documents allowed; `-` reads stdin).
        #[arg(short = 'f', long = "filename", required = true, num_args = 1..)]
        files: Vec<String>,
        /// Output format (json: one object with every document's verdict and errors).
        #[arg(short = 'o', long = "output", value_enum, default_value_t = validate::Output::Text)]
        output: validate::Output,
    },
    /// Print the Kubernetes objects the operator would create for a Mall.
    Render {
        /// Manifest file (`-` reads stdin).
        #[arg(short = 'f', long = "filename", required = true)]
        file: String,
        /// Output format.
        #[arg(short = 'o', long = "output", value_enum, default_value_t = Format::Yaml)]
        output: Format,
    },
    /// The whole product in about three minutes, no cluster needed: three local control planes
    /// (hub, eu, us), the operator, a real Prometheus; a Mall comes up, a Double Eleven surge is
    /// played in real time and autoscaled, then region eu dies and us takes over. Ends with a
    /// summary and a plot; Ctrl-C stops everything.
    Demo(demo::Args),
    /// Start local Kubernetes control planes (one per name) with the Mall CRD and the
    /// third-party CRDs installed; write `DIR/<name>.kubeconfig`; run until SIGINT or SIGTERM.
    Dev {
        /// Cluster names (DNS labels), comma-separated; each gets its own loopback CIDRs.
        #[arg(long, value_delimiter = ',', default_value = "local")]
        clusters: Vec<String>,
        /// Directory for the kubeconfigs (created; add it to .gitignore when inside a repository).
        #[arg(long, default_value = dev::DEFAULT_DIR)]
        dir: std::path::PathBuf,
        /// Time from a pod's scheduling to Ready (kwok), e.g. 2s or 500ms.
        #[arg(long, value_parser = dev::parse_duration, default_value = "2s")]
        pod_startup: std::time::Duration,
        /// Also run the operator (`mall-operator`, beside this binary or MALL_OPERATOR_BIN) against
        /// the first cluster.
        #[arg(long)]
        operator: bool,
        /// Mall manifests to validate and apply to the first cluster (namespaces are created);
        /// with --operator, wait until each is Ready and print its tiers.
        #[arg(long = "apply", short = 'f', num_args = 1..)]
        apply: Vec<String>,
        /// Stop everything and exit 0 once the applied Malls are Ready (a one-shot demo).
        #[arg(long, requires = "operator")]
        until_ready: bool,
        /// Run CloudNativePG v1.30.1's own admission webhooks beside each cluster, so every
        /// CloudNativePG object is judged by CloudNativePG itself (`--cnpg-webhooks=false` skips
        /// them: a few seconds faster to start).
        #[arg(long, default_value_t = true, action = clap::ArgAction::Set)]
        cnpg_webhooks: bool,
    },
}

#[derive(Subcommand)]
enum EventAction {
    /// Add a promotion: capacity is added from START - WARMUP, sized by MULTIPLIER (expected
    /// traffic relative to normal) and/or MIN_REPLICAS, and released gradually after END.
    Add {
        /// The Mall name.
        mall: String,
        /// The event name (a DNS label, shown in scaling reasons).
        event: String,
        /// When traffic starts (RFC 3339, e.g. 2026-11-11T00:00:00+08:00).
        #[arg(long)]
        start: String,
        /// When the promotion ends (RFC 3339).
        #[arg(long)]
        end: String,
        /// How long before START to begin adding capacity (default 10m).
        #[arg(long)]
        warmup: Option<String>,
        /// Expected traffic relative to normal (20 = twenty times).
        #[arg(long)]
        multiplier: Option<f64>,
        /// Storefront replicas Ready at START at the least.
        #[arg(long)]
        min_replicas: Option<i32>,
    },
    /// List the promotions with their state now (upcoming, warming up, running, over).
    List {
        /// The Mall name.
        mall: String,
        /// Output format.
        #[arg(short = 'o', long = "output", value_enum, default_value_t = ops::Output::Table)]
        output: ops::Output,
    },
    /// Remove a promotion.
    Remove {
        /// The Mall name.
        mall: String,
        /// The event name.
        event: String,
    },
}

/// Output formats.
#[derive(Clone, Copy, ValueEnum)]
pub enum Format {
    /// YAML documents separated by `---`.
    Yaml,
    /// A JSON `List`.
    Json,
}

/// Runs a cluster command on a fresh single-threaded runtime.
fn block_on(f: impl std::future::Future<Output = anyhow::Result<()>>) -> anyhow::Result<()> {
    block_on_value(f)
}

/// [`block_on`] for a command with a result.
fn block_on_value<T>(f: impl std::future::Future<Output = anyhow::Result<T>>) -> anyhow::Result<T> {
    tokio::runtime::Builder::new_current_thread().enable_all().build()?.block_on(f)
}

/// Runs an edit of Mall `name` and prints what changed (`mall/NAME: ...`).
fn edited(
    kube: &ops::KubeArgs,
    name: &str,
    change: impl Fn(&mut serde_json::Value) -> anyhow::Result<String>,
) -> anyhow::Result<()> {
    block_on(async {
        let (_, said) = ops::edit::edit(kube, name, change).await?;
        println!("mall/{name}: {said}");
        Ok(())
    })
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let kube = cli.kube;
    let result = match cli.command {
        Command::Get { name, output } => block_on(ops::get::run(&kube, name.as_deref(), output)),
        Command::Status { name } => block_on(ops::status::run(&kube, &name)),
        Command::Apply { files, wait, timeout } => block_on(ops::apply::run(&kube, &files, wait, timeout)),
        Command::Version { client, lease_namespace, lease_name, output } => {
            let lease = ops::version::LeaseRef { namespace: &lease_namespace, name: &lease_name };
            block_on(ops::version::run(&kube, client, lease, output))
        }
        Command::Completion { shell } => {
            clap_complete::generate(
                shell,
                &mut <Cli as clap::CommandFactory>::command(),
                "mallctl",
                &mut std::io::stdout(),
            );
            Ok(())
        }
        Command::Diff { files } => {
            return match block_on_value(ops::diff::run(&kube, &files)) {
                Ok(false) => ExitCode::SUCCESS,
                Ok(true) => ExitCode::from(1),
                Err(e) => {
                    eprintln!("mallctl: {e:#}");
                    ExitCode::from(2)
                }
            };
        }
        Command::Plan(args) => block_on(plan::run(&kube, &args)),
        Command::Demo(args) => demo::run(args),
        Command::Scale { name, tier, min, max, target_per_replica } => {
            let bounds = ops::edit::Bounds { tier, min, max, target_per_replica };
            edited(&kube, &name, |spec| ops::edit::scale(spec, &name, bounds))
        }
        Command::Event { action: EventAction::List { mall, output } } => {
            block_on(ops::edit::list_events(&kube, &mall, output))
        }
        Command::Event { action: EventAction::Remove { mall, event } } => {
            edited(&kube, &mall, |spec| ops::edit::remove_event(spec, &mall, &event))
        }
        Command::Event { action: EventAction::Add { mall, event, start, end, warmup, multiplier, min_replicas } } => {
            let event = ops::edit::NewEvent { name: event, start, end, warmup, multiplier, min_replicas };
            edited(&kube, &mall, |spec| ops::edit::add_event(spec, &mall, &event))
        }
        Command::Failover { name, to, force, wait, timeout } => {
            let action = mall_crds::RequestAction::Failover;
            let request = ops::failover::Request { name: &name, action, to: &to, force, wait, timeout };
            block_on(ops::failover::run(&kube, request))
        }
        Command::Switchover { name, to, wait, timeout } => {
            let action = mall_crds::RequestAction::Switchover;
            let request = ops::failover::Request { name: &name, action, to: &to, force: false, wait, timeout };
            block_on(ops::failover::run(&kube, request))
        }
        Command::Crd => render::print_crd(),
        Command::Validate { files, output } => {
            let verdicts = validate::judge(&files, true);
            match validate::print(&verdicts, output, &mut std::io::stdout().lock(), &mut std::io::stderr().lock()) {
                Ok(true) => Ok(()),
                Ok(false) => return ExitCode::from(1),
                Err(e) => Err(anyhow::anyhow!("writing output: {e}")),
            }
        }
        Command::Render { file, output } => render::run(&file, output),
        Command::Simulate(args) => simulate::run(&args),
        Command::Dev { clusters, dir, pod_startup, operator, apply, until_ready, cnpg_webhooks } => {
            dev::run(dev::DevArgs { clusters, dir, pod_startup, operator, apply, until_ready, cnpg_webhooks })
                .map_err(anyhow::Error::from)
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("mallctl: {e:#}");
            ExitCode::from(1)
        }
    }
}
