//! The cluster a test runs against: a fresh local control plane, or `MALL_E2E_KUBECONFIG`.

use kube::api::{Api, DynamicObject, Patch, PatchParams};
use kube::core::GroupVersionKind;
use localcluster::{LocalCluster, Options};
use serde_json::Value;
use std::future::Future;
use std::path::PathBuf;
use std::time::{Duration, Instant};

/// Reports that `check` did not run on this cluster and why, so it is never counted as passed:
/// `SKIPPED check: why` on stdout and stderr, and appended to the file `MALL_E2E_SKIPPED` names
/// (the kind workflow prints that list at the end of a run).
pub fn skipped(check: &str, why: &str) {
    let line = format!("SKIPPED {check}: {why}");
    println!("{line}");
    eprintln!("{line}");
    if let Some(path) = std::env::var_os("MALL_E2E_SKIPPED") {
        use std::io::Write as _;
        let file = std::fs::OpenOptions::new().create(true).append(true).open(&path);
        if let Err(e) = file.and_then(|mut f| writeln!(f, "{line}")) {
            panic!("cannot record the skipped check in {}: {e}", PathBuf::from(path).display());
        }
    }
}

/// A cluster with the Mall CRD and the composed third-party CRDs installed.
pub struct Env {
    /// Admin client.
    pub client: kube::Client,
    /// Admin kubeconfig.
    pub kubeconfig: PathBuf,
    /// The local control plane, when the test started one (None on `MALL_E2E_KUBECONFIG`).
    pub local: Option<LocalCluster>,
}

impl Env {
    /// Starts a local control plane named `name` (index picks its loopback CIDRs) — or uses
    /// `MALL_E2E_KUBECONFIG` — and installs the CRDs.
    pub async fn start(name: &str, index: u8) -> Env {
        Self::start_with(name, index, true).await
    }

    /// Like [`Env::start`]; with `third_party` false only the Mall CRD is installed (a cluster
    /// without CloudNativePG, Gateway API, external-dns).
    pub async fn start_with(name: &str, index: u8, third_party: bool) -> Env {
        let env = match std::env::var_os("MALL_E2E_KUBECONFIG") {
            Some(path) => {
                let path = PathBuf::from(path);
                let kubeconfig = kube::config::Kubeconfig::read_from(&path).expect("MALL_E2E_KUBECONFIG is readable");
                let config = kube::Config::from_custom_kubeconfig(kubeconfig, &Default::default())
                    .await
                    .expect("MALL_E2E_KUBECONFIG is a valid kubeconfig");
                let client = kube::Client::try_from(config).expect("client from MALL_E2E_KUBECONFIG");
                Env { client, kubeconfig: path, local: None }
            }
            None => {
                let cluster =
                    LocalCluster::start(Options::new(name).index(index).pod_startup(Duration::from_millis(300)))
                        .await
                        .unwrap_or_else(|e| panic!("starting the local control plane: {e}"));
                Env { client: cluster.client(), kubeconfig: cluster.kubeconfig(), local: Some(cluster) }
            }
        };
        let mut crds = vec![mall_crds::Mall::definition()];
        if third_party {
            for path in localcluster::thirdparty::crd_files().expect("third-party CRDs") {
                crds.extend(localcluster::crds::read_crds(&path).expect("CRD file parses"));
            }
        }
        localcluster::install_crd_objects(&env.client, &crds, Duration::from_secs(60)).await.expect("CRDs install");
        env
    }

    /// The local control plane, for a check only it can make (its audit log, its processes);
    /// on `MALL_E2E_KUBECONFIG` the check is reported as skipped by name ([`skipped`]).
    pub fn local_only(&self, check: &str, why: &str) -> Option<&LocalCluster> {
        if self.local.is_none() {
            skipped(check, why);
        }
        self.local.as_ref()
    }

    /// Installs the third-party CRDs (CloudNativePG, its plugin, Gateway API, DNSEndpoint).
    pub async fn install_third_party(&self) {
        let mut crds = Vec::new();
        for path in localcluster::thirdparty::crd_files().expect("third-party CRDs") {
            crds.extend(localcluster::crds::read_crds(&path).expect("CRD file parses"));
        }
        localcluster::install_crd_objects(&self.client, &crds, Duration::from_secs(60)).await.expect("CRDs install");
    }

    /// Creates (or keeps) a namespace with the given labels.
    pub async fn namespace(&self, name: &str, labels: &[(&str, &str)]) {
        let labels: serde_json::Map<String, Value> =
            labels.iter().map(|(k, v)| (k.to_string(), Value::String(v.to_string()))).collect();
        let ns =
            serde_json::json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name, "labels": labels}});
        apply_yaml(&self.client, None, &[ns]).await;
    }
}

/// Server-side applies objects (admin field manager `e2e`), each into its own namespace or
/// `namespace`.
pub async fn apply_yaml(client: &kube::Client, namespace: Option<&str>, objects: &[Value]) {
    for object in objects {
        let (group, version) = match object["apiVersion"].as_str().unwrap_or_default().split_once('/') {
            Some((g, v)) => (g.to_string(), v.to_string()),
            None => (String::new(), object["apiVersion"].as_str().unwrap_or_default().to_string()),
        };
        let kind = object["kind"].as_str().unwrap_or_default();
        let gvk = GroupVersionKind::gvk(&group, &version, kind);
        let (ar, caps) =
            kube::discovery::pinned_kind(client, &gvk).await.unwrap_or_else(|e| panic!("discovering {gvk:?}: {e}"));
        let name = object["metadata"]["name"].as_str().unwrap_or_default();
        let ns = object["metadata"]["namespace"].as_str().or(namespace);
        let api: Api<DynamicObject> = match (caps.scope, ns) {
            (kube::discovery::Scope::Namespaced, Some(ns)) => Api::namespaced_with(client.clone(), ns, &ar),
            _ => Api::all_with(client.clone(), &ar),
        };
        api.patch(name, &PatchParams::apply("e2e").force(), &Patch::Apply(object))
            .await
            .unwrap_or_else(|e| panic!("applying {kind} {name}: {e}"));
    }
}

/// Polls `check` every 200 ms until it returns `Some`, or panics after `timeout` saying `what`.
pub async fn wait_until<T, F, Fut>(what: &str, timeout: Duration, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let start = Instant::now();
    loop {
        if let Some(v) = check().await {
            return v;
        }
        assert!(start.elapsed() < timeout, "timed out after {timeout:?} waiting for {what}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}
