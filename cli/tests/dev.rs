//! `mallctl dev` as a user runs it: the clusters come up with the CRDs installed, distinct
//! CIDRs and working kubeconfigs; SIGTERM or SIGINT stops them in order, the exit code is 0, the
//! kubeconfigs are removed and no control-plane process outlives it.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

/// Kills the child (its control planes die with it: parent-death signal) if the test fails.
struct Guard(Child);

impl Drop for Guard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// (pid, command name) of every live process whose parent is `parent`.
fn children(parent: u32) -> Vec<(u32, String)> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir("/proc").expect("read /proc").flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else { continue };
        let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else { continue };
        // `pid (comm) state ppid ...`; comm may hold spaces, so split after the last ')'.
        let Some((head, tail)) = stat.rsplit_once(')') else { continue };
        let comm = head.split_once('(').map(|(_, c)| c.to_string()).unwrap_or_default();
        let mut fields = tail.split_whitespace();
        let state = fields.next().unwrap_or("");
        let ppid: u32 = fields.next().and_then(|p| p.parse().ok()).unwrap_or(0);
        if ppid == parent && state != "Z" {
            out.push((pid, comm));
        }
    }
    out
}

/// Whether `pid` is a live (non-zombie) process running `comm`.
fn alive(pid: u32, comm: &str) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|stat| {
        let state = stat.rsplit_once(')').and_then(|(_, t)| t.split_whitespace().next()).unwrap_or("");
        stat.contains(&format!("({comm})")) && state != "Z"
    })
}

fn kubectl(kubectl: &Path, kubeconfig: &Path, args: &[&str]) -> (bool, String) {
    let out = Command::new(kubectl).arg("--kubeconfig").arg(kubeconfig).args(args).output().expect("run kubectl");
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    (out.status.success(), text)
}

/// Runs `mallctl dev [--clusters ARG]`, checks every cluster in `names`, stops it with
/// `signal`, checks the exit and the processes; returns its stderr.
fn run_dev(clusters: Option<&str>, names: &[&str], signal: Signal) -> String {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path().join("kubeconfigs");
    let stderr_path = tmp.path().join("mallctl-dev.stderr");
    let stderr = std::fs::File::create(&stderr_path).expect("stderr file");
    let mut command = Command::new(env!("CARGO_BIN_EXE_mallctl"));
    command.args(["dev", "--pod-startup", "1s", "--dir"]).arg(&dir);
    if let Some(clusters) = clusters {
        command.args(["--clusters", clusters]);
    }
    let child = command.stdin(Stdio::null()).stdout(Stdio::piped()).stderr(stderr).spawn().expect("spawn mallctl dev");
    let mut guard = Guard(child);
    let stderr_text = || std::fs::read_to_string(&stderr_path).unwrap_or_default();

    let stdout = guard.0.stdout.take().expect("stdout");
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });

    // Bounded: seconds when the tools are built; a cold tools build takes up to ~15 minutes.
    let deadline = Instant::now() + Duration::from_secs(20 * 60);
    let mut lines = Vec::new();
    while !lines.iter().any(|l| l == "dev clusters ready") {
        let left = deadline.saturating_duration_since(Instant::now());
        match rx.recv_timeout(left) {
            Ok(line) => lines.push(line),
            Err(e) => panic!("no `dev clusters ready` ({e}); stdout: {lines:?}\nstderr:\n{}", stderr_text()),
        }
    }
    for name in names {
        let expected = format!("ready {name} {}", dir.join(format!("{name}.kubeconfig")).display());
        assert!(lines.contains(&expected), "missing {expected:?} in {lines:?}");
    }

    let procs = children(guard.0.id());
    let count = |comm: &str| procs.iter().filter(|(_, c)| c == comm).count();
    for comm in ["etcd", "kube-apiserver", "kwok"] {
        assert_eq!(count(comm), names.len(), "expected one {comm} per cluster among the children: {procs:?}");
    }

    let kubectl_bin = localcluster::tools::tool("kubectl").expect("kubectl");
    for name in names {
        let kubeconfig = dir.join(format!("{name}.kubeconfig"));
        let (ok, text) = kubectl(&kubectl_bin, &kubeconfig, &["version"]);
        assert!(ok, "kubectl version on {name}: {text}");
        assert!(text.contains("Server Version: v1.36.3"), "server version on {name}: {text}");
        let (ok, text) =
            kubectl(&kubectl_bin, &kubeconfig, &["get", "crd", "malls.mallctl.io", "clusters.postgresql.cnpg.io"]);
        assert!(ok, "CRDs on {name}: {text}");
        assert!(text.contains("malls.mallctl.io") && text.contains("clusters.postgresql.cnpg.io"), "{text}");
    }

    let pid = i32::try_from(guard.0.id()).expect("pid fits");
    kill(Pid::from_raw(pid), signal).expect("send the signal");
    let deadline = Instant::now() + Duration::from_secs(90);
    let status = loop {
        if let Some(status) = guard.0.try_wait().expect("wait") {
            break status;
        }
        assert!(Instant::now() < deadline, "mallctl dev still running 90 s after {signal}:\n{}", stderr_text());
        std::thread::sleep(Duration::from_millis(100));
    };
    assert_eq!(status.code(), Some(0), "exit status after {signal}; stderr:\n{}", stderr_text());
    let survivors: Vec<_> = procs.iter().filter(|(p, c)| alive(*p, c)).collect();
    assert!(survivors.is_empty(), "processes outlived mallctl dev: {survivors:?}");
    let text = stderr_text();
    for name in names {
        assert!(text.contains(&format!("cluster {name} stopped")), "no orderly stop of {name}:\n{text}");
        assert!(!dir.join(format!("{name}.kubeconfig")).exists(), "stale kubeconfig of {name} left behind");
    }
    text
}

