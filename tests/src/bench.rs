//! Helpers of the operator scale benchmark (`tests/examples/scale_bench.rs`): a local control
//! plane with chosen options, the operator as a measured process, `/proc` accounting and the
//! audit-log arithmetic.
//!
//! Contract: measuring only. Nothing here changes what the operator does; the operator runs as
//! its own process under the chart's RBAC (see [`crate::install_operator_identity`]) with its
//! production logging (`info`), so its CPU and memory are what a user would see. Timestamps of
//! the audit log are the API server's clock (one clock for every writer), parsed to
//! microseconds.

use crate::env::Env;
use crate::operator::operator_bin;
use k8s_openapi::jiff::Timestamp;
use localcluster::audit::AuditEvent;
use localcluster::{LocalCluster, Options};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// Starts a local control plane with `opts` (optionally with an audit policy that also logs
/// the `get` and `list` requests of `read_user`) and installs the Mall and third-party CRDs.
pub async fn start_env(mut opts: Options, policy_dir: &Path, read_user: Option<&str>) -> Env {
    if let Some(user) = read_user {
        let policy = policy_dir.join("audit-policy.yaml");
        let text = format!(
            "apiVersion: audit.k8s.io/v1\nkind: Policy\nomitStages: [\"RequestReceived\"]\nrules:\n- level: Metadata\n  verbs: [\"create\", \"update\", \"patch\", \"delete\", \"deletecollection\"]\n- level: Metadata\n  users: [\"{user}\"]\n  verbs: [\"get\", \"list\"]\n- level: None\n"
        );
        std::fs::write(&policy, text).expect("writing the audit policy");
        opts = opts.apiserver_arg(format!("--audit-policy-file={}", policy.display()));
    }
    let cluster = LocalCluster::start(opts).await.unwrap_or_else(|e| panic!("starting the local control plane: {e}"));
    let env = Env { client: cluster.client(), kubeconfig: cluster.kubeconfig(), local: Some(cluster) };
    let mut crds = vec![mall_crds::Mall::definition()];
    for path in localcluster::thirdparty::crd_files().expect("third-party CRDs") {
        crds.extend(localcluster::crds::read_crds(&path).expect("CRD file parses"));
    }
    localcluster::install_crd_objects(&env.client, &crds, Duration::from_secs(120)).await.expect("CRDs install");
    env
}

/// The operator process of a benchmark run (SIGKILLed on drop).
pub struct MeasuredOperator {
    child: Child,
    /// Port of its `/metrics` on 127.0.0.1.
    pub metrics_port: u16,
    /// Its log (JSON lines).
    pub log: PathBuf,
}

