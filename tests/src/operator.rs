//! The operator under test: its identity (the chart's ServiceAccount and RBAC, nothing more)
//! and its process.

use crate::env::{Env, apply_yaml};
use crate::{repo_root, tools_bin};
use k8s_openapi::api::authentication::v1::{TokenRequest, TokenRequestSpec};
use k8s_openapi::api::core::v1::ServiceAccount;
use kube::api::{Api, PostParams};
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

/// The `mall-operator` binary: `MALL_OPERATOR_BIN`, else next to the test binary's target dir
/// (`.ci/run` builds it before the tests).
pub fn operator_bin() -> PathBuf {
    if let Some(p) = std::env::var_os("MALL_OPERATOR_BIN") {
        return PathBuf::from(p);
    }
    let exe = std::env::current_exe().expect("test binary path");
    // target/debug/deps/<test> → target/debug/mall-operator
    let candidate = exe.parent().and_then(Path::parent).map(|d| d.join("mall-operator"));
    match candidate {
        Some(p) if p.exists() => p,
        _ => panic!("mall-operator binary not found: run `cargo build -p mall-operator` or set MALL_OPERATOR_BIN"),
    }
}

/// Renders the chart (release `mall` in `namespace`, Secrets in `secret_namespaces`), applies
/// its ServiceAccount and RBAC objects — not the Deployment: the operator runs as a local
/// process — and returns a token kubeconfig for that ServiceAccount.
pub async fn install_operator_identity(env: &Env, namespace: &str, secret_namespaces: &[&str], dir: &Path) -> PathBuf {
    env.namespace(namespace, &[]).await;
    let secrets = format!("secretNamespaces={{{}}}", secret_namespaces.join(","));
    let out = Command::new(tools_bin().join("helm"))
        .args(["template", "mall", "charts/mall-operator", "--namespace", namespace, "--kube-version", "1.36.3"])
        .args(["--set", &secrets])
        .current_dir(repo_root())
        .output()
        .expect("helm runs");
    assert!(out.status.success(), "helm template: {}", String::from_utf8_lossy(&out.stderr));
    let docs: Vec<Value> = serde_saphyr::from_multiple(&String::from_utf8_lossy(&out.stdout)).expect("chart YAML");
    let identity: Vec<Value> = docs
        .into_iter()
        .filter(|d| {
            matches!(
                d["kind"].as_str(),
                Some("ServiceAccount" | "Role" | "RoleBinding" | "ClusterRole" | "ClusterRoleBinding")
            )
        })
        .collect();
    for ns in secret_namespaces {
        env.namespace(ns, &[]).await;
    }
    apply_yaml(&env.client, Some(namespace), &identity).await;
    let sa_name = identity
        .iter()
        .find(|d| d["kind"] == "ServiceAccount")
        .and_then(|d| d["metadata"]["name"].as_str())
        .expect("the chart creates a ServiceAccount")
        .to_string();
    token_kubeconfig(env, namespace, &sa_name, &dir.join(format!("{sa_name}.kubeconfig"))).await
}

/// A kubeconfig with a 24 h token of ServiceAccount `namespace/name`, for the cluster of `env`.
async fn token_kubeconfig(env: &Env, namespace: &str, name: &str, path: &Path) -> PathBuf {
    let api: Api<ServiceAccount> = Api::namespaced(env.client.clone(), namespace);
    let request = TokenRequest {
        spec: Some(TokenRequestSpec { expiration_seconds: Some(86_400), ..Default::default() }),
        ..Default::default()
    };
    let token = api
        .create_token_request(name, &PostParams::default(), &request)
        .await
        .expect("TokenRequest")
        .status
        .expect("token status")
        .token
        .expect("a token");
    let admin = kube::config::Kubeconfig::read_from(&env.kubeconfig).expect("admin kubeconfig");
    let context_name = admin.current_context.clone().unwrap_or_default();
    let context =
        admin.contexts.iter().find(|c| c.name == context_name).and_then(|c| c.context.clone()).expect("context");
    let cluster =
        admin.clusters.iter().find(|c| c.name == context.cluster).and_then(|c| c.cluster.clone()).expect("cluster");
    let server = cluster.server.clone().unwrap_or_default();
    let ca = cluster
        .certificate_authority_data
        .clone()
        .or_else(|| {
            cluster
                .certificate_authority
                .as_ref()
                .and_then(|p| std::fs::read(p).ok())
                .map(|pem| localcluster::base64::encode(&pem))
        })
        .expect("cluster CA");
    let text = format!(
        "apiVersion: v1\nkind: Config\nclusters:\n- name: e2e\n  cluster:\n    server: {server}\n    certificate-authority-data: {ca}\nusers:\n- name: {name}\n  user:\n    token: {token}\ncontexts:\n- name: e2e\n  context:\n    cluster: e2e\n    user: {name}\n    namespace: {namespace}\ncurrent-context: e2e\n"
    );
    std::fs::write(path, text).expect("writing the operator kubeconfig");
    path.to_path_buf()
}

