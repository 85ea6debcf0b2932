//! `mallctl dev`: local control planes for development, with the Mall CRD and the third-party
//! CRDs the operator composes installed.
//!
//! Contract: starts one [`localcluster::LocalCluster`] per name (in order, the i-th with index i
//! so their loopback CIDRs differ), installs the Mall CRD (`mall_crds::Mall::definition()`) and
//! the pinned third-party CRDs ([`localcluster::thirdparty::crd_files`]) into each, copies each
//! admin kubeconfig to `DIR/<name>.kubeconfig` and prints `ready <name> <kubeconfig path>` per
//! cluster, then `dev clusters ready`, on stdout. It then runs until SIGINT or SIGTERM, stops
//! every cluster in order (kwok, scheduler, controller manager, API server, etcd), removes the
//! kubeconfigs it wrote and returns `Ok`. Progress (including a cold build of the tools by
//! `hack/tools.sh`, which takes minutes) goes to stderr. On a start-up failure every cluster
//! already started is stopped before the error is returned.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use localcluster::{LocalCluster, Options};
use tokio::signal::unix::{SignalKind, signal};

/// Default directory for the kubeconfigs, relative to the current directory.
pub const DEFAULT_DIR: &str = ".mallctl-dev";

/// Errors of `mallctl dev`.
#[derive(Debug, thiserror::Error)]
pub enum DevError {
    /// The cluster names are unusable.
    #[error("invalid --clusters: {0}")]
    Names(String),
    /// The tokio runtime could not be built.
    #[error("cannot start the async runtime")]
    Runtime(#[source] std::io::Error),
    /// `hack/tools.sh` could not be run or failed.
    #[error("building the tools with {script} failed")]
    Tools {
        /// The script.
        script: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// The embedded tool definitions could not be written.
    #[error("cannot prepare the pinned tool definitions")]
    Assets(#[source] localcluster::tools::ToolsError),
    /// The third-party CRD files could not be located.
    #[error("cannot locate the third-party CRDs")]
    ThirdParty(#[source] localcluster::thirdparty::ThirdPartyError),
    /// A cluster did not start.
    #[error("cluster {name} did not start")]
    Start {
        /// The cluster.
        name: String,
        /// The cause (boxed: it is large).
        #[source]
        source: Box<localcluster::ClusterError>,
    },
    /// CRDs could not be installed.
    #[error("cannot install CRDs into cluster {name}")]
    Crds {
        /// The cluster.
        name: String,
        /// The cause.
        #[source]
        source: localcluster::crds::CrdError,
    },
    /// A file could not be written.
    #[error("cannot write {path}")]
    Write {
        /// The path.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// Signal handlers could not be installed.
    #[error("cannot install signal handlers")]
    Signal(#[source] std::io::Error),
    /// A cluster did not stop cleanly (it was killed).
    #[error("cluster {name} did not stop cleanly")]
    Stop {
        /// The cluster.
        name: String,
        /// The cause (boxed: it is large).
        #[source]
        source: Box<localcluster::ClusterError>,
    },
    /// A blocking task panicked.
    #[error("a blocking task failed")]
    Join(#[source] tokio::task::JoinError),
    /// The simulator, the operator or an applied Mall failed.
    #[error(transparent)]
    Stack(#[from] crate::dev_stack::StackError),
}

/// What to start.
pub struct DevArgs {
    /// Cluster names, in index order.
    pub clusters: Vec<String>,
    /// Directory for `<name>.kubeconfig`.
    pub dir: PathBuf,
    /// kwok's pod start-up delay.
    pub pod_startup: Duration,
    /// Run the operator against the first cluster.
    pub operator: bool,
    /// Mall manifests to apply to the first cluster once it is ready.
    pub apply: Vec<String>,
    /// Exit (stopping everything) once every applied Mall is Ready, instead of waiting for a signal.
    pub until_ready: bool,
    /// Run CloudNativePG's own admission webhooks beside each cluster.
    pub cnpg_webhooks: bool,
}

/// Parses `2s`, `500ms`, `1m`, `1h` or a plain number of seconds.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let (number, unit) = match text.find(|c: char| !(c.is_ascii_digit() || c == '.')) {
        Some(i) => text.split_at(i),
        None => (text, "s"),
    };
    let value: f64 = number.parse().map_err(|_| format!("{text:?} is not a duration (e.g. 2s, 500ms, 1m, 1h)"))?;
    let seconds = match unit {
        "ms" => value / 1000.0,
        "s" => value,
        "m" => value * 60.0,
        "h" => value * 3600.0,
        _ => return Err(format!("{text:?}: unknown unit {unit:?} (use ms, s, m or h)")),
    };
    Duration::try_from_secs_f64(seconds).map_err(|e| format!("{text:?}: {e}"))
}

/// `1h`, `30m`, `45s`: the largest whole unit.
pub fn format_duration(d: Duration) -> String {
    match d.as_secs() {
        s if s > 0 && s % 3600 == 0 => format!("{}h", s / 3600),
        s if s > 0 && s % 60 == 0 => format!("{}m", s / 60),
        s => format!("{s}s"),
    }
}

/// Checks the names: at least one, each a valid cluster name, no duplicates, at most 32.
fn check_names(names: &[String]) -> Result<(), DevError> {
    if names.is_empty() {
        return Err(DevError::Names("no cluster names".into()));
    }
    if names.len() > 32 {
        return Err(DevError::Names(format!("{} clusters; at most 32 have disjoint CIDRs", names.len())));
    }
    for (i, name) in names.iter().enumerate() {
        if names[..i].contains(name) {
            return Err(DevError::Names(format!("{name:?} appears twice")));
        }
        Options::new(name.as_str()).validate().map_err(|e| DevError::Names(e.to_string()))?;
    }
    Ok(())
}

/// Runs `mallctl dev` to completion (blocking; builds its own runtime).
pub fn run(args: DevArgs) -> Result<(), DevError> {
    check_names(&args.clusters)?;
    build_tools()?;
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().map_err(DevError::Runtime)?;
    runtime.block_on(serve(args))
}

/// Runs `hack/tools.sh` with its progress on our stderr (a cold build takes minutes), unless
/// `MALL_TOOLS_BIN` points at prebuilt tools. localcluster runs the script again (instant when
/// warm) but captures its output.
pub(crate) fn build_tools() -> Result<(), DevError> {
    if std::env::var_os("MALL_TOOLS_BIN").is_some() {
        return Ok(());
    }
    let script = localcluster::tools::script().map_err(DevError::Assets)?;
    let status = std::process::Command::new("bash")
        .arg(&script)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::inherit())
        .status()
        .map_err(|source| DevError::Tools { script: script.clone(), source })?;
    if status.success() {
        Ok(())
    } else {
        Err(DevError::Tools { script, source: std::io::Error::other(format!("exited with {status}")) })
    }
}

async fn serve(args: DevArgs) -> Result<(), DevError> {
    // Install the handlers first: a signal during start-up still stops what was started.
    let mut sigint = signal(SignalKind::interrupt()).map_err(DevError::Signal)?;
    let mut sigterm = signal(SignalKind::terminate()).map_err(DevError::Signal)?;
    std::fs::create_dir_all(&args.dir).map_err(|source| DevError::Write { path: args.dir.clone(), source })?;
    let mut clusters = Vec::new();
    let mut written = Vec::new();
    let started = tokio::select! {
        r = start_all(&args, &mut clusters, &mut written) => r.map(|()| true),
        _ = sigint.recv() => Ok(false),
        _ = sigterm.recv() => Ok(false),
    };
    let mut stack = None;
    let mut outcome: Result<(), DevError> = Ok(());
    if let Ok(true) = started {
        println!("dev clusters ready");
        let run = async {
            let extras = crate::dev_stack::Stack::start(&clusters, args.operator, &args.dir).await?;
            stack = Some(extras);
            if let Some(hub) = clusters.first()
                && !args.apply.is_empty()
            {
                let malls = crate::dev_stack::apply(&clusters, &args.apply).await?;
                if args.operator {
                    crate::dev_stack::wait_ready(hub, &malls, Duration::from_secs(300)).await?;
                }
            }
            Ok::<bool, DevError>(args.until_ready)
        };
        let finished = tokio::select! {
            r = run => r,
            _ = sigint.recv() => { eprintln!("mallctl dev: SIGINT, stopping"); Ok(true) }
            _ = sigterm.recv() => { eprintln!("mallctl dev: SIGTERM, stopping"); Ok(true) }
        };
        match finished {
            Ok(true) => {}
            Ok(false) => {
                eprintln!("mallctl dev: running; Ctrl-C (SIGINT) or SIGTERM stops everything");
                tokio::select! {
                    _ = sigint.recv() => eprintln!("mallctl dev: SIGINT, stopping"),
                    _ = sigterm.recv() => eprintln!("mallctl dev: SIGTERM, stopping"),
                }
            }
            Err(e) => outcome = Err(e),
        }
    }
    if let Some(stack) = stack {
        stack.stop().await;
    }
    let stopped = stop_all(clusters).await;
    for path in written {
        let _ = std::fs::remove_file(path);
    }
    started?;
    outcome?;
    stopped
}

async fn start_all(
    args: &DevArgs,
    clusters: &mut Vec<LocalCluster>,
    written: &mut Vec<PathBuf>,
) -> Result<(), DevError> {
    let crd_files = tokio::task::spawn_blocking(localcluster::thirdparty::crd_files)
        .await
        .map_err(DevError::Join)?
        .map_err(DevError::ThirdParty)?;
    for (index, name) in args.clusters.iter().enumerate() {
        let begin = Instant::now();
        eprintln!("mallctl dev: starting cluster {name} (index {index})");
        let index = u8::try_from(index).map_err(|_| DevError::Names("too many clusters".into()))?;
        let opts =
            Options::new(name.as_str()).index(index).pod_startup(args.pod_startup).cnpg_webhooks(args.cnpg_webhooks);
        let cluster =
            LocalCluster::start(opts).await.map_err(|e| DevError::Start { name: name.clone(), source: Box::new(e) })?;
        eprintln!(
            "mallctl dev: cluster {name} up at {} (pods {}, services {}) in {:.1?}; installing CRDs",
            cluster.server(),
            cluster.pod_cidr(),
            cluster.service_cidr(),
            begin.elapsed()
        );
        clusters.push(cluster);
        let Some(cluster) = clusters.last() else { continue };
        install(cluster, &crd_files).await?;
        let path = args.dir.join(format!("{name}.kubeconfig"));
        copy_kubeconfig(&cluster.kubeconfig(), &path)?;
        written.push(path.clone());
        println!("ready {name} {}", absolute(&path).display());
    }
    Ok(())
}

pub(crate) async fn install(cluster: &LocalCluster, crd_files: &[PathBuf]) -> Result<(), DevError> {
    let name = cluster.name().to_string();
    let client = cluster.client();
    localcluster::install_crd_objects(&client, &[mall_crds::Mall::definition()], Duration::from_secs(60))
        .await
        .map_err(|source| DevError::Crds { name: name.clone(), source })?;
    let installed =
        localcluster::install_crds(&client, crd_files).await.map_err(|source| DevError::Crds { name, source })?;
    eprintln!("mallctl dev: installed malls.{} and {} third-party CRDs", mall_crds::GROUP, installed.len());
    Ok(())
}

/// Copies the admin kubeconfig (it names its certificates by absolute path), owner-only.
pub(crate) fn copy_kubeconfig(from: &Path, to: &Path) -> Result<(), DevError> {
    use std::os::unix::fs::PermissionsExt;
    let err = |source| DevError::Write { path: to.to_path_buf(), source };
    std::fs::copy(from, to).map_err(err)?;
    std::fs::set_permissions(to, std::fs::Permissions::from_mode(0o600)).map_err(err)
}

fn absolute(path: &Path) -> PathBuf {
    std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf())
}

/// Stops every cluster (concurrently, each in the orderly component order); the first failure
/// is returned after all were stopped.
pub(crate) async fn stop_all(clusters: Vec<LocalCluster>) -> Result<(), DevError> {
    let mut tasks = tokio::task::JoinSet::new();
    for mut cluster in clusters {
        tasks.spawn(async move {
            let name = cluster.name().to_string();
            let result = cluster.stop().await.map_err(|e| DevError::Stop { name: name.clone(), source: Box::new(e) });
            eprintln!("mallctl dev: cluster {name} stopped");
            result
        });
    }
    let mut first = Ok(());
    while let Some(joined) = tasks.join_next().await {
        let result = joined.map_err(DevError::Join).and_then(|r| r);
        if first.is_ok() {
            first = result;
        }
    }
    first
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("2s"), Ok(Duration::from_secs(2)));
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("1m"), Ok(Duration::from_secs(60)));
        assert_eq!(parse_duration("3"), Ok(Duration::from_secs(3)));
        assert_eq!(parse_duration("2h"), Ok(Duration::from_secs(7200)));
        assert!(parse_duration("2d").is_err());
        assert!(parse_duration("soon").is_err());
        assert_eq!(
            [3600, 1800, 45, 0].map(|s| format_duration(Duration::from_secs(s))),
            ["1h", "30m", "45s", "0s"].map(String::from)
        );
    }

    #[test]
    fn names_are_checked() {
        let names = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert!(check_names(&names(&["hub", "east", "west"])).is_ok());
        assert!(check_names(&names(&[])).is_err());
        assert!(check_names(&names(&["a", "a"])).is_err());
        assert!(check_names(&names(&["Hub"])).is_err());
    }
}
