//! Setting up a cluster directory and launching the components in order.
//!
//! Contract: [`start`] prepares a fresh cluster directory (PKI, kubeconfigs, audit policy, kwok
//! stages, free ports) and calls [`launch`], which starts etcd and kube-apiserver, waits for
//! `/readyz`, then starts kube-controller-manager, kube-scheduler and kwok, creates the
//! StorageClass and Nodes on first start, and waits for the `default` ServiceAccount, every
//! node Ready and every node lease held by the running kwok. On a restart the node leases of
//! the previous kwok (whose identity is random per process) are deleted before kwok starts, or
//! the new kwok would leave them to expire (200 s) and keep new pods Pending.

use std::future::Future;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{Node, ServiceAccount};
use k8s_openapi::api::storage::v1::StorageClass;
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams};

use crate::error::ClusterError;
use crate::kubeconfig::{self, Credentials};
use crate::kwok;
use crate::options::{Options, merge_flags};
use crate::pki::Pki;
use crate::plane::{Plane, Ports};
use crate::process::{Proc, free_port, tail};

const AUDIT_POLICY: &str = r#"apiVersion: audit.k8s.io/v1
kind: Policy
omitStages: ["RequestReceived"]
rules:
- level: Metadata
  verbs: ["create", "update", "patch", "delete", "deletecollection"]
- level: None
"#;

/// In a temporary cluster directory: the pid of the process that owns it.
pub(crate) const OWNER_FILE: &str = "owner.pid";

/// Removes temporary cluster directories left by processes that died without running drop
/// (SIGKILL, SIGTERM, Ctrl-C; their children died with them). A directory is removed only when
/// its owner file names a pid that no longer exists; kept directories have no owner file.
fn sweep_stale_dirs() {
    let Ok(entries) = std::fs::read_dir(std::env::temp_dir()) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        let is_ours = path.file_name().and_then(|n| n.to_str()).is_some_and(|n| n.starts_with("localcluster-"));
        if !is_ours {
            continue;
        }
        let Ok(pid) = std::fs::read_to_string(path.join(OWNER_FILE)) else {
            continue;
        };
        let alive = Path::new("/proc").join(pid.trim()).exists();
        if !alive && pid.trim().parse::<u32>().is_ok() {
            tracing::info!(dir = %path.display(), "removing a stale local cluster directory");
            let _ = std::fs::remove_dir_all(&path);
        }
    }
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> ClusterError + '_ {
    move |source| ClusterError::Io { path: path.to_path_buf(), source }
}

fn mkdir(path: &Path) -> Result<(), ClusterError> {
    std::fs::create_dir_all(path).map_err(io_err(path))
}