/// A running operator process (killed on drop).
pub struct OperatorProcess {
    child: Child,
    /// Its log file (JSON lines).
    pub log: PathBuf,
    /// Port of its `/metrics` on 127.0.0.1.
    pub metrics_port: u16,
    /// Port of its `/healthz` and `/readyz` on 127.0.0.1.
    pub health_port: u16,
}

impl OperatorProcess {
    /// Starts the operator with `kubeconfig` and extra flags; health and metrics on free ports.
    pub fn spawn(kubeconfig: &Path, log: &Path, extra: &[&str]) -> OperatorProcess {
        let port = |l: std::net::TcpListener| l.local_addr().map(|a| a.port()).unwrap_or(0);
        let metrics = port(std::net::TcpListener::bind("127.0.0.1:0").expect("free port"));
        let health = port(std::net::TcpListener::bind("127.0.0.1:0").expect("free port"));
        let file = std::fs::File::create(log).expect("operator log file");
        let child = Command::new(operator_bin())
            .env("KUBECONFIG", kubeconfig)
            .env("RUST_LOG", "info,mall_controllers=debug,kube=warn")
            .args([
                "--metrics-address",
                &format!("127.0.0.1:{metrics}"),
                "--health-address",
                &format!("127.0.0.1:{health}"),
            ])
            .args(["--recheck-interval", "2s"])
            .args(extra)
            .stdout(Stdio::null())
            .stderr(file)
            .spawn()
            .expect("mall-operator starts");
        OperatorProcess { child, log: log.to_path_buf(), metrics_port: metrics, health_port: health }
    }

    /// The process id.
    pub fn id(&self) -> u32 {
        self.child.id()
    }

    /// `running`, or how the process ended (exit code or signal), for failure messages.
    pub fn state(&mut self) -> String {
        match self.child.try_wait() {
            Ok(None) => "running".into(),
            Ok(Some(status)) => format!("ended: {status}"),
            Err(e) => format!("unknown ({e})"),
        }
    }

    /// Waits until `/readyz` answers 200 (the API server answered and, with leader election, the
    /// Lease is held), at most `timeout`; panics with the process state and its log otherwise.
    pub fn wait_ready(&mut self, timeout: std::time::Duration) {
        let start = std::time::Instant::now();
        while start.elapsed() < timeout {
            if self.readyz() == Some(200) {
                return;
            }
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
        panic!("the operator is not ready after {timeout:?} ({}); its log:\n{}", self.state(), self.log_text());
    }

    /// Sends SIGKILL and waits.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Sends SIGTERM and waits up to `timeout` for a clean exit; returns its exit code.
    pub fn terminate(&mut self, timeout: std::time::Duration) -> Option<i32> {
        let _ = Command::new("kill").args(["-TERM", &self.child.id().to_string()]).status();
        let start = std::time::Instant::now();
        while start.elapsed() < timeout {
            if let Ok(Some(status)) = self.child.try_wait() {
                return status.code();
            }
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        self.kill();
        None
    }

    /// The whole `/metrics` text, or None when the endpoint does not answer.
    pub fn metrics_text(&self) -> Option<String> {
        http_get(self.metrics_port, "/metrics").map(|(_, text)| text)
    }

    /// The value of a counter or gauge on `/metrics` (summed over label sets), or None when the
    /// endpoint does not answer.
    pub fn metric(&self, name: &str) -> Option<f64> {
        let (_, text) = http_get(self.metrics_port, "/metrics")?;
        let sum = text
            .lines()
            .filter(|l| l.starts_with(name) && (l[name.len()..].starts_with('{') || l[name.len()..].starts_with(' ')))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum();
        Some(sum)
    }

    /// The HTTP status of `/readyz`, or None when the endpoint does not answer.
    pub fn readyz(&self) -> Option<u16> {
        http_get(self.health_port, "/readyz").map(|(status, _)| status)
    }

    /// The log so far.
    pub fn log_text(&self) -> String {
        match std::fs::read(&self.log) {
            Ok(bytes) => String::from_utf8_lossy(&bytes).into_owned(),
            Err(e) => format!("(cannot read {}: {e})", self.log.display()),
        }
    }
}

/// `GET path` on 127.0.0.1:`port` over plain HTTP/1.1: the status code and the whole response.
pub(crate) fn http_get(port: u16, path: &str) -> Option<(u16, String)> {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", port)).ok()?;
    stream.set_read_timeout(Some(std::time::Duration::from_secs(2))).ok()?;
    stream.write_all(format!("GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n").as_bytes()).ok()?;
    let mut text = String::new();
    stream.read_to_string(&mut text).ok()?;
    let status = text.split(' ').nth(1)?.parse().ok()?;
    Some((status, text))
}

impl Drop for OperatorProcess {
    fn drop(&mut self) {
        self.kill();
    }
}