impl MeasuredOperator {
    /// Starts [`operator_bin`] with `kubeconfig`, production log level and `extra` flags.
    pub fn spawn(kubeconfig: &Path, log: &Path, extra: &[String]) -> MeasuredOperator {
        let port = || {
            std::net::TcpListener::bind("127.0.0.1:0")
                .and_then(|l| l.local_addr())
                .map(|a| a.port())
                .expect("free port")
        };
        let (metrics, health) = (port(), port());
        let file = std::fs::File::create(log).expect("operator log file");
        let child = Command::new(operator_bin())
            .env("KUBECONFIG", kubeconfig)
            .env("RUST_LOG", "info,kube=warn")
            .args([
                "--metrics-address",
                &format!("127.0.0.1:{metrics}"),
                "--health-address",
                &format!("127.0.0.1:{health}"),
            ])
            .args(extra)
            .stdout(Stdio::null())
            .stderr(file)
            .spawn()
            .expect("mall-operator starts");
        MeasuredOperator { child, metrics_port: metrics, log: log.to_path_buf() }
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Sum of a metric's samples on `/metrics` (all label sets), None when it does not answer.
    pub fn metric(&self, name: &str) -> Option<f64> {
        use std::io::{Read, Write};
        let mut stream = std::net::TcpStream::connect(("127.0.0.1", self.metrics_port)).ok()?;
        stream.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
        stream.write_all(b"GET /metrics HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n").ok()?;
        let mut text = String::new();
        stream.read_to_string(&mut text).ok()?;
        Some(
            text.lines()
                .filter(|l| {
                    l.starts_with(name) && (l[name.len()..].starts_with('{') || l[name.len()..].starts_with(' '))
                })
                .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
                .sum(),
        )
    }

    /// SIGTERM, then SIGKILL after `timeout`.
    pub fn terminate(&mut self, timeout: Duration) {
        let _ = Command::new("kill").args(["-TERM", &self.child.id().to_string()]).status();
        let start = std::time::Instant::now();
        while start.elapsed() < timeout {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for MeasuredOperator {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Clock ticks per second of `/proc/<pid>/stat` (`getconf CLK_TCK`, else 100).
pub fn clock_ticks() -> f64 {
    Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8_lossy(&o.stdout).trim().parse::<f64>().ok())
        .unwrap_or(100.0)
}

/// CPU seconds (user + system) of a process so far.
pub fn cpu_seconds(pid: u32) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the parenthesised command: state is field 3, utime 14, stime 15.
    let rest = &stat[stat.rfind(')')? + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let utime: f64 = fields.get(11)?.parse().ok()?;
    let stime: f64 = fields.get(12)?.parse().ok()?;
    Some((utime + stime) / clock_ticks())
}

/// A `/proc/<pid>/status` value in kB (`VmHWM`, `VmRSS`).
pub fn status_kb(pid: u32, field: &str) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with(field) && l[field.len()..].starts_with(':'))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// CPU seconds of every process whose command line mentions `dir` (the control plane's
/// components), by executable name.
pub fn components_cpu(dir: &Path) -> Vec<(String, f64)> {
    let needle = dir.to_string_lossy().into_owned();
    let mut out = Vec::new();
    let Ok(entries) = std::fs::read_dir("/proc") else { return out };
    for entry in entries.flatten() {
        let Some(pid) = entry.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else { continue };
        let Ok(cmdline) = std::fs::read(format!("/proc/{pid}/cmdline")) else { continue };
        let cmdline = String::from_utf8_lossy(&cmdline);
        if !cmdline.contains(&needle) {
            continue;
        }
        let exe = cmdline.split('\0').next().unwrap_or_default();
        let name = Path::new(exe).file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        if let Some(cpu) = cpu_seconds(pid) {
            out.push((name, cpu));
        }
    }
    out.sort_by(|a, b| a.0.cmp(&b.0));
    out
}

/// CPU seconds of this process (the benchmark driver and the CloudNativePG simulator in it).
pub fn own_cpu() -> f64 {
    cpu_seconds(std::process::id()).unwrap_or(0.0)
}

/// The audit event's time, in seconds since the Unix epoch (microsecond precision).
pub fn event_time(e: &AuditEvent) -> Option<f64> {
    let ts: Timestamp = e.timestamp.as_deref()?.parse().ok()?;
    Some(ts.as_microsecond() as f64 / 1e6)
}

/// Now, in seconds since the Unix epoch.
pub fn now_epoch() -> f64 {
    Timestamp::now().as_microsecond() as f64 / 1e6
}

/// Whether the event succeeded (2xx).
pub fn succeeded(e: &AuditEvent) -> bool {
    e.code.is_some_and(|c| (200..300).contains(&c))
}

/// The `q`-quantile (0..=1, nearest rank) of `values` (sorted here); NaN when empty.
pub fn quantile(values: &[f64], q: f64) -> f64 {
    if values.is_empty() {
        return f64::NAN;
    }
    let mut v = values.to_vec();
    v.sort_by(f64::total_cmp);
    let rank = ((q * v.len() as f64).ceil() as usize).clamp(1, v.len());
    v[rank - 1]
}

/// Runs `kubectl --kubeconfig K apply --server-side` on `file`; returns the wall time and
/// whether it succeeded (with stderr's tail).
pub fn kubectl_apply(kubeconfig: &Path, file: &Path) -> (Duration, Result<(), String>) {
    let kubectl = localcluster::tools::tool("kubectl").expect("the pinned kubectl");
    let start = std::time::Instant::now();
    let out = Command::new(kubectl)
        .arg("--kubeconfig")
        .arg(kubeconfig)
        .args(["apply", "--server-side", "--force-conflicts", "--field-manager=floor", "-f"])
        .arg(file)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .output()
        .expect("kubectl runs");
    let took = start.elapsed();
    if out.status.success() {
        (took, Ok(()))
    } else {
        let err = String::from_utf8_lossy(&out.stderr);
        let lines: Vec<&str> = err.lines().collect();
        (took, Err(lines[lines.len().saturating_sub(10)..].join("\n")))
    }
}