/// Prepares the cluster directory and launches the cluster.
pub(crate) async fn start(opts: Options) -> Result<(Plane, Option<tempfile::TempDir>), ClusterError> {
    opts.validate().map_err(ClusterError::Options)?;
    let started = Instant::now();
    let (dir, temp) = match &opts.dir {
        Some(dir) => {
            mkdir(dir)?;
            (dir.clone(), None)
        }
        None => {
            sweep_stale_dirs();
            let temp = tempfile::Builder::new()
                .prefix(&format!("localcluster-{}-", opts.name))
                .tempdir()
                .map_err(io_err(Path::new("/tmp")))?;
            let owner = temp.path().join(OWNER_FILE);
            std::fs::write(&owner, std::process::id().to_string()).map_err(io_err(&owner))?;
            (temp.path().to_path_buf(), Some(temp))
        }
    };
    let setup_dir = dir.clone();
    let pod_startup = opts.pod_startup;
    let (tools, stage_dir, pki) = tokio::task::spawn_blocking(move || {
        let tools = crate::tools::tools_dir().map_err(ClusterError::Tools)?;
        let stage_dir = crate::thirdparty::kwok_stage_dir().map_err(ClusterError::ThirdParty)?;
        let pki = Pki::create(&setup_dir).map_err(ClusterError::Pki)?;
        for sub in ["logs", "audit", "kwok", "etcd-data", "kubeconfigs"] {
            mkdir(&setup_dir.join(sub))?;
        }
        // etcd warns about (and may one day refuse) a data directory that is not 0700.
        let data = setup_dir.join("etcd-data");
        std::fs::set_permissions(&data, std::os::unix::fs::PermissionsExt::from_mode(0o700)).map_err(io_err(&data))?;
        let policy = setup_dir.join("audit/policy.yaml");
        std::fs::write(&policy, AUDIT_POLICY).map_err(io_err(&policy))?;
        kwok::write_stages(&stage_dir, pod_startup, &setup_dir.join("kwok/stages.yaml")).map_err(ClusterError::Kwok)?;
        Ok::<_, ClusterError>((tools, stage_dir, pki))
    })
    .await
    .map_err(ClusterError::Join)??;

    let port = || free_port().map_err(io_err(Path::new("127.0.0.1:0")));
    let ports = Ports { etcd_client: port()?, etcd_peer: port()?, apiserver: port()? };
    let server = format!("https://127.0.0.1:{}", ports.apiserver);
    // Distinct identities so the audit log tells components apart; all in system:masters.
    let identities = [
        ("kubeconfig", "admin", "localcluster-admin"),
        ("kubeconfigs/kube-controller-manager.kubeconfig", "kube-controller-manager", "system:kube-controller-manager"),
        ("kubeconfigs/kube-scheduler.kubeconfig", "kube-scheduler", "system:kube-scheduler"),
        ("kubeconfigs/kwok.kubeconfig", "kwok", "system:kwok"),
    ];
    for (file, cert_name, user) in identities {
        let cert = pki.issue_client(cert_name, user, &["system:masters"]).map_err(ClusterError::Pki)?;
        kubeconfig::write_kubeconfig(
            &dir.join(file),
            &opts.name,
            &server,
            &pki.ca_path(),
            &Credentials::Certificate { cert: cert.cert_path, key: cert.key_path },
            "default",
        )
        .map_err(ClusterError::Kubeconfig)?;
    }
    let client = kubeconfig::client_from_kubeconfig(&dir.join("kubeconfig"), &format!("localcluster/{}", opts.name))
        .await
        .map_err(ClusterError::Kubeconfig)?;
    let mut cluster =
        Plane { opts, dir, tools, kwok_stage_dir: stage_dir, pki, ports, procs: Vec::new(), pgid: None, client };
    launch(&mut cluster, false).await?;
    tracing::info!(
        cluster = %cluster.opts.name,
        elapsed = ?started.elapsed(),
        server = %cluster.server(),
        "local cluster ready"
    );
    Ok((cluster, temp))
}

fn etcd_args(c: &Plane) -> Vec<String> {
    let p = c.ports;
    let client = format!("http://127.0.0.1:{}", p.etcd_client);
    let peer = format!("http://127.0.0.1:{}", p.etcd_peer);
    vec![
        "--name=node0".into(),
        format!("--data-dir={}", c.dir.join("etcd-data").display()),
        format!("--listen-client-urls={client}"),
        format!("--advertise-client-urls={client}"),
        format!("--listen-peer-urls={peer}"),
        format!("--initial-advertise-peer-urls={peer}"),
        format!("--initial-cluster=node0={peer}"),
        "--unsafe-no-fsync=true".into(),
        "--log-level=warn".into(),
    ]
}