#[test]
fn dev_starts_two_clusters_and_stops_on_sigterm() {
    let stderr = run_dev(Some("a,b"), &["a", "b"], Signal::SIGTERM);
    // Distinct indices, so distinct loopback CIDRs.
    assert!(stderr.contains("pods 127.64.0.0/16, services 127.96.0.0/16"), "{stderr}");
    assert!(stderr.contains("pods 127.65.0.0/16, services 127.97.0.0/16"), "{stderr}");
}

#[test]
fn dev_defaults_to_one_cluster_named_local_and_stops_on_sigint() {
    run_dev(None, &["local"], Signal::SIGINT);
}

/// `path` as a hard link (same filesystem) or a copy.
fn install(from: &Path, to: &Path) {
    if std::fs::hard_link(from, to).is_err() {
        std::fs::copy(from, to).unwrap_or_else(|e| panic!("copy {} to {}: {e}", from.display(), to.display()));
    }
}

/// What `cargo install --path cli` and `--path operator` give: the two binaries in a directory of
/// their own, run from elsewhere with nothing of the checkout (no MALL_REPO_ROOT, no prebuilt
/// tools): the pinned tool definitions and the chart come out of the binary, the operator is
/// found beside mallctl, and a Mall spanning two member clusters becomes Ready.
#[test]
fn an_installed_mallctl_runs_outside_the_checkout() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let bin = tmp.path().join("bin");
    std::fs::create_dir_all(&bin).unwrap();
    let built = Path::new(env!("CARGO_BIN_EXE_mallctl"));
    install(built, &bin.join("mallctl"));
    install(&built.with_file_name("mall-operator"), &bin.join("mall-operator"));
    let example = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/multi-cluster.yaml");
    std::fs::copy(&example, tmp.path().join("shop.yaml")).expect("copy the example");
    let assets = tmp.path().join("assets");

    let out = Command::new(bin.join("mallctl"))
        .args(["dev", "--clusters", "hub,eu,us", "--operator", "-f", "shop.yaml", "--until-ready"])
        .args(["--pod-startup", "300ms", "--dir", "kubeconfigs"])
        .current_dir(tmp.path())
        .env("MALL_ASSETS_CACHE", &assets)
        .env_remove("MALL_TOOLS_BIN")
        .env_remove("MALL_REPO_ROOT")
        .env_remove("MALL_OPERATOR_BIN")
        .stdin(Stdio::null())
        .output()
        .expect("run the installed mallctl");
    let (stdout, stderr) = (String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert_eq!(out.status.code(), Some(0), "stdout:\n{stdout}\nstderr:\n{stderr}");
    // The tools were located by the embedded hack/tools.sh, written under MALL_ASSETS_CACHE.
    let copies: Vec<_> = std::fs::read_dir(&assets).expect("assets written").flatten().map(|e| e.path()).collect();
    assert_eq!(copies.len(), 1, "{copies:?}");
    for file in [".complete", "hack/tools.sh", "hack/tools/kubernetes/go.sum", "charts/mall-operator/Chart.yaml"] {
        assert!(copies[0].join(file).is_file(), "{file} missing in {}", copies[0].display());
    }
    assert!(stderr.contains("[tools] all tools ready"), "{stderr}");
    assert!(stderr.contains("operator running against hub (log: kubeconfigs/operator.log)"), "{stderr}");
    assert!(stdout.contains("mall malls/global-shop Ready in "), "{stdout}");
}