fn apiserver_args(c: &Plane) -> Vec<String> {
    let pki = c.pki.dir();
    let path = |p: PathBuf| p.display().to_string();
    let defaults = vec![
        format!("--etcd-servers=http://127.0.0.1:{}", c.ports.etcd_client),
        "--bind-address=127.0.0.1".into(),
        "--advertise-address=127.0.0.1".into(),
        format!("--secure-port={}", c.ports.apiserver),
        format!("--tls-cert-file={}", path(pki.join("apiserver.crt"))),
        format!("--tls-private-key-file={}", path(pki.join("apiserver.key"))),
        format!("--client-ca-file={}", path(c.pki.ca_path())),
        "--service-account-issuer=https://kubernetes.default.svc.cluster.local".into(),
        format!("--service-account-key-file={}", path(c.pki.sa_pub_path())),
        format!("--service-account-signing-key-file={}", path(c.pki.sa_key_path())),
        "--authorization-mode=Node,RBAC".into(),
        "--allow-privileged=true".into(),
        "--endpoint-reconciler-type=none".into(),
        format!("--service-cluster-ip-range={}", c.opts.service_cidr()),
        format!("--audit-policy-file={}", path(c.dir.join("audit/policy.yaml"))),
        format!("--audit-log-path={}", path(c.audit_log())),
        "--profiling=false".into(),
    ];
    merge_flags(defaults, &c.opts.apiserver_args)
}

fn kcm_args(c: &Plane) -> Vec<String> {
    let defaults = vec![
        format!("--kubeconfig={}", c.dir.join("kubeconfigs/kube-controller-manager.kubeconfig").display()),
        "--leader-elect=false".into(),
        "--bind-address=127.0.0.1".into(),
        "--secure-port=0".into(),
        format!("--service-account-private-key-file={}", c.pki.sa_key_path().display()),
        format!("--root-ca-file={}", c.pki.ca_path().display()),
        "--use-service-account-credentials=false".into(),
        "--node-monitor-period=25s".into(),
        "--node-monitor-grace-period=3m20s".into(),
        "--kube-api-qps=200".into(),
        "--kube-api-burst=400".into(),
        format!("--cluster-name={}", c.opts.name),
        "--profiling=false".into(),
    ];
    merge_flags(defaults, &c.opts.kcm_args)
}

fn scheduler_args(c: &Plane) -> Vec<String> {
    vec![
        format!("--kubeconfig={}", c.dir.join("kubeconfigs/kube-scheduler.kubeconfig").display()),
        "--leader-elect=false".into(),
        "--bind-address=127.0.0.1".into(),
        "--secure-port=0".into(),
        "--profiling=false".into(),
    ]
}

fn kwok_args(c: &Plane) -> Vec<String> {
    vec![
        format!("--kubeconfig={}", c.dir.join("kubeconfigs/kwok.kubeconfig").display()),
        format!("--config={}", c.dir.join("kwok/stages.yaml").display()),
        "--manage-all-nodes=true".into(),
        format!("--cidr={}", c.opts.pod_cidr()),
        "--node-ip=127.0.0.1".into(),
        "--node-lease-duration-seconds=200".into(),
    ]
}

fn spawn(c: &mut Plane, component: &str, args: Vec<String>) -> Result<(), ClusterError> {
    let proc = Proc::spawn(component, &c.tools.join(component), &args, &c.log_path(component), c.pgid)
        .map_err(ClusterError::Process)?;
    if c.pgid.is_none() {
        c.pgid = proc.pid();
    }
    c.procs.push(proc);
    Ok(())
}

/// Fails when a component has exited.
fn check_exited(c: &mut Plane) -> Result<(), ClusterError> {
    for p in c.procs.iter_mut() {
        if let Some(status) = p.try_exit() {
            return Err(ClusterError::Exited {
                component: p.component().to_string(),
                status: status.to_string(),
                log: p.log().to_path_buf(),
                log_tail: p.log_tail(30),
            });
        }
    }
    Ok(())
}

/// Polls `check` every 50 ms until it returns `true`, a component exits, or `deadline`.
async fn wait_for<F, Fut>(
    c: &mut Plane,
    what: &str,
    component: &str,
    deadline: Instant,
    mut check: F,
) -> Result<(), ClusterError>
where
    F: FnMut(kube::Client) -> Fut,
    Fut: Future<Output = Result<bool, kube::Error>>,
{
    loop {
        check_exited(c)?;
        match check(c.client.clone()).await {
            Ok(true) => return Ok(()),
            Ok(false) => {}
            Err(e) => tracing::trace!(what, error = %e, "not ready yet"),
        }
        if Instant::now() >= deadline {
            let log = c.log_path(component);
            return Err(ClusterError::Timeout {
                what: what.to_string(),
                component: component.to_string(),
                timeout: c.opts.ready_timeout,
                log_tail: tail(&log, 30),
                log,
            });
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn api_err(what: &str) -> impl FnOnce(kube::Error) -> ClusterError + '_ {
    move |source| ClusterError::Api { what: what.to_string(), source }
}

/// Starts the components and waits for readiness (see the module documentation).
pub(crate) async fn launch(c: &mut Plane, restart: bool) -> Result<(), ClusterError> {
    let deadline = Instant::now() + c.opts.ready_timeout;
    spawn(c, "etcd", etcd_args(c))?;
    spawn(c, "kube-apiserver", apiserver_args(c))?;
    wait_for(c, "kube-apiserver /readyz", "kube-apiserver", deadline, |client| async move {
        let req = hyper::Request::get("/readyz").body(Vec::new()).map_err(kube::Error::HttpError)?;
        Ok(client.request_text(req).await? == "ok")
    })
    .await?;
    let nodes = kwok::nodes(&c.opts.name, c.opts.nodes_per_zone);
    {
        // Always: a data directory may come from an earlier kwok, whose leases block ours.
        let leases: Api<Lease> = Api::namespaced(c.client.clone(), "kube-node-lease");
        for node in &nodes {
            let name = node.metadata.name.as_deref().unwrap_or_default();
            match leases.delete(name, &DeleteParams::default()).await {
                Ok(_) | Err(kube::Error::Api(_)) => {}
                Err(e) => return Err(api_err("delete stale node lease")(e)),
            }
        }
    }
    spawn(c, "kube-controller-manager", kcm_args(c))?;
    spawn(c, "kube-scheduler", scheduler_args(c))?;
    spawn(c, "kwok", kwok_args(c))?;
    if !restart {
        let apply = PatchParams::apply("localcluster").force();
        let class_file = c.kwok_stage_dir.join(kwok::STORAGE_CLASS);
        for doc in kwok::read_yaml_docs(&class_file).map_err(ClusterError::Kwok)? {
            let class: StorageClass = serde_json::from_value(doc).map_err(|e| {
                ClusterError::Kwok(crate::kwok::KwokError::Read {
                    path: class_file.clone(),
                    source: std::io::Error::other(e),
                })
            })?;
            let name = class.metadata.name.clone().unwrap_or_default();
            Api::<StorageClass>::all(c.client.clone())
                .patch(&name, &apply, &Patch::Apply(&class))
                .await
                .map_err(api_err("apply kwok StorageClass"))?;
        }
        let api: Api<Node> = Api::all(c.client.clone());
        for node in &nodes {
            let name = node.metadata.name.as_deref().unwrap_or_default();
            api.patch(name, &apply, &Patch::Apply(node)).await.map_err(api_err("apply Node"))?;
        }
    }
    wait_for(c, "the default ServiceAccount", "kube-controller-manager", deadline, |client| async move {
        let api: Api<ServiceAccount> = Api::namespaced(client, "default");
        Ok(api.get_opt("default").await?.is_some())
    })
    .await?;
    let expected = nodes.len();
    wait_for(c, "every node Ready with a live lease", "kwok", deadline, |client| async move {
        let nodes: Api<Node> = Api::all(client.clone());
        let ready = nodes
            .list(&ListParams::default())
            .await?
            .items
            .iter()
            .filter(|n| {
                n.status
                    .as_ref()
                    .and_then(|s| s.conditions.as_ref())
                    .is_some_and(|cs| cs.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
            })
            .count();
        let leases: Api<Lease> = Api::namespaced(client, "kube-node-lease");
        let held = leases.list(&ListParams::default()).await?.items.len();
        Ok(ready >= expected && held >= expected)
    })
    .await?;
    Ok(())
}
